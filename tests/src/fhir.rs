//! A client of the FHIR function for tests: API Gateway HTTP API events with any headers,
//! answered by `fhir::handle` on a backend.

use std::sync::Arc;

use serde_json::Value;
use storage::{PageTokens, Table};
use tenant_context::{TenantConfig, TenantContext};

use crate::{Backend, User};

/// A response: status, headers and JSON body (`Value::Null` when empty or not JSON).
#[derive(Debug, Clone)]
pub struct FhirResp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
    pub text: String,
}

impl FhirResp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The diagnostics of an OperationOutcome body.
    pub fn diagnostics(&self) -> String {
        self.body["issue"][0]["diagnostics"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// The FHIR function on a backend.
pub struct Fhir {
    pub deps: Arc<fhir::Deps>,
    pub table: Arc<dyn Table>,
    pub backend: Backend,
}

impl Fhir {
    /// The function on `backend` with the tenant model `config`.
    pub fn with_config(backend: Backend, config: TenantConfig) -> Fhir {
        Fhir::on_table(backend.table.clone(), backend, config)
    }

    /// The function on `table` (a wrapper of the backend's table, e.g. one injecting faults).
    pub fn on_table(table: Arc<dyn Table>, backend: Backend, config: TenantConfig) -> Fhir {
        let deps = fhir::Deps {
            tenant: TenantContext::new(config),
            table: table.clone(),
            blobs: backend.blobs.clone(),
            tokens: PageTokens::new(b"integration-test-paging-secret!!"),
            limits: fhir::Limits::default(),
            store: fhir_core::StoreOptions::default(),
        };
        Fhir {
            deps: Arc::new(deps),
            table,
            backend,
        }
    }

    pub fn new(backend: Backend) -> Fhir {
        Fhir::with_config(backend, TenantConfig::default())
    }

    /// Sends a request; `body` is sent as is, with `content-type` from `headers` (else
    /// `application/fhir+json` when there is a body).
    pub async fn send(
        &self,
        user: Option<&User>,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> FhirResp {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let mut hs: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if body.is_some()
            && !hs
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            hs.push(("content-type".into(), "application/fhir+json".into()));
        }
        let claims = user.map(|u| u.claims());
        let event = platform_http::http_api_event(&platform_http::HttpApiRequest {
            method,
            path,
            query,
            headers: hs,
            body,
            claims: claims.as_ref().and_then(Value::as_object),
            domain: "api.example.com",
            request_id: "test",
        });
        let req = platform_http::request_from_event(event).expect("a valid event");
        let resp = fhir::handle(req, &self.deps).await;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
            .collect();
        let text = match resp.body() {
            lambda_http::Body::Text(t) => t.clone(),
            lambda_http::Body::Binary(b) => String::from_utf8_lossy(b).into_owned(),
            _ => String::new(),
        };
        FhirResp {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
        }
    }

    /// Sends JSON.
    pub async fn json(
        &self,
        user: &User,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &Value,
    ) -> FhirResp {
        let bytes = serde_json::to_vec(body).expect("json");
        self.send(Some(user), method, path, headers, Some(&bytes))
            .await
    }

    pub async fn get(&self, user: &User, path: &str) -> FhirResp {
        self.send(Some(user), "GET", path, &[], None).await
    }
}

/// A caller whose token names `tenant` (READ, WRITE and DELETE there).
pub fn tenant_user(name: &str, tenant: &str) -> User {
    let mut u = User::new(name, &[]);
    u.tenant = Some(tenant.into());
    u
}
