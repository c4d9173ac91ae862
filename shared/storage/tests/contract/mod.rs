//! The storage contract: what every [`Table`] and [`Blobs`] backend must do, written once and
//! run against each backend (`tests/embedded.rs`: redb and a local folder; `tests/moto.rs`:
//! DynamoDB and S3 on moto).
//!
//! Every function takes a unique key namespace from a fresh run id, so one table or bucket can
//! host any number of runs, in parallel. Functions panic on a contract violation.
//!
//! - [`all_table`] runs every table function, [`all_blobs`] every blob function except
//!   [`presigned_round_trip`], which needs a server answering the presigned URLs over HTTP.

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use std::ops::Bound;

use storage::{
    Attrs, BATCH_WRITE_CHUNK, BatchOp, BlobMeta, Blobs, Condition, GlobalTable, Item, Key,
    MAX_BATCH_GET, MAX_ITEM_BYTES, MAX_QUERY_LIMIT, MAX_TRANSACTION_BYTES, MAX_TRANSACTION_OPS,
    Page, PageTokens, Query, ScopedBlobs, ScopedTable, SkRange, StorageError, Table, TenantScope,
    WriteOp, item_size,
};
use tenant_context::{
    AdminScope, Claims, Credentials, Permission, RequestTarget, TenantConfig, TenantContext,
};

// ---------------------------------------------------------------------------------------------
// Helpers

macro_rules! assert_err {
    ($e:expr, $p:pat) => {{
        let r = $e;
        assert!(
            matches!(r, Err($p)),
            "{}: expected Err({}), got {:?}",
            stringify!($e),
            stringify!($p),
            r
        );
    }};
}

/// A fresh namespace for one call (12 hex digits).
pub fn run_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

pub fn attrs(v: Value) -> Attrs {
    match v {
        Value::Object(m) => m,
        other => panic!("attributes must be a JSON object, not {other}"),
    }
}

pub fn item(pk: &str, sk: &str, v: Value) -> Item {
    Item::new(Key::new(pk, sk), attrs(v))
}

fn put_op(item: Item) -> WriteOp {
    WriteOp::Put {
        item,
        cond: Condition::None,
    }
}

fn eq(attr: &str, value: Value) -> Condition {
    Condition::Equals {
        attr: attr.to_owned(),
        value,
    }
}

/// Writes `items` unconditionally, in transactions of at most 100.
pub async fn put_all(t: &dyn Table, items: Vec<Item>) {
    let mut ops: Vec<WriteOp> = items.into_iter().map(put_op).collect();
    while !ops.is_empty() {
        let rest = ops.split_off(ops.len().min(MAX_TRANSACTION_OPS));
        t.transact(ops).await.expect("transact of puts");
        ops = rest;
    }
}

fn sks(items: &[Item]) -> Vec<String> {
    items.iter().map(|i| i.key.sk.clone()).collect()
}

fn q(pk: &str, sk: SkRange, limit: usize, forward: bool) -> Query {
    Query {
        forward,
        ..Query::new(pk, sk, limit)
    }
}

fn check_page(query: &Query, page: &Page) {
    assert!(
        page.items.len() <= query.limit,
        "page of {} items for limit {}",
        page.items.len(),
        query.limit
    );
    if let Some(last) = &page.last_key {
        assert_eq!(
            Some(last),
            page.items.last().map(|i| &i.key),
            "last_key must be the key of the last item returned"
        );
    }
    for i in &page.items {
        assert_eq!(
            i.key.pk, query.pk,
            "query returned an item of another partition"
        );
    }
}

/// Every item of `query`, read page by page; also the number of pages.
pub async fn query_all(t: &dyn Table, query: &Query) -> (Vec<Item>, usize) {
    let mut query = query.clone();
    let mut items = Vec::new();
    let mut pages = 0;
    loop {
        let page = t.query(&query).await.expect("query");
        check_page(&query, &page);
        pages += 1;
        assert!(pages < 10_000, "paging does not end");
        items.extend(page.items);
        match page.last_key {
            Some(k) => query.start_after = Some(k),
            None => return (items, pages),
        }
    }
}

async fn query_sks(t: &dyn Table, pk: &str, sk: SkRange, forward: bool) -> Vec<String> {
    let query = q(pk, sk, MAX_QUERY_LIMIT, forward);
    let page = t.query(&query).await.expect("query");
    check_page(&query, &page);
    assert_eq!(page.last_key, None, "all items fit one page");
    sks(&page.items)
}

fn reversed(v: &[&str]) -> Vec<String> {
    v.iter().rev().map(|s| s.to_string()).collect()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// A [`Table`] that counts the calls reaching it, to prove a refused call sent nothing.
pub struct Spy<'a> {
    inner: &'a dyn Table,
    calls: AtomicUsize,
}

impl<'a> Spy<'a> {
    pub fn new(inner: &'a dyn Table) -> Self {
        Spy {
            inner,
            calls: AtomicUsize::new(0),
        }
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn hit(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl Table for Spy<'_> {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StorageError> {
        self.hit();
        self.inner.get(key).await
    }
    async fn batch_get(&self, keys: &[Key]) -> Result<Vec<Item>, StorageError> {
        self.hit();
        self.inner.batch_get(keys).await
    }
    async fn put(&self, item: Item, cond: Condition) -> Result<(), StorageError> {
        self.hit();
        self.inner.put(item, cond).await
    }
    async fn delete(&self, key: &Key, cond: Condition) -> Result<(), StorageError> {
        self.hit();
        self.inner.delete(key, cond).await
    }
    async fn query(&self, query: &Query) -> Result<Page, StorageError> {
        self.hit();
        self.inner.query(query).await
    }
    async fn transact(&self, ops: Vec<WriteOp>) -> Result<(), StorageError> {
        self.hit();
        self.inner.transact(ops).await
    }
    async fn batch_write(&self, ops: Vec<BatchOp>) -> Result<(), StorageError> {
        self.hit();
        self.inner.batch_write(ops).await
    }
}

fn claims(v: Value) -> Claims {
    Claims::new(attrs(v))
}

/// A real [`TenantScope`] on `site` (READ WRITE DELETE), made by the tenant library from
/// authorizer claims of a user in the group `site`.
pub async fn scope_for(site: &str) -> TenantScope {
    scope_of_group(site).await
}

/// A real [`TenantScope`] of a user in the one group `group` (e.g. `acme_govern`).
pub async fn scope_of_group(group: &str) -> TenantScope {
    let ctx = TenantContext::new(TenantConfig::default());
    let creds = Credentials {
        authorizer_claims: Some(claims(
            json!({"cognito:username": "u", "cognito:groups": [group]}),
        )),
        ..Default::default()
    };
    let principal = ctx.authenticate(creds).await.expect("authenticate");
    ctx.authorize(&principal, RequestTarget::default(), Permission::Read)
        .await
        .expect("authorize")
}

/// A real [`AdminScope`] (a user in the `Admins` group).
pub async fn admin_scope() -> AdminScope {
    let ctx = TenantContext::new(TenantConfig::default());
    let creds = Credentials {
        authorizer_claims: Some(claims(
            json!({"cognito:username": "admin", "cognito:groups": ["Admins"]}),
        )),
        ..Default::default()
    };
    let principal = ctx.authenticate(creds).await.expect("authenticate");
    ctx.authorize_admin(&principal)
        .await
        .expect("authorize_admin")
}

// ---------------------------------------------------------------------------------------------
// Table

/// Runs every table function.
pub async fn all_table(t: &dyn Table) {
    get_put_delete(t).await;
    attribute_types(t).await;
    conditional_put(t).await;
    conditional_delete(t).await;
    batch_get(t).await;
    query_ranges(t).await;
    query_sort_order(t).await;
    query_limit_and_last_key(t).await;
    query_paging(t).await;
    query_invalid(t).await;
    prefix_isolation(t).await;
    transactions(t).await;
    transaction_limits(t).await;
    invalid_keys(t).await;
    reserved_attributes(t).await;
    scoped_table(t).await;
    global_table(t).await;
    page_tokens(t).await;
    exclusive_ranges(t).await;
    bodies(t).await;
    batch_writes(t).await;
    scoped_batch_writes(t).await;
    global_site_items(t).await;
    size_limits(t).await;
}

/// get of a missing item, put, put replacing, delete, delete of a missing item.
pub async fn get_put_delete(t: &dyn Table) {
    let pk = format!("{}#basic", run_id());
    let k = Key::new(&pk, "one");
    assert_eq!(t.get(&k).await, Ok(None));

    let first = item(&pk, "one", json!({"a": "1", "b": 2}));
    t.put(first.clone(), Condition::None).await.unwrap();
    assert_eq!(t.get(&k).await, Ok(Some(first)));

    // A put replaces the whole item: attributes it does not carry are gone.
    let second = item(&pk, "one", json!({"c": true}));
    t.put(second.clone(), Condition::None).await.unwrap();
    assert_eq!(t.get(&k).await, Ok(Some(second)));

    // An item without attributes.
    let bare = item(&pk, "bare", json!({}));
    t.put(bare.clone(), Condition::None).await.unwrap();
    assert_eq!(t.get(&bare.key).await, Ok(Some(bare.clone())));

    // Another sort key or partition is another item.
    assert_eq!(t.get(&Key::new(&pk, "on")).await, Ok(None));
    assert_eq!(t.get(&Key::new(&pk, "one ")).await, Ok(None));
    assert_eq!(t.get(&Key::new(format!("{pk}x"), "one")).await, Ok(None));

    t.delete(&k, Condition::None).await.unwrap();
    assert_eq!(t.get(&k).await, Ok(None));
    // Deleting what is not there is fine.
    t.delete(&k, Condition::None).await.unwrap();
    assert_eq!(t.get(&bare.key).await, Ok(Some(bare)));
}

/// Attributes of every JSON type round-trip through put/get, query and batch_get.
pub async fn attribute_types(t: &dyn Table) {
    let pk = format!("{}#types", run_id());
    let v = json!({
        "string": "text",
        "empty_string": "",
        "unicode": "é € 😀 \u{7f} \u{1} tab\tnewline\n",
        "zero": 0,
        "negative": -42,
        "i64_max": i64::MAX,
        "i64_min": i64::MIN,
        "u64_max": u64::MAX,
        "float": 1.5,
        "negative_float": -2.25,
        "pi": std::f64::consts::PI,
        "tenth": 0.1,
        "true": true,
        "false": false,
        "null": null,
        "list": [1, "a", null, true, 2.5, [], {}, ["nested"], {"k": [1, 2]}, 1],
        "empty_list": [],
        "empty_map": {},
        "map": {"a": {"b": {"c": "deep"}}, "n": 7, "x.y": "dot", "#h": 1, ":c": 2, "s p": null},
        "a.b": "dotted name",
        "#hash": "h",
        ":colon": "c",
        "with space": "s",
        "ü": "umlaut",
        "big": "x".repeat(100_000),
    });
    let it = item(&pk, "all", v.clone());
    t.put(it.clone(), Condition::None).await.unwrap();
    let got = t.get(&it.key).await.unwrap().expect("item");
    for (name, value) in attrs(v) {
        assert_eq!(
            got.get(&name),
            Some(&value),
            "attribute {name:?} did not round-trip"
        );
    }
    assert_eq!(got, it);
    assert_eq!(
        t.batch_get(std::slice::from_ref(&it.key)).await.unwrap(),
        vec![it.clone()]
    );
    let page = t.query(&Query::new(&pk, SkRange::All, 10)).await.unwrap();
    assert_eq!(page.items, vec![it]);
}

/// Each [`Condition`] on put; a failed put changes nothing.
pub async fn conditional_put(t: &dyn Table) {
    let pk = format!("{}#cput", run_id());
    let k = Key::new(&pk, "c");
    let missing = Key::new(&pk, "missing");
    let with_v = |v: Value| Item::new(k.clone(), attrs(json!({"v": v, "#ver.x": "e1"})));

    // NotExists: creates, then refuses.
    t.put(with_v(json!(1)), Condition::NotExists).await.unwrap();
    assert_err!(
        t.put(with_v(json!(2)), Condition::NotExists).await,
        StorageError::ConditionFailed
    );
    assert_eq!(t.get(&k).await.unwrap(), Some(with_v(json!(1))));

    // Exists: replaces an existing item, refuses to create one.
    t.put(with_v(json!(3)), Condition::Exists).await.unwrap();
    assert_eq!(t.get(&k).await.unwrap(), Some(with_v(json!(3))));
    let ghost = Item::new(missing.clone(), attrs(json!({"v": 1})));
    assert_err!(
        t.put(ghost.clone(), Condition::Exists).await,
        StorageError::ConditionFailed
    );
    assert_eq!(t.get(&missing).await, Ok(None));

    // Equals: the attribute must hold exactly that value.
    t.put(with_v(json!(4)), eq("v", json!(3))).await.unwrap();
    assert_eq!(t.get(&k).await.unwrap(), Some(with_v(json!(4))));
    assert_err!(
        t.put(with_v(json!(5)), eq("v", json!(3))).await,
        StorageError::ConditionFailed
    );
    assert_err!(
        t.put(with_v(json!(5)), eq("v", json!("4"))).await,
        StorageError::ConditionFailed
    );
    assert_err!(
        t.put(with_v(json!(5)), eq("nope", json!(4))).await,
        StorageError::ConditionFailed
    );
    assert_eq!(t.get(&k).await.unwrap(), Some(with_v(json!(4))));
    // ... on an item that does not exist, never holds.
    assert_err!(
        t.put(ghost.clone(), eq("v", json!(1))).await,
        StorageError::ConditionFailed
    );
    assert_eq!(t.get(&missing).await, Ok(None));
    // Attribute names with expression syntax in them are names, not syntax.
    t.put(with_v(json!("s")), eq("#ver.x", json!("e1")))
        .await
        .unwrap();
    assert_err!(
        t.put(with_v(json!(6)), eq("#ver.x", json!("e2"))).await,
        StorageError::ConditionFailed
    );
    assert_eq!(t.get(&k).await.unwrap(), Some(with_v(json!("s"))));
    // String and boolean values.
    t.put(with_v(json!(true)), eq("v", json!("s")))
        .await
        .unwrap();
    t.put(with_v(json!(7)), eq("v", json!(true))).await.unwrap();
    assert_err!(
        t.put(with_v(json!(8)), eq("v", json!(false))).await,
        StorageError::ConditionFailed
    );

    // None: unconditional.
    t.put(with_v(json!(9)), Condition::None).await.unwrap();
    assert_eq!(t.get(&k).await.unwrap(), Some(with_v(json!(9))));
}

/// Each [`Condition`] on delete; a failed delete changes nothing.
pub async fn conditional_delete(t: &dyn Table) {
    let pk = format!("{}#cdel", run_id());
    let k = Key::new(&pk, "d");
    let missing = Key::new(&pk, "missing");
    let it = item(&pk, "d", json!({"v": 1}));
    t.put(it.clone(), Condition::None).await.unwrap();

    // Exists.
    assert_err!(
        t.delete(&missing, Condition::Exists).await,
        StorageError::ConditionFailed
    );
    // NotExists: only a missing item "matches".
    assert_err!(
        t.delete(&k, Condition::NotExists).await,
        StorageError::ConditionFailed
    );
    t.delete(&missing, Condition::NotExists).await.unwrap();
    // Equals.
    assert_err!(
        t.delete(&k, eq("v", json!(2))).await,
        StorageError::ConditionFailed
    );
    assert_err!(
        t.delete(&k, eq("w", json!(1))).await,
        StorageError::ConditionFailed
    );
    assert_err!(
        t.delete(&missing, eq("v", json!(1))).await,
        StorageError::ConditionFailed
    );
    assert_eq!(t.get(&k).await.unwrap(), Some(it.clone()));
    t.delete(&k, eq("v", json!(1))).await.unwrap();
    assert_eq!(t.get(&k).await, Ok(None));

    t.put(it.clone(), Condition::None).await.unwrap();
    t.delete(&k, Condition::Exists).await.unwrap();
    assert_eq!(t.get(&k).await, Ok(None));
    assert_err!(
        t.delete(&k, Condition::Exists).await,
        StorageError::ConditionFailed
    );
    t.delete(&k, Condition::None).await.unwrap();
}

/// batch_get: order of the keys, missing items left out, limits.
pub async fn batch_get(t: &dyn Table) {
    let run = run_id();
    let (p1, p2) = (format!("{run}#bg1"), format!("{run}#bg2"));
    let items: Vec<Item> = (1..=4)
        .map(|i| item(&p1, &format!("s{i}"), json!({"i": i})))
        .chain([item(&p2, "s1", json!({"other": true}))])
        .collect();
    put_all(t, items.clone()).await;

    let keys = vec![
        items[2].key.clone(),
        Key::new(&p1, "missing"),
        items[0].key.clone(),
        items[4].key.clone(),
        Key::new(&p2, "s2"),
        items[1].key.clone(),
    ];
    let got = t.batch_get(&keys).await.unwrap();
    assert_eq!(
        got,
        vec![
            items[2].clone(),
            items[0].clone(),
            items[4].clone(),
            items[1].clone()
        ]
    );

    assert_eq!(t.batch_get(&[]).await, Ok(vec![]));
    assert_eq!(t.batch_get(&[Key::new(&p1, "missing")]).await, Ok(vec![]));

    // The most keys one call takes, in reverse order of writing.
    let p3 = format!("{run}#bg3");
    let many: Vec<Item> = (0..MAX_BATCH_GET)
        .map(|i| item(&p3, &format!("{i:03}"), json!({"i": i})))
        .collect();
    put_all(t, many.clone()).await;
    let keys: Vec<Key> = many.iter().rev().map(|i| i.key.clone()).collect();
    let got = t.batch_get(&keys).await.unwrap();
    assert_eq!(got, many.iter().rev().cloned().collect::<Vec<_>>());

    let mut too_many = keys.clone();
    too_many.push(Key::new(&p3, "one more"));
    assert_err!(
        t.batch_get(&too_many).await,
        StorageError::InvalidRequest(_)
    );
    let dup = vec![
        items[0].key.clone(),
        items[1].key.clone(),
        items[0].key.clone(),
    ];
    assert_err!(t.batch_get(&dup).await, StorageError::InvalidRequest(_));
}

/// All, BeginsWith and Between, ascending and descending.
pub async fn query_ranges(t: &dyn Table) {
    let pk = format!("{}#ranges", run_id());
    let all = ["a", "a#1", "a#10", "a#2", "ab", "b", "b#1", "c"];
    put_all(
        t,
        all.iter().map(|s| item(&pk, s, json!({"sk": s}))).collect(),
    )
    .await;

    let cases: Vec<(SkRange, Vec<&str>)> = vec![
        (SkRange::All, all.to_vec()),
        (SkRange::BeginsWith(String::new()), all.to_vec()),
        (SkRange::BeginsWith("a#".into()), vec!["a#1", "a#10", "a#2"]),
        (
            SkRange::BeginsWith("a".into()),
            vec!["a", "a#1", "a#10", "a#2", "ab"],
        ),
        (SkRange::BeginsWith("a#1".into()), vec!["a#1", "a#10"]),
        (SkRange::BeginsWith("c".into()), vec!["c"]),
        (SkRange::BeginsWith("zz".into()), vec![]),
        (SkRange::BeginsWith("a#3".into()), vec![]),
        (
            SkRange::Between("a#1".into(), "b".into()),
            vec!["a#1", "a#10", "a#2", "ab", "b"],
        ),
        (SkRange::Between("a#11".into(), "a#3".into()), vec!["a#2"]),
        (SkRange::Between("b".into(), "b".into()), vec!["b"]),
        (SkRange::Between("0".into(), "9".into()), vec![]),
        (
            SkRange::Between("b#1".into(), "zzz".into()),
            vec!["b#1", "c"],
        ),
        (SkRange::Between("\u{1}".into(), "a".into()), vec!["a"]),
    ];
    for (range, want) in cases {
        let asc = query_sks(t, &pk, range.clone(), true).await;
        assert_eq!(asc, strings(&want), "{range:?} ascending");
        let desc = query_sks(t, &pk, range.clone(), false).await;
        assert_eq!(desc, reversed(&want), "{range:?} descending");
    }

    // Items come back with their attributes.
    let page = t
        .query(&Query::new(&pk, SkRange::BeginsWith("c".into()), 5))
        .await
        .unwrap();
    assert_eq!(page.items, vec![item(&pk, "c", json!({"sk": "c"}))]);

    // An empty or unknown partition.
    assert_eq!(
        t.query(&Query::new(format!("{pk}-none"), SkRange::All, 5))
            .await,
        Ok(Page::default())
    );
}

/// Sort keys come back in UTF-8 byte order (DynamoDB's order), whatever their characters.
pub async fn query_sort_order(t: &dyn Table) {
    let pk = format!("{}#order", run_id());
    let mut all = vec![
        "Z",
        "a",
        "z",
        "~",
        "é",
        "€",
        "😀",
        "\u{7f}",
        "0",
        "-",
        "A#b",
        "A",
        "a b",
        "\u{1}",
        "\u{10FFFF}",
        "ÿ",
        "a\u{1}",
        "aa",
        "a~",
        "#",
        "##",
        "A#",
    ];
    put_all(t, all.iter().map(|s| item(&pk, s, json!({}))).collect()).await;
    all.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    assert_eq!(query_sks(t, &pk, SkRange::All, true).await, strings(&all));
    assert_eq!(query_sks(t, &pk, SkRange::All, false).await, reversed(&all));
    let between = SkRange::Between("\u{1}".into(), "\u{10FFFF}".into());
    assert_eq!(query_sks(t, &pk, between, true).await, strings(&all));
    let high: Vec<&str> = all
        .iter()
        .copied()
        .filter(|s| s.as_bytes() >= "é".as_bytes())
        .collect();
    let between = SkRange::Between("é".into(), "\u{10FFFF}".into());
    assert_eq!(query_sks(t, &pk, between, false).await, reversed(&high));
    let a: Vec<&str> = all.iter().copied().filter(|s| s.starts_with('a')).collect();
    assert_eq!(
        query_sks(t, &pk, SkRange::BeginsWith("a".into()), true).await,
        strings(&a)
    );
}

/// `limit` and `last_key`: present exactly when more items match.
pub async fn query_limit_and_last_key(t: &dyn Table) {
    let pk = format!("{}#limit", run_id());
    let all = ["o#1", "p#1", "p#2", "p#3", "q#1"];
    put_all(t, all.iter().map(|s| item(&pk, s, json!({}))).collect()).await;
    let key = |sk: &str| Key::new(&pk, sk);
    let run = |range: SkRange, limit: usize, forward: bool, after: Option<&str>| {
        let mut query = q(&pk, range, limit, forward);
        query.start_after = after.map(key);
        async move {
            let page = t.query(&query).await.unwrap();
            check_page(&query, &page);
            (sks(&page.items), page.last_key.map(|k| k.sk))
        }
    };
    let some = |s: &str| Some(s.to_owned());

    // Exactly `limit` items match: no last_key.
    assert_eq!(
        run(SkRange::All, 5, true, None).await,
        (strings(&all), None)
    );
    assert_eq!(
        run(SkRange::All, 5, false, None).await,
        (reversed(&all), None)
    );
    assert_eq!(
        run(SkRange::All, 6, true, None).await,
        (strings(&all), None)
    );
    // Fewer than match: last_key is the last item's key.
    assert_eq!(
        run(SkRange::All, 4, true, None).await,
        (strings(&all[..4]), some("p#3"))
    );
    assert_eq!(
        run(SkRange::All, 4, false, None).await,
        (reversed(&all[1..]), some("p#1"))
    );
    assert_eq!(
        run(SkRange::All, 1, true, None).await,
        (strings(&["o#1"]), some("o#1"))
    );
    // The range ends the query, not the partition: items outside it do not count as more.
    let p = || SkRange::BeginsWith("p#".into());
    let p_all = ["p#1", "p#2", "p#3"];
    assert_eq!(run(p(), 3, true, None).await, (strings(&p_all), None));
    assert_eq!(run(p(), 3, false, None).await, (reversed(&p_all), None));
    assert_eq!(
        run(p(), 2, true, None).await,
        (strings(&p_all[..2]), some("p#2"))
    );
    assert_eq!(
        run(p(), 2, false, None).await,
        (reversed(&p_all[1..]), some("p#2"))
    );
    let b = || SkRange::Between("p#1".into(), "p#3".into());
    assert_eq!(run(b(), 3, true, None).await, (strings(&p_all), None));
    assert_eq!(run(b(), 3, false, None).await, (reversed(&p_all), None));
    // start_after continues strictly after the key, in the query's direction.
    assert_eq!(
        run(SkRange::All, 1, true, Some("p#3")).await,
        (strings(&["q#1"]), None)
    );
    assert_eq!(
        run(SkRange::All, 10, true, Some("q#1")).await,
        (vec![], None)
    );
    assert_eq!(
        run(SkRange::All, 1, false, Some("p#1")).await,
        (strings(&["o#1"]), None)
    );
    assert_eq!(
        run(SkRange::All, 10, false, Some("o#1")).await,
        (vec![], None)
    );
    assert_eq!(
        run(p(), 1, true, Some("p#1")).await,
        (strings(&["p#2"]), some("p#2"))
    );
    assert_eq!(
        run(p(), 5, true, Some("p#2")).await,
        (strings(&["p#3"]), None)
    );
    assert_eq!(
        run(p(), 5, false, Some("p#2")).await,
        (strings(&["p#1"]), None)
    );
    assert_eq!(
        run(b(), 1, false, Some("p#3")).await,
        (strings(&["p#2"]), some("p#2"))
    );
    // start_after need not be an existing item.
    assert_eq!(
        run(SkRange::All, 2, true, Some("p#15")).await,
        (strings(&["p#2", "p#3"]), some("p#3"))
    );
    assert_eq!(
        run(SkRange::All, 9, false, Some("p#15")).await,
        (strings(&["p#1", "o#1"]), None)
    );
    // The largest limit.
    assert_eq!(
        run(SkRange::All, MAX_QUERY_LIMIT, true, None).await,
        (strings(&all), None)
    );
}

/// Paging across several pages, both directions: every item exactly once, in order.
pub async fn query_paging(t: &dyn Table) {
    let pk = format!("{}#paging", run_id());
    let numbered: Vec<String> = (0..25).map(|i| format!("item#{i:02}")).collect();
    let mut all = numbered.clone();
    all.insert(0, "aaa".into());
    all.push("zzz".into());
    put_all(
        t,
        all.iter().map(|s| item(&pk, s, json!({"sk": s}))).collect(),
    )
    .await;

    let cases: Vec<(SkRange, usize, Vec<String>)> = vec![
        (SkRange::All, 7, all.clone()),
        (SkRange::All, 1, all.clone()),
        (SkRange::All, 27, all.clone()),
        (SkRange::BeginsWith("item#".into()), 7, numbered.clone()),
        (SkRange::BeginsWith("item#".into()), 5, numbered.clone()),
        (
            SkRange::Between("item#05".into(), "item#19".into()),
            4,
            numbered[5..20].to_vec(),
        ),
    ];
    for (range, limit, want) in cases {
        for forward in [true, false] {
            let query = q(&pk, range.clone(), limit, forward);
            let (items, pages) = query_all(t, &query).await;
            let mut want = want.clone();
            if !forward {
                want.reverse();
            }
            assert_eq!(
                sks(&items),
                want,
                "{range:?} limit {limit} forward {forward}"
            );
            assert!(
                pages >= want.len().div_ceil(limit),
                "{pages} pages of at most {limit} items for {} items",
                want.len()
            );
            for i in &items {
                assert_eq!(i.str("sk"), Some(i.key.sk.as_str()));
            }
        }
    }

    // Paging survives the deletion of the item a page ended on.
    let query = q(&pk, SkRange::BeginsWith("item#".into()), 3, true);
    let first = t.query(&query).await.unwrap();
    assert_eq!(sks(&first.items), numbered[..3].to_vec());
    let last = first.last_key.expect("more items");
    t.delete(&last, Condition::Exists).await.unwrap();
    let next = Query {
        start_after: Some(last),
        ..query
    };
    let second = t.query(&next).await.unwrap();
    assert_eq!(sks(&second.items), numbered[3..6].to_vec());
}

/// Queries the interface refuses.
pub async fn query_invalid(t: &dyn Table) {
    let pk = format!("{}#qinvalid", run_id());
    t.put(item(&pk, "s", json!({})), Condition::None)
        .await
        .unwrap();
    for limit in [0, MAX_QUERY_LIMIT + 1, usize::MAX] {
        assert_err!(
            t.query(&Query::new(&pk, SkRange::All, limit)).await,
            StorageError::InvalidRequest(_)
        );
    }
    // start_after in another partition.
    let mut query = Query::new(&pk, SkRange::All, 10);
    query.start_after = Some(Key::new(format!("{pk}x"), "s"));
    assert_err!(t.query(&query).await, StorageError::InvalidRequest(_));
    query.start_after = Some(Key::new("", "s"));
    assert_err!(t.query(&query).await, StorageError::InvalidKey(_));
    // Bad partition keys.
    for bad in ["", "p\0q"] {
        assert_err!(
            t.query(&Query::new(bad, SkRange::All, 10)).await,
            StorageError::InvalidKey(_)
        );
    }
    // A Between whose lower bound is above its upper bound.
    let inverted = SkRange::Between("b".into(), "a".into());
    assert_err!(
        t.query(&Query::new(&pk, inverted, 10)).await,
        StorageError::InvalidRequest(_)
    );
}

/// Partitions and sort-key prefixes do not leak into each other: `a#x` vs `ab#x`, `a#` vs `ab#`.
pub async fn prefix_isolation(t: &dyn Table) {
    let run = run_id();
    let pks: Vec<String> = ["a", "a#", "a#x", "ab", "ab#x", "a\u{1}", "a ", "A#x"]
        .iter()
        .map(|p| format!("{run}{p}"))
        .collect();
    let sks_each = ["#", "a", "a#", "a#1", "ab", "ab#1", "b"];
    let mut items = Vec::new();
    for pk in &pks {
        for sk in sks_each {
            items.push(item(pk, sk, json!({"pk": pk, "sk": sk})));
        }
    }
    put_all(t, items).await;
    for pk in &pks {
        for forward in [true, false] {
            let (got, _) = query_all(t, &q(pk, SkRange::All, 3, forward)).await;
            let mut want = strings(&sks_each);
            if !forward {
                want.reverse();
            }
            assert_eq!(sks(&got), want, "partition {pk:?}");
            for i in &got {
                assert_eq!(i.str("pk"), Some(pk.as_str()));
            }
        }
        let got = query_sks(t, pk, SkRange::BeginsWith("a#".into()), true).await;
        assert_eq!(got, strings(&["a#", "a#1"]), "BeginsWith a# in {pk:?}");
        let got = query_sks(t, pk, SkRange::BeginsWith("ab#".into()), false).await;
        assert_eq!(got, strings(&["ab#1"]));
        let got = query_sks(t, pk, SkRange::BeginsWith("#".into()), true).await;
        assert_eq!(got, strings(&["#"]));
        let got = query_sks(t, pk, SkRange::Between("a".into(), "a#1".into()), true).await;
        assert_eq!(got, strings(&["a", "a#", "a#1"]));
    }
    // A partition that is a prefix of others holds nothing of theirs.
    assert_eq!(
        query_sks(t, &run, SkRange::All, true).await,
        Vec::<String>::new()
    );
    assert_eq!(t.get(&Key::new(format!("{run}a"), "a#x")).await, Ok(None));
}

/// Transactions: all operations applied, or none when one condition fails.
pub async fn transactions(t: &dyn Table) {
    let run = run_id();
    let (pk, other) = (format!("{run}#tx"), format!("{run}#tx-other"));
    let k = |sk: &str| Key::new(&pk, sk);
    let v = |sk: &str, n: i64| item(&pk, sk, json!({"v": n}));
    put_all(t, vec![v("e1", 1), v("e2", 1), v("e3", 1)]).await;

    // Everything holds: everything is applied, across partitions.
    t.transact(vec![
        WriteOp::Put {
            item: v("n1", 1),
            cond: Condition::NotExists,
        },
        WriteOp::Put {
            item: v("e1", 2),
            cond: eq("v", json!(1)),
        },
        WriteOp::Delete {
            key: k("e2"),
            cond: Condition::Exists,
        },
        WriteOp::Check {
            key: k("e3"),
            cond: eq("v", json!(1)),
        },
        put_op(item(&other, "o1", json!({"x": 1}))),
    ])
    .await
    .unwrap();
    assert_eq!(t.get(&k("n1")).await.unwrap(), Some(v("n1", 1)));
    assert_eq!(t.get(&k("e1")).await.unwrap(), Some(v("e1", 2)));
    assert_eq!(t.get(&k("e2")).await.unwrap(), None);
    assert_eq!(t.get(&k("e3")).await.unwrap(), Some(v("e3", 1)));
    assert!(t.get(&Key::new(&other, "o1")).await.unwrap().is_some());

    // One condition fails: nothing is applied.
    let state = || async {
        (
            t.get(&k("n2")).await.unwrap(),
            t.get(&k("e1")).await.unwrap(),
            t.get(&k("e3")).await.unwrap(),
            t.get(&Key::new(&other, "o2")).await.unwrap(),
        )
    };
    let before = state().await;
    assert_eq!(before, (None, Some(v("e1", 2)), Some(v("e3", 1)), None));
    let failing = vec![
        WriteOp::Put {
            item: v("n1", 9),
            cond: Condition::NotExists,
        },
        WriteOp::Put {
            item: v("nx", 9),
            cond: Condition::Exists,
        },
        WriteOp::Put {
            item: v("n1", 9),
            cond: eq("v", json!(2)),
        },
        WriteOp::Delete {
            key: k("nx"),
            cond: Condition::Exists,
        },
        WriteOp::Delete {
            key: k("n1"),
            cond: eq("v", json!("1")),
        },
        WriteOp::Check {
            key: k("n1"),
            cond: Condition::NotExists,
        },
        WriteOp::Check {
            key: k("nx"),
            cond: Condition::Exists,
        },
        WriteOp::Check {
            key: k("n1"),
            cond: eq("v", json!(2)),
        },
        WriteOp::Check {
            key: k("nx"),
            cond: eq("v", json!(1)),
        },
    ];
    for bad in failing {
        // The failing operation first, in the middle and last.
        for position in 0..3 {
            let mut ops = vec![
                WriteOp::Put {
                    item: v("n2", 1),
                    cond: Condition::NotExists,
                },
                WriteOp::Put {
                    item: v("e1", 3),
                    cond: eq("v", json!(2)),
                },
                WriteOp::Delete {
                    key: k("e3"),
                    cond: Condition::None,
                },
                put_op(item(&other, "o2", json!({}))),
            ];
            ops.insert(position * 2, bad.clone());
            assert_err!(t.transact(ops).await, StorageError::ConditionFailed);
            assert_eq!(
                state().await,
                before,
                "a failed transaction changed something: {bad:?}"
            );
        }
    }

    // Check-only and delete-only transactions.
    t.transact(vec![WriteOp::Check {
        key: k("e3"),
        cond: Condition::Exists,
    }])
    .await
    .unwrap();
    t.transact(vec![WriteOp::Delete {
        key: k("nothing"),
        cond: Condition::None,
    }])
    .await
    .unwrap();
    assert_eq!(state().await, before);
}

/// Transactions the interface refuses, and the largest one it takes.
pub async fn transaction_limits(t: &dyn Table) {
    let pk = format!("{}#txlimits", run_id());
    assert_err!(t.transact(vec![]).await, StorageError::InvalidRequest(_));

    let ops = |n: usize| -> Vec<WriteOp> {
        (0..n)
            .map(|i| put_op(item(&pk, &format!("{i:03}"), json!({"i": i}))))
            .collect()
    };
    assert_err!(
        t.transact(ops(MAX_TRANSACTION_OPS + 1)).await,
        StorageError::InvalidRequest(_)
    );
    assert_eq!(
        t.query(&Query::new(&pk, SkRange::All, 10)).await,
        Ok(Page::default())
    );

    t.transact(ops(MAX_TRANSACTION_OPS)).await.unwrap();
    let (all, _) = query_all(t, &Query::new(&pk, SkRange::All, MAX_QUERY_LIMIT)).await;
    assert_eq!(all.len(), MAX_TRANSACTION_OPS);

    // The same key twice, whatever the operations.
    let k = Key::new(&pk, "dup");
    for second in [
        put_op(Item::new(k.clone(), attrs(json!({"n": 2})))),
        WriteOp::Check {
            key: k.clone(),
            cond: Condition::NotExists,
        },
        WriteOp::Delete {
            key: k.clone(),
            cond: Condition::None,
        },
    ] {
        let ops = vec![put_op(Item::new(k.clone(), attrs(json!({"n": 1})))), second];
        assert_err!(t.transact(ops).await, StorageError::InvalidRequest(_));
        assert_eq!(t.get(&k).await, Ok(None));
    }
}

/// Keys that are empty, contain NUL or are too long are refused by every operation; keys of
/// the longest allowed length work.
pub async fn invalid_keys(t: &dyn Table) {
    let pk = format!("{}#keys", run_id());
    let good = Key::new(&pk, "good");
    let long = "x".repeat(1025);
    let bad = [
        Key::new("", "s"),
        Key::new(&pk, ""),
        Key::new(format!("{pk}\0"), "s"),
        Key::new(&pk, "s\0"),
        Key::new("\0", "\0"),
        Key::new(&long, "s"),
        Key::new(&pk, &long),
    ];
    for k in &bad {
        assert_err!(t.get(k).await, StorageError::InvalidKey(_));
        let it = Item::new(k.clone(), Attrs::new());
        assert_err!(
            t.put(it.clone(), Condition::None).await,
            StorageError::InvalidKey(_)
        );
        assert_err!(
            t.delete(k, Condition::None).await,
            StorageError::InvalidKey(_)
        );
        assert_err!(
            t.batch_get(&[good.clone(), k.clone()]).await,
            StorageError::InvalidKey(_)
        );
        let ops = vec![put_op(Item::new(good.clone(), Attrs::new())), put_op(it)];
        assert_err!(t.transact(ops).await, StorageError::InvalidKey(_));
        let check = WriteOp::Check {
            key: k.clone(),
            cond: Condition::None,
        };
        assert_err!(t.transact(vec![check]).await, StorageError::InvalidKey(_));
        let mut query = Query::new(&pk, SkRange::All, 10);
        query.start_after = Some(k.clone());
        assert_err!(t.query(&query).await, StorageError::InvalidKey(_));
    }
    assert_eq!(
        t.get(&good).await,
        Ok(None),
        "a refused transaction wrote something"
    );

    // The longest keys.
    let longest = Key::new(
        format!("{pk}{}", "p".repeat(1024 - pk.len())),
        "s".repeat(1024),
    );
    let it = Item::new(longest.clone(), attrs(json!({"ok": true})));
    t.put(it.clone(), Condition::NotExists).await.unwrap();
    assert_eq!(t.get(&longest).await, Ok(Some(it.clone())));
    let page = t
        .query(&Query::new(&longest.pk, SkRange::All, 10))
        .await
        .unwrap();
    assert_eq!(page.items, vec![it]);
}

/// `PK` and `SK` are the key, never attributes; attribute names are not empty. Writes carrying
/// or comparing such names are refused and write nothing.
pub async fn reserved_attributes(t: &dyn Table) {
    let pk = format!("{}#reserved", run_id());
    let k = Key::new(&pk, "s");
    t.put(
        Item::new(k.clone(), attrs(json!({"v": 1}))),
        Condition::None,
    )
    .await
    .unwrap();
    let fresh = Key::new(&pk, "fresh");
    for name in ["PK", "SK", ""] {
        let mut a = attrs(json!({"v": 2}));
        a.insert(name.to_owned(), json!("x"));
        let bad = Item::new(fresh.clone(), a.clone());
        assert_err!(
            t.put(bad.clone(), Condition::None).await,
            StorageError::InvalidRequest(_)
        );
        assert_err!(
            t.transact(vec![put_op(bad)]).await,
            StorageError::InvalidRequest(_)
        );
        let good = Item::new(fresh.clone(), attrs(json!({"v": 2})));
        assert_err!(
            t.put(good.clone(), eq(name, json!("x"))).await,
            StorageError::InvalidRequest(_)
        );
        assert_err!(
            t.delete(&k, eq(name, json!("x"))).await,
            StorageError::InvalidRequest(_)
        );
        let ops = vec![
            put_op(good),
            WriteOp::Check {
                key: k.clone(),
                cond: eq(name, json!(pk)),
            },
        ];
        assert_err!(t.transact(ops).await, StorageError::InvalidRequest(_));
        assert_eq!(t.get(&fresh).await, Ok(None), "attribute {name:?}");
    }
    // Names that merely resemble them are ordinary attributes.
    let fine = Item::new(
        fresh.clone(),
        attrs(json!({"pk": 1, "sk": 2, "PK ": 3, "_SK": 4})),
    );
    t.put(fine.clone(), Condition::NotExists).await.unwrap();
    assert_eq!(t.get(&fresh).await, Ok(Some(fine)));
    assert_eq!(
        t.get(&k).await.unwrap(),
        Some(Item::new(k.clone(), attrs(json!({"v": 1}))))
    );
}

/// [`ScopedTable`] refuses every key outside its tenant before anything reaches the table.
pub async fn scoped_table(t: &dyn Table) {
    let run = run_id();
    let (scope_a, scope_b) = (scope_for("site-a").await, scope_for("site-b").await);
    let spy = Spy::new(t);
    let a = ScopedTable::new(&spy, &scope_a);
    assert_eq!(a.prefix(), "site-a#");
    let docs = format!("{run}#docs");
    let mine = a.key(&docs, "d1");
    assert_eq!(mine.pk, format!("site-a#{docs}"));
    let mine_item = Item::new(mine.clone(), attrs(json!({"title": "mine"})));

    // In scope: everything works.
    a.put(mine_item.clone(), Condition::NotExists)
        .await
        .unwrap();
    assert_eq!(a.get(&mine).await.unwrap(), Some(mine_item.clone()));
    assert_eq!(
        a.batch_get(std::slice::from_ref(&mine)).await.unwrap(),
        vec![mine_item.clone()]
    );
    let page = a
        .query(&Query::new(a.pk(&docs), SkRange::All, 10))
        .await
        .unwrap();
    assert_eq!(page.items, vec![mine_item.clone()]);
    a.transact(vec![WriteOp::Check {
        key: mine.clone(),
        cond: Condition::Exists,
    }])
    .await
    .unwrap();

    // batch_get_all: any number of keys, 100 per round trip, missing ones left out.
    let many: Vec<Key> = (0..250)
        .map(|i| a.key(&docs, format!("many{i:03}")))
        .collect();
    for k in many.iter().step_by(2) {
        a.put(Item::new(k.clone(), Attrs::new()), Condition::None)
            .await
            .unwrap();
    }
    let before = spy.calls();
    let all = a.batch_get_all(&many).await.unwrap();
    assert_eq!(spy.calls() - before, 3, "three round trips for 250 keys");
    assert_eq!(all.len(), 125);
    assert!(many.iter().step_by(2).all(|k| all.contains_key(k)));
    for k in many.iter().step_by(2) {
        a.delete(k, Condition::None).await.unwrap();
    }

    let calls = spy.calls();
    let new_mine = a.key(&docs, "d2");
    let outside = [
        Key::new(format!("site-b#{docs}"), "d1"),
        Key::new(format!("site-ab#{docs}"), "d1"),
        Key::new(format!("site-a{docs}"), "d1"),
        Key::new(format!("xsite-a#{docs}"), "d1"),
        Key::new(format!("SITE-A#{docs}"), "d1"),
        Key::new("site-a", "d1"),
        Key::new(format!("global#{run}"), "d1"),
        Key::new(&docs, "d1"),
    ];
    for k in &outside {
        let it = Item::new(k.clone(), attrs(json!({"title": "theirs"})));
        assert_err!(a.get(k).await, StorageError::OutOfScope(_));
        assert_err!(
            a.batch_get(&[mine.clone(), k.clone()]).await,
            StorageError::OutOfScope(_)
        );
        assert_err!(
            a.batch_get_all(&[mine.clone(), k.clone()]).await,
            StorageError::OutOfScope(_)
        );
        assert_err!(
            a.put(it.clone(), Condition::None).await,
            StorageError::OutOfScope(_)
        );
        assert_err!(
            a.delete(k, Condition::None).await,
            StorageError::OutOfScope(_)
        );
        assert_err!(
            a.query(&Query::new(&k.pk, SkRange::All, 10)).await,
            StorageError::OutOfScope(_)
        );
        let mut query = Query::new(a.pk(&docs), SkRange::All, 10);
        query.start_after = Some(k.clone());
        assert_err!(a.query(&query).await, StorageError::OutOfScope(_));
        let ops = vec![
            put_op(Item::new(new_mine.clone(), Attrs::new())),
            WriteOp::Delete {
                key: mine.clone(),
                cond: Condition::None,
            },
            put_op(it),
        ];
        assert_err!(a.transact(ops).await, StorageError::OutOfScope(_));
        let check = WriteOp::Check {
            key: k.clone(),
            cond: Condition::None,
        };
        assert_err!(a.transact(vec![check]).await, StorageError::OutOfScope(_));
    }
    assert_eq!(spy.calls(), calls, "a refused call reached the table");
    // Nothing was written (checked on the table itself).
    for k in &outside {
        assert_eq!(t.get(k).await, Ok(None), "{k:?} was written");
    }
    assert_eq!(t.get(&new_mine).await, Ok(None));
    assert_eq!(t.get(&mine).await, Ok(Some(mine_item)));

    // Another tenant cannot reach this one's items.
    let b = ScopedTable::new(t, &scope_b);
    assert_eq!(b.prefix(), "site-b#");
    assert_err!(b.get(&mine).await, StorageError::OutOfScope(_));
    assert_err!(
        b.query(&Query::new(&mine.pk, SkRange::All, 10)).await,
        StorageError::OutOfScope(_)
    );
    assert_err!(
        b.delete(&mine, Condition::None).await,
        StorageError::OutOfScope(_)
    );
    assert_eq!(
        b.query(&Query::new(b.pk(&docs), SkRange::All, 10)).await,
        Ok(Page::default())
    );
}

/// [`GlobalTable`]: readers cannot write, and only `global#` keys are reachable.
pub async fn global_table(t: &dyn Table) {
    let run = run_id();
    let admin = admin_scope().await;
    let spy = Spy::new(t);
    let reader = GlobalTable::reader(&spy);
    let writer = GlobalTable::writer(&spy, &admin);
    let pk = GlobalTable::pk(&format!("{run}#sites"));
    assert!(pk.starts_with(storage::GLOBAL_PREFIX));
    let gk = Key::new(&pk, "site-a");
    let gi = Item::new(gk.clone(), attrs(json!({"name": "Site A"})));

    writer.put(gi.clone(), Condition::NotExists).await.unwrap();
    assert_eq!(reader.get(&gk).await.unwrap(), Some(gi.clone()));
    assert_eq!(
        reader
            .query(&Query::new(&pk, SkRange::All, 10))
            .await
            .unwrap()
            .items,
        vec![gi.clone()]
    );
    assert_eq!(writer.get(&gk).await.unwrap(), Some(gi.clone()));

    let calls = spy.calls();
    // A reader cannot write.
    let changed = Item::new(gk.clone(), attrs(json!({"name": "changed"})));
    assert_err!(
        reader.put(changed.clone(), Condition::None).await,
        StorageError::OutOfScope(_)
    );
    assert_err!(
        reader.delete(&gk, Condition::None).await,
        StorageError::OutOfScope(_)
    );
    assert_err!(
        reader.transact(vec![put_op(changed.clone())]).await,
        StorageError::OutOfScope(_)
    );
    // Nobody reaches non-global keys through it.
    for pk in [
        format!("site-a#{run}"),
        format!("global{run}"),
        format!("globalx#{run}"),
        format!("Global#{run}"),
        format!("x#global#{run}"),
    ] {
        let k = Key::new(&pk, "s");
        let it = Item::new(k.clone(), Attrs::new());
        assert_err!(reader.get(&k).await, StorageError::OutOfScope(_));
        assert_err!(writer.get(&k).await, StorageError::OutOfScope(_));
        assert_err!(
            reader.query(&Query::new(&pk, SkRange::All, 10)).await,
            StorageError::OutOfScope(_)
        );
        assert_err!(
            writer.put(it.clone(), Condition::None).await,
            StorageError::OutOfScope(_)
        );
        assert_err!(
            writer.delete(&k, Condition::None).await,
            StorageError::OutOfScope(_)
        );
        let ops = vec![put_op(changed.clone()), put_op(it)];
        assert_err!(writer.transact(ops).await, StorageError::OutOfScope(_));
        assert_eq!(t.get(&k).await, Ok(None));
    }
    assert_eq!(spy.calls(), calls, "a refused call reached the table");
    assert_eq!(t.get(&gk).await.unwrap(), Some(gi));

    writer
        .transact(vec![put_op(changed.clone())])
        .await
        .unwrap();
    assert_eq!(t.get(&gk).await.unwrap(), Some(changed));
    writer.delete(&gk, Condition::Exists).await.unwrap();
    assert_eq!(reader.get(&gk).await, Ok(None));
}

/// [`PageTokens`] continue a scoped query, and only for the tenant and query they were made for.
pub async fn page_tokens(t: &dyn Table) {
    let run = run_id();
    let tokens = PageTokens::new(b"contract-secret-0123456789abcdef");
    let (scope_a, scope_b) = (scope_for("site-a").await, scope_for("site-b").await);
    let (a, b) = (ScopedTable::new(t, &scope_a), ScopedTable::new(t, &scope_b));
    let docs = format!("{run}#docs");
    for s in [&a, &b] {
        let items = (0..5).map(|i| Item::new(s.key(&docs, format!("d{i}")), Attrs::new()));
        put_all(t, items.collect()).await;
    }

    let query = Query::new(a.pk(&docs), SkRange::All, 2);
    let first = a.query(&query).await.unwrap();
    let token = tokens.seal(a.prefix(), "list", first.last_key.as_ref().expect("more"));
    // Another tenant or another query: refused.
    assert_err!(
        tokens.open(&token, b.prefix(), "list"),
        StorageError::InvalidToken
    );
    assert_err!(
        tokens.open(&token, a.prefix(), "tag:x"),
        StorageError::InvalidToken
    );
    // The right tenant and query: the next page.
    let after = tokens.open(&token, a.prefix(), "list").unwrap();
    let second = a
        .query(&Query {
            start_after: Some(after),
            ..query.clone()
        })
        .await
        .unwrap();
    assert_eq!(sks(&second.items), strings(&["d2", "d3"]));
    assert!(second.items.iter().all(|i| i.key.pk == a.pk(&docs)));

    // Tenant B's token does not open under A.
    let b_first = b
        .query(&Query::new(b.pk(&docs), SkRange::All, 2))
        .await
        .unwrap();
    let b_token = tokens.seal(b.prefix(), "list", b_first.last_key.as_ref().expect("more"));
    assert_err!(
        tokens.open(&b_token, a.prefix(), "list"),
        StorageError::InvalidToken
    );
    assert!(tokens.open(&b_token, b.prefix(), "list").is_ok());
}

// ---------------------------------------------------------------------------------------------
// What FHIR needs: ranges with exclusive bounds, raw bodies, batch writes, site items

/// Sort-key ranges with inclusive, exclusive or no bounds on either side, in both directions,
/// paged one item at a time across the bounds.
pub async fn exclusive_ranges(t: &dyn Table) {
    let pk = format!("{}#bounds", run_id());
    let all = ["a", "b", "b#1", "c", "d", "e"];
    put_all(
        t,
        all.iter().map(|s| item(&pk, s, json!({"sk": s}))).collect(),
    )
    .await;
    let inc = |s: &str| Bound::Included(s.to_owned());
    let exc = |s: &str| Bound::Excluded(s.to_owned());
    let cases: Vec<(SkRange, Vec<&str>)> = vec![
        (SkRange::Range(exc("b"), exc("d")), vec!["b#1", "c"]),
        (SkRange::Range(inc("b"), exc("d")), vec!["b", "b#1", "c"]),
        (SkRange::Range(exc("b"), inc("d")), vec!["b#1", "c", "d"]),
        (
            SkRange::Range(inc("b"), inc("d")),
            vec!["b", "b#1", "c", "d"],
        ),
        (SkRange::after("c"), vec!["d", "e"]),
        (
            SkRange::Range(inc("c"), Bound::Unbounded),
            vec!["c", "d", "e"],
        ),
        (SkRange::before("b#1"), vec!["a", "b"]),
        (
            SkRange::Range(Bound::Unbounded, inc("b#1")),
            vec!["a", "b", "b#1"],
        ),
        (
            SkRange::Range(Bound::Unbounded, Bound::Unbounded),
            all.to_vec(),
        ),
        // Bounds that are not stored keys.
        (SkRange::Range(exc("b#0"), exc("c#")), vec!["b#1", "c"]),
        (SkRange::after(""), all.to_vec()),
        (SkRange::Range(inc(""), exc("b")), vec!["a"]),
        (SkRange::before(""), vec![]),
        (SkRange::Range(Bound::Unbounded, inc("")), vec![]),
        // Equal bounds: one key, or nothing when either side excludes it.
        (SkRange::Range(inc("c"), inc("c")), vec!["c"]),
        (SkRange::Range(exc("c"), inc("c")), vec![]),
        (SkRange::Range(inc("c"), exc("c")), vec![]),
        (SkRange::after("e"), vec![]),
        (SkRange::before("a"), vec![]),
    ];
    for (range, want) in cases {
        let asc = query_sks(t, &pk, range.clone(), true).await;
        assert_eq!(asc, strings(&want), "{range:?} ascending");
        let desc = query_sks(t, &pk, range.clone(), false).await;
        assert_eq!(desc, reversed(&want), "{range:?} descending");
        for s in all {
            assert_eq!(
                range.contains(s),
                want.contains(&s),
                "{range:?} contains {s}"
            );
        }
    }
    // Paging continues across an excluded bound, from a key inside or outside the range.
    let range = SkRange::Range(exc("a"), exc("e"));
    let mut query = q(&pk, range, 2, true);
    query.start_after = Some(Key::new(&pk, "a"));
    let page = t.query(&query).await.unwrap();
    assert_eq!(sks(&page.items), strings(&["b", "b#1"]));
    query.start_after = page.last_key;
    let page = t.query(&query).await.unwrap();
    assert_eq!(sks(&page.items), strings(&["c", "d"]));
    assert_eq!(page.last_key, None, "e is excluded: nothing follows d");
    query.forward = false;
    query.start_after = Some(Key::new(&pk, "e"));
    let page = t.query(&query).await.unwrap();
    assert_eq!(sks(&page.items), strings(&["d", "c"]));
    // A lower bound above the upper one is refused, as DynamoDB refuses it.
    assert_err!(
        t.query(&Query::new(&pk, SkRange::Range(exc("d"), inc("b")), 5))
            .await,
        StorageError::InvalidRequest(_)
    );
}

/// An item's body comes back byte for byte, through every read and write: FHIR decimals keep
/// their digits, numbers beyond 64 bits keep theirs, binary bytes stay binary.
pub async fn bodies(t: &dyn Table) {
    let pk = format!("{}#bodies", run_id());
    let json_body = br#"{"resourceType":"Observation","valueQuantity":{"value":1.50},"n":123456789012345678901234567890,"e":1e2}"#.to_vec();
    let binary: Vec<u8> = vec![0, 1, 2, 0, 255, b'{', 0];
    let with_json = Item::with_body(
        Key::new(&pk, "json"),
        attrs(json!({"v": 1})),
        json_body.clone(),
    );
    let with_binary = Item::with_body(Key::new(&pk, "bin"), Attrs::new(), binary.clone());
    let empty = Item::with_body(Key::new(&pk, "empty"), Attrs::new(), Vec::new());
    let plain = item(&pk, "plain", json!({"v": 2}));

    t.put(with_json.clone(), Condition::NotExists)
        .await
        .unwrap();
    t.transact(vec![put_op(with_binary.clone()), put_op(plain.clone())])
        .await
        .unwrap();
    t.batch_write(vec![BatchOp::Put(empty.clone())])
        .await
        .unwrap();

    let got = t.get(&with_json.key).await.unwrap().unwrap();
    assert_eq!(got.body.as_deref(), Some(json_body.as_slice()));
    assert_eq!(got, with_json);
    assert_eq!(t.get(&plain.key).await.unwrap(), Some(plain.clone()));
    assert_eq!(t.get(&plain.key).await.unwrap().unwrap().body, None);
    let keys = [
        with_binary.key.clone(),
        empty.key.clone(),
        with_json.key.clone(),
    ];
    let got = t.batch_get(&keys).await.unwrap();
    assert_eq!(
        got,
        vec![with_binary.clone(), empty.clone(), with_json.clone()]
    );
    let page = t.query(&Query::new(&pk, SkRange::All, 10)).await.unwrap();
    assert_eq!(
        page.items,
        vec![with_binary, empty, with_json.clone(), plain]
    );

    // Conditions see the attributes of an item with a body.
    let replaced = Item::with_body(
        with_json.key.clone(),
        attrs(json!({"v": 2})),
        b"{}".to_vec(),
    );
    assert_err!(
        t.put(replaced.clone(), eq("v", json!(5))).await,
        StorageError::ConditionFailed
    );
    t.put(replaced.clone(), eq("v", json!(1))).await.unwrap();
    assert_eq!(t.get(&replaced.key).await.unwrap(), Some(replaced));
}

/// [`Table::batch_write`]: any number of unconditional puts and deletes, more than one request
/// holds, each key once.
pub async fn batch_writes(t: &dyn Table) {
    let pk = format!("{}#batch", run_id());
    let n = 2 * BATCH_WRITE_CHUNK + 7;
    let items: Vec<Item> = (0..n)
        .map(|i| item(&pk, &format!("{i:03}"), json!({"i": i})))
        .collect();
    t.batch_write(items.iter().cloned().map(BatchOp::Put).collect())
        .await
        .unwrap();
    let (got, _) = query_all(t, &Query::new(&pk, SkRange::All, MAX_QUERY_LIMIT)).await;
    assert_eq!(got, items);

    // Puts replace, deletes remove (a missing item too), in one call.
    let mut ops: Vec<BatchOp> = items
        .iter()
        .step_by(2)
        .map(|i| BatchOp::Delete(i.key.clone()))
        .collect();
    let replaced = item(&pk, "001", json!({"i": "replaced"}));
    ops.push(BatchOp::Put(replaced.clone()));
    ops.push(BatchOp::Delete(Key::new(&pk, "missing")));
    t.batch_write(ops).await.unwrap();
    let (got, _) = query_all(t, &Query::new(&pk, SkRange::All, MAX_QUERY_LIMIT)).await;
    assert_eq!(got.len(), n / 2);
    assert!(
        got.iter()
            .all(|i| i.key.sk.parse::<usize>().unwrap() % 2 == 1)
    );
    assert_eq!(t.get(&replaced.key).await.unwrap(), Some(replaced));

    // Nothing to do is fine; a key twice, an invalid key or a reserved attribute is refused
    // before anything is written.
    t.batch_write(Vec::new()).await.unwrap();
    let fresh = item(&pk, "fresh", json!({}));
    for bad in [
        vec![
            BatchOp::Put(fresh.clone()),
            BatchOp::Delete(fresh.key.clone()),
        ],
        vec![
            BatchOp::Put(fresh.clone()),
            BatchOp::Put(item(&pk, "", json!({}))),
        ],
        vec![
            BatchOp::Put(fresh.clone()),
            BatchOp::Put(item(&pk, "x", json!({"PK": "y"}))),
        ],
    ] {
        assert!(matches!(
            t.batch_write(bad).await,
            Err(StorageError::InvalidRequest(_) | StorageError::InvalidKey(_))
        ));
    }
    assert_eq!(t.get(&fresh.key).await, Ok(None));
}

/// Batch writes through a tenant's scope: inside it they work, a single key outside it
/// refuses the whole call before anything is sent.
pub async fn scoped_batch_writes(t: &dyn Table) {
    let run = run_id();
    let scope_a = scope_for("site-a").await;
    let spy = Spy::new(t);
    let a = ScopedTable::new(&spy, &scope_a);
    let mine = Item::new(a.key(&format!("{run}#x"), "1"), Attrs::new());
    a.batch_write(vec![BatchOp::Put(mine.clone())])
        .await
        .unwrap();
    assert_eq!(t.get(&mine.key).await.unwrap(), Some(mine.clone()));
    let calls = spy.calls();
    let theirs = Item::new(Key::new(format!("site-b#{run}#x"), "1"), Attrs::new());
    assert_err!(
        a.batch_write(vec![
            BatchOp::Delete(mine.key.clone()),
            BatchOp::Put(theirs.clone())
        ])
        .await,
        StorageError::OutOfScope(_)
    );
    assert_eq!(spy.calls(), calls, "a refused call reached the table");
    assert_eq!(t.get(&theirs.key).await, Ok(None));
    assert_eq!(t.get(&mine.key).await.unwrap(), Some(mine));
}

/// [`GlobalTable`]: batch reads, and the one global write a GOVERN holder may make: its own
/// site's item of one partition, nothing else.
pub async fn global_site_items(t: &dyn Table) {
    let run = run_id();
    let admin = admin_scope().await;
    let partition = format!("{run}#sites");
    let pk = GlobalTable::pk(&partition);
    let writer = GlobalTable::writer(t, &admin);
    let items: Vec<Item> = ["site-a", "site-b"]
        .iter()
        .map(|s| Item::new(Key::new(&pk, *s), attrs(json!({"title": s}))))
        .collect();
    for i in &items {
        writer.put(i.clone(), Condition::NotExists).await.unwrap();
    }
    let reader = GlobalTable::reader(t);
    let keys: Vec<Key> = items.iter().map(|i| i.key.clone()).collect();
    assert_eq!(reader.batch_get(&keys).await.unwrap(), items);
    assert_err!(
        reader
            .batch_get(&[keys[0].clone(), Key::new(format!("site-a#{run}"), "x")])
            .await,
        StorageError::OutOfScope(_)
    );

    // GOVERN on site-a: its own item only.
    let governor = scope_of_group("site-a_govern").await;
    let spy = Spy::new(t);
    let own = GlobalTable::site_item_writer(&spy, &governor, &partition).unwrap();
    let changed = Item::new(keys[0].clone(), attrs(json!({"title": "changed"})));
    own.put(changed.clone(), eq("title", json!("site-a")))
        .await
        .unwrap();
    assert_eq!(t.get(&keys[0]).await.unwrap(), Some(changed));
    let calls = spy.calls();
    for k in [
        keys[1].clone(),
        Key::new(&pk, "site-a#x"),
        Key::new(GlobalTable::pk(&format!("{run}#other")), "site-a"),
        Key::new(GlobalTable::pk(&format!("site#site-a#{run}")), "group#g"),
    ] {
        let it = Item::new(k.clone(), Attrs::new());
        assert_err!(
            own.put(it.clone(), Condition::None).await,
            StorageError::OutOfScope(_)
        );
        assert_err!(
            own.delete(&k, Condition::None).await,
            StorageError::OutOfScope(_)
        );
        assert_err!(
            own.transact(vec![put_op(it)]).await,
            StorageError::OutOfScope(_)
        );
    }
    assert_eq!(spy.calls(), calls, "a refused call reached the table");
    assert_eq!(t.get(&keys[1]).await.unwrap(), Some(items[1].clone()));
    // Without GOVERN (READ WRITE DELETE), no such writer.
    let member = scope_for("site-a").await;
    assert_err!(
        GlobalTable::site_item_writer(t, &member, &partition).map(|_| ()),
        StorageError::OutOfScope(_)
    );
}

/// DynamoDB's size limits hold on every backend (moto does not enforce them; the embedded
/// backend would store anything): 400 KB an item, 4 MB of items a transaction. A refused write
/// writes nothing.
pub async fn size_limits(t: &dyn Table) {
    let pk = format!("{}#sizes", run_id());
    // An item of `bytes`, half in an attribute and half in the body. (The exact boundary is
    // checked in storage's unit tests: moto measures binary values as base64 and stops short of
    // DynamoDB's limit.)
    let sized = |sk: &str, bytes: usize| {
        let base = Item::with_body(Key::new(&pk, sk), attrs(json!({"a": ""})), Vec::new());
        let pad = bytes - item_size(&base);
        Item::with_body(
            base.key,
            attrs(json!({"a": "x".repeat(pad / 2)})),
            vec![7; pad - pad / 2],
        )
    };
    let largest = sized("largest", 300 * 1024);
    assert_eq!(item_size(&largest), 300 * 1024);
    t.put(largest.clone(), Condition::None).await.unwrap();
    assert_eq!(t.get(&largest.key).await.unwrap(), Some(largest));

    let too_big = sized("too-big", MAX_ITEM_BYTES + 1);
    assert_err!(
        t.put(too_big.clone(), Condition::None).await,
        StorageError::InvalidRequest(_)
    );
    assert_err!(
        t.transact(vec![put_op(too_big.clone())]).await,
        StorageError::InvalidRequest(_)
    );
    assert_err!(
        t.batch_write(vec![BatchOp::Put(too_big.clone())]).await,
        StorageError::InvalidRequest(_)
    );
    // Items each within the limit, together over the transaction's.
    let each = 300 * 1024;
    let n = MAX_TRANSACTION_BYTES / each + 1;
    let ops: Vec<WriteOp> = (0..n)
        .map(|i| put_op(sized(&format!("tx{i}"), each)))
        .collect();
    assert_err!(t.transact(ops).await, StorageError::InvalidRequest(_));
    let (left, _) = query_all(t, &Query::new(&pk, SkRange::All, 100)).await;
    assert_eq!(
        sks(&left),
        strings(&["largest"]),
        "a refused write wrote something"
    );
}

// ---------------------------------------------------------------------------------------------
// Blobs

/// Runs every blob function that needs no HTTP server.
pub async fn all_blobs(b: &dyn Blobs) {
    blob_basics(b).await;
    blob_content(b).await;
    blob_keys(b).await;
    presign_urls(b).await;
    scoped_blobs(b).await;
}

/// put, get, head, delete; missing blobs; overwriting.
pub async fn blob_basics(b: &dyn Blobs) {
    let k = format!("contract-{}/basics/doc.txt", run_id());
    assert_eq!(b.get(&k).await, Ok(None));
    assert_eq!(b.head(&k).await, Ok(None));
    b.delete(&k).await.unwrap();

    b.put(&k, b"hello".to_vec(), "text/plain").await.unwrap();
    assert_eq!(b.get(&k).await, Ok(Some(b"hello".to_vec())));
    let meta = BlobMeta {
        size: 5,
        content_type: Some("text/plain".into()),
    };
    assert_eq!(b.head(&k).await, Ok(Some(meta)));

    // Overwrite: new bytes and new content type.
    b.put(&k, b"{\"a\": 12}".to_vec(), "application/json")
        .await
        .unwrap();
    assert_eq!(b.get(&k).await, Ok(Some(b"{\"a\": 12}".to_vec())));
    let meta = b.head(&k).await.unwrap().expect("blob");
    assert_eq!(meta.size, 9);
    assert_eq!(meta.content_type.as_deref(), Some("application/json"));

    b.delete(&k).await.unwrap();
    assert_eq!(b.get(&k).await, Ok(None));
    assert_eq!(b.head(&k).await, Ok(None));
    b.delete(&k).await.unwrap();
}

/// Binary content (every byte value), empty blobs and a large blob round-trip exactly.
pub async fn blob_content(b: &dyn Blobs) {
    let base = format!("contract-{}/content", run_id());
    let every_byte: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
    let large: Vec<u8> = (0..(1 << 20) + 7)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let cases = [
        ("binary.bin", every_byte, "application/octet-stream"),
        ("empty", Vec::new(), "text/plain"),
        ("newline", b"\n".to_vec(), "text/plain; charset=utf-8"),
        ("large.bin", large, "application/octet-stream"),
    ];
    for (name, bytes, ct) in cases {
        let k = format!("{base}/{name}");
        b.put(&k, bytes.clone(), ct).await.unwrap();
        let got = b.get(&k).await.unwrap().expect("blob");
        assert!(
            got == bytes,
            "{name}: content differs ({} vs {} bytes)",
            got.len(),
            bytes.len()
        );
        let meta = b.head(&k).await.unwrap().expect("blob");
        assert_eq!(meta.size, bytes.len() as u64, "{name}");
        assert_eq!(meta.content_type.as_deref(), Some(ct), "{name}");
    }
}

/// Invalid keys are refused by every operation; unusual but valid keys work; a key can be both
/// a blob and a prefix of other blobs.
pub async fn blob_keys(b: &dyn Blobs) {
    let base = format!("contract-{}/keys", run_id());
    let long = format!("{base}/{}", "x".repeat(1024));
    let bad = [
        "".to_owned(),
        "/x".to_owned(),
        "a/../b".to_owned(),
        "a//b".to_owned(),
        "a/./b".to_owned(),
        "..".to_owned(),
        "x/".to_owned(),
        "a\0b".to_owned(),
        long,
    ];
    let ttl = Duration::from_secs(60);
    for k in &bad {
        assert_err!(
            b.put(k, b"x".to_vec(), "text/plain").await,
            StorageError::InvalidKey(_)
        );
        assert_err!(b.get(k).await, StorageError::InvalidKey(_));
        assert_err!(b.head(k).await, StorageError::InvalidKey(_));
        assert_err!(b.delete(k).await, StorageError::InvalidKey(_));
        assert_err!(
            b.presign_put(k, None, ttl).await,
            StorageError::InvalidKey(_)
        );
        assert_err!(b.presign_get(k, ttl).await, StorageError::InvalidKey(_));
    }

    // "p/a" is a blob and a prefix of "p/a/b" at the same time.
    let (parent, child) = (format!("{base}/p/a"), format!("{base}/p/a/b"));
    b.put(&parent, b"parent".to_vec(), "text/plain")
        .await
        .unwrap();
    b.put(&child, b"child".to_vec(), "text/plain")
        .await
        .unwrap();
    assert_eq!(b.get(&parent).await, Ok(Some(b"parent".to_vec())));
    assert_eq!(b.get(&child).await, Ok(Some(b"child".to_vec())));
    b.delete(&parent).await.unwrap();
    assert_eq!(b.get(&child).await, Ok(Some(b"child".to_vec())));
    assert_eq!(b.get(&format!("{base}/p")).await, Ok(None));

    // Unusual characters, case and a long key.
    let odd = [
        format!("{base}/spe cial/é ü&=(1)~!,;@%.txt"),
        format!("{base}/Case"),
        format!("{base}/case"),
        format!("{base}/{}", "y".repeat(200)),
        format!("{base}/.hidden/...x"),
    ];
    for (i, k) in odd.iter().enumerate() {
        b.put(k, vec![i as u8], "application/octet-stream")
            .await
            .unwrap();
    }
    for (i, k) in odd.iter().enumerate() {
        assert_eq!(b.get(k).await, Ok(Some(vec![i as u8])), "{k}");
    }
}

/// Presigned URLs are made for valid keys (what they allow is checked by
/// [`presigned_round_trip`] or, for local blobs, by the server's verification).
pub async fn presign_urls(b: &dyn Blobs) {
    let k = format!("contract-{}/presign/a b.txt", run_id());
    let ttl = Duration::from_secs(300);
    let put = b.presign_put(&k, Some("text/plain"), ttl).await.unwrap();
    let put_any = b.presign_put(&k, None, ttl).await.unwrap();
    let get = b.presign_get(&k, ttl).await.unwrap();
    for url in [&put, &put_any, &get] {
        assert!(
            url.starts_with("http://") || url.starts_with("https://"),
            "{url}"
        );
        assert!(!url.contains(' '), "unencoded space in {url}");
    }
    assert_ne!(put, get);
    // Presigning does not create the blob.
    assert_eq!(b.head(&k).await, Ok(None));
}

/// [`ScopedBlobs`] refuses keys outside `<siteId>/`.
pub async fn scoped_blobs(b: &dyn Blobs) {
    let run = run_id();
    let scope = scope_for("site-a").await;
    let s = ScopedBlobs::new(b, &scope);
    let mine = s.key(&format!("{run}/doc"));
    assert_eq!(mine, format!("site-a/{run}/doc"));
    s.put(&mine, b"mine".to_vec(), "text/plain").await.unwrap();
    assert_eq!(s.get(&mine).await, Ok(Some(b"mine".to_vec())));
    assert_eq!(s.head(&mine).await.unwrap().map(|m| m.size), Some(4));
    let ttl = Duration::from_secs(60);
    s.presign_put(&mine, Some("text/plain"), ttl).await.unwrap();
    s.presign_get(&mine, ttl).await.unwrap();

    let outside = [
        format!("site-b/{run}/doc"),
        format!("site-ab/{run}/doc"),
        format!("site-a-{run}/doc"),
        format!("x/site-a/{run}/doc"),
        format!("Site-A/{run}/doc"),
        "site-a".to_owned(),
    ];
    for k in &outside {
        assert_err!(
            s.put(k, b"theirs".to_vec(), "text/plain").await,
            StorageError::OutOfScope(_)
        );
        assert_err!(s.get(k).await, StorageError::OutOfScope(_));
        assert_err!(s.head(k).await, StorageError::OutOfScope(_));
        assert_err!(s.delete(k).await, StorageError::OutOfScope(_));
        assert_err!(
            s.presign_put(k, None, ttl).await,
            StorageError::OutOfScope(_)
        );
        assert_err!(s.presign_get(k, ttl).await, StorageError::OutOfScope(_));
        assert_eq!(b.head(k).await, Ok(None), "{k} was written");
    }
    s.delete(&mine).await.unwrap();
    assert_eq!(b.head(&mine).await, Ok(None));
}

/// Upload through a presigned PUT URL and download through a presigned GET URL, over HTTP.
/// Needs a server answering the URLs (S3 or moto).
pub async fn presigned_round_trip(b: &dyn Blobs) {
    let base = format!("contract-{}/presigned", run_id());
    let http = reqwest::Client::new();
    let ttl = Duration::from_secs(300);

    // With a content type.
    let k = format!("{base}/hello world é.txt");
    let body = b"hello through a presigned URL".to_vec();
    let url = b.presign_put(&k, Some("text/plain"), ttl).await.unwrap();
    let resp = http
        .put(&url)
        .header("content-type", "text/plain")
        .body(body.clone())
        .send()
        .await
        .expect("presigned PUT");
    assert!(
        resp.status().is_success(),
        "presigned PUT: {}",
        resp.status()
    );
    assert_eq!(b.get(&k).await, Ok(Some(body.clone())));
    let meta = b.head(&k).await.unwrap().expect("blob");
    assert_eq!(meta.size, body.len() as u64);
    assert_eq!(meta.content_type.as_deref(), Some("text/plain"));

    let url = b.presign_get(&k, ttl).await.unwrap();
    let resp = http.get(&url).send().await.expect("presigned GET");
    assert!(
        resp.status().is_success(),
        "presigned GET: {}",
        resp.status()
    );
    assert_eq!(resp.bytes().await.expect("body").to_vec(), body);

    // Without a content type, binary content.
    let k = format!("{base}/binary.bin");
    let body: Vec<u8> = (0..=255u8).collect();
    let url = b.presign_put(&k, None, ttl).await.unwrap();
    let resp = http
        .put(&url)
        .body(body.clone())
        .send()
        .await
        .expect("presigned PUT");
    assert!(
        resp.status().is_success(),
        "presigned PUT: {}",
        resp.status()
    );
    let url = b.presign_get(&k, ttl).await.unwrap();
    let resp = http.get(&url).send().await.expect("presigned GET");
    assert!(
        resp.status().is_success(),
        "presigned GET: {}",
        resp.status()
    );
    assert_eq!(resp.bytes().await.expect("body").to_vec(), body);
}
