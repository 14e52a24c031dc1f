//! `hoist build` and `hoist builder prune|du`.

use std::collections::{HashMap, VecDeque};
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use clap::{Args, Subcommand};
use hoist_builder::build;
use hoist_builder::cache::{BuildCache, parse_size};
use hoist_builder::graph::{OpKind, VertexId};
use hoist_builder::solver::{Event, Progress};
use hoist_engine::EngineError;
use hoist_engine::build::{BuildRequest, ContextSource};
use parking_lot::Mutex;

use crate::home;

#[derive(Subcommand)]
pub enum BuildCommand {
    /// Build an image from a Dockerfile
    Build(Box<BuildArgs>),
    /// Manage the build cache
    #[command(subcommand)]
    Builder(BuilderCommand),
}

#[derive(Subcommand)]
pub enum BuilderCommand {
    /// Remove build cache
    Prune {
        /// Keep this much cache (e.g. 10GB); least recently used records go first
        #[arg(long, value_name = "SIZE")]
        keep_storage: Option<String>,
        /// Do not prompt (accepted for docker compatibility; hoist never prompts)
        #[arg(short, long)]
        force: bool,
        /// Remove all cache (the default)
        #[arg(short, long)]
        all: bool,
    },
    /// Show the build cache's disk usage
    Du,
}

#[derive(Args)]
pub struct BuildArgs {
    /// Name and optionally a tag (name:tag); repeatable
    #[arg(short, long = "tag", value_name = "REF")]
    tags: Vec<String>,
    /// The Dockerfile (default: CONTEXT/Dockerfile)
    #[arg(short, long = "file", value_name = "FILE")]
    file: Option<PathBuf>,
    /// Set a build-time variable (K=V, or K to take it from the environment)
    #[arg(long = "build-arg", value_name = "K=V", value_parser = env_pair)]
    build_args: Vec<String>,
    /// Set a label on the image (K=V, or K for an empty value); repeatable
    #[arg(long = "label", value_name = "K=V", value_parser = env_pair)]
    labels: Vec<String>,
    /// Write the image id to this file
    #[arg(long, value_name = "FILE")]
    iidfile: Option<PathBuf>,
    /// The platform to build for: only the host's (no cross or multi-platform builds)
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    platform: Option<String>,
    /// The stage to build
    #[arg(long)]
    target: Option<String>,
    /// Do not use the cache
    #[arg(long)]
    no_cache: bool,
    /// Always pull the base images
    #[arg(long)]
    pull: bool,
    /// Networking for RUN steps: host (default) or none
    #[arg(long, default_value = "host", value_parser = ["host", "none", "default"])]
    network: String,
    /// A secret for RUN --mount=type=secret: id=ID,src=PATH
    #[arg(long, value_name = "id=ID,src=PATH")]
    secret: Vec<String>,
    /// An ssh agent for RUN --mount=type=ssh: default|ID[=SOCKET] (no SOCKET: $SSH_AUTH_SOCK)
    #[arg(long, value_name = "default|ID[=SOCKET]")]
    ssh: Vec<String>,
    /// Progress output: auto, plain, tty or quiet
    #[arg(long, default_value = "auto", value_parser = ["auto", "plain", "tty", "quiet"])]
    progress: String,
    /// Print only the image id
    #[arg(short, long)]
    quiet: bool,
    /// Outputs: type=image (default), type=oci|docker,dest=FILE, type=local,dest=DIR
    #[arg(short, long, value_name = "SPEC")]
    output: Vec<String>,
    /// Push the tags after building
    #[arg(long)]
    push: bool,
    /// Layer compression: gzip or zstd
    #[arg(long, default_value = "gzip", value_parser = ["gzip", "zstd"])]
    compression: String,
    /// The build context: a directory, or `-` for a Dockerfile or a tar on stdin
    context: String,
}

pub fn run(cmd: BuildCommand) -> Result<()> {
    match cmd {
        BuildCommand::Build(args) => build_cmd(*args),
        BuildCommand::Builder(BuilderCommand::Prune {
            keep_storage,
            force: _,
            all: _,
        }) => {
            let keep = keep_storage
                .as_deref()
                .map(|s| parse_size(s).ok_or_else(|| anyhow!("invalid --keep-storage {s:?}")))
                .transpose()?;
            let home = home::hoist_home()?;
            let dir = home.join("builder");
            let r = BuildCache::prune(&dir, keep)
                .with_context(|| format!("pruning the build cache in {}", dir.display()))?;
            // The unpacked layers only the pruned records used.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let layers = rt.block_on(hoist_engine::Host::new(home).collect_layers())?;
            if layers.is_none() {
                eprintln!("hoist: a build is running: unpacked layers are collected next time");
            }
            println!(
                "Deleted build cache objects: {}\nTotal reclaimed space: {}",
                r.records_removed + layers.as_ref().map_or(0, |l| l.removed.len() as u64),
                human(r.bytes_freed + layers.as_ref().map_or(0, |l| l.bytes))
            );
            Ok(())
        }
        BuildCommand::Builder(BuilderCommand::Du) => {
            let u = hoist_engine::Host::from_env()?.build_cache()?.usage()?;
            println!(
                "records: {}\nblobs: {}\nsize: {}",
                u.records,
                u.blobs,
                human(u.bytes)
            );
            Ok(())
        }
    }
}

fn human(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < units.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n}B")
    } else {
        format!("{v:.3}{}", units[u])
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    Tty,
    Quiet,
}

/// Build progress. Plain mode prints BuildKit's `#N ...` lines; tty mode keeps a display that is
/// redrawn in place (BuildKit's "tty" progress): a header, one line per step with `CACHED` or its
/// time, and the last lines of a running step's output under it, folded away when the step is done.
struct Printer {
    mode: Mode,
    state: Arc<Mutex<PrinterState>>,
    /// The tty display's redraw thread, started with its first step.
    redraw: Mutex<Option<std::thread::JoinHandle<()>>>,
}

#[derive(Default)]
struct PrinterState {
    next: usize,
    ids: HashMap<VertexId, (usize, Instant)>,
    partial: HashMap<VertexId, Vec<u8>>,
    tails: HashMap<VertexId, VecDeque<String>>,
    display: Display,
}

/// The tty display's steps and what it last drew.
struct Display {
    started: Instant,
    steps: Vec<Step>,
    index: HashMap<VertexId, usize>,
    /// Rows of the last frame drawn; the cursor is on the row below it.
    drawn: usize,
    /// When the build ended: the final frame is drawn and nothing is drawn after it.
    finished: Option<Instant>,
}

impl Default for Display {
    fn default() -> Self {
        Display {
            started: Instant::now(),
            steps: Vec::new(),
            index: HashMap::new(),
            drawn: 0,
            finished: None,
        }
    }
}

struct Step {
    title: String,
    vertex: Option<VertexId>,
    started: Instant,
    status: StepStatus,
}

enum StepStatus {
    Running,
    Cached,
    Done(Duration),
    Failed(Duration, String),
}

/// Lines of output kept per step (shown on failure, and in the error).
const TAIL: usize = 10;
/// Lines of a running step's output shown under it on a tty.
const SHOWN: usize = 6;
/// How often the tty display is redrawn (besides on every step change).
const TICK: Duration = Duration::from_millis(100);

impl Printer {
    fn new(mode: Mode) -> Self {
        Printer {
            mode,
            state: Arc::new(Mutex::new(PrinterState {
                next: 1,
                ..PrinterState::default()
            })),
            redraw: Mutex::new(None),
        }
    }

    /// A line outside the steps. On a tty it ends the live display first: the final frame stays
    /// and the line follows it.
    fn line(&self, s: &str) {
        match self.mode {
            Mode::Quiet => {}
            Mode::Plain => {
                let mut e = std::io::stderr().lock();
                let _ = writeln!(e, "{s}");
            }
            Mode::Tty => {
                self.finish();
                let mut e = std::io::stderr().lock();
                let _ = writeln!(e, "{s}");
            }
        }
    }

    /// A line for work outside the solver (`[internal] ...`).
    fn internal(&self, what: &str) {
        if self.mode == Mode::Tty {
            let mut st = self.state.lock();
            st.next += 1;
            st.display.steps.push(Step {
                title: what.to_owned(),
                vertex: None,
                started: Instant::now(),
                status: StepStatus::Done(Duration::ZERO),
            });
            self.changed(&mut st);
            return;
        }
        let n = {
            let mut st = self.state.lock();
            let n = st.next;
            st.next += 1;
            n
        };
        self.line(&format!("#{n} {what}"));
        self.line(&format!("#{n} DONE 0.0s\n"));
    }

    fn number(&self, st: &mut PrinterState, v: VertexId) -> usize {
        if let Some((n, _)) = st.ids.get(&v) {
            return *n;
        }
        let n = st.next;
        st.next += 1;
        st.ids.insert(v, (n, Instant::now()));
        n
    }

    /// The last lines a vertex printed.
    fn tail(&self, v: VertexId) -> Vec<String> {
        let st = self.state.lock();
        let mut lines: Vec<String> = st
            .tails
            .get(&v)
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default();
        if let Some(p) = st.partial.get(&v)
            && !p.is_empty()
        {
            lines.push(String::from_utf8_lossy(p).into_owned());
        }
        lines
    }

    /// The tty display changed: draw it now, and make sure it is redrawn while steps run.
    fn changed(&self, st: &mut PrinterState) {
        if st.display.finished.is_some() {
            return;
        }
        draw(st);
        let mut redraw = self.redraw.lock();
        if redraw.is_none() {
            let state = self.state.clone();
            // Without the thread the display is still drawn on every step change.
            *redraw = std::thread::Builder::new()
                .name("hoist-progress".into())
                .spawn(move || {
                    loop {
                        std::thread::park_timeout(TICK);
                        let mut st = state.lock();
                        if st.display.finished.is_some() {
                            break;
                        }
                        draw(&mut st);
                    }
                })
                .ok();
        }
    }

    /// Ends the tty display: draws the final frame (every step, nothing folded that failed) and
    /// stops the redraw thread, leaving the cursor below the frame. Idempotent.
    fn finish(&self) {
        if self.mode != Mode::Tty {
            return;
        }
        {
            let mut st = self.state.lock();
            if st.display.finished.is_some() {
                return;
            }
            st.display.finished = Some(Instant::now());
            if !st.display.steps.is_empty() {
                draw(&mut st);
            }
        }
        let thread = self.redraw.lock().take();
        if let Some(t) = thread {
            t.thread().unpark();
            let _ = t.join();
        }
    }

    fn tty_event(&self, st: &mut PrinterState, event: Event) {
        let now = Instant::now();
        match event {
            Event::Started {
                vertex,
                kind,
                label,
                name,
            } => {
                if visible(kind, &label) {
                    self.number(st, vertex);
                    let d = &mut st.display;
                    d.index.insert(vertex, d.steps.len());
                    d.steps.push(Step {
                        title: format!("{label} {name}"),
                        vertex: Some(vertex),
                        started: now,
                        status: StepStatus::Running,
                    });
                    self.changed(st);
                }
            }
            Event::Cached {
                vertex,
                kind,
                label,
                name,
            } => {
                if visible(kind, &label) {
                    self.number(st, vertex);
                    let d = &mut st.display;
                    match d.index.get(&vertex) {
                        Some(i) => d.steps[*i].status = StepStatus::Cached,
                        None => {
                            d.index.insert(vertex, d.steps.len());
                            d.steps.push(Step {
                                title: format!("{label} {name}"),
                                vertex: Some(vertex),
                                started: now,
                                status: StepStatus::Cached,
                            });
                        }
                    }
                    self.changed(st);
                }
            }
            Event::Log { vertex, bytes } => {
                // Shown by the next redraw.
                for l in split_lines(st, vertex, &bytes) {
                    remember(st, vertex, l);
                }
            }
            Event::Done { vertex, elapsed } => {
                if let Some(i) = st.display.index.get(&vertex).copied() {
                    st.display.steps[i].status = StepStatus::Done(elapsed);
                    self.changed(st);
                }
            }
            Event::Failed {
                vertex,
                elapsed,
                error,
            } => {
                if let Some(i) = st.display.index.get(&vertex).copied() {
                    st.display.steps[i].status = StepStatus::Failed(elapsed, error);
                    self.changed(st);
                }
            }
        }
    }
}

impl Drop for Printer {
    fn drop(&mut self) {
        self.finish();
    }
}

fn visible(kind: OpKind, label: &str) -> bool {
    let _ = kind;
    !label.is_empty()
}

/// Adds output to a vertex's partial line; returns the lines it completed.
fn split_lines(st: &mut PrinterState, vertex: VertexId, bytes: &[u8]) -> Vec<String> {
    let buf = st.partial.entry(vertex).or_default();
    buf.extend_from_slice(bytes);
    let mut lines = Vec::new();
    while let Some(i) = buf.iter().position(|b| *b == b'\n') {
        let l: Vec<u8> = buf.drain(..=i).collect();
        lines.push(String::from_utf8_lossy(&l[..l.len() - 1]).into_owned());
    }
    lines
}

/// Keeps a line among the vertex's last [`TAIL`].
fn remember(st: &mut PrinterState, vertex: VertexId, line: String) {
    let tail = st.tails.entry(vertex).or_default();
    tail.push_back(line);
    if tail.len() > TAIL {
        tail.pop_front();
    }
}

impl Progress for Printer {
    fn event(&self, event: Event) {
        let mut st = self.state.lock();
        if self.mode == Mode::Tty {
            self.tty_event(&mut st, event);
            return;
        }
        match event {
            Event::Started {
                vertex,
                kind,
                label,
                name,
            } => {
                if visible(kind, &label) {
                    let n = self.number(&mut st, vertex);
                    self.line(&format!("#{n} {label} {name}"));
                }
            }
            Event::Cached {
                vertex,
                kind,
                label,
                name,
            } => {
                if visible(kind, &label) {
                    let n = self.number(&mut st, vertex);
                    self.line(&format!("#{n} {label} {name}"));
                    self.line(&format!("#{n} CACHED\n"));
                }
            }
            Event::Log { vertex, bytes } => {
                let start = st.ids.get(&vertex).map(|(n, t)| (*n, *t));
                for l in split_lines(&mut st, vertex, &bytes) {
                    if let (Mode::Plain, Some((n, t))) = (self.mode, start) {
                        self.line(&format!("#{n} {:.3} {l}", t.elapsed().as_secs_f64()));
                    }
                    remember(&mut st, vertex, l);
                }
            }
            Event::Done { vertex, elapsed } => {
                if let Some((n, _)) = st.ids.get(&vertex) {
                    self.line(&format!("#{n} DONE {:.1}s\n", elapsed.as_secs_f64()));
                }
            }
            Event::Failed {
                vertex,
                elapsed,
                error,
            } => {
                if let Some((n, _)) = st.ids.get(&vertex).copied() {
                    if self.mode != Mode::Plain {
                        // Folded output: show the end of it now.
                        drop(st);
                        for l in self.tail(vertex) {
                            self.line(&format!("#{n} {l}"));
                        }
                    }
                    self.line(&format!(
                        "#{n} ERROR: {error} ({:.1}s)\n",
                        elapsed.as_secs_f64()
                    ));
                }
            }
        }
    }
}

/// The terminal's size as (columns, rows): stderr's window size, else `COLUMNS`/`LINES`, else
/// 80x24.
fn terminal_size() -> (usize, usize) {
    let ws = rustix::termios::tcgetwinsize(std::io::stderr()).ok();
    let env = |k: &str| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|n| *n > 0)
    };
    let cols = ws
        .map(|w| usize::from(w.ws_col))
        .filter(|n| *n > 0)
        .or_else(|| env("COLUMNS"))
        .unwrap_or(80);
    let rows = ws
        .map(|w| usize::from(w.ws_row))
        .filter(|n| *n > 0)
        .or_else(|| env("LINES"))
        .unwrap_or(24);
    (cols, rows)
}

/// Draws the display over its last frame: cursor up to the frame's first row, each line then
/// erase-to-end-of-line, and erase below when the new frame is shorter. One write per frame.
fn draw(st: &mut PrinterState) {
    let (cols, rows) = terminal_size();
    // While live, the frame stays within the screen so that the cursor can get back to its top;
    // the final frame shows everything.
    let height = if st.display.finished.is_some() {
        usize::MAX
    } else {
        rows.saturating_sub(1).max(2)
    };
    let lines = render(st, Instant::now(), cols, height);
    let out = redraw(&mut st.display.drawn, &lines);
    let mut e = std::io::stderr().lock();
    let _ = e.write_all(out.as_bytes());
    let _ = e.flush();
}

/// The bytes that replace a frame of `drawn` rows, above the cursor, with `lines`; sets `drawn`.
fn redraw(drawn: &mut usize, lines: &[String]) -> String {
    let mut out = String::new();
    if *drawn > 0 {
        out.push_str(&format!("\x1b[{drawn}A\r"));
    }
    for l in lines {
        out.push_str(l);
        out.push_str("\x1b[K\n");
    }
    if lines.len() < *drawn {
        out.push_str("\x1b[J");
    }
    *drawn = lines.len();
    out
}

fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// The display's lines at `now`, each at most `width - 1` columns (the last column stays free so
/// that no line wraps), at most `height` of them: finished steps give way to running ones when
/// there are too many.
fn render(st: &PrinterState, now: Instant, width: usize, height: usize) -> Vec<String> {
    let d = &st.display;
    let end = d.finished.unwrap_or(now);
    let finished = d.finished.is_some();
    let complete = d
        .steps
        .iter()
        .filter(|s| !matches!(s.status, StepStatus::Running))
        .count();
    let failed = d
        .steps
        .iter()
        .any(|s| matches!(s.status, StepStatus::Failed(..)));
    let mut header = format!(
        "[+] Building {} ({complete}/{})",
        seconds(end.saturating_duration_since(d.started)),
        d.steps.len()
    );
    if finished && !failed {
        header.push_str(" FINISHED");
    }
    // Each step's lines, and whether it may give way.
    let mut groups: Vec<(bool, Vec<String>)> = Vec::new();
    for s in &d.steps {
        let (status, time) = match &s.status {
            StepStatus::Running if finished => {
                ("CANCELED ", end.saturating_duration_since(s.started))
            }
            StepStatus::Running => ("", now.saturating_duration_since(s.started)),
            StepStatus::Cached => ("CACHED ", Duration::ZERO),
            StepStatus::Done(e) => ("", *e),
            StepStatus::Failed(e, _) => ("ERROR ", *e),
        };
        let mut lines = vec![columns(
            &format!(" => {status}{}", clean(&s.title)),
            &seconds(time),
            width,
        )];
        let output = |n: usize| -> Vec<String> {
            let Some(v) = s.vertex else {
                return Vec::new();
            };
            let mut l: Vec<String> = st
                .tails
                .get(&v)
                .map(|t| t.iter().cloned().collect())
                .unwrap_or_default();
            if let Some(p) = st.partial.get(&v)
                && !p.is_empty()
            {
                l.push(partial_line(p));
            }
            let skip = l.len().saturating_sub(n);
            l.split_off(skip)
        };
        let running = matches!(s.status, StepStatus::Running) && !finished;
        if running {
            for l in output(SHOWN) {
                lines.push(fit(&format!(" => => # {}", clean(&l)), width));
            }
        }
        if let StepStatus::Failed(_, error) = &s.status {
            for l in output(TAIL) {
                lines.push(fit(&format!(" => => # {}", clean(&l)), width));
            }
            for (i, l) in error.lines().enumerate() {
                let l = clean(l);
                let l = if i == 0 { format!("ERROR: {l}") } else { l };
                lines.extend(wrap(&l, " => => ", width));
            }
        }
        groups.push((
            !running && !matches!(s.status, StepStatus::Failed(..)),
            lines,
        ));
    }
    // Too tall: the oldest finished steps go first, then the oldest output lines of the step that
    // shows the most, then whatever is at the top.
    let budget = height.saturating_sub(1);
    let mut total: usize = groups.iter().map(|g| g.1.len()).sum();
    let mut i = 0;
    while total > budget && i < groups.len() {
        if groups[i].0 {
            total -= groups[i].1.len();
            groups.remove(i);
        } else {
            i += 1;
        }
    }
    while total > budget {
        let Some(g) = groups
            .iter_mut()
            .filter(|g| g.1.len() > 1)
            .max_by_key(|g| g.1.len())
        else {
            break;
        };
        g.1.remove(1);
        total -= 1;
    }
    let mut body: Vec<String> = groups.into_iter().flat_map(|g| g.1).collect();
    if body.len() > budget {
        body.drain(..body.len() - budget);
    }
    let mut lines = vec![fit(&header, width)];
    lines.extend(body);
    lines
}

/// Columns a character takes on a terminal: 0 for combining marks and zero-width characters, 2
/// for East Asian wide characters and emoji, else 1.
fn char_width(c: char) -> usize {
    let u = u32::from(c);
    match u {
        0x300..=0x36f | 0x200b..=0x200f | 0xfe00..=0xfe0f | 0x20d0..=0x20ff => 0,
        0x1100..=0x115f
        | 0x2e80..=0x303e
        | 0x3041..=0x33ff
        | 0x3400..=0x4dbf
        | 0x4e00..=0x9fff
        | 0xa000..=0xa4cf
        | 0xac00..=0xd7a3
        | 0xf900..=0xfaff
        | 0xfe30..=0xfe4f
        | 0xff00..=0xff60
        | 0xffe0..=0xffe6
        | 0x1f300..=0x1f64f
        | 0x1f900..=0x1f9ff
        | 0x20000..=0x3fffd => 2,
        _ => 1,
    }
}

fn text_width(s: &str) -> usize {
    s.chars().map(char_width).sum()
}

/// The longest prefix of `s` that takes at most `max` columns.
fn truncate(s: &str, max: usize) -> &str {
    let mut w = 0;
    for (i, c) in s.char_indices() {
        w += char_width(c);
        if w > max {
            return &s[..i];
        }
    }
    s
}

/// `s` cut to `width - 1` columns.
fn fit(s: &str, width: usize) -> String {
    truncate(s, width.saturating_sub(1).max(1)).to_owned()
}

/// `left` and `right` on one line of `width - 1` columns, `right` at its end; `left` is cut to
/// make room.
fn columns(left: &str, right: &str, width: usize) -> String {
    let max = width.saturating_sub(1).max(1);
    let rw = text_width(right);
    if rw + 2 > max {
        return fit(left, width);
    }
    let left = truncate(left, max - rw - 1);
    let pad = max - text_width(left) - rw;
    format!("{left}{}{right}", " ".repeat(pad))
}

/// `s` broken into lines of `width - 1` columns, each starting with `prefix`.
fn wrap(s: &str, prefix: &str, width: usize) -> Vec<String> {
    let room = width.saturating_sub(1).saturating_sub(text_width(prefix));
    if room < 8 {
        return vec![fit(&format!("{prefix}{s}"), width)];
    }
    let mut out = Vec::new();
    let mut rest = s;
    loop {
        let mut head = truncate(rest, room);
        // Break at a space when there is one in the second half of the row.
        if head.len() < rest.len()
            && let Some(sp) = head.rfind(' ')
            && text_width(&head[..sp]) >= room / 2
        {
            head = &head[..=sp];
        }
        if head.is_empty() {
            // A character wider than the room: take it anyway.
            head = &rest[..rest.chars().next().map_or(0, char::len_utf8)];
        }
        out.push(format!("{prefix}{}", head.trim_end()));
        rest = &rest[head.len()..];
        if rest.is_empty() {
            break;
        }
    }
    out
}

/// Bytes shown in a display row: more would be cut anyway.
const SHOWN_BYTES: usize = 4096;

/// What a terminal shows of a line still being written: the part after its last carriage return
/// (a progress bar rewrites its line without ever ending it), and not more than a row shows.
fn partial_line(p: &[u8]) -> String {
    let p = p.strip_suffix(b"\r").unwrap_or(p);
    let start = p.iter().rposition(|b| *b == b'\r').map_or(0, |i| i + 1);
    let p = &p[start..];
    String::from_utf8_lossy(&p[..p.len().min(SHOWN_BYTES)]).into_owned()
}

/// Output as a terminal line would show it, without what could move the cursor or change colors:
/// a carriage return starts the line over, escape sequences and control characters go, tabs
/// become spaces.
fn clean(s: &str) -> String {
    let s = s.rsplit('\r').find(|p| !p.is_empty()).unwrap_or("");
    let s = &s[..s.floor_char_boundary(SHOWN_BYTES)];
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => match chars.next() {
                // CSI: parameters, then a final byte in @..~.
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('\x40'..='\x7e').contains(&c) {
                            break;
                        }
                    }
                }
                // OSC: up to BEL or ST (ESC \).
                Some(']') => {
                    while let Some(c) = chars.next() {
                        if c == '\x07' {
                            break;
                        }
                        if c == '\x1b' {
                            chars.next();
                            break;
                        }
                    }
                }
                _ => {}
            },
            '\t' => out.push_str("    "),
            '\n' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A `--build-arg`/`--label` value as docker's CLI checks it (`opts.ValidateEnv`): the name
/// before `=` must not be empty.
fn env_pair(s: &str) -> Result<String, String> {
    match s.split_once('=').map_or(s, |(k, _)| k) {
        "" => Err(format!("invalid environment variable: {s}")),
        _ => Ok(s.to_owned()),
    }
}

impl hoist_engine::build::BuildReport for Printer {
    fn internal(&self, what: &str) {
        Printer::internal(self, what);
    }
    fn line(&self, line: &str) {
        Printer::line(self, line);
    }
    fn next_step(&self) -> usize {
        let mut st = self.state.lock();
        let n = st.next;
        st.next += 1;
        n
    }
}

fn build_cmd(args: BuildArgs) -> Result<()> {
    let started = Instant::now();
    // `tty` forces the live display even when stderr is not a terminal, as docker's does.
    let mode = match args.progress.as_str() {
        _ if args.quiet => Mode::Quiet,
        "quiet" => Mode::Quiet,
        "plain" => Mode::Plain,
        "tty" => Mode::Tty,
        _ if std::io::stderr().is_terminal() => Mode::Tty,
        _ => Mode::Plain,
    };
    let printer = Arc::new(Printer::new(mode));
    let context = if args.context == "-" {
        let mut data = Vec::new();
        std::io::stdin()
            .read_to_end(&mut data)
            .context("reading the build context from standard input")?;
        ContextSource::Stdin(data)
    } else {
        ContextSource::Dir(PathBuf::from(&args.context))
    };
    let req = BuildRequest {
        context,
        file: args.file,
        build_args: args.build_args,
        labels: args.labels,
        tags: args.tags,
        platform: args.platform,
        target: args.target,
        no_cache: args.no_cache,
        pull: args.pull,
        network: args.network,
        secrets: args.secret,
        ssh: args.ssh,
        outputs: args.output,
        push: args.push,
        compression: args.compression,
    };
    let host = Arc::new(hoist_engine::Host::new(home::hoist_home()?));
    let built = home::runtime()?.block_on(async {
        let built = host.build(&req, printer.clone()).await?;
        for t in &built.push {
            crate::transfer::push(&t.to_string(), false, &Default::default()).await?;
        }
        Ok::<_, anyhow::Error>(built)
    });
    let id = built.map_err(|e| explain(e, &printer))?.id;
    if let Some(f) = &args.iidfile {
        std::fs::write(f, id.to_string())
            .with_context(|| format!("writing the image id to {}", f.display()))?;
    }
    if mode == Mode::Quiet {
        println!("{id}");
    } else {
        printer.line(&format!(
            "built {id} in {:.2}s",
            started.elapsed().as_secs_f64()
        ));
    }
    Ok(())
}

/// A failed step: the error with the last lines of its output, as BuildKit shows it.
fn explain(e: anyhow::Error, printer: &Printer) -> anyhow::Error {
    // The tty display's final frame comes before the error.
    printer.finish();
    let build = match e.downcast_ref::<EngineError>() {
        Some(EngineError::Build(b)) => Some(b),
        _ => e.downcast_ref::<build::BuildError>(),
    };
    let solve = match build {
        Some(build::BuildError::Solve(s)) => Some(s),
        Some(build::BuildError::Step { source, .. }) => Some(source),
        _ => None,
    };
    if let Some(v) = solve.and_then(|s| s.vertex()) {
        let tail = printer.tail(v);
        if !tail.is_empty() {
            return anyhow!("{e}\nlast output lines:\n{}", tail.join("\n"));
        }
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn width_of_all(lines: &[String]) -> usize {
        lines.iter().map(|l| text_width(l)).max().unwrap_or(0)
    }

    /// A display with: an internal step, a cached step, a finished RUN that printed, a running
    /// RUN that printed 9 lines and a partial one.
    fn state(t0: Instant) -> PrinterState {
        let mut st = PrinterState::default();
        st.display.started = t0;
        let step = |title: &str, v: Option<usize>, status| Step {
            title: title.into(),
            vertex: v.map(VertexId),
            started: t0 + Duration::from_secs(1),
            status,
        };
        st.display.steps = vec![
            step(
                "[internal] load build definition from Dockerfile",
                None,
                StepStatus::Done(Duration::ZERO),
            ),
            step("[build 1/4] COPY go.mod /src/", Some(1), StepStatus::Cached),
            step(
                "[build 2/4] RUN make deps",
                Some(2),
                StepStatus::Done(Duration::from_millis(2340)),
            ),
            step(
                "[build 3/4] RUN make all with a very long command line that goes on and on",
                Some(3),
                StepStatus::Running,
            ),
        ];
        for i in 1..=3 {
            remember(&mut st, VertexId(2), format!("deps line {i}"));
        }
        for l in split_lines(
            &mut st,
            VertexId(3),
            b"a1\na2\na3\na4\na5\na6\na7\na8\na9\npartial",
        ) {
            remember(&mut st, VertexId(3), l);
        }
        st
    }

    #[test]
    fn render_shows_times_cached_steps_and_the_running_steps_last_lines() {
        let t0 = Instant::now();
        let st = state(t0);
        let now = t0 + Duration::from_millis(4100);
        let lines = render(&st, now, 100, usize::MAX);
        assert_eq!(lines[0], "[+] Building 4.1s (3/4)");
        assert!(lines[1].starts_with(" => [internal] load build definition from Dockerfile "));
        assert!(lines[1].ends_with(" 0.0s"));
        assert!(lines[2].starts_with(" => CACHED [build 1/4] COPY go.mod /src/ "));
        assert!(lines[3].starts_with(" => [build 2/4] RUN make deps "));
        assert!(lines[3].ends_with(" 2.3s"));
        // Running for 3.1s, with its last 6 lines (the partial one included) under it.
        assert!(lines[4].starts_with(" => [build 3/4] RUN make all"));
        assert!(lines[4].ends_with(" 3.1s"));
        let shown: Vec<&str> = lines[5..].iter().map(String::as_str).collect();
        assert_eq!(
            shown,
            [
                " => => # a5",
                " => => # a6",
                " => => # a7",
                " => => # a8",
                " => => # a9",
                " => => # partial"
            ]
        );
        // The finished step's output is folded.
        assert!(!lines.iter().any(|l| l.contains("deps line")));
        // Times line up at the right edge.
        assert!(
            lines[1..5].iter().all(|l| text_width(l) == 99),
            "{lines:#?}"
        );
    }

    #[test]
    fn render_cuts_every_line_to_the_width_and_keeps_the_time() {
        let t0 = Instant::now();
        let st = state(t0);
        for width in [80, 40, 24, 12] {
            let lines = render(&st, t0 + Duration::from_secs(3), width, usize::MAX);
            assert!(width_of_all(&lines) < width, "{width}: {lines:#?}");
            if width >= 24 {
                assert!(lines[4].ends_with(" 2.0s"), "{width}: {lines:#?}");
                assert!(lines[4].starts_with(" => [build 3/4] R"), "{lines:#?}");
            }
        }
        assert_eq!(columns(" => [1/2] RUN make", "1.5s", 15), " => [1/2] 1.5s");
        assert_eq!(columns("ab", "1.5s", 30).len(), 29);
        assert_eq!(fit("abcdef", 4), "abc");
        // Wide characters take two columns and are never split.
        assert_eq!(fit("日本語のテキスト", 6), "日本");
        assert_eq!(fit("aé日b", 5), "aé日");
        assert_eq!(fit("aé日b", 4), "aé");
        assert_eq!(text_width("a\u{301}b"), 2);
    }

    #[test]
    fn output_lines_lose_escape_sequences_and_control_characters() {
        assert_eq!(clean("\x1b[1;31mred\x1b[0m text"), "red text");
        assert_eq!(clean("\x1b]0;title\x07after"), "after");
        assert_eq!(clean("\x1b]8;;http://x\x1b\\link"), "link");
        assert_eq!(clean("50%\r100%"), "100%");
        assert_eq!(clean("done\r"), "done");
        assert_eq!(clean("a\tb\x07\x08c\u{9b}"), "a    bc");
        // An escape cut off at the end of the line leaves nothing behind.
        assert_eq!(clean("text\x1b[3"), "text");
        assert_eq!(clean("text\x1b"), "text");
        assert_eq!(clean("RUN <<EOF\necho hi\nEOF"), "RUN <<EOF echo hi EOF");
        // A progress bar that rewrites its line: only its last state shows, and a huge line is
        // cut before it is cleaned.
        assert_eq!(partial_line(b"10%\r20%\r30%\r"), "30%");
        assert_eq!(partial_line(b"10%\r20%"), "20%");
        let long = "\u{e9}".repeat(10_000);
        assert_eq!(partial_line(long.as_bytes()).len(), SHOWN_BYTES);
        assert_eq!(clean(&long).len(), SHOWN_BYTES);
    }

    #[test]
    fn a_failed_step_keeps_its_output_and_the_error_wrapped_to_the_width() {
        let t0 = Instant::now();
        let mut st = state(t0);
        st.display.steps[3].status = StepStatus::Failed(
            Duration::from_millis(500),
            "process \"/bin/sh -c make all\" did not complete successfully: exit code: 2".into(),
        );
        st.display.finished = Some(t0 + Duration::from_secs(5));
        let lines = render(&st, t0 + Duration::from_secs(9), 40, usize::MAX);
        assert_eq!(lines[0], "[+] Building 5.0s (4/4)");
        assert!(
            lines[4].starts_with(" => ERROR [build 3/4] RUN"),
            "{lines:#?}"
        );
        assert!(lines[4].ends_with(" 0.5s"));
        let out: Vec<String> = (1..=9)
            .map(|i| format!(" => => # a{i}"))
            .chain([" => => # partial".to_owned()])
            .collect();
        assert_eq!(lines[5..15], out[..]);
        let error: Vec<&str> = lines[15..].iter().map(String::as_str).collect();
        assert!(error[0].starts_with(" => => ERROR: process"), "{error:#?}");
        assert!(error.iter().all(|l| l.starts_with(" => => ")));
        assert!(width_of_all(&lines) < 40, "{lines:#?}");
        let joined: String = error.iter().map(|l| &l[7..]).collect::<Vec<_>>().join(" ");
        assert!(joined.ends_with("exit code: 2"), "{joined}");
    }

    #[test]
    fn a_finished_build_says_so_and_a_cut_short_step_is_canceled() {
        let t0 = Instant::now();
        let mut st = state(t0);
        st.display.finished = Some(t0 + Duration::from_secs(2));
        let lines = render(&st, t0 + Duration::from_secs(9), 80, usize::MAX);
        assert_eq!(lines[0], "[+] Building 2.0s (3/4) FINISHED");
        assert!(
            lines[4].starts_with(" => CANCELED [build 3/4]"),
            "{lines:#?}"
        );
        assert!(lines[4].ends_with(" 1.0s"));
        assert_eq!(lines.len(), 5, "nothing folded is shown: {lines:#?}");
    }

    #[test]
    fn a_live_frame_fits_the_screen_keeping_running_steps() {
        let t0 = Instant::now();
        let st = state(t0);
        let lines = render(&st, t0 + Duration::from_secs(3), 80, 5);
        assert_eq!(lines.len(), 5, "{lines:#?}");
        assert!(lines[0].starts_with("[+] Building"));
        // Finished steps gave way; the running step keeps its title and its newest lines.
        assert!(
            lines[1].starts_with(" => [build 3/4] RUN make all"),
            "{lines:#?}"
        );
        assert_eq!(
            lines[2..],
            [" => => # a8", " => => # a9", " => => # partial"]
        );
    }

    #[test]
    fn frames_are_drawn_over_the_last_one_on_a_terminal() {
        let mut term = vt100::Parser::new(
            std::num::NonZeroU16::new(20).unwrap(),
            std::num::NonZeroU16::new(40).unwrap(),
            0,
        );
        let show =
            |term: &mut vt100::Parser, s: &str| term.process(s.replace('\n', "\r\n").as_bytes());
        show(&mut term, "before\n");
        let mut drawn = 0;
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        show(
            &mut term,
            &redraw(&mut drawn, &v(&["one long first line", "two", "three"])),
        );
        assert_eq!(drawn, 3);
        show(&mut term, &redraw(&mut drawn, &v(&["1", "2", "3", "4"])));
        show(&mut term, &redraw(&mut drawn, &v(&["final", "x"])));
        assert_eq!(drawn, 2);
        show(&mut term, "after\n");
        assert_eq!(
            term.screen().contents().trim_end(),
            "before\nfinal\nx\nafter"
        );
        assert_eq!(term.screen().cursor_position(), (4, 0));
    }
}
