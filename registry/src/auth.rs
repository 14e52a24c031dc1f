//! The auth seam. Every request passes through the [`Grant`] extractor, and every handler asks
//! the grant for the action it performs before it touches storage. Today the grant allows
//! everything (the registry runs open on loopback); users, organisations and tokens replace
//! [`Grant::from_request_parts`] without touching the handlers.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use hoist_oci::RepoName;

use crate::error::{ApiError, Code};

/// What a request may do to a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Pull,
    Push,
    Delete,
}

/// What the caller is allowed: who they are and which actions they hold.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The authenticated subject, if any.
    pub subject: Option<String>,
    open: bool,
}

impl Grant {
    /// A grant that allows every action (open mode).
    pub fn open() -> Self {
        Grant {
            subject: None,
            open: true,
        }
    }

    /// Checks that the grant allows `action` on `repo`.
    pub fn require(&self, repo: &RepoName, action: Action) -> Result<(), ApiError> {
        if self.open {
            Ok(())
        } else {
            Err(ApiError::new(
                Code::Denied,
                format!("{action:?} on {repo} is not granted").to_lowercase(),
            ))
        }
    }

    /// Whether the grant may list `repo` in the catalog (pull rights on it).
    pub fn may_see(&self, repo: &str) -> bool {
        RepoName::parse(repo).is_ok_and(|r| self.require(&r, Action::Pull).is_ok())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Grant {
    type Rejection = ApiError;

    async fn from_request_parts(_parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Grant::open())
    }
}
