//! `COPY` and `ADD`: files of the context, of another stage, a URL, a git repository or a heredoc,
//! written straight into a new upper dir.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use hoist_runtime::confined::Root;
use hoist_runtime::unpack::{UnpackOptions, Whiteouts, decompress, unpack_layer_at};

use crate::build::{BuildServices, Result};
use crate::context::{Context, ContextFile, FileKind, destination_paths};
use crate::graph::{KeyBuilder, LogSink, Op, OpError, OpKind};
use crate::layer::{commit_layer, layer_dirs, layer_key};
use crate::ops::{clean_abs, normalize_src, resolve_chown};
use crate::snapshot::Snapshot;
use crate::tree::{CopyAs, Entry, Meta, NewDir, Source, Upper, View};

pub(crate) enum CopyFrom {
    Context(Arc<Context>),
    /// The op's second input (a stage).
    Input,
}

pub(crate) struct CopyOp {
    pub(crate) env: Arc<BuildServices>,
    pub(crate) name: String,
    pub(crate) is_add: bool,
    pub(crate) sources: Vec<String>,
    pub(crate) heredocs: Vec<(String, String)>,
    pub(crate) dest: String,
    pub(crate) dest_is_dir: bool,
    pub(crate) chown: Option<String>,
    pub(crate) chmod: Option<u32>,
    pub(crate) exclude: Vec<String>,
    pub(crate) parents: bool,
    /// `--link`: the layer is made on nothing (its key does not depend on the parent) and a
    /// [`MergeOp`] puts it on the parent.
    pub(crate) link: bool,
    /// With `--link`, the op's first input is the parent, read only for `--chown` names.
    pub(crate) link_parent: bool,
    pub(crate) from: CopyFrom,
    pub(crate) created_by: String,
    /// `ADD --checksum=`.
    pub(crate) checksum: Option<String>,
    /// URLs ADD downloaded while computing its key (downloaded once per build).
    pub(crate) fetched: parking_lot::Mutex<
        HashMap<String, (tempfile::NamedTempFile, hoist_client::fetch::Fetched)>,
    >,
    /// `ADD --keep-git-dir`.
    pub(crate) keep_git_dir: bool,
    /// Git sources ADD resolved while computing its key (checked out by `run` on a miss).
    pub(crate) git: parking_lot::Mutex<Vec<(crate::git::GitRef, crate::git::Resolved)>>,
}

/// One file to copy: where it comes from and its path under the destination.
pub(crate) struct Planned {
    pub(crate) src: Source,
    /// The destination as written (not resolved), relative to the layer's root.
    pub(crate) dest: PathBuf,
    pub(crate) md: Meta,
    /// A source argument itself (not found inside a source directory).
    pub(crate) top_level: bool,
    /// A source directory whose contents are copied: only its destination directory is made.
    pub(crate) contents_only: bool,
}

impl CopyOp {
    /// The context entries this COPY reads (docker's source rules, `.dockerignore`, `--exclude`,
    /// `--parents`), each with its absolute destination.
    fn resolve_context(
        &self,
        ctx: &Context,
        dest_is_dir: bool,
    ) -> Result<Vec<(ContextFile, String)>, OpError> {
        let sources: Vec<String> = self
            .sources
            .iter()
            .filter(|s| !(self.is_add && (is_url(s) || crate::git::is_git_ref(s))))
            .cloned()
            .collect();
        let files = ctx.resolve(&sources, &self.exclude, self.parents)?;
        let dests = destination_paths(&files, &self.dest, dest_is_dir)?;
        Ok(files.into_iter().zip(dests).collect())
    }

    /// [`CopyOp::resolve_context`] with each entry's metadata.
    fn plan_context(&self, ctx: &Context, dest_is_dir: bool) -> Result<Vec<Planned>, OpError> {
        let root = Arc::new(Root::open(ctx.root())?);
        let mut out = Vec::new();
        for (f, dest) in self.resolve_context(ctx, dest_is_dir)? {
            // Read through the context's directory descriptor, never by host path.
            let rel = f
                .host_path
                .strip_prefix(ctx.root())
                .map_err(|_| format!("{}: outside the build context", f.host_path.display()))?
                .to_string_lossy()
                .into_owned();
            let src = Source::Dir(root.clone(), rel);
            let md = src.meta()?;
            out.push(Planned {
                contents_only: f.kind == FileKind::Dir && f.dest.is_empty(),
                src,
                dest: PathBuf::from(dest.trim_start_matches('/')),
                md,
                top_level: f.top_level,
            });
        }
        Ok(out)
    }
}

impl CopyOp {
    /// Files of another stage this COPY reads: each source resolved inside the stage's root
    /// (symlinked parents followed there, never on the host), a directory's contents merged
    /// across its layers.
    fn plan_stage(&self, view: Arc<View>, dest_is_dir: bool) -> Result<Vec<Planned>, OpError> {
        let dest = PathBuf::from(clean_abs(&self.dest).trim_start_matches('/'));
        // Each source, its wildcards matched in the stage's tree (one that matches nothing
        // copies nothing, as BuildKit's), with the name it is copied under.
        let mut found = Vec::new();
        for s in &self.sources {
            let src = normalize_src(s);
            if crate::ignore::has_wildcards(&src) {
                crate::ignore::go_match(&src, "")
                    .map_err(|reason| format!("COPY --from: {s}: {reason}"))?;
                found.extend(glob_tree(&view, &src)?);
                continue;
            }
            let Some(e) = view.lstat(&src)? else {
                return Err(format!("COPY --from: /{src}: not found").into());
            };
            found.push((src, e));
        }
        // Several sources (or matches) go into a directory.
        let dest_is_dir = dest_is_dir || found.len() > 1;
        let mut out = Vec::new();
        for (src, found) in found {
            // A symlink source is followed inside the stage's root, as BuildKit's copy follows
            // it: what it points to is copied, under the source's own name.
            let found = if found.meta.is_symlink() {
                view.stat(&src)?
                    .ok_or_else(|| format!("COPY --from: /{src}: a dangling symlink"))?
            } else {
                found
            };
            if found.meta.is_dir() {
                for (rel, e) in view.walk(&found.path)? {
                    out.push(Planned {
                        md: e.meta.clone(),
                        src: Source::Tree(view.clone(), e),
                        dest: dest.join(rel),
                        top_level: false,
                        contents_only: false,
                    });
                }
            } else {
                let base = src.rsplit('/').next().unwrap_or(&src).to_owned();
                out.push(Planned {
                    md: found.meta.clone(),
                    src: Source::Tree(view.clone(), found),
                    dest: if dest_is_dir {
                        dest.join(base)
                    } else {
                        dest.clone()
                    },
                    top_level: true,
                    contents_only: false,
                });
            }
        }
        Ok(out)
    }
}

/// A plain HTTP download for ADD (a git repository URL is a git source, not a download).
pub(crate) fn is_url(s: &str) -> bool {
    (s.starts_with("http://") || s.starts_with("https://")) && !crate::git::is_git_ref(s)
}

impl Op<Snapshot> for CopyOp {
    fn kind(&self) -> OpKind {
        OpKind::Copy
    }
    fn name(&self) -> String {
        self.name.clone()
    }
    fn key<'a>(&'a self) -> BoxFuture<'a, Result<Vec<u8>, OpError>> {
        async move {
            let mut k = KeyBuilder::new(if self.is_add { "add" } else { "copy" });
            layer_key(&mut k, &self.env.layer_options);
            // `existing-dir`: a destination that is a directory in the parent is one (keys of
            // builds before that rule name other layers).
            k.str("existing-dir")
                .list(&self.sources)
                .str(&self.dest)
                .u64(u64::from(self.dest_is_dir))
                .opt(self.chown.as_deref())
                .u64(self.chmod.map_or(u64::MAX, u64::from))
                .list(&self.exclude)
                .u64(u64::from(self.parents))
                .u64(u64::from(self.link));
            for (n, c) in &self.heredocs {
                k.str(n).str(c);
            }
            if let CopyFrom::Context(ctx) = &self.from {
                // Exactly the entries read: destination, type, mode, link target and content
                // digest ([`Context::checksum`]); never mtime.
                let checksum = tokio::task::block_in_place(|| -> Result<String, OpError> {
                    let files: Vec<ContextFile> = self
                        .resolve_context(ctx, self.dest_is_dir)?
                        .into_iter()
                        .map(|(f, _)| f)
                        .collect();
                    Ok(ctx.checksum(&files)?)
                })?;
                k.str(&checksum);
                self.git.lock().clear();
                for s in &self.sources {
                    if self.is_add && crate::git::is_git_ref(s) {
                        // Keyed by the commit the ref resolves to now (`git ls-remote`): a moved
                        // branch is a miss, an unchanged one a hit without a fetch.
                        let g = crate::git::parse(s)?;
                        let resolved = tokio::task::block_in_place(|| crate::git::resolve(&g))?;
                        crate::git::verify(&g, &resolved, self.checksum.as_deref())?;
                        k.str("git")
                            .str(s)
                            .str(&resolved.commit)
                            .u64(u64::from(self.keep_git_dir));
                        self.git.lock().push((g, resolved));
                    } else if self.is_add && is_url(s) {
                        // Keyed by what the URL serves (and its time), as BuildKit does.
                        let tmp = self.env.cache.temp_file()?;
                        let out = io::BufWriter::new(tmp.reopen()?);
                        let fetched = hoist_client::fetch::fetch(s, out).await?;
                        if let Some(c) = &self.checksum
                            && c != fetched.digest.as_str()
                        {
                            return Err(format!(
                                "ADD {s}: checksum mismatch: expected {c}, got {}",
                                fetched.digest
                            )
                            .into());
                        }
                        k.str(s)
                            .str(fetched.digest.as_str())
                            .u64(fetched.last_modified.unwrap_or(0) as u64);
                        self.fetched.lock().insert(s.clone(), (tmp, fetched));
                    }
                }
            }
            Ok(k.finish())
        }
        .boxed()
    }
    fn run<'a>(
        &'a self,
        inputs: &'a [Arc<Snapshot>],
        _log: &'a dyn LogSink,
    ) -> BoxFuture<'a, Result<Snapshot, OpError>> {
        async move {
            // `COPY --link` makes its layer on nothing: the parent is an input only to resolve
            // `--chown` names, and the layer is merged onto it by a [`MergeOp`].
            let (parent, rest) = if self.link && !self.link_parent {
                (Arc::new(Snapshot::empty()), inputs)
            } else {
                (inputs[0].clone(), &inputs[1..])
            };
            let parent_dirs = layer_dirs(&self.env, &parent).await?;
            let from_dirs = match &self.from {
                CopyFrom::Input => Some(layer_dirs(&self.env, &rest[0]).await?),
                CopyFrom::Context(_) => None,
            };
            tokio::task::block_in_place(|| {
                self.write_layer(&parent, &parent_dirs, from_dirs.as_deref())
            })
        }
        .boxed()
    }
}

impl CopyOp {
    /// The new layer (on its blocking thread): the destination resolved and made, what is copied
    /// written into a fresh upper dir, then committed.
    fn write_layer(
        &self,
        parent: &Snapshot,
        parent_dirs: &[PathBuf],
        from_dirs: Option<&[PathBuf]>,
    ) -> Result<Snapshot, OpError> {
        let env = &self.env;
        let upper = env.temp_dir()?;
        let root = upper.path().join("upper");
        fs::create_dir(&root)?;
        let parent_view = View::open(parent_dirs)?;
        let (uid, gid) = match &self.chown {
            Some(c) => resolve_chown(c, &parent_view)?,
            None => (0, 0),
        };
        // What paths are resolved against: the parent's filesystem, unless the layer is
        // linked (made on nothing, as BuildKit's `--link` is), and what this COPY wrote
        // so far. Symlinks on the way are followed inside the root (a COPY into /lib/x
        // of a merged-/usr image lands in /usr/lib/x; it never replaces the /lib symlink
        // with a directory), and a symlink an earlier source wrote is followed inside
        // the root too, never on the host.
        let below = if self.link {
            View::default()
        } else {
            parent_view
        };
        let up = Upper::new(&root, &below)?;
        let dest_written = clean_abs(&self.dest);
        let dest_written = dest_written.trim_start_matches('/').to_owned();
        // A destination that is a directory already (symlinks followed inside the root)
        // is one whatever its spelling, as BuildKit's copy treats it: `COPY f /tmp` and
        // `WORKDIR /srv` + `COPY f .` copy into it, never replace it with a file.
        let dest_is_dir = self.dest_is_dir
            || up
                .view()
                .stat(&dest_written)?
                .is_some_and(|e| e.meta.is_dir());
        let planned = match (&self.from, from_dirs) {
            (CopyFrom::Context(ctx), _) => self.plan_context(ctx, dest_is_dir)?,
            (CopyFrom::Input, Some(dirs)) => {
                self.plan_stage(Arc::new(View::open(dirs)?), dest_is_dir)?
            }
            _ => Vec::new(),
        };
        // The destination itself is followed to the end, as BuildKit resolves it in the
        // rootfs (`COPY x /lib` in a merged-/usr image writes into /usr/lib; a heredoc
        // onto a symlink writes its target inside the image); what is copied under it
        // replaces a symlink in its way instead of writing through it.
        let dest = up.view().resolve(&dest_written, true)?.join("/");
        let dest_parent = |d: &str| -> String {
            d.rsplit_once('/')
                .map_or(String::new(), |(p, _)| p.to_owned())
        };
        // Several sources or matches went into the destination: it is a directory.
        let dest_is_dir = dest_is_dir || planned.iter().filter(|p| p.top_level).count() > 1;
        let dest_dir = if dest_is_dir {
            dest.clone()
        } else {
            dest_parent(&dest)
        };
        // Directories COPY makes on the way belong to --chown's owner, as BuildKit's.
        // Wildcards that matched nothing copy nothing: no destination is made.
        let nothing = planned.is_empty()
            && self.heredocs.is_empty()
            && self.fetched.lock().is_empty()
            && self.git.lock().is_empty();
        if !nothing {
            up.dir_all(
                &dest_dir,
                NewDir {
                    mode: 0o755,
                    uid,
                    gid,
                },
            )
            .map_err(|e| {
                format!(
                    "{} to /{dest_dir}: {e}",
                    if self.is_add { "ADD" } else { "COPY" }
                )
            })?;
        }
        self.copy_planned(&up, &planned, &dest, &dest_written, (uid, gid))?;
        self.copy_git(&up, &dest, (uid, gid))?;
        self.copy_fetched(&up, &dest, dest_is_dir, (uid, gid))?;
        self.copy_heredocs(&up, &dest, dest_is_dir, (uid, gid))?;
        // A linked layer is a snapshot of its own (the layer and its history entry).
        let base = if self.link {
            Snapshot::empty()
        } else {
            parent.clone()
        };
        commit_layer(env, &base, &root, &self.created_by)
    }

    /// An I/O error of this COPY (or ADD) on `what`.
    fn io_at(&self, what: &str, e: io::Error) -> OpError {
        format!("{} {what}: {e}", if self.is_add { "ADD" } else { "COPY" }).into()
    }

    /// The planned files (context or stage) under the destination; an ADD of a local archive
    /// extracts it.
    fn copy_planned(
        &self,
        up: &Upper,
        planned: &[Planned],
        dest: &str,
        dest_written: &str,
        (uid, gid): (u32, u32),
    ) -> Result<(), OpError> {
        let under_dest = |p: &Path| -> String {
            match p.strip_prefix(dest_written) {
                Ok(rest) if rest.as_os_str().is_empty() => dest.to_owned(),
                Ok(rest) if dest.is_empty() => rest.to_string_lossy().into_owned(),
                Ok(rest) => format!("{dest}/{}", rest.to_string_lossy()),
                Err(_) => p.to_string_lossy().into_owned(),
            }
        };
        // A file of another stage keeps its owner unless --chown says otherwise.
        let keep_owner = self.chown.is_none() && matches!(self.from, CopyFrom::Input);
        for p in planned {
            let target = under_dest(&p.dest);
            if p.contents_only {
                up.dir(
                    &target,
                    NewDir {
                        mode: 0o755,
                        uid,
                        gid,
                    },
                )
                .map_err(|e| self.io_at(&format!("/{target}"), e))?;
                continue;
            }
            if self.is_add
                && p.top_level
                && p.md.is_file()
                && try_extract(&p.src, up, dest)?.is_some()
            {
                continue;
            }
            let how = CopyAs {
                uid: if keep_owner { p.md.uid } else { uid },
                gid: if keep_owner { p.md.gid } else { gid },
                chmod: self.chmod,
                mtime: None,
            };
            up.copy(&p.src, &p.md, &target, &how)
                .map_err(|e| self.io_at(&format!("{} to /{target}", p.src.describe()), e))?;
        }
        Ok(())
    }

    /// Git sources: the checked-out tree (or its subdir) becomes the destination directory's
    /// contents; everything gets the commit's time (reproducible layers).
    fn copy_git(&self, up: &Upper, dest: &str, (uid, gid): (u32, u32)) -> Result<(), OpError> {
        let git_sources = self.git.lock().clone();
        for (g, resolved) in &git_sources {
            // The checked-out tree (or its subdir) becomes the destination directory's
            // contents; everything gets the commit's time (reproducible layers).
            let work = tempfile::Builder::new()
                .prefix("git-")
                .tempdir_in(self.env.cache.dir().join("tmp"))?;
            let co = crate::git::checkout(g, resolved, work.path(), self.keep_git_dir)?;
            up.dir(dest, NewDir::ROOT)?;
            let tree = Arc::new(View::open(std::slice::from_ref(&co.root))?);
            let mut copied = Vec::new();
            for (rel, e) in tree.walk(&[])? {
                let target = if dest.is_empty() {
                    rel
                } else {
                    format!("{dest}/{rel}")
                };
                let md = e.meta.clone();
                let how = CopyAs {
                    uid,
                    gid,
                    chmod: self.chmod,
                    mtime: Some(co.commit_time),
                };
                up.copy(&Source::Tree(tree.clone(), e), &md, &target, &how)?;
                copied.push(target);
            }
            if !dest.is_empty() {
                copied.push(dest.to_owned());
            }
            // Deepest first: writing into a directory changes its mtime.
            for t in copied.iter().rev() {
                up.set_mtime(t, co.commit_time)?;
            }
        }
        Ok(())
    }

    /// URLs ADD downloaded: never extracted; 0600 unless --chmod, as docker does.
    fn copy_fetched(
        &self,
        up: &Upper,
        dest: &str,
        dest_is_dir: bool,
        (uid, gid): (u32, u32),
    ) -> Result<(), OpError> {
        for (url, (tmp, fetched)) in self.fetched.lock().iter() {
            // Never extracted; 0600 unless --chmod, as docker does.
            let target = if dest_is_dir {
                let name = url
                    .split(['?', '#'])
                    .next()
                    .unwrap_or(url)
                    .trim_end_matches('/')
                    .rsplit('/')
                    .next()
                    .filter(|n| !n.is_empty() && !n.contains(':'))
                    .unwrap_or("download");
                format!("{dest}/{name}")
            } else {
                dest.to_owned()
            };
            up.write_file(
                &target,
                &mut tmp.reopen()?,
                self.chmod.unwrap_or(0o600),
                uid,
                gid,
                fetched.last_modified.map(|t| (t.max(0), 0)),
            )
            .map_err(|e| self.io_at(&format!("{url} to /{target}"), e))?;
        }
        Ok(())
    }

    /// Heredocs: files of their content (0644 unless --chmod).
    fn copy_heredocs(
        &self,
        up: &Upper,
        dest: &str,
        dest_is_dir: bool,
        (uid, gid): (u32, u32),
    ) -> Result<(), OpError> {
        for (name, content) in &self.heredocs {
            let target = if dest_is_dir {
                format!("{dest}/{name}")
            } else {
                dest.to_owned()
            };
            up.write_file(
                &target,
                &mut content.as_bytes(),
                self.chmod.unwrap_or(0o644),
                uid,
                gid,
                None,
            )
            .map_err(|e| self.io_at(&format!("/{target}"), e))?;
        }
        Ok(())
    }
}

/// The entries of `tree` a wildcard path (`/a*`, `lib/*.so`) matches, Go's `filepath.Match` on
/// the part from its first wildcard component, as BuildKit's copy resolves them: walked with no
/// symlink followed, a matching directory not looked into, sorted by name.
pub(crate) fn glob_tree(tree: &View, pattern: &str) -> Result<Vec<(String, Entry)>, OpError> {
    let comps: Vec<&str> = pattern.split('/').collect();
    let first = comps
        .iter()
        .position(|c| crate::ignore::has_wildcards(c))
        .unwrap_or(0);
    let base = tree.resolve(&comps[..first].join("/"), true)?;
    let rest = comps[first..].join("/");
    let depth = comps.len() - first;
    let mut out = Vec::new();
    let mut todo = vec![(base, String::new())];
    while let Some((dir, rel)) = todo.pop() {
        let mut found = Vec::new();
        for name in tree.list(&dir)? {
            let mut p = dir.clone();
            p.push(name.clone());
            let Some(e) = tree.get(&p)? else { continue };
            let r = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if crate::ignore::go_match(&rest, &r).unwrap_or(false) {
                out.push((p.join("/"), e));
            } else if e.meta.is_dir() && r.split('/').count() < depth {
                found.push((p, r));
            }
        }
        todo.extend(found.into_iter().rev());
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Extracts `src` into the destination directory `dest` of `up` when it is a tar archive (plain,
/// gzip or zstd). `None` when it is not one (ADD then copies it as a file). The directory is
/// resolved inside the root and extraction goes through the runtime's confined unpacker (with
/// whiteouts applied) on its descriptor: no entry (`..`, absolute names, symlinked parents, hard
/// links) can write outside it, as docker's chrooted untar.
pub(crate) fn try_extract(src: &Source, up: &Upper, dest: &str) -> Result<Option<()>, OpError> {
    let is_tar = {
        let f = src.open()?;
        let mut r = decompress(f)?;
        let mut head = [0u8; 512];
        let mut n = 0;
        while n < 512 {
            match r.read(&mut head[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                // Not a valid compressed stream after all: a plain file.
                Err(_) => return Ok(None),
            }
        }
        n == 512 && &head[257..262] == b"ustar"
    };
    if !is_tar {
        return Ok(None);
    }
    let dir = up.dir(dest, NewDir::ROOT)?;
    let f = src.open()?;
    unpack_layer_at(
        decompress(f)?,
        dir,
        &UnpackOptions {
            whiteouts: Whiteouts::Apply,
            ..UnpackOptions::default()
        },
    )
    .map_err(|e| format!("ADD {}: {e}", src.describe()))?;
    Ok(Some(()))
}
