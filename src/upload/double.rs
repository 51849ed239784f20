//! A local stand-in for Amplitude's ingestion API (`/2/httpapi` and `/batch`), for tests and dry
//! runs: `ampsim amplitude-double`, or [`AmplitudeDouble::start`] in process.
//!
//! It enforces the documented contract (see `../shared/reference/amplitude.md`, "Checklist for
//! the test double"): gzip bodies, `Content-Type: application/json`, the byte and event-count
//! limits (413), the required fields and the minimum id length (400 with the indexes of the bad
//! events), per-id events-per-second limits (429 with the throttled devices, users and events),
//! 7-day `insert_id` dedupe, and injected 5xx, optionally after ingesting the request as
//! Amplitude may do on 500/502/504. A rejected request (400, 413, 429, an injected fault that
//! does not ingest) ingests nothing, which is what makes resending safe.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Which API a request came through: they differ in limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    HttpV2,
    Batch,
}

/// The rules the double enforces. [`Default`] is Amplitude's documented contract.
#[derive(Debug, Clone)]
pub struct DoubleConfig {
    /// The one API key accepted; `None` accepts any non-empty key.
    pub api_key: Option<String>,
    /// Ids shorter than this are removed from the event (default 5); `options.min_id_length`
    /// in a request overrides it.
    pub min_id_length: usize,
    /// Events per second allowed per device or user on `/2/httpapi` (30).
    pub eps_http: u32,
    /// Events per second allowed per device or user on `/batch` (1,000).
    pub eps_batch: u32,
    /// The window the rate is averaged over (30 s): an id may send `eps × window` events in it.
    pub eps_window: Duration,
    /// Largest (uncompressed) body on `/2/httpapi` (1 MB).
    pub max_bytes_http: usize,
    /// Largest (uncompressed) body on `/batch` (20 MB).
    pub max_bytes_batch: usize,
    /// Most events per request (2,000).
    pub max_events: usize,
    /// Longest string value, in characters (1,024); longer ones make the event invalid.
    pub max_string_chars: usize,
    /// Devices Amplitude has silenced as spam: requests with their events get the 400
    /// "Events silenced for device_id" naming them.
    pub silenced_devices: std::collections::HashSet<String>,
    /// Answer every n-th request with `fail_status` (0: never).
    pub fail_every: u64,
    /// The injected status (e.g. 500, 502, 503, 504).
    pub fail_status: u16,
    /// Whether an injected 500/502/504 ingests the request first (the events "may or may not
    /// have been accepted"); retries must then be deduped by `insert_id`.
    pub fail_after_ingest: bool,
    /// How long an `insert_id` is remembered per device (7 days).
    pub dedupe_window: Duration,
    /// Wait this long before answering each request (a slow or distant server).
    pub response_delay: Duration,
}

impl Default for DoubleConfig {
    fn default() -> Self {
        DoubleConfig {
            api_key: None,
            min_id_length: 5,
            eps_http: 30,
            eps_batch: 1000,
            eps_window: Duration::from_secs(30),
            max_bytes_http: 1_000_000,
            max_bytes_batch: 20_000_000,
            max_events: 2000,
            max_string_chars: 1024,
            silenced_devices: Default::default(),
            fail_every: 0,
            fail_status: 500,
            fail_after_ingest: true,
            dedupe_window: Duration::from_secs(7 * 24 * 3600),
            response_delay: Duration::ZERO,
        }
    }
}

/// What the double has seen.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DoubleStats {
    /// Requests received.
    pub requests: u64,
    /// Responses by status code.
    pub responses: BTreeMap<u16, u64>,
    /// Events stored (first sight of their `insert_id` on their device).
    pub events_ingested: u64,
    /// Events ignored as repeats of an `insert_id` within the dedupe window.
    pub duplicates_ignored: u64,
}

#[derive(Default)]
struct Inner {
    stats: DoubleStats,
    /// (device_id or else user_id, insert_id) → when first ingested.
    seen: HashMap<(String, String), Instant>,
    /// insert_id → times ingested (1 when nothing was duplicated).
    ingested: HashMap<String, u32>,
    /// id → recent (time, events) for the rate limit.
    rate: HashMap<String, VecDeque<(Instant, u32)>>,
}

struct Shared {
    cfg: DoubleConfig,
    inner: Mutex<Inner>,
}

/// A running double on a loopback (or any) address.
pub struct AmplitudeDouble {
    /// Where it listens.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl AmplitudeDouble {
    /// Binds `listen` (port 0 picks one) and serves until [`AmplitudeDouble::stop`].
    ///
    /// # Errors
    /// The address cannot be bound.
    pub async fn start(listen: SocketAddr, cfg: DoubleConfig) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            cfg,
            inner: Mutex::default(),
        });
        let app = Router::new()
            .route("/2/httpapi", post(http_v2))
            .route("/batch", post(batch))
            .route("/stats", get(stats))
            .route("/ingested", get(ingested))
            .with_state(shared.clone());
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
        });
        Ok(AmplitudeDouble {
            addr,
            shared,
            shutdown,
            task,
        })
    }

    /// The base URL to give `ampsim upload --endpoint`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Counters so far.
    pub fn stats(&self) -> DoubleStats {
        self.shared
            .inner
            .lock()
            .expect("double state")
            .stats
            .clone()
    }

    /// insert_id → how many times it was ingested.
    pub fn ingested(&self) -> HashMap<String, u32> {
        self.shared
            .inner
            .lock()
            .expect("double state")
            .ingested
            .clone()
    }

    /// Stops serving.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}

async fn http_v2(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    tokio::time::sleep(s.cfg.response_delay).await;
    answer(&s, Route::HttpV2, &headers, &body)
}

async fn batch(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    tokio::time::sleep(s.cfg.response_delay).await;
    answer(&s, Route::Batch, &headers, &body)
}

async fn stats(State(s): State<Arc<Shared>>) -> Response {
    let st = s.inner.lock().expect("double state").stats.clone();
    (StatusCode::OK, axum::Json(st)).into_response()
}

/// `GET /ingested`: insert_id → how many times it was ingested, as a JSON object with sorted
/// keys (what a client outside the process checks "every event exactly once" against).
async fn ingested(State(s): State<Arc<Shared>>) -> Response {
    let counts: BTreeMap<String, u32> = s
        .inner
        .lock()
        .expect("double state")
        .ingested
        .iter()
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    (StatusCode::OK, axum::Json(counts)).into_response()
}

fn answer(s: &Shared, route: Route, headers: &HeaderMap, body: &[u8]) -> Response {
    let (status, value) = handle(s, route, headers, body);
    let mut inner = s.inner.lock().expect("double state");
    *inner.stats.responses.entry(status).or_default() += 1;
    drop(inner);
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, axum::Json(value)).into_response()
}

fn error(code: u16, msg: &str) -> (u16, Value) {
    (code, json!({"code": code, "error": msg}))
}

/// Ids Amplitude refuses outright.
const INVALID_IDS: &[&str] = &[
    "anonymous",
    "nil",
    "none",
    "null",
    "n/a",
    "na",
    "undefined",
    "unknown",
    "",
    "00000000-0000-0000-0000-000000000000",
    "{}",
    "lmy47d",
    "0",
    "-1",
];

fn handle(s: &Shared, route: Route, headers: &HeaderMap, raw: &[u8]) -> (u16, Value) {
    let cfg = &s.cfg;
    let n = {
        let mut inner = s.inner.lock().expect("double state");
        inner.stats.requests += 1;
        inner.stats.requests
    };
    let max_bytes = match route {
        Route::HttpV2 => cfg.max_bytes_http,
        Route::Batch => cfg.max_bytes_batch,
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase()
    };
    if !header("content-type").starts_with("application/json") {
        return error(
            400,
            "Invalid request path: Content-Type must be application/json",
        );
    }
    let body: Vec<u8> = if header("content-encoding") == "gzip" {
        let mut out = Vec::new();
        let limit = max_bytes as u64 + 1;
        match flate2::read::GzDecoder::new(raw)
            .take(limit)
            .read_to_end(&mut out)
        {
            Ok(_) => out,
            Err(_) => return error(400, "Invalid JSON request body"),
        }
    } else {
        raw.to_vec()
    };
    if body.is_empty() {
        return error(400, "Missing request body");
    }
    if body.len() > max_bytes {
        return error(413, "Payload too large");
    }
    let Ok(Value::Object(req)) = serde_json::from_slice::<Value>(&body) else {
        return error(400, "Invalid JSON request body");
    };
    match req.get("api_key").and_then(Value::as_str) {
        None | Some("") => {
            return (
                400,
                json!({"code": 400, "error": "Request missing required field", "missing_field": "api_key"}),
            )
        }
        Some(k) if cfg.api_key.as_deref().is_some_and(|want| want != k) => {
            return error(400, "Invalid API key")
        }
        Some(_) => {}
    }
    let Some(events) = req.get("events").and_then(Value::as_array) else {
        return (
            400,
            json!({"code": 400, "error": "Request missing required field", "missing_field": "events"}),
        );
    };
    if events.len() > cfg.max_events {
        return error(413, "Payload too large");
    }
    let min_id = req
        .get("options")
        .and_then(|o| o.get("min_id_length"))
        .and_then(Value::as_u64)
        .map_or(cfg.min_id_length, |v| v as usize);

    // Faults first: a failing server does not validate.
    if cfg.fail_every > 0 && n % cfg.fail_every == 0 {
        let ingests = cfg.fail_after_ingest && matches!(cfg.fail_status, 500 | 502 | 504);
        if ingests {
            if let Ok(ids) = validate(events, min_id, cfg.max_string_chars) {
                ingest(s, events, &ids, Instant::now());
            }
        }
        return error(cfg.fail_status, "injected failure");
    }

    let ids = match validate(events, min_id, cfg.max_string_chars) {
        Ok(ids) => ids,
        Err(problems) => return (400, problems),
    };

    if !cfg.silenced_devices.is_empty() {
        let silenced: Vec<usize> = ids
            .iter()
            .enumerate()
            .filter(|(_, (d, _))| d.as_ref().is_some_and(|d| cfg.silenced_devices.contains(d)))
            .map(|(i, _)| i)
            .collect();
        if !silenced.is_empty() {
            let devices: std::collections::BTreeSet<&String> =
                silenced.iter().filter_map(|&i| ids[i].0.as_ref()).collect();
            return (
                400,
                json!({"code": 400, "error": "Events silenced for device_id", "silenced_devices": devices, "silenced_events": silenced, "eps_threshold": cfg.eps_http}),
            );
        }
    }

    // Rate limit: an id may send eps × window events per window.
    let now = Instant::now();
    let eps = match route {
        Route::HttpV2 => cfg.eps_http,
        Route::Batch => cfg.eps_batch,
    };
    let allowed = (f64::from(eps) * cfg.eps_window.as_secs_f64()).max(1.0) as u64;
    let mut this_request: HashMap<&str, u64> = HashMap::new();
    for (d, u) in &ids {
        for id in [d, u].into_iter().flatten() {
            *this_request.entry(id.as_str()).or_default() += 1;
        }
    }
    {
        let mut inner = s.inner.lock().expect("double state");
        let mut throttled_devices = Map::new();
        let mut throttled_users = Map::new();
        for (d, u) in &ids {
            for (id, is_device) in [(d, true), (u, false)] {
                let Some(id) = id else { continue };
                let past = inner.rate.get_mut(id.as_str()).map_or(0, |q| {
                    while q
                        .front()
                        .is_some_and(|(t, _)| now.duration_since(*t) > cfg.eps_window)
                    {
                        q.pop_front();
                    }
                    q.iter().map(|(_, c)| u64::from(*c)).sum::<u64>()
                });
                let total = past + this_request[id.as_str()];
                if total > allowed {
                    let rate = json!((total as f64 / cfg.eps_window.as_secs_f64()).ceil() as u64);
                    if is_device {
                        throttled_devices.insert(id.clone(), rate);
                    } else {
                        throttled_users.insert(id.clone(), rate);
                    }
                }
            }
        }
        if !throttled_devices.is_empty() || !throttled_users.is_empty() {
            let throttled_events: Vec<usize> = ids
                .iter()
                .enumerate()
                .filter(|(_, (d, u))| {
                    d.as_ref()
                        .is_some_and(|d| throttled_devices.contains_key(d))
                        || u.as_ref().is_some_and(|u| throttled_users.contains_key(u))
                })
                .map(|(i, _)| i)
                .collect();
            return (
                429,
                json!({
                    "code": 429,
                    "error": "Too many requests for some devices and users",
                    "eps_threshold": eps,
                    "throttled_devices": throttled_devices,
                    "throttled_users": throttled_users,
                    "throttled_events": throttled_events,
                }),
            );
        }
        drop(inner);
    }
    ingest(s, events, &ids, now);
    let upload_ms = chrono::Utc::now().timestamp_millis();
    (
        200,
        json!({"code": 200, "events_ingested": events.len(), "payload_size_bytes": body.len(), "server_upload_time": upload_ms}),
    )
}

/// The ids each event keeps after the minimum-length rule: (device_id, user_id).
type EventIds = Vec<(Option<String>, Option<String>)>;

/// Checks every event; on any problem returns the 400 body naming the bad events' indexes.
fn validate(events: &[Value], min_id: usize, max_chars: usize) -> Result<EventIds, Value> {
    let mut invalid: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut missing: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut short: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut ids = Vec::with_capacity(events.len());
    for (i, e) in events.iter().enumerate() {
        let Some(e) = e.as_object() else {
            invalid.entry("event".into()).or_default().push(i);
            ids.push((None, None));
            continue;
        };
        match e.get("event_type") {
            Some(Value::String(t)) if !t.is_empty() => {}
            Some(_) => invalid.entry("event_type".into()).or_default().push(i),
            None => missing.entry("event_type".into()).or_default().push(i),
        }
        if let Some(t) = e.get("time") {
            if t.as_i64().is_none() {
                invalid.entry("time".into()).or_default().push(i);
            }
        }
        // Ids too short are removed from the event; an event left without any id is refused.
        let mut short_here: Vec<&str> = Vec::new();
        let mut bad_id = false;
        let mut keep = |field: &'static str| -> Option<String> {
            match e.get(field) {
                None | Some(Value::Null) => None,
                Some(Value::String(v))
                    if INVALID_IDS.contains(&v.to_ascii_lowercase().as_str()) =>
                {
                    invalid.entry(field.into()).or_default().push(i);
                    bad_id = true;
                    None
                }
                Some(Value::String(v)) if v.chars().count() < min_id => {
                    short_here.push(field);
                    None
                }
                Some(Value::String(v)) => Some(v.clone()),
                Some(_) => {
                    invalid.entry(field.into()).or_default().push(i);
                    bad_id = true;
                    None
                }
            }
        };
        let device = keep("device_id");
        let user = keep("user_id");
        if device.is_none() && user.is_none() && !bad_id {
            if short_here.is_empty() {
                missing.entry("user_id".into()).or_default().push(i);
            }
            for f in short_here {
                short.entry(f.into()).or_default().push(i);
            }
        }
        if let Some(field) = long_string(e, max_chars) {
            invalid.entry(field).or_default().push(i);
        }
        ids.push((device, user));
    }
    if invalid.is_empty() && missing.is_empty() && short.is_empty() {
        return Ok(ids);
    }
    let mut body = json!({"code": 400, "error": "Invalid field values on some events"});
    if !invalid.is_empty() {
        body["events_with_invalid_fields"] = json!(invalid);
    }
    if !missing.is_empty() {
        body["events_with_missing_fields"] = json!(missing);
    }
    if !short.is_empty() {
        body["events_with_invalid_id_lengths"] = json!(short);
    }
    Err(body)
}

/// The first top-level or property field whose string value is over `max` characters.
fn long_string(e: &Map<String, Value>, max: usize) -> Option<String> {
    for (k, v) in e {
        match v {
            Value::String(s) if s.chars().count() > max => return Some(k.clone()),
            Value::Object(props) => {
                for (pk, pv) in props {
                    if pv.as_str().is_some_and(|s| s.chars().count() > max) {
                        return Some(format!("{k}.{pk}"));
                    }
                }
            }
            _ => {}
        }
    }
    None
}

fn ingest(s: &Shared, events: &[Value], ids: &EventIds, now: Instant) {
    let mut inner = s.inner.lock().expect("double state");
    let window = s.cfg.dedupe_window;
    for (e, (device, user)) in events.iter().zip(ids) {
        for id in [device, user].into_iter().flatten() {
            let q = inner.rate.entry(id.clone()).or_default();
            match q.back_mut() {
                Some((t, c)) if *t == now => *c += 1,
                _ => q.push_back((now, 1)),
            }
        }
        let insert_id = e.get("insert_id").and_then(Value::as_str);
        if let Some(iid) = insert_id {
            let owner = device.clone().or_else(|| user.clone()).unwrap_or_default();
            let key = (owner, iid.to_owned());
            if let Some(first) = inner.seen.get(&key) {
                if now.duration_since(*first) <= window {
                    inner.stats.duplicates_ignored += 1;
                    continue;
                }
            }
            inner.seen.insert(key, now);
        }
        *inner
            .ingested
            .entry(insert_id.unwrap_or_default().to_owned())
            .or_default() += 1;
        inner.stats.events_ingested += 1;
    }
}
