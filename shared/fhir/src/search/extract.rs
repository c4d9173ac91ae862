//! What a search parameter extracts from a resource, and the index entries written for it
//! (`docs/architecture.md`, "FHIR", "Search", "Index values").
//!
//! A parameter's FHIRPath expression selects nodes; each node becomes [`SearchValue`]s by
//! the parameter's type and the node's shape (no typed R4 model: a CodeableConcept is an
//! object with `coding` or `text`, an Identifier one with `value`, ...). The same values feed
//! the index entries written at commit time and the in-memory check of every candidate, so the
//! two cannot disagree.
//!
//! Index values (one partition per resource type and parameter, sorted by value then id):
//!
//! | type | values |
//! |---|---|
//! | string | the normalized text |
//! | token | `<code>` U+001E `<system>` (`_id`: the id) |
//! | reference | `<Type>/<id>`, or the absolute URL / canonical; `:identifier`: U+001D `<value>` U+001E `<system>` |
//! | date | `a<lo>` U+001E `<hi>` (by start) and `b<hi>` U+001E `<lo>` (by end); `_lastUpdated`: the instant |
//! | number | [`Dec::sortable`] |
//! | quantity | `n<number>` (any unit) and `u<system>` U+001E `<code>` U+001E `<number>` |
//! | uri | the URI |
//! | composite | the components' values joined by U+001D |
//!
//! Values longer than [`MAX_INDEXED_CHARS`] are cut; the query side cuts the same way and
//! the in-memory check decides.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, LazyLock, RwLock};

use serde_json::Value;

use super::registry::{self, ParamType, SearchParam};
use super::value::{
    DateRange, Dec, MAX_INDEXED_CHARS, Quantity, Ref, SearchValue, Token, clean, normalize,
    parse_local,
};
use crate::fhirpath::{Expr, Node};
use crate::index::{Extractor, IndexEntry};
use crate::resource::Resource;
use crate::types::{ResourceId, ResourceType};

/// Separates the parts of one index value.
pub const SEP: char = '\u{1e}';
/// Separates a composite's components, and starts `:identifier` values.
pub const COMPONENT_SEP: char = '\u{1d}';

/// The parsed expression of `expr` (parsed once per process; `None` when it does not parse,
/// which the registry's tests rule out).
pub fn expression(expr: &'static str) -> Option<Arc<Expr>> {
    type Cache = HashMap<&'static str, Option<Arc<Expr>>>;
    static CACHE: LazyLock<RwLock<Cache>> = LazyLock::new(Default::default);
    if let Some(e) = CACHE.read().ok().and_then(|c| c.get(expr).cloned()) {
        return e;
    }
    let parsed = Expr::parse(expr).ok().map(Arc::new);
    if let Ok(mut c) = CACHE.write() {
        c.insert(expr, parsed.clone());
    }
    parsed
}

/// The text `_text` (the narrative, tags removed) or `_content` (every string of the
/// resource) searches: full-text parameters checked in memory only, never indexed.
pub fn full_text(code: &str, resource: &Value) -> Option<String> {
    fn strings(v: &Value, out: &mut String) {
        match v {
            Value::String(s) => {
                out.push_str(s);
                out.push(' ');
            }
            Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
            Value::Object(o) => o.values().for_each(|x| strings(x, out)),
            _ => {}
        }
    }
    let mut out = String::new();
    match code {
        "_text" => {
            let div = resource.get("text")?.get("div")?.as_str()?;
            let mut in_tag = false;
            for c in div.chars() {
                match c {
                    '<' => in_tag = true,
                    '>' => {
                        in_tag = false;
                        out.push(' ');
                    }
                    c if !in_tag => out.push(c),
                    _ => {}
                }
            }
        }
        "_content" => strings(resource, &mut out),
        _ => return None,
    }
    Some(out)
}

/// Whether `code` is a full-text parameter ([`full_text`]).
pub fn is_full_text(code: &str) -> bool {
    matches!(code, "_text" | "_content")
}

/// The values `p` extracts from `resource` (a resource of a type `p` applies to).
pub fn param_values(p: &SearchParam, resource: &Value) -> Vec<SearchValue> {
    if let Some(text) = full_text(p.code(), resource) {
        return vec![SearchValue::String(text)];
    }
    if p.expression().is_empty() {
        return Vec::new();
    }
    let Some(expr) = expression(p.expression()) else {
        return Vec::new();
    };
    let nodes = expr.eval(resource);
    if p.kind == ParamType::Composite {
        return composite_values(p, resource, &nodes);
    }
    let mut out = Vec::new();
    for n in &nodes {
        node_values(p.kind, n, &mut out);
    }
    out
}

/// Every combination of the components' values, per focus node.
fn composite_values(p: &SearchParam, resource: &Value, foci: &[Node<'_>]) -> Vec<SearchValue> {
    let mut out = Vec::new();
    for focus in foci {
        let mut combos: Vec<Vec<SearchValue>> = vec![Vec::new()];
        for c in p.components() {
            let Some(expr) = expression(c.expression()) else {
                return Vec::new();
            };
            let mut vals = Vec::new();
            for n in expr.eval_on(resource, focus) {
                node_values(c.kind, &n, &mut vals);
            }
            combos = combos
                .into_iter()
                .flat_map(|prefix| {
                    vals.iter().map(move |v| {
                        let mut next = prefix.clone();
                        next.push(v.clone());
                        next
                    })
                })
                .collect();
        }
        out.extend(combos.into_iter().map(SearchValue::Composite));
    }
    out
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn strings<'a>(v: &'a Value, key: &str) -> Vec<&'a str> {
    match v.get(key) {
        Some(Value::String(s)) => vec![s],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// The codes of a ContactPoint's `system` (not a URI: a ContactPoint token has no system).
const CONTACT_SYSTEMS: &[&str] = &["phone", "fax", "email", "pager", "url", "sms", "other"];

fn coding(c: &Value) -> Option<Token> {
    let t = Token {
        system: str_of(c, "system").map(str::to_owned),
        code: str_of(c, "code").map(str::to_owned),
        display: str_of(c, "display").map(str::to_owned),
        types: Vec::new(),
    };
    (t.code.is_some() || t.system.is_some() || t.display.is_some()).then_some(t)
}

fn codings(cc: &Value) -> impl Iterator<Item = &Value> {
    cc.get("coding")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// Appends the values of one node for a parameter of type `kind`.
pub fn node_values(kind: ParamType, n: &Node<'_>, out: &mut Vec<SearchValue>) {
    let v: &Value = &n.value;
    match kind {
        ParamType::String => match v {
            Value::String(s) => out.push(SearchValue::String(s.clone())),
            Value::Object(_) => {
                // HumanName and Address: every part.
                for key in [
                    "text",
                    "family",
                    "given",
                    "prefix",
                    "suffix",
                    "line",
                    "city",
                    "district",
                    "state",
                    "postalCode",
                    "country",
                ] {
                    for s in strings(v, key) {
                        out.push(SearchValue::String(s.to_owned()));
                    }
                }
            }
            _ => {}
        },
        ParamType::Token => match v {
            Value::Bool(b) => out.push(SearchValue::Token(Token {
                code: Some(b.to_string()),
                ..Token::default()
            })),
            Value::String(s) => out.push(SearchValue::Token(Token {
                code: Some(s.clone()),
                ..Token::default()
            })),
            Value::Number(x) => out.push(SearchValue::Token(Token {
                code: Some(x.to_string()),
                ..Token::default()
            })),
            Value::Object(_)
                if v.get("coding").is_some() || n.type_name == Some("CodeableConcept") =>
            {
                let text = str_of(v, "text");
                for c in codings(v) {
                    if let Some(mut t) = coding(c) {
                        t.display = t.display.or(text.map(str::to_owned));
                        out.push(SearchValue::Token(t));
                    }
                }
                if let Some(text) = text {
                    out.push(SearchValue::Token(Token {
                        display: Some(text.to_owned()),
                        ..Token::default()
                    }));
                }
            }
            Value::Object(_) if v.get("value").is_some() => {
                let value = str_of(v, "value").map(str::to_owned);
                let system = str_of(v, "system");
                let contact = n.type_name == Some("ContactPoint")
                    || system.is_some_and(|s| CONTACT_SYSTEMS.contains(&s))
                        && v.get("assigner").is_none()
                        && v.get("type").is_none();
                if contact {
                    out.push(SearchValue::Token(Token {
                        code: value,
                        ..Token::default()
                    }));
                } else {
                    let ty = v.get("type");
                    out.push(SearchValue::Token(Token {
                        system: system.map(str::to_owned),
                        code: value,
                        display: ty.and_then(|t| str_of(t, "text")).map(str::to_owned),
                        types: ty
                            .map(|t| {
                                codings(t)
                                    .filter_map(|c| {
                                        Some((
                                            str_of(c, "system").map(str::to_owned),
                                            str_of(c, "code")?.to_owned(),
                                        ))
                                    })
                                    .collect()
                            })
                            .unwrap_or_default(),
                    }));
                }
            }
            Value::Object(_) => {
                if let Some(t) = coding(v) {
                    out.push(SearchValue::Token(t));
                }
            }
            _ => {}
        },
        ParamType::Reference => match v {
            Value::String(s) => out.push(SearchValue::Reference(reference_text(s))),
            Value::Object(_) => {
                let mut r = str_of(v, "reference")
                    .map(reference_text)
                    .unwrap_or_default();
                if let Some(id) = v.get("identifier") {
                    r.identifier = identifier(id);
                }
                if r.local.is_some() || r.url.is_some() || r.identifier.is_some() {
                    out.push(SearchValue::Reference(r));
                }
            }
            _ => {}
        },
        ParamType::Date => {
            let range = match v {
                Value::String(s) => DateRange::parse(s),
                Value::Object(_) if v.get("start").is_some() || v.get("end").is_some() => {
                    DateRange::between(
                        str_of(v, "start").and_then(DateRange::parse),
                        str_of(v, "end").and_then(DateRange::parse),
                    )
                }
                Value::Object(_) => {
                    // Timing: its events and the bounds of its repeat.
                    for e in strings(v, "event") {
                        if let Some(r) = DateRange::parse(e) {
                            out.push(SearchValue::Date(r));
                        }
                    }
                    v.get("repeat")
                        .and_then(|r| r.get("boundsPeriod"))
                        .and_then(|p| {
                            DateRange::between(
                                str_of(p, "start").and_then(DateRange::parse),
                                str_of(p, "end").and_then(DateRange::parse),
                            )
                        })
                }
                _ => None,
            };
            out.extend(range.map(SearchValue::Date));
        }
        ParamType::Number => match v {
            Value::Number(x) => out.extend(Dec::from_json(x).map(SearchValue::Number)),
            Value::String(s) => out.extend(Dec::parse(s).map(SearchValue::Number)),
            _ => {}
        },
        ParamType::Quantity => {
            if v.get("low").is_some() || v.get("high").is_some() {
                // Range: each end as a quantity.
                for end in ["low", "high"] {
                    if let Some(q) = v.get(end).and_then(quantity) {
                        out.push(SearchValue::Quantity(q));
                    }
                }
            } else if let Some(q) = quantity(v) {
                out.push(SearchValue::Quantity(q));
            }
        }
        ParamType::Uri => {
            if let Value::String(s) = v {
                out.push(SearchValue::Uri(s.clone()));
            }
        }
        ParamType::Composite | ParamType::Special => {}
    }
}

fn identifier(v: &Value) -> Option<Token> {
    Some(Token {
        system: str_of(v, "system").map(str::to_owned),
        code: Some(str_of(v, "value")?.to_owned()),
        ..Token::default()
    })
}

fn quantity(v: &Value) -> Option<Quantity> {
    let value = match v.get("value")? {
        Value::Number(x) => Dec::from_json(x)?,
        _ => return None,
    };
    let money = v.get("currency").and_then(Value::as_str);
    Some(Quantity {
        value,
        system: match money {
            Some(_) => Some("urn:iso:std:iso:4217".to_owned()),
            None => str_of(v, "system").map(str::to_owned),
        },
        code: money.or(str_of(v, "code")).map(str::to_owned),
        unit: str_of(v, "unit").map(str::to_owned),
    })
}

/// A reference's text: `Type/id[/_history/n]` on this server, else an absolute URL or a
/// canonical (its `|version` dropped). Contained references (`#id`) point nowhere searchable.
pub fn reference_text(s: &str) -> Ref {
    if let Some(local) = parse_local(s) {
        return Ref {
            local: Some(local),
            ..Ref::default()
        };
    }
    if s.starts_with('#') || s.is_empty() {
        return Ref::default();
    }
    let url = s.split_once('|').map_or(s, |(u, _)| u);
    Ref {
        url: Some(url.to_owned()),
        ..Ref::default()
    }
}

fn cut(s: String) -> String {
    if s.chars().count() > MAX_INDEXED_CHARS {
        s.chars().take(MAX_INDEXED_CHARS).collect()
    } else {
        s
    }
}

/// `<code>` U+001E `<system>`.
pub fn token_key(code: &str, system: Option<&str>) -> String {
    cut(format!(
        "{}{SEP}{}",
        clean(code),
        system.map(clean).unwrap_or_default()
    ))
}

/// A local reference's index value.
pub fn local_key(t: ResourceType, id: &ResourceId) -> String {
    format!("{t}/{id}")
}

/// An identifier's index value (`:identifier`).
pub fn identifier_key(value: &str, system: Option<&str>) -> String {
    cut(format!("{COMPONENT_SEP}{}", token_key(value, system)))
}

/// The quantity index value with its unit.
pub fn unit_key(system: Option<&str>, code: &str, value: Dec) -> String {
    format!(
        "u{}{SEP}{}{SEP}{}",
        system.map(clean).unwrap_or_default(),
        clean(code),
        value.sortable()
    )
}

/// The index values of one value (several for dates and quantities).
pub fn index_values(v: &SearchValue) -> Vec<String> {
    match v {
        SearchValue::String(s) => vec![cut(normalize(s))],
        SearchValue::Token(t) => match &t.code {
            Some(code) => vec![token_key(code, t.system.as_deref())],
            None => Vec::new(),
        },
        SearchValue::Reference(r) => {
            let mut out = Vec::new();
            if let Some((t, id)) = &r.local {
                out.push(local_key(*t, id));
            }
            if let Some(u) = &r.url {
                out.push(cut(clean(u)));
            }
            if let Some(Token {
                code: Some(value),
                system,
                ..
            }) = &r.identifier
            {
                out.push(identifier_key(value, system.as_deref()));
            }
            out
        }
        SearchValue::Date(d) => {
            let (lo, hi) = d.bounds_text();
            vec![format!("a{lo}{SEP}{hi}"), format!("b{hi}{SEP}{lo}")]
        }
        SearchValue::Number(n) => vec![n.sortable()],
        SearchValue::Quantity(q) => {
            let mut out = vec![format!("n{}", q.value.sortable())];
            if let Some(code) = q.code.as_deref().or(q.unit.as_deref()) {
                out.push(unit_key(q.system.as_deref(), code, q.value));
            }
            out
        }
        SearchValue::Uri(u) => vec![cut(clean(u))],
        SearchValue::Composite(parts) => {
            let first: Vec<Vec<String>> = parts.iter().map(composite_part).collect();
            let mut keys = vec![String::new()];
            for (i, options) in first.iter().enumerate() {
                keys = keys
                    .iter()
                    .flat_map(|k| {
                        options.iter().map(move |o| {
                            if i == 0 {
                                o.clone()
                            } else {
                                format!("{k}{COMPONENT_SEP}{o}")
                            }
                        })
                    })
                    .collect();
            }
            keys.into_iter().map(cut).collect()
        }
    }
}

/// A composite component's value in a composite index value: the first of its own values
/// (dates by start).
fn composite_part(v: &SearchValue) -> Vec<String> {
    index_values(v).into_iter().take(1).collect()
}

/// The index entries of every R4 search parameter of `t`: what the write protocol writes for
/// each new version.
#[derive(Debug, Clone, Copy, Default)]
pub struct SearchExtractor;

impl Extractor for SearchExtractor {
    fn entries(
        &self,
        t: ResourceType,
        id: &ResourceId,
        resource: &Resource,
        last_updated: &str,
    ) -> Vec<IndexEntry> {
        let json = resource.to_value();
        let mut out = vec![
            IndexEntry {
                param: "_id".into(),
                value: id.as_str().to_owned(),
                sharded: false,
            },
            IndexEntry {
                param: "_lastUpdated".into(),
                value: last_updated.to_owned(),
                sharded: true,
            },
        ];
        for p in registry::params(t) {
            if matches!(p.code(), "_id" | "_lastUpdated") || is_full_text(p.code()) {
                continue;
            }
            let values: BTreeSet<String> = param_values(p, &json)
                .iter()
                .flat_map(index_values)
                .collect();
            out.extend(values.into_iter().map(|value| IndexEntry {
                param: p.code().to_owned(),
                value,
                sharded: false,
            }));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_r4_expression_parses() {
        let mut n = 0;
        for (t, p) in registry::all() {
            if !p.expression().is_empty() {
                assert!(
                    expression(p.expression()).is_some(),
                    "{t}.{}: {}",
                    p.code(),
                    p.expression()
                );
                n += 1;
            }
            for c in p.components() {
                assert!(
                    expression(c.expression()).is_some(),
                    "{t}.{}.{}",
                    p.code(),
                    c.code()
                );
            }
        }
        assert!(n > 2500, "{n}");
    }

    fn entries(t: &str, r: Value) -> Vec<(String, String)> {
        let t = ResourceType::parse(t).unwrap();
        let id = ResourceId::parse("x1").unwrap();
        let res = Resource::from_value(&r).unwrap();
        SearchExtractor
            .entries(t, &id, &res, "2026-01-01T00:00:00.000Z")
            .into_iter()
            .map(|e| (e.param, e.value))
            .collect()
    }

    #[test]
    fn index_values_per_type() {
        let e = entries(
            "Patient",
            json!({"resourceType": "Patient", "name": [{"family": "Müller", "given": ["Ann"]}],
                   "gender": "female", "birthDate": "1970-03",
                   "identifier": [{"system": "http://x", "value": "123"}],
                   "telecom": [{"system": "email", "value": "a@b.c"}],
                   "generalPractitioner": [{"reference": "Practitioner/p1"}],
                   "deceasedBoolean": false}),
        );
        let has = |p: &str, v: &str| e.iter().any(|(a, b)| a == p && b == v);
        assert!(has("_id", "x1"));
        assert!(has("_lastUpdated", "2026-01-01T00:00:00.000Z"));
        assert!(has("name", "muller") && has("family", "muller") && has("given", "ann"));
        assert!(has("gender", "female\u{1e}"));
        assert!(has(
            "birthdate",
            "a1970-03-01T00:00:00.000Z\u{1e}1970-03-31T23:59:59.999Z"
        ));
        assert!(has(
            "birthdate",
            "b1970-03-31T23:59:59.999Z\u{1e}1970-03-01T00:00:00.000Z"
        ));
        assert!(has("identifier", "123\u{1e}http://x"));
        assert!(has("email", "a@b.c\u{1e}"), "{e:?}");
        assert!(has("general-practitioner", "Practitioner/p1"));
        assert!(has("deceased", "false\u{1e}"), "{e:?}");
        let o = entries(
            "Observation",
            json!({"resourceType": "Observation", "status": "final",
                   "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}], "text": "BP"},
                   "subject": {"reference": "Patient/p1"},
                   "valueQuantity": {"value": 120.5, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}),
        );
        let has = |p: &str, v: &str| o.iter().any(|(a, b)| a == p && b == v);
        let q = Dec::parse("120.5").unwrap().sortable();
        assert!(has("code", "8480-6\u{1e}http://loinc.org"));
        assert!(has("patient", "Patient/p1") && has("subject", "Patient/p1"));
        assert!(has("value-quantity", &format!("n{q}")));
        assert!(has(
            "value-quantity",
            &format!("uhttp://unitsofmeasure.org\u{1e}mm[Hg]\u{1e}{q}")
        ));
        assert!(
            has(
                "code-value-quantity",
                &format!("8480-6\u{1e}http://loinc.org\u{1d}n{q}")
            ),
            "{o:?}"
        );
    }
}
