//! Search results as an R4 `searchset` Bundle (FHIR R4 3.1.1 "Search", 3.1.1.5 "Modifying
//! search results"): the match and include entries, the `self` and `next` links, `total`, an
//! OperationOutcome entry for the parameters a lenient search ignored, and `_summary` /
//! `_elements` applied to the match entries.
//!
//! Pure functions: the search function seals the cursor and builds the link URLs with
//! [`page_url`]; this module only writes what it is given. Resources are written as their stored
//! JSON text (decimals such as `1.50` stay `1.50`); a trimmed resource keeps the text of every
//! top-level element it keeps.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::engine::Outcome;
use super::query::{Search, Summary, url_encode};
use super::registry;
use crate::resource::Resource;
use crate::store::Version;
use crate::types::ResourceType;

/// The system of the R4 `SUBSETTED` tag (`meta.tag`) on a resource returned in part.
pub const SUBSETTED_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue";
/// The code of that tag.
pub const SUBSETTED_CODE: &str = "SUBSETTED";

/// The URL of a page of a search: `<base><path>?<canonical>`, with `&_page=<cursor>` (encoded)
/// when `page` is given. `path` is the search's path after the base (`""` for a system search,
/// `/Patient`, `/Patient/p1/Observation`, `/Patient/p1/*`); `canonical` is
/// [`Search::canonical`], the query without `_page`.
pub fn page_url(base: &str, path: &str, canonical: &str, page: Option<&str>) -> String {
    let mut url = format!("{}{path}", base.trim_end_matches('/'));
    let mut sep = '?';
    if !canonical.is_empty() {
        url.push(sep);
        url.push_str(&unreserved(canonical));
        sep = '&';
    }
    if let Some(p) = page {
        url.push(sep);
        url.push_str("_page=");
        url.push_str(&unreserved(&url_encode(p)));
    }
    url
}

/// `query` with the percent-encoded unreserved characters (`-` `.` `_` `~`) written as
/// themselves, as RFC 3986 (2.3) recommends: `%5Fcount=5` -> `_count=5`. The same URL to every
/// server; easier to read.
fn unreserved(query: &str) -> String {
    let mut out = String::with_capacity(query.len());
    let mut rest = query;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 3).unwrap_or_default();
        match code.to_ascii_uppercase().as_str() {
            "2D" => out.push('-'),
            "2E" => out.push('.'),
            "5F" => out.push('_'),
            "7E" => out.push('~'),
            _ => {
                out.push('%');
                rest = &rest[i + 1..];
                continue;
            }
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    out
}

/// Which top-level elements of a match entry's resource are returned. `resourceType`, `id` and
/// `meta` are always kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Elements {
    /// The whole resource.
    All,
    /// Everything but the narrative (`_summary=data`).
    NoText,
    /// These elements only (`_summary=true`, `_summary=text`, `_elements`). A name also keeps
    /// the typed variants of a choice element (`value` keeps `valueQuantity`) and a primitive's
    /// extension element (`birthDate` keeps `_birthDate`).
    Only(Vec<String>),
}

impl Elements {
    /// Whether the top-level element `key` is kept.
    pub fn keeps(&self, key: &str) -> bool {
        if matches!(key, "resourceType" | "id" | "meta") {
            return true;
        }
        match self {
            Elements::All => true,
            Elements::NoText => key != "text",
            Elements::Only(names) => {
                // `_birthDate` carries the id and extensions of `birthDate`.
                let key = key.strip_prefix('_').unwrap_or(key);
                names.iter().any(|n| named(n, key))
            }
        }
    }
}

/// Whether element `key` is the element `name`, or a typed variant of the choice element
/// `name` (`value` -> `valueQuantity`, `valueString`, ...).
fn named(name: &str, key: &str) -> bool {
    key == name
        || key
            .strip_prefix(name)
            .and_then(|rest| rest.chars().next())
            .is_some_and(|c| c.is_ascii_uppercase())
}

/// What the match entries of a search of `t` keep: from `_summary`, else `_elements`. With
/// both, `_summary` decides (R4 leaves the combination undefined).
pub fn elements(t: ResourceType, search: &Search) -> Elements {
    match search.summary {
        Summary::False | Summary::Count if search.elements.is_empty() => Elements::All,
        Summary::False | Summary::Count => Elements::Only(requested(t, &search.elements)),
        Summary::Data => Elements::NoText,
        Summary::Text => Elements::Only(vec!["text".to_owned()]),
        Summary::True => Elements::Only(summary_elements(t)),
    }
}

/// The top-level element names `_elements` asks for on resources of `t`: `name`, `value[x]`
/// (as `value`), `Patient.name` (for Patients only), `name.given` (as `name`).
fn requested(t: ResourceType, asked: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for e in asked {
        let e = e.trim();
        let e = match e.split_once('.') {
            Some((head, rest)) => match ResourceType::parse(head) {
                Some(ty) if ty == t => rest,
                Some(_) => continue,
                None => e,
            },
            None => e,
        };
        let top = e.split('.').next().unwrap_or_default();
        let top = top.strip_suffix("[x]").unwrap_or(top);
        if !top.is_empty() && !out.iter().any(|o| o == top) {
            out.push(top.to_owned());
        }
    }
    out
}

/// The elements `_summary=true` returns for resources of `t`.
///
/// R4 defines the summary as the elements its StructureDefinitions mark `isSummary`; this
/// server carries no StructureDefinitions, so the summary is approximated from the search
/// parameter table: `implicitRules`, `modifierExtension`, `status` and `identifier`, plus every
/// top-level element that some search parameter of `t` navigates to first (the first path
/// segment after the type in each `|`-part of its expression: `Observation.code` -> `code`,
/// `(Observation.value as Quantity)` -> `value`, which keeps every `value[x]` variant).
/// `resourceType`, `id` and `meta` are always kept; the narrative (`text`) is not.
pub fn summary_elements(t: ResourceType) -> Vec<String> {
    let mut out: Vec<String> = ["implicitRules", "modifierExtension", "status", "identifier"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    for p in registry::params(t) {
        for e in first_elements(p.expression()) {
            if !matches!(e, "id" | "meta" | "text") && !out.iter().any(|o| o == e) {
                out.push(e.to_owned());
            }
        }
    }
    out
}

/// The top-level element each `|`-part of a search parameter expression starts at:
/// `Patient.name.given | Patient.telecom` -> `name`, `telecom`; a part rooted at no type
/// (`name | alias`) names the element itself.
fn first_elements(expression: &str) -> Vec<&str> {
    let ident = |s: &str| -> usize {
        s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(s.len())
    };
    let mut out = Vec::new();
    for part in expression.split('|') {
        let part = part.trim().trim_start_matches('(').trim_start();
        let n = ident(part);
        let (head, rest) = part.split_at(n);
        if head.is_empty() {
            continue;
        }
        let starts_upper = head.starts_with(|c: char| c.is_ascii_uppercase());
        if !starts_upper {
            out.push(head);
            continue;
        }
        // `Type.element...`: the element after the root.
        let Some(rest) = rest.strip_prefix('.') else {
            continue;
        };
        let m = ident(rest);
        if m > 0 {
            out.push(&rest[..m]);
        }
    }
    out
}

/// The resource JSON `body` with only the top-level elements `keep` keeps, tagged `SUBSETTED`
/// (in `meta.tag`) when anything was left out; `None` when `body` is not a JSON object.
/// Elements kept are written as they were stored.
pub fn trim(body: &[u8], keep: &Elements) -> Option<String> {
    let mut r = Resource::parse(body).ok()?;
    if !r.retain(|k| keep.keeps(k)) {
        return String::from_utf8(body.to_vec()).ok();
    }
    r.add_tag(SUBSETTED_SYSTEM, SUBSETTED_CODE);
    String::from_utf8(r.to_bytes()).ok()
}

#[derive(Serialize)]
struct Link<'a> {
    relation: &'static str,
    url: &'a str,
}

#[derive(Serialize)]
struct EntrySearch {
    mode: &'static str,
}

#[derive(Serialize)]
struct Entry {
    #[serde(rename = "fullUrl", skip_serializing_if = "Option::is_none")]
    full_url: Option<String>,
    resource: Box<RawValue>,
    search: EntrySearch,
}

#[derive(Serialize)]
struct Bundle<'a> {
    #[serde(rename = "resourceType")]
    resource_type: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<usize>,
    link: Vec<Link<'a>>,
    /// FHIR JSON has no empty arrays: no matches, no `entry`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    entry: Vec<Entry>,
}

/// The entry of one version, `keep` applied to its resource; `None` for a version without a
/// readable body (a deletion, which a search never returns).
fn entry(base: &str, v: &Version, mode: &'static str, keep: &Elements) -> Option<Entry> {
    let body = v.body.as_deref()?;
    let resource = if *keep == Elements::All {
        serde_json::from_slice::<Box<RawValue>>(body).ok()
    } else {
        trim(body, keep).and_then(|t| RawValue::from_string(t).ok())
    };
    let Some(resource) = resource else {
        tracing::error!(resource = %format!("{}/{}", v.rtype, v.id), "stored body is not JSON");
        return None;
    };
    Some(Entry {
        full_url: Some(format!(
            "{}/{}/{}",
            base.trim_end_matches('/'),
            v.rtype,
            v.id
        )),
        resource,
        search: EntrySearch { mode },
    })
}

/// The OperationOutcome reporting the parameters a lenient search ignored: one warning per
/// parameter.
pub fn ignored_outcome(ignored: &[String]) -> Value {
    let issues: Vec<Value> = ignored
        .iter()
        .map(|m| {
            json!({
                "severity": "warning",
                "code": "not-supported",
                "diagnostics": format!("{m}; ignored (Prefer: handling=lenient)"),
            })
        })
        .collect();
    json!({ "resourceType": "OperationOutcome", "issue": issues })
}

/// Whether the search asks for the count only (`_summary=count`, or `_count=0`).
pub fn count_only(search: &Search) -> bool {
    search.summary == Summary::Count || search.count == 0
}

/// The searchset Bundle as JSON text: `total` when the outcome has one, the `self` link and
/// the `next` link (none when only the count was asked), the match entries (`_summary` and
/// `_elements` applied), the include entries (whole), and an OperationOutcome entry (mode
/// `outcome`) when the search ignored parameters. Resources keep their stored text.
pub fn searchset_text(
    base: &str,
    self_url: &str,
    next_url: Option<&str>,
    out: &Outcome,
    search: &Search,
) -> String {
    let count_only = count_only(search);
    let mut link = vec![Link {
        relation: "self",
        url: self_url,
    }];
    if let Some(next) = next_url.filter(|_| !count_only) {
        link.push(Link {
            relation: "next",
            url: next,
        });
    }
    let mut entries = Vec::new();
    if !count_only {
        let mut keep: HashMap<ResourceType, Elements> = HashMap::new();
        for v in &out.matches {
            let k = keep
                .entry(v.rtype)
                .or_insert_with(|| elements(v.rtype, search));
            entries.extend(entry(base, v, "match", k));
        }
        for v in &out.included {
            entries.extend(entry(base, v, "include", &Elements::All));
        }
    }
    if !search.ignored.is_empty() {
        let oo = ignored_outcome(&search.ignored).to_string();
        if let Ok(resource) = RawValue::from_string(oo) {
            entries.push(Entry {
                full_url: None,
                resource,
                search: EntrySearch { mode: "outcome" },
            });
        }
    }
    let bundle = Bundle {
        resource_type: "Bundle",
        kind: "searchset",
        total: out.total,
        link,
        entry: entries,
    };
    serde_json::to_string(&bundle).unwrap_or_else(|_| "{}".to_owned())
}

/// [`searchset_text`] as a JSON value (numbers as `serde_json` reads them).
pub fn searchset(
    base: &str,
    self_url: &str,
    next_url: Option<&str>,
    out: &Outcome,
    search: &Search,
) -> Value {
    serde_json::from_str(&searchset_text(base, self_url, next_url, out, search))
        .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::query::url_pairs;
    use crate::types::ResourceId;

    fn t(s: &str) -> ResourceType {
        ResourceType::parse(s).unwrap()
    }

    fn search(ty: &str, q: &str) -> Search {
        Search::parse(Some(t(ty)), &url_pairs(q), false).unwrap()
    }

    fn version(body: &str) -> Version {
        let v: Value = serde_json::from_str(body).unwrap();
        Version {
            rtype: t(v["resourceType"].as_str().unwrap()),
            id: ResourceId::parse(v["id"].as_str().unwrap()).unwrap(),
            vid: 1,
            last_updated: "2026-01-01T00:00:00.000Z".into(),
            deleted: false,
            method: "PUT".into(),
            token: "tok".into(),
            body: Some(body.as_bytes().to_vec()),
            blob: None,
        }
    }

    const OBS: &str = r#"{"resourceType":"Observation","id":"o1","meta":{"versionId":"1","lastUpdated":"2026-01-01T00:00:00.000Z"},"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"},"status":"final","code":{"text":"weight"},"subject":{"reference":"Patient/p1"},"valueQuantity":{"value":1.50,"unit":"kg"},"note":[{"text":"n"}],"_status":{"extension":[]}}"#;
    const PAT: &str = r#"{"resourceType":"Patient","id":"p1","meta":{"versionId":"1","lastUpdated":"2026-01-01T00:00:00.000Z"},"name":[{"family":"Doe"}],"photo":[{"title":"x"}]}"#;

    fn subsetted(r: &Value) -> bool {
        r["meta"]["tag"].as_array().is_some_and(|tags| {
            tags.iter()
                .any(|t| t["system"] == SUBSETTED_SYSTEM && t["code"] == SUBSETTED_CODE)
        })
    }

    fn keys(r: &Value) -> Vec<&str> {
        r.as_object().unwrap().keys().map(String::as_str).collect()
    }

    fn outcome(matches: &[&str], included: &[&str], total: Option<usize>) -> Outcome {
        Outcome {
            matches: matches.iter().map(|b| version(b)).collect(),
            included: included.iter().map(|b| version(b)).collect(),
            total,
            ..Outcome::default()
        }
    }

    #[test]
    fn page_urls_repeat_the_canonical_query() {
        let b = "https://h/fhir";
        assert_eq!(
            page_url(b, "/Patient", "name=x", None),
            "https://h/fhir/Patient?name=x"
        );
        assert_eq!(page_url(b, "", "", None), "https://h/fhir");
        assert_eq!(
            page_url("https://h/fhir/", "/Patient/p1/*", "", Some("a+b/c=")),
            "https://h/fhir/Patient/p1/*?_page=a%2Bb%2Fc%3D"
        );
        assert_eq!(
            page_url(b, "/Patient", "name=x", Some("tok")),
            "https://h/fhir/Patient?name=x&_page=tok"
        );
        // Unreserved characters are written as themselves.
        assert_eq!(
            page_url(
                b,
                "/Patient",
                "%5Fcount=5&a%2Db=%2e%7E%25%2C%",
                Some("x-y_z")
            ),
            "https://h/fhir/Patient?_count=5&a-b=.~%25%2C%&_page=x-y_z"
        );
    }

    #[test]
    fn the_bundle_has_total_links_and_entries_in_order() {
        let s = search("Observation", "_include=Observation:subject");
        let out = outcome(&[OBS], &[PAT], Some(1));
        let b = searchset(
            "https://h/fhir",
            "https://h/fhir/Observation?x",
            Some("https://h/fhir/Observation?x&_page=n"),
            &out,
            &s,
        );
        assert_eq!(b["resourceType"], "Bundle");
        assert_eq!(b["type"], "searchset");
        assert_eq!(b["total"], 1);
        assert_eq!(b["link"][0]["relation"], "self");
        assert_eq!(b["link"][0]["url"], "https://h/fhir/Observation?x");
        assert_eq!(b["link"][1]["relation"], "next");
        let e = b["entry"].as_array().unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0]["fullUrl"], "https://h/fhir/Observation/o1");
        assert_eq!(e[0]["search"]["mode"], "match");
        assert!(!subsetted(&e[0]["resource"]));
        assert_eq!(e[1]["fullUrl"], "https://h/fhir/Patient/p1");
        assert_eq!(e[1]["search"]["mode"], "include");
        // Stored text is written as stored: 1.50 stays 1.50.
        let text = searchset_text("https://h/fhir", "s", None, &out, &s);
        assert!(text.contains(r#""value":1.50"#), "{text}");
    }

    #[test]
    fn no_total_no_next_no_entries_when_there_are_none() {
        let s = search("Patient", "");
        let b = searchset("b", "s", None, &Outcome::default(), &s);
        assert_eq!(
            b,
            json!({"resourceType": "Bundle", "type": "searchset", "link": [{"relation": "self", "url": "s"}]})
        );
    }

    #[test]
    fn summary_count_has_only_the_total() {
        for q in ["_summary=count", "_count=0"] {
            let s = search("Observation", q);
            let b = searchset("b", "s", Some("n"), &outcome(&[OBS], &[], Some(7)), &s);
            assert_eq!(b["total"], 7, "{q}");
            assert!(b.get("entry").is_none(), "{q}");
            assert_eq!(b["link"].as_array().unwrap().len(), 1, "{q}");
        }
    }

    #[test]
    fn summary_text_keeps_the_narrative_only() {
        let s = search("Observation", "_summary=text");
        let b = searchset("b", "s", None, &outcome(&[OBS], &[], None), &s);
        let r = &b["entry"][0]["resource"];
        assert_eq!(keys(r), vec!["id", "meta", "resourceType", "text"]);
        assert!(subsetted(r));
        assert_eq!(r["meta"]["versionId"], "1");
    }

    #[test]
    fn summary_data_drops_the_narrative() {
        let s = search("Observation", "_summary=data");
        let b = searchset("b", "s", None, &outcome(&[OBS, PAT], &[], None), &s);
        let r = &b["entry"][0]["resource"];
        assert!(r.get("text").is_none());
        assert_eq!(r["valueQuantity"]["unit"], "kg");
        assert!(subsetted(r));
        // Nothing to drop: the Patient is whole, so it is not tagged.
        let p = &b["entry"][1]["resource"];
        assert_eq!(p["name"][0]["family"], "Doe");
        assert!(!subsetted(p));
    }

    #[test]
    fn summary_true_keeps_elements_search_parameters_reach() {
        let s = search("Observation", "_summary=true");
        let b = searchset("b", "s", None, &outcome(&[OBS], &[], None), &s);
        let r = &b["entry"][0]["resource"];
        // code, subject (parameters), value[x] by prefix, status and its extension.
        for k in ["code", "subject", "valueQuantity", "status", "_status"] {
            assert!(r.get(k).is_some(), "{k} in {r}");
        }
        // note is reached by no parameter; text is never in the summary.
        assert!(r.get("note").is_none() && r.get("text").is_none(), "{r}");
        assert!(subsetted(r));
        let pat = summary_elements(t("Patient"));
        for e in [
            "name",
            "birthDate",
            "gender",
            "identifier",
            "active",
            "address",
        ] {
            assert!(pat.iter().any(|p| p == e), "{e} in {pat:?}");
        }
        assert!(!pat.iter().any(|p| p == "photo"));
    }

    #[test]
    fn elements_keep_what_is_asked_with_choice_variants() {
        let s = search(
            "Observation",
            "_elements=value,Observation.code,Patient.name",
        );
        let b = searchset("b", "s", None, &outcome(&[OBS], &[PAT], None), &s);
        let r = &b["entry"][0]["resource"];
        assert_eq!(
            keys(r),
            vec!["code", "id", "meta", "resourceType", "valueQuantity"]
        );
        assert!(subsetted(r));
        let text = searchset_text("b", "s", None, &outcome(&[OBS], &[], None), &s);
        assert!(text.contains(r#""value":1.50"#), "{text}");
        // Included resources stay whole.
        let inc = &b["entry"][1]["resource"];
        assert!(inc.get("photo").is_some() && !subsetted(inc));
        // value[x] is the choice element's name.
        let s = search("Observation", "_elements=value[x]");
        assert_eq!(
            elements(t("Observation"), &s),
            Elements::Only(vec!["value".into()])
        );
    }

    #[test]
    fn trimming_adds_meta_and_keeps_existing_tags() {
        let body = br#"{"resourceType":"Patient","id":"p","name":[],"photo":[]}"#;
        let keep = Elements::Only(vec!["name".into()]);
        let r: Value = serde_json::from_str(&trim(body, &keep).unwrap()).unwrap();
        assert_eq!(keys(&r), vec!["id", "meta", "name", "resourceType"]);
        assert!(subsetted(&r));
        let body =
            br#"{"resourceType":"Patient","id":"p","meta":{"tag":[{"code":"a"}]},"photo":[]}"#;
        let r: Value = serde_json::from_str(&trim(body, &keep).unwrap()).unwrap();
        assert_eq!(r["meta"]["tag"].as_array().unwrap().len(), 2);
        // Nothing left out: written as it was, not tagged.
        let same = trim(r.to_string().as_bytes(), &Elements::NoText).unwrap();
        assert_eq!(same, r.to_string());
        // Trimmed twice, tagged once.
        let mut r2 = r.clone();
        r2["photo"] = json!([]);
        let again = trim(r2.to_string().as_bytes(), &Elements::Only(Vec::new())).unwrap();
        let again: Value = serde_json::from_str(&again).unwrap();
        assert_eq!(again["meta"]["tag"].as_array().unwrap().len(), 2);
        assert!(again.get("photo").is_none());
        assert!(trim(b"[1]", &keep).is_none());
    }

    #[test]
    fn ignored_parameters_are_reported_in_an_outcome_entry() {
        let s = Search::parse(
            Some(t("Patient")),
            &url_pairs("foo=1&name=x&name:below=y"),
            true,
        )
        .unwrap();
        assert_eq!(s.ignored.len(), 2);
        let b = searchset("b", "s", None, &outcome(&[PAT], &[], Some(1)), &s);
        let e = b["entry"].as_array().unwrap();
        assert_eq!(e.len(), 2);
        let oo = &e[1];
        assert_eq!(oo["search"]["mode"], "outcome");
        assert!(oo.get("fullUrl").is_none());
        assert_eq!(oo["resource"]["resourceType"], "OperationOutcome");
        let issues = oo["resource"]["issue"].as_array().unwrap();
        assert_eq!(issues.len(), 2);
        assert_eq!(issues[0]["severity"], "warning");
        assert!(
            issues[0]["diagnostics"].as_str().unwrap().contains("'foo'"),
            "{issues:?}"
        );
    }

    #[test]
    fn first_elements_of_expressions() {
        assert_eq!(
            first_elements("Patient.name.given | Patient.telecom.where(system='phone')"),
            vec!["name", "telecom"]
        );
        assert_eq!(
            first_elements("(Observation.value as Quantity) | Observation.value.as(Period)"),
            vec!["value", "value"]
        );
        assert_eq!(first_elements("name | alias"), vec!["name", "alias"]);
        assert_eq!(first_elements("Resource.id"), vec!["id"]);
        assert!(first_elements("").is_empty());
        assert!(named("value", "valueQuantity"));
        assert!(!named("value", "valueset"));
        assert!(!named("code", "codex"));
    }
}
