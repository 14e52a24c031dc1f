//! Tidy checks that run as ordinary tests, so `cargo test` is the whole check: the crate
//! dependency rules of ARCHITECTURE.md, formatting, and no shipped placeholders.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ has a parent")
        .to_owned()
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Which workspace crates each crate may depend on (normal and build dependencies).
/// A crate missing from this table fails the test: add it with its rule.
const ALLOWED: &[(&str, &[&str])] = &[
    ("hoist-oci", &[]),
    ("hoist-storage", &["hoist-oci"]),
    ("hoist-auth", &["hoist-oci"]),
    ("hoist-client", &["hoist-oci"]),
    (
        "hoist-registry",
        &["hoist-storage", "hoist-auth", "hoist-oci"],
    ),
    (
        "hoist-runtime",
        &["hoist-storage", "hoist-client", "hoist-oci"],
    ),
    (
        "hoist-builder",
        &[
            "hoist-runtime",
            "hoist-client",
            "hoist-storage",
            "hoist-oci",
        ],
    ),
    (
        "hoist-engine",
        &[
            "hoist-builder",
            "hoist-runtime",
            "hoist-client",
            "hoist-storage",
            "hoist-oci",
        ],
    ),
    ("hoist-conformance", &["hoist-client", "hoist-oci"]),
    // Shared test helpers (the busybox home from the conformance fixtures); never a normal
    // dependency of anything (checked below).
    ("hoist-testsupport", &["hoist-conformance"]),
    (
        "hoist",
        &[
            "hoist-engine",
            "hoist-builder",
            "hoist-runtime",
            "hoist-registry",
            "hoist-client",
            "hoist-storage",
            "hoist-auth",
            "hoist-oci",
        ],
    ),
];

/// External crates that only some workspace crates may use.
const RESTRICTED: &[(&str, &[&str])] = &[
    // Only the registry serves HTTP.
    ("axum", &["hoist-registry"]),
    ("tower-http", &["hoist-registry"]),
    // Only the client sends HTTP; the conformance suite is a black-box HTTP harness by design.
    ("reqwest", &["hoist-client", "hoist-conformance"]),
    ("oci-client", &["hoist-client"]),
    // The oci crate is a leaf: no async runtime.
    (
        "tokio",
        &[
            "hoist-storage",
            "hoist-auth",
            "hoist-client",
            "hoist-registry",
            "hoist-runtime",
            "hoist-builder",
            "hoist-engine",
            "hoist-conformance",
            "hoist",
        ],
    ),
];

#[test]
fn crate_dependency_rules_hold() {
    let out = cargo()
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(workspace_root())
        .output()
        .expect("running cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("cargo metadata json");
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut problems = Vec::new();
    let packages = meta["packages"].as_array().expect("packages");
    assert!(
        packages.len() >= 5,
        "expected the workspace crates, got {}",
        packages.len()
    );
    for pkg in packages {
        let name = pkg["name"].as_str().expect("name");
        let Some(rule) = allowed.get(name) else {
            problems.push(format!(
                "{name} has no dependency rule in tidy.rs (and ARCHITECTURE.md)"
            ));
            continue;
        };
        for dep in pkg["dependencies"].as_array().expect("dependencies") {
            let dep_name = dep["name"].as_str().expect("dependency name");
            if dep["kind"].as_str() == Some("dev") {
                continue;
            }
            if dep_name == "hoist-testsupport" {
                problems.push(format!(
                    "{name} may take hoist-testsupport as a dev-dependency only"
                ));
            }
            if dep_name.starts_with("hoist") && !rule.contains(&dep_name) {
                problems.push(format!("{name} must not depend on {dep_name}"));
            }
            if let Some((_, users)) = RESTRICTED.iter().find(|(c, _)| *c == dep_name)
                && !users.contains(&name)
            {
                problems.push(format!(
                    "{name} must not depend on {dep_name} (allowed: {users:?})"
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "dependency rules broken:\n{}",
        problems.join("\n")
    );
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_placeholders_or_ignored_tests() {
    // Built from pieces so this file does not match itself.
    let banned = [
        format!("{}!(", "todo"),
        format!("{}!(", "unimplemented"),
        format!("#[{}]", "ignore"),
        format!("#[{}(", "ignore"),
    ];
    let mut files = Vec::new();
    rust_files(&workspace_root(), &mut files);
    let mut hits = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("read");
        for (i, line) in text.lines().enumerate() {
            if banned.iter().any(|b| line.contains(b.as_str())) {
                hits.push(format!("{}:{}: {}", f.display(), i + 1, line.trim()));
            }
        }
    }
    assert!(
        hits.is_empty(),
        "placeholders or ignored tests:\n{}",
        hits.join("\n")
    );
}

/// The longest a source file outside the tests may be.
const MAX_SOURCE_LINES: usize = 1_500;

#[test]
fn no_source_file_outside_tests_is_too_long_to_read() {
    let root = workspace_root();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut long = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&root).unwrap_or(f);
        // Sources only: a crate's src/ (not tests/, benches/, the fuzz package or test modules
        // kept in files of their own).
        let in_src = rel.components().any(|c| c.as_os_str() == "src");
        let is_test = rel
            .components()
            .any(|c| matches!(c.as_os_str().to_str(), Some("tests" | "fuzz" | "benches")))
            || rel.file_name().is_some_and(|n| n == "tests.rs");
        if !in_src || is_test {
            continue;
        }
        let n = std::fs::read_to_string(f).expect("read").lines().count();
        if n > MAX_SOURCE_LINES {
            long.push(format!("{}: {n} lines", rel.display()));
        }
    }
    assert!(
        long.is_empty(),
        "source files over {MAX_SOURCE_LINES} lines (split them):\n{}",
        long.join("\n")
    );
}

#[test]
fn storage_keys_are_built_in_one_module_and_handlers_never_touch_drivers() {
    let root = workspace_root();
    let mut files = Vec::new();
    rust_files(&root.join("storage/src"), &mut files);
    let paths_module = root.join("storage/src/content/paths.rs");
    let mut problems = Vec::new();
    for f in files.iter().filter(|f| **f != paths_module) {
        let text = std::fs::read_to_string(f).expect("read");
        for (i, line) in text.lines().enumerate() {
            if line.contains("\"blobs/") || line.contains("\"uploads/") {
                problems.push(format!(
                    "{}:{}: a storage key built outside content::paths",
                    f.display(),
                    i + 1
                ));
            }
        }
    }
    let mut registry = Vec::new();
    rust_files(&root.join("registry/src"), &mut registry);
    for f in &registry {
        let text = std::fs::read_to_string(f).expect("read");
        for (i, line) in text.lines().enumerate() {
            if line.contains("StorageDriver") || line.contains(".driver()") {
                problems.push(format!(
                    "{}:{}: registry code reaching past the content layer",
                    f.display(),
                    i + 1
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn code_is_formatted() {
    let out = cargo()
        .args(["fmt", "--all", "--", "--check"])
        .current_dir(workspace_root())
        .output()
        .expect("running cargo fmt");
    assert!(
        out.status.success(),
        "cargo fmt --all would change files:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// `Command::new(EXPR)` arguments that are not a literal program name, with the programs each
/// one can start (empty: the workspace's own binaries, cargo, or helpers a test writes itself).
/// A new indirect form fails [`every_started_program_is_installed_by_peers_sh`] until it is
/// listed here, so a program can never hide behind a variable.
const INDIRECT: &[(&str, &[&str], &str)] = &[
    ("BIN", &[], "env!(\"CARGO_BIN_EXE_…\"): a workspace binary"),
    ("HOIST", &[], "env!(\"CARGO_BIN_EXE_hoist\")"),
    ("env!(\"CARGO_BIN_EXE_hoist\")", &[], "the hoist binary"),
    ("hoist_bin()", &[], "the hoist binary"),
    (
        "&self.bin",
        &[],
        "testsupport's Home: the hoist binary its test passes",
    ),
    ("&hoist", &[], "the hoist binary (cli/benches/build.rs)"),
    ("hoist", &[], "the hoist binary (cli/benches/build.rs)"),
    (
        "exe",
        &[],
        "std::env::current_exe(), or a docker-credential-* helper the test writes",
    ),
    (
        "&exe",
        &[],
        "a docker-credential-* helper (tests write their own)",
    ),
    (
        "binary",
        &[],
        "the executor's init helper: the hoist binary re-executed",
    ),
    (
        "&self.binary",
        &["runc", "crun"],
        "OciCliExecutor::runc/crun or --runtime PATH",
    ),
    (
        "Self::CLIENT",
        &["docker"],
        "cli/benches/build.rs: the docker.io client",
    ),
    ("dockerd", &["dockerd"], "tool(\"dockerd\", \"docker.io\")"),
    (
        "program",
        &["podman", "buildah"],
        "testsupport's Storage: tool(\"podman\", …) or tool(\"buildah\", …)",
    ),
    ("skopeo", &["skopeo"], "which(\"skopeo\")"),
    ("skopeo()", &["skopeo"], "which(\"skopeo\")"),
    ("htpasswd", &["htpasswd"], "which(\"htpasswd\")"),
    (
        "busybox",
        &["busybox"],
        "conformance::fixtures::busybox_binary()",
    ),
    (
        "bin",
        &["docker-registry", "skopeo"],
        "which(\"docker-registry\"), which(\"skopeo\"), or a workspace binary",
    ),
    (
        "std::env::var(\"CARGO\").unwrap_or_else(|_| \"cargo\".into())",
        &[],
        "cargo itself",
    ),
];

/// Calls that name a program to look up or start, besides `Command::new`.
/// `repo_peer("…")`: a program `.ci/peers.sh` installs under `target/peers/` (see
/// [`repo_local_peers`]).
const LOOKUPS: &[&str] = &["which(\"", "tool(\"", "repo_peer(\"", "Command::new(\""];

/// Host shells started with a script (`sh -c "…"`): the script's commands are programs too.
const SHELLS: &[&str] = &[
    "Command::new(\"sh\")",
    "Command::new(\"bash\")",
    "Command::new(\"/bin/sh\")",
];

/// Shell words that are not programs.
const BUILTINS: &[&str] = &[
    "cd", "echo", "exec", "exit", "export", "set", "test", "true", "false", "read", "wait", "trap",
    "printf", "kill", "then", "do", "done", "fi", "if", "for", "while",
];

/// The commands a line of shell script starts: the first word of each string literal that
/// holds a space, and of each segment after `|`, `&&`, `||`, `;` or `$(`.
fn shell_commands(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, literal) in line.split('"').enumerate() {
        // Only script-like literals (with a space): not file names or flags near the call.
        if i % 2 == 0 || !literal.contains(' ') {
            continue;
        }
        for segment in literal.split(['|', '&', ';']).flat_map(|s| s.split("$(")) {
            let Some(word) = segment.split_whitespace().next() else {
                continue;
            };
            let program = word
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.+-/".contains(c))
                && word.starts_with(|c: char| c.is_ascii_lowercase() || c == '/')
                && !word.starts_with("/tmp")
                && !BUILTINS.contains(&word);
            if program {
                out.push(word.to_owned());
            }
        }
    }
    out
}

/// The text of the parenthesised argument that starts at `s` (just after the opening paren).
fn call_argument(s: &str) -> &str {
    let mut depth = 0usize;
    let mut in_str = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' => in_str = !in_str,
            '(' if !in_str => depth += 1,
            ')' if !in_str && depth == 0 => return s[..i].trim(),
            ')' if !in_str => depth -= 1,
            ',' if !in_str && depth == 0 => return s[..i].trim(),
            _ => {}
        }
    }
    s.trim()
}

/// Every external program a source file starts, with `file:line` for each, and the indirect
/// `Command::new` arguments nobody has accounted for.
fn started_programs(files: &[PathBuf]) -> (BTreeMap<String, Vec<String>>, Vec<String>) {
    let mut programs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut unknown = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).expect("read");
        let mut shell_lines = 0usize;
        for (i, line) in text.lines().enumerate() {
            let at = format!("{}:{}", f.display(), i + 1);
            let mut rest = line;
            while let Some(pos) = rest.find("Command::new(") {
                let arg = call_argument(&rest[pos + "Command::new(".len()..]);
                rest = &rest[pos + 1..];
                if arg.starts_with('"') {
                    continue; // taken by LOOKUPS below
                }
                match INDIRECT.iter().find(|(expr, _, _)| *expr == arg) {
                    Some((_, names, _)) => {
                        for n in *names {
                            programs.entry(n.to_string()).or_default().push(at.clone());
                        }
                    }
                    None if arg.contains("tool(\"")
                        || arg.contains("which(\"")
                        || arg.contains("repo_peer(\"") => {}
                    None => unknown.push(format!("{at}: Command::new({arg})")),
                }
            }
            for lookup in LOOKUPS {
                let mut rest = line;
                while let Some(pos) = rest.find(lookup) {
                    let after = &rest[pos + lookup.len()..];
                    rest = after;
                    // `tool` and `which` must be calls, not the end of another name.
                    let before = line[..line.len() - after.len() - lookup.len()]
                        .chars()
                        .last();
                    if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                        continue;
                    }
                    let Some(end) = after.find('"') else { continue };
                    let name = &after[..end];
                    if !name.is_empty() && !name.contains(char::is_whitespace) {
                        programs
                            .entry(name.to_owned())
                            .or_default()
                            .push(at.clone());
                    }
                }
            }
            // A host shell's script: the programs its pipelines start.
            if SHELLS.iter().any(|sh| line.contains(sh)) {
                shell_lines = 8;
            }
            if shell_lines > 0 {
                shell_lines -= 1;
                for name in shell_commands(line) {
                    programs.entry(name).or_default().push(at.clone());
                }
            }
            // Programs the tests copy or read from the host by absolute path.
            for prefix in ["\"/bin/", "\"/usr/bin/", "\"/sbin/", "\"/usr/sbin/"] {
                let mut rest = line;
                while let Some(pos) = rest.find(prefix) {
                    let after = &rest[pos + 1..];
                    rest = after;
                    let Some(end) = after.find('"') else { continue };
                    let path = &after[..end];
                    let copied = line.contains("fs::copy(") || line.contains("Path::new(");
                    if copied
                        && path
                            .chars()
                            .all(|c| c.is_alphanumeric() || "/-_.".contains(c))
                    {
                        programs
                            .entry(path.to_owned())
                            .or_default()
                            .push(at.clone());
                    }
                }
            }
        }
    }
    (programs, unknown)
}

/// Where `program` is found: an absolute path as is, else every match on `PATH` (with the sbin
/// directories, since the suite runs as root). All of them: a loose copy in `/usr/local/bin` on
/// this machine shadows the packaged one a fresh machine would use.
fn locate(program: &str) -> Vec<PathBuf> {
    if program.starts_with('/') {
        return Path::new(program)
            .exists()
            .then(|| PathBuf::from(program))
            .into_iter()
            .collect();
    }
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain([
            "/usr/local/sbin",
            "/usr/local/bin",
            "/usr/sbin",
            "/usr/bin",
            "/sbin",
            "/bin",
        ])
        .map(|d| Path::new(d).join(program))
        .filter(|p| p.is_file())
        .fold(Vec::new(), |mut seen, p| {
            if !seen.contains(&p) {
                seen.push(p);
            }
            seen
        })
}

/// The Debian package that owns `path` (trying the merged-/usr twin and the resolved symlink).
fn owning_package(path: &Path) -> Option<String> {
    let s = path.to_string_lossy().into_owned();
    let mut candidates = vec![s.clone()];
    if let Some(rest) = s.strip_prefix("/usr") {
        candidates.push(rest.to_owned());
    } else {
        candidates.push(format!("/usr{s}"));
    }
    if let Ok(real) = std::fs::canonicalize(path) {
        candidates.push(real.to_string_lossy().into_owned());
    }
    candidates.iter().find_map(|c| {
        let out = Command::new("dpkg-query").args(["-S", c]).output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().find(|l| !l.starts_with("diversion"))?;
        let pkg = line.split(':').next()?.split(',').next()?.trim();
        (out.status.success() && !pkg.is_empty()).then(|| pkg.to_owned())
    })
}

/// Whether a package is part of every Debian 12 system: `Essential: yes` or `Priority: required`.
fn in_base_system(package: &str) -> bool {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Essential} ${Priority}", package])
        .output()
        .expect("running dpkg-query");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .any(|w| w == "yes" || w == "required")
}

/// The packages `.ci/peers.sh` installs (its `packages=(…)` and `packages+=(…)` lists).
fn peer_packages(script: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in script.lines() {
        let line = line.trim();
        let Some(list) = line
            .strip_prefix("packages=(")
            .or_else(|| line.strip_prefix("packages+=("))
        else {
            continue;
        };
        let list = list.split(')').next().unwrap_or("");
        out.extend(list.split_whitespace().map(str::to_owned));
    }
    out
}

/// The programs `.ci/peers.sh` installs into the repository (`"$peers/…/bin/NAME"`): tools from
/// crates.io or PyPI that no Debian package provides.
fn repo_local_peers(script: &str) -> Vec<String> {
    let mut out: Vec<String> = script
        .split("$peers/")
        .skip(1)
        .filter_map(|rest| {
            let path = rest.split(['"', '\'', ' ', ')']).next()?;
            let (dir, name) = path.rsplit_once('/')?;
            (dir == "bin" || dir.ends_with("/bin")).then(|| name.to_owned())
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Every external program the tests, benches and code start (`Command::new`, `which`, `tool`,
/// absolute paths copied from the host) is installed, and comes from Debian's required base
/// system or from a package `.ci/peers.sh` installs. A program that is only on this machine
/// because someone installed it by hand fails here, not on a fresh machine.
#[test]
fn every_started_program_is_installed_by_peers_sh() {
    let root = workspace_root();
    let mut files = Vec::new();
    for dir in [
        "oci",
        "storage",
        "auth",
        "registry",
        "client",
        "builder",
        "runtime",
        "cli",
        "conformance",
        "testsupport",
    ] {
        rust_files(&root.join(dir), &mut files);
    }
    // This file names programs in its tables and tests; they are not started from here.
    let this = root.join("cli/tests/tidy.rs");
    files.retain(|f| *f != this);
    let (programs, unknown) = started_programs(&files);
    assert!(
        unknown.is_empty(),
        "Command::new with a program this test cannot see (list it in INDIRECT with the programs \
         it can start):\n{}",
        unknown.join("\n")
    );
    for expected in [
        "htpasswd", "skopeo", "dockerd", "git", "runc", "crun", "busybox",
    ] {
        assert!(
            programs.contains_key(expected),
            "the scan missed {expected}: {programs:?}"
        );
    }
    let peers = peer_packages(&std::fs::read_to_string(root.join(".ci/peers.sh")).unwrap());
    assert!(
        peers.iter().any(|p| p == "skopeo"),
        "no package list in peers.sh: {peers:?}"
    );
    let repo_local = repo_local_peers(&std::fs::read_to_string(root.join(".ci/peers.sh")).unwrap());
    let mut problems = Vec::new();
    for (program, sites) in &programs {
        if program.starts_with("/proc/") {
            continue; // the running binary itself
        }
        if repo_local.contains(program) {
            continue; // installed into target/peers/ by peers.sh
        }
        let found = locate(program);
        if found.is_empty() {
            problems.push(format!(
                "{program} (started at {}) is not installed: add its package to .ci/peers.sh",
                sites[0]
            ));
            continue;
        }
        // Fine if some copy comes from an allowed package; else say where each one came from.
        let mut verdicts = Vec::new();
        let allowed = found.iter().any(|path| match owning_package(path) {
            None => {
                verdicts.push(format!("{} belongs to no Debian package", path.display()));
                false
            }
            Some(package) => {
                let package = package.split(':').next().unwrap_or(&package).to_owned();
                let ok = in_base_system(&package) || peers.contains(&package);
                if !ok {
                    verdicts.push(format!(
                        "{} comes from package {package}, which is neither in Debian's required \
                         base system nor installed by .ci/peers.sh",
                        path.display()
                    ));
                }
                ok
            }
        });
        if !allowed {
            problems.push(format!(
                "{program} (started at {}): {}",
                sites[0],
                verdicts.join("; ")
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_program_scan_sees_every_form() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("x.rs");
    std::fs::write(
        &f,
        concat!(
            "let a = Command::new(\"zzlit\").arg(\"x\");\n",
            "let b = which(\"zzwhich\").unwrap();\n",
            "let c = Command::new(tool(\"zztool\", \"pkg\"));\n",
            "std::fs::copy(\"/usr/bin/zzcopied\", dst);\n",
            "let d = Command::new(mystery);\n",
            "let e = Command::new(&self.binary);\n",
            "let f = switch(\"notaprogram\");\n",
            "let g = Command::new(\"sh\").arg(\"-c\")\n",
            "    .arg(format!(\"zztar -C {} -cf - . | zzgzip > {}\", a, b));\n",
        ),
    )
    .unwrap();
    let (programs, unknown) = started_programs(&[f]);
    let names: Vec<&str> = programs.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "/usr/bin/zzcopied",
            "crun",
            "runc",
            "sh",
            "zzgzip",
            "zzlit",
            "zztar",
            "zztool",
            "zzwhich"
        ]
    );
    assert_eq!(unknown.len(), 1, "{unknown:?}");
    assert!(unknown[0].ends_with("Command::new(mystery)"), "{unknown:?}");
    assert_eq!(
        peer_packages("packages=(a b c)\n  packages+=(d)\nfoo=(x)\n"),
        ["a", "b", "c", "d"]
    );
}
