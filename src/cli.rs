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

use asterism::alert::write::PacketWriter;
use asterism::alert::{DecodeOptions, Decoded, Reject};
use asterism::engine::{
    AnomalyQuery, Cone, Engine, EngineConfig, Filters, IngestReport, RecommendQuery, SimilarQuery,
    Target,
};
use asterism::model::{AnnotationValue, Detection, ObjectRecord, Survey, Unit, Vote};
use asterism::server::{self, Access, ServerConfig};
use asterism::store::StoreConfig;
use asterism::{source, synth};
use std::collections::BTreeMap;

/// `println!` that returns the error instead of panicking (a closed pipe, as with `| head`,
/// ends the command quietly: see `main`).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*)?;
    }};
}

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

/// Conditions on the objects an answer may name.
#[derive(Args, Debug)]
struct FilterArgs {
    /// Only objects of this coarse class (their label, else their predicted class).
    #[arg(long)]
    class: Option<String>,
    #[arg(long)]
    min_detections: Option<usize>,
    /// Only objects detected at or after this MJD.
    #[arg(long, value_name = "MJD")]
    since: Option<f64>,
    /// Only objects within a sky cone: RA,DEC,RADIUS in degrees.
    #[arg(long, value_name = "RA,DEC,R", value_parser = parse_cone)]
    cone: Option<Cone>,
}

impl FilterArgs {
    fn filters(self) -> Filters {
        Filters {
            class: self.class,
            min_detections: self.min_detections,
            last_after: self.since,
            last_before: None,
            cone: self.cone,
        }
    }
}

fn parse_cone(text: &str) -> Result<Cone, String> {
    let parts: Vec<f64> = text
        .split(',')
        .map(|p| p.trim().parse::<f64>().map_err(|e| format!("{p:?}: {e}")))
        .collect::<Result<_, _>>()?;
    match parts[..] {
        [ra, dec, radius] => Ok(Cone { ra, dec, radius }),
        _ => Err("expected RA,DEC,RADIUS in degrees".into()),
    }
}

/// `asterism serve`'s arguments.
#[derive(Args, Debug)]
struct ServeArgs {
    #[command(flatten)]
    db: DbArg,
    /// Address to listen on (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:50051")]
    addr: std::net::SocketAddr,
    /// Bearer token that Ingest needs. Without one, Ingest is refused.
    #[arg(long, env = "ASTERISM_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Bearer token that every read needs (default: reads are open).
    #[arg(long, env = "ASTERISM_READ_TOKEN", hide_env_values = true)]
    read_token: Option<String>,
    /// File of `user token` lines: a user's votes and personal rankings need their token.
    #[arg(long, env = "ASTERISM_USER_TOKENS", value_name = "FILE")]
    user_tokens: Option<PathBuf>,
    /// Writer schema for Confluent-framed Avro datums (as for `ingest`).
    #[arg(long, value_name = "PATH")]
    schema: Option<PathBuf>,
    /// Larger messages are refused (RESOURCE_EXHAUSTED).
    #[arg(long, default_value_t = server::DEFAULT_MAX_MESSAGE_BYTES)]
    max_message_bytes: usize,
    /// Alerts per atomic write.
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
    /// Do not fsync each batch.
    #[arg(long)]
    no_sync: bool,
}

/// `asterism generate`'s arguments.
#[derive(Args, Debug)]
struct GenerateArgs {
    /// Folder for the tar files of packets (created).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Objects to generate.
    #[arg(long, default_value_t = 1000)]
    objects: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Packets per tar file.
    #[arg(long, default_value_t = 10_000)]
    packets_per_file: usize,
    /// Days of each source lightcurve kept (from its first detection).
    #[arg(long, default_value_t = 120.0)]
    window_days: f64,
    /// One packet per object (its last detection, carrying the whole lightcurve as history)
    /// instead of one per detection: to seed a store, as from an archive.
    #[arg(long)]
    backfill: bool,
    /// Index of the first object: streams with disjoint ranges have disjoint objects.
    #[arg(long, default_value_t = 0)]
    first_object: usize,
    /// Whose packets to write: ZTF (schema 4.02, 30 days of history, `ZTF26...` ids) or
    /// Rubin (LSST schema 10.0, 12 months of history, fluxes in nJy, integer diaObjectIds).
    #[arg(long, value_enum, default_value_t = PacketSurvey::Ztf)]
    survey: PacketSurvey,
    /// With `--survey lsst`: write Confluent-framed datums with this schema registry id, as
    /// Rubin's Kafka stream carries them, instead of container files (ingest them with
    /// `--schema data/schema/lsst-10.0`).
    #[arg(long, value_name = "ID")]
    framed_schema_id: Option<u32>,
    /// Real alerts and lightcurves the objects are made from.
    #[arg(default_values = ["data/lightcurves", "data/ztf", "data/fink"], value_name = "PATH")]
    from: Vec<PathBuf>,
    #[arg(long)]
    json: bool,
}

/// The surveys whose packets `asterism generate` writes.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum PacketSurvey {
    Ztf,
    Lsst,
}

impl From<PacketSurvey> for Survey {
    fn from(s: PacketSurvey) -> Survey {
        match s {
            PacketSurvey::Ztf => Survey::Ztf,
            PacketSurvey::Lsst => Survey::Lsst,
        }
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write a survey-like stream of ZTF or Rubin alert packets (Avro containers, in tar files),
    /// made by seeded augmentation of real lightcurves.
    Generate(GenerateArgs),
    /// Serve the database over gRPC (see proto/asterism/v1/asterism.proto) until SIGINT/SIGTERM.
    Serve(ServeArgs),
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
        #[command(flatten)]
        filters: FilterArgs,
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
    /// Import labels from a CSV with columns objectId,class (extra columns ignored).
    Labels {
        #[command(flatten)]
        db: DbArg,
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Class probabilities of an object from its neighbours' labels.
    Classify {
        #[command(flatten)]
        db: DbArg,
        object_id: String,
        #[arg(long)]
        json: bool,
    },
    /// Leave-one-out neighbour-vote classification of the labelled objects of a CSV.
    Evaluate {
        #[command(flatten)]
        db: DbArg,
        #[arg(long, value_name = "FILE.csv")]
        labels: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// The most anomalous objects (optionally as ranked for one user).
    Anomalies {
        #[command(flatten)]
        db: DbArg,
        #[arg(long, default_value_t = 10)]
        top: usize,
        /// Only objects detected at or after this MJD.
        #[arg(long, value_name = "MJD")]
        since: Option<f64>,
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Record a user's vote on an object.
    Vote {
        #[command(flatten)]
        db: DbArg,
        #[arg(long)]
        user: String,
        object_id: String,
        #[arg(value_parser = ["up", "down"])]
        direction: String,
    },
    /// Objects like the --like examples and unlike the --unlike ones, or like a user's up-votes.
    Recommend {
        #[command(flatten)]
        db: DbArg,
        #[arg(long, num_args = 1.., value_name = "ID")]
        like: Vec<String>,
        #[arg(long, num_args = 1.., value_name = "ID")]
        unlike: Vec<String>,
        #[arg(long)]
        user: Option<String>,
        #[arg(long, default_value_t = 10)]
        top: usize,
        #[command(flatten)]
        filters: FilterArgs,
        #[arg(long)]
        json: bool,
    },
    /// Which features and bands make two objects close, and which set them apart.
    Explain {
        #[command(flatten)]
        db: DbArg,
        a: String,
        b: String,
        #[arg(long)]
        json: bool,
    },
}

pub fn run() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Generate(args) => generate(args),
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
            engine.skip_index_teardown();
            let opts = decode_options(schema.as_deref())?;
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
                say!("{}", serde_json::to_string_pretty(&object_json(&record))?);
            } else {
                print_object(&record)?;
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
                say!("{}", serde_json::to_string_pretty(&doc)?);
            } else {
                say!(
                    "{:<10} {:>10} {:>10} {:>12}",
                    "survey",
                    "objects",
                    "alerts",
                    "detections"
                );
                for (s, c) in &stats {
                    say!(
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
            filters,
            json,
        } => {
            let engine = open_existing(&db.db)?;
            let mut query = SimilarQuery::new(Target::Object(object_id.clone()), k);
            query.as_of = as_of;
            query.filters = filters.filters();
            let neighbours = engine.find_similar(&query)?;
            if json {
                let doc = json!({
                    "object_id": object_id,
                    "as_of": as_of,
                    "neighbours": neighbours.iter().map(|n| json!({
                        "object_id": n.object_id, "distance": n.distance,
                        "class": n.class, "detections": n.n_detections,
                    })).collect::<Vec<_>>(),
                });
                say!("{}", serde_json::to_string_pretty(&doc)?);
            } else {
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
            }
            Ok(())
        }
        Command::Export { db, out } => {
            let engine = open_existing(&db.db)?;
            let rows = asterism::export::export_parquet(&engine, &out)?;
            say!("wrote {rows} objects to {}", out.display());
            Ok(())
        }
        Command::Clusters { db, k, seed, json } => {
            let engine = open_existing(&db.db)?;
            let report = engine.clusters(k, seed)?;
            if json {
                say!("{}", serde_json::to_string_pretty(&report)?);
            } else {
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
            }
            Ok(())
        }
        Command::Reindex { db, json } => {
            let engine = open_existing(&db.db)?;
            let report = engine.reindex()?;
            engine.checkpoint()?;
            if json {
                say!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                say!(
                    "re-embedded {} objects ({} versions, {} features)",
                    report.objects,
                    report.versions,
                    report.dim
                );
            }
            Ok(())
        }
        other => science(other),
    }
}

fn print_json(v: &impl serde::Serialize) -> Result<()> {
    say!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Reads `objectId,class` rows (header required; extra columns ignored).
fn read_labels_csv(path: &std::path::Path) -> Result<Vec<(String, String)>> {
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

fn science(command: Command) -> Result<()> {
    match command {
        Command::Labels { db, file, json } => {
            let engine = open_existing(&db.db)?;
            let rows = read_labels_csv(&file)?;
            let name = file.file_name().map_or_else(
                || file.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            let report = engine.import_labels(&rows, &name)?;
            if json {
                return print_json(&report);
            }
            say!(
                "imported {} labels ({} rows name objects not in the store)",
                report.imported,
                report.unknown_objects.len()
            );
            for (c, n) in &report.classes {
                say!("  {c:<16} {n}");
            }
        }
        Command::Classify {
            db,
            object_id,
            json,
        } => {
            let engine = open_existing(&db.db)?;
            let c = engine.classify(&object_id)?;
            if json {
                return print_json(&c);
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
        }
        Command::Evaluate { db, labels, json } => {
            let engine = open_existing(&db.db)?;
            let truth: BTreeMap<String, String> = read_labels_csv(&labels)?.into_iter().collect();
            let r = engine.evaluate(&truth)?;
            if json {
                return print_json(&r);
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
        }
        Command::Anomalies {
            db,
            top,
            since,
            user,
            json,
        } => {
            let engine = open_existing(&db.db)?;
            let list = engine.anomalies(&AnomalyQuery { top, since, user })?;
            if json {
                let v: Vec<Value> = list
                    .iter()
                    .map(|a| json!({"object_id": a.object_id, "score": a.score, "lof": a.lof, "isolation": a.isolation}))
                    .collect();
                return print_json(&v);
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
        }
        Command::Vote {
            db,
            user,
            object_id,
            direction,
        } => {
            let engine = open_existing(&db.db)?;
            let vote = if direction == "up" {
                Vote::Up
            } else {
                Vote::Down
            };
            engine.vote(&user, &object_id, vote)?;
            say!("{user} voted {direction} {object_id}");
        }
        Command::Recommend {
            db,
            like,
            unlike,
            user,
            top,
            filters,
            json,
        } => {
            let engine = open_existing(&db.db)?;
            let recs = engine.recommend(&RecommendQuery {
                like,
                unlike,
                user,
                top,
                filters: filters.filters(),
            })?;
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
        }
        Command::Explain { db, a, b, json } => {
            let engine = open_existing(&db.db)?;
            let e = engine.explain(&a, &b)?;
            if json {
                return print_json(&e);
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
        }
        other => anyhow::bail!("not a science command: {other:?}"),
    }
    Ok(())
}

/// Opens a database that must already exist (queries never create one).
fn decode_options(schema: Option<&std::path::Path>) -> Result<DecodeOptions> {
    let mut opts = DecodeOptions::default();
    if let Some(path) = schema {
        let parsed = source::load_schema(path)
            .map_err(|e| anyhow::anyhow!("cannot load the schema: {e}"))?;
        opts.confluent_schema = Some(Arc::new(parsed));
    }
    Ok(opts)
}

/// Writes the generated stream as tar files of `.avro` packets.
fn generate(args: GenerateArgs) -> Result<()> {
    let (files, _) = source::expand(&args.from);
    let alerts: Vec<asterism::model::Alert> = files
        .par_iter()
        .flat_map_iter(|f| source::decode_file(f, &DecodeOptions::default()).alerts)
        .collect();
    let bases = synth::records(&alerts);
    let usable = bases.iter().filter(|r| synth::ztf_like(r)).count();
    if usable == 0 {
        anyhow::bail!("no lightcurve with 5 or more g/r/i magnitudes among the inputs");
    }
    let survey = Survey::from(args.survey);
    let spec = synth::StreamSpec {
        objects: args.objects,
        seed: args.seed,
        window_days: args.window_days,
        backfill: args.backfill,
        first_object: args.first_object,
        ..synth::StreamSpec::for_survey(survey)
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let writer = PacketWriter::new(survey)?;
    let progress = if std::io::stderr().is_terminal() {
        ProgressBar::new_spinner().with_message("packets")
    } else {
        ProgressBar::hidden()
    };
    let (mut packets, mut bytes, mut file_no) = (0u64, 0u64, 0usize);
    let mut stream = synth::AlertStream::new(&bases, spec);
    loop {
        let chunk: Vec<_> = stream.by_ref().take(args.packets_per_file.max(1)).collect();
        if chunk.is_empty() {
            break;
        }
        let encoded: Vec<(String, Vec<u8>)> = chunk
            .par_iter()
            .map(|p| {
                match args.framed_schema_id {
                    Some(id) => writer.write_framed(p, id),
                    None => writer.write(p),
                }
                .map(|b| (format!("{}.avro", p.candid), b))
            })
            .collect::<Result<_, _>>()?;
        let path = args.out.join(format!("alerts-{file_no:06}.tar"));
        bytes += source::write_packet_tar(&path, &encoded)?;
        packets += encoded.len() as u64;
        file_no += 1;
        progress.set_position(packets);
    }
    progress.finish_and_clear();
    let summary = json!({
        "out": args.out.display().to_string(),
        "objects": stream.objects_emitted(),
        "packets": packets,
        "files": file_no,
        "packet_bytes": bytes,
        "source_objects": usable,
        "survey": survey.as_str(),
        "seed": args.seed,
    });
    if args.json {
        say!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        say!(
            "wrote {packets} {} packets of {} objects ({:.1} MB) in {file_no} files under {} \
             (from {usable} real lightcurves, seed {})",
            survey.as_str().to_uppercase(),
            stream.objects_emitted(),
            bytes as f64 / 1e6,
            args.out.display(),
            args.seed
        );
    }
    Ok(())
}

/// Runs the gRPC server until SIGINT or SIGTERM.
fn serve(args: ServeArgs) -> Result<()> {
    let config = EngineConfig {
        store: StoreConfig {
            sync_writes: !args.no_sync,
        },
        batch_size: args.batch_size,
        ..EngineConfig::default()
    };
    let engine = Arc::new(
        Engine::open(&args.db.db, config)
            .with_context(|| format!("opening {}", args.db.db.display()))?,
    );
    let users = match &args.user_tokens {
        Some(path) => Access::read_user_tokens(path).map_err(|e| anyhow::anyhow!(e))?,
        None => Default::default(),
    };
    let server_config = ServerConfig {
        access: Access {
            write_token: args.token.filter(|t| !t.is_empty()),
            read_token: args.read_token.filter(|t| !t.is_empty()),
            users,
        },
        max_message_bytes: args.max_message_bytes,
        decode: decode_options(args.schema.as_deref())?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .with_context(|| format!("binding {}", args.addr))?;
        let addr = listener.local_addr()?;
        if server_config.access.write_token.is_none() {
            tracing::warn!("no --token: Ingest is refused");
        }
        say!("asterism serving {} on {addr}", args.db.db.display());
        server::serve(engine, server_config, listener, shutdown_signal()).await?;
        say!("asterism stopped");
        Ok(())
    })
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

fn open_existing(path: &std::path::Path) -> Result<Engine> {
    if !path.is_dir() {
        anyhow::bail!(
            "no database at {} (run `asterism ingest` first)",
            path.display()
        );
    }
    let engine = Engine::open(path, EngineConfig::default())
        .with_context(|| format!("opening {}", path.display()))?;
    // One command, then the process exits.
    engine.skip_index_teardown();
    Ok(engine)
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
        say!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
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

fn print_object(r: &ObjectRecord) -> Result<()> {
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
        say!("  {k} = {} (MJD {:.5})", annotation_json(&a.value), a.mjd);
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
            unit_name(d.unit)
        );
    }
    Ok(())
}
