//! Test helpers: an in-process server on an ephemeral port with a real generated client, a
//! spawned `ampsim serve` process for kill tests, and event digests.

use ampsim::pb;
use ampsim::pb::simulation_service_client::SimulationServiceClient;
use ampsim::server::{serve, ServeOptions};
use ampsim::store::Store;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// A plain client.
pub type Client = SimulationServiceClient<Channel>;

/// A server running in this process on 127.0.0.1:0.
pub struct TestServer {
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    /// Starts a server on `db`.
    pub async fn start(db: &Path) -> TestServer {
        Self::start_with(db, ServeOptions::default()).await
    }

    /// Starts a server on `db` with options.
    pub async fn start_with(db: &Path, opts: ServeOptions) -> TestServer {
        let store = Store::open(db).expect("open store");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let s = shutdown.clone();
        let task = tokio::spawn(async move {
            serve(store, listener, opts, s).await.expect("server runs");
        });
        TestServer {
            addr,
            shutdown,
            task,
        }
    }

    /// Starts a server on `db` on a runtime of its own thread, so that it outlives the
    /// runtime of the test that started it (for fixtures shared by several tests).
    pub fn start_detached(db: std::path::PathBuf) -> TestServer {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async move {
                let server = TestServer::start(&db).await;
                tx.send(server).unwrap();
                std::future::pending::<()>().await;
            });
        });
        rx.recv().unwrap()
    }

    /// A connected client.
    pub async fn client(&self) -> Client {
        connect(self.addr).await
    }

    /// Graceful stop: cancel and wait until the server has drained.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("server stops in time")
            .expect("server task");
    }
}

/// Connects to a server, retrying briefly while it starts.
pub async fn connect(addr: SocketAddr) -> Client {
    let url = format!("http://{addr}");
    for _ in 0..200 {
        if let Ok(c) = SimulationServiceClient::connect(url.clone()).await {
            return c.max_decoding_message_size(64 * 1024 * 1024);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("cannot connect to {url}");
}

/// Creates a small simulation.
pub async fn create(c: &mut Client, id: &str, seed: u64, scale: f64) -> pb::Simulation {
    c.create_simulation(pb::CreateSimulationRequest {
        simulation_id: id.into(),
        seed,
        start_date: "2025-03-03".into(),
        population_scale: scale,
        scenario_toml: String::new(),
    })
    .await
    .expect("create")
    .into_inner()
}

/// Generates days and returns the progress messages.
pub async fn generate(c: &mut Client, id: &str, days: u32) -> Vec<pb::DayProgress> {
    let mut s = c
        .generate_days(pb::GenerateDaysRequest {
            simulation_id: id.into(),
            days,
        })
        .await
        .expect("generate")
        .into_inner();
    let mut out = Vec::new();
    while let Some(d) = s.message().await.expect("progress") {
        out.push(d);
    }
    out
}

/// Pulls events with a request. Every batch is read both ways (owned messages and borrowed
/// views), which must agree.
pub async fn pull(c: &mut Client, req: pb::StreamEventsRequest) -> Vec<pb::Event> {
    let mut s = c.stream_events(req).await.expect("stream").into_inner();
    let mut out = Vec::new();
    while let Some(b) = s.message().await.expect("batch") {
        let owned = b.to_events().expect("batch decodes");
        assert_eq!(owned.len(), b.len());
        let viewed: Vec<pb::Event> = b
            .iter()
            .map(|v| v.expect("view parses").to_owned_event().expect("decodes"))
            .collect();
        assert_eq!(viewed, owned, "views and owned events differ");
        out.extend(owned);
    }
    out
}

/// All events of a simulation (every generated day).
pub async fn pull_all(c: &mut Client, id: &str) -> Vec<pb::Event> {
    pull(
        c,
        pb::StreamEventsRequest {
            simulation_id: id.into(),
            ..Default::default()
        },
    )
    .await
}

/// The events of an uninterrupted run: `days` days of simulation `id` generated in one call on
/// a fresh server (database `ref.db` in `dir`), what a resumed, killed or throttled run must
/// equal.
pub async fn reference_run(
    dir: &Path,
    id: &str,
    seed: u64,
    scale: f64,
    days: u32,
) -> Vec<pb::Event> {
    let s = TestServer::start(&dir.join("ref.db")).await;
    let mut c = s.client().await;
    create(&mut c, id, seed, scale).await;
    generate(&mut c, id, days).await;
    let ev = pull_all(&mut c, id).await;
    s.stop().await;
    ev
}

/// SHA-256 over the events' JSON lines (sorted keys), in stream order.
pub fn digest(events: &[pb::Event]) -> String {
    let mut h = Sha256::new();
    for e in events {
        h.update(serde_json::to_string(&event_json(e)).unwrap().as_bytes());
        h.update(b"\n");
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A spawned `ampsim serve` process.
pub struct ServerProcess {
    pub child: std::process::Child,
    pub addr: SocketAddr,
}

impl ServerProcess {
    /// Spawns the binary on `db`, on a free loopback port.
    pub fn spawn(db: &Path) -> ServerProcess {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_ampsim"))
            .args(["serve", "--db"])
            .arg(db)
            .args(["--listen", &addr.to_string()])
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn ampsim serve");
        ServerProcess { child, addr }
    }

    /// SIGKILL.
    pub fn kill9(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
    }

    /// Sends a signal and waits for the exit status.
    pub fn signal_and_wait(mut self, sig: &str) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        std::process::Command::new("kill")
            .args([&format!("-{sig}"), &pid])
            .status()
            .expect("kill");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "server did not exit after {sig}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An event message as a JSON object with Amplitude HTTP V2 field names (keys sorted), built
/// field by field with serde_json: the tests' own form, independent of the schema-driven
/// printer (`EventView::write_json`) that it checks, and what [`digest`] covers.
pub fn event_json(e: &pb::Event) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    m.insert("event_type".into(), e.event_type.clone().into());
    if !e.user_id.is_empty() {
        m.insert("user_id".into(), e.user_id.clone().into());
    }
    m.insert("device_id".into(), e.device_id.clone().into());
    m.insert("time".into(), e.time.into());
    m.insert("session_id".into(), e.session_id.into());
    m.insert("insert_id".into(), e.insert_id.clone().into());
    m.insert("event_id".into(), e.event_id.into());
    for (k, v) in [
        ("platform", &e.platform),
        ("os_name", &e.os_name),
        ("os_version", &e.os_version),
        ("device_model", &e.device_model),
        ("country", &e.country),
        ("region", &e.region),
        ("city", &e.city),
        ("language", &e.language),
    ] {
        m.insert(k.into(), v.clone().into());
    }
    if !e.device_manufacturer.is_empty() {
        m.insert(
            "device_manufacturer".into(),
            e.device_manufacturer.clone().into(),
        );
    }
    m.insert("event_properties".into(), props_json(&e.event_properties));
    m.insert("user_properties".into(), props_json(&e.user_properties));
    if let Some(p) = e.price {
        m.insert("price".into(), p.into());
    }
    if let Some(q) = e.quantity {
        m.insert("quantity".into(), q.into());
    }
    if let Some(r) = e.revenue {
        m.insert("revenue".into(), r.into());
    }
    if !e.product_id.is_empty() {
        m.insert("productId".into(), e.product_id.clone().into());
    }
    if !e.revenue_type.is_empty() {
        m.insert("revenueType".into(), e.revenue_type.clone().into());
    }
    if !e.currency.is_empty() {
        m.insert("currency".into(), e.currency.clone().into());
    }
    if !e.groups.is_empty() {
        m.insert("groups".into(), props_json(&e.groups));
    }
    if !e.group_properties.is_empty() {
        m.insert("group_properties".into(), props_json(&e.group_properties));
    }
    serde_json::Value::Object(m)
}

/// A typed property map as a JSON object (sorted keys, values with their JSON types).
pub fn props_json(p: &std::collections::BTreeMap<String, pb::PropertyValue>) -> serde_json::Value {
    serde_json::Value::Object(p.iter().map(|(k, v)| (k.clone(), prop_json(v))).collect())
}

/// A property value as JSON.
pub fn prop_json(v: &pb::PropertyValue) -> serde_json::Value {
    use pb::property_value::Kind;
    match v.kind.as_ref() {
        Some(Kind::StringValue(s)) => s.clone().into(),
        Some(Kind::IntValue(i)) => (*i).into(),
        Some(Kind::DoubleValue(x)) => (*x).into(),
        Some(Kind::BoolValue(b)) => (*b).into(),
        None => serde_json::Value::Null,
    }
}

/// A property value as text (strings as they are, numbers and booleans as JSON writes them).
pub fn prop_text(v: &pb::PropertyValue) -> String {
    match prop_json(v) {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}

/// All rows of a Parquet file, with the file's schema.
pub fn read_parquet(path: &Path) -> Vec<arrow_array::RecordBatch> {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

/// The batches concatenated into one, under the engine's schema (a file's schema carries the
/// writer's metadata besides).
pub fn one_batch(batches: &[arrow_array::RecordBatch]) -> arrow_array::RecordBatch {
    let s = ampsim_engine::columns::schema();
    let plain: Vec<arrow_array::RecordBatch> = batches
        .iter()
        .map(|b| {
            assert_eq!(b.schema().fields(), s.fields(), "the one Arrow schema");
            arrow_array::RecordBatch::try_new(s.clone(), b.columns().to_vec()).unwrap()
        })
        .collect();
    arrow_select::concat::concat_batches(&s, &plain).unwrap()
}

/// How the Export layout shows the default scenario's devices.
pub fn default_device_names() -> ampsim_engine::clients::ExportDeviceNames {
    ampsim_engine::clients::ExportDeviceNames::new(
        &ampsim_engine::Scenario::from_toml("").expect("the default scenario loads"),
    )
}

/// The device id of the person a device id belongs to: its own for a first device, the
/// person's first device's for a second device (`ampsim_engine::ids::person_of`). Tests that
/// follow a person over the stream group its events by this key.
pub fn person_device_id(engine: &ampsim_engine::Engine, device_id: &str) -> String {
    let d = engine
        .ids()
        .parse_device_id(device_id)
        .unwrap_or_else(|| panic!("{device_id} is a device id of the simulation"));
    engine.ids().device_id(ampsim_engine::ids::person_of(d))
}

/// The engine of a default-scenario simulation as the test server builds it (start date
/// 2025-03-03, the server's default).
pub fn engine_of(seed: u64, scale: f64) -> ampsim_engine::Engine {
    ampsim_engine::Engine::new(ampsim_engine::SimConfig {
        scenario: ampsim_engine::Scenario::default_scenario(),
        seed,
        start_date: chrono::NaiveDate::from_ymd_opt(2025, 3, 3).expect("a date"),
        population_scale: scale,
    })
}
