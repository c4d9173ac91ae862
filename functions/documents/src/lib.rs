//! The document API (FormKiQ-shaped): documents, content, tags and tag search
//! (`docs/architecture.md`, "APIs").
//!
//! Handlers take their dependencies as arguments ([`Deps`]), so the same code runs in Lambda,
//! in the local server and in tests. Every request goes through the shared pipeline
//! ([`platform_http::serve`]): it is authenticated and authorized by the tenant-context library
//! into one [`TenantScope`]; storage is reached only through it.

mod handlers;
pub mod model;
pub mod store;

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use formkiq_api::ApiError;
use lambda_http::http::Method;
use lambda_http::{Body, Request, Response};
use platform_http::{Access, Api, Call, Router};
use storage::{Blobs, PageTokens, Table};
use tenant_context::{Permission, TenantConfig, TenantContext, TenantScope};

use crate::model::DocumentId;

/// The path prefixes this function serves.
pub const PREFIXES: &[&str] = &["/documents", "/search"];

/// Limits of the document API.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest inline `content` of `POST`/`PATCH /documents` (decoded bytes).
    pub max_inline_upload: usize,
    /// Largest text content `GET /documents/{id}/content` returns inline.
    pub max_inline_content: u64,
    /// Lifetime of presigned upload and download URLs unless `duration` says otherwise.
    pub url_lifetime: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_inline_upload: 5 * 1024 * 1024,
            max_inline_content: 1024 * 1024,
            url_lifetime: Duration::from_secs(3600),
        }
    }
}

/// What the handlers need; built once per process.
pub struct Deps {
    pub tenant: TenantContext,
    pub table: Arc<dyn Table>,
    pub blobs: Arc<dyn Blobs>,
    pub tokens: PageTokens,
    pub limits: Limits,
}

impl Deps {
    /// The dependencies on `table` and `blobs` for the tenant model `config`. In defined mode
    /// the tenant context reads grants from the table's defined sites (cached for
    /// `PermissionCacheSeconds`).
    pub fn new(
        config: TenantConfig,
        table: Arc<dyn Table>,
        blobs: Arc<dyn Blobs>,
        tokens: PageTokens,
        limits: Limits,
    ) -> Self {
        Deps {
            tenant: site_store::tenant_context(config, table.clone()),
            table,
            blobs,
            tokens,
            limits,
        }
    }

    /// Dependencies from the environment variables the template sets: DynamoDB and S3
    /// (`TABLE_NAME`, `BUCKET_NAME`; clients are created on first use) and the paging-token
    /// secret (`PAGING_TOKEN_SECRET`).
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
            Arc::new(storage::S3Blobs::from_env(&env.aws)?),
            PageTokens::new(secret.as_bytes()),
            Limits::default(),
        ))
    }
}

impl AsRef<TenantContext> for Deps {
    fn as_ref(&self) -> &TenantContext {
        &self.tenant
    }
}

/// A route of this function, with its path parameters parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    List,
    Create,
    Upload,
    Get(DocumentId),
    Update(DocumentId),
    Delete(DocumentId),
    Content(DocumentId),
    Url(DocumentId),
    ListTags(DocumentId),
    AddTags(DocumentId),
    GetTag(DocumentId, String),
    SetTag(DocumentId, String),
    DeleteTag(DocumentId, String),
    Search,
}

impl Route {
    /// The permission the route needs on the target site. `GET /documents/upload` creates a
    /// document, so it needs WRITE although it is a GET.
    fn permission(&self, method: &Method) -> Permission {
        match self {
            Route::Upload => Permission::Write,
            // Searching is a read, although it is a POST.
            Route::Search => Permission::Read,
            _ => Permission::for_method(method.as_str()),
        }
    }

    /// The HTTP method of the route.
    fn method(&self) -> Method {
        match self {
            Route::List | Route::Upload | Route::Get(_) | Route::Content(_) | Route::Url(_) => {
                Method::GET
            }
            Route::ListTags(_) | Route::GetTag(..) => Method::GET,
            Route::Create | Route::AddTags(_) | Route::Search => Method::POST,
            Route::Update(_) => Method::PATCH,
            Route::SetTag(..) => Method::PUT,
            Route::Delete(_) | Route::DeleteTag(..) => Method::DELETE,
        }
    }
}

/// The `{documentId}` of a path: a document id that is not a UUID names no document (404).
fn doc(p: &platform_http::Params<'_, '_>) -> Result<DocumentId, ApiError> {
    let s = p.get("documentId").unwrap_or_default();
    DocumentId::parse(s).ok_or_else(|| ApiError::NotFound(format!("document '{s}' not found")))
}

/// The `{tagKey}` of a path, percent-decoded.
fn tag_key(p: &platform_http::Params<'_, '_>) -> Result<String, ApiError> {
    let raw = p.get("tagKey").unwrap_or_default();
    platform_http::path_segment(raw)
        .ok_or_else(|| ApiError::NotFound(format!("no route for tag '{raw}'")))
}

/// One request being served: its scope and dependencies.
pub(crate) struct Ctx<'a> {
    pub deps: &'a Deps,
    pub scope: &'a TenantScope,
    pub req: &'a Request,
}

/// The routes: unknown paths are 404, known paths with another method 405.
static ROUTES: LazyLock<Router<Route, ApiError>> = LazyLock::new(|| {
    const DOC: &str = "/documents/{documentId}";
    Router::new()
        .route(Method::GET, "/documents", |_| Ok(Route::List))
        .route(Method::POST, "/documents", |_| Ok(Route::Create))
        .route(Method::GET, "/documents/upload", |_| Ok(Route::Upload))
        .route(Method::GET, DOC, |p| Ok(Route::Get(doc(p)?)))
        .route(Method::PATCH, DOC, |p| Ok(Route::Update(doc(p)?)))
        .route(Method::DELETE, DOC, |p| Ok(Route::Delete(doc(p)?)))
        .route(Method::GET, "/documents/{documentId}/content", |p| {
            Ok(Route::Content(doc(p)?))
        })
        .route(Method::GET, "/documents/{documentId}/url", |p| {
            Ok(Route::Url(doc(p)?))
        })
        .route(Method::GET, "/documents/{documentId}/tags", |p| {
            Ok(Route::ListTags(doc(p)?))
        })
        .route(Method::POST, "/documents/{documentId}/tags", |p| {
            Ok(Route::AddTags(doc(p)?))
        })
        .route(Method::GET, "/documents/{documentId}/tags/{tagKey}", |p| {
            Ok(Route::GetTag(doc(p)?, tag_key(p)?))
        })
        .route(Method::PUT, "/documents/{documentId}/tags/{tagKey}", |p| {
            Ok(Route::SetTag(doc(p)?, tag_key(p)?))
        })
        .route(
            Method::DELETE,
            "/documents/{documentId}/tags/{tagKey}",
            |p| Ok(Route::DeleteTag(doc(p)?, tag_key(p)?)),
        )
        .route(Method::POST, "/search", |_| Ok(Route::Search))
});

impl Api for Deps {
    const NAME: &'static str = "documents";
    type Route = Route;
    type Error = ApiError;

    fn router(&self) -> &Router<Route, ApiError> {
        &ROUTES
    }

    fn access(route: &Route) -> Access<'_> {
        Access::Site(route.permission(&route.method()))
    }

    async fn handle(&self, route: Route, call: Call<'_>) -> Result<Response<Body>, ApiError> {
        let ctx = Ctx {
            deps: self,
            scope: call.scope()?,
            req: call.req,
        };
        match route {
            Route::List => handlers::list(&ctx).await,
            Route::Create => handlers::create(&ctx).await,
            Route::Upload => handlers::upload(&ctx).await,
            Route::Get(id) => handlers::get(&ctx, &id).await,
            Route::Update(id) => handlers::update(&ctx, &id).await,
            Route::Delete(id) => handlers::delete(&ctx, &id).await,
            Route::Content(id) => handlers::content(&ctx, &id).await,
            Route::Url(id) => handlers::url(&ctx, &id).await,
            Route::ListTags(id) => handlers::list_tags(&ctx, &id).await,
            Route::AddTags(id) => handlers::add_tags(&ctx, &id).await,
            Route::GetTag(id, key) => handlers::get_tag(&ctx, &id, &key).await,
            Route::SetTag(id, key) => handlers::set_tag(&ctx, &id, &key).await,
            Route::DeleteTag(id, key) => handlers::delete_tag(&ctx, &id, &key).await,
            Route::Search => handlers::search(&ctx).await,
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
        let id = "6f9619ff-8b86-d011-b42d-00c04fc964ff";
        let d = DocumentId::parse(id).unwrap();
        let ok = |m: &str, p: &str| route(&m.parse().unwrap(), p).unwrap();
        assert_eq!(ok("GET", "/documents"), Route::List);
        assert_eq!(ok("GET", "/documents/"), Route::List);
        assert_eq!(ok("POST", "/documents"), Route::Create);
        assert_eq!(ok("GET", "/documents/upload"), Route::Upload);
        assert_eq!(ok("GET", &format!("/documents/{id}")), Route::Get(d));
        assert_eq!(ok("PATCH", &format!("/documents/{id}")), Route::Update(d));
        assert_eq!(ok("DELETE", &format!("/documents/{id}")), Route::Delete(d));
        assert_eq!(
            ok("GET", &format!("/documents/{id}/content")),
            Route::Content(d)
        );
        assert_eq!(ok("GET", &format!("/documents/{id}/url")), Route::Url(d));
        assert_eq!(
            ok("GET", &format!("/documents/{id}/tags")),
            Route::ListTags(d)
        );
        assert_eq!(
            ok("POST", &format!("/documents/{id}/tags")),
            Route::AddTags(d)
        );
        assert_eq!(
            ok("PUT", &format!("/documents/{id}/tags/a%20b%2Fc")),
            Route::SetTag(d, "a b/c".into())
        );
        assert_eq!(ok("POST", "/search"), Route::Search);
        let err = |m: &str, p: &str| route(&m.parse().unwrap(), p).unwrap_err().status().as_u16();
        assert_eq!(err("PUT", "/documents"), 405);
        assert_eq!(err("POST", "/documents/upload"), 405);
        assert_eq!(err("GET", "/documents/not-a-uuid"), 404);
        assert_eq!(err("GET", &format!("/documents/{id}/nope")), 404);
        assert_eq!(err("GET", "/search"), 405);
        assert_eq!(err("GET", "/elsewhere"), 404);
        assert_eq!(Route::Upload.permission(&Method::GET), Permission::Write);
        assert_eq!(Route::Search.permission(&Method::POST), Permission::Read);
        assert_eq!(
            Route::Delete(d).permission(&Method::DELETE),
            Permission::Delete
        );
    }
}
