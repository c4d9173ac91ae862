//! The embedded directory: groups, users and memberships in the storage table, for the local
//! server and fast tests.
//!
//! Items (all global, written only through [`GlobalTable::writer`] with an [`AdminScope`]):
//!
//! | item | PK | SK |
//! |---|---|---|
//! | group | `global#directory#groups` | `<name>` |
//! | user | `global#directory#users` | `<username>` |
//! | member of a group | `global#directory#group#<name>` | `user#<username>` |
//! | group of a user | `global#directory#user#<username>` | `group#<name>` |
//!
//! Both membership items are written and deleted together in one transaction. Deleting a group
//! removes the group item together with the first memberships, then the rest in further
//! transactions; if that is interrupted, the leftover memberships name a group that no longer
//! exists: [`Directory::groups_of_user`] ignores them and re-creating the group removes them
//! first, so they never grant anything.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};
use storage::{
    Attrs, Condition, GlobalTable, Item, Key, MAX_BATCH_GET, MAX_QUERY_LIMIT, PageTokens, Query,
    SkRange, StorageError, Table, WriteOp, committed, retry_on_conflict,
};
use tenant_context::AdminScope;

use crate::{
    Directory, DirectoryError, Group, Page, User, check_description, check_group_name, check_limit,
    check_username, looks_like_email, now,
};

/// The paging-token scope: the prefix of every key of the directory.
const TOKEN_SCOPE: &str = "global#directory#";
/// Memberships removed per transaction when a group is deleted (two items each).
const PAIRS_PER_TRANSACTION: usize = 49;
/// The status of users of the embedded directory: they sign in through the local server's
/// token command, never with a password.
const USER_STATUS: &str = "CONFIRMED";

fn groups_pk() -> String {
    GlobalTable::pk("directory#groups")
}

fn users_pk() -> String {
    GlobalTable::pk("directory#users")
}

fn members_pk(group: &str) -> String {
    GlobalTable::pk(&format!("directory#group#{group}"))
}

fn memberships_pk(username: &str) -> String {
    GlobalTable::pk(&format!("directory#user#{username}"))
}

fn group_key(name: &str) -> Key {
    Key::new(groups_pk(), name)
}

fn user_key(username: &str) -> Key {
    Key::new(users_pk(), username)
}

/// The two items of one membership: (group -> user, user -> group).
fn membership_keys(group: &str, username: &str) -> (Key, Key) {
    (
        Key::new(members_pk(group), format!("user#{username}")),
        Key::new(memberships_pk(username), format!("group#{group}")),
    )
}

fn attrs(v: Value) -> Attrs {
    match v {
        Value::Object(m) => m,
        _ => Attrs::new(),
    }
}

fn storage_err(e: StorageError) -> DirectoryError {
    match e {
        StorageError::InvalidToken => DirectoryError::Invalid(
            "invalid 'next' token: it belongs to another list, or is corrupt".into(),
        ),
        StorageError::InvalidKey(m) | StorageError::InvalidRequest(m) => DirectoryError::Invalid(m),
        StorageError::ConditionFailed => {
            DirectoryError::Unavailable("a concurrent change interfered; retry".into())
        }
        e @ (StorageError::OutOfScope(_)
        | StorageError::Unavailable(_)
        | StorageError::Unreadable(_)) => DirectoryError::Unavailable(e.to_string()),
    }
}

fn group_not_found(name: &str) -> DirectoryError {
    DirectoryError::NotFound(format!("group '{name}' not found"))
}

fn user_not_found(username: &str) -> DirectoryError {
    DirectoryError::NotFound(format!("user '{username}' not found"))
}

fn str_attr(item: &Item, name: &str) -> String {
    item.str(name).unwrap_or_default().to_owned()
}

fn group_from(item: &Item) -> Group {
    Group {
        name: item.key.sk.clone(),
        description: str_attr(item, "description"),
        inserted_date: str_attr(item, "insertedDate"),
        last_modified_date: str_attr(item, "lastModifiedDate"),
    }
}

fn user_from(item: &Item) -> User {
    User {
        username: item.key.sk.clone(),
        email: item.str("email").map(str::to_owned),
        enabled: item.get("enabled").and_then(Value::as_bool).unwrap_or(true),
        user_status: item.str("userStatus").unwrap_or(USER_STATUS).to_owned(),
        inserted_date: str_attr(item, "insertedDate"),
        last_modified_date: str_attr(item, "lastModifiedDate"),
    }
}

/// The user directory kept in the storage table (see the module documentation for the items).
pub struct EmbeddedDirectory {
    table: Arc<dyn Table>,
    tokens: PageTokens,
}

impl EmbeddedDirectory {
    /// A directory in `table`, sealing its `next` tokens with `tokens` (HMAC-signed, bound to
    /// the list they continue).
    pub fn new(table: Arc<dyn Table>, tokens: PageTokens) -> Self {
        EmbeddedDirectory { table, tokens }
    }

    fn reader(&self) -> GlobalTable<'_> {
        GlobalTable::reader(&*self.table)
    }

    async fn group_item(&self, name: &str) -> Result<Option<Item>, DirectoryError> {
        self.reader()
            .get(&group_key(name))
            .await
            .map_err(storage_err)
    }

    /// The key `next` continues after, for the list `list` on partition `pk`.
    fn after(
        &self,
        next: Option<&str>,
        list: &str,
        pk: &str,
    ) -> Result<Option<Key>, DirectoryError> {
        let Some(token) = next.filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        let key = self
            .tokens
            .open(token, TOKEN_SCOPE, list)
            .map_err(storage_err)?;
        if key.pk != pk {
            return Err(storage_err(StorageError::InvalidToken));
        }
        Ok(Some(key))
    }

    fn next_token(&self, list: &str, last: Option<&Key>) -> Option<String> {
        last.map(|k| self.tokens.seal(TOKEN_SCOPE, list, k))
    }

    /// Deletes memberships of `group` (both items of each), `PAIRS_PER_TRANSACTION` at a time,
    /// until none is left; `first` ops (the group's own deletion) go into the first transaction.
    async fn remove_memberships(
        &self,
        writer: &GlobalTable<'_>,
        group: &str,
        mut first: Vec<WriteOp>,
    ) -> Result<(), DirectoryError> {
        loop {
            let query = Query::new(
                members_pk(group),
                SkRange::BeginsWith("user#".into()),
                PAIRS_PER_TRANSACTION,
            );
            let page = writer.query(&query).await.map_err(storage_err)?;
            let mut ops = std::mem::take(&mut first);
            for item in &page.items {
                let Some(username) = item.key.sk.strip_prefix("user#") else {
                    continue;
                };
                let (a, b) = membership_keys(group, username);
                for key in [a, b] {
                    ops.push(WriteOp::Delete {
                        key,
                        cond: Condition::None,
                    });
                }
            }
            if ops.is_empty() {
                return Ok(());
            }
            writer.transact(ops).await.map_err(|e| match e {
                StorageError::ConditionFailed => group_not_found(group),
                e => storage_err(e),
            })?;
            if page.last_key.is_none() {
                return Ok(());
            }
        }
    }
}

#[async_trait]
impl Directory for EmbeddedDirectory {
    async fn list_groups(
        &self,
        limit: usize,
        next: Option<&str>,
    ) -> Result<Page<Group>, DirectoryError> {
        check_limit(limit)?;
        let mut query = Query::new(groups_pk(), SkRange::All, limit);
        query.start_after = self.after(next, "groups", &query.pk)?;
        let page = self.reader().query(&query).await.map_err(storage_err)?;
        Ok(Page {
            items: page.items.iter().map(group_from).collect(),
            next: self.next_token("groups", page.last_key.as_ref()),
        })
    }

    async fn create_group(
        &self,
        admin: &AdminScope,
        name: &str,
        description: Option<&str>,
    ) -> Result<Group, DirectoryError> {
        check_group_name(name)?;
        check_description(description)?;
        let conflict = || DirectoryError::Conflict(format!("group '{name}' already exists"));
        if self.group_item(name).await?.is_some() {
            return Err(conflict());
        }
        let writer = GlobalTable::writer(&*self.table, admin);
        // Memberships left over from an interrupted deletion of a group of the same name must
        // not carry over to the new group.
        self.remove_memberships(&writer, name, Vec::new()).await?;
        let at = now();
        let group = Group {
            name: name.to_owned(),
            description: description.unwrap_or_default().to_owned(),
            inserted_date: at.clone(),
            last_modified_date: at,
        };
        let item = Item::new(
            group_key(name),
            attrs(json!({
                "description": group.description,
                "insertedDate": group.inserted_date,
                "lastModifiedDate": group.last_modified_date,
            })),
        );
        writer
            .put(item, Condition::NotExists)
            .await
            .map_err(|e| match e {
                StorageError::ConditionFailed => conflict(),
                e => storage_err(e),
            })?;
        Ok(group)
    }

    async fn get_group(&self, name: &str) -> Result<Group, DirectoryError> {
        check_group_name(name)?;
        self.group_item(name)
            .await?
            .map(|i| group_from(&i))
            .ok_or_else(|| group_not_found(name))
    }

    async fn delete_group(&self, admin: &AdminScope, name: &str) -> Result<(), DirectoryError> {
        check_group_name(name)?;
        if self.group_item(name).await?.is_none() {
            return Err(group_not_found(name));
        }
        let writer = GlobalTable::writer(&*self.table, admin);
        let delete_group = WriteOp::Delete {
            key: group_key(name),
            cond: Condition::Exists,
        };
        self.remove_memberships(&writer, name, vec![delete_group])
            .await
    }

    async fn list_users_in_group(
        &self,
        group: &str,
        limit: usize,
        next: Option<&str>,
    ) -> Result<Page<User>, DirectoryError> {
        check_group_name(group)?;
        check_limit(limit)?;
        let list = format!("users:{group}");
        let mut query = Query::new(
            members_pk(group),
            SkRange::BeginsWith("user#".into()),
            limit,
        );
        query.start_after = self.after(next, &list, &query.pk)?;
        if self.group_item(group).await?.is_none() {
            return Err(group_not_found(group));
        }
        let reader = self.reader();
        let page = reader.query(&query).await.map_err(storage_err)?;
        let names: Vec<&str> = page
            .items
            .iter()
            .filter_map(|i| i.key.sk.strip_prefix("user#"))
            .collect();
        let keys: Vec<Key> = names.iter().map(|u| user_key(u)).collect();
        let mut users: HashMap<String, User> = HashMap::new();
        for chunk in keys.chunks(MAX_BATCH_GET) {
            for item in reader.batch_get(chunk).await.map_err(storage_err)? {
                users.insert(item.key.sk.clone(), user_from(&item));
            }
        }
        Ok(Page {
            items: names.iter().filter_map(|u| users.remove(*u)).collect(),
            next: self.next_token(&list, page.last_key.as_ref()),
        })
    }

    async fn add_user_to_group(
        &self,
        admin: &AdminScope,
        group: &str,
        username: &str,
    ) -> Result<(), DirectoryError> {
        check_group_name(group)?;
        check_username(username)?;
        let writer = GlobalTable::writer(&*self.table, admin);
        let (member, membership) = membership_keys(group, username);
        retry_on_conflict(
            || {
                DirectoryError::Unavailable(format!(
                    "adding '{username}' to '{group}' kept conflicting with concurrent changes; retry"
                ))
            },
            || async {
                if self.group_item(group).await?.is_none() {
                    return Err(group_not_found(group));
                }
                if writer
                    .get(&membership)
                    .await
                    .map_err(storage_err)?
                    .is_some()
                {
                    return Ok(Some(()));
                }
                let user_exists = writer
                    .get(&user_key(username))
                    .await
                    .map_err(storage_err)?
                    .is_some();
                let at = now();
                let user_op = if user_exists {
                    WriteOp::Check {
                        key: user_key(username),
                        cond: Condition::Exists,
                    }
                } else {
                    let mut a = attrs(json!({
                        "enabled": true,
                        "userStatus": USER_STATUS,
                        "insertedDate": at,
                        "lastModifiedDate": at,
                    }));
                    if looks_like_email(username) {
                        a.insert("email".into(), Value::String(username.to_owned()));
                    }
                    WriteOp::Put {
                        item: Item::new(user_key(username), a),
                        cond: Condition::NotExists,
                    }
                };
                let member_attrs = attrs(json!({ "insertedDate": at }));
                let ops = vec![
                    WriteOp::Check {
                        key: group_key(group),
                        cond: Condition::Exists,
                    },
                    user_op,
                    WriteOp::Put {
                        item: Item::new(member.clone(), member_attrs.clone()),
                        cond: Condition::None,
                    },
                    WriteOp::Put {
                        item: Item::new(membership.clone(), member_attrs),
                        cond: Condition::None,
                    },
                ];
                // A failed condition: the group went away or the user appeared meanwhile; look
                // again.
                committed(writer.transact(ops).await).map_err(storage_err)
            },
        )
        .await
    }

    async fn remove_user_from_group(
        &self,
        admin: &AdminScope,
        group: &str,
        username: &str,
    ) -> Result<(), DirectoryError> {
        check_group_name(group)?;
        check_username(username)?;
        if self.group_item(group).await?.is_none() {
            return Err(group_not_found(group));
        }
        let writer = GlobalTable::writer(&*self.table, admin);
        if writer
            .get(&user_key(username))
            .await
            .map_err(storage_err)?
            .is_none()
        {
            return Err(user_not_found(username));
        }
        let (a, b) = membership_keys(group, username);
        writer
            .transact(vec![
                WriteOp::Delete {
                    key: a,
                    cond: Condition::None,
                },
                WriteOp::Delete {
                    key: b,
                    cond: Condition::None,
                },
            ])
            .await
            .map_err(storage_err)
    }

    async fn groups_of_user(&self, username: &str) -> Result<Vec<String>, DirectoryError> {
        check_username(username)?;
        let reader = self.reader();
        if reader
            .get(&user_key(username))
            .await
            .map_err(storage_err)?
            .is_none()
        {
            return Err(user_not_found(username));
        }
        let mut names = Vec::new();
        let mut query = Query::new(
            memberships_pk(username),
            SkRange::BeginsWith("group#".into()),
            MAX_QUERY_LIMIT,
        );
        loop {
            let page = reader.query(&query).await.map_err(storage_err)?;
            names.extend(
                page.items
                    .iter()
                    .filter_map(|i| i.key.sk.strip_prefix("group#"))
                    .map(str::to_owned),
            );
            match page.last_key {
                Some(k) => query.start_after = Some(k),
                None => break,
            }
        }
        // Only groups that exist count (see the module documentation).
        let mut existing = Vec::with_capacity(names.len());
        for chunk in names.chunks(MAX_BATCH_GET) {
            let keys: Vec<Key> = chunk.iter().map(|g| group_key(g)).collect();
            for item in self.reader().batch_get(&keys).await.map_err(storage_err)? {
                existing.push(item.key.sk);
            }
        }
        existing.sort();
        Ok(existing)
    }
}
