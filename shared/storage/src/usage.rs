//! What storage a request used: calls, items read and capacity units, counted per task
//! (`docs/architecture.md`, "Metrics"). [`metered`] runs a future with a fresh meter; every
//! backend call made inside it adds to that meter, so the request pipeline can report each
//! request's storage use (and tenant) without storage knowing about requests. Calls made outside
//! [`metered`] are not counted here (a backend may keep its own totals, as
//! `DynamoTable::usage` does).
// Without a backend (e.g. in the pipeline's own build) nothing records.
#![cfg_attr(not(any(feature = "dynamodb", feature = "embedded")), allow(dead_code))]

use std::cell::Cell;
use std::future::Future;

/// Storage used: requests, items read and capacity units.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Usage {
    /// Read capacity units (GetItem, BatchGetItem, Query): as DynamoDB reports them, or as
    /// DynamoDB's rules price the same reads on the embedded backend.
    pub read_units: f64,
    /// Write capacity units (PutItem, DeleteItem, TransactWriteItems, BatchWriteItem), likewise.
    pub write_units: f64,
    /// Items returned by reads.
    pub items_read: u64,
    /// Requests sent to the table (with DynamoDB, retries of unprocessed keys and further query
    /// pages included; the SDK's own retries of failed requests not).
    pub calls: u64,
}

impl Usage {
    fn add(&mut self, other: Usage) {
        self.read_units += other.read_units;
        self.write_units += other.write_units;
        self.items_read += other.items_read;
        self.calls += other.calls;
    }
}

tokio::task_local! {
    static METER: Cell<Usage>;
}

/// Runs `fut` and returns its output with the storage it used (calls made by the task that
/// polls `fut`; a task it spawns is not counted).
pub async fn metered<F: Future>(fut: F) -> (F::Output, Usage) {
    METER
        .scope(Cell::new(Usage::default()), async {
            let out = fut.await;
            (out, METER.with(Cell::get))
        })
        .await
}

/// Adds one call's use to the meter of the current request, if there is one.
pub(crate) fn record(used: Usage) {
    let _ = METER.try_with(|m| {
        let mut u = m.get();
        u.add(used);
        m.set(u);
    });
}

/// Read units of a strongly consistent read of `bytes` (DynamoDB: one per 4 KB, at least one).
pub(crate) fn read_units(bytes: usize) -> f64 {
    bytes.div_ceil(4096).max(1) as f64
}

/// Write units of writing an item of `bytes` (DynamoDB: one per 1 KB, at least one).
pub(crate) fn write_units(bytes: usize) -> f64 {
    bytes.div_ceil(1024).max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_only_inside_the_scope_and_per_scope() {
        record(Usage {
            calls: 1,
            ..Usage::default()
        });
        let one = Usage {
            read_units: 0.5,
            write_units: 1.0,
            items_read: 2,
            calls: 1,
        };
        let ((), used) = metered(async {
            record(one);
            record(one);
        })
        .await;
        assert_eq!(
            used,
            Usage {
                read_units: 1.0,
                write_units: 2.0,
                items_read: 4,
                calls: 2
            }
        );
        let (_, nothing) = metered(async {}).await;
        assert_eq!(nothing, Usage::default());
    }

    #[test]
    fn units_follow_dynamodb_rules() {
        assert_eq!(read_units(0), 1.0);
        assert_eq!(read_units(4096), 1.0);
        assert_eq!(read_units(4097), 2.0);
        assert_eq!(write_units(1), 1.0);
        assert_eq!(write_units(2049), 3.0);
    }
}
