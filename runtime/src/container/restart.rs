//! Restart policies (`--restart`), as docker's restart manager applies them: the detached
//! supervisor runs the container's process again when it exits, waiting 100 ms, then twice as
//! long each time (at most a minute), back to 100 ms after a run of 10 s or more. An explicit
//! `stop`, `kill` or `rm -f` ([`request_stop`]) ends the loop, as docker's
//! `HasBeenManuallyStopped` does.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use super::supervise::Supervisor;
use super::{Container, Status, now_unix, rfc3339};

/// `--restart`: docker's `HostConfig.RestartPolicy`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RestartPolicy {
    /// `no`, `always`, `unless-stopped` or `on-failure`.
    pub name: String,
    /// `on-failure:N`: at most N restarts (0: no limit).
    #[serde(default)]
    pub maximum_retry_count: u32,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            name: "no".to_owned(),
            maximum_retry_count: 0,
        }
    }
}

/// A `--restart` value docker refuses.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("invalid restart policy format: no policy provided before colon")]
    NoPolicy,
    #[error("invalid restart policy format: maximum retry count must be an integer")]
    BadCount,
    #[error("invalid restart policy: maximum retry count can only be used with 'on-failure'")]
    CountWithout,
    #[error("invalid restart policy: maximum retry count cannot be negative")]
    Negative,
    #[error(
        "invalid restart policy: unknown policy '{0}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"
    )]
    Unknown(String),
}

impl RestartPolicy {
    /// Parses `no`, `always`, `unless-stopped`, `on-failure[:N]` (docker's
    /// `ParseRestartPolicy` and its validation).
    pub fn parse(s: &str) -> Result<RestartPolicy, PolicyError> {
        if s.is_empty() {
            return Ok(RestartPolicy::default());
        }
        let (name, count) = match s.split_once(':') {
            Some(("", _)) => return Err(PolicyError::NoPolicy),
            Some((n, c)) => (n, Some(c)),
            None => (s, None),
        };
        let count: i64 = match count.filter(|c| !c.is_empty()) {
            Some(c) => c.parse().map_err(|_| PolicyError::BadCount)?,
            None => 0,
        };
        match name {
            "no" | "always" | "unless-stopped" if count != 0 => Err(PolicyError::CountWithout),
            "no" | "always" | "unless-stopped" | "on-failure" => {
                if count < 0 {
                    return Err(PolicyError::Negative);
                }
                Ok(RestartPolicy {
                    name: name.to_owned(),
                    maximum_retry_count: u32::try_from(count).unwrap_or(u32::MAX),
                })
            }
            other => Err(PolicyError::Unknown(other.to_owned())),
        }
    }

    /// `no`: never restarted.
    pub fn is_none(&self) -> bool {
        self.name == "no" || self.name.is_empty()
    }
}

const DEFAULT_TIMEOUT: Duration = Duration::from_millis(100);
const MAX_TIMEOUT: Duration = Duration::from_secs(60);

/// Docker's restart manager: whether (and after how long) a process that exited runs again.
#[derive(Debug)]
pub struct RestartManager {
    policy: RestartPolicy,
    timeout: Duration,
    count: u32,
}

impl RestartManager {
    pub fn new(policy: RestartPolicy) -> Self {
        RestartManager {
            policy,
            timeout: Duration::ZERO,
            count: 0,
        }
    }

    /// After a run of `ran` that ended with `exit_code`: the delay before the next run, or
    /// `None` when it is not restarted.
    pub fn should_restart(
        &mut self,
        exit_code: i32,
        manually_stopped: bool,
        ran: Duration,
    ) -> Option<Duration> {
        if self.policy.is_none() {
            return None;
        }
        if ran >= Duration::from_secs(10) {
            self.timeout = Duration::ZERO;
        }
        self.timeout = if self.timeout.is_zero() {
            DEFAULT_TIMEOUT
        } else {
            (self.timeout * 2).min(MAX_TIMEOUT)
        };
        let restart = !manually_stopped
            && match self.policy.name.as_str() {
                "always" | "unless-stopped" => true,
                "on-failure" => {
                    let max = self.policy.maximum_retry_count;
                    (max == 0 || self.count < max) && exit_code != 0
                }
                _ => false,
            };
        if !restart {
            return None;
        }
        self.count += 1;
        Some(self.timeout)
    }
}

/// Whether `c` starts again when the host comes up (`hoist system service start`), as docker's
/// daemon decides for its containers when it starts: `always` even after a stop by hand,
/// `unless-stopped` unless stopped by hand, `on-failure` after a non-zero exit while it has
/// restarts left; never one that runs.
pub fn starts_at_boot(c: &Container) -> bool {
    if c.state.running() {
        return false;
    }
    let p = &c.config.restart_policy;
    match p.name.as_str() {
        "always" => true,
        "unless-stopped" => !stop_requested(&c.dir),
        "on-failure" => {
            let max = p.maximum_retry_count;
            c.state.exit_code.is_some_and(|code| code != 0)
                && (max == 0 || c.state.restart_count < max)
        }
        _ => false,
    }
}

const STOP_MARKER: &str = "stop-requested";

/// Records that `c` was stopped on purpose (`stop`, `kill`, `rm -f`): its supervisor does not
/// restart it. Cleared when it is started again.
pub fn request_stop(c: &Container) {
    let _ = std::fs::write(c.dir.join(STOP_MARKER), b"");
}

fn stop_requested(dir: &Path) -> bool {
    dir.join(STOP_MARKER).exists()
}

pub(super) fn clear_stop(dir: &Path) {
    let _ = std::fs::remove_file(dir.join(STOP_MARKER));
}

impl Supervisor<'_> {
    /// After a run of `c` that ended with `code` (`ran` long): with a restart due, records the
    /// container as restarting, waits the backoff (ending early on a stop request) and returns
    /// true to run it again.
    pub(super) fn restart_due(
        &self,
        c: &Container,
        manager: &mut RestartManager,
        code: i32,
        ran: Duration,
    ) -> bool {
        let Some(delay) = manager.should_restart(code, stop_requested(&c.dir), ran) else {
            return false;
        };
        let recorded = self.record(c.id(), |s| {
            s.status = Status::Running;
            s.restarting = true;
            s.paused = false;
            s.init = None;
            s.exit_code = Some(code);
            s.finished_at = Some(rfc3339(SystemTime::now()));
            s.finished_unix = Some(now_unix());
            s.restart_count += 1;
        });
        if recorded.is_err() {
            return false;
        }
        let until = Instant::now() + delay;
        while Instant::now() < until {
            if stop_requested(&c.dir) {
                return false;
            }
            std::thread::sleep((until - Instant::now()).min(Duration::from_millis(20)));
        }
        !stop_requested(&c.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_policies() {
        assert_eq!(RestartPolicy::parse("").unwrap(), RestartPolicy::default());
        assert_eq!(RestartPolicy::parse("always").unwrap().name, "always");
        let p = RestartPolicy::parse("on-failure:3").unwrap();
        assert_eq!((p.name.as_str(), p.maximum_retry_count), ("on-failure", 3));
        assert_eq!(
            RestartPolicy::parse("on-failure")
                .unwrap()
                .maximum_retry_count,
            0
        );
        for (bad, msg) in [
            (":1", "no policy provided before colon"),
            ("on-failure:x", "must be an integer"),
            ("always:2", "can only be used with 'on-failure'"),
            ("on-failure:-1", "cannot be negative"),
            ("sometimes", "unknown policy 'sometimes'"),
        ] {
            let e = RestartPolicy::parse(bad).unwrap_err().to_string();
            assert!(e.contains(msg), "{bad}: {e}");
        }
    }

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let mut m = RestartManager::new(RestartPolicy::parse("always").unwrap());
        let short = Duration::from_millis(1);
        let delays: Vec<_> = (0..12)
            .map(|_| m.should_restart(0, false, short).unwrap())
            .collect();
        assert_eq!(delays[0], Duration::from_millis(100));
        assert_eq!(delays[1], Duration::from_millis(200));
        assert_eq!(delays[2], Duration::from_millis(400));
        assert_eq!(delays[11], MAX_TIMEOUT);
        assert_eq!(
            m.should_restart(0, false, Duration::from_secs(10)),
            Some(DEFAULT_TIMEOUT)
        );
        assert_eq!(m.should_restart(0, true, short), None);
    }

    #[test]
    fn on_failure_counts_and_ignores_success() {
        let mut m = RestartManager::new(RestartPolicy::parse("on-failure:2").unwrap());
        let short = Duration::from_millis(1);
        assert_eq!(m.should_restart(0, false, short), None);
        assert!(m.should_restart(1, false, short).is_some());
        assert!(m.should_restart(1, false, short).is_some());
        assert_eq!(m.should_restart(1, false, short), None);
        let mut none = RestartManager::new(RestartPolicy::default());
        assert_eq!(none.should_restart(1, false, short), None);
    }
}
