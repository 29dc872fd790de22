//! Segments, batches and transfers: the request path.

use std::sync::Arc;

use std::time::Duration;

use super::batch::{BatchOutcome, PendingNotify, ReserveError, TaskStatus, cut_task};
use super::{EngineShared, Error, Result, TransferEngine};
use crate::config::SameHost;
use crate::error::Code;
use crate::transport::shm::ShmRoute;
use crate::transport::tcp::PeerAddress;
use crate::transport::{CompletionSink, Opcode, Route, Slice, Transport};

/// One entry of `submitTransfer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferRequest {
    pub opcode: Opcode,
    /// Local address: registered, or (local, same-host and TCP routes) any memory of this
    /// process, as Mooncake's TCP transport takes it.
    pub source: u64,
    /// 0 = this engine; else an id from `open_segment`.
    pub target_id: i32,
    /// Absolute address in the target process.
    pub target_offset: u64,
    pub length: u64,
}

/// Mooncake strips leading slashes from segment names.
fn trim_name(name: &str) -> Result<&str> {
    let trimmed = name.trim_start_matches('/');
    if trimmed.is_empty() {
        return Err(Error::invalid(format!("segment name {name:?} is empty")));
    }
    Ok(trimmed)
}

impl TransferEngine {
    /// Opens segment `name` and returns its id: 0 for this engine's own name, ≥ 1 for a peer.
    /// With `refresh`, the descriptor is fetched again even when it is cached.
    pub fn open_segment(&self, name: &str, refresh: bool) -> Result<i32> {
        self.shared.check_running()?;
        let name = trim_name(name)?;
        if name == self.shared.server_name {
            return Ok(0);
        }
        if !refresh && let Some(id) = self.shared.segments.id_of(name) {
            return Ok(id);
        }
        self.shared.fetch_segment(name)
    }

    /// The cached descriptor of open segment `id` (0: this engine's own, current one).
    pub fn segment_descriptor(&self, id: i32) -> Option<crate::metadata::SegmentDescriptor> {
        if id == 0 {
            return Some(self.shared.descriptor());
        }
        self.shared.segments.get(id).map(|e| e.descriptor.clone())
    }

    /// Forgets segment `id`; later transfers to it are refused.
    pub fn close_segment(&self, id: i32) -> Result<()> {
        if id == 0 {
            return Ok(());
        }
        if self.shared.segments.remove_id(id) {
            Ok(())
        } else {
            Err(Error::invalid(format!("segment id {id} is not open")))
        }
    }

    /// Drops the cached descriptor of `name` (Mooncake's `removeLocalSegment`).
    pub fn remove_local_segment(&self, name: &str) -> Result<()> {
        let name = trim_name(name)?;
        if name == self.shared.server_name {
            return Err(Error::invalid(format!("{name:?} is this engine's own segment")));
        }
        self.shared.segments.remove_name(name);
        Ok(())
    }

    /// Fetches every cached descriptor again. All are tried; the first failure is returned.
    pub fn sync_segment_cache(&self) -> Result<()> {
        self.shared.check_running()?;
        let mut first_err = None;
        for name in self.shared.segments.names() {
            if let Err(e) = self.shared.fetch_segment(&name) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Copies `length` bytes between memory at `local` (registered or not, as for a request
    /// on the local route) and this engine's own segment at `remote`, on the caller's thread
    /// and at once (no batch). For callers that own both sides and wait for the copy anyway
    /// (the store's replicas in this process); the target range is checked as for a submitted
    /// request, and an unregistered `local` that is not mapped fails the copy.
    pub fn copy_local(&self, opcode: Opcode, local: u64, remote: u64, length: u64) -> Result<()> {
        self.shared.check_running()?;
        if local.checked_add(length).is_none() {
            return Err(Error::invalid(format!("local range {local:#x}+{length} wraps around")));
        }
        if !self.shared.local.copy_now(opcode, local as usize, remote, length) {
            return Err(Error::new(
                Code::AddressNotRegistered,
                format!(
                    "range {remote:#x}+{length} is not inside one remotely accessible region of this engine, \
                     or the local range {local:#x}+{length} is not mapped"
                ),
            ));
        }
        Ok(())
    }

    /// Whether `[addr, addr + len)` lies inside one region registered with this engine (any
    /// accessibility): what an RDMA route needs of a request's local source.
    pub fn is_registered(&self, addr: u64, len: u64) -> bool {
        self.shared.regions.contains(addr, len)
    }

    /// Allocates a batch of `capacity` tasks.
    pub fn allocate_batch(&self, capacity: usize) -> Result<u64> {
        self.shared.check_running()?;
        self.shared
            .batches
            .allocate(capacity)
            .ok_or_else(|| Error::new(Code::Memory, format!("cannot allocate a batch of {capacity} tasks")))
    }

    /// Frees a batch; refused with `BatchBusy` while any of its tasks is in flight.
    pub fn free_batch(&self, batch: u64) -> Result<()> {
        self.shared.batches.free(batch).map_err(|busy| {
            if busy {
                Error::new(Code::BatchBusy, format!("batch {batch} has tasks in flight"))
            } else {
                Error::invalid(format!("batch {batch} does not exist"))
            }
        })
    }

    /// Status of task `task` of `batch`.
    pub fn task_status(&self, batch: u64, task: usize) -> Result<TaskStatus> {
        let b =
            self.shared.batches.get(batch).ok_or_else(|| Error::invalid(format!("batch {batch} does not exist")))?;
        b.status(task).ok_or_else(|| Error::invalid(format!("batch {batch} has no task {task}")))
    }

    /// Waits (spinning briefly, then parked) until no task of `batch` is in flight, at most
    /// `timeout`, and says how the batch ended.
    pub fn wait_batch(&self, batch: u64, timeout: Duration) -> Result<BatchOutcome> {
        let b =
            self.shared.batches.get(batch).ok_or_else(|| Error::invalid(format!("batch {batch} does not exist")))?;
        Ok(b.wait_idle(timeout))
    }

    /// Frees `batch` now when no task is in flight, else as soon as it is idle (for callers
    /// that stop waiting, such as a sync transfer past its timeout).
    pub fn release_batch(&self, batch: u64) -> Result<()> {
        if self.shared.batches.release(batch) {
            Ok(())
        } else {
            Err(Error::invalid(format!("batch {batch} does not exist")))
        }
    }

    /// One synchronous transfer of `requests` (with an optional notification): a batch is
    /// allocated, submitted, waited for (at most `timeout`) and released.
    pub fn transfer_sync(
        &self,
        requests: &[TransferRequest],
        notify: Option<(String, String)>,
        timeout: Duration,
    ) -> Result<BatchOutcome> {
        let batch = self.allocate_batch(requests.len())?;
        let outcome = self.submit(batch, requests, notify).map(|()| self.wait_batch(batch, timeout));
        let released = self.release_batch(batch);
        let outcome = outcome??;
        released?;
        Ok(outcome)
    }

    /// Submits `requests` to `batch`, all or nothing; with `notify`, the segment of the first
    /// request receives `(name, msg)` once every task of the batch has completed.
    pub fn submit(&self, batch: u64, requests: &[TransferRequest], notify: Option<(String, String)>) -> Result<()> {
        self.shared.check_running()?;
        let b =
            self.shared.batches.get(batch).ok_or_else(|| Error::invalid(format!("batch {batch} does not exist")))?;
        if requests.is_empty() {
            return match notify {
                Some(_) => Err(Error::invalid("a notification needs at least one request")),
                None => Ok(()),
            };
        }
        let mut plans = Vec::with_capacity(requests.len());
        for (i, r) in requests.iter().enumerate() {
            plans.push(self.shared.plan(r).map_err(|e| Error::new(e.code, format!("entry {i}: {}", e.message)))?);
        }
        let slice_counts: Vec<u64> = plans.iter().map(|p| p.slice_count(p.slice_size)).collect();
        let pending = notify.map(|(name, msg)| {
            let segment = requests[0].target_id;
            // Looked up now, on the caller's thread: a completion must not wait for the
            // metadata service, nor let a later batch's notification overtake this one.
            let address = self.shared.outbox.address(segment).ok();
            PendingNotify { segment, address, name, msg }
        });
        let first =
            b.reserve(&slice_counts, pending).map_err(|ReserveError::Full { capacity, submitted, asked }| {
                Error::new(
                    Code::TooManyRequests,
                    format!("batch {batch} holds {capacity} tasks; {submitted} submitted, {asked} more asked"),
                )
            })?;
        let sink: Arc<dyn CompletionSink> = b;
        // One group per route, each with room for all of its slices: the slices are counted
        // first, so that building them allocates once per route, never per request or slice.
        let mut group_of = Vec::with_capacity(plans.len());
        let mut groups: Vec<(Route, Arc<dyn Transport>, Vec<Slice>)> = Vec::new();
        let mut sizes: Vec<usize> = Vec::new();
        let mut last = usize::MAX;
        for (plan, &count) in plans.iter().zip(&slice_counts) {
            // Requests of one batch mostly share their route: try the previous one first.
            if groups.get(last).is_none_or(|(r, _, _)| *r != plan.route) {
                last = match groups.iter().position(|(r, _, _)| *r == plan.route) {
                    Some(g) => g,
                    None => {
                        groups.push((plan.route.clone(), plan.transport.clone(), Vec::new()));
                        sizes.push(0);
                        groups.len() - 1
                    }
                };
            }
            group_of.push(last);
            sizes[last] += count as usize;
        }
        for ((_, _, slices), &size) in groups.iter_mut().zip(&sizes) {
            slices.reserve_exact(size);
        }
        for (i, ((plan, req), &g)) in plans.iter().zip(requests).zip(&group_of).enumerate() {
            let from = groups[g].2.len();
            cut_task(req, plan.slice_size, &sink, first + i, &mut groups[g].2);
            if !plan.verified {
                groups[g].2[from..].iter_mut().for_each(|s| s.verified = false);
            }
        }
        for (route, transport, slices) in groups {
            if let Err(e) = transport.submit(&route, slices) {
                // The slices were reported failed; the tasks end FAILED.
                tracing::warn!("transfer to {route:?} not started: {e}");
            }
        }
        Ok(())
    }
}

/// Where one request goes and how it is cut.
struct Plan {
    route: Route,
    transport: Arc<dyn Transport>,
    slice_size: u64,
    length: u64,
    /// The local source lies in a registered region (see `Slice::verified`).
    verified: bool,
}

impl Plan {
    fn slice_count(&self, slice_size: u64) -> u64 {
        self.length.div_ceil(slice_size)
    }
}

impl EngineShared {
    /// Fetches `name`'s descriptor (and where its handshake port is) and caches it. A
    /// descriptor without `tcp_data_host` needs the `rpc_meta` host for its data; one with it
    /// can do without (the port is looked up again when a notification needs it).
    pub(super) fn fetch_segment(&self, name: &str) -> Result<i32> {
        let descriptor = self.metadata.get_segment(name)?;
        let rpc = match self.metadata.rpc_address(name) {
            Ok(rpc) => Some(rpc),
            Err(e) if descriptor.tcp_data_host.as_deref().is_some_and(|h| !h.is_empty()) => {
                tracing::debug!("segment {name}: no rpc address yet ({e})");
                None
            }
            Err(e) => return Err(e.into()),
        };
        Ok(self.segments.upsert(name, descriptor, rpc))
    }

    /// Validates one request and picks its route; nothing is queued yet. The local source may
    /// be memory that was never registered on the local, same-host and TCP routes (Mooncake's
    /// TCP transport takes it; those routes touch it only through the kernel, so an unmapped
    /// source fails its task); an RDMA route needs it registered.
    fn plan(&self, r: &TransferRequest) -> Result<Plan> {
        if r.source.checked_add(r.length).is_none() {
            return Err(Error::invalid(format!("local source {:#x}+{} wraps around", r.source, r.length)));
        }
        if r.target_offset.checked_add(r.length).is_none() {
            return Err(Error::invalid(format!("target range {:#x}+{} wraps around", r.target_offset, r.length)));
        }
        let verified = r.length == 0 || self.regions.contains(r.source, r.length);
        if r.target_id == 0 {
            let local: Arc<dyn Transport> = self.local_transport();
            return Ok(Plan {
                route: Route::Local,
                slice_size: local.slice_size(),
                transport: local,
                length: r.length,
                verified,
            });
        }
        let mut segment = self
            .segments
            .get(r.target_id)
            .ok_or_else(|| Error::invalid(format!("segment id {} is not open", r.target_id)))?;
        if segment.stale.load(std::sync::atomic::Ordering::Acquire) {
            // A watch saw the descriptor change or vanish: use the current one, or fail.
            self.fetch_segment(&segment.name)?;
            segment = self.segments.get(r.target_id).ok_or_else(|| Error::invalid("segment closed meanwhile"))?;
        }
        let d = &segment.descriptor;
        if let Some(plan) = self.plan_same_host(&segment.name, d, r.length, verified)? {
            return Ok(plan);
        }
        #[cfg(rdma_transport)]
        if let Some((route, rdma)) = self.plan_rdma(&segment)? {
            if !verified {
                return Err(Error::new(
                    Code::AddressNotRegistered,
                    format!(
                        "local source {:#x}+{} is not inside one registered region (rdma needs registered memory)",
                        r.source, r.length
                    ),
                ));
            }
            let transport: Arc<dyn Transport> = rdma;
            return Ok(Plan { route, slice_size: transport.slice_size(), transport, length: r.length, verified });
        }
        if !d.speaks_tcp() {
            return Err(Error::new(
                Code::NotSupportedTransport,
                format!("segment {} uses protocol {:?}, which this engine has not installed", segment.name, d.protocol),
            ));
        }
        let tcp = self.tcp.read().clone().ok_or_else(|| {
            Error::new(
                Code::NotSupportedTransport,
                format!("segment {} needs tcp, which is not installed", segment.name),
            )
        })?;
        let host = d
            .tcp_data_host
            .clone()
            .filter(|h| !h.is_empty())
            .or_else(|| segment.rpc.as_ref().map(|(h, _)| h.clone()))
            .unwrap_or_default();
        if d.tcp_data_port == 0 || host.is_empty() {
            return Err(Error::new(
                Code::NotSupportedTransport,
                format!("segment {} publishes no tcp data address", segment.name),
            ));
        }
        let route = Route::Tcp(PeerAddress {
            host,
            port: d.tcp_data_port,
            v2: d.tcp_proto_version >= 2,
            framing: d.extensions.tcp_framing,
        });
        let transport: Arc<dyn Transport> = tcp;
        Ok(Plan { route, slice_size: transport.slice_size(), transport, length: r.length, verified })
    }

    /// The same-host route when the target offers it, the kernel permits it and tcp is
    /// installed (the same-host path stands in for tcp towards peers on this kernel, so
    /// uninstalling tcp ends it too); `None` to go on with TCP (an error under
    /// `MOONCAKE_SHM=require`).
    fn plan_same_host(
        &self,
        name: &str,
        d: &crate::metadata::SegmentDescriptor,
        length: u64,
        verified: bool,
    ) -> Result<Option<Plan>> {
        if self.config.same_host == SameHost::Off || self.tcp.read().is_none() {
            return Ok(None);
        }
        if let Some(peer) = d.extensions.shm.as_ref().and_then(|offer| self.shm.attach(offer)) {
            let transport: Arc<dyn Transport> = self.shm.clone();
            return Ok(Some(Plan {
                route: Route::Shm(ShmRoute(peer)),
                slice_size: transport.slice_size(),
                transport,
                length,
                verified,
            }));
        }
        if self.config.same_host == SameHost::Require {
            return Err(Error::new(
                Code::NotSupportedTransport,
                format!("segment {name} cannot be reached by the same-host transport (MOONCAKE_SHM=require)"),
            ));
        }
        Ok(None)
    }

    fn local_transport(&self) -> Arc<dyn Transport> {
        self.local.clone()
    }
}
