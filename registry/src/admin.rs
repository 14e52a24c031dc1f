//! The administration API (`/admin/v1`, JSON), closed mode only. Callers authenticate with a
//! password (Basic) or a Bearer registry token granting `registry:admin:*` (see
//! [`crate::auth::caller`]); what each may do is decided by [`hoist_auth::Auth`]. Every change,
//! allowed or not, goes to the audit log.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use hoist_auth::{Actions, Auth, AuthError, Identity};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::App;
use crate::auth::{caller, remote_addr};
use crate::error::{ApiError, Code};

/// The routes under `/admin/v1`.
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/admin/v1/users", post(add_user).get(list_users))
        .route("/admin/v1/users/{name}", delete(remove_user))
        .route("/admin/v1/users/{name}/password", put(set_password))
        .route("/admin/v1/orgs", post(create_org))
        .route("/admin/v1/orgs/{org}/teams", post(create_team))
        .route(
            "/admin/v1/orgs/{org}/teams/{team}/members/{user}",
            put(add_member).delete(remove_member),
        )
        .route("/admin/v1/orgs/{org}/teams/{team}/grants", post(add_grant))
        .route("/admin/v1/repos/{*rest}", put(set_visibility))
        .route("/admin/v1/robots", post(create_robot))
        .route("/admin/v1/tokens", post(create_token).get(list_tokens))
        .route("/admin/v1/tokens/{id}", delete(revoke_token))
        .route("/admin/v1/audit", get(audit))
}

/// The authenticated caller of an admin request.
pub struct Caller {
    auth: Arc<Auth>,
    id: Identity,
    remote: String,
}

impl FromRequestParts<Arc<App>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        app: &Arc<App>,
    ) -> Result<Self, Self::Rejection> {
        let Some(auth) = app.auth.clone() else {
            return Err(ApiError::new(
                Code::NotFound,
                "authentication is off: there is nothing to administer",
            ));
        };
        let id = caller(app, &auth, parts).await?;
        Ok(Caller {
            auth,
            id,
            remote: remote_addr(app, parts),
        })
    }
}

fn api_error(e: AuthError) -> ApiError {
    if let AuthError::Busy(d) = e {
        return crate::auth::busy(d);
    }
    let code = match &e {
        AuthError::Invalid { .. } => Code::Invalid,
        AuthError::NotFound(_) => Code::NotFound,
        AuthError::Conflict(_) => Code::Conflict,
        AuthError::Forbidden(_) => Code::Denied,
        AuthError::InvalidToken(_) => Code::Unauthorized,
        AuthError::Db { .. } | AuthError::Io { .. } | AuthError::Crypto(_) | AuthError::Busy(_) => {
            Code::Unknown
        }
    };
    ApiError::new(code, e.to_string())
}

fn body<T: DeserializeOwned>(b: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(b)
        .map_err(|e| ApiError::new(Code::Invalid, format!("request body: {e}")))
}

impl Caller {
    /// Runs `op` on a blocking thread (password hashing, SQLite) and audits the outcome.
    async fn run<T: Send + 'static>(
        &self,
        action: &str,
        target: String,
        op: impl FnOnce(&Auth, &Identity) -> Result<T, AuthError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let (auth, id) = (self.auth.clone(), self.id.clone());
        let result = tokio::task::spawn_blocking(move || op(&auth, &id))
            .await
            .map_err(|e| ApiError::new(Code::Unknown, format!("admin task: {e}")))?;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(AuthError::Forbidden(_)) => "denied",
            Err(_) => "failed",
        };
        self.auth
            .audit(self.id.audit_name(), action, &target, outcome, &self.remote);
        result.map_err(api_error)
    }
}

fn created(v: serde_json::Value) -> Response {
    (StatusCode::CREATED, Json(v)).into_response()
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
struct NewUser {
    name: String,
    password: String,
}

async fn add_user(c: Caller, b: Bytes) -> Result<Response, ApiError> {
    let u: NewUser = body(&b)?;
    let name = u.name.clone();
    c.run("user.create", name.clone(), move |a, id| {
        a.add_user(id, &u.name, &u.password)
    })
    .await?;
    Ok(created(json!({ "name": name })))
}

async fn list_users(c: Caller) -> Result<Response, ApiError> {
    let users = c
        .run("user.list", String::new(), |a, id| a.list_users(id))
        .await?;
    let v: Vec<_> = users
        .into_iter()
        .map(|u| json!({ "name": u.name, "admin": u.admin }))
        .collect();
    Ok(Json(v).into_response())
}

async fn remove_user(c: Caller, Path(name): Path<String>) -> Result<Response, ApiError> {
    c.run("user.delete", name.clone(), move |a, id| {
        a.remove_user(id, &name)
    })
    .await?;
    Ok(no_content())
}

#[derive(Deserialize)]
struct NewPassword {
    password: String,
}

async fn set_password(c: Caller, Path(name): Path<String>, b: Bytes) -> Result<Response, ApiError> {
    let p: NewPassword = body(&b)?;
    c.run("user.password", name.clone(), move |a, id| {
        a.set_password(id, &name, &p.password)
    })
    .await?;
    Ok(no_content())
}

#[derive(Deserialize)]
struct Named {
    name: String,
}

async fn create_org(c: Caller, b: Bytes) -> Result<Response, ApiError> {
    let n: Named = body(&b)?;
    let name = n.name.clone();
    c.run("org.create", name.clone(), move |a, id| {
        a.create_org(id, &n.name)
    })
    .await?;
    Ok(created(json!({ "name": name })))
}

async fn create_team(c: Caller, Path(org): Path<String>, b: Bytes) -> Result<Response, ApiError> {
    let n: Named = body(&b)?;
    let name = n.name.clone();
    c.run("team.create", format!("{org}/{name}"), move |a, id| {
        a.create_team(id, &org, &n.name)
    })
    .await?;
    Ok(created(json!({ "name": name })))
}

async fn add_member(
    c: Caller,
    Path((org, team, user)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    c.run(
        "team.member.add",
        format!("{org}/{team}:{user}"),
        move |a, id| a.add_member(id, &org, &team, &user),
    )
    .await?;
    Ok(no_content())
}

async fn remove_member(
    c: Caller,
    Path((org, team, user)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    c.run(
        "team.member.remove",
        format!("{org}/{team}:{user}"),
        move |a, id| a.remove_member(id, &org, &team, &user),
    )
    .await?;
    Ok(no_content())
}

#[derive(Deserialize)]
struct NewGrant {
    pattern: String,
    actions: Vec<String>,
}

async fn add_grant(
    c: Caller,
    Path((org, team)): Path<(String, String)>,
    b: Bytes,
) -> Result<Response, ApiError> {
    let g: NewGrant = body(&b)?;
    let actions = Actions::from_names(&g.actions).map_err(api_error)?;
    let pattern = g.pattern.clone();
    c.run(
        "team.grant",
        format!("{org}/{team}:{pattern}:{actions}"),
        move |a, id| a.add_grant(id, &org, &team, &g.pattern, actions),
    )
    .await?;
    Ok(created(
        json!({ "pattern": pattern, "actions": actions.names() }),
    ))
}

#[derive(Deserialize)]
struct Visibility {
    visibility: String,
}

async fn set_visibility(
    c: Caller,
    Path(rest): Path<String>,
    b: Bytes,
) -> Result<Response, ApiError> {
    let Some(repo) = rest.strip_suffix("/visibility") else {
        return Err(ApiError::new(
            Code::NotFound,
            format!("no admin route /admin/v1/repos/{rest}"),
        ));
    };
    let repo = hoist_oci::RepoName::parse(repo)
        .map_err(|e| ApiError::new(Code::NameInvalid, e.to_string()))?;
    let v: Visibility = body(&b)?;
    let public = match v.visibility.as_str() {
        "public" => true,
        "private" => false,
        other => {
            return Err(ApiError::new(
                Code::Invalid,
                format!("invalid visibility {other:?}: expected public or private"),
            ));
        }
    };
    c.run(
        "repo.visibility",
        format!("{repo}:{}", v.visibility),
        move |a, id| a.set_visibility(id, repo.as_str(), public),
    )
    .await?;
    Ok(no_content())
}

#[derive(Deserialize)]
struct NewRobot {
    org: String,
    name: String,
    scopes: Vec<String>,
    #[serde(default)]
    expires_in_secs: Option<u64>,
}

async fn create_robot(c: Caller, b: Bytes) -> Result<Response, ApiError> {
    let r: NewRobot = body(&b)?;
    let target = format!("{}+{}", r.org, r.name);
    let t = c
        .run("robot.create", target, move |a, id| {
            a.create_robot(id, &r.org, &r.name, &r.scopes, r.expires_in_secs)
        })
        .await?;
    Ok(created(
        json!({ "name": t.name, "id": t.id, "token": t.token }),
    ))
}

#[derive(Deserialize)]
struct NewToken {
    name: String,
    scopes: Vec<String>,
    #[serde(default)]
    expires_in_secs: Option<u64>,
}

async fn create_token(c: Caller, b: Bytes) -> Result<Response, ApiError> {
    let t: NewToken = body(&b)?;
    let target = t.name.clone();
    let created_token = c
        .run("token.create", target, move |a, id| {
            a.create_token(id, &t.name, &t.scopes, t.expires_in_secs)
        })
        .await?;
    Ok(created(
        json!({ "id": created_token.id, "token": created_token.token }),
    ))
}

async fn list_tokens(c: Caller) -> Result<Response, ApiError> {
    let tokens = c
        .run("token.list", String::new(), |a, id| a.list_tokens(id))
        .await?;
    let v: Vec<_> = tokens
        .into_iter()
        .map(|t| json!({ "id": t.id, "name": t.name, "scopes": t.scopes, "expires_at": t.expires_at }))
        .collect();
    Ok(Json(v).into_response())
}

async fn revoke_token(c: Caller, Path(token_id): Path<String>) -> Result<Response, ApiError> {
    c.run("token.revoke", token_id.clone(), move |a, id| {
        a.revoke_token(id, &token_id)
    })
    .await?;
    Ok(no_content())
}

#[derive(Deserialize)]
struct AuditQuery {
    limit: Option<usize>,
}

async fn audit(
    State(_app): State<Arc<App>>,
    c: Caller,
    req: Request,
) -> Result<Response, ApiError> {
    let q = Query::<AuditQuery>::try_from_uri(req.uri())
        .map_err(|e| ApiError::new(Code::Invalid, format!("limit: {e}")))?;
    let limit = q.0.limit.unwrap_or(100);
    let (auth, id) = (c.auth.clone(), c.id.clone());
    let entries = tokio::task::spawn_blocking(move || auth.audit_log(&id, limit))
        .await
        .map_err(|e| ApiError::new(Code::Unknown, format!("admin task: {e}")))?
        .map_err(api_error)?;
    let v: Vec<_> = entries
        .into_iter()
        .map(|e| {
            json!({ "time": e.time, "actor": e.actor, "action": e.action, "target": e.target,
                    "outcome": e.outcome, "remote": e.remote })
        })
        .collect();
    Ok(Json(v).into_response())
}
