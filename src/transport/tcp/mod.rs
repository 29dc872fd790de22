//! Mooncake's TCP transport: a data server that answers Mooncake's protocol (v2 and v1) and
//! initiator lanes that speak it (`wire.md` §4), plus our own framing (`frame.rs`: many requests
//! per frame, several frames in flight), offered in our descriptors and used only when both ends
//! are ours. The server tells the two apart by a connection's first header.

mod conn;
pub mod frame;
mod framed_lane;
mod framed_server;
pub mod io;
pub mod lane;
pub mod server;
pub mod wire;

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::Arc;

use parking_lot::Mutex;

use framed_lane::FramedLink;
use lane::PeerLink;
pub use lane::{LaneSettings, PeerAddress};
use server::DataServer;

use super::{Error, LinkInfo, Route, Slice, TargetMemory, Transport};

/// Requests are cut into slices of this size, so that one large request spreads over the lanes
/// (each slice is one Mooncake request: one header, one payload).
pub const TCP_SLICE_SIZE: u64 = 1 << 20;

/// The framing version this engine offers in its descriptor and uses towards peers that offer
/// it: [`frame::FRAMING_VERSION`], or 0 when `MOONCAKE_TCP_FRAMING=0` (Mooncake's protocol only, for
/// comparisons and as a way out). Read once per process.
pub fn local_framing() -> u32 {
    static FRAMING: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *FRAMING.get_or_init(|| match std::env::var("MOONCAKE_TCP_FRAMING") {
        Ok(v) if v.trim() == "0" => 0,
        _ => frame::FRAMING_VERSION,
    })
}

/// Options of every data connection, both sides: `TCP_NODELAY` (requests are latency-bound and
/// already written in as few calls as possible), send/receive timeouts, and `TCP_USER_TIMEOUT`
/// at the same bound, so that data left unacknowledged on a dead path fails the connection
/// after `progress_timeout` even while `send` still trickles bytes into the socket buffer.
pub(crate) fn tune_data_socket(s: &std::net::TcpStream, progress_timeout: std::time::Duration) -> std::io::Result<()> {
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(progress_timeout))?;
    s.set_write_timeout(Some(progress_timeout))?;
    socket2::SockRef::from(s).set_tcp_user_timeout(Some(progress_timeout))
}

/// The initiator side towards one peer: Mooncake's protocol, or our framing.
#[derive(Clone)]
enum Link {
    Mooncake(Arc<PeerLink>),
    Framed(Arc<FramedLink>),
}

impl Link {
    fn submit(&self, slices: Vec<Slice>) {
        match self {
            Link::Mooncake(l) => l.submit(slices),
            Link::Framed(l) => l.submit(slices),
        }
    }

    fn info(&self) -> LinkInfo {
        match self {
            Link::Mooncake(l) => l.info(),
            Link::Framed(l) => l.info(),
        }
    }

    fn close(&self) {
        match self {
            Link::Mooncake(l) => l.close(),
            Link::Framed(l) => l.close(),
        }
    }
}

/// Slices of at least this size go over Mooncake's lanes even towards our own engines.
const LARGE_SLICE: u64 = 256 * 1024;

/// See the module documentation.
pub struct TcpTransport {
    server: Mutex<DataServer>,
    data_port: u16,
    settings: LaneSettings,
    /// Links by peer; `None` once shut down, so that no link can start after `shutdown`.
    links: Mutex<Option<HashMap<PeerAddress, Link>>>,
}

impl TcpTransport {
    /// Starts the data server on `listener` (bound by the engine) and prepares lanes.
    pub fn start(
        listener: TcpListener,
        memory: Arc<dyn TargetMemory>,
        settings: LaneSettings,
    ) -> std::io::Result<TcpTransport> {
        let server = DataServer::start(listener, memory, settings.io_timeout)?;
        Ok(TcpTransport {
            data_port: server.port(),
            server: Mutex::new(server),
            settings,
            links: Mutex::new(Some(HashMap::new())),
        })
    }

    /// The port of the data listener, published as `tcp_data_port`.
    pub fn data_port(&self) -> u16 {
        self.data_port
    }

    /// Requests the data server refused since start.
    pub fn refused_requests(&self) -> u64 {
        self.server.lock().refused()
    }

    /// Connections since start on which the data server spoke our framing (`frame.rs`).
    pub fn framed_connections(&self) -> u64 {
        self.server.lock().framed_connections()
    }

    /// Connections the data server has open.
    pub fn server_connections(&self) -> usize {
        self.server.lock().connections()
    }

    /// Connections the data server closed or refused at its connection cap since start.
    pub fn server_shed_connections(&self) -> u64 {
        self.server.lock().shed_connections()
    }

    fn link(&self, addr: &PeerAddress) -> Option<Link> {
        let mut links = self.links.lock();
        let links = links.as_mut()?;
        if let Some(l) = links.get(addr) {
            return Some(l.clone());
        }
        let link = if addr.framing.min(local_framing()) >= 1 {
            Link::Framed(FramedLink::new(addr.clone(), self.settings))
        } else {
            Link::Mooncake(Arc::new(PeerLink::new(addr.clone(), self.settings)))
        };
        Some(links.entry(addr.clone()).or_insert(link).clone())
    }
}

impl Transport for TcpTransport {
    fn name(&self) -> &'static str {
        "tcp"
    }

    fn slice_size(&self) -> u64 {
        TCP_SLICE_SIZE
    }

    fn submit(&self, route: &Route, slices: Vec<Slice>) -> Result<(), Error> {
        let Route::Tcp(addr) = route else {
            slices.into_iter().for_each(|s| s.finish(false));
            return Err(Error::WrongRoute("tcp", route.clone()));
        };
        // Large slices stream faster over Mooncake's one-request-per-connection lanes (several
        // connections in parallel, no frame reassembly) than through our frames, which win for
        // small ones: between two of our engines, each goes where it is fastest.
        let mut slices = slices;
        if addr.framing.min(local_framing()) >= 1 && slices.iter().any(|s| s.len >= LARGE_SLICE) {
            let streaming = PeerAddress { framing: 0, ..addr.clone() };
            let large: Vec<Slice>;
            (large, slices) = if slices.iter().all(|s| s.len >= LARGE_SLICE) {
                (slices, Vec::new())
            } else {
                slices.into_iter().partition(|s| s.len >= LARGE_SLICE)
            };
            match self.link(&streaming) {
                Some(link) => link.submit(large),
                None => {
                    large.into_iter().chain(slices).for_each(|s| s.finish(false));
                    return Err(Error::Closed);
                }
            }
            if slices.is_empty() {
                return Ok(());
            }
        }
        match self.link(addr) {
            Some(link) => {
                link.submit(slices);
                Ok(())
            }
            None => {
                slices.into_iter().for_each(|s| s.finish(false));
                Err(Error::Closed)
            }
        }
    }

    fn links(&self) -> Vec<LinkInfo> {
        self.links.lock().iter().flat_map(|m| m.values()).map(|l| l.info()).collect()
    }

    fn shutdown(&self) {
        let links: Vec<_> = self.links.lock().take().into_iter().flat_map(|m| m.into_values()).collect();
        for l in links {
            l.close();
        }
        self.server.lock().stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{CompletionSink, MemoryLease, Opcode};
    use parking_lot::RwLock;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    /// Leases any range inside one heap buffer.
    struct Buffer {
        base: u64,
        len: u64,
        drain: Arc<RwLock<()>>,
        _mem: Vec<u8>,
    }

    impl TargetMemory for Buffer {
        fn lease(&self, addr: u64, len: u64) -> Option<MemoryLease> {
            let inside = len > 0 && addr >= self.base && addr.checked_add(len)? <= self.base + self.len;
            inside.then(|| MemoryLease::new(self.drain.read_arc()))
        }
    }

    #[derive(Default)]
    struct Count {
        ok: AtomicUsize,
        failed: AtomicUsize,
    }

    impl CompletionSink for Count {
        fn slice_finished(&self, _task: usize, _bytes: u64, ok: bool) {
            let c = if ok { &self.ok } else { &self.failed };
            c.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn settings(idle_exit: Duration) -> LaneSettings {
        LaneSettings {
            lanes_per_peer: 4,
            keep_connections: true,
            connect_timeout: Duration::from_secs(2),
            io_timeout: Duration::from_secs(2),
            idle_exit,
        }
    }

    fn buffer(len: usize) -> Arc<Buffer> {
        let mem = vec![0u8; len];
        Arc::new(Buffer { base: mem.as_ptr() as u64, len: len as u64, drain: Arc::default(), _mem: mem })
    }

    fn wait_until(what: &str, f: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn idle_lanes_end_and_new_ones_start_on_demand() {
        let target_mem = buffer(1 << 20);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = TcpTransport::start(listener, target_mem.clone(), settings(lane::LANE_IDLE_EXIT)).unwrap();
        let src = buffer(1 << 20);
        let initiator = TcpTransport::start(
            std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
            src.clone(),
            settings(Duration::from_millis(200)),
        )
        .unwrap();
        let route =
            Route::Tcp(PeerAddress { host: "127.0.0.1".into(), port: target.data_port(), v2: true, framing: 0 });
        let count = Arc::new(Count::default());
        let slices = |n: u64| -> Vec<Slice> {
            (0..n)
                .map(|i| Slice {
                    opcode: Opcode::Write,
                    local: src.base as usize,
                    verified: true,
                    remote: target_mem.base + i * 4096,
                    len: 4096,
                    sink: count.clone(),
                    task: 0,
                })
                .collect()
        };
        initiator.submit(&route, slices(64)).unwrap();
        wait_until("64 slices", || count.ok.load(Ordering::SeqCst) == 64);
        assert!(initiator.links()[0].connections >= 1);
        wait_until("idle lanes to end", || initiator.links()[0].connections == 0);
        initiator.submit(&route, slices(8)).unwrap();
        wait_until("8 more slices", || count.ok.load(Ordering::SeqCst) == 72);
        assert_eq!(count.failed.load(Ordering::SeqCst), 0);
        initiator.shutdown();
        target.shutdown();
    }

    /// Our framing end to end at the transport level: reads and writes of mixed sizes in one
    /// submission, with refused entries failing alone.
    #[test]
    fn framed_links_move_mixed_slices_and_refuse_entries_alone() {
        let target_mem = buffer(4 << 20);
        let target = TcpTransport::start(
            std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
            target_mem.clone(),
            settings(lane::LANE_IDLE_EXIT),
        )
        .unwrap();
        let src = buffer(4 << 20);
        let initiator = TcpTransport::start(
            std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
            src.clone(),
            settings(lane::LANE_IDLE_EXIT),
        )
        .unwrap();
        // SAFETY: `src` owns 4 MiB at `base`, and no transfer runs yet.
        for (i, b) in unsafe { std::slice::from_raw_parts_mut(src.base as *mut u8, 4 << 20) }.iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        let view = |b: &Buffer, from: u64, len: u64| {
            // SAFETY: both buffers own 4 MiB at `base`; read only while no transfer runs.
            unsafe { std::slice::from_raw_parts((b.base + from) as *const u8, len as usize) }.to_vec()
        };
        let route = Route::Tcp(PeerAddress {
            host: "127.0.0.1".into(),
            port: target.data_port(),
            v2: true,
            framing: frame::FRAMING_VERSION,
        });
        let count = Arc::new(Count::default());
        let slice = |opcode, local: u64, remote: u64, len: u64| Slice {
            opcode,
            local: (src.base + local) as usize,
            verified: true,
            remote,
            len,
            sink: count.clone(),
            task: 0,
        };
        // Writes of 1 B .. 1 MiB into the first 2 MiB, two refused ones among them.
        let mut slices = Vec::new();
        let mut off = 0u64;
        for len in [1u64, 100, 4096, 4097, 65536, 1 << 20] {
            slices.push(slice(Opcode::Write, off, target_mem.base + off, len));
            off += len;
        }
        slices.push(slice(Opcode::Write, 0, target_mem.base + target_mem.len - 10, 20));
        slices.push(slice(Opcode::Read, 0, 8, 8));
        initiator.submit(&route, slices).unwrap();
        wait_until("the writes", || count.ok.load(Ordering::SeqCst) + count.failed.load(Ordering::SeqCst) == 8);
        assert_eq!((count.ok.load(Ordering::SeqCst), count.failed.load(Ordering::SeqCst)), (6, 2));
        assert!(view(&target_mem, 0, off) == view(&src, 0, off));
        // Read it all back into the upper half.
        let back = 2u64 << 20;
        initiator.submit(&route, vec![slice(Opcode::Read, back, target_mem.base, off)]).unwrap();
        wait_until("the read", || count.ok.load(Ordering::SeqCst) == 7);
        assert!(view(&src, back, off) == view(&target_mem, 0, off));
        // A second connection may have opened for the second frame of the first submission.
        assert!((1..=4).contains(&target.framed_connections()));
        assert_eq!(target.refused_requests(), 2);
        initiator.shutdown();
        target.shutdown();
    }
}
