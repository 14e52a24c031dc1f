//! Progress of a pull or push: a bar per blob (indicatif) on a terminal, one plain line per
//! finished blob otherwise, nothing with `-q`. Like docker, only layers are listed: the image
//! config is a blob too, but not a line. A push knows its configs up front ([`configs_of`]); a
//! pull learns its config when it ends, so the plain lines of small blobs (a config is one) wait
//! until then and the config's bar is taken off.

use std::collections::{HashMap, HashSet};
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use hoist_client::{Progress, ProgressFn};
use hoist_oci::Digest;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The short id docker shows for a blob.
fn short(d: &Digest) -> &str {
    &d.hex()[..12.min(d.hex().len())]
}

enum Mode {
    Quiet,
    Plain,
    Bars {
        multi: MultiProgress,
        bars: Mutex<HashMap<Digest, ProgressBar>>,
        /// Finished bars, so a config's can be taken off once it is known.
        finished: Mutex<HashMap<Digest, ProgressBar>>,
    },
}

/// Plain lines waiting for a pull's end, with their blobs.
type HeldLines = Vec<(Digest, String)>;

/// A blob at most this large may be a config: a pull's plain line for it waits.
const MAYBE_CONFIG: u64 = 1 << 20;

/// Turns [`Progress`] events into what the user sees.
#[derive(Clone)]
pub struct Reporter {
    mode: Arc<Mode>,
    /// What a transferred blob's line says (`Pull complete`, `Pushed`).
    done: &'static str,
    /// Config blobs: not shown.
    hidden: Arc<Mutex<HashSet<Digest>>>,
    /// Plain lines of small blobs, held until [`Reporter::settle`] (pull only).
    held: Arc<Mutex<Option<HeldLines>>>,
}

impl Reporter {
    pub fn new(quiet: bool, done: &'static str) -> Self {
        let mode = if quiet {
            Mode::Quiet
        } else if std::io::stdout().is_terminal() {
            Mode::Bars {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stdout()),
                bars: Mutex::new(HashMap::new()),
                finished: Mutex::new(HashMap::new()),
            }
        } else {
            Mode::Plain
        };
        Self::with_mode(mode, done)
    }

    fn with_mode(mode: Mode, done: &'static str) -> Self {
        Self {
            mode: Arc::new(mode),
            done,
            hidden: Arc::new(Mutex::new(HashSet::new())),
            // A pull holds the lines of small blobs until its config is known.
            held: Arc::new(Mutex::new((done != "Pushed").then(Vec::new))),
        }
    }

    /// The config blobs of a push, known before it starts: never shown.
    pub fn hide(&self, configs: impl IntoIterator<Item = Digest>) {
        self.hidden.lock().expect("hidden").extend(configs);
    }

    /// The pull ended and its config is `config`: the held lines of the other blobs are printed
    /// and the config's bar is taken off.
    pub fn settle(&self, config: &Digest) {
        self.hidden.lock().expect("hidden").insert(config.clone());
        if let Some(lines) = self.held.lock().expect("held").take() {
            for (d, line) in lines {
                if d != *config {
                    println!("{line}");
                }
            }
        }
        if let Mode::Bars {
            multi, finished, ..
        } = &*self.mode
            && let Some(b) = finished.lock().expect("progress bars").remove(config)
        {
            multi.remove(&b);
        }
    }

    /// Prints a plain line for `digest` now, or holds it (a small blob of a pull).
    fn line(&self, digest: &Digest, size: u64, line: String) {
        if self.hidden.lock().expect("hidden").contains(digest) {
            return;
        }
        if size <= MAYBE_CONFIG
            && let Some(held) = self.held.lock().expect("held").as_mut()
        {
            held.push((digest.clone(), line));
            return;
        }
        println!("{line}");
    }

    /// The callback for the transfer engine (`None` when quiet).
    pub fn callback(&self) -> Option<ProgressFn> {
        if matches!(*self.mode, Mode::Quiet) {
            return None;
        }
        let me = self.clone();
        Some(Arc::new(move |p: &Progress| me.event(p)))
    }

    fn event(&self, p: &Progress) {
        match &*self.mode {
            Mode::Quiet => {}
            Mode::Plain => match p {
                Progress::Skipped { digest, size } => {
                    let what = if self.done == "Pushed" {
                        "Layer already exists"
                    } else {
                        "Already exists"
                    };
                    self.line(digest, *size, format!("{}: {what}", short(digest)));
                }
                Progress::Mounted { digest, from } => {
                    // A mount is a push's: nothing is held.
                    self.line(
                        digest,
                        u64::MAX,
                        format!("{}: Mounted from {from}", short(digest)),
                    );
                }
                Progress::Done { digest, size } => {
                    self.line(digest, *size, format!("{}: {}", short(digest), self.done));
                }
                _ => {}
            },
            Mode::Bars {
                multi,
                bars,
                finished,
            } => {
                if let Progress::Started { digest, .. }
                | Progress::Bytes { digest, .. }
                | Progress::Skipped { digest, .. }
                | Progress::Mounted { digest, .. }
                | Progress::Done { digest, .. } = p
                    && self.hidden.lock().expect("hidden").contains(digest)
                {
                    return;
                }
                let mut bars = bars.lock().expect("progress bars");
                let finish = |bars: &mut HashMap<Digest, ProgressBar>, d: &Digest, msg: String| {
                    let bar = bars.remove(d).unwrap_or_else(|| multi.add(bar(d, 0)));
                    bar.set_style(ProgressStyle::with_template("{prefix}: {msg}").expect("style"));
                    bar.finish_with_message(msg);
                    finished
                        .lock()
                        .expect("progress bars")
                        .insert(d.clone(), bar);
                };
                match p {
                    Progress::Started { digest, size } => {
                        let b = multi.add(bar(digest, *size));
                        bars.insert(digest.clone(), b);
                    }
                    Progress::Bytes { digest, done, .. } => {
                        if let Some(b) = bars.get(digest) {
                            b.set_position(*done);
                        }
                    }
                    Progress::Skipped { digest, .. } => {
                        let what = if self.done == "Pushed" {
                            "Layer already exists"
                        } else {
                            "Already exists"
                        };
                        finish(&mut bars, digest, what.to_owned());
                    }
                    Progress::Mounted { digest, from } => {
                        finish(&mut bars, digest, format!("Mounted from {from}"));
                    }
                    Progress::Done { digest, .. } => {
                        finish(&mut bars, digest, self.done.to_owned());
                    }
                    Progress::Manifest { .. } => {}
                }
            }
        }
    }

    /// Clears bars still drawn (after an error, say).
    pub fn finish(&self) {
        if let Mode::Bars { bars, .. } = &*self.mode {
            for (_, b) in bars.lock().expect("progress bars").drain() {
                b.finish_and_clear();
            }
        }
    }
}

fn bar(d: &Digest, size: u64) -> ProgressBar {
    let b = ProgressBar::new(size);
    b.set_style(
        ProgressStyle::with_template(
            "{prefix}: {wide_bar} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec}",
        )
        .expect("style"),
    );
    b.set_prefix(short(d).to_owned());
    b
}

/// The config blobs a push of `bytes` (a manifest or an index, with its child manifests in the
/// store) sends: the blobs its progress does not list.
pub async fn configs_of(
    store: &hoist_storage::images::ImageStore,
    repo: &hoist_oci::RepoName,
    bytes: &bytes::Bytes,
) -> Vec<Digest> {
    hoist_engine::transfer::stored_manifests(store, repo, bytes)
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|v| {
            v.get("config")
                .and_then(hoist_engine::transfer::descriptor_digest)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> Digest {
        Digest::sha256_of(&[n])
    }

    /// The pull's config (a small blob) is no line; a small layer's line comes when the pull ends.
    #[test]
    fn a_pull_lists_layers_not_the_config() {
        let r = Reporter::with_mode(Mode::Plain, "Pull complete");
        r.event(&Progress::Done {
            digest: d(1),
            size: 500,
        });
        r.event(&Progress::Done {
            digest: d(2),
            size: 400,
        });
        let held: Vec<Digest> = r
            .held
            .lock()
            .unwrap()
            .as_ref()
            .unwrap()
            .iter()
            .map(|(d, _)| d.clone())
            .collect();
        assert_eq!(held, [d(1), d(2)]);
        r.settle(&d(1));
        assert!(r.held.lock().unwrap().is_none(), "printed at the end");
        assert!(r.hidden.lock().unwrap().contains(&d(1)));
        // A push never holds; its configs are hidden up front.
        let p = Reporter::with_mode(Mode::Plain, "Pushed");
        p.hide([d(3)]);
        assert!(p.held.lock().unwrap().is_none());
        assert!(p.hidden.lock().unwrap().contains(&d(3)));
    }
}
