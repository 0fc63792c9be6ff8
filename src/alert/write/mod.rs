//! Writes alert packets as the surveys send them, from a [`Packet`]: ZTF (Avro container
//! files, schema 4.02) and Rubin/LSST (schema 10.0, as a container file or as the
//! Confluent-framed datum of Rubin's Kafka stream). The schemas are the real schema files of
//! `data/schema/`, compiled in. Used by the stream generator (`synth`) so that benchmarks
//! exercise the real decoders. Pure: bytes out, no I/O.

mod lsst;
mod ztf;

use apache_avro::types::Value;
use apache_avro::{Schema, Writer};
use serde_json::Value as Json;

pub use lsst::LsstWriter;
pub use ztf::ZtfWriter;

use super::{DecodeError, Result};
use crate::model::{Detection, Survey, UpperLimit};

/// One alert to write: the triggering detection and the history a packet carries. Values are
/// difference magnitudes; a writer converts them to its survey's unit.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    /// As the survey names objects: `ZTF26aaaaaab`, or a Rubin `diaObjectId` in decimal.
    pub object_id: String,
    /// The alert's id: ZTF's `candid`, Rubin's `diaSourceId` of the trigger.
    pub candid: i64,
    pub ra: f64,
    pub dec: f64,
    /// The triggering detection (a difference magnitude).
    pub candidate: Detection,
    /// Earlier detections (ZTF sends those of the previous 30 days, Rubin of 12 months).
    pub history: Vec<Detection>,
    /// Earlier non-detections.
    pub limits: Vec<UpperLimit>,
    /// Detections of the object up to and including this one, over the whole survey (older
    /// ones than the history sends included): ZTF's `ndethist`, Rubin's `nDiaSources`.
    pub detections_so_far: u32,
}

/// A writer for one survey's packets.
pub enum PacketWriter {
    Ztf(ZtfWriter),
    Lsst(LsstWriter),
}

impl PacketWriter {
    /// The writer for `survey`'s packets (ZTF or LSST).
    pub fn new(survey: Survey) -> Result<PacketWriter> {
        match survey {
            Survey::Ztf => Ok(PacketWriter::Ztf(ZtfWriter::new()?)),
            Survey::Lsst => Ok(PacketWriter::Lsst(LsstWriter::new()?)),
            Survey::External => Err(DecodeError::Avro {
                detail: "no packet format for external lightcurves: write ztf or lsst".into(),
            }),
        }
    }

    /// One packet as an Avro container file holding one alert.
    pub fn write(&self, p: &Packet) -> Result<Vec<u8>> {
        match self {
            PacketWriter::Ztf(w) => w.write(p),
            PacketWriter::Lsst(w) => w.write(p),
        }
    }

    /// One packet as a Confluent-framed datum with `schema_id`, as Rubin's Kafka stream sends
    /// them (ZTF's stream carries container files: an error).
    pub fn write_framed(&self, p: &Packet, schema_id: u32) -> Result<Vec<u8>> {
        match self {
            PacketWriter::Ztf(_) => Err(DecodeError::Avro {
                detail: "ZTF packets are container files; only LSST ones are framed".into(),
            }),
            PacketWriter::Lsst(w) => w.write_framed(p, schema_id),
        }
    }
}

fn schema_error(survey: &str, detail: impl std::fmt::Display) -> DecodeError {
    DecodeError::Avro {
        detail: format!("{survey} writer schema: {detail}"),
    }
}

fn avro_error(e: apache_avro::Error) -> DecodeError {
    DecodeError::Avro {
        detail: e.to_string(),
    }
}

/// A survey's alert schema made self-contained, and each named part parsed on its own (to
/// build records of a type the alert schema only names).
struct Compiled {
    alert: Schema,
    parts: Vec<(String, Schema)>,
}

impl Compiled {
    /// `parts`: (full name, schema text) of the named schemas the alert uses, in the order
    /// they first appear in it.
    fn new(survey: &str, parts: &[(String, &str)], alert: &str) -> Result<Compiled> {
        let mut jsons = Vec::new();
        let mut parsed = Vec::new();
        for (name, text) in parts {
            let json: Json = serde_json::from_str(text).map_err(|e| schema_error(survey, e))?;
            parsed.push((
                name.clone(),
                Schema::parse(&json).map_err(|e| schema_error(survey, e))?,
            ));
            jsons.push((name.clone(), json));
        }
        let mut alert: Json = serde_json::from_str(alert).map_err(|e| schema_error(survey, e))?;
        inline(&mut alert, &mut jsons);
        let alert = Schema::parse(&alert).map_err(|e| schema_error(survey, e))?;
        Ok(Compiled {
            alert,
            parts: parsed,
        })
    }

    /// The named part whose full name ends with `.name`.
    fn part(&self, survey: &str, name: &str) -> Result<&Schema> {
        self.parts
            .iter()
            .find(|(n, _)| n.rsplit('.').next() == Some(name))
            .map(|(_, s)| s)
            .ok_or_else(|| schema_error(survey, format!("no schema `{name}`")))
    }

    /// One alert record as an Avro container file.
    fn container(&self, alert: Value) -> Result<Vec<u8>> {
        let mut writer = Writer::new(&self.alert, Vec::new()).map_err(avro_error)?;
        writer.append_value(alert).map_err(avro_error)?;
        writer.into_inner().map_err(avro_error)
    }
}

/// Replaces the first use of each named type by its definition, so that one self-contained
/// schema can sit in a container file's header.
fn inline(node: &mut Json, parts: &mut Vec<(String, Json)>) {
    match node {
        Json::String(name) => {
            if let Some(i) = parts.iter().position(|(n, _)| n == name) {
                let (_, mut def) = parts.remove(i);
                inline(&mut def, parts);
                *node = def;
            }
        }
        Json::Array(items) => items.iter_mut().for_each(|x| inline(x, parts)),
        Json::Object(map) => {
            for key in ["type", "items", "fields"] {
                if let Some(x) = map.get_mut(key) {
                    inline(x, parts);
                }
            }
        }
        _ => {}
    }
}

/// A field's value for schema `schema`: a union takes its first non-null branch.
fn typed(schema: &Schema, value: Value) -> Value {
    if let Schema::Union(u) = schema {
        let variants = u.variants();
        let (i, branch) = variants
            .iter()
            .enumerate()
            .find(|(_, s)| !matches!(s, Schema::Null))
            .unwrap_or((0, &variants[0]));
        return Value::Union(i as u32, Box::new(typed(branch, value)));
    }
    match (schema, value) {
        (Schema::Float, Value::Double(x)) => Value::Float(x as f32),
        (Schema::Int, Value::Long(x)) => Value::Int(x as i32),
        (_, v) => v,
    }
}

/// The zero value of a schema: null for unions, 0 or "" otherwise.
fn zero(schema: &Schema) -> Value {
    match schema {
        Schema::Union(_) => Value::Union(0, Box::new(Value::Null)),
        Schema::Long => Value::Long(0),
        Schema::Int => Value::Int(0),
        Schema::Float => Value::Float(0.0),
        Schema::Double => Value::Double(0.0),
        Schema::Boolean => Value::Boolean(false),
        Schema::Array(_) => Value::Array(Vec::new()),
        _ => Value::String(String::new()),
    }
}

/// A record of `schema` with the given fields set and the others zero.
fn record(schema: &Schema, values: &[(&str, Value)]) -> Value {
    let Schema::Record(rec) = schema else {
        return Value::Null;
    };
    Value::Record(
        rec.fields
            .iter()
            .map(|f| {
                let v = values
                    .iter()
                    .find(|(n, _)| *n == f.name)
                    .map_or_else(|| zero(&f.schema), |(_, v)| typed(&f.schema, v.clone()));
                (f.name.clone(), v)
            })
            .collect(),
    )
}
