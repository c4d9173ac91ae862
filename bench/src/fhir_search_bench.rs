//! FHIR search (`functions/fhir-search`, `fhir_search::handle` called in process, the whole
//! request path: event parsing excluded, routing, authentication, parsing, the engine, the
//! searchset Bundle's text):
//!
//! - on the embedded backend, a tenant of `--search-resources` (10,000) resources loaded from
//!   the example Bundles ([`crate::fhir_load`]): p50/p99 of realistic searches with
//!   `_count=20`, and what each read (the engine's `explain`, from a direct run);
//! - on moto, the same tenant smaller (`--search-moto`): DynamoDB items read per resource
//!   returned and calls by operation on the wire (no Scan);
//! - tenant independence: tenant A's searches while tenant B holds no resource and while it
//!   holds `--search-tenant-b` (100,000), two databases measured request by request in turn.

use std::sync::Arc;
use std::time::Instant;

use fhir_core::search::engine::{Engine, Explain, Options};
use fhir_core::search::extract::SearchExtractor;
use fhir_core::search::query::{Search, url_encode};
use fhir_core::{ResourceType, Store, StoreOptions};
use serde_json::{Map, Value, json};
use storage::{DynamoTable, PageTokens, Table};
use tenant_context::TenantConfig;

use crate::Opts;
use crate::cost::Tap;
use crate::fhir_bench::{TENANT, tenant_claims};
use crate::fhir_load::{self, Loaded};
use crate::fixtures::{self, AUDIENCE, Counting, ISSUER, PAGING_SECRET};
use crate::report::{self, Goal, num};
use crate::stats;

/// Tenant B of the independence measurement.
const TENANT_B: &str = "bench-fhir-b";
/// The base the engine sees (what the handler derives from the events' domain).
const BASE: &str = "https://api.example.com/fhir";
/// The page size of every search.
const COUNT: usize = 20;
/// Untimed searches before the timed ones.
const WARMUP: usize = 50;
/// Direct runs of the engine per search (the first one's explain is reported).
const ENGINE_RUNS: usize = 200;

/// Single-parameter searches, page of 20, embedded, p50 in ms (target).
const MAX_SINGLE_P50_MS: f64 = 1.0;
/// Single-parameter searches on DynamoDB: items read per resource returned (target).
const MAX_ITEMS_PER_RETURNED: f64 = 2.2;
/// Tenant A with B large against B empty (target).
const MAX_TENANT_RATIO: f64 = 1.1;

/// The example whose patient (copy 0) the patient-scoped searches are about (the largest).
const PATIENT_FILE: &str = "uscore_bundle_patient_355.json";
/// The LOINC code of `Observation?code=`: Tobacco smoking status, 133 Observations per copy
/// of the examples (the most frequent code in them).
const CODE: &str = "http://loinc.org|72166-2";
/// The code of `_has`: Body Height, 3 per copy (`_has` resolves its inner search to at most
/// 1,000 resources).
const HAS_CODE: &str = "http://loinc.org|8302-2";

/// One search: its label (ids as `{id}`), path and parameters (`_count` added).
#[derive(Debug, Clone)]
pub struct Query {
    pub label: String,
    pub rtype: &'static str,
    pub pairs: Vec<(String, String)>,
    /// One search parameter (besides `_count`): the target of 1 ms and 2.2 items.
    pub single: bool,
}

impl Query {
    fn new(rtype: &'static str, label: &str, params: &[(&str, &str)], single: bool) -> Query {
        let mut pairs: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        pairs.push(("_count".into(), COUNT.to_string()));
        Query {
            label: label.to_owned(),
            rtype,
            pairs,
            single,
        }
    }

    /// The raw query string (values percent-encoded).
    pub fn query_string(&self) -> String {
        self.pairs
            .iter()
            .map(|(k, v)| format!("{k}={}", url_encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    }

    pub fn path(&self) -> String {
        format!("/fhir/{}", self.rtype)
    }

    /// `GET /fhir/<Type>?<query>`, as the API Gateway event of `who`.
    fn event(&self, who: &Map<String, Value>) -> Value {
        let path = self.path();
        let query = self.query_string();
        platform_http::http_api_event(&platform_http::HttpApiRequest {
            method: "GET",
            path: &path,
            query: &query,
            headers: Vec::new(),
            body: None,
            claims: Some(who),
            domain: "api.example.com",
            request_id: "bench",
        })
    }
}

/// The realistic searches on a tenant loaded by [`fhir_load::load`]: `patient` is a Patient
/// id, `name` a prefix of its family name.
pub fn queries(patient: &str, name: &str) -> Vec<Query> {
    vec![
        Query::new(
            "Patient",
            &format!("Patient?name={name}"),
            &[("name", name)],
            true,
        ),
        Query::new(
            "Patient",
            "Patient?gender=female",
            &[("gender", "female")],
            true,
        ),
        Query::new(
            "Observation",
            &format!("Observation?code={CODE}"),
            &[("code", CODE)],
            true,
        ),
        Query::new(
            "Observation",
            "Observation?patient={id}&category=vital-signs&date=ge2000",
            &[
                ("patient", patient),
                ("category", "vital-signs"),
                ("date", "ge2000"),
            ],
            false,
        ),
        Query::new(
            "Condition",
            "Condition?patient={id}&clinical-status=active",
            &[("patient", patient), ("clinical-status", "active")],
            false,
        ),
        Query::new(
            "Encounter",
            "Encounter?patient={id}&_sort=-date",
            &[("patient", patient), ("_sort", "-date")],
            false,
        ),
        Query::new(
            "Observation",
            "Observation?patient={id}&_include=Observation:patient",
            &[("patient", patient), ("_include", "Observation:patient")],
            false,
        ),
        Query::new(
            "Patient",
            "Patient?_id={id}&_revinclude=Provenance:target",
            &[("_id", patient), ("_revinclude", "Provenance:target")],
            false,
        ),
        Query::new(
            "Observation",
            &format!("Observation?subject:Patient.name={name} (chain)"),
            &[("subject:Patient.name", name)],
            false,
        ),
        Query::new(
            "Patient",
            &format!("Patient?_has:Observation:patient:code={HAS_CODE}"),
            &[("_has:Observation:patient:code", HAS_CODE)],
            false,
        ),
    ]
}

/// A search's answer: status, matches and included resources in the Bundle.
#[derive(Debug, Clone, Copy, Default)]
struct Answer {
    status: u16,
    matches: usize,
    included: usize,
}

fn answer(resp: lambda_http::Response<lambda_http::Body>) -> (Answer, Value) {
    let r = integration_tests::response(resp);
    let mode = |m: &str| {
        r.body["entry"].as_array().map_or(0, |es| {
            es.iter().filter(|e| e["search"]["mode"] == m).count()
        })
    };
    (
        Answer {
            status: r.status,
            matches: mode("match"),
            included: mode("include"),
        },
        r.body,
    )
}

/// The FHIR functions on one table.
struct Db {
    counting: Arc<Counting>,
    fhir: fhir::Deps,
    search: fhir_search::Deps,
    _backend: Option<integration_tests::Backend>,
}

impl Db {
    fn on(
        counting: Arc<Counting>,
        blobs: Arc<dyn storage::Blobs>,
        backend: Option<integration_tests::Backend>,
    ) -> Db {
        let table: Arc<dyn Table> = counting.clone();
        Db {
            fhir: fhir::Deps::new(
                TenantConfig::default(),
                table.clone(),
                blobs,
                PageTokens::new(PAGING_SECRET.as_bytes()),
                fhir::Limits::default(),
            ),
            search: fhir_search::Deps::new(
                TenantConfig::default(),
                table,
                PageTokens::new(PAGING_SECRET.as_bytes()),
            ),
            counting,
            _backend: backend,
        }
    }

    fn embedded() -> Db {
        let backend = integration_tests::Backend::embedded();
        let counting = Arc::new(Counting::new(backend.table.clone()));
        Db::on(counting, backend.blobs.clone(), Some(backend))
    }

    async fn load(
        &self,
        tenant: &str,
        examples: &[(String, Value)],
        n: usize,
        progress: usize,
    ) -> Loaded {
        let who = tenant_claims("loader", tenant, ISSUER, AUDIENCE);
        let l = fhir_load::load(&self.fhir, &who, examples, n, progress)
            .await
            .unwrap_or_else(|e| panic!("loading tenant {tenant}: {e}"));
        self.counting.take();
        l
    }

    async fn search(&self, q: &Query, who: &Map<String, Value>) -> (Answer, Value) {
        let req = fixtures::request(q.event(who));
        answer(fhir_search::handle(req, &self.search).await)
    }

    /// What the engine reads for `q` in tenant `tenant` (a direct run, as the handler does:
    /// the explain of the first), and the time of `reps` runs (store and engine, no Bundle), in
    /// microseconds.
    async fn explain(
        &self,
        tenant: &str,
        q: &Query,
        reps: usize,
    ) -> Result<(Explain, Vec<f64>), String> {
        let scope = integration_tests::fhir::scope_for(tenant).await;
        let t = ResourceType::parse(q.rtype).ok_or("a resource type")?;
        let search = Search::parse(Some(t), &q.pairs, false).map_err(|e| format!("{e:?}"))?;
        let opts = Options::new(BASE);
        let mut explain = None;
        let mut lat = Vec::with_capacity(reps);
        for _ in 0..reps.max(1) {
            let t0 = Instant::now();
            let store = Store::new(
                self.counting.as_ref(),
                &scope,
                &SearchExtractor,
                StoreOptions::default(),
            );
            let out = Engine::new(&store, &opts)
                .run(&search, None)
                .await
                .map_err(|e| format!("{e:?}"))?;
            lat.push(stats::us(t0.elapsed()));
            explain.get_or_insert(out.explain);
        }
        self.counting.take();
        Ok((explain.unwrap_or_default(), lat))
    }
}

/// The family name of `patient` in the examples (copy 0), for the name searches.
fn family_prefix(examples: &[(String, Value)]) -> String {
    examples
        .iter()
        .find(|(f, _)| f == PATIENT_FILE)
        .or(examples.first())
        .and_then(|(_, b)| {
            b["entry"]
                .as_array()?
                .iter()
                .find(|e| e["resource"]["resourceType"] == "Patient")?["resource"]["name"][0]
                ["family"]
                .as_str()
                .map(|f| f.chars().take(4).collect())
        })
        .unwrap_or_else(|| "a".into())
}

pub fn section(opts: &Opts, rt: &tokio::runtime::Runtime) -> (Value, Vec<Goal>) {
    let dir = opts
        .fhir_bundle
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    let examples = match fhir_load::examples(&dir) {
        Ok(e) => e,
        Err(e) => {
            println!("\nbench: no FHIR example Bundles ({e}); the search section is skipped");
            return (json!({ "skipped": e }), Vec::new());
        }
    };
    let (embedded, mut goals) = report::block_on(embedded(opts, &examples));
    let (moto, g) = rt.block_on(moto(opts, &examples));
    goals.extend(g);
    (
        json!({
            "examples": examples.iter().map(|(f, b)| json!({
                "file": f, "entries": b["entry"].as_array().map_or(0, Vec::len),
            })).collect::<Vec<_>>(),
            "page_size": COUNT,
            "embedded": embedded,
            "dynamodb": moto,
        }),
        goals,
    )
}

fn loaded_json(l: &Loaded) -> Value {
    json!({
        "resources": l.resources,
        "bundles": l.bundles,
        "copies": l.copies,
        "patients": l.patients.len(),
        "load_seconds": l.seconds,
        "resources_per_second": l.resources as f64 / l.seconds.max(1e-9),
    })
}

/// Latency and explain on tenant A (embedded), then tenant independence.
async fn embedded(opts: &Opts, examples: &[(String, Value)]) -> (Value, Vec<Goal>) {
    report::section(&format!(
        "FHIR search on the embedded backend (tenant of {} resources from the example Bundles; \
         in process through fhir_search::handle; _count={COUNT})",
        opts.search_resources
    ));
    let a = Db::embedded();
    let la = a.load(TENANT, examples, opts.search_resources, 0).await;
    println!(
        "loaded {} resources ({} transaction Bundles, {} copies of the examples, {} patients) \
         through fhir::handle in {:.1} s",
        la.resources,
        la.bundles,
        la.copies,
        la.patients.len(),
        la.seconds
    );
    let patient = la
        .patient_of(PATIENT_FILE)
        .map(str::to_owned)
        .unwrap_or_else(|| la.patients[0].1.clone());
    let name = family_prefix(examples);
    let qs = queries(&patient, &name);
    let who = tenant_claims("alice", TENANT, ISSUER, AUDIENCE);

    // What each search reads (a direct engine run) and returns (through the handler).
    let mut explains = Vec::new();
    for q in &qs {
        let e = a.explain(TENANT, q, ENGINE_RUNS).await;
        let (ans, body) = a.search(q, &who).await;
        assert_eq!(ans.status, 200, "{}: {body}", q.label);
        let counts = a.counting.take();
        explains.push((e, ans, counts));
    }

    let n = opts.search_reads;
    let mut rows = Vec::new();
    let mut per = Map::new();
    let mut goals = Vec::new();
    for (q, (e, ans, counts)) in qs.iter().zip(&explains) {
        let lat = time_search(&a, q, &who, n).await;
        let s = stats::summarize(&lat);
        let (driving, entries, heads, queries, engine) = match e {
            Ok((x, lat)) => (
                x.driving.join(", "),
                Some(x.entries_read as f64),
                Some(x.heads_read as f64),
                Some(x.queries as f64),
                stats::summarize(lat),
            ),
            Err(err) => (format!("error: {err}"), None, None, None, None),
        };
        let per_match = |x: Option<f64>| {
            x.filter(|_| ans.matches > 0)
                .map(|x| x / ans.matches as f64)
        };
        let returned = ans.matches + ans.included;
        let items_per_returned = (returned > 0).then(|| counts.items_read as f64 / returned as f64);
        rows.push(vec![
            q.label.clone(),
            format!("{}+{}", ans.matches, ans.included),
            num(s.map(|s| s.p50), 0),
            num(s.map(|s| s.p99), 0),
            num(engine.map(|s| s.p50), 0),
            num(queries, 0),
            num(entries, 0),
            num(heads, 0),
            num(per_match(entries), 2),
            num(per_match(heads), 2),
            num(items_per_returned, 2),
            driving.clone(),
        ]);
        per.insert(
            q.label.clone(),
            json!({
                "path": q.path(),
                "query": q.query_string(),
                "single_parameter": q.single,
                "status": ans.status,
                "matches": ans.matches,
                "included": ans.included,
                "n": s.map(|s| s.n),
                "p50_us": s.map(|s| s.p50),
                "p99_us": s.map(|s| s.p99),
                "mean_us": s.map(|s| s.mean),
                "min_us": s.map(|s| s.min),
                "max_us": s.map(|s| s.max),
                "engine_only_p50_us": engine.map(|s| s.p50),
                "engine_only_runs": engine.map(|s| s.n),
                "explain": {
                    "driving": driving,
                    "queries": queries,
                    "entries_read": entries,
                    "heads_read": heads,
                    "entries_per_match": per_match(entries),
                    "heads_per_match": per_match(heads),
                },
                "handler_items_read": counts.items_read,
                "handler_read_calls": counts.reads(),
                "handler_items_read_per_returned": items_per_returned,
            }),
        );
        if q.single {
            goals.push(Goal::new(
                format!("FHIR search {} p50 (page of {COUNT}, embedded)", q.label),
                s.map(|s| s.p50 / 1000.0),
                MAX_SINGLE_P50_MS,
                "ms",
            ));
        }
    }
    report::table(
        &[
            "search (_count=20)",
            "match+incl",
            "p50 us",
            "p99 us",
            "engine p50",
            "queries",
            "entries",
            "heads",
            "entries/match",
            "heads/match",
            "items/ret",
            "driving index",
        ],
        &rows,
    );
    println!(
        "{n} timed searches each after {WARMUP} untimed; {{id}} = Patient {patient} (copy 0 of \
         {PATIENT_FILE}); engine p50: {ENGINE_RUNS} direct runs of the store and engine (no \
         request, no Bundle); queries, entries, heads: the engine's explain of one direct run \
         (index Queries, index entries read, heads read, includes and chains included); \
         items/ret: items the handler read through the table interface per resource \
         returned (DynamoDB reads one more per Query: see the moto table)"
    );

    let (indep, g) = independence(opts, examples, &a, &qs).await;
    goals.extend(g);
    (
        json!({
            "backend": "embedded (redb)",
            "tenant": loaded_json(&la),
            "patient": patient,
            "name_prefix": name,
            "warmup": WARMUP,
            "searches": per,
            "tenant_independence": indep,
        }),
        goals,
    )
}

/// `n` timed searches of `q` on `db` (microseconds), after [`WARMUP`] untimed ones.
async fn time_search(db: &Db, q: &Query, who: &Map<String, Value>, n: usize) -> Vec<f64> {
    let mut lat = Vec::with_capacity(n);
    for i in 0..WARMUP + n {
        let req = fixtures::request(q.event(who));
        let t0 = Instant::now();
        let resp = fhir_search::handle(req, &db.search).await;
        let dt = t0.elapsed();
        assert_eq!(resp.status().as_u16(), 200, "{}", q.label);
        drop(resp);
        if i >= WARMUP {
            lat.push(stats::us(dt));
        }
    }
    db.counting.take();
    lat
}

/// This process's resident set (`VmRSS`), KiB.
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[derive(Default)]
struct Samples {
    latency_us: Vec<f64>,
    items_read: Vec<f64>,
}

/// Tenant A's searches on `a` (A only) and on a second database holding A and B, request by
/// request in turn.
async fn independence(
    opts: &Opts,
    examples: &[(String, Value)],
    a: &Db,
    qs: &[Query],
) -> (Value, Vec<Goal>) {
    report::section(&format!(
        "FHIR search tenant independence (A: {} resources; B: 0 vs {} resources; embedded)",
        opts.search_resources, opts.search_tenant_b
    ));
    let ab = Db::embedded();
    let la = ab.load(TENANT, examples, opts.search_resources, 0).await;
    let lb = ab
        .load(
            TENANT_B,
            examples,
            opts.search_tenant_b,
            opts.search_tenant_b.div_ceil(4).max(1),
        )
        .await;
    println!(
        "loaded tenant B ({} resources, {} Bundles) through fhir::handle in {:.1} s ({:.0} \
         resources/s; A: {} in {:.1} s)",
        lb.resources,
        lb.bundles,
        lb.seconds,
        lb.resources as f64 / lb.seconds.max(1e-9),
        la.resources,
        la.seconds
    );
    // The patient-scoped searches name copy 0 of the same Bundle in both databases.
    let who = tenant_claims("alice", TENANT, ISSUER, AUDIENCE);
    // The process now holds both databases: A's single-parameter searches on A's own database
    // again, alone (not alternating), to compare with the latency table above.
    let rss_mib = rss_kib().map(|k| k as f64 / 1024.0);
    let mut alone = Map::new();
    for q in qs.iter().filter(|q| q.single) {
        let lat = time_search(a, q, &who, opts.search_reads).await;
        let p50 = stats::median(&lat);
        println!(
            "  {} on A's database alone, after B's load: p50 {} us",
            q.label,
            num(p50, 0)
        );
        alone.insert(q.label.clone(), json!({ "p50_us": p50 }));
    }
    println!(
        "  (the process holds both databases: VmRSS {} MiB)",
        num(rss_mib, 0)
    );
    let rounds = if opts.quick { 5 } else { 10 };
    let per_round = if opts.quick { 50 } else { 100 };
    let dbs = [a, &ab];
    let mut samples: Vec<Vec<Samples>> = (0..2)
        .map(|_| qs.iter().map(|_| Samples::default()).collect())
        .collect();
    for round in 0..=rounds {
        for (r, q) in qs.iter().enumerate() {
            let mut reqs: [Vec<_>; 2] = [0, 1].map(|_| {
                (0..per_round)
                    .map(|_| fixtures::request(q.event(&who)))
                    .collect()
            });
            for db in dbs {
                db.counting.take();
            }
            for j in 0..per_round {
                for k in 0..2 {
                    let d = (j + k) % 2;
                    let db = dbs[d];
                    let req = reqs[d].pop().expect("a request per iteration");
                    let t0 = Instant::now();
                    let resp = fhir_search::handle(req, &db.search).await;
                    let dt = t0.elapsed();
                    let counts = db.counting.take();
                    assert_eq!(resp.status().as_u16(), 200, "{}", q.label);
                    drop(resp);
                    // Round 0 warms both databases up and is not kept.
                    if round > 0 {
                        let s = &mut samples[d][r];
                        s.latency_us.push(stats::us(dt));
                        s.items_read.push(counts.items_read as f64);
                    }
                }
            }
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let ratio = |a: Option<f64>, b: Option<f64>| Some(a? / b?);
    let mut rows = Vec::new();
    let mut per = Map::new();
    let mut goals = Vec::new();
    for (r, q) in qs.iter().enumerate() {
        let e = stats::summarize(&samples[0][r].latency_us);
        let l = stats::summarize(&samples[1][r].latency_us);
        let (ie, il) = (
            mean(&samples[0][r].items_read),
            mean(&samples[1][r].items_read),
        );
        let p50_ratio = ratio(l.map(|s| s.p50), e.map(|s| s.p50));
        let p99_ratio = ratio(l.map(|s| s.p99), e.map(|s| s.p99));
        let items_ratio = ratio(Some(il), Some(ie));
        rows.push(vec![
            q.label.clone(),
            num(e.map(|s| s.p50), 0),
            num(l.map(|s| s.p50), 0),
            num(p50_ratio, 3),
            num(e.map(|s| s.p99), 0),
            num(l.map(|s| s.p99), 0),
            num(p99_ratio, 3),
            format!("{} / {}", num(Some(ie), 0), num(Some(il), 0)),
        ]);
        per.insert(
            q.label.clone(),
            json!({
                "samples_each": e.map(|s| s.n),
                "b_empty": {"p50_us": e.map(|s| s.p50), "p99_us": e.map(|s| s.p99), "items_read": ie},
                "b_large": {"p50_us": l.map(|s| s.p50), "p99_us": l.map(|s| s.p99), "items_read": il},
                "p50_ratio": p50_ratio,
                "p99_ratio": p99_ratio,
                "items_read_ratio": items_ratio,
            }),
        );
        for (what, ratio) in [("p50", p50_ratio), ("items read", items_ratio)] {
            goals.push(Goal::ratio(
                format!("FHIR search tenant A {} {what}, B large / B empty", q.label),
                ratio,
                MAX_TENANT_RATIO,
            ));
        }
    }
    report::table(
        &[
            "tenant A search",
            "p50 B=0",
            "p50 B=big",
            "ratio",
            "p99 B=0",
            "p99 B=big",
            "ratio",
            "items read",
        ],
        &rows,
    );
    println!(
        "latencies in us; {rounds} rounds of {per_round} searches per database and search, \
         alternating request by request (after an unkept warm-up round); items read: through \
         the table per search, B empty / B large"
    );
    (
        json!({
            "backend": "embedded (redb), two databases measured alternately",
            "tenant_a": loaded_json(&la),
            "tenant_b": loaded_json(&lb),
            "process_rss_mib_with_both": rss_mib,
            "a_alone_after_b_load": alone,
            "rounds": rounds,
            "requests_per_round": per_round,
            "searches": per,
        }),
        goals,
    )
}

/// Items read and calls on moto for every search, on a tenant of `--search-moto` resources.
async fn moto(opts: &Opts, examples: &[(String, Value)]) -> (Value, Vec<Goal>) {
    report::section(&format!(
        "FHIR search DynamoDB cost (moto; tenant of {} resources from the example Bundles; \
         items read per resource returned, calls on the wire)",
        opts.search_moto
    ));
    let (tap, table, counting, blobs) = crate::cost::tapped_moto().await;
    let db = Db::on(counting, blobs, None);
    let l = db
        .load(
            TENANT,
            examples,
            opts.search_moto,
            opts.search_moto.div_ceil(4).max(1),
        )
        .await;
    let load_calls = tap.take();
    println!(
        "loaded {} resources ({} Bundles) through fhir::handle on moto in {:.1} s; calls: {}",
        l.resources,
        l.bundles,
        l.seconds,
        ops_text(&load_calls, 1.0)
    );
    let patient = l
        .patient_of(PATIENT_FILE)
        .map(str::to_owned)
        .unwrap_or_else(|| l.patients[0].1.clone());
    let qs = queries(&patient, &family_prefix(examples));
    let who = tenant_claims("alice", TENANT, ISSUER, AUDIENCE);
    // What a search reads is the same every time; moto answers a Query in seconds on a table
    // this size (it walks every item of the table), so few repetitions.
    let reps = if opts.quick { 1 } else { 3 };
    let mut rows = Vec::new();
    let mut per = Map::new();
    let mut goals = Vec::new();
    for q in &qs {
        let mut items = 0u64;
        let mut calls = 0u64;
        let mut returned = 0usize;
        let mut ans = Answer::default();
        let mut ms = 0.0;
        let mut ops = std::collections::BTreeMap::<String, u64>::new();
        for _ in 0..reps {
            reset(&table, &db, &tap);
            let t0 = Instant::now();
            let (a, body) = db.search(q, &who).await;
            ms += stats::ms(t0.elapsed());
            assert_eq!(a.status, 200, "{} (moto): {body}", q.label);
            let u = table.usage();
            items += u.items_read;
            calls += u.calls;
            returned += a.matches + a.included;
            ans = a;
            for (k, v) in tap.take() {
                *ops.entry(k).or_default() += v;
            }
        }
        let r = reps as f64;
        let per_returned = (returned > 0).then(|| items as f64 / returned as f64);
        rows.push(vec![
            q.label.clone(),
            format!("{}+{}", ans.matches, ans.included),
            num(Some(items as f64 / r), 1),
            num(per_returned, 2),
            num(Some(calls as f64 / r), 1),
            ops_text(&ops, r),
            num(Some(ms / r), 1),
        ]);
        per.insert(
            q.label.clone(),
            json!({
                "query": q.query_string(),
                "single_parameter": q.single,
                "matches": ans.matches,
                "included": ans.included,
                "items_read": items as f64 / r,
                "items_read_per_resource_returned": per_returned,
                "dynamodb_calls": calls as f64 / r,
                "calls_by_operation": ops.iter().map(|(k, v)| (k.clone(), json!(*v as f64 / r))).collect::<Map<_, _>>(),
                "ms_on_moto": ms / r,
            }),
        );
        if q.single {
            goals.push(Goal::new(
                format!(
                    "FHIR search items read per resource returned, {} (moto)",
                    q.label
                ),
                per_returned,
                MAX_ITEMS_PER_RETURNED,
                "items",
            ));
        }
    }
    report::table(
        &[
            "search (_count=20)",
            "match+incl",
            "items read",
            "per returned",
            "calls",
            "calls by operation",
            "ms (moto)",
        ],
        &rows,
    );
    let total = tap.total();
    let scans = total.get("Scan").copied().unwrap_or(0);
    println!(
        "averages of {reps} search(es) each; items read: items DynamoDB returned to Query and \
         BatchGetItem (each Query reads one item past its limit to tell whether more remain); \
         calls over the whole section, load included (on the wire): {}",
        ops_text(&total, 1.0)
    );
    goals.push(Goal::new(
        "FHIR search DynamoDB Scan calls (moto)",
        Some(scans as f64),
        0.0,
        "calls",
    ));
    (
        json!({
            "backend": "moto_server (DynamoDB emulation)",
            "tenant": loaded_json(&l),
            "load_calls_by_operation": load_calls,
            "patient": patient,
            "repetitions": reps,
            "searches": per,
            "calls_by_operation_total": total,
            "scan_calls": scans,
        }),
        goals,
    )
}

fn reset(table: &DynamoTable, db: &Db, tap: &Tap) {
    table.reset_usage();
    db.counting.take();
    tap.take();
}

/// `Query 2, BatchGetItem 1` (per request).
fn ops_text(ops: &std::collections::BTreeMap<String, u64>, per: f64) -> String {
    ops.iter()
        .map(|(k, v)| {
            let avg = *v as f64 / per;
            if avg.fract() == 0.0 {
                format!("{k} {avg:.0}")
            } else {
                format!("{k} {avg:.1}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use fhir_core::search::query::url_pairs;

    #[test]
    fn queries_are_encoded_and_parse() {
        let qs = queries("355-c0", "Ritc");
        assert_eq!(qs.len(), 10);
        assert_eq!(qs.iter().filter(|q| q.single).count(), 3);
        let code = &qs[2];
        assert_eq!(
            code.query_string(),
            "code=http%3A%2F%2Floinc%2Eorg%7C72166%2D2&_count=20"
        );
        assert_eq!(code.path(), "/fhir/Observation");
        for q in &qs {
            // The query string decodes to the pairs, and every search parses (strict).
            assert_eq!(url_pairs(&q.query_string()), q.pairs, "{}", q.label);
            let t = ResourceType::parse(q.rtype).unwrap();
            let s = Search::parse(Some(t), &q.pairs, false);
            assert!(s.is_ok(), "{}: {:?}", q.label, s.err());
            assert_eq!(s.unwrap().count, COUNT);
        }
    }

    #[test]
    fn the_name_prefix_is_the_patients() {
        let b = json!({"entry": [{"resource": {"resourceType": "Patient",
            "name": [{"family": "Ritchie586"}]}}]});
        assert_eq!(family_prefix(&[(PATIENT_FILE.into(), b)]), "Ritc");
        assert_eq!(family_prefix(&[]), "a");
    }
}
