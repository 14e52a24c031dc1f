//! Password hashing: argon2id, PHC strings, constant-time verification.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

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

fn hasher() -> Argon2<'static> {
    let params = Params::new(M_COST_KIB, T_COST, P_COST, None).expect("static argon2 params");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
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

/// Hashes `password` with a fresh random salt; returns the PHC string.
pub fn hash(password: &str) -> Result<String, AuthError> {
    let mut salt = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| AuthError::Crypto("random salt".into()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| AuthError::Crypto(e.to_string()))?;
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Crypto(format!("hashing a password: {e}")))
}

/// Whether `password` matches the PHC string `phc` (the comparison is constant-time). A stored
/// hash that cannot be parsed never matches.
pub fn verify(password: &str, phc: &str) -> bool {
    if password.len() > MAX_LEN * 4 {
        return false;
    }
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    hasher()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// Spends the time of one verification, for logins naming no user (no timing oracle for
/// which names exist).
pub fn verify_dummy(password: &str) {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let phc = DUMMY.get_or_init(|| hash("hoist-dummy-password").unwrap_or_default());
    let _ = verify(password, phc);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = hash("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify("correct horse battery", &h));
        assert!(!verify("correct horse batterY", &h));
        assert!(!verify("", &h));
        // Same password, different salt.
        assert_ne!(h, hash("correct horse battery").unwrap());
        assert!(!verify("x", "not a phc string"));
        assert!(check_new("short").is_err());
        assert!(check_new("long enough").is_ok());
        assert!(
            !check_new("short")
                .unwrap_err()
                .to_string()
                .contains("short")
        );
    }
}
