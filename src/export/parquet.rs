//! `parquet`: one file per UTC day, `<simulation>_<yyyy-MM-dd>.parquet`, zstd-compressed, in
//! row groups of [`ROW_GROUP_ROWS`] events, with the columns of [`COLUMNS`] (the HTTP V2 field
//! names; see [`schema`] for the Parquet message type):
//!
//! - `time`: INT64 TIMESTAMP(MILLIS, UTC); `session_id` (-1 outside a session) and `event_id`:
//!   INT64.
//! - strings: BYTE_ARRAY annotated STRING (UTF-8); `user_id` optional (null before the user is
//!   identified), the device and location fields required.
//! - `event_properties`, `user_properties`: the JSON objects of the HTTP V2 form (sorted keys,
//!   string values) in STRING columns. JSON text loads the same way in DuckDB
//!   (`json_extract_string`), Spark (`get_json_object`, `from_json`) and BigQuery (`JSON_VALUE`,
//!   or `PARSE_JSON`); a Parquet MAP would load in BigQuery as a repeated key/value record.
//! - revenue, on purchases only (null elsewhere): `price` and `revenue` DOUBLE, `quantity`
//!   INT64, `productId` and `revenueType` STRING.
//!
//! Written with the crate's low-level column writers (no Arrow): the rows of one row group are
//! buffered, then written column by column.

use super::files::{FileInfo, Staged};
use super::{day_of, ExportOptions, FormatWriter, Result};
use crate::pb;
use ::parquet::basic::{Compression, ZstdLevel};
use ::parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type};
use ::parquet::file::metadata::KeyValue;
use ::parquet::file::properties::WriterProperties;
use ::parquet::file::writer::SerializedFileWriter;
use ::parquet::schema::types::Type;
use chrono::NaiveDate;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::sync::Arc;

/// Events per row group: large enough for efficient scans, small enough that the buffered rows
/// stay in the tens of MiB.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

/// How a column is taken from an event.
#[derive(Clone, Copy)]
pub enum Column {
    /// A required STRING.
    Str(fn(&pb::Event) -> &str),
    /// An optional STRING: null when empty.
    OptStr(fn(&pb::Event) -> &str),
    /// A required INT64.
    Int64(fn(&pb::Event) -> i64),
    /// A required INT64 TIMESTAMP(MILLIS, UTC).
    TimeMillis(fn(&pb::Event) -> i64),
    /// An optional INT64.
    OptInt64(fn(&pb::Event) -> Option<i64>),
    /// An optional DOUBLE.
    OptDouble(fn(&pb::Event) -> Option<f64>),
    /// A required STRING holding a JSON object.
    Json(fn(&pb::Event) -> &BTreeMap<String, String>),
}

/// The columns, in file order, with their names.
pub const COLUMNS: &[(&str, Column)] = &[
    ("event_type", Column::Str(|e| &e.event_type)),
    ("user_id", Column::OptStr(|e| &e.user_id)),
    ("device_id", Column::Str(|e| &e.device_id)),
    ("time", Column::TimeMillis(|e| e.time)),
    ("session_id", Column::Int64(|e| e.session_id)),
    ("insert_id", Column::Str(|e| &e.insert_id)),
    ("event_id", Column::Int64(|e| i64::from(e.event_id))),
    ("platform", Column::Str(|e| &e.platform)),
    ("os_name", Column::Str(|e| &e.os_name)),
    ("os_version", Column::Str(|e| &e.os_version)),
    ("device_family", Column::Str(|e| &e.device_family)),
    ("device_type", Column::Str(|e| &e.device_type)),
    ("country", Column::Str(|e| &e.country)),
    ("region", Column::Str(|e| &e.region)),
    ("city", Column::Str(|e| &e.city)),
    ("language", Column::Str(|e| &e.language)),
    ("event_properties", Column::Json(|e| &e.event_properties)),
    ("user_properties", Column::Json(|e| &e.user_properties)),
    ("price", Column::OptDouble(|e| e.price)),
    ("quantity", Column::OptInt64(|e| e.quantity)),
    ("revenue", Column::OptDouble(|e| e.revenue)),
    ("productId", Column::OptStr(|e| &e.product_id)),
    ("revenueType", Column::OptStr(|e| &e.revenue_type)),
];

/// The Parquet message type of [`COLUMNS`].
pub fn schema_text() -> String {
    let mut s = String::from("message ampsim_event {\n");
    for (name, col) in COLUMNS {
        let t = match col {
            Column::Str(_) | Column::Json(_) => "required binary {} (STRING)",
            Column::OptStr(_) => "optional binary {} (STRING)",
            Column::Int64(_) => "required int64 {}",
            Column::TimeMillis(_) => "required int64 {} (TIMESTAMP(MILLIS,true))",
            Column::OptInt64(_) => "optional int64 {}",
            Column::OptDouble(_) => "optional double {}",
        };
        s.push_str("  ");
        s.push_str(&t.replace("{}", name));
        s.push_str(";\n");
    }
    s.push('}');
    s
}

/// The Parquet schema of [`COLUMNS`].
pub fn schema() -> Type {
    ::parquet::schema::parser::parse_message_type(&schema_text()).expect("valid schema")
}

/// The file name of a day.
pub fn file_name(simulation_id: &str, day: NaiveDate) -> String {
    format!("{simulation_id}_{}.parquet", day.format("%Y-%m-%d"))
}

/// The open day file.
struct DayFile {
    day: NaiveDate,
    staged: Staged,
    out: SerializedFileWriter<BufWriter<File>>,
    events: u64,
}

/// Writes `parquet` day files.
pub(super) struct ParquetWriter {
    dir: PathBuf,
    simulation_id: String,
    schema: Arc<Type>,
    open: Option<DayFile>,
    rows: Vec<pb::Event>,
    done: Vec<FileInfo>,
}

impl ParquetWriter {
    pub(super) fn new(opts: &ExportOptions) -> Self {
        ParquetWriter {
            dir: opts.out_dir.clone(),
            simulation_id: opts.simulation_id.clone(),
            schema: Arc::new(schema()),
            open: None,
            rows: Vec::new(),
            done: Vec::new(),
        }
    }

    fn open(&mut self, day: NaiveDate) -> Result<()> {
        let (staged, out) = Staged::create(&self.dir, &file_name(&self.simulation_id, day))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
            .set_key_value_metadata(Some(vec![
                KeyValue::new("ampsim.simulation_id".into(), self.simulation_id.clone()),
                KeyValue::new("ampsim.date".into(), day.format("%Y-%m-%d").to_string()),
            ]))
            .build();
        let out = SerializedFileWriter::new(out, self.schema.clone(), Arc::new(props))?;
        self.open = Some(DayFile {
            day,
            staged,
            out,
            events: 0,
        });
        Ok(())
    }

    /// Writes the buffered rows as one row group.
    fn flush_rows(&mut self) -> Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let f = self.open.as_mut().expect("rows belong to the open file");
        write_row_group(&mut f.out, &self.rows)?;
        f.events += self.rows.len() as u64;
        self.rows.clear();
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        self.flush_rows()?;
        if let Some(f) = self.open.take() {
            let out = f.out.into_inner()?;
            self.done.push(f.staged.commit(out, f.events)?);
        }
        Ok(())
    }
}

impl FormatWriter for ParquetWriter {
    fn write(&mut self, e: pb::Event) -> Result<()> {
        let day = day_of(e.time);
        if self.open.as_ref().is_some_and(|f| f.day != day) {
            self.close()?;
        }
        if self.open.is_none() {
            self.open(day)?;
        }
        self.rows.push(e);
        if self.rows.len() >= ROW_GROUP_ROWS {
            self.flush_rows()?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<Vec<FileInfo>> {
        self.close()?;
        Ok(self.done)
    }
}

/// Writes `rows` as one row group, column by column.
fn write_row_group(
    w: &mut SerializedFileWriter<BufWriter<File>>,
    rows: &[pb::Event],
) -> Result<()> {
    let mut rg = w.next_row_group()?;
    let mut columns = COLUMNS.iter();
    while let Some(mut cw) = rg.next_column()? {
        let (_, col) = columns.next().expect("one column per schema field");
        match *col {
            Column::Str(f) => {
                let v: Vec<ByteArray> = rows.iter().map(|e| ByteArray::from(f(e))).collect();
                cw.typed::<ByteArrayType>().write_batch(&v, None, None)?;
            }
            Column::Json(f) => {
                let v: Vec<ByteArray> = rows
                    .iter()
                    .map(|e| ByteArray::from(serde_json::to_vec(f(e)).expect("strings serialise")))
                    .collect();
                cw.typed::<ByteArrayType>().write_batch(&v, None, None)?;
            }
            Column::OptStr(f) => {
                let (v, def) = optional(rows, |e| {
                    let s = f(e);
                    (!s.is_empty()).then(|| ByteArray::from(s))
                });
                cw.typed::<ByteArrayType>()
                    .write_batch(&v, Some(&def), None)?;
            }
            Column::Int64(f) | Column::TimeMillis(f) => {
                let v: Vec<i64> = rows.iter().map(f).collect();
                cw.typed::<Int64Type>().write_batch(&v, None, None)?;
            }
            Column::OptInt64(f) => {
                let (v, def) = optional(rows, f);
                cw.typed::<Int64Type>().write_batch(&v, Some(&def), None)?;
            }
            Column::OptDouble(f) => {
                let (v, def) = optional(rows, f);
                cw.typed::<DoubleType>().write_batch(&v, Some(&def), None)?;
            }
        }
        cw.close()?;
    }
    rg.close()?;
    Ok(())
}

/// The present values of an optional column and its definition levels (1 present, 0 null).
fn optional<T>(rows: &[pb::Event], f: impl Fn(&pb::Event) -> Option<T>) -> (Vec<T>, Vec<i16>) {
    let mut values = Vec::new();
    let mut def = Vec::with_capacity(rows.len());
    for e in rows {
        match f(e) {
            Some(v) => {
                values.push(v);
                def.push(1);
            }
            None => def.push(0),
        }
    }
    (values, def)
}
