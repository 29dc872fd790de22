//! Real etcd and redis servers for the metadata tests: Debian's `etcd` and `redis-server`, each
//! started on free loopback ports with its data in a temporary directory, and stopped by PID
//! when dropped. Missing binaries skip the test unless `MOONCAKE_REQUIRE_SERVERS` is set (CI).
#![allow(dead_code)]

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port (bound once, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn have(binary: &str) -> bool {
    let found =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(binary).is_file())).unwrap_or(false);
    if !found {
        assert!(
            std::env::var_os("MOONCAKE_REQUIRE_SERVERS").is_none(),
            "{binary} is not installed and MOONCAKE_REQUIRE_SERVERS is set"
        );
        eprintln!("SKIPPED: {binary} is not installed");
    }
    found
}

fn wait_listening(port: u16, what: &str, log: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            panic!("{what} did not listen on {port}: {}", std::fs::read_to_string(log).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One server process; `stop` and `start` again keep the same ports (and, for etcd, the same
/// data unless `wipe`).
pub struct Server {
    kind: &'static str,
    dir: ScratchDir,
    pub port: u16,
    peer_port: u16,
    child: Option<Child>,
}

impl Server {
    /// etcd on a free client port, or `None` when etcd is not installed.
    pub fn etcd() -> Option<Server> {
        if !have("etcd") {
            return None;
        }
        Some(Server::launch("etcd"))
    }

    /// redis-server on a free port, without persistence, or `None` when it is not installed.
    pub fn redis() -> Option<Server> {
        if !have("redis-server") {
            return None;
        }
        Some(Server::launch("redis"))
    }

    fn launch(kind: &'static str) -> Server {
        let mut s = Server { kind, dir: ScratchDir::new(kind), port: free_port(), peer_port: free_port(), child: None };
        s.start();
        s
    }

    /// The connection string engines use.
    pub fn url(&self) -> String {
        match self.kind {
            "etcd" => format!("etcd://127.0.0.1:{}", self.port),
            _ => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join(format!("{}.log", self.kind))
    }

    /// Starts the process (again) on the same ports.
    pub fn start(&mut self) {
        assert!(self.child.is_none());
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log()).unwrap();
        let mut cmd = match self.kind {
            "etcd" => {
                let client = format!("http://127.0.0.1:{}", self.port);
                let peer = format!("http://127.0.0.1:{}", self.peer_port);
                let mut c = Command::new("etcd");
                c.arg("--data-dir")
                    .arg(self.dir.path().join("data"))
                    .args(["--name", "test", "--listen-client-urls", &client, "--advertise-client-urls", &client])
                    .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
                    .args(["--initial-cluster", &format!("test={peer}")]);
                c
            }
            _ => {
                let mut c = Command::new("redis-server");
                c.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                    .arg("--dir")
                    .arg(self.dir.path());
                c
            }
        };
        let child =
            cmd.stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log).spawn().expect("start the server");
        self.child = Some(child);
        wait_listening(self.port, self.kind, &self.log());
    }

    /// Stops the process by its PID (SIGKILL: nothing is flushed; etcd's data stays in its
    /// write-ahead log, redis keeps nothing).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `sig` to the running server process (SIGSTOP/SIGCONT: a stalled server).
    pub fn signal(&self, sig: i32) {
        let pid = self.child.as_ref().expect("the server runs").id() as i32;
        // SAFETY: signalling our own child by its PID.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    }

    /// Removes etcd's data directory (stopped server only): a restart then starts empty.
    pub fn wipe(&mut self) {
        assert!(self.child.is_none());
        let _ = std::fs::remove_dir_all(self.dir.path().join("data"));
    }
}

/// A directory of its own under the system temp dir, removed when dropped.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(kind: &str) -> ScratchDir {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("mooncake-{kind}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        ScratchDir(dir)
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}
