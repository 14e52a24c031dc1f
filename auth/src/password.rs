//! Password hashing: argon2id, PHC strings, constant-time verification.
//!
//! Every hash and check runs under one process-wide gate: at most [`max_concurrent`] at once
//! (one per core, at most 8), each on one of as many reusable 19 MiB work areas, with a bounded
//! queue of [`QUEUE_PER_CHECK`] waiters per slot for at most [`MAX_WAIT`]. Beyond that a caller
//! gets [`AuthError::Busy`] at once, so a flood of logins costs the server neither more than
//! `max_concurrent() × 19 MiB` nor a thread per request.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use parking_lot::{Condvar, Mutex};
use subtle::ConstantTimeEq;

use crate::AuthError;

/// Memory cost in KiB (19 MiB), time cost 2, one lane: OWASP's argon2id baseline; a login costs
/// a few tens of milliseconds (see `cargo bench -p hoist-auth`).
pub const M_COST_KIB: u32 = 19 * 1024;
pub const T_COST: u32 = 2;
pub const P_COST: u32 = 1;

/// Shortest password accepted.
pub const MIN_LEN: usize = 8;
/// Longest password accepted (hashing cost does not grow with it, but a bound keeps requests sane).
pub const MAX_LEN: usize = 1024;

/// Callers that may wait for a slot, per slot.
pub const QUEUE_PER_CHECK: usize = 8;
/// Longest wait for a slot.
pub const MAX_WAIT: Duration = Duration::from_secs(5);
/// What a caller turned away is told to wait.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// The most slots, whatever the number of cores.
const MAX_SLOTS: usize = 8;
/// Argon2 blocks (1 KiB each) of a work area.
const BLOCKS: usize = M_COST_KIB as usize;

fn params() -> Params {
    Params::new(M_COST_KIB, T_COST, P_COST, None).expect("static argon2 params")
}

/// How many password hashes or checks may run at once: the cores, at most 8.
pub fn max_concurrent() -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .clamp(1, MAX_SLOTS)
}

struct GateState {
    running: usize,
    waiting: usize,
    /// Work areas not in use (at most `slots` ever exist).
    idle: Vec<Vec<Block>>,
}

/// A counting semaphore with a bounded queue whose permits carry argon2 work areas.
struct Gate {
    slots: usize,
    queue: usize,
    state: Mutex<GateState>,
    freed: Condvar,
}

/// A slot: its work area goes back to the gate on drop.
struct Slot<'a> {
    gate: &'a Gate,
    area: Option<Vec<Block>>,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut st = self.gate.state.lock();
        st.running -= 1;
        if let Some(area) = self.area.take() {
            st.idle.push(area);
        }
        drop(st);
        self.gate.freed.notify_one();
    }
}

impl Gate {
    fn new(slots: usize, queue: usize) -> Gate {
        Gate {
            slots,
            queue,
            state: Mutex::new(GateState {
                running: 0,
                waiting: 0,
                idle: Vec::new(),
            }),
            freed: Condvar::new(),
        }
    }

    fn acquire(&self, max_wait: Duration) -> Result<Slot<'_>, AuthError> {
        let mut st = self.state.lock();
        if st.running >= self.slots {
            if st.waiting >= self.queue {
                return Err(AuthError::Busy(RETRY_AFTER));
            }
            st.waiting += 1;
            let deadline = Instant::now() + max_wait;
            while st.running >= self.slots {
                if self.freed.wait_until(&mut st, deadline).timed_out() && st.running >= self.slots
                {
                    st.waiting -= 1;
                    return Err(AuthError::Busy(RETRY_AFTER));
                }
            }
            st.waiting -= 1;
        }
        st.running += 1;
        let area = st.idle.pop();
        drop(st);
        Ok(Slot {
            gate: self,
            // Allocated outside the lock, once per slot: reused ever after.
            area: Some(area.unwrap_or_else(|| vec![Block::default(); BLOCKS])),
        })
    }
}

fn gate() -> &'static Gate {
    static GATE: OnceLock<Gate> = OnceLock::new();
    GATE.get_or_init(|| {
        let slots = max_concurrent();
        Gate::new(slots, slots * QUEUE_PER_CHECK)
    })
}

/// Runs `f` on a work area under the gate.
fn with_memory<T>(f: impl FnOnce(&mut [Block]) -> T) -> Result<T, AuthError> {
    let mut slot = gate().acquire(MAX_WAIT)?;
    let area = slot.area.as_mut().expect("a slot holds its area");
    Ok(f(area.as_mut_slice()))
}

/// Checks a new password's length.
pub fn check_new(password: &str) -> Result<(), AuthError> {
    let n = password.chars().count();
    if !(MIN_LEN..=MAX_LEN).contains(&n) {
        return Err(AuthError::Invalid {
            what: "password",
            value: format!("({n} characters)"),
            reason: format!("a password has {MIN_LEN} to {MAX_LEN} characters"),
        });
    }
    Ok(())
}

fn crypto(what: &str) -> impl FnOnce(argon2::password_hash::Error) -> AuthError + '_ {
    move |e| AuthError::Crypto(format!("{what}: {e}"))
}

/// Hashes `password` with a fresh random salt; returns the PHC string. `Busy` when too many
/// hashes and checks are in progress.
pub fn hash(password: &str) -> Result<String, AuthError> {
    let mut salt = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| AuthError::Crypto("random salt".into()))?;
    let salt_string = SaltString::encode_b64(&salt).map_err(crypto("salt"))?;
    let params = params();
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    with_memory(|area| {
        argon.hash_password_into_with_memory(password.as_bytes(), &salt, &mut out, area)
    })?
    .map_err(|e| AuthError::Crypto(format!("hashing a password: {e}")))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(crypto("argon2 parameters"))?,
        salt: Some(salt_string.as_salt()),
        hash: Some(Output::new(&out).map_err(crypto("hash output"))?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string `phc` (the comparison is constant-time). A stored
/// hash that cannot be parsed, or that asks for more memory than a work area, never matches.
/// `Busy` when too many hashes and checks are in progress.
pub fn verify(password: &str, phc: &str) -> Result<bool, AuthError> {
    if password.len() > MAX_LEN * 4 {
        return Ok(false);
    }
    let Ok(parsed) = PasswordHash::new(phc) else {
        return Ok(false);
    };
    let (Some(expected), Some(salt)) = (parsed.hash, parsed.salt) else {
        return Ok(false);
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else {
        return Ok(false);
    };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::V0x13,
        Some(Ok(v)) => v,
        Some(Err(_)) => return Ok(false),
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return Ok(false);
    };
    if params.block_count() > BLOCKS {
        return Ok(false);
    }
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return Ok(false);
    };
    let argon = Argon2::new(algorithm, version, params);
    let mut out = vec![0u8; expected.len()];
    let computed = with_memory(|area| {
        argon
            .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, area)
            .is_ok()
    })?;
    Ok(computed && bool::from(out.as_slice().ct_eq(expected.as_bytes())))
}

/// Spends the time of one verification, for logins naming no user (no timing oracle for
/// which names exist).
pub fn verify_dummy(password: &str) -> Result<(), AuthError> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let phc = match DUMMY.get() {
        Some(p) => p,
        None => {
            let h = hash("hoist-dummy-password")?;
            DUMMY.get_or_init(|| h)
        }
    };
    verify(password, phc).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = hash("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify("correct horse battery", &h).unwrap());
        assert!(!verify("correct horse batterY", &h).unwrap());
        assert!(!verify("", &h).unwrap());
        // Same password, different salt.
        assert_ne!(h, hash("correct horse battery").unwrap());
        assert!(!verify("x", "not a phc string").unwrap());
        assert!(check_new("short").is_err());
        assert!(check_new("long enough").is_ok());
        assert!(
            !check_new("short")
                .unwrap_err()
                .to_string()
                .contains("short")
        );
    }

    #[test]
    fn hashes_of_the_argon2_crate_still_verify() {
        use argon2::password_hash::PasswordHasher;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params());
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let stored = argon
            .hash_password(b"stored before", &salt)
            .unwrap()
            .to_string();
        assert!(verify("stored before", &stored).unwrap());
        assert!(!verify("stored befor", &stored).unwrap());
        // Ours are what the crate makes.
        let ours = hash("stored before").unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        use argon2::password_hash::PasswordVerifier;
        assert!(argon.verify_password(b"stored before", &parsed).is_ok());
        // More memory than a work area: never matches, never allocates it.
        let big = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(M_COST_KIB * 2, 1, 1, None).unwrap(),
        )
        .hash_password(b"big", &salt)
        .unwrap()
        .to_string();
        assert!(!verify("big", &big).unwrap());
    }

    #[test]
    fn the_gate_bounds_running_and_waiting_checks() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let gate = Arc::new(Gate::new(2, 3));
        let (running, max_running, busy) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
        );
        // Hold both slots until 3 wait and the rest are turned away.
        let held: Vec<_> = (0..2)
            .map(|_| {
                let mut s = gate.acquire(Duration::ZERO).unwrap();
                assert_eq!(s.area.as_mut().unwrap().len(), BLOCKS);
                s
            })
            .collect();
        let threads: Vec<_> = (0..10)
            .map(|_| {
                let (gate, running, max_running, busy) = (
                    gate.clone(),
                    running.clone(),
                    max_running.clone(),
                    busy.clone(),
                );
                std::thread::spawn(move || match gate.acquire(Duration::from_secs(30)) {
                    Ok(slot) => {
                        let n = running.fetch_add(1, Ordering::SeqCst) + 1;
                        max_running.fetch_max(n, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(20));
                        running.fetch_sub(1, Ordering::SeqCst);
                        drop(slot);
                    }
                    Err(AuthError::Busy(d)) => {
                        assert!(d >= Duration::from_secs(1));
                        busy.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => panic!("{e}"),
                })
            })
            .collect();
        // Poll until 3 wait and 7 were turned away.
        let until = Instant::now() + Duration::from_secs(30);
        while !(gate.state.lock().waiting == 3 && busy.load(Ordering::SeqCst) == 7) {
            assert!(
                Instant::now() < until,
                "waiting {}",
                gate.state.lock().waiting
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(held);
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(busy.load(Ordering::SeqCst), 7);
        assert!(max_running.load(Ordering::SeqCst) <= 2);
        let st = gate.state.lock();
        assert_eq!((st.running, st.waiting), (0, 0));
        assert!(st.idle.len() <= 2, "no more work areas than slots");
        drop(st);
        // A waiter gives up after its wait.
        let a = gate.acquire(Duration::ZERO).unwrap();
        let b = gate.acquire(Duration::ZERO).unwrap();
        let started = Instant::now();
        assert!(matches!(
            gate.acquire(Duration::from_millis(50)),
            Err(AuthError::Busy(_))
        ));
        assert!(started.elapsed() >= Duration::from_millis(50));
        drop((a, b));
    }
}
