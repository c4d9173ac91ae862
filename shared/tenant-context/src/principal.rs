//! The caller: who they are, their groups and the tenant their token names.

use crate::{Claims, SiteId, TenantConfig, TenantError};

/// An authenticated caller, built once per request from verified claims.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    username: String,
    groups: Vec<String>,
    token_tenant: Option<SiteId>,
    claims: Claims,
}

impl Principal {
    /// Builds the principal from verified claims.
    ///
    /// `fhir_base_url` is the FHIR base URL of this deployment (`https://<api>/fhir`): an `aud`
    /// entry `<fhir_base_url>/tenant/<id>` names the caller's tenant, as in FHIR Works on AWS.
    /// With multi-tenancy on, the tenant claim (at `TenantIdClaimPath`) and such `aud` entries
    /// must agree and hold valid site ids, or the token is refused (401).
    pub fn from_claims(
        claims: Claims,
        config: &TenantConfig,
        fhir_base_url: Option<&str>,
    ) -> Result<Self, TenantError> {
        let username = ["cognito:username", "username", "sub"]
            .iter()
            .find_map(|k| claims.get_str(k).filter(|s| !s.is_empty()))
            .ok_or_else(|| {
                TenantError::unauthenticated(
                    "the token names no user (no cognito:username, username or sub claim)",
                )
            })?;
        let groups = claims.get_list("cognito:groups");
        let token_tenant = if config.multi_tenancy {
            token_tenant(&claims, &config.tenant_claim_path, fhir_base_url)?
        } else {
            None
        };
        Ok(Principal {
            username,
            groups,
            token_tenant,
            claims,
        })
    }

    pub fn username(&self) -> &str {
        &self.username
    }

    pub fn groups(&self) -> &[String] {
        &self.groups
    }

    /// The tenant named by the token (tenant claim or `aud`), if any.
    pub fn token_tenant(&self) -> Option<&SiteId> {
        self.token_tenant.as_ref()
    }

    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

fn token_tenant(
    claims: &Claims,
    claim_path: &str,
    fhir_base_url: Option<&str>,
) -> Result<Option<SiteId>, TenantError> {
    let from_claim = match claims.get_path(claim_path) {
        None => None,
        Some(_) => {
            let raw = claims.get_str(claim_path).ok_or_else(|| {
                TenantError::mismatch(format!("the tenant claim '{claim_path}' is not a string"))
            })?;
            Some(parse_tenant(&raw, claim_path)?)
        }
    };

    let mut from_aud: Option<SiteId> = None;
    if let Some(base) = fhir_base_url {
        let prefix = format!("{}/tenant/", base.trim_end_matches('/'));
        for entry in claims.get_list("aud") {
            let Some(rest) = entry.strip_prefix(&prefix) else {
                continue;
            };
            let tenant = parse_tenant(rest, "aud")?;
            match &from_aud {
                Some(t) if *t != tenant => {
                    return Err(TenantError::mismatch(format!(
                        "the token's aud names two tenants ('{t}' and '{tenant}'); a token must name one"
                    )));
                }
                _ => from_aud = Some(tenant),
            }
        }
    }

    match (from_claim, from_aud) {
        (Some(c), Some(a)) if c != a => Err(TenantError::mismatch(format!(
            "the token's tenant claim '{c}' and its aud tenant '{a}' differ"
        ))),
        (c, a) => Ok(c.or(a)),
    }
}

fn parse_tenant(raw: &str, source: &str) -> Result<SiteId, TenantError> {
    SiteId::parse(raw).map_err(|e| {
        TenantError::mismatch(format!(
            "the token's tenant id '{raw}' (from {source}) is invalid: {e}"
        ))
    })
}
