//! The ground-truth labels of a simulation ([`ampsim_engine::labels`]) as one Parquet file:
//! what ExportLabels streams and `ampsim export --format labels` saves.
//!
//! Every user's latest state is in exactly one `user_states` blob; the blobs are decoded and
//! turned into Arrow batches on all cores, a window of blobs at a time, and written through the
//! parquet crate's Arrow writer (zstd, row groups of [`ROW_GROUP_ROWS`]). The file's bytes go
//! to the sink as they are written, in pieces of at most the sink's size, so memory holds about
//! one row group, never the file. Rows are in the store's order of states, not device order.

use super::App;
use crate::error::{Error, Result};
use crate::store::days::{self, Packed};
use crate::store::sims::{self, SimRow};
use crate::store::Conn;
use crate::validate::validate_id;
use ampsim_engine::labels::LabelsBuilder;
use ampsim_engine::{codec, Engine};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use rayon::prelude::*;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Users per row group of a labels file.
pub const ROW_GROUP_ROWS: usize = 1 << 20;

/// State blobs decoded at once (in parallel) before their batches are written.
const WINDOW: usize = 64;

/// A piece of the labels file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelsPiece {
    /// The next bytes of the file.
    pub data: Vec<u8>,
    /// Whether the file is complete after this piece.
    pub last: bool,
    /// On the last piece: the users (rows) in the file.
    pub users: u64,
    /// On the last piece: the file's size in bytes.
    pub size: u64,
}

/// A labels export ready to run: the simulation's states as of its last committed day.
pub struct LabelsExport {
    engine: Arc<Engine>,
    conn: Conn,
    sim: SimRow,
    shutdown: CancellationToken,
}

impl LabelsExport {
    /// The last generated date: what the labels are as of.
    pub fn as_of(&self) -> chrono::NaiveDate {
        self.engine.date_of(self.sim.days_generated - 1)
    }

    /// Writes the file, handing it to `sink` in pieces of at most `piece_bytes` until it
    /// returns false.
    ///
    /// # Errors
    /// Storage errors; [`Error::Corrupt`] for states that do not decode or check.
    pub fn run(self, piece_bytes: usize, mut sink: impl FnMut(LabelsPiece) -> bool) -> Result<()> {
        let engine = &*self.engine;
        let blobs = days::state_blobs(&self.conn, &self.sim.handle())?;
        let bug = |e: parquet::errors::ParquetError| {
            Error::Bug(format!("writing the labels' Parquet file: {e}"))
        };
        let as_of = self.sim.days_generated - 1;
        let schema = LabelsBuilder::new(engine, as_of).schema();
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).map_err(bug)?))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_key_value_metadata(Some(vec![parquet::file::metadata::KeyValue::new(
                "ampsim.simulation_id".to_string(),
                self.sim.id.clone(),
            )]))
            .build();
        let mut w = ArrowWriter::try_new(Vec::new(), schema, Some(props)).map_err(bug)?;
        let piece_bytes = piece_bytes.max(1);
        let (mut sent, mut users) = (0u64, 0u64);
        // Sends what the writer has put out, in whole pieces.
        let mut drain = |w: &mut ArrowWriter<Vec<u8>>| -> Option<()> {
            let buf = w.inner_mut();
            let mut start = 0;
            while buf.len() - start >= piece_bytes {
                let end = (start + piece_bytes).min(buf.len());
                sent += (end - start) as u64;
                if !sink(LabelsPiece {
                    data: buf[start..end].to_vec(),
                    last: false,
                    users: 0,
                    size: 0,
                }) {
                    return None;
                }
                start = end;
            }
            buf.drain(..start);
            Some(())
        };
        for window in blobs.chunks(WINDOW) {
            if self.shutdown.is_cancelled() {
                return Err(Error::Unavailable("server is shutting down".into()));
            }
            let batches = window
                .par_iter()
                .map(|blob| labels_of(engine, as_of, blob))
                .collect::<Result<Vec<_>>>()?;
            for b in batches.into_iter().flatten() {
                users += b.num_rows() as u64;
                w.write(&b).map_err(bug)?;
            }
            if drain(&mut w).is_none() {
                return Ok(());
            }
        }
        w.finish().map_err(bug)?;
        let rest = std::mem::take(w.inner_mut());
        let size = sent + rest.len() as u64;
        // The footer is never empty, so there is a last piece to carry the totals.
        let mut pieces = rest.chunks(piece_bytes).peekable();
        while let Some(p) = pieces.next() {
            let last = pieces.peek().is_none();
            if !sink(LabelsPiece {
                data: p.to_vec(),
                last,
                users: if last { users } else { 0 },
                size: if last { size } else { 0 },
            }) {
                return Ok(());
            }
        }
        Ok(())
    }
}

/// The labels of the states in one blob, as a batch (none for an empty blob).
fn labels_of(
    engine: &Engine,
    as_of: u32,
    blob: &Packed,
) -> Result<Option<arrow_array::RecordBatch>> {
    let mut b = LabelsBuilder::new(engine, as_of);
    let mut bad = Ok(());
    codec::for_each_state(&blob.unpack()?, |s| match engine.check_state(&s) {
        Ok(()) => b.push_state(&s),
        Err(e) => bad = Err(e),
    })
    .and(bad)
    .map_err(|e| Error::Corrupt(format!("user states: {e}")))?;
    Ok((!b.is_empty()).then(|| b.finish()))
}

impl App {
    /// Prepares the labels of a simulation as of its last committed day.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a malformed id, [`Error::NotFound`],
    /// [`Error::FailedPrecondition`] with no generated days.
    pub fn prepare_labels(&self, id: &str) -> Result<LabelsExport> {
        validate_id(id)?;
        let conn = self.store.connect()?;
        let sim = sims::get(&conn, id)?;
        if sim.emitted_days() == 0 {
            return Err(Error::FailedPrecondition(format!(
                "simulation {id:?} has no generated days yet"
            )));
        }
        let engine = self.engine(&sim)?;
        Ok(LabelsExport {
            engine,
            conn,
            sim,
            shutdown: self.shutdown.clone(),
        })
    }
}
