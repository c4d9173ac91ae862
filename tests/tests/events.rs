//! Replays the API Gateway events of `events/documents/` (the ones `sam local invoke` and
//! `cargo lambda invoke` use) through the documents handler, in file-name order, on one fresh
//! embedded backend: each event's status must be the one its file name promises
//! (`NN-<description>.<status>.json`), and together they must cover every document route.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use documents::{Deps, Limits};
use integration_tests::{Backend, response};
use serde_json::Value;
use storage::PageTokens;
use tenant_context::{TenantConfig, TenantContext};

/// Every route of the documents function, as (method, route pattern).
const ROUTES: [(&str, &str); 14] = [
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
];

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

/// Every `events/documents/*.json`, sorted by file name. Panics on a file whose name does not
/// follow the convention or whose content is not JSON.
fn event_files() -> Vec<EventFile> {
    let dir = repo_root().join("events").join("documents");
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
                    "event file '{name}' does not follow NN-<description>.<status>.json \
                     (e.g. 01-create-document.201.json)"
                )
            });
            let path = dir.join(&name);
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{name} is not valid JSON: {e}"));
            EventFile { name, status, json }
        })
        .collect()
}

fn str_at<'a>(event: &'a Value, pointer: &str, file: &str) -> &'a str {
    event
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{file}: {pointer} is missing or not a string"))
}

/// The (method, route pattern) an event exercises: document ids and tag keys become
/// placeholders.
fn route_of(event: &Value, file: &str) -> (String, String) {
    let method = str_at(event, "/requestContext/http/method", file).to_ascii_uppercase();
    let raw_path = str_at(event, "/rawPath", file);
    let segments: Vec<&str> = raw_path.trim_end_matches('/').split('/').skip(1).collect();
    let pattern = match segments.as_slice() {
        ["documents"] => "/documents".to_owned(),
        ["documents", "upload"] => "/documents/upload".to_owned(),
        ["documents", _] => "/documents/{documentId}".to_owned(),
        ["documents", _, "tags", _] => "/documents/{documentId}/tags/{tagKey}".to_owned(),
        ["documents", _, rest] => format!("/documents/{{documentId}}/{rest}"),
        _ => raw_path.to_owned(),
    };
    (method, pattern)
}

fn deps(backend: &Backend) -> Deps {
    Deps {
        tenant: TenantContext::new(TenantConfig::default()),
        table: backend.table.clone(),
        blobs: backend.blobs.clone(),
        tokens: PageTokens::new(b"events-replay-paging-secret-0123"),
        limits: Limits::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_replay_with_their_statuses() {
    let events = event_files();
    let backend = Backend::embedded();
    let deps = deps(&backend);

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
        let resp = response(documents::handle(request, &deps).await);
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
            covered.insert(route_of(&event.json, &event.name));
        }
    }

    let missing: Vec<String> = ROUTES
        .iter()
        .filter(|(m, p)| !covered.contains(&(m.to_string(), p.to_string())))
        .map(|(m, p)| format!("{m} {p}"))
        .collect();
    if !missing.is_empty() {
        failures.push(format!(
            "routes without a successful event: {}",
            missing.join(", ")
        ));
    }
    assert!(
        failures.is_empty(),
        "{} of {} events failed:\n{}",
        failures.len(),
        events.len(),
        failures.join("\n")
    );
}

/// The `Path:` values of the `Events` of `DocumentsFunction` in template.yaml.
fn template_document_routes() -> Vec<String> {
    let path = repo_root().join("template.yaml");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut in_function = false;
    let mut routes = Vec::new();
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim();
        if indent == 2 && trimmed.ends_with(':') {
            in_function = trimmed == "DocumentsFunction:";
        } else if in_function && let Some(p) = trimmed.strip_prefix("Path:") {
            routes.push(p.trim().trim_matches('"').to_owned());
        }
    }
    assert!(
        !routes.is_empty(),
        "no 'Path:' lines under DocumentsFunction in template.yaml"
    );
    routes
}

#[test]
fn events_look_like_what_api_gateway_sends() {
    let routes = template_document_routes();
    let mut failures = Vec::new();
    for event in event_files() {
        let name = &event.name;
        let json = &event.json;
        if json["version"] != "2.0" {
            failures.push(format!("{name}: version is not \"2.0\""));
        }
        match json
            .pointer("/requestContext/authorizer/jwt/claims")
            .and_then(Value::as_object)
        {
            None => failures.push(format!(
                "{name}: no requestContext.authorizer.jwt.claims object"
            )),
            Some(claims) => {
                for (k, v) in claims {
                    if !v.is_string() {
                        failures.push(format!(
                            "{name}: claim '{k}' is {v}, but API Gateway passes every claim as a string"
                        ));
                    }
                }
            }
        }
        let route_key = json["routeKey"].as_str().unwrap_or_default();
        let known = route_key
            .strip_prefix("ANY ")
            .is_some_and(|p| routes.iter().any(|r| r == p));
        if !known {
            failures.push(format!(
                "{name}: routeKey '{route_key}' is none of template.yaml's DocumentsFunction routes ({})",
                routes
                    .iter()
                    .map(|r| format!("ANY {r}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if json.pointer("/requestContext/routeKey") != Some(&json["routeKey"]) {
            failures.push(format!(
                "{name}: requestContext.routeKey differs from routeKey"
            ));
        }
        if json.pointer("/requestContext/http/path") != Some(&json["rawPath"]) {
            failures.push(format!(
                "{name}: requestContext.http.path differs from rawPath"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
