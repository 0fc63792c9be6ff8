//! The commands about what objects are and what users make of them: `labels` (import from a
//! CSV), `classify`, `evaluate`, `anomalies`, `vote` and `recommend`. The labels CSV is read here.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};

use asterism::engine::{AnomalyQuery, EvaluateOptions, RecommendQuery};

use super::args::{AnomaliesArgs, ClassifyArgs, EvaluateArgs, LabelsArgs, RecommendArgs, VoteArgs};
use super::open_existing;
use super::output;

pub(super) fn labels(args: LabelsArgs) -> Result<()> {
    let engine = open_existing(&args.db.db)?;
    let rows = read_labels_csv(&args.file)?;
    let file = &args.file;
    let name = file.file_name().map_or_else(
        || file.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let report = engine.import_labels(&rows, &name)?;
    output::print_labels(&report, args.json)
}

pub(super) fn classify(args: ClassifyArgs) -> Result<()> {
    let engine = open_existing(&args.db.db)?;
    let c = match args.at_age {
        Some(days) => engine.classify_at_age(&args.object_id, days)?,
        None => engine.classify_by(&args.object_id, args.features)?,
    };
    output::print_classification(&c, args.json)
}

pub(super) fn evaluate(args: EvaluateArgs) -> Result<()> {
    let engine = open_existing(&args.db.db)?;
    let truth: BTreeMap<String, String> = read_labels_csv(&args.labels)?.into_iter().collect();
    let r = engine.evaluate(
        &truth,
        &EvaluateOptions {
            learned: args.learned_metric,
            folds: args.folds,
            at_age: args.at_age,
        },
    )?;
    output::print_evaluation(&r, args.json)
}

pub(super) fn anomalies(args: AnomaliesArgs) -> Result<()> {
    let engine = open_existing(&args.db.db)?;
    let list = engine.anomalies(&AnomalyQuery {
        top: args.top,
        since: args.since,
        user: args.user,
    })?;
    output::print_anomalies(&list, args.json)
}

pub(super) fn vote(args: VoteArgs) -> Result<()> {
    let engine = open_existing(&args.db.db)?;
    engine.vote(&args.user, &args.object_id, args.direction.into())?;
    output::print_vote(&args.user, args.direction.as_str(), &args.object_id)
}

pub(super) fn recommend(args: RecommendArgs) -> Result<()> {
    let engine = open_existing(&args.db.db)?;
    let recs = engine.recommend(&RecommendQuery {
        like: args.like,
        unlike: args.unlike,
        user: args.user,
        top: args.top,
        filters: args.filters.filters(),
        features: args.features,
        weights: args.weights,
    })?;
    output::print_recommendations(&recs, args.json)
}

/// Reads `objectId,class` rows (header required; extra columns ignored).
fn read_labels_csv(path: &Path) -> Result<Vec<(String, String)>> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_path(path)
        .with_context(|| format!("reading {}", path.display()))?;
    let header = reader.headers()?.clone();
    let col = |names: &[&str]| header.iter().position(|h| names.contains(&h));
    let id = col(&["objectId", "object_id", "oid", "id"])
        .with_context(|| format!("{}: no objectId column", path.display()))?;
    let class = col(&["class", "label", "type"])
        .with_context(|| format!("{}: no class column", path.display()))?;
    let mut rows = Vec::new();
    for (i, r) in reader.records().enumerate() {
        let r = r.with_context(|| format!("{}: line {}", path.display(), i + 2))?;
        if let (Some(a), Some(b)) = (r.get(id), r.get(class)) {
            if !a.is_empty() && !b.is_empty() {
                rows.push((a.to_string(), b.to_string()));
            }
        }
    }
    Ok(rows)
}
