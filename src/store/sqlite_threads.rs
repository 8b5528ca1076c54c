//! The SQLite threads: the hot path's writes and reads run on connections owned by threads of
//! their own.
//!
//! Through sqlx every statement is a hand-off to the connection's worker thread and back, and
//! every row returned another: a batch of one-trip writes (see [`super::group_commit`]) cost
//! `BEGIN`, a round trip per write and `COMMIT`, each waking two threads. Here the whole batch is
//! one hand-off: the writer thread takes it, runs every write in one transaction (each alone, in a
//! transaction of its own, when one of them fails) and hands back every write's rows at once. The
//! reader thread does the same for the few reads on the path from a message to its reply (see
//! [`super::Store::read_once`]): one hand-off per read, whatever it returns, and none at all
//! while the thread is busy with the reads queued before it.
//!
//! The writer thread's connection is a second writer of the same file. The two never write at
//! once: a batch is handed to the thread only by whoever holds the store's writer lock (the same
//! lock every [`super::Tx`] takes), so the thread never waits for SQLite's write lock except
//! behind a checkpoint. Statements are prepared once and cached, as sqlx caches its own.

use std::{collections::HashMap, ffi::CString, path::Path, sync::Arc};

use rusqlite::{Connection, OpenFlags, types::Value as Sql};
use tokio::sync::oneshot;

use super::{StoreError, Value};
use crate::config::SqliteSynchronous;

/// One write of a batch: statements without their transaction, and their arguments.
pub(super) struct Work {
    pub script: &'static str,
    pub args: Vec<Value>,
}

/// What one write returned: the rows of its statements (only the last returns any).
pub(super) type Written = Result<Vec<OwnedRow>, StoreError>;

struct Batch {
    writes: Vec<Work>,
    done: oneshot::Sender<Vec<Written>>,
}

/// The writer thread's handle. The thread ends (closing its connection) when the handle is
/// dropped.
pub(super) struct WriterThread {
    batches: std::sync::mpsc::Sender<Batch>,
}

/// Opens the database file with the settings of the store's other connections (`settings`
/// first).
fn open(path: &Path, flags: OpenFlags, settings: &str) -> Result<Thread, StoreError> {
    let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(failed)?;
    conn.busy_timeout(super::SQLITE_BUSY_TIMEOUT)
        .map_err(failed)?;
    let mut settings = settings.to_owned();
    for (name, value) in super::SQLITE_PRAGMAS {
        settings.push_str(&format!(" PRAGMA {name} = {value};"));
    }
    conn.execute_batch(&settings).map_err(failed)?;
    conn.set_prepared_statement_cache_capacity(256);
    Ok(Thread {
        conn,
        scripts: HashMap::new(),
    })
}

fn spawn(name: &str, run: impl FnOnce() + Send + 'static) -> Result<(), StoreError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(run)
        .map(drop)
        .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))
}

impl WriterThread {
    /// Opens the database file for writing, with the settings of the store's other connections,
    /// and starts the thread.
    pub fn start(path: &Path, synchronous: SqliteSynchronous) -> Result<WriterThread, StoreError> {
        let synchronous = match synchronous {
            SqliteSynchronous::Normal => "NORMAL",
            SqliteSynchronous::Full => "FULL",
        };
        let mut thread = open(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE,
            &format!(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; \
                 PRAGMA foreign_keys = ON;"
            ),
        )?;
        let (batches, received) = std::sync::mpsc::channel::<Batch>();
        spawn("sqlite-writer", move || {
            for batch in received {
                let results = match thread.together(&batch.writes) {
                    Ok(results) => results,
                    // The transaction as a whole failed (it is rolled back): each write on
                    // its own then gets the answer that is its own.
                    Err(e) => {
                        tracing::debug!(error = %e, "a group commit failed; writing one by one");
                        batch.writes.iter().map(|w| thread.alone(w)).collect()
                    }
                };
                let _ = batch.done.send(results);
            }
        })?;
        Ok(WriterThread { batches })
    }

    /// Runs the writes in one transaction (one by one if a write fails or that transaction
    /// cannot commit) and returns each one's result. Call only while holding
    /// the store's writer lock.
    pub async fn write(&self, writes: Vec<Work>) -> Vec<Written> {
        let n = writes.len();
        let (done, result) = oneshot::channel();
        let sent = self.batches.send(Batch { writes, done });
        match (sent, result.await) {
            (Ok(()), Ok(results)) => results,
            // The thread is gone (it panicked): nothing was written, and nothing will be.
            _ => {
                tracing::error!(
                    "the SQLite writer thread stopped: writes fail until the gateway restarts"
                );
                (0..n)
                    .map(|_| Err(StoreError::Database(sqlx::Error::WorkerCrashed)))
                    .collect()
            }
        }
    }
}

/// One read, and where its rows go.
struct Read {
    query: Work,
    done: oneshot::Sender<Written>,
}

/// The reader thread's handle. The thread ends (closing its connection) when the handle is
/// dropped.
pub(super) struct ReaderThread {
    reads: std::sync::mpsc::Sender<Read>,
}

impl ReaderThread {
    /// Opens the database file for reading only and starts the thread.
    pub fn start(path: &Path) -> Result<ReaderThread, StoreError> {
        let mut thread = open(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY,
            "PRAGMA query_only = ON;",
        )?;
        let (reads, received) = std::sync::mpsc::channel::<Read>();
        spawn("sqlite-reader", move || {
            // Each read is a statement of its own, outside any transaction: it sees what was
            // committed when it began, and holds no snapshot once it is done.
            for read in received {
                let _ = read.done.send(thread.script(&read.query));
            }
        })?;
        Ok(ReaderThread { reads })
    }

    /// Runs a single-statement query and returns its rows.
    pub async fn read(&self, query: Work) -> Written {
        let (done, rows) = oneshot::channel();
        let sent = self.reads.send(Read { query, done });
        match (sent, rows.await) {
            (Ok(()), Ok(rows)) => rows,
            _ => {
                tracing::error!(
                    "the SQLite reader thread stopped: reads fail until the gateway restarts"
                );
                Err(StoreError::Database(sqlx::Error::WorkerCrashed))
            }
        }
    }
}

/// A row a write or a read on a thread returned, with its values owned. Decoding takes each
/// value out of the row (a text column is moved, not copied), so a column is read once.
#[derive(Debug)]
pub struct OwnedRow {
    columns: Arc<[String]>,
    values: Vec<Sql>,
    /// The column the next read most likely asks for: decoders read in the select's order.
    next: usize,
}

/// A value that a row of the SQLite threads can be read as (see [`OwnedRow::get`]).
pub trait FromOwnedValue: Sized {
    /// Converts the column's value; gives it back when it has another type.
    fn from_value(value: Sql) -> Result<Self, Sql>;
}

impl FromOwnedValue for i64 {
    fn from_value(value: Sql) -> Result<Self, Sql> {
        match value {
            Sql::Integer(i) => Ok(i),
            other => Err(other),
        }
    }
}

impl FromOwnedValue for String {
    fn from_value(value: Sql) -> Result<Self, Sql> {
        match value {
            Sql::Text(s) => Ok(s),
            other => Err(other),
        }
    }
}

impl<T: FromOwnedValue> FromOwnedValue for Option<T> {
    fn from_value(value: Sql) -> Result<Self, Sql> {
        match value {
            Sql::Null => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
}

impl OwnedRow {
    /// Takes the column's value out of the row.
    fn take(&mut self, name: &'static str) -> Result<Sql, StoreError> {
        let at = match self.columns.get(self.next) {
            Some(column) if column == name => Some(self.next),
            _ => self.columns.iter().position(|c| c == name),
        };
        let value = at
            .and_then(|i| self.values.get_mut(i).map(|v| (i, v)))
            .map(|(i, v)| {
                self.next = i + 1;
                std::mem::replace(v, Sql::Null)
            });
        value.ok_or_else(|| corrupt(name, "no such column".into()))
    }

    /// The column `name` as a `T`.
    pub fn get<T: FromOwnedValue>(&mut self, name: &'static str) -> Result<T, StoreError> {
        T::from_value(self.take(name)?)
            .map_err(|value| corrupt(name, format!("unexpected value {value:?}")))
    }

    /// The column `name`, text, as a `T` it names (an enum stored as its name, a typed id).
    pub fn parse<T>(&mut self, name: &'static str) -> Result<T, StoreError>
    where
        T: TryFrom<String>,
        T::Error: std::fmt::Display,
    {
        T::try_from(self.get::<String>(name)?).map_err(|e| corrupt(name, e.to_string()))
    }

    /// The column `name`, a JSON document.
    pub fn json<T: serde::de::DeserializeOwned>(
        &mut self,
        name: &'static str,
    ) -> Result<T, StoreError> {
        serde_json::from_str(&self.get::<String>(name)?).map_err(|e| corrupt(name, e.to_string()))
    }

    /// The column `name`, a JSON document or NULL.
    pub fn json_or_null<T: serde::de::DeserializeOwned>(
        &mut self,
        name: &'static str,
    ) -> Result<Option<T>, StoreError> {
        self.get::<Option<String>>(name)?
            .map(|text| serde_json::from_str(&text).map_err(|e| corrupt(name, e.to_string())))
            .transpose()
    }
}

fn corrupt(what: &'static str, message: String) -> StoreError {
    StoreError::Corrupt { what, message }
}

/// A row type that one-trip writes and hot-path reads return on SQLite (see [`OwnedRow`]): the
/// few types they return decode themselves by hand, since sqlx decodes only the rows of its own
/// connections.
pub trait FromOwnedRow: Sized {
    /// Decodes a row, taking its values.
    fn from_owned_row(row: &mut OwnedRow) -> Result<Self, StoreError>;
}

/// An SQLite failure as the rest of the store reports it: a violated UNIQUE constraint must read
/// as one (`StoreError::is_unique_violation`).
fn failed(e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(code, _) = &e
        && matches!(
            code.extended_code,
            rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
        )
    {
        return StoreError::DuplicateRace;
    }
    StoreError::Database(sqlx::Error::Protocol(format!("SQLite: {e}")))
}

/// The thread's side: its connection and the scripts it has split into statements.
struct Thread {
    conn: Connection,
    /// By the script's address and length: each is a constant of the program.
    scripts: HashMap<(usize, usize), Arc<[Statement]>>,
}

/// One statement of a script, with what its text says once for all its runs: which argument
/// each of its parameters takes, and the names of the columns it returns.
struct Statement {
    sql: String,
    /// For the statement's parameter `i + 1`, the index of its argument (`$n` → `n - 1`).
    arguments: Vec<usize>,
    /// Shared by every row it returns; empty when it returns none.
    columns: Arc<[String]>,
}

impl Thread {
    /// Runs a statement without arguments or rows (a transaction's begin and end), prepared once.
    fn run(&self, sql: &str) -> rusqlite::Result<()> {
        self.conn.prepare_cached(sql)?.raw_execute().map(drop)
    }

    fn alone(&mut self, write: &Work) -> Written {
        self.run("BEGIN IMMEDIATE").map_err(failed)?;
        match self.script(write).and_then(|rows| {
            self.run("COMMIT").map_err(failed)?;
            Ok(rows)
        }) {
            Ok(rows) => Ok(rows),
            Err(e) => {
                let _ = self.run("ROLLBACK");
                Err(e)
            }
        }
    }

    /// Every write of the batch in one transaction. `Err` when a write failed or the
    /// transaction could not begin or commit: then nothing of it is kept, and the caller runs
    /// each write alone. (Failures are rare — a resent message — and a savepoint per write, to
    /// undo only the failing one, would copy every page each write touches into SQLite's
    /// statement journal: the largest cost of a batch.)
    fn together(&mut self, writes: &[Work]) -> Result<Vec<Written>, StoreError> {
        if let [only] = writes {
            return Ok(vec![self.alone(only)]);
        }
        self.run("BEGIN IMMEDIATE").map_err(failed)?;
        let mut results = Vec::with_capacity(writes.len());
        for write in writes {
            match self.script(write) {
                Ok(rows) => results.push(Ok(rows)),
                Err(e) => {
                    let _ = self.run("ROLLBACK");
                    return Err(e);
                }
            }
        }
        if let Err(e) = self.run("COMMIT") {
            let _ = self.run("ROLLBACK");
            return Err(failed(e));
        }
        Ok(results)
    }

    /// Runs a write's statements; the rows of those that return any.
    fn script(&mut self, write: &Work) -> Written {
        let statements = self.statements(write.script)?;
        let mut rows = Vec::new();
        for planned in statements.iter() {
            let mut statement = self.conn.prepare_cached(&planned.sql).map_err(failed)?;
            for (index, argument) in planned.arguments.iter().enumerate() {
                let arg = write.args.get(*argument).ok_or_else(|| {
                    corrupt(
                        "statement",
                        format!("parameter {} of {} unbound", index + 1, planned.sql),
                    )
                })?;
                bind(&mut statement, index + 1, arg).map_err(failed)?;
            }
            if planned.columns.is_empty() {
                statement.raw_execute().map_err(failed)?;
                continue;
            }
            let width = planned.columns.len();
            let mut result = statement.raw_query();
            while let Some(row) = result.next().map_err(failed)? {
                let values = (0..width)
                    .map(|i| {
                        row.get_ref(i)
                            .and_then(|v| Sql::try_from(v).map_err(Into::into))
                    })
                    .collect::<Result<Vec<_>, rusqlite::Error>>()
                    .map_err(failed)?;
                rows.push(OwnedRow {
                    columns: planned.columns.clone(),
                    values,
                    next: 0,
                });
            }
        }
        Ok(rows)
    }

    /// A script's statements, split and read once: the scripts are the program's own constants.
    fn statements(&mut self, script: &'static str) -> Result<Arc<[Statement]>, StoreError> {
        let key = (script.as_ptr() as usize, script.len());
        if let Some(statements) = self.scripts.get(&key) {
            return Ok(statements.clone());
        }
        let statements = split(script)?
            .into_iter()
            .map(|sql| self.plan(sql))
            .collect::<Result<Arc<[Statement]>, StoreError>>()?;
        self.scripts.insert(key, statements.clone());
        Ok(statements)
    }

    /// Reads a statement's parameters (each `$n`) and columns off its prepared form.
    fn plan(&self, sql: String) -> Result<Statement, StoreError> {
        let statement = self.conn.prepare_cached(&sql).map_err(failed)?;
        let arguments = (1..=statement.parameter_count())
            .map(|index| {
                statement
                    .parameter_name(index)
                    .and_then(|name| name.strip_prefix('$'))
                    .and_then(|n| n.parse::<usize>().ok())
                    .and_then(|n| n.checked_sub(1))
                    .ok_or_else(|| {
                        corrupt("statement", format!("parameter {index} of {sql} is not $n"))
                    })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let columns = statement
            .column_names()
            .into_iter()
            .map(str::to_owned)
            .collect();
        drop(statement);
        Ok(Statement {
            sql,
            arguments,
            columns,
        })
    }
}

/// Splits a script at the semicolons that end a statement (SQLite's own `sqlite3_complete`
/// tells, so a semicolon within a string or a trigger body does not).
fn split(script: &str) -> Result<Vec<String>, StoreError> {
    let mut statements = Vec::new();
    let mut start = 0;
    for (end, _) in script.match_indices(';') {
        let candidate = &script[start..=end];
        let text = CString::new(candidate).map_err(|e| corrupt("script", e.to_string()))?;
        // SAFETY: `text` is a valid NUL-terminated string that outlives the call.
        if unsafe { rusqlite::ffi::sqlite3_complete(text.as_ptr()) } != 0 {
            let statement = candidate.trim();
            if statement != ";" {
                statements.push(statement.to_owned());
            }
            start = end + 1;
        }
    }
    let rest = script[start..].trim();
    if !rest.is_empty() {
        statements.push(rest.to_owned());
    }
    Ok(statements)
}

fn bind(
    statement: &mut rusqlite::Statement<'_>,
    index: usize,
    value: &Value,
) -> rusqlite::Result<()> {
    match value {
        Value::Int(Some(i)) => statement.raw_bind_parameter(index, i),
        Value::Float(Some(f)) => statement.raw_bind_parameter(index, f),
        Value::Text(Some(s)) => statement.raw_bind_parameter(index, s.as_str()),
        // As sqlx binds a JSON document on SQLite: its text.
        Value::Json(Some(v)) => statement.raw_bind_parameter(index, v.to_string()),
        Value::Int(None) | Value::Float(None) | Value::Text(None) | Value::Json(None) => {
            statement.raw_bind_parameter(index, rusqlite::types::Null)
        }
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::OpenFlags;

    use super::{Work, open, split};
    use crate::store::Value;

    #[test]
    fn each_parameter_takes_its_numbered_argument_on_every_run() {
        let dir = tempfile::tempdir().unwrap();
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE;
        let mut thread = open(&dir.path().join("t.db"), flags, "").unwrap();
        let script = "SELECT $2 AS second, $1 AS first, $2 AS again, $3 AS number";
        for (a, b, n) in [("x", "y", 1), ("p", "q", 2)] {
            let args = vec![
                Value::Text(Some(a.into())),
                Value::Text(Some(b.into())),
                Value::Int(Some(n)),
            ];
            let rows = thread.script(&Work { script, args }).unwrap();
            let [mut row] = <[_; 1]>::try_from(rows).unwrap();
            // Read out of the select's order.
            assert_eq!(row.get::<String>("first").unwrap(), a);
            assert_eq!(row.get::<i64>("number").unwrap(), n);
            assert_eq!(row.get::<String>("second").unwrap(), b);
            assert_eq!(row.get::<String>("again").unwrap(), b);
            // A value is taken out of the row: a second read is an error, not a copy.
            assert!(row.get::<String>("first").is_err());
            assert!(row.get::<String>("missing").is_err());
        }
        // Too few arguments: an error, not a NULL.
        let short = Work {
            script,
            args: vec![Value::Text(Some("a".into()))],
        };
        assert!(thread.script(&short).is_err());
    }

    #[test]
    fn a_script_splits_at_the_ends_of_its_statements_only() {
        let statements = split(
            "INSERT INTO t VALUES ('a;b'); UPDATE t SET x = 1 WHERE y = ';'; \
             SELECT * FROM t;",
        )
        .unwrap();
        assert_eq!(
            statements,
            vec![
                "INSERT INTO t VALUES ('a;b');",
                "UPDATE t SET x = 1 WHERE y = ';';",
                "SELECT * FROM t;"
            ]
        );
        assert_eq!(split("SELECT 1").unwrap(), vec!["SELECT 1"]);
    }
}
