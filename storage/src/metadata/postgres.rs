//! The PostgreSQL metadata store, for several registry replicas sharing one database.
//!
//! # Client
//!
//! `tokio-postgres` with a `deadpool-postgres` pool, not `sqlx`:
//!
//! - the store is async already ([`MetadataStore`]): `tokio-postgres` is a native async client
//!   on the runtime the registry runs, so no call takes a blocking thread (SQLite's do);
//! - the SQL is hand-written and small (text keys, integer times): `sqlx`'s compile-time checked
//!   queries need a database or an offline cache at build time, and its runtime-only API is no
//!   better than `tokio-postgres`'s; its migrator would be a second migration scheme next to
//!   SQLite's, while the versioned migrations here are twenty lines shared in shape with it;
//! - far fewer dependencies to build (`tokio-postgres`, `postgres-protocol`, `deadpool`), which
//!   matters on two cores;
//! - `deadpool-postgres` gives what a replica needs of a pool: a bound (`pool_size`), timeouts to
//!   wait for, create and recycle a connection, and a per-connection prepared statement cache.
//!
//! # Semantics
//!
//! Every write runs in one `SERIALIZABLE` transaction and is run again (up to [`RETRIES`] times)
//! when PostgreSQL reports a serialization failure or a deadlock: concurrent writers behave as
//! SQLite's single writer does, e.g. `manifest_put` checks its references and inserts as one,
//! and `upload_advance` is a compare-and-set on the offset. Text keys are compared and ordered
//! byte-wise (`COLLATE "C"`), as SQLite's `BINARY` does, whatever the database's locale.
//!
//! Migrations are versioned in `schema_migrations` (component `metadata`); opening takes a
//! transaction-scoped advisory lock first, so replicas opening one database at once migrate it
//! once.
//!
//! # Coordination between replicas
//!
//! The commit lock garbage collection needs (`content::gc`) is the session-level advisory lock
//! [`COMMIT_LOCK`]: a commit holds it shared, a sweep exclusive, each on a connection of a
//! second pool (`locks`), so a commit waiting for the lock never holds a connection the
//! metadata writes it does under the lock need. A replica that dies drops its connections, and
//! PostgreSQL releases its locks with them. Periodic tasks are claimed in the `maintenance`
//! table ([`MetadataStore::claim_task`]), so N replicas run each once per period between them.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Client, Manager, ManagerConfig, Pool, RecyclingMethod, Transaction};
use hoist_oci::{Algorithm, Digest, DigesterState};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{IsolationLevel, NoTls, Row};

use super::{
    LockGuard, ManifestRecord, MetaError, MetadataStore, Page, RefKind, TagEvent, TagRow,
    UploadSession, now,
};

/// How often a write that lost a serialization conflict is run again.
pub const RETRIES: u32 = 20;
/// How long a caller waits for a pooled connection, and for a new one to be made.
const POOL_TIMEOUT: Duration = Duration::from_secs(10);

/// The advisory lock every hoist migration takes (`pg_advisory_xact_lock`).
pub const MIGRATION_LOCK: i64 = 0x686f_6973_745f_6d67; // "hoist_mg"

/// The store-wide commit lock (`pg_advisory_lock_shared` for commits, `pg_advisory_lock` for a
/// garbage collection sweep).
pub const COMMIT_LOCK: i64 = 0x686f_6973_745f_636c; // "hoist_cl"

/// The component name of these migrations in `schema_migrations`.
const COMPONENT: &str = "metadata";

/// Schema migrations, applied in order; `schema_migrations` records which ran. The same tables
/// as SQLite's, in PostgreSQL's types.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE repositories (
    name        TEXT COLLATE "C" PRIMARY KEY,
    created_at  BIGINT NOT NULL
);
CREATE TABLE blobs (
    digest      TEXT COLLATE "C" PRIMARY KEY,
    size        BIGINT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE TABLE repo_blobs (
    repo        TEXT COLLATE "C" NOT NULL REFERENCES repositories(name),
    digest      TEXT COLLATE "C" NOT NULL REFERENCES blobs(digest),
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (repo, digest)
);
CREATE INDEX repo_blobs_digest ON repo_blobs(digest);
CREATE TABLE manifests (
    repo          TEXT COLLATE "C" NOT NULL REFERENCES repositories(name),
    digest        TEXT COLLATE "C" NOT NULL REFERENCES blobs(digest),
    media_type    TEXT NOT NULL,
    size          BIGINT NOT NULL,
    artifact_type TEXT,
    subject       TEXT COLLATE "C",
    annotations   TEXT,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (repo, digest)
);
CREATE INDEX manifests_subject ON manifests(repo, subject);
CREATE TABLE manifest_refs (
    repo        TEXT COLLATE "C" NOT NULL,
    manifest    TEXT COLLATE "C" NOT NULL,
    child       TEXT COLLATE "C" NOT NULL,
    kind        TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (repo, manifest, child, kind),
    FOREIGN KEY (repo, manifest) REFERENCES manifests(repo, digest) ON DELETE CASCADE
);
CREATE TABLE tags (
    repo        TEXT COLLATE "C" NOT NULL REFERENCES repositories(name),
    name        TEXT COLLATE "C" NOT NULL,
    digest      TEXT COLLATE "C" NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (repo, name),
    FOREIGN KEY (repo, digest) REFERENCES manifests(repo, digest)
);
CREATE INDEX tags_digest ON tags(repo, digest);
CREATE TABLE tag_history (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    repo        TEXT COLLATE "C" NOT NULL,
    name        TEXT COLLATE "C" NOT NULL,
    digest      TEXT COLLATE "C",
    at          BIGINT NOT NULL
);
CREATE INDEX tag_history_tag ON tag_history(repo, name);
CREATE TABLE uploads (
    id          TEXT COLLATE "C" PRIMARY KEY,
    repo        TEXT COLLATE "C" NOT NULL,
    byte_offset BIGINT NOT NULL,
    hash_alg    TEXT NOT NULL,
    hash_state  BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
"#,
    // Garbage collection asks "does any manifest reference this link / own these bytes" for every
    // candidate; without these it scans a table per row.
    r#"
CREATE INDEX manifest_refs_child ON manifest_refs(repo, child, kind);
CREATE INDEX manifests_digest ON manifests(digest);
"#,
    // Periodic tasks (upload purge, garbage collection) and when a process last claimed each, so
    // processes sharing the store run each once per period between them.
    r#"
CREATE TABLE maintenance (
    task      TEXT COLLATE "C" PRIMARY KEY,
    last_run  BIGINT NOT NULL
);
"#,
];

impl From<deadpool_postgres::PoolError> for MetaError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => MetaError::Postgres(e),
            other => MetaError::Pool(other.to_string()),
        }
    }
}

/// A pool of at most `size` connections to `url` (a `postgres://` URL or a `key=value`
/// connection string), with [`POOL_TIMEOUT`] to wait for, make and recycle a connection; over
/// TLS verified with `tls` when given (see [`PgMetadata::connect_tls`]).
pub(crate) fn pool(
    url: &str,
    size: usize,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<Pool, MetaError> {
    let mut config: tokio_postgres::Config = url.parse()?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(POOL_TIMEOUT);
    }
    let recycling = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = match tls {
        Some(tls) => {
            // TLS was asked for: `prefer` (the default) would fall back to plain text.
            if config.get_ssl_mode() == tokio_postgres::config::SslMode::Prefer {
                config.ssl_mode(tokio_postgres::config::SslMode::Require);
            }
            let connect = tokio_postgres_rustls::MakeRustlsConnect::new((**tls).clone());
            Manager::from_config(config, connect, recycling)
        }
        None => Manager::from_config(config, NoTls, recycling),
    };
    Pool::builder(manager)
        .max_size(size.max(1))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(POOL_TIMEOUT))
        .create_timeout(Some(POOL_TIMEOUT))
        .recycle_timeout(Some(POOL_TIMEOUT))
        .build()
        .map_err(|e| MetaError::Pool(e.to_string()))
}

/// Applies the `migrations` of `component` that `schema_migrations` does not list, in one
/// transaction that holds [`MIGRATION_LOCK`]: a replica opening at the same time waits, then
/// sees them applied.
pub(crate) async fn migrate(
    client: &mut Client,
    component: &str,
    migrations: &[&str],
) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             component  TEXT NOT NULL,
             version    BIGINT NOT NULL,
             applied_at BIGINT NOT NULL,
             PRIMARY KEY (component, version))",
    )
    .await?;
    let done: Vec<i64> = tx
        .query(
            "SELECT version FROM schema_migrations WHERE component = $1",
            &[&component],
        )
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    for (i, sql) in migrations.iter().enumerate() {
        let version = i as i64 + 1;
        if done.contains(&version) {
            continue;
        }
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (component, version, applied_at) VALUES ($1, $2, $3)",
            &[&component, &version, &now()],
        )
        .await?;
    }
    tx.commit().await
}

/// Whether a transaction failed only because another one won: run it again.
fn retryable(e: &MetaError) -> bool {
    match e {
        MetaError::Postgres(e) => e.code().is_some_and(|c| {
            *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
        }),
        _ => false,
    }
}

/// A short pause before attempt `n` again, growing, with jitter so the losers spread out.
fn backoff(n: u32) -> Duration {
    let base = 1u64 << n.min(6);
    let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0]) % base.max(1);
    Duration::from_millis(base + jitter)
}

/// Runs `$body` (an expression using the transaction `$tx`, returning
/// `Result<_, MetaError>`) in a `SERIALIZABLE` transaction, again when it loses a conflict.
macro_rules! write_tx {
    ($self:expr, |$tx:ident| $body:expr) => {{
        let mut attempt: u32 = 0;
        loop {
            let mut client = $self.pool.get().await?;
            let $tx = client
                .build_transaction()
                .isolation_level(IsolationLevel::Serializable)
                .start()
                .await?;
            let out: Result<_, MetaError> = async { $body }.await;
            let out = match out {
                Ok(v) => $tx.commit().await.map(|()| v).map_err(MetaError::from),
                Err(e) => Err(e),
            };
            match out {
                Err(e) if retryable(&e) && attempt < RETRIES => {
                    attempt += 1;
                    tokio::time::sleep(backoff(attempt)).await;
                }
                other => break other,
            }
        }
    }};
}

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

async fn exec(tx: &Transaction<'_>, sql: &str, params: Params<'_>) -> Result<u64, MetaError> {
    let st = tx.prepare_cached(sql).await?;
    Ok(tx.execute(&st, params).await?)
}

async fn tx_query(
    tx: &Transaction<'_>,
    sql: &str,
    params: Params<'_>,
) -> Result<Vec<Row>, MetaError> {
    let st = tx.prepare_cached(sql).await?;
    Ok(tx.query(&st, params).await?)
}

async fn query(c: &Client, sql: &str, params: Params<'_>) -> Result<Vec<Row>, MetaError> {
    let st = c.prepare_cached(sql).await?;
    Ok(c.query(&st, params).await?)
}

async fn query_opt(c: &Client, sql: &str, params: Params<'_>) -> Result<Option<Row>, MetaError> {
    let st = c.prepare_cached(sql).await?;
    Ok(c.query_opt(&st, params).await?)
}

fn digest(s: &str) -> Result<Digest, MetaError> {
    Digest::parse(s).map_err(|e| MetaError::Corrupt(format!("digest {s:?}: {e}")))
}

fn opt_digest(s: Option<&str>) -> Result<Option<Digest>, MetaError> {
    s.map(digest).transpose()
}

fn digest_col(r: &Row, i: usize) -> Result<Digest, MetaError> {
    digest(r.try_get::<_, &str>(i)?)
}

fn size(v: i64) -> u64 {
    v.max(0) as u64
}

const MANIFEST_COLS: &str =
    "m.digest, m.media_type, m.size, m.artifact_type, m.subject, m.annotations, m.created_at";

fn manifest_row(r: &Row) -> Result<ManifestRecord, MetaError> {
    Ok(ManifestRecord {
        digest: digest_col(r, 0)?,
        media_type: r.try_get(1)?,
        size: size(r.try_get(2)?),
        artifact_type: r.try_get(3)?,
        subject: opt_digest(r.try_get::<_, Option<&str>>(4)?)?,
        annotations: r.try_get(5)?,
        created_at: r.try_get(6)?,
    })
}

fn alg_from(s: &str) -> Result<Algorithm, MetaError> {
    match s {
        "sha256" => Ok(Algorithm::Sha256),
        "sha512" => Ok(Algorithm::Sha512),
        other => Err(MetaError::Corrupt(format!(
            "unknown hash algorithm {other}"
        ))),
    }
}

fn strings(rows: &[Row]) -> Result<Vec<String>, MetaError> {
    rows.iter()
        .map(|r| Ok(r.try_get::<_, String>(0)?))
        .collect()
}

fn digests(rows: &[Row]) -> Result<Vec<Digest>, MetaError> {
    rows.iter().map(|r| digest_col(r, 0)).collect()
}

async fn ensure_repo(tx: &Transaction<'_>, repo: &str) -> Result<(), MetaError> {
    exec(
        tx,
        "INSERT INTO repositories (name, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &[&repo, &now()],
    )
    .await?;
    Ok(())
}

/// Records a blob, or refreshes the time garbage collection's grace period reads from.
async fn touch_blob(tx: &Transaction<'_>, digest: &str, size: u64) -> Result<(), MetaError> {
    exec(
        tx,
        "INSERT INTO blobs (digest, size, created_at) VALUES ($1, $2, $3)
         ON CONFLICT (digest) DO UPDATE
         SET created_at = GREATEST(blobs.created_at, excluded.created_at)",
        &[&digest, &(size as i64), &now()],
    )
    .await?;
    Ok(())
}

/// Links a blob into a repository, or refreshes the link's time: a write that makes content
/// reachable again restarts its grace period, whatever an earlier link's age.
async fn touch_link(tx: &Transaction<'_>, repo: &str, digest: &str) -> Result<(), MetaError> {
    exec(
        tx,
        "INSERT INTO repo_blobs (repo, digest, created_at) VALUES ($1, $2, $3)
         ON CONFLICT (repo, digest) DO UPDATE
         SET created_at = GREATEST(repo_blobs.created_at, excluded.created_at)",
        &[&repo, &digest, &now()],
    )
    .await?;
    Ok(())
}

async fn record_tag(
    tx: &Transaction<'_>,
    repo: &str,
    tag: &str,
    digest: Option<&str>,
) -> Result<(), MetaError> {
    exec(
        tx,
        "INSERT INTO tag_history (repo, name, digest, at) VALUES ($1, $2, $3, $4)",
        &[&repo, &tag, &digest, &now()],
    )
    .await?;
    Ok(())
}

/// Runs a paged, sorted listing: `sql` selects one text column, has `$1` for the lower bound
/// (exclusive, "" for none) and `$2` for the limit (NULL: none); `extra` binds more from `$3`.
async fn page(
    c: &Client,
    sql: &str,
    last: Option<&str>,
    n: Option<usize>,
    extra: &[&(dyn ToSql + Sync)],
) -> Result<Page, MetaError> {
    let limit: Option<i64> = n.map(|n| n as i64 + 1);
    let last = last.unwrap_or("");
    let mut args: Vec<&(dyn ToSql + Sync)> = vec![&last, &limit];
    args.extend_from_slice(extra);
    let mut items = strings(&query(c, sql, &args).await?)?;
    let more = n.is_some_and(|n| items.len() > n);
    if let Some(n) = n {
        items.truncate(n);
    }
    Ok(Page { items, more })
}

/// PostgreSQL behind [`MetadataStore`]. Cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct PgMetadata {
    pool: Pool,
    /// Connections that hold [`COMMIT_LOCK`] while a commit or a sweep runs.
    locks: Pool,
}

/// A connection holding [`COMMIT_LOCK`]. Dropping it unlocks on the connection (in a task) and
/// returns it to the pool; a connection whose unlock fails, or that is dropped outside a
/// runtime, is closed instead, which releases the lock too.
struct HeldLock(Option<deadpool_postgres::Object>);

impl Drop for HeldLock {
    fn drop(&mut self) {
        let Some(client) = self.0.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    if let Err(e) = client.batch_execute("SELECT pg_advisory_unlock_all()").await {
                        tracing::warn!(error = %e, "releasing the commit lock; closing its connection");
                        drop(deadpool_postgres::Object::take(client));
                    }
                });
            }
            Err(_) => drop(deadpool_postgres::Object::take(client)),
        }
    }
}

impl std::fmt::Debug for PgMetadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgMetadata")
            .field("pool", &self.pool.status())
            .finish()
    }
}

impl PgMetadata {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db`, or a
    /// `key=value` connection string) with a pool of at most `pool_size` connections, and
    /// migrates its schema. Plain TCP or a Unix socket (`host=/run/postgresql`): no TLS.
    pub async fn connect(url: &str, pool_size: usize) -> Result<Self, MetaError> {
        Self::connect_tls(url, pool_size, None).await
    }

    /// [`PgMetadata::connect`], over TLS when `tls` is given: the server's certificate is
    /// verified with its roots and must name the URL's host, and the connection is never plain
    /// (`sslmode=prefer`, the default, becomes `require`; an explicit `disable` stays).
    pub async fn connect_tls(
        url: &str,
        pool_size: usize,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Self, MetaError> {
        let pool = pool(url, pool_size, tls.as_ref())?;
        let mut client = pool.get().await?;
        migrate(&mut client, COMPONENT, MIGRATIONS).await?;
        drop(client);
        let locks = self::pool(url, pool_size, tls.as_ref())?;
        Ok(PgMetadata { pool, locks })
    }

    /// How many migrations the schema has (what `schema_migrations` lists once migrated).
    pub fn migrations() -> usize {
        MIGRATIONS.len()
    }

    async fn client(&self) -> Result<Client, MetaError> {
        Ok(self.pool.get().await?)
    }
}

#[async_trait]
impl MetadataStore for PgMetadata {
    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, MetaError> {
        let c = self.client().await?;
        let row = query_opt(
            &c,
            "SELECT size FROM blobs WHERE digest = $1",
            &[&digest.as_str()],
        )
        .await?;
        row.map(|r| Ok(size(r.try_get(0)?))).transpose()
    }

    async fn repo_blob_size(&self, repo: &str, digest: &Digest) -> Result<Option<u64>, MetaError> {
        let c = self.client().await?;
        let row = query_opt(
            &c,
            "SELECT b.size FROM repo_blobs l JOIN blobs b ON b.digest = l.digest
             WHERE l.repo = $1 AND l.digest = $2",
            &[&repo, &digest.as_str()],
        )
        .await?;
        row.map(|r| Ok(size(r.try_get(0)?))).transpose()
    }

    async fn link_blob(&self, repo: &str, digest: &Digest, size: u64) -> Result<(), MetaError> {
        let d = digest.as_str();
        write_tx!(self, |tx| {
            ensure_repo(&tx, repo).await?;
            touch_blob(&tx, d, size).await?;
            touch_link(&tx, repo, d).await?;
            Ok(())
        })
    }

    async fn unlink_blob(&self, repo: &str, digest: &Digest) -> Result<bool, MetaError> {
        let d = digest.as_str();
        write_tx!(self, |tx| {
            Ok(exec(
                &tx,
                "DELETE FROM repo_blobs WHERE repo = $1 AND digest = $2",
                &[&repo, &d],
            )
            .await?
                > 0)
        })
    }

    async fn upload_create(&self, s: &UploadSession) -> Result<(), MetaError> {
        let offset = s.offset as i64;
        write_tx!(self, |tx| {
            exec(
                &tx,
                "INSERT INTO uploads
                 (id, repo, byte_offset, hash_alg, hash_state, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &s.id,
                    &s.repo,
                    &offset,
                    &s.hash.algorithm.as_str(),
                    &s.hash.state,
                    &s.created_at,
                    &s.updated_at,
                ],
            )
            .await?;
            Ok(())
        })
    }

    async fn upload_get(&self, id: &str) -> Result<Option<UploadSession>, MetaError> {
        let c = self.client().await?;
        let row = query_opt(
            &c,
            "SELECT id, repo, byte_offset, hash_alg, hash_state, created_at, updated_at
             FROM uploads WHERE id = $1",
            &[&id],
        )
        .await?;
        row.map(|r| {
            let offset = size(r.try_get(2)?);
            Ok(UploadSession {
                id: r.try_get(0)?,
                repo: r.try_get(1)?,
                offset,
                hash: DigesterState {
                    algorithm: alg_from(r.try_get(3)?)?,
                    len: offset,
                    state: r.try_get(4)?,
                },
                created_at: r.try_get(5)?,
                updated_at: r.try_get(6)?,
            })
        })
        .transpose()
    }

    async fn upload_advance(
        &self,
        id: &str,
        from_offset: u64,
        offset: u64,
        hash: &DigesterState,
    ) -> Result<bool, MetaError> {
        let (from, to) = (from_offset as i64, offset as i64);
        write_tx!(self, |tx| {
            Ok(exec(
                &tx,
                "UPDATE uploads SET byte_offset = $1, hash_state = $2, updated_at = $3
                 WHERE id = $4 AND byte_offset = $5",
                &[&to, &hash.state, &now(), &id, &from],
            )
            .await?
                == 1)
        })
    }

    async fn upload_delete(&self, id: &str) -> Result<bool, MetaError> {
        write_tx!(self, |tx| {
            Ok(exec(&tx, "DELETE FROM uploads WHERE id = $1", &[&id]).await? > 0)
        })
    }

    async fn claim_task(&self, task: &str, every: u64, now: i64) -> Result<bool, MetaError> {
        let due = now.saturating_sub(every as i64);
        write_tx!(self, |tx| {
            Ok(exec(
                &tx,
                "INSERT INTO maintenance (task, last_run) VALUES ($1, $2)
                 ON CONFLICT (task) DO UPDATE SET last_run = excluded.last_run
                 WHERE maintenance.last_run <= $3",
                &[&task, &now, &due],
            )
            .await?
                > 0)
        })
    }

    async fn commit_lock(&self, exclusive: bool) -> Result<Option<LockGuard>, MetaError> {
        let client = self.locks.get().await?;
        let sql = if exclusive {
            "SELECT pg_advisory_lock($1)"
        } else {
            "SELECT pg_advisory_lock_shared($1)"
        };
        let held = HeldLock(Some(client));
        let c = held.0.as_ref().expect("just set");
        c.execute(sql, &[&COMMIT_LOCK]).await?;
        Ok(Some(LockGuard::new(held)))
    }

    async fn upload_ids(&self) -> Result<Vec<String>, MetaError> {
        let c = self.client().await?;
        strings(&query(&c, "SELECT id FROM uploads ORDER BY id", &[]).await?)
    }

    async fn stale_uploads(&self, before: i64) -> Result<Vec<String>, MetaError> {
        let c = self.client().await?;
        strings(
            &query(
                &c,
                "SELECT id FROM uploads WHERE updated_at < $1 ORDER BY id",
                &[&before],
            )
            .await?,
        )
    }

    async fn upload_finish(&self, id: &str, digest: &Digest, size: u64) -> Result<(), MetaError> {
        let d = digest.as_str();
        write_tx!(self, |tx| {
            let rows = tx_query(
                &tx,
                "DELETE FROM uploads WHERE id = $1 RETURNING repo",
                &[&id],
            )
            .await?;
            let repo: String = match rows.first() {
                Some(r) => r.try_get(0)?,
                None => {
                    return Err(MetaError::Corrupt(format!(
                        "upload {id} vanished before it finished"
                    )));
                }
            };
            ensure_repo(&tx, &repo).await?;
            touch_blob(&tx, d, size).await?;
            touch_link(&tx, &repo, d).await?;
            Ok(())
        })
    }

    async fn manifest_put(
        &self,
        repo: &str,
        rec: &ManifestRecord,
        refs: &[(Digest, RefKind)],
        tag: Option<&str>,
    ) -> Result<(), MetaError> {
        let d = rec.digest.as_str();
        let subject = rec.subject.as_ref().map(Digest::as_str);
        let size = rec.size as i64;
        write_tx!(self, |tx| {
            let mut missing = Vec::new();
            for (child, kind) in refs {
                let sql = match kind {
                    RefKind::Blob => "SELECT 1 FROM repo_blobs WHERE repo = $1 AND digest = $2",
                    RefKind::Manifest => "SELECT 1 FROM manifests WHERE repo = $1 AND digest = $2",
                };
                if tx_query(&tx, sql, &[&repo, &child.as_str()])
                    .await?
                    .is_empty()
                {
                    missing.push(child.clone());
                }
            }
            if !missing.is_empty() {
                return Err(MetaError::MissingReferences(missing));
            }
            ensure_repo(&tx, repo).await?;
            touch_blob(&tx, d, rec.size).await?;
            exec(
                &tx,
                "INSERT INTO manifests
                 (repo, digest, media_type, size, artifact_type, subject, annotations, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
                &[
                    &repo,
                    &d,
                    &rec.media_type,
                    &size,
                    &rec.artifact_type,
                    &subject,
                    &rec.annotations,
                    &rec.created_at,
                ],
            )
            .await?;
            for (child, kind) in refs {
                if *kind == RefKind::Blob {
                    // The manifest makes the blob reachable: its link's grace restarts too, so a
                    // manifest deleted right after still leaves the client its grace period.
                    touch_link(&tx, repo, child.as_str()).await?;
                }
                exec(
                    &tx,
                    "INSERT INTO manifest_refs (repo, manifest, child, kind)
                     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    &[&repo, &d, &child.as_str(), &kind.as_str()],
                )
                .await?;
            }
            if let Some(tag) = tag {
                let old = tx_query(
                    &tx,
                    "SELECT digest FROM tags WHERE repo = $1 AND name = $2",
                    &[&repo, &tag],
                )
                .await?;
                let old: Option<&str> = old.first().map(|r| r.try_get(0)).transpose()?;
                if old != Some(d) {
                    exec(
                        &tx,
                        "INSERT INTO tags (repo, name, digest, updated_at) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (repo, name)
                         DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at",
                        &[&repo, &tag, &d, &now()],
                    )
                    .await?;
                    record_tag(&tx, repo, tag, Some(d)).await?;
                }
            }
            Ok(())
        })
    }

    async fn manifest_by_digest(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<Option<ManifestRecord>, MetaError> {
        let c = self.client().await?;
        query_opt(
            &c,
            &format!("SELECT {MANIFEST_COLS} FROM manifests m WHERE m.repo = $1 AND m.digest = $2"),
            &[&repo, &digest.as_str()],
        )
        .await?
        .as_ref()
        .map(manifest_row)
        .transpose()
    }

    async fn manifest_by_tag(
        &self,
        repo: &str,
        tag: &str,
    ) -> Result<Option<ManifestRecord>, MetaError> {
        let c = self.client().await?;
        query_opt(
            &c,
            &format!(
                "SELECT {MANIFEST_COLS} FROM tags t
                 JOIN manifests m ON m.repo = t.repo AND m.digest = t.digest
                 WHERE t.repo = $1 AND t.name = $2"
            ),
            &[&repo, &tag],
        )
        .await?
        .as_ref()
        .map(manifest_row)
        .transpose()
    }

    async fn manifest_delete(&self, repo: &str, digest: &Digest) -> Result<bool, MetaError> {
        let d = digest.as_str();
        write_tx!(self, |tx| {
            let tags = strings(
                &tx_query(
                    &tx,
                    "SELECT name FROM tags WHERE repo = $1 AND digest = $2 ORDER BY name",
                    &[&repo, &d],
                )
                .await?,
            )?;
            for t in &tags {
                record_tag(&tx, repo, t, None).await?;
            }
            exec(
                &tx,
                "DELETE FROM tags WHERE repo = $1 AND digest = $2",
                &[&repo, &d],
            )
            .await?;
            Ok(exec(
                &tx,
                "DELETE FROM manifests WHERE repo = $1 AND digest = $2",
                &[&repo, &d],
            )
            .await?
                > 0)
        })
    }

    async fn tag_delete(&self, repo: &str, tag: &str) -> Result<bool, MetaError> {
        write_tx!(self, |tx| {
            let gone = exec(
                &tx,
                "DELETE FROM tags WHERE repo = $1 AND name = $2",
                &[&repo, &tag],
            )
            .await?
                > 0;
            if gone {
                record_tag(&tx, repo, tag, None).await?;
            }
            Ok(gone)
        })
    }

    async fn tags(
        &self,
        repo: &str,
        n: Option<usize>,
        last: Option<&str>,
    ) -> Result<Option<Page>, MetaError> {
        let c = self.client().await?;
        let exists = query_opt(&c, "SELECT 1 FROM repositories WHERE name = $1", &[&repo])
            .await?
            .is_some();
        if !exists {
            return Ok(None);
        }
        Ok(Some(
            page(
                &c,
                "SELECT name FROM tags WHERE name > $1 AND repo = $3 ORDER BY name LIMIT $2",
                last,
                n,
                &[&repo],
            )
            .await?,
        ))
    }

    async fn tag_history(&self, repo: &str, tag: &str) -> Result<Vec<TagEvent>, MetaError> {
        let c = self.client().await?;
        query(
            &c,
            "SELECT digest, at FROM tag_history WHERE repo = $1 AND name = $2 ORDER BY id",
            &[&repo, &tag],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(TagEvent {
                digest: opt_digest(r.try_get::<_, Option<&str>>(0)?)?,
                at: r.try_get(1)?,
            })
        })
        .collect()
    }

    async fn repositories(&self, n: Option<usize>, last: Option<&str>) -> Result<Page, MetaError> {
        let c = self.client().await?;
        page(
            &c,
            "SELECT name FROM repositories WHERE name > $1 ORDER BY name LIMIT $2",
            last,
            n,
            &[],
        )
        .await
    }

    async fn repo_exists(&self, repo: &str) -> Result<bool, MetaError> {
        let c = self.client().await?;
        Ok(
            query_opt(&c, "SELECT 1 FROM repositories WHERE name = $1", &[&repo])
                .await?
                .is_some(),
        )
    }

    async fn referrers(
        &self,
        repo: &str,
        subject: &Digest,
    ) -> Result<Vec<ManifestRecord>, MetaError> {
        let c = self.client().await?;
        query(
            &c,
            &format!(
                "SELECT {MANIFEST_COLS} FROM manifests m
                 WHERE m.repo = $1 AND m.subject = $2 ORDER BY m.digest"
            ),
            &[&repo, &subject.as_str()],
        )
        .await?
        .iter()
        .map(manifest_row)
        .collect()
    }

    async fn unlink_unreferenced(&self, before: i64, limit: usize) -> Result<u64, MetaError> {
        let limit = limit as i64;
        write_tx!(self, |tx| {
            // One statement: the age and the references are checked as the rows go, so a link
            // refreshed or referenced since any earlier look is kept.
            exec(
                &tx,
                "DELETE FROM repo_blobs WHERE (repo, digest) IN (
                     SELECT l.repo, l.digest FROM repo_blobs l
                     WHERE l.created_at < $1 AND NOT EXISTS (
                         SELECT 1 FROM manifest_refs r
                         WHERE r.repo = l.repo AND r.child = l.digest AND r.kind = 'blob')
                     LIMIT $2)",
                &[&before, &limit],
            )
            .await
        })
    }

    async fn blob_candidates(
        &self,
        before: i64,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<Digest>, MetaError> {
        let after = after.map(Digest::as_str).unwrap_or_default();
        let c = self.client().await?;
        digests(
            &query(
                &c,
                "SELECT digest FROM blobs b WHERE digest > $1 AND created_at < $2
                 AND NOT EXISTS (SELECT 1 FROM repo_blobs l WHERE l.digest = b.digest)
                 AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.digest = b.digest)
                 ORDER BY digest LIMIT $3",
                &[&after, &before, &(limit as i64)],
            )
            .await?,
        )
    }

    async fn sweep_blobs(
        &self,
        before: i64,
        candidates: &[Digest],
    ) -> Result<Vec<(Digest, u64)>, MetaError> {
        write_tx!(self, |tx| {
            // Each candidate is checked again as it goes: a push, mount or manifest since the
            // mark made it reachable (and refreshed its time).
            let mut doomed = Vec::new();
            for d in candidates {
                let rows = tx_query(
                    &tx,
                    "DELETE FROM blobs WHERE digest = $1 AND created_at < $2
                     AND NOT EXISTS (SELECT 1 FROM repo_blobs l WHERE l.digest = blobs.digest)
                     AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.digest = blobs.digest)
                     RETURNING size",
                    &[&d.as_str(), &before],
                )
                .await?;
                if let Some(r) = rows.first() {
                    doomed.push((d.clone(), size(r.try_get(0)?)));
                }
            }
            Ok(doomed)
        })
    }

    async fn all_blobs(&self) -> Result<Vec<Digest>, MetaError> {
        let c = self.client().await?;
        digests(&query(&c, "SELECT digest FROM blobs ORDER BY digest", &[]).await?)
    }

    async fn all_tags(&self) -> Result<Vec<TagRow>, MetaError> {
        let c = self.client().await?;
        query(
            &c,
            "SELECT repo, name, digest, updated_at FROM tags ORDER BY repo, name",
            &[],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(TagRow {
                repo: r.try_get(0)?,
                tag: r.try_get(1)?,
                digest: digest_col(r, 2)?,
                updated_at: r.try_get(3)?,
            })
        })
        .collect()
    }

    async fn all_manifests(&self) -> Result<Vec<(String, ManifestRecord)>, MetaError> {
        let c = self.client().await?;
        query(
            &c,
            &format!("SELECT {MANIFEST_COLS}, m.repo FROM manifests m ORDER BY m.repo, m.digest"),
            &[],
        )
        .await?
        .iter()
        .map(|r| Ok((r.try_get::<_, String>(7)?, manifest_row(r)?)))
        .collect()
    }

    async fn manifest_parents(&self, repo: &str, child: &Digest) -> Result<Vec<Digest>, MetaError> {
        let c = self.client().await?;
        digests(
            &query(
                &c,
                "SELECT manifest FROM manifest_refs
                 WHERE repo = $1 AND child = $2 AND kind = 'manifest' ORDER BY manifest",
                &[&repo, &child.as_str()],
            )
            .await?,
        )
    }

    async fn manifest_repos(&self, manifest: &Digest) -> Result<Vec<String>, MetaError> {
        let c = self.client().await?;
        strings(
            &query(
                &c,
                "SELECT repo FROM manifests WHERE digest = $1 ORDER BY repo",
                &[&manifest.as_str()],
            )
            .await?,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::testsuite;
    use super::*;
    use hoist_testsupport::postgres::{Database, database};

    async fn fresh() -> (Database, PgMetadata) {
        let db = database();
        let m = PgMetadata::connect(db.url(), 8).await.unwrap();
        (db, m)
    }

    #[tokio::test]
    async fn blobs_links_and_manifests() {
        let (_db, m) = fresh().await;
        testsuite::blobs_links_and_manifests(&m).await;
    }

    #[tokio::test]
    async fn listings_across_repositories() {
        let (_db, m) = fresh().await;
        testsuite::listings_across_repositories(&m).await;
    }

    #[tokio::test]
    async fn tag_pages_and_catalog() {
        let (_db, m) = fresh().await;
        testsuite::tag_pages_and_catalog(&m).await;
    }

    #[tokio::test]
    async fn uploads_survive_reopen_and_advance_atomically() {
        let db = database();
        testsuite::uploads_survive_reopen_and_advance_atomically(async || {
            PgMetadata::connect(db.url(), 2).await.unwrap()
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writers_serialize() {
        let (_db, m) = fresh().await;
        testsuite::concurrent_writers_serialize(m).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn maintenance_claims_once_per_period() {
        let db = database();
        testsuite::maintenance_claims_once_per_period(async || {
            PgMetadata::connect(db.url(), 2).await.unwrap()
        })
        .await;
    }

    /// The commit lock holds across replicas: commits share it, a sweep excludes them and waits
    /// for them, and a dropped guard (or a dead replica's connection) releases it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn the_commit_lock_is_shared_by_commits_and_exclusive_for_a_sweep_across_replicas() {
        let db = database();
        let a = PgMetadata::connect(db.url(), 2).await.unwrap();
        let b = std::sync::Arc::new(PgMetadata::connect(db.url(), 2).await.unwrap());
        let short = Duration::from_millis(300);
        // Two commits on two replicas at once.
        let s1 = a
            .commit_lock(false)
            .await
            .unwrap()
            .expect("postgres has a lock");
        let s2 = tokio::time::timeout(short, b.commit_lock(false))
            .await
            .expect("a second shared holder is not blocked")
            .unwrap();
        // A sweep waits for both.
        let sweep = {
            let b = b.clone();
            tokio::spawn(async move { b.commit_lock(true).await.unwrap() })
        };
        tokio::time::sleep(short).await;
        assert!(
            !sweep.is_finished(),
            "the sweep ran while commits held the lock"
        );
        drop(s1);
        tokio::time::sleep(short).await;
        assert!(
            !sweep.is_finished(),
            "the sweep ran while a commit held the lock"
        );
        drop(s2);
        let x = tokio::time::timeout(Duration::from_secs(10), sweep)
            .await
            .expect("the sweep gets the lock once the commits are done")
            .unwrap();
        // While it sweeps, a commit on the other replica waits.
        assert!(
            tokio::time::timeout(short, a.commit_lock(false))
                .await
                .is_err(),
            "a commit took the lock during a sweep"
        );
        drop(x);
        let again = tokio::time::timeout(Duration::from_secs(10), a.commit_lock(false))
            .await
            .expect("commits go on after the sweep")
            .unwrap();
        drop(again);
        // A replica that dies holding the lock (its connection gone) frees it.
        let c = PgMetadata::connect(db.url(), 1).await.unwrap();
        let _held = c.commit_lock(true).await.unwrap();
        let killed = a
            .client()
            .await
            .unwrap()
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_locks
                 WHERE locktype = 'advisory' AND granted AND mode = 'ExclusiveLock'
                   AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(killed.len(), 1, "one holder of the exclusive lock");
        tokio::time::timeout(Duration::from_secs(10), a.commit_lock(true))
            .await
            .expect("a closed connection's lock is released")
            .unwrap();
    }

    /// Replicas opening one fresh database at once all open it, and migrate it once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_opens_of_a_fresh_database_all_succeed() {
        for round in 0..5 {
            let db = database();
            let opens: Vec<_> = (0..8)
                .map(|_| {
                    let url = db.url().to_owned();
                    tokio::spawn(async move { PgMetadata::connect(&url, 1).await })
                })
                .collect();
            let mut stores = Vec::new();
            for (t, o) in opens.into_iter().enumerate() {
                stores.push(
                    o.await
                        .unwrap()
                        .unwrap_or_else(|e| panic!("round {round} opener {t}: {e}")),
                );
            }
            for (t, m) in stores.iter().enumerate() {
                m.link_blob("r", &Digest::sha256_of(format!("b{t}").as_bytes()), 1)
                    .await
                    .unwrap();
            }
            let versions: Vec<i64> = stores[0]
                .client()
                .await
                .unwrap()
                .query(
                    "SELECT version FROM schema_migrations WHERE component = $1 ORDER BY version",
                    &[&COMPONENT],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            assert_eq!(versions, (1..=MIGRATIONS.len() as i64).collect::<Vec<_>>());
            // Opening a migrated database changes nothing.
            drop(PgMetadata::connect(db.url(), 1).await.unwrap());
            assert_eq!(stores[0].all_blobs().await.unwrap().len(), 8);
        }
    }

    /// Keys are ordered byte-wise, as SQLite orders them, whatever the database's locale.
    #[tokio::test]
    async fn listings_are_ordered_bytewise() {
        let (_db, m) = fresh().await;
        for r in ["b", "B", "a", "a-b", "a_b", "A"] {
            m.link_blob(r, &Digest::sha256_of(r.as_bytes()), 1)
                .await
                .unwrap();
        }
        assert_eq!(
            m.repositories(None, None).await.unwrap().items,
            ["A", "B", "a", "a-b", "a_b", "b"]
        );
    }

    #[tokio::test]
    async fn a_bad_url_or_an_unreachable_server_is_an_error() {
        assert!(PgMetadata::connect("postgres://[nope", 1).await.is_err());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = PgMetadata::connect(&format!("postgres://postgres@127.0.0.1:{port}/x"), 1)
            .await
            .unwrap_err();
        assert!(err.to_string().starts_with("metadata database"), "{err}");
    }
}
