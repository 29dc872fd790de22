//! One RDMA device: its context, protection domain, completion queue and channel, the port
//! and GID this transport uses, and the memory regions and queue pairs made on it.

use std::ffi::CStr;
use std::ptr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::settings::{RdmaSettings, mtu_from_enum};
use super::verbs::{self, Verbs, ibv_async_event, ibv_comp_channel, ibv_context, ibv_cq, ibv_gid, ibv_pd, ibv_wc};

/// Per-NIC counters for `getNicLoadStats`.
#[derive(Default)]
pub struct NicStats {
    /// Bytes posted and not yet completed.
    pub inflight_bytes: AtomicU64,
    /// Bytes completed successfully since the device was opened.
    pub completed_bytes: AtomicU64,
    /// Exponentially weighted bandwidth in bytes per second, as f64 bits.
    pub ewma_bps: AtomicU64,
    /// When `ewma_bps` was last updated (ns since `opened`), and the bytes counted then.
    pub sampled_at_ns: AtomicU64,
    pub sampled_bytes: AtomicU64,
}

/// See the module documentation. Shared (`Arc`) by everything made on it; the verbs objects
/// are released when the last user is gone.
pub struct Device {
    /// Position in the transport's device list (the index of this device's keys in a
    /// published buffer).
    pub index: usize,
    pub name: String,
    pub(super) verbs: &'static Verbs,
    ctx: *mut ibv_context,
    pub(super) pd: *mut ibv_pd,
    channel: *mut ibv_comp_channel,
    pub(super) cq: *mut ibv_cq,
    pub port: u8,
    pub lid: u16,
    pub gid: [u8; 16],
    pub gid_index: u32,
    /// The port's active MTU, in bytes.
    pub active_mtu: u32,
    pub max_mr_size: u64,
    pub max_qp_wr: u32,
    /// Largest outstanding RDMA READs a queue pair may have as initiator (and as target).
    pub max_rd_atomic: u8,
    /// The NUMA node of the device's PCI function (`None` for soft-RoCE and unknown).
    pub numa_node: Option<u32>,
    active: AtomicBool,
    pub stats: NicStats,
    opened: std::time::Instant,
    /// Signaled work requests outstanding on this device's one CQ, and its size: posting stops
    /// at the size, so the CQ can never overrun (however many endpoints share it).
    pub outstanding: std::sync::atomic::AtomicU32,
    pub cq_depth: u32,
}

// SAFETY: the raw pointers are verbs objects owned by this struct; libibverbs allows them to
// be used from any thread (the calls made on them are thread-safe per the verbs API).
unsafe impl Send for Device {}
// SAFETY: as above.
unsafe impl Sync for Device {}

impl Device {
    /// Opens device `name` and prepares everything transfers need on it. The error names the
    /// device and the verbs call that failed.
    pub fn open(verbs: &'static Verbs, name: &str, index: usize, settings: &RdmaSettings) -> Result<Device, String> {
        let mut n = 0;
        // SAFETY: valid out pointer; the list is freed below on every path.
        let list = unsafe { (verbs.get_device_list)(&mut n) };
        if list.is_null() {
            return Err(verbs::os_error("ibv_get_device_list", name));
        }
        let mut ctx = ptr::null_mut();
        for i in 0..n.max(0) as usize {
            // SAFETY: `list` holds `n` device pointers with static names.
            let dev = unsafe { *list.add(i) };
            // SAFETY: as above.
            let dev_name = unsafe { CStr::from_ptr((verbs.get_device_name)(dev)) };
            if dev_name.to_bytes() == name.as_bytes() {
                // SAFETY: `dev` is a listed device; opening it before the list is freed is
                // the documented order.
                ctx = unsafe { (verbs.open_device)(dev) };
                if ctx.is_null() {
                    // SAFETY: frees the list once.
                    unsafe { (verbs.free_device_list)(list) };
                    return Err(verbs::os_error("ibv_open_device", name));
                }
                break;
            }
        }
        // SAFETY: frees the list once; an opened context stays valid.
        unsafe { (verbs.free_device_list)(list) };
        if ctx.is_null() {
            return Err(format!("RDMA device {name} is not listed by libibverbs"));
        }
        let mut dev = Device {
            index,
            name: name.to_string(),
            verbs,
            ctx,
            pd: ptr::null_mut(),
            channel: ptr::null_mut(),
            cq: ptr::null_mut(),
            port: settings.port,
            lid: 0,
            gid: [0; 16],
            gid_index: 0,
            active_mtu: 1024,
            max_mr_size: settings.max_mr_size,
            max_qp_wr: settings.max_wr,
            max_rd_atomic: 16,
            numa_node: read_numa_node(name),
            active: AtomicBool::new(false),
            stats: NicStats::default(),
            opened: std::time::Instant::now(),
            outstanding: Default::default(),
            cq_depth: 0,
        };
        // From here on `dev`'s Drop releases whatever was made.
        dev.prepare(settings)?;
        Ok(dev)
    }

    fn prepare(&mut self, settings: &RdmaSettings) -> Result<(), String> {
        let v = self.verbs;
        // SAFETY: zeroed plain-data out structs for the query calls below.
        let mut dattr: verbs::ibv_device_attr = unsafe { std::mem::zeroed() };
        // SAFETY: live context, valid out pointer.
        if unsafe { (v.query_device)(self.ctx, &mut dattr) } != 0 {
            return Err(verbs::os_error("ibv_query_device", &self.name));
        }
        self.max_mr_size = self.max_mr_size.min(dattr.max_mr_size.max(4096));
        self.max_qp_wr = self.max_qp_wr.min(dattr.max_qp_wr.max(1) as u32);
        self.max_rd_atomic = dattr.max_qp_rd_atom.clamp(1, 16) as u8;
        let port = self.query_port()?;
        self.lid = port.lid;
        self.active_mtu = mtu_from_enum(port.active_mtu);
        self.active.store(port.state == verbs::ibv_port_state::IBV_PORT_ACTIVE, Ordering::Release);
        let (index, gid) = self.select_gid(settings.gid_index, port.gid_tbl_len.max(0) as u32, port.link_layer)?;
        self.gid_index = index;
        self.gid = gid;
        // SAFETY: live context.
        self.pd = unsafe { (v.alloc_pd)(self.ctx) };
        if self.pd.is_null() {
            return Err(verbs::os_error("ibv_alloc_pd", &self.name));
        }
        // SAFETY: live context.
        self.channel = unsafe { (v.create_comp_channel)(self.ctx) };
        if self.channel.is_null() {
            return Err(verbs::os_error("ibv_create_comp_channel", &self.name));
        }
        let cqe = settings.max_cqe.min(dattr.max_cqe.max(64) as u32) as i32;
        self.cq_depth = cqe as u32;
        // SAFETY: live context and channel; no cq_context.
        self.cq = unsafe { (v.create_cq)(self.ctx, cqe, ptr::null_mut(), self.channel, 0) };
        if self.cq.is_null() {
            return Err(verbs::os_error("ibv_create_cq", &self.name));
        }
        // The worker and the event thread wait with poll(2) and a timeout, so that they can
        // stop: both descriptors must not block.
        // SAFETY: reading fds of live objects.
        let (cfd, afd) = unsafe { ((*self.channel).fd, (*self.ctx).async_fd) };
        set_nonblocking(cfd).map_err(|e| format!("completion channel of {}: {e}", self.name))?;
        set_nonblocking(afd).map_err(|e| format!("async event fd of {}: {e}", self.name))?;
        self.arm();
        tracing::info!(
            device = %self.name, port = self.port, lid = self.lid, gid_index = self.gid_index,
            gid = %verbs::gid_to_string(&self.gid), mtu = self.active_mtu, active = self.is_active(),
            numa = ?self.numa_node, "RDMA device opened"
        );
        Ok(())
    }

    fn query_port(&self) -> Result<verbs::ibv_port_attr, String> {
        // SAFETY: zeroed plain-data out struct.
        let mut attr: verbs::ibv_port_attr = unsafe { std::mem::zeroed() };
        // SAFETY: live context, valid out pointer of the full current struct size.
        if unsafe { (self.verbs.query_port)(self.ctx, self.port, &mut attr) } != 0 {
            return Err(verbs::os_error(&format!("ibv_query_port(port {})", self.port), &self.name));
        }
        Ok(attr)
    }

    fn query_gid(&self, index: u32) -> Option<[u8; 16]> {
        // SAFETY: plain-data out union.
        let mut gid: ibv_gid = unsafe { std::mem::zeroed() };
        // SAFETY: live context, valid out pointer.
        let rc = unsafe { (self.verbs.query_gid)(self.ctx, self.port, index as i32, &mut gid) };
        // SAFETY: every bit pattern is a valid `raw`.
        (rc == 0).then_some(unsafe { gid.raw })
    }

    /// `MC_GID_INDEX` when given; else, on InfiniBand index 0, on RoCE the first RoCE v2
    /// entry with an IPv4-mapped address, then any RoCE v2 entry, then any non-zero one.
    fn select_gid(&self, given: Option<u32>, table_len: u32, link_layer: u8) -> Result<(u32, [u8; 16]), String> {
        if let Some(i) = given {
            return self
                .query_gid(i)
                .filter(|g| g.iter().any(|&b| b != 0))
                .map(|g| (i, g))
                .ok_or_else(|| format!("{}: MC_GID_INDEX={i} names no GID on port {}", self.name, self.port));
        }
        const IB: u8 = 1;
        if link_layer == IB {
            return self.query_gid(0).map(|g| (0, g)).ok_or_else(|| format!("{}: no GID at index 0", self.name));
        }
        let mut best: Option<(u8, u32, [u8; 16])> = None;
        for i in 0..table_len.min(256) {
            let Some(g) = self.query_gid(i) else { continue };
            if g.iter().all(|&b| b == 0) {
                continue;
            }
            let v2 = gid_type(&self.name, self.port, i).is_some_and(|t| t.contains("v2"));
            let mapped = g[..10].iter().all(|&b| b == 0) && g[10] == 0xff && g[11] == 0xff;
            let rank = match (v2, mapped) {
                (true, true) => 0,
                (true, false) => 1,
                _ => 2,
            };
            if best.is_none_or(|(r, _, _)| rank < r) {
                best = Some((rank, i, g));
            }
        }
        best.map(|(_, i, g)| (i, g)).ok_or_else(|| format!("{}: port {} has no usable GID", self.name, self.port))
    }

    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    pub(super) fn set_active(&self, active: bool) {
        if self.active.swap(active, Ordering::AcqRel) != active {
            if active {
                tracing::info!(device = %self.name, "RDMA device back in rotation");
            } else {
                tracing::warn!(device = %self.name, "RDMA device taken out of rotation");
            }
        }
    }

    /// Re-reads the port state (after a port event).
    pub(super) fn refresh_port(&self) {
        match self.query_port() {
            Ok(p) => self.set_active(p.state == verbs::ibv_port_state::IBV_PORT_ACTIVE),
            Err(e) => {
                tracing::warn!("{e}");
                self.set_active(false);
            }
        }
    }

    /// Takes one CQ credit; false when the CQ could fill up.
    pub fn take_credit(&self) -> bool {
        increment_below(&self.outstanding, self.cq_depth)
    }

    pub fn return_credit(&self) {
        self.outstanding.fetch_sub(1, Ordering::AcqRel);
    }

    /// Polls up to `wcs.len()` completions.
    pub fn poll(&self, wcs: &mut [ibv_wc]) -> Result<usize, String> {
        // SAFETY: live CQ; `wcs` has room for the number asked.
        let n = unsafe { verbs::poll_cq(self.cq, wcs.len() as i32, wcs.as_mut_ptr()) };
        if n < 0 {
            return Err(format!("ibv_poll_cq on {} failed ({n})", self.name));
        }
        Ok(n as usize)
    }

    /// Asks for an event on the channel at the next completion.
    pub fn arm(&self) {
        // SAFETY: live CQ.
        let rc = unsafe { verbs::req_notify_cq(self.cq, 0) };
        if rc != 0 {
            tracing::warn!(device = %self.name, "ibv_req_notify_cq failed ({rc})");
        }
    }

    /// Waits up to `timeout_ms` for a completion event and consumes it; true when one came.
    pub fn wait_completion_event(&self, timeout_ms: i32) -> bool {
        // SAFETY: reading the fd of the live channel.
        let fd = unsafe { (*self.channel).fd };
        if !wait_readable(fd, timeout_ms) {
            return false;
        }
        let mut cq = ptr::null_mut();
        let mut cq_ctx = ptr::null_mut();
        // SAFETY: live channel, valid out pointers; the fd is non-blocking, so this returns
        // -1 when another reader took the event.
        if unsafe { (self.verbs.get_cq_event)(self.channel, &mut cq, &mut cq_ctx) } != 0 {
            return false;
        }
        // SAFETY: acknowledges the one event just received on `cq` (ours).
        unsafe { (self.verbs.ack_cq_events)(cq, 1) };
        true
    }

    /// Waits up to `timeout_ms` for an asynchronous event; returns its type and port (for
    /// port events) after acknowledging it.
    pub fn next_async_event(&self, timeout_ms: i32) -> Option<(verbs::ibv_event_type::Type, i32)> {
        // SAFETY: reading the async fd of the live context.
        let fd = unsafe { (*self.ctx).async_fd };
        if !wait_readable(fd, timeout_ms) {
            return None;
        }
        // SAFETY: plain-data out struct.
        let mut ev: ibv_async_event = unsafe { std::mem::zeroed() };
        // SAFETY: live context, valid out pointer, non-blocking fd.
        if unsafe { (self.verbs.get_async_event)(self.ctx, &mut ev) } != 0 {
            return None;
        }
        // SAFETY: for port events the union holds the port number; for others it is read
        // only as a number for the log.
        let port = unsafe { ev.element.port_num };
        let kind = ev.event_type;
        // SAFETY: acknowledges the event just received, once.
        unsafe { (self.verbs.ack_async_event)(&mut ev) };
        Some((kind, port))
    }

    /// Counts `bytes` moved at `now` into the bandwidth average (at most one sample per ms).
    pub(super) fn account_completed(&self, bytes: u64) {
        let total = self.stats.completed_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        let now = self.opened.elapsed().as_nanos() as u64;
        let last = self.stats.sampled_at_ns.load(Ordering::Relaxed);
        if now.saturating_sub(last) < 1_000_000
            || self.stats.sampled_at_ns.compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed).is_err()
        {
            return;
        }
        let prev_bytes = self.stats.sampled_bytes.swap(total, Ordering::AcqRel);
        let rate = (total - prev_bytes) as f64 / ((now - last) as f64 / 1e9);
        let old = f64::from_bits(self.stats.ewma_bps.load(Ordering::Relaxed));
        let next = if old == 0.0 { rate } else { old * 0.8 + rate * 0.2 };
        self.stats.ewma_bps.store(next.to_bits(), Ordering::Relaxed);
    }

    /// The bandwidth average in bits per second, decayed to 0 when idle for a second.
    pub fn ewma_bits_per_second(&self) -> f64 {
        let now = self.opened.elapsed().as_nanos() as u64;
        if now.saturating_sub(self.stats.sampled_at_ns.load(Ordering::Relaxed)) > 1_000_000_000 {
            return 0.0;
        }
        f64::from_bits(self.stats.ewma_bps.load(Ordering::Relaxed)) * 8.0
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        let v = self.verbs;
        // SAFETY: each object was created by this device and is released once, in the reverse
        // order of creation; every QP and MR on it is gone (they hold an `Arc<Device>`).
        unsafe {
            if !self.cq.is_null() {
                (v.destroy_cq)(self.cq);
            }
            if !self.channel.is_null() {
                (v.destroy_comp_channel)(self.channel);
            }
            if !self.pd.is_null() {
                (v.dealloc_pd)(self.pd);
            }
            (v.close_device)(self.ctx);
        }
        tracing::debug!(device = %self.name, "RDMA device closed");
    }
}

/// A memory region registered on one device; deregistered on drop.
pub struct MemoryRegion {
    mr: *mut verbs::ibv_mr,
    pub lkey: u32,
    pub rkey: u32,
    device: Arc<Device>,
}

// SAFETY: an MR handle may be used and deregistered from any thread.
unsafe impl Send for MemoryRegion {}
// SAFETY: as above; only the keys are read.
unsafe impl Sync for MemoryRegion {}

impl MemoryRegion {
    /// Registers `[addr, addr + len)`; peers may read and write it only when `remote`.
    pub fn register(device: &Arc<Device>, addr: u64, len: u64, remote: bool) -> Result<MemoryRegion, String> {
        use verbs::ibv_access_flags as A;
        let mut access = A::IBV_ACCESS_LOCAL_WRITE.0;
        if remote {
            access |= A::IBV_ACCESS_REMOTE_WRITE.0 | A::IBV_ACCESS_REMOTE_READ.0;
        }
        // SAFETY: the caller registered this range with the engine, so it is mapped memory of
        // this process for as long as the registration lasts; the MR is released before the
        // registration ends (see `memory.rs`).
        let mr = unsafe { (device.verbs.reg_mr)(device.pd, addr as *mut _, len as usize, access as i32) };
        if mr.is_null() {
            return Err(format!("ibv_reg_mr({addr:#x}+{len}) on {}: {}", device.name, std::io::Error::last_os_error()));
        }
        // SAFETY: a live MR returned just now.
        let (lkey, rkey) = unsafe { ((*mr).lkey, (*mr).rkey) };
        Ok(MemoryRegion { mr, lkey, rkey, device: device.clone() })
    }
}

impl Drop for MemoryRegion {
    fn drop(&mut self) {
        // SAFETY: releases the MR registered by `register`, once.
        let rc = unsafe { (self.device.verbs.dereg_mr)(self.mr) };
        if rc != 0 {
            tracing::warn!(device = %self.device.name, "ibv_dereg_mr failed: {}", std::io::Error::from_raw_os_error(rc));
        }
    }
}

/// Adds one to `counter` unless that would reach past `max`; false when it is full.
pub(super) fn increment_below(counter: &std::sync::atomic::AtomicU32, max: u32) -> bool {
    counter.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |v| (v < max).then_some(v + 1)).is_ok()
}

fn read_numa_node(name: &str) -> Option<u32> {
    let text = std::fs::read_to_string(format!("/sys/class/infiniband/{name}/device/numa_node")).ok()?;
    text.trim().parse::<i64>().ok().filter(|n| *n >= 0).map(|n| n as u32)
}

fn gid_type(name: &str, port: u8, index: u32) -> Option<String> {
    std::fs::read_to_string(format!("/sys/class/infiniband/{name}/ports/{port}/gid_attrs/types/{index}"))
        .ok()
        .map(|s| s.trim().to_string())
}

fn set_nonblocking(fd: i32) -> std::io::Result<()> {
    // SAFETY: fcntl on a descriptor this process owns.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn wait_readable(fd: i32, timeout_ms: i32) -> bool {
    let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, timeout_ms) > 0 }
}
