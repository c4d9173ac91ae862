//! Opaque paging tokens, HMAC-signed and bound to the tenant and the query, so a token
//! replayed under another tenant or for another query is refused.
//!
//! A token seals a cursor: the last key of a page ([`PageTokens::seal`]), or any serializable
//! cursor, such as the state of a search that reads several indexes
//! ([`PageTokens::seal_cursor`]). The cursor is readable by whoever holds the token (base64
//! JSON), but cannot be changed or moved to another tenant or query.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Key, StorageError};

/// Seals and opens paging tokens with one secret (`PAGING_TOKEN_SECRET`).
pub struct PageTokens {
    key: hmac::Key,
}

impl PageTokens {
    /// Tokens signed with `secret` (at least 16 bytes; every instance of a deployment must
    /// use the same one).
    pub fn new(secret: &[u8]) -> Self {
        PageTokens {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    /// The signed message: length-prefixed scope and query, then the payload.
    fn message(scope: &str, query: &str, payload: &[u8]) -> Vec<u8> {
        let mut m = Vec::with_capacity(scope.len() + query.len() + payload.len() + 16);
        for part in [scope.as_bytes(), query.as_bytes()] {
            m.extend_from_slice(&(part.len() as u64).to_be_bytes());
            m.extend_from_slice(part);
        }
        m.extend_from_slice(payload);
        m
    }

    /// A token that continues after `last` for the tenant `scope` (its key prefix) and the
    /// query identified by `query` (e.g. `"list"` or `"tag:<key>=<value>"`).
    pub fn seal(&self, scope: &str, query: &str, last: &Key) -> String {
        self.seal_cursor(scope, query, last)
    }

    /// The key a token continues after, if the token was sealed for this tenant and query (and
    /// the key lies in the tenant's key space).
    pub fn open(&self, token: &str, scope: &str, query: &str) -> Result<Key, StorageError> {
        let key: Key = self.open_cursor(token, scope, query)?;
        if !key.pk.starts_with(scope) {
            return Err(StorageError::InvalidToken);
        }
        Ok(key)
    }

    /// A token carrying `cursor` for the tenant `scope` and the query `query`. A cursor is
    /// small (it travels in URLs): a few keys and counters, not a page of results.
    pub fn seal_cursor<C: Serialize + ?Sized>(
        &self,
        scope: &str,
        query: &str,
        cursor: &C,
    ) -> String {
        // Serializing plain data (strings, numbers, keys) cannot fail; a cursor type that could
        // would be a bug caught by its own tests, so an empty cursor is sealed instead of a panic.
        let payload = serde_json::to_vec(cursor).unwrap_or_default();
        let tag = hmac::sign(&self.key, &Self::message(scope, query, &payload));
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(tag.as_ref())
        )
    }

    /// The cursor a token carries, if it was sealed by this secret for this tenant and query;
    /// every other token is [`StorageError::InvalidToken`].
    pub fn open_cursor<C: DeserializeOwned>(
        &self,
        token: &str,
        scope: &str,
        query: &str,
    ) -> Result<C, StorageError> {
        let (payload, tag) = token.split_once('.').ok_or(StorageError::InvalidToken)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| StorageError::InvalidToken)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| StorageError::InvalidToken)?;
        hmac::verify(&self.key, &Self::message(scope, query, &payload), &tag)
            .map_err(|_| StorageError::InvalidToken)?;
        serde_json::from_slice(&payload).map_err(|_| StorageError::InvalidToken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding() {
        let t = PageTokens::new(b"0123456789abcdef0123456789abcdef");
        let k = Key::new("a#docs", "2026-01-01#x");
        let tok = t.seal("a#", "list", &k);
        assert_eq!(t.open(&tok, "a#", "list"), Ok(k.clone()));
        // Another tenant, another query, another secret, tampering: all refused.
        assert_eq!(t.open(&tok, "b#", "list"), Err(StorageError::InvalidToken));
        assert_eq!(t.open(&tok, "a#", "tag:x"), Err(StorageError::InvalidToken));
        let other = PageTokens::new(b"another secret, also long enough");
        assert_eq!(
            other.open(&tok, "a#", "list"),
            Err(StorageError::InvalidToken)
        );
        let forged = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(br#"{"pk":"b#docs","sk":"z"}"#),
            tok.split_once('.').unwrap().1
        );
        assert_eq!(
            t.open(&forged, "a#", "list"),
            Err(StorageError::InvalidToken)
        );
        for junk in ["", ".", "abc", "a.b", "!!.!!", &tok[1..]] {
            assert_eq!(
                t.open(junk, "a#", "list"),
                Err(StorageError::InvalidToken),
                "{junk}"
            );
        }
    }

    #[test]
    fn any_cursor_is_sealed_and_bound() {
        #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        struct Plan {
            index: String,
            after: Vec<Key>,
            read: u32,
        }
        let t = PageTokens::new(b"0123456789abcdef0123456789abcdef");
        let plan = Plan {
            index: "Observation#code".into(),
            after: vec![Key::new("a#i1", "x"), Key::new("a#i2", "y")],
            read: 40,
        };
        let tok = t.seal_cursor("a#", "q1", &plan);
        assert_eq!(t.open_cursor::<Plan>(&tok, "a#", "q1"), Ok(plan));
        assert_eq!(
            t.open_cursor::<Plan>(&tok, "b#", "q1"),
            Err(StorageError::InvalidToken)
        );
        assert_eq!(
            t.open_cursor::<Plan>(&tok, "a#", "q2"),
            Err(StorageError::InvalidToken)
        );
        // A valid token of another cursor type does not open as this one.
        let key_token = t.seal("a#", "q1", &Key::new("a#x", "y"));
        assert_eq!(
            t.open_cursor::<Plan>(&key_token, "a#", "q1"),
            Err(StorageError::InvalidToken)
        );
    }

    #[test]
    fn scope_boundaries_are_unambiguous() {
        // "a" + "b#x" and "ab" + "#x" must not produce the same tag.
        let t = PageTokens::new(b"0123456789abcdef0123456789abcdef");
        let k = Key::new("ab#docs", "s");
        let tok = t.seal("ab#", "list", &k);
        assert_eq!(t.open(&tok, "a", "b#list"), Err(StorageError::InvalidToken));
    }
}
