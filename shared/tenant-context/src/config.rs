//! Configuration of the tenant model, read from the environment variables the template sets.

use std::time::Duration;

use crate::error::ConfigError;

/// How sites come into existence (`SiteMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiteMode {
    /// A Cognito group named like a site is that site (`X`, `X_read`, `X_govern`).
    Automatic,
    /// Sites and per-(site, group) permissions are stored in the table (`POST /sites`).
    Defined,
}

/// The tenant model of one deployment (the template's parameters).
#[derive(Debug, Clone)]
pub struct TenantConfig {
    /// `EnableMultiTenancy`: when false the only site is `default`.
    pub multi_tenancy: bool,
    /// `SiteMode`.
    pub site_mode: SiteMode,
    /// `UseTenantSpecificUrl`: FHIR is served under `/fhir/tenant/{tenantId}`.
    pub tenant_specific_url: bool,
    /// `TenantIdClaimPath`: the claim holding the caller's tenant (dotted path for nested claims).
    pub tenant_claim_path: String,
    /// `AdminGroupName`: members hold ADMIN on every site.
    pub admin_group: String,
    /// `PermissionCacheSeconds`: how long defined-mode grants are cached (bound on revocation lag).
    pub permission_cache: Duration,
    /// The FHIR base URL used to recognise `aud` entries `<base>/tenant/<id>`; when unset it is
    /// derived from the request's domain (`https://<domain>/fhir`).
    pub fhir_base_url: Option<String>,
    /// Bearer-token verification (used when no API Gateway authorizer context is present).
    pub jwt: Option<JwtConfig>,
}

/// How bearer tokens are verified (Cognito user pool tokens, or the local server's).
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// Exact `iss` value, e.g. `https://cognito-idp.<region>.amazonaws.com/<poolId>`.
    pub issuer: String,
    /// Accepted app client ids: `aud` of ID tokens, `client_id` of access tokens.
    pub audiences: Vec<String>,
    /// Where the JWKS is fetched from (default `<issuer>/.well-known/jwks.json`).
    pub jwks_url: String,
    /// Accepted `token_use` values (default `id` and `access`).
    pub token_uses: Vec<String>,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
    /// Minimum time between two JWKS fetches caused by an unknown `kid`.
    pub jwks_refetch_interval: Duration,
}

impl JwtConfig {
    pub fn new(issuer: impl Into<String>, audiences: Vec<String>) -> Self {
        let issuer = issuer.into();
        JwtConfig {
            jwks_url: format!("{}/.well-known/jwks.json", issuer.trim_end_matches('/')),
            issuer,
            audiences,
            token_uses: vec!["id".into(), "access".into()],
            leeway: Duration::from_secs(10),
            jwks_refetch_interval: Duration::from_secs(10),
        }
    }
}

impl Default for TenantConfig {
    fn default() -> Self {
        TenantConfig {
            multi_tenancy: true,
            site_mode: SiteMode::Automatic,
            tenant_specific_url: false,
            tenant_claim_path: "custom:tenantId".into(),
            admin_group: "Admins".into(),
            permission_cache: Duration::from_secs(30),
            fhir_base_url: None,
            jwt: None,
        }
    }
}

impl TenantConfig {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads the configuration through `get` (the environment, or a map in tests).
    ///
    /// Variables: `ENABLE_MULTI_TENANCY`, `SITE_MODE`, `USE_TENANT_SPECIFIC_URL`,
    /// `TENANT_ID_CLAIM_PATH`, `ADMIN_GROUP_NAME`, `PERMISSION_CACHE_SECONDS`, `FHIR_BASE_URL`,
    /// `JWT_ISSUER`, `JWT_AUDIENCE` (comma-separated), `JWKS_URL`, `JWT_TOKEN_USE`
    /// (comma-separated). Empty values count as unset.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &str| {
            get(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let d = TenantConfig::default();
        let bool_var = |k: &'static str, default: bool| match get(k) {
            None => Ok(default),
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Ok(true),
                "false" | "0" | "no" => Ok(false),
                _ => Err(ConfigError::invalid(k, &v, "true or false")),
            },
        };
        let site_mode = match get("SITE_MODE") {
            None => d.site_mode,
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "automatic" => SiteMode::Automatic,
                "defined" => SiteMode::Defined,
                _ => {
                    return Err(ConfigError::invalid(
                        "SITE_MODE",
                        &v,
                        "automatic or defined",
                    ));
                }
            },
        };
        let permission_cache = match get("PERMISSION_CACHE_SECONDS") {
            None => d.permission_cache,
            Some(v) => Duration::from_secs(v.parse::<u64>().map_err(|_| {
                ConfigError::invalid("PERMISSION_CACHE_SECONDS", &v, "a whole number of seconds")
            })?),
        };
        let list = |v: String| -> Vec<String> {
            v.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        };
        let jwt = match get("JWT_ISSUER") {
            None => None,
            Some(issuer) => {
                let audiences = get("JWT_AUDIENCE").map(list).unwrap_or_default();
                if audiences.is_empty() {
                    return Err(ConfigError::missing(
                        "JWT_AUDIENCE",
                        "JWT_ISSUER is set, so the accepted app client ids are needed",
                    ));
                }
                let mut jwt = JwtConfig::new(issuer, audiences);
                if let Some(url) = get("JWKS_URL") {
                    jwt.jwks_url = url;
                }
                if let Some(uses) = get("JWT_TOKEN_USE") {
                    jwt.token_uses = list(uses);
                }
                Some(jwt)
            }
        };
        Ok(TenantConfig {
            multi_tenancy: bool_var("ENABLE_MULTI_TENANCY", d.multi_tenancy)?,
            site_mode,
            tenant_specific_url: bool_var("USE_TENANT_SPECIFIC_URL", d.tenant_specific_url)?,
            tenant_claim_path: get("TENANT_ID_CLAIM_PATH").unwrap_or(d.tenant_claim_path),
            admin_group: get("ADMIN_GROUP_NAME").unwrap_or(d.admin_group),
            permission_cache,
            fhir_base_url: get("FHIR_BASE_URL").map(|u| u.trim_end_matches('/').to_owned()),
            jwt,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(vars: &[(&str, &str)]) -> Result<TenantConfig, ConfigError> {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        TenantConfig::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let c = cfg(&[]).unwrap();
        assert!(c.multi_tenancy);
        assert_eq!(c.site_mode, SiteMode::Automatic);
        assert!(!c.tenant_specific_url);
        assert_eq!(c.tenant_claim_path, "custom:tenantId");
        assert_eq!(c.admin_group, "Admins");
        assert_eq!(c.permission_cache, Duration::from_secs(30));
        assert!(c.jwt.is_none());
        assert!(c.fhir_base_url.is_none());
    }

    #[test]
    fn reads_every_variable() {
        let c = cfg(&[
            ("ENABLE_MULTI_TENANCY", "false"),
            ("SITE_MODE", "defined"),
            ("USE_TENANT_SPECIFIC_URL", "true"),
            ("TENANT_ID_CLAIM_PATH", "ext.tenant"),
            ("ADMIN_GROUP_NAME", "Root"),
            ("PERMISSION_CACHE_SECONDS", "5"),
            ("FHIR_BASE_URL", "https://api.example.com/fhir/"),
            ("JWT_ISSUER", "https://issuer.example.com/pool"),
            ("JWT_AUDIENCE", "client1, client2"),
            ("JWT_TOKEN_USE", "id"),
        ])
        .unwrap();
        assert!(!c.multi_tenancy);
        assert_eq!(c.site_mode, SiteMode::Defined);
        assert!(c.tenant_specific_url);
        assert_eq!(c.tenant_claim_path, "ext.tenant");
        assert_eq!(c.admin_group, "Root");
        assert_eq!(c.permission_cache, Duration::from_secs(5));
        assert_eq!(
            c.fhir_base_url.as_deref(),
            Some("https://api.example.com/fhir")
        );
        let jwt = c.jwt.unwrap();
        assert_eq!(jwt.audiences, ["client1", "client2"]);
        assert_eq!(
            jwt.jwks_url,
            "https://issuer.example.com/pool/.well-known/jwks.json"
        );
        assert_eq!(jwt.token_uses, ["id"]);
    }

    #[test]
    fn rejects_bad_values_with_the_variable_name() {
        for (k, v) in [
            ("ENABLE_MULTI_TENANCY", "maybe"),
            ("SITE_MODE", "manual"),
            ("PERMISSION_CACHE_SECONDS", "-1"),
        ] {
            let e = cfg(&[(k, v)]).unwrap_err().to_string();
            assert!(e.contains(k), "{e}");
        }
        let e = cfg(&[("JWT_ISSUER", "https://x")]).unwrap_err().to_string();
        assert!(e.contains("JWT_AUDIENCE"), "{e}");
    }
}
