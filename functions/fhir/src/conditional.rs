//! Conditional interactions (FHIR R4 3.1.0.8 "conditional create", 3.1.0.4.3 "conditional
//! update", 3.1.0.7.1 "conditional delete", conditional patch and conditional references in
//! transactions): a search, through the same engine as the search function, decides which
//! resource an interaction acts on.

use fhir_core::search::engine::{Engine, Options};
use fhir_core::search::query::{Search, url_pairs};
use fhir_core::{FhirError, Resource, ResourceId, ResourceType, Version, VersionId};

use crate::Ctx;
use crate::ops::Op;

/// The current resources of type `t` matching `query` (a search query string): at most two,
/// enough to tell none, one and many apart.
async fn matching(ctx: &Ctx<'_>, t: ResourceType, query: &str) -> Result<Vec<Version>, FhirError> {
    let pairs: Vec<(String, String)> = url_pairs(query)
        .into_iter()
        .filter(|(k, _)| !matches!(k.as_str(), "_format" | "_pretty"))
        .collect();
    if pairs.is_empty() {
        return Err(FhirError::invalid(format!(
            "a conditional interaction on {t} needs search criteria ({t}?parameter=value)"
        )));
    }
    if let Some((k, _)) = pairs.iter().find(|(k, _)| {
        matches!(
            k.as_str(),
            "_count"
                | "_sort"
                | "_include"
                | "_revinclude"
                | "_summary"
                | "_elements"
                | "_total"
                | "_page"
        ) || k.starts_with("_include:")
            || k.starts_with("_revinclude:")
    }) {
        return Err(FhirError::invalid(format!(
            "'{k}' is a result parameter; conditional criteria are search parameters only"
        )));
    }
    ctx.scope.require(tenant_context::Permission::Read)?;
    let mut search = Search::parse(Some(t), &pairs, false)?;
    search.count = 2;
    let store = ctx.store();
    let opts = Options::new(ctx.base.clone());
    let out = Engine::new(&store, &opts).run(&search, None).await?;
    Ok(out.matches)
}

/// The one resource `t?query` names: `None` when nothing matches, 412 when several do.
pub(crate) async fn one(
    ctx: &Ctx<'_>,
    t: ResourceType,
    query: &str,
) -> Result<Option<Version>, FhirError> {
    let mut found = matching(ctx, t, query).await?;
    if found.len() > 1 {
        return Err(FhirError::PreconditionFailed(format!(
            "the criteria {t}?{query} match more than one resource"
        )));
    }
    Ok(found.pop())
}

/// The write a conditional update (`PUT Type?criteria`) makes: an update of the one match;
/// with none, an update-as-create with the body's id (409 when a resource has that id but
/// does not match) or a create; 400 when the body's id is not the match's.
pub(crate) async fn update_op(
    ctx: &Ctx<'_>,
    t: ResourceType,
    criteria: &str,
    resource: Resource,
    if_match: Option<VersionId>,
) -> Result<Op, FhirError> {
    let body_id = resource
        .id()?
        .map(|s| fhir_core::http::parse_id(&s))
        .transpose()?;
    Ok(match one(ctx, t, criteria).await? {
        Some(v) => {
            if let Some(id) = body_id.filter(|id| *id != v.id) {
                return Err(FhirError::invalid(format!(
                    "the criteria match {t}/{}, but the body's id is {id}",
                    v.id
                )));
            }
            Op::Update {
                t,
                id: v.id,
                resource,
                if_match,
                blob: None,
            }
        }
        None => match body_id {
            Some(id) => {
                if ctx.store().read(t, &id).await?.is_some_and(|v| !v.deleted) {
                    return Err(FhirError::Conflict(format!(
                        "nothing matches {t}?{criteria}, and {t}/{id} exists without matching it"
                    )));
                }
                Op::Update {
                    t,
                    id,
                    resource,
                    if_match: None,
                    blob: None,
                }
            }
            None => Op::Create {
                t,
                id: ResourceId::generate(),
                resource,
                blob: None,
            },
        },
    })
}

/// The `Type?query` of a conditional URL (relative, or absolute on `base`).
pub(crate) fn split(base: &str, url: &str) -> Option<(ResourceType, String)> {
    let rel = url
        .strip_prefix(base)
        .map(|r| r.trim_start_matches('/'))
        .unwrap_or(url);
    let (t, q) = rel.split_once('?')?;
    Some((ResourceType::parse(t)?, q.to_owned()))
}

/// A search entry of a batch or transaction (`GET Type?criteria`): its searchset Bundle, as
/// the search function answers it (its `next` link works there).
pub(crate) async fn search_entry(
    ctx: &Ctx<'_>,
    t: ResourceType,
    criteria: &str,
) -> Result<serde_json::Value, FhirError> {
    let search = Search::parse(Some(t), &url_pairs(criteria), false)?;
    let text = fhir_core::search::searchset(
        &*ctx.deps.table,
        ctx.scope,
        &ctx.deps.tokens,
        &ctx.base,
        &format!("/{t}"),
        search,
        Options::new("").max_reads,
    )
    .await?;
    let bundle: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| FhirError::Internal(format!("searchset is not JSON: {e}")))?;
    Ok(serde_json::json!({ "resource": bundle, "response": { "status": "200 OK" } }))
}
