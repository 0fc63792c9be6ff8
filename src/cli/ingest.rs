//! The commands that write the store or the packets it is fed from: `ingest` (files decoded in
//! parallel, written by one ingest session), `reindex`, and `generate` (a synthetic packet stream
//! made from real lightcurves). Progress bars draw on stderr when it is a terminal.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

use asterism::alert::write::PacketWriter;
use asterism::alert::{DecodeError, DecodeOptions, Decoded, Reject};
use asterism::engine::{Engine, IngestReport, IngestSession, Seed};
use asterism::model::{Alert, Survey};
use asterism::{source, synth};

use super::args::{GenerateArgs, IngestArgs, ReindexArgs};
use super::open_existing;
use super::output::{self, GenerateSummary};

/// `asterism ingest`: opens (or creates) the store, ingests every path, checkpoints.
pub(super) fn ingest(args: IngestArgs) -> Result<()> {
    let engine = Engine::open(&args.db.db, args.write.engine_config()?)?;
    engine.skip_index_teardown();
    let opts = args.schema.decode_options()?;
    if args.bulk {
        let mut seed = Sink::Seed(engine.seed()?);
        ingest_paths(&mut seed, &args.paths, &opts)?;
        let Sink::Seed(seed) = seed else {
            unreachable!("a seed stays a seed");
        };
        let (report, seeded) = seed.finish()?;
        return output::print_ingest_seeded(&report, Some(&seeded), args.json);
    }
    let mut session = Sink::Session(engine.session());
    ingest_paths(&mut session, &args.paths, &opts)?;
    let Sink::Session(session) = session else {
        unreachable!("a session stays a session");
    };
    let report = session.finish()?;
    engine.relink_unlinked()?;
    engine.checkpoint()?;
    output::print_ingest(&report, args.json)
}

/// Where `ingest` puts decoded inputs: an incremental session, or pass one of a bulk seed.
enum Sink<'e> {
    Session(IngestSession<'e>),
    Seed(Seed<'e>),
}

impl Sink<'_> {
    fn add(&mut self, decoded: Decoded) -> Result<()> {
        match self {
            Sink::Session(s) => s.add(decoded)?,
            Sink::Seed(s) => s.add(decoded)?,
        }
        Ok(())
    }

    fn report(&self) -> &IngestReport {
        match self {
            Sink::Session(s) => s.report(),
            Sink::Seed(s) => s.report(),
        }
    }
}

fn ingest_paths(session: &mut Sink<'_>, paths: &[PathBuf], opts: &DecodeOptions) -> Result<()> {
    let (files, unreadable) = source::expand(paths);
    session.add(Decoded {
        alerts: Vec::new(),
        rejects: unreadable
            .into_iter()
            .map(|u| Reject {
                source: u.path.display().to_string(),
                error: DecodeError::Archive {
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
    let ahead = source::decode_ahead(&files, opts, |piece| {
        session.add(piece.decoded)?;
        if piece.last {
            bar.inc(1);
        }
        let r = session.report();
        bar.set_message(format!(
            "{} alerts, {} rejected",
            r.alerts_read, r.alerts_rejected
        ));
        Ok::<_, anyhow::Error>(())
    })?;
    tracing::debug!(
        decoding_s = ahead.decoding.as_secs_f64(),
        waiting_s = ahead.waiting.as_secs_f64(),
        "decoded ahead of the writes"
    );
    bar.finish_and_clear();
    Ok(())
}

/// `asterism reindex`: re-embeds every object, then checkpoints.
pub(super) fn reindex(args: ReindexArgs) -> Result<()> {
    let engine = open_existing(&args.db.db)?;
    let report = engine.reindex(&asterism::engine::ReindexOptions {
        context_weight: args.context_weight,
        learn_metric: args.learn_metric,
        build_expansion: args.build_expansion,
    })?;
    engine.checkpoint()?;
    output::print_reindex(&report, args.json)
}

/// `asterism generate`: writes the generated stream as tar files of `.avro` packets.
pub(super) fn generate(args: GenerateArgs) -> Result<()> {
    let (files, missing) = source::expand(&args.from);
    if files.is_empty() {
        // Say where it looked: the default inputs are relative to the repository root.
        let cwd = std::env::current_dir().map_or_else(|_| "?".into(), |d| d.display().to_string());
        let looked: Vec<String> = args.from.iter().map(|p| p.display().to_string()).collect();
        anyhow::bail!(
            "no input files: looked for {} under {cwd}{}; run from the repository root or give \
             the lightcurves to start from as PATH arguments",
            looked.join(", "),
            if missing.is_empty() {
                String::new()
            } else {
                format!(" ({} not found)", missing.len())
            }
        );
    }
    let alerts: Vec<Alert> = files
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
        cadence: args.cadence.into(),
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
    if let Some(path) = &args.manifest {
        let mut csv = String::from("object_id,base_id\n");
        for i in args.first_object..args.first_object + args.objects {
            let base = stream.base_of(i).unwrap_or_default();
            csv.push_str(&format!("{},{base}\n", synth::object_id(survey, i as u64)));
        }
        std::fs::write(path, csv).with_context(|| format!("writing {}", path.display()))?;
    }
    let summary = GenerateSummary {
        out: &args.out,
        survey,
        seed: args.seed,
        objects: stream.objects_emitted(),
        packets,
        files: file_no,
        packet_bytes: bytes,
        source_objects: usable,
    };
    output::print_generate(&summary, args.json)
}
