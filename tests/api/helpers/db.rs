//! A fresh database per test: an SQLite file in a temporary directory, or a new schema on the
//! PostgreSQL server named by `TEST_DATABASE_URL`, dropped afterwards.

use std::{io::Write, sync::Once};

use sqlx::{Connection, Executor, PgConnection};

/// Which backend a test runs on.
#[derive(Debug, Clone)]
pub enum Backend {
    /// An SQLite file.
    Sqlite,
    /// A PostgreSQL server (the base URL).
    Postgres(String),
}

impl Backend {
    /// The PostgreSQL backend, when `TEST_DATABASE_URL` is set. Otherwise prints (once, past the
    /// test harness's output capture) that PostgreSQL tests are skipped.
    pub fn postgres() -> Option<Backend> {
        match std::env::var("TEST_DATABASE_URL") {
            Ok(url) if !url.is_empty() => Some(Backend::Postgres(url)),
            _ => {
                static NOTE: Once = Once::new();
                NOTE.call_once(|| {
                    let _ = writeln!(
                        std::io::stderr(),
                        "\nnote: PostgreSQL tests are SKIPPED: set TEST_DATABASE_URL \
                         (e.g. postgres://postgres@127.0.0.1:5432/test) to run them\n"
                    );
                });
                None
            }
        }
    }
}

/// A database that exists for one test.
pub struct TestDb {
    /// The URL the gateway connects with.
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    /// Removed (with the database file) when dropped.
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres {
        base: String,
        schema: String,
        /// Files that belong with the database (the staff key), removed when dropped.
        dir: tempfile::TempDir,
    },
}

impl TestDb {
    /// Creates an empty database on the backend.
    pub async fn create(backend: &Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temporary directory");
                let url = format!("sqlite://{}", dir.path().join("test.db").display());
                TestDb {
                    url,
                    cleanup: Cleanup::Sqlite(dir),
                }
            }
            Backend::Postgres(base) => {
                let schema = format!("t_{}", uuid::Uuid::now_v7().simple());
                let mut conn = PgConnection::connect(base)
                    .await
                    .expect("connect to TEST_DATABASE_URL");
                conn.execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                    .await
                    .expect("create the test schema");
                let separator = if base.contains('?') { '&' } else { '?' };
                let url = format!("{base}{separator}options[search_path]={schema}");
                TestDb {
                    url,
                    cleanup: Cleanup::Postgres {
                        base: base.clone(),
                        schema,
                        dir: tempfile::tempdir().expect("temporary directory"),
                    },
                }
            }
        }
    }
}

impl TestDb {
    /// A directory for files that belong with a PostgreSQL database; `None` on SQLite, whose
    /// database file's directory serves.
    pub fn dir(&self) -> Option<&std::path::Path> {
        match &self.cleanup {
            Cleanup::Sqlite(_) => None,
            Cleanup::Postgres { dir, .. } => Some(dir.path()),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Cleanup::Postgres { base, schema, .. } = &self.cleanup {
            let (base, schema) = (base.clone(), schema.clone());
            // Drop runs inside the test's runtime; use a thread with its own.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime.block_on(async {
                    if let Ok(mut conn) = PgConnection::connect(&base).await {
                        let _ = conn
                            .execute(sqlx::AssertSqlSafe(format!(
                                "DROP SCHEMA IF EXISTS {schema} CASCADE"
                            )))
                            .await;
                    }
                });
            })
            .join();
        }
    }
}

/// Declares a test that runs once on SQLite and once on PostgreSQL:
/// `both_backends!(name);` next to `async fn name(backend: Backend)`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if let Some(backend) = $crate::helpers::Backend::postgres() {
                        super::$name(backend).await
                    }
                }
            }
        )*
    };
}
