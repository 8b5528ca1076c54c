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
    let salt = SaltString::encode_b64(&super::os_random::<16>())
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

/// Password hashing, a few at a time. Each argon2id hash takes 19 MiB and tens of milliseconds of
/// one core: run without a bound, a burst of sign-ins (300 at once took the process from 34 MiB to
/// 1.9 GiB) exhausts memory and starves everything else of CPU. At most one hash per core runs at
/// once; a sign-in that cannot get a slot soon enough is refused (429) rather than queued forever.
#[derive(Debug, Clone)]
pub struct Hashing {
    slots: std::sync::Arc<tokio::sync::Semaphore>,
    wait: std::time::Duration,
}

/// No hashing slot became free in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many sign-ins at once")]
pub struct Busy;

impl Hashing {
    /// `concurrent` hashes at once (`0`: one per CPU core); a sign-in waits at most `wait`.
    pub fn new(concurrent: usize, wait: std::time::Duration) -> Self {
        let concurrent = match concurrent {
            0 => std::thread::available_parallelism().map_or(2, usize::from),
            n => n,
        };
        Self {
            slots: std::sync::Arc::new(tokio::sync::Semaphore::new(concurrent)),
            wait,
        }
    }

    /// Whether `password` matches `stored`, computed on the blocking pool once a slot is free;
    /// [`Busy`] when none became free within the wait.
    pub async fn verify(&self, password: &str, stored: &str) -> Result<bool, Busy> {
        let permit = tokio::time::timeout(self.wait, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| Busy)?
            .map_err(|_| Busy)?;
        let (password, stored) = (password.to_owned(), stored.to_owned());
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            verify(&password, &stored)
        })
        .await
        .map_err(|_| Busy)
    }

    /// Hashes a new password once a slot is free (waiting as long as it takes: only admins create
    /// accounts).
    pub async fn hash(&self, password: &str) -> Result<String, PasswordError> {
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| PasswordError::Hash(e.to_string()))?;
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            hash(&password)
        })
        .await
        .map_err(|e| PasswordError::Hash(e.to_string()))?
    }
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
