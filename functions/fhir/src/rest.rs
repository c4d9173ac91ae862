//! The instance and type interactions: create, read, vread, update, patch, delete; and what
//! they share (media types, body limits, `Prefer`, the headers of a version).

use fhir_core::{
    FHIR_JSON, FhirError, Resource, ResourceId, ResourceType, Version, VersionId, etag, outcome,
    parse_etag,
};
use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, Response};

use fhir_core::http::header;

use crate::ops::{self, Done, Op};
use crate::{Ctx, conditional};

/// What the client prefers back (`Prefer: return=...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Return {
    Minimal,
    Representation,
    OperationOutcome,
}

pub(crate) fn prefer(req: &Request, default: Return) -> Return {
    let Some(p) = header(req, "prefer") else {
        return default;
    };
    for part in p.split([',', ';']) {
        match part
            .trim()
            .strip_prefix("return=")
            .map(|v| v.trim_matches('"'))
        {
            Some("minimal") => return Return::Minimal,
            Some("representation") => return Return::Representation,
            Some("OperationOutcome") => return Return::OperationOutcome,
            _ => {}
        }
    }
    default
}

/// The request body, checked against the media types allowed and the size limit.
pub(crate) fn body<'a>(ctx: &'a Ctx<'_>, allowed: &[&str]) -> Result<&'a [u8], FhirError> {
    let bytes: &[u8] = match ctx.req.body() {
        Body::Empty => &[],
        Body::Text(t) => t.as_bytes(),
        Body::Binary(b) => b,
        _ => &[],
    };
    if bytes.len() > ctx.deps.limits.max_body_bytes {
        return Err(FhirError::PayloadTooLarge(format!(
            "the body is {} bytes; this server takes at most {}",
            bytes.len(),
            ctx.deps.limits.max_body_bytes
        )));
    }
    if let Some(ct) = header(ctx.req, "content-type") {
        let media = ct
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if !allowed.contains(&media.as_str()) {
            return Err(FhirError::UnsupportedMediaType(format!(
                "content type '{media}' is not supported here; send {}",
                allowed.join(" or ")
            )));
        }
    }
    if bytes.is_empty() {
        return Err(FhirError::invalid("the request has no body"));
    }
    Ok(bytes)
}

/// Media types of a resource body.
pub(crate) const JSON_TYPES: &[&str] = &[FHIR_JSON, "application/json"];

/// `If-Match`, parsed.
fn if_match(req: &Request) -> Result<Option<VersionId>, FhirError> {
    header(req, "if-match").map(version_etag).transpose()
}

/// The version of an `If-Match` header or a Bundle entry's `ifMatch`.
pub(crate) fn version_etag(v: &str) -> Result<VersionId, FhirError> {
    parse_etag(v).ok_or_else(|| {
        FhirError::invalid(format!(
            "If-Match '{v}' is not a version ETag such as W/\"1\""
        ))
    })
}

/// `<base>/<Type>/<id>`.
pub(crate) fn url(base: &str, t: ResourceType, id: &ResourceId) -> String {
    format!("{base}/{t}/{id}")
}

/// `<base>/<Type>/<id>/_history/<vid>`.
pub(crate) fn version_url(base: &str, v: &Version) -> String {
    format!("{}/_history/{}", url(base, v.rtype, &v.id), v.vid)
}

/// A response about one version: `ETag`, `Last-Modified`, `Location` when asked, and the body
/// the client prefers.
pub(crate) fn version_response(
    ctx: &Ctx<'_>,
    status: StatusCode,
    v: &Version,
    ret: Return,
    location: bool,
) -> Response<Body> {
    let (status, body) = match ret {
        Return::Representation if v.body.is_some() => (
            status,
            Body::Text(String::from_utf8_lossy(v.body.as_deref().unwrap_or_default()).into_owned()),
        ),
        Return::OperationOutcome => (
            status,
            Body::Text(
                outcome(
                    "information",
                    "informational",
                    &format!("{} {}/{} version {}", verb(status, v), v.rtype, v.id, v.vid),
                )
                .to_string(),
            ),
        ),
        _ if status == StatusCode::OK && v.deleted => (StatusCode::NO_CONTENT, Body::Empty),
        _ => (status, Body::Empty),
    };
    let mut resp = Response::builder().status(status);
    if !matches!(body, Body::Empty) {
        resp = resp.header(header::CONTENT_TYPE, FHIR_JSON);
    }
    resp = resp.header(header::ETAG, etag(v.vid));
    if let Some(d) = timestamp::http_date(&v.last_updated) {
        resp = resp.header(header::LAST_MODIFIED, d);
    }
    if location {
        resp = resp.header(header::LOCATION, version_url(&ctx.base, v));
    }
    resp.body(body).unwrap_or_default()
}

fn verb(status: StatusCode, v: &Version) -> &'static str {
    if v.deleted {
        "deleted"
    } else if status == StatusCode::CREATED {
        "created"
    } else {
        "updated"
    }
}

/// The answer to a create or update (a Binary's representation carries its data).
async fn written(
    ctx: &Ctx<'_>,
    status: StatusCode,
    v: Version,
) -> Result<Response<Body>, FhirError> {
    let ret = prefer(ctx.req, Return::Representation);
    let v = if ret == Return::Representation {
        crate::binary::with_data(ctx, v).await?
    } else {
        v
    };
    Ok(version_response(ctx, status, &v, ret, true))
}

/// Parses a resource body of type `t`.
fn resource(ctx: &Ctx<'_>, t: ResourceType) -> Result<Resource, FhirError> {
    let r = Resource::parse(body(ctx, JSON_TYPES)?)?;
    r.expect_type(t)?;
    Ok(r)
}

fn one(mut done: Vec<Done>) -> Done {
    done.pop().expect("one operation, one result")
}

/// `POST /{type}`: a new resource with a server-assigned id (an id in the body is ignored).
/// With `If-None-Exist: <criteria>`, a resource that matches is returned (200) instead.
pub(crate) async fn create(ctx: &Ctx<'_>, t: ResourceType) -> Result<Response<Body>, FhirError> {
    let resource = resource(ctx, t)?;
    if let Some(criteria) = header(ctx.req, "if-none-exist") {
        let criteria = criteria.trim_start_matches('?');
        let criteria = criteria
            .strip_prefix(&format!("{t}?"))
            .unwrap_or(criteria)
            .to_owned();
        if let Some(v) = conditional::one(ctx, t, &criteria).await? {
            return Ok(version_response(
                ctx,
                StatusCode::OK,
                &v,
                prefer(ctx.req, Return::Representation),
                true,
            ));
        }
    }
    let op = Op::Create {
        t,
        id: ResourceId::generate(),
        resource,
        blob: None,
    };
    let done = one(ops::run(ctx, &mut [op]).await?);
    let v = done.version.expect("a create writes a version");
    written(ctx, done.status, v).await
}

/// `PUT /{type}/{id}`: a new version, or the first one with the client's id.
pub(crate) async fn update(
    ctx: &Ctx<'_>,
    t: ResourceType,
    id: ResourceId,
) -> Result<Response<Body>, FhirError> {
    let resource = resource(ctx, t)?;
    resource.expect_id(&id)?;
    let op = Op::Update {
        t,
        id,
        resource,
        if_match: if_match(ctx.req)?,
        blob: None,
    };
    let done = one(ops::run(ctx, &mut [op]).await?);
    let v = done.version.expect("an update writes a version");
    written(ctx, done.status, v).await
}

/// The criteria of a conditional interaction: the request's query string.
fn criteria<'a>(ctx: &'a Ctx<'_>) -> &'a str {
    ctx.req.uri().query().unwrap_or_default()
}

/// `PUT /{type}?criteria`: updates the one match; with none, creates (with the body's id
/// when it has one and no resource has it yet); several matches are 412.
pub(crate) async fn conditional_update(
    ctx: &Ctx<'_>,
    t: ResourceType,
) -> Result<Response<Body>, FhirError> {
    let resource = resource(ctx, t)?;
    let op = conditional::update_op(ctx, t, criteria(ctx), resource, if_match(ctx.req)?).await?;
    let done = one(ops::run(ctx, &mut [op]).await?);
    let v = done.version.expect("an update writes a version");
    written(ctx, done.status, v).await
}

/// `PATCH /{type}?criteria`: patches the one match (404 when none, 412 when several).
pub(crate) async fn conditional_patch(
    ctx: &Ctx<'_>,
    t: ResourceType,
) -> Result<Response<Body>, FhirError> {
    let _ = json_patch(body(ctx, &["application/json-patch+json"])?)?;
    let v = conditional::one(ctx, t, criteria(ctx))
        .await?
        .ok_or_else(|| FhirError::NotFound(format!("no {t} matches {t}?{}", criteria(ctx))))?;
    patch(ctx, t, v.id).await
}

/// `DELETE /{type}?criteria`: deletes the one match; none is 204; several are 412.
pub(crate) async fn conditional_delete(
    ctx: &Ctx<'_>,
    t: ResourceType,
) -> Result<Response<Body>, FhirError> {
    match conditional::one(ctx, t, criteria(ctx)).await? {
        Some(v) => delete(ctx, t, v.id).await,
        None => Ok(Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(Body::Empty)
            .unwrap_or_default()),
    }
}

/// Parses a JSON Patch document.
pub(crate) fn json_patch(bytes: &[u8]) -> Result<json_patch::Patch, FhirError> {
    serde_json::from_slice(bytes).map_err(|e| {
        FhirError::invalid(format!(
            "the body is not a JSON Patch document (RFC 6902): {e}"
        ))
    })
}

/// `PATCH /{type}/{id}` with a JSON Patch.
pub(crate) async fn patch(
    ctx: &Ctx<'_>,
    t: ResourceType,
    id: ResourceId,
) -> Result<Response<Body>, FhirError> {
    let patch = json_patch(body(ctx, &["application/json-patch+json"])?)?;
    let op = Op::Patch {
        t,
        id,
        patch,
        if_match: if_match(ctx.req)?,
    };
    let done = one(ops::run(ctx, &mut [op]).await?);
    let v = done.version.expect("a patch writes a version");
    Ok(version_response(
        ctx,
        done.status,
        &v,
        prefer(ctx.req, Return::Representation),
        false,
    ))
}

/// `DELETE /{type}/{id}`: a new version marked deleted; history is kept. Deleting what is
/// deleted changes nothing.
pub(crate) async fn delete(
    ctx: &Ctx<'_>,
    t: ResourceType,
    id: ResourceId,
) -> Result<Response<Body>, FhirError> {
    let op = Op::Delete {
        t,
        id,
        if_match: if_match(ctx.req)?,
    };
    let done = one(ops::run(ctx, &mut [op]).await?);
    let v = done.version.expect("a delete names a version");
    Ok(version_response(
        ctx,
        StatusCode::OK,
        &v,
        prefer(ctx.req, Return::Minimal),
        false,
    ))
}

/// A read's answer: 304 when `If-None-Match` or `If-Modified-Since` says the client has it.
async fn read_response(ctx: &Ctx<'_>, v: Version) -> Result<Response<Body>, FhirError> {
    let not_modified = header(ctx.req, "if-none-match").is_some_and(|m| {
        m.split(',')
            .any(|e| e.trim() == "*" || parse_etag(e) == Some(v.vid))
    }) || header(ctx.req, "if-modified-since")
        .and_then(timestamp::parse_http_date)
        .is_some_and(|since| {
            // HTTP dates have whole seconds.
            v.last_updated.get(..19) <= since.get(..19)
        });
    let location = version_url(&ctx.base, &v);
    let mut resp = if v.rtype.as_str() == "Binary" && !not_modified {
        crate::binary::read(ctx, v).await?
    } else {
        version_response(ctx, StatusCode::OK, &v, Return::Representation, false)
    };
    if not_modified {
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        *resp.body_mut() = Body::Empty;
        resp.headers_mut().remove(header::CONTENT_TYPE);
    }
    resp.headers_mut().insert(
        header::CONTENT_LOCATION,
        HeaderValue::from_str(&location).unwrap_or(HeaderValue::from_static("")),
    );
    Ok(resp)
}

/// Version `vid` of a resource, or its current one: 404 when there is none, 410 when it is a
/// deletion.
pub(crate) async fn fetch(
    ctx: &Ctx<'_>,
    t: ResourceType,
    id: &ResourceId,
    vid: Option<VersionId>,
) -> Result<Version, FhirError> {
    let store = ctx.store();
    let v = match vid {
        None => store.read(t, id).await?,
        Some(n) => store.vread(t, id, n).await?,
    };
    match v {
        None if vid.is_some() => Err(FhirError::NotFound(format!(
            "{t}/{id} has no version {}",
            vid.unwrap_or_default()
        ))),
        None => Err(ops::not_found(t, id)),
        Some(v) if v.deleted => Err(ops::gone(&v)),
        Some(v) => Ok(v),
    }
}

/// `GET /{type}/{id}` and `GET /{type}/{id}/_history/{vid}`.
pub(crate) async fn read(
    ctx: &Ctx<'_>,
    t: ResourceType,
    id: &ResourceId,
    vid: Option<VersionId>,
) -> Result<Response<Body>, FhirError> {
    let v = fetch(ctx, t, id, vid).await?;
    read_response(ctx, v).await
}
