//! Golden-file tests for the Dockerfile parser: every `tests/golden/NAME.Dockerfile` parses to
//! `NAME.json` (the parsed Dockerfile) or fails with `NAME.err` (the error as displayed).
//! `UPDATE_GOLDEN=1 cargo test -p hoist-builder --test parser_golden` rewrites the expected files;
//! review the diff before committing it.

use std::path::{Path, PathBuf};

use hoist_builder::dockerfile::parse;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn render(name: &str, text: &str) -> (String, &'static str) {
    match parse(text, name) {
        Ok(df) => (
            serde_json::to_string_pretty(&df).expect("serialize") + "\n",
            "json",
        ),
        Err(e) => (format!("{e}\n"), "err"),
    }
}

#[test]
fn golden_files() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .expect("read golden dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "Dockerfile"))
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 40,
        "golden cases missing: found {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(case).expect("read case");
        let (got, ext) = render(&name, &text);
        let stem = case.with_extension("");
        let expected_path = stem.with_extension(ext);
        let other = stem.with_extension(if ext == "json" { "err" } else { "json" });
        if update {
            std::fs::write(&expected_path, &got).expect("write golden");
            if other.exists() {
                std::fs::remove_file(&other).expect("remove stale golden");
            }
            continue;
        }
        match std::fs::read_to_string(&expected_path) {
            Ok(want) if want == got => {}
            Ok(want) => failures.push(format!(
                "{name}: output differs\n--- want\n{want}\n--- got\n{got}"
            )),
            Err(_) => failures.push(format!(
                "{name}: no {} (the case {} but expected {}); got\n{got}",
                expected_path.display(),
                if ext == "json" { "parses" } else { "fails" },
                if other.exists() {
                    other.display().to_string()
                } else {
                    "nothing".into()
                },
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The book's Dockerfiles (DOCKERFILES.md) are all here, and only `WORKIR` fails.
#[test]
fn book_dockerfiles_parse_except_workir() {
    let mut n = 0;
    for e in std::fs::read_dir(golden_dir()).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("book-") || !name.ends_with(".Dockerfile") {
            continue;
        }
        n += 1;
        let r = parse(&std::fs::read_to_string(&p).unwrap(), &name);
        assert_eq!(
            r.is_err(),
            name == "book-06-workir.Dockerfile",
            "{name}: {r:?}"
        );
    }
    assert_eq!(n, 18);
}
