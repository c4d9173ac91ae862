//! History: instance (`/{type}/{id}/_history`), type (`/{type}/_history`) and system
//! (`/_history`), newest first, with `_count`, `_since`, `_at` and signed paging links.

use fhir_core::{FhirError, ResourceId, ResourceType, Version, etag, fhir_response};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use fhir_core::search::query::{url_encode as enc, url_pairs};

use crate::Ctx;
use crate::rest::url;

/// Default and largest `_count`.
const DEFAULT_COUNT: usize = 20;
const MAX_COUNT: usize = 1000;

/// The parameters of a history request.
struct Params {
    count: usize,
    /// `_since`, in the stored time format.
    since: Option<String>,
    /// `_at`: the period `[start, end)`, in the stored time format.
    at: Option<(String, String)>,
    /// `_at` as sent (repeated in the links).
    at_text: Option<String>,
    page: Option<String>,
}

/// `_at`'s value (a date, dateTime or instant of any precision) as the period it covers.
fn period(v: &str) -> Option<(String, String)> {
    if let Some(t) = timestamp::parse(v) {
        let start = timestamp::format(t);
        return Some((start.clone(), timestamp::next_milli(&start)));
    }
    // Partial dates: YYYY, YYYY-MM, YYYY-MM-DD (UTC).
    let parts: Vec<&str> = v.split('-').collect();
    let num = |s: &str, len: usize| {
        (s.len() == len && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<i32>().ok())
            .flatten()
    };
    let (y, m, d) = match parts.as_slice() {
        [y] => (num(y, 4)?, None, None),
        [y, m] => (num(y, 4)?, Some(num(m, 2)?), None),
        [y, m, d] => (num(y, 4)?, Some(num(m, 2)?), Some(num(d, 2)?)),
        _ => return None,
    };
    let month = |m: i32| time::Month::try_from(u8::try_from(m).ok()?).ok();
    let date = |y: i32, m: i32, d: i32| {
        time::Date::from_calendar_date(y, month(m)?, u8::try_from(d).ok()?).ok()
    };
    let (start, end) = match (m, d) {
        (None, _) => (date(y, 1, 1)?, date(y + 1, 1, 1)?),
        (Some(m), None) => (
            date(y, m, 1)?,
            if m == 12 {
                date(y + 1, 1, 1)?
            } else {
                date(y, m + 1, 1)?
            },
        ),
        (Some(m), Some(d)) => {
            let s = date(y, m, d)?;
            (s, s.next_day()?)
        }
    };
    let f = |d: time::Date| timestamp::format(d.midnight().assume_utc());
    Some((f(start), f(end)))
}

fn params(ctx: &Ctx<'_>) -> Result<Params, FhirError> {
    let mut p = Params {
        count: DEFAULT_COUNT,
        since: None,
        at: None,
        at_text: None,
        page: None,
    };
    let query = ctx.req.uri().query().unwrap_or_default();
    for (k, v) in url_pairs(query) {
        match k.as_str() {
            "_count" => {
                p.count = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| {
                        FhirError::invalid(format!("_count '{v}' is not a positive number"))
                    })?
                    .min(MAX_COUNT)
            }
            "_since" => {
                let t = timestamp::parse(&v).ok_or_else(|| {
                    FhirError::invalid(format!(
                        "_since '{v}' is not an instant such as 2026-01-31T12:00:00Z"
                    ))
                })?;
                p.since = Some(timestamp::format(t));
            }
            "_at" => {
                p.at_text = Some(v.clone());
                p.at = Some(period(&v).ok_or_else(|| {
                    FhirError::invalid(format!(
                        "_at '{v}' is not a date or dateTime such as 2026, 2026-01-31 or 2026-01-31T12:00:00Z"
                    ))
                })?)
            }
            "_page" => p.page = Some(v),
            "_format" if v.contains("json") => {}
            other => {
                return Err(FhirError::invalid(format!(
                    "history takes _count, _since, _at and _page; '{other}' is not supported"
                )));
            }
        }
    }
    Ok(p)
}

/// What a history page continues from.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Cursor {
    /// Instance history: versions older than this one.
    Version(u64),
    /// Type and system history: entries sorting before this key.
    Entry(String),
}

/// The identity of a history query, to which its cursors are bound.
fn query_id(path: &str, p: &Params) -> String {
    format!("history|{path}|{}|{:?}|{:?}", p.count, p.since, p.at)
}

/// A history entry: the version, with the request that made it and its response.
pub(crate) fn entry(base: &str, v: &Version) -> Value {
    let method = v.method.as_str();
    let (req_url, status) = match method {
        "POST" => (v.rtype.to_string(), "201 Created"),
        "DELETE" => (format!("{}/{}", v.rtype, v.id), "204 No Content"),
        _ if v.vid == 1 => (format!("{}/{}", v.rtype, v.id), "201 Created"),
        _ => (format!("{}/{}", v.rtype, v.id), "200 OK"),
    };
    let mut e = json!({
        "fullUrl": url(base, v.rtype, &v.id),
        "request": { "method": method, "url": req_url },
        "response": {
            "status": status,
            "etag": etag(v.vid),
            "lastModified": v.last_updated,
        }
    });
    if let Some(r) = v.resource() {
        e["resource"] = r;
    }
    e
}

fn bundle(self_url: &str, next: Option<String>, entries: Vec<Value>) -> Value {
    let mut links = vec![json!({ "relation": "self", "url": self_url })];
    if let Some(n) = next {
        links.push(json!({ "relation": "next", "url": n }));
    }
    json!({
        "resourceType": "Bundle",
        "type": "history",
        "link": links,
        "entry": entries,
    })
}

/// The cursor of `_page`, opened for this tenant and query (another's is 400).
fn open_page(ctx: &Ctx<'_>, p: &Params, qid: &str) -> Result<Option<Cursor>, FhirError> {
    p.page
        .as_ref()
        .map(|tok| {
            ctx.deps
                .tokens
                .open_cursor(tok, &ctx.scope.key_prefix(), qid)
        })
        .transpose()
        .map_err(FhirError::from)
}

/// The history Bundle of `versions`, with links to this page and, from `next`, the next.
fn respond(
    ctx: &Ctx<'_>,
    path_rest: &str,
    p: &Params,
    qid: &str,
    versions: &[Version],
    next: Option<Cursor>,
) -> Response<Body> {
    let next_tok = next.map(|c| {
        ctx.deps
            .tokens
            .seal_cursor(&ctx.scope.key_prefix(), qid, &c)
    });
    let (self_url, next_url) = links(ctx, path_rest, p, next_tok);
    let entries = versions.iter().map(|v| entry(&ctx.base, v)).collect();
    fhir_response(StatusCode::OK, &bundle(&self_url, next_url, entries))
}

/// The URL of this request and of its next page.
fn links(
    ctx: &Ctx<'_>,
    path_rest: &str,
    p: &Params,
    next: Option<String>,
) -> (String, Option<String>) {
    let mut q = vec![format!("_count={}", p.count)];
    if let Some(s) = &p.since {
        q.push(format!("_since={}", enc(s)));
    }
    if let Some(at) = &p.at_text {
        q.push(format!("_at={}", enc(at)));
    }
    let here = format!("{}{path_rest}/_history", ctx.base);
    let mut self_q = q.clone();
    if let Some(pg) = &p.page {
        self_q.push(format!("_page={}", enc(pg)));
    }
    let self_url = format!("{here}?{}", self_q.join("&"));
    let next_url = next.map(|n| {
        q.push(format!("_page={}", enc(&n)));
        format!("{here}?{}", q.join("&"))
    });
    (self_url, next_url)
}

/// Keeps the versions current at some time of `[start, end)`: those made after `start` and
/// before `end`, and for each resource the latest one made at or before `start` (`versions`
/// newest first).
fn current_during(versions: Vec<Version>, start: &str, end: &str) -> Vec<Version> {
    let mut seen_before = std::collections::HashSet::new();
    versions
        .into_iter()
        .filter(|v| {
            if *v.last_updated >= *end {
                return false;
            }
            if *v.last_updated > *start {
                return true;
            }
            seen_before.insert((v.rtype, v.id.clone()))
        })
        .collect()
}

/// `GET /{type}/{id}/_history`.
pub(crate) async fn instance(
    ctx: &Ctx<'_>,
    t: ResourceType,
    id: &ResourceId,
) -> Result<Response<Body>, FhirError> {
    let p = params(ctx)?;
    let path_rest = format!("/{t}/{id}");
    let qid = query_id(&path_rest, &p);
    let before = match open_page(ctx, &p, &qid)? {
        Some(Cursor::Version(v)) => Some(v),
        Some(Cursor::Entry(_)) => return Err(storage::StorageError::InvalidToken.into()),
        None => None,
    };
    // `_at` needs the version made before the period, so it reads to the end.
    let count = if p.at.is_some() { usize::MAX } else { p.count };
    let store = ctx.store();
    let mut versions = Vec::new();
    let mut next = before;
    loop {
        let Some((page, more)) = store
            .instance_history(t, id, next, count.min(MAX_COUNT))
            .await?
        else {
            return Err(FhirError::NotFound(format!("{t}/{id} is not known")));
        };
        let stop = page
            .last()
            .is_some_and(|v| p.since.as_ref().is_some_and(|s| v.last_updated < *s));
        versions.extend(page);
        next = more;
        if next.is_none() || versions.len() >= count || stop {
            break;
        }
    }
    if let Some(since) = &p.since {
        if versions.iter().any(|v| v.last_updated < *since) {
            next = None;
        }
        versions.retain(|v| v.last_updated >= *since);
    }
    if let Some((start, end)) = &p.at {
        versions = current_during(versions, start, end);
        next = None;
    }
    if p.at.is_none() {
        versions.truncate(p.count);
    }
    Ok(respond(
        ctx,
        &path_rest,
        &p,
        &qid,
        &versions,
        next.map(Cursor::Version),
    ))
}

/// Most history entries `_at` reads on type and system history.
const MAX_AT_SCAN: usize = 10_000;

/// `GET /{type}/_history` and `GET /_history`.
pub(crate) async fn list(
    ctx: &Ctx<'_>,
    t: Option<ResourceType>,
) -> Result<Response<Body>, FhirError> {
    let p = params(ctx)?;
    let path_rest = t.map(|t| format!("/{t}")).unwrap_or_default();
    let qid = query_id(&path_rest, &p);
    let before = match open_page(ctx, &p, &qid)? {
        Some(Cursor::Entry(k)) => Some(k),
        Some(Cursor::Version(_)) => return Err(storage::StorageError::InvalidToken.into()),
        None => None,
    };
    let store = ctx.store();
    let (versions, next) = match &p.at {
        None => {
            store
                .history(t, p.since.as_deref(), before.as_deref(), p.count)
                .await?
        }
        Some((start, end)) => {
            // Entries before `end`, newest first; each resource's latest version before the
            // period counts too, so this reads back to the first write (bounded).
            let mut all = Vec::new();
            let mut cursor: Option<String> = Some(end.clone());
            while let Some(c) = cursor.take() {
                let (page, more) = store.history(t, None, Some(&c), MAX_COUNT).await?;
                all.extend(page);
                if all.len() > MAX_AT_SCAN {
                    return Err(FhirError::invalid(format!(
                        "_at on type or system history reads at most {MAX_AT_SCAN} versions; \
                         use _since, or _at on one resource's history"
                    )));
                }
                cursor = more;
            }
            let mut kept = current_during(all, start, end);
            kept.truncate(MAX_COUNT);
            (kept, None)
        }
    };
    Ok(respond(
        ctx,
        &path_rest,
        &p,
        &qid,
        &versions,
        next.map(Cursor::Entry),
    ))
}
