//! Wiring: the gRPC server with health, reflection, optional bearer-token auth, and graceful
//! shutdown on one `CancellationToken`.
//!
//! The caller binds the listener (so tests can use port 0) and owns the token: cancelling it
//! turns health to NOT_SERVING, stops generation after the day in progress, and lets in-flight
//! RPCs drain before [`serve`] returns.

use crate::app::App;
use crate::pb::simulation_service_server::SimulationServiceServer;
use crate::rpc::{Auth, Service, StreamLimits};
use crate::store::Store;
use crate::wire::WINDOW_BYTES;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;

/// Largest request message accepted (scenario TOML is limited to 256 KiB).
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;
const _: () = assert!(
    MAX_REQUEST_BYTES == 1 << 20,
    "the size-limit message says 1 MiB"
);

/// Server options beyond the listener and database.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// When set, every RPC but health needs `authorization: Bearer <token>`.
    pub auth_token: Option<String>,
    /// How long in-flight RPCs may drain after shutdown starts before the server stops anyway.
    pub drain_timeout: Option<Duration>,
    /// When set, the listener speaks TLS (rustls) with this certificate chain and key.
    pub tls: Option<TlsIdentity>,
    /// Most memory (bytes) one day's generation may need; `None` is
    /// [`crate::app::DEFAULT_MEMORY_BUDGET`].
    pub memory_budget: Option<u64>,
    /// Limits of the streaming RPCs (slots, buffered bytes, send timeout).
    pub stream_limits: StreamLimits,
}

/// HTTP/2 streams (RPCs in flight) one connection may open; more wait for the client's turn.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 100;

/// A PEM certificate chain and its PEM private key, for the TLS listener.
#[derive(Clone)]
pub struct TlsIdentity {
    /// The certificate chain, leaf first (PEM).
    pub cert_pem: Vec<u8>,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("TlsIdentity")
            .field("cert_pem_bytes", &self.cert_pem.len())
            .finish_non_exhaustive()
    }
}

/// tonic answers a request over the size limit with OUT_OF_RANGE; gRPC's convention, and what
/// the contract promises, is RESOURCE_EXHAUSTED. The answer is a trailers-only response, so
/// its status is in the headers, where this rewrites it (and only it: ampsim itself never
/// answers OUT_OF_RANGE).
fn too_large_is_resource_exhausted(
    mut res: http::Response<tonic::body::Body>,
) -> http::Response<tonic::body::Body> {
    let h = res.headers_mut();
    let too_large = h.get("grpc-status").is_some_and(|v| v == "11")
        && h.get("grpc-message").is_some_and(|m| {
            m.to_str().unwrap_or("").contains("too%20large")
                || m.to_str().unwrap_or("").contains("too large")
        });
    if too_large {
        h.insert("grpc-status", http::HeaderValue::from_static("8"));
        h.insert(
            "grpc-message",
            http::HeaderValue::from_static(
                "request%20message%20too%20large%3A%20the%20limit%20is%201%20MiB",
            ),
        );
    }
    res
}

/// An error and its sources on one line (tonic's transport errors hide the cause in `source`).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// Serves until `shutdown` is cancelled, then drains and returns.
///
/// # Errors
/// Transport errors from the listener.
pub async fn serve(
    store: Store,
    listener: TcpListener,
    opts: ServeOptions,
    shutdown: CancellationToken,
) -> crate::error::Result<()> {
    if let Some(t) = &opts.auth_token {
        if t.trim().is_empty() || t.trim() != t {
            return Err(crate::error::Error::invalid(
                "auth_token",
                "must not be empty or padded with whitespace (an empty token would let `Bearer ` in)",
            ));
        }
    }
    let app = Arc::new(
        App::new(store, shutdown.clone()).with_memory_budget(
            opts.memory_budget
                .unwrap_or(crate::app::DEFAULT_MEMORY_BUDGET),
        ),
    );
    let auth = Auth::new(opts.auth_token.as_deref());

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<SimulationServiceServer<Service>>()
        .await;
    // Reflection v1, and v1alpha for the many tools that only speak it (older grpcurl, evans,
    // Postman, grpcio-reflection).
    let reflection_builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection = reflection_builder()
        .build_v1()
        .map_err(|e| crate::error::Error::Io(std::io::Error::other(e)))?;
    let reflection_alpha = reflection_builder()
        .build_v1alpha()
        .map_err(|e| crate::error::Error::Io(std::io::Error::other(e)))?;
    let service = Service::with_limits(app, opts.stream_limits);
    let mut saturation = service.saturation();
    let sim = SimulationServiceServer::new(service).max_decoding_message_size(MAX_REQUEST_BYTES);
    // Health follows the stream slots: NOT_SERVING while every one is taken, so a load
    // balancer sends new work elsewhere; SERVING again once one is free (until shutdown).
    {
        let (health, shutdown) = (health.clone(), shutdown.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    changed = saturation.changed() => if changed.is_err() { return },
                    _ = shutdown.cancelled() => return,
                }
                let busy = *saturation.borrow_and_update();
                if shutdown.is_cancelled() {
                    return;
                }
                let status = if busy {
                    tracing::warn!(
                        "every stream slot is taken: health NOT_SERVING until one is free"
                    );
                    tonic_health::ServingStatus::NotServing
                } else {
                    tonic_health::ServingStatus::Serving
                };
                health
                    .set_service_status(
                        <SimulationServiceServer<Service> as tonic::server::NamedService>::NAME,
                        status,
                    )
                    .await;
                health.set_service_status("", status).await;
            }
        });
    }

    let signal = {
        let shutdown = shutdown.clone();
        let health = health.clone();
        async move {
            shutdown.cancelled().await;
            tracing::info!("shutting down: health NOT_SERVING, draining in-flight requests");
            health
                .set_not_serving::<SimulationServiceServer<Service>>()
                .await;
            health
                .set_service_status("", tonic_health::ServingStatus::NotServing)
                .await;
        }
    };
    let mut builder = tonic::transport::Server::builder().layer(
        tower::util::MapResponseLayer::new(too_large_is_resource_exhausted),
    );
    if let Some(tls) = &opts.tls {
        let identity = tonic::transport::Identity::from_pem(&tls.cert_pem, &tls.key_pem);
        builder = builder
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
            .map_err(|e| {
                crate::error::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("TLS certificate or key: {}", error_chain(&e)),
                ))
            })?;
    }
    let server = builder
        // Event batches are megabytes: default 64 KiB HTTP/2 windows would stall every stream
        // on window updates.
        .initial_stream_window_size(Some(WINDOW_BYTES))
        .initial_connection_window_size(Some(2 * WINDOW_BYTES))
        .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
        .add_service(health_service)
        .add_service(InterceptedService::new(reflection, auth.clone()))
        .add_service(InterceptedService::new(reflection_alpha, auth.clone()))
        .add_service(InterceptedService::new(sim, auth))
        // Small replies (a journey's summary after its events) must not wait for delayed ACKs.
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            signal,
        );
    let drain = opts.drain_timeout.unwrap_or(Duration::from_secs(30));
    tokio::select! {
        res = server => res.map_err(|e| crate::error::Error::Io(std::io::Error::other(e)))?,
        _ = async { shutdown.cancelled().await; tokio::time::sleep(drain).await } => {
            tracing::warn!(?drain, "in-flight requests did not finish in time; stopping anyway");
        }
    }
    Ok(())
}
