//! `GET /metadata`: the CapabilityStatement, listing exactly what this server does.

use std::sync::LazyLock;

use fhir_core::{FHIR_JSON, ResourceType};
use lambda_http::http::{StatusCode, header};
use lambda_http::{Body, Response};
use serde_json::{Value, json};

/// The interactions every resource type supports.
const TYPE_INTERACTIONS: &[&str] = &[
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
];

fn resource(t: ResourceType) -> Value {
    json!({
        "type": t.as_str(),
        "interaction": TYPE_INTERACTIONS.iter().map(|c| json!({ "code": c })).collect::<Vec<_>>(),
        "versioning": "versioned-update",
        "readHistory": true,
        "updateCreate": true,
        "conditionalCreate": false,
        "conditionalRead": "modified-since",
        "conditionalUpdate": false,
        "conditionalDelete": "not-supported",
    })
}

/// Stands for the base URL in the cached statement.
const BASE: &str = "__FHIR_BASE_URL__";

/// The statement, serialized once per process (146 resource entries: about a millisecond to
/// build, and the route every cold start is measured by).
static STATEMENT: LazyLock<String> = LazyLock::new(|| build(BASE).to_string());

/// The CapabilityStatement of this deployment at `base`.
pub(crate) fn statement(base: &str) -> Response<Body> {
    let base = Value::String(base.to_owned()).to_string();
    let body = STATEMENT.replace(&format!("\"{BASE}\""), &base);
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, FHIR_JSON)
        .body(Body::Text(body))
        .unwrap_or_default()
}

fn build(base: &str) -> Value {
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-30",
        "kind": "instance",
        "software": { "name": "fhir", "version": env!("CARGO_PKG_VERSION") },
        "implementation": { "description": "Multi-tenant FHIR R4 on AWS Lambda and DynamoDB", "url": base },
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [{
            "mode": "server",
            "security": {
                "cors": true,
                "service": [{ "coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                    "code": "OAuth"
                }]}],
                "description": "Bearer tokens of the deployment's Cognito user pool; the tenant comes from the token's tenant claim, an aud entry <base>/tenant/<id>, or the /tenant/<id> URL."
            },
            "resource": ResourceType::all().map(resource).collect::<Vec<_>>(),
            "interaction": [
                { "code": "transaction" },
                { "code": "batch" },
                { "code": "history-system" }
            ],
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cached_statement_names_the_callers_base() {
        let resp = statement("https://x.example/fhir/tenant/a\"b");
        let Body::Text(t) = resp.body() else {
            panic!("text")
        };
        let v: Value = serde_json::from_str(t).unwrap();
        assert_eq!(v, build("https://x.example/fhir/tenant/a\"b"));
        assert_eq!(
            v["implementation"]["url"],
            "https://x.example/fhir/tenant/a\"b"
        );
    }
}
