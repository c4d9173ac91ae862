//! FHIR search (`docs/architecture.md`, "FHIR", "Search"): the R4 search parameters, the
//! values they extract, the index entries written for them, query parsing, the planner and
//! the read path.

pub mod engine;
pub mod extract;
pub mod matcher;
pub mod present;
pub mod query;
mod r4;
pub mod registry;
pub mod value;

use storage::{PageTokens, Table};
use tenant_context::TenantScope;

use crate::error::FhirError;
use crate::store::{Store, StoreOptions};
use engine::{Cursor, Engine, Options};
use extract::SearchExtractor;
use query::{Search, Summary, Total};

/// Runs `search` at `path` (after the base: `""`, `/Patient`, `/Patient/p1/*`) for `scope`
/// and writes its searchset Bundle (JSON text): the search function's answer and a Bundle
/// search entry's resource. `_page` cursors are sealed with `tokens`, bound to the tenant and
/// to the query (the path and the canonical parameters): another's is 400. `max_reads`: the
/// read budget of the request.
pub async fn searchset(
    table: &dyn Table,
    scope: &TenantScope,
    tokens: &PageTokens,
    base: &str,
    path: &str,
    mut search: Search,
    max_reads: usize,
) -> Result<String, FhirError> {
    let qid = format!("search|{path}|{}", search.canonical);
    let prefix = scope.key_prefix();
    let cursor: Option<Cursor> = search
        .page
        .as_deref()
        .map(|tok| tokens.open_cursor(tok, &prefix, &qid))
        .transpose()?;
    if present::count_only(&search) {
        // The count is all that is asked: count it, unless `_total=none` says not to.
        search.summary = Summary::Count;
        if search.total == Total::Default {
            search.total = Total::Accurate;
        }
    }
    let store = Store::new(table, scope, &SearchExtractor, StoreOptions::default());
    let mut opts = Options::new(base);
    opts.max_reads = max_reads;
    let out = Engine::new(&store, &opts).run(&search, cursor).await?;
    tracing::debug!(explain = ?out.explain, matches = out.matches.len(), "search");
    let next_url = out.next.as_ref().map(|c| {
        let tok = tokens.seal_cursor(&prefix, &qid, c);
        present::page_url(base, path, &search.canonical, Some(&tok))
    });
    let self_url = present::page_url(base, path, &search.canonical, search.page.as_deref());
    Ok(present::searchset_text(
        base,
        &self_url,
        next_url.as_deref(),
        &out,
        &search,
    ))
}
