//! Support for the cross-function and cross-backend tests: backends (embedded, and DynamoDB/S3
//! on a `moto_server` started on loopback), and a client that calls a function's handler
//! with the API Gateway HTTP API event the JWT authorizer would produce for a user.

pub mod fhir;
pub mod moto;

use std::sync::Arc;

use serde_json::{Value, json};
use storage::{Blobs, EmbeddedTable, LocalBlobs, Table};

/// A table and a blob store, with whatever keeps them alive.
pub struct Backend {
    pub name: &'static str,
    pub table: Arc<dyn Table>,
    pub blobs: Arc<dyn Blobs>,
    _keep: Box<dyn std::any::Any + Send + Sync>,
}

impl Backend {
    /// The embedded backend in a fresh temporary folder.
    pub fn embedded() -> Backend {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let table =
            EmbeddedTable::open(&dir.path().join("table.redb")).expect("open embedded table");
        let blobs = LocalBlobs::new(
            dir.path().join("blobs"),
            "http://127.0.0.1:9".into(),
            b"test-blob-secret-0123456789abcdef",
        );
        Backend {
            name: "embedded",
            table: Arc::new(table),
            blobs: Arc::new(blobs),
            _keep: Box::new(dir),
        }
    }

    /// DynamoDB and S3 on a fresh table and bucket of a shared `moto_server`.
    pub async fn moto() -> Backend {
        let moto = moto::shared().await;
        let (table, blobs) = moto.fresh_backends().await;
        Backend {
            name: "moto",
            table: Arc::new(table),
            blobs: Arc::new(blobs),
            _keep: Box::new(()),
        }
    }
}

/// A caller, as Cognito would describe them in a token.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
    pub tenant: Option<String>,
}

impl User {
    pub fn new(name: &str, groups: &[&str]) -> Self {
        User {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            tenant: None,
        }
    }

    /// The claims API Gateway's JWT authorizer passes for this user.
    pub fn claims(&self) -> Value {
        let mut c = json!({
            "sub": format!("sub-{}", self.name),
            "cognito:username": self.name,
            "cognito:groups": self.groups,
            "token_use": "id",
            "aud": "test-client",
            "iss": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_test",
        });
        if let Some(t) = &self.tenant {
            c["custom:tenantId"] = json!(t);
        }
        c
    }
}

/// A response: status and JSON body (`Value::Null` when empty or not JSON).
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub body: Value,
}

/// The API Gateway event the authorizer-fronted API would deliver, as a request.
pub fn request(
    user: Option<&User>,
    method: &str,
    path_and_query: &str,
    body: Option<&Value>,
) -> lambda_http::Request {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let claims = user.map(|u| u.claims());
    let bytes = body.map(|b| serde_json::to_vec(b).expect("json"));
    let event = platform_http::http_api_event(&platform_http::HttpApiRequest {
        method,
        path,
        query,
        headers: vec![("content-type".into(), "application/json".into())],
        body: bytes.as_deref(),
        claims: claims.as_ref().and_then(Value::as_object),
        domain: "api.example.com",
        request_id: "test",
    });
    platform_http::request_from_event(event).expect("a valid event")
}

/// Reads a handler's response.
pub fn response(resp: lambda_http::Response<lambda_http::Body>) -> Resp {
    let status = resp.status().as_u16();
    let body = match resp.body() {
        lambda_http::Body::Text(t) => serde_json::from_str(t).unwrap_or(Value::Null),
        lambda_http::Body::Binary(b) => serde_json::from_slice(b).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    Resp { status, body }
}
