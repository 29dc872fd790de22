//! The read-only paths of the master's HTTP API, served beside `/metrics` and `/health` on
//! `--metrics_host:--metrics_port`, with the paths, codes, content types and body shapes of
//! Mooncake 0.3.13's `mooncake_master`:
//!
//! | path | answer |
//! |---|---|
//! | `/get_all_segments` | 200, `text/plain`: each mounted segment name once, one a line (empty when none) |
//! | `/get_all_keys` | 200, `text/plain`: each visible key, one a line (empty when none) |
//! | `/query_key?key=K` | 200 JSON `{"success":true,"data":[replica...]}`; 404 JSON `{"success":false,"error_code":-704,"error_message":"OBJECT_NOT_FOUND"}` (also for a missing or empty `key`) |
//! | `/batch_query_keys?keys=A,B` | 200 JSON `{"success":true,"data":{key:{"ok",...}}}`; 400 JSON when `keys` is missing or empty |
//! | `/query_segment?segment=S` | 200 `text/plain` usage of segment `S`; 500 `Failed to query segment` for an unknown one |
//! | `/get_segments_detail` | 200 JSON `{"total_segments":N,"segments":[...]}`: each mounted segment's name, ids, base, size and usage |
//! | `/metrics/summary` | 200 `text/plain`: one line |
//! | `/role`, `/ha_status`, `/leader` | a lone master: `leader`, `serving`, no HA leader record |
//!
//! Keys and segments are listed sorted (Mooncake lists them in hash order). A replica is
//! `{"size_","buffer_address_","transport_endpoint_"}`: Mooncake adds `protocol_` (and a
//! segment's detail `protocol`), which our master does not learn at mount time, so it is left
//! out rather than guessed. Ids are spelled as Mooncake spells its UUIDs (`high-low`, decimal). Query strings
//! are percent-decoded after splitting on `&` (Mooncake's `/query_key` decodes first, so a key
//! holding `%26` cannot be asked for there). The reads take no lease, leave the LRU order alone
//! and do not count as gets (Mooncake's go through `GetReplicaList` and do all three).
//! Paths that change state (`/api/v1/drain_jobs*`, `/api/v1/tenant_quotas`,
//! `/api/v1/remove_all`) are not served: 404.
//!
//! The port is served by [`serve`] with a cap and deadlines (`crate::metadata::http_server::serve_bounded`):
//! at [`MAX_CONNECTIONS`] open connections (`MC_MASTER_HTTP_MAX_CONNECTIONS`) each new one sheds
//! the oldest idle one, a request must arrive within 30 s of accept, and a keep-alive connection
//! idle for 75 s is closed, so that idle connections, however many, keep neither scrapers nor
//! store clients (whose descriptors they would share) out.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::Query;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::metrics;
use super::server::Shared;
use super::state::ReplicaView;
use crate::proto::ErrorCode;

/// Connections the admin port keeps open at once by default (scrapers and operators hold a few
/// each); `MC_MASTER_HTTP_MAX_CONNECTIONS` overrides it.
pub const MAX_CONNECTIONS: usize = 1024;
/// The variable that overrides [`MAX_CONNECTIONS`].
pub const MAX_CONNECTIONS_ENV: &str = "MC_MASTER_HTTP_MAX_CONNECTIONS";

/// Serves `router` (metrics, health and this module's routes) on `listener` until the runtime
/// stops, with the cap and deadlines of the module documentation.
pub async fn serve(listener: tokio::net::TcpListener, router: axum::Router) {
    use crate::metadata::conns::{ConnLimits, env_cap};
    use crate::metadata::http_server::{IDLE_TIMEOUT, REQUEST_TIMEOUT, serve_bounded};
    let limits = ConnLimits {
        max_connections: env_cap(MAX_CONNECTIONS_ENV, MAX_CONNECTIONS),
        request_timeout: Some(REQUEST_TIMEOUT),
        idle_timeout: Some(IDLE_TIMEOUT),
    };
    serve_bounded("master http", listener, router, limits).await;
}

/// The content type of the plain-text answers (Mooncake's, the Prometheus one).
pub const TEXT: &str = "text/plain; version=0.0.4";
/// The content type of the JSON answers.
pub const JSON: &str = "application/json; charset=utf-8";
/// The content type of `/role` and `/ha_status`.
pub const PLAIN_UTF8: &str = "text/plain; charset=utf-8";

type Params = Query<HashMap<String, String>>;

/// The routes of this module, to merge into the metrics server's router.
pub fn routes(shared: Arc<Shared>) -> axum::Router {
    let s1 = Arc::clone(&shared);
    let s2 = Arc::clone(&shared);
    let s3 = Arc::clone(&shared);
    let s4 = Arc::clone(&shared);
    let s5 = Arc::clone(&shared);
    let s6 = Arc::clone(&shared);
    let s7 = shared;
    axum::Router::new()
        .route("/get_all_segments", get(move || async move { lines(&s1.state.lock().segment_names()) }))
        .route("/get_all_keys", get(move || async move { lines(&s2.state.lock().visible_keys()) }))
        .route("/query_key", get(move |q: Params| async move { query_key(&s3, &q) }))
        .route("/batch_query_keys", get(move |q: Params| async move { batch_query_keys(&s4, &q) }))
        .route("/query_segment", get(move |q: Params| async move { query_segment(&s5, &q) }))
        .route("/get_segments_detail", get(move || async move { segments_detail(&s7) }))
        .route(
            "/metrics/summary",
            get(move || async move {
                let line = metrics::summary(&s6.state.lock().snapshot(Instant::now()));
                ([(CONTENT_TYPE, TEXT)], format!("role=leader, state=serving, service_ready=true, master={{{line}}}"))
            }),
        )
        .route("/role", get(|| async { ([(CONTENT_TYPE, PLAIN_UTF8)], "leader") }))
        .route("/ha_status", get(|| async { ([(CONTENT_TYPE, PLAIN_UTF8)], "serving") }))
        .route(
            "/leader",
            get(|| async {
                let body = json!({"present": false, "leader_address": null, "view_version": null});
                ([(CONTENT_TYPE, JSON)], body.to_string())
            }),
        )
}

/// `items`, each followed by a newline.
fn lines(items: &[String]) -> Response {
    let mut body = String::with_capacity(items.iter().map(|i| i.len() + 1).sum());
    for item in items {
        body.push_str(item);
        body.push('\n');
    }
    ([(CONTENT_TYPE, TEXT)], body).into_response()
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (status, [(CONTENT_TYPE, JSON)], body.to_string()).into_response()
}

fn replica_json(r: &ReplicaView) -> Value {
    json!({"size_": r.size, "buffer_address_": r.addr, "transport_endpoint_": r.segment_name})
}

fn query_key(shared: &Shared, q: &Params) -> Response {
    let key = q.get("key").map_or("", String::as_str);
    let result = shared.state.lock().peek_replicas(key);
    match result {
        Ok(replicas) => {
            let data: Vec<Value> = replicas.iter().map(replica_json).collect();
            json_response(StatusCode::OK, &json!({"success": true, "data": data}))
        }
        Err(code) => json_response(StatusCode::NOT_FOUND, &error_json(code)),
    }
}

fn error_json(code: ErrorCode) -> Value {
    json!({"success": false, "error_code": code.code(), "error_message": code.name()})
}

fn batch_query_keys(shared: &Shared, q: &Params) -> Response {
    let keys = q.get("keys").map_or("", String::as_str);
    if keys.is_empty() {
        let body = json!({"success": false, "error": "No keys provided. Use ?keys=key1,key2,..."});
        return json_response(StatusCode::BAD_REQUEST, &body);
    }
    let mut data = BTreeMap::new();
    {
        let st = shared.state.lock();
        for key in keys.split(',') {
            let item = match st.peek_replicas(key) {
                Ok(replicas) => {
                    let values: Vec<Value> = replicas.iter().map(replica_json).collect();
                    json!({"ok": true, "error": null, "values": values,
                           "disk_values": null, "local_disk_values": null, "nof_values": null})
                }
                Err(code) => json!({"ok": false, "error": code.name(), "values": null,
                                    "disk_values": null, "local_disk_values": null, "nof_values": null}),
            };
            data.entry(key.to_string()).or_insert(item);
        }
    }
    json_response(StatusCode::OK, &json!({"success": true, "data": data}))
}

fn query_segment(shared: &Shared, q: &Params) -> Response {
    let name = q.get("segment").map_or("", String::as_str);
    let snapshot = shared.state.lock().snapshot(Instant::now());
    match snapshot.per_name.iter().find(|(n, _, _)| n == name) {
        Some((n, used, capacity)) => {
            ([(CONTENT_TYPE, TEXT)], format!("{n}\nUsed(bytes): {used}\nCapacity(bytes) : {capacity}\n"))
                .into_response()
        }
        None => {
            tracing::debug!(segment = name, "http: query_segment of an unknown segment");
            (StatusCode::INTERNAL_SERVER_ERROR, [(CONTENT_TYPE, TEXT)], "Failed to query segment").into_response()
        }
    }
}

/// Mooncake's spelling of a 128-bit id: the two 64-bit halves in decimal, high first.
fn uuid(id: u128) -> String {
    format!("{}-{}", id >> 64, id as u64)
}

fn segments_detail(shared: &Shared) -> Response {
    let views = shared.state.lock().segment_views();
    let segments: Vec<Value> = views
        .iter()
        .map(|s| {
            let percent = if s.capacity == 0 { 0.0 } else { s.used as f64 * 100.0 / s.capacity as f64 };
            json!({
                "segment_name": s.name,
                "segment_id": uuid(s.id),
                "client_id": uuid(s.client),
                "base_address": format!("{:#x}", s.base),
                "size_bytes": s.size,
                "size_human": format!("{} GiB", s.size as f64 / (1u64 << 30) as f64),
                "te_endpoint": s.name,
                "status": "OK",
                "allocator_used_bytes": s.used,
                "allocator_capacity_bytes": s.capacity,
                "allocator_usage_percent": percent,
            })
        })
        .collect();
    json_response(StatusCode::OK, &json!({"total_segments": segments.len(), "segments": segments}))
}
