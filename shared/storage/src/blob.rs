//! The blob interface: document content and large payloads.

use std::time::Duration;

use async_trait::async_trait;

use crate::StorageError;

/// What is known about a stored blob without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobMeta {
    pub size: u64,
    pub content_type: Option<String>,
}

/// Object storage. Keys are `/`-separated paths without NUL, at most 1024 bytes.
#[async_trait]
pub trait Blobs: Send + Sync {
    async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<(), StorageError>;
    /// The blob's bytes, or `None` if there is none.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError>;
    async fn head(&self, key: &str) -> Result<Option<BlobMeta>, StorageError>;
    /// Removes the blob; absent is fine.
    async fn delete(&self, key: &str) -> Result<(), StorageError>;
    /// A URL that lets its holder PUT the blob's bytes until it expires.
    async fn presign_put(
        &self,
        key: &str,
        content_type: Option<&str>,
        expires: Duration,
    ) -> Result<String, StorageError>;
    /// A URL that lets its holder GET the blob until it expires.
    async fn presign_get(&self, key: &str, expires: Duration) -> Result<String, StorageError>;
}

/// Fails unless `key` is a usable blob key.
#[cfg_attr(not(any(feature = "s3", feature = "local-blobs")), allow(dead_code))]
pub(crate) fn check_blob_key(key: &str) -> Result<(), StorageError> {
    let ok = !key.is_empty()
        && key.len() <= 1024
        && !key.contains('\0')
        && !key.starts_with('/')
        && key
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..");
    if ok {
        Ok(())
    } else {
        Err(StorageError::InvalidKey(format!(
            "invalid blob key '{key}'"
        )))
    }
}
