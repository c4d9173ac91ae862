//! The sites API (FormKiQ-shaped): the caller's sites and, in defined mode, sites and
//! per-(site, group) permissions (`docs/architecture.md`, "Tenant model" and "APIs").
//!
//! Handlers take their dependencies as arguments ([`Deps`]), so the same code runs in Lambda,
//! in the local server and in tests. Every request goes through the shared pipeline
//! ([`platform_http::serve`]) and is authenticated by the tenant-context library; site routes
//! are authorized on the `{siteId}` of their path into one `TenantScope`, and changes of sites
//! and grants need the library's `AdminScope`.
//!
//! | route | permission |
//! |---|---|
//! | `GET /sites` | any authenticated caller with a grant |
//! | `POST /sites` | ADMIN (administrators group) |
//! | `GET /sites/{siteId}` | READ on the site |
//! | `PATCH /sites/{siteId}` | GOVERN on the site |
//! | `DELETE /sites/{siteId}` | ADMIN |
//! | `GET /sites/{siteId}/groups` | GOVERN on the site |
//! | `GET /sites/{siteId}/groups/{groupName}` | GOVERN on the site |
//! | `DELETE /sites/{siteId}/groups/{groupName}` | ADMIN |
//! | `PUT /sites/{siteId}/groups/{groupName}/permissions` | ADMIN |
//!
//! Every route but `GET /sites` and `GET /sites/{siteId}` exists in defined mode only
//! (`SiteMode=defined`); elsewhere it answers 400 saying where sites come from.

mod handlers;

use std::sync::{Arc, LazyLock};

use formkiq_api::ApiError;
use lambda_http::http::Method;
use lambda_http::{Body, Request, Response};
use platform_http::{Access, Api, Call, Params, Router};
use site_store::{DataPartition, SiteStore};
use storage::Table;
use tenant_context::{Permission, Principal, SiteMode, TenantConfig, TenantContext};

/// The path prefixes this function serves.
pub const PREFIXES: &[&str] = &["/sites"];

/// The data of every domain: a site that holds any of it cannot be deleted. A new domain adds
/// its partition here.
pub const SITE_DATA: &[DataPartition] = &[
    documents::store::SITE_DATA,
    fhir_core::SITE_DATA[0],
    fhir_core::SITE_DATA[1],
    fhir_core::SITE_DATA[2],
    fhir_core::SITE_DATA[3],
];

/// What the handlers need; built once per process.
pub struct Deps {
    pub tenant: TenantContext,
    pub table: Arc<dyn Table>,
    pub sites: SiteStore,
}

impl Deps {
    /// The dependencies on `table` for the tenant model `config`. In defined mode the tenant
    /// context reads grants from the table's defined sites (cached for `PermissionCacheSeconds`).
    pub fn new(config: TenantConfig, table: Arc<dyn Table>) -> Deps {
        Deps {
            tenant: site_store::tenant_context(config, table.clone()),
            sites: SiteStore::new(table.clone()),
            table,
        }
    }

    /// Dependencies from the environment variables the template sets: the tenant model and
    /// DynamoDB (`TABLE_NAME`; the client is created on first use).
    pub fn from_env() -> Result<Self, String> {
        let env = site_store::Environment::from_env()?;
        Ok(Deps::new(env.config, env.table))
    }

    /// Sites and grants are stored (`POST /sites`, `PUT .../permissions`) only in defined mode.
    fn defined_mode(&self) -> Result<(), ApiError> {
        let c = self.tenant.config();
        if !c.multi_tenancy {
            return Err(ApiError::BadRequest(
                "sites cannot be defined while multi-tenancy is off (EnableMultiTenancy=false): \
                 the only site is 'default'"
                    .into(),
            ));
        }
        match c.site_mode {
            SiteMode::Defined => Ok(()),
            SiteMode::Automatic => Err(ApiError::BadRequest(
                "sites come from groups in automatic mode (SiteMode=automatic): a group named X \
                 is site X (X_read: read-only, X_govern: govern), so create the group instead; \
                 set SiteMode=defined to define sites and their group permissions here"
                    .into(),
            )),
        }
    }
}

impl AsRef<TenantContext> for Deps {
    fn as_ref(&self) -> &TenantContext {
        &self.tenant
    }
}

/// A route of this function, with its path parameters percent-decoded (site ids are parsed by
/// the tenant library when it authorizes, group names by the handlers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    ListSites,
    CreateSite,
    GetSite(String),
    UpdateSite(String),
    DeleteSite(String),
    ListGroups(String),
    GetGroup(String, String),
    DeleteGroup(String, String),
    SetPermissions(String, String),
}

impl Route {
    /// The permission the route needs on its site (for `GET /sites`: on any site). These are
    /// route-specific: site settings and grants need GOVERN to read, ADMIN to change.
    fn permission(&self) -> Permission {
        match self {
            Route::ListSites | Route::GetSite(_) => Permission::Read,
            Route::UpdateSite(_) | Route::ListGroups(_) | Route::GetGroup(..) => Permission::Govern,
            Route::CreateSite
            | Route::DeleteSite(_)
            | Route::DeleteGroup(..)
            | Route::SetPermissions(..) => Permission::Admin,
        }
    }

    /// The `{siteId}` of the path, for site routes.
    fn site(&self) -> Option<&str> {
        match self {
            Route::ListSites | Route::CreateSite => None,
            Route::GetSite(s)
            | Route::UpdateSite(s)
            | Route::DeleteSite(s)
            | Route::ListGroups(s)
            | Route::GetGroup(s, _)
            | Route::DeleteGroup(s, _)
            | Route::SetPermissions(s, _) => Some(s),
        }
    }

    /// Whether the route exists only in defined mode.
    fn defined_only(&self) -> bool {
        !matches!(self, Route::ListSites | Route::GetSite(_))
    }
}

/// A percent-decoded path parameter; one that does not decode names nothing (404).
fn decoded(p: &Params<'_, '_>, name: &str) -> Result<String, ApiError> {
    let raw = p.get(name).unwrap_or_default();
    platform_http::path_segment(raw)
        .ok_or_else(|| ApiError::NotFound(format!("no route for '{raw}'")))
}

fn site(p: &Params<'_, '_>) -> Result<String, ApiError> {
    decoded(p, "siteId")
}

fn group(p: &Params<'_, '_>) -> Result<(String, String), ApiError> {
    Ok((site(p)?, decoded(p, "groupName")?))
}

/// One request being served: the caller and the dependencies.
pub(crate) struct Ctx<'a> {
    pub deps: &'a Deps,
    pub principal: &'a Principal,
    pub req: &'a Request,
}

/// The routes: unknown paths are 404, known paths with another method 405.
static ROUTES: LazyLock<Router<Route, ApiError>> = LazyLock::new(|| {
    const SITE: &str = "/sites/{siteId}";
    const GROUP: &str = "/sites/{siteId}/groups/{groupName}";
    Router::new()
        .route(Method::GET, "/sites", |_| Ok(Route::ListSites))
        .route(Method::POST, "/sites", |_| Ok(Route::CreateSite))
        .route(Method::GET, SITE, |p| Ok(Route::GetSite(site(p)?)))
        .route(Method::PATCH, SITE, |p| Ok(Route::UpdateSite(site(p)?)))
        .route(Method::DELETE, SITE, |p| Ok(Route::DeleteSite(site(p)?)))
        .route(Method::GET, "/sites/{siteId}/groups", |p| {
            Ok(Route::ListGroups(site(p)?))
        })
        .route(Method::GET, GROUP, |p| {
            let (s, g) = group(p)?;
            Ok(Route::GetGroup(s, g))
        })
        .route(Method::DELETE, GROUP, |p| {
            let (s, g) = group(p)?;
            Ok(Route::DeleteGroup(s, g))
        })
        .route(
            Method::PUT,
            "/sites/{siteId}/groups/{groupName}/permissions",
            |p| {
                let (s, g) = group(p)?;
                Ok(Route::SetPermissions(s, g))
            },
        )
});

impl Api for Deps {
    const NAME: &'static str = "sites";
    type Route = Route;
    type Error = ApiError;

    fn router(&self) -> &Router<Route, ApiError> {
        &ROUTES
    }

    fn access(route: &Route) -> Access<'_> {
        match (route, route.site()) {
            (Route::CreateSite, _) => Access::Admin,
            (_, Some(site)) => Access::PathSite(site, route.permission()),
            (_, None) => Access::Authenticated,
        }
    }

    fn check(&self, route: &Route) -> Result<(), ApiError> {
        if route.defined_only() {
            self.defined_mode()?;
        }
        Ok(())
    }

    async fn handle(&self, route: Route, call: Call<'_>) -> Result<Response<Body>, ApiError> {
        let ctx = Ctx {
            deps: self,
            principal: call.principal()?,
            req: call.req,
        };
        // Changes of sites and grants need an administrator besides the site's scope.
        let admin = || async { self.tenant.authorize_admin(ctx.principal).await };
        match &route {
            Route::ListSites => handlers::list_sites(&ctx).await,
            Route::CreateSite => handlers::create_site(&ctx, call.admin()?).await,
            Route::GetSite(_) => handlers::get_site(&ctx, call.scope()?).await,
            Route::UpdateSite(_) => handlers::update_site(&ctx, call.scope()?).await,
            Route::ListGroups(_) => handlers::list_groups(&ctx, call.scope()?).await,
            Route::GetGroup(_, group) => handlers::get_group(&ctx, call.scope()?, group).await,
            Route::DeleteSite(_) => {
                handlers::delete_site(&ctx, call.scope()?, &admin().await?).await
            }
            Route::DeleteGroup(_, group) => {
                handlers::delete_group(&ctx, call.scope()?, &admin().await?, group).await
            }
            Route::SetPermissions(_, group) => {
                handlers::set_permissions(&ctx, call.scope()?, &admin().await?, group).await
            }
        }
    }
}

/// Answers one request through the shared pipeline, as `impl Api for Deps` configures it.
pub async fn handle(req: Request, deps: &Deps) -> Response<Body> {
    platform_http::serve(req, deps).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Matches method and path to a route.
    fn route(method: &Method, path: &str) -> Result<Route, ApiError> {
        ROUTES.find(method, path)
    }

    #[test]
    fn routes() {
        let ok = |m: &str, p: &str| route(&m.parse().unwrap(), p).unwrap();
        assert_eq!(ok("GET", "/sites"), Route::ListSites);
        assert_eq!(ok("GET", "/sites/"), Route::ListSites);
        assert_eq!(ok("POST", "/sites"), Route::CreateSite);
        assert_eq!(ok("GET", "/sites/acme"), Route::GetSite("acme".into()));
        assert_eq!(
            ok("GET", "/sites/jane%40example.com"),
            Route::GetSite("jane@example.com".into())
        );
        assert_eq!(ok("PATCH", "/sites/acme"), Route::UpdateSite("acme".into()));
        assert_eq!(
            ok("DELETE", "/sites/acme"),
            Route::DeleteSite("acme".into())
        );
        assert_eq!(
            ok("GET", "/sites/acme/groups"),
            Route::ListGroups("acme".into())
        );
        assert_eq!(
            ok("GET", "/sites/acme/groups/a%20b%2Fc"),
            Route::GetGroup("acme".into(), "a b/c".into())
        );
        assert_eq!(
            ok("DELETE", "/sites/acme/groups/team"),
            Route::DeleteGroup("acme".into(), "team".into())
        );
        assert_eq!(
            ok("PUT", "/sites/acme/groups/team/permissions"),
            Route::SetPermissions("acme".into(), "team".into())
        );
        let err = |m: &str, p: &str| route(&m.parse().unwrap(), p).unwrap_err().status().as_u16();
        assert_eq!(err("PUT", "/sites"), 405);
        assert_eq!(err("POST", "/sites/acme"), 405);
        assert_eq!(err("POST", "/sites/acme/groups"), 405);
        assert_eq!(err("PUT", "/sites/acme/groups/team"), 405);
        assert_eq!(err("GET", "/sites/acme/groups/team/permissions"), 405);
        assert_eq!(err("GET", "/sites/acme/nope"), 404);
        assert_eq!(err("GET", "/sites/acme/groups/team/permissions/x"), 404);
        assert_eq!(err("GET", "/sites/%FF"), 404);
        assert_eq!(err("GET", "/elsewhere"), 404);
    }

    /// A request as API Gateway's JWT authorizer delivers it for a user in `groups`.
    fn req(groups: &[&str], method: &str, path: &str, body: Option<&str>) -> Request {
        let claims = serde_json::json!({"cognito:username": "u", "cognito:groups": groups});
        let event = platform_http::http_api_event(&platform_http::HttpApiRequest {
            method,
            path,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.map(str::as_bytes),
            claims: claims.as_object(),
            domain: "api.example.com",
            request_id: "unit",
            ..Default::default()
        });
        platform_http::request_from_event(event).unwrap()
    }

    async fn call(deps: &Deps, r: Request) -> (u16, serde_json::Value) {
        let resp = handle(r, deps).await;
        let Body::Text(t) = resp.body() else {
            panic!("text body")
        };
        (resp.status().as_u16(), serde_json::from_str(t).unwrap())
    }

    #[tokio::test]
    async fn defined_mode_round_trip_on_the_embedded_table() {
        let dir = tempfile::tempdir().unwrap();
        let table: Arc<dyn Table> =
            Arc::new(storage::EmbeddedTable::open(&dir.path().join("t.redb")).unwrap());
        let config = TenantConfig {
            site_mode: SiteMode::Defined,
            permission_cache: std::time::Duration::ZERO,
            ..TenantConfig::default()
        };
        let deps = Deps::new(config, table.clone());
        let admin = &["Admins"];
        let (s, b) = call(
            &deps,
            req(admin, "POST", "/sites", Some(r#"{"site":{"id":"acme"}}"#)),
        )
        .await;
        assert_eq!(
            (s, b["message"].as_str()),
            (201, Some("Site 'acme' created"))
        );
        let (s, _) = call(
            &deps,
            req(
                admin,
                "PUT",
                "/sites/acme/groups/team/permissions",
                Some(r#"{"permissions":["write"]}"#),
            ),
        )
        .await;
        assert_eq!(s, 200);
        // The tenant context of these deps reads the grant (defined mode is wired).
        let (s, b) = call(&deps, req(&["team"], "GET", "/sites", None)).await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(
            b["sites"][0]["permissions"],
            serde_json::json!(["READ", "WRITE"])
        );
        let (s, _) = call(&deps, req(&["team"], "GET", "/sites/acme/groups", None)).await;
        assert_eq!(s, 403);
        // Automatic mode on the same table: the defined-only routes explain themselves.
        let auto = Deps::new(TenantConfig::default(), table);
        let (s, b) = call(
            &auto,
            req(admin, "POST", "/sites", Some(r#"{"site":{"id":"x"}}"#)),
        )
        .await;
        assert_eq!(s, 400);
        assert!(
            b["message"]
                .as_str()
                .unwrap()
                .contains("SiteMode=automatic")
        );
        drop(deps);
        drop(auto);
    }

    #[test]
    fn permissions_are_route_specific() {
        let s = || "acme".to_owned();
        assert_eq!(Route::ListSites.permission(), Permission::Read);
        assert_eq!(Route::CreateSite.permission(), Permission::Admin);
        assert_eq!(Route::GetSite(s()).permission(), Permission::Read);
        assert_eq!(Route::UpdateSite(s()).permission(), Permission::Govern);
        assert_eq!(Route::DeleteSite(s()).permission(), Permission::Admin);
        assert_eq!(Route::ListGroups(s()).permission(), Permission::Govern);
        assert_eq!(Route::GetGroup(s(), s()).permission(), Permission::Govern);
        assert_eq!(Route::DeleteGroup(s(), s()).permission(), Permission::Admin);
        assert_eq!(
            Route::SetPermissions(s(), s()).permission(),
            Permission::Admin
        );
        assert!(!Route::ListSites.defined_only());
        assert!(!Route::GetSite(s()).defined_only());
        assert!(Route::CreateSite.defined_only());
        assert!(Route::SetPermissions(s(), s()).defined_only());
    }
}
