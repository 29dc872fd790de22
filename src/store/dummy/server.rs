//! The real client's side: `mooncake_client` serves dummy clients of this host on the abstract
//! unix socket `mooncake_client:<port>`, one thread per dummy.
//!
//! A dummy shares memory (memfds) with this process; the server maps each one, registers it
//! with the store, and runs the dummy's requests on the store with addresses translated into
//! its own mappings. A range that is not inside memory the dummy shared is refused, so a dummy
//! can make the store read or write only memory it handed over. When a dummy's socket closes
//! (it closed its store, exited or was killed), its mappings are unregistered and unmapped.
//!
//! A memfd is mapped only when it is sealed against shrinking and as long as the dummy says
//! (`sys::mapping::check_unshrinkable`): a dummy that truncated a memfd we map would otherwise
//! raise SIGBUS here on the next copy into or out of it, and kill every object of this host's
//! segment with us. Any other memfd is refused (`INVALID_PARAMS`, one rate-limited log line);
//! the dummy keeps its session. Our dummies create their memfds sealed.

use std::collections::BTreeMap;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use super::proto::{DUMMY_PROTOCOL, DummyRequest, DummyResponse, MultiRange, Range, socket_name};
use super::wire;
use crate::proto::Envelope;
use crate::store::{ByteRange, KeyBuffer, KeyParts, Part, StoreError, StoreResult, client::RealClient};
use crate::sys::mapping::SharedMapping;
use crate::transport::log_limit::LogLimit;

/// Refused `Share`s are logged at most once a second (a dummy may retry in a loop).
static REFUSED_SHARES: LogLimit = LogLimit::new(std::time::Duration::from_secs(1));

/// A running server; dropping it stops accepting (sessions end with their dummies).
pub struct DummyServer {
    name: String,
    stopped: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl DummyServer {
    /// The abstract unix socket name it listens on (without the leading NUL).
    pub fn socket_name(&self) -> &str {
        &self.name
    }

    /// Listens for dummies of the `mooncake_client` serving `port`.
    pub fn start(store: Arc<RealClient>, port: u16) -> io::Result<DummyServer> {
        let name = socket_name(port);
        let listener = UnixListener::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes())?)?;
        let stopped = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&stopped);
        let accept = std::thread::Builder::new().name("mooncake-dummy-accept".into()).spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::Acquire) {
                    return;
                }
                match conn {
                    Ok(stream) => {
                        let store = Arc::clone(&store);
                        let spawned = std::thread::Builder::new()
                            .name("mooncake-dummy".into())
                            .spawn(move || Session { store, shared: BTreeMap::new() }.serve(stream));
                        if let Err(e) = spawned {
                            tracing::warn!("cannot serve a dummy client: {e}");
                        }
                    }
                    Err(e) => tracing::warn!("accepting a dummy client: {e}"),
                }
            }
        })?;
        tracing::info!(socket = %name, "serving dummy clients");
        Ok(DummyServer { name, stopped, accept: Some(accept) })
    }
}

impl Drop for DummyServer {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::Release);
        // Wake the accept loop with a connection of our own.
        if let Ok(addr) = SocketAddr::from_abstract_name(self.name.as_bytes()) {
            let _ = UnixStream::connect_addr(&addr);
        }
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

/// One dummy's connection and the memory it shared: the dummy's address → our mapping.
struct Session {
    store: Arc<RealClient>,
    shared: BTreeMap<u64, SharedMapping>,
}

impl Session {
    fn serve(mut self, mut stream: UnixStream) {
        let mut scratch = Vec::new();
        loop {
            let (request, fd) = match wire::receive::<DummyRequest>(&mut stream, &mut scratch) {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!("dummy client left: {e}");
                    break;
                }
            };
            let body = self.handle(request.body, fd);
            if let Err(e) = wire::send(&stream, &Envelope { id: request.id, body }, None, &mut scratch) {
                tracing::debug!("dummy client left: {e}");
                break;
            }
        }
        for (_, mapping) in std::mem::take(&mut self.shared) {
            let _ = self.store.unregister_buffer(mapping.addr());
        }
    }

    fn handle(&mut self, request: DummyRequest, fd: Option<std::os::fd::OwnedFd>) -> DummyResponse {
        let store = &self.store;
        let answer = match request {
            DummyRequest::Hello { protocol } if protocol == DUMMY_PROTOCOL => {
                Ok(DummyResponse::Hello { protocol: DUMMY_PROTOCOL, hostname: store.hostname() })
            }
            DummyRequest::Hello { protocol } => {
                Err(StoreError::invalid(format!("dummy protocol {protocol}; this client speaks {DUMMY_PROTOCOL}")))
            }
            DummyRequest::Share { addr, size } => self.share(addr, size, fd).map(|()| DummyResponse::Done),
            DummyRequest::Unshare { addr } => match self.shared.remove(&addr) {
                Some(m) => store.unregister_buffer(m.addr()).map(|()| DummyResponse::Done),
                None => Err(StoreError::invalid(format!("{addr:#x} was not shared"))),
            },
            DummyRequest::PutFrom { items, config, upsert } => self.translated(&items).map(|bufs| {
                let out = on_shared(&items, &bufs, |keys| store.batch_put_from(keys, &config, upsert));
                DummyResponse::Codes(out.into_iter().map(|r| r.map_err(|e| e.code)).collect())
            }),
            DummyRequest::GetInto { items } => self.translated(&items).map(|bufs| {
                let out = on_shared(&items, &bufs, |keys| store.batch_get_into(keys));
                DummyResponse::Sizes(out.into_iter().map(|r| r.map_err(|e| e.code)).collect())
            }),
            DummyRequest::GetRanges { buffer, key, ranges } => {
                let end = ranges.iter().map(|&(dst, _, len)| dst.saturating_add(len)).max().unwrap_or(0);
                match self.translate(buffer, end) {
                    Some(local) => {
                        let ranges: Vec<ByteRange> =
                            ranges.iter().map(|&(dst, src, len)| ByteRange { dst, src, len }).collect();
                        store
                            .get_into_ranges(local, &key, &ranges)
                            .map(|out| DummyResponse::Ranges(out.into_iter().map(|r| r.map_err(|e| e.code)).collect()))
                    }
                    None => Err(not_shared(buffer, end)),
                }
            }
            DummyRequest::Exists { keys } => {
                let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                Ok(DummyResponse::Flags(
                    store.batch_is_exist(&keys).into_iter().map(|r| r.map_err(|e| e.code)).collect(),
                ))
            }
            DummyRequest::GetSize { key } => store.get_size(&key).map(DummyResponse::Size),
            DummyRequest::Remove { key, force } => store.remove(&key, force).map(|()| DummyResponse::Done),
            DummyRequest::RemoveByRegex { pattern, force } => {
                store.remove_by_regex(&pattern, force).map(DummyResponse::Count)
            }
            DummyRequest::RemoveAll { force } => store.remove_all(force).map(DummyResponse::Count),
            DummyRequest::Health => Ok(DummyResponse::Health(store.health_check())),
            DummyRequest::PutMulti { items, config, upsert } => {
                let (parts, refused) = self.translated_parts(&items);
                let keys = key_parts(&items, &parts);
                let mut out = store.batch_put_from_multi_buffers(&keys, &config, upsert);
                refuse_parts(&mut out, refused);
                Ok(DummyResponse::Codes(out.into_iter().map(|r| r.map_err(|e| e.code)).collect()))
            }
            DummyRequest::GetMulti { items } => {
                let (parts, refused) = self.translated_parts(&items);
                let keys = key_parts(&items, &parts);
                let mut out = store.batch_get_into_multi_buffers(&keys);
                refuse_parts(&mut out, refused);
                Ok(DummyResponse::Sizes(out.into_iter().map(|r| r.map_err(|e| e.code)).collect()))
            }
            DummyRequest::ReplicaDescs { keys } => {
                let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                let out = store.batch_replica_desc(&keys);
                Ok(DummyResponse::ReplicaDescs(out.into_iter().map(|r| r.map_err(|e| e.code)).collect()))
            }
            DummyRequest::CreateCopyTask { key, targets } => {
                let targets: Vec<&str> = targets.iter().map(String::as_str).collect();
                store.create_copy_task(&key, &targets).map(DummyResponse::Task)
            }
            DummyRequest::CreateMoveTask { key, source, target } => {
                store.create_move_task(&key, &source, &target).map(DummyResponse::Task)
            }
            DummyRequest::QueryTask { task } => store.query_task(task).map(DummyResponse::TaskInfo),
        };
        answer.unwrap_or_else(|e| DummyResponse::Error(e.code, e.message))
    }

    fn share(&mut self, addr: u64, size: u64, fd: Option<std::os::fd::OwnedFd>) -> StoreResult<()> {
        let fd = fd.ok_or_else(|| StoreError::invalid("Share came without a memfd"))?;
        if self.shared.contains_key(&addr) {
            return Err(StoreError::invalid(format!("{addr:#x} is already shared")));
        }
        let mapping = SharedMapping::map(fd, size).map_err(|e| {
            let e = StoreError::from(e);
            if let Some(suppressed) = REFUSED_SHARES.allow() {
                tracing::warn!(size, suppressed, "refusing memory a dummy client shared: {}", e.message);
            }
            e
        })?;
        self.store.register_buffer(mapping.addr(), mapping.len())?;
        self.shared.insert(addr, mapping);
        Ok(())
    }

    /// Our address of the dummy's `[addr, addr + len)`, when it lies inside one shared mapping.
    fn translate(&self, addr: u64, len: u64) -> Option<u64> {
        let (&base, m) = self.shared.range(..=addr).next_back()?;
        let offset = addr - base;
        (offset.checked_add(len)? <= m.len()).then(|| m.addr() + offset)
    }

    fn translated(&self, items: &[Range]) -> StoreResult<Vec<Option<u64>>> {
        Ok(items.iter().map(|it| self.translate(it.addr, it.len)).collect())
    }
}

/// Runs `call` on the items whose range lies in memory the dummy shared (translated into our
/// mappings); the others fail with `INVALID_PARAMS` without reaching the store, as Mooncake's
/// real client refuses a dummy's address it cannot map. (The store takes unregistered memory
/// of this process, so an untranslated address must never reach it.)
fn on_shared<T>(
    items: &[Range],
    bufs: &[Option<u64>],
    call: impl FnOnce(&[KeyBuffer<'_>]) -> Vec<StoreResult<T>>,
) -> Vec<StoreResult<T>> {
    let keys: Vec<KeyBuffer<'_>> = items
        .iter()
        .zip(bufs)
        .filter_map(|(it, b)| b.map(|addr| KeyBuffer { key: &it.key, addr, len: it.len }))
        .collect();
    let mut done = call(&keys).into_iter();
    items
        .iter()
        .zip(bufs)
        .map(|(it, b)| match b {
            Some(_) => done
                .next()
                .unwrap_or_else(|| Err(StoreError::new(crate::proto::ErrorCode::InternalError, "no outcome"))),
            None => Err(not_shared(it.addr, it.len)),
        })
        .collect()
}

fn not_shared(addr: u64, len: u64) -> StoreError {
    StoreError::invalid(format!(
        "{len} bytes at {addr:#x} are not in memory shared with the real client (use alloc_from_mem_pool)"
    ))
}

// ---- multi-buffer puts and gets ----

impl Session {
    /// Our addresses of each key's parts; a key with a part outside the shared mappings gets
    /// no parts here (the store refuses it as a key without parts) and its reason in the
    /// second list, which replaces the store's answer.
    fn translated_parts(&self, items: &[MultiRange]) -> (Vec<Vec<Part>>, Vec<Option<StoreError>>) {
        items
            .iter()
            .map(|it| {
                let parts: Option<Vec<Part>> = it
                    .parts
                    .iter()
                    .map(|&(addr, len)| {
                        if len == 0 {
                            return Some(Part { addr, len });
                        }
                        self.translate(addr, len).map(|local| Part { addr: local, len })
                    })
                    .collect();
                match parts {
                    Some(p) => (p, None),
                    None => {
                        let (addr, len) = it
                            .parts
                            .iter()
                            .copied()
                            .find(|&(a, l)| l > 0 && self.translate(a, l).is_none())
                            .unwrap_or((0, 0));
                        (Vec::new(), Some(not_shared(addr, len)))
                    }
                }
            })
            .unzip()
    }
}

fn key_parts<'a>(items: &'a [MultiRange], parts: &'a [Vec<Part>]) -> Vec<KeyParts<'a>> {
    items.iter().zip(parts).map(|(it, p)| KeyParts { key: &it.key, parts: p }).collect()
}

fn refuse_parts<T>(out: &mut [StoreResult<T>], refused: Vec<Option<StoreError>>) {
    for (o, r) in out.iter_mut().zip(refused) {
        if let Some(e) = r {
            *o = Err(e);
        }
    }
}
