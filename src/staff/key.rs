//! The secret that signs staff tokens, when the configuration sets none.
//!
//! It is generated once and kept in a key file readable by the owner only (beside the SQLite
//! database by default), not in the database: whoever reads a database file or a backup of it must
//! not be able to mint admin tokens. The database keeps only the key's fingerprint, so that an
//! instance starting with another key (another machine's key file) refuses to start instead of
//! issuing tokens its peers reject. A secret left in the database by an earlier version moves to
//! the key file (tokens issued with it stay valid) and is deleted from the database.

use std::path::{Path, PathBuf};

use switchboard_channel::{Secret, signature::hmac_sha256};

use crate::{
    config::{DatabaseConfig, StaffConfig},
    private_files,
    store::{Db, Store, StoreError, query},
    time::Clock,
};

/// Where an earlier version kept the generated secret, in clear.
const LEGACY_SETTING: &str = "staff_jwt_secret";
/// The setting holding the key's fingerprint.
const FINGERPRINT_SETTING: &str = "staff_key_fingerprint";

/// Why the staff key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file cannot be read or written.
    #[error("the staff key file {path}: {source}")]
    File {
        /// Which file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key file is empty.
    #[error("the staff key file {0} is empty; delete it to have a new key generated")]
    Empty(PathBuf),
    /// Other instances of this database sign staff tokens with another key.
    #[error(
        "staff tokens of this database are signed with another key than {0}: copy the key file of \
         the instance that created the database, or set the same staff.jwt_secret \
         (SWITCHBOARD_STAFF_JWT_SECRET) on every instance"
    )]
    Mismatch(PathBuf),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The key file of a configuration: `staff.key_file`, else beside the SQLite database
/// (`<name>.key`), else `switchboard.key` in the working directory.
pub fn key_file(staff: &StaffConfig, database: &DatabaseConfig) -> PathBuf {
    if let Some(path) = &staff.key_file {
        return path.clone();
    }
    if database.url.starts_with("sqlite:")
        && let Ok(options) =
            <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(&database.url)
    {
        let file = options.get_filename();
        if !file.as_os_str().is_empty() && file.as_os_str() != ":memory:" {
            return file.with_extension("key");
        }
    }
    PathBuf::from("switchboard.key")
}

/// The staff token secret: the configured one, or the key file's (generated on first use).
pub async fn staff_secret(
    configured: Option<&Secret>,
    file: &Path,
    store: &Store,
    clock: &Clock,
) -> Result<Secret, KeyError> {
    let (secret, generated) = match configured {
        Some(secret) => (secret.clone(), false),
        None => (read_or_create(file, store).await?, true),
    };
    let fingerprint = hex::encode(hmac_sha256(
        secret.as_bytes(),
        b"switchboard staff key fingerprint",
    ));
    let mut tx = store.begin().await?;
    tx.execute(query("DELETE FROM settings WHERE name = $1").bind(LEGACY_SETTING))
        .await?;
    // The first instance to get here records its key; the others compare (two instances starting
    // at once on PostgreSQL both insert, and only one insert counts).
    tx.execute(
        query(
            "INSERT INTO settings (name, value, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(FINGERPRINT_SETTING)
        .bind(fingerprint.as_str())
        .bind(clock.now()),
    )
    .await?;
    let (stored,): (String,) = tx
        .fetch_one(query("SELECT value FROM settings WHERE name = $1").bind(FINGERPRINT_SETTING))
        .await?;
    if stored != fingerprint {
        if generated {
            return Err(KeyError::Mismatch(file.to_owned()));
        }
        tracing::warn!(
            "staff.jwt_secret changed: staff tokens issued with the previous secret are no \
             longer accepted"
        );
        tx.execute(
            query("UPDATE settings SET value = $2 WHERE name = $1")
                .bind(FINGERPRINT_SETTING)
                .bind(fingerprint),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(secret)
}

/// The key file's secret; a new file (with the secret an earlier version kept in the database, or
/// a random one) when there is none.
async fn read_or_create(file: &Path, store: &Store) -> Result<Secret, KeyError> {
    let failed = |source| KeyError::File {
        path: file.to_owned(),
        source,
    };
    if !file.exists() {
        let legacy: Option<(String,)> = store
            .reader()
            .fetch_optional(
                query("SELECT value FROM settings WHERE name = $1").bind(LEGACY_SETTING),
            )
            .await?;
        let secret = legacy.map_or_else(super::random_token, |(value,)| value);
        match private_files::write_new(file, secret.as_bytes()) {
            Ok(()) => tracing::info!(
                path = %file.display(),
                "staff.jwt_secret is not set: staff tokens are signed with a key generated into \
                 this file (readable by this user only); every instance must use the same"
            ),
            // Another instance (or process) created it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(failed(e)),
        }
    }
    #[cfg(unix)]
    private_files::tighten(file, private_files::FILE_MODE).map_err(failed)?;
    let text = std::fs::read_to_string(file).map_err(failed)?;
    Secret::new(text.trim()).ok_or_else(|| KeyError::Empty(file.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn instances_starting_together_agree_on_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::DatabaseConfig {
            url: format!("sqlite://{}", dir.path().join("db.sqlite").display()),
            ..crate::config::DatabaseConfig::default()
        };
        let store = Store::connect(&config).await.unwrap();
        store.migrate().await.unwrap();
        let file = dir.path().join("staff.key");
        let clock = Clock::system();
        let starts = (0..8).map(|_| staff_secret(None, &file, &store, &clock));
        let keys: Vec<Secret> = futures::future::try_join_all(starts).await.unwrap();
        assert!(keys.iter().all(|k| k == &keys[0]), "one key for all");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), keys[0].expose());
        let leftovers = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".new")
            })
            .count();
        assert_eq!(leftovers, 0, "nothing written aside is left behind");
        store.close().await;
    }
}
