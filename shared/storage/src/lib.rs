//! Tenant-scoped storage (`docs/architecture.md`, "Storage"). Knows nothing of sites, documents
//! or FHIR: domains build their keys above this interface.
//!
//! - [`Table`]: the narrow table interface (get, batch get, put, delete, query on one partition
//!   with any sort-key range, conditional and idempotent transactional writes, non-atomic batch
//!   writes; no scan). Backends, each behind a cargo feature so a binary links only what it
//!   deploys: [`DynamoTable`] (`dynamodb`) and [`EmbeddedTable`] (`embedded`, redb).
//! - [`Blobs`]: object storage with presigned URLs: [`S3Blobs`] (`s3`) and [`LocalBlobs`]
//!   (`local-blobs`, a local folder for the local server and tests).
//! - [`ScopedTable`] / [`ScopedBlobs`] / [`GlobalTable`]: the only way domain code reaches data;
//!   every key is built from a scope and checked against it before it is sent.
//! - [`PageTokens`]: opaque, signed paging tokens bound to the tenant and the query.
//! - [`retry_on_conflict`]: the one optimistic-concurrency loop.
//! - [`metered`]: what storage one request used ([`Usage`]), for the per-request metrics.

mod blob;
#[cfg(feature = "dynamodb")]
mod dynamo;
#[cfg(feature = "embedded")]
mod embedded;
#[cfg(feature = "local-blobs")]
mod local_blobs;
mod paging;
mod retry;
#[cfg(feature = "s3")]
mod s3;
mod scoped;
mod table;
mod usage;

pub use blob::{BlobMeta, Blobs};
#[cfg(feature = "dynamodb")]
pub use dynamo::DynamoTable;
#[cfg(feature = "embedded")]
pub use embedded::EmbeddedTable;
#[cfg(feature = "local-blobs")]
pub use local_blobs::{LocalBlobs, PresignedUse};
pub use paging::PageTokens;
pub use retry::{WRITE_ATTEMPTS, committed, retry_on_conflict};
#[cfg(feature = "s3")]
pub use s3::S3Blobs;
pub use scoped::{GLOBAL_PREFIX, GlobalTable, ScopedBlobs, ScopedTable};
pub use table::{
    Attrs, BATCH_WRITE_CHUNK, BatchOp, Condition, Item, Key, MAX_BATCH_GET, MAX_ITEM_BYTES,
    MAX_QUERY_LIMIT, MAX_TRANSACTION_BYTES, MAX_TRANSACTION_OPS, Page, Query, SkRange,
    StorageError, Table, WriteOp, item_size, value_size,
};

pub use tenant_context::TenantScope;
pub use usage::{Usage, metered};
