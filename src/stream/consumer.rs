//! The consumer loop: poll, decode, batch, store with offsets, commit to the group.
//!
//! Rebalance callbacks run inside `poll` on the loop's own thread: an assignment is started at
//! the offsets the store holds, and a revocation first writes the pending batch, so a
//! partition leaves this consumer with everything it read stored.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::publish::Publisher;
use super::registry::Schemas;
use super::{ConsumeConfig, ConsumeReport, Progress, Result, StreamError, MAX_MESSAGE_BYTES};
use crate::alert;
use crate::engine::{Engine, IngestTally, StreamMarks};
use crate::model::Alert;
use crate::store::{PartitionOffset, Quarantined};

/// How long one poll waits for a message.
const POLL: Duration = Duration::from_millis(100);
/// How often the partitions' high watermarks are asked for (lag, watchdog, progress).
const WATERMARK_EVERY: Duration = Duration::from_secs(5);
/// With `exit_when_idle`, how much longer to wait for a first assignment.
const JOIN_GRACE: Duration = Duration::from_secs(30);
/// How long a watermark request may take.
const WATERMARK_TIMEOUT: Duration = Duration::from_secs(2);

type Partition = (String, i32);

/// Reads the configured topics into `engine` until `stop` is set, the stream has been idle
/// for `exit_when_idle`, or an error; the last batch is stored with its offsets before it
/// returns. With `config.consumers` above 1, that many group members on as many threads
/// share the partitions and the engine. `on_progress` is called after each stored batch and
/// watermark refresh of the first member.
pub fn consume(
    engine: &Arc<Engine>,
    config: &ConsumeConfig,
    stop: &AtomicBool,
    on_progress: impl FnMut(&Progress),
) -> Result<ConsumeReport> {
    let abort = AtomicBool::new(false);
    let halt = Halt {
        stop,
        abort: &abort,
    };
    let members =
        std::thread::scope(|scope| {
            let others: Vec<_> = (1..config.consumers.max(1))
                .map(|_| scope.spawn(|| halt.on_error(run_member(engine, config, halt, |_| {}))))
                .collect();
            let first = halt.on_error(run_member(engine, config, halt, on_progress));
            let mut all = vec![first];
            for t in others {
                all.push(t.join().unwrap_or_else(|_| {
                    Err(StreamError::Kafka("a consumer thread panicked".into()))
                }));
            }
            all
        });
    let mut merged = Member::default();
    for m in members {
        merged.merge(m?);
    }
    let state = merged.state;
    let mut partitions = engine.store().offsets()?;
    partitions.retain(|p| state.known.contains_key(&(p.topic.clone(), p.partition)));
    Ok(ConsumeReport {
        ingest: state.tally.finish(),
        messages: state.messages,
        quarantined: state.quarantined,
        skipped: state.skipped,
        published: state.published,
        busy_seconds: merged.busy.map_or(0.0, |(first, last)| {
            last.saturating_duration_since(first).as_secs_f64()
        }),
        partitions,
    })
}

/// When the members stop: the caller's flag, or another member's error.
#[derive(Clone, Copy)]
struct Halt<'a> {
    stop: &'a AtomicBool,
    abort: &'a AtomicBool,
}

impl Halt<'_> {
    fn is_set(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.abort.load(Ordering::Relaxed)
    }

    /// Passes `result` on; an error stops the other members.
    fn on_error<T>(&self, result: Result<T>) -> Result<T> {
        if result.is_err() {
            self.abort.store(true, Ordering::Relaxed);
        }
        result
    }
}

/// What one group member did.
#[derive(Default)]
struct Member {
    state: State,
    /// From its first message read to its last batch stored.
    busy: Option<(Instant, Instant)>,
}

impl Member {
    fn merge(&mut self, other: Member) {
        let (a, b) = (&mut self.state, other.state);
        a.tally.merge(b.tally);
        a.known.extend(b.known);
        a.messages += b.messages;
        a.quarantined += b.quarantined;
        a.skipped += b.skipped;
        a.published += b.published;
        self.busy = match (self.busy, other.busy) {
            (Some(x), Some(y)) => Some((x.0.min(y.0), x.1.max(y.1))),
            (x, y) => x.or(y),
        };
    }
}

/// One group member: its own client, on the calling thread.
fn run_member(
    engine: &Arc<Engine>,
    config: &ConsumeConfig,
    halt: Halt<'_>,
    mut on_progress: impl FnMut(&Progress),
) -> Result<Member> {
    let client = client_config(config)?;
    let publisher = config
        .publish_topic
        .as_deref()
        .map(|topic| Publisher::new(&client, topic, config.registry.as_deref()))
        .transpose()?;
    let context = Context {
        engine: Arc::clone(engine),
        publisher,
        state: Mutex::new(State::default()),
    };
    let consumer: BaseConsumer<Context> =
        client.create_with_context(context).map_err(|e| match e {
            KafkaError::ClientConfig(..) | KafkaError::ClientCreation(..) => {
                StreamError::Config(e.to_string())
            }
            e => e.into(),
        })?;
    let mut schemas = Schemas::new(config.decode.clone(), config.registry.as_deref());
    let mut topics = config.topics_now();
    subscribe(&consumer, &topics)?;

    let mut last_message = Instant::now();
    let mut ever_assigned = false;
    let mut first_message: Option<Instant> = None;
    let mut last_stored = Instant::now();
    let mut busy_until = Instant::now();
    let mut last_watermarks = Instant::now();
    let outcome = loop {
        if halt.is_set() {
            break Ok(());
        }
        match consumer.poll(POLL) {
            Some(Ok(message)) => {
                last_message = Instant::now();
                first_message.get_or_insert(last_message);
                let mut state = consumer.context().state();
                let key = (message.topic().to_string(), message.partition());
                state.take(
                    &consumer.context().engine,
                    &mut schemas,
                    key,
                    message.offset(),
                    message.payload().unwrap_or_default(),
                )?;
            }
            Some(Err(e)) if note_error(&e) => consumer.context().state().broker_trouble = true,
            Some(Err(_)) => {}
            // A quiet moment: the lists a deferred relink still owes are written (busy time:
            // the stream's own work, not idle).
            None => {
                if consumer.context().engine.relink_unlinked()? > 0 {
                    busy_until = Instant::now();
                    last_message = busy_until;
                }
            }
        }
        if let Some(e) = consumer.context().state().error.take() {
            break Err(e);
        }
        let due = {
            let state = consumer.context().state();
            state.pending.alerts.len() >= config.batch_size
                || state
                    .pending
                    .since
                    .is_some_and(|t| t.elapsed() >= config.max_batch_delay)
        };
        if due && consumer.context().flush(&consumer)? {
            last_stored = Instant::now();
            busy_until = last_stored;
            // Time spent storing (and publishing) is not idle time.
            last_message = last_stored;
            on_progress(&consumer.context().state().progress());
        }
        if last_watermarks.elapsed() >= WATERMARK_EVERY {
            last_watermarks = Instant::now();
            if config.nightly.is_some() {
                let now = config.topics_now();
                if now != topics {
                    // UTC midnight: tonight's topic joins, the night before yesterday's leaves.
                    consumer.context().flush(&consumer)?;
                    topics = now;
                    subscribe(&consumer, &topics)?;
                }
            }
            let lag = refresh_watermarks(&consumer);
            consumer.context().record_positions()?;
            on_progress(&consumer.context().state().progress());
            // Caught up is progress; messages waiting, or a broker that does not answer, for
            // longer than the watchdog allows while nothing is stored is not. (A lost broker
            // also costs the assignment, so an empty one does not say "caught up" then.)
            let trouble = consumer.context().state().broker_trouble;
            match lag {
                Some(0) if !trouble => last_stored = Instant::now(),
                _ if last_stored.elapsed() >= config.watchdog => {
                    break Err(StreamError::Stalled {
                        seconds: last_stored.elapsed().as_secs(),
                        waiting: match lag {
                            Some(n) if n > 0 => format!("{n} messages wait on the broker"),
                            _ => "the broker does not answer".to_string(),
                        },
                    });
                }
                _ => {}
            }
        }
        if let Some(idle) = config.exit_when_idle {
            // Idle time counts from the last message or assignment: joining a group (or
            // waiting for a dead member's session to expire) is not idleness.
            let assigned = consumer.context().state().assigned_at.take();
            if let Some(at) = assigned {
                last_message = last_message.max(at);
                ever_assigned = true;
            }
            let grace = if ever_assigned {
                idle
            } else {
                idle + JOIN_GRACE
            };
            if last_message.elapsed() >= grace {
                break Ok(());
            }
        }
    };
    // The last batch goes in with its offsets whatever ended the loop; then the group learns
    // where this consumer stopped, and leaves (a revocation, flushed by the callback).
    let flushed = consumer
        .context()
        .flush(&consumer)
        .and_then(|f| Ok(f | (consumer.context().engine.relink_unlinked()? > 0)));
    outcome?;
    if flushed? {
        busy_until = Instant::now();
    }
    refresh_watermarks(&consumer);
    consumer.context().record_positions()?;
    consumer.unsubscribe();
    let state = std::mem::take(&mut *consumer.context().state());
    Ok(Member {
        state,
        busy: first_message.map(|f| (f, busy_until)),
    })
}

fn client_config(config: &ConsumeConfig) -> Result<ClientConfig> {
    if config.topics.is_empty() && config.nightly.is_none() {
        return Err(StreamError::Config("no topic to consume".into()));
    }
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.brokers)
        .set("group.id", &config.group)
        // The store, not the group, says where to resume; offsets are committed by hand after
        // each stored batch so that Kafka tools see the lag.
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.message.max.bytes", MAX_MESSAGE_BYTES.to_string())
        .set(
            "receive.message.max.bytes",
            (4 * MAX_MESSAGE_BYTES).to_string(),
        )
        .set("client.id", "asterism");
    for (k, v) in &config.kafka_options {
        c.set(k, v);
    }
    Ok(c)
}

fn subscribe(consumer: &BaseConsumer<Context>, topics: &[String]) -> Result<()> {
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    tracing::info!(topics = ?names, "subscribing");
    consumer.subscribe(&names)?;
    Ok(())
}

/// Logs an error a poll returned (none stops the consumer: librdkafka retries by itself);
/// returns whether it says the brokers cannot be reached.
fn note_error(e: &KafkaError) -> bool {
    match e.rdkafka_error_code() {
        // A nightly topic that does not exist yet, or the end of a partition.
        Some(RDKafkaErrorCode::UnknownTopicOrPartition)
        | Some(RDKafkaErrorCode::UnknownTopic)
        | Some(RDKafkaErrorCode::PartitionEOF) => {
            tracing::debug!(error = %e, "poll");
            false
        }
        code => {
            tracing::warn!(error = %e, "Kafka");
            matches!(
                code,
                Some(RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown)
            )
        }
    }
}

/// Asks the broker for the assigned partitions' high watermarks; returns the total lag, or
/// `None` when the broker did not answer.
fn refresh_watermarks(consumer: &BaseConsumer<Context>) -> Option<i64> {
    let assignment = consumer.assignment().ok()?;
    let now = unix_now();
    let mut highs = Vec::new();
    for e in assignment.elements() {
        match consumer.fetch_watermarks(e.topic(), e.partition(), WATERMARK_TIMEOUT) {
            Ok((_, high)) => highs.push(((e.topic().to_string(), e.partition()), high)),
            Err(err) => {
                // One unanswered request is enough: the others would wait as long.
                tracing::warn!(error = %err, topic = e.topic(), "watermarks");
                return None;
            }
        }
    }
    let mut state = consumer.context().state();
    if !highs.is_empty() {
        state.broker_trouble = false;
    }
    let mut lag = 0;
    for (key, high) in highs {
        let next = state.known.get(&key).copied().unwrap_or(0);
        lag += (high - next).max(0);
        let old = state.high.insert(key, (high, now));
        state.highs_changed |= old.is_none_or(|(h, _)| h != high);
    }
    state.lag = lag;
    Some(lag)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The consumer's context: the engine it writes and what it has read but not stored yet.
struct Context {
    engine: Arc<Engine>,
    publisher: Option<Publisher>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    pending: Pending,
    /// Next offset per partition: stored, or pending in `pending`.
    known: HashMap<Partition, i64>,
    /// Last high watermark per partition, and when (Unix seconds).
    high: HashMap<Partition, (i64, u64)>,
    tally: IngestTally,
    messages: u64,
    quarantined: u64,
    skipped: u64,
    published: u64,
    lag: i64,
    /// The brokers could not be reached, and no message or assignment has come since.
    broker_trouble: bool,
    /// A high watermark moved since the positions were last written.
    highs_changed: bool,
    /// When partitions were last assigned, until the loop reads it.
    assigned_at: Option<Instant>,
    /// An error raised inside a rebalance callback, for the loop to return.
    error: Option<StreamError>,
}

/// Messages read since the last stored batch.
#[derive(Default)]
struct Pending {
    alerts: Vec<Alert>,
    quarantined: Vec<Quarantined>,
    /// Next offset of each partition these messages came from.
    next: BTreeMap<Partition, i64>,
    since: Option<Instant>,
}

impl Context {
    fn state(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a panic on this same thread, which already ended the loop.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores the pending messages' alerts, quarantine and offsets in one batch, then commits
    /// the offsets to the group. Returns whether anything was pending.
    fn flush(&self, consumer: &BaseConsumer<Context>) -> Result<bool> {
        let mut state = self.state();
        if state.pending.next.is_empty() {
            return Ok(false);
        }
        let pending = std::mem::take(&mut state.pending);
        let marks = StreamMarks {
            offsets: state.positions(&pending.next),
            quarantined: pending.quarantined,
        };
        let outcome = self.engine.apply_marked(&pending.alerts, marks)?;
        let changed = match &self.publisher {
            Some(_) => outcome.changed_objects.clone(),
            None => Vec::new(),
        };
        state.tally.add_batch(pending.alerts.len(), outcome);
        drop(state);
        if let Some(publisher) = &self.publisher {
            let n = publisher.publish(&self.engine, &changed)?;
            self.state().published += n;
        }

        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), next) in &pending.next {
            // Only the group's view of the lag: a failure here loses nothing.
            if let Err(e) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*next)) {
                tracing::warn!(error = %e, "offset to commit");
            }
        }
        if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
            tracing::debug!(error = %e, "committing offsets to the group");
        }
        Ok(true)
    }

    /// Writes the high watermarks last asked for beside the stored offsets (no message is
    /// pending then: `flush` came first), so that `stats` shows the lag.
    fn record_positions(&self) -> Result<()> {
        let mut state = self.state();
        if !state.pending.next.is_empty() || !state.highs_changed {
            return Ok(());
        }
        state.highs_changed = false;
        let stored: BTreeMap<Partition, i64> = state
            .known
            .iter()
            .filter(|(k, _)| state.high.contains_key(*k))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        let marks = StreamMarks {
            offsets: state.positions(&stored),
            quarantined: Vec::new(),
        };
        drop(state);
        self.engine.apply_marked(&[], marks)?;
        Ok(())
    }

    /// Sets each newly assigned partition's start to the offset the store holds for it.
    fn seek_to_stored(&self, tpl: &mut TopicPartitionList) -> Result<()> {
        let mut state = self.state();
        let parts: Vec<Partition> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        for (topic, partition) in parts {
            let key = (topic.clone(), partition);
            if let Some(next) = state.stored_next(&self.engine, key)? {
                tpl.set_partition_offset(&topic, partition, Offset::Offset(next))?;
                tracing::info!(
                    topic,
                    partition,
                    offset = next,
                    "resuming at the stored offset"
                );
            }
        }
        Ok(())
    }
}

impl State {
    /// Decodes one message into the pending batch, or quarantines it; skips a message the
    /// store already holds.
    fn take(
        &mut self,
        engine: &Engine,
        schemas: &mut Schemas,
        key: Partition,
        offset: i64,
        payload: &[u8],
    ) -> Result<()> {
        self.broker_trouble = false;
        let next = self.stored_next(engine, key.clone())?.unwrap_or(0);
        if offset < next {
            self.skipped += 1;
            return Ok(());
        }
        self.messages += 1;
        let name = format!("{}/{}@{}", key.0, key.1, offset);
        let decoded = alert::decode(&name, payload, schemas.options_for(payload)?);
        if !decoded.rejects.is_empty() {
            let reason = decoded
                .rejects
                .iter()
                .map(|r| r.error.to_string())
                .collect::<Vec<_>>()
                .join("; ");
            tracing::warn!(message = %name, %reason, "quarantined");
            self.quarantined += 1;
            self.pending.quarantined.push(Quarantined {
                topic: key.0.clone(),
                partition: key.1,
                offset,
                reason,
                at: unix_now(),
                bytes: payload.to_vec(),
            });
            self.tally.add_rejects(decoded.rejects);
        }
        self.pending.alerts.extend(decoded.alerts);
        self.pending.since.get_or_insert_with(Instant::now);
        self.pending.next.insert(key.clone(), offset + 1);
        self.known.insert(key, offset + 1);
        Ok(())
    }

    /// The next offset of a partition this consumer has read or the store holds (cached).
    fn stored_next(&mut self, engine: &Engine, key: Partition) -> Result<Option<i64>> {
        if let Some(next) = self.known.get(&key) {
            return Ok(Some(*next));
        }
        let stored = engine.store().offset(&key.0, key.1)?.map(|o| o.next);
        if let Some(next) = stored {
            self.known.insert(key, next);
        }
        Ok(stored)
    }

    /// The rows for the `offsets` column family: each partition's next offset, with the last
    /// high watermark asked for.
    fn positions(&self, next: &BTreeMap<Partition, i64>) -> Vec<PartitionOffset> {
        next.iter()
            .map(|(key, next)| {
                let high = self.high.get(key);
                PartitionOffset {
                    topic: key.0.clone(),
                    partition: key.1,
                    next: *next,
                    high_watermark: high.map(|h| h.0.max(*next)),
                    watermark_at: high.map(|h| h.1),
                }
            })
            .collect()
    }

    fn progress(&self) -> Progress {
        Progress {
            messages: self.messages,
            alerts: self.tally.report().alerts_read,
            quarantined: self.quarantined,
            lag: self.lag,
        }
    }
}

impl ClientContext for Context {}

impl ConsumerContext for Context {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.seek_to_stored(tpl).and_then(|()| {
                    tracing::info!(partitions = tpl.count(), "assigned");
                    let mut state = self.state();
                    state.assigned_at = Some(Instant::now());
                    state.broker_trouble = false;
                    if cooperative {
                        consumer.incremental_assign(tpl)?;
                    } else {
                        consumer.assign(tpl)?;
                    }
                    Ok(())
                })
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                // What was read from the leaving partitions is stored before they go.
                let flushed = self.flush(consumer);
                {
                    let mut state = self.state();
                    for e in tpl.elements() {
                        state.known.remove(&(e.topic().to_string(), e.partition()));
                    }
                }
                tracing::info!(partitions = tpl.count(), "revoked");
                let unassigned = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                flushed
                    .and(unassigned.map_err(StreamError::from))
                    .map(|_| ())
            }
            other => {
                tracing::warn!(error = ?other, "rebalance");
                consumer.unassign().map_err(StreamError::from)
            }
        };
        if let Err(e) = result {
            self.state().error.get_or_insert(e);
        }
    }
}
