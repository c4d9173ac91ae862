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
    /// The body's bytes.
    pub bytes: Vec<u8>,
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

/// A client of the FHIR functions' handlers (cheap to clone into concurrent tasks): each
/// request goes to the function API Gateway would send it to (`fhir_search::owns`).
#[derive(Clone)]
pub struct Client {
    pub deps: Arc<fhir::Deps>,
    pub search: Arc<fhir_search::Deps>,
}

/// The FHIR function on a backend.
pub struct Fhir {
    pub client: Client,
    pub table: Arc<dyn Table>,
    pub backend: Backend,
}

impl std::ops::Deref for Fhir {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Fhir {
    /// The function on `backend` with the tenant model `config`.
    pub fn with_config(backend: Backend, config: TenantConfig) -> Fhir {
        Fhir::on_table(backend.table.clone(), backend, config)
    }

    /// The function on `table` (a wrapper of the backend's table, e.g. one injecting faults).
    pub fn on_table(table: Arc<dyn Table>, backend: Backend, config: TenantConfig) -> Fhir {
        let deps = fhir::Deps {
            tenant: TenantContext::new(config.clone()),
            table: table.clone(),
            blobs: backend.blobs.clone(),
            tokens: PageTokens::new(b"integration-test-paging-secret!!"),
            limits: fhir::Limits::default(),
            store: fhir_core::StoreOptions::default(),
        };
        let search = fhir_search::Deps {
            tenant: TenantContext::new(config.clone()),
            table: table.clone(),
            tokens: PageTokens::new(b"integration-test-paging-secret!!"),
            limits: fhir_search::Limits::default(),
        };
        Fhir {
            client: Client {
                deps: Arc::new(deps),
                search: Arc::new(search),
            },
            table,
            backend,
        }
    }

    pub fn new(backend: Backend) -> Fhir {
        Fhir::with_config(backend, TenantConfig::default())
    }

    /// Changes the protocol's options (before any request is sent).
    pub fn set_store_options(&mut self, opts: fhir_core::StoreOptions) {
        Arc::get_mut(&mut self.client.deps)
            .expect("no request sent yet")
            .store = opts;
    }
}

impl Client {
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
        let claims = user.map(|u| u.claims());
        self.send_claims(claims.as_ref(), method, path_and_query, headers, body)
            .await
    }

    /// Sends a request with these authorizer claims.
    pub async fn send_claims(
        &self,
        claims: Option<&Value>,
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
        let event = platform_http::http_api_event(&platform_http::HttpApiRequest {
            method,
            path,
            query,
            headers: hs,
            body,
            claims: claims.and_then(Value::as_object),
            domain: "api.example.com",
            request_id: "test",
        });
        let req = platform_http::request_from_event(event).expect("a valid event");
        let resp = if fhir_search::owns(method, path) {
            fhir_search::handle(req, &self.search).await
        } else {
            fhir::handle(req, &self.deps).await
        };
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
            .collect();
        let bytes = match resp.body() {
            lambda_http::Body::Text(t) => t.as_bytes().to_vec(),
            lambda_http::Body::Binary(b) => b.clone(),
            _ => Vec::new(),
        };
        let text = String::from_utf8_lossy(&bytes).into_owned();
        FhirResp {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
            bytes,
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

    /// The entries of every page of a Bundle, following `next` links from `path`.
    pub async fn all_pages(&self, user: &User, path: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut next = Some(path.to_owned());
        while let Some(p) = next.take() {
            let r = self.get(user, &p).await;
            assert_eq!(r.status, 200, "{p}: {}", r.text);
            out.extend(r.body["entry"].as_array().expect("entries").iter().cloned());
            next = next_link(&r.body);
        }
        out
    }
}

/// The path of a Bundle's `next` link (links carry the API Gateway test domain).
pub fn next_link(bundle: &Value) -> Option<String> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == "next")?["url"]
        .as_str()?
        .strip_prefix("https://api.example.com")
        .map(str::to_owned)
}

/// A caller whose token names `tenant` (READ, WRITE and DELETE there).
pub fn tenant_user(name: &str, tenant: &str) -> User {
    let mut u = User::new(name, &[]);
    u.tenant = Some(tenant.into());
    u
}

/// A real [`tenant_context::TenantScope`] on `site` (READ WRITE DELETE), made by the tenant
/// library from the authorizer claims of a user whose tenant claim is `site`.
pub async fn scope_for(site: &str) -> tenant_context::TenantScope {
    let ctx = TenantContext::new(TenantConfig::default());
    let claims = tenant_user("checker", site).claims();
    let creds = tenant_context::Credentials {
        authorizer_claims: Some(tenant_context::Claims::new(
            claims.as_object().cloned().unwrap_or_default(),
        )),
        ..Default::default()
    };
    let principal = ctx.authenticate(creds).await.expect("authenticate");
    ctx.authorize(
        &principal,
        tenant_context::RequestTarget::default(),
        tenant_context::Permission::Read,
    )
    .await
    .expect("authorize")
}
