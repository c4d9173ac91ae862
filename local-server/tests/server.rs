//! The local server over real HTTP on loopback: the authorizer stand-in, routing to every
//! function, the JWKS, and the persistent signing key.

use std::sync::Arc;

use local_server::{Functions, Gateway, LocalKeys, TokenSpec};
use serde_json::Value;
use tenant_context::{TenantConfig, TenantContext};

fn functions() -> Functions {
    let ctx = || TenantContext::new(TenantConfig::default());
    Functions {
        documents: documents::Deps { tenant: ctx() },
        sites: sites::Deps { tenant: ctx() },
        groups: groups::Deps { tenant: ctx() },
        fhir: fhir::Deps { tenant: ctx() },
    }
}

struct Server {
    base: String,
    keys: LocalKeys,
    _dir: TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// A temporary folder removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let p =
            std::env::temp_dir().join(format!("local-server-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn start(tag: &str) -> Server {
    let dir = TempDir::new(tag);
    let keys = LocalKeys::load_or_create(&dir.0).unwrap();
    let gateway = Arc::new(Gateway::new(&keys, functions()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(local_server::serve(listener, gateway, async {
        let _ = rx.await;
    }));
    Server {
        base,
        keys,
        _dir: dir,
        stop: Some(tx),
    }
}

fn spec(user: &str, groups: &[&str]) -> TokenSpec {
    TokenSpec {
        user: user.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        tenant: None,
        ttl_seconds: 600,
        access: false,
    }
}

async fn call(s: &Server, method: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut req = client.request(method.parse().unwrap(), format!("{}{path}", s.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test]
async fn the_authorizer_stand_in_refuses_what_api_gateway_refuses() {
    let s = start("authz").await;
    let good = s.keys.token(&spec("alice", &["marketing"])).unwrap();
    let other_dir = TempDir::new("authz-other");
    let foreign = LocalKeys::load_or_create(&other_dir.0)
        .unwrap()
        .token(&spec("alice", &["marketing"]))
        .unwrap();

    for (name, token) in [
        ("no token", None),
        ("garbage", Some("not-a-token")),
        ("signed by another key", Some(foreign.as_str())),
    ] {
        let (status, body) = call(&s, "GET", "/documents?siteId=marketing", token).await;
        assert_eq!(
            (status, body["message"].as_str()),
            (401, Some("Unauthorized")),
            "{name}"
        );
    }
    // A valid token reaches the function, which answers for itself.
    let (status, body) = call(&s, "GET", "/documents?siteId=marketing", Some(&good)).await;
    assert_eq!(status, 404);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("not implemented"),
        "{body}"
    );
}

#[tokio::test]
async fn every_function_is_mounted_and_unknown_routes_are_404() {
    let s = start("routes").await;
    let token = s.keys.token(&spec("admin", &["Admins"])).unwrap();
    for path in [
        "/documents",
        "/documents/x/tags",
        "/search",
        "/sites",
        "/sites/a/groups",
        "/groups",
        "/fhir/Patient",
    ] {
        let (status, body) = call(&s, "GET", path, Some(&token)).await;
        assert_eq!(status, 404, "{path}");
        let msg = body["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains("not implemented") && msg.contains(path),
            "{path}: {msg}"
        );
    }
    let (status, body) = call(&s, "GET", "/nowhere", Some(&token)).await;
    assert_eq!((status, body["message"].as_str()), (404, Some("Not Found")));
    let (status, _) = call(&s, "GET", "/documentsx", Some(&token)).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_capability_statement_needs_no_token() {
    let s = start("public").await;
    for path in ["/fhir/metadata", "/fhir/tenant/t1/metadata"] {
        let (status, body) = call(&s, "GET", path, None).await;
        // Reaches the FHIR function (not the authorizer's 401).
        assert_eq!(status, 404, "{path}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("not implemented")
        );
    }
    let (status, _) = call(&s, "POST", "/fhir/metadata", None).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn jwks_is_served_and_the_key_survives_restarts() {
    let s = start("jwks").await;
    let (status, body) = call(&s, "GET", "/.well-known/jwks.json", None).await;
    assert_eq!(status, 200);
    assert_eq!(body["keys"][0]["kid"], s.keys.kid());
    assert_eq!(body["keys"][0]["alg"], "RS256");
    let again = LocalKeys::load_or_create(&s._dir.0).unwrap();
    assert_eq!(again.kid(), s.keys.kid());
    // A token from the reloaded key verifies against the running server.
    let token = again.token(&spec("carol", &["finance"])).unwrap();
    let (status, _) = call(&s, "GET", "/documents", Some(&token)).await;
    assert_eq!(status, 404);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(s._dir.0.join("keys/signing-key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "key readable by others: {mode:o}");
    }
}
