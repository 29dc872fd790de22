//! The buffers of the request path that keep it from allocating: `dispatch`'s per-thread
//! groups of works per endpoint ([`Scratch`]) and one doorbell's chain of work requests in
//! fixed arrays ([`Chain`]).

use std::cell::Cell;
use std::collections::VecDeque;
use std::mem::MaybeUninit;
use std::sync::Arc;

use super::endpoint::MAX_SGE;
use super::path::{Ep, Prepared};
use super::stripe::Stripe;
use super::verbs::{self, ibv_send_wr, ibv_sge};
use crate::transport::Opcode;

/// Work requests per doorbell (one `ibv_post_send` chain on one queue pair).
pub(super) const CHAIN_LEN: usize = 32;

/// The works of one `dispatch` call bound for one endpoint.
pub(super) struct Group {
    pub(super) key: (u64, usize, usize),
    /// Taken when the group is handed to its endpoint.
    pub(super) ep: Option<Arc<Ep>>,
    pub(super) list: VecDeque<Prepared>,
}

/// `dispatch`'s buffers, kept per thread between calls so that routing a submission allocates
/// nothing once they have grown. A nested call (a retry from inside `dispatch`) finds none and
/// uses fresh ones. Kept empty between calls: no endpoint or work stays in them.
#[derive(Default)]
pub(super) struct Scratch {
    /// `groups[..used]` are this call's; the rest keep their lists' capacity.
    pub(super) groups: Vec<Group>,
    pub(super) used: usize,
    pub(super) stripe: Stripe,
}

/// Groups (and works per group) a thread keeps between calls; beyond them buffers are freed.
const KEPT_GROUPS: usize = 64;
const KEPT_WORKS: usize = 1024;

thread_local! {
    static SCRATCH: Cell<Option<Scratch>> = const { Cell::new(None) };
}

impl Scratch {
    pub(super) fn take() -> Scratch {
        SCRATCH.try_with(Cell::take).ok().flatten().unwrap_or_default()
    }

    pub(super) fn put_back(mut self) {
        for g in &mut self.groups[..self.used] {
            g.ep = None;
            if g.list.capacity() > KEPT_WORKS {
                g.list = VecDeque::new();
            }
        }
        self.groups.truncate(KEPT_GROUPS);
        self.used = 0;
        self.stripe.clear();
        // Fails only while the thread is exiting; the buffers are then simply dropped.
        let _ = SCRATCH.try_with(|c| c.set(Some(self)));
    }

    /// The group of `key` in this call. A linear search: a call has at most one group per
    /// NIC pair (and peer) it uses.
    pub(super) fn group_of(&self, key: (u64, usize, usize)) -> Option<usize> {
        self.groups[..self.used].iter().position(|g| g.key == key)
    }

    pub(super) fn add_group(&mut self, key: (u64, usize, usize), ep: Arc<Ep>) -> usize {
        let i = self.used;
        match self.groups.get_mut(i) {
            Some(g) => {
                g.key = key;
                g.ep = Some(ep);
            }
            None => self.groups.push(Group { key, ep: Some(ep), list: VecDeque::new() }),
        }
        self.used += 1;
        i
    }
}

/// One doorbell's work requests, built in fixed arrays (posting allocates nothing). The
/// scatter-list pointers and ids are filled in by [`Chain::requests`], so the chain may move
/// between building and posting.
pub(super) struct Chain {
    wrs: [MaybeUninit<ibv_send_wr>; CHAIN_LEN],
    sges: [MaybeUninit<[ibv_sge; MAX_SGE as usize]>; CHAIN_LEN],
    ids: [usize; CHAIN_LEN],
    len: usize,
}

impl Chain {
    pub(super) fn new() -> Chain {
        // Uninitialised storage: a chain is built per post, and zeroing 6 KiB each time would
        // cost more than the requests themselves.
        Chain {
            wrs: [const { MaybeUninit::uninit() }; CHAIN_LEN],
            sges: [const { MaybeUninit::uninit() }; CHAIN_LEN],
            ids: [0; CHAIN_LEN],
            len: 0,
        }
    }

    pub(super) fn clear(&mut self) {
        self.len = 0;
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(super) fn is_full(&self) -> bool {
        self.len == CHAIN_LEN
    }

    /// Appends the request of `p` on local device `device` (the chain is not full); returns
    /// its position.
    pub(super) fn push(&mut self, p: &Prepared, device: usize) -> usize {
        let at = self.len;
        let s = &p.work.slice;
        let mut sges = [ibv_sge { addr: 0, length: 0, lkey: 0 }; MAX_SGE as usize];
        let mut n = 0;
        // At most MAX_SGE pieces: `prepare` refused longer lists.
        for ((chunk, addr, len), sge) in p.binding.region.pieces(s.local as u64, s.len).zip(&mut sges) {
            *sge = ibv_sge { addr, length: len as u32, lkey: chunk.mrs.get(device).map_or(0, |m| m.lkey) };
            n += 1;
        }
        self.sges[at].write(sges);
        self.wrs[at].write(work_request(p, n));
        self.len += 1;
        at
    }

    pub(super) fn set_id(&mut self, at: usize, id: usize) {
        self.ids[at] = id;
    }

    /// The requests pushed so far, with their ids and scatter lists in place.
    pub(super) fn requests(&mut self) -> &mut [ibv_send_wr] {
        let len = self.len;
        // SAFETY: `push` initialised the first `len` entries of `wrs` (and of `sges`, which the
        // provider reads through `sg_list`); `ibv_send_wr` is plain data without drop glue.
        let wrs = unsafe { std::slice::from_raw_parts_mut(self.wrs.as_mut_ptr().cast::<ibv_send_wr>(), len) };
        for ((wr, sges), &id) in wrs.iter_mut().zip(self.sges.iter_mut()).zip(&self.ids) {
            wr.wr_id = id as u64;
            wr.sg_list = sges.as_mut_ptr().cast::<ibv_sge>();
        }
        wrs
    }

    /// Ids of the requests from position `first` on (the ones a failed post did not take).
    pub(super) fn ids_from(&self, first: usize) -> &[usize] {
        &self.ids[first.min(self.len)..self.len]
    }
}

pub(super) fn work_request(p: &Prepared, nsge: usize) -> ibv_send_wr {
    // SAFETY: plain-data struct (pointers null, unions zero); every field used is set below
    // (`wr_id` and `sg_list` by `Chain::requests`).
    let mut wr: ibv_send_wr = unsafe { std::mem::zeroed() };
    wr.num_sge = nsge as i32;
    wr.opcode = match p.work.slice.opcode {
        Opcode::Read => verbs::ibv_wr_opcode::IBV_WR_RDMA_READ,
        Opcode::Write => verbs::ibv_wr_opcode::IBV_WR_RDMA_WRITE,
    };
    wr.send_flags = verbs::ibv_send_flags::IBV_SEND_SIGNALED.0;
    // The `rdma` member of the `wr` union is the one RDMA READ and WRITE use.
    wr.wr.rdma.remote_addr = p.work.slice.remote;
    wr.wr.rdma.rkey = p.binding.rkey;
    wr
}
