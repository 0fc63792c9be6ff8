//! The coarse class taxonomy and the mapping of broker and catalogue labels onto it.
//!
//! Classes: SN Ia, SN II, SN Ibc, SN other, SLSN, TDE, CV/Nova, YSO, RR Lyr, Cepheid,
//! delta Sct, LPV, Eclipsing, AGN/QSO, Galaxy, Star (other), Solar System, rare transient.
//!
//! Sources, most trusted first: an imported CSV (`csv:<file>`), the TNS spectroscopic class
//! (`tnsclass`, `tns_class`, `xm.tns_type`, or a Fink-portal `(TNS) X` cross-match string), the
//! Fink class (`fink_class`; its model candidates such as "SN candidate" are not labels), the
//! SIMBAD cross-match type (`cdsxmatch`, `xm.simbad_otype`) and VSX (`vsx`, `xm.vsx_Type`).
//! SIMBAD and VSX matches are positional (sometimes the host galaxy or a neighbour star), so
//! they are noisy. [`LABEL_FIELDS`] is the one list of annotations that carry labels (the
//! export reads it too). Imports `model`.

use crate::model::{AnnotationValue, Label, ObjectRecord};

/// The taxonomy, in display order.
pub const CLASSES: &[&str] = &[
    "SN Ia",
    "SN II",
    "SN Ibc",
    "SN other",
    "SLSN",
    "TDE",
    "CV/Nova",
    "YSO",
    "RR Lyr",
    "Cepheid",
    "delta Sct",
    "LPV",
    "Eclipsing",
    "AGN/QSO",
    "Galaxy",
    "Star (other)",
    "Solar System",
    "rare transient",
];

/// Trust order of sources: lower is more trusted.
fn rank(source: &str) -> usize {
    if source.starts_with("csv:") {
        0
    } else {
        match source {
            "TNS" => 1,
            "Fink" => 2,
            "SIMBAD" => 3,
            "VSX" | "GCVS" => 4,
            _ => 5,
        }
    }
}

/// A taxonomy class named the way a user may write it (`sn ia`, `RRLyr`, ...).
pub fn canonical(name: &str) -> Option<&'static str> {
    let n = name.trim();
    CLASSES
        .iter()
        .find(|c| c.eq_ignore_ascii_case(n))
        .copied()
        .or_else(|| coarse("SIMBAD", n))
}

/// Maps a TNS type (`SN Ia-91T-like`, `SN IIn`, `TDE`, ...) onto the taxonomy.
fn tns(raw: &str) -> Option<&'static str> {
    let r = raw.trim();
    let class = if r.starts_with("SN Ia") || r.starts_with("SNIa") {
        "SN Ia"
    } else if r.starts_with("SN Ib") || r.starts_with("SN Ic") || r == "SN Ibc" {
        "SN Ibc"
    } else if r.starts_with("SN II") {
        "SN II"
    } else if r.starts_with("SLSN") {
        "SLSN"
    } else if r.starts_with("TDE") {
        "TDE"
    } else if r.starts_with("CV") || r.contains("Nova") && !r.contains("Kilonova") {
        "CV/Nova"
    } else if r == "AGN" || r == "QSO" || r.starts_with("Blazar") {
        "AGN/QSO"
    } else if r == "Galaxy" {
        "Galaxy"
    } else if r.starts_with("Kilonova") || ["Afterglow", "LRN", "LBV", "ILRT", "FRB"].contains(&r) {
        "rare transient"
    } else if r == "SN" || r.starts_with("Impostor") {
        "SN other"
    } else if r.starts_with("Varstar") || r == "Other" || r == "M dwarf" {
        "Star (other)"
    } else {
        return None;
    };
    Some(class)
}

/// Maps a SIMBAD (or VSX) object type onto the taxonomy.
fn simbad(raw: &str) -> Option<&'static str> {
    let r = raw.trim();
    let lower = r.to_ascii_lowercase();
    if r.is_empty() || lower == "unknown" || lower == "fail" || lower.starts_with("fail") {
        return None;
    }
    let has = |s: &str| lower.contains(s);
    let class = if has("rrlyr") || r.starts_with("RR") {
        "RR Lyr"
    } else if has("cep") || r == "Ce*" || r == "cC*" || r == "DCEP" {
        "Cepheid"
    } else if has("delsct") || has("sx") || r == "dS*" || r == "DSCT" {
        "delta Sct"
    } else if has("lpv") || has("mira") || r == "Mi*" || r == "SR*" || r.starts_with("SR") {
        "LPV"
    } else if r.starts_with("EB")
        || has("eclbin")
        || has("bydra")
        || r.starts_with("EA")
        || r.starts_with("EW")
    {
        "Eclipsing"
    } else if has("yso") || has("ttau") || has("orion") || r == "Ae*" {
        "YSO"
    } else if has("cataclyv") || has("nova") && !has("kilonova") || r == "CV*" || r == "UG" {
        "CV/Nova"
    } else if has("seyfert")
        || has("qso")
        || has("agn")
        || has("blazar")
        || has("liner")
        || has("bllac")
    {
        "AGN/QSO"
    } else if has("candidate_sn") || has("supernova") || r == "SN" || lower == "sn candidate" {
        "SN other"
    } else if has("solar system") || has("sso") || has("mpc") {
        "Solar System"
    } else if has("kilonova") {
        "rare transient"
    } else if r == "G" || r.starts_with("HII_G") || r == "Galaxy" || has("galaxy") || r == "GinPair"
    {
        "Galaxy"
    } else {
        "Star (other)"
    };
    Some(class)
}

/// Maps a label from `source` onto the taxonomy; `None` for unknowns and model candidates.
pub fn coarse(source: &str, raw: &str) -> Option<&'static str> {
    let raw = raw.trim();
    if let Some(rest) = raw.strip_prefix("(TNS) ") {
        return tns(rest);
    }
    if let Some(rest) = raw.strip_prefix("(SIMBAD) ") {
        return simbad(rest);
    }
    match source {
        "TNS" => tns(raw),
        // Fink's own model outputs ("SN candidate", "Early SN Ia candidate", ...) are
        // predictions, not labels.
        "Fink" if raw.to_ascii_lowercase().contains("candidate") => None,
        "Fink" => tns(raw).or_else(|| simbad(raw)),
        _ => simbad(raw),
    }
}

/// Annotations that carry labels, with their source, by the names brokers use.
pub const LABEL_FIELDS: &[(&str, &str)] = &[
    ("tnsclass", "TNS"),
    ("tns_class", "TNS"),
    ("xm.tns_type", "TNS"),
    ("tns_type_recomputed", "TNS"),
    ("fink_class", "Fink"),
    ("finkclass", "Fink"),
    ("cdsxmatch", "SIMBAD"),
    ("xm.simbad_otype", "SIMBAD"),
    ("vsx", "VSX"),
    ("xm.vsx_Type", "VSX"),
    ("gcvs", "GCVS"),
    ("xm.gcvs_type", "GCVS"),
];

/// Every label an object carries: imported ones and those in its annotations, most trusted
/// first.
pub fn labels_of(record: &ObjectRecord, imported: &[Label]) -> Vec<Label> {
    merge(imported, record_labels(record))
}

/// Imported labels and a record's own ([`record_labels`]), most trusted first (imported first
/// among equals).
pub fn merge(imported: &[Label], record: Vec<Label>) -> Vec<Label> {
    let mut out: Vec<Label> = imported.to_vec();
    out.extend(record);
    out.sort_by_key(|l| rank(&l.source));
    out
}

/// The labels a record's annotations carry (broker classes, cross-matches), in field order.
pub fn record_labels(record: &ObjectRecord) -> Vec<Label> {
    let mut out = Vec::new();
    for (field, source) in LABEL_FIELDS {
        if let Some(a) = record.annotations.get(*field) {
            if let AnnotationValue::Text(raw) = &a.value {
                if let Some(class) = coarse(source, raw) {
                    // A Fink-portal "(TNS) X" string in a SIMBAD column is a TNS label.
                    let source = if raw.starts_with("(TNS) ") {
                        "TNS"
                    } else {
                        source
                    };
                    out.push(Label {
                        class: class.to_string(),
                        source: source.to_string(),
                        raw: raw.clone(),
                    });
                }
            }
        }
    }
    out
}

/// The most trusted label, if any.
pub fn primary(labels: &[Label]) -> Option<&Label> {
    labels.iter().min_by_key(|l| rank(&l.source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_strings_map_onto_the_taxonomy() {
        assert_eq!(coarse("SIMBAD", "(TNS) SN Ia-91bg-like"), Some("SN Ia"));
        assert_eq!(coarse("SIMBAD", "(TNS) SN Icn"), Some("SN Ibc"));
        assert_eq!(coarse("SIMBAD", "(SIMBAD) Seyfert_2"), Some("AGN/QSO"));
        assert_eq!(coarse("SIMBAD", "RRLyr"), Some("RR Lyr"));
        assert_eq!(coarse("SIMBAD", "EB*_Candidate"), Some("Eclipsing"));
        assert_eq!(coarse("SIMBAD", "pulsV*SX"), Some("delta Sct"));
        assert_eq!(coarse("SIMBAD", "Unknown"), None);
        assert_eq!(coarse("Fink", "Early SN Ia candidate"), None);
        assert_eq!(coarse("TNS", "SN IIn"), Some("SN II"));
        assert_eq!(coarse("TNS", "Kilonova"), Some("rare transient"));
        assert_eq!(canonical("sn ia"), Some("SN Ia"));
        assert_eq!(canonical("RR Lyr"), Some("RR Lyr"));
    }
}
