//! redis as the metadata service (cargo feature `redis`; `wire.md` §5.5).
//!
//! `SET`/`GET`/`DEL` of Mooncake's keys, values ending with a newline, `AUTH` and `SELECT` from
//! `MC_REDIS_USERNAME` / `MC_REDIS_PASSWORD` / `MC_REDIS_DB_INDEX`, as Mooncake's redis plugin
//! does. Beyond Mooncake, the keys this engine sets carry an expiry
//! (`MOONCAKE_METADATA_LEASE_TTL_S`) that a background task renews while the engine lives, so
//! a killed engine disappears, as it does from etcd. redis cannot be watched without server
//! configuration (keyspace notifications), so peers see changes when they refetch.
//!
//! One multiplexed connection serves every call; after an error it is dropped and the next
//! call connects again, so a restarted server is used again without restarting the engine.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, IntoConnectionInfo};
use tokio::task::JoinHandle;

use super::{Error, KvStore};
use crate::config::Config;
use crate::runtime::RuntimeGuard;

/// The connection, made on first use and again after a failure.
type ConnectionSlot = Arc<tokio::sync::Mutex<Option<MultiplexedConnection>>>;

/// A redis server at one URL (`redis://host:port[/db]`).
pub struct RedisKv {
    runtime: Arc<RuntimeGuard>,
    inner: Arc<Inner>,
    renewer: Mutex<Option<JoinHandle<()>>>,
}

struct Inner {
    client: redis::Client,
    connection: ConnectionSlot,
    url: String,
    timeout: Duration,
    ttl: Duration,
    /// The keys this engine set, whose expiry the renewer extends.
    owned: Mutex<HashSet<String>>,
}

impl RedisKv {
    /// Prepares a client for `url`; the connection is made by the first call, so a server
    /// that is down fails that call after at most the metadata timeout.
    pub fn connect(runtime: Arc<RuntimeGuard>, url: &str, config: &Config) -> Result<RedisKv, Error> {
        let info = url
            .into_connection_info()
            .map_err(|e| Error::InvalidArgument(format!("redis connection string {url:?}: {e}")))?;
        let mut settings = info.redis_settings().clone();
        if let Some(user) = &config.redis_username {
            settings = settings.set_username(user);
        }
        if let Some(password) = &config.redis_password {
            settings = settings.set_password(password);
        }
        if let Some(db) = config.redis_db_index {
            settings = settings.set_db(i64::from(db));
        }
        let client = redis::Client::open(info.set_redis_settings(settings))
            .map_err(|e| Error::InvalidArgument(format!("redis connection string {url:?}: {e}")))?;
        let inner = Arc::new(Inner {
            client,
            connection: Arc::default(),
            url: url.to_string(),
            timeout: config.metadata_timeout,
            ttl: config.metadata_lease_ttl,
            owned: Mutex::default(),
        });
        let renewer = runtime.handle().spawn(renew_expiries(Arc::downgrade(&inner)));
        Ok(RedisKv { runtime, inner, renewer: Mutex::new(Some(renewer)) })
    }

    fn run<T: redis::FromRedisValue + Send + 'static>(
        &self,
        what: &str,
        key: &str,
        cmd: redis::Cmd,
    ) -> Result<T, Error> {
        let inner = self.inner.clone();
        self.runtime
            .block_on(async move { inner.query(&cmd).await })
            .map_err(|e| Error::Service(format!("redis {}: {what} {key}: {e}", self.inner.url)))
    }
}

impl Inner {
    /// Runs `cmd` on the shared connection, connecting first if needed, all within the
    /// metadata timeout. A failed connection is dropped so that the next call reconnects.
    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, String> {
        let timeout = self.timeout;
        let attempt = async {
            let mut slot = self.connection.lock().await;
            let mut connection = match slot.as_ref() {
                Some(c) => c.clone(),
                None => {
                    let config = AsyncConnectionConfig::new()
                        .set_connection_timeout(Some(timeout))
                        .set_response_timeout(Some(timeout));
                    let c = self
                        .client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await
                        .map_err(|e| e.to_string())?;
                    *slot = Some(c.clone());
                    c
                }
            };
            drop(slot);
            let result = cmd.query_async::<T>(&mut connection).await;
            if let Err(e) = &result
                && (e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.is_unrecoverable_error())
            {
                *self.connection.lock().await = None;
            }
            result.map_err(|e| e.to_string())
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(result) => result,
            Err(_) => {
                *self.connection.lock().await = None;
                Err(format!("no answer within {timeout:?}"))
            }
        }
    }
}

impl KvStore for RedisKv {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        self.run("GET", key, redis::cmd("GET").arg(key).to_owned())
    }

    fn put(&self, key: &str, value: &[u8]) -> Result<(), Error> {
        let ttl_ms = self.inner.ttl.as_millis() as u64;
        self.run::<()>("SET", key, redis::cmd("SET").arg(key).arg(value).arg("PX").arg(ttl_ms).to_owned())?;
        self.inner.owned.lock().insert(key.to_string());
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<(), Error> {
        self.inner.owned.lock().remove(key);
        self.run::<()>("DEL", key, redis::cmd("DEL").arg(key).to_owned())
    }

    fn trailing_newline(&self) -> bool {
        true
    }
}

impl Drop for RedisKv {
    fn drop(&mut self) {
        if let Some(task) = self.renewer.lock().take() {
            task.abort();
        }
    }
}

/// Extends the expiry of every key this engine set, every third of the TTL, until the store is
/// dropped. A key the server no longer has is left to the engine's publisher, which re-sets it.
async fn renew_expiries(inner: std::sync::Weak<Inner>) {
    loop {
        let Some(period) = inner.upgrade().map(|i| (i.ttl / 3).max(Duration::from_millis(200))) else { return };
        tokio::time::sleep(period).await;
        let Some(inner) = inner.upgrade() else { return };
        let keys: Vec<String> = inner.owned.lock().iter().cloned().collect();
        let ttl_ms = inner.ttl.as_millis() as u64;
        for key in keys {
            match inner.query::<i64>(redis::cmd("PEXPIRE").arg(&key).arg(ttl_ms)).await {
                Ok(1) => {}
                Ok(_) => tracing::debug!(%key, "redis lost this key; the publisher re-sets it"),
                Err(e) => {
                    tracing::debug!(%key, "redis PEXPIRE: {e}");
                    break; // the server is down: try again next period
                }
            }
        }
    }
}
