//! Rubin/LSST packets with the LSST 10.0 alert schema: the triggering `diaSource`, the history
//! as `prvDiaSources` and the non-detections as forced photometry (`prvDiaForcedSources`),
//! fluxes in nJy. Written as a container file (one alert), or as Rubin's Kafka stream sends
//! them: a Confluent-framed datum (byte 0, the schema registry id, the Avro datum).

use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;

use super::{avro_error, record, schema_error, Compiled, Packet};
use crate::alert::Result;
use crate::model::{Band, Detection, Unit};

const NAMESPACE: &str = "lsst.v10_0";

/// The named schemas the alert record uses, in the order they first appear in it.
const PARTS: [(&str, &str); 5] = [
    (
        "diaSource",
        include_str!("../../../data/schema/lsst-10.0/lsst.v10_0.diaSource.avsc"),
    ),
    (
        "diaForcedSource",
        include_str!("../../../data/schema/lsst-10.0/lsst.v10_0.diaForcedSource.avsc"),
    ),
    (
        "diaObject",
        include_str!("../../../data/schema/lsst-10.0/lsst.v10_0.diaObject.avsc"),
    ),
    (
        "ssSource",
        include_str!("../../../data/schema/lsst-10.0/lsst.v10_0.ssSource.avsc"),
    ),
    (
        "mpc_orbits",
        include_str!("../../../data/schema/lsst-10.0/lsst.v10_0.mpc_orbits.avsc"),
    ),
];
const ALERT: &str = include_str!("../../../data/schema/lsst-10.0/lsst.v10_0.alert.avsc");

const SURVEY: &str = "LSST";

/// AB magnitude of 1 nJy.
const NJY_ZERO_POINT: f64 = 31.4;

/// Encodes [`Packet`]s as Rubin alerts.
pub struct LsstWriter {
    schema: Compiled,
}

/// Flux in nJy of an AB magnitude.
fn njy(mag: f64) -> f64 {
    10f64.powf((NJY_ZERO_POINT - mag) / 2.5)
}

fn band_name(band: &Band) -> String {
    match band {
        Band::U => "u".into(),
        Band::G => "g".into(),
        Band::R => "r".into(),
        Band::I => "i".into(),
        Band::Z => "z".into(),
        Band::Y => "y".into(),
        Band::Other(name) => name.clone(),
    }
}

/// Fields every measurement row carries: time, band, position, visit.
fn common(mjd: f64, band: &Band, ra: f64, dec: f64) -> Vec<(&'static str, Value)> {
    vec![
        ("midpointMjdTai", Value::Double(mjd)),
        ("band", Value::String(band_name(band))),
        ("ra", Value::Double(ra)),
        ("dec", Value::Double(dec)),
        // One visit per 30 s exposure.
        ("visit", Value::Long((mjd * 2880.0) as i64)),
        ("timeProcessedMjdTai", Value::Double(mjd + 0.01)),
    ]
}

impl LsstWriter {
    pub fn new() -> Result<LsstWriter> {
        let parts: Vec<(String, &str)> = PARTS
            .iter()
            .map(|(name, text)| (format!("{NAMESPACE}.{name}"), *text))
            .collect();
        Ok(LsstWriter {
            schema: Compiled::new(SURVEY, &parts, ALERT)?,
        })
    }

    /// The schema texts a reader of framed datums needs (the alert and its parts).
    pub fn schema_texts() -> Vec<String> {
        PARTS
            .iter()
            .map(|(_, text)| text.to_string())
            .chain([ALERT.to_string()])
            .collect()
    }

    /// A `diaSource` row (of `schema`) of a detection given as a difference magnitude.
    fn source(schema: &Schema, d: &Detection, object: i64, p: &Packet) -> Value {
        let negative = matches!(d.unit, Unit::DiffMag { positive: false });
        let brightness = njy(d.value);
        let flux = if negative { -brightness } else { brightness };
        let error = brightness * d.error * std::f64::consts::LN_10 / 2.5;
        let mut fields = common(d.mjd, &d.band, d.ra.unwrap_or(p.ra), d.dec.unwrap_or(p.dec));
        fields.extend([
            ("diaSourceId", Value::Long(d.source_id.unwrap_or(p.candid))),
            ("diaObjectId", Value::Long(object)),
            ("psfFlux", Value::Double(flux)),
            ("psfFluxErr", Value::Double(error)),
            (
                "snr",
                Value::Double(flux.abs() / error.max(f64::MIN_POSITIVE)),
            ),
            ("isNegative", Value::Boolean(negative)),
        ]);
        record(schema, &fields)
    }

    /// The alert record of a packet.
    fn alert(&self, p: &Packet) -> Result<Value> {
        let object: i64 = p.object_id.parse().map_err(|_| {
            schema_error(
                SURVEY,
                format!(
                    "object id `{}` is not a diaObjectId (an integer)",
                    p.object_id
                ),
            )
        })?;
        let source_schema = self.schema.part(SURVEY, "diaSource")?;
        let forced_schema = self.schema.part(SURVEY, "diaForcedSource")?;
        let history = p
            .history
            .iter()
            .map(|d| Self::source(source_schema, d, object, p))
            .collect();
        // A non-detection is a forced measurement consistent with zero flux; the 5-sigma
        // limit gives its error.
        let forced = p
            .limits
            .iter()
            .enumerate()
            .map(|(k, l)| {
                let mut fields = common(l.mjd, &l.band, p.ra, p.dec);
                fields.extend([
                    (
                        "diaForcedSourceId",
                        Value::Long(p.candid.wrapping_mul(1024).wrapping_add(k as i64)),
                    ),
                    ("diaObjectId", Value::Long(object)),
                    ("psfFlux", Value::Double(0.0)),
                    ("psfFluxErr", Value::Double(njy(l.limit_mag) / 5.0)),
                ]);
                record(forced_schema, &fields)
            })
            .collect();
        let dia_object = record(
            self.schema.part(SURVEY, "diaObject")?,
            &[
                ("diaObjectId", Value::Long(object)),
                ("validityStartMjdTai", Value::Double(p.candidate.mjd)),
                ("ra", Value::Double(p.ra)),
                ("dec", Value::Double(p.dec)),
                ("nDiaSources", Value::Long(i64::from(p.detections_so_far))),
            ],
        );
        Ok(record(
            &self.schema.alert,
            &[
                ("diaSourceId", Value::Long(p.candid)),
                (
                    "diaSource",
                    Self::source(source_schema, &p.candidate, object, p),
                ),
                ("prvDiaSources", Value::Array(history)),
                ("prvDiaForcedSources", Value::Array(forced)),
                ("diaObject", dia_object),
            ],
        ))
    }

    /// One packet as an Avro container file holding one alert.
    pub fn write(&self, p: &Packet) -> Result<Vec<u8>> {
        self.schema.container(self.alert(p)?)
    }

    /// One packet as Rubin's Kafka stream carries it: byte 0, `schema_id` (big-endian), then
    /// the Avro datum, read with the schema the registry holds under that id.
    pub fn write_framed(&self, p: &Packet, schema_id: u32) -> Result<Vec<u8>> {
        let datum = GenericDatumWriter::builder(&self.schema.alert)
            .build()
            .map_err(avro_error)?
            .write_value_to_vec(self.alert(p)?)
            .map_err(avro_error)?;
        let mut framed = Vec::with_capacity(5 + datum.len());
        framed.push(0);
        framed.extend_from_slice(&schema_id.to_be_bytes());
        framed.extend_from_slice(&datum);
        Ok(framed)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::alert::{decode, AvroSchema, DecodeOptions};
    use crate::model::UpperLimit;

    fn packet() -> Packet {
        let d = |mjd: f64, band: Band, mag: f64, id: i64| Detection {
            source_id: Some(id),
            unit: Unit::DiffMag { positive: true },
            ..Detection::magnitude(mjd, band, mag, 0.05)
        };
        Packet {
            object_id: "144115188075855877".into(),
            candid: 3,
            ra: 150.25,
            dec: -12.5,
            candidate: d(61002.3, Band::R, 20.0, 3),
            history: vec![d(61000.3, Band::G, 21.0, 1), d(61001.3, Band::I, 20.5, 2)],
            limits: vec![UpperLimit {
                mjd: 60999.3,
                band: Band::G,
                limit_mag: 23.9,
            }],
            detections_so_far: 5,
        }
    }

    fn check(decoded: crate::alert::Decoded) {
        assert!(decoded.rejects.is_empty(), "{:?}", decoded.rejects);
        let a = &decoded.alerts[0];
        assert_eq!(a.object_id, "144115188075855877");
        assert_eq!(a.alert_id, Some(3));
        assert_eq!(a.survey, crate::model::Survey::Lsst);
        assert_eq!(a.detections.len(), 3);
        // Every detection so far, not only the history sent.
        assert_eq!(
            a.annotations.get("diaObject.nDiaSources"),
            Some(&crate::model::AnnotationValue::Number(5.0))
        );
        let trigger = a
            .detections
            .iter()
            .find(|d| d.source_id == Some(3))
            .unwrap();
        // 20 mag AB = 10^((31.4 - 20) / 2.5) nJy = 36,307.8 nJy, error 5% of it (0.05 mag).
        assert_eq!(trigger.band, Band::R);
        assert_eq!(trigger.unit, Unit::FluxNjy);
        assert!((trigger.value - 36_307.8).abs() < 0.1, "{}", trigger.value);
        assert!((trigger.error / trigger.value - 0.046_05).abs() < 1e-4);
        assert!((trigger.mjd - 61002.3).abs() < 1e-9);
        let bands: Vec<Band> = a.detections.iter().map(|d| d.band.clone()).collect();
        assert!(bands.contains(&Band::G) && bands.contains(&Band::I));
        // The non-detection: forced flux 0 with the 5-sigma limit of 23.9 mag as 5 errors.
        assert_eq!(a.forced.len(), 1);
        assert_eq!(a.forced[0].value, 0.0);
        assert!(
            (a.forced[0].error - 200.0).abs() < 0.01,
            "{}",
            a.forced[0].error
        );
    }

    #[test]
    fn container_packets_decode_to_what_was_written() {
        let bytes = LsstWriter::new().unwrap().write(&packet()).unwrap();
        check(decode("gen.avro", &bytes, &DecodeOptions::default()));
    }

    #[test]
    fn framed_packets_decode_with_the_registry_schema_and_not_without() {
        let bytes = LsstWriter::new()
            .unwrap()
            .write_framed(&packet(), 1000)
            .unwrap();
        assert_eq!(&bytes[..5], &[0, 0, 0, 3, 232]);
        let without = decode("gen.avro", &bytes, &DecodeOptions::default());
        assert!(without.alerts.is_empty());
        assert!(
            matches!(
                without.rejects[0].error,
                crate::alert::DecodeError::NeedsSchema { schema_id: 1000 }
            ),
            "{:?}",
            without.rejects
        );
        let schema = AvroSchema::parse(&LsstWriter::schema_texts()).unwrap();
        let opts = DecodeOptions {
            confluent_schema: Some(Arc::new(schema)),
            ..Default::default()
        };
        check(decode("gen.avro", &bytes, &opts));
    }

    #[test]
    fn an_object_id_that_is_not_a_number_is_refused() {
        let p = Packet {
            object_id: "ZTF26aaaaaab".into(),
            ..packet()
        };
        let err = LsstWriter::new().unwrap().write(&p).unwrap_err();
        assert!(err.to_string().contains("not a diaObjectId"), "{err}");
    }
}
