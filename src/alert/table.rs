//! Lightcurve tables (CSV or Parquet, one measurement per row) to [`Alert`]s, one per object.
//!
//! Column names are matched case-sensitively against the spellings data releases use:
//! time `time|mjd|MJD|jd|JD`, band `band|filter|BAND|passband|filterName|fid`, magnitude
//! `mag|magpsf|MAG` with `magerr|sigmapsf|mag_err|e_mag|MAGERR`, or flux
//! `flux|FLUXCAL|psfFlux|FLUX` with `fluxerr|FLUXCALERR|flux_err|psfFluxErr|FLUXERR`. The object
//! id comes from `objectId|oid|object_id|SNID|diaObjectId` or, without one, from the file name.

use std::collections::BTreeMap;

use apache_avro::types::Value;

use super::value::{as_bool, field, field_any, plain};
use super::{DecodeError, Reject};
use crate::model::{Alert, Band, Detection, Survey, Unit, JD_TO_MJD};

const ID: &[&str] = &["objectId", "oid", "object_id", "SNID", "diaObjectId"];
const TIME: &[&str] = &["time", "mjd", "MJD", "jd", "JD"];
const BAND: &[&str] = &["band", "filter", "BAND", "passband", "filterName", "fid"];
const MAG: &[&str] = &["mag", "magpsf", "MAG"];
const MAG_ERR: &[&str] = &["magerr", "sigmapsf", "mag_err", "e_mag", "MAGERR"];
const FLUX: &[&str] = &["flux", "FLUXCAL", "psfFlux", "FLUX"];
const FLUX_ERR: &[&str] = &["fluxerr", "FLUXCALERR", "flux_err", "psfFluxErr", "FLUXERR"];

/// Which columns a table has; checked once from its header.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    has_mag: bool,
}

/// Checks a header; a table without a time, band and magnitude or flux column is not a
/// lightcurve table.
pub fn layout(columns: &[&str]) -> Result<Layout, DecodeError> {
    let has = |names: &[&str]| names.iter().any(|n| columns.contains(n));
    let missing = if !has(TIME) {
        Some("time (time, mjd or jd)")
    } else if !has(BAND) {
        Some("band (band, filter or fid)")
    } else if !((has(MAG) && has(MAG_ERR)) || (has(FLUX) && has(FLUX_ERR))) {
        Some("mag and magerr, or flux and fluxerr")
    } else {
        None
    };
    match missing {
        Some(what) => Err(DecodeError::NotALightcurveTable {
            missing: what.to_string(),
            columns: columns.join(","),
        }),
        None => Ok(Layout {
            has_mag: has(MAG) && has(MAG_ERR),
        }),
    }
}

/// A number from a numeric or text cell.
fn number(row: &Value, names: &[&str]) -> Option<f64> {
    match field_any(row, names)? {
        Value::String(s) => s.trim().parse().ok(),
        other => super::value::as_f64(other),
    }
}

fn text(row: &Value, names: &[&str]) -> Option<String> {
    match field_any(row, names)? {
        Value::String(s) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
        Value::Int(i) => Some(i.to_string()),
        Value::Long(i) => Some(i.to_string()),
        _ => None,
    }
}

fn row_detection(row: &Value, layout: Layout) -> Result<(String, Detection), String> {
    let time = number(row, TIME).ok_or("time is missing or not a number")?;
    if !time.is_finite() {
        return Err(format!("time {time} is not finite"));
    }
    let is_jd = TIME[3..].iter().any(|n| field(row, n).is_some()) || time > JD_TO_MJD;
    let mjd = if is_jd { time - JD_TO_MJD } else { time };
    let band = match field_any(row, BAND).map(plain) {
        Some(Value::String(s)) if !s.trim().is_empty() => Band::parse(s),
        Some(v @ (Value::Int(_) | Value::Long(_))) => {
            let fid = super::value::as_i64(v).unwrap_or_default();
            Band::from_ztf_fid(fid).ok_or(format!("fid {fid} is not 1, 2 or 3"))?
        }
        _ => return Err("band is missing".into()),
    };
    let (names, err_names) = if layout.has_mag {
        (MAG, MAG_ERR)
    } else {
        (FLUX, FLUX_ERR)
    };
    let value = number(row, names).ok_or(format!("{} is missing or not a number", names[0]))?;
    let error =
        number(row, err_names).ok_or(format!("{} is missing or not a number", err_names[0]))?;
    if !value.is_finite() || !error.is_finite() || error < 0.0 {
        return Err(format!(
            "{} {value} / {} {error} is not a finite measurement",
            names[0], err_names[0]
        ));
    }
    let unit = match (layout.has_mag, field(row, "isdiffpos").and_then(as_bool)) {
        (true, Some(positive)) => Unit::DiffMag { positive },
        (true, None) => Unit::Mag,
        (false, _) => Unit::Flux,
    };
    let id = text(row, ID).unwrap_or_default();
    Ok((
        id,
        Detection {
            mjd,
            band,
            value,
            error,
            unit,
            source_id: None,
            ra: number(row, &["ra", "RA"]),
            dec: number(row, &["dec", "DEC", "Dec"]),
        },
    ))
}

/// Groups table rows into one alert per object. `rows` yields (location, row); `default_id`
/// names the object when the table has no id column.
pub fn decode_rows(
    rows: impl Iterator<Item = (String, Value)>,
    layout: Layout,
    default_id: &str,
    alerts: &mut Vec<Alert>,
    rejects: &mut Vec<Reject>,
) {
    let mut objects: BTreeMap<String, Vec<Detection>> = BTreeMap::new();
    for (location, row) in rows {
        match row_detection(&row, layout) {
            Ok((id, d)) => {
                let id = if id.is_empty() {
                    default_id.to_string()
                } else {
                    id
                };
                objects.entry(id).or_default().push(d);
            }
            Err(reason) => rejects.push(Reject {
                source: location,
                error: DecodeError::BadRow { reason },
            }),
        }
    }
    for (object_id, detections) in objects {
        let survey = if object_id.starts_with("ZTF") {
            Survey::Ztf
        } else {
            Survey::External
        };
        alerts.push(Alert::from_detections(object_id, survey, detections));
    }
}
