//! etcd as the metadata service (cargo feature `etcd`, Mooncake's `USE_ETCD`; `wire.md` §5.5).
//!
//! Same keys and values as every [`KvStore`] (values end with a newline). One thing goes beyond
//! Mooncake, whose engines put plain keys that outlive a killed process: every key this engine
//! puts is attached to one lease that a background task keeps alive while the engine lives, so
//! a process that dies, SIGKILL included, disappears from etcd when its lease expires
//! (`MOONCAKE_METADATA_LEASE_TTL_S`). Should the lease expire anyway (etcd unreachable for
//! longer than the TTL), the engine's publisher finds its keys gone and re-publishes them
//! under a new lease. A prefix watch tells peers when a descriptor changes or vanishes; after
//! a broken watch stream it resumes from the last revision it saw, so nothing is missed.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, LeaseKeepAliveStream, LeaseKeeper, PutOptions, WatchOptions};
use parking_lot::Mutex;
use tokio::task::JoinHandle;

use super::{Error, KvStore};
use crate::config::Config;
use crate::runtime::RuntimeGuard;

/// How long a broken watch or keep-alive stream waits before it is set up again.
const RETRY_DELAY: Duration = Duration::from_millis(500);
/// Between two tries of a call that reached no cluster member.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Whether `e` says that no member was reached (so another try may reach a live one).
fn unreachable_member(e: &etcd_client::Error) -> bool {
    const GRPC_UNAVAILABLE: i32 = 14;
    match e {
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        etcd_client::Error::GRpcStatus(status) => status.code() as i32 == GRPC_UNAVAILABLE,
        _ => false,
    }
}

/// The lease shared by every key of this engine; `None` until the first put, and again after
/// etcd reported it expired.
type LeaseSlot = Arc<tokio::sync::Mutex<Option<i64>>>;

/// An etcd cluster (`h1:2379,h2:2379`), reached through the shared runtime.
pub struct EtcdKv {
    runtime: Arc<RuntimeGuard>,
    client: Client,
    endpoints: String,
    timeout: Duration,
    ttl: Duration,
    lease: LeaseSlot,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl EtcdKv {
    /// Prepares a client for `endpoints` (comma-separated `host:port` or `http://host:port`).
    /// Connections are made lazily: an unreachable cluster fails the first request, after at
    /// most the metadata timeout, rather than this call.
    pub fn connect(runtime: Arc<RuntimeGuard>, endpoints: &str, config: &Config) -> Result<EtcdKv, Error> {
        let urls = endpoint_urls(endpoints)?;
        let timeout = config.metadata_timeout;
        // No per-request timeout on the channel: it would also cut the watch and keep-alive
        // streams. Unary calls are bounded by `bounded` below.
        let options = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_keep_alive(Duration::from_secs(5), timeout)
            .with_keep_alive_while_idle(true);
        let client = runtime
            .block_on(async { tokio::time::timeout(timeout, Client::connect(urls, Some(options))).await })
            .map_err(|_| Error::Service(format!("etcd {endpoints}: no connection within {timeout:?}")))?
            .map_err(|e| Error::Service(format!("etcd {endpoints}: {e}")))?;
        let kv = EtcdKv {
            runtime,
            client,
            endpoints: endpoints.to_string(),
            timeout,
            ttl: config.metadata_lease_ttl,
            lease: Arc::default(),
            tasks: Mutex::new(Vec::new()),
        };
        let keeper = kv.runtime.handle().spawn(keep_lease_alive(kv.client.clone(), kv.lease.clone(), kv.ttl, timeout));
        kv.tasks.lock().push(keeper);
        Ok(kv)
    }

    /// Runs one etcd call on the runtime, bounded by the metadata timeout. A call that could
    /// not reach a member (refused, unavailable) is tried again within that time: of several
    /// endpoints, the channel may pick one that is down before it learns it is.
    fn bounded<T, F, Fut>(&self, what: &str, key: &str, mut call: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let timeout = self.timeout;
        let fail = |why: String| Error::Service(format!("etcd {}: {what} {key}: {why}", self.endpoints));
        self.runtime.block_on(async {
            let deadline = tokio::time::Instant::now() + timeout;
            let mut last_refusal = None;
            loop {
                match tokio::time::timeout_at(deadline, call()).await {
                    Ok(Ok(v)) => return Ok(v),
                    Ok(Err(e)) if unreachable_member(&e) && tokio::time::Instant::now() + RETRY_PAUSE < deadline => {
                        last_refusal = Some(e.to_string());
                        tokio::time::sleep(RETRY_PAUSE).await;
                    }
                    Ok(Err(e)) => return Err(fail(e.to_string())),
                    Err(_) => {
                        let last = last_refusal.map(|e| format!(" (last error: {e})")).unwrap_or_default();
                        return Err(fail(format!("no answer within {timeout:?}{last}")));
                    }
                }
            }
        })
    }

    /// Puts `key` under the engine's lease, granting one first if there is none. A lease etcd
    /// no longer knows (it expired while etcd was out of reach) is replaced once.
    async fn put_leased(
        client: Client,
        lease: LeaseSlot,
        ttl: Duration,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), etcd_client::Error> {
        let put = |id: i64| {
            let (mut client, key, value) = (client.clone(), key.clone(), value.clone());
            async move { client.put(key, value, Some(PutOptions::new().with_lease(id))).await.map(drop) }
        };
        let id = current_lease(&client, &lease, ttl).await?;
        match put(id).await {
            Err(e) if e.to_string().contains("lease not found") => {
                tracing::info!(lease = id, "etcd lost this engine's lease; granting a new one");
                {
                    let mut slot = lease.lock().await;
                    if *slot == Some(id) {
                        *slot = None;
                    }
                }
                put(current_lease(&client, &lease, ttl).await?).await
            }
            other => other,
        }
    }
}

/// The engine's lease, granted now if there is none. The slot stays locked across the grant,
/// so that concurrent puts share one lease.
async fn current_lease(client: &Client, lease: &LeaseSlot, ttl: Duration) -> Result<i64, etcd_client::Error> {
    let mut slot = lease.lock().await;
    if let Some(id) = *slot {
        return Ok(id);
    }
    let granted = client.clone().lease_grant(ttl.as_secs().max(1) as i64, None).await?;
    tracing::debug!(lease = granted.id(), ttl = granted.ttl(), "etcd lease granted");
    *slot = Some(granted.id());
    Ok(granted.id())
}

impl KvStore for EtcdKv {
    fn kind(&self) -> &'static str {
        "etcd"
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        let resp = self.bounded("get", key, || {
            let mut client = self.client.clone();
            async move { client.get(key, None).await }
        })?;
        Ok(resp.kvs().first().map(|kv| kv.value().to_vec()))
    }

    fn put(&self, key: &str, value: &[u8]) -> Result<(), Error> {
        self.bounded("put", key, || {
            Self::put_leased(self.client.clone(), self.lease.clone(), self.ttl, key.to_string(), value.to_vec())
        })
    }

    fn delete(&self, key: &str) -> Result<(), Error> {
        self.bounded("delete", key, || {
            let mut client = self.client.clone();
            async move { client.delete(key, None).await }
        })
        .map(drop)
    }

    fn trailing_newline(&self) -> bool {
        true
    }

    fn watch(&self, prefix: &str, on_change: Arc<dyn Fn(&str) + Send + Sync>) -> Result<(), Error> {
        let task = self.runtime.handle().spawn(watch_prefix(self.client.clone(), prefix.to_string(), on_change));
        self.tasks.lock().push(task);
        Ok(())
    }
}

impl Drop for EtcdKv {
    fn drop(&mut self) {
        for task in self.tasks.lock().drain(..) {
            task.abort();
        }
        // Revoking drops whatever keys are still attached (the engine withdrew its own
        // already); from inside the runtime we cannot wait, and the lease expires by itself.
        if tokio::runtime::Handle::try_current().is_err() {
            let (mut client, lease, timeout) = (self.client.clone(), self.lease.clone(), self.timeout);
            self.runtime.block_on(async move {
                if let Some(id) = *lease.lock().await {
                    let _ = tokio::time::timeout(timeout, client.lease_revoke(id)).await;
                }
            });
        }
    }
}

/// `h1:2379,etcd://h2:2379` → `["http://h1:2379", "http://h2:2379"]`.
fn endpoint_urls(endpoints: &str) -> Result<Vec<String>, Error> {
    let mut urls = Vec::new();
    for part in endpoints.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bare = part.strip_prefix("etcd://").unwrap_or(part);
        if bare.starts_with("https://") {
            return Err(Error::Unsupported(format!("etcd endpoint {part}: TLS is not available in this build")));
        }
        urls.push(if bare.contains("://") { bare.to_string() } else { format!("http://{bare}") });
    }
    if urls.is_empty() {
        return Err(Error::InvalidArgument(format!("etcd connection string {endpoints:?} names no endpoint")));
    }
    Ok(urls)
}

/// Refreshes the lease every third of its TTL. A lease etcd reports expired is forgotten, so
/// the next put grants a new one; a broken stream is set up again at the next tick.
async fn keep_lease_alive(client: Client, lease: LeaseSlot, ttl: Duration, timeout: Duration) {
    let period = (ttl / 3).max(Duration::from_millis(200));
    let mut stream: Option<(i64, LeaseKeeper, LeaseKeepAliveStream)> = None;
    loop {
        tokio::time::sleep(period).await;
        let Some(id) = *lease.lock().await else {
            stream = None;
            continue;
        };
        if stream.as_ref().map(|s| s.0) != Some(id) {
            match tokio::time::timeout(timeout, client.clone().lease_keep_alive(id)).await {
                Ok(Ok((keeper, responses))) => stream = Some((id, keeper, responses)),
                Ok(Err(e)) => {
                    tracing::debug!(lease = id, "etcd keep-alive stream: {e}");
                    continue;
                }
                Err(_) => continue,
            }
        }
        let Some((_, keeper, responses)) = stream.as_mut() else { continue };
        let refreshed = tokio::time::timeout(timeout, async {
            keeper.keep_alive().await?;
            responses.message().await
        })
        .await;
        match refreshed {
            Ok(Ok(Some(resp))) if resp.ttl() > 0 => {}
            Ok(Ok(Some(_))) => {
                tracing::warn!(lease = id, "etcd lease expired; this engine's keys will be re-published");
                let mut slot = lease.lock().await;
                if *slot == Some(id) {
                    *slot = None;
                }
                stream = None;
            }
            other => {
                tracing::debug!(lease = id, "etcd keep-alive failed: {other:?}");
                stream = None;
            }
        }
    }
}

/// Watches every key under `prefix` until the task is aborted, calling `on_change(key)` for
/// each put or delete. After a broken stream it resumes at the revision after the last one
/// seen (from now if that history was compacted).
async fn watch_prefix(client: Client, prefix: String, on_change: Arc<dyn Fn(&str) + Send + Sync>) {
    let mut next_revision = 0i64;
    loop {
        let mut options = WatchOptions::new().with_prefix();
        if next_revision > 0 {
            options = options.with_start_revision(next_revision);
        }
        match client.clone().watch(prefix.as_str(), Some(options)).await {
            Ok(mut stream) => loop {
                match stream.message().await {
                    Ok(Some(resp)) => {
                        if resp.canceled() {
                            tracing::debug!(%prefix, reason = resp.cancel_reason(), "etcd watch cancelled");
                            next_revision = 0;
                            break;
                        }
                        if resp.created() && next_revision == 0 {
                            next_revision = resp.header().map_or(0, |h| h.revision() + 1);
                        }
                        for event in resp.events() {
                            if let Some(kv) = event.kv() {
                                next_revision = next_revision.max(kv.mod_revision() + 1);
                                if let Ok(key) = kv.key_str() {
                                    on_change(key);
                                }
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(%prefix, "etcd watch stream: {e}");
                        break;
                    }
                }
            },
            Err(e) => tracing::debug!(%prefix, "etcd watch: {e}"),
        }
        tokio::time::sleep(RETRY_DELAY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_become_urls() {
        assert_eq!(endpoint_urls("h1:2379, h2:2379").unwrap(), ["http://h1:2379", "http://h2:2379"]);
        assert_eq!(endpoint_urls("http://h:1").unwrap(), ["http://h:1"]);
        assert!(matches!(endpoint_urls(" , "), Err(Error::InvalidArgument(_))));
        assert!(matches!(endpoint_urls("https://h:1"), Err(Error::Unsupported(_))));
    }
}
