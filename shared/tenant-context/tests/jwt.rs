//! Integration tests of bearer-token verification: `JwtVerifier` against Cognito-shaped tokens
//! signed with keys generated here, a JWKS served over loopback HTTP, and
//! `TenantContext::authenticate`.
//!
//! Every rejection must be a 401 with a message; a JWKS that cannot be fetched is a 503.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::RsaPrivateKey;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};
use tenant_context::{
    Claims, Credentials, JwksSource, JwtConfig, JwtVerifier, TenantConfig, TenantContext,
    TenantError, bearer_token,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ISSUER: &str = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_TestPool1";
const OTHER_ISSUER: &str = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_OtherPool";
const CLIENT: &str = "4s3cr3tcl13nt1d0000000000";
const SECOND_CLIENT: &str = "5an0th3rcl13nt1d000000000";
const OTHER_CLIENT: &str = "7f0r31gncl13nt1d000000000";
const KID_A: &str = "key-a";
const KID_B: &str = "key-b";
const JWKS_PATH: &str = "/.well-known/jwks.json";
/// The JWKS refetch interval of the HTTP tests: long enough that the "within the interval"
/// steps (a few milliseconds of work) never cross it on a busy machine, short enough to sleep past.
const REFETCH_INTERVAL: Duration = Duration::from_millis(1000);

// ---------------------------------------------------------------------------------------------
// Keys (generated once per test binary: 2048-bit keygen is slow)
// ---------------------------------------------------------------------------------------------

struct TestKey {
    kid: &'static str,
    encoding: EncodingKey,
    /// SubjectPublicKeyInfo PEM of the public key (used as an HMAC secret by the confusion attack).
    public_pem: String,
    /// The public key as a Cognito-style JWK.
    jwk: Value,
}

enum PemFormat {
    Pkcs1,
    Pkcs8,
}

impl TestKey {
    fn generate(kid: &'static str, format: PemFormat) -> Self {
        let private =
            RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("RSA key generation");
        let private_pem = match format {
            PemFormat::Pkcs1 => private.to_pkcs1_pem(LineEnding::LF).expect("PKCS#1 PEM"),
            PemFormat::Pkcs8 => private.to_pkcs8_pem(LineEnding::LF).expect("PKCS#8 PEM"),
        };
        let encoding =
            EncodingKey::from_rsa_pem(private_pem.as_bytes()).expect("EncodingKey from PEM");
        let public = private.to_public_key();
        let public_pem = public
            .to_public_key_pem(LineEnding::LF)
            .expect("public key PEM");
        let jwk = json!({
            "alg": "RS256",
            "e": B64.encode(public.e().to_bytes_be()),
            "kid": kid,
            "kty": "RSA",
            "n": B64.encode(public.n().to_bytes_be()),
            "use": "sig",
        });
        TestKey {
            kid,
            encoding,
            public_pem,
            jwk,
        }
    }
}

/// The issuer's signing key (PKCS#1 PEM).
fn key_a() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| TestKey::generate(KID_A, PemFormat::Pkcs1))
}

/// A second key (PKCS#8 PEM): the attacker's key, or the issuer's next key after rotation.
fn key_b() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| TestKey::generate(KID_B, PemFormat::Pkcs8))
}

fn jwks(keys: &[&TestKey]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() })
}

// ---------------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------------

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A Cognito ID token's claims, for user `alice` of tenant `marketing`.
fn id_claims() -> Value {
    let now = now();
    json!({
        "sub": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "cognito:groups": ["marketing", "finance_read"],
        "email_verified": true,
        "iss": ISSUER,
        "cognito:username": "alice",
        "custom:tenantId": "marketing",
        "origin_jti": "11111111-2222-3333-4444-555555555555",
        "aud": CLIENT,
        "event_id": "66666666-7777-8888-9999-000000000000",
        "token_use": "id",
        "auth_time": now - 60,
        "exp": now + 3600,
        "iat": now - 60,
        "jti": "abcdefab-cdef-abcd-efab-cdefabcdefab",
        "email": "alice@example.com",
    })
}

/// A Cognito access token's claims (no `aud`; the app client is `client_id`), with an `nbf`.
fn access_claims() -> Value {
    let now = now();
    json!({
        "sub": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "cognito:groups": ["marketing", "finance_read"],
        "iss": ISSUER,
        "client_id": CLIENT,
        "origin_jti": "11111111-2222-3333-4444-555555555555",
        "event_id": "66666666-7777-8888-9999-000000000000",
        "token_use": "access",
        "scope": "aws.cognito.signin.user.admin",
        "auth_time": now - 60,
        "exp": now + 3600,
        "iat": now - 60,
        "nbf": now - 60,
        "jti": "fedcbafe-dcba-fedc-bafe-dcbafedcbafe",
        "username": "alice",
    })
}

/// `base` with the entries of `changes` set; a `null` in `changes` removes the claim.
fn with(mut base: Value, changes: Value) -> Value {
    let map = base.as_object_mut().unwrap();
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            map.remove(k);
        } else {
            map.insert(k.clone(), v.clone());
        }
    }
    base
}

/// jsonwebtoken's `encode` with the project's crypto provider installed.
fn encode(
    header: &Header,
    claims: &Value,
    key: &EncodingKey,
) -> jsonwebtoken::errors::Result<String> {
    tenant_context::jwt_crypto::install();
    jsonwebtoken::encode(header, claims, key)
}

fn sign_with_header(header: &Header, key: &TestKey, claims: &Value) -> String {
    tenant_context::jwt_crypto::install();
    jsonwebtoken::encode(header, claims, &key.encoding).expect("signing")
}

fn sign(alg: Algorithm, key: &TestKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    sign_with_header(&header, key, claims)
}

/// RS256 with the issuer's key and its kid: what Cognito would issue.
fn issue(claims: &Value) -> String {
    sign(Algorithm::RS256, key_a(), Some(key_a().kid), claims)
}

fn b64_json(v: &Value) -> String {
    B64.encode(serde_json::to_vec(v).unwrap())
}

/// `header.payload.` with no signature.
fn unsigned(header: &Value, claims: &Value) -> String {
    format!("{}.{}.", b64_json(header), b64_json(claims))
}

/// The token with its payload decoded, changed by `change`, re-encoded; header and signature kept.
fn tamper(token: &str, change: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a JWS: {token}");
    let mut payload: Value = serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
    change(payload.as_object_mut().unwrap());
    format!("{}.{}.{}", parts[0], b64_json(&payload), parts[2])
}

fn segments(token: &str) -> Vec<String> {
    token.split('.').map(str::to_owned).collect()
}

// ---------------------------------------------------------------------------------------------
// Verifiers
// ---------------------------------------------------------------------------------------------

/// A JWKS held in memory; counts fetches.
struct StaticJwks {
    set: Value,
    fetches: AtomicUsize,
}

#[async_trait]
impl JwksSource for StaticJwks {
    async fn fetch(&self) -> Result<JwkSet, String> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        serde_json::from_value(self.set.clone()).map_err(|e| e.to_string())
    }
}

fn config() -> JwtConfig {
    JwtConfig::new(ISSUER, vec![CLIENT.to_owned()])
}

/// A verifier that trusts key A only (JWKS in memory).
fn verifier_with(config: JwtConfig) -> JwtVerifier {
    let source = StaticJwks {
        set: jwks(&[key_a()]),
        fetches: AtomicUsize::new(0),
    };
    JwtVerifier::new(config, Arc::new(source))
}

fn verifier() -> JwtVerifier {
    verifier_with(config())
}

/// Asserts `result` is a 401 with a non-empty message containing one of `reasons` (any
/// message when `reasons` is empty); returns a description of the problem instead of panicking.
fn check_rejected<T: std::fmt::Debug>(
    case: &str,
    result: Result<T, TenantError>,
    reasons: &[&str],
) -> Result<(), String> {
    let err = match result {
        Ok(v) => return Err(format!("{case}: accepted, got {v:?}")),
        Err(e) => e,
    };
    let msg = err.to_string();
    if err.status() != 401 {
        return Err(format!("{case}: status {} (want 401): {msg}", err.status()));
    }
    if msg.trim().is_empty() {
        return Err(format!("{case}: empty error message ({err:?})"));
    }
    if !reasons.is_empty() && !reasons.iter().any(|r| msg.contains(r)) {
        return Err(format!(
            "{case}: message {msg:?} mentions none of {reasons:?}"
        ));
    }
    Ok(())
}

fn assert_rejected<T: std::fmt::Debug>(
    case: &str,
    result: Result<T, TenantError>,
    reasons: &[&str],
) {
    if let Err(problem) = check_rejected(case, result, reasons) {
        panic!("{problem}");
    }
}

// ---------------------------------------------------------------------------------------------
// Minimal HTTP/1.1 JWKS server on loopback
// ---------------------------------------------------------------------------------------------

#[derive(Clone)]
struct Reply {
    status: u16,
    body: String,
}

struct JwksServer {
    url: String,
    hits: Arc<AtomicUsize>,
    reply: Arc<Mutex<Reply>>,
    request_lines: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    async fn start(set: Value) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let reply = Arc::new(Mutex::new(Reply {
            status: 200,
            body: set.to_string(),
        }));
        let request_lines = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let (hits, reply, request_lines) = (hits.clone(), reply.clone(), request_lines.clone());
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(serve_one(
                        stream,
                        hits.clone(),
                        reply.clone(),
                        request_lines.clone(),
                    ));
                }
            }
        });
        JwksServer {
            url: format!("http://{addr}{JWKS_PATH}"),
            hits,
            reply,
            request_lines,
            task,
        }
    }

    fn serve(&self, set: Value) {
        self.respond(200, &set.to_string());
    }

    fn respond(&self, status: u16, body: &str) {
        *self.reply.lock().unwrap() = Reply {
            status,
            body: body.to_owned(),
        };
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn config(&self) -> JwtConfig {
        let mut c = config();
        c.jwks_url = self.url.clone();
        c.jwks_refetch_interval = REFETCH_INTERVAL;
        c
    }

    fn verifier(&self) -> JwtVerifier {
        JwtVerifier::from_config(self.config())
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_one(
    mut stream: TcpStream,
    hits: Arc<AtomicUsize>,
    reply: Arc<Mutex<Reply>>,
    request_lines: Arc<Mutex<Vec<String>>>,
) {
    let mut request = Vec::new();
    let mut chunk = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&chunk[..n]),
        }
        if request.len() > 64 * 1024 {
            return;
        }
    }
    hits.fetch_add(1, Ordering::SeqCst);
    let request = String::from_utf8_lossy(&request);
    let first_line = request.lines().next().unwrap_or_default().to_owned();
    request_lines.lock().unwrap().push(first_line);
    let Reply { status, body } = reply.lock().unwrap().clone();
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Unknown",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// A loopback URL nothing listens on (bound, then released).
async fn refused_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}{JWKS_PATH}")
}

// ---------------------------------------------------------------------------------------------
// 1. Valid tokens
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn valid_id_and_access_tokens_verify_and_return_their_claims() {
    let two_clients = {
        let mut c = config();
        c.audiences = vec![CLIENT.to_owned(), SECOND_CLIENT.to_owned()];
        c
    };
    let id_only = {
        let mut c = config();
        c.token_uses = vec!["id".to_owned()];
        c
    };
    let cases: Vec<(&str, JwtConfig, Value)> = vec![
        ("ID token, aud = the accepted client", config(), id_claims()),
        (
            "access token, client_id = the accepted client",
            config(),
            access_claims(),
        ),
        (
            "ID token, aud = the second of two accepted clients",
            two_clients.clone(),
            with(id_claims(), json!({"aud": SECOND_CLIENT})),
        ),
        (
            "access token, client_id = the second of two accepted clients",
            two_clients,
            with(access_claims(), json!({"client_id": SECOND_CLIENT})),
        ),
        (
            "ID token, aud array containing the accepted client",
            config(),
            with(id_claims(), json!({"aud": [OTHER_CLIENT, CLIENT]})),
        ),
        (
            "ID token when only ID tokens are accepted",
            id_only,
            id_claims(),
        ),
        (
            "ID token with nbf in the past",
            config(),
            with(id_claims(), json!({"nbf": now() - 60})),
        ),
    ];
    for (case, config, claims) in cases {
        let verifier = verifier_with(config);
        let got = verifier
            .verify(&issue(&claims))
            .await
            .unwrap_or_else(|e| panic!("{case}: rejected ({}): {e}", e.status()));
        assert_eq!(
            got,
            Claims::new(claims.as_object().unwrap().clone()),
            "{case}"
        );
        assert_eq!(
            got.get_str("sub").as_deref(),
            Some("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"),
            "{case}"
        );
        assert_eq!(
            got.get_list("cognito:groups"),
            ["marketing", "finance_read"],
            "{case}"
        );
        assert_eq!(got.get_str("iss").as_deref(), Some(ISSUER), "{case}");
    }
}

#[tokio::test]
async fn exp_and_nbf_are_checked_with_the_ten_second_leeway() {
    assert_eq!(
        config().leeway,
        Duration::from_secs(10),
        "the default leeway"
    );
    let now = now();
    // (case, changed claims, accepted?)
    let cases = [
        (
            "exp 5 s ago (within the leeway)",
            json!({"exp": now - 5}),
            true,
        ),
        ("exp 60 s ago", json!({"exp": now - 60}), false),
        (
            "exp an hour ago",
            json!({"exp": now - 3600, "iat": now - 7200}),
            false,
        ),
        (
            "nbf 5 s ahead (within the leeway)",
            json!({"nbf": now + 5}),
            true,
        ),
        ("nbf 60 s ahead", json!({"nbf": now + 60}), false),
    ];
    for (claims, token_use) in [(id_claims(), "id"), (access_claims(), "access")] {
        for (case, change, accepted) in &cases {
            let case = format!("{token_use} token, {case}");
            let result = verifier()
                .verify(&issue(&with(claims.clone(), change.clone())))
                .await;
            if *accepted {
                let claims = result.unwrap_or_else(|e| panic!("{case}: rejected: {e}"));
                assert_eq!(
                    claims.get_str("token_use").as_deref(),
                    Some(token_use),
                    "{case}"
                );
            } else {
                assert_rejected(&case, result, &["expired", "not valid yet"]);
            }
        }
    }
}

#[tokio::test]
async fn a_verifier_fetches_the_key_set_once_and_caches_it() {
    let source = Arc::new(StaticJwks {
        set: jwks(&[key_a()]),
        fetches: AtomicUsize::new(0),
    });
    let verifier = JwtVerifier::new(config(), source.clone());
    assert_eq!(
        source.fetches.load(Ordering::SeqCst),
        0,
        "no fetch before the first token"
    );
    for _ in 0..10 {
        verifier.verify(&issue(&id_claims())).await.unwrap();
        verifier.verify(&issue(&access_claims())).await.unwrap();
    }
    assert_eq!(source.fetches.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------------------------------------
// 2. Attack matrix
// ---------------------------------------------------------------------------------------------

/// Every token below must be refused with 401. Each row runs on a fresh verifier that first
/// accepts a genuine token (so a broken setup cannot make the whole matrix pass vacuously).
#[tokio::test]
async fn attack_matrix_every_forged_or_invalid_token_is_rejected_with_401() {
    let a = key_a();
    let b = key_b();
    let now = now();
    let id = id_claims();
    let access = access_claims();
    let genuine = issue(&id);
    let genuine_parts = segments(&genuine);
    let (h, p, s) = (&genuine_parts[0], &genuine_parts[1], &genuine_parts[2]);

    let header_none = |alg: &str| json!({"alg": alg, "typ": "JWT", "kid": KID_A});

    let mut embedded_jwk = Header::new(Algorithm::RS256);
    embedded_jwk.kid = Some(KID_B.to_owned());
    embedded_jwk.jwk = Some(serde_json::from_value::<Jwk>(b.jwk.clone()).unwrap());
    let mut embedded_jwk_known_kid = embedded_jwk.clone();
    embedded_jwk_known_kid.kid = Some(KID_A.to_owned());
    let mut jku = Header::new(Algorithm::RS256);
    jku.kid = Some(KID_B.to_owned());
    jku.jku = Some("https://attacker.example.com/jwks.json".to_owned());

    const SIG: &[&str] = &["signature does not verify"];
    const MALFORMED: &[&str] = &["malformed"];
    const ALG: &[&str] = &["RS256"];
    const ALG_OR_MALFORMED: &[&str] = &["RS256", "malformed"];
    const UNKNOWN_KEY: &[&str] = &["unknown signing key"];
    const SIG_OR_MALFORMED: &[&str] = &["signature does not verify", "malformed"];

    // (case, token, the reason the message must give: any of these fragments)
    let cases: Vec<(&str, String, &[&str])> = vec![
        // --- alg none / algorithm confusion ---
        (
            "alg none, empty signature",
            unsigned(&header_none("none"), &id),
            ALG_OR_MALFORMED,
        ),
        (
            "alg None, empty signature",
            unsigned(&header_none("None"), &id),
            ALG_OR_MALFORMED,
        ),
        (
            "alg NONE, empty signature",
            unsigned(&header_none("NONE"), &id),
            ALG_OR_MALFORMED,
        ),
        (
            "alg none with the genuine token's signature",
            format!("{}{s}", unsigned(&header_none("none"), &id)),
            ALG_OR_MALFORMED,
        ),
        (
            "HS256 keyed with the RSA public key PEM (SPKI), right kid",
            encode(
                &{
                    let mut h = Header::new(Algorithm::HS256);
                    h.kid = Some(KID_A.to_owned());
                    h
                },
                &id,
                &EncodingKey::from_secret(a.public_pem.as_bytes()),
            )
            .unwrap(),
            ALG,
        ),
        (
            "HS256 keyed with the JWK modulus, right kid",
            encode(
                &{
                    let mut h = Header::new(Algorithm::HS256);
                    h.kid = Some(KID_A.to_owned());
                    h
                },
                &id,
                &EncodingKey::from_secret(a.jwk["n"].as_str().unwrap().as_bytes()),
            )
            .unwrap(),
            ALG,
        ),
        (
            "RS384 with the right key and kid",
            sign(Algorithm::RS384, a, Some(KID_A), &id),
            ALG,
        ),
        (
            "RS512 with the right key and kid",
            sign(Algorithm::RS512, a, Some(KID_A), &id),
            ALG,
        ),
        (
            "PS256 with the right key and kid",
            sign(Algorithm::PS256, a, Some(KID_A), &id),
            ALG,
        ),
        (
            "PS384 with the right key and kid",
            sign(Algorithm::PS384, a, Some(KID_A), &id),
            ALG,
        ),
        (
            "PS512 with the right key and kid",
            sign(Algorithm::PS512, a, Some(KID_A), &id),
            ALG,
        ),
        // --- keys ---
        (
            "unknown kid",
            sign(Algorithm::RS256, a, Some("no-such-key"), &id),
            UNKNOWN_KEY,
        ),
        (
            "kid with a path",
            sign(Algorithm::RS256, a, Some("../../../dev/null"), &id),
            UNKNOWN_KEY,
        ),
        ("empty kid", sign(Algorithm::RS256, a, Some(""), &id), &[]),
        (
            "missing kid",
            sign(Algorithm::RS256, a, None, &id),
            &["kid"],
        ),
        (
            "kid is a number, not a string",
            format!(
                "{}.{p}.{s}",
                b64_json(&json!({"alg": "RS256", "typ": "JWT", "kid": 1}))
            ),
            MALFORMED,
        ),
        (
            "signed by another key under the issuer's kid",
            sign(Algorithm::RS256, b, Some(KID_A), &id),
            SIG,
        ),
        (
            "signed by another key under its own kid",
            sign(Algorithm::RS256, b, Some(KID_B), &id),
            UNKNOWN_KEY,
        ),
        (
            "signed by another key that is embedded as a jwk header",
            sign_with_header(&embedded_jwk, b, &id),
            UNKNOWN_KEY,
        ),
        (
            "signed by another key embedded as a jwk header, issuer's kid",
            sign_with_header(&embedded_jwk_known_kid, b, &id),
            SIG,
        ),
        (
            "signed by another key published at a jku URL",
            sign_with_header(&jku, b, &id),
            UNKNOWN_KEY,
        ),
        // --- time ---
        (
            "expired an hour ago",
            issue(&with(id.clone(), json!({"exp": now - 3600}))),
            &["expired"],
        ),
        (
            "access token expired",
            issue(&with(access.clone(), json!({"exp": now - 600}))),
            &["expired"],
        ),
        (
            "nbf 5 minutes ahead",
            issue(&with(id.clone(), json!({"nbf": now + 300}))),
            &["not valid yet"],
        ),
        (
            "access token nbf 5 minutes ahead",
            issue(&with(access.clone(), json!({"nbf": now + 300}))),
            &["not valid yet"],
        ),
        (
            "no exp",
            issue(&with(id.clone(), json!({"exp": null}))),
            &["exp"],
        ),
        (
            "exp is a string",
            issue(&with(id.clone(), json!({"exp": (now + 3600).to_string()}))),
            &[],
        ),
        // --- issuer ---
        (
            "wrong iss",
            issue(&with(id.clone(), json!({"iss": OTHER_ISSUER}))),
            &["issuer"],
        ),
        (
            "iss with a trailing slash",
            issue(&with(id.clone(), json!({"iss": format!("{ISSUER}/")}))),
            &["issuer"],
        ),
        (
            "iss of the issuer's host only",
            issue(&with(
                id.clone(),
                json!({"iss": "https://cognito-idp.eu-west-1.amazonaws.com"}),
            )),
            &["issuer"],
        ),
        (
            "no iss",
            issue(&with(id.clone(), json!({"iss": null}))),
            &["iss"],
        ),
        (
            "access token with wrong iss",
            issue(&with(access.clone(), json!({"iss": OTHER_ISSUER}))),
            &["issuer"],
        ),
        // --- audience / client ---
        (
            "ID token, wrong aud",
            issue(&with(id.clone(), json!({"aud": OTHER_CLIENT}))),
            &["aud"],
        ),
        (
            "ID token, aud array without the client",
            issue(&with(id.clone(), json!({"aud": [OTHER_CLIENT, "x"]}))),
            &["aud"],
        ),
        (
            "ID token, aud = other client and the client joined by a space",
            issue(&with(
                id.clone(),
                json!({"aud": format!("{OTHER_CLIENT} {CLIENT}")}),
            )),
            &["aud"],
        ),
        (
            "ID token, empty aud",
            issue(&with(id.clone(), json!({"aud": ""}))),
            &["aud"],
        ),
        (
            "ID token, no aud",
            issue(&with(id.clone(), json!({"aud": null}))),
            &["aud"],
        ),
        (
            "ID token, no aud but the right client_id",
            issue(&with(id.clone(), json!({"aud": null, "client_id": CLIENT}))),
            &["aud"],
        ),
        (
            "access token, wrong client_id",
            issue(&with(access.clone(), json!({"client_id": OTHER_CLIENT}))),
            &["client_id"],
        ),
        (
            "access token, no client_id",
            issue(&with(access.clone(), json!({"client_id": null}))),
            &["client_id"],
        ),
        (
            "access token, wrong client_id but the right aud",
            issue(&with(
                access.clone(),
                json!({"client_id": OTHER_CLIENT, "aud": CLIENT}),
            )),
            &["client_id"],
        ),
        // --- token_use ---
        (
            "token_use refresh",
            issue(&with(id.clone(), json!({"token_use": "refresh"}))),
            &["token_use"],
        ),
        (
            "token_use ID (case differs)",
            issue(&with(id.clone(), json!({"token_use": "ID"}))),
            &["token_use"],
        ),
        (
            "token_use empty",
            issue(&with(id.clone(), json!({"token_use": ""}))),
            &["token_use"],
        ),
        (
            "token_use a list",
            issue(&with(id.clone(), json!({"token_use": ["id"]}))),
            &["token_use"],
        ),
        (
            "no token_use (ID token)",
            issue(&with(id.clone(), json!({"token_use": null}))),
            &["token_use"],
        ),
        (
            "no token_use (access token)",
            issue(&with(access.clone(), json!({"token_use": null}))),
            &["token_use"],
        ),
        // --- payload altered after signing ---
        (
            "cognito:groups gains Admins after signing",
            tamper(&genuine, |c| {
                c["cognito:groups"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!("Admins"));
            }),
            SIG,
        ),
        (
            "custom:tenantId changed after signing",
            tamper(&genuine, |c| {
                c.insert("custom:tenantId".into(), json!("finance"));
            }),
            SIG,
        ),
        (
            "cognito:username changed after signing",
            tamper(&genuine, |c| {
                c.insert("cognito:username".into(), json!("admin"));
            }),
            SIG,
        ),
        (
            "exp extended after signing an expired token",
            tamper(&issue(&with(id.clone(), json!({"exp": now - 3600}))), |c| {
                c.insert("exp".into(), json!(now + 3600));
            }),
            SIG,
        ),
        (
            "access token's client_id changed after signing",
            tamper(
                &issue(&with(access.clone(), json!({"client_id": OTHER_CLIENT}))),
                |c| {
                    c.insert("client_id".into(), json!(CLIENT));
                },
            ),
            SIG,
        ),
        (
            "payload of another genuine token, original signature",
            {
                let other = segments(&issue(&with(
                    id.clone(),
                    json!({"cognito:username": "mallory"}),
                )));
                format!("{h}.{}.{s}", other[1])
            },
            SIG,
        ),
        ("signature removed", format!("{h}.{p}."), SIG),
        (
            "signature truncated",
            format!("{h}.{p}.{}", &s[..s.len() - 8]),
            &[],
        ),
        (
            "signature with one bit flipped",
            {
                let mut sig = B64.decode(s).unwrap();
                sig[10] ^= 1;
                format!("{h}.{p}.{}", B64.encode(sig))
            },
            SIG,
        ),
        // --- malformed ---
        ("empty string", String::new(), MALFORMED),
        ("one segment", "abc".to_owned(), MALFORMED),
        ("two segments", "a.b".to_owned(), MALFORMED),
        ("three meaningless segments", "a.b.c".to_owned(), MALFORMED),
        ("four segments", "a.b.c.d".to_owned(), MALFORMED),
        (
            "genuine token with a fourth segment",
            format!("{genuine}.{s}"),
            &[],
        ),
        (
            "genuine token with a fifth (JWE-like) shape",
            format!("{h}.{p}.{s}.{s}.{s}"),
            &[],
        ),
        ("non-base64 segments", "!!!.@@@.###".to_owned(), MALFORMED),
        ("only dots", "..".to_owned(), MALFORMED),
        (
            "header is base64 of non-JSON",
            format!("{}.{p}.{s}", B64.encode("not json")),
            MALFORMED,
        ),
        (
            "header is a JSON array",
            format!("{}.{p}.{s}", b64_json(&json!(["RS256"]))),
            MALFORMED,
        ),
        (
            "valid header, garbage payload",
            format!("{h}.%%%garbage%%%.{s}"),
            SIG_OR_MALFORMED,
        ),
        (
            "valid header, payload base64 of non-JSON",
            format!("{h}.{}.{s}", B64.encode("not json")),
            &[],
        ),
        ("valid header, empty payload", format!("{h}..{s}"), &[]),
        (
            "valid header, payload a JSON string",
            format!("{h}.{}.{s}", b64_json(&json!("claims"))),
            &[],
        ),
        ("padded base64 segments", format!("{h}==.{p}.{s}"), &[]),
        ("whitespace inside the token", format!("{h}. {p}.{s}"), &[]),
        (
            "the Bearer prefix left in",
            format!("Bearer {genuine}"),
            &[],
        ),
    ];

    let mut problems = Vec::new();
    for (case, token, reasons) in &cases {
        let verifier = verifier();
        if let Err(e) = verifier.verify(&genuine).await {
            problems.push(format!("{case}: the control token was rejected: {e}"));
            continue;
        }
        if let Err(p) = check_rejected(case, verifier.verify(token).await, reasons) {
            problems.push(p);
        }
        // The same token on a verifier that has not fetched the keys yet.
        if let Err(p) = check_rejected(
            &format!("{case} (cold cache)"),
            verifier_with(config()).verify(token).await,
            reasons,
        ) {
            problems.push(p);
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {} attack cases not rejected properly:\n{}",
        problems.len(),
        cases.len(),
        problems.join("\n")
    );
}

#[tokio::test]
async fn a_token_use_outside_the_configured_ones_is_rejected() {
    let mut c = config();
    c.token_uses = vec!["id".to_owned()];
    let verifier = verifier_with(c);
    verifier.verify(&issue(&id_claims())).await.unwrap();
    assert_rejected(
        "access token when only ID tokens are accepted",
        verifier.verify(&issue(&access_claims())).await,
        &["token_use"],
    );
}

#[tokio::test]
async fn an_empty_key_set_rejects_every_token_with_401() {
    let source = StaticJwks {
        set: json!({"keys": []}),
        fetches: AtomicUsize::new(0),
    };
    let verifier = JwtVerifier::new(config(), Arc::new(source));
    assert_rejected(
        "empty JWKS",
        verifier.verify(&issue(&id_claims())).await,
        &["unknown signing key"],
    );
}

// ---------------------------------------------------------------------------------------------
// 3. JWKS over HTTP
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn http_jwks_is_fetched_once_and_cached() {
    let server = JwksServer::start(jwks(&[key_a()])).await;
    let verifier = server.verifier();
    assert_eq!(
        server.hits(),
        0,
        "nothing is fetched before the first token"
    );
    for i in 0..25 {
        let claims = if i % 2 == 0 {
            id_claims()
        } else {
            access_claims()
        };
        let got = verifier
            .verify(&issue(&claims))
            .await
            .unwrap_or_else(|e| panic!("token {i}: {e}"));
        assert_eq!(
            got.get_list("cognito:groups"),
            ["marketing", "finance_read"]
        );
    }
    assert_eq!(server.hits(), 1, "25 verifications, one JWKS fetch");
    let lines = server.request_lines.lock().unwrap().clone();
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].starts_with(&format!("GET {JWKS_PATH} HTTP/1.1")),
        "{lines:?}"
    );
}

#[tokio::test]
async fn concurrent_first_verifications_share_one_jwks_fetch() {
    let server = JwksServer::start(jwks(&[key_a()])).await;
    let verifier = Arc::new(server.verifier());
    let token = issue(&id_claims());
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (verifier, token) = (verifier.clone(), token.clone());
            tokio::spawn(async move { verifier.verify(&token).await.map(|_| ()) })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn unknown_kids_trigger_at_most_one_refetch_per_interval() {
    let server = JwksServer::start(jwks(&[key_a()])).await;
    let verifier = server.verifier();
    let unknown = |n: usize| {
        sign(
            Algorithm::RS256,
            key_a(),
            Some(&format!("unknown-{n}")),
            &id_claims(),
        )
    };

    verifier.verify(&issue(&id_claims())).await.unwrap();
    assert_eq!(server.hits(), 1);

    // Within the interval: several unknown kids in a row, each refused, at most one refetch.
    let before = server.hits();
    for n in 0..6 {
        assert_rejected(
            &format!("unknown kid {n}"),
            verifier.verify(&unknown(n)).await,
            &["unknown signing key"],
        );
    }
    let grew = server.hits() - before;
    assert!(
        grew <= 1,
        "{grew} refetches for unknown kids within the interval"
    );
    // Known keys keep working from the cache meanwhile.
    verifier.verify(&issue(&access_claims())).await.unwrap();
    assert_eq!(server.hits(), before + grew);

    // Past the interval, one unknown kid refetches once; the next ones do not.
    tokio::time::sleep(REFETCH_INTERVAL + Duration::from_millis(150)).await;
    let before = server.hits();
    for n in 10..15 {
        assert_rejected(
            &format!("unknown kid {n}"),
            verifier.verify(&unknown(n)).await,
            &["unknown signing key"],
        );
    }
    assert_eq!(
        server.hits(),
        before + 1,
        "exactly one refetch after the interval has passed"
    );
}

#[tokio::test]
async fn an_unknown_kid_on_a_cold_verifier_fetches_once() {
    let server = JwksServer::start(jwks(&[key_a()])).await;
    let verifier = server.verifier();
    for n in 0..5 {
        let token = sign(
            Algorithm::RS256,
            key_a(),
            Some(&format!("unknown-{n}")),
            &id_claims(),
        );
        assert_rejected(
            "unknown kid",
            verifier.verify(&token).await,
            &["unknown signing key"],
        );
    }
    assert_eq!(
        server.hits(),
        1,
        "the first unknown kid fetches; the rest are throttled"
    );
    verifier.verify(&issue(&id_claims())).await.unwrap();
    assert_eq!(server.hits(), 1, "the fetched keys are cached");
}

#[tokio::test]
async fn rotated_signing_key_is_picked_up_after_the_refetch_interval() {
    let server = JwksServer::start(jwks(&[key_a()])).await;
    let verifier = server.verifier();
    let old = issue(&id_claims());
    let new = sign(Algorithm::RS256, key_b(), Some(KID_B), &id_claims());

    verifier.verify(&old).await.unwrap();
    assert_eq!(server.hits(), 1);

    // The issuer rotates: the JWKS now publishes the new key next to the old one.
    server.serve(jwks(&[key_a(), key_b()]));
    assert_rejected(
        "new key within the refetch interval",
        verifier.verify(&new).await,
        &["unknown signing key"],
    );
    assert_eq!(server.hits(), 1, "no refetch within the interval");

    tokio::time::sleep(REFETCH_INTERVAL + Duration::from_millis(150)).await;
    let claims = verifier
        .verify(&new)
        .await
        .unwrap_or_else(|e| panic!("new key after the interval: {e}"));
    assert_eq!(claims.get_str("cognito:username").as_deref(), Some("alice"));
    assert_eq!(server.hits(), 2, "the new kid caused exactly one refetch");
    verifier.verify(&old).await.unwrap();
    verifier.verify(&new).await.unwrap();
    assert_eq!(server.hits(), 2, "both keys are cached now");
}

#[tokio::test]
async fn a_key_dropped_from_the_jwks_stops_verifying_after_a_refetch() {
    let server = JwksServer::start(jwks(&[key_a()])).await;
    let verifier = server.verifier();
    let old = issue(&id_claims());
    let new = sign(Algorithm::RS256, key_b(), Some(KID_B), &id_claims());
    verifier.verify(&old).await.unwrap();

    server.serve(jwks(&[key_b()]));
    tokio::time::sleep(REFETCH_INTERVAL + Duration::from_millis(150)).await;
    verifier.verify(&new).await.unwrap();
    assert_eq!(server.hits(), 2);
    assert_rejected(
        "retired key",
        verifier.verify(&old).await,
        &["unknown signing key"],
    );
}

#[tokio::test]
async fn unreachable_or_broken_jwks_gives_503_not_401() {
    let refused = refused_url().await;
    // (case, url, status and body when served)
    let cases: [(&str, Option<(u16, &str)>); 5] = [
        ("connection refused", None),
        ("HTTP 500", Some((500, "{\"message\":\"boom\"}"))),
        ("HTTP 404", Some((404, "{}"))),
        ("body is not JSON", Some((200, "<html>not json</html>"))),
        ("JSON that is not a key set", Some((200, "{\"foo\":1}"))),
    ];
    for (case, reply) in cases {
        let server = JwksServer::start(jwks(&[key_a()])).await;
        let mut config = server.config();
        match reply {
            None => config.jwks_url = refused.clone(),
            Some((status, body)) => server.respond(status, body),
        }
        let verifier = JwtVerifier::from_config(config.clone());
        let err = verifier.verify(&issue(&id_claims())).await.expect_err(case);
        assert_eq!(err.status(), 503, "{case}: {err}");
        assert!(
            matches!(err, TenantError::Unavailable(_)),
            "{case}: {err:?}"
        );
        assert!(!err.to_string().is_empty(), "{case}");

        // The same through TenantContext::authenticate.
        let ctx = TenantContext::new(TenantConfig {
            jwt: Some(config),
            ..Default::default()
        });
        let header = format!("Bearer {}", issue(&id_claims()));
        let err = ctx
            .authenticate(Credentials {
                authorization: Some(&header),
                ..Default::default()
            })
            .await
            .expect_err(case);
        assert_eq!(err.status(), 503, "{case} (authenticate): {err}");
    }
}

/// After a failed JWKS fetch the refetch is throttled, but the answer within the interval must
/// stay "try again" (503), not "your token is invalid" (401); past the interval the keys are
/// fetched again and the same token verifies.
#[tokio::test]
async fn a_retry_right_after_a_failed_jwks_fetch_is_still_503_then_recovers() {
    let server = JwksServer::start(jwks(&[key_a()])).await;
    server.respond(500, "{}");
    let verifier = server.verifier();
    let token = issue(&id_claims());
    let err = verifier.verify(&token).await.unwrap_err();
    assert_eq!(err.status(), 503, "{err}");
    assert_eq!(server.hits(), 1);

    // The JWKS is back, but the refetch is throttled: the caller must be told to retry.
    server.serve(jwks(&[key_a()]));
    let err = verifier.verify(&token).await.unwrap_err();
    assert_eq!(err.status(), 503, "a retry within the interval: {err}");
    assert_eq!(server.hits(), 1, "no refetch within the interval");

    tokio::time::sleep(REFETCH_INTERVAL + Duration::from_millis(150)).await;
    verifier
        .verify(&token)
        .await
        .unwrap_or_else(|e| panic!("after the interval: {} {e}", e.status()));
    assert_eq!(server.hits(), 2);
}

/// RFC 7519 4.1.3: a string `aud` is one audience. `"<other>,<client>"` names no accepted client.
#[tokio::test]
async fn a_string_aud_is_a_single_audience() {
    let verifier = verifier();
    for aud in [
        format!("{OTHER_CLIENT},{CLIENT}"),
        format!("[{OTHER_CLIENT} {CLIENT}]"),
    ] {
        let token = issue(&with(id_claims(), json!({ "aud": aud })));
        assert_rejected(
            &format!("aud {aud:?}"),
            verifier.verify(&token).await,
            &["aud"],
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 4. TenantContext::authenticate
// ---------------------------------------------------------------------------------------------

fn context(server: &JwksServer) -> TenantContext {
    TenantContext::new(TenantConfig {
        jwt: Some(server.config()),
        ..Default::default()
    })
}

#[tokio::test]
async fn authenticate_accepts_a_valid_bearer_token() {
    let server = JwksServer::start(jwks(&[key_a()])).await;
    let ctx = context(&server);
    let cases = [
        ("ID token", format!("Bearer {}", issue(&id_claims()))),
        (
            "access token",
            format!("Bearer {}", issue(&access_claims())),
        ),
        (
            "lower-case scheme",
            format!("bearer {}", issue(&id_claims())),
        ),
        (
            "extra spaces",
            format!("  Bearer   {}  ", issue(&id_claims())),
        ),
    ];
    for (case, header) in &cases {
        let principal = ctx
            .authenticate(Credentials {
                authorization: Some(header),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("{case}: {} {e}", e.status()));
        assert_eq!(principal.username(), "alice", "{case}");
        assert_eq!(principal.groups(), ["marketing", "finance_read"], "{case}");
        assert!(
            principal.in_group("marketing") && !principal.in_group("Admins"),
            "{case}"
        );
    }
    let header = format!("Bearer {}", issue(&id_claims()));
    let principal = ctx
        .authenticate(Credentials {
            authorization: Some(&header),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        principal.token_tenant().map(|t| t.as_str()),
        Some("marketing")
    );
    assert_eq!(
        principal.claims().get_str("email").as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn authenticate_rejects_missing_malformed_or_forged_credentials_with_401() {
    let server = JwksServer::start(jwks(&[key_a()])).await;
    let ctx = context(&server);
    let forged = tamper(&issue(&id_claims()), |c| {
        c["cognito:groups"]
            .as_array_mut()
            .unwrap()
            .push(json!("Admins"));
    });
    let bearer_forged = format!("Bearer {forged}");
    let bearer_expired = format!(
        "Bearer {}",
        issue(&with(id_claims(), json!({"exp": now() - 3600})))
    );
    let bearer_bad_tenant = format!(
        "Bearer {}",
        issue(&with(id_claims(), json!({"custom:tenantId": "a#b"})))
    );
    let bearer_reserved_tenant = format!(
        "Bearer {}",
        issue(&with(id_claims(), json!({"custom:tenantId": "global"})))
    );
    let bearer_no_user = format!(
        "Bearer {}",
        issue(&with(
            id_claims(),
            json!({"cognito:username": null, "sub": null})
        ))
    );
    let raw_token = issue(&id_claims());
    let cases: Vec<(&str, Option<&str>)> = vec![
        ("no Authorization header", None),
        ("empty header", Some("")),
        ("Basic scheme", Some("Basic xyz")),
        (
            "Basic scheme with a JWT",
            Some("Basic eyJhbGciOiJSUzI1NiJ9.e30.x"),
        ),
        ("Bearer without a token", Some("Bearer")),
        ("Bearer with only spaces", Some("Bearer    ")),
        ("token without a scheme", Some(&raw_token)),
        ("garbage bearer token", Some("Bearer abc")),
        ("forged groups", Some(&bearer_forged)),
        ("expired", Some(&bearer_expired)),
        ("invalid tenant id claim", Some(&bearer_bad_tenant)),
        ("reserved tenant id claim", Some(&bearer_reserved_tenant)),
        ("no username claims", Some(&bearer_no_user)),
    ];
    let mut problems = Vec::new();
    for (case, authorization) in cases {
        let result = ctx
            .authenticate(Credentials {
                authorization,
                ..Default::default()
            })
            .await;
        if let Err(p) = check_rejected(case, result, &[]) {
            problems.push(p);
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test]
async fn authenticate_rejects_bearer_tokens_when_no_issuer_is_configured() {
    let ctx = TenantContext::new(TenantConfig::default());
    assert!(ctx.config().jwt.is_none());
    let header = format!("Bearer {}", issue(&id_claims()));
    assert_rejected(
        "bearer token without JWT config",
        ctx.authenticate(Credentials {
            authorization: Some(&header),
            ..Default::default()
        })
        .await,
        &["JWT_ISSUER"],
    );
}

#[test]
fn bearer_token_extracts_the_token_of_a_bearer_header_only() {
    let cases = [
        ("Bearer abc.def.ghi", Some("abc.def.ghi")),
        ("bearer abc", Some("abc")),
        ("BEARER abc", Some("abc")),
        ("  Bearer   abc  ", Some("abc")),
        ("Bearer", None),
        ("Bearer ", None),
        ("Bearer    ", None),
        ("", None),
        ("abc.def.ghi", None),
        ("Basic xyz", None),
        ("Bearerabc", None),
        ("Token abc", None),
    ];
    for (header, want) in cases {
        assert_eq!(bearer_token(header), want, "{header:?}");
    }
}
