//! `GET /metadata`: the CapabilityStatement, listing exactly what this server does.

use fhir_core::ResourceType;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};
use serde_json::{Value, json};

use crate::rest::json as fhir_json;

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

/// The CapabilityStatement of this deployment at `base`.
pub(crate) fn statement(base: &str) -> Response<Body> {
    let body = json!({
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
    });
    fhir_json(StatusCode::OK, &body)
}
