//! What both FHIR functions read from a request the same way: headers, the formats a client
//! accepts, the caller's base URL, and the path's type, id and tenant.

use lambda_http::Request;
use platform_http::Params;
use tenant_context::TenantConfig;

use crate::error::FhirError;
use crate::search::query::url_pairs;
use crate::types::{ResourceId, ResourceType};

/// A request header as text.
pub fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Refuses a request for a format this server does not write (XML): `_format` or an `Accept`
/// header that names no JSON type and no wildcard (406). `binary`: a Binary read, whose
/// `Accept` may name the Binary's own content type.
pub fn check_accept(req: &Request, binary: bool) -> Result<(), FhirError> {
    let format = req.uri().query().and_then(|q| {
        url_pairs(q)
            .into_iter()
            .find(|(k, _)| k == "_format")
            .map(|(_, v)| v)
    });
    if let Some(f) = format
        && !f.contains("json")
    {
        return Err(FhirError::NotAcceptable(format!(
            "_format '{f}' is not served here; this server writes FHIR JSON only"
        )));
    }
    let Some(accept) = header(req, "accept") else {
        return Ok(());
    };
    if binary {
        return Ok(());
    }
    let ok = accept.split(',').any(|t| {
        let t = t
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        t.contains("json") || t == "*/*" || t == "application/*" || t.is_empty()
    });
    if ok {
        Ok(())
    } else {
        Err(FhirError::NotAcceptable(format!(
            "Accept '{accept}' names no format this server writes; ask for application/fhir+json"
        )))
    }
}

/// The caller's FHIR base URL (every URL the server writes starts with it): `FHIR_BASE_URL`
/// or `https://<api>/fhir`, with `/tenant/<id>` in the tenant form.
pub fn base_url(req: &Request, config: &TenantConfig, tenant: Option<&str>) -> String {
    let base = platform_http::fhir_base_url(req, config).unwrap_or_else(|| "/fhir".to_owned());
    let base = base.trim_end_matches('/');
    match tenant {
        Some(t) => format!("{base}/tenant/{t}"),
        None => base.to_owned(),
    }
}

/// The path parameter `name` as a resource type: one R4 does not define is 404.
pub fn path_type(p: &Params<'_, '_>, name: &str) -> Result<ResourceType, FhirError> {
    let s = p.get(name).unwrap_or_default();
    ResourceType::parse(s)
        .ok_or_else(|| FhirError::NotFound(format!("'{s}' is not a resource type FHIR R4 defines")))
}

/// An id, or a 400 saying what an id may be.
pub fn parse_id(s: &str) -> Result<ResourceId, FhirError> {
    ResourceId::parse(s).ok_or_else(|| {
        FhirError::invalid(format!(
            "'{s}' is not a valid resource id: 1 to 64 of A-Z a-z 0-9 - ."
        ))
    })
}

/// The path parameter `id`.
pub fn path_id(p: &Params<'_, '_>) -> Result<ResourceId, FhirError> {
    parse_id(p.get("id").unwrap_or_default())
}

/// The `{tenantId}` of a tenant URL: one that is not a valid tenant id names nothing (404).
pub fn path_tenant(p: &Params<'_, '_>) -> Result<Option<String>, FhirError> {
    let Some(raw) = p.get("tenantId") else {
        return Ok(None);
    };
    let t = platform_http::path_segment(raw)
        .filter(|t| tenant_context::SiteId::parse(t).is_ok())
        .ok_or_else(|| FhirError::NotFound(format!("'{raw}' is not a tenant of this server")))?;
    Ok(Some(t))
}
