//! Deterministic augmentation of real lightcurves, to reach survey-scale object counts in
//! benchmarks and scale tests from the few hundred real objects of `data/`.
//!
//! Each synthetic object is a real lightcurve with its times shifted, its brightness offset,
//! Gaussian noise of its own errors added and a random fraction of its points dropped, all
//! drawn from a seeded generator: the same seed gives the same objects. Pure; imports `model`.

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::model::{Alert, Detection, ObjectRecord};

/// How strongly to perturb.
#[derive(Debug, Clone)]
pub struct Augment {
    /// Largest time shift, days (uniform in ±).
    pub max_shift_days: f64,
    /// Largest brightness offset, magnitudes (uniform in ±); fluxes are scaled to match.
    pub max_offset_mag: f64,
    /// Fraction of points dropped (at most; uniform in 0..this).
    pub max_drop: f64,
}

impl Default for Augment {
    fn default() -> Self {
        Augment {
            max_shift_days: 365.0,
            max_offset_mag: 1.0,
            max_drop: 0.3,
        }
    }
}

/// The `i`-th synthetic object made from `base` (as one alert holding its whole lightcurve).
pub fn augment(base: &ObjectRecord, i: u64, seed: u64, how: &Augment) -> Alert {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let shift = rng.gen_range(-how.max_shift_days..=how.max_shift_days);
    let offset = rng.gen_range(-how.max_offset_mag..=how.max_offset_mag);
    let drop = rng.gen_range(0.0..=how.max_drop);
    let flux_factor = 10f64.powf(-offset / 2.5);
    let mut detections: Vec<Detection> = Vec::with_capacity(base.detections.len());
    for d in &base.detections {
        if rng.gen_bool(drop) && base.detections.len() > 3 {
            continue;
        }
        let noise = Normal::new(0.0, d.error.max(1e-6))
            .map(|n| n.sample(&mut rng))
            .unwrap_or(0.0);
        let value = match d.unit {
            crate::model::Unit::DiffMag { .. } | crate::model::Unit::Mag => {
                d.value + offset + noise
            }
            _ => d.value * flux_factor + noise,
        };
        detections.push(Detection {
            mjd: d.mjd + shift,
            value,
            source_id: None,
            ..d.clone()
        });
    }
    Alert::from_detections(
        format!("syn{i:07}-{}", base.object_id.replace('/', "_")),
        base.survey,
        detections,
    )
}

/// The detections of `alert` up to `fraction` of its time span, as an alert of the same object:
/// the earlier state of a growing lightcurve.
pub fn truncate(alert: &Alert, fraction: f64) -> Alert {
    let (t0, t1) = alert
        .detections
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), d| {
            (a.min(d.mjd), b.max(d.mjd))
        });
    let cut = t0 + (t1 - t0) * fraction;
    let detections: Vec<Detection> = alert
        .detections
        .iter()
        .filter(|d| d.mjd <= cut)
        .cloned()
        .collect();
    Alert {
        mjd: detections.iter().map(|d| d.mjd).fold(f64::MIN, f64::max),
        detections,
        ..alert.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Band, Survey};

    #[test]
    fn same_seed_same_object() {
        let mut base = ObjectRecord::new("b".into(), Survey::External);
        base.detections = (0..20)
            .map(|i| Detection::magnitude(f64::from(i), Band::G, 18.0, 0.05))
            .collect();
        let a = augment(&base, 3, 9, &Augment::default());
        let b = augment(&base, 3, 9, &Augment::default());
        assert_eq!(a, b);
        assert_ne!(a, augment(&base, 4, 9, &Augment::default()));
        let half = truncate(&a, 0.5);
        assert!(half.detections.len() < a.detections.len());
    }
}
