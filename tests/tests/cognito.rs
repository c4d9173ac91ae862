//! End to end through Cognito as moto speaks it: a user pool with the custom attribute
//! `tenantId`, an app client, groups and users; real RS256 ID tokens from `AdminInitiateAuth`
//! (ADMIN_USER_PASSWORD_AUTH) sent as `Authorization: Bearer` to the document function without
//! an authorizer context, so the function verifies them itself against the pool's JWKS (the
//! path of the local server and `sam local`). Documents are stored in DynamoDB and S3 on moto.
//!
//! moto's tokens carry what the verifier needs (`iss`, `aud`, `token_use`, `exp`, `kid`,
//! `cognito:username`, `cognito:groups`, `custom:tenantId`); see the notes on `moto_token_claims`
//! for how they differ from real Cognito tokens.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use integration_tests::moto::CognitoPool;
use integration_tests::{Backend, Resp, response};
use serde_json::{Value, json};
use storage::PageTokens;
use tenant_context::{SiteMode, TenantConfig};

struct Env {
    pool: CognitoPool,
    documents: documents::Deps,
    _backend: Backend,
}

/// A fresh pool with groups `alpha`, `alpha_read`, `beta`, `Admins` and the users of the
/// scenarios, and the document function verifying the pool's tokens.
async fn env() -> Env {
    let moto = integration_tests::moto::shared().await;
    let pool = moto.create_user_pool().await;
    for g in ["alpha", "alpha_read", "beta", "Admins"] {
        pool.create_group(g).await;
    }
    pool.create_user("writer", None, &["alpha"]).await;
    pool.create_user("reader", None, &["alpha_read"]).await;
    pool.create_user("boss", None, &["Admins"]).await;
    pool.create_user("both", None, &["alpha", "beta"]).await;
    pool.create_user("tenanted", Some("gamma"), &[]).await;
    let config = TenantConfig {
        jwt: Some(pool.jwt_config()),
        ..TenantConfig::default()
    };
    let backend = Backend::moto().await;
    let documents = documents::Deps::new(
        config,
        backend.table.clone(),
        backend.blobs.clone(),
        PageTokens::new(b"cognito-test-paging-secret-01234"),
        documents::Limits::default(),
    );
    Env {
        pool,
        documents,
        _backend: backend,
    }
}

/// A request with `Authorization: Bearer <token>` and no authorizer claims.
fn bearer_request(
    token: &str,
    method: &str,
    path_and_query: &str,
    body: Option<&Value>,
) -> lambda_http::Request {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let bytes = body.map(|b| serde_json::to_vec(b).unwrap());
    let event = platform_http::http_api_event(&platform_http::HttpApiRequest {
        method,
        path,
        query,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("authorization".into(), format!("Bearer {token}")),
        ],
        body: bytes.as_deref(),
        claims: None,
        domain: "127.0.0.1:3000",
        request_id: "cognito",
    });
    platform_http::request_from_event(event).unwrap()
}

async fn docs(
    deps: &documents::Deps,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Resp {
    let req = bearer_request(token, method, path, body.as_ref());
    response(documents::handle(req, deps).await)
}

fn doc() -> Value {
    json!({"path": "a.txt", "contentType": "text/plain", "content": "hello"})
}

fn payload(token: &str) -> Value {
    let part = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("json")
}

/// What moto puts in its tokens. Compared with real Cognito ID tokens, moto's lack
/// `email_verified`, `event_id` and `at_hash` and add `jti`/`origin_jti`; `cognito:groups` is
/// absent for a user in no group (as in Cognito). Every pool of a moto server signs with the
/// same published key (`kid` "dummy"), so only the exact `iss` tells pools apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_token_claims() {
    let e = env().await;
    let (id, access) = e.pool.sign_in("both").await;
    let c = payload(&id);
    assert_eq!(c["iss"], e.pool.issuer());
    assert_eq!(c["aud"], e.pool.client_id);
    assert_eq!(c["token_use"], "id");
    assert_eq!(c["cognito:username"], "both");
    let mut groups: Vec<&str> = c["cognito:groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap())
        .collect();
    groups.sort();
    assert_eq!(groups, ["alpha", "beta"]);
    assert!(c["exp"].as_i64().unwrap() > c["iat"].as_i64().unwrap());
    assert!(c["sub"].is_string());
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(id.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "RS256");
    assert!(header["kid"].is_string());

    let c = payload(&e.pool.id_token("tenanted").await);
    assert_eq!(c["custom:tenantId"], "gamma");
    assert!(c.get("cognito:groups").is_none());

    let a = payload(&access);
    assert_eq!(a["token_use"], "access");
    assert_eq!(a["client_id"], e.pool.client_id);
    assert_eq!(a["username"], "both");
    assert!(a.get("aud").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn site_group_member_reads_and_writes() {
    let e = env().await;
    let t = e.pool.id_token("writer").await;
    let r = docs(
        &e.documents,
        &t,
        "POST",
        "/documents?siteId=alpha",
        Some(doc()),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.body["documentId"].as_str().unwrap().to_owned();
    let r = docs(
        &e.documents,
        &t,
        "GET",
        &format!("/documents/{id}?siteId=alpha"),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["userId"], "writer");
    // Its only site is the default target.
    let r = docs(&e.documents, &t, "GET", "/documents", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["documents"].as_array().unwrap().len(), 1);
    // Another site: 403.
    let r = docs(&e.documents, &t, "GET", "/documents?siteId=beta", None).await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    // The access token works as well (client_id instead of aud).
    let (_, access) = e.pool.sign_in("writer").await;
    let r = docs(
        &e.documents,
        &access,
        "GET",
        "/documents?siteId=alpha",
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_group_member_reads_only() {
    let e = env().await;
    let w = e.pool.id_token("writer").await;
    let r = docs(
        &e.documents,
        &w,
        "POST",
        "/documents?siteId=alpha",
        Some(doc()),
    )
    .await;
    assert_eq!(r.status, 201);
    let id = r.body["documentId"].as_str().unwrap().to_owned();

    let t = e.pool.id_token("reader").await;
    let r = docs(&e.documents, &t, "GET", "/documents?siteId=alpha", None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["documents"].as_array().unwrap().len(), 1);
    let r = docs(
        &e.documents,
        &t,
        "GET",
        &format!("/documents/{id}/content?siteId=alpha"),
        None,
    )
    .await;
    assert_eq!((r.status, r.body["content"].as_str()), (200, Some("hello")));
    let r = docs(
        &e.documents,
        &t,
        "POST",
        "/documents?siteId=alpha",
        Some(doc()),
    )
    .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    let r = docs(
        &e.documents,
        &t,
        "DELETE",
        &format!("/documents/{id}?siteId=alpha"),
        None,
    )
    .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_reaches_every_site_and_defaults_to_default() {
    let e = env().await;
    let t = e.pool.id_token("boss").await;
    for site in ["alpha", "beta"] {
        let r = docs(
            &e.documents,
            &t,
            "POST",
            &format!("/documents?siteId={site}"),
            Some(doc()),
        )
        .await;
        assert_eq!(r.status, 201, "{site}: {:?}", r.body);
        let r = docs(
            &e.documents,
            &t,
            "GET",
            &format!("/documents?siteId={site}"),
            None,
        )
        .await;
        assert_eq!(r.body["documents"].as_array().unwrap().len(), 1, "{site}");
    }
    // Without siteId: the default site (empty so far).
    let r = docs(&e.documents, &t, "POST", "/documents", Some(doc())).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["siteId"], "default");
    let r = docs(&e.documents, &t, "GET", "/documents", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["documents"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_of_two_sites_must_name_one() {
    let e = env().await;
    let t = e.pool.id_token("both").await;
    let r = docs(&e.documents, &t, "GET", "/documents", None).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    let m = r.body["message"].as_str().unwrap();
    assert!(
        m.contains("siteId") && m.contains("alpha") && m.contains("beta"),
        "{m}"
    );
    for site in ["alpha", "beta"] {
        let r = docs(
            &e.documents,
            &t,
            "GET",
            &format!("/documents?siteId={site}"),
            None,
        )
        .await;
        assert_eq!(r.status, 200, "{site}: {:?}", r.body);
        let r = docs(
            &e.documents,
            &t,
            "POST",
            &format!("/documents?siteId={site}"),
            Some(doc()),
        )
        .await;
        assert_eq!(r.status, 201, "{site}: {:?}", r.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_attribute_names_the_tenant() {
    let e = env().await;
    let t = e.pool.id_token("tenanted").await;
    let r = docs(&e.documents, &t, "POST", "/documents", Some(doc())).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["siteId"], "gamma");
    let r = docs(&e.documents, &t, "GET", "/documents?siteId=gamma", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["documents"].as_array().unwrap().len(), 1);
    // A siteId that contradicts the token's tenant: 401.
    let r = docs(&e.documents, &t, "GET", "/documents?siteId=alpha", None).await;
    assert_eq!(r.status, 401, "{:?}", r.body);
}

/// Flips one character of the token's `part` (0 header, 1 payload, 2 signature).
fn tamper(token: &str, part: usize) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let p = &mut parts[part];
    let i = p.len() / 2;
    let c = p.as_bytes()[i];
    let replacement = if c == b'A' { 'B' } else { 'A' };
    p.replace_range(i..i + 1, &replacement.to_string());
    parts.join(".")
}

/// A token whose payload is replaced by `claims`, keeping the original signature.
fn forge(token: &str, claims: &Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap());
    format!("{}.{payload}.{}", parts[0], parts[2])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_and_foreign_tokens_are_401() {
    let e = env().await;
    let t = e.pool.id_token("reader").await;
    let ok = docs(&e.documents, &t, "GET", "/documents?siteId=alpha", None).await;
    assert_eq!(ok.status, 200);

    // Promote the reader to the admin group by editing the payload.
    let mut claims = payload(&t);
    claims["cognito:groups"] = json!(["Admins"]);
    let forged = forge(&t, &claims);
    let mut tokens = vec![
        ("forged groups", forged),
        ("payload bit", tamper(&t, 1)),
        ("signature bit", tamper(&t, 2)),
        ("truncated", t[..t.len() - 10].to_owned()),
        ("not a jwt", "abc.def".to_owned()),
    ];
    // A genuine token of another pool on the same server (moto signs every pool with the same
    // key, so only the issuer check stops it).
    let moto = integration_tests::moto::shared().await;
    let other = moto.create_user_pool().await;
    other.create_group("Admins").await;
    other.create_user("boss", None, &["Admins"]).await;
    tokens.push(("other pool", other.id_token("boss").await));
    for (what, token) in &tokens {
        let r = docs(
            &e.documents,
            token,
            "POST",
            "/documents?siteId=alpha",
            Some(doc()),
        )
        .await;
        assert_eq!(r.status, 401, "{what}: {:?}", r.body);
        let r = docs(&e.documents, token, "GET", "/documents?siteId=alpha", None).await;
        assert_eq!(r.status, 401, "{what}: {:?}", r.body);
    }

    // A token for another app client of the pool: 401.
    let mut config = TenantConfig {
        jwt: Some(e.pool.jwt_config()),
        ..TenantConfig::default()
    };
    config.jwt.as_mut().unwrap().audiences = vec!["another-client".into()];
    let strict = documents::Deps::new(
        config,
        e.documents.table.clone(),
        e.documents.blobs.clone(),
        PageTokens::new(b"cognito-test-paging-secret-01234"),
        documents::Limits::default(),
    );
    let r = docs(&strict, &t, "GET", "/documents?siteId=alpha", None).await;
    assert_eq!(r.status, 401, "{:?}", r.body);

    // No token at all: 401.
    let req = integration_tests::request(None, "GET", "/documents?siteId=alpha", None);
    assert_eq!(
        response(documents::handle(req, &e.documents).await).status,
        401
    );
}

/// Automatic mode through the groups API on Cognito: an administrator's token (verified from
/// the bearer header) creates group `X` and adds a user; that user's next token opens site X.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_api_opens_a_site_for_the_next_token() {
    let e = env().await;
    let config = TenantConfig {
        jwt: Some(e.pool.jwt_config()),
        ..TenantConfig::default()
    };
    let directory = Arc::new(directory::CognitoDirectory::with_client(
        e.pool.client.clone(),
        e.pool.pool_id.clone(),
    ));
    let groups_deps = groups::Deps::new(config, directory, e.documents.table.clone());
    let call = |token: String, method: &'static str, path: &'static str, body: Option<Value>| {
        let req = bearer_request(&token, method, path, body.as_ref());
        let deps = &groups_deps;
        async move { response(groups::handle(req, deps).await) }
    };
    let boss = e.pool.id_token("boss").await;
    let writer = e.pool.id_token("writer").await;
    // A non-admin's genuine token: 403.
    let r = call(writer.clone(), "GET", "/groups", None).await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    let r = call(
        boss.clone(),
        "POST",
        "/groups",
        Some(json!({"group": {"name": "delta"}})),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = call(
        boss.clone(),
        "POST",
        "/groups/delta/users",
        Some(json!({"user": {"username": "writer"}})),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    // The token issued before still names alpha only ...
    let r = docs(
        &e.documents,
        &writer,
        "GET",
        "/documents?siteId=delta",
        None,
    )
    .await;
    assert_eq!(r.status, 403);
    // ... the next one opens delta.
    let next = e.pool.id_token("writer").await;
    let r = docs(
        &e.documents,
        &next,
        "POST",
        "/documents?siteId=delta",
        Some(doc()),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = call(boss.clone(), "GET", "/groups/delta/users", None).await;
    assert_eq!(r.body["users"][0]["username"], "writer");
}

/// Defined mode: sites and per-(site, group) permissions live in the table (sites function);
/// group names mean nothing by themselves. An administrator's bearer token defines a site and
/// grants a Cognito group READ, then READ WRITE, then revokes; the member's token follows,
/// each change biting within the permission cache bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defined_mode_grants_follow_the_sites_api() {
    let e = env().await;
    let ttl = Duration::from_millis(300);
    let config = TenantConfig {
        site_mode: SiteMode::Defined,
        permission_cache: ttl,
        jwt: Some(e.pool.jwt_config()),
        ..TenantConfig::default()
    };
    let table = e.documents.table.clone();
    let sites_deps = sites::Deps::new(config.clone(), table.clone());
    let documents = documents::Deps::new(
        config,
        table,
        e.documents.blobs.clone(),
        PageTokens::new(b"cognito-test-paging-secret-01234"),
        documents::Limits::default(),
    );
    let sites_call = |token: &str, method: &str, path: &str, body: Option<Value>| {
        let req = bearer_request(token, method, path, body.as_ref());
        let deps = &sites_deps;
        async move { response(sites::handle(req, deps).await) }
    };
    let boss = e.pool.id_token("boss").await;
    let writer = e.pool.id_token("writer").await;
    let wait = || tokio::time::sleep(ttl + Duration::from_millis(100));

    // Group `alpha` is not a site here: nothing yet.
    let r = docs(&documents, &writer, "GET", "/documents?siteId=alpha", None).await;
    assert!(r.status == 401 || r.status == 403, "{:?}", r.body);

    // Only an administrator defines sites.
    let r = sites_call(
        &writer,
        "POST",
        "/sites",
        Some(json!({"site": {"id": "omega"}})),
    )
    .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    let r = sites_call(
        &boss,
        "POST",
        "/sites",
        Some(json!({"site": {"id": "omega"}})),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = sites_call(
        &boss,
        "PUT",
        "/sites/omega/groups/alpha/permissions",
        Some(json!({"permissions": ["READ"]})),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    wait().await;
    let r = docs(&documents, &writer, "GET", "/documents?siteId=omega", None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = docs(
        &documents,
        &writer,
        "POST",
        "/documents?siteId=omega",
        Some(doc()),
    )
    .await;
    assert_eq!(r.status, 403, "{:?}", r.body);

    let r = sites_call(
        &boss,
        "PUT",
        "/sites/omega/groups/alpha/permissions",
        Some(json!({"permissions": ["READ", "WRITE"]})),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    wait().await;
    let r = docs(
        &documents,
        &writer,
        "POST",
        "/documents?siteId=omega",
        Some(doc()),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);

    let r = sites_call(&boss, "DELETE", "/sites/omega/groups/alpha", None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    wait().await;
    let r = docs(&documents, &writer, "GET", "/documents?siteId=omega", None).await;
    assert!(r.status == 401 || r.status == 403, "{:?}", r.body);
    // The administrator still reaches the site.
    let r = docs(&documents, &boss, "GET", "/documents?siteId=omega", None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["documents"].as_array().unwrap().len(), 1);
}
