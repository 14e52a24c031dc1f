//! hoist-auth: identities, organisations, teams, grants, password hashing and tokens. No HTTP.
//!
//! - [`actions`]: [`Actions`] (pull, push, delete, admin), [`Scope`] (`repository:NAME:ACTIONS`),
//!   repository patterns with `*`.
//! - [`password`]: argon2id hashing and constant-time verification.
//! - [`jwt`]: ES256 registry tokens, the signing key (generated on first start), the JWKS.
//! - [`limiter`]: failed-login rate limiting.
//! - [`policy`]: the pure permission evaluation `evaluate(identity, grants, public, repo)`.
//! - [`service`]: [`Auth`], the SQLite-backed store (`<data>/auth.db`) with logins, token
//!   issue and verification, the administration operations and the audit log.
//!
//! No secret (password, token, refresh token) is ever written to a log or to the audit table.

pub mod actions;
pub mod jwt;
pub mod limiter;
pub mod password;
pub mod policy;
pub mod service;
mod time;

pub use actions::{Actions, ResourceKind, Scope, pattern_matches};
pub use jwt::{Access, Claims, TokenKeys};
pub use limiter::Limits;
pub use policy::{Identity, IdentityKind, TokenCap, evaluate};
pub use service::{
    AuditEntry, Auth, AuthConfig, CreatedToken, IssuedToken, LoginError, TokenInfo, UserInfo,
};
pub use time::rfc3339;

/// Why an auth operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("invalid {what} {value:?}: {reason}")]
    Invalid {
        what: &'static str,
        value: String,
        reason: String,
    },
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    Conflict(String),
    #[error("not allowed: {0}")]
    Forbidden(String),
    #[error("invalid token: {0}")]
    InvalidToken(String),
    #[error("auth database {path}: {source}")]
    Db {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("crypto: {0}")]
    Crypto(String),
    /// Too many password hashes or checks are in progress (see [`password::max_concurrent`]).
    #[error("too many password checks in progress, retry in {} seconds", .0.as_secs().max(1))]
    Busy(std::time::Duration),
}
