//! `hoist build` end to end: every Dockerfile of the mission's DOCKERFILES.md against local base
//! images, checked by running the images (`hoist run`), by their files (`--output type=local`),
//! their configs (`hoist inspect`) and with skopeo/umoci.
//!
//! Base images (BASE-IMAGES.md): busybox (from `busybox-static`) tagged under the names the
//! Dockerfiles use where a shell is enough; stand-ins built from it where a step needs a tool the
//! book's image has (`npm`, `pip`, `yum`: small scripts that do what the step needs and record
//! that they ran); a real Debian minbase with gcc (debootstrap, built once per machine under
//! `target/tmp`) for `apt-get` and the compiler of the multi-stage hello world.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use hoist_testsupport::text;
use serde_json::Value;

const HOIST: &str = env!("CARGO_BIN_EXE_hoist");

hoist_testsupport::home_type!();

impl Home {
    /// A private HOIST_HOME with busybox imported as `busybox:latest`, `alpine:latest` and
    /// `alpine:3.7`.
    fn new() -> Home {
        let h = Home(hoist_testsupport::Home::busybox(HOIST));
        for t in ["alpine:latest", "alpine:3.7"] {
            h.ok(&["tag", "busybox:latest", t]);
        }
        h
    }

    /// Runs hoist; returns its stdout and stderr, failing the test on a non-zero exit.
    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(o.status.success(), "hoist {args:?} failed:\n{}", text(&o));
        text(&o)
    }

    /// Builds `ctx` with plain progress; returns the output.
    fn build(&self, ctx: &Path, extra: &[&str]) -> String {
        let mut args = vec!["build", "--progress", "plain"];
        args.extend_from_slice(extra);
        args.push(ctx.to_str().unwrap());
        self.ok(&args)
    }

    /// The image's filesystem, through a local output of a one-line build on top of it.
    fn files(&self, image: &str) -> PathBuf {
        let ctx = self
            .path()
            .join(format!("files-{}", image.replace([':', '/'], "_")));
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::write(ctx.join("Dockerfile"), format!("FROM {image}\n")).unwrap();
        let dest = ctx.join("out");
        let spec = format!("type=local,dest={}", dest.display());
        self.build(&ctx, &["-o", &spec]);
        dest
    }

    /// A stand-in base: busybox plus `files` (path, content, mode), tagged `tag`.
    fn stand_in(&self, tag: &str, files: &[(&str, &str, u32)]) {
        let ctx = self
            .path()
            .join(format!("base-{}", tag.replace([':', '/'], "_")));
        std::fs::create_dir_all(&ctx).unwrap();
        let mut df = String::from("FROM busybox:latest\n");
        for (i, (path, content, mode)) in files.iter().enumerate() {
            let name = format!("f{i}");
            std::fs::write(ctx.join(&name), content).unwrap();
            df.push_str(&format!("COPY --chmod={mode:o} {name} {path}\n"));
        }
        std::fs::write(ctx.join("Dockerfile"), df).unwrap();
        self.build(&ctx, &["-t", tag]);
    }
}

fn context(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (p, c) in files {
        let p = d.path().join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, c).unwrap();
    }
    d
}

/// Lines of plain progress for the step whose title contains `step`: `CACHED`, `DONE`, ...
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

/// A one-shot HTTP server on 127.0.0.1 answering every request with `body`; returns its port.
fn http_server(body: &'static str) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().take(16) {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Tue, 15 Nov 1994 08:12:31 GMT\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[test]
fn instruction_forms_copy_add_workdir_volume() {
    let h = Home::new();
    // A tar to ADD (auto-extracted).
    let tar_dir = tempfile::tempdir().unwrap();
    std::fs::write(tar_dir.path().join("tool"), "#!/bin/sh\necho tool\n").unwrap();
    let ctx = context(&[
        ("sample.txt", "sample\n"),
        ("sample2.txt", "sample two\n"),
        ("web/index.html", "<h1>hi</h1>\n"),
        ("data/files1", "one\n"),
        ("data/files2", "two\n"),
        ("data/other", "other\n"),
    ]);
    let status = Command::new("tar")
        .args(["-cf"])
        .arg(ctx.path().join("sample.tar"))
        .arg("-C")
        .arg(tar_dir.path())
        .arg("tool")
        .status()
        .unwrap();
    assert!(status.success());
    let port = http_server("fetched over http\n");
    let df = format!(
        "FROM alpine:latest
RUN mkdir -p /app && cd /app
COPY . /app
COPY ./web /app/web
COPY sample.txt /data/my-sample.txt
ADD sample.tar /app/bin/
ADD http://127.0.0.1:{port}/sample.txt /data/
COPY ./sample* /mydir/
ADD --chown=11:22 ./data/files* /app/data/
RUN cd /app/bin
RUN touch sample.txt
WORKDIR /app/bin
RUN touch sample.txt
VOLUME /app/data
VOLUME /app/data /app/profiles /app/config
VOLUME [\"/app/data\", \"/app/profiles2\", \"/app/config2\"]
"
    );
    std::fs::write(ctx.path().join("Dockerfile"), df).unwrap();
    h.build(ctx.path(), &["-t", "forms"]);
    let root = h.files("forms");
    // COPY recurses; a single file may be renamed; wildcards; ADD extracts a local tar.
    assert_eq!(
        std::fs::read_to_string(root.join("app/web/index.html")).unwrap(),
        "<h1>hi</h1>\n"
    );
    assert!(
        root.join("app/data/other").is_file(),
        "COPY . /app copied the whole context"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("data/my-sample.txt")).unwrap(),
        "sample\n"
    );
    assert!(root.join("mydir/sample.txt").is_file() && root.join("mydir/sample2.txt").is_file());
    assert!(
        root.join("app/bin/tool").is_file(),
        "ADD extracted sample.tar"
    );
    // ADD URL: fetched, never extracted, mode 0600.
    let fetched = root.join("data/sample.txt");
    assert_eq!(
        std::fs::read_to_string(&fetched).unwrap(),
        "fetched over http\n"
    );
    assert_eq!(std::fs::metadata(&fetched).unwrap().mode() & 0o777, 0o600);
    // Files default to uid/gid 0; --chown applies.
    let md = std::fs::metadata(root.join("app/data/files1")).unwrap();
    assert_eq!((md.uid(), md.gid()), (11, 22));
    let md = std::fs::metadata(root.join("data/my-sample.txt")).unwrap();
    assert_eq!((md.uid(), md.gid()), (0, 0));
    // RUN cd does not persist, WORKDIR does.
    assert!(
        root.join("sample.txt").is_file(),
        "RUN cd /app/bin; RUN touch: at /"
    );
    assert!(
        root.join("app/bin/sample.txt").is_file(),
        "WORKDIR then touch"
    );
    // VOLUME in all three forms.
    let c = h.inspect("forms");
    let vols = c["Config"]["Volumes"].as_object().unwrap();
    for v in [
        "/app/data",
        "/app/profiles",
        "/app/config",
        "/app/profiles2",
        "/app/config2",
    ] {
        assert!(vols.contains_key(v), "{v} in {vols:?}");
    }
    assert_eq!(c["Config"]["WorkingDir"], "/app/bin");
}

#[test]
fn from_scratch_makes_no_layer_and_chown_by_name_needs_passwd() {
    let h = Home::new();
    let ctx = context(&[("Dockerfile", "FROM scratch\nLABEL a=b\n"), ("f", "x")]);
    h.build(ctx.path(), &["-t", "empty"]);
    let c = h.inspect("empty");
    assert_eq!(c["Layers"].as_array().unwrap().len(), 0);
    assert_eq!(c["Config"]["Labels"]["a"], "b");
    let hist = &c["Config"];
    assert!(hist.is_object());

    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\nCOPY --chown=app:app f /f\n",
    )
    .unwrap();
    let o = h.run(&["build", ctx.path().to_str().unwrap()]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("/etc/passwd") && t.contains("\"app\""), "{t}");
    assert!(t.contains(":2:"), "the error names the line: {t}");

    // With /etc/passwd and /etc/group in the image, names resolve.
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox\nCOPY --chown=nobody:nogroup f /f\n",
    )
    .unwrap();
    h.build(ctx.path(), &["-t", "named"]);
    let md = std::fs::metadata(h.files("named").join("f")).unwrap();
    assert_eq!((md.uid(), md.gid()), (65534, 65534));
}

#[test]
fn copy_destination_follows_symlinks_and_keeps_existing_directories() {
    let h = Home::new();
    let base = context(&[(
        "Dockerfile",
        "FROM busybox\nRUN mkdir -p /usr/lib/x /owned && ln -s usr/lib /mylib && ln -s /usr/lib/x /abs && chown 1000:1001 /owned && chmod 0770 /owned\n",
    )]);
    h.build(base.path(), &["-t", "merged-usr"]);
    let ctx = context(&[
        ("f", "payload\n"),
        (
            "Dockerfile",
            "FROM merged-usr\nCOPY f /mylib/x/\nCOPY f /abs/g\nCOPY f /owned/\nCOPY f /owned/sub/deeper/\nRUN test -L /mylib && test -L /abs && cat /usr/lib/x/f /usr/lib/x/g && stat -c '%u:%g %a' /owned > /owned.stat\n",
        ),
    ]);
    h.build(ctx.path(), &["-t", "copied"]);
    let root = h.files("copied");
    // The symlinks are still symlinks; the files went where they point.
    for link in ["mylib", "abs"] {
        let md = std::fs::symlink_metadata(root.join(link)).unwrap();
        assert!(md.file_type().is_symlink(), "/{link} is still a symlink");
    }
    assert_eq!(
        std::fs::read_to_string(root.join("usr/lib/x/f")).unwrap(),
        "payload\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("usr/lib/x/g")).unwrap(),
        "payload\n"
    );
    // A directory the parent had keeps its owner and mode; new ones are 0755 root.
    assert_eq!(
        std::fs::read_to_string(root.join("owned.stat")).unwrap(),
        "1000:1001 770\n"
    );
    let md = std::fs::metadata(root.join("owned")).unwrap();
    assert_eq!(
        (md.uid(), md.gid(), md.mode() & 0o7777),
        (1000, 1001, 0o770)
    );
    let md = std::fs::metadata(root.join("owned/sub")).unwrap();
    assert_eq!((md.uid(), md.gid(), md.mode() & 0o7777), (0, 0, 0o755));
}

#[test]
fn copy_link_layers_are_reused_when_the_base_changes() {
    let h = Home::new();
    let other = context(&[("Dockerfile", "FROM busybox\nRUN echo other > /other\n")]);
    h.build(other.path(), &["-t", "other-base"]);
    h.ok(&["tag", "busybox:latest", "link-base"]);
    let ctx = context(&[
        ("big", "linked content\n"),
        (
            "Dockerfile",
            "FROM link-base\nCOPY --link big /data/big\nCOPY --link --chown=nobody big /data/named\nRUN cat /data/big > /copy\n",
        ),
    ]);
    let first = h.build(ctx.path(), &["-t", "linked"]);
    assert!(!cached(&first, "COPY --link big"), "{first}");
    let layers_of = |image: &str| -> Vec<String> {
        h.inspect(image)["RootFS"]["Layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_owned())
            .collect()
    };
    let before = layers_of("linked");
    let base_layers = layers_of("link-base").len();
    assert_eq!(before.len(), base_layers + 3);

    // A new base: the linked COPY (numeric owner) does not depend on it, so it is cached and
    // its layer is the same; the named --chown and the RUN after run again.
    h.ok(&["tag", "other-base:latest", "link-base"]);
    let second = h.build(ctx.path(), &["-t", "linked"]);
    assert!(cached(&second, "COPY --link big"), "{second}");
    assert!(!cached(&second, "COPY --link --chown=nobody"), "{second}");
    assert!(!cached(&second, "RUN cat"), "{second}");
    let after = layers_of("linked");
    let new_base = layers_of("other-base");
    assert_eq!(after.len(), new_base.len() + 3);
    assert_eq!(&after[..new_base.len()], &new_base[..]);
    assert_eq!(
        after[new_base.len()],
        before[base_layers],
        "the linked layer is reused"
    );
    let root = h.files("linked");
    assert_eq!(
        std::fs::read_to_string(root.join("other")).unwrap(),
        "other\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("copy")).unwrap(),
        "linked content\n"
    );
    let md = std::fs::metadata(root.join("data/named")).unwrap();
    assert_eq!(md.uid(), 65534);
}

#[test]
fn unpacked_layers_go_when_nothing_references_them() {
    let h = Home::new();
    let layers = h.path().join("home/layers/sha256");
    let unpacked = || -> BTreeSet<String> {
        std::fs::read_dir(&layers)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    let ctx = context(&[("Dockerfile", "FROM busybox\nRUN echo gc > /gc\n")]);
    h.build(ctx.path(), &["-t", "gc"]);
    let diff_ids = |image: &str| -> Vec<String> {
        h.inspect(image)["RootFS"]["Layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().trim_start_matches("sha256:").to_owned())
            .collect()
    };
    let base = diff_ids("busybox");
    let built = diff_ids("gc");
    let run_layer = built.last().unwrap().clone();
    assert!(unpacked().contains(&run_layer), "the RUN layer is unpacked");

    // The image is gone but the build cache still uses the layer.
    h.ok(&["rmi", "gc"]);
    assert!(unpacked().contains(&run_layer), "the cache still uses it");

    // While a build holds the store, nothing is collected.
    let lock = std::fs::File::open(h.path().join("home/layers/locks/gc")).unwrap();
    lock.lock_shared().unwrap();
    let out = h.ok(&["builder", "prune", "-f"]);
    assert!(out.contains("a build is running"), "{out}");
    assert!(unpacked().contains(&run_layer));
    drop(lock);

    // Prune again: the record is gone, then the layer; the base image's layers stay.
    h.build(ctx.path(), &["-t", "gc"]);
    h.ok(&["rmi", "gc"]);
    let out = h.ok(&["builder", "prune", "-f"]);
    assert!(out.contains("Total reclaimed space"), "{out}");
    let left = unpacked();
    assert!(!left.contains(&run_layer), "{left:?}");
    for b in &base {
        assert!(left.contains(b), "busybox's layer {b} stays: {left:?}");
    }
}

#[test]
fn from_platform_picks_the_platform_and_refuses_what_cannot_run() {
    let h = Home::new();
    // An arm64 image, made from scratch (none of its programs would run here).
    let arm = context(&[
        ("f", "arm file\n"),
        (
            "Dockerfile",
            "FROM --platform=linux/arm64 scratch\nCOPY f /f\n",
        ),
    ]);
    h.build(arm.path(), &["-t", "armimg"]);
    let c = h.inspect("armimg");
    assert_eq!(
        (&c["Os"], &c["Architecture"]),
        (&Value::from("linux"), &Value::from("arm64"))
    );

    // A stage of that platform feeds a stage of the host's.
    let ctx = context(&[(
        "Dockerfile",
        "FROM --platform=linux/arm64 armimg AS arm\nFROM busybox\nCOPY --from=arm /f /from-arm\nRUN cat /from-arm > /seen\n",
    )]);
    h.build(ctx.path(), &["-t", "mixed"]);
    assert_eq!(
        std::fs::read_to_string(h.files("mixed").join("seen")).unwrap(),
        "arm file\n"
    );
    assert_eq!(
        h.inspect("mixed")["Architecture"],
        h.inspect("busybox")["Architecture"]
    );

    // An image that is not for the platform asked for is an error, not a substitute.
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM --platform=linux/arm64 busybox\nCOPY Dockerfile /d\n",
    )
    .unwrap();
    let o = h.run(&["build", ctx.path().to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(text(&o).contains("not linux/arm64"), "{}", text(&o));

    // RUN in an arm64 stage needs an emulator; without one the error names the line.
    if !Path::new("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists() {
        std::fs::write(
            ctx.path().join("Dockerfile"),
            "FROM --platform=linux/arm64 armimg\nRUN cat /f\n",
        )
        .unwrap();
        let o = h.run(&["build", ctx.path().to_str().unwrap()]);
        assert!(!o.status.success());
        let t = text(&o);
        assert!(
            t.contains(":2:") && t.contains("no emulator for arm64"),
            "{t}"
        );
    }
}

#[test]
fn pinger_entrypoint_and_cmd() {
    let h = Home::new();
    let ctx = context(&[(
        "Dockerfile",
        "FROM alpine:latest\nENTRYPOINT [\"ping\"]\nCMD [\"127.0.0.1\", \"-c\", \"3\"]\n",
    )]);
    h.build(ctx.path(), &["-t", "pinger"]);
    let c = h.inspect("pinger");
    assert_eq!(c["Config"]["Entrypoint"], serde_json::json!(["ping"]));
    assert_eq!(
        c["Config"]["Cmd"],
        serde_json::json!(["127.0.0.1", "-c", "3"])
    );
    let out = h.ok(&["run", "--rm", "pinger"]);
    assert!(out.contains("3 packets transmitted"), "{out}");
    let out = h.ok(&["run", "--rm", "pinger", "-c", "1", "127.0.0.1"]);
    assert!(out.contains("1 packets transmitted"), "CMD replaced: {out}");
    let out = h.ok(&[
        "run",
        "--rm",
        "--entrypoint",
        "/bin/echo",
        "pinger",
        "entrypoint replaced",
    ]);
    assert!(out.contains("entrypoint replaced"), "{out}");

    // Shell-form CMD without ENTRYPOINT runs as /bin/sh -c.
    let port = http_server("served\n");
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM alpine:latest\nCMD wget -q -O - http://127.0.0.1:{port}/\n"),
    )
    .unwrap();
    h.build(ctx.path(), &["-t", "getter"]);
    let c = h.inspect("getter");
    assert_eq!(
        c["Config"]["Cmd"],
        serde_json::json!([
            "/bin/sh",
            "-c",
            format!("wget -q -O - http://127.0.0.1:{port}/")
        ])
    );
    // The server is on the host's 127.0.0.1: the container shares the host's network.
    let out = h.ok(&["run", "--rm", "--network", "host", "getter"]);
    assert!(out.contains("served"), "{out}");
}

const NPM: &str = "#!/bin/sh
# stand-in npm: `install` records a run and makes node_modules from package.json; `start` runs the app
case \"$1\" in
install) echo \"npm install ran\"; mkdir -p node_modules; cp package.json node_modules/.installed-from; date +%s%N >> /npm-install-runs ;;
start) cat src/app.txt ;;
*) echo \"npm: unknown command $1\"; exit 1 ;;
esac
";

#[test]
fn node_app_editing_a_source_file_does_not_rerun_npm_install() {
    let h = Home::new();
    h.stand_in("node:9.4", &[("/usr/local/bin/npm", NPM, 0o755)]);
    let ctx = context(&[
        (
            "Dockerfile",
            "FROM node:9.4\nRUN mkdir -p /app\nWORKDIR /app\nCOPY package.json /app/\nRUN npm install\nCOPY . /app\nENTRYPOINT [\"npm\"]\nCMD [\"start\"]\n",
        ),
        ("package.json", "{\"name\": \"app\"}\n"),
        ("src/app.txt", "version one\n"),
    ]);
    let out = h.build(ctx.path(), &["-t", "app"]);
    assert!(out.contains("npm install ran"), "{out}");
    assert!(h.ok(&["run", "--rm", "app"]).contains("version one"));

    // Edit a source file: npm install is cached, COPY . /app and what follows run.
    std::fs::write(ctx.path().join("src/app.txt"), "version two\n").unwrap();
    let out = h.build(ctx.path(), &["-t", "app"]);
    assert!(cached(&out, "RUN npm install"), "{out}");
    assert!(!cached(&out, "COPY . /app"), "{out}");
    assert!(h.ok(&["run", "--rm", "app"]).contains("version two"));
    // npm install ran exactly once in the image's history.
    let runs = std::fs::read_to_string(h.files("app").join("npm-install-runs")).unwrap();
    assert_eq!(runs.lines().count(), 1);

    // A no-op rebuild: every step cached, same image id.
    let id1 = h.inspect("app")["Id"].clone();
    let out = h.build(ctx.path(), &["-t", "app"]);
    for s in [
        "RUN mkdir",
        "COPY package.json",
        "RUN npm install",
        "COPY . /app",
    ] {
        assert!(cached(&out, s), "{s}: {out}");
    }
    assert_eq!(h.inspect("app")["Id"], id1);

    // Editing package.json re-runs npm install and everything after it.
    std::fs::write(ctx.path().join("package.json"), "{\"name\": \"app2\"}\n").unwrap();
    let out = h.build(ctx.path(), &["-t", "app"]);
    assert!(cached(&out, "RUN mkdir"), "{out}");
    assert!(!cached(&out, "RUN npm install") && out.contains("npm install ran"));
    assert!(!cached(&out, "COPY . /app"));
    // Touching a file without changing it (mtime only) does not invalidate anything.
    let f = std::fs::File::options()
        .write(true)
        .open(ctx.path().join("src/app.txt"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
        .unwrap();
    drop(f);
    let out = h.build(ctx.path(), &["-t", "app"]);
    assert!(
        cached(&out, "COPY . /app"),
        "mtime never invalidates: {out}"
    );
    // The context's file hashes persist under $HOIST_HOME/builder (they only save re-reading).
    let hashes = h.path().join("home/builder/hashes");
    assert!(
        std::fs::read_dir(&hashes)
            .unwrap()
            .flatten()
            .any(|e| e.path().extension().is_some_and(|x| x == "json")),
        "no hash cache in {}",
        hashes.display()
    );
}

#[test]
fn node_alpine_python_centos_and_nginx_images() {
    let h = Home::new();
    h.stand_in(
        "node:10.9-alpine",
        &[
            ("/usr/local/bin/npm", NPM, 0o755),
            ("/usr/local/bin/node", "#!/bin/sh\ncat \"$1\"\n", 0o755),
        ],
    );
    h.stand_in("python:2.7", &[(
        "/usr/local/bin/pip",
        "#!/bin/sh\n[ \"$1\" = install ] && [ \"$2\" = -r ] && cp \"$3\" /installed-requirements && echo pip installed\n",
        0o755,
    ), ("/usr/local/bin/python", "#!/bin/sh\ncat \"$1\"\n", 0o755)]);
    h.stand_in("centos:7", &[(
        "/usr/bin/yum",
        "#!/bin/sh\n[ \"$1\" = install ] && shift && [ \"$1\" = -y ] && shift && for p; do echo \"$p\" >> /yum-installed; done\n",
        0o755,
    )]);
    h.ok(&["tag", "busybox:latest", "nginx:alpine"]);

    let node = context(&[
        (
            "Dockerfile",
            "FROM node:10.9-alpine\nRUN mkdir /app\nWORKDIR /app\nCOPY package.json /app/\nRUN npm install\nCOPY ./src /app/src\nEXPOSE 80\nCMD node src/server.js\n",
        ),
        ("package.json", "{}\n"),
        ("src/server.js", "server running\n"),
    ]);
    h.build(node.path(), &["-t", "node-app"]);
    let c = h.inspect("node-app");
    assert!(c["Config"]["ExposedPorts"]["80/tcp"].is_object());
    assert!(
        h.ok(&["run", "--rm", "node-app"])
            .contains("server running")
    );

    let py = context(&[
        (
            "Dockerfile",
            "FROM python:2.7\nRUN mkdir -p /app\nWORKDIR /app\nCOPY ./requirements.txt /app/\nRUN pip install -r requirements.txt\nCMD [\"python\", \"main.py\"]\n",
        ),
        ("requirements.txt", "flask\n"),
    ]);
    let out = h.build(py.path(), &["-t", "py-app"]);
    assert!(out.contains("pip installed"), "{out}");
    assert_eq!(
        std::fs::read_to_string(h.files("py-app").join("installed-requirements")).unwrap(),
        "flask\n"
    );

    let centos = context(&[("Dockerfile", "FROM centos:7\nRUN yum install -y wget\n")]);
    h.build(centos.path(), &["-t", "centos-wget"]);
    assert_eq!(
        std::fs::read_to_string(h.files("centos-wget").join("yum-installed")).unwrap(),
        "wget\n"
    );

    let site = context(&[
        (
            "Dockerfile",
            "FROM nginx:alpine\nCOPY . /usr/share/nginx/html\n",
        ),
        ("index.html", "<h1>my website</h1>\n"),
    ]);
    h.build(site.path(), &["-t", "my-website:1.0"]);
    let served = h.ok(&[
        "run",
        "--rm",
        "my-website:1.0",
        "cat",
        "/usr/share/nginx/html/index.html",
    ]);
    assert!(served.contains("my website"));
    // The context bind-mounted over the directory: edits show without a rebuild.
    std::fs::write(site.path().join("index.html"), "<h1>edited</h1>\n").unwrap();
    let vol = format!("{}:/usr/share/nginx/html", site.path().display());
    let served = h.ok(&[
        "run",
        "--rm",
        "-v",
        &vol,
        "my-website:1.0",
        "cat",
        "/usr/share/nginx/html/index.html",
    ]);
    assert!(served.contains("edited"), "{served}");
}

#[test]
fn workir_fails_naming_file_line_and_suggestion() {
    let h = Home::new();
    h.ok(&["tag", "busybox:latest", "node:9.4"]);
    let ctx = context(&[(
        "Dockerfile",
        "FROM node:9.4\nRUN mkdir -p /app\nWORKIR /app\n",
    )]);
    let o = h.run(&["build", ctx.path().to_str().unwrap()]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("Dockerfile:3"), "{t}");
    assert!(t.contains("WORKIR"), "{t}");
    assert!(t.contains("WORKDIR"), "{t}");
}

#[test]
fn a_failed_run_shows_command_exit_code_and_output_and_keeps_the_cache() {
    let h = Home::new();
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox\nRUN echo first > /first\nRUN echo line-one; echo line-two; exit 3\n",
    )]);
    let o = h.run(&["build", "--progress", "quiet", ctx.path().to_str().unwrap()]);
    assert!(!o.status.success());
    let t = String::from_utf8_lossy(&o.stderr);
    assert!(t.contains("echo line-one; echo line-two; exit 3"), "{t}");
    assert!(t.contains("exit code: 3"), "{t}");
    assert!(t.contains("line-two"), "last output lines: {t}");
    assert!(t.contains("Dockerfile:3"), "{t}");
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox\nRUN echo first > /first\nRUN echo fixed\n",
    )
    .unwrap();
    let out = h.build(ctx.path(), &[]);
    assert!(cached(&out, "RUN echo first"), "{out}");
}

#[test]
fn context_ignore_files_tags_targets_and_stdin() {
    let h = Home::new();
    let ctx = context(&[
        ("Dockerfile", "FROM busybox\nCOPY . /ctx\n"),
        (".dockerignore", "secret*\n**/*.log\n!keep.log\n"),
        ("secret.txt", "s"),
        ("a/b/debug.log", "l"),
        ("keep.log", "k"),
        ("src/main.c", "c"),
        ("other.Dockerfile", "FROM busybox\nCOPY . /ctx\n"),
        ("other.Dockerfile.dockerignore", "src\n"),
    ]);
    h.build(ctx.path(), &["-t", "ctx:one", "-t", "ctx2"]);
    let root = h.files("ctx:one");
    assert!(!root.join("ctx/secret.txt").exists());
    assert!(!root.join("ctx/a/b/debug.log").exists());
    assert!(root.join("ctx/keep.log").exists(), "! exception");
    assert!(root.join("ctx/src/main.c").exists());
    // -t twice, omitted tag = latest.
    assert_eq!(h.inspect("ctx2:latest")["Id"], h.inspect("ctx:one")["Id"]);
    // -f with its own ignore file, which wins over .dockerignore.
    let f = ctx.path().join("other.Dockerfile");
    h.build(ctx.path(), &["-f", f.to_str().unwrap(), "-t", "other"]);
    let root = h.files("other");
    assert!(!root.join("ctx/src").exists());
    assert!(root.join("ctx/secret.txt").exists());

    // --target builds only what the target needs.
    let ms = context(&[(
        "Dockerfile",
        "FROM busybox AS a\nRUN echo in-a > /a\nFROM busybox AS b\nRUN echo in-b > /b\nFROM busybox AS c\nCOPY --from=a /a /a\n",
    )]);
    let out = h.build(ms.path(), &["--target", "c", "-t", "tc"]);
    assert!(
        out.contains("echo in-a") && !out.contains("echo in-b"),
        "{out}"
    );
    let out = h.build(ms.path(), &["--target", "b", "-t", "tb"]);
    assert!(!out.contains("echo in-a"), "{out}");

    // A Dockerfile on stdin, no context.
    let mut child = h
        .cmd(&["build", "-q", "-t", "stdin-df", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"FROM busybox\nLABEL from=stdin\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let id = String::from_utf8_lossy(&o.stdout).trim().to_owned();
    assert!(id.starts_with("sha256:"), "-q prints the id: {id}");
    assert_eq!(h.inspect("stdin-df")["Config"]["Labels"]["from"], "stdin");
}

#[test]
fn run_mounts_network_and_prune() {
    let h = Home::new();
    let secret = h.path().join("token");
    std::fs::write(&secret, "s3cret").unwrap();
    let ctx = context(&[("Dockerfile",
        "FROM busybox
RUN --mount=type=cache,target=/cache echo x >> /cache/runs; cat /cache/runs | wc -l > /count
RUN --mount=type=secret,id=token cat /run/secrets/token > /copied-secret
RUN --mount=type=tmpfs,target=/scratch touch /scratch/t && mount | grep -q ' /scratch ' && echo tmpfs-ok > /tmpfs
RUN --network=none ip link show 2>/dev/null | grep -c ': ' > /links || cat /proc/net/dev | tail -n +3 | wc -l > /links
"),
    ]);
    let sec = format!("id=token,src={}", secret.display());
    h.build(ctx.path(), &["--secret", &sec, "-t", "mounts"]);
    let root = h.files("mounts");
    assert_eq!(
        std::fs::read_to_string(root.join("copied-secret")).unwrap(),
        "s3cret"
    );
    assert!(root.join("tmpfs").is_file());
    assert!(
        !root.join("scratch/t").exists(),
        "tmpfs contents are not in the layer"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("links")).unwrap().trim(),
        "1",
        "only lo"
    );
    // The cache mount persists across builds (--no-cache reruns the step).
    h.build(
        ctx.path(),
        &["--secret", &sec, "--no-cache", "-t", "mounts"],
    );
    let count = std::fs::read_to_string(h.files("mounts").join("count")).unwrap();
    assert_eq!(count.trim(), "2");

    // prune empties the cache: the next build runs every step.
    let o = h.ok(&["builder", "prune"]);
    assert!(o.contains("Total reclaimed space"), "{o}");
    let out = h.build(ctx.path(), &["--secret", &sec, "-t", "mounts"]);
    assert!(!cached(&out, "RUN --mount=type=secret"), "{out}");
    // --keep-storage keeps recent records under the limit.
    h.ok(&["builder", "prune", "--keep-storage", "1GB"]);
    let out = h.build(ctx.path(), &["--secret", &sec, "-t", "mounts"]);
    assert!(cached(&out, "RUN --mount=type=secret"), "{out}");
}

#[test]
fn oci_and_docker_outputs_read_by_skopeo_and_umoci_and_reproducible() {
    let h = Home::new();
    let ctx = context(&[
        (
            "Dockerfile",
            "FROM busybox\nCOPY f /f\nRUN echo built > /g\nCMD [\"cat\", \"/g\"]\n",
        ),
        ("f", "file\n"),
    ]);
    let oci = h.path().join("img.oci.tar");
    let docker = h.path().join("img.docker.tar");
    let o1 = format!("type=oci,dest={}", oci.display());
    let o2 = format!("type=docker,dest={}", docker.display());
    h.build(ctx.path(), &["-t", "out:1", "-o", &o1, "-o", &o2]);
    // zstd layers: in the store as zstd; in a docker-archive as plain tars (what `docker save`
    // writes), which another home loads and runs.
    let zdocker = h.path().join("zstd.docker.tar");
    let o3 = format!("type=docker,dest={}", zdocker.display());
    h.build(
        ctx.path(),
        &["-t", "zstd", "--compression", "zstd", "-o", &o3],
    );
    let other = Home::new();
    other.ok(&["load", "-i", zdocker.to_str().unwrap()]);
    assert_eq!(other.ok(&["run", "--rm", "zstd"]).trim(), "built");
    let c = h.inspect("zstd");
    for l in c["Layers"].as_array().unwrap().iter().skip(1) {
        assert_eq!(
            l["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+zstd"
        );
    }
    assert_eq!(h.ok(&["run", "--rm", "zstd"]).trim(), "built");
    let out = Command::new("skopeo")
        .args(["--insecure-policy", "inspect", "--config"])
        .arg(format!("oci-archive:{}", oci.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let cfg: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cfg["config"]["Cmd"], serde_json::json!(["cat", "/g"]));
    let hist = cfg["history"].as_array().unwrap();
    assert!(
        hist.iter()
            .any(|e| e["created_by"].as_str().unwrap_or("").contains("COPY f /f"))
    );
    assert!(
        hist.iter().any(|e| e["empty_layer"] == true),
        "CMD is an empty layer"
    );
    let out = Command::new("skopeo")
        .args(["--insecure-policy", "inspect"])
        .arg(format!("docker-archive:{}", docker.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    // umoci unpacks the OCI layout.
    let layout = h.path().join("layout");
    std::fs::create_dir(&layout).unwrap();
    assert!(
        Command::new("tar")
            .arg("-xf")
            .arg(&oci)
            .arg("-C")
            .arg(&layout)
            .status()
            .unwrap()
            .success()
    );
    let bundle = h.path().join("bundle");
    let out = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:1", layout.display()))
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/g")).unwrap(),
        "built\n"
    );

    // SOURCE_DATE_EPOCH: two builds from scratch (no cache, a second later), same image id.
    let ids: Vec<Value> = (0..2)
        .map(|i| {
            if i == 1 {
                std::thread::sleep(std::time::Duration::from_millis(1100));
            }
            h.build(
                ctx.path(),
                &[
                    "--no-cache",
                    "--build-arg",
                    "SOURCE_DATE_EPOCH=1700000000",
                    "-t",
                    "repro",
                ],
            );
            h.inspect("repro")["Id"].clone()
        })
        .collect();
    assert_eq!(ids[0], ids[1]);
}

/// Debian minbase with gcc and libc6-dev (made once per machine), imported into `h` as
/// `debian-gcc:bookworm`.
fn debian_base(h: &Home) {
    let tar = hoist_testsupport::bases::debian_gcc_tar(Path::new(env!("CARGO_TARGET_TMPDIR")));
    h.ok(&["import", tar.to_str().unwrap(), "debian-gcc:bookworm"]);
}

#[test]
fn apt_get_layers_and_the_multi_stage_size_ratio() {
    let h = Home::new();
    debian_base(&h);
    let base_layers = h.inspect("debian-gcc:bookworm")["Layers"]
        .as_array()
        .unwrap()
        .len();
    // Three RUN lines make three layers; one chained RUN makes one.
    let three = context(&[(
        "Dockerfile",
        "FROM debian-gcc:bookworm\nRUN apt-get update\nRUN apt-get install -y ca-certificates\nRUN rm -rf /var/lib/apt/lists/*\n",
    )]);
    h.build(three.path(), &["-t", "three"]);
    assert_eq!(
        h.inspect("three")["Layers"].as_array().unwrap().len(),
        base_layers + 3
    );
    let one = context(&[(
        "Dockerfile",
        "FROM debian-gcc:bookworm\nRUN apt-get update \\\n    && apt-get install -y --no-install-recommends \\\n       ca-certificates \\\n    && rm -rf /var/lib/apt/lists/*\n",
    )]);
    h.build(one.path(), &["-t", "one"]);
    assert_eq!(
        h.inspect("one")["Layers"].as_array().unwrap().len(),
        base_layers + 1
    );
    let out = h.ok(&[
        "run",
        "--rm",
        "one",
        "ls",
        "/etc/ssl/certs/ca-certificates.crt",
    ]);
    assert!(out.contains("ca-certificates.crt"), "{out}");

    // The hello world: single stage (the compiler stays) and multi-stage (only the binary).
    let hello = "#include <stdio.h>\nint main(void)\n{\n    printf(\"Hello, world!\\n\");\n    return 0;\n}\n";
    let single = context(&[
        ("hello.c", hello),
        (
            "Dockerfile",
            "FROM debian-gcc:bookworm\nRUN mkdir /app\nWORKDIR /app\nCOPY . /app\nRUN mkdir bin\nRUN gcc -Wall hello.c -o bin/hello\nCMD /app/bin/hello\n",
        ),
    ]);
    h.build(single.path(), &["-t", "hello:single"]);
    let multi = context(&[
        ("hello.c", hello),
        (
            "Dockerfile",
            "FROM debian-gcc:bookworm AS build\nRUN mkdir /app\nWORKDIR /app\nCOPY . /app\nRUN mkdir bin\nRUN gcc -static hello.c -o bin/hello\nFROM alpine:3.7\nCOPY --from=build /app/bin/hello /app/hello\nCMD /app/hello\n",
        ),
    ]);
    h.build(multi.path(), &["-t", "hello:multi"]);
    assert!(
        h.ok(&["run", "--rm", "hello:single"])
            .contains("Hello, world!")
    );
    assert!(
        h.ok(&["run", "--rm", "hello:multi"])
            .contains("Hello, world!")
    );
    let size = |i: &str| -> u64 {
        h.inspect(i)["Layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["size"].as_u64().unwrap())
            .sum()
    };
    let (big, small) = (size("hello:single"), size("hello:multi"));
    assert!(
        big >= 40 * small,
        "multi-stage {small} bytes vs single stage {big} bytes: not 40x smaller"
    );
}

/// A raw ustar header (tar::Builder refuses `..` names itself).
fn raw_entry(name: &str, kind: u8, link: &str, body: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_ustar();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_entry_type(tar::EntryType::new(kind));
    h.set_size(body.len() as u64);
    h.set_mode(if kind == b'5' { 0o755 } else { 0o644 });
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(body);
    out.resize(out.len().next_multiple_of(512), 0);
    out
}

#[test]
fn add_of_a_malicious_tar_cannot_write_outside_the_layer() {
    let h = Home::new();
    let victim = tempfile::tempdir().unwrap();
    let v = victim.path().to_str().unwrap().trim_start_matches('/');
    let up = "../".repeat(20);

    // A `../` entry climbing to the victim dir: refused, the build fails naming it.
    let dotdot = format!("{up}{v}/dotdot");
    let mut evil = raw_entry("ok.txt", b'0', "", b"fine\n");
    evil.extend(raw_entry(&dotdot, b'0', "", b"escaped\n"));
    evil.extend([0u8; 1024]);
    let ctx = context(&[("Dockerfile", "FROM scratch\nADD evil.tar /out/\n")]);
    std::fs::write(ctx.path().join("evil.tar"), &evil).unwrap();
    let o = h.run(&["build", "--progress", "plain", ctx.path().to_str().unwrap()]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("dotdot"), "{}", text(&o));
    assert!(!victim.path().join("dotdot").exists());

    // A symlink to the victim dir (absolute, and relative climbing out), then files through it:
    // they resolve inside the layer (as if it were `/`), never on the host.
    // The victim's path also exists inside the archive, so the links resolve (inside).
    let mut evil = Vec::new();
    let mut prefix = String::new();
    for c in v.split('/') {
        prefix.push_str(c);
        prefix.push('/');
        evil.extend(raw_entry(&prefix, b'5', "", b""));
    }
    evil.extend(raw_entry("abs", b'2', victim.path().to_str().unwrap(), b""));
    evil.extend(raw_entry("rel", b'2', &format!("{up}{v}"), b""));
    evil.extend(raw_entry("abs/via-abs", b'0', "", b"escaped\n"));
    evil.extend(raw_entry("rel/via-rel", b'0', "", b"escaped\n"));
    evil.extend([0u8; 1024]);
    let ctx = context(&[("Dockerfile", "FROM scratch\nADD evil.tar /out/\n")]);
    std::fs::write(ctx.path().join("evil.tar"), &evil).unwrap();
    let o = h.run(&[
        "build",
        "--progress",
        "plain",
        "-t",
        "evil",
        ctx.path().to_str().unwrap(),
    ]);
    assert!(!victim.path().join("via-abs").exists());
    assert!(!victim.path().join("via-rel").exists());
    assert_eq!(std::fs::read_dir(victim.path()).unwrap().count(), 0);
    // Contained: the files are in the image, under /out.
    assert!(o.status.success(), "{}", text(&o));
    let root = h.files("evil");
    for f in ["via-abs", "via-rel"] {
        assert_eq!(
            std::fs::read_to_string(root.join("out").join(v).join(f)).unwrap(),
            "escaped\n",
            "{f}"
        );
    }
    assert_eq!(std::fs::read_dir(victim.path()).unwrap().count(), 0);
}
