//! Search requests: the query string (or `_search` form body) parsed once into [`Search`]
//! (FHIR R4 3.1.1 "Search"): parameters with modifiers and prefixes, chains, `_has`, and the
//! result parameters. Repeated parameters AND, commas OR; `\,` `\|` `\$` escape. An unknown
//! parameter or an unsupported modifier is a 400 naming it, unless the request prefers
//! lenient handling (then it is ignored and reported).

use super::registry::{self, ParamType, SearchParam};
use super::value::{DateRange, Dec, normalize, parse_local};
use crate::error::FhirError;
use crate::types::{ResourceId, ResourceType};

/// Default and largest `_count`.
pub const DEFAULT_COUNT: usize = 20;
pub const MAX_COUNT: usize = 1000;

/// Deepest chain or `_has` nesting accepted.
const MAX_DEPTH: usize = 8;

/// The `key=value` pairs of a query string or form body, percent- and `+`-decoded, in order.
pub fn url_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let dec = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (dec(k), dec(v))
        })
        .collect()
}

/// Percent-encodes a query component.
pub fn url_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A comparison prefix (numbers, dates, quantities).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Sa,
    Eb,
    Ap,
}

/// A parameter's modifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Modifier {
    None,
    Exact,
    Contains,
    Text,
    Not,
    Missing,
    Above,
    Below,
    OfType,
    Identifier,
    /// `:Type` on a reference.
    Type(ResourceType),
}

/// One value of a parameter (a clause's values OR).
#[derive(Debug, Clone, PartialEq)]
pub enum Pred {
    /// String: the normalized text and the text as sent (`:exact`).
    String {
        norm: String,
        raw: String,
    },
    /// Token: `code`, `system|code`, `|code` (system `Some(None)`), `system|` (code none).
    Token {
        system: Option<Option<String>>,
        code: Option<String>,
    },
    /// `:of-type`: `type-system|type-code|value`.
    OfType {
        system: Option<String>,
        code: String,
        value: String,
    },
    /// `:text` on a token: normalized.
    Text(String),
    /// Reference: `Type/id`, `id` (type none: any target), or an absolute URL / canonical.
    Ref {
        local: Option<(Option<ResourceType>, ResourceId)>,
        url: Option<String>,
    },
    /// `:identifier`.
    Identifier {
        system: Option<Option<String>>,
        value: String,
    },
    Date {
        prefix: Prefix,
        range: DateRange,
    },
    Number {
        prefix: Prefix,
        value: Dec,
    },
    Quantity {
        prefix: Prefix,
        value: Dec,
        system: Option<String>,
        code: Option<String>,
    },
    Uri(String),
    /// `:missing=true|false`.
    Missing(bool),
    /// One value per component.
    Composite(Vec<Pred>),
    /// A set of resources found by an inner search (chains and `_has`, resolved at run time).
    Ids(Vec<(ResourceType, ResourceId)>),
}

/// A search on one parameter of the searched resources, or through references.
#[derive(Debug, Clone, PartialEq)]
pub enum Clause {
    /// `code[:modifier]=values`.
    Match {
        code: String,
        kind: ParamType,
        modifier: Modifier,
        values: Vec<Pred>,
    },
    /// `ref[:Type].inner`: the reference `via` points at a resource of one of `targets`
    /// matching `inner`.
    Chain {
        via: String,
        targets: Vec<ResourceType>,
        inner: Box<Clause>,
    },
    /// `_has:Type:ref:inner`: some `rtype` resource whose `via` points here matches `inner`.
    Has {
        rtype: ResourceType,
        via: String,
        inner: Box<Clause>,
    },
    /// Any of the clauses (compartment membership: one of the compartment's parameters points
    /// at its owner).
    Any(Vec<Clause>),
}

/// The clause a compartment search adds for resources of type `t`: one of the compartment's
/// parameters of `t` refers to `owner/id` (`{def}`: `t` is the owner's type and the resource
/// is the owner). `None` when `t` is not in the compartment.
pub fn compartment_clause(owner: ResourceType, id: &ResourceId, t: ResourceType) -> Option<Clause> {
    let params = registry::compartment_params(owner, t)?;
    let mut any = Vec::new();
    for code in params {
        if *code == "{def}" {
            any.push(Clause::Match {
                code: "_id".into(),
                kind: ParamType::Token,
                modifier: Modifier::None,
                values: vec![Pred::Ids(vec![(owner, id.clone())])],
            });
        } else if registry::param(t, code).is_some_and(|p| p.kind == ParamType::Reference) {
            any.push(Clause::Match {
                code: (*code).to_owned(),
                kind: ParamType::Reference,
                modifier: Modifier::None,
                values: vec![Pred::Ref {
                    local: Some((Some(owner), id.clone())),
                    url: None,
                }],
            });
        }
    }
    (!any.is_empty()).then_some(Clause::Any(any))
}

/// `_sort` key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sort {
    pub code: String,
    pub descending: bool,
}

/// `_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Total {
    /// Not asked: given when the whole result is known anyway.
    Default,
    None,
    Estimate,
    Accurate,
}

/// `_summary`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Summary {
    False,
    True,
    Count,
    Data,
    Text,
}

/// `_include` / `_revinclude`: `Source:param[:Target]` or `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Include {
    /// The resource type holding the reference (`None` for `*`).
    pub source: Option<ResourceType>,
    /// The reference parameter (`None` for `*`: every reference parameter).
    pub param: Option<String>,
    pub target: Option<ResourceType>,
    pub iterate: bool,
}

/// A parsed search.
#[derive(Debug, Clone, PartialEq)]
pub struct Search {
    /// The searched types: one for a type search, `_type` (or every type) for a system search.
    pub types: Vec<ResourceType>,
    pub clauses: Vec<Clause>,
    pub count: usize,
    pub sort: Vec<Sort>,
    pub total: Total,
    pub summary: Summary,
    /// `_elements`, as sent.
    pub elements: Vec<String>,
    pub include: Vec<Include>,
    pub revinclude: Vec<Include>,
    /// The `_page` cursor.
    pub page: Option<String>,
    /// A compartment search's owner: each type's membership clause is added per type.
    pub compartment: Option<(ResourceType, ResourceId)>,
    /// Parameters ignored under `Prefer: handling=lenient`, with why.
    pub ignored: Vec<String>,
    /// The query as it is repeated in `self` and `next` links (no `_page`), and what cursors
    /// are bound to.
    pub canonical: String,
}

/// Result and control parameters (never search parameters).
const CONTROL: &[&str] = &[
    "_count",
    "_sort",
    "_total",
    "_summary",
    "_elements",
    "_include",
    "_revinclude",
    "_page",
    "_format",
    "_pretty",
    "_type",
    "_contained",
    "_containedType",
];

/// Splits on `sep` not escaped by a backslash.
fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n) if n == sep => out.last_mut().expect("non-empty").push(n),
                Some(n) => {
                    let last = out.last_mut().expect("non-empty");
                    last.push('\\');
                    last.push(n);
                }
                None => out.last_mut().expect("non-empty").push('\\'),
            }
        } else if c == sep {
            out.push(String::new());
        } else {
            out.last_mut().expect("non-empty").push(c);
        }
    }
    out
}

/// Removes the remaining escapes (`\,` `\|` `\$` `\\`).
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n @ (',' | '|' | '$' | '\\')) => out.push(n),
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn bad(msg: impl Into<String>) -> FhirError {
    FhirError::invalid(msg)
}

fn prefix_of(s: &str) -> (Prefix, &str) {
    let p = match s.get(..2) {
        Some("eq") => Prefix::Eq,
        Some("ne") => Prefix::Ne,
        Some("gt") => Prefix::Gt,
        Some("lt") => Prefix::Lt,
        Some("ge") => Prefix::Ge,
        Some("le") => Prefix::Le,
        Some("sa") => Prefix::Sa,
        Some("eb") => Prefix::Eb,
        Some("ap") => Prefix::Ap,
        _ => return (Prefix::Eq, s),
    };
    (p, &s[2..])
}

fn opt(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// How a parameter key's modifier reads, for a parameter of type `kind`.
fn modifier(kind: ParamType, m: Option<&str>, code: &str) -> Result<Modifier, FhirError> {
    let Some(m) = m else {
        return Ok(Modifier::None);
    };
    let ok = match (kind, m) {
        (_, "missing") => Some(Modifier::Missing),
        (ParamType::String, "exact") => Some(Modifier::Exact),
        (ParamType::String, "contains") => Some(Modifier::Contains),
        (ParamType::Token, "text") => Some(Modifier::Text),
        (ParamType::Token, "not") => Some(Modifier::Not),
        (ParamType::Token, "of-type") => Some(Modifier::OfType),
        (ParamType::Uri, "above") => Some(Modifier::Above),
        (ParamType::Uri, "below") => Some(Modifier::Below),
        (ParamType::Reference, "identifier") => Some(Modifier::Identifier),
        (ParamType::Reference, t) => ResourceType::parse(t).map(Modifier::Type),
        _ => None,
    };
    ok.ok_or_else(|| {
        bad(format!(
            "modifier ':{m}' is not supported on the {} parameter '{code}'",
            kind.as_str()
        ))
    })
}

/// One value of a parameter of type `kind` with modifier `m`.
pub fn parse_value(
    kind: ParamType,
    m: &Modifier,
    raw: &str,
    code: &str,
    components: &[registry::Component],
) -> Result<Pred, FhirError> {
    let what = || {
        format!(
            "'{raw}' is not a valid {} value for '{code}'",
            kind.as_str()
        )
    };
    if *m == Modifier::Missing {
        return match raw {
            "true" => Ok(Pred::Missing(true)),
            "false" => Ok(Pred::Missing(false)),
            _ => Err(bad(format!(
                "'{code}:missing' takes true or false, not '{raw}'"
            ))),
        };
    }
    if raw.is_empty() {
        return Err(bad(format!("'{code}' has an empty value")));
    }
    Ok(match kind {
        ParamType::String => {
            let raw = unescape(raw);
            Pred::String {
                norm: normalize(&raw),
                raw,
            }
        }
        ParamType::Token => match m {
            Modifier::Text => Pred::Text(normalize(&unescape(raw))),
            Modifier::OfType => {
                let parts = split_unescaped(raw, '|');
                let [s, c, v] = parts.as_slice() else {
                    return Err(bad(format!(
                        "'{code}:of-type' takes system|code|value, not '{raw}'"
                    )));
                };
                if c.is_empty() || v.is_empty() {
                    return Err(bad(what()));
                }
                Pred::OfType {
                    system: opt(&unescape(s)),
                    code: unescape(c),
                    value: unescape(v),
                }
            }
            _ => {
                let parts = split_unescaped(raw, '|');
                match parts.as_slice() {
                    [c] => Pred::Token {
                        system: None,
                        code: Some(unescape(c)),
                    },
                    [s, c] if !(s.is_empty() && c.is_empty()) => Pred::Token {
                        system: Some(opt(&unescape(s))),
                        code: opt(&unescape(c)),
                    },
                    _ => return Err(bad(what())),
                }
            }
        },
        ParamType::Reference => {
            let raw = unescape(raw);
            if *m == Modifier::Identifier {
                let parts = split_unescaped(&raw, '|');
                return match parts.as_slice() {
                    [v] if !v.is_empty() => Ok(Pred::Identifier {
                        system: None,
                        value: v.clone(),
                    }),
                    [s, v] if !v.is_empty() => Ok(Pred::Identifier {
                        system: Some(opt(s)),
                        value: v.clone(),
                    }),
                    _ => Err(bad(what())),
                };
            }
            if let Some((t, id)) = parse_local(&raw) {
                Pred::Ref {
                    local: Some((Some(t), id)),
                    url: None,
                }
            } else if let Some(id) = ResourceId::parse(&raw) {
                Pred::Ref {
                    local: Some((None, id)),
                    url: None,
                }
            } else if raw.contains(':') {
                Pred::Ref {
                    local: None,
                    url: Some(
                        raw.split_once('|')
                            .map_or(raw.as_str(), |(u, _)| u)
                            .to_owned(),
                    ),
                }
            } else {
                return Err(bad(what()));
            }
        }
        ParamType::Date => {
            let (prefix, rest) = prefix_of(raw);
            Pred::Date {
                prefix,
                range: DateRange::parse(rest).ok_or_else(|| bad(what()))?,
            }
        }
        ParamType::Number => {
            let (prefix, rest) = prefix_of(raw);
            Pred::Number {
                prefix,
                value: Dec::parse(rest).ok_or_else(|| bad(what()))?,
            }
        }
        ParamType::Quantity => {
            let (prefix, rest) = prefix_of(raw);
            let parts = split_unescaped(rest, '|');
            let (n, system, unit) = match parts.as_slice() {
                [n] => (n.as_str(), None, None),
                [n, s, c] => (n.as_str(), opt(&unescape(s)), opt(&unescape(c))),
                _ => return Err(bad(what())),
            };
            Pred::Quantity {
                prefix,
                value: Dec::parse(n).ok_or_else(|| bad(what()))?,
                system,
                code: unit,
            }
        }
        ParamType::Uri => Pred::Uri(unescape(raw)),
        ParamType::Composite => {
            let parts = split_unescaped(raw, '$');
            if parts.len() != components.len() {
                return Err(bad(format!(
                    "'{code}' takes {} values joined by '$', not '{raw}'",
                    components.len()
                )));
            }
            let mut preds = Vec::with_capacity(parts.len());
            for (part, c) in parts.iter().zip(components) {
                preds.push(parse_value(c.kind, &Modifier::None, part, c.code(), &[])?);
            }
            Pred::Composite(preds)
        }
        ParamType::Special => {
            return Err(bad(format!(
                "'{code}' (a special parameter) is not supported by this server"
            )));
        }
    })
}

/// The parameter `code` as it applies to every type of `types`: one definition type for all,
/// or an error naming what is wrong.
fn common_param(
    types: &[ResourceType],
    code: &str,
) -> Result<Vec<&'static SearchParam>, FhirError> {
    let mut found = Vec::new();
    for t in types {
        match registry::param(*t, code) {
            Some(p) => found.push(p),
            None => {
                return Err(bad(if types.len() == 1 {
                    format!("'{code}' is not a search parameter of {t}")
                } else {
                    format!(
                        "'{code}' is not a search parameter of every type searched ({t} has none)"
                    )
                }));
            }
        }
    }
    if found.windows(2).any(|w| w[0].kind != w[1].kind) {
        return Err(bad(format!(
            "'{code}' has different types in the types searched; narrow _type"
        )));
    }
    Ok(found)
}

/// Parses one `key=value` of a search into a clause on resources of `types`.
pub fn parse_clause(
    types: &[ResourceType],
    key: &str,
    value: &str,
    depth: usize,
) -> Result<Clause, FhirError> {
    if depth > MAX_DEPTH {
        return Err(bad(format!(
            "'{key}' nests chains or _has deeper than {MAX_DEPTH}"
        )));
    }
    if let Some(rest) = key.strip_prefix("_has:") {
        let mut it = rest.splitn(3, ':');
        let (Some(t), Some(via), Some(inner)) = (it.next(), it.next(), it.next()) else {
            return Err(bad(format!(
                "'{key}' is not a valid _has (use _has:Type:reference:parameter)"
            )));
        };
        let rtype = ResourceType::parse(t)
            .ok_or_else(|| bad(format!("'{t}' in '{key}' is not a resource type")))?;
        let p = registry::param(rtype, via)
            .filter(|p| p.kind == ParamType::Reference)
            .ok_or_else(|| {
                bad(format!(
                    "'{via}' in '{key}' is not a reference parameter of {rtype}"
                ))
            })?;
        if !types.iter().all(|t| p.may_target(*t)) {
            return Err(bad(format!(
                "{rtype}.{via} in '{key}' cannot refer to the types searched"
            )));
        }
        return Ok(Clause::Has {
            rtype,
            via: via.to_owned(),
            inner: Box::new(parse_clause(&[rtype], inner, value, depth + 1)?),
        });
    }
    // A chain: the part before the first '.' is a reference parameter (with an optional type).
    if let Some((head, inner)) = key.split_once('.') {
        let (code, m) = match head.split_once(':') {
            Some((c, m)) => (c, Some(m)),
            None => (head, None),
        };
        let ps = common_param(types, code)?;
        if ps[0].kind != ParamType::Reference {
            return Err(bad(format!(
                "'{key}': only reference parameters chain ('{code}' is a {} parameter)",
                ps[0].kind.as_str()
            )));
        }
        let inner_code = inner.split([':', '.']).next().unwrap_or_default();
        let mut targets: Vec<ResourceType> = match m {
            Some(m) => vec![
                ResourceType::parse(m)
                    .ok_or_else(|| bad(format!("'{m}' in '{key}' is not a resource type")))?,
            ],
            None => {
                let mut all: Vec<ResourceType> = ps.iter().flat_map(|p| p.targets()).collect();
                all.sort();
                all.dedup();
                all.into_iter()
                    .filter(|t| {
                        inner_code.starts_with("_has") || registry::param(*t, inner_code).is_some()
                    })
                    .collect()
            }
        };
        targets.retain(|t| ps.iter().all(|p| p.may_target(*t)));
        if targets.is_empty() {
            return Err(bad(format!(
                "'{key}': no type '{code}' refers to has the parameter '{inner_code}'"
            )));
        }
        return Ok(Clause::Chain {
            via: code.to_owned(),
            inner: Box::new(parse_clause(&targets, inner, value, depth + 1)?),
            targets,
        });
    }
    let (code, m) = match key.split_once(':') {
        Some((c, m)) => (c, Some(m)),
        None => (key, None),
    };
    if code == "near" {
        return Err(FhirError::not_supported(
            "the 'near' parameter (geographic search) is not supported by this server",
        ));
    }
    if matches!(code, "_query") {
        return Err(FhirError::not_supported(
            "'_query': this server defines no named queries",
        ));
    }
    let ps = common_param(types, code)?;
    let p = ps[0];
    let modifier = modifier(p.kind, m, code)?;
    if let Modifier::Type(t) = &modifier
        && !ps.iter().all(|p| p.may_target(*t))
    {
        return Err(bad(format!("'{code}' cannot refer to a {t}")));
    }
    let values = split_unescaped(value, ',')
        .iter()
        .map(|v| parse_value(p.kind, &modifier, v, code, p.components()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Clause::Match {
        code: code.to_owned(),
        kind: p.kind,
        modifier,
        values,
    })
}

fn include(
    types: &[ResourceType],
    name: &str,
    value: &str,
    iterate: bool,
) -> Result<Include, FhirError> {
    if value == "*" {
        return Ok(Include {
            source: None,
            param: None,
            target: None,
            iterate,
        });
    }
    let mut it = value.split(':');
    let (Some(src), Some(param)) = (it.next(), it.next()) else {
        return Err(bad(format!(
            "'{name}={value}': use Type:parameter[:TargetType] or *"
        )));
    };
    let source = ResourceType::parse(src)
        .ok_or_else(|| bad(format!("'{src}' in '{name}' is not a resource type")))?;
    let target = it
        .next()
        .map(|t| {
            ResourceType::parse(t)
                .ok_or_else(|| bad(format!("'{t}' in '{name}' is not a resource type")))
        })
        .transpose()?;
    if param != "*" {
        let p = registry::param(source, param)
            .filter(|p| p.kind == ParamType::Reference)
            .ok_or_else(|| {
                bad(format!(
                    "'{param}' in '{name}' is not a reference parameter of {source}"
                ))
            })?;
        if let Some(t) = target
            && !p.may_target(t)
        {
            return Err(bad(format!("{source}.{param} cannot refer to a {t}")));
        }
    }
    let _ = types;
    Ok(Include {
        source: Some(source),
        param: (param != "*").then(|| param.to_owned()),
        target,
        iterate,
    })
}

impl Search {
    /// A compartment search (`/{owner}/{id}/{type}`, or `*` for every type in the
    /// compartment): the search of `t` with membership in the compartment as one more clause.
    /// 404 when the compartment or the type is not one R4 defines that way.
    pub fn parse_compartment(
        owner: ResourceType,
        id: &ResourceId,
        t: Option<ResourceType>,
        pairs: &[(String, String)],
        lenient: bool,
    ) -> Result<Search, FhirError> {
        if !registry::compartments().contains(&owner) {
            return Err(FhirError::NotFound(format!(
                "{owner} is not a compartment R4 defines"
            )));
        }
        let members: Vec<ResourceType> = match t {
            Some(t) => vec![t],
            None => ResourceType::all()
                .filter(|m| registry::compartment_params(owner, *m).is_some())
                .collect(),
        };
        if let Some(t) = t.filter(|t| registry::compartment_params(owner, *t).is_none()) {
            return Err(FhirError::NotFound(format!(
                "{t} is not in the {owner} compartment"
            )));
        }
        let mut s = match t {
            Some(_) => Search::parse(t, pairs, lenient)?,
            None => {
                let mut s = Search::parse(None, pairs, lenient)?;
                s.types = members;
                s
            }
        };
        s.compartment = Some((owner, id.clone()));
        Ok(s)
    }

    /// Parses the pairs of a search of `types` (one type, or the system search's candidates
    /// before `_type`). `lenient`: ignore unknown parameters and modifiers, reporting them.
    pub fn parse(
        types: Option<ResourceType>,
        pairs: &[(String, String)],
        lenient: bool,
    ) -> Result<Search, FhirError> {
        let mut s = Search {
            types: types.into_iter().collect(),
            clauses: Vec::new(),
            count: DEFAULT_COUNT,
            sort: Vec::new(),
            total: Total::Default,
            summary: Summary::False,
            elements: Vec::new(),
            include: Vec::new(),
            revinclude: Vec::new(),
            page: None,
            compartment: None,
            ignored: Vec::new(),
            canonical: String::new(),
        };
        // _type first: it decides which parameters exist.
        if types.is_none() {
            let mut listed = Vec::new();
            for (_, v) in pairs.iter().filter(|(k, _)| k == "_type") {
                for t in v.split(',') {
                    listed
                        .push(ResourceType::parse(t).ok_or_else(|| {
                            bad(format!("'{t}' in _type is not a resource type"))
                        })?);
                }
            }
            listed.sort();
            listed.dedup();
            s.types = if listed.is_empty() {
                ResourceType::all().collect()
            } else {
                listed
            };
        }
        let mut canonical = Vec::new();
        for (k, v) in pairs {
            let keep = !matches!(k.as_str(), "_page" | "_format" | "_pretty");
            if keep {
                canonical.push(format!("{}={}", url_encode(k), url_encode(v)));
            }
            let r = s.apply(k, v);
            match r {
                Ok(()) => {}
                Err(e)
                    if lenient
                        && e.status().as_u16() == 400
                        && !CONTROL.contains(&k.split(':').next().unwrap_or_default()) =>
                {
                    s.ignored.push(e.to_string());
                    if keep {
                        canonical.pop();
                    }
                }
                Err(e) => return Err(e),
            }
        }
        s.canonical = canonical.join("&");
        Ok(s)
    }

    fn apply(&mut self, k: &str, v: &str) -> Result<(), FhirError> {
        match k {
            "_count" => {
                self.count = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n <= MAX_COUNT)
                    .ok_or_else(|| bad(format!("_count must be 0 to {MAX_COUNT}, not '{v}'")))?;
            }
            "_sort" => {
                for key in v.split(',').filter(|k| !k.is_empty()) {
                    let (desc, code) = match key.strip_prefix('-') {
                        Some(c) => (true, c),
                        None => (false, key),
                    };
                    let ps = common_param(&self.types, code)?;
                    if matches!(ps[0].kind, ParamType::Composite | ParamType::Special) {
                        return Err(bad(format!("_sort: '{code}' has no sortable value")));
                    }
                    self.sort.push(Sort {
                        code: code.to_owned(),
                        descending: desc,
                    });
                }
            }
            "_total" => {
                self.total = match v {
                    "none" => Total::None,
                    "estimate" => Total::Estimate,
                    "accurate" => Total::Accurate,
                    _ => {
                        return Err(bad(format!(
                            "_total takes none, estimate or accurate, not '{v}'"
                        )));
                    }
                }
            }
            "_summary" => {
                self.summary = match v {
                    "true" => Summary::True,
                    "false" => Summary::False,
                    "count" => Summary::Count,
                    "data" => Summary::Data,
                    "text" => Summary::Text,
                    _ => {
                        return Err(bad(format!(
                            "_summary takes true, false, count, data or text, not '{v}'"
                        )));
                    }
                }
            }
            "_elements" => {
                self.elements.extend(
                    v.split(',')
                        .map(str::trim)
                        .filter(|e| !e.is_empty())
                        .map(str::to_owned),
                );
            }
            "_include" | "_include:iterate" | "_include:recurse" => {
                let i = include(&self.types, k, v, k != "_include")?;
                self.include.push(i);
            }
            "_revinclude" | "_revinclude:iterate" | "_revinclude:recurse" => {
                let i = include(&self.types, k, v, k != "_revinclude")?;
                self.revinclude.push(i);
            }
            "_page" => self.page = Some(v.to_owned()),
            "_type" | "_pretty" => {}
            "_format" => {
                if !matches!(v, "json" | "application/json" | "application/fhir+json") {
                    return Err(FhirError::NotAcceptable(format!(
                        "_format={v}: this server answers in JSON (application/fhir+json) only"
                    )));
                }
            }
            "_contained" | "_containedType" => {
                if !matches!(v, "false" | "container") {
                    return Err(FhirError::not_supported(format!(
                        "{k}={v}: searching contained resources is not supported"
                    )));
                }
            }
            _ => {
                let c = parse_clause(&self.types, k, v, 0)?;
                self.clauses.push(c);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> ResourceType {
        ResourceType::parse(s).unwrap()
    }

    fn parse(ty: &str, q: &str) -> Result<Search, FhirError> {
        Search::parse(Some(t(ty)), &url_pairs(q), false)
    }

    fn only(ty: &str, q: &str) -> Clause {
        let s = parse(ty, q).unwrap();
        assert_eq!(s.clauses.len(), 1, "{q}");
        s.clauses.into_iter().next().unwrap()
    }

    #[test]
    fn escapes_split_and_unescape() {
        assert_eq!(split_unescaped(r"a\,b,c", ','), vec!["a,b", "c"]);
        assert_eq!(split_unescaped(r"a\|b|c", '|'), vec![r"a|b", "c"]);
        assert_eq!(unescape(r"x\$y\\z"), r"x$y\z");
    }

    #[test]
    fn tokens_take_every_form() {
        let vals = |q: &str| match only("Observation", q) {
            Clause::Match { values, .. } => values,
            c => panic!("{c:?}"),
        };
        assert_eq!(
            vals("code=http://loinc.org|8480-6,|x,sys|,y"),
            vec![
                Pred::Token {
                    system: Some(Some("http://loinc.org".into())),
                    code: Some("8480-6".into())
                },
                Pred::Token {
                    system: Some(None),
                    code: Some("x".into())
                },
                Pred::Token {
                    system: Some(Some("sys".into())),
                    code: None
                },
                Pred::Token {
                    system: None,
                    code: Some("y".into())
                },
            ]
        );
        assert!(parse("Observation", "code=|").is_err());
        assert!(matches!(
            only("Observation", "code:text=Blood%20Pressure"),
            Clause::Match {
                modifier: Modifier::Text,
                ..
            }
        ));
    }

    #[test]
    fn prefixes_dates_numbers_quantities() {
        match only("Observation", "date=ge2020-01") {
            Clause::Match { values, .. } => assert!(matches!(
                values[0],
                Pred::Date {
                    prefix: Prefix::Ge,
                    ..
                }
            )),
            c => panic!("{c:?}"),
        }
        match only(
            "Observation",
            "value-quantity=lt5.4|http://unitsofmeasure.org|mg",
        ) {
            Clause::Match { values, .. } => assert_eq!(
                values[0],
                Pred::Quantity {
                    prefix: Prefix::Lt,
                    value: Dec::parse("5.4").unwrap(),
                    system: Some("http://unitsofmeasure.org".into()),
                    code: Some("mg".into())
                }
            ),
            c => panic!("{c:?}"),
        }
        assert!(parse("Observation", "date=2020-13").is_err());
        assert!(parse("Observation", "value-quantity=abc").is_err());
    }

    #[test]
    fn chains_has_and_composites() {
        match only("Observation", "subject:Patient.name=peter") {
            Clause::Chain {
                via,
                targets,
                inner,
            } => {
                assert_eq!(via, "subject");
                assert_eq!(targets, vec![t("Patient")]);
                assert!(matches!(*inner, Clause::Match { ref code, .. } if code == "name"));
            }
            c => panic!("{c:?}"),
        }
        match only("Patient", "_has:Observation:patient:code=1234") {
            Clause::Has { rtype, via, .. } => {
                assert_eq!((rtype, via.as_str()), (t("Observation"), "patient"))
            }
            c => panic!("{c:?}"),
        }
        match only(
            "Observation",
            "code-value-quantity=http://loinc.org|8480-6$lt60",
        ) {
            Clause::Match { values, .. } => {
                assert!(matches!(&values[0], Pred::Composite(p) if p.len() == 2))
            }
            c => panic!("{c:?}"),
        }
        assert!(parse("Observation", "code-value-quantity=x").is_err());
    }

    #[test]
    fn unknown_parameters_and_modifiers_are_named() {
        let e = parse("Patient", "foo=1").unwrap_err();
        assert!(e.to_string().contains("'foo'"), "{e}");
        let e = parse("Patient", "name:below=x").unwrap_err();
        assert!(e.to_string().contains(":below"), "{e}");
        assert!(parse("Location", "near=1|2|3|km").is_err());
        let s = Search::parse(Some(t("Patient")), &url_pairs("foo=1&name=x"), true).unwrap();
        assert_eq!(s.clauses.len(), 1);
        assert_eq!(s.ignored.len(), 1);
        assert_eq!(s.canonical, "name=x");
    }

    #[test]
    fn result_parameters() {
        let s = parse("Patient", "_count=5&_sort=-birthdate,name&_total=accurate&_summary=count&_elements=name,gender&_include=Patient:organization&_revinclude:iterate=Provenance:target&_page=abc").unwrap();
        assert_eq!(s.count, 5);
        assert_eq!(
            s.sort,
            vec![
                Sort {
                    code: "birthdate".into(),
                    descending: true
                },
                Sort {
                    code: "name".into(),
                    descending: false
                }
            ]
        );
        assert_eq!((s.total, s.summary), (Total::Accurate, Summary::Count));
        assert_eq!(s.elements, vec!["name", "gender"]);
        assert_eq!(s.include.len(), 1);
        assert!(s.revinclude[0].iterate);
        assert_eq!(s.page.as_deref(), Some("abc"));
        assert!(!s.canonical.contains("_page"));
        assert!(parse("Patient", "_count=1001").is_err());
        assert!(parse("Patient", "_sort=foo").is_err());
        let sys =
            Search::parse(None, &url_pairs("_type=Patient,Observation&_id=x"), false).unwrap();
        assert_eq!(sys.types, vec![t("Observation"), t("Patient")]);
        assert!(
            Search::parse(None, &url_pairs("_type=Patient,Observation&name=x"), false).is_err()
        );
    }
}
