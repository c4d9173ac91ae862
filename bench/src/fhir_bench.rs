//! FHIR (`functions/fhir`, `fhir::handle` called in process, as the tests do):
//!
//! - warm latency on the embedded backend: `GET /fhir/Patient/{id}`, `POST /fhir/Patient`,
//!   `PUT /fhir/Patient/{id}` and the example transaction Bundle of 473 entries
//!   (`uscore_bundle_patient_355.json`: 1 PUT Patient + 472 POST with `urn:uuid` fullUrls),
//!   each iteration with its own Patient id so every entry is a create;
//! - on moto: the items written per resource, by kind of item as the key layout of
//!   `shared/fhir/src/keys.rs` tells them apart (heads, versions, index entries, history
//!   entries, commit records), and capacity units, for a create, an update, a read, a small
//!   transaction (fewer than 100 resources: one TransactWriteItems) and the 473-entry one
//!   (through a commit record).
//!
//! Requests are prebuilt API Gateway events (parsing them is not timed), on a current-thread
//! Tokio runtime as in Lambda, without a log subscriber.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Map, Value, json};
use storage::{
    BatchOp, Condition, DynamoTable, Item, Key, Page, PageTokens, Query, StorageError, Table,
    Usage, WriteOp,
};
use tenant_context::TenantConfig;

use crate::Opts;
use crate::cost::Tap;
use crate::fixtures::{self, AUDIENCE, Counting, ISSUER, PAGING_SECRET};
use crate::report::{self, Goal, num};
use crate::stats;

/// The tenant of the benchmark's FHIR requests (the `custom:tenantId` claim).
pub const TENANT: &str = "bench-fhir";

/// The example Bundle the figures are about (in `tests/fixtures/fhir/`, copied from the
/// handout's `shared/fhir/examples/`).
pub const BUNDLE_FILE: &str = "uscore_bundle_patient_355.json";

/// `tests/fixtures/fhir/<BUNDLE_FILE>`, or the handout's copy beside the workspace.
pub fn default_bundle(root: &Path) -> PathBuf {
    let fixtures = root.join("tests/fixtures/fhir").join(BUNDLE_FILE);
    let handout = root.join("../shared/fhir/examples").join(BUNDLE_FILE);
    if fixtures.exists() || !handout.exists() {
        fixtures
    } else {
        handout
    }
}
/// A small example transaction (33 entries: one TransactWriteItems), next to it.
const SMALL_BUNDLE_FILE: &str = "dtr_bundle_patient_pat015.json";

/// Untimed iterations before the timed ones of a route (reads, creates, updates).
const WARMUP: usize = 50;
/// Untimed transactions before the timed ones.
const WARMUP_BUNDLES: usize = 1;

/// Items written per resource besides its index and history entries (target).
const MAX_ITEMS_BESIDES_INDEX: f64 = 4.0;
/// Warm `GET /fhir/Patient/{id}` p50, microseconds (target).
const MAX_READ_P50_US: f64 = 50.0;
/// The 473-entry transaction on the embedded backend, milliseconds (target).
const MAX_BUNDLE_MS: f64 = 1000.0;

/// The claims of `user`, a member of tenant `tenant` (READ, WRITE and DELETE there).
pub fn tenant_claims(user: &str, tenant: &str, iss: &str, aud: &str) -> Map<String, Value> {
    let mut c = fixtures::claims(user, &[], iss, aud);
    c.insert("custom:tenantId".into(), json!(tenant));
    c
}

/// The API Gateway event of a FHIR request (`application/fhir+json` when there is a body).
pub fn event(
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    claims: Option<&Map<String, Value>>,
) -> Value {
    let headers = match body {
        Some(_) => vec![("content-type".into(), "application/fhir+json".into())],
        None => Vec::new(),
    };
    platform_http::http_api_event(&platform_http::HttpApiRequest {
        method,
        path,
        query: "",
        headers,
        body,
        claims,
        domain: "api.example.com",
        request_id: "bench",
    })
}

/// The example Bundle, or why it cannot be read.
pub fn load_bundle(path: &Path) -> Result<Value, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let v: Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    if v["type"] != "transaction" || !v["entry"].is_array() {
        return Err(format!("{}: not a transaction Bundle", path.display()));
    }
    Ok(v)
}

fn entries(bundle: &Value) -> usize {
    bundle["entry"].as_array().map_or(0, Vec::len)
}

/// The Bundle with every `PUT Patient/<x>` entry renamed to `Patient/<id>` (resource id and
/// request URL), so that loading it again creates a new patient; references go through the
/// entries' `urn:uuid` fullUrls, which the server rewrites to the new id.
pub fn with_patient_id(bundle: &Value, id: &str) -> Value {
    let mut b = bundle.clone();
    for e in b["entry"].as_array_mut().into_iter().flatten() {
        if e["request"]["method"] == "PUT" && e["resource"]["resourceType"] == "Patient" {
            e["request"]["url"] = json!(format!("Patient/{id}"));
            e["resource"]["id"] = json!(id);
        }
    }
    b
}

/// The Patient of the Bundle without its id (a realistic US Core patient), or a small one.
fn patient(bundle: Option<&Value>) -> Value {
    let found = bundle
        .and_then(|b| b["entry"].as_array())
        .into_iter()
        .flatten()
        .find(|e| e["resource"]["resourceType"] == "Patient")
        .map(|e| e["resource"].clone());
    let mut p = found.unwrap_or_else(|| {
        json!({
            "resourceType": "Patient",
            "name": [{"family": "Bench", "given": ["Ann"]}],
            "gender": "female",
            "birthDate": "1970-01-01",
        })
    });
    if let Some(o) = p.as_object_mut() {
        o.remove("id");
        o.remove("meta");
    }
    p
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("json")
}

/// A response: status, `Location`, JSON body.
struct Resp {
    status: u16,
    location: Option<String>,
    body: Value,
}

fn read(resp: lambda_http::Response<lambda_http::Body>) -> Resp {
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let r = integration_tests::response(resp);
    Resp {
        status: r.status,
        location,
        body: r.body,
    }
}

impl Resp {
    /// The id of the resource a create named in `Location` (`.../<Type>/<id>/_history/<vid>`).
    fn created_id(&self) -> String {
        let loc = self.location.as_deref().unwrap_or_default();
        let path = loc.split("/_history").next().unwrap_or_default();
        path.rsplit('/').next().unwrap_or_default().to_owned()
    }

    fn diagnostics(&self) -> String {
        let text = self.body.to_string();
        text[..text.len().min(400)].to_owned()
    }
}

async fn call(deps: &fhir::Deps, event: Value) -> Resp {
    read(fhir::handle(fixtures::request(event), deps).await)
}

/// Creates a Patient; returns its id.
async fn create_patient(deps: &fhir::Deps, who: &Map<String, Value>, p: &Value) -> String {
    let r = call(
        deps,
        event("POST", "/fhir/Patient", Some(&bytes(p)), Some(who)),
    )
    .await;
    assert_eq!(r.status, 201, "POST /fhir/Patient: {}", r.diagnostics());
    r.created_id()
}

pub fn section(opts: &Opts, rt: &tokio::runtime::Runtime) -> (Value, Vec<Goal>) {
    let bundle = match load_bundle(&opts.fhir_bundle) {
        Ok(b) => Some(b),
        Err(e) => {
            println!("\nbench: the FHIR example Bundle is missing ({e}); its rows are skipped");
            None
        }
    };
    let small = opts
        .fhir_bundle
        .parent()
        .and_then(|d| load_bundle(&d.join(SMALL_BUNDLE_FILE)).ok());
    let (warm, mut goals) = report::block_on(warm(opts, bundle.as_ref()));
    let (cost, g) = rt.block_on(cost(opts, bundle.as_ref(), small.as_ref()));
    goals.extend(g);
    (
        json!({
            "bundle": opts.fhir_bundle.display().to_string(),
            "bundle_entries": bundle.as_ref().map(entries),
            "warm_latency": warm,
            "dynamodb": cost,
        }),
        goals,
    )
}

/// One timed route: latencies in microseconds after the warm-up, the last status.
struct Timed {
    route: String,
    status: u16,
    lat: Vec<f64>,
    /// Resources per request (for the per-resource column).
    resources: usize,
}

/// Times `requests` (events, built untimed one by one) in order; any status outside 2xx
/// stops the benchmark. With `trace`, prints the table calls per request and their time.
#[allow(clippy::too_many_arguments)]
async fn time_route(
    deps: &fhir::Deps,
    trace: Option<&ByKey>,
    route: &str,
    warmup: usize,
    n: usize,
    resources: usize,
    mut next: impl FnMut(usize) -> Value,
) -> Timed {
    let mut lat = Vec::with_capacity(n);
    let mut status = 0;
    for i in 0..warmup + n {
        let req = fixtures::request(next(i));
        let t0 = Instant::now();
        let resp = fhir::handle(req, deps).await;
        let dt = t0.elapsed();
        status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            panic!("{route}: status {status}: {}", read(resp).diagnostics());
        }
        drop(resp);
        if i >= warmup {
            lat.push(stats::us(dt));
        }
    }
    if let Some(t) = trace {
        println!(
            "  {route}: table calls per request (time): {}",
            timings_text(&t.take_timings(), (warmup + n) as f64)
        );
    }
    Timed {
        route: route.to_owned(),
        status,
        lat,
        resources,
    }
}

async fn warm(opts: &Opts, bundle: Option<&Value>) -> (Value, Vec<Goal>) {
    report::section("FHIR warm latency (in process, embedded backend; us)");
    let backend = integration_tests::Backend::embedded();
    // Diagnostics: BENCH_FHIR_TIMING=1 times the table calls of every route (a wrapper around
    // the table, so the figures then include its cost).
    let by_key = Arc::new(ByKey::new(backend.table.clone()));
    let trace = std::env::var_os("BENCH_FHIR_TIMING").map(|_| by_key.as_ref());
    let table: Arc<dyn Table> = match trace {
        Some(_) => by_key.clone(),
        None => backend.table.clone(),
    };
    let deps = fhir::Deps::new(
        TenantConfig::default(),
        table,
        backend.blobs.clone(),
        PageTokens::new(PAGING_SECRET.as_bytes()),
        fhir::Limits::default(),
    );
    let who = tenant_claims("alice", TENANT, ISSUER, AUDIENCE);
    let mut timed = Vec::new();
    let mut resources = 0usize;

    // Transactions first: they fill the tenant the reads and writes then run on.
    if let Some(b) = bundle {
        let n = entries(b);
        let run = uuid::Uuid::new_v4().simple().to_string();
        let t = time_route(
            &deps,
            trace,
            &format!("POST /fhir (transaction, {n} entries)"),
            WARMUP_BUNDLES,
            opts.fhir_bundles,
            n,
            |i| {
                let b = with_patient_id(b, &format!("bench-{}-{i}", &run[..8]));
                event("POST", "/fhir", Some(&bytes(&b)), Some(&who))
            },
        )
        .await;
        resources += n * (WARMUP_BUNDLES + opts.fhir_bundles);
        timed.push(t);
    }
    let p = patient(bundle);
    let probe = create_patient(&deps, &who, &p).await;
    let updated = create_patient(&deps, &who, &p).await;
    resources += 2;
    let tenant_resources = resources;
    let get = format!("/fhir/Patient/{probe}");
    timed.push(
        time_route(
            &deps,
            trace,
            "GET /fhir/Patient/{id}",
            WARMUP,
            opts.reads,
            1,
            |_| event("GET", &get, None, Some(&who)),
        )
        .await,
    );
    timed.push(
        time_route(
            &deps,
            trace,
            "GET /fhir/metadata",
            WARMUP,
            opts.reads,
            0,
            |_| event("GET", "/fhir/metadata", None, None),
        )
        .await,
    );
    let body = bytes(&p);
    timed.push(
        time_route(
            &deps,
            trace,
            "POST /fhir/Patient",
            WARMUP,
            opts.writes,
            1,
            |_| event("POST", "/fhir/Patient", Some(&body), Some(&who)),
        )
        .await,
    );
    let put = format!("/fhir/Patient/{updated}");
    timed.push(
        time_route(
            &deps,
            trace,
            "PUT /fhir/Patient/{id}",
            WARMUP,
            opts.writes,
            1,
            |i| {
                let mut r = p.clone();
                r["id"] = json!(updated);
                r["active"] = json!(i % 2 == 0);
                event("PUT", &put, Some(&bytes(&r)), Some(&who))
            },
        )
        .await,
    );

    let mut rows = Vec::new();
    let mut per = Map::new();
    let mut read_p50 = None;
    let mut bundle_p50_ms = None;
    for t in &timed {
        let s = stats::summarize(&t.lat);
        let per_resource = s
            .filter(|_| t.resources > 0)
            .map(|s| s.p50 / t.resources as f64);
        if t.route == "GET /fhir/Patient/{id}" {
            read_p50 = s.map(|s| s.p50);
        }
        if t.route.starts_with("POST /fhir (transaction") {
            bundle_p50_ms = s.map(|s| s.p50 / 1000.0);
        }
        rows.push(vec![
            t.route.clone(),
            t.status.to_string(),
            s.map(|s| s.n.to_string()).unwrap_or_default(),
            num(s.map(|s| s.p50), 1),
            num(s.map(|s| s.p99), 1),
            num(s.map(|s| s.mean), 1),
            num(per_resource, 1),
        ]);
        per.insert(
            t.route.clone(),
            json!({
                "status": t.status,
                "n": s.map(|s| s.n),
                "resources_per_request": t.resources,
                "p50_us": s.map(|s| s.p50),
                "p99_us": s.map(|s| s.p99),
                "mean_us": s.map(|s| s.mean),
                "min_us": s.map(|s| s.min),
                "max_us": s.map(|s| s.max),
                "p50_us_per_resource": per_resource,
            }),
        );
    }
    report::table(
        &["route", "status", "n", "p50", "p99", "mean", "p50/resource"],
        &rows,
    );
    println!(
        "reads and writes on a tenant of {tenant_resources} resources (the transactions' and \
         two Patients); every transaction has its own Patient id (all entries create); writes \
         commit redb transactions to disk (durable); p99 of {} transactions is close to their \
         maximum",
        opts.fhir_bundles
    );
    let mut goals = vec![Goal::new(
        "warm FHIR GET /fhir/Patient/{id} p50",
        read_p50,
        MAX_READ_P50_US,
        "us",
    )];
    if let Some(b) = bundle {
        goals.push(Goal::new(
            format!(
                "warm FHIR transaction of {} entries p50 (embedded)",
                entries(b)
            ),
            bundle_p50_ms,
            MAX_BUNDLE_MS,
            "ms",
        ));
    }
    (
        json!({
            "backend": "embedded (redb)",
            "tenant_resources": tenant_resources,
            "warmup_per_route": WARMUP,
            "warmup_transactions": WARMUP_BUNDLES,
            "routes": per,
        }),
        goals,
    )
}

/// The kinds of FHIR items, from their keys (`shared/fhir/src/keys.rs`; after `<siteId>#`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    /// `fhir#r#<Type>/<id>`, `head`.
    Head,
    /// `fhir#r#<Type>/<id>`, `v#<vid>`: past versions (and, in the layout before staged
    /// versions had keys of their own, staged ones).
    Version,
    /// `fhir#r#<Type>/<id>`, `s#<token>`: versions staged by a large transaction.
    Staged,
    /// `fhir#i#...`.
    Index,
    /// `fhir#h#...`.
    History,
    /// `fhir#c#<token>`.
    Commit,
    /// Anything else (no FHIR key).
    Other,
}

impl ItemKind {
    pub const ALL: [ItemKind; 7] = [
        ItemKind::Head,
        ItemKind::Version,
        ItemKind::Staged,
        ItemKind::Index,
        ItemKind::History,
        ItemKind::Commit,
        ItemKind::Other,
    ];

    pub fn of(key: &Key) -> ItemKind {
        let rest = key.pk.split_once('#').map_or("", |(_, r)| r);
        let kind = rest
            .strip_prefix("fhir#")
            .and_then(|r| r.split_once('#'))
            .map(|(k, _)| k);
        match kind {
            Some("r") if key.sk == "head" => ItemKind::Head,
            Some("r") if key.sk.starts_with("s#") => ItemKind::Staged,
            Some("r") => ItemKind::Version,
            Some("i") => ItemKind::Index,
            Some("h") => ItemKind::History,
            Some("c") => ItemKind::Commit,
            _ => ItemKind::Other,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ItemKind::Head => "head",
            ItemKind::Version => "version",
            ItemKind::Staged => "staged",
            ItemKind::Index => "index",
            ItemKind::History => "history",
            ItemKind::Commit => "commit",
            ItemKind::Other => "other",
        }
    }

    /// Index and history entries (what the target does not count).
    pub fn is_index(self) -> bool {
        matches!(self, ItemKind::Index | ItemKind::History)
    }

    fn slot(self) -> usize {
        self as usize
    }
}

/// Items written through [`ByKey`], by kind: puts and deletes (of `put`, `delete`,
/// `transact` and `batch_write`), and condition checks of transactions.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Written {
    pub puts: [u64; ItemKind::ALL.len()],
    pub deletes: [u64; ItemKind::ALL.len()],
    pub checks: u64,
}

impl Written {
    fn put(&mut self, key: &Key) {
        self.puts[ItemKind::of(key).slot()] += 1;
    }

    fn delete(&mut self, key: &Key) {
        self.deletes[ItemKind::of(key).slot()] += 1;
    }

    /// Puts and deletes of `kind`.
    pub fn of(&self, kind: ItemKind) -> u64 {
        self.puts[kind.slot()] + self.deletes[kind.slot()]
    }

    pub fn total(&self) -> u64 {
        ItemKind::ALL.iter().map(|k| self.of(*k)).sum()
    }

    /// Items written besides index and history entries.
    pub fn besides_index(&self) -> u64 {
        ItemKind::ALL
            .iter()
            .filter(|k| !k.is_index())
            .map(|k| self.of(*k))
            .sum()
    }

    /// Items put (deletes not counted) besides index and history entries.
    pub fn puts_besides_index(&self) -> u64 {
        ItemKind::ALL
            .iter()
            .filter(|k| !k.is_index())
            .map(|k| self.puts[k.slot()])
            .sum()
    }

    fn add(&mut self, o: &Written) {
        for i in 0..ItemKind::ALL.len() {
            self.puts[i] += o.puts[i];
            self.deletes[i] += o.deletes[i];
        }
        self.checks += o.checks;
    }
}

/// Calls of one [`Table`] method: how many, and the time spent in them.
pub type Timings = BTreeMap<&'static str, (u64, Duration)>;

/// A [`Table`] that counts the items written through it by kind of FHIR key, and the calls
/// and time by method (where a request's time goes).
pub struct ByKey {
    inner: Arc<dyn Table>,
    written: Mutex<Written>,
    timings: Mutex<Timings>,
}

impl ByKey {
    pub fn new(inner: Arc<dyn Table>) -> Self {
        ByKey {
            inner,
            written: Mutex::default(),
            timings: Mutex::default(),
        }
    }

    pub fn take(&self) -> Written {
        std::mem::take(&mut *self.written.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn take_timings(&self) -> Timings {
        std::mem::take(&mut *self.timings.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn add(&self, f: impl FnOnce(&mut Written)) {
        f(&mut self.written.lock().unwrap_or_else(|e| e.into_inner()));
    }

    fn timed(&self, method: &'static str, t0: Instant) {
        let dt = t0.elapsed();
        let mut t = self.timings.lock().unwrap_or_else(|e| e.into_inner());
        let slot = t.entry(method).or_default();
        slot.0 += 1;
        slot.1 += dt;
    }
}

/// `get 3 (1.2 ms), put 1 (0.4 ms)`.
fn timings_text(t: &Timings, per: f64) -> String {
    t.iter()
        .map(|(m, (n, d))| {
            format!(
                "{m} {} ({:.2} ms)",
                num(Some(*n as f64 / per), if per == 1.0 { 0 } else { 1 }),
                stats::ms(*d) / per
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn add_timings(into: &mut Timings, t: Timings) {
    for (m, (n, d)) in t {
        let slot = into.entry(m).or_default();
        slot.0 += n;
        slot.1 += d;
    }
}

#[async_trait]
impl Table for ByKey {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StorageError> {
        let t0 = Instant::now();
        let r = self.inner.get(key).await;
        self.timed("get", t0);
        r
    }

    async fn batch_get(&self, keys: &[Key]) -> Result<Vec<Item>, StorageError> {
        let t0 = Instant::now();
        let r = self.inner.batch_get(keys).await;
        self.timed("batch_get", t0);
        r
    }

    async fn query(&self, query: &Query) -> Result<Page, StorageError> {
        let t0 = Instant::now();
        let r = self.inner.query(query).await;
        self.timed("query", t0);
        r
    }

    async fn put(&self, item: Item, cond: Condition) -> Result<(), StorageError> {
        let key = item.key.clone();
        let t0 = Instant::now();
        let r = self.inner.put(item, cond).await;
        self.timed("put", t0);
        if r.is_ok() {
            self.add(|w| w.put(&key));
        }
        r
    }

    async fn delete(&self, key: &Key, cond: Condition) -> Result<(), StorageError> {
        let t0 = Instant::now();
        let r = self.inner.delete(key, cond).await;
        self.timed("delete", t0);
        if r.is_ok() {
            self.add(|w| w.delete(key));
        }
        r
    }

    async fn transact(&self, ops: Vec<WriteOp>) -> Result<(), StorageError> {
        let mut w = Written::default();
        for op in &ops {
            match op {
                WriteOp::Put { item, .. } => w.put(&item.key),
                WriteOp::Delete { key, .. } => w.delete(key),
                WriteOp::Check { .. } => w.checks += 1,
            }
        }
        let t0 = Instant::now();
        let r = self.inner.transact(ops).await;
        self.timed("transact", t0);
        if r.is_ok() {
            self.add(|c| c.add(&w));
        }
        r
    }

    async fn batch_write(&self, ops: Vec<BatchOp>) -> Result<(), StorageError> {
        let mut w = Written::default();
        for op in &ops {
            match op {
                BatchOp::Put(item) => w.put(&item.key),
                BatchOp::Delete(key) => w.delete(key),
            }
        }
        let t0 = Instant::now();
        let r = self.inner.batch_write(ops).await;
        self.timed("batch_write", t0);
        if r.is_ok() {
            self.add(|c| c.add(&w));
        }
        r
    }
}

/// Totals of several requests of one operation.
#[derive(Default)]
struct Agg {
    requests: u64,
    resources: u64,
    status: u16,
    usage: Usage,
    model_read_units: f64,
    model_write_units: f64,
    written: Written,
    ops: BTreeMap<String, u64>,
    ms: f64,
    timings: Timings,
}

impl Agg {
    fn per_resource(&self, x: f64) -> f64 {
        x / self.resources.max(1) as f64
    }

    fn per_request(&self, x: f64) -> f64 {
        x / self.requests.max(1) as f64
    }

    fn kinds_text(&self) -> String {
        ItemKind::ALL
            .iter()
            .filter_map(|k| {
                let (p, d) = (self.written.puts[k.slot()], self.written.deletes[k.slot()]);
                if p + d == 0 {
                    return None;
                }
                let f = |n: u64| {
                    let v = self.per_resource(n as f64);
                    if v.fract() == 0.0 {
                        format!("{v:.0}")
                    } else {
                        format!("{v:.3}")
                    }
                };
                Some(match (p, d) {
                    (_, 0) => format!("{} {}", k.name(), f(p)),
                    (0, _) => format!("{} del {}", k.name(), f(d)),
                    _ => format!("{} {}+del {}", k.name(), f(p), f(d)),
                })
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn ops_text(&self) -> String {
        self.ops
            .iter()
            .map(|(k, v)| {
                let avg = self.per_request(*v as f64);
                if avg.fract() == 0.0 {
                    format!("{k} {avg:.0}")
                } else {
                    format!("{k} {avg:.1}")
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn json(&self) -> Value {
        let by_kind: Map<String, Value> = ItemKind::ALL
            .iter()
            .map(|k| {
                (
                    k.name().to_owned(),
                    json!({
                        "puts_per_resource": self.per_resource(self.written.puts[k.slot()] as f64),
                        "deletes_per_resource": self.per_resource(self.written.deletes[k.slot()] as f64),
                    }),
                )
            })
            .collect();
        json!({
            "requests": self.requests,
            "resources_per_request": self.per_request(self.resources as f64),
            "status": self.status,
            "items_written_per_resource": self.per_resource(self.written.total() as f64),
            "items_written_per_resource_besides_index": self.per_resource(self.written.besides_index() as f64),
            "items_put_per_resource_besides_index": self.per_resource(self.written.puts_besides_index() as f64),
            "index_and_history_items_written_per_resource": self.per_resource(
                (self.written.of(ItemKind::Index) + self.written.of(ItemKind::History)) as f64),
            "condition_checks_per_resource": self.per_resource(self.written.checks as f64),
            "written_by_kind": by_kind,
            "write_units_moto_per_resource": self.per_resource(self.usage.write_units),
            "write_units_model_per_resource": self.per_resource(self.model_write_units),
            "read_units_moto_per_request": self.per_request(self.usage.read_units),
            "read_units_model_per_request": self.per_request(self.model_read_units),
            "items_read_per_request": self.per_request(self.usage.items_read as f64),
            "dynamodb_calls_per_request": self.per_request(self.usage.calls as f64),
            "calls_by_operation_per_request": self.ops.iter()
                .map(|(k, v)| (k.clone(), json!(self.per_request(*v as f64))))
                .collect::<Map<_, _>>(),
            "ms_per_request_on_moto": self.per_request(self.ms),
            "table_calls_per_request": self.timings.iter()
                .map(|(m, (n, d))| (m.to_string(), json!({
                    "calls": self.per_request(*n as f64),
                    "ms": self.per_request(stats::ms(*d)),
                })))
                .collect::<Map<_, _>>(),
        })
    }
}

struct Meter<'a> {
    deps: &'a fhir::Deps,
    table: &'a DynamoTable,
    counting: &'a Counting,
    by_key: &'a ByKey,
    tap: &'a Tap,
    who: Map<String, Value>,
}

impl Meter<'_> {
    /// Sends one request and adds what it cost to `agg` (`resources` resources written or
    /// read); returns the response.
    async fn call(
        &self,
        agg: &mut Agg,
        resources: usize,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Resp {
        let ev = event(method, path, body.map(bytes).as_deref(), Some(&self.who));
        let req = fixtures::request(ev);
        self.table.reset_usage();
        self.counting.take();
        self.by_key.take();
        self.by_key.take_timings();
        self.tap.take();
        let t0 = Instant::now();
        let r = read(fhir::handle(req, self.deps).await);
        let ms = stats::ms(t0.elapsed());
        assert!(
            (200..300).contains(&r.status),
            "{method} {path}: {} {}",
            r.status,
            r.diagnostics()
        );
        let usage = self.table.usage();
        let counts = self.counting.take();
        agg.requests += 1;
        agg.resources += resources as u64;
        agg.status = r.status;
        agg.usage.read_units += usage.read_units;
        agg.usage.write_units += usage.write_units;
        agg.usage.items_read += usage.items_read;
        agg.usage.calls += usage.calls;
        agg.model_read_units += counts.model_read_units;
        agg.model_write_units += counts.model_write_units;
        agg.written.add(&self.by_key.take());
        add_timings(&mut agg.timings, self.by_key.take_timings());
        for (k, v) in self.tap.take() {
            *agg.ops.entry(k).or_default() += v;
        }
        agg.ms += ms;
        r
    }
}

async fn cost(opts: &Opts, bundle: Option<&Value>, small: Option<&Value>) -> (Value, Vec<Goal>) {
    report::section(
        "FHIR DynamoDB cost (moto; items written per resource by key kind; capacity per resource)",
    );
    let (tap, table, counting, blobs) = crate::cost::tapped_moto().await;
    let by_key = Arc::new(ByKey::new(counting.clone()));
    let deps = fhir::Deps::new(
        TenantConfig::default(),
        by_key.clone(),
        blobs,
        PageTokens::new(PAGING_SECRET.as_bytes()),
        fhir::Limits::default(),
    );
    let m = Meter {
        deps: &deps,
        table: &table,
        counting: &counting,
        by_key: &by_key,
        tap: &tap,
        who: tenant_claims("alice", TENANT, ISSUER, AUDIENCE),
    };
    let reps = if opts.quick { 3 } else { 10 };
    let p = patient(bundle);
    let mut ops: Vec<(String, Agg)> = Vec::new();

    let mut agg = Agg::default();
    let mut ids = Vec::new();
    for _ in 0..reps {
        let r = m.call(&mut agg, 1, "POST", "/fhir/Patient", Some(&p)).await;
        ids.push(r.created_id());
    }
    ops.push(("create (POST /fhir/Patient)".into(), agg));

    let mut agg = Agg::default();
    for i in 0..reps {
        let mut r = p.clone();
        r["id"] = json!(ids[0]);
        r["active"] = json!(i % 2 == 0);
        m.call(
            &mut agg,
            1,
            "PUT",
            &format!("/fhir/Patient/{}", ids[0]),
            Some(&r),
        )
        .await;
    }
    ops.push(("update (PUT /fhir/Patient/{id})".into(), agg));

    let mut agg = Agg::default();
    for _ in 0..reps {
        m.call(
            &mut agg,
            1,
            "GET",
            &format!("/fhir/Patient/{}", ids[1]),
            None,
        )
        .await;
    }
    ops.push(("read (GET /fhir/Patient/{id})".into(), agg));

    if let Some(b) = small {
        let mut agg = Agg::default();
        m.call(&mut agg, entries(b), "POST", "/fhir", Some(b)).await;
        ops.push((
            format!("transaction, {} entries ({SMALL_BUNDLE_FILE})", entries(b)),
            agg,
        ));
    }
    if let Some(b) = bundle {
        // Once: the items are the same every time, and moto takes minutes (it copies the
        // whole table for every item of a TransactWriteItems).
        let mut agg = Agg::default();
        let run = uuid::Uuid::new_v4().simple().to_string();
        let b = with_patient_id(b, &format!("cost-{}", &run[..8]));
        m.call(&mut agg, entries(&b), "POST", "/fhir", Some(&b))
            .await;
        ops.push((
            format!("transaction, {} entries ({BUNDLE_FILE})", entries(&b)),
            agg,
        ));
    }

    let rows: Vec<Vec<String>> = ops
        .iter()
        .map(|(name, a)| {
            let index = a.written.of(ItemKind::Index) + a.written.of(ItemKind::History);
            vec![
                name.clone(),
                num(Some(a.per_request(a.resources as f64)), 0),
                num(Some(a.per_resource(a.written.total() as f64)), 2),
                num(Some(a.per_resource(a.written.besides_index() as f64)), 2),
                num(Some(a.per_resource(index as f64)), 2),
                num(Some(a.per_resource(a.usage.write_units)), 2),
                num(Some(a.per_resource(a.model_write_units)), 2),
                num(Some(a.per_request(a.usage.items_read as f64)), 1),
                num(Some(a.per_request(a.ms)), 1),
            ]
        })
        .collect();
    report::table(
        &[
            "operation",
            "resources",
            "written/res",
            "besides index",
            "index+hist",
            "WCU moto/res",
            "WCU model/res",
            "items read",
            "ms (moto)",
        ],
        &rows,
    );
    println!("items written per resource by kind (puts, +del = deletes) and calls per request:");
    for (name, a) in &ops {
        if a.written.total() == 0 {
            println!("  {name}: no writes");
        } else {
            println!(
                "  {name}: {} (besides index: {} puts{})",
                a.kinds_text(),
                num(
                    Some(a.per_resource(a.written.puts_besides_index() as f64)),
                    3
                ),
                match a.written.besides_index() - a.written.puts_besides_index() {
                    0 => String::new(),
                    d => format!(" + {} deletes", num(Some(a.per_resource(d as f64)), 3)),
                }
            );
        }
        println!("    calls: {}", a.ops_text());
        println!(
            "    table calls (time): {}",
            timings_text(&a.timings, a.requests.max(1) as f64)
        );
    }
    println!(
        "written: puts and deletes of put, delete, transact and batch_write, counted by key \
         (fhir#r# head/version v#/staged s#, fhir#i# index, fhir#h# history, fhir#c# commit record); \
         besides index: all but index and history entries. WCU moto: ConsumedCapacity as moto \
         returns it (none for TransactWriteItems); model: DynamoDB's billing rules (transactional \
         writes 2 WCU per KB). ms (moto): not DynamoDB's time; moto copies the whole table for \
         every item of a TransactWriteItems, so its transactions slow down as the table grows"
    );
    let goals = ops
        .iter()
        .filter(|(_, a)| a.written.total() > 0)
        .map(|(name, a)| {
            Goal::new(
                format!("FHIR items written per resource besides index, {name}"),
                Some(a.per_resource(a.written.besides_index() as f64)),
                MAX_ITEMS_BESIDES_INDEX,
                "items",
            )
        })
        .collect();
    (
        json!({
            "backend": "moto_server (DynamoDB emulation; capacity as moto computes it)",
            "operations": ops.iter().map(|(n, a)| (n.clone(), a.json())).collect::<Map<_, _>>(),
            "calls_by_operation_total": tap.total(),
        }),
        goals,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_of_fhir_keys() {
        let k = |pk: &str, sk: &str| ItemKind::of(&Key::new(pk, sk));
        assert_eq!(k("t1#fhir#r#Patient/a-1", "head"), ItemKind::Head);
        assert_eq!(
            k("t1#fhir#r#Patient/a-1", "v#0000000001"),
            ItemKind::Version
        );
        assert_eq!(k("t1#fhir#r#Patient/a-1", "s#0123abcd"), ItemKind::Staged);
        assert_eq!(
            k("t1#fhir#i#Patient#_id", "a\u{1f}b\u{1f}c"),
            ItemKind::Index
        );
        assert_eq!(k("t1#fhir#i#Patient#_lastUpdated#2", "x"), ItemKind::Index);
        assert_eq!(k("t1#fhir#h#Patient#3", "x"), ItemKind::History);
        assert_eq!(k("t1#fhir#h#0", "x"), ItemKind::History);
        assert_eq!(k("t1#fhir#c#abc", "commit"), ItemKind::Commit);
        assert_eq!(k("global#sites", "t1"), ItemKind::Other);
        assert_eq!(k("t1#doc#x", "fhir#r#y"), ItemKind::Other);
        let mut w = Written::default();
        w.put(&Key::new("t#fhir#r#Patient/a", "head"));
        w.put(&Key::new("t#fhir#i#Patient#_id", "a"));
        w.delete(&Key::new("t#fhir#i#Patient#_id", "b"));
        w.put(&Key::new("t#fhir#h#1", "a"));
        w.delete(&Key::new("t#fhir#c#x", "commit"));
        assert_eq!(
            (w.total(), w.besides_index(), w.puts_besides_index()),
            (5, 2, 1)
        );
        assert_eq!(w.of(ItemKind::Index), 2);
    }

    #[test]
    fn bundles_get_a_new_patient_id() {
        let b = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient", "id": "355"},
             "request": {"method": "PUT", "url": "Patient/355"}},
            {"fullUrl": "urn:uuid:2", "resource": {"resourceType": "Observation",
             "subject": {"reference": "urn:uuid:1"}}, "request": {"method": "POST", "url": "Observation"}},
        ]});
        let n = with_patient_id(&b, "p-7");
        assert_eq!(n["entry"][0]["request"]["url"], "Patient/p-7");
        assert_eq!(n["entry"][0]["resource"]["id"], "p-7");
        assert_eq!(n["entry"][1], b["entry"][1]);
        assert_eq!(entries(&n), 2);
        let p = patient(Some(&b));
        assert_eq!(p, json!({"resourceType": "Patient"}));
        assert_eq!(patient(None)["resourceType"], "Patient");
    }
}
