//! ZTF alerts (schemas 1.3 to 4.x, and Fink's enriched ZTF records) to [`Alert`].
//!
//! Field conventions: `candidate.jd` (JD), `fid` (1 = g, 2 = r, 3 = i), `magpsf`/`sigmapsf`
//! (difference-image PSF magnitude), `isdiffpos` ('t'/'1' when the difference is positive).
//! `prv_candidates` rows without a finite `magpsf` are upper limits (`diffmaglim`). Numeric
//! fields are read from any numeric type (Spark writes nested integers as doubles).
//! Schema 4.x adds `fp_hists`, forced photometry in DN (`forcediffimflux`).

use apache_avro::types::Value;

use super::value::{
    collect_annotations, copy_context, f64_field, field, i64_field, items, str_field,
};
use super::{DecodeError, Result};
use crate::model::{Alert, Band, Detection, Survey, Unit, UpperLimit, JD_TO_MJD};

/// Top-level fields of the ZTF schema and Fink's bookkeeping columns: not annotations.
const NOT_ANNOTATIONS: &[&str] = &[
    "schemavsn",
    "publisher",
    "objectId",
    "candid",
    "candidate",
    "prv_candidates",
    "fp_hists",
    "timestamp",
    "topic",
    "hour",
    "day",
    "month",
    "year",
    "fink_broker_version",
    "fink_science_version",
    "brokerEndProcessTimestamp",
    "brokerStartProcessTimestamp",
    "brokerIngestTimestamp",
];

/// The candidate fields kept as `candidate.<name>` annotations for the embedding's context
/// group: nearest Pan-STARRS1 sources (star/galaxy score, distance, r magnitude), the nearest
/// source in the reference image (distance in pixels, magnitude), the nearest Gaia source,
/// the detection history count, the real/bogus scores and the nearest known solar-system
/// object.
pub const CONTEXT_FIELDS: &[&str] = &[
    "sgscore1",
    "distpsnr1",
    "srmag1",
    "sgscore2",
    "distpsnr2",
    "distnr",
    "magnr",
    "neargaia",
    "maggaia",
    "ndethist",
    "drb",
    "rb",
    "ssdistnr",
];

/// Missing-value sentinel of ZTF forced photometry.
const FP_MISSING: f64 = -99999.0;

/// Decodes one ZTF alert record.
pub fn decode(record: &Value) -> Result<Alert> {
    let object_id = str_field(record, &["objectId"])
        .filter(|s| !s.is_empty())
        .ok_or(DecodeError::MissingField { field: "objectId" })?
        .to_string();
    let candidate =
        field(record, "candidate").ok_or(DecodeError::MissingField { field: "candidate" })?;
    let alert_id = i64_field(record, &["candid"]).or_else(|| i64_field(candidate, &["candid"]));
    let trigger = detection(candidate, "candidate")?;
    let mjd = trigger.mjd;
    let mut detections = vec![trigger];
    let mut upper_limits = Vec::new();
    for prv in items(record, &["prv_candidates"]) {
        // History rows that do not parse are not measurements; they never reject the alert.
        // A row with a magnitude is a detection, whatever the types of its other columns.
        let is_detection = f64_field(prv, &["magpsf"]).is_some_and(f64::is_finite);
        if is_detection {
            if let Ok(d) = detection(prv, "prv_candidates") {
                detections.push(d);
            }
        } else if let Some(l) = upper_limit(prv) {
            upper_limits.push(l);
        }
    }
    let forced = items(record, &["fp_hists"])
        .iter()
        .filter_map(forced_point)
        .collect();
    let mut annotations = collect_annotations(record, NOT_ANNOTATIONS);
    copy_context(&mut annotations, record, "candidate", CONTEXT_FIELDS);
    Ok(Alert {
        object_id,
        alert_id,
        survey: Survey::Ztf,
        mjd,
        ra: f64_field(candidate, &["ra"]),
        dec: f64_field(candidate, &["dec"]),
        detections,
        forced,
        upper_limits,
        annotations,
    })
}

fn time_mjd(row: &Value, field_name: &'static str) -> Result<f64> {
    let jd = f64_field(row, &["jd"]).ok_or(DecodeError::MissingField { field: field_name })?;
    if !jd.is_finite() || jd <= JD_TO_MJD {
        return Err(DecodeError::InvalidValue {
            field: field_name,
            reason: format!("jd {jd} is not a Julian date"),
        });
    }
    Ok(jd - JD_TO_MJD)
}

fn band(row: &Value, field_name: &'static str) -> Result<Band> {
    let fid = i64_field(row, &["fid"]).ok_or(DecodeError::MissingField { field: field_name })?;
    Band::from_ztf_fid(fid).ok_or_else(|| DecodeError::InvalidValue {
        field: field_name,
        reason: format!("fid {fid} is not 1, 2 or 3"),
    })
}

fn detection(row: &Value, where_: &'static str) -> Result<Detection> {
    let mjd = time_mjd(row, where_)?;
    let band = band(row, where_)?;
    let mag = f64_field(row, &["magpsf"]);
    let err = f64_field(row, &["sigmapsf"]);
    let (value, error) = match (mag, err) {
        (Some(m), Some(e)) if m.is_finite() && e.is_finite() && e >= 0.0 => (m, e),
        _ => {
            return Err(DecodeError::InvalidValue {
                field: where_,
                reason: format!("magpsf {mag:?} / sigmapsf {err:?} is missing or not finite"),
            })
        }
    };
    let positive = !matches!(str_field(row, &["isdiffpos"]), Some("f" | "0"));
    Ok(Detection {
        mjd,
        band,
        value,
        error,
        unit: Unit::DiffMag { positive },
        source_id: i64_field(row, &["candid"]),
        ra: f64_field(row, &["ra"]),
        dec: f64_field(row, &["dec"]),
    })
}

fn upper_limit(row: &Value) -> Option<UpperLimit> {
    let limit_mag = f64_field(row, &["diffmaglim"]).filter(|x| x.is_finite())?;
    Some(UpperLimit {
        mjd: time_mjd(row, "prv_candidates").ok()?,
        band: band(row, "prv_candidates").ok()?,
        limit_mag,
    })
}

fn forced_point(row: &Value) -> Option<Detection> {
    let flux = f64_field(row, &["forcediffimflux"])?;
    let err = f64_field(row, &["forcediffimfluxunc"])?;
    if !flux.is_finite() || !err.is_finite() || flux == FP_MISSING || err == FP_MISSING || err < 0.0
    {
        return None;
    }
    Some(Detection {
        mjd: time_mjd(row, "fp_hists").ok()?,
        band: band(row, "fp_hists").ok()?,
        value: flux,
        error: err,
        unit: Unit::FluxDn,
        source_id: None,
        ra: None,
        dec: None,
    })
}
