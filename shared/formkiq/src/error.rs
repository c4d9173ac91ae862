//! The FormKiQ-shaped APIs' error (`{"message": ...}` or `{"errors": [...]}`), mapped to HTTP
//! in one place.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};
use platform_http::{Refusal, json_response};
use serde::Serialize;
use storage::StorageError;
use tenant_context::TenantError;

/// One invalid field of a request body (`{"key": ..., "error": ...}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub key: String,
    pub error: String,
}

/// Every way a document, sites or groups request can fail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// Authentication or authorization refused the request (400/401/403/503).
    #[error(transparent)]
    Tenant(#[from] TenantError),
    #[error("{0}")]
    BadRequest(String),
    /// Field-level validation errors (400, `{"errors": [...]}`).
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("{0}")]
    NotFound(String),
    #[error("route {0} is not implemented")]
    NotImplemented(String),
    #[error("method {0} is not allowed on this route")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    /// A dependency (storage) failed; the caller may retry (503).
    #[error("{0}")]
    Unavailable(String),
    /// A failure of ours or of a dependency (logged; the caller gets a generic message).
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Tenant(e) => {
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            ApiError::BadRequest(_) | ApiError::Validation(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) | ApiError::NotImplemented(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The response: `{"message"}`, or `{"errors"}` for validation errors; the details of
    /// internal and dependency failures are logged, not returned.
    pub fn into_response(self) -> Response<Body> {
        let status = self.status();
        match self {
            ApiError::Validation(errors) => {
                json_response(status, &serde_json::json!({ "errors": errors }))
            }
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                json_response(status, &serde_json::json!({ "message": "internal error" }))
            }
            ApiError::Unavailable(detail) => {
                tracing::error!(error = %detail, "dependency unavailable");
                json_response(
                    status,
                    &serde_json::json!({ "message": "storage is unavailable; retry shortly" }),
                )
            }
            e => json_response(status, &serde_json::json!({ "message": e.to_string() })),
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::ConditionFailed => ApiError::Conflict(
                "the resource was changed by another request; read it again and retry".into(),
            ),
            StorageError::InvalidToken => ApiError::BadRequest(
                "invalid 'next' token: it belongs to another site or query, or is corrupt".into(),
            ),
            StorageError::InvalidKey(m) | StorageError::InvalidRequest(m) => {
                ApiError::BadRequest(m)
            }
            StorageError::OutOfScope(k) => {
                ApiError::Internal(format!("refused key outside the tenant scope: {k}"))
            }
            StorageError::Unavailable(m) => ApiError::Unavailable(m),
            StorageError::Unreadable(m) => ApiError::Internal(m),
        }
    }
}

impl platform_http::ErrorResponse for ApiError {
    fn into_response(self) -> Response<Body> {
        ApiError::into_response(self)
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Tenant(e) => ApiError::Tenant(e),
            Refusal::NoRoute(path) => ApiError::NotFound(format!("no route {path}")),
            Refusal::MethodNotAllowed(m) => ApiError::MethodNotAllowed(m),
            Refusal::BadRequest(m) => ApiError::BadRequest(m),
            Refusal::Internal(m) => ApiError::Internal(m),
        }
    }
}

/// Field-level validation errors collected over a request, answered together as one 400.
#[derive(Debug, Default)]
pub struct FieldErrors(pub Vec<FieldError>);

impl FieldErrors {
    pub fn add(&mut self, key: &str, error: impl Into<String>) {
        self.0.push(FieldError {
            key: key.into(),
            error: error.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether an error about `key` was collected.
    pub fn has(&self, key: &str) -> bool {
        self.0.iter().any(|e| e.key == key)
    }

    /// `value` when no error was collected, else the errors (400 `{"errors": [...]}`).
    pub fn finish<T>(self, value: T) -> Result<T, ApiError> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(ApiError::Validation(self.0))
        }
    }
}

/// One invalid field, as a 400 on its own.
pub fn invalid(key: &str, error: impl Into<String>) -> ApiError {
    ApiError::Validation(vec![FieldError {
        key: key.into(),
        error: error.into(),
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(r: &Response<Body>) -> serde_json::Value {
        match r.body() {
            Body::Text(t) => serde_json::from_str(t).unwrap(),
            other => panic!("unexpected body {other:?}"),
        }
    }

    #[test]
    fn maps_to_status_and_shape() {
        let r = ApiError::Tenant(TenantError::Unauthenticated("no token".into())).into_response();
        assert_eq!(r.status(), 401);
        assert_eq!(body(&r)["message"], "no token");
        let r = ApiError::Validation(vec![FieldError {
            key: "path".into(),
            error: "required".into(),
        }])
        .into_response();
        assert_eq!(r.status(), 400);
        assert_eq!(body(&r)["errors"][0]["key"], "path");
        let r = ApiError::Internal("db down at 10.0.0.1".into()).into_response();
        assert_eq!(r.status(), 500);
        assert_eq!(body(&r)["message"], "internal error");
        let r = ApiError::NotImplemented("GET /documents".into()).into_response();
        assert_eq!(r.status(), 404);
        assert_eq!(r.headers()["content-type"], "application/json");
        assert!(
            body(&r)["message"]
                .as_str()
                .unwrap()
                .contains("not implemented")
        );
    }
}
