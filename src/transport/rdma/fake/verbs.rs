//! A fake libibverbs: [`FAKE_VERBS`], a [`Verbs`] table of Rust functions over in-memory
//! devices, and the `ops` table that `ibv_post_send` / `ibv_poll_cq` / `ibv_req_notify_cq`
//! (`verbs::post_send`, `poll_cq`, `req_notify_cq`) call through (`qp->context->ops`,
//! `cq->context->ops`).
//!
//! Every verbs object is a `#[repr(C)]` struct whose first field is the libibverbs struct the
//! caller sees, so a pointer handed out is a pointer to the whole fake object. The fake moves
//! no data: `post_send` checks each work request (queue pair in RTS, room on the queue pair,
//! an RDMA READ or WRITE with a sane scatter list), counts it on its device, optionally logs
//! it, and appends its completion to the CQ's ring; `poll_cq` hands completions back in
//! order, as successes (flush errors for requests posted on a queue pair in the error
//! state). A device never raises an asynchronous event.

use std::collections::VecDeque;
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::ptr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;

use crate::transport::rdma::verbs::{
    Verbs, ibv_async_event, ibv_comp_channel, ibv_context, ibv_cq, ibv_device, ibv_device_attr, ibv_event_type,
    ibv_gid, ibv_mr, ibv_mtu, ibv_pd, ibv_port_attr, ibv_port_state, ibv_qp, ibv_qp_attr, ibv_qp_attr_mask,
    ibv_qp_init_attr, ibv_qp_state, ibv_send_flags, ibv_send_wr, ibv_wc, ibv_wc_opcode, ibv_wc_status, ibv_wr_opcode,
};

// The data path (the `ops` table's functions) lives in a child module, which sees this
// module's private objects.
mod ops;
use ops::{poll_cq, post_send, req_notify_cq};

/// Scatter entries a fake queue pair takes per work request, at most.
const MAX_SGE: u32 = 16;

/// One posted work request as the fake device saw it (logged when the device records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostedWr {
    pub wr_id: u64,
    pub qp_num: u32,
    pub read: bool,
    pub remote_addr: u64,
    pub rkey: u32,
    /// `(addr, length, lkey)` of each scatter entry.
    pub sges: Vec<(u64, u32, u32)>,
}

/// The state of one fake device, shared by the rig (counters, log) and the verbs objects.
pub struct FakeNic {
    name: CString,
    /// Position among the rig's devices: part of its keys, LID and GID.
    index: u32,
    /// Work requests accepted by `post_send`.
    pub posted: AtomicU64,
    /// Completions added to a CQ that already held as many as its size (a real CQ would
    /// overrun and fail its queue pairs).
    pub overruns: AtomicU64,
    /// `Some` while the device records each work request.
    log: Mutex<Option<Vec<PostedWr>>>,
    recording: AtomicBool,
    /// Keys and queue pair numbers handed out so far.
    next: AtomicU32,
}

impl FakeNic {
    pub fn name(&self) -> &str {
        self.name.to_str().unwrap_or("")
    }

    /// Starts logging every posted work request (and forgets what was logged).
    pub fn record(&self) {
        *self.log.lock() = Some(Vec::new());
        self.recording.store(true, Ordering::Release);
    }

    /// The work requests logged since the last call.
    pub fn take_log(&self) -> Vec<PostedWr> {
        self.log.lock().as_mut().map(std::mem::take).unwrap_or_default()
    }

    fn next_id(&self) -> u32 {
        self.next.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// Devices `ibv_get_device_list` lists: every rig's, each under a name of its own.
static REGISTRY: Mutex<Vec<Arc<FakeNic>>> = Mutex::new(Vec::new());

/// Makes a device named `name` (listed until [`remove`]).
pub fn add(name: &str, index: u32) -> Result<Arc<FakeNic>, String> {
    let name = CString::new(name).map_err(|_| format!("fake device name {name:?} contains NUL"))?;
    let nic = Arc::new(FakeNic {
        name,
        index,
        posted: AtomicU64::new(0),
        overruns: AtomicU64::new(0),
        log: Mutex::new(None),
        recording: AtomicBool::new(false),
        next: AtomicU32::new(0),
    });
    REGISTRY.lock().push(nic.clone());
    Ok(nic)
}

/// Stops listing `nic` (objects opened on it keep it alive).
pub fn remove(nic: &Arc<FakeNic>) {
    REGISTRY.lock().retain(|n| !Arc::ptr_eq(n, nic));
}

/// The fake library. `Device::open(&FAKE_VERBS, name, ..)` opens a device made by [`add`].
pub static FAKE_VERBS: Verbs = Verbs {
    get_device_list,
    free_device_list,
    get_device_name,
    open_device,
    close_device,
    query_device,
    query_port,
    query_gid,
    alloc_pd,
    dealloc_pd,
    create_comp_channel,
    destroy_comp_channel,
    create_cq,
    destroy_cq,
    get_cq_event,
    ack_cq_events,
    reg_mr,
    dereg_mr,
    create_qp,
    modify_qp,
    destroy_qp,
    get_async_event,
    ack_async_event,
    wc_status_str,
    event_type_str,
};

#[repr(C)]
struct Context {
    raw: ibv_context,
    nic: Arc<FakeNic>,
}

#[repr(C)]
struct Channel {
    raw: ibv_comp_channel,
    /// The CQ that reports to this channel (one per channel, as `Device` makes them).
    cq: AtomicPtr<Cq>,
}

#[repr(C)]
struct Cq {
    raw: ibv_cq,
    ring: Mutex<VecDeque<Done>>,
    /// `ibv_req_notify_cq` was called: the next completion writes to the channel.
    armed: AtomicBool,
    /// Queue pairs using this CQ: it cannot be destroyed before them.
    qps: AtomicUsize,
}

#[repr(C)]
struct Qp {
    raw: ibv_qp,
    state: AtomicU32,
    max_send_wr: u32,
    max_send_sge: u32,
    /// Posted work requests whose completion was not polled yet (guarded by the CQ's ring
    /// lock, which every change takes).
    outstanding: AtomicU32,
    sig_all: bool,
}

/// A completion waiting in a CQ's ring. `qp` stays valid while it is there: destroying a
/// queue pair removes its completions first.
struct Done {
    wr_id: u64,
    qp: *const Qp,
    status: ibv_wc_status::Type,
    opcode: u32,
    byte_len: u32,
}

fn set_errno(e: c_int) {
    // SAFETY: writes this thread's errno.
    unsafe { *libc::__errno_location() = e };
}

fn eventfd() -> c_int {
    // SAFETY: plain syscall; the descriptor is closed with the object that owns it.
    unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) }
}

/// The device state of a context made by [`open_device`].
///
/// # Safety
/// `ctx` must come from [`open_device`] and not be closed.
unsafe fn nic_of<'a>(ctx: *mut ibv_context) -> &'a FakeNic {
    // SAFETY: the caller's contract; `raw` is the first field of the `repr(C)` `Context`.
    unsafe { &(*(ctx as *const Context)).nic }
}

unsafe extern "C" fn get_device_list(n: *mut c_int) -> *mut *mut ibv_device {
    let nics = REGISTRY.lock();
    // Each entry holds a strong count until `free_device_list`, so a listed device stays
    // valid however the registry changes meanwhile.
    let mut list: Vec<*mut ibv_device> = nics.iter().map(|d| Arc::into_raw(d.clone()) as *mut ibv_device).collect();
    list.push(ptr::null_mut());
    if !n.is_null() {
        // SAFETY: the caller passes a valid out pointer (or NULL, checked).
        unsafe { *n = nics.len() as c_int };
    }
    Box::into_raw(list.into_boxed_slice()).cast()
}

unsafe extern "C" fn free_device_list(list: *mut *mut ibv_device) {
    if list.is_null() {
        return;
    }
    let mut len = 0;
    // SAFETY: `list` is a NULL-terminated array from `get_device_list`.
    while !unsafe { *list.add(len) }.is_null() {
        len += 1;
    }
    for i in 0..len {
        // SAFETY: each entry is an `Arc::into_raw` of `get_device_list`, released once here.
        drop(unsafe { Arc::from_raw(*list.add(i) as *const FakeNic) });
    }
    // SAFETY: the boxed slice of `len + 1` entries made by `get_device_list`, freed once.
    drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(list, len + 1)) });
}

unsafe extern "C" fn get_device_name(dev: *mut ibv_device) -> *const c_char {
    // SAFETY: `dev` is an entry of a live device list: a `FakeNic` kept alive by it.
    unsafe { (*(dev as *const FakeNic)).name.as_ptr() }
}

unsafe extern "C" fn open_device(dev: *mut ibv_device) -> *mut ibv_context {
    let nic = dev as *const FakeNic;
    // SAFETY: `dev` is an entry of a live device list, which holds a strong count; this adds
    // the context's own.
    let nic = unsafe {
        Arc::increment_strong_count(nic);
        Arc::from_raw(nic)
    };
    let async_fd = eventfd();
    if async_fd < 0 {
        return ptr::null_mut();
    }
    // SAFETY: plain-data struct (pointers, fds, a table of optional functions, an opaque
    // mutex); zero is a valid value of each.
    let mut raw: ibv_context = unsafe { std::mem::zeroed() };
    raw.device = dev;
    raw.ops.post_send = Some(post_send);
    raw.ops.poll_cq = Some(poll_cq);
    raw.ops.req_notify_cq = Some(req_notify_cq);
    raw.cmd_fd = -1;
    raw.async_fd = async_fd;
    raw.num_comp_vectors = 1;
    Box::into_raw(Box::new(Context { raw, nic })).cast()
}

unsafe extern "C" fn close_device(ctx: *mut ibv_context) -> c_int {
    // SAFETY: `ctx` is a `Context` from `open_device`, closed once (its objects are gone).
    let ctx = unsafe { Box::from_raw(ctx as *mut Context) };
    // SAFETY: the context's own descriptor, closed once.
    unsafe { libc::close(ctx.raw.async_fd) };
    0
}

unsafe extern "C" fn query_device(_ctx: *mut ibv_context, attr: *mut ibv_device_attr) -> c_int {
    // SAFETY: plain-data struct; zero is valid for each field.
    let mut a: ibv_device_attr = unsafe { std::mem::zeroed() };
    a.max_mr_size = u64::MAX;
    a.max_qp_wr = 1 << 15;
    a.max_sge = MAX_SGE as c_int;
    a.max_cqe = 1 << 22;
    a.max_qp_rd_atom = 16;
    // SAFETY: the caller passes a valid out pointer.
    unsafe { attr.write(a) };
    0
}

unsafe extern "C" fn query_port(ctx: *mut ibv_context, _port: u8, attr: *mut ibv_port_attr) -> c_int {
    // SAFETY: `ctx` is a live context of this fake.
    let nic = unsafe { nic_of(ctx) };
    // SAFETY: plain-data struct; zero is valid for each field.
    let mut a: ibv_port_attr = unsafe { std::mem::zeroed() };
    a.state = ibv_port_state::IBV_PORT_ACTIVE;
    a.max_mtu = ibv_mtu::IBV_MTU_4096;
    a.active_mtu = ibv_mtu::IBV_MTU_4096;
    a.gid_tbl_len = 1;
    a.lid = nic.index as u16 + 1;
    // InfiniBand: `Device` takes GID index 0 without reading sysfs for RoCE types.
    a.link_layer = 1;
    // SAFETY: the caller passes a valid out pointer.
    unsafe { attr.write(a) };
    0
}

unsafe extern "C" fn query_gid(ctx: *mut ibv_context, _port: u8, index: c_int, gid: *mut ibv_gid) -> c_int {
    if index != 0 {
        return libc::EINVAL;
    }
    // SAFETY: `ctx` is a live context of this fake.
    let nic = unsafe { nic_of(ctx) };
    let mut raw = [0u8; 16];
    raw[0] = 0xfe;
    raw[1] = 0x80;
    raw[12..].copy_from_slice(&(nic.index + 1).to_be_bytes());
    // SAFETY: the caller passes a valid out pointer.
    unsafe { gid.write(ibv_gid { raw }) };
    0
}

unsafe extern "C" fn alloc_pd(ctx: *mut ibv_context) -> *mut ibv_pd {
    Box::into_raw(Box::new(ibv_pd { context: ctx, handle: 0 }))
}

unsafe extern "C" fn dealloc_pd(pd: *mut ibv_pd) -> c_int {
    // SAFETY: a PD from `alloc_pd`, released once.
    drop(unsafe { Box::from_raw(pd) });
    0
}

unsafe extern "C" fn create_comp_channel(ctx: *mut ibv_context) -> *mut ibv_comp_channel {
    let fd = eventfd();
    if fd < 0 {
        return ptr::null_mut();
    }
    let raw = ibv_comp_channel { context: ctx, fd, refcnt: 0 };
    Box::into_raw(Box::new(Channel { raw, cq: AtomicPtr::new(ptr::null_mut()) })).cast()
}

unsafe extern "C" fn destroy_comp_channel(channel: *mut ibv_comp_channel) -> c_int {
    // SAFETY: a `Channel` from `create_comp_channel`, released once (after its CQ).
    let channel = unsafe { Box::from_raw(channel as *mut Channel) };
    // SAFETY: the channel's own descriptor, closed once.
    unsafe { libc::close(channel.raw.fd) };
    0
}

unsafe extern "C" fn create_cq(
    ctx: *mut ibv_context,
    cqe: c_int,
    cq_context: *mut c_void,
    channel: *mut ibv_comp_channel,
    _vector: c_int,
) -> *mut ibv_cq {
    if cqe < 1 {
        set_errno(libc::EINVAL);
        return ptr::null_mut();
    }
    // SAFETY: plain-data struct (pointers, counters, opaque mutex and condition); zero is
    // valid for each.
    let mut raw: ibv_cq = unsafe { std::mem::zeroed() };
    raw.context = ctx;
    raw.channel = channel;
    raw.cq_context = cq_context;
    raw.cqe = cqe;
    let cq = Box::into_raw(Box::new(Cq {
        raw,
        ring: Mutex::new(VecDeque::with_capacity(cqe as usize)),
        armed: AtomicBool::new(false),
        qps: AtomicUsize::new(0),
    }));
    if !channel.is_null() {
        // SAFETY: a live `Channel` of this fake.
        unsafe { (*(channel as *const Channel)).cq.store(cq, Ordering::Release) };
    }
    cq.cast()
}

unsafe extern "C" fn destroy_cq(cq: *mut ibv_cq) -> c_int {
    // SAFETY: a live `Cq` of this fake.
    if unsafe { (*(cq as *const Cq)).qps.load(Ordering::Acquire) } != 0 {
        return libc::EBUSY;
    }
    // SAFETY: no queue pair uses it any more; released once.
    let cq = unsafe { Box::from_raw(cq as *mut Cq) };
    if !cq.raw.channel.is_null() {
        let me = &*cq as *const Cq as *mut Cq;
        // SAFETY: the channel outlives its CQ (`Device` destroys the CQ first).
        let slot = unsafe { &(*(cq.raw.channel as *const Channel)).cq };
        let _ = slot.compare_exchange(me, ptr::null_mut(), Ordering::AcqRel, Ordering::Relaxed);
    }
    0
}

unsafe extern "C" fn get_cq_event(
    channel: *mut ibv_comp_channel,
    cq_out: *mut *mut ibv_cq,
    ctx_out: *mut *mut c_void,
) -> c_int {
    // SAFETY: a live `Channel` of this fake.
    let channel = unsafe { &*(channel as *const Channel) };
    let mut value = 0u64;
    // SAFETY: reads 8 bytes into `value` from the channel's own non-blocking eventfd.
    let n = unsafe { libc::read(channel.raw.fd, (&mut value as *mut u64).cast(), 8) };
    let cq = channel.cq.load(Ordering::Acquire);
    if n != 8 || cq.is_null() {
        set_errno(libc::EAGAIN);
        return -1;
    }
    // SAFETY: valid out pointers from the caller; `cq` is the channel's live CQ.
    unsafe {
        *cq_out = cq.cast();
        *ctx_out = (*cq).raw.cq_context;
    }
    0
}

unsafe extern "C" fn ack_cq_events(_cq: *mut ibv_cq, _n: u32) {
    // Nothing to release: the fake counts no unacknowledged events.
}

unsafe extern "C" fn reg_mr(pd: *mut ibv_pd, addr: *mut c_void, len: usize, _access: c_int) -> *mut ibv_mr {
    // SAFETY: a live PD of this fake, on a live context.
    let (ctx, nic) = unsafe { ((*pd).context, nic_of((*pd).context)) };
    let n = nic.next_id();
    // Keys name the device in their top byte, so a key used on the wrong device shows.
    let lkey = (nic.index + 1) << 24 | (n & 0x7f_ffff);
    let mr = ibv_mr { context: ctx, pd, addr, length: len, handle: n, lkey, rkey: lkey | 0x80_0000 };
    // The memory itself is never touched: the fake moves no data.
    Box::into_raw(Box::new(mr))
}

unsafe extern "C" fn dereg_mr(mr: *mut ibv_mr) -> c_int {
    // SAFETY: an MR from `reg_mr`, released once.
    drop(unsafe { Box::from_raw(mr) });
    0
}

unsafe extern "C" fn create_qp(pd: *mut ibv_pd, attr: *mut ibv_qp_init_attr) -> *mut ibv_qp {
    // SAFETY: the caller passes a live PD of this fake and an initialised attribute struct.
    let (ctx, attr) = unsafe { ((*pd).context, &*attr) };
    if attr.send_cq.is_null() || attr.cap.max_send_wr == 0 || attr.cap.max_send_sge > MAX_SGE {
        set_errno(libc::EINVAL);
        return ptr::null_mut();
    }
    // SAFETY: a live context of this fake.
    let nic = unsafe { nic_of(ctx) };
    // SAFETY: plain-data struct (pointers, numbers, opaque mutex and condition); zero is
    // valid for each.
    let mut raw: ibv_qp = unsafe { std::mem::zeroed() };
    raw.context = ctx;
    raw.qp_context = attr.qp_context;
    raw.pd = pd;
    raw.send_cq = attr.send_cq;
    raw.recv_cq = attr.recv_cq;
    raw.qp_num = (nic.index + 1) << 16 | (nic.next_id() & 0xffff);
    raw.state = ibv_qp_state::IBV_QPS_RESET;
    raw.qp_type = attr.qp_type;
    // SAFETY: the send CQ is a live `Cq` of this fake.
    unsafe { (*(attr.send_cq as *const Cq)).qps.fetch_add(1, Ordering::AcqRel) };
    let qp = Qp {
        raw,
        state: AtomicU32::new(ibv_qp_state::IBV_QPS_RESET),
        max_send_wr: attr.cap.max_send_wr,
        max_send_sge: attr.cap.max_send_sge,
        outstanding: AtomicU32::new(0),
        sig_all: attr.sq_sig_all != 0,
    };
    Box::into_raw(Box::new(qp)).cast()
}

unsafe extern "C" fn modify_qp(qp: *mut ibv_qp, attr: *mut ibv_qp_attr, mask: c_int) -> c_int {
    // SAFETY: a live `Qp` of this fake and an initialised attribute struct.
    let (qp, attr) = unsafe { (&*(qp as *const Qp), &*attr) };
    if mask as u32 & ibv_qp_attr_mask::IBV_QP_STATE.0 == 0 {
        return 0;
    }
    use ibv_qp_state as S;
    let now = qp.state.load(Ordering::Acquire);
    let next = attr.qp_state;
    // The transitions the verbs spec allows on an RC queue pair (RESET and ERR from anywhere).
    let allowed = match next {
        S::IBV_QPS_RESET | S::IBV_QPS_ERR => true,
        S::IBV_QPS_INIT => matches!(now, S::IBV_QPS_RESET | S::IBV_QPS_INIT),
        S::IBV_QPS_RTR => now == S::IBV_QPS_INIT,
        S::IBV_QPS_RTS => matches!(now, S::IBV_QPS_RTR | S::IBV_QPS_RTS),
        _ => false,
    };
    if !allowed {
        return libc::EINVAL;
    }
    qp.state.store(next, Ordering::Release);
    0
}

unsafe extern "C" fn destroy_qp(qp: *mut ibv_qp) -> c_int {
    let me = qp as *const Qp;
    // SAFETY: a live `Qp` of this fake, destroyed once.
    let qp = unsafe { Box::from_raw(qp as *mut Qp) };
    // SAFETY: the send CQ outlives its queue pairs (`destroy_cq` refuses while any is left).
    let cq = unsafe { &*(qp.raw.send_cq as *const Cq) };
    // Its completions go with it, so that no ring entry points at a freed queue pair.
    cq.ring.lock().retain(|d| d.qp != me);
    cq.qps.fetch_sub(1, Ordering::AcqRel);
    0
}

unsafe extern "C" fn get_async_event(_ctx: *mut ibv_context, _event: *mut ibv_async_event) -> c_int {
    // A fake device has no port to lose: nothing is ever pending on its non-blocking fd.
    set_errno(libc::EAGAIN);
    -1
}

unsafe extern "C" fn ack_async_event(_event: *mut ibv_async_event) {
    // No event is ever handed out.
}

unsafe extern "C" fn wc_status_str(status: ibv_wc_status::Type) -> *const c_char {
    let text: &CStr = match status {
        ibv_wc_status::IBV_WC_SUCCESS => c"success",
        ibv_wc_status::IBV_WC_WR_FLUSH_ERR => c"Work Request Flushed Error",
        _ => c"fake device error",
    };
    text.as_ptr()
}

unsafe extern "C" fn event_type_str(_event: ibv_event_type::Type) -> *const c_char {
    c"fake device event".as_ptr()
}
