//! `ampsim._ampsim`: the engine as a Python extension module (pyo3, abi3).
//!
//! The public Python API is `python/ampsim/__init__.py`, which re-exports what is here. A
//! [`Simulation`] is a definition (scenario, seed, start date, population scale); its
//! [`Simulation::events`] returns a `pyarrow.RecordBatchReader` over one shard's events, in
//! the one Arrow schema of every columnar output ([`ampsim_engine::columns::schema`]), day
//! after day in stream order. The reader holds the shard's user states, one day's compact
//! records and a few rendered batches: memory does not grow with the number of days, and a
//! day is rendered a few batches at a time.
//!
//! A shard is a pure function of (definition, shard, days): the same arguments give the same
//! batches in any process, which is what makes Spark tasks safe to retry.

use ampsim_engine::columns::{self, BatchPlan};
use ampsim_engine::labels::LabelsBuilder;
use ampsim_engine::memory::MemorySim;
use ampsim_engine::{Engine, Scenario, Shard, SimConfig, UserDay, UserState, ENGINE_VERSION};
use arrow_array::{RecordBatch, RecordBatchReader};
use arrow_pyarrow::PyArrowType;
use arrow_schema::{ArrowError, SchemaRef};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;

/// Rows per batch unless the caller says otherwise (as `ampsim generate --out` writes them).
const DEFAULT_BATCH_ROWS: usize = columns::BATCH_ROWS;

pyo3::create_exception!(
    _ampsim,
    ScenarioError,
    PyValueError,
    "An invalid scenario: `path` names the key (e.g. `trials.conversion_rate.self_service`), `message` says what is wrong."
);

fn scenario_error(py: Python<'_>, e: &ampsim_engine::ScenarioError) -> PyErr {
    let err = ScenarioError::new_err(e.to_string());
    let value = err.value(py);
    // Attributes for programs; the message names both for people.
    let _ = value.setattr("path", e.path.clone());
    let _ = value.setattr("message", e.message.clone());
    err
}

fn parse_scenario(py: Python<'_>, toml: Option<&str>) -> PyResult<Scenario> {
    Scenario::from_toml(toml.unwrap_or("")).map_err(|e| scenario_error(py, &e))
}

/// The embedded default scenario, as TOML.
#[pyfunction]
fn default_scenario() -> String {
    Scenario::default_scenario().to_toml()
}

/// Merges a scenario TOML onto the default and validates it; returns the complete scenario as
/// TOML. Raises `ScenarioError` naming the key path of the first problem.
#[pyfunction]
fn validate_scenario(py: Python<'_>, toml: &str) -> PyResult<String> {
    Ok(parse_scenario(py, Some(toml))?.to_toml())
}

/// The Arrow schema of events (every columnar output has it).
#[pyfunction]
fn schema() -> PyArrowType<arrow_schema::Schema> {
    PyArrowType(columns::schema().as_ref().clone())
}

/// `Simulation`'s constructor arguments: start, seed, scale, scenario TOML.
type Definition = (String, u64, f64, String);

/// A simulation's definition: the same definition always gives the same events.
#[pyclass(frozen, module = "ampsim._ampsim")]
struct Simulation {
    config: SimConfig,
}

fn parse_shard(shard: &Bound<'_, PyAny>) -> PyResult<Shard> {
    if let Ok(text) = shard.extract::<String>() {
        return text.parse::<Shard>().map_err(PyValueError::new_err);
    }
    if let Ok((k, n)) = shard.extract::<(u32, u32)>() {
        return Shard::new(k, n).map_err(PyValueError::new_err);
    }
    Err(PyValueError::new_err(
        "shard: want \"K/N\" or a pair (K, N), e.g. \"0/4\" or (0, 4)",
    ))
}

#[pymethods]
impl Simulation {
    /// `Simulation(start, seed=1, scale=1.0, scenario=None)`: `start` is day 0 as
    /// `YYYY-MM-DD`, `scale` multiplies arrivals (1.0 is the default year's ~16M visitors),
    /// `scenario` is TOML merged onto the embedded default.
    #[new]
    #[pyo3(signature = (start, seed = 1, scale = 1.0, scenario = None))]
    fn new(
        py: Python<'_>,
        start: &str,
        seed: u64,
        scale: f64,
        scenario: Option<&str>,
    ) -> PyResult<Self> {
        let start_date = chrono::NaiveDate::parse_from_str(start, "%Y-%m-%d").map_err(|e| {
            PyValueError::new_err(format!("start: want YYYY-MM-DD, got {start:?} ({e})"))
        })?;
        let population_scale = SimConfig::check_scale(scale)
            .map_err(|e| PyValueError::new_err(format!("scale: {e}")))?;
        let scenario = parse_scenario(py, scenario)?;
        Ok(Simulation {
            config: SimConfig {
                scenario,
                seed,
                start_date,
                population_scale,
            },
        })
    }

    /// The seed.
    #[getter]
    fn seed(&self) -> u64 {
        self.config.seed
    }

    /// Day 0, `YYYY-MM-DD`.
    #[getter]
    fn start(&self) -> String {
        self.config.start_date.format("%Y-%m-%d").to_string()
    }

    /// The population scale.
    #[getter]
    fn scale(&self) -> f64 {
        self.config.population_scale
    }

    /// The complete scenario, as TOML.
    #[getter]
    fn scenario(&self) -> String {
        self.config.scenario.to_toml()
    }

    /// The definition's tag (16 hex digits): scenario, seed, start, scale and engine version
    /// together; the manifests of `ampsim generate --out` carry the same tag.
    #[getter]
    fn definition_tag(&self) -> String {
        format!(
            "{:016x}",
            ampsim_engine::engine::simulation_tag(&self.config)
        )
    }

    /// `events(days, shard="0/1", first_day=0, batch_rows=65536, threads=None)`: a
    /// `pyarrow.RecordBatchReader` over the events of days `first_day..days` of one shard
    /// (`"K/N"` or `(K, N)`), in stream order (time, device, event id) within each day. Days
    /// before `first_day` are simulated but not rendered. `threads` sets the reader's worker
    /// pool (default: all cores); the events do not depend on it.
    #[pyo3(signature = (days, shard = None, first_day = 0, batch_rows = DEFAULT_BATCH_ROWS, threads = None))]
    fn events(
        &self,
        days: u32,
        shard: Option<&Bound<'_, PyAny>>,
        first_day: u32,
        batch_rows: usize,
        threads: Option<usize>,
    ) -> PyResult<PyArrowType<Box<dyn RecordBatchReader + Send>>> {
        let shard = shard.map(parse_shard).transpose()?.unwrap_or(Shard::WHOLE);
        if first_day > days {
            return Err(PyValueError::new_err(format!(
                "first_day: {first_day} is after days ({days})"
            )));
        }
        if batch_rows == 0 {
            return Err(PyValueError::new_err("batch_rows: must be at least 1"));
        }
        let mut pool = rayon::ThreadPoolBuilder::new();
        if let Some(n) = threads {
            if n == 0 {
                return Err(PyValueError::new_err("threads: must be at least 1"));
            }
            pool = pool.num_threads(n);
        }
        let pool = pool
            .build()
            .map_err(|e| PyRuntimeError::new_err(format!("thread pool: {e}")))?;
        let reader = EventReader {
            sim: MemorySim::events_only(Engine::new(self.config.clone()), shard),
            first_day,
            end_day: days,
            records: Vec::new(),
            plan: BatchPlan::new(&[], batch_rows),
            next_batch: 0,
            rows: batch_rows,
            ready: VecDeque::new(),
            pool,
            failed: false,
        };
        Ok(PyArrowType(Box::new(reader)))
    }

    /// `labels(days, shard="0/1", batch_rows=65536)`: a `pyarrow.RecordBatchReader` over the
    /// ground truth of every user of one shard after `days` days (the rows of `ampsim export
    /// --format labels`, in the same schema, whose metadata `ampsim.effects` holds the true
    /// effect parameters as JSON). Users whose labels are final come as the days are
    /// simulated, the users still due at the end last; rows are in no particular order. Memory
    /// holds the shard's users still due, not the finished ones.
    #[pyo3(signature = (days, shard = None, batch_rows = DEFAULT_BATCH_ROWS))]
    fn labels(
        &self,
        days: u32,
        shard: Option<&Bound<'_, PyAny>>,
        batch_rows: usize,
    ) -> PyResult<PyArrowType<Box<dyn RecordBatchReader + Send>>> {
        let shard = shard.map(parse_shard).transpose()?.unwrap_or(Shard::WHOLE);
        if days == 0 {
            return Err(PyValueError::new_err(
                "days: must be at least 1 (labels are as of the last simulated day)",
            ));
        }
        if batch_rows == 0 {
            return Err(PyValueError::new_err("batch_rows: must be at least 1"));
        }
        let mut sim = MemorySim::new_shard(Engine::new(self.config.clone()), shard);
        let as_of = sim.engine.first_day() + days - 1;
        let schema = LabelsBuilder::new(&sim.engine, as_of).schema();
        let queue = sim.take_finished();
        Ok(PyArrowType(Box::new(LabelReader {
            sim,
            end_day: days,
            as_of,
            queue,
            pos: 0,
            tail: false,
            rows: batch_rows,
            schema,
            failed: false,
        })))
    }

    /// Pickles as its definition, so a `Simulation` can be shipped to Spark, Dask or Ray
    /// workers (which rebuild the same engine).
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, Definition)> {
        let me = slf.get();
        Ok((
            slf.get_type().into_any(),
            (
                me.start(),
                me.config.seed,
                me.config.population_scale,
                me.scenario(),
            ),
        ))
    }

    fn __repr__(&self) -> String {
        format!(
            "Simulation(start={:?}, seed={}, scale={}, scenario={:?})",
            self.start(),
            self.config.seed,
            self.config.population_scale,
            self.config.scenario.name
        )
    }
}

/// One shard's events, day after day: the state of the shard, the day's compact records and
/// the batches rendered ahead (one per worker).
struct EventReader {
    sim: MemorySim,
    first_day: u32,
    end_day: u32,
    records: Vec<UserDay>,
    plan: BatchPlan,
    next_batch: usize,
    rows: usize,
    ready: VecDeque<RecordBatch>,
    pool: rayon::ThreadPool,
    /// Set after an error: the stream ends there.
    failed: bool,
}

impl EventReader {
    fn advance(&mut self) -> Option<RecordBatch> {
        loop {
            if let Some(b) = self.ready.pop_front() {
                return Some(b);
            }
            if self.next_batch < self.plan.batches() {
                let n = self
                    .pool
                    .current_num_threads()
                    .min(self.plan.batches() - self.next_batch);
                let range = self.next_batch..self.next_batch + n;
                let (engine, records, plan) = (&self.sim.engine, &self.records, &self.plan);
                let batches = self
                    .pool
                    .install(|| engine.render_batches(records, plan, range));
                self.ready.extend(batches);
                self.next_batch += n;
                continue;
            }
            if self.sim.days_done() >= self.end_day {
                return None;
            }
            let day = self.sim.days_done();
            let sim = &mut self.sim;
            let out = self.pool.install(|| sim.step_events());
            if day >= self.first_day {
                self.records = out.records;
                self.plan = self
                    .pool
                    .install(|| BatchPlan::new(&self.records, self.rows));
                self.next_batch = 0;
            }
        }
    }
}

impl Iterator for EventReader {
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        // Called through the Arrow C stream interface: a panic must not cross it, so it ends
        // the stream with an error instead.
        match std::panic::catch_unwind(AssertUnwindSafe(|| self.advance())) {
            Ok(b) => b.map(Ok),
            Err(panic) => {
                self.failed = true;
                Some(Err(engine_panic(panic)))
            }
        }
    }
}

impl RecordBatchReader for EventReader {
    fn schema(&self) -> SchemaRef {
        columns::schema()
    }
}

/// One shard's labels: the states of finished users as the days are simulated, then those
/// still due.
struct LabelReader {
    sim: MemorySim,
    end_day: u32,
    as_of: u32,
    /// States to label from `pos` on.
    queue: Vec<UserState>,
    pos: usize,
    /// Whether the days are done and the still-due users are in the queue.
    tail: bool,
    rows: usize,
    schema: SchemaRef,
    failed: bool,
}

impl LabelReader {
    fn advance(&mut self) -> Option<RecordBatch> {
        loop {
            let left = self.queue.len() - self.pos;
            if left >= self.rows || (self.tail && left > 0) {
                let n = left.min(self.rows);
                let mut b = LabelsBuilder::new(&self.sim.engine, self.as_of);
                for st in &self.queue[self.pos..self.pos + n] {
                    b.push_state(st);
                }
                self.pos += n;
                return Some(b.finish());
            }
            if self.tail {
                return None;
            }
            self.queue.drain(..self.pos);
            self.pos = 0;
            if self.sim.days_done() < self.end_day {
                self.sim.step_events();
                self.queue.extend(self.sim.take_finished());
            } else {
                self.queue.extend(self.sim.states());
                self.tail = true;
            }
        }
    }
}

impl Iterator for LabelReader {
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match std::panic::catch_unwind(AssertUnwindSafe(|| self.advance())) {
            Ok(b) => b.map(Ok),
            Err(panic) => {
                self.failed = true;
                Some(Err(engine_panic(panic)))
            }
        }
    }
}

impl RecordBatchReader for LabelReader {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

/// The error that ends a reader whose engine panicked (a panic must not cross the Arrow C
/// stream interface).
fn engine_panic(panic: Box<dyn std::any::Any + Send>) -> ArrowError {
    let what = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
        .unwrap_or_else(|| "unknown panic".to_string());
    ArrowError::ExternalError(format!("ampsim engine failed: {what}").into())
}

/// The extension module.
#[pymodule]
fn _ampsim(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Simulation>()?;
    m.add_function(wrap_pyfunction!(default_scenario, m)?)?;
    m.add_function(wrap_pyfunction!(validate_scenario, m)?)?;
    m.add_function(wrap_pyfunction!(schema, m)?)?;
    m.add("ScenarioError", m.py().get_type::<ScenarioError>())?;
    m.add("ENGINE_VERSION", ENGINE_VERSION)?;
    m.add("MAX_SCALE", ampsim_engine::engine::MAX_SCALE)?;
    Ok(())
}
