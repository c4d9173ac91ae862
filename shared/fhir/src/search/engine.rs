//! The search read path (`docs/architecture.md`, "FHIR", "Search read path"):
//!
//! 1. chains and `_has` are resolved first, each by an inner search, into sets of resources
//!    (a reference clause on the chained parameter, an `_id` clause for `_has`);
//! 2. the planner picks the most selective clause (equalities before prefixes before ranges;
//!    the type's `_id` partition when nothing can drive) and turns its values into key ranges
//!    of that parameter's index partition, with an exact filter on the entry itself for dates;
//! 3. consistent Queries read the ranges in order; the candidates' current versions are read
//!    with one consistent BatchGet per page; an entry counts only when its commit token is the
//!    current version's, and only at the resource's first entry in the scan (so a resource with
//!    several matching values is returned once, on one page); every clause is then checked in
//!    memory on the body ([`matcher`]);
//! 4. the page fills, or the read budget ends it early with a cursor to continue from.
//!
//! `_sort` sorts the whole result in memory (up to [`MAX_SORTED`] resources); `_include` and
//! `_revinclude` read references of the page and reference indexes pointing at it. All reads
//! go through the tenant's [`Store`], so nothing here can reach another tenant.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::ops::Bound;
use std::pin::Pin;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use storage::{Key, SkRange};

use super::extract::{self, COMPONENT_SEP, SEP, param_values};
use super::matcher::{self, approx_window};
use super::query::{
    Clause, Include, Modifier, Pred, Prefix, Search, Sort, Summary, Total, compartment_clause,
};
use super::registry::{self, ParamType};
use super::value::{
    DateRange, Dec, MAX_INDEXED_CHARS, SearchValue, instant, parse_instant, parse_local,
};
use crate::error::FhirError;
use crate::keys::{self, SHARDS};
use crate::store::{Current, IndexHit, IndexRange, Store, Version};
use crate::types::{ResourceId, ResourceType};

/// Most resources a sorted search orders in memory.
pub const MAX_SORTED: usize = 2000;
/// Most resources a chain or `_has` may resolve to.
pub const MAX_SET: usize = 1000;
/// How many times the read budget a total (`_total=accurate`, `_summary=count`) may read.
pub const COUNT_BUDGET_FACTOR: usize = 25;
/// Most rounds of `:iterate` includes.
const MAX_ITERATE: usize = 3;

/// Tunables of one search.
#[derive(Debug, Clone)]
pub struct Options {
    /// The caller's FHIR base (`https://host/fhir[/tenant/<id>]`): absolute references on it
    /// are searched as relative ones.
    pub base: String,
    /// Most items (index entries and heads) one request reads.
    pub max_reads: usize,
    /// Most matches a sorted search orders in memory; beyond, it reads the sort parameter's
    /// index in order ([`MAX_SORTED`]).
    pub max_sorted: usize,
}

impl Options {
    pub fn new(base: impl Into<String>) -> Self {
        Options {
            base: base.into(),
            max_reads: 4000,
            max_sorted: MAX_SORTED,
        }
    }
}

/// Where a search continues (sealed into the `next` link by the caller).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The searched type (index into [`Search::types`]).
    #[serde(rename = "t", default)]
    pub ty: usize,
    /// The segment of that type's plan.
    #[serde(rename = "s", default)]
    pub seg: usize,
    /// The last sort key consumed in that segment.
    #[serde(rename = "a", default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Sorted searches: the offset of the next page.
    #[serde(rename = "o", default)]
    pub offset: usize,
    /// A sorted search too large to sort in memory, read in the sort parameter's order.
    #[serde(rename = "x", default, skip_serializing_if = "std::ops::Not::not")]
    pub sort_scan: bool,
}

/// What a search read: for tests and the benchmark.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Explain {
    /// The driving index of each searched type (`Patient.name prefix`, `Patient._id all`).
    pub driving: Vec<String>,
    pub queries: usize,
    pub entries_read: usize,
    pub heads_read: usize,
}

/// The result of one search request.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub matches: Vec<Version>,
    pub included: Vec<Version>,
    pub next: Option<Cursor>,
    pub total: Option<usize>,
    pub explain: Explain,
}

/// An entry filter: what a date entry's own value must satisfy.
#[derive(Debug, Clone, Copy)]
enum Filter {
    None,
    /// A two-ended date entry (`a<lo>|<hi>` or `b<hi>|<lo>`).
    Range(Prefix, DateRange),
    /// A point entry (`_lastUpdated`).
    Point(Prefix, DateRange),
}

impl Filter {
    fn accepts(&self, value: &str) -> bool {
        match self {
            Filter::None => true,
            Filter::Range(p, q) => {
                let Some(rest) = value.get(1..) else {
                    return false;
                };
                let Some((x, y)) = rest.split_once(SEP) else {
                    return false;
                };
                let (Some(x), Some(y)) = (parse_instant(x), parse_instant(y)) else {
                    return false;
                };
                let d = if value.starts_with('a') {
                    DateRange { lo: x, hi: y }
                } else {
                    DateRange { lo: y, hi: x }
                };
                matcher::date_matches(*p, *q, d)
            }
            Filter::Point(p, q) => parse_instant(value)
                .is_some_and(|t| matcher::date_matches(*p, *q, DateRange { lo: t, hi: t })),
        }
    }
}

/// One key range of one index partition.
#[derive(Debug, Clone)]
struct Segment {
    param: String,
    shard: Option<u32>,
    range: SkRange,
    filter: Filter,
    /// Ascending sort-key order (descending for `_sort=-x` driven by `x`'s index).
    forward: bool,
    /// Take only resources without a value for this parameter (a sort-driven scan's last
    /// segment: those sort last).
    missing: Option<String>,
    /// Every shard of a sharded partition, merged in sort-key order (a sort by `_lastUpdated`).
    merged: bool,
}

impl Segment {
    fn new(param: &str, shard: Option<u32>, range: SkRange, filter: Filter) -> Self {
        Segment {
            param: param.to_owned(),
            shard,
            range,
            filter,
            forward: true,
            missing: None,
            merged: false,
        }
    }

    /// The partitions this segment reads.
    fn partitions(&self, store: &Store<'_>, t: ResourceType) -> Vec<String> {
        if self.merged {
            (0..SHARDS)
                .map(|s| store.index_partition(t, &self.param, Some(s)))
                .collect()
        } else {
            vec![store.index_partition(t, &self.param, self.shard)]
        }
    }
}

/// `r` narrowed to the keys after `after` in scan order (forward: above it).
fn narrow(r: &SkRange, after: &str, forward: bool) -> SkRange {
    let (lo, hi) = match r {
        SkRange::All => (Bound::Unbounded, Bound::Unbounded),
        SkRange::BeginsWith(p) => (
            Bound::Included(p.clone()),
            Bound::Excluded(format!("{p}\u{10FFFF}")),
        ),
        SkRange::Between(a, b) => (Bound::Included(a.clone()), Bound::Included(b.clone())),
        SkRange::Range(lo, hi) => (lo.clone(), hi.clone()),
    };
    if forward {
        SkRange::Range(Bound::Excluded(after.to_owned()), hi)
    } else {
        SkRange::Range(lo, Bound::Excluded(after.to_owned()))
    }
}

/// How one type is searched: the segments read in order.
#[derive(Debug, Clone)]
struct Plan {
    segments: Vec<Segment>,
    driving: String,
}

/// Sort keys are `<value>` U+001F `<id>` U+001F `<token>`: the entries of exactly `v`.
fn eq(v: &str) -> SkRange {
    if v.chars().count() > MAX_INDEXED_CHARS {
        let cut: String = v.chars().take(MAX_INDEXED_CHARS).collect();
        SkRange::BeginsWith(cut)
    } else {
        SkRange::BeginsWith(format!("{v}\u{1f}"))
    }
}

/// The entries whose value starts with `v`.
fn prefix(v: &str) -> SkRange {
    SkRange::BeginsWith(v.chars().take(MAX_INDEXED_CHARS).collect())
}

/// Bounds over fixed-structure values (instants, sortable numbers): values `>= v`, `> v`,
/// `< v`, `<= v`, inside the run of values starting with `run`.
fn bounded(run: &str, lo: Bound1, hi: Bound1) -> SkRange {
    // A value equal to v is followed by U+001F (or U+001E inside a date entry); U+0020 sorts
    // after both and before every character a longer value continues with.
    let lo = match lo {
        Some((v, true)) => Bound::Included(format!("{run}{v}")),
        Some((v, false)) => Bound::Included(format!("{run}{v}\u{20}")),
        None => Bound::Included(run.to_owned()),
    };
    let hi = match hi {
        Some((v, true)) => Bound::Excluded(format!("{run}{v}\u{20}")),
        Some((v, false)) => Bound::Excluded(format!("{run}{v}")),
        None => Bound::Excluded(format!("{run}\u{7f}")),
    };
    SkRange::Range(lo, hi)
}

/// Whether `sk` is inside `r` (the same test the storage backends apply).
fn in_range(r: &SkRange, sk: &str) -> bool {
    match r {
        SkRange::All => true,
        SkRange::BeginsWith(p) => sk.starts_with(p.as_str()),
        SkRange::Between(a, b) => a.as_str() <= sk && sk <= b.as_str(),
        SkRange::Range(lo, hi) => {
            let lo_ok = match lo {
                Bound::Included(v) => sk >= v.as_str(),
                Bound::Excluded(v) => sk > v.as_str(),
                Bound::Unbounded => true,
            };
            let hi_ok = match hi {
                Bound::Included(v) => sk <= v.as_str(),
                Bound::Excluded(v) => sk < v.as_str(),
                Bound::Unbounded => true,
            };
            lo_ok && hi_ok
        }
    }
}

/// The key ranges of one value of a clause, with a rank (lower is more selective); `None` when
/// the value cannot drive (`:missing`, `:not`, `:text`, `:contains`, `ne`, `system|`).
fn value_ranges(
    t: ResourceType,
    code: &str,
    kind: ParamType,
    m: &Modifier,
    pred: &Pred,
) -> Option<(u8, Vec<(SkRange, Filter)>)> {
    let one = |rank: u8, r: SkRange| Some((rank, vec![(r, Filter::None)]));
    if code == "_lastUpdated" {
        let Pred::Date {
            prefix: p,
            range: q,
        } = pred
        else {
            return None;
        };
        let (lo, hi) = date_point_bounds(*p, *q)?;
        return Some((6, vec![(bounded("", lo, hi), Filter::Point(*p, *q))]));
    }
    if extract::is_full_text(code) {
        return None;
    }
    match (kind, m, pred) {
        (_, Modifier::Missing | Modifier::Not | Modifier::Text | Modifier::Contains, _) => None,
        (_, _, Pred::Ids(set)) => {
            let mut keys: Vec<String> = set
                .iter()
                .filter(|(st, _)| code != "_id" || *st == t)
                .map(|(st, id)| {
                    if code == "_id" {
                        id.as_str().to_owned()
                    } else {
                        extract::local_key(*st, id)
                    }
                })
                .collect();
            keys.sort();
            keys.dedup();
            Some((0, keys.iter().map(|k| (eq(k), Filter::None)).collect()))
        }
        (ParamType::Token, _, Pred::Token { code: Some(c), .. }) if code == "_id" => one(0, eq(c)),
        (
            ParamType::Token,
            _,
            Pred::Token {
                system,
                code: Some(c),
            },
        ) => match system {
            None => one(2, prefix(&extract::token_key(c, None))),
            Some(s) => one(1, eq(&extract::token_key(c, s.as_deref()))),
        },
        (ParamType::Token, _, Pred::OfType { value, .. }) => {
            one(2, prefix(&extract::token_key(value, None)))
        }
        (ParamType::String, _, Pred::String { norm, .. }) => {
            let rank = if norm.chars().count() >= 3 { 3 } else { 5 };
            one(rank, prefix(norm))
        }
        (ParamType::Reference, _, Pred::Ref { local, url }) => {
            let mut keys = Vec::new();
            if let Some((want, id)) = local {
                let types: Vec<ResourceType> = match (want, m) {
                    (Some(wt), _) => vec![*wt],
                    (None, Modifier::Type(mt)) => vec![*mt],
                    (None, _) => registry::param(t, code)?.targets().collect(),
                };
                keys.extend(types.iter().map(|rt| extract::local_key(*rt, id)));
            }
            if let Some(u) = url {
                keys.push(u.clone());
            }
            keys.sort();
            keys.dedup();
            Some((1, keys.iter().map(|k| (eq(k), Filter::None)).collect()))
        }
        (ParamType::Reference, _, Pred::Identifier { system, value }) => match system {
            None => one(2, prefix(&extract::identifier_key(value, None))),
            Some(s) => one(1, eq(&extract::identifier_key(value, s.as_deref()))),
        },
        (
            ParamType::Date,
            _,
            Pred::Date {
                prefix: p,
                range: q,
            },
        ) => {
            let (run, lo, hi) = date_run_bounds(*p, *q)?;
            let rank = if *p == Prefix::Eq { 4 } else { 5 };
            Some((rank, vec![(bounded(run, lo, hi), Filter::Range(*p, *q))]))
        }
        (ParamType::Number, _, Pred::Number { prefix: p, value }) => {
            let (lo, hi) = number_bounds(*p, *value)?;
            one(4, bounded("", lo, hi))
        }
        (
            ParamType::Quantity,
            _,
            Pred::Quantity {
                prefix: p,
                value,
                system,
                code: unit,
            },
        ) => {
            let (lo, hi) = number_bounds(*p, *value)?;
            match (system, unit) {
                (Some(s), Some(u)) => {
                    let run = format!(
                        "u{}{SEP}{}{SEP}",
                        super::value::clean(s),
                        super::value::clean(u)
                    );
                    one(3, bounded(&run, lo, hi))
                }
                _ => one(5, bounded("n", lo, hi)),
            }
        }
        (ParamType::Uri, Modifier::Below, Pred::Uri(u)) => one(5, prefix(u)),
        (ParamType::Uri, Modifier::Above, Pred::Uri(u)) => {
            let mut keys: Vec<String> = u
                .char_indices()
                .filter(|(_, c)| *c == '/')
                .flat_map(|(i, _)| [u[..i].to_owned(), u[..=i].to_owned()])
                .chain([u.clone()])
                .filter(|k| !k.is_empty())
                .collect();
            keys.sort();
            keys.dedup();
            Some((5, keys.iter().map(|k| (eq(k), Filter::None)).collect()))
        }
        (ParamType::Uri | ParamType::Reference, _, Pred::Uri(u)) => one(1, eq(u)),
        (ParamType::Composite, _, Pred::Composite(parts)) => match parts.first()? {
            Pred::Token {
                system,
                code: Some(c),
            } => {
                let key = match system {
                    Some(s) => format!("{}{COMPONENT_SEP}", extract::token_key(c, s.as_deref())),
                    None => extract::token_key(c, None),
                };
                one(3, prefix(&key))
            }
            _ => None,
        },
        _ => None,
    }
}

/// A bound on index values: `(value, inclusive)`.
type Bound1 = Option<(String, bool)>;
type Bounds = (Bound1, Bound1);

/// `(lower, upper)` bounds, each `(value, inclusive)`, of the numbers a prefix admits.
fn number_bounds(p: Prefix, v: Dec) -> Option<Bounds> {
    let s = |d: Dec| d.sortable();
    Some(match p {
        Prefix::Eq => {
            let (lo, hi) = v.precision_range()?;
            (Some((s(lo), true)), Some((s(hi), false)))
        }
        Prefix::Gt | Prefix::Sa => (Some((s(v), false)), None),
        Prefix::Lt | Prefix::Eb => (None, Some((s(v), false))),
        Prefix::Ge => (Some((s(v), true)), None),
        Prefix::Le => (None, Some((s(v), true))),
        Prefix::Ap => {
            let (lo, hi) = v.approx_range()?;
            (Some((s(lo), true)), Some((s(hi), true)))
        }
        Prefix::Ne => return None,
    })
}

/// Bounds over point instants (`_lastUpdated`).
fn date_point_bounds(p: Prefix, q: DateRange) -> Option<Bounds> {
    let (lo, hi) = (instant(q.lo), instant(q.hi));
    Some(match p {
        Prefix::Eq => (Some((lo, true)), Some((hi, true))),
        Prefix::Gt | Prefix::Sa => (Some((hi, false)), None),
        Prefix::Lt | Prefix::Eb => (None, Some((lo, false))),
        Prefix::Ge => (Some((lo, true)), None),
        Prefix::Le => (None, Some((hi, true))),
        Prefix::Ap => {
            let w = approx_window(q);
            (Some((instant(w.lo), true)), Some((instant(w.hi), true)))
        }
        Prefix::Ne => return None,
    })
}

/// The run (`a`: by start, `b`: by end) and bounds that hold every range a prefix admits;
/// the entry filter then decides exactly.
fn date_run_bounds(p: Prefix, q: DateRange) -> Option<(&'static str, Bound1, Bound1)> {
    let (lo, hi) = (instant(q.lo), instant(q.hi));
    Some(match p {
        // start within [lo, hi]
        Prefix::Eq => ("a", Some((lo, true)), Some((hi, true))),
        // end after hi
        Prefix::Gt => ("b", Some((hi, false)), None),
        // start before lo
        Prefix::Lt => ("a", None, Some((lo, false))),
        // gt or eq: end at or after lo
        Prefix::Ge => ("b", Some((lo, true)), None),
        // lt or eq: start at or before hi
        Prefix::Le => ("a", None, Some((hi, true))),
        Prefix::Sa => ("a", Some((hi, false)), None),
        Prefix::Eb => ("b", None, Some((lo, false))),
        Prefix::Ap => {
            let w = approx_window(q);
            ("b", Some((instant(w.lo), true)), None)
        }
        Prefix::Ne => return None,
    })
}

/// The segments and rank of one clause, when it can drive.
fn clause_segments(t: ResourceType, c: &Clause) -> Option<(u8, Vec<Segment>)> {
    match c {
        Clause::Match {
            code,
            kind,
            modifier,
            values,
        } => {
            if values.is_empty() {
                return None;
            }
            let mut rank = 0u8;
            let mut segments = Vec::new();
            for v in values {
                let (r, ranges) = value_ranges(t, code, *kind, modifier, v)?;
                rank = rank.max(r);
                for (range, filter) in ranges {
                    let shards: Vec<Option<u32>> = if code == "_lastUpdated" {
                        (0..SHARDS).map(Some).collect()
                    } else {
                        vec![None]
                    };
                    for shard in shards {
                        segments.push(Segment::new(code, shard, range.clone(), filter));
                    }
                }
            }
            if values.len() > 1 {
                rank = rank.saturating_add(1);
            }
            Some((rank, segments))
        }
        Clause::Any(any) => {
            let mut rank = 0u8;
            let mut segments = Vec::new();
            for c in any {
                let (r, mut s) = clause_segments(t, c)?;
                rank = rank.max(r);
                segments.append(&mut s);
            }
            Some((rank.saturating_add(1), segments))
        }
        Clause::Chain { .. } | Clause::Has { .. } => None,
    }
}

/// The plan for type `t`: the most selective clause's ranges, or the whole `_id` partition.
fn plan(t: ResourceType, clauses: &[Clause]) -> Plan {
    let mut best: Option<(u8, Vec<Segment>)> = None;
    for c in clauses {
        if let Some((rank, segments)) = clause_segments(t, c)
            && best.as_ref().is_none_or(|(b, _)| rank < *b)
        {
            best = Some((rank, segments));
        }
    }
    let segments = best
        .map(|(_, s)| s)
        .unwrap_or_else(|| vec![Segment::new("_id", None, SkRange::All, Filter::None)]);
    let mut params: Vec<&str> = segments.iter().map(|s| s.param.as_str()).collect();
    params.dedup();
    Plan {
        driving: format!("{t}.{} ({} ranges)", params.join("|"), segments.len()),
        segments,
    }
}

/// The plan of a search sorted by one parameter whose result is too large to sort in memory:
/// that parameter's index in the sort order (ascending by each resource's smallest value,
/// descending by its largest: dates by start or by end), then the resources without a value.
/// `None` for parameters that cannot be read in order (composites); `_lastUpdated`'s shards
/// are read together and merged.
fn sort_plan(t: ResourceType, sort: &Sort) -> Option<Plan> {
    let forward = !sort.descending;
    let code = sort.code.as_str();
    let range = match code {
        "_id" | "_lastUpdated" => SkRange::All,
        _ => match registry::param(t, code)?.kind {
            ParamType::Date => SkRange::BeginsWith(if forward { "a" } else { "b" }.into()),
            ParamType::Quantity => SkRange::BeginsWith("n".into()),
            // Not the `:identifier` values (U+001D...), which the in-memory order ignores too.
            ParamType::Reference => SkRange::Range(Bound::Included(" ".into()), Bound::Unbounded),
            ParamType::String | ParamType::Token | ParamType::Number | ParamType::Uri => {
                SkRange::All
            }
            ParamType::Composite | ParamType::Special => return None,
        },
    };
    let mut by_value = Segment::new(code, None, range, Filter::None);
    by_value.forward = forward;
    by_value.merged = code == "_lastUpdated";
    let mut segments = vec![by_value];
    if !matches!(code, "_id" | "_lastUpdated") {
        let mut missing = Segment::new("_id", None, SkRange::All, Filter::None);
        missing.forward = forward;
        missing.missing = Some(code.to_owned());
        segments.push(missing);
    }
    Some(Plan {
        driving: format!(
            "{t}.{code} (sort order, {})",
            if forward { "ascending" } else { "descending" }
        ),
        segments,
    })
}

/// The position of a resource's first entry in the scan of `plan`: `(segment, sort key)`.
fn first_position(
    store: &Store<'_>,
    t: ResourceType,
    plan: &Plan,
    idx: &[Key],
) -> Option<(usize, String)> {
    for (i, seg) in plan.segments.iter().enumerate() {
        let pks = seg.partitions(store, t);
        let mut best: Option<&str> = None;
        for k in idx.iter().filter(|k| pks.contains(&k.pk)) {
            if !in_range(&seg.range, &k.sk) {
                continue;
            }
            let Some((value, ..)) = keys::parse_index_sk(&k.sk) else {
                continue;
            };
            if !seg.filter.accepts(&value) {
                continue;
            }
            // First in this segment's order: the smallest key, or the largest when descending.
            let better = best.is_none_or(|b| (k.sk.as_str() < b) == seg.forward);
            if better {
                best = Some(&k.sk);
            }
        }
        if let Some(b) = best {
            return Some((i, b.to_owned()));
        }
    }
    None
}

type Found = Vec<Version>;

/// One search's reads against one tenant's store.
pub struct Engine<'a> {
    store: &'a Store<'a>,
    opts: &'a Options,
    budget: usize,
    /// The compartment a search is confined to (not its chains and `_has`).
    compartment: Option<(ResourceType, ResourceId)>,
    /// A sort-driven page: read in this key's order ([`sort_plan`]).
    sort_drive: Option<Sort>,
    pub explain: Explain,
}

fn costly(what: &str) -> FhirError {
    FhirError::Invalid {
        code: "too-costly",
        msg: format!("{what}; add a more selective parameter"),
    }
}

impl<'a> Engine<'a> {
    pub fn new(store: &'a Store<'a>, opts: &'a Options) -> Self {
        Engine {
            store,
            opts,
            budget: opts.max_reads,
            compartment: None,
            sort_drive: None,
            explain: Explain::default(),
        }
    }

    fn spend(&mut self, n: usize) {
        self.budget = self.budget.saturating_sub(n);
    }

    /// Up to `want` matches of `clauses` (resolved) over `types`, from `from`; the cursor
    /// to continue from when more may remain.
    async fn scan(
        &mut self,
        types: &[ResourceType],
        clauses: &[Clause],
        want: usize,
        from: Cursor,
    ) -> Result<(Found, Option<Cursor>), FhirError> {
        let mut out: Found = Vec::new();
        let mut cur = from;
        while cur.ty < types.len() {
            let t = types[cur.ty];
            let owned: Vec<Clause>;
            let clauses: &[Clause] = match &self.compartment {
                Some((owner, id)) => {
                    let Some(member) = compartment_clause(*owner, id, t) else {
                        cur.ty += 1;
                        continue;
                    };
                    owned = clauses.iter().cloned().chain([member]).collect();
                    &owned
                }
                None => clauses,
            };
            let plan = match self.sort_drive.as_ref().and_then(|k| sort_plan(t, k)) {
                Some(p) => p,
                None => plan(t, clauses),
            };
            if cur.seg == 0 && cur.after.is_none() {
                self.explain.driving.push(plan.driving.clone());
            }
            while cur.seg < plan.segments.len() {
                let seg = &plan.segments[cur.seg];
                if want == out.len() || self.budget == 0 {
                    return Ok((out, Some(cur)));
                }
                // Entries for the rest of the page and one more (to know whether more
                // remain); heads only for the candidates the page can still take.
                let remaining = want - out.len();
                let limit = remaining.saturating_add(1).min(self.budget).max(1);
                let (hits, more) = self
                    .read_segment(t, seg, cur.after.as_deref(), limit)
                    .await?;
                self.explain.entries_read += hits.len();
                self.spend(hits.len());
                let hits: Vec<_> = hits
                    .into_iter()
                    .filter(|h| seg.filter.accepts(&h.value))
                    .collect();
                let mut ids: Vec<(ResourceType, ResourceId)> = Vec::new();
                let mut taken = 0;
                for h in &hits {
                    if ids.len() == remaining {
                        break;
                    }
                    taken += 1;
                    if !ids.iter().any(|(_, id)| *id == h.id) {
                        ids.push((t, h.id.clone()));
                    }
                }
                let more = if taken < hits.len() {
                    hits.get(taken - 1)
                        .map(|h| h.sk.clone())
                        .or(cur.after.clone())
                } else {
                    more
                };
                let current = if ids.is_empty() {
                    HashMap::new()
                } else {
                    self.explain.heads_read += ids.len();
                    self.spend(ids.len());
                    self.store.current(&ids).await?
                };
                let mut stopped = None;
                for h in &hits[..taken] {
                    let Some(c) = current.get(&(t, h.id.clone())) else {
                        continue;
                    };
                    if c.version.token != h.token
                        || first_position(self.store, t, &plan, &c.idx)
                            != Some((cur.seg, h.sk.clone()))
                        || !self.check(t, c, clauses)
                        || seg
                            .missing
                            .as_deref()
                            .is_some_and(|code| has_value(t, code, c))
                    {
                        continue;
                    }
                    out.push(c.version.clone());
                    if out.len() == want {
                        stopped = Some(h.sk.clone());
                        break;
                    }
                }
                match (stopped, more) {
                    (Some(sk), more) => {
                        // Full. More may remain after this entry, in later segments or types.
                        let after_here = hits[..taken].last().is_some_and(|l| l.sk != sk);
                        if after_here || more.is_some() {
                            cur.after = Some(sk);
                        } else {
                            cur.seg += 1;
                            cur.after = None;
                            if cur.seg == plan.segments.len() {
                                cur.ty += 1;
                                cur.seg = 0;
                            }
                            if cur.ty == types.len() {
                                return Ok((out, None));
                            }
                        }
                        return Ok((out, Some(cur)));
                    }
                    (None, Some(sk)) => cur.after = Some(sk),
                    (None, None) => {
                        cur.seg += 1;
                        cur.after = None;
                    }
                }
            }
            cur.ty += 1;
            cur.seg = 0;
            cur.after = None;
        }
        Ok((out, None))
    }

    /// One page of a segment's entries after the sort key `after`, in the segment's order. A
    /// merged segment reads every shard of a sharded partition and merges them by sort key
    /// (its keys continue after `after` by a bound, since `after` is another shard's key).
    async fn read_segment(
        &mut self,
        t: ResourceType,
        seg: &Segment,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<IndexHit>, Option<String>), FhirError> {
        if !seg.merged {
            self.explain.queries += 1;
            let r = IndexRange {
                param: &seg.param,
                shard: seg.shard,
                range: seg.range.clone(),
                forward: seg.forward,
            };
            return Ok(self.store.index_page(t, &r, after, limit).await?);
        }
        let range = match after {
            None => seg.range.clone(),
            Some(a) => narrow(&seg.range, a, seg.forward),
        };
        let mut hits = Vec::new();
        let mut more = false;
        for shard in 0..SHARDS {
            self.explain.queries += 1;
            let r = IndexRange {
                param: &seg.param,
                shard: Some(shard),
                range: range.clone(),
                forward: seg.forward,
            };
            let (h, m) = self.store.index_page(t, &r, None, limit).await?;
            more |= m.is_some();
            hits.extend(h);
        }
        hits.sort_by(|a, b| {
            let o = a.sk.cmp(&b.sk);
            if seg.forward { o } else { o.reverse() }
        });
        if hits.len() > limit {
            hits.truncate(limit);
            more = true;
        }
        let next = if more {
            hits.last().map(|h| h.sk.clone())
        } else {
            None
        };
        Ok((hits, next))
    }

    /// Up to `max` matches, or `None` when there are more (or the budget ends first).
    async fn collect_upto(
        &mut self,
        types: &[ResourceType],
        clauses: &[Clause],
        max: usize,
    ) -> Result<Option<Found>, FhirError> {
        let (found, next) = self
            .scan(types, clauses, max.saturating_add(1), Cursor::default())
            .await?;
        Ok((found.len() <= max && next.is_none()).then_some(found))
    }

    fn check(&self, t: ResourceType, c: &Current, clauses: &[Clause]) -> bool {
        let Some(body) = c.version.resource() else {
            return false;
        };
        clauses
            .iter()
            .all(|cl| matcher::matches(cl, t, &c.version.id, &body))
    }

    /// Every match (at most `max`); a 400 when there are more or the budget ends first.
    async fn collect(
        &mut self,
        types: &[ResourceType],
        clauses: &[Clause],
        max: usize,
        what: &str,
    ) -> Result<Found, FhirError> {
        let (found, next) = self
            .scan(types, clauses, max.saturating_add(1), Cursor::default())
            .await?;
        if found.len() > max {
            return Err(costly(&format!("{what} matches more than {max} resources")));
        }
        if next.is_some() {
            return Err(costly(&format!(
                "{what} reads more than {} index entries",
                self.opts.max_reads
            )));
        }
        Ok(found)
    }

    /// Resolves chains and `_has` into plain clauses, and absolute references on this server's
    /// base into relative ones.
    fn resolve<'b>(
        &'b mut self,
        types: &'b [ResourceType],
        clause: &'b Clause,
    ) -> Pin<Box<dyn Future<Output = Result<Clause, FhirError>> + Send + 'b>> {
        Box::pin(async move {
            match clause {
                Clause::Match {
                    code,
                    kind,
                    modifier,
                    values,
                } => {
                    let base = format!("{}/", self.opts.base.trim_end_matches('/'));
                    let values = values
                        .iter()
                        .map(|v| match v {
                            Pred::Ref {
                                local: None,
                                url: Some(u),
                            } => match u.strip_prefix(&base).and_then(parse_local) {
                                Some((t, id)) => Pred::Ref {
                                    local: Some((Some(t), id)),
                                    url: None,
                                },
                                None => v.clone(),
                            },
                            _ => v.clone(),
                        })
                        .collect();
                    Ok(Clause::Match {
                        code: code.clone(),
                        kind: *kind,
                        modifier: modifier.clone(),
                        values,
                    })
                }
                Clause::Any(any) => {
                    let mut out = Vec::with_capacity(any.len());
                    for c in any {
                        out.push(self.resolve(types, c).await?);
                    }
                    Ok(Clause::Any(out))
                }
                Clause::Chain {
                    via,
                    targets,
                    inner,
                } => {
                    let inner = self.resolve(targets, inner).await?;
                    let found = self
                        .collect(targets, &[inner], MAX_SET, &format!("the chain on '{via}'"))
                        .await?;
                    let set: Vec<(ResourceType, ResourceId)> =
                        found.into_iter().map(|v| (v.rtype, v.id)).collect();
                    Ok(Clause::Match {
                        code: via.clone(),
                        kind: ParamType::Reference,
                        modifier: Modifier::None,
                        values: if set.is_empty() {
                            Vec::new()
                        } else {
                            vec![Pred::Ids(set)]
                        },
                    })
                }
                Clause::Has { rtype, via, inner } => {
                    let one = [*rtype];
                    let inner = self.resolve(&one, inner).await?;
                    let found = self
                        .collect(&one, &[inner], MAX_SET, &format!("_has:{rtype}:{via}"))
                        .await?;
                    let p = registry::param(*rtype, via);
                    let mut set = Vec::new();
                    for v in &found {
                        let (Some(p), Some(body)) = (p, v.resource()) else {
                            continue;
                        };
                        for sv in param_values(p, &body) {
                            if let SearchValue::Reference(r) = sv
                                && let Some((t, id)) = r.local.filter(|(t, _)| types.contains(t))
                            {
                                set.push((t, id));
                            }
                        }
                    }
                    set.sort();
                    set.dedup();
                    Ok(Clause::Match {
                        code: "_id".into(),
                        kind: ParamType::Token,
                        modifier: Modifier::None,
                        values: if set.is_empty() {
                            Vec::new()
                        } else {
                            vec![Pred::Ids(set)]
                        },
                    })
                }
            }
        })
    }

    /// Runs `s` from `cursor` (opened by the caller).
    pub async fn run(&mut self, s: &Search, cursor: Option<Cursor>) -> Result<Outcome, FhirError> {
        let mut clauses = Vec::with_capacity(s.clauses.len());
        for c in &s.clauses {
            clauses.push(self.resolve(&s.types, c).await?);
        }
        self.compartment = s.compartment.clone();
        let nothing = clauses
            .iter()
            .any(|c| matches!(c, Clause::Match { values, .. } if values.is_empty()));
        let count = if s.summary == Summary::Count {
            0
        } else {
            s.count
        };
        let mut out = Outcome::default();
        if nothing {
            out.total = (s.total != Total::None).then_some(0);
            out.explain = std::mem::take(&mut self.explain);
            return Ok(out);
        }
        let in_memory = if s.sort.is_empty() || cursor.as_ref().is_some_and(|c| c.sort_scan) {
            None
        } else {
            self.collect_upto(&s.types, &clauses, self.opts.max_sorted)
                .await?
        };
        if let Some(mut all) = in_memory {
            sort(&mut all, s);
            let offset = cursor.map_or(0, |c| c.offset);
            out.total = (s.total != Total::None).then_some(all.len());
            let end = (offset + count).min(all.len());
            if end < all.len() {
                out.next = Some(Cursor {
                    offset: end,
                    ..Cursor::default()
                });
            }
            out.matches = all.drain(offset.min(end)..end).collect();
        } else {
            if !s.sort.is_empty() {
                // Too many to sort in memory: read the sort parameter's index in order.
                let key = match (s.types.as_slice(), s.sort.as_slice()) {
                    ([t], [k]) if sort_plan(*t, k).is_some() => k.clone(),
                    _ => {
                        return Err(costly(&format!(
                            "a search of more than {} matches sorts by one parameter of one type",
                            self.opts.max_sorted
                        )));
                    }
                };
                self.budget = self.opts.max_reads;
                self.sort_drive = Some(key);
            }
            let from = cursor.unwrap_or_default();
            let first = from.seg == 0 && from.ty == 0 && from.after.is_none();
            let (found, next) = self.scan(&s.types, &clauses, count, from).await?;
            let sort_scan = self.sort_drive.take().is_some();
            out.total = match s.total {
                Total::None => None,
                Total::Accurate | Total::Estimate if !(first && next.is_none()) => {
                    // Counting reads every match: it has a budget of its own.
                    self.budget = self.opts.max_reads.saturating_mul(COUNT_BUDGET_FACTOR);
                    let all = self
                        .collect(&s.types, &clauses, usize::MAX - 1, "counting the total")
                        .await;
                    match all {
                        Ok(all) => Some(all.len()),
                        Err(_) if s.total == Total::Estimate => None,
                        Err(e) => return Err(e),
                    }
                }
                _ if first && next.is_none() => Some(found.len()),
                _ => None,
            };
            out.matches = found;
            out.next = next.map(|mut c| {
                c.sort_scan = sort_scan;
                c
            });
        }
        out.included = self.includes(&out.matches, s).await?;
        out.explain = std::mem::take(&mut self.explain);
        Ok(out)
    }

    /// `_include` and `_revinclude` (with `:iterate`) of `page`.
    async fn includes(&mut self, page: &[Version], s: &Search) -> Result<Found, FhirError> {
        if s.include.is_empty() && s.revinclude.is_empty() {
            return Ok(Vec::new());
        }
        let mut have: HashSet<(ResourceType, ResourceId)> =
            page.iter().map(|v| (v.rtype, v.id.clone())).collect();
        let mut out: Found = Vec::new();
        let mut frontier: Found = page.to_vec();
        for round in 0..=MAX_ITERATE {
            let mut wanted: Vec<(ResourceType, ResourceId)> = Vec::new();
            for inc in s.include.iter().filter(|i| round == 0 || i.iterate) {
                for v in &frontier {
                    wanted.extend(references(v, inc));
                }
            }
            wanted.retain(|k| !have.contains(k));
            wanted.sort();
            wanted.dedup();
            let mut next: Found = Vec::new();
            if !wanted.is_empty() {
                self.explain.heads_read += wanted.len();
                self.spend(wanted.len());
                let found = self.store.current(&wanted).await?;
                for k in wanted {
                    if let Some(c) = found.get(&k) {
                        have.insert(k);
                        next.push(c.version.clone());
                    }
                }
            }
            for inc in s.revinclude.iter().filter(|i| round == 0 || i.iterate) {
                for v in &frontier {
                    for r in self.referrers(v, inc).await? {
                        if have.insert((r.rtype, r.id.clone())) {
                            next.push(r);
                        }
                    }
                }
            }
            if next.is_empty() {
                break;
            }
            out.extend(next.iter().cloned());
            frontier = next;
        }
        Ok(out)
    }

    /// The resources whose `inc` reference parameter points at `v` (`*`: every reference
    /// parameter of the source type, or of every type, that can point at `v`'s type).
    async fn referrers(&mut self, v: &Version, inc: &Include) -> Result<Found, FhirError> {
        if inc.target.is_some_and(|t| t != v.rtype) {
            return Ok(Vec::new());
        }
        let can_point =
            |p: &registry::SearchParam| p.kind == ParamType::Reference && p.may_target(v.rtype);
        let params: Vec<(ResourceType, &str)> = match (inc.source, &inc.param) {
            (Some(src), Some(p)) => vec![(src, p.as_str())],
            (Some(src), None) => registry::params(src)
                .iter()
                .filter(|p| can_point(p))
                .map(|p| (src, p.code()))
                .collect(),
            (None, _) => registry::all()
                .filter(|(_, p)| can_point(p))
                .map(|(t, p)| (t, p.code()))
                .collect(),
        };
        let key = extract::local_key(v.rtype, &v.id);
        let mut out = Vec::new();
        for (src, p) in params {
            if self.budget == 0 {
                return Err(costly("_revinclude reads more than the read budget"));
            }
            // Each query counts, even an empty one.
            self.spend(1);
            let (hits, _) = self
                .store
                .index_page(
                    src,
                    &IndexRange {
                        param: p,
                        shard: None,
                        range: eq(&key),
                        forward: true,
                    },
                    None,
                    self.budget.clamp(1, storage::MAX_QUERY_LIMIT),
                )
                .await?;
            self.explain.queries += 1;
            self.explain.entries_read += hits.len();
            self.spend(hits.len());
            if hits.is_empty() {
                continue;
            }
            let ids: Vec<(ResourceType, ResourceId)> =
                hits.iter().map(|h| (src, h.id.clone())).collect();
            self.explain.heads_read += ids.len();
            self.spend(ids.len());
            let cur = self.store.current(&ids).await?;
            for h in hits {
                if let Some(c) = cur
                    .get(&(src, h.id.clone()))
                    .filter(|c| c.version.token == h.token)
                {
                    out.push(c.version.clone());
                }
            }
        }
        Ok(out)
    }
}

/// The local targets of `v`'s references that `inc` follows.
fn references(v: &Version, inc: &Include) -> Vec<(ResourceType, ResourceId)> {
    if inc.source.is_some_and(|s| s != v.rtype) {
        return Vec::new();
    }
    let Some(body) = v.resource() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for p in registry::params(v.rtype) {
        if p.kind != ParamType::Reference || inc.param.as_deref().is_some_and(|c| c != p.code()) {
            continue;
        }
        for sv in param_values(p, &body) {
            if let SearchValue::Reference(r) = sv
                && let Some((t, id)) = r.local
                && inc.target.is_none_or(|want| want == t)
            {
                out.push((t, id));
            }
        }
    }
    out
}

/// Whether the current version has a value for parameter `code`.
fn has_value(t: ResourceType, code: &str, c: &Current) -> bool {
    let (Some(p), Some(body)) = (registry::param(t, code), c.version.resource()) else {
        return false;
    };
    !param_values(p, &body).is_empty()
}

/// A resource's sort key for `_sort` by `code`: its index values in the order the index holds
/// them (so a search sorted in memory and one read in index order agree), the smallest for
/// ascending and the largest for descending; dates by start ascending and by end descending,
/// quantities by value whatever the unit, references by target (not `:identifier`).
fn sort_key(v: &Version, body: &Value, code: &str, desc: bool) -> Option<String> {
    match code {
        "_id" => return Some(v.id.as_str().to_owned()),
        "_lastUpdated" => return Some(v.last_updated.clone()),
        _ => {}
    }
    let p = registry::param(v.rtype, code)?;
    let keep = |k: &String| match p.kind {
        ParamType::Date => k.starts_with(if desc { 'b' } else { 'a' }),
        ParamType::Quantity => k.starts_with('n'),
        ParamType::Reference => !k.starts_with(COMPONENT_SEP),
        _ => true,
    };
    let values = param_values(p, body);
    let keys = values.iter().flat_map(extract::index_values).filter(keep);
    if desc { keys.max() } else { keys.min() }
}

/// Sorts by the `_sort` keys (missing values last), then by id, in the first key's direction
/// (as the index holds equal values).
fn sort(found: &mut Found, s: &Search) {
    let mut keyed: Vec<(Vec<Option<String>>, Version)> = found
        .drain(..)
        .map(|v| {
            let body = v.resource().unwrap_or(Value::Null);
            let keys = s
                .sort
                .iter()
                .map(|k| sort_key(&v, &body, &k.code, k.descending))
                .collect();
            (keys, v)
        })
        .collect();
    let first_desc = s.sort.first().is_some_and(|k| k.descending);
    keyed.sort_by(|(a, va), (b, vb)| {
        for (i, k) in s.sort.iter().enumerate() {
            let o = match (&a[i], &b[i]) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(x), Some(y)) => {
                    if k.descending {
                        y.cmp(x)
                    } else {
                        x.cmp(y)
                    }
                }
            };
            if o != Ordering::Equal {
                return o;
            }
        }
        let o = (va.rtype, &va.id).cmp(&(vb.rtype, &vb.id));
        if first_desc { o.reverse() } else { o }
    });
    found.extend(keyed.into_iter().map(|(_, v)| v));
}
