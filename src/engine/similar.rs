//! Similarity queries: the objects nearest an object, a vector or a raw lightcurve, now or as
//! of a date, filtered by class, number of detections, date of the last detection and a sky
//! cone, optionally with each distance explained.
//!
//! Filters are applied to index candidates in distance order; the candidate pool grows ×4
//! until `k` objects pass or the index is exhausted, so a rare filter costs more searches but
//! never returns fewer objects than exist.

use std::collections::BTreeMap;
use std::sync::Arc;

use rayon::prelude::*;

use super::{check_count, read, Engine, EngineError, Result};
use crate::embed::{FeatureGroup, GroupWeights};
use crate::index::exact_knn;
use crate::index::live::Facts;
use crate::model::{
    Alert, Detection, Label, ObjectRecord, Survey, Unit, UpperLimit, VectorVersion,
};
use crate::science::curves::{self, Curve, Fit};
use crate::science::{self, taxonomy, Explanation};

/// The embedding a hit was ranked by, as far as the ranking knew it.
enum Embedding {
    /// The version an as-of or at-age query used.
    Then(VectorVersion),
    /// The object's current one, with its facts where the search found them in the live index.
    Current(Option<Facts>),
}

/// What to search around.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// A stored object (left out of its own answer).
    Object(String),
    /// A scaled embedding of the engine's dimension.
    Vector(Vec<f32>),
    /// A lightcurve, embedded with the same features as stored objects.
    Lightcurve(Vec<Detection>),
}

/// A sky cone, degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cone {
    pub ra: f64,
    pub dec: f64,
    pub radius: f64,
}

/// Conditions an answer must meet. Empty filters admit every object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filters {
    /// Coarse class: the object's label, or its predicted class when unlabelled.
    pub class: Option<String>,
    pub min_detections: Option<usize>,
    /// The last detection is at or after this MJD.
    pub last_after: Option<f64>,
    /// The last detection is at or before this MJD.
    pub last_before: Option<f64>,
    pub cone: Option<Cone>,
}

/// A similarity query; see [`Engine::find_similar`].
#[derive(Debug, Clone, PartialEq)]
pub struct SimilarQuery {
    pub target: Target,
    pub k: usize,
    pub filters: Filters,
    /// Search the embeddings every object had at this MJD (exact search).
    pub as_of: Option<f64>,
    /// Compare every object (the target too) as it was this many days after its own first
    /// detection (exact search; early-lightcurve analogs).
    pub at_age: Option<f64>,
    pub explain: bool,
    /// The features that make objects alike (a preset): `All` is the index's metric;
    /// `Lightcurve` or `Context` rank by that group's features alone.
    pub features: FeatureGroup,
    /// The query's own weights of the groups, on top of the spec's (candidates from the
    /// index ranked with them, as a preset's).
    pub weights: Option<GroupWeights>,
}

/// Candidates the index gives a preset query before they are ranked by the preset's
/// features (at least; 20 per answer wanted, more while filters reject them).
pub const PRESET_CANDIDATES: usize = 200;

/// Candidates the flux scan gives the curves preset's similarity search and recommendations
/// before their lightcurves are compared (at least; more when more objects are asked for).
/// The same object seen by another survey has other flux features: in a store of ~545
/// objects, among the flux scan's 100 nearest for 0.87-0.90 of generated twins and its 300
/// nearest for 0.96-0.99; in one of ~20,000, 0.23 and 0.44 (SCIENCE.md).
pub const CURVE_CANDIDATES: usize = 300;

/// A lightcurve as the curves preset compares it (`science::curves`): its signed difference
/// fluxes (nJy) and its non-detections' limits (nJy) at their bands' wavelengths; other points
/// are left out.
pub(super) fn curve_of(detections: &[Detection], limits: &[UpperLimit]) -> Curve {
    Curve::new(detections.iter().filter_map(|d| {
        Some((
            d.mjd,
            curves::wavelength_nm(&d.band)?,
            crate::embed::signed_flux(d)?,
        ))
    }))
    .with_limits(limits.iter().filter_map(|l| {
        Some((
            l.mjd,
            curves::wavelength_nm(&l.band)?,
            crate::embed::limit_flux(l)?,
        ))
    }))
}

/// Records embedded together by an at-age query.
const AGE_CHUNK: usize = 4096;

impl SimilarQuery {
    pub fn new(target: Target, k: usize) -> SimilarQuery {
        SimilarQuery {
            target,
            k,
            filters: Filters::default(),
            as_of: None,
            at_age: None,
            explain: false,
            features: FeatureGroup::All,
            weights: None,
        }
    }
}

/// One answer of [`Engine::find_similar`].
#[derive(Debug, Clone, PartialEq)]
pub struct SimilarHit {
    pub object_id: String,
    pub distance: f32,
    /// The object's label; with a class filter, its predicted class when unlabelled.
    pub class: Option<String>,
    pub n_detections: usize,
    pub explanation: Option<Explanation>,
}

pub(super) fn invalid(field: &'static str, reason: impl Into<String>) -> EngineError {
    EngineError::InvalidArgument {
        field,
        reason: reason.into(),
    }
}

/// Angular separation in degrees.
pub fn separation(ra1: f64, dec1: f64, ra2: f64, dec2: f64) -> f64 {
    let (d1, d2) = (dec1.to_radians(), dec2.to_radians());
    let (dd, dr) = ((dec2 - dec1).to_radians(), (ra2 - ra1).to_radians());
    let h = (dd / 2.0).sin().powi(2) + d1.cos() * d2.cos() * (dr / 2.0).sin().powi(2);
    (2.0 * h.sqrt().min(1.0).asin()).to_degrees()
}

impl Filters {
    pub fn is_empty(&self) -> bool {
        *self == Filters::default()
    }

    pub fn validate(&self) -> Result<()> {
        if let Some(c) = &self.cone {
            if !(c.ra.is_finite() && (-90.0..=90.0).contains(&c.dec)) {
                return Err(invalid(
                    "filters.cone",
                    "ra must be finite, dec in [-90, 90]",
                ));
            }
            if !(c.radius > 0.0 && c.radius <= 180.0) {
                return Err(invalid(
                    "filters.cone.radius",
                    "must be in (0, 180] degrees",
                ));
            }
        }
        for (field, t) in [
            ("filters.last_detection_after", self.last_after),
            ("filters.last_detection_before", self.last_before),
        ] {
            if t.is_some_and(|t| !t.is_finite()) {
                return Err(invalid(field, "must be a finite MJD"));
            }
        }
        if let Some(c) = &self.class {
            if taxonomy::canonical(c).is_none() {
                return Err(invalid(
                    "filters.class_name",
                    format!("unknown class `{c}`"),
                ));
            }
        }
        Ok(())
    }

    /// Whether deciding needs an object's record: only a cone does (its position); the
    /// detection count and the last detection's date come with each hit.
    fn reads_records(&self) -> bool {
        self.cone.is_some()
    }

    /// Whether an object with these facts passes, ignoring the class; `position` (RA, Dec)
    /// is only looked at by a cone.
    pub(super) fn admits(
        &self,
        n_detections: usize,
        last_mjd: Option<f64>,
        position: Option<(f64, f64)>,
    ) -> bool {
        if self.min_detections.is_some_and(|n| n_detections < n) {
            return false;
        }
        if self
            .last_after
            .is_some_and(|t| last_mjd.is_none_or(|l| l < t))
        {
            return false;
        }
        if self
            .last_before
            .is_some_and(|t| last_mjd.is_none_or(|l| l > t))
        {
            return false;
        }
        if let Some(c) = &self.cone {
            let inside = match position {
                Some((ra, dec)) => separation(c.ra, c.dec, ra, dec) <= c.radius,
                None => false,
            };
            if !inside {
                return false;
            }
        }
        true
    }
}

/// The survey whose units a query lightcurve uses.
fn survey_of(detections: &[Detection]) -> Survey {
    match detections.first().map(|d| d.unit) {
        Some(Unit::DiffMag { .. } | Unit::FluxDn) => Survey::Ztf,
        Some(Unit::FluxNjy) => Survey::Lsst,
        _ => Survey::External,
    }
}

/// The object a query lightcurve would be, once merged like an ingested one.
pub fn lightcurve_record(detections: &[Detection]) -> Result<ObjectRecord> {
    if detections.is_empty() {
        return Err(invalid("lightcurve", "has no detections"));
    }
    if let Some((i, _)) = detections.iter().enumerate().find(|(_, d)| {
        !(d.mjd.is_finite() && d.value.is_finite() && d.error.is_finite() && d.error >= 0.0)
    }) {
        return Err(invalid(
            "lightcurve.detections",
            format!("detection {i} needs a finite mjd, value and error >= 0"),
        ));
    }
    let survey = survey_of(detections);
    let mut record = ObjectRecord::new("(query)".into(), survey);
    record.merge(&Alert::from_detections(
        "(query)".into(),
        survey,
        detections.to_vec(),
    ));
    Ok(record)
}

/// A query resolved to a scaled vector.
struct Resolved {
    vector: Vec<f32>,
    mask: Vec<bool>,
    exclude: Option<String>,
    /// The target's lightcurve, for the curves preset only.
    curve: Option<Curve>,
}

impl Engine {
    /// The class shown for an object that passed the other filters: its label, or (only when
    /// the filters name a class) its predicted class. `None` when the class filter rejects it.
    pub(super) fn class_if_admitted(
        &self,
        object_id: &str,
        label: Option<Label>,
        filters: &Filters,
    ) -> Result<Option<Option<String>>> {
        let class = match (label, &filters.class) {
            (Some(l), _) => Some(l.class),
            (None, Some(_)) => self.classify(object_id)?.class,
            (None, None) => None,
        };
        if let Some(want) = &filters.class {
            let want = taxonomy::canonical(want).unwrap_or(want.as_str());
            if class.as_deref() != Some(want) {
                return Ok(None);
            }
        }
        Ok(Some(class))
    }

    /// The `k` objects nearest the target that pass the filters, nearest first.
    pub fn find_similar(&self, q: &SimilarQuery) -> Result<Vec<SimilarHit>> {
        check_count("k", q.k)?;
        q.filters.validate()?;
        if self.spec_outdated {
            return Err(EngineError::SpecOutdated);
        }
        if q.as_of.is_some_and(|t| !t.is_finite()) {
            return Err(invalid("as_of", "must be a finite MJD"));
        }
        if let Some(days) = q.at_age {
            if !(days.is_finite() && days >= 0.0) {
                return Err(invalid("at_age", "must be a number of days >= 0"));
            }
            if q.as_of.is_some() {
                return Err(invalid("at_age", "give as_of or at_age, not both"));
            }
        }
        self.check_preset(&q.target, q.features)?;
        if q.features == FeatureGroup::Curves && (q.as_of.is_some() || q.at_age.is_some()) {
            return Err(invalid(
                "features",
                "the curves preset compares the lightcurves as they are now: not with as_of or \
                 at_age",
            ));
        }
        match (q.as_of, q.at_age) {
            (Some(t), _) => self.similar_then(q, self.versions_at(t)?),
            (None, Some(days)) => self.similar_then(q, self.versions_at_age(days)?),
            (None, None) => self.similar_now(q),
        }
    }

    /// A preset's group must have a feature the target defines: ranking by features the
    /// target lacks (every one masked) would tie every object at distance 0.
    pub(super) fn check_preset(&self, target: &Target, features: FeatureGroup) -> Result<()> {
        if features == FeatureGroup::All {
            return Ok(());
        }
        if features == FeatureGroup::Curves && matches!(target, Target::Vector(_)) {
            return Err(invalid(
                "features",
                "the curves preset compares lightcurves: give an object or a lightcurve, not a \
                 vector",
            ));
        }
        let mask = match target {
            Target::Object(id) => self.vector(id)?.1,
            Target::Lightcurve(detections) => {
                let record = lightcurve_record(detections)?;
                self.spec()
                    .transform(&self.embedder.features(&record, None))
                    .1
            }
            Target::Vector(_) => return Ok(()),
        };
        let names = self.embedder.names();
        let defined = names
            .iter()
            .zip(&mask)
            .any(|(name, missing)| features.contains(name) && !missing);
        if defined {
            return Ok(());
        }
        let what = match target {
            Target::Object(id) => format!("object `{id}`"),
            _ => "the lightcurve".to_string(),
        };
        Err(invalid(
            "features",
            format!(
                "{what} has none of the {} features (lightcurve tables carry no packet context \
                 and no difference fluxes)",
                features.as_str()
            ),
        ))
    }

    /// The query vector of `target`. `mask` (which features are undefined) is only filled
    /// where `explain` asks for it: a stored object's vector then comes from the live index,
    /// with no read of its stored versions.
    fn resolve(&self, target: &Target, explain: bool, features: FeatureGroup) -> Result<Resolved> {
        let mut r = self.resolve_vector(target, explain)?;
        if features == FeatureGroup::Curves {
            r.curve = Some(match target {
                Target::Object(id) => {
                    let r = self.object(id)?;
                    curve_of(&r.detections, &r.upper_limits)
                }
                Target::Lightcurve(detections) => curve_of(detections, &[]),
                Target::Vector(_) => Curve::default(),
            });
        }
        Ok(r)
    }

    fn resolve_vector(&self, target: &Target, explain: bool) -> Result<Resolved> {
        let spec = self.spec();
        match target {
            Target::Object(id) => {
                if !explain {
                    if let Some(c) = read(&self.live).current(id) {
                        return Ok(Resolved {
                            vector: c.vector.clone(),
                            mask: Vec::new(),
                            exclude: Some(id.clone()),
                            curve: None,
                        });
                    }
                }
                let (vector, mask) = self.vector(id)?;
                Ok(Resolved {
                    vector,
                    mask,
                    exclude: Some(id.clone()),
                    curve: None,
                })
            }
            Target::Vector(v) => {
                let dim = self.embedder.dim();
                if v.len() != dim {
                    return Err(EngineError::WrongDimension {
                        expected: dim,
                        got: v.len(),
                    });
                }
                if v.iter().any(|x| !x.is_finite()) {
                    return Err(invalid("vector", "values must be finite"));
                }
                Ok(Resolved {
                    vector: v.clone(),
                    mask: vec![false; dim],
                    exclude: None,
                    curve: None,
                })
            }
            Target::Lightcurve(detections) => {
                let record = lightcurve_record(detections)?;
                let raw = self.embedder.features(&record, None);
                // Embedded as a stored object would be, and kept as the index keeps it.
                let (mut vector, mask) = spec.transform(&raw);
                read(&self.live).keep(&mut vector);
                Ok(Resolved {
                    vector,
                    mask,
                    exclude: None,
                    curve: None,
                })
            }
        }
    }

    /// The `k` objects nearest `vector` by a preset, without `exclude`, nearest first, with
    /// their distance in the preset's space: with `All` and no weights, the index's `k`
    /// nearest; for a group that [scans every object](FeatureGroup::scans_every_object), an
    /// exact scan of every live object by that group's features (read from the live index's
    /// table of them, `LiveIndex::for_each_scanned`); otherwise the index's
    /// nearest (at least [`PRESET_CANDIDATES`]) ranked by the preset's features and weights.
    ///
    /// The curves preset (`curve`: the target's lightcurve, and how many of the flux scan's
    /// nearest to compare with it, at least) ranks those candidates by how well their
    /// lightcurves fit (`rank_by_curves`).
    pub(super) fn nearest_by(
        &self,
        vector: &[f32],
        k: usize,
        exclude: Option<&str>,
        features: FeatureGroup,
        weights: Option<GroupWeights>,
        curve: Option<(&Curve, usize)>,
    ) -> Result<Vec<(Arc<str>, f32)>> {
        let live = read(&self.live);
        if features == FeatureGroup::All && weights.is_none() {
            return Ok(live.search(vector, k, exclude));
        }
        let mult = live.spec.group_multipliers(features, weights);
        let query = masked(vector, &mult);
        // Only the preset's own dimensions count: the rest are multiplied by 0.
        let dims: Vec<usize> = (0..mult.len()).filter(|&i| mult[i] != 0.0).collect();
        let distance = |v: &[f32]| -> f32 {
            dims.iter()
                .map(|&i| {
                    let x = v[i] * mult[i] - query[i];
                    x * x
                })
                .sum::<f32>()
                .sqrt()
        };
        let mut all: Vec<(Arc<str>, f32)> = Vec::new();
        if features.scans_every_object() {
            // The preset's dimensions as positions in the live index's table of the scanned
            // groups' features (all of them are there: the preset is such a group).
            let table = live.scanned_dims();
            let at: Vec<(usize, usize)> = dims
                .iter()
                .filter_map(|&i| table.iter().position(|&t| t == i).map(|j| (j, i)))
                .collect();
            debug_assert_eq!(at.len(), dims.len());
            all.reserve(live.len());
            live.for_each_scanned(|id, row| {
                if Some(id.as_ref()) != exclude {
                    let d = at
                        .iter()
                        .map(|&(j, i)| {
                            let x = row[j] * mult[i] - query[i];
                            x * x
                        })
                        .sum::<f32>()
                        .sqrt();
                    all.push((id.clone(), d));
                }
            });
        } else {
            let mut buf = Vec::new();
            for (id, _) in live.search(vector, k.max(PRESET_CANDIDATES), exclude) {
                if let Some(d) = live.distance_by(&id, &mut buf, distance) {
                    all.push((id, d));
                }
            }
        }
        drop(live);
        let order = |a: &(Arc<str>, f32), b: &(Arc<str>, f32)| {
            a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0))
        };
        let compared = match (features, curve) {
            (FeatureGroup::Curves, Some((_, candidates))) => k.max(candidates),
            _ => k,
        };
        if compared < all.len() {
            all.select_nth_unstable_by(compared, order);
            all.truncate(compared);
        }
        all.sort_by(order);
        if let (FeatureGroup::Curves, Some((curve, _))) = (features, curve) {
            return self.rank_by_curves(curve, all, k);
        }
        Ok(all)
    }

    /// `candidates` (in the flux group's order) ranked by how well their lightcurves fit
    /// `curve` (`science::curves::rank`), the first `k`.
    fn rank_by_curves(
        &self,
        curve: &Curve,
        candidates: Vec<(Arc<str>, f32)>,
        k: usize,
    ) -> Result<Vec<(Arc<str>, f32)>> {
        let ids: Vec<&str> = candidates.iter().map(|(id, _)| id.as_ref()).collect();
        let records = self.store.get_objects(&ids)?;
        let fits: Vec<Fit> = records
            .par_iter()
            .map(|r| {
                r.as_ref().map_or(Fit::TooFew, |r| {
                    curves::compare(curve, &curve_of(&r.detections, &r.upper_limits))
                })
            })
            .collect();
        Ok(curves::rank(fits.into_iter().zip(candidates).collect())
            .into_iter()
            .take(k)
            .map(|(d, (id, _))| (id, d as f32))
            .collect())
    }

    fn similar_now(&self, q: &SimilarQuery) -> Result<Vec<SimilarHit>> {
        let r = self.resolve(&q.target, q.explain, q.features)?;
        let total = read(&self.live).len();
        let preset = q.features != FeatureGroup::All || q.weights.is_some();
        // The curves preset ranks its own candidates (`nearest_by`): the pool is what the
        // filters need, as for the index's metric.
        let mut pool = if preset && q.features != FeatureGroup::Curves {
            (20 * q.k).max(PRESET_CANDIDATES)
        } else if q.filters.is_empty() {
            q.k
        } else {
            (4 * q.k).max(50)
        };
        loop {
            let exclude = r.exclude.as_deref();
            let hits: Vec<(Arc<str>, f32, Embedding)> = if preset {
                self.nearest_by(
                    &r.vector,
                    pool,
                    exclude,
                    q.features,
                    q.weights,
                    r.curve.as_ref().map(|c| (c, CURVE_CANDIDATES)),
                )?
                .into_iter()
                .map(|(id, d)| (id, d, Embedding::Current(None)))
                .collect()
            } else {
                // The index's own metric: each hit's facts come with it.
                read(&self.live)
                    .search_with_facts(&r.vector, pool, exclude)
                    .into_iter()
                    .map(|(id, d, f)| (id, d, Embedding::Current(Some(f))))
                    .collect()
            };
            let exhausted = hits.len() < pool || pool >= total;
            let out = self.admit(q, &r, hits)?;
            if out.len() >= q.k || exhausted {
                return Ok(out);
            }
            pool = (pool * 4).min(total.max(1));
        }
    }

    /// Every object's embedding at MJD `t`: the stored version valid then or, for an object
    /// detected by then whose history reached the store later in one batch, its lightcurve
    /// cut at `t` embedded now (the same features).
    pub(super) fn versions_at(&self, t: f64) -> Result<BTreeMap<String, VectorVersion>> {
        let mut at: BTreeMap<String, VectorVersion> = BTreeMap::new();
        self.store.for_each_vector(|id, _, v| {
            if v.from_mjd <= t {
                at.insert(id.to_string(), v);
            }
        })?;
        let mut missing: Vec<ObjectRecord> = Vec::new();
        self.store.for_each_object(|r| {
            if !at.contains_key(&r.object_id) && r.meta.first_mjd.is_some_and(|f| f <= t) {
                missing.push(r);
            }
            true
        })?;
        let derived: Vec<(String, VectorVersion)> = missing
            .par_iter()
            .map(|r| (r.object_id.clone(), self.embedded_at(r, t)))
            .collect();
        at.extend(derived);
        Ok(at)
    }

    /// Every object's embedding `days` after its own first detection: its lightcurve cut
    /// there (and the annotations known then), embedded now. Exact, so one feature evaluation
    /// per object (in parallel, a chunk of records at a time).
    pub(super) fn versions_at_age(&self, days: f64) -> Result<BTreeMap<String, VectorVersion>> {
        let mut out = BTreeMap::new();
        let mut chunk: Vec<ObjectRecord> = Vec::new();
        self.store.for_each_object(|r| {
            chunk.push(r);
            if chunk.len() >= AGE_CHUNK {
                out.extend(self.at_age_of(&std::mem::take(&mut chunk), days));
            }
            true
        })?;
        out.extend(self.at_age_of(&chunk, days));
        Ok(out)
    }

    /// [`Self::versions_at_age`] of some records; records without a detection have none.
    pub(super) fn at_age_of(
        &self,
        records: &[ObjectRecord],
        days: f64,
    ) -> Vec<(String, VectorVersion)> {
        records
            .par_iter()
            .filter_map(|r| {
                let cut = r.meta.first_mjd? + days;
                Some((r.object_id.clone(), self.embedded_at(r, cut)))
            })
            .collect()
    }

    /// A record's lightcurve cut at MJD `t` (and the annotations known then), embedded now.
    fn embedded_at(&self, r: &ObjectRecord, t: f64) -> VectorVersion {
        VectorVersion {
            point: 0,
            from_mjd: t,
            n_detections: r.detections.iter().filter(|d| d.mjd <= t).count() as u32,
            raw: self.embedder.raw_features(r, Some(t)),
        }
    }

    /// The query ranked exactly among the embeddings of `at` (every object's, as of an MJD or
    /// at an age).
    fn similar_then(
        &self,
        q: &SimilarQuery,
        at: BTreeMap<String, VectorVersion>,
    ) -> Result<Vec<SimilarHit>> {
        let spec = self.spec();
        let r = match &q.target {
            Target::Object(id) => {
                self.object(id)?;
                let v = at.get(id).ok_or_else(|| EngineError::NoEmbedding {
                    object_id: id.clone(),
                    as_of: q.as_of,
                })?;
                let (vector, mask) = spec.scale(&v.raw);
                Resolved {
                    vector,
                    mask,
                    exclude: Some(id.clone()),
                    curve: None,
                }
            }
            Target::Lightcurve(detections) if q.at_age.is_some() => {
                let record = lightcurve_record(detections)?;
                let (_, v) = self
                    .at_age_of(std::slice::from_ref(&record), q.at_age.unwrap_or(0.0))
                    .pop()
                    .ok_or_else(|| invalid("lightcurve", "no detection"))?;
                let (vector, mask) = spec.scale(&v.raw);
                Resolved {
                    vector,
                    mask,
                    exclude: None,
                    curve: None,
                }
            }
            other => self.resolve_vector(other, q.explain)?,
        };
        let ids: Vec<&String> = at.keys().collect();
        let mask = spec.group_multipliers(q.features, q.weights);
        let r = Resolved {
            vector: masked(&r.vector, &mask),
            ..r
        };
        let points: Vec<(u64, Vec<f32>)> = at
            .values()
            .enumerate()
            .map(|(i, v)| (i as u64, masked(&spec.scale(&v.raw).0, &mask)))
            .collect();
        let own = r
            .exclude
            .as_ref()
            .and_then(|x| ids.iter().position(|id| *id == x));
        // Filters are checked on the nearest first: all objects are ranked, exactly.
        let want = if q.filters.is_empty() {
            q.k
        } else {
            points.len()
        };
        let ranked = exact_knn(points.par_iter(), &r.vector, want, &|p| {
            Some(p as usize) != own
        });
        let hits: Vec<(Arc<str>, f32, Embedding)> = ranked
            .into_iter()
            .map(|h| {
                let id = ids[h.point as usize];
                let embedding = match at.get(id) {
                    Some(v) => Embedding::Then(v.clone()),
                    None => Embedding::Current(None),
                };
                (Arc::from(id.as_str()), h.distance, embedding)
            })
            .collect();
        self.admit(q, &r, hits)
    }

    /// The first `k` of `hits` (nearest first) that pass the filters, with classes and
    /// explanations.
    fn admit(
        &self,
        q: &SimilarQuery,
        r: &Resolved,
        hits: Vec<(Arc<str>, f32, Embedding)>,
    ) -> Result<Vec<SimilarHit>> {
        let spec = self.spec();
        // An explanation splits the distance the hits were ranked by: a preset's features
        // (each times the query's group weight); the others count as missing. (Not computed
        // for a query without explanations: most are, and their time is the search's.)
        let multipliers = if q.explain {
            spec.group_multipliers(q.features, q.weights)
        } else {
            Vec::new()
        };
        let left_out: Vec<bool> = multipliers.iter().map(|m| *m == 0.0).collect();
        let weighed = |v: &[f32], mask: &[bool]| -> (Vec<f32>, Vec<bool>) {
            let mask = mask.iter().zip(&left_out).map(|(a, b)| *a || *b).collect();
            (masked(v, &multipliers), mask)
        };
        let target = q.explain.then(|| weighed(&r.vector, &r.mask));
        let mut out = Vec::new();
        for chunk in hits.chunks(q.k.max(16)) {
            let ids: Vec<&str> = chunk.iter().map(|h| &*h.0).collect();
            // A hit's detections, last detection and labels are known without its record (the
            // live index keeps the first two, the label columns the third): the record is
            // read only for a cone.
            let records = if q.filters.reads_records() {
                self.store.get_objects(&ids)?
            } else {
                vec![None; ids.len()]
            };
            let labels = self.primary_labels(&ids)?;
            for ((hit, record), label) in chunk.iter().zip(records).zip(labels) {
                if out.len() == q.k {
                    return Ok(out);
                }
                let (id, distance, embedding) = hit;
                let facts = match embedding {
                    Embedding::Then(v) => Facts::from(v),
                    Embedding::Current(Some(f)) => *f,
                    Embedding::Current(None) => match read(&self.live).facts(id) {
                        Some(f) => f,
                        None => continue,
                    },
                };
                // NaN: no detection, which no last-detection window admits.
                let last = Some(facts.last_mjd).filter(|t| t.is_finite());
                let n = facts.detections as usize;
                let position = record.as_ref().and_then(|r| r.meta.ra.zip(r.meta.dec));
                if !q.filters.admits(n, last, position) {
                    continue;
                }
                let Some(class) = self.class_if_admitted(id, label, &q.filters)? else {
                    continue;
                };
                let explanation = match &target {
                    Some((tv, tm)) => {
                        let (hv, hm) = match embedding {
                            Embedding::Then(v) => spec.scale(&v.raw),
                            Embedding::Current(_) => self.vector(id)?,
                        };
                        let (hv, hm) = weighed(&hv, &hm);
                        Some(science::explain(self.embedder.names(), tv, &hv, tm, &hm, 8))
                    }
                    None => None,
                };
                out.push(SimilarHit {
                    object_id: id.to_string(),
                    distance: *distance,
                    class,
                    n_detections: n,
                    explanation,
                });
            }
        }
        Ok(out)
    }
}

/// `v` times a query's multipliers (`EmbeddingSpec::group_multipliers`: a preset's group
/// kept, the query's group weights).
fn masked(v: &[f32], mask: &[f32]) -> Vec<f32> {
    v.iter().zip(mask).map(|(x, m)| x * m).collect()
}
