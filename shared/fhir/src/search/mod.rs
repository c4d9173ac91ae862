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
