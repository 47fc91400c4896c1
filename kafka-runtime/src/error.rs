//! The runtime's error type.

use rdkafka::error::KafkaError;

use crate::config::ConfigError;

/// Why the application could not start or keep running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listener's registration cannot run as declared.
    #[error("listener `{listener}`: {message}")]
    Listener {
        /// The listener id.
        listener: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// Two listeners share an id.
    #[error(
        "two listeners have the id `{id}` ({first} and {second}); give one of them `id = \"...\"`"
    )]
    DuplicateListener {
        /// The shared id.
        id: String,
        /// The first function.
        first: &'static str,
        /// The second function.
        second: &'static str,
    },
    /// The brokers did not answer.
    #[error("cannot reach Kafka at {servers} within {timeout_secs}s: {source}")]
    Unreachable {
        /// The bootstrap servers tried.
        servers: String,
        /// How long we waited.
        timeout_secs: u64,
        /// librdkafka's error.
        source: KafkaError,
    },
    /// The cluster refused the connection's security: an untrusted certificate, a failed TLS
    /// handshake or rejected SASL credentials.
    #[error("cannot connect to Kafka at {servers}: {problem} (librdkafka: {detail})")]
    Security {
        /// The bootstrap servers tried.
        servers: String,
        /// What to fix.
        problem: String,
        /// librdkafka's last message (it names no secret).
        detail: String,
    },
    /// Handlers were still running at `shutdown-timeout`; their records were abandoned
    /// (uncommitted, so they will be delivered again).
    #[error("shutdown timed out; abandoned records (they will be delivered again): {}", abandoned.join(", "))]
    ShutdownTimedOut {
        /// The records, as `topic-partition@offset`.
        abandoned: Vec<String>,
    },
    /// A lifecycle hook ([`on_started`](crate::KafkaApplication::on_started)) failed; the
    /// application was stopped.
    #[error("the {stage} hook failed: {source}")]
    Hook {
        /// When it ran: `after startup`.
        stage: &'static str,
        /// The hook's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The embedded cluster could not be used.
    #[error("embedded Kafka: {message}")]
    Embedded {
        /// What failed.
        message: String,
    },
    /// The management endpoint (`management.port`) could not listen.
    #[error("management endpoint: cannot listen on {address} (management.address, management.port): {source}")]
    Management {
        /// The address tried.
        address: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A librdkafka client failed.
    #[error("{context}: {source}")]
    Kafka {
        /// What we were doing.
        context: String,
        /// librdkafka's error.
        source: KafkaError,
    },
}

impl Error {
    pub(crate) fn kafka(context: impl Into<String>) -> impl FnOnce(KafkaError) -> Error {
        let context = context.into();
        move |source| Error::Kafka { context, source }
    }
}
