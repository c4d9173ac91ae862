//! `POST /` with a batch or transaction Bundle.
//!
//! A batch runs each entry on its own: each succeeds or fails alone. A transaction commits all
//! of its writes at once through the write protocol (any number of entries up to the limit),
//! after rewriting every reference to an entry's `fullUrl` (`urn:uuid:` or not) to the
//! resource's `Type/id`; its reads run after the writes. Entries are processed in the order
//! the specification gives (DELETE, POST, PUT/PATCH, GET); the response lists them in the
//! order of the request.

use std::collections::{HashMap, HashSet};

use base64::Engine;
use fhir_core::{
    FhirError, Resource, ResourceId, ResourceType, Version, VersionId, etag, fhir_response,
};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tenant_context::Permission;

use crate::Ctx;
use crate::ops::{self, Done, Op};
use crate::rest::{self, JSON_TYPES, Return};

#[derive(Deserialize)]
struct BundleIn {
    #[serde(rename = "resourceType")]
    resource_type: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    entry: Vec<EntryIn>,
}

#[derive(Deserialize)]
struct EntryIn {
    #[serde(rename = "fullUrl")]
    full_url: Option<String>,
    resource: Option<Box<RawValue>>,
    request: Option<RequestIn>,
}

#[derive(Deserialize)]
struct RequestIn {
    method: Option<String>,
    url: Option<String>,
    #[serde(rename = "ifMatch")]
    if_match: Option<String>,
    #[serde(rename = "ifNoneExist")]
    if_none_exist: Option<String>,
}

/// What one entry asks for.
enum Action {
    Write(Op),
    Read(ResourceType, ResourceId, Option<VersionId>),
}

impl Action {
    /// Processing order: DELETE, POST, PUT/PATCH, GET.
    fn rank(&self) -> u8 {
        match self {
            Action::Write(Op::Delete { .. }) => 0,
            Action::Write(Op::Create { .. }) => 1,
            Action::Write(_) => 2,
            Action::Read(..) => 3,
        }
    }

    fn permission(&self) -> Permission {
        match self {
            Action::Write(Op::Delete { .. }) => Permission::Delete,
            Action::Write(_) => Permission::Write,
            Action::Read(..) => Permission::Read,
        }
    }
}

/// The `Type/id[/_history/vid]` of an entry's URL (relative, or absolute on our base).
fn parse_url(
    base: &str,
    url: &str,
) -> Result<(ResourceType, Option<ResourceId>, Option<VersionId>), FhirError> {
    let rel = url
        .strip_prefix(base)
        .map(|r| r.trim_start_matches('/'))
        .unwrap_or(url);
    if rel.contains('?') {
        return Err(FhirError::not_supported(format!(
            "'{url}': conditional and search entries are not supported yet"
        )));
    }
    let parts: Vec<&str> = rel.trim_end_matches('/').split('/').collect();
    let t = ResourceType::parse(parts[0]).ok_or_else(|| {
        FhirError::invalid(format!(
            "'{url}' does not start with a resource type FHIR R4 defines"
        ))
    })?;
    match parts.as_slice() {
        [_] => Ok((t, None, None)),
        [_, id] => Ok((t, Some(crate::parse_id(id)?), None)),
        [_, id, "_history", vid] => {
            let vid =
                vid.parse().ok().filter(|v| *v > 0).ok_or_else(|| {
                    FhirError::invalid(format!("'{url}': '{vid}' is not a version"))
                })?;
            Ok((t, Some(crate::parse_id(id)?), Some(vid)))
        }
        _ => Err(FhirError::invalid(format!(
            "'{url}' is not a URL this server can process in a Bundle"
        ))),
    }
}

/// The JSON Patch of a PATCH entry: a Binary of type `application/json-patch+json`.
fn entry_patch(resource: &Resource) -> Result<json_patch::Patch, FhirError> {
    if resource.resource_type()?.as_str() != "Binary"
        || resource
            .get("contentType")
            .and_then(|v| v.as_str().map(str::to_owned))
            .as_deref()
            != Some("application/json-patch+json")
    {
        return Err(FhirError::not_supported(
            "a PATCH entry must carry a Binary of contentType application/json-patch+json (FHIRPath Patch is not supported)",
        ));
    }
    let data = resource
        .get("data")
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.as_bytes())
        .map_err(|_| FhirError::invalid("the PATCH entry's Binary.data is not base64"))?;
    rest::json_patch(&bytes)
}

/// Parses one entry. `fullUrl`s of new resources are recorded in `ids` (`fullUrl` -> `Type/id`).
fn parse_entry(
    base: &str,
    e: &EntryIn,
    ids: &mut HashMap<String, String>,
) -> Result<Action, FhirError> {
    let req = e
        .request
        .as_ref()
        .ok_or_else(|| FhirError::invalid("the entry has no request"))?;
    let method = req.method.as_deref().unwrap_or_default();
    let url = req
        .url
        .as_deref()
        .ok_or_else(|| FhirError::invalid("the entry's request has no url"))?;
    if req.if_none_exist.is_some() {
        return Err(FhirError::not_supported(
            "ifNoneExist (conditional create) is not supported yet",
        ));
    }
    let if_match = req
        .if_match
        .as_deref()
        .map(rest::version_etag)
        .transpose()?;
    let resource = e
        .resource
        .as_ref()
        .map(|r| Resource::parse(r.get().as_bytes()))
        .transpose()?;
    let (t, id, vid) = parse_url(base, url)?;
    let need_resource = || {
        resource
            .clone()
            .ok_or_else(|| FhirError::invalid(format!("{method} {url} needs a resource")))
    };
    let action = match (method, id, vid) {
        ("POST", None, None) => {
            let r = need_resource()?;
            r.expect_type(t)?;
            let id = ResourceId::generate();
            if let Some(fu) = &e.full_url {
                ids.insert(fu.clone(), format!("{t}/{id}"));
            }
            Action::Write(Op::Create {
                t,
                id,
                resource: r,
                blob: None,
            })
        }
        ("PUT", Some(id), None) => {
            let r = need_resource()?;
            r.expect_type(t)?;
            r.expect_id(&id)?;
            if let Some(fu) = &e.full_url {
                ids.insert(fu.clone(), format!("{t}/{id}"));
            }
            Action::Write(Op::Update {
                t,
                id,
                resource: r,
                if_match,
                blob: None,
            })
        }
        ("PATCH", Some(id), None) => Action::Write(Op::Patch {
            t,
            id,
            patch: entry_patch(&need_resource()?)?,
            if_match,
        }),
        ("DELETE", Some(id), None) => Action::Write(Op::Delete { t, id, if_match }),
        ("GET", Some(id), vid) => Action::Read(t, id, vid),
        ("GET", None, None) => {
            return Err(FhirError::not_supported(format!(
                "GET {url}: search entries are not supported yet"
            )));
        }
        _ => {
            return Err(FhirError::invalid(format!(
                "'{method} {url}' is not an interaction a Bundle entry can have here"
            )));
        }
    };
    Ok(action)
}

fn status_line(s: StatusCode) -> String {
    format!(
        "{} {}",
        s.as_u16(),
        s.canonical_reason().unwrap_or_default()
    )
}

/// The response entry of a write or read.
fn response_entry(
    ctx: &Ctx<'_>,
    status: StatusCode,
    v: &Version,
    ret: Return,
    location: bool,
) -> Value {
    let mut r = json!({
        "status": status_line(status),
        "etag": etag(v.vid),
        "lastModified": v.last_updated,
    });
    if location {
        r["location"] = json!(rest::version_url(&ctx.base, v));
    }
    let mut e = json!({ "response": r });
    if !v.deleted {
        e["fullUrl"] = json!(rest::url(&ctx.base, v.rtype, &v.id));
        if ret == Return::Representation
            && let Some(res) = v.resource()
        {
            e["resource"] = res;
        }
    }
    e
}

fn error_entry(e: FhirError) -> Value {
    json!({ "response": { "status": status_line(e.status()), "outcome": e.outcome() } })
}

/// A GET entry: reads always return the resource.
async fn read(
    ctx: &Ctx<'_>,
    t: ResourceType,
    id: &ResourceId,
    vid: Option<VersionId>,
) -> Result<Value, FhirError> {
    let v = rest::fetch(ctx, t, id, vid).await?;
    Ok(response_entry(
        ctx,
        StatusCode::OK,
        &v,
        Return::Representation,
        false,
    ))
}

fn write_entry(ctx: &Ctx<'_>, done: &Done, ret: Return) -> Value {
    let v = done.version.as_ref().expect("a write names a version");
    let status = if v.deleted && done.status == StatusCode::OK {
        StatusCode::NO_CONTENT
    } else {
        done.status
    };
    response_entry(ctx, status, v, ret, !v.deleted)
}

/// `POST /`: a batch or transaction Bundle.
pub(crate) async fn post(ctx: &Ctx<'_>) -> Result<Response<Body>, FhirError> {
    let bytes = rest::body(ctx, JSON_TYPES)?;
    let b: BundleIn = serde_json::from_slice(bytes).map_err(|e| FhirError::Invalid {
        code: "structure",
        msg: format!("the body is not a Bundle: {e}"),
    })?;
    if b.resource_type.as_deref() != Some("Bundle") {
        return Err(FhirError::invalid(
            "POST to the base takes a Bundle of type batch or transaction",
        ));
    }
    let max = ctx.deps.limits.max_bundle_entries;
    if b.entry.len() > max {
        return Err(FhirError::PayloadTooLarge(format!(
            "the Bundle has {} entries; this server takes at most {max} (FhirMaxBundleEntries)",
            b.entry.len()
        )));
    }
    let mut seen = HashSet::new();
    for e in &b.entry {
        if let Some(fu) = &e.full_url
            && !seen.insert(fu.as_str())
        {
            return Err(FhirError::invalid(format!(
                "fullUrl '{fu}' appears in more than one entry"
            )));
        }
    }
    let ret = rest::prefer(ctx.req, Return::Minimal);
    match b.kind.as_deref() {
        Some("transaction") => transaction(ctx, &b.entry, ret).await,
        Some("batch") => batch(ctx, &b.entry, ret).await,
        other => Err(FhirError::invalid(format!(
            "Bundle type {other:?} cannot be posted here; use batch or transaction"
        ))),
    }
}

fn entry_label(i: usize, e: &EntryIn) -> String {
    let r = e.request.as_ref();
    format!(
        "entry {i} ({} {})",
        r.and_then(|r| r.method.as_deref()).unwrap_or("?"),
        r.and_then(|r| r.url.as_deref()).unwrap_or("?")
    )
}

async fn batch(
    ctx: &Ctx<'_>,
    entries: &[EntryIn],
    ret: Return,
) -> Result<Response<Body>, FhirError> {
    let mut out = vec![Value::Null; entries.len()];
    let mut parsed = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        match parse_entry(&ctx.base, e, &mut HashMap::new()) {
            Ok(a) => parsed.push((i, a)),
            Err(err) => out[i] = error_entry(err),
        }
    }
    parsed.sort_by_key(|(i, a)| (a.rank(), *i));
    for (i, action) in parsed {
        let r = async {
            ctx.scope.require(action.permission())?;
            match action {
                Action::Write(op) => {
                    let done = ops::run(ctx, &mut [op]).await?;
                    Ok(write_entry(ctx, &done[0], ret))
                }
                Action::Read(t, id, vid) => read(ctx, t, &id, vid).await,
            }
        }
        .await;
        out[i] = r.unwrap_or_else(error_entry);
    }
    Ok(fhir_response(
        StatusCode::OK,
        &json!({ "resourceType": "Bundle", "type": "batch-response", "entry": out }),
    ))
}

async fn transaction(
    ctx: &Ctx<'_>,
    entries: &[EntryIn],
    ret: Return,
) -> Result<Response<Body>, FhirError> {
    let mut ids = HashMap::new();
    let mut actions = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let a =
            parse_entry(&ctx.base, e, &mut ids).map_err(|err| err.context(&entry_label(i, e)))?;
        ctx.scope.require(a.permission())?;
        actions.push(a);
    }
    // Every urn:uuid reference must name an entry; then every reference to a fullUrl becomes
    // the resource's Type/id.
    for (i, a) in actions.iter_mut().enumerate() {
        if let Action::Write(Op::Create { resource, .. } | Op::Update { resource, .. }) = a {
            let mut unknown = None;
            resource.for_each_reference(|s| {
                if s.starts_with("urn:uuid:") && !ids.contains_key(s) && unknown.is_none() {
                    unknown = Some(s.to_owned());
                }
            });
            if let Some(u) = unknown {
                return Err(FhirError::invalid(format!(
                    "{}: the reference '{u}' names no entry of the Bundle",
                    entry_label(i, &entries[i])
                )));
            }
            resource.replace_references(&ids);
        }
    }
    let mut touched = HashSet::new();
    for (i, a) in actions.iter().enumerate() {
        if let Action::Write(op) = a
            && !touched.insert(op.target())
        {
            let (t, id) = op.target();
            return Err(FhirError::invalid(format!(
                "{}: {t}/{id} is written by more than one entry of the transaction",
                entry_label(i, &entries[i])
            )));
        }
    }
    let mut order: Vec<usize> = (0..actions.len()).collect();
    order.sort_by_key(|i| (actions[*i].rank(), *i));
    let writes: Vec<(usize, Op)> = order
        .iter()
        .filter_map(|i| match &actions[*i] {
            Action::Write(op) => Some((*i, op.clone())),
            Action::Read(..) => None,
        })
        .collect();
    let mut ops_only: Vec<Op> = writes.iter().map(|(_, op)| op.clone()).collect();
    let done = ops::run(ctx, &mut ops_only).await?;
    let mut out = vec![Value::Null; entries.len()];
    for ((i, _), d) in writes.iter().zip(&done) {
        out[*i] = write_entry(ctx, d, ret);
    }
    // Reads run after the writes committed; one that fails is reported in its entry (the
    // writes cannot be undone by a read).
    for i in order {
        if let Action::Read(t, id, vid) = &actions[i] {
            out[i] = read(ctx, *t, id, *vid).await.unwrap_or_else(error_entry);
        }
    }
    Ok(fhir_response(
        StatusCode::OK,
        &json!({ "resourceType": "Bundle", "type": "transaction-response", "entry": out }),
    ))
}
