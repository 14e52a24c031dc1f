//! A typed client for hoist's admin HTTP API (`/admin/v1/...`): users, organisations, teams and
//! their grants, repository visibility, robot accounts, personal access tokens and the audit log.
//!
//! [`AdminClient`] reaches a registry host as the transfer engine does (the same
//! [`Endpoints`] resolution and TLS settings), with the credential `hoist login` / `docker login`
//! stored for the host ([`DockerConfig`]). A username and password (or a personal access token)
//! go as Basic auth, which the admin API accepts; an identity (refresh) token is exchanged at the
//! registry's token endpoint by the transfer engine's authenticator and sent as a Bearer token.
//! Errors are the API's `{"errors":[{"code","message"}]}` bodies, typed by status.

use std::fmt;
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde::{Deserialize, Serialize};

use crate::credentials::{Credential, CredentialError, DockerConfig};
use crate::endpoint::{EndpointError, Endpoints};
use crate::transfer::TransferError;
use crate::transfer::auth::{Authenticator, Authorization, Scope};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error(transparent)]
    Credential(#[from] CredentialError),
    #[error("building the http client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("{method} {url}: {source}")]
    Connection {
        method: String,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The registry refused the credentials (or none were sent): `401`.
    #[error("{url}: unauthorized: {message}")]
    Unauthorized { url: String, message: String },
    /// The caller is known but not allowed: `403`.
    #[error("{url}: denied: {message}")]
    Denied { url: String, message: String },
    #[error("{url}: not found: {message}")]
    NotFound { url: String, message: String },
    /// Any other refusal, with the API's error code when it sent one.
    #[error("{method} {url}: {status}: {code}{message}", code = fmt_code(code))]
    Api {
        method: String,
        url: String,
        status: StatusCode,
        code: Option<String>,
        message: String,
    },
    #[error("{url}: invalid response: {detail}")]
    Response { url: String, detail: String },
    /// Getting a token for an identity-token credential failed.
    #[error(transparent)]
    Token(#[from] TransferError),
    #[error("invalid argument {what} {value:?}: {detail}")]
    Argument {
        what: &'static str,
        value: String,
        detail: String,
    },
    #[error("task failed: {0}")]
    Join(String),
}

fn fmt_code(code: &Option<String>) -> String {
    code.as_ref().map(|c| format!("{c}: ")).unwrap_or_default()
}

/// A repository's visibility: private (the default) or public (anonymous pull).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    Public,
    Private,
}

impl std::str::FromStr for Visibility {
    type Err = AdminError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "public" => Ok(Self::Public),
            "private" => Ok(Self::Private),
            other => Err(AdminError::Argument {
                what: "visibility",
                value: other.to_owned(),
                detail: "want public or private".into(),
            }),
        }
    }
}

impl fmt::Display for Visibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Public => "public",
            Self::Private => "private",
        })
    }
}

/// What a team grant allows on the repositories its pattern matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Pull,
    Push,
    Delete,
    Admin,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pull => "pull",
            Self::Push => "push",
            Self::Delete => "delete",
            Self::Admin => "admin",
        }
    }

    /// A comma-separated list (`pull,push`), each action once.
    pub fn parse_list(s: &str) -> Result<Vec<Action>, AdminError> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim) {
            let action = match part {
                "pull" => Self::Pull,
                "push" => Self::Push,
                "delete" => Self::Delete,
                "admin" => Self::Admin,
                other => {
                    return Err(AdminError::Argument {
                        what: "action",
                        value: other.to_owned(),
                        detail: "want pull, push, delete or admin".into(),
                    });
                }
            };
            if !out.contains(&action) {
                out.push(action);
            }
        }
        Ok(out)
    }
}

/// A time as the API sends it: seconds since the epoch, or text (RFC 3339).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Time {
    Unix(i64),
    Text(String),
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(s) => write!(f, "{s}"),
            Self::Text(t) => f.write_str(t),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct User {
    pub name: String,
    #[serde(default)]
    pub admin: bool,
}

/// A personal access token just created: `token` is shown this once.
#[derive(Clone, Deserialize)]
pub struct CreatedToken {
    pub id: String,
    pub token: String,
}

impl fmt::Debug for CreatedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreatedToken")
            .field("id", &self.id)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// A robot account just created (`org+name`): `token` is shown this once.
#[derive(Clone, Deserialize)]
pub struct Robot {
    pub name: String,
    pub token: String,
}

impl fmt::Debug for Robot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Robot")
            .field("name", &self.name)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// A personal access token as listed (never its secret).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub expires_at: Option<Time>,
}

/// One security-relevant event.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct AuditEvent {
    pub time: Time,
    #[serde(default)]
    pub actor: Option<String>,
    pub action: String,
    #[serde(default)]
    pub target: Option<String>,
    pub outcome: String,
    #[serde(default)]
    pub remote: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
}

#[derive(Deserialize)]
struct ErrorEntry {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    /// What exactly was wrong (hoist puts the specific reason here).
    #[serde(default)]
    detail: Option<serde_json::Value>,
}

impl ErrorEntry {
    /// `message: detail`, or whichever of the two is there.
    fn text(&self) -> Option<String> {
        let detail = match &self.detail {
            Some(serde_json::Value::String(d)) if !d.is_empty() => Some(d.clone()),
            Some(serde_json::Value::Null) | None => None,
            Some(serde_json::Value::String(_)) => None,
            Some(other) => Some(other.to_string()),
        };
        let message = self.message.clone().filter(|m| !m.is_empty());
        match (message, detail) {
            (Some(m), Some(d)) if d.contains(&m) => Some(d),
            (Some(m), Some(d)) => Some(format!("{m}: {d}")),
            (m, d) => m.or(d),
        }
    }
}

/// The admin API of one registry host.
pub struct AdminClient {
    http: reqwest::Client,
    base: Url,
    credential: Option<Credential>,
    auth: Authenticator,
}

impl AdminClient {
    /// A client for `host` (`name` or `name:port`) with `credential`. Reads the host's
    /// `certs.d` files, so it blocks briefly; see [`AdminClient::connect`].
    pub fn new(
        host: &str,
        endpoints: &Endpoints,
        credential: Option<Credential>,
    ) -> Result<Self, AdminError> {
        let endpoint = endpoints.resolve(host)?;
        let tls = endpoints.tls(host)?;
        let builder =
            reqwest::Client::builder().user_agent(concat!("hoist/", env!("CARGO_PKG_VERSION")));
        let http = tls.apply(builder)?.build().map_err(AdminError::Client)?;
        let base_url = endpoint.base_url();
        let base = Url::parse(&format!("{base_url}/")).map_err(|e| AdminError::Argument {
            what: "registry",
            value: host.to_owned(),
            detail: e.to_string(),
        })?;
        let auth = Authenticator::new(http.clone(), base_url, credential.clone());
        Ok(Self {
            http,
            base,
            credential,
            auth,
        })
    }

    /// A client for `host` with the credential docker's config holds for it.
    pub async fn connect(
        host: &str,
        endpoints: &Endpoints,
        config: &DockerConfig,
    ) -> Result<Self, AdminError> {
        let (host, endpoints, config) = (host.to_owned(), endpoints.clone(), config.clone());
        tokio::task::spawn_blocking(move || {
            let credential = config.get(&host)?;
            Self::new(&host, &endpoints, credential)
        })
        .await
        .map_err(|e| AdminError::Join(e.to_string()))?
    }

    /// Whether the client has a credential to send.
    pub fn has_credential(&self) -> bool {
        self.credential.is_some()
    }

    /// `/admin/v1/<segments...>`, each segment percent-encoded.
    fn url<'a>(&self, segments: impl IntoIterator<Item = &'a str>) -> Url {
        let mut url = self.base.clone();
        {
            let mut path = url.path_segments_mut().expect("http urls have paths");
            path.pop_if_empty().extend(["admin", "v1"]).extend(segments);
        }
        url
    }

    async fn authorization(&self) -> Result<Authorization, AdminError> {
        Ok(match &self.credential {
            None => Authorization::None,
            Some(Credential::Basic { username, password }) => Authorization::Basic {
                username: username.clone(),
                password: password.clone(),
            },
            Some(Credential::IdentityToken(_)) => {
                self.auth.authorization(&[Scope::admin_api()]).await?
            }
        })
    }

    /// Sends a request (with a JSON body when given); on success returns the body.
    async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<serde_json::Value>,
        expect: &[StatusCode],
    ) -> Result<bytes::Bytes, AdminError> {
        for attempt in 0..2 {
            let mut req = self.http.request(method.clone(), url.clone());
            if let Some(b) = &body {
                req = req.json(b);
            }
            let req = self.authorization().await?.apply(req);
            let resp = req.send().await.map_err(|source| AdminError::Connection {
                method: method.to_string(),
                url: url.to_string(),
                source,
            })?;
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED
                && attempt == 0
                && matches!(self.credential, Some(Credential::IdentityToken(_)))
            {
                // The token may have expired: get a fresh one once.
                self.auth
                    .unauthorized(&[Scope::admin_api()], Some(resp.headers()));
                continue;
            }
            let bytes = resp
                .bytes()
                .await
                .map_err(|source| AdminError::Connection {
                    method: method.to_string(),
                    url: url.to_string(),
                    source,
                })?;
            if expect.contains(&status) {
                return Ok(bytes);
            }
            return Err(self.refusal(&method, &url, status, &bytes));
        }
        Err(AdminError::Unauthorized {
            url: url.to_string(),
            message: "the registry refused a fresh token".into(),
        })
    }

    fn refusal(&self, method: &Method, url: &Url, status: StatusCode, body: &[u8]) -> AdminError {
        let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
        let first = parsed.and_then(|b| b.errors.into_iter().next());
        let code = first.as_ref().and_then(|e| e.code.clone());
        let message = first
            .as_ref()
            .and_then(ErrorEntry::text)
            .unwrap_or_else(|| {
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                if text.is_empty() {
                    status
                        .canonical_reason()
                        .unwrap_or("no reason given")
                        .to_lowercase()
                } else {
                    text.chars().take(300).collect()
                }
            });
        let url = url.to_string();
        match status {
            StatusCode::UNAUTHORIZED => {
                let message = if self.credential.is_none() {
                    "no credentials for this registry".to_owned()
                } else {
                    message
                };
                AdminError::Unauthorized { url, message }
            }
            StatusCode::FORBIDDEN => AdminError::Denied { url, message },
            StatusCode::NOT_FOUND => AdminError::NotFound { url, message },
            status => AdminError::Api {
                method: method.to_string(),
                url,
                status,
                code,
                message,
            },
        }
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<serde_json::Value>,
        expect: &[StatusCode],
    ) -> Result<T, AdminError> {
        let bytes = self.call(method, url.clone(), body, expect).await?;
        serde_json::from_slice(&bytes).map_err(|e| AdminError::Response {
            url: url.to_string(),
            detail: e.to_string(),
        })
    }

    // ----- users -----

    /// Creates a user.
    pub async fn add_user(&self, name: &str, password: &str) -> Result<(), AdminError> {
        let body = serde_json::json!({ "name": name, "password": password });
        self.call(
            Method::POST,
            self.url(["users"]),
            Some(body),
            &[StatusCode::CREATED, StatusCode::OK],
        )
        .await?;
        Ok(())
    }

    /// Removes a user.
    pub async fn remove_user(&self, name: &str) -> Result<(), AdminError> {
        self.call(
            Method::DELETE,
            self.url(["users", name]),
            None,
            &[StatusCode::NO_CONTENT, StatusCode::OK],
        )
        .await?;
        Ok(())
    }

    /// Sets a user's password (an admin for anyone, a user for themselves).
    pub async fn set_password(&self, name: &str, password: &str) -> Result<(), AdminError> {
        let body = serde_json::json!({ "password": password });
        self.call(
            Method::PUT,
            self.url(["users", name, "password"]),
            Some(body),
            &[StatusCode::NO_CONTENT, StatusCode::OK],
        )
        .await?;
        Ok(())
    }

    /// Every user.
    pub async fn users(&self) -> Result<Vec<User>, AdminError> {
        self.json(Method::GET, self.url(["users"]), None, &[StatusCode::OK])
            .await
    }

    // ----- organisations and teams -----

    pub async fn create_org(&self, name: &str) -> Result<(), AdminError> {
        self.call(
            Method::POST,
            self.url(["orgs"]),
            Some(serde_json::json!({ "name": name })),
            &[StatusCode::CREATED, StatusCode::OK],
        )
        .await?;
        Ok(())
    }

    pub async fn create_team(&self, org: &str, team: &str) -> Result<(), AdminError> {
        self.call(
            Method::POST,
            self.url(["orgs", org, "teams"]),
            Some(serde_json::json!({ "name": team })),
            &[StatusCode::CREATED, StatusCode::OK],
        )
        .await?;
        Ok(())
    }

    pub async fn add_member(&self, org: &str, team: &str, user: &str) -> Result<(), AdminError> {
        self.call(
            Method::PUT,
            self.url(["orgs", org, "teams", team, "members", user]),
            None,
            &[StatusCode::NO_CONTENT, StatusCode::OK, StatusCode::CREATED],
        )
        .await?;
        Ok(())
    }

    pub async fn remove_member(&self, org: &str, team: &str, user: &str) -> Result<(), AdminError> {
        self.call(
            Method::DELETE,
            self.url(["orgs", org, "teams", team, "members", user]),
            None,
            &[StatusCode::NO_CONTENT, StatusCode::OK],
        )
        .await?;
        Ok(())
    }

    /// Grants a team `actions` on the repositories `pattern` matches (`acme/*`).
    pub async fn grant(
        &self,
        org: &str,
        team: &str,
        pattern: &str,
        actions: &[Action],
    ) -> Result<(), AdminError> {
        let body = serde_json::json!({ "pattern": pattern, "actions": actions });
        self.call(
            Method::POST,
            self.url(["orgs", org, "teams", team, "grants"]),
            Some(body),
            &[StatusCode::CREATED, StatusCode::OK, StatusCode::NO_CONTENT],
        )
        .await?;
        Ok(())
    }

    // ----- repositories -----

    pub async fn set_visibility(
        &self,
        repo: &str,
        visibility: Visibility,
    ) -> Result<(), AdminError> {
        let mut segments: Vec<&str> = vec!["repos"];
        segments.extend(repo.split('/'));
        segments.push("visibility");
        self.call(
            Method::PUT,
            self.url(segments),
            Some(serde_json::json!({ "visibility": visibility })),
            &[StatusCode::NO_CONTENT, StatusCode::OK],
        )
        .await?;
        Ok(())
    }

    // ----- robots and tokens -----

    /// Creates robot `org+name` with `scopes` (`repository:acme/*:pull`).
    pub async fn create_robot(
        &self,
        org: &str,
        name: &str,
        scopes: &[String],
        expires_in: Option<Duration>,
    ) -> Result<Robot, AdminError> {
        let body = serde_json::json!({
            "org": org,
            "name": name,
            "scopes": scopes,
            "expires_in_secs": expires_in.map(|d| d.as_secs()),
        });
        self.json(
            Method::POST,
            self.url(["robots"]),
            Some(body),
            &[StatusCode::CREATED, StatusCode::OK],
        )
        .await
    }

    /// Creates a personal access token for the caller.
    pub async fn create_token(
        &self,
        name: &str,
        scopes: &[String],
        expires_in: Option<Duration>,
    ) -> Result<CreatedToken, AdminError> {
        let body = serde_json::json!({
            "name": name,
            "scopes": scopes,
            "expires_in_secs": expires_in.map(|d| d.as_secs()),
        });
        self.json(
            Method::POST,
            self.url(["tokens"]),
            Some(body),
            &[StatusCode::CREATED, StatusCode::OK],
        )
        .await
    }

    /// The caller's personal access tokens.
    pub async fn tokens(&self) -> Result<Vec<TokenInfo>, AdminError> {
        self.json(Method::GET, self.url(["tokens"]), None, &[StatusCode::OK])
            .await
    }

    pub async fn revoke_token(&self, id: &str) -> Result<(), AdminError> {
        self.call(
            Method::DELETE,
            self.url(["tokens", id]),
            None,
            &[StatusCode::NO_CONTENT, StatusCode::OK],
        )
        .await?;
        Ok(())
    }

    // ----- audit -----

    /// The latest audit events (at most `limit` when given).
    pub async fn audit(&self, limit: Option<u32>) -> Result<Vec<AuditEvent>, AdminError> {
        let mut url = self.url(["audit"]);
        if let Some(n) = limit {
            url.query_pairs_mut().append_pair("limit", &n.to_string());
        }
        self.json(Method::GET, url, None, &[StatusCode::OK]).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_encode_each_segment() {
        let c = AdminClient::new("127.0.0.1:5000", &Endpoints::new(), None).unwrap();
        assert_eq!(
            c.url(["users", "a/b?c"]).as_str(),
            "http://127.0.0.1:5000/admin/v1/users/a%2Fb%3Fc"
        );
        let mut segs = vec!["repos"];
        segs.extend("acme/app".split('/'));
        segs.push("visibility");
        assert_eq!(
            c.url(segs).as_str(),
            "http://127.0.0.1:5000/admin/v1/repos/acme/app/visibility"
        );
        assert!(!c.has_credential());
    }

    #[test]
    fn actions_parse_and_dedup() {
        assert_eq!(
            Action::parse_list("pull,push,pull").unwrap(),
            [Action::Pull, Action::Push]
        );
        assert_eq!(
            Action::parse_list("delete, admin").unwrap(),
            [Action::Delete, Action::Admin]
        );
        let e = Action::parse_list("pull,write").unwrap_err().to_string();
        assert!(e.contains("\"write\""), "{e}");
        assert_eq!(
            serde_json::to_string(&[Action::Pull, Action::Admin]).unwrap(),
            r#"["pull","admin"]"#
        );
    }

    #[test]
    fn refusals_are_typed_by_status_with_the_api_message() {
        let c = AdminClient::new(
            "127.0.0.1:5000",
            &Endpoints::new(),
            Some(Credential::Basic {
                username: "u".into(),
                password: "p".into(),
            }),
        )
        .unwrap();
        let url = c.url(["orgs"]);
        let body = br#"{"errors":[{"code":"DENIED","message":"admin rights needed"}]}"#;
        match c.refusal(&Method::POST, &url, StatusCode::FORBIDDEN, body) {
            AdminError::Denied { message, .. } => assert_eq!(message, "admin rights needed"),
            other => panic!("{other:?}"),
        }
        let body = br#"{"errors":[{"code":"INVALID","message":"invalid request","detail":"a token needs at least one scope"}]}"#;
        match c.refusal(&Method::POST, &url, StatusCode::BAD_REQUEST, body) {
            AdminError::Api { message, code, .. } => {
                assert_eq!(message, "invalid request: a token needs at least one scope");
                assert_eq!(code.as_deref(), Some("INVALID"));
            }
            other => panic!("{other:?}"),
        }
        match c.refusal(&Method::POST, &url, StatusCode::CONFLICT, b"") {
            AdminError::Api { status, code, .. } => {
                assert_eq!(status, StatusCode::CONFLICT);
                assert_eq!(code, None);
            }
            other => panic!("{other:?}"),
        }
        let anon = AdminClient::new("127.0.0.1:5000", &Endpoints::new(), None).unwrap();
        let e = anon.refusal(&Method::GET, &url, StatusCode::UNAUTHORIZED, b"{}");
        assert!(e.to_string().contains("no credentials"), "{e}");
    }

    #[test]
    fn times_are_numbers_or_text() {
        let t: TokenInfo = serde_json::from_str(
            r#"{"id":"1","name":"ci","scopes":["repository:a/b:pull"],"expires_at":1700000000}"#,
        )
        .unwrap();
        assert_eq!(t.expires_at, Some(Time::Unix(1_700_000_000)));
        let t: TokenInfo =
            serde_json::from_str(r#"{"id":"1","name":"ci","expires_at":"2030-01-01T00:00:00Z"}"#)
                .unwrap();
        assert_eq!(t.expires_at.unwrap().to_string(), "2030-01-01T00:00:00Z");
    }
}
