//! The auth seam. Every `/v2` request passes through the [`Grant`] extractor, and every handler
//! asks the grant for the action it performs before it touches storage.
//!
//! - Open mode (no [`hoist_auth::Auth`] in the [`App`]): the grant allows everything.
//! - Closed mode: the request carries Basic credentials (a password, a personal access token or
//!   a robot token), a Bearer registry token (ES256 JWT from `/token`: signature, `kid`, `exp`,
//!   `nbf`, `iss`, `aud` = the service, and its `access` claim must cover the action), or
//!   nothing (anonymous: public repositories only). A request without valid credentials gets
//!   `401` and `WWW-Authenticate: Bearer realm="<base>/token",service="...",scope="..."`; an
//!   authenticated request that is not allowed gets `403 DENIED`.
//!
//! Also here: the token endpoint (`GET`/`POST /token`) and the JWKS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use hoist_auth::{Actions, Auth, Claims, Identity, LoginError, Scope};

use crate::listener::ClientUser;
use hoist_oci::RepoName;

use crate::App;
use crate::error::{ApiError, Code};
use crate::route::{Route, parse_v2};

/// What a request may do to a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Pull,
    Push,
    Delete,
}

impl Action {
    fn actions(self) -> Actions {
        match self {
            Action::Pull => Actions::PULL,
            Action::Push => Actions::PUSH,
            Action::Delete => Actions::DELETE,
        }
    }

    /// The actions a client asks a token for to do this (docker asks `pull,push` to push).
    fn scope_actions(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "pull,push",
            Action::Delete => "delete",
        }
    }
}

/// Where clients get tokens, as the challenge names it.
#[derive(Debug, Clone)]
pub struct Challenge {
    pub realm: String,
    pub service: String,
}

impl Challenge {
    /// `401 UNAUTHORIZED` with `WWW-Authenticate: Bearer realm=..,service=..[,scope=..][,error=..]`.
    pub fn unauthorized(&self, scope: Option<&str>, error: Option<&str>, detail: &str) -> ApiError {
        let mut v = format!(
            "Bearer realm=\"{}\",service=\"{}\"",
            self.realm, self.service
        );
        if let Some(s) = scope {
            v.push_str(&format!(",scope=\"{s}\""));
        }
        if let Some(e) = error {
            v.push_str(&format!(",error=\"{e}\""));
        }
        ApiError::new(Code::Unauthorized, detail).with_header(header::WWW_AUTHENTICATE, &v)
    }
}

/// How a request authenticated.
#[derive(Debug, Clone)]
pub enum Authn {
    /// Basic credentials, or none (anonymous).
    Identity(Identity),
    /// A verified registry token.
    Token(Claims),
}

#[derive(Clone)]
enum Inner {
    Open,
    Closed(Box<Closed>),
}

#[derive(Clone)]
struct Closed {
    auth: Arc<Auth>,
    authn: Authn,
    challenge: Challenge,
}

/// Which repository names a caller may see in the catalog.
pub type CatalogFilter = Box<dyn Fn(&str) -> bool + Send>;

/// What the caller is allowed: who they are and which actions they hold.
#[derive(Clone)]
pub struct Grant {
    inner: Inner,
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Inner::Open => f.write_str("Grant(open)"),
            Inner::Closed(c) => write!(f, "Grant({:?})", c.authn),
        }
    }
}

fn internal(e: hoist_auth::AuthError) -> ApiError {
    ApiError::new(Code::Unknown, e.to_string())
}

fn denied(repo: &str, action: Action) -> ApiError {
    ApiError::new(
        Code::Denied,
        format!("{} on {repo} is not granted", action.scope_actions()),
    )
}

impl Grant {
    /// A grant that allows every action (open mode).
    pub fn open() -> Self {
        Grant { inner: Inner::Open }
    }

    /// The authenticated subject, if any.
    pub fn subject(&self) -> Option<&str> {
        let Inner::Closed(c) = &self.inner else {
            return None;
        };
        match &c.authn {
            Authn::Identity(id) => (!id.is_anonymous()).then_some(id.name.as_str()),
            Authn::Token(c) => (!c.sub.is_empty()).then_some(c.sub.as_str()),
        }
    }

    fn audit_denied(auth: &Auth, who: &str, repo: &str, action: Action) {
        auth.audit(
            who,
            "access",
            &format!("repository:{repo}:{}", action.scope_actions()),
            "denied",
            "-",
        );
    }

    /// Checks that the grant allows `action` on `repo`: `Ok`, `401` with a challenge naming the
    /// scope (no or insufficient credentials), or `403 DENIED` (authenticated, not allowed).
    pub fn require(&self, repo: &RepoName, action: Action) -> Result<(), ApiError> {
        let Inner::Closed(closed) = &self.inner else {
            return Ok(());
        };
        let Closed {
            auth,
            authn,
            challenge,
        } = closed.as_ref();
        let scope = format!("repository:{repo}:{}", action.scope_actions());
        let want = action.actions();
        match authn {
            Authn::Identity(id) => {
                if auth
                    .allowed(id, repo.as_str())
                    .map_err(internal)?
                    .contains(want)
                {
                    Ok(())
                } else if id.is_anonymous() {
                    Err(challenge.unauthorized(Some(&scope), None, "authentication required"))
                } else {
                    Self::audit_denied(auth, &id.name, repo.as_str(), action);
                    Err(denied(repo.as_str(), action))
                }
            }
            Authn::Token(claims) => {
                if claims.allows_repo(repo.as_str(), want) {
                    return Ok(());
                }
                let id = auth.identity_of(claims).map_err(|e| {
                    challenge.unauthorized(Some(&scope), Some("invalid_token"), &e.to_string())
                })?;
                if id.is_anonymous() {
                    return Err(challenge.unauthorized(
                        Some(&scope),
                        Some("insufficient_scope"),
                        "authentication required",
                    ));
                }
                if auth
                    .allowed(&id, repo.as_str())
                    .map_err(internal)?
                    .contains(want)
                {
                    // Allowed, but the token was not issued for it: ask for another.
                    Err(challenge.unauthorized(
                        Some(&scope),
                        Some("insufficient_scope"),
                        "the token does not grant this scope",
                    ))
                } else {
                    Self::audit_denied(auth, &id.name, repo.as_str(), action);
                    Err(denied(repo.as_str(), action))
                }
            }
        }
    }

    /// `/v2/`: any valid credentials (an anonymous token included); a request without any gets
    /// the challenge.
    pub fn require_base(&self) -> Result<(), ApiError> {
        match &self.inner {
            Inner::Closed(c) if matches!(&c.authn, Authn::Identity(id) if id.is_anonymous()) => {
                Err(c
                    .challenge
                    .unauthorized(None, None, "authentication required"))
            }
            _ => Ok(()),
        }
    }

    /// The catalog's filter: which repositories the caller may pull. Bearer tokens must carry
    /// `registry:catalog:*`; anonymous requests get the challenge.
    pub fn catalog_filter(&self) -> Result<CatalogFilter, ApiError> {
        let Inner::Closed(closed) = &self.inner else {
            return Ok(Box::new(|_| true));
        };
        let Closed {
            auth,
            authn,
            challenge,
        } = closed.as_ref();
        let scope = Scope::catalog().to_string();
        let id = match authn {
            Authn::Identity(id) if id.is_anonymous() => {
                return Err(challenge.unauthorized(Some(&scope), None, "authentication required"));
            }
            Authn::Identity(id) => id.clone(),
            Authn::Token(claims) => {
                if !claims.allows_catalog() {
                    return Err(challenge.unauthorized(
                        Some(&scope),
                        Some("insufficient_scope"),
                        "the token does not grant the catalog",
                    ));
                }
                auth.identity_of(claims).map_err(|e| {
                    challenge.unauthorized(Some(&scope), Some("invalid_token"), &e.to_string())
                })?
            }
        };
        let check = auth.checker(&id).map_err(internal)?;
        Ok(Box::new(move |r| check(r).contains(Actions::PULL)))
    }

    /// Records a repository a push created (closed mode).
    pub fn note_repo(&self, repo: &RepoName) {
        if let Inner::Closed(c) = &self.inner
            && let Err(e) = c.auth.note_repo(repo.as_str())
        {
            tracing::warn!(error = %e, repo = %repo, "recording a repository");
        }
    }
}

/// The caller's address, for rate limiting and the audit log: the connection's peer, or behind
/// a trusted proxy the client it forwarded for ([`crate::forwarded::client`]).
pub fn remote_addr(app: &App, parts: &Parts) -> String {
    let Some(peer) = parts.extensions.get::<ConnectInfo<SocketAddr>>() else {
        return "unknown".to_owned();
    };
    if app.trusted_proxies.is_empty() {
        return peer.0.ip().to_string();
    }
    let forwarded: Vec<&str> = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    crate::forwarded::client(peer.0.ip(), &forwarded, &app.trusted_proxies).to_string()
}

/// The challenge for this request: `<realm base>/token` (configured, else from `Host`, or the
/// URI's authority over HTTP/2; `https` over TLS or when `X-Forwarded-Proto` says so).
pub fn challenge_for(app: &App, parts: &Parts) -> Challenge {
    let realm = match &app.realm {
        Some(base) => format!("{}/token", base.trim_end_matches('/')),
        None => {
            let headers = &parts.headers;
            let authority = parts.uri.authority().map(|a| a.as_str());
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .or(authority)
                .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic() && b != b'"'))
                .unwrap_or("localhost");
            let tls = parts.extensions.get::<crate::listener::Tls>().is_some();
            let scheme = headers
                .get("x-forwarded-proto")
                .and_then(|h| h.to_str().ok())
                .filter(|s| *s == "https" || *s == "http")
                .unwrap_or(if tls { "https" } else { "http" });
            format!("{scheme}://{host}/token")
        }
    };
    let service = app
        .auth
        .as_ref()
        .map(|a| a.config().service.clone())
        .unwrap_or_default();
    Challenge { realm, service }
}

/// The scope a `/v2` request needs, for the challenge of a request whose credentials failed.
fn route_scope(method: &Method, path: &str) -> Option<String> {
    let rest = path.strip_prefix("/v2")?;
    let (name, action) = match parse_v2(method, rest).ok()? {
        Route::Base => return None,
        Route::Catalog => return Some(Scope::catalog().to_string()),
        Route::Tags { name } | Route::Referrers { name, .. } => (name, Action::Pull),
        Route::Manifest { name, .. } | Route::Blob { name, .. } => match *method {
            Method::GET | Method::HEAD => (name, Action::Pull),
            Method::PUT => (name, Action::Push),
            _ => (name, Action::Delete),
        },
        Route::UploadStart { name } | Route::Upload { name, .. } => (name, Action::Push),
    };
    Some(format!("repository:{name}:{}", action.scope_actions()))
}

/// `user:password` of a Basic `Authorization` header.
pub fn parse_basic(v: &str) -> Option<(String, String)> {
    let (scheme, rest) = v.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

fn limited(retry: Duration) -> ApiError {
    let secs = retry.as_secs().max(1);
    ApiError::new(
        Code::TooManyRequests,
        format!("too many failed logins, retry in {secs} seconds"),
    )
    .with_header(header::RETRY_AFTER, &secs.to_string())
}

/// `429` with `Retry-After`: the bounded queue of password checks is full.
pub fn busy(retry: Duration) -> ApiError {
    let secs = retry.as_secs().max(1);
    ApiError::new(
        Code::TooManyRequests,
        format!("too many password checks in progress, retry in {secs} seconds"),
    )
    .with_header(header::RETRY_AFTER, &secs.to_string())
}

/// Checks Basic credentials off the async threads (argon2).
pub async fn login(
    auth: &Arc<Auth>,
    user: String,
    password: String,
    remote: String,
) -> Result<Identity, LoginError> {
    let auth = auth.clone();
    tokio::task::spawn_blocking(move || auth.login(&user, &password, &remote))
        .await
        .map_err(|e| {
            LoginError::Internal(hoist_auth::AuthError::Crypto(format!("login task: {e}")))
        })?
}

/// The account a request's verified TLS client certificate names, if it presented one. A
/// certificate naming no account is an error (the caller gets `401` saying so).
async fn client_cert_identity(auth: &Arc<Auth>, parts: &Parts) -> Result<Option<Identity>, String> {
    let Some(ClientUser(user)) = parts.extensions.get::<ClientUser>().cloned() else {
        return Ok(None);
    };
    let a = auth.clone();
    let name = user.clone();
    match tokio::task::spawn_blocking(move || a.identity_by_name(&name)).await {
        Ok(Ok(Some(id))) => Ok(Some(id)),
        Ok(Ok(None)) => Err(format!(
            "the client certificate names {user:?}, who has no account"
        )),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(format!("client certificate lookup: {e}")),
    }
}

/// Authenticates a request in closed mode: `Authn::Identity(anonymous)` without credentials.
/// `scope` is named by the challenge of a `401`.
pub async fn authenticate(
    app: &App,
    auth: &Arc<Auth>,
    parts: &Parts,
    challenge: &Challenge,
    scope: Option<&str>,
) -> Result<Authn, ApiError> {
    let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
        return match client_cert_identity(auth, parts).await {
            Ok(Some(id)) => Ok(Authn::Identity(id)),
            Ok(None) => Ok(Authn::Identity(Identity::anonymous())),
            Err(detail) => Err(challenge.unauthorized(scope, None, &detail)),
        };
    };
    let value = value.to_str().unwrap_or_default();
    if let Some((user, password)) = parse_basic(value) {
        return match login(auth, user, password, remote_addr(app, parts)).await {
            Ok(id) => Ok(Authn::Identity(id)),
            Err(LoginError::Limited(d)) => Err(limited(d)),
            Err(LoginError::Busy(d)) => Err(busy(d)),
            Err(LoginError::Refused) => {
                Err(challenge.unauthorized(scope, None, "invalid username or password"))
            }
            Err(LoginError::Internal(e)) => Err(internal(e)),
        };
    }
    if let Some((scheme, token)) = value.trim().split_once(' ')
        && scheme.eq_ignore_ascii_case("bearer")
    {
        // Signature, kid, exp, nbf, iss, aud; then the subject must still exist and the token it
        // was issued through must not be revoked (removal and revocation act at once, not when
        // the token expires).
        return match auth
            .verify(token.trim())
            .and_then(|c| auth.identity_of(&c).map(|_| c))
        {
            Ok(claims) => Ok(Authn::Token(claims)),
            Err(e) => Err(challenge.unauthorized(scope, Some("invalid_token"), &e.to_string())),
        };
    }
    Err(challenge.unauthorized(scope, None, "unsupported authorization scheme"))
}

impl FromRequestParts<Arc<App>> for Grant {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &Arc<App>,
    ) -> Result<Self, Self::Rejection> {
        let Some(auth) = &app.auth else {
            return Ok(Grant::open());
        };
        let challenge = challenge_for(app, parts);
        let scope = route_scope(&parts.method, parts.uri.path());
        let authn = authenticate(app, auth, parts, &challenge, scope.as_deref()).await?;
        Ok(Grant {
            inner: Inner::Closed(Box::new(Closed {
                auth: auth.clone(),
                authn,
                challenge,
            })),
        })
    }
}

/// The caller of the administration API (`/admin/v1`, `/metrics`): a password login (Basic,
/// or a refresh token of one) or a registry token whose scope grants `registry:admin:*`.
/// Anything else (repository- or catalog-scoped tokens, personal access tokens, robot tokens,
/// what was obtained through them) gets `403`; no or invalid credentials get `401`.
pub async fn caller(app: &App, auth: &Arc<Auth>, parts: &Parts) -> Result<Identity, ApiError> {
    let challenge = challenge_for(app, parts);
    let scope = Scope::admin_api().to_string();
    let (id, token_grants) = match authenticate(app, auth, parts, &challenge, Some(&scope)).await? {
        Authn::Identity(id) => (id, true),
        Authn::Token(claims) => {
            let id = auth.identity_of(&claims).map_err(|e| {
                challenge.unauthorized(Some(&scope), Some("invalid_token"), &e.to_string())
            })?;
            (id, claims.allows_admin_api())
        }
    };
    if id.is_anonymous() {
        return Err(challenge.unauthorized(Some(&scope), None, "authentication required"));
    }
    if !token_grants {
        return Err(ApiError::new(
            Code::Denied,
            format!("the token does not grant the admin API ({scope})"),
        ));
    }
    if !id.may_administer() {
        return Err(ApiError::new(
            Code::Denied,
            "the admin API takes a password login, not a personal access or robot token",
        ));
    }
    Ok(id)
}

// ----- the token endpoint -----

/// Decodes `application/x-www-form-urlencoded` (a query string or a POST body).
fn form_pairs(s: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(s).into_owned().collect()
}

fn first<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn token_error(code: Code, detail: &str) -> Response {
    ApiError::new(code, detail).into_response()
}

/// `GET /token?service=..&scope=..[&scope=..][&offline_token=true]` (Basic or anonymous) and
/// `POST /token` (form: `grant_type=password|refresh_token`, `username`, `password`,
/// `refresh_token`, `scope` space-separated, `service`, `client_id`, `access_type=offline`).
pub async fn token_endpoint(State(app): State<Arc<App>>, req: axum::extract::Request) -> Response {
    let Some(auth) = app.auth.clone() else {
        return token_error(
            Code::NotFound,
            "authentication is off: no tokens are needed",
        );
    };
    let (parts, body) = req.into_parts();
    let remote = remote_addr(&app, &parts);
    let query = form_pairs(parts.uri.query().unwrap_or_default().as_bytes());
    let post = parts.method == Method::POST;
    let form = if post {
        match axum::body::to_bytes(body, 64 * 1024).await {
            Ok(b) => form_pairs(&b),
            Err(_) => return token_error(Code::Unsupported, "the form body is too large"),
        }
    } else {
        Vec::new()
    };
    let params: &[(String, String)] = if post { &form } else { &query };
    if let Some(service) = first(params, "service")
        && service != auth.config().service
    {
        return token_error(Code::Unsupported, &format!("unknown service {service:?}"));
    }
    let mut scopes = Vec::new();
    for (k, v) in params {
        if k == "scope" {
            match Scope::parse_list(v) {
                Ok(s) => scopes.extend(s),
                Err(e) => return token_error(Code::Unsupported, &e.to_string()),
            }
        }
    }
    let challenge = challenge_for(&app, &parts);
    let refused = || {
        ApiError::new(Code::Unauthorized, "invalid username or password")
            .with_header(
                header::WWW_AUTHENTICATE,
                &format!("Basic realm=\"{}\"", challenge.service),
            )
            .into_response()
    };
    let login_result = if post {
        match first(params, "grant_type") {
            Some("password") => {
                let user = first(params, "username").unwrap_or_default().to_owned();
                let password = first(params, "password").unwrap_or_default().to_owned();
                login(&auth, user, password, remote.clone()).await
            }
            Some("refresh_token") => {
                let token = first(params, "refresh_token")
                    .unwrap_or_default()
                    .to_owned();
                let user = first(params, "username").unwrap_or_default().to_owned();
                let (a, r) = (auth.clone(), remote.clone());
                tokio::task::spawn_blocking(move || a.refresh_login(&token, &user, &r))
                    .await
                    .unwrap_or_else(|e| {
                        Err(LoginError::Internal(hoist_auth::AuthError::Crypto(
                            e.to_string(),
                        )))
                    })
            }
            other => {
                return token_error(
                    Code::Unsupported,
                    &format!("unsupported grant_type {:?}", other.unwrap_or("")),
                );
            }
        }
    } else {
        match parts.headers.get(header::AUTHORIZATION) {
            None => match client_cert_identity(&auth, &parts).await {
                Ok(id) => Ok(id.unwrap_or_else(Identity::anonymous)),
                Err(detail) => {
                    return ApiError::new(Code::Unauthorized, detail).into_response();
                }
            },
            Some(v) => match parse_basic(v.to_str().unwrap_or_default()) {
                Some((user, password)) => login(&auth, user, password, remote.clone()).await,
                None => Err(LoginError::Refused),
            },
        }
    };
    let identity = match login_result {
        Ok(id) => id,
        Err(LoginError::Limited(d)) => return limited(d).into_response(),
        Err(LoginError::Busy(d)) => return busy(d).into_response(),
        Err(LoginError::Refused) => return refused(),
        Err(LoginError::Internal(e)) => return internal(e).into_response(),
    };
    let offline = if post {
        first(params, "access_type") == Some("offline")
    } else {
        first(params, "offline_token") == Some("true")
    };
    // A refresh grant returns the same refresh token (docker keeps it as its identity token).
    let keep_refresh = (post && first(params, "grant_type") == Some("refresh_token")).then(|| {
        first(params, "refresh_token")
            .unwrap_or_default()
            .to_owned()
    });
    let issued = {
        let (a, id, r) = (auth.clone(), identity.clone(), remote.clone());
        let new_refresh = offline && keep_refresh.is_none();
        tokio::task::spawn_blocking(move || a.issue(&id, &scopes, new_refresh, &r)).await
    };
    let issued = match issued {
        Ok(Ok(t)) => t,
        // What it logged in with ended meanwhile.
        Ok(Err(hoist_auth::AuthError::InvalidToken(_))) => return refused(),
        Ok(Err(e)) => return internal(e).into_response(),
        Err(e) => return token_error(Code::Unknown, &e.to_string()),
    };
    let mut body = serde_json::json!({
        "token": issued.token,
        "access_token": issued.token,
        "expires_in": issued.expires_in,
        "issued_at": issued.issued_at,
    });
    if let Some(r) = issued.refresh_token.or(keep_refresh) {
        body["refresh_token"] = serde_json::Value::String(r);
    }
    let mut resp = (StatusCode::OK, axum::Json(body)).into_response();
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    resp
}

/// `GET /token/jwks`, `GET /.well-known/jwks.json`.
pub async fn jwks(State(app): State<Arc<App>>) -> Response {
    match &app.auth {
        Some(auth) => axum::Json(auth.jwks()).into_response(),
        None => token_error(
            Code::NotFound,
            "authentication is off: no keys are published",
        ),
    }
}

/// `/metrics`: open in open mode; an administrator's in closed mode.
pub async fn require_admin(app: &App, parts: &Parts) -> Result<(), ApiError> {
    let Some(auth) = &app.auth else {
        return Ok(());
    };
    let id = caller(app, auth, parts).await?;
    if id.is_site_admin() {
        Ok(())
    } else {
        Err(ApiError::new(
            Code::Denied,
            "metrics are for administrators",
        ))
    }
}
