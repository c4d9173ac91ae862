//! The local identity provider: an RS256 signing key created on first run, its JWKS, and
//! Cognito-shaped tokens signed with it.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde_json::{Value, json};

/// `iss` of local tokens.
pub const ISSUER: &str = "https://local-idp.invalid/tenant-platform";
/// The local app client id (`aud` of ID tokens, `client_id` of access tokens).
pub const CLIENT_ID: &str = "local-client";

/// The local signing key.
pub struct LocalKeys {
    encoding: EncodingKey,
    public: RsaPublicKey,
    kid: String,
}

impl LocalKeys {
    /// Loads `<data_dir>/keys/signing-key.pem`, creating it (mode 0600) on first use.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, String> {
        let path = key_path(data_dir);
        let private = if path.exists() {
            let pem = std::fs::read_to_string(&path)
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            RsaPrivateKey::from_pkcs8_pem(&pem)
                .map_err(|e| format!("{} is not a PKCS#8 RSA key: {e}", path.display()))?
        } else {
            let key = RsaPrivateKey::new(&mut rand::thread_rng(), 2048)
                .map_err(|e| format!("generating key: {e}"))?;
            let pem = key
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| format!("encoding key: {e}"))?;
            write_private(&path, pem.as_bytes())?;
            key
        };
        let pem = private
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| format!("encoding key: {e}"))?;
        let encoding =
            EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| format!("loading key: {e}"))?;
        let public = private.to_public_key();
        let n = public.n().to_bytes_be();
        let kid = format!("local-{}", &URL_SAFE_NO_PAD.encode(&n[n.len() - 9..]));
        Ok(LocalKeys {
            encoding,
            public,
            kid,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWKS document (what Cognito serves at `/.well-known/jwks.json`).
    pub fn jwks_json(&self) -> Value {
        json!({"keys": [{
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
            "kid": self.kid,
            "n": URL_SAFE_NO_PAD.encode(self.public.n().to_bytes_be()),
            "e": URL_SAFE_NO_PAD.encode(self.public.e().to_bytes_be()),
        }]})
    }

    pub fn jwks(&self) -> JwkSet {
        serde_json::from_value(self.jwks_json()).expect("a JWKS built from an RSA key parses")
    }

    /// A Cognito-shaped token: an ID token (`aud`) or an access token (`client_id`).
    pub fn token(&self, spec: &TokenSpec) -> Result<String, String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_secs();
        let mut claims = json!({
            "iss": ISSUER,
            "sub": format!("local-{}", spec.user),
            "cognito:username": spec.user,
            "cognito:groups": spec.groups,
            "token_use": if spec.access { "access" } else { "id" },
            "auth_time": now,
            "iat": now,
            "exp": now + spec.ttl_seconds,
        });
        if spec.access {
            claims["client_id"] = json!(CLIENT_ID);
            claims["username"] = json!(spec.user);
        } else {
            claims["aud"] = json!(CLIENT_ID);
        }
        if let Some(t) = &spec.tenant {
            claims["custom:tenantId"] = json!(t);
        }
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        tenant_context::jwt_crypto::install();
        jsonwebtoken::encode(&header, &claims, &self.encoding).map_err(|e| format!("signing: {e}"))
    }
}

/// What a local token says.
#[derive(Debug, Clone)]
pub struct TokenSpec {
    pub user: String,
    pub groups: Vec<String>,
    pub tenant: Option<String>,
    pub ttl_seconds: u64,
    pub access: bool,
}

fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("keys").join("signing-key.pem")
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let dir = path.parent().expect("key path has a parent");
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| format!("creating {}: {e}", path.display()))?;
    f.write_all(bytes)
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

/// Secrets of the local server: paging tokens and presigned blob URLs.
pub struct LocalSecrets {
    pub paging: Vec<u8>,
    pub blobs: Vec<u8>,
}

/// Loads `<data_dir>/keys/secrets` (64 random bytes, hex), creating it (mode 0600) on first use.
pub fn local_secrets(data_dir: &Path) -> Result<LocalSecrets, String> {
    use rand::RngCore;
    let path = data_dir.join("keys").join("secrets");
    let hex = if path.exists() {
        std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?
    } else {
        let mut bytes = [0u8; 64];
        rand::thread_rng().fill_bytes(&mut bytes);
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        write_private(&path, hex.as_bytes())?;
        hex
    };
    let bytes: Vec<u8> = (0..hex.trim().len() / 2)
        .filter_map(|i| u8::from_str_radix(hex.trim().get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    if bytes.len() != 64 {
        return Err(format!(
            "{} is corrupt: delete it to create new secrets",
            path.display()
        ));
    }
    Ok(LocalSecrets {
        paging: bytes[..32].to_vec(),
        blobs: bytes[32..].to_vec(),
    })
}
