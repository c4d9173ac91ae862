//! No code: the checks are in `tests/`, run by `scripts/test.sh` with the `release-checks`
//! profile (debug assertions off) as well as in the ordinary test run.
