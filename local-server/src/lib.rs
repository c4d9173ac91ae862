//! The local server: every function's routes on 127.0.0.1 in one process, behind a local
//! stand-in for the API Gateway JWT authorizer (`docs/architecture.md`, "Running locally").

pub mod gateway;
pub mod keys;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming as HyperBody};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use lambda_http::Body;

pub use gateway::{Functions, Gateway, Incoming};
pub use keys::{CLIENT_ID, ISSUER, LocalKeys, LocalSecrets, TokenSpec, local_secrets};

/// The file in the data folder where a running server records its port.
const SERVER_FILE: &str = "server.json";

/// Records that a server on `port` serves `data_dir` (for `token`, whatever `LOCAL_PORT`).
pub fn record_server(data_dir: &std::path::Path, port: u16) -> Result<(), String> {
    let path = data_dir.join(SERVER_FILE);
    let body = serde_json::json!({ "port": port });
    std::fs::write(&path, body.to_string()).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// Removes the record of [`record_server`] (the server stopped).
pub fn forget_server(data_dir: &std::path::Path) {
    let _ = std::fs::remove_file(data_dir.join(SERVER_FILE));
}

/// The groups of `user` in the local directory of `data_dir`: asked of the server running on
/// it (the port it recorded, then `port`), which holds the database open, or read from the
/// database when no server answers. `kid` is the key the token will be signed with: a server
/// with another data folder's key would refuse it, so that is reported on stderr.
pub async fn directory_groups_of(
    data_dir: &std::path::Path,
    port: u16,
    user: &str,
    kid: &str,
) -> Result<Vec<String>, String> {
    let recorded = std::fs::read_to_string(data_dir.join(SERVER_FILE))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["port"].as_u64())
        .and_then(|p| u16::try_from(p).ok());
    let mut ports: Vec<u16> = recorded.into_iter().collect();
    if !ports.contains(&port) {
        ports.push(port);
    }
    let user_path = percent_encoding::utf8_percent_encode(user, percent_encoding::NON_ALPHANUMERIC);
    for p in ports {
        let url = format!("http://127.0.0.1:{p}/_local/users/{user_path}/groups");
        let Ok(resp) = reqwest::get(&url).await else {
            continue;
        };
        let body: serde_json::Value = resp
            .json()
            .await
            .map_err(|e| format!("asking the local server on port {p}: {e}"))?;
        if let Some(theirs) = body["kid"].as_str()
            && theirs != kid
        {
            eprintln!(
                "warning: the local server on port {p} serves the data folder {} with another key: \
                 it will refuse a token signed with the key of {}; set LOCAL_DATA_DIR to its folder",
                body["dataDir"].as_str().unwrap_or("?"),
                data_dir.display()
            );
        }
        return Ok(body["groups"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|g| g.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default());
    }
    let table = storage::EmbeddedTable::open(&data_dir.join("table.redb")).map_err(|e| {
        format!(
            "opening the local database in {}: {e} (no local server answered on port {port}; \
             if one runs on this folder elsewhere, set LOCAL_PORT, or pass --groups)",
            data_dir.display()
        )
    })?;
    let secrets = keys::local_secrets(data_dir)?;
    let directory = directory::EmbeddedDirectory::new(
        std::sync::Arc::new(table),
        storage::PageTokens::new(&secrets.paging),
    );
    Ok(gateway::directory_groups(&directory, user).await)
}

/// Largest request body accepted (API Gateway's payload limit is 10 MB).
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// API Gateway's limit on an HTTP API request's line and header values together (bytes).
/// Above it, a request line alone that long is 414, else 431, each with a JSON message.
pub const MAX_REQUEST_HEAD_BYTES: usize = 10 * 1024;

/// What hyper buffers of a request head before it answers 431 itself (with an empty body):
/// far above [`MAX_REQUEST_HEAD_BYTES`], so requests API Gateway would refuse get our JSON
/// answer. (hyper answers a URI over 65,534 bytes with an empty 414 whatever this is.)
const HEAD_BUFFER_BYTES: usize = 1024 * 1024;

/// The template's `CorsConfiguration` (HttpApi): what API Gateway answers to a CORS
/// preflight and adds to responses to a request with an `Origin` (a test compares these with
/// template.yaml).
pub mod cors {
    pub const ALLOW_ORIGIN: &str = "*";
    pub const ALLOW_METHODS: &[&str] =
        &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
    pub const ALLOW_HEADERS: &[&str] = &[
        "Authorization",
        "Content-Type",
        "If-Match",
        "If-None-Match",
        "If-None-Exist",
        "Prefer",
    ];
    pub const EXPOSE_HEADERS: &[&str] = &["ETag", "Location", "Content-Location", "Last-Modified"];
    pub const MAX_AGE: u32 = 600;
}

/// Serves `gateway` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let local: SocketAddr = listener.local_addr()?;
    let domain: Arc<str> = Arc::from(local.to_string());
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = &mut shutdown => return Ok(()),
        };
        let gateway = gateway.clone();
        let domain = domain.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let gateway = gateway.clone();
                let domain = domain.clone();
                async move { Ok::<_, Infallible>(answer(&gateway, &domain, req).await) }
            });
            if let Err(e) = http1::Builder::new()
                .max_buf_size(HEAD_BUFFER_BYTES)
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "connection closed");
            }
        });
    }
}

async fn answer(
    gateway: &Gateway,
    domain: &str,
    req: hyper::Request<HyperBody>,
) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    if let Some(refused) = oversize(&parts) {
        return refused;
    }
    let origin = parts.headers.contains_key(hyper::header::ORIGIN);
    if origin
        && parts.method == hyper::Method::OPTIONS
        && parts
            .headers
            .contains_key(hyper::header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        return preflight();
    }
    let mut resp = forward(gateway, domain, parts, body).await;
    if origin {
        let h = resp.headers_mut();
        h.insert(
            hyper::header::ACCESS_CONTROL_ALLOW_ORIGIN,
            hyper::header::HeaderValue::from_static(cors::ALLOW_ORIGIN),
        );
        if let Ok(v) = cors::EXPOSE_HEADERS.join(",").to_lowercase().parse() {
            h.insert(hyper::header::ACCESS_CONTROL_EXPOSE_HEADERS, v);
        }
    }
    resp
}

/// API Gateway's 414 or 431 (with a JSON message) for a request head over its limit.
fn oversize(parts: &hyper::http::request::Parts) -> Option<hyper::Response<Full<Bytes>>> {
    // "METHOD /path?query HTTP/1.1"
    let target = parts.uri.path_and_query().map_or(1, |p| p.as_str().len());
    let line = parts.method.as_str().len() + target + 10;
    if line > MAX_REQUEST_HEAD_BYTES {
        return Some(plain_json(414, r#"{"message":"Request-URI Too Long"}"#));
    }
    let headers: usize = parts
        .headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    (line + headers > MAX_REQUEST_HEAD_BYTES)
        .then(|| plain_json(431, r#"{"message":"Request Header Fields Too Large"}"#))
}

/// What API Gateway answers to a CORS preflight under the template's `CorsConfiguration`.
fn preflight() -> hyper::Response<Full<Bytes>> {
    let mut r = hyper::Response::new(Full::new(Bytes::new()));
    *r.status_mut() = hyper::StatusCode::NO_CONTENT;
    let h = r.headers_mut();
    let mut set = |name: hyper::header::HeaderName, value: String| {
        if let Ok(v) = value.parse() {
            h.insert(name, v);
        }
    };
    set(
        hyper::header::ACCESS_CONTROL_ALLOW_ORIGIN,
        cors::ALLOW_ORIGIN.into(),
    );
    set(
        hyper::header::ACCESS_CONTROL_ALLOW_METHODS,
        cors::ALLOW_METHODS.join(","),
    );
    set(
        hyper::header::ACCESS_CONTROL_ALLOW_HEADERS,
        cors::ALLOW_HEADERS.join(",").to_lowercase(),
    );
    set(
        hyper::header::ACCESS_CONTROL_MAX_AGE,
        cors::MAX_AGE.to_string(),
    );
    r
}

/// Hands the request to the gateway (authorizer, then the function owning the route).
async fn forward(
    gateway: &Gateway,
    domain: &str,
    parts: hyper::http::request::Parts,
    body: HyperBody,
) -> hyper::Response<Full<Bytes>> {
    let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return plain_json(413, r#"{"message":"Request Entity Too Large"}"#);
        }
    };
    let headers = parts
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let resp = gateway
        .handle(Incoming {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query().unwrap_or(""),
            headers,
            body: &body,
            domain,
        })
        .await;
    let (parts, body) = resp.into_parts();
    let bytes = match body {
        Body::Empty => Bytes::new(),
        Body::Text(t) => Bytes::from(t),
        Body::Binary(b) => Bytes::from(b),
        _ => Bytes::new(),
    };
    hyper::Response::from_parts(parts, Full::new(bytes))
}

fn plain_json(status: u16, body: &'static str) -> hyper::Response<Full<Bytes>> {
    let mut r = hyper::Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::BAD_REQUEST);
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}
