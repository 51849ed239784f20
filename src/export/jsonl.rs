//! `jsonl`: one file per UTC day, `<simulation>_<yyyy-MM-dd>.jsonl`, holding the day's events
//! as HTTP V2 JSON objects, one per line, exactly as `ampsim events` prints them
//! ([`EventView::write_json`]). Uncompressed, so a day's file is byte-identical to
//! `ampsim events --from D --to D`.

use super::files::{io_err, FileInfo, Staged};
use super::{day_of, ExportOptions, FormatWriter, Result};
use crate::wire::EventView;
use chrono::NaiveDate;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

/// The open day file.
struct DayFile {
    day: NaiveDate,
    staged: Staged,
    out: BufWriter<File>,
    events: u64,
}

/// Writes `jsonl` day files.
pub(super) struct JsonlWriter {
    dir: PathBuf,
    simulation_id: String,
    open: Option<DayFile>,
    done: Vec<FileInfo>,
    line: Vec<u8>,
}

/// The file name of a day.
pub fn file_name(simulation_id: &str, day: NaiveDate) -> String {
    format!("{simulation_id}_{}.jsonl", day.format("%Y-%m-%d"))
}

impl JsonlWriter {
    pub(super) fn new(opts: &ExportOptions) -> Self {
        JsonlWriter {
            dir: opts.out_dir.clone(),
            simulation_id: opts.simulation_id.clone(),
            open: None,
            done: Vec::new(),
            line: Vec::with_capacity(2048),
        }
    }

    fn close(&mut self) -> Result<()> {
        if let Some(f) = self.open.take() {
            self.done.push(f.staged.commit(f.out, f.events)?);
        }
        Ok(())
    }
}

impl FormatWriter for JsonlWriter {
    fn write(&mut self, e: &EventView<'_>) -> Result<()> {
        let day = day_of(e.time());
        if self.open.as_ref().is_some_and(|f| f.day != day) {
            self.close()?;
        }
        let f = match &mut self.open {
            Some(f) => f,
            None => {
                let (staged, out) =
                    Staged::create(&self.dir, &file_name(&self.simulation_id, day))?;
                self.open.insert(DayFile {
                    day,
                    staged,
                    out,
                    events: 0,
                })
            }
        };
        self.line.clear();
        e.write_json(&mut self.line);
        self.line.push(b'\n');
        f.out
            .write_all(&self.line)
            .map_err(io_err(f.staged.path()))?;
        f.events += 1;
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<Vec<FileInfo>> {
        self.close()?;
        Ok(self.done)
    }
}
