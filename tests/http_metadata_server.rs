//! Our HTTP metadata server (`mooncake::metadata::http_server`) over real sockets on 127.0.0.1:
//! every row of `wire.md` §5.4 in both flavours, byte for byte; the same request sequences sent
//! to Mooncake's own servers (the wheel's `mooncake_http_metadata_server` and
//! `mooncake_master --enable_http_metadata_server`) and to ours, answer for answer; two wheel
//! engines that find each other through our server and move data; stopping, limits, and the
//! `mooncake_http_metadata_server` binary.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use mooncake::metadata::http_server::{Flavour, HttpMetadataServer, ServerOptions};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// A raw HTTP/1.1 client: the request goes out exactly as written (escaped or not), and the
// answer's status, headers and body come back unaltered.

#[derive(Debug, Clone, PartialEq, Eq)]
struct Reply {
    status: u16,
    /// Header names lower-cased, in the order received.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn content_type(&self) -> Option<&str> {
        self.header("content-type")
    }

    /// What the side-by-side tests compare: status, Content-Type and body.
    fn essentials(&self) -> (u16, Option<String>, Vec<u8>) {
        (self.status, self.content_type().map(str::to_string), self.body.clone())
    }
}

/// One request on a fresh connection (`Connection: close`); `body` adds `Content-Length`.
fn http(addr: SocketAddr, method: &str, target: &str, body: Option<&[u8]>) -> Reply {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    if let Some(b) = body {
        head += &format!("Content-Length: {}\r\n", b.len());
    }
    head += "\r\n";
    let mut raw = head.into_bytes();
    raw.extend_from_slice(body.unwrap_or_default());
    exchange(addr, &raw, method == "HEAD")
}

/// A PUT whose body is sent in `Transfer-Encoding: chunked` chunks.
fn http_chunked(addr: SocketAddr, target: &str, chunks: &[&[u8]]) -> Reply {
    let mut raw =
        format!("PUT {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n")
            .into_bytes();
    for c in chunks {
        raw.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        raw.extend_from_slice(c);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    exchange(addr, &raw, false)
}

fn exchange(addr: SocketAddr, request: &[u8], head: bool) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request).unwrap_or_else(|e| panic!("send to {addr}: {e}"));
    let mut raw = Vec::new();
    let mut buf = [0u8; 64 << 10];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            // A reset after the answer (unread request bytes) still leaves the answer.
            Err(e) if !raw.is_empty() && e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("read from {addr}: {e} (after {} bytes)", raw.len()),
        }
    }
    parse_reply(&raw, head).unwrap_or_else(|| panic!("not an HTTP answer: {:?}", String::from_utf8_lossy(&raw)))
}

/// Parses one answer at the start of `raw`; returns it and the bytes it took.
fn parse_one(raw: &[u8], head: bool) -> Option<(Reply, usize)> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let text = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = text.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &raw[end + 4..];
    let len = match headers.iter().find(|(n, _)| n == "content-length") {
        _ if head => 0,
        Some((_, v)) => v.parse::<usize>().ok()?.min(rest.len()),
        None => rest.len(),
    };
    Some((Reply { status, headers, body: rest[..len].to_vec() }, end + 4 + len))
}

fn parse_reply(raw: &[u8], head: bool) -> Option<Reply> {
    parse_one(raw, head).map(|(r, _)| r)
}

/// A free port on 127.0.0.1 (free when this returns; the caller binds it soon after).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn loopback_any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn ours(options: impl Into<ServerOptions>) -> HttpMetadataServer {
    let rt = mooncake::runtime::acquire().unwrap();
    HttpMetadataServer::start(&rt, loopback_any(), options).unwrap()
}

const JSON_UTF8: Option<&str> = Some("application/json; charset=utf-8");
const JSON: Option<&str> = Some("application/json");
const TEXT_UTF8: Option<&str> = Some("text/plain; charset=utf-8");

#[track_caller]
fn expect(r: &Reply, status: u16, content_type: Option<&str>, body: &[u8]) {
    assert_eq!(
        (r.status, r.content_type(), r.body.as_slice()),
        (status, content_type, body),
        "got {} {:?} {:?}",
        r.status,
        r.content_type(),
        String::from_utf8_lossy(&r.body)
    );
}

// ---------------------------------------------------------------------------------------------
// wire.md §5.4, row by row.

#[test]
fn standalone_answers_every_row_of_the_table() {
    let s = ours(Flavour::Standalone);
    let a = s.local_addr();
    // Missing or empty key, for every method (the key is checked before the method).
    for (m, t) in [
        ("GET", "/metadata"),
        ("GET", "/metadata?key="),
        ("GET", "/metadata?key"),
        ("GET", "/metadata?key=%20%09"),
        ("GET", "/metadata?other=x"),
        ("PUT", "/metadata"),
        ("DELETE", "/metadata?key="),
        ("POST", "/metadata"),
    ] {
        let body = (m == "PUT").then_some(&b"{}"[..]);
        expect(&http(a, m, t, body), 400, JSON_UTF8, b"metadata key is required");
    }
    // GET missing, PUT, GET existing (stored bytes verbatim, never parsed).
    expect(&http(a, "GET", "/metadata?key=k", None), 404, JSON_UTF8, b"metadata not found");
    let value = b"{\"a\": 1}\n\x00\xff not json";
    expect(&http(a, "PUT", "/metadata?key=k", Some(value)), 200, JSON_UTF8, b"metadata updated");
    expect(&http(a, "GET", "/metadata?key=k", None), 200, JSON, value);
    expect(&http(a, "PUT", "/metadata?key=k", Some(b"")), 200, JSON_UTF8, b"metadata updated");
    expect(&http(a, "GET", "/metadata?key=k", None), 200, JSON, b"");
    // rpc_meta: the first PUT wins, a second is refused even with the same body.
    let rpc = "/metadata?key=mooncake%2Frpc_meta%2F127.0.0.1%3A1";
    let meta = br#"{"ip_or_host_name":"127.0.0.1","rpc_port":15001}"#;
    expect(&http(a, "PUT", rpc, Some(meta)), 200, JSON_UTF8, b"metadata updated");
    expect(&http(a, "PUT", rpc, Some(meta)), 400, JSON_UTF8, b"Duplicate rpc_meta key not allowed");
    expect(&http(a, "PUT", rpc, Some(b"{}")), 400, JSON_UTF8, b"Duplicate rpc_meta key not allowed");
    expect(&http(a, "GET", rpc, None), 200, JSON, meta);
    expect(&http(a, "PUT", "/metadata?key=xrpc_metay", Some(b"1")), 200, JSON_UTF8, b"metadata updated");
    expect(
        &http(a, "PUT", "/metadata?key=xrpc_metay", Some(b"1")),
        400,
        JSON_UTF8,
        b"Duplicate rpc_meta key not allowed",
    );
    // DELETE existing / missing; a deleted rpc_meta key may be PUT again.
    expect(&http(a, "DELETE", rpc, None), 200, JSON_UTF8, b"metadata deleted");
    expect(&http(a, "DELETE", rpc, None), 404, JSON_UTF8, b"metadata not found");
    expect(&http(a, "PUT", rpc, Some(meta)), 200, JSON_UTF8, b"metadata updated");
    // Other methods on /metadata.
    for m in ["POST", "PATCH", "OPTIONS"] {
        expect(&http(a, m, "/metadata?key=k", Some(b"x")), 405, JSON_UTF8, b"Method not allowed");
    }
    let head = http(a, "HEAD", "/metadata?key=k", None);
    assert_eq!((head.status, head.content_type()), (405, JSON_UTF8));
    // Other paths, /health included: aiohttp's own 404.
    for t in ["/health", "/metadata/?key=k", "/Metadata?key=k", "/", "/other"] {
        expect(&http(a, "GET", t, None), 404, TEXT_UTF8, b"404: Not Found");
    }
    // The path is decoded before routing.
    expect(&http(a, "GET", "/%6Detadata?key=k", None), 200, JSON, b"");
}

#[test]
fn master_embedded_answers_every_row_of_the_table() {
    let s = ours(Flavour::MasterEmbedded);
    let a = s.local_addr();
    for (m, t) in [
        ("GET", "/metadata"),
        ("GET", "/metadata?key="),
        ("GET", "/metadata?key"),
        ("GET", "/metadata?k%65y=x"),
        ("PUT", "/metadata"),
        ("DELETE", "/metadata?key="),
    ] {
        let body = (m == "PUT").then_some(&b"{}"[..]);
        expect(&http(a, m, t, body), 400, None, b"Missing key parameter");
    }
    // Not stripped: a blank key is a key.
    expect(&http(a, "GET", "/metadata?key=%20", None), 404, None, b"metadata not found");
    expect(&http(a, "GET", "/metadata?key=k", None), 404, None, b"metadata not found");
    let value = b"{\"a\": 1}\n\x00\xff not json";
    expect(&http(a, "PUT", "/metadata?key=k", Some(value)), 200, None, b"metadata updated");
    expect(&http(a, "GET", "/metadata?key=k", None), 200, JSON, value);
    // Only rpc_meta keys get "unchanged"; others are simply overwritten.
    expect(&http(a, "PUT", "/metadata?key=k", Some(value)), 200, None, b"metadata updated");
    let rpc = "/metadata?key=mooncake%2Frpc_meta%2F127.0.0.1%3A1";
    let meta = br#"{"ip_or_host_name":"127.0.0.1","rpc_port":15001}"#;
    expect(&http(a, "PUT", rpc, Some(meta)), 200, None, b"metadata updated");
    expect(&http(a, "PUT", rpc, Some(meta)), 200, None, b"metadata unchanged");
    expect(&http(a, "PUT", rpc, Some(b"{}")), 400, None, b"Duplicate rpc_meta key not allowed");
    expect(&http(a, "GET", rpc, None), 200, JSON, meta);
    expect(&http(a, "DELETE", rpc, None), 200, None, b"metadata deleted");
    expect(&http(a, "DELETE", rpc, None), 404, None, b"metadata not found");
    // /health, and cinatra's 404 for every other method or path (no key check first).
    expect(&http(a, "GET", "/health", None), 200, None, b"OK");
    expect(&http(a, "GET", "/health?key=1", None), 200, None, b"OK");
    for (m, t) in [
        ("POST", "/metadata?key=k"),
        ("POST", "/metadata"),
        ("PATCH", "/metadata?key=k"),
        ("OPTIONS", "/metadata?key=k"),
        ("PUT", "/health"),
        ("POST", "/health"),
        ("GET", "/metadata/?key=k"),
        ("GET", "/other"),
    ] {
        expect(&http(a, m, t, Some(b"")), 404, None, b"404 Not Found");
    }
    expect(&http(a, "GET", "/%6Detadata?key=k", None), 200, JSON, value);
}

#[test]
fn standalone_decodes_keys_and_master_embedded_does_not() {
    let escaped = "/metadata?key=mooncake%2Fram%2Fnode%3A1";
    let plain = "/metadata?key=mooncake/ram/node:1";
    // Standalone: one entry, stored decoded.
    let s = ours(Flavour::Standalone);
    let a = s.local_addr();
    expect(&http(a, "PUT", escaped, Some(b"v")), 200, JSON_UTF8, b"metadata updated");
    expect(&http(a, "GET", plain, None), 200, JSON, b"v");
    assert_eq!(s.get("mooncake/ram/node:1").as_deref(), Some(&b"v"[..]));
    expect(&http(a, "DELETE", plain, None), 200, JSON_UTF8, b"metadata deleted");
    expect(&http(a, "GET", escaped, None), 404, JSON_UTF8, b"metadata not found");
    // aiohttp's form decoding: '+' is a space, the value is stripped, the first `key` wins.
    expect(&http(a, "PUT", "/metadata?key=a+b", Some(b"plus")), 200, JSON_UTF8, b"metadata updated");
    expect(&http(a, "GET", "/metadata?key=a%20b", None), 200, JSON, b"plus");
    expect(&http(a, "GET", "/metadata?key=a%2Bb", None), 404, JSON_UTF8, b"metadata not found");
    expect(&http(a, "PUT", "/metadata?key=%20sp%0A", Some(b"sp")), 200, JSON_UTF8, b"metadata updated");
    expect(&http(a, "GET", "/metadata?key=sp", None), 200, JSON, b"sp");
    expect(&http(a, "GET", "/metadata?foo=1&key=sp&key=a+b", None), 200, JSON, b"sp");
    expect(&http(a, "GET", "/metadata?k%65y=sp", None), 200, JSON, b"sp");
    // Invalid UTF-8 becomes U+FFFD; malformed escapes stay as they are.
    expect(&http(a, "PUT", "/metadata?key=%FF", Some(b"ff")), 200, JSON_UTF8, b"metadata updated");
    expect(&http(a, "GET", "/metadata?key=%EF%BF%BD", None), 200, JSON, b"ff");
    expect(&http(a, "PUT", "/metadata?key=%zz", Some(b"zz")), 200, JSON_UTF8, b"metadata updated");
    expect(&http(a, "GET", "/metadata?key=%25zz", None), 200, JSON, b"zz");

    // MasterEmbedded: the key is what was sent; escaped and plain are two entries.
    let m = ours(Flavour::MasterEmbedded);
    let a = m.local_addr();
    expect(&http(a, "PUT", escaped, Some(b"v")), 200, None, b"metadata updated");
    expect(&http(a, "GET", plain, None), 404, None, b"metadata not found");
    expect(&http(a, "GET", escaped, None), 200, JSON, b"v");
    assert_eq!(m.get("mooncake%2Fram%2Fnode%3A1").as_deref(), Some(&b"v"[..]));
    assert_eq!(m.get("mooncake/ram/node:1"), None);
    expect(&http(a, "PUT", plain, Some(b"p")), 200, None, b"metadata updated");
    expect(&http(a, "GET", plain, None), 200, JSON, b"p");
    expect(&http(a, "PUT", "/metadata?key=a+b", Some(b"plus")), 200, None, b"metadata updated");
    expect(&http(a, "GET", "/metadata?key=a%20b", None), 404, None, b"metadata not found");
    expect(&http(a, "GET", "/metadata?key=a+b&key=x", None), 200, JSON, b"plus");
    assert_eq!(m.snapshot().len(), 3);
}

#[test]
fn bodies_over_the_limit_get_413() {
    // The wheel's limit (1 MiB) by default in Standalone, with aiohttp's text.
    let s = ours(Flavour::Standalone);
    let a = s.local_addr();
    let mib = vec![b'x'; 1 << 20];
    expect(&http(a, "PUT", "/metadata?key=big", Some(&mib)), 200, JSON_UTF8, b"metadata updated");
    assert_eq!(s.get("big").map(|v| v.len()), Some(1 << 20));
    let over = vec![b'y'; (1 << 20) + 1];
    expect(
        &http(a, "PUT", "/metadata?key=big", Some(&over)),
        413,
        TEXT_UTF8,
        b"Maximum request body size 1048576 exceeded.",
    );
    // A client that sends its whole (large) body before reading still gets the answer.
    let large = vec![b'z'; 8 << 20];
    expect(
        &http(a, "PUT", "/metadata?key=big", Some(&large)),
        413,
        TEXT_UTF8,
        b"Maximum request body size 1048576 exceeded.",
    );
    assert_eq!(s.get("big").map(|v| v.len()), Some(1 << 20));
    // No Content-Length (chunked): counted as it arrives.
    let chunk = vec![b'c'; 600 << 10];
    let r = http_chunked(a, "/metadata?key=chunked", &[&chunk, &chunk]);
    expect(&r, 413, TEXT_UTF8, b"Maximum request body size 1048576 exceeded.");
    let r = http_chunked(a, "/metadata?key=chunked", &[b"{\"a\":", b"1}"]);
    expect(&r, 200, JSON_UTF8, b"metadata updated");
    assert_eq!(s.get("chunked").as_deref(), Some(&b"{\"a\":1}"[..]));
    // The limit is an option; MasterEmbedded answers without a Content-Type.
    let mut opts = ServerOptions::new(Flavour::MasterEmbedded);
    opts.max_body_bytes = 10;
    let m = ours(opts);
    let a = m.local_addr();
    expect(&http(a, "PUT", "/metadata?key=k", Some(b"0123456789")), 200, None, b"metadata updated");
    expect(
        &http(a, "PUT", "/metadata?key=k", Some(b"0123456789A")),
        413,
        None,
        b"Maximum request body size 10 exceeded.",
    );
    assert_eq!(m.get("k").as_deref(), Some(&b"0123456789"[..]));
    // The limits that come with each flavour.
    assert_eq!(ServerOptions::new(Flavour::Standalone).max_body_bytes, 1 << 20);
    assert_eq!(ServerOptions::new(Flavour::MasterEmbedded).max_body_bytes, 16 << 20);
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let s = ours(Flavour::Standalone);
    let mut c = TcpStream::connect(s.local_addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"PUT /metadata?key=ka HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nv1").unwrap();
    c.write_all(b"GET /metadata?key=ka HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    c.write_all(b"DELETE /metadata?key=ka HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    c.read_to_end(&mut raw).unwrap();
    let (r1, n1) = parse_one(&raw, false).unwrap();
    let (r2, n2) = parse_one(&raw[n1..], false).unwrap();
    let (r3, _) = parse_one(&raw[n1 + n2..], false).unwrap();
    expect(&r1, 200, JSON_UTF8, b"metadata updated");
    expect(&r2, 200, JSON, b"v1");
    expect(&r3, 200, JSON_UTF8, b"metadata deleted");
}

#[test]
fn many_clients_at_once() {
    let s = ours(Flavour::Standalone);
    let a = s.local_addr();
    std::thread::scope(|scope| {
        for t in 0..8 {
            scope.spawn(move || {
                for i in 0..40 {
                    let key = format!("/metadata?key=mooncake%2Fram%2Ft{t}-{i}");
                    let v = format!("{{\"t\":{t},\"i\":{i}}}");
                    expect(&http(a, "PUT", &key, Some(v.as_bytes())), 200, JSON_UTF8, b"metadata updated");
                    expect(&http(a, "GET", &key, None), 200, JSON, v.as_bytes());
                }
            });
        }
    });
    let snap = s.snapshot();
    assert_eq!(snap.len(), 8 * 40);
    assert_eq!(snap["mooncake/ram/t3-7"], br#"{"t":3,"i":7}"#);
}

// ---------------------------------------------------------------------------------------------
// Stopping and connection limits.

/// True when the server closed `c` (end of file or reset) within `limit`.
fn closed_within(c: &mut TcpStream, limit: Duration) -> bool {
    c.set_read_timeout(Some(limit)).unwrap();
    let mut b = [0u8; 256];
    loop {
        match c.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue, // an answer (e.g. a 408/400) before the close
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn stop_is_bounded_closes_every_connection_and_releases_the_port() {
    let mut s = ours(Flavour::Standalone);
    let a = s.local_addr();
    expect(&http(a, "PUT", "/metadata?key=k", Some(b"v")), 200, JSON_UTF8, b"metadata updated");
    // One idle connection, one stuck in the middle of a body, one stuck in its headers.
    let mut idle = TcpStream::connect(a).unwrap();
    let mut in_body = TcpStream::connect(a).unwrap();
    in_body.write_all(b"PUT /metadata?key=slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123").unwrap();
    let mut in_head = TcpStream::connect(a).unwrap();
    in_head.write_all(b"GET /metadata?key=k HTTP/1.1\r\nHost: x\r\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.open_connections() < 3 {
        assert!(Instant::now() < deadline, "connections not seen: {}", s.open_connections());
        std::thread::sleep(Duration::from_millis(10));
    }
    let t = Instant::now();
    s.stop();
    let took = t.elapsed();
    assert!(took < Duration::from_secs(4), "stop took {took:?}");
    for (name, c) in [("idle", &mut idle), ("in body", &mut in_body), ("in head", &mut in_head)] {
        assert!(closed_within(c, Duration::from_secs(2)), "{name} connection still open after stop");
    }
    assert!(TcpStream::connect(a).is_err(), "still accepting after stop");
    // The same port can be served again at once.
    let rt = mooncake::runtime::acquire().unwrap();
    let again = HttpMetadataServer::start(&rt, a, Flavour::Standalone).expect("rebind the stopped server's port");
    expect(&http(a, "GET", "/metadata?key=k", None), 404, JSON_UTF8, b"metadata not found");
    drop(again);
    assert!(TcpStream::connect(a).is_err(), "drop did not stop the server");
    s.stop(); // idempotent
}

#[test]
fn idle_connections_are_closed() {
    let mut opts = ServerOptions::new(Flavour::Standalone);
    opts.idle_timeout = Duration::from_millis(300);
    let s = ours(opts);
    let mut idle = TcpStream::connect(s.local_addr()).unwrap();
    let t = Instant::now();
    assert!(closed_within(&mut idle, Duration::from_secs(3)), "idle connection kept open");
    assert!(t.elapsed() >= Duration::from_millis(250), "closed too early: {:?}", t.elapsed());
    // Busy connections are not.
    expect(&http(s.local_addr(), "GET", "/metadata?key=k", None), 404, JSON_UTF8, b"metadata not found");
}

#[test]
fn at_the_limit_the_oldest_idle_connection_makes_room() {
    let mut opts = ServerOptions::new(Flavour::Standalone);
    opts.max_connections = 1;
    let s = ours(opts);
    let a = s.local_addr();
    let mut first = TcpStream::connect(a).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.open_connections() < 1 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    // The new connection is served at once; the idle one is closed for it.
    expect(&http(a, "GET", "/metadata?key=k", None), 404, JSON_UTF8, b"metadata not found");
    assert!(closed_within(&mut first, Duration::from_secs(2)), "the idle connection was kept");
}

// ---------------------------------------------------------------------------------------------
// Side by side with Mooncake's servers.

/// A process of the wheel's venv, killed (by PID) on drop.
struct Spawned {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `addr` answers `probe` with `status`.
fn wait_ready(p: &mut Spawned, target: &str, status: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(rc)) = p.child.try_wait() {
            panic!("{what} exited early: {rc}");
        }
        if TcpStream::connect(p.addr).is_ok() && http(p.addr, "GET", target, None).status == status {
            return;
        }
        assert!(Instant::now() < deadline, "{what} did not start on {}", p.addr);
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn venv_bin(python: &Path, name: &str) -> PathBuf {
    python.parent().expect("venv/bin").join(name)
}

fn wheel_http_server(python: &Path) -> Spawned {
    let port = free_port();
    let child = Command::new(python)
        .arg(venv_bin(python, "mooncake_http_metadata_server"))
        .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--log-level", "WARNING"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the wheel's mooncake_http_metadata_server");
    let mut p = Spawned { child, addr: SocketAddr::from(([127, 0, 0, 1], port)) };
    wait_ready(&mut p, "/metadata", 400, "mooncake_http_metadata_server");
    p
}

/// `mooncake_master` with its embedded HTTP metadata server (it listens on 0.0.0.0 for that
/// port whatever it is told; we only ever connect to 127.0.0.1).
fn wheel_master(python: &Path) -> Spawned {
    let [rpc, metrics, port] = [free_port(), free_port(), free_port()];
    let child = Command::new(python)
        .arg(venv_bin(python, "mooncake_master"))
        .args([
            "--rpc_address=127.0.0.1".to_string(),
            format!("--rpc_port={rpc}"),
            "--metrics_host=127.0.0.1".to_string(),
            format!("--metrics_port={metrics}"),
            "--enable_metric_reporting=false".to_string(),
            "--enable_http_metadata_server=true".to_string(),
            "--http_metadata_server_host=127.0.0.1".to_string(),
            format!("--http_metadata_server_port={port}"),
        ])
        .env("GLOG_minloglevel", "2")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the wheel's mooncake_master");
    let mut p = Spawned { child, addr: SocketAddr::from(([127, 0, 0, 1], port)) };
    wait_ready(&mut p, "/health", 200, "mooncake_master");
    p
}

enum Req {
    Plain(&'static str, &'static str, Option<Vec<u8>>),
    Chunked(&'static str, Vec<&'static [u8]>),
}

fn send(a: SocketAddr, r: &Req) -> Reply {
    match r {
        Req::Plain(m, t, b) => http(a, m, t, b.as_deref()),
        Req::Chunked(t, chunks) => http_chunked(a, t, chunks),
    }
}

fn describe(r: &Req) -> String {
    match r {
        Req::Plain(m, t, b) => format!("{m} {t} ({} body bytes)", b.as_ref().map_or(0, Vec::len)),
        Req::Chunked(t, _) => format!("PUT {t} (chunked)"),
    }
}

/// The requests both side-by-side tests send: every row of the table and the key-parsing
/// corner cases, in an order where each depends on the ones before.
fn sequence(flavour: Flavour) -> Vec<Req> {
    use Req::*;
    let b = |s: &str| Some(s.as_bytes().to_vec());
    let mut seq = vec![
        Plain("GET", "/metadata", None),
        Plain("GET", "/metadata?key=", None),
        Plain("GET", "/metadata?key", None),
        Plain("PUT", "/metadata", b("{}")),
        Plain("DELETE", "/metadata?key=", None),
        Plain("GET", "/metadata?key=%20", None),
        Plain("GET", "/metadata?key=mooncake%2Fram%2Fn%3A1", None),
        Plain("PUT", "/metadata?key=mooncake%2Fram%2Fn%3A1", b(r#"{"buffers":[],"name":"n:1"}"#)),
        Plain("GET", "/metadata?key=mooncake%2Fram%2Fn%3A1", None),
        Plain("GET", "/metadata?key=mooncake/ram/n:1", None),
        Plain("PUT", "/metadata?key=mooncake%2Fram%2Fn%3A1", b(r#"{"buffers":[1],"name":"n:1"}"#)),
        Plain("GET", "/metadata?key=mooncake%2Fram%2Fn%3A1", None),
        Plain("PUT", "/metadata?key=mooncake%2Frpc_meta%2Fn%3A1", b(r#"{"ip_or_host_name":"127.0.0.1","rpc_port":1}"#)),
        Plain("PUT", "/metadata?key=mooncake%2Frpc_meta%2Fn%3A1", b(r#"{"ip_or_host_name":"127.0.0.1","rpc_port":1}"#)),
        Plain("PUT", "/metadata?key=mooncake%2Frpc_meta%2Fn%3A1", b(r#"{"ip_or_host_name":"127.0.0.1","rpc_port":2}"#)),
        Plain("GET", "/metadata?key=mooncake%2Frpc_meta%2Fn%3A1", None),
        Plain("DELETE", "/metadata?key=mooncake%2Frpc_meta%2Fn%3A1", None),
        Plain("DELETE", "/metadata?key=mooncake%2Frpc_meta%2Fn%3A1", None),
        Plain("PUT", "/metadata?key=mooncake%2Frpc_meta%2Fn%3A1", b("again")),
        Plain("GET", "/metadata?key=mooncake%2Frpc_meta%2Fn%3A1", None),
        Plain("PUT", "/metadata?key=xrpc_metay", b("1")),
        Plain("PUT", "/metadata?key=xrpc_metay", b("1")),
        Plain("PUT", "/metadata?key=RPC_META", b("1")),
        Plain("PUT", "/metadata?key=RPC_META", b("1")),
        Plain("PUT", "/metadata?key=empty", Some(Vec::new())),
        Plain("GET", "/metadata?key=empty", None),
        Plain("PUT", "/metadata?key=bin", Some(b"\x00\xff\xfe{\n".to_vec())),
        Plain("GET", "/metadata?key=bin", None),
        Plain("PUT", "/metadata?key=a+b", b("plus")),
        Plain("GET", "/metadata?key=a%20b", None),
        Plain("GET", "/metadata?key=a+b", None),
        Plain("GET", "/metadata?key=a%2Bb", None),
        Plain("PUT", "/metadata?key=%20sp%20", b("spaced")),
        Plain("GET", "/metadata?key=sp", None),
        Plain("GET", "/metadata?key=%20sp%20", None),
        Plain("PUT", "/metadata?key=%09tab%0A", b("t")),
        Plain("GET", "/metadata?key=tab", None),
        Plain("PUT", "/metadata?key=%1Cfs", b("f")),
        Plain("GET", "/metadata?key=fs", None),
        Plain("PUT", "/metadata?key=k1&key=k2", b("dup")),
        Plain("GET", "/metadata?key=k1", None),
        Plain("GET", "/metadata?key=k2", None),
        Plain("GET", "/metadata?foo=1&key=k1", None),
        Plain("GET", "/metadata?key=&key=k1", None),
        Plain("GET", "/metadata?KEY=k1", None),
        Plain("GET", "/metadata?&key=k1&", None),
        Plain("PUT", "/metadata?k%65y=v", b("ke")),
        Plain("GET", "/metadata?key=v", None),
        Plain("PUT", "/metadata?key==a", b("eq")),
        Plain("GET", "/metadata?key==a", None),
        Plain("PUT", "/metadata?key=a;b", b("semi")),
        Plain("GET", "/metadata?key=a;b", None),
        Plain("PUT", "/metadata?key=%zz", b("bad")),
        Plain("GET", "/metadata?key=%zz", None),
        Plain("GET", "/metadata?key=%25zz", None),
        Plain("PUT", "/metadata?key=%FF", b("ff")),
        Plain("GET", "/metadata?key=%FF", None),
        Plain("GET", "/metadata?key=%EF%BF%BD", None),
        Plain("GET", "/metadata?key=%25FF", None),
        Plain("PUT", "/metadata?key=caf%C3%A9", b("utf8")),
        Plain("GET", "/metadata?key=caf%C3%A9", None),
        Plain("DELETE", "/metadata?key=k1", None),
        Plain("DELETE", "/metadata?key=k1", None),
        Plain("GET", "/%6Detadata?key=empty", None),
        Plain("GET", "/metadata/?key=empty", None),
        Plain("GET", "/Metadata?key=empty", None),
        Plain("GET", "//metadata?key=empty", None),
        Plain("GET", "/health", None),
        Plain("GET", "/health?key=1", None),
        Plain("PUT", "/health", b("x")),
        Plain("POST", "/health", None),
        Plain("GET", "/", None),
        Plain("POST", "/metadata?key=empty", b("x")),
        Plain("POST", "/metadata", None),
        Plain("PATCH", "/metadata?key=empty", b("x")),
        Plain("OPTIONS", "/metadata?key=empty", None),
        Plain("PUT", "/metadata?key=big", Some(vec![b'x'; 1 << 20])),
        Plain("GET", "/metadata?key=big", None),
    ];
    if flavour == Flavour::Standalone {
        // Compared with the wheel's server only: the master has no body limit; cinatra answers
        // HEAD with a body (which breaks HTTP framing), and answers a chunked PUT with
        // "metadata updated" but stores an empty value (Mooncake's curl client always sends a
        // Content-Length; ours stores the body).
        seq.extend([
            Chunked("/metadata?key=chunked", vec![b"abc", b"de"]),
            Plain("GET", "/metadata?key=chunked", None),
            Plain("PUT", "/metadata?key=big", Some(vec![b'y'; (1 << 20) + 1])),
            Plain("GET", "/metadata?key=big", None),
            Plain("HEAD", "/metadata?key=empty", None),
            Plain("HEAD", "/health", None),
        ]);
    }
    seq
}

fn side_by_side(theirs: SocketAddr, ours: SocketAddr, flavour: Flavour) {
    let mut differences = Vec::new();
    let seq = sequence(flavour);
    for r in &seq {
        let (t, o) = (send(theirs, r), send(ours, r));
        if t.essentials() != o.essentials() {
            differences.push(format!(
                "{}:\n  Mooncake: {} {:?} {:?}\n  ours:     {} {:?} {:?}",
                describe(r),
                t.status,
                t.content_type(),
                String::from_utf8_lossy(&t.body[..t.body.len().min(80)]),
                o.status,
                o.content_type(),
                String::from_utf8_lossy(&o.body[..o.body.len().min(80)]),
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {} answers differ:\n{}",
        differences.len(),
        seq.len(),
        differences.join("\n")
    );
    eprintln!("{flavour:?}: all {} answers identical (status, Content-Type, body)", seq.len());
}

#[test]
fn standalone_answers_as_the_wheels_server() {
    let Some(py) = support::wheel::python() else { return };
    let theirs = wheel_http_server(&py);
    let s = ours(Flavour::Standalone);
    side_by_side(theirs.addr, s.local_addr(), Flavour::Standalone);
}

#[test]
fn master_embedded_answers_as_mooncake_master() {
    let Some(py) = support::wheel::python() else { return };
    let theirs = wheel_master(&py);
    let s = ours(Flavour::MasterEmbedded);
    side_by_side(theirs.addr, s.local_addr(), Flavour::MasterEmbedded);
}

// ---------------------------------------------------------------------------------------------
// Mooncake engines served by our server.

/// `tests/interop/http_meta_peer.py`: a wheel engine that uses an HTTP metadata server.
struct MetaPeer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    name: String,
    addr: u64,
}

impl MetaPeer {
    fn start(python: &Path, name: &str, url: &str, buf: u64) -> MetaPeer {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/http_meta_peer.py");
        let mut child = Command::new(python)
            .arg(script)
            .args(["--name", name, "--metadata", url, "--buf", &buf.to_string()])
            .env("MC_TCP_BIND_ADDRESS", "127.0.0.1")
            .env("MC_LOG_LEVEL", "WARNING")
            .env("GLOG_minloglevel", "2")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn http_meta_peer.py");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let hello = read_line_json(&mut stdout);
        assert_eq!(hello["rc"], 0, "wheel engine {name} failed to start: {hello}");
        MetaPeer { child, stdin, stdout, name: name.to_string(), addr: hello["addr"].as_u64().unwrap() }
    }

    fn call(&mut self, cmd: Value) -> Value {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
        read_line_json(&mut self.stdout)
    }

    fn bytes(&mut self, offset: u64, len: u64) -> Vec<u8> {
        let r = self.call(json!({"op": "bytes", "offset": offset, "len": len}));
        let hex = r["hex"].as_str().unwrap();
        (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
    }

    /// Destroys the engine (which withdraws its keys) and waits for the process to end.
    fn quit(mut self) {
        writeln!(self.stdin, "{}", json!({"op": "quit"})).unwrap();
        self.stdin.flush().unwrap();
        let bye = read_line_json(&mut self.stdout);
        assert_eq!(bye["bye"], true);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "wheel engine {} did not exit", self.name);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for MetaPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_line_json(r: &mut BufReader<ChildStdout>) -> Value {
    let mut line = String::new();
    r.read_line(&mut line).expect("read from the wheel engine");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("wheel engine said {line:?}: {e}"))
}

/// How `flavour` stores `key`: decoded (as sent, curl-escaped, by the engine) or not.
fn stored_key(flavour: Flavour, key: &str) -> String {
    match flavour {
        Flavour::Standalone => key.to_string(),
        Flavour::MasterEmbedded => key.replace('/', "%2F").replace(':', "%3A"),
    }
}

fn two_wheel_engines_move_data_through(flavour: Flavour) {
    let Some(py) = support::wheel::python() else { return };
    let server = ours(flavour);
    let url = server.url();
    let base = 40000 + std::process::id() % 10000 * 2 + if flavour == Flavour::Standalone { 0 } else { 20000 };
    let (na, nb) = (format!("127.0.0.1:{base}"), format!("127.0.0.1:{}", base + 1));
    const BUF: u64 = 4 << 20;
    const LEN: u64 = 1 << 20;
    let mut a = MetaPeer::start(&py, &na, &url, BUF);
    let mut b = MetaPeer::start(&py, &nb, &url, BUF);

    // Both published Mooncake's keys in our store.
    let snap = server.snapshot();
    for name in [&na, &nb] {
        let rpc = &snap[&stored_key(flavour, &format!("mooncake/rpc_meta/{name}"))];
        let rpc: Value = serde_json::from_slice(rpc).unwrap();
        assert_eq!(rpc["ip_or_host_name"], "127.0.0.1", "rpc_meta of {name}: {rpc}");
        assert!(rpc["rpc_port"].as_u64().is_some_and(|p| p > 0), "rpc_meta of {name}: {rpc}");
        let ram = &snap[&stored_key(flavour, &format!("mooncake/ram/{name}"))];
        let desc: Value = serde_json::from_slice(ram).unwrap();
        assert_eq!(desc["protocol"], "tcp", "descriptor of {name}: {desc}");
        assert_eq!(desc["buffers"].as_array().map(Vec::len), Some(1), "descriptor of {name}: {desc}");
    }

    // a writes into b; b sees the bytes.
    assert_eq!(a.call(json!({"op": "fill", "offset": 0, "len": LEN, "seed": 5}))["ok"], true);
    let rc = a.call(json!({"op": "write", "target": nb, "local": [0], "remote": [b.addr + (64 << 10)], "len": [LEN]}));
    assert_eq!(rc["rc"], 0, "write a -> b");
    assert_eq!(b.bytes(64 << 10, LEN), support::pattern(LEN as usize, 5), "b's buffer after a's write");
    // a reads from b; a sees b's bytes.
    assert_eq!(b.call(json!({"op": "fill", "offset": 2 << 20, "len": LEN, "seed": 9}))["ok"], true);
    let rc = a.call(json!({"op": "read", "target": nb, "local": [LEN], "remote": [b.addr + (2 << 20)], "len": [LEN]}));
    assert_eq!(rc["rc"], 0, "read a <- b");
    assert_eq!(a.bytes(LEN, LEN), support::pattern(LEN as usize, 9), "a's buffer after reading b");
    // And the other way round.
    let rc = b.call(json!({"op": "read", "target": na, "local": [0], "remote": [a.addr], "len": [LEN]}));
    assert_eq!(rc["rc"], 0, "read b <- a");
    assert_eq!(b.bytes(0, LEN), support::pattern(LEN as usize, 5), "b's buffer after reading a");

    // Destroyed engines withdraw both of their keys.
    a.quit();
    b.quit();
    let left: Vec<String> = server.snapshot().into_keys().collect();
    assert!(left.is_empty(), "keys left after both engines were destroyed: {left:?}");
}

#[test]
fn wheel_engines_find_each_other_through_our_standalone_server() {
    two_wheel_engines_move_data_through(Flavour::Standalone);
}

#[test]
fn wheel_engines_find_each_other_through_our_master_embedded_server() {
    two_wheel_engines_move_data_through(Flavour::MasterEmbedded);
}

// ---------------------------------------------------------------------------------------------
// The binary.

/// Starts the binary on a free port and waits until it answers.
fn start_binary(args: &[&str]) -> Spawned {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_mooncake_http_metadata_server"))
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn mooncake_http_metadata_server");
    let mut p = Spawned { child, addr: SocketAddr::from(([127, 0, 0, 1], port)) };
    wait_ready(&mut p, "/metadata", 400, "mooncake_http_metadata_server");
    p
}

fn signal_and_wait(p: &mut Spawned, signal: &str) -> std::process::ExitStatus {
    let pid = p.child.id().to_string();
    assert!(Command::new("kill").args([signal, &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(st) = p.child.try_wait().unwrap() {
            return st;
        }
        assert!(Instant::now() < deadline, "no exit within 10 s of {signal}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_binary_serves_and_exits_0_on_sigint_and_sigterm() {
    for signal in ["-INT", "-TERM"] {
        let mut p = start_binary(&["--log-level", "WARNING"]);
        let a = p.addr;
        expect(&http(a, "PUT", "/metadata?key=mooncake%2Fram%2Fx", Some(b"v")), 200, JSON_UTF8, b"metadata updated");
        expect(&http(a, "GET", "/metadata?key=mooncake/ram/x", None), 200, JSON, b"v");
        let st = signal_and_wait(&mut p, signal);
        assert_eq!(st.code(), Some(0), "exit after {signal}: {st}");
        assert!(TcpStream::connect(a).is_err(), "port still open after {signal}");
    }
    let mut p = start_binary(&["--master-embedded"]);
    expect(&http(p.addr, "GET", "/health", None), 200, None, b"OK");
    assert_eq!(signal_and_wait(&mut p, "-TERM").code(), Some(0));
}

#[test]
fn the_binary_fails_on_a_busy_port() {
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_mooncake_http_metadata_server"))
        .args(["--host", "127.0.0.1", "--port", &port])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let help = Command::new(env!("CARGO_BIN_EXE_mooncake_http_metadata_server")).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in ["--port", "--host", "--log-level", "[default: 8080]", "[default: 0.0.0.0]"] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}
