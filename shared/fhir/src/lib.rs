//! The FHIR R4 library (`docs/architecture.md`, "FHIR"): resource types and id rules,
//! OperationOutcome errors, resources as raw JSON, the key layout, index-entry extraction and
//! the store with its write protocol. Storage stays generic: keys are built only through
//! `ScopedTable`.

pub mod error;
pub mod fhirpath;
pub mod http;
pub mod index;
pub mod keys;
pub mod resource;
pub mod search;
pub mod store;
pub mod types;

pub use error::{FHIR_JSON, FhirError, fhir_response, outcome};
pub use index::{Extractor, IndexEntry};
pub use resource::Resource;
pub use store::{
    Change, Current, Head, IndexHit, IndexRange, Store, StoreError, StoreOptions, Version, Write,
};
pub use types::{R4_TYPES, ResourceId, ResourceType, VersionId, etag, parse_etag};

/// The partitions that hold a tenant's FHIR data (its system history, kept after deletes), for
/// the sites function's check that a site is empty before it is deleted.
pub const SITE_DATA: [site_store::DataPartition; keys::SHARDS as usize] = {
    const fn part(pk: &'static str) -> site_store::DataPartition {
        site_store::DataPartition {
            pk,
            what: "FHIR resources",
        }
    }
    [
        part(keys::SYSTEM_HISTORY_PKS[0]),
        part(keys::SYSTEM_HISTORY_PKS[1]),
        part(keys::SYSTEM_HISTORY_PKS[2]),
        part(keys::SYSTEM_HISTORY_PKS[3]),
    ]
};
