//! A lookup table in PostgreSQL: one parameterised query per request, all
//! its keys in one array (`... WHERE id = ANY($1)`).

use std::collections::HashMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::backend::{Answer, Backend, LookupError};

/// A table in PostgreSQL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// `postgres://user[:password]@host:port/db` (no TLS).
    pub url: String,
    /// The query: it takes the keys as `$1` (a `text[]`) and returns rows of
    /// (key, value), both text, e.g. `SELECT id, to_jsonb(u)::text FROM users
    /// u WHERE id = ANY($1)`. A key without a row is a miss; with several, the
    /// last row counts.
    pub query: String,
}

impl PostgresConfig {
    /// Problems of the settings, reported at `at` + their path.
    pub fn check(&self, at: &crate::config::locate::JsonPath, err: &mut dyn FnMut(crate::config::locate::JsonPath, String)) {
        if !self.query.contains("$1") {
            err(at.key("query"), "the query must take the keys as `$1` (a text[]), e.g. `... WHERE id = ANY($1)`".into());
        }
        if self.url.parse::<tokio_postgres::Config>().is_err() {
            err(at.key("url"), format!("`{}` is not a PostgreSQL url such as `postgres://user@127.0.0.1:5432/db`", redact(&self.url)));
        }
    }

    /// Its name in errors and logs: the url without its password.
    pub fn name(&self) -> String {
        redact(&self.url)
    }
}

/// A connection with the query prepared on it.
struct Connected {
    client: tokio_postgres::Client,
    statement: tokio_postgres::Statement,
}

/// A table behind a query (see [`PostgresConfig::query`]), over one
/// connection, made on first use and again after it broke.
pub struct PostgresBackend {
    name: String,
    url: String,
    query: String,
    connection: tokio::sync::Mutex<Option<std::sync::Arc<Connected>>>,
}

impl PostgresBackend {
    /// Connects to `url` (`postgres://user@host:port/db`, without TLS) and
    /// prepares `query` now (on a tokio runtime: the connection's task is
    /// spawned on it).
    pub async fn connect(url: &str, query: &str) -> Result<Self, LookupError> {
        let backend = PostgresBackend::lazy(&PostgresConfig { url: url.into(), query: query.into() });
        backend.connected().await?;
        Ok(backend)
    }

    /// The table `config` says, connected on first use.
    pub fn lazy(config: &PostgresConfig) -> Self {
        PostgresBackend { name: config.name(), url: config.url.clone(), query: config.query.clone(), connection: tokio::sync::Mutex::new(None) }
    }

    /// The live connection, made (and the query prepared) if there is none
    /// or it has closed.
    async fn connected(&self) -> Result<std::sync::Arc<Connected>, LookupError> {
        let mut slot = self.connection.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| !c.client.is_closed()) {
            return Ok(c.clone());
        }
        let name = &self.name;
        let error = |e: tokio_postgres::Error| LookupError::Connect { backend: name.clone(), error: e.to_string() };
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls).await.map_err(error)?;
        let conn_name = name.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(backend = %conn_name, error = %e, "the PostgreSQL connection ended");
            }
        });
        let query = &self.query;
        let statement = client.prepare(query).await.map_err(|e| LookupError::Connect { backend: name.clone(), error: format!("preparing `{query}`: {e}") })?;
        let c = std::sync::Arc::new(Connected { client, statement });
        *slot = Some(c.clone());
        Ok(c)
    }
}

/// `url` without its password, for logs and errors.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

impl Backend for PostgresBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn get_many<'a>(&'a self, keys: &'a [Vec<u8>]) -> Answer<'a> {
        Box::pin(async move {
            let error = |e: String| LookupError::Request { backend: self.name.clone(), error: e };
            let text: Vec<&str> =
                keys.iter().map(|k| std::str::from_utf8(k).map_err(|_| error(format!("key {k:?} is not UTF-8 text")))).collect::<Result<_, _>>()?;
            let c = self.connected().await?;
            let rows = c.client.query(&c.statement, &[&text]).await.map_err(|e| error(e.to_string()))?;
            let mut found: HashMap<&str, &str> = HashMap::with_capacity(rows.len());
            for (n, row) in rows.iter().enumerate() {
                let key: &str = row.try_get(0).map_err(|e| error(format!("row {n}: its first column (the key) as text: {e}")))?;
                let value: Option<&str> = row.try_get(1).map_err(|e| error(format!("row {n}: its second column (the value) as text: {e}")))?;
                if let Some(v) = value {
                    found.insert(key, v);
                }
            }
            Ok(text.iter().map(|k| found.get(k).map(|v| v.as_bytes().to_vec())).collect())
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_password_never_reaches_a_log() {
        assert_eq!(super::redact("postgres://app:s3cret@db:5432/dims"), "postgres://app:***@db:5432/dims");
        assert_eq!(super::redact("postgres://app@db/dims"), "postgres://app@db/dims");
        assert_eq!(super::redact("host=db user=app"), "host=db user=app");
    }
}
