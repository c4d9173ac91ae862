//! The DynamoDB and S3 storage backends against moto_server: the storage contract suite
//! (shared with the embedded backend's tests) and DynamoDB/S3-specific behaviour.

#[path = "../../shared/storage/tests/contract/mod.rs"]
mod contract;

use std::time::Duration;

use integration_tests::moto::Moto;
use serde_json::{Value, json};
use storage::{Attrs, Blobs, Condition, Item, Key, Query, SkRange, StorageError, Table, WriteOp};

fn attrs(v: Value) -> Attrs {
    match v {
        Value::Object(m) => m,
        _ => panic!("attributes are an object"),
    }
}

fn item(pk: &str, sk: &str, v: Value) -> Item {
    Item::new(Key::new(pk, sk), attrs(v))
}

fn sks(items: &[Item]) -> Vec<&str> {
    items.iter().map(|i| i.key.sk.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn contract_table_on_dynamodb() {
    let moto = Moto::start().await;
    let t = moto.create_table().await;
    contract::all_table(&t).await;
}

/// An SDK retry of a transaction that DynamoDB applied but whose response was lost carries the
/// same `ClientRequestToken`, so it is answered as applied, not as a failed condition (a false
/// 409). The emulator applies the first call of a `lost-response-*` table and answers 500.
#[tokio::test(flavor = "multi_thread")]
async fn a_retried_transaction_is_not_a_false_conflict() {
    let moto = storage_moto_server().await;
    let t = moto.create_table_named("lost-response").await;
    let it = item("tx", "once", json!({"n": 1}));
    let create = || {
        vec![WriteOp::Put {
            item: it.clone(),
            cond: Condition::NotExists,
        }]
    };
    t.transact(create()).await.unwrap();
    assert_eq!(t.get(&it.key).await.unwrap(), Some(it.clone()));
    // A new transaction (a new token) with the same condition does fail.
    assert_eq!(
        t.transact(create()).await,
        Err(StorageError::ConditionFailed)
    );
}

/// Items DynamoDB leaves unprocessed (throttling) are sent again until every one is written.
/// The emulator processes half of each BatchWriteItem request of an `unprocessed-*` table.
#[tokio::test(flavor = "multi_thread")]
async fn batch_writes_retry_unprocessed_items() {
    let moto = storage_moto_server().await;
    let t = moto.create_table_named("unprocessed").await;
    let items: Vec<Item> = (0..30)
        .map(|i| item("bw", &format!("{i:02}"), json!({"i": i})))
        .collect();
    t.batch_write(items.iter().cloned().map(storage::BatchOp::Put).collect())
        .await
        .unwrap();
    let page = t.query(&Query::new("bw", SkRange::All, 100)).await.unwrap();
    assert_eq!(page.items, items);
    let deletes = items
        .iter()
        .map(|i| storage::BatchOp::Delete(i.key.clone()))
        .collect();
    t.batch_write(deletes).await.unwrap();
    assert!(
        t.query(&Query::new("bw", SkRange::All, 100))
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

/// Every call reports its capacity, to the table's totals and to the meter of the request it
/// runs in (`storage::metered`); a refused conditional write counts as a call.
#[tokio::test(flavor = "multi_thread")]
async fn every_call_reports_its_capacity_to_the_request_meter() {
    let moto = storage_moto_server().await;
    let t = moto.create_table_named("metered").await;
    let ((), used) = storage::metered(async {
        t.put(item("u", "1", json!({"n": 1})), Condition::None)
            .await
            .unwrap();
        assert!(t.get(&Key::new("u", "1")).await.unwrap().is_some());
        let refused = t
            .put(item("u", "1", json!({"n": 2})), Condition::NotExists)
            .await;
        assert!(refused.is_err());
    })
    .await;
    assert_eq!((used.calls, used.items_read), (3, 1), "{used:?}");
    assert!(used.read_units > 0.0 && used.write_units > 0.0, "{used:?}");
    assert_eq!(t.usage(), used);
    // Outside a meter, only the table's totals count.
    t.get(&Key::new("u", "1")).await.unwrap();
    assert_eq!(t.usage().calls, 4);
}

/// The shared `moto_server` of this test process (these tests use fresh tables of it).
async fn storage_moto_server() -> &'static Moto {
    integration_tests::moto::shared().await
}

#[tokio::test(flavor = "multi_thread")]
async fn contract_blobs_on_s3() {
    let moto = Moto::start().await;
    let b = moto.create_bucket().await;
    contract::all_blobs(&b).await;
    contract::presigned_round_trip(&b).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dynamo_backend() {
    let moto = Moto::start().await;
    let t = moto.create_table().await;

    // Attribute values round-trip, integers stay integers.
    let it = item(
        "p",
        "values",
        json!({"s": "x", "empty": "", "i": 3, "neg": -7, "big": u64::MAX, "f": 1.5, "b": true,
               "n": null, "l": [1, "a", [false], {"k": 2.25}], "m": {"inner": {"deep": []}}}),
    );
    t.put(it.clone(), Condition::None).await.unwrap();
    let got = t.get(&it.key).await.unwrap().unwrap();
    assert_eq!(got, it);
    assert!(got.get("i").unwrap().is_i64());
    assert!(got.get("f").unwrap().is_f64());
    assert_eq!(t.get(&Key::new("p", "missing")).await.unwrap(), None);

    // PK and SK are keys, never attributes.
    for name in ["PK", "SK"] {
        let bad = item("p", "bad", json!({ name: "x" }));
        assert!(matches!(
            t.put(bad, Condition::None).await,
            Err(StorageError::InvalidRequest(_))
        ));
    }
    assert!(matches!(
        t.get(&Key::new("p", "")).await,
        Err(StorageError::InvalidKey(_))
    ));

    // Conditions.
    let k = Key::new("p", "doc");
    let v1 = item("p", "doc", json!({"version": 1}));
    let v2 = item("p", "doc", json!({"version": 2}));
    assert_eq!(
        t.put(v1.clone(), Condition::Exists).await,
        Err(StorageError::ConditionFailed)
    );
    t.put(v1.clone(), Condition::NotExists).await.unwrap();
    assert_eq!(
        t.put(v1.clone(), Condition::NotExists).await,
        Err(StorageError::ConditionFailed)
    );
    let stale = Condition::Equals {
        attr: "version".into(),
        value: json!(7),
    };
    let current = Condition::Equals {
        attr: "version".into(),
        value: json!(1),
    };
    assert_eq!(
        t.put(v2.clone(), stale.clone()).await,
        Err(StorageError::ConditionFailed)
    );
    let missing_attr = Condition::Equals {
        attr: "nope".into(),
        value: json!(1),
    };
    assert_eq!(
        t.put(v2.clone(), missing_attr).await,
        Err(StorageError::ConditionFailed)
    );
    t.put(v2.clone(), current.clone()).await.unwrap();
    assert_eq!(t.get(&k).await.unwrap(), Some(v2.clone()));
    assert_eq!(
        t.delete(&k, current).await,
        Err(StorageError::ConditionFailed)
    );
    assert_eq!(t.get(&k).await.unwrap(), Some(v2.clone()));
    t.delete(&k, Condition::Exists).await.unwrap();
    assert_eq!(
        t.delete(&k, Condition::Exists).await,
        Err(StorageError::ConditionFailed)
    );
    t.delete(&k, Condition::None).await.unwrap();
    assert_eq!(t.get(&k).await.unwrap(), None);

    // Batch get: input order, missing items left out, limits checked first.
    for i in 0..5 {
        t.put(
            item("b", &format!("k{i}"), json!({"i": i})),
            Condition::None,
        )
        .await
        .unwrap();
    }
    let keys: Vec<Key> = ["k3", "x", "k0", "k4"]
        .iter()
        .map(|s| Key::new("b", *s))
        .collect();
    let got = t.batch_get(&keys).await.unwrap();
    assert_eq!(sks(&got), ["k3", "k0", "k4"]);
    assert_eq!(t.batch_get(&[]).await.unwrap(), vec![]);
    let dup = vec![Key::new("b", "k1"), Key::new("b", "k1")];
    assert!(matches!(
        t.batch_get(&dup).await,
        Err(StorageError::InvalidRequest(_))
    ));

    // Transactions: all or nothing.
    t.put(item("x", "taken", json!({"v": 1})), Condition::None)
        .await
        .unwrap();
    let ops = vec![
        WriteOp::Put {
            item: item("x", "new", json!({})),
            cond: Condition::NotExists,
        },
        WriteOp::Put {
            item: item("x", "taken", json!({"v": 2})),
            cond: Condition::NotExists,
        },
    ];
    assert_eq!(t.transact(ops).await, Err(StorageError::ConditionFailed));
    assert_eq!(t.get(&Key::new("x", "new")).await.unwrap(), None);
    assert_eq!(
        t.get(&Key::new("x", "taken"))
            .await
            .unwrap()
            .unwrap()
            .get("v"),
        Some(&json!(1))
    );
    let failing_check = vec![
        WriteOp::Put {
            item: item("x", "new", json!({})),
            cond: Condition::None,
        },
        WriteOp::Check {
            key: Key::new("x", "absent"),
            cond: Condition::Exists,
        },
    ];
    assert_eq!(
        t.transact(failing_check).await,
        Err(StorageError::ConditionFailed)
    );
    assert_eq!(t.get(&Key::new("x", "new")).await.unwrap(), None);
    let ok = vec![
        WriteOp::Put {
            item: item("x", "new", json!({"n": 1})),
            cond: Condition::NotExists,
        },
        WriteOp::Delete {
            key: Key::new("x", "taken"),
            cond: Condition::Equals {
                attr: "v".into(),
                value: json!(1),
            },
        },
        WriteOp::Check {
            key: Key::new("b", "k0"),
            cond: Condition::Exists,
        },
        WriteOp::Check {
            key: Key::new("b", "zz"),
            cond: Condition::None,
        },
    ];
    t.transact(ok).await.unwrap();
    assert!(t.get(&Key::new("x", "new")).await.unwrap().is_some());
    assert_eq!(t.get(&Key::new("x", "taken")).await.unwrap(), None);
    let same_key = vec![
        WriteOp::Put {
            item: item("x", "a", json!({})),
            cond: Condition::None,
        },
        WriteOp::Delete {
            key: Key::new("x", "a"),
            cond: Condition::None,
        },
    ];
    assert!(matches!(
        t.transact(same_key).await,
        Err(StorageError::InvalidRequest(_))
    ));
    assert!(matches!(
        t.transact(vec![]).await,
        Err(StorageError::InvalidRequest(_))
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn dynamo_query_paging() {
    let moto = Moto::start().await;
    let t = moto.create_table().await;
    for i in 0..25 {
        t.put(
            item("q", &format!("i{i:02}"), json!({"i": i})),
            Condition::None,
        )
        .await
        .unwrap();
    }
    for sk in ["a", "j0", "z"] {
        t.put(item("q", sk, json!({})), Condition::None)
            .await
            .unwrap();
    }
    t.put(item("q2", "i00", json!({})), Condition::None)
        .await
        .unwrap();

    // Pages of 10 over 25 matching items: 10 + 10 + 5, last_key exactly when more match.
    let mut q = Query::new("q", SkRange::BeginsWith("i".into()), 10);
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = t.query(&q).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= 10);
        seen.extend(page.items.iter().map(|i| i.key.sk.clone()));
        match page.last_key {
            Some(k) => {
                assert_eq!(Some(&k), page.items.last().map(|i| &i.key));
                q.start_after = Some(k);
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let want: Vec<String> = (0..25).map(|i| format!("i{i:02}")).collect();
    assert_eq!(seen, want);

    // Exactly `limit` items left: no last_key.
    let mut q = Query::new("q", SkRange::BeginsWith("i".into()), 5);
    q.start_after = Some(Key::new("q", "i19"));
    let page = t.query(&q).await.unwrap();
    assert_eq!(sks(&page.items), ["i20", "i21", "i22", "i23", "i24"]);
    assert_eq!(page.last_key, None);

    // Descending, between, all.
    let mut q = Query::new("q", SkRange::Between("i03".into(), "i06".into()), 3);
    q.forward = false;
    let page = t.query(&q).await.unwrap();
    assert_eq!(sks(&page.items), ["i06", "i05", "i04"]);
    assert_eq!(page.last_key, Some(Key::new("q", "i04")));
    q.start_after = page.last_key;
    let page = t.query(&q).await.unwrap();
    assert_eq!(sks(&page.items), ["i03"]);
    assert_eq!(page.last_key, None);
    let page = t.query(&Query::new("q", SkRange::All, 1000)).await.unwrap();
    assert_eq!(page.items.len(), 28);
    assert_eq!(page.last_key, None);
    assert_eq!(page.items.first().unwrap().key.sk, "a");
    assert_eq!(page.items.last().unwrap().key.sk, "z");

    // Edge ranges: empty prefix, bounds out of order, open lower bound.
    let page = t
        .query(&Query::new("q", SkRange::BeginsWith(String::new()), 1000))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 28);
    let inverted = Query::new("q", SkRange::Between("z".into(), "a".into()), 10);
    assert!(matches!(
        t.query(&inverted).await,
        Err(StorageError::InvalidRequest(_))
    ));
    let page = t
        .query(&Query::new(
            "q",
            SkRange::Between(String::new(), "i01".into()),
            10,
        ))
        .await
        .unwrap();
    assert_eq!(sks(&page.items), ["a", "i00", "i01"]);

    // start_after outside the range: before it reads from the start, after it reads nothing.
    let mut q = Query::new("q", SkRange::BeginsWith("i".into()), 2);
    q.start_after = Some(Key::new("q", "a"));
    assert_eq!(sks(&t.query(&q).await.unwrap().items), ["i00", "i01"]);
    q.start_after = Some(Key::new("q", "j0"));
    assert_eq!(t.query(&q).await.unwrap(), storage::Page::default());
    q.forward = false;
    assert_eq!(sks(&t.query(&q).await.unwrap().items), ["i24", "i23"]);

    // Limits are checked before anything is sent.
    for bad in [0, storage::MAX_QUERY_LIMIT + 1] {
        let q = Query::new("q", SkRange::All, bad);
        assert!(matches!(
            t.query(&q).await,
            Err(StorageError::InvalidRequest(_))
        ));
    }
    let mut q = Query::new("q", SkRange::All, 10);
    q.start_after = Some(Key::new("q2", "i00"));
    assert!(matches!(
        t.query(&q).await,
        Err(StorageError::InvalidRequest(_))
    ));

    // Usage counters count the query.
    t.reset_usage();
    assert_eq!(t.usage(), storage::Usage::default());
    let page = t
        .query(&Query::new("q", SkRange::BeginsWith("i".into()), 4))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 4);
    let u = t.usage();
    assert_eq!(u.calls, 1);
    assert_eq!(u.items_read, 5, "limit + 1 items are read");
    assert!(u.read_units > 0.0, "{u:?}");
    assert_eq!(u.write_units, 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn dynamo_query_reads_past_short_pages() {
    // Items of ~300 KB: DynamoDB (and moto, if it implements the 1 MB page limit) returns a
    // few per page, so one query needs several requests.
    let moto = Moto::start().await;
    let t = moto.create_table().await;
    let big = "x".repeat(300 * 1024);
    for i in 0..8 {
        t.put(
            item("big", &format!("{i}"), json!({"blob": big})),
            Condition::None,
        )
        .await
        .unwrap();
    }
    t.reset_usage();
    let page = t.query(&Query::new("big", SkRange::All, 6)).await.unwrap();
    assert_eq!(sks(&page.items), ["0", "1", "2", "3", "4", "5"]);
    assert_eq!(page.last_key, Some(Key::new("big", "5")));
    eprintln!("usage of a 6-item query over 300 KB items: {:?}", t.usage());
    let mut q = Query::new("big", SkRange::All, 6);
    q.start_after = page.last_key;
    let page = t.query(&q).await.unwrap();
    assert_eq!(sks(&page.items), ["6", "7"]);
    assert_eq!(page.last_key, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_backend() {
    let moto = Moto::start().await;
    let b = moto.create_bucket().await;

    b.put("site/a/b.txt", b"hello".to_vec(), "text/plain")
        .await
        .unwrap();
    assert_eq!(
        b.get("site/a/b.txt").await.unwrap(),
        Some(b"hello".to_vec())
    );
    let meta = b.head("site/a/b.txt").await.unwrap().unwrap();
    assert_eq!(meta.size, 5);
    assert_eq!(meta.content_type.as_deref(), Some("text/plain"));
    assert_eq!(b.get("site/missing").await.unwrap(), None);
    assert_eq!(b.head("site/missing").await.unwrap(), None);
    b.delete("site/a/b.txt").await.unwrap();
    b.delete("site/a/b.txt").await.unwrap();
    assert_eq!(b.get("site/a/b.txt").await.unwrap(), None);
    for bad in ["", "/abs", "a//b", "a/../b", "a/./b"] {
        assert!(
            matches!(b.get(bad).await, Err(StorageError::InvalidKey(_))),
            "{bad}"
        );
    }

    // Presigned PUT (content type bound into the signature), then presigned GET, over HTTP.
    let http = reqwest::Client::new();
    let url = b
        .presign_put(
            "site/up/doc.pdf",
            Some("application/pdf"),
            Duration::from_secs(300),
        )
        .await
        .unwrap();
    // moto accepts any presigned request (it checks neither signature nor expiry), so what
    // S3 would enforce is checked on the URL: the content type is a signed header.
    assert!(url.contains("X-Amz-Signature="), "{url}");
    assert!(url.contains("X-Amz-Expires=300"), "{url}");
    assert!(
        url.contains("X-Amz-SignedHeaders=content-type%3Bhost"),
        "content type is signed: {url}"
    );
    let any_type = b
        .presign_put("site/up/x", None, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(any_type.contains("X-Amz-SignedHeaders=host"), "{any_type}");
    let resp = http
        .put(&url)
        .header("content-type", "application/pdf")
        .body(b"%PDF-1.7 data".to_vec())
        .send()
        .await
        .unwrap();
    assert!(
        resp.status().is_success(),
        "{}: {}",
        resp.status(),
        resp.text().await.unwrap()
    );
    let meta = b.head("site/up/doc.pdf").await.unwrap().unwrap();
    assert_eq!(meta.size, 13);
    assert_eq!(meta.content_type.as_deref(), Some("application/pdf"));
    let url = b
        .presign_get("site/up/doc.pdf", Duration::from_secs(300))
        .await
        .unwrap();
    let resp = http.get(&url).send().await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"%PDF-1.7 data");

    // Lifetimes beyond a week are refused.
    let long = Duration::from_secs(8 * 24 * 3600);
    assert!(matches!(
        b.presign_get("site/x", long).await,
        Err(StorageError::InvalidRequest(_))
    ));
}

/// The lazy path the Lambdas use: [`aws_setup::AwsConfig::from_env`], then `from_env` of each
/// backend, and
/// [`directory::CognitoDirectory::from_env`], with nothing but the environment (endpoint,
/// region, credentials) to go on. Runs [`lazy_clients_child`] in a child process so the
/// environment is set without racing the other tests of this process.
#[tokio::test(flavor = "multi_thread")]
async fn lazy_clients_from_env() {
    let moto = Moto::start().await;
    let t = moto.create_table().await;
    let b = moto.create_bucket().await;
    let pool = moto.create_user_pool().await;
    pool.create_group("lazy-group").await;
    let out = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "lazy_clients_child", "--ignored", "--nocapture"])
        .env("LAZY_CLIENTS_CHILD", "1")
        .env("TABLE_NAME", t.table_name())
        .env("BUCKET_NAME", b.bucket_name())
        .env("USER_POOL_ID", &pool.pool_id)
        // Extra CAs, read and checked by both from_env functions (a real bundle of 5 roots).
        .env(
            "AWS_CA_BUNDLE",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../shared/aws/src/amazon-roots.pem"
            ),
        )
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The child's writes are visible through the parent's clients.
    assert!(t.get(&Key::new("lazy", "item")).await.unwrap().is_some());
    assert_eq!(b.get("lazy/blob").await.unwrap(), Some(b"lazy".to_vec()));
}

/// Half of [`lazy_clients_from_env`]; does nothing unless run by it.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "run by lazy_clients_from_env in a child process"]
async fn lazy_clients_child() {
    if std::env::var_os("LAZY_CLIENTS_CHILD").is_none() {
        return;
    }
    let config = aws_setup::AwsConfig::from_env().unwrap();
    assert!(config.endpoint_url.is_some());
    assert!(
        config
            .ca_bundle
            .as_deref()
            .is_some_and(|pem| pem.contains("BEGIN CERTIFICATE"))
    );
    let t = storage::DynamoTable::from_env(&config).unwrap();
    let b = storage::S3Blobs::from_env(&config).unwrap();

    let it = item("lazy", "item", json!({"n": 1}));
    t.put(it.clone(), Condition::NotExists).await.unwrap();
    assert_eq!(t.get(&it.key).await.unwrap(), Some(it));
    assert_eq!(t.usage().calls, 2);

    b.put("lazy/blob", b"lazy".to_vec(), "text/plain")
        .await
        .unwrap();
    let url = b
        .presign_get("lazy/blob", Duration::from_secs(60))
        .await
        .unwrap();
    let prefix = format!(
        "{}/{}/lazy/blob?",
        config.endpoint_url.as_deref().unwrap(),
        b.bucket_name()
    );
    assert!(url.starts_with(&prefix), "path-style URL expected: {url}");
    let body = reqwest::get(&url).await.unwrap().bytes().await.unwrap();
    assert_eq!(body.as_ref(), b"lazy");

    use directory::Directory;
    let users = directory::CognitoDirectory::from_env(&config).unwrap();
    let groups = users.list_groups(10, None).await.unwrap();
    let names: Vec<&str> = groups.items.iter().map(|g| g.name.as_str()).collect();
    assert!(names.contains(&"lazy-group"), "{names:?}");
}
