//! Tidy: every file operation of the builder on an image or layer tree goes through the confined
//! resolver (`hoist_runtime::confined`: directory descriptors, `openat2(RESOLVE_IN_ROOT)`, `*at`
//! calls with no symlink followed; `hoist_builder::tree` on top of it). No `std::fs` call (or
//! other call that takes a path) may take a path joined onto a rootfs.
//!
//! The check: in `builder/src`, every call that resolves a path on the host (the `std::fs`
//! functions, `File::open`/`create`, `OpenOptions`, `std::os::unix::fs::{symlink, chown,
//! lchown}`, `rustix`'s `CWD`-relative calls, `Path` methods that stat through symlinks) is
//! refused unless it is listed in [`ALLOWED`] (file, function, the code, and why it is a host
//! path the builder owns or the user gave: the build cache, a fresh work dir, the bundle, the
//! context). Importing those functions under another name, or aliasing `std::fs`, is refused
//! too, and so is opening a confined root at a joined path (`Root::open(&x.join(..))`), which
//! would resolve the joined part on the host. An allowance that no longer matches fails, so the
//! list cannot rot.

use std::path::{Path, PathBuf};

/// (file under `builder/src`, function (`*`: the whole file), code on the line (`*`: any), why).
const ALLOWED: &[(&str, &str, &str, &str)] = &[
    (
        "cache.rs",
        "*",
        "*",
        "the build cache store under $HOIST_HOME/builder (records, blobs, tmp): the builder's own files",
    ),
    (
        "context.rs",
        "*",
        "*",
        "the build context is a host directory the user chose; its symlinks are resolved inside it by Context::resolve_in_root, and COPY reads it through a descriptor (tree::Source::Dir)",
    ),
    (
        "git.rs",
        "*",
        "*",
        "git checkouts in a fresh temp dir of the build cache, made by the git CLI; COPY reads them through tree::View",
    ),
    (
        "build.rs",
        "new",
        "fs::create_dir_all(&d)",
        "$HOIST_HOME/builder/work, the builder's work dir",
    ),
    (
        "convert/base.rs",
        "can_run",
        ".exists()",
        "the host's binfmt_misc registration (a host path, not an image's)",
    ),
    (
        "layer.rs",
        "layer_dirs",
        "fs::File::open(&blob)",
        "a layer blob in the build cache store",
    ),
    (
        "layer.rs",
        "commit_layer",
        "fs::File::open(&blob)",
        "a layer blob in the build cache store",
    ),
    (
        "ops/copy.rs",
        "write_layer",
        "fs::create_dir(&root)?",
        "a COPY's new upper dir in a fresh temp dir",
    ),
    (
        "ops/meta.rs",
        "run",
        "fs::create_dir(&root)?",
        "a WORKDIR's new upper dir in a fresh temp dir",
    ),
    (
        "ops/run.rs",
        "run_blocking",
        "fs::create_dir(d)?",
        "a RUN's new upper, work and mount-point dirs in a fresh temp dir",
    ),
    (
        "ops/run.rs",
        "run_blocking",
        "fs::set_permissions(&upper",
        "a RUN's new upper dir in a fresh temp dir",
    ),
    (
        "ops/run.rs",
        "secret_mount",
        "fs::read_to_string(p)?",
        "a secret file the user passed with --secret (a host path)",
    ),
    (
        "run.rs",
        "new",
        "std::fs::read_to_string(\"/proc/sys/kernel/hostname\")",
        "the host's hostname",
    ),
    (
        "run.rs",
        "run",
        "std::fs::write(",
        "files of the RUN's bundle in a fresh temp dir",
    ),
    (
        "run.rs",
        "run",
        "std::fs::read_to_string(\"/etc/resolv.conf\")",
        "the host's resolver configuration",
    ),
    (
        "run.rs",
        "open_lock",
        "std::fs::OpenOptions::new()",
        "a cache mount's lock file in $HOIST_HOME/builder/mounts",
    ),
    (
        "run.rs",
        "cache_dir",
        "std::fs::create_dir_all(parent)",
        "$HOIST_HOME/builder/mounts",
    ),
    (
        "run.rs",
        "cache_dir",
        ".exists()",
        "a cache mount's dir in $HOIST_HOME/builder/mounts",
    ),
    (
        "run.rs",
        "make_cache_dir",
        "std::fs::create_dir(&new)",
        "a new cache mount dir in a fresh temp dir of $HOIST_HOME/builder/mounts",
    ),
    (
        "run.rs",
        "make_cache_dir",
        "std::fs::set_permissions(&new",
        "a new cache mount dir in a fresh temp dir of $HOIST_HOME/builder/mounts",
    ),
    (
        "run.rs",
        "make_cache_dir",
        "lchown(&new",
        "a new cache mount dir in a fresh temp dir of $HOIST_HOME/builder/mounts",
    ),
    (
        "run.rs",
        "make_cache_dir",
        "use std::os::unix::fs::{PermissionsExt, lchown}",
        "for the new cache mount dir above",
    ),
    (
        "run.rs",
        "make_cache_dir",
        "rustix::fs::CWD",
        "renames the new cache mount dir (both paths in $HOIST_HOME/builder/mounts)",
    ),
    (
        "run.rs",
        "copy_out",
        "*",
        "writes new paths in the builder's own work dirs (a cache seed, a context file's private copy); reads only through descriptors",
    ),
    (
        "run.rs",
        "secret_copy",
        "*",
        "a private copy of a user's secret file into the RUN's fresh work dir",
    ),
    (
        "run.rs",
        "start",
        "*",
        "the ssh agent proxy socket in a fresh temp dir",
    ),
    (
        "run.rs",
        "context_view",
        "*",
        "the build context (a host directory the user chose) linked or copied into the RUN's fresh work dir",
    ),
    (
        "export.rs",
        "to_local",
        "std::fs::create_dir_all(&dest)",
        "the user's --output directory; the layers are unpacked into it by the confined unpacker",
    ),
    (
        "export.rs",
        "to_archive",
        "std::fs::File::create(dest)",
        "the user's --output archive path",
    ),
];

/// Calls that resolve a path on the host.
const BANNED: &[&str] = &[
    "fs::copy(",
    "fs::write(",
    "fs::read(",
    "fs::read_to_string(",
    "fs::read_dir(",
    "fs::read_link(",
    "fs::metadata(",
    "fs::symlink_metadata(",
    "fs::create_dir(",
    "fs::create_dir_all(",
    "fs::remove_file(",
    "fs::remove_dir(",
    "fs::remove_dir_all(",
    "fs::rename(",
    "fs::hard_link(",
    "fs::soft_link(",
    "fs::set_permissions(",
    "fs::canonicalize(",
    "fs::exists(",
    "File::open(",
    "File::create(",
    "File::create_new(",
    "File::options(",
    "OpenOptions",
    "fs::symlink(",
    "fs::chown(",
    "fs::lchown(",
    "lchown(",
    "chroot(",
    "rustix::fs::open(",
    "CWD",
    "lgetxattr(",
    "lsetxattr(",
    ".exists()",
    ".try_exists()",
    ".canonicalize()",
    ".read_dir()",
    ".read_link()",
    ".symlink_metadata()",
    ".metadata()",
];

/// `is_dir`/`is_file`/`is_symlink` are fine on metadata, not on a path (they stat it through
/// every symlink): the receiver must be one of these.
const METADATA_RECEIVERS: &[&str] = &["md", "meta", "m", "ft", "st", "file_type()"];

/// Where a confined root or view is opened: the path must be the caller's own, not joined.
const ROOT_OPENERS: &[&str] = &[
    "Root::open(",
    "View::open(",
    "Upper::new(",
    "unpack_layer(",
    "copy_tree(",
    "resolve_confined(",
];

#[derive(Debug, PartialEq)]
struct Violation {
    line: usize,
    function: String,
    what: String,
    code: String,
}

/// The violations in one file's source (`file` as in [`ALLOWED`]); `used` marks the allowances
/// that matched.
fn check(file: &str, src: &str, used: &mut [bool]) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut function = String::new();
    for (n, raw) in src.lines().enumerate() {
        let code = raw.trim();
        if code.starts_with("//") {
            continue;
        }
        if let Some(i) = code.find("fn ") {
            let before = &code[..i];
            if before.is_empty() || before.ends_with(' ') || before.ends_with('(') {
                let name: String = code[i + 3..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    function = name;
                }
            }
        }
        let mut found: Vec<String> = BANNED
            .iter()
            .filter(|b| code.contains(**b))
            .map(|b| format!("calls {b}"))
            .collect();
        for m in [".is_dir()", ".is_file()", ".is_symlink()"] {
            let mut rest = code;
            while let Some(i) = rest.find(m) {
                let recv = &rest[..i];
                let ok = METADATA_RECEIVERS.iter().any(|r| {
                    recv.ends_with(r)
                        && !recv[..recv.len() - r.len()]
                            .ends_with(|c: char| c.is_alphanumeric() || c == '_')
                });
                if !ok {
                    found.push(format!("calls {m} on something that is not metadata"));
                }
                rest = &rest[i + m.len()..];
            }
        }
        if (code.contains("use std::fs") || code.contains("use std::os::unix::fs"))
            && imports_a_function(code)
        {
            found.push("imports a path function of std::fs".into());
        }
        if code.contains("std::fs as") {
            found.push("aliases std::fs".into());
        }
        if ROOT_OPENERS.iter().any(|o| code.contains(o)) && code.contains(".join(") {
            found.push("opens a confined tree at a joined path".into());
        }
        if found.is_empty() {
            continue;
        }
        let allowed = ALLOWED
            .iter()
            .enumerate()
            .find(|(_, (f, func, snippet, _))| {
                *f == file
                    && (*func == "*" || *func == function)
                    && (*snippet == "*" || code.contains(snippet))
            });
        match allowed {
            Some((i, _)) => used[i] = true,
            None => {
                for what in found {
                    out.push(Violation {
                        line: n + 1,
                        function: function.clone(),
                        what,
                        code: code.to_owned(),
                    });
                }
            }
        }
    }
    out
}

/// `use std::fs::{copy, File}` imports `copy`: a lowercase name is a function (or a module).
fn imports_a_function(code: &str) -> bool {
    let Some(i) = code.find("fs::") else {
        return false;
    };
    let items = code[i + 4..].trim_end_matches(';');
    let items = items.trim_start_matches('{').trim_end_matches('}');
    items.split(',').any(|it| {
        let name = it.split_whitespace().next().unwrap_or("");
        name.chars().next().is_some_and(|c| c.is_lowercase()) && name != "self"
    })
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn builder_file_operations_on_trees_are_confined() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    let mut used = vec![false; ALLOWED.len()];
    let mut bad = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(f).unwrap();
        for v in check(&rel, &text, &mut used) {
            bad.push(format!(
                "builder/src/{rel}:{} (fn {}): {}\n    {}",
                v.line, v.function, v.what, v.code
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "file operations on a path, outside hoist_runtime::confined / hoist_builder::tree (an image \
         or layer tree must be reached through a descriptor; a host path the builder owns goes \
         into ALLOWED with its reason):\n{}",
        bad.join("\n")
    );
    let stale: Vec<String> = ALLOWED
        .iter()
        .zip(&used)
        .filter(|(_, u)| !**u)
        .map(|((f, func, snippet, _), _)| format!("{f} fn {func}: {snippet}"))
        .collect();
    assert!(
        stale.is_empty(),
        "allowances that match nothing any more (remove them):\n{}",
        stale.join("\n")
    );
}

#[test]
fn the_check_catches_what_would_escape_and_spares_metadata() {
    let bad = [
        "fs::copy(src, root.join(rel))?;",
        "std::fs::write(upper.join(\"etc/passwd\"), b)?;",
        "let f = fs::File::open(dir.join(\"etc/passwd\"))?;",
        "fs::File::options().write(true).open(&target)?;",
        "std::os::unix::fs::symlink(t, &dst)?;",
        "std::os::unix::fs::lchown(&target, Some(uid), Some(gid))?;",
        "use std::fs::copy as cp;",
        "use std::fs::{File, read_to_string};",
        "use std::os::unix::fs::{symlink, PermissionsExt};",
        "use std::fs as f;",
        "if !merged.join(cwd).exists() {",
        "if target.is_dir() {",
        "Path::new(&p).join(x).is_file()",
        "let r = Root::open(&merged.join(\"etc\"))?;",
        "let v = View::open(&[d.join(src)])?;",
        "rustix::fs::mkdirat(rustix::fs::CWD, &p, mode)?;",
        "let md = p.symlink_metadata()?;",
        "for e in dir.read_dir()? {",
    ];
    for code in bad {
        let mut used = vec![false; ALLOWED.len()];
        let v = check(
            "build.rs",
            &format!("fn somewhere() {{\n    {code}\n}}\n"),
            &mut used,
        );
        assert!(!v.is_empty(), "not caught: {code}");
    }
    let good = [
        "if md.is_dir() {",
        "if p.md.is_file() && found.meta.is_dir() {",
        "} else if ft.is_symlink() {",
        "let v = View::open(&parent_dirs)?;",
        "let r = Root::open(ctx.root())?;",
        "up.write_file(&target, &mut f, 0o644, uid, gid, None)?;",
        "use std::fs::File;",
        "use std::os::unix::fs::{MetadataExt, PermissionsExt};",
        "// fs::copy(a, b) in a comment",
    ];
    for code in good {
        let mut used = vec![false; ALLOWED.len()];
        let v = check(
            "build.rs",
            &format!("fn somewhere() {{\n    {code}\n}}\n"),
            &mut used,
        );
        assert!(v.is_empty(), "false positive: {code}: {v:?}");
    }
    // An allowance is for its function only.
    let mut used = vec![false; ALLOWED.len()];
    let v = check(
        "layer.rs",
        "fn layer_dirs() {\n    fs::File::open(&blob)\n}\nfn other() {\n    fs::File::open(&blob)\n}\n",
        &mut used,
    );
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].function, "other");
}
