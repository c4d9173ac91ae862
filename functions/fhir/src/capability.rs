//! `GET /metadata`: the CapabilityStatement, listing exactly what this server does.
//!
//! The statement is the route every cold start is measured by, so it is written as text
//! straight from constants and the generated search-parameter table (146 resource entries
//! with their search parameters), never built as a JSON value tree.

use std::sync::LazyLock;

use fhir_core::search::registry::{self, ParamType};
use fhir_core::{FHIR_JSON, R4_TYPES, ResourceType};
use lambda_http::http::{StatusCode, header};
use lambda_http::{Body, Response};
use serde_json::Value;

/// What every resource type supports, after its `"type"`.
const RESOURCE_REST: &str = concat!(
    r#""interaction":[{"code":"read"},{"code":"vread"},{"code":"update"},{"code":"patch"},"#,
    r#"{"code":"delete"},{"code":"history-instance"},{"code":"history-type"},{"code":"create"},"#,
    r#"{"code":"search-type"}],"#,
    r#""versioning":"versioned-update","readHistory":true,"updateCreate":true,"#,
    r#""conditionalCreate":true,"conditionalRead":"full-support","conditionalUpdate":true,"#,
    r#""conditionalDelete":"single","searchParam":["#,
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
    r#""documentation":"Search modifiers and prefixes, by parameter type: every type :missing; "#,
    r#"string :exact :contains; token :not :text :of-type (code, system|code, |code, system|); "#,
    r#"reference :[type] :identifier, chains up to 8 deep, _has; uri :above :below; number, date "#,
    r#"and quantity the prefixes eq ne gt lt ge le sa eb ap (quantity value|system|code); "#,
    r#"composite values joined by $. _text and _content are full text. Result parameters: "#,
    r#"_count _sort _total _summary _elements _include _revinclude (:iterate, *).","#,
    r#""resource":["#,
);

/// After the resource entries.
const TAIL: &str = concat!(
    r#"],"interaction":[{"code":"transaction"},{"code":"batch"},{"code":"search-system"},"#,
    r#"{"code":"history-system"}],"searchParam":["#,
    r#"{"name":"_id","type":"token"},{"name":"_lastUpdated","type":"date"},"#,
    r#"{"name":"_tag","type":"token"},{"name":"_profile","type":"uri"},"#,
    r#"{"name":"_security","type":"token"},{"name":"_source","type":"uri"},"#,
    r#"{"name":"_type","type":"token","documentation":"the types a system search covers"}],"#,
    r#""compartment":["http://hl7.org/fhir/CompartmentDefinition/patient","#,
    r#""http://hl7.org/fhir/CompartmentDefinition/encounter","#,
    r#""http://hl7.org/fhir/CompartmentDefinition/relatedPerson","#,
    r#""http://hl7.org/fhir/CompartmentDefinition/practitioner","#,
    r#""http://hl7.org/fhir/CompartmentDefinition/device"]}]}"#,
);

/// The resource entries (146 types with their interactions, search parameters, includes and
/// revincludes) and the rest of the statement after them: the same text for every caller,
/// written once per process from the generated table in one pass over it.
static RESOURCES: LazyLock<String> = LazyLock::new(|| {
    // `Source:param` of every reference parameter, per target type.
    let mut rev: Vec<Vec<(ResourceType, &'static str)>> = vec![Vec::new(); R4_TYPES.len()];
    for (src, p) in registry::all() {
        if p.kind == ParamType::Reference {
            for t in p.targets() {
                if let Ok(i) = R4_TYPES.binary_search(&t.as_str()) {
                    rev[i].push((src, p.code()));
                }
            }
        }
    }
    let mut s = String::with_capacity(600 * 1024);
    for (i, t) in ResourceType::all().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(r#"{"type":""#);
        s.push_str(t.as_str());
        s.push_str(r#"","#);
        s.push_str(RESOURCE_REST);
        let mut first = true;
        for p in registry::params(t) {
            if matches!(p.code(), "near" | "_query") {
                continue;
            }
            if !first {
                s.push(',');
            }
            first = false;
            s.push_str(r#"{"name":""#);
            s.push_str(p.code());
            s.push_str(r#"","type":""#);
            s.push_str(p.kind.as_str());
            s.push_str(r#""}"#);
        }
        s.push_str(r#"],"searchInclude":["*""#);
        for p in registry::params(t)
            .iter()
            .filter(|p| p.kind == ParamType::Reference)
        {
            s.push(',');
            s.push('"');
            s.push_str(t.as_str());
            s.push(':');
            s.push_str(p.code());
            s.push('"');
        }
        s.push_str(r#"],"searchRevInclude":["*""#);
        for (src, code) in &rev[i] {
            s.push_str(r#",""#);
            s.push_str(src.as_str());
            s.push(':');
            s.push_str(code);
            s.push('"');
        }
        s.push_str("]}");
    }
    s.push_str(TAIL);
    s
});

/// The CapabilityStatement of this deployment at `base`.
pub(crate) fn statement(base: &str) -> Response<Body> {
    let mut s = String::with_capacity(HEAD.len() + base.len() + REST.len() + RESOURCES.len() + 8);
    s.push_str(HEAD);
    s.push_str(&Value::String(base.to_owned()).to_string());
    s.push_str(REST);
    s.push_str(&RESOURCES);
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
        assert_eq!(resources[0]["interaction"].as_array().unwrap().len(), 9);
        assert_eq!(resources[0]["conditionalDelete"], "single");
        let patient = resources.iter().find(|r| r["type"] == "Patient").unwrap();
        let params = patient["searchParam"].as_array().unwrap();
        let find = |n: &str| params.iter().find(|p| p["name"] == n);
        assert_eq!(find("birthdate").unwrap()["type"], "date");
        assert_eq!(find("_id").unwrap()["type"], "token");
        assert!(
            v["rest"][0]["documentation"]
                .as_str()
                .unwrap()
                .contains(":exact")
        );
        let revs = patient["searchRevInclude"].as_array().unwrap();
        assert!(revs.contains(&Value::from("Observation:patient")));
        assert!(revs.contains(&Value::from("Provenance:target")));
        assert!(
            patient["searchInclude"]
                .as_array()
                .unwrap()
                .contains(&Value::from("Patient:organization"))
        );
        let loc = resources.iter().find(|r| r["type"] == "Location").unwrap();
        assert!(
            !loc["searchParam"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "near")
        );
        println!("statement: {} bytes", t.len());
        assert_eq!(v["rest"][0]["interaction"][0]["code"], "transaction");
    }
}
