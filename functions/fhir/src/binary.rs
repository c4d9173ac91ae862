//! Binary: the content (`data`) lives in the bucket under the tenant's prefix, not in the
//! table; a read with the Binary's own content type in `Accept` returns the bytes (or a
//! redirect to a presigned URL when they are large), with FHIR JSON the Binary resource.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use fhir_core::{FHIR_JSON, FhirError, Resource, ResourceId, ResourceType, Version};
use lambda_http::http::{StatusCode, header};
use lambda_http::{Body, Response};
use serde_json::Value;
use storage::ScopedBlobs;

use crate::Ctx;
use crate::rest::{self, Return};

/// Largest content returned in the response itself; larger content is a redirect.
const MAX_INLINE: usize = 1024 * 1024;
/// Lifetime of the presigned URL of a redirect.
const URL_LIFETIME: Duration = Duration::from_secs(300);

fn is_binary(t: ResourceType) -> bool {
    t.as_str() == "Binary"
}

fn blobs<'a>(ctx: &'a Ctx<'_>) -> ScopedBlobs<'a> {
    ScopedBlobs::new(&*ctx.deps.blobs, ctx.scope)
}

/// Moves a Binary's `data` to the bucket (a fresh key per version, written before the commit,
/// so a failed write never overwrites stored content) and returns its key. Other types, and a
/// Binary without data, are left as they are.
pub(crate) async fn externalize(
    ctx: &Ctx<'_>,
    t: ResourceType,
    id: &ResourceId,
    r: &mut Resource,
) -> Result<Option<String>, FhirError> {
    if !is_binary(t) {
        return Ok(None);
    }
    let content_type = match r.get("contentType") {
        Some(Value::String(ct)) if !ct.is_empty() => ct,
        _ => return Err(FhirError::invalid("a Binary needs a contentType")),
    };
    let data = match r.take("data") {
        None => return Ok(None),
        Some(Value::String(d)) => d,
        Some(_) => return Err(FhirError::invalid("Binary.data must be a base64 string")),
    };
    let bytes = STANDARD
        .decode(data.as_bytes())
        .map_err(|_| FhirError::invalid("Binary.data is not valid base64"))?;
    let b = blobs(ctx);
    // A fresh random suffix for every version's content.
    let key = b.key(&format!("fhir/Binary/{id}/{}", ResourceId::generate()));
    b.put(&key, bytes, &content_type).await?;
    Ok(Some(key))
}

/// Removes content written for a write that did not commit (best effort: leftovers are
/// invisible, no version names them).
pub(crate) async fn discard(ctx: &Ctx<'_>, keys: impl IntoIterator<Item = Option<String>>) {
    let b = blobs(ctx);
    for key in keys.into_iter().flatten() {
        if let Err(e) = b.delete(&key).await {
            tracing::warn!(error = %e, "unreferenced Binary content left behind");
        }
    }
}

/// Whether the `Accept` header asks for `content_type` rather than FHIR JSON.
fn wants_native(accept: Option<&str>, content_type: &str) -> bool {
    let Some(accept) = accept else { return false };
    let types: Vec<String> = accept
        .split(',')
        .map(|t| {
            t.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .collect();
    if types
        .iter()
        .any(|t| t == FHIR_JSON || t == "application/json")
    {
        return false;
    }
    let ct = content_type.to_ascii_lowercase();
    let major = ct.split('/').next().unwrap_or_default();
    types
        .iter()
        .any(|t| *t == ct || t.strip_suffix("/*") == Some(major))
}

/// A read of a Binary version: its bytes or a redirect when `Accept` names its content type,
/// else the Binary resource with its `data`.
pub(crate) async fn read(ctx: &Ctx<'_>, v: Version) -> Result<Response<Body>, FhirError> {
    let resource = v
        .resource()
        .ok_or_else(|| FhirError::Internal(format!("Binary/{} has no readable body", v.id)))?;
    let content_type = resource["contentType"]
        .as_str()
        .unwrap_or("application/octet-stream")
        .to_owned();
    let native = wants_native(fhir_core::http::header(ctx.req, "accept"), &content_type);
    let b = blobs(ctx);
    let bytes = match &v.blob {
        Some(key) if native => {
            let meta = b.head(key).await?.ok_or_else(|| {
                FhirError::Internal(format!("the content of Binary/{} is missing", v.id))
            })?;
            if meta.size as usize > MAX_INLINE {
                let url = b.presign_get(key, URL_LIFETIME).await?;
                return Ok(Response::builder()
                    .status(StatusCode::FOUND)
                    .header(header::LOCATION, url)
                    .header(header::ETAG, fhir_core::etag(v.vid))
                    .body(Body::Empty)
                    .unwrap_or_default());
            }
            b.get(key).await?.unwrap_or_default()
        }
        Some(key) => b.get(key).await?.unwrap_or_default(),
        None => Vec::new(),
    };
    if native {
        let mut resp = rest::version_response(ctx, StatusCode::OK, &v, Return::Minimal, false);
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            content_type
                .parse()
                .unwrap_or(header::HeaderValue::from_static("application/octet-stream")),
        );
        *resp.body_mut() = Body::Binary(bytes);
        return Ok(resp);
    }
    let v = with_bytes(v, resource, &bytes);
    Ok(rest::version_response(
        ctx,
        StatusCode::OK,
        &v,
        Return::Representation,
        false,
    ))
}

fn with_bytes(v: Version, mut resource: Value, bytes: &[u8]) -> Version {
    if v.blob.is_some() {
        resource["data"] = Value::String(STANDARD.encode(bytes));
    }
    Version {
        body: Some(resource.to_string().into_bytes()),
        ..v
    }
}

/// A version as the client sent it: a Binary with its `data` back in the resource.
pub(crate) async fn with_data(ctx: &Ctx<'_>, v: Version) -> Result<Version, FhirError> {
    let (Some(key), Some(resource)) = (v.blob.clone(), v.resource()) else {
        return Ok(v);
    };
    let bytes = blobs(ctx).get(&key).await?.unwrap_or_default();
    Ok(with_bytes(v, resource, &bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_chooses_the_content_or_the_resource() {
        assert!(!wants_native(None, "image/png"));
        assert!(!wants_native(Some("application/fhir+json"), "image/png"));
        assert!(!wants_native(Some("*/*"), "image/png"));
        assert!(wants_native(Some("image/png"), "image/png"));
        assert!(wants_native(Some("image/*;q=0.8"), "image/png"));
        assert!(!wants_native(Some("text/plain"), "image/png"));
        assert!(!wants_native(
            Some("image/png, application/fhir+json"),
            "image/png"
        ));
    }
}
