//! hoist-conformance: black-box suites for the distribution API.
//!
//! - [`harness`]: starts a registry under test (`hoist serve` or the CNCF registry) on a free
//!   loopback port and stops it on drop.
//! - [`fixtures`]: small real images made locally (busybox rootfs, random N-layer images) as
//!   OCI image layouts, for interoperability tests with skopeo, podman, buildah and docker.
//! - [`suite`]: the distribution-spec v1.1 cases, runnable against any registry URL.

pub mod fixtures;
pub mod harness;
pub mod suite;
