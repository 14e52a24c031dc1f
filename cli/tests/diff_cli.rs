//! Differential suite "CLI shapes": the same image, containers and volume in a private dockerd
//! and a private hoist home; `ps`, `images`, `history`, `inspect` and `volume ls` must print
//! docker's columns, JSON keys and `--format`/`--filter` results. What differs on purpose is
//! listed, with the reason, in `diff_cli_expected.txt` beside this file; the suite fails both on a
//! difference not listed and on a listed one that went away.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use hoist_conformance::fixtures;
use serde_json::Value;

mod common;
use common::*;

/// Removes hoist's containers of a home when dropped (a failed assertion included), so no
/// supervisor outlives the test.
struct RemoveContainers<'a>(&'a Path, &'a [&'a str]);

impl Drop for RemoveContainers<'_> {
    fn drop(&mut self) {
        let _ = hoist(self.0).args(["rm", "-f"]).args(self.1).output();
    }
}

fn hoist(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hoist"));
    cmd.env("HOIST_HOME", home);
    cmd
}

/// The column names of a table's header line (separated by two spaces or more).
fn header(out: &str) -> Vec<String> {
    out.lines()
        .next()
        .unwrap_or_default()
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Every key path of a JSON value (`HostConfig.Memory`, `Mounts[].Type`), maps' keys included
/// except those under `skip` (whose keys are data, not shape).
fn key_paths(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(o) => {
            for (k, val) in o {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.insert(p.clone());
                let data_keys = matches!(k.as_str(), "Labels" | "Volumes" | "ExposedPorts");
                if !data_keys {
                    key_paths(val, &p, out);
                }
            }
        }
        Value::Array(a) => {
            for val in a {
                key_paths(val, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

fn keys_of(out: &str) -> BTreeSet<String> {
    let v: Value = serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"));
    let mut keys = BTreeSet::new();
    key_paths(&v, "", &mut keys);
    keys
}

/// The keys of each line of `--format json` output, all lines together.
fn json_line_keys(out: &str) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for l in out.lines() {
        keys.extend(keys_of(l));
    }
    keys
}

/// `what -KEY` (docker has it, hoist not) and `what +KEY` (hoist only) lines.
fn differences(what: &str, docker: &BTreeSet<String>, hoist: &BTreeSet<String>) -> Vec<String> {
    let mut out: Vec<String> = docker
        .difference(hoist)
        .map(|k| format!("{what} -{k}"))
        .collect();
    out.extend(hoist.difference(docker).map(|k| format!("{what} +{k}")));
    out
}

fn sorted_lines(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s.lines().map(str::to_owned).collect();
    v.sort();
    v
}

/// Ages and durations as a placeholder: `Up 2 seconds` and `Up Less than a second` alike.
fn normalise_times(s: &str) -> String {
    let mut out = s.to_owned();
    for (from, to) in [
        ("Less than a second", "N"),
        ("About a minute", "N"),
        ("About an hour", "N"),
    ] {
        out = out.replace(from, to);
    }
    let words: Vec<&str> = out.split(' ').collect();
    let mut norm = Vec::new();
    let mut i = 0;
    while i < words.len() {
        if words[i].parse::<u64>().is_ok()
            && words
                .get(i + 1)
                .is_some_and(|u| u.starts_with("second") || u.starts_with("minute"))
        {
            norm.push("N".to_owned());
            i += 2;
            continue;
        }
        norm.push(words[i].to_owned());
        i += 1;
    }
    norm.join(" ")
}

#[test]
fn cli_shapes_match_docker() {
    require_root();
    let dockerd = Dockerd::start();
    let work = tmp();
    let home = work.path().join("home");
    let rootfs = work.path().join("rootfs.tar");
    fixtures::write_busybox_rootfs_tar(&rootfs).expect("rootfs tar");
    let docker = || dockerd.docker();

    // One image in both, with the same id: docker imports it, hoist loads what docker saves.
    for (tag, change) in [
        ("busybox:latest", r#"CMD ["sh"]"#),
        ("solo:1", r#"CMD ["true"]"#),
    ] {
        run(docker()
            .args(["import", "--change", change, "--change", "LABEL team=a"])
            .arg(&rootfs)
            .arg(tag));
    }
    let archive = work.path().join("images.tar");
    run(docker()
        .args(["save", "-o"])
        .arg(&archive)
        .args(["busybox:latest", "solo:1"]));
    run(hoist(&home).arg("load").arg("-i").arg(&archive));

    // A running container, an exited one (an argument with a space: COMMAND's quoting) and a
    // labelled volume, in both.
    let _cleanup = RemoveContainers(&home, &["up", "ex"]);
    let both = |args: &[&str]| {
        run(docker().args(args));
        run(hoist(&home).args(args));
    };
    both(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "up",
        "-l",
        "role=web",
        "busybox",
        "sleep",
        "1000",
    ]);
    let exited = [
        "run",
        "--network",
        "none",
        "--name",
        "ex",
        "busybox",
        "sh",
        "-c",
        "echo out; exit 3",
    ];
    let (ok, _, _) = run_status(docker().args(exited));
    assert!(!ok, "docker run of `exit 3` fails");
    let (ok, _, _) = run_status(hoist(&home).args(exited));
    assert!(!ok, "hoist run of `exit 3` fails");
    both(&["volume", "create", "--label", "k=v", "vol1"]);
    both(&["tag", "busybox:latest", "extra:1"]);

    let mut diffs: Vec<String> = Vec::new();
    let mut mismatches: Vec<String> = Vec::new();
    let mut same = |what: &str, args: &[&str], norm: &dyn Fn(&str) -> String| {
        let d = norm(&run(docker().args(args)));
        let h = norm(&run(hoist(&home).args(args)));
        if d != h {
            mismatches.push(format!(
                "{what} ({}):\n--- docker\n{d}\n--- hoist\n{h}",
                args.join(" ")
            ));
        }
    };
    let plain = |s: &str| s.to_owned();
    let sorted = |s: &str| sorted_lines(s).join("\n");

    // Table headers: the same columns.
    let hdr = |s: &str| header(s).join(" | ");
    same("ps header", &["ps", "-a"], &hdr);
    same("ps -s header", &["ps", "-a", "-s"], &hdr);
    same("images header", &["images"], &hdr);
    same("images --digests header", &["images", "--digests"], &hdr);
    same("history header", &["history", "busybox"], &hdr);
    same("volume ls header", &["volume", "ls"], &hdr);
    same(
        "ps table template header",
        &[
            "ps",
            "-a",
            "--format",
            "table {{.ID}}\\t{{.Names}}\\t{{.Status}}",
        ],
        &hdr,
    );
    same(
        "images table template header",
        &[
            "images",
            "--format",
            "table {{.Repository}}\\t{{.Tag}}\\t{{.Size}}",
        ],
        &hdr,
    );

    // --format values (ids are the same image's; ages normalised).
    same(
        "ps --format",
        &[
            "ps",
            "-a",
            "--format",
            "{{.Names}}|{{.Image}}|{{.Command}}|{{.State}}|{{.Ports}}|{{.Networks}}|{{.Labels}}|{{.LocalVolumes}}|{{.Mounts}}|{{.Size}}",
        ],
        &sorted,
    );
    same(
        "ps --no-trunc COMMAND",
        &[
            "ps",
            "-a",
            "--no-trunc",
            "--format",
            "{{.Names}} {{.Command}}",
        ],
        &sorted,
    );
    same(
        "ps status",
        &[
            "ps",
            "-a",
            "--format",
            "{{.Names}} {{.Status}} {{.RunningFor}}",
        ],
        &|s| sorted(&normalise_times(s)),
    );
    same(
        "images --format",
        &[
            "images",
            "--format",
            "{{.Repository}}|{{.Tag}}|{{.ID}}|{{.Size}}|{{.VirtualSize}}|{{.Containers}}|{{.SharedSize}}",
        ],
        &sorted,
    );
    same(
        "images --no-trunc ids",
        &["images", "--no-trunc", "--format", "{{.ID}}"],
        &sorted,
    );
    same("images -q", &["images", "-q"], &sorted);
    same(
        "history sizes",
        &[
            "history",
            "--format",
            "{{.ID}}|{{.Size}}|{{.CreatedBy}}|{{.Comment}}",
            "busybox",
        ],
        &plain,
    );
    same(
        "volume ls --format",
        &[
            "volume",
            "ls",
            "--format",
            "{{.Name}}|{{.Driver}}|{{.Scope}}|{{.Labels}}|{{.Links}}|{{.Size}}",
        ],
        &sorted,
    );
    same(
        "image inspect --format",
        &[
            "image",
            "inspect",
            "--format",
            "{{.Id}} {{json .Config.Cmd}} {{.Os}}/{{.Architecture}} {{.Size}} {{json .RepoTags}} {{.Config.Labels.team}} {{upper .Os}}",
            "busybox",
        ],
        &plain,
    );
    same(
        "container inspect --format",
        &[
            "container",
            "inspect",
            "--format",
            "{{.Name}} {{.State.Status}} {{.State.ExitCode}} {{.State.Running}} {{json .Config.Cmd}} {{.Config.Image}} {{.HostConfig.NetworkMode}} {{.Path}} {{join .Args \",\"}}",
            "ex",
            "up",
        ],
        &plain,
    );
    same(
        "container inspect -s",
        &[
            "container",
            "inspect",
            "-s",
            "--format",
            "{{.SizeRw}} {{.SizeRootFs}}",
            "ex",
        ],
        &plain,
    );
    same(
        "inspect picks the container",
        &["inspect", "--format", "{{.Name}} {{.Image}}", "up"],
        &plain,
    );

    // --filter, as docker matches.
    for f in [
        "status=exited",
        "status=running",
        "name=u",
        "name=^u",
        "name=^e.$",
        "name=p$",
        "exited=3",
        "exited=0",
        "ancestor=busybox",
        "ancestor=solo:1",
        "label=team=a",
        "label=team=b",
        "label=role=web",
        "label=role",
    ] {
        same(
            &format!("ps --filter {f}"),
            &["ps", "-a", "--filter", f, "--format", "{{.Names}}"],
            &sorted,
        );
    }
    // A container's labels: the image's, with `-l` over them.
    same(
        "container labels",
        &["inspect", "--format", "{{json .Config.Labels}}", "up"],
        &|s: &str| s.to_owned(),
    );
    same(
        "ps --filter status=exited without -a",
        &["ps", "--filter", "status=exited", "--format", "{{.Names}}"],
        &sorted,
    );
    for f in [
        "reference=busy*",
        "reference=*:1",
        "dangling=true",
        "dangling=false",
        "label=team=a",
        "label=team",
        "label=nope",
    ] {
        same(
            &format!("images --filter {f}"),
            &[
                "images",
                "--filter",
                f,
                "--format",
                "{{.Repository}}:{{.Tag}}",
            ],
            &sorted,
        );
    }
    for f in [
        "name=vol",
        "name=^vol1$",
        "name=^ol",
        "name=nope",
        "dangling=true",
        "label=k=v",
        "label=k=x",
    ] {
        same(
            &format!("volume ls --filter {f}"),
            &["volume", "ls", "--filter", f, "--format", "{{.Name}}"],
            &sorted,
        );
    }

    // rmi: docker's lines (the untagged name, then the image id).
    same("rmi of a second tag", &["rmi", "extra:1"], &plain);
    same("rmi of an unused image", &["rmi", "solo:1"], &plain);

    // logs --since/--until: docker's time forms (durations, RFC 3339, Unix timestamps).
    for args in [
        &["logs", "ex"][..],
        &["logs", "--since", "10m", "ex"][..],
        &["logs", "--until", "10m", "ex"][..],
        &["logs", "--since", "2000-01-01T00:00:00Z", "ex"][..],
        &["logs", "--since", "2000-01-01", "ex"][..],
        &["logs", "--until", "1000000000", "ex"][..],
        &["logs", "--since", "4000000000", "ex"][..],
        &["logs", "--since", "1h30m", "--until", "4000000000.5", "ex"][..],
    ] {
        same("logs", args, &plain);
    }

    // images -a: the same list (hoist keeps no intermediate images).
    same(
        "images -a",
        &[
            "images",
            "-a",
            "--format",
            "{{.Repository}}:{{.Tag}} {{.ID}}",
        ],
        &sorted,
    );

    // version and info: docker's field names for the facts both know.
    same(
        "version --format",
        &[
            "version",
            "--format",
            "{{.Client.Os}}/{{.Client.Arch}} {{.Server.Os}}/{{.Server.Arch}} {{.Server.KernelVersion}}",
        ],
        &plain,
    );
    same(
        "info --format",
        &[
            "info",
            "--format",
            "{{.OSType}} {{.Architecture}} {{.NCPU}} {{.MemTotal}} {{.KernelVersion}} {{.Containers}} {{.ContainersRunning}} {{.ContainersPaused}} {{.ContainersStopped}} {{.Images}} {{.LoggingDriver}}",
        ],
        &plain,
    );

    // system df: the same rows (unpacked image sizes, each layer once).
    same("system df", &["system", "df"], &|s| {
        s.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join("\n")
    });

    // system df -v: docker's sections, their headers, and the rows that hold no times or ids.
    same("system df -v", &["system", "df", "-v"], &|s| {
        s.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|l| !l.contains(" ago"))
            .collect::<Vec<_>>()
            .join("\n")
    });

    // JSON keys: --format json lines and inspect, recursively.
    let both_out = |args: &[&str]| (run(docker().args(args)), run(hoist(&home).args(args)));
    for (what, args) in [
        ("ps-json", &["ps", "-a", "--format", "json"][..]),
        ("images-json", &["images", "--format", "json"][..]),
        ("volume-ls-json", &["volume", "ls", "--format", "json"][..]),
    ] {
        let (d, h) = both_out(args);
        diffs.extend(differences(what, &json_line_keys(&d), &json_line_keys(&h)));
    }
    for (what, args) in [
        ("image-inspect", &["image", "inspect", "busybox"][..]),
        (
            "container-inspect-running",
            &["container", "inspect", "up"][..],
        ),
        ("container-inspect-exited", &["inspect", "ex"][..]),
    ] {
        let (d, h) = both_out(args);
        diffs.extend(differences(what, &keys_of(&d), &keys_of(&h)));
    }

    let expected_text = include_str!("diff_cli_expected.txt");
    let expected: BTreeSet<String> = expected_text
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    let got: BTreeSet<String> = diffs.into_iter().collect();
    let unexpected: Vec<&String> = got.difference(&expected).collect();
    let gone: Vec<&String> = expected.difference(&got).collect();
    assert!(
        mismatches.is_empty() && unexpected.is_empty() && gone.is_empty(),
        "hoist's CLI shapes differ from docker's:\n{}\nkey differences not in diff_cli_expected.txt:\n{}\nlisted there but gone (remove them):\n{}",
        mismatches.join("\n"),
        unexpected
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        gone.iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
    );
}

/// An error names the program once: `hoist serve: ...`, not `hoist: hoist serve: ...`.
#[test]
fn errors_name_the_program_once() {
    let work = tmp();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let addr = taken.local_addr().expect("its address").to_string();
    let (ok, _, err) = run_status(
        hoist(&work.path().join("home"))
            .args(["serve", "--listen", &addr, "--data"])
            .arg(work.path().join("data")),
    );
    assert!(!ok, "serve on a taken port fails");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("hoist serve: ") && !err.contains("hoist: hoist"),
        "error line: {err}"
    );
    let (ok, _, err) = run_status(hoist(&work.path().join("home")).args(["inspect", "nope:1"]));
    assert!(!ok);
    assert!(
        err.starts_with("hoist: ") && !err.contains("hoist: hoist"),
        "{err}"
    );
}

/// `system df`'s Build Cache row counts what the build cache holds (`builder du`).
#[test]
fn system_df_counts_the_build_cache() {
    require_root();
    let work = tmp();
    let home = work.path().join("home");
    let rootfs = work.path().join("rootfs.tar");
    fixtures::write_busybox_rootfs_tar(&rootfs).expect("rootfs tar");
    run(hoist(&home).arg("import").arg(&rootfs).arg("base:1"));
    let ctx = work.path().join("ctx");
    std::fs::create_dir_all(&ctx).expect("context dir");
    std::fs::write(ctx.join("data"), vec![7u8; 300_000]).expect("context file");
    std::fs::write(ctx.join("Dockerfile"), "FROM base:1\nCOPY data /data\n").expect("Dockerfile");
    run(hoist(&home).args(["build", "-t", "built:1"]).arg(&ctx));
    let du = run(hoist(&home).args(["builder", "du"]));
    let records: u64 = du
        .lines()
        .find_map(|l| l.strip_prefix("records: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("builder du: {du}"));
    assert!(records > 0, "the build left cache records: {du}");
    let df = run(hoist(&home).args(["system", "df"]));
    let row: Vec<&str> = df
        .lines()
        .find(|l| l.starts_with("Build Cache"))
        .unwrap_or_else(|| panic!("no Build Cache row: {df}"))
        .split_whitespace()
        .collect();
    assert_eq!(row[2], records.to_string(), "TOTAL of {df}");
    assert_ne!(row[4], "0B", "SIZE of {df}");
    // -v lists each record under BuildKit's columns.
    let dfv = run(hoist(&home).args(["system", "df", "-v"]));
    let section = dfv
        .split("Build cache usage:")
        .nth(1)
        .unwrap_or_else(|| panic!("no build cache section: {dfv}"));
    let rows: Vec<Vec<&str>> = section
        .lines()
        .skip_while(|l| !l.starts_with("CACHE ID"))
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len() as u64, records, "{section}");
    for r in &rows {
        assert_eq!(r[1], "regular", "{section}");
        assert!(matches!(*r.last().unwrap(), "true" | "false"), "{section}");
    }
    assert!(
        rows.iter().any(|r| r[2] != "0B"),
        "the COPY's layer has a size: {section}"
    );
}

/// Push and pull progress list the layers, as docker does, and not the image config.
#[test]
fn progress_lists_layers_not_the_config() {
    let server = hoist_conformance::harness::Server::hoist(Path::new(env!("CARGO_BIN_EXE_hoist")))
        .expect("a hoist registry");
    let work = tmp();
    let (home, fresh) = (work.path().join("home"), work.path().join("fresh"));
    let docker_config = work.path().join("docker");
    let cli = |home: &Path| {
        let mut c = hoist(home);
        c.env("DOCKER_CONFIG", &docker_config)
            .env("RUST_LOG", "warn");
        c
    };
    let rootfs = work.path().join("rootfs.tar");
    fixtures::write_busybox_rootfs_tar(&rootfs).expect("rootfs tar");
    let name = format!("{}/progress/app:1", server.addr);
    run(cli(&home).arg("import").arg(&rootfs).arg(&name));
    let image: Value =
        serde_json::from_str(&run(cli(&home).args(["image", "inspect", &name]))).expect("json");
    let config = image[0]["Id"]
        .as_str()
        .expect("Id")
        .trim_start_matches("sha256:")[..12]
        .to_owned();
    let layers: Vec<String> = image[0]["Layers"]
        .as_array()
        .expect("Layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("digest")[7..19].to_owned())
        .collect();
    let blob_lines = |out: &str, done: &str| -> Vec<String> {
        out.lines()
            .filter(|l| l.ends_with(done))
            .map(|l| l.split(':').next().unwrap_or_default().to_owned())
            .collect()
    };
    let pushed = run(cli(&home).args(["push", &name]));
    assert_eq!(blob_lines(&pushed, ": Pushed"), layers, "{pushed}");
    assert!(
        !pushed.contains(&config),
        "the config is no line:\n{pushed}"
    );
    let pulled = run(cli(&fresh).args(["pull", &name]));
    assert_eq!(blob_lines(&pulled, ": Pull complete"), layers, "{pulled}");
    assert!(
        !pulled.contains(&config),
        "the config is no line:\n{pulled}"
    );
}
