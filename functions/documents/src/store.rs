//! How documents are laid out in the table (inside the tenant's `<siteId>#` prefix) and written.
//!
//! | item | PK | SK |
//! |---|---|---|
//! | document | `doc#<id>` | `doc` |
//! | tag | `doc#<id>` | `tag#<key>` |
//! | list entry (newest first) | `docs` | `<insertedDate>#<id>` |
//! | tag-index entry | `tag#<key>` | `<value>\u{1f}<id>` |
//!
//! List and tag-index entries carry the document's summary, so listing and searching read one
//! item per document returned. Every change of a document, its tags and its index entries is
//! one transaction, conditioned on the document's version.
//!
//! The `docs` list holds one item per document, so it is the partition that tells whether a
//! site still holds documents ([`SITE_DATA`]).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};
use storage::{Condition, Item, Key, Page, Query, ScopedTable, SkRange, StorageError, WriteOp};

use crate::model::{DocState, Document, DocumentId, Tag};

const DOC_SK: &str = "doc";
const LIST_PK: &str = "docs";

/// The document API's data in a site, as the sites function checks before deleting a site.
pub const SITE_DATA: site_store::DataPartition = site_store::DataPartition {
    pk: LIST_PK,
    what: "documents",
};
/// Separates a tag value from the document id in tag-index sort keys; tag values cannot
/// contain control characters, so a value's entries never run into another value's.
pub const VALUE_SEP: char = '\u{1f}';

fn doc_pk(id: impl std::fmt::Display) -> String {
    format!("doc#{id}")
}

fn tag_index_pk(key: &str) -> String {
    format!("tag#{key}")
}

/// The sort-key prefix of a tag value's index entries.
pub fn tag_value_prefix(value: &str) -> String {
    format!("{value}{VALUE_SEP}")
}

fn to_attrs(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn document_attrs(doc: &Document) -> Map<String, Value> {
    to_attrs(serde_json::to_value(doc).unwrap_or(Value::Null))
}

/// A document read back from any item that carries its summary; an item that does not is
/// [`StorageError::Unreadable`] (a 500 for the request, logged).
pub fn document_from(item: &Item) -> Result<Document, StorageError> {
    serde_json::from_value(Value::Object(item.attrs.clone()))
        .map_err(|e| StorageError::unreadable(&item.key, e))
}

/// A tag read back from its item (`tag#<key>` in the document's partition).
pub fn tag_from(item: &Item) -> Result<Tag, StorageError> {
    Tag::from_json(&Value::Object(item.attrs.clone()))
        .ok_or_else(|| StorageError::unreadable(&item.key, "not a tag"))
}

/// Documents of one tenant.
pub struct DocStore<'a> {
    table: ScopedTable<'a>,
}

impl<'a> DocStore<'a> {
    pub fn new(table: ScopedTable<'a>) -> Self {
        DocStore { table }
    }

    pub fn table(&self) -> &ScopedTable<'a> {
        &self.table
    }

    /// The document and its tags, in one consistent query of its partition.
    pub async fn load(&self, id: &DocumentId) -> Result<Option<DocState>, StorageError> {
        let q = Query::new(
            self.table.pk(&doc_pk(id)),
            SkRange::All,
            storage::MAX_QUERY_LIMIT,
        );
        let page = self.table.query(&q).await?;
        let mut doc = None;
        let mut version = 0;
        let mut content_key = String::new();
        let mut tags = BTreeMap::new();
        for item in &page.items {
            if item.key.sk == DOC_SK {
                version = item.get("version").and_then(Value::as_u64).unwrap_or(0);
                content_key = item.str("contentKey").unwrap_or_default().to_owned();
                doc = Some(document_from(item)?);
            } else if item.key.sk.starts_with("tag#") {
                let tag = tag_from(item)?;
                tags.insert(tag.key.clone(), tag);
            }
        }
        Ok(doc.map(|doc| DocState {
            doc,
            version,
            content_key,
            tags,
        }))
    }

    fn list_key(&self, doc: &Document) -> Key {
        self.table.key(
            LIST_PK,
            format!("{}#{}", doc.inserted_date, doc.document_id),
        )
    }

    fn tag_index_key(&self, key: &str, value: &str, doc_id: &str) -> Key {
        self.table
            .key(&tag_index_pk(key), format!("{value}{VALUE_SEP}{doc_id}"))
    }

    /// The writes that turn `old` into `new` (create: no `old`; delete: no `new`), conditioned
    /// on `old`'s version so concurrent writers cannot lose each other's updates.
    pub fn ops(&self, old: Option<&DocState>, new: Option<&DocState>) -> Vec<WriteOp> {
        let mut ops = Vec::new();
        let Some(any) = new.or(old) else {
            return ops;
        };
        let id = &any.doc.document_id;
        let doc_key = self.table.key(&doc_pk(id), DOC_SK);
        let cond = match old {
            None => Condition::NotExists,
            Some(o) => Condition::Equals {
                attr: "version".into(),
                value: json!(o.version),
            },
        };
        let summary_changed = match (old, new) {
            (Some(o), Some(n)) => o.doc != n.doc,
            _ => true,
        };
        match new {
            Some(n) => {
                let mut attrs = document_attrs(&n.doc);
                attrs.insert("version".into(), json!(n.version));
                attrs.insert("contentKey".into(), json!(n.content_key));
                ops.push(WriteOp::Put {
                    item: Item::new(doc_key, attrs),
                    cond,
                });
                if summary_changed {
                    ops.push(WriteOp::Put {
                        item: Item::new(self.list_key(&n.doc), document_attrs(&n.doc)),
                        cond: Condition::None,
                    });
                }
            }
            None => {
                ops.push(WriteOp::Delete { key: doc_key, cond });
                if let Some(o) = old {
                    ops.push(WriteOp::Delete {
                        key: self.list_key(&o.doc),
                        cond: Condition::None,
                    });
                }
            }
        }

        // Tag items.
        let empty = BTreeMap::new();
        let old_tags = old.map(|o| &o.tags).unwrap_or(&empty);
        let new_tags = new.map(|n| &n.tags).unwrap_or(&empty);
        let pk = self.table.pk(&doc_pk(id));
        for (k, t) in new_tags {
            if old_tags.get(k) != Some(t) {
                ops.push(WriteOp::Put {
                    item: Item::new(
                        Key::new(pk.clone(), format!("tag#{k}")),
                        to_attrs(t.to_json(&any.doc.document_id)),
                    ),
                    cond: Condition::None,
                });
            }
        }
        for k in old_tags.keys().filter(|k| !new_tags.contains_key(*k)) {
            ops.push(WriteOp::Delete {
                key: Key::new(pk.clone(), format!("tag#{k}")),
                cond: Condition::None,
            });
        }

        // Tag-index entries: (key, value) pairs.
        let pairs = |tags: &BTreeMap<String, Tag>| -> BTreeSet<(String, String)> {
            tags.values()
                .flat_map(|t| {
                    t.values
                        .indexed()
                        .into_iter()
                        .map(|v| (t.key.clone(), v.to_owned()))
                })
                .collect()
        };
        let old_pairs = pairs(old_tags);
        let new_pairs = pairs(new_tags);
        if let Some(n) = new {
            for (k, v) in &new_pairs {
                if summary_changed || !old_pairs.contains(&(k.clone(), v.clone())) {
                    let mut attrs = document_attrs(&n.doc);
                    attrs.insert(
                        "matchedTag".into(),
                        json!({"key": k, "value": v, "type": "USERDEFINED"}),
                    );
                    ops.push(WriteOp::Put {
                        item: Item::new(self.tag_index_key(k, v, &n.doc.document_id), attrs),
                        cond: Condition::None,
                    });
                }
            }
        }
        for (k, v) in old_pairs.difference(&new_pairs) {
            ops.push(WriteOp::Delete {
                key: self.tag_index_key(k, v, &any.doc.document_id),
                cond: Condition::None,
            });
        }
        ops
    }

    /// Applies the change from `old` to `new` as one transaction.
    pub async fn write(
        &self,
        old: Option<&DocState>,
        new: Option<&DocState>,
    ) -> Result<(), StorageError> {
        self.table.transact(self.ops(old, new)).await
    }

    /// The document item alone (one read), with its content key.
    pub async fn get(&self, id: &DocumentId) -> Result<Option<(Document, String)>, StorageError> {
        let item = self.table.get(&self.table.key(&doc_pk(id), DOC_SK)).await?;
        item.map(|i| {
            let key = i.str("contentKey").unwrap_or_default().to_owned();
            document_from(&i).map(|d| (d, key))
        })
        .transpose()
    }

    /// A page of the newest documents.
    pub async fn list(&self, limit: usize, after: Option<Key>) -> Result<Page, StorageError> {
        let mut q = Query::new(self.table.pk(LIST_PK), SkRange::All, limit);
        q.forward = false;
        q.start_after = after;
        self.table.query(&q).await
    }

    /// A page of the tags of a document.
    pub async fn tags(
        &self,
        id: &DocumentId,
        limit: usize,
        after: Option<Key>,
    ) -> Result<Page, StorageError> {
        let mut q = Query::new(
            self.table.pk(&doc_pk(id)),
            SkRange::BeginsWith("tag#".into()),
            limit,
        );
        q.start_after = after;
        self.table.query(&q).await
    }

    /// A page of tag-index entries of `key` whose sort key begins with `sk_prefix`.
    pub async fn search(
        &self,
        key: &str,
        sk_prefix: String,
        limit: usize,
        after: Option<Key>,
    ) -> Result<Page, StorageError> {
        let range = if sk_prefix.is_empty() {
            SkRange::All
        } else {
            SkRange::BeginsWith(sk_prefix)
        };
        let mut q = Query::new(self.table.pk(&tag_index_pk(key)), range, limit);
        q.start_after = after;
        self.table.query(&q).await
    }
}
