//! Access control beyond the bearer token: the TLS listener, and the warnings `ampsim serve`
//! gives when it listens beyond loopback without protection.

use crate::support::*;
use ampsim::cli::client;
use ampsim::cli::ClientOpts;
use ampsim::pb;
use ampsim::server::{serve, ServeOptions, TlsIdentity};
use std::io::{BufRead, BufReader};
use std::path::Path;

/// A self-signed certificate for localhost and 127.0.0.1, written to `dir/cert.pem`, with its
/// key.
fn self_signed(dir: &Path) -> TlsIdentity {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("certificate");
    let id = TlsIdentity {
        cert_pem: ck.cert.pem().into_bytes(),
        key_pem: ck.signing_key.serialize_pem().into_bytes(),
    };
    std::fs::write(dir.join("cert.pem"), &id.cert_pem).unwrap();
    std::fs::write(dir.join("key.pem"), &id.key_pem).unwrap();
    id
}

fn opts(server: String, tls_ca: Option<&Path>) -> ClientOpts {
    ClientOpts {
        server,
        auth_token: None,
        tls_ca: tls_ca.map(Path::to_path_buf),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_serves_https_to_clients_that_trust_it_only() {
    let dir = tempfile::tempdir().unwrap();
    let tls = self_signed(dir.path());
    let s = TestServer::start_with(
        &dir.path().join("t.db"),
        ServeOptions {
            tls: Some(tls),
            ..Default::default()
        },
    )
    .await;
    let https = format!("https://127.0.0.1:{}", s.addr.port());
    let ca = dir.path().join("cert.pem");

    // The CLI's client, trusting the certificate: a full round trip, events included.
    let mut c = client::connect(&opts(https.clone(), Some(&ca)))
        .await
        .expect("TLS connect");
    c.create_simulation(pb::CreateSimulationRequest {
        simulation_id: "tls".into(),
        seed: 5,
        start_date: "2025-01-06".into(),
        population_scale: 0.002,
        scenario_toml: String::new(),
    })
    .await
    .expect("create over TLS");
    let listed = c
        .list_simulations(pb::ListSimulationsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.simulations.len(), 1);

    // A client that does not trust the self-signed certificate (web PKI roots) is refused.
    let untrusted = match client::connect(&opts(https.clone(), None)).await {
        Err(e) => format!("{e:#}"),
        Ok(mut c) => format!(
            "{:#}",
            c.list_simulations(pb::ListSimulationsRequest {})
                .await
                .expect_err("untrusted certificate accepted")
        ),
    };
    assert!(!untrusted.is_empty());

    // Plaintext HTTP/2 against the TLS port gets no answer.
    let plain = match client::connect(&opts(format!("http://{}", s.addr), None)).await {
        Err(_) => true,
        Ok(mut c) => c
            .list_simulations(pb::ListSimulationsRequest {})
            .await
            .is_err(),
    };
    assert!(plain, "plaintext request answered by the TLS listener");

    // --tls-ca with an http:// URL is a usage error naming the flag.
    let Err(e) = client::connect(&opts(format!("http://{}", s.addr), Some(&ca))).await else {
        panic!("--tls-ca with an http:// URL accepted");
    };
    assert!(e.to_string().contains("--tls-ca"), "{e:#}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_tls_key_stops_the_server_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut tls = self_signed(dir.path());
    tls.key_pem = b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n".to_vec();
    let store = ampsim::store::Store::open(dir.path().join("b.db")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let e = serve(
        store,
        listener,
        ServeOptions {
            tls: Some(tls),
            ..Default::default()
        },
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .expect_err("a broken key must not serve");
    assert!(e.to_string().contains("TLS certificate or key"), "{e}");
}

/// Runs `ampsim serve` with `args` until it logs that it listens; returns its log up to there.
fn serve_log(db: &Path, args: &[&str]) -> String {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ampsim"))
        .arg("serve")
        .arg("--db")
        .arg(db)
        .args(args)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .env_remove("AMPSIM_AUTH_TOKEN")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn ampsim serve");
    let mut log = String::new();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        log.push_str(&line);
        log.push('\n');
        if line.contains("ampsim listening") || line.contains("Error") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    log
}

#[test]
fn serve_warns_when_listening_beyond_loopback_unprotected() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    let tls = self_signed(dir.path());
    drop(tls);
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());

    let open = serve_log(&db, &["--listen", "0.0.0.0:0"]);
    assert!(open.contains("ampsim listening"), "{open}");
    assert!(open.contains("without --auth-token"), "{open}");

    let token_only = serve_log(&db, &["--listen", "0.0.0.0:0", "--auth-token", "t0ken"]);
    assert!(token_only.contains("ampsim listening"), "{token_only}");
    assert!(!token_only.contains("without --auth-token"), "{token_only}");
    assert!(token_only.contains("without TLS"), "{token_only}");

    let protected = serve_log(
        &db,
        &[
            "--listen",
            "0.0.0.0:0",
            "--auth-token",
            "t0ken",
            "--tls-cert",
            cert,
            "--tls-key",
            key,
        ],
    );
    assert!(protected.contains("ampsim listening"), "{protected}");
    assert!(!protected.contains("WARN"), "{protected}");

    let loopback = serve_log(&db, &["--listen", "127.0.0.1:0"]);
    assert!(loopback.contains("ampsim listening"), "{loopback}");
    assert!(!loopback.contains("WARN"), "{loopback}");
}

/// An empty or blank token would turn auth on with `Bearer ` as the password.
#[test]
fn serve_refuses_an_empty_auth_token_naming_the_flag_and_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let serve = |flag: Option<&str>, env: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ampsim"));
        cmd.args(["serve", "--listen", "127.0.0.1:0"])
            .arg("--db")
            .arg(dir.path().join("t.db"))
            .env_remove("AMPSIM_AUTH_TOKEN");
        if let Some(t) = flag {
            cmd.args(["--auth-token", t]);
        }
        if let Some(t) = env {
            cmd.env("AMPSIM_AUTH_TOKEN", t);
        }
        // A server that starts would run forever: give it a moment, then stop it.
        let mut child = cmd.stderr(std::process::Stdio::piped()).spawn().unwrap();
        for _ in 0..100 {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = child.kill();
        child.wait_with_output().unwrap()
    };
    for (flag, env) in [
        (Some(""), None),
        (Some("   "), None),
        (Some(" padded "), None),
        (None, Some("")),
    ] {
        let out = serve(flag, env);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flag:?} {env:?}: started");
        assert!(
            err.contains("--auth-token") && err.contains("AMPSIM_AUTH_TOKEN"),
            "{flag:?} {env:?}: {err}"
        );
    }
}

#[test]
fn serve_refuses_half_a_tls_configuration_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ampsim"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            "/nonexistent.pem",
        ])
        .arg("--db")
        .arg(dir.path().join("h.db"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-key"));

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ampsim"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args([
            "--tls-cert",
            "/nonexistent/cert.pem",
            "--tls-key",
            "/nonexistent/key.pem",
        ])
        .arg("--db")
        .arg(dir.path().join("h.db"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--tls-cert /nonexistent/cert.pem"), "{err}");
}

/// One reflection round trip: list the services, then fetch the file defining
/// `ampsim.v1.SimulationService` and return its method names.
macro_rules! reflect {
    ($module:path, $addr:expr) => {{
        use $module as r;
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", $addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = r::server_reflection_client::ServerReflectionClient::new(channel);
        let requests = vec![
            r::ServerReflectionRequest {
                host: String::new(),
                message_request: Some(r::server_reflection_request::MessageRequest::ListServices(
                    String::new(),
                )),
            },
            r::ServerReflectionRequest {
                host: String::new(),
                message_request: Some(
                    r::server_reflection_request::MessageRequest::FileContainingSymbol(
                        "ampsim.v1.SimulationService".into(),
                    ),
                ),
            },
        ];
        let mut answers = client
            .server_reflection_info(tokio_stream::iter(requests))
            .await
            .unwrap()
            .into_inner();
        let mut services = Vec::new();
        let mut methods = Vec::new();
        while let Some(a) = answers.message().await.unwrap() {
            match a.message_response.unwrap() {
                r::server_reflection_response::MessageResponse::ListServicesResponse(l) => {
                    services.extend(l.service.into_iter().map(|s| s.name));
                }
                r::server_reflection_response::MessageResponse::FileDescriptorResponse(f) => {
                    for bytes in f.file_descriptor_proto {
                        let file: prost_types::FileDescriptorProto =
                            prost::Message::decode(bytes.as_slice()).unwrap();
                        for s in file
                            .service
                            .iter()
                            .filter(|s| s.name() == "SimulationService")
                        {
                            methods.extend(s.method.iter().map(|m| m.name().to_owned()));
                        }
                    }
                }
                other => panic!("unexpected reflection answer {other:?}"),
            }
        }
        (services, methods)
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_v1_and_v1alpha_describe_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(&dir.path().join("r.db")).await;
    let (services_v1, methods_v1) = reflect!(tonic_reflection::pb::v1, s.addr);
    let (services_alpha, methods_alpha) = reflect!(tonic_reflection::pb::v1alpha, s.addr);
    for services in [&services_v1, &services_alpha] {
        for want in ["ampsim.v1.SimulationService", "grpc.health.v1.Health"] {
            assert!(
                services.iter().any(|s| s == want),
                "{want} not in {services:?}"
            );
        }
    }
    let want = [
        "CreateSimulation",
        "GetSimulation",
        "ListSimulations",
        "DeleteSimulation",
        "GenerateDays",
        "StreamEvents",
        "ExportParquet",
        "ExportLabels",
        "GetUserJourney",
        "QueryCohort",
        "GetReport",
    ];
    assert_eq!(methods_v1, want);
    assert_eq!(methods_alpha, want);
    s.stop().await;
}
