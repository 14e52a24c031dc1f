//! The builder against BuildKit: every case of `conformance/difftest/buildkit/` (a Dockerfile
//! and its context, one file per case) is built by docker's BuildKit (a private dockerd,
//! `DOCKER_BUILDKIT=1`) and by `hoist build`, from the same local busybox base (imported by
//! docker, `docker save`d and `hoist load`ed, so both start from one image), both with
//! `--network none`. Compared: success or failure; the merged root filesystem (type, mode,
//! uid/gid, size, content digest, link target of every path; mtimes aside); every image config
//! field; the history (created_by, comment, empty_layer). A difference fails the test unless
//! `conformance/difftest/buildkit-expected.txt` lists it with the reason.
//!
//! Case format (txtar-like): `-- NAME --` starts a context file (its text up to the next header),
//! `-- NAME mode=0755 --` with a mode, `-- DIR/ --` an empty directory, `-- NAME -> TARGET --`
//! a symlink, `-- NAME @tar --` a tar archive (gzip when NAME ends in `gz`) whose lines are
//! `DIR/`, `PATH: CONTENT` or `PATH -> TARGET` entries, `-- @build --` extra `docker build`
//! arguments (one a line, e.g. `--target=b`). Lines before the first header are comments.
//!
//! `HOIST_DIFF_CASES=a,b` runs only those cases; `HOIST_DIFF_JOBS` sets the parallelism.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use common::{Dockerd, require_root, run, run_status};
use serde_json::Value;

const HOIST: &str = env!("CARGO_BIN_EXE_hoist");

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../conformance/difftest")
}

/// One context entry of a case.
#[derive(Debug, Clone)]
enum Item {
    File {
        path: String,
        body: String,
        mode: u32,
    },
    Dir(String),
    Link {
        path: String,
        target: String,
    },
    Tar {
        path: String,
        body: String,
    },
}

#[derive(Debug, Clone)]
struct Case {
    name: String,
    items: Vec<Item>,
    args: Vec<String>,
}

fn parse_case(name: &str, text: &str) -> Case {
    let mut items = Vec::new();
    let mut args = Vec::new();
    let mut cur: Option<(String, String)> = None;
    let flush =
        |cur: &mut Option<(String, String)>, items: &mut Vec<Item>, args: &mut Vec<String>| {
            let Some((header, body)) = cur.take() else {
                return;
            };
            if header == "@build" {
                args.extend(
                    body.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(str::to_owned),
                );
            } else if let Some((p, t)) = header.split_once(" -> ") {
                items.push(Item::Link {
                    path: p.trim().to_owned(),
                    target: t.trim().to_owned(),
                });
            } else if let Some(p) = header.strip_suffix(" @tar") {
                items.push(Item::Tar {
                    path: p.trim().to_owned(),
                    body,
                });
            } else if header.ends_with('/') {
                items.push(Item::Dir(header.trim_end_matches('/').to_owned()));
            } else {
                let (path, mode) = match header.split_once(" mode=") {
                    Some((p, m)) => (
                        p.to_owned(),
                        u32::from_str_radix(m.trim(), 8).expect("mode= is octal"),
                    ),
                    None => (header.clone(), 0o644),
                };
                items.push(Item::File { path, body, mode });
            }
        };
    for line in text.split_inclusive('\n') {
        let l = line.trim_end_matches('\n');
        if let Some(h) = l.strip_prefix("-- ").and_then(|h| h.strip_suffix(" --")) {
            flush(&mut cur, &mut items, &mut args);
            cur = Some((h.to_owned(), String::new()));
        } else if let Some((_, body)) = &mut cur {
            body.push_str(line);
        }
    }
    flush(&mut cur, &mut items, &mut args);
    Case {
        name: name.to_owned(),
        items,
        args,
    }
}

fn load_cases() -> Vec<Case> {
    let dir = corpus_dir().join("buildkit");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    names.sort();
    let only: Option<BTreeSet<String>> = std::env::var("HOIST_DIFF_CASES")
        .ok()
        .filter(|s| !s.is_empty())
        .map(|s| s.split(',').map(str::to_owned).collect());
    names
        .iter()
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            parse_case(&name, &std::fs::read_to_string(p).unwrap())
        })
        .filter(|c| only.as_ref().is_none_or(|o| o.contains(&c.name)))
        .collect()
}

fn tar_archive(path: &str, body: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for line in body.lines().filter(|l| !l.trim().is_empty()) {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        if let Some((p, t)) = line.split_once(" -> ") {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_mode(0o777);
            h.set_size(0);
            b.append_link(&mut h, p, t).unwrap();
        } else if let Some(d) = line.strip_suffix('/') {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            b.append_data(&mut h, format!("{d}/"), std::io::empty())
                .unwrap();
        } else {
            let (p, c) = line
                .split_once(": ")
                .unwrap_or((line.trim_end_matches(':'), ""));
            let (p, mode) = match p.split_once(" mode=") {
                Some((p, m)) => (p, u32::from_str_radix(m, 8).unwrap()),
                None => (p, 0o644),
            };
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(mode);
            h.set_size(c.len() as u64 + 1);
            b.append_data(&mut h, p, format!("{c}\n").as_bytes())
                .unwrap();
        }
    }
    let raw = b.into_inner().unwrap();
    if path.ends_with("gz") {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&raw).unwrap();
        gz.finish().unwrap()
    } else {
        raw
    }
}

fn materialize(case: &Case, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let parent = |p: &Path| std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    for it in &case.items {
        match it {
            Item::File { path, body, mode } => {
                let p = dir.join(path);
                parent(&p);
                std::fs::write(&p, body).unwrap();
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).unwrap();
            }
            Item::Dir(d) => {
                let p = dir.join(d);
                std::fs::create_dir_all(&p).unwrap();
            }
            Item::Link { path, target } => {
                let p = dir.join(path);
                parent(&p);
                std::os::unix::fs::symlink(target, &p).unwrap();
            }
            Item::Tar { path, body } => {
                let p = dir.join(path);
                parent(&p);
                std::fs::write(&p, tar_archive(path, body)).unwrap();
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
            }
        }
    }
    // Directories 0755 whatever the umask (both builders copy their modes).
    fn fix(d: &Path) {
        for e in std::fs::read_dir(d).unwrap() {
            let e = e.unwrap();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
                fix(&e.path());
            }
        }
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    fix(dir);
}

/// One path of a merged root filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    kind: char,
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    digest: String,
    link: String,
}

impl std::fmt::Display for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {:04o} {}:{} size={}",
            self.kind, self.mode, self.uid, self.gid, self.size
        )?;
        if !self.digest.is_empty() {
            write!(f, " sha256={}", &self.digest[..12])?;
        }
        if !self.link.is_empty() {
            write!(f, " -> {}", self.link)?;
        }
        Ok(())
    }
}

struct Image {
    config: Value,
    fs: BTreeMap<String, Node>,
}

fn decompress(b: Vec<u8>) -> Vec<u8> {
    if b.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&b[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    } else {
        b
    }
}

fn clean(p: &str) -> String {
    p.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
}

/// A docker-archive (`docker save`, `hoist build -o type=docker`): its config and its layers
/// applied in order (whiteouts and opaque directories as overlay reads them).
fn read_archive(path: &Path) -> Image {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut links: BTreeMap<String, String> = BTreeMap::new();
    let mut a = tar::Archive::new(std::fs::File::open(path).unwrap());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = clean(&e.path().unwrap().to_string_lossy());
        if e.header().entry_type() == tar::EntryType::Symlink {
            let t = e
                .link_name()
                .unwrap()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let base = Path::new(&name)
                .parent()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            links.insert(name, clean(&format!("{base}/{t}")));
            continue;
        }
        let mut b = Vec::new();
        e.read_to_end(&mut b).unwrap();
        files.insert(name, b);
    }
    let get = |n: &str| -> Vec<u8> {
        let n = clean(n);
        let n = links.get(&n).cloned().unwrap_or(n);
        files
            .get(&n)
            .unwrap_or_else(|| panic!("{}: no {n}", path.display()))
            .clone()
    };
    let manifest: Value = serde_json::from_slice(&get("manifest.json")).unwrap();
    let m = &manifest[0];
    let config: Value = serde_json::from_slice(&get(m["Config"].as_str().unwrap())).unwrap();
    let mut fs: BTreeMap<String, Node> = BTreeMap::new();
    for l in m["Layers"].as_array().unwrap() {
        let layer = decompress(get(l.as_str().unwrap()));
        let mut t = tar::Archive::new(&layer[..]);
        let mut hardlinks = Vec::new();
        for e in t.entries().unwrap() {
            let mut e = e.unwrap();
            let name = clean(&e.path().unwrap().to_string_lossy());
            let (dir, base) = match name.rsplit_once('/') {
                Some((d, b)) => (d.to_owned(), b.to_owned()),
                None => (String::new(), name.clone()),
            };
            let under = |d: &str, p: &str| d.is_empty() || p.starts_with(&format!("{d}/"));
            if base == ".wh..wh..opq" {
                fs.retain(|p, _| !under(&dir, p) || *p == dir);
                continue;
            }
            if let Some(gone) = base.strip_prefix(".wh.") {
                let gone = if dir.is_empty() {
                    gone.to_owned()
                } else {
                    format!("{dir}/{gone}")
                };
                fs.retain(|p, _| *p != gone && !under(&gone, p));
                continue;
            }
            let h = e.header().clone();
            let kind = match h.entry_type() {
                tar::EntryType::Directory => 'd',
                tar::EntryType::Regular | tar::EntryType::Continuous => 'f',
                tar::EntryType::Symlink => 'l',
                tar::EntryType::Link => {
                    let t = clean(&e.link_name().unwrap().unwrap().to_string_lossy());
                    hardlinks.push((name, t));
                    continue;
                }
                _ => 'o',
            };
            let mut body = Vec::new();
            e.read_to_end(&mut body).unwrap();
            let node = Node {
                kind,
                mode: h.mode().unwrap() & 0o7777,
                uid: h.uid().unwrap(),
                gid: h.gid().unwrap(),
                size: if kind == 'f' { body.len() as u64 } else { 0 },
                digest: if kind == 'f' {
                    hoist_oci::Digest::sha256_of(&body).hex().to_owned()
                } else {
                    String::new()
                },
                link: if kind == 'l' {
                    e.link_name()
                        .unwrap()
                        .unwrap()
                        .to_string_lossy()
                        .into_owned()
                } else {
                    String::new()
                },
            };
            if kind != 'd' {
                fs.retain(|p, _| !under(&name, p) || name.is_empty());
            }
            if !name.is_empty() {
                fs.insert(name, node);
            }
        }
        for (name, target) in hardlinks {
            if let Some(n) = fs.get(&target).cloned() {
                fs.insert(name, n);
            }
        }
    }
    Image { config, fs }
}

/// A config value with the spellings of "not set" (`null`, `""`, `{}`) made one.
fn norm(v: &Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::Object(o) if o.is_empty() => None,
        v => Some(v.clone()),
    }
}

fn compare(docker: &Image, hoist: &Image) -> Vec<(String, String)> {
    let mut out = Vec::new();
    // Config fields.
    let (dc, hc) = (&docker.config["config"], &hoist.config["config"]);
    let mut keys: BTreeSet<String> = BTreeSet::new();
    for c in [dc, hc] {
        if let Some(o) = c.as_object() {
            keys.extend(o.keys().cloned());
        }
    }
    for k in keys {
        let (d, h) = (norm(&dc[&k]), norm(&hc[&k]));
        if d != h {
            out.push((
                format!("config.{k}"),
                format!(
                    "buildkit {} / hoist {}",
                    d.map_or("unset".into(), |v| v.to_string()),
                    h.map_or("unset".into(), |v| v.to_string())
                ),
            ));
        }
    }
    for k in ["architecture", "os", "variant", "author"] {
        let (d, h) = (norm(&docker.config[k]), norm(&hoist.config[k]));
        if d != h {
            out.push((k.to_owned(), format!("buildkit {d:?} / hoist {h:?}")));
        }
    }
    // History.
    let hist = |c: &Value| -> Vec<String> {
        c["history"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|h| {
                format!(
                    "{} | {} | empty={}",
                    h["created_by"].as_str().unwrap_or(""),
                    h["comment"].as_str().unwrap_or(""),
                    h["empty_layer"].as_bool().unwrap_or(false)
                )
            })
            .collect()
    };
    let (dh, hh) = (hist(&docker.config), hist(&hoist.config));
    if dh != hh {
        out.push((
            "history".into(),
            format!(
                "buildkit:\n      {}\n    hoist:\n      {}",
                dh.join("\n      "),
                hh.join("\n      ")
            ),
        ));
    }
    // Root filesystem.
    let paths: BTreeSet<&String> = docker.fs.keys().chain(hoist.fs.keys()).collect();
    for p in paths {
        match (docker.fs.get(p), hoist.fs.get(p)) {
            (Some(d), Some(h)) if d == h => {}
            (d, h) => out.push((
                "fs".into(),
                format!(
                    "/{p}: buildkit {} / hoist {}",
                    d.map_or("missing".into(), |n| n.to_string()),
                    h.map_or("missing".into(), |n| n.to_string())
                ),
            )),
        }
    }
    out
}

/// A build's outcome: the image, or the failure's output.
enum Outcome {
    Built(Image),
    Failed(String),
}

struct Env {
    /// Kept for its lifetime: stopped on drop.
    _dockerd: Dockerd,
    docker_env: Vec<(String, String)>,
    work: tempfile::TempDir,
    base: PathBuf,
}

impl Env {
    fn docker(&self) -> Command {
        // Debian's docker.io client: its built-in BuildKit client (a newer loose client wants
        // the buildx plugin for DOCKER_BUILDKIT=1).
        let mut c = Command::new("/usr/bin/docker");
        for (k, v) in &self.docker_env {
            c.env(k, v);
        }
        c.env("DOCKER_BUILDKIT", "1");
        c
    }

    fn start() -> Env {
        let dockerd = Dockerd::start();
        let docker_env = dockerd
            .docker()
            .get_envs()
            .filter_map(|(k, v)| {
                Some((
                    k.to_string_lossy().into_owned(),
                    v?.to_string_lossy().into_owned(),
                ))
            })
            .collect();
        let work = tempfile::tempdir().unwrap();
        let rootfs = work.path().join("busybox-rootfs.tar");
        hoist_conformance::fixtures::write_busybox_rootfs_tar(&rootfs).unwrap();
        let base = work.path().join("busybox.tar");
        let env = Env {
            _dockerd: dockerd,
            docker_env,
            work,
            base: base.clone(),
        };
        run(env
            .docker()
            .arg("import")
            .arg(&rootfs)
            .arg("busybox:latest"));
        run(env
            .docker()
            .args(["save", "-o"])
            .arg(&base)
            .arg("busybox:latest"));
        env
    }

    fn hoist_home(&self, worker: usize) -> PathBuf {
        let home = self.work.path().join(format!("home-{worker}"));
        run(Command::new(HOIST)
            .env("HOIST_HOME", &home)
            .args(["load", "-i"])
            .arg(&self.base));
        home
    }

    fn build_docker(&self, case: &Case, ctx: &Path, dir: &Path) -> Outcome {
        let tag = format!("diff-{}", case.name);
        let (ok, out, err) = run_status(
            self.docker()
                .args(["build", "--network", "none", "--progress", "plain", "-t"])
                .arg(&tag)
                .args(&case.args)
                .arg(ctx),
        );
        if !ok {
            return Outcome::Failed(format!("{out}{err}"));
        }
        let tar = dir.join("docker.tar");
        run(self.docker().args(["save", "-o"]).arg(&tar).arg(&tag));
        let img = read_archive(&tar);
        let _ = run_status(self.docker().args(["rmi", "-f"]).arg(&tag));
        Outcome::Built(img)
    }

    fn build_hoist(&self, home: &Path, case: &Case, ctx: &Path, dir: &Path) -> Outcome {
        let tar = dir.join("hoist.tar");
        let (ok, out, err) = run_status(
            Command::new(HOIST)
                .env("HOIST_HOME", home)
                .args(["build", "--network", "none", "--progress", "plain", "-t"])
                .arg(format!("diff-{}", case.name))
                .arg("-o")
                .arg(format!("type=docker,dest={}", tar.display()))
                .args(&case.args)
                .arg(ctx)
                .stdin(Stdio::null()),
        );
        if !ok {
            return Outcome::Failed(format!("{out}{err}"));
        }
        Outcome::Built(read_archive(&tar))
    }
}

/// `CASE KIND: reason` lines: a difference of that kind in that case is deliberate.
fn expected() -> BTreeMap<(String, String), String> {
    let text = std::fs::read_to_string(corpus_dir().join("buildkit-expected.txt")).unwrap();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (head, reason) = l
                .split_once(": ")
                .unwrap_or_else(|| panic!("expected-file line {l:?}: want `CASE KIND: reason`"));
            let (case, kind) = head
                .split_once(' ')
                .unwrap_or_else(|| panic!("expected-file line {l:?}: want `CASE KIND: reason`"));
            assert!(!reason.trim().is_empty(), "{l:?}: no reason given");
            ((case.to_owned(), kind.to_owned()), reason.to_owned())
        })
        .collect()
}

fn diff_case(env: &Env, home: &Path, case: &Case) -> Vec<(String, String)> {
    let dir = env.work.path().join("cases").join(&case.name);
    let ctx = dir.join("ctx");
    materialize(case, &ctx);
    let d = env.build_docker(case, &ctx, &dir);
    let h = env.build_hoist(home, case, &ctx, &dir);
    let diffs = match (&d, &h) {
        (Outcome::Built(d), Outcome::Built(h)) => compare(d, h),
        (Outcome::Failed(_), Outcome::Failed(_)) => Vec::new(),
        (Outcome::Failed(e), Outcome::Built(_)) => vec![(
            "outcome".into(),
            format!("buildkit failed, hoist built:\n{}", tail(e)),
        )],
        (Outcome::Built(_), Outcome::Failed(e)) => vec![(
            "outcome".into(),
            format!("buildkit built, hoist failed:\n{}", tail(e)),
        )],
    };
    let _ = std::fs::remove_dir_all(&dir);
    diffs
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(8)..]
        .iter()
        .map(|l| format!("      {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn builder_matches_buildkit() {
    require_root();
    let cases = load_cases();
    assert!(!cases.is_empty(), "no cases");
    let started = std::time::Instant::now();
    let env = Arc::new(Env::start());
    let jobs: usize = std::env::var("HOIST_DIFF_JOBS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    let queue = Arc::new(Mutex::new(cases));
    let results = Arc::new(Mutex::new(BTreeMap::new()));
    let workers: Vec<_> = (0..jobs)
        .map(|w| {
            let (env, queue, results) = (env.clone(), queue.clone(), results.clone());
            std::thread::spawn(move || {
                let home = env.hoist_home(w);
                loop {
                    let Some(case) = queue.lock().unwrap().pop() else {
                        break;
                    };
                    // A case whose tooling fails (a command that cannot run) is a failure of
                    // that case, not of the others.
                    let diffs = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        diff_case(&env, &home, &case)
                    }))
                    .unwrap_or_else(|p| {
                        let msg = p
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default();
                        vec![("harness".into(), msg)]
                    });
                    results.lock().unwrap().insert(case.name.clone(), diffs);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a worker panicked");
    }
    let results = results.lock().unwrap();
    let expected = expected();
    let mut identical = 0;
    let mut deliberate = Vec::new();
    let mut failing = Vec::new();
    let mut stale = Vec::new();
    for (name, diffs) in results.iter() {
        if diffs.is_empty() {
            identical += 1;
        }
        let kinds: BTreeSet<&String> = diffs.iter().map(|(k, _)| k).collect();
        let mut unexplained = Vec::new();
        for (kind, what) in diffs {
            match expected.get(&(name.clone(), kind.clone())) {
                Some(_) => {}
                None => unexplained.push(format!("  {kind}: {what}")),
            }
        }
        for ((c, k), reason) in &expected {
            if c == name {
                if kinds.contains(k) {
                    deliberate.push(format!("{c} {k}: {reason}"));
                } else {
                    stale.push(format!("{c} {k}: listed as expected but identical now"));
                }
            }
        }
        if !unexplained.is_empty() {
            failing.push(format!("{name}:\n{}", unexplained.join("\n")));
        }
    }
    println!(
        "{} cases in {:.0}s: {identical} identical, {} deliberate differences, {} failing",
        results.len(),
        started.elapsed().as_secs_f64(),
        deliberate.len(),
        failing.len()
    );
    for d in &deliberate {
        println!("deliberate: {d}");
    }
    assert!(
        failing.is_empty() && stale.is_empty(),
        "{} of {} cases differ from BuildKit:\n{}\n{}",
        failing.len(),
        results.len(),
        failing.join("\n"),
        stale.join("\n")
    );
    drop(env);
}
