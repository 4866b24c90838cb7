//! The embedded SQLite store.
//!
//! ```text
//!  handlers ──write(job)──▶ [channel] ──▶ writer thread: BEGIN; job₁ … jobₙ as they come; COMMIT
//!     ▲                                       │ ▲ the committed group      (commits when the last fsync is done)
//!     │                                       ▼ │ synced
//!     └────────────── oneshot ◀──────── fsync thread: syncs the WAL file, then replies to the group
//!  handlers ──read(job)──▶ blocking pool thread with a reader connection (WAL: readers never wait on the writer)
//! ```
//!
//! One writer keeps SQLite's single-writer rule explicit and batches concurrent writes into one transaction
//! and one fsync; a write is acknowledged only once its transaction committed and the WAL file holding it was
//! synced. While one group's fsync runs, the writer already runs the writes that arrive into the next group's
//! transaction, and commits it once the fsync is done (see `Flusher`). Between writes it fills the
//! trigram index of span content, oldest spans first and within a budget (`IndexingBudget`), so
//! indexing never sits between a write and its acknowledgement.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mlflow_tracing_core::codec::rest_span::span_to_rest_text;
use mlflow_tracing_core::{
    Assessment, Span, SpanStatusCode, TraceId, TraceInfo, TraceLocation, TraceState, keys,
};
use rusqlite::functions::FunctionFlags;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, params};

use rusqlite::types::Value as SqlValue;

use super::{
    DeleteTraces, Experiment, ExperimentTraceStats, Page, SpanOutline, Store, StoreError,
    StoreResult, TraceEnd, TraceQuery,
};
use crate::search::{Comparator, Condition, Field, Literal, OrderBy};

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/sqlite/0001_init.sql")),
    (
        2,
        include_str!("../../migrations/sqlite/0002_assessments.sql"),
    ),
    (
        3,
        include_str!("../../migrations/sqlite/0003_append_ordered_spans.sql"),
    ),
    (
        4,
        include_str!("../../migrations/sqlite/0004_tag_value_indexes.sql"),
    ),
    (
        5,
        include_str!("../../migrations/sqlite/0005_span_text_index.sql"),
    ),
    (
        6,
        include_str!("../../migrations/sqlite/0006_span_text_off_the_write_path.sql"),
    ),
    (
        7,
        include_str!("../../migrations/sqlite/0007_integer_keys.sql"),
    ),
    (
        8,
        include_str!("../../migrations/sqlite/0008_stale_span_listed_once.sql"),
    ),
    (
        9,
        include_str!("../../migrations/sqlite/0009_entries_by_trace_key.sql"),
    ),
    (
        10,
        include_str!("../../migrations/sqlite/0010_time_index_ascending.sql"),
    ),
];
/// Writes committed together at most.
const MAX_GROUP: usize = 256;

/// A write waiting for the writer thread. It may run twice: a group runs its jobs without savepoints and,
/// when one fails, is rolled back and run again with each job in its own savepoint.
trait Job: Send {
    /// Runs the job's statements and keeps its result; whether it succeeded.
    fn run(&mut self, connection: &Connection) -> bool;
    /// Replies with the kept result, or the error if the transaction did not commit.
    fn reply(self: Box<Self>, committed: StoreResult<()>);
}

type WriteJob = Box<dyn Job>;

struct PendingWrite<T, F> {
    work: F,
    result: Option<StoreResult<T>>,
    reply: tokio::sync::oneshot::Sender<StoreResult<T>>,
}

impl<T, F> Job for PendingWrite<T, F>
where
    T: Send,
    F: FnMut(&Connection) -> StoreResult<T> + Send,
{
    fn run(&mut self, connection: &Connection) -> bool {
        let result = (self.work)(connection);
        let succeeded = result.is_ok();
        self.result = Some(result);
        succeeded
    }

    fn reply(self: Box<Self>, committed: StoreResult<()>) {
        let result = self
            .result
            .unwrap_or_else(|| Err(StoreError::internal("the write did not run")));
        let _ = self.reply.send(committed.and(result));
    }
}

/// What the writer thread receives.
enum ToWriter {
    Job(WriteJob),
    /// The fsync thread synced every group committed so far.
    Synced,
    /// The last handle to the store was dropped.
    Stop,
}

/// The store's handle on the writer thread; the last one dropped stops the thread once it has committed what
/// it holds.
struct WriterHandle(Sender<ToWriter>);

impl Drop for WriterHandle {
    fn drop(&mut self) {
        let _ = self.0.send(ToWriter::Stop);
    }
}

/// The SQLite store. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    writer: Arc<WriterHandle>,
    readers: Arc<Mutex<Vec<Connection>>>,
    path: Arc<PathBuf>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn sql_error(error: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(failure, _) = &error {
        if failure.code == rusqlite::ErrorCode::ConstraintViolation {
            return StoreError::conflict(format!("constraint violated: {error}"));
        }
    }
    StoreError::internal(format!("sqlite: {error}"))
}

/// Page cache of the writer (KiB): the pages every insert touches stay in memory between commits. A larger
/// cache gains no ingest speed: at each COMMIT after a page split SQLite walks the whole cache (at 32 MiB a
/// tenth of the writer's time), and the leaves random trace ids hit miss any cache once the store is large.
const WRITER_CACHE_KIB: i64 = 8 * 1024;
/// WAL pages after which a commit checkpoints (SQLite's default is 1,000). A checkpoint copies each page
/// changed since the last one once, however often it changed, so the last pages of the span table and the
/// index leaves many traces hit are copied once per 40 MB of WAL instead of once per 4 MB. In the same run,
/// ingest with 50 traces per request went from 43,300 to 52,900 spans/s; each checkpoint stalls writes longer.
const WAL_CHECKPOINT_PAGES: i64 = 10_000;
/// Size the WAL file is cut back to when it restarts: a large transaction (a migration) or a long read
/// can make it grow far past the checkpoint interval.
const WAL_SIZE_LIMIT_BYTES: i64 = 64 * 1024 * 1024;
/// Page cache of each reader (KiB); reads also go through a shared memory map of the file.
const READER_CACHE_KIB: i64 = 8 * 1024;

/// `text REGEXP pattern` for RLIKE: true when the pattern matches anywhere in the text (NULL text never
/// matches). Each statement compiles its pattern once.
fn add_regexp_function(connection: &Connection) -> StoreResult<()> {
    connection
        .create_scalar_function(
            "regexp",
            2,
            FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
            |context| {
                let pattern = context.get_or_create_aux(
                    0,
                    |value| -> Result<regex::Regex, Box<dyn std::error::Error + Send + Sync>> {
                        Ok(regex::Regex::new(value.as_str()?)?)
                    },
                )?;
                Ok(match context.get_raw(1) {
                    ValueRef::Text(text) => pattern.is_match(&String::from_utf8_lossy(text)),
                    ValueRef::Integer(number) => pattern.is_match(&number.to_string()),
                    ValueRef::Real(number) => pattern.is_match(&number.to_string()),
                    _ => false,
                })
            },
        )
        .map_err(sql_error)
}

/// Memory map of each reader (bytes).
const READER_MMAP_BYTES: i64 = 128 * 1024 * 1024;

fn configure(connection: &Connection, cache_kib: i64, mmap_bytes: i64) -> StoreResult<()> {
    add_regexp_function(connection)?;
    connection
        .execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
             PRAGMA busy_timeout = 10000; PRAGMA case_sensitive_like = ON; \
             PRAGMA cache_size = -{cache_kib}; PRAGMA mmap_size = {mmap_bytes}; PRAGMA temp_store = MEMORY;"
        ))
        .map_err(sql_error)
}

/// Applies the migrations not applied yet, each in its own transaction, with foreign keys off: a migration
/// that rebuilds a table drops the old one, which must not cascade to the rows that refer to it. Each
/// migration must leave every reference valid; it is rolled back otherwise.
fn migrate(connection: &mut Connection) -> StoreResult<()> {
    connection
        .execute_batch(
            "PRAGMA foreign_keys = OFF; \
             CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)",
        )
        .map_err(sql_error)?;
    let applied = apply_migrations(connection, MIGRATIONS);
    connection
        .execute_batch("PRAGMA foreign_keys = ON")
        .map_err(sql_error)?;
    applied
}

fn apply_migrations(connection: &mut Connection, migrations: &[(i64, &str)]) -> StoreResult<()> {
    for (version, sql) in migrations {
        let applied: Option<i64> = connection
            .query_row(
                "SELECT version FROM schema_migrations WHERE version = ?1",
                [version],
                |row| row.get(0),
            )
            .optional()
            .map_err(sql_error)?;
        if applied.is_some() {
            continue;
        }
        let transaction = connection.transaction().map_err(sql_error)?;
        transaction.execute_batch(sql).map_err(sql_error)?;
        let broken: Option<String> = transaction
            .query_row("PRAGMA foreign_key_check", [], |row| row.get(0))
            .optional()
            .map_err(sql_error)?;
        if let Some(table) = broken {
            return Err(StoreError::internal(format!(
                "migration {version} left rows of {table} referring to missing rows"
            )));
        }
        transaction
            .execute(
                "INSERT INTO schema_migrations (version) VALUES (?1)",
                [version],
            )
            .map_err(sql_error)?;
        transaction.commit().map_err(sql_error)?;
        // A migration that rebuilds a table leaves the old one's pages free: reused by later writes, but
        // the file keeps its size until a VACUUM.
        let free_mib: i64 = connection
            .query_row(
                "SELECT freelist_count * page_size / 1048576 FROM pragma_freelist_count, pragma_page_size",
                [],
                |row| row.get(0),
            )
            .map_err(sql_error)?;
        log::info!(version = *version, free_mib; "applied SQLite migration");
        if free_mib >= LARGE_FREE_MIB {
            log::info!(
                free_mib;
                "the database file has free pages that new data will reuse; `VACUUM` (with the server stopped) returns them to the file system"
            );
        }
    }
    Ok(())
}

/// Free space after a migration worth telling the user about.
const LARGE_FREE_MIB: i64 = 64;

impl SqliteStore {
    /// Opens (creating if needed) the database file and migrates it.
    pub fn open(path: &Path) -> StoreResult<SqliteStore> {
        let mut connection = Connection::open(path).map_err(sql_error)?;
        // The writer reads through its page cache only: mapped pages it touches would count in the server's
        // resident memory (peak under ingest 146 MB mapped, 46 MB without) and writes gain nothing from them.
        configure(&connection, WRITER_CACHE_KIB, 0)?;
        connection
            .execute_batch(&format!(
                "PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}; \
                 PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES}"
            ))
            .map_err(sql_error)?;
        migrate(&mut connection)?;
        let (writer, messages) = mpsc::channel::<ToWriter>();
        let flusher = Flusher::start(&connection, path, writer.clone())?;
        std::thread::Builder::new()
            .name("mlflow-sqlite-writer".into())
            .spawn(move || run_writer(connection, messages, flusher))
            .map_err(|error| {
                StoreError::internal(format!("could not start the writer thread: {error}"))
            })?;
        Ok(SqliteStore {
            writer: Arc::new(WriterHandle(writer)),
            readers: Arc::new(Mutex::new(Vec::new())),
            path: Arc::new(path.to_owned()),
        })
    }

    async fn write<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: WriteJob = Box::new(PendingWrite {
            work,
            result: None,
            reply,
        });
        self.writer
            .0
            .send(ToWriter::Job(job))
            .map_err(|_| StoreError::internal("the SQLite writer thread has stopped"))?;
        answer
            .await
            .map_err(|_| StoreError::internal("the SQLite writer thread dropped a write"))?
    }

    async fn read<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let readers = Arc::clone(&self.readers);
        let path = Arc::clone(&self.path);
        tokio::task::spawn_blocking(move || {
            let pooled = readers
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .pop();
            let connection = match pooled {
                Some(connection) => connection,
                None => {
                    let connection = Connection::open(&*path).map_err(sql_error)?;
                    configure(&connection, READER_CACHE_KIB, READER_MMAP_BYTES)?;
                    connection
                }
            };
            let result = work(&connection);
            readers
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(connection);
            result
        })
        .await
        .map_err(|error| StoreError::internal(format!("read task failed: {error}")))?
    }
}

/// Where committed groups wait for their fsync before their replies. In WAL mode a commit is durable once the
/// WAL file holding its frames is synced, and that is all `synchronous = FULL` adds to `NORMAL` there
/// (`NORMAL` still syncs the WAL before each checkpoint and its header when it restarts, and it restarts
/// only after a checkpoint that synced both files). So the writer commits with `NORMAL` and a thread syncs
/// the WAL file through its own descriptor, then replies: meanwhile the writer runs the writes that arrive
/// into the next transaction, which it commits once told the fsync is done, so groups stay as large as when
/// the writer waited on the fsync itself. Readers may see a group before it is acknowledged; nothing is
/// acknowledged before it is durable. Outside WAL mode the writer commits with `FULL` and replies itself.
enum Flusher {
    Thread(Sender<Committed>),
    Inline,
}

/// A group whose transaction has ended, with its outcome.
struct Committed {
    group: Vec<WriteJob>,
    outcome: StoreResult<()>,
}

impl Flusher {
    fn start(
        connection: &Connection,
        path: &Path,
        writer: Sender<ToWriter>,
    ) -> StoreResult<Flusher> {
        let mode: String = connection
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .map_err(sql_error)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Ok(Flusher::Inline);
        }
        let mut wal_path = path.as_os_str().to_owned();
        wal_path.push("-wal");
        let wal_path = PathBuf::from(wal_path);
        let wal = std::fs::File::open(&wal_path)
            .and_then(|wal| {
                // The migration's writes created the file; its directory entry must be durable too.
                wal.sync_all()?;
                let directory = match wal_path.parent() {
                    Some(directory) if !directory.as_os_str().is_empty() => directory,
                    _ => Path::new("."),
                };
                std::fs::File::open(directory)?.sync_all()?;
                Ok(wal)
            })
            .map_err(|error| {
                StoreError::internal(format!(
                    "could not open the WAL file {}: {error}",
                    wal_path.display()
                ))
            })?;
        connection
            .execute_batch("PRAGMA synchronous = NORMAL")
            .map_err(sql_error)?;
        let (flusher, committed) = mpsc::channel::<Committed>();
        std::thread::Builder::new()
            .name("mlflow-sqlite-fsync".into())
            .spawn(move || run_flusher(&wal, &committed, &writer))
            .map_err(|error| {
                StoreError::internal(format!("could not start the fsync thread: {error}"))
            })?;
        Ok(Flusher::Thread(flusher))
    }

    /// The `synchronous` level the writer's connection commits with.
    fn commit_level(&self) -> &'static str {
        match self {
            Flusher::Thread(_) => "NORMAL",
            Flusher::Inline => "FULL",
        }
    }

    /// Hands a finished group on; true when its fsync is pending (the writer then holds its next commit until
    /// it hears [`ToWriter::Synced`]).
    fn finish(&self, committed: Committed) -> bool {
        match self {
            Flusher::Thread(flusher) => match flusher.send(committed) {
                Ok(()) => true,
                Err(mpsc::SendError(committed)) => {
                    let outcome = committed.outcome.and(Err(StoreError::internal(
                        "the SQLite fsync thread has stopped; the write may not be durable",
                    )));
                    reply_all(committed.group, &outcome);
                    false
                }
            },
            Flusher::Inline => {
                reply_all(committed.group, &committed.outcome);
                false
            }
        }
    }
}

fn reply_all(group: Vec<WriteJob>, outcome: &StoreResult<()>) {
    for job in group {
        job.reply(outcome.clone());
    }
}

/// Syncs the WAL file once for all the groups waiting, replies to them, and tells the writer.
fn run_flusher(wal: &std::fs::File, committed: &Receiver<Committed>, writer: &Sender<ToWriter>) {
    while let Ok(first) = committed.recv() {
        let mut waiting = vec![first];
        waiting.extend(committed.try_iter());
        let synced = if waiting.iter().any(|done| done.outcome.is_ok()) {
            wal.sync_data().map_err(|error| {
                StoreError::internal(format!(
                    "committed, but the WAL file could not be synced: {error}"
                ))
            })
        } else {
            Ok(())
        };
        for done in waiting {
            reply_all(done.group, &done.outcome.and(synced.clone()));
        }
        // The writer may be gone already (shutting down); its last group is answered all the same.
        let _ = writer.send(ToWriter::Synced);
    }
}

fn run_writer(connection: Connection, messages: Receiver<ToWriter>, flusher: Flusher) {
    // Whether spans may be waiting for the text index, which is filled only while no write waits.
    let mut text_backlog = true;
    let mut budget = IndexingBudget::new(Instant::now());
    // The transaction being filled, and whether the last committed group still waits for its fsync.
    let mut open: Option<OpenGroup> = None;
    let mut syncing = false;
    let mut stopping = false;
    loop {
        let message = if stopping {
            match open {
                // Nothing may wait any longer for a fsync that is not coming.
                Some(_) => None,
                None => break,
            }
        } else if open.is_some() || syncing || !text_backlog {
            match messages.recv() {
                Ok(message) => Some(message),
                Err(_) => break,
            }
        } else {
            match messages.try_recv() {
                Ok(message) => Some(message),
                Err(mpsc::TryRecvError::Empty) => match budget.wait_before_indexing(Instant::now())
                {
                    None => {
                        let started = Instant::now();
                        text_backlog = index_span_text(&connection, flusher.commit_level());
                        budget.spend(started.elapsed());
                        continue;
                    }
                    Some(wait) => match messages.recv_timeout(wait) {
                        Ok(message) => Some(message),
                        Err(mpsc::RecvTimeoutError::Timeout) => continue,
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    },
                },
                Err(mpsc::TryRecvError::Disconnected) => break,
            }
        };
        // Take everything already waiting, running each write as it is taken.
        let mut next = message;
        while let Some(message) = next {
            match message {
                ToWriter::Job(job) => match &mut open {
                    Some(group) => group.add(&connection, job),
                    None => open = OpenGroup::begin(&connection, job),
                },
                ToWriter::Synced => syncing = false,
                ToWriter::Stop => stopping = true,
            }
            let full = open.as_ref().is_some_and(OpenGroup::is_full);
            next = if full { None } else { messages.try_recv().ok() };
        }
        let Some(group) = open.take_if(|group| !syncing || stopping || group.must_close()) else {
            continue;
        };
        let committed = group.close(&connection);
        syncing = flusher.finish(committed);
        budget.wrote(Instant::now());
        text_backlog = true;
    }
}

/// Writes run in one transaction, as they arrive, until it commits.
struct OpenGroup {
    jobs: Vec<WriteJob>,
    /// A job failed: the others run again in savepoints when the group closes.
    failed: bool,
}

impl OpenGroup {
    /// Begins a transaction with `first`; if the transaction cannot begin, replies with the error.
    fn begin(connection: &Connection, first: WriteJob) -> Option<OpenGroup> {
        if let Err(error) = connection.execute_batch("BEGIN IMMEDIATE") {
            first.reply(Err(sql_error(error)));
            return None;
        }
        let mut group = OpenGroup {
            jobs: Vec::new(),
            failed: false,
        };
        group.add(connection, first);
        Some(group)
    }

    fn add(&mut self, connection: &Connection, mut job: WriteJob) {
        // After a failure the transaction is rolled back at close; later jobs run only then.
        if !self.failed {
            self.failed = !job.run(connection);
        }
        self.jobs.push(job);
    }

    fn is_full(&self) -> bool {
        self.jobs.len() >= MAX_GROUP
    }

    /// Whether the group must commit now rather than wait for the last fsync.
    fn must_close(&self) -> bool {
        self.failed || self.is_full()
    }

    /// Commits the jobs. Jobs run straight in the transaction: a savepoint per job would copy every page a
    /// job touches first (a fifth of ingest with 50 traces per request). If a job failed, the transaction is
    /// rolled back and the group runs again with each job in a savepoint, so the failing job's changes alone
    /// are undone and the others commit.
    fn close(self, connection: &Connection) -> Committed {
        let OpenGroup { mut jobs, failed } = self;
        let outcome = if !failed {
            commit(connection)
        } else {
            // A lone job that failed needs no second run: the rollback undid it and its error is its reply.
            connection
                .execute_batch("ROLLBACK")
                .map_err(sql_error)
                .and_then(|()| {
                    if jobs.len() == 1 {
                        Ok(())
                    } else {
                        commit_in_savepoints(connection, &mut jobs)
                    }
                })
        };
        Committed {
            group: jobs,
            outcome,
        }
    }
}

/// How much of the writer's time text indexing may take while writes keep coming: a token bucket filled at
/// [`INDEXING_SHARE`] of the time that passes, so a steady ingest loses at most that share of the writer to
/// the index. Once no write has come for [`INDEXING_IDLE`], indexing runs freely.
struct IndexingBudget {
    /// Seconds of indexing allowed now; negative after a round that overran.
    seconds: f64,
    refilled: Instant,
    last_write: Instant,
}

const INDEXING_SHARE: f64 = 0.1;
const INDEXING_IDLE: Duration = Duration::from_millis(200);
const INDEXING_BURST_SECONDS: f64 = 0.05;

impl IndexingBudget {
    fn new(now: Instant) -> Self {
        IndexingBudget {
            seconds: INDEXING_BURST_SECONDS,
            refilled: now,
            last_write: now,
        }
    }

    /// None when a round of indexing may run now, else how long to wait for a write before asking again.
    fn wait_before_indexing(&mut self, now: Instant) -> Option<Duration> {
        self.seconds = (self.seconds
            + now.duration_since(self.refilled).as_secs_f64() * INDEXING_SHARE)
            .min(INDEXING_BURST_SECONDS);
        self.refilled = now;
        let quiet = now.duration_since(self.last_write);
        if self.seconds > 0.0 || quiet >= INDEXING_IDLE {
            return None;
        }
        let refilled_in = Duration::from_secs_f64(-self.seconds / INDEXING_SHARE);
        Some(refilled_in.min(INDEXING_IDLE - quiet))
    }

    fn spend(&mut self, spent: Duration) {
        self.seconds -= spent.as_secs_f64();
    }

    fn wrote(&mut self, now: Instant) {
        self.last_write = now;
    }
}

/// Spans added to the text index per statement.
const TEXT_INDEX_STEP: i64 = 32;
/// Longest a round of text indexing holds the writer, so a write that arrives meanwhile waits little.
const TEXT_INDEX_ROUND: Duration = Duration::from_millis(3);

/// Re-indexes spans whose content changed after they were indexed, then adds the oldest spans not yet in
/// the text index, for about [`TEXT_INDEX_ROUND`], in one transaction. Returns whether work remains. A
/// failure is logged and ends the backlog until the next write.
fn index_span_text(connection: &Connection, commit_level: &str) -> bool {
    let round = || -> StoreResult<bool> {
        let started = Instant::now();
        let (newest, mut through, stale): (i64, i64, bool) = connection
            .query_row(
                "SELECT (SELECT COALESCE(MAX(rowid), 0) FROM spans), \
                 (SELECT indexed_through FROM span_text_progress), \
                 EXISTS (SELECT 1 FROM span_text_stale)",
                [],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .map_err(sql_error)?;
        if through >= newest && !stale {
            return Ok(false);
        }
        // The index needs no fsync of its own: a round lost to a crash is redone from the mark, which it
        // commits atomically, and the next acknowledged write's fsync covers it anyway.
        connection
            .execute_batch("PRAGMA synchronous = NORMAL; BEGIN IMMEDIATE")
            .map_err(sql_error)?;
        let filled = (|| -> StoreResult<bool> {
            let mut stale_left = stale;
            while stale_left && started.elapsed() < TEXT_INDEX_ROUND {
                let rows: Vec<i64> = connection
                    .prepare_cached("SELECT span_rowid FROM span_text_stale LIMIT ?1")
                    .map_err(sql_error)?
                    .query_map([TEXT_INDEX_STEP], |row| row.get(0))
                    .map_err(sql_error)?
                    .collect::<Result<_, _>>()
                    .map_err(sql_error)?;
                for rowid in &rows {
                    connection
                        .prepare_cached("DELETE FROM span_text WHERE rowid = ?1")
                        .map_err(sql_error)?
                        .execute([rowid])
                        .map_err(sql_error)?;
                    connection
                        .prepare_cached(
                            "INSERT INTO span_text (rowid, content) SELECT rowid, content FROM spans WHERE rowid = ?1",
                        )
                        .map_err(sql_error)?
                        .execute([rowid])
                        .map_err(sql_error)?;
                    connection
                        .prepare_cached("DELETE FROM span_text_stale WHERE span_rowid = ?1")
                        .map_err(sql_error)?
                        .execute([rowid])
                        .map_err(sql_error)?;
                }
                stale_left = rows.len() as i64 == TEXT_INDEX_STEP;
            }
            while !stale_left && through < newest && started.elapsed() < TEXT_INDEX_ROUND {
                let last: i64 = connection
                    .prepare_cached(
                        "SELECT COALESCE(MAX(rowid), ?1) FROM \
                         (SELECT rowid FROM spans WHERE rowid > ?1 ORDER BY rowid LIMIT ?2)",
                    )
                    .map_err(sql_error)?
                    .query_row(params![through, TEXT_INDEX_STEP], |row| row.get(0))
                    .map_err(sql_error)?;
                connection
                    .prepare_cached(
                        "INSERT INTO span_text (rowid, content) \
                         SELECT rowid, content FROM spans WHERE rowid > ?1 AND rowid <= ?2",
                    )
                    .map_err(sql_error)?
                    .execute(params![through, last])
                    .map_err(sql_error)?;
                through = if last > through { last } else { newest };
            }
            connection
                .prepare_cached("UPDATE span_text_progress SET indexed_through = ?1")
                .map_err(sql_error)?
                .execute([through])
                .map_err(sql_error)?;
            connection.execute_batch("COMMIT").map_err(sql_error)?;
            Ok(stale_left || through < newest)
        })();
        if filled.is_err() {
            let _ = connection.execute_batch("ROLLBACK");
        }
        connection
            .execute_batch(&format!("PRAGMA synchronous = {commit_level}"))
            .map_err(sql_error)?;
        filled
    };
    round().unwrap_or_else(|error| {
        log::warn!(error:% = error; "text indexing of spans stopped until the next write");
        false
    })
}

/// Runs the jobs in one transaction, each in its own savepoint, and commits it.
fn commit_in_savepoints(connection: &Connection, jobs: &mut [WriteJob]) -> StoreResult<()> {
    connection
        .execute_batch("BEGIN IMMEDIATE")
        .map_err(sql_error)?;
    if !jobs
        .iter_mut()
        .all(|job| in_savepoint(connection, |connection| job.run(connection)))
    {
        let _ = connection.execute_batch("ROLLBACK");
        return Err(StoreError::internal(
            "a savepoint failed; the group's writes were rolled back",
        ));
    }
    commit(connection)
}

/// Commits the open transaction; if the commit fails, rolls it back.
fn commit(connection: &Connection) -> StoreResult<()> {
    connection.execute_batch("COMMIT").map_err(|error| {
        let _ = connection.execute_batch("ROLLBACK");
        sql_error(error)
    })
}

/// Runs one job in a savepoint, so that a failing job leaves the others of its group intact; false only if
/// the savepoint itself failed.
fn in_savepoint(connection: &Connection, run: impl FnOnce(&Connection) -> bool) -> bool {
    if connection.execute_batch("SAVEPOINT job").is_err() {
        return false;
    }
    let closing = if run(connection) {
        "RELEASE job"
    } else {
        "ROLLBACK TO job; RELEASE job"
    };
    connection.execute_batch(closing).is_ok()
}

fn now_ms() -> i64 {
    i64::try_from(crate::now_unix_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn parse_experiment_id(experiment_id: &str) -> StoreResult<i64> {
    experiment_id.trim().parse().map_err(|_| {
        StoreError::invalid(format!(
            "invalid experiment id {experiment_id:?}: expected an integer"
        ))
    })
}

/// The SQL text of a value expression for a field compared directly (not through a list).
fn scalar_expression(field: &Field) -> Option<&'static str> {
    Some(match field {
        Field::TraceId => "t.trace_id",
        Field::Timestamp => "t.request_time",
        Field::ExecutionTime => "t.execution_duration",
        Field::EndTime => "(t.request_time + t.execution_duration)",
        Field::Status => "t.state",
        Field::ClientRequestId => "t.client_request_id",
        Field::Name => {
            "COALESCE((SELECT value FROM trace_tags WHERE trace_key = t.trace_key AND key = 'mlflow.traceName'), \
             (SELECT name FROM spans WHERE trace_key = t.trace_key AND parent_span_id IS NULL LIMIT 1))"
        }
        Field::RunId => {
            "(SELECT value FROM trace_metadata WHERE trace_key = t.trace_key AND key = 'mlflow.sourceRun')"
        }
        _ => return None,
    })
}

fn bind(literal: &Literal, field: &Field) -> SqlValue {
    match literal {
        Literal::Number(number) if number.fract() == 0.0 && number.abs() < 9.0e15 => {
            SqlValue::Integer(*number as i64)
        }
        Literal::Number(number) => SqlValue::Real(*number),
        // Status values are stored in the v3 spelling; accept the v2 one.
        Literal::Text(text) if *field == Field::Status => SqlValue::Text(
            TraceState::parse(text).map_or_else(|| text.clone(), |state| state.as_str().to_owned()),
        ),
        Literal::Text(text) => SqlValue::Text(text.clone()),
    }
}

/// `expression <comparator> ?…` with its parameters.
fn predicate(
    expression: &str,
    condition: &Condition,
    parameters: &mut Vec<SqlValue>,
) -> StoreResult<String> {
    let values = &condition.values;
    let operator = match condition.comparator {
        Comparator::Eq => "=",
        Comparator::Ne => "!=",
        Comparator::Lt => "<",
        Comparator::Le => "<=",
        Comparator::Gt => ">",
        Comparator::Ge => ">=",
        Comparator::Like => "LIKE",
        Comparator::ILike => {
            parameters.push(bind(&values[0], &condition.field));
            return Ok(format!("LOWER({expression}) LIKE LOWER(?)"));
        }
        Comparator::RLike => {
            // Checked here so a bad pattern is the client's error, not a failed statement.
            if let Literal::Text(pattern) = &values[0] {
                regex::Regex::new(pattern).map_err(|error| {
                    StoreError::invalid(format!("invalid RLIKE pattern {pattern:?}: {error}"))
                })?;
            }
            parameters.push(bind(&values[0], &condition.field));
            return Ok(format!("{expression} REGEXP ?"));
        }
        Comparator::In | Comparator::NotIn => {
            parameters.extend(values.iter().map(|value| bind(value, &condition.field)));
            let negation = if condition.comparator == Comparator::NotIn {
                "NOT "
            } else {
                ""
            };
            return Ok(format!(
                "{expression} {negation}IN ({})",
                vec!["?"; values.len()].join(", ")
            ));
        }
        Comparator::IsNull => return Ok(format!("{expression} IS NULL")),
        Comparator::IsNotNull => return Ok(format!("{expression} IS NOT NULL")),
    };
    parameters.push(bind(&values[0], &condition.field));
    Ok(format!("{expression} {operator} ?"))
}

/// ` AND …` clauses for the conditions, with their parameters in order. Keys and values are parameters;
/// only fixed SQL text is spliced.
/// The `driver` condition (see [`driving_condition`]) becomes the set of trace ids it matches, read through
/// an index; every other condition is checked trace by trace, so a scan stops as soon as the page is full.
fn compile_conditions(
    conditions: &[Condition],
    driver: Option<usize>,
) -> StoreResult<(String, Vec<SqlValue>)> {
    let mut sql = String::new();
    let mut parameters = Vec::new();
    for (index, condition) in conditions.iter().enumerate() {
        let drives = driver == Some(index);
        let clause = match &condition.field {
            field @ (Field::TraceId
            | Field::Timestamp
            | Field::ExecutionTime
            | Field::EndTime
            | Field::Status
            | Field::ClientRequestId
            | Field::Name
            | Field::RunId) => predicate(
                scalar_expression(field).unwrap_or("NULL"),
                condition,
                &mut parameters,
            )?,
            Field::Tag(key) | Field::Metadata(key) => {
                let table = if matches!(condition.field, Field::Tag(_)) {
                    "trace_tags"
                } else {
                    "trace_metadata"
                };
                parameters.push(SqlValue::Text(key.clone()));
                match condition.comparator {
                    // By value through the (key, value) index, so a rare value can drive the search.
                    Comparator::Eq if drives => format!(
                        "t.trace_key IN (SELECT x.trace_key FROM {table} x WHERE x.key = ? AND {})",
                        predicate("x.value", condition, &mut parameters)?
                    ),
                    Comparator::IsNull => format!(
                        "NOT EXISTS (SELECT 1 FROM {table} x WHERE x.trace_key = t.trace_key AND x.key = ?)"
                    ),
                    Comparator::IsNotNull => format!(
                        "EXISTS (SELECT 1 FROM {table} x WHERE x.trace_key = t.trace_key AND x.key = ?)"
                    ),
                    _ => format!(
                        "EXISTS (SELECT 1 FROM {table} x WHERE x.trace_key = t.trace_key AND x.key = ? AND {})",
                        predicate("x.value", condition, &mut parameters)?
                    ),
                }
            }
            Field::Feedback(name) | Field::Expectation(name) => {
                let kind = if matches!(condition.field, Field::Feedback(_)) {
                    "feedback"
                } else {
                    "expectation"
                };
                parameters.push(SqlValue::Text(name.clone()));
                // Overridden assessments (valid = false) no longer count.
                let exists = format!(
                    "EXISTS (SELECT 1 FROM assessments a WHERE a.trace_id = t.trace_id AND a.name = ? \
                     AND json_type(a.content, '$.{kind}') IS NOT NULL \
                     AND COALESCE(json_extract(a.content, '$.valid'), 1) != 0"
                );
                match condition.comparator {
                    Comparator::IsNull => format!("NOT {exists})"),
                    Comparator::IsNotNull => format!("{exists})"),
                    _ => {
                        // Numbers compare as numbers; anything else as text, booleans as `true`/`false`.
                        let path = format!("'$.{kind}.value'");
                        let value = if condition
                            .values
                            .iter()
                            .all(|value| matches!(value, Literal::Number(_)))
                        {
                            format!("json_extract(a.content, {path})")
                        } else {
                            format!(
                                "CASE json_type(a.content, {path}) WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' \
                                 ELSE CAST(json_extract(a.content, {path}) AS TEXT) END"
                            )
                        };
                        format!(
                            "{exists} AND {})",
                            predicate(&value, condition, &mut parameters)?
                        )
                    }
                }
            }
            Field::SpanName | Field::SpanType | Field::SpanStatus => {
                let column = match condition.field {
                    Field::SpanName => "s.name",
                    Field::SpanType => "s.span_type",
                    _ => "s.status",
                };
                format!(
                    "EXISTS (SELECT 1 FROM spans s WHERE s.trace_key = t.trace_key AND {})",
                    predicate(column, condition, &mut parameters)?
                )
            }
            Field::SpanAttribute(key) => {
                parameters.push(SqlValue::Text(key.clone()));
                let value = "COALESCE(json_extract(a.value, '$.value.string_value'), \
                             CAST(json_extract(a.value, '$.value.int_value') AS TEXT), \
                             CAST(json_extract(a.value, '$.value.double_value') AS TEXT), \
                             CAST(json_extract(a.value, '$.value.bool_value') AS TEXT), json_extract(a.value, '$.value'))";
                format!(
                    "EXISTS (SELECT 1 FROM spans s, json_each(s.content, '$.attributes') a WHERE s.trace_key = t.trace_key \
                     AND json_extract(a.value, '$.key') = ? AND {})",
                    predicate(value, condition, &mut parameters)?
                )
            }
            Field::Text | Field::SpanContent => {
                if !matches!(condition.comparator, Comparator::Like | Comparator::ILike) {
                    return Err(StoreError::invalid(
                        "trace.text and span.content take LIKE or ILIKE",
                    ));
                }
                match text_index_query(&condition.values[0]) {
                    // The index names candidate spans, whose content is checked as written; spans it has
                    // not reached yet, or whose content changed since, are read directly. CROSS JOIN keeps
                    // the short side outside: the planner would otherwise scan every span.
                    Some(query) if drives => {
                        parameters.push(SqlValue::Text(query));
                        let indexed = predicate("s.content", condition, &mut parameters)?;
                        let tail = predicate("s.content", condition, &mut parameters)?;
                        let stale = predicate("s.content", condition, &mut parameters)?;
                        format!(
                            "t.trace_key IN (SELECT s.trace_key FROM span_text CROSS JOIN spans s ON s.rowid = span_text.rowid \
                             WHERE span_text MATCH ? AND {indexed} UNION ALL SELECT s.trace_key FROM spans s \
                             WHERE s.rowid > (SELECT indexed_through FROM span_text_progress) AND {tail} \
                             UNION ALL SELECT s.trace_key FROM span_text_stale x CROSS JOIN spans s ON s.rowid = x.span_rowid \
                             WHERE {stale})"
                        )
                    }
                    _ => format!(
                        "EXISTS (SELECT 1 FROM spans s WHERE s.trace_key = t.trace_key AND {})",
                        predicate("s.content", condition, &mut parameters)?
                    ),
                }
            }
        };
        sql.push_str(" AND ");
        sql.push_str(&clause);
    }
    Ok((sql, parameters))
}

/// Most value rows counted when weighing the two plans of a search.
const VALUE_ROWS_COUNTED: i64 = 20_000;

/// The condition that should drive a search, if one is rare enough: reading the traces it matches by id and
/// sorting them beats scanning the experiment's traces in order until `wanted` match. A scan reads about
/// `wanted * traces / matching` traces, checking each; driving reads `matching` rows by index and sorts them.
/// Candidates are equality on a tag or metadata value (a scanned trace costs about half a driven row) and a
/// text pattern with a run of three characters or more (a scanned trace reads its spans' content, about as
/// much as a driven span costs). The rarest candidate wins.
fn driving_condition(
    connection: &Connection,
    experiments: &[i64],
    conditions: &[Condition],
    wanted: usize,
) -> StoreResult<Option<usize>> {
    let mut traces: Option<i64> = None;
    let mut best: Option<(usize, i64)> = None;
    for (index, condition) in conditions.iter().enumerate() {
        let (matching, scan_cost) = match (&condition.field, condition.comparator) {
            (Field::Tag(key) | Field::Metadata(key), Comparator::Eq) => {
                let table = if matches!(condition.field, Field::Tag(_)) {
                    "trace_tags"
                } else {
                    "trace_metadata"
                };
                let matching: i64 = connection
                    .prepare_cached(&format!(
                        "SELECT COUNT(*) FROM (SELECT 1 FROM {table} WHERE key = ?1 AND value = ?2 \
                         LIMIT {VALUE_ROWS_COUNTED})"
                    ))
                    .map_err(sql_error)?
                    .query_row(
                        params![key, bind(&condition.values[0], &condition.field)],
                        |row| row.get(0),
                    )
                    .map_err(sql_error)?;
                (matching, 1)
            }
            (Field::Text | Field::SpanContent, Comparator::Like | Comparator::ILike) => {
                if text_index_query(&condition.values[0]).is_none() {
                    continue;
                }
                // Estimated from the newest traces, which a scan would read first, looking at a few spans of
                // each so that one large trace does not make the estimate cost more than the search.
                let mut parameters = Vec::new();
                let matches = predicate("s.content", condition, &mut parameters)?;
                parameters.extend(experiments.iter().map(|id| SqlValue::Integer(*id)));
                let placeholders = vec!["?"; experiments.len()].join(", ");
                let (sampled, hits): (i64, i64) = connection
                    .prepare_cached(&format!(
                        "SELECT COUNT(*), COALESCE(SUM(EXISTS (SELECT 1 FROM (SELECT content FROM spans \
                         WHERE trace_key = t.trace_key LIMIT {TEXT_SAMPLE_SPANS}) s WHERE {matches})), 0) \
                         FROM (SELECT trace_key FROM traces WHERE experiment_id IN ({placeholders}) \
                         ORDER BY request_time DESC LIMIT {TEXT_SAMPLE}) t"
                    ))
                    .map_err(sql_error)?
                    .query_row(rusqlite::params_from_iter(parameters.iter()), |row| {
                        Ok((row.get(0)?, row.get(1)?))
                    })
                    .map_err(sql_error)?;
                let traces = stored_traces(connection, &mut traces)?;
                (hits * traces / sampled.max(1), 2)
            }
            _ => continue,
        };
        let traces = stored_traces(connection, &mut traces)?;
        let rare = matching < VALUE_ROWS_COUNTED
            && 2 * matching * matching < scan_cost * wanted as i64 * traces;
        if rare && best.is_none_or(|(_, fewest)| matching < fewest) {
            best = Some((index, matching));
        }
    }
    Ok(best.map(|(index, _)| index))
}

/// The largest trace rowid, the number of traces ever stored (read from the end of the table), once.
fn stored_traces(connection: &Connection, known: &mut Option<i64>) -> StoreResult<i64> {
    if let Some(traces) = *known {
        return Ok(traces);
    }
    let traces = connection
        .query_row("SELECT COALESCE(MAX(rowid), 0) FROM traces", [], |row| {
            row.get(0)
        })
        .map_err(sql_error)?;
    Ok(*known.insert(traces))
}

/// Newest traces read to estimate how common a text pattern is, and spans read of each.
const TEXT_SAMPLE: i64 = 64;
const TEXT_SAMPLE_SPANS: i64 = 16;

/// Most trigrams of a pattern the index is asked for; more would narrow little and cost a doclist each.
const MOST_TRIGRAMS: usize = 16;

/// The text index query that finds candidate spans for a LIKE pattern: the trigrams of every run of three or
/// more characters between wildcards, all of which a matching span holds. None when no run is long enough,
/// so the index cannot narrow the search.
fn text_index_query(pattern: &Literal) -> Option<String> {
    let Literal::Text(pattern) = pattern else {
        return None;
    };
    let mut trigrams: Vec<String> = Vec::new();
    for run in pattern.split(['%', '_']) {
        let characters: Vec<char> = run.chars().collect();
        for window in characters.windows(3) {
            let trigram = format!(
                "\"{}\"",
                window.iter().collect::<String>().replace('"', "\"\"")
            );
            if !trigrams.contains(&trigram) && trigrams.len() < MOST_TRIGRAMS {
                trigrams.push(trigram);
            }
        }
    }
    (!trigrams.is_empty()).then(|| trigrams.join(" "))
}

/// The query selecting a search page's trace ids (one more than the page, to tell whether more follow), with
/// its parameters. A rare tag, metadata value or text pattern finds its few traces through its index and
/// sorts them; otherwise the experiments' traces are read in the requested order until the page is full.
fn search_sql(
    connection: &Connection,
    experiments: &[i64],
    query: &TraceQuery,
) -> StoreResult<(String, Vec<SqlValue>)> {
    let wanted = query.offset + query.max_results + 1;
    let driver = driving_condition(connection, experiments, &query.conditions, wanted)?;
    let (conditions_sql, mut parameters) = compile_conditions(&query.conditions, driver)?;
    // A driving condition lists the keys of the traces it matches (tags and metadata from their value index,
    // text from the text index): each is read by its key, never through another index.
    let source = if driver.is_some() {
        "traces t NOT INDEXED"
    } else {
        "traces t"
    };
    let placeholders = vec!["?"; experiments.len()].join(", ");
    let mut bound: Vec<SqlValue> = experiments
        .iter()
        .map(|id| SqlValue::Integer(*id))
        .collect();
    bound.append(&mut parameters);
    let sql = format!(
        "SELECT t.trace_id FROM {source} WHERE t.experiment_id IN ({placeholders}){conditions_sql} \
         ORDER BY {} LIMIT {} OFFSET {}",
        order_sql(&query.order),
        query.max_results + 1,
        query.offset
    );
    Ok((sql, bound))
}

/// The `ORDER BY` list, ending with the trace id so pages are stable.
fn order_sql(order: &[OrderBy]) -> String {
    let mut parts: Vec<String> = order
        .iter()
        .filter_map(|entry| {
            let expression = scalar_expression(&entry.field)?;
            Some(format!(
                "{expression} {}",
                if entry.ascending { "ASC" } else { "DESC" }
            ))
        })
        .collect();
    if parts.is_empty() {
        parts.push("t.request_time DESC".to_owned());
    }
    parts.push("t.trace_id".to_owned());
    parts.join(", ")
}

fn read_assessment(
    connection: &Connection,
    trace_id: &str,
    assessment_id: &str,
) -> StoreResult<Assessment> {
    let text: Option<String> = connection
        .prepare_cached(
            "SELECT content FROM assessments WHERE trace_id = ?1 AND assessment_id = ?2",
        )
        .map_err(sql_error)?
        .query_row(params![trace_id, assessment_id], |row| row.get(0))
        .optional()
        .map_err(sql_error)?;
    let text = text.ok_or_else(|| {
        StoreError::not_found(format!(
            "Assessment with ID {assessment_id} not found in trace {trace_id}."
        ))
    })?;
    serde_json::from_str(&text)
        .map_err(|error| StoreError::internal(format!("stored assessment unreadable: {error}")))
}

fn write_assessment(connection: &Connection, assessment: &Assessment) -> StoreResult<()> {
    let created = assessment
        .create_time
        .as_deref()
        .and_then(mlflow_tracing_core::time::parse_rfc3339_millis)
        .unwrap_or_else(now_ms);
    let content = serde_json::to_string(assessment)
        .map_err(|error| StoreError::internal(error.to_string()))?;
    connection
        .prepare_cached(
            "INSERT INTO assessments (assessment_id, trace_id, name, create_time, content) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (assessment_id) DO UPDATE SET name = excluded.name, content = excluded.content",
        )
        .map_err(sql_error)?
        .execute(params![assessment.assessment_id, assessment.trace_id, assessment.assessment_name, created, content])
        .map_err(sql_error)?;
    Ok(())
}

/// A v2 request id: 32 random hex digits, as MLflow's server makes them.
fn new_request_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut id = String::with_capacity(32);
    for _ in 0..2 {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(crate::now_unix_nanos());
        id.push_str(&format!("{:016x}", hasher.finish()));
    }
    id
}

/// The stored form of a trace id: `tr-<hex>` for anything that reads as a trace id.
pub fn normalize_trace_id(trace_id: &str) -> String {
    TraceId::parse_any(trace_id).map_or_else(|_| trace_id.to_owned(), |id| id.to_mlflow())
}

/// The stored id and key of a trace given in any spelling: as given (v2 request ids are bare hex), else as
/// `tr-<hex>`.
fn resolve_trace(connection: &Connection, given: &str) -> StoreResult<Option<(String, i64)>> {
    let normalized = normalize_trace_id(given);
    let row = |row: &rusqlite::Row<'_>| Ok((row.get(0)?, row.get(1)?));
    // Spans arrive as `tr-<hex>` already: one spelling, one index lookup.
    let found = if normalized == given {
        connection
            .prepare_cached("SELECT trace_id, trace_key FROM traces WHERE trace_id = ?1")
            .map_err(sql_error)?
            .query_row([given], row)
    } else {
        connection
            .prepare_cached(
                "SELECT trace_id, trace_key FROM traces WHERE trace_id IN (?1, ?2) \
                 ORDER BY trace_id = ?1 DESC LIMIT 1",
            )
            .map_err(sql_error)?
            .query_row(params![given, normalized], row)
    };
    found.optional().map_err(sql_error)
}

fn resolve_trace_id(connection: &Connection, given: &str) -> StoreResult<Option<String>> {
    Ok(resolve_trace(connection, given)?.map(|(trace_id, _)| trace_id))
}

/// The stored id and key of a trace that must exist.
fn require_trace_keyed(connection: &Connection, given: &str) -> StoreResult<(String, i64)> {
    resolve_trace(connection, given)?
        .ok_or_else(|| StoreError::not_found(format!("Trace with ID {given} not found.")))
}

fn require_trace(connection: &Connection, given: &str) -> StoreResult<String> {
    Ok(require_trace_keyed(connection, given)?.0)
}

fn artifact_location(experiment_id: &str, trace_id: &str) -> String {
    format!("mlflow-artifacts:/{experiment_id}/traces/{trace_id}/artifacts")
}

fn read_experiment(
    connection: &Connection,
    clause: &str,
    value: &dyn rusqlite::ToSql,
) -> StoreResult<Option<Experiment>> {
    let sql = format!(
        "SELECT experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time \
         FROM experiments WHERE {clause}"
    );
    let experiment = connection
        .query_row(&sql, [value], |row| {
            Ok(Experiment {
                experiment_id: row.get::<_, i64>(0)?.to_string(),
                name: row.get(1)?,
                artifact_location: row.get(2)?,
                lifecycle_stage: row.get(3)?,
                creation_time: row.get(4)?,
                last_update_time: row.get(5)?,
                tags: BTreeMap::new(),
            })
        })
        .optional()
        .map_err(sql_error)?;
    let Some(mut experiment) = experiment else {
        return Ok(None);
    };
    let mut statement = connection
        .prepare_cached("SELECT key, value FROM experiment_tags WHERE experiment_id = ?1")
        .map_err(sql_error)?;
    let tags = statement
        .query_map(
            [experiment.experiment_id.parse::<i64>().unwrap_or(-1)],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .map_err(sql_error)?;
    for tag in tags {
        let (key, value) = tag.map_err(sql_error)?;
        experiment.tags.insert(key, value);
    }
    Ok(Some(experiment))
}

fn read_trace_info(connection: &Connection, trace_id: &str) -> StoreResult<Option<TraceInfo>> {
    Ok(read_trace_infos(connection, &[trace_id.to_owned()])?.pop())
}

/// The records of `trace_ids` in that order (missing ones left out), in five queries whatever their number.
/// The tags the server owns (where the artifacts live and, once spans are stored, that they are in the
/// database) are derived here rather than stored with every trace.
fn read_trace_infos(connection: &Connection, trace_ids: &[String]) -> StoreResult<Vec<TraceInfo>> {
    if trace_ids.is_empty() {
        return Ok(Vec::new());
    }
    /// A trace's record as read, before its entries and assessments are added.
    struct Record {
        experiment_id: i64,
        has_spans: bool,
        info: TraceInfo,
    }
    let ids = rusqlite::params_from_iter(trace_ids.iter());
    let placeholders = vec!["?"; trace_ids.len()].join(", ");
    // Each trace is looked up by id once; its entries are then read by its key.
    let mut ids_by_key: std::collections::HashMap<i64, String> = std::collections::HashMap::new();
    let mut records: std::collections::HashMap<String, Record> = std::collections::HashMap::new();
    {
        let mut statement = connection
            .prepare_cached(&format!(
                "SELECT trace_id, experiment_id, client_request_id, request_time, execution_duration, state, \
                 request_preview, response_preview, trace_key, \
                 EXISTS (SELECT 1 FROM spans s WHERE s.trace_key = t.trace_key) \
                 FROM traces t WHERE trace_id IN ({placeholders})"
            ))
            .map_err(sql_error)?;
        let mut rows = statement.query(ids.clone()).map_err(sql_error)?;
        while let Some(row) = rows.next().map_err(sql_error)? {
            let trace_id: String = row.get(0).map_err(sql_error)?;
            let experiment_id: i64 = row.get(1).map_err(sql_error)?;
            let state: String = row.get(5).map_err(sql_error)?;
            let info = TraceInfo {
                trace_id: trace_id.clone(),
                client_request_id: row.get(2).map_err(sql_error)?,
                trace_location: TraceLocation::experiment(experiment_id.to_string()),
                request_time_ms: row.get(3).map_err(sql_error)?,
                execution_duration_ms: row.get(4).map_err(sql_error)?,
                state: TraceState::parse(&state).unwrap_or_default(),
                request_preview: row.get(6).map_err(sql_error)?,
                response_preview: row.get(7).map_err(sql_error)?,
                trace_metadata: BTreeMap::new(),
                tags: BTreeMap::new(),
                assessments: Vec::new(),
            };
            ids_by_key.insert(row.get(8).map_err(sql_error)?, trace_id.clone());
            let has_spans = row.get(9).map_err(sql_error)?;
            records.insert(
                trace_id,
                Record {
                    experiment_id,
                    has_spans,
                    info,
                },
            );
        }
    }
    if records.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<i64> = ids_by_key.keys().copied().collect();
    let key_placeholders = vec!["?"; keys.len()].join(", ");
    for table in ["trace_tags", "trace_metadata"] {
        let mut statement = connection
            .prepare_cached(&format!(
                "SELECT trace_key, key, value FROM {table} WHERE trace_key IN ({key_placeholders})"
            ))
            .map_err(sql_error)?;
        let mut rows = statement
            .query(rusqlite::params_from_iter(keys.iter()))
            .map_err(sql_error)?;
        while let Some(row) = rows.next().map_err(sql_error)? {
            let trace_key: i64 = row.get(0).map_err(sql_error)?;
            let Some(record) = ids_by_key
                .get(&trace_key)
                .and_then(|trace_id| records.get_mut(trace_id))
            else {
                continue;
            };
            let entries = if table == "trace_tags" {
                &mut record.info.tags
            } else {
                &mut record.info.trace_metadata
            };
            entries.insert(
                row.get(1).map_err(sql_error)?,
                row.get(2).map_err(sql_error)?,
            );
        }
    }
    let mut statement = connection
        .prepare_cached(&format!(
            "SELECT trace_id, content FROM assessments WHERE trace_id IN ({placeholders}) \
             ORDER BY create_time, assessment_id"
        ))
        .map_err(sql_error)?;
    let mut rows = statement.query(ids).map_err(sql_error)?;
    while let Some(row) = rows.next().map_err(sql_error)? {
        let trace_id: String = row.get(0).map_err(sql_error)?;
        let text: String = row.get(1).map_err(sql_error)?;
        if let Some(record) = records.get_mut(&trace_id) {
            record
                .info
                .assessments
                .push(serde_json::from_str(&text).map_err(|error| {
                    StoreError::internal(format!("stored assessment unreadable: {error}"))
                })?);
        }
    }
    Ok(trace_ids
        .iter()
        .filter_map(|trace_id| {
            let Record {
                experiment_id,
                has_spans,
                mut info,
            } = records.remove(trace_id)?;
            info.tags.insert(
                keys::TAG_ARTIFACT_LOCATION.to_owned(),
                artifact_location(&experiment_id.to_string(), trace_id),
            );
            if has_spans {
                info.tags.insert(
                    keys::TAG_SPANS_LOCATION.to_owned(),
                    "TRACKING_STORE".to_owned(),
                );
            }
            Some(info)
        })
        .collect())
}

fn require_experiment(connection: &Connection, experiment_id: i64) -> StoreResult<()> {
    let exists: Option<i64> = connection
        .prepare_cached("SELECT experiment_id FROM experiments WHERE experiment_id = ?1")
        .map_err(sql_error)?
        .query_row([experiment_id], |row| row.get(0))
        .optional()
        .map_err(sql_error)?;
    match exists {
        Some(_) => Ok(()),
        None => Err(StoreError::not_found(format!(
            "No Experiment with id={experiment_id} exists"
        ))),
    }
}

fn put_entry(
    connection: &Connection,
    table: &str,
    trace_key: i64,
    key: &str,
    value: &str,
    replace: bool,
) -> StoreResult<()> {
    let verb = if replace {
        "INSERT OR REPLACE"
    } else {
        "INSERT OR IGNORE"
    };
    connection
        .prepare_cached(&format!(
            "{verb} INTO {table} (trace_key, key, value) VALUES (?1, ?2, ?3)"
        ))
        .map_err(sql_error)?
        .execute(params![trace_key, key, value])
        .map_err(sql_error)?;
    Ok(())
}

/// Stores a client's record. `v3` adds the `infoFinalized` marker MLflow's v3 API adds.
fn store_trace_info(connection: &Connection, info: &TraceInfo, v3: bool) -> StoreResult<TraceInfo> {
    let trace_id = info.trace_id.clone();
    let experiment = info
        .experiment_id()
        .ok_or_else(|| StoreError::invalid("trace_location must be an MLflow experiment"))?
        .to_owned();
    let experiment_id = parse_experiment_id(&experiment)?;
    require_experiment(connection, experiment_id)?;
    let trace_key: i64 = connection
        .prepare_cached(
            "INSERT INTO traces (trace_id, experiment_id, client_request_id, request_time, execution_duration, \
             state, request_preview, response_preview, info_finalized) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 1) \
             ON CONFLICT (trace_id) DO UPDATE SET experiment_id = excluded.experiment_id, \
             client_request_id = excluded.client_request_id, request_time = excluded.request_time, \
             execution_duration = excluded.execution_duration, state = excluded.state, \
             request_preview = excluded.request_preview, response_preview = excluded.response_preview, \
             info_finalized = 1 RETURNING trace_key",
        )
        .map_err(sql_error)?
        .query_row(
            params![
                trace_id,
                experiment_id,
                info.client_request_id,
                info.request_time_ms,
                info.execution_duration_ms,
                info.state.as_str(),
                info.request_preview,
                info.response_preview,
            ],
            |row| row.get(0),
        )
        .map_err(sql_error)?;
    for (key, value) in &info.trace_metadata {
        put_entry(connection, "trace_metadata", trace_key, key, value, true)?;
    }
    for (key, value) in &info.tags {
        put_entry(connection, "trace_tags", trace_key, key, value, true)?;
    }
    if v3 {
        put_entry(
            connection,
            "trace_metadata",
            trace_key,
            keys::META_INFO_FINALIZED,
            "true",
            true,
        )?;
    }
    // Client-sent copies of the server-owned tags would go stale; they are derived on read.
    connection
        .prepare_cached("DELETE FROM trace_tags WHERE trace_key = ?1 AND key IN (?2, ?3)")
        .map_err(sql_error)?
        .execute(params![
            trace_key,
            keys::TAG_ARTIFACT_LOCATION,
            keys::TAG_SPANS_LOCATION
        ])
        .map_err(sql_error)?;
    read_trace_info(connection, &trace_id)?
        .ok_or_else(|| StoreError::internal("the stored trace vanished"))
}

/// Key-value entries for a trace's tags or metadata.
type Entries = Vec<(String, String)>;

/// The tags and metadata MLflow derives from a root span sent over OTLP.
fn root_derived_entries(root: &Span) -> (Entries, Entries) {
    let mut tags = Vec::new();
    let mut metadata = Vec::new();
    for (key, json) in &root.attributes {
        let text = json
            .as_string_value()
            .unwrap_or_else(|| json.as_str().to_owned());
        if let Some(tag) = key.strip_prefix(keys::TRACE_TAG_PREFIX) {
            tags.push((tag.to_owned(), text));
        } else if key == "session.id" || key == "gen_ai.conversation.id" {
            metadata.push((keys::META_SESSION.to_owned(), text));
        } else if key == "user.id" {
            metadata.push((keys::META_USER.to_owned(), text));
        }
    }
    (tags, metadata)
}

/// A span ready to insert: its columns and its REST JSON, computed off the writer thread.
struct PreparedSpan {
    span_id: String,
    parent_span_id: Option<String>,
    name: String,
    span_type: String,
    status: &'static str,
    start_time: i64,
    end_time: Option<i64>,
    content: String,
}

/// What a batch of spans changes in one trace's record.
struct PreparedTrace {
    /// `tr-<hex>` of the spans, or the upload's trace id.
    trace_id: String,
    /// The id is the upload's, in whatever spelling its client used (a v2 request id is bare hex).
    named_by_upload: bool,
    earliest_start_ms: i64,
    latest_end_ms: Option<i64>,
    spans: Vec<PreparedSpan>,
    /// Present when the batch holds the root: the record derived from it.
    root: Option<RootRecord>,
}

struct RootRecord {
    request_time_ms: i64,
    execution_duration_ms: Option<i64>,
    state: TraceState,
    request_preview: Option<String>,
    response_preview: Option<String>,
    tags: Entries,
    metadata: Entries,
}

/// Groups spans by trace and computes everything the writer needs, so the single writer only runs SQL.
/// With `into_trace` all spans belong to that trace (see [`Store::log_spans`]).
fn prepare_spans(experiment: &str, spans: &[Span], into_trace: Option<&str>) -> Vec<PreparedTrace> {
    // By the spans' own trace id; an upload's spans all go to its trace, whatever ids they carry.
    let mut by_trace: BTreeMap<TraceId, Vec<&Span>> = BTreeMap::new();
    for span in spans {
        let key = if into_trace.is_some() {
            TraceId::default()
        } else {
            span.trace_id
        };
        by_trace.entry(key).or_default().push(span);
    }
    by_trace
        .into_iter()
        .map(|(key, trace_spans)| {
            let trace_id = into_trace.map_or_else(|| key.to_mlflow(), str::to_owned);
            let earliest_start = trace_spans
                .iter()
                .map(|span| span.start_time_unix_nano)
                .min()
                .unwrap_or(0);
            let latest_end = trace_spans
                .iter()
                .filter_map(|span| span.end_time_unix_nano)
                .max();
            let root = trace_spans.iter().find(|span| span.is_root()).map(|root| {
                let derived = TraceInfo::from_spans(
                    root.trace_id,
                    TraceLocation::experiment(experiment),
                    &[(*root).clone()],
                );
                let state = match (root.end_time_unix_nano, root.status.code) {
                    (None, _) => TraceState::InProgress,
                    (Some(_), SpanStatusCode::Error) => TraceState::Error,
                    (Some(_), _) => TraceState::Ok,
                };
                let (tags, metadata) = root_derived_entries(root);
                RootRecord {
                    request_time_ms: derived.request_time_ms,
                    execution_duration_ms: derived.execution_duration_ms,
                    state,
                    request_preview: derived.request_preview,
                    response_preview: derived.response_preview,
                    tags,
                    metadata,
                }
            });
            let spans = trace_spans
                .iter()
                .map(|span| PreparedSpan {
                    span_id: span.span_id.to_hex(),
                    parent_span_id: span.parent_id.map(|parent| parent.to_hex()),
                    name: span.name.clone(),
                    span_type: span.span_type().as_str().to_owned(),
                    status: span.status.code.as_str(),
                    start_time: i64::try_from(span.start_time_unix_nano).unwrap_or(i64::MAX),
                    end_time: span
                        .end_time_unix_nano
                        .map(|end| i64::try_from(end).unwrap_or(i64::MAX)),
                    content: span_to_rest_text(span),
                })
                .collect();
            PreparedTrace {
                trace_id,
                named_by_upload: into_trace.is_some(),
                earliest_start_ms: mlflow_tracing_core::trace::nanos_to_millis(earliest_start),
                latest_end_ms: latest_end.map(mlflow_tracing_core::trace::nanos_to_millis),
                spans,
                root,
            }
        })
        .collect()
}

/// Creates a trace's record from its spans, or brings the spans' changes to it: with the root, the record
/// follows the root; without, its time span widens to cover the spans. Once the client's own record arrived
/// (`info_finalized`), spans no longer change it.
///
/// A new trace takes one plain insert. An upsert (`ON CONFLICT DO UPDATE`) or `RETURNING` would make SQLite
/// copy every page the statement touches into a statement journal first, for every trace, although only a
/// trace seen before needs the update.
fn upsert_trace_record(
    connection: &Connection,
    experiment_id: i64,
    trace_id: &str,
    prepared: &PreparedTrace,
) -> StoreResult<i64> {
    let end_ms = prepared.latest_end_ms.unwrap_or(prepared.earliest_start_ms);
    // Each update names the insert's values by their places in it.
    let stored = match &prepared.root {
        Some(root) => insert_or_update(
            connection,
            &mut *connection
                .prepare_cached(
                    "INSERT OR IGNORE INTO traces (trace_id, experiment_id, request_time, end_time, \
                     execution_duration, state, request_preview, response_preview) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(sql_error)?,
            "UPDATE traces SET \
             request_time = iif(info_finalized, request_time, ?3), \
             execution_duration = iif(info_finalized, execution_duration, ?5), \
             state = iif(info_finalized, state, ?6), \
             request_preview = iif(info_finalized, request_preview, ?7), \
             response_preview = iif(info_finalized, response_preview, ?8), \
             end_time = iif(info_finalized, end_time, MAX(COALESCE(end_time, ?4), ?4)) \
             WHERE trace_id = ?1 RETURNING trace_key",
            params![
                trace_id,
                experiment_id,
                root.request_time_ms,
                end_ms,
                root.execution_duration_ms,
                root.state.as_str(),
                root.request_preview,
                root.response_preview,
            ],
        )?,
        None => insert_or_update(
            connection,
            &mut *connection
                .prepare_cached(
                    "INSERT OR IGNORE INTO traces (trace_id, experiment_id, request_time, end_time, state) \
                     VALUES (?1, ?2, ?3, ?4, 'IN_PROGRESS')",
                )
                .map_err(sql_error)?,
            "UPDATE traces SET \
             request_time = iif(info_finalized, request_time, MIN(request_time, ?3)), \
             end_time = iif(info_finalized, end_time, MAX(COALESCE(end_time, ?4), ?4)) \
             WHERE trace_id = ?1 RETURNING trace_key",
            params![trace_id, experiment_id, prepared.earliest_start_ms, end_ms],
        )?,
    };
    // Neither inserted nor found: the insert ignored a constraint other than the trace id's.
    stored.ok_or_else(|| {
        StoreError::internal(format!(
            "the record of trace {trace_id} could not be stored"
        ))
    })
}

/// Runs `insert` (an `INSERT OR IGNORE` of one row) and returns the new row's key; when the row was there
/// already, runs `update` (ending `RETURNING` the key) instead, with the same values. None when neither
/// wrote a row.
fn insert_or_update(
    connection: &Connection,
    insert: &mut rusqlite::Statement<'_>,
    update: &str,
    values: &[&dyn rusqlite::ToSql],
) -> StoreResult<Option<i64>> {
    let rows = insert.execute(values).map_err(sql_error)?;
    if rows == 1 {
        return Ok(Some(connection.last_insert_rowid()));
    }
    connection
        .prepare_cached(update)
        .map_err(sql_error)?
        .query_row(values, |row| row.get(0))
        .optional()
        .map_err(sql_error)
}

/// Inserts a span unless its trace holds it already (see [`put_span`]).
const INSERT_SPAN: &str = "INSERT OR IGNORE INTO spans (trace_key, span_id, parent_span_id, name, span_type, \
     status, start_time, end_time, content) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

/// Stores one span of a trace with `insert` (prepared from [`INSERT_SPAN`] once for all the spans of a
/// write), replacing the span if it was stored before (a span sent again, or by another path). As for trace
/// records, a new span takes one plain insert, which needs no statement journal.
fn put_span(
    connection: &Connection,
    insert: &mut rusqlite::Statement<'_>,
    trace_key: i64,
    span: &PreparedSpan,
) -> StoreResult<()> {
    let stored = insert_or_update(
        connection,
        insert,
        "UPDATE spans SET parent_span_id = ?3, name = ?4, span_type = ?5, status = ?6, start_time = ?7, \
         end_time = ?8, content = ?9 WHERE trace_key = ?1 AND span_id = ?2 RETURNING span_key",
        params![
            trace_key,
            span.span_id,
            span.parent_span_id,
            span.name,
            span.span_type,
            span.status,
            span.start_time,
            span.end_time,
            span.content,
        ],
    )?;
    stored
        .map(|_| ())
        .ok_or_else(|| StoreError::internal(format!("span {} could not be stored", span.span_id)))
}

/// Writes prepared spans and the record changes they bring.
fn store_spans(
    connection: &Connection,
    experiment: &str,
    traces: &[PreparedTrace],
    resource_tags: &BTreeMap<String, String>,
) -> StoreResult<usize> {
    let experiment_id = parse_experiment_id(experiment)?;
    require_experiment(connection, experiment_id)?;
    let mut insert_span = connection.prepare_cached(INSERT_SPAN).map_err(sql_error)?;
    let mut stored = 0;
    for prepared in traces {
        // An upload names its trace in any spelling, so it is looked up first; the spans of OTLP always
        // use `tr-<hex>`, which the upsert finds itself.
        let stored_id = if prepared.named_by_upload {
            resolve_trace(connection, &prepared.trace_id)?.map(|(trace_id, _)| trace_id)
        } else {
            None
        };
        let trace_id = stored_id.as_deref().unwrap_or(&prepared.trace_id);
        let trace_key = upsert_trace_record(connection, experiment_id, trace_id, prepared)?;
        for span in &prepared.spans {
            put_span(connection, &mut insert_span, trace_key, span)?;
            stored += 1;
        }
        if let Some(root) = &prepared.root {
            for (key, value) in &root.tags {
                put_entry(connection, "trace_tags", trace_key, key, value, false)?;
            }
            for (key, value) in &root.metadata {
                put_entry(connection, "trace_metadata", trace_key, key, value, false)?;
            }
        }
        for (key, value) in resource_tags {
            put_entry(connection, "trace_tags", trace_key, key, value, false)?;
        }
    }
    Ok(stored)
}

impl Store for SqliteStore {
    async fn create_experiment(
        &self,
        name: String,
        tags: BTreeMap<String, String>,
    ) -> StoreResult<String> {
        if name.trim().is_empty() {
            return Err(StoreError::invalid("experiment name must not be empty"));
        }
        self.write(move |connection| {
            let now = now_ms();
            let inserted = connection.execute(
                "INSERT INTO experiments (name, artifact_location, creation_time, last_update_time) VALUES (?1, '', ?2, ?2)",
                params![name, now],
            );
            if let Err(error) = inserted {
                let error = sql_error(error);
                if error.kind == super::StoreErrorKind::Conflict {
                    return Err(StoreError::conflict(format!("Experiment(name={name}) already exists.")));
                }
                return Err(error);
            }
            let experiment_id = connection.last_insert_rowid();
            connection
                .execute(
                    "UPDATE experiments SET artifact_location = ?2 WHERE experiment_id = ?1",
                    params![experiment_id, format!("mlflow-artifacts:/{experiment_id}")],
                )
                .map_err(sql_error)?;
            for (key, value) in &tags {
                connection
                    .execute("INSERT OR REPLACE INTO experiment_tags (experiment_id, key, value) VALUES (?1, ?2, ?3)", params![experiment_id, key, value])
                    .map_err(sql_error)?;
            }
            Ok(experiment_id.to_string())
        })
        .await
    }

    async fn get_experiment(&self, experiment_id: String) -> StoreResult<Experiment> {
        let id = parse_experiment_id(&experiment_id)?;
        self.read(move |connection| {
            read_experiment(connection, "experiment_id = ?1", &id)?.ok_or_else(|| {
                StoreError::not_found(format!("No Experiment with id={experiment_id} exists"))
            })
        })
        .await
    }

    async fn get_experiment_by_name(&self, name: String) -> StoreResult<Experiment> {
        self.read(move |connection| {
            read_experiment(connection, "name = ?1", &name)?.ok_or_else(|| {
                StoreError::not_found(format!("Could not find experiment with name '{name}'"))
            })
        })
        .await
    }

    async fn search_experiments(
        &self,
        max_results: usize,
        offset: usize,
    ) -> StoreResult<Page<Experiment>> {
        self.read(move |connection| {
            let mut statement = connection
                .prepare_cached("SELECT experiment_id FROM experiments ORDER BY experiment_id LIMIT ?1 OFFSET ?2")
                .map_err(sql_error)?;
            let ids: Vec<i64> = statement
                .query_map(params![max_results as i64 + 1, offset as i64], |row| row.get(0))
                .map_err(sql_error)?
                .collect::<Result<_, _>>()
                .map_err(sql_error)?;
            let has_more = ids.len() > max_results;
            let mut items = Vec::new();
            for id in ids.into_iter().take(max_results) {
                items.extend(read_experiment(connection, "experiment_id = ?1", &id)?);
            }
            Ok(Page { next_offset: has_more.then_some(offset + max_results), items })
        })
        .await
    }

    async fn start_trace(&self, info: TraceInfo) -> StoreResult<TraceInfo> {
        self.write(move |connection| store_trace_info(connection, &info, true))
            .await
    }

    async fn log_spans(
        &self,
        experiment_id: String,
        spans: Vec<Span>,
        resource_tags: BTreeMap<String, String>,
        into_trace: Option<String>,
    ) -> StoreResult<usize> {
        let prepared = prepare_spans(&experiment_id, &spans, into_trace.as_deref());
        drop(spans);
        self.write(move |connection| {
            store_spans(connection, &experiment_id, &prepared, &resource_tags)
        })
        .await
    }

    async fn get_trace_info(&self, trace_id: String) -> StoreResult<TraceInfo> {
        self.read(move |connection| {
            let stored = require_trace(connection, &trace_id)?;
            read_trace_info(connection, &stored)?.ok_or_else(|| {
                StoreError::not_found(format!("Trace with ID {trace_id} not found."))
            })
        })
        .await
    }

    async fn get_traces(
        &self,
        trace_ids: Vec<String>,
    ) -> StoreResult<Vec<(TraceInfo, Vec<String>)>> {
        self.read(move |connection| {
            // Each id under both names it may be stored as: as given (v2 request ids) and as `tr-<hex>`.
            let spellings: Vec<(&String, String)> = trace_ids
                .iter()
                .map(|given| (given, normalize_trace_id(given)))
                .collect();
            let mut candidates: Vec<String> = spellings
                .iter()
                .flat_map(|(given, normalized)| [(*given).clone(), normalized.clone()])
                .collect();
            candidates.sort_unstable();
            candidates.dedup();
            let mut infos: std::collections::HashMap<String, TraceInfo> =
                read_trace_infos(connection, &candidates)?
                    .into_iter()
                    .map(|info| (info.trace_id.clone(), info))
                    .collect();
            let stored: Vec<String> = spellings
                .iter()
                .map(|(given, normalized)| {
                    if infos.contains_key(*given) {
                        Ok((*given).clone())
                    } else if infos.contains_key(normalized) {
                        Ok(normalized.clone())
                    } else {
                        Err(StoreError::not_found(format!(
                            "Trace with ID {given} not found."
                        )))
                    }
                })
                .collect::<StoreResult<_>>()?;
            let placeholders = vec!["?"; infos.len()].join(", ");
            let mut statement = connection
                .prepare_cached(&format!(
                    "SELECT t.trace_id, s.content FROM traces t CROSS JOIN spans s ON s.trace_key = t.trace_key \
                     WHERE t.trace_id IN ({placeholders}) ORDER BY t.trace_key, s.start_time, s.span_id"
                ))
                .map_err(sql_error)?;
            let mut spans: std::collections::HashMap<String, Vec<String>> =
                std::collections::HashMap::with_capacity(infos.len());
            let mut rows = statement
                .query(rusqlite::params_from_iter(infos.keys()))
                .map_err(sql_error)?;
            while let Some(row) = rows.next().map_err(sql_error)? {
                let trace_id: String = row.get(0).map_err(sql_error)?;
                spans
                    .entry(trace_id)
                    .or_default()
                    .push(row.get(1).map_err(sql_error)?);
            }
            // Moved out for the first mention of a trace, copied for a repeat.
            let mut traces = Vec::with_capacity(stored.len());
            for trace_id in &stored {
                let trace = match infos.remove(trace_id) {
                    Some(info) => (info, spans.remove(trace_id).unwrap_or_default()),
                    None => traces
                        .iter()
                        .find(|(info, _): &&(TraceInfo, Vec<String>)| &info.trace_id == trace_id)
                        .cloned()
                        .ok_or_else(|| StoreError::internal("a repeated trace went missing"))?,
                };
                traces.push(trace);
            }
            Ok(traces)
        })
        .await
    }

    async fn get_span_outline(&self, trace_id: String) -> StoreResult<(String, Vec<SpanOutline>)> {
        self.read(move |connection| {
            let (stored, trace_key) = require_trace_keyed(connection, &trace_id)?;
            let mut statement = connection
                .prepare_cached(
                    "SELECT span_id, parent_span_id, name, span_type, status, start_time, end_time FROM spans \
                     WHERE trace_key = ?1 ORDER BY start_time, span_id",
                )
                .map_err(sql_error)?;
            let rows = statement
                .query_map([trace_key], |row| {
                    Ok(SpanOutline {
                        span_id: row.get(0)?,
                        parent_span_id: row.get(1)?,
                        name: row.get(2)?,
                        span_type: row.get(3)?,
                        status: row.get(4)?,
                        start_time_ns: row.get(5)?,
                        end_time_ns: row.get(6)?,
                    })
                })
                .map_err(sql_error)?;
            let spans = rows.collect::<Result<_, _>>().map_err(sql_error)?;
            Ok((stored, spans))
        })
        .await
    }

    async fn get_span_text(&self, trace_id: String, span_id: String) -> StoreResult<String> {
        self.read(move |connection| {
            let (_, trace_key) = require_trace_keyed(connection, &trace_id)?;
            connection
                .prepare_cached("SELECT content FROM spans WHERE trace_key = ?1 AND span_id = ?2")
                .map_err(sql_error)?
                .query_row(params![trace_key, span_id.to_ascii_lowercase()], |row| {
                    row.get(0)
                })
                .optional()
                .map_err(sql_error)?
                .ok_or_else(|| {
                    StoreError::not_found(format!(
                        "Span '{span_id}' not found in trace '{trace_id}'."
                    ))
                })
        })
        .await
    }

    async fn experiment_trace_stats(&self) -> StoreResult<Vec<ExperimentTraceStats>> {
        self.read(|connection| {
            let mut statement = connection
                .prepare_cached(
                    "SELECT experiment_id, COUNT(*), MAX(request_time) FROM traces GROUP BY experiment_id",
                )
                .map_err(sql_error)?;
            let rows = statement
                .query_map([], |row| {
                    Ok(ExperimentTraceStats {
                        experiment_id: row.get::<_, i64>(0)?.to_string(),
                        trace_count: row.get::<_, i64>(1)?.max(0) as u64,
                        last_trace_time_ms: row.get(2)?,
                    })
                })
                .map_err(sql_error)?;
            rows.collect::<Result<_, _>>().map_err(sql_error)
        })
        .await
    }

    async fn set_trace_tag(&self, trace_id: String, key: String, value: String) -> StoreResult<()> {
        self.write(move |connection| {
            let (_, trace_key) = require_trace_keyed(connection, &trace_id)?;
            put_entry(connection, "trace_tags", trace_key, &key, &value, true)
        })
        .await
    }

    async fn delete_trace_tag(&self, trace_id: String, key: String) -> StoreResult<()> {
        self.write(move |connection| {
            let (_, trace_key) = require_trace_keyed(connection, &trace_id)?;
            let deleted = connection
                .execute(
                    "DELETE FROM trace_tags WHERE trace_key = ?1 AND key = ?2",
                    params![trace_key, key],
                )
                .map_err(sql_error)?;
            if deleted == 0 {
                return Err(StoreError::not_found(format!(
                    "No tag with name: {key} in trace with ID {trace_id}."
                )));
            }
            Ok(())
        })
        .await
    }

    async fn delete_traces(
        &self,
        experiment_id: String,
        which: DeleteTraces,
    ) -> StoreResult<usize> {
        let experiment = parse_experiment_id(&experiment_id)?;
        self.write(move |connection| match &which {
            DeleteTraces::Ids(ids) => {
                let mut deleted = 0;
                for id in ids {
                    let Some(stored) = resolve_trace_id(connection, id)? else {
                        continue;
                    };
                    deleted += connection
                        .prepare_cached("DELETE FROM traces WHERE experiment_id = ?1 AND trace_id = ?2")
                        .map_err(sql_error)?
                        .execute(params![experiment, stored])
                        .map_err(sql_error)?;
                }
                Ok(deleted)
            }
            DeleteTraces::OlderThan { max_timestamp_ms, max_traces } => connection
                .execute(
                    "DELETE FROM traces WHERE trace_id IN (SELECT trace_id FROM traces WHERE experiment_id = ?1 \
                     AND request_time <= ?2 ORDER BY request_time LIMIT ?3)",
                    params![experiment, max_timestamp_ms, max_traces.map_or(-1, |max| max as i64)],
                )
                .map_err(sql_error),
        })
        .await
    }

    async fn create_assessment(
        &self,
        trace_id: String,
        assessment: Assessment,
    ) -> StoreResult<Assessment> {
        self.write(move |connection| {
            let stored = require_trace(connection, &trace_id)?;
            let mut assessment = assessment.clone();
            assessment.assessment_id = Some(format!("a-{}", new_request_id()));
            assessment.trace_id = stored.clone();
            let now = mlflow_tracing_core::time::format_rfc3339_millis(now_ms());
            assessment.create_time.get_or_insert_with(|| now.clone());
            assessment.last_update_time.get_or_insert(now);
            assessment.valid.get_or_insert(true);
            if let Some(overridden) = assessment.overrides.clone() {
                let mut previous = read_assessment(connection, &stored, &overridden)?;
                previous.valid = Some(false);
                write_assessment(connection, &previous)?;
            }
            write_assessment(connection, &assessment)?;
            Ok(assessment)
        })
        .await
    }

    async fn get_assessment(
        &self,
        trace_id: String,
        assessment_id: String,
    ) -> StoreResult<Assessment> {
        self.read(move |connection| {
            let stored = require_trace(connection, &trace_id)?;
            read_assessment(connection, &stored, &assessment_id)
        })
        .await
    }

    async fn update_assessment(
        &self,
        trace_id: String,
        assessment_id: String,
        changes: Assessment,
        update_mask: Vec<String>,
    ) -> StoreResult<Assessment> {
        self.write(move |connection| {
            let stored = require_trace(connection, &trace_id)?;
            let mut assessment = read_assessment(connection, &stored, &assessment_id)?;
            for field in &update_mask {
                match field.as_str() {
                    "assessment_name" => {
                        assessment.assessment_name = changes.assessment_name.clone()
                    }
                    "feedback" => assessment.feedback = changes.feedback.clone(),
                    "expectation" => assessment.expectation = changes.expectation.clone(),
                    "rationale" => assessment.rationale = changes.rationale.clone(),
                    "metadata" => assessment.metadata = changes.metadata.clone(),
                    "valid" => assessment.valid = changes.valid,
                    "source" => assessment.source = changes.source.clone(),
                    "span_id" => assessment.span_id = changes.span_id.clone(),
                    other => {
                        return Err(StoreError::invalid(format!(
                            "update_mask names {other:?}, which cannot be updated"
                        )));
                    }
                }
            }
            assessment.last_update_time =
                Some(mlflow_tracing_core::time::format_rfc3339_millis(now_ms()));
            write_assessment(connection, &assessment)?;
            Ok(assessment)
        })
        .await
    }

    async fn delete_assessment(&self, trace_id: String, assessment_id: String) -> StoreResult<()> {
        self.write(move |connection| {
            let stored = require_trace(connection, &trace_id)?;
            let deleted = connection
                .execute(
                    "DELETE FROM assessments WHERE trace_id = ?1 AND assessment_id = ?2",
                    params![stored, assessment_id],
                )
                .map_err(sql_error)?;
            if deleted == 0 {
                return Err(StoreError::not_found(format!(
                    "Assessment with ID {assessment_id} not found in trace {trace_id}."
                )));
            }
            Ok(())
        })
        .await
    }

    async fn create_trace_v2(&self, info: TraceInfo) -> StoreResult<TraceInfo> {
        self.write(move |connection| {
            let mut info = info.clone();
            info.trace_id = new_request_id();
            store_trace_info(connection, &info, false)
        })
        .await
    }

    async fn end_trace_v2(&self, request_id: String, end: TraceEnd) -> StoreResult<TraceInfo> {
        self.write(move |connection| {
            let stored = require_trace(connection, &request_id)?;
            let mut info = read_trace_info(connection, &stored)?.ok_or_else(|| {
                StoreError::not_found(format!("Trace with ID {request_id} not found."))
            })?;
            info.execution_duration_ms =
                Some(end.end_time_ms.saturating_sub(info.request_time_ms).max(0));
            info.state = end.state;
            info.trace_metadata.extend(end.metadata.clone());
            info.tags.extend(end.tags.clone());
            store_trace_info(connection, &info, false)
        })
        .await
    }

    async fn search_traces(&self, query: TraceQuery) -> StoreResult<Page<TraceInfo>> {
        let experiments: Vec<i64> = query
            .experiment_ids
            .iter()
            .map(|id| parse_experiment_id(id))
            .collect::<Result<_, _>>()?;
        self.read(move |connection| {
            let (sql, bound) = search_sql(connection, &experiments, &query)?;
            let mut statement = connection.prepare(&sql).map_err(sql_error)?;
            let ids: Vec<String> = statement
                .query_map(rusqlite::params_from_iter(bound.iter()), |row| row.get(0))
                .map_err(sql_error)?
                .collect::<Result<_, _>>()
                .map_err(sql_error)?;
            let has_more = ids.len() > query.max_results;
            let items = read_trace_infos(connection, &ids[..ids.len().min(query.max_results)])?;
            Ok(Page {
                next_offset: has_more.then_some(query.offset + query.max_results),
                items,
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first page of 100 traces of experiment 0 matching `filter`, in the default order.
    fn first_page(filter: &str) -> TraceQuery {
        TraceQuery {
            experiment_ids: vec!["0".into()],
            conditions: crate::search::parse_filter(filter).unwrap(),
            order: Vec::new(),
            max_results: 100,
            offset: 0,
        }
    }

    /// The query plan of a search: one line per step, as `EXPLAIN QUERY PLAN` words it.
    fn plan(connection: &Connection, filter: &str) -> Vec<String> {
        let (sql, bound) = search_sql(connection, &[0], &first_page(filter)).unwrap();
        let mut statement = connection
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap();
        statement
            .query_map(rusqlite::params_from_iter(bound.iter()), |row| row.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// A new database with every migration applied, and a connection to it as the readers configure theirs.
    fn migrated_database(name: &str) -> (PathBuf, Connection) {
        let path =
            std::env::temp_dir().join(format!("mlflow-tracing-{name}-{}.db", std::process::id()));
        drop(SqliteStore::open(&path).unwrap());
        let connection = Connection::open(&path).unwrap();
        add_regexp_function(&connection).unwrap();
        (path, connection)
    }

    /// A rare word drives the search through the text index, and no part of the plan reads every span or
    /// every trace (a planner choice that once made such a search take half a second at a million traces).
    #[test]
    fn a_rare_word_is_searched_without_reading_every_span() {
        let (path, connection) = migrated_database("plan");
        // One stored trace that does not hold the word, so the word counts as rare.
        connection
            .execute(
                "INSERT INTO traces (trace_id, experiment_id, request_time, state) VALUES ('tr-1', 0, 1, 'OK')",
                [],
            )
            .unwrap();
        let steps = plan(&connection, "trace.text LIKE '%refund%' AND status = 'OK'");
        assert!(
            steps
                .iter()
                .any(|step| step.contains("span_text VIRTUAL TABLE")),
            "{steps:#?}"
        );
        let scans = |alias: &str, step: &str| {
            step == format!("SCAN {alias}") || step.starts_with(&format!("SCAN {alias} "))
        };
        assert!(
            steps
                .iter()
                .all(|step| !scans("s", step) && !scans("t", step)),
            "{steps:#?}"
        );
        drop(connection);
        remove_database(&path);
    }

    /// The newest-first page of an experiment reads the time index backwards and stops after the page: no
    /// sort of the experiment's traces. Nor with a condition the index does not hold.
    #[test]
    fn the_default_order_reads_the_time_index_without_sorting() {
        let (path, connection) = migrated_database("order");
        for filter in ["", "status = 'OK'", "execution_time_ms > 10"] {
            let steps = plan(&connection, filter);
            assert!(
                steps
                    .iter()
                    .any(|step| step.contains("INDEX traces_by_experiment_time")),
                "{filter}: {steps:#?}"
            );
            assert!(
                steps.iter().all(|step| !step.contains("TEMP B-TREE")),
                "{filter}: {steps:#?}"
            );
        }
        drop(connection);
        remove_database(&path);
    }

    fn remove_database(path: &Path) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }

    fn search(store: &SqliteStore, runtime: &tokio::runtime::Runtime, filter: &str) -> Vec<String> {
        let page = runtime
            .block_on(store.search_traces(first_page(filter)))
            .unwrap();
        page.items.into_iter().map(|info| info.trace_id).collect()
    }

    /// A store written before the integer keys (migrations 7 and 9) keeps every trace, span, tag, metadata
    /// entry, assessment and its text index across the migrations; afterwards searches by tag and metadata
    /// find them, VACUUM leaves the index valid and deleting a trace removes its spans and tags.
    #[test]
    fn a_store_from_before_the_integer_keys_migrates_whole() {
        let path =
            std::env::temp_dir().join(format!("mlflow-tracing-migrate-{}.db", std::process::id()));
        remove_database(&path);
        {
            let mut connection = Connection::open(&path).unwrap();
            connection
                .execute_batch(
                    "PRAGMA journal_mode = WAL; \
                     CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY)",
                )
                .unwrap();
            apply_migrations(&mut connection, &MIGRATIONS[..6]).unwrap();
            let span = |trace: &str,
                        id: &str,
                        parent: Option<&str>,
                        name: &str,
                        start: i64,
                        text: &str| {
                connection
                    .execute(
                        "INSERT INTO spans (trace_id, span_id, parent_span_id, name, span_type, status, start_time, end_time, content) \
                         VALUES (?1, ?2, ?3, ?4, 'UNKNOWN', 'OK', ?5, ?5 + 10, ?6)",
                        params![trace, id, parent, name, start, format!(r#"{{"name":"{name}","text":"{text}"}}"#)],
                    )
                    .unwrap();
            };
            connection
                .execute_batch(
                    "INSERT INTO traces (trace_id, experiment_id, request_time, execution_duration, state) \
                     VALUES ('tr-b', 0, 1000, 5, 'OK'), ('tr-a', 0, 2000, 7, 'ERROR'); \
                     INSERT INTO trace_tags (trace_id, key, value) VALUES ('tr-a', 'user', 'ada'), ('tr-b', 'user', 'bo'); \
                     INSERT INTO trace_metadata (trace_id, key, value) VALUES ('tr-a', 'mlflow.trace.session', 's1'); \
                     INSERT INTO assessments (assessment_id, trace_id, name, create_time, content) \
                     VALUES ('a-1', 'tr-a', 'helpful', 1, '{\"assessment_id\":\"a-1\",\"assessment_name\":\"helpful\"}'); \
                     WITH RECURSIVE n (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) \
                     INSERT INTO traces (trace_id, experiment_id, request_time, state) \
                     SELECT 'tr-newer-' || i, 0, 3000 + i, 'OK' FROM n;",
                )
                .unwrap();
            // tr-b's spans come first, so tr-a's have the higher rowids a VACUUM would renumber.
            span("tr-b", "b0", None, "other", 1000, "nothing here");
            span(
                "tr-b",
                "b1",
                Some("b0"),
                "other_step",
                1001,
                "still nothing",
            );
            span("tr-b", "b2", Some("b0"), "dropped", 1002, "dropped");
            span("tr-a", "a0", None, "agent", 2000, "root");
            span("tr-a", "a2", Some("a0"), "answer", 2002, "issue a refund");
            span("tr-a", "a1", Some("a0"), "retrieve", 2001, "policy");
            // A gap in the rowids: keys that were renumbered would no longer match the text index.
            connection
                .execute("DELETE FROM spans WHERE span_id = 'b2'", [])
                .unwrap();
            connection
                .execute_batch(
                    "INSERT INTO span_text (rowid, content) SELECT rowid, content FROM spans; \
                     UPDATE span_text_progress SET indexed_through = (SELECT MAX(rowid) FROM spans);",
                )
                .unwrap();
        }

        let store = SqliteStore::open(&path).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let traces = runtime
            .block_on(store.get_traces(vec!["tr-a".into(), "tr-b".into()]))
            .unwrap();
        let (info, spans) = &traces[0];
        assert_eq!(info.trace_id, "tr-a");
        assert_eq!(info.state, TraceState::Error);
        assert_eq!(info.tags.get("user").map(String::as_str), Some("ada"));
        assert_eq!(
            info.trace_metadata
                .get("mlflow.trace.session")
                .map(String::as_str),
            Some("s1")
        );
        assert_eq!(info.assessments.len(), 1);
        let names: Vec<&str> = spans
            .iter()
            .map(|span| span.split('"').nth(3).unwrap())
            .collect();
        assert_eq!(names, ["agent", "retrieve", "answer"], "in start order");
        assert_eq!(traces[1].1.len(), 2);
        // A hundred newer traces without the word make it rare, so the text index drives this search.
        assert_eq!(
            search(&store, &runtime, "trace.text LIKE '%refund%'"),
            ["tr-a"]
        );
        assert_eq!(
            search(&store, &runtime, "span.name = 'other_step'"),
            ["tr-b"]
        );
        // Tags and metadata name their trace by key since migration 9; a rare value drives the search.
        assert_eq!(search(&store, &runtime, "tags.user = 'bo'"), ["tr-b"]);
        assert_eq!(
            search(&store, &runtime, "metadata.`mlflow.trace.session` = 's1'"),
            ["tr-a"]
        );
        assert_eq!(search(&store, &runtime, "tags.user != 'ada'"), ["tr-b"]);

        // A span sent later joins the migrated trace.
        let late = Span {
            trace_id: TraceId([7; 16]),
            span_id: mlflow_tracing_core::SpanId([9; 8]),
            parent_id: Some(mlflow_tracing_core::SpanId([1; 8])),
            name: "late_step".into(),
            start_time_unix_nano: 2_003_000_000,
            end_time_unix_nano: Some(2_004_000_000),
            status: mlflow_tracing_core::SpanStatus::ok(),
            attributes: mlflow_tracing_core::Attributes::default(),
            events: Vec::new(),
            links: Vec::new(),
        };
        runtime
            .block_on(store.log_spans("0".into(), vec![late], BTreeMap::new(), Some("tr-a".into())))
            .unwrap();
        let (_, outline) = runtime
            .block_on(store.get_span_outline("tr-a".into()))
            .unwrap();
        assert_eq!(outline.len(), 4);
        assert_eq!(outline[3].name, "late_step");
        assert_eq!(
            search(&store, &runtime, "span.name = 'late_step'"),
            ["tr-a"]
        );

        runtime
            .block_on(store.delete_traces("0".into(), DeleteTraces::Ids(vec!["tr-b".into()])))
            .unwrap();
        let tags_left: i64 = Connection::open(&path)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM trace_tags", [], |row| row.get(0))
            .unwrap();
        assert_eq!(tags_left, 1, "tr-b's tag went with it");
        Connection::open(&path)
            .unwrap()
            .execute_batch("VACUUM")
            .unwrap();
        assert_eq!(
            search(&store, &runtime, "trace.text LIKE '%refund%'"),
            ["tr-a"]
        );
        assert_eq!(
            search(&store, &runtime, "trace.text LIKE '%nothing%'"),
            Vec::<String>::new()
        );

        runtime
            .block_on(store.delete_traces("0".into(), DeleteTraces::Ids(vec!["tr-a".into()])))
            .unwrap();
        let connection = Connection::open(&path).unwrap();
        let left: (i64, i64, i64) = connection
            .query_row(
                "SELECT (SELECT COUNT(*) FROM spans), (SELECT COUNT(*) FROM trace_tags), \
                 (SELECT COUNT(*) FROM assessments)",
                [],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .unwrap();
        assert_eq!(left, (0, 0, 0));
        drop((store, connection));
        remove_database(&path);
    }

    /// Writes sent together are all answered, after commit, and each answer holds its own result; once the
    /// last handle to the store is dropped, its writer, fsync thread and connections go away (SQLite then
    /// removes the WAL file, which it keeps while any connection is open).
    #[test]
    fn concurrent_writes_are_answered_and_the_dropped_store_closes() {
        let path =
            std::env::temp_dir().join(format!("mlflow-tracing-close-{}.db", std::process::id()));
        remove_database(&path);
        let store = SqliteStore::open(&path).unwrap();
        let wal = PathBuf::from(format!("{}-wal", path.display()));
        assert!(
            wal.exists(),
            "WAL mode keeps a WAL file while the store is open"
        );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let names: Vec<String> = (0..64).map(|index| format!("experiment-{index}")).collect();
        let ids: Vec<String> = runtime.block_on(async {
            let writes = names.iter().map(|name| {
                let store = store.clone();
                let name = name.clone();
                tokio::spawn(async move { store.create_experiment(name, BTreeMap::new()).await })
            });
            let mut ids = Vec::new();
            for write in writes.collect::<Vec<_>>() {
                ids.push(write.await.unwrap().unwrap());
            }
            ids
        });
        let mut distinct = ids.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), names.len(), "each write answers its own id");
        for (id, name) in ids.iter().zip(&names) {
            let experiment = runtime.block_on(store.get_experiment(id.clone())).unwrap();
            assert_eq!(&experiment.name, name);
        }
        drop(store);
        drop(runtime);
        let deadline = Instant::now() + Duration::from_secs(10);
        while wal.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            !wal.exists(),
            "the store's connections stay open after it was dropped"
        );
        let stored: i64 = Connection::open(&path)
            .unwrap()
            .query_row(
                "SELECT COUNT(*) FROM experiments WHERE name LIKE 'experiment-%'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(stored, 64);
        remove_database(&path);
    }

    /// A failing job of a group is undone alone: the group is rolled back, run again with a savepoint per
    /// job, and the other jobs commit with their results.
    #[test]
    fn a_failing_write_leaves_the_rest_of_its_group_committed() {
        let path =
            std::env::temp_dir().join(format!("mlflow-tracing-group-{}.db", std::process::id()));
        remove_database(&path);
        let mut connection = Connection::open(&path).unwrap();
        migrate(&mut connection).unwrap();
        let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut answers = Vec::new();
        let mut group: Option<OpenGroup> = None;
        for (index, name) in ["first", "second", "third"].into_iter().enumerate() {
            let (reply, answer) = tokio::sync::oneshot::channel();
            let runs = Arc::clone(&runs);
            let job: WriteJob = Box::new(PendingWrite {
                work: move |connection: &Connection| {
                    runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    connection
                        .execute(
                            "INSERT INTO experiments (name, artifact_location, creation_time, last_update_time) \
                             VALUES (?1, '', 0, 0)",
                            [name],
                        )
                        .map_err(sql_error)?;
                    if index == 1 {
                        return Err(StoreError::invalid("the second write fails after writing"));
                    }
                    Ok(name)
                },
                result: None,
                reply,
            });
            match &mut group {
                Some(group) => group.add(&connection, job),
                None => group = OpenGroup::begin(&connection, job),
            }
            answers.push(answer);
        }
        let group = group.unwrap();
        assert!(group.must_close(), "a failed group commits without waiting");
        let committed = group.close(&connection);
        committed.outcome.as_ref().unwrap();
        reply_all(committed.group, &committed.outcome);
        let results: Vec<_> = answers
            .into_iter()
            .map(|answer| answer.blocking_recv().unwrap())
            .collect();
        assert_eq!(results[0].as_ref().unwrap(), &"first");
        assert!(results[1].is_err());
        assert_eq!(results[2].as_ref().unwrap(), &"third");
        let names: Vec<String> = connection
            .prepare("SELECT name FROM experiments WHERE experiment_id > 0 ORDER BY experiment_id")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(names, ["first", "third"]);
        // Once straight (stopped at the failure), once with savepoints.
        assert_eq!(runs.load(std::sync::atomic::Ordering::Relaxed), 2 + 3);
        drop(connection);
        remove_database(&path);
    }

    /// A span already in the text index whose content changes twice before it is re-indexed is listed for
    /// re-indexing once, and both changes are stored (the second used to fail the request). Runs the
    /// writer's own statements on one connection, so the indexer cannot step in between.
    #[test]
    fn an_indexed_span_can_change_twice_before_it_is_reindexed() {
        let path =
            std::env::temp_dir().join(format!("mlflow-tracing-stale-{}.db", std::process::id()));
        remove_database(&path);
        let mut connection = Connection::open(&path).unwrap();
        configure(&connection, WRITER_CACHE_KIB, 0).unwrap();
        migrate(&mut connection).unwrap();
        let store = |name: &str| {
            let span = Span {
                trace_id: TraceId([3; 16]),
                span_id: mlflow_tracing_core::SpanId([4; 8]),
                parent_id: None,
                name: name.into(),
                start_time_unix_nano: 1_000_000,
                end_time_unix_nano: Some(2_000_000),
                status: mlflow_tracing_core::SpanStatus::ok(),
                attributes: mlflow_tracing_core::Attributes::default(),
                events: Vec::new(),
                links: Vec::new(),
            };
            store_spans(
                &connection,
                "0",
                &prepare_spans("0", &[span], None),
                &BTreeMap::new(),
            )
        };
        store("first").unwrap();
        // As if the writer had indexed everything stored so far.
        connection
            .execute_batch(
                "UPDATE span_text_progress SET indexed_through = (SELECT MAX(rowid) FROM spans)",
            )
            .unwrap();
        store("second").unwrap();
        store("third").unwrap();
        let (stale, name): (i64, String) = connection
            .query_row(
                "SELECT (SELECT COUNT(*) FROM span_text_stale), (SELECT name FROM spans)",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        assert_eq!((stale, name.as_str()), (1, "third"));
        drop(connection);
        remove_database(&path);
    }
}
