//! The distribution-spec v1.1 conformance suite (`hoist_conformance::suite`) against
//! `hoist serve`, and against the CNCF registry 2.8 to keep its recorded failures true.

use std::collections::BTreeSet;
use std::path::Path;

use hoist_conformance::harness::Server;
use hoist_conformance::suite::{self, Options, Report};

/// The cases the CNCF registry 2.8 is known to fail, one name a line, sorted.
const DISTRIBUTION_EXPECTED: &str = include_str!("../../conformance/expected/distribution-2.8.txt");

fn failures(report: &Report) -> String {
    report
        .failures()
        .map(|c| format!("  {}: {}", c.name, c.reason))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn hoist_passes_the_whole_suite() {
    let server = Server::hoist(Path::new(env!("CARGO_BIN_EXE_hoist"))).expect("start hoist serve");
    let report = suite::run(&server.url, &Options::default()).await;
    assert!(!report.cases.is_empty(), "the suite ran no case");
    assert_eq!(
        report.failed(),
        0,
        "hoist serve failed {} of {} conformance cases:\n{}",
        report.failed(),
        report.cases.len(),
        failures(&report)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn distribution_fails_exactly_the_recorded_cases() {
    let server = Server::distribution().expect("start the CNCF registry");
    let report = suite::run(&server.url, &Options::default()).await;
    assert_eq!(
        report.cases.len(),
        suite::all_case_names().len() - 1,
        "every case but the opt-in automatic cross-mount one runs"
    );
    let expected: BTreeSet<String> = DISTRIBUTION_EXPECTED
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    let got = report.failed_names();
    if got == expected {
        return;
    }
    let mut diff = String::new();
    for c in report.failures().filter(|c| !expected.contains(&c.name)) {
        diff.push_str(&format!("  + {} (now fails: {})\n", c.name, c.reason));
    }
    for name in expected.difference(&got) {
        diff.push_str(&format!("  - {name} (recorded as failing, now passes)\n"));
    }
    panic!(
        "the CNCF registry's failures differ from conformance/expected/distribution-2.8.txt:\n{diff}\
         update the file if the change is right"
    );
}

#[test]
fn the_recorded_failures_are_sorted_known_case_names() {
    let names: BTreeSet<&str> = suite::all_case_names().into_iter().collect();
    let lines: Vec<&str> = DISTRIBUTION_EXPECTED
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    let mut sorted = lines.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(
        lines, sorted,
        "distribution-2.8.txt must be sorted, without duplicates"
    );
    for l in lines {
        assert!(
            names.contains(l),
            "distribution-2.8.txt names an unknown case: {l}"
        );
    }
}
