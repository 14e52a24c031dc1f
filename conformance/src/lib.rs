//! hoist-conformance: black-box suites for the distribution API.
//!
//! - [`harness`]: starts a registry under test (`hoist serve` or the CNCF registry) on a free
//!   loopback port and stops it on drop.
//! - `suite`: the distribution-spec v1.1 cases, runnable against any registry URL.

pub mod harness;
