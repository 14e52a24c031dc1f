//! The embedded metadata store: bundled SQLite in WAL mode with `synchronous=FULL`, so a commit
//! that returned survives a crash. One writer connection, a pool of readers; every call runs on
//! the blocking pool.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hoist_oci::{Algorithm, Digest, DigesterState};
use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};

use super::{
    ManifestRecord, MetaError, MetadataStore, Page, RefKind, TagEvent, TagRow, UploadSession, now,
};

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
/// How long a writer waits for another connection's lock.
const BUSY: Duration = Duration::from_secs(10);

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE repositories (
    name        TEXT PRIMARY KEY,
    created_at  INTEGER NOT NULL
);
CREATE TABLE blobs (
    digest      TEXT PRIMARY KEY,
    size        INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE TABLE repo_blobs (
    repo        TEXT NOT NULL REFERENCES repositories(name),
    digest      TEXT NOT NULL REFERENCES blobs(digest),
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (repo, digest)
);
CREATE INDEX repo_blobs_digest ON repo_blobs(digest);
CREATE TABLE manifests (
    repo          TEXT NOT NULL REFERENCES repositories(name),
    digest        TEXT NOT NULL REFERENCES blobs(digest),
    media_type    TEXT NOT NULL,
    size          INTEGER NOT NULL,
    artifact_type TEXT,
    subject       TEXT,
    annotations   TEXT,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (repo, digest)
);
CREATE INDEX manifests_subject ON manifests(repo, subject);
CREATE TABLE manifest_refs (
    repo        TEXT NOT NULL,
    manifest    TEXT NOT NULL,
    child       TEXT NOT NULL,
    kind        TEXT NOT NULL,
    PRIMARY KEY (repo, manifest, child, kind),
    FOREIGN KEY (repo, manifest) REFERENCES manifests(repo, digest) ON DELETE CASCADE
);
CREATE TABLE tags (
    repo        TEXT NOT NULL REFERENCES repositories(name),
    name        TEXT NOT NULL,
    digest      TEXT NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (repo, name),
    FOREIGN KEY (repo, digest) REFERENCES manifests(repo, digest)
);
CREATE INDEX tags_digest ON tags(repo, digest);
CREATE TABLE tag_history (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    repo        TEXT NOT NULL,
    name        TEXT NOT NULL,
    digest      TEXT,
    at          INTEGER NOT NULL
);
CREATE INDEX tag_history_tag ON tag_history(repo, name);
CREATE TABLE uploads (
    id          TEXT PRIMARY KEY,
    repo        TEXT NOT NULL,
    byte_offset INTEGER NOT NULL,
    hash_alg    TEXT NOT NULL,
    hash_state  BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
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
    task      TEXT PRIMARY KEY,
    last_run  INTEGER NOT NULL
);
"#,
];

struct Inner {
    path: Option<PathBuf>,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    /// Readers for point reads on the calling thread (see [`SqliteMetadata::point`]): no busy
    /// timeout.
    quick: Mutex<Vec<Connection>>,
}

/// SQLite behind [`MetadataStore`].
#[derive(Clone)]
pub struct SqliteMetadata {
    inner: Arc<Inner>,
}

/// Opens the SQLite database at `path` in WAL mode for one of several processes that may open
/// it at once (builds, a server and its admin commands): waits up to `busy` for another's lock.
///
/// The busy handler does not cover the switch to WAL: when two connections open a fresh file at
/// once, SQLite sees the lock upgrade as a possible deadlock and answers SQLITE_BUSY at once. The
/// switch is idempotent, so it is retried until `busy` has passed.
pub fn open_wal(path: &Path, busy: Duration) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(busy)?;
    let deadline = Instant::now() + busy;
    let mut pause = Duration::from_millis(1);
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && Instant::now() < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            r => return r.map(|()| conn),
        }
    }
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(())
}

/// A read-only connection for point reads: no busy timeout (see [`SqliteMetadata::point`]).
fn quick_reader(path: &Path) -> rusqlite::Result<Connection> {
    let c = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    configure(&c)?;
    c.busy_timeout(Duration::ZERO)?;
    Ok(c)
}

fn migrate(conn: &mut Connection) -> Result<(), MetaError> {
    // The version is read inside the write transaction: a process that opened the file at the
    // same time may have migrated it since.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
    }
    tx.commit()?;
    Ok(())
}

fn digest(s: &str) -> Result<Digest, rusqlite::Error> {
    Digest::parse(s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn opt_digest(s: Option<&str>) -> Result<Option<Digest>, rusqlite::Error> {
    s.map(digest).transpose()
}

const MANIFEST_COLS: &str =
    "m.digest, m.media_type, m.size, m.artifact_type, m.subject, m.annotations, m.created_at";

fn manifest_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ManifestRecord> {
    Ok(ManifestRecord {
        digest: digest(&r.get::<_, String>(0)?)?,
        media_type: r.get(1)?,
        size: r.get::<_, i64>(2)? as u64,
        artifact_type: r.get(3)?,
        subject: opt_digest(r.get::<_, Option<String>>(4)?.as_deref())?,
        annotations: r.get(5)?,
        created_at: r.get(6)?,
    })
}

fn alg_from(s: &str) -> Result<Algorithm, rusqlite::Error> {
    match s {
        "sha256" => Ok(Algorithm::Sha256),
        "sha512" => Ok(Algorithm::Sha512),
        other => Err(rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("unknown hash algorithm {other}").into(),
        )),
    }
}

fn ensure_repo(tx: &rusqlite::Transaction<'_>, repo: &str) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT OR IGNORE INTO repositories (name, created_at) VALUES (?1, ?2)",
        params![repo, now()],
    )?;
    Ok(())
}

/// Records a blob, or refreshes the time garbage collection's grace period reads from.
fn touch_blob(tx: &rusqlite::Transaction<'_>, digest: &str, size: u64) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO blobs (digest, size, created_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (digest) DO UPDATE SET created_at = MAX(created_at, excluded.created_at)",
        params![digest, size as i64, now()],
    )?;
    Ok(())
}

/// Links a blob into a repository, or refreshes the link's time: a write that makes content
/// reachable again restarts its grace period, whatever an earlier link's age.
fn touch_link(tx: &rusqlite::Transaction<'_>, repo: &str, digest: &str) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO repo_blobs (repo, digest, created_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (repo, digest) DO UPDATE SET created_at = MAX(created_at, excluded.created_at)",
        params![repo, digest, now()],
    )?;
    Ok(())
}

fn record_tag(
    tx: &rusqlite::Transaction<'_>,
    repo: &str,
    tag: &str,
    digest: Option<&str>,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO tag_history (repo, name, digest, at) VALUES (?1, ?2, ?3, ?4)",
        params![repo, tag, digest, now()],
    )?;
    Ok(())
}

/// Runs a paged, sorted listing: `sql` selects one text column, has `?1` for the lower bound
/// (exclusive, "" for none) and `?2` for the limit; `extra` binds more parameters from `?3`.
fn page(
    conn: &Connection,
    sql: &str,
    last: Option<&str>,
    n: Option<usize>,
    extra: &[&dyn rusqlite::ToSql],
) -> rusqlite::Result<Page> {
    let limit: i64 = n.map_or(-1, |n| n as i64 + 1);
    let mut stmt = conn.prepare_cached(sql)?;
    let last = last.unwrap_or("");
    let mut args: Vec<&dyn rusqlite::ToSql> = vec![&last, &limit];
    args.extend_from_slice(extra);
    let mut items = stmt
        .query_map(args.as_slice(), |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let more = n.is_some_and(|n| items.len() > n);
    if let Some(n) = n {
        items.truncate(n);
    }
    Ok(Page { items, more })
}

impl SqliteMetadata {
    /// Opens (creating and migrating) the database at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, MetaError> {
        let path = path.as_ref().to_owned();
        let mut conn = open_wal(&path, BUSY)?;
        configure(&conn)?;
        migrate(&mut conn)?;
        // One reader for point reads from the start: the first request does not open one.
        let quick = quick_reader(&path)?;
        Ok(SqliteMetadata {
            inner: Arc::new(Inner {
                path: Some(path),
                writer: Mutex::new(conn),
                readers: Mutex::new(Vec::new()),
                quick: Mutex::new(vec![quick]),
            }),
        })
    }

    /// A private in-memory database, for tests.
    pub fn in_memory() -> Result<Self, MetaError> {
        let mut conn = Connection::open_in_memory()?;
        configure(&conn)?;
        migrate(&mut conn)?;
        Ok(SqliteMetadata {
            inner: Arc::new(Inner {
                path: None,
                writer: Mutex::new(conn),
                readers: Mutex::new(Vec::new()),
                quick: Mutex::new(Vec::new()),
            }),
        })
    }

    /// A point read (at most one row, by its key) on the calling thread. Handing a query of a
    /// few microseconds to the blocking pool costs more than the query: two thread wake-ups, and
    /// manifest GETs ran at half the rate (`cargo bench -p hoist --bench registry`). In WAL mode
    /// a reader does not wait for writers; the connection has no busy timeout, so when the
    /// database is busy all the same (a checkpoint, a recovery) the read goes to the blocking
    /// pool with the usual timeout instead of sleeping on an async worker. An in-memory
    /// database (tests) shares the writer's connection, so it always goes there.
    async fn point<T: Send + 'static>(
        &self,
        f: impl Fn(&Connection) -> Result<T, MetaError> + Send + 'static,
    ) -> Result<T, MetaError> {
        if let Some(path) = &self.inner.path {
            let pooled = self.inner.quick.lock().pop();
            let conn = match pooled {
                Some(c) => Some(c),
                None => quick_reader(path).ok(),
            };
            if let Some(conn) = conn {
                let out = f(&conn);
                let mut quick = self.inner.quick.lock();
                if quick.len() < 16 {
                    quick.push(conn);
                }
                drop(quick);
                match out {
                    Err(MetaError::Sqlite(rusqlite::Error::SqliteFailure(e, _)))
                        if matches!(
                            e.code,
                            rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                        ) => {}
                    other => return other,
                }
            }
        }
        self.read(move |c| f(c)).await
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, MetaError> + Send + 'static,
    ) -> Result<T, MetaError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let Some(path) = &inner.path else {
                return f(&inner.writer.lock());
            };
            let pooled = inner.readers.lock().pop();
            let conn = match pooled {
                Some(c) => c,
                None => {
                    let c = Connection::open_with_flags(
                        path,
                        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                            | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )?;
                    configure(&c)?;
                    c
                }
            };
            let out = f(&conn);
            let mut readers = inner.readers.lock();
            if readers.len() < 16 {
                readers.push(conn);
            }
            out
        })
        .await
        .map_err(|e| MetaError::Task(e.to_string()))?
    }

    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, MetaError> + Send + 'static,
    ) -> Result<T, MetaError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = inner.writer.lock();
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        })
        .await
        .map_err(|e| MetaError::Task(e.to_string()))?
    }
}

#[async_trait]
impl MetadataStore for SqliteMetadata {
    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, MetaError> {
        let d = digest.to_string();
        self.point(move |c| {
            Ok(
                c.prepare_cached("SELECT size FROM blobs WHERE digest = ?1")?
                    .query_row([&d], |r| r.get::<_, i64>(0))
                    .optional()?
                    .map(|s| s as u64),
            )
        })
        .await
    }

    async fn repo_blob_size(&self, repo: &str, digest: &Digest) -> Result<Option<u64>, MetaError> {
        let (repo, d) = (repo.to_owned(), digest.to_string());
        self.point(move |c| {
            Ok(c.prepare_cached(
                "SELECT b.size FROM repo_blobs l JOIN blobs b ON b.digest = l.digest
                 WHERE l.repo = ?1 AND l.digest = ?2",
            )?
            .query_row([&repo, &d], |r| r.get::<_, i64>(0))
            .optional()?
            .map(|s| s as u64))
        })
        .await
    }

    async fn link_blob(&self, repo: &str, digest: &Digest, size: u64) -> Result<(), MetaError> {
        let (repo, d) = (repo.to_owned(), digest.to_string());
        self.write(move |tx| {
            ensure_repo(tx, &repo)?;
            touch_blob(tx, &d, size)?;
            touch_link(tx, &repo, &d)?;
            Ok(())
        })
        .await
    }

    async fn unlink_blob(&self, repo: &str, digest: &Digest) -> Result<bool, MetaError> {
        let (repo, d) = (repo.to_owned(), digest.to_string());
        self.write(move |tx| {
            Ok(tx.execute(
                "DELETE FROM repo_blobs WHERE repo = ?1 AND digest = ?2",
                [repo, d],
            )? > 0)
        })
        .await
    }

    async fn upload_create(&self, s: &UploadSession) -> Result<(), MetaError> {
        let s = s.clone();
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO uploads (id, repo, byte_offset, hash_alg, hash_state, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    s.id,
                    s.repo,
                    s.offset as i64,
                    s.hash.algorithm.as_str(),
                    s.hash.state,
                    s.created_at,
                    s.updated_at
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn upload_get(&self, id: &str) -> Result<Option<UploadSession>, MetaError> {
        let id = id.to_owned();
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT id, repo, byte_offset, hash_alg, hash_state, created_at, updated_at
                 FROM uploads WHERE id = ?1",
            )?
            .query_row([id], |r| {
                let offset = r.get::<_, i64>(2)? as u64;
                Ok(UploadSession {
                    id: r.get(0)?,
                    repo: r.get(1)?,
                    offset,
                    hash: DigesterState {
                        algorithm: alg_from(&r.get::<_, String>(3)?)?,
                        len: offset,
                        state: r.get(4)?,
                    },
                    created_at: r.get(5)?,
                    updated_at: r.get(6)?,
                })
            })
            .optional()?)
        })
        .await
    }

    async fn upload_advance(
        &self,
        id: &str,
        from_offset: u64,
        offset: u64,
        hash: &DigesterState,
    ) -> Result<bool, MetaError> {
        let (id, hash) = (id.to_owned(), hash.clone());
        self.write(move |tx| {
            Ok(tx.execute(
                "UPDATE uploads SET byte_offset = ?1, hash_state = ?2, updated_at = ?3
                 WHERE id = ?4 AND byte_offset = ?5",
                params![offset as i64, hash.state, now(), id, from_offset as i64],
            )? == 1)
        })
        .await
    }

    async fn upload_delete(&self, id: &str) -> Result<bool, MetaError> {
        let id = id.to_owned();
        self.write(move |tx| Ok(tx.execute("DELETE FROM uploads WHERE id = ?1", [id])? > 0))
            .await
    }

    async fn claim_task(&self, task: &str, every: u64, now: i64) -> Result<bool, MetaError> {
        let task = task.to_owned();
        let due = now.saturating_sub(every as i64);
        self.write(move |tx| {
            Ok(tx.execute(
                "INSERT INTO maintenance (task, last_run) VALUES (?1, ?2)
                 ON CONFLICT (task) DO UPDATE SET last_run = excluded.last_run
                 WHERE maintenance.last_run <= ?3",
                rusqlite::params![task, now, due],
            )? > 0)
        })
        .await
    }

    async fn upload_ids(&self) -> Result<Vec<String>, MetaError> {
        self.read(|c| {
            Ok(c.prepare("SELECT id FROM uploads ORDER BY id")?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?)
        })
        .await
    }

    async fn stale_uploads(&self, before: i64) -> Result<Vec<String>, MetaError> {
        self.read(move |c| {
            Ok(
                c.prepare("SELECT id FROM uploads WHERE updated_at < ?1 ORDER BY id")?
                    .query_map([before], |r| r.get(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()?,
            )
        })
        .await
    }

    async fn upload_finish(&self, id: &str, digest: &Digest, size: u64) -> Result<(), MetaError> {
        let (id, d) = (id.to_owned(), digest.to_string());
        self.write(move |tx| {
            let repo: String = tx
                .query_row("SELECT repo FROM uploads WHERE id = ?1", [&id], |r| {
                    r.get(0)
                })
                .optional()?
                .ok_or_else(|| {
                    MetaError::Corrupt(format!("upload {id} vanished before it finished"))
                })?;
            tx.execute("DELETE FROM uploads WHERE id = ?1", [&id])?;
            ensure_repo(tx, &repo)?;
            touch_blob(tx, &d, size)?;
            touch_link(tx, &repo, &d)?;
            Ok(())
        })
        .await
    }

    async fn manifest_put(
        &self,
        repo: &str,
        record: &ManifestRecord,
        refs: &[(Digest, RefKind)],
        tag: Option<&str>,
    ) -> Result<(), MetaError> {
        let (repo, rec, refs, tag) = (
            repo.to_owned(),
            record.clone(),
            refs.to_vec(),
            tag.map(str::to_owned),
        );
        self.write(move |tx| {
            let mut missing = Vec::new();
            {
                let mut blob_q = tx.prepare_cached("SELECT 1 FROM repo_blobs WHERE repo = ?1 AND digest = ?2")?;
                let mut man_q = tx.prepare_cached("SELECT 1 FROM manifests WHERE repo = ?1 AND digest = ?2")?;
                for (d, kind) in &refs {
                    let q = match kind {
                        RefKind::Blob => &mut blob_q,
                        RefKind::Manifest => &mut man_q,
                    };
                    if !q.exists(params![repo, d.as_str()])? {
                        missing.push(d.clone());
                    }
                }
            }
            if !missing.is_empty() {
                return Err(MetaError::MissingReferences(missing));
            }
            ensure_repo(tx, &repo)?;
            let d = rec.digest.as_str();
            touch_blob(tx, d, rec.size)?;
            tx.execute(
                "INSERT OR IGNORE INTO manifests
                 (repo, digest, media_type, size, artifact_type, subject, annotations, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    repo,
                    d,
                    rec.media_type,
                    rec.size as i64,
                    rec.artifact_type,
                    rec.subject.as_ref().map(Digest::as_str),
                    rec.annotations,
                    rec.created_at
                ],
            )?;
            for (child, kind) in &refs {
                if *kind == RefKind::Blob {
                    // The manifest makes the blob reachable: its link's grace restarts too, so a
                    // manifest deleted right after still leaves the client its grace period.
                    touch_link(tx, &repo, child.as_str())?;
                }
                tx.execute(
                    "INSERT OR IGNORE INTO manifest_refs (repo, manifest, child, kind) VALUES (?1, ?2, ?3, ?4)",
                    params![repo, d, child.as_str(), kind.as_str()],
                )?;
            }
            if let Some(tag) = tag {
                let old: Option<String> = tx
                    .query_row("SELECT digest FROM tags WHERE repo = ?1 AND name = ?2", [&repo, &tag], |r| r.get(0))
                    .optional()?;
                if old.as_deref() != Some(d) {
                    tx.execute(
                        "INSERT INTO tags (repo, name, digest, updated_at) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (repo, name) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at",
                        params![repo, tag, d, now()],
                    )?;
                    record_tag(tx, &repo, &tag, Some(d))?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn manifest_by_digest(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<Option<ManifestRecord>, MetaError> {
        let (repo, d) = (repo.to_owned(), digest.to_string());
        self.point(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {MANIFEST_COLS} FROM manifests m WHERE m.repo = ?1 AND m.digest = ?2"
            ))?
            .query_row([&repo, &d], manifest_row)
            .optional()?)
        })
        .await
    }

    async fn manifest_by_tag(
        &self,
        repo: &str,
        tag: &str,
    ) -> Result<Option<ManifestRecord>, MetaError> {
        let (repo, tag) = (repo.to_owned(), tag.to_owned());
        self.point(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {MANIFEST_COLS} FROM tags t JOIN manifests m ON m.repo = t.repo AND m.digest = t.digest
                 WHERE t.repo = ?1 AND t.name = ?2"
            ))?
            .query_row([&repo, &tag], manifest_row)
            .optional()?)
        })
        .await
    }

    async fn manifest_delete(&self, repo: &str, digest: &Digest) -> Result<bool, MetaError> {
        let (repo, d) = (repo.to_owned(), digest.to_string());
        self.write(move |tx| {
            let tags = tx
                .prepare("SELECT name FROM tags WHERE repo = ?1 AND digest = ?2")?
                .query_map([&repo, &d], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            for t in &tags {
                record_tag(tx, &repo, t, None)?;
            }
            tx.execute(
                "DELETE FROM tags WHERE repo = ?1 AND digest = ?2",
                [&repo, &d],
            )?;
            Ok(tx.execute(
                "DELETE FROM manifests WHERE repo = ?1 AND digest = ?2",
                [&repo, &d],
            )? > 0)
        })
        .await
    }

    async fn tag_delete(&self, repo: &str, tag: &str) -> Result<bool, MetaError> {
        let (repo, tag) = (repo.to_owned(), tag.to_owned());
        self.write(move |tx| {
            let gone = tx.execute(
                "DELETE FROM tags WHERE repo = ?1 AND name = ?2",
                [&repo, &tag],
            )? > 0;
            if gone {
                record_tag(tx, &repo, &tag, None)?;
            }
            Ok(gone)
        })
        .await
    }

    async fn tags(
        &self,
        repo: &str,
        n: Option<usize>,
        last: Option<&str>,
    ) -> Result<Option<Page>, MetaError> {
        let (repo, last) = (repo.to_owned(), last.map(str::to_owned));
        self.read(move |c| {
            let exists = c
                .prepare_cached("SELECT 1 FROM repositories WHERE name = ?1")?
                .exists([&repo])?;
            if !exists {
                return Ok(None);
            }
            Ok(Some(page(
                c,
                "SELECT name FROM tags WHERE name > ?1 AND repo = ?3 ORDER BY name LIMIT ?2",
                last.as_deref(),
                n,
                &[&repo],
            )?))
        })
        .await
    }

    async fn tag_history(&self, repo: &str, tag: &str) -> Result<Vec<TagEvent>, MetaError> {
        let (repo, tag) = (repo.to_owned(), tag.to_owned());
        self.read(move |c| {
            Ok(c.prepare(
                "SELECT digest, at FROM tag_history WHERE repo = ?1 AND name = ?2 ORDER BY id",
            )?
            .query_map([repo, tag], |r| {
                Ok(TagEvent {
                    digest: opt_digest(r.get::<_, Option<String>>(0)?.as_deref())?,
                    at: r.get(1)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn repositories(&self, n: Option<usize>, last: Option<&str>) -> Result<Page, MetaError> {
        let last = last.map(str::to_owned);
        self.read(move |c| {
            Ok(page(
                c,
                "SELECT name FROM repositories WHERE name > ?1 ORDER BY name LIMIT ?2",
                last.as_deref(),
                n,
                &[],
            )?)
        })
        .await
    }

    async fn repo_exists(&self, repo: &str) -> Result<bool, MetaError> {
        let repo = repo.to_owned();
        self.point(move |c| {
            Ok(
                c.prepare_cached("SELECT 1 FROM repositories WHERE name = ?1")?
                    .exists([&repo])?,
            )
        })
        .await
    }

    async fn referrers(
        &self,
        repo: &str,
        subject: &Digest,
    ) -> Result<Vec<ManifestRecord>, MetaError> {
        let (repo, d) = (repo.to_owned(), subject.to_string());
        self.read(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {MANIFEST_COLS} FROM manifests m WHERE m.repo = ?1 AND m.subject = ?2 ORDER BY m.digest"
            ))?
            .query_map([repo, d], manifest_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn unlink_unreferenced(&self, before: i64, limit: usize) -> Result<u64, MetaError> {
        self.write(move |tx| {
            // One statement: the age and the references are checked as the rows go, so a link
            // refreshed or referenced since any earlier look is kept.
            Ok(tx.execute(
                "DELETE FROM repo_blobs WHERE rowid IN (
                     SELECT l.rowid FROM repo_blobs l WHERE l.created_at < ?1 AND NOT EXISTS (
                         SELECT 1 FROM manifest_refs r
                         WHERE r.repo = l.repo AND r.child = l.digest AND r.kind = 'blob')
                     LIMIT ?2)",
                params![before, limit as i64],
            )? as u64)
        })
        .await
    }

    async fn blob_candidates(
        &self,
        before: i64,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<Digest>, MetaError> {
        let after = after.map(Digest::to_string).unwrap_or_default();
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT digest FROM blobs b WHERE digest > ?1 AND created_at < ?2
                 AND NOT EXISTS (SELECT 1 FROM repo_blobs l WHERE l.digest = b.digest)
                 AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.digest = b.digest)
                 ORDER BY digest LIMIT ?3",
            )?
            .query_map(params![after, before, limit as i64], |r| {
                digest(&r.get::<_, String>(0)?)
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn sweep_blobs(
        &self,
        before: i64,
        candidates: &[Digest],
    ) -> Result<Vec<(Digest, u64)>, MetaError> {
        let candidates = candidates.to_vec();
        self.write(move |tx| {
            // Each candidate is checked again as it goes: a push, mount or manifest since the
            // mark made it reachable (and refreshed its time).
            let mut del = tx.prepare_cached(
                "DELETE FROM blobs WHERE digest = ?1 AND created_at < ?2
                 AND NOT EXISTS (SELECT 1 FROM repo_blobs l WHERE l.digest = blobs.digest)
                 AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.digest = blobs.digest)
                 RETURNING size",
            )?;
            let mut doomed = Vec::new();
            for d in candidates {
                let size = del
                    .query_row(params![d.as_str(), before], |r| r.get::<_, i64>(0))
                    .optional()?;
                if let Some(size) = size {
                    doomed.push((d, size as u64));
                }
            }
            Ok(doomed)
        })
        .await
    }

    async fn all_blobs(&self) -> Result<Vec<Digest>, MetaError> {
        self.read(|c| {
            Ok(c.prepare("SELECT digest FROM blobs ORDER BY digest")?
                .query_map([], |r| digest(&r.get::<_, String>(0)?))?
                .collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn all_tags(&self) -> Result<Vec<TagRow>, MetaError> {
        self.read(|c| {
            Ok(
                c.prepare("SELECT repo, name, digest, updated_at FROM tags ORDER BY repo, name")?
                    .query_map([], |r| {
                        Ok(TagRow {
                            repo: r.get(0)?,
                            tag: r.get(1)?,
                            digest: digest(&r.get::<_, String>(2)?)?,
                            updated_at: r.get(3)?,
                        })
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?,
            )
        })
        .await
    }

    async fn all_manifests(&self) -> Result<Vec<(String, ManifestRecord)>, MetaError> {
        self.read(|c| {
            Ok(c.prepare(&format!(
                "SELECT {MANIFEST_COLS}, m.repo FROM manifests m ORDER BY m.repo, m.digest"
            ))?
            .query_map([], |r| Ok((r.get::<_, String>(7)?, manifest_row(r)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn manifest_parents(&self, repo: &str, child: &Digest) -> Result<Vec<Digest>, MetaError> {
        let (repo, d) = (repo.to_owned(), child.to_string());
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT manifest FROM manifest_refs
                     WHERE repo = ?1 AND child = ?2 AND kind = 'manifest' ORDER BY manifest",
            )?
            .query_map([repo, d], |r| digest(&r.get::<_, String>(0)?))?
            .collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn manifest_repos(&self, manifest: &Digest) -> Result<Vec<String>, MetaError> {
        let d = manifest.to_string();
        self.read(move |c| {
            Ok(
                c.prepare_cached("SELECT repo FROM manifests WHERE digest = ?1 ORDER BY repo")?
                    .query_map([d], |r| r.get(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()?,
            )
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::super::testsuite;
    use super::*;

    fn d(s: &str) -> Digest {
        Digest::sha256_of(s.as_bytes())
    }

    #[tokio::test]
    async fn blobs_links_and_manifests() {
        let dir = tempfile::tempdir().unwrap();
        let m = SqliteMetadata::open(dir.path().join("meta.db")).unwrap();
        testsuite::blobs_links_and_manifests(&m).await;
    }

    /// A point read runs on the calling thread; one that finds the database busy runs again on
    /// the blocking pool (with the busy timeout) instead of failing or sleeping on an async
    /// worker.
    #[tokio::test]
    async fn a_point_read_of_a_busy_database_runs_again_on_the_blocking_pool() {
        let dir = tempfile::tempdir().unwrap();
        let m = SqliteMetadata::open(dir.path().join("meta.db")).unwrap();
        let here = std::thread::current().id();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let seen = calls.clone();
        let answer = m
            .point(move |c| {
                let mut seen = seen.lock();
                seen.push(std::thread::current().id());
                if seen.len() == 1 {
                    return Err(MetaError::Sqlite(rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                        Some("database is locked".into()),
                    )));
                }
                Ok(c.query_row("SELECT 7", [], |r| r.get::<_, i64>(0))?)
            })
            .await
            .unwrap();
        assert_eq!(answer, 7);
        let calls = calls.lock().clone();
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert_eq!(calls[0], here, "the first try runs on the calling thread");
        assert_ne!(calls[1], here, "the second runs on the blocking pool");
        // Other errors are not tried again.
        let tries = Arc::new(Mutex::new(0));
        let counted = tries.clone();
        let e = m
            .point(move |c| {
                *counted.lock() += 1;
                Ok(c.query_row("SELECT nope", [], |r| r.get::<_, i64>(0))?)
            })
            .await
            .unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
        assert_eq!(*tries.lock(), 1);
    }

    #[tokio::test]
    async fn listings_across_repositories() {
        let m = SqliteMetadata::in_memory().unwrap();
        testsuite::listings_across_repositories(&m).await;
    }

    #[tokio::test]
    async fn tag_pages_and_catalog() {
        let m = SqliteMetadata::in_memory().unwrap();
        testsuite::tag_pages_and_catalog(&m).await;
    }

    /// Several processes (or connections) opening one fresh database at once all open it, and
    /// migrate it once.
    #[tokio::test]
    async fn concurrent_opens_of_a_fresh_database_all_succeed() {
        for round in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("meta.db");
            let barrier = std::sync::Barrier::new(8);
            let stores: Vec<SqliteMetadata> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..8)
                    .map(|t| {
                        let (path, barrier) = (&path, &barrier);
                        s.spawn(move || {
                            barrier.wait();
                            SqliteMetadata::open(path)
                                .unwrap_or_else(|e| panic!("round {round} opener {t}: {e}"))
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            for (t, m) in stores.iter().enumerate() {
                m.link_blob("r", &d(&format!("b{t}")), 1).await.unwrap();
            }
            let c = Connection::open(&path).unwrap();
            let version: i64 = c
                .pragma_query_value(None, "user_version", |r| r.get(0))
                .unwrap();
            assert_eq!(version, MIGRATIONS.len() as i64);
        }
    }

    #[tokio::test]
    async fn uploads_survive_reopen_and_advance_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        testsuite::uploads_survive_reopen_and_advance_atomically(async || {
            SqliteMetadata::open(&path).unwrap()
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn maintenance_claims_once_per_period() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        testsuite::maintenance_claims_once_per_period(async || {
            SqliteMetadata::open(&path).unwrap()
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writers_serialize() {
        let dir = tempfile::tempdir().unwrap();
        let m = SqliteMetadata::open(dir.path().join("meta.db")).unwrap();
        testsuite::concurrent_writers_serialize(m).await;
    }
}
