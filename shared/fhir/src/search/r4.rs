//! Generated: the R4 search parameter table.
