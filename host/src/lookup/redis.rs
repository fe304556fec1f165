//! A lookup table in Redis: one server (over one multiplexed connection that
//! reconnects by itself) or a Redis Cluster (a list of nodes; keys routed by
//! slot). A request is one command or one pipeline whatever its size: MGET
//! for strings, HGETALL or HMGET per key in one pipeline for hashes.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::backend::{Answer, Backend, LookupError};
use crate::config::locate::JsonPath;

/// A table in Redis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// One server: `redis://host:port[/db]`.
    #[serde(default)]
    pub url: Option<String>,
    /// A Redis Cluster: some of its nodes (`redis://host:port`); the rest is
    /// discovered, and each key goes to the node of its slot.
    #[serde(default)]
    pub nodes: Option<Vec<String>>,
    /// How values are kept: `strings` (one string per key, JSON as a rule;
    /// read by MGET) or `hashes` (one hash per key, read by HGETALL, or by
    /// HMGET of the step's `fields`; handed on as a JSON object of its
    /// fields).
    #[serde(default)]
    pub values: RedisValues,
}

impl RedisConfig {
    /// Problems of the settings, reported at `at` + their path.
    pub fn check(&self, at: &JsonPath, err: &mut dyn FnMut(JsonPath, String)) {
        match (&self.url, &self.nodes) {
            (None, None) => err(at.clone(), "give `url` (one server) or `nodes` (a cluster)".into()),
            (Some(_), Some(_)) => err(at.key("nodes"), "give `url` (one server) or `nodes` (a cluster), not both".into()),
            (None, Some(n)) if n.is_empty() => err(at.key("nodes"), "needs at least one node".into()),
            _ => {}
        }
        let urls = self.url.iter().map(|u| (at.key("url"), u));
        let nodes = self.nodes.iter().flatten().enumerate().map(|(i, u)| (at.key("nodes").index(i), u));
        for (at, url) in urls.chain(nodes) {
            if redis::parse_redis_url(url).is_none() {
                err(at, format!("`{url}` is not a Redis url such as `redis://127.0.0.1:6379`"));
            }
        }
    }

    /// Its name in errors, logs and stats.
    pub fn name(&self) -> String {
        match (&self.url, &self.nodes) {
            (Some(url), _) => url.clone(),
            (None, Some(nodes)) => format!("cluster {}", nodes.join(",")),
            (None, None) => "redis (no url)".into(),
        }
    }
}

/// How a table's values are kept in Redis.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RedisValues {
    /// A string per key (JSON, as a rule), read by `MGET`.
    #[default]
    Strings,
    /// A hash per key, read by `HGETALL` (all in one pipeline) and handed
    /// on as a JSON object of its fields (string values); an empty or absent
    /// hash is a miss.
    Hashes,
}

/// What one request reads.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Read {
    Mget,
    Hgetall,
    /// HMGET of these fields: a hash without any of them is a miss.
    Hmget(Vec<String>),
}

enum Connection {
    Server(redis::aio::ConnectionManager),
    /// Connected on first use; the cluster connection follows the slots by itself.
    Cluster(Box<Cluster>),
}

/// A cluster's client, and its connection once made.
struct Cluster {
    client: redis::cluster::ClusterClient,
    connection: tokio::sync::OnceCell<redis::cluster_async::ClusterConnection>,
}

/// A Redis server or cluster.
pub struct RedisBackend {
    name: String,
    read: Read,
    connection: Connection,
}

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

impl RedisBackend {
    /// Connects to the server at `url` (`redis://host:port[/db]`) now.
    pub async fn connect(url: &str, values: RedisValues) -> Result<Self, LookupError> {
        let error = |e: redis::RedisError| LookupError::Connect { backend: url.to_string(), error: e.to_string() };
        let client = redis::Client::open(url).map_err(error)?;
        let manager = redis::aio::ConnectionManager::new_with_config(client, manager_config().set_number_of_retries(0)).await.map_err(error)?;
        Ok(RedisBackend { name: url.to_string(), read: read_of(values, None), connection: Connection::Server(manager) })
    }

    /// The table `config` says, connected on first use (a server down at the
    /// start is a failed request, retried, not a failed start); `fields`:
    /// the only fields of a hash wanted (HMGET).
    pub fn lazy(config: &RedisConfig, fields: Option<&[String]>) -> Result<Self, LookupError> {
        let name = config.name();
        let error = |e: redis::RedisError| LookupError::Connect { backend: name.clone(), error: e.to_string() };
        let connection = match (&config.url, &config.nodes) {
            (Some(url), None) => {
                let client = redis::Client::open(url.as_str()).map_err(error)?;
                Connection::Server(redis::aio::ConnectionManager::new_lazy_with_config(client, manager_config()).map_err(error)?)
            }
            (None, Some(nodes)) => {
                let client = redis::cluster::ClusterClient::builder(nodes.clone()).connection_timeout(CONNECT_TIMEOUT).build().map_err(error)?;
                Connection::Cluster(Box::new(Cluster { client, connection: tokio::sync::OnceCell::new() }))
            }
            _ => return Err(LookupError::Connect { backend: name, error: "give `url` (one server) or `nodes` (a cluster), not both".into() }),
        };
        Ok(RedisBackend { name: config.name(), read: read_of(config.values, fields), connection })
    }

    fn error(&self, e: impl std::fmt::Display) -> LookupError {
        LookupError::Request { backend: self.name.clone(), error: e.to_string() }
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, LookupError> {
        match &self.connection {
            // A handle to one shared pipeline: cloning it is cheap.
            Connection::Server(m) => cmd.query_async(&mut m.clone()).await.map_err(|e| self.error(e)),
            Connection::Cluster(_) => cmd.query_async(&mut self.cluster().await?).await.map_err(|e| self.error(e)),
        }
    }

    /// One command per key: one pipeline on a server; on a cluster, sent at
    /// once over its multiplexed connections (a pipeline must stay on one node).
    async fn per_key<T: redis::FromRedisValue + Send>(&self, cmds: Vec<redis::Cmd>) -> Result<Vec<T>, LookupError> {
        match &self.connection {
            Connection::Server(m) => {
                let mut pipe = redis::pipe();
                for c in cmds {
                    pipe.add_command(c);
                }
                pipe.query_async(&mut m.clone()).await.map_err(|e| self.error(e))
            }
            Connection::Cluster(_) => {
                let connection = self.cluster().await?;
                let calls: Vec<_> = cmds
                    .into_iter()
                    .map(|c| {
                        let mut connection = connection.clone();
                        async move { c.query_async::<T>(&mut connection).await }
                    })
                    .collect();
                futures_util::future::try_join_all(calls).await.map_err(|e| self.error(e))
            }
        }
    }

    async fn cluster(&self) -> Result<redis::cluster_async::ClusterConnection, LookupError> {
        let Connection::Cluster(cluster) = &self.connection else { unreachable!("a cluster's connection") };
        let (client, connection) = (&cluster.client, &cluster.connection);
        let c = connection
            .get_or_try_init(|| client.get_async_connection())
            .await
            .map_err(|e| LookupError::Connect { backend: self.name.clone(), error: e.to_string() })?;
        Ok(c.clone())
    }
}

fn manager_config() -> redis::aio::ConnectionManagerConfig {
    // Requests are bounded in time and retried by the lookup runtime; the
    // manager only reconnects, quickly.
    redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(10))
        .set_max_delay(Duration::from_millis(200))
}

fn read_of(values: RedisValues, fields: Option<&[String]>) -> Read {
    match (values, fields) {
        (RedisValues::Strings, _) => Read::Mget,
        (RedisValues::Hashes, None) => Read::Hgetall,
        (RedisValues::Hashes, Some(f)) => Read::Hmget(f.to_vec()),
    }
}

impl Backend for RedisBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn get_many<'a>(&'a self, keys: &'a [Vec<u8>]) -> Answer<'a> {
        Box::pin(async move {
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            let values: Vec<Option<Vec<u8>>> = match &self.read {
                Read::Mget => self.query(redis::cmd("MGET").arg(keys)).await?,
                Read::Hgetall => {
                    let cmds = keys.iter().map(|k| redis::cmd("HGETALL").arg(k).clone()).collect();
                    let hashes: Vec<BTreeMap<String, String>> = self.per_key(cmds).await?;
                    hashes.into_iter().map(|h| (!h.is_empty()).then(|| serde_json::to_vec(&h).unwrap_or_default())).collect()
                }
                Read::Hmget(fields) => {
                    let cmds = keys.iter().map(|k| redis::cmd("HMGET").arg(k).arg(fields).clone()).collect();
                    let rows: Vec<Vec<Option<String>>> = self.per_key(cmds).await?;
                    rows.into_iter()
                        .map(|row| {
                            let object: serde_json::Map<String, serde_json::Value> =
                                fields.iter().zip(row).filter_map(|(f, v)| Some((f.clone(), serde_json::Value::String(v?)))).collect();
                            (!object.is_empty()).then(|| serde_json::to_vec(&object).unwrap_or_default())
                        })
                        .collect()
                }
            };
            if values.len() != keys.len() {
                return Err(self.error(format!("{} keys asked, {} answered", keys.len(), values.len())));
            }
            Ok(values)
        })
    }
}
