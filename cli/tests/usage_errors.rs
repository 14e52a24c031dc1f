//! Usage errors against docker's: the same bad command lines through the docker CLI (which
//! checks its flags and argument counts before it talks to a daemon: none is started) and through
//! hoist. docker exits 125 for an unknown flag and 1 for missing arguments, on every command;
//! hoist's must be the same, and its message must name what was wrong.

mod common;

use std::process::Command;

use common::tool;

/// docker-shaped commands (first words), each tried with an unknown flag.
const COMMANDS: &[&str] = &[
    "ps",
    "images",
    "inspect",
    "logs",
    "stop",
    "start",
    "rm",
    "rmi",
    "pull",
    "push",
    "tag",
    "build",
    "exec",
    "run",
    "create",
    "cp",
    "top",
    "stats",
    "attach",
    "history",
    "save",
    "load",
    "import",
    "commit",
    "diff",
    "pause",
    "unpause",
    "wait",
    "rename",
    "port",
    "export",
    "kill",
    "restart",
    "login",
    "logout",
    "version",
    "info",
    "volume ls",
    "volume create",
    "volume rm",
    "volume inspect",
    "system df",
    "image prune",
    "image inspect",
    "container prune",
    "container ls",
    "container inspect",
    "manifest inspect",
    "manifest create",
    "manifest push",
];

/// Command lines missing an argument docker requires.
const MISSING: &[&str] = &[
    "start",
    "stop",
    "rm",
    "rmi",
    "tag one",
    "exec onlycontainer",
    "attach",
    "cp onlyone",
    "rename onlyone",
    "port",
    "top",
    "logs",
    "diff",
    "commit",
    "export",
    "wait",
    "pause",
    "kill",
    "history",
    "inspect",
    "pull",
    "push",
    "volume rm",
    "manifest create onlylist",
    "manifest push",
    "run",
    "create",
];

fn status(mut c: Command) -> (i32, String) {
    let o = c.output().expect("running the command");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn docker(args: &[&str]) -> (i32, String) {
    let mut c = Command::new(tool("docker", "docker.io"));
    c.args(args)
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env(
            "DOCKER_CONFIG",
            std::env::temp_dir().join("hoist-usage-docker"),
        );
    status(c)
}

fn hoist(args: &[&str]) -> (i32, String) {
    let home = tempfile::tempdir().unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_hoist"));
    c.args(args).env("HOIST_HOME", home.path());
    status(c)
}

#[test]
fn usage_errors_exit_as_docker_s() {
    let mut failures = Vec::new();
    for cmd in COMMANDS {
        let mut args: Vec<&str> = cmd.split(' ').collect();
        args.push("--no-such-flag");
        let (d, _) = docker(&args);
        let (h, herr) = hoist(&args);
        if d != h || !herr.contains("--no-such-flag") || herr.contains("panicked") {
            failures.push(format!("{args:?}: docker {d}, hoist {h}: {herr}"));
        }
    }
    for line in MISSING {
        let args: Vec<&str> = line.split(' ').collect();
        let (d, _) = docker(&args);
        let (h, herr) = hoist(&args);
        if d != h || herr.trim().is_empty() || herr.contains("panicked") {
            failures.push(format!("{args:?}: docker {d}, hoist {h}: {herr}"));
        }
    }
    // hoist's own commands keep clap's status 2.
    let (h, _) = hoist(&["serve", "--no-such-flag"]);
    if h != 2 {
        failures.push(format!("serve --no-such-flag: {h}"));
    }
    assert!(
        failures.is_empty(),
        "{} usage errors differ from docker's:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
