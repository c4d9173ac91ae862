//! Tenant independence: tenant A's list and tag search while tenant B holds no documents and
//! while it holds `--tenant-b` (100,000) documents with the same tags, on the embedded backend.
//!
//! Two databases are measured side by side: one holding A only, one holding A and B. Rounds
//! alternate between them, so machine noise hits both alike; the figures are the ratios
//! (B large / B empty) of A's latency and of the items A's requests read.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{Map, Value, json};
use storage::{PageTokens, Table};
use tenant_context::TenantConfig;

use crate::Opts;
use crate::fixtures::{self, AUDIENCE, Counting, ISSUER, PAGING_SECRET};
use crate::report::{self, Goal, num};
use crate::stats;

const A: &str = "tenant-a";
const B: &str = "tenant-b";

struct Db {
    counting: Arc<Counting>,
    deps: documents::Deps,
    _backend: integration_tests::Backend,
}

impl Db {
    fn new() -> Db {
        let backend = integration_tests::Backend::embedded();
        let counting = Arc::new(Counting::new(backend.table.clone()));
        let table: Arc<dyn Table> = counting.clone();
        let deps = documents::Deps::new(
            TenantConfig::default(),
            table,
            backend.blobs.clone(),
            PageTokens::new(PAGING_SECRET.as_bytes()),
            documents::Limits::default(),
        );
        Db {
            counting,
            deps,
            _backend: backend,
        }
    }

    async fn load(&self, site: &str, n: usize) {
        if n == 0 {
            return;
        }
        fixtures::bulk_load(
            self.counting.as_ref(),
            self._backend.blobs.as_ref(),
            &self.deps.tenant,
            site,
            n,
        )
        .await
        .expect("bulk load");
        self.counting.take();
    }
}

struct Route {
    name: &'static str,
    method: &'static str,
    path: String,
    body: Option<Value>,
}

#[derive(Default)]
struct Samples {
    latency_us: Vec<f64>,
    items_read: Vec<f64>,
    read_calls: Vec<f64>,
    returned: Vec<f64>,
}

pub fn section(opts: &Opts) -> (Value, Vec<Goal>) {
    report::block_on(run(opts))
}

async fn run(opts: &Opts) -> (Value, Vec<Goal>) {
    report::section(&format!(
        "tenant independence (A: {} documents; B: 0 vs {} documents; embedded backend)",
        opts.tenant_a, opts.tenant_b
    ));
    let empty = Db::new();
    let large = Db::new();
    empty.load(A, opts.tenant_a).await;
    large.load(A, opts.tenant_a).await;
    let t = Instant::now();
    large.load(B, opts.tenant_b).await;
    let load_b_s = t.elapsed().as_secs_f64();
    println!(
        "loaded tenant B ({} documents) in {load_b_s:.1} s",
        opts.tenant_b
    );

    let routes = [
        Route {
            name: "list (GET /documents, limit 10)",
            method: "GET",
            path: format!("/documents?siteId={A}"),
            body: None,
        },
        Route {
            name: "list (GET /documents, limit 100)",
            method: "GET",
            path: format!("/documents?siteId={A}&limit=100"),
            body: None,
        },
        Route {
            name: "tag search (status=draft, limit 10)",
            method: "POST",
            path: format!("/search?siteId={A}"),
            body: Some(json!({"query": {"tag": {"key": "status", "eq": "draft"}}})),
        },
    ];
    let who = fixtures::claims("alice", &[A], ISSUER, AUDIENCE);
    let rounds = if opts.quick { 5 } else { 10 };
    let per_round = if opts.quick { 100 } else { 300 };
    // [db][route]
    let mut samples: Vec<Vec<Samples>> = (0..2)
        .map(|_| routes.iter().map(|_| Samples::default()).collect())
        .collect();
    let dbs = [&empty, &large];
    // Requests alternate between the two databases one by one (which goes first alternates
    // too), so both see the same machine at the same moment.
    for round in 0..=rounds {
        for (r, route) in routes.iter().enumerate() {
            let build = || -> Vec<_> {
                (0..per_round)
                    .map(|_| {
                        fixtures::request(fixtures::event(
                            route.method,
                            &route.path,
                            route.body.as_ref(),
                            Some(&who),
                        ))
                    })
                    .collect()
            };
            let mut reqs = [build().into_iter(), build().into_iter()];
            for db in dbs {
                db.counting.take();
            }
            for j in 0..per_round {
                for k in 0..2 {
                    let d = (j + k) % 2;
                    let db = dbs[d];
                    let req = reqs[d].next().expect("a request per iteration");
                    let t0 = Instant::now();
                    let resp = documents::handle(req, &db.deps).await;
                    let dt = t0.elapsed();
                    let counts = db.counting.take();
                    let (status, body) = fixtures::read(resp);
                    assert_eq!(status, 200, "{}: {body}", route.name);
                    // Round 0 warms both databases up and is not kept.
                    if round > 0 {
                        let s = &mut samples[d][r];
                        s.latency_us.push(stats::us(dt));
                        s.items_read.push(counts.items_read as f64);
                        s.read_calls.push(counts.reads() as f64);
                        s.returned
                            .push(body["documents"].as_array().map_or(0, Vec::len) as f64);
                    }
                }
            }
        }
    }

    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let mut rows = Vec::new();
    let mut per = Map::new();
    let mut goals = Vec::new();
    for (r, route) in routes.iter().enumerate() {
        let e = stats::summarize(&samples[0][r].latency_us);
        let l = stats::summarize(&samples[1][r].latency_us);
        let (ie, il) = (
            mean(&samples[0][r].items_read),
            mean(&samples[1][r].items_read),
        );
        let ret = mean(&samples[1][r].returned);
        let (ce, cl) = (
            mean(&samples[0][r].read_calls),
            mean(&samples[1][r].read_calls),
        );
        let ratio = |a: Option<f64>, b: Option<f64>| Some(a? / b?);
        let p50_ratio = ratio(l.map(|s| s.p50), e.map(|s| s.p50));
        let p99_ratio = ratio(l.map(|s| s.p99), e.map(|s| s.p99));
        let items_ratio = ratio(Some(il), Some(ie));
        rows.push(vec![
            route.name.to_string(),
            num(e.map(|s| s.p50), 1),
            num(l.map(|s| s.p50), 1),
            num(p50_ratio, 3),
            num(e.map(|s| s.p99), 1),
            num(l.map(|s| s.p99), 1),
            num(p99_ratio, 3),
            format!("{} / {}", num(Some(ie), 1), num(Some(il), 1)),
            num(Some(ret), 1),
        ]);
        per.insert(
            route.name.to_string(),
            json!({
                "samples_each": e.map(|s| s.n),
                "b_empty": {"p50_us": e.map(|s| s.p50), "p99_us": e.map(|s| s.p99), "items_read": ie, "read_calls": ce},
                "b_large": {"p50_us": l.map(|s| s.p50), "p99_us": l.map(|s| s.p99), "items_read": il, "read_calls": cl},
                "items_returned": ret,
                "p50_ratio": p50_ratio,
                "p99_ratio": p99_ratio,
                "items_read_ratio": items_ratio,
            }),
        );
        for (what, ratio) in [("p50", p50_ratio), ("items read", items_ratio)] {
            let name = format!("tenant A {} {what}, B large / B empty", route.name);
            goals.push(Goal::ratio(name, ratio, 1.1));
        }
    }
    report::table(
        &[
            "tenant A request",
            "p50 B=0",
            "p50 B=big",
            "ratio",
            "p99 B=0",
            "p99 B=big",
            "ratio",
            "items read",
            "returned",
        ],
        &rows,
    );
    println!(
        "latencies in us; {rounds} rounds of {per_round} requests per database and route, alternating request by request"
    );
    (
        json!({
            "backend": "embedded (redb), two databases measured alternately",
            "tenant_a_documents": opts.tenant_a,
            "tenant_b_documents": opts.tenant_b,
            "tenant_b_load_seconds": load_b_s,
            "rounds": rounds,
            "requests_per_round": per_round,
            "requests": per,
        }),
        goals,
    )
}
