//! Dummy clients: a real `mooncake_client` process owns the segment; dummies in this process
//! reach it through its unix socket and shared memory, and see the same store as a real
//! client does.

mod support;

use std::process::{Child, Command, Stdio};

use mooncake::store::{ErrorCode, KeyBuffer, ReplicaConfig, Store};
use support::servers::free_port;
use support::store::{Master, checksum};

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

    fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(std::time::Instant::now() < deadline, "mooncake_client ignored SIGTERM");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for RealClientProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn one() -> ReplicaConfig {
    ReplicaConfig { replica_num: 1, ..Default::default() }
}

#[test]
fn dummies_share_one_real_client_and_see_what_real_clients_see() {
    let master = Master::start(&[]);
    let mut real = RealClientProcess::start(&master);
    let a = Store::setup_dummy(16 * MIB, 4 * MIB, &real.address()).expect("dummy a");
    let b = Store::setup_dummy(0, MIB, &real.address()).expect("dummy b");
    assert!(a.hostname().starts_with("127.0.0.1:"), "{}", a.hostname());
    assert_eq!(a.health_check(), 0);

    // Plain values, one larger than the staging mapping of `b`.
    let small = support::pattern(3000, 1);
    let large = support::pattern(3 * MIB as usize, 2);
    a.put_parts("small", &[&small], &one(), false).unwrap();
    a.put_parts("large", &[&large[..MIB as usize], &large[MIB as usize..]], &one(), false).unwrap();
    assert_eq!(b.get("small").unwrap(), small);
    assert_eq!(checksum(&b.get("large").unwrap()), checksum(&large));

    // Zero copy through pool memory; memory outside the pool is refused.
    let pool = a.alloc_from_mem_pool(2 * MIB).unwrap();
    a.register_buffer(pool, 2 * MIB).unwrap();
    // SAFETY: `pool` is a 2 MiB mapping of this process returned by alloc_from_mem_pool.
    let mem = unsafe { std::slice::from_raw_parts_mut(pool as *mut u8, 2 * MIB as usize) };
    support::fill(&mut mem[..MIB as usize], 9);
    let items = [KeyBuffer { key: "zc", addr: pool, len: MIB }];
    a.batch_put_from(&items, &one(), false).pop().unwrap().unwrap();
    assert_eq!(a.get_into("zc", pool + MIB, MIB).unwrap(), MIB);
    assert_eq!(mem[..MIB as usize], mem[MIB as usize..]);
    let loose = vec![0u8; 4096];
    assert_eq!(a.register_buffer(loose.as_ptr() as u64, 4096).unwrap_err().code, ErrorCode::InvalidParams);
    assert_eq!(a.get_into("zc", loose.as_ptr() as u64, MIB).unwrap_err().code, ErrorCode::InvalidParams);
    assert_eq!(b.alloc_from_mem_pool(MIB).err().map(|e| e.code), None, "no pool limit for b");
    assert_eq!(a.alloc_from_mem_pool(15 * MIB).unwrap_err().code, ErrorCode::NoAvailableHandle);

    // A real client sees the dummies' objects, and the other way round.
    let pure = master.client(0);
    assert_eq!(pure.get("small").unwrap(), small);
    pure.put_parts("from-real", &[b"hello"], &one(), false).unwrap();
    assert_eq!(a.get("from-real").unwrap(), b"hello");
    assert!(b.is_exist("zc").unwrap());
    assert_eq!(b.get_size("large").unwrap(), large.len() as u64);
    assert_eq!(b.remove("small", true), Ok(()));
    assert_eq!(a.get("small").unwrap_err().code, ErrorCode::ObjectNotFound);

    a.close().unwrap();
    assert_eq!(a.health_check(), 1);
    assert_eq!(a.get("large").unwrap_err().code, ErrorCode::InvalidParams);
    assert_eq!(b.get("from-real").unwrap(), b"hello", "closing one dummy leaves the others working");
    drop(b);
    assert!(real.terminate().success(), "mooncake_client exits 0 on SIGTERM");
    // Its segment is gone with it.
    assert_eq!(pure.get("large").unwrap_err().code, ErrorCode::ObjectNotFound);
}

#[test]
fn a_dummy_without_a_real_client_fails_with_rpc_fail() {
    let port = free_port();
    let e = Store::setup_dummy(0, MIB, &format!("127.0.0.1:{port}")).err().expect("no server");
    assert_eq!(e.code, ErrorCode::RpcFail);
    let e = Store::setup_dummy(0, MIB, "no-port").err().expect("bad address");
    assert_eq!(e.code, ErrorCode::InvalidParams);
}

#[test]
fn a_dummy_with_a_zero_local_buffer_fails_put_and_get_of_bytes_and_keeps_zero_copy() {
    // As Mooncake's dummy (its buffer allocator has nothing to hand out): put fails and leaves
    // no key; the zero-copy calls on pool memory still work.
    let master = Master::start(&[]);
    let mut real = RealClientProcess::start(&master);
    let d = Store::setup_dummy(0, 0, &real.address()).expect("dummy with local_buffer_size 0");
    let e = d.put_parts("zero-dummy", &[b"test_zero_buffer_value"], &one(), false).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidParams, "{e}");
    assert!(!d.is_exist("zero-dummy").unwrap());
    let pool = d.alloc_from_mem_pool(MIB).unwrap();
    d.register_buffer(pool, MIB).unwrap();
    // SAFETY: `pool` is a mapping of MIB bytes this dummy owns until it is closed.
    let mem = unsafe { std::slice::from_raw_parts_mut(pool as *mut u8, MIB as usize) };
    support::fill(&mut mem[..4096], 3);
    let want = mem[..4096].to_vec();
    d.put_from("zero-dummy-zc", pool, 4096, &one(), false).unwrap();
    mem[..4096].fill(0);
    assert_eq!(d.get_into("zero-dummy-zc", pool, 4096).unwrap(), 4096);
    assert_eq!(&mem[..4096], &want[..]);
    assert_eq!(d.get("zero-dummy-zc").unwrap_err().code, ErrorCode::InvalidParams);
    d.close().unwrap();
    assert!(real.terminate().success());
}
