//! Live alert streams: a Kafka consumer that feeds the engine, at least once and nothing twice.
//!
//! Each batch of messages is decoded by the pure [`crate::alert`] decoders and written by
//! [`Engine::apply_marked`] in one atomic store write together with every partition's next
//! offset, so the store itself says where to resume: on assignment the consumer seeks to the
//! stored offsets (the offsets it also commits to the consumer group only make lag visible to
//! Kafka tools), and a message below a stored offset is skipped. Messages that cannot be decoded
//! are quarantined with their bytes in the same batch, and their offsets advance.
//!
//! Formats as the surveys send them: ZTF, one Avro container per message; Rubin, the
//! Confluent wire format with schemas from `--schema` or a registry ([`registry`]); Fink's
//! re-published Avro topics (containers). Imports `alert`, `store` and `engine`; sits beside
//! the server and the CLI, which start it.

mod consumer;
pub mod nightly;
mod publish;
pub mod registry;

use std::time::Duration;

use serde::Serialize;

pub use consumer::consume;
pub use nightly::NightlyTopics;
pub use publish::OBJECT_UPDATE_SCHEMA;

use crate::alert::DecodeOptions;
use crate::engine::{EngineError, IngestReport};
use crate::store::PartitionOffset;

/// Why the consumer stopped.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("Kafka: {0}")]
    Kafka(String),
    #[error("the Kafka client configuration is invalid: {0}")]
    Config(String),
    #[error("schema registry {url}: {detail}")]
    Registry { url: String, detail: String },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(
        "no progress for {seconds} s while {waiting}: the consumer is stuck (broker \
         unreachable, or a rebalance that never ends)"
    )]
    Stalled { seconds: u64, waiting: String },
}

impl From<crate::store::StoreError> for StreamError {
    fn from(e: crate::store::StoreError) -> Self {
        StreamError::Engine(e.into())
    }
}

impl From<rdkafka::error::KafkaError> for StreamError {
    fn from(e: rdkafka::error::KafkaError) -> Self {
        StreamError::Kafka(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, StreamError>;

/// Largest message the consumer fetches: Rubin alerts with cutouts reach 10 MB.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// What to consume and how.
#[derive(Debug, Clone)]
pub struct ConsumeConfig {
    /// `HOST:PORT[,HOST:PORT...]`.
    pub brokers: String,
    pub topics: Vec<String>,
    /// ZTF nightly topics followed besides `topics`, rolling over at UTC midnight.
    pub nightly: Option<NightlyTopics>,
    pub group: String,
    /// Schemas for Confluent-framed datums (from `--schema`).
    pub decode: DecodeOptions,
    /// A Confluent-compatible schema registry for schema ids `decode` does not know.
    pub registry: Option<String>,
    /// librdkafka properties set after the consumer's own (SASL, TLS, timeouts...).
    pub kafka_options: Vec<(String, String)>,
    /// Stop after this long without a message.
    pub exit_when_idle: Option<Duration>,
    /// Alerts per store batch, at most.
    pub batch_size: usize,
    /// A batch is written at the latest this long after its first message.
    pub max_batch_delay: Duration,
    /// Group members on as many threads, sharing the partitions and the engine.
    pub consumers: usize,
    /// Publish one record per object each stored batch changed to this topic ([`publish`]).
    pub publish_topic: Option<String>,
    /// Stop with [`StreamError::Stalled`] when messages wait on the broker, or the broker does
    /// not answer, and nothing has been stored for this long.
    pub watchdog: Duration,
}

impl ConsumeConfig {
    pub fn new(brokers: &str, topics: Vec<String>, group: &str) -> ConsumeConfig {
        ConsumeConfig {
            brokers: brokers.to_string(),
            topics,
            nightly: None,
            group: group.to_string(),
            decode: DecodeOptions::default(),
            registry: None,
            kafka_options: Vec::new(),
            exit_when_idle: None,
            batch_size: crate::engine::DEFAULT_BATCH_SIZE,
            max_batch_delay: Duration::from_millis(500),
            publish_topic: None,
            consumers: 1,
            watchdog: Duration::from_secs(300),
        }
    }

    /// The topics to subscribe to now.
    pub fn topics_now(&self) -> Vec<String> {
        let mut topics = self.topics.clone();
        if let Some(n) = &self.nightly {
            topics.extend(n.topics_now());
        }
        topics.sort();
        topics.dedup();
        topics
    }

    /// The SASL SCRAM-SHA-512 over TLS access Rubin's brokers ask for.
    pub fn scram_sha512(&mut self, username: &str, password: &str) {
        for (k, v) in [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanisms", "SCRAM-SHA-512"),
            ("sasl.username", username),
            ("sasl.password", password),
        ] {
            self.kafka_options.push((k.to_string(), v.to_string()));
        }
    }
}

/// What a consumer run did: the ingest summary, and the messages read and quarantined.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ConsumeReport {
    #[serde(flatten)]
    pub ingest: IngestReport,
    pub messages: u64,
    pub quarantined: u64,
    /// Messages below a stored offset, skipped (a replay after a restart or a rebalance).
    pub skipped: u64,
    /// Object updates published (`publish_topic`).
    pub published: u64,
    /// Seconds from the first message read to the last batch stored.
    pub busy_seconds: f64,
    /// Where each partition read stands, with its lag as of the last watermark.
    pub partitions: Vec<PartitionOffset>,
}

/// Progress, reported after each stored batch and each watermark refresh.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub messages: u64,
    pub alerts: u64,
    pub quarantined: u64,
    /// Messages on the broker not yet stored, over the assigned partitions.
    pub lag: i64,
}
