//! The real client's side: `mooncake_client` serves dummy clients of this host on the abstract
//! unix socket `mooncake_client:<port>`, one thread per dummy.
//!
//! A dummy shares memory (memfds) with this process; the server maps each one, registers it
//! with the store, and runs the dummy's requests on the store with addresses translated into
//! its own mappings. A range that is not inside memory the dummy shared is refused, so a dummy
//! can make the store read or write only memory it handed over. When a dummy's socket closes
//! (it closed its store, exited or was killed), its mappings are unregistered and unmapped.

use std::collections::BTreeMap;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use super::proto::{DUMMY_PROTOCOL, DummyRequest, DummyResponse, Range, socket_name};
use super::wire;
use crate::proto::Envelope;
use crate::store::{ByteRange, KeyBuffer, StoreError, StoreResult, client::RealClient};
use crate::sys::mapping::SharedMapping;

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
                let keys: Vec<KeyBuffer<'_>> = items
                    .iter()
                    .zip(&bufs)
                    .map(|(it, b)| KeyBuffer { key: &it.key, addr: b.unwrap_or(0), len: it.len })
                    .collect();
                let mut out = store.batch_put_from(&keys, &config, upsert);
                refuse_untranslated(&mut out, &bufs, &items);
                DummyResponse::Codes(out.into_iter().map(|r| r.map_err(|e| e.code)).collect())
            }),
            DummyRequest::GetInto { items } => self.translated(&items).map(|bufs| {
                let keys: Vec<KeyBuffer<'_>> = items
                    .iter()
                    .zip(&bufs)
                    .map(|(it, b)| KeyBuffer { key: &it.key, addr: b.unwrap_or(0), len: it.len })
                    .collect();
                let mut out = store.batch_get_into(&keys);
                refuse_untranslated(&mut out, &bufs, &items);
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
        let mapping = SharedMapping::map(fd, size)?;
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

/// Items whose range was not shared fail with `INVALID_PARAMS` (the store saw address 0,
/// which no registered buffer contains, so it refused them too; this gives the clear reason).
fn refuse_untranslated<T>(out: &mut [StoreResult<T>], bufs: &[Option<u64>], items: &[Range]) {
    for ((o, b), it) in out.iter_mut().zip(bufs).zip(items) {
        if b.is_none() {
            *o = Err(not_shared(it.addr, it.len));
        }
    }
}

fn not_shared(addr: u64, len: u64) -> StoreError {
    StoreError::invalid(format!(
        "{len} bytes at {addr:#x} are not in memory shared with the real client (use alloc_from_mem_pool)"
    ))
}
