//! The R4 search parameters, per resource type.
