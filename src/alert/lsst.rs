//! Rubin/LSST alerts (schemas 3.0 to 11.0, ELAsTiCC, Fink-enriched) to [`Alert`].
//!
//! Field conventions: `diaSource.midpointMjdTai` (`midPointTai` before 7.0) is the time in MJD
//! (TAI), `band` (`filterName` before 7.0) the filter, `psfFlux`/`psfFluxErr` (`psFlux` before)
//! the difference-image flux in nJy. The history is in `prvDiaSources` and the forced photometry
//! in `prvDiaForcedSources`. Objects are keyed by `diaObjectId`; a source linked only to a
//! Solar System object is keyed `sso:<ssObjectId>`.

use apache_avro::types::Value;

use super::value::{
    collect_annotations, copy_context, f64_field, field, i64_field, items, str_field,
};
use super::{DecodeError, Result};
use crate::model::{Alert, Band, Detection, Survey, Unit};

/// Top-level fields of the LSST schema and Fink's bookkeeping columns: not annotations.
const NOT_ANNOTATIONS: &[&str] = &[
    "alertId",
    "diaSourceId",
    "observation_reason",
    "target_name",
    "diaSource",
    "prvDiaSources",
    "prvDiaForcedSources",
    "prvDiaNondetectionLimits",
    "diaObject",
    "ssSource",
    "ssObject",
    "mpc_orbits",
    "brokerIngestMjd",
    "lsst_schema_version",
    "brokerStartProcessTimestamp",
    "brokerEndProcessTimestamp",
    "fink_broker_version",
    "fink_science_version",
    "publisher",
    "lc_features",
    "misc",
    "timestamp",
    "year",
    "month",
    "day",
];

/// The diaSource fields kept as `diaSource.<name>` annotations for the embedding's context
/// group: extendedness (0 point-like, 1 extended), the real/bogus reliability and the flux of
/// the template at the source (nJy).
pub const SOURCE_CONTEXT_FIELDS: &[&str] = &["extendedness", "reliability", "templateFlux"];

/// The diaObject fields kept as `diaObject.<name>` annotations: the detection count and the
/// distance to the nearest catalogued object (arcsec; schemas 3.0 to 7.x).
pub const OBJECT_CONTEXT_FIELDS: &[&str] = &["nDiaSources", "nearbyObj1Dist"];

const TIME: &[&str] = &["midpointMjdTai", "midPointTai", "midpointMjd"];
const BAND: &[&str] = &["band", "filterName"];
const FLUX: &[&str] = &["psfFlux", "psFlux"];
const FLUX_ERR: &[&str] = &["psfFluxErr", "psFluxErr"];

/// Decodes one LSST alert record.
pub fn decode(record: &Value) -> Result<Alert> {
    let source =
        field(record, "diaSource").ok_or(DecodeError::MissingField { field: "diaSource" })?;
    let object_id = object_id(record, source)?;
    let trigger = measurement(source, "diaSource")?;
    let mut detections = vec![trigger.clone()];
    detections.extend(
        items(record, &["prvDiaSources"])
            .iter()
            .filter_map(|s| measurement(s, "prvDiaSources").ok()),
    );
    let forced = items(record, &["prvDiaForcedSources"])
        .iter()
        .filter_map(|s| measurement(s, "prvDiaForcedSources").ok())
        .collect();
    let mut annotations = collect_annotations(record, NOT_ANNOTATIONS);
    copy_context(&mut annotations, record, "diaSource", SOURCE_CONTEXT_FIELDS);
    copy_context(&mut annotations, record, "diaObject", OBJECT_CONTEXT_FIELDS);
    Ok(Alert {
        object_id,
        alert_id: i64_field(record, &["alertId", "diaSourceId"]).or(trigger.source_id),
        survey: Survey::Lsst,
        mjd: trigger.mjd,
        ra: trigger.ra,
        dec: trigger.dec,
        detections,
        forced,
        upper_limits: Vec::new(),
        annotations,
    })
}

fn object_id(record: &Value, source: &Value) -> Result<String> {
    let dia = i64_field(source, &["diaObjectId"])
        .or_else(|| field(record, "diaObject").and_then(|o| i64_field(o, &["diaObjectId"])))
        .filter(|id| *id != 0);
    if let Some(id) = dia {
        return Ok(id.to_string());
    }
    let sso = i64_field(source, &["ssObjectId"]).filter(|id| *id != 0);
    sso.map(|id| format!("sso:{id}"))
        .ok_or(DecodeError::MissingField {
            field: "diaSource.diaObjectId",
        })
}

fn measurement(row: &Value, where_: &'static str) -> Result<Detection> {
    let mjd = f64_field(row, TIME)
        .filter(|t| t.is_finite())
        .ok_or(DecodeError::MissingField { field: where_ })?;
    let band = str_field(row, BAND)
        .map(Band::parse)
        .ok_or(DecodeError::MissingField { field: where_ })?;
    let flux = f64_field(row, FLUX);
    let err = f64_field(row, FLUX_ERR);
    let (value, error) = match (flux, err) {
        (Some(f), Some(e)) if f.is_finite() && e.is_finite() && e >= 0.0 => (f, e),
        _ => {
            return Err(DecodeError::InvalidValue {
                field: where_,
                reason: format!("psfFlux {flux:?} / psfFluxErr {err:?} is missing or not finite"),
            })
        }
    };
    Ok(Detection {
        mjd,
        band,
        value,
        error,
        unit: Unit::FluxNjy,
        source_id: i64_field(row, &["diaSourceId"]),
        ra: f64_field(row, &["ra"]),
        dec: f64_field(row, &["dec", "decl"]),
    })
}
