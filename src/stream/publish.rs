//! Redistribution, as brokers do: after each stored batch, one Avro record per object the
//! batch changed (`proto/asterism/v1/object_update.avsc`: class probabilities with their
//! method, anomaly score, the k neighbours with distances, the embedding version), keyed by
//! object id. Each record is a one-record Avro container (schema included, as ZTF sends its
//! alerts), or, with a schema registry, a Confluent-framed datum under the id the registry gave
//! the schema (subject `TOPIC-value`).
//!
//! Records are produced after their batch is stored and delivered before the consumer commits
//! the batch's offsets to the group; a crash in between leaves that batch's updates unpublished
//! (the objects' next change publishes them again).

use std::collections::HashMap;
use std::time::Duration;

use apache_avro::types::Value;
use apache_avro::Schema;
use rayon::prelude::*;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use super::{Result, StreamError};
use crate::engine::{Engine, EngineError};

/// The schema of the published records.
pub const OBJECT_UPDATE_SCHEMA: &str = include_str!("../../proto/asterism/v1/object_update.avsc");

/// How long a batch's records may take to reach the broker.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Where and how updates are published.
pub(super) struct Publisher {
    producer: BaseProducer,
    topic: String,
    schema: Schema,
    /// The registry's id for the schema: records are then Confluent-framed datums.
    schema_id: Option<u32>,
}

impl Publisher {
    /// A producer for `topic` with the consumer's client settings (brokers, SASL, TLS), and the
    /// schema registered under `TOPIC-value` when a registry is given.
    pub(super) fn new(client: &ClientConfig, topic: &str, registry: Option<&str>) -> Result<Self> {
        let mut client = client.clone();
        for key in ["group.id", "enable.auto.commit", "enable.auto.offset.store"] {
            client.remove(key);
        }
        client.remove("auto.offset.reset");
        client.remove("fetch.message.max.bytes");
        let producer: BaseProducer = client
            .create()
            .map_err(|e| StreamError::Config(e.to_string()))?;
        let schema = Schema::parse_str(OBJECT_UPDATE_SCHEMA)
            .map_err(|e| StreamError::Config(format!("object update schema: {e}")))?;
        let schema_id = registry
            .map(|url| {
                super::registry::register(url, &format!("{topic}-value"), OBJECT_UPDATE_SCHEMA)
            })
            .transpose()?;
        Ok(Publisher {
            producer,
            topic: topic.to_string(),
            schema,
            schema_id,
        })
    }

    /// Publishes the state of each of `objects` and waits for delivery; returns the count.
    pub(super) fn publish(&self, engine: &Engine, objects: &[String]) -> Result<u64> {
        let records: Vec<(String, Vec<u8>)> = objects
            .par_iter()
            .map(|id| Ok((id.clone(), self.encode(update(engine, id)?)?)))
            .collect::<Result<_>>()?;
        for (key, payload) in &records {
            let mut record = BaseRecord::to(&self.topic).key(key).payload(payload);
            loop {
                match self.producer.send(record) {
                    Ok(()) => break,
                    Err((e, r)) if is_queue_full(&e) => {
                        self.producer.poll(Duration::from_millis(10));
                        record = r;
                    }
                    Err((e, _)) => return Err(e.into()),
                }
            }
            self.producer.poll(Duration::ZERO);
        }
        self.producer.flush(DELIVERY_TIMEOUT)?;
        Ok(records.len() as u64)
    }

    fn encode(&self, value: Value) -> Result<Vec<u8>> {
        let err = |e: apache_avro::Error| StreamError::Config(format!("object update: {e}"));
        match self.schema_id {
            Some(id) => {
                let mut out = vec![0];
                out.extend_from_slice(&id.to_be_bytes());
                let writer = apache_avro::writer::datum::GenericDatumWriter::builder(&self.schema)
                    .build()
                    .map_err(err)?;
                out.extend(writer.write_value_to_vec(value).map_err(err)?);
                Ok(out)
            }
            None => {
                let mut writer = apache_avro::Writer::new(&self.schema, Vec::new()).map_err(err)?;
                writer.append_value(value).map_err(err)?;
                writer.into_inner().map_err(err)
            }
        }
    }
}

fn is_queue_full(e: &rdkafka::error::KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
    )
}

/// One object's update record, from the store as it stands.
fn update(engine: &Engine, object_id: &str) -> Result<Value> {
    let record = engine.object(object_id)?;
    let version = engine
        .store()
        .vector_versions(object_id)?
        .last()
        .map(|(seq, _)| *seq);
    let classification = match engine.classify(object_id) {
        Ok(c) => Some(c),
        Err(EngineError::NoEmbedding { .. } | EngineError::SpecOutdated) => None,
        Err(e) => return Err(e.into()),
    };
    let anomaly = engine.anomaly_of(object_id)?;
    let neighbours = engine.neighbours(object_id)?;
    let optional = |v: Option<Value>| match v {
        Some(v) => Value::Union(1, Box::new(v)),
        None => Value::Union(0, Box::new(Value::Null)),
    };
    let classification = classification.map(|c| {
        let probabilities: HashMap<String, Value> = c
            .probabilities
            .into_iter()
            .map(|(k, p)| (k, Value::Double(p)))
            .collect();
        Value::Record(vec![
            ("class".into(), optional(c.class.map(Value::String))),
            ("confidence".into(), Value::Double(c.confidence)),
            ("method".into(), Value::String(c.method.to_string())),
            ("probabilities".into(), Value::Map(probabilities)),
        ])
    });
    Ok(Value::Record(vec![
        ("objectId".into(), Value::String(record.object_id.clone())),
        (
            "survey".into(),
            Value::String(record.survey.as_str().into()),
        ),
        (
            "nDetections".into(),
            Value::Int(i32::try_from(record.detections.len()).unwrap_or(i32::MAX)),
        ),
        (
            "lastMjd".into(),
            optional(record.meta.last_mjd.map(Value::Double)),
        ),
        (
            "embeddingVersion".into(),
            optional(version.map(|v| Value::Int(i32::try_from(v).unwrap_or(i32::MAX)))),
        ),
        (
            "embeddingSpecVersion".into(),
            Value::Long(i64::try_from(engine.spec().version).unwrap_or(i64::MAX)),
        ),
        ("classification".into(), optional(classification)),
        (
            "anomalyScore".into(),
            optional(anomaly.map(|a| Value::Double(a.score))),
        ),
        (
            "neighbours".into(),
            Value::Array(
                neighbours
                    .into_iter()
                    .map(|n| {
                        Value::Record(vec![
                            ("objectId".into(), Value::String(n.object_id)),
                            ("distance".into(), Value::Float(n.distance)),
                        ])
                    })
                    .collect(),
            ),
        ),
    ]))
}
