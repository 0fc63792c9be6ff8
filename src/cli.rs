//! Command-line parsing and output. Arguments are parsed by clap, resolved into validated
//! engine configuration, and results printed as text or, with `--json`, one JSON document.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use serde_json::{json, Value};

use asterism::alert::{DecodeOptions, Decoded, Reject};
use asterism::engine::{Engine, EngineConfig, IngestReport};
use asterism::model::{AnnotationValue, Detection, ObjectRecord, Unit};
use asterism::source;
use asterism::store::StoreConfig;

#[derive(Parser, Debug)]
#[command(
    name = "asterism",
    version,
    about = "A similarity graph over sky-survey alert streams"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug)]
struct DbArg {
    /// Database directory (created by `ingest` if missing).
    #[arg(long, value_name = "DIR")]
    db: PathBuf,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Ingest alert packets and lightcurve tables (files, directories, .tar, .tar.gz).
    Ingest {
        #[command(flatten)]
        db: DbArg,
        /// Files or directories to read, recursively.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// Writer schema for Confluent-framed Avro datums: an .avsc file, or a directory of
        /// the split .avsc files of one LSST schema version.
        #[arg(long, value_name = "PATH")]
        schema: Option<PathBuf>,
        /// Alerts per atomic write.
        #[arg(long, default_value_t = 1000)]
        batch_size: usize,
        /// Do not fsync each batch (a killed process still loses nothing; a power cut may).
        #[arg(long)]
        no_sync: bool,
        /// Print the summary as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Show an object's metadata, lightcurve and annotations.
    Object {
        #[command(flatten)]
        db: DbArg,
        object_id: String,
        #[arg(long)]
        json: bool,
    },
    /// Objects, alerts and detections per survey.
    Stats {
        #[command(flatten)]
        db: DbArg,
        #[arg(long)]
        json: bool,
    },
    /// The objects most similar to one object (nearest first, the object itself excluded).
    Similar {
        #[command(flatten)]
        db: DbArg,
        object_id: String,
        /// Number of neighbours.
        #[arg(short, default_value_t = 10)]
        k: usize,
        /// Search the embeddings every object had at this MJD (exact search).
        #[arg(long, value_name = "MJD")]
        as_of: Option<f64>,
        #[arg(long)]
        json: bool,
    },
    /// Write one row per object (id, survey, counts, embedding, labels) to a Parquet file.
    Export {
        #[command(flatten)]
        db: DbArg,
        #[arg(long, value_name = "FILE.parquet")]
        out: PathBuf,
    },
    /// Connected components of the kNN graph and KMeans clusters of the embeddings.
    Clusters {
        #[command(flatten)]
        db: DbArg,
        /// Number of KMeans clusters (default: sqrt(n/2), within 2..=20).
        #[arg(short)]
        k: Option<usize>,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long)]
        json: bool,
    },
    /// Re-embed every object with the current feature list, refit the scaler, rebuild the
    /// index and the kNN graph.
    Reindex {
        #[command(flatten)]
        db: DbArg,
        #[arg(long)]
        json: bool,
    },
}

pub fn run() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Ingest {
            db,
            paths,
            schema,
            batch_size,
            no_sync,
            json,
        } => {
            let config = EngineConfig {
                store: StoreConfig {
                    sync_writes: !no_sync,
                },
                batch_size,
                ..EngineConfig::default()
            };
            let engine = Engine::open(&db.db, config)?;
            let mut opts = DecodeOptions::default();
            if let Some(path) = schema {
                let parsed = source::load_schema(&path)
                    .map_err(|e| anyhow::anyhow!("cannot load the schema: {e}"))?;
                opts.confluent_schema = Some(Arc::new(parsed));
            }
            let report = ingest(&engine, &paths, &opts)?;
            engine.checkpoint()?;
            print_ingest(&report, json)
        }
        Command::Object {
            db,
            object_id,
            json,
        } => {
            let engine = open_existing(&db.db)?;
            let record = engine.object(&object_id)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&object_json(&record))?);
            } else {
                print_object(&record);
            }
            Ok(())
        }
        Command::Stats { db, json } => {
            let engine = open_existing(&db.db)?;
            let stats = engine.stats()?;
            if json {
                let per: serde_json::Map<String, Value> = stats
                    .iter()
                    .map(|(s, c)| {
                        (
                            s.to_string(),
                            json!({"objects": c.objects, "alerts": c.alerts, "detections": c.detections}),
                        )
                    })
                    .collect();
                let total = stats.values().fold((0, 0, 0), |t, c| {
                    (t.0 + c.objects, t.1 + c.alerts, t.2 + c.detections)
                });
                let doc = json!({
                    "objects": total.0, "alerts": total.1, "detections": total.2,
                    "surveys": per,
                });
                println!("{}", serde_json::to_string_pretty(&doc)?);
            } else {
                println!(
                    "{:<10} {:>10} {:>10} {:>12}",
                    "survey", "objects", "alerts", "detections"
                );
                for (s, c) in &stats {
                    println!(
                        "{:<10} {:>10} {:>10} {:>12}",
                        s.as_str(),
                        c.objects,
                        c.alerts,
                        c.detections
                    );
                }
            }
            Ok(())
        }
        Command::Similar {
            db,
            object_id,
            k,
            as_of,
            json,
        } => {
            let engine = open_existing(&db.db)?;
            let neighbours = engine.similar(&object_id, k, as_of)?;
            if json {
                let doc = json!({
                    "object_id": object_id,
                    "as_of": as_of,
                    "neighbours": neighbours.iter().map(|n| json!({
                        "object_id": n.object_id, "distance": n.distance,
                    })).collect::<Vec<_>>(),
                });
                println!("{}", serde_json::to_string_pretty(&doc)?);
            } else {
                println!("{:>4}  {:<24} {:>10}", "rank", "object", "distance");
                for (i, n) in neighbours.iter().enumerate() {
                    println!("{:>4}  {:<24} {:>10.4}", i + 1, n.object_id, n.distance);
                }
            }
            Ok(())
        }
        Command::Export { db, out } => {
            let engine = open_existing(&db.db)?;
            let rows = asterism::export::export_parquet(&engine, &out)?;
            println!("wrote {rows} objects to {}", out.display());
            Ok(())
        }
        Command::Clusters { db, k, seed, json } => {
            let engine = open_existing(&db.db)?;
            let report = engine.clusters(k, seed)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "{} objects; kNN graph components: {} (largest {:?})",
                    report.objects,
                    report.component_sizes.len(),
                    &report.component_sizes[..report.component_sizes.len().min(5)]
                );
                for c in &report.clusters {
                    println!(
                        "cluster {:>2}: {:>6} objects {:?} e.g. {}",
                        c.id,
                        c.size,
                        c.surveys,
                        c.examples.join(", ")
                    );
                }
            }
            Ok(())
        }
        Command::Reindex { db, json } => {
            let engine = open_existing(&db.db)?;
            let report = engine.reindex()?;
            engine.checkpoint()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "re-embedded {} objects ({} versions, {} features)",
                    report.objects, report.versions, report.dim
                );
            }
            Ok(())
        }
    }
}

/// Opens a database that must already exist (queries never create one).
fn open_existing(path: &std::path::Path) -> Result<Engine> {
    if !path.is_dir() {
        anyhow::bail!(
            "no database at {} (run `asterism ingest` first)",
            path.display()
        );
    }
    Engine::open(path, EngineConfig::default())
        .with_context(|| format!("opening {}", path.display()))
}

/// Files decoded in parallel per round; decoding is pure, writing is serial.
const FILES_PER_ROUND: usize = 32;

fn ingest(engine: &Engine, paths: &[PathBuf], opts: &DecodeOptions) -> Result<IngestReport> {
    let (files, unreadable) = source::expand(paths);
    let mut session = engine.session();
    session.add(Decoded {
        alerts: Vec::new(),
        rejects: unreadable
            .into_iter()
            .map(|u| Reject {
                source: u.path.display().to_string(),
                error: asterism::alert::DecodeError::Archive {
                    detail: format!("cannot read: {}", u.reason),
                },
            })
            .collect(),
    })?;
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(files.len() as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} files {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    for round in files.chunks(FILES_PER_ROUND) {
        let decoded: Vec<Decoded> = round
            .par_iter()
            .map(|f| source::decode_file(f, opts))
            .collect();
        for d in decoded {
            session.add(d)?;
            bar.inc(1);
        }
        let r = session.report();
        bar.set_message(format!(
            "{} alerts, {} rejected",
            r.alerts_read, r.alerts_rejected
        ));
    }
    bar.finish_and_clear();
    Ok(session.finish())
}

fn print_ingest(report: &IngestReport, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    println!("alerts read:       {}", report.alerts_read);
    println!("alerts rejected:   {}", report.alerts_rejected);
    println!("alerts duplicate:  {}", report.alerts_duplicate);
    println!("objects new:       {}", report.objects_new);
    println!("objects updated:   {}", report.objects_updated);
    println!("detections added:  {}", report.detections_added);
    for r in &report.rejects {
        println!("rejected {}: {}", r.source, r.reason);
    }
    Ok(())
}

fn unit_name(u: Unit) -> &'static str {
    match u {
        Unit::DiffMag { .. } => "diff_mag",
        Unit::Mag => "mag",
        Unit::FluxNjy => "flux_njy",
        Unit::FluxDn => "flux_dn",
        Unit::Flux => "flux",
    }
}

fn detection_json(d: &Detection) -> Value {
    let mut v = json!({
        "mjd": d.mjd,
        "band": d.band.name(),
        "value": d.value,
        "error": d.error,
        "unit": unit_name(d.unit),
    });
    if let Unit::DiffMag { positive } = d.unit {
        v["isdiffpos"] = json!(positive);
    }
    if let Some(id) = d.source_id {
        v["source_id"] = json!(id);
    }
    v
}

fn annotation_json(v: &AnnotationValue) -> Value {
    match v {
        AnnotationValue::Bool(b) => json!(b),
        AnnotationValue::Number(x) => json!(x),
        AnnotationValue::Text(s) => json!(s),
    }
}

fn object_json(r: &ObjectRecord) -> Value {
    let annotations: serde_json::Map<String, Value> = r
        .annotations
        .iter()
        .map(|(k, a)| {
            (
                k.clone(),
                json!({"value": annotation_json(&a.value), "mjd": a.mjd}),
            )
        })
        .collect();
    json!({
        "object_id": r.object_id,
        "survey": r.survey.as_str(),
        "n_detections": r.detections.len(),
        "first_mjd": r.meta.first_mjd,
        "last_mjd": r.meta.last_mjd,
        "n_per_band": r.meta.n_per_band,
        "ra": r.meta.ra,
        "dec": r.meta.dec,
        "detections": r.detections.iter().map(detection_json).collect::<Vec<_>>(),
        "forced": r.forced.iter().map(detection_json).collect::<Vec<_>>(),
        "upper_limits": r.upper_limits.iter().map(|l| json!({
            "mjd": l.mjd, "band": l.band.name(), "limit_mag": l.limit_mag,
        })).collect::<Vec<_>>(),
        "annotations": annotations,
    })
}

fn print_object(r: &ObjectRecord) {
    println!("object      {}", r.object_id);
    println!("survey      {}", r.survey);
    if let (Some(ra), Some(dec)) = (r.meta.ra, r.meta.dec) {
        println!("position    ra {ra:.6} dec {dec:.6}");
    }
    if let (Some(f), Some(l)) = (r.meta.first_mjd, r.meta.last_mjd) {
        println!("detected    MJD {f:.5} .. {l:.5}");
    }
    let per_band: Vec<String> = r
        .meta
        .n_per_band
        .iter()
        .map(|(b, n)| format!("{b}:{n}"))
        .collect();
    println!(
        "detections  {} ({}), forced {}, upper limits {}",
        r.detections.len(),
        per_band.join(" "),
        r.forced.len(),
        r.upper_limits.len()
    );
    for (k, a) in &r.annotations {
        println!("  {k} = {} (MJD {:.5})", annotation_json(&a.value), a.mjd);
    }
    println!(
        "{:>14} {:>5} {:>14} {:>12} unit",
        "mjd", "band", "value", "error"
    );
    for d in &r.detections {
        println!(
            "{:>14.6} {:>5} {:>14.4} {:>12.4} {}",
            d.mjd,
            d.band.name(),
            d.value,
            d.error,
            unit_name(d.unit)
        );
    }
}
