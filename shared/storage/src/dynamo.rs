//! The DynamoDB backend of [`Table`].
//!
//! One table with string keys `PK`/`SK`. Every read is a strongly consistent GetItem,
//! BatchGetItem or Query on one partition; this module has no code path that issues a Scan.
//! Attribute values map from JSON as: string → `S`, number → `N` (integers come back as
//! integers, other numbers as floats), bool → `BOOL`, null → `NULL`, array → `L`,
//! object → `M`; an item's body is the binary attribute `BODY`, stored and read as raw bytes.
//!
//! Transactions are idempotent under retries: the SDK gives every TransactWriteItems call a
//! `ClientRequestToken` (Smithy's idempotency token) and sends the same one when it retries, so
//! a retry of a transaction that was applied but whose response was lost is answered as
//! applied, not as a failed condition (`tests/tests/storage_moto.rs`,
//! `a_retried_transaction_is_not_a_false_conflict`). Every call asks for its consumed capacity
//! (`ReturnConsumedCapacity = TOTAL`); calls, items read and capacity go to the request's meter
//! ([`crate::metered`]) and to the table's totals ([`DynamoTable::usage`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, ConsumedCapacity, Delete, DeleteRequest, KeysAndAttributes,
    Put, PutRequest, ReturnConsumedCapacity, TransactWriteItem, WriteRequest,
};
use aws_setup::{AwsConfig, LazyClient, SdkConfig};
use serde_json::{Number, Value};

use crate::table::{
    BODY_ATTRIBUTE, check_batch, check_batch_write, check_condition, check_item, check_query,
    check_transaction,
};
use crate::usage::Usage;
use crate::{
    Attrs, BATCH_WRITE_CHUNK, BatchOp, Condition, Item, Key, Page, Query, SkRange, StorageError,
    Table, WriteOp,
};

const PK: &str = "PK";
const SK: &str = "SK";

/// Every call asks for the capacity it consumes (a few bytes more in the answer, no cost), for the
/// per-request metrics and [`DynamoTable::usage`].
const CAPACITY: ReturnConsumedCapacity = ReturnConsumedCapacity::Total;

/// Attempts of a BatchGetItem or BatchWriteItem before unprocessed keys are given up on.
const BATCH_ATTEMPTS: u32 = 8;

type AvMap = HashMap<String, AttributeValue>;

#[derive(Clone, Copy)]
enum Kind {
    Read,
    Write,
}

/// The table's totals behind [`DynamoTable::usage`]: atomics, so recording never takes a lock.
/// Capacity is kept in thousandths of a unit (DynamoDB reports multiples of 0.5).
#[derive(Default)]
struct Counters {
    read_milli: AtomicU64,
    write_milli: AtomicU64,
    items_read: AtomicU64,
    calls: AtomicU64,
}

fn milli(units: f64) -> u64 {
    (units * 1000.0).round().max(0.0) as u64
}

/// [`Table`] on a DynamoDB table with string keys `PK` and `SK`.
pub struct DynamoTable {
    client: LazyClient<Client>,
    table: String,
    counters: Counters,
}

impl DynamoTable {
    /// The table `table_name`, reached with `aws`. Does no I/O: the SDK configuration (region,
    /// credentials) is loaded and the client created on first use.
    pub fn new(aws: &AwsConfig, table_name: impl Into<String>) -> DynamoTable {
        DynamoTable {
            client: LazyClient::lazy(aws.clone(), |_, sdk: &SdkConfig| Client::new(sdk)),
            table: table_name.into(),
            counters: Counters::default(),
        }
    }

    /// The table named by `TABLE_NAME` (required), reached with `aws`.
    pub fn from_env(aws: &AwsConfig) -> Result<DynamoTable, String> {
        Ok(Self::new(aws, aws_setup::env_required("TABLE_NAME")?))
    }

    /// The table `table_name` through a ready client (tests and local tooling, e.g. against
    /// moto or DynamoDB Local).
    pub fn with_client(client: Client, table_name: impl Into<String>) -> DynamoTable {
        DynamoTable {
            client: LazyClient::ready(client),
            table: table_name.into(),
            counters: Counters::default(),
        }
    }

    /// The table's name.
    pub fn table_name(&self) -> &str {
        &self.table
    }

    /// What was used through this table since creation or the last [`DynamoTable::reset_usage`]
    /// (a request's own use is in [`crate::metered`]).
    pub fn usage(&self) -> Usage {
        let c = &self.counters;
        Usage {
            read_units: c.read_milli.load(Ordering::Relaxed) as f64 / 1000.0,
            write_units: c.write_milli.load(Ordering::Relaxed) as f64 / 1000.0,
            items_read: c.items_read.load(Ordering::Relaxed),
            calls: c.calls.load(Ordering::Relaxed),
        }
    }

    /// Sets the usage counters back to zero.
    pub fn reset_usage(&self) {
        let c = &self.counters;
        for counter in [&c.read_milli, &c.write_milli, &c.items_read, &c.calls] {
            counter.store(0, Ordering::Relaxed);
        }
    }

    async fn client(&self) -> &Client {
        self.client.get().await
    }

    /// Counts a call DynamoDB refused or that failed (a failed condition, a cancelled
    /// transaction, throttling): one call, with no capacity, which DynamoDB does not report for
    /// a refused request.
    fn failed(&self, e: StorageError) -> StorageError {
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        crate::usage::record(Usage {
            calls: 1,
            ..Usage::default()
        });
        e
    }

    fn record<'a>(
        &self,
        kind: Kind,
        capacity: impl IntoIterator<Item = &'a ConsumedCapacity>,
        items_read: usize,
    ) {
        let c = &self.counters;
        let mut used = Usage {
            items_read: items_read as u64,
            calls: 1,
            ..Usage::default()
        };
        for cap in capacity {
            let (r, w) = (cap.read_capacity_units(), cap.write_capacity_units());
            let (r, w) = if r.is_some() || w.is_some() {
                (r.unwrap_or(0.0), w.unwrap_or(0.0))
            } else {
                let total = cap.capacity_units().unwrap_or(0.0);
                match kind {
                    Kind::Read => (total, 0.0),
                    Kind::Write => (0.0, total),
                }
            };
            used.read_units += r;
            used.write_units += w;
        }
        c.calls.fetch_add(1, Ordering::Relaxed);
        c.items_read.fetch_add(used.items_read, Ordering::Relaxed);
        c.read_milli
            .fetch_add(milli(used.read_units), Ordering::Relaxed);
        c.write_milli
            .fetch_add(milli(used.write_units), Ordering::Relaxed);
        crate::usage::record(used);
    }
}

// ---------------------------------------------------------------------------------------------
// Conversion

fn to_av(v: &Value) -> AttributeValue {
    match v {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Number(n) => AttributeValue::N(n.to_string()),
        Value::String(s) => AttributeValue::S(s.clone()),
        Value::Array(a) => AttributeValue::L(a.iter().map(to_av).collect()),
        Value::Object(o) => {
            AttributeValue::M(o.iter().map(|(k, v)| (k.clone(), to_av(v))).collect())
        }
    }
}

fn number(n: &str) -> Result<Value, StorageError> {
    if let Ok(i) = n.parse::<i64>() {
        return Ok(Value::from(i));
    }
    if let Ok(u) = n.parse::<u64>() {
        return Ok(Value::from(u));
    }
    n.parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .map(Value::Number)
        .ok_or_else(|| {
            StorageError::Unreadable(format!("DynamoDB returned an unreadable number '{n}'"))
        })
}

fn from_av(av: AttributeValue) -> Result<Value, StorageError> {
    Ok(match av {
        AttributeValue::S(s) => Value::String(s),
        AttributeValue::N(n) => number(&n)?,
        AttributeValue::Bool(b) => Value::Bool(b),
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::L(l) => Value::Array(l.into_iter().map(from_av).collect::<Result<_, _>>()?),
        AttributeValue::M(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| Ok((k, from_av(v)?)))
                .collect::<Result<_, StorageError>>()?,
        ),
        // Sets are never written by this backend; read them as arrays if someone else did.
        AttributeValue::Ss(ss) => Value::Array(ss.into_iter().map(Value::String).collect()),
        AttributeValue::Ns(ns) => {
            Value::Array(ns.iter().map(|n| number(n)).collect::<Result<_, _>>()?)
        }
        other => {
            return Err(StorageError::Unreadable(format!(
                "DynamoDB returned an attribute of an unsupported type: {other:?}"
            )));
        }
    })
}

fn key_av(key: &Key) -> AvMap {
    HashMap::from([
        (PK.to_owned(), AttributeValue::S(key.pk.clone())),
        (SK.to_owned(), AttributeValue::S(key.sk.clone())),
    ])
}

/// The item as DynamoDB attributes (checked by [`check_item`] before).
fn item_av(item: &Item) -> AvMap {
    let mut m = key_av(&item.key);
    for (name, v) in &item.attrs {
        m.insert(name.clone(), to_av(v));
    }
    if let Some(body) = &item.body {
        m.insert(
            BODY_ATTRIBUTE.to_owned(),
            AttributeValue::B(Blob::new(body.clone())),
        );
    }
    m
}

fn key_string(m: &mut AvMap, name: &str) -> Result<String, StorageError> {
    match m.remove(name) {
        Some(AttributeValue::S(s)) => Ok(s),
        _ => Err(StorageError::Unreadable(format!(
            "DynamoDB returned an item without a string {name}"
        ))),
    }
}

fn from_item(mut m: AvMap) -> Result<Item, StorageError> {
    let key = Key::new(key_string(&mut m, PK)?, key_string(&mut m, SK)?);
    let body = match m.remove(BODY_ATTRIBUTE) {
        None => None,
        Some(AttributeValue::B(b)) => Some(b.into_inner()),
        Some(_) => return Err(StorageError::unreadable(&key, "BODY is not binary")),
    };
    let attrs = m
        .into_iter()
        .map(|(k, v)| Ok((k, from_av(v)?)))
        .collect::<Result<Attrs, StorageError>>()?;
    Ok(Item { key, attrs, body })
}

/// A condition as a DynamoDB condition expression with its names and values.
#[derive(Default)]
struct CondExpr {
    expr: Option<String>,
    names: Option<HashMap<String, String>>,
    values: Option<AvMap>,
}

/// Sets the condition `$cond` (a [`CondExpr`]) on the request builder `$builder`: every
/// builder that takes a condition (PutItem, DeleteItem, and the Put and Delete of a
/// transaction) has these three setters, but no common trait.
macro_rules! with_condition {
    ($builder:expr, $cond:expr) => {{
        let c: CondExpr = $cond;
        $builder
            .set_condition_expression(c.expr)
            .set_expression_attribute_names(c.names)
            .set_expression_attribute_values(c.values)
    }};
}

/// The condition as an expression (checked by [`check_condition`] before).
fn cond_expr(cond: &Condition) -> CondExpr {
    match cond {
        Condition::None => CondExpr::default(),
        Condition::NotExists => CondExpr {
            expr: Some("attribute_not_exists(PK)".into()),
            ..CondExpr::default()
        },
        Condition::Exists => CondExpr {
            expr: Some("attribute_exists(PK)".into()),
            ..CondExpr::default()
        },
        Condition::Equals { attr, value } => CondExpr {
            expr: Some("attribute_exists(PK) AND #a = :v".into()),
            names: Some(HashMap::from([("#a".to_owned(), attr.clone())])),
            values: Some(HashMap::from([(":v".to_owned(), to_av(value))])),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Errors

fn describe<E, R>(op: &str, err: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match (err.code(), err.message()) {
        (Some(code), Some(msg)) => format!("DynamoDB {op}: {code}: {msg}"),
        (Some(code), None) => format!("DynamoDB {op}: {code}"),
        _ => format!("DynamoDB {op}: {}", DisplayErrorContext(err)),
    }
}

/// Maps an SDK error: a failed condition is [`StorageError::ConditionFailed`], anything else
/// [`StorageError::Unavailable`] with the service's error code.
fn sdk_error<E, R>(op: &str, err: SdkError<E, R>) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    if err.code() == Some("ConditionalCheckFailedException") {
        return StorageError::ConditionFailed;
    }
    let msg = describe(op, &err);
    tracing::warn!(error = %msg, "DynamoDB call failed");
    StorageError::Unavailable(msg)
}

fn transact_error<R: std::fmt::Debug>(err: SdkError<TransactWriteItemsError, R>) -> StorageError {
    if let Some(TransactWriteItemsError::TransactionCanceledException(e)) = err.as_service_error() {
        let condition_failed = e
            .cancellation_reasons()
            .iter()
            .any(|r| r.code() == Some("ConditionalCheckFailed"))
            || (e.cancellation_reasons().is_empty()
                && e.message()
                    .is_some_and(|m| m.contains("ConditionalCheckFailed")));
        if condition_failed {
            return StorageError::ConditionFailed;
        }
    }
    sdk_error("TransactWriteItems", err)
}

fn build_error(e: impl std::fmt::Display) -> StorageError {
    StorageError::Unavailable(format!("DynamoDB request: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Queries

/// The key condition of a query, or `None` when no item can match.
struct KeyCondition {
    expr: &'static str,
    values: AvMap,
    /// Sort keys the condition reads but the range excludes (an exclusive bound of a two-sided
    /// range, read by `BETWEEN`): dropped from the results, at most two items.
    excluded: Vec<String>,
}

fn key_condition(pk: &str, range: &SkRange) -> Option<KeyCondition> {
    use std::ops::Bound::{Excluded, Included, Unbounded};
    let mut values = HashMap::from([(":pk".to_owned(), AttributeValue::S(pk.to_owned()))]);
    let mut value = |name: &str, v: &str| {
        values.insert(name.to_owned(), AttributeValue::S(v.to_owned()));
    };
    let mut excluded = Vec::new();
    let expr = match range.bounds() {
        // A non-empty prefix (every other range has bounds).
        None => {
            let SkRange::BeginsWith(p) = range else {
                return None;
            };
            value(":p", p);
            "PK = :pk AND begins_with(SK, :p)"
        }
        Some((Unbounded, Unbounded)) => "PK = :pk",
        // DynamoDB refuses an empty string in a key condition; no sort key is below "".
        Some((_, Included("") | Excluded(""))) => return None,
        Some((Included(lo), Unbounded)) => {
            value(":lo", lo);
            "PK = :pk AND SK >= :lo"
        }
        Some((Excluded(lo), Unbounded)) => {
            value(":lo", lo);
            "PK = :pk AND SK > :lo"
        }
        Some((Unbounded, Included(hi))) => {
            value(":hi", hi);
            "PK = :pk AND SK <= :hi"
        }
        Some((Unbounded, Excluded(hi))) => {
            value(":hi", hi);
            "PK = :pk AND SK < :hi"
        }
        Some((lo @ (Included(l) | Excluded(l)), hi @ (Included(h) | Excluded(h)))) => {
            // DynamoDB refuses BETWEEN with bounds out of order; nothing is between them.
            if l > h || (l == h && (matches!(lo, Excluded(_)) || matches!(hi, Excluded(_)))) {
                return None;
            }
            // One comparison per key condition: BETWEEN, and the excluded bounds dropped.
            for b in [lo, hi] {
                if let Excluded(sk) = b {
                    excluded.push(sk.to_owned());
                }
            }
            value(":lo", l);
            value(":hi", h);
            "PK = :pk AND SK BETWEEN :lo AND :hi"
        }
    };
    Some(KeyCondition {
        expr,
        values,
        excluded,
    })
}

/// Where a `start_after` sort key lies relative to the queried range.
#[derive(Debug, PartialEq, Eq)]
enum Start {
    /// Inside the range: continue after it.
    Inside,
    /// Before the range in the reading direction: read the range from its start.
    Before,
    /// After the range in the reading direction: nothing follows it.
    After,
}

/// DynamoDB refuses an `ExclusiveStartKey` outside the key condition ("The provided starting
/// key is outside query boundaries"); the interface allows any key of the partition.
fn start_position(range: &SkRange, sk: &str, forward: bool) -> Start {
    // Position in ascending order: Less = below the range, Greater = above it.
    use std::cmp::Ordering::{Equal, Greater, Less};
    use std::ops::Bound::{Excluded, Included};
    let pos = if range.contains(sk) {
        Equal
    } else {
        match (range, range.bounds()) {
            (SkRange::BeginsWith(p), None) => sk.cmp(p.as_str()),
            (_, Some((Included(lo), _))) if sk < lo => Less,
            (_, Some((Excluded(lo), _))) if sk <= lo => Less,
            _ => Greater,
        }
    };
    match (pos, forward) {
        (Equal, _) => Start::Inside,
        (Less, true) | (Greater, false) => Start::Before,
        (Greater, true) | (Less, false) => Start::After,
    }
}

/// Waits before retry `attempt` of a batch request that left `pending` items unprocessed, or
/// gives up after [`BATCH_ATTEMPTS`].
async fn batch_backoff(op: &str, attempt: u32, pending: usize) -> Result<(), StorageError> {
    if attempt >= BATCH_ATTEMPTS {
        return Err(StorageError::Unavailable(format!(
            "DynamoDB {op}: {pending} items still unprocessed after {attempt} attempts"
        )));
    }
    let backoff = Duration::from_millis((25u64 << attempt).min(1000));
    tokio::time::sleep(backoff).await;
    Ok(())
}

fn write_request(op: &BatchOp) -> Result<WriteRequest, StorageError> {
    Ok(match op {
        BatchOp::Put(item) => WriteRequest::builder()
            .put_request(
                PutRequest::builder()
                    .set_item(Some(item_av(item)))
                    .build()
                    .map_err(build_error)?,
            )
            .build(),
        BatchOp::Delete(key) => WriteRequest::builder()
            .delete_request(
                DeleteRequest::builder()
                    .set_key(Some(key_av(key)))
                    .build()
                    .map_err(build_error)?,
            )
            .build(),
    })
}

// ---------------------------------------------------------------------------------------------
// The table

#[async_trait]
impl Table for DynamoTable {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StorageError> {
        key.validate()?;
        let out = self
            .client()
            .await
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_av(key)))
            .consistent_read(true)
            .return_consumed_capacity(CAPACITY)
            .send()
            .await
            .map_err(|e| self.failed(sdk_error("GetItem", e)))?;
        self.record(
            Kind::Read,
            out.consumed_capacity(),
            usize::from(out.item.is_some()),
        );
        out.item.map(from_item).transpose()
    }

    async fn batch_get(&self, keys: &[Key]) -> Result<Vec<Item>, StorageError> {
        check_batch(keys)?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.client().await;
        let mut found: HashMap<Key, Item> = HashMap::with_capacity(keys.len());
        let mut pending: Vec<AvMap> = keys.iter().map(key_av).collect();
        let mut attempt = 0;
        loop {
            let request = KeysAndAttributes::builder()
                .set_keys(Some(pending))
                .consistent_read(true)
                .build()
                .map_err(build_error)?;
            let out = client
                .batch_get_item()
                .request_items(&self.table, request)
                .return_consumed_capacity(CAPACITY)
                .send()
                .await
                .map_err(|e| self.failed(sdk_error("BatchGetItem", e)))?;
            let items = out
                .responses
                .and_then(|mut r| r.remove(&self.table))
                .unwrap_or_default();
            self.record(
                Kind::Read,
                out.consumed_capacity.iter().flatten(),
                items.len(),
            );
            for m in items {
                let item = from_item(m)?;
                found.insert(item.key.clone(), item);
            }
            pending = out
                .unprocessed_keys
                .and_then(|mut u| u.remove(&self.table))
                .map(|ka| ka.keys)
                .unwrap_or_default();
            if pending.is_empty() {
                break;
            }
            attempt += 1;
            batch_backoff("BatchGetItem", attempt, pending.len()).await?;
        }
        Ok(keys.iter().filter_map(|k| found.remove(k)).collect())
    }

    async fn put(&self, item: Item, cond: Condition) -> Result<(), StorageError> {
        check_item(&item)?;
        check_condition(&cond)?;
        let request = self
            .client()
            .await
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item_av(&item)));
        let out = with_condition!(request, cond_expr(&cond))
            .return_consumed_capacity(CAPACITY)
            .send()
            .await
            .map_err(|e| self.failed(sdk_error("PutItem", e)))?;
        self.record(Kind::Write, out.consumed_capacity(), 0);
        Ok(())
    }

    async fn delete(&self, key: &Key, cond: Condition) -> Result<(), StorageError> {
        key.validate()?;
        check_condition(&cond)?;
        let request = self
            .client()
            .await
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key_av(key)));
        let out = with_condition!(request, cond_expr(&cond))
            .return_consumed_capacity(CAPACITY)
            .send()
            .await
            .map_err(|e| self.failed(sdk_error("DeleteItem", e)))?;
        self.record(Kind::Write, out.consumed_capacity(), 0);
        Ok(())
    }

    async fn query(&self, q: &Query) -> Result<Page, StorageError> {
        check_query(q)?;
        let Some(cond) = key_condition(&q.pk, &q.sk) else {
            return Ok(Page::default());
        };
        let mut start = match &q.start_after {
            None => None,
            Some(k) => match start_position(&q.sk, &k.sk, q.forward) {
                Start::Inside => Some(key_av(k)),
                Start::Before => None,
                Start::After => return Ok(Page::default()),
            },
        };
        // One item more than asked for tells whether more match.
        let want = q.limit + 1;
        let client = self.client().await;
        let mut items: Vec<Item> = Vec::with_capacity(want.min(128));
        loop {
            let out = client
                .query()
                .table_name(&self.table)
                .key_condition_expression(cond.expr)
                .set_expression_attribute_values(Some(cond.values.clone()))
                .scan_index_forward(q.forward)
                .consistent_read(true)
                .limit(i32::try_from(want - items.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start)
                .return_consumed_capacity(CAPACITY)
                .send()
                .await
                .map_err(|e| self.failed(sdk_error("Query", e)))?;
            let page = out.items.unwrap_or_default();
            self.record(Kind::Read, out.consumed_capacity.as_ref(), page.len());
            for m in page {
                let item = from_item(m)?;
                if !cond.excluded.contains(&item.key.sk) {
                    items.push(item);
                }
            }
            // A page can stop short of the limit (1 MB per page): read on.
            match out.last_evaluated_key {
                Some(last) if items.len() < want => start = Some(last),
                _ => break,
            }
        }
        let more = items.len() > q.limit;
        items.truncate(q.limit);
        let last_key = if more {
            items.last().map(|i| i.key.clone())
        } else {
            None
        };
        Ok(Page { items, last_key })
    }

    async fn transact(&self, ops: Vec<WriteOp>) -> Result<(), StorageError> {
        check_transaction(&ops)?;
        let mut items = Vec::with_capacity(ops.len());
        for op in &ops {
            let item = match op {
                WriteOp::Put { item, cond } => {
                    let put = Put::builder()
                        .table_name(&self.table)
                        .set_item(Some(item_av(item)));
                    let put = with_condition!(put, cond_expr(cond))
                        .build()
                        .map_err(build_error)?;
                    TransactWriteItem::builder().put(put).build()
                }
                WriteOp::Delete { key, cond } => {
                    let delete = Delete::builder()
                        .table_name(&self.table)
                        .set_key(Some(key_av(key)));
                    let delete = with_condition!(delete, cond_expr(cond))
                        .build()
                        .map_err(build_error)?;
                    TransactWriteItem::builder().delete(delete).build()
                }
                WriteOp::Check { key, cond } => {
                    let c = cond_expr(cond);
                    // A check without a condition always holds: nothing to send.
                    let Some(expr) = c.expr else { continue };
                    let check = ConditionCheck::builder()
                        .table_name(&self.table)
                        .set_key(Some(key_av(key)))
                        .condition_expression(expr)
                        .set_expression_attribute_names(c.names)
                        .set_expression_attribute_values(c.values)
                        .build()
                        .map_err(build_error)?;
                    TransactWriteItem::builder().condition_check(check).build()
                }
            };
            items.push(item);
        }
        if items.is_empty() {
            return Ok(());
        }
        let out = self
            .client()
            .await
            .transact_write_items()
            .set_transact_items(Some(items))
            .return_consumed_capacity(CAPACITY)
            .send()
            .await
            .map_err(|e| self.failed(transact_error(e)))?;
        self.record(Kind::Write, out.consumed_capacity(), 0);
        Ok(())
    }

    async fn batch_write(&self, ops: Vec<BatchOp>) -> Result<(), StorageError> {
        check_batch_write(&ops)?;
        let client = self.client().await;
        // Requests of 25 go out BATCH_WRITE_WAVE at a time: a caller writing hundreds of items
        // would otherwise wait for one round trip after another.
        let chunks: Vec<&[BatchOp]> = ops.chunks(BATCH_WRITE_CHUNK).collect();
        for wave in chunks.chunks(BATCH_WRITE_WAVE) {
            futures_util::future::try_join_all(
                wave.iter()
                    .map(|chunk| self.batch_write_chunk(client, chunk)),
            )
            .await?;
        }
        Ok(())
    }
}

/// Concurrent BatchWriteItem requests of one [`Table::batch_write`].
const BATCH_WRITE_WAVE: usize = 8;

impl DynamoTable {
    /// One BatchWriteItem of at most 25 writes, retrying unprocessed items with backoff.
    async fn batch_write_chunk(
        &self,
        client: &Client,
        chunk: &[BatchOp],
    ) -> Result<(), StorageError> {
        let mut pending = chunk
            .iter()
            .map(write_request)
            .collect::<Result<Vec<_>, _>>()?;
        let mut attempt = 0;
        loop {
            let out = client
                .batch_write_item()
                .request_items(&self.table, pending)
                .return_consumed_capacity(CAPACITY)
                .send()
                .await
                .map_err(|e| self.failed(sdk_error("BatchWriteItem", e)))?;
            self.record(Kind::Write, out.consumed_capacity.iter().flatten(), 0);
            pending = out
                .unprocessed_items
                .and_then(|mut u| u.remove(&self.table))
                .unwrap_or_default();
            if pending.is_empty() {
                return Ok(());
            }
            attempt += 1;
            batch_backoff("BatchWriteItem", attempt, pending.len()).await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::ops::Bound;

    #[test]
    fn values_round_trip() {
        let v = json!({
            "s": "x", "empty": "", "i": 3, "neg": -7, "big": u64::MAX, "f": 1.5, "b": true,
            "n": null, "l": [1, "a", [false], {"k": 2.25}], "m": {"inner": {"deep": []}},
        });
        assert_eq!(from_av(to_av(&v)).unwrap(), v);
        assert_eq!(to_av(&json!(3)), AttributeValue::N("3".into()));
        assert_eq!(from_av(AttributeValue::N("3".into())).unwrap(), json!(3));
        assert!(from_av(AttributeValue::N("3".into())).unwrap().is_i64());
        assert!(from_av(AttributeValue::N("1.5".into())).unwrap().is_f64());
        assert_eq!(
            from_av(AttributeValue::N("1E+2".into())).unwrap(),
            json!(100.0)
        );
    }

    #[test]
    fn there_is_no_scan() {
        // Every read is GetItem, BatchGetItem or Query; no call of the client's scan builder.
        let source = include_str!("dynamo.rs");
        assert!(!source.contains(concat!(".sc", "an()")));
    }

    #[test]
    fn start_positions() {
        use Start::*;
        let p = SkRange::BeginsWith("doc#".into());
        assert_eq!(start_position(&p, "doc#1", true), Inside);
        assert_eq!(start_position(&p, "a", true), Before);
        assert_eq!(start_position(&p, "z", true), After);
        assert_eq!(start_position(&p, "a", false), After);
        assert_eq!(start_position(&p, "z", false), Before);
        let b = SkRange::Between("b".into(), "d".into());
        assert_eq!(start_position(&b, "b", true), Inside);
        assert_eq!(start_position(&b, "d", false), Inside);
        assert_eq!(start_position(&b, "a", true), Before);
        assert_eq!(start_position(&b, "e", true), After);
        assert_eq!(start_position(&SkRange::All, "anything", false), Inside);
    }

    #[test]
    fn start_positions_with_exclusive_bounds() {
        use Start::*;
        let r = SkRange::Range(Bound::Excluded("b".into()), Bound::Excluded("d".into()));
        assert_eq!(start_position(&r, "c", true), Inside);
        assert_eq!(start_position(&r, "b", true), Before);
        assert_eq!(start_position(&r, "b", false), After);
        assert_eq!(start_position(&r, "d", true), After);
        assert_eq!(start_position(&r, "d", false), Before);
        assert_eq!(start_position(&SkRange::after("b"), "a", true), Before);
        assert_eq!(start_position(&SkRange::before("b"), "b", true), After);
    }

    #[test]
    fn key_conditions_read_at_most_the_range() {
        let cond = |r: SkRange| key_condition("p", &r).map(|c| (c.expr, c.excluded));
        assert_eq!(
            cond(SkRange::after("b")),
            Some(("PK = :pk AND SK > :lo", vec![]))
        );
        assert_eq!(
            cond(SkRange::before("b")),
            Some(("PK = :pk AND SK < :hi", vec![]))
        );
        assert_eq!(
            cond(SkRange::Range(
                Bound::Excluded("b".into()),
                Bound::Included("d".into())
            )),
            Some(("PK = :pk AND SK BETWEEN :lo AND :hi", vec!["b".to_owned()]))
        );
        assert_eq!(
            cond(SkRange::Range(
                Bound::Excluded("c".into()),
                Bound::Included("c".into())
            )),
            None
        );
        assert_eq!(cond(SkRange::before("")), None);
        assert_eq!(cond(SkRange::after("")), Some(("PK = :pk", vec![])));
    }
}
