//! [`Auth`]: the identity store (`<data>/auth.db`, SQLite in WAL mode), logins, token issue and
//! verification, administration and the audit log.
//!
//! Every method is synchronous (SQLite, argon2); an async server calls the ones that hash
//! passwords (`login`, `add_user`, `set_password`, `ensure_admin`) from a blocking thread.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use jsonwebtoken::jwk::JwkSet;
use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};
use subtle::ConstantTimeEq;

use crate::actions::{Actions, ResourceKind, Scope, check_pattern};
use crate::jwt::{Access, Claims, TokenKeys};
use crate::limiter::{Limits, RateLimiter};
use crate::policy::{Identity, IdentityKind, TokenCap, evaluate};
use crate::time::{now, rfc3339};
use crate::{AuthError, password};

/// The database file under the data directory.
pub const DB_FILE: &str = "auth.db";

/// Settings of the auth service.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The `service` of challenges and the `aud` of tokens.
    pub service: String,
    /// The `iss` of tokens.
    pub issuer: String,
    /// Lifetime of registry tokens.
    pub token_ttl: Duration,
    /// Lifetime of refresh (offline) tokens.
    pub refresh_ttl: Duration,
    /// How long verified Basic credentials are remembered (so a push does not hash per request).
    pub credential_cache_ttl: Duration,
    /// Failed logins per user name.
    pub user_limits: Limits,
    /// Failed logins per remote address.
    pub addr_limits: Limits,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            service: "hoist".into(),
            issuer: "hoist".into(),
            token_ttl: Duration::from_secs(300),
            refresh_ttl: Duration::from_secs(90 * 24 * 3600),
            credential_cache_ttl: Duration::from_secs(60),
            user_limits: Limits {
                max_failures: 5,
                window: Duration::from_secs(60),
                lockout: Duration::from_secs(60),
            },
            addr_limits: Limits {
                max_failures: 30,
                window: Duration::from_secs(60),
                lockout: Duration::from_secs(60),
            },
        }
    }
}

/// Why a login failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("too many failed logins, retry in {} seconds", .0.as_secs().max(1))]
    Limited(Duration),
    #[error("invalid credentials")]
    Refused,
    /// Too many password checks in progress: retry after the duration.
    #[error("too many password checks in progress, retry in {} seconds", .0.as_secs().max(1))]
    Busy(Duration),
    #[error(transparent)]
    Internal(#[from] AuthError),
}

/// A signed registry token, as the token endpoint answers.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    pub expires_in: u64,
    pub issued_at: String,
    pub refresh_token: Option<String>,
    /// What was granted (for the audit log and tests).
    pub access: Vec<Access>,
}

/// A personal access token or robot token, shown once.
#[derive(Debug, Clone)]
pub struct CreatedToken {
    pub id: String,
    /// The owner (user) or the robot's full name (`org+name`).
    pub name: String,
    pub token: String,
}

/// A listed token (never its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<String>,
}

/// A listed user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub admin: bool,
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub time: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub remote: String,
}

const SCHEMA: &str = "
PRAGMA foreign_keys = ON;
CREATE TABLE IF NOT EXISTS users(
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, hash TEXT NOT NULL,
    admin INTEGER NOT NULL DEFAULT 0, created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS orgs(name TEXT PRIMARY KEY, created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS teams(
    org TEXT NOT NULL REFERENCES orgs(name) ON DELETE CASCADE, name TEXT NOT NULL,
    PRIMARY KEY(org, name));
CREATE TABLE IF NOT EXISTS members(
    org TEXT NOT NULL, team TEXT NOT NULL,
    user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    PRIMARY KEY(org, team, user),
    FOREIGN KEY(org, team) REFERENCES teams(org, name) ON DELETE CASCADE);
CREATE TABLE IF NOT EXISTS grants(
    org TEXT NOT NULL, team TEXT NOT NULL, pattern TEXT NOT NULL, actions INTEGER NOT NULL,
    PRIMARY KEY(org, team, pattern),
    FOREIGN KEY(org, team) REFERENCES teams(org, name) ON DELETE CASCADE);
CREATE TABLE IF NOT EXISTS repos(
    name TEXT PRIMARY KEY, public INTEGER NOT NULL DEFAULT 0, created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS robots(
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE,
    org TEXT NOT NULL REFERENCES orgs(name) ON DELETE CASCADE,
    scopes TEXT NOT NULL, created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS tokens(
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, owner TEXT NOT NULL, name TEXT NOT NULL,
    hash BLOB NOT NULL, scopes TEXT, parent TEXT, expires_at INTEGER, created INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS tokens_owner ON tokens(owner);
CREATE TABLE IF NOT EXISTS audit(
    id INTEGER PRIMARY KEY AUTOINCREMENT, time INTEGER NOT NULL, actor TEXT NOT NULL,
    action TEXT NOT NULL, target TEXT NOT NULL, outcome TEXT NOT NULL, remote TEXT NOT NULL);
";

/// Databases of earlier versions keyed users and robots by name only: their tables get ids
/// (`AUTOINCREMENT`, so an id is never reused), existing rows keeping their order.
const MIGRATE_IDS: &[(&str, &str)] = &[
    (
        "users",
        "CREATE TABLE users_new(
            id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, hash TEXT NOT NULL,
            admin INTEGER NOT NULL DEFAULT 0, created INTEGER NOT NULL);
         INSERT INTO users_new(name, hash, admin, created)
            SELECT name, hash, admin, created FROM users ORDER BY rowid;
         DROP TABLE users;
         ALTER TABLE users_new RENAME TO users;",
    ),
    (
        "robots",
        "CREATE TABLE robots_new(
            id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE,
            org TEXT NOT NULL REFERENCES orgs(name) ON DELETE CASCADE,
            scopes TEXT NOT NULL, created INTEGER NOT NULL);
         INSERT INTO robots_new(name, org, scopes, created)
            SELECT name, org, scopes, created FROM robots ORDER BY rowid;
         DROP TABLE robots;
         ALTER TABLE robots_new RENAME TO robots;",
    ),
];

fn migrate_ids(conn: &mut Connection) -> rusqlite::Result<()> {
    for (table, sql) in MIGRATE_IDS {
        let exists: bool = conn
            .query_row(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                [table],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if !exists {
            continue;
        }
        let has_id: bool = conn
            .prepare(&format!(
                "SELECT 1 FROM pragma_table_info('{table}') WHERE name = 'id'"
            ))?
            .exists([])?;
        if has_id {
            continue;
        }
        // SQLite's recipe for changing a table: foreign keys off while it is rebuilt.
        conn.execute_batch("PRAGMA foreign_keys = OFF")?;
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.commit()?;
        conn.execute_batch("PRAGMA foreign_keys = ON")?;
    }
    Ok(())
}

/// Most parents a token may have (a refresh token of a refresh token of a PAT...).
const MAX_TOKEN_DEPTH: usize = 16;

/// Token kinds and their prefixes: `hpat.ID.SECRET`, `hrob.ID.SECRET`, `hrt.ID.SECRET`.
const PAT: &str = "hpat";
const ROBOT: &str = "hrob";
const REFRESH: &str = "hrt";

/// Longest lifetime of a personal access token or robot token.
const MAX_TOKEN_LIFETIME: u64 = 366 * 24 * 3600;
/// Lifetime when none is asked for.
const DEFAULT_TOKEN_LIFETIME: u64 = 30 * 24 * 3600;

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for p in parts {
        ctx.update(&(p.len() as u64).to_le_bytes());
        ctx.update(p);
    }
    let d = ctx.finish();
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn random_b64(n: usize) -> Result<String, AuthError> {
    let mut b = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| AuthError::Crypto("random bytes".into()))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

fn random_hex(n: usize) -> Result<String, AuthError> {
    let mut b = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| AuthError::Crypto("random bytes".into()))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Checks a user, organisation, team or robot name: `[a-z0-9]+([._-][a-z0-9]+)*`, at most 64.
pub fn check_name(what: &'static str, name: &str) -> Result<(), AuthError> {
    let b = name.as_bytes();
    let sep = |c: u8| matches!(c, b'.' | b'_' | b'-');
    let ok = !b.is_empty()
        && b.len() <= 64
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || sep(c))
        && !sep(b[0])
        && !sep(b[b.len() - 1])
        && !b.windows(2).any(|w| sep(w[0]) && sep(w[1]));
    if ok {
        Ok(())
    } else {
        Err(AuthError::Invalid {
            what,
            value: name.to_owned(),
            reason: "expected lowercase letters and digits, separated by single . _ or -".into(),
        })
    }
}

/// A token's parts: (kind prefix, id, secret).
fn split_token(s: &str) -> Option<(&str, &str, &str)> {
    let mut it = s.splitn(3, '.');
    let (k, id, secret) = (it.next()?, it.next()?, it.next()?);
    ([PAT, ROBOT, REFRESH].contains(&k)
        && id.len() == 16
        && id.bytes().all(|c| c.is_ascii_hexdigit())
        && !secret.is_empty())
    .then_some((k, id, secret))
}

struct TokenRow {
    kind: String,
    owner: String,
    hash: Vec<u8>,
    scopes: Option<String>,
    expires_at: Option<i64>,
    parent: Option<String>,
}

fn scopes_json(scopes: &[Scope]) -> String {
    serde_json::to_string(&scopes.iter().map(ToString::to_string).collect::<Vec<_>>())
        .unwrap_or_else(|_| "[]".into())
}

fn parse_scopes_json(s: &str) -> Vec<Scope> {
    serde_json::from_str::<Vec<String>>(s)
        .unwrap_or_default()
        .iter()
        .filter_map(|s| Scope::parse(s).ok())
        .collect()
}

struct CacheEntry {
    identity: Identity,
    at: Instant,
    generation: u64,
}

/// The auth service.
pub struct Auth {
    db: Mutex<Connection>,
    path: PathBuf,
    keys: TokenKeys,
    config: AuthConfig,
    user_limiter: RateLimiter,
    addr_limiter: RateLimiter,
    cache: Mutex<HashMap<[u8; 32], CacheEntry>>,
    /// Bumped by every change to users, memberships or tokens: cached credentials from an
    /// older generation are verified again.
    generation: std::sync::atomic::AtomicU64,
    cache_salt: [u8; 16],
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("path", &self.path)
            .field("service", &self.config.service)
            .finish_non_exhaustive()
    }
}

/// Most cached credentials.
const CACHE_MAX: usize = 10_000;

impl Auth {
    /// Opens (creating) `<dir>/auth.db` and the token signing key in `dir`.
    pub fn open(dir: &Path, config: AuthConfig) -> Result<Auth, AuthError> {
        std::fs::create_dir_all(dir).map_err(|source| AuthError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let path = dir.join(DB_FILE);
        let db_err = |source| AuthError::Db {
            path: path.display().to_string(),
            source,
        };
        {
            // Created private before SQLite opens it: its -wal and -shm files take its mode.
            use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
            let io = |source| AuthError::Io {
                path: path.display().to_string(),
                source,
            };
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&path)
                .map_err(io)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        }
        let mut conn = Connection::open(&path).map_err(db_err)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(db_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db_err)?;
        migrate_ids(&mut conn).map_err(db_err)?;
        conn.execute_batch(SCHEMA).map_err(db_err)?;
        // Expired refresh tokens are useless: every `docker login` makes one.
        conn.execute(
            "DELETE FROM tokens WHERE kind = ? AND expires_at < ?",
            params![REFRESH, now() as i64],
        )
        .map_err(db_err)?;
        let keys = TokenKeys::load_or_generate(dir)?;
        let mut cache_salt = [0u8; 16];
        aws_lc_rs::rand::fill(&mut cache_salt)
            .map_err(|_| AuthError::Crypto("random bytes".into()))?;
        Ok(Auth {
            db: Mutex::new(conn),
            path,
            keys,
            user_limiter: RateLimiter::new(config.user_limits),
            addr_limiter: RateLimiter::new(config.addr_limits),
            config,
            cache: Mutex::new(HashMap::new()),
            generation: std::sync::atomic::AtomicU64::new(0),
            cache_salt,
        })
    }

    /// Whether a database holds users already (then the registry runs closed).
    pub fn exists_with_users(dir: &Path) -> bool {
        let path = dir.join(DB_FILE);
        if !path.exists() {
            return false;
        }
        Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .and_then(|c| c.query_row("SELECT count(*) FROM users", [], |r| r.get::<_, i64>(0)))
            .is_ok_and(|n| n > 0)
    }

    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    fn db_err(&self, source: rusqlite::Error) -> AuthError {
        AuthError::Db {
            path: self.path.display().to_string(),
            source,
        }
    }

    fn changed(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Appends to the audit log (table and the `hoist::audit` tracing target). Never pass a
    /// secret here.
    pub fn audit(&self, actor: &str, action: &str, target: &str, outcome: &str, remote: &str) {
        tracing::info!(target: "hoist::audit", actor, action, target, outcome, remote, "audit");
        let r = self.db.lock().execute(
            "INSERT INTO audit(time, actor, action, target, outcome, remote) VALUES (?,?,?,?,?,?)",
            params![now() as i64, actor, action, target, outcome, remote],
        );
        if let Err(e) = r {
            tracing::error!(error = %e, "writing the audit log");
        }
    }

    // ----- users -----

    /// Creates the site administrator `admin` with `password` if no user `admin` exists.
    /// Returns whether it was created.
    pub fn ensure_admin(&self, password: &str) -> Result<bool, AuthError> {
        let exists = self
            .db
            .lock()
            .query_row("SELECT 1 FROM users WHERE name = 'admin'", [], |_| Ok(()))
            .optional()
            .map_err(|e| self.db_err(e))?
            .is_some();
        if exists {
            return Ok(false);
        }
        password::check_new(password)?;
        let hash = password::hash(password)?;
        self.db
            .lock()
            .execute(
                "INSERT OR IGNORE INTO users(name, hash, admin, created) VALUES ('admin', ?, 1, ?)",
                params![hash, now() as i64],
            )
            .map_err(|e| self.db_err(e))?;
        self.audit("-", "user.create", "admin", "ok", "startup");
        Ok(true)
    }

    /// A user's (id, password hash, admin flag).
    fn user_row(&self, name: &str) -> Result<Option<(i64, String, bool)>, AuthError> {
        self.db
            .lock()
            .query_row(
                "SELECT id, hash, admin FROM users WHERE name = ?",
                [name],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)? != 0,
                    ))
                },
            )
            .optional()
            .map_err(|e| self.db_err(e))
    }

    fn org_exists(&self, org: &str) -> Result<bool, AuthError> {
        Ok(self
            .db
            .lock()
            .query_row("SELECT 1 FROM orgs WHERE name = ?", [org], |_| Ok(()))
            .optional()
            .map_err(|e| self.db_err(e))?
            .is_some())
    }

    fn require_site_admin(&self, actor: &Identity, what: &str) -> Result<(), AuthError> {
        if actor.is_site_admin() {
            Ok(())
        } else {
            Err(AuthError::Forbidden(format!(
                "{what} needs an administrator"
            )))
        }
    }

    /// Whether `actor` administers organisation `org`: a site admin, or a member of a team
    /// holding `admin` on `org/*`.
    pub fn is_org_admin(&self, actor: &Identity, org: &str) -> Result<bool, AuthError> {
        if actor.is_site_admin() {
            return Ok(true);
        }
        if actor.kind != IdentityKind::User || actor.cap.is_some() {
            return Ok(false);
        }
        let pattern = format!("{org}/*");
        let n: i64 = self
            .db
            .lock()
            .query_row(
                "SELECT count(*) FROM grants g JOIN members m ON g.org = m.org AND g.team = m.team
                 WHERE m.user = ? AND g.org = ? AND g.pattern = ? AND (g.actions & ?) != 0",
                params![actor.name, org, pattern, Actions::ADMIN.bits() as i64],
                |r| r.get(0),
            )
            .map_err(|e| self.db_err(e))?;
        Ok(n > 0)
    }

    fn require_org_admin(&self, actor: &Identity, org: &str) -> Result<(), AuthError> {
        if !self.org_exists(org)? {
            return Err(AuthError::NotFound(format!("organisation {org}")));
        }
        if self.is_org_admin(actor, org)? {
            Ok(())
        } else {
            Err(AuthError::Forbidden(format!(
                "administering organisation {org} needs an administrator of it"
            )))
        }
    }

    /// Adds a user (administrators only).
    pub fn add_user(&self, actor: &Identity, name: &str, password: &str) -> Result<(), AuthError> {
        self.require_site_admin(actor, "adding a user")?;
        check_name("user name", name)?;
        password::check_new(password)?;
        if self.org_exists(name)? {
            return Err(AuthError::Conflict(format!("organisation {name}")));
        }
        let hash = password::hash(password)?;
        let n = self
            .db
            .lock()
            .execute(
                "INSERT OR IGNORE INTO users(name, hash, admin, created) VALUES (?, ?, 0, ?)",
                params![name, hash, now() as i64],
            )
            .map_err(|e| self.db_err(e))?;
        if n == 0 {
            return Err(AuthError::Conflict(format!("user {name}")));
        }
        self.changed();
        Ok(())
    }

    /// Removes a user, their memberships and tokens (administrators only; never `admin`).
    pub fn remove_user(&self, actor: &Identity, name: &str) -> Result<(), AuthError> {
        self.require_site_admin(actor, "removing a user")?;
        if name == "admin" {
            return Err(AuthError::Forbidden(
                "the admin user cannot be removed".into(),
            ));
        }
        let mut db = self.db.lock();
        let tx = db.transaction().map_err(|e| self.db_err(e))?;
        let n = tx
            .execute("DELETE FROM users WHERE name = ?", [name])
            .map_err(|e| self.db_err(e))?;
        tx.execute("DELETE FROM tokens WHERE owner = ?", [name])
            .map_err(|e| self.db_err(e))?;
        tx.commit().map_err(|e| self.db_err(e))?;
        drop(db);
        self.changed();
        if n == 0 {
            return Err(AuthError::NotFound(format!("user {name}")));
        }
        Ok(())
    }

    /// Changes a password: an administrator for anyone, a user for themselves.
    pub fn set_password(
        &self,
        actor: &Identity,
        name: &str,
        password: &str,
    ) -> Result<(), AuthError> {
        let own = actor.kind == IdentityKind::User && actor.cap.is_none() && actor.name == name;
        if !own {
            self.require_site_admin(actor, "changing another user's password")?;
        }
        password::check_new(password)?;
        let hash = password::hash(password)?;
        let n = self
            .db
            .lock()
            .execute(
                "UPDATE users SET hash = ? WHERE name = ?",
                params![hash, name],
            )
            .map_err(|e| self.db_err(e))?;
        if n == 0 {
            self.changed();
            return Err(AuthError::NotFound(format!("user {name}")));
        }
        // Refresh tokens issued on the old password stop working (and any issued through them).
        let r = self.delete_tokens_where(
            "SELECT id FROM tokens WHERE owner = ?1 AND kind = ?2 AND parent IS NULL",
            params![name, REFRESH],
        );
        self.changed();
        r
    }

    /// Lists users (administrators only).
    pub fn list_users(&self, actor: &Identity) -> Result<Vec<UserInfo>, AuthError> {
        self.require_site_admin(actor, "listing users")?;
        let db = self.db.lock();
        let mut st = db
            .prepare("SELECT name, admin FROM users ORDER BY name")
            .map_err(|e| self.db_err(e))?;
        st.query_map([], |r| {
            Ok(UserInfo {
                name: r.get(0)?,
                admin: r.get::<_, i64>(1)? != 0,
            })
        })
        .and_then(Iterator::collect)
        .map_err(|e| self.db_err(e))
    }

    // ----- organisations and teams -----

    /// Creates an organisation (administrators only).
    pub fn create_org(&self, actor: &Identity, name: &str) -> Result<(), AuthError> {
        self.require_site_admin(actor, "creating an organisation")?;
        check_name("organisation name", name)?;
        if self.user_row(name)?.is_some() {
            return Err(AuthError::Conflict(format!("user {name}")));
        }
        let n = self
            .db
            .lock()
            .execute(
                "INSERT OR IGNORE INTO orgs(name, created) VALUES (?, ?)",
                params![name, now() as i64],
            )
            .map_err(|e| self.db_err(e))?;
        if n == 0 {
            return Err(AuthError::Conflict(format!("organisation {name}")));
        }
        Ok(())
    }

    /// Creates a team in `org` (its administrators).
    pub fn create_team(&self, actor: &Identity, org: &str, team: &str) -> Result<(), AuthError> {
        check_name("team name", team)?;
        self.require_org_admin(actor, org)?;
        let n = self
            .db
            .lock()
            .execute(
                "INSERT OR IGNORE INTO teams(org, name) VALUES (?, ?)",
                params![org, team],
            )
            .map_err(|e| self.db_err(e))?;
        if n == 0 {
            return Err(AuthError::Conflict(format!("team {org}/{team}")));
        }
        Ok(())
    }

    fn team_exists(&self, org: &str, team: &str) -> Result<bool, AuthError> {
        Ok(self
            .db
            .lock()
            .query_row(
                "SELECT 1 FROM teams WHERE org = ? AND name = ?",
                params![org, team],
                |_| Ok(()),
            )
            .optional()
            .map_err(|e| self.db_err(e))?
            .is_some())
    }

    /// Adds `user` to a team (idempotent).
    pub fn add_member(
        &self,
        actor: &Identity,
        org: &str,
        team: &str,
        user: &str,
    ) -> Result<(), AuthError> {
        self.require_org_admin(actor, org)?;
        if !self.team_exists(org, team)? {
            return Err(AuthError::NotFound(format!("team {org}/{team}")));
        }
        if self.user_row(user)?.is_none() {
            return Err(AuthError::NotFound(format!("user {user}")));
        }
        self.db
            .lock()
            .execute(
                "INSERT OR IGNORE INTO members(org, team, user) VALUES (?, ?, ?)",
                params![org, team, user],
            )
            .map_err(|e| self.db_err(e))?;
        self.changed();
        Ok(())
    }

    /// Removes `user` from a team.
    pub fn remove_member(
        &self,
        actor: &Identity,
        org: &str,
        team: &str,
        user: &str,
    ) -> Result<(), AuthError> {
        self.require_org_admin(actor, org)?;
        let n = self
            .db
            .lock()
            .execute(
                "DELETE FROM members WHERE org = ? AND team = ? AND user = ?",
                params![org, team, user],
            )
            .map_err(|e| self.db_err(e))?;
        self.changed();
        if n == 0 {
            return Err(AuthError::NotFound(format!(
                "member {user} of team {org}/{team}"
            )));
        }
        Ok(())
    }

    /// Grants a team `actions` on repositories matching `pattern`, which must lie in `org`
    /// (`org/...`). Granting again adds to the actions.
    pub fn add_grant(
        &self,
        actor: &Identity,
        org: &str,
        team: &str,
        pattern: &str,
        actions: Actions,
    ) -> Result<(), AuthError> {
        self.require_org_admin(actor, org)?;
        check_pattern(pattern)?;
        if !pattern.starts_with(&format!("{org}/")) {
            return Err(AuthError::Invalid {
                what: "pattern",
                value: pattern.to_owned(),
                reason: format!("a grant of organisation {org} names repositories under {org}/"),
            });
        }
        if actions.is_empty() {
            return Err(AuthError::Invalid {
                what: "actions",
                value: String::new(),
                reason: "grant at least one of pull, push, delete, admin".into(),
            });
        }
        if !self.team_exists(org, team)? {
            return Err(AuthError::NotFound(format!("team {org}/{team}")));
        }
        self.db
            .lock()
            .execute(
                "INSERT INTO grants(org, team, pattern, actions) VALUES (?, ?, ?, ?)
                 ON CONFLICT(org, team, pattern) DO UPDATE SET actions = actions | excluded.actions",
                params![org, team, pattern, actions.bits() as i64],
            )
            .map_err(|e| self.db_err(e))?;
        self.changed();
        Ok(())
    }

    // ----- repositories -----

    /// Records a repository (created on first push; private).
    pub fn note_repo(&self, repo: &str) -> Result<(), AuthError> {
        self.db
            .lock()
            .execute(
                "INSERT OR IGNORE INTO repos(name, public, created) VALUES (?, 0, ?)",
                params![repo, now() as i64],
            )
            .map_err(|e| self.db_err(e))?;
        Ok(())
    }

    /// Makes a repository public or private (needs `admin` on it).
    pub fn set_visibility(
        &self,
        actor: &Identity,
        repo: &str,
        public: bool,
    ) -> Result<(), AuthError> {
        if !self.allowed(actor, repo)?.contains(Actions::ADMIN) {
            return Err(AuthError::Forbidden(format!(
                "changing the visibility of {repo} needs admin on it"
            )));
        }
        self.db
            .lock()
            .execute(
                "INSERT INTO repos(name, public, created) VALUES (?, ?, ?)
                 ON CONFLICT(name) DO UPDATE SET public = excluded.public",
                params![repo, public as i64, now() as i64],
            )
            .map_err(|e| self.db_err(e))?;
        Ok(())
    }

    /// Whether `repo` is public.
    pub fn is_public(&self, repo: &str) -> Result<bool, AuthError> {
        Ok(self
            .db
            .lock()
            .query_row("SELECT public FROM repos WHERE name = ?", [repo], |r| {
                r.get::<_, i64>(0)
            })
            .optional()
            .map_err(|e| self.db_err(e))?
            .is_some_and(|p| p != 0))
    }

    fn grants_of(&self, id: &Identity) -> Result<Vec<(String, Actions)>, AuthError> {
        match &id.kind {
            IdentityKind::Anonymous => Ok(Vec::new()),
            IdentityKind::User => {
                let db = self.db.lock();
                let mut st = db
                    .prepare(
                        "SELECT g.pattern, g.actions FROM grants g
                         JOIN members m ON g.org = m.org AND g.team = m.team WHERE m.user = ?",
                    )
                    .map_err(|e| self.db_err(e))?;
                st.query_map([&id.name], |r| {
                    Ok((r.get::<_, String>(0)?, Actions::from_bits(r.get(1)?)))
                })
                .and_then(Iterator::collect)
                .map_err(|e| self.db_err(e))
            }
            IdentityKind::Robot { .. } => {
                let scopes: Option<String> = self
                    .db
                    .lock()
                    .query_row(
                        "SELECT scopes FROM robots WHERE name = ?",
                        [&id.name],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(|e| self.db_err(e))?;
                Ok(scopes
                    .map(|s| parse_scopes_json(&s))
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|s| s.kind == ResourceKind::Repository)
                    .map(|s| (s.name, s.actions))
                    .collect())
            }
        }
    }

    /// The actions `id` holds on `repo`.
    pub fn allowed(&self, id: &Identity, repo: &str) -> Result<Actions, AuthError> {
        let grants = self.grants_of(id)?;
        Ok(evaluate(id, &grants, self.is_public(repo)?, repo))
    }

    /// A permission checker for many repositories (the catalog): grants and public
    /// repositories are read once.
    pub fn checker(&self, id: &Identity) -> Result<impl Fn(&str) -> Actions + use<>, AuthError> {
        let grants = self.grants_of(id)?;
        let public: HashSet<String> = {
            let db = self.db.lock();
            let mut st = db
                .prepare("SELECT name FROM repos WHERE public != 0")
                .map_err(|e| self.db_err(e))?;
            st.query_map([], |r| r.get::<_, String>(0))
                .and_then(Iterator::collect)
                .map_err(|e| self.db_err(e))?
        };
        let id = id.clone();
        Ok(move |repo: &str| evaluate(&id, &grants, public.contains(repo), repo))
    }

    // ----- logins -----

    fn cache_key(&self, user: &str, secret: &str) -> [u8; 32] {
        sha256(&[&self.cache_salt, user.as_bytes(), secret.as_bytes()])
    }

    /// Checks Basic credentials: a user's password, or a personal access token (username = its
    /// owner) or robot token (username = the robot) as the password. Rate-limited per user and
    /// per `remote` address; verified credentials are cached briefly (keyed by a salted hash).
    pub fn login(&self, user: &str, secret: &str, remote: &str) -> Result<Identity, LoginError> {
        if user.len() > 256 || secret.len() > 4096 {
            return Err(LoginError::Refused);
        }
        // A lockout holds even for credentials verified a moment ago.
        let now_i = Instant::now();
        let user_key = format!("user:{user}");
        let addr_key = format!("addr:{remote}");
        for (limiter, k) in [
            (&self.user_limiter, &user_key),
            (&self.addr_limiter, &addr_key),
        ] {
            if let Err(retry) = limiter.check(k, now_i) {
                self.audit(user, "login", user, "rate-limited", remote);
                return Err(LoginError::Limited(retry));
            }
        }
        let key = self.cache_key(user, secret);
        let generation = self.generation();
        let token = split_token(secret);
        let hit = {
            let cache = self.cache.lock();
            cache
                .get(&key)
                .filter(|e| {
                    e.generation == generation && e.at.elapsed() < self.config.credential_cache_ttl
                })
                .map(|e| e.identity.clone())
        };
        if let Some(identity) = hit {
            // A cached token is checked again (a lookup, no hashing): its expiry and revocation,
            // and its parents', hold from the second they happen.
            match token {
                None => return Ok(identity),
                Some((_, id, _)) if self.live_token(id)?.is_some() => return Ok(identity),
                Some(_) => {
                    self.cache.lock().remove(&key);
                }
            }
        }
        let busy = |e: AuthError| match e {
            AuthError::Busy(d) => LoginError::Busy(d),
            e => LoginError::Internal(e),
        };
        let result =
            if let Some((kind, id, s)) = token {
                self.token_login(user, kind, id, s)?
            } else {
                match self.user_row(user)? {
                    Some((uid, hash, admin)) => password::verify(secret, &hash)
                        .map_err(busy)?
                        .then(|| Identity {
                            uid: Some(uid),
                            ..Identity::user(user, admin)
                        }),
                    None => {
                        password::verify_dummy(secret).map_err(busy)?;
                        None
                    }
                }
            };
        match result {
            Some(identity) => {
                self.user_limiter.success(&user_key);
                self.audit(user, "login", user, "ok", remote);
                let mut cache = self.cache.lock();
                if cache.len() >= CACHE_MAX {
                    let ttl = self.config.credential_cache_ttl;
                    cache.retain(|_, e| e.at.elapsed() < ttl && e.generation == generation);
                    if cache.len() >= CACHE_MAX {
                        cache.clear();
                    }
                }
                cache.insert(
                    key,
                    CacheEntry {
                        identity: identity.clone(),
                        at: Instant::now(),
                        generation,
                    },
                );
                Ok(identity)
            }
            None => {
                let mut limited = None;
                for (limiter, k) in [
                    (&self.user_limiter, &user_key),
                    (&self.addr_limiter, &addr_key),
                ] {
                    if let Some(d) = limiter.failure(k, now_i) {
                        limited = Some(d);
                    }
                }
                self.audit(user, "login", user, "denied", remote);
                match limited {
                    Some(d) => Err(LoginError::Limited(d)),
                    None => Err(LoginError::Refused),
                }
            }
        }
    }

    fn token_row(&self, id: &str) -> Result<Option<TokenRow>, AuthError> {
        self.db
            .lock()
            .query_row(
                "SELECT kind, owner, hash, scopes, expires_at, parent FROM tokens WHERE id = ?",
                [id],
                |r| {
                    Ok(TokenRow {
                        kind: r.get(0)?,
                        owner: r.get(1)?,
                        hash: r.get(2)?,
                        scopes: r.get(3)?,
                        expires_at: r.get(4)?,
                        parent: r.get(5)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.db_err(e))
    }

    /// Token `id` if it is live: it exists and has not expired, nor has any token it was issued
    /// through (a refresh token carries its parent's expiry and revocation). Also returns the
    /// earliest expiry along the chain.
    fn live_token(&self, id: &str) -> Result<Option<(TokenRow, Option<i64>)>, AuthError> {
        let Some(row) = self.token_row(id)? else {
            return Ok(None);
        };
        let t = now() as i64;
        let mut expires = row.expires_at;
        let mut next = row.parent.clone();
        for _ in 0..=MAX_TOKEN_DEPTH {
            if expires.is_some_and(|e| e <= t) {
                return Ok(None);
            }
            let Some(pid) = next else {
                return Ok(Some((row, expires)));
            };
            let Some(parent) = self.token_row(&pid)? else {
                return Ok(None);
            };
            expires = match (expires, parent.expires_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            next = parent.parent;
        }
        Ok(None)
    }

    /// Deletes the tokens `select` names (its parameters `params`) and every token issued
    /// through them.
    fn delete_tokens_where(
        &self,
        select: &str,
        params: impl rusqlite::Params,
    ) -> Result<(), AuthError> {
        self.db
            .lock()
            .execute(
                &format!(
                    "WITH RECURSIVE doomed(id) AS ({select}
                       UNION SELECT t.id FROM tokens t JOIN doomed d ON t.parent = d.id)
                     DELETE FROM tokens WHERE id IN doomed"
                ),
                params,
            )
            .map_err(|e| self.db_err(e))?;
        Ok(())
    }

    /// Checks a token's secret; `user` must be its owner (any user for a refresh token when
    /// `user` is empty).
    fn token_login(
        &self,
        user: &str,
        kind: &str,
        id: &str,
        secret: &str,
    ) -> Result<Option<Identity>, AuthError> {
        let Some((row, _)) = self.live_token(id)? else {
            return Ok(None);
        };
        let hash = sha256(&[secret.as_bytes()]);
        let secret_ok: bool = hash.ct_eq(row.hash.as_slice()).into();
        let owner_ok = user.is_empty() && kind == REFRESH || row.owner == user;
        if !(secret_ok && owner_ok && row.kind == kind) {
            return Ok(None);
        }
        let cap = row.scopes.as_deref().map(|s| TokenCap {
            id: id.to_owned(),
            scopes: parse_scopes_json(s),
        });
        self.subject(&row.owner, cap)
    }

    /// The current identity of subject `name` (user or robot), with `cap`.
    fn subject(&self, name: &str, cap: Option<TokenCap>) -> Result<Option<Identity>, AuthError> {
        if let Some((org, _)) = name.split_once('+') {
            let id: Option<i64> = self
                .db
                .lock()
                .query_row("SELECT id FROM robots WHERE name = ?", [name], |r| r.get(0))
                .optional()
                .map_err(|e| self.db_err(e))?;
            return Ok(id.map(|id| Identity {
                kind: IdentityKind::Robot {
                    org: org.to_owned(),
                },
                name: name.to_owned(),
                admin: false,
                cap,
                uid: Some(id),
            }));
        }
        Ok(self.user_row(name)?.map(|(id, _, admin)| Identity {
            kind: IdentityKind::User,
            name: name.to_owned(),
            admin,
            cap,
            uid: Some(id),
        }))
    }

    /// Checks a refresh (offline) token.
    pub fn refresh_login(
        &self,
        token: &str,
        user: &str,
        remote: &str,
    ) -> Result<Identity, LoginError> {
        let addr_key = format!("addr:{remote}");
        let now_i = Instant::now();
        if let Err(retry) = self.addr_limiter.check(&addr_key, now_i) {
            return Err(LoginError::Limited(retry));
        }
        let found = match split_token(token) {
            Some((REFRESH, id, secret)) => self.token_login(user, REFRESH, id, secret)?,
            _ => None,
        };
        match found {
            Some(identity) => {
                self.audit(
                    &identity.name,
                    "login.refresh",
                    &identity.name,
                    "ok",
                    remote,
                );
                Ok(identity)
            }
            None => {
                self.audit(user, "login.refresh", user, "denied", remote);
                match self.addr_limiter.failure(&addr_key, now_i) {
                    Some(d) => Err(LoginError::Limited(d)),
                    None => Err(LoginError::Refused),
                }
            }
        }
    }

    /// The identity behind a verified token's claims (current admin flag, token cap).
    pub fn identity_of(&self, claims: &Claims) -> Result<Identity, AuthError> {
        if claims.sub.is_empty() {
            return Ok(Identity::anonymous());
        }
        let cap = match &claims.tid {
            None => None,
            Some(tid) => {
                let (row, _) = self.live_token(tid)?.ok_or_else(|| {
                    AuthError::InvalidToken(
                        "the token it was issued through is revoked or expired".into(),
                    )
                })?;
                row.scopes.as_deref().map(|s| TokenCap {
                    id: tid.clone(),
                    scopes: parse_scopes_json(s),
                })
            }
        };
        let gone = || AuthError::InvalidToken(format!("subject {} no longer exists", claims.sub));
        let id = self.subject(&claims.sub, cap)?.ok_or_else(gone)?;
        // The name may have been given to someone else since: the id tells them apart.
        if claims.uid.is_none() || claims.uid != id.uid {
            return Err(gone());
        }
        Ok(id)
    }

    // ----- registry tokens -----

    /// Signs a token granting, for each requested scope, the intersection of the actions asked
    /// for and the actions `id` holds; with `offline`, also a refresh token.
    pub fn issue(
        &self,
        id: &Identity,
        scopes: &[Scope],
        offline: bool,
        remote: &str,
    ) -> Result<IssuedToken, AuthError> {
        let mut access: Vec<Access> = Vec::new();
        for s in scopes {
            let granted = match s.kind {
                ResourceKind::Registry if s.name == "catalog" => {
                    if s.actions == Actions::ALL {
                        Scope::catalog()
                    } else {
                        continue;
                    }
                }
                ResourceKind::Registry if s.name == "admin" => {
                    if s.actions == Actions::ALL && id.may_administer() {
                        Scope::admin_api()
                    } else {
                        continue;
                    }
                }
                ResourceKind::Registry => continue,
                ResourceKind::Repository => {
                    if hoist_oci::RepoName::parse(&s.name).is_err() {
                        continue;
                    }
                    let a = s.actions.intersect(self.allowed(id, &s.name)?);
                    if a.is_empty() {
                        continue;
                    }
                    Scope::repository(s.name.clone(), a)
                }
            };
            let entry = Access::from_scope(&granted);
            match access
                .iter_mut()
                .find(|e| e.kind == entry.kind && e.name == entry.name)
            {
                Some(e) => {
                    for a in entry.actions {
                        if !e.actions.contains(&a) {
                            e.actions.push(a);
                        }
                    }
                }
                None => access.push(entry),
            }
        }
        let t = now();
        if !id.is_anonymous() && id.uid.is_none() {
            return Err(AuthError::InvalidToken(format!(
                "{} is not a subject of the identity store",
                id.name
            )));
        }
        // A token issued through another lives no longer than it.
        let mut exp = t + self.config.token_ttl.as_secs();
        if let Some(cap) = &id.cap {
            let (_, parent_exp) = self.live_token(&cap.id)?.ok_or_else(|| {
                AuthError::InvalidToken(
                    "the token it is issued through is revoked or expired".into(),
                )
            })?;
            if let Some(e) = parent_exp {
                exp = exp.min(e.max(0) as u64);
            }
        }
        let claims = Claims {
            iss: self.config.issuer.clone(),
            sub: id.name.clone(),
            aud: self.config.service.clone(),
            exp,
            nbf: t.saturating_sub(1),
            iat: t,
            jti: random_hex(8)?,
            access: access.clone(),
            tid: id.cap.as_ref().map(|c| c.id.clone()),
            uid: id.uid,
        };
        let token = self.keys.sign(&claims)?;
        let refresh_token = if offline && !id.is_anonymous() {
            Some(self.new_refresh_token(id)?)
        } else {
            None
        };
        // Anonymous tokens (public pulls) are not audited: anyone may ask for any number.
        if !id.is_anonymous() {
            let granted: Vec<String> = access
                .iter()
                .map(|a| format!("{}:{}:{}", a.kind, a.name, a.actions.join(",")))
                .collect();
            self.audit(
                id.audit_name(),
                "token.issue",
                &granted.join(" "),
                "ok",
                remote,
            );
        }
        Ok(IssuedToken {
            token,
            expires_in: exp.saturating_sub(t),
            issued_at: rfc3339(t),
            refresh_token,
            access,
        })
    }

    fn new_refresh_token(&self, id: &Identity) -> Result<String, AuthError> {
        let tid = random_hex(8)?;
        let secret = random_b64(32)?;
        let scopes = id.cap.as_ref().map(|c| scopes_json(&c.scopes));
        let parent = id.cap.as_ref().map(|c| c.id.clone());
        let t = now();
        // It ends when what it came from ends (checked on use as well).
        let mut expires_at = (t + self.config.refresh_ttl.as_secs()) as i64;
        if let Some(p) = &parent {
            let (_, parent_exp) = self.live_token(p)?.ok_or_else(|| {
                AuthError::InvalidToken(
                    "the token it is issued through is revoked or expired".into(),
                )
            })?;
            if let Some(e) = parent_exp {
                expires_at = expires_at.min(e);
            }
        }
        self.db
            .lock()
            .execute(
                "INSERT INTO tokens(id, kind, owner, name, hash, scopes, parent, expires_at, created)
                 VALUES (?, ?, ?, 'refresh', ?, ?, ?, ?, ?)",
                params![
                    tid,
                    REFRESH,
                    id.name,
                    sha256(&[secret.as_bytes()]).to_vec(),
                    scopes,
                    parent,
                    expires_at,
                    t as i64
                ],
            )
            .map_err(|e| self.db_err(e))?;
        Ok(format!("{REFRESH}.{tid}.{secret}"))
    }

    /// Verifies a registry token: signature, `kid`, expiry, not-before, issuer, audience.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        self.keys
            .verify(token, &self.config.issuer, &self.config.service)
    }

    /// The published key set.
    pub fn jwks(&self) -> JwkSet {
        self.keys.jwks()
    }

    /// The signing keys (tests sign tampered tokens with them).
    pub fn keys(&self) -> &TokenKeys {
        &self.keys
    }

    // ----- personal access tokens and robots -----

    fn lifetime(expires_in_secs: Option<u64>) -> Result<u64, AuthError> {
        match expires_in_secs {
            None => Ok(DEFAULT_TOKEN_LIFETIME),
            Some(s) if s == 0 || s > MAX_TOKEN_LIFETIME => Err(AuthError::Invalid {
                what: "expires_in_secs",
                value: s.to_string(),
                reason: format!("expected 1 to {MAX_TOKEN_LIFETIME} seconds"),
            }),
            Some(s) => Ok(s),
        }
    }

    fn parse_token_scopes(scopes: &[String], org: Option<&str>) -> Result<Vec<Scope>, AuthError> {
        if scopes.is_empty() {
            return Err(AuthError::Invalid {
                what: "scopes",
                value: "[]".into(),
                reason: "a token needs at least one scope, e.g. repository:NAME:pull".into(),
            });
        }
        scopes
            .iter()
            .map(|s| {
                let scope = Scope::parse(s)?;
                let invalid = |reason: String| AuthError::Invalid {
                    what: "scope",
                    value: s.clone(),
                    reason,
                };
                if scope.kind != ResourceKind::Repository {
                    return Err(invalid("a token scope names repositories".into()));
                }
                check_pattern(&scope.name).map_err(|e| invalid(e.to_string()))?;
                if let Some(org) = org
                    && !scope.name.starts_with(&format!("{org}/"))
                {
                    return Err(invalid(format!("a robot of {org} is limited to {org}/...")));
                }
                Ok(scope)
            })
            .collect()
    }

    fn insert_token(
        &self,
        kind: &str,
        owner: &str,
        name: &str,
        scopes: &[Scope],
        expires_at: u64,
    ) -> Result<CreatedToken, AuthError> {
        let id = random_hex(8)?;
        let secret = random_b64(32)?;
        self.db
            .lock()
            .execute(
                "INSERT INTO tokens(id, kind, owner, name, hash, scopes, parent, expires_at, created)
                 VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?)",
                params![
                    id,
                    kind,
                    owner,
                    name,
                    sha256(&[secret.as_bytes()]).to_vec(),
                    scopes_json(scopes),
                    expires_at as i64,
                    now() as i64
                ],
            )
            .map_err(|e| self.db_err(e))?;
        Ok(CreatedToken {
            token: format!("{kind}.{id}.{secret}"),
            id,
            name: owner.to_owned(),
        })
    }

    /// Creates a personal access token for the calling user (not with a token).
    pub fn create_token(
        &self,
        actor: &Identity,
        name: &str,
        scopes: &[String],
        expires_in_secs: Option<u64>,
    ) -> Result<CreatedToken, AuthError> {
        if actor.kind != IdentityKind::User || actor.cap.is_some() {
            return Err(AuthError::Forbidden(
                "personal access tokens are created by a user signed in with a password".into(),
            ));
        }
        if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
            return Err(AuthError::Invalid {
                what: "token name",
                value: name.to_owned(),
                reason: "expected 1 to 100 printable characters".into(),
            });
        }
        let scopes = Self::parse_token_scopes(scopes, None)?;
        let expires_at = now() + Self::lifetime(expires_in_secs)?;
        self.insert_token(PAT, &actor.name, name, &scopes, expires_at)
    }

    /// Creates robot `org+name` with `scopes` (all under `org/`) and its token.
    pub fn create_robot(
        &self,
        actor: &Identity,
        org: &str,
        name: &str,
        scopes: &[String],
        expires_in_secs: Option<u64>,
    ) -> Result<CreatedToken, AuthError> {
        self.require_org_admin(actor, org)?;
        check_name("robot name", name)?;
        let scopes = Self::parse_token_scopes(scopes, Some(org))?;
        let expires_at = now() + Self::lifetime(expires_in_secs)?;
        let full = format!("{org}+{name}");
        let n = self
            .db
            .lock()
            .execute(
                "INSERT OR IGNORE INTO robots(name, org, scopes, created) VALUES (?, ?, ?, ?)",
                params![full, org, scopes_json(&scopes), now() as i64],
            )
            .map_err(|e| self.db_err(e))?;
        if n == 0 {
            return Err(AuthError::Conflict(format!("robot {full}")));
        }
        self.changed();
        self.insert_token(ROBOT, &full, name, &scopes, expires_at)
    }

    /// The caller's personal access tokens (an administrator's own, like anyone's).
    pub fn list_tokens(&self, actor: &Identity) -> Result<Vec<TokenInfo>, AuthError> {
        if actor.is_anonymous() {
            return Err(AuthError::Forbidden("listing tokens needs a user".into()));
        }
        let db = self.db.lock();
        let mut st = db
            .prepare(
                "SELECT id, name, scopes, expires_at FROM tokens
                 WHERE owner = ? AND kind IN (?, ?) ORDER BY created, id",
            )
            .map_err(|e| self.db_err(e))?;
        st.query_map(params![actor.name, PAT, ROBOT], |r| {
            Ok(TokenInfo {
                id: r.get(0)?,
                name: r.get(1)?,
                scopes: serde_json::from_str(&r.get::<_, String>(2).unwrap_or_default())
                    .unwrap_or_default(),
                expires_at: r
                    .get::<_, Option<i64>>(3)?
                    .map(|e| rfc3339(e.max(0) as u64)),
            })
        })
        .and_then(Iterator::collect)
        .map_err(|e| self.db_err(e))
    }

    /// Revokes a token (and refresh tokens issued through it): its owner, an administrator, or
    /// for a robot's token an administrator of the robot's organisation.
    pub fn revoke_token(&self, actor: &Identity, id: &str) -> Result<(), AuthError> {
        let row = self
            .token_row(id)?
            .filter(|r| r.kind == PAT || r.kind == ROBOT)
            .ok_or_else(|| AuthError::NotFound(format!("token {id}")))?;
        let own = !actor.is_anonymous() && actor.name == row.owner;
        let org_admin = match row.owner.split_once('+') {
            Some((org, _)) => self.is_org_admin(actor, org)?,
            None => false,
        };
        if !(own || org_admin || actor.is_site_admin()) {
            // Someone else's token: indistinguishable from a missing one.
            return Err(AuthError::NotFound(format!("token {id}")));
        }
        // Everything issued through it goes with it (refresh tokens of refresh tokens too).
        let r = self.delete_tokens_where("SELECT ?1", params![id]);
        if r.is_ok() && row.kind == ROBOT {
            let deleted = self
                .db
                .lock()
                .execute("DELETE FROM robots WHERE name = ?", [&row.owner])
                .map_err(|e| self.db_err(e));
            self.changed();
            return deleted.map(|_| ());
        }
        self.changed();
        r
    }

    /// The newest `limit` audit records, newest first (administrators only).
    pub fn audit_log(&self, actor: &Identity, limit: usize) -> Result<Vec<AuditEntry>, AuthError> {
        self.require_site_admin(actor, "reading the audit log")?;
        let db = self.db.lock();
        let mut st = db
            .prepare(
                "SELECT time, actor, action, target, outcome, remote FROM audit
                 ORDER BY id DESC LIMIT ?",
            )
            .map_err(|e| self.db_err(e))?;
        st.query_map([limit.min(10_000) as i64], |r| {
            Ok(AuditEntry {
                time: rfc3339(r.get::<_, i64>(0)?.max(0) as u64),
                actor: r.get(1)?,
                action: r.get(2)?,
                target: r.get(3)?,
                outcome: r.get(4)?,
                remote: r.get(5)?,
            })
        })
        .and_then(Iterator::collect)
        .map_err(|e| self.db_err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, Auth) {
        let dir = tempfile::tempdir().unwrap();
        let auth = Auth::open(dir.path(), AuthConfig::default()).unwrap();
        assert!(auth.ensure_admin("admin-password").unwrap());
        assert!(!auth.ensure_admin("other-password").unwrap());
        (dir, auth)
    }

    fn admin() -> Identity {
        Identity::user("admin", true)
    }

    #[test]
    fn files_are_private_and_users_persist() {
        let (dir, auth) = open();
        auth.add_user(&admin(), "alice", "alice-password").unwrap();
        drop(auth);
        use std::os::unix::fs::PermissionsExt;
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let entry = entry.unwrap();
            let mode = entry.metadata().unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{:?} is {mode:o}", entry.file_name());
        }
        assert!(Auth::exists_with_users(dir.path()));
        let auth = Auth::open(dir.path(), AuthConfig::default()).unwrap();
        assert!(auth.login("alice", "alice-password", "t").is_ok());
        assert!(!Auth::exists_with_users(&dir.path().join("nothing")));
    }

    #[test]
    fn cached_credentials_are_dropped_when_anything_changes() {
        let (_dir, auth) = open();
        auth.add_user(&admin(), "alice", "alice-password").unwrap();
        let alice = auth.login("alice", "alice-password", "t").unwrap();
        assert_eq!((alice.name.as_str(), alice.admin), ("alice", false));
        assert!(alice.uid.is_some());
        // Served from the cache.
        assert!(auth.login("alice", "alice-password", "t").is_ok());
        auth.set_password(&alice, "alice", "new-password").unwrap();
        assert!(matches!(
            auth.login("alice", "alice-password", "t"),
            Err(LoginError::Refused)
        ));
        assert!(auth.login("alice", "new-password", "t").is_ok());
        auth.remove_user(&admin(), "alice").unwrap();
        assert!(matches!(
            auth.login("alice", "new-password", "t"),
            Err(LoginError::Refused)
        ));
    }

    #[test]
    fn who_may_administer_what() {
        let (_dir, auth) = open();
        let a = admin();
        for u in ["alice", "bob"] {
            auth.add_user(&a, u, &format!("{u}-password")).unwrap();
        }
        let alice = Identity::user("alice", false);
        let bob = Identity::user("bob", false);
        assert!(matches!(
            auth.add_user(&alice, "eve", "eve-password"),
            Err(AuthError::Forbidden(_))
        ));
        assert!(matches!(
            auth.create_org(&alice, "acme"),
            Err(AuthError::Forbidden(_))
        ));
        auth.create_org(&a, "acme").unwrap();
        assert!(matches!(
            auth.create_org(&a, "acme"),
            Err(AuthError::Conflict(_))
        ));
        assert!(matches!(
            auth.create_org(&a, "alice"),
            Err(AuthError::Conflict(_))
        ));
        assert!(matches!(
            auth.add_user(&a, "acme", "acme-password"),
            Err(AuthError::Conflict(_))
        ));
        assert!(matches!(
            auth.add_user(&a, "Eve", "eve-password"),
            Err(AuthError::Invalid { .. })
        ));
        assert!(matches!(
            auth.add_user(&a, "eve", "short"),
            Err(AuthError::Invalid { .. })
        ));
        assert!(matches!(
            auth.create_team(&alice, "acme", "owners"),
            Err(AuthError::Forbidden(_))
        ));
        auth.create_team(&a, "acme", "owners").unwrap();
        auth.add_member(&a, "acme", "owners", "alice").unwrap();
        auth.add_grant(&a, "acme", "owners", "acme/*", Actions::ALL)
            .unwrap();
        // alice now administers acme, not other organisations, and not the site.
        assert!(auth.is_org_admin(&alice, "acme").unwrap());
        auth.create_team(&alice, "acme", "devs").unwrap();
        auth.add_member(&alice, "acme", "devs", "bob").unwrap();
        auth.add_grant(&alice, "acme", "devs", "acme/app", Actions::PUSH)
            .unwrap();
        auth.add_grant(&alice, "acme", "devs", "acme/app", Actions::PULL)
            .unwrap();
        assert_eq!(
            auth.allowed(&bob, "acme/app").unwrap(),
            Actions::parse("pull,push").unwrap()
        );
        assert!(matches!(
            auth.add_grant(&alice, "acme", "devs", "other/*", Actions::PULL),
            Err(AuthError::Invalid { .. })
        ));
        assert!(matches!(
            auth.add_member(&bob, "acme", "devs", "bob"),
            Err(AuthError::Forbidden(_))
        ));
        assert!(matches!(
            auth.add_member(&a, "acme", "nope", "bob"),
            Err(AuthError::NotFound(_))
        ));
        assert!(matches!(
            auth.add_member(&a, "acme", "devs", "nobody"),
            Err(AuthError::NotFound(_))
        ));
        assert!(matches!(
            auth.create_team(&a, "nope", "x"),
            Err(AuthError::NotFound(_))
        ));
        assert!(matches!(
            auth.list_users(&alice),
            Err(AuthError::Forbidden(_))
        ));
        assert!(matches!(
            auth.remove_user(&a, "admin"),
            Err(AuthError::Forbidden(_))
        ));
        assert!(matches!(
            auth.set_password(&bob, "alice", "whatever-1"),
            Err(AuthError::Forbidden(_))
        ));
        // Visibility needs admin on the repository.
        assert!(matches!(
            auth.set_visibility(&bob, "acme/app", true),
            Err(AuthError::Forbidden(_))
        ));
        auth.set_visibility(&alice, "acme/app", true).unwrap();
        assert!(auth.is_public("acme/app").unwrap());
        auth.set_visibility(&bob, "bob/x", true).unwrap();
        // Leaving the team ends its grants.
        auth.remove_member(&alice, "acme", "devs", "bob").unwrap();
        assert_eq!(auth.allowed(&bob, "acme/lib").unwrap(), Actions::NONE);
        assert!(matches!(
            auth.audit_log(&alice, 10),
            Err(AuthError::Forbidden(_))
        ));
        assert!(!auth.audit_log(&a, 10).unwrap().is_empty());
    }

    #[test]
    fn tokens_are_hashed_scoped_expiring_and_revocable() {
        let (dir, auth) = open();
        let a = admin();
        auth.add_user(&a, "alice", "alice-password").unwrap();
        auth.create_org(&a, "acme").unwrap();
        let alice = Identity::user("alice", false);
        let t = auth
            .create_token(
                &alice,
                "ci",
                &["repository:alice/*:pull".into()],
                Some(3600),
            )
            .unwrap();
        assert!(t.token.starts_with("hpat."));
        // Only its hash is stored.
        let secret = t.token.rsplit('.').next().unwrap();
        for f in ["auth.db", "auth.db-wal"] {
            let bytes = std::fs::read(dir.path().join(f)).unwrap_or_default();
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{f}"
            );
        }
        let id = auth.login("alice", &t.token, "t").unwrap();
        assert_eq!(id.cap.as_ref().unwrap().id, t.id);
        assert_eq!(auth.allowed(&id, "alice/app").unwrap(), Actions::PULL);
        assert!(matches!(
            auth.login("bob", &t.token, "t"),
            Err(LoginError::Refused)
        ));
        let mut tampered = t.token.clone();
        // Its last character changed (to one it certainly is not).
        tampered.pop();
        tampered.push(if t.token.ends_with('A') { 'B' } else { 'A' });
        assert!(matches!(
            auth.login("alice", &tampered, "t2"),
            Err(LoginError::Refused)
        ));
        // Invalid requests.
        assert!(auth.create_token(&alice, "x", &[], None).is_err());
        assert!(
            auth.create_token(&alice, "x", &["registry:catalog:*".into()], None)
                .is_err()
        );
        assert!(
            auth.create_token(&alice, "x", &["repository:a:pull".into()], Some(0))
                .is_err()
        );
        assert!(
            auth.create_token(&id, "x", &["repository:a:pull".into()], None)
                .is_err()
        );
        assert!(
            auth.create_robot(&a, "acme", "ci", &["repository:other/*:pull".into()], None)
                .is_err()
        );
        assert!(
            auth.create_robot(
                &alice,
                "acme",
                "ci",
                &["repository:acme/*:pull".into()],
                None
            )
            .is_err()
        );
        // Expiry: a token whose time has passed no longer logs in.
        let short = auth
            .create_token(
                &alice,
                "short",
                &["repository:alice/*:pull".into()],
                Some(1),
            )
            .unwrap();
        auth.db
            .lock()
            .execute("UPDATE tokens SET expires_at = 1 WHERE id = ?", [&short.id])
            .unwrap();
        assert!(matches!(
            auth.login("alice", &short.token, "t3"),
            Err(LoginError::Refused)
        ));
        // Revocation, and refresh tokens issued through it go with it.
        let issued = auth.issue(&id, &[], true, "t").unwrap();
        let refresh = issued.refresh_token.unwrap();
        assert!(auth.refresh_login(&refresh, "", "t").is_ok());
        auth.revoke_token(&alice, &t.id).unwrap();
        assert!(auth.login("alice", &t.token, "t4").is_err());
        assert!(auth.refresh_login(&refresh, "", "t").is_err());
        assert!(matches!(
            auth.revoke_token(&alice, &t.id),
            Err(AuthError::NotFound(_))
        ));
        let listed = auth.list_tokens(&alice).unwrap();
        assert_eq!(
            listed.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
            vec!["short"]
        );
        // A robot: its scopes are its rights; revoking its token removes it.
        let r = auth
            .create_robot(
                &a,
                "acme",
                "ci",
                &["repository:acme/ci-*:pull,push".into()],
                None,
            )
            .unwrap();
        assert_eq!(r.name, "acme+ci");
        let robot = auth.login("acme+ci", &r.token, "t").unwrap();
        assert_eq!(
            auth.allowed(&robot, "acme/ci-x").unwrap(),
            Actions::parse("pull,push").unwrap()
        );
        assert_eq!(auth.allowed(&robot, "acme/app").unwrap(), Actions::NONE);
        assert!(matches!(
            auth.create_robot(&a, "acme", "ci", &["repository:acme/*:pull".into()], None),
            Err(AuthError::Conflict(_))
        ));
        auth.revoke_token(&a, &r.id).unwrap();
        assert!(auth.login("acme+ci", &r.token, "t5").is_err());
    }

    #[test]
    fn a_lockout_holds_for_cached_credentials_too() {
        let (_dir, auth) = open();
        auth.add_user(&admin(), "alice", "alice-password").unwrap();
        assert!(auth.login("alice", "alice-password", "10.0.0.1").is_ok());
        let mut outcomes = Vec::new();
        for _ in 0..5 {
            outcomes.push(auth.login("alice", "wrong-password", "10.0.0.2"));
        }
        assert!(matches!(outcomes[0], Err(LoginError::Refused)));
        assert!(matches!(outcomes[4], Err(LoginError::Limited(_))));
        assert!(matches!(
            auth.login("alice", "alice-password", "10.0.0.1"),
            Err(LoginError::Limited(_))
        ));
        // Another user is not affected.
        assert!(auth.login("admin", "admin-password", "10.0.0.1").is_ok());
    }

    fn pat_expiry(auth: &Auth, id: &str) -> i64 {
        auth.db
            .lock()
            .query_row("SELECT expires_at FROM tokens WHERE id = ?", [id], |r| {
                r.get(0)
            })
            .unwrap()
    }

    fn expire_now(auth: &Auth, id: &str) {
        // Behind the service's back, as the clock does it: no change is announced.
        auth.db
            .lock()
            .execute(
                "UPDATE tokens SET expires_at = ? WHERE id = ?",
                params![now() as i64 - 1, id],
            )
            .unwrap();
    }

    #[test]
    fn a_cached_token_login_is_checked_for_expiry_every_time() {
        let (_dir, auth) = open();
        auth.add_user(&admin(), "alice", "alice-password").unwrap();
        let alice = Identity::user("alice", false);
        let t = auth
            .create_token(&alice, "ci", &["repository:alice/*:pull".into()], None)
            .unwrap();
        assert!(auth.login("alice", &t.token, "t").is_ok());
        assert!(auth.login("alice", &t.token, "t").is_ok(), "cached");
        expire_now(&auth, &t.id);
        assert!(
            matches!(auth.login("alice", &t.token, "t"), Err(LoginError::Refused)),
            "an expired token is refused even while it is cached"
        );
    }

    #[test]
    fn refresh_tokens_and_registry_tokens_end_with_their_parent() {
        let (_dir, auth) = open();
        auth.add_user(&admin(), "alice", "alice-password").unwrap();
        let alice = Identity::user("alice", false);
        let scope = ["repository:alice/*:pull".to_owned()];
        // A short parent: what comes from it expires no later than it does.
        let short = auth.create_token(&alice, "short", &scope, Some(3)).unwrap();
        let id = auth.login("alice", &short.token, "t").unwrap();
        let issued = auth
            .issue(
                &id,
                &[Scope::parse("repository:alice/app:pull").unwrap()],
                true,
                "t",
            )
            .unwrap();
        let refresh = issued.refresh_token.clone().unwrap();
        let (_, rid, _) = split_token(&refresh).unwrap();
        assert!(pat_expiry(&auth, rid) <= pat_expiry(&auth, &short.id));
        let claims = auth.verify(&issued.token).unwrap();
        assert!(claims.exp as i64 <= pat_expiry(&auth, &short.id));
        assert!(issued.expires_in <= 3);
        // Valid while the parent is.
        assert!(auth.refresh_login(&refresh, "", "t").is_ok());
        assert!(auth.login("alice", &refresh, "t").is_ok());
        assert!(auth.identity_of(&claims).is_ok());
        // The parent expires: the refresh token (as a grant and as a password) and the
        // registry token issued through it end with it.
        expire_now(&auth, &short.id);
        assert!(auth.refresh_login(&refresh, "", "t").is_err());
        assert!(auth.login("alice", &refresh, "t2").is_err());
        assert!(auth.identity_of(&claims).is_err());
        // A refresh token of a refresh token (docker keeps refreshing) ends with the first
        // parent too.
        let long = auth.create_token(&alice, "long", &scope, None).unwrap();
        let id = auth.login("alice", &long.token, "t").unwrap();
        let refresh = auth
            .issue(&id, &[], true, "t")
            .unwrap()
            .refresh_token
            .unwrap();
        let via_refresh = auth.refresh_login(&refresh, "", "t").unwrap();
        let second = auth
            .issue(&via_refresh, &[], true, "t")
            .unwrap()
            .refresh_token
            .unwrap();
        let jwt = auth
            .issue(
                &via_refresh,
                &[Scope::parse("repository:alice/app:pull").unwrap()],
                false,
                "t",
            )
            .unwrap();
        let claims = auth.verify(&jwt.token).unwrap();
        assert!(auth.refresh_login(&second, "", "t").is_ok());
        assert!(auth.identity_of(&claims).is_ok());
        expire_now(&auth, &long.id);
        assert!(auth.refresh_login(&refresh, "", "t").is_err());
        assert!(auth.refresh_login(&second, "", "t").is_err());
        assert!(auth.identity_of(&claims).is_err());
    }

    #[test]
    fn a_removed_users_tokens_stay_dead_when_the_name_returns() {
        let (_dir, auth) = open();
        auth.add_user(&admin(), "bob", "bob-password").unwrap();
        let bob = auth.login("bob", "bob-password", "t").unwrap();
        let issued = auth
            .issue(
                &bob,
                &[Scope::parse("repository:bob/app:pull").unwrap()],
                true,
                "t",
            )
            .unwrap();
        let claims = auth.verify(&issued.token).unwrap();
        assert!(auth.identity_of(&claims).is_ok());
        // bob is the newest user: an id that is merely the next free row would come back.
        auth.remove_user(&admin(), "bob").unwrap();
        auth.add_user(&admin(), "bob", "bob-password").unwrap();
        assert!(
            auth.identity_of(&auth.verify(&issued.token).unwrap())
                .is_err(),
            "the old bob's token names the old bob"
        );
        let refresh = issued.refresh_token.unwrap();
        assert!(auth.refresh_login(&refresh, "", "t").is_err());
        // The new bob's tokens work.
        let bob = auth.login("bob", "bob-password", "t").unwrap();
        let fresh = auth.issue(&bob, &[], false, "t").unwrap();
        assert!(
            auth.identity_of(&auth.verify(&fresh.token).unwrap())
                .is_ok()
        );
        // Robots too: a revoked robot's token does not come back with a new robot of its name.
        auth.create_org(&admin(), "acme").unwrap();
        let scopes = ["repository:acme/*:pull".to_owned()];
        let r = auth
            .create_robot(&admin(), "acme", "ci", &scopes, None)
            .unwrap();
        let robot = auth.login("acme+ci", &r.token, "t").unwrap();
        let robot_jwt = auth.issue(&robot, &[], false, "t").unwrap();
        auth.revoke_token(&admin(), &r.id).unwrap();
        auth.create_robot(&admin(), "acme", "ci", &scopes, None)
            .unwrap();
        assert!(
            auth.identity_of(&auth.verify(&robot_jwt.token).unwrap())
                .is_err()
        );
    }

    #[test]
    fn only_a_password_login_gets_the_admin_api_scope() {
        let (_dir, auth) = open();
        auth.add_user(&admin(), "alice", "alice-password").unwrap();
        let admin_scope = Scope::parse("registry:admin:*").unwrap();
        let has_admin = |id: &Identity| {
            auth.issue(id, std::slice::from_ref(&admin_scope), false, "t")
                .unwrap()
                .access
                .iter()
                .any(|a| a.kind == "registry" && a.name == "admin")
        };
        let by_password = auth.login("alice", "alice-password", "t").unwrap();
        assert!(has_admin(&by_password));
        assert!(has_admin(
            &auth.login("admin", "admin-password", "t").unwrap()
        ));
        let pat = auth
            .create_token(
                &by_password,
                "all",
                &["repository:alice/*:pull,push,delete,admin".into()],
                None,
            )
            .unwrap();
        let by_pat = auth.login("alice", &pat.token, "t").unwrap();
        assert!(!has_admin(&by_pat));
        assert!(!has_admin(&Identity::anonymous()));
        let refresh_of_pat = auth
            .issue(&by_pat, &[], true, "t")
            .unwrap()
            .refresh_token
            .unwrap();
        assert!(!has_admin(
            &auth.refresh_login(&refresh_of_pat, "", "t").unwrap()
        ));
        // A refresh token of a password login stands for the password (docker's identity
        // token), as `hoist admin` after `hoist login` needs.
        let refresh = auth
            .issue(&by_password, &[], true, "t")
            .unwrap()
            .refresh_token
            .unwrap();
        assert!(has_admin(&auth.refresh_login(&refresh, "", "t").unwrap()));
        auth.create_org(&admin(), "acme").unwrap();
        let r = auth
            .create_robot(
                &admin(),
                "acme",
                "ci",
                &["repository:acme/*:pull".into()],
                None,
            )
            .unwrap();
        assert!(!has_admin(&auth.login("acme+ci", &r.token, "t").unwrap()));
    }

    #[test]
    fn patterns_with_dot_or_empty_segments_are_refused_when_stored() {
        let (_dir, auth) = open();
        let a = admin();
        auth.add_user(&a, "alice", "alice-password").unwrap();
        auth.create_org(&a, "acme").unwrap();
        auth.create_team(&a, "acme", "devs").unwrap();
        let alice = Identity::user("alice", false);
        for bad in [
            "acme/../other",
            "acme/..",
            "acme/x/../../other",
            "acme//x",
            "acme/",
            "acme/./x",
            "acme/x/.",
            "acme/x//*",
        ] {
            let e = auth
                .add_grant(&a, "acme", "devs", bad, Actions::PULL)
                .unwrap_err();
            assert!(
                matches!(&e, AuthError::Invalid { value, .. } if value == bad),
                "{bad}: {e}"
            );
            assert!(e.to_string().contains(bad), "{e}");
            let scope = format!("repository:{}:pull", bad.replacen("acme", "alice", 1));
            assert!(
                auth.create_token(&alice, "x", std::slice::from_ref(&scope), None)
                    .is_err(),
                "{scope}"
            );
            assert!(
                auth.create_robot(&a, "acme", "ci", &[format!("repository:{bad}:pull")], None)
                    .is_err(),
                "{bad}"
            );
        }
        for good in ["acme/*", "acme/app", "acme/team/*-dev", "acme/a.b/c"] {
            auth.add_grant(&a, "acme", "devs", good, Actions::PULL)
                .unwrap();
        }
    }

    #[test]
    fn a_database_of_names_only_gets_ids_never_reused() {
        // The schema before users and robots had ids.
        let dir = tempfile::tempdir().unwrap();
        {
            let c = Connection::open(dir.path().join(DB_FILE)).unwrap();
            c.execute_batch(
                "PRAGMA foreign_keys = ON;
                 CREATE TABLE users(name TEXT PRIMARY KEY, hash TEXT NOT NULL,
                    admin INTEGER NOT NULL DEFAULT 0, created INTEGER NOT NULL);
                 CREATE TABLE orgs(name TEXT PRIMARY KEY, created INTEGER NOT NULL);
                 CREATE TABLE teams(org TEXT NOT NULL REFERENCES orgs(name) ON DELETE CASCADE,
                    name TEXT NOT NULL, PRIMARY KEY(org, name));
                 CREATE TABLE members(org TEXT NOT NULL, team TEXT NOT NULL,
                    user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
                    PRIMARY KEY(org, team, user),
                    FOREIGN KEY(org, team) REFERENCES teams(org, name) ON DELETE CASCADE);
                 CREATE TABLE robots(name TEXT PRIMARY KEY,
                    org TEXT NOT NULL REFERENCES orgs(name) ON DELETE CASCADE,
                    scopes TEXT NOT NULL, created INTEGER NOT NULL);
                 INSERT INTO orgs VALUES ('acme', 1);
                 INSERT INTO teams VALUES ('acme', 'devs');
                 INSERT INTO robots VALUES ('acme+ci', 'acme', '[\"repository:acme/*:pull\"]', 1);",
            )
            .unwrap();
            for (u, admin) in [("admin", 1), ("alice", 0), ("bob", 0)] {
                let h = password::hash(&format!("{u}-password")).unwrap();
                c.execute(
                    "INSERT INTO users VALUES (?, ?, ?, 1)",
                    params![u, h, admin],
                )
                .unwrap();
            }
            c.execute("INSERT INTO members VALUES ('acme', 'devs', 'bob')", [])
                .unwrap();
        }
        let auth = Auth::open(dir.path(), AuthConfig::default()).unwrap();
        let a = auth.login("admin", "admin-password", "t").unwrap();
        assert!(a.is_site_admin());
        let bob = auth.login("bob", "bob-password", "t").unwrap();
        assert!(bob.uid.is_some());
        // Memberships survived and still cascade.
        auth.add_grant(&a, "acme", "devs", "acme/*", Actions::PULL)
            .unwrap();
        assert_eq!(auth.allowed(&bob, "acme/app").unwrap(), Actions::PULL);
        let jwt = auth.issue(&bob, &[], false, "t").unwrap();
        auth.remove_user(&a, "bob").unwrap();
        auth.add_user(&a, "bob", "bob-password").unwrap();
        let new_bob = auth.login("bob", "bob-password", "t").unwrap();
        assert!(
            new_bob.uid > bob.uid,
            "{:?} after {:?}",
            new_bob.uid,
            bob.uid
        );
        assert_eq!(auth.allowed(&new_bob, "acme/app").unwrap(), Actions::NONE);
        assert!(auth.identity_of(&auth.verify(&jwt.token).unwrap()).is_err());
        let robot = auth.subject("acme+ci", None).unwrap().unwrap();
        assert!(robot.uid.is_some());
        drop(auth);
        // Opening again changes nothing.
        let auth = Auth::open(dir.path(), AuthConfig::default()).unwrap();
        assert_eq!(
            auth.login("bob", "bob-password", "t").unwrap().uid,
            new_bob.uid
        );
    }

    #[test]
    fn names() {
        for ok in ["a", "alice", "a.b", "a_b-c9"] {
            assert!(check_name("n", ok).is_ok(), "{ok}");
        }
        for bad in ["", "A", "-a", "a-", "a..b", "a/b", "a+b", &"x".repeat(65)] {
            assert!(check_name("n", bad).is_err(), "{bad}");
        }
    }
}
