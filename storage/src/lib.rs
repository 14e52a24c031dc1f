//! hoist-storage: where blobs, manifests and tags live.
//!
//! Three tiers, as in the CNCF registry:
//! - [`driver`]: a dumb key/blob interface ([`StorageDriver`]) with `fs`, `memory` and object-storage (S3) drivers and
//!   one shared test suite.
//! - [`metadata`]: everything that needs transactions (repositories, blob links, manifests, tags
//!   and their history, referrers, upload sessions) behind [`MetadataStore`], on bundled SQLite.
//! - [`content`]: the content layer the registry and the local store use: verified blob commits,
//!   per-repository links, uploads, manifests, tags and referrers.
//! - [`images`]: the local image store on top of [`content`]: naming, tags, rmi, prune, import,
//!   and docker-archive / OCI layout archives.

pub mod content;
pub mod driver;
pub mod images;
pub mod metadata;

pub use content::{Blobs, ContentError, Store};
pub use driver::{DriverError, FsDriver, MemoryDriver, ObjectDriver, S3Config, StorageDriver};
pub use metadata::{MetadataStore, SqliteMetadata};
