//! `ampsim export` against a real server: every format read back with an independent reader
//! (flate2 + serde_json, the parquet crate's row reader) and compared with a StreamEvents pull
//! of the same range; file names, the Amplitude export field layout, stability across exports,
//! overwrite rules, atomic files and option errors.

use crate::support::*;
use ampsim::cli::export::ExportArgs;
use ampsim::cli::ClientOpts;
use ampsim::export::{ExportOptions, Exporter, Format};
use ampsim::pb;
use ampsim::wire::EventBatch;
use chrono::NaiveDate;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::path::Path;
use tokio::sync::OnceCell;

const SIM: &str = "ex";
const FROM: &str = "2025-03-04";
const TO: &str = "2025-03-06";
const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;

/// One shared server with a 5-day simulation at scale 0.01, and the events of FROM..=TO.
struct Fixture {
    server: TestServer,
    /// The StreamEvents pull of FROM..=TO.
    range: Vec<pb::Event>,
    _dir: tempfile::TempDir,
}

static FIXTURE: OnceCell<Fixture> = OnceCell::const_new();

async fn fixture() -> &'static Fixture {
    FIXTURE
        .get_or_init(|| async {
            let dir = tempfile::tempdir().unwrap();
            let db = dir.path().join("x.db");
            let server = TestServer::start_detached(db);
            let mut c = server.client().await;
            create(&mut c, SIM, 5, 0.01).await;
            generate(&mut c, SIM, 5).await;
            let range = pull(
                &mut c,
                pb::StreamEventsRequest {
                    simulation_id: SIM.into(),
                    from_date: FROM.into(),
                    to_date: TO.into(),
                    ..Default::default()
                },
            )
            .await;
            assert!(range.len() > 5000, "a real range: {}", range.len());
            Fixture {
                server,
                range,
                _dir: dir,
            }
        })
        .await
}

fn args(f: &Fixture, format: Format, out: &Path) -> ExportArgs {
    ExportArgs {
        simulation: SIM.into(),
        from: Some(date(FROM)),
        to: Some(date(TO)),
        format,
        out: out.to_path_buf(),
        overwrite: false,
        project_id: 100_000,
        part_size: None,
        gzip_level: None,
        user_properties: None,
        generate_missing: false,
        quiet: true,
        client: ClientOpts {
            server: format!("http://{}", f.server.addr),
            auth_token: None,
            tls_ca: None,
        },
    }
}

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn day_of(ms: i64) -> NaiveDate {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .date_naive()
}

/// Names of the regular files in a directory, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// The key fields compared between an export and the pull.
#[derive(Debug, Clone, PartialEq)]
struct Key {
    event_type: String,
    device_id: String,
    user_id: Option<String>,
    time: i64,
    session_id: i64,
}

fn key_of(e: &pb::Event) -> Key {
    Key {
        event_type: e.event_type.clone(),
        device_id: e.device_id.clone(),
        user_id: (!e.user_id.is_empty()).then(|| e.user_id.clone()),
        time: e.time,
        session_id: e.session_id,
    }
}

fn by_insert_id(events: &[pb::Event]) -> BTreeMap<String, Key> {
    let m: BTreeMap<String, Key> = events
        .iter()
        .map(|e| (e.insert_id.clone(), key_of(e)))
        .collect();
    assert_eq!(m.len(), events.len(), "insert_ids are unique in the pull");
    m
}

/// Parses `YYYY-MM-DD HH:MM:SS.ffffff` (checking the exact shape) into ms since the epoch.
fn parse_export_time(s: &str) -> i64 {
    let b = s.as_bytes();
    assert_eq!(b.len(), 26, "{s:?}");
    for (i, &c) in b.iter().enumerate() {
        let want_digit = !matches!(i, 4 | 7 | 10 | 13 | 16 | 19);
        assert_eq!(c.is_ascii_digit(), want_digit, "{s:?} at {i}");
    }
    assert_eq!(
        (b[4], b[7], b[10], b[13], b[16], b[19]),
        (b'-', b'-', b' ', b':', b':', b'.'),
        "{s:?}"
    );
    let t = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.6f").unwrap();
    let us = t.and_utc().timestamp_micros();
    assert_eq!(us % 1000, 0, "whole milliseconds: {s:?}");
    us / 1000
}

/// Reads a gzipped JSON-lines file with flate2 + serde_json.
fn read_gz_lines(p: &Path) -> Vec<Value> {
    let f = std::fs::File::open(p).unwrap();
    let r = std::io::BufReader::new(flate2::read::MultiGzDecoder::new(f));
    r.lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect()
}

/// An `amplitude-export` file name's parts: (date, hour, part), checking the pattern
/// `<project>_<yyyy-MM-dd>_<H>#<n>.json.gz` with H unpadded.
fn parse_amplitude_name(project: u64, name: &str) -> (NaiveDate, u32, u32) {
    let rest = name
        .strip_prefix(&format!("{project}_"))
        .and_then(|r| r.strip_suffix(".json.gz"))
        .unwrap_or_else(|| panic!("bad name {name}"));
    let (d, hp) = rest.split_once('_').unwrap();
    let (h, p) = hp.split_once('#').unwrap();
    assert!(h == "0" || !h.starts_with('0'), "unpadded hour: {name}");
    assert!(p == "0" || !p.starts_with('0'), "unpadded part: {name}");
    assert_eq!(d.len(), 10, "{name}");
    let hour: u32 = h.parse().unwrap();
    assert!(hour < 24, "{name}");
    (date(d), hour, p.parse().unwrap())
}

/// The 55 keys of an exported event.
const EXPORT_KEYS: &[&str] = &[
    "$insert_id",
    "$insert_key",
    "$schema",
    "adid",
    "amplitude_attribution_ids",
    "amplitude_event_type",
    "amplitude_id",
    "app",
    "city",
    "client_event_time",
    "client_upload_time",
    "country",
    "data",
    "data_type",
    "device_brand",
    "device_carrier",
    "device_family",
    "device_id",
    "device_manufacturer",
    "device_model",
    "device_type",
    "dma",
    "event_id",
    "event_properties",
    "event_time",
    "event_type",
    "global_user_properties",
    "group_properties",
    "groups",
    "idfa",
    "ip_address",
    "is_attribution_event",
    "language",
    "library",
    "location_lat",
    "location_lng",
    "os_name",
    "os_version",
    "partner_id",
    "paying",
    "plan",
    "platform",
    "processed_time",
    "region",
    "sample_rate",
    "server_received_time",
    "server_upload_time",
    "session_id",
    "source_id",
    "start_version",
    "user_creation_time",
    "user_id",
    "user_properties",
    "uuid",
    "version_name",
];

/// Reads an amplitude-export directory: every line with its file's (date, hour, part), checking
/// the names, the parts' sizes and that each file holds only its hour.
fn read_amplitude_dir(dir: &Path, project: u64, part_size: usize) -> Vec<Value> {
    let mut files: Vec<((NaiveDate, u32, u32), String)> = names(dir)
        .into_iter()
        .map(|n| (parse_amplitude_name(project, &n), n))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for (i, ((d, h, part), name)) in files.iter().enumerate() {
        let lines = read_gz_lines(&dir.join(name));
        assert!(!lines.is_empty(), "{name} is empty");
        assert!(lines.len() <= part_size, "{name}: {} lines", lines.len());
        // Parts run from 0 without gaps, and every part but an hour's last is full.
        let next_same_hour = files
            .get(i + 1)
            .is_some_and(|((d2, h2, _), _)| d2 == d && h2 == h);
        if next_same_hour {
            assert_eq!(
                lines.len(),
                part_size,
                "{name} is not full but has a next part"
            );
            assert_eq!(files[i + 1].0 .2, part + 1, "part numbers of {name}");
        }
        if *part > 0 {
            assert_eq!(files[i - 1].0, (*d, *h, part - 1), "part before {name}");
        }
        for l in &lines {
            let t = parse_export_time(l["event_time"].as_str().unwrap());
            assert_eq!(day_of(t), *d, "{name} holds only its day");
            assert_eq!(
                t.rem_euclid(DAY_MS) / HOUR_MS,
                i64::from(*h),
                "{name} holds only its hour"
            );
        }
        out.extend(lines);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amplitude_export_matches_the_stream_in_the_export_layout() {
    let f = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("amp");
    let part_size = 150;
    let mut a = args(f, Format::AmplitudeExport, &out);
    a.part_size = Some(part_size);
    a.project_id = 4242;
    let summary = ampsim::cli::export::export(&a).await.unwrap();
    assert_eq!(summary.events, f.range.len() as u64);
    assert_eq!(summary.files.len(), names(&out).len());
    assert_eq!(
        summary.bytes,
        summary
            .files
            .iter()
            .map(|x| std::fs::metadata(&x.path).unwrap().len())
            .sum::<u64>()
    );

    let lines = read_amplitude_dir(&out, 4242, part_size as usize);
    let parts: BTreeSet<u64> = names(&out)
        .iter()
        .map(|n| parse_amplitude_name(4242, n).2.into())
        .collect();
    assert!(
        parts.contains(&1),
        "some hour was split into parts: {parts:?}"
    );
    let hours: BTreeSet<(NaiveDate, u32)> = names(&out)
        .iter()
        .map(|n| {
            let (d, h, _) = parse_amplitude_name(4242, n);
            (d, h)
        })
        .collect();
    assert!(
        hours.len() >= 3 * 20,
        "hourly files over 3 days: {}",
        hours.len()
    );

    // The union of the files is the pull, per insert_id.
    assert_eq!(lines.len(), f.range.len());
    let want = by_insert_id(&f.range);
    let mut got = BTreeMap::new();
    let mut uuids = BTreeSet::new();
    for l in &lines {
        let o = l.as_object().unwrap();
        let keys: Vec<&str> = o.keys().map(String::as_str).collect();
        assert_eq!(keys, EXPORT_KEYS, "the export field set");
        for k in ["ip", "insert_id", "app_version", "carrier", "time", "price"] {
            assert!(!o.contains_key(k), "{k} is renamed or absent in exports");
        }
        for k in [
            "ip_address",
            "version_name",
            "device_carrier",
            "dma",
            "idfa",
        ] {
            assert!(o[k].is_null(), "{k} is an explicit null");
        }
        let t = parse_export_time(o["event_time"].as_str().unwrap());
        for k in [
            "client_event_time",
            "client_upload_time",
            "server_received_time",
            "server_upload_time",
            "processed_time",
        ] {
            assert_eq!(o[k], o["event_time"], "{k}");
        }
        assert_eq!(o["app"], 4242);
        assert_eq!(o["data_type"], "event");
        assert_eq!(o["data"]["path"], "/2/httpapi");
        assert_eq!(o["library"], "http/2.0");
        assert!(o["amplitude_id"].as_u64().unwrap() < 1 << 53);
        let uuid = o["uuid"].as_str().unwrap();
        assert!(is_uuid(uuid), "{uuid}");
        assert!(uuids.insert(uuid.to_string()), "uuid {uuid} is unique");
        let id = o["$insert_id"].as_str().unwrap().to_string();
        let key = Key {
            event_type: o["event_type"].as_str().unwrap().into(),
            device_id: o["device_id"].as_str().unwrap().into(),
            user_id: o["user_id"].as_str().map(String::from),
            time: t,
            session_id: o["session_id"].as_i64().unwrap(),
        };
        assert!(got.insert(id, key).is_none(), "no event twice");
    }
    assert_eq!(got, want);

    // Groups: the stream's company as a one-value list; group properties from the
    // `$groupidentify` before the event (Amplitude applies them to later events only).
    let streamed: BTreeMap<&str, &pb::Event> =
        f.range.iter().map(|e| (e.insert_id.as_str(), e)).collect();
    let mut known: BTreeMap<String, Value> = BTreeMap::new();
    let (mut grouped, mut with_props) = (0, 0);
    let mut ordered: Vec<&Value> = lines.iter().collect();
    ordered.sort_by_key(|l| {
        let e = streamed[l["$insert_id"].as_str().unwrap()];
        (e.time, e.device_id.clone(), e.event_id)
    });
    for l in ordered {
        let e = streamed[l["$insert_id"].as_str().unwrap()];
        match e.groups.get("company").map(crate::support::prop_text) {
            None => {
                assert_eq!(l["groups"], serde_json::json!({}));
                assert_eq!(l["group_properties"], serde_json::json!({}));
            }
            Some(company) => {
                grouped += 1;
                assert_eq!(l["groups"], serde_json::json!({ "company": [company] }));
                if e.event_type == "$groupidentify" {
                    known.insert(
                        company.clone(),
                        crate::support::props_json(&e.group_properties),
                    );
                }
                match known.get(&company) {
                    Some(p) => {
                        with_props += 1;
                        assert_eq!(
                            l["group_properties"],
                            serde_json::json!({ "company": { company.as_str(): p } })
                        );
                    }
                    None => assert_eq!(l["group_properties"], serde_json::json!({})),
                }
            }
        }
    }
    assert!(
        grouped > 0 && with_props > 0,
        "{grouped} grouped, {with_props} with properties"
    );

    // amplitude_id is one per device.
    let mut ids: BTreeMap<&str, u64> = BTreeMap::new();
    for l in &lines {
        let dev = l["device_id"].as_str().unwrap();
        let id = l["amplitude_id"].as_u64().unwrap();
        assert_eq!(
            *ids.entry(dev).or_insert(id),
            id,
            "one amplitude_id per device"
        );
    }
    let distinct: BTreeSet<u64> = ids.values().copied().collect();
    assert_eq!(
        distinct.len(),
        ids.len(),
        "devices have distinct amplitude_ids"
    );

    // A second export (default part size elsewhere, then the same options) is byte-identical.
    let out2 = dir.path().join("amp2");
    let mut a2 = a.clone();
    a2.out = out2.clone();
    ampsim::cli::export::export(&a2).await.unwrap();
    assert_eq!(names(&out), names(&out2));
    for n in names(&out) {
        assert_eq!(
            std::fs::read(out.join(&n)).unwrap(),
            std::fs::read(out2.join(&n)).unwrap(),
            "{n} is the same in a second export"
        );
    }
    // With the default part size the uuids are the same per insert_id.
    let out3 = dir.path().join("amp3");
    let mut a3 = a.clone();
    a3.out = out3.clone();
    a3.part_size = None;
    ampsim::cli::export::export(&a3).await.unwrap();
    let lines3 = read_amplitude_dir(&out3, 4242, 100_000);
    let uuid_of = |ls: &[Value]| -> BTreeMap<String, String> {
        ls.iter()
            .map(|l| {
                (
                    l["$insert_id"].as_str().unwrap().to_string(),
                    l["uuid"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    assert_eq!(uuid_of(&lines), uuid_of(&lines3));
    assert!(names(&out3).iter().all(|n| n.ends_with("#0.json.gz")));
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == '-'
            } else {
                c.is_ascii_hexdigit() && !c.is_ascii_uppercase()
            }
        })
}

/// The Export's `user_properties` are the user's full state at each event: exactly the
/// stream's stored view (USER_PROPERTIES_VIEW_STORED: what the user's events sent so far, days
/// before the range included, tests/it/user_properties.rs), so attribution reaches every event
/// of a session, past midnight too, and properties set on earlier days reach later ones;
/// `data.user_properties_updated` says whether the event itself sent properties (the sent
/// view). `ampsim export --format jsonl --user-properties stored` writes the same properties.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amplitude_export_has_the_users_stored_properties() {
    let f = fixture().await;
    let mut c = f.server.client().await;
    let stored = pull(
        &mut c,
        pb::StreamEventsRequest {
            simulation_id: SIM.into(),
            from_date: FROM.into(),
            to_date: TO.into(),
            user_properties: pb::UserPropertiesView::Stored as i32,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(stored.len(), f.range.len());
    let ids = |evs: &[pb::Event]| evs.iter().map(|e| e.insert_id.clone()).collect::<Vec<_>>();
    assert_eq!(
        ids(&stored),
        ids(&f.range),
        "the same events in the same order"
    );
    // Every event holds its user's first touch; most send nothing themselves.
    assert!(stored
        .iter()
        .all(|e| e.user_properties.contains_key("initial_utm_source")));
    let quiet = f
        .range
        .iter()
        .filter(|e| e.user_properties.is_empty())
        .count();
    assert!(
        quiet * 2 > f.range.len(),
        "{quiet} of {} events send none",
        f.range.len()
    );

    let dir = tempfile::tempdir().unwrap();
    ampsim::cli::export::export(&args(f, Format::AmplitudeExport, dir.path()))
        .await
        .unwrap();
    let lines = read_amplitude_dir(dir.path(), 100_000, 100_000);
    let exported: BTreeMap<&str, &Value> = lines
        .iter()
        .map(|l| (l["$insert_id"].as_str().unwrap(), &l["user_properties"]))
        .collect();
    assert_eq!(exported.len(), stored.len());
    for e in &stored {
        assert_eq!(
            exported[e.insert_id.as_str()],
            &crate::support::props_json(&e.user_properties),
            "{}",
            e.insert_id
        );
    }
    let sent: BTreeMap<&str, bool> = f
        .range
        .iter()
        .map(|e| (e.insert_id.as_str(), !e.user_properties.is_empty()))
        .collect();
    for l in &lines {
        let id = l["$insert_id"].as_str().unwrap();
        assert_eq!(l["data"]["user_properties_updated"], sent[id], "{id}");
    }

    let dir = tempfile::tempdir().unwrap();
    let mut a = args(f, Format::Jsonl, dir.path());
    a.user_properties = Some(ampsim::cli::client::UserProperties::Stored);
    ampsim::cli::export::export(&a).await.unwrap();
    let mut lines = 0;
    for name in names(dir.path()) {
        let text = std::fs::read_to_string(dir.path().join(name)).unwrap();
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            let e = &stored[lines];
            assert_eq!(v["insert_id"], e.insert_id.as_str());
            assert_eq!(
                v["user_properties"],
                crate::support::props_json(&e.user_properties)
            );
            lines += 1;
        }
    }
    assert_eq!(lines, stored.len());
}

/// Revenue fields move into event_properties; the synthetic event goes through the library's
/// writer directly.
#[test]
fn amplitude_export_maps_revenue_into_event_properties() {
    let dir = tempfile::tempdir().unwrap();
    let day = date("2025-06-01");
    let t0 = day
        .and_hms_opt(13, 5, 7)
        .unwrap()
        .and_utc()
        .timestamp_millis()
        + 42;
    let purchase = pb::Event {
        event_type: "purchase".into(),
        user_id: "ada@example.com".into(),
        device_id: "d-1".into(),
        time: t0,
        session_id: -1,
        insert_id: "ins-1".into(),
        event_id: 1,
        platform: "Web".into(),
        device_manufacturer: "Apple".into(),
        device_model: "Macintosh".into(),
        event_properties: [(
            "product_sku".to_string(),
            pb::PropertyValue {
                kind: Some(pb::property_value::Kind::StringValue("pro".into())),
            },
        )]
        .into(),
        currency: "EUR".into(),
        price: Some(49.5),
        quantity: Some(2),
        revenue: Some(99.0),
        product_id: "pro".into(),
        revenue_type: "purchase".into(),
        ..Default::default()
    };
    let mut x = Exporter::new(&ExportOptions {
        format: Format::AmplitudeExport,
        out_dir: dir.path().to_path_buf(),
        simulation_id: "s".into(),
        from: day,
        to: day,
        project_id: 7,
        part_size: 10,
        gzip_level: 6,
        overwrite: false,
        device_names: default_device_names(),
    })
    .unwrap();
    x.write(&EventBatch::from_events(&[purchase])).unwrap();
    let s = x.finish().unwrap();
    assert_eq!(s.events, 1);
    assert_eq!(names(dir.path()), ["7_2025-06-01_13#0.json.gz"]);
    let l = &read_gz_lines(&dir.path().join("7_2025-06-01_13#0.json.gz"))[0];
    assert_eq!(
        l["event_properties"],
        serde_json::json!({"$currency": "EUR", "$price": 49.5, "$productId": "pro",
            "$quantity": 2, "$revenue": 99.0, "$revenueType": "purchase", "product_sku": "pro"})
    );
    // The request's device fields, and the family and type Amplitude derives from them (the
    // scenario's names for the pair).
    assert_eq!(l["device_manufacturer"], "Apple");
    assert_eq!(l["device_model"], "Macintosh");
    assert_eq!(l["device_family"], "Mac OS X");
    assert_eq!(l["device_type"], "Mac");
    assert!(
        l.get("currency").is_none(),
        "currency is exported as $currency"
    );
    assert_eq!(l["event_time"], "2025-06-01 13:05:07.042000");
    assert_eq!(l["data"]["first_event"], true);
    assert_eq!(l["city"], Value::Null, "an empty field is an explicit null");
    assert_eq!(l["platform"], "Web");
    assert_eq!(l["uuid"], ampsim::export::amplitude::event_uuid("ins-1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonl_files_are_the_events_verb_output_per_day() {
    let f = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let s = ampsim::cli::export::export(&args(f, Format::Jsonl, dir.path()))
        .await
        .unwrap();
    assert_eq!(
        names(dir.path()),
        [
            "ex_2025-03-04.jsonl",
            "ex_2025-03-05.jsonl",
            "ex_2025-03-06.jsonl"
        ]
    );
    assert_eq!(s.files.len(), 3);
    let mut lines = Vec::new();
    for n in names(dir.path()) {
        let d = date(&n["ex_".len().."ex_".len() + 10]);
        let text = std::fs::read_to_string(dir.path().join(&n)).unwrap();
        for l in text.lines() {
            let v: Value = serde_json::from_str(l).unwrap();
            assert_eq!(
                day_of(v["time"].as_i64().unwrap()),
                d,
                "{n} holds only its day"
            );
            lines.push(l.to_string());
        }
    }
    let want: Vec<String> = f
        .range
        .iter()
        .map(|e| serde_json::to_string(&crate::support::event_json(e)).unwrap())
        .collect();
    assert_eq!(lines.len(), want.len());
    assert!(
        lines == want,
        "the files, in order, are `ampsim events` output"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_files_have_typed_columns_and_the_streamed_events() {
    use parquet::basic::{ConvertedType, LogicalType, Repetition, TimeUnit, Type as Physical};
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;

    let f = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    ampsim::cli::export::export(&args(f, Format::Parquet, dir.path()))
        .await
        .unwrap();
    assert_eq!(
        names(dir.path()),
        [
            "ex_2025-03-04.parquet",
            "ex_2025-03-05.parquet",
            "ex_2025-03-06.parquet"
        ]
    );
    let want = by_insert_id(&f.range);
    let props: BTreeMap<&str, &pb::Event> =
        f.range.iter().map(|e| (e.insert_id.as_str(), e)).collect();
    let mut got = BTreeMap::new();
    for n in names(dir.path()) {
        let d = date(&n["ex_".len().."ex_".len() + 10]);
        let r =
            SerializedFileReader::new(std::fs::File::open(dir.path().join(&n)).unwrap()).unwrap();
        // Column types.
        let schema = r.metadata().file_metadata().schema_descr();
        let col = |name: &str| {
            schema
                .columns()
                .iter()
                .find(|c| c.name() == name)
                .unwrap_or_else(|| panic!("column {name}"))
                .clone()
        };
        let time = col("time");
        assert_eq!(time.physical_type(), Physical::INT64);
        assert_eq!(time.converted_type(), ConvertedType::TIMESTAMP_MILLIS);
        assert!(
            matches!(
                time.logical_type_ref(),
                Some(LogicalType::Timestamp(t))
                    if t.is_adjusted_to_u_t_c && t.unit == TimeUnit::MILLIS
            ),
            "{:?}",
            time.logical_type_ref()
        );
        for name in ["session_id", "event_id", "quantity"] {
            assert_eq!(col(name).physical_type(), Physical::INT64, "{name}");
        }
        for name in ["price", "revenue"] {
            assert_eq!(col(name).physical_type(), Physical::DOUBLE, "{name}");
        }
        for name in [
            "event_type",
            "user_id",
            "device_id",
            "insert_id",
            "country",
            "event_properties",
            "user_properties",
            "productId",
        ] {
            let c = col(name);
            assert_eq!(c.physical_type(), Physical::BYTE_ARRAY, "{name}");
            assert_eq!(c.logical_type_ref(), Some(&LogicalType::String), "{name}");
        }
        for (name, rep) in [
            ("user_id", Repetition::OPTIONAL),
            ("price", Repetition::OPTIONAL),
            ("productId", Repetition::OPTIONAL),
            ("device_id", Repetition::REQUIRED),
            ("time", Repetition::REQUIRED),
            ("event_properties", Repetition::REQUIRED),
        ] {
            assert_eq!(
                col(name).self_type().get_basic_info().repetition(),
                rep,
                "{name}"
            );
        }
        // Rows.
        for row in r.get_row_iter(None).unwrap() {
            let row = row.unwrap();
            let fields: BTreeMap<&str, &Field> = row
                .get_column_iter()
                .map(|(k, v)| (k.as_str(), v))
                .collect();
            let s = |k: &str| match fields[k] {
                Field::Str(s) => Some(s.clone()),
                Field::Null => None,
                other => panic!("{k}: {other:?}"),
            };
            let time = match fields["time"] {
                Field::TimestampMillis(t) => *t,
                other => panic!("time: {other:?}"),
            };
            let session_id = match fields["session_id"] {
                Field::Long(v) => *v,
                other => panic!("session_id: {other:?}"),
            };
            assert!(matches!(fields["event_id"], Field::Long(_)));
            assert_eq!(day_of(time), d, "{n} holds only its day");
            let id = s("insert_id").unwrap();
            let e = props[id.as_str()];
            // The files hold the property values with the types StreamEvents gives them.
            let json = |k: &str| serde_json::from_str::<Value>(&s(k).unwrap()).unwrap();
            assert_eq!(
                json("event_properties"),
                crate::support::props_json(&e.event_properties)
            );
            assert_eq!(
                json("user_properties"),
                crate::support::props_json(&e.user_properties)
            );
            // Revenue columns are set on purchases only.
            if s("event_type").as_deref() == Some("purchase") {
                assert!(
                    matches!(fields["price"], Field::Double(p) if *p > 0.0),
                    "a price on purchase {id}"
                );
            } else {
                assert_eq!(fields["price"], &Field::Null, "no revenue on {id}");
            }
            let key = Key {
                event_type: s("event_type").unwrap(),
                device_id: s("device_id").unwrap(),
                user_id: s("user_id"),
                time,
                session_id,
            };
            assert!(got.insert(id, key).is_none(), "no event twice");
        }
    }
    assert_eq!(got.len(), f.range.len());
    assert_eq!(got, want);
}

/// Revenue columns hold values on purchases (a synthetic event through the library writer).
#[test]
fn parquet_revenue_columns_are_typed_values() {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;
    let dir = tempfile::tempdir().unwrap();
    let day = date("2025-06-01");
    let t = day
        .and_hms_opt(9, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_millis();
    let mut x = Exporter::new(&ExportOptions {
        format: Format::Parquet,
        out_dir: dir.path().to_path_buf(),
        simulation_id: "s".into(),
        from: day,
        to: day,
        project_id: 1,
        part_size: 1,
        gzip_level: 1,
        overwrite: false,
        device_names: default_device_names(),
    })
    .unwrap();
    x.write(&EventBatch::from_events(&[pb::Event {
        event_type: "purchase".into(),
        device_id: "d".into(),
        time: t,
        session_id: -1,
        insert_id: "i".into(),
        price: Some(10.5),
        quantity: Some(3),
        revenue: Some(31.5),
        product_id: "sku".into(),
        revenue_type: "purchase".into(),
        ..Default::default()
    }]))
    .unwrap();
    x.finish().unwrap();
    let r = SerializedFileReader::new(
        std::fs::File::open(dir.path().join("s_2025-06-01.parquet")).unwrap(),
    )
    .unwrap();
    let row = r.get_row_iter(None).unwrap().next().unwrap().unwrap();
    let fields: BTreeMap<String, Field> = row
        .get_column_iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(fields["price"], Field::Double(10.5));
    assert_eq!(fields["quantity"], Field::Long(3));
    assert_eq!(fields["revenue"], Field::Double(31.5));
    assert_eq!(fields["productId"], Field::Str("sku".into()));
    assert_eq!(fields["user_id"], Field::Null);
    assert_eq!(fields["time"], Field::TimestampMillis(t));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_refuses_to_overwrite_and_overwrite_leaves_no_stale_part() {
    let f = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    std::fs::write(
        out.join("100000_2025-03-03_5#0.json.gz"),
        "outside the range",
    )
    .unwrap();
    let mut a = args(f, Format::AmplitudeExport, out);
    a.part_size = Some(100);
    ampsim::cli::export::export(&a).await.unwrap();
    let split = names(out);
    assert!(split.iter().any(|n| n.ends_with("#1.json.gz")));

    // Again without --overwrite: refused before anything is written.
    let mut b = a.clone();
    b.part_size = None;
    let err = format!("{:#}", ampsim::cli::export::export(&b).await.unwrap_err());
    assert!(err.contains("--overwrite"), "{err}");
    assert_eq!(names(out), split, "nothing changed");

    // With --overwrite and a larger part size: no part of the first export survives.
    b.overwrite = true;
    ampsim::cli::export::export(&b).await.unwrap();
    let after = names(out);
    assert!(after.contains(&"notes.txt".to_string()), "other files stay");
    assert!(after.contains(&"100000_2025-03-03_5#0.json.gz".to_string()));
    assert!(
        after
            .iter()
            .filter(|n| n.starts_with("100000_2025-03-0") && !n.contains("03-03"))
            .all(|n| n.ends_with("#0.json.gz")),
        "{after:?}"
    );
    std::fs::remove_file(out.join("notes.txt")).unwrap();
    std::fs::remove_file(out.join("100000_2025-03-03_5#0.json.gz")).unwrap();
    assert_eq!(
        read_amplitude_dir(out, 100_000, 100_000).len(),
        f.range.len()
    );

    // Another format or project in the same directory does not conflict.
    ampsim::cli::export::export(&args(f, Format::Jsonl, out))
        .await
        .unwrap();
    let mut c = a.clone();
    c.project_id = 5;
    ampsim::cli::export::export(&c).await.unwrap();
}

/// A stream that fails mid-way leaves the completed files and no partial one, under any name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_export_leaves_only_complete_files() {
    let f = fixture().await;
    let day1 = date(FROM);
    let (first, rest): (Vec<pb::Event>, Vec<pb::Event>) = f
        .range
        .iter()
        .cloned()
        .partition(|e| day_of(e.time) == day1);
    // Half of day 2: the stream breaks inside day 2.
    let day2: Vec<pb::Event> = rest
        .iter()
        .filter(|e| day_of(e.time) == day_of(rest[0].time))
        .cloned()
        .collect();
    let half = day2[..day2.len() / 2].to_vec();
    for format in [Format::Jsonl, Format::Parquet, Format::AmplitudeExport] {
        let dir = tempfile::tempdir().unwrap();
        let opts = ExportOptions {
            format,
            out_dir: dir.path().to_path_buf(),
            simulation_id: SIM.into(),
            from: date(FROM),
            to: date(TO),
            project_id: 100_000,
            part_size: 100_000,
            gzip_level: 1,
            overwrite: false,
            device_names: default_device_names(),
        };
        let items: Vec<Result<ampsim::wire::EventBatch, String>> = vec![
            Ok(ampsim::wire::EventBatch::from_events(&first)),
            Ok(ampsim::wire::EventBatch::from_events(&half)),
            Err("connection reset".into()),
        ];
        let err = ampsim::export::export_stream(tokio_stream::iter(items), &opts, |_| {})
            .await
            .unwrap_err();
        assert!(err.to_string().contains("connection reset"), "{err}");
        let left = names(dir.path());
        assert!(
            left.iter().all(|n| !n.starts_with('.')),
            "{format:?}: no temporary file: {left:?}"
        );
        match format {
            Format::Jsonl => assert_eq!(left, ["ex_2025-03-04.jsonl"]),
            Format::Parquet => assert_eq!(left, ["ex_2025-03-04.parquet"]),
            Format::Labels => unreachable!("labels are not written from events"),
            Format::AmplitudeExport => {
                // Every hour of day 1 plus the complete hours of day 2; not the hour in progress.
                let lines = read_amplitude_dir(dir.path(), 100_000, 100_000);
                let last_hour = half.last().unwrap().time / HOUR_MS;
                let complete =
                    first.len() + half.iter().filter(|e| e.time / HOUR_MS < last_hour).count();
                assert_eq!(lines.len(), complete);
            }
        }
        if format == Format::Jsonl {
            let n = std::fs::read_to_string(dir.path().join("ex_2025-03-04.jsonl"))
                .unwrap()
                .lines()
                .count();
            assert_eq!(n, first.len());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_events_are_refused() {
    let f = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let mut x = Exporter::new(&ExportOptions {
        format: Format::Jsonl,
        out_dir: dir.path().to_path_buf(),
        simulation_id: SIM.into(),
        from: date(FROM),
        to: date(TO),
        project_id: 1,
        part_size: 1,
        gzip_level: 1,
        overwrite: false,
        device_names: default_device_names(),
    })
    .unwrap();
    let mut two = vec![f.range[0].clone(), f.range[f.range.len() - 1].clone()];
    two.reverse();
    let err = x.write(&EventBatch::from_events(&two)).unwrap_err();
    assert!(err.to_string().contains("out of time order"), "{err}");
    drop(x);
    assert!(names(dir.path()).iter().all(|n| !n.starts_with('.')));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_options_errors_name_the_flag() {
    let f = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o");
    let err = |a: ExportArgs| async move {
        format!("{:#}", ampsim::cli::export::export(&a).await.unwrap_err())
    };

    let mut a = args(f, Format::Jsonl, &out);
    a.from = Some(date("2025-03-07"));
    a.to = Some(date("2025-03-05"));
    let e = err(a).await;
    assert!(e.contains("--to") && e.contains("--from"), "{e}");

    let mut a = args(f, Format::Jsonl, &out);
    a.from = Some(date("2025-03-01"));
    let e = err(a).await;
    assert!(e.contains("--from") && e.contains("start date"), "{e}");

    let mut a = args(f, Format::Jsonl, &out);
    a.to = Some(date("2025-03-20"));
    let e = err(a).await;
    assert!(
        e.contains("--to") && e.contains("--generate-missing"),
        "{e}"
    );

    let mut a = args(f, Format::Parquet, &out);
    a.part_size = Some(10);
    let e = err(a).await;
    assert!(e.contains("--part-size"), "{e}");

    for format in [Format::AmplitudeExport, Format::Parquet, Format::Labels] {
        let mut a = args(f, format, &out);
        a.user_properties = Some(ampsim::cli::client::UserProperties::Sent);
        let e = err(a).await;
        assert!(
            e.contains("--user-properties") && e.contains("jsonl"),
            "{e}"
        );
    }

    let mut a = args(f, Format::Jsonl, &out);
    a.simulation = "nope".into();
    let e = err(a).await;
    assert!(e.contains("--simulation") && e.contains("nope"), "{e}");

    let mut a = args(f, Format::Jsonl, &out);
    a.client.server = "http://127.0.0.1:1".into();
    let e = err(a).await;
    assert!(e.contains("cannot connect"), "{e}");

    // --out is a file.
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let e = err(args(f, Format::Jsonl, &file)).await;
    assert!(e.contains("--out"), "{e}");

    assert!(!out.exists() || names(&out).is_empty(), "nothing written");

    // Clap: the format is a value enum, dates are checked.
    use clap::Parser;
    let parse = |argv: &[&str]| {
        ampsim::cli::Cli::try_parse_from(argv)
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let e = parse(&[
        "ampsim",
        "export",
        "--simulation",
        "x",
        "--format",
        "csv",
        "--out",
        "o",
    ]);
    assert!(
        e.contains("--format") && e.contains("amplitude-export"),
        "{e}"
    );
    let e = parse(&[
        "ampsim",
        "export",
        "--simulation",
        "x",
        "--format",
        "jsonl",
        "--out",
        "o",
        "--from",
        "2025-13-01",
    ]);
    assert!(e.contains("--from") && e.contains("YYYY-MM-DD"), "{e}");
}

/// The defaults: --from the start date, --to the last generated day.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_defaults_to_every_generated_day() {
    let f = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let mut a = args(f, Format::Jsonl, dir.path());
    a.from = None;
    a.to = None;
    let s = ampsim::cli::export::export(&a).await.unwrap();
    let mut c = f.server.client().await;
    let all = pull_all(&mut c, SIM).await;
    assert_eq!(s.events, all.len() as u64);
    assert_eq!(
        names(dir.path()),
        (3..=7)
            .map(|d| format!("ex_2025-03-0{d}.jsonl"))
            .collect::<Vec<_>>()
    );
}

/// ExportParquet's files (what `ampsim export --format parquet` saves) hold exactly the
/// engine's Arrow columns of each day: the server's stored records rendered on the server are
/// the events an in-memory run of the same definition makes, typed as every columnar output
/// types them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_parquet_files_are_the_engines_days() {
    use ampsim_engine::memory::MemorySim;
    use ampsim_engine::{Engine, Scenario, SimConfig};
    let f = fixture().await;
    let mut c = f.server.client().await;
    let sim = c
        .get_simulation(pb::GetSimulationRequest {
            simulation_id: SIM.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut mem = MemorySim::new(Engine::new(SimConfig {
        scenario: Scenario::from_toml(&sim.scenario_toml).unwrap(),
        seed: sim.seed,
        start_date: date(&sim.start_date),
        population_scale: sim.population_scale,
    }));
    let dir = tempfile::tempdir().unwrap();
    let summary = ampsim::cli::export::export(&args(f, Format::Parquet, dir.path()))
        .await
        .unwrap();
    assert_eq!(summary.events, f.range.len() as u64);
    let mut compared = 0;
    for _ in 0..sim.days_generated {
        let out = mem.step();
        let d = mem.engine.date_of(out.day);
        if d < date(FROM) || d > date(TO) {
            continue;
        }
        let file = read_parquet(&dir.path().join(format!("{SIM}_{d}.parquet")));
        let want = one_batch(&mem.engine.day_batches(&out.records, 1 << 30));
        let got = one_batch(&file);
        assert_eq!(got.num_rows(), want.num_rows(), "{d}");
        for (i, field) in want.schema().fields().iter().enumerate() {
            assert_eq!(got.column(i), want.column(i), "{d}: {}", field.name());
        }
        compared += got.num_rows();
    }
    assert_eq!(compared, f.range.len());
}

/// Saving the server's files: a stream that fails inside a day keeps the days completed before
/// it and no partial file; chunks that do not make whole files of the range, in order, are
/// refused naming what is wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saving_server_files_keeps_whole_files_only() {
    use ampsim::export::parquet::save_server_files;
    let chunk = |date: &str, data: &[u8], last: bool, size: u64| pb::FileChunk {
        date: date.into(),
        data: bytes::Bytes::copy_from_slice(data),
        last,
        events: u64::from(last) * 7,
        size,
    };
    let opts = |dir: &Path| ExportOptions {
        format: Format::Parquet,
        out_dir: dir.to_path_buf(),
        simulation_id: SIM.into(),
        from: date(FROM),
        to: date(TO),
        project_id: 1,
        part_size: 1,
        gzip_level: 1,
        overwrite: false,
        device_names: default_device_names(),
    };
    let run = |items: Vec<Result<pb::FileChunk, String>>| async move {
        let dir = tempfile::tempdir().unwrap();
        let r = save_server_files(tokio_stream::iter(items), &opts(dir.path()), |_, _| {}).await;
        (dir, r)
    };

    // Two whole days.
    let (dir, r) = run(vec![
        Ok(chunk(FROM, b"abc", false, 0)),
        Ok(chunk(FROM, b"de", true, 5)),
        Ok(chunk("2025-03-05", b"xyz", true, 3)),
    ])
    .await;
    let s = r.unwrap();
    assert_eq!((s.events, s.bytes, s.files.len()), (14, 8, 2));
    assert_eq!(
        names(dir.path()),
        ["ex_2025-03-04.parquet", "ex_2025-03-05.parquet"]
    );
    assert_eq!(
        std::fs::read(dir.path().join("ex_2025-03-04.parquet")).unwrap(),
        b"abcde"
    );

    // A failure inside day 2.
    let (dir, r) = run(vec![
        Ok(chunk(FROM, b"abc", true, 3)),
        Ok(chunk("2025-03-05", b"xy", false, 0)),
        Err("connection reset".into()),
    ])
    .await;
    assert!(r.unwrap_err().to_string().contains("connection reset"));
    assert_eq!(names(dir.path()), ["ex_2025-03-04.parquet"]);

    for (items, needle) in [
        (vec![Ok(chunk(FROM, b"abc", true, 4))], "announced 4"),
        (
            vec![Ok(chunk(FROM, b"abc", false, 0))],
            "ended inside the file of 2025-03-04",
        ),
        (
            vec![
                Ok(chunk(FROM, b"a", false, 0)),
                Ok(chunk("2025-03-05", b"b", true, 1)),
            ],
            "2025-03-05 began before 2025-03-04 was complete",
        ),
        (
            vec![
                Ok(chunk("2025-03-05", b"a", true, 1)),
                Ok(chunk(FROM, b"b", true, 1)),
            ],
            "out of order",
        ),
        (
            vec![Ok(chunk("2025-03-09", b"a", true, 1))],
            "outside 2025-03-04..=2025-03-06",
        ),
        (
            vec![Ok(chunk("March 4", b"a", true, 1))],
            "date \"March 4\"",
        ),
    ] {
        let (dir, r) = run(items).await;
        let e = r.unwrap_err().to_string();
        assert!(e.contains(needle), "{e}");
        assert!(
            names(dir.path()).iter().all(|n| !n.starts_with('.')),
            "no temporary file left"
        );
    }
}
