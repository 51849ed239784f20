//! Parquet files of the engine's Arrow record batches ([`ampsim_engine::columns`]): the one
//! Parquet writer, behind `ampsim export --format parquet` and `ampsim generate --out`.
//!
//! Written with the parquet crate's Arrow writer: zstd, row groups of about
//! [`ROW_GROUP_ROWS`] events (batches are not split, so a group ends at the first batch
//! boundary past it), column statistics and dictionary encoding as the crate sets them. The
//! columns of a row group are encoded in parallel (one task per column on rayon's pool), the
//! way the crate documents for `ArrowColumnWriter`; the file's bytes do not depend on the
//! thread count.

use ::parquet::arrow::arrow_writer::{compute_leaves, ArrowRowGroupWriterFactory};
use ::parquet::arrow::{ArrowSchemaConverter, ArrowWriter};
use ::parquet::basic::{Compression, Encoding, ZstdLevel};
use ::parquet::errors::ParquetError;
use ::parquet::file::metadata::KeyValue;
use ::parquet::file::properties::{EnabledStatistics, WriterProperties};
use ::parquet::file::writer::SerializedFileWriter;
use ::parquet::schema::types::ColumnPath;
use ampsim_engine::columns;
use ampsim_engine::schema::FIELDS;
use arrow_array::RecordBatch;
use arrow_schema::DataType;
use rayon::prelude::*;
use std::io::Write;

/// Events per row group (at least): large enough for efficient scans (a row group of a
/// default-year day is a few MiB of zstd), small enough that the batches buffered for one stay
/// in the tens of MiB.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

/// The default zstd level (`generate --out --zstd-level` chooses another): level 1 is the
/// cheapest to write, and on 20 days at scale 0.3 it also wrote smaller files than 3 (68.3 vs
/// 70.3 MB; README).
pub const ZSTD_LEVEL: i32 = 1;

/// Rows of the batches a day is rendered into before it is written (row groups still hold at
/// least [`ROW_GROUP_ROWS`]): a batch of 4096 events keeps the columns being built within the
/// cores' caches. 40 days at scale 0.5 took 8.4 s of CPU at 4096 rows, 8.8 s at 8192 and 9.3 s
/// at 65536 (`generate --out`).
pub const RENDER_ROWS: usize = 4096;

/// The footer metadata of an exported day file (`ampsim export --format parquet`).
pub fn export_metadata(simulation_id: &str, date: chrono::NaiveDate) -> Vec<(String, String)> {
    vec![
        ("ampsim.simulation_id".into(), simulation_id.to_string()),
        ("ampsim.date".into(), date.format("%Y-%m-%d").to_string()),
    ]
}

/// The Parquet schema's root name.
pub const SCHEMA_ROOT: &str = "ampsim_event";

/// The Parquet message type of events (what the Arrow schema converts to).
///
/// # Panics
/// Never: the schema is fixed and converts.
pub fn schema_text() -> String {
    let descr = ArrowSchemaConverter::new()
        .schema_root(SCHEMA_ROOT)
        .convert(&columns::schema())
        .expect("the event schema converts to Parquet");
    let mut out = Vec::new();
    ::parquet::schema::printer::print_schema(&mut out, descr.root_schema());
    String::from_utf8_lossy(&out).into_owned()
}

/// One Parquet file of events being written.
pub struct ParquetSink<W: Write + Send> {
    writer: SerializedFileWriter<W>,
    factory: ArrowRowGroupWriterFactory,
    pending: Vec<RecordBatch>,
    pending_rows: usize,
    rows: u64,
    row_groups: usize,
}

impl<W: Write + Send> ParquetSink<W> {
    /// Starts a file on `out`, with `metadata` as the footer's key-value metadata, compressed
    /// with zstd at `zstd_level` (1-22).
    ///
    /// # Errors
    /// A zstd level out of range; what the Parquet writer reports (an I/O error writing the
    /// magic bytes).
    pub fn new(
        out: W,
        metadata: Vec<(String, String)>,
        zstd_level: i32,
    ) -> Result<Self, ParquetError> {
        let mut props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(zstd_level)?))
            .set_max_row_group_row_count(Some(usize::MAX))
            // Unique per event: a dictionary never pays off, and trying one costs a hash and a
            // compare per value until the writer gives up on it.
            .set_column_dictionary_enabled(ColumnPath::from("insert_id"), false)
            // Times ascend within a row group: delta encoding stores a few bits per event
            // where a dictionary (nearly every millisecond distinct) gives up after trying.
            .set_column_dictionary_enabled(ColumnPath::from("time"), false)
            .set_column_encoding(ColumnPath::from("time"), Encoding::DELTA_BINARY_PACKED);
        // Min/max of strings prune nothing here (random ids, JSON text, and categories whose
        // every value is in every row group), and computing them compares every value: 6% of
        // the CPU of `generate --out` on the default year. Times and numbers keep theirs.
        for f in FIELDS
            .iter()
            .filter(|f| columns::data_type(f) == DataType::Utf8)
        {
            props = props
                .set_column_statistics_enabled(ColumnPath::from(f.name), EnabledStatistics::None);
        }
        let props = props
            .set_key_value_metadata(Some(
                metadata
                    .into_iter()
                    .map(|(k, v)| KeyValue::new(k, v))
                    .collect(),
            ))
            .build();
        let opts = ::parquet::arrow::arrow_writer::ArrowWriterOptions::new()
            .with_properties(props)
            .with_schema_root(SCHEMA_ROOT.to_string());
        let arrow = ArrowWriter::try_new_with_options(out, columns::schema(), opts)?;
        let (writer, factory) = arrow.into_serialized_writer()?;
        Ok(ParquetSink {
            writer,
            factory,
            pending: Vec::new(),
            pending_rows: 0,
            rows: 0,
            row_groups: 0,
        })
    }

    /// Adds a batch of events (of the [`columns::schema`]); writes a row group once enough
    /// rows are buffered.
    ///
    /// # Errors
    /// What the Parquet writer reports.
    pub fn write(&mut self, batch: RecordBatch) -> Result<(), ParquetError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.pending_rows += batch.num_rows();
        self.pending.push(batch);
        if self.pending_rows >= ROW_GROUP_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    /// Events written so far (buffered ones included).
    pub fn rows(&self) -> u64 {
        self.rows + self.pending_rows as u64
    }

    /// Writes the buffered batches as one row group, its columns encoded in parallel.
    fn flush(&mut self) -> Result<(), ParquetError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let writers = self.factory.create_column_writers(self.row_groups)?;
        let schema = columns::schema();
        let pending = &self.pending;
        let chunks = writers
            .into_par_iter()
            .enumerate()
            .map(|(i, mut w)| {
                let field = schema.field(i);
                for b in pending {
                    for leaf in compute_leaves(field, b.column(i))? {
                        w.write(&leaf)?;
                    }
                }
                w.close()
            })
            .collect::<Result<Vec<_>, ParquetError>>()?;
        let mut rg = self.writer.next_row_group()?;
        for c in chunks {
            c.append_to_row_group(&mut rg)?;
        }
        rg.close()?;
        self.row_groups += 1;
        self.rows += self.pending_rows as u64;
        self.pending.clear();
        self.pending_rows = 0;
        Ok(())
    }

    /// Writes what is buffered and the footer; returns the output and the number of events.
    ///
    /// # Errors
    /// What the Parquet writer reports.
    pub fn finish(mut self) -> Result<(W, u64), ParquetError> {
        self.flush()?;
        let rows = self.rows;
        Ok((self.writer.into_inner()?, rows))
    }
}
