//! A resource as raw JSON: its top-level elements kept as the client's text (numbers such as
//! `1.50` stay `1.50`), with only `resourceType`, `id` and `meta` handled as values. The Lambda
//! path never builds a typed model of the R4 types (binary size, cold start).

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::error::FhirError;
use crate::types::{ResourceId, ResourceType, VersionId};

/// A FHIR resource: a JSON object whose top-level elements are kept as raw JSON text.
#[derive(Debug, Clone)]
pub struct Resource {
    fields: Vec<(String, Box<RawValue>)>,
}

struct Fields(Vec<(String, Box<RawValue>)>);

impl<'de> serde::Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Fields;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Fields, A::Error> {
                let mut fields: Vec<(String, Box<RawValue>)> = Vec::new();
                while let Some(k) = m.next_key::<String>()? {
                    if fields.iter().any(|(e, _)| *e == k) {
                        return Err(de::Error::custom(format!("duplicate element '{k}'")));
                    }
                    fields.push((k, m.next_value()?));
                }
                Ok(Fields(fields))
            }
        }
        d.deserialize_map(V)
    }
}

impl Resource {
    /// Parses a resource body: a JSON object with a `resourceType` R4 defines.
    pub fn parse(bytes: &[u8]) -> Result<Resource, FhirError> {
        let Fields(fields) = serde_json::from_slice(bytes).map_err(|e| FhirError::Invalid {
            code: "structure",
            msg: format!("the body is not a JSON object: {e}"),
        })?;
        let r = Resource { fields };
        r.resource_type()?;
        Ok(r)
    }

    /// Builds a resource from a JSON value (a Bundle entry's resource, a patched resource).
    pub fn from_value(v: &Value) -> Result<Resource, FhirError> {
        Resource::parse(&serde_json::to_vec(v).unwrap_or_default())
    }

    fn raw(&self, name: &str) -> Option<&RawValue> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_ref())
    }

    /// A top-level element as a value.
    pub fn get(&self, name: &str) -> Option<Value> {
        self.raw(name)
            .and_then(|r| serde_json::from_str(r.get()).ok())
    }

    /// The `resourceType`, which must be one R4 defines.
    pub fn resource_type(&self) -> Result<ResourceType, FhirError> {
        match self.get("resourceType") {
            Some(Value::String(t)) => ResourceType::parse(&t).ok_or_else(|| {
                FhirError::invalid(format!("'{t}' is not a resource type FHIR R4 defines"))
            }),
            Some(_) => Err(FhirError::invalid("resourceType must be a string")),
            None => Err(FhirError::invalid(
                "the body has no resourceType: send a FHIR resource",
            )),
        }
    }

    /// Fails unless the resource is a `t`, the type of the URL it was sent to.
    pub fn expect_type(&self, t: ResourceType) -> Result<(), FhirError> {
        let bt = self.resource_type()?;
        if bt == t {
            Ok(())
        } else {
            Err(FhirError::invalid(format!(
                "the body's resourceType is {bt} but the URL is for {t}"
            )))
        }
    }

    /// Fails unless the resource's `id` is `id`: an update names the resource of its URL.
    pub fn expect_id(&self, id: &ResourceId) -> Result<(), FhirError> {
        match self.id()? {
            Some(b) if b == id.as_str() => Ok(()),
            Some(b) => Err(FhirError::invalid(format!(
                "the body's id '{b}' differs from the id '{id}' in the URL"
            ))),
            None => Err(FhirError::invalid(format!(
                "the body has no id; an update must carry the id of the URL ('{id}')"
            ))),
        }
    }

    /// The `id` element, if any (it must be a string).
    pub fn id(&self) -> Result<Option<String>, FhirError> {
        match self.get("id") {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(FhirError::invalid("id must be a string")),
        }
    }

    fn set(&mut self, name: &str, v: Value) {
        let raw = RawValue::from_string(v.to_string()).expect("a JSON value is valid JSON");
        match self.fields.iter_mut().find(|(k, _)| k == name) {
            Some((_, slot)) => *slot = raw,
            None => self.fields.push((name.to_owned(), raw)),
        }
    }

    /// Removes a top-level element, returning its value.
    pub fn take(&mut self, name: &str) -> Option<Value> {
        let i = self.fields.iter().position(|(k, _)| k == name)?;
        let (_, raw) = self.fields.remove(i);
        serde_json::from_str(raw.get()).ok()
    }

    /// Keeps only the top-level elements `keep` accepts; whether any was left out.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) -> bool {
        let before = self.fields.len();
        self.fields.retain(|(k, _)| keep(k));
        self.fields.len() < before
    }

    /// Adds the coding `system|code` to `meta.tag` unless it is there.
    pub fn add_tag(&mut self, system: &str, code: &str) {
        let mut meta = match self.get("meta") {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        let tags = meta
            .entry("tag")
            .or_insert_with(|| Value::Array(Vec::new()));
        if !tags.is_array() {
            *tags = Value::Array(Vec::new());
        }
        if let Value::Array(tags) = tags
            && !tags
                .iter()
                .any(|t| t["system"] == system && t["code"] == code)
        {
            let mut tag = Map::new();
            tag.insert("system".into(), Value::String(system.to_owned()));
            tag.insert("code".into(), Value::String(code.to_owned()));
            tags.push(Value::Object(tag));
        }
        self.set("meta", Value::Object(meta));
    }

    pub fn set_id(&mut self, id: &ResourceId) {
        self.set("id", Value::String(id.as_str().to_owned()));
    }

    /// Sets `meta.versionId` and `meta.lastUpdated`, keeping the rest of the client's `meta`
    /// (profiles, tags, security labels, source). A client's `versionId` is ignored.
    pub fn set_meta(&mut self, vid: VersionId, last_updated: &str) {
        let mut meta = match self.get("meta") {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        meta.insert("versionId".into(), Value::String(vid.to_string()));
        meta.insert("lastUpdated".into(), Value::String(last_updated.to_owned()));
        self.set("meta", Value::Object(meta));
    }

    /// The JSON text: `resourceType`, `id` and `meta` first, then the other elements in the
    /// order they were sent.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = String::with_capacity(
            self.fields
                .iter()
                .map(|(k, v)| k.len() + v.get().len() + 4)
                .sum::<usize>()
                + 2,
        );
        out.push('{');
        let first = ["resourceType", "id", "meta"];
        let ordered = first
            .iter()
            .filter_map(|n| self.fields.iter().find(|(k, _)| k == n))
            .chain(
                self.fields
                    .iter()
                    .filter(|(k, _)| !first.contains(&k.as_str())),
            );
        for (i, (k, v)) in ordered.enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&Value::String(k.clone()).to_string());
            out.push(':');
            out.push_str(v.get());
        }
        out.push('}');
        out.into_bytes()
    }

    /// The resource as a JSON value.
    pub fn to_value(&self) -> Value {
        serde_json::from_slice(&self.to_bytes()).unwrap_or(Value::Null)
    }

    /// Replaces every `reference` element equal to a key of `map` by its value, anywhere in
    /// the resource (Bundle `fullUrl`s in references become `Type/id`). Other strings, such as
    /// identifier values that happen to look like a `urn:uuid:`, are left alone.
    pub fn replace_references(&mut self, map: &HashMap<String, String>) {
        if map.is_empty() {
            return;
        }
        for (_, v) in self.fields.iter_mut() {
            if let Some(text) = replace_in_json(v.get(), map) {
                *v = RawValue::from_string(text).expect("replacing strings keeps JSON valid");
            }
        }
    }

    /// Every `reference` element of the resource.
    pub fn for_each_reference(&self, mut f: impl FnMut(&str)) {
        for (_, v) in &self.fields {
            each_string(v.get(), &mut |s, key| {
                if key == Some(REFERENCE) {
                    f(s);
                }
                None
            });
        }
    }
}

/// The element of a Reference that holds the literal reference.
const REFERENCE: &str = "reference";

/// Calls `f(string, key)` for every string value of the JSON text `json`, with the name of the
/// object member it is the value of (none for array elements); returns the byte ranges of the
/// literals for which `f` returned `Some`.
fn each_string(
    json: &str,
    f: &mut dyn FnMut(&str, Option<&str>) -> Option<()>,
) -> Vec<(usize, usize)> {
    let bytes = json.as_bytes();
    let mut hits = Vec::new();
    let mut last_key = String::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'"' {
            i += 1;
            continue;
        }
        let start = i;
        i += 1;
        while i < bytes.len() && bytes[i] != b'"' {
            i += if bytes[i] == b'\\' { 2 } else { 1 };
        }
        let end = (i + 1).min(bytes.len());
        i = end;
        let literal = &json[start..end];
        let decoded: String = if literal.contains('\\') {
            serde_json::from_str(literal).unwrap_or_default()
        } else {
            literal[1..literal.len().saturating_sub(1)].to_owned()
        };
        let mut j = end;
        while j < bytes.len() && bytes[j].is_ascii_whitespace() {
            j += 1;
        }
        if bytes.get(j) == Some(&b':') {
            last_key = decoded;
            continue;
        }
        let mut k = start;
        while k > 0 && bytes[k - 1].is_ascii_whitespace() {
            k -= 1;
        }
        let key = (k > 0 && bytes[k - 1] == b':').then_some(last_key.as_str());
        if f(&decoded, key).is_some() {
            hits.push((start, end));
        }
    }
    hits
}

fn replace_in_json(json: &str, map: &HashMap<String, String>) -> Option<String> {
    let mut replacements = Vec::new();
    let hits = each_string(json, &mut |s, key| {
        if key != Some(REFERENCE) {
            return None;
        }
        let to = map.get(s)?;
        replacements.push(to.clone());
        Some(())
    });
    if hits.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(json.len());
    let mut last = 0;
    for ((start, end), to) in hits.into_iter().zip(replacements) {
        out.push_str(&json[last..start]);
        out.push_str(&Value::String(to).to_string());
        last = end;
    }
    out.push_str(&json[last..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_numbers_and_order_and_sets_meta() {
        let mut r = Resource::parse(
            br#"{"valueQuantity":{"value":1.50},"resourceType":"Observation","meta":{"versionId":"9","profile":["p"]},"status":"final"}"#,
        )
        .unwrap();
        assert_eq!(r.resource_type().unwrap().as_str(), "Observation");
        let obs = ResourceType::parse("Observation").unwrap();
        assert!(r.expect_type(obs).is_ok());
        assert_eq!(
            r.expect_type(ResourceType::parse("Patient").unwrap())
                .unwrap_err()
                .status(),
            400
        );
        let o1 = ResourceId::parse("o1").unwrap();
        assert_eq!(r.expect_id(&o1).unwrap_err().status(), 400, "no id yet");
        r.set_id(&o1);
        assert!(r.expect_id(&o1).is_ok());
        assert!(r.expect_id(&ResourceId::parse("o2").unwrap()).is_err());
        r.set_meta(2, "2026-01-01T00:00:00.000Z");
        let text = String::from_utf8(r.to_bytes()).unwrap();
        assert!(
            text.starts_with(r#"{"resourceType":"Observation","id":"o1","meta":{"#),
            "{text}"
        );
        assert!(text.contains(r#""value":1.50"#), "{text}");
        let v = r.to_value();
        assert_eq!(v["meta"]["versionId"], "2");
        assert_eq!(v["meta"]["profile"][0], "p");
    }

    #[test]
    fn refuses_what_is_not_a_resource() {
        for bad in [
            &b"[]"[..],
            b"{",
            b"{\"a\":1}",
            b"{\"resourceType\":\"Foo\"}",
            b"{\"resourceType\":1}",
            b"{\"resourceType\":\"Patient\",\"a\":1,\"a\":2}",
        ] {
            let e = Resource::parse(bad).unwrap_err();
            assert_eq!(e.status(), 400, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn replaces_references_only() {
        let mut r = Resource::parse(
            br#"{"resourceType":"Observation","subject":{"reference" : "urn:uuid:1"},"performer":[{"reference":"urn:uuid:1"}],"x":["urn:uuid:1","a\"b"],"identifier":[{"value":"urn:uuid:1"}],"urn:uuid:1":true}"#,
        )
        .unwrap();
        let mut refs = Vec::new();
        r.for_each_reference(|s| refs.push(s.to_owned()));
        assert_eq!(refs, ["urn:uuid:1", "urn:uuid:1"]);
        let map = HashMap::from([("urn:uuid:1".to_owned(), "Patient/p".to_owned())]);
        r.replace_references(&map);
        let v = r.to_value();
        assert_eq!(v["subject"]["reference"], "Patient/p");
        assert_eq!(v["performer"][0]["reference"], "Patient/p");
        assert_eq!(v["x"][0], "urn:uuid:1");
        assert_eq!(v["x"][1], "a\"b");
        assert_eq!(v["identifier"][0]["value"], "urn:uuid:1");
        assert_eq!(v["urn:uuid:1"], true);
    }
}
