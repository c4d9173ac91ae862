//! The table interface shared by every backend (`docs/architecture.md`, "Storage").

// The checks below serve the backends; a build with none of them (scope checks only) has no
// caller for them.
#![cfg_attr(not(any(feature = "dynamodb", feature = "embedded")), allow(dead_code))]

use std::ops::Bound;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Attributes of an item besides its key and body (`PK`, `SK` and `BODY` are never attributes).
///
/// Numbers travel as JSON numbers: integers exactly (64 bits), other numbers as `f64`. What must
/// come back byte for byte (a FHIR resource with its decimals, `1.50`) goes into the item's
/// [`Item::body`] instead.
pub type Attrs = Map<String, Value>;

/// Most keys a [`Table::batch_get`] takes (DynamoDB's BatchGetItem limit).
pub const MAX_BATCH_GET: usize = 100;
/// Most items of one request of a [`Table::batch_write`] (DynamoDB's BatchWriteItem limit; a
/// call may hold any number, sent in requests of this size).
pub const BATCH_WRITE_CHUNK: usize = 25;
/// Most operations of one [`Table::transact`] (DynamoDB's TransactWriteItems limit).
pub const MAX_TRANSACTION_OPS: usize = 100;
/// Largest item, as DynamoDB measures it ([`item_size`]): 400 KB.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;
/// Largest total size of the items of one [`Table::transact`]: 4 MB.
pub const MAX_TRANSACTION_BYTES: usize = 4 * 1024 * 1024;
/// Largest `limit` of one [`Query`].
pub const MAX_QUERY_LIMIT: usize = 1000;

/// The primary key of an item: partition key `PK` and sort key `SK`. Both are non-empty and
/// contain no NUL character.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Key {
    pub pk: String,
    pub sk: String,
}

impl Key {
    pub fn new(pk: impl Into<String>, sk: impl Into<String>) -> Self {
        Key {
            pk: pk.into(),
            sk: sk.into(),
        }
    }

    /// Fails unless both parts are non-empty, NUL-free and at most 1024 bytes.
    pub fn validate(&self) -> Result<(), StorageError> {
        for (name, v) in [("PK", &self.pk), ("SK", &self.sk)] {
            if v.is_empty() || v.len() > 1024 || v.contains('\0') {
                return Err(StorageError::InvalidKey(format!(
                    "{name} must be 1-1024 bytes without NUL"
                )));
            }
        }
        Ok(())
    }
}

/// A stored item: its key, attributes, and an optional body of raw bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub key: Key,
    pub attrs: Attrs,
    /// Bytes stored and returned exactly as given (DynamoDB: the binary attribute `BODY`), for
    /// content that must not pass through JSON numbers, such as a FHIR resource's JSON text.
    pub body: Option<Vec<u8>>,
}

impl Item {
    pub fn new(key: Key, attrs: Attrs) -> Self {
        Item {
            key,
            attrs,
            body: None,
        }
    }

    /// An item with a raw body besides its attributes.
    pub fn with_body(key: Key, attrs: Attrs, body: Vec<u8>) -> Self {
        Item {
            key,
            attrs,
            body: Some(body),
        }
    }

    pub fn get(&self, attr: &str) -> Option<&Value> {
        self.attrs.get(attr)
    }

    pub fn str(&self, attr: &str) -> Option<&str> {
        self.attrs.get(attr).and_then(Value::as_str)
    }
}

/// A condition a write depends on; a write whose condition does not hold changes nothing and
/// fails with [`StorageError::ConditionFailed`].
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Condition {
    #[default]
    None,
    /// The item must not exist (create).
    NotExists,
    /// The item must exist.
    Exists,
    /// The item must exist and its attribute must equal the value (optimistic concurrency).
    Equals { attr: String, value: Value },
}

/// Which sort keys of the partition a query reads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SkRange {
    #[default]
    All,
    /// Sort keys starting with the prefix.
    BeginsWith(String),
    /// Sort keys between the two bounds, both inclusive.
    Between(String, String),
    /// Sort keys within the bounds, each inclusive, exclusive or absent (FHIR's `gt`, `lt`,
    /// `sa`, `eb` on an index ordered by value). The lower bound must not be above the upper.
    Range(Bound<String>, Bound<String>),
}

impl SkRange {
    /// Sort keys above `lo` (exclusive).
    pub fn after(lo: impl Into<String>) -> Self {
        SkRange::Range(Bound::Excluded(lo.into()), Bound::Unbounded)
    }

    /// Sort keys below `hi` (exclusive).
    pub fn before(hi: impl Into<String>) -> Self {
        SkRange::Range(Bound::Unbounded, Bound::Excluded(hi.into()))
    }

    /// The range as two bounds, with the forms every sort key satisfies (a prefix `""`, a lower
    /// bound `""`) made unbounded; `None` for [`SkRange::BeginsWith`] with a non-empty prefix.
    pub(crate) fn bounds(&self) -> Option<(Bound<&str>, Bound<&str>)> {
        fn lower(b: Bound<&str>) -> Bound<&str> {
            match b {
                // Sort keys are never empty, so every one is above "".
                Bound::Included("") | Bound::Excluded("") => Bound::Unbounded,
                b => b,
            }
        }
        match self {
            SkRange::All => Some((Bound::Unbounded, Bound::Unbounded)),
            SkRange::BeginsWith(p) if p.is_empty() => Some((Bound::Unbounded, Bound::Unbounded)),
            SkRange::BeginsWith(_) => None,
            SkRange::Between(lo, hi) => Some((
                lower(Bound::Included(lo.as_str())),
                Bound::Included(hi.as_str()),
            )),
            SkRange::Range(lo, hi) => Some((
                lower(lo.as_ref().map(String::as_str)),
                hi.as_ref().map(String::as_str),
            )),
        }
    }

    /// Whether sort key `sk` is in the range.
    pub fn contains(&self, sk: &str) -> bool {
        match self.bounds() {
            None => matches!(self, SkRange::BeginsWith(p) if sk.starts_with(p.as_str())),
            Some((lo, hi)) => {
                let above = match lo {
                    Bound::Unbounded => true,
                    Bound::Included(l) => sk >= l,
                    Bound::Excluded(l) => sk > l,
                };
                let below = match hi {
                    Bound::Unbounded => true,
                    Bound::Included(h) => sk <= h,
                    Bound::Excluded(h) => sk < h,
                };
                above && below
            }
        }
    }
}

/// A query on one partition. Reads are strongly consistent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub pk: String,
    pub sk: SkRange,
    /// Most items returned, 1..=[`MAX_QUERY_LIMIT`].
    pub limit: usize,
    /// Ascending sort-key order when true, descending when false.
    pub forward: bool,
    /// Continue after this key (the `last_key` of the previous page).
    pub start_after: Option<Key>,
}

impl Query {
    pub fn new(pk: impl Into<String>, sk: SkRange, limit: usize) -> Self {
        Query {
            pk: pk.into(),
            sk,
            limit,
            forward: true,
            start_after: None,
        }
    }
}

/// One page of a query.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Page {
    pub items: Vec<Item>,
    /// The key of the last item returned, present exactly when more items match.
    pub last_key: Option<Key>,
}

/// One write of a transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOp {
    Put {
        item: Item,
        cond: Condition,
    },
    Delete {
        key: Key,
        cond: Condition,
    },
    /// Changes nothing; fails the transaction unless `cond` holds for `key`.
    Check {
        key: Key,
        cond: Condition,
    },
}

impl WriteOp {
    pub fn key(&self) -> &Key {
        match self {
            WriteOp::Put { item, .. } => &item.key,
            WriteOp::Delete { key, .. } | WriteOp::Check { key, .. } => key,
        }
    }
}

/// One write of a [`Table::batch_write`]: unconditional, applied on its own.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchOp {
    Put(Item),
    Delete(Key),
}

impl BatchOp {
    pub fn key(&self) -> &Key {
        match self {
            BatchOp::Put(item) => &item.key,
            BatchOp::Delete(key) => key,
        }
    }
}

/// Why a storage call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// A write's condition did not hold; nothing was written.
    #[error("a write condition failed")]
    ConditionFailed,
    /// A key outside the caller's tenant scope was refused before it was sent.
    #[error("key outside the tenant scope: {0}")]
    OutOfScope(String),
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// A request the interface does not accept (limit out of range, too many operations,
    /// the same key twice in one transaction, ...).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A paging token that is malformed, forged, or belongs to another tenant or query.
    #[error("invalid paging token")]
    InvalidToken,
    /// The backend failed or could not be reached.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A stored item does not hold what its place in the layout says it holds (a bug, or data
    /// written by something else): the request fails (500, logged); nothing panics.
    #[error("unreadable stored data: {0}")]
    Unreadable(String),
}

impl StorageError {
    /// The item at `key` does not parse as what it should be, because of `why`. Logged where
    /// it becomes the request's 500, with the key.
    pub fn unreadable(key: &Key, why: impl std::fmt::Display) -> Self {
        StorageError::Unreadable(format!("{} / {}: {why}", key.pk, key.sk))
    }
}

/// The table interface (`docs/architecture.md`, "Storage"). There is no scan.
#[async_trait]
pub trait Table: Send + Sync {
    /// The item at `key`, read consistently.
    async fn get(&self, key: &Key) -> Result<Option<Item>, StorageError>;
    /// The items at `keys` (at most [`MAX_BATCH_GET`], no duplicates), in the order of `keys`;
    /// missing items are left out.
    async fn batch_get(&self, keys: &[Key]) -> Result<Vec<Item>, StorageError>;
    /// Writes `item` (replacing any item at its key) if `cond` holds.
    async fn put(&self, item: Item, cond: Condition) -> Result<(), StorageError>;
    /// Deletes the item at `key` (absent is fine with [`Condition::None`]) if `cond` holds.
    async fn delete(&self, key: &Key, cond: Condition) -> Result<(), StorageError>;
    /// Reads one partition in sort-key order.
    async fn query(&self, query: &Query) -> Result<Page, StorageError>;
    /// Applies all of `ops` (at most [`MAX_TRANSACTION_OPS`], distinct keys) or none of them.
    /// Idempotent under retries: a retry of a transaction that was applied (a lost response) is
    /// reported as applied, not as a failed condition.
    async fn transact(&self, ops: Vec<WriteOp>) -> Result<(), StorageError>;
    /// Applies `ops` (any number, distinct keys) without conditions and without atomicity: each
    /// write happens on its own, and on an error some may have been applied. For writes whose
    /// partial application is invisible or harmless (pre-writes and clean-ups of a write
    /// protocol). DynamoDB: BatchWriteItem in requests of [`BATCH_WRITE_CHUNK`], unprocessed
    /// items retried with backoff.
    async fn batch_write(&self, ops: Vec<BatchOp>) -> Result<(), StorageError>;
}

/// The size DynamoDB counts for an attribute value: UTF-8 bytes of a string; about one byte per
/// two digits of a number, plus one; one for a boolean or null; three plus one per element for a
/// list or map (and a map entry's name).
pub fn value_size(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len(),
        Value::Number(n) => n.to_string().len().div_ceil(2) + 1,
        Value::Bool(_) | Value::Null => 1,
        Value::Array(a) => 3 + a.iter().map(|x| value_size(x) + 1).sum::<usize>(),
        Value::Object(o) => {
            3 + o
                .iter()
                .map(|(k, x)| k.len() + value_size(x) + 1)
                .sum::<usize>()
        }
    }
}

/// The size DynamoDB counts (and bills) for an item: the names and values of its attributes,
/// the keys `PK` and `SK` and the body `BODY` included. The limits [`MAX_ITEM_BYTES`] and
/// [`MAX_TRANSACTION_BYTES`] are checked with it on every backend, so the embedded one refuses
/// what DynamoDB would (and moto does not).
pub fn item_size(item: &Item) -> usize {
    2 + item.key.pk.len()
        + 2
        + item.key.sk.len()
        + item
            .attrs
            .iter()
            .map(|(k, v)| k.len() + value_size(v))
            .sum::<usize>()
        + item
            .body
            .as_ref()
            .map_or(0, |b| BODY_ATTRIBUTE.len() + b.len())
}

/// Checks the limits every backend enforces the same way.
pub(crate) fn check_query(q: &Query) -> Result<(), StorageError> {
    if q.limit == 0 || q.limit > MAX_QUERY_LIMIT {
        return Err(StorageError::InvalidRequest(format!(
            "limit must be 1-{MAX_QUERY_LIMIT}"
        )));
    }
    if q.pk.is_empty() || q.pk.contains('\0') {
        return Err(StorageError::InvalidKey(
            "PK must be non-empty without NUL".into(),
        ));
    }
    let bounds = match &q.sk {
        SkRange::Between(lo, hi) => Some((lo, hi)),
        SkRange::Range(
            Bound::Included(lo) | Bound::Excluded(lo),
            Bound::Included(hi) | Bound::Excluded(hi),
        ) => Some((lo, hi)),
        _ => None,
    };
    if let Some((lo, hi)) = bounds
        && lo > hi
    {
        // DynamoDB refuses such a query; refuse it the same way everywhere.
        return Err(StorageError::InvalidRequest(
            "the lower sort-key bound is above the upper one".into(),
        ));
    }
    if let Some(k) = &q.start_after {
        k.validate()?;
        if k.pk != q.pk {
            return Err(StorageError::InvalidRequest(
                "start_after is in another partition".into(),
            ));
        }
    }
    Ok(())
}

/// Checks batch-get limits.
pub(crate) fn check_batch(keys: &[Key]) -> Result<(), StorageError> {
    if keys.len() > MAX_BATCH_GET {
        return Err(StorageError::InvalidRequest(format!(
            "at most {MAX_BATCH_GET} keys"
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for k in keys {
        k.validate()?;
        if !seen.insert(k) {
            return Err(StorageError::InvalidRequest(
                "duplicate key in batch".into(),
            ));
        }
    }
    Ok(())
}

/// Checks a batch write: valid items and keys, each key once.
pub(crate) fn check_batch_write(ops: &[BatchOp]) -> Result<(), StorageError> {
    let mut seen = std::collections::HashSet::new();
    for op in ops {
        match op {
            BatchOp::Put(item) => check_item(item)?,
            BatchOp::Delete(key) => key.validate()?,
        }
        if !seen.insert(op.key()) {
            return Err(StorageError::InvalidRequest(
                "the same key twice in one batch write".into(),
            ));
        }
    }
    Ok(())
}

/// Checks transaction limits: 1-100 operations on distinct keys, valid items, at most
/// [`MAX_TRANSACTION_BYTES`] in all.
pub(crate) fn check_transaction(ops: &[WriteOp]) -> Result<(), StorageError> {
    let mut total = 0;
    if ops.is_empty() || ops.len() > MAX_TRANSACTION_OPS {
        return Err(StorageError::InvalidRequest(format!(
            "a transaction has 1-{MAX_TRANSACTION_OPS} operations"
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for op in ops {
        op.key().validate()?;
        if !seen.insert(op.key()) {
            return Err(StorageError::InvalidRequest(
                "the same key twice in one transaction".into(),
            ));
        }
        total += match op {
            WriteOp::Put { item, .. } => item_size(item),
            WriteOp::Delete { key, .. } | WriteOp::Check { key, .. } => {
                4 + key.pk.len() + key.sk.len()
            }
        };
        match op {
            WriteOp::Put { item, cond } => {
                check_item(item)?;
                check_condition(cond)?;
            }
            WriteOp::Delete { cond, .. } | WriteOp::Check { cond, .. } => check_condition(cond)?,
        }
    }
    if total > MAX_TRANSACTION_BYTES {
        return Err(StorageError::InvalidRequest(format!(
            "a transaction holds at most {MAX_TRANSACTION_BYTES} bytes of items ({total} requested)"
        )));
    }
    Ok(())
}

/// The name of the body attribute in DynamoDB ([`Item::body`]).
pub(crate) const BODY_ATTRIBUTE: &str = "BODY";

/// The names of the key and body attributes in DynamoDB; never item attributes.
const RESERVED_ATTRIBUTES: [&str; 3] = ["PK", "SK", BODY_ATTRIBUTE];

fn check_attr_name(name: &str) -> Result<(), StorageError> {
    if name.is_empty() || RESERVED_ATTRIBUTES.contains(&name) {
        Err(StorageError::InvalidRequest(format!(
            "'{name}' cannot be an attribute name (empty, the key, or the body)"
        )))
    } else {
        Ok(())
    }
}

/// Checks an item to write: a valid key, attribute names that are neither empty nor reserved
/// (`PK`, `SK`, `BODY`), and at most [`MAX_ITEM_BYTES`].
pub(crate) fn check_item(item: &Item) -> Result<(), StorageError> {
    item.key.validate()?;
    item.attrs
        .keys()
        .try_for_each(|name| check_attr_name(name))?;
    let size = item_size(item);
    if size > MAX_ITEM_BYTES {
        return Err(StorageError::InvalidRequest(format!(
            "an item is at most {MAX_ITEM_BYTES} bytes ({size} requested)"
        )));
    }
    Ok(())
}

/// Checks a write condition: [`Condition::Equals`] must name an attribute an item can have.
pub(crate) fn check_condition(cond: &Condition) -> Result<(), StorageError> {
    match cond {
        Condition::Equals { attr, .. } => check_attr_name(attr),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sized(bytes: usize) -> Item {
        let base = Item::with_body(Key::new("p", "s"), Attrs::new(), Vec::new());
        let pad = bytes - item_size(&base);
        Item::with_body(base.key, Attrs::new(), vec![0; pad])
    }

    #[test]
    fn items_and_transactions_within_dynamodbs_limits() {
        assert_eq!(item_size(&sized(MAX_ITEM_BYTES)), MAX_ITEM_BYTES);
        assert!(check_item(&sized(MAX_ITEM_BYTES)).is_ok());
        assert!(matches!(
            check_item(&sized(MAX_ITEM_BYTES + 1)),
            Err(StorageError::InvalidRequest(_))
        ));
        let mut attrs = Attrs::new();
        attrs.insert("name".into(), json!("value"));
        attrs.insert("n".into(), json!(12345));
        let item = Item::new(Key::new("pk", "sk"), attrs);
        assert_eq!(item_size(&item), 2 + 2 + 2 + 2 + (4 + 5) + (1 + 4));
        // Ten items of the largest size fit a transaction; eleven do not.
        let puts = |n: usize| -> Vec<WriteOp> {
            (0..n)
                .map(|i| WriteOp::Put {
                    item: Item::with_body(
                        Key::new("p", format!("{i:02}")),
                        Attrs::new(),
                        vec![0; MAX_ITEM_BYTES - 20],
                    ),
                    cond: Condition::None,
                })
                .collect()
        };
        assert!(check_transaction(&puts(10)).is_ok());
        assert!(matches!(
            check_transaction(&puts(11)),
            Err(StorageError::InvalidRequest(_))
        ));
    }

    #[test]
    fn ranges_contain_what_their_bounds_say() {
        let r = SkRange::Range(Bound::Excluded("b".into()), Bound::Included("d".into()));
        assert!(!r.contains("b") && r.contains("b#") && r.contains("d") && !r.contains("d#"));
        assert!(SkRange::BeginsWith("a#".into()).contains("a#1"));
        assert!(!SkRange::BeginsWith("a#".into()).contains("a"));
        assert!(SkRange::after("").contains("x") && !SkRange::before("").contains("x"));
        assert!(SkRange::All.contains("anything"));
    }
}
