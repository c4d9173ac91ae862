//! FHIR search (`docs/architecture.md`, "FHIR", "Search"): the R4 search parameters, the
//! values they extract, the index entries written for them, query parsing, the planner and
//! the read path.

mod r4;
pub mod registry;
pub mod value;
