//! Progress of a pull or push: a bar per blob (indicatif) on a terminal, one plain line per
//! finished blob otherwise, nothing with `-q`.

use std::collections::HashMap;
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
    },
}

/// Turns [`Progress`] events into what the user sees.
#[derive(Clone)]
pub struct Reporter {
    mode: Arc<Mode>,
    /// What a transferred blob's line says (`Pull complete`, `Pushed`).
    done: &'static str,
}

impl Reporter {
    pub fn new(quiet: bool, done: &'static str) -> Self {
        let mode = if quiet {
            Mode::Quiet
        } else if std::io::stdout().is_terminal() {
            Mode::Bars {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stdout()),
                bars: Mutex::new(HashMap::new()),
            }
        } else {
            Mode::Plain
        };
        Self {
            mode: Arc::new(mode),
            done,
        }
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
                Progress::Skipped { digest, .. } => {
                    let what = if self.done == "Pushed" {
                        "Layer already exists"
                    } else {
                        "Already exists"
                    };
                    println!("{}: {what}", short(digest));
                }
                Progress::Mounted { digest, from } => {
                    println!("{}: Mounted from {from}", short(digest));
                }
                Progress::Done { digest, .. } => println!("{}: {}", short(digest), self.done),
                _ => {}
            },
            Mode::Bars { multi, bars } => {
                let mut bars = bars.lock().expect("progress bars");
                let finish = |bars: &mut HashMap<Digest, ProgressBar>, d: &Digest, msg: String| {
                    let bar = bars.remove(d).unwrap_or_else(|| multi.add(bar(d, 0)));
                    bar.set_style(ProgressStyle::with_template("{prefix}: {msg}").expect("style"));
                    bar.finish_with_message(msg);
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
