//! The document API end to end through API Gateway events, on both backends: every route,
//! validation, paging, concurrency, and tenant isolation.

use std::sync::Arc;

use documents::{Deps, Limits};
use integration_tests::{Backend, Resp, User, request, response};
use serde_json::{Value, json};
use storage::PageTokens;
use tenant_context::{TenantConfig, TenantContext};

struct Api {
    deps: Arc<Deps>,
    _backend: Backend,
}

impl Api {
    fn new(backend: Backend) -> Api {
        Api {
            deps: Arc::new(Deps {
                tenant: TenantContext::new(TenantConfig::default()),
                table: backend.table.clone(),
                blobs: backend.blobs.clone(),
                tokens: PageTokens::new(b"integration-test-paging-secret!!"),
                limits: Limits::default(),
            }),
            _backend: backend,
        }
    }

    async fn call(&self, user: &User, method: &str, path: &str, body: Option<Value>) -> Resp {
        let req = request(Some(user), method, path, body.as_ref());
        response(documents::handle(req, &self.deps).await)
    }

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
        response(
            documents::handle(
                platform_http::request_from_event(event).unwrap(),
                &self.deps,
            )
            .await,
        )
    }

    /// Creates a text document in `site` and returns its id.
    async fn create(&self, user: &User, site: &str, body: Value) -> String {
        let r = self
            .call(
                user,
                "POST",
                &format!("/documents?siteId={site}"),
                Some(body),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        r.body["documentId"].as_str().unwrap().to_owned()
    }
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Api::new(integration_tests::Backend::embedded())).await;
                }
            )*
        }
        mod moto {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Api::new(integration_tests::Backend::moto().await)).await;
                }
            )*
        }
    };
}

on_both_backends!(
    document_lifecycle,
    upload_urls,
    tags_and_search,
    listing_pages_newest_first,
    bad_input_is_4xx_and_writes_nothing,
    isolation_between_sites,
    read_only_users_cannot_write,
    admins_reach_every_site,
    concurrent_tag_writes_lose_nothing,
    unreadable_stored_data_is_a_500,
);

fn alice() -> User {
    User::new("alice", &["marketing"])
}

async fn document_lifecycle(api: Api) {
    let u = alice();
    let id = api
        .create(
            &u,
            "marketing",
            json!({
                "path": "plans/q3.txt",
                "contentType": "text/plain",
                "content": "hello world",
                "tags": [{"key": "status", "value": "draft"}, {"key": "team", "values": ["a", "b"]}],
                "metadata": [{"key": "origin", "value": "test"}],
            }),
        )
        .await;

    let r = api
        .call(
            &u,
            "GET",
            &format!("/documents/{id}?siteId=marketing"),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["documentId"], id);
    assert_eq!(r.body["siteId"], "marketing");
    assert_eq!(r.body["path"], "plans/q3.txt");
    assert_eq!(r.body["contentType"], "text/plain");
    assert_eq!(r.body["contentLength"], 11);
    assert_eq!(r.body["userId"], "alice");
    assert_eq!(r.body["metadata"][0]["key"], "origin");
    assert!(r.body["insertedDate"].as_str().unwrap().ends_with('Z'));

    // The only site of alice is the default target.
    let r = api.call(&u, "GET", &format!("/documents/{id}"), None).await;
    assert_eq!(r.status, 200);

    let r = api
        .call(
            &u,
            "GET",
            &format!("/documents/{id}/content?siteId=marketing"),
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.body["content"].as_str()),
        (200, Some("hello world"))
    );
    assert_eq!(r.body["isBase64"], false);

    let r = api
        .call(
            &u,
            "GET",
            &format!("/documents/{id}/url?siteId=marketing"),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(r.body["url"].as_str().unwrap().starts_with("http"));

    // PATCH: new path and content; the old content is replaced.
    let r = api
        .call(
            &u,
            "PATCH",
            &format!("/documents/{id}?siteId=marketing"),
            Some(json!({"path": "plans/q4.txt", "content": "bonjour"})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = api.call(&u, "GET", &format!("/documents/{id}"), None).await;
    assert_eq!(
        (r.body["path"].as_str(), r.body["contentLength"].as_u64()),
        (Some("plans/q4.txt"), Some(7))
    );
    let r = api
        .call(&u, "GET", &format!("/documents/{id}/content"), None)
        .await;
    assert_eq!(r.body["content"], "bonjour");

    // Binary content is not inlined: a URL is returned.
    let bin = api
        .create(
            &u,
            "marketing",
            json!({"contentType": "image/png", "isBase64": true, "content": "iVBORw0KGgo="}),
        )
        .await;
    let r = api
        .call(&u, "GET", &format!("/documents/{bin}/content"), None)
        .await;
    assert_eq!(r.status, 200);
    assert!(r.body["contentUrl"].as_str().is_some() && r.body.get("content").is_none());

    // DELETE removes the document, its tags and its index entries.
    let r = api
        .call(
            &u,
            "DELETE",
            &format!("/documents/{id}?siteId=marketing"),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(r.body["message"].as_str().unwrap().contains(&id));
    for path in [
        format!("/documents/{id}"),
        format!("/documents/{id}/content"),
        format!("/documents/{id}/url"),
        format!("/documents/{id}/tags"),
        format!("/documents/{id}/tags/status"),
    ] {
        assert_eq!(api.call(&u, "GET", &path, None).await.status, 404, "{path}");
    }
    assert_eq!(
        api.call(&u, "DELETE", &format!("/documents/{id}"), None)
            .await
            .status,
        404
    );
    let r = api.call(&u, "GET", "/documents", None).await;
    let ids: Vec<&str> = r.body["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["documentId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [bin.as_str()]);
    let r = api
        .call(
            &u,
            "POST",
            "/search",
            Some(json!({"query": {"tag": {"key": "status"}}})),
        )
        .await;
    assert_eq!(r.body["documents"], json!([]));
}

async fn upload_urls(api: Api) {
    let u = alice();
    let r = api
        .call(
            &u,
            "POST",
            "/documents",
            Some(json!({"path": "big.bin", "contentType": "application/pdf"})),
        )
        .await;
    assert_eq!(r.status, 201);
    assert!(r.body["uploadUrl"].as_str().unwrap().starts_with("http"));
    let id = r.body["documentId"].as_str().unwrap();
    // Not uploaded yet: no content.
    let r = api
        .call(&u, "GET", &format!("/documents/{id}/content"), None)
        .await;
    assert_eq!(r.status, 404);
    assert!(r.body["message"].as_str().unwrap().contains("uploadUrl"));

    let r = api
        .call(
            &u,
            "GET",
            "/documents/upload?path=scan.pdf&contentType=application/pdf",
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let id = r.body["documentId"].as_str().unwrap();
    assert!(r.body["url"].as_str().unwrap().starts_with("http"));
    let r = api.call(&u, "GET", &format!("/documents/{id}"), None).await;
    assert_eq!((r.status, r.body["path"].as_str()), (200, Some("scan.pdf")));

    // Inline content over 5 MB: 413 pointing at the upload URL.
    let big = "x".repeat(5 * 1024 * 1024 + 1);
    let r = api
        .call(&u, "POST", "/documents", Some(json!({"content": big})))
        .await;
    assert_eq!(r.status, 413);
    assert!(r.body["message"].as_str().unwrap().contains("uploadUrl"));
}

async fn tags_and_search(api: Api) {
    let u = alice();
    let a = api
        .create(
            &u,
            "marketing",
            json!({"path": "a", "tags": [{"key": "status", "value": "draft"}]}),
        )
        .await;
    let b = api
        .create(
            &u,
            "marketing",
            json!({"path": "b", "tags": [{"key": "status", "value": "drafted"}]}),
        )
        .await;
    let c = api.create(&u, "marketing", json!({"path": "c"})).await;

    // Add tags: a list, then a single tag; key-only and multi-value.
    let r = api
        .call(
            &u,
            "POST",
            &format!("/documents/{c}/tags"),
            Some(json!({"tags": [{"key": "status", "value": "final"}, {"key": "reviewed"}]})),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = api
        .call(
            &u,
            "POST",
            &format!("/documents/{c}/tags"),
            Some(json!({"key": "team", "values": ["x", "y"]})),
        )
        .await;
    assert_eq!(r.status, 201);

    let r = api
        .call(&u, "GET", &format!("/documents/{c}/tags"), None)
        .await;
    assert_eq!(r.status, 200);
    let mut keys: Vec<&str> = r.body["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["key"].as_str().unwrap())
        .collect();
    keys.sort();
    assert_eq!(keys, ["reviewed", "status", "team"]);

    let r = api
        .call(&u, "GET", &format!("/documents/{c}/tags/team"), None)
        .await;
    assert_eq!((r.status, &r.body["values"]), (200, &json!(["x", "y"])));
    let r = api
        .call(&u, "GET", &format!("/documents/{c}/tags/reviewed"), None)
        .await;
    assert!(r.body.get("value").is_none() && r.body.get("values").is_none());

    // PUT replaces values; DELETE removes; both 404 on a missing tag.
    let r = api
        .call(
            &u,
            "PUT",
            &format!("/documents/{c}/tags/team"),
            Some(json!({"value": "z"})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        api.call(&u, "GET", &format!("/documents/{c}/tags/team"), None)
            .await
            .body["value"],
        "z"
    );
    assert_eq!(
        api.call(
            &u,
            "PUT",
            &format!("/documents/{c}/tags/none"),
            Some(json!({"value": "z"}))
        )
        .await
        .status,
        404
    );
    assert_eq!(
        api.call(&u, "DELETE", &format!("/documents/{c}/tags/reviewed"), None)
            .await
            .status,
        200
    );
    assert_eq!(
        api.call(&u, "DELETE", &format!("/documents/{c}/tags/reviewed"), None)
            .await
            .status,
        404
    );

    let search = |body: Value| {
        let api = &api;
        let u = &u;
        async move {
            let r = api.call(u, "POST", "/search", Some(body)).await;
            assert_eq!(r.status, 200, "{:?}", r.body);
            let mut ids: Vec<String> = r.body["documents"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["documentId"].as_str().unwrap().to_owned())
                .collect();
            ids.sort();
            (ids, r.body)
        }
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let (ids, body) = search(json!({"query": {"tag": {"key": "status", "eq": "draft"}}})).await;
    assert_eq!(ids, std::slice::from_ref(&a), "eq must not match 'drafted'");
    assert_eq!(
        body["documents"][0]["matchedTag"],
        json!({"key": "status", "value": "draft", "type": "USERDEFINED"})
    );
    assert_eq!(body["documents"][0]["path"], "a");
    let (ids, _) =
        search(json!({"query": {"tag": {"key": "status", "beginsWith": "draft"}}})).await;
    assert_eq!(ids, sorted(vec![a.clone(), b.clone()]));
    let (ids, _) = search(json!({"query": {"tag": {"key": "status"}}})).await;
    assert_eq!(ids, sorted(vec![a.clone(), b.clone(), c.clone()]));
    let (ids, _) = search(json!({"query": {"tag": {"key": "team", "eq": "z"}}})).await;
    assert_eq!(ids, std::slice::from_ref(&c));
    let (ids, _) = search(json!({"query": {"tag": {"key": "team", "eq": "x"}}})).await;
    assert!(ids.is_empty(), "replaced values leave the index");

    // A PATCH of the path shows in search results at once.
    api.call(
        &u,
        "PATCH",
        &format!("/documents/{a}"),
        Some(json!({"path": "renamed"})),
    )
    .await;
    let (_, body) = search(json!({"query": {"tag": {"key": "status", "eq": "draft"}}})).await;
    assert_eq!(body["documents"][0]["path"], "renamed");

    // Search paging.
    for i in 0..5 {
        api.create(
            &u,
            "marketing",
            json!({"path": format!("p{i}"), "tags": [{"key": "batch", "value": "one"}]}),
        )
        .await;
    }
    let mut seen = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let q = match &next {
            Some(n) => format!("/search?limit=2&next={n}"),
            None => "/search?limit=2".into(),
        };
        let r = api
            .call(
                &u,
                "POST",
                &q,
                Some(json!({"query": {"tag": {"key": "batch", "eq": "one"}}})),
            )
            .await;
        assert_eq!(r.status, 200);
        seen.extend(
            r.body["documents"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["path"].as_str().unwrap().to_owned()),
        );
        next = r.body["next"].as_str().map(str::to_owned);
        if next.is_none() {
            break;
        }
    }
    seen.sort();
    assert_eq!(seen, ["p0", "p1", "p2", "p3", "p4"]);

    // Search validation.
    for bad in [
        json!({}),
        json!({"query": {"text": "x"}}),
        json!({"query": {"tag": {}}}),
        json!({"query": {"tag": {"key": "k", "eq": "a", "beginsWith": "b"}}}),
        json!({"query": {"tag": {"key": 5}}}),
    ] {
        assert_eq!(
            api.call(&u, "POST", "/search", Some(bad.clone()))
                .await
                .status,
            400,
            "{bad}"
        );
    }
}

async fn listing_pages_newest_first(api: Api) {
    let u = alice();
    let mut created = Vec::new();
    for i in 0..23 {
        created.push(
            api.create(&u, "marketing", json!({"path": format!("doc-{i:02}")}))
                .await,
        );
    }
    let mut seen = Vec::new();
    let mut next: Option<String> = None;
    let mut pages = 0;
    loop {
        let q = match &next {
            Some(n) => format!("/documents?limit=10&next={n}"),
            None => "/documents?limit=10".into(),
        };
        let r = api.call(&u, "GET", &q, None).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        pages += 1;
        seen.extend(
            r.body["documents"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["documentId"].as_str().unwrap().to_owned()),
        );
        next = r.body["next"].as_str().map(str::to_owned);
        if next.is_none() {
            break;
        }
    }
    assert_eq!(pages, 3);
    created.reverse();
    assert_eq!(seen, created, "newest first, each once");

    // Default limit 10; limit bounds; bad tokens.
    let r = api.call(&u, "GET", "/documents", None).await;
    assert_eq!(r.body["documents"].as_array().unwrap().len(), 10);
    for q in [
        "limit=0",
        "limit=101",
        "limit=abc",
        "limit=-1",
        "next=garbage",
        "next=a.b",
    ] {
        let r = api.call(&u, "GET", &format!("/documents?{q}"), None).await;
        assert_eq!(r.status, 400, "{q}");
        assert!(r.body["message"].is_string());
    }
    // A token of the list is not a token of the tags listing.
    let list_next = api.call(&u, "GET", "/documents?limit=1", None).await.body["next"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = api
        .call(
            &u,
            "GET",
            &format!("/documents/{}/tags?next={list_next}", created[0]),
            None,
        )
        .await;
    assert_eq!(r.status, 400);
}

async fn bad_input_is_4xx_and_writes_nothing(api: Api) {
    let u = alice();
    let cases: Vec<(&str, &str, &str)> = vec![
        ("POST", "/documents", "{not json"),
        ("POST", "/documents", ""),
        ("POST", "/documents", "[]"),
        ("POST", "/documents", r#"{"path": 5}"#),
        ("POST", "/documents", r#"{"path": ""}"#),
        ("POST", "/documents", r#"{"documentId": "nope"}"#),
        ("POST", "/documents", r#"{"contentType": "garbage"}"#),
        ("POST", "/documents", r#"{"content": 5}"#),
        (
            "POST",
            "/documents",
            r#"{"content": "%%%", "isBase64": true}"#,
        ),
        (
            "POST",
            "/documents",
            r#"{"isBase64": "yes", "content": "x"}"#,
        ),
        ("POST", "/documents", r#"{"tags": "x"}"#),
        ("POST", "/documents", r#"{"tags": [{"value": "no key"}]}"#),
        (
            "POST",
            "/documents",
            r#"{"tags": [{"key": "a"}, {"key": "a"}]}"#,
        ),
        (
            "POST",
            "/documents",
            r#"{"metadata": [{"key": "a", "value": 1}]}"#,
        ),
        ("POST", "/search", "nope"),
        // serde would read an array as a struct's fields in order.
        (
            "POST",
            "/documents",
            "[null, null, null, null, null, null, null]",
        ),
        ("POST", "/search", r#"[{"tag": {"key": "k"}}]"#),
        // A content type becomes the blob's Content-Type header: visible ASCII only.
        (
            "POST",
            "/documents",
            r#"{"path": "y", "contentType": "text/pl\u00e5in"}"#,
        ),
        (
            "GET",
            "/documents/upload?path=x&contentType=text%2Fpl%C3%A5in",
            "",
        ),
    ];
    for (method, path, body) in &cases {
        let r = api.raw(&u, method, path, body).await;
        assert!(
            (400..500).contains(&r.status),
            "{method} {path} {body}: {}",
            r.status
        );
        assert!(
            r.body["message"].is_string() || r.body["errors"].is_array(),
            "{body}: {:?}",
            r.body
        );
    }
    let listed = api.call(&u, "GET", "/documents", None).await;
    assert_eq!(
        listed.body["documents"],
        json!([]),
        "a refused request wrote"
    );
    let r = api
        .raw(
            &u,
            "POST",
            "/documents",
            r#"{"path": "", "contentType": "bad"}"#,
        )
        .await;
    let keys: Vec<&str> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["path", "contentType"]);

    // Values that would exceed DynamoDB's key and item limits are refused up front: 400, not a
    // storage error.
    let long_value = "é".repeat(451);
    let r = api
        .call(
            &u,
            "POST",
            "/documents",
            Some(json!({"tags": [{"key": "k", "value": long_value}]})),
        )
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    let big = "x".repeat(9000);
    let r = api
        .call(
            &u,
            "POST",
            "/documents",
            Some(json!({"metadata": [{"key": "k", "value": big}]})),
        )
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    let r = api
        .call(
            &u,
            "POST",
            "/documents",
            Some(json!({"path": "p".repeat(1025)})),
        )
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);

    // Too many tag values: 400, nothing written.
    let tags: Vec<Value> = (0..41).map(|i| json!({"key": format!("k{i}")})).collect();
    let r = api
        .call(&u, "POST", "/documents", Some(json!({"tags": tags})))
        .await;
    assert_eq!(r.status, 400);

    // Nothing of the above was written.
    let r = api.call(&u, "GET", "/documents", None).await;
    assert_eq!(r.body["documents"], json!([]), "bad input wrote something");

    // Unknown, malformed and duplicate ids.
    let missing = uuid::Uuid::new_v4();
    for (m, p) in [
        ("GET", format!("/documents/{missing}")),
        ("PATCH", format!("/documents/{missing}")),
        ("GET", "/documents/not-a-uuid".into()),
        ("DELETE", "/documents/12".into()),
    ] {
        let r = api.call(&u, m, &p, Some(json!({"path": "x"}))).await;
        assert_eq!(r.status, 404, "{m} {p}");
    }
    let id = api.create(&u, "marketing", json!({"path": "x"})).await;
    let r = api
        .call(
            &u,
            "POST",
            "/documents",
            Some(json!({"documentId": id, "content": "other"})),
        )
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(
        api.call(&u, "GET", &format!("/documents/{id}"), None)
            .await
            .body["path"],
        "x"
    );
    let r = api.call(&u, "PUT", "/documents", None).await;
    assert_eq!(r.status, 405);
}

async fn isolation_between_sites(api: Api) {
    let a_user = User::new("ann", &["site-a"]);
    let b_user = User::new("bob", &["site-b"]);
    let b_doc = api
        .create(
            &b_user,
            "site-b",
            json!({"path": "secret", "content": "b only", "tags": [{"key": "k", "value": "v"}]}),
        )
        .await;
    api.create(
        &a_user,
        "site-a",
        json!({"path": "mine", "tags": [{"key": "k", "value": "v"}]}),
    )
    .await;

    // Every route on B's document from site A: 404, exactly as for a missing one.
    let routes: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", format!("/documents/{b_doc}"), None),
        ("GET", format!("/documents/{b_doc}/content"), None),
        ("GET", format!("/documents/{b_doc}/url"), None),
        ("GET", format!("/documents/{b_doc}/tags"), None),
        (
            "POST",
            format!("/documents/{b_doc}/tags"),
            Some(json!({"key": "x"})),
        ),
        ("GET", format!("/documents/{b_doc}/tags/k"), None),
        (
            "PUT",
            format!("/documents/{b_doc}/tags/k"),
            Some(json!({"value": "stolen"})),
        ),
        ("DELETE", format!("/documents/{b_doc}/tags/k"), None),
        (
            "PATCH",
            format!("/documents/{b_doc}"),
            Some(json!({"path": "stolen"})),
        ),
        ("DELETE", format!("/documents/{b_doc}"), None),
    ];
    for (m, p, body) in &routes {
        let r = api.call(&a_user, m, p, body.clone()).await;
        assert_eq!(r.status, 404, "{m} {p}: {:?}", r.body);
        // Asking for site B explicitly is refused before any lookup.
        let r = api
            .call(&a_user, m, &format!("{p}?siteId=site-b"), body.clone())
            .await;
        assert_eq!(r.status, 403, "{m} {p}?siteId=site-b");
    }
    // B's document is untouched.
    let r = api
        .call(&b_user, "GET", &format!("/documents/{b_doc}/tags/k"), None)
        .await;
    assert_eq!(r.body["value"], "v");
    let r = api
        .call(&b_user, "GET", &format!("/documents/{b_doc}"), None)
        .await;
    assert_eq!(r.body["path"], "secret");

    // Lists and searches never show B's documents.
    let r = api.call(&a_user, "GET", "/documents", None).await;
    let paths: Vec<&str> = r.body["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["mine"]);
    let r = api
        .call(
            &a_user,
            "POST",
            "/search",
            Some(json!({"query": {"tag": {"key": "k", "eq": "v"}}})),
        )
        .await;
    let paths: Vec<&str> = r.body["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["mine"]);

    // A `next` token of B replayed by A: 400.
    api.create(&b_user, "site-b", json!({"path": "second"}))
        .await;
    let r = api.call(&b_user, "GET", "/documents?limit=1", None).await;
    let b_next = r.body["next"]
        .as_str()
        .expect("B has two documents")
        .to_owned();
    let r = api
        .call(&a_user, "GET", &format!("/documents?next={b_next}"), None)
        .await;
    assert_eq!(r.status, 400);
}

async fn read_only_users_cannot_write(api: Api) {
    let writer = User::new("w", &["hr"]);
    let reader = User::new("r", &["hr_read"]);
    let id = api
        .create(
            &writer,
            "hr",
            json!({"path": "policy", "content": "text", "tags": [{"key": "k", "value": "v"}]}),
        )
        .await;
    for (m, p, body) in [
        ("POST", "/documents".to_string(), Some(json!({"path": "x"}))),
        ("GET", "/documents/upload".to_string(), None),
        (
            "PATCH",
            format!("/documents/{id}"),
            Some(json!({"path": "x"})),
        ),
        ("DELETE", format!("/documents/{id}"), None),
        (
            "POST",
            format!("/documents/{id}/tags"),
            Some(json!({"key": "x"})),
        ),
        (
            "PUT",
            format!("/documents/{id}/tags/k"),
            Some(json!({"value": "x"})),
        ),
        ("DELETE", format!("/documents/{id}/tags/k"), None),
    ] {
        let r = api.call(&reader, m, &p, body).await;
        assert_eq!(r.status, 403, "{m} {p}");
        assert!(
            r.body["message"].as_str().unwrap().contains("hr"),
            "{:?}",
            r.body
        );
    }
    // Reads work, including search.
    for p in [
        format!("/documents/{id}"),
        format!("/documents/{id}/content"),
        format!("/documents/{id}/tags"),
        "/documents".into(),
    ] {
        assert_eq!(api.call(&reader, "GET", &p, None).await.status, 200, "{p}");
    }
    let r = api
        .call(
            &reader,
            "POST",
            "/search",
            Some(json!({"query": {"tag": {"key": "k"}}})),
        )
        .await;
    assert_eq!(r.status, 200);
    // Nothing changed.
    let r = api
        .call(&writer, "GET", &format!("/documents/{id}"), None)
        .await;
    assert_eq!(r.body["path"], "policy");
    // A caller without any grant: 401; no siteId with two sites: 400.
    assert_eq!(
        api.call(
            &User::new("x", &["authentication_only"]),
            "GET",
            "/documents",
            None
        )
        .await
        .status,
        401
    );
    let both = User::new("y", &["hr", "finance"]);
    let r = api.call(&both, "GET", "/documents", None).await;
    assert_eq!(r.status, 400);
    assert!(r.body["message"].as_str().unwrap().contains("finance, hr"));
}

async fn admins_reach_every_site(api: Api) {
    let admin = User::new("root", &["Admins"]);
    let a = api
        .create(
            &User::new("ann", &["site-a"]),
            "site-a",
            json!({"path": "in a"}),
        )
        .await;
    let b = api
        .create(
            &User::new("bob", &["site-b"]),
            "site-b",
            json!({"path": "in b"}),
        )
        .await;
    let r = api
        .call(
            &admin,
            "GET",
            &format!("/documents/{a}?siteId=site-a"),
            None,
        )
        .await;
    assert_eq!((r.status, r.body["path"].as_str()), (200, Some("in a")));
    let r = api
        .call(
            &admin,
            "GET",
            &format!("/documents/{b}?siteId=site-b"),
            None,
        )
        .await;
    assert_eq!((r.status, r.body["path"].as_str()), (200, Some("in b")));
    // Without siteId an admin works in `default`, where neither document is.
    assert_eq!(
        api.call(&admin, "GET", &format!("/documents/{a}"), None)
            .await
            .status,
        404
    );
    let r = api
        .call(
            &admin,
            "DELETE",
            &format!("/documents/{b}?siteId=site-b"),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        api.call(&admin, "GET", "/documents?siteId=global", None)
            .await
            .status,
        400
    );
}

async fn concurrent_tag_writes_lose_nothing(api: Api) {
    let u = alice();
    let id = api.create(&u, "marketing", json!({"path": "busy"})).await;
    let api = Arc::new(api);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let api = api.clone();
        let u = u.clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            api.call(
                &u,
                "POST",
                &format!("/documents/{id}/tags"),
                Some(json!({"key": format!("k{i}"), "value": "v"})),
            )
            .await
            .status
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            201 => ok += 1,
            409 => {}
            s => panic!("unexpected status {s}"),
        }
    }
    let r = api
        .call(&u, "GET", &format!("/documents/{id}/tags?limit=100"), None)
        .await;
    let n = r.body["tags"].as_array().unwrap().len();
    assert_eq!(n, ok, "every acknowledged tag write is present");
    assert!(ok >= 1);
}

/// Stored data that does not parse as what its place in the layout says (written by a bug or
/// by something else) fails that request with a logged 500 and a generic message: no panic,
/// nothing leaked, and the rest of the API keeps working.
async fn unreadable_stored_data_is_a_500(api: Api) {
    use storage::{Condition, Item, Key};
    let u = alice();
    let id = api
        .create(&u, "marketing", json!({"path": "a.txt", "content": "hi"}))
        .await;
    let other = api
        .create(&u, "marketing", json!({"path": "b.txt", "content": "ho"}))
        .await;
    let garbage = |pk: String, sk: String| {
        let attrs = json!({"documentId": 7, "path": ["not", "a", "path"]});
        Item::new(Key::new(pk, sk), attrs.as_object().unwrap().clone())
    };
    let table = &api.deps.table;
    table
        .put(
            garbage(format!("marketing#doc#{id}"), "doc".into()),
            Condition::None,
        )
        .await
        .unwrap();
    let internal = json!({"message": "internal error"});
    let r = api
        .call(
            &u,
            "GET",
            &format!("/documents/{id}?siteId=marketing"),
            None,
        )
        .await;
    assert_eq!((r.status, &r.body), (500, &internal));
    let r = api
        .call(
            &u,
            "POST",
            &format!("/documents/{id}/tags?siteId=marketing"),
            Some(json!({"key": "k"})),
        )
        .await;
    assert_eq!((r.status, &r.body), (500, &internal));
    // The other document is untouched.
    let r = api
        .call(
            &u,
            "GET",
            &format!("/documents/{other}?siteId=marketing"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    // A list entry that does not parse fails the listing, not the process.
    let page = api
        .call(&u, "GET", "/documents?siteId=marketing", None)
        .await;
    assert_eq!(page.status, 200);
    let entries = table
        .query(&storage::Query::new(
            "marketing#docs",
            storage::SkRange::All,
            10,
        ))
        .await
        .unwrap();
    let entry = entries.items[0].key.clone();
    table
        .put(garbage(entry.pk, entry.sk), Condition::None)
        .await
        .unwrap();
    let r = api
        .call(&u, "GET", "/documents?siteId=marketing", None)
        .await;
    assert_eq!((r.status, &r.body), (500, &internal));
    // Another tenant is unaffected.
    let bob = User::new("bob", &["finance"]);
    let r = api
        .call(&bob, "GET", "/documents?siteId=finance", None)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}
