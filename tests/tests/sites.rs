//! The sites API end to end through API Gateway events, on both backends, together with the
//! document API on the same table: defining sites and granting groups changes what the
//! document function lets a caller do (within the permission cache bound), every sites route
//! refuses what it must, automatic and single-tenant modes answer from groups, and switching
//! modes keeps the data.

use std::time::{Duration, Instant};

use documents::Limits;
use integration_tests::{Backend, Resp, User, request, response};
use serde_json::{Value, json};
use site_store::SiteStore;
use storage::PageTokens;
use tenant_context::{SiteId, SiteMode, TenantConfig};

/// The sites and documents functions of one deployment (one tenant model) on a backend.
struct Api {
    sites: sites::Deps,
    docs: documents::Deps,
}

fn api(backend: &Backend, config: TenantConfig) -> Api {
    Api {
        sites: sites::Deps::new(config.clone(), backend.table.clone()),
        docs: documents::Deps::new(
            config,
            backend.table.clone(),
            backend.blobs.clone(),
            PageTokens::new(b"integration-test-paging-secret!!"),
            Limits::default(),
        ),
    }
}

fn defined(cache: Duration) -> TenantConfig {
    TenantConfig {
        site_mode: SiteMode::Defined,
        permission_cache: cache,
        ..TenantConfig::default()
    }
}

fn automatic() -> TenantConfig {
    TenantConfig {
        site_mode: SiteMode::Automatic,
        ..TenantConfig::default()
    }
}

fn single_tenant() -> TenantConfig {
    TenantConfig {
        multi_tenancy: false,
        ..TenantConfig::default()
    }
}

impl Api {
    async fn sites(&self, user: &User, method: &str, path: &str, body: Option<Value>) -> Resp {
        let req = request(Some(user), method, path, body.as_ref());
        response(sites::handle(req, &self.sites).await)
    }

    async fn docs(&self, user: &User, method: &str, path: &str, body: Option<Value>) -> Resp {
        let req = request(Some(user), method, path, body.as_ref());
        response(documents::handle(req, &self.docs).await)
    }

    /// A sites request with a raw (possibly malformed) body.
    async fn raw(&self, user: &User, method: &str, path: &str, body: &str) -> Resp {
        let (p, q) = path.split_once('?').unwrap_or((path, ""));
        let claims = user.claims();
        let event = platform_http::http_api_event(&platform_http::HttpApiRequest {
            method,
            path: p,
            query: q,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Some(body.as_bytes()),
            claims: claims.as_object(),
            domain: "api.example.com",
            request_id: "raw",
        });
        response(
            sites::handle(
                platform_http::request_from_event(event).unwrap(),
                &self.sites,
            )
            .await,
        )
    }

    /// `POST /sites` by an administrator; must succeed.
    async fn define(&self, site: &str) {
        let r = self
            .sites(
                &admin(),
                "POST",
                "/sites",
                Some(json!({"site": {"id": site}})),
            )
            .await;
        assert_eq!(r.status, 201, "define {site}: {:?}", r.body);
    }

    /// `PUT /sites/{site}/groups/{group}/permissions` by an administrator; must succeed.
    async fn grant(&self, site: &str, group: &str, perms: &[&str]) {
        let r = self
            .sites(
                &admin(),
                "PUT",
                &format!("/sites/{site}/groups/{group}/permissions"),
                Some(json!({ "permissions": perms })),
            )
            .await;
        assert_eq!(r.status, 200, "grant {group} on {site}: {:?}", r.body);
    }

    /// Creates a text document in `site`; returns its id.
    async fn create_doc(&self, user: &User, site: &str, path: &str) -> String {
        let r = self
            .docs(
                user,
                "POST",
                &format!("/documents?siteId={site}"),
                Some(json!({"path": path, "content": "hello"})),
            )
            .await;
        assert_eq!(r.status, 201, "create in {site}: {:?}", r.body);
        r.body["documentId"].as_str().unwrap().to_owned()
    }
}

fn admin() -> User {
    User::new("root", &["Admins"])
}

fn msg(r: &Resp) -> &str {
    r.body["message"].as_str().unwrap_or_default()
}

fn site_ids(r: &Resp) -> Vec<&str> {
    r.body["sites"]
        .as_array()
        .unwrap_or_else(|| panic!("no sites in {:?}", r.body))
        .iter()
        .map(|s| s["siteId"].as_str().unwrap())
        .collect()
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(integration_tests::Backend::embedded()).await;
                }
            )*
        }
        mod moto {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(integration_tests::Backend::moto().await).await;
                }
            )*
        }
    };
}

on_both_backends!(
    defined_site_lifecycle_drives_document_access,
    revocation_bites_at_once_without_cache,
    revocation_bites_within_the_cache_ttl,
    sites_routes_refuse_other_tenants_and_missing_permissions,
    sites_routes_reject_bad_input,
    governors_manage_site_settings,
    automatic_mode_lists_sites_from_groups,
    single_tenant_mode_has_only_default,
    switching_modes_keeps_data,
);

async fn defined_site_lifecycle_drives_document_access(backend: Backend) {
    let api = api(&backend, defined(Duration::ZERO));
    let root = admin();
    let ann = User::new("ann", &["acme-team"]);

    let r = api
        .sites(
            &root,
            "POST",
            "/sites",
            Some(json!({"site": {"id": "acme", "title": "Acme Corp"}})),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(msg(&r), "Site 'acme' created");
    let r = api
        .sites(
            &root,
            "POST",
            "/sites",
            Some(json!({"site": {"siteId": "acme"}})),
        )
        .await;
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert!(msg(&r).contains("already exists"), "{:?}", r.body);
    for bad in ["global", "a#b", "", "-x", "a b"] {
        let r = api
            .sites(&root, "POST", "/sites", Some(json!({"site": {"id": bad}})))
            .await;
        assert_eq!(r.status, 400, "{bad:?}: {:?}", r.body);
        assert_eq!(r.body["errors"][0]["key"], "id", "{:?}", r.body);
    }
    let r = api
        .sites(
            &root,
            "POST",
            "/sites",
            Some(json!({"site": {"id": "global"}})),
        )
        .await;
    assert!(
        r.body["errors"][0]["error"]
            .as_str()
            .unwrap()
            .contains("reserved")
    );

    let r = api.sites(&root, "GET", "/sites/acme", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        json!({"siteId": "acme", "title": "Acme Corp", "status": "ACTIVE", "permission": "READ_WRITE",
               "permissions": ["READ", "WRITE", "DELETE", "GOVERN", "ADMIN"]})
    );

    // Defined but not granted: the token grants nothing (401).
    let r = api.docs(&ann, "GET", "/documents?siteId=acme", None).await;
    assert_eq!(r.status, 401, "{:?}", r.body);
    assert_eq!(api.sites(&ann, "GET", "/sites", None).await.status, 401);

    // READ: list yes, create no.
    api.grant("acme", "acme-team", &["read"]).await;
    let r = api
        .sites(&root, "GET", "/sites/acme/groups/acme-team", None)
        .await;
    assert_eq!(
        r.body,
        json!({"group": {"groupName": "acme-team", "permissions": ["READ"]}})
    );
    let r = api.docs(&ann, "GET", "/documents?siteId=acme", None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(api.docs(&ann, "GET", "/documents", None).await.status, 200);
    let r = api
        .docs(
            &ann,
            "POST",
            "/documents?siteId=acme",
            Some(json!({"path": "x", "content": "x"})),
        )
        .await;
    assert_eq!(r.status, 403, "{:?}", r.body);

    // WRITE: create works.
    api.grant("acme", "acme-team", &["READ", "WRITE"]).await;
    let doc = api.create_doc(&ann, "acme", "plans.txt").await;
    let r = api
        .docs(&ann, "GET", &format!("/documents/{doc}?siteId=acme"), None)
        .await;
    assert_eq!(
        (r.status, r.body["path"].as_str()),
        (200, Some("plans.txt"))
    );

    // GET /sites: exactly the caller's sites, with permissions.
    let r = api.sites(&ann, "GET", "/sites", None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.body,
        json!({"username": "ann", "groups": ["acme-team"], "sites": [
            {"siteId": "acme", "title": "Acme Corp", "status": "ACTIVE",
             "permission": "READ_WRITE", "permissions": ["READ", "WRITE"]}
        ]})
    );
    // Administrators: every defined site, plus default.
    api.define("beta").await;
    let r = api.sites(&root, "GET", "/sites", None).await;
    assert_eq!(site_ids(&r), ["acme", "beta", "default"]);
    for s in r.body["sites"].as_array().unwrap() {
        assert_eq!(s["permissions"].as_array().unwrap().len(), 5, "{s}");
    }
    assert!(
        r.body["sites"][2].get("status").is_none(),
        "default is not defined"
    );

    let r = api.sites(&root, "GET", "/sites/acme/groups", None).await;
    assert_eq!(
        r.body,
        json!({"groupNames": ["acme-team"],
               "groups": [{"groupName": "acme-team", "permissions": ["READ", "WRITE"]}]})
    );

    // A site that holds documents is not deleted.
    let r = api.sites(&root, "DELETE", "/sites/acme", None).await;
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert!(
        msg(&r).contains("still holds documents") && msg(&r).contains("delete them first"),
        "{:?}",
        r.body
    );
    assert_eq!(
        api.sites(&root, "GET", "/sites/acme", None).await.status,
        200
    );
    // ann may not delete documents (no DELETE); an administrator may.
    let r = api
        .docs(
            &ann,
            "DELETE",
            &format!("/documents/{doc}?siteId=acme"),
            None,
        )
        .await;
    assert_eq!(r.status, 403);
    let r = api
        .docs(
            &root,
            "DELETE",
            &format!("/documents/{doc}?siteId=acme"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    let r = api.sites(&root, "DELETE", "/sites/acme", None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(msg(&r), "Site 'acme' deleted");
    assert_eq!(
        api.sites(&root, "GET", "/sites/acme", None).await.status,
        404
    );
    assert_eq!(
        api.sites(&root, "DELETE", "/sites/acme", None).await.status,
        404
    );
    assert_eq!(
        api.sites(&root, "GET", "/sites/acme/groups/acme-team", None)
            .await
            .status,
        404
    );
    // The grants went with the site, in both directions.
    let store = SiteStore::new(backend.table.clone());
    assert!(store.sites_of_group("acme-team").await.unwrap().is_empty());
    assert!(
        store
            .site_groups(&SiteId::parse("acme").unwrap())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        api.docs(&ann, "GET", "/documents?siteId=acme", None)
            .await
            .status,
        401
    );
    let r = api.sites(&root, "GET", "/sites", None).await;
    assert_eq!(site_ids(&r), ["beta", "default"]);
}

async fn revocation_bites_at_once_without_cache(backend: Backend) {
    let api = api(&backend, defined(Duration::ZERO));
    let ann = User::new("ann", &["acme-team", "beta-team"]);
    api.define("acme").await;
    api.define("beta").await;
    api.grant("acme", "acme-team", &["READ"]).await;
    api.grant("beta", "beta-team", &["READ"]).await;
    assert_eq!(
        api.docs(&ann, "GET", "/documents?siteId=acme", None)
            .await
            .status,
        200
    );
    let r = api
        .sites(&admin(), "DELETE", "/sites/acme/groups/acme-team", None)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = api.docs(&ann, "GET", "/documents?siteId=acme", None).await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert_eq!(
        api.docs(&ann, "GET", "/documents?siteId=beta", None)
            .await
            .status,
        200
    );
    // Deleting it again: nothing to delete.
    let r = api
        .sites(&admin(), "DELETE", "/sites/acme/groups/acme-team", None)
        .await;
    assert_eq!(r.status, 404, "{:?}", r.body);
    // GET /sites follows as well.
    let r = api.sites(&ann, "GET", "/sites", None).await;
    assert_eq!(site_ids(&r), ["beta"]);
}

async fn revocation_bites_within_the_cache_ttl(backend: Backend) {
    let ttl = Duration::from_millis(300);
    let api = api(&backend, defined(ttl));
    let ann = User::new("ann", &["acme-team", "beta-team"]);
    api.define("acme").await;
    api.define("beta").await;
    api.grant("acme", "acme-team", &["READ"]).await;
    api.grant("beta", "beta-team", &["READ"]).await;

    let filled = Instant::now();
    assert_eq!(
        api.docs(&ann, "GET", "/documents?siteId=acme", None)
            .await
            .status,
        200
    );
    let r = api
        .sites(&admin(), "DELETE", "/sites/acme/groups/acme-team", None)
        .await;
    assert_eq!(r.status, 200);
    let r = api.docs(&ann, "GET", "/documents?siteId=acme", None).await;
    if filled.elapsed() < ttl - Duration::from_millis(50) {
        // Still inside the cache bound: the documents function has not seen the revocation.
        assert_eq!(r.status, 200, "cached grant: {:?}", r.body);
    }
    // Past the bound, the revocation bites.
    tokio::time::sleep((ttl + Duration::from_millis(50)).saturating_sub(filled.elapsed())).await;
    let r = api.docs(&ann, "GET", "/documents?siteId=acme", None).await;
    assert_eq!(r.status, 403, "{:?}", r.body);

    // A new grant also arrives within the bound.
    api.grant("acme", "acme-team", &["READ", "WRITE"]).await;
    tokio::time::sleep(ttl + Duration::from_millis(50)).await;
    api.create_doc(&ann, "acme", "after").await;
}

async fn sites_routes_refuse_other_tenants_and_missing_permissions(backend: Backend) {
    let api = api(&backend, defined(Duration::ZERO));
    let root = admin();
    for s in ["site-a", "site-b"] {
        api.define(s).await;
    }
    api.grant("site-a", "a-team", &["READ", "WRITE", "DELETE"])
        .await;
    api.grant("site-a", "a-read", &["READ"]).await;
    api.grant("site-a", "a-admin", &["ADMIN"]).await;
    api.grant("site-b", "b-team", &["READ", "WRITE", "DELETE"])
        .await;
    let bob = User::new("bob", &["b-team"]);
    let ann = User::new("ann", &["a-team"]);
    let reader = User::new("rita", &["a-read"]);
    let site_admin = User::new("sam", &["a-admin"]);
    let perms = Some(json!({"permissions": ["READ"]}));
    let patch = Some(json!({"site": {"title": "t"}}));

    // A caller of site B asking about site A: 403 on every route.
    let a_routes: Vec<(&str, &str, Option<Value>)> = vec![
        ("GET", "/sites/site-a", None),
        ("PATCH", "/sites/site-a", patch.clone()),
        ("DELETE", "/sites/site-a", None),
        ("GET", "/sites/site-a/groups", None),
        ("GET", "/sites/site-a/groups/a-team", None),
        ("DELETE", "/sites/site-a/groups/a-team", None),
        (
            "PUT",
            "/sites/site-a/groups/b-team/permissions",
            perms.clone(),
        ),
    ];
    for (m, p, body) in &a_routes {
        let r = api.sites(&bob, m, p, body.clone()).await;
        assert_eq!(r.status, 403, "bob {m} {p}: {:?}", r.body);
        assert!(msg(&r).contains("site-a"), "{:?}", r.body);
    }
    // Undefined sites and pages the same for everyone without a grant: nothing is revealed.
    for p in ["/sites/ghost", "/sites/ghost/groups"] {
        assert_eq!(api.sites(&bob, "GET", p, None).await.status, 403, "{p}");
    }
    // An administrator on an undefined site: 404 on every route.
    let ghost_routes: Vec<(&str, &str, Option<Value>)> = vec![
        ("GET", "/sites/ghost", None),
        ("PATCH", "/sites/ghost", patch.clone()),
        ("DELETE", "/sites/ghost", None),
        ("GET", "/sites/ghost/groups", None),
        ("GET", "/sites/ghost/groups/x", None),
        ("DELETE", "/sites/ghost/groups/x", None),
        ("PUT", "/sites/ghost/groups/x/permissions", perms.clone()),
    ];
    for (m, p, body) in &ghost_routes {
        let r = api.sites(&root, m, p, body.clone()).await;
        assert_eq!(r.status, 404, "admin {m} {p}: {:?}", r.body);
        assert!(msg(&r).contains("ghost"), "{:?}", r.body);
    }
    // Nothing was created by those requests.
    assert_eq!(
        api.sites(&root, "GET", "/sites/ghost", None).await.status,
        404
    );

    // Without the permission: 403.
    let r = api
        .sites(
            &ann,
            "POST",
            "/sites",
            Some(json!({"site": {"id": "mine"}})),
        )
        .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    for (who, m, p, body) in [
        (
            &ann,
            "PUT",
            "/sites/site-a/groups/a-team/permissions",
            perms.clone(),
        ),
        (&ann, "DELETE", "/sites/site-a/groups/a-read", None),
        (&ann, "DELETE", "/sites/site-a", None),
        (&ann, "PATCH", "/sites/site-a", patch.clone()),
        (&ann, "GET", "/sites/site-a/groups", None),
        (&reader, "PATCH", "/sites/site-a", patch.clone()),
        (&reader, "GET", "/sites/site-a/groups/a-read", None),
    ] {
        let r = api.sites(who, m, p, body).await;
        assert_eq!(r.status, 403, "{} {m} {p}: {:?}", who.name, r.body);
    }
    // ADMIN on one site does not make an administrator: grants and sites stay with the
    // administrators group.
    for (m, p, body) in [
        (
            "PUT",
            "/sites/site-a/groups/a-read/permissions",
            perms.clone(),
        ),
        ("DELETE", "/sites/site-a/groups/a-read", None),
        ("DELETE", "/sites/site-a", None),
    ] {
        let r = api.sites(&site_admin, m, p, body).await;
        assert_eq!(r.status, 403, "site admin {m} {p}: {:?}", r.body);
        assert!(msg(&r).contains("administrators"), "{:?}", r.body);
    }
    // ... but it governs the site.
    assert_eq!(
        api.sites(&site_admin, "GET", "/sites/site-a/groups", None)
            .await
            .status,
        200
    );
    let r = api
        .sites(
            &root,
            "POST",
            "/sites",
            Some(json!({"site": {"id": "site-c"}})),
        )
        .await;
    assert_eq!(r.status, 201);

    // What the caller may read.
    let r = api.sites(&reader, "GET", "/sites/site-a", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["permission"], "READ_ONLY");
    assert_eq!(r.body["permissions"], json!(["READ"]));
    let r = api.sites(&bob, "GET", "/sites", None).await;
    assert_eq!(site_ids(&r), ["site-b"]);
    let r = api.sites(&reader, "GET", "/sites", None).await;
    assert_eq!(r.body["sites"][0]["permission"], "READ_ONLY");

    // The path names the site; a siteId parameter may only repeat it.
    let r = api
        .sites(&root, "GET", "/sites/site-a?siteId=site-b", None)
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(
        api.sites(&ann, "GET", "/sites/site-a?siteId=site-a", None)
            .await
            .status,
        200
    );
    // A tenant claim naming another tenant: 401.
    let mut tenant_user = User::new("tess", &[]);
    tenant_user.tenant = Some("site-b".into());
    let r = api.sites(&tenant_user, "GET", "/sites/site-a", None).await;
    assert_eq!(r.status, 401, "{:?}", r.body);
    let r = api.sites(&tenant_user, "GET", "/sites/site-b", None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    // No credentials: 401 on every route.
    for (m, p) in [
        ("GET", "/sites"),
        ("POST", "/sites"),
        ("GET", "/sites/site-a"),
        ("PUT", "/sites/site-a/groups/x/permissions"),
    ] {
        let r = response(sites::handle(request(None, m, p, None), &api.sites).await);
        assert_eq!(r.status, 401, "{m} {p}");
    }
    // A token that grants nothing: 401.
    let nobody = User::new("nobody", &["authentication_only"]);
    assert_eq!(api.sites(&nobody, "GET", "/sites", None).await.status, 401);

    // Unknown routes 404, wrong methods 405.
    for (m, p, status) in [
        ("GET", "/sites/site-a/nope", 404),
        ("GET", "/sites/site-a/groups/a-team/permissions/x", 404),
        ("GET", "/sites/site-a/groups/a-team/permissions", 405),
        ("POST", "/sites/site-a", 405),
        ("PUT", "/sites", 405),
        ("DELETE", "/sites", 405),
        ("POST", "/sites/site-a/groups", 405),
        ("PATCH", "/sites/site-a/groups/a-team", 405),
    ] {
        let r = api.sites(&root, m, p, None).await;
        assert_eq!(r.status, status, "{m} {p}: {:?}", r.body);
        assert!(r.body["message"].is_string());
    }
}

async fn sites_routes_reject_bad_input(backend: Backend) {
    let api = api(&backend, defined(Duration::ZERO));
    let root = admin();
    api.define("site-a").await;
    api.grant("site-a", "a-team", &["READ"]).await;
    let long = "g".repeat(129);
    let long_path = format!("/sites/site-a/groups/{long}/permissions");
    let cases: Vec<(&str, &str, &str)> = vec![
        ("POST", "/sites", "{not json"),
        ("POST", "/sites", ""),
        ("POST", "/sites", "[]"),
        ("POST", "/sites", "{}"),
        ("POST", "/sites", r#"{"site": 5}"#),
        ("POST", "/sites", r#"{"site": {}}"#),
        ("POST", "/sites", r#"{"site": {"id": null}}"#),
        ("POST", "/sites", r#"{"site": {"id": 5}}"#),
        ("POST", "/sites", r#"{"site": {"id": "x", "siteId": "y"}}"#),
        (
            "POST",
            "/sites",
            r#"{"site": {"id": "x", "status": "GONE"}}"#,
        ),
        ("POST", "/sites", r#"{"site": {"id": "x", "title": 7}}"#),
        (
            "POST",
            "/sites",
            r#"{"site": {"id": "x", "title": "a\nb"}}"#,
        ),
        ("PATCH", "/sites/site-a", "{"),
        ("PATCH", "/sites/site-a", r#"{"site": {}}"#),
        ("PATCH", "/sites/site-a", r#"{"title": "not wrapped"}"#),
        ("PATCH", "/sites/site-a", r#"{"site": {"status": "nope"}}"#),
        ("PATCH", "/sites/site-a", r#"{"site": {"id": "other"}}"#),
        ("PUT", "/sites/site-a/groups/a-team/permissions", "{"),
        ("PUT", "/sites/site-a/groups/a-team/permissions", "{}"),
        (
            "PUT",
            "/sites/site-a/groups/a-team/permissions",
            r#"{"permissions": "READ"}"#,
        ),
        (
            "PUT",
            "/sites/site-a/groups/a-team/permissions",
            r#"{"permissions": ["READ", "OWNER"]}"#,
        ),
        (
            "PUT",
            "/sites/site-a/groups/a-team/permissions",
            r#"{"permissions": [1]}"#,
        ),
        ("PUT", &long_path, r#"{"permissions": ["READ"]}"#),
        (
            "PUT",
            "/sites/site-a/groups/a%0Ab/permissions",
            r#"{"permissions": ["READ"]}"#,
        ),
        (
            "PUT",
            "/sites/site-a/groups/Admins/permissions",
            r#"{"permissions": ["READ"]}"#,
        ),
        (
            "PUT",
            "/sites/site-a/groups/authentication_only/permissions",
            r#"{"permissions": ["READ"]}"#,
        ),
        ("GET", "/sites/a%23b", ""),
        ("GET", "/sites/global", ""),
        ("GET", "/sites/global/groups", ""),
        ("DELETE", "/sites/-x", ""),
        ("GET", "/sites?status=SOMETIMES", ""),
        ("GET", "/sites/site-a/groups/%00", ""),
    ];
    for (m, p, body) in &cases {
        let r = api.raw(&root, m, p, body).await;
        assert_eq!(r.status, 400, "{m} {p} {body}: {:?}", r.body);
        assert!(
            r.body["message"].is_string() || r.body["errors"].is_array(),
            "{body}: {:?}",
            r.body
        );
    }
    let r = api
        .raw(
            &root,
            "PUT",
            "/sites/site-a/groups/a-team/permissions",
            r#"{"permissions": ["READ", "OWNER"]}"#,
        )
        .await;
    assert_eq!(r.body["errors"][0]["key"], "permissions");
    assert!(
        r.body["errors"][0]["error"]
            .as_str()
            .unwrap()
            .contains("OWNER")
    );

    // Nothing of the above was written.
    let r = api.sites(&root, "GET", "/sites", None).await;
    assert_eq!(site_ids(&r), ["default", "site-a"]);
    let r = api.sites(&root, "GET", "/sites/site-a/groups", None).await;
    assert_eq!(
        r.body["groups"],
        json!([{"groupName": "a-team", "permissions": ["READ"]}])
    );
    let r = api.sites(&root, "GET", "/sites/site-a", None).await;
    assert_eq!(r.body["status"], "ACTIVE");
    assert!(r.body.get("title").is_none());

    // Permission names are case-insensitive and stored with what they imply; group names in
    // paths are percent-decoded (Cognito group names have no spaces, but may have `/`).
    let r = api
        .sites(
            &root,
            "PUT",
            "/sites/site-a/groups/team%2Ftwo/permissions",
            Some(json!({"permissions": ["write", "Delete"]})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = api
        .sites(&root, "GET", "/sites/site-a/groups/team%2Ftwo", None)
        .await;
    assert_eq!(
        r.body,
        json!({"group": {"groupName": "team/two", "permissions": ["READ", "WRITE", "DELETE"]}})
    );
    let two = User::new("tim", &["team/two"]);
    assert_eq!(
        api.docs(&two, "GET", "/documents?siteId=site-a", None)
            .await
            .status,
        200
    );
    // An empty list removes the grant.
    let r = api
        .sites(
            &root,
            "PUT",
            "/sites/site-a/groups/team%2Ftwo/permissions",
            Some(json!({"permissions": []})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        api.sites(&root, "GET", "/sites/site-a/groups/team%2Ftwo", None)
            .await
            .status,
        404
    );
    assert_eq!(
        api.docs(&two, "GET", "/documents?siteId=site-a", None)
            .await
            .status,
        401
    );
}

async fn governors_manage_site_settings(backend: Backend) {
    let api = api(&backend, defined(Duration::ZERO));
    let root = admin();
    api.define("site-a").await;
    api.define("site-b").await;
    api.grant("site-a", "a-gov", &["GOVERN"]).await;
    api.grant("site-a", "a-team", &["READ", "WRITE"]).await;
    let gus = User::new("gus", &["a-gov"]);

    let r = api
        .sites(
            &gus,
            "PATCH",
            "/sites/site-a",
            Some(json!({"site": {"title": "Team A", "status": "inactive"}})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = api.sites(&gus, "GET", "/sites/site-a", None).await;
    assert_eq!(
        r.body,
        json!({"siteId": "site-a", "title": "Team A", "status": "INACTIVE",
               "permission": "READ_ONLY", "permissions": ["READ", "GOVERN"]})
    );
    let r = api.sites(&gus, "GET", "/sites/site-a/groups", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["groupNames"], json!(["a-gov", "a-team"]));
    let r = api
        .sites(&gus, "GET", "/sites/site-a/groups/a-team", None)
        .await;
    assert_eq!(r.body["group"]["permissions"], json!(["READ", "WRITE"]));
    let r = api
        .sites(&gus, "GET", "/sites/site-a/groups/nobody", None)
        .await;
    assert_eq!(r.status, 404);
    // Governing is not granting.
    let r = api
        .sites(
            &gus,
            "PUT",
            "/sites/site-a/groups/a-gov/permissions",
            Some(json!({"permissions": ["ADMIN"]})),
        )
        .await;
    assert_eq!(r.status, 403);
    // ... and not another site's settings.
    let r = api
        .sites(
            &gus,
            "PATCH",
            "/sites/site-b",
            Some(json!({"site": {"title": "x"}})),
        )
        .await;
    assert_eq!(r.status, 403);

    // The status filter of GET /sites.
    let r = api
        .sites(&root, "GET", "/sites?status=INACTIVE", None)
        .await;
    assert_eq!(site_ids(&r), ["site-a"]);
    let r = api.sites(&root, "GET", "/sites?status=active", None).await;
    assert_eq!(site_ids(&r), ["site-b"]);
    // Clearing the title.
    let r = api
        .sites(
            &root,
            "PATCH",
            "/sites/site-a",
            Some(json!({"site": {"title": ""}})),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = api.sites(&root, "GET", "/sites/site-a", None).await;
    assert!(r.body.get("title").is_none(), "{:?}", r.body);
    assert_eq!(r.body["status"], "INACTIVE");
}

async fn automatic_mode_lists_sites_from_groups(backend: Backend) {
    let api = api(&backend, automatic());
    let writer = User::new("wes", &["sales"]);
    let reader = User::new("rae", &["sales_read"]);
    let two = User::new("tia", &["sales", "hr_read", "authentication_only"]);
    let root = User::new("root", &["Admins", "sales"]);

    let r = api.sites(&writer, "GET", "/sites", None).await;
    assert_eq!(
        r.body,
        json!({"username": "wes", "groups": ["sales"], "sites": [
            {"siteId": "sales", "status": "ACTIVE", "permission": "READ_WRITE",
             "permissions": ["READ", "WRITE", "DELETE"]}
        ]})
    );
    let r = api.sites(&reader, "GET", "/sites", None).await;
    assert_eq!(
        r.body["sites"],
        json!([{"siteId": "sales", "status": "ACTIVE", "permission": "READ_ONLY",
                "permissions": ["READ"]}])
    );
    let r = api.sites(&two, "GET", "/sites", None).await;
    assert_eq!(site_ids(&r), ["hr", "sales"]);
    assert_eq!(r.body["sites"][0]["permission"], "READ_ONLY");
    assert_eq!(r.body["sites"][1]["permission"], "READ_WRITE");
    let r = api.sites(&root, "GET", "/sites", None).await;
    assert_eq!(site_ids(&r), ["default", "sales"]);
    for s in r.body["sites"].as_array().unwrap() {
        assert_eq!(s["permissions"].as_array().unwrap().len(), 5, "{s}");
    }

    // GET /sites/{siteId} works from groups too.
    let r = api.sites(&reader, "GET", "/sites/sales", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["permissions"], json!(["READ"]));
    assert!(r.body.get("title").is_none());
    assert_eq!(
        api.sites(&writer, "GET", "/sites/hr", None).await.status,
        403
    );

    // Sites are not defined here: 400 explaining automatic mode, on every defined-only route.
    let r = api
        .sites(
            &root,
            "POST",
            "/sites",
            Some(json!({"site": {"id": "new"}})),
        )
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert!(
        msg(&r).contains("automatic") && msg(&r).contains("SiteMode"),
        "{:?}",
        r.body
    );
    for (m, p, body) in [
        (
            "PATCH",
            "/sites/sales",
            Some(json!({"site": {"title": "x"}})),
        ),
        ("DELETE", "/sites/sales", None),
        ("GET", "/sites/sales/groups", None),
        ("GET", "/sites/sales/groups/sales", None),
        ("DELETE", "/sites/sales/groups/sales", None),
        (
            "PUT",
            "/sites/sales/groups/sales/permissions",
            Some(json!({"permissions": ["READ"]})),
        ),
    ] {
        let r = api.sites(&root, m, p, body).await;
        assert_eq!(r.status, 400, "{m} {p}: {:?}", r.body);
        assert!(msg(&r).contains("automatic"), "{:?}", r.body);
    }
    let r = api.sites(&root, "GET", "/sites?status=ACTIVE", None).await;
    assert_eq!(r.status, 400);
}

async fn single_tenant_mode_has_only_default(backend: Backend) {
    let api = api(&backend, single_tenant());
    let r = api
        .sites(&User::new("u", &["whatever"]), "GET", "/sites", None)
        .await;
    assert_eq!(
        r.body["sites"],
        json!([{"siteId": "default", "status": "ACTIVE", "permission": "READ_WRITE",
                "permissions": ["READ", "WRITE", "DELETE"]}])
    );
    let r = api
        .sites(&User::new("r", &["default_read"]), "GET", "/sites", None)
        .await;
    assert_eq!(r.body["sites"][0]["permission"], "READ_ONLY");
    let r = api.sites(&admin(), "GET", "/sites", None).await;
    assert_eq!(site_ids(&r), ["default"]);
    assert_eq!(
        r.body["sites"][0]["permissions"].as_array().unwrap().len(),
        5
    );
    let r = api
        .sites(
            &admin(),
            "POST",
            "/sites",
            Some(json!({"site": {"id": "x"}})),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(msg(&r).contains("multi-tenancy"), "{:?}", r.body);
    assert_eq!(
        api.sites(&admin(), "GET", "/sites/default", None)
            .await
            .status,
        200
    );
}

async fn switching_modes_keeps_data(backend: Backend) {
    // Single tenant: the data is site `default`.
    let single = api(&backend, single_tenant());
    let solo = User::new("solo", &[]);
    let r = single
        .docs(
            &solo,
            "POST",
            "/documents",
            Some(json!({"path": "from single tenant", "content": "x"})),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let single_doc = r.body["documentId"].as_str().unwrap().to_owned();

    // Multi-tenancy on: the same document is site `default`'s.
    let auto = api(&backend, automatic());
    let member = User::new("dee", &["default"]);
    for path in [
        format!("/documents/{single_doc}?siteId=default"),
        format!("/documents/{single_doc}"),
    ] {
        let r = auto.docs(&member, "GET", &path, None).await;
        assert_eq!(r.status, 200, "{path}: {:?}", r.body);
        assert_eq!(r.body["path"], "from single tenant");
    }
    let r = auto
        .docs(&admin(), "GET", &format!("/documents/{single_doc}"), None)
        .await;
    assert_eq!(r.status, 200, "admin without siteId: {:?}", r.body);
    assert_eq!(r.body["siteId"], "default");

    // An automatic-mode site's documents ...
    let leo = User::new("leo", &["legacy"]);
    let legacy_doc = auto.create_doc(&leo, "legacy", "from automatic mode").await;

    // ... are out of reach in defined mode until the site is defined and granted.
    let defined_api = api(&backend, defined(Duration::ZERO));
    let path = format!("/documents/{legacy_doc}?siteId=legacy");
    let r = defined_api.docs(&leo, "GET", &path, None).await;
    assert_eq!(r.status, 401, "{:?}", r.body);
    defined_api.define("other").await;
    defined_api.grant("other", "other-team", &["READ"]).await;
    let leo2 = User::new("leo2", &["legacy", "other-team"]);
    let r = defined_api.docs(&leo2, "GET", &path, None).await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    // Defining the site again attaches the data.
    let r = defined_api
        .sites(
            &admin(),
            "POST",
            "/sites",
            Some(json!({"site": {"id": "legacy"}})),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    // Deleting it would lose the data: refused.
    let r = defined_api
        .sites(&admin(), "DELETE", "/sites/legacy", None)
        .await;
    assert_eq!(r.status, 409);
    defined_api.grant("legacy", "legacy", &["READ"]).await;
    for u in [&leo, &leo2] {
        let r = defined_api.docs(u, "GET", &path, None).await;
        assert_eq!(r.status, 200, "{}: {:?}", u.name, r.body);
        assert_eq!(r.body["path"], "from automatic mode");
    }
    let r = defined_api
        .docs(
            &leo,
            "POST",
            "/documents?siteId=legacy",
            Some(json!({"path": "x"})),
        )
        .await;
    assert_eq!(r.status, 403);
    // The single-tenant document stays with `default`, for administrators in defined mode.
    let r = defined_api
        .docs(&admin(), "GET", &format!("/documents/{single_doc}"), None)
        .await;
    assert_eq!(r.status, 200);
}
