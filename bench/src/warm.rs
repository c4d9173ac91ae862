//! Warm latency: every document route, in process, on the embedded backend, for a tenant of
//! `--warm-docs` (10,000) documents. `documents::handle` is called directly with requests
//! prebuilt from API Gateway events (event parsing and the Lambda runtime are not timed), on a
//! current-thread Tokio runtime as in Lambda. No tracing subscriber is installed, so log
//! formatting is not timed either.

use std::time::Instant;

use lambda_http::Request;
use serde_json::{Map, Value, json};
use storage::PageTokens;
use tenant_context::TenantConfig;

use crate::Opts;
use crate::fixtures::{self, AUDIENCE, ISSUER, PAGING_SECRET};
use crate::report::{self, Goal, num};
use crate::stats;

const SITE: &str = "bench";

/// Untimed iterations before each route's timed ones.
const WARMUP: usize = 50;

/// One timed step: an untimed request to prepare it (if any) and the timed request.
struct Step {
    setup: Option<Request>,
    timed: Request,
}

fn step(timed: Value) -> Step {
    Step {
        setup: None,
        timed: fixtures::request(timed),
    }
}

/// Runs the steps in order; returns the latency of each timed request after the warm-up, in
/// microseconds, and the statuses seen. Any status outside 2xx stops the benchmark.
async fn run_steps(deps: &documents::Deps, route: &str, steps: Vec<Step>) -> (Vec<f64>, u16) {
    let mut out = Vec::with_capacity(steps.len());
    let mut status = 0;
    for (i, s) in steps.into_iter().enumerate() {
        if let Some(setup) = s.setup {
            let (st, body) = fixtures::read(documents::handle(setup, deps).await);
            assert!((200..300).contains(&st), "{route} setup: {st} {body}");
        }
        let t0 = Instant::now();
        let resp = documents::handle(s.timed, deps).await;
        let dt = t0.elapsed();
        status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let (_, body) = fixtures::read(resp);
            panic!("{route}: status {status}: {body}");
        }
        drop(resp);
        if i >= WARMUP {
            out.push(stats::us(dt));
        }
    }
    (out, status)
}

async fn create(deps: &documents::Deps, who: &Map<String, Value>, body: Value) -> String {
    let req = fixtures::request(fixtures::event(
        "POST",
        &format!("/documents?siteId={SITE}"),
        Some(&body),
        Some(who),
    ));
    let (status, body) = fixtures::read(documents::handle(req, deps).await);
    assert_eq!(status, 201, "create: {body}");
    body["documentId"].as_str().expect("id").to_owned()
}

pub fn section(opts: &Opts) -> (Value, Vec<Goal>) {
    report::block_on(run(opts))
}

async fn run(opts: &Opts) -> (Value, Vec<Goal>) {
    report::section(&format!(
        "warm latency (in process, embedded backend, tenant of {} documents; us)",
        opts.warm_docs
    ));
    let backend = integration_tests::Backend::embedded();
    let deps = documents::Deps::new(
        TenantConfig::default(),
        backend.table.clone(),
        backend.blobs.clone(),
        PageTokens::new(PAGING_SECRET.as_bytes()),
        documents::Limits::default(),
    );
    let who = fixtures::claims("alice", &[SITE], ISSUER, AUDIENCE);
    let probe_body = |path: &str| {
        json!({
            "path": path,
            "contentType": "text/plain",
            "content": "warm latency probe document",
            "tags": [{"key": "status", "value": "draft"}, {"key": "project", "value": "apollo"}],
            "metadata": [{"key": "owner", "value": "alice"}],
        })
    };
    let probe = create(&deps, &who, probe_body("probe/read.txt")).await;
    let patched = create(&deps, &who, probe_body("probe/patch.txt")).await;
    let tagged = create(&deps, &who, probe_body("probe/tags.txt")).await;
    let load_start = Instant::now();
    let bulk = opts.warm_docs.saturating_sub(3);
    fixtures::bulk_load(
        backend.table.as_ref(),
        backend.blobs.as_ref(),
        &deps.tenant,
        SITE,
        bulk,
    )
    .await
    .expect("bulk load");
    let load_s = load_start.elapsed().as_secs_f64();

    let ev = |method: &str, path: &str, body: Option<Value>| {
        fixtures::event(method, path, body.as_ref(), Some(&who))
    };
    let q = |p: &str| {
        if p.contains('?') {
            format!("{p}&siteId={SITE}")
        } else {
            format!("{p}?siteId={SITE}")
        }
    };
    let reads = WARMUP + opts.reads;
    let writes = WARMUP + opts.writes;
    let search = json!({"query": {"tag": {"key": "status", "eq": "draft"}}});
    let created: Vec<String> = (0..writes)
        .map(|_| uuid::Uuid::new_v4().to_string())
        .collect();

    // (route, steps): reads first, on exactly `warm_docs` documents; then writes.
    type Plan<'a> = (&'static str, Box<dyn Fn() -> Vec<Step> + 'a>);
    let plans: Vec<Plan> = vec![
        (
            "GET /documents",
            Box::new(|| {
                (0..reads)
                    .map(|_| step(ev("GET", &q("/documents"), None)))
                    .collect()
            }),
        ),
        (
            "GET /documents?limit=100",
            Box::new(|| {
                (0..reads)
                    .map(|_| step(ev("GET", &q("/documents?limit=100"), None)))
                    .collect()
            }),
        ),
        (
            "GET /documents/{documentId}",
            Box::new(|| {
                (0..reads)
                    .map(|_| step(ev("GET", &q(&format!("/documents/{probe}")), None)))
                    .collect()
            }),
        ),
        (
            "GET /documents/{documentId}/content",
            Box::new(|| {
                (0..reads)
                    .map(|_| step(ev("GET", &q(&format!("/documents/{probe}/content")), None)))
                    .collect()
            }),
        ),
        (
            "GET /documents/{documentId}/url",
            Box::new(|| {
                (0..reads)
                    .map(|_| step(ev("GET", &q(&format!("/documents/{probe}/url")), None)))
                    .collect()
            }),
        ),
        (
            "GET /documents/{documentId}/tags",
            Box::new(|| {
                (0..reads)
                    .map(|_| step(ev("GET", &q(&format!("/documents/{probe}/tags")), None)))
                    .collect()
            }),
        ),
        (
            "GET /documents/{documentId}/tags/{tagKey}",
            Box::new(|| {
                (0..reads)
                    .map(|_| {
                        step(ev(
                            "GET",
                            &q(&format!("/documents/{probe}/tags/status")),
                            None,
                        ))
                    })
                    .collect()
            }),
        ),
        (
            "POST /search",
            Box::new(|| {
                (0..reads)
                    .map(|_| step(ev("POST", &q("/search"), Some(search.clone()))))
                    .collect()
            }),
        ),
        (
            "POST /documents",
            Box::new(|| {
                created
                    .iter()
                    .enumerate()
                    .map(|(i, id)| {
                        step(ev(
                            "POST",
                            &q("/documents"),
                            Some(json!({
                                "documentId": id,
                                "path": format!("new/{i}.txt"),
                                "content": "created by the benchmark",
                                "tags": [{"key": "status", "value": "draft"}],
                            })),
                        ))
                    })
                    .collect()
            }),
        ),
        (
            "GET /documents/upload",
            Box::new(|| {
                (0..writes)
                    .map(|i| {
                        step(ev(
                            "GET",
                            &q(&format!("/documents/upload?path=up/{i}.bin")),
                            None,
                        ))
                    })
                    .collect()
            }),
        ),
        (
            "PATCH /documents/{documentId}",
            Box::new(|| {
                (0..writes)
                    .map(|i| {
                        step(ev(
                            "PATCH",
                            &q(&format!("/documents/{patched}")),
                            Some(json!({"path": format!("probe/patch-{i}.txt")})),
                        ))
                    })
                    .collect()
            }),
        ),
        (
            "POST /documents/{documentId}/tags",
            Box::new(|| {
                (0..writes)
                    .map(|i| {
                        step(ev(
                            "POST",
                            &q(&format!("/documents/{tagged}/tags")),
                            Some(json!({"tags": [{"key": "reviewer", "value": format!("r{i}")}]})),
                        ))
                    })
                    .collect()
            }),
        ),
        (
            "PUT /documents/{documentId}/tags/{tagKey}",
            Box::new(|| {
                (0..writes)
                    .map(|i| {
                        step(ev(
                            "PUT",
                            &q(&format!("/documents/{tagged}/tags/project")),
                            Some(json!({"value": format!("s{i}")})),
                        ))
                    })
                    .collect()
            }),
        ),
        (
            "DELETE /documents/{documentId}/tags/{tagKey}",
            Box::new(|| {
                (0..writes)
                    .map(|i| Step {
                        setup: Some(fixtures::request(ev(
                            "POST",
                            &q(&format!("/documents/{tagged}/tags")),
                            Some(json!({"tags": [{"key": "temp", "value": format!("t{i}")}]})),
                        ))),
                        timed: fixtures::request(ev(
                            "DELETE",
                            &q(&format!("/documents/{tagged}/tags/temp")),
                            None,
                        )),
                    })
                    .collect()
            }),
        ),
        (
            "DELETE /documents/{documentId}",
            Box::new(|| {
                created
                    .iter()
                    .map(|id| step(ev("DELETE", &q(&format!("/documents/{id}")), None)))
                    .collect()
            }),
        ),
    ];

    let mut rows = Vec::new();
    let mut per = Map::new();
    let mut get_p50 = None;
    for (route, plan) in &plans {
        let steps = plan();
        let (lat, status) = run_steps(&deps, route, steps).await;
        let s = stats::summarize(&lat);
        if *route == "GET /documents/{documentId}" {
            get_p50 = s.map(|s| s.p50);
        }
        rows.push(vec![
            route.to_string(),
            status.to_string(),
            s.map(|s| s.n.to_string()).unwrap_or_default(),
            num(s.map(|s| s.p50), 1),
            num(s.map(|s| s.p99), 1),
            num(s.map(|s| s.mean), 1),
        ]);
        per.insert(
            route.to_string(),
            json!({
                "status": status,
                "n": s.map(|s| s.n),
                "p50_us": s.map(|s| s.p50),
                "p99_us": s.map(|s| s.p99),
                "mean_us": s.map(|s| s.mean),
                "min_us": s.map(|s| s.min),
                "max_us": s.map(|s| s.max),
            }),
        );
    }
    report::table(&["route", "status", "n", "p50", "p99", "mean"], &rows);
    println!(
        "tenant loaded in {load_s:.1} s; writes commit a redb transaction to disk each (durable), \
         reads hit the page cache"
    );
    (
        json!({
            "backend": "embedded (redb)",
            "tenant_documents": opts.warm_docs,
            "warmup_per_route": WARMUP,
            "load_seconds": load_s,
            "routes": per,
        }),
        vec![Goal::new(
            "warm GET /documents/{documentId} p50",
            get_p50,
            50.0,
            "us",
        )],
    )
}
