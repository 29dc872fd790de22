//! The request path of the RDMA transport: slices → (local NIC, peer NIC) → endpoint → work
//! requests, and completions back to the slices, with retries on other NICs.
//!
//! Striping: slice `k` of a submission (plus its attempt number) picks the `k`-th device of
//! the local location's preferred list and the `k`-th of the remote location's list in the
//! peer's matrix, so consecutive slices of one request spread over every preferred NIC pair.
//! A local device whose port is down is skipped; a peer NIC whose link failed (transport retry
//! exceeded) is skipped for `MC_RDMA_RAIL_PAUSE_SECONDS` unless all of them are ([`stripe`]).
//!
//! Per slice, nothing allocates, formats or takes a transport-wide lock once the submission's
//! NIC pairs have endpoints: `dispatch` groups slices in per-thread buffers, resolves the NIC
//! lists once per run of slices on the same region and peer buffer, and finds each group's
//! endpoint once per call by `(peer, local device, peer device)`; `post_pending` builds its
//! chains in fixed arrays.
//!
//! [`stripe`]: super::stripe

use std::collections::{HashMap, VecDeque};
use std::mem::MaybeUninit;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use super::chain::{Chain, Scratch};
use super::device::Device;
use super::endpoint::{Endpoint, MAX_SGE, State};
use super::memory::{MemoryTable, RegionMrs};
use super::peer::RdmaPeer;
use super::settings::RdmaSettings;
use super::stripe::{RailPauses, Stripe};
use super::verbs::{ibv_wc, ibv_wc_status};
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
    pub(super) work: Work,
    pub(super) binding: Binding,
}

/// What binds a work to one endpoint: the peer's key on the endpoint's peer device, and the
/// region the work reads or writes locally (kept registered while the request is in flight;
/// its lkeys on the endpoint's device make the scatter list when the request is posted).
/// Small on purpose: a work is moved from queue to queue on its way.
pub(super) struct Binding {
    pub(super) region: Arc<RegionMrs>,
    pub(super) rkey: u32,
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
    /// Every local device index: the list of a location the matrix does not name.
    every_device: Vec<usize>,
    pub memory: MemoryTable,
    /// (local device, peer NIC path) → endpoint.
    pub endpoints: Mutex<HashMap<(usize, String), Arc<Ep>>>,
    /// (peer id, local device, peer device) → endpoint: `endpoints` found without building a
    /// string key. Entries leave with their endpoint (`fail_endpoint`); one found failed all
    /// the same (a race with closing it) is looked up again in `endpoints`.
    pairs: Mutex<HashMap<(u64, usize, usize), Arc<Ep>>>,
    /// Peer NIC paths whose link failed, and since when.
    pub paused: RailPauses,
    pub runtime: Arc<RuntimeGuard>,
    pub limits: ClientLimits,
    pub stopped: AtomicBool,
}

/// Entries of `Core::pairs` beyond which it starts over: it also holds pairs of peers whose
/// descriptor was replaced (a new peer id), which nothing else removes.
const PAIR_CACHE_LIMIT: usize = 4096;

/// Completions handled together by [`Core::complete`] (the worker polls this many at a time).
const COMPLETION_BATCH: usize = 64;

impl Core {
    pub fn new(
        settings: RdmaSettings,
        server_name: String,
        nics: Vec<Arc<Nic>>,
        locations: HashMap<String, Vec<usize>>,
        runtime: Arc<RuntimeGuard>,
        limits: ClientLimits,
    ) -> Core {
        Core {
            settings,
            server_name,
            every_device: (0..nics.len()).collect(),
            nics,
            locations,
            memory: Default::default(),
            endpoints: Mutex::new(HashMap::new()),
            pairs: Mutex::new(HashMap::new()),
            paused: RailPauses::default(),
            runtime,
            limits,
            stopped: Default::default(),
        }
    }

    /// Routes and posts (or queues) every work. Never blocks on the network: a new endpoint's
    /// handshake runs on a thread of its own and its work waits in its queue.
    pub fn dispatch(self: &Arc<Self>, works: impl IntoIterator<Item = Work>) {
        let mut scratch = Scratch::take();
        for w in works {
            let (li, ri, binding) = match self.prepare(&w, &mut scratch.stripe) {
                Ok(bound) => bound,
                Err(why) => {
                    self.fail(w, &why);
                    continue;
                }
            };
            let key = (w.peer.id, li, ri);
            let group = match scratch.group_of(key) {
                Some(g) => g,
                None => match self.endpoint(li, &w.peer, ri) {
                    Ok(ep) => scratch.add_group(key, ep),
                    Err(why) => {
                        self.retry(w, &why);
                        continue;
                    }
                },
            };
            scratch.groups[group].list.push_back(Prepared { work: w, binding });
        }
        scratch.stripe.clear();
        for g in &mut scratch.groups[..scratch.used] {
            if let Some(ep) = g.ep.take() {
                self.enqueue(&ep, &mut g.list);
            }
        }
        scratch.put_back();
    }

    /// Picks the NIC pair and keys of one work: `(local device, peer device, binding)`, or
    /// why it cannot succeed on any pair.
    fn prepare(&self, w: &Work, stripe: &mut Stripe) -> Result<(usize, usize, Binding), String> {
        if self.stopped.load(Ordering::Acquire) {
            return Err("the RDMA transport is shut down".into());
        }
        let s = &w.slice;
        let region = match stripe.region_holding(s.local as u64, s.len) {
            Some(r) => r.clone(),
            None => {
                let r = self.memory.find(s.local as u64, s.len).ok_or_else(|| {
                    format!("local range {:#x}+{} is not registered with the RDMA transport", s.local, s.len)
                })?;
                stripe.set_region(r.clone(), self.local_devices(&r.location), &self.nics);
                r
            }
        };
        let buffer = w.peer.buffer_for(s.remote, s.len).ok_or_else(|| {
            format!(
                "remote range {:#x}+{} is not inside one buffer that segment {} publishes",
                s.remote, s.len, w.peer.segment
            )
        })?;
        stripe.remote_for(&self.paused, self.settings.rail_pause, &w.peer, buffer.addr, &buffer.location);
        let k = (w.ordinal + w.attempt) as usize;
        let li = stripe
            .local_device(k)
            .ok_or_else(|| format!("no local RDMA device with an active port serves {}", region.location))?;
        let ri =
            stripe.remote_device(k).ok_or_else(|| format!("segment {} publishes no RDMA device", w.peer.segment))?;
        if region.pieces(s.local as u64, s.len).nth(MAX_SGE as usize).is_some() {
            return Err(format!(
                "local range {:#x}+{} spans more than {MAX_SGE} registered chunks (MC_MAX_MR_SIZE)",
                s.local, s.len
            ));
        }
        let rkey = buffer.rkeys[ri];
        Ok((li, ri, Binding { region, rkey }))
    }

    /// The local devices serving `location`, preferred ones first (every device when the
    /// matrix does not name it).
    fn local_devices(&self, location: &str) -> &[usize] {
        match self.locations.get(location) {
            Some(list) if !list.is_empty() => list,
            _ => &self.every_device,
        }
    }

    /// The endpoint from local device `li` to the peer's device `ri`, from the pair cache
    /// when it has a live one, else from [`Core::endpoint_by_path`].
    fn endpoint(self: &Arc<Self>, li: usize, peer: &Arc<RdmaPeer>, ri: usize) -> Result<Arc<Ep>, String> {
        let pair = (peer.id, li, ri);
        let cached = self.pairs.lock().get(&pair).cloned();
        if let Some(ep) = cached
            && ep.with_state(|state, _| *state != State::Failed)
        {
            return Ok(ep);
        }
        let ep = self.endpoint_by_path(li, peer, ri)?;
        let mut pairs = self.pairs.lock();
        if pairs.len() >= PAIR_CACHE_LIMIT {
            pairs.clear();
        }
        pairs.insert(pair, ep.clone());
        Ok(ep)
    }

    /// The endpoint of `(li, peer NIC path)`, made (and its handshake started) when there is
    /// none.
    fn endpoint_by_path(self: &Arc<Self>, li: usize, peer: &Arc<RdmaPeer>, ri: usize) -> Result<Arc<Ep>, String> {
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

    /// Queues the works of `list` (leaving it empty) on `ep` and posts what fits when it is
    /// connected.
    fn enqueue(self: &Arc<Self>, ep: &Arc<Ep>, list: &mut VecDeque<Prepared>) {
        let refused = ep.with_state(|state, queue| match state {
            State::Failed => true,
            // Nothing queued (the usual case): the list becomes the queue, without a copy,
            // and the caller keeps the queue's empty buffer.
            _ if queue.is_empty() => {
                std::mem::swap(queue, list);
                false
            }
            _ => {
                queue.extend(list.drain(..));
                false
            }
        });
        if refused {
            for p in list.drain(..) {
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
            if !matches!(state, State::Connected(_)) || queue.is_empty() {
                return;
            }
            let mut chain = Chain::new();
            while !queue.is_empty() {
                let Some(qp) = ep.reserve_slot() else {
                    nic.starved.store(true, Ordering::Release);
                    break;
                };
                // Post up to 32 requests per doorbell, all on this queue pair.
                chain.clear();
                let mut bytes = 0;
                let mut slab = nic.posted.lock();
                while !chain.is_full() {
                    let Some(p) = queue.pop_front() else { break };
                    if !chain.is_empty() && !ep.reserve_on(qp) {
                        queue.push_front(p);
                        break;
                    }
                    let at = chain.push(&p, ep.device.index);
                    bytes += p.work.slice.len;
                    let id = slab.insert(Posted { prepared: p, endpoint: ep.clone(), qp });
                    chain.set_id(at, id);
                }
                drop(slab);
                ep.device.stats.inflight_bytes.fetch_add(bytes, Ordering::Relaxed);
                if let Err((first, why)) = ep.post_chain(qp, chain.requests()) {
                    let mut slab = nic.posted.lock();
                    for &id in chain.ids_from(first) {
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

    /// Completions of device `nic`, in the order its CQ gave them. Their posted requests are
    /// taken under one lock per batch, the device's counters (and the clock) are updated once
    /// per batch, and each endpoint posts its queued work once per run of its completions, in
    /// chains, rather than one request per completion.
    pub fn complete(self: &Arc<Self>, nic: &Nic, wcs: &[ibv_wc]) {
        for wcs in wcs.chunks(COMPLETION_BATCH) {
            // Uninitialised: a batch is often a few completions, and the array is 6 KiB.
            let mut taken: [MaybeUninit<Option<Posted>>; COMPLETION_BATCH] =
                [const { MaybeUninit::uninit() }; COMPLETION_BATCH];
            {
                let mut slab = nic.posted.lock();
                for (slot, wc) in taken.iter_mut().zip(wcs) {
                    slot.write(slab.take(wc.wr_id as usize));
                }
            }
            let (mut gone, mut moved) = (0, 0);
            let mut run = Run::default();
            for (slot, wc) in taken.iter().zip(wcs) {
                // SAFETY: the loop above initialised one slot per completion of `wcs`, and
                // each is read exactly once, here. (A panic below leaks the unread rest.)
                let posted = unsafe { slot.assume_init_read() };
                let Some(Posted { prepared, endpoint: ep, qp }) = posted else {
                    tracing::warn!(device = %nic.device.name, wr_id = wc.wr_id, "completion of an unknown work request");
                    continue;
                };
                ep.release_slot(qp);
                let len = prepared.work.slice.len;
                gone += len;
                if wc.status == ibv_wc_status::IBV_WC_SUCCESS {
                    moved += len;
                    drop(prepared.binding.region);
                    prepared.work.slice.finish(true);
                    run.add(self, ep, len);
                } else {
                    self.failed_request(nic, &ep, prepared.work, wc);
                }
            }
            nic.device.stats.inflight_bytes.fetch_sub(gone, Ordering::Relaxed);
            if moved > 0 {
                nic.device.account_completed(moved);
            }
            run.end(self);
            self.feed_starved(nic);
        }
    }

    /// A request of `ep` that completed with an error: the endpoint closes (unless the
    /// request was flushed by its closing), the work fails or is retried elsewhere.
    fn failed_request(self: &Arc<Self>, nic: &Nic, ep: &Arc<Ep>, work: Work, wc: &ibv_wc) {
        ep.failed.fetch_add(1, Ordering::Relaxed);
        let text = nic.device.verbs.status_text(wc.status);
        use ibv_wc_status as S;
        if wc.status != S::IBV_WC_WR_FLUSH_ERR {
            tracing::warn!(
                device = %nic.device.name, peer = %ep.peer_nic_path, status = wc.status, vendor_err = wc.vendor_err,
                "RDMA {} of {:#x}+{} failed: {text}", op_name(work.slice.opcode), work.slice.remote, work.slice.len
            );
            if matches!(wc.status, S::IBV_WC_RETRY_EXC_ERR | S::IBV_WC_RNR_RETRY_EXC_ERR) {
                self.paused.pause(&ep.peer_nic_path);
            }
            self.fail_endpoint(ep, &text);
        }
        match wc.status {
            // The target refused the access (no such key, outside its region, no right) or
            // our own keys or lengths are wrong: no other NIC can make it right. An "invalid
            // request" from the responder is retried instead: ranges are checked before
            // posting, and soft-RoCE answers it now and then for a sound request on a link
            // that just came back (seen in the guest tests).
            S::IBV_WC_REM_ACCESS_ERR | S::IBV_WC_LOC_PROT_ERR | S::IBV_WC_LOC_LEN_ERR => {
                self.fail(work, &format!("{text} (device {}, peer {})", nic.device.name, ep.peer_nic_path))
            }
            _ => self.retry(work, &format!("{text} on {} towards {}", nic.device.name, ep.peer_nic_path)),
        }
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
        self.pairs.lock().retain(|_, e| !Arc::ptr_eq(e, ep));
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

    /// Drops every endpoint (transport shutdown, after each was failed).
    pub fn forget_endpoints(&self) {
        self.endpoints.lock().clear();
        self.pairs.lock().clear();
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
        self.dispatch([w]);
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

/// Successful completions of one endpoint in a row: its counters are added once, and its
/// queued work is posted when the run ends (room was freed).
#[derive(Default)]
struct Run {
    ep: Option<Arc<Ep>>,
    requests: u64,
    bytes: u64,
}

impl Run {
    fn add(&mut self, core: &Arc<Core>, ep: Arc<Ep>, bytes: u64) {
        if !self.ep.as_ref().is_some_and(|e| Arc::ptr_eq(e, &ep)) {
            self.end(core);
            self.ep = Some(ep);
        }
        self.requests += 1;
        self.bytes += bytes;
    }

    fn end(&mut self, core: &Arc<Core>) {
        if let Some(ep) = self.ep.take() {
            ep.completed.fetch_add(self.requests, Ordering::Relaxed);
            ep.bytes.fetch_add(self.bytes, Ordering::Relaxed);
            core.post_pending(&ep);
        }
        self.requests = 0;
        self.bytes = 0;
    }
}

fn op_name(op: Opcode) -> &'static str {
    match op {
        Opcode::Read => "READ",
        Opcode::Write => "WRITE",
    }
}
