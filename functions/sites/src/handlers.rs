//! The handlers of the sites routes. Site routes run inside the scope of their `{siteId}`;
//! changes of sites and grants also hold the administrator's scope.

use std::collections::BTreeMap;

use formkiq_api::{ApiError, FieldErrors as Errors, invalid, json_body, message, ok};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};
use platform_http::query_param;
use serde_json::{Map, Value, json};
use site_store::{
    NewSite, SiteRecord, SiteStatus, SiteUpdate, check_group_name, check_title, site_holds_data,
};
use tenant_context::{
    AUTHENTICATION_ONLY_GROUP, AdminScope, Permission, PermissionSet, RequestTarget, SiteId,
    SiteMode, TenantError, TenantScope,
};

use crate::{Ctx, SITE_DATA};

type Result<T> = std::result::Result<T, ApiError>;

use timestamp::now;

/// Whether sites are stored (defined mode with multi-tenancy on).
fn defined(ctx: &Ctx<'_>) -> bool {
    let c = ctx.deps.tenant.config();
    c.multi_tenancy && c.site_mode == SiteMode::Defined
}

fn site_not_found(site: &SiteId) -> ApiError {
    ApiError::NotFound(format!(
        "site '{site}' is not defined; an administrator defines it with POST /sites"
    ))
}

/// The defined site of the scope, or 404.
async fn defined_site(ctx: &Ctx<'_>, scope: &TenantScope) -> Result<SiteRecord> {
    ctx.deps
        .sites
        .get_site(scope.site())
        .await?
        .ok_or_else(|| site_not_found(scope.site()))
}

/// A site as FormKiQ lists it: `siteId`, `title`, `status`, `permission`, `permissions`.
/// Sites that come from groups (automatic mode, single tenant) are always `ACTIVE`.
fn site_json(
    site: &SiteId,
    perms: PermissionSet,
    record: Option<&SiteRecord>,
    from_groups: bool,
) -> Value {
    let mut v = json!({ "siteId": site });
    if let Some(r) = record {
        if let Some(t) = &r.title {
            v["title"] = json!(t);
        }
        v["status"] = json!(r.status.as_str());
    } else if from_groups {
        v["status"] = json!(SiteStatus::Active.as_str());
    }
    v["permission"] = json!(perms.access_level());
    v["permissions"] = json!(perms.names());
    v
}

/// The `{"site": {...}}` object of a create or update body.
fn site_object(body: &Value) -> Result<&Map<String, Value>> {
    body.get("site").and_then(Value::as_object).ok_or_else(|| {
        invalid(
            "site",
            "required: an object {\"site\": {\"id\": ..., \"title\": ..., \"status\": ...}}",
        )
    })
}

/// An optional string field (`null` counts as absent).
fn opt_str<'a>(obj: &'a Map<String, Value>, key: &str, errs: &mut Errors) -> Option<&'a str> {
    match obj.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => {
            errs.add(key, "must be a string");
            None
        }
    }
}

fn title_field(obj: &Map<String, Value>, errs: &mut Errors) -> Option<String> {
    let t = opt_str(obj, "title", errs)?;
    match check_title(t) {
        Ok(()) => Some(t.to_owned()),
        Err(e) => {
            errs.add("title", e);
            None
        }
    }
}

fn status_field(obj: &Map<String, Value>, errs: &mut Errors) -> Option<SiteStatus> {
    let s = opt_str(obj, "status", errs)?;
    let st = SiteStatus::parse(s);
    if st.is_none() {
        errs.add(
            "status",
            format!("'{s}' is not a status; use ACTIVE or INACTIVE"),
        );
    }
    st
}

/// A group name of the path, checked as the store requires.
fn group_name(group: &str) -> Result<()> {
    check_group_name(group).map_err(|e| invalid("groupName", e))
}

// -- GET /sites ---------------------------------------------------------------------------------

/// The caller's sites with their permissions, ordered by site id. Administrators see every
/// defined site (defined mode) or their groups' sites (automatic mode), plus `default`.
pub async fn list_sites(ctx: &Ctx<'_>) -> Result<Response<Body>> {
    let deps = ctx.deps;
    let config = deps.tenant.config();
    let grants = deps.tenant.grants(ctx.principal).await?;
    if grants.is_empty() {
        // The library's own refusal of a token that grants nothing (401).
        return Err(
            match deps
                .tenant
                .authorize(ctx.principal, RequestTarget::default(), Permission::Read)
                .await
            {
                Err(e) => e.into(),
                Ok(_) => {
                    TenantError::TenantMismatch("the token grants access to no site".into()).into()
                }
            },
        );
    }
    let defined = defined(ctx);
    let status = match query_param(ctx.req, "status") {
        None | Some("") => None,
        Some(s) => {
            if !defined {
                deps.defined_mode()?;
            }
            Some(SiteStatus::parse(s).ok_or_else(|| {
                ApiError::BadRequest(format!("status '{s}' is not ACTIVE or INACTIVE"))
            })?)
        }
    };

    let mut sites: BTreeMap<SiteId, PermissionSet> = grants
        .sites()
        .filter(|(_, p)| !p.is_empty())
        .map(|(s, p)| (s.clone(), p))
        .collect();
    let every = grants.every_site();
    let mut records: BTreeMap<SiteId, SiteRecord> = BTreeMap::new();
    if config.multi_tenancy && !every.is_empty() {
        let e = sites.entry(SiteId::default_site()).or_default();
        *e = e.union(every);
        if defined {
            for r in deps.sites.all_sites().await? {
                let e = sites.entry(r.site_id.clone()).or_default();
                *e = e.union(every);
                records.insert(r.site_id.clone(), r);
            }
        }
    }
    if defined && every.is_empty() {
        let ids: Vec<SiteId> = sites.keys().cloned().collect();
        for r in deps.sites.get_sites(&ids).await? {
            records.insert(r.site_id.clone(), r);
        }
    }

    let list: Vec<Value> = sites
        .iter()
        .filter(|(s, _)| status.is_none_or(|st| records.get(*s).is_some_and(|r| r.status == st)))
        .map(|(s, p)| site_json(s, *p, records.get(s), !defined))
        .collect();
    ok(
        StatusCode::OK,
        &json!({
            "username": ctx.principal.username(),
            "groups": ctx.principal.groups(),
            "sites": list,
        }),
    )
}

// -- POST /sites --------------------------------------------------------------------------------

/// Defines a site: `{"site": {"id", "title"?, "status"?}}` (`siteId` is accepted for `id`).
pub async fn create_site(ctx: &Ctx<'_>, admin: &AdminScope) -> Result<Response<Body>> {
    let body: Value = json_body(ctx.req)?;
    let obj = site_object(&body)?;
    let mut errs = Errors::default();
    let id = opt_str(obj, "id", &mut errs);
    let alt = opt_str(obj, "siteId", &mut errs);
    let id = match (id, alt) {
        (Some(a), Some(b)) if a != b => {
            errs.add("id", format!("id '{a}' and siteId '{b}' differ; send one"));
            None
        }
        (Some(a), _) | (None, Some(a)) => Some(a),
        (None, None) => {
            if !errs.has("id") && !errs.has("siteId") {
                errs.add("id", "required: the site id");
            }
            None
        }
    };
    let site_id = id.and_then(|s| match SiteId::parse(s) {
        Ok(s) => Some(s),
        Err(e) => {
            errs.add("id", e.to_string());
            None
        }
    });
    let title = title_field(obj, &mut errs);
    let status = status_field(obj, &mut errs);
    let site_id = errs
        .finish(site_id)?
        .ok_or_else(|| invalid("id", "required: the site id"))?;
    let new = NewSite {
        site_id: site_id.clone(),
        title,
        status: status.unwrap_or_default(),
        inserted_date: now(),
    };
    match ctx.deps.sites.create_site(admin, new).await {
        Ok(_) => {
            tracing::info!(site = %site_id, "site created");
            message(StatusCode::CREATED, format!("Site '{site_id}' created"))
        }
        Err(storage::StorageError::ConditionFailed) => Err(ApiError::Conflict(format!(
            "site '{site_id}' already exists"
        ))),
        Err(e) => Err(e.into()),
    }
}

// -- /sites/{siteId} ----------------------------------------------------------------------------

/// The site with the caller's permissions on it.
pub async fn get_site(ctx: &Ctx<'_>, scope: &TenantScope) -> Result<Response<Body>> {
    let record = if defined(ctx) {
        Some(defined_site(ctx, scope).await?)
    } else {
        None
    };
    ok(
        StatusCode::OK,
        &site_json(
            scope.site(),
            scope.permissions(),
            record.as_ref(),
            record.is_none(),
        ),
    )
}

/// Changes the title and/or status: `{"site": {"title"?, "status"?}}`.
pub async fn update_site(ctx: &Ctx<'_>, scope: &TenantScope) -> Result<Response<Body>> {
    let body: Value = json_body(ctx.req)?;
    let obj = site_object(&body)?;
    let mut errs = Errors::default();
    let update = SiteUpdate {
        title: title_field(obj, &mut errs),
        status: status_field(obj, &mut errs),
    };
    for key in ["id", "siteId"] {
        if let Some(v) = obj.get(key).and_then(Value::as_str)
            && v != scope.site().as_str()
        {
            errs.add(key, "a site id cannot be changed");
        }
    }
    if errs.is_empty() && update == SiteUpdate::default() {
        errs.add("site", "nothing to update: send a title or a status");
    }
    errs.finish(())?;
    match ctx.deps.sites.update_site(scope, &update).await? {
        Some(_) => message(StatusCode::OK, format!("Site '{}' updated", scope.site())),
        None => Err(site_not_found(scope.site())),
    }
}

/// Deletes the site and every grant on it; refused (409) while the site holds data.
pub async fn delete_site(
    ctx: &Ctx<'_>,
    scope: &TenantScope,
    admin: &AdminScope,
) -> Result<Response<Body>> {
    let site = scope.site();
    defined_site(ctx, scope).await?;
    let held = site_holds_data(&*ctx.deps.table, scope, SITE_DATA).await?;
    if !held.is_empty() {
        return Err(ApiError::Conflict(format!(
            "site '{site}' still holds {}; delete them first, then delete the site",
            held.join(" and ")
        )));
    }
    if !ctx.deps.sites.delete_site(admin, site).await? {
        return Err(site_not_found(site));
    }
    tracing::info!(site = %site, "site deleted");
    message(StatusCode::OK, format!("Site '{site}' deleted"))
}

// -- /sites/{siteId}/groups ---------------------------------------------------------------------

/// The groups holding permissions on the site: `groupNames` (FormKiQ) and `groups` with their
/// permissions.
pub async fn list_groups(ctx: &Ctx<'_>, scope: &TenantScope) -> Result<Response<Body>> {
    defined_site(ctx, scope).await?;
    let groups = ctx.deps.sites.site_groups(scope.site()).await?;
    let names: Vec<&str> = groups.iter().map(|(g, _)| g.as_str()).collect();
    let detail: Vec<Value> = groups
        .iter()
        .map(|(g, p)| json!({"groupName": g, "permissions": p.names()}))
        .collect();
    ok(
        StatusCode::OK,
        &json!({"groupNames": names, "groups": detail}),
    )
}

fn no_grant(site: &SiteId, group: &str) -> ApiError {
    ApiError::NotFound(format!(
        "group '{group}' holds no permissions on site '{site}'"
    ))
}

/// The permissions of one group on the site.
pub async fn get_group(ctx: &Ctx<'_>, scope: &TenantScope, group: &str) -> Result<Response<Body>> {
    group_name(group)?;
    match ctx
        .deps
        .sites
        .group_permissions_on(scope.site(), group)
        .await?
    {
        Some(p) => ok(
            StatusCode::OK,
            &json!({"group": {"groupName": group, "permissions": p.names()}}),
        ),
        None => {
            defined_site(ctx, scope).await?;
            Err(no_grant(scope.site(), group))
        }
    }
}

/// Removes the group's permissions on the site.
pub async fn delete_group(
    ctx: &Ctx<'_>,
    scope: &TenantScope,
    admin: &AdminScope,
    group: &str,
) -> Result<Response<Body>> {
    group_name(group)?;
    let site = scope.site();
    if ctx
        .deps
        .sites
        .delete_group_permissions(admin, site, group)
        .await?
    {
        tracing::info!(site = %site, group, "group permissions removed");
        return message(
            StatusCode::OK,
            format!("Group '{group}' removed from site '{site}'"),
        );
    }
    defined_site(ctx, scope).await?;
    Err(no_grant(site, group))
}

/// Sets the group's permissions on the site: `{"permissions": ["READ", "WRITE", ...]}`
/// (case-insensitive; stored with what they imply). An empty list removes them.
pub async fn set_permissions(
    ctx: &Ctx<'_>,
    scope: &TenantScope,
    admin: &AdminScope,
    group: &str,
) -> Result<Response<Body>> {
    group_name(group)?;
    let config = ctx.deps.tenant.config();
    if group == config.admin_group {
        return Err(ApiError::BadRequest(format!(
            "group '{group}' is the administrators group (AdminGroupName): it holds ADMIN on every site already"
        )));
    }
    if group == AUTHENTICATION_ONLY_GROUP {
        return Err(ApiError::BadRequest(format!(
            "group '{group}' only authenticates its members and never grants permissions"
        )));
    }
    let body: Value = json_body(ctx.req)?;
    let mut errs = Errors::default();
    let mut perms = PermissionSet::EMPTY;
    match body.get("permissions") {
        Some(Value::Array(items)) => {
            for item in items {
                match item.as_str().and_then(Permission::parse) {
                    Some(p) => perms = perms.with(p),
                    None => errs.add(
                        "permissions",
                        format!(
                            "{item} is not a permission; use READ, WRITE, DELETE, GOVERN or ADMIN"
                        ),
                    ),
                }
            }
        }
        None | Some(Value::Null) => errs.add(
            "permissions",
            "required: a list such as [\"READ\", \"WRITE\"]",
        ),
        Some(_) => errs.add(
            "permissions",
            "must be a list such as [\"READ\", \"WRITE\"]",
        ),
    }
    errs.finish(())?;
    let site = scope.site();
    if !ctx
        .deps
        .sites
        .set_group_permissions(admin, site, group, perms)
        .await?
    {
        return Err(site_not_found(site));
    }
    tracing::info!(site = %site, group, permissions = %perms, "group permissions set");
    let text = if perms.is_empty() {
        format!("Group '{group}' holds no permissions on site '{site}' now")
    } else {
        format!("Group '{group}' holds {perms} on site '{site}'")
    };
    message(StatusCode::OK, text)
}
