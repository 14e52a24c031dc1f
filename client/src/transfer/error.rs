//! The transfer engine's errors, and which of them are worth a retry.

use std::io;

use hoist_oci::Digest;
use reqwest::StatusCode;

use crate::credentials::CredentialError;
use crate::endpoint::EndpointError;

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error(transparent)]
    Credential(#[from] CredentialError),
    #[error("building the http client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("reference {reference} names registry {registry}, not {expected}")]
    WrongRegistry {
        reference: String,
        registry: String,
        expected: String,
    },
    /// The request did not complete (connection refused or reset, timeout, body cut short).
    #[error("{method} {url}: {source}")]
    Connection {
        method: String,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The registry answered with a status the protocol does not allow here.
    #[error("{method} {url}: {status}{}", fmt_detail(detail))]
    Status {
        method: String,
        url: String,
        status: StatusCode,
        detail: String,
    },
    #[error("{url}: unauthorized (check the credentials for this registry)")]
    Unauthorized { url: String },
    #[error("{url}: not found")]
    NotFound { url: String },
    #[error("token endpoint {realm}: {detail}")]
    Token { realm: String, detail: String },
    /// A blob or manifest whose bytes do not match its digest or size; nothing was stored.
    #[error("{digest}: {detail}")]
    Verify { digest: Digest, detail: String },
    #[error("invalid manifest {digest}: {detail}")]
    Manifest { digest: Digest, detail: String },
    #[error("no manifest for platform {wanted} in the index (it has: {available})")]
    NoPlatform { wanted: String, available: String },
    /// The registry ended a blob's body early without a transport error.
    #[error("{digest}: the body ended after {got} of {size} bytes")]
    ShortRead { digest: Digest, got: u64, size: u64 },
    #[error("registry protocol violation: {0}")]
    Protocol(String),
    #[error("reading blob {digest} from the source: {source}")]
    Source {
        digest: Digest,
        #[source]
        source: io::Error,
    },
    #[error("writing blob {digest} to the sink: {source}")]
    Sink {
        digest: Digest,
        #[source]
        source: io::Error,
    },
    #[error("registry client: {0}")]
    Oci(String),
    #[error("task failed: {0}")]
    Join(String),
}

fn fmt_detail(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

impl TransferError {
    /// Whether trying again may succeed: connection errors and 5xx answers, never 4xx.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Connection { source, .. } => is_transient(source),
            Self::Status { status, .. } => status.is_server_error(),
            Self::ShortRead { .. } => true,
            _ => false,
        }
    }
}

/// Whether a reqwest error is a transport failure (as opposed to a bad request or url).
pub(crate) fn is_transient(e: &reqwest::Error) -> bool {
    if let Some(status) = e.status() {
        return status.is_server_error();
    }
    e.is_connect() || e.is_timeout() || e.is_request() || e.is_body() || e.is_decode()
}

impl From<oci_client::errors::OciDistributionError> for TransferError {
    fn from(e: oci_client::errors::OciDistributionError) -> Self {
        use oci_client::errors::{OciDistributionError as E, OciErrorCode};
        match e {
            E::UnauthorizedError { url } => Self::Unauthorized { url },
            E::ServerError { code, url, message } => {
                let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
                if status == StatusCode::NOT_FOUND {
                    return Self::NotFound { url };
                }
                Self::Status {
                    method: "GET".into(),
                    url,
                    status,
                    detail: truncate(&message),
                }
            }
            E::RegistryError { envelope, url } => {
                let unknown = envelope.errors.iter().any(|e| {
                    matches!(
                        e.code,
                        OciErrorCode::BlobUnknown
                            | OciErrorCode::ManifestUnknown
                            | OciErrorCode::NameUnknown
                    )
                });
                if unknown {
                    Self::NotFound { url }
                } else if envelope
                    .errors
                    .iter()
                    .any(|e| matches!(e.code, OciErrorCode::Unauthorized | OciErrorCode::Denied))
                {
                    Self::Unauthorized { url }
                } else {
                    Self::Oci(format!("{url}: {envelope}"))
                }
            }
            E::RequestError(source) => {
                let url = source.url().map(ToString::to_string).unwrap_or_default();
                match source.status() {
                    Some(StatusCode::UNAUTHORIZED) => Self::Unauthorized { url },
                    Some(StatusCode::NOT_FOUND) => Self::NotFound { url },
                    Some(status) => Self::Status {
                        method: "request".into(),
                        url,
                        status,
                        detail: String::new(),
                    },
                    None => Self::Connection {
                        method: "request".into(),
                        url,
                        source,
                    },
                }
            }
            other => Self::Oci(other.to_string().to_lowercase()),
        }
    }
}

/// A response body shortened for an error message.
pub(crate) fn truncate(body: &str) -> String {
    const MAX: usize = 300;
    let body = body.trim();
    if body.len() <= MAX {
        return body.to_owned();
    }
    let mut end = MAX;
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &body[..end])
}
