//! Extra segments and copy/move tasks, declared in `mooncake.h` (Mooncake's Python
//! `mount_segment`, `unmount_segment`, `allocate_and_mount_segment`,
//! `unmount_and_free_segment`, `create_copy_task`, `create_move_task`, `query_task`), and the
//! store codes they add.
#![allow(non_camel_case_types)] // C names, as the rest of the C interface spells them.

use std::ffi::{c_char, c_int};

use super::args::{keys_arg, slice_arg, store_ref, str_arg, str_or};
use super::types::mooncake_store_t;
use crate::ffi::boundary::{StoreCodes, ffi_fn};
use crate::proto::{TaskId, TaskInfo};
use crate::store::{ErrorCode, StoreError, StoreResult};

/// The object has no replica on the segment named.
pub const MOONCAKE_STORE_REPLICA_NOT_FOUND: c_int = -710;
/// Another copy or move of the object is in progress.
pub const MOONCAKE_STORE_OBJECT_HAS_REPLICATION_TASK: c_int = -708;
/// Not possible in the current state (for example, a target segment that is being unmounted).
pub const MOONCAKE_STORE_UNAVAILABLE_IN_CURRENT_STATUS: c_int = -1010;
/// No task has this id (never created, or pruned after 10,000 newer finished tasks).
pub const MOONCAKE_STORE_TASK_NOT_FOUND: c_int = -1400;
/// 10,000 tasks are pending already.
pub const MOONCAKE_STORE_TASK_PENDING_LIMIT_EXCEEDED: c_int = -1401;

/// A task's id: Mooncake's UUID, two 64-bit halves (Python's `(first, second)` tuple).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct mooncake_task_id {
    pub first: u64,
    pub second: u64,
}
pub type mooncake_task_id_t = mooncake_task_id;

/// A task as `mooncake_store_query_task` reports it (Mooncake's `QueryTaskResponse`). `type`:
/// 0 REPLICA_COPY, 1 REPLICA_MOVE; `status`: 0 PENDING, 1 PROCESSING, 2 FAILED, 3 SUCCESS
/// (Mooncake's numbering); times in milliseconds since the Unix epoch; `assigned_client`: the
/// client executing it. The message comes separately (`mooncake_store_query_task`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct mooncake_task_info {
    pub id: mooncake_task_id_t,
    pub type_: c_int,
    pub status: c_int,
    pub created_at_ms_epoch: u64,
    pub last_updated_at_ms_epoch: u64,
    pub assigned_client: mooncake_task_id_t,
}
pub type mooncake_task_info_t = mooncake_task_info;

/// The client behind `store`; for the segment calls one that is not set up is -1
/// (`INTERNAL_ERROR`), as Mooncake's answer for a store without a real client.
fn real_store(store: mooncake_store_t) -> StoreResult<std::sync::Arc<crate::store::Store>> {
    store_ref(store).map_err(|e| StoreError::new(ErrorCode::InternalError, e.message))
}

fn split(id: u128) -> mooncake_task_id_t {
    mooncake_task_id { first: (id >> 64) as u64, second: id as u64 }
}

fn join(id: &mooncake_task_id_t) -> TaskId {
    (u128::from(id.first) << 64) | u128::from(id.second)
}

/// Writes `ids` joined by ',' and a NUL into `out` (`cap` bytes); `BUFFER_OVERFLOW` when it
/// does not fit.
///
/// # Safety
/// `out` writable for `cap` bytes.
unsafe fn write_ids(ids: &[String], out: *mut c_char, cap: usize) -> StoreResult<()> {
    let text = ids.join(",");
    if out.is_null() || text.len() >= cap {
        return Err(StoreError::new(
            ErrorCode::BufferOverflow,
            format!("{} bytes of segment ids do not fit in {cap} bytes", text.len() + 1),
        ));
    }
    // SAFETY: `out` is writable for `cap` > `text.len()` bytes (checked above, caller guarantee).
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr().cast::<c_char>(), out, text.len());
        *out.add(text.len()) = 0;
    }
    Ok(())
}

/// Maps `size` bytes of the file at `path` from `offset` (page-aligned; the range inside the
/// file) shared, registers them (`location`, NULL or "" for "*") and mounts them as a segment
/// of this client (Mooncake's `mount_segment`; `protocol` NULL means "tcp"). Writes the new
/// segment ids, comma-separated and NUL-terminated, into `ids_out` (`ids_out_len` bytes; an
/// id has at most 41 characters); size 0 mounts nothing and writes "". Returns 0, -1 for any
/// failure to mount (as Mooncake's), `BUFFER_OVERFLOW` when the ids do not fit (the segment
/// stays mounted), `INVALID_PARAMS` for a bad argument. Real clients only (a dummy: -1).
/// Thread-safe.
///
/// # Safety
/// `path` a NUL-terminated string; `protocol`, `location` NULL or NUL-terminated; `ids_out`
/// writable for `ids_out_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mooncake_store_mount_segment(
    store: mooncake_store_t,
    path: *const c_char,
    size: u64,
    offset: u64,
    protocol: *const c_char,
    location: *const c_char,
    ids_out: *mut c_char,
    ids_out_len: usize,
) -> c_int {
    ffi_fn!(StoreCodes, {
        let client = real_store(store)?;
        // SAFETY: forwarded caller guarantees.
        let (path, protocol, location) = unsafe {
            (str_arg(path, "path")?, str_or(protocol, "protocol", "tcp")?, str_or(location, "location", "")?)
        };
        if ids_out.is_null() {
            return Err(StoreError::invalid("ids_out is NULL"));
        }
        let ids = client.mount_file_segment(path, size, offset, protocol, location)?;
        // SAFETY: `ids_out` writable for `ids_out_len` bytes (caller guarantee).
        unsafe { write_ids(&ids, ids_out, ids_out_len) }
    })
}

/// Allocates `size` bytes (rounded up to whole 16 MiB slabs), registers them and mounts them as
/// a segment of this client (Mooncake's `allocate_and_mount_segment`). Writes the segment ids
/// as `mooncake_store_mount_segment` does and the bytes allocated into `allocated_out`.
/// Returns 0, -1 for any failure to mount (size 0 included, as Mooncake's), `BUFFER_OVERFLOW`
/// or `INVALID_PARAMS` as there. Real clients only. Thread-safe.
///
/// # Safety
/// `protocol`, `location` NULL or NUL-terminated; `ids_out` writable for `ids_out_len` bytes;
/// `allocated_out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mooncake_store_allocate_and_mount_segment(
    store: mooncake_store_t,
    size: u64,
    protocol: *const c_char,
    location: *const c_char,
    ids_out: *mut c_char,
    ids_out_len: usize,
    allocated_out: *mut u64,
) -> c_int {
    ffi_fn!(StoreCodes, {
        let client = real_store(store)?;
        // SAFETY: forwarded caller guarantees.
        let (protocol, location) = unsafe { (str_or(protocol, "protocol", "tcp")?, str_or(location, "location", "")?) };
        if ids_out.is_null() || allocated_out.is_null() {
            return Err(StoreError::invalid("ids_out or allocated_out is NULL"));
        }
        let (ids, allocated) = client.allocate_and_mount_segment(size, protocol, location)?;
        // SAFETY: `allocated_out` is writable (checked non-NULL; caller guarantee).
        unsafe { *allocated_out = allocated };
        // SAFETY: `ids_out` writable for `ids_out_len` bytes (caller guarantee).
        unsafe { write_ids(&ids, ids_out, ids_out_len) }
    })
}

/// Unmounts segments of `mooncake_store_mount_segment` (`ids`: `count` id strings). With
/// `grace_period_seconds` 0 at once; otherwise nothing new is placed there, its objects stay
/// readable, and it is unmounted when the period ends. Returns 0, or the first failure: -1
/// for an id that does not parse or that this client did not mount with
/// `mooncake_store_mount_segment` (the other ids are still unmounted), the master's code
/// otherwise; `INVALID_PARAMS` for a NULL argument. Thread-safe.
///
/// # Safety
/// `ids` NULL or `count` pointers, each NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mooncake_store_unmount_segment(
    store: mooncake_store_t,
    ids: *const *const c_char,
    count: usize,
    grace_period_seconds: u64,
) -> c_int {
    ffi_fn!(StoreCodes, {
        let client = real_store(store)?;
        // SAFETY: forwarded caller guarantee.
        let ids = unsafe { keys_arg(ids, count)? };
        Ok::<c_int, StoreError>(client.unmount_segment(&ids, grace_period_seconds))
    })
}

/// `mooncake_store_unmount_segment` for segments of `mooncake_store_allocate_and_mount_segment`
/// (their memory is freed once unmounted). Thread-safe.
///
/// # Safety
/// As `mooncake_store_unmount_segment`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mooncake_store_unmount_and_free_segment(
    store: mooncake_store_t,
    ids: *const *const c_char,
    count: usize,
    grace_period_seconds: u64,
) -> c_int {
    ffi_fn!(StoreCodes, {
        let client = real_store(store)?;
        // SAFETY: forwarded caller guarantee.
        let ids = unsafe { keys_arg(ids, count)? };
        Ok::<c_int, StoreError>(client.unmount_and_free_segment(&ids, grace_period_seconds))
    })
}

/// Asks for `key` to be copied to the `count` segments named in `targets` (Mooncake's
/// `create_copy_task`). The client owning a replica of `key` executes it within about a
/// second; follow it with `mooncake_store_query_task`. Writes the task's id into `id_out`.
/// Returns 0 or: `INVALID_PARAMS` (no target, a target not mounted), `OBJECT_NOT_FOUND`,
/// `UNAVAILABLE_IN_CURRENT_STATUS` (a target being unmounted), `TASK_PENDING_LIMIT_EXCEEDED`.
/// Thread-safe.
///
/// # Safety
/// `key` NUL-terminated; `targets` NULL or `count` NUL-terminated strings; `id_out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mooncake_store_create_copy_task(
    store: mooncake_store_t,
    key: *const c_char,
    targets: *const *const c_char,
    count: usize,
    id_out: *mut mooncake_task_id_t,
) -> c_int {
    ffi_fn!(StoreCodes, {
        let client = store_ref(store)?;
        // SAFETY: forwarded caller guarantees.
        let (key, targets) =
            unsafe { (str_arg(key, "key")?, if count == 0 { Vec::new() } else { keys_arg(targets, count)? }) };
        if id_out.is_null() {
            return Err(StoreError::invalid("id_out is NULL"));
        }
        let id = client.create_copy_task(key, &targets)?;
        // SAFETY: `id_out` is writable (checked non-NULL; caller guarantee).
        unsafe { *id_out = split(id) };
        Ok(())
    })
}

/// Asks for `key`'s replica on segment `source` to be moved to segment `target` (Mooncake's
/// `create_move_task`). Writes the task's id into `id_out`. Returns 0 or: `OBJECT_NOT_FOUND`,
/// `INVALID_PARAMS` (source == target, a target not mounted, no replica on `source`),
/// `UNAVAILABLE_IN_CURRENT_STATUS`, `TASK_PENDING_LIMIT_EXCEEDED`. Thread-safe.
///
/// # Safety
/// `key`, `source`, `target` NUL-terminated; `id_out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mooncake_store_create_move_task(
    store: mooncake_store_t,
    key: *const c_char,
    source: *const c_char,
    target: *const c_char,
    id_out: *mut mooncake_task_id_t,
) -> c_int {
    ffi_fn!(StoreCodes, {
        let client = store_ref(store)?;
        // SAFETY: forwarded caller guarantees.
        let (key, source, target) =
            unsafe { (str_arg(key, "key")?, str_arg(source, "source")?, str_arg(target, "target")?) };
        if id_out.is_null() {
            return Err(StoreError::invalid("id_out is NULL"));
        }
        let id = client.create_move_task(key, source, target)?;
        // SAFETY: `id_out` is writable (checked non-NULL; caller guarantee).
        unsafe { *id_out = split(id) };
        Ok(())
    })
}

/// The state of task `id` into `info_out` and its message (Mooncake's `query_task`), cut to
/// `message_len - 1` bytes and NUL-terminated, into `message_out` (NULL or `message_len` 0:
/// not written). Returns 0 or `TASK_NOT_FOUND`. Thread-safe.
///
/// # Safety
/// `id` readable; `info_out` writable; `message_out` NULL or writable for `message_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mooncake_store_query_task(
    store: mooncake_store_t,
    id: *const mooncake_task_id_t,
    info_out: *mut mooncake_task_info_t,
    message_out: *mut c_char,
    message_len: usize,
) -> c_int {
    ffi_fn!(StoreCodes, {
        let client = store_ref(store)?;
        // SAFETY: `id` is readable (caller guarantee); a NULL one is refused.
        let id = unsafe { slice_arg(id, 1, "id")? };
        let Some(id) = id.first() else { return Err(StoreError::invalid("id is NULL")) };
        if info_out.is_null() {
            return Err(StoreError::invalid("info_out is NULL"));
        }
        let info = client.query_task(join(id))?;
        // SAFETY: `info_out` is writable (checked non-NULL; caller guarantee).
        unsafe { *info_out = task_info(&info) };
        if !message_out.is_null() && message_len > 0 {
            let bytes = info.message.as_bytes();
            let n = bytes.len().min(message_len - 1);
            // SAFETY: `message_out` is writable for `message_len` > `n` bytes (caller guarantee).
            unsafe {
                std::ptr::copy_nonoverlapping(bytes.as_ptr().cast::<c_char>(), message_out, n);
                *message_out.add(n) = 0;
            }
        }
        Ok(())
    })
}

fn task_info(info: &TaskInfo) -> mooncake_task_info_t {
    mooncake_task_info {
        id: split(info.id),
        type_: info.kind as c_int,
        status: info.state as c_int,
        created_at_ms_epoch: info.created_ms,
        last_updated_at_ms_epoch: info.updated_ms,
        assigned_client: split(info.assigned_client),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{TaskKind, TaskState};

    #[test]
    fn ids_split_and_join() {
        let id: TaskId = (3u128 << 64) | 9;
        let s = split(id);
        assert_eq!((s.first, s.second), (3, 9));
        assert_eq!(join(&s), id);
    }

    #[test]
    fn task_info_keeps_mooncakes_numbering() {
        let info = TaskInfo {
            id: (1u128 << 64) | 2,
            kind: TaskKind::ReplicaMove,
            state: TaskState::Failed,
            created_ms: 5,
            updated_ms: 6,
            assigned_client: 7,
            message: String::new(),
        };
        let c = task_info(&info);
        assert_eq!((c.type_, c.status, c.created_at_ms_epoch, c.last_updated_at_ms_epoch), (1, 2, 5, 6));
        assert_eq!((c.id.first, c.id.second, c.assigned_client.second), (1, 2, 7));
    }

    #[test]
    fn ids_that_do_not_fit_are_a_buffer_overflow() {
        let mut buf = [1 as c_char; 4];
        // SAFETY: `buf` is writable for its length.
        let e = unsafe { write_ids(&["12-34".into()], buf.as_mut_ptr(), buf.len()) }.unwrap_err();
        assert_eq!(e.code, ErrorCode::BufferOverflow);
        // SAFETY: as above.
        unsafe { write_ids(&[], buf.as_mut_ptr(), buf.len()) }.unwrap();
        assert_eq!(buf[0], 0);
    }
}
