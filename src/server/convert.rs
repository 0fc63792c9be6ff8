//! Conversions between the engine's types and the protobuf messages.

use super::proto as pb;
use super::ServerError;
use crate::embed::{FeatureGroup, GroupWeights};
use crate::engine::{
    AnomalyScore, Classification, Cone, Filters, Recommendation, SimilarHit, Target,
};
use crate::model::{
    AnnotationValue, Band, Detection, Label, Neighbour, ObjectRecord, Survey, Unit, UpperLimit,
};
use crate::science::{Contribution, Explanation};

pub fn survey(s: Survey) -> pb::Survey {
    match s {
        Survey::Ztf => pb::Survey::Ztf,
        Survey::Lsst => pb::Survey::Lsst,
        Survey::External => pb::Survey::External,
    }
}

fn unit(u: Unit) -> pb::Unit {
    match u {
        Unit::DiffMag { positive: true } => pb::Unit::DiffMagPositive,
        Unit::DiffMag { positive: false } => pb::Unit::DiffMagNegative,
        Unit::Mag => pb::Unit::Mag,
        Unit::FluxNjy => pb::Unit::FluxNjy,
        Unit::FluxDn => pb::Unit::FluxDn,
        Unit::Flux => pb::Unit::Flux,
    }
}

fn unit_from(u: i32) -> Result<Unit, ServerError> {
    Ok(match pb::Unit::try_from(u) {
        Ok(pb::Unit::Unspecified | pb::Unit::Mag) => Unit::Mag,
        Ok(pb::Unit::DiffMagPositive) => Unit::DiffMag { positive: true },
        Ok(pb::Unit::DiffMagNegative) => Unit::DiffMag { positive: false },
        Ok(pb::Unit::FluxNjy) => Unit::FluxNjy,
        Ok(pb::Unit::FluxDn) => Unit::FluxDn,
        Ok(pb::Unit::Flux) => Unit::Flux,
        Err(_) => {
            return Err(ServerError::invalid(
                "lightcurve.detections.unit",
                format!("unknown unit {u}"),
            ))
        }
    })
}

pub fn detection(d: &Detection) -> pb::Detection {
    pb::Detection {
        mjd: d.mjd,
        band: d.band.name().to_string(),
        value: d.value,
        error: d.error,
        unit: unit(d.unit) as i32,
        source_id: d.source_id,
    }
}

pub fn detection_from(d: &pb::Detection) -> Result<Detection, ServerError> {
    if d.band.trim().is_empty() {
        return Err(ServerError::invalid(
            "lightcurve.detections.band",
            "a band name is needed (g, r, i, ...)",
        ));
    }
    Ok(Detection {
        mjd: d.mjd,
        band: Band::parse(&d.band),
        value: d.value,
        error: d.error,
        unit: unit_from(d.unit)?,
        source_id: d.source_id,
        ra: None,
        dec: None,
    })
}

fn upper_limit(u: &UpperLimit) -> pb::UpperLimit {
    pb::UpperLimit {
        mjd: u.mjd,
        band: u.band.name().to_string(),
        limit_mag: u.limit_mag,
    }
}

pub fn label(l: &Label) -> pb::Label {
    pb::Label {
        class_name: l.class.clone(),
        source: l.source.clone(),
        raw: l.raw.clone(),
    }
}

pub fn object(r: &ObjectRecord, labels: &[Label], with_lightcurve: bool) -> pb::GetObjectResponse {
    let annotations = r
        .annotations
        .iter()
        .map(|(name, a)| pb::Annotation {
            name: name.clone(),
            value: Some(match &a.value {
                AnnotationValue::Bool(b) => pb::annotation::Value::BoolValue(*b),
                AnnotationValue::Number(x) => pb::annotation::Value::Number(*x),
                AnnotationValue::Text(t) => pb::annotation::Value::Text(t.clone()),
            }),
            mjd: a.mjd,
        })
        .collect();
    let (detections, forced, upper_limits) = if with_lightcurve {
        (
            r.detections.iter().map(detection).collect(),
            r.forced.iter().map(detection).collect(),
            r.upper_limits.iter().map(upper_limit).collect(),
        )
    } else {
        (Vec::new(), Vec::new(), Vec::new())
    };
    pb::GetObjectResponse {
        object_id: r.object_id.clone(),
        survey: survey(r.survey) as i32,
        meta: Some(pb::ObjectMeta {
            first_mjd: r.meta.first_mjd,
            last_mjd: r.meta.last_mjd,
            detections_per_band: r.meta.n_per_band.clone().into_iter().collect(),
            ra: r.meta.ra,
            dec: r.meta.dec,
        }),
        detections,
        forced,
        upper_limits,
        annotations,
        labels: labels.iter().map(label).collect(),
        classification: None,
        anomaly: None,
    }
}

pub fn classification(c: &Classification) -> pb::ClassifyResponse {
    pb::ClassifyResponse {
        object_id: c.object_id.clone(),
        class_name: c.class.clone(),
        confidence: c.confidence,
        probabilities: c.probabilities.clone().into_iter().collect(),
        method: c.method.to_string(),
        voters: c
            .voters
            .iter()
            .map(|v| pb::Voter {
                object_id: v.object_id.clone(),
                class_name: v.class.clone(),
                source: v.source.clone(),
                distance: v.distance,
            })
            .collect(),
        packet_snia_score: c.packet_snia_score,
        labels: c.labels.iter().map(label).collect(),
    }
}

pub fn anomaly(a: &AnomalyScore) -> pb::AnomalyScore {
    pb::AnomalyScore {
        object_id: a.object_id.clone(),
        score: a.score,
        lof: a.lof,
        isolation: a.isolation,
    }
}

fn contribution(c: &Contribution) -> pb::Contribution {
    pb::Contribution {
        feature: c.feature.clone(),
        a: c.a,
        b: c.b,
        contribution: c.contribution,
        share: c.share,
    }
}

pub fn explanation(e: &Explanation) -> pb::Explanation {
    pb::Explanation {
        distance: e.distance,
        closest: e.closest.iter().map(contribution).collect(),
        apart: e.apart.iter().map(contribution).collect(),
        by_band: e.by_band.clone().into_iter().collect(),
    }
}

pub fn hit(h: &SimilarHit) -> pb::Neighbour {
    pb::Neighbour {
        object_id: h.object_id.clone(),
        distance: h.distance,
        class_name: h.class.clone(),
        detections: h.n_detections as u32,
        explanation: h.explanation.as_ref().map(explanation),
    }
}

pub fn neighbour(n: &Neighbour) -> pb::Neighbour {
    pb::Neighbour {
        object_id: n.object_id.clone(),
        distance: n.distance,
        class_name: None,
        detections: 0,
        explanation: None,
    }
}

pub fn recommendation(r: &Recommendation) -> pb::Recommendation {
    pb::Recommendation {
        object_id: r.object_id.clone(),
        score: r.score,
        class_name: r.class.clone(),
        detections: r.n_detections as u32,
    }
}

pub fn filters(f: Option<pb::Filters>) -> Filters {
    let Some(f) = f else {
        return Filters::default();
    };
    Filters {
        class: f.class_name,
        min_detections: f.min_detections.map(|n| n as usize),
        last_after: f.last_detection_after,
        last_before: f.last_detection_before,
        cone: f.cone.map(|c| Cone {
            ra: c.ra,
            dec: c.dec,
            radius: c.radius,
        }),
    }
}

/// A similarity preset by name; empty is `all`.
pub fn features(name: &str) -> Result<FeatureGroup, ServerError> {
    if name.is_empty() {
        return Ok(FeatureGroup::All);
    }
    name.parse()
        .map_err(|reason: String| ServerError::invalid("features", reason))
}

/// A query's group weights (`lightcurve=W,context=W`); empty is none.
pub fn weights(text: &str) -> Result<Option<GroupWeights>, ServerError> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|reason: String| ServerError::invalid("weights", reason))
}

pub fn target(q: Option<pb::find_similar_request::Query>) -> Result<Target, ServerError> {
    use pb::find_similar_request::Query;
    match q {
        None => Err(ServerError::invalid(
            "query",
            "give an object_id, a vector or a lightcurve",
        )),
        Some(Query::ObjectId(id)) => Ok(Target::Object(id)),
        Some(Query::Vector(v)) => Ok(Target::Vector(v.values)),
        Some(Query::Lightcurve(lc)) => Ok(Target::Lightcurve(
            lc.detections
                .iter()
                .map(detection_from)
                .collect::<Result<_, _>>()?,
        )),
    }
}
