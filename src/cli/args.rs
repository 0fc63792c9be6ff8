//! The arguments of every subcommand, as clap parses them (the `Command` enum and one struct per
//! subcommand), and their resolution into validated configuration: the write flags into an
//! `EngineConfig`, `--schema` into `DecodeOptions`, the filter flags into `Filters`. Flags, defaults
//! and help texts are those of `asterism <command> --help`; nothing here opens a store or prints.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use asterism::alert::DecodeOptions;
use asterism::engine::{
    index_from_env, Cone, EngineConfig, Filters, DEFAULT_BATCH_SIZE, DEFAULT_RELINK_DELAY,
};
use asterism::index::IndexBackend;
use asterism::model::{Survey, Vote};
use asterism::server;
use asterism::source;
use asterism::store::{StoreConfig, BLOCK_CACHE_BYTES};

#[derive(Subcommand, Debug)]
pub(super) enum Command {
    /// Write a survey-like stream of ZTF or Rubin alert packets (Avro containers, in tar files),
    /// made by seeded augmentation of real lightcurves.
    Generate(GenerateArgs),
    /// Serve the database over gRPC (see proto/asterism/v1/asterism.proto), and with --http
    /// over HTTP/JSON with the panel, until SIGINT/SIGTERM.
    Serve(Box<ServeArgs>),
    /// Ingest alert packets and lightcurve tables (files, directories, .tar, .tar.gz).
    Ingest(IngestArgs),
    /// Ingest the alerts of Kafka topics (ZTF Avro containers, Rubin's Confluent-framed
    /// datums) as a consumer group member; each partition's offset is stored with its alerts.
    Consume(ConsumeArgs),
    /// List the Kafka messages that could not be decoded (kept with their bytes).
    Quarantine(QuarantineArgs),
    /// Show an object's metadata, lightcurve and annotations.
    Object(ObjectArgs),
    /// Objects, alerts and detections per survey.
    Stats(StatsArgs),
    /// The objects most similar to one object (nearest first, the object itself excluded).
    Similar(SimilarArgs),
    /// Write one row per object (id, survey, counts, embedding, labels) to a Parquet file.
    Export(ExportArgs),
    /// Connected components of the kNN graph and KMeans clusters of the embeddings.
    Clusters(ClustersArgs),
    /// Re-embed every object with the current feature list, refit the scaler, rebuild the
    /// index and the kNN graph.
    Reindex(ReindexArgs),
    /// Import labels from a CSV with columns objectId,class (extra columns ignored).
    Labels(LabelsArgs),
    /// Class probabilities of an object from its neighbours' labels.
    Classify(ClassifyArgs),
    /// Leave-one-out neighbour-vote classification of the labelled objects of a CSV.
    Evaluate(EvaluateArgs),
    /// The most anomalous objects (optionally as ranked for one user).
    Anomalies(AnomaliesArgs),
    /// Record a user's vote on an object.
    Vote(VoteArgs),
    /// Objects like the --like examples and unlike the --unlike ones, or like a user's up-votes.
    Recommend(RecommendArgs),
    /// Which features and bands make two objects close, and which set them apart.
    Explain(ExplainArgs),
    /// Write a consistent copy of a store (RocksDB checkpoint and index dump) into a new
    /// directory; while a server holds the store, ask the server with --server.
    Backup(BackupArgs),
    /// Verify every object, vector version, neighbour list, label and the index against each
    /// other; exits with status 1 when the store is damaged.
    Check(CheckArgs),
}

#[derive(Args, Debug)]
pub(super) struct BackupArgs {
    /// Database directory (when no server holds it).
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "server",
        conflicts_with = "server"
    )]
    pub(super) db: Option<PathBuf>,
    /// A running server (http://HOST:PORT) that writes the backup on its own file system.
    #[arg(long, value_name = "URL")]
    pub(super) server: Option<String>,
    /// The server's write token.
    #[arg(long, env = "ASTERISM_TOKEN", hide_env_values = true)]
    pub(super) token: Option<String>,
    /// Directory to create for the backup (it must not exist).
    #[arg(long, value_name = "DIR")]
    pub(super) out: PathBuf,
    #[arg(long)]
    pub(super) json: bool,
}

#[derive(Args, Debug)]
pub(super) struct CheckArgs {
    #[command(flatten)]
    pub(super) db: DbArg,
    #[arg(long)]
    pub(super) json: bool,
}

// A subcommand's about text is the doc comment of its `Command` variant above (clap applies it
// after that of the variant's struct); the structs below document their flags.

#[derive(Args, Debug)]
pub(super) struct DbArg {
    /// Database directory (created by `ingest` if missing).
    #[arg(long, value_name = "DIR")]
    pub(super) db: PathBuf,
}

/// How a command that writes the store writes it (`ingest`, `serve`).
#[derive(Args, Debug)]
pub(super) struct WriteArgs {
    /// Alerts per atomic write.
    #[arg(long, default_value_t = DEFAULT_BATCH_SIZE)]
    batch_size: usize,
    /// Do not fsync each batch (a killed process still loses nothing; a power cut may).
    #[arg(long)]
    no_sync: bool,
    /// The ANN index of a new store, recorded in it [default: usearch, or the backend the
    /// environment variable ASTERISM_INDEX names]. An existing store keeps the one it was
    /// created with; naming another is an error.
    #[arg(long, value_enum, value_name = "BACKEND")]
    index: Option<IndexChoice>,
    /// MiB of RocksDB block cache (decoded blocks of every column family, shared): more
    /// memory, fewer blocks read again from the page cache and decompressed.
    #[arg(long, value_name = "MIB", default_value_t = BLOCK_CACHE_BYTES >> 20)]
    block_cache_mib: usize,
    /// Relink the neighbour lists a batch changes N batches later, once per object whatever
    /// those batches re-embed again; 0 relinks in the batch. Only on stores of 16,384
    /// objects or more. Waiting objects are marked in the store; a quiet stream and the end
    /// of an ingest write their lists.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_RELINK_DELAY)]
    relink_delay: u64,
}

/// The index backends `--index` names.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub(super) enum IndexChoice {
    /// USearch: real deletion, filtered search, f16/i8 storage, memory-mapped dumps.
    Usearch,
    /// hnsw_rs (pure Rust; superseded points are tombstones until a rebuild).
    #[value(name = "hnsw_rs")]
    HnswRs,
}

impl From<IndexChoice> for IndexBackend {
    fn from(c: IndexChoice) -> IndexBackend {
        match c {
            IndexChoice::Usearch => IndexBackend::Usearch,
            IndexChoice::HnswRs => IndexBackend::HnswRs,
        }
    }
}

impl WriteArgs {
    /// The engine configuration these flags give, validated.
    pub(super) fn engine_config(&self) -> Result<EngineConfig> {
        let config = EngineConfig {
            store: StoreConfig {
                sync_writes: !self.no_sync,
                block_cache_bytes: self.block_cache_mib << 20,
                ..StoreConfig::default()
            },
            batch_size: self.batch_size,
            index: self.index.map(IndexBackend::from),
            new_store_index: index_from_env()?.unwrap_or_default(),
            relink_delay: self.relink_delay,
            ..EngineConfig::default()
        };
        config.validate()?;
        Ok(config)
    }
}

/// Conditions on the objects an answer may name.
#[derive(Args, Debug)]
pub(super) struct FilterArgs {
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
    pub(super) fn filters(self) -> Filters {
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

/// `--schema`, shared by the commands that decode Confluent-framed Avro datums.
#[derive(Args, Debug)]
pub(super) struct SchemaArg {
    /// Writer schemas for Confluent-framed Avro datums (Rubin's Kafka format): an .avsc file
    /// or a directory of one schema version's split .avsc files (any schema id), or a
    /// MAJOR/MINOR tree of them as Rubin's alert_packet ships it (schema id MAJOR*100+MINOR).
    #[arg(long, value_name = "PATH")]
    schema: Option<PathBuf>,
}

impl SchemaArg {
    /// The decoding options the flag gives.
    pub(super) fn decode_options(&self) -> Result<DecodeOptions> {
        match &self.schema {
            None => Ok(DecodeOptions::default()),
            Some(path) => source::schema_options(path)
                .map_err(|e| anyhow::anyhow!("cannot load the schema: {e}")),
        }
    }
}

/// `asterism generate`'s arguments.
#[derive(Args, Debug)]
pub(super) struct GenerateArgs {
    /// Folder for the tar files of packets (created).
    #[arg(long, value_name = "DIR")]
    pub(super) out: PathBuf,
    /// Objects to generate.
    #[arg(long, default_value_t = 1000)]
    pub(super) objects: usize,
    #[arg(long, default_value_t = 1)]
    pub(super) seed: u64,
    /// Packets per tar file.
    #[arg(long, default_value_t = 10_000)]
    pub(super) packets_per_file: usize,
    /// Days of each source lightcurve kept (from its first detection).
    #[arg(long, default_value_t = 120.0)]
    pub(super) window_days: f64,
    /// One packet per object (its last detection, carrying the whole lightcurve as history)
    /// instead of one per detection: to seed a store, as from an archive.
    #[arg(long)]
    pub(super) backfill: bool,
    /// Index of the first object: streams with disjoint ranges have disjoint objects.
    #[arg(long, default_value_t = 0)]
    pub(super) first_object: usize,
    /// Whose packets to write: ZTF (schema 4.02, 30 days of history, `ZTF26...` ids) or
    /// Rubin (LSST schema 10.0, 12 months of history, fluxes in nJy, integer diaObjectIds).
    #[arg(long, value_enum, default_value_t = PacketSurvey::Ztf)]
    pub(super) survey: PacketSurvey,
    /// With `--survey lsst`: write Confluent-framed datums with this schema registry id, as
    /// Rubin's Kafka stream carries them, instead of container files (ingest them with
    /// `--schema data/schema/lsst-10.0`).
    #[arg(long, value_name = "ID")]
    pub(super) framed_schema_id: Option<u32>,
    /// `base` keeps each real lightcurve's own epochs and bands; `survey` observes it as the
    /// survey would: its cadence and bands (ZTF g/r every 2-3 nights, i on a quarter of the
    /// visits; Rubin one of ugrizy per visit), its depth, and difference fluxes against the
    /// reference image that go negative for variable stars.
    #[arg(long, value_enum, default_value_t = GenerateCadence::Base)]
    pub(super) cadence: GenerateCadence,
    /// Also write a CSV of every generated object id and the real object it was made from
    /// (`object_id,base_id`): the ground truth of a generated stream.
    #[arg(long, value_name = "FILE.csv")]
    pub(super) manifest: Option<PathBuf>,
    /// Real alerts and lightcurves the objects are made from.
    #[arg(default_values = ["data/lightcurves", "data/ztf", "data/fink"], value_name = "PATH")]
    pub(super) from: Vec<PathBuf>,
    #[arg(long)]
    pub(super) json: bool,
}

/// How `asterism generate` observes its objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum GenerateCadence {
    Base,
    Survey,
}

impl From<GenerateCadence> for asterism::synth::Cadence {
    fn from(c: GenerateCadence) -> Self {
        match c {
            GenerateCadence::Base => asterism::synth::Cadence::Base,
            GenerateCadence::Survey => asterism::synth::Cadence::Survey,
        }
    }
}

/// The surveys whose packets `asterism generate` writes.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub(super) enum PacketSurvey {
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

/// `asterism serve`'s arguments.
// `--no-sync` keeps the shorter help it has always had here (clap drops the final period of a
// one-sentence doc comment, hence none here).
#[derive(Args, Debug)]
#[command(mut_arg("no_sync", |a| a.help("Do not fsync each batch")))]
pub(super) struct ServeArgs {
    #[command(flatten)]
    pub(super) db: DbArg,
    /// Address to listen on (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub(super) addr: std::net::SocketAddr,
    /// Bearer token that Ingest needs. Without one, Ingest is refused.
    #[arg(long, env = "ASTERISM_TOKEN", hide_env_values = true)]
    pub(super) token: Option<String>,
    /// Bearer token that every read needs (default: reads are open).
    #[arg(long, env = "ASTERISM_READ_TOKEN", hide_env_values = true)]
    pub(super) read_token: Option<String>,
    /// File of `user token` lines: a user's votes and personal rankings need their token.
    #[arg(long, env = "ASTERISM_USER_TOKENS", value_name = "FILE")]
    pub(super) user_tokens: Option<PathBuf>,
    #[command(flatten)]
    pub(super) schema: SchemaArg,
    /// Larger messages are refused (RESOURCE_EXHAUSTED).
    #[arg(long, default_value_t = server::DEFAULT_MAX_MESSAGE_BYTES)]
    pub(super) max_message_bytes: usize,
    /// Candidates each similarity search keeps (ef_search; USearch stores) instead of the
    /// store's recorded 64: fewer answer faster and find fewer of the true neighbours (at 1M,
    /// 32 gave recall@10 0.992 at 1.5x the queries/s of 64's 0.994; BENCHMARKS.md).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub(super) ef_search: Option<u16>,
    /// Also serve the HTTP/JSON API (/api/v1/) and the panel (/panel/ID) on this address
    /// (port 0: any free port, printed at start).
    #[arg(long, value_name = "ADDR")]
    pub(super) http: Option<std::net::SocketAddr>,
    /// An origin whose pages may call the HTTP API (CORS); `*` for any. Repeatable.
    #[arg(long, value_name = "ORIGIN", requires = "http")]
    pub(super) http_cors_origin: Vec<String>,
    /// An origin that may embed /embed/ID in an iframe (CSP frame-ancestors); `*` for any.
    /// Repeatable.
    #[arg(long, value_name = "ORIGIN", requires = "http")]
    pub(super) http_frame_ancestor: Vec<String>,
    /// The host portal's page of an object, linked from each neighbour in the panel; `{id}`
    /// stands for the object id (default: this server's panel of the neighbour).
    #[arg(long, value_name = "URL", requires = "http")]
    pub(super) http_object_url: Option<String>,
    /// Serve gRPC (and --http) over TLS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub(super) tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub(super) tls_key: Option<PathBuf>,
    /// Also ingest the alerts of these Kafka brokers (`HOST:PORT[,...]`) while serving.
    #[arg(long, value_name = "HOSTS", requires = "kafka_topics")]
    pub(super) kafka_brokers: Option<String>,
    /// A topic to consume (with --kafka-brokers). Repeatable.
    #[arg(long = "kafka-topic", value_name = "TOPIC", requires = "kafka_brokers")]
    pub(super) kafka_topics: Vec<String>,
    /// The consumer group (with --kafka-brokers).
    #[arg(long, value_name = "GROUP", default_value = "asterism")]
    pub(super) kafka_group: String,
    #[command(flatten)]
    pub(super) kafka: KafkaArgs,
    #[command(flatten)]
    pub(super) write: WriteArgs,
}

impl ServeArgs {
    /// The certificate and key of `--tls-cert` / `--tls-key`, read.
    pub(super) fn tls_identity(&self) -> Result<Option<server::TlsIdentity>> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
        Ok(Some(server::TlsIdentity {
            cert_pem: read(cert)?,
            key_pem: read(key)?,
        }))
    }

    /// The HTTP side's configuration from the `--http-*` flags.
    pub(super) fn http_config(&self) -> server::HttpConfig {
        server::HttpConfig {
            cors_origins: self.http_cors_origin.clone(),
            frame_ancestors: self.http_frame_ancestor.clone(),
            object_url: self.http_object_url.clone(),
        }
    }
}

#[derive(Args, Debug)]
pub(super) struct IngestArgs {
    #[command(flatten)]
    pub(super) db: DbArg,
    /// Files or directories to read, recursively.
    #[arg(required = true, value_name = "PATH")]
    pub(super) paths: Vec<PathBuf>,
    #[command(flatten)]
    pub(super) schema: SchemaArg,
    #[command(flatten)]
    pub(super) write: WriteArgs,
    /// Seed a store that has no embedding yet, from an archive: store every object first, then
    /// embed them all in parallel, fit the scaler once, build the index in one parallel pass
    /// and compute every neighbour list (instead of an index insertion and relink per batch).
    /// Rerun it on a store whose seed was interrupted to finish it.
    #[arg(long)]
    pub(super) bulk: bool,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub(super) json: bool,
}

#[derive(Args, Debug)]
pub(super) struct ConsumeArgs {
    #[command(flatten)]
    pub(super) db: DbArg,
    /// Kafka bootstrap brokers, `HOST:PORT[,HOST:PORT...]`.
    #[arg(long, alias = "kafka-brokers", value_name = "HOSTS")]
    pub(super) brokers: String,
    /// A topic to consume. Repeatable.
    #[arg(
        long = "topic",
        alias = "kafka-topic",
        value_name = "TOPIC",
        required_unless_present = "ztf_nightly"
    )]
    pub(super) topics: Vec<String>,
    /// The consumer group: consumers of one group share the partitions.
    #[arg(long, alias = "kafka-group", value_name = "GROUP")]
    pub(super) group: String,
    #[command(flatten)]
    pub(super) schema: SchemaArg,
    /// Stop after this many seconds without a message.
    #[arg(long, value_name = "SECS")]
    pub(super) exit_when_idle: Option<f64>,
    #[command(flatten)]
    pub(super) kafka: KafkaArgs,
    #[command(flatten)]
    pub(super) write: WriteArgs,
    /// Print the summary as one JSON object (the keys of `ingest --json`, and `messages`,
    /// `quarantined`, `skipped` and `partitions`).
    #[arg(long)]
    pub(super) json: bool,
}

/// Kafka options shared by `consume` and `serve`.
#[derive(Args, Debug)]
pub(super) struct KafkaArgs {
    /// A Confluent-compatible schema registry (http://HOST:PORT) for schema ids that --schema
    /// does not hold; each schema is fetched once.
    #[arg(long, value_name = "URL")]
    pub(super) schema_registry: Option<String>,
    /// Follow ZTF's nightly topics `ztf_YYYYMMDD_programidN` of this program id (tonight's and
    /// yesterday's, UTC, rolling over at midnight). Repeatable.
    #[arg(long, value_name = "PROGRAMID")]
    pub(super) ztf_nightly: Vec<u32>,
    /// After each stored batch, publish one Avro record per object it changed to this topic
    /// (schema: proto/asterism/v1/object_update.avsc; Confluent-framed when
    /// --schema-registry is given, a one-record container otherwise), keyed by object id.
    #[arg(long, alias = "kafka-publish-topic", value_name = "TOPIC")]
    pub(super) publish_topic: Option<String>,
    /// Group members on as many threads of this process, sharing the partitions and the store
    /// (decoding in parallel; the writes still take turns).
    #[arg(long, alias = "kafka-consumers", default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub(super) consumers: u16,
    /// A librdkafka property, `KEY=VALUE` (TLS files, timeouts, ...). Repeatable.
    #[arg(long, value_name = "KEY=VALUE")]
    pub(super) kafka_option: Vec<String>,
    /// SASL SCRAM-SHA-512 over TLS (Rubin's brokers) as this user; needs --kafka-password.
    #[arg(long, value_name = "USER", requires = "kafka_password")]
    pub(super) kafka_username: Option<String>,
    #[arg(
        long,
        env = "ASTERISM_KAFKA_PASSWORD",
        hide_env_values = true,
        requires = "kafka_username"
    )]
    pub(super) kafka_password: Option<String>,
    /// A batch is stored at the latest this many milliseconds after its first message.
    #[arg(long, default_value_t = 500, value_name = "MS")]
    pub(super) max_batch_delay_ms: u64,
    /// Give up (exit status 1; `serve` reconnects) when messages wait on the broker, or the
    /// broker does not answer, and nothing has been stored for this many seconds.
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    pub(super) watchdog: u64,
}

#[derive(Args, Debug)]
pub(super) struct QuarantineArgs {
    #[command(flatten)]
    pub(super) db: DbArg,
    /// At most this many messages.
    #[arg(long, default_value_t = 100)]
    pub(super) limit: usize,
    /// Also write each message's bytes to DIR/TOPIC-PARTITION-OFFSET.bin.
    #[arg(long, value_name = "DIR")]
    pub(super) dump: Option<PathBuf>,
    #[arg(long)]
    pub(super) json: bool,
}

#[derive(Args, Debug)]
pub(super) struct ObjectArgs {
    #[command(flatten)]
    pub(super) db: DbArg,
    pub(super) object_id: String,
    #[arg(long)]
    pub(super) json: bool,
}

#[derive(Args, Debug)]
pub(super) struct StatsArgs {
    #[command(flatten)]
    pub(super) db: DbArg,
    #[arg(long)]
    pub(super) json: bool,
}

#[derive(Args, Debug)]
pub(super) struct SimilarArgs {
    #[command(flatten)]
    pub(super) db: DbArg,
    pub(super) object_id: String,
    /// Number of neighbours.
    #[arg(short, default_value_t = 10)]
    pub(super) k: usize,
    /// Search the embeddings every object had at this MJD (exact search).
    #[arg(long, value_name = "MJD")]
    pub(super) as_of: Option<f64>,
    /// Which features make objects alike: `lightcurve` (looks like this one), `context` (sits
    /// where this one sits: catalogue neighbours, reference source, history), `flux` (the
    /// survey-blind difference fluxes: the same object seen by ZTF or Rubin; an exact scan),
    /// `curves` (the flux scan's 300 nearest, 100 for `classify`, ranked by how well their
    /// lightcurves, detections and non-detections, fit this one's, shifted up to 30 days at a
    /// cost: finds the same object in the other survey best; only objects observed over the
    /// same weeks compare, one too short to compare keeps its place) or `all` (the index's
    /// metric: is the same kind of thing).
    #[arg(
        long,
        default_value = "all",
        value_name = "lightcurve|context|flux|curves|all"
    )]
    pub(super) features: asterism::embed::FeatureGroup,
    /// The query's own weights of the feature groups, on top of the store's: candidates from
    /// the index are ranked with them.
    #[arg(long, value_name = "lightcurve=W,context=W,flux=W")]
    pub(super) weights: Option<asterism::embed::GroupWeights>,
    /// Compare every object as it was DAYS after its own first detection (early-lightcurve
    /// analogs; exact, every object embedded at that age).
    #[arg(long, value_name = "DAYS")]
    pub(super) at_age: Option<f64>,
    #[command(flatten)]
    pub(super) filters: FilterArgs,
    #[arg(long)]
    pub(super) json: bool,
}

#[derive(Args, Debug)]
pub(super) struct ExportArgs {
    #[command(flatten)]
    pub(super) db: DbArg,
    #[arg(long, value_name = "FILE.parquet")]
    pub(super) out: PathBuf,
}

#[derive(Args, Debug)]
pub(super) struct ClustersArgs {
    #[command(flatten)]
    pub(super) db: DbArg,
    /// Number of KMeans clusters (default: sqrt(n/2), within 2..=20).
    #[arg(short)]
    pub(super) k: Option<usize>,
    #[arg(long, default_value_t = 42)]
    pub(super) seed: u64,
    #[arg(long)]
    pub(super) json: bool,
}

#[derive(Args, Debug)]
pub(super) struct ReindexArgs {
    #[command(flatten)]
    pub(super) db: DbArg,
    /// Weight of the context features (packet fields: catalogue neighbours, reference source,
    /// history, real/bogus...) against the lightcurve features, which weigh 1 [default: the
    /// store's, 2 for a new feature list].
    #[arg(long, value_name = "W")]
    pub(super) context_weight: Option<f64>,
    /// Then fit a metric on the stored labels (per-feature weights; refitted after every
    /// label import) and rebuild the index with it.
    #[arg(long)]
    pub(super) learn_metric: bool,
    /// Candidates kept while building the graph (USearch's expansion_add, hnsw_rs's
    /// ef_construction), recorded for every later build: more find more of the true neighbours
    /// at each search's ef, and take longer to build [default: the store's, 200 for a new
    /// store].
    #[arg(long, value_name = "N")]
    pub(super) build_expansion: Option<usize>,
    #[arg(long)]
    pub(super) json: bool,
}

#[derive(Args, Debug)]
pub(super) struct LabelsArgs {
    #[command(flatten)]
    pub(super) db: DbArg,
    pub(super) file: PathBuf,
    #[arg(long)]
    pub(super) json: bool,
}

#[derive(Args, Debug)]
pub(super) struct ClassifyArgs {
    #[command(flatten)]
    pub(super) db: DbArg,
    pub(super) object_id: String,
    /// Compare every object as it was DAYS after its own first detection (early-lightcurve
    /// analogs; exact, every object embedded at that age).
    #[arg(long, value_name = "DAYS", conflicts_with = "features")]
    pub(super) at_age: Option<f64>,
    /// Which features find the voters (see `similar`): `flux` lets the labelled objects of
    /// one survey vote on another's.
    #[arg(
        long,
        default_value = "all",
        value_name = "lightcurve|context|flux|curves|all"
    )]
    pub(super) features: asterism::embed::FeatureGroup,
    #[arg(long)]
    pub(super) json: bool,
}

#[derive(Args, Debug)]
pub(super) struct EvaluateArgs {
    #[command(flatten)]
    pub(super) db: DbArg,
    #[arg(long, value_name = "FILE.csv")]
    pub(super) labels: PathBuf,
    /// Evaluate a metric learned from these labels (stratified k-fold, fitted on the training
    /// folds only), even when the store has none; a store with a learned metric is always
    /// evaluated so.
    #[arg(long)]
    pub(super) learned_metric: bool,
    /// Folds of the k-fold evaluation of a learned metric.
    #[arg(long, default_value_t = asterism::engine::DEFAULT_FOLDS)]
    pub(super) folds: usize,
    /// Compare every object as it was DAYS after its own first detection (early-lightcurve
    /// analogs; exact, every object embedded at that age).
    #[arg(long, value_name = "DAYS")]
    pub(super) at_age: Option<f64>,
    #[arg(long)]
    pub(super) json: bool,
}

#[derive(Args, Debug)]
pub(super) struct AnomaliesArgs {
    #[command(flatten)]
    pub(super) db: DbArg,
    #[arg(long, default_value_t = 10)]
    pub(super) top: usize,
    /// Only objects detected at or after this MJD.
    #[arg(long, value_name = "MJD")]
    pub(super) since: Option<f64>,
    #[arg(long)]
    pub(super) user: Option<String>,
    #[arg(long)]
    pub(super) json: bool,
}

#[derive(Args, Debug)]
pub(super) struct VoteArgs {
    #[command(flatten)]
    pub(super) db: DbArg,
    #[arg(long)]
    pub(super) user: String,
    pub(super) object_id: String,
    #[arg(value_enum)]
    pub(super) direction: Direction,
}

/// A vote's direction, as typed.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub(super) enum Direction {
    Up,
    Down,
}

impl Direction {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
        }
    }
}

impl From<Direction> for Vote {
    fn from(d: Direction) -> Vote {
        match d {
            Direction::Up => Vote::Up,
            Direction::Down => Vote::Down,
        }
    }
}

#[derive(Args, Debug)]
pub(super) struct RecommendArgs {
    #[command(flatten)]
    pub(super) db: DbArg,
    #[arg(long, num_args = 1.., value_name = "ID")]
    pub(super) like: Vec<String>,
    #[arg(long, num_args = 1.., value_name = "ID")]
    pub(super) unlike: Vec<String>,
    #[arg(long)]
    pub(super) user: Option<String>,
    #[arg(long, default_value_t = 10)]
    pub(super) top: usize,
    /// Which features make objects alike: lightcurve, context, flux, curves or all (see
    /// `similar`).
    #[arg(
        long,
        default_value = "all",
        value_name = "lightcurve|context|flux|curves|all"
    )]
    pub(super) features: asterism::embed::FeatureGroup,
    /// The query's own weights of the feature groups, on top of the store's: candidates from
    /// the index are ranked with them.
    #[arg(long, value_name = "lightcurve=W,context=W,flux=W")]
    pub(super) weights: Option<asterism::embed::GroupWeights>,
    #[command(flatten)]
    pub(super) filters: FilterArgs,
    #[arg(long)]
    pub(super) json: bool,
}

#[derive(Args, Debug)]
pub(super) struct ExplainArgs {
    #[command(flatten)]
    pub(super) db: DbArg,
    pub(super) a: String,
    pub(super) b: String,
    #[arg(long)]
    pub(super) json: bool,
}
