//! `hoist build --progress tty`: BuildKit's live display, redrawn in place. The captured stderr
//! goes through a terminal emulator (`vt100`) and the tests read the screen it ends with, as a
//! person at the terminal would: each step with CACHED or its time, a RUN step's output shown
//! while it runs and folded away when it succeeds, kept with the error when it fails, every line
//! within the terminal's width, and the summary lines below the final frame.

use std::num::NonZeroU16;
use std::path::Path;
use std::process::{Output, Stdio};

use hoist_testsupport::text;

const HOIST: &str = env!("CARGO_BIN_EXE_hoist");

/// The width the builds are told (`COLUMNS`); the emulated screen is wider, so a line that the
/// display did not cut would show.
const COLUMNS: usize = 72;
const SCREEN_COLS: NonZeroU16 = NonZeroU16::new(240).unwrap();
const SCREEN_ROWS: NonZeroU16 = NonZeroU16::new(400).unwrap();

hoist_testsupport::home_type!();

impl Home {
    /// A private HOIST_HOME with busybox imported as `busybox:latest`.
    fn new() -> Home {
        Home(hoist_testsupport::Home::busybox(HOIST))
    }

    fn run(&self, args: &[&str], columns: usize) -> Output {
        self.cmd(args)
            .env("COLUMNS", columns.to_string())
            .env("LINES", "50")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `hoist build --progress tty CTX` with stderr a pipe: the flag forces the display.
    fn build_tty(&self, ctx: &Path, columns: usize) -> Output {
        self.run(
            &["build", "--progress", "tty", ctx.to_str().unwrap()],
            columns,
        )
    }
}

fn context(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (p, c) in files {
        std::fs::write(d.path().join(p), c).unwrap();
    }
    d
}

/// The rows of the screen a terminal shows after `bytes`, trailing blanks trimmed. The terminal
/// driver turns `\n` into `\r\n` (ONLCR); a pipe does not, so it is done here.
fn screen(bytes: &[u8]) -> Vec<String> {
    let mut tty = Vec::with_capacity(bytes.len());
    for &b in bytes {
        if b == b'\n' {
            tty.push(b'\r');
        }
        tty.push(b);
    }
    let mut p = vt100::Parser::new(SCREEN_ROWS, SCREEN_COLS, 0);
    p.process(&tty);
    let mut rows: Vec<String> = p
        .screen()
        .rows(0, SCREEN_COLS.get())
        .map(|r| r.trim_end().to_owned())
        .collect();
    while rows.last().is_some_and(|r| r.is_empty()) {
        rows.pop();
    }
    rows
}

/// The final frame: the header and the step rows under it.
fn frame(rows: &[String]) -> &[String] {
    let start = rows
        .iter()
        .position(|r| r.starts_with("[+] Building"))
        .unwrap_or_else(|| panic!("no header on the screen:\n{}", rows.join("\n")));
    let len = rows[start + 1..]
        .iter()
        .take_while(|r| r.starts_with(" => "))
        .count();
    &rows[start..start + 1 + len]
}

/// The step row whose title contains `step`.
fn step<'a>(frame: &'a [String], step: &str) -> &'a str {
    frame
        .iter()
        .find(|r| r.starts_with(" => ") && !r.starts_with(" => => ") && r.contains(step))
        .unwrap_or_else(|| panic!("no step {step:?} in:\n{}", frame.join("\n")))
}

/// The time at the end of a step row (`2.1s`), in seconds.
fn duration(row: &str) -> f64 {
    let last = row.split_whitespace().last().unwrap();
    last.strip_suffix('s')
        .and_then(|n| n.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no duration at the end of {row:?}"))
}

const RUN_OK: &str = "RUN for i in 1 2 3 4 5 6 7 8; do echo \"out-line-$i\"; done; sleep 1; echo the-run-is-over-now";

#[test]
fn tty_progress_shows_times_folds_run_output_and_shows_cached_steps() {
    let h = Home::new();
    let ctx = context(&[
        (
            "Dockerfile",
            &format!("FROM busybox\nCOPY greeting.txt /greeting.txt\n{RUN_OK}\n"),
        ),
        ("greeting.txt", "hello\n"),
    ]);
    let o = h.build_tty(ctx.path(), COLUMNS);
    assert!(o.status.success(), "{}", text(&o));
    let raw = String::from_utf8_lossy(&o.stderr);
    // Redrawn in place, and the RUN output was on the display while the step ran.
    assert!(raw.contains("\x1b[K"), "no redraw in:\n{raw}");
    assert!(raw.contains("A\r"), "no cursor movement in:\n{raw:?}");
    assert!(
        raw.contains(" => => # out-line-8"),
        "output never shown:\n{raw}"
    );

    let rows = screen(&o.stderr);
    let all = rows.join("\n");
    let f = frame(&rows);
    assert!(f[0].contains("FINISHED"), "{all}");
    let run = step(f, "RUN for i in");
    assert!(!run.contains("CACHED"), "{all}");
    assert!(
        duration(run) >= 1.0,
        "the RUN step slept 1s: {run:?}\n{all}"
    );
    let copy = step(f, "COPY greeting.txt");
    duration(copy);
    step(f, "[internal] load build definition from Dockerfile");
    // Folded: none of the step's output is left on the screen.
    for i in 1..=8 {
        assert!(!all.contains(&format!("out-line-{i}")), "{all}");
    }
    assert!(!all.contains(" => => # "), "{all}");
    // Every row of the display fits the terminal (the RUN title was cut to fit, its time kept).
    for r in f {
        assert!(
            r.chars().count() < COLUMNS,
            "row wider than {COLUMNS}: {r:?}"
        );
    }
    assert!(run.chars().count() == COLUMNS - 1, "{run:?}");
    // The summary follows the final frame.
    let after = &rows[rows.iter().position(|r| r == &f[0]).unwrap() + f.len()..];
    assert!(after.first().is_some_and(|r| r.starts_with('#')), "{all}");
    assert!(
        after.iter().any(|r| r.starts_with("built sha256:")),
        "{all}"
    );

    // Again: every step comes from the cache.
    let o = h.build_tty(ctx.path(), COLUMNS);
    assert!(o.status.success(), "{}", text(&o));
    let rows = screen(&o.stderr);
    let all = rows.join("\n");
    let f = frame(&rows);
    assert!(f[0].contains("FINISHED"), "{all}");
    assert!(step(f, "RUN for i in").starts_with(" => CACHED ["), "{all}");
    assert!(
        step(f, "COPY greeting.txt").starts_with(" => CACHED ["),
        "{all}"
    );
    assert!(duration(step(f, "RUN for i in")) < 1.0, "{all}");
}

#[test]
fn tty_progress_keeps_a_failed_runs_last_output_and_the_error() {
    let h = Home::new();
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox\nRUN echo first > /first\n\
         RUN for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo \"fail-line-$i\"; done; exit 3\n",
    )]);
    // Wide enough for the error on one row.
    let o = h.build_tty(ctx.path(), 200);
    assert!(!o.status.success(), "{}", text(&o));
    let rows = screen(&o.stderr);
    let all = rows.join("\n");
    let f = frame(&rows);
    assert!(!f[0].contains("FINISHED"), "{all}");
    assert!(
        step(f, "RUN echo first").starts_with(" => ["),
        "the first RUN ran and succeeded: {all}"
    );
    let failed = step(f, "RUN for i in");
    assert!(failed.starts_with(" => ERROR ["), "{all}");
    duration(failed);
    // The last ten lines stay under the step, then the error.
    let at = f.iter().position(|r| r == failed).unwrap();
    let under: Vec<&str> = f[at + 1..].iter().map(String::as_str).collect();
    let output: Vec<String> = (3..=12)
        .map(|i| format!(" => => # fail-line-{i}"))
        .collect();
    assert_eq!(&under[..10], &output[..], "{all}");
    assert!(!all.contains("# fail-line-2\n"), "{all}");
    assert!(
        under[10].starts_with(" => => ERROR: ") && under[10].contains("exit code: 3"),
        "{all}"
    );
    // The error message follows the final frame.
    let end = rows.iter().position(|r| r == &f[0]).unwrap() + f.len();
    assert!(rows[end].starts_with("hoist: "), "{all}");
    assert!(all.contains("exit code: 3"), "{all}");
}
