//! `ADD <git ref>` end to end: a repository made here, served by `git daemon` (git://) and by a
//! dumb-HTTP static file server (http://.../repo.git), built with `hoist build` into a private
//! HOIST_HOME and checked through `--output type=local`.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hoist_testsupport::text;

const HOIST: &str = env!("CARGO_BIN_EXE_hoist");

hoist_testsupport::home_type!();

impl Home {
    /// A private HOIST_HOME with busybox imported as `busybox:latest`.
    fn new() -> Home {
        Home(hoist_testsupport::Home::busybox(HOIST))
    }

    /// Builds `dockerfile` into a fresh local output; the output, the build's progress text.
    fn build(&self, dockerfile: &str) -> (Output, PathBuf) {
        let ctx = tempfile::tempdir_in(self.dir.path()).unwrap().keep();
        std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
        let out = ctx.join("out");
        let spec = format!("type=local,dest={}", out.display());
        let o = self.run(&[
            "build",
            "--progress",
            "plain",
            "-o",
            &spec,
            ctx.to_str().unwrap(),
        ]);
        (o, out)
    }

    fn build_ok(&self, dockerfile: &str) -> (String, PathBuf) {
        let (o, out) = self.build(dockerfile);
        assert!(o.status.success(), "build failed:\n{}", text(&o));
        (text(&o), out)
    }
}

/// Lines of plain progress for the step whose title contains `step`.
fn step_status(out: &str, step: &str) -> String {
    let n = out
        .lines()
        .find(|l| l.starts_with('#') && l.contains(step) && l.contains('['))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no step {step:?} in:\n{out}"))
        .to_owned();
    out.lines()
        .filter(|l| l.starts_with(&format!("{n} ")))
        .map(|l| l[n.len() + 1..].to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

fn cached(out: &str, step: &str) -> bool {
    step_status(out, step).lines().any(|l| l == "CACHED")
}

fn git(dir: &Path, args: &[&str]) -> String {
    let o = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "git {args:?}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

/// A work repository and its bare copy `<serve>/repo.git` that the servers export.
struct Repo {
    _dir: tempfile::TempDir,
    work: PathBuf,
    bare: PathBuf,
    serve: PathBuf,
}

impl Repo {
    /// main: commit 1 (README "one", run.sh 0755, docs/guide.txt, link -> README), tagged v1
    /// (annotated), then commit 2 (README "two"); branch feature: main's commit 1 plus
    /// sub/inner/file.txt.
    fn new() -> Repo {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        let serve = dir.path().join("srv");
        std::fs::create_dir_all(&work).unwrap();
        std::fs::create_dir_all(&serve).unwrap();
        git(&work, &["init", "-q", "-b", "main"]);
        std::fs::write(work.join("README"), "one\n").unwrap();
        std::fs::write(work.join("run.sh"), "#!/bin/sh\necho hi\n").unwrap();
        std::fs::set_permissions(
            work.join("run.sh"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        std::fs::create_dir(work.join("docs")).unwrap();
        std::fs::write(work.join("docs/guide.txt"), "guide\n").unwrap();
        std::os::unix::fs::symlink("README", work.join("link")).unwrap();
        git(&work, &["add", "-A"]);
        git(
            &work,
            &["commit", "-qm", "one", "--date=2001-02-03T04:05:06Z"],
        );
        git(&work, &["tag", "-a", "v1", "-m", "v1"]);
        git(&work, &["checkout", "-q", "-b", "feature"]);
        std::fs::create_dir_all(work.join("sub/inner")).unwrap();
        std::fs::write(work.join("sub/inner/file.txt"), "feature\n").unwrap();
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-qm", "feature"]);
        git(&work, &["checkout", "-q", "main"]);
        std::fs::write(work.join("README"), "two\n").unwrap();
        git(&work, &["commit", "-qam", "two"]);
        let bare = serve.join("repo.git");
        git(
            dir.path(),
            &["clone", "-q", "--bare", "work", bare.to_str().unwrap()],
        );
        git(&bare, &["update-server-info"]);
        Repo {
            _dir: dir,
            work,
            bare,
            serve,
        }
    }

    fn sha(&self, rev: &str) -> String {
        git(&self.work, &["rev-parse", &format!("{rev}^{{commit}}")])
    }

    fn commit_time(&self, rev: &str) -> i64 {
        git(&self.work, &["log", "-1", "--format=%ct", rev])
            .parse()
            .unwrap()
    }

    /// A new commit on main, pushed to the served copy.
    fn advance_main(&self, readme: &str) {
        std::fs::write(self.work.join("README"), readme).unwrap();
        git(&self.work, &["commit", "-qam", "more"]);
        git(
            &self.work,
            &["push", "-q", self.bare.to_str().unwrap(), "main"],
        );
        git(&self.bare, &["update-server-info"]);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `git daemon` exporting `base`, killed on drop.
struct Daemon {
    child: Child,
    port: u16,
}

impl Daemon {
    fn start(base: &Path) -> Daemon {
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new("git")
                .arg("daemon")
                .arg("--export-all")
                .arg(format!("--base-path={}", base.display()))
                .arg(format!("--port={port}"))
                .arg("--listen=127.0.0.1")
                .arg("--reuseaddr")
                .arg(base)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("git daemon");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Daemon { child, port };
                }
                if child.try_wait().unwrap().is_some() {
                    break; // port taken meanwhile: try another
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("git daemon did not start");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A static file server for `root` (git's dumb HTTP protocol needs nothing more); stops on drop.
struct Static {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl Static {
    fn start(root: &Path) -> Static {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let (root, flag) = (root.to_path_buf(), stop.clone());
        std::thread::spawn(move || {
            for s in l.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(s) = s else { continue };
                let root = root.clone();
                std::thread::spawn(move || serve_one(&root, s));
            }
        });
        Static { port, stop }
    }
}

impl Drop for Static {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Answers GET requests on one connection (keep-alive) with files under `root`.
fn serve_one(root: &Path, s: TcpStream) {
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                break;
            }
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/");
        let path = path.split('?').next().unwrap_or("");
        let file = (!path.contains(".."))
            .then(|| root.join(path.trim_start_matches('/')))
            .filter(|p| p.is_file());
        let res = match file {
            Some(p) => {
                let body = std::fs::read(p).unwrap();
                write!(
                    w,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .and_then(|_| w.write_all(&body))
            }
            None => write!(w, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
        };
        if res.is_err() {
            return;
        }
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn add_from_git_daemon_refs_subdirs_keep_git_dir_and_cache() {
    let repo = Repo::new();
    let d = Daemon::start(&repo.serve);
    let h = Home::new();
    let url = format!("git://127.0.0.1:{}/repo.git", d.port);
    let sha1 = repo.sha("v1");
    let df = format!(
        "FROM busybox:latest
ADD {url}#v1 /src/tag
ADD {url}#{sha1} /src/sha
ADD {url}#feature:sub /src/feat
ADD {url} /src/default
ADD --keep-git-dir=true {url}#main /src/keep
"
    );
    let (_, out) = h.build_ok(&df);
    let main_sha = repo.sha("main");

    // The default branch (remote HEAD), without .git.
    let def = out.join("src/default");
    assert_eq!(read(&def.join("README")), "two\n");
    assert_eq!(read(&def.join("docs/guide.txt")), "guide\n");
    assert!(!def.join(".git").exists(), ".git is dropped by default");
    assert!(!def.join("sub").exists(), "feature's files are not on main");
    // Modes and symlinks as in git, owner root, mtime = the commit's time.
    let md = |p: &Path| std::fs::symlink_metadata(p).unwrap();
    assert_eq!(md(&def.join("run.sh")).mode() & 0o7777, 0o755);
    assert_eq!(md(&def.join("README")).mode() & 0o7777, 0o644);
    assert!(md(&def.join("link")).file_type().is_symlink());
    assert_eq!(
        std::fs::read_link(def.join("link")).unwrap(),
        Path::new("README")
    );
    assert_eq!(
        (md(&def.join("README")).uid(), md(&def.join("README")).gid()),
        (0, 0)
    );
    let t = repo.commit_time("main");
    for p in ["README", "docs", "docs/guide.txt", "run.sh"] {
        assert_eq!(md(&def.join(p)).mtime(), t, "mtime of {p}");
    }

    // A tag (annotated) and a commit sha: the first commit's tree.
    assert_eq!(read(&out.join("src/tag/README")), "one\n");
    assert_eq!(read(&out.join("src/sha/README")), "one\n");
    assert_eq!(
        md(&out.join("src/tag/README")).mtime(),
        repo.commit_time("v1")
    );
    // A branch and a subdir: the subdir's contents become the destination's.
    assert_eq!(read(&out.join("src/feat/inner/file.txt")), "feature\n");
    assert!(!out.join("src/feat/README").exists());
    assert!(!out.join("src/feat/.git").exists());
    // --keep-git-dir: a repository on the branch, at the commit.
    let keep = out.join("src/keep");
    assert!(keep.join(".git").is_dir());
    assert_eq!(git(&keep, &["rev-parse", "HEAD"]), main_sha);
    assert_eq!(git(&keep, &["symbolic-ref", "--short", "HEAD"]), "main");
    assert_eq!(git(&keep, &["status", "--porcelain"]), "");

    // Unchanged refs: every ADD is a cache hit.
    let (again, _) = h.build_ok(&df);
    for step in [
        "/src/tag",
        "/src/sha",
        "/src/feat",
        "/src/default",
        "/src/keep",
    ] {
        assert!(cached(&again, step), "{step} cached:\n{again}");
    }

    // A new commit on main: what follows main misses and shows it; fixed refs stay hits.
    repo.advance_main("three\n");
    let (moved, out) = h.build_ok(&df);
    for step in ["/src/tag", "/src/sha", "/src/feat"] {
        assert!(cached(&moved, step), "{step} cached:\n{moved}");
    }
    assert!(!cached(&moved, "/src/default"), "{moved}");
    assert_eq!(read(&out.join("src/default/README")), "three\n");
    assert_eq!(
        git(&out.join("src/keep"), &["rev-parse", "HEAD"]),
        repo.sha("main")
    );
}

#[test]
fn add_from_dumb_http_with_checksum_chown_chmod_and_errors() {
    let repo = Repo::new();
    let srv = Static::start(&repo.serve);
    let h = Home::new();
    let url = format!("http://127.0.0.1:{}/repo.git", srv.port);
    let main_sha = repo.sha("main");
    let sha1 = repo.sha("v1");

    // Default branch and a sha over dumb HTTP (no shallow fetch there: the full fetch fallback);
    // --checksum equal to the commit (a prefix is accepted too, as BuildKit does).
    let df = format!(
        "FROM busybox:latest
ADD --checksum={main_sha} {url} /web/default
ADD --checksum={} {url}#{sha1}:docs /web/docs
ADD --chown=7:8 --chmod=700 {url}#v1 /web/owned
",
        &sha1[..12]
    );
    let (_, out) = h.build_ok(&df);
    assert_eq!(read(&out.join("web/default/README")), "two\n");
    assert!(!out.join("web/default/.git").exists());
    assert_eq!(read(&out.join("web/docs/guide.txt")), "guide\n");
    assert!(!out.join("web/docs/README").exists());
    let md = std::fs::metadata(out.join("web/owned/README")).unwrap();
    assert_eq!((md.uid(), md.gid(), md.mode() & 0o7777), (7, 8, 0o700));
    let md = std::fs::metadata(out.join("web/owned/docs")).unwrap();
    assert_eq!((md.uid(), md.gid()), (7, 8));

    // --checksum naming another commit: a clear error with both shas and the URL.
    let (o, _) = h.build(&format!(
        "FROM busybox:latest\nADD --checksum={sha1} {url}#main /x\n"
    ));
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains(&format!(
            "expected checksum to match {sha1}, got {main_sha}"
        )) && t.contains(&url),
        "{t}"
    );

    // An unknown ref: the error names the URL and the ref.
    let (o, _) = h.build(&format!(
        "FROM busybox:latest\nADD {url}#no-such-branch /x\n"
    ));
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains(&format!("git {url}: unknown ref \"no-such-branch\"")),
        "{t}"
    );

    // A sha the remote does not have: named, with the URL.
    let missing = "0123456789012345678901234567890123456789";
    let (o, _) = h.build(&format!("FROM busybox:latest\nADD {url}#{missing} /x\n"));
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains(&format!(
            "git {url}: commit {missing} not found on the remote"
        )),
        "{t}"
    );

    // A subdir that is not in the commit.
    let (o, _) = h.build(&format!("FROM busybox:latest\nADD {url}#main:nope /x\n"));
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("subdir \"nope\": not found in commit"), "{t}");
}
