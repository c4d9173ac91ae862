//! Bearer-token verification for requests that reach a function without an API Gateway
//! authorizer context (local server, `sam local`, direct invocation): RS256 only, key by `kid`
//! from a JWKS, exact `iss`, `exp`/`nbf` with a small leeway, `token_use`, and `aud` (ID tokens)
//! or `client_id` (access tokens) against the accepted app clients.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::{Claims, JwtConfig, TenantError};

/// Where a JWKS comes from.
#[async_trait]
pub trait JwksSource: Send + Sync {
    async fn fetch(&self) -> Result<JwkSet, String>;
}

/// A fixed key set (keys held by this process, e.g. the local server's own signing key).
#[async_trait]
impl JwksSource for JwkSet {
    async fn fetch(&self) -> Result<JwkSet, String> {
        Ok(self.clone())
    }
}

/// A JWKS served over HTTP(S), e.g. Cognito's `<issuer>/.well-known/jwks.json`. The HTTP client
/// is created on first use, so functions that never see a bearer token never pay for it.
pub struct HttpJwks {
    url: String,
    client: std::sync::OnceLock<reqwest::Client>,
}

impl HttpJwks {
    pub fn new(url: impl Into<String>) -> Self {
        HttpJwks {
            url: url.into(),
            client: std::sync::OnceLock::new(),
        }
    }
}

#[async_trait]
impl JwksSource for HttpJwks {
    async fn fetch(&self) -> Result<JwkSet, String> {
        let client = self.client.get_or_init(|| {
            // reqwest is built without a crypto provider of its own (see Cargo.toml): ring.
            let _ = rustls::crypto::ring::default_provider().install_default();
            reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(5))
                .build()
                .unwrap_or_default()
        });
        let resp = client
            .get(&self.url)
            .send()
            .await
            .map_err(|e| format!("JWKS request to {} failed: {e}", self.url))?;
        if !resp.status().is_success() {
            return Err(format!(
                "JWKS request to {} answered {}",
                self.url,
                resp.status()
            ));
        }
        resp.json::<JwkSet>()
            .await
            .map_err(|e| format!("JWKS at {} is not a valid key set: {e}", self.url))
    }
}

#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, Arc<DecodingKey>>,
    fetched_at: Option<Instant>,
    /// Whether the last fetch failed (then an unknown kid means "cannot tell", not "forged").
    last_fetch_failed: bool,
}

/// Verifies bearer tokens against one issuer. Keys are cached for the life of the process; an
/// unknown `kid` triggers a refetch at most once per `jwks_refetch_interval`.
pub struct JwtVerifier {
    config: JwtConfig,
    source: Arc<dyn JwksSource>,
    cache: Mutex<KeyCache>,
    fetch_lock: tokio::sync::Mutex<()>,
}

fn unauthenticated(why: impl std::fmt::Display) -> TenantError {
    TenantError::Unauthenticated(format!("invalid bearer token: {why}"))
}

impl JwtVerifier {
    pub fn new(config: JwtConfig, source: Arc<dyn JwksSource>) -> Self {
        JwtVerifier {
            config,
            source,
            cache: Mutex::default(),
            fetch_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// A verifier that fetches the JWKS from `config.jwks_url`.
    pub fn from_config(config: JwtConfig) -> Self {
        let source = Arc::new(HttpJwks::new(config.jwks_url.clone()));
        Self::new(config, source)
    }

    pub fn config(&self) -> &JwtConfig {
        &self.config
    }

    /// Verifies `token` and returns its claims, or a 401 error saying why not.
    pub async fn verify(&self, token: &str) -> Result<Claims, TenantError> {
        crate::jwt_crypto::install();
        let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
            ErrorKind::InvalidAlgorithmName | ErrorKind::UnsupportedAlgorithm => {
                unauthenticated("only RS256 tokens are accepted")
            }
            _ => unauthenticated("the token is malformed"),
        })?;
        if header.alg != Algorithm::RS256 {
            return Err(unauthenticated(format!(
                "algorithm {:?} is not accepted; only RS256",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| unauthenticated("the token header has no kid"))?;
        let key = self.key(&kid).await?;

        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_required_spec_claims(&["exp", "iss"]);
        validation.leeway = self.config.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // `aud` applies to ID tokens only; checked below together with `client_id`.
        validation.validate_aud = false;

        let data =
            jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation).map_err(|e| {
                match e.kind() {
                    ErrorKind::ExpiredSignature => unauthenticated("the token has expired"),
                    ErrorKind::ImmatureSignature => {
                        unauthenticated("the token is not valid yet (nbf)")
                    }
                    ErrorKind::InvalidIssuer => {
                        unauthenticated("the token was issued by another issuer")
                    }
                    ErrorKind::InvalidSignature => unauthenticated("the signature does not verify"),
                    ErrorKind::InvalidAlgorithm => {
                        unauthenticated("only RS256 tokens are accepted")
                    }
                    ErrorKind::MissingRequiredClaim(c) => {
                        unauthenticated(format!("the token has no {c} claim"))
                    }
                    _ => unauthenticated("the token is malformed"),
                }
            })?;
        let claims = data.claims;
        self.check_client(&claims)?;
        Ok(Claims::new(claims))
    }

    fn check_client(&self, claims: &Map<String, Value>) -> Result<(), TenantError> {
        let token_use = claims
            .get("token_use")
            .and_then(Value::as_str)
            .ok_or_else(|| unauthenticated("the token has no token_use claim"))?;
        if !self.config.token_uses.iter().any(|u| u == token_use) {
            return Err(unauthenticated(format!(
                "token_use '{token_use}' is not accepted (accepted: {})",
                self.config.token_uses.join(", ")
            )));
        }
        let accepted = |client: &str| self.config.audiences.iter().any(|a| a == client);
        match token_use {
            "access" => {
                let client = claims
                    .get("client_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if !accepted(client) {
                    return Err(unauthenticated(
                        "the access token's client_id is not an accepted app client",
                    ));
                }
            }
            _ => {
                // RFC 7519: `aud` is one string or an array of strings, never a list in a string.
                let ok = match claims.get("aud") {
                    Some(Value::String(a)) => accepted(a),
                    Some(Value::Array(auds)) => auds.iter().filter_map(Value::as_str).any(accepted),
                    _ => false,
                };
                if !ok {
                    return Err(unauthenticated(
                        "the token's aud is not an accepted app client",
                    ));
                }
            }
        }
        Ok(())
    }

    fn cached(&self, kid: &str) -> (Option<Arc<DecodingKey>>, Option<Instant>, bool) {
        let c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        (c.keys.get(kid).cloned(), c.fetched_at, c.last_fetch_failed)
    }

    async fn key(&self, kid: &str) -> Result<Arc<DecodingKey>, TenantError> {
        if let (Some(k), ..) = self.cached(kid) {
            return Ok(k);
        }
        // One fetch at a time; whoever waited re-checks the cache first.
        let _guard = self.fetch_lock.lock().await;
        let (key, fetched_at, failed) = self.cached(kid);
        if let Some(k) = key {
            return Ok(k);
        }
        let unavailable = || {
            TenantError::Unavailable(
                "the token signing keys could not be fetched; try again shortly".into(),
            )
        };
        if fetched_at.is_some_and(|at| at.elapsed() < self.config.jwks_refetch_interval) {
            return Err(if failed {
                unavailable()
            } else {
                unauthenticated(format!("unknown signing key '{kid}'"))
            });
        }
        let set = self.source.fetch().await;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.fetched_at = Some(Instant::now());
        cache.last_fetch_failed = set.is_err();
        let set = set.map_err(|e| {
            tracing::warn!(error = %e, "JWKS fetch failed");
            unavailable()
        })?;
        cache.keys = set
            .keys
            .iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                let key = DecodingKey::from_jwk(jwk).ok()?;
                Some((kid, Arc::new(key)))
            })
            .collect();
        cache
            .keys
            .get(kid)
            .cloned()
            .ok_or_else(|| unauthenticated(format!("unknown signing key '{kid}'")))
    }
}
