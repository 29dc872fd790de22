//! The master's read-only HTTP API on its metrics port, against a real `mooncake_master` with
//! keys put by a real store client, through a plain HTTP/1.1 client over `TcpStream`. The
//! expected paths, codes, content types and body shapes are those of Mooncake 0.3.13's
//! `mooncake_master` (probed with curl; `docs/STORE-COMPAT.md` lists them), and
//! `answers_match_the_wheels_master` asks the wheel's master the same questions side by side
//! where the wheel's venv is installed.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use mooncake::store::ReplicaConfig;
use serde_json::Value;
use support::store::Master;

/// One HTTP answer.
struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

/// `GET path` on `127.0.0.1:port` (or another method), one connection per request.
fn request(port: u16, method: &str, path: &str) -> std::io::Result<Answer> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8(raw).expect("utf-8 answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let mut content_type = String::new();
    let mut length = None;
    for line in lines {
        let (name, value) = line.split_once(':').unwrap();
        match name.to_ascii_lowercase().as_str() {
            "content-type" => content_type = value.trim().to_string(),
            "content-length" => length = Some(value.trim().parse::<usize>().unwrap()),
            "transfer-encoding" => panic!("chunked answer to {path}"),
            _ => {}
        }
    }
    assert_eq!(length, Some(body.len()), "Content-Length of {path}");
    Ok(Answer { status, content_type, body: body.to_string() })
}

fn get(port: u16, path: &str) -> Answer {
    request(port, "GET", path).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

fn json(a: &Answer) -> Value {
    assert_eq!(a.content_type, "application/json; charset=utf-8");
    serde_json::from_str(&a.body).unwrap_or_else(|e| panic!("{e}: {}", a.body))
}

fn one() -> ReplicaConfig {
    ReplicaConfig { replica_num: 1, ..Default::default() }
}

#[test]
fn every_read_only_path_answers_as_mooncakes_master() {
    let master = Master::start(&[]);
    let port = master.metrics_port;
    const TEXT: &str = "text/plain; version=0.0.4";

    // Nothing mounted yet: empty 200s.
    for path in ["/get_all_segments", "/get_all_keys"] {
        let a = get(port, path);
        assert_eq!((a.status, a.content_type.as_str(), a.body.as_str()), (200, TEXT, ""), "{path}");
    }

    let client = master.client(64 << 20);
    let segment = client.hostname();
    client.put_parts("alpha", &[b"hello"], &one(), false).unwrap();
    client.put_parts("beta", &[&[7u8; 1000]], &one(), false).unwrap();
    client.put_parts("we ird/k&y", &[b"zz"], &one(), false).unwrap();

    let a = get(port, "/get_all_segments");
    assert_eq!((a.status, a.content_type.as_str()), (200, TEXT));
    assert_eq!(a.body, format!("{segment}\n"), "one segment name per line");

    let a = get(port, "/get_all_keys?ignored=1");
    assert_eq!((a.status, a.content_type.as_str()), (200, TEXT));
    assert_eq!(a.body, "alpha\nbeta\nwe ird/k&y\n");

    // A found key: its memory replicas.
    let a = get(port, "/query_key?key=alpha");
    assert_eq!(a.status, 200);
    let v = json(&a);
    assert_eq!(v["success"], true);
    let replicas = v["data"].as_array().unwrap();
    assert_eq!(replicas.len(), 1);
    assert_eq!(replicas[0]["size_"], 5);
    assert_eq!(replicas[0]["transport_endpoint_"], segment.as_str());
    assert!(replicas[0]["buffer_address_"].as_u64().unwrap() > 0);

    // A percent-encoded key is decoded.
    let a = get(port, "/query_key?key=we%20ird%2Fk%26y");
    assert_eq!((a.status, json(&a)["data"][0]["size_"].as_u64()), (200, Some(2)));

    // Unknown, empty and missing keys: 404 with Mooncake's code and name.
    for path in ["/query_key?key=nokey", "/query_key?key=", "/query_key", "/query_key?key=%20alpha"] {
        let a = get(port, path);
        assert_eq!(a.status, 404, "{path}");
        let v = json(&a);
        assert_eq!(v, serde_json::json!({"success": false, "error_code": -704, "error_message": "OBJECT_NOT_FOUND"}));
    }

    // A batch: one entry per distinct key, found or not.
    let a = get(port, "/batch_query_keys?keys=alpha,beta,nokey,,alpha");
    assert_eq!(a.status, 200);
    let v = json(&a);
    assert_eq!(v["success"], true);
    let data = v["data"].as_object().unwrap();
    let names: Vec<&str> = data.keys().map(String::as_str).collect();
    assert_eq!(names, ["", "alpha", "beta", "nokey"]);
    for (key, size) in [("alpha", 5), ("beta", 1000)] {
        let item = &data[key];
        assert_eq!(item["ok"], true);
        assert_eq!(item["error"], Value::Null);
        assert_eq!(item["values"][0]["size_"], size);
        assert_eq!(item["values"][0]["transport_endpoint_"], segment.as_str());
        for absent in ["disk_values", "local_disk_values", "nof_values"] {
            assert_eq!(item[absent], Value::Null, "{key}.{absent}");
        }
    }
    for key in ["", "nokey"] {
        assert_eq!(data[key]["ok"], false);
        assert_eq!(data[key]["error"], "OBJECT_NOT_FOUND");
        assert_eq!(data[key]["values"], Value::Null);
    }
    for path in ["/batch_query_keys", "/batch_query_keys?keys="] {
        let a = get(port, path);
        assert_eq!(a.status, 400, "{path}");
        let v = json(&a);
        assert_eq!(v, serde_json::json!({"success": false, "error": "No keys provided. Use ?keys=key1,key2,..."}));
    }

    // A segment's usage; an unknown segment is Mooncake's 500.
    let a = get(port, &format!("/query_segment?segment={segment}"));
    assert_eq!((a.status, a.content_type.as_str()), (200, TEXT));
    let lines: Vec<&str> = a.body.lines().collect();
    assert_eq!(lines[0], segment);
    assert!(lines[1].starts_with("Used(bytes): "), "{}", a.body);
    let used: u64 = lines[1]["Used(bytes): ".len()..].parse().unwrap();
    assert!(used >= 1007, "three values of 1007 bytes in all, used {used}");
    assert_eq!(lines[2], format!("Capacity(bytes) : {}", 64 << 20));
    let a = get(port, "/query_segment?segment=nowhere:1");
    assert_eq!((a.status, a.body.as_str()), (500, "Failed to query segment"));

    // Each segment in detail.
    let a = get(port, "/get_segments_detail");
    assert_eq!(a.status, 200);
    let v = json(&a);
    assert_eq!(v["total_segments"], 1);
    let d = &v["segments"][0];
    assert_eq!(
        (d["segment_name"].as_str(), d["te_endpoint"].as_str()),
        (Some(segment.as_str()), Some(segment.as_str()))
    );
    assert_eq!((d["size_bytes"].as_u64(), d["allocator_capacity_bytes"].as_u64()), (Some(64 << 20), Some(64 << 20)));
    assert_eq!(d["allocator_used_bytes"].as_u64(), Some(used));
    assert_eq!(d["size_human"], "0.0625 GiB");
    assert_eq!(d["status"], "OK");
    assert!(d["base_address"].as_str().unwrap().starts_with("0x"));
    for id in ["segment_id", "client_id"] {
        let (hi, lo) = d[id].as_str().unwrap().split_once('-').unwrap();
        assert!(hi.parse::<u64>().is_ok() && lo.parse::<u64>().is_ok(), "{id}: {}", d[id]);
    }

    // /metrics: Mooncake's names with our quantities.
    let a = get(port, "/metrics");
    assert_eq!((a.status, a.content_type.as_str()), (200, "text/plain; version=0.0.4; charset=utf-8"));
    for line in [
        "master_key_count 3\n".to_string(),
        format!("segment_total_capacity_bytes{{segment=\"{segment}\"}} {}\n", 64 << 20),
        format!("master_total_capacity_bytes {}\n", 64 << 20),
        "master_put_start_requests_total 3\n".to_string(),
        "master_put_end_requests_total 3\n".to_string(),
        "mem_cache_nums_ 3\n".to_string(),
    ] {
        assert!(a.body.contains(&line), "/metrics lacks {line:?}:\n{}", a.body);
    }
    assert!(a.body.contains("# TYPE total_get_nums_ counter\n"));

    // The HTTP reads are not gets: after them the get counters still read 0.
    assert!(a.body.contains("master_get_replica_list_requests_total 0\n"), "{}", a.body);
    assert_eq!(client.get("alpha").unwrap(), b"hello");
    let a = get(port, "/metrics");
    for line in ["total_get_nums_ 1\n", "valid_get_nums_ 1\n", "mem_cache_hit_nums_ 1\n"] {
        assert!(a.body.contains(line), "/metrics lacks {line:?}");
    }

    let a = get(port, "/metrics/summary");
    assert_eq!((a.status, a.content_type.as_str()), (200, TEXT));
    assert!(a.body.starts_with("role=leader, state=serving, service_ready=true, master={"), "{}", a.body);
    assert!(a.body.contains("Keys: 3 "), "{}", a.body);

    let a = get(port, "/health");
    assert_eq!(a.status, 200);
    let v = json(&a);
    assert_eq!(
        (v["status"].as_str(), v["role"].as_str(), v["service_ready"].as_bool()),
        (Some("ok"), Some("leader"), Some(true))
    );

    let a = get(port, "/role");
    assert_eq!((a.status, a.content_type.as_str(), a.body.as_str()), (200, "text/plain; charset=utf-8", "leader"));
    let a = get(port, "/ha_status");
    assert_eq!((a.status, a.body.as_str()), (200, "serving"));
    let a = get(port, "/leader");
    assert_eq!(json(&a), serde_json::json!({"present": false, "leader_address": null, "view_version": null}));

    // Paths that change state are not served, nor other methods, nor unknown paths.
    for (method, path) in [
        ("POST", "/api/v1/drain_jobs"),
        ("POST", "/api/v1/remove_all"),
        ("PUT", "/api/v1/tenant_quotas"),
        ("GET", "/nonexistent"),
    ] {
        assert_eq!(request(port, method, path).unwrap().status, 404, "{method} {path}");
    }
    assert_eq!(request(port, "POST", "/get_all_segments").unwrap().status, 405);

    // A key removed disappears from the listings; the segment goes when its client closes.
    client.remove_all(true).unwrap();
    assert_eq!(get(port, "/get_all_keys").body, "");
    drop(client);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !get(port, "/get_all_segments").body.is_empty() {
        assert!(Instant::now() < deadline, "the segment outlived its client");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What SGLang HiCache's `MooncakeStore` does at start with `check_server` on: poll
/// `http://<master ip>:<master_metrics_port>/get_all_segments` (3 s timeout per try) until the
/// body is non-empty, then its warm-up (put 4 KiB, `is_exist`, `get`).
#[test]
fn sglang_hicache_check_server_sees_a_segment_then_warms_up() {
    let master = Master::start(&[]);
    let url_port = master.metrics_port;
    // Before any store joined, the body is empty: SGLang keeps waiting.
    let a = get(url_port, "/get_all_segments");
    assert_eq!((a.status, a.body.as_str()), (200, ""));

    // A store process joins with a segment (SGLang's own setup mounts one too).
    let store = master.client(32 << 20);
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let a = get(url_port, "/get_all_segments");
        if !a.body.is_empty() {
            break a.body;
        }
        assert!(Instant::now() < deadline, "check_server would time out");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(body.lines().any(|l| l == store.hostname()), "{body}");

    let key = "sglang_mooncake_store_warmup_key0123456789abcdef";
    let value = vec![0u8; 4096];
    store.put_parts(key, &[&value], &ReplicaConfig::default(), false).unwrap();
    assert!(store.is_exist(key).unwrap());
    assert_eq!(store.get(key).unwrap(), value);
}

/// A child process, killed and reaped when dropped.
struct Spawned(std::process::Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The wheel's keys, put by the wheel's own client into the wheel's own master.
const WHEEL_PUTS: &str = r#"
import sys
from mooncake.store import MooncakeDistributedStore
s = MooncakeDistributedStore()
rc = s.setup("127.0.0.1", sys.argv[1], 64 << 20, 16 << 20, "tcp", "", sys.argv[2])
assert rc == 0, rc
for k, v in (("alpha", b"hello"), ("beta", b"\x07" * 1000), ("we ird/k&y", b"zz")):
    assert s.put(k, v) == 0, k
print("ready", s.get_hostname(), flush=True)
sys.stdin.read()
s.close()
"#;

/// A JSON value with its scalars replaced by their kind, and the fields our master leaves out
/// (`protocol_`, `protocol`, see `docs/STORE-COMPAT.md`) dropped.
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "protocol_" | "protocol"))
                .map(|(k, v)| (k.clone(), shape(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(shape).collect()),
        Value::Number(_) => Value::String("number".into()),
        Value::String(_) => Value::String("string".into()),
        other => other.clone(),
    }
}

/// `# TYPE name kind` lines of an exposition text.
fn metric_types(text: &str) -> std::collections::HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(n, k)| (n.to_string(), k.to_string()))
        .collect()
}

/// The same requests to the wheel's `mooncake_master` (keys put by the wheel's client) and to
/// ours (the same keys put by our client): the same codes, content types (but `/metrics`'s
/// charset), JSON shapes and text bodies (segment names and addresses aside). Skipped when the
/// wheel's venv is missing (a failure with `MOONCAKE_REQUIRE_WHEEL=1`).
#[test]
fn answers_match_the_wheels_master() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let Some(python) = support::wheel::python() else { return };
    let free = support::servers::free_port;
    let (rpc, metrics, http) = (free(), free(), free());
    let wheel_master = Spawned(
        Command::new(python.parent().unwrap().join("mooncake_master"))
            .args([
                format!("--rpc_port={rpc}"),
                "--rpc_address=127.0.0.1".into(),
                "--metrics_host=127.0.0.1".into(),
                format!("--metrics_port={metrics}"),
                "--enable_http_metadata_server=true".into(),
                "--http_metadata_server_host=127.0.0.1".into(),
                format!("--http_metadata_server_port={http}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the wheel's mooncake_master"),
    );
    for port in [rpc, metrics, http] {
        support::store::wait_port(port, "the wheel's mooncake_master");
    }
    let mut wheel_client = Spawned(
        Command::new(&python)
            .args(["-c", WHEEL_PUTS, &format!("http://127.0.0.1:{http}/metadata"), &format!("127.0.0.1:{rpc}")])
            .env_remove("PYTHONPATH")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the wheel's client"),
    );
    let mut line = String::new();
    BufReader::new(wheel_client.0.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let wheel_segment =
        line.trim().strip_prefix("ready ").unwrap_or_else(|| panic!("wheel client: {line:?}")).to_string();

    let master = Master::start(&[]);
    let client = master.client(64 << 20);
    let our_segment = client.hostname();
    client.put_parts("alpha", &[b"hello"], &one(), false).unwrap();
    client.put_parts("beta", &[&[7u8; 1000]], &one(), false).unwrap();
    client.put_parts("we ird/k&y", &[b"zz"], &one(), false).unwrap();

    let paths = [
        "/get_all_segments",
        "/query_key?key=alpha",
        "/query_key?key=nokey",
        "/query_key?key=",
        "/query_key",
        "/batch_query_keys?keys=alpha,beta,nokey",
        "/batch_query_keys?keys=alpha,,beta",
        "/batch_query_keys",
        "/batch_query_keys?keys=",
        "/query_segment?segment=nowhere:1",
        "/query_segment",
        "/get_segments_detail",
        "/health",
        "/role",
        "/ha_status",
        "/leader",
        "/metrics/summary",
        "/nonexistent",
    ];
    for path in paths {
        let (w, o) = (get(metrics, path), get(master.metrics_port, path));
        assert_eq!(o.status, w.status, "{path}: status");
        if w.status == 404 && !w.content_type.contains("json") {
            continue; // the servers' own 404 pages
        }
        assert_eq!(o.content_type, w.content_type, "{path}: content type");
        if w.content_type.contains("json") {
            let (wv, ov): (Value, Value) =
                (serde_json::from_str(&w.body).unwrap(), serde_json::from_str(&o.body).unwrap());
            assert_eq!(shape(&ov), shape(&wv), "{path}: JSON shape\nwheel: {}\nours:  {}", w.body, o.body);
        } else if path == "/get_all_segments" {
            assert_eq!(w.body, format!("{wheel_segment}\n"));
            assert_eq!(o.body, format!("{our_segment}\n"));
        } else if path == "/metrics/summary" {
            let prefix = "role=leader, state=serving, service_ready=true, master={";
            assert!(w.body.starts_with(prefix) && o.body.starts_with(prefix), "{path}");
        } else {
            assert_eq!(o.body, w.body, "{path}: body");
        }
    }
    // Keys: the same set (the wheel lists them in hash order, ours sorted).
    let mut wheel_keys: Vec<String> = get(metrics, "/get_all_keys").body.lines().map(String::from).collect();
    wheel_keys.sort();
    assert_eq!(get(master.metrics_port, "/get_all_keys").body.lines().collect::<Vec<_>>(), wheel_keys);
    // A segment's usage: the same three lines, numbers aside.
    let form = |body: &str| {
        body.lines().map(|l| l.trim_end_matches(|c: char| c.is_ascii_digit()).to_string()).collect::<Vec<_>>()
    };
    let w = get(metrics, &format!("/query_segment?segment={wheel_segment}"));
    let o = get(master.metrics_port, &format!("/query_segment?segment={our_segment}"));
    assert_eq!((o.status, o.content_type.as_str()), (w.status, w.content_type.as_str()));
    assert_eq!(form(&o.body)[1..], form(&w.body)[1..], "wheel: {:?} ours: {:?}", w.body, o.body);
    // /metrics: every name both serve has the same type.
    let (w, o) = (get(metrics, "/metrics"), get(master.metrics_port, "/metrics"));
    assert_eq!((o.status, w.status), (200, 200));
    let wheel_types = metric_types(&w.body);
    let ours = metric_types(&o.body);
    let shared: Vec<&String> = ours.keys().filter(|n| wheel_types.contains_key(*n)).collect();
    assert!(shared.len() >= 30, "only {} names in common", shared.len());
    for name in shared {
        assert_eq!(ours[name], wheel_types[name], "type of {name}");
    }
    drop(wheel_client.0.stdin.take());
    let _ = wheel_master;
}
