//! The conventions of the FormKiQ-shaped APIs: documents, sites and groups
//! (`docs/architecture.md`, "Request pipeline"). Their shapes follow FormKiQ's own API:
//!
//! - errors: `{"message": ...}`, validation errors `{"errors": [{"key", "error"}]}`
//!   ([`ApiError`], mapped to HTTP in one place; the pipeline's refusals and storage errors
//!   convert into it);
//! - lists: `limit` (1-100, default 10) and an opaque `next` token ([`page_limit`],
//!   [`with_next`]);
//! - JSON bodies ([`json_body`]) and replies ([`ok`], [`message`]).

mod error;

pub use error::{ApiError, FieldError, FieldErrors, invalid};

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use platform_http::{json_response, query_param};
use serde_json::{Value, json};

/// A handler's result.
pub type Reply = Result<Response<Body>, ApiError>;

/// A JSON reply with `status`.
pub fn ok(status: StatusCode, body: &Value) -> Reply {
    Ok(json_response(status, body))
}

/// A `{"message": text}` reply with `status`.
pub fn message(status: StatusCode, text: String) -> Reply {
    ok(status, &json!({ "message": text }))
}

/// The `limit` query parameter of a list: 1-100, default 10; anything else is a 400.
pub fn page_limit(req: &Request) -> Result<usize, ApiError> {
    match query_param(req, "limit") {
        None | Some("") => Ok(10),
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "limit must be a whole number from 1 to 100, not '{s}'"
                ))
            }),
    }
}

/// `body` with `"next": <token>` added when there is a next page.
pub fn with_next(mut body: Value, next: Option<String>) -> Value {
    if let Some(n) = next {
        body["next"] = Value::String(n);
    }
    body
}

/// The JSON object body of a request, or a 400 saying what is wrong with it. Every body of
/// these APIs is an object; serde would also take an array for a struct's fields in order.
pub fn json_body<T: serde::de::DeserializeOwned>(req: &Request) -> Result<T, ApiError> {
    let bytes: &[u8] = req.body().as_ref();
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => {
            return Err(ApiError::BadRequest(
                "a JSON request body is required".into(),
            ));
        }
        Some(b'{') => {}
        Some(_) => {
            return Err(ApiError::BadRequest(
                "the request body must be a JSON object".into(),
            ));
        }
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::BadRequest(format!("the request body is not valid JSON: {e}")))
}
