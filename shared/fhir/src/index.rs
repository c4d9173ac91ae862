//! Index entries: what a version of a resource contributes to the search indexes. The write
//! protocol writes them for every new version, tagged with the write's commit token, and
//! deletes the superseded version's entries after the commit. The R4 search parameters'
//! extractor is `search::extract::SearchExtractor`.

use crate::resource::Resource;
use crate::types::{ResourceId, ResourceType};

/// One (search parameter, normalized value) of a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// The search parameter's code (`_id`, `_lastUpdated`, `name`, ...).
    pub param: String,
    /// The normalized value: sortable text without control characters.
    pub value: String,
    /// Whether the parameter's partition is sharded (values that only grow, such as
    /// `_lastUpdated`).
    pub sharded: bool,
}

/// Extracts the index entries of one version of a resource (never of a deletion).
pub trait Extractor: Send + Sync {
    fn entries(
        &self,
        t: ResourceType,
        id: &ResourceId,
        resource: &Resource,
        last_updated: &str,
    ) -> Vec<IndexEntry>;
}
