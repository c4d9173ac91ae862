//! The benchmark (issue 5): run by `scripts/bench.sh`, which builds the functions and the
//! hello-world baseline with `cargo lambda build --release` first.
//!
//! Sections, each measured side by side in one run so that ratios hold on a noisy machine:
//! - `cold`: cold start of every function against the hello-world `lambda_http` binary under a
//!   Runtime API emulator, with the template's environment and DynamoDB/S3/Cognito on moto;
//! - `size`: zip size of every function and of the baseline;
//! - `memory`: peak RSS (`VmHWM`) of every function after 1,000 warm invocations;
//! - `warm`: in-process latency of every document route on a 10,000-document tenant
//!   (embedded backend);
//! - `dynamodb`: capacity units, items read and calls by type per document operation on moto;
//! - `tenants`: tenant A's list and search while tenant B holds 0 or 100,000 documents;
//! - `fhir`: FHIR read, create, update and a 473-entry transaction Bundle in process (embedded
//!   backend), and items written per resource by kind of key and capacity on moto;
//! - `search`: FHIR search latency on a 10,000-resource tenant loaded from the example Bundles
//!   (embedded), items read per resource returned and calls on moto, and tenant independence
//!   with another tenant at 0 and 100,000 resources.
//!
//! Prints a table and writes the same figures as JSON (`bench/results/latest.json` or
//! `--out`).

mod cost;
mod deploy;
mod emulator;
mod fhir_bench;
mod fhir_load;
mod fhir_search_bench;
mod fixtures;
mod lambda;
mod machine;
mod report;
mod stats;
mod tenants;
mod warm;

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{Map, Value, json};

use crate::report::{Goal, num};

const USAGE: &str = "\
usage: bench [options]   (normally through scripts/bench.sh, which builds what it needs;
                          scripts/bench.sh --no-build skips the build)

  --quick               fewer iterations everywhere (a smoke run, under a minute once built)
  --only LIST           sections to run, comma-separated:
                        cold,size,memory,warm,dynamodb,tenants,fhir,search
  --out PATH            where to write the JSON (default bench/results/latest.json)
  --lambda-dir PATH     where `cargo lambda build` put <name>/bootstrap[.zip] (default target/lambda)
  --cold-starts N       cold starts per function (default 20, --quick 5)
  --invocations N       warm invocations before reading peak RSS (default 1000)
  --warm-docs N         documents of the warm-latency tenant (default 10000)
  --reads N             timed iterations per read route (default 5000, --quick 1000)
  --writes N            timed iterations per write route (default 500, --quick 100)
  --tenant-a N          documents of tenant A (default 1000)
  --tenant-b N          documents of tenant B when large (default 100000, --quick 20000)
  --fhir-bundles N      timed transactions of the FHIR example Bundle (default 10, --quick 3)
  --fhir-bundle PATH    the FHIR transaction Bundle (default
                        tests/fixtures/fhir/uscore_bundle_patient_355.json; the search
                        section loads every example Bundle of its folder)
  --search-resources N  resources of the FHIR search tenant (default 10000)
  --search-reads N      timed searches per query (default 1000, --quick 300)
  --search-tenant-b N   resources of the other tenant when large (default 100000)
  --search-moto N       resources of the FHIR search tenant on moto (default 10000)
";

pub const SECTIONS: [&str; 8] = [
    "cold", "size", "memory", "warm", "dynamodb", "tenants", "fhir", "search",
];

/// Settings of one run.
#[derive(Debug, Clone)]
pub struct Opts {
    pub quick: bool,
    pub only: Vec<String>,
    pub out: PathBuf,
    pub root: PathBuf,
    pub lambda_dir: PathBuf,
    pub cold_starts: usize,
    pub invocations: usize,
    pub warm_docs: usize,
    pub reads: usize,
    pub writes: usize,
    pub tenant_a: usize,
    pub tenant_b: usize,
    pub fhir_bundles: usize,
    pub fhir_bundle: PathBuf,
    pub search_resources: usize,
    pub search_reads: usize,
    pub search_tenant_b: usize,
    pub search_moto: usize,
}

impl Opts {
    fn parse(args: &[String]) -> Result<Opts, String> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let quick = args.iter().any(|a| a == "--quick");
        let mut o = Opts {
            quick,
            only: SECTIONS.iter().map(|s| s.to_string()).collect(),
            out: root.join("bench/results/latest.json"),
            lambda_dir: root.join("target/lambda"),
            fhir_bundle: fhir_bench::default_bundle(&root),
            root,
            cold_starts: if quick { 5 } else { 20 },
            invocations: 1000,
            warm_docs: 10_000,
            reads: if quick { 1000 } else { 5000 },
            writes: if quick { 100 } else { 500 },
            tenant_a: 1000,
            tenant_b: if quick { 20_000 } else { 100_000 },
            fhir_bundles: if quick { 3 } else { 10 },
            search_resources: 10_000,
            search_reads: if quick { 300 } else { 1000 },
            search_tenant_b: 100_000,
            search_moto: 10_000,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = |name: &str| {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            let mut count = |name: &str| -> Result<usize, String> {
                let v = value(name)?;
                v.parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("{name}: not a positive number: {v}"))
            };
            match a.as_str() {
                "--quick" => {}
                "--only" => {
                    let list = value("--only")?;
                    o.only = list.split(',').map(|s| s.trim().to_owned()).collect();
                    if let Some(bad) = o.only.iter().find(|s| !SECTIONS.contains(&s.as_str())) {
                        return Err(format!("--only: unknown section {bad}"));
                    }
                }
                "--out" => o.out = PathBuf::from(value("--out")?),
                "--lambda-dir" => o.lambda_dir = PathBuf::from(value("--lambda-dir")?),
                "--cold-starts" => o.cold_starts = count(a)?,
                "--invocations" => o.invocations = count(a)?,
                "--warm-docs" => o.warm_docs = count(a)?,
                "--reads" => o.reads = count(a)?,
                "--writes" => o.writes = count(a)?,
                "--tenant-a" => o.tenant_a = count(a)?,
                "--tenant-b" => o.tenant_b = count(a)?,
                "--fhir-bundles" => o.fhir_bundles = count(a)?,
                "--fhir-bundle" => o.fhir_bundle = PathBuf::from(value("--fhir-bundle")?),
                "--search-resources" => o.search_resources = count(a)?,
                "--search-reads" => o.search_reads = count(a)?,
                "--search-tenant-b" => o.search_tenant_b = count(a)?,
                "--search-moto" => o.search_moto = count(a)?,
                "-h" | "--help" => return Err(String::new()),
                other => return Err(format!("unknown option {other}")),
            }
        }
        Ok(o)
    }

    fn runs(&self, section: &str) -> bool {
        self.only.iter().any(|s| s == section)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match Opts::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("bench: {e}\n");
            }
            eprint!("{USAGE}");
            std::process::exit(if e.is_empty() { 0 } else { 2 });
        }
    };
    let started = Instant::now();
    let machine = machine::info();
    println!(
        "bench: {} CPUs ({}), kernel {}, load {}{}",
        machine["nproc"],
        machine["cpu_model"].as_str().unwrap_or("?"),
        machine["kernel"].as_str().unwrap_or("?"),
        machine["loadavg_at_start"].as_str().unwrap_or("?"),
        if opts.quick { ", --quick" } else { "" }
    );
    let mut results = Map::new();
    let mut goals: Vec<Goal> = Vec::new();
    let functions = deploy::functions(&opts.root);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a Tokio runtime");

    if opts.runs("cold") || opts.runs("memory") {
        rt.block_on(async {
            let deployment = deploy::Deployment::create().await;
            let targets = deployment.targets(&opts.lambda_dir, &functions, &opts.fhir_bundle);
            if let Some(missing) = targets.iter().find(|t| !t.bootstrap.exists()) {
                eprintln!(
                    "bench: {} is missing: run scripts/bench.sh (it builds the functions and the baseline)",
                    missing.bootstrap.display()
                );
                std::process::exit(1);
            }
            if opts.runs("cold") {
                let (v, g) = cold_section(&opts, &targets).await;
                results.insert("cold_start".into(), v);
                goals.extend(g);
            }
            if opts.runs("memory") {
                let (v, g) = memory_section(&opts, &targets).await;
                results.insert("memory".into(), v);
                goals.extend(g);
            }
        });
    }
    if opts.runs("size") {
        let (v, g) = size_section(&opts, &functions);
        results.insert("size".into(), v);
        goals.extend(g);
    }
    if opts.runs("warm") {
        let (v, g) = warm::section(&opts);
        results.insert("warm_latency".into(), v);
        goals.extend(g);
    }
    if opts.runs("dynamodb") {
        let (v, g) = rt.block_on(cost::section(&opts));
        results.insert("dynamodb".into(), v);
        goals.extend(g);
    }
    if opts.runs("tenants") {
        let (v, g) = tenants::section(&opts);
        results.insert("tenant_independence".into(), v);
        goals.extend(g);
    }
    if opts.runs("fhir") {
        let (v, g) = fhir_bench::section(&opts, &rt);
        results.insert("fhir".into(), v);
        goals.extend(g);
    }
    if opts.runs("search") {
        let (v, g) = fhir_search_bench::section(&opts, &rt);
        results.insert("fhir_search".into(), v);
        goals.extend(g);
    }

    report::section("targets");
    report::table(
        &["target", "measured", "bound", "result"],
        &goals.iter().map(Goal::row).collect::<Vec<_>>(),
    );
    let out = json!({
        "benchmark": "tenant-platform issue 5",
        "machine": machine,
        "settings": {
            "quick": opts.quick,
            "sections": opts.only,
            "cold_starts": opts.cold_starts,
            "invocations": opts.invocations,
            "warm_docs": opts.warm_docs,
            "reads": opts.reads,
            "writes": opts.writes,
            "tenant_a": opts.tenant_a,
            "tenant_b": opts.tenant_b,
            "fhir_bundles": opts.fhir_bundles,
            "fhir_bundle": opts.fhir_bundle,
            "search_resources": opts.search_resources,
            "search_reads": opts.search_reads,
            "search_tenant_b": opts.search_tenant_b,
            "search_moto": opts.search_moto,
        },
        "functions": functions,
        "results": results,
        "targets": goals.iter().map(Goal::json).collect::<Vec<_>>(),
        "runtime_seconds": started.elapsed().as_secs_f64(),
    });
    if let Some(dir) = opts.out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let text = serde_json::to_string_pretty(&out).expect("json");
    // The function logs are kept only when a run fails.
    let _ = std::fs::remove_dir_all(log_dir());
    match std::fs::write(&opts.out, text + "\n") {
        Ok(()) => println!(
            "\nwrote {} ({:.0} s)",
            opts.out.display(),
            started.elapsed().as_secs_f64()
        ),
        Err(e) => {
            eprintln!("bench: cannot write {}: {e}", opts.out.display());
            std::process::exit(1);
        }
    }
}

/// Where the function processes' output goes (removed after a successful run).
fn log_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("bench-logs-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&d);
    d
}

fn fail(e: String) -> ! {
    eprintln!("bench: {e}\n(function output: {})", log_dir().display());
    std::process::exit(1);
}

/// Cold starts: every target started `cold_starts` times, alternating (the order rotates every
/// round), medians and ratios to the hello-world baseline.
async fn cold_section(opts: &Opts, targets: &[lambda::Target]) -> (Value, Vec<Goal>) {
    report::section(&format!(
        "cold start ({} starts each, alternating; ms from process start)",
        opts.cold_starts
    ));
    let logs = log_dir();
    let mut samples: Vec<Vec<lambda::ColdSample>> = vec![Vec::new(); targets.len()];
    // One unmeasured start each: page cache, moto's first requests.
    for t in targets {
        let log = logs.join(format!("{}.log", t.name));
        lambda::cold_start(t, &log)
            .await
            .unwrap_or_else(|e| fail(e));
    }
    for round in 0..opts.cold_starts {
        for k in 0..targets.len() {
            let i = (round + k) % targets.len();
            let t = &targets[i];
            let log = logs.join(format!("{}.log", t.name));
            let s = lambda::cold_start(t, &log)
                .await
                .unwrap_or_else(|e| fail(e));
            samples[i].push(s);
        }
    }
    let med = |v: &[lambda::ColdSample], f: fn(&lambda::ColdSample) -> f64| {
        stats::median(&v.iter().map(f).collect::<Vec<_>>())
    };
    let base_init = med(&samples[0], |s| s.init_ms);
    let base_first = med(&samples[0], |s| s.first_response_ms);
    let base_overhead = med(&samples[0], |s| s.first_response_ms - s.second_invoke_ms);
    let mut rows = Vec::new();
    let mut per = Map::new();
    let mut goals = Vec::new();
    for (t, s) in targets.iter().zip(&samples) {
        let init = med(s, |s| s.init_ms);
        let first = med(s, |s| s.first_response_ms);
        let invoke = med(s, |s| s.first_invoke_ms);
        let second = med(s, |s| s.second_invoke_ms);
        let overhead = med(s, |s| s.first_response_ms - s.second_invoke_ms);
        let ratio = |a: Option<f64>, b: Option<f64>| Some(a? / b?);
        let init_ratio = ratio(init, base_init);
        let first_ratio = ratio(first, base_first);
        let overhead_ratio = ratio(overhead, base_overhead);
        rows.push(vec![
            t.name.clone(),
            t.route.clone(),
            s.first().map(|x| x.status.to_string()).unwrap_or_default(),
            num(init, 2),
            num(init_ratio, 2),
            num(first, 2),
            num(first_ratio, 2),
            num(invoke, 2),
            num(second, 2),
            num(overhead, 2),
            num(overhead_ratio, 2),
        ]);
        per.insert(
            t.name.clone(),
            json!({
                "route": t.route,
                "status": s.first().map(|x| x.status),
                "init_ms_median": init,
                "init_ratio_to_hello": init_ratio,
                "first_response_ms_median": first,
                "first_response_ratio_to_hello": first_ratio,
                "first_invoke_ms_median": invoke,
                "second_invoke_ms_median": second,
                "first_response_minus_second_invoke_ms_median": overhead,
                "first_response_minus_second_invoke_ratio_to_hello": overhead_ratio,
                "init_ms": s.iter().map(|x| x.init_ms).collect::<Vec<_>>(),
                "first_response_ms": s.iter().map(|x| x.first_response_ms).collect::<Vec<_>>(),
            }),
        );
        if t.name != "hello" {
            // The same bound on the function's own cold cost: moto answers a warm call in
            // milliseconds, several times hello's whole cold start, so the raw ratio of a route
            // that calls the backend measures moto as much as the function.
            for (what, ratio) in [
                ("cold first response", first_ratio),
                ("cold first response minus backend time", overhead_ratio),
            ] {
                goals.push(Goal::ratio(
                    format!("{what} {} / hello", t.name),
                    ratio,
                    2.0,
                ));
            }
        }
    }
    report::table(
        &[
            "function",
            "route",
            "status",
            "init",
            "x hello",
            "first resp",
            "x hello",
            "1st invoke",
            "2nd invoke",
            "resp-2nd",
            "x hello",
        ],
        &rows,
    );
    println!(
        "ms, medians. init: process start to first /next poll; first resp: process start to \
         first response posted; 1st/2nd invoke: event handed over to response, for the cold \
         event and the same event again (warm; both include moto round trips); resp-2nd: first \
         resp minus 2nd invoke, the cold cost without the backend's own time"
    );
    (
        json!({
            "baseline": "hello",
            "starts_per_function": opts.cold_starts,
            "backend": "moto_server on loopback (AWS_ENDPOINT_URL)",
            "functions": per,
        }),
        goals,
    )
}

/// Peak RSS after `invocations` warm invocations, one process per target.
async fn memory_section(opts: &Opts, targets: &[lambda::Target]) -> (Value, Vec<Goal>) {
    report::section(&format!(
        "memory (peak RSS after {} warm invocations)",
        opts.invocations
    ));
    let logs = log_dir();
    let mut rows = Vec::new();
    let mut per = Map::new();
    let mut goals = Vec::new();
    let mut heavy_ms = Vec::new();
    // Every target as is; then, for a target with a heavy request, the same run with that
    // request sent once first (fhir after a 473-entry transaction: minutes on moto, so not
    // with --quick).
    let heavy = if opts.quick { &[][..] } else { targets };
    let runs = targets
        .iter()
        .map(|t| (t, None))
        .chain(heavy.iter().filter_map(|t| {
            t.heavy
                .as_ref()
                .map(|(what, event)| (t, Some((what, event.as_slice()))))
        }));
    for (t, heavy) in runs {
        let name = match heavy {
            Some(_) => format!("{}+heavy", t.name),
            None => t.name.clone(),
        };
        let log = logs.join(format!("{name}-warm.log"));
        let r = lambda::warm_run(t, opts.invocations, heavy.map(|h| h.1), &log)
            .await
            .unwrap_or_else(|e| fail(e));
        let s = stats::summarize(&r.latency_us);
        let mib = r.hwm_kib as f64 / 1024.0;
        if let Some((what, _)) = heavy {
            heavy_ms.push((
                t.name.clone(),
                format!("{what} (it took {} ms on moto)", num(r.prelude_ms, 0)),
            ));
        }
        rows.push(vec![
            name.clone(),
            num(Some(mib), 1),
            num(Some(r.rss_kib as f64 / 1024.0), 1),
            num(s.map(|s| s.p50), 0),
            num(s.map(|s| s.p99), 0),
        ]);
        per.insert(
            name.clone(),
            json!({
                "peak_rss_kib": r.hwm_kib,
                "peak_rss_mib": mib,
                "rss_kib_after": r.rss_kib,
                "invocations": r.invocations,
                "first": heavy.map(|h| h.0),
                "first_invoke_ms": r.prelude_ms,
                "warm_invoke_us_p50": s.map(|s| s.p50),
                "warm_invoke_us_p99": s.map(|s| s.p99),
            }),
        );
        if t.name != "hello" {
            let what = match heavy {
                Some((h, _)) => format!("peak RSS {} after {h}", t.name),
                None => format!("peak RSS {}", t.name),
            };
            goals.push(Goal::new(what, Some(mib), 32.0, "MiB"));
        }
    }
    report::table(
        &[
            "function",
            "VmHWM MiB",
            "VmRSS MiB",
            "invoke p50 us",
            "invoke p99 us",
        ],
        &rows,
    );
    println!("invoke: event handed over to response posted, through the emulator (includes moto)");
    for (t, ms) in &heavy_ms {
        println!("{t}+heavy: the same run with {ms}");
    }
    (json!({ "functions": per }), goals)
}

/// Zip and binary sizes from `cargo lambda build --release --output-format zip`.
fn size_section(opts: &Opts, functions: &[String]) -> (Value, Vec<Goal>) {
    report::section("size (cargo lambda build --release --output-format zip)");
    let mut rows = Vec::new();
    let mut per = Map::new();
    let mut goals = Vec::new();
    let size = |p: &Path| std::fs::metadata(p).ok().map(|m| m.len());
    for name in std::iter::once(&"hello".to_owned()).chain(functions) {
        let zip = size(&opts.lambda_dir.join(name).join("bootstrap.zip"));
        let bin = size(&opts.lambda_dir.join(name).join("bootstrap"));
        let mb = |b: Option<u64>| b.map(|b| b as f64 / (1024.0 * 1024.0));
        rows.push(vec![name.clone(), num(mb(zip), 2), num(mb(bin), 2)]);
        per.insert(
            name.clone(),
            json!({"zip_bytes": zip, "bootstrap_bytes": bin, "zip_mib": mb(zip)}),
        );
        if name != "hello" {
            goals.push(Goal::new(format!("zip size {name}"), mb(zip), 4.0, "MiB"));
        }
    }
    report::table(&["function", "zip MiB", "bootstrap MiB"], &rows);
    (json!({ "functions": per }), goals)
}
