//! `parquet`: one file per UTC day, `<simulation>_<yyyy-MM-dd>.parquet`, written by the one
//! Parquet writer ([`crate::columnar`]: the engine's Arrow schema, zstd, row groups of about
//! [`ROW_GROUP_ROWS`] events). Columns are the [event schema](ampsim_engine::schema)'s fields
//! in its order under their HTTP V2 names, typed as [`ampsim_engine::columns`] describes
//! (`time` a UTC millisecond timestamp, numbers as numbers, property maps as JSON text);
//! [`crate::columnar::schema_text`] prints the Parquet message type.
//!
//! Events arrive one at a time from the stream; they are gathered into Arrow batches of
//! [`columns::BATCH_ROWS`] and handed to the writer.

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
            vec![
                ("ampsim.simulation_id".into(), self.simulation_id.clone()),
                ("ampsim.date".into(), day.format("%Y-%m-%d").to_string()),
            ],
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
