//! The RDMA transport's settings: Mooncake's `MC_*` variables (`docs/ENV.md`) with
//! Mooncake's defaults, read when the transport is installed.

use std::time::Duration;

use crate::config::env_u64;

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct RdmaSettings {
    /// `MC_IB_PORT`: the port of every device (1).
    pub port: u8,
    /// `MC_GID_INDEX` / `NCCL_IB_GID_INDEX`; `None`: pick automatically (RoCE v2 with an
    /// IPv4-mapped address first).
    pub gid_index: Option<u32>,
    /// `MC_MTU`: largest path MTU in bytes (4096); the path uses the smaller of this, the
    /// port's active MTU and the peer's (when it says).
    pub mtu: u32,
    /// `MC_NUM_QP_PER_EP`: queue pairs per endpoint (2). Must match the peer's.
    pub qps_per_endpoint: usize,
    /// `MC_MAX_WR`: outstanding work requests per queue pair (256).
    pub max_wr: u32,
    /// `MC_MAX_CQE_PER_CTX`: completion queue entries per device (4096).
    pub max_cqe: u32,
    /// `MC_SLICE_SIZE`: bytes per work request (64 KiB).
    pub slice_size: u64,
    /// `MC_RETRY_CNT`: attempts of one slice, over other NICs, before it fails (9).
    pub retry_count: u32,
    /// `MC_MAX_MR_SIZE`: regions larger than this are registered (and published) in chunks.
    pub max_mr_size: u64,
    /// `MC_RDMA_RAIL_PAUSE_SECONDS`: how long a peer NIC whose link failed is skipped (30).
    pub rail_pause: Duration,
    /// `MOONCAKE_RDMA_POLL_SPIN_US` (ours): how long a completion worker spins on an empty
    /// queue before it sleeps on the completion channel (50 µs).
    pub poll_spin: Duration,
}

impl RdmaSettings {
    pub fn from_env() -> RdmaSettings {
        let gid = std::env::var("MC_GID_INDEX").or_else(|_| std::env::var("NCCL_IB_GID_INDEX")).ok();
        let gid_index = gid.and_then(|raw| match raw.trim().parse::<i64>() {
            Ok(v) if (0..1 << 16).contains(&v) => Some(v as u32),
            Ok(_) => None,
            Err(_) => {
                tracing::warn!("MC_GID_INDEX={raw:?} is not a number; picking the GID automatically");
                None
            }
        });
        RdmaSettings {
            port: env_u64("MC_IB_PORT", 1, 1, 255) as u8,
            gid_index,
            mtu: mtu_bytes(env_u64("MC_MTU", 4096, 256, 4096) as u32),
            qps_per_endpoint: env_u64("MC_NUM_QP_PER_EP", 2, 1, 64) as usize,
            max_wr: env_u64("MC_MAX_WR", 256, 1, 1 << 15) as u32,
            max_cqe: env_u64("MC_MAX_CQE_PER_CTX", 4096, 64, 1 << 22) as u32,
            slice_size: env_u64("MC_SLICE_SIZE", 65536, 1, 1 << 30),
            retry_count: env_u64("MC_RETRY_CNT", 9, 1, 1000) as u32,
            max_mr_size: env_u64("MC_MAX_MR_SIZE", 0x100_0000_0000, 4096, u64::MAX),
            rail_pause: Duration::from_secs(env_u64("MC_RDMA_RAIL_PAUSE_SECONDS", 30, 0, 86_400)),
            poll_spin: Duration::from_micros(env_u64("MOONCAKE_RDMA_POLL_SPIN_US", 50, 0, 1_000_000)),
        }
    }
}

/// `MC_MTU` as Mooncake reads it: 512, 1024, 2048 or 4096; anything else is 4096.
fn mtu_bytes(v: u32) -> u32 {
    match v {
        256 | 512 | 1024 | 2048 | 4096 => v,
        _ => {
            tracing::warn!("MC_MTU={v} is not 256/512/1024/2048/4096; using 4096");
            4096
        }
    }
}

/// `ibv_mtu` enum value (1 = 256 … 5 = 4096) of the largest step not above `bytes`.
pub fn mtu_enum(bytes: u32) -> u32 {
    match bytes {
        0..512 => 1,
        512..1024 => 2,
        1024..2048 => 3,
        2048..4096 => 4,
        _ => 5,
    }
}

/// Bytes of an `ibv_mtu` enum value.
pub fn mtu_from_enum(v: u32) -> u32 {
    match v {
        1 => 256,
        2 => 512,
        3 => 1024,
        4 => 2048,
        _ => 4096,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mtu_enum_round_trips() {
        for b in [256, 512, 1024, 2048, 4096] {
            assert_eq!(mtu_from_enum(mtu_enum(b)), b);
        }
        assert_eq!(mtu_enum(1500), 3, "a size between two steps rounds down");
    }
}
