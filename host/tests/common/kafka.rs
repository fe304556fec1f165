//! A real Kafka-protocol broker for the tests: Tansu (scripts/setup.sh fetches
//! it), started on 127.0.0.1 with in-memory storage and stopped on drop.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

/// The Tansu binary: `$STREAMHOST_TANSU`, else where scripts/setup.sh puts it.
fn tansu_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("STREAMHOST_TANSU") {
        return p.into();
    }
    let tools = std::env::var_os("STREAMHOST_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/streamhost/tools"));
    tools.join("tansu/tansu")
}

pub struct Broker {
    child: Child,
    pub brokers: String,
}

impl Broker {
    /// Starts a broker on a free port and waits until it accepts connections.
    pub fn start() -> Broker {
        let bin = tansu_binary();
        assert!(bin.is_file(), "no Tansu at {} (run scripts/setup.sh)", bin.display());
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(bin)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url, "--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        let broker = Broker { child, brokers: format!("127.0.0.1:{port}") };
        let until = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < until, "tansu did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        broker
    }

    /// The broker's process id (tests/benches/kafka.rs reads its CPU time).
    #[allow(dead_code)]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", &self.brokers).create().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let results = rt
            .block_on(admin.create_topics(&[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))], &AdminOptions::new()))
            .unwrap();
        for r in results {
            r.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
        }
    }

    /// Produces `records` to `topic` (partitioned by key) and waits for every acknowledgement.
    pub fn produce(&self, topic: &str, records: &[Record]) {
        self.produce_into(topic, None, records)
    }

    /// Produces `records` to one partition of `topic`.
    pub fn produce_to(&self, topic: &str, partition: i32, records: &[Record]) {
        self.produce_into(topic, Some(partition), records)
    }

    /// The offsets `group` has committed for partitions `0..partitions` of
    /// `topic` (-1 where none).
    pub fn committed(&self, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
        let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &self.brokers).set("group.id", group).create().unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(topic, p);
        }
        let got = consumer.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
        (0..partitions)
            .map(|p| match got.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => -1,
            })
            .collect()
    }

    fn produce_into(&self, topic: &str, partition: Option<i32>, records: &[Record]) {
        use rdkafka::message::{Header, OwnedHeaders};
        use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
        let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", &self.brokers).set("linger.ms", "5").create().unwrap();
        for r in records {
            let mut headers = OwnedHeaders::new();
            for (k, v) in &r.headers {
                headers = headers.insert(Header { key: k, value: Some(v) });
            }
            let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).payload(r.value.as_slice()).headers(headers);
            if let Some(p) = partition {
                rec = rec.partition(p);
            }
            if let Some(k) = &r.key {
                rec = rec.key(k.as_slice());
            }
            if let Some(ts) = r.timestamp {
                rec = rec.timestamp(ts);
            }
            let mut rec = rec;
            loop {
                match producer.send(rec) {
                    Ok(()) => break,
                    Err((_, back)) => {
                        rec = back;
                        producer.poll(Duration::from_millis(10));
                    }
                }
            }
            producer.poll(Duration::ZERO);
        }
        producer.flush(Duration::from_secs(30)).unwrap();
    }

    /// The records of `topic` (all partitions, from the start), reading until
    /// `count` arrived, or none came for 3 s, or 60 s passed.
    pub fn read_all(&self, topic: &str, count: usize) -> Vec<Record> {
        self.read_with_partitions(topic, count).into_iter().map(|(_, r)| r).collect()
    }

    /// [`read_all`](Broker::read_all), with the partition of each record.
    pub fn read_with_partitions(&self, topic: &str, count: usize) -> Vec<(i32, Record)> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", "streamhost-test-reader")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let meta = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in meta.topics()[0].partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning).unwrap();
        }
        consumer.assign(&tpl).unwrap();
        let mut out = Vec::new();
        let until = Instant::now() + Duration::from_secs(60);
        let mut last = Instant::now();
        while out.len() < count && Instant::now() < until && last.elapsed() < Duration::from_secs(3) {
            if let Some(m) = consumer.poll(Duration::from_millis(100)) {
                last = Instant::now();
                let m = m.unwrap();
                let headers = m
                    .headers()
                    .map(|h| {
                        use rdkafka::message::Headers;
                        h.iter().map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec())).collect()
                    })
                    .unwrap_or_default();
                out.push((
                    m.partition(),
                    Record { key: m.key().map(<[u8]>::to_vec), value: m.payload().unwrap_or_default().to_vec(), timestamp: m.timestamp().to_millis(), headers },
                ));
            }
        }
        out
    }
}

/// Each line of `path` as a Kafka record keyed by its `request_id`, timed by its `ts`.
pub fn keyed_records(path: &std::path::Path) -> Vec<Record> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            Record { key: v["request_id"].as_str().map(|k| k.as_bytes().to_vec()), timestamp: v["ts"].as_i64(), value: l.as_bytes().to_vec(), headers: vec![] }
        })
        .collect()
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Record {
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub timestamp: Option<i64>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
