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
    /// The registry refused with an OCI error body (`{"errors":[{code,message}]}`): printed as
    /// docker prints it, `denied: requested access to the resource is denied`.
    #[error("{}", docker_errors(errors))]
    Registry {
        method: String,
        url: String,
        status: StatusCode,
        errors: Vec<RegistryErrorItem>,
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

/// One entry of a registry's OCI error body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryErrorItem {
    /// The wire code (`DENIED`, `MANIFEST_UNKNOWN`).
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for RegistryErrorItem {
    /// Docker's `errcode.Error`: the code in lower case with spaces, then the message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let code = self.code.to_lowercase().replace('_', " ");
        if self.message.is_empty() {
            f.write_str(&code)
        } else {
            write!(f, "{code}: {}", self.message)
        }
    }
}

/// Docker's `errcode.Errors`: one error alone, else `errors:` and one per line.
fn docker_errors(errors: &[RegistryErrorItem]) -> String {
    match errors {
        [one] => one.to_string(),
        many => {
            let lines: Vec<String> = many.iter().map(ToString::to_string).collect();
            format!("errors:\n{}", lines.join("\n"))
        }
    }
}

/// What a `403` without a body (a `HEAD`) means: the registry's `DENIED`.
pub(crate) fn denied() -> Vec<RegistryErrorItem> {
    vec![RegistryErrorItem {
        code: "DENIED".into(),
        message: "requested access to the resource is denied".into(),
    }]
}

/// The errors of an OCI error body, if `body` is one with at least one error.
pub fn parse_registry_errors(body: &[u8]) -> Option<Vec<RegistryErrorItem>> {
    #[derive(serde::Deserialize)]
    struct Item {
        code: String,
        #[serde(default)]
        message: String,
    }
    #[derive(serde::Deserialize)]
    struct Envelope {
        errors: Vec<Item>,
    }
    let env: Envelope = serde_json::from_slice(body).ok()?;
    let items: Vec<RegistryErrorItem> = env
        .errors
        .into_iter()
        .filter(|i| !i.code.is_empty())
        .map(|i| RegistryErrorItem {
            code: i.code,
            message: truncate(&i.message),
        })
        .collect();
    (!items.is_empty()).then_some(items)
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
            Self::Status { status, .. } | Self::Registry { status, .. } => status.is_server_error(),
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
                let errors = parse_registry_errors(message.as_bytes())
                    .or_else(|| (status == StatusCode::FORBIDDEN).then(denied));
                if let Some(errors) = errors {
                    return Self::Registry {
                        method: "request".into(),
                        url,
                        status,
                        errors,
                    };
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
                    return Self::NotFound { url };
                }
                if envelope
                    .errors
                    .iter()
                    .any(|e| matches!(e.code, OciErrorCode::Unauthorized))
                {
                    return Self::Unauthorized { url };
                }
                let errors: Vec<RegistryErrorItem> = envelope
                    .errors
                    .iter()
                    .filter_map(|e| {
                        let code = serde_json::to_value(&e.code).ok()?.as_str()?.to_owned();
                        Some(RegistryErrorItem {
                            code,
                            message: truncate(&e.message),
                        })
                    })
                    .collect();
                if errors.is_empty() {
                    return Self::Oci(format!("{url}: {envelope}"));
                }
                // oci-client keeps no status; a refusal with a body is a client error.
                let status = if errors.iter().any(|e| e.code == "DENIED") {
                    StatusCode::FORBIDDEN
                } else {
                    StatusCode::BAD_REQUEST
                };
                Self::Registry {
                    method: "request".into(),
                    url,
                    status,
                    errors,
                }
            }
            E::RequestError(source) => {
                let url = source.url().map(ToString::to_string).unwrap_or_default();
                match source.status() {
                    Some(StatusCode::UNAUTHORIZED) => Self::Unauthorized { url },
                    Some(StatusCode::NOT_FOUND) => Self::NotFound { url },
                    Some(StatusCode::FORBIDDEN) => Self::Registry {
                        method: "request".into(),
                        url,
                        status: StatusCode::FORBIDDEN,
                        errors: denied(),
                    },
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_errors_print_as_docker_prints_them() {
        let body = br#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied","detail":"x"}]}"#;
        let errors = parse_registry_errors(body).unwrap();
        let e = TransferError::Registry {
            method: "PUT".into(),
            url: "http://h/v2/a/manifests/1".into(),
            status: StatusCode::FORBIDDEN,
            errors,
        };
        assert_eq!(
            e.to_string(),
            "denied: requested access to the resource is denied"
        );
        let two = br#"{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry"},{"code":"NAME_INVALID","message":""}]}"#;
        let e = TransferError::Registry {
            method: "PUT".into(),
            url: String::new(),
            status: StatusCode::BAD_REQUEST,
            errors: parse_registry_errors(two).unwrap(),
        };
        assert_eq!(
            e.to_string(),
            "errors:\nmanifest blob unknown: blob unknown to registry\nname invalid"
        );
        for not_oci in [
            &b""[..],
            b"403 Forbidden",
            b"{}",
            br#"{"errors":[]}"#,
            b"[1]",
        ] {
            assert!(parse_registry_errors(not_oci).is_none());
        }
    }
}
