//! The dummy's side (`setup_dummy`): no engine and no segment of its own; every operation is
//! a request to the `mooncake_client` of this host, and values move through memory shared
//! with it.
//!
//! The dummy shares a staging mapping of `local_buffer_size` bytes at set-up, and one mapping
//! per `alloc_from_mem_pool` call (zero-copy calls must use that memory, as in Mooncake). One
//! connection carries the requests, one at a time; the staging mapping is used only while
//! holding it.

use std::collections::BTreeMap;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;

use super::proto::{DUMMY_PROTOCOL, DummyRequest, DummyResponse, MultiRange, Range, socket_name};
use super::wire;
use crate::proto::{Envelope, ErrorCode};
use crate::store::{ByteRange, KeyBuffer, KeyParts, ReplicaConfig, StoreError, StoreResult};
use crate::sys::mapping::SharedMapping;

struct Conn {
    stream: UnixStream,
    scratch: Vec<u8>,
    staging: SharedMapping,
}

pub struct DummyClient {
    conn: Mutex<Conn>,
    next_id: AtomicU64,
    hostname: String,
    /// Mappings from `alloc_from_mem_pool`: address → mapping.
    pool: Mutex<BTreeMap<u64, SharedMapping>>,
    /// `mem_pool_size`: the most `alloc_from_mem_pool` hands out in all (0: no limit).
    pool_limit: u64,
    /// Ranges the caller registered (inside pool mappings): start → length.
    registered: Mutex<BTreeMap<u64, u64>>,
    /// `local_buffer_size` was 0: puts and gets of bytes fail, as Mooncake's dummy (its buffer
    /// allocator has nothing to hand out).
    no_local_buffer: bool,
    closed: AtomicBool,
}

impl DummyClient {
    /// Connects to the `mooncake_client` at `server_address` (`host:port`; the host must be
    /// this one) and shares a staging mapping of `local_buffer_size` bytes.
    pub fn setup(mem_pool_size: u64, local_buffer_size: u64, server_address: &str) -> StoreResult<DummyClient> {
        crate::logging::init();
        let port: u16 = server_address
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .ok_or_else(|| StoreError::invalid(format!("server address {server_address:?} has no port")))?;
        let name = socket_name(port);
        let stream = SocketAddr::from_abstract_name(name.as_bytes())
            .and_then(|addr| UnixStream::connect_addr(&addr))
            .map_err(|e| {
            StoreError::new(
                ErrorCode::RpcFail,
                format!("no mooncake_client serves {server_address} on this host (socket @{name}): {e}"),
            )
        })?;
        let staging = SharedMapping::create(local_buffer_size.max(1 << 20))?;
        let dummy = DummyClient {
            conn: Mutex::new(Conn { stream, scratch: Vec::new(), staging }),
            next_id: AtomicU64::new(1),
            hostname: String::new(),
            pool: Mutex::new(BTreeMap::new()),
            pool_limit: mem_pool_size,
            registered: Mutex::new(BTreeMap::new()),
            no_local_buffer: local_buffer_size == 0,
            closed: AtomicBool::new(false),
        };
        let hostname = match dummy.call(&DummyRequest::Hello { protocol: DUMMY_PROTOCOL }, None)? {
            DummyResponse::Hello { hostname, .. } => hostname,
            other => return Err(unexpected(&other)),
        };
        dummy.share_staging()?;
        tracing::info!(%hostname, "dummy client attached");
        Ok(DummyClient { hostname, ..dummy })
    }

    fn share_staging(&self) -> StoreResult<()> {
        let mut conn = self.conn.lock();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let Conn { stream, scratch, staging } = &mut *conn;
        let request = Envelope { id, body: DummyRequest::Share { addr: staging.addr(), size: staging.len() } };
        wire::send(stream, &request, Some(staging.fd()), scratch).map_err(|e| rpc_error(&e))?;
        let (reply, _) = wire::receive::<DummyResponse>(stream, scratch).map_err(|e| rpc_error(&e))?;
        expect_done(reply.body)
    }

    /// One request (with `fd` attached) and its answer; errors come back as `Err`.
    pub(super) fn call(
        &self,
        request: &DummyRequest,
        fd: Option<std::os::fd::BorrowedFd<'_>>,
    ) -> StoreResult<DummyResponse> {
        let mut conn = self.conn.lock();
        self.exchange(&mut conn, request, fd)
    }

    fn exchange(
        &self,
        conn: &mut Conn,
        request: &DummyRequest,
        fd: Option<std::os::fd::BorrowedFd<'_>>,
    ) -> StoreResult<DummyResponse> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::invalid("the store client is closed"));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        wire::send(&conn.stream, &Envelope { id, body: request }, fd, &mut conn.scratch).map_err(|e| rpc_error(&e))?;
        let (reply, _) =
            wire::receive::<DummyResponse>(&mut conn.stream, &mut conn.scratch).map_err(|e| rpc_error(&e))?;
        match reply.body {
            DummyResponse::Error(code, message) => {
                Err(StoreError::new(code, format!("{} (mooncake_client: {message})", kind(request))))
            }
            other => Ok(other),
        }
    }

    pub fn hostname(&self) -> String {
        self.hostname.clone()
    }

    /// 0 healthy, 1 closed, 2 the real client or its master is unreachable.
    pub fn health_check(&self) -> i32 {
        if self.closed.load(Ordering::Acquire) {
            return 1;
        }
        match self.call(&DummyRequest::Health, None) {
            Ok(DummyResponse::Health(h)) => h,
            _ => 2,
        }
    }

    /// Memory shared with the real client, usable by the zero-copy calls; 0 on failure.
    pub fn alloc_from_mem_pool(&self, size: u64) -> StoreResult<u64> {
        let used: u64 = self.pool.lock().values().map(SharedMapping::len).sum();
        if self.pool_limit > 0 && used.saturating_add(size) > self.pool_limit {
            return Err(StoreError::new(
                ErrorCode::NoAvailableHandle,
                format!("the memory pool ({} bytes, {used} in use) has no room for {size} more", self.pool_limit),
            ));
        }
        let mapping = SharedMapping::create(size)?;
        let addr = mapping.addr();
        expect_done(self.call(&DummyRequest::Share { addr, size: mapping.len() }, Some(mapping.fd()))?)?;
        self.pool.lock().insert(addr, mapping);
        Ok(addr)
    }

    /// Accepts ranges inside memory from `alloc_from_mem_pool` (nothing else can be shared).
    pub fn register_buffer(&self, addr: u64, len: u64) -> StoreResult<()> {
        let pool = self.pool.lock();
        let inside = pool
            .range(..=addr)
            .next_back()
            .is_some_and(|(&base, m)| addr.checked_add(len).is_some_and(|end| end <= base + m.len()));
        if !inside || len == 0 {
            return Err(StoreError::invalid(format!(
                "a dummy client can register only memory from alloc_from_mem_pool; {len} bytes at {addr:#x} are not"
            )));
        }
        self.registered.lock().insert(addr, len);
        Ok(())
    }

    pub fn unregister_buffer(&self, addr: u64) -> StoreResult<()> {
        match self.registered.lock().remove(&addr) {
            Some(_) => Ok(()),
            None => Err(StoreError::invalid(format!("no buffer is registered at {addr:#x}"))),
        }
    }

    pub fn put_parts(&self, key: &str, parts: &[&[u8]], config: &ReplicaConfig, upsert: bool) -> StoreResult<()> {
        if parts.is_empty() && !key.is_empty() {
            // Mooncake's `put_parts()` with no part answers 0 and stores nothing.
            return Ok(());
        }
        self.local_buffer()?;
        let size: u64 = parts.iter().map(|p| p.len() as u64).sum();
        let mut conn = self.conn.lock();
        let (addr, temp) = if size <= conn.staging.len() {
            (conn.staging.addr(), None)
        } else {
            // Larger than the staging mapping: a mapping of its own for this value.
            let m = SharedMapping::create(size.max(1))?;
            let request = DummyRequest::Share { addr: m.addr(), size: m.len() };
            expect_done(self.exchange(&mut conn, &request, Some(m.fd()))?)?;
            (m.addr(), Some(m))
        };
        // `[addr, addr + size)` is the staging mapping (held through `conn`) or the temporary one.
        let target = temp.as_ref().unwrap_or(&conn.staging);
        let mut at = addr;
        for part in parts {
            let inside = target.write_at(at, part);
            debug_assert!(inside, "the mapping holds the whole value");
            at += part.len() as u64;
        }
        let request = DummyRequest::PutFrom {
            items: vec![Range { key: key.into(), addr, len: size }],
            config: config.clone(),
            upsert,
        };
        let out = self.exchange(&mut conn, &request, None).and_then(first_code);
        if let Some(m) = temp {
            let _ = self.exchange(&mut conn, &DummyRequest::Unshare { addr: m.addr() }, None);
        }
        out
    }

    /// `INVALID_PARAMS` when this dummy was set up with a zero `local_buffer_size`.
    fn local_buffer(&self) -> StoreResult<()> {
        if self.no_local_buffer {
            return Err(StoreError::invalid(
                "this client has no local buffer (local_buffer_size 0): put and get of bytes need one",
            ));
        }
        Ok(())
    }

    pub fn put_batch(&self, items: &[(&str, &[u8])], config: &ReplicaConfig, upsert: bool) -> Vec<StoreResult<()>> {
        items.iter().map(|(k, v)| self.put_parts(k, &[v], config, upsert)).collect()
    }

    pub fn put_from(&self, key: &str, addr: u64, len: u64, config: &ReplicaConfig, upsert: bool) -> StoreResult<()> {
        self.batch_put_from(&[KeyBuffer { key, addr, len }], config, upsert).pop().unwrap_or(Ok(()))
    }

    pub fn batch_put_from(
        &self,
        items: &[KeyBuffer<'_>],
        config: &ReplicaConfig,
        upsert: bool,
    ) -> Vec<StoreResult<()>> {
        let ranges = items.iter().map(|it| Range { key: it.key.into(), addr: it.addr, len: it.len }).collect();
        match self.call(&DummyRequest::PutFrom { items: ranges, config: config.clone(), upsert }, None) {
            Ok(DummyResponse::Codes(c)) if c.len() == items.len() => {
                c.into_iter().map(|r| r.map_err(|code| StoreError::from_master(code, "PutFrom"))).collect()
            }
            Ok(other) => items.iter().map(|_| Err(unexpected(&other))).collect(),
            Err(e) => items.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    pub fn get(&self, key: &str) -> StoreResult<Vec<u8>> {
        self.local_buffer()?;
        let mut conn = self.conn.lock();
        let (addr, cap) = (conn.staging.addr(), conn.staging.len());
        let request = DummyRequest::GetInto { items: vec![Range { key: key.into(), addr, len: cap }] };
        match self.exchange(&mut conn, &request, None).and_then(first_size) {
            Ok(n) => {
                // The real client wrote `n` bytes at the start of our staging mapping.
                read_value(&conn.staging, addr, n)
            }
            Err(e) if e.code == ErrorCode::InvalidParams => {
                // Perhaps larger than the staging mapping: read it through one of its own.
                let size = match self.exchange(&mut conn, &DummyRequest::GetSize { key: key.into() }, None)? {
                    DummyResponse::Size(s) if s > cap => s,
                    _ => return Err(e),
                };
                let m = SharedMapping::create(size)?;
                expect_done(self.exchange(
                    &mut conn,
                    &DummyRequest::Share { addr: m.addr(), size: m.len() },
                    Some(m.fd()),
                )?)?;
                let request =
                    DummyRequest::GetInto { items: vec![Range { key: key.into(), addr: m.addr(), len: m.len() }] };
                let got = self.exchange(&mut conn, &request, None).and_then(first_size);
                let _ = self.exchange(&mut conn, &DummyRequest::Unshare { addr: m.addr() }, None);
                let n = got?;
                read_value(&m, m.addr(), n)
            }
            Err(e) => Err(e),
        }
    }

    pub fn get_batch(&self, keys: &[&str]) -> Vec<StoreResult<Vec<u8>>> {
        keys.iter().map(|k| self.get(k)).collect()
    }

    pub fn get_into(&self, key: &str, addr: u64, len: u64) -> StoreResult<u64> {
        self.batch_get_into(&[KeyBuffer { key, addr, len }]).pop().unwrap_or(Ok(0))
    }

    pub fn batch_get_into(&self, items: &[KeyBuffer<'_>]) -> Vec<StoreResult<u64>> {
        let ranges = items.iter().map(|it| Range { key: it.key.into(), addr: it.addr, len: it.len }).collect();
        match self.call(&DummyRequest::GetInto { items: ranges }, None) {
            Ok(DummyResponse::Sizes(s)) if s.len() == items.len() => {
                s.into_iter().map(|r| r.map_err(|code| StoreError::from_master(code, "GetInto"))).collect()
            }
            Ok(other) => items.iter().map(|_| Err(unexpected(&other))).collect(),
            Err(e) => items.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    pub fn get_into_ranges(&self, buffer: u64, key: &str, ranges: &[ByteRange]) -> StoreResult<Vec<StoreResult<u64>>> {
        let request = DummyRequest::GetRanges {
            buffer,
            key: key.into(),
            ranges: ranges.iter().map(|r| (r.dst, r.src, r.len)).collect(),
        };
        match self.call(&request, None)? {
            DummyResponse::Ranges(r) => {
                Ok(r.into_iter().map(|r| r.map_err(|code| StoreError::from_master(code, "GetRanges"))).collect())
            }
            other => Err(unexpected(&other)),
        }
    }

    pub fn batch_is_exist(&self, keys: &[&str]) -> Vec<StoreResult<bool>> {
        match self.call(&DummyRequest::Exists { keys: keys.iter().map(|k| k.to_string()).collect() }, None) {
            Ok(DummyResponse::Flags(f)) if f.len() == keys.len() => {
                f.into_iter().map(|r| r.map_err(|code| StoreError::from_master(code, "IsExist"))).collect()
            }
            Ok(other) => keys.iter().map(|_| Err(unexpected(&other))).collect(),
            Err(e) => keys.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    pub fn get_size(&self, key: &str) -> StoreResult<u64> {
        match self.call(&DummyRequest::GetSize { key: key.into() }, None)? {
            DummyResponse::Size(s) => Ok(s),
            other => Err(unexpected(&other)),
        }
    }

    pub fn remove(&self, key: &str, force: bool) -> StoreResult<()> {
        expect_done(self.call(&DummyRequest::Remove { key: key.into(), force }, None)?)
    }

    pub fn remove_by_regex(&self, pattern: &str, force: bool) -> StoreResult<i64> {
        count(self.call(&DummyRequest::RemoveByRegex { pattern: pattern.into(), force }, None)?)
    }

    pub fn remove_all(&self, force: bool) -> StoreResult<i64> {
        count(self.call(&DummyRequest::RemoveAll { force }, None)?)
    }

    /// Closes the connection: the real client unregisters and unmaps what this dummy shared.
    pub fn close(&self) -> StoreResult<()> {
        if !self.closed.swap(true, Ordering::AcqRel) {
            let _ = self.conn.lock().stream.shutdown(std::net::Shutdown::Both);
        }
        Ok(())
    }
}

/// `n` bytes at `addr` of `mapping`, which the real client just wrote.
fn read_value(mapping: &SharedMapping, addr: u64, n: u64) -> StoreResult<Vec<u8>> {
    let mut value = vec![0u8; n as usize];
    if !mapping.read_at(addr, &mut value) {
        return Err(StoreError::new(
            ErrorCode::InternalError,
            format!("the real client reported {n} bytes, more than the mapping"),
        ));
    }
    Ok(value)
}

fn rpc_error(e: &crate::proto::FrameError) -> StoreError {
    StoreError::new(ErrorCode::RpcFail, format!("the mooncake_client connection failed: {e}"))
}

pub(super) fn unexpected(response: &DummyResponse) -> StoreError {
    StoreError::new(ErrorCode::RpcFail, format!("unexpected answer from mooncake_client: {response:?}"))
}

fn expect_done(response: DummyResponse) -> StoreResult<()> {
    match response {
        DummyResponse::Done => Ok(()),
        other => Err(unexpected(&other)),
    }
}

fn first_code(response: DummyResponse) -> StoreResult<()> {
    match response {
        DummyResponse::Codes(mut c) if c.len() == 1 => {
            c.pop().unwrap_or(Ok(())).map_err(|code| StoreError::from_master(code, "PutFrom"))
        }
        other => Err(unexpected(&other)),
    }
}

fn first_size(response: DummyResponse) -> StoreResult<u64> {
    match response {
        DummyResponse::Sizes(mut s) if s.len() == 1 => {
            s.pop().unwrap_or(Ok(0)).map_err(|code| StoreError::from_master(code, "GetInto"))
        }
        other => Err(unexpected(&other)),
    }
}

fn count(response: DummyResponse) -> StoreResult<i64> {
    match response {
        DummyResponse::Count(n) => Ok(n),
        other => Err(unexpected(&other)),
    }
}

/// The request's name, for messages.
fn kind(request: &DummyRequest) -> &'static str {
    match request {
        DummyRequest::Hello { .. } => "Hello",
        DummyRequest::Share { .. } => "Share",
        DummyRequest::Unshare { .. } => "Unshare",
        DummyRequest::PutFrom { .. } => "PutFrom",
        DummyRequest::GetInto { .. } => "GetInto",
        DummyRequest::GetRanges { .. } => "GetRanges",
        DummyRequest::Exists { .. } => "Exists",
        DummyRequest::GetSize { .. } => "GetSize",
        DummyRequest::Remove { .. } => "Remove",
        DummyRequest::RemoveByRegex { .. } => "RemoveByRegex",
        DummyRequest::RemoveAll { .. } => "RemoveAll",
        DummyRequest::Health => "Health",
        DummyRequest::PutMulti { .. } => "PutMulti",
        DummyRequest::GetMulti { .. } => "GetMulti",
        DummyRequest::ReplicaDescs { .. } => "ReplicaDescs",
    }
}

// ---- multi-buffer puts and gets ----

/// The parts of `items` as the request carries them (the dummy's addresses).
fn multi_ranges(items: &[KeyParts<'_>]) -> Vec<MultiRange> {
    items
        .iter()
        .map(|it| MultiRange { key: it.key.into(), parts: it.parts.iter().map(|p| (p.addr, p.len)).collect() })
        .collect()
}

impl DummyClient {
    /// As the real client's, with parts in memory shared with it (`alloc_from_mem_pool`):
    /// the real client writes them straight from the shared mapping.
    pub fn batch_put_from_multi_buffers(
        &self,
        items: &[KeyParts<'_>],
        config: &ReplicaConfig,
        upsert: bool,
    ) -> Vec<StoreResult<()>> {
        let request = DummyRequest::PutMulti { items: multi_ranges(items), config: config.clone(), upsert };
        match self.call(&request, None) {
            Ok(DummyResponse::Codes(c)) if c.len() == items.len() => {
                c.into_iter().map(|r| r.map_err(|code| StoreError::from_master(code, "PutMulti"))).collect()
            }
            Ok(other) => items.iter().map(|_| Err(unexpected(&other))).collect(),
            Err(e) => items.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    /// As the real client's, into memory shared with it.
    pub fn batch_get_into_multi_buffers(&self, items: &[KeyParts<'_>]) -> Vec<StoreResult<u64>> {
        match self.call(&DummyRequest::GetMulti { items: multi_ranges(items) }, None) {
            Ok(DummyResponse::Sizes(s)) if s.len() == items.len() => {
                s.into_iter().map(|r| r.map_err(|code| StoreError::from_master(code, "GetMulti"))).collect()
            }
            Ok(other) => items.iter().map(|_| Err(unexpected(&other))).collect(),
            Err(e) => items.iter().map(|_| Err(e.clone())).collect(),
        }
    }
}
