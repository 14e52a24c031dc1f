//! `ADD <git ref> <dest>`: recognising git URLs as BuildKit's Dockerfile frontend does
//! (`gitutil.ParseGitRef`), resolving a ref to a commit with `git ls-remote` (the cache key) and
//! checking a commit out with the `git` CLI.
//!
//! Recognised forms (anything else is not a git ref and ADD treats it as before):
//! - `git@host:owner/repo[.git]` (scp-like, a user is required), `ssh://...`, `git://...`,
//! - `http(s)://host/path.git`: only when the URL's path ends in `.git`,
//!
//! each with an optional fragment `#ref[:subdir]` (ref: branch, tag or commit sha; default the
//! remote's HEAD) or BuildKit's CSV form `##ref=...,subdir=...,commit=...`.
//!
//! git runs without a shell, with `GIT_TERMINAL_PROMPT=0`, stdin closed, the URL after `--`
//! where git allows it, and hooks and CRLF conversion off (the checkout is a function of the
//! commit only).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What went wrong with a git source. Every message names the URL (password redacted).
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("{url}: not a git url: {reason}")]
    Invalid { url: String, reason: String },
    /// A git URL whose fragment (`#ref:subdir`, `##key=value,...`) is wrong.
    #[error("{url}: invalid git fragment: {reason}")]
    Fragment { url: String, reason: String },
    #[error("git {url}: running git: {source}")]
    Spawn {
        url: String,
        #[source]
        source: io::Error,
    },
    #[error("git {url}: {what} failed: {stderr}")]
    Command {
        url: String,
        what: String,
        stderr: String,
    },
    #[error("git {url}: unknown ref {reference:?}: no branch or tag of that name on the remote")]
    UnknownRef { url: String, reference: String },
    #[error("git {url}: the remote has no HEAD (empty repository?)")]
    NoHead { url: String },
    #[error("git {url}: commit {commit} not found on the remote")]
    NoCommit { url: String, commit: String },
    #[error("git {url}: subdir {subdir:?}: {reason}")]
    Subdir {
        url: String,
        subdir: String,
        reason: String,
    },
    #[error("git {url}: invalid --checksum={checksum:?}: expected a commit sha (hex)")]
    BadChecksum { url: String, checksum: String },
    #[error("git {url}: expected checksum to match {expected}, got {got}")]
    ChecksumMismatch {
        url: String,
        expected: String,
        got: String,
    },
    #[error("git {url}: {path}: {source}")]
    Io {
        url: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

pub type Result<T, E = GitError> = std::result::Result<T, E>;

/// A parsed git source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitRef {
    /// The remote as given to git (the source without its fragment).
    pub remote: String,
    /// Branch, tag, full ref name or commit sha; `None`: the remote's HEAD.
    pub reference: Option<String>,
    /// A directory of the repository to copy instead of its root (no leading `/`).
    pub subdir: Option<String>,
    /// `commit=` of the CSV fragment form: the resolved commit must be this one.
    pub commit: Option<String>,
}

/// A ref resolved on the remote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The commit (annotated tags peeled).
    pub commit: String,
    /// The annotated tag object the ref named, if any.
    pub tag: Option<String>,
    /// The full ref name (`refs/heads/main`), `None` for a commit sha.
    pub ref_name: Option<String>,
}

/// A finished checkout.
#[derive(Debug)]
pub struct Checkout {
    /// The tree to copy: the work tree or its subdir (with `.git` only when kept).
    pub root: PathBuf,
    /// The commit's committer time (seconds since the epoch): the mtime of everything copied.
    pub commit_time: i64,
}

/// Whether `s` is a git source for ADD (BuildKit's rules, see the module docs). A git URL with
/// a bad fragment is one ([`parse`] then says what is wrong with it).
pub fn is_git_ref(s: &str) -> bool {
    !matches!(parse(s), Err(GitError::Invalid { .. }))
}

/// Parses a git source; an error says why `s` is not one.
pub fn parse(s: &str) -> Result<GitRef> {
    let invalid = |reason: &str| GitError::Invalid {
        url: redact(s),
        reason: reason.to_owned(),
    };
    if s.starts_with("./") || s.starts_with("../") {
        return Err(invalid("a relative path"));
    }
    let (remote, fragment) = match s.split_once('#') {
        Some((r, f)) => (r, Some(f)),
        None => (s, None),
    };
    if let Some((scheme, _)) = scheme_of(remote) {
        let scheme = scheme.to_ascii_lowercase();
        if !matches!(scheme.as_str(), "http" | "https" | "ssh" | "git") {
            return Err(invalid("unsupported scheme"));
        }
        let after = &remote[scheme.len() + 3..];
        let (authority, path) = match after.find('/') {
            Some(i) => (&after[..i], &after[i..]),
            None => (after, ""),
        };
        if authority.is_empty() || authority.rsplit('@').next().is_none_or(str::is_empty) {
            return Err(invalid("no host"));
        }
        if path.contains('?') {
            return Err(invalid(
                "query parameters are not supported (use #ref:subdir)",
            ));
        }
        if matches!(scheme.as_str(), "http" | "https") && !path.ends_with(".git") {
            return Err(invalid(
                "an http(s) url is a git repository only when its path ends in .git",
            ));
        }
        if path.is_empty() || path == "/" {
            return Err(invalid("no repository path"));
        }
    } else {
        // scp-like: user@host:path (BuildKit's sshutil regex, user required).
        let Some((user, rest)) = remote.split_once('@') else {
            return Err(invalid("neither a url nor user@host:path"));
        };
        let Some((host, path)) = rest.split_once(':') else {
            return Err(invalid("neither a url nor user@host:path"));
        };
        let user_ok = !user.is_empty()
            && user
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        let host_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !user_ok || !host_ok || path.is_empty() {
            return Err(invalid("neither a url nor user@host:path"));
        }
    }
    let invalid = |reason: &str| GitError::Fragment {
        url: redact(s),
        reason: reason.to_owned(),
    };
    let mut r = GitRef {
        remote: remote.to_owned(),
        reference: None,
        subdir: None,
        commit: None,
    };
    match fragment {
        None | Some("") => {}
        Some(f) if f.starts_with('#') => {
            for field in f[1..].split(',').filter(|x| !x.is_empty()) {
                let field = field.trim_matches('"');
                let Some((k, v)) = field.split_once('=') else {
                    return Err(invalid(&format!(
                        "fragment field {field:?} is not key=value"
                    )));
                };
                let v = (!v.is_empty()).then(|| v.to_owned());
                match k.to_ascii_lowercase().as_str() {
                    "ref" => r.reference = v,
                    "commit" => r.commit = v.map(|c| c.to_ascii_lowercase()),
                    "subdir" => r.subdir = v,
                    _ => {
                        return Err(invalid(&format!(
                            "unexpected key {k:?} in the fragment (supported: ref, commit, subdir)"
                        )));
                    }
                }
            }
            if r.reference.is_none() {
                r.reference.clone_from(&r.commit);
            }
        }
        Some(f) => {
            let (reference, subdir) = match f.split_once(':') {
                Some((a, b)) => (a, Some(b)),
                None => (f, None),
            };
            r.reference = (!reference.is_empty()).then(|| reference.to_owned());
            r.subdir = subdir.filter(|d| !d.is_empty()).map(str::to_owned);
        }
    }
    if let Some(d) = &r.subdir {
        let clean = clean_subdir(d).ok_or_else(|| invalid("subdir leaves the repository"))?;
        r.subdir = (!clean.is_empty()).then_some(clean);
    }
    Ok(r)
}

/// `scheme://` at the start (BuildKit: `^[a-zA-Z0-9]+://`).
fn scheme_of(s: &str) -> Option<(&str, &str)> {
    let i = s.find("://")?;
    let scheme = &s[..i];
    (!scheme.is_empty() && scheme.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then(|| (scheme, &s[i + 3..]))
}

/// `a/./b/` -> `a/b`; `None` when a `..` would leave the repository.
fn clean_subdir(d: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in d.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

/// The URL with any password replaced, for messages.
pub fn redact(url: &str) -> String {
    if let Some((scheme, rest)) = scheme_of(url) {
        let end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..end].rfind('@')
            && let Some(colon) = rest[..at].find(':')
        {
            return format!("{scheme}://{}:***{}", &rest[..colon], &rest[at..]);
        }
    }
    url.to_owned()
}

fn is_full_sha(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `git` with the environment every call uses.
fn git() -> Command {
    let mut c = Command::new("git");
    c.env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("LC_ALL", "C")
        .args([
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "core.autocrlf=false",
            "-c",
            "core.eol=lf",
            "-c",
            "advice.detachedHead=false",
            "-c",
            "protocol.file.allow=never",
            "-c",
            "protocol.ext.allow=never",
        ])
        .stdin(Stdio::null());
    if std::env::var_os("GIT_SSH_COMMAND").is_none() && std::env::var_os("GIT_SSH").is_none() {
        // Never wait for a password or a host key question.
        c.env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes");
    }
    c
}

/// Runs `cmd`; its stdout on success, else an error with the last lines of its stderr.
fn run(url: &str, what: &str, cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|source| GitError::Spawn {
            url: redact(url),
            source,
        })?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(4)..].join("; ");
    Err(GitError::Command {
        url: redact(url),
        what: what.to_owned(),
        stderr: if tail.is_empty() {
            out.status.to_string()
        } else {
            tail
        },
    })
}

/// Resolves the ref on the remote (`git ls-remote`): a commit sha is taken as is (no network);
/// a name follows git's order (`X`, `refs/X`, `refs/tags/X`, `refs/heads/X`); none is HEAD.
pub fn resolve(r: &GitRef) -> Result<Resolved> {
    let url = &r.remote;
    let reference = match &r.reference {
        Some(x) if is_full_sha(x) => {
            return Ok(Resolved {
                commit: x.to_ascii_lowercase(),
                tag: None,
                ref_name: None,
            });
        }
        Some(x) => x.clone(),
        None => "HEAD".to_owned(),
    };
    let out = run(
        url,
        "ls-remote",
        git()
            .args(["ls-remote", "--"])
            .arg(url)
            .arg(&reference)
            .arg(format!("{reference}^{{}}")),
    )?;
    let refs: Vec<(&str, &str)> = out
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(sha, name)| (name, sha))
        .collect();
    let get = |name: &str| refs.iter().find(|(n, _)| *n == name).map(|(_, s)| *s);
    let candidates = [
        reference.clone(),
        format!("refs/{reference}"),
        format!("refs/tags/{reference}"),
        format!("refs/heads/{reference}"),
    ];
    for name in candidates {
        if let Some(sha) = get(&name) {
            let peeled = get(&format!("{name}^{{}}"));
            return Ok(Resolved {
                commit: peeled.unwrap_or(sha).to_ascii_lowercase(),
                tag: peeled.map(|_| sha.to_ascii_lowercase()),
                ref_name: (name != "HEAD").then_some(name),
            });
        }
    }
    Err(if r.reference.is_none() {
        GitError::NoHead { url: redact(url) }
    } else {
        GitError::UnknownRef {
            url: redact(url),
            reference,
        }
    })
}

/// Checks `checksum` (ADD --checksum) and the fragment's `commit=` against the resolved ref:
/// each must be a hex prefix of the commit (or of the annotated tag), as BuildKit accepts.
pub fn verify(r: &GitRef, resolved: &Resolved, checksum: Option<&str>) -> Result<()> {
    for want in [checksum, r.commit.as_deref()].into_iter().flatten() {
        let w = want.to_ascii_lowercase();
        if w.is_empty() || !w.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(GitError::BadChecksum {
                url: redact(&r.remote),
                checksum: want.to_owned(),
            });
        }
        let ok = resolved.commit.starts_with(&w)
            || resolved.tag.as_deref().is_some_and(|t| t.starts_with(&w));
        if !ok {
            return Err(GitError::ChecksumMismatch {
                url: redact(&r.remote),
                expected: want.to_owned(),
                got: match &resolved.tag {
                    Some(t) => format!("{t} or {}", resolved.commit),
                    None => resolved.commit.clone(),
                },
            });
        }
    }
    Ok(())
}

/// Checks `commit` of `r` out into `work` (an empty directory): `git init`, a shallow fetch of
/// the commit (falling back to a full fetch when the server refuses that, e.g. a dumb http
/// server), checkout. Without `keep_git_dir` the `.git` directory is removed. With it a branch
/// ref is checked out as that branch (else HEAD is detached) and `origin` is the URL.
pub fn checkout(
    r: &GitRef,
    resolved: &Resolved,
    work: &Path,
    keep_git_dir: bool,
) -> Result<Checkout> {
    let url = &r.remote;
    let commit = &resolved.commit;
    let tree = work.join("tree");
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        let url = redact(url);
        move |source| GitError::Io { url, path, source }
    };
    fs::create_dir_all(&tree).map_err(io_err(&tree))?;
    let in_tree = || {
        let mut c = git();
        c.arg("-C").arg(&tree);
        c
    };
    run(url, "init", in_tree().args(["init", "-q"]))?;
    run(
        url,
        "remote add",
        in_tree().args(["remote", "add", "--", "origin"]).arg(url),
    )?;
    let fetch = |args: &[&str]| -> Result<String> {
        run(
            url,
            "fetch",
            in_tree()
                .args(["fetch", "-q", "--no-tags", "--no-write-fetch-head"])
                .args(args),
        )
    };
    let mut attempts: Vec<Vec<&str>> = vec![
        vec!["--depth=1", "origin", commit.as_str()],
        vec!["origin", commit.as_str()],
    ];
    if let Some(name) = &resolved.ref_name {
        attempts.push(vec!["origin", name.as_str()]);
    }
    attempts.push(vec![
        "origin",
        "+refs/heads/*:refs/remotes/origin/*",
        "+refs/tags/*:refs/tags/*",
    ]);
    let mut last_err = None;
    for a in &attempts {
        match fetch(a) {
            Ok(_) => {
                if has_commit(url, &tree, commit) {
                    last_err = None;
                    break;
                }
                last_err = Some(GitError::NoCommit {
                    url: redact(url),
                    commit: commit.clone(),
                });
            }
            Err(e) => last_err = Some(e),
        }
    }
    if let Some(e) = last_err {
        return Err(match e {
            // A sha the server does not have at all: say that, not the last fetch's words.
            GitError::Command { .. } if resolved.ref_name.is_none() => GitError::NoCommit {
                url: redact(url),
                commit: commit.clone(),
            },
            e => e,
        });
    }
    let branch = resolved
        .ref_name
        .as_deref()
        .and_then(|n| n.strip_prefix("refs/heads/"));
    match (keep_git_dir, branch) {
        (true, Some(b)) => run(
            url,
            "checkout",
            in_tree().args(["checkout", "-q", "-B", b, commit.as_str(), "--"]),
        )?,
        _ => run(
            url,
            "checkout",
            in_tree().args(["checkout", "-q", "--detach", commit.as_str(), "--"]),
        )?,
    };
    let time = run(
        url,
        "log",
        in_tree().args(["log", "-1", "--format=%ct", commit.as_str(), "--"]),
    )?;
    let commit_time: i64 = time.trim().parse().map_err(|_| GitError::Command {
        url: redact(url),
        what: "reading the commit time".to_owned(),
        stderr: format!("unexpected output {:?}", time.trim()),
    })?;
    if !keep_git_dir {
        let g = tree.join(".git");
        fs::remove_dir_all(&g).map_err(io_err(&g))?;
    }
    let mut root = tree.clone();
    if let Some(sub) = &r.subdir {
        // Every component a real directory (no symlink out of the checkout), as BuildKit checks.
        for c in sub.split('/') {
            root.push(c);
            let md = fs::symlink_metadata(&root).map_err(|e| GitError::Subdir {
                url: redact(url),
                subdir: sub.clone(),
                reason: if e.kind() == io::ErrorKind::NotFound {
                    format!("not found in commit {commit}")
                } else {
                    e.to_string()
                },
            })?;
            if !md.is_dir() {
                return Err(GitError::Subdir {
                    url: redact(url),
                    subdir: sub.clone(),
                    reason: format!("not a directory in commit {commit}"),
                });
            }
        }
    }
    Ok(Checkout { root, commit_time })
}

fn has_commit(url: &str, tree: &Path, commit: &str) -> bool {
    let mut c = git();
    c.arg("-C")
        .arg(tree)
        .args(["cat-file", "-e", &format!("{commit}^{{commit}}")]);
    run(url, "cat-file", &mut c).is_ok()
}

/// Sets the mtime (and atime) of `path` itself, symlinks included.
pub fn set_mtime(path: &Path, secs: i64) -> io::Result<()> {
    use rustix::fs::{AtFlags, CWD, Timespec, Timestamps, utimensat};
    let t = Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    utimensat(
        CWD,
        path,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(remote: &str, reference: Option<&str>, subdir: Option<&str>) -> GitRef {
        GitRef {
            remote: remote.to_owned(),
            reference: reference.map(str::to_owned),
            subdir: subdir.map(str::to_owned),
            commit: None,
        }
    }

    /// BuildKit's TestParseGitRef table (the forms ADD accepts), plus the scp and ssh forms.
    #[test]
    fn parses_buildkit_cases() {
        let cases: Vec<(&str, Option<GitRef>)> = vec![
            ("https://example.com/", None),
            ("https://example.com/foo", None),
            (
                "https://example.com/foo.git",
                Some(r("https://example.com/foo.git", None, None)),
            ),
            (
                "https://example.com/foo.git#deadbeef",
                Some(r("https://example.com/foo.git", Some("deadbeef"), None)),
            ),
            (
                "https://example.com/foo.git#release/1.2",
                Some(r("https://example.com/foo.git", Some("release/1.2"), None)),
            ),
            ("https://example.com/foo.git/", None),
            ("https://example.com/foo.git.bar", None),
            (
                "git://example.com/foo",
                Some(r("git://example.com/foo", None, None)),
            ),
            // Indistinguishable from a local path: never a git source for ADD.
            ("github.com/moby/buildkit", None),
            ("custom.xyz/moby/buildkit.git", None),
            ("https://github.com/moby/buildkit", None),
            (
                "https://github.com/moby/buildkit.git",
                Some(r("https://github.com/moby/buildkit.git", None, None)),
            ),
            (
                "https://foo:bar@github.com/moby/buildkit.git",
                Some(r(
                    "https://foo:bar@github.com/moby/buildkit.git",
                    None,
                    None,
                )),
            ),
            (
                "git@github.com:moby/buildkit",
                Some(r("git@github.com:moby/buildkit", None, None)),
            ),
            (
                "git@github.com:moby/buildkit.git",
                Some(r("git@github.com:moby/buildkit.git", None, None)),
            ),
            (
                "git@bitbucket.org:atlassianlabs/atlassian-docker.git",
                Some(r(
                    "git@bitbucket.org:atlassianlabs/atlassian-docker.git",
                    None,
                    None,
                )),
            ),
            (
                "https://github.com/foo/bar.git#baz/qux:quux/quuz",
                Some(r(
                    "https://github.com/foo/bar.git",
                    Some("baz/qux"),
                    Some("quux/quuz"),
                )),
            ),
            ("http://github.com/docker/docker.git:#branch", None),
            (
                "https://github.com/docker/docker.git#:myfolder",
                Some(r(
                    "https://github.com/docker/docker.git",
                    None,
                    Some("myfolder"),
                )),
            ),
            ("./.git", None),
            (".git", None),
            (
                "https://example.com/foo.git##ref=release/1.2,subdir=/subdir",
                Some(r(
                    "https://example.com/foo.git",
                    Some("release/1.2"),
                    Some("subdir"),
                )),
            ),
            (
                "ssh://git@example.com:2222/org/repo.git#v1.0:docs",
                Some(r(
                    "ssh://git@example.com:2222/org/repo.git",
                    Some("v1.0"),
                    Some("docs"),
                )),
            ),
            (
                "git@github.com:moby/buildkit.git#main:frontend",
                Some(r(
                    "git@github.com:moby/buildkit.git",
                    Some("main"),
                    Some("frontend"),
                )),
            ),
            (
                "GIT://example.com/foo.git#v1",
                Some(r("GIT://example.com/foo.git", Some("v1"), None)),
            ),
            (
                "git://127.0.0.1:9418/repo.git#v1",
                Some(r("git://127.0.0.1:9418/repo.git", Some("v1"), None)),
            ),
            (
                "http://127.0.0.1:8080/repo.git",
                Some(r("http://127.0.0.1:8080/repo.git", None, None)),
            ),
            ("ftp://example.com/foo.git", None),
            ("file:///srv/foo.git", None),
            ("https://example.com/foo.git?ref=main", None),
            ("http://example.com/file.tar.gz", None),
            ("src/app.tar", None),
            ("host:path", None),
            ("a b@host:path", None),
        ];
        for (s, want) in cases {
            let got = parse(s).ok();
            assert_eq!(got, want, "{s}");
            assert_eq!(is_git_ref(s), want.is_some(), "{s}");
        }
        let e = parse("https://example.com/foo.git#main:../../etc")
            .unwrap_err()
            .to_string();
        assert!(e.contains("subdir leaves the repository"), "{e}");
    }

    #[test]
    fn csv_fragment_commit_pins_and_defaults_the_ref() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let g = parse(&format!("https://h/r.git##commit={sha}")).unwrap();
        assert_eq!(g.reference.as_deref(), Some(sha));
        assert_eq!(g.commit.as_deref(), Some(sha));
        let e = parse("https://h/r.git##tag=v1").unwrap_err().to_string();
        assert!(e.contains("unexpected key \"tag\""), "{e}");
        assert!(
            e.starts_with("https://h/r.git##tag=v1: invalid git fragment"),
            "{e}"
        );
        // Still a git source: ADD reports the fragment instead of downloading the URL.
        assert!(is_git_ref("https://h/r.git##tag=v1"));
    }

    #[test]
    fn subdirs_are_cleaned() {
        let g = parse("https://h/r.git#main:./a//b/").unwrap();
        assert_eq!(g.subdir.as_deref(), Some("a/b"));
        let g = parse("https://h/r.git#main:/").unwrap();
        assert_eq!(g.subdir, None);
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("https://u:secret@h/r.git"), "https://u:***@h/r.git");
        assert_eq!(redact("https://u@h/r.git"), "https://u@h/r.git");
        assert_eq!(redact("git@h:r.git"), "git@h:r.git");
        let e = parse("https://u:secret@h/r").unwrap_err().to_string();
        assert!(!e.contains("secret"), "{e}");
    }

    #[test]
    fn checksum_is_a_prefix_of_the_commit_or_tag() {
        let g = parse("https://h/r.git#v1").unwrap();
        let res = Resolved {
            commit: "abcdef0000000000000000000000000000000000".into(),
            tag: Some("1234560000000000000000000000000000000000".into()),
            ref_name: Some("refs/tags/v1".into()),
        };
        verify(&g, &res, None).unwrap();
        verify(&g, &res, Some("abcdef")).unwrap();
        verify(&g, &res, Some("ABCDEF0000000000000000000000000000000000")).unwrap();
        verify(&g, &res, Some("123456")).unwrap();
        let e = verify(&g, &res, Some("abcd01")).unwrap_err().to_string();
        assert!(
            e.contains("expected checksum to match abcd01") && e.contains("abcdef00"),
            "{e}"
        );
        let e = verify(&g, &res, Some("sha256:ab")).unwrap_err().to_string();
        assert!(e.contains("invalid --checksum"), "{e}");
    }

    #[test]
    fn a_full_sha_resolves_without_the_network() {
        let sha = "0123456789ABCDEF0123456789ABCDEF01234567";
        let g = parse(&format!("https://nonexistent.invalid/r.git#{sha}")).unwrap();
        let res = resolve(&g).unwrap();
        assert_eq!(res.commit, sha.to_ascii_lowercase());
        assert_eq!(res.ref_name, None);
    }
}
