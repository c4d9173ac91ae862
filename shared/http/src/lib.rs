//! HTTP glue shared by every function: the Lambda run loop, identity from API Gateway events,
//! the API error type and its one mapping to HTTP responses, and logging set-up.

mod error;
mod event;
mod logging;

pub use error::{ApiError, FieldError};
pub use event::{
    HttpApiRequest, credentials, http_api_event, normalize_event, query_param, request_from_event,
    request_id, run,
};
pub use logging::init_tracing;

use lambda_http::http::{StatusCode, header};
use lambda_http::{Body, Request, Response};
use serde::Serialize;

/// A JSON response with `status`.
pub fn json_response<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> Response<Body> {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::Text(String::from_utf8(bytes).unwrap_or_default()))
        .unwrap_or_default()
}

/// Serves one request inside a tracing span carrying its request id, method, path, and (once
/// known, recorded by the handler) site and user; errors become their HTTP responses in one
/// place, and the status is logged.
pub async fn respond<F>(req: &Request, serve: F) -> Response<Body>
where
    F: std::future::Future<Output = Result<Response<Body>, ApiError>>,
{
    use tracing::Instrument;
    let span = tracing::info_span!(
        "request",
        request_id = %request_id(req),
        method = %req.method(),
        path = %req.uri().path(),
        site = tracing::field::Empty,
        user = tracing::field::Empty,
    );
    async {
        let resp = serve.await.unwrap_or_else(ApiError::into_response);
        tracing::info!(status = resp.status().as_u16(), "done");
        resp
    }
    .instrument(span)
    .await
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
pub fn with_next(mut body: serde_json::Value, next: Option<String>) -> serde_json::Value {
    if let Some(n) = next {
        body["next"] = serde_json::Value::String(n);
    }
    body
}

/// A percent-decoded path segment, or `None` when it does not decode to UTF-8.
pub fn path_segment(raw: &str) -> Option<String> {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// The JSON body of a request, or a 400 saying what is wrong with it.
pub fn json_body<T: serde::de::DeserializeOwned>(req: &Request) -> Result<T, ApiError> {
    let bytes: &[u8] = req.body().as_ref();
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest(
            "a JSON request body is required".into(),
        ));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::BadRequest(format!("the request body is not valid JSON: {e}")))
}

/// The answer of a function to a route it does not serve yet.
pub fn not_implemented(req: &Request) -> Response<Body> {
    ApiError::NotImplemented(format!("{} {}", req.method(), req.uri().path())).into_response()
}
