//! Registry authentication: anonymous, Basic, and the Bearer token dance.
//!
//! The first request to a registry learns its challenge (`GET /v2/`, and any later `401` with a
//! `WWW-Authenticate` header). A Basic challenge gets the credential on every request. A Bearer
//! challenge (`realm`, `service`) sends the credential to the token endpoint for the scopes a
//! request needs (`repository:NAME:pull` or `:pull,push`; a cross-repository mount also asks for
//! `repository:FROM:pull`): `GET` with Basic credentials (or none), or docker's OAuth `POST` with
//! `grant_type=refresh_token` for an identity token. Tokens are cached per registry (one
//! [`Authenticator`] per registry client) and set of scopes, until shortly before they expire, or
//! until the registry answers `401` to one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, WWW_AUTHENTICATE};
use serde::Deserialize;

use super::error::{TransferError, truncate};
use crate::credentials::Credential;

/// How long a token without `expires_in` lives (the distribution spec's default).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// The client id docker's OAuth flow sends.
const CLIENT_ID: &str = "hoist";

/// What a registry asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Challenge {
    /// Nothing: requests go without credentials.
    None,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// What goes in a request's `Authorization` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Authorization {
    None,
    Basic { username: String, password: String },
    Bearer(String),
}

impl Authorization {
    pub(crate) fn apply(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Self::None => req,
            Self::Basic { username, password } => req.basic_auth(username, Some(password)),
            Self::Bearer(token) => req.bearer_auth(token),
        }
    }
}

/// What a token is asked for: `repository:NAME:ACTIONS`, or `registry:admin:*` (hoist's
/// administration API).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scope {
    scope: String,
}

impl Scope {
    pub fn pull(repository: &str) -> Self {
        Self {
            scope: format!("repository:{repository}:pull"),
        }
    }

    pub fn push(repository: &str) -> Self {
        Self {
            scope: format!("repository:{repository}:pull,push"),
        }
    }

    /// hoist's administration API (`/admin/v1`).
    pub fn admin_api() -> Self {
        Self {
            scope: "registry:admin:*".to_owned(),
        }
    }

    pub fn to_scope_string(&self) -> String {
        self.scope.clone()
    }
}

struct CachedToken {
    token: String,
    refresh_at: Instant,
}

/// One registry's authentication state.
pub(crate) struct Authenticator {
    http: reqwest::Client,
    /// The client `GET /v2/` probes the challenge with, when it is not `http`: see
    /// [`Authenticator::with_probe`].
    probe: Option<reqwest::Client>,
    base_url: String,
    credential: Option<Credential>,
    challenge: Mutex<Option<Challenge>>,
    tokens: Mutex<HashMap<String, CachedToken>>,
    /// Serialises token requests, so parallel transfers needing the same token fetch it once.
    fetching: tokio::sync::Mutex<()>,
}

impl Authenticator {
    pub(crate) fn new(
        http: reqwest::Client,
        base_url: String,
        credential: Option<Credential>,
    ) -> Self {
        Self {
            http,
            probe: None,
            base_url,
            credential,
            challenge: Mutex::new(None),
            tokens: Mutex::new(HashMap::new()),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// Probes the challenge with `probe` (a client without the TLS client certificate `http`
    /// presents). A registry that authenticates client certificates answers `GET /v2/` with 200
    /// to one, but the blob and manifest calls go through oci-client, whose connections cannot
    /// present it: probed without the certificate, the registry's Bearer challenge sends them
    /// to the token endpoint, where `http` presents the certificate and gets its grants.
    pub(crate) fn with_probe(mut self, probe: reqwest::Client) -> Self {
        self.probe = Some(probe);
        self
    }

    /// The `Authorization` for a request needing `scopes`.
    pub(crate) async fn authorization(
        &self,
        scopes: &[Scope],
    ) -> Result<Authorization, TransferError> {
        let challenge = self.challenge().await?;
        match challenge {
            Challenge::None => Ok(Authorization::None),
            Challenge::Basic => Ok(match &self.credential {
                Some(Credential::Basic { username, password }) => Authorization::Basic {
                    username: username.clone(),
                    password: password.clone(),
                },
                _ => Authorization::None,
            }),
            Challenge::Bearer { realm, service } => {
                let key = scope_key(scopes);
                if let Some(token) = self.cached(&key) {
                    return Ok(Authorization::Bearer(token));
                }
                let _guard = self.fetching.lock().await;
                if let Some(token) = self.cached(&key) {
                    return Ok(Authorization::Bearer(token));
                }
                let (token, lifetime) =
                    self.fetch_token(&realm, service.as_deref(), scopes).await?;
                // Refresh when 90% of the lifetime has passed, so a token never expires in flight.
                let refresh_at = Instant::now() + lifetime.mul_f32(0.9);
                self.tokens.lock().expect("token cache").insert(
                    key,
                    CachedToken {
                        token: token.clone(),
                        refresh_at,
                    },
                );
                Ok(Authorization::Bearer(token))
            }
        }
    }

    /// A `401` answered a request sent with `scopes`: forget the token, and learn the challenge
    /// the registry sent with it.
    pub(crate) fn unauthorized(&self, scopes: &[Scope], headers: Option<&HeaderMap>) {
        self.tokens
            .lock()
            .expect("token cache")
            .remove(&scope_key(scopes));
        if let Some(challenge) = headers.and_then(parse_challenge) {
            *self.challenge.lock().expect("challenge") = Some(challenge);
        }
    }

    fn cached(&self, key: &str) -> Option<String> {
        let tokens = self.tokens.lock().expect("token cache");
        tokens
            .get(key)
            .filter(|t| t.refresh_at > Instant::now())
            .map(|t| t.token.clone())
    }

    async fn challenge(&self) -> Result<Challenge, TransferError> {
        if let Some(c) = self.challenge.lock().expect("challenge").clone() {
            return Ok(c);
        }
        let url = format!("{}/v2/", self.base_url);
        let resp = self
            .probe
            .as_ref()
            .unwrap_or(&self.http)
            .get(&url)
            .send()
            .await
            .map_err(|source| TransferError::Connection {
                method: "GET".into(),
                url: url.clone(),
                source,
            })?;
        let status = resp.status();
        if status.is_server_error() {
            return Err(TransferError::Status {
                method: "GET".into(),
                url,
                status,
                detail: String::new(),
            });
        }
        let challenge = parse_challenge(resp.headers()).unwrap_or(Challenge::None);
        *self.challenge.lock().expect("challenge") = Some(challenge.clone());
        Ok(challenge)
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[Scope],
    ) -> Result<(String, Duration), TransferError> {
        let scope_strings: Vec<String> = scopes.iter().map(Scope::to_scope_string).collect();
        let req = match &self.credential {
            Some(Credential::IdentityToken(refresh)) => {
                let mut form = vec![
                    ("grant_type", "refresh_token".to_owned()),
                    ("refresh_token", refresh.clone()),
                    ("client_id", CLIENT_ID.to_owned()),
                    ("scope", scope_strings.join(" ")),
                ];
                if let Some(service) = service {
                    form.push(("service", service.to_owned()));
                }
                self.http.post(realm).form(&form)
            }
            credential => {
                let mut query: Vec<(&str, &str)> = Vec::new();
                if let Some(service) = service {
                    query.push(("service", service));
                }
                for s in &scope_strings {
                    query.push(("scope", s));
                }
                let mut req = self.http.get(realm).query(&query);
                if let Some(Credential::Basic { username, password }) = credential {
                    req = req
                        .query(&[("account", username)])
                        .basic_auth(username, Some(password));
                }
                req
            }
        };
        let token_err = |detail: String| TransferError::Token {
            realm: realm.to_owned(),
            detail,
        };
        let resp = req
            .send()
            .await
            .map_err(|e| token_err(e.to_string().to_lowercase()))?;
        let status = resp.status();
        let body = resp
            .text()
            .await
            .map_err(|e| token_err(e.to_string().to_lowercase()))?;
        if !status.is_success() {
            let detail = if status == reqwest::StatusCode::UNAUTHORIZED {
                "credentials refused".to_owned()
            } else {
                format!("{status}: {}", truncate(&body))
            };
            return Err(token_err(detail));
        }
        let parsed: TokenResponse = serde_json::from_str(&body)
            .map_err(|e| token_err(format!("invalid token response: {e}")))?;
        let token = parsed
            .token
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| token_err("response has no token".into()))?;
        let lifetime = parsed
            .expires_in
            .filter(|&s| s > 0)
            .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
        Ok((token, lifetime))
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

fn scope_key(scopes: &[Scope]) -> String {
    let mut parts: Vec<String> = scopes.iter().map(Scope::to_scope_string).collect();
    parts.sort();
    parts.dedup();
    parts.join(" ")
}

/// The first challenge hoist understands in the `WWW-Authenticate` headers.
pub(crate) fn parse_challenge(headers: &HeaderMap) -> Option<Challenge> {
    let mut basic = false;
    for value in headers.get_all(WWW_AUTHENTICATE) {
        let Ok(value) = value.to_str() else { continue };
        let value = value.trim();
        let (scheme, params) = value.split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("bearer") {
            let params = hoist_oci::www_authenticate::parse_params(params);
            if let Some(realm) = params.get("realm") {
                return Some(Challenge::Bearer {
                    realm: realm.clone(),
                    service: params.get("service").cloned(),
                });
            }
        } else if scheme.eq_ignore_ascii_case("basic") {
            basic = true;
        }
    }
    basic.then_some(Challenge::Basic)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(WWW_AUTHENTICATE, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn parses_bearer_challenges() {
        let h = headers(&[
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull,push""#,
        ]);
        assert_eq!(
            parse_challenge(&h),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
            })
        );
        let h = headers(&[r#"bearer Realm="http://x/t\"q""#]);
        assert_eq!(
            parse_challenge(&h),
            Some(Challenge::Bearer {
                realm: "http://x/t\"q".into(),
                service: None
            })
        );
    }

    #[test]
    fn parses_basic_and_prefers_bearer() {
        assert_eq!(
            parse_challenge(&headers(&[r#"Basic realm="registry""#])),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge(&headers(&[
                r#"Basic realm="r""#,
                r#"Bearer realm="http://t",service=s"#
            ])),
            Some(Challenge::Bearer {
                realm: "http://t".into(),
                service: Some("s".into())
            })
        );
        assert_eq!(parse_challenge(&headers(&[])), None);
        assert_eq!(parse_challenge(&headers(&["Bearer service=x"])), None);
    }

    #[test]
    fn scope_keys_ignore_order() {
        let a = [Scope::push("a"), Scope::pull("b")];
        let b = [Scope::pull("b"), Scope::push("a")];
        assert_eq!(scope_key(&a), scope_key(&b));
        assert_eq!(
            scope_key(&a),
            "repository:a:pull,push repository:b:pull".to_owned()
        );
    }
}
