//! Replays the API Gateway events of `events/<folder>/` (the ones `sam local invoke` and
//! `cargo lambda invoke` use) through the handler of the folder's function, in file-name order,
//! on one fresh embedded backend per folder: each event's status must be the one its file name
//! promises (`NN-<description>.<status>.json`), and together a folder's events must cover every
//! route of its function. `documents/` runs on the default tenant model, `sites/` in defined
//! site mode (no permission cache, so a grant counts at once), `groups/` in automatic site mode
//! on the embedded directory, `fhir/` and `fhir-search/` on the default tenant model, and
//! `fhir-tenant/` and `fhir-search-tenant/` with tenant-specific FHIR URLs
//! (`UseTenantSpecificUrl`). The search folders run on an empty backend: every successful
//! search answers an empty searchset.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use directory::EmbeddedDirectory;
use integration_tests::{Backend, response};
use lambda_http::{Body, Request, Response};
use serde_json::Value;
use storage::PageTokens;
use tenant_context::{SiteMode, TenantConfig, TenantContext};

/// A folder of `events/` and the function its events are sent to.
struct Folder {
    /// The folder under `events/`.
    name: &'static str,
    /// The function's resource in template.yaml, whose `Path:` lines the route keys must use.
    function: &'static str,
    /// Every route of the function, as (method, route pattern); `{...}` matches one segment.
    routes: &'static [(&'static str, &'static str)],
    /// Routes of `routes` the function answers only with a refusal so far, as (method, route
    /// pattern, status): an event with that status covers them instead of a successful one.
    refusal_only: &'static [(&'static str, &'static str, u16)],
    /// The shape of the function's error bodies.
    errors: Errors,
    /// Every successful answer is an empty searchset Bundle (search on an empty backend).
    empty_searchsets: bool,
}

/// How a function answers errors.
#[derive(Clone, Copy)]
enum Errors {
    /// FormKiQ-shaped: `{"message": ...}` or `{"errors": [...]}`.
    Message,
    /// FHIR: an OperationOutcome with at least one issue.
    OperationOutcome,
}

const DOCUMENTS: Folder = Folder {
    name: "documents",
    function: "DocumentsFunction",
    routes: &[
        ("GET", "/documents"),
        ("POST", "/documents"),
        ("GET", "/documents/upload"),
        ("GET", "/documents/{documentId}"),
        ("PATCH", "/documents/{documentId}"),
        ("DELETE", "/documents/{documentId}"),
        ("GET", "/documents/{documentId}/content"),
        ("GET", "/documents/{documentId}/url"),
        ("GET", "/documents/{documentId}/tags"),
        ("POST", "/documents/{documentId}/tags"),
        ("GET", "/documents/{documentId}/tags/{tagKey}"),
        ("PUT", "/documents/{documentId}/tags/{tagKey}"),
        ("DELETE", "/documents/{documentId}/tags/{tagKey}"),
        ("POST", "/search"),
    ],
    refusal_only: &[],
    errors: Errors::Message,
    empty_searchsets: false,
};

const SITES: Folder = Folder {
    name: "sites",
    function: "SitesFunction",
    routes: &[
        ("GET", "/sites"),
        ("POST", "/sites"),
        ("GET", "/sites/{siteId}"),
        ("PATCH", "/sites/{siteId}"),
        ("DELETE", "/sites/{siteId}"),
        ("GET", "/sites/{siteId}/groups"),
        ("GET", "/sites/{siteId}/groups/{groupName}"),
        ("DELETE", "/sites/{siteId}/groups/{groupName}"),
        ("PUT", "/sites/{siteId}/groups/{groupName}/permissions"),
    ],
    refusal_only: &[],
    errors: Errors::Message,
    empty_searchsets: false,
};

const GROUPS: Folder = Folder {
    name: "groups",
    function: "GroupsFunction",
    routes: &[
        ("GET", "/groups"),
        ("POST", "/groups"),
        ("GET", "/groups/{groupName}"),
        ("DELETE", "/groups/{groupName}"),
        ("GET", "/groups/{groupName}/users"),
        ("POST", "/groups/{groupName}/users"),
        ("DELETE", "/groups/{groupName}/users/{username}"),
    ],
    refusal_only: &[],
    errors: Errors::Message,
    empty_searchsets: false,
};

const FHIR: Folder = Folder {
    name: "fhir",
    function: "FhirFunction",
    routes: &[
        ("GET", "/fhir/metadata"),
        ("POST", "/fhir"),
        ("GET", "/fhir/_history"),
        ("POST", "/fhir/{type}"),
        ("GET", "/fhir/{type}/_history"),
        ("GET", "/fhir/{type}/{id}"),
        ("PUT", "/fhir/{type}/{id}"),
        ("PATCH", "/fhir/{type}/{id}"),
        ("DELETE", "/fhir/{type}/{id}"),
        ("GET", "/fhir/{type}/{id}/_history"),
        ("GET", "/fhir/{type}/{id}/_history/{vid}"),
        ("HEAD", "/fhir/metadata"),
        ("HEAD", "/fhir/_history"),
        ("HEAD", "/fhir/{type}/{id}/_history"),
    ],
    // Search is the fhir-search function's: API Gateway sends GET /fhir/{type} there.
    refusal_only: &[],
    errors: Errors::OperationOutcome,
    empty_searchsets: false,
};

const FHIR_TENANT: Folder = Folder {
    name: "fhir-tenant",
    function: "FhirFunction",
    routes: &[
        ("GET", "/fhir/tenant/{tenantId}/metadata"),
        ("POST", "/fhir/tenant/{tenantId}"),
        ("GET", "/fhir/tenant/{tenantId}/_history"),
        ("POST", "/fhir/tenant/{tenantId}/{type}"),
        ("GET", "/fhir/tenant/{tenantId}/{type}/_history"),
        ("GET", "/fhir/tenant/{tenantId}/{type}/{id}"),
        ("PUT", "/fhir/tenant/{tenantId}/{type}/{id}"),
        ("PATCH", "/fhir/tenant/{tenantId}/{type}/{id}"),
        ("DELETE", "/fhir/tenant/{tenantId}/{type}/{id}"),
        ("GET", "/fhir/tenant/{tenantId}/{type}/{id}/_history"),
        ("GET", "/fhir/tenant/{tenantId}/{type}/{id}/_history/{vid}"),
        ("HEAD", "/fhir/tenant/{tenantId}/metadata"),
        ("HEAD", "/fhir/tenant/{tenantId}/_history"),
        ("HEAD", "/fhir/tenant/{tenantId}/{type}/{id}/_history"),
    ],
    refusal_only: &[],
    errors: Errors::OperationOutcome,
    empty_searchsets: false,
};

const FHIR_SEARCH: Folder = Folder {
    name: "fhir-search",
    function: "FhirSearchFunction",
    routes: &[
        ("GET", "/fhir"),
        ("POST", "/fhir/_search"),
        ("GET", "/fhir/{type}"),
        ("POST", "/fhir/{type}/_search"),
        ("GET", "/fhir/{type}/{id}/{searchType}"),
        ("HEAD", "/fhir"),
        ("HEAD", "/fhir/{type}"),
        ("HEAD", "/fhir/{type}/{id}/{searchType}"),
    ],
    refusal_only: &[],
    errors: Errors::OperationOutcome,
    empty_searchsets: true,
};

const FHIR_SEARCH_TENANT: Folder = Folder {
    name: "fhir-search-tenant",
    function: "FhirSearchFunction",
    routes: &[
        ("GET", "/fhir/tenant/{tenantId}"),
        ("POST", "/fhir/tenant/{tenantId}/_search"),
        ("GET", "/fhir/tenant/{tenantId}/{type}"),
        ("POST", "/fhir/tenant/{tenantId}/{type}/_search"),
        ("GET", "/fhir/tenant/{tenantId}/{type}/{id}/{searchType}"),
        ("HEAD", "/fhir/tenant/{tenantId}"),
        ("HEAD", "/fhir/tenant/{tenantId}/{type}"),
        ("HEAD", "/fhir/tenant/{tenantId}/{type}/{id}/{searchType}"),
    ],
    refusal_only: &[],
    errors: Errors::OperationOutcome,
    empty_searchsets: true,
};

const FOLDERS: [&Folder; 7] = [
    &DOCUMENTS,
    &SITES,
    &GROUPS,
    &FHIR,
    &FHIR_TENANT,
    &FHIR_SEARCH,
    &FHIR_SEARCH_TENANT,
];

const PAGING_SECRET: &[u8] = b"events-replay-paging-secret-0123";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// One event file: its name, the status its name promises, and its JSON.
struct EventFile {
    name: String,
    status: u16,
    json: Value,
}

/// `NN-<description>.<status>.json` → status; `None` when the name does not follow it.
fn expected_status(name: &str) -> Option<u16> {
    let stem = name.strip_suffix(".json")?;
    let (head, status) = stem.rsplit_once('.')?;
    let (order, description) = head.split_once('-')?;
    let valid_order = order.len() >= 2 && order.bytes().all(|b| b.is_ascii_digit());
    let valid_description = !description.is_empty()
        && description
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let status: u16 = status.parse().ok()?;
    (valid_order
        && valid_description
        && status.to_string().len() == 3
        && (100..600).contains(&status))
    .then_some(status)
}

/// Every `events/<folder>/*.json`, sorted by file name. Panics on a file whose name does not
/// follow the convention or whose content is not JSON.
fn event_files(folder: &Folder) -> Vec<EventFile> {
    let dir = repo_root().join("events").join(folder.name);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").file_name())
        .map(|n| n.into_string().expect("UTF-8 file name"))
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no events in {}", dir.display());
    names
        .into_iter()
        .map(|name| {
            let status = expected_status(&name).unwrap_or_else(|| {
                panic!(
                    "event file '{}/{name}' does not follow NN-<description>.<status>.json \
                     (e.g. 01-create-document.201.json)",
                    folder.name
                )
            });
            let path = dir.join(&name);
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}/{name} is not valid JSON: {e}", folder.name));
            EventFile {
                name: format!("{}/{name}", folder.name),
                status,
                json,
            }
        })
        .collect()
}

fn str_at<'a>(event: &'a Value, pointer: &str, file: &str) -> &'a str {
    event
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{file}: {pointer} is missing or not a string"))
}

fn segments(path: &str) -> Vec<&str> {
    path.trim_end_matches('/').split('/').skip(1).collect()
}

/// The route pattern of `folder` that `raw_path` matches, the most specific one (most literal
/// segments, so `/documents/upload` before `/documents/{documentId}`); `None` if none does.
fn pattern_of(folder: &Folder, raw_path: &str) -> Option<&'static str> {
    let path = segments(raw_path);
    folder
        .routes
        .iter()
        .map(|(_, pattern)| *pattern)
        .filter(|pattern| {
            let pattern = segments(pattern);
            pattern.len() == path.len()
                && pattern
                    .iter()
                    .zip(&path)
                    .all(|(p, s)| p == s || (p.starts_with('{') && !s.is_empty()))
        })
        .max_by_key(|pattern| {
            segments(pattern)
                .iter()
                .filter(|p| !p.starts_with('{'))
                .count()
        })
}

/// The (method, route pattern) an event exercises, from its method and `rawPath`: ids, names
/// and keys of the path become the pattern's placeholders. The raw path itself when no pattern
/// of the folder matches it.
fn route_of(folder: &Folder, event: &Value, file: &str) -> (String, String) {
    let method = str_at(event, "/requestContext/http/method", file).to_ascii_uppercase();
    let raw_path = str_at(event, "/rawPath", file);
    let pattern = pattern_of(folder, raw_path).unwrap_or(raw_path);
    (method, pattern.to_owned())
}

/// What is wrong with a response body of `status` from a function answering errors as
/// `errors`: the shape the body should have had; `None` when it has it.
fn body_problem(errors: Errors, status: u16, body: &Value) -> Option<&'static str> {
    let (ok, shape) = match (errors, status) {
        (_, 204 | 304) => (body.is_null(), "empty"),
        (Errors::Message, 400..=499) => (
            body.get("message").is_some() || body.get("errors").is_some(),
            "a JSON object with message/errors",
        ),
        (Errors::Message, _) => (body.is_object(), "a JSON object"),
        (Errors::OperationOutcome, 400..=599) => (
            body["resourceType"] == "OperationOutcome"
                && body["issue"].as_array().is_some_and(|i| !i.is_empty()),
            "an OperationOutcome with an issue",
        ),
        (Errors::OperationOutcome, _) => (body["resourceType"].is_string(), "a FHIR resource"),
    };
    (!ok).then_some(shape)
}

/// What is wrong with a search's answer on an empty backend: it must be a searchset Bundle
/// with a `self` link, a total of 0 if any, and no match or include entry (an OperationOutcome
/// entry for ignored parameters is fine).
fn searchset_problem(body: &Value) -> Option<&'static str> {
    let ok = body["resourceType"] == "Bundle"
        && body["type"] == "searchset"
        && body["link"][0]["relation"] == "self"
        && (body.get("total").is_none() || body["total"] == 0)
        && body["entry"]
            .as_array()
            .is_none_or(|entries| entries.iter().all(|e| e["search"]["mode"] == "outcome"));
    (!ok).then_some("an empty searchset Bundle")
}

/// Replays the events of `folder` in order through `handle` (the folder's function on one
/// backend) and panics listing every event whose status or body is not the promised one, and
/// every route of the folder no successful event covers.
async fn replay(folder: &Folder, handle: impl AsyncFn(Request) -> Response<Body>) {
    let events = event_files(folder);
    let mut failures = Vec::new();
    let mut covered = BTreeSet::new();
    for event in &events {
        let request = match platform_http::request_from_event(event.json.clone()) {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!(
                    "{}: not parsed as the Lambda would: {e}",
                    event.name
                ));
                continue;
            }
        };
        let resp = response(handle(request).await);
        let head = event.json["requestContext"]["http"]["method"] == "HEAD";
        let body_problem = if head {
            // The GET's headers without its body.
            (!resp.body.is_null()).then_some("empty, as HEAD answers")
        } else {
            body_problem(folder.errors, resp.status, &resp.body).or_else(|| {
                (folder.empty_searchsets && resp.status == 200)
                    .then(|| searchset_problem(&resp.body))
                    .flatten()
            })
        };
        if resp.status != event.status || body_problem.is_some() {
            failures.push(format!(
                "{}: expected {}, got {}{}; body {}",
                event.name,
                event.status,
                resp.status,
                body_problem
                    .map(|p| format!(" (body is not {p})"))
                    .unwrap_or_default(),
                resp.body
            ));
        }
        let (method, pattern) = route_of(folder, &event.json, &event.name);
        let refusal_covers = folder
            .refusal_only
            .iter()
            .any(|(m, p, s)| *m == method && *p == pattern && *s == event.status);
        if (200..300).contains(&event.status) || refusal_covers {
            if !folder
                .routes
                .iter()
                .any(|(m, p)| *m == method && *p == pattern)
            {
                failures.push(format!(
                    "{}: {method} {pattern} is no route of the {} function",
                    event.name, folder.name
                ));
            }
            covered.insert((method, pattern));
        }
    }

    let missing: Vec<String> = folder
        .routes
        .iter()
        .filter(|(m, p)| !covered.contains(&(m.to_string(), p.to_string())))
        .map(|(m, p)| {
            match folder
                .refusal_only
                .iter()
                .find(|(rm, rp, _)| rm == m && rp == p)
            {
                Some((_, _, s)) => format!("{m} {p} (no event answered {s})"),
                None => format!("{m} {p}"),
            }
        })
        .collect();
    if !missing.is_empty() {
        failures.push(format!(
            "{} routes without a successful event: {}",
            folder.name,
            missing.join(", ")
        ));
    }
    assert!(
        failures.is_empty(),
        "{} failures over the {} events of events/{}:\n{}",
        failures.len(),
        events.len(),
        folder.name,
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn document_events_replay_with_their_statuses() {
    let backend = Backend::embedded();
    let deps = documents::Deps {
        tenant: TenantContext::new(TenantConfig::default()),
        table: backend.table.clone(),
        blobs: backend.blobs.clone(),
        tokens: PageTokens::new(PAGING_SECRET),
        limits: documents::Limits::default(),
    };
    replay(&DOCUMENTS, async |req| documents::handle(req, &deps).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn site_events_replay_with_their_statuses() {
    let backend = Backend::embedded();
    let config = TenantConfig {
        site_mode: SiteMode::Defined,
        permission_cache: Duration::ZERO,
        ..TenantConfig::default()
    };
    let deps = sites::Deps::new(config, backend.table.clone());
    replay(&SITES, async |req| sites::handle(req, &deps).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fhir_events_replay_with_their_statuses() {
    let backend = Backend::embedded();
    let deps = fhir::Deps::new(
        TenantConfig::default(),
        backend.table.clone(),
        backend.blobs.clone(),
        PageTokens::new(PAGING_SECRET),
        fhir::Limits::default(),
    );
    replay(&FHIR, async |req| fhir::handle(req, &deps).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fhir_tenant_url_events_replay_with_their_statuses() {
    let backend = Backend::embedded();
    let config = TenantConfig {
        tenant_specific_url: true,
        ..TenantConfig::default()
    };
    let deps = fhir::Deps::new(
        config,
        backend.table.clone(),
        backend.blobs.clone(),
        PageTokens::new(PAGING_SECRET),
        fhir::Limits::default(),
    );
    replay(&FHIR_TENANT, async |req| fhir::handle(req, &deps).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fhir_search_events_replay_with_their_statuses() {
    let backend = Backend::embedded();
    let deps = fhir_search::Deps::new(
        TenantConfig::default(),
        backend.table.clone(),
        PageTokens::new(PAGING_SECRET),
    );
    replay(&FHIR_SEARCH, async |req| {
        fhir_search::handle(req, &deps).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fhir_search_tenant_url_events_replay_with_their_statuses() {
    let backend = Backend::embedded();
    let config = TenantConfig {
        tenant_specific_url: true,
        ..TenantConfig::default()
    };
    let deps = fhir_search::Deps::new(
        config,
        backend.table.clone(),
        PageTokens::new(PAGING_SECRET),
    );
    replay(&FHIR_SEARCH_TENANT, async |req| {
        fhir_search::handle(req, &deps).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_events_replay_with_their_statuses() {
    let backend = Backend::embedded();
    let directory = Arc::new(EmbeddedDirectory::new(
        backend.table.clone(),
        PageTokens::new(PAGING_SECRET),
    ));
    let deps = groups::Deps::new(TenantConfig::default(), directory, backend.table.clone());
    replay(&GROUPS, async |req| groups::handle(req, &deps).await).await;
}

/// A route of a function in template.yaml: one of its `HttpApi` events.
struct TemplateRoute {
    /// `ANY` or one method.
    method: String,
    /// The route path, e.g. `/documents/{proxy+}`.
    path: String,
    /// `Auth: Authorizer: NONE`: API Gateway calls the function without the JWT authorizer.
    public: bool,
}

impl TemplateRoute {
    /// The route key API Gateway sends for the route, e.g. `ANY /documents/{proxy+}`.
    fn key(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    /// The path parameters API Gateway passes when a request `method raw_path` takes this
    /// route; `None` when it does not match. `{name}` takes one non-empty segment, a trailing
    /// `{name+}` the rest of the path (at least one character).
    fn matches(&self, method: &str, raw_path: &str) -> Option<BTreeMap<String, String>> {
        if self.method != "ANY" && self.method != method {
            return None;
        }
        let route: Vec<&str> = self.path.split('/').skip(1).collect();
        let path: Vec<&str> = raw_path.split('/').skip(1).collect();
        let mut params = BTreeMap::new();
        for (i, r) in route.iter().enumerate() {
            if let Some(name) = r.strip_prefix('{').and_then(|r| r.strip_suffix("+}")) {
                let rest = path.get(i..)?.join("/");
                if rest.is_empty() {
                    return None;
                }
                params.insert(name.to_owned(), rest);
                return Some(params);
            }
            let s = *path.get(i)?;
            match r.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
                Some(name) if !s.is_empty() => {
                    params.insert(name.to_owned(), s.to_owned());
                }
                Some(_) => return None,
                None if *r == s => {}
                None => return None,
            }
        }
        (route.len() == path.len()).then_some(params)
    }

    /// How specific the route is; of the routes a request matches, API Gateway takes the most
    /// specific: no greedy `{proxy+}` before one, more literal segments before fewer, a route
    /// of the request's method before `ANY`.
    fn specificity(&self) -> (bool, usize, bool) {
        let segments = self.path.split('/').skip(1);
        (
            !self.path.ends_with("+}"),
            segments.filter(|s| !s.starts_with('{')).count(),
            self.method != "ANY",
        )
    }
}

/// The `HttpApi` events of `function` in template.yaml: `Path:`, `Method:` and
/// `Authorizer: NONE` of each entry of its `Events`.
fn template_routes(function: &str) -> Vec<TemplateRoute> {
    let path = repo_root().join("template.yaml");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let header = format!("{function}:");
    let mut in_function = false;
    let mut in_events = false;
    let mut routes: Vec<TemplateRoute> = Vec::new();
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if indent <= 2 {
            in_function = indent == 2 && trimmed == header;
            in_events = false;
            continue;
        }
        if !in_function || indent < 6 {
            continue;
        }
        if indent == 6 {
            in_events = trimmed == "Events:";
            continue;
        }
        if !in_events {
            continue;
        }
        if indent == 8 {
            // The name of one event, e.g. `DocumentsProxy:`.
            routes.push(TemplateRoute {
                method: String::new(),
                path: String::new(),
                public: false,
            });
            continue;
        }
        let Some(route) = routes.last_mut() else {
            continue;
        };
        let value = |v: &str| v.trim().trim_matches('"').to_owned();
        if let Some(p) = trimmed.strip_prefix("Path:") {
            route.path = value(p);
        } else if let Some(m) = trimmed.strip_prefix("Method:") {
            route.method = value(m).to_ascii_uppercase();
        } else if trimmed == "Authorizer: NONE" {
            route.public = true;
        }
    }
    assert!(
        !routes.is_empty(),
        "no Events under {function} in template.yaml"
    );
    for r in &routes {
        assert!(
            !r.path.is_empty() && !r.method.is_empty(),
            "an event of {function} in template.yaml lacks its Path or Method"
        );
    }
    routes
}

/// What is wrong with one event as API Gateway would deliver it to `folder`'s function, whose
/// template routes are `routes`: the route key must be that of the most specific route the
/// request matches, with its path parameters, and the JWT claims must be there exactly when the
/// route has the authorizer.
fn api_gateway_problems(
    folder: &Folder,
    routes: &[TemplateRoute],
    others: &[(&str, TemplateRoute)],
    event: &EventFile,
) -> Vec<String> {
    let name = &event.name;
    let json = &event.json;
    let mut problems = Vec::new();
    if json["version"] != "2.0" {
        problems.push(format!("{name}: version is not \"2.0\""));
    }
    let method = json
        .pointer("/requestContext/http/method")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let raw_path = json["rawPath"].as_str().unwrap_or_default();
    let route = routes
        .iter()
        .filter_map(|r| r.matches(method, raw_path).map(|params| (r, params)))
        .max_by_key(|(r, _)| r.specificity());
    let route_key = json["routeKey"].as_str().unwrap_or_default();
    // API Gateway picks among every function's routes: another function's route that takes
    // the request and is at least as specific would get it.
    if let Some((other, r)) = others
        .iter()
        .filter(|(_, r)| r.matches(method, raw_path).is_some())
        .max_by_key(|(_, r)| r.specificity())
        .filter(|(_, r)| {
            route
                .as_ref()
                .is_none_or(|(own, _)| r.specificity() >= own.specificity())
        })
    {
        problems.push(format!(
            "{name}: API Gateway sends {method} {raw_path} to {other} ({}), not to {}",
            r.key(),
            folder.function
        ));
    }
    match &route {
        None => problems.push(format!(
            "{name}: {method} {raw_path} takes none of template.yaml's {} routes ({})",
            folder.function,
            routes
                .iter()
                .map(TemplateRoute::key)
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Some((r, params)) => {
            if route_key != r.key() {
                problems.push(format!(
                    "{name}: routeKey is '{route_key}', API Gateway would send '{}' for \
                     {method} {raw_path}",
                    r.key()
                ));
            }
            let sent: BTreeMap<String, String> = json
                .get("pathParameters")
                .and_then(Value::as_object)
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                        .collect()
                })
                .unwrap_or_default();
            if sent != *params {
                problems.push(format!(
                    "{name}: pathParameters are {sent:?}, API Gateway would send {params:?}"
                ));
            }
        }
    }
    // A route without the authorizer gets no claims; every other route gets the JWT claims.
    let public = route
        .as_ref()
        .filter(|(r, _)| r.public)
        .map(|(r, _)| r.key());
    let authorizer = json.pointer("/requestContext/authorizer");
    let claims = authorizer
        .and_then(|a| a.pointer("/jwt/claims"))
        .and_then(Value::as_object);
    match (public, claims) {
        (Some(key), _) => {
            if authorizer.is_some() {
                problems.push(format!(
                    "{name}: {key} has no authorizer (Authorizer: NONE), so API Gateway sends no \
                     requestContext.authorizer"
                ));
            }
        }
        (None, None) => problems.push(format!(
            "{name}: no requestContext.authorizer.jwt.claims object"
        )),
        (None, Some(claims)) => {
            for (k, v) in claims {
                if !v.is_string() {
                    problems.push(format!(
                        "{name}: claim '{k}' is {v}, but API Gateway passes every claim as a string"
                    ));
                }
            }
        }
    }
    if json.pointer("/requestContext/routeKey") != Some(&json["routeKey"]) {
        problems.push(format!(
            "{name}: requestContext.routeKey differs from routeKey"
        ));
    }
    if json.pointer("/requestContext/http/path") != Some(&json["rawPath"]) {
        problems.push(format!(
            "{name}: requestContext.http.path differs from rawPath"
        ));
    }
    problems
}

/// Every event is what API Gateway sends for its function's routes in template.yaml, and every
/// one of those routes is the route of some event.
#[test]
fn events_look_like_what_api_gateway_sends() {
    let mut failures = Vec::new();
    let mut used: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let functions: BTreeSet<&str> = FOLDERS.iter().map(|f| f.function).collect();
    for folder in FOLDERS {
        let routes = template_routes(folder.function);
        let others: Vec<(&str, TemplateRoute)> = functions
            .iter()
            .filter(|f| **f != folder.function)
            .flat_map(|f| template_routes(f).into_iter().map(move |r| (*f, r)))
            .collect();
        for event in event_files(folder) {
            failures.extend(api_gateway_problems(folder, &routes, &others, &event));
            if let Some(key) = event.json["routeKey"].as_str() {
                used.entry(folder.function)
                    .or_default()
                    .insert(key.to_owned());
            }
        }
    }
    for (function, keys) in &used {
        for route in template_routes(function) {
            if !keys.contains(&route.key()) {
                failures.push(format!(
                    "{function}: no event takes its template.yaml route {}",
                    route.key()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The route tables the search function's [`fhir_search::owns`] decides with (and the local
/// server dispatches by) are the template's routes of the two FHIR functions.
#[test]
fn fhir_search_route_tables_are_the_templates() {
    let keys = |routes: &[(&str, &str)]| -> BTreeSet<String> {
        routes.iter().map(|(m, p)| format!("{m} {p}")).collect()
    };
    let template = |function: &str| -> BTreeSet<String> {
        template_routes(function)
            .iter()
            .map(TemplateRoute::key)
            .collect()
    };
    assert_eq!(
        keys(fhir_search::API_ROUTES),
        template("FhirSearchFunction")
    );
    assert_eq!(keys(fhir_search::FHIR_API_ROUTES), template("FhirFunction"));
}
