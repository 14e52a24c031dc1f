//! Inputs the fuzz targets (`fuzz/`, `fuzz/run.sh`) found, kept so the bugs stay fixed. The raw
//! inputs are in `fuzz/regressions/<target>/`.

use std::sync::mpsc;
use std::time::Duration;

use hoist_builder::ignore::{DockerIgnore, go_match};

/// Runs `f` on a thread and fails if it does not finish within `secs`: the bugs here were
/// matchers whose time was exponential in the input.
fn within<T: Send + 'static>(secs: u64, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .unwrap_or_else(|_| panic!("{what} did not finish within {secs} s"))
}

/// The fuzz target's split: `.dockerignore` text, NUL, paths.
fn dockerignore_case(data: &[u8]) -> (String, Vec<String>) {
    let s = String::from_utf8_lossy(data);
    let (rules, paths) = s.split_once('\0').unwrap_or((&s, ""));
    (rules.to_owned(), paths.lines().map(str::to_owned).collect())
}

#[test]
fn dockerignore_many_stars_match_in_polynomial_time() {
    // fuzz/regressions/dockerignore/timeout-stars: 30 `*` then a class, matched against a
    // path; this took longer than the fuzzer's 20 s timeout.
    let data = include_bytes!("../../fuzz/regressions/dockerignore/timeout-stars");
    let (rules, mut paths) = dockerignore_case(data);
    paths.push("a".repeat(60));
    let ignore = DockerIgnore::parse(&rules).unwrap();
    within(10, "matching the fuzzer's input", move || {
        for p in &paths {
            let _ = ignore.matches(p, false);
        }
    });
}

#[test]
fn every_star_form_matches_a_long_name_in_polynomial_time() {
    // The class of the bug: each kind of star, many times, then something the name lacks.
    let name = "a".repeat(64);
    let deep = vec!["a"; 32].join("/");
    for star in ["*", "**", "**/", "*?", "*[a-z]"] {
        let pattern = format!("{}x", star.repeat(24));
        let (p, n, d) = (pattern.clone(), name.clone(), deep.clone());
        let (m, g) = within(10, &format!("pattern {pattern:?}"), move || {
            let ignore = DockerIgnore::parse(&p).unwrap();
            let m = ignore.matches(&n, false) || ignore.matches(&d, false);
            (m, go_match(&p, &n))
        });
        assert!(!m, "{pattern:?} matched a path without an x");
        assert_eq!(g, Ok(false), "go_match({pattern:?})");
        // And with the x, each matches a name or a path (`**` only matches after a `/`).
        let ignore = DockerIgnore::parse(&pattern).unwrap();
        assert!(
            ignore.matches(&format!("{name}x"), false)
                || ignore.matches(&format!("{deep}/x"), false),
            "{pattern:?} matched neither {name}x nor {deep}/x"
        );
    }
    assert_eq!(go_match(&format!("{}x", "*".repeat(24)), "abx"), Ok(true));
    assert_eq!(go_match("*x", "a/x"), Ok(false), "Go's * never matches /");
    assert_eq!(
        go_match("a[/]b", "a/b"),
        Ok(false),
        "Go's classes never match /"
    );
}
