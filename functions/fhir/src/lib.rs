//! The FHIR R4 API (`docs/architecture.md`, "FHIR"): capability statement, create, read,
//! vread, update, patch, delete, instance/type/system history, batch and transaction Bundles.
//!
//! Handlers take their dependencies as arguments ([`Deps`]), so the same code runs in Lambda,
//! in the local server and in tests. Every request goes through the shared pipeline
//! ([`platform_http::serve`]); errors are OperationOutcomes ([`FhirError`]). The FHIR library
//! (`fhir-core`) holds the store and its write protocol; this crate holds the interactions.

mod binary;
mod bundle;
mod capability;
mod conditional;
mod history;
mod ops;
mod rest;

use std::sync::{Arc, LazyLock};

use fhir_core::search::extract::SearchExtractor;
use fhir_core::{FhirError, ResourceId, ResourceType, Store, StoreOptions, VersionId};
use lambda_http::http::Method;
use lambda_http::{Body, Request, Response};
use platform_http::{Access, Api, Call, Params, Router};
use storage::{Blobs, PageTokens, Table};
use tenant_context::{Permission, TenantConfig, TenantContext, TenantScope};

/// The path prefixes this function serves.
pub const PREFIXES: &[&str] = &["/fhir"];

/// Limits of the FHIR API.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body (`FHIR_MAX_BODY_BYTES`, default 6 MiB: Lambda's own limit).
    pub max_body_bytes: usize,
    /// Most entries of a batch or transaction Bundle (`FHIR_MAX_BUNDLE_ENTRIES`, template
    /// parameter `FhirMaxBundleEntries`, default 1,000).
    pub max_bundle_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 6 * 1024 * 1024,
            max_bundle_entries: 1000,
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
    pub store: StoreOptions,
}

impl Deps {
    /// The dependencies on `table` and `blobs` for the tenant model `config` (defined-mode
    /// grants are read from the table, as every function does).
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
            store: StoreOptions::default(),
        }
    }

    /// Dependencies from the environment variables the template sets: DynamoDB and S3
    /// (`TABLE_NAME`, `BUCKET_NAME`), the paging-token secret (`PAGING_TOKEN_SECRET`) and the
    /// limits (`FHIR_MAX_BUNDLE_ENTRIES`, `FHIR_MAX_BODY_BYTES`).
    pub fn from_env() -> Result<Self, String> {
        let env = site_store::Environment::from_env()?;
        let secret = std::env::var("PAGING_TOKEN_SECRET").unwrap_or_default();
        if secret.len() < 16 {
            return Err(
                "environment variable PAGING_TOKEN_SECRET: missing or shorter than 16 characters"
                    .into(),
            );
        }
        let mut limits = Limits::default();
        for (name, slot) in [
            ("FHIR_MAX_BUNDLE_ENTRIES", &mut limits.max_bundle_entries),
            ("FHIR_MAX_BODY_BYTES", &mut limits.max_body_bytes),
        ] {
            if let Some(v) = aws_setup::env_nonempty(name) {
                *slot = v.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    format!("environment variable {name}: '{v}' is not a positive number")
                })?;
            }
        }
        Ok(Deps::new(
            env.config,
            env.table,
            Arc::new(storage::S3Blobs::from_env(&env.aws)?),
            PageTokens::new(secret.as_bytes()),
            limits,
        ))
    }
}

impl AsRef<TenantContext> for Deps {
    fn as_ref(&self) -> &TenantContext {
        &self.tenant
    }
}

/// A route: the interaction, and the tenant of a `/fhir/tenant/{tenantId}` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub tenant: Option<String>,
    pub kind: Kind,
}

/// The interactions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Metadata,
    Bundle,
    SystemHistory,
    Create(ResourceType),
    /// `PUT /{type}?criteria`.
    ConditionalUpdate(ResourceType),
    /// `PATCH /{type}?criteria`.
    ConditionalPatch(ResourceType),
    /// `DELETE /{type}?criteria`.
    ConditionalDelete(ResourceType),
    TypeHistory(ResourceType),
    Read(ResourceType, ResourceId),
    Update(ResourceType, ResourceId),
    Patch(ResourceType, ResourceId),
    Delete(ResourceType, ResourceId),
    InstanceHistory(ResourceType, ResourceId),
    VRead(ResourceType, ResourceId, VersionId),
}

impl Kind {
    fn permission(&self) -> Permission {
        match self {
            // A Bundle needs what each entry needs; checked per entry.
            Kind::Metadata | Kind::Bundle | Kind::SystemHistory => Permission::Read,
            Kind::TypeHistory(_) | Kind::Read(..) | Kind::InstanceHistory(..) | Kind::VRead(..) => {
                Permission::Read
            }
            Kind::Create(_) | Kind::Update(..) | Kind::Patch(..) => Permission::Write,
            Kind::ConditionalUpdate(_) | Kind::ConditionalPatch(_) => Permission::Write,
            Kind::Delete(..) | Kind::ConditionalDelete(_) => Permission::Delete,
        }
    }
}

/// The `{type}` of a path: a type R4 does not define is 404.
fn rtype(p: &Params<'_, '_>) -> Result<ResourceType, FhirError> {
    fhir_core::http::path_type(p, "type")
}

fn route(p: &Params<'_, '_>, kind: Kind) -> Result<Route, FhirError> {
    Ok(Route {
        tenant: fhir_core::http::path_tenant(p)?,
        kind,
    })
}

/// The routes under `base` (`/fhir` or `/fhir/tenant/{tenantId}`).
fn routes(base: &str) -> Router<Route, FhirError> {
    let p = |rest: &str| format!("{base}{rest}");
    Router::new()
        .route(Method::GET, &p("/metadata"), |p| route(p, Kind::Metadata))
        .route(Method::POST, &p(""), |p| route(p, Kind::Bundle))
        .route(Method::GET, &p("/_history"), |p| {
            route(p, Kind::SystemHistory)
        })
        .route(Method::POST, &p("/{type}"), |p| {
            route(p, Kind::Create(rtype(p)?))
        })
        .route(Method::PUT, &p("/{type}"), |p| {
            route(p, Kind::ConditionalUpdate(rtype(p)?))
        })
        .route(Method::PATCH, &p("/{type}"), |p| {
            route(p, Kind::ConditionalPatch(rtype(p)?))
        })
        .route(Method::DELETE, &p("/{type}"), |p| {
            route(p, Kind::ConditionalDelete(rtype(p)?))
        })
        .route(Method::GET, &p("/{type}/_history"), |p| {
            route(p, Kind::TypeHistory(rtype(p)?))
        })
        .route(Method::GET, &p("/{type}/{id}"), |p| {
            route(p, Kind::Read(rtype(p)?, fhir_core::http::path_id(p)?))
        })
        .route(Method::PUT, &p("/{type}/{id}"), |p| {
            route(p, Kind::Update(rtype(p)?, fhir_core::http::path_id(p)?))
        })
        .route(Method::PATCH, &p("/{type}/{id}"), |p| {
            route(p, Kind::Patch(rtype(p)?, fhir_core::http::path_id(p)?))
        })
        .route(Method::DELETE, &p("/{type}/{id}"), |p| {
            route(p, Kind::Delete(rtype(p)?, fhir_core::http::path_id(p)?))
        })
        .route(Method::GET, &p("/{type}/{id}/_history"), |p| {
            route(
                p,
                Kind::InstanceHistory(rtype(p)?, fhir_core::http::path_id(p)?),
            )
        })
        .route(Method::GET, &p("/{type}/{id}/_history/{vid}"), |p| {
            let v = p.get("vid").unwrap_or_default();
            let vid = v.parse().ok().filter(|v| *v > 0).ok_or_else(|| {
                FhirError::NotFound(format!("'{v}' is not a version of this server (1, 2, ...)"))
            })?;
            route(p, Kind::VRead(rtype(p)?, fhir_core::http::path_id(p)?, vid))
        })
}

static PLAIN: LazyLock<Router<Route, FhirError>> = LazyLock::new(|| routes("/fhir"));
static TENANT: LazyLock<Router<Route, FhirError>> =
    LazyLock::new(|| routes("/fhir/tenant/{tenantId}"));

/// One request being served: its scope, dependencies and base URL.
pub(crate) struct Ctx<'a> {
    pub deps: &'a Deps,
    pub scope: &'a TenantScope,
    pub req: &'a Request,
    /// The caller's FHIR base: `https://<api>/fhir`, with `/tenant/<id>` in the tenant form.
    pub base: String,
}

impl Ctx<'_> {
    pub fn store(&self) -> Store<'_> {
        Store::new(
            &*self.deps.table,
            self.scope,
            &SearchExtractor,
            self.deps.store,
        )
    }
}

impl Api for Deps {
    const NAME: &'static str = "fhir";
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
        match route.kind {
            Kind::Metadata => Access::Public,
            ref k => Access::Tenant(route.tenant.as_deref(), k.permission()),
        }
    }

    async fn handle(&self, route: Route, call: Call<'_>) -> Result<Response<Body>, FhirError> {
        let binary =
            matches!(&route.kind, Kind::Read(t, _) | Kind::VRead(t, ..) if t.as_str() == "Binary");
        fhir_core::http::check_accept(call.req, binary)?;
        let base =
            fhir_core::http::base_url(call.req, self.tenant.config(), route.tenant.as_deref());
        if route.kind == Kind::Metadata {
            return Ok(capability::statement(&base));
        }
        let ctx = Ctx {
            deps: self,
            scope: call.scope()?,
            req: call.req,
            base,
        };
        match route.kind {
            Kind::Metadata => Ok(capability::statement(&ctx.base)),
            Kind::Bundle => bundle::post(&ctx).await,
            Kind::SystemHistory => history::list(&ctx, None).await,
            Kind::TypeHistory(t) => history::list(&ctx, Some(t)).await,
            Kind::InstanceHistory(t, id) => history::instance(&ctx, t, &id).await,
            Kind::Create(t) => rest::create(&ctx, t).await,
            Kind::ConditionalUpdate(t) => rest::conditional_update(&ctx, t).await,
            Kind::ConditionalPatch(t) => rest::conditional_patch(&ctx, t).await,
            Kind::ConditionalDelete(t) => rest::conditional_delete(&ctx, t).await,
            Kind::Read(t, id) => rest::read(&ctx, t, &id, None).await,
            Kind::VRead(t, id, vid) => rest::read(&ctx, t, &id, Some(vid)).await,
            Kind::Update(t, id) => rest::update(&ctx, t, id).await,
            Kind::Patch(t, id) => rest::patch(&ctx, t, id).await,
            Kind::Delete(t, id) => rest::delete(&ctx, t, id).await,
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

    #[test]
    fn routes_parse_types_ids_and_versions() {
        let find = |r: &Router<Route, FhirError>, m: &str, p: &str| r.find(&m.parse().unwrap(), p);
        let pat = ResourceType::parse("Patient").unwrap();
        let id = ResourceId::parse("p1").unwrap();
        let ok = |m: &str, p: &str| find(&PLAIN, m, p).unwrap().kind;
        assert_eq!(ok("GET", "/fhir/metadata"), Kind::Metadata);
        assert_eq!(ok("POST", "/fhir"), Kind::Bundle);
        assert_eq!(ok("POST", "/fhir/"), Kind::Bundle);
        assert_eq!(ok("GET", "/fhir/_history"), Kind::SystemHistory);
        assert_eq!(ok("POST", "/fhir/Patient"), Kind::Create(pat));
        assert_eq!(ok("GET", "/fhir/Patient/_history"), Kind::TypeHistory(pat));
        assert_eq!(ok("GET", "/fhir/Patient/p1"), Kind::Read(pat, id.clone()));
        assert_eq!(
            ok("PATCH", "/fhir/Patient/p1"),
            Kind::Patch(pat, id.clone())
        );
        assert_eq!(
            ok("GET", "/fhir/Patient/p1/_history/3"),
            Kind::VRead(pat, id.clone(), 3)
        );
        let err = |r: &Router<Route, FhirError>, m: &str, p: &str| {
            find(r, m, p).unwrap_err().status().as_u16()
        };
        assert_eq!(err(&PLAIN, "GET", "/fhir/Foo/1"), 404);
        assert_eq!(err(&PLAIN, "GET", "/fhir/Patient/a%20b"), 400);
        assert_eq!(err(&PLAIN, "GET", "/fhir/Patient/p1/_history/x"), 404);
        assert_eq!(err(&PLAIN, "POST", "/fhir/Patient/p1"), 405);
        assert_eq!(err(&PLAIN, "GET", "/fhir/tenant/t1/Patient/p1"), 404);
        let t = find(&TENANT, "GET", "/fhir/tenant/t1/Patient/p1").unwrap();
        assert_eq!(t.tenant.as_deref(), Some("t1"));
        assert_eq!(t.kind, Kind::Read(pat, id));
        assert_eq!(err(&TENANT, "GET", "/fhir/Patient/p1"), 404);
        assert_eq!(
            find(&TENANT, "GET", "/fhir/tenant/t1/metadata")
                .unwrap()
                .kind,
            Kind::Metadata
        );
    }
}
