//! Token claims as they reach a function: verified JWT payloads, or API Gateway authorizer
//! claims (where HTTP API v2 flattens every value to a string and arrays to `[a b]`).

use serde_json::{Map, Value};

/// The claims of a verified token.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Claims(Map<String, Value>);

impl Claims {
    pub fn new(map: Map<String, Value>) -> Self {
        Claims(map)
    }

    /// Claims from string pairs (API Gateway HTTP API v2 `jwt.claims`).
    pub fn from_strings<'a>(pairs: impl IntoIterator<Item = (&'a String, &'a String)>) -> Self {
        Claims(
            pairs
                .into_iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        )
    }

    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    /// The claim named `path`: the top-level claim of exactly that name if there is one
    /// (claim names such as `custom:tenantId` or URLs may contain dots), otherwise the nested
    /// value reached by splitting `path` on dots (`ext.tenant.id`). A nested object that API
    /// Gateway delivered as a JSON string is parsed on the way.
    pub fn get_path(&self, path: &str) -> Option<Value> {
        if let Some(v) = self.0.get(path) {
            return Some(v.clone());
        }
        let mut parts = path.split('.');
        let mut cur = self.0.get(parts.next()?)?.clone();
        for part in parts {
            if let Value::String(s) = &cur {
                cur = serde_json::from_str(s).ok()?;
            }
            cur = cur.get(part)?.clone();
        }
        Some(cur)
    }

    /// A single string claim (a one-element list counts).
    pub fn get_str(&self, path: &str) -> Option<String> {
        match self.get_path(path)? {
            Value::String(s) => Some(s),
            Value::Number(n) => Some(n.to_string()),
            Value::Array(a) if a.len() == 1 => a[0].as_str().map(str::to_owned),
            _ => None,
        }
    }

    /// A list claim, whatever shape it arrived in (see [`string_list`]).
    pub fn get_list(&self, path: &str) -> Vec<String> {
        self.get_path(path)
            .map(|v| string_list(&v))
            .unwrap_or_default()
    }
}

/// Reads a list-valued claim in every shape it arrives in: a JSON array; API Gateway's `[a b]`
/// string; a string holding a JSON array (`["a","b"]`); a comma- or space-separated string; or a
/// single value. Empty items are dropped.
pub fn string_list(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items
            .iter()
            .filter_map(|i| match i {
                Value::String(s) => Some(s.trim().to_owned()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .filter(|s| !s.is_empty())
            .collect(),
        Value::String(s) => {
            let s = s.trim();
            if s.starts_with('[')
                && let Ok(Value::Array(items)) = serde_json::from_str::<Value>(s)
            {
                return string_list(&Value::Array(items));
            }
            // `[a b]` (API Gateway) splits on spaces and commas; a bare string on commas only,
            // so a single value that contains a space stays one (invalid) value.
            let (inner, split_on_space) =
                match s.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
                    Some(inner) => (inner, true),
                    None => (s, false),
                };
            inner
                .split(|c: char| c == ',' || (split_on_space && c.is_whitespace()))
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        }
        Value::Number(n) => vec![n.to_string()],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn list_shapes() {
        let cases = [
            (json!(["default", "other"]), vec!["default", "other"]),
            (json!("[default other]"), vec!["default", "other"]),
            (json!("[default]"), vec!["default"]),
            (json!("[]"), vec![]),
            (json!("[\"a\",\"b\"]"), vec!["a", "b"]),
            (json!("a,b"), vec!["a", "b"]),
            (json!("a, b"), vec!["a", "b"]),
            (json!("single"), vec!["single"]),
            (json!("a b"), vec!["a b"]),
            (json!("[a, b]"), vec!["a", "b"]),
            (json!(""), vec![]),
            (json!(null), vec![]),
            (json!(["", " x "]), vec!["x"]),
        ];
        for (v, want) in cases {
            assert_eq!(string_list(&v), want, "{v}");
        }
    }

    #[test]
    fn dotted_paths_reach_nested_claims() {
        let c = Claims::new(
            json!({
                "custom:tenantId": "t1",
                "ext": {"tenant": {"id": "t2"}},
                "https://example.com/tenant": "t3",
                "str": "{\"tenant\":\"t4\"}",
                "arr": ["t5"],
                "n": 7
            })
            .as_object()
            .unwrap()
            .clone(),
        );
        assert_eq!(c.get_str("custom:tenantId").as_deref(), Some("t1"));
        assert_eq!(c.get_str("ext.tenant.id").as_deref(), Some("t2"));
        assert_eq!(
            c.get_str("https://example.com/tenant").as_deref(),
            Some("t3")
        );
        assert_eq!(c.get_str("str.tenant").as_deref(), Some("t4"));
        assert_eq!(c.get_str("arr").as_deref(), Some("t5"));
        assert_eq!(c.get_str("n").as_deref(), Some("7"));
        assert_eq!(c.get_str("ext.tenant"), None);
        assert_eq!(c.get_str("missing.path"), None);
    }
}
