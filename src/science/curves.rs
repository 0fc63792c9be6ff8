//! How well two lightcurves fit each other: a distance between objects that compares their
//! points, not statistics of them, so that one object seen by two surveys (different cadence,
//! bands and depth) is found again (issue 16's twins).
//!
//! Each lightcurve is a set of signed difference fluxes (nJy) at (time, wavelength), and the
//! limits (nJy) of the visits that detected nothing. The *prediction* of a curve `a` at a point
//! (t, λ) is, for each of `a`'s bands whose points span t, its flux linearly interpolated in
//! time; then those band values linearly interpolated in wavelength (the nearest band's value
//! beyond the outermost); where none of `a`'s bands spans t, `a`'s object was not seen then,
//! and its difference flux is taken as 0. The *mismatch* of `b` against `a` is
//!
//! ```text
//!     (Σ (f_b − a(t + s, λ))² + W Σ e²)  /  (Σ (f_b² + a(t + s, λ)²) + W Σ e²)
//! ```
//!
//! over `b`'s points, where `e = max(|a(t + s, λ)| − L, 0)` is how far `a`'s prediction, where it
//! has one, rises above `b`'s limit `L` at each of `b`'s non-detections, weighed by
//! `W` = [`LIMIT_WEIGHT`]: a residual at a detection may be noise or the interpolation's error,
//! while a flux predicted above a limit the other survey reached is one it would have seen, so
//! a fit that needs one is all but ruled out. 0 for a perfect fit, 1 for unrelated fluxes, 2
//! for opposite ones; scale-aware, so that a fainter copy of the same shape does not fit. It counts when `a` predicts at least [`MIN_POINTS`] of `b`'s points
//! from its own. Without the points `a` does not span and `b`'s limits, a lightcurve fitted on
//! a few points at its ends matched better than the same object's twin fitted on all of them
//! (SCIENCE.md). The distance of two curves is the least mismatch over time shifts `s`
//! of ±[`MAX_SHIFT_DAYS`] (in steps of [`SHIFT_STEP_DAYS`]: the same shape a few weeks apart
//! fits), each shift adding [`SHIFT_COST`] × |s| / [`MAX_SHIFT_DAYS`] to its mismatch, both ways
//! (`b` against `a` and `a` against `b`), and two ways of reading a curve: every point of `b`,
//! and only `b`'s points in bands that `a` has. Difference fluxes of a variable star are
//! measured against each band's own reference, so one band's values do not predict another's:
//! the second reading keeps a band that `a` lacks from spoiling a fit that the shared bands
//! make. One object seen by two surveys is seen at the same dates, so a shift must earn its
//! cost: with 31 shifts to choose from, another object fits a few points by chance more often
//! than the same object fits at its own dates.
//!
//! [`compare`] tells apart the two ways a fit can fail: two lightcurves observed more than
//! [`MAX_SHIFT_DAYS`] apart ([`Fit::Apart`]: an object seen a year before another is not the
//! same transient, nor this season's kind of it), and two observed over the same weeks with too
//! few points to predict each other ([`Fit::TooFew`]: nothing is known, as with two objects of
//! three detections each). This is a comparison of objects observed over the same weeks (one
//! object seen by two surveys, or this season's transients), not a search for a shape over
//! every epoch, which the flux preset serves. Aligning the curves by their brightest points as
//! well was tried and lost twins (SCIENCE.md).
//!
//! Measured on generated twins (`bench/science/surveys.py`, SCIENCE.md). Imports `model` only.

use crate::model::Band;

/// Points of `b` that `a` must predict for a mismatch to count.
pub const MIN_POINTS: usize = 3;
/// How much more a prediction above the other curve's limit counts than the same residual at a
/// detection. Measured on generated twins (SCIENCE.md): weights of 30 to 1,000 find the same
/// share of twins (within 0.003 on average over three seeds), 1 finds 2.4 points fewer.
pub const LIMIT_WEIGHT: f64 = 100.0;
/// The largest time shift tried, days.
pub const MAX_SHIFT_DAYS: f64 = 30.0;
/// The step between time shifts, days.
pub const SHIFT_STEP_DAYS: f64 = 2.0;
/// What a shift of [`MAX_SHIFT_DAYS`] adds to a mismatch (in proportion to the shift). Measured
/// on generated twins (SCIENCE.md): with it, 0.909-0.971 of them are found against 0.876-0.956
/// with free shifts (three seeds, 300 candidates); 0.3 finds 0.898-0.978.
pub const SHIFT_COST: f64 = 1.0;

/// How two lightcurves compare ([`compare`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fit {
    /// Their least mismatch with its shift's cost (see the module documentation): 0 to 3.
    Mismatch(f64),
    /// Observed over the same weeks (within [`MAX_SHIFT_DAYS`]), but neither predicts
    /// [`MIN_POINTS`] of the other's points at any shift, or one has no points: nothing is
    /// known.
    TooFew,
    /// Observed more than [`MAX_SHIFT_DAYS`] apart: not comparable.
    Apart,
}

/// A band's effective wavelength (nm), the same for ZTF's and Rubin's filters of one name;
/// `None` for a band of no known filter.
pub fn wavelength_nm(band: &Band) -> Option<f64> {
    Some(match band {
        Band::U => 367.0,
        Band::G => 482.0,
        Band::R => 626.0,
        Band::I => 767.0,
        Band::Z => 900.0,
        Band::Y => 1000.0,
        Band::Other(_) => return None,
    })
}

/// One band of a [`Curve`]: its wavelength and its points in time order.
#[derive(Debug, Clone)]
struct BandPoints {
    wavelength: f64,
    times: Vec<f64>,
    fluxes: Vec<f64>,
}

/// A lightcurve as the fit reads it.
#[derive(Debug, Clone, Default)]
pub struct Curve {
    /// Bands with two points or more, by wavelength.
    bands: Vec<BandPoints>,
    /// Every point: (time, wavelength, flux).
    points: Vec<(f64, f64, f64)>,
    /// The limits of the visits that detected nothing: (time, wavelength, flux).
    limits: Vec<(f64, f64, f64)>,
}

impl Curve {
    /// The curve of points (MJD, wavelength in nm, signed difference flux in nJy); points
    /// that are not finite are left out.
    pub fn new(points: impl IntoIterator<Item = (f64, f64, f64)>) -> Curve {
        let mut points: Vec<(f64, f64, f64)> = points
            .into_iter()
            .filter(|(t, w, f)| t.is_finite() && w.is_finite() && f.is_finite())
            .collect();
        points.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.total_cmp(&b.0)));
        let mut bands: Vec<BandPoints> = Vec::new();
        for &(t, w, f) in &points {
            match bands.last_mut() {
                Some(b) if b.wavelength == w => {
                    b.times.push(t);
                    b.fluxes.push(f);
                }
                _ => bands.push(BandPoints {
                    wavelength: w,
                    times: vec![t],
                    fluxes: vec![f],
                }),
            }
        }
        bands.retain(|b| b.times.len() >= 2);
        Curve {
            bands,
            points,
            limits: Vec::new(),
        }
    }

    /// This curve with the limits (MJD, wavelength in nm, limiting flux in nJy) of the visits
    /// that detected nothing; limits that are not finite and positive are left out.
    pub fn with_limits(mut self, limits: impl IntoIterator<Item = (f64, f64, f64)>) -> Curve {
        self.limits = limits
            .into_iter()
            .filter(|(t, w, l)| t.is_finite() && w.is_finite() && l.is_finite() && *l > 0.0)
            .collect();
        self
    }

    /// The first and last time of its points.
    fn span(&self) -> Option<(f64, f64)> {
        self.points.iter().fold(None, |acc, &(t, _, _)| match acc {
            None => Some((t, t)),
            Some((lo, hi)) => Some((f64::min(lo, t), f64::max(hi, t))),
        })
    }

    fn has_band(&self, wavelength: f64) -> bool {
        self.bands.iter().any(|b| b.wavelength == wavelength)
    }

    /// How many points it has.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The flux predicted at time `t` and wavelength `w` (see the module documentation);
    /// `None` where no band's points span `t`. `scratch` holds the band values.
    fn predict(&self, t: f64, w: f64, scratch: &mut Vec<(f64, f64)>) -> Option<f64> {
        scratch.clear();
        for b in &self.bands {
            let (first, last) = (b.times[0], b.times[b.times.len() - 1]);
            if t < first || t > last {
                continue;
            }
            scratch.push((b.wavelength, interpolate(&b.times, &b.fluxes, t)));
        }
        let (&(w0, f0), &(w1, f1)) = (scratch.first()?, scratch.last()?);
        if w <= w0 {
            return Some(f0);
        }
        if w >= w1 {
            return Some(f1);
        }
        let k = scratch.partition_point(|&(wk, _)| wk <= w);
        let ((wa, fa), (wb, fb)) = (scratch[k - 1], scratch[k]);
        Some(fa + (fb - fa) * (w - wa) / (wb - wa))
    }

    /// The mismatch of `other` against this curve shifted by `shift` days (`other`'s point at
    /// t is compared with this curve at t + shift); with `shared`, only `other`'s points and
    /// limits in bands this curve has. `None` when this curve predicts fewer than
    /// [`MIN_POINTS`] of those points.
    fn mismatch(
        &self,
        other: &Curve,
        shift: f64,
        shared: bool,
        scratch: &mut Vec<(f64, f64)>,
    ) -> Option<f64> {
        let (mut num, mut den, mut n) = (0.0, 0.0, 0usize);
        for &(t, w, f) in &other.points {
            if shared && !self.has_band(w) {
                continue;
            }
            // Where no band spans t, this curve's object was not seen: 0.
            let p = self.predict(t + shift, w, scratch);
            n += usize::from(p.is_some());
            let p = p.unwrap_or(0.0);
            num += (f - p) * (f - p);
            den += f * f + p * p;
        }
        for &(t, w, limit) in &other.limits {
            if shared && !self.has_band(w) {
                continue;
            }
            if let Some(p) = self.predict(t + shift, w, scratch) {
                let over = (p.abs() - limit).max(0.0);
                num += LIMIT_WEIGHT * over * over;
                den += LIMIT_WEIGHT * over * over;
            }
        }
        (n >= MIN_POINTS && den > 0.0).then(|| num / den)
    }
}

/// `y` at `x` by linear interpolation of the points (`xs` sorted, `x` within them).
fn interpolate(xs: &[f64], ys: &[f64], x: f64) -> f64 {
    let k = xs.partition_point(|&v| v < x);
    if k == 0 {
        return ys[0];
    }
    if k >= xs.len() {
        return ys[ys.len() - 1];
    }
    let (x0, x1) = (xs[k - 1], xs[k]);
    if x1 == x0 {
        return ys[k];
    }
    ys[k - 1] + (ys[k] - ys[k - 1]) * (x - x0) / (x1 - x0)
}

/// How `a` and `b` fit: their least mismatch over time shifts, both ways and both readings
/// (see the module documentation), or why there is none.
pub fn compare(a: &Curve, b: &Curve) -> Fit {
    let mut scratch = Vec::with_capacity(8);
    let steps = (MAX_SHIFT_DAYS / SHIFT_STEP_DAYS).round() as i32;
    let mut best = f64::INFINITY;
    for step in -steps..=steps {
        let s = f64::from(step) * SHIFT_STEP_DAYS;
        let cost = SHIFT_COST * s.abs() / MAX_SHIFT_DAYS;
        for shared in [true, false] {
            for m in [
                a.mismatch(b, s, shared, &mut scratch),
                b.mismatch(a, -s, shared, &mut scratch),
            ]
            .into_iter()
            .flatten()
            {
                best = best.min(m + cost);
            }
        }
    }
    if best.is_finite() {
        return Fit::Mismatch(best);
    }
    match (a.span(), b.span()) {
        (Some((a0, a1)), Some((b0, b1)))
            if a0 - MAX_SHIFT_DAYS > b1 || b0 - MAX_SHIFT_DAYS > a1 =>
        {
            Fit::Apart
        }
        _ => Fit::TooFew,
    }
}

/// The distance of two curves: their [`Fit::Mismatch`], `f64::INFINITY` when they cannot be
/// compared.
pub fn distance(a: &Curve, b: &Curve) -> f64 {
    match compare(a, b) {
        Fit::Mismatch(m) => m,
        Fit::TooFew | Fit::Apart => f64::INFINITY,
    }
}

/// Candidates in their first order (the flux scan's) ranked by how they fit, each with its
/// distance:
/// - those that fit are sorted by their mismatch among the places they held;
/// - one observed over the same weeks with too few points to compare keeps its place, at
///   distance 1 (the mismatch of unrelated fluxes): nothing says it is nearer or farther;
/// - one observed more than a shift apart comes after all the others, at distance 2 (the
///   mismatch of opposite fluxes).
///
/// Sorting every candidate by its fit put those too short to compare after every fit, so that
/// twins of three detections each fell behind chance fits from far down the flux order
/// (SCIENCE.md).
pub fn rank<T>(candidates: Vec<(Fit, T)>) -> Vec<(f64, T)> {
    let distance = |fit: Fit| match fit {
        Fit::Mismatch(m) => m,
        Fit::TooFew => 1.0,
        Fit::Apart => 2.0,
    };
    let (kept, apart): (Vec<_>, Vec<_>) = candidates
        .into_iter()
        .partition(|(fit, _)| *fit != Fit::Apart);
    // The fits leave their places empty, to be filled in order of mismatch (stable: candidates
    // that fit equally keep their order).
    let mut places: Vec<Option<(Fit, T)>> = kept.into_iter().map(Some).collect();
    let mut fitted: Vec<(f64, T)> = places
        .iter_mut()
        .filter_map(|place| match place {
            Some((Fit::Mismatch(m), _)) => {
                let m = *m;
                place.take().map(|(_, c)| (m, c))
            }
            _ => None,
        })
        .collect();
    fitted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut fitted = fitted.into_iter();
    places
        .into_iter()
        .filter_map(|place| match place {
            Some((fit, c)) => Some((distance(fit), c)),
            None => fitted.next(),
        })
        .chain(apart.into_iter().map(|(fit, c)| (distance(fit), c)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A smooth transient in g (482 nm) and r (626 nm), r twice as bright, sampled at `times`.
    fn transient(times: &[f64], scale: f64, peak: f64) -> Vec<(f64, f64, f64)> {
        let f = |t: f64| scale * (-(t - peak).powi(2) / 200.0).exp();
        times
            .iter()
            .flat_map(|&t| [(t, 482.0, f(t)), (t + 0.1, 626.0, 2.0 * f(t))])
            .collect()
    }

    #[test]
    fn the_same_curve_sampled_apart_fits_and_a_fainter_one_does_not() {
        let dense: Vec<f64> = (0..40).map(|i| f64::from(i) * 2.5).collect();
        let sparse: Vec<f64> = (0..8).map(|i| 3.0 + f64::from(i) * 11.0).collect();
        let a = Curve::new(transient(&dense, 1000.0, 50.0));
        let twin = Curve::new(transient(&sparse, 1000.0, 50.0));
        let fainter = Curve::new(transient(&sparse, 400.0, 50.0));
        let d_twin = distance(&a, &twin);
        assert!(d_twin < 0.01, "{d_twin}");
        let d_faint = distance(&a, &fainter);
        assert!(d_faint > 0.2, "{d_faint}");
        // The same shape 20 days later fits too (within the shifts tried), at no more than the
        // cost of that shift: after the same object at its own dates.
        let later = Curve::new(transient(&sparse, 1000.0, 70.0));
        let d_later = distance(&a, &later);
        assert!(
            d_later <= SHIFT_COST * 20.0 / MAX_SHIFT_DAYS + 0.01,
            "{d_later}"
        );
        assert!(d_later > d_twin + 0.1, "{d_later} against {d_twin}");
        // Symmetric by construction.
        assert_eq!(distance(&a, &twin), distance(&twin, &a));
    }

    #[test]
    fn a_band_the_other_lacks_is_predicted_from_its_neighbours_in_wavelength() {
        let times: Vec<f64> = (0..30).map(|i| f64::from(i) * 3.0).collect();
        let a = Curve::new(transient(&times, 1000.0, 40.0));
        // i band (767 nm) only: beyond r, read as r's values.
        let i_only = Curve::new(times.iter().map(|&t| {
            (
                t + 1.0,
                767.0,
                2000.0 * (-(t + 1.0 - 40.0).powi(2) / 200.0).exp(),
            )
        }));
        assert!(distance(&a, &i_only) < 0.01);
        // Midway between g and r: halfway between their values.
        let mut scratch = Vec::new();
        let p = a.predict(40.0, 554.0, &mut scratch).unwrap();
        assert!((p - 1500.0).abs() < 20.0, "{p}");
    }

    #[test]
    fn points_the_fitted_curve_does_not_span_count_as_unseen() {
        // `a` saw only the rise (days 0-20); `b` saw the rise and a bright peak at day 70.
        let rise = |t: f64| 10.0 * t;
        let a = Curve::new((0..=10).map(|i| (f64::from(i) * 2.0, 482.0, rise(f64::from(i) * 2.0))));
        let mut points: Vec<(f64, f64, f64)> = (0..10)
            .map(|i| {
                let t = f64::from(i) * 2.0 + 1.0;
                (t, 482.0, rise(t))
            })
            .collect();
        let peak = [
            (65.0, 482.0, 3000.0),
            (70.0, 482.0, 4000.0),
            (75.0, 482.0, 3000.0),
        ];
        let mut scratch = Vec::new();
        let b = Curve::new(points.clone());
        let only_rise = a.mismatch(&b, 0.0, false, &mut scratch).unwrap();
        assert!(only_rise < 0.01, "{only_rise}");
        // The peak is what `a`'s object did not show (0 where `a` saw nothing): mostly unfit.
        points.extend(peak);
        let b = Curve::new(points);
        let with_peak = a.mismatch(&b, 0.0, false, &mut scratch).unwrap();
        assert!(with_peak > 0.9, "{with_peak}");
    }

    #[test]
    fn a_prediction_above_the_other_curves_limit_counts_against_the_fit() {
        let times: Vec<f64> = (0..30).map(|i| f64::from(i) * 3.0).collect();
        let a = Curve::new(transient(&times, 1000.0, 40.0));
        let sparse: Vec<f64> = (0..6).map(|i| 5.0 + f64::from(i) * 15.0).collect();
        let b = Curve::new(transient(&sparse, 1000.0, 40.0));
        let mut scratch = Vec::new();
        let bare = a.mismatch(&b, 0.0, false, &mut scratch).unwrap();
        // A visit at the peak that saw nothing brighter than 100 nJy: `a`'s 1000 does not fit.
        let b_missed = b.clone().with_limits([(40.0, 482.0, 100.0)]);
        let missed = a.mismatch(&b_missed, 0.0, false, &mut scratch).unwrap();
        assert!(missed > bare + 0.05, "{missed} against {bare}");
        // One that saw nothing brighter than 5000 nJy agrees with it; so does one in a band `a`
        // lacks when only `a`'s bands are read.
        let b_shallow = b.clone().with_limits([(40.0, 482.0, 5000.0)]);
        assert_eq!(a.mismatch(&b_shallow, 0.0, false, &mut scratch), Some(bare));
        let b_other_band = b.clone().with_limits([(40.0, 1000.0, 100.0)]);
        assert_eq!(
            a.mismatch(&b_other_band, 0.0, true, &mut scratch),
            a.mismatch(&b, 0.0, true, &mut scratch)
        );
        // Limits that are not finite and positive are left out.
        assert!(b
            .with_limits([(1.0, 482.0, f64::NAN), (2.0, 482.0, 0.0)])
            .limits
            .is_empty());
    }

    #[test]
    fn fits_are_sorted_among_their_places_while_unknowns_keep_theirs_and_apart_go_last() {
        let order = rank(vec![
            (Fit::Apart, "a"),
            (Fit::TooFew, "b"),
            (Fit::Mismatch(0.5), "c"),
            (Fit::TooFew, "d"),
            (Fit::Mismatch(0.1), "e"),
            (Fit::Mismatch(0.3), "f"),
            (Fit::Mismatch(0.1), "g"),
        ]);
        assert_eq!(
            order,
            vec![
                (1.0, "b"),
                (0.1, "e"),
                (1.0, "d"),
                (0.1, "g"),
                (0.3, "f"),
                (0.5, "c"),
                (2.0, "a"),
            ]
        );
        assert!(rank::<u8>(Vec::new()).is_empty());
    }

    #[test]
    fn curves_that_cannot_be_compared_say_why_and_are_infinitely_far() {
        let a = Curve::new([(0.0, 482.0, 1.0), (1.0, 482.0, 2.0)]);
        let b = Curve::new([(0.5, 482.0, 1.5)]);
        assert_eq!(compare(&a, &b), Fit::TooFew);
        assert_eq!(distance(&a, &b), f64::INFINITY);
        // An empty curve says nothing either.
        assert_eq!(compare(&a, &Curve::default()), Fit::TooFew);
        assert!(Curve::new([(f64::NAN, 482.0, 1.0)]).is_empty());
        // Observed a year apart, dense as they are.
        let times: Vec<f64> = (0..30).map(|i| f64::from(i) * 3.0).collect();
        let now = Curve::new(transient(&times, 1000.0, 40.0));
        let year_ago = Curve::new(transient(
            &times.iter().map(|t| t - 365.0).collect::<Vec<_>>(),
            1000.0,
            -325.0,
        ));
        assert_eq!(compare(&now, &year_ago), Fit::Apart);
        assert_eq!(distance(&now, &year_ago), f64::INFINITY);
        // Two points 13 days after the last of `now`'s: within a shift, too few to predict.
        let b = Curve::new([(100.0, 482.0, 1.0), (101.0, 482.0, 2.0)]);
        assert_eq!(compare(&now, &b), Fit::TooFew);
    }
}
