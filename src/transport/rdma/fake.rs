//! The RDMA request path over fake devices, for the per-slice benchmark
//! (`benches/rdma_slice.rs`) and for tests that need no RDMA hardware.
//!
//! [`FakeRig`] opens `nics` fake devices through `Device::open` with the fake function table
//! ([`verbs::FAKE_VERBS`]), builds the transport on them, registers one local region and
//! describes a peer with as many devices and one published buffer (one rkey per device). It
//! then makes every (local device, peer device) endpoint and connects its queue pairs
//! (RESET → INIT → RTR → RTS on the fake) to made-up peer queue pairs, marking it connected
//! without a handshake. [`FakeRig::cycle`] submits requests through `Transport::submit` (what
//! the engine calls: `Core::dispatch`, then posting), then polls every fake CQ with the
//! completion worker's own step (`worker::poll_once` → `Core::complete`) until every slice has
//! reached the rig's sink, and times the two phases apart.
//!
//! The fake moves no bytes and rings no doorbell, and its completions are not cache misses:
//! the times are the transport's own CPU (with the fake's in-memory ring), not a NIC's.
//! Slices are cut before the clock starts (the engine's `cut_task`, measured by
//! `benches/hot_path.rs`), and the sink only counts.

pub mod verbs;

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::json;

use super::device::Device;
use super::endpoint::State;
use super::path::{Core, Ep, Nic};
use super::peer::RdmaPeer;
use super::settings::RdmaSettings;
use super::verbs::{gid_to_string, ibv_wc};
use super::worker::{POLL_BATCH, poll_once};
use super::{RdmaRoute, RdmaTransport};
use crate::metadata::SegmentDescriptor;
use crate::metadata::handshake::ClientLimits;
use crate::transport::{CompletionSink, Opcode, Route, Slice, Transport};
pub use verbs::{FakeNic, PostedWr};

/// Where the local region starts. The fake never touches memory, so this is an address
/// range, not an allocation.
pub const LOCAL_BASE: u64 = 0x100_0000_0000;
/// Where the peer's buffer starts (in the peer's address space).
pub const REMOTE_BASE: u64 = 0x200_0000_0000;
/// Bytes of the local region and of the peer's buffer: the most one cycle can move.
pub const SPAN: u64 = 1 << 30;
/// How long one cycle may wait for its last completion.
const CYCLE_LIMIT: Duration = Duration::from_secs(10);

const SERVER: &str = "fake-local";
const PEER: &str = "fake-peer";

static NEXT_RIG: AtomicU32 = AtomicU32::new(0);

/// The shape of a rig; [`FakeOptions::new`] gives the transport's defaults.
#[derive(Debug, Clone)]
pub struct FakeOptions {
    /// Local devices, and as many peer devices (rail-aligned pairs stripe together).
    pub nics: usize,
    /// `MC_SLICE_SIZE`.
    pub slice_size: u64,
    pub opcode: Opcode,
    /// `MC_NUM_QP_PER_EP`.
    pub qps_per_endpoint: usize,
    /// `MC_MAX_WR`: outstanding requests per queue pair (the fake refuses one more).
    pub max_wr: u32,
    /// `MC_MAX_CQE_PER_CTX`: the CQ size, hence the device's credit count.
    pub max_cqe: u32,
    /// Log every posted work request on its device (tests; costs an allocation each).
    pub record: bool,
}

impl FakeOptions {
    pub fn new(nics: usize, slice_size: u64) -> FakeOptions {
        FakeOptions {
            nics,
            slice_size,
            opcode: Opcode::Write,
            qps_per_endpoint: 2,
            max_wr: 256,
            max_cqe: 4096,
            record: false,
        }
    }

    fn settings(&self) -> RdmaSettings {
        RdmaSettings {
            port: 1,
            gid_index: None,
            mtu: 4096,
            qps_per_endpoint: self.qps_per_endpoint,
            max_wr: self.max_wr,
            max_cqe: self.max_cqe,
            slice_size: self.slice_size,
            retry_count: 9,
            max_mr_size: 1 << 40,
            rail_pause: Duration::from_secs(30),
            poll_spin: Duration::from_micros(50),
        }
    }
}

/// How long one cycle's phases took, for `slices` slices.
#[derive(Debug, Clone, Copy)]
pub struct Phases {
    /// `Transport::submit`: routing, endpoint lookup, queueing, posting what fits.
    pub post: Duration,
    /// Polling every CQ and handling each completion (reporting the slice, posting what
    /// was queued) until the last slice was reported.
    pub complete: Duration,
    pub slices: u64,
}

/// Counts slice reports.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    bytes: AtomicU64,
}

impl CompletionSink for Tally {
    fn slice_finished(&self, _task: usize, bytes: u64, ok: bool) {
        if ok {
            self.ok.fetch_add(1, Ordering::Relaxed);
            self.bytes.fetch_add(bytes, Ordering::Relaxed);
        } else {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Tally {
    fn reset(&self) {
        self.ok.store(0, Ordering::Relaxed);
        self.failed.store(0, Ordering::Relaxed);
        self.bytes.store(0, Ordering::Relaxed);
    }

    fn finished(&self) -> u64 {
        self.ok.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed)
    }
}

/// The rig's fake devices, listed while it lives.
struct Listed(Vec<Arc<FakeNic>>);

impl Drop for Listed {
    fn drop(&mut self) {
        for nic in &self.0 {
            verbs::remove(nic);
        }
    }
}

/// See the module documentation.
pub struct FakeRig {
    transport: RdmaTransport,
    route: Route,
    peer: Arc<RdmaPeer>,
    tally: Arc<Tally>,
    wcs: Vec<ibv_wc>,
    opts: FakeOptions,
    fakes: Listed,
}

impl FakeRig {
    /// Opens the devices, registers the region, describes the peer and connects every
    /// endpoint; the error names what failed.
    pub fn new(opts: &FakeOptions) -> Result<FakeRig, String> {
        if opts.nics == 0 || opts.slice_size == 0 {
            return Err("a fake rig needs at least one device and a non-zero slice size".into());
        }
        let id = NEXT_RIG.fetch_add(1, Ordering::Relaxed);
        let mut fakes = Listed(Vec::with_capacity(opts.nics));
        for i in 0..opts.nics {
            let nic = verbs::add(&format!("fake{id}_{i}"), i as u32)?;
            if opts.record {
                nic.record();
            }
            fakes.0.push(nic);
        }
        let settings = opts.settings();
        let mut nics = Vec::with_capacity(opts.nics);
        for (i, f) in fakes.0.iter().enumerate() {
            nics.push(Arc::new(Nic::new(Device::open(&verbs::FAKE_VERBS, f.name(), i, &settings)?)));
        }
        let runtime = crate::runtime::acquire().map_err(|e| format!("cannot start the runtime: {e}"))?;
        let limits = ClientLimits {
            connect_timeout: Duration::from_secs(1),
            reply_timeout: Duration::from_secs(1),
            max_frame: 1 << 20,
        };
        let core = Arc::new(Core::new(settings, SERVER.into(), nics, HashMap::new(), runtime, limits));
        let transport = RdmaTransport { core: core.clone(), threads: Mutex::new(Vec::new()) };
        transport.register(LOCAL_BASE, SPAN, "cpu:0", true)?;
        let peer = Arc::new(describe_peer(opts.nics)?);
        connect_all(&core, &peer, opts.qps_per_endpoint)?;
        // SAFETY: `ibv_wc` is plain data; zero is a valid value of every field.
        let wcs = (0..POLL_BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
        Ok(FakeRig {
            transport,
            route: Route::Rdma(RdmaRoute(peer.clone())),
            peer,
            tally: Arc::default(),
            wcs,
            opts: opts.clone(),
            fakes,
        })
    }

    /// Submits `requests` requests of `len` bytes each (request `r` at offset `r × len` of the
    /// region and of the peer's buffer), then completes them all. Fails when a slice failed,
    /// or was still in flight after 10 s.
    pub fn cycle(&mut self, requests: usize, len: u64) -> Result<Phases, String> {
        let slices = self.slices(requests, len)?;
        let total = slices.len() as u64;
        self.tally.reset();
        let core = self.transport.core.clone();
        let started = Instant::now();
        self.transport.submit(&self.route, slices).map_err(|e| e.to_string())?;
        let posted = Instant::now();
        while self.tally.finished() < total {
            let mut got = 0;
            for nic in &core.nics {
                got += poll_once(&core, nic, &mut self.wcs);
            }
            // Nothing to poll: completions wait on another thread (a handshake, a retry).
            if got == 0 {
                if posted.elapsed() > CYCLE_LIMIT {
                    return Err(format!(
                        "{} of {total} slices still unfinished after {CYCLE_LIMIT:?}",
                        total - self.tally.finished()
                    ));
                }
                std::thread::yield_now();
            }
        }
        let done = Instant::now();
        let failed = self.tally.failed.load(Ordering::Relaxed);
        if failed > 0 {
            return Err(format!("{failed} of {total} slices failed"));
        }
        Ok(Phases { post: posted - started, complete: done - posted, slices: total })
    }

    /// The slices of `requests` × `len`, cut as the engine cuts them.
    fn slices(&self, requests: usize, len: u64) -> Result<Vec<Slice>, String> {
        let size = self.opts.slice_size;
        if len == 0 || (requests as u64).checked_mul(len).is_none_or(|n| n > SPAN) {
            return Err(format!("{requests} × {len} bytes does not fit the rig's {SPAN} bytes"));
        }
        let sink: Arc<dyn CompletionSink> = self.tally.clone();
        let mut out = Vec::with_capacity(requests * len.div_ceil(size) as usize);
        for r in 0..requests {
            let base = r as u64 * len;
            let mut off = 0;
            while off < len {
                let n = size.min(len - off);
                out.push(Slice {
                    opcode: self.opts.opcode,
                    local: (LOCAL_BASE + base + off) as usize,
                    verified: true,
                    remote: REMOTE_BASE + base + off,
                    len: n,
                    sink: sink.clone(),
                    task: r,
                });
                off += n;
            }
        }
        Ok(out)
    }

    /// Work requests posted on each device so far.
    pub fn posted_per_nic(&self) -> Vec<u64> {
        self.fakes.0.iter().map(|f| f.posted.load(Ordering::Relaxed)).collect()
    }

    /// Completions that found their CQ full (0 unless the credit count is broken).
    pub fn overruns(&self) -> u64 {
        self.fakes.0.iter().map(|f| f.overruns.load(Ordering::Relaxed)).sum()
    }

    /// Each device's logged work requests since the last call (with `record`).
    pub fn take_logs(&self) -> Vec<Vec<PostedWr>> {
        self.fakes.0.iter().map(|f| f.take_log()).collect()
    }

    /// Bytes reported moved in the last cycle.
    pub fn bytes_reported(&self) -> u64 {
        self.tally.bytes.load(Ordering::Relaxed)
    }

    /// The lkey of the local region on device `nic`.
    pub fn local_lkey(&self, nic: usize) -> Option<u32> {
        let region = self.transport.core.memory.find(LOCAL_BASE, 1)?;
        region.chunks.first()?.mrs.get(nic).map(|m| m.lkey)
    }

    /// The rkey of the peer's buffer on its device `nic`.
    pub fn peer_rkey(&self, nic: usize) -> Option<u32> {
        self.peer.buffers.first()?.rkeys.get(nic).copied()
    }

    #[cfg(test)]
    fn core(&self) -> &Arc<Core> {
        &self.transport.core
    }
}

impl Drop for FakeRig {
    fn drop(&mut self) {
        // Endpoints closed and forgotten, regions dropped; then whatever is still posted is
        // completed (or failed), so that every queue pair, MR and device is released.
        self.transport.shutdown();
        let core = self.transport.core.clone();
        for nic in &core.nics {
            while poll_once(&core, nic, &mut self.wcs) > 0 {}
            core.abandon_posted(nic);
        }
    }
}

/// A peer with `n` devices and one buffer of [`SPAN`] bytes at [`REMOTE_BASE`], whose
/// handshake port refuses connections (a new endpoint's handshake fails at once).
fn describe_peer(n: usize) -> Result<RdmaPeer, String> {
    let devices: Vec<_> = (0..n)
        .map(|i| {
            let mut gid = [0u8; 16];
            gid[10] = 0xff;
            gid[11] = 0xff;
            gid[12..].copy_from_slice(&[192, 0, 2, i as u8 + 1]);
            json!({"name": format!("peer{i}"), "lid": i + 1, "gid": gid_to_string(&gid)})
        })
        .collect();
    let keys: Vec<u32> = (0..n as u32).map(|i| 0x5000_0000 + i).collect();
    let d = SegmentDescriptor::from_json(&json!({
        "name": PEER, "protocol": "rdma", "tcp_data_port": 0, "devices": devices,
        "buffers": [{"name": "cpu:0", "addr": REMOTE_BASE, "length": SPAN, "rkey": keys, "lkey": keys}],
    }))
    .map_err(|e| format!("fake peer descriptor: {e}"))?;
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("cannot pick a closed port: {e}"))?
        .port();
    RdmaPeer::from_descriptor(PEER, ("127.0.0.1".into(), port), &d)
}

/// Makes every (local device, peer device) endpoint and connects it to made-up peer queue
/// pairs, as a handshake would have.
fn connect_all(core: &Arc<Core>, peer: &RdmaPeer, qps: usize) -> Result<(), String> {
    let mut next_peer_qp = 0x00f0_0000u32;
    for nic in &core.nics {
        let device = &nic.device;
        for (ri, pd) in peer.devices.iter().enumerate() {
            let local = format!("{SERVER}@{}", device.name);
            let ep = Arc::new(Ep::create(device, local, peer.nic_path(ri), qps, device.max_qp_wr)?);
            let theirs: Vec<u32> = (0..qps as u32).map(|q| next_peer_qp + q).collect();
            next_peer_qp += qps as u32;
            ep.connect(&pd.gid, pd.lid, &theirs, 4096)?;
            ep.with_state(|state, _| *state = State::Connected(theirs));
            core.endpoints.lock().insert((device.index, peer.nic_path(ri)), ep);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: u64 = 1 << 10;

    /// Which slice of a cycle of `requests` × `len` at `size` a request at `remote_addr` is:
    /// (its position in the submission, its length).
    fn slice_at(remote_addr: u64, requests: usize, len: u64, size: u64) -> Option<(usize, u64)> {
        let off = remote_addr.checked_sub(REMOTE_BASE)?;
        let (r, within) = (off / len, off % len);
        if r >= requests as u64 || within % size != 0 {
            return None;
        }
        let per = len.div_ceil(size);
        Some(((r * per + within / size) as usize, size.min(len - within)))
    }

    #[test]
    fn every_slice_completes_on_its_nic_pair_with_its_keys() {
        let mut opts = FakeOptions::new(4, 64 * KIB);
        opts.record = true;
        let mut rig = FakeRig::new(&opts).unwrap();
        // 16 full slices and a short one per request: 51 in all.
        let (requests, len) = (3, (1 << 20) + 4 * KIB);
        for round in 0..2 {
            let phases = rig.cycle(requests, len).unwrap();
            assert_eq!(phases.slices, 51);
            assert_eq!(rig.bytes_reported(), requests as u64 * len);
            let mut seen = [false; 51];
            for (nic, log) in rig.take_logs().iter().enumerate() {
                for wr in log {
                    let (j, n) = slice_at(wr.remote_addr, requests, len, opts.slice_size).expect("a slice's address");
                    assert!(!std::mem::replace(&mut seen[j], true), "slice {j} posted once");
                    assert_eq!(j % 4, nic, "slice {j} on local NIC {nic}");
                    // Rail-aligned: slice k uses peer device k mod 4 as well.
                    assert_eq!(Some(wr.rkey), rig.peer_rkey(nic));
                    let lkey = rig.local_lkey(nic).unwrap();
                    assert_eq!(wr.sges, [(LOCAL_BASE + wr.remote_addr - REMOTE_BASE, n as u32, lkey)]);
                    assert!(!wr.read);
                }
            }
            assert!(seen.iter().all(|&s| s), "every slice posted");
            let per_round: Vec<u64> = [13, 13, 13, 12].iter().map(|n| n * (round + 1)).collect();
            assert_eq!(rig.posted_per_nic(), per_round);
        }
        assert_eq!(rig.overruns(), 0);
    }

    #[test]
    fn work_beyond_the_queue_pairs_and_the_cq_is_posted_as_completions_free_room() {
        // Queue pairs of 4 (the fake refuses a fifth request), then a CQ of 3 shared by two
        // queue pairs of 256: both limits hold while 1000 slices go through.
        for (qps, max_wr, max_cqe) in [(1, 4, 4096), (2, 256, 3)] {
            let mut opts = FakeOptions::new(2, 4 * KIB);
            opts.qps_per_endpoint = qps;
            opts.max_wr = max_wr;
            opts.max_cqe = max_cqe;
            let mut rig = FakeRig::new(&opts).unwrap();
            let phases = rig.cycle(1000, 4 * KIB).unwrap();
            assert_eq!(phases.slices, 1000);
            assert_eq!(rig.posted_per_nic(), [500, 500], "qps {qps}, max_wr {max_wr}, cqe {max_cqe}");
            assert_eq!(rig.overruns(), 0, "the CQ never holds more than its size");
        }
    }

    #[test]
    fn reads_skip_a_paused_peer_nic() {
        let mut opts = FakeOptions::new(4, 64 * KIB);
        opts.record = true;
        opts.opcode = Opcode::Read;
        let mut rig = FakeRig::new(&opts).unwrap();
        rig.core().paused.pause(&rig.peer.nic_path(1));
        rig.cycle(1, 1 << 20).unwrap();
        assert_eq!(rig.posted_per_nic(), [4, 4, 4, 4], "local striping is unchanged");
        let healthy = [0, 2, 3];
        for (nic, log) in rig.take_logs().iter().enumerate() {
            for wr in log {
                let (j, _) = slice_at(wr.remote_addr, 1, 1 << 20, opts.slice_size).unwrap();
                assert_eq!(j % 4, nic);
                assert_eq!(Some(wr.rkey), rig.peer_rkey(healthy[j % 3]), "slice {j}");
                assert!(wr.read);
            }
        }
    }

    #[test]
    fn a_failed_endpoint_is_replaced_and_its_slices_retried_on_the_next_pair() {
        let mut rig = FakeRig::new(&FakeOptions::new(2, 64 * KIB)).unwrap();
        rig.cycle(1, 128 * KIB).unwrap();
        assert_eq!(rig.posted_per_nic(), [1, 1]);
        let key = (0, rig.peer.nic_path(0));
        let ep = rig.core().endpoints.lock().get(&key).cloned().unwrap();
        rig.core().fail_endpoint(&ep, "failed by the test");
        // Slices 0 and 2 find a new endpoint towards peer NIC 0, whose handshake is refused;
        // they are retried as attempt 1, on the pair of NIC 1.
        rig.cycle(1, 256 * KIB).unwrap();
        assert_eq!(rig.posted_per_nic(), [1, 5]);
        let replaced = rig.core().endpoints.lock().get(&key).cloned();
        assert!(replaced.is_none_or(|e| !Arc::ptr_eq(&e, &ep)), "the failed endpoint is not used again");
    }
}
