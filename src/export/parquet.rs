//! `parquet`: one file per UTC day, `<simulation>_<yyyy-MM-dd>.parquet`, zstd-compressed, in
//! row groups of [`ROW_GROUP_ROWS`] events, with one column per field of the event
//! [schema](ampsim_engine::schema), in its order and under its HTTP V2 name ([`schema_text`]
//! gives the Parquet message type):
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
//! gathered column by column as events arrive, then written column by column.

use super::files::{FileInfo, Staged};
use super::{day_of, ExportOptions, FormatWriter, Result};
use crate::wire::EventView;
use ::parquet::basic::{Compression, ZstdLevel};
use ::parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type};
use ::parquet::file::metadata::KeyValue;
use ::parquet::file::properties::WriterProperties;
use ::parquet::file::writer::SerializedFileWriter;
use ::parquet::schema::types::Type;
use ampsim_engine::schema::{EventRecord, Field, Kind, Value, FIELDS};
use chrono::NaiveDate;
use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::sync::Arc;

/// Events per row group: large enough for efficient scans, small enough that the buffered rows
/// stay in the tens of MiB.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

/// The Parquet type of a schema field's column.
fn column_type(f: &Field) -> &'static str {
    match f.kind {
        Kind::Str | Kind::Props => "required binary {} (STRING)",
        Kind::OptStr => "optional binary {} (STRING)",
        Kind::Int => "required int64 {}",
        Kind::TimeMs => "required int64 {} (TIMESTAMP(MILLIS,true))",
        Kind::OptInt => "optional int64 {}",
        Kind::OptFloat => "optional double {}",
    }
}

/// The Parquet message type: one column per schema field.
pub fn schema_text() -> String {
    let mut s = String::from("message ampsim_event {\n");
    for f in &FIELDS {
        s.push_str("  ");
        s.push_str(&column_type(f).replace("{}", f.name));
        s.push_str(";\n");
    }
    s.push('}');
    s
}

/// The Parquet schema.
pub fn schema() -> Type {
    ::parquet::schema::parser::parse_message_type(&schema_text()).expect("valid schema")
}

/// One column's values for the row group being gathered; `def` holds the definition levels
/// (1 present, 0 null) of optional columns.
enum ColumnBuf {
    Bytes(Vec<ByteArray>, Vec<i16>),
    Int(Vec<i64>, Vec<i16>),
    Float(Vec<f64>, Vec<i16>),
}

impl ColumnBuf {
    fn new(f: &Field) -> Self {
        match f.kind {
            Kind::Str | Kind::OptStr | Kind::Props => ColumnBuf::Bytes(Vec::new(), Vec::new()),
            Kind::Int | Kind::TimeMs | Kind::OptInt => ColumnBuf::Int(Vec::new(), Vec::new()),
            Kind::OptFloat => ColumnBuf::Float(Vec::new(), Vec::new()),
        }
    }

    fn clear(&mut self) {
        match self {
            ColumnBuf::Bytes(v, d) => (v.clear(), d.clear()),
            ColumnBuf::Int(v, d) => (v.clear(), d.clear()),
            ColumnBuf::Float(v, d) => (v.clear(), d.clear()),
        };
    }
}

/// Appends an event's values to the columns.
fn push_row(columns: &mut [ColumnBuf], e: &EventView<'_>, json: &mut Vec<u8>) {
    for (f, col) in FIELDS.iter().zip(columns.iter_mut()) {
        let optional = f.kind.is_optional();
        let v = e.value(f.id);
        let present = !matches!(v, Value::Absent | Value::Str("") if optional);
        match (col, v) {
            (ColumnBuf::Bytes(values, def), Value::Str(s)) => {
                if present {
                    values.push(ByteArray::from(s));
                }
                if optional {
                    def.push(i16::from(present));
                }
            }
            (ColumnBuf::Bytes(values, _), Value::Props(p)) => {
                json.clear();
                ampsim_engine::json::write_sorted_props(p, json);
                values.push(ByteArray::from(json.clone()));
            }
            (ColumnBuf::Int(values, def), Value::Int(i)) => {
                values.push(i);
                if optional {
                    def.push(1);
                }
            }
            (ColumnBuf::Float(values, def), Value::Float(x)) => {
                values.push(x);
                if optional {
                    def.push(1);
                }
            }
            (ColumnBuf::Bytes(_, def) | ColumnBuf::Int(_, def) | ColumnBuf::Float(_, def), _) => {
                def.push(0);
            }
        }
    }
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
    /// The row group being gathered, one buffer per schema field.
    columns: Vec<ColumnBuf>,
    rows: usize,
    json: Vec<u8>,
    done: Vec<FileInfo>,
}

impl ParquetWriter {
    pub(super) fn new(opts: &ExportOptions) -> Self {
        ParquetWriter {
            dir: opts.out_dir.clone(),
            simulation_id: opts.simulation_id.clone(),
            schema: Arc::new(schema()),
            open: None,
            columns: FIELDS.iter().map(ColumnBuf::new).collect(),
            rows: 0,
            json: Vec::new(),
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
        if self.rows == 0 {
            return Ok(());
        }
        let f = self.open.as_mut().expect("rows belong to the open file");
        write_row_group(&mut f.out, &self.columns)?;
        f.events += self.rows as u64;
        self.rows = 0;
        self.columns.iter_mut().for_each(ColumnBuf::clear);
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
    fn write(&mut self, e: &EventView<'_>) -> Result<()> {
        let day = day_of(e.time());
        if self.open.as_ref().is_some_and(|f| f.day != day) {
            self.close()?;
        }
        if self.open.is_none() {
            self.open(day)?;
        }
        push_row(&mut self.columns, e, &mut self.json);
        self.rows += 1;
        if self.rows >= ROW_GROUP_ROWS {
            self.flush_rows()?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<Vec<FileInfo>> {
        self.close()?;
        Ok(self.done)
    }
}

/// The definition levels of an optional column; none for a required one.
fn levels<'d>(f: &Field, def: &'d [i16]) -> Option<&'d [i16]> {
    f.kind.is_optional().then_some(def)
}

/// Writes the gathered columns as one row group.
fn write_row_group(
    w: &mut SerializedFileWriter<BufWriter<File>>,
    columns: &[ColumnBuf],
) -> Result<()> {
    let mut rg = w.next_row_group()?;
    let mut columns = FIELDS.iter().zip(columns);
    while let Some(mut cw) = rg.next_column()? {
        let (f, col) = columns.next().expect("one column per schema field");
        match col {
            ColumnBuf::Bytes(v, d) => {
                cw.typed::<ByteArrayType>()
                    .write_batch(v, levels(f, d), None)?;
            }
            ColumnBuf::Int(v, d) => {
                cw.typed::<Int64Type>().write_batch(v, levels(f, d), None)?;
            }
            ColumnBuf::Float(v, d) => {
                cw.typed::<DoubleType>()
                    .write_batch(v, levels(f, d), None)?;
            }
        }
        cw.close()?;
    }
    rg.close()?;
    Ok(())
}
