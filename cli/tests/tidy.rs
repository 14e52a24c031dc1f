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
    ("hoist-conformance", &["hoist-client", "hoist-oci"]),
    (
        "hoist",
        &[
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
