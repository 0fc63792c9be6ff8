//! Writer schemas for Confluent-framed datums, by schema id: those loaded with `--schema`, and
//! those fetched from a Confluent-compatible schema registry (`GET {url}/schemas/ids/{id}`),
//! each fetched once and cached.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::{Result, StreamError};
use crate::alert::{self, AvroSchema, DecodeOptions};

/// How long one registry request may take.
const REGISTRY_TIMEOUT: Duration = Duration::from_secs(10);

/// The body of `GET /schemas/ids/{id}`.
#[derive(Deserialize)]
struct SchemaById {
    schema: String,
}

/// Decode options that grow as a registry is asked for schema ids not seen before.
pub struct Schemas {
    options: DecodeOptions,
    registry: Option<Registry>,
    /// Ids the registry said it does not hold: not asked again in this run.
    missing: HashSet<u32>,
}

struct Registry {
    base: String,
    agent: ureq::Agent,
}

impl Schemas {
    pub fn new(options: DecodeOptions, registry_url: Option<&str>) -> Schemas {
        let registry = registry_url.map(|url| Registry {
            base: url.trim_end_matches('/').to_string(),
            agent: agent(),
        });
        Schemas {
            options,
            registry,
            missing: HashSet::new(),
        }
    }

    /// The decode options for `payload`: when it is a Confluent-framed datum whose schema id
    /// is not known yet and a registry is configured, the schema is fetched first. A registry
    /// that answers "no such schema" leaves the id unknown (the message is then quarantined);
    /// a registry that cannot be reached is an error, so no message is quarantined for it.
    pub fn options_for(&mut self, payload: &[u8]) -> Result<&DecodeOptions> {
        let Some(id) = alert::confluent_schema_id(payload) else {
            return Ok(&self.options);
        };
        if self.options.schemas_by_id.contains_key(&id) || self.missing.contains(&id) {
            return Ok(&self.options);
        }
        if let Some(registry) = &self.registry {
            match registry.fetch(id)? {
                Some(schema) => {
                    tracing::info!(schema_id = id, "writer schema fetched from the registry");
                    self.options.schemas_by_id.insert(id, Arc::new(schema));
                }
                None => {
                    self.missing.insert(id);
                }
            }
        }
        Ok(&self.options)
    }
}

impl Registry {
    fn fetch(&self, id: u32) -> Result<Option<AvroSchema>> {
        let url = format!("{}/schemas/ids/{id}", self.base);
        let unreachable = |detail: String| StreamError::Registry {
            url: url.clone(),
            detail,
        };
        let mut response = self
            .agent
            .get(&url)
            .call()
            .map_err(|e| unreachable(e.to_string()))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|e| unreachable(e.to_string()))?;
        match status {
            200 => {}
            // Confluent answers 404 (error code 40403) for an id it does not hold.
            404 => return Ok(None),
            _ => return Err(unreachable(format!("HTTP {status}: {}", clip(&body)))),
        }
        let parsed: SchemaById = serde_json::from_str(&body)
            .map_err(|e| unreachable(format!("not a schema response: {e}")))?;
        AvroSchema::parse(&[parsed.schema])
            .map(Some)
            .map_err(|e| unreachable(format!("schema {id}: {e}")))
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(REGISTRY_TIMEOUT))
        .http_status_as_error(false)
        .build()
        .new_agent()
}

/// The body of a registration's answer.
#[derive(Deserialize)]
struct Registered {
    id: u32,
}

/// Registers `schema` under `subject` (`POST {url}/subjects/{subject}/versions`); returns the
/// id the registry gives it (the same id when it already holds the schema).
pub(super) fn register(url: &str, subject: &str, schema: &str) -> Result<u32> {
    let url = format!("{}/subjects/{subject}/versions", url.trim_end_matches('/'));
    let failed = |detail: String| StreamError::Registry {
        url: url.clone(),
        detail,
    };
    let body = serde_json::json!({ "schema": schema }).to_string();
    let mut response = agent()
        .post(&url)
        .header("Content-Type", "application/vnd.schemaregistry.v1+json")
        .send(body.as_bytes())
        .map_err(|e| failed(e.to_string()))?;
    let status = response.status().as_u16();
    let answer = response
        .body_mut()
        .read_to_string()
        .map_err(|e| failed(e.to_string()))?;
    if status != 200 {
        return Err(failed(format!("HTTP {status}: {}", clip(&answer))));
    }
    serde_json::from_str::<Registered>(&answer)
        .map(|r| r.id)
        .map_err(|e| failed(format!("not a registration answer: {e}")))
}

fn clip(s: &str) -> &str {
    let end = s.char_indices().map(|(i, _)| i).nth(200).unwrap_or(s.len());
    &s[..end]
}
