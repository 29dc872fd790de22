//! The fake device's data path: the `ops` table's `post_send`, `poll_cq` and `req_notify_cq`
//! that the transport's `verbs::post_send`, `poll_cq` and `req_notify_cq` call through.

use super::*;

/// The `ops.post_send` of every fake context. Accepts the chain up to the first request it
/// refuses (`*bad` then points at it), as providers do.
pub(super) unsafe extern "C" fn post_send(qp: *mut ibv_qp, wr: *mut ibv_send_wr, bad: *mut *mut ibv_send_wr) -> c_int {
    // SAFETY: `ibv_post_send` passes a live `Qp` of this fake, whose send CQ is a live `Cq`
    // and whose context is a live `Context`.
    let (q, cq, nic) = unsafe {
        let q = &*(qp as *const Qp);
        (q, &*(q.raw.send_cq as *const Cq), nic_of(q.raw.context))
    };
    let state = q.state.load(Ordering::Acquire);
    let status = match state {
        ibv_qp_state::IBV_QPS_RTS => ibv_wc_status::IBV_WC_SUCCESS,
        ibv_qp_state::IBV_QPS_ERR => ibv_wc_status::IBV_WC_WR_FLUSH_ERR,
        _ => {
            // SAFETY: valid out pointer from the caller.
            unsafe { *bad = wr };
            return libc::EINVAL;
        }
    };
    let recording = nic.recording.load(Ordering::Acquire);
    let mut ring = cq.ring.lock();
    let mut accepted = 0;
    let mut cur = wr;
    let mut rc = 0;
    while !cur.is_null() {
        // SAFETY: `cur` is an element of the caller's chain of initialised work requests.
        let w = unsafe { &*cur };
        let (read, opcode) = match w.opcode {
            ibv_wr_opcode::IBV_WR_RDMA_WRITE => (false, ibv_wc_opcode::IBV_WC_RDMA_WRITE),
            ibv_wr_opcode::IBV_WR_RDMA_READ => (true, ibv_wc_opcode::IBV_WC_RDMA_READ),
            _ => {
                rc = libc::EINVAL;
                break;
            }
        };
        if w.num_sge < 0 || w.num_sge as u32 > q.max_send_sge || (w.num_sge > 0 && w.sg_list.is_null()) {
            rc = libc::EINVAL;
            break;
        }
        let outstanding = q.outstanding.load(Ordering::Relaxed);
        if outstanding >= q.max_send_wr {
            rc = libc::ENOMEM;
            break;
        }
        let sges = if w.num_sge == 0 {
            &[][..]
        } else {
            // SAFETY: `sg_list` holds `num_sge` initialised entries (checked non-null above).
            unsafe { std::slice::from_raw_parts(w.sg_list, w.num_sge as usize) }
        };
        let byte_len = sges.iter().map(|s| s.length).fold(0u32, u32::wrapping_add);
        // SAFETY: for RDMA READ and WRITE the `rdma` member of the union is the one set.
        let rdma = unsafe { w.wr.rdma };
        if recording && let Some(log) = nic.log.lock().as_mut() {
            log.push(PostedWr {
                wr_id: w.wr_id,
                qp_num: q.raw.qp_num,
                read,
                remote_addr: rdma.remote_addr,
                rkey: rdma.rkey,
                sges: sges.iter().map(|s| (s.addr, s.length, s.lkey)).collect(),
            });
        }
        let signaled = q.sig_all || w.send_flags & ibv_send_flags::IBV_SEND_SIGNALED.0 != 0;
        if signaled {
            if ring.len() >= cq.raw.cqe as usize {
                nic.overruns.fetch_add(1, Ordering::Relaxed);
            }
            q.outstanding.store(outstanding + 1, Ordering::Relaxed);
            ring.push_back(Done { wr_id: w.wr_id, qp: q, status, opcode, byte_len });
        }
        // An unsignaled request completes silently: its slot is free at once.
        accepted += 1;
        cur = w.next;
    }
    drop(ring);
    nic.posted.fetch_add(accepted, Ordering::Relaxed);
    if rc != 0 {
        // SAFETY: valid out pointer from the caller; `cur` is the refused request.
        unsafe { *bad = cur };
    }
    let channel = cq.raw.channel;
    if accepted > 0 && !channel.is_null() && cq.armed.load(Ordering::Relaxed) && cq.armed.swap(false, Ordering::AcqRel)
    {
        let one = 1u64;
        // SAFETY: writes 8 bytes to the live channel's own eventfd (a full counter only fails).
        unsafe { libc::write((*channel).fd, (&one as *const u64).cast(), 8) };
    }
    rc
}

/// The `ops.poll_cq` of every fake context: up to `n` completions, oldest first.
pub(super) unsafe extern "C" fn poll_cq(cq: *mut ibv_cq, n: c_int, wc: *mut ibv_wc) -> c_int {
    // SAFETY: `ibv_poll_cq` passes a live `Cq` of this fake.
    let cq = unsafe { &*(cq as *const Cq) };
    let mut ring = cq.ring.lock();
    let take = ring.len().min(n.max(0) as usize);
    for (i, d) in ring.drain(..take).enumerate() {
        // SAFETY: a completion's queue pair is live while it is in the ring (see `Done`).
        let q = unsafe { &*d.qp };
        q.outstanding.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: plain-data struct; zero is valid for each field.
        let mut out: ibv_wc = unsafe { std::mem::zeroed() };
        out.wr_id = d.wr_id;
        out.status = d.status;
        out.opcode = d.opcode;
        out.byte_len = d.byte_len;
        out.qp_num = q.raw.qp_num;
        // SAFETY: the caller's array has room for `n` >= `take` entries.
        unsafe { wc.add(i).write(out) };
    }
    take as c_int
}

/// The `ops.req_notify_cq` of every fake context: the next completion signals the channel.
pub(super) unsafe extern "C" fn req_notify_cq(cq: *mut ibv_cq, _solicited_only: c_int) -> c_int {
    // SAFETY: `ibv_req_notify_cq` passes a live `Cq` of this fake.
    unsafe { (*(cq as *const Cq)).armed.store(true, Ordering::Release) };
    0
}
