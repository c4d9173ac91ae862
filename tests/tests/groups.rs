//! The groups API end to end through API Gateway events, on the embedded directory (redb) and on
//! Cognito (moto, a fresh user pool per test): every route, the admin-only gate, bad input,
//! paging, and what a group means in automatic site mode (a new group `X` is a new site `X`,
//! usable by its members at once through the document API).

use std::collections::BTreeSet;
use std::sync::Arc;

use directory::{CognitoDirectory, Directory, EmbeddedDirectory};
use integration_tests::moto::CognitoPool;
use integration_tests::{Backend, Resp, User, request, response};
use serde_json::{Value, json};
use storage::PageTokens;
use tenant_context::{SiteMode, TenantConfig};

const PAGING_SECRET: &[u8] = b"integration-test-paging-secret!!";

struct Api {
    groups: groups::Deps,
    documents: documents::Deps,
    directory: Arc<dyn Directory>,
    _backend: Backend,
    _pool: Option<CognitoPool>,
}

impl Api {
    fn build(backend: Backend, directory: Arc<dyn Directory>, pool: Option<CognitoPool>) -> Api {
        let config = TenantConfig::default();
        Api {
            groups: groups::Deps::new(config.clone(), directory.clone(), backend.table.clone()),
            documents: documents::Deps::new(
                config,
                backend.table.clone(),
                backend.blobs.clone(),
                PageTokens::new(PAGING_SECRET),
                documents::Limits::default(),
            ),
            directory,
            _backend: backend,
            _pool: pool,
        }
    }

    /// The embedded directory in the embedded backend's table (as the local server runs it).
    fn embedded() -> Api {
        let backend = Backend::embedded();
        let directory = Arc::new(EmbeddedDirectory::new(
            backend.table.clone(),
            PageTokens::new(PAGING_SECRET),
        ));
        Api::build(backend, directory, None)
    }

    /// Cognito on moto (a fresh user pool), with DynamoDB and S3 on moto for the documents.
    async fn cognito() -> Api {
        let moto = integration_tests::moto::shared().await;
        let pool = moto.create_user_pool().await;
        let directory = Arc::new(CognitoDirectory::with_client(
            pool.client.clone(),
            pool.pool_id.clone(),
        ));
        Api::build(Backend::moto().await, directory, Some(pool))
    }

    async fn call(&self, user: &User, method: &str, path: &str, body: Option<Value>) -> Resp {
        let req = request(Some(user), method, path, body.as_ref());
        response(groups::handle(req, &self.groups).await)
    }

    /// A request with a raw (possibly malformed) body.
    async fn raw(&self, user: &User, method: &str, path: &str, body: &str) -> Resp {
        let (p, q) = path.split_once('?').unwrap_or((path, ""));
        let event = platform_http::http_api_event(&platform_http::HttpApiRequest {
            method,
            path: p,
            query: q,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Some(body.as_bytes()),
            claims: user.claims().as_object(),
            domain: "api.example.com",
            request_id: "raw",
        });
        let req = platform_http::request_from_event(event).unwrap();
        response(groups::handle(req, &self.groups).await)
    }

    async fn docs(&self, user: &User, method: &str, path: &str, body: Option<Value>) -> Resp {
        let req = request(Some(user), method, path, body.as_ref());
        response(documents::handle(req, &self.documents).await)
    }

    /// The user as their next token describes them: `cognito:groups` from the directory.
    async fn token_of(&self, username: &str) -> User {
        let groups = match self.directory.groups_of_user(username).await {
            Ok(g) => g,
            Err(directory::DirectoryError::NotFound(_)) => Vec::new(),
            Err(e) => panic!("groups of {username}: {e}"),
        };
        User {
            name: username.into(),
            groups,
            tenant: None,
        }
    }

    async fn create_group(&self, name: &str) {
        let r = self
            .call(
                &admin(),
                "POST",
                "/groups",
                Some(json!({"group": {"name": name}})),
            )
            .await;
        assert_eq!(r.status, 201, "create {name}: {:?}", r.body);
    }

    async fn add_user(&self, group: &str, username: &str) {
        let r = self
            .call(
                &admin(),
                "POST",
                &format!("/groups/{group}/users"),
                Some(json!({"user": {"username": username}})),
            )
            .await;
        assert_eq!(r.status, 201, "add {username} to {group}: {:?}", r.body);
    }

    async fn group_names(&self) -> BTreeSet<String> {
        let r = self.call(&admin(), "GET", "/groups?limit=100", None).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.body["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].as_str().unwrap().to_owned())
            .collect()
    }
}

macro_rules! on_both_directories {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Api::embedded()).await;
                }
            )*
        }
        mod cognito {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Api::cognito().await).await;
                }
            )*
        }
    };
}

on_both_directories!(
    every_route,
    unknown_groups_and_users_are_404,
    only_admins_may_use_any_route,
    bad_input_is_400_and_writes_nothing,
    paging_across_pages,
    a_new_group_is_a_new_site_at_once,
    defined_mode_admins_only,
);

fn admin() -> User {
    User::new("admin", &["Admins"])
}

fn is_iso(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() == 24 && s.ends_with('Z') && s.as_bytes()[10] == b'T')
}

async fn every_route(api: Api) {
    let a = admin();
    let r = api.call(&a, "GET", "/groups", None).await;
    assert_eq!((r.status, &r.body), (200, &json!({"groups": []})));

    let r = api
        .call(
            &a,
            "POST",
            "/groups",
            Some(json!({"group": {"name": "marketing", "description": "Marketing team"}})),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body, json!({"message": "group 'marketing' created"}));
    api.create_group("marketing_read").await;
    // Duplicate: 409.
    let r = api
        .call(
            &a,
            "POST",
            "/groups",
            Some(json!({"group": {"name": "marketing"}})),
        )
        .await;
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert!(r.body["message"].as_str().unwrap().contains("marketing"));

    let r = api.call(&a, "GET", "/groups", None).await;
    assert_eq!(r.status, 200);
    let groups = r.body["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2);
    assert!(r.body.get("next").is_none(), "{:?}", r.body);
    let m = groups.iter().find(|g| g["name"] == "marketing").unwrap();
    assert_eq!(m["description"], "Marketing team");
    assert!(
        is_iso(&m["insertedDate"]) && is_iso(&m["lastModifiedDate"]),
        "{m}"
    );

    let r = api.call(&a, "GET", "/groups/marketing", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["group"]["name"], "marketing");
    assert_eq!(r.body["group"]["description"], "Marketing team");
    assert!(is_iso(&r.body["group"]["insertedDate"]));
    let r = api.call(&a, "GET", "/groups/marketing_read", None).await;
    assert_eq!(r.body["group"]["description"], "");

    // Users: created on first add; e-mail usernames are the user's email.
    let r = api
        .call(
            &a,
            "POST",
            "/groups/marketing/users",
            Some(json!({"user": {"username": "jane@example.com", "attributes": {"givenName": "Jane"}}})),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(
        r.body["message"],
        "user 'jane@example.com' added to group 'marketing'"
    );
    api.add_user("marketing", "bob").await;
    api.add_user("marketing", "bob").await; // idempotent
    api.add_user("marketing_read", "bob").await;

    let r = api.call(&a, "GET", "/groups/marketing/users", None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let users = r.body["users"].as_array().unwrap();
    assert_eq!(users.len(), 2, "{users:?}");
    let jane = users
        .iter()
        .find(|u| u["username"] == "jane@example.com")
        .unwrap();
    assert_eq!(jane["email"], "jane@example.com");
    assert_eq!(jane["enabled"], true);
    assert!(jane["userStatus"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(is_iso(&jane["insertedDate"]) && is_iso(&jane["lastModifiedDate"]));
    assert_eq!(
        api.directory.groups_of_user("bob").await.unwrap(),
        ["marketing", "marketing_read"]
    );

    // Percent-encoded path segments are decoded.
    let r = api
        .call(
            &a,
            "DELETE",
            "/groups/marketing/users/jane%40example.com",
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.body["message"],
        "user 'jane@example.com' removed from group 'marketing'"
    );
    let r = api.call(&a, "GET", "/groups/marketing/users", None).await;
    assert_eq!(r.body["users"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["users"][0]["username"], "bob");

    api.create_group("jane.doe+x@example.com").await;
    let r = api
        .call(&a, "GET", "/groups/jane.doe%2Bx%40example.com", None)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["group"]["name"], "jane.doe+x@example.com");

    let r = api.call(&a, "DELETE", "/groups/marketing", None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["message"], "group 'marketing' deleted");
    let r = api.call(&a, "GET", "/groups/marketing", None).await;
    assert_eq!(r.status, 404);
    assert_eq!(
        api.directory.groups_of_user("bob").await.unwrap(),
        ["marketing_read"]
    );
    assert_eq!(
        api.group_names().await,
        BTreeSet::from([
            "marketing_read".to_owned(),
            "jane.doe+x@example.com".to_owned()
        ])
    );

    // The fixed-meaning groups can be created; the administrators group cannot be deleted.
    for g in ["Admins", "default_read", "authentication_only", "x_govern"] {
        api.create_group(g).await;
    }
    let r = api.call(&a, "DELETE", "/groups/Admins", None).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert!(api.group_names().await.contains("Admins"));

    // Wrong methods and unknown routes.
    for (m, p, want) in [
        ("PUT", "/groups", 405),
        ("PATCH", "/groups/x_govern", 405),
        ("PUT", "/groups/x_govern/users", 405),
        ("GET", "/groups/x_govern/users/bob", 405),
        ("GET", "/groups/x_govern/members", 404),
        ("GET", "/groups/x_govern/users/bob/extra", 404),
    ] {
        let r = api.call(&a, m, p, None).await;
        assert_eq!(r.status, want, "{m} {p}: {:?}", r.body);
        assert!(r.body["message"].is_string());
    }
}

async fn unknown_groups_and_users_are_404(api: Api) {
    let a = admin();
    api.create_group("known").await;
    api.add_user("known", "member").await;
    let user = json!({"user": {"username": "someone"}});
    for (m, p, body) in [
        ("GET", "/groups/unknown", None),
        ("DELETE", "/groups/unknown", None),
        ("GET", "/groups/unknown/users", None),
        ("POST", "/groups/unknown/users", Some(user.clone())),
        ("DELETE", "/groups/unknown/users/member", None),
        ("DELETE", "/groups/known/users/nobody", None),
        ("GET", "/groups/global", None),
    ] {
        let r = api.call(&a, m, p, body).await;
        assert_eq!(r.status, 404, "{m} {p}: {:?}", r.body);
        assert!(r.body["message"].as_str().unwrap().contains("not found"));
    }
    // Adding to an unknown group created no user.
    assert!(api.directory.groups_of_user("someone").await.is_err());
}

async fn only_admins_may_use_any_route(api: Api) {
    api.create_group("team").await;
    api.add_user("team", "member").await;
    let mut with_tenant = User::new("tenant-user", &[]);
    with_tenant.tenant = Some("team".into());
    let callers = [
        User::new("m", &["team"]),
        User::new("g", &["team_govern"]),
        User::new("r", &["team_read"]),
        User::new("d", &["default"]),
        User::new("ao", &["authentication_only"]),
        User::new("none", &[]),
        User::new("admins-lookalike", &["admins", "Admins_read"]),
        with_tenant,
    ];
    let group = json!({"group": {"name": "sneaky"}});
    let user = json!({"user": {"username": "sneaky"}});
    let routes: Vec<(&str, &str, Option<Value>)> = vec![
        ("GET", "/groups", None),
        ("GET", "/groups?limit=0", None),
        ("POST", "/groups", Some(group.clone())),
        (
            "POST",
            "/groups",
            Some(json!({"group": {"name": "global"}})),
        ),
        ("GET", "/groups/team", None),
        ("GET", "/groups/unknown", None),
        ("DELETE", "/groups/team", None),
        ("GET", "/groups/team/users", None),
        ("POST", "/groups/team/users", Some(user.clone())),
        (
            "POST",
            "/groups/team/users",
            Some(json!({"user": {"username": "a b"}})),
        ),
        ("DELETE", "/groups/team/users/member", None),
        ("GET", "/groups/%01/users", None),
    ];
    for caller in &callers {
        for (m, p, body) in &routes {
            let r = api.call(caller, m, p, body.clone()).await;
            assert_eq!(r.status, 403, "{} {m} {p}: {:?}", caller.name, r.body);
            assert!(
                r.body["message"].as_str().unwrap().contains("ADMIN"),
                "{:?}",
                r.body
            );
        }
    }
    // Without credentials: 401.
    let req = request(None, "GET", "/groups", None);
    assert_eq!(response(groups::handle(req, &api.groups).await).status, 401);
    // Nothing was written.
    assert_eq!(api.group_names().await, BTreeSet::from(["team".to_owned()]));
    let r = api.call(&admin(), "GET", "/groups/team/users", None).await;
    assert_eq!(r.body["users"].as_array().unwrap().len(), 1);
    assert!(api.directory.groups_of_user("sneaky").await.is_err());
}

async fn bad_input_is_400_and_writes_nothing(api: Api) {
    let a = admin();
    api.create_group("team").await;
    let long = "a".repeat(129);
    let bad_bodies: Vec<(&str, &str)> = vec![
        ("POST", ""),
        ("POST", "not json"),
        ("POST", "[]"),
        ("POST", "{}"),
        ("POST", r#"{"group": "team2"}"#),
        ("POST", r#"{"group": null}"#),
        ("POST", r#"{"group": {}}"#),
        ("POST", r#"{"group": {"name": 7}}"#),
        ("POST", r#"{"group": {"name": ""}}"#),
        ("POST", r#"{"group": {"name": "global"}}"#),
        ("POST", r#"{"group": {"name": "global_read"}}"#),
        ("POST", r#"{"group": {"name": "_read"}}"#),
        ("POST", r#"{"group": {"name": "a b"}}"#),
        ("POST", r##"{"group": {"name": "a#b"}}"##),
        ("POST", r#"{"group": {"name": "a/b"}}"#),
        ("POST", r#"{"group": {"name": "-x"}}"#),
        ("POST", r#"{"group": {"name": "caf\u00e9"}}"#),
        ("POST", r#"{"group": {"name": "ok", "description": 5}}"#),
    ];
    for (m, body) in &bad_bodies {
        let r = api.raw(&a, m, "/groups", body).await;
        assert_eq!(r.status, 400, "{body}: {:?}", r.body);
        assert!(
            r.body["message"].is_string() || r.body["errors"][0]["error"].is_string(),
            "{body}: {:?}",
            r.body
        );
    }
    let r = api
        .call(
            &a,
            "POST",
            "/groups",
            Some(json!({"group": {"name": long}})),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = api
        .call(
            &a,
            "POST",
            "/groups",
            Some(json!({"group": {"name": "ok", "description": "d".repeat(2049)}})),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["errors"][0]["key"], "description");
    // The reason is given.
    let r = api
        .raw(&a, "POST", "/groups", r#"{"group": {"name": "global"}}"#)
        .await;
    assert_eq!(r.body["errors"][0]["key"], "name");
    assert!(
        r.body["errors"][0]["error"]
            .as_str()
            .unwrap()
            .contains("reserved"),
        "{:?}",
        r.body
    );

    let users: Vec<String> = vec![
        "".into(),
        "[]".into(),
        "{}".into(),
        r#"{"user": "bob"}"#.into(),
        r#"{"user": {}}"#.into(),
        r#"{"user": {"username": 1}}"#.into(),
        r#"{"user": {"username": ""}}"#.into(),
        r#"{"user": {"username": "a b"}}"#.into(),
        r#"{"user": {"username": "a/b"}}"#.into(),
        r#"{"user": {"username": "a\u0001"}}"#.into(),
        format!(r#"{{"user": {{"username": "{long}"}}}}"#),
        r#"{"user": {"username": "ok", "attributes": "x"}}"#.into(),
    ];
    for body in &users {
        let r = api.raw(&a, "POST", "/groups/team/users", body).await;
        assert_eq!(r.status, 400, "{body}: {:?}", r.body);
    }
    for path in [
        "/groups?limit=0",
        "/groups?limit=101",
        "/groups?limit=ten",
        "/groups?limit=-1",
        "/groups?next=garbage",
        "/groups/team/users?limit=0",
        "/groups/team/users?next=garbage",
        "/groups/a%01b",
        "/groups/%FF",
        "/groups/team/users/%FF",
        "/groups/team/users/a%20b",
        "/groups/team/users/a%2Fb",
    ] {
        let m = if path.contains("/users/") {
            "DELETE"
        } else {
            "GET"
        };
        let r = api.call(&a, m, path, None).await;
        assert_eq!(r.status, 400, "{m} {path}: {:?}", r.body);
        assert!(r.body["message"].is_string(), "{path}: {:?}", r.body);
    }
    // Nothing was written.
    assert_eq!(api.group_names().await, BTreeSet::from(["team".to_owned()]));
    let r = api.call(&a, "GET", "/groups/team/users", None).await;
    assert_eq!(r.body["users"], json!([]));
}

/// Follows `next` from `path` (which has a `?`), returning the page sizes and every item.
async fn pages(api: &Api, path: &str, key: &str, name: &str) -> (Vec<usize>, Vec<String>) {
    let mut sizes = Vec::new();
    let mut items = Vec::new();
    let mut url = path.to_owned();
    for _ in 0..100 {
        let r = api.call(&admin(), "GET", &url, None).await;
        assert_eq!(r.status, 200, "{url}: {:?}", r.body);
        let page = r.body[key].as_array().unwrap();
        sizes.push(page.len());
        items.extend(page.iter().map(|g| g[name].as_str().unwrap().to_owned()));
        match r.body["next"].as_str() {
            Some(n) => {
                let n: String = n
                    .bytes()
                    .map(|b| match b {
                        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                            (b as char).to_string()
                        }
                        _ => format!("%{b:02X}"),
                    })
                    .collect();
                url = format!("{path}&next={n}");
            }
            None => return (sizes, items),
        }
    }
    panic!("paging does not end");
}

async fn paging_across_pages(api: Api) {
    let names: BTreeSet<String> = (0..12).map(|i| format!("site{i:02}")).collect();
    for n in &names {
        api.create_group(n).await;
    }
    // Default limit 10.
    let r = api.call(&admin(), "GET", "/groups", None).await;
    assert_eq!(r.body["groups"].as_array().unwrap().len(), 10);
    assert!(r.body["next"].is_string());
    let (sizes, items) = pages(&api, "/groups?limit=10", "groups", "name").await;
    assert_eq!(sizes.iter().sum::<usize>(), 12, "{sizes:?}");
    assert_eq!(items.len(), 12);
    assert_eq!(items.iter().cloned().collect::<BTreeSet<_>>(), names);
    let (sizes, items) = pages(&api, "/groups?limit=5", "groups", "name").await;
    assert_eq!(&sizes[..2], [5, 5], "{sizes:?}");
    assert_eq!(items.iter().cloned().collect::<BTreeSet<_>>(), names);
    assert_eq!(items.len(), 12);

    let users: BTreeSet<String> = (0..7).map(|i| format!("user{i}")).collect();
    for u in &users {
        api.add_user("site00", u).await;
    }
    let (sizes, items) = pages(&api, "/groups/site00/users?limit=3", "users", "username").await;
    assert_eq!(&sizes[..2], [3, 3], "{sizes:?}");
    assert_eq!(items.len(), 7);
    assert_eq!(items.into_iter().collect::<BTreeSet<_>>(), users);
}

async fn a_new_group_is_a_new_site_at_once(api: Api) {
    let doc = json!({"path": "hello.txt", "contentType": "text/plain", "content": "hi"});

    // Before: u holds nothing on X.
    let u = api.token_of("ursula").await;
    let r = api
        .docs(&u, "POST", "/documents?siteId=newsite", Some(doc.clone()))
        .await;
    assert!(r.status == 401 || r.status == 403, "{:?}", r);

    api.create_group("newsite").await;
    api.create_group("newsite_read").await;
    api.add_user("newsite", "ursula").await;
    api.add_user("newsite_read", "rita").await;

    // u's next token carries the group: site X is usable at once.
    let u = api.token_of("ursula").await;
    assert_eq!(u.groups, ["newsite"]);
    let r = api
        .docs(&u, "POST", "/documents?siteId=newsite", Some(doc.clone()))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.body["documentId"].as_str().unwrap().to_owned();
    let r = api
        .docs(&u, "GET", &format!("/documents/{id}?siteId=newsite"), None)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // Its only site is the default target.
    let r = api.docs(&u, "GET", "/documents", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["documents"].as_array().unwrap().len(), 1);

    // A member of X_read reads but cannot write.
    let reader = api.token_of("rita").await;
    let r = api
        .docs(&reader, "GET", "/documents?siteId=newsite", None)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["documents"].as_array().unwrap().len(), 1);
    let r = api
        .docs(
            &reader,
            "POST",
            "/documents?siteId=newsite",
            Some(doc.clone()),
        )
        .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    let r = api
        .docs(
            &reader,
            "DELETE",
            &format!("/documents/{id}?siteId=newsite"),
            None,
        )
        .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    // Neither reaches another site.
    let r = api
        .docs(&u, "GET", "/documents?siteId=othersite", None)
        .await;
    assert_eq!(r.status, 403);

    // Removed from the group: the next token no longer opens the site.
    let r = api
        .call(&admin(), "DELETE", "/groups/newsite/users/ursula", None)
        .await;
    assert_eq!(r.status, 200);
    let u = api.token_of("ursula").await;
    assert!(u.groups.is_empty());
    let r = api
        .docs(&u, "POST", "/documents?siteId=newsite", Some(doc.clone()))
        .await;
    assert!(r.status == 401 || r.status == 403, "{:?}", r);

    // Deleting the read group ends rita's access with her next token.
    let r = api
        .call(&admin(), "DELETE", "/groups/newsite_read", None)
        .await;
    assert_eq!(r.status, 200);
    let reader = api.token_of("rita").await;
    assert!(reader.groups.is_empty());
    let r = api
        .docs(&reader, "GET", "/documents?siteId=newsite", None)
        .await;
    assert!(r.status == 401 || r.status == 403, "{:?}", r);
}

/// In defined mode too, only administrators use the groups API (the function reads grants
/// from the table's defined sites, as every function does there), and a group is just a group:
/// it opens no site until the sites API grants it permissions.
async fn defined_mode_admins_only(api: Api) {
    let config = TenantConfig {
        site_mode: SiteMode::Defined,
        ..TenantConfig::default()
    };
    let table = api.documents.table.clone();
    let deps = groups::Deps::new(config.clone(), api.directory.clone(), table.clone());
    let call = |user: User, method: &'static str, path: &'static str, body: Option<Value>| {
        let req = request(Some(&user), method, path, body.as_ref());
        let deps = &deps;
        async move { response(groups::handle(req, deps).await) }
    };
    let r = call(
        User::new("root", &["Admins", "ops-team"]),
        "POST",
        "/groups",
        Some(json!({"group": {"name": "acme"}})),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = call(
        admin(),
        "POST",
        "/groups/acme/users",
        Some(json!({"user": {"username": "ann"}})),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    for caller in [User::new("ann", &["acme"]), User::new("x", &[])] {
        let r = call(caller.clone(), "GET", "/groups", None).await;
        assert_eq!(r.status, 403, "{}: {:?}", caller.name, r.body);
    }
    let docs = documents::Deps::new(
        config,
        table,
        api.documents.blobs.clone(),
        PageTokens::new(PAGING_SECRET),
        documents::Limits::default(),
    );
    let ann = api.token_of("ann").await;
    assert_eq!(ann.groups, ["acme"]);
    let req = request(Some(&ann), "GET", "/documents?siteId=acme", None);
    let r = response(documents::handle(req, &docs).await);
    assert!(r.status == 401 || r.status == 403, "{:?}", r.body);
}
