//! The metrics every request reports, as the local-server binary writes them: one CloudWatch
//! Embedded Metric Format line per request on stdout, with the function, the site the request
//! was authorized for, its status class, latency and the storage it used.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

mod common;

use common::{http, spec};
use local_server::LocalKeys;
use serde_json::{Value, json};

struct Running {
    child: Child,
    base: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary on a free port of loopback, serving `dir`.
async fn start(dir: &std::path::Path) -> Running {
    let child = Command::new(env!("CARGO_BIN_EXE_local-server"))
        .args(["--port", "0", "--data-dir"])
        .arg(dir)
        .env_remove("METRICS_NAMESPACE")
        .env_remove("METRICS_BY_SITE")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed and waited for on drop, whatever happens next.
    let mut running = Running {
        child,
        base: String::new(),
    };
    // The server records the port it took once it listens.
    let record = dir.join("server.json");
    for _ in 0..600 {
        if let Some(port) = std::fs::read_to_string(&record)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|v| v["port"].as_u64())
        {
            running.base = format!("http://127.0.0.1:{port}");
            return running;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the local server did not start");
}

fn token(keys: &LocalKeys, user: &str, group: &str) -> String {
    keys.token(&spec(user, &[group])).unwrap()
}

/// The JSON body of a request as `token`, with its status as `_status`.
async fn call(base: &str, method: &str, path: &str, token: &str, body: Option<Value>) -> Value {
    let auth = format!("Bearer {token}");
    let mut headers = vec![("authorization", auth.as_str())];
    if body.is_some() {
        headers.push(("content-type", "application/json"));
    }
    let (status, _, text) = http(base, method, path, &headers, body.map(|b| b.to_string())).await;
    let mut body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    body["_status"] = status.into();
    body
}

#[tokio::test]
async fn every_request_reports_its_site_status_class_latency_and_storage() {
    let dir = tempfile::tempdir().unwrap();
    let keys = LocalKeys::load_or_create(dir.path()).unwrap();
    let mut server = start(dir.path()).await;
    let base = server.base.clone();
    let alice = token(&keys, "alice", "marketing");
    let bob = token(&keys, "bob", "finance");

    let created = call(
        &base,
        "POST",
        "/documents?siteId=marketing",
        &alice,
        Some(json!({"path": "a.txt", "contentType": "text/plain", "content": "hello"})),
    )
    .await;
    assert_eq!(created["_status"], 201, "{created}");
    let doc = created["documentId"].as_str().unwrap().to_owned();
    let read = call(
        &base,
        "GET",
        &format!("/documents/{doc}?siteId=marketing"),
        &alice,
        None,
    )
    .await;
    assert_eq!(read["_status"], 200);
    // Another tenant's member: refused before any site is authorized.
    let refused = call(&base, "GET", "/documents?siteId=marketing", &bob, None).await;
    assert_eq!(refused["_status"], 403);
    let own = call(&base, "GET", "/documents?siteId=finance", &bob, None).await;
    assert_eq!(own["_status"], 200);

    // Lines are written as requests finish; stop the server and read them all.
    let _ = server.child.kill();
    let stdout = server.child.stdout.take().unwrap();
    let lines: Vec<Value> = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str::<Value>(&l).ok())
        .filter(|l| l.get("_aws").is_some())
        .collect();
    let line = |method: &str, path: &str, status: u64| {
        lines
            .iter()
            .find(|l| l["method"] == method && l["path"] == path && l["status"] == status)
            .unwrap_or_else(|| panic!("no metrics line for {method} {path}: {lines:#?}"))
            .clone()
    };

    let write = line("POST", "/documents", 201);
    assert_eq!(write["Function"], "documents");
    assert_eq!(write["Site"], "marketing");
    assert_eq!(write["Requests"], 1);
    assert_eq!(
        (write["Errors4xx"].as_u64(), write["Errors5xx"].as_u64()),
        (Some(0), Some(0))
    );
    assert!(write["StorageCalls"].as_u64().unwrap() >= 1, "{write}");
    assert!(
        write["WriteCapacityUnits"].as_f64().unwrap() >= 1.0,
        "{write}"
    );
    assert!(write["Latency"].as_f64().unwrap() > 0.0);
    assert!(write["requestId"].as_str().is_some_and(|r| r.len() > 1));
    let meta = &write["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(meta["Namespace"], "TenantPlatform");
    assert_eq!(meta["Dimensions"], json!([["Function"], ["Site"]]));

    let get = line("GET", &format!("/documents/{doc}"), 200);
    assert_eq!(get["Site"], "marketing");
    assert!(get["ItemsRead"].as_u64().unwrap() >= 1, "{get}");
    assert!(get["ReadCapacityUnits"].as_f64().unwrap() >= 1.0, "{get}");
    assert_eq!(get["WriteCapacityUnits"], 0.0);

    // A refused request counts as a 4xx of the function, under no site: an unauthorized caller
    // cannot charge a tenant or make up dimension values.
    let no = line("GET", "/documents", 403);
    assert_eq!(no["Errors4xx"], 1);
    assert!(no.get("Site").is_none(), "{no}");
    assert_eq!(
        no["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        json!([["Function"]])
    );
    let finance = line("GET", "/documents", 200);
    assert_eq!(finance["Site"], "finance");
    assert_eq!(lines.len(), 4, "one line per request: {lines:#?}");
}
