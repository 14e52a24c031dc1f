//! `hoist build` with every kind of `RUN --mount` (BuildKit's Dockerfile reference, "RUN
//! --mount"), proved by real builds on a busybox base: cache mounts (persistence, ids, sharing
//! modes, owner and mode, seeding from a stage), bind mounts (read-only by default, rw writes kept
//! away from the context and the layer, sources confined to their root), secrets (private copies
//! with mode and owner), tmpfs size and ssh agent forwarding.
//!
//! Needs root (the builder mounts overlays and runs containers), as CI runs.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use hoist_testsupport::text;

const HOIST: &str = env!("CARGO_BIN_EXE_hoist");

hoist_testsupport::home_type!();

impl Home {
    fn new() -> Home {
        Home(hoist_testsupport::Home::busybox(HOIST))
    }

    /// A fresh context directory holding `dockerfile` and `files`.
    fn context(&self, dockerfile: &str, files: &[(&str, &str)]) -> PathBuf {
        let n = self.next();
        let ctx = self.dir.path().join(format!("ctx{n}"));
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
        for (p, c) in files {
            let p = ctx.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, c).unwrap();
        }
        ctx
    }

    /// `hoist build --progress plain -o type=local,dest=CTX/out EXTRA CTX`.
    fn build_cmd(&self, ctx: &Path, extra: &[&str]) -> Command {
        let dest = format!("type=local,dest={}", ctx.join("out").display());
        let mut args = vec!["build", "--progress", "plain", "-o", &dest];
        args.extend_from_slice(extra);
        let c = ctx.to_str().unwrap();
        args.push(c);
        let mut cmd = self.cmd(&args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Builds; returns the output directory (the image's files) and the build's output.
    fn build(&self, ctx: &Path, extra: &[&str]) -> (PathBuf, String) {
        let o = self.build_cmd(ctx, extra).output().unwrap();
        assert!(
            o.status.success(),
            "build of {} failed:\n{}",
            ctx.display(),
            text(&o)
        );
        (ctx.join("out"), text(&o))
    }

    /// Builds a Dockerfile that must fail; returns the output.
    fn build_fails(&self, ctx: &Path, extra: &[&str]) -> String {
        let o = self.build_cmd(ctx, extra).output().unwrap();
        assert!(
            !o.status.success(),
            "build of {} succeeded:\n{}",
            ctx.display(),
            text(&o)
        );
        text(&o)
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn cache_mount_persists_across_builds_and_ids_do_not_share() {
    let h = Home::new();
    let a = h.context(
        "FROM busybox\nRUN --mount=type=cache,target=/c echo first >> /c/log\n",
        &[],
    );
    let (out, _) = h.build(&a, &[]);
    // The mount point is not part of the layer, nor is what went into the cache.
    assert!(
        !out.join("c").exists(),
        "the cache's mount point reached the image"
    );

    let b = h.context(
        "FROM busybox\nRUN --mount=type=cache,target=/c cat /c/log > /seen\n",
        &[],
    );
    let (out, _) = h.build(&b, &[]);
    assert_eq!(read(&out.join("seen")), "first\n");

    // Another id, same target: an empty cache of its own.
    let c = h.context(
        "FROM busybox\nRUN --mount=type=cache,id=other,target=/c ls -A /c > /seen\n",
        &[],
    );
    let (out, _) = h.build(&c, &[]);
    assert_eq!(read(&out.join("seen")), "");

    // The same id at two targets is one cache; ids that differ by a path segment do not share.
    let d = h.context(
        "FROM busybox\n\
         RUN --mount=type=cache,id=ab,target=/a echo shared > /a/f\n\
         RUN --mount=type=cache,id=ab,target=/b cat /b/f > /seen\n\
         RUN --mount=type=cache,id=ab/../ab2,target=/x ls -A /x > /seen2\n",
        &[],
    );
    let (out, _) = h.build(&d, &[]);
    assert_eq!(read(&out.join("seen")), "shared\n");
    assert_eq!(read(&out.join("seen2")), "");

    // `builder prune --keep-storage` keeps cache mounts; a full prune empties them, as docker's.
    let prune = |extra: &[&str]| {
        let mut args = vec!["builder", "prune", "-f"];
        args.extend_from_slice(extra);
        let o = h.cmd(&args).output().unwrap();
        assert!(o.status.success(), "{}", text(&o));
    };
    prune(&["--keep-storage", "1GB"]);
    let (out, _) = h.build(&b, &["--no-cache"]);
    assert_eq!(read(&out.join("seen")), "first\n");
    prune(&[]);
    let e = h.context(
        "FROM busybox\nRUN --mount=type=cache,target=/c ls -A /c > /seen\n",
        &[],
    );
    let (out, _) = h.build(&e, &[]);
    assert_eq!(read(&out.join("seen")), "");
}

#[test]
fn cache_mount_uid_gid_mode_and_ro() {
    let h = Home::new();
    let ctx = h.context(
        "FROM busybox\n\
         RUN --mount=type=cache,target=/c,uid=1000,gid=1001,mode=0750 stat -c '%u %g %a' /c > /st\n\
         RUN --mount=type=cache,target=/d stat -c '%u %g %a' /d > /st2\n\
         RUN --mount=type=cache,id=ro,target=/r,ro sh -c 'if touch /r/x 2>/dev/null; then echo writable; else echo read-only; fi' > /st3\n\
         RUN --mount=type=cache,id=dup,target=/a,sharing=locked --mount=type=cache,id=dup,target=/b,sharing=locked sh -c 'echo twice > /a/f; cat /b/f > /st4'\n",
        &[],
    );
    let (out, _) = h.build(&ctx, &[]);
    assert_eq!(read(&out.join("st")), "1000 1001 750\n");
    assert_eq!(read(&out.join("st2")), "0 0 755\n");
    assert_eq!(read(&out.join("st3")), "read-only\n");
    // One cache named twice in a RUN (locked): one directory, and no wait on itself.
    assert_eq!(read(&out.join("st4")), "twice\n");
}

/// Two builds at once whose RUN appends `start-X`, runs `middle` and appends `end-X` to one
/// cache; returns the cache's log afterwards.
fn concurrent_log(h: &Home, id: &str, sharing: &str, middle: &str) -> Vec<String> {
    let mut children: Vec<(PathBuf, Child)> = Vec::new();
    for who in ["one", "two"] {
        let ctx = h.context(
            &format!(
                "FROM busybox\nRUN --mount=type=cache,id={id},target=/c,sharing={sharing} \
                 sh -c 'echo start-{who} >> /c/log; {middle}; echo end-{who} >> /c/log'\n"
            ),
            &[],
        );
        let child = h.build_cmd(&ctx, &[]).spawn().unwrap();
        children.push((ctx, child));
    }
    for (ctx, child) in children {
        let o = child.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "build of {} failed:\n{}",
            ctx.display(),
            text(&o)
        );
    }
    let ctx = h.context(
        &format!("FROM busybox\nRUN --mount=type=cache,id={id},target=/c cat /c/log > /log\n"),
        &[],
    );
    let (out, _) = h.build(&ctx, &[]);
    read(&out.join("log")).lines().map(str::to_owned).collect()
}

#[test]
fn cache_mount_locked_serialises_concurrent_builds() {
    let h = Home::new();
    let log = concurrent_log(&h, "lk", "locked", "sleep 2");
    assert_eq!(log.len(), 4, "{log:?}");
    for pair in log.chunks(2) {
        let who = pair[0].strip_prefix("start-").expect("a start line first");
        assert_eq!(pair[1], format!("end-{who}"), "interleaved: {log:?}");
    }
    // The control: shared lets both run at once, so their lines interleave (which is what makes
    // the locked assertion above meaningful). Each waits (bounded) until both have started,
    // which under locked would never happen.
    let log = concurrent_log(
        &h,
        "sh",
        "shared",
        "i=0; until [ $(grep -c start /c/log) -ge 2 ] || [ $i -ge 1200 ]; do sleep 0.1; i=$((i+1)); done",
    );
    assert_eq!(log.len(), 4, "{log:?}");
    assert!(
        log[0].starts_with("start-") && log[1].starts_with("start-"),
        "shared builds did not overlap: {log:?}"
    );
}

#[test]
fn cache_mount_private_gives_a_concurrent_build_its_own_dir() {
    let h = Home::new();
    let mut children = Vec::new();
    for who in ["one", "two"] {
        // Each marks its instance, then waits (bounded) for the test's `go`: the test writes it
        // once both marks are on disk, so both RUNs certainly hold their mounts at once.
        let ctx = h.context(
            &format!(
                "FROM busybox\nRUN --mount=type=cache,id=pv,target=/c,sharing=private \
                 sh -c 'touch /c/mark-{who}; i=0; until [ -e /c/go ] || [ $i -ge 1200 ]; \
                 do sleep 0.1; i=$((i+1)); done; ls /c > /seen'\n"
            ),
            &[],
        );
        let child = h.build_cmd(&ctx, &[]).spawn().unwrap();
        children.push((who, ctx, child));
    }
    let mounts = h.dir.path().join("home/builder/mounts");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let marks = loop {
        let marks = find_named(&mounts, &["mark-one", "mark-two"]);
        if marks.len() == 2 || std::time::Instant::now() > deadline {
            break marks;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(
        marks.len(),
        2,
        "both builds' RUNs never held the cache at once"
    );
    assert_ne!(
        marks[0].parent(),
        marks[1].parent(),
        "private mounts shared one directory"
    );
    for m in &marks {
        std::fs::write(m.with_file_name("go"), "").unwrap();
    }
    for (who, ctx, child) in children {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "build {who} failed:\n{}", text(&o));
        assert_eq!(read(&ctx.join("out/seen")), format!("go\nmark-{who}\n"));
    }
    // Afterwards, with nobody else using it, a private mount gets the first instance again.
    let ctx = h.context(
        "FROM busybox\nRUN --mount=type=cache,id=pv,target=/c,sharing=private ls /c > /seen\n",
        &[],
    );
    let (out, _) = h.build(&ctx, &[]);
    let seen = read(&out.join("seen"));
    assert!(
        seen == "go\nmark-one\n" || seen == "go\nmark-two\n",
        "first instance holds one mark: {seen:?}"
    );
}

/// The files under `dir` (recursively) whose names are in `names`.
fn find_named(dir: &Path, names: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            out.extend(find_named(&p, names));
        } else if names.iter().any(|n| e.file_name() == *n) {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[test]
fn cache_mount_seeded_from_a_stage() {
    let h = Home::new();
    let ctx = h.context(
        "FROM busybox AS seed\n\
         RUN mkdir -p /data/sub && echo seeded > /data/sub/f && chmod 0711 /data && chown 5:6 /data\n\
         FROM busybox\n\
         RUN --mount=type=cache,id=sd,target=/c,from=seed,source=/data \
             sh -c 'cat /c/sub/f > /seen; stat -c \"%u %g %a\" /c > /st; echo added > /c/g'\n\
         RUN --mount=type=cache,id=sd,target=/c,from=seed,source=/data cat /c/g > /seen2\n",
        &[],
    );
    let (out, _) = h.build(&ctx, &[]);
    assert_eq!(read(&out.join("seen")), "seeded\n");
    // The seed's own owner and mode when none is given.
    assert_eq!(read(&out.join("st")), "5 6 711\n");
    // Seeding happens once: the second RUN sees what the first wrote.
    assert_eq!(read(&out.join("seen2")), "added\n");

    let bad = h.context(
        "FROM busybox AS seed\nFROM busybox\nRUN --mount=type=cache,target=/c,from=seed,source=/nope true\n",
        &[],
    );
    let err = h.build_fails(&bad, &[]);
    assert!(
        err.contains("source=/nope") && err.contains("not found"),
        "{err}"
    );
}

#[test]
fn bind_mount_is_read_only_and_rw_writes_reach_neither_context_nor_layer() {
    let h = Home::new();
    let ctx = h.context(
        "FROM busybox\n\
         RUN --mount=type=bind,target=/ctx,rw sh -c 'echo changed > /ctx/f; echo new > /ctx/dir/new; cat /ctx/f /ctx/dir/new > /seen'\n\
         RUN --mount=type=bind,source=f,target=/one,rw sh -c 'echo changed > /one; cat /one > /seen2'\n\
         RUN --mount=type=bind,source=dir,target=/d cat /d/g > /seen3\n",
        &[("f", "orig\n"), ("dir/g", "gee\n")],
    );
    let (out, _) = h.build(&ctx, &[]);
    assert_eq!(read(&out.join("seen")), "changed\nnew\n");
    assert_eq!(read(&out.join("seen2")), "changed\n");
    assert_eq!(read(&out.join("seen3")), "gee\n");
    // The user's files are untouched.
    assert_eq!(read(&ctx.join("f")), "orig\n");
    assert!(!ctx.join("dir/new").exists());
    // Nothing of the mounts is in the image.
    for p in ["ctx", "one", "d"] {
        assert!(!out.join(p).exists(), "/{p} reached the layer");
    }

    // Read-only by default.
    let ro = h.context(
        "FROM busybox\nRUN --mount=type=bind,target=/ctx sh -c 'echo x > /ctx/f'\n",
        &[("f", "orig\n")],
    );
    h.build_fails(&ro, &[]);
    assert_eq!(read(&ro.join("f")), "orig\n");
}

#[test]
fn bind_mount_of_the_context_leaves_out_what_dockerignore_excludes() {
    let h = Home::new();
    let files = [
        (".dockerignore", "secret.txt\nlogs\n!logs/keep.txt\n"),
        ("f", "orig\n"),
        ("secret.txt", "hidden\n"),
        ("logs/a.txt", "log\n"),
        ("logs/keep.txt", "kept\n"),
    ];
    let ctx = h.context(
        "FROM busybox\n\
         RUN --mount=type=bind,target=/ctx sh -c 'cd /ctx && find . -type f | sort > /seen'\n\
         RUN --mount=type=bind,target=/ctx,rw sh -c 'echo changed > /ctx/f; echo more >> /ctx/logs/keep.txt; cat /ctx/f /ctx/logs/keep.txt > /seen2'\n",
        &files,
    );
    let (out, _) = h.build(&ctx, &[]);
    assert_eq!(
        read(&out.join("seen")),
        "./.dockerignore\n./Dockerfile\n./f\n./logs/keep.txt\n"
    );
    assert_eq!(read(&out.join("seen2")), "changed\nkept\nmore\n");
    // Writes through the (hard-linked) view never reach the user's files.
    assert_eq!(read(&ctx.join("f")), "orig\n");
    assert_eq!(read(&ctx.join("logs/keep.txt")), "kept\n");

    let ctx = h.context(
        "FROM busybox\nRUN --mount=type=bind,source=secret.txt,target=/s cat /s\n",
        &files,
    );
    let err = h.build_fails(&ctx, &[]);
    assert!(
        err.contains("source=secret.txt") && err.contains("excluded by"),
        "no clear error: {err}"
    );
}

#[test]
fn bind_mount_source_cannot_escape_the_context() {
    let h = Home::new();
    // `..` above the context.
    let ctx = h.context(
        "FROM busybox\nRUN --mount=type=bind,source=../x,target=/x true\n",
        &[],
    );
    let err = h.build_fails(&ctx, &[]);
    assert!(
        err.contains("source=../x") && err.contains("outside"),
        "no clear error: {err}"
    );

    // An absolute symlink in the context.
    let ctx = h.context(
        "FROM busybox\nRUN --mount=type=bind,source=etc-link/passwd,target=/x cat /x\n",
        &[],
    );
    std::os::unix::fs::symlink("/etc", ctx.join("etc-link")).unwrap();
    let err = h.build_fails(&ctx, &[]);
    assert!(
        err.contains("source=etc-link/passwd")
            && err.contains("symlink")
            && err.contains("outside"),
        "no clear error: {err}"
    );

    // A relative symlink climbing out.
    let ctx = h.context(
        "FROM busybox\nRUN --mount=type=bind,source=up/secret,target=/x cat /x\n",
        &[],
    );
    std::os::unix::fs::symlink("../..", ctx.join("up")).unwrap();
    let err = h.build_fails(&ctx, &[]);
    assert!(
        err.contains("source=up/secret") && err.contains("outside"),
        "no clear error: {err}"
    );

    // A symlink inside the context is followed; an absolute source means the context's root.
    let ctx = h.context(
        "FROM busybox\n\
         RUN --mount=type=bind,source=inner/f,target=/x cat /x > /seen\n\
         RUN --mount=type=bind,source=/sub/f,target=/y cat /y > /seen2\n",
        &[("sub/f", "inside\n")],
    );
    std::os::unix::fs::symlink("sub", ctx.join("inner")).unwrap();
    let (out, _) = h.build(&ctx, &[]);
    assert_eq!(read(&out.join("seen")), "inside\n");
    assert_eq!(read(&out.join("seen2")), "inside\n");

    // A stage's absolute symlink is taken from the stage's root.
    let ctx = h.context(
        "FROM busybox AS s\nRUN mkdir /data && echo staged > /data/f && ln -s /data /link\n\
         FROM busybox\nRUN --mount=type=bind,from=s,source=link/f,target=/x cat /x > /seen\n",
        &[],
    );
    let (out, _) = h.build(&ctx, &[]);
    assert_eq!(read(&out.join("seen")), "staged\n");

    // from= an image (not a stage): its filesystem, for a bind and to seed a cache.
    let ctx = h.context(
        "FROM busybox
\
         RUN --mount=type=bind,from=busybox:latest,source=/bin,target=/imgbin ls /imgbin/busybox > /seen
\
         RUN --mount=type=cache,id=img,target=/c,from=busybox:latest,source=/bin ls /c/busybox > /seen2
",
        &[],
    );
    let (out, _) = h.build(&ctx, &[]);
    assert_eq!(read(&out.join("seen")), "/imgbin/busybox\n");
    assert_eq!(read(&out.join("seen2")), "/c/busybox\n");
}

#[test]
fn secret_mount_mode_owner_and_required() {
    let h = Home::new();
    let secret = h.dir.path().join("token");
    std::fs::write(&secret, "s3cret\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let arg = format!("id=tok,src={}", secret.display());
    let ctx = h.context(
        "FROM busybox\n\
         RUN --mount=type=secret,id=tok sh -c 'stat -c \"%a %u %g\" /run/secrets/tok > /st; cat /run/secrets/tok > /seen'\n\
         RUN --mount=type=secret,id=tok,target=/x,mode=0440,uid=1000,gid=1001 stat -c '%a %u %g' /x > /st2\n\
         RUN --mount=type=secret,id=tok,env=TOK sh -c 'echo \"$TOK\" > /seen3'\n\
         RUN --mount=type=secret,id=absent true\n",
        &[],
    );
    let (out, _) = h.build(&ctx, &["--secret", &arg]);
    assert_eq!(read(&out.join("st")), "400 0 0\n");
    assert_eq!(read(&out.join("seen")), "s3cret\n");
    assert_eq!(read(&out.join("st2")), "440 1000 1001\n");
    assert_eq!(read(&out.join("seen3")), "s3cret\n");
    assert!(
        !out.join("run/secrets").exists(),
        "the secret's mount point reached the layer"
    );
    // The user's file keeps its mode.
    let mode = std::fs::metadata(&secret).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o644);

    let ctx = h.context(
        "FROM busybox\nRUN --mount=type=secret,id=absent,required true\n",
        &[],
    );
    let err = h.build_fails(&ctx, &[]);
    assert!(err.contains("secret absent is required"), "{err}");
}

#[test]
fn tmpfs_mount_size() {
    let h = Home::new();
    let ctx = h.context(
        "FROM busybox\n\
         RUN --mount=type=tmpfs,target=/t,size=4m sh -c 'df -k /t | tail -n 1 > /df; echo x > /t/x'\n",
        &[],
    );
    let (out, _) = h.build(&ctx, &[]);
    let df = read(&out.join("df"));
    let f: Vec<&str> = df.split_whitespace().collect();
    assert_eq!(f[0], "tmpfs", "{df}");
    assert_eq!(f[1], "4096", "a 4 MiB tmpfs: {df}");
    assert!(!out.join("t").exists(), "the tmpfs reached the layer");
}

/// An `ssh-agent -D -a SOCK` of the test's own, killed on drop.
struct Agent {
    child: Child,
    sock: PathBuf,
    _dir: tempfile::TempDir,
}

impl Agent {
    fn start() -> Agent {
        let dir = tempfile::Builder::new()
            .prefix("hoist-agent-")
            .tempdir()
            .unwrap();
        let sock = dir.path().join("agent.sock");
        let child = Command::new("ssh-agent")
            .args(["-D", "-a"])
            .arg(&sock)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ssh-agent (openssh-client) is installed");
        for _ in 0..200 {
            if sock.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        assert!(sock.exists(), "ssh-agent made no socket");
        Agent {
            child,
            sock,
            _dir: dir,
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copies `/usr/bin/ssh-add` and the libraries `ldd` names into `root` at their paths.
fn copy_ssh_add(root: &Path) {
    let bin = Path::new("/usr/bin/ssh-add");
    let ldd = Command::new("ldd").arg(bin).output().unwrap();
    assert!(ldd.status.success());
    let mut files = vec![bin.to_path_buf()];
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        if let Some(p) = line
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(PathBuf::from)
        {
            files.push(p);
        }
    }
    for f in files {
        let dest = root.join(f.strip_prefix("/").unwrap());
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&f, &dest).unwrap();
    }
}

#[test]
fn ssh_mount_forwards_the_agent() {
    let h = Home::new();
    let agent = Agent::start();
    // A key in the agent, so its answer can be recognised.
    let key = h.dir.path().join("id_ed25519");
    let o = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "hoist-mounts-key",
            "-f",
        ])
        .arg(&key)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let o = Command::new("ssh-add")
        .arg(&key)
        .env("SSH_AUTH_SOCK", &agent.sock)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));

    let ctx = h.context(
        "FROM busybox\nCOPY tools/ /\n\
         RUN --mount=type=ssh sh -c '[ -S \"$SSH_AUTH_SOCK\" ] && echo \"sock=$SSH_AUTH_SOCK\" > /seen && ssh-add -l > /keys'\n\
         RUN --mount=type=ssh,id=other,target=/agent.sock,uid=1000,mode=0660 stat -c '%F %u %a' /agent.sock > /st\n\
         RUN --mount=type=ssh,id=absent sh -c 'echo \"[$SSH_AUTH_SOCK]\" > /none'\n",
        &[],
    );
    copy_ssh_add(&ctx.join("tools"));
    let default = format!("default={}", agent.sock.display());
    let other = format!("other={}", agent.sock.display());
    let (out, _) = h.build(&ctx, &["--ssh", &default, "--ssh", &other]);
    assert_eq!(read(&out.join("seen")), "sock=/run/buildkit/ssh_agent.0\n");
    // The agent answered through the forwarded socket: it listed the test's key.
    assert!(
        read(&out.join("keys")).contains("hoist-mounts-key"),
        "{}",
        read(&out.join("keys"))
    );
    assert_eq!(read(&out.join("st")), "socket 1000 660\n");
    // An ssh mount whose id was not given is skipped (required defaults to false).
    assert_eq!(read(&out.join("none")), "[]\n");
    assert!(
        !out.join("run/buildkit").exists(),
        "the agent's mount point reached the layer"
    );
    assert!(!out.join("agent.sock").exists());

    // `default` alone is $SSH_AUTH_SOCK.
    let ctx = h.context(
        "FROM busybox\nRUN --mount=type=ssh sh -c '[ -S \"$SSH_AUTH_SOCK\" ] && echo ok > /seen'\n",
        &[],
    );
    let o = h
        .build_cmd(&ctx, &["--ssh", "default"])
        .env("SSH_AUTH_SOCK", &agent.sock)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(read(&ctx.join("out/seen")), "ok\n");

    // Required and missing: a clear error.
    let ctx = h.context(
        "FROM busybox\nRUN --mount=type=ssh,id=nope,required true\n",
        &[],
    );
    let err = h.build_fails(&ctx, &["--ssh", &default]);
    assert!(err.contains("ssh agent nope is required"), "{err}");

    // --ssh with something that is not a socket.
    let err = h.build_fails(&ctx, &["--ssh", &format!("default={}", key.display())]);
    assert!(err.contains("is not an ssh agent socket"), "{err}");
}
