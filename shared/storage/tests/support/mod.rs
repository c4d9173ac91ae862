//! Test support shared by the integration tests of the AWS backends.

pub mod moto;
