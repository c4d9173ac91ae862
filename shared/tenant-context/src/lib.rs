//! The tenant-context library: turns a caller's token into a [`Principal`], the principal into
//! [`Grants`], and every request into exactly one authorized [`TenantScope`]
//! (`docs/architecture.md`, "Tenant model"). No storage call can be made without that scope.
//!
//! ```text
//! claims / bearer token --authenticate--> Principal --grants--> Grants
//!        + RequestTarget + required Permission --authorize--> TenantScope | TenantError
//! ```

mod claims;
mod config;
mod error;
mod grants;
mod jwt;
pub mod jwt_crypto;
mod permission;
mod principal;
mod scope;
mod site;

use std::sync::Arc;

pub use claims::{Claims, string_list};
pub use config::{JwtConfig, SiteMode, TenantConfig};
pub use error::{ConfigError, TenantError};
pub use grants::{
    AUTHENTICATION_ONLY_GROUP, CachedDefinedSites, DEFAULT_READ_GROUP, DefinedSites, Grants,
    LookupError, automatic_group_grant,
};
pub use jwt::{HttpJwks, JwksSource, JwtVerifier};
pub use permission::{Permission, PermissionSet};
pub use principal::Principal;
pub use scope::{AdminScope, RequestTarget, TenantScope};
pub use site::{DEFAULT_SITE, RESERVED_SITE_IDS, SiteId, SiteIdError};

/// What a request presents to prove who it is.
#[derive(Debug, Clone, Default)]
pub struct Credentials<'a> {
    /// Claims an API Gateway authorizer already verified (HTTP API v2 JWT or REST v1 Cognito).
    pub authorizer_claims: Option<Claims>,
    /// The `Authorization` header value, used only when there are no authorizer claims.
    pub authorization: Option<&'a str>,
    /// This deployment's FHIR base URL (for `aud` tenant entries).
    pub fhir_base_url: Option<String>,
}

/// Per-process tenant context: configuration, token verifier and defined-site store.
pub struct TenantContext {
    config: TenantConfig,
    verifier: Option<JwtVerifier>,
    defined: Option<Arc<dyn DefinedSites>>,
}

impl TenantContext {
    /// A context for `config`; bearer tokens are verified against `config.jwt` when set (the
    /// JWKS is fetched on first use, not here).
    pub fn new(config: TenantConfig) -> Self {
        let verifier = config.jwt.clone().map(JwtVerifier::from_config);
        TenantContext {
            config,
            verifier,
            defined: None,
        }
    }

    /// Replaces the bearer-token verifier (e.g. one with a local JWKS source).
    pub fn with_verifier(mut self, verifier: JwtVerifier) -> Self {
        self.verifier = Some(verifier);
        self
    }

    /// Sets the defined-mode site store, cached for `PermissionCacheSeconds`.
    pub fn with_defined_sites<D: DefinedSites + 'static>(mut self, sites: D) -> Self {
        let cached = CachedDefinedSites::new(sites, self.config.permission_cache);
        self.defined = Some(Arc::new(cached));
        self
    }

    pub fn config(&self) -> &TenantConfig {
        &self.config
    }

    /// Identifies the caller: authorizer claims if present, else a verified bearer token.
    pub async fn authenticate(&self, creds: Credentials<'_>) -> Result<Principal, TenantError> {
        let claims = match creds.authorizer_claims {
            Some(c) => c,
            None => {
                let header = creds.authorization.ok_or_else(|| {
                    TenantError::Unauthenticated(
                        "no credentials: send 'Authorization: Bearer <token>' with a Cognito ID or access token".into(),
                    )
                })?;
                let token = bearer_token(header).ok_or_else(|| {
                    TenantError::Unauthenticated(
                        "the Authorization header must be 'Bearer <token>'".into(),
                    )
                })?;
                let verifier = self.verifier.as_ref().ok_or_else(|| {
                    TenantError::Unauthenticated(
                        "bearer tokens cannot be verified here: JWT_ISSUER is not configured"
                            .into(),
                    )
                })?;
                verifier.verify(token).await?
            }
        };
        Principal::from_claims(claims, &self.config, creds.fhir_base_url.as_deref())
    }

    /// The principal's grants (the grants table of `docs/architecture.md`).
    pub async fn grants(&self, principal: &Principal) -> Result<Grants, TenantError> {
        grants::grants_for(principal, &self.config, self.defined.as_deref()).await
    }

    /// Resolves the request's target site and checks `required` there.
    pub async fn authorize(
        &self,
        principal: &Principal,
        target: RequestTarget<'_>,
        required: Permission,
    ) -> Result<TenantScope, TenantError> {
        let grants = self.grants(principal).await?;
        scope::resolve(principal, &grants, target, required)
    }

    /// Checks that the caller may administer the deployment (create sites, groups, users, grants).
    pub async fn authorize_admin(&self, principal: &Principal) -> Result<AdminScope, TenantError> {
        let grants = self.grants(principal).await?;
        scope::admin_scope(principal, &grants)
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}
