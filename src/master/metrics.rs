//! `/metrics` (Prometheus text exposition) and `/health` on `--metrics_host:--metrics_port`
//! (the read-only paths beside them are [`super::admin_http`]).
//!
//! Names follow Mooncake's master where it has the metric (`master_key_count`,
//! `master_put_start_requests_total`, `segment_allocated_bytes{segment=...}`, ...), so the
//! dashboards written for it keep working; `master_rpc_latency_seconds` (a histogram per
//! request kind) and `master_segments` are ours. `/health` answers 200 with the JSON body the
//! wheel's master sends (a single master is always the serving leader).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;

use super::server::Shared;
use super::state::Snapshot;
use crate::proto::Request;

/// Upper bounds of the latency buckets, in seconds (10 µs to 1 s; loopback RPCs land in the
/// first few).
pub const BUCKETS: [f64; 14] =
    [0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1, 0.25, 1.0];

/// Request kinds, in [`Request::kind_index`] order.
pub use crate::proto::REQUEST_KINDS as KINDS;

/// The position of `request`'s kind in [`KINDS`].
pub fn kind_index(request: &Request) -> usize {
    request.kind_index()
}

/// One kind's histogram: a count per bucket (not cumulative), the sum in nanoseconds.
#[derive(Default)]
struct KindHistogram {
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_ns: AtomicU64,
}

/// Time from a request's last byte read to its answer encoded (ready to write), per kind.
/// Lock-free, so that recording never contends with the state's mutex.
#[derive(Default)]
pub struct RpcHistogram {
    kinds: [KindHistogram; KINDS.len()],
}

impl RpcHistogram {
    pub fn record(&self, kind: usize, took: Duration) {
        let Some(h) = self.kinds.get(kind) else { return };
        let secs = took.as_secs_f64();
        let bucket = BUCKETS.iter().position(|&le| secs <= le).unwrap_or(BUCKETS.len());
        h.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        h.sum_ns.fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Requests of `kind` recorded so far.
    pub fn count(&self, kind: usize) -> u64 {
        self.kinds.get(kind).map_or(0, |h| h.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum())
    }

    fn render(&self, out: &mut String) {
        let name = "master_rpc_latency_seconds";
        let _ = writeln!(out, "# HELP {name} Time to answer one RPC, from its last byte read to its answer encoded");
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (kind, h) in KINDS.iter().zip(&self.kinds) {
            let counts: Vec<u64> = h.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
            let total: u64 = counts.iter().sum();
            if total == 0 {
                continue;
            }
            let mut cumulative = 0;
            for (le, n) in BUCKETS.iter().zip(&counts) {
                cumulative += n;
                let _ = writeln!(out, "{name}_bucket{{kind=\"{kind}\",le=\"{le}\"}} {cumulative}");
            }
            let _ = writeln!(out, "{name}_bucket{{kind=\"{kind}\",le=\"+Inf\"}} {total}");
            let sum = h.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
            let _ = writeln!(out, "{name}_sum{{kind=\"{kind}\"}} {sum}");
            let _ = writeln!(out, "{name}_count{{kind=\"{kind}\"}} {total}");
        }
    }
}

/// The whole exposition text.
pub fn render(s: &Snapshot, rpc: &RpcHistogram) -> String {
    let c = &s.counters;
    let mut out = String::with_capacity(8192);
    let gauges: [(&str, &str, u64); 7] = [
        ("master_allocated_bytes", "Total memory bytes currently allocated across all segments", s.used),
        ("master_total_capacity_bytes", "Total memory capacity across all mounted segments", s.capacity),
        ("master_key_count", "Total number of keys managed by the master", s.objects),
        ("master_soft_pin_key_count", "Total number of soft-pinned keys managed by the master", s.soft_pinned),
        ("master_active_clients", "Total number of active clients", s.clients),
        ("master_segments", "Mounted segments", s.segments),
        ("master_puts_in_progress", "Puts started and not yet ended or revoked", s.puts_in_progress),
    ];
    for (name, help, v) in gauges {
        metric(&mut out, name, help, "gauge", v);
    }
    labelled(&mut out, "segment_allocated_bytes", "Total memory bytes currently allocated of the segment", s, |u, _| u);
    labelled(&mut out, "segment_total_capacity_bytes", "Total memory capacity of the mounted segment", s, |_, c| c);
    let counters: [(&str, &str, u64); 25] = [
        ("master_put_start_requests_total", "PutStart requests (batch items included)", c.put_start),
        ("master_put_start_failures_total", "Failed PutStart requests", c.put_start_failures),
        ("master_put_end_requests_total", "PutEnd requests", c.put_end),
        ("master_put_end_failures_total", "Failed PutEnd requests", c.put_end_failures),
        ("master_put_revoke_requests_total", "PutRevoke requests", c.put_revoke),
        ("master_put_revoke_failures_total", "Failed PutRevoke requests", c.put_revoke_failures),
        ("master_get_replica_list_requests_total", "GetReplicaList requests", c.get),
        ("master_get_replica_list_failures_total", "Failed GetReplicaList requests", c.get_failures),
        ("master_exist_key_requests_total", "ExistKey requests", c.exist),
        ("master_remove_requests_total", "Remove requests", c.remove),
        ("master_remove_failures_total", "Failed Remove requests", c.remove_failures),
        ("master_remove_by_regex_requests_total", "RemoveByRegex requests", c.remove_by_regex),
        ("master_remove_all_requests_total", "RemoveAll requests", c.remove_all),
        ("master_removed_keys_total", "Keys removed by Remove, RemoveByRegex and RemoveAll", c.removed_keys),
        ("master_mount_segment_requests_total", "MountSegment requests", c.mount),
        ("master_mount_segment_failures_total", "Failed MountSegment requests", c.mount_failures),
        ("master_unmount_segment_requests_total", "UnmountSegment requests", c.unmount),
        ("master_unmount_segment_failures_total", "Failed UnmountSegment requests", c.unmount_failures),
        ("master_ping_requests_total", "Ping requests", c.ping),
        ("master_put_start_discard_cnt", "Puts discarded before they ended", c.puts_discarded),
        ("master_put_start_release_cnt", "Puts revoked by timeout or because their client left", c.puts_released),
        ("master_attempted_evictions_total", "Eviction runs", c.eviction_attempts),
        ("master_successful_evictions_total", "Eviction runs that freed something", c.eviction_successes),
        ("master_evicted_key_count", "Keys evicted", c.evicted_keys),
        ("master_evicted_size_bytes", "Bytes freed by eviction (all replicas)", c.evicted_bytes),
    ];
    for (name, help, v) in counters {
        metric(&mut out, name, help, "counter", v);
    }
    metric(&mut out, "master_expired_clients_total", "Clients expired by client_ttl", "counter", c.expired_clients);
    metric(
        &mut out,
        "master_stalls_total",
        "Gaps in the master's own progress not counted against clients",
        "counter",
        c.master_stalls,
    );
    // Mooncake's cache-hit family; every replica of ours is in memory, so every successful get
    // is a memory hit.
    let hits = c.get.saturating_sub(c.get_failures);
    metric(&mut out, "mem_cache_hit_nums_", "Gets answered with a memory replica", "counter", hits);
    metric(&mut out, "mem_cache_nums_", "Keys with a memory replica", "gauge", s.objects);
    metric(&mut out, "valid_get_nums_", "Gets that found the key", "counter", hits);
    metric(&mut out, "total_get_nums_", "Gets", "counter", c.get);
    rpc.render(&mut out);
    out
}

fn metric(out: &mut String, name: &str, help: &str, kind: &str, v: u64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
}

fn labelled(out: &mut String, name: &str, help: &str, s: &Snapshot, pick: impl Fn(u64, u64) -> u64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    for (segment, used, capacity) in &s.per_name {
        let _ = writeln!(out, "{name}{{segment=\"{}\"}} {}", escape(segment), pick(*used, *capacity));
    }
}

/// A label value as the exposition format wants it.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// A one-line summary, for the periodic report (`--enable_metric_reporting`).
pub fn summary(s: &Snapshot) -> String {
    let c = &s.counters;
    format!(
        "Mem Storage: {} B / {} B | Keys: {} (soft-pinned: {}) | Clients: {} | Segments: {} | PutStart={} \
         PutEnd={} PutRevoke={} Get={} Exist={} Remove={} | Eviction: Success/Attempts={}/{}, keys={}, size={} B",
        s.used,
        s.capacity,
        s.objects,
        s.soft_pinned,
        s.clients,
        s.segments,
        c.put_start,
        c.put_end,
        c.put_revoke,
        c.get,
        c.exist,
        c.remove,
        c.eviction_successes,
        c.eviction_attempts,
        c.evicted_keys,
        c.evicted_bytes,
    )
}

/// The body of `/health` (the wheel's master answers the same for a lone leader).
pub const HEALTH_BODY: &str = "{\"status\":\"ok\",\"role\":\"leader\",\"ha_state\":\"serving\",\"service_ready\":true,\
                               \"leader_address\":null,\"view_version\":null}";

/// The router of the metrics server.
pub fn router(shared: Arc<Shared>) -> axum::Router {
    let shared_for_admin = Arc::clone(&shared);
    axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let shared = Arc::clone(&shared);
                async move {
                    let snapshot = shared.state.lock().snapshot(Instant::now());
                    let body = render(&snapshot, &shared.rpc);
                    ([(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response()
                }
            }),
        )
        .route("/health", get(|| async { ([(CONTENT_TYPE, "application/json; charset=utf-8")], HEALTH_BODY) }))
        .merge(super::admin_http::routes(shared_for_admin))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::master::state::{MasterState, Policy};

    #[test]
    fn the_exposition_has_per_segment_gauges_and_a_cumulative_histogram() {
        let t0 = Instant::now();
        let mut st = MasterState::new(Policy::default());
        st.mount_segment(1, 1, "host:1", 0, 4096, t0).unwrap();
        st.mount_segment(1, 2, "host:1", 8192, 4096, t0).unwrap();
        st.put_start(1, "k", 100, &Default::default(), false, t0).unwrap();
        let rpc = RpcHistogram::default();
        rpc.record(9, Duration::from_micros(20));
        rpc.record(9, Duration::from_micros(2));
        rpc.record(9, Duration::from_secs(5));
        let text = render(&st.snapshot(t0), &rpc);
        assert!(text.contains("segment_total_capacity_bytes{segment=\"host:1\"} 8192\n"), "{text}");
        assert!(text.contains("segment_allocated_bytes{segment=\"host:1\"} 128\n"));
        assert!(text.contains("master_put_start_requests_total 1\n"));
        assert!(text.contains("master_rpc_latency_seconds_bucket{kind=\"GetReplicas\",le=\"0.00001\"} 1\n"));
        assert!(text.contains("master_rpc_latency_seconds_bucket{kind=\"GetReplicas\",le=\"0.000025\"} 2\n"));
        assert!(text.contains("master_rpc_latency_seconds_bucket{kind=\"GetReplicas\",le=\"1\"} 2\n"));
        assert!(text.contains("master_rpc_latency_seconds_bucket{kind=\"GetReplicas\",le=\"+Inf\"} 3\n"));
        assert!(text.contains("master_rpc_latency_seconds_count{kind=\"GetReplicas\"} 3\n"));
        assert!(!text.contains("kind=\"Ping\""), "kinds never seen are left out");
        assert_eq!(rpc.count(9), 3);
    }
}
