//! What hoist's integration tests and benches share, so each test file does not carry its own
//! copy. A dev-dependency only: no shipped crate may depend on it (tidy checks).
//!
//! - [`output`]: turning a command's output into text, and small text helpers.
//! - [`bases`]: base images made once per machine (Debian with gcc).
//! - [`home`]: [`Home`], a private `HOIST_HOME` with the busybox base image imported.
//! - [`peers`]: running peer tools (skopeo, podman, buildah, docker) with a timeout, private
//!   podman/buildah storage and a private dockerd.
//! - [`pki`]: test CAs, server and client certificates.
//! - [`s3`]: S3 servers (s3s-fs, moto) on loopback.
//! - [`haproxy`]: a round-robin haproxy in front of several servers.
//! - [`postgres`]: a private PostgreSQL server and a fresh database per test.

pub mod bases;
pub mod haproxy;
pub mod home;
pub mod output;
pub mod peers;
pub mod pki;
pub mod postgres;
pub mod s3;

pub use home::Home;
pub use output::{field, path, text};
