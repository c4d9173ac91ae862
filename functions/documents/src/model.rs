//! The document domain: ids, documents, tags and metadata, parsed and validated once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Most tag values one document holds (a key-only tag counts as one). Every write of a
/// document and its tags is one transaction of at most 100 items; 40 values keep a delete
/// (document, list entry, tags, tag-index entries) inside that bound.
pub const MAX_TAG_VALUES: usize = 40;
/// Most metadata entries of a document.
pub const MAX_METADATA: usize = 25;
/// Largest metadata of a document, as JSON. Metadata travels with the document's summary into
/// its list and tag-index entries, so it must keep every item and transaction well inside
/// DynamoDB's limits (400 KB an item, 4 MB a transaction).
pub const MAX_METADATA_BYTES: usize = 8 * 1024;
const MAX_PATH: usize = 1024;
const MAX_TAG_KEY: usize = 256;
/// Bytes; a tag value is part of a tag-index sort key (at most 1024 bytes in DynamoDB) with the
/// document id.
const MAX_TAG_VALUE: usize = 900;
const MAX_CONTENT_TYPE: usize = 256;

/// A document id: a UUID, kept in its canonical lower-case form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocumentId(uuid::Uuid);

impl DocumentId {
    pub fn new() -> Self {
        DocumentId(uuid::Uuid::new_v4())
    }

    /// Parses a document id; anything but a UUID is refused.
    pub fn parse(s: &str) -> Option<Self> {
        uuid::Uuid::try_parse(s).ok().map(DocumentId)
    }
}

impl Default for DocumentId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for DocumentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// A metadata entry (`{"key", "value"}` or `{"key", "values"}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
}

/// A document's metadata record, as stored and as returned (plus `siteId`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Document {
    pub document_id: String,
    pub path: String,
    pub content_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_length: Option<u64>,
    pub user_id: String,
    pub inserted_date: String,
    pub last_modified_date: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metadata: Vec<Metadata>,
}

/// The values of one tag: none (a key-only tag), one, or several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagValues {
    KeyOnly,
    One(String),
    Many(Vec<String>),
}

impl TagValues {
    /// The values as indexed: a key-only tag is indexed under the empty value.
    pub fn indexed(&self) -> Vec<&str> {
        match self {
            TagValues::KeyOnly => vec![""],
            TagValues::One(v) => vec![v.as_str()],
            TagValues::Many(vs) => vs.iter().map(String::as_str).collect(),
        }
    }
}

/// A tag of a document, as stored and returned.
#[derive(Debug, Clone, PartialEq)]
pub struct Tag {
    pub key: String,
    pub values: TagValues,
    pub inserted_date: String,
    pub user_id: String,
}

impl Tag {
    /// FormKiQ's tag shape: `value` for one value, `values` for several, neither for key-only.
    pub fn to_json(&self, document_id: &str) -> Value {
        let mut v = serde_json::json!({
            "key": self.key,
            "documentId": document_id,
            "insertedDate": self.inserted_date,
            "userId": self.user_id,
            "type": "USERDEFINED",
        });
        match &self.values {
            TagValues::KeyOnly => {}
            TagValues::One(x) => v["value"] = Value::String(x.clone()),
            TagValues::Many(xs) => v["values"] = serde_json::json!(xs),
        }
        v
    }

    /// Reads a stored tag back.
    pub fn from_json(v: &Value) -> Option<Tag> {
        let values = match (v.get("value"), v.get("values")) {
            (Some(Value::String(s)), _) => TagValues::One(s.clone()),
            (_, Some(Value::Array(a))) => TagValues::Many(
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect(),
            ),
            _ => TagValues::KeyOnly,
        };
        Some(Tag {
            key: v.get("key")?.as_str()?.to_owned(),
            values,
            inserted_date: v.get("insertedDate")?.as_str()?.to_owned(),
            user_id: v.get("userId")?.as_str()?.to_owned(),
        })
    }
}

/// A tag as a request sends it (`{"key", "value"}`, `{"key", "values"}` or `{"key"}`).
#[derive(Debug, Clone, Deserialize)]
pub struct TagInput {
    pub key: Option<Value>,
    pub value: Option<Value>,
    pub values: Option<Value>,
}

/// The body of `POST /documents` and `PATCH /documents/{documentId}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DocumentInput {
    pub document_id: Option<Value>,
    pub path: Option<Value>,
    pub content_type: Option<Value>,
    pub is_base64: Option<Value>,
    pub content: Option<Value>,
    pub tags: Option<Value>,
    pub metadata: Option<Value>,
}

/// Collects field errors of one request.
pub use formkiq_api::FieldErrors as Errors;

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// A string field: `None` when absent or null; an error when not a string.
fn opt_string(v: Option<&Value>, key: &str, errs: &mut Errors) -> Option<String> {
    match v {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            errs.add(key, "must be a string");
            None
        }
    }
}

/// Validates a document path (`path`).
pub fn path(v: Option<&Value>, errs: &mut Errors) -> Option<String> {
    let p = opt_string(v, "path", errs)?;
    if p.is_empty() || p.len() > MAX_PATH || has_control(&p) {
        errs.add(
            "path",
            format!("must be 1-{MAX_PATH} characters without control characters"),
        );
        return None;
    }
    Some(p)
}

/// Validates a content type (`type/subtype`, optional parameters).
pub fn content_type(v: Option<&Value>, errs: &mut Errors) -> Option<String> {
    let ct = opt_string(v, "contentType", errs)?;
    // Visible ASCII and spaces: it becomes the blob's Content-Type header.
    let valid = ct.len() <= MAX_CONTENT_TYPE
        && ct.bytes().all(|b| (b' '..=b'~').contains(&b))
        && ct
            .split(';')
            .next()
            .and_then(|m| m.trim().split_once('/'))
            .is_some_and(|(a, b)| {
                !a.is_empty() && !b.is_empty() && !a.contains(' ') && !b.contains(' ')
            });
    if !valid {
        errs.add("contentType", "must be a media type such as text/plain");
        return None;
    }
    Some(ct)
}

fn string_list(v: &Value) -> Option<Vec<String>> {
    v.as_array()?
        .iter()
        .map(|x| x.as_str().map(str::to_owned))
        .collect()
}

/// Validates a list of tags (`tags`), keys unique.
pub fn tags(v: Option<&Value>, errs: &mut Errors) -> Vec<(String, TagValues)> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Vec::new();
    };
    let Some(items) = v.as_array() else {
        errs.add("tags", "must be a list of {key, value} or {key, values}");
        return Vec::new();
    };
    let mut out: Vec<(String, TagValues)> = Vec::new();
    for item in items {
        match serde_json::from_value::<TagInput>(item.clone()) {
            Ok(t) => {
                if let Some(tag) = tag(&t, None, errs) {
                    if out.iter().any(|(k, _)| *k == tag.0) {
                        errs.add("tags", format!("tag key '{}' appears twice", tag.0));
                    } else {
                        out.push(tag);
                    }
                }
            }
            Err(_) => errs.add(
                "tags",
                "each tag must be an object {key, value} or {key, values}",
            ),
        }
    }
    out
}

/// Validates one tag; `path_key` is the key from the URL (`/tags/{tagKey}`), if any.
pub fn tag(t: &TagInput, path_key: Option<&str>, errs: &mut Errors) -> Option<(String, TagValues)> {
    let key = match (path_key, &t.key) {
        (Some(k), _) => k.to_owned(),
        (None, Some(Value::String(k))) => k.clone(),
        (None, _) => {
            errs.add("key", "is required and must be a string");
            return None;
        }
    };
    if key.is_empty() || key.len() > MAX_TAG_KEY || has_control(&key) {
        errs.add(
            "key",
            format!("must be 1-{MAX_TAG_KEY} characters without control characters"),
        );
        return None;
    }
    let values = match (&t.value, &t.values) {
        (Some(v), Some(vs)) if !v.is_null() && !vs.is_null() => {
            errs.add("value", "give either value or values, not both");
            return None;
        }
        (Some(Value::String(v)), _) => TagValues::One(v.clone()),
        (_, Some(vs)) if !vs.is_null() => match string_list(vs) {
            Some(vs) if !vs.is_empty() => {
                let mut dedup: Vec<String> = Vec::new();
                for v in vs {
                    if !dedup.contains(&v) {
                        dedup.push(v);
                    }
                }
                TagValues::Many(dedup)
            }
            _ => {
                errs.add("values", "must be a non-empty list of strings");
                return None;
            }
        },
        (Some(v), _) if !v.is_null() => {
            errs.add("value", "must be a string");
            return None;
        }
        _ => TagValues::KeyOnly,
    };
    for v in values.indexed() {
        if v.len() > MAX_TAG_VALUE || has_control(v) {
            errs.add(
                "value",
                format!(
                    "tag values are at most {MAX_TAG_VALUE} characters without control characters"
                ),
            );
            return None;
        }
    }
    Some((key, values))
}

/// Validates metadata entries (`metadata`).
pub fn metadata(v: Option<&Value>, errs: &mut Errors) -> Option<Vec<Metadata>> {
    let v = v.filter(|v| !v.is_null())?;
    let Ok(items) = serde_json::from_value::<Vec<Metadata>>(v.clone()) else {
        errs.add(
            "metadata",
            "must be a list of {key, value} or {key, values} with string values",
        );
        return None;
    };
    if items.len() > MAX_METADATA {
        errs.add("metadata", format!("at most {MAX_METADATA} entries"));
        return None;
    }
    for m in &items {
        if m.key.is_empty() || m.key.len() > MAX_TAG_KEY || has_control(&m.key) {
            errs.add(
                "metadata",
                format!("keys must be 1-{MAX_TAG_KEY} characters"),
            );
            return None;
        }
        if m.value.is_some() && m.values.is_some() {
            errs.add(
                "metadata",
                format!("'{}': give either value or values, not both", m.key),
            );
            return None;
        }
    }
    let size = serde_json::to_vec(&items).map_or(usize::MAX, |b| b.len());
    if size > MAX_METADATA_BYTES {
        errs.add(
            "metadata",
            format!("metadata is limited to {MAX_METADATA_BYTES} bytes as JSON ({size} sent)"),
        );
        return None;
    }
    Some(items)
}

/// The total number of indexed tag values of a set of tags.
pub fn tag_value_count<'a>(tags: impl IntoIterator<Item = &'a TagValues>) -> usize {
    tags.into_iter().map(|t| t.indexed().len()).sum()
}

/// A document and its tags, as stored: what every write replaces as a whole.
#[derive(Debug, Clone, PartialEq)]
pub struct DocState {
    pub doc: Document,
    /// Optimistic-concurrency version, incremented by every write.
    pub version: u64,
    /// Where the content is (a blob key inside the tenant's prefix); a new key for every new
    /// content, so a failed write never clobbers the content of the stored version.
    pub content_key: String,
    pub tags: BTreeMap<String, Tag>,
}

/// Whether a content type is text that `GET /content` may return inline.
pub fn is_textual(content_type: &str) -> bool {
    let ct = content_type.to_ascii_lowercase();
    ct.starts_with("text/") || ct.contains("json") || ct.contains("xml") || ct.contains("yaml")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check_tags(v: Value) -> Result<Vec<(String, TagValues)>, Vec<String>> {
        let mut e = Errors::default();
        let t = tags(Some(&v), &mut e);
        if e.0.is_empty() {
            Ok(t)
        } else {
            Err(e.0.into_iter().map(|f| f.key).collect())
        }
    }

    #[test]
    fn tag_shapes() {
        assert_eq!(
            check_tags(
                json!([{"key": "a", "value": "1"}, {"key": "b", "values": ["x", "y", "x"]}, {"key": "c"}])
            ),
            Ok(vec![
                ("a".into(), TagValues::One("1".into())),
                ("b".into(), TagValues::Many(vec!["x".into(), "y".into()])),
                ("c".into(), TagValues::KeyOnly),
            ])
        );
        for bad in [
            json!("x"),
            json!([1]),
            json!([{"value": "1"}]),
            json!([{"key": ""}]),
            json!([{"key": "a", "value": 1}]),
            json!([{"key": "a", "value": "1", "values": ["2"]}]),
            json!([{"key": "a", "values": []}]),
            json!([{"key": "a", "values": [1]}]),
            json!([{"key": "a"}, {"key": "a"}]),
            json!([{"key": "a\u{1f}b"}]),
            json!([{"key": "a", "value": "x\u{1f}y"}]),
        ] {
            assert!(check_tags(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn fields() {
        let mut e = Errors::default();
        assert_eq!(
            path(Some(&json!("a/b.txt")), &mut e).as_deref(),
            Some("a/b.txt")
        );
        assert_eq!(
            content_type(Some(&json!("text/plain; charset=utf-8")), &mut e).as_deref(),
            Some("text/plain; charset=utf-8")
        );
        assert!(e.0.is_empty());
        for (v, f) in [
            (json!(""), "path"),
            (json!(5), "path"),
            (json!("a\nb"), "path"),
        ] {
            let mut e = Errors::default();
            assert!(path(Some(&v), &mut e).is_none());
            assert_eq!(e.0[0].key, f);
        }
        for v in [
            json!("text"),
            json!("/plain"),
            json!("a b/c"),
            json!(1),
            json!("text/pl\u{e5}in"),
            json!("text/plain;\tcharset=x"),
        ] {
            let mut e = Errors::default();
            assert!(content_type(Some(&v), &mut e).is_none(), "{v}");
        }
        let mut e = Errors::default();
        assert!(metadata(Some(&json!([{"key": "k", "value": 1}])), &mut e).is_none());
        let big = "x".repeat(MAX_METADATA_BYTES);
        let mut e = Errors::default();
        assert!(metadata(Some(&json!([{"key": "k", "value": big}])), &mut e).is_none());
        assert_eq!(e.0[0].key, "metadata");
        assert!(DocumentId::parse("not-a-uuid").is_none());
        let id = DocumentId::parse("6F9619FF-8B86-D011-B42D-00C04FC964FF").unwrap();
        assert_eq!(id.to_string(), "6f9619ff-8b86-d011-b42d-00c04fc964ff");
    }

    #[test]
    fn tags_round_trip_through_storage() {
        for values in [
            TagValues::KeyOnly,
            TagValues::One("v".into()),
            TagValues::Many(vec!["a".into(), "b".into()]),
        ] {
            let t = Tag {
                key: "k".into(),
                values,
                inserted_date: "2026-01-01T00:00:00.000Z".into(),
                user_id: "u".into(),
            };
            assert_eq!(Tag::from_json(&t.to_json("d")), Some(t));
        }
    }
}
