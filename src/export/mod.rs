//! Export of a simulation's events to files: the Amplitude Export API layout (hourly gzipped
//! JSON lines), HTTP V2 JSON lines per day, and Parquet per day.
//!
//! The exporter consumes events in time order (what `StreamEvents` sends) and writes them
//! incrementally: memory holds one open file per format (plus, for Parquet, one row group, and for
//! the Amplitude layout the group properties set so far), never the range. Every file is written under a temporary name (`.<name>.partial`) and renamed to its
//! final name once complete and synced, so an interrupted export never leaves a truncated file
//! under a final name.
//!
//! [`export_stream`] runs the writer on its own thread, fed through a bounded channel, so that
//! receiving and decoding the stream overlaps with formatting and compressing.

pub mod amplitude;
mod files;
pub mod jsonl;
pub mod labels;
pub mod parquet;

use crate::wire::{EventBatch, EventView};
use chrono::NaiveDate;
use std::path::PathBuf;

pub use files::FileInfo;

/// Milliseconds in a day.
const DAY_MS: i64 = 86_400_000;

/// The file formats `ampsim export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Amplitude Export API layout: `<project>_<yyyy-MM-dd>_<H>#<n>.json.gz`, one or more
    /// gzipped JSON-lines files per UTC hour, with the export field set.
    AmplitudeExport,
    /// HTTP V2 event objects (as `ampsim events` prints them), one per line,
    /// `<simulation>_<yyyy-MM-dd>.jsonl` per UTC day.
    Jsonl,
    /// Typed columns, `<simulation>_<yyyy-MM-dd>.parquet` per UTC day (zstd).
    Parquet,
    /// The ground truth of every user as of the last generated day, one Parquet file
    /// `<simulation>_labels.parquet` (ExportLabels; [`ampsim_engine::labels`]).
    Labels,
}

impl Format {
    /// Every format, in the order help texts list them.
    pub const ALL: [Format; 4] = [
        Format::AmplitudeExport,
        Format::Jsonl,
        Format::Parquet,
        Format::Labels,
    ];

    /// The format's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Format::AmplitudeExport => "amplitude-export",
            Format::Jsonl => "jsonl",
            Format::Parquet => "parquet",
            Format::Labels => "labels",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Format::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Format::ALL.iter().map(|f| f.name()).collect();
                format!("unknown format {s:?} (one of: {})", names.join(", "))
            })
    }
}

/// What to export and where.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// The file format.
    pub format: Format,
    /// The output directory (created if missing).
    pub out_dir: PathBuf,
    /// The simulation's id: part of the `jsonl` and `parquet` file names.
    pub simulation_id: String,
    /// First day of the range (UTC), inclusive: files of days in the range are this export's.
    pub from: NaiveDate,
    /// Last day of the range (UTC), inclusive.
    pub to: NaiveDate,
    /// The Amplitude project id: `app` in every exported event and the file name prefix
    /// (amplitude-export only).
    pub project_id: u64,
    /// Most events per amplitude-export file; an hour with more gets parts `#1`, `#2`, ...
    pub part_size: u64,
    /// Gzip level (0-9) of amplitude-export files.
    pub gzip_level: u32,
    /// Replace this export's files left by an earlier export of the same format and range
    /// (they are deleted first, so no stale part survives); without it such files are an error.
    pub overwrite: bool,
    /// How the Export layout shows the simulation's devices (`device_family`, `device_type`):
    /// from its scenario (amplitude-export only).
    pub device_names: ampsim_engine::clients::ExportDeviceNames,
}

/// What an export wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportSummary {
    /// The files, in the order they were completed (time order).
    pub files: Vec<FileInfo>,
    /// Events written.
    pub events: u64,
    /// Bytes written (sum of the files' sizes).
    pub bytes: u64,
}

/// What can go wrong in an export.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Files of this export exist already and overwriting was not asked for.
    #[error("{count} file(s) of this export exist already in {dir} (e.g. {example}); pass --overwrite to replace them")]
    Exists {
        /// The output directory.
        dir: PathBuf,
        /// How many files are in the way.
        count: usize,
        /// One of them.
        example: String,
    },
    /// The Parquet writer failed.
    #[error("parquet: {0}")]
    Parquet(#[from] ::parquet::errors::ParquetError),
    /// The event stream failed.
    #[error("event stream: {0}")]
    Stream(String),
    /// An event of the stream does not decode.
    #[error("event stream: {0}")]
    Decode(#[from] crate::wire::WireError),
    /// An event came before the previous one: files already completed would be wrong.
    #[error("events out of time order: {time} after {previous} (insert_id {insert_id})")]
    OutOfOrder {
        /// The event's time, ms.
        time: i64,
        /// The previous event's time, ms.
        previous: i64,
        /// The event's insert_id.
        insert_id: String,
    },
    /// An event's day is outside the export's range.
    #[error("event at {time} ms is outside the range {from}..={to} (insert_id {insert_id})")]
    OutOfRange {
        /// The event's time, ms.
        time: i64,
        /// The range's first day.
        from: NaiveDate,
        /// The range's last day.
        to: NaiveDate,
        /// The event's insert_id.
        insert_id: String,
    },
    /// The server's files do not add up: a chunk out of order or out of the range, or a file
    /// whose size is not what the server announced.
    #[error("the server's files: {0}")]
    BadFile(String),
    /// The writer thread panicked.
    #[error("the export writer thread panicked")]
    WriterPanicked,
}

/// The export's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A writer of one format: consumes events in time order, completes files as it goes.
trait FormatWriter: Send {
    /// Writes one event (its day is in the range and its time not before the previous one's).
    fn write(&mut self, e: &EventView<'_>) -> Result<()>;
    /// Completes the open file; returns every completed file.
    fn finish(self: Box<Self>) -> Result<Vec<FileInfo>>;
}

/// Writes events in time order into files of one format. Files under final names are always
/// complete; dropping an exporter without [`Exporter::finish`] discards the file in progress.
pub struct Exporter {
    writer: Box<dyn FormatWriter>,
    from_ms: i64,
    to_end_ms: i64,
    opts: ExportOptions,
    last_time: i64,
    events: u64,
}

impl Exporter {
    /// Prepares the output directory (see [`prepare_out_dir`]) and an exporter for `opts`.
    ///
    /// # Errors
    /// [`Error::Io`] if the directory cannot be created or read; [`Error::Exists`] if files of
    /// this export are there and `opts.overwrite` is false.
    pub fn new(opts: &ExportOptions) -> Result<Self> {
        prepare_out_dir(opts)?;
        let writer: Box<dyn FormatWriter> = match opts.format {
            Format::AmplitudeExport => Box::new(amplitude::AmplitudeWriter::new(opts)),
            Format::Jsonl => Box::new(jsonl::JsonlWriter::new(opts)),
            Format::Parquet => Box::new(parquet::ParquetWriter::new(opts)),
            Format::Labels => {
                return Err(Error::BadFile(
                    "labels are not written from events: they come from ExportLabels".into(),
                ))
            }
        };
        Ok(Exporter {
            writer,
            from_ms: day_start_ms(opts.from),
            to_end_ms: day_start_ms(opts.to) + DAY_MS,
            opts: opts.clone(),
            last_time: i64::MIN,
            events: 0,
        })
    }

    /// Writes a batch's events (in time order, continuing the previous calls).
    ///
    /// # Errors
    /// [`Error::Decode`] for an event that does not decode; [`Error::OutOfOrder`] or
    /// [`Error::OutOfRange`] for an event that breaks the order or leaves the range; I/O and
    /// Parquet errors.
    pub fn write(&mut self, batch: &EventBatch) -> Result<()> {
        for e in batch.iter() {
            let e = e?;
            let time = e.time();
            if time < self.last_time {
                return Err(Error::OutOfOrder {
                    time,
                    previous: self.last_time,
                    insert_id: e.insert_id().to_string(),
                });
            }
            if time < self.from_ms || time >= self.to_end_ms {
                return Err(Error::OutOfRange {
                    time,
                    from: self.opts.from,
                    to: self.opts.to,
                    insert_id: e.insert_id().to_string(),
                });
            }
            self.last_time = time;
            self.writer.write(&e)?;
            self.events += 1;
        }
        Ok(())
    }

    /// Completes the last file and returns what was written.
    ///
    /// # Errors
    /// I/O and Parquet errors.
    pub fn finish(self) -> Result<ExportSummary> {
        let files = self.writer.finish()?;
        Ok(ExportSummary {
            bytes: files.iter().map(|f| f.bytes).sum(),
            events: self.events,
            files,
        })
    }
}

/// Progress of [`export_stream`], reported after each batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Events received so far.
    pub events: u64,
    /// Time of the last event received, ms (0 before the first).
    pub last_time_ms: i64,
}

/// A message to the writer thread.
enum Msg {
    Batch(EventBatch),
    /// The stream ended normally: complete the last file.
    Finish,
}

/// Exports a stream of event batches (in time order, e.g. a `StreamEvents` response): prepares
/// the directory, then writes on a separate thread while receiving, calling `progress` after
/// each batch. If the stream fails, the files completed so far stay and the one in progress is
/// discarded.
///
/// # Errors
/// [`Error::Stream`] when the stream fails; whatever [`Exporter::new`], [`Exporter::write`] or
/// [`Exporter::finish`] report.
pub async fn export_stream<S, E>(
    mut stream: S,
    opts: &ExportOptions,
    mut progress: impl FnMut(Progress),
) -> Result<ExportSummary>
where
    S: tokio_stream::Stream<Item = std::result::Result<crate::wire::EventBatch, E>> + Unpin,
    E: std::fmt::Display,
{
    use tokio_stream::StreamExt;
    let mut exporter = Exporter::new(opts)?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Msg>(8);
    let writer = std::thread::Builder::new()
        .name("ampsim-export".into())
        .spawn(move || -> Result<Option<ExportSummary>> {
            while let Some(msg) = rx.blocking_recv() {
                match msg {
                    Msg::Batch(b) => exporter.write(&b)?,
                    Msg::Finish => return exporter.finish().map(Some),
                }
            }
            Ok(None) // the sender gave up: drop the file in progress
        })
        .map_err(|source| Error::Io {
            path: opts.out_dir.clone(),
            source,
        })?;
    let mut seen = Progress {
        events: 0,
        last_time_ms: 0,
    };
    let mut failure = None;
    while let Some(item) = stream.next().await {
        match item {
            Ok(batch) => {
                // Events are decoded (and checked) by the writer thread; here only the last
                // one's time is read, for the progress line.
                match batch.last() {
                    Some(Ok(last)) => seen.last_time_ms = last.time(),
                    Some(Err(e)) => {
                        failure = Some(Error::Decode(e));
                        break;
                    }
                    None => {}
                }
                seen.events += batch.len() as u64;
                if tx.send(Msg::Batch(batch)).await.is_err() {
                    break; // the writer stopped on an error; it is reported below
                }
                progress(seen);
            }
            Err(e) => {
                failure = Some(Error::Stream(e.to_string()));
                break;
            }
        }
    }
    if failure.is_none() {
        let _ = tx.send(Msg::Finish).await;
    }
    drop(tx);
    let written = tokio::task::spawn_blocking(move || writer.join())
        .await
        .map_err(|_| Error::WriterPanicked)?
        .map_err(|_| Error::WriterPanicked)?;
    match (written, failure) {
        (Err(e), _) => Err(e),
        (Ok(_), Some(e)) => Err(e),
        (Ok(Some(summary)), None) => Ok(summary),
        (Ok(None), None) => Err(Error::WriterPanicked),
    }
}

/// Creates the output directory and checks it for this export's files (same format, and for
/// `amplitude-export` the same project, on a day of the range): with `overwrite` they are
/// deleted, together with leftover temporary files of an interrupted export; without it they
/// are an error. Other files are left alone.
///
/// # Errors
/// [`Error::Io`] if the directory cannot be created, read or cleaned; [`Error::Exists`].
pub fn prepare_out_dir(opts: &ExportOptions) -> Result<()> {
    let dir = &opts.out_dir;
    let io = |source| Error::Io {
        path: dir.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut ours = Vec::new();
    let mut partial = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let name = entry.map_err(io)?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(inner) = name
            .strip_prefix('.')
            .and_then(|n| n.strip_suffix(files::PARTIAL_SUFFIX))
        {
            if file_day(opts, inner).is_some_and(|d| d >= opts.from && d <= opts.to) {
                partial.push(name.to_string());
            }
        } else if file_day(opts, name).is_some_and(|d| d >= opts.from && d <= opts.to) {
            ours.push(name.to_string());
        }
    }
    ours.sort();
    if !opts.overwrite && !ours.is_empty() {
        return Err(Error::Exists {
            dir: dir.clone(),
            count: ours.len(),
            example: ours[0].clone(),
        });
    }
    for name in ours.iter().chain(&partial) {
        let path = dir.join(name);
        std::fs::remove_file(&path).map_err(|source| Error::Io { path, source })?;
    }
    Ok(())
}

/// The day of a file name of this export's format (and project or simulation), if it is one.
fn file_day(opts: &ExportOptions, name: &str) -> Option<NaiveDate> {
    let date = match opts.format {
        Format::AmplitudeExport => {
            let rest = name
                .strip_prefix(&format!("{}_", opts.project_id))?
                .strip_suffix(".json.gz")?;
            let (date, hour_part) = rest.split_once('_')?;
            let (hour, part) = hour_part.split_once('#')?;
            let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            if !digits(hour) || !digits(part) {
                return None;
            }
            date
        }
        Format::Jsonl => name
            .strip_prefix(&format!("{}_", opts.simulation_id))?
            .strip_suffix(".jsonl")?,
        Format::Parquet => name
            .strip_prefix(&format!("{}_", opts.simulation_id))?
            .strip_suffix(".parquet")?,
        // One file, whatever the range: always in it.
        Format::Labels => {
            return (name == labels::file_name(&opts.simulation_id)).then_some(opts.from)
        }
    };
    crate::validate::parse_ymd(date).ok()
}

/// Milliseconds since the epoch of a day's midnight (UTC).
fn day_start_ms(d: NaiveDate) -> i64 {
    d.and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc()
        .timestamp_millis()
}

/// The UTC day of a time in ms.
fn day_of(time_ms: i64) -> NaiveDate {
    chrono::DateTime::from_timestamp_millis(time_ms.div_euclid(DAY_MS) * DAY_MS)
        .expect("in chrono's range")
        .date_naive()
}
