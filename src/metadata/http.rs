//! The HTTP metadata client: Mooncake's `HTTPStoragePlugin` on the wire (`wire.md` §5.3).
//!
//! `GET|PUT|DELETE <url>?key=<curl-escaped key>`; PUT bodies are compact JSON (no newline) with
//! `Content-Type: application/json`; anything but 200 is a failure, except 404 (no such key).
//! Every request is bounded by the timeout (Mooncake: 3 s in all, 1.5 s to connect).

use std::sync::Arc;
use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::{Error, KvStore};
use crate::runtime::RuntimeGuard;

/// Everything but `A-Z a-z 0-9 - . _ ~` is escaped, as curl escapes it; the master-embedded
/// server does not decode keys, so the bytes must be exactly curl's.
const CURL_ESCAPE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// `key` escaped as curl escapes a query value.
pub fn escape_key(key: &str) -> String {
    utf8_percent_encode(key, CURL_ESCAPE).to_string()
}

/// A metadata server at one URL (`http://host:port/metadata`).
pub struct HttpKv {
    runtime: Arc<RuntimeGuard>,
    client: reqwest::Client,
    url: String,
    timeout: Duration,
}

impl HttpKv {
    pub fn new(runtime: Arc<RuntimeGuard>, url: &str, timeout: Duration) -> Result<HttpKv, Error> {
        if url.starts_with("https://") {
            return Err(Error::Unsupported(format!(
                "metadata server {url}: https is not available in this build (use http://)"
            )));
        }
        let client = {
            let _enter = runtime.handle().enter();
            reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout / 2)
                .no_proxy()
                .build()
                .map_err(|e| Error::Service(format!("metadata server {url}: {e}")))?
        };
        Ok(HttpKv { runtime, client, url: url.to_string(), timeout })
    }

    fn url_for(&self, key: &str) -> String {
        let sep = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{sep}key={}", self.url, escape_key(key))
    }

    fn send(&self, what: &str, key: &str, req: reqwest::RequestBuilder) -> Result<(u16, Vec<u8>), Error> {
        let url = &self.url;
        let timeout = self.timeout;
        self.runtime.block_on(async move {
            let resp = req.send().await.map_err(|e| {
                let why = if e.is_timeout() { format!("no answer within {timeout:?}") } else { e.to_string() };
                Error::Service(format!("metadata server {url}: {what} {key}: {why}"))
            })?;
            let status = resp.status().as_u16();
            let body = resp
                .bytes()
                .await
                .map_err(|e| Error::Service(format!("metadata server {url}: {what} {key}: reading the body: {e}")))?;
            Ok((status, body.to_vec()))
        })
    }
}

impl KvStore for HttpKv {
    fn kind(&self) -> &'static str {
        "http"
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        match self.send("GET", key, self.client.get(self.url_for(key)))? {
            (200, body) => Ok(Some(body)),
            (404, _) => Ok(None),
            (status, body) => Err(Error::Service(format!(
                "metadata server {}: GET {key}: HTTP {status} {}",
                self.url,
                String::from_utf8_lossy(&body)
            ))),
        }
    }

    fn put(&self, key: &str, value: &[u8]) -> Result<(), Error> {
        let req = self
            .client
            .put(self.url_for(key))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(value.to_vec());
        match self.send("PUT", key, req)? {
            (200, _) => Ok(()),
            (400, body) => Err(Error::Rejected {
                peer: self.url.clone(),
                reason: format!("PUT {key}: {}", String::from_utf8_lossy(&body)),
            }),
            (status, body) => Err(Error::Service(format!(
                "metadata server {}: PUT {key}: HTTP {status} {}",
                self.url,
                String::from_utf8_lossy(&body)
            ))),
        }
    }

    fn delete(&self, key: &str) -> Result<(), Error> {
        match self.send("DELETE", key, self.client.delete(self.url_for(key)))? {
            (200 | 404, _) => Ok(()),
            (status, body) => Err(Error::Service(format!(
                "metadata server {}: DELETE {key}: HTTP {status} {}",
                self.url,
                String::from_utf8_lossy(&body)
            ))),
        }
    }

    fn trailing_newline(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_curl() {
        assert_eq!(escape_key("mooncake/ram/127.0.0.1"), "mooncake%2Fram%2F127.0.0.1");
        assert_eq!(escape_key("mooncake/rpc_meta/node:1"), "mooncake%2Frpc_meta%2Fnode%3A1");
        assert_eq!(escape_key("a-b.c_d~e f"), "a-b.c_d~e%20f");
    }
}
