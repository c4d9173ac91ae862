//! The differential test of FHIR search: for random resources and random queries, the index
//! path (planner, key ranges, commit-token checks, first-entry dedupe, paging) returns exactly
//! what an in-memory evaluation of the same query over every resource returns.

use std::collections::BTreeSet;

use fhir_core::search::engine::{Cursor, Engine, Options};
use fhir_core::search::extract::{SearchExtractor, param_values};
use fhir_core::search::matcher;
use fhir_core::search::query::{Clause, Search, url_pairs};
use fhir_core::search::registry;
use fhir_core::search::value::SearchValue;
use fhir_core::{ResourceId, ResourceType, Store, StoreOptions};
use integration_tests::Backend;
use integration_tests::fhir::{Fhir, scope_for, tenant_user};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

const FAMILIES: &[&str] = &[
    "Müller",
    "muller",
    "Miller",
    "Smith",
    "Smithson",
    "O'Brien",
    "Chávez",
    "Chavez Ruiz",
];
const GIVENS: &[&str] = &["Ann", "Anna", "Bob", "Zoë"];
const CODES: &[&str] = &["8480-6", "8462-4", "29463-7", "72166-2"];
const SYSTEMS: &[&str] = &["http://loinc.org", "http://snomed.info/sct"];
const UNITS: &[&str] = &["mm[Hg]", "kg", "mg"];

fn pick<'a>(r: &mut StdRng, xs: &[&'a str]) -> &'a str {
    xs[r.gen_range(0..xs.len())]
}

fn date(r: &mut StdRng) -> String {
    let y = r.gen_range(1995..2001);
    match r.gen_range(0..5) {
        0 => format!("{y}"),
        1 => format!("{y}-{:02}", r.gen_range(1..13)),
        2 => format!("{y}-{:02}-{:02}", r.gen_range(1..13), r.gen_range(1..29)),
        3 => format!(
            "{y}-{:02}-{:02}T{:02}:{:02}:00Z",
            r.gen_range(1..13),
            r.gen_range(1..29),
            r.gen_range(0..24),
            r.gen_range(0..60)
        ),
        _ => format!(
            "{y}-{:02}-{:02}T{:02}:30:00+05:00",
            r.gen_range(1..13),
            r.gen_range(1..29),
            r.gen_range(0..24)
        ),
    }
}

fn number(r: &mut StdRng) -> String {
    let whole = r.gen_range(0..200);
    match r.gen_range(0..3) {
        0 => format!("{whole}"),
        1 => format!("{whole}.{}", r.gen_range(0..10)),
        _ => format!("{whole}.{:02}", r.gen_range(0..100)),
    }
}

/// A world: patients and observations pointing at them.
fn world(r: &mut StdRng) -> Vec<Value> {
    let mut out = Vec::new();
    let patients = r.gen_range(3..12);
    for i in 0..patients {
        let mut p = json!({"resourceType": "Patient", "id": format!("p{i}")});
        if r.gen_bool(0.9) {
            let mut names = vec![json!({"family": pick(r, FAMILIES), "given": [pick(r, GIVENS)]})];
            if r.gen_bool(0.3) {
                names.push(json!({"family": pick(r, FAMILIES)}));
            }
            p["name"] = json!(names);
        }
        if r.gen_bool(0.8) {
            p["gender"] = json!(pick(r, &["male", "female", "other"]));
        }
        if r.gen_bool(0.8) {
            p["birthDate"] = json!(date(r).chars().take(10).collect::<String>());
        }
        if r.gen_bool(0.5) {
            p["identifier"] = json!([{"system": pick(r, &["urn:a", "urn:b"]), "value": format!("{}", r.gen_range(0..5))}]);
        }
        if r.gen_bool(0.5) {
            p["active"] = json!(r.gen_bool(0.5));
        }
        out.push(p);
    }
    for i in 0..r.gen_range(5..30) {
        let mut o = json!({"resourceType": "Observation", "id": format!("o{i}"), "status": pick(r, &["final", "amended"])});
        o["code"] = json!({"coding": [{"system": pick(r, SYSTEMS), "code": pick(r, CODES)}]});
        if r.gen_bool(0.3) {
            o["code"]["coding"]
                .as_array_mut()
                .unwrap()
                .push(json!({"system": pick(r, SYSTEMS), "code": pick(r, CODES)}));
        }
        if r.gen_bool(0.9) {
            o["subject"] = json!({"reference": format!("Patient/p{}", r.gen_range(0..patients))});
        }
        match r.gen_range(0..3) {
            0 => o["effectiveDateTime"] = json!(date(r)),
            1 => {
                let mut per = json!({});
                if r.gen_bool(0.8) {
                    per["start"] = json!(date(r));
                }
                if r.gen_bool(0.6) {
                    per["end"] = json!(date(r));
                }
                o["effectivePeriod"] = per;
            }
            _ => {}
        }
        if r.gen_bool(0.8) {
            let unit = pick(r, UNITS);
            o["valueQuantity"] = json!({"value": number(r).parse::<f64>().unwrap(), "system": "http://unitsofmeasure.org", "code": unit, "unit": unit});
        }
        out.push(o);
    }
    out
}

fn prefix(r: &mut StdRng) -> &'static str {
    ["", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"][r.gen_range(0..10)]
}

/// A random query on Patient or Observation.
fn query(r: &mut StdRng) -> (&'static str, String) {
    let one_patient = |r: &mut StdRng| -> String {
        match r.gen_range(0..12) {
            0 => format!(
                "name={}",
                pick(r, FAMILIES)
                    .chars()
                    .take(r.gen_range(1..4))
                    .collect::<String>()
            ),
            1 => format!("family:exact={}", pick(r, FAMILIES)),
            2 => format!(
                "name:contains={}",
                pick(r, GIVENS).chars().skip(1).collect::<String>()
            ),
            3 => format!(
                "gender={}",
                pick(r, &["male", "female", "other", "male,female"])
            ),
            4 => format!("gender:not={}", pick(r, &["male", "female"])),
            5 => format!("gender:missing={}", r.gen_bool(0.5)),
            6 => format!(
                "birthdate={}{}",
                prefix(r),
                date(r)
                    .chars()
                    .take([4, 7, 10][r.gen_range(0..3)])
                    .collect::<String>()
            ),
            7 => format!(
                "identifier={}|{}",
                pick(r, &["urn:a", "urn:b", ""]),
                r.gen_range(0..5)
            ),
            8 => format!("active={}", r.gen_bool(0.5)),
            9 => format!("_has:Observation:patient:code={}", pick(r, CODES)),
            10 => format!("_id=p{},p{}", r.gen_range(0..12), r.gen_range(0..12)),
            _ => format!("given={}", pick(r, &["an", "zoe", "bo"])),
        }
    };
    let one_obs = |r: &mut StdRng| -> String {
        match r.gen_range(0..12) {
            0 => format!("code={}", pick(r, CODES)),
            1 => format!("code={}|{}", pick(r, SYSTEMS), pick(r, CODES)),
            2 => format!("code={},{}", pick(r, CODES), pick(r, CODES)),
            3 => format!("date={}{}", prefix(r), date(r)),
            4 => format!("value-quantity={}{}", prefix(r), number(r)),
            5 => format!(
                "value-quantity={}{}|http://unitsofmeasure.org|{}",
                prefix(r),
                number(r),
                pick(r, UNITS)
            ),
            6 => format!("subject=Patient/p{}", r.gen_range(0..12)),
            7 => format!("patient=p{}", r.gen_range(0..12)),
            8 => format!("subject:Patient.gender={}", pick(r, &["male", "female"])),
            9 => format!(
                "code-value-quantity={}${}{}",
                pick(r, CODES),
                prefix(r),
                number(r)
            ),
            10 => format!("status={}", pick(r, &["final", "amended"])),
            _ => format!("subject:missing={}", r.gen_bool(0.5)),
        }
    };
    let (t, n) = if r.gen_bool(0.5) {
        ("Patient", r.gen_range(1..3))
    } else {
        ("Observation", r.gen_range(1..3))
    };
    let mut parts: Vec<String> = (0..n)
        .map(|_| {
            if t == "Patient" {
                one_patient(r)
            } else {
                one_obs(r)
            }
        })
        .collect();
    if r.gen_bool(0.35) {
        let keys: &[&str] = if t == "Patient" {
            &[
                "birthdate",
                "-birthdate",
                "family",
                "-family",
                "gender",
                "-gender",
                "_id",
                "-_id",
                "_lastUpdated",
                "-_lastUpdated",
                "identifier",
            ]
        } else {
            &[
                "date",
                "-date",
                "value-quantity",
                "-value-quantity",
                "code",
                "-code",
                "subject",
                "-subject",
                "-_lastUpdated",
            ]
        };
        parts.push(format!("_sort={}", pick(r, keys)));
    }
    parts.push(format!("_count={}", r.gen_range(1..6)));
    // A literal '+' (time zones) must be percent-encoded in a query string.
    (t, parts.join("&").replace('+', "%2B"))
}

/// The in-memory evaluation of a clause over the world.
fn eval(world: &[Value], t: ResourceType, body: &Value, clause: &Clause) -> bool {
    let id = ResourceId::parse(body["id"].as_str().unwrap()).unwrap();
    match clause {
        Clause::Match { .. } => matcher::matches(clause, t, &id, body),
        Clause::Any(cs) => cs.iter().any(|c| eval(world, t, body, c)),
        Clause::Chain {
            via,
            targets,
            inner,
        } => {
            let Some(p) = registry::param(t, via) else {
                return false;
            };
            param_values(p, body).into_iter().any(|v| match v {
                SearchValue::Reference(r) => r.local.is_some_and(|(rt, rid)| {
                    targets.contains(&rt)
                        && world.iter().any(|w| {
                            w["resourceType"] == rt.as_str()
                                && w["id"] == rid.as_str()
                                && eval(world, rt, w, inner)
                        })
                }),
                _ => false,
            })
        }
        Clause::Has { rtype, via, inner } => world
            .iter()
            .filter(|w| w["resourceType"] == rtype.as_str())
            .any(|w| {
                eval(world, *rtype, w, inner)
                    && registry::param(*rtype, via).is_some_and(|p| {
                        param_values(p, w).into_iter().any(|v| {
                        matches!(v, SearchValue::Reference(r) if r.local == Some((t, id.clone())))
                    })
                    })
            }),
    }
}

async fn check(f: &Fhir, tenant: &str, world: &[Value], r: &mut StdRng, queries: usize) {
    let scope = scope_for(tenant).await;
    let store = Store::new(&*f.table, &scope, &SearchExtractor, StoreOptions::default());
    let opts = Options::new("https://api.example.com/fhir");
    for _ in 0..queries {
        let (t, q) = query(r);
        let rt = ResourceType::parse(t).unwrap();
        let s = Search::parse(Some(rt), &url_pairs(&q), false)
            .unwrap_or_else(|e| panic!("{t}?{q}: {e}"));
        let expected: BTreeSet<String> = world
            .iter()
            .filter(|w| w["resourceType"] == t)
            .filter(|w| s.clauses.iter().all(|c| eval(world, rt, w, c)))
            .map(|w| w["id"].as_str().unwrap().to_owned())
            .collect();
        // A sorted search runs sorted in memory and, with a tiny in-memory limit, read in the
        // sort parameter's index order: both must give the same sequence.
        let limits: &[usize] = if s.sort.is_empty() {
            &[2000]
        } else {
            &[2000, 1]
        };
        let mut runs: Vec<Vec<String>> = Vec::new();
        for max_sorted in limits {
            let mut opts = opts.clone();
            opts.max_sorted = *max_sorted;
            let mut got = Vec::new();
            let mut cursor: Option<Cursor> = None;
            for page in 0.. {
                assert!(page < 200, "{t}?{q}: paging does not end");
                let mut e = Engine::new(&store, &opts);
                let out = e
                    .run(&s, cursor.clone())
                    .await
                    .unwrap_or_else(|e| panic!("{t}?{q} (in memory up to {max_sorted}): {e}"));
                assert!(out.matches.len() <= s.count, "{t}?{q}: page over _count");
                got.extend(out.matches.iter().map(|v| v.id.to_string()));
                match out.next {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
            runs.push(got);
        }
        if runs.len() == 2 {
            assert_eq!(
                runs[0], runs[1],
                "{t}?{q}: sorted in memory vs in index order"
            );
        }
        let got = runs.swap_remove(0);
        let set: BTreeSet<String> = got.iter().cloned().collect();
        assert_eq!(
            set.len(),
            got.len(),
            "{t}?{q}: a resource returned twice: {got:?}"
        );
        assert_eq!(
            set,
            expected,
            "{t}?{q}\nworld: {}",
            serde_json::to_string(world).unwrap()
        );
    }
}

fn load(rt: &tokio::runtime::Runtime, f: &Fhir, tenant: &str, world: &[Value]) {
    let entries: Vec<Value> = world
        .iter()
        .map(|w| {
            json!({"resource": w, "request": {"method": "PUT", "url": format!("{}/{}", w["resourceType"].as_str().unwrap(), w["id"].as_str().unwrap())}})
        })
        .collect();
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
    let u = tenant_user("loader", tenant);
    let r = rt.block_on(f.json(&u, "POST", "/fhir", &[], &bundle));
    assert_eq!(r.status, 200, "{}", r.text);
}

proptest! {
    // 24 worlds x 50 queries in CI; PROPTEST_CASES=n runs more.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(24),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Random worlds and queries on the embedded backend, each world then updated (values
    /// change, so superseded index entries must stop matching) and searched again.
    #[test]
    fn index_path_equals_in_memory_evaluation(seed in any::<u64>()) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let f = Fhir::new(Backend::embedded());
        let mut r = StdRng::seed_from_u64(seed);
        let w = world(&mut r);
        load(&rt, &f, "t1", &w);
        rt.block_on(check(&f, "t1", &w, &mut r, 25));
        // Rewrite the world with new values (same ids) and check again; another tenant holds
        // a third world and must not show up.
        let mut w2 = world(&mut r);
        w2.retain(|x| w.iter().any(|y| y["id"] == x["id"] && y["resourceType"] == x["resourceType"]));
        load(&rt, &f, "t1", &w2);
        let w3 = world(&mut r);
        load(&rt, &f, "t2", &w3);
        let current: Vec<Value> = w
            .iter()
            .map(|x| w2.iter().find(|y| y["id"] == x["id"] && y["resourceType"] == x["resourceType"]).cloned().unwrap_or_else(|| x.clone()))
            .collect();
        rt.block_on(check(&f, "t1", &current, &mut r, 25));
    }
}
