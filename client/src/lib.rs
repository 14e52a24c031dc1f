//! hoist-client: how hoist reaches registries.
//!
//! Today this crate holds the foundations the transfer engine will stand on:
//! - [`credentials`]: docker's credential model. [`DockerConfig`] reads and writes docker's
//!   `config.json` (`auths`, `credsStore`, `credHelpers`) and runs the `docker-credential-*`
//!   helpers, so a user's existing `docker login` just works and `hoist login` writes the same
//!   file.
//! - [`endpoint`]: where a registry host's API lives ([`Endpoints::resolve`]: Docker Hub is
//!   `https://registry-1.docker.io`; plain HTTP only for loopback and listed insecure registries)
//!   and its TLS settings from docker's `certs.d` layout ([`Endpoints::tls`]), ready for a
//!   `reqwest::ClientBuilder`.
//!
//! - [`transfer`]: the distribution protocol on top of `oci-client`: [`RegistryClient`]
//!   (anonymous, Basic and Bearer authentication with scoped token caching, retries), push
//!   (parallel, skip, cross-repository mount, monolithic and resumable chunked uploads) and pull
//!   (platform choice, parallel streamed and verified blobs, `Range` resume), over the
//!   [`BlobSource`] and [`BlobSink`] traits a store implements.
//!
//! **Architecture Invariant:** among workspace crates this depends only on `hoist-oci`; it is the
//! only crate that will send HTTP to registries.

pub mod admin;
pub mod credentials;
pub mod endpoint;
pub mod fetch;
pub mod transfer;

pub use credentials::{Credential, CredentialError, DockerConfig};
pub use endpoint::{Endpoint, EndpointError, Endpoints, Scheme, TlsSettings};
pub use transfer::{
    BlobSink, BlobSource, BlobWriter, ByteStream, ClientOptions, Descriptor, Platform, Progress,
    ProgressFn, PullOptions, Pulled, PushOptions, PushReport, RegistryClient, RetryPolicy,
    TransferError,
};
