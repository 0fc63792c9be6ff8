//! Deterministic augmentation of real lightcurves, to reach survey-scale object counts in
//! benchmarks and scale tests from the few hundred real objects of `data/`.
//!
//! Each synthetic object is a real lightcurve with its times shifted, its brightness offset,
//! Gaussian noise of its own errors added and a random fraction of its points dropped, all
//! drawn from a seeded generator: the same seed gives the same objects.
//!
//! [`AlertStream`] turns such objects into a survey-like alert stream: each object placed on the
//! sky and given a start date within the survey's first year, its real cadence kept (whole
//! nights lost to weather at random), one alert per detection carrying the detections and
//! non-detections of the previous `history_days` (30 for ZTF, 365 for Rubin), named as the
//! survey names objects; `alert::write` encodes them as that survey's packets. It yields objects cohort by cohort,
//! alerts in time order within a cohort, so memory stays bounded by the cohort size.
//!
//! With [`Cadence::Survey`] each object is instead observed as its survey would observe it
//! ([`Observer`]): the augmented lightcurve becomes a model (linear interpolation in each band,
//! a missing band read from the nearest one in wavelength), visited on the survey's cadence in
//! its bands (ZTF: g and r every 2-3 nights, i on a quarter of the visits; Rubin: one of
//! ugrizy per visit, every 1-5 nights, with the survey's band mix), measured as a difference
//! flux against the reference image (a source that never varies by 2.5 mag is persistent: its
//! reference holds its median flux, so its differences go negative; a transient's reference
//! holds nothing) with the noise of the survey's single-visit depth, and detected at 5 sigma
//! (ZTF writes the difference magnitude and `isdiffpos`, Rubin the signed flux); the rest are
//! non-detections at that depth.
//! Pure; imports `model` and the packet type of `alert::write`.

use std::collections::HashSet;

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::alert::write::Packet;
use crate::model::{Alert, Band, Detection, ObjectRecord, Survey, Unit, UpperLimit};

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

/// The shape of a generated stream.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    pub objects: usize,
    /// Index of the first object: streams with disjoint ranges have disjoint objects.
    pub first_object: usize,
    pub seed: u64,
    /// MJD the survey starts; objects start within its first `start_spread_days`.
    pub survey_start: f64,
    pub start_spread_days: f64,
    /// Detections kept per object: those within this many days of its first.
    pub window_days: f64,
    /// History a packet carries, days (ZTF: 30, Rubin: 365; see [`StreamSpec::for_survey`]).
    pub history_days: f64,
    /// Chance that a night is lost (weather): its detections become non-detections.
    pub night_loss: f64,
    /// Objects generated together and sorted by time.
    pub cohort: usize,
    pub augment: Augment,
    /// One packet per object instead of one per detection: its last detection, carrying every
    /// earlier detection and limit as history, as when a store is seeded from an archive.
    pub backfill: bool,
    /// Whose object ids the stream uses (ZTF `ZTF26...` or Rubin integer `diaObjectId`s).
    pub survey: Survey,
    /// Keep each base lightcurve's own cadence, or observe it as the survey would.
    pub cadence: Cadence,
}

/// How a generated object is observed (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Cadence {
    /// The base lightcurve's own epochs and bands, every point a positive detection.
    #[default]
    Base,
    /// The survey's cadence, bands, depth and difference-flux detection ([`Observer`]).
    Survey,
}

impl StreamSpec {
    /// The default stream for `survey`: its object ids and the history its packets carry.
    pub fn for_survey(survey: Survey) -> StreamSpec {
        StreamSpec {
            survey,
            history_days: if survey == Survey::Lsst { 365.0 } else { 30.0 },
            ..StreamSpec::default()
        }
    }
}

impl Default for StreamSpec {
    fn default() -> Self {
        StreamSpec {
            objects: 1000,
            first_object: 0,
            seed: 1,
            survey_start: 61_000.0,
            start_spread_days: 365.0,
            window_days: 120.0,
            history_days: 30.0,
            night_loss: 0.2,
            cohort: 10_000,
            augment: Augment::default(),
            backfill: false,
            survey: Survey::Ztf,
            cadence: Cadence::Base,
        }
    }
}

/// Merges alerts into one record per object, in object-id order (the bases of a stream).
pub fn records(alerts: &[Alert]) -> Vec<ObjectRecord> {
    let mut by_id: std::collections::BTreeMap<&str, ObjectRecord> = Default::default();
    for a in alerts {
        by_id
            .entry(a.object_id.as_str())
            .or_insert_with(|| ObjectRecord::new(a.object_id.clone(), a.survey))
            .merge(a);
    }
    by_id.into_values().collect()
}

/// Whether a real object can seed ZTF-like alerts: magnitudes in g, r or i.
pub fn ztf_like(r: &ObjectRecord) -> bool {
    r.detections
        .iter()
        .filter(|d| matches!(d.band, Band::G | Band::R | Band::I))
        .filter(|d| matches!(d.unit, Unit::Mag | Unit::DiffMag { .. }))
        .count()
        >= 5
}

/// A ZTF-style object id (`ZTF` + year + 7 letters) for the `i`-th object.
fn ztf_id(i: u64) -> String {
    let mut letters = [b'a'; 7];
    let mut n = i;
    for l in letters.iter_mut().rev() {
        *l = b'a' + (n % 26) as u8;
        n /= 26;
    }
    format!("ZTF26{}", String::from_utf8_lossy(&letters))
}

/// The first generated Rubin `diaObjectId` (2^57; real ones are of this order).
const LSST_FIRST_ID: u64 = 1 << 57;

/// The `i`-th object's id as `survey` names objects.
pub fn object_id(survey: Survey, i: u64) -> String {
    match survey {
        Survey::Lsst => (LSST_FIRST_ID + i).to_string(),
        _ => ztf_id(i),
    }
}

/// One generated object: its position and its detections and non-detections in time order.
struct Generated {
    object_id: String,
    ra: f64,
    dec: f64,
    detections: Vec<Detection>,
    limits: Vec<UpperLimit>,
}

/// A survey's way of observing (see the module doc): its bands with their share of visits and
/// single-visit 5-sigma depths (AB mag), and the nights between visits.
#[derive(Debug, Clone)]
pub struct Observer {
    /// (band, share of visits, 5-sigma depth). ZTF observes every band listed with a share of
    /// 1 at each visit, the others with that chance; Rubin one band per visit, drawn by share.
    pub bands: Vec<(Band, f64, f64)>,
    /// One band per visit (Rubin) or all of them (ZTF).
    pub one_band_per_visit: bool,
    /// Nights between visits, drawn uniformly in this range.
    pub revisit_nights: (u32, u32),
}

/// AB zero point of a flux in nJy.
const NJY_ZERO_POINT: f64 = 31.4;

/// A source that never varies by more than this (mag) is persistent: its reference image
/// holds its median flux.
const PERSISTENT_MAX_AMPLITUDE: f64 = 2.5;

/// Depths jitter by up to this much (mag) from visit to visit (seeing, sky).
const DEPTH_JITTER: f64 = 0.3;

impl Observer {
    /// How `survey` observes: ZTF's public survey (g and r every 2-3 nights, i on a quarter
    /// of the visits, depths 20.8 / 20.6 / 20.2) or Rubin's wide-fast-deep survey (one band
    /// per visit, every 1-5 nights, the LSST band mix and single-visit depths).
    pub fn of(survey: Survey) -> Observer {
        match survey {
            Survey::Lsst => Observer {
                bands: vec![
                    (Band::U, 0.07, 23.9),
                    (Band::G, 0.09, 25.0),
                    (Band::R, 0.22, 24.7),
                    (Band::I, 0.22, 24.0),
                    (Band::Z, 0.20, 23.3),
                    (Band::Y, 0.20, 22.1),
                ],
                one_band_per_visit: true,
                revisit_nights: (1, 5),
            },
            _ => Observer {
                bands: vec![
                    (Band::G, 1.0, 20.8),
                    (Band::R, 1.0, 20.6),
                    (Band::I, 0.25, 20.2),
                ],
                one_band_per_visit: false,
                revisit_nights: (2, 3),
            },
        }
    }

    /// Observes a lightcurve (magnitudes in g, r, i, in any time order) moved to start at MJD
    /// `start`, for `window_days`: the detections (difference magnitudes, signed) and the
    /// non-detections, in time order.
    pub fn observe(
        &self,
        lightcurve: &[Detection],
        start: f64,
        window_days: f64,
        night_loss: f64,
        rng: &mut impl Rng,
    ) -> (Vec<Detection>, Vec<UpperLimit>) {
        let model = Model::new(lightcurve);
        let Some((first, last)) = model.span() else {
            return (Vec::new(), Vec::new());
        };
        let end = start + (last - first).min(window_days);
        let mut detections = Vec::new();
        let mut limits = Vec::new();
        let mut night = start.floor();
        while night <= end {
            let visit = night + rng.gen_range(0.1..0.4);
            let lost = rng.gen_bool(night_loss);
            for (band, depth) in self.visit_bands(rng) {
                let depth = depth + rng.gen_range(-DEPTH_JITTER..=DEPTH_JITTER);
                let Some(diff) = model.difference_flux(&band, visit - start + first) else {
                    continue;
                };
                let sigma = njy(depth) / 5.0;
                let observed = diff + Normal::new(0.0, sigma).map_or(0.0, |n| n.sample(rng));
                if lost || observed.abs() < 5.0 * sigma {
                    limits.push(UpperLimit {
                        mjd: visit,
                        band,
                        limit_mag: depth,
                    });
                    continue;
                }
                detections.push(Detection {
                    mjd: visit,
                    band,
                    value: NJY_ZERO_POINT - 2.5 * observed.abs().log10(),
                    error: 2.5 / std::f64::consts::LN_10 * sigma / observed.abs(),
                    unit: Unit::DiffMag {
                        positive: observed > 0.0,
                    },
                    source_id: None,
                    ra: None,
                    dec: None,
                });
            }
            let (lo, hi) = self.revisit_nights;
            night += f64::from(rng.gen_range(lo..=hi));
        }
        (detections, limits)
    }

    /// The bands of one visit and their nominal depths.
    fn visit_bands(&self, rng: &mut impl Rng) -> Vec<(Band, f64)> {
        if self.one_band_per_visit {
            let total: f64 = self.bands.iter().map(|b| b.1).sum();
            let mut x = rng.gen_range(0.0..total);
            for (band, share, depth) in &self.bands {
                if x < *share {
                    return vec![(band.clone(), *depth)];
                }
                x -= share;
            }
            return Vec::new();
        }
        self.bands
            .iter()
            .filter(|(_, share, _)| *share >= 1.0 || rng.gen_bool(*share))
            .map(|(band, _, depth)| (band.clone(), *depth))
            .collect()
    }
}

/// A flux in nJy of an AB magnitude.
fn njy(mag: f64) -> f64 {
    10f64.powf((NJY_ZERO_POINT - mag) / 2.5)
}

/// Wavelength order of the bands (u = 0 ... y = 5), to read a missing band from its nearest.
fn band_order(b: &Band) -> Option<i32> {
    match b {
        Band::U => Some(0),
        Band::G => Some(1),
        Band::R => Some(2),
        Band::I => Some(3),
        Band::Z => Some(4),
        Band::Y => Some(5),
        Band::Other(_) => None,
    }
}

/// One band of a [`Model`]: its wavelength order, (time, flux) points and reference flux.
type ModelBand = (i32, Vec<(f64, f64)>, f64);

/// A lightcurve as a model: per band, its (time, flux) points and reference flux.
struct Model {
    bands: Vec<ModelBand>,
}

impl Model {
    fn new(lightcurve: &[Detection]) -> Model {
        let mut bands: Vec<ModelBand> = Vec::new();
        for d in lightcurve {
            let (Some(order), Unit::Mag | Unit::DiffMag { positive: true }) =
                (band_order(&d.band), d.unit)
            else {
                continue;
            };
            if !d.value.is_finite() {
                continue;
            }
            match bands.iter_mut().find(|b| b.0 == order) {
                Some(b) => b.1.push((d.mjd, d.value)),
                None => bands.push((order, vec![(d.mjd, d.value)], 0.0)),
            }
        }
        for (_, points, reference) in &mut bands {
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            let mut mags: Vec<f64> = points.iter().map(|p| p.1).collect();
            mags.sort_by(f64::total_cmp);
            let amplitude = mags.last().unwrap_or(&0.0) - mags.first().unwrap_or(&0.0);
            if amplitude < PERSISTENT_MAX_AMPLITUDE && !mags.is_empty() {
                *reference = njy(mags[mags.len() / 2]);
            }
            for p in points.iter_mut() {
                p.1 = njy(p.1);
            }
        }
        Model { bands }
    }

    /// First and last time of any band.
    fn span(&self) -> Option<(f64, f64)> {
        let times = self.bands.iter().flat_map(|b| b.1.iter().map(|p| p.0));
        times.fold(None, |acc, t| match acc {
            None => Some((t, t)),
            Some((a, b)) => Some((a.min(t), b.max(t))),
        })
    }

    /// The difference flux (nJy) in `band` at time `t` (the lightcurve's own clock): the
    /// nearest modelled band's flux, interpolated, less its reference; `None` outside that
    /// band's time range.
    fn difference_flux(&self, band: &Band, t: f64) -> Option<f64> {
        let want = band_order(band)?;
        let (_, points, reference) = self
            .bands
            .iter()
            .min_by_key(|b| ((b.0 - want).abs(), b.0))?;
        let after = points.partition_point(|p| p.0 < t);
        let flux = match (after.checked_sub(1).map(|k| points[k]), points.get(after)) {
            (Some(a), Some(b)) if b.0 > a.0 => a.1 + (b.1 - a.1) * (t - a.0) / (b.0 - a.0),
            (Some(a), Some(_)) => a.1,
            (None, Some(b)) if b.0 == t => b.1,
            _ => return None,
        };
        Some(flux - reference)
    }
}

/// A seeded, streaming generator of alert packets; see the module doc.
pub struct AlertStream<'a> {
    bases: Vec<&'a ObjectRecord>,
    spec: StreamSpec,
    next_object: usize,
    /// The current cohort's alerts, (object, detection) in time order, reversed for pop().
    queue: Vec<(usize, usize)>,
    cohort: Vec<Generated>,
    objects_emitted: usize,
}

impl<'a> AlertStream<'a> {
    /// `bases`: real objects; those that are not [`ztf_like`] are skipped.
    pub fn new(bases: &'a [ObjectRecord], spec: StreamSpec) -> AlertStream<'a> {
        AlertStream {
            bases: bases.iter().filter(|r| ztf_like(r)).collect(),
            spec,
            next_object: 0,
            queue: Vec::new(),
            cohort: Vec::new(),
            objects_emitted: 0,
        }
    }

    /// Objects with at least one alert so far (some lose every night of their window).
    pub fn objects_emitted(&self) -> usize {
        self.objects_emitted
    }

    /// The id of the real object the `i`-th generated object is made from (`None` without
    /// bases).
    pub fn base_of(&self, i: usize) -> Option<&str> {
        (!self.bases.is_empty()).then(|| self.bases[i % self.bases.len()].object_id.as_str())
    }

    fn generate(&self, i: usize) -> Generated {
        let base = self.bases[i % self.bases.len()];
        let seed = self.spec.seed;
        let alert = augment(base, i as u64, seed, &self.spec.augment);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed.rotate_left(17) ^ i as u64);
        let ra = rng.gen_range(0.0..360.0);
        let dec = rng.gen_range(-1.0f64..=1.0).asin().to_degrees();
        if self.spec.cadence == Cadence::Survey {
            let start = self.spec.survey_start + rng.gen_range(0.0..=self.spec.start_spread_days);
            // The survey's own draws: the same object, observed by another survey, keeps its
            // lightcurve, position and start and gets that survey's visits.
            let survey_seed = seed.rotate_left(29) ^ i as u64 ^ u64::from(self.spec.survey.code());
            let mut obs_rng = Xoshiro256PlusPlus::seed_from_u64(survey_seed);
            let observer = Observer::of(self.spec.survey);
            let (mut detections, limits) = observer.observe(
                &alert.detections,
                start,
                self.spec.window_days,
                self.spec.night_loss,
                &mut obs_rng,
            );
            for (j, d) in detections.iter_mut().enumerate() {
                d.source_id = Some(((i as i64) << 16) | j as i64);
                d.ra = Some(ra);
                d.dec = Some(dec);
            }
            return Generated {
                object_id: object_id(self.spec.survey, i as u64),
                ra,
                dec,
                detections,
                limits,
            };
        }
        let mut detections: Vec<Detection> = alert
            .detections
            .into_iter()
            .filter(|d| matches!(d.band, Band::G | Band::R | Band::I))
            .collect();
        detections.sort_by(|a, b| a.mjd.total_cmp(&b.mjd));
        let first = detections.first().map_or(0.0, |d| d.mjd);
        let shift =
            self.spec.survey_start + rng.gen_range(0.0..=self.spec.start_spread_days) - first;
        let mut lost_nights: HashSet<i64> = HashSet::new();
        let mut kept = Vec::new();
        let mut limits = Vec::new();
        for (j, d) in detections.into_iter().enumerate() {
            if d.mjd - first > self.spec.window_days {
                break;
            }
            let mjd = d.mjd + shift;
            let night = mjd.floor() as i64;
            if !lost_nights.contains(&night) && rng.gen_bool(self.spec.night_loss) {
                lost_nights.insert(night);
            }
            if lost_nights.contains(&night) {
                limits.push(UpperLimit {
                    mjd,
                    band: d.band.clone(),
                    limit_mag: d.value - 0.5,
                });
                continue;
            }
            kept.push(Detection {
                mjd,
                unit: Unit::DiffMag { positive: true },
                source_id: Some(((i as i64) << 16) | j as i64),
                ra: Some(ra),
                dec: Some(dec),
                ..d
            });
        }
        Generated {
            object_id: object_id(self.spec.survey, i as u64),
            ra,
            dec,
            detections: kept,
            limits,
        }
    }

    fn fill(&mut self) -> bool {
        if self.bases.is_empty() || self.next_object >= self.spec.objects {
            return false;
        }
        let end = (self.next_object + self.spec.cohort.max(1)).min(self.spec.objects);
        let first = self.spec.first_object;
        self.cohort = (self.next_object..end)
            .map(|i| self.generate(first + i))
            .collect();
        self.objects_emitted += self
            .cohort
            .iter()
            .filter(|g| !g.detections.is_empty())
            .count();
        self.next_object = end;
        let backfill = self.spec.backfill;
        let mut order: Vec<(f64, usize, usize)> = self
            .cohort
            .iter()
            .enumerate()
            .flat_map(|(o, g)| {
                let last = g.detections.len().saturating_sub(1);
                g.detections
                    .iter()
                    .enumerate()
                    .filter(move |(j, _)| !backfill || *j == last)
                    .map(move |(j, d)| (d.mjd, o, j))
            })
            .collect();
        order.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)));
        self.queue = order.into_iter().map(|(_, o, j)| (o, j)).collect();
        true
    }

    fn packet(&self, o: usize, j: usize) -> Packet {
        let g = &self.cohort[o];
        let candidate = g.detections[j].clone();
        let from = if self.spec.backfill {
            f64::NEG_INFINITY
        } else {
            candidate.mjd - self.spec.history_days
        };
        let history = g.detections[..j]
            .iter()
            .filter(|d| d.mjd >= from)
            .cloned()
            .collect();
        let limits = g
            .limits
            .iter()
            .filter(|l| l.mjd >= from && l.mjd < candidate.mjd)
            .cloned()
            .collect();
        Packet {
            object_id: g.object_id.clone(),
            candid: candidate.source_id.unwrap_or(0),
            ra: g.ra,
            dec: g.dec,
            candidate,
            history,
            limits,
            detections_so_far: u32::try_from(j + 1).unwrap_or(u32::MAX),
        }
    }
}

impl Iterator for AlertStream<'_> {
    type Item = Packet;

    fn next(&mut self) -> Option<Packet> {
        loop {
            if let Some((o, j)) = self.queue.pop() {
                return Some(self.packet(o, j));
            }
            if !self.fill() {
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn the_stream_is_seeded_time_ordered_and_carries_history() {
        let mut base = ObjectRecord::new("b".into(), Survey::External);
        base.detections = (0..40)
            .map(|i| Detection::magnitude(f64::from(i), Band::G, 18.0, 0.05))
            .collect();
        let bases = vec![base];
        let spec = StreamSpec {
            objects: 5,
            cohort: 5,
            ..StreamSpec::default()
        };
        let a: Vec<Packet> = AlertStream::new(&bases, spec.clone()).collect();
        let b: Vec<Packet> = AlertStream::new(&bases, spec).collect();
        assert_eq!(a, b);
        assert!(a.len() > 20);
        assert!(a
            .windows(2)
            .all(|w| w[0].candidate.mjd <= w[1].candidate.mjd));
        let ids: HashSet<&str> = a.iter().map(|p| p.object_id.as_str()).collect();
        assert_eq!(ids.len(), 5);
        let last = a.iter().rfind(|p| p.object_id == a[0].object_id).unwrap();
        assert!(!last.history.is_empty());
        assert!(last
            .history
            .iter()
            .all(|d| d.mjd >= last.candidate.mjd - 30.0));

        // Backfill: one packet per object, its last, with the whole lightcurve as history.
        let spec = StreamSpec {
            objects: 5,
            cohort: 5,
            backfill: true,
            ..StreamSpec::default()
        };
        let seeded: Vec<Packet> = AlertStream::new(&bases, spec).collect();
        assert_eq!(seeded.len(), 5);
        for p in &seeded {
            let streamed: Vec<&Packet> = a.iter().filter(|q| q.object_id == p.object_id).collect();
            let last = streamed.last().unwrap();
            assert_eq!(p.candidate, last.candidate);
            assert_eq!(p.history.len() + 1, streamed.len());
        }
    }

    #[test]
    fn a_rubin_stream_has_dia_object_ids_a_year_of_history_and_decodes() {
        use crate::alert::write::PacketWriter;
        use crate::alert::{decode, DecodeOptions};

        let mut base = ObjectRecord::new("b".into(), Survey::External);
        base.detections = (0..40)
            .map(|i| Detection::magnitude(f64::from(i) * 3.0, Band::R, 19.0, 0.05))
            .collect();
        let bases = vec![base];
        let spec = StreamSpec {
            objects: 3,
            cohort: 3,
            ..StreamSpec::for_survey(Survey::Lsst)
        };
        let packets: Vec<Packet> = AlertStream::new(&bases, spec).collect();
        let writer = PacketWriter::new(Survey::Lsst).unwrap();
        let last = packets.last().unwrap();
        // 120 days of a 3-day cadence, all within a year: the last alert carries the rest.
        let earlier = packets
            .iter()
            .filter(|p| p.object_id == last.object_id)
            .count();
        assert_eq!(last.history.len() + 1, earlier);
        for p in &packets {
            let id: u64 = p.object_id.parse().unwrap();
            assert!((LSST_FIRST_ID..LSST_FIRST_ID + 3).contains(&id));
            let out = decode(
                "p.avro",
                &writer.write(p).unwrap(),
                &DecodeOptions::default(),
            );
            let a = &out.alerts[0];
            assert_eq!(
                (a.survey, a.object_id.as_str()),
                (Survey::Lsst, p.object_id.as_str())
            );
            assert_eq!(a.detections.len(), p.history.len() + 1);
            assert_eq!(a.forced.len(), p.limits.len());
        }
    }

    /// A variable star and a supernova observed by both surveys through the real writers and
    /// decoders: Rubin sees more bands, fewer points per band and deeper; ZTF g and r every 2-3
    /// nights with i on some visits; the variable's differences go negative in both.
    #[test]
    fn each_survey_observes_with_its_own_cadence_bands_and_depth() {
        use crate::alert::write::PacketWriter;
        use crate::alert::{decode, DecodeOptions};
        use std::collections::BTreeSet;

        // An RR Lyrae-like variable (persistent: 0.8 mag amplitude, 0.55 d period) and a
        // supernova-like transient (rises 3 mag and fades), in g, r and i.
        let mut star = ObjectRecord::new("star".into(), Survey::External);
        let mut sn = ObjectRecord::new("sn".into(), Survey::External);
        for k in 0..240 {
            let t = f64::from(k) * 0.5;
            let band = [Band::G, Band::R, Band::I][k as usize % 3].clone();
            let phase = (t / 0.55).fract();
            star.detections.push(Detection::magnitude(
                t,
                band.clone(),
                17.0 + 0.8 * phase,
                0.02,
            ));
            let rise = if t < 15.0 {
                21.0 - 0.2 * t
            } else {
                18.0 + 0.04 * (t - 15.0)
            };
            sn.detections
                .push(Detection::magnitude(t, band, rise, 0.05));
        }
        let bases = vec![star, sn];
        let observe = |survey: Survey| -> Vec<Alert> {
            let spec = StreamSpec {
                objects: 2,
                backfill: true,
                cadence: Cadence::Survey,
                night_loss: 0.0,
                ..StreamSpec::for_survey(survey)
            };
            let writer = PacketWriter::new(survey).unwrap();
            AlertStream::new(&bases, spec)
                .map(|p| {
                    let out = decode(
                        "p.avro",
                        &writer.write(&p).unwrap(),
                        &DecodeOptions::default(),
                    );
                    assert!(out.rejects.is_empty(), "{:?}", out.rejects);
                    out.alerts.into_iter().next().unwrap()
                })
                .collect()
        };
        let ztf = observe(Survey::Ztf);
        let rubin = observe(Survey::Lsst);
        assert_eq!((ztf.len(), rubin.len()), (2, 2));
        // Object 0 is made from the star in both surveys (the same base, position, start).
        let bands = |a: &Alert| -> BTreeSet<String> {
            a.detections
                .iter()
                .map(|d| d.band.name().to_string())
                .collect()
        };
        let negative = |a: &Alert| {
            a.detections
                .iter()
                .filter(|d| match d.unit {
                    Unit::DiffMag { positive } => !positive,
                    _ => d.value < 0.0,
                })
                .count()
        };
        let (z, r) = (&ztf[0], &rubin[0]);
        assert_eq!((z.ra, z.dec), (r.ra, r.dec), "twins share their position");
        assert!(
            bands(z)
                .iter()
                .all(|b| ["g", "r", "i"].contains(&b.as_str())),
            "{:?}",
            bands(z)
        );
        assert!(bands(r).len() >= 5, "Rubin: ugrizy, {:?}", bands(r));
        assert!(
            negative(z) > 0 && negative(r) > 0,
            "a variable's differences go negative"
        );
        // ZTF: a visit (a detection or a limit) every 2 or 3 nights.
        let visits = z.detections.iter().map(|d| d.mjd);
        let visits = visits.chain(z.upper_limits.iter().map(|l| l.mjd));
        let mut nights: Vec<i64> = visits.map(|t| t.floor() as i64).collect();
        nights.sort_unstable();
        nights.dedup();
        assert!(
            nights.windows(2).all(|w| (2..=3).contains(&(w[1] - w[0]))),
            "{nights:?}"
        );
        // Rubin: one band per visit, so fewer r points than ZTF.
        let in_r = |a: &Alert| a.detections.iter().filter(|d| d.band == Band::R).count();
        assert!(in_r(r) < in_r(z), "{} vs {}", in_r(r), in_r(z));
        // Rubin goes deeper: its faintest supernova detection is fainter than ZTF's 5-sigma.
        let faintest_rubin = rubin[1]
            .detections
            .iter()
            .map(|d| 31.4 - 2.5 * d.value.abs().log10())
            .fold(f64::MIN, f64::max);
        assert!(faintest_rubin > 21.0, "{faintest_rubin}");
        assert!(ztf[1].detections.iter().all(|d| d.value < 21.2));
        assert!(
            negative(&ztf[1]) == 0 && negative(&rubin[1]) == 0,
            "a transient's do not"
        );
    }
}
