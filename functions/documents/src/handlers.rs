//! The handlers of the document routes. Each runs inside one authorized tenant scope.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use formkiq_api::{ApiError, invalid, json_body, message, ok, page_limit, with_next};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};
use platform_http::query_param;
use serde_json::{Value, json};
use storage::{
    Key, MAX_TRANSACTION_OPS, Page, ScopedBlobs, ScopedTable, StorageError, committed,
    retry_on_conflict,
};

use crate::Ctx;
use crate::model::{
    self, DocState, Document, DocumentId, DocumentInput, Errors, MAX_TAG_VALUES, Tag, TagInput,
    TagValues,
};
use crate::store::{DocStore, document_from, tag_from, tag_value_prefix};

type Result<T> = std::result::Result<T, ApiError>;

use timestamp::now;

fn store<'a>(ctx: &'a Ctx<'_>) -> DocStore<'a> {
    DocStore::new(ScopedTable::new(&*ctx.deps.table, ctx.scope))
}

fn blobs<'a>(ctx: &'a Ctx<'_>) -> ScopedBlobs<'a> {
    ScopedBlobs::new(&*ctx.deps.blobs, ctx.scope)
}

fn not_found(id: &DocumentId) -> ApiError {
    ApiError::NotFound(format!("document '{id}' not found"))
}

/// The key a `next` token continues after, checked against this tenant and query.
fn after(ctx: &Ctx<'_>, query_id: &str) -> Result<Option<Key>> {
    match query_param(ctx.req, "next") {
        None | Some("") => Ok(None),
        Some(t) => Ok(Some(ctx.deps.tokens.open(
            t,
            &ctx.scope.key_prefix(),
            query_id,
        )?)),
    }
}

fn next_token(ctx: &Ctx<'_>, query_id: &str, page: &Page) -> Option<String> {
    page.last_key
        .as_ref()
        .map(|k| ctx.deps.tokens.seal(&ctx.scope.key_prefix(), query_id, k))
}

fn doc_json(ctx: &Ctx<'_>, doc: &Document) -> Value {
    let mut v = serde_json::to_value(doc).unwrap_or(Value::Null);
    v["siteId"] = Value::String(ctx.scope.site().to_string());
    v
}

/// Fails with 400 unless the state fits the per-document limits and one transaction.
fn check_fits(store: &DocStore<'_>, old: Option<&DocState>, new: &DocState) -> Result<()> {
    let count = model::tag_value_count(new.tags.values().map(|t| &t.values));
    if count > MAX_TAG_VALUES {
        return Err(invalid(
            "tags",
            format!("a document holds at most {MAX_TAG_VALUES} tag values ({count} requested)"),
        ));
    }
    if store.ops(old, Some(new)).len() > MAX_TRANSACTION_OPS {
        return Err(ApiError::BadRequest(
            "too many tag changes in one request; split them over several requests".into(),
        ));
    }
    Ok(())
}

fn tag_map(
    tags: Vec<(String, TagValues)>,
    now: &str,
    user: &str,
) -> std::collections::BTreeMap<String, Tag> {
    tags.into_iter()
        .map(|(key, values)| {
            let tag = Tag {
                key: key.clone(),
                values,
                inserted_date: now.to_owned(),
                user_id: user.to_owned(),
            };
            (key, tag)
        })
        .collect()
}

/// Decoded inline content of a create or update request, if any.
fn inline_content(input: &DocumentInput, errs: &mut Errors) -> Option<Vec<u8>> {
    let is_base64 = match &input.is_base64 {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            errs.add("isBase64", "must be true or false");
            false
        }
    };
    match &input.content {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if is_base64 => match BASE64.decode(s.trim()) {
            Ok(b) => Some(b),
            Err(_) => {
                errs.add(
                    "content",
                    "isBase64 is true but content is not valid base64",
                );
                None
            }
        },
        Some(Value::String(s)) => Some(s.clone().into_bytes()),
        Some(_) => {
            errs.add(
                "content",
                "must be a string (text, or base64 with isBase64: true)",
            );
            None
        }
    }
}

fn check_size(ctx: &Ctx<'_>, bytes: &Option<Vec<u8>>) -> Result<()> {
    let max = ctx.deps.limits.max_inline_upload;
    match bytes {
        Some(b) if b.len() > max => Err(ApiError::PayloadTooLarge(format!(
            "inline content is limited to {} MB ({} bytes sent); create the document without content and PUT the bytes to the returned uploadUrl, or use GET /documents/upload",
            max / (1024 * 1024),
            b.len()
        ))),
        _ => Ok(()),
    }
}

fn new_content_key(ctx: &Ctx<'_>, id: &DocumentId) -> String {
    blobs(ctx).key(&format!("documents/{id}/{}", uuid::Uuid::new_v4().simple()))
}

/// Stores a new document: content first (under a fresh key), then the document, its list
/// entry, tags and tag-index entries in one transaction. If the transaction fails the content
/// is removed again, so nothing is left half-written.
async fn insert(
    ctx: &Ctx<'_>,
    id: &DocumentId,
    state: &DocState,
    content: Option<Vec<u8>>,
) -> Result<()> {
    let store = store(ctx);
    check_fits(&store, None, state)?;
    if store.get(id).await?.is_some() {
        return Err(ApiError::Conflict(format!(
            "document '{id}' already exists"
        )));
    }
    let blobs = blobs(ctx);
    let wrote_content = content.is_some();
    if let Some(bytes) = content {
        blobs
            .put(&state.content_key, bytes, &state.doc.content_type)
            .await?;
    }
    match store.write(None, Some(state)).await {
        Ok(()) => Ok(()),
        Err(e) => {
            if wrote_content && let Err(cleanup) = blobs.delete(&state.content_key).await {
                tracing::warn!(error = %cleanup, key = state.content_key, "could not remove content of a failed create");
            }
            Err(match e {
                StorageError::ConditionFailed => {
                    ApiError::Conflict(format!("document '{id}' already exists"))
                }
                e => e.into(),
            })
        }
    }
}

/// A presigned URL to PUT the content of a new document to.
async fn upload_url(ctx: &Ctx<'_>, state: &DocState) -> Result<String> {
    Ok(blobs(ctx)
        .presign_put(
            &state.content_key,
            Some(&state.doc.content_type),
            ctx.deps.limits.url_lifetime,
        )
        .await?)
}

/// The state of a new document created now by the caller.
fn new_state(
    ctx: &Ctx<'_>,
    id: &DocumentId,
    path: Option<String>,
    content_type: String,
    content_length: Option<u64>,
    tags: Vec<(String, TagValues)>,
    metadata: Vec<model::Metadata>,
) -> DocState {
    let now = now();
    let user = ctx.scope.username();
    DocState {
        doc: Document {
            document_id: id.to_string(),
            path: path.unwrap_or_else(|| id.to_string()),
            content_type,
            content_length,
            user_id: user.to_owned(),
            inserted_date: now.clone(),
            last_modified_date: now.clone(),
            metadata,
        },
        version: 1,
        content_key: new_content_key(ctx, id),
        tags: tag_map(tags, &now, user),
    }
}

/// 409 after every attempt of a read-modify-write lost to concurrent writers.
fn busy(id: &DocumentId) -> ApiError {
    ApiError::Conflict(format!(
        "document '{id}' is being changed by other requests; retry"
    ))
}

/// Reads, changes and writes a document, retrying when another request changed it meanwhile.
async fn modify<F>(ctx: &Ctx<'_>, id: &DocumentId, change: F) -> Result<(DocState, DocState)>
where
    F: Fn(&mut DocState) -> Result<()>,
{
    let (store, change) = (&store(ctx), &change);
    retry_on_conflict(
        || busy(id),
        || async move {
            let old = store.load(id).await?.ok_or_else(|| not_found(id))?;
            let mut new = old.clone();
            change(&mut new)?;
            new.version = old.version + 1;
            new.doc.last_modified_date = now();
            check_fits(store, Some(&old), &new)?;
            let written = committed(store.write(Some(&old), Some(&new)).await)?;
            Ok(written.map(|()| (old, new)))
        },
    )
    .await
}

pub(crate) async fn list(ctx: &Ctx<'_>) -> Result<Response<Body>> {
    let page = store(ctx)
        .list(page_limit(ctx.req)?, after(ctx, "list")?)
        .await?;
    let documents = page
        .items
        .iter()
        .map(|i| document_from(i).map(|d| doc_json(ctx, &d)))
        .collect::<std::result::Result<Vec<Value>, _>>()?;
    ok(
        StatusCode::OK,
        &with_next(
            json!({ "documents": documents }),
            next_token(ctx, "list", &page),
        ),
    )
}

pub(crate) async fn create(ctx: &Ctx<'_>) -> Result<Response<Body>> {
    let input: DocumentInput = json_body(ctx.req)?;
    let mut errs = Errors::default();
    let id = match &input.document_id {
        None | Some(Value::Null) => Some(DocumentId::new()),
        Some(Value::String(s)) => DocumentId::parse(s).or_else(|| {
            errs.add("documentId", "must be a UUID");
            None
        }),
        Some(_) => {
            errs.add("documentId", "must be a UUID string");
            None
        }
    };
    let path = model::path(input.path.as_ref(), &mut errs);
    let content_type = model::content_type(input.content_type.as_ref(), &mut errs);
    let bytes = inline_content(&input, &mut errs);
    let tags = model::tags(input.tags.as_ref(), &mut errs);
    let metadata = model::metadata(input.metadata.as_ref(), &mut errs).unwrap_or_default();
    let id = errs.finish(id)?.expect("no error means an id");
    check_size(ctx, &bytes)?;

    let default_type = if bytes.is_some() && input.is_base64 != Some(Value::Bool(true)) {
        "text/plain"
    } else {
        "application/octet-stream"
    };
    let state = new_state(
        ctx,
        &id,
        path,
        content_type.unwrap_or_else(|| default_type.into()),
        bytes.as_ref().map(|b| b.len() as u64),
        tags,
        metadata,
    );
    let has_content = bytes.is_some();
    insert(ctx, &id, &state, bytes).await?;
    let mut body = json!({ "documentId": id.to_string(), "siteId": ctx.scope.site().as_str() });
    if !has_content {
        body["uploadUrl"] = Value::String(upload_url(ctx, &state).await?);
    }
    ok(StatusCode::CREATED, &body)
}

pub(crate) async fn upload(ctx: &Ctx<'_>) -> Result<Response<Body>> {
    let mut errs = Errors::default();
    let path = model::path(
        query_param(ctx.req, "path").map(|p| json!(p)).as_ref(),
        &mut errs,
    );
    let content_type = model::content_type(
        query_param(ctx.req, "contentType")
            .map(|c| json!(c))
            .as_ref(),
        &mut errs,
    );
    errs.finish(())?;
    let id = DocumentId::new();
    let state = new_state(
        ctx,
        &id,
        path,
        content_type.unwrap_or_else(|| "application/octet-stream".into()),
        None,
        Vec::new(),
        Vec::new(),
    );
    insert(ctx, &id, &state, None).await?;
    let url = upload_url(ctx, &state).await?;
    ok(
        StatusCode::OK,
        &json!({ "documentId": id.to_string(), "url": url }),
    )
}

pub(crate) async fn get(ctx: &Ctx<'_>, id: &DocumentId) -> Result<Response<Body>> {
    let (mut doc, content_key) = store(ctx).get(id).await?.ok_or_else(|| not_found(id))?;
    if doc.content_length.is_none()
        && let Some(meta) = blobs(ctx).head(&content_key).await?
    {
        // Uploaded through the presigned URL after the document was created.
        doc.content_length = Some(meta.size);
    }
    ok(StatusCode::OK, &doc_json(ctx, &doc))
}

pub(crate) async fn update(ctx: &Ctx<'_>, id: &DocumentId) -> Result<Response<Body>> {
    let input: DocumentInput = json_body(ctx.req)?;
    let mut errs = Errors::default();
    let path = model::path(input.path.as_ref(), &mut errs);
    let content_type = model::content_type(input.content_type.as_ref(), &mut errs);
    let bytes = inline_content(&input, &mut errs);
    let tags = model::tags(input.tags.as_ref(), &mut errs);
    let metadata = model::metadata(input.metadata.as_ref(), &mut errs);
    errs.finish(())?;
    check_size(ctx, &bytes)?;

    // New content goes to a fresh key first; the old content is removed only after the
    // document points at the new one.
    let blobs = blobs(ctx);
    let new_content = match bytes {
        Some(b) => {
            let current = store(ctx).get(id).await?.ok_or_else(|| not_found(id))?;
            let key = new_content_key(ctx, id);
            let ct = content_type.clone().unwrap_or(current.0.content_type);
            let len = b.len() as u64;
            blobs.put(&key, b, &ct).await?;
            Some((key, len))
        }
        None => None,
    };
    let now = now();
    let user = ctx.scope.username().to_owned();
    let result = modify(ctx, id, |s| {
        if let Some(p) = &path {
            s.doc.path = p.clone();
        }
        if let Some(ct) = &content_type {
            s.doc.content_type = ct.clone();
        }
        if let Some(m) = &metadata {
            s.doc.metadata = m.clone();
        }
        if let Some((key, len)) = &new_content {
            s.content_key = key.clone();
            s.doc.content_length = Some(*len);
        }
        s.tags.extend(tag_map(tags.clone(), &now, &user));
        Ok(())
    })
    .await;
    match result {
        Ok((old, _)) => {
            if new_content.is_some()
                && let Err(e) = blobs.delete(&old.content_key).await
            {
                tracing::warn!(error = %e, key = old.content_key, "could not remove replaced content");
            }
            ok(
                StatusCode::OK,
                &json!({ "documentId": id.to_string(), "siteId": ctx.scope.site().as_str() }),
            )
        }
        Err(e) => {
            if let Some((key, _)) = &new_content
                && let Err(cleanup) = blobs.delete(key).await
            {
                tracing::warn!(error = %cleanup, key, "could not remove content of a failed update");
            }
            Err(e)
        }
    }
}

pub(crate) async fn delete(ctx: &Ctx<'_>, id: &DocumentId) -> Result<Response<Body>> {
    let store = &store(ctx);
    let old = retry_on_conflict(
        || busy(id),
        || async move {
            let old = store.load(id).await?.ok_or_else(|| not_found(id))?;
            Ok(committed(store.write(Some(&old), None).await)?.map(|()| old))
        },
    )
    .await?;
    if let Err(e) = blobs(ctx).delete(&old.content_key).await {
        tracing::warn!(error = %e, key = old.content_key, "could not remove content of a deleted document");
    }
    message(StatusCode::OK, format!("'{id}' object deleted"))
}

pub(crate) async fn content(ctx: &Ctx<'_>, id: &DocumentId) -> Result<Response<Body>> {
    let (doc, key) = store(ctx).get(id).await?.ok_or_else(|| not_found(id))?;
    let blobs = blobs(ctx);
    let meta = blobs.head(&key).await?.ok_or_else(|| {
        ApiError::NotFound(format!(
            "document '{id}' has no content yet; upload it to the document's uploadUrl"
        ))
    })?;
    if model::is_textual(&doc.content_type)
        && meta.size <= ctx.deps.limits.max_inline_content
        && let Some(bytes) = blobs.get(&key).await?
        && let Ok(text) = String::from_utf8(bytes)
    {
        return ok(
            StatusCode::OK,
            &json!({ "content": text, "contentType": doc.content_type, "isBase64": false }),
        );
    }
    let url = blobs
        .presign_get(&key, ctx.deps.limits.url_lifetime)
        .await?;
    ok(
        StatusCode::OK,
        &json!({ "contentUrl": url, "contentType": doc.content_type }),
    )
}

pub(crate) async fn url(ctx: &Ctx<'_>, id: &DocumentId) -> Result<Response<Body>> {
    let lifetime = match query_param(ctx.req, "duration") {
        None | Some("") => ctx.deps.limits.url_lifetime,
        Some(h) => h
            .parse::<u64>()
            .ok()
            .filter(|h| (1..=168).contains(h))
            .map(|h| std::time::Duration::from_secs(h * 3600))
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "duration is a number of hours from 1 to 168, not '{h}'"
                ))
            })?,
    };
    let (_, key) = store(ctx).get(id).await?.ok_or_else(|| not_found(id))?;
    let url = blobs(ctx).presign_get(&key, lifetime).await?;
    ok(
        StatusCode::OK,
        &json!({ "documentId": id.to_string(), "url": url }),
    )
}

pub(crate) async fn list_tags(ctx: &Ctx<'_>, id: &DocumentId) -> Result<Response<Body>> {
    let store = store(ctx);
    let query_id = format!("tags:{id}");
    let (limit, after) = (page_limit(ctx.req)?, after(ctx, &query_id)?);
    if store.get(id).await?.is_none() {
        return Err(not_found(id));
    }
    let page = store.tags(id, limit, after).await?;
    let tags = page
        .items
        .iter()
        .map(|i| tag_from(i).map(|t| t.to_json(&id.to_string())))
        .collect::<std::result::Result<Vec<Value>, _>>()?;
    ok(
        StatusCode::OK,
        &with_next(json!({ "tags": tags }), next_token(ctx, &query_id, &page)),
    )
}

pub(crate) async fn add_tags(ctx: &Ctx<'_>, id: &DocumentId) -> Result<Response<Body>> {
    let body: Value = json_body(ctx.req)?;
    let mut errs = Errors::default();
    let tags = if body.get("tags").is_some() {
        model::tags(body.get("tags"), &mut errs)
    } else {
        match serde_json::from_value::<TagInput>(body) {
            Ok(t) => model::tag(&t, None, &mut errs).into_iter().collect(),
            Err(_) => {
                errs.add(
                    "tags",
                    "send {\"tags\": [{key, value}]} or one {key, value}",
                );
                Vec::new()
            }
        }
    };
    if tags.is_empty() {
        errs.add("tags", "at least one tag is required");
    }
    let tags = errs.finish(tags)?;
    let single = (tags.len() == 1).then(|| tags[0].0.clone());
    let now = now();
    let user = ctx.scope.username().to_owned();
    modify(ctx, id, |s| {
        s.tags.extend(tag_map(tags.clone(), &now, &user));
        Ok(())
    })
    .await?;
    match single {
        Some(k) => message(StatusCode::CREATED, format!("Created Tag '{k}'.")),
        None => message(StatusCode::CREATED, "Created Tags.".into()),
    }
}

pub(crate) async fn get_tag(ctx: &Ctx<'_>, id: &DocumentId, key: &str) -> Result<Response<Body>> {
    let state = store(ctx).load(id).await?.ok_or_else(|| not_found(id))?;
    let tag = state
        .tags
        .get(key)
        .ok_or_else(|| ApiError::NotFound(format!("tag '{key}' not found on document '{id}'")))?;
    ok(StatusCode::OK, &tag.to_json(&id.to_string()))
}

pub(crate) async fn set_tag(ctx: &Ctx<'_>, id: &DocumentId, key: &str) -> Result<Response<Body>> {
    let input: TagInput = json_body(ctx.req)?;
    let mut errs = Errors::default();
    if input.value.as_ref().is_none_or(Value::is_null)
        && input.values.as_ref().is_none_or(Value::is_null)
    {
        errs.add("value", "value or values is required");
    }
    let tag = model::tag(&input, Some(key), &mut errs);
    let (_, values) = errs.finish(tag)?.expect("no error means a tag");
    let user = ctx.scope.username().to_owned();
    modify(ctx, id, |s| {
        let t = s.tags.get_mut(key).ok_or_else(|| {
            ApiError::NotFound(format!("tag '{key}' not found on document '{id}'"))
        })?;
        t.values = values.clone();
        t.user_id = user.clone();
        Ok(())
    })
    .await?;
    message(
        StatusCode::OK,
        format!("Updated tag '{key}' on document '{id}'."),
    )
}

pub(crate) async fn delete_tag(
    ctx: &Ctx<'_>,
    id: &DocumentId,
    key: &str,
) -> Result<Response<Body>> {
    modify(ctx, id, |s| {
        s.tags
            .remove(key)
            .map(|_| ())
            .ok_or_else(|| ApiError::NotFound(format!("tag '{key}' not found on document '{id}'")))
    })
    .await?;
    message(
        StatusCode::OK,
        format!("Removed '{key}' from document '{id}'."),
    )
}

pub(crate) async fn search(ctx: &Ctx<'_>) -> Result<Response<Body>> {
    let body: Value = json_body(ctx.req)?;
    let usage = "search by tag: {\"query\": {\"tag\": {\"key\": \"...\", \"eq\": \"...\"}}} (or \"beginsWith\", or the key alone)";
    let tag = body
        .get("query")
        .and_then(|q| q.get("tag"))
        .ok_or_else(|| ApiError::BadRequest(format!("only tag search is supported; {usage}")))?;
    let mut errs = Errors::default();
    let text = |name: &str, errs: &mut Errors| match tag.get(name) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.chars().any(char::is_control) => Some(s.clone()),
        Some(_) => {
            errs.add(
                &format!("query.tag.{name}"),
                "must be a string without control characters",
            );
            None
        }
    };
    let key = text("key", &mut errs).filter(|k| !k.is_empty());
    if key.is_none() {
        errs.add("query.tag.key", "is required");
    }
    let eq = text("eq", &mut errs);
    let begins = text("beginsWith", &mut errs);
    if eq.is_some() && begins.is_some() {
        errs.add("query.tag", "give eq or beginsWith, not both");
    }
    let key = errs.finish(key)?.expect("no error means a key");
    let (mode, prefix) = match (eq, begins) {
        (Some(v), _) => (format!("eq:{v}"), tag_value_prefix(&v)),
        (_, Some(p)) => (format!("beginsWith:{p}"), p),
        _ => ("any".to_owned(), String::new()),
    };
    let query_id = serde_json::to_string(&json!(["search", key, mode])).unwrap_or_default();
    let page = store(ctx)
        .search(&key, prefix, page_limit(ctx.req)?, after(ctx, &query_id)?)
        .await?;
    let documents = page
        .items
        .iter()
        .map(|item| {
            let mut v = doc_json(ctx, &document_from(item)?);
            v["matchedTag"] = item.get("matchedTag").cloned().unwrap_or(Value::Null);
            Ok(v)
        })
        .collect::<std::result::Result<Vec<Value>, StorageError>>()?;
    ok(
        StatusCode::OK,
        &with_next(
            json!({ "documents": documents }),
            next_token(ctx, &query_id, &page),
        ),
    )
}
