//! The embedded table backend: one `redb` database file (`docs/architecture.md`, "Storage").
//!
//! One redb table `items` maps `PK bytes ++ [0] ++ SK bytes` to the JSON of the item's
//! attributes, followed, when the item has a body, by a NUL byte and the body's bytes (JSON
//! text never holds a raw NUL: serde_json escapes control characters, so the first NUL ends the
//! attributes). Keys never contain NUL ([`Key::validate`]), so the first NUL separates the
//! partition key from the sort key, and byte order of the stored keys is (partition, UTF-8 sort
//! key) order: the sort-key order DynamoDB uses. Every write is one redb write transaction
//! committed with immediate durability, so a crash leaves either the old or the new state.
//! Each call is metered ([`crate::metered`]) with the capacity DynamoDB would charge for it.

use std::fmt::Display;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use crate::table::{
    check_batch, check_batch_write, check_condition, check_item, check_query, check_transaction,
};
use crate::usage::{self, Usage};
use crate::{
    Attrs, BatchOp, Condition, Item, Key, Page, Query, SkRange, StorageError, Table, WriteOp,
    item_size,
};

const ITEMS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("items");

/// Separates the partition key from the sort key in a stored key.
const SEPARATOR: u8 = 0;

fn unavailable(e: impl Display) -> StorageError {
    StorageError::Unavailable(format!("embedded table: {e}"))
}

/// The table on an embedded redb database file. Cloning shares the open database.
#[derive(Clone)]
pub struct EmbeddedTable {
    db: Arc<Database>,
    path: Arc<PathBuf>,
}

impl std::fmt::Debug for EmbeddedTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedTable")
            .field("path", &self.path)
            .finish()
    }
}

impl EmbeddedTable {
    /// Opens the database at `path`, creating it (and its parent folders) if needed. A database
    /// file can be open only once at a time.
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                unavailable(format_args!("cannot create {}: {e}", parent.display()))
            })?;
        }
        let db = Database::create(path)
            .map_err(|e| unavailable(format_args!("cannot open {}: {e}", path.display())))?;
        // Create the table up front so read transactions can always open it.
        let txn = db.begin_write().map_err(unavailable)?;
        txn.open_table(ITEMS).map_err(unavailable)?;
        txn.commit().map_err(unavailable)?;
        Ok(EmbeddedTable {
            db: Arc::new(db),
            path: Arc::new(path.to_owned()),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in one write transaction: commits when it returns `Ok`, aborts otherwise.
    fn write<T>(
        &self,
        f: impl FnOnce(&mut redb::Table<'_, &'static [u8], &'static [u8]>) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let txn = self.db.begin_write().map_err(unavailable)?;
        let result = {
            let mut table = txn.open_table(ITEMS).map_err(unavailable)?;
            f(&mut table)
        };
        finish(txn, result)
    }
}

fn finish<T>(txn: WriteTransaction, result: Result<T, StorageError>) -> Result<T, StorageError> {
    match result {
        Ok(v) => {
            txn.commit().map_err(unavailable)?;
            Ok(v)
        }
        Err(e) => {
            txn.abort().map_err(unavailable)?;
            Err(e)
        }
    }
}

/// Counts a read call that returned `items` of `bytes` in all, priced as DynamoDB would.
fn record_read(items: &[Item], bytes: usize) {
    usage::record(Usage {
        read_units: usage::read_units(bytes),
        items_read: items.len() as u64,
        calls: 1,
        ..Usage::default()
    });
}

/// Counts a write call of `units` write units.
fn record_write(units: f64) {
    usage::record(Usage {
        write_units: units,
        calls: 1,
        ..Usage::default()
    });
}

fn partition_prefix(pk: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(pk.len() + 1);
    b.extend_from_slice(pk.as_bytes());
    b.push(SEPARATOR);
    b
}

fn encode_key(key: &Key) -> Vec<u8> {
    let mut b = partition_prefix(&key.pk);
    b.extend_from_slice(key.sk.as_bytes());
    b
}

fn decode_key(bytes: &[u8]) -> Result<Key, StorageError> {
    let unreadable = |why: &str| StorageError::Unreadable(format!("embedded table: {why}"));
    let sep = bytes
        .iter()
        .position(|&b| b == SEPARATOR)
        .ok_or_else(|| unreadable("stored key without separator"))?;
    let text = |b| std::str::from_utf8(b).map_err(|_| unreadable("stored key is not UTF-8"));
    Ok(Key::new(text(&bytes[..sep])?, text(&bytes[sep + 1..])?))
}

/// The stored value of an item: its attributes as JSON, then `[0] ++ body` if it has a body.
fn encode_value(item: &Item) -> Result<Vec<u8>, StorageError> {
    let mut v = serde_json::to_vec(&item.attrs).map_err(unavailable)?;
    if let Some(body) = &item.body {
        v.reserve(body.len() + 1);
        v.push(SEPARATOR);
        v.extend_from_slice(body);
    }
    Ok(v)
}

/// The attributes and body of a stored value. The JSON parser tells where the attributes end,
/// so the value is read once, not scanned for the separator first.
fn decode_value(bytes: &[u8]) -> Result<(Attrs, Option<&[u8]>), StorageError> {
    let unreadable =
        |e: &dyn Display| StorageError::Unreadable(format!("embedded table: stored item: {e}"));
    let mut stream = serde_json::Deserializer::from_slice(bytes).into_iter::<Attrs>();
    let attrs = match stream.next() {
        Some(Ok(attrs)) => attrs,
        Some(Err(e)) => return Err(unreadable(&e)),
        None => return Err(unreadable(&"no attributes")),
    };
    let body = match &bytes[stream.byte_offset()..] {
        [] => None,
        [SEPARATOR, body @ ..] => Some(body),
        _ => return Err(unreadable(&"bytes after the attributes")),
    };
    Ok((attrs, body))
}

fn decode_item(key: Key, bytes: &[u8]) -> Result<Item, StorageError> {
    let (attrs, body) = decode_value(bytes)?;
    Ok(Item {
        key,
        attrs,
        body: body.map(<[u8]>::to_vec),
    })
}

/// The attributes of a stored value (for conditions; the body is not copied).
fn decode_attrs(bytes: &[u8]) -> Result<Attrs, StorageError> {
    decode_value(bytes).map(|(attrs, _)| attrs)
}

/// The smallest byte string greater than every string starting with `prefix`, if any.
fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut s = prefix.to_vec();
    while let Some(last) = s.pop() {
        if last < u8::MAX {
            s.push(last + 1);
            return Some(s);
        }
    }
    None
}

/// The tighter of two lower bounds.
fn max_lower(a: Bound<Vec<u8>>, b: Bound<Vec<u8>>) -> Bound<Vec<u8>> {
    use Bound::*;
    match (&a, &b) {
        (Unbounded, _) => b,
        (_, Unbounded) => a,
        (Included(x) | Excluded(x), Included(y) | Excluded(y)) => {
            if x > y || (x == y && matches!(a, Excluded(_))) {
                a
            } else {
                b
            }
        }
    }
}

/// The tighter of two upper bounds.
fn min_upper(a: Bound<Vec<u8>>, b: Bound<Vec<u8>>) -> Bound<Vec<u8>> {
    use Bound::*;
    match (&a, &b) {
        (Unbounded, _) => b,
        (_, Unbounded) => a,
        (Included(x) | Excluded(x), Included(y) | Excluded(y)) => {
            if x < y || (x == y && matches!(a, Excluded(_))) {
                a
            } else {
                b
            }
        }
    }
}

/// Whether no byte string lies within the bounds.
fn is_empty_range(lo: &Bound<Vec<u8>>, hi: &Bound<Vec<u8>>) -> bool {
    use Bound::*;
    match (lo, hi) {
        (Unbounded, _) | (_, Unbounded) => false,
        (Included(l), Included(h)) => l > h,
        (Included(l) | Excluded(l), Included(h) | Excluded(h)) => l >= h,
    }
}

/// The stored-key bounds of a query (before `start_after`).
fn query_bounds(q: &Query) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let prefix = partition_prefix(&q.pk);
    let with = |sk: &str| {
        let mut b = prefix.clone();
        b.extend_from_slice(sk.as_bytes());
        b
    };
    let begins = |p: Vec<u8>| {
        let hi = prefix_successor(&p).map_or(Bound::Unbounded, Bound::Excluded);
        (Bound::Included(p), hi)
    };
    if let SkRange::BeginsWith(p) = &q.sk
        && !p.is_empty()
    {
        return begins(with(p));
    }
    // Every other range has bounds.
    let (lo, hi) =
        q.sk.bounds()
            .unwrap_or((Bound::Unbounded, Bound::Unbounded));
    let (partition_lo, partition_hi) = begins(prefix.clone());
    let lo = match lo {
        Bound::Unbounded => partition_lo,
        b => b.map(with),
    };
    let hi = match hi {
        Bound::Unbounded => partition_hi,
        b => b.map(with),
    };
    (lo, hi)
}

fn holds(cond: &Condition, current: Option<&[u8]>) -> Result<bool, StorageError> {
    Ok(match cond {
        Condition::None => true,
        Condition::NotExists => current.is_none(),
        Condition::Exists => current.is_some(),
        Condition::Equals { attr, value } => match current {
            None => false,
            Some(bytes) => decode_attrs(bytes)?.get(attr) == Some(value),
        },
    })
}

/// Checks `cond` on the item at `key` inside a write transaction.
fn check(
    table: &redb::Table<'_, &'static [u8], &'static [u8]>,
    key: &[u8],
    cond: &Condition,
) -> Result<(), StorageError> {
    if *cond == Condition::None {
        return Ok(());
    }
    let current = table.get(key).map_err(unavailable)?;
    if holds(cond, current.as_ref().map(|g| g.value()))? {
        Ok(())
    } else {
        Err(StorageError::ConditionFailed)
    }
}

#[async_trait]
impl Table for EmbeddedTable {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StorageError> {
        key.validate()?;
        let txn = self.db.begin_read().map_err(unavailable)?;
        let table = txn.open_table(ITEMS).map_err(unavailable)?;
        let found = table.get(encode_key(key).as_slice()).map_err(unavailable)?;
        let item = match found {
            None => None,
            Some(v) => Some(decode_item(key.clone(), v.value())?),
        };
        record_read(item.as_slice(), item.as_ref().map_or(0, item_size));
        Ok(item)
    }

    async fn batch_get(&self, keys: &[Key]) -> Result<Vec<Item>, StorageError> {
        check_batch(keys)?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let txn = self.db.begin_read().map_err(unavailable)?;
        let table = txn.open_table(ITEMS).map_err(unavailable)?;
        let mut items = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(v) = table.get(encode_key(key).as_slice()).map_err(unavailable)? {
                items.push(decode_item(key.clone(), v.value())?);
            }
        }
        // DynamoDB prices each key of a batch as its own read.
        usage::record(Usage {
            read_units: (keys.len() - items.len()) as f64
                + items
                    .iter()
                    .map(|i| usage::read_units(item_size(i)))
                    .sum::<f64>(),
            items_read: items.len() as u64,
            calls: 1,
            ..Usage::default()
        });
        Ok(items)
    }

    async fn put(&self, item: Item, cond: Condition) -> Result<(), StorageError> {
        check_item(&item)?;
        check_condition(&cond)?;
        let key = encode_key(&item.key);
        let value = encode_value(&item)?;
        record_write(usage::write_units(item_size(&item)));
        self.write(|table| {
            check(table, &key, &cond)?;
            table
                .insert(key.as_slice(), value.as_slice())
                .map_err(unavailable)?;
            Ok(())
        })
    }

    async fn delete(&self, key: &Key, cond: Condition) -> Result<(), StorageError> {
        key.validate()?;
        check_condition(&cond)?;
        let key = encode_key(key);
        record_write(1.0);
        self.write(|table| {
            check(table, &key, &cond)?;
            table.remove(key.as_slice()).map_err(unavailable)?;
            Ok(())
        })
    }

    async fn query(&self, q: &Query) -> Result<Page, StorageError> {
        check_query(q)?;
        let (mut lo, mut hi) = query_bounds(q);
        if let Some(after) = &q.start_after {
            let after = Bound::Excluded(encode_key(after));
            if q.forward {
                lo = max_lower(lo, after);
            } else {
                hi = min_upper(hi, after);
            }
        }
        if is_empty_range(&lo, &hi) {
            record_read(&[], 0);
            return Ok(Page::default());
        }
        let txn = self.db.begin_read().map_err(unavailable)?;
        let table = txn.open_table(ITEMS).map_err(unavailable)?;
        let bounds: (Bound<&[u8]>, Bound<&[u8]>) = (
            lo.as_ref().map(Vec::as_slice),
            hi.as_ref().map(Vec::as_slice),
        );
        let range = table.range::<&[u8]>(bounds).map_err(unavailable)?;
        let entries: Box<dyn Iterator<Item = _>> = if q.forward {
            Box::new(range)
        } else {
            Box::new(range.rev())
        };
        let mut items = Vec::with_capacity(q.limit.min(64));
        let mut more = false;
        for entry in entries {
            let (k, v) = entry.map_err(unavailable)?;
            if items.len() == q.limit {
                more = true;
                break;
            }
            items.push(decode_item(decode_key(k.value())?, v.value())?);
        }
        let last_key = if more {
            items.last().map(|i: &Item| i.key.clone())
        } else {
            None
        };
        record_read(&items, items.iter().map(item_size).sum());
        Ok(Page { items, last_key })
    }

    async fn transact(&self, ops: Vec<WriteOp>) -> Result<(), StorageError> {
        check_transaction(&ops)?;
        let mut encoded = Vec::with_capacity(ops.len());
        for op in &ops {
            let value = match op {
                WriteOp::Put { item, .. } => Some(encode_value(item)?),
                _ => None,
            };
            encoded.push((encode_key(op.key()), value));
        }
        // A transaction's every item costs twice a plain write.
        record_write(
            ops.iter()
                .map(|op| match op {
                    WriteOp::Put { item, .. } => 2.0 * usage::write_units(item_size(item)),
                    _ => 2.0,
                })
                .sum(),
        );
        self.write(|table| {
            // Every condition first (keys are distinct, so order does not matter) ...
            for (op, (key, _)) in ops.iter().zip(&encoded) {
                let cond = match op {
                    WriteOp::Put { cond, .. }
                    | WriteOp::Delete { cond, .. }
                    | WriteOp::Check { cond, .. } => cond,
                };
                check(table, key, cond)?;
            }
            // ... then every write.
            for (op, (key, value)) in ops.iter().zip(&encoded) {
                match (op, value) {
                    (WriteOp::Put { .. }, Some(value)) => {
                        table
                            .insert(key.as_slice(), value.as_slice())
                            .map_err(unavailable)?;
                    }
                    (WriteOp::Delete { .. }, _) => {
                        table.remove(key.as_slice()).map_err(unavailable)?;
                    }
                    _ => {}
                }
            }
            Ok(())
        })
    }

    async fn batch_write(&self, ops: Vec<BatchOp>) -> Result<(), StorageError> {
        check_batch_write(&ops)?;
        if ops.is_empty() {
            return Ok(());
        }
        let mut encoded = Vec::with_capacity(ops.len());
        for op in &ops {
            let value = match op {
                BatchOp::Put(item) => Some(encode_value(item)?),
                BatchOp::Delete(_) => None,
            };
            encoded.push((encode_key(op.key()), value));
        }
        record_write(
            ops.iter()
                .map(|op| match op {
                    BatchOp::Put(item) => usage::write_units(item_size(item)),
                    BatchOp::Delete(_) => 1.0,
                })
                .sum(),
        );
        // One redb transaction: stronger than the interface promises, and one fsync.
        self.write(|table| {
            for (key, value) in &encoded {
                match value {
                    Some(v) => table.insert(key.as_slice(), v.as_slice()),
                    None => table.remove(key.as_slice()),
                }
                .map_err(unavailable)?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successor() {
        assert_eq!(prefix_successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_successor(b"a\xff\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_successor(b"\xff"), None);
        assert_eq!(prefix_successor(b""), None);
    }

    #[test]
    fn bounds() {
        use Bound::*;
        let v = |s: &str| s.as_bytes().to_vec();
        assert_eq!(
            max_lower(Included(v("a")), Excluded(v("a"))),
            Excluded(v("a"))
        );
        assert_eq!(
            max_lower(Included(v("b")), Excluded(v("a"))),
            Included(v("b"))
        );
        assert_eq!(
            min_upper(Included(v("a")), Excluded(v("a"))),
            Excluded(v("a"))
        );
        assert_eq!(min_upper(Unbounded, Excluded(v("a"))), Excluded(v("a")));
        assert!(is_empty_range(&Included(v("a")), &Excluded(v("a"))));
        assert!(!is_empty_range(&Included(v("a")), &Included(v("a"))));
        assert!(is_empty_range(&Included(v("b")), &Included(v("a"))));
        assert!(!is_empty_range(&Excluded(v("a")), &Unbounded));
    }

    #[test]
    fn values_keep_their_body_bytes() {
        let key = Key::new("p", "s");
        let mut attrs = Attrs::new();
        attrs.insert("note".into(), serde_json::json!("a\u{0}b"));
        let body = br#"{"value":1.50,"big":123456789012345678901234567890}"#.to_vec();
        let item = Item::with_body(key.clone(), attrs.clone(), body.clone());
        let stored = encode_value(&item).unwrap();
        assert_eq!(decode_item(key.clone(), &stored).unwrap(), item);
        // Binary bodies, NUL bytes included, come back as they were.
        let binary = Item::with_body(key.clone(), attrs.clone(), vec![0, 1, 0, 255]);
        assert_eq!(
            decode_item(key.clone(), &encode_value(&binary).unwrap()).unwrap(),
            binary
        );
        // Items without a body are stored as before (plain JSON), so older files still read.
        let plain = Item::new(key.clone(), attrs);
        assert_eq!(encode_value(&plain).unwrap(), br#"{"note":"a\u0000b"}"#);
        assert_eq!(decode_item(key, br#"{"note":"a\u0000b"}"#).unwrap(), plain);
    }

    #[test]
    fn keys_round_trip() {
        let k = Key::new("site#docs", "a#b\u{10FFFF}");
        assert_eq!(decode_key(&encode_key(&k)).unwrap(), k);
        assert!(decode_key(b"no separator").is_err());
    }
}
