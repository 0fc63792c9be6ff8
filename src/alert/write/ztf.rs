//! ZTF packets: Avro object container files with ZTF's 4.02 alert schema, one alert per file,
//! as ZTF distributes them.

use apache_avro::types::Value;

use super::{record, Compiled, Packet};
use crate::alert::Result;
use crate::model::{Band, Detection, Unit};

const SCHEMA_VERSION: &str = "4.02";
const NAMESPACE: &str = "ztf.alert";

/// The named schemas the alert record uses, in the order they first appear in it.
const PARTS: [(&str, &str); 4] = [
    (
        "candidate",
        include_str!("../../../data/schema/ztf-4.02/candidate.avsc"),
    ),
    (
        "prv_candidate",
        include_str!("../../../data/schema/ztf-4.02/prv_candidate.avsc"),
    ),
    (
        "fp_hist",
        include_str!("../../../data/schema/ztf-4.02/fp_hist.avsc"),
    ),
    (
        "cutout",
        include_str!("../../../data/schema/ztf-4.02/cutout.avsc"),
    ),
];
const ALERT: &str = include_str!("../../../data/schema/ztf-4.02/alert.avsc");

const SURVEY: &str = "ZTF";

/// Encodes [`Packet`]s as ZTF alerts.
pub struct ZtfWriter {
    schema: Compiled,
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
        let parts: Vec<(String, &str)> = PARTS
            .iter()
            .map(|(name, text)| (format!("{NAMESPACE}.{name}"), *text))
            .collect();
        Ok(ZtfWriter {
            schema: Compiled::new(SURVEY, &parts, ALERT)?,
        })
    }

    /// One packet as ZTF sends it: an Avro container file holding one alert.
    pub fn write(&self, p: &Packet) -> Result<Vec<u8>> {
        let candidate_schema = self.schema.part(SURVEY, "candidate")?;
        let prv_schema = self.schema.part(SURVEY, "prv_candidate")?;
        let mut fields = detection_fields(&p.candidate, p.ra, p.dec);
        fields.push(("candid", Value::Long(p.candid)));
        let ndethist = i32::try_from(p.detections_so_far).unwrap_or(i32::MAX);
        fields.push(("ndethist", Value::Int(ndethist)));
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
            &self.schema.alert,
            &[
                ("schemavsn", Value::String(SCHEMA_VERSION.into())),
                ("publisher", Value::String("asterism generate".into())),
                ("objectId", Value::String(p.object_id.clone())),
                ("candid", Value::Long(p.candid)),
                ("candidate", candidate),
                ("prv_candidates", Value::Array(prv)),
            ],
        );
        self.schema.container(alert)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{decode, DecodeOptions};
    use crate::model::UpperLimit;

    #[test]
    fn written_packets_decode_to_what_was_written() {
        let d = |mjd: f64, band: Band, mag: f64, candid: i64| Detection {
            source_id: Some(candid),
            unit: Unit::DiffMag { positive: true },
            ..Detection::magnitude(mjd, band, mag, 0.05)
        };
        let packet = Packet {
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
            detections_so_far: 7,
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
        // The count of every detection so far, not only the history sent.
        assert_eq!(
            a.annotations.get("candidate.ndethist"),
            Some(&crate::model::AnnotationValue::Number(7.0))
        );
    }
}
