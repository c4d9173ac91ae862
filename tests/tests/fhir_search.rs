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
            let url = format!(
                "{}/{}",
                r["resourceType"].as_str().unwrap(),
                r["id"].as_str().unwrap()
            );
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
            obs(
                "d-10h",
                json!({"effectiveDateTime": "2013-01-14T10:00:00Z"}),
            ),
            obs(
                "d-next",
                json!({"effectiveDateTime": "2013-01-15T00:00:00Z"}),
            ),
            obs("d-year", json!({"effectiveDateTime": "2013"})),
            obs(
                "d-period",
                json!({"effectivePeriod": {"start": "2013-01-21"}}),
            ),
            obs(
                "d-zone",
                json!({"effectiveDateTime": "2013-01-14T23:30:00-05:00"}),
            ),
            // Quantities.
            obs(
                "q-5.4mg",
                json!({"valueQuantity": {"value": 5.4, "system": "http://unitsofmeasure.org", "code": "mg"}}),
            ),
            obs(
                "q-5.46mg",
                json!({"valueQuantity": {"value": 5.46, "system": "http://unitsofmeasure.org", "code": "mg"}}),
            ),
            obs(
                "q-5.4kg",
                json!({"valueQuantity": {"value": 5.4, "system": "http://unitsofmeasure.org", "code": "kg"}}),
            ),
            obs(
                "q-100",
                json!({"valueQuantity": {"value": 100, "unit": "mg"}}),
            ),
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
            (
                "Observation?date=ne2013-01-14&_count=50",
                &["d-next", "d-year", "d-period", "d-zone"],
            ),
            (
                "Observation?date=lt2013-01-14T10:00:00Z",
                &["d-day", "d-year"],
            ),
            (
                "Observation?date=gt2013-01-14T10:00:00Z",
                &["d-day", "d-next", "d-year", "d-period", "d-zone"],
            ),
            ("Observation?date=ge2013-03-14", &["d-year", "d-period"]),
            (
                "Observation?date=le2013-01-14",
                &["d-day", "d-10h", "d-year"],
            ),
            (
                "Observation?date=sa2013-01-14",
                &["d-next", "d-period", "d-zone"],
            ),
            ("Observation?date=eb2013-01-15", &["d-day", "d-10h"]),
            // 23:30 at -05:00 is 04:30 UTC on the 15th.
            ("Observation?date=2013-01-15", &["d-next", "d-zone"]),
            (
                "Observation?date=2013",
                &["d-day", "d-10h", "d-next", "d-year", "d-zone"],
            ),
            (
                "Observation?date=ge2013-01-14&date=le2013-01-14",
                &["d-day", "d-10h", "d-year"],
            ),
            // Quantities and numbers: the precision of the value written.
            (
                "Observation?value-quantity=5.4|http://unitsofmeasure.org|mg",
                &["q-5.4mg"],
            ),
            ("Observation?value-quantity=5.4||mg", &["q-5.4mg"]),
            ("Observation?value-quantity=5.4", &["q-5.4mg", "q-5.4kg"]),
            ("Observation?value-quantity=5.5", &["q-5.46mg"]),
            (
                "Observation?value-quantity=le5.4|http://unitsofmeasure.org|mg",
                &["q-5.4mg"],
            ),
            (
                "Observation?value-quantity=ap5.4|http://unitsofmeasure.org|mg",
                &["q-5.4mg", "q-5.46mg"],
            ),
            ("Observation?value-quantity=100", &["q-100", "q-99.6"]),
            ("Observation?value-quantity=100.0", &["q-100"]),
            (
                "Observation?value-quantity=1e2",
                &["q-100", "q-99.6", "q-104", "q-100.5"],
            ),
            ("Observation?value-quantity=gt100", &["q-104", "q-100.5"]),
            (
                "Observation?value-quantity=ge100&value-quantity=lt101",
                &["q-100", "q-100.5"],
            ),
            ("Observation?value-quantity=100||mg", &["q-100"]),
            // Composite.
            (
                "Observation?component-code-value-quantity=http://loinc.org|8480-6$gt100",
                &["bp"],
            ),
            (
                "Observation?component-code-value-quantity=http://loinc.org|8480-6$lt100",
                &[],
            ),
            (
                "Observation?component-code-value-quantity=8462-4$lt60",
                &["bp"],
            ),
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
            (
                "Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|2345",
                &["eve"],
            ),
            ("Patient?gender=male", &["severine"]),
            ("Patient?gender=male,female", &["eve", "evelyn", "severine"]),
            ("Patient?gender:not=male", &["eve", "evelyn", "nobody"]),
            ("Patient?gender:missing=true", &["nobody"]),
            ("Patient?active=true", &["eve"]),
            (
                "Condition?code=http://acme.org/conditions/codes|ha125",
                &["c1"],
            ),
            ("Condition?code=ha125", &["c1", "c2"]),
            ("Condition?code=|ha125", &["c2"]),
            ("Condition?code=http://acme.org/conditions/codes|", &["c1"]),
            ("Condition?code:text=headache", &["c1"]),
            // References.
            ("Condition?subject=Patient/eve", &["c1"]),
            ("Condition?subject:Patient=eve", &["c1"]),
            ("Condition?patient=eve", &["c1"]),
            (
                "Condition?subject=https://api.example.com/fhir/Patient/eve",
                &["c1"],
            ),
            ("Condition?subject:identifier=urn:mrn|77", &["c2"]),
            ("Condition?subject:missing=false", &["c1", "c2"]),
            (
                "Condition?subject:Patient.gender=female&subject:Patient.active=false",
                &["c2"],
            ),
            (
                "Patient?_has:Condition:patient:code=ha125",
                &["eve", "evelyn"],
            ),
            (
                "Patient?_has:Condition:patient:code:text=headache",
                &["eve"],
            ),
            // URIs.
            ("ValueSet?url=http://acme.org/fhir/ValueSet/123", &["vs1"]),
            ("ValueSet?url:below=http://acme.org/fhir/", &["vs1", "vs2"]),
            (
                "ValueSet?url:above=http://acme.org/fhir/ValueSet/123/_history/5",
                &["vs1"],
            ),
            // Common parameters.
            ("Patient?_id=eve,severine", &["eve", "severine"]),
            (
                "Patient?_lastUpdated=gt2000-01-01&gender=female",
                &["eve", "evelyn"],
            ),
            ("Patient?_lastUpdated=lt2000-01-01", &[]),
        ];
        for (q, want) in cases {
            let got = ids(&f, &u, &format!("/fhir/{q}")).await;
            assert_eq!(got, set(want), "{q}");
        }
        // Another tenant finds none of it.
        let other = tenant_user("bob", "t2");
        for (q, _) in cases {
            assert!(
                ids(&f, &other, &format!("/fhir/{q}")).await.is_empty(),
                "t2: {q}"
            );
        }
    }
}

/// Loads an example Bundle as one transaction; the resources as stored, with the `fullUrl` ->
/// `Type/id` map applied to their references.
async fn load_example(f: &Fhir, u: &User, name: &str) -> Vec<Value> {
    let b = fixture(name);
    let r = f.json(u, "POST", "/fhir", &[], &b).await;
    ok(&r, 200, name);
    // fullUrl -> Type/id, from the response's locations (ids may be the server's).
    let mut map = Vec::new();
    for (e, resp) in b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .zip(r.body["entry"].as_array().unwrap())
    {
        let loc = resp["response"]["location"].as_str().unwrap();
        let rel = loc
            .split("/fhir/")
            .nth(1)
            .unwrap()
            .split("/_history")
            .next()
            .unwrap();
        map.push((e["fullUrl"].as_str().unwrap().to_owned(), rel.to_owned()));
    }
    let mut text = serde_json::to_string(&b).unwrap();
    for (k, v) in &map {
        text = text.replace(&format!("\"{k}\""), &format!("\"{v}\""));
    }
    let b: Value = serde_json::from_str(&text).unwrap();
    b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&map)
        .map(|(e, (_, rel))| {
            let mut r = e["resource"].clone();
            r["id"] = json!(rel.split_once('/').unwrap().1);
            r
        })
        .collect()
}

fn of_type<'a>(rs: &'a [Value], t: &str) -> Vec<&'a Value> {
    rs.iter().filter(|r| r["resourceType"] == t).collect()
}

fn ids_of(rs: &[&Value]) -> BTreeSet<String> {
    rs.iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

fn has_code(cc: &Value, code: &str) -> bool {
    let one = |c: &Value| {
        c["coding"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|x| x["code"] == code)
    };
    match cc {
        Value::Array(a) => a.iter().any(one),
        c => one(c),
    }
}

/// Realistic US Core searches over the example Bundles, with results computed from the
/// Bundles themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn us_core_searches_over_the_example_bundles() {
    for backend in backends().await {
        let f = Fhir::new(backend);
        let u = tenant_user("ann", "t1");
        let mut all = load_example(&f, &u, "uscore_bundle_patient_85.json").await;
        all.extend(load_example(&f, &u, "uscore_bundle_patient_355.json").await);
        let patient = of_type(&all, "Patient")
            .into_iter()
            .find(|p| p["id"] == "355")
            .unwrap()
            .clone();
        let pref = "Patient/355";
        let family = patient["name"][0]["family"].as_str().unwrap();
        // Patient?name=
        assert_eq!(
            ids(&f, &u, &format!("/fhir/Patient?name={}", &family[..4])).await,
            set(&["355"])
        );
        // Observation?patient=&category=&date=ge
        let want: Vec<&Value> = of_type(&all, "Observation")
            .into_iter()
            .filter(|o| {
                o["subject"]["reference"] == pref && has_code(&o["category"], "vital-signs")
            })
            .filter(|o| {
                // ge2000: ends after 2000, or lies within it (R4 prefix semantics).
                if let Some(d) = o["effectiveDateTime"].as_str() {
                    return d >= "2000-01-01";
                }
                let p = &o["effectivePeriod"];
                let (start, end) = (p["start"].as_str().unwrap_or(""), p["end"].as_str());
                end.is_none_or(|e| e >= "2001-01-01" || start >= "2000-01-01")
            })
            .collect();
        assert!(want.len() > 5, "{}", want.len());
        let got = ids(
            &f,
            &u,
            "/fhir/Observation?patient=355&category=vital-signs&date=ge2000&_count=7",
        )
        .await;
        assert_eq!(got, ids_of(&want));
        // Condition?patient=&clinical-status=
        let want: Vec<&Value> = of_type(&all, "Condition")
            .into_iter()
            .filter(|c| {
                c["subject"]["reference"] == pref && has_code(&c["clinicalStatus"], "active")
            })
            .collect();
        let got = ids(&f, &u, "/fhir/Condition?patient=355&clinical-status=active").await;
        assert_eq!(got, ids_of(&want));
        // Encounter?patient=&_sort=-date: newest first, every encounter of the patient.
        let encounters: Vec<&Value> = of_type(&all, "Encounter")
            .into_iter()
            .filter(|e| e["subject"]["reference"] == pref)
            .collect();
        let mut starts = Vec::new();
        let mut next = Some("/fhir/Encounter?patient=355&_sort=-date&_count=50".to_owned());
        while let Some(p) = next.take() {
            let r = f.get(&u, &p).await;
            ok(&r, 200, &p);
            for e in r.body["entry"].as_array().into_iter().flatten() {
                starts.push(
                    e["resource"]["period"]["end"]
                        .as_str()
                        .or(e["resource"]["period"]["start"].as_str())
                        .unwrap()
                        .to_owned(),
                );
            }
            next = next_link(&r.body);
        }
        assert_eq!(starts.len(), encounters.len());
        assert!(
            starts.windows(2).all(|w| w[0] >= w[1]),
            "newest first: {starts:?}"
        );
        // _include: the page's patient, once.
        let r = f
            .get(
                &u,
                "/fhir/Observation?patient=355&_count=5&_include=Observation:patient",
            )
            .await;
        ok(&r, 200, "_include");
        let entries = r.body["entry"].as_array().unwrap();
        let included: Vec<&Value> = entries
            .iter()
            .filter(|e| e["search"]["mode"] == "include")
            .collect();
        assert_eq!(included.len(), 1);
        assert_eq!(included[0]["resource"]["id"], "355");
        assert_eq!(
            entries
                .iter()
                .filter(|e| e["search"]["mode"] == "match")
                .count(),
            5
        );
        // _revinclude=Provenance:target: the Provenance that targets the patient.
        let prov: Vec<&Value> = of_type(&all, "Provenance")
            .into_iter()
            .filter(|p| {
                p["target"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|t| t["reference"] == pref)
            })
            .collect();
        assert_eq!(prov.len(), 1);
        let r = f
            .get(&u, "/fhir/Patient?_id=355&_revinclude=Provenance:target")
            .await;
        ok(&r, 200, "_revinclude");
        let inc: BTreeSet<String> = r.body["entry"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["search"]["mode"] == "include")
            .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(inc, ids_of(&prov));
        // Compartment search: the patient's conditions.
        let cond: Vec<&Value> = of_type(&all, "Condition")
            .into_iter()
            .filter(|c| c["subject"]["reference"] == pref)
            .collect();
        assert_eq!(
            ids(&f, &u, "/fhir/Patient/355/Condition").await,
            ids_of(&cond)
        );
        // _total=accurate on a paged search; _summary=count.
        let r = f
            .get(&u, "/fhir/Observation?patient=355&_count=3&_total=accurate")
            .await;
        let n = of_type(&all, "Observation")
            .iter()
            .filter(|o| o["subject"]["reference"] == pref)
            .count();
        assert_eq!(r.body["total"], n);
        let r = f
            .get(&u, "/fhir/Observation?patient=355&_summary=count")
            .await;
        assert_eq!(r.body["total"], n);
        assert!(r.body["entry"].as_array().is_none_or(|e| e.is_empty()));
        // _elements: only what was asked, tagged SUBSETTED.
        let r = f
            .get(
                &u,
                "/fhir/Observation?patient=355&_count=1&_elements=status",
            )
            .await;
        let res = &r.body["entry"][0]["resource"];
        assert!(res["status"].is_string() && res["code"].is_null(), "{res}");
        assert_eq!(res["meta"]["tag"][0]["code"], "SUBSETTED");
        // A chain two deep: reports of encounters of the patient found by name.
        let enc_ids = ids_of(&encounters);
        let want: Vec<&Value> = of_type(&all, "DiagnosticReport")
            .into_iter()
            .filter(|d| {
                d["encounter"]["reference"]
                    .as_str()
                    .and_then(|r| r.strip_prefix("Encounter/"))
                    .is_some_and(|id| enc_ids.contains(id))
            })
            .collect();
        assert!(!want.is_empty());
        let q = format!(
            "/fhir/DiagnosticReport?encounter:Encounter.subject:Patient.name={}",
            &family[..4]
        );
        assert_eq!(ids(&f, &u, &q).await, ids_of(&want));
        // _revinclude=*: everything that refers to the patient.
        let r = f.get(&u, "/fhir/Patient?_id=355&_revinclude=*").await;
        ok(&r, 200, "_revinclude=*");
        let inc = r.body["entry"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["search"]["mode"] == "include")
            .count();
        let referring = all
            .iter()
            .filter(|x| x["resourceType"] != "Patient" && x.to_string().contains("\"Patient/355\""))
            .count();
        let by_subject = all
            .iter()
            .filter(|x| x["subject"]["reference"] == pref || x["patient"]["reference"] == pref)
            .count();
        assert!(
            by_subject <= inc && inc <= referring,
            "{by_subject} <= {inc} <= {referring}"
        );
        // A search entry of a batch: a searchset whose next link the search function follows.
        let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
            {"request": {"method": "GET", "url": "Observation?patient=355&_count=2"}},
            {"request": {"method": "GET", "url": "Observation?nonsense=1"}}]});
        let r = f.json(&u, "POST", "/fhir", &[], &batch).await;
        ok(&r, 200, "batch search");
        let e = &r.body["entry"][0];
        assert_eq!(e["response"]["status"], "200 OK");
        assert_eq!(e["resource"]["type"], "searchset");
        assert_eq!(e["resource"]["entry"].as_array().unwrap().len(), 2);
        let next = next_link(&e["resource"]).unwrap();
        ok(&f.get(&u, &next).await, 200, "the batch entry's next link");
        assert!(
            r.body["entry"][1]["response"]["status"]
                .as_str()
                .unwrap()
                .starts_with("400")
        );
        // Another tenant: nothing, including through includes, chains, _has and compartments.
        let other = tenant_user("bob", "t2");
        for q in [
            "Patient?name=a",
            "Observation?patient=355",
            "Observation?subject:Patient.name=a",
            "Patient?_has:Observation:patient:category=vital-signs",
            "Patient/355/Condition",
            "Patient/355/*",
            "Patient?_id=355&_revinclude=Provenance:target",
        ] {
            let r = f.get(&other, &format!("/fhir/{q}")).await;
            ok(&r, 200, q);
            assert!(
                r.body["entry"].as_array().is_none_or(|e| e.is_empty()),
                "t2 {q}: {}",
                r.text
            );
        }
        // A cursor replayed by another tenant or for another query: 400.
        let r = f.get(&u, "/fhir/Observation?patient=355&_count=2").await;
        let next = next_link(&r.body).unwrap();
        ok(&f.get(&other, &next).await, 400, "another tenant's cursor");
        let page = next.split("_page=").nth(1).unwrap();
        ok(
            &f.get(
                &u,
                &format!("/fhir/Observation?patient=85&_count=2&_page={page}"),
            )
            .await,
            400,
            "another query's cursor",
        );
        ok(&f.get(&u, &next).await, 200, "the cursor itself");
    }
}

/// Read-your-writes: a resource is searchable the moment its write returns, and an old value
/// stops matching the moment an update returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_see_every_write_at_once() {
    let rounds = std::env::var("READ_YOUR_WRITES_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    for backend in backends().await {
        let moto = backend.name == "moto";
        let f = Fhir::new(backend);
        let u = tenant_user("ann", "t1");
        let n = if moto { rounds / 10 } else { rounds };
        let mut misses = 0;
        for i in 0..n {
            let p = json!({"resourceType": "Patient", "identifier": [{"system": "urn:ryw", "value": format!("v{i}")}],
                           "name": [{"family": format!("Ryw{i}")}]});
            let r = f.json(&u, "POST", "/fhir/Patient", &[], &p).await;
            ok(&r, 201, "create");
            let got = ids(&f, &u, &format!("/fhir/Patient?identifier=urn:ryw%7Cv{i}")).await;
            if got.len() != 1 {
                misses += 1;
            }
        }
        assert_eq!(misses, 0, "{misses} of {n} creates were not found at once");
        // Update changes a matched value: the old value no longer matches, the new one does.
        let r = f
            .json(
                &u,
                "PUT",
                "/fhir/Patient/upd",
                &[],
                &json!({"resourceType": "Patient", "id": "upd", "gender": "male"}),
            )
            .await;
        ok(&r, 201, "create upd");
        for i in 0..20 {
            let (new, old) = if i % 2 == 0 {
                ("female", "male")
            } else {
                ("male", "female")
            };
            let p = json!({"resourceType": "Patient", "id": "upd", "gender": new});
            ok(
                &f.json(&u, "PUT", "/fhir/Patient/upd", &[], &p).await,
                200,
                "update",
            );
            assert!(
                ids(&f, &u, &format!("/fhir/Patient?_id=upd&gender={new}"))
                    .await
                    .contains("upd")
            );
            assert!(
                ids(&f, &u, &format!("/fhir/Patient?gender={old}&_id=upd"))
                    .await
                    .is_empty()
            );
        }
        // Deleted resources are gone from search at once.
        ok(
            &f.send(Some(&u), "DELETE", "/fhir/Patient/upd", &[], None)
                .await,
            204,
            "delete",
        );
        assert!(ids(&f, &u, "/fhir/Patient?_id=upd").await.is_empty());
    }
}
