//! The target side of the same-host path: this engine's control block, kept equal to its
//! remotely accessible regions, and the revocation that makes `unregisterLocalMemory` final.
//!
//! Revoking (DESIGN.md's rule for single copy): the new table is published first, then every
//! slot that was busy at that moment is waited for; a busy slot whose op ends (or whose process
//! dies, dropping its lock) may have seen the old table, but its bytes have then landed. A copier
//! that stays busy past the timeout is cut off: its slot is flagged, and this process becomes
//! non-dumpable, which makes the kernel refuse cross-memory access from unprivileged processes
//! until every cut-off copier has finished or died. Copiers with `CAP_SYS_PTRACE` (root) are not
//! stopped by that flag, so for them the wait goes on (logged every second) until their op
//! ends or their process exits: returning earlier could let a byte land after the call.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::control::{BYTES, ControlMap, SLOTS};
use crate::metadata::ShmOffer;

/// See the module documentation.
pub struct ShmExport {
    inner: Arc<Inner>,
    offer: ShmOffer,
    revoke_timeout: Duration,
}

struct Inner {
    map: ControlMap,
    /// Serialises table writers, and holds the slots cut off and not yet cleared.
    state: Mutex<ExportState>,
}

#[derive(Default)]
struct ExportState {
    /// (slot, op) pairs cut off while busy; the process stays non-dumpable until they clear.
    cut_off: Vec<(usize, u64)>,
    /// `PR_GET_DUMPABLE` before the first cut-off.
    dumpable_before: Option<i32>,
    /// A thread watches the cut-off copiers and restores dumpability when they are done.
    watcher: bool,
}

impl ShmExport {
    /// Creates the control block. `None` (logged) where memfd or `/proc` is unavailable: the
    /// engine then simply offers no same-host path.
    pub fn create(revoke_timeout: Duration) -> Option<ShmExport> {
        match Self::try_create(revoke_timeout) {
            Ok(e) => Some(e),
            Err(e) => {
                tracing::info!("same-host transport not offered: {e}");
                None
            }
        }
    }

    fn try_create(revoke_timeout: Duration) -> std::io::Result<ShmExport> {
        let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")?.trim().to_string();
        // Sealed against shrinking: initiators map only such a block (`control.rs`).
        let fd = crate::sys::mapping::memfd_unshrinkable(c"mooncake-shm-control", BYTES as u64)?;
        let file = File::from(fd);
        let raw_fd = file.as_raw_fd();
        let map = ControlMap::map(file)?;
        let nonce = [rand::random::<u64>(), rand::random::<u64>()];
        let pid = std::process::id();
        map.init_header(nonce, pid);
        allow_same_user_ptrace();
        let offer = ShmOffer {
            boot_id,
            pid,
            fd: raw_fd,
            nonce: format!("{:016x}{:016x}", nonce[0], nonce[1]),
            control_addr: map.addr(),
        };
        let inner = Arc::new(Inner { map, state: Mutex::new(ExportState::default()) });
        Ok(ShmExport { inner, offer, revoke_timeout })
    }

    /// What the descriptor advertises.
    pub fn offer(&self) -> ShmOffer {
        self.offer.clone()
    }

    /// Publishes the regions `current` returns (sorted, remotely accessible) as the table;
    /// when `revoking`, returns only once no copier can still write into a range that left the
    /// table. `current` runs under the writers' lock, so concurrent calls cannot publish an
    /// older snapshot over a newer one.
    pub fn sync(&self, current: impl FnOnce() -> Vec<(u64, u64)>, revoking: bool) {
        let mut state = self.inner.state.lock();
        self.inner.map.write_regions(&current());
        if revoking {
            self.quiesce(&mut state);
        }
    }

    /// Stops offering the path: empties the table and waits for copies in flight.
    pub fn close(&self) {
        let mut state = self.inner.state.lock();
        self.inner.map.set_closed();
        self.inner.map.write_regions(&[]);
        self.quiesce(&mut state);
    }

    /// Returns once every slot busy now has ended its op, lost its owner, or been cut off in a
    /// way the kernel enforces (see the module doc).
    fn quiesce(&self, state: &mut ExportState) {
        let map = &self.inner.map;
        let mut busy: Vec<(usize, u64)> = (0..SLOTS)
            .filter_map(|slot| {
                let op = map.slot_state(slot);
                (op != 0 && map.slot_held(slot)).then_some((slot, op))
            })
            .collect();
        let start = Instant::now();
        let mut last_warning = start;
        let mut spins = 0u32;
        loop {
            busy.retain(|&(slot, op)| self.inner.still_busy(slot, op));
            if start.elapsed() >= self.revoke_timeout {
                // Those the cut-off stops no longer count; the privileged ones are waited for.
                busy = self.cut_off(state, &busy);
            }
            if busy.is_empty() {
                break;
            }
            if busy.iter().any(|&(s, _)| state.cut_off.iter().any(|&(c, _)| c == s))
                && last_warning.elapsed() >= Duration::from_secs(1)
            {
                last_warning = Instant::now();
                let pids: Vec<u32> = busy.iter().map(|&(s, _)| map.slot_pid(s)).collect();
                tracing::warn!(
                    ?pids,
                    waited_ms = start.elapsed().as_millis() as u64,
                    "unregister is waiting for stalled same-host copiers that the kernel lets \
                     bypass the cut-off (CAP_SYS_PTRACE); it returns when their copy ends or \
                     they exit"
                );
            }
            spins += 1;
            if spins < 200 {
                std::hint::spin_loop();
            } else {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
        self.inner.clear_cut_offs(state);
    }

    /// Cuts `busy` off; returns those the kernel will not stop (privileged copiers).
    fn cut_off(&self, state: &mut ExportState, busy: &[(usize, u64)]) -> Vec<(usize, u64)> {
        let map = &self.inner.map;
        let fresh: Vec<(usize, u64)> = busy.iter().copied().filter(|b| !state.cut_off.contains(b)).collect();
        if fresh.is_empty() {
            return busy.iter().copied().filter(|&(s, _)| can_bypass_cut_off(map.slot_pid(s))).collect();
        }
        for &(slot, op) in &fresh {
            map.set_cut_off(slot);
            state.cut_off.push((slot, op));
        }
        if state.dumpable_before.is_none() {
            // SAFETY: prctl with integer arguments only reads its arguments.
            let before = unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) };
            // SAFETY: as above.
            unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
            state.dumpable_before = Some(before);
        }
        let pids: Vec<u32> = fresh.iter().map(|&(s, _)| map.slot_pid(s)).collect();
        tracing::warn!(
            ?pids,
            timeout_ms = self.revoke_timeout.as_millis() as u64,
            "same-host copiers did not finish within the revoke timeout: cut off (this process is \
             non-dumpable until they finish or exit)"
        );
        if !state.watcher {
            state.watcher = true;
            let inner = self.inner.clone();
            let spawned = std::thread::Builder::new().name("mc-shm-cutoff".into()).spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_millis(20));
                    let mut state = inner.state.lock();
                    inner.clear_cut_offs(&mut state);
                    if state.cut_off.is_empty() {
                        state.watcher = false;
                        return;
                    }
                }
            });
            if spawned.is_err() {
                state.watcher = false; // cleared by the next revoke instead
            }
        }
        busy.iter().copied().filter(|&(s, _)| can_bypass_cut_off(map.slot_pid(s))).collect()
    }
}

impl Inner {
    fn still_busy(&self, slot: usize, op: u64) -> bool {
        self.map.slot_state(slot) == op && self.map.slot_held(slot)
    }

    /// Restores dumpability once no cut-off copier is still in its op.
    fn clear_cut_offs(&self, state: &mut ExportState) {
        state.cut_off.retain(|&(slot, op)| self.still_busy(slot, op));
        if state.cut_off.is_empty()
            && let Some(before) = state.dumpable_before.take()
        {
            // SAFETY: prctl with integer arguments only reads its arguments.
            unsafe { libc::prctl(libc::PR_SET_DUMPABLE, before.max(0) as libc::c_ulong, 0, 0, 0) };
            tracing::info!("same-host cut-off cleared");
        }
    }
}

impl Drop for ShmExport {
    fn drop(&mut self) {
        self.close();
    }
}

/// True when process `pid` may have `CAP_SYS_PTRACE` (or cannot be inspected): the kernel lets
/// such a process access a non-dumpable one, so a cut-off does not stop it.
fn can_bypass_cut_off(pid: u32) -> bool {
    const CAP_SYS_PTRACE: u32 = 19;
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return true };
    let cap_eff =
        status.lines().find_map(|l| l.strip_prefix("CapEff:")).and_then(|v| u64::from_str_radix(v.trim(), 16).ok());
    cap_eff.is_none_or(|c| c & (1 << CAP_SYS_PTRACE) != 0)
}

/// Under Yama's `ptrace_scope = 1`, cross-memory access needs the target's consent: offering
/// the same-host path is that consent (to processes of the same user; other users and higher
/// scopes are still refused, and peers fall back to TCP).
fn allow_same_user_ptrace() {
    // SAFETY: prctl with integer arguments; fails harmlessly (EINVAL) without Yama.
    unsafe { libc::prctl(libc::PR_SET_PTRACER, libc::PR_SET_PTRACER_ANY, 0, 0, 0) };
}
