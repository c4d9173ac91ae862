//! The in-memory check of a search clause on a resource (FHIR R4 3.1.1 "Search", the
//! semantics of each parameter type). Every candidate the index yields is checked here, so
//! the index only has to find a superset; the differential test compares this check over
//! every resource with what the index path returns.

use serde_json::Value;

use super::extract::param_values;
use super::query::{Clause, Modifier, Pred, Prefix};
use super::registry::{self, ParamType};
use super::value::{DateRange, Dec, SearchValue, Token, normalize};
use crate::types::{ResourceId, ResourceType};

/// Whether `resource` (of type `t`, id `id`) satisfies `clause`. Chains and `_has` must have
/// been resolved to [`Pred::Ids`] / reference values first; an unresolved one matches nothing.
pub fn matches(clause: &Clause, t: ResourceType, id: &ResourceId, resource: &Value) -> bool {
    if let Clause::Any(any) = clause {
        return any.iter().any(|c| matches(c, t, id, resource));
    }
    let Clause::Match {
        code,
        modifier,
        values: preds,
        ..
    } = clause
    else {
        return false;
    };
    if let [Pred::Ids(set)] = preds.as_slice()
        && code == "_id"
    {
        return set.iter().any(|(st, sid)| *st == t && sid == id);
    }
    let Some(p) = registry::param(t, code) else {
        return false;
    };
    let values = if code == "_id" {
        vec![SearchValue::Token(Token {
            code: Some(id.as_str().to_owned()),
            ..Token::default()
        })]
    } else {
        param_values(p, resource)
    };
    if *modifier == Modifier::Missing {
        return preds.iter().any(|pr| match pr {
            Pred::Missing(m) => values.is_empty() == *m,
            _ => false,
        });
    }
    if *modifier == Modifier::Not {
        return !values
            .iter()
            .any(|v| preds.iter().any(|pr| value_matches(pr, modifier, v)));
    }
    // Full-text parameters search words anywhere in the text.
    let modifier = if super::extract::is_full_text(code) && *modifier == Modifier::None {
        &Modifier::Contains
    } else {
        modifier
    };
    values
        .iter()
        .any(|v| preds.iter().any(|pr| value_matches(pr, modifier, v)))
}

/// Whether one extracted value satisfies one search value.
pub fn value_matches(pred: &Pred, m: &Modifier, v: &SearchValue) -> bool {
    match (pred, v) {
        (Pred::String { norm, raw }, SearchValue::String(s)) => match m {
            Modifier::Exact => s == raw,
            Modifier::Contains => normalize(s).contains(norm.as_str()),
            _ => normalize(s).starts_with(norm.as_str()),
        },
        (Pred::Token { system, code }, SearchValue::Token(t)) => token_matches(system, code, t),
        (Pred::Text(norm), SearchValue::Token(t)) => t
            .display
            .as_deref()
            .is_some_and(|d| normalize(d).starts_with(norm.as_str())),
        (
            Pred::OfType {
                system,
                code,
                value,
            },
            SearchValue::Token(t),
        ) => {
            t.code.as_deref() == Some(value.as_str())
                && t.types
                    .iter()
                    .any(|(s, c)| c == code && (system.is_none() || s == system))
        }
        (Pred::Ref { local, url }, SearchValue::Reference(r)) => {
            let by_id = match (local, &r.local) {
                (Some((want_t, want_id)), Some((t, id))) => {
                    want_id == id
                        && match (want_t, m) {
                            (Some(wt), _) => wt == t,
                            (None, Modifier::Type(mt)) => mt == t,
                            (None, _) => true,
                        }
                }
                _ => false,
            };
            by_id || url.is_some() && *url == r.url
        }
        (Pred::Identifier { system, value }, SearchValue::Reference(r)) => r
            .identifier
            .as_ref()
            .is_some_and(|t| token_matches(system, &Some(value.clone()), t)),
        (Pred::Date { prefix, range }, SearchValue::Date(d)) => date_matches(*prefix, *range, *d),
        (Pred::Number { prefix, value }, SearchValue::Number(x)) => {
            number_matches(*prefix, *value, *x)
        }
        (
            Pred::Quantity {
                prefix,
                value,
                system,
                code,
            },
            SearchValue::Quantity(q),
        ) => {
            let unit_ok = match (system, code) {
                (_, None) => system.is_none() || *system == q.system,
                (Some(s), Some(c)) => {
                    q.system.as_deref() == Some(s) && q.code.as_deref() == Some(c)
                }
                (None, Some(c)) => q.code.as_deref() == Some(c) || q.unit.as_deref() == Some(c),
            };
            unit_ok && number_matches(*prefix, *value, q.value)
        }
        (Pred::Uri(u), SearchValue::Uri(x)) => match m {
            Modifier::Below => x.starts_with(u.as_str()),
            // An ancestor: the resource's URI is the search URI up to a path boundary.
            Modifier::Above => {
                u.starts_with(x.as_str())
                    && (u.len() == x.len() || x.ends_with('/') || u[x.len()..].starts_with('/'))
            }
            _ => x == u,
        },
        (Pred::Uri(u), SearchValue::Reference(r)) => r.url.as_deref() == Some(u.as_str()),
        (Pred::Composite(preds), SearchValue::Composite(vals)) => {
            preds.len() == vals.len()
                && preds
                    .iter()
                    .zip(vals)
                    .all(|(p, v)| value_matches(p, &Modifier::None, v))
        }
        (Pred::Ids(set), SearchValue::Reference(r)) => r
            .local
            .as_ref()
            .is_some_and(|(t, id)| set.iter().any(|(st, sid)| st == t && sid == id)),
        _ => false,
    }
}

fn token_matches(system: &Option<Option<String>>, code: &Option<String>, t: &Token) -> bool {
    let code_ok = match code {
        None => true,
        Some(c) => t.code.as_deref() == Some(c.as_str()),
    };
    let system_ok = match system {
        None => true,
        Some(None) => t.system.is_none(),
        Some(Some(s)) => t.system.as_deref() == Some(s.as_str()),
    };
    code_ok && system_ok && (code.is_some() || t.code.is_some() || system.is_some())
}

/// The `ap` window of a search range: widened by a tenth of its distance from now (at least
/// a day), as the FHIR search page suggests.
pub fn approx_window(q: DateRange) -> DateRange {
    const DAY: i64 = 86_400_000;
    let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let w = ((now - q.lo).abs() / 10).max(DAY);
    DateRange {
        lo: q.lo.saturating_sub(w),
        hi: q.hi.saturating_add(w),
    }
}

/// Date prefixes on ranges (the search value's range `q`, the resource's `d`).
pub fn date_matches(prefix: Prefix, q: DateRange, d: DateRange) -> bool {
    let contained = q.lo <= d.lo && d.hi <= q.hi;
    match prefix {
        Prefix::Eq => contained,
        Prefix::Ne => !contained,
        Prefix::Gt => d.hi > q.hi,
        Prefix::Lt => d.lo < q.lo,
        Prefix::Ge => d.hi > q.hi || contained,
        Prefix::Le => d.lo < q.lo || contained,
        Prefix::Sa => d.lo > q.hi,
        Prefix::Eb => d.hi < q.lo,
        Prefix::Ap => {
            let w = approx_window(q);
            d.lo <= w.hi && d.hi >= w.lo
        }
    }
}

/// Number prefixes: `eq`/`ne` use the search value's implicit precision, `ap` +/- 10%.
pub fn number_matches(prefix: Prefix, q: Dec, x: Dec) -> bool {
    let within = |r: Option<(Dec, Dec)>| r.is_some_and(|(lo, hi)| lo <= x && x < hi);
    match prefix {
        Prefix::Eq => within(q.precision_range()),
        Prefix::Ne => !within(q.precision_range()),
        Prefix::Gt | Prefix::Sa => x > q,
        Prefix::Lt | Prefix::Eb => x < q,
        Prefix::Ge => x >= q,
        Prefix::Le => x <= q,
        Prefix::Ap => q.approx_range().is_some_and(|(lo, hi)| lo <= x && x <= hi),
    }
}

/// Whether the parameter type has a value that sorts (`_sort`).
pub fn sortable(kind: ParamType) -> bool {
    !matches!(kind, ParamType::Composite | ParamType::Special)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> DateRange {
        DateRange::parse(s).unwrap()
    }

    #[test]
    fn date_prefixes_follow_the_search_page() {
        // Resource values against the search value 2013-01-14 (the whole day).
        let q = r("2013-01-14");
        let cases = [
            // (prefix, resource value, expected)
            (Prefix::Eq, "2013-01-14T10:00:00Z", true),
            (Prefix::Eq, "2013-01-14", true),
            (Prefix::Eq, "2013-01", false), // the month is wider than the day
            (Prefix::Ne, "2013-01-15", true),
            (Prefix::Gt, "2013-01-15", true),
            (Prefix::Gt, "2013-01-14T23:00:00Z", false),
            (Prefix::Gt, "2013", true), // the year extends past the day
            (Prefix::Lt, "2013-01-13", true),
            (Prefix::Lt, "2013", true),
            (Prefix::Ge, "2013-01-14T00:00:00Z", true),
            (Prefix::Ge, "2013-01-13", false),
            (Prefix::Le, "2013-01-14T12:00:00Z", true),
            (Prefix::Le, "2013-01-15", false),
            (Prefix::Sa, "2013-01-15", true),
            (Prefix::Sa, "2013", false),
            (Prefix::Eb, "2013-01-13", true),
            (Prefix::Eb, "2013", false),
            (Prefix::Ap, "2013-01-14", true),
        ];
        for (p, v, want) in cases {
            assert_eq!(date_matches(p, q, r(v)), want, "{p:?} {v}");
        }
        // Periods: open ends.
        let open = DateRange::between(Some(r("2010")), None).unwrap();
        assert!(date_matches(Prefix::Gt, r("2020"), open));
        assert!(!date_matches(Prefix::Eq, r("2020"), open));
    }

    #[test]
    fn number_prefixes_use_implicit_precision() {
        let d = |s: &str| Dec::parse(s).unwrap();
        assert!(number_matches(Prefix::Eq, d("100"), d("99.5")));
        assert!(number_matches(Prefix::Eq, d("100"), d("100.4999")));
        assert!(!number_matches(Prefix::Eq, d("100"), d("100.5")));
        assert!(!number_matches(Prefix::Eq, d("100.00"), d("100.01")));
        assert!(number_matches(Prefix::Eq, d("1e2"), d("104")));
        assert!(!number_matches(Prefix::Eq, d("1e2"), d("106")));
        assert!(number_matches(Prefix::Ne, d("100"), d("101")));
        assert!(number_matches(Prefix::Gt, d("100"), d("100.1")));
        assert!(!number_matches(Prefix::Gt, d("100"), d("100")));
        assert!(number_matches(Prefix::Ge, d("100"), d("100")));
        assert!(number_matches(Prefix::Le, d("100"), d("99")));
        assert!(number_matches(Prefix::Ap, d("100"), d("109")));
        assert!(!number_matches(Prefix::Ap, d("100"), d("111")));
    }

    #[test]
    fn tokens_by_system_and_code() {
        let t = Token {
            system: Some("http://loinc.org".into()),
            code: Some("8480-6".into()),
            ..Token::default()
        };
        let bare = Token {
            code: Some("8480-6".into()),
            ..Token::default()
        };
        let s = |x: &str| Some(x.to_owned());
        assert!(token_matches(&None, &s("8480-6"), &t));
        assert!(token_matches(
            &Some(s("http://loinc.org")),
            &s("8480-6"),
            &t
        ));
        assert!(!token_matches(
            &Some(s("http://snomed.info/sct")),
            &s("8480-6"),
            &t
        ));
        assert!(!token_matches(&Some(None), &s("8480-6"), &t));
        assert!(token_matches(&Some(None), &s("8480-6"), &bare));
        assert!(token_matches(&Some(s("http://loinc.org")), &None, &t));
        assert!(!token_matches(&None, &s("8480"), &t));
    }
}
