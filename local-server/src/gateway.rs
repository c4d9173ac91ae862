//! A local stand-in for API Gateway: verifies the bearer token as the HTTP API JWT authorizer
//! does, builds the same payload-2.0 event, and hands it to the function that owns the route.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use lambda_http::{Body, Request, Response};
use platform_http::{HttpApiRequest, http_api_event, json_response, request_from_event};
use std::path::Path;

use directory::EmbeddedDirectory;
use storage::{Blobs, EmbeddedTable, LocalBlobs, PageTokens, Table};
use tenant_context::{JwtConfig, JwtVerifier, TenantConfig, bearer_token};

use crate::keys::{CLIENT_ID, ISSUER, LocalKeys};

/// The functions, each with its own dependencies, as Lambda would run them.
pub struct Functions {
    pub documents: documents::Deps,
    pub sites: sites::Deps,
    pub groups: groups::Deps,
    pub fhir: fhir::Deps,
    /// FHIR search: the requests API Gateway sends to it rather than to `fhir`
    /// ([`fhir_search::owns`]).
    pub fhir_search: fhir_search::Deps,
    /// The blob store whose presigned URLs this server answers.
    pub blobs: Arc<LocalBlobs>,
    /// The embedded user directory (groups and their users) behind the groups API.
    pub directory: Arc<EmbeddedDirectory>,
    /// The data folder (named when a token signed by another folder's key is refused).
    pub data_dir: std::path::PathBuf,
}

impl Functions {
    /// Every function on the embedded backend in `data_dir` (table `table.redb`, blobs in
    /// `blobs/`), with presigned URLs pointing at `origin` (`http://127.0.0.1:<port>`) and the
    /// tenant model configured from the environment (the template's variables), as in Lambda.
    pub fn local(data_dir: &Path, origin: &str) -> Result<Self, String> {
        let mut config = TenantConfig::from_env().map_err(|e| e.to_string())?;
        // API Gateway's domain is served over HTTPS; this server is plain HTTP on loopback, so
        // the FHIR URLs it writes (Location, fullUrl, links) name it unless FHIR_BASE_URL says
        // otherwise.
        config
            .fhir_base_url
            .get_or_insert_with(|| format!("{origin}/fhir"));
        let secrets = crate::keys::local_secrets(data_dir)?;
        let table: Arc<dyn Table> = Arc::new(
            EmbeddedTable::open(&data_dir.join("table.redb"))
                .map_err(|e| format!("opening the embedded table: {e}"))?,
        );
        let blobs = Arc::new(LocalBlobs::new(
            data_dir.join("blobs"),
            origin.to_owned(),
            &secrets.blobs,
        ));
        let directory = Arc::new(EmbeddedDirectory::new(
            table.clone(),
            PageTokens::new(&secrets.paging),
        ));
        Ok(Functions {
            documents: documents::Deps::new(
                config.clone(),
                table.clone(),
                blobs.clone(),
                PageTokens::new(&secrets.paging),
                documents::Limits::default(),
            ),
            sites: sites::Deps::new(config.clone(), table.clone()),
            groups: groups::Deps::new(config.clone(), directory.clone(), table.clone()),
            fhir: fhir::Deps::new(
                config.clone(),
                table.clone(),
                blobs.clone(),
                PageTokens::new(&secrets.paging),
                fhir::Limits::default(),
            ),
            fhir_search: fhir_search::Deps::new(
                config,
                table.clone(),
                PageTokens::new(&secrets.paging),
            ),
            directory,
            blobs,
            data_dir: data_dir.to_path_buf(),
        })
    }
}

/// The local API: authorizer plus routes.
pub struct Gateway {
    verifier: JwtVerifier,
    jwks: serde_json::Value,
    functions: Functions,
    requests: AtomicU64,
    /// The key id of the local signing key.
    kid: String,
}

/// A request as the HTTP server received it.
pub struct Incoming<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: Vec<(String, String)>,
    pub body: &'a [u8],
    /// `host:port` the server listens on.
    pub domain: &'a str,
}

fn owns(prefixes: &[&str], path: &str) -> bool {
    prefixes.iter().any(|p| {
        path == *p
            || path
                .strip_prefix(p)
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

/// The repository's OpenAPI contract of the document, sites and groups APIs, as written.
const OPENAPI: &str = include_str!("../../openapi.yaml");

/// `GET /openapi.yaml` (no token, like the JWKS).
fn openapi(method: &str) -> Response<Body> {
    let body = if method == "HEAD" {
        Body::Empty
    } else {
        Body::Text(OPENAPI.to_owned())
    };
    Response::builder()
        .status(200)
        .header("content-type", "application/yaml")
        .header("content-length", OPENAPI.len())
        .body(body)
        .unwrap_or_default()
}

/// Routes that API Gateway serves without the authorizer (the FHIR capability statement, GET
/// and HEAD).
fn is_public(method: &str, path: &str) -> bool {
    if method != "GET" && method != "HEAD" {
        return false;
    }
    if path == "/fhir/metadata" {
        return true;
    }
    path.strip_prefix("/fhir/tenant/")
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(tenant, tail)| !tenant.is_empty() && tail == "metadata")
}

impl Gateway {
    pub fn new(keys: &LocalKeys, functions: Functions) -> Self {
        let config = JwtConfig::new(ISSUER, vec![CLIENT_ID.to_owned()]);
        Gateway {
            verifier: JwtVerifier::new(config, Arc::new(keys.jwks())),
            jwks: keys.jwks_json(),
            functions,
            requests: AtomicU64::new(0),
            kid: keys.kid().to_owned(),
        }
    }

    /// Answers one request.
    pub async fn handle(&self, r: Incoming<'_>) -> Response<Body> {
        if r.method == "GET" && r.path == "/.well-known/jwks.json" {
            return json_response(lambda_http::http::StatusCode::OK, &self.jwks);
        }
        if matches!(r.method, "GET" | "HEAD") && r.path == "/openapi.yaml" {
            return openapi(r.method);
        }
        if let Some(encoded_key) = r.path.strip_prefix("/_blobs/") {
            return self.blob(&r, encoded_key).await;
        }
        if let Some(user) = r
            .path
            .strip_prefix("/_local/users/")
            .and_then(|p| p.strip_suffix("/groups"))
            && r.method == "GET"
        {
            let user = percent_encoding::percent_decode_str(user)
                .decode_utf8_lossy()
                .into_owned();
            let groups = directory_groups(&self.functions.directory, &user).await;
            return json_response(
                lambda_http::http::StatusCode::OK,
                &serde_json::json!({
                    "username": user,
                    "groups": groups,
                    "kid": self.kid,
                    "dataDir": self.functions.data_dir.display().to_string(),
                }),
            );
        }
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        let request_id = format!("local-{n}");
        let claims = if is_public(r.method, r.path) {
            None
        } else {
            let header = r
                .headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
                .map(|(_, v)| v.as_str());
            let Some(token) = header.and_then(bearer_token) else {
                return unauthorized();
            };
            match self.verifier.verify(token).await {
                Ok(c) => Some(c),
                Err(e) => {
                    let reason = self.refusal_reason(token, &e.to_string());
                    tracing::warn!(request_id, reason, "authorizer refused the token");
                    return unauthorized();
                }
            }
        };
        let event = http_api_event(&HttpApiRequest {
            method: r.method,
            path: r.path,
            query: r.query,
            headers: r.headers,
            body: Some(r.body),
            claims: claims.as_ref().map(|c| c.as_map()),
            domain: r.domain,
            request_id: &request_id,
        });
        let req = match request_from_event(event) {
            Ok(req) => req,
            Err(e) => {
                return json_response(
                    lambda_http::http::StatusCode::BAD_REQUEST,
                    &serde_json::json!({"message": e}),
                );
            }
        };
        self.route(req).await
    }

    /// Why a token was refused, naming the data folder when another folder's key signed it
    /// (a token minted with another `LOCAL_DATA_DIR`).
    pub fn refusal_reason(&self, token: &str, error: &str) -> String {
        match jsonwebtoken::decode_header(token).ok().and_then(|h| h.kid) {
            Some(kid) if kid.starts_with("local-") && kid != self.kid => format!(
                "{error}: the token is signed by the key {kid} of another data folder; this \
                 server's data folder is {} (key {}): mint tokens with LOCAL_DATA_DIR={} \
                 scripts/dev.sh token ...",
                self.functions.data_dir.display(),
                self.kid,
                self.functions.data_dir.display()
            ),
            _ => error.to_owned(),
        }
    }

    /// A presigned blob URL (what S3 answers for presigned URLs in AWS).
    async fn blob(&self, r: &Incoming<'_>, encoded_key: &str) -> Response<Body> {
        use lambda_http::http::StatusCode;
        let msg = |status: StatusCode, m: &str| {
            json_response(status, &serde_json::json!({ "message": m }))
        };
        let Ok(key) = LocalBlobs::decode_key_path(encoded_key) else {
            return msg(StatusCode::BAD_REQUEST, "malformed blob key");
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let blobs = &self.functions.blobs;
        let signed = match blobs.verify_presigned(r.method, &key, r.query, now) {
            Ok(s) => s,
            Err(_) => {
                return msg(
                    StatusCode::FORBIDDEN,
                    "the presigned URL is invalid or has expired",
                );
            }
        };
        let header = |name: &str| {
            r.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        match r.method {
            "PUT" => {
                let content_type = header("content-type");
                if let Some(signed_type) = &signed.content_type
                    && content_type != Some(signed_type.as_str())
                {
                    return msg(
                        StatusCode::FORBIDDEN,
                        &format!("this URL was signed for Content-Type: {signed_type}"),
                    );
                }
                let ct = content_type.unwrap_or("application/octet-stream");
                match blobs.put(&key, r.body.to_vec(), ct).await {
                    Ok(()) => Response::builder()
                        .status(StatusCode::OK)
                        .body(Body::Empty)
                        .unwrap_or_default(),
                    Err(e) => msg(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
                }
            }
            _ => match (blobs.get(&key).await, blobs.head(&key).await) {
                (Ok(Some(bytes)), Ok(meta)) => Response::builder()
                    .status(StatusCode::OK)
                    .header(
                        "content-type",
                        meta.and_then(|m| m.content_type)
                            .unwrap_or_else(|| "application/octet-stream".into()),
                    )
                    .body(Body::Binary(bytes))
                    .unwrap_or_default(),
                (Ok(None), _) => msg(StatusCode::NOT_FOUND, "no such blob"),
                (Err(e), _) | (_, Err(e)) => msg(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
            },
        }
    }

    async fn route(&self, req: Request) -> Response<Body> {
        let path = req.uri().path().to_owned();
        let f = &self.functions;
        if fhir_search::owns(req.method().as_str(), &path) {
            // Before fhir: these paths are under its prefix, but API Gateway sends them to
            // the search function (its routes are more specific than ANY /fhir/{proxy+}).
            fhir_search::handle(req, &f.fhir_search).await
        } else if owns(documents::PREFIXES, &path) {
            documents::handle(req, &f.documents).await
        } else if owns(sites::PREFIXES, &path) {
            sites::handle(req, &f.sites).await
        } else if owns(groups::PREFIXES, &path) {
            groups::handle(req, &f.groups).await
        } else if owns(fhir::PREFIXES, &path) {
            fhir::handle(req, &f.fhir).await
        } else {
            // What API Gateway answers for a route it does not have.
            json_response(
                lambda_http::http::StatusCode::NOT_FOUND,
                &serde_json::json!({"message": "Not Found"}),
            )
        }
    }
}

/// The groups of `user` in the embedded directory (none for an unknown user): what Cognito
/// would put in the user's `cognito:groups` claim.
pub async fn directory_groups(directory: &EmbeddedDirectory, user: &str) -> Vec<String> {
    use directory::Directory;
    directory.groups_of_user(user).await.unwrap_or_default()
}

/// API Gateway's answer when the JWT authorizer refuses a request.
fn unauthorized() -> Response<Body> {
    let mut r = json_response(
        lambda_http::http::StatusCode::UNAUTHORIZED,
        &serde_json::json!({"message": "Unauthorized"}),
    );
    r.headers_mut().insert(
        "www-authenticate",
        lambda_http::http::HeaderValue::from_static("Bearer"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_routes_are_only_the_capability_statement() {
        assert!(is_public("GET", "/fhir/metadata"));
        assert!(is_public("GET", "/fhir/tenant/t1/metadata"));
        assert!(is_public("HEAD", "/fhir/metadata"));
        assert!(!is_public("POST", "/fhir/metadata"));
        assert!(!is_public("GET", "/fhir/Patient"));
        assert!(!is_public("GET", "/fhir/tenant//metadata"));
        assert!(!is_public("GET", "/fhir/tenant/t1/Patient/metadata"));
        assert!(!is_public("GET", "/documents"));
    }

    #[test]
    fn fhir_paths_go_where_api_gateway_sends_them() {
        let search = |m: &str, p: &str| fhir_search::owns(m, p);
        let fhir = |m: &str, p: &str| !search(m, p) && owns(fhir::PREFIXES, p);
        assert!(search("GET", "/fhir"));
        assert!(search("POST", "/fhir/_search"));
        assert!(search("GET", "/fhir/Patient"));
        assert!(search("POST", "/fhir/Patient/_search"));
        assert!(search("GET", "/fhir/Patient/1/Observation"));
        assert!(search("GET", "/fhir/Patient/1/*"));
        assert!(search("GET", "/fhir/tenant/t1/Patient"));
        assert!(search("GET", "/fhir/tenant/t1/Patient/1/Observation"));
        assert!(fhir("POST", "/fhir"));
        assert!(fhir("GET", "/fhir/metadata"));
        assert!(fhir("GET", "/fhir/_history"));
        assert!(fhir("GET", "/fhir/Patient/_history"));
        assert!(fhir("GET", "/fhir/Patient/1/_history"));
        assert!(fhir("GET", "/fhir/Patient/1"));
        assert!(fhir("POST", "/fhir/Patient"));
        assert!(fhir("GET", "/fhir/tenant/t1/metadata"));
        assert!(fhir("GET", "/fhir/tenant/t1/_history"));
        assert!(fhir("GET", "/fhir/tenant/t1/Patient/1/_history"));
        assert!(!search("GET", "/documents") && !fhir("GET", "/documents"));
        // HEAD goes where GET goes.
        for path in [
            "/fhir",
            "/fhir/Patient",
            "/fhir/Patient/1/Observation",
            "/fhir/tenant/t1",
            "/fhir/tenant/t1/Patient",
            "/fhir/tenant/t1/Patient/1/*",
        ] {
            assert!(search("HEAD", path), "{path}");
        }
        for path in [
            "/fhir/metadata",
            "/fhir/_history",
            "/fhir/Patient/_history",
            "/fhir/Patient/1",
            "/fhir/Patient/1/_history",
            "/fhir/Patient/1/_history/2",
            "/fhir/tenant/t1/metadata",
            "/fhir/tenant/t1/_history",
            "/fhir/tenant/t1/Patient/_history",
            "/fhir/tenant/t1/Patient/1",
            "/fhir/tenant/t1/Patient/1/_history",
        ] {
            assert!(fhir("HEAD", path), "{path}");
        }
    }

    #[test]
    fn prefixes_match_whole_segments() {
        assert!(owns(&["/documents"], "/documents"));
        assert!(owns(&["/documents"], "/documents/abc/tags"));
        assert!(!owns(&["/documents"], "/documentsx"));
        assert!(!owns(&["/sites"], "/"));
    }
}
