//! [`Auth`]: the identity store (`<data>/auth.db`, SQLite in WAL mode, or a PostgreSQL database
//! several replicas share: [`Auth::open_postgres`]), logins, token issue and verification,
//! administration and the audit log.
//!
//! Every method is synchronous (SQLite, argon2); an async server calls the ones that hash
//! passwords (`login`, `add_user`, `set_password`, `ensure_admin`) from a blocking thread. On
//! PostgreSQL a call never blocks a runtime's worker either (see `db`).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use jsonwebtoken::jwk::JwkSet;
use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension};
use subtle::ConstantTimeEq;

use crate::actions::{Actions, ResourceKind, Scope, check_pattern};
use crate::jwt::{Access, Claims, TokenKeys};
use crate::limiter::{Limits, RateLimiter, lockout, now_ms};
use crate::policy::{Identity, IdentityKind, TokenCap, evaluate};
use crate::time::{now, rfc3339};
use crate::{AuthError, password};
use db::{Db, vals};

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

pub(crate) const SCHEMA: &str = "
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
CREATE TABLE IF NOT EXISTS login_limits(
    key TEXT PRIMARY KEY, failures INTEGER NOT NULL, since_ms INTEGER NOT NULL,
    locked_until_ms INTEGER, expires_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS login_limits_expires ON login_limits(expires_ms);
CREATE TABLE IF NOT EXISTS auth_generation(id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER NOT NULL);
INSERT OR IGNORE INTO auth_generation(id, n) VALUES (1, 0);
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
    db: Db,
    keys: TokenKeys,
    config: AuthConfig,
    user_limiter: RateLimiter,
    addr_limiter: RateLimiter,
    cache: Mutex<HashMap<[u8; 32], CacheEntry>>,
    cache_salt: [u8; 16],
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("path", &self.db.location())
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
        let keys = TokenKeys::load_or_generate(dir)?;
        Auth::with_db(Db::sqlite(conn, path), keys, config)
    }

    /// Opens the store in the PostgreSQL database at `url` (`postgres://user:password@host/db`
    /// or a `key=value` connection string) with a pool of at most `pool_size` connections,
    /// over TLS verified with `tls` when given (never plain then), migrating its schema. The token signing key lives in the database too
    /// (generated by the first replica to open it), so every replica signs and verifies alike.
    pub fn open_postgres(
        url: &str,
        pool_size: usize,
        tls: Option<std::sync::Arc<rustls::ClientConfig>>,
        config: AuthConfig,
    ) -> Result<Auth, AuthError> {
        let db = Db::postgres(url, pool_size, tls)?;
        let generated = TokenKeys::generate_pkcs8()?;
        db.execute(
            "INSERT OR IGNORE INTO auth_signing_key(id, pkcs8, created) VALUES (1, ?, ?)",
            vals![generated, now() as i64],
        )?;
        let pkcs8 = db
            .query_opt("SELECT pkcs8 FROM auth_signing_key WHERE id = 1", vals![])?
            .ok_or_else(|| AuthError::Crypto("no token signing key in the database".into()))?
            .blob(0)?;
        let keys = TokenKeys::from_pkcs8(&pkcs8)?;
        Auth::with_db(db, keys, config)
    }

    fn with_db(db: Db, keys: TokenKeys, config: AuthConfig) -> Result<Auth, AuthError> {
        // Expired refresh tokens are useless: every `docker login` makes one.
        db.execute(
            "DELETE FROM tokens WHERE kind = ? AND expires_at < ?",
            vals![REFRESH, now() as i64],
        )?;
        let mut cache_salt = [0u8; 16];
        aws_lc_rs::rand::fill(&mut cache_salt)
            .map_err(|_| AuthError::Crypto("random bytes".into()))?;
        Ok(Auth {
            db,
            keys,
            user_limiter: RateLimiter::new(config.user_limits),
            addr_limiter: RateLimiter::new(config.addr_limits),
            config,
            cache: Mutex::new(HashMap::new()),
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

    /// Whether the store holds users (then the registry runs closed); for a database that is
    /// not a file under the data directory ([`Auth::exists_with_users`]).
    pub fn has_users(&self) -> Result<bool, AuthError> {
        Ok(self
            .db
            .query_opt("SELECT count(*) FROM users", vals![])?
            .map(|r| r.int(0))
            .transpose()?
            .is_some_and(|n| n > 0))
    }

    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// Bumps the store's generation (`auth_generation`), read by every process sharing the
    /// store: cached credentials from an older generation are verified again, on every replica.
    fn changed(&self) {
        if let Err(e) = self
            .db
            .execute("UPDATE auth_generation SET n = n + 1 WHERE id = 1", vals![])
        {
            // Other replicas' caches then hold at most `credential_cache_ttl` longer.
            tracing::error!(error = %e, "announcing a change to cached credentials");
        }
    }

    fn generation(&self) -> Result<u64, AuthError> {
        Ok(self
            .db
            .query_opt("SELECT n FROM auth_generation WHERE id = 1", vals![])?
            .map(|r| r.int(0))
            .transpose()?
            .unwrap_or(0) as u64)
    }

    /// Appends to the audit log (table and the `hoist::audit` tracing target). Never pass a
    /// secret here.
    pub fn audit(&self, actor: &str, action: &str, target: &str, outcome: &str, remote: &str) {
        tracing::info!(target: "hoist::audit", actor, action, target, outcome, remote, "audit");
        let r = self.db.execute(
            "INSERT INTO audit(time, actor, action, target, outcome, remote) VALUES (?,?,?,?,?,?)",
            vals![now() as i64, actor, action, target, outcome, remote],
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
            .query_opt("SELECT 1 FROM users WHERE name = 'admin'", vals![])?
            .is_some();
        if exists {
            return Ok(false);
        }
        password::check_new(password)?;
        let hash = password::hash(password)?;
        self.db.execute(
            "INSERT OR IGNORE INTO users(name, hash, admin, created) VALUES ('admin', ?, 1, ?)",
            vals![hash, now() as i64],
        )?;
        self.audit("-", "user.create", "admin", "ok", "startup");
        Ok(true)
    }

    /// A user's (id, password hash, admin flag).
    fn user_row(&self, name: &str) -> Result<Option<(i64, String, bool)>, AuthError> {
        self.db
            .query_opt(
                "SELECT id, hash, admin FROM users WHERE name = ?",
                vals![name],
            )?
            .map(|r| Ok((r.int(0)?, r.text(1)?, r.int(2)? != 0)))
            .transpose()
    }

    fn org_exists(&self, org: &str) -> Result<bool, AuthError> {
        Ok(self
            .db
            .query_opt("SELECT 1 FROM orgs WHERE name = ?", vals![org])?
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
            .query_opt(
                "SELECT count(*) FROM grants g JOIN members m ON g.org = m.org AND g.team = m.team
                 WHERE m.user = ? AND g.org = ? AND g.pattern = ? AND (g.actions & ?) != 0",
                vals![&actor.name, org, pattern, Actions::ADMIN.bits() as i64],
            )?
            .map(|r| r.int(0))
            .transpose()?
            .unwrap_or(0);
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
        let n = self.db.execute(
            "INSERT OR IGNORE INTO users(name, hash, admin, created) VALUES (?, ?, 0, ?)",
            vals![name, hash, now() as i64],
        )?;
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
        let n = self.db.transaction(&[
            ("DELETE FROM users WHERE name = ?", vals![name]),
            ("DELETE FROM tokens WHERE owner = ?", vals![name]),
        ])?[0];
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
        let n = self.db.execute(
            "UPDATE users SET hash = ? WHERE name = ?",
            vals![hash, name],
        )?;
        if n == 0 {
            self.changed();
            return Err(AuthError::NotFound(format!("user {name}")));
        }
        // Refresh tokens issued on the old password stop working (and any issued through them).
        let r = self.delete_tokens_where(
            "SELECT id FROM tokens WHERE owner = ?1 AND kind = ?2 AND parent IS NULL",
            vals![name, REFRESH],
        );
        self.changed();
        r
    }

    /// Lists users (administrators only).
    pub fn list_users(&self, actor: &Identity) -> Result<Vec<UserInfo>, AuthError> {
        self.require_site_admin(actor, "listing users")?;
        self.db
            .query("SELECT name, admin FROM users ORDER BY name", vals![])?
            .iter()
            .map(|r| {
                Ok(UserInfo {
                    name: r.text(0)?,
                    admin: r.int(1)? != 0,
                })
            })
            .collect()
    }

    // ----- organisations and teams -----

    /// Creates an organisation (administrators only).
    pub fn create_org(&self, actor: &Identity, name: &str) -> Result<(), AuthError> {
        self.require_site_admin(actor, "creating an organisation")?;
        check_name("organisation name", name)?;
        if self.user_row(name)?.is_some() {
            return Err(AuthError::Conflict(format!("user {name}")));
        }
        let n = self.db.execute(
            "INSERT OR IGNORE INTO orgs(name, created) VALUES (?, ?)",
            vals![name, now() as i64],
        )?;
        if n == 0 {
            return Err(AuthError::Conflict(format!("organisation {name}")));
        }
        Ok(())
    }

    /// Creates a team in `org` (its administrators).
    pub fn create_team(&self, actor: &Identity, org: &str, team: &str) -> Result<(), AuthError> {
        check_name("team name", team)?;
        self.require_org_admin(actor, org)?;
        let n = self.db.execute(
            "INSERT OR IGNORE INTO teams(org, name) VALUES (?, ?)",
            vals![org, team],
        )?;
        if n == 0 {
            return Err(AuthError::Conflict(format!("team {org}/{team}")));
        }
        Ok(())
    }

    fn team_exists(&self, org: &str, team: &str) -> Result<bool, AuthError> {
        Ok(self
            .db
            .query_opt(
                "SELECT 1 FROM teams WHERE org = ? AND name = ?",
                vals![org, team],
            )?
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
        self.db.execute(
            "INSERT OR IGNORE INTO members(org, team, user) VALUES (?, ?, ?)",
            vals![org, team, user],
        )?;
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
        let n = self.db.execute(
            "DELETE FROM members WHERE org = ? AND team = ? AND user = ?",
            vals![org, team, user],
        )?;
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
            .execute("INSERT INTO grants(org, team, pattern, actions) VALUES (?, ?, ?, ?)
                 ON CONFLICT(org, team, pattern) DO UPDATE SET actions = actions | excluded.actions", vals![org, team, pattern, actions.bits() as i64])?;
        self.changed();
        Ok(())
    }

    // ----- repositories -----

    /// Records a repository (created on first push; private).
    pub fn note_repo(&self, repo: &str) -> Result<(), AuthError> {
        self.db.execute(
            "INSERT OR IGNORE INTO repos(name, public, created) VALUES (?, 0, ?)",
            vals![repo, now() as i64],
        )?;
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
        self.db.execute(
            "INSERT INTO repos(name, public, created) VALUES (?, ?, ?)
                 ON CONFLICT(name) DO UPDATE SET public = excluded.public",
            vals![repo, public as i64, now() as i64],
        )?;
        Ok(())
    }

    /// Whether `repo` is public.
    pub fn is_public(&self, repo: &str) -> Result<bool, AuthError> {
        Ok(self
            .db
            .query_opt("SELECT public FROM repos WHERE name = ?", vals![repo])?
            .map(|r| r.int(0))
            .transpose()?
            .is_some_and(|p| p != 0))
    }

    fn grants_of(&self, id: &Identity) -> Result<Vec<(String, Actions)>, AuthError> {
        match &id.kind {
            IdentityKind::Anonymous => Ok(Vec::new()),
            IdentityKind::User => self
                .db
                .query(
                    "SELECT g.pattern, g.actions FROM grants g
                         JOIN members m ON g.org = m.org AND g.team = m.team WHERE m.user = ?",
                    vals![&id.name],
                )?
                .iter()
                .map(|r| Ok((r.text(0)?, Actions::from_bits(r.int(1)?))))
                .collect(),
            IdentityKind::Robot { .. } => {
                let scopes: Option<String> = self
                    .db
                    .query_opt("SELECT scopes FROM robots WHERE name = ?", vals![&id.name])?
                    .map(|r| r.text(0))
                    .transpose()?;
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
            self.db
                .query("SELECT name FROM repos WHERE public != 0", vals![])?
                .iter()
                .map(|r| r.text(0))
                .collect::<Result<_, _>>()?
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
        let now_i = now_ms();
        let user_key = format!("user:{user}");
        let addr_key = format!("addr:{remote}");
        if let Err(retry) = lockout(&self.db, &[&user_key, &addr_key], now_i)? {
            self.audit(user, "login", user, "rate-limited", remote);
            return Err(LoginError::Limited(retry));
        }
        let key = self.cache_key(user, secret);
        let generation = self.generation()?;
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
                self.user_limiter.success(&self.db, &user_key)?;
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
                    if let Some(d) = limiter.failure(&self.db, k, now_i)? {
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
            .query_opt(
                "SELECT kind, owner, hash, scopes, expires_at, parent FROM tokens WHERE id = ?",
                vals![id],
            )?
            .map(|r| {
                Ok(TokenRow {
                    kind: r.text(0)?,
                    owner: r.text(1)?,
                    hash: r.blob(2)?,
                    scopes: r.opt_text(3)?,
                    expires_at: r.opt_int(4)?,
                    parent: r.opt_text(5)?,
                })
            })
            .transpose()
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
    fn delete_tokens_where(&self, select: &str, params: &[db::Value]) -> Result<(), AuthError> {
        self.db.execute(
            &format!(
                "WITH RECURSIVE doomed(id) AS ({select}
                       UNION SELECT t.id FROM tokens t JOIN doomed d ON t.parent = d.id)
                     DELETE FROM tokens WHERE id IN doomed"
            ),
            params,
        )?;
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
                .query_opt("SELECT id FROM robots WHERE name = ?", vals![name])?
                .map(|r| r.int(0))
                .transpose()?;
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
        let now_i = now_ms();
        if let Err(retry) = lockout(&self.db, &[&addr_key], now_i)? {
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
                match self.addr_limiter.failure(&self.db, &addr_key, now_i)? {
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

    /// The identity of a user (or robot) by name, as a password login of it gives: for a
    /// verified TLS client certificate, whose subject names it. `None` when there is no such
    /// account.
    pub fn identity_by_name(&self, name: &str) -> Result<Option<Identity>, AuthError> {
        self.subject(name, None)
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
        self.db.execute(
            "INSERT INTO tokens(id, kind, owner, name, hash, scopes, parent, expires_at, created)
             VALUES (?, ?, ?, 'refresh', ?, ?, ?, ?, ?)",
            vals![
                &tid,
                REFRESH,
                &id.name,
                sha256(&[secret.as_bytes()]).to_vec(),
                scopes,
                parent,
                expires_at,
                t as i64
            ],
        )?;
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
        self.db.execute(
            "INSERT INTO tokens(id, kind, owner, name, hash, scopes, parent, expires_at, created)
             VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?)",
            vals![
                &id,
                kind,
                owner,
                name,
                sha256(&[secret.as_bytes()]).to_vec(),
                scopes_json(scopes),
                expires_at as i64,
                now() as i64
            ],
        )?;
        Ok(CreatedToken {
            token: format!("{kind}.{id}.{secret}"),
            id,
            name: owner.to_owned(),
        })
    }
}

pub(crate) mod db;
mod tokens;

#[cfg(test)]
mod tests;
