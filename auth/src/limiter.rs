//! Failed-login rate limiting, per user and per remote address.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Limits: after `max_failures` failed logins within `window`, a key is locked for `lockout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_failures: u32,
    pub window: Duration,
    pub lockout: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    since: Instant,
    locked_until: Option<Instant>,
}

/// Counts failures per key (`user:NAME`, `addr:IP`), in memory.
#[derive(Debug)]
pub struct RateLimiter {
    limits: Limits,
    entries: Mutex<HashMap<String, Entry>>,
}

/// Most keys tracked; past this, expired entries are dropped, then the oldest.
const MAX_KEYS: usize = 100_000;

impl RateLimiter {
    pub fn new(limits: Limits) -> RateLimiter {
        RateLimiter {
            limits,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(retry_after)` while `key` is locked out.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let entries = self.entries.lock();
        match entries.get(key).and_then(|e| e.locked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Records a failed login for `key`; returns the lockout if this failure started one.
    pub fn failure(&self, key: &str, now: Instant) -> Option<Duration> {
        let mut entries = self.entries.lock();
        if entries.len() >= MAX_KEYS {
            let window = self.limits.window;
            entries.retain(|_, e| {
                now.saturating_duration_since(e.since) < window
                    || e.locked_until.is_some_and(|u| u > now)
            });
            if entries.len() >= MAX_KEYS {
                entries.clear();
            }
        }
        let e = entries.entry(key.to_owned()).or_insert(Entry {
            failures: 0,
            since: now,
            locked_until: None,
        });
        let lock_over = e.locked_until.is_some_and(|u| u <= now);
        if lock_over || now.saturating_duration_since(e.since) >= self.limits.window {
            *e = Entry {
                failures: 0,
                since: now,
                locked_until: None,
            };
        }
        e.failures += 1;
        if e.failures >= self.limits.max_failures {
            e.locked_until = Some(now + self.limits.lockout);
            Some(self.limits.lockout)
        } else {
            None
        }
    }

    /// A successful login clears `key`'s failures.
    pub fn success(&self, key: &str) {
        self.entries.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_max_failures_and_unlocks_after_the_lockout() {
        let l = RateLimiter::new(Limits {
            max_failures: 3,
            window: Duration::from_secs(60),
            lockout: Duration::from_secs(30),
        });
        let t0 = Instant::now();
        assert!(l.check("user:a", t0).is_ok());
        assert_eq!(l.failure("user:a", t0), None);
        assert_eq!(l.failure("user:a", t0 + Duration::from_secs(1)), None);
        assert!(l.check("user:a", t0 + Duration::from_secs(1)).is_ok());
        assert_eq!(
            l.failure("user:a", t0 + Duration::from_secs(2)),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            l.check("user:a", t0 + Duration::from_secs(12)),
            Err(Duration::from_secs(20))
        );
        // Other keys are untouched.
        assert!(l.check("user:b", t0 + Duration::from_secs(12)).is_ok());
        // After the lockout the count starts again.
        let t1 = t0 + Duration::from_secs(33);
        assert!(l.check("user:a", t1).is_ok());
        assert_eq!(l.failure("user:a", t1), None);
        assert!(l.check("user:a", t1).is_ok());
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up_and_success_resets() {
        let l = RateLimiter::new(Limits {
            max_failures: 2,
            window: Duration::from_secs(10),
            lockout: Duration::from_secs(30),
        });
        let t0 = Instant::now();
        assert_eq!(l.failure("k", t0), None);
        assert_eq!(l.failure("k", t0 + Duration::from_secs(11)), None);
        assert!(l.check("k", t0 + Duration::from_secs(11)).is_ok());
        l.success("k");
        assert_eq!(l.failure("k", t0 + Duration::from_secs(12)), None);
        assert!(l.failure("k", t0 + Duration::from_secs(13)).is_some());
        assert!(l.check("k", t0 + Duration::from_secs(14)).is_err());
    }
}
