//! The Kafka commands: `consume` (a consumer group member that ingests topics until idle or
//! SIGTERM), `quarantine` (the messages it could not decode), and the consumer `serve` runs
//! beside the server with `--kafka-brokers`.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use indicatif::ProgressBar;

use asterism::engine::Engine;
use asterism::stream::{self, ConsumeConfig, NightlyTopics, Progress};

use asterism::alert::DecodeOptions;

use super::args::{ConsumeArgs, KafkaArgs, QuarantineArgs};
use super::{open_existing, output};

/// How long the consumer in `serve` waits before it reconnects after an error.
const RECONNECT_AFTER: Duration = Duration::from_secs(5);

/// `asterism consume`.
pub(super) fn consume(args: ConsumeArgs) -> Result<()> {
    let write = args.write.engine_config()?;
    let mut config = consume_config(
        &args.brokers,
        args.topics.clone(),
        &args.group,
        args.schema.decode_options()?,
        &args.kafka,
    )?;
    config.batch_size = write.batch_size;
    config.exit_when_idle = args
        .exit_when_idle
        .map(Duration::try_from_secs_f64)
        .transpose()
        .context("--exit-when-idle")?;
    let engine = Arc::new(
        Engine::open(&args.db.db, write)
            .with_context(|| format!("opening {}", args.db.db.display()))?,
    );
    engine.skip_index_teardown();
    // SIGTERM or SIGINT: the loop ends after storing its last batch with its offsets.
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).context("signal handler")?;
    }
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new_spinner()
    } else {
        ProgressBar::hidden()
    };
    let started = Instant::now();
    let report = stream::consume(&engine, &config, &stop, |p: &Progress| {
        let rate = p.messages as f64 / started.elapsed().as_secs_f64().max(1e-3);
        bar.set_message(format!(
            "{} messages ({rate:.0}/s), {} alerts, {} quarantined, lag {}",
            p.messages, p.alerts, p.quarantined, p.lag
        ));
        bar.tick();
    })?;
    bar.finish_and_clear();
    engine.checkpoint()?;
    output::print_consume(&report, args.json)
}

/// `asterism quarantine`.
pub(super) fn quarantine(args: QuarantineArgs) -> Result<()> {
    let engine = open_existing(&args.db.db)?;
    let list = engine.store().quarantined(args.limit)?;
    if let Some(dir) = &args.dump {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for q in &list {
            let path = dir.join(format!("{}-{}-{}.bin", q.topic, q.partition, q.offset));
            std::fs::write(&path, &q.bytes)
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    output::print_quarantine(&list, args.json)
}

/// The consumer configuration from the command line's Kafka flags.
pub(super) fn consume_config(
    brokers: &str,
    topics: Vec<String>,
    group: &str,
    decode: DecodeOptions,
    kafka: &KafkaArgs,
) -> Result<ConsumeConfig> {
    let mut config = ConsumeConfig::new(brokers, topics, group);
    config.decode = decode;
    config.registry = kafka.schema_registry.clone();
    config.publish_topic = kafka.publish_topic.clone();
    config.consumers = usize::from(kafka.consumers);
    if !kafka.ztf_nightly.is_empty() {
        config.nightly = Some(NightlyTopics {
            program_ids: kafka.ztf_nightly.clone(),
        });
    }
    if let (Some(user), Some(password)) = (&kafka.kafka_username, &kafka.kafka_password) {
        config.scram_sha512(user, password);
    }
    for option in &kafka.kafka_option {
        let (k, v) = option
            .split_once('=')
            .with_context(|| format!("--kafka-option {option}: expected KEY=VALUE"))?;
        config.kafka_options.push((k.to_string(), v.to_string()));
    }
    config.max_batch_delay = Duration::from_millis(kafka.max_batch_delay_ms);
    config.watchdog = Duration::from_secs(kafka.watchdog.max(1));
    Ok(config)
}

/// Runs a consumer for `serve` on its own thread until `stop` is set, reconnecting after any
/// error (the stored offsets say where to resume).
pub(super) fn spawn_for_server(
    engine: Arc<Engine>,
    config: ConsumeConfig,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>> {
    let handle = std::thread::Builder::new()
        .name("kafka-consumer".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match stream::consume(&engine, &config, &stop, |_| {}) {
                    Ok(report) => tracing::info!(
                        messages = report.messages,
                        quarantined = report.quarantined,
                        "Kafka consumer stopped"
                    ),
                    Err(e) => {
                        tracing::error!(error = %e, "Kafka consumer failed; reconnecting");
                        let until = Instant::now() + RECONNECT_AFTER;
                        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
            }
        })?;
    Ok(handle)
}
