//! Arrow: the one columnar form of events. Every columnar output (the Parquet files of
//! `ampsim generate --out` and `ampsim export --format parquet`, the Python package's
//! `pyarrow.RecordBatchReader`, the Spark data source) is built here, from the
//! [schema](crate::schema), so they have one Arrow schema ([`schema`]):
//!
//! | kind | Arrow type | nullable |
//! |---|---|---|
//! | strings every event has | `Utf8` | no |
//! | `user_id`, `productId`, `revenueType` | `Utf8` | yes (null when absent) |
//! | `time` | `Timestamp(Millisecond, "UTC")` | no |
//! | `session_id` (-1 outside a session), `event_id` | `Int64` | no |
//! | `price`, `revenue` | `Float64` | yes (purchases only) |
//! | `quantity` | `Int64` | yes (purchases only) |
//! | `event_properties`, `user_properties` | `Utf8` holding the HTTP V2 JSON object | no |
//!
//! Property maps are JSON text (sorted keys, typed values, as the HTTP V2 JSON lines hold
//! them): JSON loads the same way in DuckDB (`json_extract_string`), Spark (`get_json_object`,
//! `from_json`) and BigQuery (`JSON_VALUE`), where a `Map` column would load in BigQuery as a
//! repeated key/value record.
//!
//! [`Engine::day_batches`] renders a day's records straight into record batches in stream
//! order, in parallel chunks.

use crate::engine::Engine;
use crate::schema::{EventRecord, Field, Kind, Value, FIELDS};
use crate::state::UserDay;
use arrow_array::builder::{
    Float64Builder, Int64Builder, StringBuilder, TimestampMillisecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Schema, SchemaRef, TimeUnit};
use rayon::prelude::*;
use std::sync::{Arc, OnceLock};

/// Rows per record batch that [`Engine::day_batches`] aims at: big enough to amortise the
/// per-batch work, small enough to keep a batch within a few MiB.
pub const BATCH_ROWS: usize = 64 * 1024;

/// The Arrow type of a field's column.
pub fn data_type(f: &Field) -> DataType {
    match f.kind {
        Kind::Str | Kind::OptStr | Kind::Props => DataType::Utf8,
        Kind::Int | Kind::OptInt => DataType::Int64,
        Kind::TimeMs => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        Kind::OptFloat => DataType::Float64,
    }
}

/// The Arrow schema of events: one column per [`FIELDS`] entry, in its order, under its HTTP V2
/// name, with the field's description as `doc` metadata.
pub fn schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(
                FIELDS
                    .iter()
                    .map(|f| {
                        arrow_schema::Field::new(f.name, data_type(f), f.kind.is_optional())
                            .with_metadata(
                                [("doc".to_string(), f.doc.to_string())]
                                    .into_iter()
                                    .collect(),
                            )
                    })
                    .collect::<Vec<_>>(),
            ))
        })
        .clone()
}

enum Col {
    Str(StringBuilder),
    Int(Int64Builder),
    Time(TimestampMillisecondBuilder),
    Float(Float64Builder),
}

/// Builds record batches of the [`schema`] from events of any representation (the rendered
/// [`Event`](crate::Event), a protobuf view), one [`BatchBuilder::push`] per event.
pub struct BatchBuilder {
    cols: Vec<Col>,
    rows: usize,
    json: Vec<u8>,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl BatchBuilder {
    /// A builder with room for `rows` events before it reallocates.
    pub fn with_capacity(rows: usize) -> Self {
        let cols = FIELDS
            .iter()
            .map(|f| match f.kind {
                Kind::Str | Kind::OptStr => Col::Str(StringBuilder::with_capacity(rows, rows * 16)),
                Kind::Props => Col::Str(StringBuilder::with_capacity(rows, rows * 128)),
                Kind::Int | Kind::OptInt => Col::Int(Int64Builder::with_capacity(rows)),
                Kind::TimeMs => {
                    Col::Time(TimestampMillisecondBuilder::with_capacity(rows).with_timezone("UTC"))
                }
                Kind::OptFloat => Col::Float(Float64Builder::with_capacity(rows)),
            })
            .collect();
        BatchBuilder {
            cols,
            rows: 0,
            json: Vec::with_capacity(512),
        }
    }

    /// Events pushed since the last [`BatchBuilder::finish`].
    pub fn len(&self) -> usize {
        self.rows
    }

    /// True when no event is pending.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Appends one event. An optional string that is empty (how protobuf carries "absent")
    /// becomes null, as an absent value does.
    pub fn push(&mut self, e: &impl EventRecord) {
        for (f, col) in FIELDS.iter().zip(self.cols.iter_mut()) {
            let v = e.value(f.id);
            match (col, v) {
                (Col::Str(b), Value::Str(s)) => {
                    if s.is_empty() && f.kind == Kind::OptStr {
                        b.append_null();
                    } else {
                        b.append_value(s);
                    }
                }
                (Col::Str(b), Value::Props(p)) => {
                    self.json.clear();
                    crate::json::write_sorted_props(p, &mut self.json);
                    b.append_value(
                        std::str::from_utf8(&self.json).expect(
                            "the JSON printer writes only UTF-8 (keys and values are &str)",
                        ),
                    );
                }
                (Col::Int(b), Value::Int(i)) => b.append_value(i),
                (Col::Time(b), Value::Int(i)) => b.append_value(i),
                (Col::Float(b), Value::Float(x)) => b.append_value(x),
                (Col::Str(b), _) => b.append_null(),
                (Col::Int(b), _) => b.append_null(),
                (Col::Time(b), _) => b.append_null(),
                (Col::Float(b), _) => b.append_null(),
            }
        }
        self.rows += 1;
    }

    /// The pending events as one record batch (empty if none); the builder starts over.
    pub fn finish(&mut self) -> RecordBatch {
        let arrays: Vec<ArrayRef> = self
            .cols
            .iter_mut()
            .map(|c| -> ArrayRef {
                match c {
                    Col::Str(b) => Arc::new(b.finish()),
                    Col::Int(b) => Arc::new(b.finish()),
                    Col::Time(b) => Arc::new(b.finish()),
                    Col::Float(b) => Arc::new(b.finish()),
                }
            })
            .collect();
        self.rows = 0;
        RecordBatch::try_new(schema(), arrays).expect("the builders follow the schema")
    }
}

impl Engine {
    /// Renders user-day records into record batches of the [`schema`], in stream order (time,
    /// device, event id; as [`Engine::render_sorted`]), of about `rows` events each (at least
    /// one). Chunks are rendered in parallel; the result does not depend on the thread count.
    pub fn day_batches(&self, records: &[UserDay], rows: usize) -> Vec<RecordBatch> {
        let rows = rows.max(1);
        let total: usize = records.iter().map(|r| r.events.len()).sum();
        // (time, device, event id, record, index in record): stream order.
        let mut keys: Vec<(i64, u64, u32, u32, u32)> = Vec::with_capacity(total);
        for (ri, r) in records.iter().enumerate() {
            for (i, e) in r.events.iter().enumerate() {
                keys.push((
                    e.time_ms,
                    r.device,
                    r.event_id_base + i as u32,
                    ri as u32,
                    i as u32,
                ));
            }
        }
        keys.par_sort_unstable();
        keys.par_chunks(rows)
            .map(|chunk| {
                // The chunk's events grouped by record (record, index, row), each record's
                // rendered in one pass, each event put in its row, then pushed in row order.
                let mut wanted: Vec<(u32, u32, u32)> = chunk
                    .iter()
                    .enumerate()
                    .map(|(row, k)| (k.3, k.4, row as u32))
                    .collect();
                wanted.sort_unstable();
                let mut slots: Vec<Option<crate::Event<'_>>> = vec![None; chunk.len()];
                for group in wanted.chunk_by(|a, b| a.0 == b.0) {
                    let r = &records[group[0].0 as usize];
                    let mut next = group.iter();
                    self.for_each_event(
                        r,
                        |i, _| group.binary_search_by_key(&(i as u32), |w| w.1).is_ok(),
                        |e| {
                            let w = next.next().expect("one slot per kept event");
                            slots[w.2 as usize] = Some(e.clone());
                        },
                    );
                }
                let mut b = BatchBuilder::with_capacity(chunk.len());
                for e in &slots {
                    b.push(e.as_ref().expect("every row rendered"));
                }
                b.finish()
            })
            .collect()
    }
}
