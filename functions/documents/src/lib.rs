//! The document API (FormKiQ-shaped): documents, content, tags and tag search
//! (`../shared/DESIGN.md` section 5).
//!
//! Handlers take their dependencies as arguments ([`Deps`]), so the same code runs in Lambda,
//! in the local server and in tests. Every request is authenticated and authorized by the
//! tenant-context library into one [`TenantScope`]; storage is reached only through it.

mod handlers;
pub mod model;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use lambda_http::http::Method;
use lambda_http::{Body, Request, Response};
use platform_http::{ApiError, credentials, query_param};
use storage::{Blobs, PageTokens, Table};
use tenant_context::{Permission, RequestTarget, TenantConfig, TenantContext, TenantScope};

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
            tenant: storage::tenant_context(config, table.clone()),
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
        let config = TenantConfig::from_env().map_err(|e| e.to_string())?;
        let aws = storage::AwsConfig::from_env()?;
        let secret = std::env::var("PAGING_TOKEN_SECRET").unwrap_or_default();
        if secret.len() < 16 {
            return Err(
                "environment variable PAGING_TOKEN_SECRET: missing or shorter than 16 characters"
                    .into(),
            );
        }
        Ok(Deps::new(
            config,
            Arc::new(storage::DynamoTable::from_config(&aws)),
            Arc::new(storage::S3Blobs::from_config(&aws)),
            PageTokens::new(secret.as_bytes()),
            Limits::default(),
        ))
    }
}

/// A route of this function, with its path parameters parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
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
}

/// Matches method and path to a route: unknown paths are 404, known paths with another
/// method 405. A document id that is not a UUID names no document: 404.
fn route(method: &Method, path: &str) -> Result<Route, ApiError> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let not_found = || ApiError::NotFound(format!("no route {path}"));
    let doc = |s: &str| {
        DocumentId::parse(s).ok_or_else(|| ApiError::NotFound(format!("document '{s}' not found")))
    };
    let m = method.as_str();
    let wrong_method = || ApiError::MethodNotAllowed(m.to_owned());
    let r = match segments.as_slice() {
        ["documents"] => match m {
            "GET" => Route::List,
            "POST" => Route::Create,
            _ => return Err(wrong_method()),
        },
        ["documents", "upload"] => match m {
            "GET" => Route::Upload,
            _ => return Err(wrong_method()),
        },
        ["documents", id] => {
            let id = doc(id)?;
            match m {
                "GET" => Route::Get(id),
                "PATCH" => Route::Update(id),
                "DELETE" => Route::Delete(id),
                _ => return Err(wrong_method()),
            }
        }
        ["documents", id, "content"] => match m {
            "GET" => Route::Content(doc(id)?),
            _ => return Err(wrong_method()),
        },
        ["documents", id, "url"] => match m {
            "GET" => Route::Url(doc(id)?),
            _ => return Err(wrong_method()),
        },
        ["documents", id, "tags"] => {
            let id = doc(id)?;
            match m {
                "GET" => Route::ListTags(id),
                "POST" => Route::AddTags(id),
                _ => return Err(wrong_method()),
            }
        }
        ["documents", id, "tags", key] => {
            let id = doc(id)?;
            let key = platform_http::path_segment(key).ok_or_else(not_found)?;
            match m {
                "GET" => Route::GetTag(id, key),
                "PUT" => Route::SetTag(id, key),
                "DELETE" => Route::DeleteTag(id, key),
                _ => return Err(wrong_method()),
            }
        }
        ["search"] => match m {
            "POST" => Route::Search,
            _ => return Err(wrong_method()),
        },
        _ => return Err(not_found()),
    };
    Ok(r)
}

/// One request being served: its scope and dependencies.
pub(crate) struct Ctx<'a> {
    pub deps: &'a Deps,
    pub scope: TenantScope,
    pub req: &'a Request,
}

/// Answers one request.
pub async fn handle(req: Request, deps: &Deps) -> Response<Body> {
    platform_http::respond(&req, serve(&req, deps)).await
}

async fn serve(req: &Request, deps: &Deps) -> Result<Response<Body>, ApiError> {
    let route = route(req.method(), req.uri().path())?;
    let principal = deps
        .tenant
        .authenticate(credentials(req, deps.tenant.config()))
        .await?;
    let scope = deps
        .tenant
        .authorize(
            &principal,
            RequestTarget::site(query_param(req, "siteId")),
            route.permission(req.method()),
        )
        .await?;
    let span = tracing::Span::current();
    span.record("site", scope.site().as_str());
    span.record("user", principal.username());
    let ctx = Ctx { deps, scope, req };
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

#[cfg(test)]
mod tests {
    use super::*;

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
