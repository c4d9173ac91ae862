//! The one error type of the tenant context, and its HTTP status.

use crate::{Permission, PermissionSet, SiteId, SiteIdError};

/// Why a request gets no tenant scope. [`TenantError::status`] is the only place that maps it
/// to HTTP; the `Display` text is the message the caller sees and says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantError {
    /// 400: a `siteId` (or tenant path segment) that is not a valid site id.
    #[error("invalid {param} '{value}': {reason}")]
    InvalidSiteId {
        param: &'static str,
        value: String,
        reason: SiteIdError,
    },
    /// 400: the target site is ambiguous.
    #[error("{}", site_id_required_message(.sites))]
    SiteIdRequired { sites: Vec<SiteId> },
    /// 400: two parts of the request name different sites.
    #[error("{0}")]
    ConflictingTarget(String),
    /// 401: no credentials, or credentials that do not verify.
    #[error("{0}")]
    Unauthenticated(String),
    /// 401: the token's tenant is missing, invalid or contradicts the request.
    #[error("{0}")]
    TenantMismatch(String),
    /// 403: the caller lacks the permission on the target site.
    #[error("{}", forbidden_message(.site, *.required, *.held))]
    Forbidden {
        /// `None` for operations on no particular site (creating sites, groups, users).
        site: Option<SiteId>,
        required: Permission,
        held: PermissionSet,
    },
    /// 503: a dependency needed to decide (JWKS, defined-site grants) could not be reached.
    #[error("{0}")]
    Unavailable(String),
}

impl TenantError {
    /// The HTTP status code of this error.
    pub fn status(&self) -> u16 {
        match self {
            TenantError::InvalidSiteId { .. }
            | TenantError::SiteIdRequired { .. }
            | TenantError::ConflictingTarget(_) => 400,
            TenantError::Unauthenticated(_) | TenantError::TenantMismatch(_) => 401,
            TenantError::Forbidden { .. } => 403,
            TenantError::Unavailable(_) => 503,
        }
    }

    pub(crate) fn unauthenticated(msg: impl Into<String>) -> Self {
        TenantError::Unauthenticated(msg.into())
    }

    pub(crate) fn mismatch(msg: impl Into<String>) -> Self {
        TenantError::TenantMismatch(msg.into())
    }
}

fn site_id_required_message(sites: &[SiteId]) -> String {
    if sites.is_empty() {
        return "siteId is required: the caller has access to no site".into();
    }
    let list: Vec<&str> = sites.iter().map(SiteId::as_str).collect();
    format!(
        "siteId is required: the caller has access to several sites ({}); add ?siteId=<one of them>",
        list.join(", ")
    )
}

fn forbidden_message(site: &Option<SiteId>, required: Permission, held: PermissionSet) -> String {
    match site {
        Some(site) if held.is_empty() => format!(
            "no access to site '{site}': this operation needs {required}; ask an administrator for a group on that site"
        ),
        Some(site) => format!(
            "this operation needs {required} on site '{site}', but the caller holds only {held}"
        ),
        None => format!(
            "this operation needs {required}; only members of the administrators group may perform it"
        ),
    }
}

/// A configuration value that the function cannot start with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable {var}: {message}")]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

impl ConfigError {
    pub(crate) fn invalid(var: &'static str, value: &str, expected: &str) -> Self {
        ConfigError {
            var,
            message: format!("'{value}' is not valid; expected {expected}"),
        }
    }

    pub(crate) fn missing(var: &'static str, why: &str) -> Self {
        ConfigError {
            var,
            message: format!("missing: {why}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        let site = SiteId::parse("a").unwrap();
        let cases = [
            (
                TenantError::InvalidSiteId {
                    param: "siteId",
                    value: "a#b".into(),
                    reason: SiteIdError::BadChar('#'),
                },
                400,
            ),
            (TenantError::SiteIdRequired { sites: vec![] }, 400),
            (TenantError::ConflictingTarget("x".into()), 400),
            (TenantError::Unauthenticated("x".into()), 401),
            (TenantError::TenantMismatch("x".into()), 401),
            (
                TenantError::Forbidden {
                    site: Some(site),
                    required: Permission::Write,
                    held: PermissionSet::of(&[Permission::Read]),
                },
                403,
            ),
            (TenantError::Unavailable("x".into()), 503),
        ];
        for (e, status) in cases {
            assert_eq!(e.status(), status, "{e}");
            assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn messages_tell_what_to_do() {
        let e = TenantError::SiteIdRequired {
            sites: vec![
                SiteId::parse("default").unwrap(),
                SiteId::parse("other").unwrap(),
            ],
        };
        let m = e.to_string();
        assert!(m.contains("siteId") && m.contains("default, other"), "{m}");
        let e = TenantError::Forbidden {
            site: Some(SiteId::parse("marketing").unwrap()),
            required: Permission::Write,
            held: PermissionSet::of(&[Permission::Read]),
        };
        assert_eq!(
            e.to_string(),
            "this operation needs WRITE on site 'marketing', but the caller holds only READ"
        );
    }
}
