//! The user directory (placeholder until written).
