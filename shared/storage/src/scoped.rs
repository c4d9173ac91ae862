//! Scoped access: the only way domain code reaches the table and the bucket
//! (`docs/architecture.md`, "Storage"). Every key is checked against the scope before it is
//! sent, in every build (these are plain checks, not debug assertions): a key outside the scope
//! is refused with [`StorageError::OutOfScope`] and logged.
//!
//! - [`ScopedTable`] / [`ScopedBlobs`]: one tenant's data, from a [`TenantScope`];
//! - [`GlobalTable`]: the `global#` items (sites, grants, the embedded directory); anyone may
//!   read them, an [`AdminScope`] may write any of them, and a GOVERN holder on a site may write
//!   that site's own item of one partition ([`GlobalTable::site_item_writer`]).

use std::collections::HashMap;
use std::time::Duration;

use tenant_context::{AdminScope, Permission, TenantScope};

use crate::{
    BatchOp, BlobMeta, Blobs, Condition, Item, Key, MAX_BATCH_GET, Page, Query, StorageError,
    Table, WriteOp,
};

/// Partition-key prefix of global items (sites, site-group permissions).
pub const GLOBAL_PREFIX: &str = "global#";

fn out_of_scope(what: &str, key: &str) -> StorageError {
    tracing::error!(key, "refused a {what} outside the tenant scope");
    StorageError::OutOfScope(key.to_owned())
}

/// The table, seen through one tenant's scope: keys are built as `<siteId>#<rest>` and every key
/// is checked to begin with `<siteId>#` before it is sent.
pub struct ScopedTable<'a> {
    table: &'a dyn Table,
    prefix: String,
}

impl<'a> ScopedTable<'a> {
    pub fn new(table: &'a dyn Table, scope: &TenantScope) -> Self {
        ScopedTable {
            table,
            prefix: scope.key_prefix(),
        }
    }

    /// `<siteId>#`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The partition key `<siteId>#<rest>`.
    pub fn pk(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    /// The key (`<siteId>#<pk_rest>`, `sk`).
    pub fn key(&self, pk_rest: &str, sk: impl Into<String>) -> Key {
        Key::new(self.pk(pk_rest), sk)
    }

    fn check(&self, key: &Key) -> Result<(), StorageError> {
        if key.pk.starts_with(&self.prefix) {
            Ok(())
        } else {
            Err(out_of_scope("table key", &key.pk))
        }
    }

    pub async fn get(&self, key: &Key) -> Result<Option<Item>, StorageError> {
        self.check(key)?;
        self.table.get(key).await
    }

    pub async fn batch_get(&self, keys: &[Key]) -> Result<Vec<Item>, StorageError> {
        keys.iter().try_for_each(|k| self.check(k))?;
        self.table.batch_get(keys).await
    }

    /// The items at any number of distinct `keys` ([`MAX_BATCH_GET`] per round trip), by key;
    /// missing items are left out.
    pub async fn batch_get_all(&self, keys: &[Key]) -> Result<HashMap<Key, Item>, StorageError> {
        let mut found = HashMap::with_capacity(keys.len());
        for chunk in keys.chunks(MAX_BATCH_GET) {
            for item in self.batch_get(chunk).await? {
                found.insert(item.key.clone(), item);
            }
        }
        Ok(found)
    }

    pub async fn put(&self, item: Item, cond: Condition) -> Result<(), StorageError> {
        self.check(&item.key)?;
        self.table.put(item, cond).await
    }

    pub async fn delete(&self, key: &Key, cond: Condition) -> Result<(), StorageError> {
        self.check(key)?;
        self.table.delete(key, cond).await
    }

    pub async fn query(&self, query: &Query) -> Result<Page, StorageError> {
        if !query.pk.starts_with(&self.prefix) {
            return Err(out_of_scope("query", &query.pk));
        }
        if let Some(k) = &query.start_after {
            self.check(k)?;
        }
        self.table.query(query).await
    }

    pub async fn transact(&self, ops: Vec<WriteOp>) -> Result<(), StorageError> {
        ops.iter().try_for_each(|op| self.check(op.key()))?;
        self.table.transact(ops).await
    }

    pub async fn batch_write(&self, ops: Vec<BatchOp>) -> Result<(), StorageError> {
        ops.iter().try_for_each(|op| self.check(op.key()))?;
        self.table.batch_write(ops).await
    }
}

/// Which global items a [`GlobalTable`] may write.
enum GlobalWrites {
    None,
    /// Any global item (an administrator).
    All,
    /// Exactly the item (`global#<partition>`, `<siteId>`) (a GOVERN holder on the site).
    SiteItem {
        pk: String,
        site: String,
    },
}

/// Global items (`global#...`): site definitions, site-group permissions, the embedded user
/// directory. Anyone may read them (authorization itself needs them); writing needs an
/// [`AdminScope`], or GOVERN on a site for that site's own item.
pub struct GlobalTable<'a> {
    table: &'a dyn Table,
    writes: GlobalWrites,
}

impl<'a> GlobalTable<'a> {
    /// Read access, for grant lookups.
    pub fn reader(table: &'a dyn Table) -> Self {
        GlobalTable {
            table,
            writes: GlobalWrites::None,
        }
    }

    /// Read and write access, for administrators.
    pub fn writer(table: &'a dyn Table, _admin: &AdminScope) -> Self {
        GlobalTable {
            table,
            writes: GlobalWrites::All,
        }
    }

    /// Read access, and write access to the one item (`global#<partition>`, `<siteId>`) of the
    /// scope's site (a site's own settings), for a caller holding GOVERN there. Refused with
    /// [`StorageError::OutOfScope`] when the scope lacks GOVERN.
    pub fn site_item_writer(
        table: &'a dyn Table,
        scope: &TenantScope,
        partition: &str,
    ) -> Result<Self, StorageError> {
        if !scope.allows(Permission::Govern) {
            return Err(out_of_scope(
                "global write without GOVERN on the site",
                &Self::pk(partition),
            ));
        }
        Ok(GlobalTable {
            table,
            writes: GlobalWrites::SiteItem {
                pk: Self::pk(partition),
                site: scope.site().to_string(),
            },
        })
    }

    /// The partition key `global#<rest>`.
    pub fn pk(rest: &str) -> String {
        format!("{GLOBAL_PREFIX}{rest}")
    }

    fn check(&self, pk: &str) -> Result<(), StorageError> {
        if pk.starts_with(GLOBAL_PREFIX) {
            Ok(())
        } else {
            Err(out_of_scope("global key", pk))
        }
    }

    fn check_write(&self, key: &Key) -> Result<(), StorageError> {
        self.check(&key.pk)?;
        match &self.writes {
            GlobalWrites::All => Ok(()),
            GlobalWrites::SiteItem { pk, site } if key.pk == *pk && key.sk == *site => Ok(()),
            GlobalWrites::SiteItem { .. } => Err(out_of_scope(
                "global write outside the site's own item",
                &format!("{} / {}", key.pk, key.sk),
            )),
            GlobalWrites::None => Err(out_of_scope("global write without admin scope", &key.pk)),
        }
    }

    pub async fn get(&self, key: &Key) -> Result<Option<Item>, StorageError> {
        self.check(&key.pk)?;
        self.table.get(key).await
    }

    pub async fn batch_get(&self, keys: &[Key]) -> Result<Vec<Item>, StorageError> {
        keys.iter().try_for_each(|k| self.check(&k.pk))?;
        self.table.batch_get(keys).await
    }

    pub async fn query(&self, query: &Query) -> Result<Page, StorageError> {
        self.check(&query.pk)?;
        self.table.query(query).await
    }

    pub async fn put(&self, item: Item, cond: Condition) -> Result<(), StorageError> {
        self.check_write(&item.key)?;
        self.table.put(item, cond).await
    }

    pub async fn delete(&self, key: &Key, cond: Condition) -> Result<(), StorageError> {
        self.check_write(key)?;
        self.table.delete(key, cond).await
    }

    pub async fn transact(&self, ops: Vec<WriteOp>) -> Result<(), StorageError> {
        ops.iter().try_for_each(|op| self.check_write(op.key()))?;
        self.table.transact(ops).await
    }

    pub async fn batch_write(&self, ops: Vec<BatchOp>) -> Result<(), StorageError> {
        ops.iter().try_for_each(|op| self.check_write(op.key()))?;
        self.table.batch_write(ops).await
    }
}

/// Blobs, seen through one tenant's scope: keys are `<siteId>/<rest>`.
pub struct ScopedBlobs<'a> {
    blobs: &'a dyn Blobs,
    prefix: String,
}

impl<'a> ScopedBlobs<'a> {
    pub fn new(blobs: &'a dyn Blobs, scope: &TenantScope) -> Self {
        ScopedBlobs {
            blobs,
            prefix: format!("{}/", scope.site()),
        }
    }

    /// The blob key `<siteId>/<rest>`.
    pub fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    fn check(&self, key: &str) -> Result<(), StorageError> {
        if key.starts_with(&self.prefix) {
            Ok(())
        } else {
            Err(out_of_scope("blob key", key))
        }
    }

    pub async fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> Result<(), StorageError> {
        self.check(key)?;
        self.blobs.put(key, bytes, content_type).await
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.check(key)?;
        self.blobs.get(key).await
    }

    pub async fn head(&self, key: &str) -> Result<Option<BlobMeta>, StorageError> {
        self.check(key)?;
        self.blobs.head(key).await
    }

    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.check(key)?;
        self.blobs.delete(key).await
    }

    pub async fn presign_put(
        &self,
        key: &str,
        content_type: Option<&str>,
        expires: Duration,
    ) -> Result<String, StorageError> {
        self.check(key)?;
        self.blobs.presign_put(key, content_type, expires).await
    }

    pub async fn presign_get(&self, key: &str, expires: Duration) -> Result<String, StorageError> {
        self.check(key)?;
        self.blobs.presign_get(key, expires).await
    }
}
