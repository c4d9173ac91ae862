//! Replays the API Gateway events of `events/<folder>/` (the ones `sam local invoke` and
//! `cargo lambda invoke` use) through the handler of the folder's function, in file-name order,
//! on one fresh embedded backend per folder: each event's status must be the one its file name
//! promises (`NN-<description>.<status>.json`), and together a folder's events must cover every
//! route of its function. `documents/` runs on the default tenant model, `sites/` in defined
//! site mode (no permission cache, so a grant counts at once), `groups/` in automatic site mode
//! on the embedded directory.

use std::collections::BTreeSet;
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
};

const FOLDERS: [&Folder; 3] = [&DOCUMENTS, &SITES, &GROUPS];

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
        let body_ok = match resp.status {
            400..=499 => resp.body.get("message").is_some() || resp.body.get("errors").is_some(),
            _ => resp.body.is_object(),
        };
        if resp.status != event.status || !body_ok {
            failures.push(format!(
                "{}: expected {}, got {}{}; body {}",
                event.name,
                event.status,
                resp.status,
                if body_ok {
                    ""
                } else {
                    " (body is not a JSON object with message/errors)"
                },
                resp.body
            ));
        }
        if (200..300).contains(&event.status) {
            let (method, pattern) = route_of(folder, &event.json, &event.name);
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
        .map(|(m, p)| format!("{m} {p}"))
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
async fn group_events_replay_with_their_statuses() {
    let backend = Backend::embedded();
    let directory = Arc::new(EmbeddedDirectory::new(
        backend.table.clone(),
        PageTokens::new(PAGING_SECRET),
    ));
    let deps = groups::Deps::new(TenantConfig::default(), directory, backend.table.clone());
    replay(&GROUPS, async |req| groups::handle(req, &deps).await).await;
}

/// The `Path:` values of the `Events` of `function` in template.yaml.
fn template_routes(function: &str) -> Vec<String> {
    let path = repo_root().join("template.yaml");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let header = format!("{function}:");
    let mut in_function = false;
    let mut routes = Vec::new();
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim();
        if indent == 2 && trimmed.ends_with(':') {
            in_function = trimmed == header;
        } else if in_function && let Some(p) = trimmed.strip_prefix("Path:") {
            routes.push(p.trim().trim_matches('"').to_owned());
        }
    }
    assert!(
        !routes.is_empty(),
        "no 'Path:' lines under {function} in template.yaml"
    );
    routes
}

/// What is wrong with one event as API Gateway would deliver it to `folder`'s function, whose
/// template routes are `routes`.
fn api_gateway_problems(folder: &Folder, routes: &[String], event: &EventFile) -> Vec<String> {
    let name = &event.name;
    let json = &event.json;
    let mut problems = Vec::new();
    if json["version"] != "2.0" {
        problems.push(format!("{name}: version is not \"2.0\""));
    }
    match json
        .pointer("/requestContext/authorizer/jwt/claims")
        .and_then(Value::as_object)
    {
        None => problems.push(format!(
            "{name}: no requestContext.authorizer.jwt.claims object"
        )),
        Some(claims) => {
            for (k, v) in claims {
                if !v.is_string() {
                    problems.push(format!(
                        "{name}: claim '{k}' is {v}, but API Gateway passes every claim as a string"
                    ));
                }
            }
        }
    }
    let route_key = json["routeKey"].as_str().unwrap_or_default();
    let route = route_key
        .strip_prefix("ANY ")
        .filter(|p| routes.iter().any(|r| r == p));
    if route.is_none() {
        problems.push(format!(
            "{name}: routeKey '{route_key}' is none of template.yaml's {} routes ({})",
            folder.function,
            routes
                .iter()
                .map(|r| format!("ANY {r}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
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
    // The route must match the path: `ANY /x` only `/x`, `ANY /x/{proxy+}` what is below `/x`,
    // with the rest in pathParameters.proxy.
    if let Some(route) = route {
        let raw_path = json["rawPath"].as_str().unwrap_or_default();
        let proxy = json
            .pointer("/pathParameters/proxy")
            .and_then(Value::as_str);
        let expected = match route.strip_suffix("/{proxy+}") {
            Some(prefix) => raw_path
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix('/'))
                .filter(|rest| !rest.is_empty())
                .map(Some),
            None => (raw_path == route).then_some(None),
        };
        match expected {
            None => problems.push(format!(
                "{name}: rawPath '{raw_path}' does not match routeKey '{route_key}'"
            )),
            Some(expected) if proxy != expected => problems.push(format!(
                "{name}: pathParameters.proxy is {proxy:?}, API Gateway would send {expected:?}"
            )),
            Some(_) => {}
        }
    }
    problems
}

#[test]
fn events_look_like_what_api_gateway_sends() {
    let mut failures = Vec::new();
    for folder in FOLDERS {
        let routes = template_routes(folder.function);
        for event in event_files(folder) {
            failures.extend(api_gateway_problems(folder, &routes, &event));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
