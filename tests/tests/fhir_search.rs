//! FHIR search end to end on both backends (engine level for now).

use fhir_core::search::engine::{Engine, Options};
use fhir_core::search::extract::SearchExtractor;
use fhir_core::search::query::{Search, url_pairs};
use fhir_core::{ResourceType, Store, StoreOptions};
use integration_tests::Backend;
use integration_tests::fhir::{Fhir, scope_for, tenant_user};
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let p = format!("{}/fixtures/fhir/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

async fn ids(f: &Fhir, tenant: &str, t: &str, q: &str) -> (Vec<String>, String) {
    let scope = scope_for(tenant).await;
    let store = Store::new(&*f.table, &scope, &SearchExtractor, StoreOptions::default());
    let opts = Options::new("https://api.example.com/fhir");
    let s = Search::parse(Some(ResourceType::parse(t).unwrap()), &url_pairs(q), false)
        .unwrap_or_else(|e| panic!("{q}: {e}"));
    let mut e = Engine::new(&store, &opts);
    let out = e.run(&s, None).await.unwrap_or_else(|e| panic!("{q}: {e}"));
    let mut v: Vec<String> = out.matches.iter().map(|v| v.id.to_string()).collect();
    v.sort();
    (
        v,
        format!(
            "incl {} total {:?} next {:?} {:?}",
            out.included.len(),
            out.total,
            out.next,
            out.explain
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke() {
    let f = Fhir::new(Backend::embedded());
    let u = tenant_user("u", "t1");
    let r = f
        .json(
            &u,
            "POST",
            "/fhir",
            &[],
            &fixture("uscore_bundle_patient_85.json"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    for (t, q) in [
        ("Patient", "name=bos"),
        ("Patient", "name=LUCIEN"),
        ("Patient", "name:exact=Bosco882"),
        ("Patient", "name:contains=sco8"),
        ("Patient", "gender=male"),
        ("Patient", "gender:not=male"),
        ("Patient", "gender:missing=false"),
        ("Patient", "birthdate=ge1900"),
        ("Observation", "category=vital-signs&_count=1000"),
        ("Observation", "code=http://loinc.org|72166-2&_count=1000"),
        ("Observation", "code=72166-2&_count=10"),
        ("Observation", "code=72166-2&_sort=-date&_count=3"),
        (
            "Observation",
            "code=72166-2&_include=Observation:patient&_count=3",
        ),
        ("Observation", "date=ge2015&_count=1000"),
        ("Observation", "value-quantity=gt100&_count=1000"),
        ("Condition", "clinical-status=active&_count=1000"),
        ("Encounter", "_count=1000"),
        ("Observation", "subject:Patient.gender=male&_count=5"),
        ("Patient", "_has:Observation:patient:code=72166-2"),
        ("Patient", "_revinclude=Observation:patient"),
    ] {
        let (ids, explain) = ids(&f, "t1", t, q).await;
        println!("{t}?{q}: {} {explain}", ids.len());
        let (other, _) = self::ids(&f, "t2", t, q).await;
        assert!(other.is_empty());
    }
}
