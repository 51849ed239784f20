//! `ampsim generate --out DIR`: one shard of a simulation, generated without a server, straight
//! into date-partitioned Parquet. What a batch array job or a Kubernetes indexed Job runs:
//! shard K of N is a pure function of the definition (scenario, seed, start, scale), K, N and
//! the number of days, so shards run anywhere, in any order, and a retried shard writes the
//! same bytes.
//!
//! The output directory, shared by all shards of one definition:
//!
//! ```text
//! DIR/date=2025-01-06/part-00000-of-00004.parquet   one file per day and shard (maybe empty)
//! DIR/_manifests/part-00000-of-00004.json           the shard's manifest (see Manifest)
//! DIR/_state/part-00000-of-00004@00030.bin          the shard's checkpoint after day 30
//! ```
//!
//! Names starting with `_` or `.` are skipped by Spark, Hive, DuckDB's `hive_partitioning` and
//! pyarrow datasets, so `DIR` reads as one table partitioned by `date`.
//!
//! Every file is written under a temporary name and renamed once complete; the manifest is
//! rewritten (atomically) after each day. A killed run resumes from its last complete day:
//! it loads the last checkpoint (written every `checkpoint_days` days and at the end: the
//! states of the users still due, zstd-compressed) and replays the days after it without
//! writing them (stepping is cheap next to rendering and writing), then goes on.

use crate::columnar::{ParquetSink, RENDER_ROWS};
use ampsim_engine::engine::simulation_tag;
use ampsim_engine::memory::MemorySim;
use ampsim_engine::{Engine, Shard, SimConfig, ENGINE_VERSION};
use arrow_array::RecordBatch;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What to generate and where.
#[derive(Debug, Clone)]
pub struct OfflineOptions {
    /// The simulation's definition.
    pub config: SimConfig,
    /// Which part of it.
    pub shard: Shard,
    /// Days from the start date to have generated (a later run with more extends the output).
    pub days: u32,
    /// The output directory (created if missing).
    pub out: PathBuf,
    /// Days between checkpoints (at least 1).
    pub checkpoint_days: u32,
    /// Worker threads (at least 1); the output does not depend on it.
    pub threads: usize,
    /// The Parquet files' zstd level (1-22; [`crate::columnar::ZSTD_LEVEL`] by default).
    pub zstd_level: i32,
}

/// One day's file of a shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayFile {
    /// The day, `YYYY-MM-DD`.
    pub date: String,
    /// The file, relative to the output directory.
    pub path: String,
    /// Events in it.
    pub events: u64,
    /// Its size in bytes.
    pub bytes: u64,
}

/// A shard's manifest (`_manifests/part-K-of-N.json`): what the shard is of and what it has
/// written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The engine version that wrote it: a newer engine refuses to extend an older output.
    pub engine_version: u32,
    /// The definition's tag (hex): scenario, seed, start, scale and engine version together.
    pub definition_tag: String,
    /// The seed.
    pub seed: u64,
    /// Day 0, `YYYY-MM-DD`.
    pub start_date: String,
    /// The population scale.
    pub population_scale: f64,
    /// `K/N`.
    pub shard: String,
    /// Days complete: days `0..days_complete` have their files.
    pub days_complete: u32,
    /// Events in those files.
    pub events: u64,
    /// The day of the checkpoint in `_state/` (0: none).
    pub checkpoint_day: u32,
    /// The files, in day order.
    pub files: Vec<DayFile>,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The manifest after the run.
    pub manifest: Manifest,
    /// Days this run wrote.
    pub days_written: u32,
    /// Events this run wrote.
    pub events_written: u64,
    /// Days replayed from the checkpoint to reach the last complete day.
    pub days_replayed: u32,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The worker pool could not start.
    #[error("thread pool: {0}")]
    Pool(#[from] rayon::ThreadPoolBuildError),
    /// The Parquet writer failed.
    #[error("parquet: {0}")]
    Parquet(#[from] ::parquet::errors::ParquetError),
    /// The directory holds another definition's output for this shard.
    #[error("{path} is the manifest of another simulation ({what}); use another --out, or delete that output")]
    Mismatch {
        /// The manifest.
        path: PathBuf,
        /// What differs.
        what: String,
    },
    /// A manifest or checkpoint does not read.
    #[error("{path}: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

type Result<T> = std::result::Result<T, Error>;

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The shard's part of a file name: `part-00002-of-00016`.
pub fn part_name(shard: Shard) -> String {
    format!("part-{:05}-of-{:05}", shard.index, shard.count)
}

/// Writes `bytes` to `path` through a temporary file and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    let mut f = File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// `dir/.name.partial` for `dir/name`.
fn tmp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.partial"))
}

impl Manifest {
    fn new(cfg: &SimConfig, shard: Shard) -> Manifest {
        Manifest {
            engine_version: ENGINE_VERSION,
            definition_tag: format!("{:016x}", simulation_tag(cfg)),
            seed: cfg.seed,
            start_date: cfg.start_date.format("%Y-%m-%d").to_string(),
            population_scale: cfg.population_scale,
            shard: shard.to_string(),
            days_complete: 0,
            events: 0,
            checkpoint_day: 0,
            files: Vec::new(),
        }
    }

    /// What differs between this manifest and a fresh one, if anything.
    fn mismatch(&self, fresh: &Manifest) -> Option<String> {
        if self.engine_version != fresh.engine_version {
            return Some(format!(
                "engine version {} where this binary is {}",
                self.engine_version, fresh.engine_version
            ));
        }
        if self.shard != fresh.shard {
            return Some(format!(
                "shard {} where this run is {}",
                self.shard, fresh.shard
            ));
        }
        (self.definition_tag != fresh.definition_tag).then(|| {
            format!(
                "seed {}, start {}, scale {} or another scenario, where this run is seed {}, start {}, scale {}",
                self.seed,
                self.start_date,
                self.population_scale,
                fresh.seed,
                fresh.start_date,
                fresh.population_scale
            )
        })
    }
}

/// Generates shard `opts.shard` of the simulation for days `0..opts.days` into `opts.out`,
/// resuming from what is there; `progress` is called after each day written with the day's
/// date and events.
///
/// # Errors
/// [`Error::Mismatch`] when the directory holds another definition's output for this shard;
/// I/O, Parquet and corrupt-file errors.
pub fn generate(
    opts: &OfflineOptions,
    mut progress: impl FnMut(&str, u64) + Send,
) -> Result<Summary> {
    let started = Instant::now();
    let part = part_name(opts.shard);
    let manifests = opts.out.join("_manifests");
    let states = opts.out.join("_state");
    for d in [&opts.out, &manifests, &states] {
        std::fs::create_dir_all(d).map_err(io(d))?;
    }
    let manifest_path = manifests.join(format!("{part}.json"));
    let state_path = |day: u32| states.join(format!("{part}@{day:05}.bin"));
    let fresh = Manifest::new(&opts.config, opts.shard);
    let mut manifest = match std::fs::read(&manifest_path) {
        Ok(bytes) => {
            let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
                path: manifest_path.clone(),
                message: format!("not a manifest: {e}"),
            })?;
            if let Some(what) = m.mismatch(&fresh) {
                return Err(Error::Mismatch {
                    path: manifest_path,
                    what,
                });
            }
            m
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => fresh,
        Err(e) => return Err(io(&manifest_path)(e)),
    };

    let engine = Engine::new(opts.config.clone());
    let mut sim = if manifest.checkpoint_day > 0 {
        let state_path = state_path(manifest.checkpoint_day);
        let blob = std::fs::read(&state_path).map_err(io(&state_path))?;
        let raw = zstd::decode_all(&blob[..]).map_err(|e| Error::Corrupt {
            path: state_path.clone(),
            message: format!("checkpoint does not decompress: {e}"),
        })?;
        let day = engine.first_day() + manifest.checkpoint_day;
        let mut sim = MemorySim::restore_shard(engine, opts.shard, day, &raw).map_err(|e| {
            Error::Corrupt {
                path: state_path.clone(),
                message: format!("checkpoint does not decode: {e}"),
            }
        })?;
        sim.set_keep_finished(false);
        sim
    } else {
        MemorySim::events_only(engine, opts.shard)
    };
    let mut days_replayed = 0;
    while sim.days_done() < manifest.days_complete {
        sim.step_events();
        days_replayed += 1;
    }

    // Two stages overlap: this thread steps and renders day d+1 while a writer thread encodes
    // and writes day d, then records it (checkpoint, manifest). Both hand their parallel work
    // to one pool of `threads` workers. At most one rendered day waits between them.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads.max(1))
        .build()?;
    let every = opts.checkpoint_days.max(1);
    let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(1);
    let tag = format!("{:016x}", simulation_tag(&opts.config));
    let (written, produced) = std::thread::scope(|scope| {
        let writer = scope.spawn(|| -> Result<(Manifest, u32, u64)> {
            let (mut days_written, mut events_written) = (0u32, 0u64);
            for job in rx {
                let file =
                    pool.install(|| write_day(&job, &opts.out, &tag, opts.shard, opts.zstd_level))?;
                events_written += file.events;
                days_written += 1;
                progress(&job.date, file.events);
                manifest.events += file.events;
                manifest.files.retain(|f| f.date != job.date);
                manifest.files.push(file);
                manifest.days_complete = job.day + 1;
                // A checkpoint is named by its day and the manifest names the one to use, so
                // a kill between the two writes leaves the manifest's checkpoint in place.
                let previous = manifest.checkpoint_day;
                if let Some(blob) = &job.checkpoint {
                    write_atomic(&state_path(manifest.days_complete), blob)?;
                    manifest.checkpoint_day = manifest.days_complete;
                }
                let json = serde_json::to_vec_pretty(&manifest).expect("a manifest serialises");
                write_atomic(&manifest_path, &json)?;
                if previous > 0 && previous != manifest.checkpoint_day {
                    let old = state_path(previous);
                    std::fs::remove_file(&old).map_err(io(&old))?;
                }
            }
            if days_written == 0 {
                // Nothing to do; the manifest may not exist yet (zero days asked for).
                let json = serde_json::to_vec_pretty(&manifest).expect("a manifest serialises");
                write_atomic(&manifest_path, &json)?;
            }
            Ok((manifest, days_written, events_written))
        });
        let produced = pool.install(|| -> Result<()> {
            while sim.days_done() < opts.days {
                // `day`: the emitted day's index from the start date (the manifest's count).
                let (day, date) = (sim.days_done(), sim.engine.date_of(sim.next_day()));
                let out = sim.step_events();
                let date = date.format("%Y-%m-%d").to_string();
                let checkpoint = if (day + 1) % every == 0 || day + 1 == opts.days {
                    let path = state_path(day + 1);
                    Some(zstd::encode_all(&sim.save()[..], 1).map_err(io(&path))?)
                } else {
                    None
                };
                let job = Job {
                    day,
                    rel: format!("date={date}/{part}.parquet"),
                    date,
                    batches: sim.engine.day_batches(&out.records, RENDER_ROWS),
                    checkpoint,
                };
                if tx.send(job).is_err() {
                    break; // the writer failed; its error is the one to report
                }
            }
            Ok(())
        });
        drop(tx);
        (
            writer.join().expect("the writer thread does not panic"),
            produced,
        )
    });
    let (manifest, days_written, events_written) = written?;
    produced?;
    Ok(Summary {
        manifest,
        days_written,
        events_written,
        days_replayed,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// One rendered day on its way to the writer.
struct Job {
    day: u32,
    date: String,
    /// The file, relative to the output directory.
    rel: String,
    batches: Vec<RecordBatch>,
    /// The shard's state after the day (zstd), when a checkpoint is due.
    checkpoint: Option<Vec<u8>>,
}

/// Writes one rendered day of the shard; returns its file entry.
fn write_day(job: &Job, out: &Path, tag: &str, shard: Shard, zstd_level: i32) -> Result<DayFile> {
    let (rel, date) = (job.rel.as_str(), job.date.as_str());
    let path = out.join(rel);
    let dir = path.parent().expect("a file under a date directory");
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = tmp_path(&path);
    let file = File::create(&tmp).map_err(io(&tmp))?;
    let mut sink = ParquetSink::new(
        BufWriter::with_capacity(1 << 20, file),
        vec![
            ("ampsim.engine_version".into(), ENGINE_VERSION.to_string()),
            ("ampsim.definition_tag".into(), tag.to_string()),
            ("ampsim.shard".into(), shard.to_string()),
            ("ampsim.date".into(), date.to_string()),
        ],
        zstd_level,
    )?;
    for batch in &job.batches {
        sink.write(batch.clone())?;
    }
    let (w, events) = sink.finish()?;
    let file = w
        .into_inner()
        .map_err(|e| e.into_error())
        .map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    let bytes = file.metadata().map_err(io(&tmp))?.len();
    drop(file);
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    Ok(DayFile {
        date: date.to_string(),
        path: rel.to_string(),
        events,
        bytes,
    })
}
