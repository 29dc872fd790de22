//! An endpoint: the RC queue pairs from one local device to one peer NIC
//! (`MC_NUM_QP_PER_EP` of them, as in Mooncake, whose count both sides must agree on), their
//! connection state, and the work waiting for them.
//!
//! Work requests are posted with bounded depth: at most `max_wr` outstanding per queue pair;
//! what does not fit waits in `pending` and is posted as completions free room. A queue pair
//! that fails (a completion error, a port going down) takes the whole endpoint down: its queue
//! pairs are moved to the error state, so every outstanding request completes (flushed) and is
//! retried elsewhere, and the endpoint is dropped once the last one has.

use std::collections::VecDeque;
use std::ptr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;

use super::device::Device;
use super::settings::mtu_enum;
use super::verbs::{self, ibv_qp, ibv_qp_attr, ibv_qp_attr_mask, ibv_qp_init_attr, ibv_qp_state};

/// Mooncake's queue pair parameters (`rdma_endpoint.cpp`): hop limit, ACK timeout
/// (4.096 µs · 2^14 ≈ 67 ms), RNR retries (7 = forever, per the IB spec).
const HOP_LIMIT: u8 = 16;
const ACK_TIMEOUT: u8 = 14;
/// Transport retries: 6, where Mooncake sets 7. Soft-RoCE reads 7 as "retry forever" (its
/// completer never counts 7 down), so a request to a dead peer would never end there; with
/// 6 it fails after 7 tries (≈ 0.5 s) on every device.
const RETRY_COUNT: u8 = 6;
const RNR_RETRY: u8 = 7;
const MIN_RNR_TIMER: u8 = 12;
/// Scatter-gather entries per work request: a slice whose local side spans chunks of a region
/// registered in pieces needs one per chunk.
pub const MAX_SGE: u32 = 4;

/// One queue pair and its count of outstanding work requests.
pub struct QueuePair {
    raw: *mut ibv_qp,
    pub num: u32,
    pub outstanding: AtomicU32,
}

/// Where the endpoint stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Queue pairs made; the handshake runs (or has not started).
    Connecting,
    /// Ready; connected to these peer queue pair numbers.
    Connected(Vec<u32>),
    /// Broken: no new work; outstanding work is being flushed.
    Failed,
}

/// See the module documentation.
pub struct Endpoint<W> {
    pub device: Arc<Device>,
    pub local_nic_path: String,
    pub peer_nic_path: String,
    qps: Vec<QueuePair>,
    max_wr: u32,
    state: Mutex<(State, VecDeque<W>)>,
    next_qp: AtomicUsize,
    /// For `showLinks`: work requests that completed, failed, and bytes moved.
    pub completed: AtomicU64,
    pub failed: AtomicU64,
    pub bytes: AtomicU64,
}

// SAFETY: queue pairs may be used from any thread (posting is serialised by the provider per
// queue pair; state changes are serialised by `state`).
unsafe impl<W: Send> Send for Endpoint<W> {}
// SAFETY: as above.
unsafe impl<W: Send> Sync for Endpoint<W> {}

impl<W> Endpoint<W> {
    /// Makes the queue pairs (state RESET) on `device`'s protection domain and CQ.
    pub fn create(
        device: &Arc<Device>,
        local_nic_path: String,
        peer_nic_path: String,
        count: usize,
        max_wr: u32,
    ) -> Result<Endpoint<W>, String> {
        let mut qps = Vec::with_capacity(count);
        let mut ep = Endpoint {
            device: device.clone(),
            local_nic_path,
            peer_nic_path,
            qps: Vec::new(),
            max_wr,
            state: Mutex::new((State::Connecting, VecDeque::new())),
            next_qp: AtomicUsize::new(0),
            completed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        };
        for _ in 0..count {
            // SAFETY: plain-data struct, zero is a valid start.
            let mut attr: ibv_qp_init_attr = unsafe { std::mem::zeroed() };
            attr.send_cq = device.cq;
            attr.recv_cq = device.cq;
            attr.qp_type = verbs::ibv_qp_type::IBV_QPT_RC;
            attr.sq_sig_all = 0;
            attr.cap.max_send_wr = max_wr;
            attr.cap.max_recv_wr = 1;
            attr.cap.max_send_sge = MAX_SGE;
            attr.cap.max_recv_sge = 1;
            // SAFETY: live PD and CQ of `device`; `attr` is fully initialised.
            let raw = unsafe { (device.verbs.create_qp)(device.pd, &mut attr) };
            if raw.is_null() {
                // `ep` (with the queue pairs made so far) is dropped, destroying them.
                ep.qps = qps;
                return Err(verbs::os_error(&format!("ibv_create_qp for {}", ep.peer_nic_path), &device.name));
            }
            // SAFETY: a live QP returned just now.
            let num = unsafe { (*raw).qp_num };
            qps.push(QueuePair { raw, num, outstanding: AtomicU32::new(0) });
        }
        ep.qps = qps;
        Ok(ep)
    }

    pub fn qp_numbers(&self) -> Vec<u32> {
        self.qps.iter().map(|q| q.num).collect()
    }

    pub fn state(&self) -> State {
        self.state.lock().0.clone()
    }

    /// Runs `f` on the state and the pending queue, under the endpoint's lock.
    pub fn with_state<R>(&self, f: impl FnOnce(&mut State, &mut VecDeque<W>) -> R) -> R {
        let mut g = self.state.lock();
        let (s, q) = &mut *g;
        f(s, q)
    }

    /// Moves every queue pair RESET → INIT → RTR → RTS towards `peer_qps` at `peer_gid`
    /// (Mooncake's `doSetupConnection`). `mtu` is the path MTU in bytes. The error names the
    /// step, the device, the peer and the OS error.
    pub fn connect(&self, peer_gid: &[u8; 16], peer_lid: u16, peer_qps: &[u32], mtu: u32) -> Result<(), String> {
        if peer_qps.len() != self.qps.len() {
            return Err(format!(
                "QP count mismatch: {} has {} queue pairs per endpoint, {} sent {} (check MC_NUM_QP_PER_EP)",
                self.local_nic_path,
                self.qps.len(),
                self.peer_nic_path,
                peer_qps.len()
            ));
        }
        for (qp, &peer_qp) in self.qps.iter().zip(peer_qps) {
            self.connect_one(qp, peer_gid, peer_lid, peer_qp, mtu)?;
        }
        Ok(())
    }

    fn connect_one(&self, qp: &QueuePair, gid: &[u8; 16], lid: u16, peer_qp: u32, mtu: u32) -> Result<(), String> {
        use ibv_qp_attr_mask as M;
        let d = &self.device;
        let fail = |step: &str, rc: i32| {
            format!(
                "modify QP {} to {step} on {} towards {} (peer QP {peer_qp}): {}",
                qp.num,
                d.name,
                self.peer_nic_path,
                std::io::Error::from_raw_os_error(rc)
            )
        };
        let modify = |attr: &mut ibv_qp_attr, mask: u32| -> i32 {
            // SAFETY: live QP of this endpoint; `attr` is initialised for the fields `mask` names.
            unsafe { (d.verbs.modify_qp)(qp.raw, attr, mask as i32) }
        };
        // SAFETY: plain-data struct; zero is valid for every field.
        let mut a: ibv_qp_attr = unsafe { std::mem::zeroed() };
        a.qp_state = ibv_qp_state::IBV_QPS_RESET;
        let rc = modify(&mut a, M::IBV_QP_STATE.0);
        if rc != 0 {
            return Err(fail("RESET", rc));
        }
        // SAFETY: as above, plain data that may be all zeros.
        let mut a: ibv_qp_attr = unsafe { std::mem::zeroed() };
        a.qp_state = ibv_qp_state::IBV_QPS_INIT;
        a.port_num = d.port;
        a.pkey_index = 0;
        a.qp_access_flags = (verbs::ibv_access_flags::IBV_ACCESS_LOCAL_WRITE.0
            | verbs::ibv_access_flags::IBV_ACCESS_REMOTE_READ.0
            | verbs::ibv_access_flags::IBV_ACCESS_REMOTE_WRITE.0) as _;
        let rc = modify(&mut a, (M::IBV_QP_STATE | M::IBV_QP_PKEY_INDEX | M::IBV_QP_PORT | M::IBV_QP_ACCESS_FLAGS).0);
        if rc != 0 {
            return Err(fail("INIT", rc));
        }
        // SAFETY: as above, plain data that may be all zeros.
        let mut a: ibv_qp_attr = unsafe { std::mem::zeroed() };
        a.qp_state = ibv_qp_state::IBV_QPS_RTR;
        a.path_mtu = mtu_enum(mtu);
        a.ah_attr.grh.dgid.raw = *gid;
        a.ah_attr.grh.sgid_index = d.gid_index as u8;
        a.ah_attr.grh.hop_limit = HOP_LIMIT;
        a.ah_attr.dlid = lid;
        a.ah_attr.is_global = 1;
        a.ah_attr.port_num = d.port;
        a.dest_qp_num = peer_qp;
        a.rq_psn = 0;
        a.max_dest_rd_atomic = d.max_rd_atomic;
        a.min_rnr_timer = MIN_RNR_TIMER;
        let mask = M::IBV_QP_STATE
            | M::IBV_QP_PATH_MTU
            | M::IBV_QP_MIN_RNR_TIMER
            | M::IBV_QP_AV
            | M::IBV_QP_MAX_DEST_RD_ATOMIC
            | M::IBV_QP_DEST_QPN
            | M::IBV_QP_RQ_PSN;
        let rc = modify(&mut a, mask.0);
        if rc != 0 {
            return Err(fail("RTR (check the GID index, MTU, peer GID and QP number)", rc));
        }
        // SAFETY: as above, plain data that may be all zeros.
        let mut a: ibv_qp_attr = unsafe { std::mem::zeroed() };
        a.qp_state = ibv_qp_state::IBV_QPS_RTS;
        a.timeout = ACK_TIMEOUT;
        a.retry_cnt = RETRY_COUNT;
        a.rnr_retry = RNR_RETRY;
        a.sq_psn = 0;
        a.max_rd_atomic = d.max_rd_atomic;
        let mask = M::IBV_QP_STATE
            | M::IBV_QP_TIMEOUT
            | M::IBV_QP_RETRY_CNT
            | M::IBV_QP_RNR_RETRY
            | M::IBV_QP_SQ_PSN
            | M::IBV_QP_MAX_QP_RD_ATOMIC;
        let rc = modify(&mut a, mask.0);
        if rc != 0 {
            return Err(fail("RTS", rc));
        }
        Ok(())
    }

    /// Moves every queue pair to the error state: outstanding work completes as flushed.
    pub fn break_queue_pairs(&self) {
        for qp in &self.qps {
            // SAFETY: plain-data struct.
            // SAFETY: as above, plain data that may be all zeros.
            let mut a: ibv_qp_attr = unsafe { std::mem::zeroed() };
            a.qp_state = ibv_qp_state::IBV_QPS_ERR;
            // SAFETY: live QP; only the state is set.
            let rc = unsafe { (self.device.verbs.modify_qp)(qp.raw, &mut a, ibv_qp_attr_mask::IBV_QP_STATE.0 as i32) };
            if rc != 0 {
                tracing::debug!(device = %self.device.name, qp = qp.num, "modify QP to ERR: {}", std::io::Error::from_raw_os_error(rc));
            }
        }
    }

    /// A queue pair with room for one more work request, reserved together with a credit of
    /// the device's CQ; `None` when all are full (or the CQ is).
    pub fn reserve_slot(&self) -> Option<usize> {
        if !self.device.take_credit() {
            return None;
        }
        let n = self.qps.len();
        let start = self.next_qp.fetch_add(1, Ordering::Relaxed);
        for k in 0..n {
            let i = (start + k) % n;
            if self.take_qp_slot(i) {
                return Some(i);
            }
        }
        self.device.return_credit();
        None
    }

    /// Reserves one more slot on queue pair `qp` (and a CQ credit); false when either is full.
    pub fn reserve_on(&self, qp: usize) -> bool {
        if !self.device.take_credit() {
            return false;
        }
        if self.take_qp_slot(qp) {
            return true;
        }
        self.device.return_credit();
        false
    }

    fn take_qp_slot(&self, qp: usize) -> bool {
        super::device::increment_below(&self.qps[qp].outstanding, self.max_wr)
    }

    /// Gives back a slot reserved by [`Endpoint::reserve_slot`] or [`Endpoint::reserve_on`]
    /// (the request completed or was not posted).
    pub fn release_slot(&self, qp: usize) {
        self.qps[qp].outstanding.fetch_sub(1, Ordering::AcqRel);
        self.device.return_credit();
    }

    /// Posts a chain of work requests on queue pair `qp`. On failure returns the index of the
    /// first request not posted and the error (requests before it were posted).
    pub fn post_chain(&self, qp: usize, chain: &mut [verbs::ibv_send_wr]) -> Result<(), (usize, String)> {
        if chain.is_empty() {
            return Ok(());
        }
        for i in 0..chain.len() - 1 {
            let next: *mut verbs::ibv_send_wr = &mut chain[i + 1];
            chain[i].next = next;
        }
        chain[chain.len() - 1].next = ptr::null_mut();
        let mut bad: *mut verbs::ibv_send_wr = ptr::null_mut();
        // SAFETY: live QP; `chain` is a valid linked list of initialised work requests whose
        // scatter lists live at least as long as this call (the provider copies them).
        let rc = unsafe { verbs::post_send(self.qps[qp].raw, chain.as_mut_ptr(), &mut bad) };
        if rc == 0 {
            return Ok(());
        }
        let first = if bad.is_null() {
            0
        } else {
            // SAFETY: `bad` points into `chain`.
            unsafe { bad.offset_from(chain.as_ptr()) }.max(0) as usize
        };
        Err((
            first,
            format!(
                "ibv_post_send on {} towards {}: {}",
                self.device.name,
                self.peer_nic_path,
                std::io::Error::from_raw_os_error(rc)
            ),
        ))
    }
}

impl<W> Drop for Endpoint<W> {
    fn drop(&mut self) {
        for qp in &self.qps {
            // SAFETY: each QP was created by `create` and is destroyed once; no work request is
            // outstanding on it (each holds an `Arc` of this endpoint until it completes).
            let rc = unsafe { (self.device.verbs.destroy_qp)(qp.raw) };
            if rc != 0 {
                tracing::warn!(device = %self.device.name, qp = qp.num, "ibv_destroy_qp: {}", std::io::Error::from_raw_os_error(rc));
            }
        }
    }
}
