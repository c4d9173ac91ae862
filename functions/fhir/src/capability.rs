//! `GET /metadata`: the CapabilityStatement, listing exactly what this server does.
//!
//! The statement is the route every cold start is measured by, so it is written as text
//! straight from constants (146 resource entries), never built as a JSON value tree.

use fhir_core::{FHIR_JSON, ResourceType};
use lambda_http::http::{StatusCode, header};
use lambda_http::{Body, Response};
use serde_json::Value;

/// What every resource type supports, after its `"type"`.
const RESOURCE_REST: &str = concat!(
    r#""interaction":[{"code":"read"},{"code":"vread"},{"code":"update"},{"code":"patch"},"#,
    r#"{"code":"delete"},{"code":"history-instance"},{"code":"history-type"},{"code":"create"}],"#,
    r#""versioning":"versioned-update","readHistory":true,"updateCreate":true,"#,
    r#""conditionalCreate":false,"conditionalRead":"full-support","conditionalUpdate":false,"#,
    r#""conditionalDelete":"not-supported""#,
);

/// Before the base URL.
const HEAD: &str = concat!(
    r#"{"resourceType":"CapabilityStatement","status":"active","date":"2026-11-30","#,
    r#""kind":"instance","software":{"name":"fhir","version":""#,
    env!("CARGO_PKG_VERSION"),
    r#""},"implementation":{"description":"Multi-tenant FHIR R4 on AWS Lambda and DynamoDB","url":"#,
);

/// Between the base URL and the resource entries.
const REST: &str = concat!(
    r#"},"fhirVersion":"4.0.1","format":["json"],"patchFormat":["application/json-patch+json"],"#,
    r#""rest":[{"mode":"server","security":{"cors":true,"service":[{"coding":[{"#,
    r#""system":"http://terminology.hl7.org/CodeSystem/restful-security-service","code":"OAuth"}]}],"#,
    r#""description":"Bearer tokens of the deployment's Cognito user pool; the tenant comes from "#,
    r#"the token's tenant claim, an aud entry <base>/tenant/<id>, or the /tenant/<id> URL."},"#,
    r#""resource":["#,
);

/// After the resource entries.
const TAIL: &str =
    r#"],"interaction":[{"code":"transaction"},{"code":"batch"},{"code":"history-system"}]}]}"#;

/// The CapabilityStatement of this deployment at `base`.
pub(crate) fn statement(base: &str) -> Response<Body> {
    let mut s = String::with_capacity(48 * 1024);
    s.push_str(HEAD);
    s.push_str(&Value::String(base.to_owned()).to_string());
    s.push_str(REST);
    for (i, t) in ResourceType::all().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(r#"{"type":""#);
        s.push_str(t.as_str());
        s.push_str(r#"","#);
        s.push_str(RESOURCE_REST);
        s.push('}');
    }
    s.push_str(TAIL);
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, FHIR_JSON)
        .body(Body::Text(s))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_statement_is_valid_json_and_names_the_callers_base() {
        let resp = statement("https://x.example/fhir/tenant/a\"b");
        let Body::Text(t) = resp.body() else {
            panic!("text")
        };
        let v: Value = serde_json::from_str(t).unwrap();
        assert_eq!(v["resourceType"], "CapabilityStatement");
        assert_eq!(v["fhirVersion"], "4.0.1");
        assert_eq!(
            v["implementation"]["url"],
            "https://x.example/fhir/tenant/a\"b"
        );
        let resources = v["rest"][0]["resource"].as_array().unwrap();
        assert_eq!(resources.len(), 146);
        assert_eq!(resources[0]["type"], "Account");
        assert_eq!(resources[0]["interaction"].as_array().unwrap().len(), 8);
        assert_eq!(resources[0]["conditionalDelete"], "not-supported");
        assert_eq!(v["rest"][0]["interaction"][0]["code"], "transaction");
    }
}
