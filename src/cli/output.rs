//! Everything the commands write to stdout: each result as text, or with `--json` as one
//! pretty-printed JSON document. This is the only file of the CLI that writes stdout (the
//! progress bars of `ingest` and `generate` draw on stderr); a write that fails, such as to a
//! closed pipe, is returned as an error, never a panic (see `main`).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use serde_json::json;

use asterism::engine::{
    AnomalyScore, BackupReport, CheckReport, Classification, ClusterReport, EvaluationReport,
    IngestReport, LabelImport, Recommendation, ReindexReport, SimilarHit,
};
use asterism::model::{ObjectRecord, Survey};
use asterism::science::Explanation;
use asterism::server::json;
use asterism::store::{Counts, PartitionOffset};

/// `println!` that returns the error instead of panicking (a closed pipe, as with `| head`,
/// ends the command quietly: see `main`).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*)?;
    }};
}

pub(super) fn print_json(v: &impl serde::Serialize) -> Result<()> {
    say!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub(super) fn print_backup(r: &BackupReport, json: bool) -> Result<()> {
    if json {
        return print_json(r);
    }
    say!(
        "backed up {} objects into {} ({:.1} MB{})",
        r.objects,
        r.out_dir,
        r.bytes as f64 / 1e6,
        if r.index_dump {
            ", with the index dump"
        } else {
            "; no index dump: the copy rebuilds its index when opened"
        }
    );
    Ok(())
}

pub(super) fn print_check(r: &CheckReport, json: bool) -> Result<()> {
    if json {
        return print_json(r);
    }
    say!(
        "{} objects, {} vector versions, {} neighbour lists, {} labelled, {} indexed",
        r.objects,
        r.vector_versions,
        r.neighbour_lists,
        r.labelled_objects,
        r.indexed
    );
    for p in &r.problems {
        say!("  {p}");
    }
    if r.is_sound() {
        say!("sound: every part agrees with the others");
    } else {
        say!("{} problems", r.problem_count);
    }
    Ok(())
}

pub(super) fn print_ingest(report: &IngestReport, json: bool) -> Result<()> {
    print_ingest_seeded(report, None, json)
}

/// [`print_ingest`], with what the second pass of `ingest --bulk` did (JSON key `seed`).
pub(super) fn print_ingest_seeded(
    report: &IngestReport,
    seeded: Option<&asterism::engine::SeedReport>,
    json: bool,
) -> Result<()> {
    if json {
        let mut doc = serde_json::to_value(report)?;
        if let Some(s) = seeded {
            doc["seed"] = serde_json::to_value(s)?;
        }
        return print_json(&doc);
    }
    if let Some(s) = seeded {
        say!(
            "seeded:            {} objects embedded in {:.1} s, indexed in {:.1} s, {} links in {:.1} s",
            s.objects,
            s.embed_seconds,
            s.index_seconds,
            s.links,
            s.link_seconds
        );
    }
    say!("alerts read:       {}", report.alerts_read);
    say!("alerts rejected:   {}", report.alerts_rejected);
    say!("alerts duplicate:  {}", report.alerts_duplicate);
    say!("objects new:       {}", report.objects_new);
    say!("objects updated:   {}", report.objects_updated);
    say!("detections added:  {}", report.detections_added);
    for r in &report.rejects {
        say!("rejected {}: {}", r.source, r.reason);
    }
    Ok(())
}

/// What `generate` wrote.
pub(super) struct GenerateSummary<'a> {
    pub(super) out: &'a Path,
    pub(super) survey: Survey,
    pub(super) seed: u64,
    pub(super) objects: usize,
    pub(super) packets: u64,
    pub(super) files: usize,
    pub(super) packet_bytes: u64,
    /// Real lightcurves usable as sources.
    pub(super) source_objects: usize,
}

pub(super) fn print_generate(s: &GenerateSummary, json: bool) -> Result<()> {
    if json {
        return print_json(&json!({
            "out": s.out.display().to_string(),
            "objects": s.objects,
            "packets": s.packets,
            "files": s.files,
            "packet_bytes": s.packet_bytes,
            "source_objects": s.source_objects,
            "survey": s.survey.as_str(),
            "seed": s.seed,
        }));
    }
    say!(
        "wrote {} {} packets of {} objects ({:.1} MB) in {} files under {} \
         (from {} real lightcurves, seed {})",
        s.packets,
        s.survey.as_str().to_uppercase(),
        s.objects,
        s.packet_bytes as f64 / 1e6,
        s.files,
        s.out.display(),
        s.source_objects,
        s.seed
    );
    Ok(())
}

pub(super) fn print_reindex(report: &ReindexReport, json: bool) -> Result<()> {
    if json {
        return print_json(report);
    }
    say!(
        "re-embedded {} objects ({} versions, {} features); graph built with {} candidates",
        report.objects,
        report.versions,
        report.dim,
        report.build_expansion
    );
    Ok(())
}

pub(super) fn print_serving(db: &Path, addr: std::net::SocketAddr) -> Result<()> {
    say!("asterism serving {} on {addr}", db.display());
    Ok(())
}

pub(super) fn print_serving_http(addr: std::net::SocketAddr) -> Result<()> {
    say!("asterism HTTP API on http://{addr}/api/v1/ (panel: http://{addr}/panel/OBJECT_ID)");
    Ok(())
}

pub(super) fn print_stopped() -> Result<()> {
    say!("asterism stopped");
    Ok(())
}

pub(super) fn print_stats(
    stats: &BTreeMap<Survey, Counts>,
    partitions: &[PartitionOffset],
    json: bool,
) -> Result<()> {
    if json {
        return print_json(&json::stats_with_partitions(stats, partitions));
    }
    say!(
        "{:<10} {:>10} {:>10} {:>12}",
        "survey",
        "objects",
        "alerts",
        "detections"
    );
    for (s, c) in stats {
        say!(
            "{:<10} {:>10} {:>10} {:>12}",
            s.as_str(),
            c.objects,
            c.alerts,
            c.detections
        );
    }
    print_partitions(partitions)
}

pub(super) fn print_similar(
    object_id: &str,
    as_of: Option<f64>,
    neighbours: &[SimilarHit],
    json: bool,
) -> Result<()> {
    if json {
        return print_json(&json::similar(object_id, as_of, neighbours, false));
    }
    say!(
        "{:>4}  {:<24} {:>10}  {:<14} detections",
        "rank",
        "object",
        "distance",
        "class"
    );
    for (i, n) in neighbours.iter().enumerate() {
        say!(
            "{:>4}  {:<24} {:>10.4}  {:<14} {}",
            i + 1,
            n.object_id,
            n.distance,
            n.class.as_deref().unwrap_or("-"),
            n.n_detections
        );
    }
    Ok(())
}

pub(super) fn print_export(rows: usize, out: &Path) -> Result<()> {
    say!("wrote {rows} objects to {}", out.display());
    Ok(())
}

pub(super) fn print_clusters(report: &ClusterReport, json: bool) -> Result<()> {
    if json {
        return print_json(report);
    }
    say!(
        "{} objects; kNN graph components: {} (largest {:?})",
        report.objects,
        report.component_sizes.len(),
        &report.component_sizes[..report.component_sizes.len().min(5)]
    );
    for c in &report.clusters {
        say!(
            "cluster {:>2}: {:>6} objects {:?} e.g. {}",
            c.id,
            c.size,
            c.surveys,
            c.examples.join(", ")
        );
    }
    Ok(())
}

pub(super) fn print_explanation(a: &str, b: &str, e: &Explanation, json: bool) -> Result<()> {
    if json {
        return print_json(e);
    }
    say!("distance {a} - {b}: {:.3}", e.distance);
    say!("share of the squared distance by band: {:?}", e.by_band);
    say!("what sets them apart:");
    for c in &e.apart {
        say!(
            "  {:<40} {:>7.3} vs {:>7.3}  {:>5.1}%",
            c.feature,
            c.a,
            c.b,
            100.0 * c.share
        );
    }
    say!("what they share:");
    for c in &e.closest {
        say!("  {:<40} {:>7.3} vs {:>7.3}", c.feature, c.a, c.b);
    }
    Ok(())
}

pub(super) fn print_labels(report: &LabelImport, json: bool) -> Result<()> {
    if json {
        return print_json(report);
    }
    say!(
        "imported {} labels ({} rows name objects not in the store)",
        report.imported,
        report.unknown_objects.len()
    );
    for (c, n) in &report.classes {
        say!("  {c:<16} {n}");
    }
    Ok(())
}

pub(super) fn print_classification(c: &Classification, json: bool) -> Result<()> {
    if json {
        return print_json(c);
    }
    say!(
        "{}: {} (confidence {:.2}, by {})",
        c.object_id,
        c.class.as_deref().unwrap_or("unknown"),
        c.confidence,
        c.method
    );
    let mut probs: Vec<_> = c.probabilities.iter().collect();
    probs.sort_by(|a, b| b.1.total_cmp(a.1));
    for (class, p) in probs {
        say!("  {class:<16} {p:.3}");
    }
    for v in &c.voters {
        say!(
            "  voter {:<24} {:<14} d={:.3} ({})",
            v.object_id,
            v.class,
            v.distance,
            v.source
        );
    }
    Ok(())
}

pub(super) fn print_evaluation(r: &EvaluationReport, json: bool) -> Result<()> {
    if json {
        return print_json(r);
    }
    let e = &r.evaluation;
    say!(
        "n {}  accuracy {:.3}  macro-F1 {:.3}  (majority baseline '{}': accuracy {:.3}, macro-F1 {:.3}); {} labelled objects not in the store",
        e.n, e.accuracy, e.macro_f1, e.baseline_class, e.baseline_accuracy, e.baseline_macro_f1, r.missing
    );
    for (c, f) in &e.per_class {
        say!(
            "  {c:<16} support {:>4}  precision {:.3}  recall {:.3}  f1 {:.3}",
            f.support,
            f.precision,
            f.recall,
            f.f1
        );
    }
    Ok(())
}

pub(super) fn print_anomalies(list: &[AnomalyScore], json: bool) -> Result<()> {
    if json {
        return print_json(&json::anomalies(list));
    }
    for (i, a) in list.iter().enumerate() {
        say!(
            "{:>4}  {:<24} score {:.3}  (LOF {:.2}, isolation {:.3})",
            i + 1,
            a.object_id,
            a.score,
            a.lof,
            a.isolation
        );
    }
    Ok(())
}

pub(super) fn print_vote(user: &str, direction: &str, object_id: &str) -> Result<()> {
    say!("{user} voted {direction} {object_id}");
    Ok(())
}

pub(super) fn print_recommendations(recs: &[Recommendation], json: bool) -> Result<()> {
    if json {
        return print_json(&recs);
    }
    for (i, r) in recs.iter().enumerate() {
        say!(
            "{:>4}  {:<24} score {:.4}  {:<14} {} detections",
            i + 1,
            r.object_id,
            r.score,
            r.class.as_deref().unwrap_or("-"),
            r.n_detections
        );
    }
    Ok(())
}

pub(super) fn print_object(r: &ObjectRecord, json: bool) -> Result<()> {
    if json {
        return print_json(&json::object(r));
    }
    say!("object      {}", r.object_id);
    say!("survey      {}", r.survey);
    if let (Some(ra), Some(dec)) = (r.meta.ra, r.meta.dec) {
        say!("position    ra {ra:.6} dec {dec:.6}");
    }
    if let (Some(f), Some(l)) = (r.meta.first_mjd, r.meta.last_mjd) {
        say!("detected    MJD {f:.5} .. {l:.5}");
    }
    let per_band: Vec<String> = r
        .meta
        .n_per_band
        .iter()
        .map(|(b, n)| format!("{b}:{n}"))
        .collect();
    say!(
        "detections  {} ({}), forced {}, upper limits {}",
        r.detections.len(),
        per_band.join(" "),
        r.forced.len(),
        r.upper_limits.len()
    );
    for (k, a) in &r.annotations {
        say!("  {k} = {} (MJD {:.5})", json::annotation(&a.value), a.mjd);
    }
    say!(
        "{:>14} {:>5} {:>14} {:>12} unit",
        "mjd",
        "band",
        "value",
        "error"
    );
    for d in &r.detections {
        say!(
            "{:>14.6} {:>5} {:>14.4} {:>12.4} {}",
            d.mjd,
            d.band.name(),
            d.value,
            d.error,
            json::unit_name(d.unit)
        );
    }
    Ok(())
}

/// What `consume` did: the ingest summary, then the messages and each partition's position.
#[cfg(feature = "kafka")]
pub(super) fn print_consume(report: &asterism::stream::ConsumeReport, json: bool) -> Result<()> {
    if json {
        return print_json(report);
    }
    print_ingest(&report.ingest, false)?;
    say!("messages:          {}", report.messages);
    say!("quarantined:       {}", report.quarantined);
    say!("skipped (stored):  {}", report.skipped);
    if report.published > 0 {
        say!("updates published: {}", report.published);
    }
    say!("busy seconds:      {:.2}", report.busy_seconds);
    print_partitions(&report.partitions)
}

/// Each Kafka partition the store has read: next offset, high watermark, lag.
pub(super) fn print_partitions(partitions: &[PartitionOffset]) -> Result<()> {
    if partitions.is_empty() {
        return Ok(());
    }
    say!(
        "{:<32} {:>9} {:>12} {:>12} {:>8}",
        "topic",
        "partition",
        "next",
        "high",
        "lag"
    );
    for p in partitions {
        let opt = |v: Option<i64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
        say!(
            "{:<32} {:>9} {:>12} {:>12} {:>8}",
            p.topic,
            p.partition,
            p.next,
            opt(p.high_watermark),
            opt(p.lag())
        );
    }
    Ok(())
}

/// The quarantined messages, without their bytes (`--dump` writes those).
#[cfg(feature = "kafka")]
pub(super) fn print_quarantine(list: &[asterism::store::Quarantined], json: bool) -> Result<()> {
    if json {
        let rows: Vec<serde_json::Value> = list
            .iter()
            .map(|q| {
                json!({
                    "topic": q.topic,
                    "partition": q.partition,
                    "offset": q.offset,
                    "bytes": q.bytes.len(),
                    "reason": q.reason,
                    "quarantined_at": q.at,
                })
            })
            .collect();
        return print_json(&rows);
    }
    if list.is_empty() {
        say!("no quarantined message");
    }
    for q in list {
        say!(
            "{}/{}@{} ({} bytes, at {}): {}",
            q.topic,
            q.partition,
            q.offset,
            q.bytes.len(),
            q.at,
            q.reason
        );
    }
    Ok(())
}
