//! Failed-login rate limiting, per user and per remote address.
//!
//! The counts live in the auth store (`login_limits`), not in memory: every process sharing the
//! store (replicas on one PostgreSQL, or `hoist serve` processes on one data directory) counts
//! the same failures and honours the same lockouts. Each failure is one upsert, atomic in both
//! databases, so failures spread over replicas add up exactly.

use std::time::Duration;

use crate::AuthError;
use crate::service::db::{Db, vals};

/// Limits: after `max_failures` failed logins within `window`, a key is locked for `lockout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_failures: u32,
    pub window: Duration,
    pub lockout: Duration,
}

/// Counts failures per key (`user:NAME`, `addr:IP`) with one set of [`Limits`].
#[derive(Debug)]
pub(crate) struct RateLimiter {
    limits: Limits,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Milliseconds since the epoch (the limiter's clock; replicas compare these).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, ms)
}

/// Whether an existing row's count starts again: its lockout is over, or its window passed.
/// `?2` is now, `?5` is now minus the window.
const RESET: &str =
    "((login_limits.locked_until_ms IS NOT NULL AND login_limits.locked_until_ms <= ?2)
     OR login_limits.since_ms <= ?5)";

/// `Ok(Err(retry_after))` while one of `keys` is locked out at `now` (ms since the epoch): the
/// first locked one in `keys`' order. One query for all of them (a login checks its user and its
/// address).
pub(crate) fn lockout(db: &Db, keys: &[&str], now: i64) -> Result<Result<(), Duration>, AuthError> {
    let marks = vec!["?"; keys.len()].join(", ");
    let params: Vec<crate::service::db::Value> = keys.iter().map(|k| (*k).into()).collect();
    let rows = db.query(
        &format!("SELECT key, locked_until_ms FROM login_limits WHERE key IN ({marks})"),
        &params,
    )?;
    let mut locked = Vec::new();
    for r in &rows {
        if let Some(until) = r.opt_int(1)?
            && until > now
        {
            locked.push((r.text(0)?, until));
        }
    }
    Ok(
        match keys
            .iter()
            .find_map(|k| locked.iter().find(|(l, _)| l == k))
        {
            Some((_, until)) => Err(Duration::from_millis((until - now) as u64)),
            None => Ok(()),
        },
    )
}

impl RateLimiter {
    pub(crate) fn new(limits: Limits) -> RateLimiter {
        RateLimiter { limits }
    }

    /// Records a failed login for `key` at `now`; returns the lockout if this failure started
    /// one. Rows past their use are dropped here too, so the table stays as small as the set of
    /// keys that failed recently.
    pub(crate) fn failure(
        &self,
        db: &Db,
        key: &str,
        now: i64,
    ) -> Result<Option<Duration>, AuthError> {
        let l = self.limits;
        let max = i64::from(l.max_failures.max(1));
        let locked_until = now.saturating_add(ms(l.lockout));
        let expires = now.saturating_add(ms(l.window.max(l.lockout)));
        let first_lock = (max <= 1).then_some(locked_until);
        let count = format!("CASE WHEN {RESET} THEN 1 ELSE login_limits.failures + 1 END");
        let sql = format!(
            "INSERT INTO login_limits (key, failures, since_ms, locked_until_ms, expires_ms)
             VALUES (?1, 1, ?2, ?3, ?4)
             ON CONFLICT (key) DO UPDATE SET
                 failures = {count},
                 since_ms = CASE WHEN {RESET} THEN ?2 ELSE login_limits.since_ms END,
                 locked_until_ms = CASE WHEN {count} >= ?6 THEN ?7
                                   ELSE login_limits.locked_until_ms END,
                 expires_ms = ?4
             RETURNING failures"
        );
        let rows = db.query(
            &sql,
            vals![
                key,
                now,
                first_lock,
                expires,
                now.saturating_sub(ms(l.window)),
                max,
                locked_until
            ],
        )?;
        let failures = match rows.first() {
            Some(r) => r.int(0)?,
            None => 1,
        };
        db.execute("DELETE FROM login_limits WHERE expires_ms < ?", vals![now])?;
        Ok((failures >= max).then_some(l.lockout))
    }

    /// A successful login clears `key`'s failures.
    pub(crate) fn success(&self, db: &Db, key: &str) -> Result<(), AuthError> {
        db.execute("DELETE FROM login_limits WHERE key = ?", vals![key])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Db {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(crate::service::SCHEMA).unwrap();
        Db::sqlite(conn, ":memory:".into())
    }

    const S: i64 = 1000;

    #[test]
    fn locks_after_max_failures_and_unlocks_after_the_lockout() {
        let db = &db();
        let l = RateLimiter::new(Limits {
            max_failures: 3,
            window: Duration::from_secs(60),
            lockout: Duration::from_secs(30),
        });
        let t0 = 1_000_000 * S;
        assert_eq!(lockout(db, &["user:a"], t0).unwrap(), Ok(()));
        assert_eq!(l.failure(db, "user:a", t0).unwrap(), None);
        assert_eq!(l.failure(db, "user:a", t0 + S).unwrap(), None);
        assert_eq!(lockout(db, &["user:a"], t0 + S).unwrap(), Ok(()));
        assert_eq!(
            l.failure(db, "user:a", t0 + 2 * S).unwrap(),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            lockout(db, &["user:a"], t0 + 12 * S).unwrap(),
            Err(Duration::from_secs(20))
        );
        // Other keys are untouched.
        assert_eq!(lockout(db, &["user:b"], t0 + 12 * S).unwrap(), Ok(()));
        // After the lockout the count starts again.
        let t1 = t0 + 33 * S;
        assert_eq!(lockout(db, &["user:a"], t1).unwrap(), Ok(()));
        assert_eq!(l.failure(db, "user:a", t1).unwrap(), None);
        assert_eq!(lockout(db, &["user:a"], t1).unwrap(), Ok(()));
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up_and_success_resets() {
        let db = &db();
        let l = RateLimiter::new(Limits {
            max_failures: 2,
            window: Duration::from_secs(10),
            lockout: Duration::from_secs(30),
        });
        let t0 = 1_000_000 * S;
        assert_eq!(l.failure(db, "k", t0).unwrap(), None);
        assert_eq!(l.failure(db, "k", t0 + 11 * S).unwrap(), None);
        assert_eq!(lockout(db, &["k"], t0 + 11 * S).unwrap(), Ok(()));
        l.success(db, "k").unwrap();
        assert_eq!(l.failure(db, "k", t0 + 12 * S).unwrap(), None);
        assert!(l.failure(db, "k", t0 + 13 * S).unwrap().is_some());
        assert!(lockout(db, &["k"], t0 + 14 * S).unwrap().is_err());
    }

    #[test]
    fn a_single_allowed_failure_locks_at_once_and_old_rows_are_dropped() {
        let db = &db();
        let l = RateLimiter::new(Limits {
            max_failures: 1,
            window: Duration::from_secs(10),
            lockout: Duration::from_secs(5),
        });
        let t0 = 1_000_000 * S;
        assert!(l.failure(db, "a", t0).unwrap().is_some());
        assert!(lockout(db, &["a"], t0 + S).unwrap().is_err());
        // Past both the window and the lockout, another key's failure sweeps the row away.
        assert_eq!(
            l.failure(db, "b", t0 + 11 * S).unwrap(),
            Some(Duration::from_secs(5))
        );
        let rows = db
            .query("SELECT key FROM login_limits ORDER BY key", vals![])
            .unwrap();
        let keys: Vec<String> = rows.iter().map(|r| r.text(0).unwrap()).collect();
        assert_eq!(keys, ["b"]);
    }
}
