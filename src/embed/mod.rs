//! Lightcurve -> vector: light-curve features per band, a robust scaler, a versioned spec.
//!
//! Pure: takes an [`ObjectRecord`] and returns numbers. Features come from the
//! `light-curve-feature` crate, evaluated per band on magnitudes:
//!
//! - every measurement is brought to an AB magnitude: ZTF difference magnitudes (the magnitude
//!   of the absolute difference flux) and table magnitudes as they are; Rubin difference fluxes
//!   (nJy) the same way, as 31.4 − 2.5·log10(|F|) with σm = 1.0857·σF/|F|, so both surveys'
//!   differences are one quantity (the sign goes to `ctx_negative_fraction`); table fluxes
//!   (assumed nJy) for F > 0 only; ZTF forced photometry (DN) is not used;
//! - for the bands g and r (the bands ZTF, Rubin and SDSS share), the 26 values Fink's anomaly
//!   module computes plus EtaE; then colours g−r and r−i (differences of weighted-mean
//!   magnitudes), log10(1 + time span), log10(1 + detections) in g, r, i and other bands, and the
//!   highest Lomb–Scargle periodogram peak (log10 period, signal-to-noise) of the best-sampled band.
//!
//! - the **context group** (names `ctx_*`): what the packet says about the object's place and
//!   surroundings, which lightcurve shape cannot say (see [`CONTEXT_FEATURES`]): the nearest
//!   catalogue source (star/galaxy score, distance, magnitude), the source on the reference
//!   image (distance, magnitude, and how far the alert's magnitude sits from it), the nearest
//!   Gaia source, the detection history, the real/bogus score, the nearest known solar-system
//!   object, the share of negative differences and the galactic latitude. ZTF `candidate.*`
//!   and Rubin `diaSource.*`/`diaObject.*` fields of the same meaning fill the same feature;
//!   a field the survey does not send is missing (masked), a "no source within the search
//!   radius" sentinel is a far distance ([`NONE_WITHIN_ARCSEC`]).
//!
//! - the **flux group** (names `flux_*`, [`FLUX_FEATURES`]): statistics of the signed
//!   difference fluxes (nJy) of the points both ZTF and Rubin could detect, so that one object
//!   seen by either survey lands in one place, where the other groups describe the sampling
//!   as much as the object (SCIENCE.md). Its own similarity preset scans it exactly.
//!
//! Each group has a weight ([`EmbeddingSpec::weights`]): scaled values are multiplied by it,
//! so the index's L2 distance weighs the groups as the spec says; a metric learned from labels
//! (`crate::science::metric`) replaces the weights by per-feature ones.
//!
//! A feature a lightcurve is too short for is `NaN` in [`RawFeatures`]; the [`Scaler`] turns it
//! into the fitted median (0) and sets its bit in the mask, so no `NaN` reaches the index.
//! Imports `model` only.

use std::collections::BTreeMap;

use light_curve_feature::prelude::*;
use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};

use crate::model::{AnnotationValue, Band, Detection, ObjectRecord, Unit, UpperLimit};

/// Version of the feature list; bump on any change to [`Embedder`]'s output.
pub const FEATURE_VERSION: u32 = 4;

/// Feature groups: the lightcurve-shape features, the packet context and the survey-blind
/// difference fluxes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FeatureGroup {
    Lightcurve,
    Context,
    /// The survey-blind group ([`FLUX_FEATURES`]): the same object seen by ZTF and by Rubin
    /// lands in the same place. Its neighbourhoods are not the index's, so a query by it
    /// scans every object's vector (exact).
    Flux,
    /// The flux group's nearest objects re-ranked by how well their lightcurves fit the
    /// query's (`science::curves`): the same object seen by another survey, found by its
    /// points rather than their statistics. Its features are the flux group's.
    Curves,
    /// Every group: the index's own metric.
    #[default]
    All,
}

impl FeatureGroup {
    pub fn as_str(self) -> &'static str {
        match self {
            FeatureGroup::Lightcurve => "lightcurve",
            FeatureGroup::Context => "context",
            FeatureGroup::Flux => "flux",
            FeatureGroup::Curves => "curves",
            FeatureGroup::All => "all",
        }
    }

    /// Whether the named feature belongs to this group.
    pub fn contains(self, feature: &str) -> bool {
        let context = feature.starts_with(CONTEXT_PREFIX);
        let flux = feature.starts_with(FLUX_PREFIX);
        match self {
            FeatureGroup::All => true,
            FeatureGroup::Context => context,
            FeatureGroup::Flux | FeatureGroup::Curves => flux,
            FeatureGroup::Lightcurve => !context && !flux,
        }
    }

    /// Whether a query by this group scans every object instead of ranking the index's
    /// candidates: the flux group's nearest objects are seldom among the index's.
    pub fn scans_every_object(self) -> bool {
        matches!(self, FeatureGroup::Flux | FeatureGroup::Curves)
    }
}

impl std::str::FromStr for FeatureGroup {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "lightcurve" => Ok(FeatureGroup::Lightcurve),
            "context" => Ok(FeatureGroup::Context),
            "flux" => Ok(FeatureGroup::Flux),
            "curves" => Ok(FeatureGroup::Curves),
            "all" => Ok(FeatureGroup::All),
            other => Err(format!(
                "unknown feature group {other:?}: expected lightcurve, context, flux, curves or all"
            )),
        }
    }
}

/// A query's own weights of the groups, on top of the spec's
/// (`lightcurve=W,context=W,flux=W`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupWeights {
    pub lightcurve: f64,
    pub context: f64,
    pub flux: f64,
}

impl GroupWeights {
    /// The weight of the group the named feature belongs to.
    pub fn of(&self, feature: &str) -> f64 {
        if FeatureGroup::Context.contains(feature) {
            self.context
        } else if FeatureGroup::Flux.contains(feature) {
            self.flux
        } else {
            self.lightcurve
        }
    }
}

impl std::str::FromStr for GroupWeights {
    type Err = String;
    /// Parses `lightcurve=W,context=W,flux=W` (any may be left out: weight 1).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let mut w = GroupWeights {
            lightcurve: 1.0,
            context: 1.0,
            flux: 1.0,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}` is not GROUP=WEIGHT"))?;
            let value: f64 = value
                .trim()
                .parse()
                .map_err(|_| format!("`{value}` is not a number"))?;
            if !(value.is_finite() && value >= 0.0) {
                return Err(format!(
                    "weight {value} of {name} is not a finite number >= 0"
                ));
            }
            match name.trim() {
                "lightcurve" => w.lightcurve = value,
                "context" => w.context = value,
                "flux" => w.flux = value,
                other => return Err(format!("unknown feature group `{other}`")),
            }
        }
        if w.lightcurve == 0.0 && w.context == 0.0 && w.flux == 0.0 {
            return Err("at least one group needs a weight above 0".into());
        }
        Ok(w)
    }
}

/// Name prefix of the context group's features.
pub const CONTEXT_PREFIX: &str = "ctx_";

/// The context group, in vector order.
pub const CONTEXT_FEATURES: [&str; 13] = [
    "ctx_point_source",
    "ctx_log_catalogue_distance",
    "ctx_catalogue_mag",
    "ctx_log_reference_distance",
    "ctx_reference_mag",
    "ctx_change_over_reference",
    "ctx_log_gaia_distance",
    "ctx_gaia_mag",
    "ctx_log_history",
    "ctx_real_bogus",
    "ctx_log_solar_system_distance",
    "ctx_negative_fraction",
    "ctx_galactic_latitude",
];

/// Name prefix of the flux group's features.
pub const FLUX_PREFIX: &str = "flux_";

/// The flux group, in vector order: what both ZTF and Rubin could see of an object's signed
/// difference flux (nJy), so that the same object seen by either survey gets the same values.
/// Only the points brighter than [`COMMON_DEPTH_MAG`] count (for the first five, every point
/// when none is): of every band together, log10 of the peak and the median |flux|, the share
/// of negative differences, log10(1 + time span) and the spread (standard deviation) of
/// log10 |flux|; of the blue (u, g) and the red (r, i, z, y) bands, log10 of the peak and the
/// median |flux| and the negative share. Statistics of the points rather than of their shape
/// (moments, periodograms), which 4-10 Rubin points per band cannot pin down.
pub const FLUX_FEATURES: [&str; 11] = [
    "flux_log_peak",
    "flux_log_median",
    "flux_negative_share",
    "flux_log_span",
    "flux_log_spread",
    "flux_blue_log_peak",
    "flux_blue_log_median",
    "flux_blue_negative_share",
    "flux_red_log_peak",
    "flux_red_log_median",
    "flux_red_negative_share",
];

/// The depth both surveys reach (ZTF's r-band 5σ depth, AB mag): the flux group counts only
/// points brighter than this, so Rubin's deeper points do not set its objects apart.
pub const COMMON_DEPTH_MAG: f64 = 20.6;

/// A "no source within the search radius" sentinel stands for this distance (arcsec).
pub const NONE_WITHIN_ARCSEC: f64 = 30.0;

/// Default weight of the context group (the lightcurve group weighs 1): chosen on the
/// labelled alerts of `../shared/data` (SCIENCE.md).
pub const DEFAULT_CONTEXT_WEIGHT: f64 = 2.0;

/// ZTF reference-image pixel scale, arcsec per pixel.
const ZTF_PIXEL_ARCSEC: f64 = 1.012;

/// AB zero point of a flux in nJy.
const NJY_ZERO_POINT: f64 = 31.4;

/// Scaled values are clipped to ±this, so a single extreme feature cannot dominate a distance.
pub const CLIP: f32 = 6.0;

/// Raw feature values of one object; `NaN` where a feature is undefined.
pub type RawFeatures = Vec<f64>;

/// One band's time, magnitude and weight (1/σ²) arrays.
type BandSeries = (Vec<f64>, Vec<f64>, Vec<f64>);

/// The bands that get the full per-band feature set.
const FULL_BANDS: [Band; 2] = [Band::G, Band::R];

/// Computes raw features. Build once and share: evaluators are immutable.
pub struct Embedder {
    per_band: Vec<Feature<f64>>,
    weighted_mean: Feature<f64>,
    periodogram: Feature<f64>,
    names: Vec<String>,
}

impl Default for Embedder {
    fn default() -> Self {
        Embedder::new()
    }
}

impl Embedder {
    pub fn new() -> Embedder {
        let per_band: Vec<Feature<f64>> = vec![
            Mean::new().into(),
            WeightedMean::new().into(),
            StandardDeviation::new().into(),
            Median::new().into(),
            Amplitude::new().into(),
            BeyondNStd::new(1.0).into(),
            Cusum::new().into(),
            InterPercentileRange::new(0.1).into(),
            Kurtosis::new().into(),
            LinearTrend::new().into(),
            LinearFit::new().into(),
            MagnitudePercentageRatio::new(0.4, 0.05).into(),
            MagnitudePercentageRatio::new(0.2, 0.1).into(),
            MaximumSlope::new().into(),
            MedianAbsoluteDeviation::new().into(),
            MedianBufferRangePercentage::new(0.1).into(),
            PercentAmplitude::new().into(),
            MeanVariance::new().into(),
            AndersonDarlingNormal::new().into(),
            ReducedChi2::new().into(),
            Skew::new().into(),
            StetsonK::new().into(),
            EtaE::new().into(),
        ];
        let periodogram: Feature<f64> = Periodogram::<f64, Feature<f64>>::new(1).into();
        let mut names = Vec::new();
        for band in FULL_BANDS {
            for f in &per_band {
                for n in f.get_names() {
                    names.push(format!("{}_{n}", band.name()));
                }
            }
        }
        for n in [
            "color_g_r",
            "color_r_i",
            "log_time_span",
            "log_n_g",
            "log_n_r",
            "log_n_i",
            "log_n_other",
            "log_period",
            "period_s_to_n",
        ] {
            names.push(n.to_string());
        }
        names.extend(CONTEXT_FEATURES.iter().map(|n| n.to_string()));
        names.extend(FLUX_FEATURES.iter().map(|n| n.to_string()));
        Embedder {
            per_band,
            weighted_mean: WeightedMean::new().into(),
            periodogram,
            names,
        }
    }

    /// Feature names, in vector order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn dim(&self) -> usize {
        self.names.len()
    }

    /// [`Embedder::features`] at the precision they are stored and indexed in (f32).
    pub fn raw_features(&self, record: &ObjectRecord, as_of: Option<f64>) -> Vec<f32> {
        self.features(record, as_of)
            .into_iter()
            .map(|x| x as f32)
            .collect()
    }

    /// Raw features of the lightcurve; with `as_of`, of its detections up to that MJD only.
    pub fn features(&self, record: &ObjectRecord, as_of: Option<f64>) -> RawFeatures {
        let detections: Vec<&Detection> = record
            .detections
            .iter()
            .filter(|d| as_of.is_none_or(|t| d.mjd <= t))
            .collect();
        let mut bands: BTreeMap<&Band, BandSeries> = BTreeMap::new();
        for d in &detections {
            if let Some((m, e)) = magnitude(d) {
                let (t, mm, w) = bands.entry(&d.band).or_default();
                t.push(d.mjd);
                mm.push(m);
                w.push(1.0 / (e * e).max(1e-8));
            }
        }
        let mut out = Vec::with_capacity(self.dim());
        let mut weighted_means = BTreeMap::new();
        for band in &FULL_BANDS {
            let width: usize = self.per_band.iter().map(|f| f.size_hint()).sum();
            match bands.get(band) {
                Some((t, m, w)) => {
                    let mut ts = TimeSeries::new(t.as_slice(), m.as_slice(), w.as_slice());
                    for f in &self.per_band {
                        out.extend(f.eval_or_fill(&mut ts, f64::NAN));
                    }
                }
                None => out.extend(std::iter::repeat_n(f64::NAN, width)),
            }
        }
        for (band, (t, m, w)) in &bands {
            let mut ts = TimeSeries::new(t.as_slice(), m.as_slice(), w.as_slice());
            let wm = self.weighted_mean.eval_or_fill(&mut ts, f64::NAN)[0];
            weighted_means.insert((*band).clone(), wm);
        }
        let colour = |a: Band, b: Band| match (weighted_means.get(&a), weighted_means.get(&b)) {
            (Some(x), Some(y)) => x - y,
            _ => f64::NAN,
        };
        out.push(colour(Band::G, Band::R));
        out.push(colour(Band::R, Band::I));
        let span = match (detections.first(), detections.last()) {
            (Some(a), Some(b)) => (1.0 + (b.mjd - a.mjd)).log10(),
            _ => f64::NAN,
        };
        out.push(span);
        let mut counts = [0usize; 4];
        for d in &detections {
            let slot = match d.band {
                Band::G => 0,
                Band::R => 1,
                Band::I => 2,
                _ => 3,
            };
            counts[slot] += 1;
        }
        out.extend(counts.iter().map(|&n| (1.0 + n as f64).log10()));
        let best = bands.values().max_by_key(|(t, _, _)| t.len());
        let (period, s_to_n) = match best {
            Some((t, m, w)) if t.len() >= 8 => {
                let mut ts = TimeSeries::new(t.as_slice(), m.as_slice(), w.as_slice());
                let v = self.periodogram.eval_or_fill(&mut ts, f64::NAN);
                (v[0].log10(), v[1])
            }
            _ => (f64::NAN, f64::NAN),
        };
        out.push(period);
        out.push(s_to_n);
        out.extend(context(record, &detections, as_of));
        out.extend(flux_group(&detections));
        for v in &mut out {
            if !v.is_finite() {
                *v = f64::NAN;
            }
        }
        out
    }
}

/// A numeric annotation of the record, unless an alert later than `as_of` carried it (the
/// record keeps only the latest value: an earlier view does not know it).
fn number(record: &ObjectRecord, name: &str, as_of: Option<f64>) -> Option<f64> {
    let a = record.annotations.get(name)?;
    if as_of.is_some_and(|t| a.mjd > t) {
        return None;
    }
    match a.value {
        AnnotationValue::Number(x) if x.is_finite() => Some(x),
        _ => None,
    }
}

/// log10 of a distance in arcsec; negative values (ZTF's -999: no source within the search
/// radius) stand for [`NONE_WITHIN_ARCSEC`].
fn log_distance(arcsec: Option<f64>) -> f64 {
    match arcsec {
        Some(d) if d >= 0.0 => (0.1 + d.min(NONE_WITHIN_ARCSEC)).log10(),
        Some(_) => (0.1 + NONE_WITHIN_ARCSEC).log10(),
        None => f64::NAN,
    }
}

/// A catalogue magnitude, `NaN` unless plausible (sentinels are negative or 99).
fn catalogue_mag(m: Option<f64>) -> f64 {
    m.filter(|m| (5.0..35.0).contains(m)).unwrap_or(f64::NAN)
}

/// The context group of a record ([`CONTEXT_FEATURES`], in order), as known at `as_of`.
fn context(record: &ObjectRecord, detections: &[&Detection], as_of: Option<f64>) -> [f64; 13] {
    let number = |name: &str| number(record, name, as_of);
    let ztf = |name: &str| number(&format!("candidate.{name}"));
    let point_source = ztf("sgscore1")
        .filter(|s| (0.0..=1.0).contains(s))
        .or_else(|| {
            number("diaSource.extendedness")
                .filter(|e| (0.0..=1.0).contains(e))
                .map(|e| 1.0 - e)
        });
    let catalogue_distance = ztf("distpsnr1").or_else(|| number("diaObject.nearbyObj1Dist"));
    let reference_distance =
        ztf("distnr").map(|px| if px >= 0.0 { px * ZTF_PIXEL_ARCSEC } else { px });
    let reference_mag = ztf("magnr")
        .filter(|m| (5.0..35.0).contains(m))
        .or_else(|| {
            number("diaSource.templateFlux")
                .filter(|f| *f > 0.0)
                .map(|f| NJY_ZERO_POINT - 2.5 * f.log10())
        });
    let mut mags: Vec<f64> = detections
        .iter()
        .filter_map(|d| magnitude(d).map(|(m, _)| m))
        .collect();
    mags.sort_by(f64::total_cmp);
    let median_mag = (!mags.is_empty()).then(|| mags[mags.len() / 2]);
    let change_over_reference = match (median_mag, reference_mag) {
        (Some(m), Some(r)) => m - r,
        _ => f64::NAN,
    };
    let history = ztf("ndethist")
        .or_else(|| number("diaObject.nDiaSources"))
        .filter(|n| *n >= 0.0)
        .map_or(f64::NAN, |n| (1.0 + n).log10());
    let real_bogus = ztf("drb")
        .or_else(|| ztf("rb"))
        .or_else(|| number("diaSource.reliability"))
        .filter(|x| (0.0..=1.0).contains(x))
        .unwrap_or(f64::NAN);
    // Only difference photometry has a sign: tables of magnitudes leave it undefined.
    let differences = detections
        .iter()
        .filter(|d| matches!(d.unit, Unit::DiffMag { .. } | Unit::FluxNjy))
        .count();
    let negative = detections.iter().filter(|d| is_negative(d)).count();
    let negative_fraction = if differences == 0 {
        f64::NAN
    } else {
        negative as f64 / differences as f64
    };
    [
        point_source.unwrap_or(f64::NAN),
        log_distance(catalogue_distance),
        catalogue_mag(ztf("srmag1")),
        log_distance(reference_distance),
        reference_mag.unwrap_or(f64::NAN),
        change_over_reference,
        log_distance(ztf("neargaia")),
        catalogue_mag(ztf("maggaia")),
        history,
        real_bogus,
        log_distance(ztf("ssdistnr")),
        negative_fraction,
        galactic_latitude(record.meta.ra, record.meta.dec),
    ]
}

/// A detection's signed difference flux (nJy): a ZTF difference magnitude turned back into
/// flux, negative when `isdiffpos` says so; a Rubin difference flux as sent. Tables of
/// magnitudes or fluxes are not differences: `None`.
pub fn signed_flux(d: &Detection) -> Option<f64> {
    let f = match d.unit {
        Unit::DiffMag { positive } => {
            let f = 10f64.powf((NJY_ZERO_POINT - d.value) / 2.5);
            if positive {
                f
            } else {
                -f
            }
        }
        Unit::FluxNjy => d.value,
        _ => return None,
    };
    (f.is_finite() && f != 0.0).then_some(f)
}

/// The flux (nJy) of a non-detection's limiting magnitude; `None` when not finite.
pub fn limit_flux(l: &UpperLimit) -> Option<f64> {
    let f = 10f64.powf((NJY_ZERO_POINT - l.limit_mag) / 2.5);
    (f.is_finite() && f > 0.0).then_some(f)
}

/// log10 of the peak and of the median |flux|, and the share of negative fluxes.
fn peak_median_negative(fluxes: &[f64]) -> [f64; 3] {
    if fluxes.is_empty() {
        return [f64::NAN; 3];
    }
    let mut logs: Vec<f64> = fluxes.iter().map(|f| f.abs().log10()).collect();
    logs.sort_by(f64::total_cmp);
    let median = if logs.len() % 2 == 1 {
        logs[logs.len() / 2]
    } else {
        (logs[logs.len() / 2 - 1] + logs[logs.len() / 2]) / 2.0
    };
    let negative = fluxes.iter().filter(|f| **f < 0.0).count() as f64 / fluxes.len() as f64;
    [logs[logs.len() - 1], median, negative]
}

/// The flux group of some detections ([`FLUX_FEATURES`], in order).
fn flux_group(detections: &[&Detection]) -> [f64; 11] {
    let depth = 10f64.powf((NJY_ZERO_POINT - COMMON_DEPTH_MAG) / 2.5);
    let points: Vec<(f64, f64, &Band)> = detections
        .iter()
        .filter_map(|d| Some((d.mjd, signed_flux(d)?, &d.band)))
        .collect();
    let bright: Vec<(f64, f64, &Band)> = points
        .iter()
        .copied()
        .filter(|p| p.1.abs() >= depth)
        .collect();
    let all = if bright.is_empty() { &points } else { &bright };
    let fluxes: Vec<f64> = all.iter().map(|p| p.1).collect();
    let [peak, median, negative] = peak_median_negative(&fluxes);
    let (span, spread) = if all.is_empty() {
        (f64::NAN, f64::NAN)
    } else {
        let (lo, hi) = all
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
                (lo.min(p.0), hi.max(p.0))
            });
        let logs: Vec<f64> = fluxes.iter().map(|f| f.abs().log10()).collect();
        let mean = logs.iter().sum::<f64>() / logs.len() as f64;
        let var = logs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / logs.len() as f64;
        ((1.0 + (hi - lo)).log10(), var.sqrt())
    };
    let of_bands = |blue: bool| -> [f64; 3] {
        let fluxes: Vec<f64> = bright
            .iter()
            .filter(|p| matches!(p.2, Band::U | Band::G) == blue)
            .filter(|p| !matches!(p.2, Band::Other(_)))
            .map(|p| p.1)
            .collect();
        peak_median_negative(&fluxes)
    };
    let [blue_peak, blue_median, blue_negative] = of_bands(true);
    let [red_peak, red_median, red_negative] = of_bands(false);
    [
        peak,
        median,
        negative,
        span,
        spread,
        blue_peak,
        blue_median,
        blue_negative,
        red_peak,
        red_median,
        red_negative,
    ]
}

/// Whether a detection is a negative difference (the source faded below its reference).
fn is_negative(d: &Detection) -> bool {
    match d.unit {
        Unit::DiffMag { positive } => !positive,
        Unit::FluxNjy => d.value < 0.0,
        _ => false,
    }
}

/// |sin b|, the absolute sine of the galactic latitude of (RA, Dec) in degrees.
pub fn galactic_latitude(ra: Option<f64>, dec: Option<f64>) -> f64 {
    // The north galactic pole (J2000).
    const POLE_RA: f64 = 192.859_48;
    const POLE_DEC: f64 = 27.128_25;
    match (ra, dec) {
        (Some(ra), Some(dec)) if ra.is_finite() && dec.is_finite() => {
            let (d, pd) = (dec.to_radians(), POLE_DEC.to_radians());
            let sin_b = d.sin() * pd.sin() + d.cos() * pd.cos() * (ra - POLE_RA).to_radians().cos();
            sin_b.abs()
        }
        _ => f64::NAN,
    }
}

/// A detection's AB magnitude and error, where it has one. Both surveys' differences are read
/// as one physical quantity: ZTF's `magpsf` is the magnitude of the absolute difference flux
/// (its sign in `isdiffpos`), so a Rubin difference flux (nJy) gets the magnitude of its
/// absolute value too; the sign is kept apart, in `ctx_negative_fraction`. Table fluxes
/// (`Unit::Flux`) are read only where positive.
pub fn magnitude(d: &Detection) -> Option<(f64, f64)> {
    match d.unit {
        Unit::DiffMag { .. } | Unit::Mag => Some((d.value, d.error)),
        Unit::FluxNjy if d.value != 0.0 => Some((
            NJY_ZERO_POINT - 2.5 * d.value.abs().log10(),
            2.5 / std::f64::consts::LN_10 * d.error / d.value.abs(),
        )),
        Unit::Flux if d.value > 0.0 => Some((
            NJY_ZERO_POINT - 2.5 * d.value.log10(),
            2.5 / std::f64::consts::LN_10 * d.error / d.value,
        )),
        _ => None,
    }
    .filter(|(m, e)| m.is_finite() && e.is_finite())
}

/// Robust scaling fitted on stored objects: (x − median) / (IQR / 1.349), clipped to ±[`CLIP`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scaler {
    pub median: Vec<f64>,
    pub scale: Vec<f64>,
}

impl Scaler {
    /// The identity, used until enough objects exist to fit.
    pub fn identity(dim: usize) -> Scaler {
        Scaler {
            median: vec![0.0; dim],
            scale: vec![1.0; dim],
        }
    }

    /// Fits on rows of raw features (`NaN` = missing, ignored per column).
    pub fn fit(rows: ArrayView2<f64>) -> Scaler {
        let dim = rows.ncols();
        let mut median = vec![0.0; dim];
        let mut scale = vec![1.0; dim];
        for (j, col) in rows.columns().into_iter().enumerate() {
            let mut v: Vec<f64> = col.iter().copied().filter(|x| x.is_finite()).collect();
            if v.is_empty() {
                continue;
            }
            v.sort_by(f64::total_cmp);
            let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
            median[j] = q(0.5);
            let iqr = q(0.75) - q(0.25);
            let s = if iqr > 1e-9 {
                iqr / 1.349
            } else {
                // Degenerate columns (mostly one value): fall back to the full range.
                let range = v[v.len() - 1] - v[0];
                if range > 1e-9 {
                    range / 4.0
                } else {
                    1.0
                }
            };
            scale[j] = s;
        }
        Scaler { median, scale }
    }

    /// Scales raw features; returns the vector and the mask of missing features.
    pub fn transform(&self, raw: &[f64]) -> (Vec<f32>, Vec<bool>) {
        let mut mask = vec![false; raw.len()];
        let v = raw
            .iter()
            .enumerate()
            .map(|(j, x)| {
                if x.is_finite() {
                    (((x - self.median[j]) / self.scale[j]) as f32).clamp(-CLIP, CLIP)
                } else {
                    mask[j] = true;
                    0.0
                }
            })
            .collect();
        (v, mask)
    }
}

/// Everything needed to reproduce a vector: the feature list, its version, the scaler and the
/// weights of the scaled features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingSpec {
    /// Bumped on every change (feature version, refit, new weights); vectors carry the spec
    /// they used.
    pub version: u64,
    pub feature_version: u32,
    pub feature_names: Vec<String>,
    pub scaler: Scaler,
    /// Objects the scaler was fitted on (0 = identity).
    pub fitted_on: u64,
    /// Multiplier of each scaled feature (empty: all 1, as specs written before weights).
    #[serde(default)]
    pub weights: Vec<f64>,
    /// Where the weights come from.
    #[serde(default)]
    pub metric: Metric,
}

/// How an [`EmbeddingSpec`]'s weights were chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    /// Weight of the context group (the lightcurve group weighs 1).
    pub context_weight: f64,
    /// The metric learned from labels, when one replaced the group weights.
    pub learned: Option<LearnedMetric>,
}

impl Default for Metric {
    fn default() -> Self {
        Metric {
            context_weight: DEFAULT_CONTEXT_WEIGHT,
            learned: None,
        }
    }
}

/// What a learned metric was fitted on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LearnedMetric {
    pub method: String,
    /// Labelled objects and classes it was fitted on.
    pub labelled_objects: u64,
    pub classes: Vec<String>,
}

/// The per-feature weights that give each group its weight.
pub fn group_weights(names: &[String], context_weight: f64) -> Vec<f64> {
    names
        .iter()
        .map(|n| {
            if FeatureGroup::Context.contains(n) {
                context_weight
            } else {
                1.0
            }
        })
        .collect()
}

impl EmbeddingSpec {
    pub fn initial(embedder: &Embedder) -> EmbeddingSpec {
        EmbeddingSpec {
            version: 1,
            feature_version: FEATURE_VERSION,
            feature_names: embedder.names().to_vec(),
            scaler: Scaler::identity(embedder.dim()),
            fitted_on: 0,
            weights: group_weights(embedder.names(), DEFAULT_CONTEXT_WEIGHT),
            metric: Metric::default(),
        }
    }

    /// Scales and weighs raw features: the vector and the mask of missing features.
    pub fn transform(&self, raw: &[f64]) -> (Vec<f32>, Vec<bool>) {
        let (mut v, mask) = self.scaler.transform(raw);
        if self.weights.len() == v.len() {
            for (x, w) in v.iter_mut().zip(&self.weights) {
                *x *= *w as f32;
            }
        }
        (v, mask)
    }

    /// [`Self::transform`] of stored (f32) raw features.
    pub fn scale(&self, raw: &[f32]) -> (Vec<f32>, Vec<bool>) {
        let raw: Vec<f64> = raw.iter().map(|&x| f64::from(x)).collect();
        self.transform(&raw)
    }

    /// Whether this spec was made by the given embedder's feature list.
    pub fn matches(&self, embedder: &Embedder) -> bool {
        self.feature_version == FEATURE_VERSION && self.feature_names == embedder.names()
    }

    /// A spec with the scaler refitted on `rows`; the weights are kept.
    pub fn refit(&self, rows: &Array2<f64>) -> EmbeddingSpec {
        EmbeddingSpec {
            version: self.version + 1,
            feature_version: FEATURE_VERSION,
            feature_names: self.feature_names.clone(),
            scaler: Scaler::fit(rows.view()),
            fitted_on: rows.nrows() as u64,
            weights: self.weights.clone(),
            metric: self.metric.clone(),
        }
    }

    /// This spec with other weights (a new version).
    pub fn reweighed(&self, weights: Vec<f64>, metric: Metric) -> EmbeddingSpec {
        EmbeddingSpec {
            version: self.version + 1,
            weights,
            metric,
            ..self.clone()
        }
    }

    /// This spec with the group weights of its metric in place of learned ones: the space a
    /// metric is learned in.
    pub fn unlearned(&self) -> EmbeddingSpec {
        EmbeddingSpec {
            weights: group_weights(&self.feature_names, self.metric.context_weight),
            metric: Metric {
                learned: None,
                ..self.metric.clone()
            },
            ..self.clone()
        }
    }

    /// Multipliers (0 or 1) that keep one group's features of a vector of this spec.
    pub fn group_mask(&self, group: FeatureGroup) -> Vec<f32> {
        self.group_multipliers(group, None)
    }

    /// Positions of the features that belong to a group whose queries scan every object
    /// ([`FeatureGroup::scans_every_object`]), in vector order.
    pub fn scanned_dims(&self) -> Vec<usize> {
        self.feature_names
            .iter()
            .enumerate()
            .filter(|(_, n)| {
                [
                    FeatureGroup::Lightcurve,
                    FeatureGroup::Context,
                    FeatureGroup::Flux,
                ]
                .into_iter()
                .any(|g| g.scans_every_object() && g.contains(n))
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// Multipliers of a vector of this spec for a query: the preset's group kept, each group
    /// times the query's own weight.
    pub fn group_multipliers(
        &self,
        group: FeatureGroup,
        weights: Option<GroupWeights>,
    ) -> Vec<f32> {
        self.feature_names
            .iter()
            .map(|n| {
                let kept = if group.contains(n) { 1.0 } else { 0.0 };
                let w = weights.map_or(1.0, |w| w.of(n));
                (kept * w) as f32
            })
            .collect()
    }
}

/// Euclidean distance, the metric of the index.
pub fn l2(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f32>()
        .sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Survey;

    fn record(points: &[(f64, Band, f64)]) -> ObjectRecord {
        let mut r = ObjectRecord::new("X".into(), Survey::External);
        r.detections = points
            .iter()
            .map(|(t, b, m)| Detection::magnitude(*t, b.clone(), *m, 0.05))
            .collect();
        r
    }

    #[test]
    fn short_lightcurves_give_nan_not_panics_and_scale_to_finite() {
        let e = Embedder::new();
        let raw = e.features(&record(&[(1.0, Band::G, 18.0)]), None);
        assert_eq!(raw.len(), e.dim());
        assert!(raw.iter().any(|x| x.is_nan()));
        let (v, mask) = Scaler::identity(e.dim()).transform(&raw);
        assert!(v.iter().all(|x| x.is_finite()));
        assert!(mask.iter().any(|m| *m));
    }

    #[test]
    fn as_of_uses_only_earlier_detections() {
        let e = Embedder::new();
        let pts: Vec<(f64, Band, f64)> = (0..40)
            .map(|i| {
                let t = f64::from(i);
                (
                    t,
                    if i % 2 == 0 { Band::G } else { Band::R },
                    18.0 + (t * 0.7).sin(),
                )
            })
            .collect();
        let full = record(&pts);
        let half = record(&pts[..20]);
        assert_eq!(e.features(&full, Some(19.5)).len(), e.dim());
        let a = e.features(&full, Some(19.5));
        let b = e.features(&half, None);
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
    }

    fn context_of(survey: Survey, fields: &[(&str, f64)], points: &[(f64, Band, f64)]) -> Vec<f64> {
        let mut r = record(points);
        r.survey = survey;
        for (name, x) in fields {
            r.annotations.insert(
                name.to_string(),
                crate::model::Annotation {
                    value: AnnotationValue::Number(*x),
                    mjd: 0.0,
                },
            );
        }
        r.refresh_meta();
        let e = Embedder::new();
        let raw = e.features(&r, None);
        let start = group_start(&e, CONTEXT_FEATURES[0]);
        raw[start..start + CONTEXT_FEATURES.len()].to_vec()
    }

    fn group_start(e: &Embedder, first: &str) -> usize {
        e.names().iter().position(|n| n == first).unwrap()
    }

    /// The flux group of detections given as (MJD, band, signed flux in nJy), written once as
    /// ZTF difference magnitudes (sign in `isdiffpos`) and once as Rubin difference fluxes.
    fn flux_of(points: &[(f64, Band, f64)]) -> (Vec<f64>, Vec<f64>) {
        let e = Embedder::new();
        let start = group_start(&e, FLUX_FEATURES[0]);
        let written = |ztf: bool| {
            let mut r = ObjectRecord::new("X".into(), Survey::External);
            r.detections = points
                .iter()
                .map(|(t, b, f)| {
                    let mut d = Detection::magnitude(*t, b.clone(), *f, 0.1 * f.abs());
                    if ztf {
                        d.value = NJY_ZERO_POINT - 2.5 * f.abs().log10();
                        d.unit = Unit::DiffMag { positive: *f > 0.0 };
                    } else {
                        d.unit = Unit::FluxNjy;
                    }
                    d
                })
                .collect();
            e.features(&r, None)[start..start + FLUX_FEATURES.len()].to_vec()
        };
        (written(true), written(false))
    }

    #[test]
    fn the_flux_group_is_one_for_both_surveys_and_counts_only_what_both_could_see() {
        let depth = 10f64.powf((NJY_ZERO_POINT - COMMON_DEPTH_MAG) / 2.5);
        let points = [
            (10.0, Band::G, 4.0 * depth),
            (12.0, Band::R, 10.0 * depth),
            (15.0, Band::R, -2.0 * depth),
            (16.0, Band::Z, 0.5 * depth), // too faint for ZTF: left out
            (30.0, Band::U, 1.5 * depth),
        ];
        let (ztf, rubin) = flux_of(&points);
        for (i, name) in FLUX_FEATURES.iter().enumerate() {
            assert!(
                (ztf[i] - rubin[i]).abs() < 1e-9,
                "{name}: {} vs {}",
                ztf[i],
                rubin[i]
            );
        }
        let at = |name: &str| ztf[FLUX_FEATURES.iter().position(|n| *n == name).unwrap()];
        let l = depth.log10();
        assert!((at("flux_log_peak") - (l + 1.0)).abs() < 1e-9);
        // |flux| of the four bright points: 1.5, 2, 4, 10 x depth.
        assert!((at("flux_log_median") - (l + (2f64.log10() + 4f64.log10()) / 2.0)).abs() < 1e-9);
        assert!((at("flux_negative_share") - 0.25).abs() < 1e-12);
        assert!((at("flux_log_span") - 21f64.log10()).abs() < 1e-12);
        assert!((at("flux_blue_log_peak") - (l + 4f64.log10())).abs() < 1e-9);
        assert!((at("flux_blue_negative_share")).abs() < 1e-12);
        assert!((at("flux_red_negative_share") - 0.5).abs() < 1e-12);
        assert!((at("flux_red_log_median") - (l + (2f64.log10() + 1.0) / 2.0)).abs() < 1e-9);

        // Nothing bright: the all-band features use every point, the band ones are missing.
        let (faint, _) = flux_of(&[(1.0, Band::G, 0.1 * depth), (2.0, Band::R, -0.2 * depth)]);
        assert!((faint[0] - (0.2 * depth).log10()).abs() < 1e-9);
        assert!((faint[2] - 0.5).abs() < 1e-12);
        assert!(faint[5..].iter().all(|x| x.is_nan()));

        // Tables of magnitudes are not differences: no flux group.
        let e = Embedder::new();
        let start = group_start(&e, FLUX_FEATURES[0]);
        let table = e.features(&record(&[(1.0, Band::G, 18.0), (2.0, Band::R, 17.0)]), None);
        assert!(table[start..start + FLUX_FEATURES.len()]
            .iter()
            .all(|x| x.is_nan()));
    }

    #[test]
    fn ztf_and_rubin_fields_of_one_meaning_fill_one_feature() {
        let pts = [(1.0, Band::G, 18.0), (2.0, Band::G, 18.2)];
        let ztf = context_of(
            Survey::Ztf,
            &[
                ("candidate.sgscore1", 0.9),
                ("candidate.distpsnr1", -999.0),
                ("candidate.magnr", 17.0),
                ("candidate.ndethist", 99.0),
                ("candidate.drb", 0.8),
                ("candidate.srmag1", -999.0),
            ],
            &pts,
        );
        let at = |name: &str| CONTEXT_FEATURES.iter().position(|n| *n == name).unwrap();
        assert!((ztf[at("ctx_point_source")] - 0.9).abs() < 1e-12);
        assert!(
            (ztf[at("ctx_log_catalogue_distance")] - (NONE_WITHIN_ARCSEC + 0.1).log10()).abs()
                < 1e-12,
            "-999 is 'no source within the radius', a far distance"
        );
        assert!(
            ztf[at("ctx_catalogue_mag")].is_nan(),
            "a -999 magnitude is missing"
        );
        assert!((ztf[at("ctx_reference_mag")] - 17.0).abs() < 1e-12);
        // The median detection (18.2 of [18.0, 18.2]) sits 1.2 mag below the reference.
        assert!((ztf[at("ctx_change_over_reference")] - 1.2).abs() < 1e-9);
        assert!((ztf[at("ctx_log_history")] - 2.0).abs() < 1e-12);
        assert!((ztf[at("ctx_real_bogus")] - 0.8).abs() < 1e-12);
        assert!(
            ztf[at("ctx_log_gaia_distance")].is_nan(),
            "not sent: missing"
        );
        assert!(
            ztf[at("ctx_negative_fraction")].is_nan(),
            "magnitudes (not differences) have no sign"
        );

        let rubin = context_of(
            Survey::Lsst,
            &[
                ("diaSource.extendedness", 0.25),
                ("diaSource.reliability", 0.7),
                ("diaSource.templateFlux", 3631e9 * 1e-7),
                ("diaObject.nDiaSources", 9.0),
            ],
            &[],
        );
        assert!((rubin[at("ctx_point_source")] - 0.75).abs() < 1e-12);
        assert!((rubin[at("ctx_real_bogus")] - 0.7).abs() < 1e-12);
        assert!(
            (rubin[at("ctx_reference_mag")] - 17.5).abs() < 0.01,
            "3631 Jy x 1e-7 is AB 17.5"
        );
        assert!((rubin[at("ctx_log_history")] - 1.0).abs() < 1e-12);
        assert!(rubin[at("ctx_catalogue_mag")].is_nan());
    }

    #[test]
    fn group_weights_parse_and_multiply_their_group() {
        let w: GroupWeights = "lightcurve=2, context=0.5".parse().unwrap();
        assert_eq!((w.lightcurve, w.context), (2.0, 0.5));
        let w: GroupWeights = "context=3".parse().unwrap();
        assert_eq!((w.lightcurve, w.context, w.flux), (1.0, 3.0, 1.0));
        let w: GroupWeights = "flux=0.5,lightcurve=0".parse().unwrap();
        assert_eq!((w.lightcurve, w.context, w.flux), (0.0, 1.0, 0.5));
        assert_eq!(w.of("flux_log_peak"), 0.5);
        assert_eq!(w.of("ctx_real_bogus"), 1.0);
        assert_eq!(w.of("g_mean"), 0.0);
        for bad in [
            "context=-1",
            "shape=1",
            "lightcurve",
            "lightcurve=0,context=0,flux=0",
            "context=x",
        ] {
            assert!(bad.parse::<GroupWeights>().is_err(), "{bad}");
        }
        let spec = EmbeddingSpec::initial(&Embedder::new());
        let m = spec.group_multipliers(FeatureGroup::All, Some("context=3".parse().unwrap()));
        for (name, x) in spec.feature_names.iter().zip(&m) {
            let want = if name.starts_with(CONTEXT_PREFIX) {
                3.0
            } else {
                1.0
            };
            assert_eq!(*x, want, "{name}");
        }
        let m = spec.group_multipliers(FeatureGroup::Context, Some("context=3".parse().unwrap()));
        assert_eq!(
            m.iter().filter(|x| **x == 0.0).count(),
            spec.feature_names.len() - 13
        );
    }

    #[test]
    fn galactic_latitude_is_one_at_the_pole_and_zero_on_the_plane() {
        assert!((galactic_latitude(Some(192.85948), Some(27.12825)) - 1.0).abs() < 1e-9);
        // The galactic centre.
        assert!(galactic_latitude(Some(266.405), Some(-28.936)) < 0.001);
        assert!(galactic_latitude(None, Some(1.0)).is_nan());
    }

    #[test]
    fn weights_multiply_the_scaled_features_and_groups_split_the_names() {
        let e = Embedder::new();
        let spec = EmbeddingSpec::initial(&e);
        let n_ctx = spec
            .feature_names
            .iter()
            .filter(|n| FeatureGroup::Context.contains(n))
            .count();
        assert_eq!(n_ctx, CONTEXT_FEATURES.len());
        let raw = vec![1.0; e.dim()];
        let (v, _) = spec.transform(&raw);
        for (name, x) in spec.feature_names.iter().zip(&v) {
            let want = if name.starts_with(CONTEXT_PREFIX) {
                DEFAULT_CONTEXT_WEIGHT as f32
            } else {
                1.0
            };
            assert_eq!(*x, want, "{name}");
        }
        let mask = spec.group_mask(FeatureGroup::Lightcurve);
        assert_eq!(
            mask.iter().filter(|m| **m == 0.0).count(),
            n_ctx + FLUX_FEATURES.len()
        );
        let flux = spec.group_mask(FeatureGroup::Flux);
        for (name, m) in spec.feature_names.iter().zip(&flux) {
            assert_eq!(*m == 1.0, name.starts_with(FLUX_PREFIX), "{name}");
        }
        // A spec written before weights existed reads as all-ones weights.
        let mut old = spec.clone();
        old.weights.clear();
        assert_eq!(old.transform(&raw).0, vec![1.0; e.dim()]);
    }

    #[test]
    fn flux_becomes_ab_magnitude() {
        let d = Detection {
            mjd: 0.0,
            band: Band::G,
            value: 3631e9,
            error: 3631e8,
            unit: Unit::FluxNjy,
            source_id: None,
            ra: None,
            dec: None,
        };
        let (m, e) = magnitude(&d).unwrap();
        assert!((m - 0.0).abs() < 0.01, "3631 Jy is magnitude 0, got {m}");
        assert!((e - 0.10857).abs() < 1e-4);
    }
}
