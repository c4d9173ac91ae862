//! Defined sites and their per-(site, group) permissions (`docs/architecture.md`, "Tenant
//! model" and "Key layout"), and the constructor of the tenant context every function uses.
//!
//! | item | PK | SK | attributes |
//! |---|---|---|---|
//! | site | `global#sites` | `<siteId>` | siteId, title, status, insertedDate, userId, version |
//! | grant | `global#site#<siteId>` | `group#<groupName>` | groupName, permissions |
//! | reverse grant | `global#group#<groupName>` | `site#<siteId>` | siteId, permissions |
//!
//! A grant and its reverse entry are written and deleted together in one transaction, so the
//! per-group lookup that authorization makes ([`DefinedSites::group_permissions`], one Query)
//! always agrees with the per-site listing. Every read is a GetItem, BatchGetItem or Query;
//! there is no scan. Every access goes through storage's [`GlobalTable`] (or [`ScopedTable`] for
//! a site's own data), which checks each key: writes need an [`AdminScope`], except the site's
//! own item, which a GOVERN holder may change ([`GlobalTable::site_item_writer`]).
//!
//! Whether a site still holds data is asked of the partitions each domain registers
//! ([`DataPartition`], [`site_holds_data`]): this crate knows no domain.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};
use tenant_context::{
    AdminScope, DefinedSites, LookupError, Permission, PermissionSet, SiteId, TenantScope,
};

use storage::{
    Attrs, Condition, GlobalTable, Item, Key, MAX_BATCH_GET, MAX_QUERY_LIMIT, MAX_TRANSACTION_OPS,
    Page, Query, ScopedTable, SkRange, StorageError, Table, WriteOp, retry_on_conflict,
};

/// Partition (after `global#`) of the site items.
const SITES_PK: &str = "sites";
/// Sort-key prefix of grants in a site's partition.
const GROUP_SK: &str = "group#";
/// Sort-key prefix of reverse grants in a group's partition.
const SITE_SK: &str = "site#";
/// Longest group name (Cognito's limit).
pub const MAX_GROUP_NAME: usize = 128;
/// Longest site title.
pub const MAX_TITLE: usize = 256;

/// A tenant partition that holds a site's data, and what to call that data in messages. Each
/// domain declares its own (the document API: `documents::store::SITE_DATA`), and the sites
/// function lists every domain's, so a new domain registers its data without changing this
/// crate or storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataPartition {
    /// The partition key after `<siteId>#`: a list partition with one item per stored resource
    /// (empty exactly when the domain holds nothing for the site).
    pub pk: &'static str,
    /// What the caller must delete first, e.g. `documents`.
    pub what: &'static str,
}

/// What the site holds (the [`DataPartition::what`] of each non-empty partition of
/// `partitions`): one Query with limit 1 per partition, inside the site's own scope.
pub async fn site_holds_data(
    table: &dyn Table,
    scope: &TenantScope,
    partitions: &[DataPartition],
) -> Result<Vec<&'static str>, StorageError> {
    let scoped = ScopedTable::new(table, scope);
    let mut held = Vec::new();
    for part in partitions {
        let page = scoped
            .query(&Query::new(scoped.pk(part.pk), SkRange::All, 1))
            .await?;
        if !page.items.is_empty() && !held.contains(&part.what) {
            held.push(part.what);
        }
    }
    Ok(held)
}

/// `ACTIVE` or `INACTIVE` (FormKiQ's SiteStatus).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SiteStatus {
    #[default]
    Active,
    Inactive,
}

impl SiteStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SiteStatus::Active => "ACTIVE",
            SiteStatus::Inactive => "INACTIVE",
        }
    }

    /// Parses `ACTIVE` or `INACTIVE` (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        [SiteStatus::Active, SiteStatus::Inactive]
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
    }
}

/// A defined site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteRecord {
    pub site_id: SiteId,
    pub title: Option<String>,
    pub status: SiteStatus,
    pub inserted_date: String,
    /// Who created the site.
    pub user_id: String,
}

impl SiteRecord {
    /// The site an item holds; [`StorageError::Unreadable`] when it is not a site item.
    fn from_item(item: &Item) -> Result<Self, StorageError> {
        let site_id = item
            .str("siteId")
            .and_then(|s| SiteId::parse(s).ok())
            .ok_or_else(|| StorageError::unreadable(&item.key, "no valid siteId"))?;
        Ok(SiteRecord {
            site_id,
            title: item.str("title").map(str::to_owned),
            status: item
                .str("status")
                .and_then(SiteStatus::parse)
                .unwrap_or_default(),
            inserted_date: item.str("insertedDate").unwrap_or_default().to_owned(),
            user_id: item.str("userId").unwrap_or_default().to_owned(),
        })
    }

    fn attrs(&self, version: u64) -> Attrs {
        let mut a = Attrs::new();
        a.insert("siteId".into(), json!(self.site_id));
        if let Some(t) = &self.title {
            a.insert("title".into(), json!(t));
        }
        a.insert("status".into(), json!(self.status.as_str()));
        a.insert("insertedDate".into(), json!(self.inserted_date));
        a.insert("userId".into(), json!(self.user_id));
        a.insert("version".into(), json!(version));
        a
    }
}

/// A site to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSite {
    pub site_id: SiteId,
    pub title: Option<String>,
    pub status: SiteStatus,
    /// ISO 8601 creation time (the caller's clock).
    pub inserted_date: String,
}

/// A change of a site's settings; `None` leaves a field as it is, an empty title removes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SiteUpdate {
    pub title: Option<String>,
    pub status: Option<SiteStatus>,
}

/// Why a group name cannot carry permissions: empty, longer than [`MAX_GROUP_NAME`]
/// characters, or containing control characters. The message is meant for the caller.
pub fn check_group_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a group name must not be empty".into());
    }
    if name.chars().count() > MAX_GROUP_NAME {
        return Err(format!(
            "a group name has at most {MAX_GROUP_NAME} characters"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("a group name must not contain control characters".into());
    }
    Ok(())
}

/// Why a site title is not acceptable (longer than [`MAX_TITLE`] or with control characters).
pub fn check_title(title: &str) -> Result<(), String> {
    if title.chars().count() > MAX_TITLE {
        return Err(format!("a title has at most {MAX_TITLE} characters"));
    }
    if title.chars().any(char::is_control) {
        return Err("a title must not contain control characters".into());
    }
    Ok(())
}

fn invalid_group(name: &str) -> Result<(), StorageError> {
    check_group_name(name).map_err(StorageError::InvalidRequest)
}

/// Permissions as stored: known names only (unknown ones are ignored, with a warning).
fn parse_permissions(v: Option<&Value>) -> PermissionSet {
    let mut set = PermissionSet::EMPTY;
    for name in v.and_then(Value::as_array).into_iter().flatten() {
        match name.as_str().and_then(Permission::parse) {
            Some(p) => set = set.with(p),
            None => tracing::warn!(%name, "ignoring an unknown stored permission"),
        }
    }
    set
}

fn site_key(site: &SiteId) -> Key {
    Key::new(GlobalTable::pk(SITES_PK), site.as_str())
}

fn site_pk(site: &SiteId) -> String {
    GlobalTable::pk(&format!("site#{site}"))
}

fn group_pk(group: &str) -> String {
    GlobalTable::pk(&format!("group#{group}"))
}

fn grant_key(site: &SiteId, group: &str) -> Key {
    Key::new(site_pk(site), format!("{GROUP_SK}{group}"))
}

fn reverse_key(site: &SiteId, group: &str) -> Key {
    Key::new(group_pk(group), format!("{SITE_SK}{site}"))
}

/// The deletes of a grant and its reverse entry.
fn grant_deletes(site: &SiteId, group: &str) -> [WriteOp; 2] {
    [
        WriteOp::Delete {
            key: grant_key(site, group),
            cond: Condition::None,
        },
        WriteOp::Delete {
            key: reverse_key(site, group),
            cond: Condition::None,
        },
    ]
}

/// The tenant context every function uses: in defined mode it reads grants from the table's
/// defined sites (cached by the tenant library for `PermissionCacheSeconds`).
pub fn tenant_context(
    config: tenant_context::TenantConfig,
    table: Arc<dyn Table>,
) -> tenant_context::TenantContext {
    let defined = config.site_mode == tenant_context::SiteMode::Defined;
    let ctx = tenant_context::TenantContext::new(config);
    if defined {
        ctx.with_defined_sites(SiteStore::new(table))
    } else {
        ctx
    }
}

/// What every Lambda function reads from its environment at start: the tenant model (the
/// template's parameters), the AWS settings, and the DynamoDB table `TABLE_NAME`, which every
/// function needs for defined-mode grants. No I/O: clients are created on first use.
#[cfg(feature = "aws")]
pub struct Environment {
    pub config: tenant_context::TenantConfig,
    pub aws: aws_setup::AwsConfig,
    pub table: Arc<dyn Table>,
}

#[cfg(feature = "aws")]
impl Environment {
    /// Fails with a message naming the variable that is missing or wrong.
    pub fn from_env() -> Result<Self, String> {
        let config = tenant_context::TenantConfig::from_env().map_err(|e| e.to_string())?;
        let aws = aws_setup::AwsConfig::from_env()?;
        let table = Arc::new(storage::DynamoTable::from_env(&aws)?);
        Ok(Environment { config, aws, table })
    }
}

/// Defined sites and per-(site, group) permissions in the table. Cheap to clone.
#[derive(Clone)]
pub struct SiteStore {
    table: Arc<dyn Table>,
}

impl SiteStore {
    pub fn new(table: Arc<dyn Table>) -> Self {
        SiteStore { table }
    }

    fn reader(&self) -> GlobalTable<'_> {
        GlobalTable::reader(&*self.table)
    }

    fn writer<'a>(&'a self, admin: &AdminScope) -> GlobalTable<'a> {
        GlobalTable::writer(&*self.table, admin)
    }

    /// Reads every page of a global query (at most [`MAX_QUERY_LIMIT`] items per round trip).
    async fn query_all(&self, pk: String, sk: SkRange) -> Result<Vec<Item>, StorageError> {
        let reader = self.reader();
        let mut items = Vec::new();
        let mut q = Query::new(pk, sk, MAX_QUERY_LIMIT);
        loop {
            let page = reader.query(&q).await?;
            items.extend(page.items);
            match page.last_key {
                Some(k) => q.start_after = Some(k),
                None => return Ok(items),
            }
        }
    }

    // -- sites ------------------------------------------------------------------------------

    /// A page of the defined sites, ordered by site id.
    pub async fn list_sites(
        &self,
        limit: usize,
        after: Option<Key>,
    ) -> Result<(Vec<SiteRecord>, Option<Key>), StorageError> {
        let mut q = Query::new(GlobalTable::pk(SITES_PK), SkRange::All, limit);
        q.start_after = after;
        let Page { items, last_key } = self.reader().query(&q).await?;
        let sites = items
            .iter()
            .map(SiteRecord::from_item)
            .collect::<Result<_, _>>()?;
        Ok((sites, last_key))
    }

    /// Every defined site, ordered by site id.
    pub async fn all_sites(&self) -> Result<Vec<SiteRecord>, StorageError> {
        let items = self
            .query_all(GlobalTable::pk(SITES_PK), SkRange::All)
            .await?;
        items.iter().map(SiteRecord::from_item).collect()
    }

    /// The site, if it is defined.
    pub async fn get_site(&self, site: &SiteId) -> Result<Option<SiteRecord>, StorageError> {
        let item = self.reader().get(&site_key(site)).await?;
        item.as_ref().map(SiteRecord::from_item).transpose()
    }

    /// Those of `sites` that are defined (BatchGetItem, 100 keys per round trip), in the order
    /// of `sites`.
    pub async fn get_sites(&self, sites: &[SiteId]) -> Result<Vec<SiteRecord>, StorageError> {
        let mut out = Vec::with_capacity(sites.len());
        let mut unique: Vec<&SiteId> = sites.iter().collect();
        unique.sort();
        unique.dedup();
        for chunk in unique.chunks(MAX_BATCH_GET) {
            let keys: Vec<Key> = chunk.iter().map(|s| site_key(s)).collect();
            for item in self.reader().batch_get(&keys).await? {
                out.push(SiteRecord::from_item(&item)?);
            }
        }
        out.sort_by_key(|r| sites.iter().position(|s| *s == r.site_id));
        Ok(out)
    }

    /// Defines a site; [`StorageError::ConditionFailed`] when it already is.
    pub async fn create_site(
        &self,
        admin: &AdminScope,
        site: NewSite,
    ) -> Result<SiteRecord, StorageError> {
        let record = SiteRecord {
            site_id: site.site_id,
            title: site.title.filter(|t| !t.is_empty()),
            status: site.status,
            inserted_date: site.inserted_date,
            user_id: admin.username().to_owned(),
        };
        let item = Item::new(site_key(&record.site_id), record.attrs(1));
        self.writer(admin).put(item, Condition::NotExists).await?;
        Ok(record)
    }

    /// Changes the settings of the scope's site, which needs GOVERN there. `None` when the site
    /// is not defined. Concurrent updates do not lose each other's fields (conditional write on
    /// the item's version, retried).
    pub async fn update_site(
        &self,
        scope: &TenantScope,
        update: &SiteUpdate,
    ) -> Result<Option<SiteRecord>, StorageError> {
        // Refused unless the scope holds GOVERN; writes nothing but this site's own item.
        let writer = GlobalTable::site_item_writer(&*self.table, scope, SITES_PK)?;
        let key = site_key(scope.site());
        retry_on_conflict(
            || StorageError::ConditionFailed,
            || async {
                let Some(item) = self.reader().get(&key).await? else {
                    return Ok(Some(None));
                };
                let mut record = SiteRecord::from_item(&item)?;
                let version = item.get("version").and_then(Value::as_u64).unwrap_or(0);
                if let Some(t) = &update.title {
                    record.title = Some(t.clone()).filter(|t| !t.is_empty());
                }
                if let Some(s) = update.status {
                    record.status = s;
                }
                let cond = if item.get("version").is_some() {
                    Condition::Equals {
                        attr: "version".into(),
                        value: json!(version),
                    }
                } else {
                    Condition::Exists
                };
                let put = writer
                    .put(Item::new(key.clone(), record.attrs(version + 1)), cond)
                    .await;
                Ok(storage::committed(put)?.map(|()| Some(record)))
            },
        )
        .await
    }

    /// Deletes the site with every grant on it (and their reverse entries). `false` when the
    /// site is not defined. Grants are removed before the site item (in the same transaction
    /// when they fit into one), so no grant ever outlives its site; a grant added concurrently
    /// is removed after the site is gone (adding one requires the site, so none can follow).
    pub async fn delete_site(
        &self,
        admin: &AdminScope,
        site: &SiteId,
    ) -> Result<bool, StorageError> {
        if self.get_site(site).await?.is_none() {
            return Ok(false);
        }
        let writer = self.writer(admin);
        let groups = self.site_groups(site).await?;
        // Pairs of deletes per transaction, leaving room for the site's own delete.
        let per_tx = (MAX_TRANSACTION_OPS - 1) / 2;
        let mut chunks: Vec<&[(String, PermissionSet)]> = groups.chunks(per_tx).collect();
        let last = chunks.pop().unwrap_or(&[]);
        for chunk in chunks {
            let ops = chunk
                .iter()
                .flat_map(|(g, _)| grant_deletes(site, g))
                .collect();
            writer.transact(ops).await?;
        }
        let mut ops: Vec<WriteOp> = last
            .iter()
            .flat_map(|(g, _)| grant_deletes(site, g))
            .collect();
        ops.push(WriteOp::Delete {
            key: site_key(site),
            cond: Condition::Exists,
        });
        match writer.transact(ops).await {
            Ok(()) => {}
            // Deleted concurrently.
            Err(StorageError::ConditionFailed) => return Ok(false),
            Err(e) => return Err(e),
        }
        self.delete_leftover_grants(admin, site).await?;
        Ok(true)
    }

    /// Removes grants of an undefined site (written by a grant that raced a site delete).
    async fn delete_leftover_grants(
        &self,
        admin: &AdminScope,
        site: &SiteId,
    ) -> Result<(), StorageError> {
        let leftovers = self.site_groups(site).await?;
        for chunk in leftovers.chunks(MAX_TRANSACTION_OPS / 2) {
            let ops = chunk
                .iter()
                .flat_map(|(g, _)| grant_deletes(site, g))
                .collect();
            self.writer(admin).transact(ops).await?;
        }
        Ok(())
    }

    // -- grants -----------------------------------------------------------------------------

    /// The groups holding permissions on `site`, ordered by group name.
    pub async fn site_groups(
        &self,
        site: &SiteId,
    ) -> Result<Vec<(String, PermissionSet)>, StorageError> {
        let items = self
            .query_all(site_pk(site), SkRange::BeginsWith(GROUP_SK.into()))
            .await?;
        Ok(items
            .iter()
            .filter_map(|i| {
                let group = i.key.sk.strip_prefix(GROUP_SK)?.to_owned();
                Some((group, parse_permissions(i.get("permissions"))))
            })
            .collect())
    }

    /// The permissions `group` holds on `site`, if any.
    pub async fn group_permissions_on(
        &self,
        site: &SiteId,
        group: &str,
    ) -> Result<Option<PermissionSet>, StorageError> {
        if check_group_name(group).is_err() {
            return Ok(None);
        }
        let item = self.reader().get(&grant_key(site, group)).await?;
        Ok(item.map(|i| parse_permissions(i.get("permissions"))))
    }

    /// Sets the permissions of `group` on `site` (stored closed under implication, e.g. WRITE
    /// as READ WRITE); an empty set removes the grant. `false` when the site is not defined
    /// (nothing written; an empty set on an undefined site is `false` as well).
    pub async fn set_group_permissions(
        &self,
        admin: &AdminScope,
        site: &SiteId,
        group: &str,
        permissions: PermissionSet,
    ) -> Result<bool, StorageError> {
        invalid_group(group)?;
        if permissions.is_empty() {
            self.delete_group_permissions(admin, site, group).await?;
            return Ok(self.get_site(site).await?.is_some());
        }
        let names = permissions.names();
        let mut grant = Attrs::new();
        grant.insert("groupName".into(), json!(group));
        grant.insert("permissions".into(), json!(names));
        let mut reverse = Attrs::new();
        reverse.insert("siteId".into(), json!(site));
        reverse.insert("permissions".into(), json!(names));
        let ops = vec![
            WriteOp::Check {
                key: site_key(site),
                cond: Condition::Exists,
            },
            WriteOp::Put {
                item: Item::new(grant_key(site, group), grant),
                cond: Condition::None,
            },
            WriteOp::Put {
                item: Item::new(reverse_key(site, group), reverse),
                cond: Condition::None,
            },
        ];
        match self.writer(admin).transact(ops).await {
            Ok(()) => Ok(true),
            Err(StorageError::ConditionFailed) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Removes the permissions of `group` on `site`; `false` when it held none.
    pub async fn delete_group_permissions(
        &self,
        admin: &AdminScope,
        site: &SiteId,
        group: &str,
    ) -> Result<bool, StorageError> {
        invalid_group(group)?;
        let ops = vec![
            WriteOp::Delete {
                key: grant_key(site, group),
                cond: Condition::Exists,
            },
            WriteOp::Delete {
                key: reverse_key(site, group),
                cond: Condition::None,
            },
        ];
        match self.writer(admin).transact(ops).await {
            Ok(()) => Ok(true),
            Err(StorageError::ConditionFailed) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every site on which `group` holds permissions (one Query of the group's partition).
    pub async fn sites_of_group(
        &self,
        group: &str,
    ) -> Result<Vec<(SiteId, PermissionSet)>, StorageError> {
        // A name no grant can carry (empty, NUL, too long) holds nothing; asking must not fail.
        if check_group_name(group).is_err() {
            return Ok(Vec::new());
        }
        let items = self
            .query_all(group_pk(group), SkRange::BeginsWith(SITE_SK.into()))
            .await?;
        Ok(items
            .iter()
            .filter_map(|i| {
                let site = SiteId::parse(i.key.sk.strip_prefix(SITE_SK)?).ok()?;
                Some((site, parse_permissions(i.get("permissions"))))
            })
            .filter(|(_, p)| !p.is_empty())
            .collect())
    }
}

#[async_trait]
impl DefinedSites for SiteStore {
    async fn group_permissions(
        &self,
        group: &str,
    ) -> Result<Vec<(SiteId, PermissionSet)>, LookupError> {
        self.sites_of_group(group)
            .await
            .map_err(|e| LookupError(e.to_string()))
    }

    async fn site_defined(&self, site: &SiteId) -> Result<bool, LookupError> {
        self.reader()
            .get(&site_key(site))
            .await
            .map(|i| i.is_some())
            .map_err(|e| LookupError(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_stay_under_global() {
        let s = SiteId::parse("acme").unwrap();
        assert_eq!(site_key(&s), Key::new("global#sites", "acme"));
        assert_eq!(
            grant_key(&s, "team"),
            Key::new("global#site#acme", "group#team")
        );
        assert_eq!(
            reverse_key(&s, "team"),
            Key::new("global#group#team", "site#acme")
        );
    }

    #[test]
    fn group_names_and_titles() {
        assert!(check_group_name("acme-team").is_ok());
        assert!(check_group_name("a b#c/é").is_ok());
        assert!(check_group_name("").is_err());
        assert!(check_group_name("a\u{0}b").is_err());
        assert!(check_group_name("a\nb").is_err());
        assert!(check_group_name(&"g".repeat(128)).is_ok());
        assert!(check_group_name(&"g".repeat(129)).is_err());
        assert!(check_title("Acme Corp").is_ok());
        assert!(check_title("a\tb").is_err());
        assert!(check_title(&"t".repeat(257)).is_err());
    }

    #[test]
    fn statuses_parse_case_insensitively() {
        assert_eq!(SiteStatus::parse("active"), Some(SiteStatus::Active));
        assert_eq!(SiteStatus::parse("INACTIVE"), Some(SiteStatus::Inactive));
        assert_eq!(SiteStatus::parse("gone"), None);
    }
}
