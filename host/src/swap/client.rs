//! A client of the admin API (used by `streamhost plugin list|swap|rollback`
//! and `streamhost top`).

use std::time::Duration;

use serde::de::DeserializeOwned;

use super::api::{ErrorBody, PluginList, RollbackResponse, SwapResponse};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error (its `{"error": ...}` message).
    #[error("{message} (HTTP {status})")]
    Api { status: u16, message: String },
    #[error("cannot reach the admin API at {url}: {message}")]
    Transport { url: String, message: String },
    #[error("unexpected answer from {url}: {message}")]
    Decode { url: String, message: String },
}

/// Talks to one running pipeline's admin API.
pub struct AdminClient {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

/// ureq's default limit on a body read whole.
const DEFAULT_LIMIT: u64 = 10 << 20;

impl AdminClient {
    /// `addr` is `HOST:PORT` or `http://HOST:PORT`.
    pub fn new(addr: &str, token: Option<String>) -> Self {
        let addr = addr.trim().trim_end_matches('/');
        let base = if addr.starts_with("http://") || addr.starts_with("https://") { addr.to_string() } else { format!("http://{addr}") };
        // Compiling a Python component can take a minute when uncached.
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(600)))
            .build()
            .into();
        AdminClient { base, token, agent }
    }

    /// Whether the pipeline runs on this machine (a loopback address or
    /// `localhost`), so it shares this machine's artifact cache.
    pub fn is_local(&self) -> bool {
        let host_port = self.base.split("://").nth(1).unwrap_or("");
        let host = host_port.rsplit_once(':').map_or(host_port, |(h, _)| h).trim_matches(['[', ']']);
        host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    pub fn list(&self) -> Result<PluginList, ClientError> {
        let url = format!("{}/plugins", self.base);
        let request = self.auth(self.agent.get(&url));
        self.answer(&url, request.call())
    }

    /// Uploads `component` as plugin `name`'s new version.
    pub fn swap(&self, name: &str, component: &[u8], config: Option<&serde_json::Value>, canary: bool) -> Result<SwapResponse, ClientError> {
        let url = format!("{}/plugins/{name}/swap", self.base);
        let mut request = self.auth(self.agent.post(&url)).header("content-type", "application/wasm");
        if canary {
            request = request.query("canary", "true");
        }
        if let Some(config) = config {
            request = request.query("config", config.to_string());
        }
        self.answer(&url, request.send(component))
    }

    pub fn rollback(&self, name: &str) -> Result<RollbackResponse, ClientError> {
        let url = format!("{}/plugins/{name}/rollback", self.base);
        let request = self.auth(self.agent.post(&url));
        self.answer(&url, request.send_empty())
    }

    /// `GET /metrics`: the text of a scrape.
    pub fn metrics(&self) -> Result<String, ClientError> {
        let url = format!("{}/metrics", self.base);
        let response = self.auth(self.agent.get(&url)).config().timeout_global(Some(Duration::from_secs(10))).build().call();
        Self::text(&url, response, DEFAULT_LIMIT)
    }

    /// Takes a sample of the running pipeline (`POST /sample`; waits until it is taken).
    pub fn sample(&self, request: &crate::replay::SampleRequest) -> Result<crate::replay::SampleResponse, ClientError> {
        let url = format!("{}/sample", self.base);
        let body = serde_json::to_vec(request).map_err(|e| ClientError::Decode { url: url.clone(), message: e.to_string() })?;
        let response = self.auth(self.agent.post(&url)).header("content-type", "application/json").send(&body[..]);
        // A sample may be far larger than ureq's default limit of 10 MB.
        let text = Self::text(&url, response, 1 << 30)?;
        serde_json::from_str(&text).map_err(|e| ClientError::Decode { url, message: e.to_string() })
    }

    /// The body of a 2xx answer (at most `limit` bytes), or the API's error.
    fn text(url: &str, response: Result<ureq::http::Response<ureq::Body>, ureq::Error>, limit: u64) -> Result<String, ClientError> {
        let mut response = response.map_err(|e| ClientError::Transport { url: url.into(), message: e.to_string() })?;
        let text = response.body_mut().with_config().limit(limit).read_to_string();
        let text = text.map_err(|e| ClientError::Transport { url: url.into(), message: e.to_string() })?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let message = serde_json::from_str::<ErrorBody>(&text).map(|b| b.error).unwrap_or(text);
            return Err(ClientError::Api { status, message });
        }
        Ok(text)
    }

    fn auth<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(t) => request.header("authorization", format!("Bearer {t}")),
            None => request,
        }
    }

    fn answer<T: DeserializeOwned>(&self, url: &str, response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<T, ClientError> {
        let text = Self::text(url, response, DEFAULT_LIMIT)?;
        serde_json::from_str(&text).map_err(|e| ClientError::Decode { url: url.into(), message: e.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::AdminClient;

    #[test]
    fn loopback_addresses_are_local() {
        for addr in ["127.0.0.1:80", "http://localhost:9", "[::1]:7", "http://127.0.0.2:1"] {
            assert!(AdminClient::new(addr, None).is_local(), "{addr}");
        }
        for addr in ["10.0.0.1:80", "http://example.com:9", "0.0.0.0:1"] {
            assert!(!AdminClient::new(addr, None).is_local(), "{addr}");
        }
    }
}
