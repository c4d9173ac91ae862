//! The request pipeline every function runs (`docs/architecture.md`, "Request pipeline"):
//!
//! ```text
//! request -> route (404/405) -> authenticate (401) -> Api::check -> authorize (400/401/403)
//!         -> Api::handle -> response; every error -> Api::error_response; one span, one log line
//! ```
//!
//! A function describes itself by implementing [`Api`]: its routes (a [`Router`] of path
//! patterns to its own route type), what each route needs ([`Access`]), its handler, and the
//! format of its errors (`{"message"}` for the FormKiQ-shaped APIs, OperationOutcome for FHIR).

use std::future::Future;
use std::time::Instant;

use lambda_http::http::Method;
use lambda_http::{Body, Request, Response};
use tenant_context::{
    AdminScope, Permission, Principal, RequestTarget, TenantContext, TenantError, TenantScope,
};
use tracing::Instrument;

use crate::metrics::Served;
use crate::{credentials, query_param, request_id};

/// Why the pipeline refused a request before the handler ran. Each API turns it into its own
/// error type (`From<Refusal>`), so it is answered in that API's format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Authentication or authorization failed (400/401/403/503, as the tenant library says).
    Tenant(TenantError),
    /// No route has this path (404); the path as requested.
    NoRoute(String),
    /// The path exists, not with this method (405); the method.
    MethodNotAllowed(String),
    /// The request contradicts itself (400), e.g. two different sites in path and query.
    BadRequest(String),
    /// A route asked for what its access does not provide: a bug of the function (500).
    Internal(String),
}

impl From<TenantError> for Refusal {
    fn from(e: TenantError) -> Self {
        Refusal::Tenant(e)
    }
}

/// What a route needs before its handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access<'r> {
    /// Nobody needs to be authenticated (e.g. FHIR's CapabilityStatement).
    Public,
    /// An authenticated caller; the handler decides the rest (e.g. `GET /sites`).
    Authenticated,
    /// An administrator ([`AdminScope`]).
    Admin,
    /// The request's target site (the `siteId` query parameter, else the tenant claim, the only
    /// site the caller holds, or `default`), with this permission there ([`TenantScope`]).
    Site(Permission),
    /// The site named in the path (`/sites/{siteId}/...`), with this permission there; a
    /// `siteId` query parameter may only repeat it.
    PathSite(&'r str, Permission),
    /// FHIR: the tenant of a `/tenant/{tenantId}/...` path when there is one, else the tenant
    /// claim (or the only site the caller holds, or `default`), with this permission there.
    Tenant(Option<&'r str>, Permission),
}

/// What the pipeline established about the caller, as the route's [`Access`] asked.
#[derive(Debug, Clone)]
pub enum Authorized {
    /// [`Access::Public`]: nobody.
    Nobody,
    /// [`Access::Authenticated`].
    Principal(Principal),
    /// [`Access::Admin`].
    Admin(Principal, AdminScope),
    /// [`Access::Site`], [`Access::PathSite`] and [`Access::Tenant`].
    Site(Principal, TenantScope),
}

/// One request on its way to a handler.
pub struct Call<'a> {
    pub req: &'a Request,
    pub authorized: Authorized,
}

fn missing(what: &str) -> Refusal {
    Refusal::Internal(format!("the route's access provides no {what}"))
}

impl Call<'_> {
    /// The authenticated caller.
    pub fn principal(&self) -> Result<&Principal, Refusal> {
        match &self.authorized {
            Authorized::Principal(p) | Authorized::Admin(p, _) | Authorized::Site(p, _) => Ok(p),
            Authorized::Nobody => Err(missing("principal")),
        }
    }

    /// The tenant scope of a site route.
    pub fn scope(&self) -> Result<&TenantScope, Refusal> {
        match &self.authorized {
            Authorized::Site(_, scope) => Ok(scope),
            _ => Err(missing("tenant scope")),
        }
    }

    /// The administrator scope of an admin route.
    pub fn admin(&self) -> Result<&AdminScope, Refusal> {
        match &self.authorized {
            Authorized::Admin(_, admin) => Ok(admin),
            _ => Err(missing("administrator scope")),
        }
    }
}

/// An API's error type: it takes the pipeline's refusals and is answered in the API's format
/// (`{"message"}` for the FormKiQ-shaped APIs, OperationOutcome for FHIR), in one place.
pub trait ErrorResponse: From<Refusal> + Send {
    /// The response for the error (logging what is worth logging).
    fn into_response(self) -> Response<Body>;
}

/// A function's API, as the pipeline serves it. The tenant context that authenticates and
/// authorizes its requests is the function's `AsRef<TenantContext>`.
pub trait Api: Sync + AsRef<TenantContext> {
    /// A route with its path parameters parsed (an enum of the function's routes).
    type Route: Send;
    /// The function's error.
    type Error: ErrorResponse;

    /// The function's name (`documents`, `fhir`, ...), in every log line of its requests.
    const NAME: &'static str;

    /// The function's routes.
    fn router(&self) -> &Router<Self::Route, Self::Error>;

    /// What `route` needs before it runs.
    fn access(route: &Self::Route) -> Access<'_>;

    /// Checks that depend on the route and the deployment, made after authentication and before
    /// authorization (e.g. a route that exists only in one site mode). Nothing by default.
    fn check(&self, _route: &Self::Route) -> Result<(), Self::Error> {
        Ok(())
    }

    /// Serves one authorized request.
    fn handle<'a>(
        &'a self,
        route: Self::Route,
        call: Call<'a>,
    ) -> impl Future<Output = Result<Response<Body>, Self::Error>> + Send + 'a;
}

/// Serves one request through the pipeline, inside a tracing span that carries the function,
/// the request id, method, path, and (once known) user and site; the status is logged when it
/// is done, and the request's metrics (status class, latency, the storage it used) are written
/// as one Embedded Metric Format line (`crate::metrics`). A `HEAD` request is answered as its `GET` with the body dropped (the headers,
/// `Content-Length` included, are the `GET`'s).
pub async fn serve<A: Api>(req: Request, api: &A) -> Response<Body> {
    let started = Instant::now();
    let request_id = request_id(&req);
    let span = tracing::info_span!(
        "request",
        function = A::NAME,
        request_id = %request_id,
        method = %req.method(),
        path = %req.uri().path(),
        site = tracing::field::Empty,
        user = tracing::field::Empty,
    );
    async {
        let mut site = None;
        let (result, usage) = storage::metered(run(api, &req, &mut site)).await;
        let mut resp = match result {
            Ok(resp) => resp,
            Err(e) => e.into_response(),
        };
        let status = resp.status().as_u16();
        // A 405 says which methods the path has (RFC 9110, 15.5.6).
        if status == 405
            && let Some(allow) = api.router().allow(req.uri().path())
            && let Ok(value) = allow.parse()
        {
            resp.headers_mut()
                .insert(lambda_http::http::header::ALLOW, value);
        }
        tracing::info!(status, "done");
        Served {
            function: A::NAME,
            request_id: &request_id,
            method: req.method().as_str(),
            path: req.uri().path(),
            site: site.as_deref(),
            status,
            latency_ms: started.elapsed().as_secs_f64() * 1000.0,
            usage,
        }
        .emit();
        if req.method() == Method::HEAD {
            let len = match resp.body() {
                Body::Text(t) => t.len(),
                Body::Binary(b) => b.len(),
                _ => 0,
            };
            *resp.body_mut() = Body::Empty;
            resp.headers_mut()
                .insert(lambda_http::http::header::CONTENT_LENGTH, len.into());
        }
        resp
    }
    .instrument(span)
    .await
}

/// Routes, authenticates, authorizes and handles `req`; `site` is set to the site the request
/// was authorized for.
async fn run<A: Api>(
    api: &A,
    req: &Request,
    site: &mut Option<String>,
) -> Result<Response<Body>, A::Error> {
    let route = api.router().find(req.method(), req.uri().path())?;
    let access = A::access(&route);
    let tenant: &TenantContext = api.as_ref();
    if access == Access::Public {
        api.check(&route)?;
        let authorized = Authorized::Nobody;
        return api.handle(route, Call { req, authorized }).await;
    }
    let principal = tenant
        .authenticate(credentials(req, tenant.config()))
        .await
        .map_err(Refusal::from)?;
    tracing::Span::current().record("user", principal.username());
    api.check(&route)?;
    let (target, permission) = match access {
        Access::Public | Access::Authenticated => {
            let authorized = Authorized::Principal(principal);
            return api.handle(route, Call { req, authorized }).await;
        }
        Access::Admin => {
            let admin = tenant
                .authorize_admin(&principal)
                .await
                .map_err(Refusal::from)?;
            let authorized = Authorized::Admin(principal, admin);
            return api.handle(route, Call { req, authorized }).await;
        }
        Access::Site(permission) => (RequestTarget::site(query_param(req, "siteId")), permission),
        Access::Tenant(path_tenant, permission) => (
            RequestTarget {
                path_tenant,
                site_id: None,
            },
            permission,
        ),
        Access::PathSite(site, permission) => {
            if let Some(q) = query_param(req, "siteId")
                && q != site
            {
                return Err(Refusal::BadRequest(format!(
                    "the siteId parameter '{q}' conflicts with the site '{site}' in the path; drop the parameter"
                ))
                .into());
            }
            (RequestTarget::site(Some(site)), permission)
        }
    };
    let scope = tenant
        .authorize(&principal, target, permission)
        .await
        .map_err(Refusal::from)?;
    tracing::Span::current().record("site", scope.site().as_str());
    *site = Some(scope.site().as_str().to_owned());
    let authorized = Authorized::Site(principal, scope);
    api.handle(route, Call { req, authorized }).await
}

/// Builds a route from the parameters of its path.
pub type MakeRoute<R, E> = fn(&Params<'_, '_>) -> Result<R, E>;

/// The path parameters of a matched route, as sent (still percent-encoded).
pub type Params<'k, 'v> = matchit::Params<'k, 'v>;

/// A function's routes: path patterns (matchit syntax: `/documents/{documentId}`) and, for
/// each, the methods it answers with the function that builds the route from the path's
/// parameters. Unknown paths are [`Refusal::NoRoute`] (404), known paths with another method
/// [`Refusal::MethodNotAllowed`] (405). A trailing `/` is ignored. `HEAD` takes the `GET`
/// route of its path (same access, same handler; [`serve`] drops the body).
pub struct Router<R, E> {
    /// Pattern -> index into `methods`.
    inner: matchit::Router<usize>,
    /// Per pattern: the pattern and its methods.
    methods: Vec<(String, Methods<R, E>)>,
}

/// The methods of one path pattern, each with the function that builds its route.
type Methods<R, E> = Vec<(Method, MakeRoute<R, E>)>;

impl<R, E: ErrorResponse> Default for Router<R, E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<R, E: ErrorResponse> Router<R, E> {
    pub fn new() -> Self {
        Router {
            inner: matchit::Router::new(),
            methods: Vec::new(),
        }
    }

    /// Adds `method` on `pattern`. Patterns are the function's constants; an invalid one or a
    /// route added twice is a bug that every function's route test catches, so it panics here,
    /// when the routes are built, never while serving.
    pub fn route(mut self, method: Method, pattern: &str, make: MakeRoute<R, E>) -> Self {
        match self.methods.iter_mut().find(|(p, _)| p == pattern) {
            Some((_, methods)) => {
                assert!(
                    methods.iter().all(|(existing, _)| *existing != method),
                    "route {method} {pattern} added twice"
                );
                methods.push((method, make));
            }
            None => {
                if let Err(e) = self.inner.insert(pattern, self.methods.len()) {
                    panic!("invalid route {method} {pattern}: {e}");
                }
                self.methods
                    .push((pattern.to_owned(), vec![(method, make)]));
            }
        }
        self
    }

    /// The pattern's match of `path`: its methods and path parameters.
    fn lookup<'p>(&self, path: &'p str) -> Option<(&Methods<R, E>, Params<'_, 'p>)> {
        let trimmed = path.trim_end_matches('/');
        let lookup = if trimmed.is_empty() { "/" } else { trimmed };
        let m = self.inner.at(lookup).ok()?;
        // matchit lets a parameter match an empty segment (`/groups//users`): no route has one.
        if m.params.iter().any(|(_, v)| v.is_empty()) {
            return None;
        }
        Some((&self.methods[*m.value].1, m.params))
    }

    /// The methods `path` answers, for a 405's `Allow` header (`HEAD` wherever `GET`); `None`
    /// when no route has the path.
    pub fn allow(&self, path: &str) -> Option<String> {
        let (methods, _) = self.lookup(path)?;
        let mut names: Vec<&str> = methods.iter().map(|(m, _)| m.as_str()).collect();
        if names.contains(&"GET") && !names.contains(&"HEAD") {
            names.push("HEAD");
        }
        Some(names.join(", "))
    }

    /// The route of `method` and `path`.
    pub fn find(&self, method: &Method, path: &str) -> Result<R, E> {
        let (methods, params) = self
            .lookup(path)
            .ok_or_else(|| Refusal::NoRoute(path.to_owned()))?;
        let find = |wanted: &Method| {
            methods
                .iter()
                .find(|(allowed, _)| allowed == wanted)
                .map(|(_, make)| *make)
        };
        // HEAD is GET without the body, wherever there is a GET (RFC 9110, 9.3.2).
        let make = find(method)
            .or_else(|| {
                (*method == Method::HEAD)
                    .then(|| find(&Method::GET))
                    .flatten()
            })
            .ok_or_else(|| Refusal::MethodNotAllowed(method.as_str().to_owned()))?;
        make(&params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenant_context::TenantConfig;

    #[derive(Debug, PartialEq)]
    enum R {
        List,
        Item(String),
        Meta,
    }

    fn router() -> Router<R, ToyError> {
        Router::new()
            .route(Method::GET, "/things", |_| Ok(R::List))
            .route(Method::GET, "/things/{id}", |p| {
                Ok(R::Item(p.get("id").unwrap_or_default().to_owned()))
            })
            .route(Method::DELETE, "/things/{id}", |p| {
                Ok(R::Item(p.get("id").unwrap_or_default().to_owned()))
            })
            .route(Method::GET, "/things/meta", |_| Ok(R::Meta))
    }

    #[test]
    fn routes_match_paths_and_methods() {
        let r = router();
        assert_eq!(r.find(&Method::GET, "/things"), Ok(R::List));
        assert_eq!(r.find(&Method::HEAD, "/things"), Ok(R::List));
        assert_eq!(r.find(&Method::GET, "/things/"), Ok(R::List));
        assert_eq!(r.find(&Method::GET, "/things//"), Ok(R::List));
        assert_eq!(
            r.find(&Method::GET, "/things/a%20b"),
            Ok(R::Item("a%20b".into()))
        );
        assert_eq!(
            r.find(&Method::DELETE, "/things/x"),
            Ok(R::Item("x".into()))
        );
        assert_eq!(r.find(&Method::GET, "/things/meta"), Ok(R::Meta));
        assert_eq!(
            r.find(&Method::POST, "/things/x"),
            Err(ToyError(405, "POST".into()))
        );
        assert_eq!(r.allow("/things/x").as_deref(), Some("GET, DELETE, HEAD"));
        assert_eq!(r.allow("/things/").as_deref(), Some("GET, HEAD"));
        assert_eq!(r.allow("/other"), None);
        assert_eq!(r.allow("/things//x"), None);
        for path in ["/", "", "/thingsx", "/things/x/y", "/things//x", "/other"] {
            assert_eq!(
                r.find(&Method::GET, path),
                Err(ToyError(404, path.into())),
                "{path}"
            );
        }
    }

    #[test]
    #[should_panic(expected = "added twice")]
    fn a_route_added_twice_is_caught_when_built() {
        let _ = router().route(Method::GET, "/things", |_| Ok(R::List));
    }

    /// A toy API with its own error format, as FHIR's OperationOutcome will be: the pipeline
    /// hands every refusal to the API's format.
    struct Toy {
        tenant: TenantContext,
        router: Router<R, ToyError>,
    }

    #[derive(Debug, PartialEq)]
    struct ToyError(u16, String);

    impl From<Refusal> for ToyError {
        fn from(r: Refusal) -> Self {
            match r {
                Refusal::Tenant(e) => ToyError(e.status(), e.to_string()),
                Refusal::NoRoute(p) => ToyError(404, p),
                Refusal::MethodNotAllowed(m) => ToyError(405, m),
                Refusal::BadRequest(m) => ToyError(400, m),
                Refusal::Internal(m) => ToyError(500, m),
            }
        }
    }

    impl Api for Toy {
        const NAME: &'static str = "toy";
        type Route = R;
        type Error = ToyError;

        fn router(&self) -> &Router<R, ToyError> {
            &self.router
        }

        fn access(route: &R) -> Access<'_> {
            match route {
                R::Meta => Access::Public,
                R::List => Access::Site(Permission::Read),
                R::Item(id) => Access::PathSite(id, Permission::Delete),
            }
        }

        async fn handle(&self, route: R, call: Call<'_>) -> Result<Response<Body>, ToyError> {
            let who = match (&route, call.principal()) {
                (R::Meta, Err(_)) => "nobody".to_owned(),
                (_, Ok(p)) => format!("{}@{}", p.username(), call.scope()?.site()),
                (_, Err(e)) => return Err(e.into()),
            };
            Ok(crate::json_response(
                lambda_http::http::StatusCode::OK,
                &serde_json::json!({ "who": who }),
            ))
        }
    }

    impl AsRef<TenantContext> for Toy {
        fn as_ref(&self) -> &TenantContext {
            &self.tenant
        }
    }

    impl ErrorResponse for ToyError {
        fn into_response(self) -> Response<Body> {
            let status = lambda_http::http::StatusCode::from_u16(self.0).unwrap_or_default();
            crate::json_response(
                status,
                &serde_json::json!({"resourceType": "OperationOutcome", "diagnostics": self.1}),
            )
        }
    }

    fn request(method: &str, path: &str, query: &str, groups: Option<&[&str]>) -> Request {
        let claims =
            groups.map(|g| serde_json::json!({"cognito:username": "ann", "cognito:groups": g}));
        let event = crate::http_api_event(&crate::HttpApiRequest {
            method,
            path,
            query,
            claims: claims.as_ref().and_then(|c| c.as_object()),
            domain: "api.example.com",
            request_id: "r",
            ..Default::default()
        });
        crate::request_from_event(event).unwrap()
    }

    async fn call(api: &Toy, r: Request) -> (u16, serde_json::Value) {
        let resp = serve(r, api).await;
        let Body::Text(t) = resp.body() else {
            panic!("a text body")
        };
        (resp.status().as_u16(), serde_json::from_str(t).unwrap())
    }

    #[tokio::test]
    async fn every_step_answers_in_the_apis_format() {
        let api = Toy {
            tenant: TenantContext::new(TenantConfig::default()),
            router: Router::new()
                .route(Method::GET, "/things", |_| Ok(R::List))
                .route(Method::GET, "/meta", |_| Ok(R::Meta))
                .route(Method::DELETE, "/things/{id}", |p| {
                    Ok(R::Item(p.get("id").unwrap_or_default().to_owned()))
                }),
        };
        let ok = |who: &str| serde_json::json!({"who": who});
        // Public: no credentials needed.
        assert_eq!(
            call(&api, request("GET", "/meta", "", None)).await,
            (200, ok("nobody"))
        );
        // Routing, then authentication, then authorization.
        let (s, b) = call(&api, request("GET", "/nope", "", None)).await;
        assert_eq!(
            (s, &b["resourceType"]),
            (404, &serde_json::json!("OperationOutcome"))
        );
        let resp = serve(request("POST", "/meta", "", None), &api).await;
        assert_eq!(resp.status(), 405);
        assert_eq!(resp.headers()["allow"], "GET, HEAD");
        assert_eq!(call(&api, request("GET", "/things", "", None)).await.0, 401);
        let reader: &[&str] = &["acme_read"];
        assert_eq!(
            call(&api, request("GET", "/things", "", Some(reader))).await,
            (200, ok("ann@acme"))
        );
        assert_eq!(
            call(
                &api,
                request("GET", "/things", "siteId=other", Some(reader))
            )
            .await
            .0,
            403
        );
        // The site of the path: needs DELETE there, and the query may only repeat it.
        let writer: &[&str] = &["acme"];
        assert_eq!(
            call(&api, request("DELETE", "/things/acme", "", Some(reader)))
                .await
                .0,
            403
        );
        assert_eq!(
            call(
                &api,
                request("DELETE", "/things/acme", "siteId=acme", Some(writer))
            )
            .await,
            (200, ok("ann@acme"))
        );
        let (s, b) = call(
            &api,
            request("DELETE", "/things/acme", "siteId=b", Some(writer)),
        )
        .await;
        assert_eq!(s, 400);
        assert!(
            b["diagnostics"].as_str().unwrap().contains("conflicts"),
            "{b}"
        );
        // HEAD: the GET's route, access and headers, without the body.
        let head = |query: &'static str, groups: Option<&'static [&'static str]>| {
            let api = &api;
            async move {
                let resp = serve(request("HEAD", "/things", query, groups), api).await;
                let len = resp
                    .headers()
                    .get("content-length")
                    .map(|v| v.to_str().unwrap().to_owned());
                (
                    resp.status().as_u16(),
                    matches!(resp.body(), Body::Empty),
                    len,
                )
            }
        };
        let get = serve(request("GET", "/things", "", Some(reader)), &api).await;
        let Body::Text(t) = get.body() else {
            panic!("a text body")
        };
        assert_eq!(
            head("", Some(reader)).await,
            (200, true, Some(t.len().to_string()))
        );
        assert_eq!(head("", None).await.0, 401);
        assert_eq!(head("siteId=other", Some(reader)).await.0, 403);
        // No GET on the path: 405 as before.
        let resp = serve(request("HEAD", "/things/acme", "", Some(writer)), &api).await;
        assert_eq!(resp.status(), 405);
        assert!(matches!(resp.body(), Body::Empty));
    }
}
