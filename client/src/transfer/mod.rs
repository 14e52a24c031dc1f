//! The transfer engine: push and pull of images (manifests, indexes and their blobs) between a
//! registry and a caller's store.
//!
//! - [`RegistryClient`] is one registry: its endpoint and TLS (from [`crate::endpoint`]), its
//!   credential (from [`crate::credentials`]), authentication ([`auth`]: anonymous, Basic, Bearer
//!   tokens cached per scope), retries with backoff on 5xx and connection errors (never on 4xx),
//!   and the distribution-API calls, on `oci-client` where it fits and reqwest where it does not.
//! - The caller's store is two small traits: [`BlobSource`] for push, [`BlobSink`] (with
//!   [`BlobWriter`], which verifies and commits) for pull.
//! - [`RegistryClient::push`]: blobs in parallel (HEAD to skip, cross-repository mount,
//!   monolithic `PUT` below a threshold, chunked `PATCH` above it, resumed from the offset the
//!   registry reports), then child manifests, then the index or manifest.
//! - [`RegistryClient::pull`]: the manifest or index (exact bytes, verified), the platform's
//!   manifest, then config and layers in parallel, streamed into the sink and resumed with
//!   `Range`.
//!
//! Progress goes to a [`ProgressFn`] as [`Progress`] events.

pub mod auth;
mod error;
mod lists;
mod manifest;
mod pull;
mod push;
mod registry;
mod store;

use std::sync::Arc;

use hoist_oci::Digest;

pub use auth::Scope;
pub use error::{RegistryErrorItem, TransferError, parse_registry_errors};
pub use manifest::{Descriptor, MAX_MANIFEST_SIZE, Platform, PlatformError};
pub use pull::{PullOptions, Pulled};
pub use push::{PushOptions, PushReport};
pub use registry::{ClientOptions, RegistryClient, RetryPolicy};
pub use store::{BlobSink, BlobSource, BlobWriter, ByteStream};

/// How many blobs move at once unless told otherwise.
pub const DEFAULT_PARALLEL: usize = 4;

/// What a transfer is doing, for progress bars and logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// A blob transfer begins.
    Started { digest: Digest, size: u64 },
    /// `done` of `size` bytes have moved (counting bytes a resume did not need to move again).
    Bytes {
        digest: Digest,
        done: u64,
        size: u64,
    },
    /// The other side already has the blob.
    Skipped { digest: Digest, size: u64 },
    /// The registry mounted the blob from another repository (`Mounted from <from>`).
    Mounted { digest: Digest, from: String },
    /// The blob is transferred and verified.
    Done { digest: Digest, size: u64 },
    /// A manifest was pushed under `reference`, or fetched from it.
    Manifest { digest: Digest, reference: String },
}

/// Receives [`Progress`] events; called from the transfer's tasks, so it should be quick.
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

pub(crate) fn emit(progress: Option<&ProgressFn>, event: Progress) {
    if let Some(f) = progress {
        f(&event);
    }
}
