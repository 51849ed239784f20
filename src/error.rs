//! The library's one error type. `rpc` maps it to gRPC status codes (the only place that knows
//! `tonic::Status`); the CLI prints it.

/// Everything that can go wrong in ampsim.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The simulation, user or day does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A simulation with that id exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// A request field is invalid; `field` names it.
    #[error("{field}: {message}")]
    InvalidArgument {
        /// The request field (or scenario key path) that is wrong.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The request is valid but the simulation is not in a state to serve it.
    #[error("{0}")]
    FailedPrecondition(String),
    /// Conflicts with work in progress (e.g. a simulation that is already generating).
    #[error("{0}")]
    Aborted(String),
    /// Out of space or over a size limit.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The server is shutting down.
    #[error("{0}")]
    Unavailable(String),
    /// The database file cannot be used (not an ampsim database, newer schema, ...).
    #[error("{0}")]
    Database(String),
    /// A storage error; the detail is logged, clients get a generic message.
    #[error("storage error: {0}")]
    Storage(#[from] crate::store::SqlError),
    /// Stored data does not decode or fails a check (clients get DATA_LOSS).
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// A bug: a worker panicked or an invariant broke. Clients get INTERNAL.
    #[error("bug: {0}")]
    Bug(String),
    /// An I/O error outside SQLite.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// An [`Error::InvalidArgument`] for `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<ampsim_engine::codec::CodecError> for Error {
    fn from(e: ampsim_engine::codec::CodecError) -> Self {
        Error::Corrupt(e.to_string())
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
