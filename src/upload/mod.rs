//! `ampsim upload`: send a simulation's events to Amplitude's HTTP V2 API (`/2/httpapi`) or
//! Batch API (`/batch`), with the retry rules of `../shared/reference/amplitude.md`.
//!
//! Data flow: a reader task pulls one day at a time over StreamEvents and renders each event to
//! its HTTP V2 JSON once; the coordinator packs events in stream order into batches within the
//! count and byte limits and hands them to at most `concurrency` senders; each sender gzips
//! the body and POSTs it, retrying 5xx, network errors and unspecific 429s with exponential
//! backoff. The coordinator then applies the answer:
//! - 200: the events are acknowledged;
//! - 400 naming events: those events are dropped and reported, the rest go back to the queue;
//! - 413: the batch goes back to the queue and the batch size halves (a single event that is
//!   still too large is dropped and reported);
//! - 429 naming devices/users: those ids are paused (30 s by default) and their events, with
//!   every later event of the same ids, wait; the rest go back to the queue at once.
//!
//! Events keep their `insert_id`, so a resend after an ambiguous failure (a 5xx after the
//! server ingested, or a crash before the checkpoint moved) is deduplicated by Amplitude.
//! The checkpoint records the low-water mark: the (day, index in day) before which every event
//! is acknowledged or dropped; an interrupted upload restarts from there.

pub mod double;

use crate::client::Client;
use crate::pb;
use anyhow::{bail, Context};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// Most events in one request, on either API.
pub const MAX_EVENTS_PER_REQUEST: usize = 2000;

/// Amplitude's US base URL.
pub const US_BASE_URL: &str = "https://api2.amplitude.com";
/// Amplitude's EU base URL.
pub const EU_BASE_URL: &str = "https://api.eu.amplitude.com";

/// Which ingestion API to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Api {
    /// `POST /2/httpapi`: 1 MB and 2,000 events per request, 30 events/s per id.
    HttpV2,
    /// `POST /batch`: 20 MB and 2,000 events per request, 1,000 events/s per id.
    Batch,
}

impl Api {
    /// The request path.
    pub fn path(self) -> &'static str {
        match self {
            Api::HttpV2 => "/2/httpapi",
            Api::Batch => "/batch",
        }
    }

    /// Largest request body (uncompressed JSON) the API takes.
    pub fn max_bytes(self) -> usize {
        match self {
            Api::HttpV2 => 1_000_000,
            Api::Batch => 20_000_000,
        }
    }
}

/// Everything an upload needs besides the gRPC client.
#[derive(Debug, Clone)]
pub struct UploadOptions {
    /// The simulation.
    pub simulation: String,
    /// First day (default: the simulation's start).
    pub from: Option<NaiveDate>,
    /// Last day (default: the last generated day).
    pub to: Option<NaiveDate>,
    /// The Amplitude project API key (sent in the body, never stored in the checkpoint).
    pub api_key: String,
    /// Base URL, e.g. `https://api2.amplitude.com`; the API path is appended.
    pub base_url: String,
    /// HTTP V2 or Batch.
    pub api: Api,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Most events per request (≤ 2,000).
    pub batch_events: usize,
    /// How long a throttled device or user is paused after a 429.
    pub throttle_pause: Duration,
    /// Attempts per request on 5xx, network errors and unspecific 429s before giving up.
    pub max_attempts: u32,
    /// First backoff delay; it doubles per attempt up to 30 s.
    pub backoff: Duration,
    /// The checkpoint file.
    pub checkpoint: PathBuf,
    /// Ignore (and overwrite) an existing checkpoint.
    pub restart: bool,
    /// Where dropped events are listed (JSON lines: insert_id, reason, event).
    pub rejected: PathBuf,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

/// The checkpoint file's content.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Checkpoint {
    /// Format version (1).
    pub version: u32,
    /// The simulation uploaded.
    pub simulation: String,
    /// First day of the range.
    pub from: NaiveDate,
    /// Last day of the range.
    pub to: NaiveDate,
    /// The full request URL.
    pub url: String,
    /// Every event before (`next_date`, `next_index`) is acknowledged or dropped.
    pub next_date: NaiveDate,
    /// Index of the first event of `next_date` not yet known to be done.
    pub next_index: u64,
    /// The whole range is done.
    pub complete: bool,
    /// Events acknowledged by the server so far, over all runs.
    pub acknowledged: u64,
    /// Events dropped as invalid so far, over all runs.
    pub dropped: u64,
}

impl Checkpoint {
    fn load(path: &std::path::Path) -> anyhow::Result<Option<Checkpoint>> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .with_context(|| format!("--checkpoint {}: not a checkpoint", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("--checkpoint {}", path.display())),
        }
    }

    /// Writes atomically: a temporary file, fsync, rename.
    fn save(&self, path: &std::path::Path) -> anyhow::Result<()> {
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)
            .with_context(|| format!("--checkpoint {}", tmp.display()))?;
        serde_json::to_writer_pretty(&mut f, self)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path).with_context(|| format!("--checkpoint {}", path.display()))?;
        Ok(())
    }
}

/// What an upload did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UploadReport {
    /// The request URL.
    pub url: String,
    /// First and last day.
    pub from: String,
    /// Last day.
    pub to: String,
    /// Where this run started: `None` from the beginning, else (day, index in day).
    pub resumed_at: Option<(String, u64)>,
    /// The range was already complete in the checkpoint; nothing was sent.
    pub already_complete: bool,
    /// Events read from the server in this run.
    pub events_read: u64,
    /// Events acknowledged (200) in this run.
    pub acknowledged: u64,
    /// Sum of the servers' `events_ingested` in this run.
    pub server_ingested: u64,
    /// Events dropped as invalid (400 naming them, or alone and still too large) in this run.
    pub dropped: u64,
    /// Requests sent (attempts included).
    pub requests: u64,
    /// Answers 429.
    pub throttled: u64,
    /// Answers 413.
    pub too_large: u64,
    /// Answers 5xx and network errors (each retried).
    pub server_errors: u64,
    /// Final batch size (events), after any 413 halving.
    pub batch_events: usize,
    /// Seconds.
    pub seconds: f64,
}

/// One event on its way.
struct Pending {
    seq: u64,
    device: String,
    user: String,
    insert_id: String,
    json: Vec<u8>,
}

enum Item {
    DayStart { date: NaiveDate, index: u64 },
    Event(Pending),
    DayEnd,
}

/// How a request ended, after the sender's own retries.
enum Outcome {
    Accepted {
        ingested: u64,
    },
    Invalid {
        drop: Vec<(usize, String)>,
    },
    TooLarge,
    Throttled {
        ids: Vec<String>,
        events: Vec<usize>,
        eps: f64,
    },
}

/// A throttled id's allowance: one event per token, `rate` tokens a second, at most one
/// banked (no bursts), starting empty when its pause ends.
struct Bucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: f64, from: Instant) -> Bucket {
        Bucket {
            rate,
            tokens: 0.0,
            last: from,
        }
    }

    fn available(&mut self, now: Instant) -> bool {
        if now > self.last {
            let refill = now.duration_since(self.last).as_secs_f64() * self.rate;
            self.tokens = (self.tokens + refill).min(1.0);
            self.last = now;
        }
        self.tokens >= 1.0
    }

    fn take(&mut self) {
        self.tokens -= 1.0;
    }
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    throttled: AtomicU64,
    too_large: AtomicU64,
    server_errors: AtomicU64,
}

struct Sender {
    http: reqwest::Client,
    url: String,
    body_head: Vec<u8>,
    max_attempts: u32,
    backoff: Duration,
    counters: Counters,
}

/// The HTTP client: rustls with the ring provider and the web PKI roots.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .user_agent(concat!("ampsim/", env!("CARGO_PKG_VERSION")))
        .timeout(Duration::from_secs(120))
        .build()?)
}

/// The full request URL for `base_url` (any trailing `/` ignored) and `api`.
///
/// # Errors
/// `base_url` is not an http(s) URL.
pub fn request_url(base_url: &str, api: Api) -> anyhow::Result<String> {
    let url = reqwest::Url::parse(base_url)
        .with_context(|| format!("--endpoint {base_url:?} is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        bail!("--endpoint {base_url:?} must be an http:// or https:// URL with a host");
    }
    Ok(format!("{}{}", base_url.trim_end_matches('/'), api.path()))
}

impl Sender {
    /// Sends one batch, retrying what is worth retrying.
    async fn send(&self, batch: &[Pending]) -> anyhow::Result<Outcome> {
        let mut raw = Vec::with_capacity(
            self.body_head.len() + batch.iter().map(|p| p.json.len() + 1).sum::<usize>() + 2,
        );
        raw.extend_from_slice(&self.body_head);
        for (i, p) in batch.iter().enumerate() {
            if i > 0 {
                raw.push(b',');
            }
            raw.extend_from_slice(&p.json);
        }
        raw.extend_from_slice(b"]}");
        let body = tokio::task::spawn_blocking(move || {
            let mut gz = flate2::write::GzEncoder::new(
                Vec::with_capacity(raw.len() / 4),
                flate2::Compression::fast(),
            );
            gz.write_all(&raw).and_then(|()| gz.finish())
        })
        .await??;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.counters.requests.fetch_add(1, Ordering::Relaxed);
            let sent = self
                .http
                .post(&self.url)
                .header("Content-Type", "application/json")
                .header("Content-Encoding", "gzip")
                .header("Accept", "*/*")
                .body(body.clone())
                .send()
                .await;
            let retry_reason = match sent {
                Err(e) => {
                    self.counters.server_errors.fetch_add(1, Ordering::Relaxed);
                    format!("network error: {e}")
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let text = resp.bytes().await.unwrap_or_default();
                    let json: Value = serde_json::from_slice(&text).unwrap_or(Value::Null);
                    match status {
                        200..=299 => {
                            let ingested = json
                                .get("events_ingested")
                                .and_then(Value::as_u64)
                                .unwrap_or(batch.len() as u64);
                            return Ok(Outcome::Accepted { ingested });
                        }
                        413 => {
                            self.counters.too_large.fetch_add(1, Ordering::Relaxed);
                            return Ok(Outcome::TooLarge);
                        }
                        429 => {
                            self.counters.throttled.fetch_add(1, Ordering::Relaxed);
                            let (ids, events) = throttled(&json);
                            if !ids.is_empty() || !events.is_empty() {
                                let eps = json
                                    .get("eps_threshold")
                                    .and_then(Value::as_f64)
                                    .unwrap_or(30.0);
                                return Ok(Outcome::Throttled { ids, events, eps });
                            }
                            "429 without throttled ids".to_owned()
                        }
                        400 => {
                            let drop = invalid_events(&json, batch.len());
                            if drop.is_empty() {
                                bail!(
                                    "{} answered 400: {}",
                                    self.url,
                                    String::from_utf8_lossy(&text)
                                );
                            }
                            return Ok(Outcome::Invalid { drop });
                        }
                        500..=599 => {
                            self.counters.server_errors.fetch_add(1, Ordering::Relaxed);
                            format!("{status}: {}", String::from_utf8_lossy(&text))
                        }
                        _ => bail!(
                            "{} answered {status}: {}",
                            self.url,
                            String::from_utf8_lossy(&text)
                        ),
                    }
                }
            };
            if attempt >= self.max_attempts {
                bail!(
                    "{}: giving up after {attempt} attempts; last: {retry_reason}",
                    self.url
                );
            }
            let delay = self
                .backoff
                .saturating_mul(1 << (attempt - 1).min(16))
                .min(Duration::from_secs(30));
            tracing::debug!(attempt, ?delay, %retry_reason, "retrying");
            tokio::time::sleep(delay).await;
        }
    }
}

/// The ids and event indexes a 429 names.
fn throttled(json: &Value) -> (Vec<String>, Vec<usize>) {
    let mut ids = Vec::new();
    for key in [
        "throttled_devices",
        "throttled_users",
        "exceeded_daily_quota_devices",
        "exceeded_daily_quota_users",
    ] {
        if let Some(m) = json.get(key).and_then(Value::as_object) {
            ids.extend(m.keys().cloned());
        }
    }
    let events = json
        .get("throttled_events")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_u64)
                .map(|i| i as usize)
                .collect()
        })
        .unwrap_or_default();
    (ids, events)
}

/// The (index, reason) of each event a 400 names, within `len`.
fn invalid_events(json: &Value, len: usize) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    for (key, what) in [
        ("events_with_invalid_fields", "invalid"),
        ("events_with_missing_fields", "missing"),
        ("events_with_invalid_id_lengths", "id too short"),
    ] {
        let Some(m) = json.get(key).and_then(Value::as_object) else {
            continue;
        };
        for (field, idx) in m {
            for i in idx
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_u64)
            {
                let i = i as usize;
                if i < len {
                    out.push((i, format!("{what}: {field}")));
                }
            }
        }
    }
    if let Some(a) = json.get("silenced_events").and_then(Value::as_array) {
        for i in a.iter().filter_map(Value::as_u64) {
            if (i as usize) < len {
                out.push((i as usize, "silenced device".into()));
            }
        }
    }
    out.sort();
    // One line per event, with every reason.
    let mut merged: Vec<(usize, String)> = Vec::new();
    for (i, r) in out {
        match merged.last_mut() {
            Some((j, rs)) if *j == i => {
                rs.push_str("; ");
                rs.push_str(&r);
            }
            _ => merged.push((i, r)),
        }
    }
    merged
}

/// Where in the stream the low-water mark is.
struct DayMark {
    date: NaiveDate,
    first_seq: u64,
    first_index: u64,
    end_seq: Option<u64>,
}

/// Uploads the range.
///
/// # Errors
/// Bad options, an unreachable ampsim server, a checkpoint of another upload, an answer that
/// cannot be retried (e.g. an invalid API key), or retries exhausted. The checkpoint then
/// holds the progress.
pub async fn upload(client: &Client, opts: &UploadOptions) -> anyhow::Result<UploadReport> {
    let started = Instant::now();
    if opts.api_key.trim().is_empty() {
        bail!("--api-key is empty");
    }
    if opts.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    if opts.batch_events == 0 || opts.batch_events > MAX_EVENTS_PER_REQUEST {
        bail!("--batch-events must be 1..={MAX_EVENTS_PER_REQUEST}");
    }
    let url = request_url(&opts.base_url, opts.api)?;
    let sim = client
        .clone()
        .get_simulation(pb::GetSimulationRequest {
            simulation_id: opts.simulation.clone(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("--simulation {}: {}", opts.simulation, s.message()))?
        .into_inner();
    if sim.days_generated == 0 {
        bail!(
            "--simulation {}: no day generated yet (run `ampsim generate`)",
            opts.simulation
        );
    }
    let date = |what: &str, s: &str| {
        crate::validate::parse_ymd(s)
            .map_err(|e| anyhow::anyhow!("the server sent {what} {s:?}: {e}"))
    };
    let start = date("start date", &sim.start_date)?;
    let last = date("last generated date", &sim.last_generated_date)?;
    let from = opts.from.unwrap_or(start);
    let to = opts.to.unwrap_or(last);
    if from > to {
        bail!("--from {from} is after --to {to}");
    }
    if from < start || to > last {
        bail!("--from/--to {from}..{to} is outside the generated days {start}..{last}");
    }

    let mut ck = Checkpoint {
        version: 1,
        simulation: opts.simulation.clone(),
        from,
        to,
        url: url.clone(),
        next_date: from,
        next_index: 0,
        complete: false,
        acknowledged: 0,
        dropped: 0,
    };
    let mut report = UploadReport {
        url: url.clone(),
        from: from.to_string(),
        to: to.to_string(),
        batch_events: opts.batch_events,
        ..Default::default()
    };
    if !opts.restart {
        if let Some(old) = Checkpoint::load(&opts.checkpoint)? {
            if (old.simulation.as_str(), old.from, old.to, old.url.as_str())
                != (opts.simulation.as_str(), from, to, url.as_str())
            {
                bail!(
                    "--checkpoint {} belongs to another upload ({} {}..{} to {}); pass --restart \
                     to start over, or another --checkpoint",
                    opts.checkpoint.display(),
                    old.simulation,
                    old.from,
                    old.to,
                    old.url
                );
            }
            if old.complete {
                report.already_complete = true;
                report.resumed_at = Some((old.next_date.to_string(), old.next_index));
                return Ok(report);
            }
            if (old.next_date, old.next_index) != (from, 0) {
                report.resumed_at = Some((old.next_date.to_string(), old.next_index));
            }
            ck = old;
        }
    }
    ck.save(&opts.checkpoint)?;

    let mut rejected = Rejected {
        path: opts.rejected.clone(),
        file: None,
    };

    let mut body_head = b"{\"api_key\":".to_vec();
    serde_json::to_writer(&mut body_head, &opts.api_key)?;
    body_head.extend_from_slice(b",\"events\":[");
    let sender = Arc::new(Sender {
        http: http_client()?,
        url: url.clone(),
        body_head,
        max_attempts: opts.max_attempts.max(1),
        backoff: opts.backoff,
        counters: Counters::default(),
    });
    let max_bytes = opts.api.max_bytes();

    // The reader: one day at a time, rendered once.
    let window = (opts.concurrency * MAX_EVENTS_PER_REQUEST * 4).max(20_000);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Item>(window);
    let reader = {
        let client = client.clone();
        let simulation = opts.simulation.clone();
        let (first_date, first_index) = (ck.next_date, ck.next_index);
        Some(tokio::spawn(async move {
            read_days(client, simulation, first_date, first_index, to, tx).await
        }))
    };
    let mut reader = reader;

    let bar = progress_bar(opts.progress);
    let mut days: VecDeque<DayMark> = VecDeque::new();
    let mut next_seq = 0u64;
    let mut low = 0u64; // every seq < low is done
    let mut done: BTreeSet<u64> = BTreeSet::new();
    let mut ready: VecDeque<Pending> = VecDeque::new();
    let mut deferred: Vec<Pending> = Vec::new();
    let mut paused: HashMap<String, Instant> = HashMap::new();
    // Ids that were throttled send at their allowed rate from then on.
    let mut limits: HashMap<String, Bucket> = HashMap::new();
    let mut holding = false;
    let mut inflight: JoinSet<(Vec<Pending>, anyhow::Result<Outcome>)> = JoinSet::new();
    let mut reader_done = false;
    let mut batch_events = opts.batch_events;
    let mut last_save = Instant::now();
    let body_overhead = sender.body_head.len() + 2;

    loop {
        // Release ids whose pause is over; their events go first, in stream order.
        let now = Instant::now();
        paused.retain(|_, until| *until > now);
        if !deferred.is_empty() {
            let (go, wait): (Vec<_>, Vec<_>) = deferred
                .drain(..)
                .partition(|p| !paused.contains_key(&p.device) && !paused.contains_key(&p.user));
            deferred = wait;
            let mut go = go;
            go.sort_by_key(|p| p.seq);
            for p in go.into_iter().rev() {
                ready.push_front(p);
            }
        }

        // Fill the senders.
        while inflight.len() < opts.concurrency {
            // Full batches while the reader keeps up; whatever is there once it is done or the
            // window is full.
            let full = ready.len() >= batch_events;
            let window_full = next_seq - low >= window as u64;
            if ready.is_empty() || !(full || reader_done || window_full) {
                break;
            }
            let mut batch = Vec::with_capacity(batch_events);
            let mut bytes = body_overhead;
            // Throttled ids send one event per token; their other events wait, in order.
            let mut held = Vec::new();
            let now = Instant::now();
            while batch.len() < batch_events {
                let Some(p) = ready.pop_front() else { break };
                if paused.contains_key(&p.device) || paused.contains_key(&p.user) {
                    deferred.push(p);
                    continue;
                }
                let has_token = |limits: &mut HashMap<String, Bucket>, id: &str| {
                    limits.get_mut(id).is_none_or(|b| b.available(now))
                };
                if !(has_token(&mut limits, &p.device) && has_token(&mut limits, &p.user)) {
                    held.push(p);
                    continue;
                }
                if !batch.is_empty() && bytes + p.json.len() + 1 > max_bytes {
                    ready.push_front(p);
                    break;
                }
                for id in [&p.device, &p.user] {
                    if let Some(b) = limits.get_mut(id.as_str()) {
                        b.take();
                    }
                }
                bytes += p.json.len() + 1;
                batch.push(p);
            }
            holding = !held.is_empty();
            requeue_front(&mut ready, held);
            if batch.is_empty() {
                continue;
            }
            let s = sender.clone();
            inflight.spawn(async move {
                let r = s.send(&batch).await;
                (batch, r)
            });
        }

        if reader_done && ready.is_empty() && deferred.is_empty() && inflight.is_empty() {
            break;
        }

        let want_more = !reader_done && next_seq - low < window as u64;
        let next_pause_end = paused.values().min().copied();
        tokio::select! {
            joined = inflight.join_next(), if !inflight.is_empty() => {
                let (batch, outcome) = joined.expect("non-empty").context("upload task")?;
                let outcome = match outcome {
                    Ok(o) => o,
                    Err(e) => {
                        save_progress(&mut ck, &days, low, &opts.checkpoint)?;
                        bar.abandon();
                        return Err(e.context(format!(
                            "upload stopped; progress is in --checkpoint {} (run the same command to resume)",
                            opts.checkpoint.display()
                        )));
                    }
                };
                match outcome {
                    Outcome::Accepted { ingested } => {
                        report.acknowledged += batch.len() as u64;
                        report.server_ingested += ingested;
                        ck.acknowledged += batch.len() as u64;
                        bar.inc(batch.len() as u64);
                        done.extend(batch.iter().map(|p| p.seq));
                    }
                    Outcome::Invalid { drop } => {
                        let reasons: HashMap<usize, String> = drop.into_iter().collect();
                        let mut back = Vec::with_capacity(batch.len());
                        for (i, p) in batch.into_iter().enumerate() {
                            if let Some(reason) = reasons.get(&i) {
                                rejected.write(&p, reason)?;
                                report.dropped += 1;
                                ck.dropped += 1;
                                done.insert(p.seq);
                            } else {
                                back.push(p);
                            }
                        }
                        requeue_front(&mut ready, back);
                    }
                    Outcome::TooLarge => {
                        if batch.len() == 1 {
                            let p = batch.into_iter().next().expect("one");
                            rejected.write(&p, "alone larger than the request limit (413)")?;
                            report.dropped += 1;
                            ck.dropped += 1;
                            done.insert(p.seq);
                        } else {
                            batch_events = batch_events.min(batch.len() / 2).max(1);
                            requeue_front(&mut ready, batch);
                        }
                    }
                    Outcome::Throttled { ids, events, eps } => {
                        let until = Instant::now() + opts.throttle_pause;
                        let mut named: Vec<String> = ids;
                        named.extend(events.iter().filter_map(|&i| batch.get(i)).map(|p| p.device.clone()));
                        named.sort();
                        named.dedup();
                        for id in named {
                            // First 429: the threshold the server gave; each repeat halves it.
                            let rate = limits.get(&id).map_or(eps, |b| b.rate / 2.0).max(0.01);
                            limits.insert(id.clone(), Bucket::new(rate, until));
                            paused.insert(id, until);
                        }
                        // Everything goes back; paused ids' events wait when batches are packed.
                        requeue_front(&mut ready, batch);
                    }
                }
                while done.remove(&low) {
                    low += 1;
                }
                if last_save.elapsed() > Duration::from_millis(250) {
                    rejected.flush()?;
                    save_progress(&mut ck, &days, low, &opts.checkpoint)?;
                    last_save = Instant::now();
                }
            }
            item = rx.recv(), if want_more => match item {
                Some(Item::DayStart { date, index }) => {
                    bar.set_message(date.to_string());
                    days.push_back(DayMark { date, first_seq: next_seq, first_index: index, end_seq: None });
                }
                Some(Item::Event(mut p)) => {
                    p.seq = next_seq;
                    next_seq += 1;
                    report.events_read += 1;
                    ready.push_back(p);
                }
                Some(Item::DayEnd) => {
                    if let Some(d) = days.back_mut() {
                        d.end_seq = Some(next_seq);
                    }
                }
                None => {
                    reader_done = true;
                    if let Some(r) = reader.take() {
                        r.await.context("reader task")??;
                    }
                }
            },
            _ = tokio::time::sleep(Duration::from_millis(10)), if holding => {}
            _ = async {
                match next_pause_end {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            }, if !deferred.is_empty() => {}
        }
    }
    rejected.flush()?;
    ck.complete = true;
    ck.next_date = to.succ_opt().unwrap_or(to);
    ck.next_index = 0;
    ck.save(&opts.checkpoint)?;
    bar.finish_and_clear();

    let c = &sender.counters;
    report.requests = c.requests.load(Ordering::Relaxed);
    report.throttled = c.throttled.load(Ordering::Relaxed);
    report.too_large = c.too_large.load(Ordering::Relaxed);
    report.server_errors = c.server_errors.load(Ordering::Relaxed);
    report.batch_events = batch_events;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

fn requeue_front(ready: &mut VecDeque<Pending>, batch: Vec<Pending>) {
    for p in batch.into_iter().rev() {
        ready.push_front(p);
    }
}

/// The list of dropped events, created on the first drop and appended to across runs.
struct Rejected {
    path: PathBuf,
    file: Option<std::io::BufWriter<std::fs::File>>,
}

impl Rejected {
    fn write(&mut self, p: &Pending, reason: &str) -> anyhow::Result<()> {
        if self.file.is_none() {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .with_context(|| format!("--rejected {}", self.path.display()))?;
            self.file = Some(std::io::BufWriter::new(f));
        }
        let w = self.file.as_mut().expect("opened above");
        let event: Value = serde_json::from_slice(&p.json)?;
        serde_json::to_writer(
            &mut *w,
            &serde_json::json!({"insert_id": p.insert_id, "reason": reason, "event": event}),
        )?;
        w.write_all(b"\n")?;
        tracing::warn!(insert_id = %p.insert_id, %reason, "event dropped");
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        if let Some(f) = &mut self.file {
            f.flush()?;
        }
        Ok(())
    }
}

/// Moves the checkpoint to the low-water mark and saves it.
fn save_progress(
    ck: &mut Checkpoint,
    days: &VecDeque<DayMark>,
    low: u64,
    path: &std::path::Path,
) -> anyhow::Result<()> {
    // The first day not wholly done holds the mark; after the last day read, the next day.
    let mut pos = None;
    for d in days {
        match d.end_seq {
            Some(end) if low >= end => {
                pos = d.date.succ_opt().map(|n| (n, 0));
            }
            _ => {
                pos = Some((d.date, d.first_index + low.saturating_sub(d.first_seq)));
                break;
            }
        }
    }
    if let Some((date, index)) = pos {
        ck.next_date = date;
        ck.next_index = index;
    }
    ck.save(path)
}

fn progress_bar(show: bool) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {elapsed_precise} {human_pos} events acknowledged ({per_sec}), reading {msg}",
        )
        .expect("template"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Streams each day from `first` to `last`, skipping the first `first_index` events of `first`.
async fn read_days(
    mut client: Client,
    simulation: String,
    first: NaiveDate,
    first_index: u64,
    last: NaiveDate,
    tx: tokio::sync::mpsc::Sender<Item>,
) -> anyhow::Result<()> {
    let mut date = first;
    while date <= last {
        let skip = if date == first { first_index } else { 0 };
        if tx.send(Item::DayStart { date, index: skip }).await.is_err() {
            return Ok(());
        }
        let day = date.format("%Y-%m-%d").to_string();
        let mut stream = client
            .stream_events(pb::StreamEventsRequest {
                simulation_id: simulation.clone(),
                from_date: day.clone(),
                to_date: day.clone(),
                ..Default::default()
            })
            .await
            .map_err(|s| anyhow::anyhow!("StreamEvents {day}: {}", s.message()))?
            .into_inner();
        let mut index = 0u64;
        while let Some(batch) = stream
            .message()
            .await
            .map_err(|s| anyhow::anyhow!("StreamEvents {day}: {}", s.message()))?
        {
            for e in batch.iter() {
                let e = e.map_err(|e| anyhow::anyhow!("StreamEvents {day}: {e}"))?;
                index += 1;
                if index <= skip {
                    continue;
                }
                let mut json = Vec::with_capacity(1024);
                e.write_json(&mut json);
                let p = Pending {
                    seq: 0,
                    device: e.device_id().to_string(),
                    user: e.user_id().to_string(),
                    insert_id: e.insert_id().to_string(),
                    json,
                };
                if tx.send(Item::Event(p)).await.is_err() {
                    return Ok(());
                }
            }
        }
        if tx.send(Item::DayEnd).await.is_err() {
            return Ok(());
        }
        date = match date.succ_opt() {
            Some(d) => d,
            None => break,
        };
    }
    Ok(())
}
