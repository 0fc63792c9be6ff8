//! Writes ZTF alert packets: Avro object container files with ZTF's 4.02 alert schema (the
//! real schema files of `data/schema/ztf-4.02`, compiled in), one alert per file, as ZTF
//! distributes them. Used by the stream generator so benchmarks exercise the real decoder.
//! Pure: bytes out, no I/O.

use apache_avro::types::Value;
use apache_avro::{Schema, Writer};
use serde_json::Value as Json;

use super::{DecodeError, Result};
use crate::model::{Band, Detection, Unit, UpperLimit};

const SCHEMA_VERSION: &str = "4.02";
const NAMESPACE: &str = "ztf.alert";

/// The named schemas the alert record uses, in the order they first appear in it.
const PARTS: [(&str, &str); 4] = [
    (
        "candidate",
        include_str!("../../data/schema/ztf-4.02/candidate.avsc"),
    ),
    (
        "prv_candidate",
        include_str!("../../data/schema/ztf-4.02/prv_candidate.avsc"),
    ),
    (
        "fp_hist",
        include_str!("../../data/schema/ztf-4.02/fp_hist.avsc"),
    ),
    (
        "cutout",
        include_str!("../../data/schema/ztf-4.02/cutout.avsc"),
    ),
];
const ALERT: &str = include_str!("../../data/schema/ztf-4.02/alert.avsc");

/// One alert to write: the triggering detection and the history a packet carries.
#[derive(Debug, Clone, PartialEq)]
pub struct ZtfPacket {
    pub object_id: String,
    pub candid: i64,
    pub ra: f64,
    pub dec: f64,
    /// The triggering detection (a difference magnitude).
    pub candidate: Detection,
    /// Earlier detections (ZTF sends those of the previous 30 days).
    pub history: Vec<Detection>,
    /// Earlier non-detections.
    pub limits: Vec<UpperLimit>,
}

/// Encodes [`ZtfPacket`]s.
pub struct ZtfWriter {
    schema: Schema,
}

fn schema_error(detail: impl std::fmt::Display) -> DecodeError {
    DecodeError::Avro {
        detail: format!("ZTF writer schema: {detail}"),
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

fn fid(band: &Band) -> i64 {
    match band {
        Band::G => 1,
        Band::R => 2,
        Band::I => 3,
        _ => 0,
    }
}

fn detection_fields(d: &Detection, ra: f64, dec: f64) -> Vec<(&'static str, Value)> {
    let positive = !matches!(d.unit, Unit::DiffMag { positive: false });
    vec![
        ("jd", Value::Double(d.mjd + 2_400_000.5)),
        ("fid", Value::Long(fid(&d.band))),
        ("magpsf", Value::Double(d.value)),
        ("sigmapsf", Value::Double(d.error)),
        (
            "isdiffpos",
            Value::String(if positive { "t" } else { "f" }.into()),
        ),
        ("candid", Value::Long(d.source_id.unwrap_or(0))),
        ("ra", Value::Double(ra)),
        ("dec", Value::Double(dec)),
        ("programid", Value::Long(1)),
    ]
}

impl ZtfWriter {
    pub fn new() -> Result<ZtfWriter> {
        let mut parts = Vec::new();
        for (name, text) in PARTS {
            let json: Json = serde_json::from_str(text).map_err(schema_error)?;
            parts.push((format!("{NAMESPACE}.{name}"), json));
        }
        let mut alert: Json = serde_json::from_str(ALERT).map_err(schema_error)?;
        inline(&mut alert, &mut parts);
        let schema = Schema::parse(&alert).map_err(schema_error)?;
        Ok(ZtfWriter { schema })
    }

    fn field(&self, name: &str) -> Result<&Schema> {
        let Schema::Record(rec) = &self.schema else {
            return Err(schema_error("the alert schema is not a record"));
        };
        rec.fields
            .iter()
            .find(|f| f.name == name)
            .map(|f| &f.schema)
            .ok_or_else(|| schema_error(format!("no field `{name}`")))
    }

    /// The prv_candidate record schema (inside the union's array).
    fn prv_schema(&self) -> Result<&Schema> {
        if let Schema::Union(u) = self.field("prv_candidates")? {
            for v in u.variants() {
                if let Schema::Array(a) = v {
                    return Ok(&a.items);
                }
            }
        }
        Err(schema_error("prv_candidates is not a nullable array"))
    }

    /// One packet as ZTF sends it: an Avro container file holding one alert.
    pub fn write(&self, p: &ZtfPacket) -> Result<Vec<u8>> {
        let err = |e: apache_avro::Error| DecodeError::Avro {
            detail: e.to_string(),
        };
        let candidate_schema = self.field("candidate")?;
        let prv_schema = self.prv_schema()?;
        let mut fields = detection_fields(&p.candidate, p.ra, p.dec);
        fields.push(("candid", Value::Long(p.candid)));
        let candidate = record(candidate_schema, &fields);
        let mut prv: Vec<Value> = p
            .history
            .iter()
            .map(|d| record(prv_schema, &detection_fields(d, p.ra, p.dec)))
            .collect();
        prv.extend(p.limits.iter().map(|l| {
            record(
                prv_schema,
                &[
                    ("jd", Value::Double(l.mjd + 2_400_000.5)),
                    ("fid", Value::Long(fid(&l.band))),
                    ("diffmaglim", Value::Double(l.limit_mag)),
                    ("programid", Value::Long(1)),
                ],
            )
        }));
        let alert = record(
            &self.schema,
            &[
                ("schemavsn", Value::String(SCHEMA_VERSION.into())),
                ("publisher", Value::String("asterism generate".into())),
                ("objectId", Value::String(p.object_id.clone())),
                ("candid", Value::Long(p.candid)),
                ("candidate", candidate),
                ("prv_candidates", Value::Array(prv)),
            ],
        );
        let mut writer = Writer::new(&self.schema, Vec::new()).map_err(err)?;
        writer.append_value(alert).map_err(err)?;
        writer.into_inner().map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{decode, DecodeOptions};

    #[test]
    fn written_packets_decode_to_what_was_written() {
        let d = |mjd: f64, band: Band, mag: f64, candid: i64| Detection {
            source_id: Some(candid),
            unit: Unit::DiffMag { positive: true },
            ..Detection::magnitude(mjd, band, mag, 0.05)
        };
        let packet = ZtfPacket {
            object_id: "ZTF26aaaaaab".into(),
            candid: 3,
            ra: 150.25,
            dec: -12.5,
            candidate: d(61002.3, Band::R, 18.25, 3),
            history: vec![d(61000.3, Band::G, 18.5, 1), d(61001.3, Band::R, 18.375, 2)],
            limits: vec![UpperLimit {
                mjd: 60999.3,
                band: Band::G,
                limit_mag: 20.5,
            }],
        };
        let bytes = ZtfWriter::new().unwrap().write(&packet).unwrap();
        let out = decode("gen.avro", &bytes, &DecodeOptions::default());
        assert!(out.rejects.is_empty(), "{:?}", out.rejects);
        let a = &out.alerts[0];
        assert_eq!(
            (a.object_id.as_str(), a.alert_id),
            ("ZTF26aaaaaab", Some(3))
        );
        assert_eq!(a.detections.len(), 3);
        assert_eq!(a.upper_limits.len(), 1);
        let c = a
            .detections
            .iter()
            .find(|x| x.source_id == Some(3))
            .unwrap();
        assert_eq!((c.band.clone(), c.value), (Band::R, 18.25));
        assert!((c.mjd - 61002.3).abs() < 1e-6);
        assert_eq!((a.ra, a.dec), (Some(150.25), Some(-12.5)));
    }
}
