//! Memory a dummy client shares cannot crash `mooncake_client` (issue 18, item 6). A hostile
//! dummy speaks the dummy protocol raw to a real `mooncake_client` process: an unsealed memfd
//! is refused; a sealed one cannot be truncated (EPERM) and keeps working; the original attack
//! (share a memfd, truncate it to 0, then `PutFrom`/`GetInto` on it) no longer kills the real
//! client, whose other dummies keep their objects. About 5 s.

mod support;

use std::os::fd::{AsFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use mooncake::proto::{self, Envelope, ErrorCode, ReplicaConfig};
use mooncake::store::Store;
use mooncake::store::dummy::proto::{DUMMY_PROTOCOL, DummyRequest, DummyResponse, Range, socket_name};
use nix::fcntl::{FcntlArg, SealFlag, fcntl};
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
use support::servers::free_port;
use support::store::Master;

const MIB: u64 = 1 << 20;

struct RealClientProcess {
    child: Child,
    port: u16,
}

impl RealClientProcess {
    fn start(master: &Master) -> RealClientProcess {
        let port = free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_mooncake_client"))
            .args([
                "--host=127.0.0.1".to_string(),
                format!("--port={port}"),
                format!("--master_server_address={}", master.addr()),
                format!("--metadata_server={}", master.metadata()),
                "--global_segment_size=64 MB".to_string(),
            ])
            .env("MC_TCP_BIND_ADDRESS", "127.0.0.1")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start mooncake_client");
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        assert!(line.starts_with("mooncake_client ready"), "mooncake_client said {line:?}");
        RealClientProcess { child, port }
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Panics with the way it died when the process is gone.
    fn assert_alive(&mut self, when: &str) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("mooncake_client died {when}: {status}");
        }
    }
}

impl Drop for RealClientProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A dummy that speaks the protocol itself, with whatever memfd it likes.
struct RawDummy {
    stream: UnixStream,
    next: u64,
    scratch: Vec<u8>,
}

impl RawDummy {
    fn connect(real: &RealClientProcess) -> RawDummy {
        let addr = SocketAddr::from_abstract_name(socket_name(real.port).as_bytes()).unwrap();
        let stream = UnixStream::connect_addr(&addr).expect("the dummy socket");
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut d = RawDummy { stream, next: 1, scratch: Vec::new() };
        match d.call(DummyRequest::Hello { protocol: DUMMY_PROTOCOL }, None) {
            Ok(DummyResponse::Hello { .. }) => d,
            other => panic!("Hello: {other:?}"),
        }
    }

    /// One request; `Err` when the real client closed the socket (or died).
    fn call(&mut self, body: DummyRequest, fd: Option<&OwnedFd>) -> Result<DummyResponse, String> {
        let id = self.next;
        self.next += 1;
        self.scratch.clear();
        proto::encode(&Envelope { id, body }, &mut self.scratch).unwrap();
        send_with_fd(&self.stream, &self.scratch, fd).map_err(|e| e.to_string())?;
        let reply: Envelope<DummyResponse> =
            proto::read_frame(&mut self.stream, &mut self.scratch).map_err(|e| e.to_string())?;
        assert_eq!(reply.id, id);
        Ok(reply.body)
    }

    fn put_from(&mut self, key: &str, addr: u64, len: u64) -> Result<DummyResponse, String> {
        let items = vec![Range { key: key.into(), addr, len }];
        self.call(DummyRequest::PutFrom { items, config: ReplicaConfig::default(), upsert: false }, None)
    }

    fn get_into(&mut self, key: &str, addr: u64, len: u64) -> Result<DummyResponse, String> {
        self.call(DummyRequest::GetInto { items: vec![Range { key: key.into(), addr, len }] }, None)
    }
}

/// The frame in one `sendmsg`, with `fd` attached as `SCM_RIGHTS` (as a dummy sends `Share`).
fn send_with_fd(stream: &UnixStream, bytes: &[u8], fd: Option<&OwnedFd>) -> nix::Result<()> {
    use std::os::fd::AsRawFd;
    let raw = [fd.map_or(-1, |f| f.as_fd().as_raw_fd())];
    let cmsgs = [ControlMessage::ScmRights(&raw)];
    let iov = [std::io::IoSlice::new(bytes)];
    let sent =
        sendmsg::<()>(stream.as_raw_fd(), &iov, if fd.is_some() { &cmsgs } else { &[] }, MsgFlags::empty(), None)?;
    assert_eq!(sent, bytes.len(), "a small frame goes in one sendmsg");
    Ok(())
}

fn memfd(len: u64, sealable: bool) -> OwnedFd {
    let flags = if sealable { MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING } else { MFdFlags::MFD_CLOEXEC };
    let fd = memfd_create(c"hostile", flags).unwrap();
    nix::unistd::ftruncate(&fd, len as i64).unwrap();
    fd
}

/// A legitimate dummy puts and reads back a value: the real client serves, its segment is whole.
fn legit_round_trip(real: &RealClientProcess, key: &str, seed: u64) {
    let dummy = Store::setup_dummy(4 * MIB, 2 * MIB, &real.address()).expect("legit dummy");
    let value = support::pattern(MIB as usize, seed);
    dummy.put_parts(key, &[&value], &ReplicaConfig::default(), false).expect("legit put");
    assert_eq!(dummy.get(key).expect("legit get"), value);
    dummy.close().unwrap();
}

const FAKE_ADDR: u64 = 0x7e00_0000_0000;

#[test]
fn an_unsealed_memfd_is_refused_and_the_truncation_attack_kills_nothing() {
    let master = Master::start(&[]);
    let mut real = RealClientProcess::start(&master);
    legit_round_trip(&real, "before", 1);

    for sealable in [false, true] {
        let mut hostile = RawDummy::connect(&real);
        let fd = memfd(MIB, sealable);
        let share = hostile.call(DummyRequest::Share { addr: FAKE_ADDR, size: MIB }, Some(&fd));
        // The original attack: truncate, then make the real client touch the memory.
        nix::unistd::ftruncate(&fd, 0).unwrap();
        let put = hostile.put_from("attack", FAKE_ADDR, 4096);
        let get = hostile.get_into("before", FAKE_ADDR, MIB);
        std::thread::sleep(Duration::from_millis(200));
        real.assert_alive("after the truncation attack");
        match share {
            Ok(DummyResponse::Error(code, msg)) => {
                assert_eq!(code, ErrorCode::InvalidParams);
                assert!(msg.contains("F_SEAL_SHRINK"), "{msg}");
            }
            other => panic!("an unsealed memfd (sealable: {sealable}) was not refused: {other:?}"),
        }
        for (what, r) in [("PutFrom", put), ("GetInto", get)] {
            match r {
                Ok(DummyResponse::Codes(c)) => assert_eq!(c, vec![Err(ErrorCode::InvalidParams)], "{what}"),
                Ok(DummyResponse::Sizes(c)) => assert_eq!(c, vec![Err(ErrorCode::InvalidParams)], "{what}"),
                other => panic!("{what} on refused memory: {other:?}"),
            }
        }
        real.assert_alive("after the truncation attack");
    }
    legit_round_trip(&real, "after", 2);
    let check = Store::setup_dummy(0, 2 * MIB, &real.address()).unwrap();
    assert_eq!(check.get("before").unwrap(), support::pattern(MIB as usize, 1), "the earlier object survived");
    check.close().unwrap();
    real.assert_alive("at the end");
}

#[test]
fn a_sealed_memfd_cannot_be_truncated_and_keeps_working() {
    let master = Master::start(&[]);
    let mut real = RealClientProcess::start(&master);
    let mut dummy = RawDummy::connect(&real);
    // Sealed as our dummies seal theirs.
    let fd = memfd(MIB, true);
    fcntl(&fd, FcntlArg::F_ADD_SEALS(SealFlag::F_SEAL_SHRINK)).unwrap();
    let base = FAKE_ADDR;
    match dummy.call(DummyRequest::Share { addr: base, size: MIB }, Some(&fd)) {
        Ok(DummyResponse::Done) => {}
        other => panic!("a sealed memfd was refused: {other:?}"),
    }
    assert_eq!(nix::unistd::ftruncate(&fd, 0), Err(nix::errno::Errno::EPERM));

    let value = support::pattern(64 << 10, 7);
    assert_eq!(nix::sys::uio::pwrite(&fd, &value, 0).unwrap(), value.len());
    match dummy.put_from("sealed", base, value.len() as u64) {
        Ok(DummyResponse::Codes(c)) => assert_eq!(c, vec![Ok(())]),
        other => panic!("PutFrom: {other:?}"),
    }
    let back = 512 << 10;
    match dummy.get_into("sealed", base + back, value.len() as u64) {
        Ok(DummyResponse::Sizes(c)) => assert_eq!(c, vec![Ok(value.len() as u64)]),
        other => panic!("GetInto: {other:?}"),
    }
    let mut seen = vec![0u8; value.len()];
    assert_eq!(nix::sys::uio::pread(&fd, &mut seen, back as i64).unwrap(), value.len());
    assert_eq!(seen, value);

    // A memfd shorter than the size claimed is refused as well.
    let short = memfd(4096, true);
    fcntl(&short, FcntlArg::F_ADD_SEALS(SealFlag::F_SEAL_SHRINK)).unwrap();
    match dummy.call(DummyRequest::Share { addr: base + 2 * MIB, size: MIB }, Some(&short)) {
        Ok(DummyResponse::Error(ErrorCode::InvalidParams, msg)) => assert!(msg.contains("4096 bytes"), "{msg}"),
        other => panic!("a short memfd was not refused: {other:?}"),
    }
    real.assert_alive("at the end");
}
