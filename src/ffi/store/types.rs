//! Types of Mooncake's `store_c.h`.
#![allow(non_camel_case_types)] // Mooncake's C names are the contract.

use std::ffi::{c_char, c_int, c_void};

/// A store client handle, from `mooncake_store_create`.
pub type mooncake_store_t = *mut c_void;

/// Where and how many replicas a put asks for. A NULL pointer in its place means one replica,
/// no pin.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct mooncake_replicate_config {
    /// Replicas on distinct segments (at least 1). With fewer segments than asked for, the
    /// put still succeeds with one replica per segment, as in Mooncake.
    pub replica_num: usize,
    /// Non-zero: soft pin (evicted only after every unpinned object).
    pub with_soft_pin: c_int,
    /// Non-zero: hard pin (never evicted; still removable).
    pub with_hard_pin: c_int,
    /// `preferred_segments_count` segment names (a client's `get_hostname()`), tried first, in
    /// order; NUL-terminated strings read during the call. May be NULL when the count is 0.
    pub preferred_segments: *mut *const c_char,
    pub preferred_segments_count: usize,
}
pub type mooncake_replicate_config_t = mooncake_replicate_config;
