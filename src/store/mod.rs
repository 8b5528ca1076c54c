//! Storage: one API over SQLite and PostgreSQL.
//!
//! The gateway writes its SQL once, with `$1`-style placeholders that both backends understand, and
//! runs it through [`Store`] (reads, single statements) or [`Tx`] (a write transaction). Times are
//! integers ([`crate::time::Timestamp`]) and documents are JSON, so the same statement
//! works on both.
//!
//! SQLite allows one writer at a time. Rather than letting several pooled connections fight over
//! the write lock (and sleep in SQLite's busy handler), every write goes through one dedicated
//! connection behind an async mutex, and reads use a separate pool of read-only connections; in WAL
//! mode readers never wait for the writer. Skipping the pool on the write path also avoids the pool's
//! acquire/release cost, which on SQLite is larger than the statements themselves. The hot path's
//! writes ([`OneTrip`]) are gathered into batches ([`group_commit`]) that a thread owning a
//! second writer connection runs in one go ([`sqlite_threads`]), under the same lock; its reads
//! ([`Store::read_once`]) go to a thread owning a read-only connection.
//!
//! PostgreSQL uses one ordinary pool for both, and concurrent transactions.
//!
//! The queries themselves live next to what they are about: [`contacts`], [`conversations`],
//! [`messages`], [`jobs`], [`media`].

pub mod audit;
pub mod contacts;
pub mod conversations;
pub mod cursors;
pub mod evaluations;
pub mod instances;
pub mod jobs;
pub mod leases;
pub mod media;
pub mod messages;
pub mod meta;
pub mod privacy;
pub mod retention;
pub mod sessions;
pub mod settings;
pub mod signals;
pub mod sql;
pub mod statement;
pub mod threads;
pub mod usage;
pub mod users;

use std::{str::FromStr, sync::Arc, time::Duration};

use serde::Serialize;
use sqlx::{
    Connection, Database, Executor, FromRow, Pool, Postgres, Sqlite, SqliteConnection,
    postgres::{PgPoolOptions, PgRow},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow},
};
use sqlx_core::transaction::TransactionManager;
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::{
    config::{DatabaseConfig, SqliteSynchronous},
    time::Timestamp,
};

/// Which database engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed a statement.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A schema migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A concurrent transaction stored the same unique value first; retrying sees its result.
    #[error("a concurrent transaction stored the same value")]
    DuplicateRace,
    /// A stored document did not have the expected shape.
    #[error("corrupt stored value in {what}: {message}")]
    Corrupt {
        /// Which value.
        what: &'static str,
        /// What was wrong with it.
        message: String,
    },
}

impl StoreError {
    /// Whether the error is a violated UNIQUE constraint (a concurrent duplicate insert).
    pub fn is_unique_violation(&self) -> bool {
        match self {
            StoreError::DuplicateRace => true,
            StoreError::Database(sqlx::Error::Database(e)) => e.is_unique_violation(),
            _ => false,
        }
    }
}

/// A boolean stored as an integer (the same on both backends).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Flag(pub bool);

impl From<i64> for Flag {
    fn from(v: i64) -> Self {
        Flag(v != 0)
    }
}

/// A value bound to a `$n` placeholder.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// An integer (or a null integer).
    Int(Option<i64>),
    /// A floating-point number (or null): REAL on SQLite, DOUBLE PRECISION on PostgreSQL.
    Float(Option<f64>),
    /// Text (or null text).
    Text(Option<String>),
    /// A JSON document (or null): TEXT on SQLite, JSONB on PostgreSQL.
    Json(Option<serde_json::Value>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(Some(v))
    }
}
impl From<Option<i64>> for Value {
    fn from(v: Option<i64>) -> Self {
        Value::Int(v)
    }
}
impl From<Option<f64>> for Value {
    fn from(v: Option<f64>) -> Self {
        Value::Float(v)
    }
}
impl From<Timestamp> for Value {
    fn from(v: Timestamp) -> Self {
        Value::Int(Some(v.micros()))
    }
}
impl From<Option<Timestamp>> for Value {
    fn from(v: Option<Timestamp>) -> Self {
        Value::Int(v.map(Timestamp::micros))
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(Some(v.to_owned()))
    }
}

/// Typed ids bind as their text.
macro_rules! id_values {
    ($($id:ty),*) => {$(
        impl From<$id> for Value {
            fn from(v: $id) -> Self {
                Value::Text(Some(v.into_string()))
            }
        }
        impl From<&$id> for Value {
            fn from(v: &$id) -> Self {
                Value::Text(Some(v.as_str().to_owned()))
            }
        }
        impl From<Option<$id>> for Value {
            fn from(v: Option<$id>) -> Self {
                Value::Text(v.map(|id| id.into_string()))
            }
        }
    )*};
}
id_values!(
    crate::ids::ConversationId,
    crate::ids::MessageId,
    crate::ids::ContactId,
    crate::ids::UserId,
    crate::ids::MediaId,
    crate::ids::JobId
);
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(Some(v))
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(Some(v.clone()))
    }
}
impl From<Option<String>> for Value {
    fn from(v: Option<String>) -> Self {
        Value::Text(v)
    }
}
impl From<Option<&str>> for Value {
    fn from(v: Option<&str>) -> Self {
        Value::Text(v.map(str::to_owned))
    }
}
impl From<serde_json::Value> for Value {
    fn from(v: serde_json::Value) -> Self {
        Value::Json(Some(v))
    }
}

/// One SQL statement and its arguments, runnable on either backend.
#[derive(Debug, Clone)]
#[must_use = "a query does nothing until it is run on a Store or a Tx"]
pub struct Query {
    sql: &'static str,
    args: Vec<Value>,
}

/// Starts a query. Placeholders are `$1`, `$2`, … in the order of the [`Query::bind`] calls.
pub fn query(sql: &'static str) -> Query {
    Query {
        sql,
        args: Vec::new(),
    }
}

impl Query {
    /// Binds the next placeholder.
    pub fn bind(mut self, value: impl Into<Value>) -> Self {
        self.args.push(value.into());
        self
    }
}

/// A write done in a single round trip: on SQLite a script of statements (without `BEGIN` and
/// `COMMIT`: the store runs it in a transaction, alone or beside other writes, see
/// [`group_commit`]), which the writer thread runs in one go ([`sqlite_threads`]); on PostgreSQL
/// a single statement (data-modifying CTEs), atomic by itself. Both texts take the same
/// arguments. Only rows of the script's last statement may be returned; on SQLite the rows'
/// type decodes them by hand ([`FromOwnedRow`]).
///
/// Each round trip crosses to another thread (SQLite) or process (PostgreSQL) and back; for the
/// few writes on the path from a message to its reply, doing them in one trip instead of four or
/// five is what makes the gateway fast (see the performance section of the README).
#[derive(Debug, Clone)]
pub struct OneTrip {
    /// The SQLite script.
    pub sqlite: &'static str,
    /// The PostgreSQL statement.
    pub postgres: &'static str,
    /// Arguments of both.
    pub args: Vec<Value>,
}

impl OneTrip {
    /// A write with its two texts.
    pub fn new(sqlite: &'static str, postgres: &'static str) -> Self {
        Self {
            sqlite,
            postgres,
            args: Vec::new(),
        }
    }

    /// Binds the next placeholder of both texts.
    pub fn bind(mut self, value: impl Into<Value>) -> Self {
        self.args.push(value.into());
        self
    }

    /// The PostgreSQL statement with its arguments, for a write that runs it in a transaction
    /// after statements of its own.
    fn postgres_query(self) -> Query {
        Query {
            sql: self.postgres,
            args: self.args,
        }
    }
}

/// A row type that both backends can decode (derive `sqlx::FromRow`).
pub trait Record:
    for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{
}
impl<T> Record for T where
    T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{
}

macro_rules! bind_all {
    ($query:expr, $args:expr) => {{
        let mut q = $query;
        for arg in $args {
            q = match arg {
                Value::Int(v) => q.bind(*v),
                Value::Float(v) => q.bind(*v),
                Value::Text(v) => q.bind(v.as_deref()),
                Value::Json(v) => q.bind(v.as_ref().map(sqlx::types::Json)),
            };
        }
        q
    }};
}

/// Runs a query on a concrete executor; one body for every (backend, executor) pair.
macro_rules! run {
    (execute, $db:ty, $ex:expr, $q:expr) => {
        bind_all!(sqlx::query::<$db>($q.sql), &$q.args)
            .execute($ex)
            .await
            .map(|r| r.rows_affected())
    };
    ($method:ident, $db:ty, $ex:expr, $q:expr) => {
        bind_all!(sqlx::query_as::<$db, T>($q.sql), &$q.args)
            .$method($ex)
            .await
    };
}

mod group_commit;
pub mod sqlite_threads;
pub use sqlite_threads::{FromOwnedRow, OwnedRow};

/// Runs queries: a write transaction ([`Tx`]) or the read side of the store ([`Reader`]). Helpers
/// that only read take `&mut impl Db`, so they work inside and outside a transaction.
pub trait Db: Send {
    /// Runs a statement and returns the number of rows it changed.
    fn execute(&mut self, q: Query) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Runs a query and decodes every row.
    fn fetch_all<T: Record>(
        &mut self,
        q: Query,
    ) -> impl Future<Output = Result<Vec<T>, StoreError>> + Send;
    /// Runs a query and decodes the first row, if there is one.
    fn fetch_optional<T: Record>(
        &mut self,
        q: Query,
    ) -> impl Future<Output = Result<Option<T>, StoreError>> + Send;
    /// Runs a query that must return a row.
    fn fetch_one<T: Record>(
        &mut self,
        q: Query,
    ) -> impl Future<Output = Result<T, StoreError>> + Send;
}

enum Target<'a> {
    Sqlite(&'a mut SqliteConnection),
    Postgres(&'a mut sqlx::PgConnection),
}

/// A moment's figures of the database connections.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PoolFigures {
    /// Connections running a query or holding a transaction.
    pub in_use: u32,
    /// Open connections waiting for work.
    pub idle: u32,
    /// The most connections the gateway opens.
    pub max: u32,
}

/// The database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
    /// Who this process is among the instances sharing the database: the owner its work in
    /// progress is stored under (see [`instances`]).
    instance: Arc<str>,
}

enum Inner {
    Sqlite {
        writer: Arc<Mutex<SqliteConnection>>,
        /// One-trip writes waiting for the writer, committed together.
        group: Arc<group_commit::Group>,
        /// Runs them, on a connection of its own (see [`sqlite_threads`]).
        thread: Arc<sqlite_threads::WriterThread>,
        /// Runs the hot path's reads ([`Store::read_once`]).
        reader: sqlite_threads::ReaderThread,
        readers: Pool<Sqlite>,
        /// Copies the WAL back into the database file in the background (see [`checkpoints`]).
        checkpointer: tokio_util::sync::CancellationToken,
    },
    Postgres {
        pool: Pool<Postgres>,
    },
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend())
            .finish()
    }
}

/// How long an SQLite connection waits for another one's lock (a checkpoint's) before failing.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The settings of every SQLite connection besides the journal mode, `synchronous`, the busy
/// timeout and foreign keys (which sqlx sets by name).
const SQLITE_PRAGMAS: &[(&str, &str)] = &[
    ("temp_store", "memory"),
    // Commits never checkpoint (and so never wait for an fsync of the database file); a
    // background connection does it.
    ("wal_autocheckpoint", "0"),
    // When the WAL starts over, a file grown larger than this is cut back.
    ("journal_size_limit", "67108864"),
];

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

impl Store {
    /// Connects to the configured database (creating an SQLite file if needed). Does not migrate.
    pub async fn connect(config: &DatabaseConfig) -> Result<Store, StoreError> {
        let inner = if config.url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(&config.url)?;
            keep_private(options.get_filename())?;
            let options = SQLITE_PRAGMAS.iter().fold(
                options
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(match config.sqlite_synchronous {
                        SqliteSynchronous::Normal => sqlx::sqlite::SqliteSynchronous::Normal,
                        SqliteSynchronous::Full => sqlx::sqlite::SqliteSynchronous::Full,
                    })
                    .busy_timeout(SQLITE_BUSY_TIMEOUT)
                    .foreign_keys(true),
                |options, (name, value)| options.pragma(*name, *value),
            );
            let writer = SqliteConnection::connect_with(&options).await?;
            // Opened after the connection above created the file and put it in WAL mode.
            let thread = sqlite_threads::WriterThread::start(
                options.get_filename(),
                config.sqlite_synchronous,
            )?;
            let reader = sqlite_threads::ReaderThread::start(options.get_filename())?;
            let readers = SqlitePoolOptions::new()
                .max_connections(config.sqlite_readers)
                .min_connections(1)
                .connect_with(options.clone().read_only(true))
                .await?;
            let checkpointer = tokio_util::sync::CancellationToken::new();
            let background = SqliteConnection::connect_with(&options).await?;
            let writer = Arc::new(Mutex::new(writer));
            tokio::spawn(checkpoints(
                background,
                writer.clone(),
                checkpointer.clone(),
            ));
            Inner::Sqlite {
                writer,
                group: Arc::default(),
                thread: Arc::new(thread),
                reader,
                readers,
                checkpointer,
            }
        } else {
            let pool = PgPoolOptions::new()
                .max_connections(config.max_connections)
                .acquire_timeout(Duration::from_secs(10))
                .connect(&config.url)
                .await?;
            Inner::Postgres { pool }
        };
        Ok(Store {
            instance: Arc::from(instances::UNNAMED),
            inner: Arc::new(inner),
        })
    }

    /// Brings the schema up to date.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &*self.inner {
            Inner::Sqlite { writer, .. } => {
                let mut conn = writer.lock().await;
                SQLITE_MIGRATIONS.run(&mut *conn).await?;
            }
            Inner::Postgres { pool } => POSTGRES_MIGRATIONS.run(pool).await?,
        }
        Ok(())
    }

    /// The same database, for the instance called `name` (its work in progress is stored as
    /// that instance's).
    pub fn for_instance(self, name: &str) -> Store {
        Store {
            instance: Arc::from(name),
            ..self
        }
    }

    /// The instance this process is among those sharing the database.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The engine behind this store.
    pub fn backend(&self) -> Backend {
        match &*self.inner {
            Inner::Sqlite { .. } => Backend::Sqlite,
            Inner::Postgres { .. } => Backend::Postgres,
        }
    }

    /// Starts a write transaction. On SQLite this waits for the single writer; dropping the
    /// transaction without [`Tx::commit`] rolls it back.
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        let inner = match &*self.inner {
            Inner::Sqlite { writer, .. } => {
                let mut conn = writer.clone().lock_owned().await;
                <Sqlite as Database>::TransactionManager::begin(
                    &mut conn,
                    Some(sqlx::SqlSafeStr::into_sql_str("BEGIN IMMEDIATE")),
                )
                .await?;
                TxInner::Sqlite(Some(conn))
            }
            // Boxed: the pool's acquire future holds a whole connection attempt (14 KB), and
            // every future that begins a transaction would otherwise carry it inline — also on
            // SQLite, and also where it is moved into a task of its own.
            Inner::Postgres { pool } => TxInner::Postgres(Box::pin(pool.begin()).await?),
        };
        Ok(Tx {
            inner,
            instance: self.instance.clone(),
        })
    }

    /// Starts a write transaction that no other instance's transaction of the same `section`
    /// runs beside: decisions made in it (who gets a conversation) cannot race another
    /// process's. On SQLite the single writer already serialises every transaction; on
    /// PostgreSQL a transaction-scoped advisory lock on the section is held until it ends.
    pub async fn begin_serialised(&self, section: Section) -> Result<Tx, StoreError> {
        let mut tx = self.begin().await?;
        if self.backend() == Backend::Postgres {
            tx.execute(query("SELECT pg_advisory_xact_lock($1)").bind(section.key()))
                .await?;
        }
        Ok(tx)
    }

    /// A handle for reads outside a transaction.
    pub fn reader(&self) -> Reader<'_> {
        Reader { store: self }
    }

    /// Runs a write in one round trip to the database, for the hot path (see [`OneTrip`]), and
    /// returns its rows. `after` runs once the write is durable and, on SQLite, before the next
    /// writer commits, like [`Tx::commit_then`]. On SQLite, writes that arrive together are
    /// committed together (see [`group_commit`]).
    pub async fn write_once<T: Record + FromOwnedRow + 'static>(
        &self,
        write: OneTrip,
        after: impl FnOnce(&[T]) + Send + 'static,
    ) -> Result<Vec<T>, StoreError> {
        match &*self.inner {
            Inner::Sqlite {
                writer,
                group,
                thread,
                ..
            } => group_commit::write(writer, thread, group, write.sqlite, write.args, after).await,
            Inner::Postgres { pool } => {
                let q = Query {
                    sql: write.postgres,
                    args: write.args,
                };
                let rows = run!(fetch_all, Postgres, pool, q)?;
                after(&rows);
                Ok(rows)
            }
        }
    }

    /// A read on the path from a message to its reply: on SQLite run by the reader thread (one
    /// hand-off in all, see [`sqlite_threads`]), on PostgreSQL by the pool. Other reads use
    /// [`Store::reader`].
    pub async fn read_once<T: Record + FromOwnedRow>(
        &self,
        q: Query,
    ) -> Result<Vec<T>, StoreError> {
        match &*self.inner {
            Inner::Sqlite { reader, .. } => reader
                .read(sqlite_threads::Work {
                    script: q.sql,
                    args: q.args,
                })
                .await?
                .into_iter()
                .map(|mut row| T::from_owned_row(&mut row))
                .collect(),
            Inner::Postgres { pool } => Ok(run!(fetch_all, Postgres, pool, q)?),
        }
    }

    /// Runs one statement in its own transaction and returns the rows changed.
    pub async fn execute(&self, q: Query) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let n = tx.execute(q).await?;
        tx.commit().await?;
        Ok(n)
    }

    /// The connections of the database, for the metrics.
    pub fn pool_figures(&self) -> PoolFigures {
        match &*self.inner {
            Inner::Sqlite {
                writer, readers, ..
            } => {
                let idle = u32::try_from(readers.num_idle()).unwrap_or(u32::MAX);
                let writing = u32::from(writer.try_lock().is_err());
                // Read without a lock while connections come and go: the figures may disagree
                // for a moment, so no arithmetic here may overflow.
                PoolFigures {
                    in_use: readers.size().saturating_sub(idle).saturating_add(writing),
                    idle: idle.saturating_add(1 - writing),
                    max: readers.options().get_max_connections().saturating_add(1),
                }
            }
            Inner::Postgres { pool } => {
                let idle = u32::try_from(pool.num_idle()).unwrap_or(u32::MAX);
                PoolFigures {
                    in_use: pool.size().saturating_sub(idle),
                    idle,
                    max: pool.options().get_max_connections(),
                }
            }
        }
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let _: (i64,) = self
            .reader()
            .fetch_one(query("SELECT CAST(1 AS BIGINT)"))
            .await?;
        Ok(())
    }

    /// Closes every connection, letting SQLite checkpoint its WAL.
    pub async fn close(&self) {
        match &*self.inner {
            Inner::Sqlite {
                writer,
                readers,
                checkpointer,
                ..
            } => {
                checkpointer.cancel();
                readers.close().await;
                let mut conn = writer.lock().await;
                if let Err(e) = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").await {
                    tracing::warn!(error = %e, "could not checkpoint the SQLite WAL");
                }
            }
            Inner::Postgres { pool } => pool.close().await,
        }
    }
}

/// Creates the SQLite file owner-only before SQLite opens it (SQLite gives its `-wal` and `-shm`
/// files the database file's mode), and tightens files an earlier version left readable by others.
fn keep_private(file: &std::path::Path) -> Result<(), StoreError> {
    let name = file.as_os_str();
    if name.is_empty() || name == ":memory:" {
        return Ok(());
    }
    let failed = |e: std::io::Error| StoreError::Database(sqlx::Error::Io(e));
    crate::private_files::ensure_file(file).map_err(failed)?;
    #[cfg(unix)]
    for suffix in ["-wal", "-shm"] {
        let mut companion = name.to_owned();
        companion.push(suffix);
        let companion = std::path::PathBuf::from(companion);
        if companion.exists() {
            crate::private_files::tighten(&companion, crate::private_files::FILE_MODE)
                .map_err(failed)?;
        }
    }
    Ok(())
}

/// How often the background connection copies the WAL into the database file.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(500);

/// A WAL longer than this many pages (4 KiB each) after a passive checkpoint is checkpointed
/// once more with the writer held, so that it starts again from its beginning.
const RESTART_OVER_PAGES: i64 = 4_096;

/// Checkpoints the SQLite WAL from a connection of its own, until cancelled.
///
/// By default SQLite checkpoints inside the commit that fills the WAL past 1,000 pages, and that
/// commit then waits for the database file to be written and synced: a latency spike of several
/// milliseconds every few hundred commits, on the path from a message to its reply. A passive
/// checkpoint from another connection does the same work beside the writer, without its lock.
///
/// But under a steady stream of commits a passive checkpoint never catches up with the last
/// one, and SQLite only starts the WAL over once everything in it is copied: the file then grows
/// without end (2 GB in 20 seconds of benchmark load), every commit extends it (the kernel
/// zeroes each new page) and readers search an ever larger index. So when a passive
/// checkpoint leaves more than [`RESTART_OVER_PAGES`] behind, the rest (little, since the passive
/// one copied most) is copied with the writer held, and the checkpoint waits for readers to leave
/// the WAL: the next commit writes it from the start again.
async fn checkpoints(
    mut conn: SqliteConnection,
    writer: Arc<Mutex<SqliteConnection>>,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(CHECKPOINT_INTERVAL) => {}
        }
        let passive: Result<(i64, i64, i64), _> = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&mut conn)
            .await;
        match passive {
            Ok((_, pages, _)) if pages > RESTART_OVER_PAGES => {
                let _writing = writer.lock().await;
                if let Err(e) = conn.execute("PRAGMA wal_checkpoint(RESTART)").await {
                    tracing::warn!(error = %e, "background WAL checkpoint failed");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "background WAL checkpoint failed"),
        }
    }
    let _ = conn.close().await;
}

/// What a serialised transaction ([`Store::begin_serialised`]) excludes others from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// Assigning conversations to experts.
    Assignment,
    /// Taking over the work of instances that stopped (see [`instances::take_over`]).
    TakeOver,
}

impl Section {
    /// The advisory lock's key on PostgreSQL; unique per section.
    const fn key(self) -> i64 {
        match self {
            Section::Assignment => 72_010_001,
            Section::TakeOver => 72_010_002,
        }
    }
}

/// Reads outside a transaction: the read-only pool on SQLite, the pool on PostgreSQL. Its
/// [`Db::execute`] runs the statement in a transaction of its own.
pub struct Reader<'a> {
    store: &'a Store,
}

impl Db for Reader<'_> {
    async fn execute(&mut self, q: Query) -> Result<u64, StoreError> {
        self.store.execute(q).await
    }

    async fn fetch_all<T: Record>(&mut self, q: Query) -> Result<Vec<T>, StoreError> {
        Ok(match &*self.store.inner {
            Inner::Sqlite { readers, .. } => run!(fetch_all, Sqlite, readers, q)?,
            Inner::Postgres { pool } => run!(fetch_all, Postgres, pool, q)?,
        })
    }

    async fn fetch_optional<T: Record>(&mut self, q: Query) -> Result<Option<T>, StoreError> {
        Ok(match &*self.store.inner {
            Inner::Sqlite { readers, .. } => run!(fetch_optional, Sqlite, readers, q)?,
            Inner::Postgres { pool } => run!(fetch_optional, Postgres, pool, q)?,
        })
    }

    async fn fetch_one<T: Record>(&mut self, q: Query) -> Result<T, StoreError> {
        Ok(match &*self.store.inner {
            Inner::Sqlite { readers, .. } => run!(fetch_one, Sqlite, readers, q)?,
            Inner::Postgres { pool } => run!(fetch_one, Postgres, pool, q)?,
        })
    }
}

/// A write transaction. Dropped without [`Tx::commit`], it rolls back.
pub struct Tx {
    inner: TxInner,
    /// The instance whose work the transaction stores (see [`Store::instance`]).
    instance: Arc<str>,
}

enum TxInner {
    /// `None` once committed.
    Sqlite(Option<OwnedMutexGuard<SqliteConnection>>),
    Postgres(sqlx::Transaction<'static, Postgres>),
}

impl Tx {
    /// The instance this transaction's work in progress belongs to.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The engine the transaction runs on, for the few statements whose text differs.
    pub fn backend(&self) -> Backend {
        match &self.inner {
            TxInner::Sqlite(_) => Backend::Sqlite,
            TxInner::Postgres(_) => Backend::Postgres,
        }
    }

    fn target(&mut self) -> Target<'_> {
        match &mut self.inner {
            TxInner::Sqlite(Some(conn)) => Target::Sqlite(conn),
            TxInner::Sqlite(None) => unreachable!("a committed transaction is consumed"),
            TxInner::Postgres(tx) => Target::Postgres(tx),
        }
    }

    /// Makes the transaction's writes durable.
    pub async fn commit(self) -> Result<(), StoreError> {
        self.commit_then(|| ()).await
    }

    /// Commits, then runs `after` before another writer can commit. On SQLite, whose writes are
    /// serialised, things published by `after` (live events) therefore appear in commit order.
    /// PostgreSQL commits concurrently; there `after` simply runs after the commit.
    pub async fn commit_then<R>(mut self, after: impl FnOnce() -> R) -> Result<R, StoreError> {
        match &mut self.inner {
            TxInner::Sqlite(conn) => {
                if let Some(mut conn) = conn.take() {
                    let result = <Sqlite as Database>::TransactionManager::commit(&mut conn).await;
                    if result.is_err() {
                        // A failed COMMIT leaves the transaction open; undo it before the next
                        // writer gets the connection.
                        <Sqlite as Database>::TransactionManager::start_rollback(&mut conn);
                    }
                    result?;
                    // `conn` (the writer lock) is released only after `after` ran.
                    return Ok(after());
                }
                unreachable!("a committed transaction is consumed")
            }
            TxInner::Postgres(_) => {
                let TxInner::Postgres(tx) =
                    std::mem::replace(&mut self.inner, TxInner::Sqlite(None))
                else {
                    unreachable!()
                };
                tx.commit().await?;
                Ok(after())
            }
        }
    }
}

impl Db for Tx {
    async fn execute(&mut self, q: Query) -> Result<u64, StoreError> {
        Ok(match self.target() {
            Target::Sqlite(c) => run!(execute, Sqlite, c, q)?,
            Target::Postgres(c) => run!(execute, Postgres, c, q)?,
        })
    }

    async fn fetch_all<T: Record>(&mut self, q: Query) -> Result<Vec<T>, StoreError> {
        Ok(match self.target() {
            Target::Sqlite(c) => run!(fetch_all, Sqlite, c, q)?,
            Target::Postgres(c) => run!(fetch_all, Postgres, c, q)?,
        })
    }

    async fn fetch_optional<T: Record>(&mut self, q: Query) -> Result<Option<T>, StoreError> {
        Ok(match self.target() {
            Target::Sqlite(c) => run!(fetch_optional, Sqlite, c, q)?,
            Target::Postgres(c) => run!(fetch_optional, Postgres, c, q)?,
        })
    }

    async fn fetch_one<T: Record>(&mut self, q: Query) -> Result<T, StoreError> {
        Ok(match self.target() {
            Target::Sqlite(c) => run!(fetch_one, Sqlite, c, q)?,
            Target::Postgres(c) => run!(fetch_one, Postgres, c, q)?,
        })
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        if let TxInner::Sqlite(Some(conn)) = &mut self.inner {
            // Queues a ROLLBACK that runs before anything else on the connection.
            <Sqlite as Database>::TransactionManager::start_rollback(conn);
        }
    }
}

/// Decodes a JSON document stored in a column.
pub fn from_json<T: serde::de::DeserializeOwned>(
    what: &'static str,
    value: serde_json::Value,
) -> Result<T, StoreError> {
    serde_json::from_value(value).map_err(|e| StoreError::Corrupt {
        what,
        message: e.to_string(),
    })
}
