//! `GET /metadata`: the CapabilityStatement, listing exactly what this server does.
//!
//! The statement is the same for every caller but for the deployment's base URL, and writing
//! its 146 resource entries (every search parameter, include and revinclude: about 520 KB)
//! took about 2 ms, all of it on a cold start's first call. So the fixed part is checked in
//! as `capability.json`, written from the generated search-parameter table by `fixed_part`
//! in this file's tests; the unit test `the_checked_in_statement_is_what_the_table_implies`
//! fails when the two differ and rewrites the file when run with `UPDATE_CAPABILITY=1`
//! (after `scripts/gen-search-params.py` or a change of the tests' constants). At run time
//! the statement is the file, then `software` and `implementation` (with the base URL).

use lambda_http::http::{StatusCode, header};
use lambda_http::{Body, Response};
use serde_json::Value;

use fhir_core::FHIR_JSON;

/// The fixed part of the statement: a JSON object (`capability.json`).
const FIXED: &str = include_str!("capability.json");

/// After the fixed part's last `}` is dropped: the software, then the base URL and `}}`.
const SOFTWARE: &str = concat!(
    r#","software":{"name":"fhir","version":""#,
    env!("CARGO_PKG_VERSION"),
    r#""},"implementation":{"description":"Multi-tenant FHIR R4 on AWS Lambda and DynamoDB","url":"#,
);

/// The CapabilityStatement of this deployment at `base`.
pub(crate) fn statement(base: &str) -> Response<Body> {
    let fixed = FIXED.trim_end().strip_suffix('}').unwrap_or(FIXED);
    let base = Value::String(base.to_owned()).to_string();
    let mut s = String::with_capacity(fixed.len() + SOFTWARE.len() + base.len() + 2);
    s.push_str(fixed);
    s.push_str(SOFTWARE);
    s.push_str(&base);
    s.push_str("}}");
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, FHIR_JSON)
        .body(Body::Text(s))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use fhir_core::search::registry::{self, ParamType};
    use fhir_core::{R4_TYPES, ResourceType};

    /// What every resource type supports, after its `"type"`.
    const RESOURCE_REST: &str = concat!(
        r#""interaction":[{"code":"read"},{"code":"vread"},{"code":"update"},{"code":"patch"},"#,
        r#"{"code":"delete"},{"code":"history-instance"},{"code":"history-type"},{"code":"create"},"#,
        r#"{"code":"search-type"}],"#,
        r#""versioning":"versioned-update","readHistory":true,"updateCreate":true,"#,
        r#""conditionalCreate":true,"conditionalRead":"full-support","conditionalUpdate":true,"#,
        r#""conditionalDelete":"single","searchParam":["#,
    );

    /// Before the rest entry.
    const HEAD: &str = concat!(
        r#"{"resourceType":"CapabilityStatement","status":"active","date":"2026-11-30","#,
        r#""kind":"instance","#,
    );

    /// Before the resource entries.
    const REST: &str = concat!(
        r#""fhirVersion":"4.0.1","format":["json"],"patchFormat":["application/json-patch+json"],"#,
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

    /// The fixed part: [`HEAD`], [`REST`], the resource entries (146 types with their
    /// interactions, search parameters, includes and revincludes) and [`TAIL`], written from
    /// the generated table in one pass over it.
    pub(super) fn fixed_part() -> String {
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
        s.push_str(HEAD);
        s.push_str(REST);
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
        s.push('\n');
        s
    }

    #[test]
    fn the_checked_in_statement_is_what_the_table_implies() {
        let want = fixed_part();
        if want != FIXED {
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/capability.json");
            if std::env::var_os("UPDATE_CAPABILITY").is_some() {
                std::fs::write(path, &want).unwrap();
            } else {
                panic!(
                    "{path} is stale: run UPDATE_CAPABILITY=1 cargo test -p fhir --lib capability"
                );
            }
        }
    }

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
