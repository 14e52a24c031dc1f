//! hoist-oci: the content-addressing vocabulary every other hoist crate speaks.
//!
//! - [`Digest`]: a validated `algorithm:hex` content address (sha256, sha512).
//! - [`Digester`]: hashes bytes as they stream through; its state can be saved and restored.
//! - [`VerifyingReader`]: wraps a reader and fails at EOF on a digest or size mismatch.
//! - [`HashingWriter`], [`HashingReader`]: hash (sha256) and count what passes through.
//! - [`RepoName`], [`Tag`], [`Reference`]: the distribution grammar, with docker normalisation.
//! - [`media_type`]: the media types hoist knows.
//! - [`platform`]: platforms and choosing one from an index, as containerd does.
//! - [`compression`]: which compression a layer stream is, and the gzip level hoist writes.
//! - [`time`]: RFC 3339 times (UTC) and docker's human durations.
//! - [`www_authenticate`]: the parameters of a registry's `WWW-Authenticate` challenge.
//!
//! Manifest, index, config and descriptor types are `oci-spec`'s, re-exported as [`spec`].
//!
//! **Architecture Invariant:** this crate is a leaf: no async runtime, no HTTP, no I/O beyond
//! `std::io::Read` and `std::io::Write`.

pub mod compression;
mod digest;
mod hashing;
pub mod media_type;
mod name;
pub mod platform;
mod reference;
pub mod time;
pub mod www_authenticate;

pub use digest::{Algorithm, Digest, DigestError, Digester, DigesterState, VerifyingReader};
pub use hashing::{HashingReader, HashingWriter};
pub use name::{NameError, RepoName, Tag};
pub use reference::{DEFAULT_REGISTRY, DEFAULT_TAG, Reference, ReferenceError};

/// The OCI image and distribution spec types, from `oci-spec`.
pub use oci_spec as spec;
