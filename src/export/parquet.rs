//! `parquet`: one file per UTC day, `<simulation>_<yyyy-MM-dd>.parquet`, written by the one
//! Parquet writer ([`crate::columnar`]: the engine's Arrow schema, zstd, row groups of about
//! [`ROW_GROUP_ROWS`] events). Columns are the [event schema](ampsim_engine::schema)'s fields
//! in its order under their HTTP V2 names, typed as [`ampsim_engine::columns`] describes
//! (`time` a UTC millisecond timestamp, numbers as numbers, property maps as JSON text);
//! [`crate::columnar::schema_text`] prints the Parquet message type.
//!
//! Two sources, one writer: [`save_server_files`] saves the files the server wrote
//! (ExportParquet: the server renders Arrow columns straight from its stored records, what
//! `ampsim export --format parquet` uses), and the [`super::Exporter`] writes files from any
//! stream of events (e.g. StreamEvents), gathering them into Arrow batches of
//! [`columns::BATCH_ROWS`].

use super::files::{FileInfo, Staged};
use super::{day_of, ExportOptions, FormatWriter, Result};
use crate::columnar::ParquetSink;
use crate::wire::EventView;
use ampsim_engine::columns::{self, BatchBuilder};
use chrono::NaiveDate;
use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;

pub use crate::columnar::ROW_GROUP_ROWS;

/// The file name of a day.
pub fn file_name(simulation_id: &str, day: NaiveDate) -> String {
    format!("{simulation_id}_{}.parquet", day.format("%Y-%m-%d"))
}

/// The open day file.
struct DayFile {
    day: NaiveDate,
    staged: Staged,
    out: ParquetSink<BufWriter<File>>,
}

/// Writes `parquet` day files.
pub(super) struct ParquetWriter {
    dir: PathBuf,
    simulation_id: String,
    open: Option<DayFile>,
    batch: BatchBuilder,
    done: Vec<FileInfo>,
}

impl ParquetWriter {
    pub(super) fn new(opts: &ExportOptions) -> Self {
        ParquetWriter {
            dir: opts.out_dir.clone(),
            simulation_id: opts.simulation_id.clone(),
            open: None,
            batch: BatchBuilder::with_capacity(columns::BATCH_ROWS),
            done: Vec::new(),
        }
    }

    fn open(&mut self, day: NaiveDate) -> Result<()> {
        let (staged, out) = Staged::create(&self.dir, &file_name(&self.simulation_id, day))?;
        let out = ParquetSink::new(
            out,
            crate::columnar::export_metadata(&self.simulation_id, day),
            crate::columnar::ZSTD_LEVEL,
        )?;
        self.open = Some(DayFile { day, staged, out });
        Ok(())
    }

    /// Hands the gathered events to the file.
    fn flush_batch(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let f = self.open.as_mut().expect("events belong to the open file");
        f.out.write(self.batch.finish())?;
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        self.flush_batch()?;
        if let Some(f) = self.open.take() {
            let (out, events) = f.out.finish()?;
            self.done.push(f.staged.commit(out, events)?);
        }
        Ok(())
    }
}

impl FormatWriter for ParquetWriter {
    fn write(&mut self, e: &EventView<'_>) -> Result<()> {
        let day = day_of(e.time());
        if self.open.as_ref().is_some_and(|f| f.day != day) {
            self.close()?;
        }
        if self.open.is_none() {
            self.open(day)?;
        }
        self.batch.push(e);
        if self.batch.len() >= columns::BATCH_ROWS {
            self.flush_batch()?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<Vec<FileInfo>> {
        self.close()?;
        Ok(self.done)
    }
}

/// Saves the day files of an ExportParquet stream (chunks of one day after another, each day's
/// last chunk marked) under `<simulation>_<yyyy-MM-dd>.parquet` in `opts.out_dir`, each through
/// a temporary name and a rename once its last chunk is in, calling `progress` after each file.
/// Days must come in order within `opts.from..=opts.to`. If the stream fails, the files
/// completed so far stay and the one in progress is discarded.
///
/// # Errors
/// [`Error::Stream`] when the stream fails; [`Error::BadFile`] for chunks that do not make
/// whole files of the range in order; [`Error::Exists`] and I/O errors as for any export.
pub async fn save_server_files<S, E>(
    mut stream: S,
    opts: &ExportOptions,
    mut progress: impl FnMut(&FileInfo, NaiveDate),
) -> Result<super::ExportSummary>
where
    S: tokio_stream::Stream<Item = std::result::Result<crate::pb::FileChunk, E>> + Unpin,
    E: std::fmt::Display,
{
    use std::io::Write as _;
    use tokio_stream::StreamExt;
    super::prepare_out_dir(opts)?;
    let mut done: Vec<FileInfo> = Vec::new();
    let mut open: Option<(NaiveDate, Staged, BufWriter<File>, u64)> = None;
    let mut last_day: Option<NaiveDate> = None;
    let bad = |m: String| super::Error::BadFile(m);
    while let Some(item) = stream.next().await {
        let chunk = item.map_err(|e| super::Error::Stream(e.to_string()))?;
        let day = crate::validate::parse_ymd(&chunk.date)
            .map_err(|e| bad(format!("a chunk's date {:?}: {e}", chunk.date)))?;
        if open.as_ref().is_none_or(|o| o.0 != day) {
            if let Some(o) = &open {
                return Err(bad(format!("{} began before {} was complete", day, o.0)));
            }
            if day < opts.from || day > opts.to || last_day.is_some_and(|l| day <= l) {
                return Err(bad(format!(
                    "{day} is out of order or outside {}..={}",
                    opts.from, opts.to
                )));
            }
            let (staged, out) =
                Staged::create(&opts.out_dir, &file_name(&opts.simulation_id, day))?;
            open = Some((day, staged, out, 0));
        }
        let o = open.as_mut().expect("a file is open");
        // Blocking writes of at most 1 MiB into a buffered file: short enough for the runtime.
        o.2.write_all(&chunk.data)
            .map_err(super::files::io_err(o.1.path()))?;
        o.3 += chunk.data.len() as u64;
        if chunk.last {
            let (day, staged, out, written) = open.take().expect("a file is open");
            if written != chunk.size {
                return Err(bad(format!(
                    "the file of {day} has {written} bytes where the server announced {}",
                    chunk.size
                )));
            }
            // The flush, fsync and rename block: tell the runtime.
            let info = tokio::task::block_in_place(|| staged.commit(out, chunk.events))?;
            progress(&info, day);
            done.push(info);
            last_day = Some(day);
        }
    }
    if let Some((day, ..)) = open {
        return Err(bad(format!("the stream ended inside the file of {day}")));
    }
    Ok(super::ExportSummary {
        events: done.iter().map(|f| f.events).sum(),
        bytes: done.iter().map(|f| f.bytes).sum(),
        files: done,
    })
}
