//! The FHIR key layout (`docs/architecture.md`, "Key layout", FHIR). Every key below is shown
//! after the `<siteId>#` prefix that `ScopedTable` adds; this module is the only place that
//! spells them.
//!
//! | item | PK | SK |
//! |---|---|---|
//! | head (current version) | `fhir#r#<Type>/<id>` | `head` |
//! | past version | `fhir#r#<Type>/<id>` | `v#<vid, 10 digits>` |
//! | version staged by a large transaction | `fhir#r#<Type>/<id>` | `s#<token>` |
//! | index entry | `fhir#i#<Type>#<param>` (`#<shard>` for `_lastUpdated`) | `<value>` U+001F `<id>` U+001F `<token>` |
//! | type history entry | `fhir#h#<Type>#<shard>` | `<lastUpdated>\|<Type>/<id>\|<vid, 10 digits>\|<token>` |
//! | system history entry | `fhir#h#<shard>` | the same |
//! | commit record | `fhir#c#<token>` | `commit` |
//!
//! Keys written before a commit (index and history entries, staged versions) carry the
//! write's commit token, so two writers racing for the same version never write the same key:
//! the loser's leftovers are invisible and never overwrite the winner's.
//!
//! Ids are `[A-Za-z0-9-.]`, types letters and timestamps fixed-width, so `/`, `|` and `#`
//! separate unambiguously and text order is time order. Index values never contain U+001F
//! (the extractor strips control characters), so one value's entries never run into
//! another's. Partitions whose sort keys only grow (history, `_lastUpdated`) are spread over
//! [`SHARDS`] partitions by a hash of `<Type>/<id>` and read by merging.

use storage::ScopedTable;

use crate::types::{ResourceId, ResourceType, VersionId};

/// Shards of the partitions whose sort keys only grow.
pub const SHARDS: u32 = 4;

/// Sort key of a resource's head.
pub const HEAD_SK: &str = "head";
/// Sort-key prefix of a resource's version items.
pub const VERSION_PREFIX: &str = "v#";
/// Sort-key prefix of a version staged by a large transaction.
pub const STAGED_PREFIX: &str = "s#";

/// `s#<token>`: the version a large transaction staged for a resource.
pub fn staged_sk(token: &str) -> String {
    format!("{STAGED_PREFIX}{token}")
}

/// Sort key of a commit record.
pub const COMMIT_SK: &str = "commit";

/// The shard of a resource: FNV-1a of `<Type>/<id>`, stable across processes and releases.
pub fn shard(t: ResourceType, id: &ResourceId) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in t.as_str().bytes().chain([b'/']).chain(id.as_str().bytes()) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % SHARDS
}

/// `fhir#r#<Type>/<id>` (after the tenant prefix).
pub fn resource_pk(t: ResourceType, id: &ResourceId) -> String {
    format!("fhir#r#{t}/{id}")
}

/// `v#<vid>`, zero-padded so text order is version order.
pub fn version_sk(vid: VersionId) -> String {
    format!("{VERSION_PREFIX}{vid:010}")
}

/// The version of a version item's sort key.
pub fn parse_version_sk(sk: &str) -> Option<VersionId> {
    sk.strip_prefix(VERSION_PREFIX)?.parse().ok()
}

/// `fhir#i#<Type>#<param>`, with `#<shard>` for sharded parameters.
pub fn index_pk(t: ResourceType, param: &str, shard: Option<u32>) -> String {
    match shard {
        Some(s) => format!("fhir#i#{t}#{param}#{s}"),
        None => format!("fhir#i#{t}#{param}"),
    }
}

/// `<value>` U+001F `<id>` U+001F `<token>`.
pub fn index_sk(value: &str, id: &ResourceId, token: &str) -> String {
    format!("{value}\u{1f}{id}\u{1f}{token}")
}

/// The value, id and commit token of an index entry's sort key.
pub fn parse_index_sk(sk: &str) -> Option<(String, ResourceId, String)> {
    let mut parts = sk.split('\u{1f}');
    let value = parts.next()?.to_owned();
    let id = ResourceId::parse(parts.next()?)?;
    let token = parts.next()?.to_owned();
    Some((value, id, token))
}

/// `fhir#h#<Type>#<shard>`.
pub fn type_history_pk(t: ResourceType, shard: u32) -> String {
    format!("fhir#h#{t}#{shard}")
}

/// `fhir#h#<shard>`.
pub fn system_history_pk(shard: u32) -> String {
    format!("fhir#h#{shard}")
}

/// The system-history partitions (after the tenant prefix): non-empty exactly when the
/// tenant has FHIR data (history is kept after deletes).
pub const SYSTEM_HISTORY_PKS: [&str; SHARDS as usize] =
    ["fhir#h#0", "fhir#h#1", "fhir#h#2", "fhir#h#3"];

/// `<lastUpdated>|<Type>/<id>|<vid>|<token>`.
pub fn history_sk(
    ts: &str,
    t: ResourceType,
    id: &ResourceId,
    vid: VersionId,
    token: &str,
) -> String {
    format!("{ts}|{t}/{id}|{vid:010}|{token}")
}

/// A history entry's sort key, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryKey {
    pub ts: String,
    pub rtype: ResourceType,
    pub id: ResourceId,
    pub vid: VersionId,
    pub token: String,
}

/// The parts of a history entry's sort key.
pub fn parse_history_sk(sk: &str) -> Option<HistoryKey> {
    let mut parts = sk.split('|');
    let ts = parts.next()?.to_owned();
    let (t, id) = parts.next()?.split_once('/')?;
    let vid = parts.next()?.parse().ok()?;
    let token = parts.next()?.to_owned();
    Some(HistoryKey {
        ts,
        rtype: ResourceType::parse(t)?,
        id: ResourceId::parse(id)?,
        vid,
        token,
    })
}

/// `fhir#c#<token>`.
pub fn commit_pk(token: &str) -> String {
    format!("fhir#c#{token}")
}

/// The key of a resource's head in `t`.
pub fn head_key(s: &ScopedTable<'_>, t: ResourceType, id: &ResourceId) -> storage::Key {
    s.key(&resource_pk(t, id), HEAD_SK)
}

/// The key of a version item.
pub fn version_key(
    s: &ScopedTable<'_>,
    t: ResourceType,
    id: &ResourceId,
    vid: VersionId,
) -> storage::Key {
    s.key(&resource_pk(t, id), version_sk(vid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_sort() {
        let t = ResourceType::parse("Patient").unwrap();
        let id = ResourceId::parse("a-1.b").unwrap();
        let sk = history_sk("2026-01-01T00:00:00.000Z", t, &id, 12, "tok");
        assert_eq!(sk, "2026-01-01T00:00:00.000Z|Patient/a-1.b|0000000012|tok");
        assert_eq!(
            parse_history_sk(&sk),
            Some(HistoryKey {
                ts: "2026-01-01T00:00:00.000Z".into(),
                rtype: t,
                id: id.clone(),
                vid: 12,
                token: "tok".into()
            })
        );
        assert_eq!(staged_sk("tok"), "s#tok");
        assert_eq!(
            parse_index_sk(&index_sk("2026-01-01", &id, "tok")),
            Some(("2026-01-01".into(), id.clone(), "tok".into()))
        );
        assert_eq!(parse_index_sk("no-separators"), None);
        assert_eq!(parse_version_sk(&version_sk(7)), Some(7));
        assert!(version_sk(9) < version_sk(10));
        assert!(shard(t, &id) < SHARDS);
        assert_eq!(SYSTEM_HISTORY_PKS[2], system_history_pk(2));
    }
}
