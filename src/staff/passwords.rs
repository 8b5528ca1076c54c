//! Passwords of staff accounts, hashed with argon2id (PHC string format, parameters and salt
//! included, so they can be raised later without breaking old hashes).

use argon2::{
    Argon2,
    password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
};

/// The shortest password accepted.
pub const MIN_LENGTH: usize = 10;

/// Why a password was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordError {
    /// Shorter than [`MIN_LENGTH`] characters.
    #[error("passwords need at least {MIN_LENGTH} characters")]
    TooShort,
    /// Hashing failed (it does not, with valid parameters).
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

/// Hashes a new password.
pub fn hash(password: &str) -> Result<String, PasswordError> {
    if password.chars().count() < MIN_LENGTH {
        return Err(PasswordError::TooShort);
    }
    // 16 random bytes from the OS (a v4 UUID is exactly that, less 6 fixed bits).
    let salt = SaltString::encode_b64(uuid::Uuid::new_v4().as_bytes())
        .map_err(|e| PasswordError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Whether `password` matches a stored hash. A malformed hash matches nothing.
pub fn verify(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// A hash to verify against when the account does not exist, so that a wrong login name costs as
/// long as a wrong password (no user enumeration by timing).
pub fn decoy() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash("decoy-password-never-matches").unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_salted_and_checked() {
        let one = hash("correct horse battery").unwrap();
        let two = hash("correct horse battery").unwrap();
        assert!(one.starts_with("$argon2id$"), "{one}");
        assert_ne!(one, two, "salted");
        assert!(verify("correct horse battery", &one));
        assert!(!verify("correct horse battery!", &one));
        assert!(!verify("anything", "not a hash"));
        assert_eq!(hash("short"), Err(PasswordError::TooShort));
        assert!(!verify("decoy", decoy()));
    }
}
