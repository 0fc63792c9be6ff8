//! Plain data shared by every layer: surveys, bands, detections, alerts and lightcurves.
//!
//! Nothing here does I/O or knows a file format. Decoders in [`crate::alert`] produce
//! [`Alert`]s; the store merges them into [`ObjectRecord`]s. This module imports nothing
//! from the crate.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Offset between Julian Date and Modified Julian Date.
pub const JD_TO_MJD: f64 = 2_400_000.5;

/// Two measurements of the same object in the same band closer in time than this (in days,
/// ~0.86 s) are the same measurement. No survey we read takes two exposures of one field in one
/// band within a second, while the same detection re-serialised by another format (a CSV of an
/// alert's history, a float32 round trip) differs by far less.
pub const SAME_EPOCH_TOLERANCE_DAYS: f64 = 1e-5;

/// The survey that observed an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Survey {
    /// Zwicky Transient Facility (bands g, r, i; difference magnitudes).
    Ztf,
    /// Vera C. Rubin Observatory LSST (bands u, g, r, i, z, y; fluxes in nJy).
    Lsst,
    /// A lightcurve table from a data release or catalogue (SDSS Stripe 82, ...).
    External,
}

impl Survey {
    pub const ALL: [Survey; 3] = [Survey::Ztf, Survey::Lsst, Survey::External];

    pub fn as_str(self) -> &'static str {
        match self {
            Survey::Ztf => "ztf",
            Survey::Lsst => "lsst",
            Survey::External => "external",
        }
    }

    /// One byte used in storage keys.
    pub fn code(self) -> u8 {
        match self {
            Survey::Ztf => 1,
            Survey::Lsst => 2,
            Survey::External => 3,
        }
    }
}

impl fmt::Display for Survey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A photometric band. ZTF's `fid` 1/2/3 and filter names `zg`/`zr`/`zi` map to `g`/`r`/`i`;
/// LSST's `band` strings map to `u`..`y`; anything else (Johnson `V`, ...) is kept by name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub enum Band {
    U,
    G,
    R,
    I,
    Z,
    Y,
    Other(String),
}

impl Band {
    /// Parses a band name as surveys and lightcurve tables write it. `R` is read as `r`: the
    /// ZTF tables of ../shared/data write ZTF's r band that way.
    pub fn parse(name: &str) -> Band {
        match name.trim() {
            "u" | "U" => Band::U,
            "g" | "zg" | "ztfg" | "ZTF_g" => Band::G,
            "r" | "R" | "zr" | "ztfr" | "ZTF_r" => Band::R,
            "i" | "zi" | "ztfi" | "ZTF_i" => Band::I,
            "z" => Band::Z,
            "y" | "Y" => Band::Y,
            other => Band::Other(other.to_string()),
        }
    }

    /// ZTF filter id (`fid`): 1 = g, 2 = r, 3 = i.
    pub fn from_ztf_fid(fid: i64) -> Option<Band> {
        match fid {
            1 => Some(Band::G),
            2 => Some(Band::R),
            3 => Some(Band::I),
            _ => None,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Band::U => "u",
            Band::G => "g",
            Band::R => "r",
            Band::I => "i",
            Band::Z => "z",
            Band::Y => "y",
            Band::Other(s) => s,
        }
    }
}

impl From<Band> for String {
    fn from(b: Band) -> String {
        b.name().to_string()
    }
}

impl From<String> for Band {
    fn from(s: String) -> Band {
        Band::parse(&s)
    }
}

impl fmt::Display for Band {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a measurement's `value` and `error` are. Each survey's own quantity is kept; the
/// embedding layer brings them to one scale (see ARCHITECTURE.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// ZTF difference-image PSF magnitude (`magpsf`) of |science - reference|; `positive` is
    /// `isdiffpos` (the source got brighter than the reference).
    DiffMag { positive: bool },
    /// An apparent magnitude from a lightcurve table.
    Mag,
    /// Rubin difference-image PSF flux, nJy (sign kept).
    FluxNjy,
    /// ZTF forced-photometry difference flux, in data numbers at the image's zero point.
    FluxDn,
    /// A flux from a lightcurve table, in the table's own unit.
    Flux,
}

/// One measurement of an object at one epoch in one band.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    pub mjd: f64,
    pub band: Band,
    pub value: f64,
    pub error: f64,
    pub unit: Unit,
    /// The survey's id for this measurement (ZTF `candid`, LSST `diaSourceId`), if any.
    pub source_id: Option<i64>,
    pub ra: Option<f64>,
    pub dec: Option<f64>,
}

/// A non-detection: the object was fainter than `limit_mag` at `mjd` in `band`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UpperLimit {
    pub mjd: f64,
    pub band: Band,
    pub limit_mag: f64,
}

/// A broker annotation value (a cross-match name, a classifier score, a flag).
#[derive(Clone, Debug, PartialEq, PartialOrd, Serialize, Deserialize)]
pub enum AnnotationValue {
    Bool(bool),
    Number(f64),
    Text(String),
}

/// An annotation as stored on an object: the value and the MJD of the alert that carried it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Annotation {
    pub value: AnnotationValue,
    pub mjd: f64,
}

/// One decoded alert packet (or one object's rows of a lightcurve table), survey-neutral.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    pub object_id: String,
    /// ZTF `candid` / LSST `diaSourceId` of the triggering detection; `None` for tables.
    pub alert_id: Option<i64>,
    pub survey: Survey,
    /// Time of the alert (its triggering detection), MJD; dates the annotations.
    pub mjd: f64,
    pub ra: Option<f64>,
    pub dec: Option<f64>,
    /// Detections: the triggering one and the history the packet carries.
    pub detections: Vec<Detection>,
    /// Forced photometry (LSST `prvDiaForcedSources`, ZTF 4.x `fp_hists`).
    pub forced: Vec<Detection>,
    pub upper_limits: Vec<UpperLimit>,
    /// Broker columns (Fink cross-matches, classifier scores, ...), flattened `a.b` names.
    pub annotations: BTreeMap<String, AnnotationValue>,
}

impl Alert {
    /// An alert that only carries photometry (a lightcurve table's rows, a synthetic object),
    /// dated by its last detection.
    pub fn from_detections(object_id: String, survey: Survey, detections: Vec<Detection>) -> Alert {
        let mjd = detections
            .iter()
            .map(|d| d.mjd)
            .fold(f64::NEG_INFINITY, f64::max);
        Alert {
            object_id,
            alert_id: None,
            survey,
            mjd,
            ra: None,
            dec: None,
            detections,
            forced: Vec::new(),
            upper_limits: Vec::new(),
            annotations: BTreeMap::new(),
        }
    }
}

impl Detection {
    /// A magnitude measurement without survey ids or position.
    pub fn magnitude(mjd: f64, band: Band, mag: f64, error: f64) -> Detection {
        Detection {
            mjd,
            band,
            value: mag,
            error,
            unit: Unit::Mag,
            source_id: None,
            ra: None,
            dec: None,
        }
    }
}

/// Per-object metadata derived from its lightcurve.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct ObjectMeta {
    pub first_mjd: Option<f64>,
    pub last_mjd: Option<f64>,
    pub n_per_band: BTreeMap<String, u32>,
    pub ra: Option<f64>,
    pub dec: Option<f64>,
}

/// Everything stored about one object: its merged, de-duplicated lightcurve and annotations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ObjectRecord {
    pub object_id: String,
    pub survey: Survey,
    /// Sorted by (mjd, band); one entry per distinct measurement.
    pub detections: Vec<Detection>,
    pub forced: Vec<Detection>,
    pub upper_limits: Vec<UpperLimit>,
    pub annotations: BTreeMap<String, Annotation>,
    pub meta: ObjectMeta,
}

/// One version of an object's embedding: valid from the MJD of the last detection it includes
/// until the next version. `raw` holds the unscaled features (`NaN` = undefined) so any later
/// scaler can reproduce the vector.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VectorVersion {
    pub point: u64,
    pub from_mjd: f64,
    pub n_detections: u32,
    pub raw: Vec<f32>,
}

/// An entry of an object's neighbour list.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Neighbour {
    pub object_id: String,
    pub distance: f32,
}

/// A class label of an object and where it came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Label {
    /// Coarse class (see `graph::labels` for the taxonomy).
    pub class: String,
    /// `csv:<file>`, `TNS`, `Fink`, `SIMBAD` or `VSX`.
    pub source: String,
    /// The value as the source wrote it.
    pub raw: String,
}

/// An expert's vote on an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Vote {
    Up,
    Down,
}

/// What merging an alert into a record changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MergeOutcome {
    pub detections_added: u64,
    pub forced_added: u64,
    pub upper_limits_added: u64,
    pub annotations_changed: u64,
    /// Measurements already held whose kept copy was replaced by a preferred one.
    pub copies_replaced: u64,
}

impl MergeOutcome {
    pub fn changed(&self) -> bool {
        self.detections_added
            + self.forced_added
            + self.upper_limits_added
            + self.annotations_changed
            + self.copies_replaced
            > 0
    }
}

impl ObjectRecord {
    pub fn new(object_id: String, survey: Survey) -> ObjectRecord {
        ObjectRecord {
            object_id,
            survey,
            detections: Vec::new(),
            forced: Vec::new(),
            upper_limits: Vec::new(),
            annotations: BTreeMap::new(),
            meta: ObjectMeta::default(),
        }
    }

    /// Merges an alert. The result depends only on the set of measurements and annotations
    /// merged so far, not on their order, so replays and out-of-order packets converge.
    pub fn merge(&mut self, alert: &Alert) -> MergeOutcome {
        let mut out = MergeOutcome::default();
        for d in &alert.detections {
            out.detections_added += merge_epoch(&mut self.detections, d, preferred).count(&mut out);
        }
        for d in &alert.forced {
            out.forced_added += merge_epoch(&mut self.forced, d, preferred).count(&mut out);
        }
        for l in &alert.upper_limits {
            out.upper_limits_added += merge_epoch(&mut self.upper_limits, l, |new, old| {
                // The deeper limit, then the earlier time: a total order.
                new.limit_mag
                    .total_cmp(&old.limit_mag)
                    .then(old.mjd.total_cmp(&new.mjd))
                    .is_gt()
            })
            .count(&mut out);
        }
        for (name, value) in &alert.annotations {
            let candidate = Annotation {
                value: value.clone(),
                mjd: alert.mjd,
            };
            let replace = match self.annotations.get(name) {
                None => true,
                Some(old) => newer_annotation(&candidate, old),
            };
            if replace {
                self.annotations.insert(name.clone(), candidate);
                out.annotations_changed += 1;
            }
        }
        if out.changed() {
            self.refresh_meta();
        }
        out
    }

    /// Recomputes [`ObjectMeta`] from the lightcurve.
    pub fn refresh_meta(&mut self) {
        let mut meta = ObjectMeta {
            first_mjd: self.detections.first().map(|d| d.mjd),
            last_mjd: self.detections.last().map(|d| d.mjd),
            ..ObjectMeta::default()
        };
        let (mut sra, mut sdec, mut n) = (0.0, 0.0, 0u32);
        for d in &self.detections {
            *meta
                .n_per_band
                .entry(d.band.name().to_string())
                .or_default() += 1;
            if let (Some(ra), Some(dec)) = (d.ra, d.dec) {
                sra += ra;
                sdec += dec;
                n += 1;
            }
        }
        if n > 0 {
            meta.ra = Some(sra / f64::from(n));
            meta.dec = Some(sdec / f64::from(n));
        }
        self.meta = meta;
    }
}

/// An annotation replaces another when its alert is later; at equal dates the larger value
/// wins, so the outcome does not depend on arrival order.
fn newer_annotation(candidate: &Annotation, old: &Annotation) -> bool {
    match candidate.mjd.total_cmp(&old.mjd) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => {
            candidate.value != old.value
                && candidate.value.partial_cmp(&old.value) == Some(std::cmp::Ordering::Greater)
        }
    }
}

fn same_epoch(a: f64, b: f64) -> bool {
    (a - b).abs() < SAME_EPOCH_TOLERANCE_DAYS
}

/// Which of two copies of one measurement to keep: the one the survey gave an id, then the one
/// with the smaller error, then the smaller value, then the smaller id (ZTF re-issues one epoch
/// under several candids), time and position. A total order over every field that can differ,
/// so the copy kept does not depend on which arrived first.
fn preferred(new: &Detection, old: &Detection) -> bool {
    let position = |d: &Detection| (d.ra.unwrap_or(f64::NAN), d.dec.unwrap_or(f64::NAN));
    let (pn, po) = (position(new), position(old));
    new.source_id
        .is_none()
        .cmp(&old.source_id.is_none())
        .then(new.error.total_cmp(&old.error))
        .then(new.value.total_cmp(&old.value))
        .then(new.source_id.cmp(&old.source_id))
        .then(new.mjd.total_cmp(&old.mjd))
        .then(pn.0.total_cmp(&po.0))
        .then(pn.1.total_cmp(&po.1))
        .is_lt()
}

/// A measurement at one epoch in one band, as kept in an object's sorted lists.
trait Epoch: Clone {
    fn mjd(&self) -> f64;
    fn band(&self) -> &Band;
}

impl Epoch for Detection {
    fn mjd(&self) -> f64 {
        self.mjd
    }
    fn band(&self) -> &Band {
        &self.band
    }
}

impl Epoch for UpperLimit {
    fn mjd(&self) -> f64 {
        self.mjd
    }
    fn band(&self) -> &Band {
        &self.band
    }
}

/// Inserts `item` into the sorted `list` unless the same band and epoch is there, in which case
/// `prefer(new, old)` decides which copy stays; returns whether an entry was added.
fn merge_epoch<T: Epoch>(
    list: &mut Vec<T>,
    item: &T,
    prefer: impl Fn(&T, &T) -> bool,
) -> EpochMerge {
    let t = item.mjd();
    let mut i = list.partition_point(|x| x.mjd() < t - SAME_EPOCH_TOLERANCE_DAYS);
    while i < list.len() && list[i].mjd() <= t + SAME_EPOCH_TOLERANCE_DAYS {
        if list[i].band() == item.band() && same_epoch(list[i].mjd(), t) {
            if prefer(item, &list[i]) {
                list[i] = item.clone();
                return EpochMerge::Replaced;
            }
            return EpochMerge::Kept;
        }
        i += 1;
    }
    let at = list.partition_point(|x| (x.mjd(), x.band()) < (t, item.band()));
    list.insert(at, item.clone());
    EpochMerge::Added
}

/// What [`merge_epoch`] did with one measurement.
enum EpochMerge {
    Added,
    /// The measurement was held; this copy is preferred and took the old one's place.
    Replaced,
    Kept,
}

impl EpochMerge {
    /// 1 if the measurement was new; a replaced copy is counted in `out.copies_replaced`.
    fn count(self, out: &mut MergeOutcome) -> u64 {
        match self {
            EpochMerge::Added => 1,
            EpochMerge::Replaced => {
                out.copies_replaced += 1;
                0
            }
            EpochMerge::Kept => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(mjd: f64, band: Band, value: f64, id: Option<i64>) -> Detection {
        Detection {
            mjd,
            band,
            value,
            error: 0.1,
            unit: Unit::Mag,
            source_id: id,
            ra: None,
            dec: None,
        }
    }

    fn alert(mjd: f64, dets: Vec<Detection>) -> Alert {
        Alert {
            object_id: "X".into(),
            alert_id: None,
            survey: Survey::Ztf,
            mjd,
            ra: None,
            dec: None,
            detections: dets,
            forced: vec![],
            upper_limits: vec![],
            annotations: BTreeMap::new(),
        }
    }

    #[test]
    fn merge_is_order_independent_and_deduplicates() {
        let a = alert(
            2.0,
            vec![
                det(1.0, Band::G, 18.0, Some(1)),
                det(2.0, Band::R, 17.0, Some(2)),
            ],
        );
        let b = alert(
            3.0,
            vec![
                det(2.0 + 1e-9, Band::R, 17.0, None),
                det(2.0, Band::G, 19.0, Some(3)),
                det(3.0, Band::R, 16.5, Some(4)),
            ],
        );
        let mut x = ObjectRecord::new("X".into(), Survey::Ztf);
        x.merge(&a);
        let out = x.merge(&b);
        assert_eq!(out.detections_added, 2);
        let mut y = ObjectRecord::new("X".into(), Survey::Ztf);
        y.merge(&b);
        y.merge(&a);
        assert_eq!(x, y);
        assert_eq!(x.detections.len(), 4);
        assert_eq!(
            x.detections[2].source_id,
            Some(2),
            "the copy with an id is kept"
        );
        assert_eq!(x.meta.n_per_band.get("r"), Some(&2));
        assert!(!x.merge(&a).changed(), "replaying an alert changes nothing");
    }

    #[test]
    fn later_annotation_wins_whatever_the_arrival_order() {
        let mut early = alert(1.0, vec![]);
        early
            .annotations
            .insert("cdsxmatch".into(), AnnotationValue::Text("Unknown".into()));
        let mut late = alert(5.0, vec![]);
        late.annotations
            .insert("cdsxmatch".into(), AnnotationValue::Text("RRLyr".into()));
        let mut x = ObjectRecord::new("X".into(), Survey::Ztf);
        x.merge(&late);
        assert!(!x.merge(&early).changed());
        assert_eq!(
            x.annotations["cdsxmatch"].value,
            AnnotationValue::Text("RRLyr".into())
        );
    }

    #[test]
    fn band_names_normalise() {
        assert_eq!(Band::parse("zg"), Band::G);
        assert_eq!(Band::parse("R"), Band::R);
        assert_eq!(Band::from_ztf_fid(3), Some(Band::I));
        assert_eq!(Band::parse("V"), Band::Other("V".into()));
    }
}
