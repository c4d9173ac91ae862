//! FHIR R4 search (`docs/architecture.md`, "FHIR"): search-type (`GET /{type}`,
//! `POST /{type}/_search`), search-system (`GET /`, `POST /_search`, with `_type`) and
//! compartment search (`GET /{type}/{id}/{searchType}`, `*` for every type in the compartment),
//! at `/fhir` or, with tenant-specific URLs, at `/fhir/tenant/{tenantId}`.
//!
//! The function only reads: its IAM role has GetItem, BatchGetItem and Query on the table and
//! nothing else, and the store's reads never write. The search itself is `fhir-core`'s
//! ([`fhir_core::search`]): parsing (`query`), the planner and read path (`engine`) and the
//! Bundle (`present`); this crate holds the routes, the request's parameters (query string and
//! form body, `Prefer: handling`), the paging tokens and the response.
//!
//! Handlers take their dependencies as arguments ([`Deps`]), so the same code runs in Lambda,
//! in the local server and in tests. [`owns`] tells which requests API Gateway sends here rather
//! than to the `fhir` function (the local server dispatches with it).

use std::sync::{Arc, LazyLock};

use fhir_core::http::{base_url, check_accept, header, path_id, path_tenant, path_type};
use fhir_core::search::engine::Options;
use fhir_core::search::query::{Search, url_pairs};
use fhir_core::{FHIR_JSON, FhirError, ResourceId, ResourceType};
use lambda_http::http::{Method, StatusCode, header};
use lambda_http::{Body, Request, Response};
use platform_http::{Access, Api, Call, Params, Router};
use storage::{PageTokens, Table};
use tenant_context::{Permission, TenantConfig, TenantContext};

/// Limits of the search API.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest `POST _search` form body (6 MiB: Lambda's own limit).
    pub max_body_bytes: usize,
    /// Most items (index entries and heads) one request reads ([`Options::max_reads`]); a
    /// page that reaches it ends early with a `next` link.
    pub max_reads: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 6 * 1024 * 1024,
            max_reads: Options::new("").max_reads,
        }
    }
}

/// What the handlers need; built once per process. No blob store: search reads resource
/// bodies from the table only (a Binary's content is not searched).
pub struct Deps {
    pub tenant: TenantContext,
    /// Read-only use.
    pub table: Arc<dyn Table>,
    /// Seals and opens the `_page` cursors (the same secret as every function).
    pub tokens: PageTokens,
    pub limits: Limits,
}

impl Deps {
    /// The dependencies on `table` for the tenant model `config` (defined-mode grants are read
    /// from the table, as every function does).
    pub fn new(config: TenantConfig, table: Arc<dyn Table>, tokens: PageTokens) -> Self {
        Deps {
            tenant: site_store::tenant_context(config, table.clone()),
            table,
            tokens,
            limits: Limits::default(),
        }
    }

    /// Dependencies from the environment variables the template sets: DynamoDB
    /// (`TABLE_NAME`) and the paging-token secret (`PAGING_TOKEN_SECRET`, at least 16 bytes).
    pub fn from_env() -> Result<Self, String> {
        let env = site_store::Environment::from_env()?;
        let secret = std::env::var("PAGING_TOKEN_SECRET").unwrap_or_default();
        if secret.len() < 16 {
            return Err(
                "environment variable PAGING_TOKEN_SECRET: missing or shorter than 16 characters"
                    .into(),
            );
        }
        Ok(Deps::new(
            env.config,
            env.table,
            PageTokens::new(secret.as_bytes()),
        ))
    }
}

impl AsRef<TenantContext> for Deps {
    fn as_ref(&self) -> &TenantContext {
        &self.tenant
    }
}

/// A route: the search, and the tenant of a `/fhir/tenant/{tenantId}` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub tenant: Option<String>,
    pub kind: Kind,
}

/// The searches. `post`: `POST .../_search`, whose form body adds parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `GET /` and `POST /_search`: every type, or those of `_type`.
    System { post: bool },
    /// `GET /{type}` and `POST /{type}/_search`.
    Type { t: ResourceType, post: bool },
    /// `GET /{type}/{id}/{searchType}`: resources of `t` (every type in the compartment for
    /// `*`) in the compartment of `owner/id`.
    Compartment {
        owner: ResourceType,
        id: ResourceId,
        t: Option<ResourceType>,
    },
}

fn route(p: &Params<'_, '_>, kind: Kind) -> Result<Route, FhirError> {
    Ok(Route {
        tenant: path_tenant(p)?,
        kind,
    })
}

/// The routes under `base` (`/fhir` or `/fhir/tenant/{tenantId}`). The parameter names are the
/// template's (API Gateway wants one name per position across routes).
fn routes(base: &str) -> Router<Route, FhirError> {
    let p = |rest: &str| format!("{base}{rest}");
    Router::new()
        .route(Method::GET, &p(""), |p| {
            route(p, Kind::System { post: false })
        })
        .route(Method::POST, &p("/_search"), |p| {
            route(p, Kind::System { post: true })
        })
        .route(Method::GET, &p("/{type}"), |p| {
            let t = path_type(p, "type")?;
            route(p, Kind::Type { t, post: false })
        })
        .route(Method::POST, &p("/{type}/_search"), |p| {
            let t = path_type(p, "type")?;
            route(p, Kind::Type { t, post: true })
        })
        .route(Method::GET, &p("/{type}/{id}/{searchType}"), |p| {
            let owner = path_type(p, "type")?;
            let id = path_id(p)?;
            let t = match p.get("searchType") {
                Some("*" | "%2A" | "%2a") => None,
                _ => Some(path_type(p, "searchType")?),
            };
            route(p, Kind::Compartment { owner, id, t })
        })
}

static PLAIN: LazyLock<Router<Route, FhirError>> = LazyLock::new(|| routes("/fhir"));
static TENANT: LazyLock<Router<Route, FhirError>> =
    LazyLock::new(|| routes("/fhir/tenant/{tenantId}"));

/// The routes of this function on the HTTP API (`FhirSearchFunction` in template.yaml), as
/// (method, route path). The events test checks they are the template's.
pub const API_ROUTES: &[(&str, &str)] = &[
    ("GET", "/fhir"),
    ("POST", "/fhir/_search"),
    ("GET", "/fhir/{type}"),
    ("POST", "/fhir/{type}/_search"),
    ("GET", "/fhir/{type}/{id}/{searchType}"),
    ("GET", "/fhir/tenant/{tenantId}"),
    ("POST", "/fhir/tenant/{tenantId}/_search"),
    ("GET", "/fhir/tenant/{tenantId}/{type}"),
    ("POST", "/fhir/tenant/{tenantId}/{type}/_search"),
    ("GET", "/fhir/tenant/{tenantId}/{type}/{id}/{searchType}"),
    // HEAD of each GET search: the pipeline answers it as the GET without the body.
    ("HEAD", "/fhir"),
    ("HEAD", "/fhir/{type}"),
    ("HEAD", "/fhir/{type}/{id}/{searchType}"),
    ("HEAD", "/fhir/tenant/{tenantId}"),
    ("HEAD", "/fhir/tenant/{tenantId}/{type}"),
    ("HEAD", "/fhir/tenant/{tenantId}/{type}/{id}/{searchType}"),
];

/// The routes of the `fhir` function on the HTTP API (`FhirFunction` in template.yaml): its
/// catch-alls, and the routes more specific than a search route that would otherwise take
/// them (`/fhir/_history` would be a search of type `_history`, `/fhir/Patient/p1/_history` a
/// compartment search). The events test checks they are the template's.
pub const FHIR_API_ROUTES: &[(&str, &str)] = &[
    ("ANY", "/fhir"),
    ("ANY", "/fhir/{proxy+}"),
    ("GET", "/fhir/metadata"),
    ("GET", "/fhir/_history"),
    ("GET", "/fhir/{type}/_history"),
    ("GET", "/fhir/{type}/{id}/_history"),
    ("GET", "/fhir/tenant/{tenantId}/metadata"),
    ("GET", "/fhir/tenant/{tenantId}/_history"),
    ("GET", "/fhir/tenant/{tenantId}/{type}/_history"),
    ("GET", "/fhir/tenant/{tenantId}/{type}/{id}/_history"),
    // The HEAD twins of those a HEAD search route would otherwise take.
    ("HEAD", "/fhir/metadata"),
    ("HEAD", "/fhir/tenant/{tenantId}/metadata"),
    ("HEAD", "/fhir/_history"),
    ("HEAD", "/fhir/{type}/{id}/_history"),
    ("HEAD", "/fhir/tenant/{tenantId}/_history"),
    ("HEAD", "/fhir/tenant/{tenantId}/{type}/{id}/_history"),
];

/// Whether route `(route_method, route_path)` takes `method path` as API Gateway matches: a
/// route's method or `ANY`; `{name}` one non-empty segment, a trailing `{name+}` the rest.
fn api_matches(route_method: &str, route_path: &str, method: &str, path: &str) -> bool {
    if route_method != "ANY" && !route_method.eq_ignore_ascii_case(method) {
        return false;
    }
    let route: Vec<&str> = route_path.split('/').skip(1).collect();
    let segs: Vec<&str> = path.split('/').skip(1).collect();
    for (i, r) in route.iter().enumerate() {
        if r.starts_with('{') && r.ends_with("+}") {
            return segs.get(i..).is_some_and(|rest| !rest.join("/").is_empty());
        }
        let Some(s) = segs.get(i) else {
            return false;
        };
        let ok = if r.starts_with('{') {
            !s.is_empty()
        } else {
            r == s
        };
        if !ok {
            return false;
        }
    }
    route.len() == segs.len()
}

/// How specific a route is; API Gateway takes the most specific route a request matches: no
/// greedy `{proxy+}` before one, more literal segments before fewer, an explicit method before
/// `ANY`.
fn api_specificity(route_method: &str, route_path: &str) -> (bool, usize, bool) {
    (
        !route_path.ends_with("+}"),
        route_path
            .split('/')
            .skip(1)
            .filter(|s| !s.starts_with('{'))
            .count(),
        route_method != "ANY",
    )
}

/// Whether API Gateway sends `method path` to this function (rather than to the `fhir`
/// function, or nowhere): the most specific of [`API_ROUTES`] and [`FHIR_API_ROUTES`] that
/// takes it is one of ours. A trailing `/` is ignored.
pub fn owns(method: &str, path: &str) -> bool {
    let path = match path.trim_end_matches('/') {
        "" => "/",
        p => p,
    };
    let ours = API_ROUTES.iter().map(|r| (r, true));
    let theirs = FHIR_API_ROUTES.iter().map(|r| (r, false));
    ours.chain(theirs)
        .filter(|((m, p), _)| api_matches(m, p, method, path))
        .max_by_key(|((m, p), _)| api_specificity(m, p))
        .is_some_and(|(_, ours)| ours)
}

/// `Prefer: handling=lenient` (ignore unknown or unsupported parameters and report them);
/// `handling=strict`, or no preference, is strict (400 naming the parameter).
pub fn lenient(req: &Request) -> bool {
    let Some(p) = header(req, "prefer") else {
        return false;
    };
    p.split([',', ';'])
        .filter_map(|part| part.trim().strip_prefix("handling="))
        .map(|v| v.trim().trim_matches('"'))
        .next()
        .is_some_and(|v| v.eq_ignore_ascii_case("lenient"))
}

/// The media type of a form body.
const FORM: &str = "application/x-www-form-urlencoded";

/// The parameters of a search request: the query string's, then, for `POST _search`, the
/// form body's (`application/x-www-form-urlencoded`; another content type is 415).
pub fn search_pairs(
    req: &Request,
    post: bool,
    max_body_bytes: usize,
) -> Result<Vec<(String, String)>, FhirError> {
    let mut pairs = url_pairs(req.uri().query().unwrap_or_default());
    if !post {
        return Ok(pairs);
    }
    let bytes: &[u8] = match req.body() {
        Body::Text(t) => t.as_bytes(),
        Body::Binary(b) => b,
        _ => &[],
    };
    if bytes.len() > max_body_bytes {
        return Err(FhirError::PayloadTooLarge(format!(
            "the body is {} bytes; this server takes at most {max_body_bytes}",
            bytes.len()
        )));
    }
    let media = header(req, "content-type").map(|ct| {
        ct.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    });
    match media.as_deref() {
        Some(FORM) => {}
        None if bytes.is_empty() => {}
        other => {
            return Err(FhirError::UnsupportedMediaType(format!(
                "{}; POST _search takes its parameters as {FORM}",
                match other {
                    Some(m) => format!("content type '{m}' is not supported here"),
                    None => "the body has no content type".to_owned(),
                }
            )));
        }
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| FhirError::invalid("the form body is not UTF-8 text"))?;
    pairs.extend(url_pairs(text));
    Ok(pairs)
}

impl Api for Deps {
    const NAME: &'static str = "fhir-search";
    type Route = Route;
    type Error = FhirError;

    fn router(&self) -> &Router<Route, FhirError> {
        if self.tenant.config().tenant_specific_url {
            &TENANT
        } else {
            &PLAIN
        }
    }

    fn access(route: &Route) -> Access<'_> {
        Access::Tenant(route.tenant.as_deref(), Permission::Read)
    }

    async fn handle(&self, route: Route, call: Call<'_>) -> Result<Response<Body>, FhirError> {
        let req = call.req;
        check_accept(req, false)?;
        let base = base_url(req, self.tenant.config(), route.tenant.as_deref());
        let scope = call.scope()?;
        let lenient = lenient(req);
        let max = self.limits.max_body_bytes;
        let (search, path) = match route.kind {
            Kind::System { post } => {
                let pairs = search_pairs(req, post, max)?;
                (Search::parse(None, &pairs, lenient)?, String::new())
            }
            Kind::Type { t, post } => {
                let pairs = search_pairs(req, post, max)?;
                (Search::parse(Some(t), &pairs, lenient)?, format!("/{t}"))
            }
            Kind::Compartment { owner, id, t } => {
                let pairs = search_pairs(req, false, max)?;
                let path = match t {
                    Some(t) => format!("/{owner}/{id}/{t}"),
                    None => format!("/{owner}/{id}/*"),
                };
                let s = Search::parse_compartment(owner, &id, t, &pairs, lenient)?;
                (s, path)
            }
        };
        let text = fhir_core::search::searchset(
            &*self.table,
            scope,
            &self.tokens,
            &base,
            &path,
            search,
            self.limits.max_reads,
        )
        .await?;
        Ok(Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, FHIR_JSON)
            .body(Body::Text(text))
            .unwrap_or_default())
    }
}

/// Answers one request through the shared pipeline, as `impl Api for Deps` configures it.
pub async fn handle(req: Request, deps: &Deps) -> Response<Body> {
    platform_http::serve(req, deps).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform_http::{HttpApiRequest, http_api_event, request_from_event};
    use serde_json::{Value, json};

    fn t(s: &str) -> ResourceType {
        ResourceType::parse(s).unwrap()
    }

    fn find(r: &Router<Route, FhirError>, m: &str, p: &str) -> Result<Route, FhirError> {
        r.find(&m.parse().unwrap(), p)
    }

    fn kind(r: &Router<Route, FhirError>, m: &str, p: &str) -> Kind {
        find(r, m, p).unwrap().kind
    }

    fn status(r: &Router<Route, FhirError>, m: &str, p: &str) -> u16 {
        find(r, m, p).unwrap_err().status().as_u16()
    }

    #[test]
    fn plain_routes() {
        let r = &PLAIN;
        assert_eq!(kind(r, "GET", "/fhir"), Kind::System { post: false });
        assert_eq!(kind(r, "GET", "/fhir/"), Kind::System { post: false });
        assert_eq!(
            kind(r, "POST", "/fhir/_search"),
            Kind::System { post: true }
        );
        assert_eq!(
            kind(r, "GET", "/fhir/Patient"),
            Kind::Type {
                t: t("Patient"),
                post: false
            }
        );
        assert_eq!(
            kind(r, "POST", "/fhir/Observation/_search"),
            Kind::Type {
                t: t("Observation"),
                post: true
            }
        );
        let id = ResourceId::parse("p1").unwrap();
        assert_eq!(
            kind(r, "GET", "/fhir/Patient/p1/Observation"),
            Kind::Compartment {
                owner: t("Patient"),
                id: id.clone(),
                t: Some(t("Observation"))
            }
        );
        assert_eq!(
            kind(r, "GET", "/fhir/Patient/p1/*"),
            Kind::Compartment {
                owner: t("Patient"),
                id,
                t: None
            }
        );
        assert_eq!(find(r, "GET", "/fhir/Patient").unwrap().tenant, None);
        assert_eq!(status(r, "GET", "/fhir/Patients"), 404);
        assert_eq!(status(r, "GET", "/fhir/Patient/p1/Foo"), 404);
        assert_eq!(status(r, "GET", "/fhir/Patient/a%20b/Observation"), 400);
        // POST /fhir is the fhir function's (batch/transaction); here it is not a route.
        assert_eq!(status(r, "POST", "/fhir"), 405);
        assert_eq!(status(r, "GET", "/fhir/_search"), 405);
        assert_eq!(status(r, "POST", "/fhir/Patient"), 405);
        assert_eq!(status(r, "GET", "/fhir/Patient/p1"), 404);
        assert_eq!(status(r, "GET", "/fhir/tenant/t1/Patient"), 404);
    }

    #[test]
    fn tenant_routes() {
        let r = &TENANT;
        let one = find(r, "GET", "/fhir/tenant/t1/Patient").unwrap();
        assert_eq!(one.tenant.as_deref(), Some("t1"));
        assert_eq!(
            one.kind,
            Kind::Type {
                t: t("Patient"),
                post: false
            }
        );
        assert_eq!(
            kind(r, "GET", "/fhir/tenant/t1"),
            Kind::System { post: false }
        );
        assert_eq!(
            kind(r, "POST", "/fhir/tenant/t1/_search"),
            Kind::System { post: true }
        );
        assert_eq!(
            kind(r, "POST", "/fhir/tenant/t1/Patient/_search"),
            Kind::Type {
                t: t("Patient"),
                post: true
            }
        );
        assert!(matches!(
            kind(r, "GET", "/fhir/tenant/t1/Encounter/e1/*"),
            Kind::Compartment { t: None, .. }
        ));
        // Tenant-less paths name nothing in the tenant form; an invalid tenant id neither.
        assert_eq!(status(r, "GET", "/fhir/Patient"), 404);
        assert_eq!(status(r, "GET", "/fhir"), 404);
        assert_eq!(status(r, "GET", "/fhir/tenant/a%23b/Patient"), 404);
    }

    #[test]
    fn api_gateway_sends_searches_here_and_the_rest_to_fhir() {
        for (m, p) in [
            ("GET", "/fhir"),
            ("GET", "/fhir/"),
            ("POST", "/fhir/_search"),
            ("GET", "/fhir/Patient"),
            ("POST", "/fhir/Patient/_search"),
            ("GET", "/fhir/Patient/1/Observation"),
            ("GET", "/fhir/Patient/1/*"),
            ("GET", "/fhir/tenant/t1"),
            ("POST", "/fhir/tenant/t1/_search"),
            ("GET", "/fhir/tenant/t1/Patient"),
            ("POST", "/fhir/tenant/t1/Patient/_search"),
            ("GET", "/fhir/tenant/t1/Patient/1/Observation"),
            ("GET", "/fhir/tenant/t1/Patient/1/*"),
        ] {
            assert!(owns(m, p), "{m} {p} is search's");
        }
        for (m, p) in [
            ("POST", "/fhir"),
            ("GET", "/fhir/metadata"),
            ("GET", "/fhir/_history"),
            ("GET", "/fhir/Patient/_history"),
            ("GET", "/fhir/Patient/1/_history"),
            ("GET", "/fhir/Patient/1/_history/2"),
            ("GET", "/fhir/Patient/1"),
            ("POST", "/fhir/Patient"),
            ("PUT", "/fhir/Patient/1"),
            ("DELETE", "/fhir/Patient/1"),
            ("GET", "/fhir/Patient/1/Observation/x"),
            ("POST", "/fhir/tenant/t1"),
            ("GET", "/fhir/tenant/t1/metadata"),
            ("GET", "/fhir/tenant/t1/_history"),
            ("GET", "/fhir/tenant/t1/Patient/_history"),
            ("GET", "/fhir/tenant/t1/Patient/1"),
            ("GET", "/fhir/tenant/t1/Patient/1/_history"),
            ("GET", "/fhir/tenant/t1/Patient/1/_history/2"),
            ("POST", "/fhir/tenant/t1/Patient"),
        ] {
            assert!(!owns(m, p), "{m} {p} is fhir's");
        }
        for (m, p) in [("GET", "/documents"), ("GET", "/"), ("GET", "/fhirx")] {
            assert!(!owns(m, p), "{m} {p} is nobody's here");
        }
    }

    fn request(
        method: &str,
        path: &str,
        query: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Request {
        let claims = json!({"cognito:username": "ann", "cognito:groups": "[acme]"});
        let event = http_api_event(&HttpApiRequest {
            method,
            path,
            query,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: Some(body.as_bytes()),
            claims: claims.as_object(),
            domain: "api.example.com",
            request_id: "r",
        });
        request_from_event(event).unwrap()
    }

    const FORM_HEADER: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

    #[test]
    fn form_bodies_add_to_the_query() {
        let r = request(
            "POST",
            "/fhir/Patient/_search",
            "_count=5",
            &[FORM_HEADER],
            "name=J%C3%BCrgen+M&birthdate=ge2000&name=x",
        );
        assert_eq!(
            search_pairs(&r, true, 1000).unwrap(),
            vec![
                ("_count".into(), "5".into()),
                ("name".into(), "Jürgen M".into()),
                ("birthdate".into(), "ge2000".into()),
                ("name".into(), "x".into()),
            ]
        );
        // A GET's body is no part of the search.
        assert_eq!(search_pairs(&r, false, 1000).unwrap().len(), 1);
        // charset parameters are fine; no body needs no content type.
        let r = request(
            "POST",
            "/fhir/_search",
            "",
            &[(
                "content-type",
                "Application/X-WWW-Form-Urlencoded; charset=UTF-8",
            )],
            "_type=Patient",
        );
        assert_eq!(search_pairs(&r, true, 1000).unwrap().len(), 1);
        let r = request("POST", "/fhir/_search", "_id=1", &[], "");
        assert_eq!(search_pairs(&r, true, 1000).unwrap().len(), 1);
    }

    #[test]
    fn other_bodies_are_415_and_large_ones_413() {
        let json = request(
            "POST",
            "/fhir/Patient/_search",
            "",
            &[("content-type", "application/fhir+json")],
            r#"{"resourceType":"Parameters"}"#,
        );
        assert_eq!(search_pairs(&json, true, 1000).unwrap_err().status(), 415);
        let untyped = request("POST", "/fhir/Patient/_search", "", &[], "name=x");
        assert_eq!(
            search_pairs(&untyped, true, 1000).unwrap_err().status(),
            415
        );
        let big = request(
            "POST",
            "/fhir/Patient/_search",
            "",
            &[FORM_HEADER],
            "name=xyz",
        );
        assert_eq!(search_pairs(&big, true, 4).unwrap_err().status(), 413);
    }

    #[test]
    fn prefer_handling_and_accept() {
        let lenient_of =
            |v: &str| lenient(&request("GET", "/fhir/Patient", "", &[("prefer", v)], ""));
        assert!(lenient_of("handling=lenient"));
        assert!(lenient_of("return=minimal, handling=\"lenient\""));
        assert!(!lenient_of("handling=strict"));
        assert!(!lenient_of("return=minimal"));
        assert!(!lenient(&request("GET", "/fhir/Patient", "", &[], "")));
        let accept = |q: &str, a: Option<&str>| {
            let h: Vec<(&str, &str)> = a.map(|a| ("accept", a)).into_iter().collect();
            check_accept(&request("GET", "/fhir/Patient", q, &h, ""), false)
                .map_err(|e| e.status().as_u16())
        };
        assert_eq!(accept("", None), Ok(()));
        assert_eq!(accept("", Some("application/fhir+json")), Ok(()));
        assert_eq!(accept("", Some("text/html, */*;q=0.1")), Ok(()));
        assert_eq!(accept("", Some("application/fhir+xml")), Err(406));
        assert_eq!(accept("_format=xml", None), Err(406));
        assert_eq!(accept("_format=json", None), Ok(()));
    }

    fn deps(config: TenantConfig) -> (Deps, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let table = storage::EmbeddedTable::open(&dir.path().join("t.redb")).unwrap();
        let deps = Deps::new(
            config,
            Arc::new(table),
            PageTokens::new(b"fhir-search-unit-test-secret-0123"),
        );
        (deps, dir)
    }

    async fn call(deps: &Deps, r: Request) -> (u16, Value) {
        let resp = handle(r, deps).await;
        let status = resp.status().as_u16();
        let body = match resp.body() {
            Body::Text(t) => serde_json::from_str(t).unwrap(),
            _ => Value::Null,
        };
        (status, body)
    }

    #[tokio::test]
    async fn an_empty_tenant_answers_empty_searchsets() {
        let (deps, _dir) = deps(TenantConfig::default());
        let (s, b) = call(&deps, request("GET", "/fhir/Patient", "name=x", &[], "")).await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["type"], "searchset");
        assert_eq!(b["total"], 0);
        assert!(b.get("entry").is_none());
        assert_eq!(
            b["link"][0]["url"],
            "https://api.example.com/fhir/Patient?name=x"
        );
        let (s, b) = call(
            &deps,
            request(
                "POST",
                "/fhir/_search",
                "",
                &[FORM_HEADER],
                "_type=Patient,Observation&_summary=count",
            ),
        )
        .await;
        assert_eq!((s, &b["total"]), (200, &json!(0)), "{b}");
        assert_eq!(
            b["link"][0]["url"],
            "https://api.example.com/fhir?_type=Patient%2CObservation&_summary=count"
        );
        let (s, b) = call(&deps, request("GET", "/fhir/Patient/p1/*", "", &[], "")).await;
        assert_eq!(s, 200, "{b}");
        let (s, b) = call(
            &deps,
            request("GET", "/fhir/Patient/p1/Patient", "", &[], ""),
        )
        .await;
        assert_eq!(s, 200, "{b}");
        // Not a compartment; not in the compartment; unknown parameter (strict and lenient).
        let (s, _) = call(&deps, request("GET", "/fhir/Observation/o1/*", "", &[], "")).await;
        assert_eq!(s, 404);
        let (s, _) = call(
            &deps,
            request("GET", "/fhir/Patient/p1/CodeSystem", "", &[], ""),
        )
        .await;
        assert_eq!(s, 404);
        let (s, b) = call(&deps, request("GET", "/fhir/Patient", "foo=1", &[], "")).await;
        assert_eq!(s, 400);
        assert_eq!(b["resourceType"], "OperationOutcome");
        let prefer = [("prefer", "handling=lenient")];
        let (s, b) = call(&deps, request("GET", "/fhir/Patient", "foo=1", &prefer, "")).await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["entry"][0]["search"]["mode"], "outcome");
        // No token, no search.
        let anonymous = request_from_event(http_api_event(&HttpApiRequest {
            method: "GET",
            path: "/fhir/Patient",
            domain: "api.example.com",
            request_id: "r",
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(call(&deps, anonymous).await.0, 401);
    }

    #[tokio::test]
    async fn cursors_are_bound_to_the_tenant_and_the_query() {
        let (deps, _dir) = deps(TenantConfig::default());
        let cursor = fhir_core::search::engine::Cursor::default();
        let qid = "search|/Patient|name=x";
        let good = deps.tokens.seal_cursor("acme#", qid, &cursor);
        let other_tenant = deps.tokens.seal_cursor("other#", qid, &cursor);
        let other_query = deps
            .tokens
            .seal_cursor("acme#", "search|/Patient|name=y", &cursor);
        let page =
            |tok: &str| format!("name=x&_page={}", fhir_core::search::query::url_encode(tok));
        let (s, b) = call(
            &deps,
            request("GET", "/fhir/Patient", &page(&good), &[], ""),
        )
        .await;
        assert_eq!(s, 200, "{b}");
        // The page's own link repeats its cursor.
        assert!(b["link"][0]["url"].as_str().unwrap().contains("_page="));
        for tok in [other_tenant.as_str(), other_query.as_str(), "junk"] {
            let (s, b) = call(&deps, request("GET", "/fhir/Patient", &page(tok), &[], "")).await;
            assert_eq!(s, 400, "{b}");
        }
        // The same cursor on another type's search is another query.
        let (s, _) = call(
            &deps,
            request("GET", "/fhir/Observation", &page(&good), &[], ""),
        )
        .await;
        assert_eq!(s, 400);
    }
}
