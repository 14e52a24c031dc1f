//! The persistent build cache under `$HOIST_HOME/builder/`.
//!
//! ```text
//! builder/
//! ├── cache.db            SQLite (WAL): records(key -> value, last_used), record_blobs, blobs(digest, size)
//! ├── lock                flock: every build holds it shared, prune exclusive
//! ├── blobs/sha256/<hex>  layer blobs the records name (content-addressed, written once)
//! └── tmp/                blobs being written, renamed into blobs/ once hashed
//! ```
//!
//! A record maps a [`CacheKey`] to an opaque value (the solver's serialised result: for
//! Dockerfiles, the layer descriptors and config after the op) and lists the blobs the value
//! needs. A record whose blobs are not all present is a miss.
//!
//! **Concurrency.** Several builds may run at once: SQLite serialises writers (busy timeout),
//! two builds writing the same key write the same value, and a blob appears in `blobs/` only by
//! an atomic rename of a complete, hashed file. `prune` takes the lock exclusively, so it waits
//! for running builds and no build sees a blob vanish under it.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use hoist_oci::{Digest, HashingWriter};
use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};

use crate::graph::CacheKey;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("build cache database {path}: {source}")]
    Db {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("cache blob {digest}: written bytes hash to {actual}")]
    Digest { digest: Digest, actual: Digest },
}

pub type Result<T, E = CacheError> = std::result::Result<T, E>;

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> CacheError {
    let context = context.into();
    move |source| CacheError::Io { context, source }
}

/// What `prune` removed and what is left.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub records_removed: u64,
    pub blobs_removed: u64,
    pub bytes_freed: u64,
    pub bytes_left: u64,
}

/// How much the cache holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub records: u64,
    pub blobs: u64,
    pub bytes: u64,
}

/// One record as `system df -v` lists it (BuildKit's cache entries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordInfo {
    /// The cache key, hex.
    pub key: String,
    pub created: i64,
    pub last_used: i64,
    /// How many builds stored or reused it.
    pub uses: u64,
    /// The bytes of the blobs it needs.
    pub size: u64,
    /// Whether another record needs one of its blobs too.
    pub shared: bool,
}

/// The build cache of one hoist home. Opening it takes the shared build lock, held until drop.
pub struct BuildCache {
    dir: PathBuf,
    db_path: PathBuf,
    conn: Mutex<Connection>,
    _lock: File,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS records (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    created INTEGER NOT NULL,
    last_used INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS record_blobs (
    key TEXT NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (key, digest)
);
CREATE INDEX IF NOT EXISTS record_blobs_digest ON record_blobs(digest);
CREATE TABLE IF NOT EXISTS blobs (
    digest TEXT PRIMARY KEY,
    size INTEGER NOT NULL
);
";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl BuildCache {
    /// Opens (creating) the cache in `dir` (`$HOIST_HOME/builder`) for a build.
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_locked(dir, false)
    }

    fn open_locked(dir: &Path, exclusive: bool) -> Result<Self> {
        for d in [dir.to_path_buf(), dir.join("blobs/sha256"), dir.join("tmp")] {
            fs::create_dir_all(&d).map_err(io_err(format!("creating {}", d.display())))?;
        }
        let lock_path = dir.join("lock");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(format!("opening {}", lock_path.display())))?;
        if exclusive {
            lock.lock()
        } else {
            lock.lock_shared()
        }
        .map_err(io_err(format!("locking {}", lock_path.display())))?;
        let db_path = dir.join("cache.db");
        let db = |source| CacheError::Db {
            path: db_path.clone(),
            source,
        };
        let conn = hoist_storage::metadata::open_wal(&db_path, std::time::Duration::from_secs(30))
            .map_err(db)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db)?;
        conn.execute_batch(&format!("BEGIN IMMEDIATE; {SCHEMA}"))
            .map_err(db)?;
        // Caches made before records counted their uses get the column (in the same
        // transaction, so two openers never both add it).
        let has_uses = conn
            .prepare("SELECT 1 FROM pragma_table_info('records') WHERE name = 'uses'")
            .and_then(|mut s| s.exists([]))
            .map_err(db)?;
        if !has_uses {
            conn.execute_batch("ALTER TABLE records ADD COLUMN uses INTEGER NOT NULL DEFAULT 1")
                .map_err(db)?;
        }
        conn.execute_batch("COMMIT").map_err(db)?;
        Ok(BuildCache {
            dir: dir.to_path_buf(),
            db_path,
            conn: Mutex::new(conn),
            _lock: lock,
        })
    }

    fn db(&self) -> impl Fn(rusqlite::Error) -> CacheError + '_ {
        |source| CacheError::Db {
            path: self.db_path.clone(),
            source,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where a blob's bytes are (whether or not they exist).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// A new temporary file in the cache's tmp dir (for a blob being written).
    pub fn temp_file(&self) -> Result<tempfile::NamedTempFile> {
        tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(self.dir.join("tmp"))
            .map_err(io_err("creating a temporary blob file"))
    }

    /// Moves a complete blob file whose bytes hash to `digest` into the cache. The hash is the
    /// caller's, computed while writing; the bytes are not read again.
    pub fn commit_blob(&self, file: tempfile::NamedTempFile, digest: &Digest) -> Result<PathBuf> {
        let size = file
            .as_file()
            .metadata()
            .map_err(io_err("reading a temporary blob's size"))?
            .len();
        let dest = self.blob_path(digest);
        if dest.is_file() {
            drop(file);
        } else {
            file.persist(&dest)
                .map_err(|e| io_err(format!("storing blob {}", dest.display()))(e.error))?;
        }
        self.conn
            .lock()
            .execute(
                "INSERT OR IGNORE INTO blobs (digest, size) VALUES (?1, ?2)",
                params![digest.as_str(), size as i64],
            )
            .map_err(self.db())?;
        Ok(dest)
    }

    /// Copies `reader` into the cache as a blob, hashing it; returns its digest and size.
    pub fn put_blob(&self, mut reader: impl io::Read) -> Result<(Digest, u64)> {
        let mut tmp = self.temp_file()?;
        let (digest, n) = {
            let mut hasher = HashingWriter::new(io::BufWriter::new(tmp.as_file_mut()));
            io::copy(&mut reader, &mut hasher).map_err(io_err("writing a cache blob"))?;
            hasher.flush().map_err(io_err("writing a cache blob"))?;
            let (digest, n, _) = hasher.finish();
            (digest, n)
        };
        self.commit_blob(tmp, &digest)?;
        Ok((digest, n))
    }

    /// The value stored under `key`, if every blob it names is present. Marks it used.
    pub fn get(&self, key: &CacheKey) -> Result<Option<Vec<u8>>> {
        let conn = self.conn.lock();
        let hex = key.hex();
        let value: Option<Vec<u8>> = conn
            .query_row(
                "SELECT value FROM records WHERE key = ?1",
                params![hex],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.db())?;
        let Some(value) = value else {
            return Ok(None);
        };
        let mut stmt = conn
            .prepare_cached("SELECT digest FROM record_blobs WHERE key = ?1")
            .map_err(self.db())?;
        let digests: Vec<String> = stmt
            .query_map(params![hex], |r| r.get(0))
            .map_err(self.db())?
            .collect::<Result<_, _>>()
            .map_err(self.db())?;
        for d in digests {
            let present = Digest::parse(&d).is_ok_and(|d| self.has_blob(&d));
            if !present {
                return Ok(None);
            }
        }
        conn.execute(
            "UPDATE records SET last_used = ?2, uses = uses + 1 WHERE key = ?1",
            params![hex, now()],
        )
        .map_err(self.db())?;
        Ok(Some(value))
    }

    /// Stores `value` under `key`, naming the blobs it needs (already committed).
    pub fn put(&self, key: &CacheKey, value: &[u8], blobs: &[Digest]) -> Result<()> {
        let mut conn = self.conn.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(self.db())?;
        let hex = key.hex();
        let t = now();
        tx.execute(
            "INSERT OR REPLACE INTO records (key, value, created, last_used) VALUES (?1, ?2, ?3, ?3)",
            params![hex, value, t],
        )
        .map_err(self.db())?;
        tx.execute("DELETE FROM record_blobs WHERE key = ?1", params![hex])
            .map_err(self.db())?;
        for d in blobs {
            tx.execute(
                "INSERT OR IGNORE INTO record_blobs (key, digest) VALUES (?1, ?2)",
                params![hex, d.as_str()],
            )
            .map_err(self.db())?;
        }
        tx.commit().map_err(self.db())?;
        Ok(())
    }

    /// Every stored value (for a caller that must know what the records reference, such as the
    /// collector of unpacked layers).
    pub fn values(&self) -> Result<Vec<Vec<u8>>> {
        let conn = self.conn.lock();
        let mut stmt = conn
            .prepare("SELECT value FROM records")
            .map_err(self.db())?;
        let out = stmt
            .query_map([], |r| r.get(0))
            .map_err(self.db())?
            .collect::<Result<Vec<Vec<u8>>, _>>()
            .map_err(self.db())?;
        Ok(out)
    }

    /// Every record with its size and whether it shares a blob, most recently used first.
    pub fn records(&self) -> Result<Vec<RecordInfo>> {
        let conn = self.conn.lock();
        let mut stmt = conn
            .prepare(
                "SELECT r.key, r.created, r.last_used, r.uses,
                    COALESCE((SELECT SUM(b.size) FROM record_blobs rb JOIN blobs b
                              ON b.digest = rb.digest WHERE rb.key = r.key), 0),
                    EXISTS (SELECT 1 FROM record_blobs rb JOIN record_blobs o
                            ON o.digest = rb.digest AND o.key != rb.key WHERE rb.key = r.key)
                 FROM records r ORDER BY r.last_used DESC, r.key",
            )
            .map_err(self.db())?;
        let out = stmt
            .query_map([], |r| {
                Ok(RecordInfo {
                    key: r.get(0)?,
                    created: r.get(1)?,
                    last_used: r.get(2)?,
                    uses: r.get::<_, i64>(3)?.max(0) as u64,
                    size: r.get::<_, i64>(4)?.max(0) as u64,
                    shared: r.get(5)?,
                })
            })
            .map_err(self.db())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.db())?;
        Ok(out)
    }

    /// What the cache holds.
    pub fn usage(&self) -> Result<Usage> {
        let conn = self.conn.lock();
        let records: i64 = conn
            .query_row("SELECT COUNT(*) FROM records", [], |r| r.get(0))
            .map_err(self.db())?;
        let (blobs, bytes): (i64, i64) = conn
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM blobs",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(self.db())?;
        Ok(Usage {
            records: records as u64,
            blobs: blobs as u64,
            bytes: bytes as u64,
        })
    }

    /// `hoist builder prune [--keep-storage SIZE]`: removes least recently used records until
    /// the blobs the rest need fit in `keep_storage` bytes (everything when `None`), then every
    /// blob no record needs. Waits for running builds (it takes the lock exclusively).
    pub fn prune(dir: &Path, keep_storage: Option<u64>) -> Result<PruneReport> {
        let cache = Self::open_locked(dir, true)?;
        cache.prune_locked(keep_storage)
    }

    fn prune_locked(&self, keep_storage: Option<u64>) -> Result<PruneReport> {
        let mut report = PruneReport::default();
        let mut conn = self.conn.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(self.db())?;
        {
            // Records, least recently used first, with the blobs each needs.
            let mut stmt = tx
                .prepare("SELECT key FROM records ORDER BY last_used ASC, created ASC")
                .map_err(self.db())?;
            let keys: Vec<String> = stmt
                .query_map([], |r| r.get(0))
                .map_err(self.db())?
                .collect::<Result<_, _>>()
                .map_err(self.db())?;
            let needed_bytes = |tx: &rusqlite::Transaction<'_>| -> rusqlite::Result<u64> {
                tx.query_row(
                    "SELECT COALESCE(SUM(size), 0) FROM blobs WHERE digest IN \
                     (SELECT DISTINCT digest FROM record_blobs)",
                    [],
                    |r| r.get::<_, i64>(0),
                )
                .map(|v| v as u64)
            };
            let keep = keep_storage.unwrap_or(0);
            let mut needed = needed_bytes(&tx).map_err(self.db())?;
            for key in keys {
                if keep_storage.is_some() && needed <= keep {
                    break;
                }
                tx.execute("DELETE FROM records WHERE key = ?1", params![key])
                    .map_err(self.db())?;
                tx.execute("DELETE FROM record_blobs WHERE key = ?1", params![key])
                    .map_err(self.db())?;
                report.records_removed += 1;
                needed = needed_bytes(&tx).map_err(self.db())?;
            }
        }
        // Blobs no record needs.
        let unneeded: Vec<(String, i64)> = {
            let mut stmt = tx
                .prepare(
                    "SELECT digest, size FROM blobs WHERE digest NOT IN \
                     (SELECT DISTINCT digest FROM record_blobs)",
                )
                .map_err(self.db())?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(self.db())?
                .collect::<Result<_, _>>()
                .map_err(self.db())?
        };
        for (digest, size) in &unneeded {
            tx.execute("DELETE FROM blobs WHERE digest = ?1", params![digest])
                .map_err(self.db())?;
            report.blobs_removed += 1;
            report.bytes_freed += *size as u64;
        }
        tx.commit().map_err(self.db())?;
        for (digest, _) in &unneeded {
            if let Ok(d) = Digest::parse(digest) {
                remove_if_present(&self.blob_path(&d))?;
            }
        }
        // Files with no row (a build died between writing and recording them) and leftovers in
        // tmp: no build runs while the lock is exclusive.
        let known: std::collections::HashSet<String> = {
            let mut stmt = conn
                .prepare("SELECT digest FROM blobs")
                .map_err(self.db())?;
            stmt.query_map([], |r| r.get(0))
                .map_err(self.db())?
                .collect::<Result<_, _>>()
                .map_err(self.db())?
        };
        let blobs_dir = self.dir.join("blobs/sha256");
        for entry in fs::read_dir(&blobs_dir)
            .map_err(io_err(format!("listing {}", blobs_dir.display())))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !known.contains(&format!("sha256:{name}")) {
                let size = entry.metadata().map_or(0, |m| m.len());
                remove_if_present(&entry.path())?;
                report.blobs_removed += 1;
                report.bytes_freed += size;
            }
        }
        // Unpacked layers are a cache of the blobs: a build unpacks what it needs again.
        let snapshots = self.dir.join("snapshots");
        if let Ok(rd) = fs::read_dir(&snapshots) {
            for entry in rd.flatten() {
                let p = entry.path();
                let removed = if p.is_dir() {
                    fs::remove_dir_all(&p)
                } else {
                    fs::remove_file(&p)
                };
                removed.map_err(io_err(format!("removing {}", p.display())))?;
            }
        }
        let tmp = self.dir.join("tmp");
        for entry in fs::read_dir(&tmp)
            .map_err(io_err(format!("listing {}", tmp.display())))?
            .flatten()
        {
            remove_if_present(&entry.path())?;
        }
        // Cache mounts (`RUN --mount=type=cache`) go with a full prune, as `docker builder
        // prune` removes them; a prune down to `--keep-storage` keeps them.
        let mounts = self.dir.join("mounts");
        if keep_storage.is_none() && mounts.exists() {
            report.bytes_freed += tree_size(&mounts);
            fs::remove_dir_all(&mounts)
                .map_err(io_err(format!("removing {}", mounts.display())))?;
        }
        report.bytes_left = conn
            .query_row("SELECT COALESCE(SUM(size), 0) FROM blobs", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(self.db())? as u64;
        Ok(report)
    }
}

/// Bytes of the regular files under `p` (symlinks not followed).
fn tree_size(p: &Path) -> u64 {
    match fs::symlink_metadata(p) {
        Ok(md) if md.is_dir() => fs::read_dir(p)
            .map(|rd| rd.flatten().map(|e| tree_size(&e.path())).sum())
            .unwrap_or(0),
        Ok(md) if md.is_file() => md.len(),
        _ => 0,
    }
}

fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(io_err(format!("removing {}", path.display()))(e))
        }
        _ => Ok(()),
    }
}

/// Parses a docker-style size: `512`, `10k`, `1.5MB`, `2GiB`, `1g` (binary multiples, as
/// docker's `--keep-storage` takes them).
pub fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return None,
    };
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    Some((n * mult as f64) as u64)
}

/// A value the solver can keep in the [`BuildCache`]: serialised as JSON, with the blobs it needs.
pub trait CacheValue: serde::Serialize + serde::de::DeserializeOwned {
    /// Blobs (in the cache's `blobs/`) the value refers to; a record missing one is a miss.
    fn blobs(&self) -> Vec<Digest>;
}

impl<T: CacheValue + Send + Sync> crate::solver::ResultCache<T> for BuildCache {
    fn load(&self, key: &CacheKey) -> Result<Option<T>, crate::graph::OpError> {
        match self.get(key)? {
            Some(bytes) => match serde_json::from_slice(&bytes) {
                Ok(v) => Ok(Some(v)),
                // A record an older hoist wrote in another shape: a miss, overwritten on save.
                Err(_) => Ok(None),
            },
            None => Ok(None),
        }
    }

    fn save(&self, key: &CacheKey, value: &T) -> Result<(), crate::graph::OpError> {
        let bytes = serde_json::to_vec(value)?;
        self.put(key, &bytes, &value.blobs())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> CacheKey {
        CacheKey([n; 32])
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("10k"), Some(10 << 10));
        assert_eq!(parse_size("1.5MB"), Some(3 << 19));
        assert_eq!(parse_size("2GiB"), Some(2 << 30));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size("1q"), None);
    }

    /// Builds run as separate processes, so several open one fresh cache at once, and each then
    /// writes. SQLite answers a lock conflict it sees as a deadlock with SQLITE_BUSY at once (no
    /// busy handler), so the open and every write must be written to never meet one.
    #[test]
    fn concurrent_opens_of_a_fresh_cache_all_succeed() {
        for round in 0..20u8 {
            let dir = tempfile::tempdir().unwrap();
            let barrier = std::sync::Barrier::new(8);
            std::thread::scope(|s| {
                for t in 0..8u8 {
                    let (dir, barrier) = (dir.path(), &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        let c = BuildCache::open(dir)
                            .unwrap_or_else(|e| panic!("round {round} thread {t}: {e}"));
                        let (d, _) = c.put_blob(&[round, t][..]).unwrap();
                        c.put(&key(t), &[t], &[d])
                            .unwrap_or_else(|e| panic!("round {round} thread {t}: {e}"));
                        assert!(c.get(&key(t)).unwrap().is_some());
                    });
                }
            });
        }
    }

    #[test]
    fn records_list_their_size_sharing_and_uses() {
        let dir = tempfile::tempdir().unwrap();
        let c = BuildCache::open(dir.path()).unwrap();
        let (a, _) = c.put_blob(&b"aaaa"[..]).unwrap();
        let (b, _) = c.put_blob(&b"bbbbbbbb"[..]).unwrap();
        let (only, _) = c.put_blob(&b"cc"[..]).unwrap();
        c.put(&key(1), b"v1", &[a, b.clone()]).unwrap();
        c.put(&key(2), b"v2", std::slice::from_ref(&b)).unwrap();
        c.put(&key(3), b"v3", std::slice::from_ref(&only)).unwrap();
        c.get(&key(1)).unwrap();
        c.get(&key(1)).unwrap();
        let by_key = |k: u8| {
            c.records()
                .unwrap()
                .into_iter()
                .find(|r| r.key == key(k).hex())
                .unwrap()
        };
        let (r1, r2, r3) = (by_key(1), by_key(2), by_key(3));
        assert_eq!((r1.size, r1.shared, r1.uses), (12, true, 3));
        assert_eq!((r2.size, r2.shared, r2.uses), (8, true, 1));
        assert_eq!((r3.size, r3.shared, r3.uses), (2, false, 1));
        assert_eq!(c.records().unwrap().len(), 3);
        drop(c);
        // A cache made before the column existed gets it, its records counted once.
        let old = tempfile::tempdir().unwrap();
        let conn = rusqlite::Connection::open(old.path().join("cache.db")).unwrap();
        conn.execute_batch(
            "CREATE TABLE records (key TEXT PRIMARY KEY, value BLOB NOT NULL,
                created INTEGER NOT NULL, last_used INTEGER NOT NULL);
             INSERT INTO records VALUES ('k', x'00', 1, 2);",
        )
        .unwrap();
        drop(conn);
        let c = BuildCache::open(old.path()).unwrap();
        let r = c.records().unwrap();
        assert_eq!((r.len(), r[0].uses, r[0].size), (1, 1, 0));
    }

    #[test]
    fn records_need_their_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let c = BuildCache::open(dir.path()).unwrap();
        let (d, n) = c.put_blob(&b"layer bytes"[..]).unwrap();
        assert_eq!(n, 11);
        assert_eq!(d, Digest::sha256_of(b"layer bytes"));
        c.put(&key(1), b"v1", std::slice::from_ref(&d)).unwrap();
        assert_eq!(c.get(&key(1)).unwrap().as_deref(), Some(&b"v1"[..]));
        assert_eq!(c.get(&key(2)).unwrap(), None);
        fs::remove_file(c.blob_path(&d)).unwrap();
        assert_eq!(
            c.get(&key(1)).unwrap(),
            None,
            "a record without its blob is a miss"
        );
    }

    #[test]
    fn prune_keeps_recent_records_within_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        {
            let c = BuildCache::open(dir.path()).unwrap();
            for i in 0..4u8 {
                let (d, _) = c.put_blob(&vec![i; 1000][..]).unwrap();
                c.put(&key(i), &[i], &[d]).unwrap();
            }
            // Make the order of use explicit: 0 oldest .. 3 newest.
            let conn = c.conn.lock();
            for i in 0..4u8 {
                conn.execute(
                    "UPDATE records SET last_used = ?2 WHERE key = ?1",
                    params![key(i).hex(), i64::from(i)],
                )
                .unwrap();
            }
        }
        let r = BuildCache::prune(dir.path(), Some(2500)).unwrap();
        assert_eq!(r.records_removed, 2);
        assert_eq!(r.blobs_removed, 2);
        assert_eq!(r.bytes_freed, 2000);
        assert_eq!(r.bytes_left, 2000);
        let c = BuildCache::open(dir.path()).unwrap();
        assert!(c.get(&key(0)).unwrap().is_none());
        assert!(c.get(&key(3)).unwrap().is_some());
        drop(c);
        let r = BuildCache::prune(dir.path(), None).unwrap();
        assert_eq!(r.records_removed, 2);
        assert_eq!(r.bytes_left, 0);
        let c = BuildCache::open(dir.path()).unwrap();
        assert_eq!(c.usage().unwrap(), Usage::default());
        assert_eq!(
            fs::read_dir(dir.path().join("blobs/sha256"))
                .unwrap()
                .count(),
            0
        );
    }
}
