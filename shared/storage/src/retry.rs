//! Optimistic concurrency: the one retry loop of every read-modify-write (`docs/architecture.md`,
//! "Write rules").
//!
//! A read-modify-write reads an item with its version, computes the change, and writes it on
//! the condition that the version is still the one read. A writer that loses to a concurrent
//! one reads again and retries, a few times, before the caller is told the item is busy.

use std::future::Future;

use crate::StorageError;

/// Attempts of one read-modify-write before giving up.
pub const WRITE_ATTEMPTS: usize = 5;

/// Runs the read-modify-write `attempt` until its conditional write wins, at most
/// [`WRITE_ATTEMPTS`] times. An attempt returns `Ok(Some(value))` when it is done (its write
/// committed, or there was nothing to write), `Ok(None)` when its write lost to a concurrent
/// writer ([`committed`] tells which), or an error, which ends the loop. When every attempt
/// lost, the result is the error `exhausted` makes.
pub async fn retry_on_conflict<T, E, F, Fut>(
    exhausted: impl FnOnce() -> E,
    mut attempt: F,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, E>>,
{
    for _ in 0..WRITE_ATTEMPTS {
        if let Some(done) = attempt().await? {
            return Ok(done);
        }
    }
    Err(exhausted())
}

/// The outcome of a conditional write inside [`retry_on_conflict`]: `Some(value)` when it
/// committed, `None` when its condition failed (a concurrent writer won), an error otherwise.
pub fn committed<T>(write: Result<T, StorageError>) -> Result<Option<T>, StorageError> {
    match write {
        Ok(v) => Ok(Some(v)),
        Err(StorageError::ConditionFailed) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn retries_lost_races_and_stops_on_errors() {
        let mut calls = 0;
        let r: Result<u32, StorageError> = retry_on_conflict(
            || StorageError::ConditionFailed,
            || {
                calls += 1;
                let n = calls;
                async move {
                    committed(if n < 3 {
                        Err(StorageError::ConditionFailed)
                    } else {
                        Ok(n)
                    })
                }
            },
        )
        .await;
        assert_eq!(r, Ok(3));

        let mut calls = 0;
        let r: Result<(), String> = retry_on_conflict(
            || "busy".to_owned(),
            || {
                calls += 1;
                async { Ok(None) }
            },
        )
        .await;
        assert_eq!((r, calls), (Err("busy".to_owned()), WRITE_ATTEMPTS));

        let mut calls = 0;
        let r: Result<(), StorageError> = retry_on_conflict(
            || StorageError::ConditionFailed,
            || {
                calls += 1;
                async { committed(Err(StorageError::Unavailable("down".into()))) }
            },
        )
        .await;
        assert_eq!(r, Err(StorageError::Unavailable("down".into())));
        assert_eq!(calls, 1);
    }
}
