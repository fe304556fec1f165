//! A lookup table in PostgreSQL: one parameterised query per request, all
//! its keys in one array (`... WHERE id = ANY($1)`).

use std::collections::HashMap;

use super::backend::{Answer, Backend, LookupError};

/// A table behind `query`, which takes the keys as `$1` (a `text[]`) and
/// returns rows of (key, value), both `text`: e.g.
/// `SELECT id, to_jsonb(u)::text FROM users u WHERE id = ANY($1)`.
/// A key without a row is a miss; with several, the last row counts.
pub struct PostgresBackend {
    name: String,
    client: tokio_postgres::Client,
    statement: tokio_postgres::Statement,
}

impl PostgresBackend {
    /// Connects to `url` (`postgres://user@host:port/db`, without TLS) and
    /// prepares `query` (run on the lookup runtime: the connection's task
    /// is spawned on it).
    pub async fn connect(url: &str, query: &str) -> Result<Self, LookupError> {
        let name = redact(url);
        let error = |e: tokio_postgres::Error| LookupError::Connect { backend: name.clone(), error: e.to_string() };
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.map_err(error)?;
        let conn_name = name.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(backend = %conn_name, error = %e, "the PostgreSQL connection ended");
            }
        });
        let statement = client.prepare(query).await.map_err(|e| LookupError::Connect { backend: name.clone(), error: format!("preparing `{query}`: {e}") })?;
        Ok(PostgresBackend { name, client, statement })
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
            let rows = self.client.query(&self.statement, &[&text]).await.map_err(|e| error(e.to_string()))?;
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
