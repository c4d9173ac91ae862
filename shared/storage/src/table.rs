//! The table interface shared by every backend.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Attributes of an item besides its key (`PK`/`SK` are never attributes).
pub type Attrs = Map<String, Value>;

/// Most keys a [`Table::batch_get`] takes (DynamoDB's BatchGetItem limit).
pub const MAX_BATCH_GET: usize = 100;
/// Most operations of one [`Table::transact`] (DynamoDB's TransactWriteItems limit).
pub const MAX_TRANSACTION_OPS: usize = 100;
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

/// A stored item.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub key: Key,
    pub attrs: Attrs,
}

impl Item {
    pub fn new(key: Key, attrs: Attrs) -> Self {
        Item { key, attrs }
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
}

/// The table interface (DESIGN.md section 4). There is no scan.
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
    async fn transact(&self, ops: Vec<WriteOp>) -> Result<(), StorageError>;
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
    if let SkRange::Between(lo, hi) = &q.sk
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

/// Checks transaction limits.
pub(crate) fn check_transaction(ops: &[WriteOp]) -> Result<(), StorageError> {
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
        match op {
            WriteOp::Put { item, cond } => {
                check_item(item)?;
                check_condition(cond)?;
            }
            WriteOp::Delete { cond, .. } | WriteOp::Check { cond, .. } => check_condition(cond)?,
        }
    }
    Ok(())
}

/// The names of the key attributes in DynamoDB; never item attributes.
const KEY_ATTRIBUTES: [&str; 2] = ["PK", "SK"];

fn check_attr_name(name: &str) -> Result<(), StorageError> {
    if name.is_empty() || KEY_ATTRIBUTES.contains(&name) {
        Err(StorageError::InvalidRequest(format!(
            "'{name}' cannot be an attribute name (empty, or the key)"
        )))
    } else {
        Ok(())
    }
}

/// Checks an item to write: a valid key, and attribute names that are neither empty nor the
/// key's (`PK`, `SK`).
pub(crate) fn check_item(item: &Item) -> Result<(), StorageError> {
    item.key.validate()?;
    item.attrs.keys().try_for_each(|name| check_attr_name(name))
}

/// Checks a write condition: [`Condition::Equals`] must name an attribute an item can have.
pub(crate) fn check_condition(cond: &Condition) -> Result<(), StorageError> {
    match cond {
        Condition::Equals { attr, .. } => check_attr_name(attr),
        _ => Ok(()),
    }
}
