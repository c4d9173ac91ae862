//! Tenant-scoped storage (DESIGN.md section 4).
//!
//! - [`Table`]: the narrow table interface (get, batch get, put, delete, query on one partition,
//!   conditional and transactional writes; no scan), with an embedded backend and DynamoDB.
//! - [`Blobs`]: object storage with presigned URLs, with a local-folder backend and S3.
//! - [`ScopedTable`] / [`ScopedBlobs`]: the only way handlers reach tenant data; every key is
//!   built from a [`TenantScope`] and checked against it before it is sent.
//! - [`SiteStore`]: defined sites and per-(site, group) permissions (global items).
//! - [`PageTokens`]: opaque, signed paging tokens bound to the tenant and the query.

mod aws;
mod blob;
mod dynamo;
mod embedded;
mod local_blobs;
mod paging;
mod s3;
mod scoped;
mod sites;
mod table;

pub use aws::{AwsConfig, sdk_config};
pub use blob::{BlobMeta, Blobs};
pub use dynamo::{DynamoTable, Usage};
pub use embedded::EmbeddedTable;
pub use local_blobs::{LocalBlobs, PresignedUse};
pub use paging::PageTokens;
pub use s3::S3Blobs;
pub use scoped::{GLOBAL_PREFIX, GlobalTable, ScopedBlobs, ScopedTable};
pub use sites::{
    DataPartition, MAX_GROUP_NAME, MAX_TITLE, NewSite, SITE_DATA_PARTITIONS, SiteRecord,
    SiteStatus, SiteStore, SiteUpdate, check_group_name, check_title, site_holds_data,
    tenant_context,
};
pub use table::{
    Attrs, Condition, Item, Key, MAX_BATCH_GET, MAX_QUERY_LIMIT, MAX_TRANSACTION_OPS, Page, Query,
    SkRange, StorageError, Table, WriteOp,
};

pub use tenant_context::TenantScope;

/// A time as stored and returned: fixed-width ISO 8601 UTC with milliseconds
/// (`2026-11-22T10:00:00.000Z`), so stored timestamps sort as they read.
pub fn timestamp(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// The current time as a [`timestamp`].
pub fn now() -> String {
    timestamp(time::OffsetDateTime::now_utc())
}
