//! The write interactions as operations on the store. A single create, update, patch or delete
//! is a transaction of one operation; batch entries are one each; a transaction Bundle is all
//! of its operations at once. All of them commit through [`fhir_core::Store::commit`].

use fhir_core::{
    Change, FhirError, Head, Resource, ResourceId, ResourceType, Store, StoreError, Version,
    VersionId, Write, etag,
};
use lambda_http::http::StatusCode;
use serde_json::Value;
use storage::retry_on_conflict;

use crate::{Ctx, binary};

/// One write.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    /// Create with a server-assigned id; `blob`: content already written beside it (a
    /// Binary's data).
    Create {
        t: ResourceType,
        id: ResourceId,
        resource: Resource,
        blob: Option<String>,
    },
    /// Update (or create with the client's id).
    Update {
        t: ResourceType,
        id: ResourceId,
        resource: Resource,
        if_match: Option<VersionId>,
        blob: Option<String>,
    },
    /// JSON Patch of the current version.
    Patch {
        t: ResourceType,
        id: ResourceId,
        patch: json_patch::Patch,
        if_match: Option<VersionId>,
    },
    Delete {
        t: ResourceType,
        id: ResourceId,
        if_match: Option<VersionId>,
    },
}

impl Op {
    /// The content this operation wrote beside the resource, if any.
    pub fn blob(&self) -> Option<String> {
        match self {
            Op::Create { blob, .. } | Op::Update { blob, .. } => blob.clone(),
            _ => None,
        }
    }

    /// The resource to be written and where its content goes, for creates and updates.
    pub fn content(
        &mut self,
    ) -> Option<(
        ResourceType,
        &ResourceId,
        &mut Resource,
        &mut Option<String>,
    )> {
        match self {
            Op::Create {
                t,
                id,
                resource,
                blob,
            }
            | Op::Update {
                t,
                id,
                resource,
                blob,
                ..
            } => Some((*t, &*id, resource, blob)),
            _ => None,
        }
    }

    pub fn target(&self) -> (ResourceType, ResourceId) {
        match self {
            Op::Create { t, id, .. }
            | Op::Update { t, id, .. }
            | Op::Patch { t, id, .. }
            | Op::Delete { t, id, .. } => (*t, id.clone()),
        }
    }
}

/// What an operation did.
#[derive(Debug, Clone)]
pub(crate) struct Done {
    /// 201 (created), 200 (updated, patched, deleted) or 204 (deleting what was deleted).
    pub status: StatusCode,
    /// The version written (for a delete of a deleted resource, the current deletion).
    pub version: Option<Version>,
}

/// Maps what the store says to the API's errors.
pub(crate) fn store_error(e: StoreError) -> FhirError {
    match e {
        StoreError::Conflict => FhirError::Conflict(
            "the resource was changed by a concurrent request; read it again and retry".into(),
        ),
        StoreError::Busy(what) => FhirError::Conflict(format!(
            "{what} is held by a transaction in progress; retry shortly"
        )),
        StoreError::TooLarge(m) => FhirError::PayloadTooLarge(m),
        StoreError::Storage(e) => e.into(),
    }
}

fn check_if_match(head: &Head, if_match: Option<VersionId>) -> Result<(), FhirError> {
    match if_match {
        Some(want) if head.current.is_none() || head.vid() != want => {
            Err(FhirError::PreconditionFailed(match &head.current {
                Some(cur) => format!(
                    "If-Match {} does not match the current version {} of {}/{}",
                    etag(want),
                    etag(cur.vid),
                    head.rtype,
                    head.id
                ),
                None => format!(
                    "If-Match {} names a version of {}/{}, which does not exist",
                    etag(want),
                    head.rtype,
                    head.id
                ),
            }))
        }
        _ => Ok(()),
    }
}

/// A resource that does not exist (or belongs to another tenant): 404.
pub(crate) fn not_found(t: ResourceType, id: &ResourceId) -> FhirError {
    FhirError::NotFound(format!("{t}/{id} is not known"))
}

/// A deleted resource: 410.
pub(crate) fn gone(v: &Version) -> FhirError {
    FhirError::Gone(format!(
        "{}/{} was deleted (version {})",
        v.rtype, v.id, v.vid
    ))
}

/// The current content of a live resource, or 404/410.
fn live(head: &Head) -> Result<&Version, FhirError> {
    match &head.current {
        None => Err(not_found(head.rtype, &head.id)),
        Some(v) if v.deleted => Err(gone(v)),
        Some(v) => Ok(v),
    }
}

/// Applies a JSON Patch to the current version; the result must keep its type and id.
fn patched(head: &Head, patch: &json_patch::Patch) -> Result<Resource, FhirError> {
    let cur = live(head)?;
    let mut doc: Value = cur.resource().ok_or_else(|| {
        FhirError::Internal(format!("{}/{} has an unreadable body", head.rtype, head.id))
    })?;
    json_patch::patch(&mut doc, patch)
        .map_err(|e| FhirError::Unprocessable(format!("the JSON Patch does not apply: {e}")))?;
    if doc.get("resourceType").and_then(Value::as_str) != Some(head.rtype.as_str())
        || doc.get("id").and_then(Value::as_str) != Some(head.id.as_str())
    {
        return Err(FhirError::Unprocessable(
            "a JSON Patch may not change or remove resourceType or id".into(),
        ));
    }
    Resource::from_value(&doc)
}

/// Runs `ops` as one transaction: all commit or none does. A write that loses to a
/// concurrent one is recomputed on the new state (so `If-Match` then fails with 412). A Binary's
/// content is moved to the bucket first, and removed again when the write fails.
pub(crate) async fn run(ctx: &Ctx<'_>, ops: &mut [Op]) -> Result<Vec<Done>, FhirError> {
    for op in ops.iter_mut() {
        if let Some((t, id, resource, blob)) = op.content() {
            let id = id.clone();
            match binary::externalize(ctx, t, &id, resource).await {
                Ok(key) => *blob = key,
                Err(e) => {
                    binary::discard(ctx, ops.iter().map(Op::blob)).await;
                    return Err(e);
                }
            }
        }
    }
    let result = commit(&ctx.store(), ops).await;
    if result.is_err() {
        binary::discard(ctx, ops.iter().map(Op::blob)).await;
    }
    result
}

async fn commit(store: &Store<'_>, ops: &[Op]) -> Result<Vec<Done>, FhirError> {
    retry_on_conflict(
        || {
            FhirError::Conflict(
                "too many concurrent writes to the same resources; retry shortly".into(),
            )
        },
        || attempt(store, ops),
    )
    .await
}

async fn attempt(store: &Store<'_>, ops: &[Op]) -> Result<Option<Vec<Done>>, FhirError> {
    let targets: Vec<_> = ops.iter().map(Op::target).collect();
    let heads = store.heads(&targets).await.map_err(store_error)?;
    let mut writes = Vec::with_capacity(ops.len());
    // Per op: Ok(index into writes) or the result without a write.
    let mut plan: Vec<Result<(usize, StatusCode), Done>> = Vec::with_capacity(ops.len());
    for (op, head) in ops.iter().zip(heads) {
        let (status, change) = match op {
            Op::Create {
                t,
                id,
                resource,
                blob,
            } => {
                if head.current.is_some() {
                    return Err(FhirError::Conflict(format!("{t}/{id} exists already")));
                }
                (
                    StatusCode::CREATED,
                    Change::Put {
                        resource: resource.clone(),
                        method: "POST",
                        blob: blob.clone(),
                    },
                )
            }
            Op::Update {
                resource,
                if_match,
                blob,
                ..
            } => {
                check_if_match(&head, *if_match)?;
                let status = if head.live().is_some() {
                    StatusCode::OK
                } else {
                    StatusCode::CREATED
                };
                (
                    status,
                    Change::Put {
                        resource: resource.clone(),
                        method: "PUT",
                        blob: blob.clone(),
                    },
                )
            }
            Op::Patch {
                t, patch, if_match, ..
            } => {
                if t.as_str() == "Binary" {
                    return Err(FhirError::Unprocessable(
                        "a Binary cannot be patched; PUT a new version with its data".into(),
                    ));
                }
                live(&head)?;
                check_if_match(&head, *if_match)?;
                (
                    StatusCode::OK,
                    Change::Put {
                        resource: patched(&head, patch)?,
                        method: "PATCH",
                        blob: None,
                    },
                )
            }
            Op::Delete { t, id, if_match } => {
                check_if_match(&head, *if_match)?;
                match &head.current {
                    None => return Err(not_found(*t, id)),
                    Some(v) if v.deleted => {
                        plan.push(Err(Done {
                            status: StatusCode::NO_CONTENT,
                            version: Some(v.clone()),
                        }));
                        continue;
                    }
                    Some(_) => (StatusCode::OK, Change::Delete),
                }
            }
        };
        plan.push(Ok((writes.len(), status)));
        writes.push(Write { head, change });
    }
    let versions = match store.commit(writes).await {
        Ok(v) => v,
        Err(StoreError::Conflict) => return Ok(None),
        Err(e) => return Err(store_error(e)),
    };
    Ok(Some(
        plan.into_iter()
            .map(|p| match p {
                Ok((i, status)) => Done {
                    status,
                    version: Some(versions[i].clone()),
                },
                Err(done) => done,
            })
            .collect(),
    ))
}
