//! Users, API Gateway events, bulk loading of documents and a counting table wrapper.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use documents::model::{DocState, Document, DocumentId, Tag, TagValues};
use documents::store::DocStore;
use serde_json::{Map, Value, json};
use storage::{
    Blobs, Item, Key, MAX_TRANSACTION_OPS, Page, Query, ScopedBlobs, ScopedTable, StorageError,
    Table, WriteOp,
};
use tenant_context::{Claims, Credentials, Permission, RequestTarget, TenantContext, TenantScope};

/// The issuer and audience the benchmark's claims carry (what the template's JWT authorizer
/// would have verified).
pub const ISSUER: &str = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_bench";
pub const AUDIENCE: &str = "bench-client";

/// The paging-token secret of every deployment the benchmark starts.
pub const PAGING_SECRET: &str = "bench-paging-token-secret-0123456789";

/// The claims API Gateway's JWT authorizer passes for `user` in `groups` (an ID token).
pub fn claims(user: &str, groups: &[&str], iss: &str, aud: &str) -> Map<String, Value> {
    let v = json!({
        "sub": format!("sub-{user}"),
        "cognito:username": user,
        "cognito:groups": groups,
        "token_use": "id",
        "aud": aud,
        "iss": iss,
    });
    match v {
        Value::Object(m) => m,
        _ => unreachable!("a JSON object"),
    }
}

/// The API Gateway HTTP API (payload 2.0) event for a request, as the Lambda service delivers
/// it (claims as JSON arrays are normalized by the functions exactly as in Lambda).
pub fn event(
    method: &str,
    path_and_query: &str,
    body: Option<&Value>,
    claims: Option<&Map<String, Value>>,
) -> Value {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let bytes = body.map(|b| serde_json::to_vec(b).expect("json"));
    let headers = vec![("content-type".into(), "application/json".into())];
    platform_http::http_api_event(&platform_http::HttpApiRequest {
        method,
        path,
        query,
        headers,
        body: bytes.as_deref(),
        claims,
        domain: "api.example.com",
        request_id: "bench",
    })
}

/// The request a function's handler gets for `event` (the run loop's own parsing).
pub fn request(event: Value) -> lambda_http::Request {
    platform_http::request_from_event(event).expect("a valid API Gateway event")
}

/// A handler's response: status and JSON body.
pub fn read(resp: lambda_http::Response<lambda_http::Body>) -> (u16, Value) {
    let r = integration_tests::response(resp);
    (r.status, r.body)
}

/// The scope `user` (a member of group `site`) gets on `site` with `permission`.
pub async fn scope(tenant: &TenantContext, site: &str, permission: Permission) -> TenantScope {
    let claims = claims("loader", &[site], ISSUER, AUDIENCE);
    let principal = tenant
        .authenticate(Credentials {
            authorizer_claims: Some(Claims::new(claims)),
            authorization: None,
            fhir_base_url: None,
        })
        .await
        .expect("authorizer claims authenticate");
    tenant
        .authorize(&principal, RequestTarget::site(Some(site)), permission)
        .await
        .expect("a member of group X may write site X")
}

/// The tag values bulk-loaded documents get: document `i` has `status` = `STATUSES[i % 4]`.
pub const STATUSES: [&str; 4] = ["draft", "review", "final", "archived"];

/// Writes `n` documents into `site` directly through the document store (the same items and
/// transactions `POST /documents` writes, without content blobs), many documents per
/// transaction. Document `i` is `docs/<i>.txt` with tag `status` = `STATUSES[i % 4]`, inserted
/// `n - i` milliseconds before the load began (so later documents are newer). Returns the ids.
pub async fn bulk_load(
    table: &dyn Table,
    blobs: &dyn Blobs,
    tenant: &TenantContext,
    site: &str,
    n: usize,
) -> Result<Vec<DocumentId>, StorageError> {
    let scope = scope(tenant, site, Permission::Write).await;
    let store = DocStore::new(ScopedTable::new(table, &scope));
    let sblobs = ScopedBlobs::new(blobs, &scope);
    let start = time::OffsetDateTime::now_utc() - time::Duration::milliseconds(n as i64 + 1000);
    let mut ids = Vec::with_capacity(n);
    let mut batch: Vec<WriteOp> = Vec::new();
    for i in 0..n {
        let id = DocumentId::new();
        let now = timestamp::format(start + time::Duration::milliseconds(i as i64));
        let user = scope.username().to_owned();
        let mut tags = std::collections::BTreeMap::new();
        tags.insert(
            "status".to_owned(),
            Tag {
                key: "status".into(),
                values: TagValues::One(STATUSES[i % STATUSES.len()].into()),
                inserted_date: now.clone(),
                user_id: user.clone(),
            },
        );
        let state = DocState {
            doc: Document {
                document_id: id.to_string(),
                path: format!("docs/{i:06}.txt"),
                content_type: "text/plain".into(),
                content_length: Some(16),
                user_id: user,
                inserted_date: now.clone(),
                last_modified_date: now,
                metadata: Vec::new(),
            },
            version: 1,
            content_key: sblobs.key(&format!("documents/{id}/{}", uuid::Uuid::new_v4().simple())),
            tags,
        };
        let ops = store.ops(None, Some(&state));
        if batch.len() + ops.len() > MAX_TRANSACTION_OPS {
            store.table().transact(std::mem::take(&mut batch)).await?;
        }
        batch.extend(ops);
        ids.push(id);
    }
    if !batch.is_empty() {
        store.table().transact(batch).await?;
    }
    Ok(ids)
}

/// Calls by type, items read and capacity units as DynamoDB would bill them, as counted by
/// [`Counting`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counts {
    pub get: u64,
    pub batch_get: u64,
    pub query: u64,
    pub put: u64,
    pub delete: u64,
    pub transact: u64,
    pub batch_write: u64,
    /// Items returned by get, batch_get and query.
    pub items_read: u64,
    /// Read capacity units by DynamoDB's rules for strongly consistent reads: GetItem and each
    /// BatchGetItem item 1 per 4 KB of the item (at least 1); Query 1 per 4 KB of all items
    /// read, rounded up once (at least 1).
    pub model_read_units: f64,
    /// Write capacity units by DynamoDB's rules: PutItem 1 per 1 KB of the item; DeleteItem 1;
    /// TransactWriteItems 2 per 1 KB of each item put, and 2 for each delete and condition
    /// check (their items are assumed under 1 KB: tag, list and index entries are);
    /// BatchWriteItem as PutItem and DeleteItem.
    pub model_write_units: f64,
}

impl Counts {
    pub fn reads(&self) -> u64 {
        self.get + self.batch_get + self.query
    }
}

/// The size DynamoDB bills for an item, as storage checks its limits with it.
use storage::item_size;

fn units(bytes: usize, unit: usize) -> f64 {
    bytes.div_ceil(unit).max(1) as f64
}

/// A [`Table`] that counts calls, items read and modelled capacity through it (the embedded
/// backend has no figures of its own; moto's are incomplete). The interface has no scan, so
/// none can be counted.
pub struct Counting {
    inner: Arc<dyn Table>,
    counts: Mutex<Counts>,
}

impl Counting {
    pub fn new(inner: Arc<dyn Table>) -> Self {
        Counting {
            inner,
            counts: Mutex::default(),
        }
    }

    pub fn take(&self) -> Counts {
        std::mem::take(&mut *self.counts.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn add(&self, f: impl FnOnce(&mut Counts)) {
        f(&mut self.counts.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

#[async_trait]
impl Table for Counting {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StorageError> {
        let r = self.inner.get(key).await;
        let (n, size) = match &r {
            Ok(Some(i)) => (1, item_size(i)),
            _ => (0, 0),
        };
        self.add(|c| {
            c.get += 1;
            c.items_read += n;
            c.model_read_units += units(size, 4096);
        });
        r
    }

    async fn batch_get(&self, keys: &[Key]) -> Result<Vec<Item>, StorageError> {
        let r = self.inner.batch_get(keys).await;
        let (n, ru) = r.as_ref().map_or((0, 0.0), |v| {
            (
                v.len() as u64,
                v.iter().map(|i| units(item_size(i), 4096)).sum(),
            )
        });
        self.add(|c| {
            c.batch_get += 1;
            c.items_read += n;
            c.model_read_units += ru;
        });
        r
    }

    async fn put(&self, item: Item, cond: storage::Condition) -> Result<(), StorageError> {
        let wu = units(item_size(&item), 1024);
        self.add(|c| {
            c.put += 1;
            c.model_write_units += wu;
        });
        self.inner.put(item, cond).await
    }

    async fn delete(&self, key: &Key, cond: storage::Condition) -> Result<(), StorageError> {
        self.add(|c| {
            c.delete += 1;
            c.model_write_units += 1.0;
        });
        self.inner.delete(key, cond).await
    }

    async fn query(&self, query: &Query) -> Result<Page, StorageError> {
        let r = self.inner.query(query).await;
        let (n, size) = r.as_ref().map_or((0, 0), |p| {
            (
                p.items.len() as u64,
                p.items.iter().map(item_size).sum::<usize>(),
            )
        });
        self.add(|c| {
            c.query += 1;
            c.items_read += n;
            c.model_read_units += units(size, 4096);
        });
        r
    }

    async fn transact(&self, ops: Vec<WriteOp>) -> Result<(), StorageError> {
        let wu: f64 = ops
            .iter()
            .map(|op| match op {
                WriteOp::Put { item, .. } => 2.0 * units(item_size(item), 1024),
                _ => 2.0,
            })
            .sum();
        self.add(|c| {
            c.transact += 1;
            c.model_write_units += wu;
        });
        self.inner.transact(ops).await
    }

    async fn batch_write(&self, ops: Vec<storage::BatchOp>) -> Result<(), StorageError> {
        let wu: f64 = ops
            .iter()
            .map(|op| match op {
                storage::BatchOp::Put(item) => units(item_size(item), 1024),
                storage::BatchOp::Delete(_) => 1.0,
            })
            .sum();
        self.add(|c| {
            c.batch_write += ops.len().div_ceil(storage::BATCH_WRITE_CHUNK) as u64;
            c.model_write_units += wu;
        });
        self.inner.batch_write(ops).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use storage::value_size;

    #[test]
    fn billed_sizes() {
        assert_eq!(value_size(&json!("abc")), 3);
        assert_eq!(value_size(&json!(12345)), 4);
        assert_eq!(value_size(&json!(true)), 1);
        assert_eq!(value_size(&json!(["a", "bc"])), 3 + 2 + 3);
        assert_eq!(value_size(&json!({"k": "v"})), 3 + 3);
        let mut attrs = Map::new();
        attrs.insert("name".into(), json!("value"));
        let item = Item::new(Key::new("p", "s"), attrs);
        assert_eq!(item_size(&item), 2 + 1 + 2 + 1 + 4 + 5);
        assert_eq!(units(0, 4096), 1.0);
        assert_eq!(units(4097, 4096), 2.0);
        assert_eq!(units(1024, 1024), 1.0);
    }
}
