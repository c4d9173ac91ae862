//! A FHIR tenant of any size from the example Bundles (`tests/fixtures/fhir/*.json`): copy `n`
//! of every Bundle has every id and every `urn:uuid` fullUrl rewritten (ids get the suffix
//! `-c<n>`, uuids a node field of their own), and the references inside it rewritten
//! accordingly, so that each copy is a new set of patients with their own records. Copies are
//! posted as transaction Bundles through `fhir::handle` (PUT entries keep their rewritten ids,
//! POST entries get server ids), in a fixed order, until the tenant holds the resources asked
//! for. The input is deterministic; the server's ids for POST entries are not (uuids).

use std::collections::HashSet;
use std::path::Path;
use std::time::Instant;

use serde_json::{Map, Value, json};

use crate::fhir_bench::{event, load_bundle};

/// The example transaction Bundles of `dir` (every `*.json` that is one), sorted by file name.
pub fn examples(dir: &Path) -> Result<Vec<(String, Value)>, String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    let out: Vec<(String, Value)> = names
        .into_iter()
        .filter_map(|n| load_bundle(&dir.join(&n)).ok().map(|b| (n, b)))
        .collect();
    if out.is_empty() {
        return Err(format!("{}: no transaction Bundle", dir.display()));
    }
    Ok(out)
}

/// Id `id` in copy `n`.
pub fn copy_id(id: &str, n: usize) -> String {
    format!("{id}-c{n}")
}

/// `urn:uuid:<u>` in copy `n`: the same uuid with its last 48 bits (the node field) mixed with
/// the copy number (a bijection per copy: distinct uuids stay distinct; version and variant
/// bits are untouched). Anything that is not a uuid gets the id suffix instead.
pub fn copy_uuid(u: &str, n: usize) -> String {
    let valid = u.len() == 36
        && u.char_indices().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        });
    if !valid {
        return copy_id(u, n);
    }
    let node = u64::from_str_radix(&u[24..], 16).unwrap_or(0);
    // A different non-zero mask per copy (a 64-bit mix of n + 1, cut to 48 bits).
    let mut z = (n as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    let mask = (z & 0xffff_ffff_ffff).max(1);
    format!("{}{:012x}", &u[..24], node ^ mask)
}

/// `Type/id` (and the rest, e.g. `/_history/2`) of a relative literal reference.
fn split_local(r: &str) -> Option<(&str, &str, &str)> {
    let (t, rest) = r.split_once('/')?;
    if t.is_empty() || !t.starts_with(|c: char| c.is_ascii_uppercase()) {
        return None;
    }
    let (id, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    (!id.is_empty() && !id.contains(['?', ':'])).then_some((t, id, tail))
}

/// Copy `n` of a transaction Bundle: every entry's resource id, `Type/id` request URL and
/// fullUrl rewritten (`urn:uuid:` fullUrls by [`copy_uuid`], `Type/id` ones by [`copy_id`]),
/// and every `reference` inside the resources that names one of the Bundle's resources (by
/// `urn:uuid`, or as `Type/id` of an entry's id or fullUrl) rewritten the same way. References
/// to anything outside the Bundle, and contained ones (`#x`), stay as they are.
pub fn copy(bundle: &Value, n: usize) -> Value {
    // The Bundle's own resources, as `Type/id`.
    let mut local: HashSet<String> = HashSet::new();
    for e in bundle["entry"].as_array().into_iter().flatten() {
        if let (Some(t), Some(id)) = (
            e["resource"]["resourceType"].as_str(),
            e["resource"]["id"].as_str(),
        ) {
            local.insert(format!("{t}/{id}"));
        }
        for s in [e["fullUrl"].as_str(), e["request"]["url"].as_str()]
            .into_iter()
            .flatten()
        {
            if let Some((t, id, "")) = split_local(s) {
                local.insert(format!("{t}/{id}"));
            }
        }
    }
    let rewrite = |s: &str| -> Option<String> {
        if let Some(u) = s.strip_prefix("urn:uuid:") {
            return Some(format!("urn:uuid:{}", copy_uuid(u, n)));
        }
        let (t, id, tail) = split_local(s)?;
        local
            .contains(&format!("{t}/{id}"))
            .then(|| format!("{t}/{}{tail}", copy_id(id, n)))
    };
    let mut b = bundle.clone();
    for e in b["entry"].as_array_mut().into_iter().flatten() {
        if let Some(new) = e["fullUrl"].as_str().and_then(rewrite) {
            e["fullUrl"] = json!(new);
        }
        if let Some(new) = e["request"]["url"].as_str().and_then(rewrite) {
            e["request"]["url"] = json!(new);
        }
        if let Some(id) = e["resource"]["id"].as_str() {
            e["resource"]["id"] = json!(copy_id(id, n));
        }
        if let Some(r) = e.get_mut("resource") {
            rewrite_references(r, &rewrite);
        }
    }
    b
}

/// Every `"reference": "<x>"` under `v`, rewritten where `f` says.
fn rewrite_references(v: &mut Value, f: &impl Fn(&str) -> Option<String>) {
    match v {
        Value::Object(o) => {
            for (k, x) in o.iter_mut() {
                if k == "reference"
                    && let Some(new) = x.as_str().and_then(f)
                {
                    *x = json!(new);
                } else {
                    rewrite_references(x, f);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| rewrite_references(x, f)),
        _ => {}
    }
}

/// The Patient ids a Bundle PUTs (`Patient/<id>` request URLs).
pub fn put_patients(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["request"]["method"] == "PUT")
        .filter_map(|e| e["request"]["url"].as_str()?.strip_prefix("Patient/"))
        .map(str::to_owned)
        .collect()
}

/// What a load wrote.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    pub resources: usize,
    pub bundles: usize,
    pub copies: usize,
    pub seconds: f64,
    /// `(example file, Patient id)` of every Patient PUT, in load order.
    pub patients: Vec<(String, String)>,
}

impl Loaded {
    /// The id of copy 0 of the Patient of `file` (the first loaded).
    pub fn patient_of(&self, file: &str) -> Option<&str> {
        self.patients
            .iter()
            .find(|(f, _)| f == file)
            .map(|(_, id)| id.as_str())
    }
}

/// Posts copies `0, 1, ...` of `examples` (each copy: every example in order) as transaction
/// Bundles through `fhir::handle` as `who`, until `target` resources are written (the last copy
/// may be partial). `progress`: a line every so many resources (0: none).
pub async fn load(
    deps: &fhir::Deps,
    who: &Map<String, Value>,
    examples: &[(String, Value)],
    target: usize,
    progress: usize,
) -> Result<Loaded, String> {
    let t0 = Instant::now();
    let mut out = Loaded::default();
    let mut next_report = progress;
    'copies: for n in 0.. {
        for (name, b) in examples {
            if out.resources >= target {
                break 'copies;
            }
            let c = copy(b, n);
            let entries = c["entry"].as_array().map_or(0, Vec::len);
            let body = serde_json::to_vec(&c).map_err(|e| e.to_string())?;
            let req = crate::fixtures::request(event("POST", "/fhir", Some(&body), Some(who)));
            let (status, resp) = crate::fixtures::read(fhir::handle(req, deps).await);
            if status != 200 {
                let text = resp.to_string();
                return Err(format!(
                    "loading copy {n} of {name}: status {status}: {}",
                    &text[..text.len().min(400)]
                ));
            }
            out.resources += entries;
            out.bundles += 1;
            out.copies = n + 1;
            out.patients
                .extend(put_patients(&c).into_iter().map(|p| (name.clone(), p)));
            if progress > 0 && out.resources >= next_report {
                println!(
                    "  loaded {} resources ({} Bundles) in {:.1} s",
                    out.resources,
                    out.bundles,
                    t0.elapsed().as_secs_f64()
                );
                next_report = out.resources + progress;
            }
        }
    }
    out.seconds = t0.elapsed().as_secs_f64();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn fixtures() -> Vec<(String, Value)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/fhir");
        examples(&dir).expect("the example Bundles")
    }

    /// Every key an entry answers to (`urn:uuid:...` or `Type/id` fullUrl, `Type/id`), to its
    /// index.
    fn keys(b: &Value) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for (i, e) in b["entry"].as_array().unwrap().iter().enumerate() {
            if let Some(f) = e["fullUrl"].as_str() {
                m.insert(f.to_owned(), i);
            }
            if let (Some(t), Some(id)) = (
                e["resource"]["resourceType"].as_str(),
                e["resource"]["id"].as_str(),
            ) {
                m.insert(format!("{t}/{id}"), i);
            }
        }
        m
    }

    fn references(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(o) => {
                for (k, x) in o {
                    match (k.as_str(), x.as_str()) {
                        ("reference", Some(s)) => out.push(s.to_owned()),
                        _ => references(x, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| references(x, out)),
            _ => {}
        }
    }

    #[test]
    fn uuids_and_ids_per_copy() {
        let u = "e91975f5-9445-c11f-cabf-c3c6dae161f2";
        let (a, b) = (copy_uuid(u, 0), copy_uuid(u, 1));
        assert_ne!(a, u);
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[..24], &u[..24]);
        assert_eq!(copy_uuid(u, 0), a, "deterministic");
        assert_eq!(copy_uuid("not-a-uuid", 3), "not-a-uuid-c3");
        assert_eq!(copy_id("355", 12), "355-c12");
        assert_eq!(
            split_local("Patient/1/_history/2"),
            Some(("Patient", "1", "/_history/2"))
        );
        assert_eq!(split_local("#med"), None);
        assert_eq!(split_local("urn:uuid:x"), None);
        assert_eq!(split_local("http://x/Patient/1"), None);
    }

    /// In every example, every reference of a copy names the same entry as the original's did
    /// (or, pointing outside the Bundle, is unchanged); ids, fullUrls and request URLs are the
    /// copy's own; two copies share no id, uuid or Patient.
    #[test]
    fn copies_keep_references_consistent() {
        for (name, b) in fixtures() {
            let (c0, c1) = (copy(&b, 0), copy(&b, 1));
            assert_eq!(copy(&b, 0), c0, "{name}: deterministic");
            let (k, k0, k1) = (keys(&b), keys(&c0), keys(&c1));
            assert!(
                k0.keys().all(|x| !k.contains_key(x)),
                "{name}: every key rewritten"
            );
            assert!(
                k0.keys().all(|x| !k1.contains_key(x)),
                "{name}: copies disjoint"
            );
            let entries = b["entry"].as_array().unwrap();
            let mut resolved = 0;
            for (i, e) in entries.iter().enumerate() {
                let (mut before, mut after) = (Vec::new(), Vec::new());
                references(&e["resource"], &mut before);
                references(&c0["entry"][i]["resource"], &mut after);
                assert_eq!(before.len(), after.len());
                for (x, y) in before.iter().zip(&after) {
                    match k.get(x.as_str()) {
                        Some(target) => {
                            assert_eq!(k0.get(y.as_str()), Some(target), "{name}: {x} -> {y}");
                            resolved += 1;
                        }
                        None => assert_eq!(x, y, "{name}: outside the Bundle"),
                    }
                }
                let (m, m0) = (
                    &e["request"]["method"],
                    &c0["entry"][i]["request"]["method"],
                );
                assert_eq!(m, m0);
                if m == "PUT" {
                    let (t, id) = (
                        c0["entry"][i]["resource"]["resourceType"].as_str().unwrap(),
                        c0["entry"][i]["resource"]["id"].as_str().unwrap(),
                    );
                    assert_eq!(c0["entry"][i]["request"]["url"], format!("{t}/{id}"));
                    assert!(id.ends_with("-c0"));
                }
            }
            assert!(resolved > 0, "{name}: references inside the Bundle");
            let (p, p0, p1) = (put_patients(&b), put_patients(&c0), put_patients(&c1));
            assert_eq!(p.len(), 1, "{name}: one Patient");
            assert_eq!(p0, vec![copy_id(&p[0], 0)]);
            assert_ne!(p0, p1);
        }
    }
}
