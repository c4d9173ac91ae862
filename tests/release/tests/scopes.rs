//! Scoped storage refuses every key outside the caller's scope in a build without debug
//! assertions: the checks are plain code, not `debug_assert!`, so release builds keep them.
//! `scripts/test.sh` runs this file with the `release-checks` profile and `RELEASE_CHECKS=1`,
//! which makes the first test prove that debug assertions really were off.

use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use serde_json::json;
use storage::{
    Attrs, BatchOp, Condition, GlobalTable, Item, Key, Page, Query, ScopedTable, SkRange,
    StorageError, Table, WriteOp,
};
use tenant_context::{
    Claims, Credentials, Permission, RequestTarget, TenantConfig, TenantContext, TenantScope,
};

/// A table that answers everything and counts what reaches it.
#[derive(Default)]
struct Counter(AtomicUsize);

impl Counter {
    fn hit(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    fn calls(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Table for Counter {
    async fn get(&self, _: &Key) -> Result<Option<Item>, StorageError> {
        self.hit();
        Ok(None)
    }
    async fn batch_get(&self, _: &[Key]) -> Result<Vec<Item>, StorageError> {
        self.hit();
        Ok(Vec::new())
    }
    async fn put(&self, _: Item, _: Condition) -> Result<(), StorageError> {
        self.hit();
        Ok(())
    }
    async fn delete(&self, _: &Key, _: Condition) -> Result<(), StorageError> {
        self.hit();
        Ok(())
    }
    async fn query(&self, _: &Query) -> Result<Page, StorageError> {
        self.hit();
        Ok(Page::default())
    }
    async fn transact(&self, _: Vec<WriteOp>) -> Result<(), StorageError> {
        self.hit();
        Ok(())
    }
    async fn batch_write(&self, _: Vec<BatchOp>) -> Result<(), StorageError> {
        self.hit();
        Ok(())
    }
}

async fn scope(group: &str) -> TenantScope {
    let ctx = TenantContext::new(TenantConfig::default());
    let claims = json!({"cognito:username": "u", "cognito:groups": [group]});
    let creds = Credentials {
        authorizer_claims: Some(Claims::new(claims.as_object().unwrap().clone())),
        ..Default::default()
    };
    let principal = ctx.authenticate(creds).await.unwrap();
    ctx.authorize(&principal, RequestTarget::default(), Permission::Read)
        .await
        .unwrap()
}

fn refused<T: std::fmt::Debug>(r: Result<T, StorageError>) {
    assert!(matches!(r, Err(StorageError::OutOfScope(_))), "{r:?}");
}

#[test]
fn this_run_has_the_builds_assertions_it_claims() {
    let debug_assertions = cfg!(debug_assertions);
    if std::env::var_os("RELEASE_CHECKS").is_some() {
        assert!(
            !debug_assertions,
            "RELEASE_CHECKS is set but debug assertions are on: run with --profile release-checks"
        );
    }
}

#[tokio::test]
async fn keys_outside_the_tenant_are_refused_before_they_are_sent() {
    let counter = Counter::default();
    let a = ScopedTable::new(&counter, &scope("site-a").await);
    let theirs = Key::new("site-b#docs", "x");
    let item = Item::new(theirs.clone(), Attrs::new());
    refused(a.get(&theirs).await);
    refused(a.batch_get(std::slice::from_ref(&theirs)).await);
    refused(a.put(item.clone(), Condition::None).await);
    refused(a.delete(&theirs, Condition::None).await);
    refused(a.query(&Query::new("site-b#docs", SkRange::All, 1)).await);
    refused(
        a.transact(vec![WriteOp::Put {
            item: item.clone(),
            cond: Condition::None,
        }])
        .await,
    );
    refused(a.batch_write(vec![BatchOp::Put(item)]).await);
    assert_eq!(counter.calls(), 0, "a refused call reached the table");
    // The tenant's own keys pass.
    a.get(&a.key("docs", "x")).await.unwrap();
    assert_eq!(counter.calls(), 1);
}

#[tokio::test]
async fn global_writes_need_their_scope() {
    let counter = Counter::default();
    let key = Key::new(GlobalTable::pk("sites"), "site-a");
    let item = Item::new(key.clone(), Attrs::new());
    let reader = GlobalTable::reader(&counter);
    refused(reader.put(item.clone(), Condition::None).await);
    refused(reader.batch_write(vec![BatchOp::Delete(key.clone())]).await);
    refused(reader.get(&Key::new("site-a#docs", "x")).await);
    // GOVERN on site-a writes that site's item and nothing else; READ does not even get a writer.
    let governor = scope("site-a_govern").await;
    let own = GlobalTable::site_item_writer(&counter, &governor, "sites").unwrap();
    refused(
        own.put(
            Item::new(Key::new(GlobalTable::pk("sites"), "site-b"), Attrs::new()),
            Condition::None,
        )
        .await,
    );
    assert_eq!(counter.calls(), 0, "a refused call reached the table");
    own.put(item, Condition::None).await.unwrap();
    assert_eq!(counter.calls(), 1);
    refused(
        GlobalTable::site_item_writer(&counter, &scope("site-a_read").await, "sites").map(|_| ()),
    );
}
