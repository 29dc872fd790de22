//! The request path of the RDMA transport: slices → (local NIC, peer NIC) → endpoint → work
//! requests, and completions back to the slices, with retries on other NICs.
//!
//! Striping: slice `k` of a submission (plus its attempt number) picks the `k`-th device of
//! the local location's preferred list and the `k`-th of the remote location's list in the
//! peer's matrix, so consecutive slices of one request spread over every preferred NIC pair.
//! A local device whose port is down is skipped; a peer NIC whose link failed (transport retry
//! exceeded) is skipped for `MC_RDMA_RAIL_PAUSE_SECONDS` unless all of them are.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use parking_lot::Mutex;

use super::device::Device;
use super::endpoint::{Endpoint, MAX_SGE, State};
use super::memory::{MemoryTable, RegionMrs};
use super::peer::RdmaPeer;
use super::settings::RdmaSettings;
use super::verbs::{self, ibv_send_wr, ibv_sge, ibv_wc, ibv_wc_status};
use crate::metadata::handshake::ClientLimits;
use crate::runtime::RuntimeGuard;
use crate::transport::{Opcode, Slice};

pub(crate) type Ep = Endpoint<Prepared>;

/// One slice on its way, with what retrying it needs.
pub(crate) struct Work {
    pub slice: Slice,
    pub peer: Arc<RdmaPeer>,
    /// Position in its submission (the stripe).
    pub ordinal: u32,
    pub attempt: u32,
}

/// A work bound to one endpoint.
pub(crate) struct Prepared {
    work: Work,
    binding: Binding,
}

/// What binds a work to one endpoint: the keys and scatter list of its device, and the
/// region it reads or writes locally (kept registered while the request is in flight).
struct Binding {
    region: Arc<RegionMrs>,
    rkey: u32,
    sges: [ibv_sge; MAX_SGE as usize],
    nsge: usize,
}

/// A posted work request, found again by its `wr_id`.
struct Posted {
    prepared: Prepared,
    endpoint: Arc<Ep>,
    qp: usize,
}

/// Posted requests of one device, by `wr_id`.
#[derive(Default)]
struct Slab {
    entries: Vec<Option<Posted>>,
    free: Vec<usize>,
    live: usize,
}

impl Slab {
    fn insert(&mut self, p: Posted) -> usize {
        self.live += 1;
        match self.free.pop() {
            Some(i) => {
                self.entries[i] = Some(p);
                i
            }
            None => {
                self.entries.push(Some(p));
                self.entries.len() - 1
            }
        }
    }

    fn take(&mut self, i: usize) -> Option<Posted> {
        let p = self.entries.get_mut(i)?.take()?;
        self.free.push(i);
        self.live -= 1;
        Some(p)
    }

    fn drain(&mut self) -> Vec<Posted> {
        self.free.clear();
        self.live = 0;
        self.entries.drain(..).flatten().collect()
    }
}

/// One opened device and its posted requests.
pub(crate) struct Nic {
    pub device: Arc<Device>,
    posted: Mutex<Slab>,
    /// Some endpoint of this device has queued work it could not post (its queue pairs or the
    /// device's CQ were full): the next completion gives every endpoint a turn.
    starved: AtomicBool,
}

impl Nic {
    pub fn new(device: Device) -> Nic {
        Nic { device: Arc::new(device), posted: Mutex::new(Slab::default()), starved: AtomicBool::new(false) }
    }

    pub fn in_flight(&self) -> usize {
        self.posted.lock().live
    }
}

/// Everything the transport's threads share.
pub(crate) struct Core {
    pub settings: RdmaSettings,
    /// This engine's server name: the server part of its NIC paths.
    pub server_name: String,
    pub nics: Vec<Arc<Nic>>,
    /// location → local device indices, preferred ones first.
    pub locations: HashMap<String, Vec<usize>>,
    pub memory: MemoryTable,
    /// (local device, peer NIC path) → endpoint.
    pub endpoints: Mutex<HashMap<(usize, String), Arc<Ep>>>,
    /// Peer NIC paths whose link failed, and since when.
    pub paused: Mutex<HashMap<String, Instant>>,
    pub runtime: Arc<RuntimeGuard>,
    pub limits: ClientLimits,
    pub stopped: AtomicBool,
}

enum Refusal {
    /// Cannot succeed elsewhere: the slice fails now.
    Final(String),
    /// May succeed on another NIC pair.
    Retry(String),
}

impl Core {
    /// Routes and posts (or queues) every work. Never blocks on the network: a new endpoint's
    /// handshake runs on a thread of its own and its work waits in its queue.
    pub fn dispatch(self: &Arc<Self>, works: Vec<Work>) {
        let mut groups: Vec<(Arc<Ep>, Vec<Prepared>)> = Vec::new();
        for w in works {
            match self.prepare(&w) {
                Ok((ep, binding)) => {
                    let p = Prepared { work: w, binding };
                    match groups.iter_mut().find(|(e, _)| Arc::ptr_eq(e, &ep)) {
                        Some((_, list)) => list.push(p),
                        None => groups.push((ep, vec![p])),
                    }
                }
                Err(Refusal::Final(why)) => self.fail(w, &why),
                Err(Refusal::Retry(why)) => self.retry(w, &why),
            }
        }
        for (ep, list) in groups {
            self.enqueue(&ep, list);
        }
    }

    /// Picks the NIC pair, keys and endpoint of one work.
    fn prepare(self: &Arc<Self>, w: &Work) -> Result<(Arc<Ep>, Binding), Refusal> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(Refusal::Final("the RDMA transport is shut down".into()));
        }
        let s = &w.slice;
        let region = self.memory.find(s.local as u64, s.len).ok_or_else(|| {
            Refusal::Final(format!("local range {:#x}+{} is not registered with the RDMA transport", s.local, s.len))
        })?;
        let buffer = w.peer.buffer_for(s.remote, s.len).ok_or_else(|| {
            Refusal::Final(format!(
                "remote range {:#x}+{} is not inside one buffer that segment {} publishes",
                s.remote, s.len, w.peer.segment
            ))
        })?;
        let local: Vec<usize> =
            self.local_devices(&region.location).into_iter().filter(|&i| self.nics[i].device.is_active()).collect();
        if local.is_empty() {
            return Err(Refusal::Final(format!("no local RDMA device with an active port serves {}", region.location)));
        }
        let remote = self.remote_devices(&w.peer, &buffer.location);
        let k = (w.ordinal + w.attempt) as usize;
        let li = local[k % local.len()];
        let ri = remote[k % remote.len()];
        let mut sges = [ibv_sge { addr: 0, length: 0, lkey: 0 }; MAX_SGE as usize];
        let mut nsge = 0;
        for (chunk, addr, len) in region.pieces(s.local as u64, s.len) {
            if nsge == MAX_SGE as usize {
                return Err(Refusal::Final(format!(
                    "local range {:#x}+{} spans more than {MAX_SGE} registered chunks (MC_MAX_MR_SIZE)",
                    s.local, s.len
                )));
            }
            sges[nsge] = ibv_sge { addr, length: len as u32, lkey: chunk.mrs[li].lkey };
            nsge += 1;
        }
        let rkey = buffer.rkeys[ri];
        let ep = self.endpoint(li, &w.peer, ri).map_err(Refusal::Retry)?;
        Ok((ep, Binding { region, rkey, sges, nsge }))
    }

    fn local_devices(&self, location: &str) -> Vec<usize> {
        match self.locations.get(location) {
            Some(list) if !list.is_empty() => list.clone(),
            _ => (0..self.nics.len()).collect(),
        }
    }

    fn remote_devices(&self, peer: &RdmaPeer, location: &str) -> Vec<usize> {
        let all = peer.devices_for(location);
        let mut paused = self.paused.lock();
        let pause = self.settings.rail_pause;
        paused.retain(|_, since| since.elapsed() < pause);
        let healthy: Vec<usize> = all.iter().copied().filter(|&i| !paused.contains_key(&peer.nic_path(i))).collect();
        if healthy.is_empty() { all.to_vec() } else { healthy }
    }

    /// The endpoint from local device `li` to the peer's device `ri`, made (and its handshake
    /// started) when there is none.
    fn endpoint(self: &Arc<Self>, li: usize, peer: &Arc<RdmaPeer>, ri: usize) -> Result<Arc<Ep>, String> {
        let peer_nic = peer.nic_path(ri);
        let key = (li, peer_nic.clone());
        let mut map = self.endpoints.lock();
        if let Some(ep) = map.get(&key) {
            return Ok(ep.clone());
        }
        let device = &self.nics[li].device;
        let local_nic = format!("{}@{}", self.server_name, device.name);
        let ep = Arc::new(Ep::create(device, local_nic, peer_nic, self.settings.qps_per_endpoint, device.max_qp_wr)?);
        map.insert(key, ep.clone());
        drop(map);
        let core = self.clone();
        let (ep2, peer2) = (ep.clone(), peer.clone());
        let spawned = std::thread::Builder::new()
            .name("mc-rdma-connect".into())
            .spawn(move || super::connect::active(&core, &ep2, &peer2, ri));
        if let Err(e) = spawned {
            self.fail_endpoint(&ep, &format!("cannot start the handshake thread: {e}"));
            return Err(format!("cannot start the handshake thread: {e}"));
        }
        Ok(ep)
    }

    /// Queues works on `ep` and posts what fits when it is connected.
    fn enqueue(self: &Arc<Self>, ep: &Arc<Ep>, list: Vec<Prepared>) {
        let refused = ep.with_state(|state, queue| match state {
            State::Failed => Some(list),
            _ => {
                queue.extend(list);
                None
            }
        });
        if let Some(list) = refused {
            for p in list {
                self.retry(p.work, &format!("endpoint {} failed", ep.peer_nic_path));
            }
            return;
        }
        self.post_pending(ep);
    }

    /// Posts queued works of a connected endpoint while its queue pairs have room.
    pub fn post_pending(self: &Arc<Self>, ep: &Arc<Ep>) {
        let nic = &self.nics[ep.device.index];
        let mut failed: Vec<(Prepared, String)> = Vec::new();
        ep.with_state(|state, queue| {
            if !matches!(state, State::Connected(_)) {
                return;
            }
            let mut wrs: Vec<ibv_send_wr> = Vec::new();
            let mut sges: Vec<[ibv_sge; MAX_SGE as usize]> = Vec::new();
            let mut ids: Vec<usize> = Vec::new();
            while !queue.is_empty() {
                let Some(qp) = ep.reserve_slot() else {
                    nic.starved.store(true, Ordering::Release);
                    break;
                };
                // Post up to 32 requests per doorbell, all on this queue pair.
                wrs.clear();
                sges.clear();
                ids.clear();
                let mut slab = nic.posted.lock();
                while ids.len() < 32 {
                    let Some(p) = queue.pop_front() else { break };
                    if !ids.is_empty() && !ep.reserve_on(qp) {
                        queue.push_front(p);
                        break;
                    }
                    sges.push(p.binding.sges);
                    wrs.push(work_request(&p, 0));
                    let len = p.work.slice.len;
                    let id = slab.insert(Posted { prepared: p, endpoint: ep.clone(), qp });
                    ep.device.stats.inflight_bytes.fetch_add(len, Ordering::Relaxed);
                    ids.push(id);
                }
                drop(slab);
                for (i, wr) in wrs.iter_mut().enumerate() {
                    wr.wr_id = ids[i] as u64;
                    wr.sg_list = sges[i].as_mut_ptr();
                }
                if let Err((first, why)) = ep.post_chain(qp, &mut wrs) {
                    let mut slab = nic.posted.lock();
                    for &id in &ids[first..] {
                        if let Some(p) = slab.take(id) {
                            ep.release_slot(qp);
                            ep.device.stats.inflight_bytes.fetch_sub(p.prepared.work.slice.len, Ordering::Relaxed);
                            failed.push((p.prepared, why.clone()));
                        }
                    }
                    break;
                }
            }
        });
        if !failed.is_empty() {
            tracing::warn!(device = %ep.device.name, peer = %ep.peer_nic_path, "{}", failed[0].1);
            self.fail_endpoint(ep, &failed[0].1);
            for (p, why) in failed {
                self.retry(p.work, &why);
            }
        }
    }

    /// One completion of device `nic`.
    pub fn complete(self: &Arc<Self>, nic: &Nic, wc: &ibv_wc) {
        let Some(posted) = nic.posted.lock().take(wc.wr_id as usize) else {
            tracing::warn!(device = %nic.device.name, wr_id = wc.wr_id, "completion of an unknown work request");
            return;
        };
        let Posted { prepared, endpoint: ep, qp } = posted;
        ep.release_slot(qp);
        let len = prepared.work.slice.len;
        nic.device.stats.inflight_bytes.fetch_sub(len, Ordering::Relaxed);
        if wc.status == ibv_wc_status::IBV_WC_SUCCESS {
            nic.device.account_completed(len);
            ep.completed.fetch_add(1, Ordering::Relaxed);
            ep.bytes.fetch_add(len, Ordering::Relaxed);
            drop(prepared.binding.region);
            prepared.work.slice.finish(true);
            self.post_pending(&ep);
            self.feed_starved(nic);
            return;
        }
        ep.failed.fetch_add(1, Ordering::Relaxed);
        let text = nic.device.verbs.status_text(wc.status);
        let work = prepared.work;
        use ibv_wc_status as S;
        if wc.status != S::IBV_WC_WR_FLUSH_ERR {
            tracing::warn!(
                device = %nic.device.name, peer = %ep.peer_nic_path, status = wc.status, vendor_err = wc.vendor_err,
                "RDMA {} of {:#x}+{} failed: {text}", op_name(work.slice.opcode), work.slice.remote, len
            );
            if matches!(wc.status, S::IBV_WC_RETRY_EXC_ERR | S::IBV_WC_RNR_RETRY_EXC_ERR) {
                self.paused.lock().insert(ep.peer_nic_path.clone(), Instant::now());
            }
            self.fail_endpoint(&ep, &text);
        }
        match wc.status {
            // The target refused the access (no such key, outside its region, no right) or
            // the request itself is wrong: no other NIC can make it right.
            S::IBV_WC_REM_ACCESS_ERR | S::IBV_WC_REM_INV_REQ_ERR | S::IBV_WC_LOC_PROT_ERR | S::IBV_WC_LOC_LEN_ERR => {
                self.fail(work, &format!("{text} (device {}, peer {})", nic.device.name, ep.peer_nic_path))
            }
            _ => self.retry(work, &format!("{text} on {} towards {}", nic.device.name, ep.peer_nic_path)),
        }
        self.feed_starved(nic);
    }

    /// After a completion freed room: gives every endpoint of `nic` with queued work a turn,
    /// when one of them found no room before.
    fn feed_starved(self: &Arc<Self>, nic: &Nic) {
        if !nic.starved.swap(false, Ordering::AcqRel) {
            return;
        }
        let index = nic.device.index;
        let eps: Vec<Arc<Ep>> =
            self.endpoints.lock().iter().filter(|((i, _), _)| *i == index).map(|(_, e)| e.clone()).collect();
        for ep in eps {
            self.post_pending(&ep);
        }
    }

    /// Takes `ep` out of use: no new work, its queue pairs flushed, its queued works retried.
    pub fn fail_endpoint(self: &Arc<Self>, ep: &Arc<Ep>, why: &str) {
        let queued = ep.with_state(|state, queue| {
            if *state == State::Failed {
                return None;
            }
            *state = State::Failed;
            Some(queue.drain(..).collect::<Vec<_>>())
        });
        let Some(queued) = queued else { return };
        tracing::info!(device = %ep.device.name, peer = %ep.peer_nic_path, "RDMA endpoint closed: {why}");
        ep.break_queue_pairs();
        {
            let mut map = self.endpoints.lock();
            let key = (ep.device.index, ep.peer_nic_path.clone());
            if map.get(&key).is_some_and(|e| Arc::ptr_eq(e, ep)) {
                map.remove(&key);
            }
        }
        for p in queued {
            self.retry(p.work, why);
        }
    }

    /// Fails every endpoint of local device `index` (its port went down).
    pub fn fail_device_endpoints(self: &Arc<Self>, index: usize, why: &str) {
        let eps: Vec<Arc<Ep>> =
            self.endpoints.lock().iter().filter(|((i, _), _)| *i == index).map(|(_, e)| e.clone()).collect();
        for ep in eps {
            self.fail_endpoint(&ep, why);
        }
    }

    /// Another attempt on another NIC pair, or the end of the slice after `MC_RETRY_CNT`.
    pub fn retry(self: &Arc<Self>, mut w: Work, why: &str) {
        w.attempt += 1;
        if w.attempt >= self.settings.retry_count || self.stopped.load(Ordering::Acquire) {
            let why = format!("{why} (after {} attempt(s))", w.attempt);
            self.fail(w, &why);
            return;
        }
        tracing::debug!(attempt = w.attempt, "retrying an RDMA slice: {why}");
        self.dispatch(vec![w]);
    }

    fn fail(&self, w: Work, why: &str) {
        tracing::warn!(
            peer = %w.peer.segment, "RDMA {} {:#x}+{} failed: {why}", op_name(w.slice.opcode), w.slice.remote, w.slice.len
        );
        w.slice.finish(false);
    }

    /// Fails what is still posted on `nic` (shutdown, after the queue pairs were flushed).
    pub fn abandon_posted(&self, nic: &Nic) {
        let left = nic.posted.lock().drain();
        for p in left {
            p.prepared.work.slice.finish(false);
        }
    }
}

fn work_request(p: &Prepared, wr_id: u64) -> ibv_send_wr {
    // SAFETY: plain-data struct (pointers null, unions zero); every field used is set below.
    let mut wr: ibv_send_wr = unsafe { std::mem::zeroed() };
    wr.wr_id = wr_id;
    wr.num_sge = p.binding.nsge as i32;
    wr.opcode = match p.work.slice.opcode {
        Opcode::Read => verbs::ibv_wr_opcode::IBV_WR_RDMA_READ,
        Opcode::Write => verbs::ibv_wr_opcode::IBV_WR_RDMA_WRITE,
    };
    wr.send_flags = verbs::ibv_send_flags::IBV_SEND_SIGNALED.0;
    wr.wr.rdma = rdma_sys::rdma_t { remote_addr: p.work.slice.remote, rkey: p.binding.rkey };
    wr
}

fn op_name(op: Opcode) -> &'static str {
    match op {
        Opcode::Read => "READ",
        Opcode::Write => "WRITE",
    }
}
