//! Misbehaving peers for the failure tests: a handshake server with a scripted reply, and a
//! data listener that accepts connections and never answers.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the fake handshake server answers to every request.
#[derive(Clone)]
pub enum Reply {
    /// A frame of this type byte with this payload (JSON text or garbage).
    Frame(u8, Vec<u8>),
    /// Close the connection without replying.
    Close,
}

/// A listener served by one thread until dropped.
pub struct FakeServer {
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeServer {
    fn serve(hold: bool, handler: impl Fn(TcpStream) + Send + 'static) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        if hold && let Ok(keep) = s.try_clone() {
                            held.push(keep);
                        }
                        handler(s);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FakeServer { port, stop, thread: Some(thread) }
    }

    /// A handshake port answering every request with `reply`.
    pub fn handshake(reply: Reply) -> FakeServer {
        FakeServer::serve(false, move |mut s| {
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut len = [0u8; 8];
            if s.read_exact(&mut len).is_err() {
                return;
            }
            let mut body = vec![0u8; u64::from_le_bytes(len).min(1 << 20) as usize];
            let _ = s.read_exact(&mut body);
            if let Reply::Frame(kind, payload) = &reply {
                let mut out = ((payload.len() + 1) as u64).to_le_bytes().to_vec();
                out.push(*kind);
                out.extend_from_slice(payload);
                let _ = s.write_all(&out);
            }
        })
    }

    /// A data port that accepts and keeps every connection open without reading or answering.
    pub fn silent() -> FakeServer {
        FakeServer::serve(true, |_s| {})
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A descriptor (as the handshake body) pointing the data plane at `data_port` on 127.0.0.1,
/// with one buffer at `addr` of `len` bytes.
pub fn descriptor_json(name: &str, data_port: u16, addr: u64, len: u64) -> Vec<u8> {
    serde_json::json!({
        "name": name, "protocol": "tcp", "tcp_data_host": "127.0.0.1", "tcp_data_port": data_port,
        "tcp_proto_version": 2, "rdma_server_name": "", "timestamp": "",
        "buffers": [{"name": name, "addr": addr, "length": len}],
    })
    .to_string()
    .into_bytes()
}
