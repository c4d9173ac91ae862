//! A FHIRPath subset: what the R4 search parameter expressions use.
