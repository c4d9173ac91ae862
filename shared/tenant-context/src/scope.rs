//! Target-site resolution and the permission check that yield a [`TenantScope`].

use crate::{Grants, Permission, PermissionSet, Principal, SiteId, TenantError};

/// What the request itself says about its target site.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestTarget<'a> {
    /// The `{tenantId}` of a `/tenant/{tenantId}/...` path (FHIR with `UseTenantSpecificUrl`).
    pub path_tenant: Option<&'a str>,
    /// The `siteId` query parameter, or the `{siteId}` path parameter of `/sites/{siteId}/...`.
    pub site_id: Option<&'a str>,
}

impl<'a> RequestTarget<'a> {
    pub fn site(site_id: Option<&'a str>) -> Self {
        RequestTarget {
            path_tenant: None,
            site_id,
        }
    }
}

/// The one site a request may act on, with what the caller may do there. Only this library can
/// construct it (after authentication and authorization); storage keys are built from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantScope {
    site: SiteId,
    permissions: PermissionSet,
    username: String,
}

impl TenantScope {
    pub fn site(&self) -> &SiteId {
        &self.site
    }

    pub fn permissions(&self) -> PermissionSet {
        self.permissions
    }

    pub fn username(&self) -> &str {
        &self.username
    }

    /// Whether the caller also holds `p` here (e.g. GOVERN for a purge inside a DELETE route).
    pub fn allows(&self, p: Permission) -> bool {
        self.permissions.allows(p)
    }

    /// Fails with 403 unless the caller holds `p` on this site.
    pub fn require(&self, p: Permission) -> Result<(), TenantError> {
        if self.allows(p) {
            Ok(())
        } else {
            Err(TenantError::Forbidden {
                site: Some(self.site.clone()),
                required: p,
                held: self.permissions,
            })
        }
    }

    /// `<siteId>#`: the prefix of every storage key of this tenant.
    pub fn key_prefix(&self) -> String {
        format!("{}#", self.site)
    }

    /// Whether a storage key belongs to this tenant.
    pub fn owns_key(&self, key: &str) -> bool {
        key.strip_prefix(self.site.as_str())
            .is_some_and(|rest| rest.starts_with('#'))
    }
}

/// Proof that the caller is an administrator, for operations on no single site (creating sites,
/// groups, users and grants). Only this library can construct it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminScope {
    username: String,
}

impl AdminScope {
    pub fn username(&self) -> &str {
        &self.username
    }
}

pub(crate) fn admin_scope(
    principal: &Principal,
    grants: &Grants,
) -> Result<AdminScope, TenantError> {
    if grants.every_site().allows(Permission::Admin) {
        Ok(AdminScope {
            username: principal.username().to_owned(),
        })
    } else {
        Err(TenantError::Forbidden {
            site: None,
            required: Permission::Admin,
            held: PermissionSet::EMPTY,
        })
    }
}

fn parse_target(param: &'static str, value: Option<&str>) -> Result<Option<SiteId>, TenantError> {
    value
        .map(|v| {
            SiteId::parse(v).map_err(|reason| TenantError::InvalidSiteId {
                param,
                value: v.to_owned(),
                reason,
            })
        })
        .transpose()
}

/// Resolves the target site (`docs/architecture.md`, "Tenant model") and checks `required`
/// on it.
pub(crate) fn resolve(
    principal: &Principal,
    grants: &Grants,
    target: RequestTarget<'_>,
    required: Permission,
) -> Result<TenantScope, TenantError> {
    if grants.is_empty() {
        return Err(TenantError::TenantMismatch(
            "the token grants access to no tenant: it carries no tenant claim, and none of its \
             groups holds a permission on a site; ask an administrator to add the user to a \
             site's group (defined sites: to grant one of its groups a permission on the site)"
                .into(),
        ));
    }
    let path = parse_target("tenant id in the URL", target.path_tenant)?;
    let param = parse_target("siteId", target.site_id)?;
    if let (Some(p), Some(q)) = (&path, &param)
        && p != q
    {
        return Err(TenantError::ConflictingTarget(format!(
            "siteId '{q}' conflicts with the tenant '{p}' in the URL; drop one of them"
        )));
    }
    let explicit = path.or(param);
    let token_tenant = principal.token_tenant();
    if let (Some(e), Some(t)) = (&explicit, token_tenant)
        && e != t
    {
        return Err(TenantError::TenantMismatch(format!(
            "the request targets tenant '{e}' but the token belongs to tenant '{t}'"
        )));
    }

    let site = match explicit.or_else(|| token_tenant.cloned()) {
        Some(s) => s,
        None => {
            let mut named = grants
                .sites()
                .filter(|(_, p)| !p.is_empty())
                .map(|(s, _)| s);
            let only = match (named.next(), named.next()) {
                (Some(s), None) if grants.every_site().is_empty() => Some(s.clone()),
                _ => None,
            };
            match only {
                Some(s) => s,
                None if !grants.every_site().is_empty() => SiteId::default_site(),
                None => {
                    return Err(TenantError::SiteIdRequired {
                        sites: grants.sites().map(|(s, _)| s.clone()).collect(),
                    });
                }
            }
        }
    };

    let held = grants.on(&site);
    if !held.allows(required) {
        return Err(TenantError::Forbidden {
            site: Some(site),
            required,
            held,
        });
    }
    Ok(TenantScope {
        site,
        permissions: held,
        username: principal.username().to_owned(),
    })
}
