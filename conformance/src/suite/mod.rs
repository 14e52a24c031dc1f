//! The distribution-spec v1.1 conformance suite, runnable against any registry URL.
//!
//! Two families of cases:
//! - a port of the official OCI conformance suite (opencontainers/distribution-spec,
//!   `conformance/`): its four workflows [`pull`], [`push`], [`discovery`] (content discovery) and
//!   [`management`] (content management), with their setup and teardown, run in order against one
//!   repository as the official suite does;
//! - hoist's own stricter cases ([`base`], [`digests`], [`uploads`], [`blobs`], [`manifests`],
//!   [`listing`], [`referrers`]), each group on its own repositories.
//!
//! Every run uses repository names with a fresh random component (under [`Options::namespace`]),
//! so runs can repeat against the same registry. Every case has a stable kebab-case name such as
//! `push/chunked/out-of-order-416`; [`all_case_names`] lists them.

mod auth;
mod base;
mod blobs;
mod check;
mod data;
mod digests;
mod discovery;
mod http;
mod listing;
mod management;
mod manifests;
mod ops;
mod pull;
mod push;
mod referrers;
mod uploads;

use std::collections::BTreeSet;

use self::data::Data;
use self::http::Http;

/// A user's credentials: sent as Basic auth on every request, or, when the registry challenges
/// with `Bearer`, to its token endpoint for tokens with the scopes each request needs.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// How to run the suite.
#[derive(Clone, Debug)]
pub struct Options {
    /// Prefix of every repository the run creates (`<namespace>/<run id>/...`).
    pub namespace: String,
    /// Optional credentials (Basic on every request, or for Bearer tokens).
    pub credentials: Option<Credentials>,
    /// Report only the cases whose name contains this substring. Groups with no selected case
    /// are skipped; a group with one runs whole, since its cases build on each other.
    pub filter: Option<String>,
    /// Whether the registry mounts blobs without a `from` parameter. `None` leaves out the official
    /// suite's automatic cross-mount case (it is opt-in there too, through
    /// `OCI_AUTOMATIC_CROSSMOUNT`).
    pub automatic_crossmount: Option<bool>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            namespace: "conformance".into(),
            credentials: None,
            filter: None,
            automatic_crossmount: None,
        }
    }
}

/// The result of one case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaseReport {
    /// Stable kebab-case name, e.g. `push/chunked/out-of-order-416`.
    pub name: String,
    pub passed: bool,
    /// One line: why the case failed (empty when it passed).
    pub reason: String,
}

/// The results of a run, in the order the cases ran.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub cases: Vec<CaseReport>,
}

impl Report {
    pub fn passed(&self) -> usize {
        self.cases.iter().filter(|c| c.passed).count()
    }

    pub fn failed(&self) -> usize {
        self.cases.len() - self.passed()
    }

    /// The failed cases.
    pub fn failures(&self) -> impl Iterator<Item = &CaseReport> {
        self.cases.iter().filter(|c| !c.passed)
    }

    /// The names of the failed cases, sorted.
    pub fn failed_names(&self) -> BTreeSet<String> {
        self.failures().map(|c| c.name.clone()).collect()
    }

    /// `ok NAME` / `FAIL NAME: reason` lines, then `N passed, M failed`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for c in &self.cases {
            if c.passed {
                out.push_str(&format!("ok {}\n", c.name));
            } else {
                out.push_str(&format!("FAIL {}: {}\n", c.name, c.reason));
            }
        }
        out.push_str(&format!(
            "{} passed, {} failed\n",
            self.passed(),
            self.failed()
        ));
        out
    }
}

/// Every case name the suite can report, in run order.
pub fn all_case_names() -> Vec<&'static str> {
    GROUPS.iter().flat_map(|g| g.iter().copied()).collect()
}

const GROUPS: &[&[&str]] = &[
    pull::CASES,
    push::CASES,
    discovery::CASES,
    management::CASES,
    base::CASES,
    digests::CASES,
    uploads::CASES,
    blobs::CASES,
    manifests::CASES,
    listing::CASES,
    referrers::CASES,
];

/// Runs the suite against the registry at `base_url` (e.g. `http://127.0.0.1:5000`).
pub async fn run(base_url: &str, opts: &Options) -> Report {
    let mut rec = Recorder::new(opts.filter.clone());
    let http = match Http::new(base_url, opts.credentials.clone()) {
        Ok(h) => h,
        Err(e) => {
            rec.cases.push(CaseReport {
                name: "suite/client".into(),
                passed: false,
                reason: e,
            });
            return Report { cases: rec.cases };
        }
    };
    let ctx = RunContext::new(http, opts);
    let data = Data::new(&ctx.run_id);

    // The official workflows share one repository, in the official order.
    if rec.wants(pull::CASES) {
        pull::run(&ctx, &data, &mut rec).await;
    }
    if rec.wants(push::CASES) {
        push::run(&ctx, &data, &mut rec).await;
    }
    if rec.wants(discovery::CASES) {
        discovery::run(&ctx, &data, &mut rec).await;
    }
    if rec.wants(management::CASES) {
        management::run(&ctx, &data, &mut rec).await;
    }
    if rec.wants(base::CASES) {
        base::run(&ctx, &mut rec).await;
    }
    if rec.wants(digests::CASES) {
        digests::run(&ctx, &mut rec).await;
    }
    if rec.wants(uploads::CASES) {
        uploads::run(&ctx, &mut rec).await;
    }
    if rec.wants(blobs::CASES) {
        blobs::run(&ctx, &mut rec).await;
    }
    if rec.wants(manifests::CASES) {
        manifests::run(&ctx, &mut rec).await;
    }
    if rec.wants(listing::CASES) {
        listing::run(&ctx, &mut rec).await;
    }
    if rec.wants(referrers::CASES) {
        referrers::run(&ctx, &mut rec).await;
    }
    Report { cases: rec.cases }
}

/// What every case needs: the HTTP client and this run's names.
pub(crate) struct RunContext {
    pub http: Http,
    /// Random per run, so repeated runs never collide.
    pub run_id: String,
    /// `<namespace>/<run id>`.
    pub root: String,
    pub automatic_crossmount: Option<bool>,
}

impl RunContext {
    fn new(http: Http, opts: &Options) -> RunContext {
        let run_id = data::run_id();
        let ns = opts.namespace.trim_matches('/');
        let root = if ns.is_empty() {
            run_id.clone()
        } else {
            format!("{ns}/{run_id}")
        };
        RunContext {
            http,
            run_id,
            root,
            automatic_crossmount: opts.automatic_crossmount,
        }
    }

    /// A repository of this run: `<namespace>/<run id>/<leaf>`.
    pub fn repo(&self, leaf: &str) -> String {
        format!("{}/{leaf}", self.root)
    }
}

/// The outcome of one case: `Err` holds the one-line reason it failed.
pub(crate) type Outcome = Result<(), String>;

/// Collects case outcomes, keeping only those the filter selects.
pub(crate) struct Recorder {
    filter: Option<String>,
    cases: Vec<CaseReport>,
}

impl Recorder {
    fn new(filter: Option<String>) -> Recorder {
        Recorder {
            filter: filter.filter(|f| !f.is_empty()),
            cases: Vec::new(),
        }
    }

    /// Whether any case of a group is selected (a group runs whole, for its setup and state).
    fn wants(&self, group: &[&str]) -> bool {
        group.iter().any(|n| self.selects(n))
    }

    fn selects(&self, name: &str) -> bool {
        self.filter.as_deref().is_none_or(|f| name.contains(f))
    }

    /// Records the outcome of case `name`.
    pub fn record(&mut self, name: &'static str, outcome: Outcome) {
        if !self.selects(name) {
            return;
        }
        let outcome = if GROUPS.iter().any(|g| g.contains(&name)) {
            outcome
        } else {
            Err(format!("case {name} is missing from its group's case list"))
        };
        let reason = match &outcome {
            Ok(()) => String::new(),
            Err(e) => one_line(e),
        };
        self.cases.push(CaseReport {
            name: name.to_owned(),
            passed: outcome.is_ok(),
            reason,
        });
    }
}

/// Collapses whitespace so a reason stays on one line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_names_are_unique_and_kebab_case() {
        let names = all_case_names();
        let unique: BTreeSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "duplicate case names");
        for n in names {
            let parts: Vec<_> = n.split('/').collect();
            assert!(parts.len() >= 2, "{n}: want group/.../case");
            for p in parts {
                assert!(
                    !p.is_empty() && !p.starts_with('-') && !p.ends_with('-'),
                    "{n}"
                );
                assert!(
                    p.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                    "{n} is not kebab-case"
                );
            }
        }
    }

    #[test]
    fn filter_selects_by_substring() {
        let rec = Recorder::new(Some("chunked".into()));
        assert!(rec.wants(push::CASES));
        assert!(!rec.wants(pull::CASES));
        let all = Recorder::new(Some(String::new()));
        assert!(all.wants(pull::CASES));
    }

    #[test]
    fn record_flags_unlisted_names_and_flattens_reasons() {
        let mut rec = Recorder::new(None);
        rec.record("base/api-version-200", Err("a\n  b".into()));
        rec.record("no/such-case", Ok(()));
        assert_eq!(rec.cases[0].reason, "a b");
        assert!(!rec.cases[1].passed);
    }

    #[test]
    fn render_ends_with_the_plain_count_line() {
        let r = Report {
            cases: vec![
                CaseReport {
                    name: "a/b".into(),
                    passed: true,
                    reason: String::new(),
                },
                CaseReport {
                    name: "a/c".into(),
                    passed: false,
                    reason: "got 500".into(),
                },
            ],
        };
        assert_eq!(
            r.render(),
            "ok a/b\nFAIL a/c: got 500\n1 passed, 1 failed\n"
        );
        assert_eq!(
            r.failed_names().into_iter().collect::<Vec<_>>(),
            vec!["a/c".to_owned()]
        );
    }
}
