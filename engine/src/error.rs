//! The engine's errors: what failed, said as the cli says it, with the library's error as the
//! source (so a cause chain reads `what: cause`).

use hoist_client::TransferError;
use hoist_oci::Reference;

type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A step of the engine failed; `what` says which, `source` why.
    #[error("{what}")]
    Step {
        what: String,
        #[source]
        source: Cause,
    },
    /// A registry transfer failed ([`TransferFailure`] says it as docker does).
    #[error(transparent)]
    Transfer(Box<TransferFailure>),
    /// The image is not in the local store.
    #[error("an image does not exist locally with the tag: {0}")]
    NotLocal(String),
    #[error("{0}")]
    Invalid(String),
    /// A build failed (the cli shows the failed step's last output lines with it).
    #[error(transparent)]
    Build(#[from] hoist_builder::build::BuildError),
    /// A library's own error, said as it says it.
    #[error(transparent)]
    Library(Cause),
}

/// Library errors that pass through as they are.
macro_rules! library_errors {
    ($($t:ty),* $(,)?) => {$(
        impl From<$t> for EngineError {
            fn from(e: $t) -> Self {
                EngineError::Library(Box::new(e))
            }
        }
    )*};
}

library_errors!(
    std::io::Error,
    serde_json::Error,
    hoist_runtime::container::ContainerError,
    hoist_runtime::volume::VolumeError,
    hoist_runtime::layers::LayerError,
    hoist_runtime::spec::SpecError,
    hoist_storage::images::ImageError,
    hoist_storage::ContentError,
    hoist_oci::DigestError,
);

/// Fails with `EngineError::Invalid` and a formatted message.
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::EngineError::Invalid(format!($($arg)*)))
    };
}

/// Adds what was being done to a library error.
pub trait ResultExt<T> {
    fn ctx(self, what: impl Into<String>) -> Result<T, EngineError>;
    fn with_ctx<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T, EngineError>;
}

impl<T, E: std::error::Error + Send + Sync + 'static> ResultExt<T> for Result<T, E> {
    fn ctx(self, what: impl Into<String>) -> Result<T, EngineError> {
        self.map_err(|e| EngineError::Step {
            what: what.into(),
            source: Box::new(e),
        })
    }
    fn with_ctx<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T, EngineError> {
        self.map_err(|e| EngineError::Step {
            what: what().into(),
            source: Box::new(e),
        })
    }
}

/// A missing value as an error that says what was missing.
pub trait OptionExt<T> {
    fn or_invalid<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T, EngineError>;
}

impl<T> OptionExt<T> for Option<T> {
    fn or_invalid<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T, EngineError> {
        self.ok_or_else(|| EngineError::Invalid(what().into()))
    }
}

/// A failed pull or push, said in one clear line: an authentication failure names
/// `hoist login`, a missing image says so, an unreachable registry gives the network cause.
#[derive(Debug)]
pub struct TransferFailure {
    /// `pull` or `push`.
    pub what: &'static str,
    pub reference: Reference,
    pub source: TransferError,
}

impl std::fmt::Display for TransferFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (what, r) = (self.what, self.reference.familiar());
        let host = self.reference.registry();
        match &self.source {
            TransferError::Unauthorized { .. } => write!(
                f,
                "{what} {r}: unauthorized: authentication required (run `hoist login {host}`)"
            ),
            TransferError::Token { detail, .. } => {
                write!(
                    f,
                    "{what} {r}: unauthorized: {detail} (run `hoist login {host}`)"
                )
            }
            TransferError::NotFound { .. } => {
                write!(
                    f,
                    "{what} {r}: manifest unknown: the registry has no such image"
                )
            }
            TransferError::Connection { source, .. } => write!(
                f,
                "{what} {r}: cannot reach registry {host}: {}",
                error_chain(source)
            ),
            _ => write!(f, "{what} {r}"),
        }
    }
}

impl std::error::Error for TransferFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.source {
            TransferError::Unauthorized { .. }
            | TransferError::Token { .. }
            | TransferError::NotFound { .. }
            | TransferError::Connection { .. } => None,
            e => Some(e),
        }
    }
}

/// An error with its sources, on one line, each said once.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
