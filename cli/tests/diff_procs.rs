//! Differential suite for `top`, `stats`, `port` and `rename`: the same image and containers in a
//! private dockerd and a private hoist home; the outputs must have docker's header lines, rows
//! and fields (after ids, times and measured numbers are normalised), and errors docker's
//! message and exit status. Engine errors are compared after their prefixes (`Error response
//! from daemon: `, `hoist: `) and case; where the wording is hoist's own (name conflicts), by the
//! phrase both carry.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hoist_conformance::fixtures;

mod common;
use common::*;

/// Removes hoist's containers of a home when dropped (a failed assertion included).
struct RemoveContainers<'a>(&'a Path);

impl Drop for RemoveContainers<'_> {
    fn drop(&mut self) {
        let ids = hoist(self.0).args(["ps", "-aq"]).output();
        if let Ok(out) = ids {
            let ids = String::from_utf8_lossy(&out.stdout).into_owned();
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let _ = hoist(self.0).args(["rm", "-f"]).args(&ids).output();
            }
        }
    }
}

fn hoist(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hoist"));
    cmd.env("HOIST_HOME", home);
    cmd
}

#[derive(Debug, Clone)]
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn outcome(cmd: &mut Command) -> Outcome {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", show(cmd)));
    Outcome {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs of ASCII digits become `N` (pids, times, measured sizes and percentages), and 12- or
/// 64-digit hex ids `<ID>`.
fn numbers(s: &str) -> String {
    let ids = ids(s);
    let mut out = String::new();
    let mut in_digits = false;
    for ch in ids.chars() {
        if ch.is_ascii_digit() {
            if !in_digits {
                out.push('N');
            }
            in_digits = true;
        } else {
            in_digits = false;
            out.push(ch);
        }
    }
    out
}

fn ids(s: &str) -> String {
    let mut out = String::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let run = b[i..]
            .iter()
            .take_while(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
            .count();
        let before = i == 0 || !b[i - 1].is_ascii_alphanumeric();
        let after = b.get(i + run).is_none_or(|c| !c.is_ascii_alphanumeric());
        if (run == 12 || run == 64) && before && after {
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

/// Sizes (`312KiB`, `1.5MB`, `0B`) become `<SIZE>`: measured memory and block I/O differ
/// between two engines' copies of one process in their unit too.
fn sizes(s: &str) -> String {
    s.split(' ')
        .map(|w| {
            let digits = w.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.');
            let unit_ok = [
                "B", "kB", "MB", "GB", "TB", "KiB", "MiB", "GiB", "TiB", "e+03kB", "e+03MB",
            ]
            .contains(&digits);
            if digits.len() < w.len() && unit_ok {
                "<SIZE>".to_owned()
            } else {
                w.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// An engine's error as its cause: the first line, without the program's and the daemon's
/// prefixes and rename's wrapping, lower case, ids normalised.
fn error_of(stderr: &str) -> String {
    let mut s = stderr.lines().next().unwrap_or_default().trim().to_owned();
    for p in ["hoist: ", "Error response from daemon: ", "Error: "] {
        if let Some(rest) = s.strip_prefix(p) {
            s = rest.to_owned();
        }
    }
    if let Some(rest) = s.strip_prefix("failed to rename container named ")
        && let Some((_, cause)) = rest.split_once(": ")
    {
        s = cause.to_owned();
    }
    if let Some(rest) = s.strip_prefix("Error when allocating new name: ") {
        s = rest.to_owned();
    }
    ids(&s).to_lowercase()
}

/// Cells of a table line (separated by two spaces or more).
fn cells(line: &str) -> Vec<String> {
    line.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Text without the terminal's control sequences (`ESC [ ... letter`), lines trimmed.
fn strip_escapes(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            chars.next();
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
            continue;
        }
        out.push(c);
    }
    out.lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs `cmd` for `secs` seconds (or until it ends), then kills it; returns stdout and whether
/// it ended by itself, with its status.
fn for_a_while(cmd: &mut Command, secs: u64) -> (String, Option<i32>) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning");
    let out = drain(child.stdout.take().expect("piped"));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut by_itself = false;
    while Instant::now() < deadline {
        if child.try_wait().expect("waiting").is_some() {
            by_itself = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // A no-op for a child that has ended (its status is kept).
    let _ = child.kill();
    let status = child.wait().expect("waiting");
    let ended = if by_itself { status.code() } else { None };
    (out.join().unwrap_or_default(), ended)
}

#[test]
fn top_stats_port_rename_match_docker() {
    require_root();
    let dockerd = Dockerd::start();
    let work = tmp();
    let home = work.path().join("home");
    let _cleanup = RemoveContainers(&home);
    let rootfs = work.path().join("rootfs.tar");
    fixtures::write_busybox_rootfs_tar(&rootfs).expect("rootfs tar");
    let docker = || dockerd.docker();
    run(docker()
        .args(["import", "--change", r#"CMD ["sh"]"#])
        .arg(&rootfs)
        .arg("busybox:latest"));
    let archive = work.path().join("images.tar");
    run(docker()
        .args(["save", "-o"])
        .arg(&archive)
        .arg("busybox:latest"));
    run(hoist(&home).arg("load").arg("-i").arg(&archive));

    let both = |args: &[&str]| {
        run(docker().args(args));
        run(hoist(&home).args(args));
    };
    let detached = |name: &str| {
        both(&[
            "run",
            "-d",
            "--network",
            "none",
            "--name",
            name,
            "busybox",
            "sleep",
            "1000",
        ]);
    };
    detached("up");
    let exited = [
        "run",
        "--network",
        "none",
        "--name",
        "ex",
        "busybox",
        "true",
    ];
    both(&exited);

    let mut mismatches: Vec<String> = Vec::new();
    let mut check = |what: &str, d: String, h: String| {
        if d != h {
            mismatches.push(format!("{what}:\n--- docker\n{d}\n--- hoist\n{h}"));
        }
    };
    let pair = |args: &[&str]| -> (Outcome, Outcome) {
        (
            outcome(docker().args(args)),
            outcome(hoist(&home).args(args)),
        )
    };
    // Same exit status and the same error (compared as causes), or the same error phrase.
    let mut errors: Vec<String> = Vec::new();
    let mut same_error = |args: &[&str], phrase: Option<&str>| {
        let (d, h) = pair(args);
        let (de, he) = (error_of(&d.stderr), error_of(&h.stderr));
        let ok = d.code == h.code
            && d.code != Some(0)
            && h.stdout.is_empty()
            && match phrase {
                None => de == he,
                Some(p) => de.contains(p) && he.contains(p),
            };
        if !ok {
            errors.push(format!(
                "{args:?}: docker {:?} {de:?}, hoist {:?} {he:?} ({:?})",
                d.code, h.code, h.stderr
            ));
        }
    };

    // top: docker's header line exactly, the same rows once pids, times and CPU are numbers.
    for args in [
        &["top", "up"][..],
        &["top", "up", "-o", "pid,comm"],
        &["container", "top", "up", "-o", "pid,user,args"],
    ] {
        let (d, h) = pair(args);
        assert_eq!(d.code, Some(0), "docker {args:?}: {}", d.stderr);
        assert_eq!(h.code, Some(0), "hoist {args:?}: {}", h.stderr);
        check(
            &format!("{args:?} header"),
            d.stdout.lines().next().unwrap_or_default().to_owned(),
            h.stdout.lines().next().unwrap_or_default().to_owned(),
        );
        // Rows as their cells (pids of other lengths pad the columns otherwise).
        let rows = |s: &str| {
            s.lines()
                .map(|l| numbers(&l.split_whitespace().collect::<Vec<_>>().join(" ")))
                .collect::<Vec<_>>()
                .join("\n")
        };
        check(&format!("{args:?}"), rows(&d.stdout), rows(&h.stdout));
    }
    same_error(&["top", "ex"], None);
    same_error(&["top", "nope"], None);
    same_error(&["top", "up", "-o", "bogus"], None);
    same_error(&["top", "up", "-o", "user=PID"], None);

    // stats --no-stream: the header exactly; each row's cells with measured sizes and
    // percentages normalised, the memory limit, network and pids exactly.
    for args in [
        &["stats", "--no-stream", "up", "ex"][..],
        &["stats", "--no-stream", "-a"],
        &["stats", "--no-stream"],
        &["container", "stats", "--no-stream", "up"],
    ] {
        let (d, h) = pair(args);
        assert_eq!(d.code, Some(0), "docker {args:?}: {}", d.stderr);
        assert_eq!(h.code, Some(0), "hoist {args:?}: {}", h.stderr);
        let (dl, hl): (Vec<&str>, Vec<&str>) =
            (d.stdout.lines().collect(), h.stdout.lines().collect());
        check(
            &format!("{args:?} header"),
            dl.first().copied().unwrap_or_default().to_owned(),
            hl.first().copied().unwrap_or_default().to_owned(),
        );
        let rows = |lines: &[&str]| {
            let mut rows: Vec<String> = lines
                .iter()
                .skip(1)
                .map(|l| {
                    let c = cells(l);
                    let mut norm: Vec<String> = Vec::new();
                    for (i, cell) in c.iter().enumerate() {
                        norm.push(match i {
                            // CPU %, MEM %: measured.
                            2 | 4 => numbers(cell),
                            // MEM USAGE / LIMIT: the usage is measured, the limit is the host's.
                            3 => match cell.split_once(" / ") {
                                Some((_, limit)) => format!("<SIZE> / {limit}"),
                                None => cell.clone(),
                            },
                            6 => sizes(cell),
                            _ => ids(cell),
                        });
                    }
                    norm.join(" | ")
                })
                .collect();
            rows.sort();
            rows.join("\n")
        };
        check(&format!("{args:?} rows"), rows(&dl), rows(&hl));
    }
    for args in [
        &[
            "stats",
            "--no-stream",
            "--format",
            "{{.Container}}|{{.Name}}|{{.ID}}|{{.NetIO}}|{{.PIDs}}",
            "up",
            "ex",
        ][..],
        &[
            "stats",
            "--no-stream",
            "--no-trunc",
            "--format",
            "table {{.Container}}\\t{{.ID}}\\t{{.PIDs}}",
            "up",
        ],
        &[
            "stats",
            "--no-stream",
            "--format",
            "{{.MemPerc}} {{.CPUPerc}}",
            "ex",
        ],
    ] {
        let (d, h) = pair(args);
        check(&format!("{args:?}"), ids(&d.stdout), ids(&h.stdout));
    }
    {
        let (d, h) = pair(&["stats", "--no-stream", "--format", "json", "up"]);
        let keys = |s: &str| -> Vec<String> {
            let v: serde_json::Value = serde_json::from_str(s.trim())
                .unwrap_or_else(|e| panic!("not one JSON object ({e}): {s}"));
            v.as_object().expect("an object").keys().cloned().collect()
        };
        check(
            "stats --format json keys",
            keys(&d.stdout).join(","),
            keys(&h.stdout).join(","),
        );
    }
    same_error(&["stats", "--no-stream", "nope"], None);
    same_error(&["stats", "--no-stream", "up", "nope"], None);

    // Streaming: frames redrawn from the top-left, each docker's table.
    {
        let (d, _) = for_a_while(docker().args(["stats", "up"]), 4);
        let (h, _) = for_a_while(hoist(&home).args(["stats", "up"]), 4);
        let frames = |s: &str| s.matches("\x1b[H").count();
        assert!(
            frames(&h) >= 2,
            "hoist stats streamed {} frames: {h:?}",
            frames(&h)
        );
        assert!(
            frames(&d) >= 2,
            "docker stats streamed {} frames",
            frames(&d)
        );
        let first = |s: &str| {
            strip_escapes(s)
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned()
        };
        check("stats stream header", first(&d), first(&h));
        let rows = |s: &str| {
            strip_escapes(s)
                .lines()
                .filter(|l| l.starts_with(|c: char| c.is_ascii_hexdigit()))
                .map(|l| cells(l).get(1).cloned().unwrap_or_default())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
                .join(",")
        };
        check("stats stream rows", rows(&d), rows(&h));
    }

    // port: nothing published in either; docker's errors for a port and a bad port.
    for args in [
        &["port", "up"][..],
        &["port", "ex"],
        &["container", "port", "up"],
    ] {
        let (d, h) = pair(args);
        check(
            &format!("{args:?}"),
            format!("{:?} {}", d.code, d.stdout),
            format!("{:?} {}", h.code, h.stdout),
        );
    }
    same_error(&["port", "up", "80"], None);
    same_error(&["port", "up", "53/udp"], None);
    same_error(&["container", "port", "ex", "443/tcp"], None);
    same_error(&["port", "up", "abc"], Some("invalid port (abc)"));
    same_error(&["port", "nope"], None);

    // rename: docker's rules, running or stopped, and the names seen afterwards.
    same_error(&["rename", "up", "up"], None);
    same_error(&["rename", "up", "/up"], None);
    same_error(
        &["rename", "up", "ex"],
        Some("is already in use by container"),
    );
    same_error(&["rename", "up", "a b"], Some("invalid container name"));
    same_error(&["rename", "up", "a b"], Some("[a-za-z0-9][a-za-z0-9_.-]"));
    same_error(&["rename", "nope", "x"], None);
    same_error(&["rename", "up", ""], None);
    for args in [
        &["rename", "up", "/up2"][..],
        &["container", "rename", "ex", "ex2"],
        // The old name is free again.
        &["rename", "up2", "ex"],
        &["rename", "ex2", "up"],
    ] {
        let (d, h) = pair(args);
        check(
            &format!("{args:?}"),
            format!("{:?} {} {}", d.code, d.stdout, d.stderr),
            format!("{:?} {} {}", h.code, h.stdout, h.stderr),
        );
    }
    let names = |out: Outcome| {
        let mut v: Vec<String> = out.stdout.lines().map(str::to_owned).collect();
        v.sort();
        v.join(",")
    };
    let (d, h) = pair(&["ps", "-a", "--format", "{{.Names}} {{.State}}"]);
    check("names after renames", names(d), names(h));
    // The renamed running container is still itself: top and stats find it by its new name.
    let (d, h) = pair(&["top", "ex", "-o", "comm"]);
    check("top after rename", d.stdout, h.stdout);
    let (d, h) = pair(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.PIDs}}",
        "ex",
    ]);
    check("stats after rename", d.stdout, h.stdout);
    // And a new container may take the name the rename left.
    detached("up2");

    // Measured, not made up: a spinning container's CPU % is well above zero in both, its memory
    // usage is not nothing, and both count its one process.
    both(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "spin",
        "busybox",
        "sh",
        "-c",
        "while :; do :; done",
    ]);
    let (d, h) = pair(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.CPUPerc}}|{{.MemUsage}}|{{.PIDs}}",
        "spin",
    ]);
    both(&["rm", "-f", "spin"]);
    for (engine, out) in [("docker", &d.stdout), ("hoist", &h.stdout)] {
        let f: Vec<&str> = out.trim().split('|').collect();
        let cpu: f64 = f[0].trim_end_matches('%').parse().unwrap_or(0.0);
        assert!(cpu > 1.0, "{engine} stats of a spinning container: {out:?}");
        assert!(!f[1].starts_with("0B "), "{engine}: {out:?}");
        assert_eq!(f[2], "1", "{engine}: {out:?}");
    }

    assert!(
        mismatches.is_empty() && errors.is_empty(),
        "{} outputs and {} errors differ from docker:\n{}\n{}",
        mismatches.len(),
        errors.len(),
        mismatches.join("\n"),
        errors.join("\n")
    );
}

/// hoist's streaming `stats` of named containers ends when they have all stopped (docker's keeps
/// redrawing them until interrupted), after showing them stopped.
#[test]
fn streaming_stats_end_with_the_containers() {
    require_root();
    let work = tmp();
    let home = work.path().join("home");
    let _cleanup = RemoveContainers(&home);
    let rootfs = work.path().join("rootfs.tar");
    fixtures::write_busybox_rootfs_tar(&rootfs).expect("rootfs tar");
    run(hoist(&home)
        .args(["import", "--change", r#"CMD ["sh"]"#])
        .arg(&rootfs)
        .arg("busybox"));
    run(hoist(&home).args([
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "brief",
        "busybox",
        "sleep",
        "4",
    ]));
    let started = Instant::now();
    let (out, ended) = for_a_while(
        hoist(&home).args(["stats", "--format", "{{.Name}} {{.PIDs}}", "brief"]),
        20,
    );
    assert_eq!(
        ended,
        Some(0),
        "stats did not end with its container: {out:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    let text = strip_escapes(&out);
    assert!(text.lines().any(|l| l == "brief 1"), "{text:?}");
    assert_eq!(text.lines().last(), Some("brief 0"), "{text:?}");
}

/// `rename` and `run --name` racing for one name: exactly one gets it, every round, and the
/// names `ps` shows stay unique.
#[test]
fn rename_and_run_race_for_a_name() {
    require_root();
    let work = tmp();
    let home = work.path().join("home");
    let _cleanup = RemoveContainers(&home);
    let rootfs = work.path().join("rootfs.tar");
    fixtures::write_busybox_rootfs_tar(&rootfs).expect("rootfs tar");
    run(hoist(&home)
        .args(["import", "--change", r#"CMD ["sh"]"#])
        .arg(&rootfs)
        .arg("busybox"));
    for round in 0..4 {
        let src = format!("src{round}");
        let prize = format!("prize{round}");
        run(hoist(&home).args([
            "run",
            "--network",
            "none",
            "--name",
            &src,
            "busybox",
            "true",
        ]));
        let (renamed, ran) = std::thread::scope(|s| {
            let r = s.spawn(|| outcome(hoist(&home).args(["rename", &src, &prize])));
            let n = s.spawn(|| {
                outcome(hoist(&home).args([
                    "run",
                    "--network",
                    "none",
                    "--name",
                    &prize,
                    "busybox",
                    "true",
                ]))
            });
            (r.join().unwrap(), n.join().unwrap())
        });
        let wins = [renamed.code, ran.code]
            .iter()
            .filter(|c| **c == Some(0))
            .count();
        assert_eq!(wins, 1, "round {round}: rename {renamed:?}, run {ran:?}");
        let loser = if renamed.code == Some(0) {
            &ran
        } else {
            &renamed
        };
        assert!(loser.stderr.contains("is already in use"), "{loser:?}");
        let names = run(hoist(&home).args(["ps", "-a", "--format", "{{.Names}}"]));
        let mut v: Vec<&str> = names.lines().collect();
        let n = v.len();
        v.sort_unstable();
        v.dedup();
        assert_eq!(v.len(), n, "duplicate names: {names}");
        assert_eq!(v.iter().filter(|x| **x == prize).count(), 1, "{names}");
    }
}
