//! Lightcurve -> vector: light-curve features per band, a robust scaler, a versioned spec.
//!
//! Pure: takes an [`ObjectRecord`] and returns numbers. Features come from the
//! `light-curve-feature` crate, evaluated per band on magnitudes:
//!
//! - every measurement is brought to an AB magnitude: ZTF difference magnitudes and table
//!   magnitudes as they are; fluxes (Rubin nJy, tables assumed nJy) as 31.4 − 2.5·log10(F) with
//!   σm = 1.0857·σF/F, for F > 0 (non-positive difference fluxes carry no magnitude and only count
//!   as detections); ZTF forced photometry (DN) is not used;
//! - for the bands g and r (the bands ZTF, Rubin and SDSS share), the 26 values Fink's anomaly
//!   module computes plus EtaE; then colours g−r and r−i (differences of weighted-mean
//!   magnitudes), log10(1 + time span), log10(1 + detections) in g, r, i and other bands, and the
//!   highest Lomb–Scargle periodogram peak (log10 period, signal-to-noise) of the best-sampled band.
//!
//! A feature a lightcurve is too short for is `NaN` in [`RawFeatures`]; the [`Scaler`] turns it
//! into the fitted median (0) and sets its bit in the mask, so no `NaN` reaches the index.
//! Imports `model` only.

use std::collections::BTreeMap;

use light_curve_feature::prelude::*;
use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};

use crate::model::{Band, Detection, ObjectRecord, Unit};

/// Version of the feature list; bump on any change to [`Embedder`]'s output.
pub const FEATURE_VERSION: u32 = 1;

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
        for v in &mut out {
            if !v.is_finite() {
                *v = f64::NAN;
            }
        }
        out
    }
}

/// A detection's AB magnitude and error, where it has one.
pub fn magnitude(d: &Detection) -> Option<(f64, f64)> {
    match d.unit {
        Unit::DiffMag { .. } | Unit::Mag => Some((d.value, d.error)),
        Unit::FluxNjy | Unit::Flux if d.value > 0.0 => Some((
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

/// Everything needed to reproduce a vector: the feature list, its version and the scaler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingSpec {
    /// Bumped on every change (feature version or refit); vectors carry the spec they used.
    pub version: u64,
    pub feature_version: u32,
    pub feature_names: Vec<String>,
    pub scaler: Scaler,
    /// Objects the scaler was fitted on (0 = identity).
    pub fitted_on: u64,
}

impl EmbeddingSpec {
    pub fn initial(embedder: &Embedder) -> EmbeddingSpec {
        EmbeddingSpec {
            version: 1,
            feature_version: FEATURE_VERSION,
            feature_names: embedder.names().to_vec(),
            scaler: Scaler::identity(embedder.dim()),
            fitted_on: 0,
        }
    }

    /// Scales stored (f32) raw features with this spec's scaler: the vector and the mask of
    /// missing features.
    pub fn scale(&self, raw: &[f32]) -> (Vec<f32>, Vec<bool>) {
        let raw: Vec<f64> = raw.iter().map(|&x| f64::from(x)).collect();
        self.scaler.transform(&raw)
    }

    /// Whether this spec was made by the given embedder's feature list.
    pub fn matches(&self, embedder: &Embedder) -> bool {
        self.feature_version == FEATURE_VERSION && self.feature_names == embedder.names()
    }

    /// A spec with the scaler refitted on `rows`.
    pub fn refit(&self, rows: &Array2<f64>) -> EmbeddingSpec {
        EmbeddingSpec {
            version: self.version + 1,
            feature_version: FEATURE_VERSION,
            feature_names: self.feature_names.clone(),
            scaler: Scaler::fit(rows.view()),
            fitted_on: rows.nrows() as u64,
        }
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
