//! Lightcurve tables (CSV or Parquet, one measurement per row) to [`Alert`]s, one per object.
//!
//! Column names are matched case-sensitively against the spellings data releases use:
//! time `time|mjd|MJD|jd|JD`, band `band|filter|BAND|passband|filterName|fid`, magnitude
//! `mag|magpsf|MAG` with `magerr|sigmapsf|mag_err|e_mag|MAGERR`, or flux
//! `flux|FLUXCAL|psfFlux|FLUX` with `fluxerr|FLUXCALERR|flux_err|psfFluxErr|FLUXERR`. The object
//! id comes from `objectId|oid|object_id|SNID|diaObjectId` or, without one, from the file name.
//! In a table with a limiting-magnitude column (`diffmaglim|limiting_mag|maglim`), a row
//! without a measurement is a non-detection (ALeRCE's `non_detections`): an upper limit.

use std::collections::BTreeMap;

use apache_avro::types::Value;

use super::value::{as_bool, field, field_any, plain};
use super::{DecodeError, Reject};
use crate::model::{Alert, Band, Detection, Survey, Unit, UpperLimit, JD_TO_MJD};

const ID: &[&str] = &["objectId", "oid", "object_id", "SNID", "diaObjectId"];
const TIME: &[&str] = &["time", "mjd", "MJD", "jd", "JD"];
const BAND: &[&str] = &["band", "filter", "BAND", "passband", "filterName", "fid"];
const MAG: &[&str] = &["mag", "magpsf", "MAG"];
const MAG_ERR: &[&str] = &["magerr", "sigmapsf", "mag_err", "e_mag", "MAGERR"];
const FLUX: &[&str] = &["flux", "FLUXCAL", "psfFlux", "FLUX"];
const FLUX_ERR: &[&str] = &["fluxerr", "FLUXCALERR", "flux_err", "psfFluxErr", "FLUXERR"];
const LIMIT: &[&str] = &["diffmaglim", "limiting_mag", "maglim"];

/// Which columns a table has; checked once from its header.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    has_mag: bool,
    has_limit: bool,
}

/// Checks a header; a table without a time, band and magnitude or flux column is not a
/// lightcurve table.
pub fn layout(columns: &[&str]) -> Result<Layout, DecodeError> {
    let has = |names: &[&str]| names.iter().any(|n| columns.contains(n));
    let missing = if !has(TIME) {
        Some("time (time, mjd or jd)")
    } else if !has(BAND) {
        Some("band (band, filter or fid)")
    } else if !((has(MAG) && has(MAG_ERR)) || (has(FLUX) && has(FLUX_ERR)) || has(LIMIT)) {
        Some("mag and magerr, flux and fluxerr, or diffmaglim")
    } else {
        None
    };
    match missing {
        Some(what) => Err(DecodeError::NotALightcurveTable {
            missing: what.to_string(),
            columns: columns.join(","),
        }),
        None => {
            let has_mag = has(MAG) && has(MAG_ERR);
            Ok(Layout {
                has_mag: has_mag || !(has(FLUX) && has(FLUX_ERR)),
                has_limit: has(LIMIT),
            })
        }
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

/// A row's time (MJD) and band.
fn row_epoch(row: &Value) -> Result<(f64, Band), String> {
    let (column, time) = TIME
        .iter()
        .find_map(|n| number(row, &[n]).map(|t| (*n, t)))
        .ok_or("time is missing or not a number")?;
    if !time.is_finite() {
        return Err(format!("time {time} is not finite"));
    }
    let is_jd = column.eq_ignore_ascii_case("jd") || time > JD_TO_MJD;
    let mjd = if is_jd { time - JD_TO_MJD } else { time };
    let band = if let Some(fid) = number(row, &["fid"]) {
        Band::from_ztf_fid(fid as i64).ok_or(format!("fid {fid} is not 1, 2 or 3"))?
    } else {
        match field_any(row, BAND).map(plain) {
            Some(Value::String(s)) if !s.trim().is_empty() => Band::parse(s),
            _ => return Err("band is missing".into()),
        }
    };
    Ok((mjd, band))
}

/// A non-detection row: the object id and the limit.
fn row_limit(row: &Value) -> Result<(String, UpperLimit), String> {
    let (mjd, band) = row_epoch(row)?;
    let limit_mag = number(row, LIMIT)
        .filter(|x| x.is_finite())
        .ok_or("diffmaglim is missing or not a number")?;
    let id = text(row, ID).unwrap_or_default();
    Ok((
        id,
        UpperLimit {
            mjd,
            band,
            limit_mag,
        },
    ))
}

fn row_detection(row: &Value, layout: Layout) -> Result<(String, Detection), String> {
    let (mjd, band) = row_epoch(row)?;
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

/// ZTF for ZTF object names, else a catalogue.
fn survey_of(object_id: &str) -> Survey {
    if object_id.starts_with("ZTF") {
        Survey::Ztf
    } else {
        Survey::External
    }
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
    let mut limits: BTreeMap<String, Vec<UpperLimit>> = BTreeMap::new();
    // The row's object (the default one when the table has no id), if the store can key it.
    let keyable = |id: String| {
        let id = if id.is_empty() {
            default_id.to_string()
        } else {
            id
        };
        super::check_object_id(&id).map(|()| id)
    };
    for (location, row) in rows {
        // A row without a measurement but with a limiting magnitude is a non-detection.
        let error = match row_detection(&row, layout) {
            Ok((id, d)) => {
                match keyable(id) {
                    Ok(id) => objects.entry(id).or_default().push(d),
                    Err(error) => rejects.push(Reject {
                        source: location,
                        error,
                    }),
                }
                continue;
            }
            Err(e) => e,
        };
        match row_limit(&row).map(|(id, l)| (keyable(id), l)) {
            Ok((Ok(id), l)) if layout.has_limit => limits.entry(id).or_default().push(l),
            Ok((Err(error), _)) if layout.has_limit => rejects.push(Reject {
                source: location,
                error,
            }),
            _ => rejects.push(Reject {
                source: location,
                error: DecodeError::BadRow { reason: error },
            }),
        }
    }
    for (object_id, detections) in objects {
        let survey = survey_of(&object_id);
        let mut alert = Alert::from_detections(object_id, survey, detections);
        alert.upper_limits = limits.remove(&alert.object_id).unwrap_or_default();
        alerts.push(alert);
    }
    for (object_id, upper_limits) in limits {
        let survey = survey_of(&object_id);
        let mut alert = Alert::from_detections(object_id, survey, Vec::new());
        alert.mjd = upper_limits
            .iter()
            .map(|l| l.mjd)
            .fold(f64::NEG_INFINITY, f64::max);
        alert.upper_limits = upper_limits;
        alerts.push(alert);
    }
}
