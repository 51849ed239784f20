//! A client of an ampsim server, for the command line's verbs, `export` and `upload`: the
//! connection (HTTP/2 windows and frames sized for event batches, TLS, the bearer token) and
//! the generated client type. It knows nothing of clap: [`cli`](crate::cli) turns its flags
//! into [`ConnectOptions`] and names the flag in errors.
//!
//! Streamed events are read through [`crate::wire::EventView`]s, and printed as HTTP V2 JSON by
//! [`crate::wire::EventView::write_json`], the one JSON printer (the schema's
//! [`ampsim_engine::json::write_http`]).

use crate::pb::simulation_service_client::SimulationServiceClient;
use crate::wire::{MAX_FRAME_BYTES, WINDOW_BYTES};
use std::path::PathBuf;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// Largest message a client accepts.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Where the server is and how to reach it.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// The server's URL, `http://` or `https://`.
    pub server: String,
    /// Bearer token, when the server requires one.
    pub auth_token: Option<String>,
    /// PEM file of the CA certificate(s) to trust for an `https://` server; without it the
    /// public web PKI roots are trusted.
    pub tls_ca: Option<PathBuf>,
}

/// Why a connection could not be made; each names the option at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// `server` is not a URL.
    #[error("server {url:?} is not a valid URL")]
    BadUrl {
        /// The URL given.
        url: String,
    },
    /// `tls_ca` cannot be read.
    #[error("tls_ca {}: {source}", path.display())]
    TlsCa {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// `tls_ca` was given for a plaintext URL.
    #[error("tls_ca is set but server {url:?} is not an https:// URL")]
    TlsCaWithoutHttps {
        /// The URL given.
        url: String,
    },
    /// TLS could not be set up with these options.
    #[error("server/tls_ca: cannot set up TLS: {0}")]
    Tls(#[source] tonic::transport::Error),
    /// Nothing answered at `server`.
    #[error(
        "cannot connect to the ampsim server at {url} (start one with `ampsim serve`): {source}"
    )]
    Unreachable {
        /// The URL given.
        url: String,
        /// The transport's error.
        source: tonic::transport::Error,
    },
    /// `auth_token` cannot be sent in a header.
    #[error("auth_token holds characters not allowed in a header")]
    BadToken,
}

/// Adds the bearer token to every request.
#[derive(Clone)]
pub struct BearerToken(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for BearerToken {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// The connected client.
pub type Client = SimulationServiceClient<InterceptedService<Channel, BearerToken>>;

/// Connects to the server.
///
/// # Errors
/// [`ConnectError`], naming the option at fault.
pub async fn connect(opts: &ConnectOptions) -> Result<Client, ConnectError> {
    let mut endpoint =
        Channel::from_shared(opts.server.clone()).map_err(|_| ConnectError::BadUrl {
            url: opts.server.clone(),
        })?;
    if endpoint.uri().scheme_str() == Some("https") {
        let mut tls = tonic::transport::ClientTlsConfig::new();
        tls = match &opts.tls_ca {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|source| ConnectError::TlsCa {
                    path: path.clone(),
                    source,
                })?;
                tls.ca_certificate(tonic::transport::Certificate::from_pem(pem))
            }
            None => tls.with_webpki_roots(),
        };
        endpoint = endpoint.tls_config(tls).map_err(ConnectError::Tls)?;
    } else if opts.tls_ca.is_some() {
        return Err(ConnectError::TlsCaWithoutHttps {
            url: opts.server.clone(),
        });
    }
    let channel = endpoint
        .tcp_nodelay(true)
        .initial_stream_window_size(Some(WINDOW_BYTES))
        .initial_connection_window_size(Some(2 * WINDOW_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES))
        .connect()
        .await
        .map_err(|source| ConnectError::Unreachable {
            url: opts.server.clone(),
            source,
        })?;
    let token = match &opts.auth_token {
        Some(t) => Some(
            format!("Bearer {t}")
                .parse()
                .map_err(|_| ConnectError::BadToken)?,
        ),
        None => None,
    };
    Ok(
        SimulationServiceClient::with_interceptor(channel, BearerToken(token))
            .max_decoding_message_size(MAX_MESSAGE_BYTES),
    )
}
