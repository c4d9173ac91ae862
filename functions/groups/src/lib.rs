//! The groups API (FormKiQ-shaped): the user directory's groups and their users
//! (`docs/architecture.md`, "Tenant model" and "APIs").
//!
//! Handlers take their dependencies as arguments ([`Deps`]), so the same code runs in Lambda
//! (Cognito), in the local server and in tests (the embedded directory).
//!
//! Every route needs ADMIN: in automatic site mode a group *is* a site grant (creating group
//! `X` and adding a user to it opens site `X` to that user), and the list of groups reveals
//! every tenant. Anyone else gets 403, on reads too.

mod handlers;

use std::sync::{Arc, LazyLock};

use directory::{CognitoDirectory, Directory};
use formkiq_api::ApiError;
use lambda_http::http::Method;
use lambda_http::{Body, Request, Response};
use platform_http::{Access, Api, Call, Params, Router};
use storage::Table;
use tenant_context::{AdminScope, TenantConfig, TenantContext};

/// The path prefixes this function serves.
pub const PREFIXES: &[&str] = &["/groups"];

/// What the handlers need; built once per process.
pub struct Deps {
    pub tenant: TenantContext,
    pub directory: Arc<dyn Directory>,
}

impl Deps {
    /// The dependencies for the tenant model `config` on `directory`. In defined mode the
    /// tenant context reads grants from the table's defined sites (cached for
    /// `PermissionCacheSeconds`), as every function must to decide who is who there; `table` is
    /// not touched otherwise.
    pub fn new(config: TenantConfig, directory: Arc<dyn Directory>, table: Arc<dyn Table>) -> Self {
        Deps {
            tenant: site_store::tenant_context(config, table),
            directory,
        }
    }

    /// Dependencies from the environment variables the template sets: the tenant model, the
    /// Cognito user pool `USER_POOL_ID` and DynamoDB (`TABLE_NAME`, read in defined mode only).
    /// No client is created here; each is created on first use.
    pub fn from_env() -> Result<Self, String> {
        let env = site_store::Environment::from_env()?;
        let directory = CognitoDirectory::from_env(&env.aws)?;
        Ok(Deps::new(env.config, Arc::new(directory), env.table))
    }
}

impl AsRef<TenantContext> for Deps {
    fn as_ref(&self) -> &TenantContext {
        &self.tenant
    }
}

/// A route of this function. Path segments are kept as sent (percent-encoded); they are
/// decoded and validated only after the caller is known to be an administrator, so nobody
/// else learns anything from a 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    List,
    Create,
    Get(String),
    Delete(String),
    ListUsers(String),
    AddUser(String),
    RemoveUser(String, String),
}

/// A path parameter as sent.
fn raw(p: &Params<'_, '_>, name: &str) -> String {
    p.get(name).unwrap_or_default().to_owned()
}

/// One request being served by an administrator.
pub(crate) struct Ctx<'a> {
    pub deps: &'a Deps,
    pub admin: &'a AdminScope,
    pub req: &'a Request,
}

/// The routes: unknown paths are 404, known paths with another method 405.
static ROUTES: LazyLock<Router<Route, ApiError>> = LazyLock::new(|| {
    const GROUP: &str = "/groups/{groupName}";
    const USERS: &str = "/groups/{groupName}/users";
    Router::new()
        .route(Method::GET, "/groups", |_| Ok(Route::List))
        .route(Method::POST, "/groups", |_| Ok(Route::Create))
        .route(Method::GET, GROUP, |p| Ok(Route::Get(raw(p, "groupName"))))
        .route(Method::DELETE, GROUP, |p| {
            Ok(Route::Delete(raw(p, "groupName")))
        })
        .route(Method::GET, USERS, |p| {
            Ok(Route::ListUsers(raw(p, "groupName")))
        })
        .route(Method::POST, USERS, |p| {
            Ok(Route::AddUser(raw(p, "groupName")))
        })
        .route(
            Method::DELETE,
            "/groups/{groupName}/users/{username}",
            |p| Ok(Route::RemoveUser(raw(p, "groupName"), raw(p, "username"))),
        )
});

impl Api for Deps {
    const NAME: &'static str = "groups";
    type Route = Route;
    type Error = ApiError;

    fn router(&self) -> &Router<Route, ApiError> {
        &ROUTES
    }

    /// Every route needs an administrator (see the module documentation).
    fn access(_: &Route) -> Access<'_> {
        Access::Admin
    }

    async fn handle(&self, route: Route, call: Call<'_>) -> Result<Response<Body>, ApiError> {
        let ctx = Ctx {
            deps: self,
            admin: call.admin()?,
            req: call.req,
        };
        match route {
            Route::List => handlers::list_groups(&ctx).await,
            Route::Create => handlers::create_group(&ctx).await,
            Route::Get(g) => handlers::get_group(&ctx, &g).await,
            Route::Delete(g) => handlers::delete_group(&ctx, &g).await,
            Route::ListUsers(g) => handlers::list_users(&ctx, &g).await,
            Route::AddUser(g) => handlers::add_user(&ctx, &g).await,
            Route::RemoveUser(g, u) => handlers::remove_user(&ctx, &g, &u).await,
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
        assert_eq!(ok("GET", "/groups"), Route::List);
        assert_eq!(ok("GET", "/groups/"), Route::List);
        assert_eq!(ok("POST", "/groups"), Route::Create);
        assert_eq!(ok("GET", "/groups/a"), Route::Get("a".into()));
        assert_eq!(ok("DELETE", "/groups/a%20b"), Route::Delete("a%20b".into()));
        assert_eq!(ok("GET", "/groups/a/users"), Route::ListUsers("a".into()));
        assert_eq!(ok("POST", "/groups/a/users/"), Route::AddUser("a".into()));
        assert_eq!(
            ok("DELETE", "/groups/a/users/u%40x.com"),
            Route::RemoveUser("a".into(), "u%40x.com".into())
        );
        let err = |m: &str, p: &str| route(&m.parse().unwrap(), p).unwrap_err().status().as_u16();
        assert_eq!(err("PUT", "/groups"), 405);
        assert_eq!(err("POST", "/groups/a"), 405);
        assert_eq!(err("PATCH", "/groups/a/users"), 405);
        assert_eq!(err("GET", "/groups/a/users/u"), 405);
        assert_eq!(err("GET", "/groups/a/nope"), 404);
        assert_eq!(err("GET", "/groups/a/users/u/x"), 404);
        assert_eq!(err("GET", "/groups//users"), 404);
        assert_eq!(err("GET", "/groupsx"), 404);
        assert_eq!(err("GET", "/elsewhere"), 404);
    }
}
