//! The JSON documents of the HTTP API and of the CLI's `--json` output: one function per
//! answer, so `asterism object --json` and `GET /api/v1/objects/{id}` give the same keys and
//! values (a test compares them). Answers whose engine type derives `Serialize`
//! (classification, recommendations, explanations) are serialised as they are and have no
//! function here. Imports `engine` and `model` only (no tonic, no axum).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::engine::{AnomalyScore, SimilarHit};
use crate::model::{AnnotationValue, Detection, ObjectRecord, Survey, Unit};
use crate::store::{Counts, PartitionOffset};

/// An object: metadata, detections, forced photometry, upper limits and annotations.
pub fn object(r: &ObjectRecord) -> Value {
    let annotations: serde_json::Map<String, Value> = r
        .annotations
        .iter()
        .map(|(k, a)| {
            (
                k.clone(),
                json!({"value": annotation(&a.value), "mjd": a.mjd}),
            )
        })
        .collect();
    json!({
        "object_id": r.object_id,
        "survey": r.survey.as_str(),
        "n_detections": r.detections.len(),
        "first_mjd": r.meta.first_mjd,
        "last_mjd": r.meta.last_mjd,
        "n_per_band": r.meta.n_per_band,
        "ra": r.meta.ra,
        "dec": r.meta.dec,
        "detections": r.detections.iter().map(detection).collect::<Vec<_>>(),
        "forced": r.forced.iter().map(detection).collect::<Vec<_>>(),
        "upper_limits": r.upper_limits.iter().map(|l| json!({
            "mjd": l.mjd, "band": l.band.name(), "limit_mag": l.limit_mag,
        })).collect::<Vec<_>>(),
        "annotations": annotations,
    })
}

fn detection(d: &Detection) -> Value {
    let mut v = json!({
        "mjd": d.mjd,
        "band": d.band.name(),
        "value": d.value,
        "error": d.error,
        "unit": unit_name(d.unit),
    });
    if let Unit::DiffMag { positive } = d.unit {
        v["isdiffpos"] = json!(positive);
    }
    if let Some(id) = d.source_id {
        v["source_id"] = json!(id);
    }
    v
}

/// An annotation's value as the JSON scalar it is.
pub fn annotation(v: &AnnotationValue) -> Value {
    match v {
        AnnotationValue::Bool(b) => json!(b),
        AnnotationValue::Number(x) => json!(x),
        AnnotationValue::Text(s) => json!(s),
    }
}

/// The name of a measurement's unit, as every JSON document and table writes it.
pub fn unit_name(u: Unit) -> &'static str {
    match u {
        Unit::DiffMag { .. } => "diff_mag",
        Unit::Mag => "mag",
        Unit::FluxNjy => "flux_njy",
        Unit::FluxDn => "flux_dn",
        Unit::Flux => "flux",
    }
}

/// Objects like `object_id`, nearest first. With `explained`, each neighbour also carries the
/// explanation of its distance (the CLI never asks for it, so its output has no such key).
pub fn similar(object_id: &str, as_of: Option<f64>, hits: &[SimilarHit], explained: bool) -> Value {
    json!({
        "object_id": object_id,
        "as_of": as_of,
        "neighbours": hits.iter().map(|n| {
            let mut v = json!({
                "object_id": n.object_id, "distance": n.distance,
                "class": n.class, "detections": n.n_detections,
            });
            if explained {
                v["explanation"] = json!(n.explanation);
            }
            v
        }).collect::<Vec<_>>(),
    })
}

/// [`stats`], with the Kafka partitions the store has read (where there are any).
pub fn stats_with_partitions(
    stats_by_survey: &BTreeMap<Survey, Counts>,
    partitions: &[PartitionOffset],
) -> Value {
    let mut doc = stats(stats_by_survey);
    if !partitions.is_empty() {
        doc["partitions"] = partitions
            .iter()
            .map(|p| {
                json!({
                    "topic": p.topic,
                    "partition": p.partition,
                    "next_offset": p.next,
                    "high_watermark": p.high_watermark,
                    "lag": p.lag(),
                    "watermark_at": p.watermark_at,
                })
            })
            .collect();
    }
    doc
}

/// Objects, alerts and detections in all and per survey.
pub fn stats(stats: &BTreeMap<Survey, Counts>) -> Value {
    let per: serde_json::Map<String, Value> = stats
        .iter()
        .map(|(s, c)| {
            (
                s.to_string(),
                json!({"objects": c.objects, "alerts": c.alerts, "detections": c.detections}),
            )
        })
        .collect();
    let total = stats.values().fold((0, 0, 0), |t, c| {
        (t.0 + c.objects, t.1 + c.alerts, t.2 + c.detections)
    });
    json!({
        "objects": total.0, "alerts": total.1, "detections": total.2,
        "surveys": per,
    })
}

/// One anomaly score with its two sources (local outlier factor, isolation forest).
pub fn anomaly(a: &AnomalyScore) -> Value {
    json!({"object_id": a.object_id, "score": a.score, "lof": a.lof, "isolation": a.isolation})
}

/// The most anomalous objects, most anomalous first.
pub fn anomalies(list: &[AnomalyScore]) -> Value {
    Value::Array(list.iter().map(anomaly).collect())
}

/// An object's lightcurve as it is drawn: one series per band and unit, each with parallel
/// arrays `mjd`, `value`, `error` (null for an upper limit) and `is_limit`, sorted by time.
/// Upper limits (ZTF `diffmaglim`) join the band's difference-magnitude series. Forced
/// photometry is a series of its own (`"kind": "forced"`).
pub fn lightcurve(r: &ObjectRecord) -> Value {
    // (kind, band, unit) -> points (mjd, value, error, is_limit).
    type Points = Vec<(f64, f64, Option<f64>, bool)>;
    let mut series: BTreeMap<(&str, String, &str), Points> = BTreeMap::new();
    for (kind, list) in [("detection", &r.detections), ("forced", &r.forced)] {
        for d in list {
            series
                .entry((kind, d.band.name().to_string(), unit_name(d.unit)))
                .or_default()
                .push((d.mjd, d.value, Some(d.error), false));
        }
    }
    let limit_unit = if r.survey == Survey::Ztf {
        "diff_mag"
    } else {
        "mag"
    };
    for l in &r.upper_limits {
        series
            .entry(("detection", l.band.name().to_string(), limit_unit))
            .or_default()
            .push((l.mjd, l.limit_mag, None, true));
    }
    let out: Vec<Value> = series
        .into_iter()
        .map(|((kind, band, unit), mut points)| {
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            json!({
                "band": band,
                "unit": unit,
                "kind": kind,
                "magnitude": matches!(unit, "diff_mag" | "mag"),
                "mjd": points.iter().map(|p| p.0).collect::<Vec<_>>(),
                "value": points.iter().map(|p| p.1).collect::<Vec<_>>(),
                "error": points.iter().map(|p| p.2).collect::<Vec<_>>(),
                "is_limit": points.iter().map(|p| p.3).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "object_id": r.object_id,
        "survey": r.survey.as_str(),
        "first_mjd": r.meta.first_mjd,
        "last_mjd": r.meta.last_mjd,
        "n_detections": r.detections.len(),
        "series": out,
    })
}
