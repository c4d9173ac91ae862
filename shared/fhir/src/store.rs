//! The FHIR store: reads that see whole writes, and the one write protocol every FHIR write goes
//! through (`docs/architecture.md`, "FHIR", "Write protocol"):
//!
//! 1. read the heads of every resource touched (consistent; a head staged by a transaction is
//!    settled first: rolled forward if its transaction committed, back if it died);
//! 2. pre-write what stays invisible until the commit (`batch_write`): the past-version copy of
//!    each head about to be superseded, the new index and history entries tagged with this
//!    write's fresh commit token, and, for large transactions, the staged new versions;
//! 3. commit atomically: one head by one conditional put, up to 100 heads (and 4 MB) by one
//!    transaction, more through a commit record (heads staged as pending, the record flipped to
//!    committed, heads rolled forward);
//! 4. clean up: delete the index entries the new versions superseded.
//!
//! Visibility: an index entry counts only when its token is the token of the head's current
//! version; a history entry only when the version it names carries its token. A head staged by
//! a transaction shows its staged version once the transaction's record says committed, and its
//! current one otherwise; readers never write, so the read-only search function sees the same.

use std::collections::{HashMap, HashSet};
use std::ops::Bound;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use storage::{
    Attrs, BatchOp, Condition, Item, Key, MAX_ITEM_BYTES, MAX_QUERY_LIMIT, MAX_TRANSACTION_BYTES,
    MAX_TRANSACTION_OPS, Query, ScopedTable, SkRange, StorageError, Table, WriteOp, item_size,
};
use tenant_context::TenantScope;

use crate::index::Extractor;
use crate::keys::{self, COMMIT_SK, SHARDS};
use crate::resource::Resource;
use crate::types::{ResourceId, ResourceType, VersionId};

/// Attribute names of the FHIR items.
mod attr {
    pub const VID: &str = "vid";
    pub const TS: &str = "ts";
    pub const DELETED: &str = "deleted";
    pub const METHOD: &str = "method";
    pub const TOKEN: &str = "token";
    /// What every write of a head is conditioned on: the token, or `<token>~<pending>` while a
    /// transaction has staged the head.
    pub const CAS: &str = "cas";
    pub const IDX: &str = "idx";
    /// The token of the large transaction that staged the head.
    pub const PENDING: &str = "pending";
    /// The staged version's attributes and body (text), carried by the staged head itself
    /// when both versions fit in one item; else the version is a separate `s#<token>` item.
    pub const NEXT: &str = "next";
    pub const NEXT_BODY: &str = "nextBody";
    pub const STATE: &str = "state";
    pub const LEASE: &str = "lease";
    pub const HEADS: &str = "heads";
    pub const BLOB: &str = "blob";
}

/// One version of a resource, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Version {
    pub rtype: ResourceType,
    pub id: ResourceId,
    pub vid: VersionId,
    /// `meta.lastUpdated`.
    pub last_updated: String,
    pub deleted: bool,
    /// The HTTP method of the interaction that made it (`POST`, `PUT`, `PATCH`, `DELETE`).
    pub method: String,
    /// The commit token of the write that made it.
    pub token: String,
    /// The resource's JSON text (none for a deletion).
    pub body: Option<Vec<u8>>,
    /// The key (in the tenant's blob scope) of content kept outside the body: a Binary's
    /// `data`.
    pub blob: Option<String>,
}

impl Version {
    fn from_item(rtype: ResourceType, id: &ResourceId, item: &Item) -> Result<Self, StorageError> {
        let bad = |what: &str| StorageError::unreadable(&item.key, format!("no valid '{what}'"));
        let vid = item
            .get(attr::VID)
            .and_then(Value::as_u64)
            .ok_or_else(|| bad(attr::VID))?;
        let deleted = item
            .get(attr::DELETED)
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if !deleted && item.body.is_none() {
            return Err(bad("body"));
        }
        Ok(Version {
            rtype,
            id: id.clone(),
            vid,
            last_updated: item.str(attr::TS).ok_or_else(|| bad(attr::TS))?.to_owned(),
            deleted,
            method: item.str(attr::METHOD).unwrap_or("PUT").to_owned(),
            token: item
                .str(attr::TOKEN)
                .ok_or_else(|| bad(attr::TOKEN))?
                .to_owned(),
            body: item.body.clone(),
            blob: item.str(attr::BLOB).map(str::to_owned),
        })
    }

    /// The item of this version at `key` (a head, a past or a staged version).
    fn to_item(&self, key: Key, idx: &[Key]) -> Item {
        let mut attrs = Attrs::new();
        attrs.insert(attr::VID.into(), json!(self.vid));
        attrs.insert(attr::TS.into(), json!(self.last_updated));
        attrs.insert(attr::DELETED.into(), json!(self.deleted));
        attrs.insert(attr::METHOD.into(), json!(self.method));
        attrs.insert(attr::TOKEN.into(), json!(self.token));
        attrs.insert(attr::CAS.into(), json!(self.token));
        attrs.insert(
            attr::IDX.into(),
            Value::Array(idx.iter().map(|k| json!([k.pk, k.sk])).collect()),
        );
        if let Some(b) = &self.blob {
            attrs.insert(attr::BLOB.into(), json!(b));
        }
        Item {
            key,
            attrs,
            body: self.body.clone(),
        }
    }

    /// The resource as a JSON value (deleted versions have none).
    pub fn resource(&self) -> Option<Value> {
        self.body
            .as_deref()
            .and_then(|b| serde_json::from_slice(b).ok())
    }
}

fn idx_of(item: &Item) -> Vec<Key> {
    item.get(attr::IDX)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|k| Some(Key::new(k.get(0)?.as_str()?, k.get(1)?.as_str()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// A resource's head as a writer sees it: settled (no transaction pending on it).
#[derive(Debug, Clone)]
pub struct Head {
    pub rtype: ResourceType,
    pub id: ResourceId,
    /// The stored head item; none when the resource never existed.
    stored: Option<Item>,
    /// The current version (none when the resource never existed).
    pub current: Option<Version>,
    /// The index entries the current version owns.
    idx: Vec<Key>,
}

impl Head {
    /// The current version number (0 when none).
    pub fn vid(&self) -> VersionId {
        self.current.as_ref().map_or(0, |v| v.vid)
    }

    /// The current version unless it is a deletion.
    pub fn live(&self) -> Option<&Version> {
        self.current.as_ref().filter(|v| !v.deleted)
    }
}

/// One entry of an index partition, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexHit {
    /// The entry's sort key (where a scan continues from).
    pub sk: String,
    pub value: String,
    pub id: ResourceId,
    /// The commit token of the write that made it: it counts only when the resource's current
    /// version carries the same.
    pub token: String,
}

/// A key range of one index partition (`param` of a type; `shard` for sharded parameters),
/// read in ascending (`forward`) or descending sort-key order.
#[derive(Debug, Clone)]
pub struct IndexRange<'a> {
    pub param: &'a str,
    pub shard: Option<u32>,
    pub range: SkRange,
    pub forward: bool,
}

/// A resource's current version as search sees it, with the index entries that version owns.
#[derive(Debug, Clone)]
pub struct Current {
    pub version: Version,
    pub idx: Vec<Key>,
}

/// What a write does to one resource.
#[derive(Debug, Clone)]
pub enum Change {
    /// A new version with this content (create, update, patch); `method` is the interaction's;
    /// `blob` the key of content written beside it (a Binary's data).
    Put {
        resource: Resource,
        method: &'static str,
        blob: Option<String>,
    },
    /// A deletion: a new version marked deleted.
    Delete,
}

/// One resource's part of a write.
#[derive(Debug, Clone)]
pub struct Write {
    pub head: Head,
    pub change: Change,
}

/// Why a write did not commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// A concurrent writer changed a head after it was read: nothing was written.
    Conflict,
    /// A transaction in flight holds a resource (`Type/id`); retry shortly.
    Busy(String),
    /// A version is larger than one item can hold.
    TooLarge(String),
    Storage(StorageError),
}

impl From<StorageError> for StoreError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::ConditionFailed => StoreError::Conflict,
            e => StoreError::Storage(e),
        }
    }
}

/// Tunables of the protocol.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// How long a large transaction may stay pending before other writers may roll it back:
    /// longer than a writer can live (the template's function timeout is 29 s, API Gateway's
    /// 30 s), so a live writer is never rolled back.
    pub lease: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            lease: Duration::from_secs(30),
        }
    }
}

/// What a transaction's commit record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecordState {
    /// Committed: its staged versions are current.
    Committed,
    /// Still pending, its writer's lease running.
    Live,
    /// Pending past its lease: its writer died.
    Expired,
    /// Aborted, or gone (records are deleted only after every head is settled).
    Dead,
}

/// Bytes of a head item beyond its version's, left for staging attributes.
const STAGING_MARGIN: usize = 512;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The FHIR store of one tenant.
pub struct Store<'a> {
    t: ScopedTable<'a>,
    ext: &'a dyn Extractor,
    opts: StoreOptions,
}

impl<'a> Store<'a> {
    pub fn new(
        table: &'a dyn Table,
        scope: &TenantScope,
        ext: &'a dyn Extractor,
        opts: StoreOptions,
    ) -> Self {
        Store {
            t: ScopedTable::new(table, scope),
            ext,
            opts,
        }
    }

    fn head_key(&self, t: ResourceType, id: &ResourceId) -> Key {
        keys::head_key(&self.t, t, id)
    }

    fn parse_head(
        &self,
        t: ResourceType,
        id: &ResourceId,
        item: Option<Item>,
    ) -> Result<Head, StorageError> {
        let Some(item) = item else {
            return Ok(Head {
                rtype: t,
                id: id.clone(),
                stored: None,
                current: None,
                idx: Vec::new(),
            });
        };
        let vid = item.get(attr::VID).and_then(Value::as_u64).unwrap_or(0);
        let current = if vid == 0 {
            None
        } else {
            Some(Version::from_item(t, id, &item)?)
        };
        Ok(Head {
            rtype: t,
            id: id.clone(),
            idx: idx_of(&item),
            stored: Some(item),
            current,
        })
    }

    async fn record_state(&self, token: &str) -> Result<(RecordState, Option<Item>), StorageError> {
        let rec = self
            .t
            .get(&self.t.key(&keys::commit_pk(token), COMMIT_SK))
            .await?;
        let state = match rec.as_ref().and_then(|r| r.str(attr::STATE)) {
            Some("committed") => RecordState::Committed,
            Some("pending") => {
                let lease = rec
                    .as_ref()
                    .and_then(|r| r.get(attr::LEASE))
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                if now_ms() < lease {
                    RecordState::Live
                } else {
                    RecordState::Expired
                }
            }
            _ => RecordState::Dead,
        };
        Ok((state, rec))
    }

    /// The head as readers see it: a staged head shows its staged version when its
    /// transaction committed. Never writes.
    async fn view(
        &self,
        t: ResourceType,
        id: &ResourceId,
        item: Option<Item>,
    ) -> Result<Head, StorageError> {
        let Some(pending) = item
            .as_ref()
            .and_then(|i| i.str(attr::PENDING))
            .map(str::to_owned)
        else {
            return self.parse_head(t, id, item);
        };
        let (state, _) = self.record_state(&pending).await?;
        let head = self.parse_head(t, id, item)?;
        if state != RecordState::Committed {
            return Ok(head);
        }
        let staged = self.staged_version(&head).await?;
        Ok(Head {
            current: Some(Version::from_item(t, id, &staged)?),
            idx: idx_of(&staged),
            ..head
        })
    }

    fn staged_key(&self, t: ResourceType, id: &ResourceId, token: &str) -> Key {
        self.t
            .key(&keys::resource_pk(t, id), keys::staged_sk(token))
    }

    /// The version a staged head will roll forward to: carried by the head, or the separate
    /// `s#<token>` item.
    async fn staged_version(&self, head: &Head) -> Result<Item, StorageError> {
        let stored = head.stored.as_ref().expect("a staged head is stored");
        let token = stored.str(attr::PENDING).unwrap_or_default();
        let key = self.staged_key(head.rtype, &head.id, token);
        if let Some(Value::Object(next)) = stored.get(attr::NEXT) {
            return Ok(Item {
                key,
                attrs: next.clone(),
                body: stored.str(attr::NEXT_BODY).map(|b| b.as_bytes().to_vec()),
            });
        }
        self.t
            .get(&key)
            .await?
            .ok_or_else(|| StorageError::unreadable(&stored.key, "its staged version is missing"))
    }

    /// Settles a staged head (rolls it forward when its transaction committed, back when it
    /// died) and returns the head item as it then is. A live transaction is [`StoreError::Busy`].
    async fn settle(
        &self,
        t: ResourceType,
        id: &ResourceId,
        mut item: Option<Item>,
    ) -> Result<Option<Item>, StoreError> {
        let key = self.head_key(t, id);
        for _ in 0..8 {
            let Some(cur) = &item else { return Ok(None) };
            let Some(pending) = cur.str(attr::PENDING).map(str::to_owned) else {
                return Ok(item);
            };
            let cas = cur.get(attr::CAS).cloned().unwrap_or(Value::Null);
            let cond = Condition::Equals {
                attr: attr::CAS.into(),
                value: cas,
            };
            let (state, rec) = self.record_state(&pending).await?;
            let write = match state {
                RecordState::Live => return Err(StoreError::Busy(format!("{t}/{id}"))),
                RecordState::Committed => {
                    let head = self.parse_head(t, id, item.clone())?;
                    let staged = self.staged_version(&head).await?;
                    let v = Version::from_item(t, id, &staged)?;
                    let rolled = v.to_item(key.clone(), &idx_of(&staged));
                    let separate = !cur.attrs.contains_key(attr::NEXT);
                    let r = self.t.put(rolled, cond).await;
                    if r.is_ok() {
                        let mut done = head.idx;
                        if separate {
                            done.push(staged.key);
                        }
                        self.delete_quietly(done).await;
                    }
                    r
                }
                RecordState::Expired => {
                    if let Some(mut rec) = rec {
                        rec.attrs.insert(attr::STATE.into(), json!("aborted"));
                        let flip = self
                            .t
                            .put(
                                rec,
                                Condition::Equals {
                                    attr: attr::STATE.into(),
                                    value: json!("pending"),
                                },
                            )
                            .await;
                        match flip {
                            Ok(()) | Err(StorageError::ConditionFailed) => {}
                            Err(e) => return Err(e.into()),
                        }
                    }
                    Err(StorageError::ConditionFailed)
                }
                RecordState::Dead => self.unstage(cur.clone(), cond).await,
            };
            match write {
                Ok(()) | Err(StorageError::ConditionFailed) => {}
                Err(e) => return Err(e.into()),
            }
            item = self.t.get(&key).await?;
        }
        Err(StoreError::Busy(format!("{t}/{id}")))
    }

    /// Puts a staged head back as it was before staging (or removes a placeholder).
    async fn unstage(&self, mut staged: Item, cond: Condition) -> Result<(), StorageError> {
        if staged.get(attr::VID).and_then(Value::as_u64).unwrap_or(0) == 0 {
            return self.t.delete(&staged.key, cond).await;
        }
        staged.attrs.remove(attr::PENDING);
        staged.attrs.remove(attr::NEXT);
        staged.attrs.remove(attr::NEXT_BODY);
        let token = staged.get(attr::TOKEN).cloned().unwrap_or(Value::Null);
        staged.attrs.insert(attr::CAS.into(), token);
        self.t.put(staged, cond).await
    }

    async fn delete_quietly(&self, keys: Vec<Key>) {
        if keys.is_empty() {
            return;
        }
        if let Err(e) = self
            .t
            .batch_write(keys.into_iter().map(BatchOp::Delete).collect())
            .await
        {
            tracing::warn!(error = %e, "cleanup of superseded FHIR entries failed; they stay invisible");
        }
    }

    /// The heads of `ids` for writing, settled. Order as asked.
    pub async fn heads(&self, ids: &[(ResourceType, ResourceId)]) -> Result<Vec<Head>, StoreError> {
        let keys: Vec<Key> = ids.iter().map(|(t, id)| self.head_key(*t, id)).collect();
        let mut found = self.t.batch_get_all(&keys).await?;
        let mut heads = Vec::with_capacity(ids.len());
        for ((t, id), key) in ids.iter().zip(keys) {
            let item = self.settle(*t, id, found.remove(&key)).await?;
            heads.push(self.parse_head(*t, id, item)?);
        }
        Ok(heads)
    }

    /// The current version of a resource (deleted ones included), as readers see it.
    pub async fn read(
        &self,
        t: ResourceType,
        id: &ResourceId,
    ) -> Result<Option<Version>, StorageError> {
        let item = self.t.get(&self.head_key(t, id)).await?;
        Ok(self.view(t, id, item).await?.current)
    }

    /// Version `vid` of a resource.
    pub async fn vread(
        &self,
        t: ResourceType,
        id: &ResourceId,
        vid: VersionId,
    ) -> Result<Option<Version>, StorageError> {
        let Some(cur) = self.read(t, id).await? else {
            return Ok(None);
        };
        if vid == cur.vid {
            return Ok(Some(cur));
        }
        if vid == 0 || vid > cur.vid {
            return Ok(None);
        }
        let item = self.t.get(&keys::version_key(&self.t, t, id, vid)).await?;
        item.map(|i| Version::from_item(t, id, &i)).transpose()
    }

    /// The versions of one resource, newest first: at most `count` of those older than
    /// `before` (all when none), and the version to continue before when more remain. `None`
    /// when the resource never existed.
    pub async fn instance_history(
        &self,
        t: ResourceType,
        id: &ResourceId,
        before: Option<VersionId>,
        count: usize,
    ) -> Result<Option<(Vec<Version>, Option<VersionId>)>, StorageError> {
        let Some(cur) = self.read(t, id).await? else {
            return Ok(None);
        };
        let top = before.map_or(cur.vid, |b| b.saturating_sub(1).min(cur.vid));
        let mut out = Vec::new();
        if top == cur.vid && top > 0 {
            out.push(cur.clone());
        }
        let older_than = top.min(cur.vid.saturating_sub(1)) + 1;
        if out.len() < count && older_than > 1 {
            let mut q = Query::new(
                self.t.pk(&keys::resource_pk(t, id)),
                SkRange::Range(
                    Bound::Included(keys::version_sk(1)),
                    Bound::Excluded(keys::version_sk(older_than)),
                ),
                (count - out.len()).min(MAX_QUERY_LIMIT),
            );
            q.forward = false;
            for item in self.t.query(&q).await?.items {
                out.push(Version::from_item(t, id, &item)?);
            }
        }
        let next = match out.last() {
            Some(last) if out.len() >= count && last.vid > 1 => Some(last.vid),
            _ => None,
        };
        Ok(Some((out, next)))
    }

    /// Type (`t`) or system history, newest first: at most `count` entries with
    /// `since <= lastUpdated`, older than the entry `before` (a sort key a previous page
    /// returned), and the sort key to continue before when more may remain. The page may be
    /// shorter than `count` when entries of writes that never committed are dropped.
    pub async fn history(
        &self,
        t: Option<ResourceType>,
        since: Option<&str>,
        before: Option<&str>,
        count: usize,
    ) -> Result<(Vec<Version>, Option<String>), StorageError> {
        let count = count.clamp(1, MAX_QUERY_LIMIT);
        let lo = since.map_or(Bound::Unbounded, |s| Bound::Included(s.to_owned()));
        let hi = before.map_or(Bound::Unbounded, |b| Bound::Excluded(b.to_owned()));
        let mut entries: Vec<Item> = Vec::new();
        let mut more = false;
        for shard in 0..SHARDS {
            let pk = match t {
                Some(t) => keys::type_history_pk(t, shard),
                None => keys::system_history_pk(shard),
            };
            let mut q = Query::new(
                self.t.pk(&pk),
                SkRange::Range(lo.clone(), hi.clone()),
                count,
            );
            q.forward = false;
            let page = self.t.query(&q).await?;
            more |= page.last_key.is_some();
            entries.extend(page.items);
        }
        entries.sort_by(|a, b| b.key.sk.cmp(&a.key.sk));
        if entries.len() > count {
            entries.truncate(count);
            more = true;
        }
        let next = if more {
            entries.last().map(|e| e.key.sk.clone())
        } else {
            None
        };
        let parsed: Vec<_> = entries
            .iter()
            .filter_map(|e| {
                let h = keys::parse_history_sk(&e.key.sk)?;
                Some((h.rtype, h.id, h.vid, h.token))
            })
            .collect();
        let versions = self.visible_versions(&parsed).await?;
        Ok((versions, next))
    }

    /// Of `(type, id, vid, token)`, the versions that carry that token, in the order given.
    async fn visible_versions(
        &self,
        wanted: &[(ResourceType, ResourceId, VersionId, String)],
    ) -> Result<Vec<Version>, StorageError> {
        let mut keys: Vec<Key> = Vec::new();
        let mut seen = HashSet::new();
        for (t, id, vid, _) in wanted {
            for k in [
                self.head_key(*t, id),
                keys::version_key(&self.t, *t, id, *vid),
            ] {
                if seen.insert(k.clone()) {
                    keys.push(k);
                }
            }
        }
        let items = self.t.batch_get_all(&keys).await?;
        let mut views: HashMap<(ResourceType, ResourceId), Option<Version>> = HashMap::new();
        let mut out = Vec::new();
        for (t, id, vid, token) in wanted {
            let slot = (*t, id.clone());
            if let std::collections::hash_map::Entry::Vacant(e) = views.entry(slot) {
                let item = items.get(&self.head_key(*t, id)).cloned();
                e.insert(self.view(*t, id, item).await?.current);
            }
            let Some(cur) = views[&(*t, id.clone())].as_ref() else {
                continue;
            };
            let v = if *vid == cur.vid {
                Some(cur.clone())
            } else if *vid < cur.vid {
                items
                    .get(&keys::version_key(&self.t, *t, id, *vid))
                    .map(|i| Version::from_item(*t, id, i))
                    .transpose()?
            } else {
                None
            };
            if let Some(v) = v.filter(|v| v.token == *token) {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// The visible entries of an index partition (`param` of type `t`): `(value, id)` in
    /// value order. For tests and the search engine's checks; reads the whole partition.
    pub async fn index_entries(
        &self,
        t: ResourceType,
        param: &str,
        sharded: bool,
    ) -> Result<Vec<(String, ResourceId)>, StorageError> {
        let pks: Vec<String> = if sharded {
            (0..SHARDS)
                .map(|s| keys::index_pk(t, param, Some(s)))
                .collect()
        } else {
            vec![keys::index_pk(t, param, None)]
        };
        let mut found = Vec::new();
        for pk in pks {
            let mut q = Query::new(self.t.pk(&pk), SkRange::All, MAX_QUERY_LIMIT);
            loop {
                let page = self.t.query(&q).await?;
                for item in &page.items {
                    let entry = keys::parse_index_sk(&item.key.sk)
                        .ok_or_else(|| StorageError::unreadable(&item.key, "not an index entry"))?;
                    found.push(entry);
                }
                match page.last_key {
                    Some(k) => q.start_after = Some(k),
                    None => break,
                }
            }
        }
        // The current versions of the entries' resources.
        let mut ids: Vec<&ResourceId> = found.iter().map(|(_, id, _)| id).collect();
        ids.sort();
        ids.dedup();
        let keys: Vec<Key> = ids.iter().map(|id| self.head_key(t, id)).collect();
        let mut items = self.t.batch_get_all(&keys).await?;
        let mut current: HashMap<ResourceId, Version> = HashMap::new();
        for (id, key) in ids.into_iter().zip(keys) {
            if let Some(v) = self.view(t, id, items.remove(&key)).await?.current {
                current.insert(id.clone(), v);
            }
        }
        let mut out: Vec<(String, ResourceId)> = found
            .into_iter()
            .filter(|(_, id, token)| {
                current
                    .get(id)
                    .is_some_and(|cur| !cur.deleted && cur.token == *token)
            })
            .map(|(value, id, _)| (value, id))
            .collect();
        out.sort();
        Ok(out)
    }

    /// One page of an index partition's entries in a range (ascending or descending sort-key
    /// order), after the sort key `start_after`: the entries and the sort key to continue after when more
    /// remain. Consistent; visibility is the caller's to check against [`Store::current`].
    pub async fn index_page(
        &self,
        t: ResourceType,
        r: &IndexRange<'_>,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<IndexHit>, Option<String>), StorageError> {
        let pk = self.t.pk(&keys::index_pk(t, r.param, r.shard));
        let mut q = Query::new(pk.clone(), r.range.clone(), limit.clamp(1, MAX_QUERY_LIMIT));
        q.forward = r.forward;
        q.start_after = start_after.map(|sk| Key::new(pk, sk));
        let page = self.t.query(&q).await?;
        let mut hits = Vec::with_capacity(page.items.len());
        for item in page.items {
            let (value, id, token) = keys::parse_index_sk(&item.key.sk)
                .ok_or_else(|| StorageError::unreadable(&item.key, "not an index entry"))?;
            hits.push(IndexHit {
                sk: item.key.sk,
                value,
                id,
                token,
            });
        }
        Ok((hits, page.last_key.map(|k| k.sk)))
    }

    /// The scoped partition key of an index partition (what [`Current::idx`] keys carry).
    pub fn index_partition(&self, t: ResourceType, param: &str, shard: Option<u32>) -> String {
        self.t.pk(&keys::index_pk(t, param, shard))
    }

    /// The current, not deleted, versions of `ids` as readers see them, with the index
    /// entries each owns (one consistent batch read; staged heads resolved, never written).
    pub async fn current(
        &self,
        ids: &[(ResourceType, ResourceId)],
    ) -> Result<HashMap<(ResourceType, ResourceId), Current>, StorageError> {
        let keys: Vec<Key> = ids.iter().map(|(t, id)| self.head_key(*t, id)).collect();
        let mut items = self.t.batch_get_all(&keys).await?;
        let mut out = HashMap::with_capacity(ids.len());
        for ((t, id), key) in ids.iter().zip(keys) {
            let Some(item) = items.remove(&key) else {
                continue;
            };
            let head = self.view(*t, id, Some(item)).await?;
            if let Some(v) = head.current.filter(|v| !v.deleted) {
                out.insert(
                    (*t, id.clone()),
                    Current {
                        version: v,
                        idx: head.idx,
                    },
                );
            }
        }
        Ok(out)
    }

    /// Commits `writes` atomically (all or nothing) and returns the new versions, in the order
    /// of `writes`. Every head must have been read with [`Store::heads`]; a head changed since
    /// is [`StoreError::Conflict`] and nothing is written.
    pub async fn commit(&self, writes: Vec<Write>) -> Result<Vec<Version>, StoreError> {
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        let token = uuid::Uuid::new_v4().simple().to_string();
        let now = timestamp::now();
        let ts = writes
            .iter()
            .filter_map(|w| w.head.current.as_ref())
            .map(|v| v.last_updated.as_str())
            .max()
            .filter(|latest| **latest >= *now)
            .map_or(now.clone(), timestamp::next_milli);
        let mut pre: Vec<BatchOp> = Vec::new();
        let mut undo: Vec<Key> = Vec::new();
        let mut cleanup: Vec<Key> = Vec::new();
        let mut commits: Vec<(Item, Condition, &Head)> = Vec::new();
        let mut versions = Vec::with_capacity(writes.len());
        for w in &writes {
            let (t, id) = (w.head.rtype, &w.head.id);
            let vid = w.head.vid() + 1;
            let (body, method, entries, blob) = match &w.change {
                Change::Put {
                    resource,
                    method,
                    blob,
                } => {
                    let mut r = resource.clone();
                    r.set_id(id);
                    r.set_meta(vid, &ts);
                    let entries = self.ext.entries(t, id, &r, &ts);
                    (Some(r.to_bytes()), *method, entries, blob.clone())
                }
                Change::Delete => (None, "DELETE", Vec::new(), None),
            };
            let v = Version {
                rtype: t,
                id: id.clone(),
                vid,
                last_updated: ts.clone(),
                deleted: body.is_none(),
                method: method.to_owned(),
                token: token.clone(),
                body,
                blob,
            };
            let shard = keys::shard(t, id);
            let mut idx = Vec::with_capacity(entries.len());
            for e in entries {
                let key = self.t.key(
                    &keys::index_pk(t, &e.param, e.sharded.then_some(shard)),
                    keys::index_sk(&e.value, id, &token),
                );
                let mut attrs = Attrs::new();
                attrs.insert(attr::TOKEN.into(), json!(token));
                pre.push(BatchOp::Put(Item::new(key.clone(), attrs)));
                idx.push(key);
            }
            let hsk = keys::history_sk(&ts, t, id, vid, &token);
            for pk in [
                keys::type_history_pk(t, shard),
                keys::system_history_pk(shard),
            ] {
                let key = self.t.key(&pk, hsk.clone());
                pre.push(BatchOp::Put(Item::new(key.clone(), Attrs::new())));
                undo.push(key);
            }
            undo.extend(idx.iter().cloned());
            if let Some(cur) = &w.head.current {
                pre.push(BatchOp::Put(
                    cur.to_item(keys::version_key(&self.t, t, id, cur.vid), &[]),
                ));
            }
            let head = v.to_item(self.head_key(t, id), &idx);
            if item_size(&head) + STAGING_MARGIN > MAX_ITEM_BYTES {
                return Err(StoreError::TooLarge(format!(
                    "{t}/{id} is {} bytes; a resource may be at most {} bytes",
                    v.body.as_ref().map_or(0, Vec::len),
                    MAX_ITEM_BYTES - STAGING_MARGIN - 1024
                )));
            }
            let cond = match &w.head.stored {
                None => Condition::NotExists,
                Some(s) => Condition::Equals {
                    attr: attr::CAS.into(),
                    value: s.get(attr::CAS).cloned().unwrap_or(Value::Null),
                },
            };
            cleanup.extend(w.head.idx.iter().cloned());
            commits.push((head, cond, &w.head));
            versions.push(v);
        }
        let total: usize = commits.iter().map(|(i, _, _)| item_size(i)).sum();
        let via_record = commits.len() > MAX_TRANSACTION_OPS || total > MAX_TRANSACTION_BYTES;
        self.t.batch_write(pre).await?;
        let result = if commits.len() == 1 {
            let (head, cond, _) = commits.pop().expect("one write");
            self.t.put(head, cond).await.map_err(StoreError::from)
        } else if !via_record {
            self.t
                .transact(
                    commits
                        .into_iter()
                        .map(|(item, cond, _)| WriteOp::Put { item, cond })
                        .collect(),
                )
                .await
                .map_err(StoreError::from)
        } else {
            self.commit_via_record(&token, commits).await
        };
        match result {
            Ok(()) => {
                self.delete_quietly(cleanup).await;
                Ok(versions)
            }
            Err(StoreError::Conflict) => {
                self.delete_quietly(undo).await;
                Err(StoreError::Conflict)
            }
            Err(e) => Err(e),
        }
    }

    /// Commits more heads than one transaction holds: stage every head as pending on a commit
    /// record, flip the record to committed (the commit point), roll the heads forward.
    async fn commit_via_record(
        &self,
        token: &str,
        commits: Vec<(Item, Condition, &Head)>,
    ) -> Result<(), StoreError> {
        let rec_key = self.t.key(&keys::commit_pk(token), COMMIT_SK);
        let mut rec = Attrs::new();
        rec.insert(attr::STATE.into(), json!("pending"));
        rec.insert(
            attr::LEASE.into(),
            json!(now_ms() + self.opts.lease.as_millis() as u64),
        );
        rec.insert(attr::HEADS.into(), json!(commits.len()));
        // Stage: each head keeps its current version, points at the record and carries the
        // new version (or, when both do not fit in one item, a separate staged item does).
        let mut staged_heads: Vec<(Item, Item, Condition)> = Vec::with_capacity(commits.len());
        let mut stage_ops = Vec::with_capacity(commits.len());
        let mut separate: Vec<BatchOp> = Vec::new();
        for (new_head, cond, head) in &commits {
            let mut staged = match &head.stored {
                Some(stored) => {
                    let mut s = stored.clone();
                    let cas = format!("{}~{token}", stored.str(attr::CAS).unwrap_or_default());
                    s.attrs.insert(attr::CAS.into(), json!(cas));
                    s.attrs.insert(attr::PENDING.into(), json!(token));
                    s
                }
                None => {
                    let mut a = Attrs::new();
                    a.insert(attr::VID.into(), json!(0));
                    a.insert(attr::CAS.into(), json!(format!("~{token}")));
                    a.insert(attr::PENDING.into(), json!(token));
                    Item::new(new_head.key.clone(), a)
                }
            };
            staged
                .attrs
                .insert(attr::NEXT.into(), Value::Object(new_head.attrs.clone()));
            if let Some(b) = &new_head.body {
                staged
                    .attrs
                    .insert(attr::NEXT_BODY.into(), json!(String::from_utf8_lossy(b)));
            }
            let fits = new_head
                .body
                .as_ref()
                .is_none_or(|b| std::str::from_utf8(b).is_ok());
            if !fits || item_size(&staged) + STAGING_MARGIN > MAX_ITEM_BYTES {
                staged.attrs.remove(attr::NEXT);
                staged.attrs.remove(attr::NEXT_BODY);
                let mut item = new_head.clone();
                item.key = Key::new(new_head.key.pk.clone(), keys::staged_sk(token));
                separate.push(BatchOp::Put(item));
            }
            let staged_cond = Condition::Equals {
                attr: attr::CAS.into(),
                value: staged.get(attr::CAS).cloned().unwrap_or(Value::Null),
            };
            stage_ops.push(WriteOp::Put {
                item: staged.clone(),
                cond: cond.clone(),
            });
            staged_heads.push((staged, new_head.clone(), staged_cond));
        }
        if !separate.is_empty() {
            self.t.batch_write(separate).await?;
        }
        self.t
            .put(
                Item::new(rec_key.clone(), rec.clone()),
                Condition::NotExists,
            )
            .await?;
        let mut done = 0;
        for chunk in transact_chunks(stage_ops) {
            let n = chunk.len();
            if let Err(e) = self.t.transact(chunk).await {
                self.abort(&rec_key, rec.clone(), &staged_heads[..done])
                    .await;
                return Err(e.into());
            }
            done += n;
        }
        // The commit point.
        let mut committed = rec.clone();
        committed.insert(attr::STATE.into(), json!("committed"));
        let flip = self
            .t
            .put(
                Item::new(rec_key.clone(), committed),
                Condition::Equals {
                    attr: attr::STATE.into(),
                    value: json!("pending"),
                },
            )
            .await;
        if let Err(e) = flip {
            if e == StorageError::ConditionFailed {
                self.abort(&rec_key, rec, &staged_heads).await;
            }
            return Err(e.into());
        }
        // Roll forward; a head another writer already rolled forward fails its condition.
        let roll: Vec<WriteOp> = staged_heads
            .iter()
            .map(|(_, new_head, cond)| WriteOp::Put {
                item: new_head.clone(),
                cond: cond.clone(),
            })
            .collect();
        let separate: HashSet<String> = staged_heads
            .iter()
            .filter(|(s, _, _)| !s.attrs.contains_key(attr::NEXT))
            .map(|(s, _, _)| s.key.pk.clone())
            .collect();
        let staged_of = |k: &Key| Key::new(k.pk.clone(), keys::staged_sk(token));
        let mut rolled: Vec<Key> = Vec::with_capacity(staged_heads.len());
        let mut all_rolled = true;
        for chunk in transact_chunks(roll) {
            let keys: Vec<Key> = chunk.iter().map(|op| staged_of(op.key())).collect();
            match self.t.transact(chunk.clone()).await {
                Ok(()) => rolled.extend(keys),
                Err(StorageError::ConditionFailed) => {
                    for op in chunk {
                        if let WriteOp::Put { item, cond } = op {
                            let staged = staged_of(&item.key);
                            match self.t.put(item, cond).await {
                                // Failed: another writer rolled it forward (and removed its
                                // staged version).
                                Ok(()) | Err(StorageError::ConditionFailed) => rolled.push(staged),
                                Err(e) => {
                                    all_rolled = false;
                                    tracing::warn!(error = %e, "roll-forward left to the next writer");
                                }
                            }
                        }
                    }
                }
                Err(e) => {
                    // Committed: readers already see the staged versions; the next writer of
                    // each head finishes the roll-forward.
                    all_rolled = false;
                    tracing::warn!(error = %e, "roll-forward left to the next writer");
                    break;
                }
            }
        }
        // Separate staged versions of rolled heads are copies of the heads now; the record is
        // needed while any head still points at it.
        rolled.retain(|k| separate.contains(&k.pk));
        self.delete_quietly(rolled).await;
        if all_rolled && let Err(e) = self.t.delete(&rec_key, Condition::None).await {
            tracing::warn!(error = %e, "commit record left behind; it is harmless");
        }
        Ok(())
    }

    /// Marks a record aborted and puts back the heads this writer staged (best effort: what is
    /// left is settled by the next writer).
    async fn abort(&self, rec_key: &Key, mut rec: Attrs, staged: &[(Item, Item, Condition)]) {
        rec.insert(attr::STATE.into(), json!("aborted"));
        let flip = self
            .t
            .put(
                Item::new(rec_key.clone(), rec),
                Condition::Equals {
                    attr: attr::STATE.into(),
                    value: json!("pending"),
                },
            )
            .await;
        if flip.is_err() {
            // Committed by nobody else (only this writer commits), so the record is aborted
            // already or unreachable; a staged head of a record not committed reads as before.
            return;
        }
        for (s, _, cond) in staged {
            if let Err(e) = self.unstage(s.clone(), cond.clone()).await
                && e != StorageError::ConditionFailed
            {
                tracing::warn!(error = %e, "unstaging left to the next writer");
            }
        }
    }
}

/// Splits writes into transactions within DynamoDB's limits (100 operations, 4 MB).
fn transact_chunks(ops: Vec<WriteOp>) -> Vec<Vec<WriteOp>> {
    let mut out: Vec<Vec<WriteOp>> = Vec::new();
    let mut size = 0;
    for op in ops {
        let s = match &op {
            WriteOp::Put { item, .. } => item_size(item),
            _ => 0,
        };
        match out.last_mut() {
            Some(cur) if cur.len() < MAX_TRANSACTION_OPS && size + s <= MAX_TRANSACTION_BYTES => {
                size += s;
                cur.push(op);
            }
            _ => {
                size = s;
                out.push(vec![op]);
            }
        }
    }
    out
}
