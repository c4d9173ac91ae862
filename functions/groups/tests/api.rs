//! The groups function on the embedded directory, through API Gateway events: the admin-only
//! gate and the basic routes (the full suite, on Cognito too, is `tests/tests/groups.rs`).

use std::sync::Arc;

use directory::EmbeddedDirectory;
use groups::Deps;
use serde_json::{Value, json};
use storage::{EmbeddedTable, PageTokens};
use tenant_context::TenantConfig;

struct Api {
    deps: Deps,
    _dir: tempfile::TempDir,
}

impl Api {
    fn new() -> Api {
        Api::with_config(TenantConfig::default())
    }

    fn with_config(config: TenantConfig) -> Api {
        let dir = tempfile::tempdir().unwrap();
        let table: Arc<dyn storage::Table> =
            Arc::new(EmbeddedTable::open(&dir.path().join("t.redb")).unwrap());
        let directory = EmbeddedDirectory::new(
            table.clone(),
            PageTokens::new(b"groups-api-test-secret-123456789"),
        );
        Api {
            deps: Deps::new(config, Arc::new(directory), table),
            _dir: dir,
        }
    }

    async fn call(
        &self,
        groups: Option<&[&str]>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let (p, q) = path.split_once('?').unwrap_or((path, ""));
        let claims = groups.map(|g| json!({"cognito:username": "caller", "cognito:groups": g}));
        let bytes = body.map(|b| serde_json::to_vec(&b).unwrap());
        let event = platform_http::http_api_event(&platform_http::HttpApiRequest {
            method,
            path: p,
            query: q,
            headers: vec![("content-type".into(), "application/json".into())],
            body: bytes.as_deref(),
            claims: claims.as_ref().and_then(Value::as_object),
            domain: "api.example.com",
            request_id: "t",
        });
        let resp = groups::handle(
            platform_http::request_from_event(event).unwrap(),
            &self.deps,
        )
        .await;
        let status = resp.status().as_u16();
        assert_eq!(resp.headers()["content-type"], "application/json");
        let body = match resp.body() {
            lambda_http::Body::Text(t) => serde_json::from_str(t).unwrap(),
            _ => Value::Null,
        };
        (status, body)
    }
}

const ADMIN: Option<&[&str]> = Some(&["Admins"]);

#[tokio::test]
async fn only_admins_pass() {
    let api = Api::new();
    let (s, b) = api.call(None, "GET", "/groups", None).await;
    assert_eq!(s, 401, "{b}");
    for groups in [&[][..], &["marketing"], &["marketing_govern"], &["default"]] {
        let (s, b) = api.call(Some(groups), "GET", "/groups", None).await;
        assert_eq!(s, 403, "{groups:?}: {b}");
        assert!(b["message"].as_str().unwrap().contains("ADMIN"), "{b}");
    }
    let (s, b) = api.call(ADMIN, "GET", "/groups", None).await;
    assert_eq!((s, &b), (200, &json!({"groups": []})));
}

#[tokio::test]
async fn basic_routes() {
    let api = Api::new();
    let (s, b) = api
        .call(
            ADMIN,
            "POST",
            "/groups",
            Some(json!({"group": {"name": "sales", "description": "Sales"}})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["message"], "group 'sales' created");
    let (s, b) = api.call(ADMIN, "GET", "/groups/sales", None).await;
    assert_eq!(s, 200);
    assert_eq!(b["group"]["name"], "sales");
    assert_eq!(b["group"]["description"], "Sales");
    assert!(b["group"]["insertedDate"].is_string() && b["group"]["lastModifiedDate"].is_string());
    let (s, _) = api
        .call(
            ADMIN,
            "POST",
            "/groups/sales/users",
            Some(json!({"user": {"username": "ann"}})),
        )
        .await;
    assert_eq!(s, 201);
    let (s, b) = api.call(ADMIN, "GET", "/groups/sales/users", None).await;
    assert_eq!(s, 200);
    assert_eq!(b["users"][0]["username"], "ann");
    assert_eq!(b["users"][0]["enabled"], true);
    let (s, _) = api
        .call(ADMIN, "DELETE", "/groups/sales/users/ann", None)
        .await;
    assert_eq!(s, 200);
    let (s, _) = api.call(ADMIN, "DELETE", "/groups/sales", None).await;
    assert_eq!(s, 200);
    let (s, _) = api.call(ADMIN, "GET", "/groups/sales", None).await;
    assert_eq!(s, 404);
    let (s, _) = api.call(ADMIN, "DELETE", "/groups/Admins", None).await;
    assert_eq!(s, 400);
    let (s, _) = api.call(ADMIN, "PUT", "/groups", None).await;
    assert_eq!(s, 405);
}

/// In defined mode the function reads grants from the table like every other function: admins
/// pass (also with other groups), everyone else gets 403, never a 503.
#[tokio::test]
async fn defined_mode_gate() {
    let api = Api::with_config(TenantConfig {
        site_mode: tenant_context::SiteMode::Defined,
        ..TenantConfig::default()
    });
    for groups in [&["Admins"][..], &["Admins", "acme-team"]] {
        let (s, b) = api.call(Some(groups), "GET", "/groups", None).await;
        assert_eq!(s, 200, "{groups:?}: {b}");
    }
    for groups in [&[][..], &["acme-team"], &["acme"]] {
        let (s, b) = api.call(Some(groups), "GET", "/groups", None).await;
        assert_eq!(s, 403, "{groups:?}: {b}");
    }
}
