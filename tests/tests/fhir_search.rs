//! FHIR search end to end through API Gateway events (the fhir and fhir-search functions, as
//! the local server and API Gateway route them), on both backends: the semantics of every
//! parameter type from the R4 search page's own examples, realistic US Core searches over the
//! example Bundles, read-your-writes, results parameters, and tenant isolation.

use std::collections::BTreeSet;

use integration_tests::fhir::{Fhir, FhirResp, next_link, tenant_user};
use integration_tests::{Backend, User};
use serde_json::{Value, json};

async fn backends() -> Vec<Backend> {
    vec![Backend::embedded(), Backend::moto().await]
}

fn fixture(name: &str) -> Value {
    let p = format!("{}/fixtures/fhir/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn ok(r: &FhirResp, status: u16, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.text);
}

/// The ids of every match of `path` (all pages), asserting each appears once.
async fn ids(f: &Fhir, u: &User, path: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut next = Some(path.to_owned());
    while let Some(p) = next.take() {
        let r = f.get(u, &p).await;
        ok(&r, 200, &p);
        assert_eq!(r.body["type"], "searchset", "{p}");
        for e in r.body["entry"].as_array().into_iter().flatten() {
            if e["search"]["mode"] == "match" {
                let id = e["resource"]["id"].as_str().unwrap().to_owned();
                assert!(out.insert(id.clone()), "{path}: {id} twice");
            }
        }
        next = next_link(&r.body);
    }
    out
}

fn set(xs: &[&str]) -> BTreeSet<String> {
    xs.iter().map(|s| s.to_string()).collect()
}

/// PUTs every resource (ids as given) in one transaction.
async fn put_all(f: &Fhir, u: &User, base: &str, resources: &[Value]) {
    let entries: Vec<Value> = resources
        .iter()
        .map(|r| {
            let url = format!("{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap());
            json!({"resource": r, "request": {"method": "PUT", "url": url}})
        })
        .collect();
    let b = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
    ok(&f.json(u, "POST", base, &[], &b).await, 200, "load");
}

fn obs(id: &str, extra: Value) -> Value {
    let mut o = json!({"resourceType": "Observation", "id": id, "status": "final",
                       "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]}});
    for (k, v) in extra.as_object().unwrap() {
        o[k] = v.clone();
    }
    o
}

/// The R4 search page's examples, per parameter type, on both backends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameter_types_follow_the_search_page() {
    for backend in backends().await {
        let f = Fhir::new(backend);
        let u = tenant_user("ann", "t1");
        let resources = vec![
            // Dates.
            obs("d-day", json!({"effectiveDateTime": "2013-01-14"})),
            obs("d-10h", json!({"effectiveDateTime": "2013-01-14T10:00:00Z"})),
            obs("d-next", json!({"effectiveDateTime": "2013-01-15T00:00:00Z"})),
            obs("d-year", json!({"effectiveDateTime": "2013"})),
            obs("d-period", json!({"effectivePeriod": {"start": "2013-01-21"}})),
            obs("d-zone", json!({"effectiveDateTime": "2013-01-14T23:30:00-05:00"})),
            // Quantities.
            obs("q-5.4mg", json!({"valueQuantity": {"value": 5.4, "system": "http://unitsofmeasure.org", "code": "mg"}})),
            obs("q-5.46mg", json!({"valueQuantity": {"value": 5.46, "system": "http://unitsofmeasure.org", "code": "mg"}})),
            obs("q-5.4kg", json!({"valueQuantity": {"value": 5.4, "system": "http://unitsofmeasure.org", "code": "kg"}})),
            obs("q-100", json!({"valueQuantity": {"value": 100, "unit": "mg"}})),
            obs("q-99.6", json!({"valueQuantity": {"value": 99.6}})),
            obs("q-104", json!({"valueQuantity": {"value": 104}})),
            obs("q-100.5", json!({"valueQuantity": {"value": 100.5}})),
            // Composite.
            json!({"resourceType": "Observation", "id": "bp", "status": "final",
                   "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
                   "component": [
                     {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                      "valueQuantity": {"value": 120, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
                     {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
                      "valueQuantity": {"value": 55, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}]}),
            // Strings, tokens, references.
            json!({"resourceType": "Patient", "id": "eve", "name": [{"given": ["Eve"], "family": "Ng"}],
                   "gender": "female", "active": true,
                   "identifier": [{"system": "http://acme.org/patient", "value": "2345",
                                   "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}}]}),
            json!({"resourceType": "Patient", "id": "evelyn", "name": [{"given": ["Évelyn"], "family": "Ng"}],
                   "gender": "female", "active": false}),
            json!({"resourceType": "Patient", "id": "severine", "name": [{"given": ["Severine"], "family": "DUPONT"}],
                   "gender": "male"}),
            json!({"resourceType": "Patient", "id": "nobody"}),
            json!({"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/eve"},
                   "code": {"coding": [{"system": "http://acme.org/conditions/codes", "code": "ha125", "display": "Headache"}],
                            "text": "headache, severe"}}),
            json!({"resourceType": "Condition", "id": "c2", "subject": {"reference": "Patient/evelyn", "identifier": {"system": "urn:mrn", "value": "77"}},
                   "code": {"coding": [{"code": "ha125"}]}}),
            json!({"resourceType": "ValueSet", "id": "vs1", "status": "active", "url": "http://acme.org/fhir/ValueSet/123"}),
            json!({"resourceType": "ValueSet", "id": "vs2", "status": "active", "url": "http://acme.org/fhir/ValueSet/124"}),
            json!({"resourceType": "ValueSet", "id": "vs3", "status": "active", "url": "http://other.org/fhir/ValueSet/123"}),
        ];
        put_all(&f, &u, "/fhir", &resources).await;
        let cases: &[(&str, &[&str])] = &[
            // Dates: eq is "the resource's range is inside the search range".
            ("Observation?date=eq2013-01-14", &["d-day", "d-10h"]),
            ("Observation?date=2013-01-14", &["d-day", "d-10h"]),
            ("Observation?date=ne2013-01-14&_count=50", &["d-next", "d-year", "d-period", "d-zone"]),
            ("Observation?date=lt2013-01-14T10:00:00Z", &["d-day", "d-year"]),
            ("Observation?date=gt2013-01-14T10:00:00Z", &["d-day", "d-next", "d-year", "d-period", "d-zone"]),
            ("Observation?date=ge2013-03-14", &["d-year", "d-period"]),
            ("Observation?date=le2013-01-14", &["d-day", "d-10h", "d-year"]),
            ("Observation?date=sa2013-01-14", &["d-next", "d-period", "d-zone"]),
            ("Observation?date=eb2013-01-15", &["d-day", "d-10h"]),
            // 23:30 at -05:00 is 04:30 UTC on the 15th.
            ("Observation?date=2013-01-15", &["d-next", "d-zone"]),
            ("Observation?date=2013", &["d-day", "d-10h", "d-next", "d-year", "d-zone"]),
            ("Observation?date=ge2013-01-14&date=le2013-01-14", &["d-day", "d-10h", "d-year"]),
            // Quantities and numbers: the precision of the value written.
            ("Observation?value-quantity=5.4|http://unitsofmeasure.org|mg", &["q-5.4mg"]),
            ("Observation?value-quantity=5.4||mg", &["q-5.4mg"]),
            ("Observation?value-quantity=5.4", &["q-5.4mg", "q-5.4kg"]),
            ("Observation?value-quantity=5.5", &["q-5.46mg"]),
            ("Observation?value-quantity=le5.4|http://unitsofmeasure.org|mg", &["q-5.4mg"]),
            ("Observation?value-quantity=ap5.4|http://unitsofmeasure.org|mg", &["q-5.4mg", "q-5.46mg"]),
            ("Observation?value-quantity=100", &["q-100", "q-99.6"]),
            ("Observation?value-quantity=100.0", &["q-100"]),
            ("Observation?value-quantity=1e2", &["q-100", "q-99.6", "q-104", "q-100.5"]),
            ("Observation?value-quantity=gt100", &["q-104", "q-100.5"]),
            ("Observation?value-quantity=ge100&value-quantity=lt101", &["q-100", "q-100.5"]),
            ("Observation?value-quantity=100||mg", &["q-100"]),
            // Composite.
            ("Observation?component-code-value-quantity=http://loinc.org|8480-6$gt100", &["bp"]),
            ("Observation?component-code-value-quantity=http://loinc.org|8480-6$lt100", &[]),
            ("Observation?component-code-value-quantity=8462-4$lt60", &["bp"]),
            // Strings: case- and accent-insensitive prefixes; :contains; :exact.
            ("Patient?given=eve", &["eve", "evelyn"]),
            ("Patient?given=EVE", &["eve", "evelyn"]),
            ("Patient?given:contains=eve", &["eve", "evelyn", "severine"]),
            ("Patient?given:exact=Eve", &["eve"]),
            ("Patient?given:exact=eve", &[]),
            ("Patient?name=dupont", &["severine"]),
            ("Patient?family=ng&given=ev", &["eve", "evelyn"]),
            // Tokens.
            ("Patient?identifier=http://acme.org/patient|2345", &["eve"]),
            ("Patient?identifier=2345", &["eve"]),
            ("Patient?identifier=http://other|2345", &[]),
            ("Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|2345", &["eve"]),
            ("Patient?gender=male", &["severine"]),
            ("Patient?gender=male,female", &["eve", "evelyn", "severine"]),
            ("Patient?gender:not=male", &["eve", "evelyn", "nobody"]),
            ("Patient?gender:missing=true", &["nobody"]),
            ("Patient?active=true", &["eve"]),
            ("Condition?code=http://acme.org/conditions/codes|ha125", &["c1"]),
            ("Condition?code=ha125", &["c1", "c2"]),
            ("Condition?code=|ha125", &["c2"]),
            ("Condition?code=http://acme.org/conditions/codes|", &["c1"]),
            ("Condition?code:text=headache", &["c1"]),
            // References.
            ("Condition?subject=Patient/eve", &["c1"]),
            ("Condition?subject:Patient=eve", &["c1"]),
            ("Condition?patient=eve", &["c1"]),
            ("Condition?subject=https://api.example.com/fhir/Patient/eve", &["c1"]),
            ("Condition?subject:identifier=urn:mrn|77", &["c2"]),
            ("Condition?subject:missing=false", &["c1", "c2"]),
            ("Condition?subject:Patient.gender=female&subject:Patient.active=false", &["c2"]),
            ("Patient?_has:Condition:patient:code=ha125", &["eve", "evelyn"]),
            ("Patient?_has:Condition:patient:code:text=headache", &["eve"]),
            // URIs.
            ("ValueSet?url=http://acme.org/fhir/ValueSet/123", &["vs1"]),
            ("ValueSet?url:below=http://acme.org/fhir/", &["vs1", "vs2"]),
            ("ValueSet?url:above=http://acme.org/fhir/ValueSet/123/_history/5", &["vs1"]),
            // Common parameters.
            ("Patient?_id=eve,severine", &["eve", "severine"]),
            ("Patient?_lastUpdated=gt2000-01-01&gender=female", &["eve", "evelyn"]),
            ("Patient?_lastUpdated=lt2000-01-01", &[]),
        ];
        for (q, want) in cases {
            let got = ids(&f, &u, &format!("/fhir/{q}")).await;
            assert_eq!(got, set(want), "{q}");
        }
        // Another tenant finds none of it.
        let other = tenant_user("bob", "t2");
        for (q, _) in cases {
            assert!(ids(&f, &other, &format!("/fhir/{q}")).await.is_empty(), "t2: {q}");
        }
    }
}
