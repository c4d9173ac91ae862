//! The local-folder blob backend, with presigned URLs the local server verifies.
//!
//! Layout under `root`:
//!
//! - `objects/<hh>/<sha256(key) in hex>.blob`: one file per blob holding a header line (the key
//!   and content type as JSON) followed by the bytes, so content and content type change
//!   together. Hashing the key keeps every valid key a valid file name on every file system
//!   (no length, case or `a` vs `a/b` file/folder clashes), like S3's flat key space.
//! - `tmp/`: a blob is written there, flushed to disk, then renamed over its final name, so a
//!   crash leaves the old or the new blob, never a torn one (at worst a stray file in `tmp/`).
//!
//! Presigned URLs are `{base_url}/_blobs/{key}?X-Method=..&X-Expires=..[&X-Content-Type=..]
//! &X-Signature=..`, an HMAC-SHA256 over the method, key, expiry and content type. The local
//! server serves `/_blobs/...` by calling [`LocalBlobs::decode_key_path`] and
//! [`LocalBlobs::verify_presigned`], then [`Blobs::put`] or [`Blobs::get`].

use std::fmt::Display;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use ring::rand::SecureRandom;
use ring::{digest, hmac};
use serde::{Deserialize, Serialize};

use crate::blob::check_blob_key;
use crate::{BlobMeta, Blobs, StorageError};

/// First line of every blob file.
const MAGIC: &[u8] = b"LOCALBLOB1\n";
/// Longest accepted content type.
const MAX_CONTENT_TYPE: usize = 1024;
/// Longest lifetime of a presigned URL (S3's limit for SigV4 presigned URLs).
const MAX_PRESIGN_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);

fn unavailable(e: impl Display) -> StorageError {
    StorageError::Unavailable(format!("local blobs: {e}"))
}

/// What a verified presigned URL allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedUse {
    /// For a PUT URL signed with a content type: the `Content-Type` the upload must carry (and
    /// the one to store).
    pub content_type: Option<String>,
}

/// Blobs in a local folder. Cloning shares the configuration.
#[derive(Clone)]
pub struct LocalBlobs {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    base_url: String,
    key: hmac::Key,
}

impl std::fmt::Debug for LocalBlobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalBlobs")
            .field("root", &self.inner.root)
            .field("base_url", &self.inner.base_url)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    key: String,
    #[serde(default)]
    content_type: Option<String>,
}

impl LocalBlobs {
    /// Blobs under `root` (created on first write), with presigned URLs pointing at `base_url`
    /// (the local server's origin, e.g. `http://127.0.0.1:8080`) and signed with `secret`.
    pub fn new(root: PathBuf, base_url: String, secret: &[u8]) -> Self {
        LocalBlobs {
            inner: Arc::new(Inner {
                root,
                base_url: base_url.trim_end_matches('/').to_owned(),
                key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            }),
        }
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The blob key of a presigned URL's path: `encoded` is the raw (percent-encoded) path after
    /// `/_blobs/`.
    pub fn decode_key_path(encoded: &str) -> Result<String, StorageError> {
        let key = percent_decode(encoded, false)
            .ok_or_else(|| StorageError::InvalidKey("malformed percent-encoding".into()))?;
        check_blob_key(&key)?;
        Ok(key)
    }

    /// Checks a request to `/_blobs/<key>?<query>` made with `method` at `now_unix`: the URL
    /// must have been presigned by this store (same secret) for this method and key, unexpired
    /// and untampered. `key` is the decoded key ([`LocalBlobs::decode_key_path`]) and `query`
    /// the raw query string. Every failure is [`StorageError::InvalidToken`].
    pub fn verify_presigned(
        &self,
        method: &str,
        key: &str,
        query: &str,
        now_unix: u64,
    ) -> Result<PresignedUse, StorageError> {
        let bad = || StorageError::InvalidToken;
        let (mut x_method, mut x_expires, mut x_type, mut x_sig) = (None, None, None, None);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = percent_decode(name, true).ok_or_else(bad)?;
            let slot = match name.as_str() {
                "X-Method" => &mut x_method,
                "X-Expires" => &mut x_expires,
                "X-Content-Type" => &mut x_type,
                "X-Signature" => &mut x_sig,
                _ => continue,
            };
            if slot.is_some() {
                return Err(bad());
            }
            *slot = Some(percent_decode(value, true).ok_or_else(bad)?);
        }
        let (signed_method, expires, sig) = match (x_method, x_expires, x_sig) {
            (Some(m), Some(e), Some(s)) => (m, e, s),
            _ => return Err(bad()),
        };
        if signed_method != method || !matches!(method, "GET" | "PUT") {
            return Err(bad());
        }
        if method == "GET" && x_type.is_some() {
            return Err(bad());
        }
        if check_blob_key(key).is_err() {
            return Err(bad());
        }
        let expires_at: u64 = expires.parse().map_err(|_| bad())?;
        // Canonical form only, so the signed text is the one number.
        if expires_at.to_string() != expires {
            return Err(bad());
        }
        let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| bad())?;
        let message = sign_message(method, key, expires_at, x_type.as_deref());
        hmac::verify(&self.inner.key, &message, &sig).map_err(|_| bad())?;
        if now_unix > expires_at {
            return Err(bad());
        }
        Ok(PresignedUse {
            content_type: x_type,
        })
    }

    fn presign(
        &self,
        method: &str,
        key: &str,
        content_type: Option<&str>,
        expires: Duration,
    ) -> Result<String, StorageError> {
        check_blob_key(key)?;
        if let Some(ct) = content_type {
            check_content_type(ct)?;
        }
        if expires > MAX_PRESIGN_EXPIRY {
            return Err(StorageError::InvalidRequest(format!(
                "presigned URLs expire within {} seconds",
                MAX_PRESIGN_EXPIRY.as_secs()
            )));
        }
        let secs = expires.as_secs() + u64::from(expires.subsec_nanos() > 0);
        let expires_at = now_unix() + secs;
        let tag = hmac::sign(
            &self.inner.key,
            &sign_message(method, key, expires_at, content_type),
        );
        let mut url = format!(
            "{}/_blobs/{}?X-Method={method}&X-Expires={expires_at}",
            self.inner.base_url,
            key.split('/')
                .map(percent_encode)
                .collect::<Vec<_>>()
                .join("/")
        );
        if let Some(ct) = content_type {
            url.push_str("&X-Content-Type=");
            url.push_str(&percent_encode(ct));
        }
        url.push_str("&X-Signature=");
        url.push_str(&URL_SAFE_NO_PAD.encode(tag.as_ref()));
        Ok(url)
    }

    fn object_path(&self, key: &str) -> PathBuf {
        let hash = hex(digest::digest(&digest::SHA256, key.as_bytes()).as_ref());
        self.inner
            .root
            .join("objects")
            .join(&hash[..2])
            .join(format!("{hash}.blob"))
    }

    /// Runs blocking file work off the async threads.
    async fn blocking<T: Send + 'static>(
        f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        tokio::task::spawn_blocking(f).await.map_err(unavailable)?
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The signed text: length-prefixed method, key and expiry, then the content type if any.
fn sign_message(method: &str, key: &str, expires_at: u64, content_type: Option<&str>) -> Vec<u8> {
    let mut m = Vec::with_capacity(key.len() + 64);
    let expires = expires_at.to_string();
    for part in [method.as_bytes(), key.as_bytes(), expires.as_bytes()] {
        m.extend_from_slice(&(part.len() as u64).to_be_bytes());
        m.extend_from_slice(part);
    }
    match content_type {
        None => m.push(0),
        Some(ct) => {
            m.push(1);
            m.extend_from_slice(&(ct.len() as u64).to_be_bytes());
            m.extend_from_slice(ct.as_bytes());
        }
    }
    m
}

/// A content type must be usable as an HTTP header value.
fn check_content_type(ct: &str) -> Result<(), StorageError> {
    if ct.len() <= MAX_CONTENT_TYPE && ct.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
    {
        Ok(())
    } else {
        Err(StorageError::InvalidRequest(
            "content type must be at most 1024 visible ASCII characters".into(),
        ))
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// Everything but RFC 3986 unreserved characters is percent-encoded.
const NOT_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(s: &str) -> String {
    utf8_percent_encode(s, NOT_UNRESERVED).to_string()
}

/// Decodes `%XX` escapes (and `+` as a space when `plus_is_space`, as in query strings);
/// `None` if malformed or not UTF-8. Stricter than the crate's decoder, which leaves a `%` that
/// starts no escape as it is: a signed URL must have one reading only.
fn percent_decode(s: &str, plus_is_space: bool) -> Option<String> {
    let bytes = s.as_bytes();
    let well_formed = bytes.iter().enumerate().all(|(i, &b)| {
        b != b'%'
            || bytes
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return None;
    }
    let spaced;
    let s = if plus_is_space {
        spaced = s.replace('+', " ");
        spaced.as_str()
    } else {
        s
    };
    percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|d| d.into_owned())
}

fn random_name() -> Result<String, StorageError> {
    let mut b = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| unavailable("no randomness"))?;
    Ok(hex(&b))
}

/// Reads a blob file's header: the header and the number of bytes before the content.
fn read_header(file: &mut BufReader<fs::File>, path: &Path) -> Result<(Header, u64), StorageError> {
    let corrupt = || unavailable(format_args!("corrupt blob file {}", path.display()));
    let mut magic = [0u8; MAGIC.len()];
    file.read_exact(&mut magic).map_err(|_| corrupt())?;
    if magic != MAGIC {
        return Err(corrupt());
    }
    let mut line = Vec::new();
    // The header is a key (at most 1024 bytes) and a content type (at most 1024): escaped JSON
    // stays far below 16 KiB.
    file.by_ref()
        .take(16 * 1024)
        .read_until(b'\n', &mut line)
        .map_err(unavailable)?;
    if line.pop() != Some(b'\n') {
        return Err(corrupt());
    }
    let header: Header = serde_json::from_slice(&line).map_err(|_| corrupt())?;
    Ok((header, (MAGIC.len() + line.len() + 1) as u64))
}

fn open_existing(path: &Path) -> Result<Option<fs::File>, StorageError> {
    match fs::File::open(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(unavailable(e)),
    }
}

#[async_trait]
impl Blobs for LocalBlobs {
    async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<(), StorageError> {
        check_blob_key(key)?;
        check_content_type(content_type)?;
        let header = serde_json::to_vec(&Header {
            key: key.to_owned(),
            content_type: (!content_type.is_empty()).then(|| content_type.to_owned()),
        })
        .map_err(unavailable)?;
        let path = self.object_path(key);
        let tmp_dir = self.inner.root.join("tmp");
        Self::blocking(move || {
            let dir = path
                .parent()
                .ok_or_else(|| unavailable("no parent folder"))?;
            fs::create_dir_all(dir).map_err(unavailable)?;
            fs::create_dir_all(&tmp_dir).map_err(unavailable)?;
            let tmp = tmp_dir.join(format!("{}.tmp", random_name()?));
            let written = (|| {
                let mut f = fs::File::create(&tmp)?;
                f.write_all(MAGIC)?;
                f.write_all(&header)?;
                f.write_all(b"\n")?;
                f.write_all(&bytes)?;
                f.sync_all()?;
                fs::rename(&tmp, &path)?;
                // Make the rename itself durable.
                #[cfg(unix)]
                fs::File::open(dir)?.sync_all()?;
                Ok::<_, std::io::Error>(())
            })();
            if let Err(e) = written {
                let _ = fs::remove_file(&tmp);
                return Err(unavailable(e));
            }
            Ok(())
        })
        .await
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        check_blob_key(key)?;
        let path = self.object_path(key);
        Self::blocking(move || {
            let Some(file) = open_existing(&path)? else {
                return Ok(None);
            };
            let mut file = BufReader::new(file);
            read_header(&mut file, &path)?;
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes).map_err(unavailable)?;
            Ok(Some(bytes))
        })
        .await
    }

    async fn head(&self, key: &str) -> Result<Option<BlobMeta>, StorageError> {
        check_blob_key(key)?;
        let path = self.object_path(key);
        Self::blocking(move || {
            let Some(file) = open_existing(&path)? else {
                return Ok(None);
            };
            let len = file.metadata().map_err(unavailable)?.len();
            let mut file = BufReader::new(file);
            let (header, header_len) = read_header(&mut file, &path)?;
            Ok(Some(BlobMeta {
                size: len.saturating_sub(header_len),
                content_type: header.content_type,
            }))
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        check_blob_key(key)?;
        let path = self.object_path(key);
        Self::blocking(move || match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(unavailable(e)),
        })
        .await
    }

    async fn presign_put(
        &self,
        key: &str,
        content_type: Option<&str>,
        expires: Duration,
    ) -> Result<String, StorageError> {
        self.presign("PUT", key, content_type, expires)
    }

    async fn presign_get(&self, key: &str, expires: Duration) -> Result<String, StorageError> {
        self.presign("GET", key, None, expires)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_coding() {
        let s = "a b/é+%&?#=~._-";
        assert_eq!(percent_encode(s), "a%20b%2F%C3%A9%2B%25%26%3F%23%3D~._-");
        assert_eq!(percent_decode(&percent_encode(s), true).as_deref(), Some(s));
        assert_eq!(percent_decode("a+b", true).as_deref(), Some("a b"));
        assert_eq!(percent_decode("a+b", false).as_deref(), Some("a+b"));
        for bad in ["%", "%4", "%zz", "%FF", "%C3", "%+1", "%-1"] {
            assert_eq!(percent_decode(bad, true), None, "{bad}");
        }
    }

    #[test]
    fn content_types() {
        assert!(check_content_type("text/plain; charset=utf-8").is_ok());
        assert!(check_content_type("").is_ok());
        assert!(check_content_type("a\r\nX-Evil: 1").is_err());
        assert!(check_content_type(&"a".repeat(1025)).is_err());
    }
}
