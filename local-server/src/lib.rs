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

/// The groups of `user` in the local directory: asked of the server running on `port` (which
/// holds the database open), or read from the database in `data_dir` when no server runs.
pub async fn directory_groups_of(
    data_dir: &std::path::Path,
    port: u16,
    user: &str,
) -> Result<Vec<String>, String> {
    let url = format!(
        "http://127.0.0.1:{port}/_local/users/{}/groups",
        percent_encoding::utf8_percent_encode(user, percent_encoding::NON_ALPHANUMERIC)
    );
    if let Ok(resp) = reqwest::get(&url).await {
        let body: serde_json::Value = resp
            .json()
            .await
            .map_err(|e| format!("asking the local server: {e}"))?;
        return Ok(body["groups"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|g| g.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default());
    }
    let table = storage::EmbeddedTable::open(&data_dir.join("table.redb"))
        .map_err(|e| format!("opening the local database: {e}"))?;
    let secrets = keys::local_secrets(data_dir)?;
    let directory = directory::EmbeddedDirectory::new(
        std::sync::Arc::new(table),
        storage::PageTokens::new(&secrets.paging),
    );
    Ok(gateway::directory_groups(&directory, user).await)
}

/// Largest request body accepted (API Gateway's payload limit is 10 MB).
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

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
