//! The handlers of the group routes. Each runs for an administrator (an [`AdminScope`]).
//!
//! [`AdminScope`]: tenant_context::AdminScope

use directory::{DirectoryError, MAX_DESCRIPTION, group_name_problem, username_problem};
use formkiq_api::{ApiError, FieldErrors, invalid, json_body, message, ok, page_limit, with_next};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};
use platform_http::query_param;
use serde_json::{Map, Value, json};
use tenant_context::{
    AUTHENTICATION_ONLY_GROUP, DEFAULT_READ_GROUP, RESERVED_SITE_IDS, SiteId, TenantConfig,
};

use crate::Ctx;

type Result<T> = std::result::Result<T, ApiError>;

fn api_error(e: DirectoryError) -> ApiError {
    match e {
        DirectoryError::NotFound(m) => ApiError::NotFound(m),
        DirectoryError::Conflict(m) => ApiError::Conflict(m),
        DirectoryError::Invalid(m) => ApiError::BadRequest(m),
        DirectoryError::Unavailable(m) => ApiError::Unavailable(m),
    }
}

fn next<'a>(ctx: &Ctx<'a>) -> Option<&'a str> {
    query_param(ctx.req, "next").filter(|n| !n.is_empty())
}

/// A percent-decoded path segment.
fn decode(raw: &str, what: &str) -> Result<String> {
    platform_http::path_segment(raw)
        .ok_or_else(|| ApiError::BadRequest(format!("the {what} in the path is not valid UTF-8")))
}

/// The group named in the path. Any name a directory can hold is accepted here (a group made
/// outside this API, e.g. in the Cognito console, can still be read, emptied and deleted);
/// the site-id rules apply when a group is created.
fn path_group(raw: &str) -> Result<String> {
    let name = decode(raw, "group name")?;
    match group_name_problem(&name) {
        Some(p) => Err(ApiError::BadRequest(format!("invalid group name: {p}"))),
        None => Ok(name),
    }
}

fn path_user(raw: &str) -> Result<String> {
    let name = decode(raw, "username")?;
    match username_problem(&name) {
        Some(p) => Err(ApiError::BadRequest(format!("invalid username: {p}"))),
        None => Ok(name),
    }
}

/// Why `name` may not be created as a group, or `None`. A group is a site grant: a site id
/// (`X`, READ WRITE DELETE on X), optionally with `_read` (READ) or `_govern` (GOVERN) on a
/// valid site id; or one of the groups with a fixed meaning: the administrators group,
/// `default_read`, `authentication_only`.
pub(crate) fn creatable_group_problem(name: &str, config: &TenantConfig) -> Option<String> {
    if let Some(p) = group_name_problem(name) {
        return Some(p);
    }
    if name == config.admin_group || name == DEFAULT_READ_GROUP || name == AUTHENTICATION_ONLY_GROUP
    {
        return None;
    }
    if RESERVED_SITE_IDS.contains(&name) {
        return Some(format!("the group name '{name}' is reserved"));
    }
    let suffixed = ["_read", "_govern"]
        .iter()
        .find_map(|s| name.strip_suffix(s).map(|site| (site, *s)));
    let problem = match suffixed {
        Some((site, suffix)) => SiteId::parse(site).err().map(|e| {
            format!("a group named '<site>{suffix}' needs a valid site id before {suffix}: {e}")
        }),
        None => SiteId::parse(name).err().map(|e| e.to_string()),
    };
    problem.map(|p| {
        format!(
            "{p}; a group name is a site id (letters, digits and . _ @ + -, starting with a letter or digit), \
             optionally followed by _read or _govern, or one of '{}', '{DEFAULT_READ_GROUP}', '{AUTHENTICATION_ONLY_GROUP}'",
            config.admin_group
        )
    })
}

/// The object at `key` of a JSON request body (`{"group": {...}}`).
fn body_object(ctx: &Ctx<'_>, key: &str) -> Result<Map<String, Value>> {
    let body: Value = json_body(ctx.req)?;
    let Value::Object(mut top) = body else {
        return Err(ApiError::BadRequest(format!(
            "the request body must be a JSON object {{\"{key}\": {{...}}}}"
        )));
    };
    match top.remove(key) {
        Some(Value::Object(o)) => Ok(o),
        None | Some(Value::Null) => Err(invalid(key, "required")),
        Some(_) => Err(invalid(key, "must be an object")),
    }
}

/// A required string field.
fn required_str(o: &Map<String, Value>, key: &str) -> Result<String> {
    match o.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        None | Some(Value::Null) => Err(invalid(key, "required")),
        Some(_) => Err(invalid(key, "must be a string")),
    }
}

/// `GET /groups`.
pub(crate) async fn list_groups(ctx: &Ctx<'_>) -> Result<Response<Body>> {
    let page = ctx
        .deps
        .directory
        .list_groups(page_limit(ctx.req)?, next(ctx))
        .await
        .map_err(api_error)?;
    ok(
        StatusCode::OK,
        &with_next(json!({ "groups": page.items }), page.next),
    )
}

/// `POST /groups` with `{"group": {"name", "description"?}}`.
pub(crate) async fn create_group(ctx: &Ctx<'_>) -> Result<Response<Body>> {
    let group = body_object(ctx, "group")?;
    let name = required_str(&group, "name")?;
    let mut errors = FieldErrors::default();
    if let Some(p) = creatable_group_problem(&name, ctx.deps.tenant.config()) {
        errors.add("name", p);
    }
    let description = match group.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(d)) if d.chars().count() > MAX_DESCRIPTION => {
            errors.add(
                "description",
                format!("at most {MAX_DESCRIPTION} characters"),
            );
            None
        }
        Some(Value::String(d)) => Some(d.as_str()),
        Some(_) => {
            errors.add("description", "must be a string");
            None
        }
    };
    errors.finish(())?;
    ctx.deps
        .directory
        .create_group(ctx.admin, &name, description)
        .await
        .map_err(api_error)?;
    tracing::info!(group = %name, "group created");
    message(StatusCode::CREATED, format!("group '{name}' created"))
}

/// `GET /groups/{groupName}`.
pub(crate) async fn get_group(ctx: &Ctx<'_>, raw: &str) -> Result<Response<Body>> {
    let name = path_group(raw)?;
    let group = ctx
        .deps
        .directory
        .get_group(&name)
        .await
        .map_err(api_error)?;
    ok(StatusCode::OK, &json!({ "group": group }))
}

/// `DELETE /groups/{groupName}`. The administrators group cannot be deleted through the API
/// (that would lock every administrator out).
pub(crate) async fn delete_group(ctx: &Ctx<'_>, raw: &str) -> Result<Response<Body>> {
    let name = path_group(raw)?;
    if name == ctx.deps.tenant.config().admin_group {
        return Err(ApiError::BadRequest(format!(
            "the administrators group '{name}' cannot be deleted"
        )));
    }
    ctx.deps
        .directory
        .delete_group(ctx.admin, &name)
        .await
        .map_err(api_error)?;
    tracing::info!(group = %name, "group deleted");
    message(StatusCode::OK, format!("group '{name}' deleted"))
}

/// `GET /groups/{groupName}/users`.
pub(crate) async fn list_users(ctx: &Ctx<'_>, raw: &str) -> Result<Response<Body>> {
    let name = path_group(raw)?;
    let page = ctx
        .deps
        .directory
        .list_users_in_group(&name, page_limit(ctx.req)?, next(ctx))
        .await
        .map_err(api_error)?;
    ok(
        StatusCode::OK,
        &with_next(json!({ "users": page.items }), page.next),
    )
}

/// `POST /groups/{groupName}/users` with `{"user": {"username"}}`. A user that does not exist
/// yet is created (see [`directory::Directory::add_user_to_group`]); `attributes`, if sent,
/// must be an object and are not stored.
pub(crate) async fn add_user(ctx: &Ctx<'_>, raw: &str) -> Result<Response<Body>> {
    let group = path_group(raw)?;
    let user = body_object(ctx, "user")?;
    let username = required_str(&user, "username")?;
    if let Some(p) = username_problem(&username) {
        return Err(invalid("username", p));
    }
    match user.get("attributes") {
        None | Some(Value::Null) | Some(Value::Object(_)) => {}
        Some(_) => return Err(invalid("attributes", "must be an object")),
    }
    ctx.deps
        .directory
        .add_user_to_group(ctx.admin, &group, &username)
        .await
        .map_err(api_error)?;
    tracing::info!(group = %group, member = %username, "user added to group");
    message(
        StatusCode::CREATED,
        format!("user '{username}' added to group '{group}'"),
    )
}

/// `DELETE /groups/{groupName}/users/{username}`.
pub(crate) async fn remove_user(
    ctx: &Ctx<'_>,
    raw_group: &str,
    raw_user: &str,
) -> Result<Response<Body>> {
    let group = path_group(raw_group)?;
    let username = path_user(raw_user)?;
    ctx.deps
        .directory
        .remove_user_from_group(ctx.admin, &group, &username)
        .await
        .map_err(api_error)?;
    tracing::info!(group = %group, member = %username, "user removed from group");
    message(
        StatusCode::OK,
        format!("user '{username}' removed from group '{group}'"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creatable_groups() {
        let c = TenantConfig::default();
        for ok in [
            "marketing",
            "marketing_read",
            "marketing_govern",
            "jane.doe+x@example.com",
            "Admins",
            "default",
            "default_read",
            "authentication_only",
            "a_read_read",
            &"a".repeat(128),
        ] {
            assert_eq!(creatable_group_problem(ok, &c), None, "{ok}");
        }
        for bad in [
            "global",
            "global_read",
            "global_govern",
            "_read",
            "_govern",
            "-x",
            "a b",
            "a#b",
            "a/b",
            "",
            &"a".repeat(129),
            "caf\u{e9}",
        ] {
            let p = creatable_group_problem(bad, &c);
            assert!(p.is_some(), "{bad:?}");
        }
        let p = creatable_group_problem("global", &c).unwrap();
        assert!(p.contains("reserved"), "{p}");
        let p = creatable_group_problem("a b", &c).unwrap();
        assert!(p.contains("site id") && p.contains("_read"), "{p}");
        // Another administrators group name is allowed exactly.
        let c = TenantConfig {
            admin_group: "Root Admins".into(),
            ..TenantConfig::default()
        };
        assert_eq!(creatable_group_problem("Root Admins", &c), None);
        assert!(creatable_group_problem("Admins", &c).is_none());
    }
}
