//! SQLite persistence. Architecture Invariant: all SQL lives under `store`.
//!
//! One database file holds any number of simulations. The file is in WAL mode, so readers run
//! alongside the one writer; each generated day is one transaction (see [`days::commit_day`]).
//! Migrations are the plain SQL files in `migrations/`, applied in order and recorded in
//! `schema_migrations` and `PRAGMA user_version`.

pub mod days;
pub mod sims;

use crate::error::{Error, Result};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};

/// `PRAGMA application_id` of an ampsim database ("amps").
pub const APPLICATION_ID: i32 = 0x616d_7073;

/// The migrations, in order: (version, name, SQL).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "0001_init.sql",
        include_str!("../../migrations/0001_init.sql"),
    ),
    (
        2,
        "0002_simulation_uid.sql",
        include_str!("../../migrations/0002_simulation_uid.sql"),
    ),
    (
        3,
        "0003_first_day.sql",
        include_str!("../../migrations/0003_first_day.sql"),
    ),
    (
        4,
        "0004_chunk_bits.sql",
        include_str!("../../migrations/0004_chunk_bits.sql"),
    ),
];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// A database file, opened and migrated. Workers take connections from its pool.
///
/// The store keeps one connection open for as long as it lives. In WAL mode SQLite deletes the
/// `-wal` and `-shm` files when the last connection closes, and the next connection must
/// create them again: on a full disk that fails, and every RPC, reads included, would fail
/// with it. With the files kept, reads go on working on a full disk.
#[derive(Debug, Clone)]
pub struct Store {
    path: PathBuf,
    max_bytes: Option<u64>,
    pool: std::sync::Arc<Pool>,
}

/// Idle connections for reuse, and the one that keeps the WAL files in place.
struct Pool {
    idle: std::sync::Mutex<Vec<Connection>>,
    _keeper: std::sync::Mutex<Connection>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").finish_non_exhaustive()
    }
}

/// Idle connections kept for reuse; more are opened when needed and closed when returned.
const POOL_IDLE: usize = 16;

impl Store {
    /// Opens (creating if needed) and migrates the database at `path`.
    ///
    /// A file that is not an ampsim database, or that was written by a newer ampsim (a
    /// higher schema version), is refused and left untouched.
    ///
    /// # Errors
    /// [`Error::Database`] for a foreign or newer file; [`Error::Storage`] for SQLite errors.
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        Self::open_with_limit(path, None)
    }

    /// [`Store::open`] with a size limit: a day whose commit would grow the file past
    /// `max_bytes` fails with [`Error::ResourceExhausted`] and is rolled back, as on a full
    /// disk.
    ///
    /// # Errors
    /// As [`Store::open`].
    pub fn open_with_limit(path: impl AsRef<Path>, max_bytes: Option<u64>) -> Result<Store> {
        let path = path.as_ref().to_path_buf();
        check_header(&path)?;
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| Error::Database(format!("cannot open {}: {e}", path.display())))?;
        check_file(&conn, &path)?;
        configure(&conn, None)?;
        migrate(&conn, &path)?;
        configure(&conn, max_bytes)?;
        Ok(Store {
            path,
            max_bytes,
            pool: std::sync::Arc::new(Pool {
                idle: std::sync::Mutex::new(Vec::new()),
                _keeper: std::sync::Mutex::new(conn),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A new connection with the store's settings, for one worker or request.
    ///
    /// # Errors
    /// [`Error::Storage`] if SQLite cannot open the file.
    pub fn connect(&self) -> Result<Conn> {
        let idle = self
            .pool
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        let conn = match idle {
            Some(c) => c,
            None => {
                let conn = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                configure(&conn, self.max_bytes)?;
                conn
            }
        };
        Ok(Conn {
            conn: Some(conn),
            pool: self.pool.clone(),
        })
    }

    /// Moves everything in the write-ahead log into the database file and truncates the log,
    /// so the file's size is the data's (the benchmark measures it).
    ///
    /// # Errors
    /// Storage errors.
    pub fn checkpoint(&self) -> Result<()> {
        let conn = self.connect()?;
        conn.raw()
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }
}

/// A connection to the store, for one worker or request, back to the pool when dropped. Only
/// `store` can run SQL on it: the SQLite connection inside is private to this module.
pub struct Conn {
    conn: Option<Connection>,
    pool: std::sync::Arc<Pool>,
}

impl Conn {
    fn raw(&self) -> &Connection {
        self.conn.as_ref().expect("present until dropped")
    }

    fn raw_mut(&mut self) -> &mut Connection {
        self.conn.as_mut().expect("present until dropped")
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        // A connection left inside a transaction (it cannot be, but if) is not reused.
        if !conn.is_autocommit() {
            return;
        }
        let mut idle = self
            .pool
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if idle.len() < POOL_IDLE {
            idle.push(conn);
        }
    }
}

/// An SQLite error, kept opaque outside `store`.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct SqlError(#[from] rusqlite::Error);

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Storage(SqlError(e))
    }
}

impl From<rusqlite::types::FromSqlError> for Error {
    fn from(e: rusqlite::types::FromSqlError) -> Self {
        Error::Corrupt(format!("unexpected column type: {e}"))
    }
}

/// Before SQLite touches an existing file: refuses one marked read-only, one that is not an
/// SQLite file, and one shorter than its own header says (truncated), each with that cause.
fn check_header(path: &Path) -> Result<()> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(()); // a new file
    };
    let shown = path.display();
    if meta.permissions().readonly() {
        return Err(Error::Database(format!(
            "{shown} is read-only (its permissions allow no writes): ampsim writes to its database and creates {shown}-wal beside it; make it writable or use another --db"
        )));
    }
    if meta.len() == 0 {
        return Ok(()); // SQLite makes an empty file a new database
    }
    let mut head = [0u8; 100];
    let n = {
        use std::io::Read;
        let mut f = std::fs::File::open(path)
            .map_err(|e| Error::Database(format!("cannot read {shown}: {e}")))?;
        let mut n = 0;
        while n < head.len() {
            match f.read(&mut head[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) => return Err(Error::Database(format!("cannot read {shown}: {e}"))),
            }
        }
        n
    };
    if n < head.len() || &head[..16] != b"SQLite format 3\0" {
        return Err(Error::Database(format!(
            "{shown} is not an ampsim database (not an SQLite file); it was left untouched"
        )));
    }
    let page = match u32::from(u16::from_be_bytes([head[16], head[17]])) {
        1 => 65_536,
        p => u64::from(p),
    };
    let pages = u64::from(u32::from_be_bytes([head[28], head[29], head[30], head[31]]));
    // The in-header size is valid when its "version-valid-for" number equals the change counter.
    // With a write-ahead log beside the file the header may run ahead of it (a checkpoint
    // killed half-way writes page 1 first), and SQLite completes the file from the log.
    let size_valid = head[92..96] == head[24..28];
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let has_log = std::fs::metadata(std::path::PathBuf::from(wal)).is_ok_and(|m| m.len() > 0);
    if size_valid && !has_log && page * pages > meta.len() {
        return Err(Error::Database(format!(
            "{shown} is truncated: it has {} bytes, its header says {} ({pages} pages of {page}); it was left untouched. Restore it from a copy",
            meta.len(),
            page * pages
        )));
    }
    Ok(())
}

/// Refuses files that are not ampsim databases or that come from a newer schema, before
/// anything is written to them.
fn check_file(conn: &Connection, path: &Path) -> Result<()> {
    let not_sqlite = |e: rusqlite::Error| {
        Error::Database(format!(
            "{} cannot be read as an SQLite database ({e}): damaged, or not an ampsim database; it was left untouched",
            path.display()
        ))
    };
    let app_id: i32 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(not_sqlite)?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(not_sqlite)?;
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .map_err(not_sqlite)?;
    if app_id != APPLICATION_ID && (tables > 0 || app_id != 0) {
        return Err(Error::Database(format!(
            "{} is not an ampsim database (application_id {app_id:#x}, {tables} schema objects); it was left untouched",
            path.display()
        )));
    }
    if version > SCHEMA_VERSION {
        return Err(Error::Database(format!(
            "{} has schema version {version}, newer than this ampsim supports ({SCHEMA_VERSION}); upgrade ampsim. The file was left untouched",
            path.display()
        )));
    }
    Ok(())
}

fn configure(conn: &Connection, max_bytes: Option<u64>) -> Result<()> {
    if let Some(max) = max_bytes {
        let page: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        conn.pragma_update(
            None,
            "max_page_count",
            (max / page.max(1) as u64).max(1) as i64,
        )?;
    }
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "cache_size", -65_536)?; // 64 MiB
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(())
}

fn migrate(conn: &Connection, path: &Path) -> Result<()> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for &(version, name, sql) in MIGRATIONS {
        if version <= current {
            continue;
        }
        tracing::info!(db = %path.display(), migration = name, "applying migration");
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL
            ) STRICT;",
        )?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            rusqlite::params![version, name, chrono::Utc::now().to_rfc3339()],
        )?;
        tx.pragma_update(None, "user_version", version)?;
        tx.pragma_update(None, "application_id", APPLICATION_ID)?;
        tx.commit()?;
    }
    Ok(())
}

/// Maps SQLite's "disk full" to [`Error::ResourceExhausted`]; other errors pass through.
pub(crate) fn storage_error(e: rusqlite::Error) -> Error {
    if let rusqlite::Error::SqliteFailure(f, _) = &e {
        if f.code == rusqlite::ErrorCode::DiskFull {
            return Error::ResourceExhausted(format!("the database disk is full: {e}"));
        }
    }
    Error::Storage(SqlError(e))
}
