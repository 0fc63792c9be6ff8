//! Classification figures: accuracy, macro-F1, per-class precision and recall, confusion,
//! and the same for the majority-class baseline. Pure.

use std::collections::BTreeMap;

use serde::Serialize;

/// Classification figures.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Evaluation {
    pub n: usize,
    pub accuracy: f64,
    pub macro_f1: f64,
    pub per_class: BTreeMap<String, ClassFigures>,
    /// confusion[true][predicted] = count.
    pub confusion: BTreeMap<String, BTreeMap<String, usize>>,
    pub baseline_class: String,
    pub baseline_accuracy: f64,
    pub baseline_macro_f1: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClassFigures {
    pub support: usize,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

fn figures(truth: &[String], pred: &[String]) -> (f64, f64, BTreeMap<String, ClassFigures>) {
    let classes: std::collections::BTreeSet<&String> = truth.iter().collect();
    let mut per = BTreeMap::new();
    for c in &classes {
        let tp = truth
            .iter()
            .zip(pred)
            .filter(|(t, p)| t == c && p == c)
            .count() as f64;
        let pp = pred.iter().filter(|p| p == c).count() as f64;
        let support = truth.iter().filter(|t| t == c).count();
        let precision = if pp > 0.0 { tp / pp } else { 0.0 };
        let recall = tp / support as f64;
        let f1 = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        per.insert(
            (*c).clone(),
            ClassFigures {
                support,
                precision,
                recall,
                f1,
            },
        );
    }
    let correct = truth.iter().zip(pred).filter(|(t, p)| t == p).count() as f64;
    let accuracy = correct / truth.len().max(1) as f64;
    let macro_f1 = per.values().map(|f| f.f1).sum::<f64>() / per.len().max(1) as f64;
    (accuracy, macro_f1, per)
}

/// Accuracy, macro-F1, per-class figures and confusion of `pred` against `truth`, and the same
/// for always predicting the most frequent true class.
pub fn evaluate(truth: &[String], pred: &[String]) -> Evaluation {
    let (accuracy, macro_f1, per_class) = figures(truth, pred);
    let mut confusion: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for (t, p) in truth.iter().zip(pred) {
        *confusion
            .entry(t.clone())
            .or_default()
            .entry(p.clone())
            .or_default() += 1;
    }
    let mut freq: BTreeMap<&String, usize> = BTreeMap::new();
    for t in truth {
        *freq.entry(t).or_default() += 1;
    }
    let baseline_class = freq
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
        .map(|(c, _)| (*c).clone())
        .unwrap_or_default();
    let baseline: Vec<String> = vec![baseline_class.clone(); truth.len()];
    let (baseline_accuracy, baseline_macro_f1, _) = figures(truth, &baseline);
    Evaluation {
        n: truth.len(),
        accuracy,
        macro_f1,
        per_class,
        confusion,
        baseline_class,
        baseline_accuracy,
        baseline_macro_f1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn metrics_and_baseline() {
        let t: Vec<String> = ["a", "a", "a", "b"].iter().map(|s| s.to_string()).collect();
        let p: Vec<String> = ["a", "a", "b", "b"].iter().map(|s| s.to_string()).collect();
        let e = evaluate(&t, &p);
        assert_eq!(e.accuracy, 0.75);
        assert_eq!(e.baseline_class, "a");
        assert_eq!(e.baseline_accuracy, 0.75);
        assert!(e.macro_f1 > e.baseline_macro_f1);
        assert_eq!(e.confusion["a"]["b"], 1);
    }
}
