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
use crate::schema::PropMap;
use crate::schema::{EventRecord, Field, FieldId, Kind, Value, FIELDS};
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
        Kind::Str | Kind::OptStr | Kind::Props | Kind::OptProps => DataType::Utf8,
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
                                [("doc".to_string(), f.doc.trim().to_string())]
                                    .into_iter()
                                    .collect(),
                            )
                    })
                    .collect::<Vec<_>>(),
            ))
        })
        .clone()
}

/// About the bytes per event of a string column in the default scenario (measured on a day of
/// the default year), rounded up so that a batch's buffer rarely has to grow and be copied.
fn bytes_hint(f: FieldId) -> usize {
    match f {
        FieldId::EventProperties => 160,
        FieldId::UserProperties => 64,
        FieldId::DeviceId | FieldId::InsertId => 36,
        FieldId::UserId | FieldId::ProductId | FieldId::RevenueType => 2,
        FieldId::Groups => 8,
        FieldId::GroupProperties => 1,
        _ => 16,
    }
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
                Kind::Str | Kind::OptStr | Kind::Props | Kind::OptProps => {
                    Col::Str(StringBuilder::with_capacity(rows, rows * bytes_hint(f.id)))
                }
                Kind::Int | Kind::OptInt => Col::Int(Int64Builder::with_capacity(rows)),
                Kind::TimeMs => {
                    Col::Time(TimestampMillisecondBuilder::with_capacity(rows).with_timezone("UTC"))
                }
                Kind::OptFloat => Col::Float(Float64Builder::with_capacity(rows)),
            })
            .collect();
        BatchBuilder { cols, rows: 0 }
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
                (Col::Str(b), Value::Props(p)) if p.is_empty() && f.kind == Kind::OptProps => {
                    b.append_null();
                }
                (Col::Str(b), Value::Props(p)) => {
                    // Printed straight into the column's value buffer.
                    crate::json::write_sorted_props(p, b);
                    b.append_value("");
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

/// A day's events in stream order (time, device, event id), cut into batches of a fixed number
/// of rows: what [`Engine::render_batches`] renders, a few batches at a time, so that a reader
/// of a large day holds its compact records and a few rendered batches, never the whole day
/// rendered.
pub struct BatchPlan {
    /// (time, device, event id, record, index in record), sorted.
    keys: Vec<(i64, u64, u32, u32, u32)>,
    rows: usize,
}

impl BatchPlan {
    /// The plan of `records`' events in batches of `rows` events (at least one; the last batch
    /// may be shorter).
    pub fn new(records: &[UserDay], rows: usize) -> BatchPlan {
        let total: usize = records.iter().map(|r| r.events.len()).sum();
        let mut keys: Vec<(i64, u64, u32, u32, u32)> = Vec::with_capacity(total);
        for (ri, r) in records.iter().enumerate() {
            for (i, (time, device, id)) in r.stream_keys().enumerate() {
                keys.push((time, device, id, ri as u32, i as u32));
            }
        }
        keys.par_sort_unstable();
        BatchPlan {
            keys,
            rows: rows.max(1),
        }
    }

    /// The number of batches.
    pub fn batches(&self) -> usize {
        self.keys.len().div_ceil(self.rows)
    }

    /// The number of events.
    pub fn events(&self) -> usize {
        self.keys.len()
    }
}

impl Engine {
    /// Renders user-day records into record batches of the [`schema`], in stream order (time,
    /// device, event id; as [`Engine::render_sorted`]), of about `rows` events each (at least
    /// one). Chunks are rendered in parallel; the result does not depend on the thread count.
    pub fn day_batches(&self, records: &[UserDay], rows: usize) -> Vec<RecordBatch> {
        let plan = BatchPlan::new(records, rows);
        self.render_batches(records, &plan, 0..plan.batches())
    }

    /// Renders batches `range` of a [`BatchPlan`] of `records`, in parallel (on the current
    /// rayon pool); the result does not depend on the thread count.
    ///
    /// # Panics
    /// When `range` goes past the plan's batches, or `records` are not the plan's.
    pub fn render_batches(
        &self,
        records: &[UserDay],
        plan: &BatchPlan,
        range: std::ops::Range<usize>,
    ) -> Vec<RecordBatch> {
        assert!(
            range.start <= range.end && range.end <= plan.batches(),
            "batches {range:?} of a plan of {}",
            plan.batches()
        );
        let start = (range.start * plan.rows).min(plan.keys.len());
        let end = (range.end * plan.rows).min(plan.keys.len());
        plan.keys[start..end]
            .par_chunks(plan.rows)
            .map(|chunk| {
                // The user-days of the chunk's events, each resolved once; then each row is
                // rendered on its own into one reused event, in row order.
                let mut recs: Vec<u32> = chunk.iter().map(|k| k.3).collect();
                recs.sort_unstable();
                recs.dedup();
                let contexts: Vec<_> = recs
                    .iter()
                    .map(|&r| self.user_day_context(&records[r as usize]))
                    .collect();
                let mut ev = crate::Event::default();
                let mut b = BatchBuilder::with_capacity(chunk.len());
                for k in chunk {
                    let r = &records[k.3 as usize];
                    let ctx = &contexts[recs.binary_search(&k.3).expect("the row's user-day")];
                    ctx.set_shared(&mut ev);
                    self.fill_event(r, ctx, k.4 as usize, &mut ev);
                    b.push(&ev);
                }
                b.finish()
            })
            .collect()
    }
}
