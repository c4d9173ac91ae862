//! The FHIR API's error: every failure is answered as an OperationOutcome with the status R4
//! gives it, in one place (`docs/architecture.md`, "FHIR").

use lambda_http::http::{StatusCode, header};
use lambda_http::{Body, Response};
use platform_http::Refusal;
use serde_json::{Value, json};
use storage::StorageError;
use tenant_context::TenantError;

/// The media type of FHIR JSON.
pub const FHIR_JSON: &str = "application/fhir+json";

/// Every way a FHIR request can fail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FhirError {
    /// Authentication or authorization refused the request (400/401/403/503).
    #[error(transparent)]
    Tenant(#[from] TenantError),
    /// The request is malformed or breaks a rule (400); `code` is the OperationOutcome issue
    /// type (`invalid`, `structure`, `value`, `not-supported`, ...).
    #[error("{msg}")]
    Invalid { code: &'static str, msg: String },
    /// A request that is well formed but cannot be processed (422).
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    NotFound(String),
    /// The resource was deleted (410).
    #[error("{0}")]
    Gone(String),
    #[error("method {0} is not allowed on this route")]
    MethodNotAllowed(String),
    /// A concurrent write won, or a transaction is in flight (409).
    #[error("{0}")]
    Conflict(String),
    /// The version a write was conditioned on is not the current one (412).
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    NotAcceptable(String),
    /// A dependency (storage) failed; the caller may retry (503).
    #[error("{0}")]
    Unavailable(String),
    /// A failure of ours (logged; the caller gets a generic message).
    #[error("{0}")]
    Internal(String),
}

impl FhirError {
    /// A 400 `invalid` issue.
    pub fn invalid(msg: impl Into<String>) -> Self {
        FhirError::Invalid {
            code: "invalid",
            msg: msg.into(),
        }
    }

    /// A 400 `not-supported` issue.
    pub fn not_supported(msg: impl Into<String>) -> Self {
        FhirError::Invalid {
            code: "not-supported",
            msg: msg.into(),
        }
    }

    /// The same error with `prefix` before its message (e.g. the Bundle entry it is about).
    pub fn context(self, prefix: &str) -> Self {
        let p = |m: String| format!("{prefix}: {m}");
        match self {
            FhirError::Invalid { code, msg } => FhirError::Invalid { code, msg: p(msg) },
            FhirError::Unprocessable(m) => FhirError::Unprocessable(p(m)),
            FhirError::NotFound(m) => FhirError::NotFound(p(m)),
            FhirError::Gone(m) => FhirError::Gone(p(m)),
            FhirError::Conflict(m) => FhirError::Conflict(p(m)),
            FhirError::PreconditionFailed(m) => FhirError::PreconditionFailed(p(m)),
            FhirError::PayloadTooLarge(m) => FhirError::PayloadTooLarge(p(m)),
            FhirError::UnsupportedMediaType(m) => FhirError::UnsupportedMediaType(p(m)),
            e => e,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            FhirError::Tenant(e) => {
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            FhirError::Invalid { .. } => StatusCode::BAD_REQUEST,
            FhirError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            FhirError::NotFound(_) => StatusCode::NOT_FOUND,
            FhirError::Gone(_) => StatusCode::GONE,
            FhirError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            FhirError::Conflict(_) => StatusCode::CONFLICT,
            FhirError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            FhirError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            FhirError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            FhirError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            FhirError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            FhirError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The OperationOutcome issue type (R4 value set `issue-type`).
    fn code(&self) -> &'static str {
        match self {
            FhirError::Tenant(e) => match e.status() {
                401 => "login",
                403 => "forbidden",
                503 => "transient",
                _ => "invalid",
            },
            FhirError::Invalid { code, .. } => code,
            FhirError::Unprocessable(_) => "processing",
            FhirError::NotFound(_) => "not-found",
            FhirError::Gone(_) => "deleted",
            FhirError::MethodNotAllowed(_) | FhirError::UnsupportedMediaType(_) => "not-supported",
            FhirError::NotAcceptable(_) => "not-supported",
            FhirError::Conflict(_) | FhirError::PreconditionFailed(_) => "conflict",
            FhirError::PayloadTooLarge(_) => "too-costly",
            FhirError::Unavailable(_) => "transient",
            FhirError::Internal(_) => "exception",
        }
    }

    /// The OperationOutcome: the message a person can act on; the details of internal and
    /// dependency failures are logged, not returned.
    pub fn outcome(&self) -> Value {
        let diagnostics = match self {
            FhirError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                "internal error".to_owned()
            }
            FhirError::Unavailable(detail) => {
                tracing::error!(error = %detail, "dependency unavailable");
                "storage is unavailable; retry shortly".to_owned()
            }
            e => e.to_string(),
        };
        outcome("error", self.code(), &diagnostics)
    }

    pub fn into_response(self) -> Response<Body> {
        let status = self.status();
        fhir_response(status, &self.outcome())
    }
}

/// An OperationOutcome of one issue.
pub fn outcome(severity: &str, code: &str, diagnostics: &str) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": [{ "severity": severity, "code": code, "diagnostics": diagnostics }]
    })
}

/// A FHIR JSON response.
pub fn fhir_response(status: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, FHIR_JSON)
        .body(Body::Text(body.to_string()))
        .unwrap_or_default()
}

impl From<StorageError> for FhirError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::ConditionFailed => FhirError::Conflict(
                "the resource was changed by another request; read it again and retry".into(),
            ),
            StorageError::InvalidToken => FhirError::invalid(
                "invalid paging link: it belongs to another tenant or query, or is corrupt",
            ),
            StorageError::InvalidKey(m) | StorageError::InvalidRequest(m) => FhirError::invalid(m),
            StorageError::OutOfScope(k) => {
                FhirError::Internal(format!("refused key outside the tenant scope: {k}"))
            }
            StorageError::Unavailable(m) => FhirError::Unavailable(m),
            StorageError::Unreadable(m) => FhirError::Internal(m),
        }
    }
}

impl From<Refusal> for FhirError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Tenant(e) => FhirError::Tenant(e),
            Refusal::NoRoute(path) => FhirError::NotFound(format!("no route {path}")),
            Refusal::MethodNotAllowed(m) => FhirError::MethodNotAllowed(m),
            Refusal::BadRequest(m) => FhirError::invalid(m),
            Refusal::Internal(m) => FhirError::Internal(m),
        }
    }
}

impl platform_http::ErrorResponse for FhirError {
    fn into_response(self) -> Response<Body> {
        FhirError::into_response(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(r: &Response<Body>) -> Value {
        match r.body() {
            Body::Text(t) => serde_json::from_str(t).unwrap(),
            other => panic!("unexpected body {other:?}"),
        }
    }

    #[test]
    fn errors_are_operation_outcomes() {
        let r = FhirError::PreconditionFailed("version 2 is not current".into()).into_response();
        assert_eq!(r.status(), 412);
        assert_eq!(r.headers()["content-type"], FHIR_JSON);
        let b = body(&r);
        assert_eq!(b["resourceType"], "OperationOutcome");
        assert_eq!(b["issue"][0]["code"], "conflict");
        assert_eq!(b["issue"][0]["diagnostics"], "version 2 is not current");
        let r = FhirError::Internal("db at 10.0.0.1".into()).into_response();
        assert_eq!(r.status(), 500);
        assert_eq!(body(&r)["issue"][0]["diagnostics"], "internal error");
        let r = FhirError::from(Refusal::Tenant(TenantError::Unauthenticated("no".into())))
            .into_response();
        assert_eq!(r.status(), 401);
        assert_eq!(body(&r)["issue"][0]["code"], "login");
        assert_eq!(FhirError::from(StorageError::InvalidToken).status(), 400);
    }
}
