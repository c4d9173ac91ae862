//! The FHIR R4 API (FHIR Works on AWS-shaped).
//!
//! Handlers take their dependencies as arguments, so the same code runs in Lambda, in the
//! local server and in tests. Until this function's routes land, every request under its
//! prefixes is answered with a JSON 404 saying the route is not implemented.

use std::sync::Arc;

use lambda_http::{Body, Request, Response};
use storage::Table;
use tenant_context::{TenantConfig, TenantContext};

/// The path prefixes this function serves.
pub const PREFIXES: &[&str] = &["/fhir"];

/// What the handlers need; built once per process.
pub struct Deps {
    pub tenant: TenantContext,
}

impl Deps {
    /// The dependencies on `table` for the tenant model `config`: the tenant context every
    /// function builds, so in defined mode FHIR reads grants from the table's defined sites.
    pub fn new(config: TenantConfig, table: Arc<dyn Table>) -> Self {
        Deps {
            tenant: site_store::tenant_context(config, table),
        }
    }

    /// Dependencies from the environment variables the template sets: the tenant model and
    /// DynamoDB (`TABLE_NAME`; the client is created on first use).
    pub fn from_env() -> Result<Self, String> {
        let env = site_store::Environment::from_env()?;
        Ok(Deps::new(env.config, env.table))
    }
}

/// Answers one request.
pub async fn handle(req: Request, deps: &Deps) -> Response<Body> {
    let _ = &deps.tenant;
    platform_http::not_implemented(&req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_route_is_a_json_404_until_implemented() {
        let deps = Deps {
            tenant: TenantContext::new(TenantConfig::default()),
        };
        for prefix in PREFIXES {
            for (method, path) in [
                ("GET", prefix.to_string()),
                ("POST", format!("{prefix}/x/y")),
            ] {
                let req = lambda_http::http::Request::builder()
                    .method(method)
                    .uri(format!("https://api.example.com{path}"))
                    .body(Body::Empty)
                    .unwrap();
                let resp = handle(req, &deps).await;
                assert_eq!(resp.status(), 404, "{method} {path}");
                assert_eq!(resp.headers()["content-type"], "application/json");
                let Body::Text(body) = resp.body() else {
                    panic!("text body")
                };
                let v: serde_json::Value = serde_json::from_str(body).unwrap();
                let msg = v["message"].as_str().unwrap();
                assert!(
                    msg.contains("not implemented") && msg.contains(&path),
                    "{msg}"
                );
            }
        }
    }
}
