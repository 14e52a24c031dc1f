//! Health checks (`HEALTHCHECK`, `--health-*`), as docker's daemon runs them: while a container
//! runs, its supervisor runs the check in it (an exec, as `hoist exec`, its output captured) every
//! interval, with a timeout, and records `State.Health` in `state.json`: `starting` until a check
//! passes, `healthy`, or `unhealthy` after `retries` failures in a row (failures within the start
//! period do not count while it is starting); the last 5 results are kept.

use std::io::Read;
use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use super::supervise::{ExecOptions, RunError, exec_process};
use super::{Container, ContainerStore, State, ioe, rfc3339};
use crate::exec::{self, Stdio};

pub const STARTING: &str = "starting";
pub const HEALTHY: &str = "healthy";
pub const UNHEALTHY: &str = "unhealthy";

const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_RETRIES: u32 = 3;
const MAX_LOG_ENTRIES: usize = 5;
const MAX_OUTPUT_LEN: usize = 4096;

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_zero32(n: &u32) -> bool {
    *n == 0
}

/// docker's `Config.Healthcheck` (durations in nanoseconds, 0 for the default).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthConfig {
    /// `[]` (the image's), `["NONE"]`, `["CMD", args...]` or `["CMD-SHELL", command]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub test: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub interval: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_period: u64,
    #[serde(default, skip_serializing_if = "is_zero32")]
    pub retries: u32,
}

impl HealthConfig {
    /// The image config's `config.Healthcheck`, if any.
    pub fn of_image(image_config: &Value) -> Option<HealthConfig> {
        let h = image_config.get("config")?.get("Healthcheck")?;
        serde_json::from_value(h.clone()).ok()
    }

    /// docker's merge of the run flags' healthcheck over the image's: the flags' test and the
    /// durations they set, the image's for the rest.
    pub fn merge(user: Option<HealthConfig>, image: Option<HealthConfig>) -> Option<HealthConfig> {
        let Some(mut u) = user else {
            return image;
        };
        if let Some(i) = image {
            if u.test.is_empty() {
                u.test = i.test;
            }
            if u.interval == 0 {
                u.interval = i.interval;
            }
            if u.timeout == 0 {
                u.timeout = i.timeout;
            }
            if u.start_period == 0 {
                u.start_period = i.start_period;
            }
            if u.retries == 0 {
                u.retries = i.retries;
            }
        }
        Some(u)
    }

    /// Whether there is a check to run (not `NONE`, not empty).
    pub fn active(&self) -> bool {
        matches!(
            self.test.first().map(String::as_str),
            Some("CMD" | "CMD-SHELL")
        )
    }

    fn or_default(ns: u64, d: Duration) -> Duration {
        if ns == 0 { d } else { Duration::from_nanos(ns) }
    }

    fn interval(&self) -> Duration {
        Self::or_default(self.interval, DEFAULT_INTERVAL)
    }

    fn timeout(&self) -> Duration {
        Self::or_default(self.timeout, DEFAULT_TIMEOUT)
    }

    fn retries(&self) -> u32 {
        if self.retries == 0 {
            DEFAULT_RETRIES
        } else {
            self.retries
        }
    }

    /// The command the check runs.
    fn command(&self) -> Vec<String> {
        match self.test.first().map(String::as_str) {
            Some("CMD-SHELL") => {
                let mut v = vec!["/bin/sh".to_owned(), "-c".to_owned()];
                v.extend(self.test[1..].iter().cloned());
                v
            }
            _ => self.test.iter().skip(1).cloned().collect(),
        }
    }
}

/// docker's `State.Health`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Health {
    /// `starting`, `healthy` or `unhealthy`.
    pub status: String,
    pub failing_streak: u32,
    pub log: Vec<HealthLog>,
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthLog {
    pub start: String,
    pub end: String,
    pub exit_code: i32,
    pub output: String,
}

impl Health {
    /// What `ps` shows after `Up ...`: `health: starting`, `healthy`, `unhealthy`.
    pub fn describe(&self) -> String {
        match self.status.as_str() {
            STARTING => "health: starting".to_owned(),
            "" => UNHEALTHY.to_owned(),
            s => s.to_owned(),
        }
    }

    /// Records one result (`since_start`: from the container's start to the check's).
    fn record(&mut self, result: HealthLog, cfg: &HealthConfig, since_start: Duration) {
        if self.log.len() >= MAX_LOG_ENTRIES {
            self.log.drain(..self.log.len() + 1 - MAX_LOG_ENTRIES);
        }
        let passed = result.exit_code == 0;
        self.log.push(result);
        if passed {
            self.failing_streak = 0;
            self.status = HEALTHY.to_owned();
            return;
        }
        let in_start_period =
            self.status == STARTING && since_start < Duration::from_nanos(cfg.start_period);
        if !in_start_period {
            self.failing_streak += 1;
            if self.failing_streak >= cfg.retries() {
                self.status = UNHEALTHY.to_owned();
            }
        }
    }
}

/// `State.Health`'s status for `ps --filter health=`: `none` without a check.
pub fn filter_status(s: &State) -> &str {
    s.health.as_ref().map_or("none", |h| h.status.as_str())
}

/// Go's `time.Duration` text (`1s`, `500ms`, `1m30s`).
fn go_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".to_owned();
    }
    let trim = |n: u128, unit: u128, suffix: &str| {
        let frac = format!("{:0w$}", n % unit, w = unit.ilog10() as usize);
        let frac = frac.trim_end_matches('0');
        if frac.is_empty() {
            format!("{}{suffix}", n / unit)
        } else {
            format!("{}.{frac}{suffix}", n / unit)
        }
    };
    if ns < 1_000 {
        return format!("{ns}ns");
    }
    if ns < 1_000_000 {
        return trim(ns, 1_000, "µs");
    }
    if ns < 1_000_000_000 {
        return trim(ns, 1_000_000, "ms");
    }
    let secs = ns / 1_000_000_000;
    let (h, m) = (secs / 3600, (secs / 60) % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&trim(ns % 60_000_000_000, 1_000_000_000, "s"));
    out
}

/// Runs the check once in the running container `c`: its exit code and output (stdout and
/// stderr, the first 4096 bytes).
fn run_check(c: &Container, cfg: &HealthConfig) -> Result<(i32, String), RunError> {
    let o = ExecOptions {
        args: cfg.command(),
        ..ExecOptions::default()
    };
    let (process, seccomp, init) = exec_process(c, &o)?;
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| ioe("creating a pipe")(std::io::Error::from_raw_os_error(e.raw_os_error())))?;
    let w2 = w.try_clone().map_err(ioe("duplicating a pipe"))?;
    let created = exec::exec_in_with(
        init.pid,
        &process,
        seccomp.as_ref(),
        Path::new("/proc/self/exe"),
        Stdio::Fds {
            stdin: None,
            stdout: w,
            stderr: w2,
        },
    )?;
    let (out_tx, out_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut f = std::fs::File::from(r);
        let mut kept = Vec::new();
        let mut truncated = false;
        let mut buf = [0u8; 4096];
        while let Ok(n) = f.read(&mut buf) {
            if n == 0 {
                break;
            }
            let room = MAX_OUTPUT_LEN - kept.len();
            kept.extend_from_slice(&buf[..n.min(room)]);
            truncated |= n > room;
        }
        let mut s = String::from_utf8_lossy(&kept).into_owned();
        if truncated {
            s.push_str("...");
        }
        let _ = out_tx.send(s);
    });
    let pid = created.pid;
    let (code_tx, code_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = code_tx.send(exec::wait_pid(pid));
    });
    let timeout = cfg.timeout();
    let code = match code_rx.recv_timeout(timeout) {
        Ok(code) => code?,
        Err(_) => {
            let _ = exec::signal_pid(pid, libc::SIGKILL);
            let _ = code_rx.recv();
            return Ok((
                -1,
                format!("Health check exceeded timeout ({})", go_duration(timeout)),
            ));
        }
    };
    // What a process the check left behind still writes is not waited for.
    let out = out_rx
        .recv_timeout(Duration::from_millis(500))
        .unwrap_or_default();
    Ok((code, out))
}

/// Runs the check and updates the state of `id` with its result.
fn check_once(store: &ContainerStore, id: &str, cfg: &HealthConfig, since: Instant) {
    let Ok(c) = store.load(id) else { return };
    if !c.state.running() || c.state.paused || c.state.restarting {
        return;
    }
    let start = SystemTime::now();
    let since_start = since.elapsed();
    let (exit_code, output) = run_check(&c, cfg).unwrap_or_else(|e| (-1, e.to_string()));
    let result = HealthLog {
        start: rfc3339(start),
        end: rfc3339(SystemTime::now()),
        exit_code,
        output,
    };
    let _ = store.update_state(id, |st| {
        st.health
            .get_or_insert_with(Health::default)
            .record(result, cfg, since_start);
    });
}

/// At each start of `c` (in the state that records it running): `starting`, no failures yet,
/// for a container with a check.
pub(crate) fn mark_starting(s: &mut State, c: &Container) {
    if c.config
        .healthcheck
        .as_ref()
        .is_some_and(HealthConfig::active)
    {
        let h = s.health.get_or_insert_with(Health::default);
        h.status = STARTING.to_owned();
        h.failing_streak = 0;
    }
}

/// The health-check thread of one run of a container: stopped (and waited for) when dropped.
pub(crate) struct Monitor {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Monitor {
    /// Checks `c` (just recorded as running, [`mark_starting`]) every interval; `None` when it
    /// has no check.
    pub(crate) fn start(store: &ContainerStore, c: &Container) -> Option<Monitor> {
        let cfg = c.config.healthcheck.clone().filter(HealthConfig::active)?;
        let since = Instant::now();
        let (tx, rx) = mpsc::channel::<()>();
        let store = store.clone();
        let id = c.id().to_owned();
        let thread = std::thread::spawn(move || {
            loop {
                if !matches!(
                    rx.recv_timeout(cfg.interval()),
                    Err(mpsc::RecvTimeoutError::Timeout)
                ) {
                    return;
                }
                check_once(&store, &id, &cfg, since);
            }
        });
        Some(Monitor {
            stop: Some(tx),
            thread: Some(thread),
        })
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(code: i32) -> HealthLog {
        HealthLog {
            start: String::new(),
            end: String::new(),
            exit_code: code,
            output: String::new(),
        }
    }

    #[test]
    fn streaks_and_statuses() {
        let cfg = HealthConfig {
            test: vec!["CMD".into(), "true".into()],
            retries: 2,
            ..HealthConfig::default()
        };
        let mut h = Health {
            status: STARTING.into(),
            ..Health::default()
        };
        h.record(log(1), &cfg, Duration::ZERO);
        assert_eq!((h.status.as_str(), h.failing_streak), (STARTING, 1));
        h.record(log(1), &cfg, Duration::ZERO);
        assert_eq!((h.status.as_str(), h.failing_streak), (UNHEALTHY, 2));
        h.record(log(0), &cfg, Duration::ZERO);
        assert_eq!((h.status.as_str(), h.failing_streak), (HEALTHY, 0));
        for _ in 0..7 {
            h.record(log(0), &cfg, Duration::ZERO);
        }
        assert_eq!(h.log.len(), MAX_LOG_ENTRIES);
        assert_eq!(h.describe(), "healthy");
    }

    #[test]
    fn start_period_failures_do_not_count() {
        let cfg = HealthConfig {
            test: vec!["CMD".into(), "false".into()],
            start_period: 10_000_000_000,
            retries: 1,
            ..HealthConfig::default()
        };
        let mut h = Health {
            status: STARTING.into(),
            ..Health::default()
        };
        h.record(log(1), &cfg, Duration::from_secs(1));
        assert_eq!((h.status.as_str(), h.failing_streak), (STARTING, 0));
        assert_eq!(h.describe(), "health: starting");
        h.record(log(1), &cfg, Duration::from_secs(11));
        assert_eq!(h.status, UNHEALTHY);
    }

    #[test]
    fn merges_over_the_image() {
        let image = HealthConfig {
            test: vec!["CMD-SHELL".into(), "true".into()],
            interval: 5,
            retries: 4,
            ..HealthConfig::default()
        };
        let user = HealthConfig {
            interval: 7,
            ..HealthConfig::default()
        };
        let m = HealthConfig::merge(Some(user), Some(image.clone())).unwrap();
        assert_eq!((m.test.clone(), m.interval, m.retries), (image.test, 7, 4));
        assert_eq!(
            m.command(),
            vec!["/bin/sh".to_owned(), "-c".into(), "true".into()]
        );
        assert!(m.active());
        let none = HealthConfig {
            test: vec!["NONE".into()],
            ..HealthConfig::default()
        };
        assert!(!HealthConfig::merge(Some(none), None).unwrap().active());
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(Duration::from_secs(1)), "1s");
        assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
    }
}
