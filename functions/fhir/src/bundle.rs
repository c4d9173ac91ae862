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

use crate::ops::{self, Done, Op};
use crate::rest::{self, JSON_TYPES, Return};
use crate::{Ctx, conditional};

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
    /// `GET Type?criteria`: a search.
    Search(ResourceType, String),
    /// `POST` with `ifNoneExist`: the create unless the criteria match.
    CreateUnless(Op, String),
    /// `PUT`/`PATCH`/`DELETE Type?criteria`.
    Conditional(Cond),
    /// What a conditional entry resolved to without a write: the resource `ifNoneExist`
    /// matched, or nothing for a conditional delete that matched nothing.
    Existing(Version),
    Nothing,
}

/// A conditional PUT, PATCH or DELETE, before its criteria are resolved.
struct Cond {
    method: &'static str,
    t: ResourceType,
    criteria: String,
    resource: Option<Resource>,
    patch: Option<json_patch::Patch>,
    if_match: Option<VersionId>,
}

impl Action {
    /// Processing order: DELETE, POST, PUT/PATCH, GET.
    fn rank(&self) -> u8 {
        match self {
            Action::Write(Op::Delete { .. }) | Action::Nothing => 0,
            Action::Conditional(c) if c.method == "DELETE" => 0,
            Action::Write(Op::Create { .. }) | Action::CreateUnless(..) | Action::Existing(_) => 1,
            Action::Write(_) | Action::Conditional(_) => 2,
            Action::Read(..) | Action::Search(..) => 3,
        }
    }

    fn permission(&self) -> Permission {
        match self {
            Action::Write(Op::Delete { .. }) | Action::Nothing => Permission::Delete,
            Action::Conditional(c) if c.method == "DELETE" => Permission::Delete,
            Action::Write(_) | Action::CreateUnless(..) | Action::Existing(_) => Permission::Write,
            Action::Conditional(_) => Permission::Write,
            Action::Read(..) | Action::Search(..) => Permission::Read,
        }
    }
}

/// Resolves a conditional entry into the write it makes (or none), through a search of the
/// state before the Bundle; records the resource its `fullUrl` then names.
async fn resolve(
    ctx: &Ctx<'_>,
    a: Action,
    full_url: Option<&str>,
    ids: &mut HashMap<String, String>,
) -> Result<Action, FhirError> {
    let resolved = match a {
        Action::CreateUnless(op, criteria) => {
            let (t, _) = op.target();
            match conditional::one(ctx, t, &criteria).await? {
                Some(v) => Action::Existing(v),
                None => Action::Write(op),
            }
        }
        Action::Conditional(c) => {
            let Cond {
                method,
                t,
                criteria,
                resource,
                patch,
                if_match,
            } = c;
            match method {
                "PUT" => {
                    let r = resource.ok_or_else(|| FhirError::invalid("PUT needs a resource"))?;
                    Action::Write(conditional::update_op(ctx, t, &criteria, r, if_match).await?)
                }
                "PATCH" => {
                    let v = conditional::one(ctx, t, &criteria).await?.ok_or_else(|| {
                        FhirError::NotFound(format!("no {t} matches {t}?{criteria}"))
                    })?;
                    Action::Write(Op::Patch {
                        t,
                        id: v.id,
                        patch: patch.ok_or_else(|| FhirError::invalid("PATCH needs a patch"))?,
                        if_match,
                    })
                }
                _ => match conditional::one(ctx, t, &criteria).await? {
                    Some(v) => Action::Write(Op::Delete {
                        t,
                        id: v.id,
                        if_match,
                    }),
                    None => Action::Nothing,
                },
            }
        }
        a => a,
    };
    if let Some(fu) = full_url {
        match &resolved {
            Action::Existing(v) => {
                ids.insert(fu.to_owned(), format!("{}/{}", v.rtype, v.id));
            }
            Action::Write(op @ (Op::Create { .. } | Op::Update { .. })) => {
                let (t, id) = op.target();
                ids.insert(fu.to_owned(), format!("{t}/{id}"));
            }
            _ => {}
        }
    }
    Ok(resolved)
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
    let parts: Vec<&str> = rel.trim_end_matches('/').split('/').collect();
    let t = ResourceType::parse(parts[0]).ok_or_else(|| {
        FhirError::invalid(format!(
            "'{url}' does not start with a resource type FHIR R4 defines"
        ))
    })?;
    match parts.as_slice() {
        [_] => Ok((t, None, None)),
        [_, id] => Ok((t, Some(fhir_core::http::parse_id(id)?), None)),
        [_, id, "_history", vid] => {
            let vid =
                vid.parse().ok().filter(|v| *v > 0).ok_or_else(|| {
                    FhirError::invalid(format!("'{url}': '{vid}' is not a version"))
                })?;
            Ok((t, Some(fhir_core::http::parse_id(id)?), Some(vid)))
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
    let need_resource = || {
        resource
            .clone()
            .ok_or_else(|| FhirError::invalid(format!("{method} {url} needs a resource")))
    };
    if let Some((t, criteria)) = conditional::split(base, url) {
        return Ok(match method {
            "GET" => Action::Search(t, criteria),
            "PUT" | "PATCH" | "DELETE" => {
                let (resource, patch) = match method {
                    "PUT" => {
                        let r = need_resource()?;
                        r.expect_type(t)?;
                        (Some(r), None)
                    }
                    "PATCH" => (None, Some(entry_patch(&need_resource()?)?)),
                    _ => (None, None),
                };
                Action::Conditional(Cond {
                    method: match method {
                        "PUT" => "PUT",
                        "PATCH" => "PATCH",
                        _ => "DELETE",
                    },
                    t,
                    criteria,
                    resource,
                    patch,
                    if_match,
                })
            }
            _ => {
                return Err(FhirError::invalid(format!(
                    "'{method} {url}': criteria go with GET, PUT, PATCH or DELETE"
                )));
            }
        });
    }
    let (t, id, vid) = parse_url(base, url)?;
    let action = match (method, id, vid) {
        ("POST", None, None) => {
            let r = need_resource()?;
            r.expect_type(t)?;
            let id = ResourceId::generate();
            if let Some(fu) = &e.full_url {
                ids.insert(fu.clone(), format!("{t}/{id}"));
            }
            let op = Op::Create {
                t,
                id,
                resource: r,
                blob: None,
            };
            match &req.if_none_exist {
                Some(c) => {
                    let c = c.trim_start_matches('?');
                    let c = c.strip_prefix(&format!("{t}?")).unwrap_or(c);
                    Action::CreateUnless(op, c.to_owned())
                }
                None => Action::Write(op),
            }
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
        ("GET", None, None) => Action::Search(t, String::new()),
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

/// The response entry of an entry that writes nothing: a read, a search, the resource an
/// `ifNoneExist` matched, or a conditional delete that matched nothing.
async fn unwritten_entry(ctx: &Ctx<'_>, a: Action, ret: Return) -> Result<Value, FhirError> {
    match a {
        Action::Read(t, id, vid) => read(ctx, t, &id, vid).await,
        Action::Search(t, criteria) => crate::conditional::search_entry(ctx, t, &criteria).await,
        Action::Existing(v) => Ok(response_entry(ctx, StatusCode::OK, &v, ret, true)),
        Action::Nothing => {
            Ok(json!({ "response": { "status": status_line(StatusCode::NO_CONTENT) } }))
        }
        Action::Write(_) | Action::CreateUnless(..) | Action::Conditional(_) => {
            Err(FhirError::Internal("an entry was left unresolved".into()))
        }
    }
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
            let action = resolve(ctx, action, None, &mut HashMap::new()).await?;
            match action {
                Action::Write(op) => {
                    let done = ops::run(ctx, &mut [op]).await?;
                    Ok(write_entry(ctx, &done[0], ret))
                }
                other => unwritten_entry(ctx, other, ret).await,
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
    // Conditional entries resolve against the state before the transaction.
    let mut resolved = Vec::with_capacity(actions.len());
    for (i, a) in actions.into_iter().enumerate() {
        let fu = entries[i].full_url.as_deref();
        resolved.push(
            resolve(ctx, a, fu, &mut ids)
                .await
                .map_err(|err| err.context(&entry_label(i, &entries[i])))?,
        );
    }
    let mut actions = resolved;
    // Conditional references (`Type?criteria`) name the one resource they match.
    for (i, a) in actions.iter().enumerate() {
        if let Action::Write(Op::Create { resource, .. } | Op::Update { resource, .. }) = a {
            let mut conditional_refs = Vec::new();
            resource.for_each_reference(|s| {
                if s.contains('?') && !ids.contains_key(s) {
                    conditional_refs.push(s.to_owned());
                }
            });
            for r in conditional_refs {
                let label = || entry_label(i, &entries[i]);
                let (t, criteria) = conditional::split(&ctx.base, &r).ok_or_else(|| {
                    FhirError::invalid(format!("{}: '{r}' is not a conditional reference", label()))
                })?;
                let v = conditional::one(ctx, t, &criteria)
                    .await
                    .map_err(|e| e.context(&label()))?
                    .ok_or_else(|| {
                        FhirError::NotFound(format!(
                            "{}: the conditional reference '{r}' matches no resource",
                            label()
                        ))
                    })?;
                ids.insert(r, format!("{t}/{}", v.id));
            }
        }
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
    // The writes move out of `actions` (a resource is never copied: the Bundle's resources
    // can be megabytes).
    let mut written = Vec::new();
    let mut writes = Vec::new();
    for &i in &order {
        if matches!(actions[i], Action::Write(_))
            && let Action::Write(op) = std::mem::replace(&mut actions[i], Action::Nothing)
        {
            written.push(i);
            writes.push(op);
        }
    }
    let done = ops::run(ctx, &mut writes).await?;
    drop(writes);
    let mut out = vec![Value::Null; entries.len()];
    for (i, d) in written.iter().zip(&done) {
        out[*i] = write_entry(ctx, d, ret);
    }
    // Reads run after the writes committed; one that fails is reported in its entry (the
    // writes cannot be undone by a read).
    let mut is_write = vec![false; entries.len()];
    for &i in &written {
        is_write[i] = true;
    }
    for i in order {
        if is_write[i] {
            continue;
        }
        let a = std::mem::replace(&mut actions[i], Action::Nothing);
        out[i] = unwritten_entry(ctx, a, ret)
            .await
            .unwrap_or_else(error_entry);
    }
    Ok(fhir_response(
        StatusCode::OK,
        &json!({ "resourceType": "Bundle", "type": "transaction-response", "entry": out }),
    ))
}
