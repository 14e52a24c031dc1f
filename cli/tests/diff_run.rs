//! `hoist run` against `docker run`: every argument vector of `diff_run/vectors.jsonl` runs
//! through the docker CLI on a private dockerd and through `hoist run`, on the same busybox
//! image (the same rootfs tar imported into both with the same changes); stdout, stderr and the
//! exit status must be the same after normalising ids. The differences hoist keeps on purpose
//! are in `diff_run/expected.txt`, each with its reason; an entry there that no longer differs
//! fails too, so the file stays true.
//!
//! Error messages of the engines themselves (docker's `docker: Error response from daemon: ...`
//! against hoist's `hoist: ...`) are not compared word for word: when docker's stderr is its own
//! error, hoist's must be one of its own (non-empty, no panic), and the exit status must match.

mod common;
mod run_support;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::Dockerd;
use run_support::Home;

const PATH_ENV: &str = "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Vectors run at once (each runs docker, then hoist).
const PARALLEL: usize = 4;
const HOST_VAR: (&str, &str) = ("DIFF_RUN_HOST_VAR", "from the host");

#[derive(serde::Deserialize)]
struct Vector {
    name: String,
    args: Vec<String>,
    #[serde(default)]
    stdin: Option<String>,
}

#[derive(Debug, PartialEq, Eq, Clone)]
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// A vector's name, its argv, docker's outcome and hoist's.
type Compared = (String, Vec<String>, Outcome, Outcome);

fn vectors() -> Vec<Vector> {
    include_str!("diff_run/vectors.jsonl")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad vector {l}: {e}")))
        .collect()
}

/// Name -> reason.
fn expected() -> BTreeMap<String, String> {
    include_str!("diff_run/expected.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (name, reason) = l
                .split_once(':')
                .unwrap_or_else(|| panic!("expected.txt: {l:?} is not NAME: REASON"));
            assert!(
                !reason.trim().is_empty(),
                "expected.txt: {name} has no reason"
            );
            (name.trim().to_owned(), reason.trim().to_owned())
        })
        .collect()
}

/// Ids (64 and 12 hex digits) become `<ID>`.
fn normalise(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let run = b[i..]
            .iter()
            .take_while(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            .count();
        let boundary_before = i == 0 || !b[i - 1].is_ascii_alphanumeric();
        let boundary_after = b.get(i + run).is_none_or(|c| !c.is_ascii_alphanumeric());
        if (run == 64 || run == 12)
            && boundary_before
            && boundary_after
            && b[i..i + run].iter().any(u8::is_ascii_digit)
        {
            out.push_str("<ID>");
            i += run;
        } else {
            let ch = s[i..].chars().next().expect("a char");
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// Whether `stderr` (docker's) is the engine's own error rather than the container's output.
fn engine_error(stderr: &str) -> bool {
    [
        "docker: ",
        "unknown flag",
        "unknown shorthand flag",
        "invalid argument",
        "\"docker run\" requires",
    ]
    .iter()
    .any(|p| stderr.starts_with(p) || stderr.contains(&format!("\n{p}")))
}

fn run_one(mut cmd: Command, stdin: Option<&str>) -> Outcome {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning");
    let mut input = child.stdin.take().expect("piped");
    if let Some(s) = stdin {
        let _ = input.write_all(s.as_bytes());
    }
    drop(input);
    let out = common::drain(child.stdout.take().expect("piped"));
    let err = common::drain(child.stderr.take().expect("piped"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().expect("waiting") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break child.wait().expect("waiting");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Outcome {
        code: status.code(),
        stdout: normalise(&out.join().unwrap_or_default()),
        stderr: normalise(&err.join().unwrap_or_default()),
    }
}

fn args_for(v: &Vector, dir: &Path) -> Vec<String> {
    let mut a = vec!["run".to_owned()];
    // Every container is removed when it exits (unless the vector says otherwise).
    if !v.args.iter().any(|x| x == "--rm") && !v.args.is_empty() {
        a.push("--rm".to_owned());
    }
    a.extend(
        v.args
            .iter()
            .map(|x| x.replace("{DIR}", &dir.display().to_string())),
    );
    a
}

/// Whether the two outcomes are the same (engine errors compared by class).
fn same(docker: &Outcome, hoist: &Outcome) -> bool {
    if docker.code != hoist.code || docker.stdout != hoist.stdout {
        return false;
    }
    if engine_error(&docker.stderr) {
        return !hoist.stderr.is_empty() && !hoist.stderr.contains("panicked");
    }
    docker.stderr == hoist.stderr
}

#[test]
fn run_matches_docker_run() {
    common::require_root();
    let dockerd = Dockerd::start();
    let h = Home::new();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(dir.join("data/file"), "in the bind mount\n").unwrap();
    std::fs::write(dir.join("env.list"), "# comment\nF1=one\nF2=two words\n").unwrap();
    // A profile in moby's format: everything allowed but mkdir.
    std::fs::write(
        dir.join("seccomp.json"),
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}"#,
    )
    .unwrap();
    let rootfs = h.dir.path().join("rootfs.tar");
    for (name, change) in [
        ("busybox", r#"CMD ["sh"]"#),
        ("echoimg", r#"ENTRYPOINT ["echo"]"#),
    ] {
        h.import(name, &[PATH_ENV, change]);
        common::run(
            dockerd
                .docker()
                .args(["import", "--change", PATH_ENV, "--change", change])
                .arg(&rootfs)
                .arg(name),
        );
    }
    let vectors = vectors();
    assert!(vectors.len() >= 60, "{} vectors", vectors.len());
    let expected = expected();
    for name in expected.keys() {
        assert!(
            vectors.iter().any(|v| &v.name == name),
            "expected.txt names {name}, which is no vector"
        );
    }
    let results: Mutex<Vec<Compared>> = Mutex::new(Vec::new());
    let next = Mutex::new(0usize);
    std::thread::scope(|s| {
        for _ in 0..PARALLEL {
            s.spawn(|| {
                loop {
                    let i = {
                        let mut n = next.lock().unwrap();
                        *n += 1;
                        *n - 1
                    };
                    let Some(v) = vectors.get(i) else { break };
                    let args = args_for(v, dir);
                    let mut d = dockerd.docker();
                    d.args(&args).current_dir(dir).env(HOST_VAR.0, HOST_VAR.1);
                    let docker = run_one(d, v.stdin.as_deref());
                    let a: Vec<&str> = args.iter().map(String::as_str).collect();
                    let mut c = h.cmd(&a);
                    c.current_dir(dir).env(HOST_VAR.0, HOST_VAR.1);
                    let hoist = run_one(c, v.stdin.as_deref());
                    results
                        .lock()
                        .unwrap()
                        .push((v.name.clone(), args, docker, hoist));
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by(|a, b| a.0.cmp(&b.0));
    let mut failures = Vec::new();
    for (name, args, docker, hoist) in &results {
        let differs = !same(docker, hoist);
        match (differs, expected.get(name)) {
            (true, None) => failures.push(format!(
                "{name}: {args:?}\n  docker: {docker:?}\n  hoist:  {hoist:?}"
            )),
            (false, Some(reason)) => failures.push(format!(
                "{name}: listed in expected.txt ({reason}) but hoist now matches docker: remove it"
            )),
            _ => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} vectors differ from docker run:\n{}",
        failures.len(),
        results.len(),
        failures.join("\n")
    );
}
