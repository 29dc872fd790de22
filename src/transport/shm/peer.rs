//! The initiator's attachment to one same-host target: its control block mapped here, the slots
//! this process holds in it, and the checked single copy (`process_vm_readv`/`writev`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;

use super::control::{ControlMap, MAGIC};
use crate::metadata::ShmOffer;
use crate::transport::log_limit::LogLimit;
use crate::transport::{Opcode, Slice};

/// Most slices one system call moves (Linux takes up to `IOV_MAX` = 1024).
pub const IOVS_PER_CALL: usize = 64;

/// Why attaching was refused (the engine then uses TCP).
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("the target runs on another kernel (boot_id differs)")]
    OtherHost,
    #[error("cannot open the target's control block: {0}")]
    Open(std::io::Error),
    #[error("the control block does not belong to the advertised process")]
    Mismatch,
    #[error("cross-memory access to the target is not permitted: {0}")]
    NotPermitted(std::io::Error),
    #[error("the target's control block has no free slot")]
    NoSlot,
}

/// See the module documentation.
pub struct ShmPeer {
    pub offer: ShmOffer,
    map: ControlMap,
    pid: libc::pid_t,
    /// Slots this process holds and is not using right now.
    free_slots: Mutex<Vec<usize>>,
    /// Every slot this process holds (used or not).
    owned: Mutex<Vec<usize>>,
    next_op: AtomicU64,
    /// Set when the kernel refused access or the target cut us off: use TCP from now on.
    broken: AtomicBool,
    pub completed: AtomicU64,
    pub failed: AtomicU64,
    pub bytes: AtomicU64,
    warnings: LogLimit,
}

impl std::fmt::Debug for ShmPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "shm(pid {})", self.offer.pid)
    }
}

/// This kernel's boot id (same host test).
pub fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok().map(|s| s.trim().to_string())
}

impl ShmPeer {
    /// Attaches to the target `offer` describes, proving it is that process on this kernel and
    /// that this process may access its memory.
    pub fn attach(offer: &ShmOffer, our_boot_id: Option<&str>) -> Result<ShmPeer, AttachError> {
        if our_boot_id != Some(offer.boot_id.as_str()) {
            return Err(AttachError::OtherHost);
        }
        let path = format!("/proc/{}/fd/{}", offer.pid, offer.fd);
        let file = std::fs::OpenOptions::new().read(true).write(true).open(&path).map_err(AttachError::Open)?;
        let map = ControlMap::map(file).map_err(AttachError::Open)?;
        let (magic, nonce, pid) = map.header();
        if magic != MAGIC || format!("{:016x}{:016x}", nonce[0], nonce[1]) != offer.nonce || pid != offer.pid {
            return Err(AttachError::Mismatch);
        }
        let peer = ShmPeer {
            offer: offer.clone(),
            map,
            pid: offer.pid as libc::pid_t,
            free_slots: Mutex::new(Vec::new()),
            owned: Mutex::new(Vec::new()),
            next_op: AtomicU64::new(1),
            broken: AtomicBool::new(false),
            completed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            warnings: LogLimit::new(std::time::Duration::from_secs(1)),
        };
        // The same words through the target's address space: this proves the pid is the
        // target's (not another process in another pid namespace) and that the kernel lets us in.
        let mut probe = [0u64; 3];
        let local = libc::iovec { iov_base: probe.as_mut_ptr().cast(), iov_len: 24 };
        let remote = libc::iovec { iov_base: offer.control_addr as *mut libc::c_void, iov_len: 24 };
        // SAFETY: reads 24 bytes of the target into `probe`, which we own and which is 24 bytes.
        let n = unsafe { libc::process_vm_readv(peer.pid, &local, 1, &remote, 1, 0) };
        if n < 0 {
            return Err(AttachError::NotPermitted(std::io::Error::last_os_error()));
        }
        if n != 24 || probe != [magic, nonce[0], nonce[1]] {
            return Err(AttachError::Mismatch);
        }
        let slot = peer.map.claim_slot(std::process::id(), &[]).ok_or(AttachError::NoSlot)?;
        peer.owned.lock().push(slot);
        peer.free_slots.lock().push(slot);
        Ok(peer)
    }

    /// False once this peer must not be used any more (cut off, refused, closed).
    pub fn usable(&self) -> bool {
        !self.broken.load(Ordering::Acquire) && !self.map.closed()
    }

    fn take_slot(&self) -> Option<usize> {
        if let Some(s) = self.free_slots.lock().pop() {
            return Some(s);
        }
        let mut owned = self.owned.lock();
        let slot = self.map.claim_slot(std::process::id(), &owned)?;
        owned.push(slot);
        Some(slot)
    }

    fn give_slot(&self, slot: usize) {
        self.free_slots.lock().push(slot);
    }

    /// Moves `slices` (at most [`IOVS_PER_CALL`], one opcode) and reports each one.
    pub fn run(&self, slices: Vec<Slice>) {
        debug_assert!(slices.len() <= IOVS_PER_CALL);
        let Some(slot) = self.take_slot() else {
            if let Some(n) = self.warnings.allow() {
                tracing::warn!(
                    pid = self.offer.pid,
                    similar_since_last = n,
                    "same-host copy: no free slot in the target's control block"
                )
            }
            return self.fail_all(slices);
        };
        let op = self.next_op.fetch_add(1, Ordering::Relaxed);
        self.map.begin_op(slot, op);
        if self.map.cut_off(slot) || self.map.closed() {
            self.map.end_op(slot);
            self.give_slot(slot);
            self.broken.store(true, Ordering::Release);
            tracing::warn!(
                pid = self.offer.pid,
                "same-host target cut this process off or closed; using tcp from now on"
            );
            return self.fail_all(slices);
        }
        let mut local = [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; IOVS_PER_CALL];
        let mut remote = local;
        let mut chosen = [usize::MAX; IOVS_PER_CALL];
        let mut n = 0usize;
        let mut verdict = [false; IOVS_PER_CALL];
        for (i, s) in slices.iter().enumerate() {
            match self.map.contains(s.remote, s.len) {
                Some(true) => {
                    local[n] = libc::iovec { iov_base: s.local as *mut libc::c_void, iov_len: s.len as usize };
                    remote[n] = libc::iovec { iov_base: s.remote as *mut libc::c_void, iov_len: s.len as usize };
                    chosen[n] = i;
                    n += 1;
                }
                _ => {
                    if let Some(k) = self.warnings.allow() {
                        tracing::warn!(
                            pid = self.offer.pid,
                            addr = format_args!("{:#x}", s.remote),
                            len = s.len,
                            similar_since_last = k,
                            "same-host transfer refused: range is not inside one region the target registered"
                        )
                    }
                }
            }
        }
        let mut moved = 0usize;
        let mut error = None;
        if n > 0 {
            let opcode = slices[chosen[0]].opcode;
            // SAFETY: every local range lies in a region this engine registered (checked at
            // submission); every remote range lies in a region the target lists as remotely
            // accessible, and our busy slot keeps the target's unregister from returning until
            // this call is over. The kernel checks both address spaces page by page.
            let rc = unsafe {
                match opcode {
                    Opcode::Write => {
                        libc::process_vm_writev(self.pid, local.as_ptr(), n as _, remote.as_ptr(), n as _, 0)
                    }
                    Opcode::Read => {
                        libc::process_vm_readv(self.pid, local.as_ptr(), n as _, remote.as_ptr(), n as _, 0)
                    }
                }
            };
            if rc < 0 {
                error = Some(std::io::Error::last_os_error());
            } else {
                moved = rc as usize;
            }
        }
        self.map.end_op(slot);
        self.give_slot(slot);
        if let Some(e) = &error
            && matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::ESRCH) | Some(libc::EACCES))
        {
            self.broken.store(true, Ordering::Release);
            tracing::warn!(pid = self.offer.pid, "same-host copy refused by the kernel ({e}); using tcp from now on");
        } else if let Some(e) = &error
            && let Some(k) = self.warnings.allow()
        {
            tracing::warn!(pid = self.offer.pid, similar_since_last = k, "same-host copy failed: {e}");
        }
        // The kernel moves iovecs in order: the first `moved` bytes are the completed prefix.
        let mut left = moved;
        for k in 0..n {
            let len = local[k].iov_len;
            verdict[chosen[k]] = left >= len;
            left = left.saturating_sub(len);
        }
        if moved < local[..n].iter().map(|v| v.iov_len).sum::<usize>()
            && error.is_none()
            && let Some(k) = self.warnings.allow()
        {
            tracing::warn!(
                pid = self.offer.pid,
                moved,
                similar_since_last = k,
                "same-host copy moved fewer bytes than asked (a page is gone)"
            );
        }
        for (i, s) in slices.into_iter().enumerate() {
            let ok = verdict[i];
            if ok {
                self.completed.fetch_add(1, Ordering::Relaxed);
                self.bytes.fetch_add(s.len, Ordering::Relaxed);
            } else {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
            s.finish(ok);
        }
    }

    fn fail_all(&self, slices: Vec<Slice>) {
        self.failed.fetch_add(slices.len() as u64, Ordering::Relaxed);
        slices.into_iter().for_each(|s| s.finish(false));
    }
}

/// A route to one attached target (compared by identity).
#[derive(Clone)]
pub struct ShmRoute(pub Arc<ShmPeer>);

impl PartialEq for ShmRoute {
    fn eq(&self, other: &ShmRoute) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
impl Eq for ShmRoute {}

impl std::fmt::Debug for ShmRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
