//! The build context: a directory (or a tar, or nothing but a Dockerfile, from stdin) minus what
//! `.dockerignore` excludes, with docker's `COPY`/`ADD` source resolution and content checksums.
//!
//! - [`Context::from_dir`]: `<dockerfile-name>.dockerignore` next to the Dockerfile wins over
//!   `<context>/.dockerignore`.
//! - [`Context::from_stdin`]: a tar (plain, gzip, zstd) is extracted into a private temporary
//!   directory; anything else is the Dockerfile itself and the context is empty.
//! - [`Context::resolve`]: sources are relative to the context root (`/` and `..` cannot leave
//!   it), wildcards follow Go's `filepath.Match` per path, a directory copies its contents, a
//!   top-level symlink is followed inside the context (chroot-like), symlinks below a copied
//!   directory are copied as links. Ignored files are invisible, as in docker.
//! - [`Context::checksum`]: a digest of exactly the entries a `COPY` reads: destination path, type,
//!   permission bits, link target and content. Never mtime, owner or atime. An optional hash cache
//!   ([`Context::with_hash_cache`]) skips re-reading files whose size, mtime, ctime, inode and
//!   device are unchanged since they were hashed (ctime cannot be set back by users); the cache
//!   only avoids work, the key is always the content digest.
//!
//! **Invariant:** nothing here writes inside the user's context directory.

use std::collections::HashMap;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use hoist_oci::compression::Compression;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::ignore::{DockerIgnore, IgnoreError, clean_path, go_match, has_wildcards};

#[derive(Debug, Error)]
pub enum ContextError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: {source}", file.display())]
    Ignore { file: PathBuf, source: IgnoreError },
    #[error("--exclude: {0}")]
    Exclude(IgnoreError),
    #[error("{source_path:?} not found in the build context{}", if *.ignored { " (excluded by .dockerignore)" } else { "" })]
    NotFound { source_path: String, ignored: bool },
    #[error("bad wildcard in source {source_path:?}: {reason}")]
    BadWildcard {
        source_path: String,
        reason: &'static str,
    },
    #[error("too many levels of symbolic links resolving {0:?} in the build context")]
    SymlinkLoop(String),
    #[error(
        "when copying more than one source ({count} here), the destination must be a directory and end with a /: {dest:?}"
    )]
    DestNotDir { dest: String, count: usize },
    #[error("build context {}: {reason}", path.display())]
    BadRoot { path: PathBuf, reason: &'static str },
    #[error("stdin: {0}")]
    Stdin(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ContextError + '_ {
    move |source| ContextError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a context entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    File,
    Dir,
    Symlink,
}

/// One entry a `COPY`/`ADD` reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContextFile {
    /// Index of the source argument this entry came from.
    pub source_index: usize,
    /// Path relative to the context root (`""` is the root), `/`-separated.
    pub path: String,
    /// Where to read it on the host (for a top-level symlink: its target).
    pub host_path: PathBuf,
    /// Path relative to the destination: a top-level file's base name (or its parents with
    /// `--parents`), a directory's own entry is `""`, its contents are relative to it.
    pub dest: String,
    /// Matched a source argument itself rather than found inside a source directory.
    pub top_level: bool,
    pub kind: FileKind,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    pub size: u64,
    /// For symlinks: the target as stored.
    pub link_target: Option<String>,
    /// For files: what the hash cache validates, from the stat taken when resolving (saves a
    /// second stat per file in [`Context::checksum`]).
    #[serde(skip)]
    stat: Option<Stat>,
}

/// The stat fields a hash cache entry is validated against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    ino: u64,
    dev: u64,
}

impl Stat {
    fn of(md: &std::fs::Metadata) -> Stat {
        Stat {
            size: md.len(),
            mtime_ns: ts(md.mtime(), md.mtime_nsec()),
            ctime_ns: ts(md.ctime(), md.ctime_nsec()),
            ino: md.ino(),
            dev: md.dev(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct HashEntry {
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    ino: u64,
    dev: u64,
    /// When the file was hashed.
    hashed_ns: i128,
    digest: String,
}

/// A build context.
#[derive(Debug)]
pub struct Context {
    root: PathBuf,
    ignore: DockerIgnore,
    ignore_file: Option<PathBuf>,
    _temp: Option<tempfile::TempDir>,
    hashes: Mutex<HashMap<String, HashEntry>>,
    hash_cache: Option<PathBuf>,
    dirty: AtomicBool,
}

/// What `-` on stdin turned out to be.
#[derive(Debug)]
pub struct StdinContext {
    pub context: Context,
    /// The Dockerfile text when stdin was a Dockerfile rather than an archive.
    pub dockerfile: Option<String>,
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

fn ts(secs: i64, nsec: i64) -> i128 {
    i128::from(secs) * 1_000_000_000 + i128::from(nsec)
}

impl Context {
    /// A context directory. `dockerfile` (the `-f` path, if any) selects
    /// `<dockerfile>.dockerignore` next to it when that exists; else `<dir>/.dockerignore`.
    pub fn from_dir(dir: &Path, dockerfile: Option<&Path>) -> Result<Context, ContextError> {
        let md = std::fs::metadata(dir).map_err(io_err(dir))?;
        if !md.is_dir() {
            return Err(ContextError::BadRoot {
                path: dir.to_path_buf(),
                reason: "not a directory",
            });
        }
        let root = std::fs::canonicalize(dir).map_err(io_err(dir))?;
        let mut ctx = Self::bare(root, None);
        let specific = dockerfile.map(|d| {
            let mut name = d.as_os_str().to_os_string();
            name.push(".dockerignore");
            PathBuf::from(name)
        });
        let candidates = specific
            .into_iter()
            .chain(std::iter::once(ctx.root.join(".dockerignore")));
        for c in candidates {
            match std::fs::read_to_string(&c) {
                Ok(text) => {
                    ctx.ignore =
                        DockerIgnore::parse(&text).map_err(|source| ContextError::Ignore {
                            file: c.clone(),
                            source,
                        })?;
                    ctx.ignore_file = Some(c);
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(ContextError::Io { path: c, source: e }),
            }
        }
        Ok(ctx)
    }

    fn bare(root: PathBuf, temp: Option<tempfile::TempDir>) -> Context {
        Context {
            root,
            ignore: DockerIgnore::default(),
            ignore_file: None,
            _temp: temp,
            hashes: Mutex::new(HashMap::new()),
            hash_cache: None,
            dirty: AtomicBool::new(false),
        }
    }

    /// An empty context (a Dockerfile given alone), rooted in a new directory under `scratch`.
    pub fn empty(scratch: &Path) -> Result<Context, ContextError> {
        let temp = tempfile::Builder::new()
            .prefix("context-")
            .tempdir_in(scratch)
            .map_err(io_err(scratch))?;
        Ok(Self::bare(temp.path().to_path_buf(), Some(temp)))
    }

    /// A context from a tar archive (plain, gzip or zstd), extracted under `scratch` by the
    /// runtime's confined unpacker (entries cannot land outside the extraction directory).
    /// `dockerfile` is the Dockerfile's path inside the archive (for its own `.dockerignore`).
    pub fn from_tar(
        reader: impl Read,
        scratch: &Path,
        dockerfile: Option<&str>,
    ) -> Result<Context, ContextError> {
        let temp = tempfile::Builder::new()
            .prefix("context-")
            .tempdir_in(scratch)
            .map_err(io_err(scratch))?;
        let mut head = Vec::with_capacity(512);
        let mut reader = reader;
        (&mut reader)
            .take(512)
            .read_to_end(&mut head)
            .map_err(|e| ContextError::Stdin(e.to_string()))?;
        let chained = io::Cursor::new(head.clone()).chain(reader);
        let compression = hoist_oci::compression::sniff(&head);
        let stream: Box<dyn Read> = if compression == Compression::Gzip {
            Box::new(flate2::read::MultiGzDecoder::new(chained))
        } else if compression == Compression::Zstd {
            Box::new(
                zstd::stream::read::Decoder::new(chained)
                    .map_err(|e| ContextError::Stdin(e.to_string()))?,
            )
        } else {
            Box::new(chained)
        };
        // The runtime's confined unpacker, never `tar::Archive::unpack`: nothing lands outside
        // the extraction directory, whatever the names, symlinks or hard links in the archive.
        hoist_runtime::unpack::unpack_layer(
            stream,
            temp.path(),
            &hoist_runtime::unpack::UnpackOptions {
                whiteouts: hoist_runtime::unpack::Whiteouts::Apply,
                chown: false,
                ..Default::default()
            },
        )
        .map_err(|e| ContextError::Stdin(format!("extracting the context archive: {e}")))?;
        let root = temp.path().to_path_buf();
        let mut ctx = Self::bare(root, Some(temp));
        let specific = dockerfile.map(|d| {
            format!(
                "{}.dockerignore",
                clean_path(&format!("/{d}")).trim_start_matches('/')
            )
        });
        for c in specific
            .into_iter()
            .chain(std::iter::once(".dockerignore".to_string()))
        {
            let p = ctx.root.join(&c);
            if let Ok(text) = std::fs::read_to_string(&p) {
                ctx.ignore = DockerIgnore::parse(&text).map_err(|source| ContextError::Ignore {
                    file: p.clone(),
                    source,
                })?;
                ctx.ignore_file = Some(p);
                break;
            }
        }
        Ok(ctx)
    }

    /// `hoist build -`: a tar archive (plain, gzip, zstd) becomes the context; anything else is the
    /// Dockerfile and the context is empty.
    pub fn from_stdin(
        reader: impl Read,
        scratch: &Path,
        dockerfile: Option<&str>,
    ) -> Result<StdinContext, ContextError> {
        let mut reader = reader;
        let mut head = Vec::with_capacity(512);
        (&mut reader)
            .take(512)
            .read_to_end(&mut head)
            .map_err(|e| ContextError::Stdin(e.to_string()))?;
        let is_tar = hoist_oci::compression::sniff(&head) != Compression::None
            || (head.len() >= 262 && &head[257..262] == b"ustar");
        let rest = io::Cursor::new(head).chain(reader);
        if is_tar {
            return Ok(StdinContext {
                context: Self::from_tar(rest, scratch, dockerfile)?,
                dockerfile: None,
            });
        }
        let mut bytes = Vec::new();
        let mut rest = rest;
        rest.read_to_end(&mut bytes)
            .map_err(|e| ContextError::Stdin(e.to_string()))?;
        let text = String::from_utf8(bytes).map_err(|_| {
            ContextError::Stdin("neither a tar archive nor a UTF-8 Dockerfile".into())
        })?;
        Ok(StdinContext {
            context: Self::empty(scratch)?,
            dockerfile: Some(text),
        })
    }

    /// The directory holding the context files.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The ignore rules in force.
    pub fn ignore(&self) -> &DockerIgnore {
        &self.ignore
    }

    /// The ignore file that was read, if any.
    pub fn ignore_file(&self) -> Option<&Path> {
        self.ignore_file.as_deref()
    }

    /// Whether `rel` (relative to the root) is excluded by the ignore file.
    pub fn is_ignored(&self, rel: &str) -> bool {
        !rel.is_empty() && rel != "." && self.ignore.matches(rel, false)
    }

    /// Reads a file of the context (e.g. the Dockerfile inside a tar context), following
    /// symlinks inside the context only.
    pub fn read_to_string(&self, rel: &str) -> Result<String, ContextError> {
        let resolved = self
            .resolve_in_root(rel)?
            .ok_or_else(|| ContextError::NotFound {
                source_path: rel.to_string(),
                ignored: false,
            })?;
        let p = self.root.join(&resolved);
        std::fs::read_to_string(&p).map_err(io_err(&p))
    }

    /// Uses (and fills) a persistent file-hash cache at `path`; see the module docs.
    pub fn with_hash_cache(mut self, path: PathBuf) -> Self {
        if let Ok(bytes) = std::fs::read(&path)
            && let Ok(map) = serde_json::from_slice::<HashMap<String, HashEntry>>(&bytes)
        {
            *self.hashes.get_mut() = map;
        }
        self.hash_cache = Some(path);
        self
    }

    /// Writes the hash cache (atomically; concurrent builds may each write, the entries are
    /// validated on use). Entries hashed less than a second after the file changed are left out.
    pub fn save_hash_cache(&self) -> Result<(), ContextError> {
        let Some(path) = &self.hash_cache else {
            return Ok(());
        };
        if !self.dirty.load(Ordering::Relaxed) {
            return Ok(());
        }
        let map: HashMap<String, HashEntry> = self
            .hashes
            .lock()
            .iter()
            .filter(|(_, e)| e.ctime_ns + 1_000_000_000 < e.hashed_ns)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_err(dir))?;
        serde_json::to_writer(&mut tmp, &map).map_err(|e| ContextError::Io {
            path: path.clone(),
            source: io::Error::other(e),
        })?;
        tmp.persist(path).map_err(|e| ContextError::Io {
            path: path.clone(),
            source: e.error,
        })?;
        Ok(())
    }

    /// Resolves a path inside the root like a chroot would: symlinks (absolute ones relative to
    /// the root) are followed, `..` stops at the root. `None` when it does not exist.
    fn resolve_in_root(&self, rel: &str) -> Result<Option<String>, ContextError> {
        let mut todo: std::collections::VecDeque<String> =
            rel.split('/').map(str::to_string).collect();
        let mut cur: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(c) = todo.pop_front() {
            match c.as_str() {
                "" | "." => continue,
                ".." => {
                    cur.pop();
                    continue;
                }
                _ => {}
            }
            let mut p = self.root.clone();
            p.extend(&cur);
            p.push(&c);
            match std::fs::symlink_metadata(&p) {
                Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(20) => {
                    return Ok(None);
                }
                Err(e) => return Err(ContextError::Io { path: p, source: e }),
                Ok(md) if md.file_type().is_symlink() => {
                    hops += 1;
                    if hops > 40 {
                        return Err(ContextError::SymlinkLoop(rel.to_string()));
                    }
                    let target = std::fs::read_link(&p).map_err(io_err(&p))?;
                    let t = target.to_string_lossy();
                    if t.starts_with('/') {
                        cur.clear();
                    }
                    for (i, comp) in t.split('/').enumerate() {
                        todo.insert(i, comp.to_string());
                    }
                }
                Ok(_) => cur.push(c),
            }
        }
        Ok(Some(cur.join("/")))
    }

    fn entry(
        &self,
        source_index: usize,
        path: &str,
        host: &Path,
        dest: String,
        top: bool,
    ) -> Result<Option<ContextFile>, ContextError> {
        let md = std::fs::symlink_metadata(host).map_err(io_err(host))?;
        let ft = md.file_type();
        let (kind, link_target) = if ft.is_symlink() {
            let t = std::fs::read_link(host).map_err(io_err(host))?;
            (FileKind::Symlink, Some(t.to_string_lossy().into_owned()))
        } else if ft.is_dir() {
            (FileKind::Dir, None)
        } else if ft.is_file() {
            (FileKind::File, None)
        } else {
            // sockets, fifos and devices are not part of a build context
            return Ok(None);
        };
        Ok(Some(ContextFile {
            source_index,
            path: path.to_string(),
            host_path: host.to_path_buf(),
            dest,
            top_level: top,
            kind,
            mode: md.mode() & 0o7777,
            size: if kind == FileKind::File { md.len() } else { 0 },
            link_target,
            stat: (kind == FileKind::File).then(|| Stat::of(&md)),
        }))
    }

    /// Resolves `COPY`/`ADD` sources (already expanded; URLs are not context sources) into the
    /// entries they read, in a deterministic order (sources in order, directories walked by
    /// name). `excludes` are `--exclude` patterns, matched against paths relative to the source
    /// directory (for a wildcard, relative to the directory the wildcard starts in). With
    /// `parents` (`--parents`), each entry's `dest` keeps its directories from the context root,
    /// or from a `/./` pivot in the source.
    ///
    /// A missing or ignored source is an error; a wildcard that matches nothing is not (as in
    /// BuildKit).
    pub fn resolve(
        &self,
        sources: &[String],
        excludes: &[String],
        parents: bool,
    ) -> Result<Vec<ContextFile>, ContextError> {
        let excl = DockerIgnore::from_patterns(excludes).map_err(ContextError::Exclude)?;
        let mut out = Vec::new();
        for (idx, src) in sources.iter().enumerate() {
            let mut s = src.as_str();
            while let Some(r) = s.strip_prefix("./") {
                s = r;
            }
            let pivot = if parents {
                s.find("/./").map(|i| {
                    clean_path(&format!("/{}", &s[..i]))
                        .trim_start_matches('/')
                        .to_string()
                })
            } else {
                None
            };
            let rel = clean_path(&format!("/{s}"))
                .trim_start_matches('/')
                .to_string();
            let parents_base = |p: &str| -> String {
                match &pivot {
                    Some(pv) if !pv.is_empty() => p
                        .strip_prefix(pv.as_str())
                        .unwrap_or(p)
                        .trim_start_matches('/')
                        .to_string(),
                    _ => p.to_string(),
                }
            };
            if has_wildcards(&rel) {
                let comps: Vec<&str> = rel.split('/').collect();
                let first_wild = comps.iter().position(|c| has_wildcards(c)).unwrap_or(0);
                let base = comps[..first_wild].join("/");
                let pattern = comps[first_wild..].join("/");
                go_match(&pattern, "").map_err(|reason| ContextError::BadWildcard {
                    source_path: src.clone(),
                    reason,
                })?;
                let Some(base_res) = self.resolve_in_root(&base)? else {
                    continue;
                };
                let mut matches = Vec::new();
                self.glob(
                    &base_res,
                    "",
                    &pattern,
                    comps.len() - first_wild,
                    &mut matches,
                )?;
                for m in matches {
                    let ctx_rel = join(&base_res, &m);
                    if excl.matches(&m, false) {
                        continue;
                    }
                    let dest_top = if parents {
                        parents_base(&join(&base, &m))
                    } else if self.root.join(&ctx_rel).is_dir() {
                        // a matched directory copies its contents, like a named one
                        String::new()
                    } else {
                        basename(&m).to_string()
                    };
                    self.add_source(idx, &ctx_rel, &ctx_rel, dest_top, &excl, &mut out)?;
                }
            } else {
                let ignored = self.is_ignored(&rel);
                let resolved = if ignored {
                    None
                } else {
                    self.resolve_in_root(&rel)?
                };
                let Some(resolved) = resolved.filter(|r| !self.is_ignored(r)) else {
                    return Err(ContextError::NotFound {
                        source_path: src.clone(),
                        ignored,
                    });
                };
                let dest_top = if parents {
                    parents_base(&rel)
                } else if self.root.join(&resolved).is_dir() {
                    String::new()
                } else {
                    basename(&rel).to_string()
                };
                if !rel.is_empty()
                    && excl.matches(basename(&rel), false)
                    && !self.root.join(&resolved).is_dir()
                {
                    continue;
                }
                self.add_source(idx, &rel, &resolved, dest_top, &excl, &mut out)?;
            }
        }
        Ok(out)
    }

    /// Walks `base/<sub>` for paths matching `pattern` (relative to `base`).
    fn glob(
        &self,
        base: &str,
        sub: &str,
        pattern: &str,
        depth: usize,
        out: &mut Vec<String>,
    ) -> Result<(), ContextError> {
        let dir = self.root.join(join(base, sub));
        let mut names: Vec<String> = match std::fs::read_dir(&dir) {
            Ok(rd) => rd
                .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect::<Result<_, _>>()
                .map_err(io_err(&dir))?,
            Err(_) => return Ok(()),
        };
        names.sort();
        for name in names {
            let rel = join(sub, &name);
            let ctx_rel = join(base, &rel);
            let host = self.root.join(&ctx_rel);
            let is_dir = std::fs::symlink_metadata(&host).is_ok_and(|m| m.is_dir());
            if self.is_ignored(&ctx_rel) {
                if is_dir && !self.ignore.can_skip_dir(&ctx_rel) && rel.split('/').count() < depth {
                    self.glob(base, &rel, pattern, depth, out)?;
                }
                continue;
            }
            if go_match(pattern, &rel).unwrap_or(false) {
                out.push(rel);
                continue;
            }
            if is_dir && rel.split('/').count() < depth {
                self.glob(base, &rel, pattern, depth, out)?;
            }
        }
        Ok(())
    }

    /// Adds one matched source: a file, or a directory with its contents.
    fn add_source(
        &self,
        idx: usize,
        rel: &str,
        resolved: &str,
        dest_top: String,
        excl: &DockerIgnore,
        out: &mut Vec<ContextFile>,
    ) -> Result<(), ContextError> {
        let host = self.root.join(resolved);
        let Some(top) = self.entry(idx, rel, &host, dest_top.clone(), true)? else {
            return Ok(());
        };
        let is_dir = top.kind == FileKind::Dir;
        out.push(top);
        if is_dir {
            self.walk(idx, resolved, "", &dest_top, excl, out)?;
        }
        Ok(())
    }

    /// Appends the contents of `dir_rel/sub`, skipping ignored and `--exclude`d paths; an
    /// excluded directory still appears when an exception keeps something inside it.
    fn walk(
        &self,
        idx: usize,
        dir_rel: &str,
        sub: &str,
        dest_base: &str,
        excl: &DockerIgnore,
        out: &mut Vec<ContextFile>,
    ) -> Result<(), ContextError> {
        let dir = self.root.join(join(dir_rel, sub));
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .map_err(io_err(&dir))?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_, _>>()
            .map_err(io_err(&dir))?;
        names.sort();
        for name in names {
            let rel_in = join(sub, &name);
            let ctx_rel = join(dir_rel, &rel_in);
            let host = self.root.join(&ctx_rel);
            let Some(e) = self.entry(idx, &ctx_rel, &host, join(dest_base, &rel_in), false)? else {
                continue;
            };
            let ignored = self.is_ignored(&ctx_rel);
            let excluded = excl.matches(&rel_in, e.kind == FileKind::Dir);
            if e.kind != FileKind::Dir {
                if !ignored && !excluded {
                    out.push(e);
                }
                continue;
            }
            if (ignored && self.ignore.can_skip_dir(&ctx_rel))
                || (excluded && excl.can_skip_dir(&rel_in))
            {
                continue;
            }
            let at = out.len();
            self.walk(idx, dir_rel, &rel_in, dest_base, excl, out)?;
            if !(ignored || excluded) || out.len() > at {
                out.insert(at, e);
            }
        }
        Ok(())
    }

    /// The sha256 of a file's content (`sha256:<hex>`), through the hash cache.
    pub fn file_digest(&self, f: &ContextFile) -> Result<String, ContextError> {
        let st = match f.stat {
            Some(st) => st,
            None => Stat::of(&std::fs::metadata(&f.host_path).map_err(io_err(&f.host_path))?),
        };
        let key = f.host_path.to_string_lossy().into_owned();
        let probe = HashEntry {
            size: st.size,
            mtime_ns: st.mtime_ns,
            ctime_ns: st.ctime_ns,
            ino: st.ino,
            dev: st.dev,
            hashed_ns: 0,
            digest: String::new(),
        };
        if let Some(e) = self.hashes.lock().get(&key)
            && e.size == probe.size
            && e.mtime_ns == probe.mtime_ns
            && e.ctime_ns == probe.ctime_ns
            && e.ino == probe.ino
            && e.dev == probe.dev
        {
            return Ok(e.digest.clone());
        }
        let hashed_ns = now_ns();
        let mut file = std::fs::File::open(&f.host_path).map_err(io_err(&f.host_path))?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = file.read(&mut buf).map_err(io_err(&f.host_path))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        let digest = format!("sha256:{}", hex(&h.finalize()));
        self.hashes.lock().insert(
            key,
            HashEntry {
                hashed_ns,
                digest: digest.clone(),
                ..probe
            },
        );
        self.dirty.store(true, Ordering::Relaxed);
        Ok(digest)
    }

    /// The cache-key checksum (`sha256:<hex>`) of the entries a `COPY`/`ADD` reads, as returned
    /// by [`Context::resolve`]: per entry its source index, destination path, type, permission
    /// bits, link target and content digest. Files are hashed on up to four threads.
    pub fn checksum(&self, files: &[ContextFile]) -> Result<String, ContextError> {
        let regular: Vec<usize> = (0..files.len())
            .filter(|&i| files[i].kind == FileKind::File)
            .collect();
        let mut digests: Vec<Option<String>> = vec![None; files.len()];
        let threads = if regular.len() < 32 {
            1
        } else {
            std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .clamp(1, 4)
        };
        let chunk = regular.len().div_ceil(threads).max(1);
        let results: Vec<Result<Vec<(usize, String)>, ContextError>> = std::thread::scope(|s| {
            let handles: Vec<_> = regular
                .chunks(chunk)
                .map(|part| {
                    s.spawn(move || {
                        part.iter()
                            .map(|&i| self.file_digest(&files[i]).map(|d| (i, d)))
                            .collect()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(ContextError::Stdin("hash thread panicked".into())))
                })
                .collect()
        });
        for r in results {
            for (i, d) in r? {
                digests[i] = Some(d);
            }
        }
        let mut h = Sha256::new();
        for (f, d) in files.iter().zip(&digests) {
            let kind = match f.kind {
                FileKind::File => "file",
                FileKind::Dir => "dir",
                FileKind::Symlink => "symlink",
            };
            h.update(format!("{}\0{}\0{kind}\0{:o}\0", f.source_index, f.dest, f.mode).as_bytes());
            h.update(f.link_target.as_deref().unwrap_or("").as_bytes());
            h.update(b"\0");
            h.update(d.as_deref().unwrap_or("").as_bytes());
            h.update(b"\n");
        }
        Ok(format!("sha256:{}", hex(&h.finalize())))
    }
}

/// Where each resolved entry lands, with docker's rules: a top-level file goes to `dest` itself
/// unless `dest_is_dir` (the destination ends with `/` or is an existing directory), in which
/// case it goes to `dest/<name>`; a directory's contents go below `dest`. More than one
/// top-level source requires `dest_is_dir`. `dest` must already be absolute (joined with the
/// stage's WORKDIR); the returned paths are absolute and cleaned.
pub fn destination_paths(
    files: &[ContextFile],
    dest: &str,
    dest_is_dir: bool,
) -> Result<Vec<String>, ContextError> {
    // Several entries (a glob matching more than one) go into a directory, as several sources
    // do; one match of a glob is copied to `dest` itself, as BuildKit copies it.
    let tops = files.iter().filter(|f| f.top_level).count();
    let dest_is_dir = dest_is_dir || tops > 1;
    Ok(files
        .iter()
        .map(|f| {
            if f.top_level && f.kind != FileKind::Dir && !dest_is_dir {
                clean_path(dest)
            } else {
                clean_path(&format!("{dest}/{}", f.dest))
            }
        })
        .collect())
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}/{b}"),
    }
}

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
