//! Extra segments of a real client (Mooncake's `mount_segment`, `allocate_and_mount_segment`,
//! `unmount_segment`, `unmount_and_free_segment`).
//!
//! A segment id is Mooncake's text of a UUID, `"<first>-<second>"` (two decimal `u64`s; ours
//! are the two halves of the 128-bit id the master knows the segment by). `mount_segment` maps
//! `size` bytes of the file at `path` from `offset` (page-aligned) shared, so what the store
//! writes lands in the file (a file on `/dev/shm`, hugetlbfs, a DAX device); the range must lie
//! in the file. `allocate_and_mount_segment` maps anonymous memory, `size` rounded up to 16 MiB
//! (Mooncake's slab size). Both register the memory with the engine (`location`, or `"*"`)
//! and mount it with the master under this client's segment name, so replicas placed there
//! are this client's like those of its first segment. Each call mounts one segment (Mooncake
//! splits only for its efa/cxi/ub transports). A size of 0 mounts nothing and succeeds for a
//! file (Mooncake's loop runs zero times) and fails for an allocation, as Mooncake's.
//!
//! Unmounting takes the ids of the matching kind only (a file segment is not freed by
//! `unmount_and_free_segment`, nor an allocated one unmounted by `unmount_segment`): an id that
//! does not parse or that this client did not mount that way is -1 (logged), and the others
//! are still unmounted; the first failure is returned. With `grace_period_seconds` 0 the
//! segment is unmounted at once (its objects lose that replica) and its memory released once
//! no reader holds a lease on it. With a grace period the master places nothing new there,
//! its objects stay readable, and the segment is unmounted when the period ends (or when the
//! client closes); unmounting it again meanwhile is `INVALID_PARAMS`, as Mooncake's (its
//! client no longer lists the segment as mounted).

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::client::{Inner, Mounted, RealClient};
use super::{ErrorCode, StoreError, StoreResult};
use crate::proto::{Request, Response, SegmentId};
use crate::sys::mapping::Mapping;

/// The slab size of Mooncake's allocator (16 MiB, as the wheel's `allocated_size` shows):
/// allocated segments are whole slabs.
pub const SLAB: u64 = 16 << 20;

/// The longest the memory of an unmounted segment is kept for readers holding leases.
const MAX_LEASE_WAIT: Duration = Duration::from_secs(10);

/// How a segment was added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtraKind {
    /// `mount_segment`: a mapped file.
    File,
    /// `allocate_and_mount_segment`: anonymous memory.
    Allocated,
}

/// The extra segments of a client, by id.
#[derive(Debug, Default)]
pub struct ExtraSegments {
    kinds: Mutex<HashMap<SegmentId, ExtraKind>>,
    /// Segments waiting for their grace period to end.
    draining: Mutex<std::collections::HashSet<SegmentId>>,
}

/// Mooncake's text of a segment id.
pub fn id_text(id: SegmentId) -> String {
    format!("{}-{}", (id >> 64) as u64, id as u64)
}

/// Parses Mooncake's text of a segment id.
pub fn parse_id(text: &str) -> Option<SegmentId> {
    let (a, b) = text.split_once('-')?;
    let parse =
        |s: &str| if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) { None } else { s.parse::<u64>().ok() };
    Some((u128::from(parse(a)?) << 64) | u128::from(parse(b)?))
}

impl RealClient {
    /// Maps `size` bytes of the file at `path` from `offset` and mounts them; the ids mounted.
    pub fn mount_file_segment(
        &self,
        path: &str,
        size: u64,
        offset: u64,
        protocol: &str,
        location: &str,
    ) -> StoreResult<Vec<String>> {
        let inner = self.inner.live()?;
        let failed = |m: String| {
            tracing::error!("mount_segment: {m}");
            StoreError::new(ErrorCode::InternalError, m)
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| failed(format!("open {path:?}: {e}")))?;
        let file_len = file.metadata().map_err(|e| failed(format!("fstat {path:?}: {e}")))?.len();
        if offset > file_len || size > file_len - offset {
            return Err(failed(format!("bytes {offset}+{size} exceed the {file_len} bytes of {path:?}")));
        }
        let page = crate::topology::pages::page_size();
        if !offset.is_multiple_of(page) {
            return Err(failed(format!("offset {offset} is not page-aligned ({page})")));
        }
        if size == 0 {
            return Ok(Vec::new());
        }
        let memory = Mapping::file(file.as_fd(), offset, size).map_err(|e| failed(e.to_string()))?;
        let id = self.add_segment(inner, memory, protocol, location, ExtraKind::File).map_err(|e| failed(e.message))?;
        Ok(vec![id_text(id)])
    }

    /// Allocates `size` bytes (rounded up to whole 16 MiB slabs) and mounts them; the ids and
    /// the bytes allocated.
    pub fn allocate_and_mount_segment(
        &self,
        size: u64,
        protocol: &str,
        location: &str,
    ) -> StoreResult<(Vec<String>, u64)> {
        let inner = self.inner.live()?;
        let failed = |m: String| {
            tracing::error!("allocate_and_mount_segment: {m}");
            StoreError::new(ErrorCode::InternalError, m)
        };
        if size == 0 {
            return Err(failed("size is 0".into()));
        }
        let Some(aligned) = size.checked_next_multiple_of(SLAB) else {
            return Err(failed(format!("size {size} overflows when rounded to slabs")));
        };
        let memory = Mapping::new(aligned).map_err(|e| failed(e.to_string()))?;
        let id =
            self.add_segment(inner, memory, protocol, location, ExtraKind::Allocated).map_err(|e| failed(e.message))?;
        Ok((vec![id_text(id)], aligned))
    }

    fn add_segment(
        &self,
        inner: &Inner,
        memory: Mapping,
        protocol: &str,
        location: &str,
        kind: ExtraKind,
    ) -> StoreResult<SegmentId> {
        if !matches!(protocol, "" | "tcp" | "rdma") {
            tracing::warn!(protocol, "segment protocol is not one of this build's; the engine's transports serve it");
        }
        let location = if location.is_empty() { "*" } else { location };
        inner.engine.register_memory(memory.addr(), memory.len(), location, true)?;
        let segment = Mounted { id: rand::random(), memory };
        if let Err(e) = inner.mount(&segment) {
            let _ = inner.engine.unregister_memory(segment.memory.addr());
            return Err(e);
        }
        let id = segment.id;
        inner.extra.kinds.lock().insert(id, kind);
        inner.segments.lock().push(segment);
        Ok(id)
    }

    /// Unmounts segments this client added as `kind` (see the module documentation); 0 or
    /// the first failure's code (-1 for an id that is not one).
    pub fn unmount_extra_segments(&self, ids: &[&str], grace_period_seconds: u64, kind: ExtraKind) -> i32 {
        let Ok(inner) = self.inner.live() else {
            tracing::error!("unmount of segments on a closed client");
            return -1;
        };
        let mut first_error = 0;
        let mut chosen = Vec::new();
        {
            let kinds = inner.extra.kinds.lock();
            for text in ids {
                match parse_id(text) {
                    Some(id) if kinds.get(&id) == Some(&kind) => chosen.push(id),
                    Some(_) => {
                        tracing::error!("segment id {text:?} is not among this client's {kind:?} segments");
                        first_error = if first_error == 0 { -1 } else { first_error };
                    }
                    None => {
                        tracing::error!("invalid segment id {text:?}");
                        first_error = if first_error == 0 { -1 } else { first_error };
                    }
                }
            }
        }
        for id in chosen {
            let r = if inner.extra.draining.lock().contains(&id) {
                Err(StoreError::invalid(format!("segment {} is being unmounted already", id_text(id))))
            } else if grace_period_seconds == 0 {
                unmount_now(&self.inner, id)
            } else {
                drain(&self.inner, id, Duration::from_secs(grace_period_seconds))
            };
            if let Err(e) = r {
                tracing::error!("unmounting segment {}: {e}", id_text(id));
                if first_error == 0 {
                    first_error = e.code.code();
                }
            }
        }
        first_error
    }
}

/// Unmounts `id` with the master now; its memory goes once no reader holds a lease on it.
fn unmount_now(inner: &Arc<Inner>, id: SegmentId) -> StoreResult<()> {
    let wait = match inner.master.call(&Request::UnmountSegment { client: inner.master.client_id(), segment: id })? {
        Response::Unmounted { wait_ms } => Duration::from_millis(wait_ms).min(MAX_LEASE_WAIT),
        other => return Err(super::client::unexpected("UnmountSegment", &other)),
    };
    inner.extra.kinds.lock().remove(&id);
    inner.extra.draining.lock().remove(&id);
    let segment = {
        let mut segments = inner.segments.lock();
        segments.iter().position(|s| s.id == id).map(|i| segments.remove(i))
    };
    let Some(segment) = segment else { return Ok(()) };
    if !wait.is_zero() {
        // Readers may still copy from it: keep it registered that long, off the caller's thread.
        let weak: Weak<Inner> = Arc::downgrade(inner);
        std::thread::Builder::new()
            .name("mooncake-store-unmount".into())
            .spawn(move || {
                std::thread::sleep(wait);
                if let Some(inner) = weak.upgrade() {
                    let _ = inner.engine.unregister_memory(segment.memory.addr());
                }
                drop(segment);
            })
            .map_err(|e| StoreError::new(ErrorCode::InternalError, format!("cannot start a thread: {e}")))?;
        return Ok(());
    }
    let _ = inner.engine.unregister_memory(segment.memory.addr());
    Ok(())
}

/// Marks `id` draining with the master and unmounts it when `grace` has passed.
fn drain(inner: &Arc<Inner>, id: SegmentId, grace: Duration) -> StoreResult<()> {
    match inner.master.call(&Request::DrainSegment { client: inner.master.client_id(), segment: id })? {
        Response::Done => {}
        other => return Err(super::client::unexpected("DrainSegment", &other)),
    }
    inner.extra.draining.lock().insert(id);
    let weak: Weak<Inner> = Arc::downgrade(inner);
    std::thread::Builder::new()
        .name("mooncake-store-drain".into())
        .spawn(move || {
            let until = Instant::now() + grace;
            loop {
                let now = Instant::now();
                let Some(inner) = weak.upgrade() else { return };
                if inner.live().is_err() {
                    return;
                }
                if now >= until {
                    if let Err(e) = unmount_now(&inner, id) {
                        tracing::warn!("unmounting segment {} after its grace period: {e}", id_text(id));
                    }
                    return;
                }
                drop(inner);
                std::thread::sleep((until - now).min(Duration::from_millis(200)));
            }
        })
        .map_err(|e| StoreError::new(ErrorCode::InternalError, format!("cannot start a thread: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_read_as_mooncake_writes_them() {
        let id: SegmentId = (7u128 << 64) | 42;
        assert_eq!(id_text(id), "7-42");
        assert_eq!(parse_id("7-42"), Some(id));
        assert_eq!(parse_id(&id_text(u128::MAX)), Some(u128::MAX));
        for bad in ["", "-", "7-", "-42", "7", "a-b", "7-42-1", "+7-42", "18446744073709551616-0"] {
            assert_eq!(parse_id(bad), None, "{bad:?}");
        }
    }
}
