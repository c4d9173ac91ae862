//! FHIR writes under storage faults and under concurrency, on both backends
//! (`docs/architecture.md`, "FHIR", write protocol invariants):
//!
//! - a table wrapper fails the n-th storage call, for every n, of a create, an update, a
//!   delete, a 10-entry and a 300-entry transaction, either before the call reaches the
//!   backend or after it was applied (a lost response); afterwards read, vread, history and the
//!   `_id`/`_lastUpdated` indexes show the whole write or none of it, and the next writer
//!   resolves whatever the failed writer left pending;
//! - 16 writers x 50 updates of one resource, with and without `If-Match`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use fhir_core::search::extract::SearchExtractor;
use fhir_core::{ResourceId, ResourceType, Store, StoreOptions};
use integration_tests::Backend;
use integration_tests::fhir::{Fhir, FhirResp, scope_for, tenant_user};
use serde_json::{Value, json};
use storage::{BatchOp, Condition, Item, Key, Page, Query, StorageError, Table, WriteOp};
use tenant_context::TenantConfig;

/// A table that fails its n-th call: before the call reaches the backend, or after the
/// backend applied it (the caller sees an error although the write happened).
struct Faulty {
    inner: Arc<dyn Table>,
    calls: AtomicUsize,
    fail_at: AtomicUsize,
    after: AtomicBool,
}

impl Faulty {
    fn new(inner: Arc<dyn Table>) -> Self {
        Faulty {
            inner,
            calls: AtomicUsize::new(0),
            fail_at: AtomicUsize::new(0),
            after: AtomicBool::new(false),
        }
    }

    /// Fails call `n` (counted from 1) from now on; 0 never fails.
    fn arm(&self, n: usize, after: bool) {
        self.calls.store(0, Ordering::SeqCst);
        self.after.store(after, Ordering::SeqCst);
        self.fail_at.store(n, Ordering::SeqCst);
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    async fn gate<T>(
        &self,
        call: impl Future<Output = Result<T, StorageError>>,
    ) -> Result<T, StorageError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let hit = n == self.fail_at.load(Ordering::SeqCst);
        let after = self.after.load(Ordering::SeqCst);
        if hit && !after {
            return Err(StorageError::Unavailable(format!(
                "injected failure of call {n}"
            )));
        }
        let r = call.await;
        if hit {
            return Err(StorageError::Unavailable(format!(
                "injected lost response of call {n}"
            )));
        }
        r
    }
}

#[async_trait]
impl Table for Faulty {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StorageError> {
        self.gate(self.inner.get(key)).await
    }
    async fn batch_get(&self, keys: &[Key]) -> Result<Vec<Item>, StorageError> {
        self.gate(self.inner.batch_get(keys)).await
    }
    async fn put(&self, item: Item, cond: Condition) -> Result<(), StorageError> {
        self.gate(self.inner.put(item, cond)).await
    }
    async fn delete(&self, key: &Key, cond: Condition) -> Result<(), StorageError> {
        self.gate(self.inner.delete(key, cond)).await
    }
    async fn query(&self, query: &Query) -> Result<Page, StorageError> {
        self.gate(self.inner.query(query)).await
    }
    async fn transact(&self, ops: Vec<WriteOp>) -> Result<(), StorageError> {
        self.gate(self.inner.transact(ops)).await
    }
    async fn batch_write(&self, ops: Vec<BatchOp>) -> Result<(), StorageError> {
        self.gate(self.inner.batch_write(ops)).await
    }
}

fn patient(id: Option<&str>, family: &str) -> Value {
    let mut p = json!({ "resourceType": "Patient", "name": [{ "family": family }] });
    if let Some(id) = id {
        p["id"] = json!(id);
    }
    p
}

fn observation(subject: &str, text: &str) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "code": { "text": text },
        "subject": { "reference": subject }
    })
}

/// A write to try under faults: what to seed, the request, and what it changes.
struct Scenario {
    name: &'static str,
    /// Patients `Patient/<id>` created before the write.
    seed: Vec<String>,
    method: &'static str,
    path: &'static str,
    body: Option<Value>,
    /// Of the seeded patients: updated (one new version each) and deleted.
    updated: Vec<String>,
    deleted: Vec<String>,
    /// Resources the write creates, by type.
    created: BTreeMap<&'static str, usize>,
}

fn transaction(updates: &[String], creates: usize) -> Value {
    let mut entries: Vec<Value> = updates
        .iter()
        .map(|id| json!({"request": {"method": "PUT", "url": format!("Patient/{id}")}, "resource": patient(Some(id), "Updated")}))
        .collect();
    entries.push(json!({"fullUrl": "urn:uuid:new-patient", "request": {"method": "POST", "url": "Patient"}, "resource": patient(None, "New")}));
    for i in 1..creates {
        entries.push(json!({"request": {"method": "POST", "url": "Observation"}, "resource": observation("urn:uuid:new-patient", &format!("o{i}"))}));
    }
    json!({ "resourceType": "Bundle", "type": "transaction", "entry": entries })
}

fn scenarios() -> Vec<Scenario> {
    let ids = |prefix: &str, n: usize| (0..n).map(|i| format!("{prefix}{i}")).collect::<Vec<_>>();
    vec![
        Scenario {
            name: "create",
            seed: vec![],
            method: "POST",
            path: "/fhir/Patient",
            body: Some(patient(None, "Created")),
            updated: vec![],
            deleted: vec![],
            created: BTreeMap::from([("Patient", 1)]),
        },
        Scenario {
            name: "update",
            seed: ids("u", 1),
            method: "PUT",
            path: "/fhir/Patient/u0",
            body: Some(patient(Some("u0"), "Updated")),
            updated: ids("u", 1),
            deleted: vec![],
            created: BTreeMap::new(),
        },
        Scenario {
            name: "delete",
            seed: ids("d", 1),
            method: "DELETE",
            path: "/fhir/Patient/d0",
            body: None,
            updated: vec![],
            deleted: ids("d", 1),
            created: BTreeMap::new(),
        },
        Scenario {
            name: "10-entry transaction",
            seed: ids("s", 5),
            method: "POST",
            path: "/fhir",
            body: Some(transaction(&ids("s", 5), 5)),
            updated: ids("s", 5),
            deleted: vec![],
            created: BTreeMap::from([("Observation", 4), ("Patient", 1)]),
        },
        Scenario {
            name: "300-entry transaction",
            seed: ids("l", 20),
            method: "POST",
            path: "/fhir",
            body: Some(transaction(&ids("l", 20), 280)),
            updated: ids("l", 20),
            deleted: vec![],
            created: BTreeMap::from([("Observation", 279), ("Patient", 1)]),
        },
    ]
}

/// Every visible version of `t` in a tenant (type history, all pages), newest first.
async fn type_history(f: &Fhir, tenant: &str, t: &str) -> Vec<Value> {
    let u = tenant_user("checker", tenant);
    f.all_pages(&u, &format!("/fhir/{t}/_history?_count=1000"))
        .await
}

/// Checks that the tenant shows all of `s` or none of it, and returns which.
/// `bump`: versions the next writer added to every seeded patient since.
async fn check(f: &Fhir, tenant: &str, s: &Scenario, what: &str, bump: u64) -> bool {
    let sample = f.backend.name == "moto";
    let u = tenant_user("checker", tenant);
    // Patients as history says, by id -> newest entry.
    let mut applied_votes = BTreeSet::new();
    let mut live: BTreeMap<(String, String), String> = BTreeMap::new();
    for t in ["Patient", "Observation"] {
        let hist = type_history(f, tenant, t).await;
        let mut newest: BTreeMap<String, &Value> = BTreeMap::new();
        for e in &hist {
            let id = e["fullUrl"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_owned();
            newest.entry(id).or_insert(e);
        }
        let seeded: BTreeSet<&String> = s.seed.iter().collect();
        let new_ids: Vec<&String> = newest
            .keys()
            .filter(|id| t != "Patient" || !seeded.contains(id))
            .collect();
        let want = s.created.get(t).copied().unwrap_or(0);
        applied_votes.insert(match new_ids.len() {
            0 if want > 0 => Some(false),
            n if n == want && want > 0 => Some(true),
            0 => None,
            n => panic!("{what}: {t}: {n} new resources visible, the write makes {want}"),
        });
        for (n, (id, e)) in newest.iter().enumerate() {
            // On moto, where each call costs milliseconds, the created Observations are read
            // one by one only for a sample; history and the indexes cover every one of them.
            if sample && t == "Observation" && n >= 5 && n + 5 < newest.len() {
                if e["request"]["method"] != "DELETE" {
                    let lu = e["response"]["lastModified"].as_str().unwrap().to_owned();
                    live.insert((t.to_owned(), id.clone()), lu);
                }
                continue;
            }
            // Every version history shows reads back by vread, and the newest is current.
            let etag = e["response"]["etag"].as_str().unwrap();
            let vid: u64 = etag
                .trim_start_matches("W/\"")
                .trim_end_matches('"')
                .parse()
                .unwrap();
            let r = f.get(&u, &format!("/fhir/{t}/{id}")).await;
            if e["request"]["method"] == "DELETE" {
                assert_eq!(r.status, 410, "{what}: {t}/{id} {}", r.text);
            } else {
                assert_eq!(r.status, 200, "{what}: {t}/{id} {}", r.text);
                assert_eq!(
                    r.body["meta"]["versionId"],
                    vid.to_string(),
                    "{what}: {t}/{id}"
                );
                live.insert(
                    (t.to_owned(), id.clone()),
                    r.body["meta"]["lastUpdated"].as_str().unwrap().to_owned(),
                );
            }
            for v in 1..=vid {
                let r = f.get(&u, &format!("/fhir/{t}/{id}/_history/{v}")).await;
                assert!(
                    r.status == 200 || r.status == 410,
                    "{what}: vread {t}/{id}/{v}: {}",
                    r.text
                );
            }
            let r = f
                .get(&u, &format!("/fhir/{t}/{id}/_history/{}", vid + 1))
                .await;
            assert_eq!(r.status, 404, "{what}: {t}/{id} has no version past {vid}");
            if t == "Patient" && seeded.contains(id) {
                let changed = s.updated.contains(id) || s.deleted.contains(id);
                if changed {
                    applied_votes.insert(Some(vid == 2 + bump));
                    assert!(
                        vid == 1 + bump || vid == 2 + bump,
                        "{what}: {t}/{id} at version {vid}"
                    );
                } else {
                    assert_eq!(vid, 1 + bump, "{what}: {t}/{id}");
                }
                if s.deleted.contains(id) && vid == 2 && bump == 0 {
                    assert_eq!(e["request"]["method"], "DELETE");
                }
            }
        }
    }
    applied_votes.remove(&None);
    assert_eq!(
        applied_votes.len(),
        1,
        "{what}: part of the write is visible: {applied_votes:?}"
    );
    let applied = applied_votes.into_iter().next().unwrap().unwrap();
    // The _id and _lastUpdated indexes show exactly the live resources' current versions.
    let scope = scope_for(tenant).await;
    let store = Store::new(&*f.table, &scope, &SearchExtractor, StoreOptions::default());
    for t in ["Patient", "Observation"] {
        let rt = ResourceType::parse(t).unwrap();
        let want: BTreeSet<(String, String)> = live
            .iter()
            .filter(|((lt, _), _)| lt == t)
            .map(|((_, id), ts)| (id.clone(), ts.clone()))
            .collect();
        let ids: BTreeSet<(String, String)> = store
            .index_entries(rt, "_id", false)
            .await
            .unwrap()
            .into_iter()
            .map(|(v, id)| (v, id.to_string()))
            .collect();
        let want_ids: BTreeSet<(String, String)> = want
            .iter()
            .map(|(id, _)| (id.clone(), id.clone()))
            .collect();
        assert_eq!(ids, want_ids, "{what}: {t} _id index");
        let lu: BTreeSet<(String, String)> = store
            .index_entries(rt, "_lastUpdated", true)
            .await
            .unwrap()
            .into_iter()
            .map(|(v, id): (String, ResourceId)| (id.to_string(), v))
            .collect();
        assert_eq!(lu, want, "{what}: {t} _lastUpdated index");
    }
    applied
}

async fn seed(f: &Fhir, tenant: &str, ids: &[String]) {
    if ids.is_empty() {
        return;
    }
    let u = tenant_user("seeder", tenant);
    let entries: Vec<Value> = ids
        .iter()
        .map(|id| json!({"request": {"method": "PUT", "url": format!("Patient/{id}")}, "resource": patient(Some(id), "Seed")}))
        .collect();
    let r = f
        .json(
            &u,
            "POST",
            "/fhir",
            &[],
            &json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}),
        )
        .await;
    assert_eq!(r.status, 200, "seed: {}", r.text);
}

async fn attempt(f: &Fhir, tenant: &str, s: &Scenario) -> FhirResp {
    let u = tenant_user("writer", tenant);
    let body = s.body.as_ref().map(|b| serde_json::to_vec(b).unwrap());
    f.send(Some(&u), s.method, s.path, &[], body.as_deref())
        .await
}

/// The next writer of every seeded resource succeeds, and the tenant is consistent after.
async fn next_writer(f: &Fhir, tenant: &str, s: &Scenario, what: &str) {
    let u = tenant_user("next", tenant);
    for id in &s.seed {
        let r = f
            .json(
                &u,
                "PUT",
                &format!("/fhir/Patient/{id}"),
                &[],
                &patient(Some(id), "Next"),
            )
            .await;
        assert!(
            r.status == 200 || r.status == 201,
            "{what}: next writer of Patient/{id}: {}",
            r.text
        );
    }
}

/// The FHIR function on a fresh backend behind a fault-injecting table. A writer that dies
/// leaves its transaction pending; with no lease the next reader and writer treat it as dead at
/// once.
async fn faulty_fhir(moto: bool) -> (Fhir, Arc<Faulty>) {
    let backend = if moto {
        Backend::moto().await
    } else {
        Backend::embedded()
    };
    let faulty = Arc::new(Faulty::new(backend.table.clone()));
    let mut f = Fhir::on_table(faulty.clone(), backend, TenantConfig::default());
    f.set_store_options(StoreOptions {
        lease: Duration::ZERO,
    });
    (f, faulty)
}

/// Every scenario, failing each of its storage calls in turn (`modes`: before the call reaches
/// the backend, and/or after it was applied), each run on a fresh backend.
async fn faults_on(moto: bool, modes: &[bool]) {
    for s in scenarios() {
        // Count the calls of a clean run.
        let (f, faulty) = faulty_fhir(moto).await;
        let name = f.backend.name;
        seed(&f, "t1", &s.seed).await;
        faulty.arm(0, false);
        let r = attempt(&f, "t1", &s).await;
        assert!(r.status < 300, "{name} {}: {}", s.name, r.text);
        let calls = faulty.calls();
        assert!(check(&f, "t1", &s, &format!("{name} {} clean", s.name), 0).await);
        for &after in modes {
            for n in 1..=calls {
                let (f, faulty) = faulty_fhir(moto).await;
                let what = format!(
                    "{name} {} failing call {n}/{calls}{}",
                    s.name,
                    if after { " after applying it" } else { "" }
                );
                seed(&f, "t1", &s.seed).await;
                faulty.arm(n, after);
                let r = attempt(&f, "t1", &s).await;
                faulty.arm(0, false);
                assert!(
                    r.status < 300 || r.status == 503 || r.status == 409,
                    "{what}: {} {}",
                    r.status,
                    r.text
                );
                let applied = check(&f, "t1", &s, &what, 0).await;
                if r.status < 300 {
                    assert!(applied, "{what}: answered {} but not applied", r.status);
                }
                next_writer(&f, "t1", &s, &what).await;
                let still = check(&f, "t1", &s, &format!("{what}, then the next writer"), 1).await;
                assert_eq!(
                    still, applied,
                    "{what}: the next writer changed what was applied"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_storage_failure_leaves_all_or_nothing_embedded() {
    faults_on(false, &[false, true]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_storage_failure_leaves_all_or_nothing_moto() {
    faults_on(true, &[false]).await;
}

/// A transaction whose writer died while its record's lease runs: readers see the state
/// before it, writers of its resources get 409, and once the lease ends the next writer
/// rolls it back and proceeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_transaction_blocks_writers_only_until_its_lease_ends() {
    for backend in [Backend::embedded(), Backend::moto().await] {
        let name = backend.name;
        let faulty = Arc::new(Faulty::new(backend.table.clone()));
        let mut f = Fhir::on_table(faulty.clone(), backend, TenantConfig::default());
        // Long enough for the writer to stage its heads (moto is slow).
        let lease = Duration::from_secs(if name == "moto" { 15 } else { 2 });
        f.set_store_options(StoreOptions { lease });
        let ids: Vec<String> = (0..5).map(|i| format!("p{i}")).collect();
        seed(&f, "t1", &ids).await;
        let s = Scenario {
            name: "large",
            seed: ids.clone(),
            method: "POST",
            path: "/fhir",
            body: Some(transaction(&ids, 200)),
            updated: ids.clone(),
            deleted: vec![],
            created: BTreeMap::from([("Observation", 199), ("Patient", 1)]),
        };
        // Calls: batch_get x3 (205 heads), batch_write (pre-writes), put (record), transact
        // x3 (staging), put (commit point). Fail the commit point: the writer is gone with
        // its record pending.
        faulty.arm(9, false);
        let r = attempt(&f, "t1", &s).await;
        faulty.arm(0, false);
        assert_eq!(r.status, 503, "{name}: {}", r.text);
        let u = tenant_user("next", "t1");
        let r = f
            .json(
                &u,
                "PUT",
                "/fhir/Patient/p0",
                &[],
                &patient(Some("p0"), "Blocked"),
            )
            .await;
        assert_eq!(r.status, 409, "{name}: {}", r.text);
        assert!(
            r.diagnostics().contains("transaction in progress"),
            "{}",
            r.diagnostics()
        );
        let r = f.get(&u, "/fhir/Patient/p0").await;
        assert_eq!(
            r.body["name"][0]["family"], "Seed",
            "{name}: readers see the state before"
        );
        tokio::time::sleep(lease + Duration::from_millis(100)).await;
        assert!(
            !check(&f, "t1", &s, name, 0).await,
            "{name}: nothing visible"
        );
        next_writer(&f, "t1", &s, name).await;
        assert!(!check(&f, "t1", &s, name, 1).await);
    }
}

/// 16 writers x 50 updates of one resource.
async fn contend(f: &Fhir, if_match: bool) -> (Vec<u64>, usize) {
    let u = tenant_user("w", "t1");
    let r = f
        .json(
            &u,
            "PUT",
            "/fhir/Patient/hot",
            &[],
            &patient(Some("hot"), "w-init"),
        )
        .await;
    assert!(r.status == 201 || r.status == 200, "{}", r.text);
    let mut tasks = Vec::new();
    for w in 0..16 {
        let f = f.client.clone();
        tasks.push(tokio::spawn(async move {
            let u = tenant_user(&format!("w{w}"), "t1");
            let mut won = Vec::new();
            let mut lost = 0;
            for i in 0..50 {
                let mut headers = Vec::new();
                let etag;
                if if_match {
                    let r = f.get(&u, "/fhir/Patient/hot").await;
                    assert_eq!(r.status, 200, "{}", r.text);
                    etag = r.header("etag").unwrap().to_owned();
                    headers.push(("if-match", etag.as_str()));
                }
                let r = f
                    .json(
                        &u,
                        "PUT",
                        "/fhir/Patient/hot",
                        &headers,
                        &patient(Some("hot"), &format!("w{w}-{i}")),
                    )
                    .await;
                match r.status {
                    200 => won.push((
                        r.body["meta"]["versionId"]
                            .as_str()
                            .unwrap()
                            .parse::<u64>()
                            .unwrap(),
                        format!("w{w}-{i}"),
                    )),
                    412 | 409 => lost += 1,
                    s => panic!("unexpected {s}: {}", r.text),
                }
            }
            (won, lost)
        }));
    }
    let mut won = Vec::new();
    let mut lost = 0;
    for t in tasks {
        let (w, l) = t.await.unwrap();
        won.extend(w);
        lost += l;
    }
    // Every success is a distinct version, holding what its writer sent.
    let hist = type_history(f, "t1", "Patient").await;
    let by_vid: BTreeMap<u64, String> = hist
        .iter()
        .map(|e| {
            let v = e["resource"]["meta"]["versionId"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            (
                v,
                e["resource"]["name"][0]["family"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    for (vid, family) in &won {
        assert_eq!(by_vid.get(vid), Some(family), "version {vid}");
    }
    let mut vids: Vec<u64> = won.iter().map(|(v, _)| *v).collect();
    vids.sort();
    (vids, lost)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_updates_lose_nothing() {
    for backend in [Backend::embedded(), Backend::moto().await] {
        let name = backend.name;
        let f = Fhir::new(backend);
        let (vids, lost) = contend(&f, true).await;
        assert_eq!(vids.len() + lost, 800, "{name}");
        assert!(!vids.is_empty());
        let expected: Vec<u64> = (2..2 + vids.len() as u64).collect();
        assert_eq!(
            vids, expected,
            "{name}: successes are distinct contiguous versions"
        );
        let hist = type_history(&f, "t1", "Patient").await;
        assert_eq!(
            hist.len(),
            1 + vids.len(),
            "{name}: history holds every success"
        );
    }
    for backend in [Backend::embedded(), Backend::moto().await] {
        let name = backend.name;
        let f = Fhir::new(backend);
        let (vids, _lost) = contend(&f, false).await;
        let hist = type_history(&f, "t1", "Patient").await;
        assert_eq!(
            hist.len(),
            1 + vids.len(),
            "{name}: history holds every successful update"
        );
        let distinct: BTreeSet<u64> = vids.iter().copied().collect();
        assert_eq!(distinct.len(), vids.len(), "{name}");
    }
}
