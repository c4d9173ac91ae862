//! HTTP glue shared by every function (`docs/architecture.md`, "Request pipeline"): the one
//! request pipeline ([`serve`], configured per function through [`Api`]), API Gateway events and
//! the Lambda run loop, identity from events, logging set-up and per-request metrics.
//!
//! This crate knows nothing of any API's error format (each API brings its own error type and
//! turns the pipeline's [`Refusal`]s into it), and of storage only its per-request meter
//! (`storage::metered`), for the metrics every request reports.

mod event;
mod logging;
mod metrics;
mod pipeline;

pub use event::{
    HttpApiRequest, credentials, fhir_base_url, http_api_event, normalize_event, query_param,
    request_from_event, request_id, run,
};
pub use logging::init_telemetry;
pub use pipeline::{
    Access, Api, Authorized, Call, ErrorResponse, MakeRoute, Params, Refusal, Router, serve,
};

use lambda_http::http::{StatusCode, header};
use lambda_http::{Body, Response};
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

/// A percent-decoded path segment, or `None` when it does not decode to UTF-8.
pub fn path_segment(raw: &str) -> Option<String> {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}
