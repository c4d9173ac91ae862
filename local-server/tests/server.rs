//! The local server over real HTTP on loopback: the authorizer stand-in, routing to every
//! function, the JWKS, and the persistent signing key.

use std::sync::Arc;

mod common;

use common::{http, spec};
use local_server::{Functions, Gateway, LocalKeys, TokenSpec};
use serde_json::{Value, json};
use tempfile::TempDir;

struct Server {
    base: String,
    gateway: Arc<Gateway>,
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

/// A temporary folder removed on drop, named after the test.
fn temp_dir(tag: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("local-server-test-{tag}-"))
        .tempdir()
        .unwrap()
}

async fn start(tag: &str) -> Server {
    let dir = temp_dir(tag);
    let keys = LocalKeys::load_or_create(dir.path()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let gateway = Arc::new(Gateway::new(
        &keys,
        Functions::local(dir.path(), &base).unwrap(),
    ));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(local_server::serve(listener, gateway.clone(), async {
        let _ = rx.await;
    }));
    Server {
        base,
        gateway,
        keys,
        _dir: dir,
        stop: Some(tx),
    }
}

async fn call(s: &Server, method: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    send(s, method, path, token, None).await
}

async fn send(
    s: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = Vec::new();
    if let Some(b) = &bearer {
        headers.push(("authorization", b.as_str()));
    }
    let body = body.map(|b| b.to_string());
    if body.is_some() {
        headers.push(("content-type", "application/json"));
    }
    let (status, _, text) = http(&s.base, method, path, &headers, body).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A request without a body: status, headers and body text.
async fn raw(
    s: &Server,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, String) {
    http(&s.base, method, path, headers, None).await
}

/// Creates a text document in site `marketing` as `token`; its id.
async fn create_marketing_document(s: &Server, token: &str, path: &str, content: &str) -> String {
    let (status, body) = send(
        s,
        "POST",
        "/documents?siteId=marketing",
        Some(token),
        Some(json!({"path": path, "contentType": "text/plain", "content": content})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["documentId"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_authorizer_stand_in_refuses_what_api_gateway_refuses() {
    let s = start("authz").await;
    let good = s.keys.token(&spec("alice", &["marketing"])).unwrap();
    let other_dir = temp_dir("authz-other");
    let foreign = LocalKeys::load_or_create(other_dir.path())
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
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["documents"], json!([]));
}

#[tokio::test]
async fn every_function_is_mounted_and_unknown_routes_are_404() {
    let s = start("routes").await;
    let token = s.keys.token(&spec("admin", &["Admins"])).unwrap();
    // The document routes answer for themselves (an unknown document is a 404 of its own).
    let (status, body) = call(&s, "GET", "/documents/x/tags", Some(&token)).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (404, Some("document 'x' not found"))
    );
    // Every function answers for itself.
    let (status, body) = call(&s, "GET", "/sites", Some(&token)).await;
    assert_eq!(
        (status, body["username"].as_str()),
        (200, Some("admin")),
        "{body}"
    );
    let (status, body) = call(&s, "GET", "/groups", Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["groups"].is_array());
    let (status, body) = call(&s, "GET", "/fhir/Patient/x", Some(&token)).await;
    assert_eq!(
        (status, body["resourceType"].as_str()),
        (404, Some("OperationOutcome")),
        "{body}"
    );
    // FHIR search is its own function: the searches go there, history stays with fhir.
    let (status, body) = call(&s, "GET", "/fhir/Patient?name=x", Some(&token)).await;
    assert_eq!(
        (status, body["type"].as_str(), &body["total"]),
        (200, Some("searchset"), &json!(0)),
        "{body}"
    );
    let (status, body) = call(&s, "GET", "/fhir/Patient/x/Observation", Some(&token)).await;
    assert_eq!((status, body["type"].as_str()), (200, Some("searchset")));
    let (status, body) = call(&s, "GET", "/fhir/Patient/x/_history", Some(&token)).await;
    assert_eq!(
        (status, body["resourceType"].as_str()),
        (404, Some("OperationOutcome")),
        "{body}"
    );
    let (status, body) = call(&s, "GET", "/fhir/_history", Some(&token)).await;
    assert_eq!((status, body["type"].as_str()), (200, Some("history")));
    let (status, body) = call(&s, "GET", "/nowhere", Some(&token)).await;
    assert_eq!((status, body["message"].as_str()), (404, Some("Not Found")));
    let (status, _) = call(&s, "GET", "/documentsx", Some(&token)).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_capability_statement_needs_no_token() {
    let s = start("public").await;
    // Reaches the FHIR function (not the authorizer's 401): the statement, and (tenant URLs
    // being off by default) the function's own 404.
    let (status, body) = call(&s, "GET", "/fhir/metadata", None).await;
    assert_eq!(
        (status, body["resourceType"].as_str()),
        (200, Some("CapabilityStatement"))
    );
    assert_eq!(body["implementation"]["url"], format!("{}/fhir", s.base));
    let (status, body) = call(&s, "GET", "/fhir/tenant/t1/metadata", None).await;
    assert_eq!(
        (status, body["resourceType"].as_str()),
        (404, Some("OperationOutcome"))
    );
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
    let again = LocalKeys::load_or_create(s._dir.path()).unwrap();
    assert_eq!(again.kid(), s.keys.kid());
    // A token from the reloaded key verifies against the running server.
    let token = again.token(&spec("carol", &["finance"])).unwrap();
    let (status, _) = call(&s, "GET", "/documents", Some(&token)).await;
    assert_eq!(status, 200);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(s._dir.path().join("keys/signing-key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "key readable by others: {mode:o}");
    }
}

/// The README's walkthrough, over HTTP: create a document in `marketing`, list it, read its
/// content, and get 404 for it as a user of `finance`; then upload through a presigned URL.
#[tokio::test]
async fn readme_walkthrough_and_presigned_upload() {
    let s = start("walkthrough").await;
    let alice = s.keys.token(&spec("alice", &["marketing"])).unwrap();
    let bob = s.keys.token(&spec("bob", &["finance"])).unwrap();

    let id = create_marketing_document(&s, &alice, "plan.txt", "Q3 plan").await;

    let (status, body) = call(&s, "GET", "/documents?siteId=marketing", Some(&alice)).await;
    assert_eq!(
        (status, body["documents"][0]["documentId"].as_str()),
        (200, Some(id.as_str()))
    );
    let (status, body) = call(
        &s,
        "GET",
        &format!("/documents/{id}/content?siteId=marketing"),
        Some(&alice),
    )
    .await;
    assert_eq!((status, body["content"].as_str()), (200, Some("Q3 plan")));
    let (status, _) = call(
        &s,
        "GET",
        &format!("/documents/{id}?siteId=finance"),
        Some(&bob),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = call(
        &s,
        "GET",
        &format!("/documents/{id}?siteId=marketing"),
        Some(&bob),
    )
    .await;
    assert_eq!(status, 403);

    // Presigned upload: PUT the bytes, then read them back through the API and the URL.
    let (status, body) = send(
        &s,
        "POST",
        "/documents",
        Some(&alice),
        Some(json!({"path": "a.bin", "contentType": "application/octet-stream"})),
    )
    .await;
    assert_eq!(status, 201);
    let upload = body["uploadUrl"].as_str().unwrap().to_owned();
    let id = body["documentId"].as_str().unwrap().to_owned();
    assert!(upload.starts_with(&s.base), "{upload}");
    let client = reqwest::Client::new();
    let bytes: Vec<u8> = (0..=255).collect();
    let r = client
        .put(&upload)
        .header("content-type", "application/octet-stream")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The URL is bound to its method, key and content type.
    let r = client
        .put(&upload)
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = client.get(&upload).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r = client
        .put(upload.replace("X-Expires=", "X-Expires=9"))
        .header("content-type", "application/octet-stream")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    let (status, body) = call(&s, "GET", &format!("/documents/{id}"), Some(&alice)).await;
    assert_eq!((status, body["contentLength"].as_u64()), (200, Some(256)));
    let (_, body) = call(&s, "GET", &format!("/documents/{id}/url"), Some(&alice)).await;
    let got = client
        .get(body["url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.to_vec(), bytes);
}

/// The embedded directory behind the groups API decides what `token` puts in `cognito:groups`
/// when `--groups` is not given: an admin creates group `team`, adds `dana`, and her next token
/// reaches site `team`.
#[tokio::test]
async fn token_groups_come_from_the_local_directory() {
    let s = start("directory").await;
    let admin = s.keys.token(&spec("root", &["Admins"])).unwrap();
    let (status, body) = send(
        &s,
        "POST",
        "/groups",
        Some(&admin),
        Some(json!({"group": {"name": "team"}})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = send(
        &s,
        "POST",
        "/groups/team/users",
        Some(&admin),
        Some(json!({"user": {"username": "dana"}})),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    let port: u16 = s.base.rsplit(':').next().unwrap().parse().unwrap();
    let kid = s.keys.kid();
    let groups = local_server::directory_groups_of(s._dir.path(), port, "dana", kid)
        .await
        .unwrap();
    assert_eq!(groups, ["team"]);
    assert!(
        local_server::directory_groups_of(s._dir.path(), port, "nobody", kid)
            .await
            .unwrap()
            .is_empty()
    );
    // Whatever LOCAL_PORT the token command has, the port the server recorded in its data
    // folder finds it (the database is locked by the server: opening it would fail).
    let unused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = local_server::directory_groups_of(s._dir.path(), unused, "dana", kid)
        .await
        .unwrap_err();
    assert!(
        err.contains("LOCAL_PORT") && err.contains("--groups"),
        "{err}"
    );
    local_server::record_server(s._dir.path(), port).unwrap();
    assert_eq!(
        local_server::directory_groups_of(s._dir.path(), unused, "dana", kid)
            .await
            .unwrap(),
        ["team"]
    );
    local_server::forget_server(s._dir.path());

    let dana = s
        .keys
        .token(&TokenSpec {
            groups,
            ..spec("dana", &[])
        })
        .unwrap();
    let (status, body) = send(
        &s,
        "POST",
        "/documents?siteId=team",
        Some(&dana),
        Some(json!({"content": "hi"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn head_answers_wherever_get_does_with_the_same_access() {
    let s = start("head").await;
    let alice = s.keys.token(&spec("alice", &["marketing"])).unwrap();
    let bob = s.keys.token(&spec("bob", &["finance"])).unwrap();
    let id = create_marketing_document(&s, &alice, "a.txt", "hello").await;
    let path = format!("/documents/{id}?siteId=marketing");
    let bearer = |t: &str| format!("Bearer {t}");
    let (status, _, get) = raw(&s, "GET", &path, &[("authorization", &bearer(&alice))]).await;
    assert_eq!(status, 200);
    let (status, headers, body) =
        raw(&s, "HEAD", &path, &[("authorization", &bearer(&alice))]).await;
    assert_eq!((status, body.as_str()), (200, ""));
    assert_eq!(
        headers["content-length"].to_str().unwrap(),
        get.len().to_string()
    );
    assert_eq!(headers["content-type"], "application/json");
    // The same refusals as GET: no token, another site's member, another site.
    assert_eq!(raw(&s, "HEAD", &path, &[]).await.0, 401);
    assert_eq!(
        raw(&s, "HEAD", &path, &[("authorization", &bearer(&bob))])
            .await
            .0,
        403
    );
    let elsewhere = format!("/documents/{id}?siteId=finance");
    assert_eq!(
        raw(&s, "HEAD", &elsewhere, &[("authorization", &bearer(&bob))])
            .await
            .0,
        404
    );
    // Lists and FHIR reads too; a path without GET is still 405.
    let list = "/documents?siteId=marketing";
    assert_eq!(
        raw(&s, "HEAD", list, &[("authorization", &bearer(&alice))])
            .await
            .0,
        200
    );
    // The capability statement is public for HEAD as for GET.
    let (status, headers, body) = raw(&s, "HEAD", "/fhir/metadata", &[]).await;
    assert_eq!((status, body.as_str()), (200, ""));
    assert!(
        headers["content-length"]
            .to_str()
            .unwrap()
            .parse::<usize>()
            .unwrap()
            > 100_000
    );
    // FHIR searches (the fhir-search function), with their access: 401 without a token or a
    // tenant, a read-only member may, another tenant's search finds nothing.
    let (status, _, created) = http(
        &s.base,
        "POST",
        "/fhir/Patient",
        &[
            ("authorization", &bearer(&alice)),
            ("content-type", "application/fhir+json"),
        ],
        Some(json!({"resourceType": "Patient", "name": [{"family": "Heady"}]}).to_string()),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let search = "/fhir/Patient?name=heady";
    let (status, get_headers, get) =
        raw(&s, "GET", search, &[("authorization", &bearer(&alice))]).await;
    assert_eq!(status, 200);
    assert!(get.contains("Heady"));
    let (status, headers, body) =
        raw(&s, "HEAD", search, &[("authorization", &bearer(&alice))]).await;
    assert_eq!((status, body.as_str()), (200, ""));
    assert_eq!(headers["content-type"], get_headers["content-type"]);
    assert!(
        headers["content-length"]
            .to_str()
            .unwrap()
            .parse::<usize>()
            .unwrap()
            > 100
    );
    assert_eq!(raw(&s, "HEAD", search, &[]).await.0, 401);
    let (_, other_headers, _) = raw(&s, "HEAD", search, &[("authorization", &bearer(&bob))]).await;
    let (_, _, other) = raw(&s, "GET", search, &[("authorization", &bearer(&bob))]).await;
    assert!(!other.contains("Heady"), "{other}");
    assert_eq!(
        other_headers["content-length"].to_str().unwrap(),
        other.len().to_string()
    );
    let reader = s.keys.token(&spec("rita", &["marketing_read"])).unwrap();
    assert_eq!(
        raw(&s, "HEAD", search, &[("authorization", &bearer(&reader))])
            .await
            .0,
        200
    );
    let nobody = s.keys.token(&spec("nora", &[])).unwrap();
    assert_eq!(
        raw(&s, "HEAD", search, &[("authorization", &bearer(&nobody))])
            .await
            .0,
        401
    );
    assert_eq!(
        raw(
            &s,
            "HEAD",
            "/search?siteId=marketing",
            &[("authorization", &bearer(&alice))]
        )
        .await
        .0,
        405
    );
}

#[tokio::test]
async fn the_openapi_contract_is_served_as_in_the_repository() {
    let s = start("openapi").await;
    let (status, headers, body) = raw(&s, "GET", "/openapi.yaml", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/yaml");
    let file =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi.yaml")).unwrap();
    assert_eq!(body, file);
    assert!(body.starts_with("openapi: 3.1"), "{}", &body[..40]);
}

#[tokio::test]
async fn cors_preflights_are_answered_as_the_template_configures_api_gateway() {
    let s = start("cors").await;
    let (status, headers, body) = raw(
        &s,
        "OPTIONS",
        "/documents?siteId=marketing",
        &[
            ("origin", "https://app.example.com"),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "authorization,content-type",
            ),
        ],
    )
    .await;
    assert_eq!((status, body.as_str()), (204, ""));
    assert_eq!(headers["access-control-allow-origin"], "*");
    let methods = headers["access-control-allow-methods"].to_str().unwrap();
    assert!(
        methods.contains("POST") && methods.contains("DELETE"),
        "{methods}"
    );
    let allowed = headers["access-control-allow-headers"].to_str().unwrap();
    assert!(allowed.contains("authorization") && allowed.contains("content-type"));
    assert_eq!(headers["access-control-max-age"], "600");
    // A request with an Origin gets the origin and exposed headers on its answer.
    let alice = s.keys.token(&spec("alice", &["marketing"])).unwrap();
    let (status, headers, _) = raw(
        &s,
        "GET",
        "/documents?siteId=marketing",
        &[
            ("origin", "https://app.example.com"),
            ("authorization", &format!("Bearer {alice}")),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers["access-control-allow-origin"], "*");
    assert!(
        headers["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .contains("etag")
    );
    // OPTIONS without a preflight's headers is an ordinary request: the authorizer's 401.
    assert_eq!(raw(&s, "OPTIONS", "/documents", &[]).await.0, 401);
}

#[test]
fn the_cors_answer_is_the_templates_cors_configuration() {
    let template =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml")).unwrap();
    let start = template.find("CorsConfiguration:").unwrap();
    let lines: Vec<&str> = template[start..].lines().skip(1).collect();
    // The items of the list under `key:` in the CorsConfiguration block.
    let list = |key: &str| -> Vec<String> {
        let at = lines
            .iter()
            .position(|l| l.trim() == format!("{key}:"))
            .unwrap_or_else(|| panic!("{key} in CorsConfiguration"));
        lines[at + 1..]
            .iter()
            .map(|l| l.trim())
            .take_while(|l| l.starts_with("- "))
            .map(|l| l[2..].trim_matches('"').to_owned())
            .collect()
    };
    let value = |key: &str| -> String {
        lines
            .iter()
            .find_map(|l| l.trim().strip_prefix(&format!("{key}: ")))
            .unwrap_or_else(|| panic!("{key} in CorsConfiguration"))
            .to_owned()
    };
    use local_server::cors;
    assert_eq!(list("AllowOrigins"), [cors::ALLOW_ORIGIN]);
    assert_eq!(list("AllowMethods"), cors::ALLOW_METHODS);
    assert_eq!(list("AllowHeaders"), cors::ALLOW_HEADERS);
    assert_eq!(list("ExposeHeaders"), cors::EXPOSE_HEADERS);
    assert_eq!(value("MaxAge"), cors::MAX_AGE.to_string());
}

#[tokio::test]
async fn oversize_urls_and_headers_get_json_answers() {
    let s = start("oversize").await;
    let long = "a".repeat(local_server::MAX_REQUEST_HEAD_BYTES + 1);
    let (status, headers, body) = raw(&s, "GET", &format!("/documents?x={long}"), &[]).await;
    assert_eq!(status, 414);
    assert_eq!(headers["content-type"], "application/json");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v["message"].is_string(), "{body}");
    let (status, headers, body) = raw(&s, "GET", "/documents", &[("x-big", &long)]).await;
    assert_eq!(status, 431);
    assert_eq!(headers["content-type"], "application/json");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v["message"].is_string(), "{body}");
    // Up to 1 MiB of headers (beyond API Gateway's 10 KB) still gets the JSON answer.
    let huge = "b".repeat(500 * 1024);
    let (status, _, body) = raw(&s, "GET", "/documents", &[("x-big", &huge)]).await;
    assert_eq!(status, 431);
    assert!(serde_json::from_str::<Value>(&body).is_ok(), "{body}");
    // Under the limit: routed as usual (the authorizer's 401).
    let fine = "c".repeat(2000);
    assert_eq!(
        raw(&s, "GET", &format!("/documents?x={fine}"), &[]).await.0,
        401
    );
}

#[tokio::test]
async fn a_token_of_another_data_folder_is_refused_with_the_reason() {
    let s = start("other-folder").await;
    let other_dir = temp_dir("other-keys");
    let other = LocalKeys::load_or_create(other_dir.path()).unwrap();
    assert_ne!(other.kid(), s.keys.kid());
    let token = other.token(&spec("alice", &["marketing"])).unwrap();
    assert_eq!(
        call(&s, "GET", "/documents?siteId=marketing", Some(&token))
            .await
            .0,
        401
    );
    let reason = s.gateway.refusal_reason(&token, "invalid signature");
    let folder = s._dir.path().display().to_string();
    assert!(
        reason.contains(other.kid()) && reason.contains(&format!("LOCAL_DATA_DIR={folder}")),
        "{reason}"
    );
    // A token of this folder's key that fails for another reason keeps that reason.
    let mine = s.keys.token(&spec("alice", &["marketing"])).unwrap();
    assert_eq!(s.gateway.refusal_reason(&mine, "expired"), "expired");
}
