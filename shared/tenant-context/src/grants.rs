//! Grants: which permissions a principal holds on which sites (`docs/architecture.md`,
//! "Tenant model").

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::{Permission, PermissionSet, Principal, SiteId, SiteMode, TenantConfig, TenantError};

/// Group that authenticates a user but grants nothing.
pub const AUTHENTICATION_ONLY_GROUP: &str = "authentication_only";
/// Read-only group of the single site when multi-tenancy is off.
pub const DEFAULT_READ_GROUP: &str = "default_read";

/// The sites a principal may act on and with which permissions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Permissions held on every site (ADMIN for the admin group).
    every_site: PermissionSet,
    /// Permissions held on named sites.
    sites: BTreeMap<SiteId, PermissionSet>,
}

impl Grants {
    /// The permissions held on `site`.
    pub fn on(&self, site: &SiteId) -> PermissionSet {
        self.sites
            .get(site)
            .copied()
            .unwrap_or_default()
            .union(self.every_site)
    }

    /// Permissions held on every site, whether named or not.
    pub fn every_site(&self) -> PermissionSet {
        self.every_site
    }

    /// The named sites with their permissions, ordered by site id.
    pub fn sites(&self) -> impl Iterator<Item = (&SiteId, PermissionSet)> {
        self.sites
            .iter()
            .map(|(s, p)| (s, p.union(self.every_site)))
    }

    /// True when the principal may act on no site at all.
    pub fn is_empty(&self) -> bool {
        self.every_site.is_empty() && self.sites.values().all(|p| p.is_empty())
    }

    fn add(&mut self, site: SiteId, perms: PermissionSet) {
        if perms.is_empty() {
            return;
        }
        let e = self.sites.entry(site).or_default();
        *e = e.union(perms);
    }
}

/// Failure of a defined-site lookup (storage unreachable, throttled, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("site lookup failed: {0}")]
pub struct LookupError(pub String);

/// Defined-mode storage of sites and per-(site, group) permissions; the sites function backs it
/// with the table.
#[async_trait]
pub trait DefinedSites: Send + Sync {
    /// Every site on which `group` holds permissions, with those permissions.
    async fn group_permissions(
        &self,
        group: &str,
    ) -> Result<Vec<(SiteId, PermissionSet)>, LookupError>;
    /// Whether `site` has been defined (`POST /sites`).
    async fn site_defined(&self, site: &SiteId) -> Result<bool, LookupError>;
}

#[async_trait]
impl<T: DefinedSites + ?Sized> DefinedSites for Arc<T> {
    async fn group_permissions(
        &self,
        group: &str,
    ) -> Result<Vec<(SiteId, PermissionSet)>, LookupError> {
        (**self).group_permissions(group).await
    }

    async fn site_defined(&self, site: &SiteId) -> Result<bool, LookupError> {
        (**self).site_defined(site).await
    }
}

/// Computes grants from the principal's groups and tenant, as the grants table of
/// `docs/architecture.md` ("Tenant model") says.
pub(crate) async fn grants_for(
    principal: &Principal,
    config: &TenantConfig,
    defined: Option<&dyn DefinedSites>,
) -> Result<Grants, TenantError> {
    let mut g = Grants::default();
    if principal.in_group(&config.admin_group) {
        g.every_site = PermissionSet::of(&[Permission::Admin]);
    }
    if !config.multi_tenancy {
        let site = SiteId::default_site();
        if !g.every_site.is_empty() {
            // Admins hold ADMIN on the one site there is.
            g.sites.insert(site, g.every_site);
            g.every_site = PermissionSet::EMPTY;
            return Ok(g);
        }
        let groups: Vec<&str> = principal
            .groups()
            .iter()
            .map(String::as_str)
            .filter(|g| *g != AUTHENTICATION_ONLY_GROUP)
            .collect();
        let only_authentication = groups.is_empty() && !principal.groups().is_empty();
        let perms = if only_authentication {
            PermissionSet::EMPTY
        } else if !groups.is_empty() && groups.iter().all(|g| *g == DEFAULT_READ_GROUP) {
            PermissionSet::of(&[Permission::Read])
        } else {
            PermissionSet::read_write_delete()
        };
        g.add(site, perms);
        return Ok(g);
    }

    let site_groups = principal
        .groups()
        .iter()
        .filter(|grp| *grp != &config.admin_group && *grp != AUTHENTICATION_ONLY_GROUP);
    match config.site_mode {
        SiteMode::Automatic => {
            for group in site_groups {
                if let Some((site, perms)) = automatic_group_grant(group) {
                    g.add(site, perms);
                }
            }
        }
        SiteMode::Defined => {
            let defined = defined.ok_or_else(|| {
                TenantError::Unavailable(
                    "defined site mode is configured but no site store is available".into(),
                )
            })?;
            for group in site_groups {
                let perms = defined
                    .group_permissions(group)
                    .await
                    .map_err(|e| TenantError::Unavailable(e.to_string()))?;
                for (site, p) in perms {
                    g.add(site, p);
                }
            }
        }
    }

    if let Some(tenant) = principal.token_tenant() {
        let usable = match config.site_mode {
            SiteMode::Automatic => true,
            SiteMode::Defined => match defined {
                Some(d) => d
                    .site_defined(tenant)
                    .await
                    .map_err(|e| TenantError::Unavailable(e.to_string()))?,
                None => false,
            },
        };
        if usable {
            g.add(tenant.clone(), PermissionSet::read_write_delete());
        }
    }
    Ok(g)
}

/// The grant of an automatic-mode group: `X` -> READ WRITE DELETE on X, `X_read` -> READ on X,
/// `X_govern` -> READ WRITE DELETE GOVERN on X. Anything else grants nothing.
pub fn automatic_group_grant(group: &str) -> Option<(SiteId, PermissionSet)> {
    if let Some(site) = group.strip_suffix("_read") {
        return Some((
            SiteId::parse(site).ok()?,
            PermissionSet::of(&[Permission::Read]),
        ));
    }
    if let Some(site) = group.strip_suffix("_govern") {
        let perms = PermissionSet::read_write_delete().with(Permission::Govern);
        return Some((SiteId::parse(site).ok()?, perms));
    }
    Some((
        SiteId::parse(group).ok()?,
        PermissionSet::read_write_delete(),
    ))
}

type Cached<T> = Mutex<HashMap<String, (Instant, T)>>;

/// Caches a [`DefinedSites`] store in memory for at most `ttl` (`PermissionCacheSeconds`), the
/// documented bound on how late a revocation bites. A `ttl` of zero disables caching.
pub struct CachedDefinedSites<D> {
    inner: D,
    ttl: Duration,
    groups: Cached<Arc<Vec<(SiteId, PermissionSet)>>>,
    sites: Cached<bool>,
}

/// Entries kept per map before the cache is emptied (bounds memory under many distinct groups).
const MAX_CACHE_ENTRIES: usize = 10_000;

impl<D: DefinedSites> CachedDefinedSites<D> {
    pub fn new(inner: D, ttl: Duration) -> Self {
        CachedDefinedSites {
            inner,
            ttl,
            groups: Mutex::default(),
            sites: Mutex::default(),
        }
    }

    /// Drops every cached entry (used after this process itself changes grants).
    pub fn invalidate(&self) {
        lock(&self.groups).clear();
        lock(&self.sites).clear();
    }

    fn get<T: Clone>(&self, map: &Cached<T>, key: &str) -> Option<T> {
        let m = lock(map);
        let (at, v) = m.get(key)?;
        (at.elapsed() < self.ttl).then(|| v.clone())
    }

    fn put<T>(&self, map: &Cached<T>, key: &str, value: T) {
        if self.ttl.is_zero() {
            return;
        }
        let mut m = lock(map);
        if m.len() >= MAX_CACHE_ENTRIES {
            m.clear();
        }
        m.insert(key.to_owned(), (Instant::now(), value));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[async_trait]
impl<D: DefinedSites> DefinedSites for CachedDefinedSites<D> {
    async fn group_permissions(
        &self,
        group: &str,
    ) -> Result<Vec<(SiteId, PermissionSet)>, LookupError> {
        if let Some(v) = self.get(&self.groups, group) {
            return Ok(v.as_ref().clone());
        }
        let v = self.inner.group_permissions(group).await?;
        self.put(&self.groups, group, Arc::new(v.clone()));
        Ok(v)
    }

    async fn site_defined(&self, site: &SiteId) -> Result<bool, LookupError> {
        if let Some(v) = self.get(&self.sites, site.as_str()) {
            return Ok(v);
        }
        let v = self.inner.site_defined(site).await?;
        self.put(&self.sites, site.as_str(), v);
        Ok(v)
    }
}
