//! The FHIR API end to end through API Gateway events, on both backends: every interaction,
//! conditional headers, history, Bundles, bad input, and tenant isolation in both URL forms.

use std::collections::HashMap;

use integration_tests::fhir::{Fhir, FhirResp, tenant_user};
use integration_tests::{Backend, User};
use serde_json::{Value, json};
use tenant_context::TenantConfig;

async fn backends() -> Vec<Backend> {
    vec![Backend::embedded(), Backend::moto().await]
}

fn patient(id: Option<&str>, family: &str) -> Value {
    let mut p = json!({
        "resourceType": "Patient",
        "name": [{ "family": family, "given": ["Ann"] }],
        "birthDate": "1970-01-01",
        "extension": [{ "url": "http://example.org/weight", "valueDecimal": 1.50 }]
    });
    if let Some(id) = id {
        p["id"] = json!(id);
    }
    p
}

fn ok(r: &FhirResp, status: u16, what: &str) {
    assert_eq!(r.status, status, "{what}: {} {}", r.status, r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_is_public_and_lists_what_works() {
    let f = Fhir::new(Backend::embedded());
    let r = f.send(None, "GET", "/fhir/metadata", &[], None).await;
    ok(&r, 200, "metadata");
    assert_eq!(r.header("content-type"), Some("application/fhir+json"));
    assert_eq!(r.body["fhirVersion"], "4.0.1");
    let rest = &r.body["rest"][0];
    assert_eq!(rest["resource"].as_array().unwrap().len(), 146);
    let pat = rest["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Patient")
        .unwrap();
    let codes: Vec<&str> = pat["interaction"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"patch") && codes.contains(&"history-type"));
    assert!(codes.contains(&"search-type"));
    assert!(pat["conditionalCreate"].as_bool().unwrap());
    // Everything else needs a token.
    ok(
        &f.send(None, "GET", "/fhir/Patient/x", &[], None).await,
        401,
        "no token",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_conditional_headers_and_history() {
    for backend in backends().await {
        let name = backend.name;
        let f = Fhir::new(backend);
        let u = tenant_user("ann", "t1");
        // create: server id, 201, Location, ETag, Last-Modified; a client id and versionId are
        // ignored; 1.50 stays 1.50.
        let mut body = patient(Some("client-id"), "Smith");
        body["meta"] = json!({ "versionId": "77", "profile": ["http://example.org/p"] });
        let r = f.json(&u, "POST", "/fhir/Patient", &[], &body).await;
        ok(&r, 201, name);
        let id = r.body["id"].as_str().unwrap().to_owned();
        assert_ne!(id, "client-id");
        assert_eq!(r.header("etag"), Some("W/\"1\""));
        assert_eq!(
            r.header("location").unwrap(),
            format!("https://api.example.com/fhir/Patient/{id}/_history/1")
        );
        assert!(r.header("last-modified").unwrap().ends_with(" GMT"));
        assert_eq!(r.body["meta"]["versionId"], "1");
        assert_eq!(r.body["meta"]["profile"][0], "http://example.org/p");
        assert!(r.text.contains("\"valueDecimal\":1.5"), "{}", r.text);
        let path = format!("/fhir/Patient/{id}");

        // read, 304s
        let r = f.get(&u, &path).await;
        ok(&r, 200, "read");
        assert_eq!(r.body["name"][0]["family"], "Smith");
        let lm = r.header("last-modified").unwrap().to_owned();
        let r = f
            .send(
                Some(&u),
                "GET",
                &path,
                &[("if-none-match", "W/\"1\"")],
                None,
            )
            .await;
        ok(&r, 304, "if-none-match");
        assert!(r.text.is_empty());
        let r = f
            .send(Some(&u), "GET", &path, &[("if-modified-since", &lm)], None)
            .await;
        ok(&r, 304, "if-modified-since");
        let r = f
            .send(
                Some(&u),
                "GET",
                &path,
                &[("if-modified-since", "Sat, 01 Jan 2000 00:00:00 GMT")],
                None,
            )
            .await;
        ok(&r, 200, "modified since 2000");

        // update with If-Match; a stale one is 412 and changes nothing
        let r = f
            .json(
                &u,
                "PUT",
                &path,
                &[("if-match", "W/\"1\"")],
                &patient(Some(&id), "Jones"),
            )
            .await;
        ok(&r, 200, "update");
        assert_eq!(r.header("etag"), Some("W/\"2\""));
        let r = f
            .json(
                &u,
                "PUT",
                &path,
                &[("if-match", "W/\"1\"")],
                &patient(Some(&id), "Stale"),
            )
            .await;
        ok(&r, 412, "stale if-match");
        assert_eq!(r.body["resourceType"], "OperationOutcome");
        assert!(r.diagnostics().contains("W/\"2\""), "{}", r.diagnostics());

        // patch
        let p = json!([{ "op": "replace", "path": "/name/0/family", "value": "Patched" }]);
        let bytes = serde_json::to_vec(&p).unwrap();
        let r = f
            .send(
                Some(&u),
                "PATCH",
                &path,
                &[
                    ("content-type", "application/json-patch+json"),
                    ("if-match", "W/\"2\""),
                ],
                Some(&bytes),
            )
            .await;
        ok(&r, 200, "patch");
        assert_eq!(r.body["name"][0]["family"], "Patched");
        assert_eq!(r.body["meta"]["versionId"], "3");
        let r = f
            .send(
                Some(&u),
                "PATCH",
                &path,
                &[
                    ("content-type", "application/json-patch+json"),
                    ("if-match", "W/\"2\""),
                ],
                Some(&bytes),
            )
            .await;
        ok(&r, 412, "stale patch");
        // Prefer
        let r = f
            .json(
                &u,
                "PUT",
                &path,
                &[("prefer", "return=minimal")],
                &patient(Some(&id), "Min"),
            )
            .await;
        ok(&r, 200, "minimal");
        assert!(r.text.is_empty());
        let r = f
            .json(
                &u,
                "PUT",
                &path,
                &[("prefer", "return=OperationOutcome")],
                &patient(Some(&id), "Oo"),
            )
            .await;
        ok(&r, 200, "outcome");
        assert_eq!(r.body["resourceType"], "OperationOutcome");

        // vread
        let r = f.get(&u, &format!("{path}/_history/2")).await;
        ok(&r, 200, "vread 2");
        assert_eq!(r.body["name"][0]["family"], "Jones");
        assert_eq!(r.body["meta"]["versionId"], "2");
        ok(
            &f.get(&u, &format!("{path}/_history/9")).await,
            404,
            "vread 9",
        );

        // delete: versioned, 410 after, a second delete changes nothing; If-Match
        let r = f
            .send(Some(&u), "DELETE", &path, &[("if-match", "W/\"1\"")], None)
            .await;
        ok(&r, 412, "stale delete");
        let r = f.send(Some(&u), "DELETE", &path, &[], None).await;
        ok(&r, 204, "delete");
        assert_eq!(r.header("etag"), Some("W/\"6\""));
        ok(&f.get(&u, &path).await, 410, "read deleted");
        let r = f.send(Some(&u), "DELETE", &path, &[], None).await;
        ok(&r, 204, "second delete");
        assert_eq!(r.header("etag"), Some("W/\"6\""));
        ok(
            &f.get(&u, &format!("{path}/_history/5")).await,
            200,
            "old version kept",
        );
        ok(
            &f.get(&u, &format!("{path}/_history/6")).await,
            410,
            "the deletion",
        );
        ok(
            &f.send(Some(&u), "DELETE", "/fhir/Patient/never", &[], None)
                .await,
            404,
            "delete unknown",
        );

        // update-as-create with the client's id, then resurrecting the deleted one
        let r = f
            .json(
                &u,
                "PUT",
                "/fhir/Patient/mine",
                &[],
                &patient(Some("mine"), "Own"),
            )
            .await;
        ok(&r, 201, "update as create");
        assert_eq!(r.body["id"], "mine");
        let r = f
            .json(&u, "PUT", &path, &[], &patient(Some(&id), "Back"))
            .await;
        ok(&r, 201, "resurrect");
        assert_eq!(r.body["meta"]["versionId"], "7");

        // instance history: newest first, request and response, deletes included, paging
        let r = f.get(&u, &format!("{path}/_history")).await;
        ok(&r, 200, "history");
        assert_eq!(r.body["type"], "history");
        let e = r.body["entry"].as_array().unwrap();
        let vids: Vec<&str> = e
            .iter()
            .map(|e| e["response"]["etag"].as_str().unwrap())
            .collect();
        assert_eq!(
            vids,
            [
                "W/\"7\"", "W/\"6\"", "W/\"5\"", "W/\"4\"", "W/\"3\"", "W/\"2\"", "W/\"1\""
            ]
        );
        assert_eq!(e[1]["request"]["method"], "DELETE");
        assert!(e[1].get("resource").is_none());
        assert_eq!(
            e[6]["request"],
            json!({ "method": "POST", "url": "Patient" })
        );
        assert_eq!(e[6]["response"]["status"], "201 Created");
        assert_eq!(e[3]["request"]["method"], "PUT");
        assert_eq!(e[4]["request"]["method"], "PATCH");
        let r = f.get(&u, &format!("{path}/_history?_count=3")).await;
        ok(&r, 200, "history page 1");
        assert_eq!(r.body["entry"].as_array().unwrap().len(), 3);
        let next = r.body["link"][1]["url"].as_str().unwrap().to_owned();
        assert_eq!(r.body["link"][1]["relation"], "next");
        let rel = next.strip_prefix("https://api.example.com").unwrap();
        let r2 = f.get(&u, rel).await;
        ok(&r2, 200, "history page 2");
        assert_eq!(r2.body["entry"][0]["response"]["etag"], "W/\"4\"");
        // _since and _at
        let ts4 = r2.body["entry"][0]["response"]["lastModified"]
            .as_str()
            .unwrap()
            .to_owned();
        let r = f
            .get(
                &u,
                &format!("{path}/_history?_since={}", ts4.replace(':', "%3A")),
            )
            .await;
        ok(&r, 200, "since");
        assert_eq!(r.body["entry"].as_array().unwrap().len(), 4);
        let r = f
            .get(
                &u,
                &format!("{path}/_history?_at={}", ts4.replace(':', "%3A")),
            )
            .await;
        ok(&r, 200, "at");
        assert_eq!(r.body["entry"][0]["response"]["etag"], "W/\"4\"");
        assert_eq!(r.body["entry"].as_array().unwrap().len(), 1);
        ok(
            &f.get(&u, &format!("{path}/_history?_since=yesterday"))
                .await,
            400,
            "bad since",
        );

        // type and system history, with paging across shards
        for i in 0..7 {
            let r = f.json(&u, "POST", "/fhir/Observation", &[], &json!({"resourceType": "Observation", "status": "final", "code": {"text": format!("o{i}")}})).await;
            ok(&r, 201, "observation");
        }
        let mut seen = Vec::new();
        for e in f.all_pages(&u, "/fhir/Observation/_history?_count=3").await {
            assert_eq!(e["resource"]["resourceType"], "Observation");
            seen.push(e["response"]["lastModified"].as_str().unwrap().to_owned());
        }
        assert_eq!(seen.len(), 7, "{name}");
        assert!(seen.windows(2).all(|w| w[0] >= w[1]), "newest first");
        let r = f.get(&u, "/fhir/_history?_count=100").await;
        ok(&r, 200, "system history");
        assert_eq!(r.body["entry"].as_array().unwrap().len(), 7 + 7 + 1);
        // A cursor of one query is refused by another.
        let r = f.get(&u, "/fhir/Observation/_history?_count=3").await;
        let next = r.body["link"][1]["url"]
            .as_str()
            .unwrap()
            .replace("_count=3", "_count=4");
        ok(
            &f.get(&u, next.strip_prefix("https://api.example.com").unwrap())
                .await,
            400,
            "cursor of another query",
        );
    }
}

/// Method, path, headers, body, expected status.
type BadCase<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, Vec<u8>, u16);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_4xx_operation_outcome_and_writes_nothing() {
    for backend in backends().await {
        let f = Fhir::new(backend);
        let u = tenant_user("ann", "t1");
        let cases: Vec<BadCase> = vec![
            ("POST", "/fhir/Patient", vec![], b"{not json".to_vec(), 400),
            ("POST", "/fhir/Patient", vec![], b"[]".to_vec(), 400),
            (
                "POST",
                "/fhir/Patient",
                vec![],
                br#"{"resourceType":"Foo"}"#.to_vec(),
                400,
            ),
            (
                "POST",
                "/fhir/Foo",
                vec![],
                br#"{"resourceType":"Foo"}"#.to_vec(),
                404,
            ),
            (
                "POST",
                "/fhir/Patient",
                vec![],
                br#"{"resourceType":"Observation"}"#.to_vec(),
                400,
            ),
            (
                "PUT",
                "/fhir/Patient/a",
                vec![],
                br#"{"resourceType":"Patient","id":"b"}"#.to_vec(),
                400,
            ),
            (
                "PUT",
                "/fhir/Patient/a",
                vec![],
                br#"{"resourceType":"Patient"}"#.to_vec(),
                400,
            ),
            (
                "PUT",
                "/fhir/Patient/a%20b",
                vec![],
                br#"{"resourceType":"Patient","id":"a b"}"#.to_vec(),
                400,
            ),
            // A conditional update needs a body and criteria; criteria must be parameters.
            ("PUT", "/fhir/Patient/", vec![], vec![], 400),
            (
                "PUT",
                "/fhir/Patient",
                vec![],
                br#"{"resourceType":"Patient"}"#.to_vec(),
                400,
            ),
            ("DELETE", "/fhir/Patient?foo=1", vec![], vec![], 400),
            ("DELETE", "/fhir/Patient?_count=1", vec![], vec![], 400),
            (
                "POST",
                "/fhir/Patient",
                vec![("content-type", "application/xml")],
                b"<Patient/>".to_vec(),
                415,
            ),
            (
                "POST",
                "/fhir/Patient",
                vec![],
                format!(
                    r#"{{"resourceType":"Patient","text":"{}"}}"#,
                    "x".repeat(7 * 1024 * 1024)
                )
                .into_bytes(),
                413,
            ),
            (
                "POST",
                "/fhir/Patient",
                vec![],
                format!(
                    r#"{{"resourceType":"Patient","text":"{}"}}"#,
                    "x".repeat(500 * 1024)
                )
                .into_bytes(),
                413,
            ),
            (
                "POST",
                "/fhir",
                vec![],
                br#"{"resourceType":"Bundle","type":"collection"}"#.to_vec(),
                400,
            ),
            (
                "POST",
                "/fhir",
                vec![],
                br#"{"resourceType":"Patient"}"#.to_vec(),
                400,
            ),
            (
                "PUT",
                "/fhir/Patient/a",
                vec![("if-match", "nope")],
                br#"{"resourceType":"Patient","id":"a"}"#.to_vec(),
                400,
            ),
            ("GET", "/fhir/Patient?foo=1", vec![], vec![], 400),
            (
                "GET",
                "/fhir/Patient/p",
                vec![("accept", "application/fhir+xml")],
                vec![],
                406,
            ),
            ("GET", "/fhir/Patient/p?_format=xml", vec![], vec![], 406),
        ];
        for (method, path, headers, body, status) in cases {
            let body = (!body.is_empty()).then_some(body);
            let r = f
                .send(Some(&u), method, path, &headers, body.as_deref())
                .await;
            assert_eq!(r.status, status, "{method} {path}: {}", r.text);
            assert_eq!(
                r.body["resourceType"], "OperationOutcome",
                "{method} {path}"
            );
            assert!(!r.diagnostics().is_empty());
        }
        // JSON Patch that fails, or changes id or resourceType: 4xx, nothing written.
        let r = f
            .json(&u, "PUT", "/fhir/Patient/p", &[], &patient(Some("p"), "A"))
            .await;
        ok(&r, 201, "seed");
        for p in [
            json!([{ "op": "test", "path": "/name/0/family", "value": "B" }]),
            json!([{ "op": "replace", "path": "/id", "value": "q" }]),
            json!([{ "op": "replace", "path": "/resourceType", "value": "Group" }]),
            json!([{ "op": "remove", "path": "/nothing" }]),
            json!({ "op": "add" }),
        ] {
            let bytes = serde_json::to_vec(&p).unwrap();
            let r = f
                .send(
                    Some(&u),
                    "PATCH",
                    "/fhir/Patient/p",
                    &[("content-type", "application/json-patch+json")],
                    Some(&bytes),
                )
                .await;
            assert!((400..500).contains(&r.status), "{p}: {}", r.text);
            assert_eq!(r.body["resourceType"], "OperationOutcome");
        }
        let r = f.get(&u, "/fhir/Patient/p").await;
        assert_eq!(r.body["meta"]["versionId"], "1");
        // Bundles: duplicate fullUrls, unknown urn:uuid, over the limit, two writes of one
        // resource: nothing written.
        let entry = |fu: &str, family: &str, reference: Option<&str>| {
            let mut o =
                json!({"resourceType": "Observation", "status": "final", "code": {"text": family}});
            if let Some(r) = reference {
                o["subject"] = json!({ "reference": r });
            }
            json!({ "fullUrl": fu, "resource": o, "request": { "method": "POST", "url": "Observation" } })
        };
        let bundles = vec![
            json!({"resourceType": "Bundle", "type": "transaction", "entry": [entry("urn:uuid:1", "a", None), entry("urn:uuid:1", "b", None)]}),
            json!({"resourceType": "Bundle", "type": "transaction", "entry": [entry("urn:uuid:1", "a", Some("urn:uuid:9"))]}),
            json!({"resourceType": "Bundle", "type": "transaction", "entry": (0..1001).map(|i| entry(&format!("urn:uuid:{i}"), "x", None)).collect::<Vec<_>>()}),
            json!({"resourceType": "Bundle", "type": "transaction", "entry": [
                entry("urn:uuid:1", "a", None),
                {"request": {"method": "DELETE", "url": "Patient/p"}},
                {"request": {"method": "PUT", "url": "Patient/p"}, "resource": patient(Some("p"), "Twice")}
            ]}),
        ];
        for b in bundles {
            let r = f.json(&u, "POST", "/fhir", &[], &b).await;
            assert!((400..500).contains(&r.status), "{}", r.text);
            assert_eq!(r.body["resourceType"], "OperationOutcome");
        }
        let r = f.get(&u, "/fhir/Observation/_history").await;
        assert_eq!(
            r.body["entry"].as_array().unwrap().len(),
            0,
            "nothing written"
        );
    }
}

/// Every resource of a loaded Bundle reads back equal to what was sent, apart from `meta`,
/// the server's ids of POSTed resources and references rewritten to them.
async fn check_loaded(f: &Fhir, u: &User, base: &str, bundle: &Value, resp: &FhirResp) {
    let entries = bundle["entry"].as_array().unwrap();
    let out = resp.body["entry"].as_array().unwrap();
    assert_eq!(out.len(), entries.len());
    let mut map: HashMap<String, String> = HashMap::new();
    for (e, o) in entries.iter().zip(out) {
        let loc = o["response"]["location"].as_str().unwrap();
        let rel = loc
            .strip_prefix(&format!("https://api.example.com{base}/"))
            .unwrap();
        let type_id = rel.split("/_history").next().unwrap().to_owned();
        if let Some(fu) = e["fullUrl"].as_str() {
            map.insert(fu.to_owned(), type_id.clone());
        }
    }
    // References (`reference` elements) to a fullUrl become the resource's Type/id.
    fn rewrite(v: &mut Value, map: &HashMap<String, String>) {
        match v {
            Value::Array(a) => a.iter_mut().for_each(|x| rewrite(x, map)),
            Value::Object(o) => {
                for (k, x) in o.iter_mut() {
                    match x {
                        Value::String(s) if k == "reference" => {
                            if let Some(n) = map.get(s.as_str()) {
                                *s = n.clone();
                            }
                        }
                        _ => rewrite(x, map),
                    }
                }
            }
            _ => {}
        }
    }
    for (e, o) in entries.iter().zip(out) {
        let loc = o["response"]["location"].as_str().unwrap();
        let rel = loc.strip_prefix("https://api.example.com").unwrap();
        let path = rel.split("/_history").next().unwrap();
        let r = f.get(u, path).await;
        assert_eq!(r.status, 200, "{path}");
        let mut got = r.body.clone();
        let mut sent = e["resource"].clone();
        rewrite(&mut sent, &map);
        for v in [&mut got, &mut sent] {
            let o = v.as_object_mut().unwrap();
            o.remove("meta");
            o.remove("id");
        }
        assert_eq!(got, sent, "{path}");
        if e["request"]["method"] == "PUT" {
            assert_eq!(r.body["id"], e["resource"]["id"]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_bundles_load_as_transactions() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/fhir");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/fixtures/fhir")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 5);
    for backend in backends().await {
        let f = Fhir::new(backend);
        let u = tenant_user("loader", "t1");
        for file in &files {
            let bundle: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
            let r = f.json(&u, "POST", "/fhir", &[], &bundle).await;
            assert_eq!(
                r.status,
                200,
                "{}: {}",
                file.display(),
                &r.text[..r.text.len().min(500)]
            );
            assert_eq!(r.body["type"], "transaction-response");
            check_loaded(&f, &u, "/fhir", &bundle, &r).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_rewrite_references_and_run_in_spec_order() {
    for backend in backends().await {
        let f = Fhir::new(backend);
        let u = tenant_user("ann", "t1");
        ok(
            &f.json(
                &u,
                "PUT",
                "/fhir/Patient/old",
                &[],
                &patient(Some("old"), "Old"),
            )
            .await,
            201,
            "seed",
        );
        ok(
            &f.json(
                &u,
                "PUT",
                "/fhir/Patient/keep",
                &[],
                &patient(Some("keep"), "Keep"),
            )
            .await,
            201,
            "seed",
        );
        let b = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"request": {"method": "GET", "url": "Patient/keep"}},
            {"fullUrl": "urn:uuid:obs", "request": {"method": "POST", "url": "Observation"},
             "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": "urn:uuid:pat"}}},
            {"fullUrl": "urn:uuid:pat", "request": {"method": "POST", "url": "Patient"}, "resource": patient(None, "New")},
            {"request": {"method": "DELETE", "url": "Patient/old"}},
            {"request": {"method": "PUT", "url": "Patient/keep", "ifMatch": "W/\"1\""}, "resource": patient(Some("keep"), "Kept")},
        ]});
        let r = f
            .json(
                &u,
                "POST",
                "/fhir",
                &[("prefer", "return=representation")],
                &b,
            )
            .await;
        ok(&r, 200, "transaction");
        let e = r.body["entry"].as_array().unwrap();
        assert_eq!(e[0]["response"]["status"], "200 OK");
        // The GET runs after the PUT.
        assert_eq!(e[0]["resource"]["name"][0]["family"], "Kept");
        assert_eq!(e[1]["response"]["status"], "201 Created");
        let pat_id = e[2]["resource"]["id"].as_str().unwrap();
        assert_eq!(
            e[1]["resource"]["subject"]["reference"],
            format!("Patient/{pat_id}")
        );
        assert_eq!(e[3]["response"]["status"], "204 No Content");
        assert_eq!(e[4]["response"]["etag"], "W/\"2\"");
        assert!(
            e[1]["response"]["location"]
                .as_str()
                .unwrap()
                .starts_with("https://api.example.com/fhir/Observation/")
        );
        ok(
            &f.get(&u, "/fhir/Patient/old").await,
            410,
            "deleted in the transaction",
        );
        // A stale ifMatch fails the whole transaction.
        let b = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:a", "request": {"method": "POST", "url": "Patient"}, "resource": patient(None, "Never")},
            {"request": {"method": "PUT", "url": "Patient/keep", "ifMatch": "W/\"1\""}, "resource": patient(Some("keep"), "Never")},
        ]});
        let r = f.json(&u, "POST", "/fhir", &[], &b).await;
        ok(&r, 412, "stale ifMatch");
        let r = f.get(&u, "/fhir/Patient/_history").await;
        assert!(
            r.body["entry"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e["resource"]["name"][0]["family"] != "Never")
        );
        // A batch: entries succeed or fail alone.
        let b = json!({"resourceType": "Bundle", "type": "batch", "entry": [
            {"request": {"method": "POST", "url": "Patient"}, "resource": patient(None, "B1")},
            {"request": {"method": "PUT", "url": "Patient/keep", "ifMatch": "W/\"1\""}, "resource": patient(Some("keep"), "Never")},
            {"request": {"method": "GET", "url": "Patient/nope"}},
            {"request": {"method": "GET", "url": "Patient/keep/_history/1"}},
            {"request": {"method": "PATCH", "url": "Patient/keep"}, "resource": {"resourceType": "Binary", "contentType": "application/json-patch+json",
                "data": "W3sib3AiOiJyZXBsYWNlIiwicGF0aCI6Ii9iaXJ0aERhdGUiLCJ2YWx1ZSI6IjE5ODAtMDEtMDEifV0="}},
        ]});
        let r = f.json(&u, "POST", "/fhir", &[], &b).await;
        ok(&r, 200, "batch");
        let e = r.body["entry"].as_array().unwrap();
        assert_eq!(r.body["type"], "batch-response");
        assert_eq!(e[0]["response"]["status"], "201 Created");
        assert_eq!(e[1]["response"]["status"], "412 Precondition Failed");
        assert_eq!(
            e[1]["response"]["outcome"]["resourceType"],
            "OperationOutcome"
        );
        assert_eq!(e[2]["response"]["status"], "404 Not Found");
        assert_eq!(e[3]["resource"]["name"][0]["family"], "Keep");
        assert_eq!(e[4]["response"]["status"], "200 OK");
        assert_eq!(
            f.get(&u, "/fhir/Patient/keep").await.body["birthDate"],
            "1980-01-01"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenant_gets_404_in_both_url_forms() {
    for tenant_url in [false, true] {
        for backend in backends().await {
            let config = TenantConfig {
                tenant_specific_url: tenant_url,
                ..TenantConfig::default()
            };
            let f = Fhir::with_config(backend, config);
            let a = tenant_user("a", "t1");
            let b = tenant_user("b", "t2");
            let base = |t: &str| {
                if tenant_url {
                    format!("/fhir/tenant/{t}")
                } else {
                    "/fhir".to_owned()
                }
            };
            let (ba, bb) = (base("t1"), base("t2"));
            let r = f
                .json(
                    &a,
                    "PUT",
                    &format!("{ba}/Patient/p1"),
                    &[],
                    &patient(Some("p1"), "A"),
                )
                .await;
            ok(&r, 201, "create in t1");
            let expected_loc = format!("https://api.example.com{ba}/Patient/p1/_history/1");
            assert_eq!(r.header("location"), Some(expected_loc.as_str()));
            // t2 sees nothing of t1.
            for (m, p) in [
                ("GET", format!("{bb}/Patient/p1")),
                ("GET", format!("{bb}/Patient/p1/_history/1")),
                ("GET", format!("{bb}/Patient/p1/_history")),
                ("DELETE", format!("{bb}/Patient/p1")),
            ] {
                let r = f.send(Some(&b), m, &p, &[], None).await;
                assert_eq!(r.status, 404, "{m} {p}: {}", r.text);
            }
            let pb = serde_json::to_vec(
                &json!([{ "op": "replace", "path": "/birthDate", "value": "1999-01-01" }]),
            )
            .unwrap();
            let r = f
                .send(
                    Some(&b),
                    "PATCH",
                    &format!("{bb}/Patient/p1"),
                    &[("content-type", "application/json-patch+json")],
                    Some(&pb),
                )
                .await;
            ok(&r, 404, "patch across tenants");
            let r = f
                .json(
                    &b,
                    "PUT",
                    &format!("{bb}/Patient/p1"),
                    &[("if-match", "W/\"1\"")],
                    &patient(Some("p1"), "B"),
                )
                .await;
            ok(
                &r,
                412,
                "update across tenants is not an update of t1's resource",
            );
            for h in [format!("{bb}/Patient/_history"), format!("{bb}/_history")] {
                let r = f.get(&b, &h).await;
                ok(&r, 200, "history of t2");
                assert_eq!(r.body["entry"].as_array().unwrap().len(), 0, "{h}");
            }
            // A transaction that touches t1's resource fails whole.
            let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
                {"request": {"method": "POST", "url": "Patient"}, "resource": patient(None, "B")},
                {"request": {"method": "DELETE", "url": "Patient/p1"}},
            ]});
            let r = f.json(&b, "POST", &bb, &[], &tx).await;
            ok(&r, 404, "transaction across tenants");
            ok(
                &f.get(&b, &format!("{bb}/Patient/_history")).await,
                200,
                "t2 history",
            );
            assert_eq!(
                f.get(&b, &format!("{bb}/Patient/_history")).await.body["entry"]
                    .as_array()
                    .unwrap()
                    .len(),
                0
            );
            // t1 still has it, unchanged.
            let r = f.get(&a, &format!("{ba}/Patient/p1")).await;
            ok(&r, 200, "t1 read");
            assert_eq!(r.body["meta"]["versionId"], "1");
            // t2's searches find nothing of t1's, by id, by value, through a chain or _has.
            for q in [
                "Patient?_id=p1",
                "Patient?family=A",
                "Patient/p1/*",
                "Observation?subject:Patient.family=A",
                "Patient?_has:Observation:patient:status=final",
            ] {
                let r = f.get(&b, &format!("{bb}/{q}")).await;
                ok(&r, 200, q);
                assert!(r.body["entry"].is_null(), "t2 {q}: {}", r.text);
                let r = f.get(&a, &format!("{ba}/Patient?family=A")).await;
                assert_eq!(r.body["total"], 1, "t1 finds it");
            }
            // The form POST searches too.
            let form = [("content-type", "application/x-www-form-urlencoded")];
            for (who, base, want) in [(&a, &ba, 1), (&b, &bb, 0)] {
                for path in ["/Patient/_search", "/_search"] {
                    let body: &[u8] = if path == "/_search" {
                        b"_type=Patient&family=A"
                    } else {
                        b"family=A"
                    };
                    let r = f
                        .send(
                            Some(who),
                            "POST",
                            &format!("{base}{path}"),
                            &form,
                            Some(body),
                        )
                        .await;
                    ok(&r, 200, path);
                    assert_eq!(r.body["total"], want, "{} {path}", who.name);
                }
            }
            if tenant_url {
                // A tenant in the URL that is not the token's is 401; tenant-less paths are 404.
                ok(
                    &f.get(&a, &format!("{bb}/Patient/p1")).await,
                    401,
                    "path tenant mismatch",
                );
                ok(
                    &f.get(&a, &format!("{bb}/Patient?family=A")).await,
                    401,
                    "search: path tenant mismatch",
                );
                // A member of t1 only, naming t2 in the URL: 403.
                let member = User::new("m", &["t1"]);
                ok(
                    &f.get(&member, &format!("{bb}/Patient?family=A")).await,
                    403,
                    "search in a tenant the caller does not hold",
                );
                ok(
                    &f.get(&a, "/fhir/Patient/p1").await,
                    404,
                    "tenant-less path",
                );
            } else {
                ok(
                    &f.get(&a, "/fhir/tenant/t1/Patient/p1").await,
                    404,
                    "tenant path off",
                );
            }
            // A caller without WRITE gets 403.
            let reader = User::new("r", &["t1_read"]);
            let r = f
                .json(
                    &reader,
                    "PUT",
                    &format!("{ba}/Patient/p1"),
                    &[],
                    &patient(Some("p1"), "R"),
                )
                .await;
            ok(&r, 403, "reader writes");
            ok(
                &f.get(&reader, &format!("{ba}/Patient/p1")).await,
                200,
                "reader reads",
            );
            let r = f.json(&reader, "POST", &ba, &[], &tx).await;
            ok(&r, 403, "reader posts a transaction");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_content_lives_in_the_bucket() {
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    for backend in backends().await {
        let name = backend.name;
        let f = Fhir::new(backend);
        let u = tenant_user("ann", "t1");
        let small: Vec<u8> = (0..=255u8).collect();
        let body =
            json!({"resourceType": "Binary", "contentType": "image/png", "data": b64(&small)});
        let r = f.json(&u, "POST", "/fhir/Binary", &[], &body).await;
        ok(&r, 201, name);
        assert_eq!(
            r.body["data"],
            b64(&small),
            "{name}: the representation carries the data"
        );
        let id = r.body["id"].as_str().unwrap().to_owned();
        let path = format!("/fhir/Binary/{id}");
        let r = f
            .send(Some(&u), "GET", &path, &[("accept", "image/png")], None)
            .await;
        ok(&r, 200, "native read");
        assert_eq!(r.header("content-type"), Some("image/png"));
        assert_eq!(r.bytes, small);
        // The table holds no data: the stored body is the resource without it.
        let scope = integration_tests::fhir::scope_for("t1").await;
        let store = fhir_core::Store::new(
            &*f.table,
            &scope,
            &fhir_core::search::extract::SearchExtractor,
            Default::default(),
        );
        let v = store
            .read(
                fhir_core::ResourceType::parse("Binary").unwrap(),
                &fhir_core::ResourceId::parse(&id).unwrap(),
            )
            .await
            .unwrap()
            .unwrap();
        assert!(v.resource().unwrap().get("data").is_none());
        assert!(v.blob.as_deref().unwrap().starts_with("t1/fhir/Binary/"));
        let req = f.get(&u, &path).await;
        assert_eq!(req.body["data"], b64(&small));
        assert_eq!(req.header("content-type"), Some("application/fhir+json"));
        // The bytes themselves, byte for byte.
        let raw = f
            .send(Some(&u), "GET", &path, &[("accept", "image/*")], None)
            .await;
        assert_eq!(raw.status, 200);
        assert_eq!(raw.bytes, small);
        // Large content is a redirect to a presigned URL.
        let big = vec![7u8; 1024 * 1024 + 1];
        let body = json!({"resourceType": "Binary", "id": "big", "contentType": "application/pdf", "data": b64(&big)});
        let r = f
            .json(
                &u,
                "PUT",
                "/fhir/Binary/big",
                &[("prefer", "return=minimal")],
                &body,
            )
            .await;
        ok(&r, 201, "big");
        let r = f
            .send(
                Some(&u),
                "GET",
                "/fhir/Binary/big",
                &[("accept", "application/pdf")],
                None,
            )
            .await;
        ok(&r, 302, "redirect");
        assert!(
            r.header("location")
                .unwrap()
                .contains("t1/fhir/Binary/big/"),
            "{:?}",
            r.header("location")
        );
        // A new version gets new content; the old version keeps its own.
        let body = json!({"resourceType": "Binary", "id": "big", "contentType": "text/plain", "data": b64(b"v2")});
        ok(
            &f.json(&u, "PUT", "/fhir/Binary/big", &[], &body).await,
            200,
            "v2",
        );
        let r = f
            .send(
                Some(&u),
                "GET",
                "/fhir/Binary/big",
                &[("accept", "text/plain")],
                None,
            )
            .await;
        assert_eq!(r.text, "v2");
        let r = f
            .send(
                Some(&u),
                "GET",
                "/fhir/Binary/big/_history/1",
                &[("accept", "application/pdf")],
                None,
            )
            .await;
        ok(&r, 302, "old version's content");
        // Bad data, and patching a Binary, are 4xx.
        let bad = json!({"resourceType": "Binary", "contentType": "text/plain", "data": "%%%"});
        ok(
            &f.json(&u, "POST", "/fhir/Binary", &[], &bad).await,
            400,
            "bad base64",
        );
        let p = serde_json::to_vec(
            &json!([{ "op": "replace", "path": "/contentType", "value": "a/b" }]),
        )
        .unwrap();
        let r = f
            .send(
                Some(&u),
                "PATCH",
                "/fhir/Binary/big",
                &[("content-type", "application/json-patch+json")],
                Some(&p),
            )
            .await;
        ok(&r, 422, "patch binary");
        // Another tenant sees nothing.
        let other = tenant_user("bob", "t2");
        ok(
            &f.send(Some(&other), "GET", &path, &[("accept", "image/png")], None)
                .await,
            404,
            "other tenant",
        );
        // In a transaction too.
        let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"request": {"method": "POST", "url": "Binary"}, "resource": {"resourceType": "Binary", "contentType": "text/plain", "data": b64(b"in a bundle")}}
        ]});
        let r = f.json(&u, "POST", "/fhir", &[], &tx).await;
        ok(&r, 200, "binary in a transaction");
        let loc = r.body["entry"][0]["response"]["location"].as_str().unwrap();
        let rel = loc
            .strip_prefix("https://api.example.com")
            .unwrap()
            .split("/_history")
            .next()
            .unwrap()
            .to_owned();
        let r = f
            .send(Some(&u), "GET", &rel, &[("accept", "text/plain")], None)
            .await;
        assert_eq!(r.text, "in a bundle");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenant_can_come_from_an_aud_entry() {
    let f = Fhir::new(Backend::embedded());
    let mut claims = User::new("svc", &[]).claims();
    claims["aud"] = json!(["test-client", "https://api.example.com/fhir/tenant/t3"]);
    let body = serde_json::to_vec(&patient(Some("a1"), "Aud")).unwrap();
    let r = f
        .send_claims(Some(&claims), "PUT", "/fhir/Patient/a1", &[], Some(&body))
        .await;
    ok(&r, 201, "aud tenant");
    ok(
        &f.get(&tenant_user("x", "t3"), "/fhir/Patient/a1").await,
        200,
        "t3 reads it",
    );
    ok(
        &f.get(&tenant_user("y", "t1"), "/fhir/Patient/a1").await,
        404,
        "t1 does not",
    );
    claims["custom:tenantId"] = json!("t4");
    let r = f
        .send_claims(Some(&claims), "GET", "/fhir/Patient/a1", &[], None)
        .await;
    ok(&r, 401, "aud and tenant claim differ");
    assert_eq!(r.body["resourceType"], "OperationOutcome");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_transactions_stage_big_resources_beside_their_heads() {
    for backend in backends().await {
        let name = backend.name;
        let f = Fhir::new(backend);
        let u = tenant_user("ann", "t1");
        let big = |text: &str| {
            let mut p = patient(Some("big"), "Big");
            p["text"] = json!({ "status": "generated", "div": format!("<div>{}</div>", text.repeat(250 * 1024 / text.len())) });
            p
        };
        ok(
            &f.json(
                &u,
                "PUT",
                "/fhir/Patient/big",
                &[("prefer", "return=minimal")],
                &big("a"),
            )
            .await,
            201,
            name,
        );
        // 101 heads: through a commit record; the old and new Patient do not fit in one item.
        let mut entries =
            vec![json!({"request": {"method": "PUT", "url": "Patient/big"}, "resource": big("b")})];
        for i in 0..100 {
            entries.push(json!({"request": {"method": "POST", "url": "Observation"},
                "resource": {"resourceType": "Observation", "status": "final", "code": {"text": format!("o{i}")}, "subject": {"reference": "Patient/big"}}}));
        }
        let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
        let r = f.json(&u, "POST", "/fhir", &[], &tx).await;
        ok(&r, 200, name);
        let r = f.get(&u, "/fhir/Patient/big").await;
        ok(&r, 200, name);
        assert!(
            r.body["text"]["div"]
                .as_str()
                .unwrap()
                .starts_with("<div>bbb")
        );
        assert_eq!(r.body["meta"]["versionId"], "2");
        let r = f.get(&u, "/fhir/Patient/big/_history/1").await;
        assert!(
            r.body["text"]["div"]
                .as_str()
                .unwrap()
                .starts_with("<div>aaa")
        );
        let r = f.get(&u, "/fhir/Observation/_history?_count=1000").await;
        assert_eq!(r.body["entry"].as_array().unwrap().len(), 100);
        // The next write of the big Patient is an ordinary one.
        ok(
            &f.json(
                &u,
                "PUT",
                "/fhir/Patient/big",
                &[("if-match", "W/\"2\"")],
                &big("c"),
            )
            .await,
            200,
            name,
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_interactions_act_on_what_the_criteria_match() {
    for backend in backends().await {
        let f = Fhir::new(backend);
        let u = tenant_user("ann", "t1");
        let other = tenant_user("bob", "t2");
        let with_id = |sys: &str, family: &str| {
            let (sys, value) = sys.split_once('|').unwrap_or((sys, "1"));
            json!({"resourceType": "Patient", "identifier": [{"system": sys, "value": value}],
                   "name": [{"family": family}]})
        };
        // If-None-Exist: the first create creates, the second returns the first.
        let h = [("if-none-exist", "identifier=urn:s|1")];
        let r = f
            .json(&u, "POST", "/fhir/Patient", &h, &with_id("urn:s", "A"))
            .await;
        ok(&r, 201, "conditional create");
        let id = r.body["id"].as_str().unwrap().to_owned();
        let r = f
            .json(&u, "POST", "/fhir/Patient", &h, &with_id("urn:s", "B"))
            .await;
        ok(&r, 200, "conditional create finds it");
        assert_eq!(r.body["id"], id.as_str());
        assert_eq!(r.body["name"][0]["family"], "A", "nothing was written");
        // Another tenant's criteria never see t1's resource.
        let r = f
            .json(&other, "POST", "/fhir/Patient", &h, &with_id("urn:s", "X"))
            .await;
        ok(&r, 201, "t2 creates its own");
        assert_ne!(r.body["id"], id.as_str());
        // Conditional update: the one match.
        let path = "/fhir/Patient?identifier=urn:s%7C1";
        let r = f.json(&u, "PUT", path, &[], &with_id("urn:s", "C")).await;
        ok(&r, 200, "conditional update");
        assert_eq!(
            (r.body["id"].as_str(), r.body["meta"]["versionId"].as_str()),
            (Some(id.as_str()), Some("2"))
        );
        // No match, no id: a create. A body id that names another resource: 400.
        let r = f
            .json(
                &u,
                "PUT",
                "/fhir/Patient?identifier=urn:s%7C2",
                &[],
                &with_id("urn:s|2", "D"),
            )
            .await;
        ok(&r, 201, "conditional update creates");
        let second = r.body["id"].as_str().unwrap().to_owned();
        let mut wrong = with_id("urn:s", "E");
        wrong["id"] = json!("someone-else");
        ok(
            &f.json(&u, "PUT", path, &[], &wrong).await,
            400,
            "body id differs from the match",
        );
        // Conditional patch.
        let patch = br#"[{"op":"replace","path":"/name/0/family","value":"P"}]"#;
        let r = f
            .send(
                Some(&u),
                "PATCH",
                path,
                &[("content-type", "application/json-patch+json")],
                Some(patch),
            )
            .await;
        ok(&r, 200, "conditional patch");
        assert_eq!(r.body["name"][0]["family"], "P");
        // Two matches: 412, nothing written.
        ok(
            &f.json(&u, "POST", "/fhir/Patient", &[], &with_id("urn:s", "F"))
                .await,
            201,
            "second urn:s|1",
        );
        ok(
            &f.json(&u, "PUT", path, &[], &with_id("urn:s", "G")).await,
            412,
            "two matches",
        );
        ok(
            &f.send(Some(&u), "DELETE", path, &[], None).await,
            412,
            "two matches delete",
        );
        let r = f.get(&u, &format!("/fhir/Patient/{id}")).await;
        assert_eq!(r.body["meta"]["versionId"], "3");
        // Conditional delete: the match, then nothing to delete (204).
        let del = "/fhir/Patient?identifier=urn:s%7C2";
        ok(
            &f.send(Some(&u), "DELETE", del, &[], None).await,
            204,
            "conditional delete",
        );
        ok(
            &f.get(&u, &format!("/fhir/Patient/{second}")).await,
            410,
            "deleted",
        );
        ok(
            &f.send(Some(&u), "DELETE", del, &[], None).await,
            204,
            "no match",
        );
        // A reader cannot update conditionally.
        let reader = User::new("r", &["t1_read"]);
        let r = f
            .json(
                &reader,
                "PUT",
                "/fhir/Patient?identifier=urn:s%7C9",
                &[],
                &with_id("urn:s", "Z"),
            )
            .await;
        ok(&r, 403, "reader");
        // Transactions: ifNoneExist and conditional references.
        let tx = |subject: &str| {
            json!({"resourceType": "Bundle", "type": "transaction", "entry": [
                {"fullUrl": "urn:uuid:11111111-1111-1111-1111-111111111111",
                 "resource": with_id("urn:t", "T1"),
                 "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=urn:t|1"}},
                {"resource": {"resourceType": "Observation", "status": "final",
                              "code": {"text": "x"}, "subject": {"reference": subject}},
                 "request": {"method": "POST", "url": "Observation"}},
            ]})
        };
        let subject_of = |r: &FhirResp| {
            let loc = r.body["entry"][1]["response"]["location"].as_str().unwrap();
            let path = loc.strip_prefix("https://api.example.com").unwrap();
            path.split("/_history").next().unwrap().to_owned()
        };
        let r = f
            .json(
                &u,
                "POST",
                "/fhir",
                &[],
                &tx("urn:uuid:11111111-1111-1111-1111-111111111111"),
            )
            .await;
        ok(&r, 200, "transaction");
        assert_eq!(r.body["entry"][0]["response"]["status"], "201 Created");
        let pid = r.body["entry"][0]["fullUrl"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_owned();
        let obs = f.get(&u, &subject_of(&r)).await;
        assert_eq!(obs.body["subject"]["reference"], format!("Patient/{pid}"));
        // Again, with a conditional reference: ifNoneExist finds the patient (200, no second
        // patient) and the reference names it.
        let r = f
            .json(&u, "POST", "/fhir", &[], &tx("Patient?identifier=urn:t|1"))
            .await;
        ok(&r, 200, "transaction with a conditional reference");
        assert_eq!(r.body["entry"][0]["response"]["status"], "200 OK");
        let obs = f.get(&u, &subject_of(&r)).await;
        assert_eq!(obs.body["subject"]["reference"], format!("Patient/{pid}"));
        // A conditional reference without a match: 404, nothing of the transaction written.
        let count = |b: &Value| b["entry"].as_array().map_or(0, Vec::len);
        let before = count(&f.get(&u, "/fhir/Observation/_history").await.body);
        let r = f
            .json(
                &u,
                "POST",
                "/fhir",
                &[],
                &tx("Patient?identifier=urn:nobody|1"),
            )
            .await;
        ok(&r, 404, "conditional reference without a match");
        assert_eq!(
            count(&f.get(&u, "/fhir/Observation/_history").await.body),
            before
        );
        // Another tenant's conditional reference never resolves to t1's patient.
        let r = f
            .json(
                &other,
                "POST",
                "/fhir",
                &[],
                &tx("Patient?identifier=urn:t|1"),
            )
            .await;
        ok(&r, 404, "t2 cannot reference t1's patient");
    }
}
