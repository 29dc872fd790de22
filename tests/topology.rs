//! Topology through the C ABI and the engine: `discoverTopology`, `mooncake_local_topology`,
//! a NIC priority matrix in `installTransport`'s `args[0]`, and the location `"*"`.
//!
//! The multi-node test needs two NUMA nodes; it skips on a one-node host. It runs in the
//! two-node guest of `tools/rdma-vm/`:
//! `cargo test --release --test topology --no-run`, then
//! `tools/rdma-vm/run.sh --numa 2 --cpus 2 target/release/deps/topology-<hash> --test-threads=1`.

mod support;

use std::collections::BTreeSet;
use std::ffi::{c_char, c_void};
use std::ptr::null_mut;

use mooncake::engine::{EngineOptions, TransferEngine};
use mooncake::topology::{PriorityMatrix, pages};
use support::ffi::*;

/// `mooncake_local_topology` as a String, asking for the length first.
fn topology_text(e: transfer_engine_t, devices: Option<&str>) -> String {
    let devices = devices.map(c);
    let dp = devices.as_ref().map_or(std::ptr::null(), |d| d.as_ptr());
    // SAFETY: NULL buffer with length 0 asks for the length; then a buffer of that size + 1.
    let n = unsafe { mooncake_local_topology(e, dp, null_mut(), 0) };
    assert!(n > 0, "mooncake_local_topology: {n}: {}", last_error());
    let mut buf = vec![0 as c_char; n as usize + 1];
    // SAFETY: `buf` is writable for its length.
    let m = unsafe { mooncake_local_topology(e, dp, buf.as_mut_ptr(), buf.len()) };
    assert_eq!(m, n);
    let bytes: Vec<u8> = buf[..n as usize].iter().map(|&b| b as u8).collect();
    assert_eq!(buf[n as usize], 0, "NUL-terminated");
    String::from_utf8(bytes).unwrap()
}

/// `"cpu:<n>"` for each `nodeN` directory of sysfs (what Mooncake lists).
fn sysfs_nodes() -> BTreeSet<String> {
    std::fs::read_dir("/sys/devices/system/node")
        .map(|rd| {
            rd.filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                let id: u32 = name.strip_prefix("node")?.parse().ok()?;
                Some(format!("cpu:{id}"))
            })
            .collect()
        })
        .unwrap_or_default()
}

/// RDMA devices of sysfs with an active port.
fn usable_rdma_devices() -> Vec<String> {
    let Ok(rd) = std::fs::read_dir("/sys/class/infiniband") else { return Vec::new() };
    rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|d| {
            let ports = std::fs::read_dir(format!("/sys/class/infiniband/{d}/ports"));
            ports
                .into_iter()
                .flatten()
                .flatten()
                .any(|p| std::fs::read_to_string(p.path().join("state")).is_ok_and(|s| s.contains("ACTIVE")))
        })
        .collect()
}

#[test]
fn discover_topology_lists_this_machines_numa_nodes() {
    let (meta, host) = (c("P2PHANDSHAKE"), c("127.0.0.1"));
    // SAFETY: valid strings; no auto-discovery: the topology starts empty, as in Mooncake.
    let e = unsafe { createTransferEngine(meta.as_ptr(), host.as_ptr(), std::ptr::null(), 0, 0) };
    assert!(!e.is_null(), "{}", last_error());
    assert_eq!(topology_text(e, None), "{}\n");
    assert_code(discoverTopology(e), 0, "discoverTopology");
    let text = topology_text(e, None);
    let matrix = PriorityMatrix::parse(&text).unwrap();
    let keys: BTreeSet<String> = matrix.entries.keys().cloned().collect();
    assert_eq!(keys, sysfs_nodes(), "{text}");
    assert!(text.starts_with("{\n\t\"cpu:") || keys.is_empty(), "Mooncake's layout: {text:?}");
    // Every usable RDMA device is listed for every node, preferred or not.
    let usable: BTreeSet<String> = usable_rdma_devices().into_iter().collect();
    for (location, entry) in &matrix.entries {
        let listed: BTreeSet<String> = entry.preferred.iter().chain(&entry.available).cloned().collect();
        assert_eq!(listed, usable, "{location}: {text}");
    }
    // The same as a fresh discovery, and as an engine created with auto_discover.
    assert_eq!(topology_text(null_mut(), None), text);
    let auto = create();
    assert_eq!(topology_text(auto, None), text);
    destroyTransferEngine(auto);
    assert_code(discoverTopology(null_mut()), ERR_INVALID_ARGUMENT, "discoverTopology");
    destroyTransferEngine(e);
}

#[test]
fn local_topology_follows_snprintf_and_checks_its_arguments() {
    let e = create();
    let full = topology_text(e, None);
    let mut small = [0x55 as c_char; 5];
    // SAFETY: writable buffers of the given lengths; valid strings.
    unsafe {
        let n = mooncake_local_topology(e, std::ptr::null(), small.as_mut_ptr(), small.len());
        assert_eq!(n as usize, full.len(), "the result is the whole length even when cut");
        let cut: Vec<u8> = small[..4].iter().map(|&b| b as u8).collect();
        assert_eq!(&cut[..], &full.as_bytes()[..4]);
        assert_eq!(small[4], 0, "a cut text is still NUL-terminated");
        let code = mooncake_local_topology(e, std::ptr::null(), null_mut(), 10);
        assert_code(code, ERR_INVALID_ARGUMENT, "mooncake_local_topology");
        let code = mooncake_local_topology(e, c("mlx5_0").as_ptr(), small.as_mut_ptr(), small.len());
        assert_code(code, ERR_INVALID_ARGUMENT, "mooncake_local_topology");
        assert!(last_error().contains("device_names"), "{}", last_error());
    }
    // A device list restricts a fresh discovery; this host's nodes stay.
    let filtered = PriorityMatrix::parse(&topology_text(null_mut(), Some("no_such_device"))).unwrap();
    assert!(filtered.devices().is_empty());
    assert_eq!(filtered.entries.keys().cloned().collect::<BTreeSet<_>>(), sysfs_nodes());
    destroyTransferEngine(e);
    // SAFETY: a destroyed handle is the case under test.
    let code = unsafe { mooncake_local_topology(e, std::ptr::null(), small.as_mut_ptr(), small.len()) };
    assert_code(code, ERR_INVALID_ARGUMENT, "mooncake_local_topology");
}

#[test]
fn install_transport_takes_a_priority_matrix_and_refuses_a_malformed_one() {
    let (meta, host) = (c("P2PHANDSHAKE"), c("127.0.0.1"));
    // SAFETY: valid strings.
    let e = unsafe { createTransferEngine(meta.as_ptr(), host.as_ptr(), std::ptr::null(), 0, 0) };
    assert!(!e.is_null());
    let given = c(r#"{"cpu:0": [["mlx5_0"], ["mlx5_1"]], "cuda:0": [["mlx5_1"], []]}"#);
    let malformed = c(r#"{"cpu:0": [["mlx5_0"]]"#);
    let mut args: [*mut c_void; 2] = [given.as_ptr() as *mut c_void, null_mut()];
    // SAFETY: `args` holds a valid string and outlives the calls.
    unsafe {
        mark_last_error();
        assert!(installTransport(e, c("rdma").as_ptr(), args.as_mut_ptr()).is_null());
        let err = last_error();
        // Without the rdma feature it is not in the build; with it, this host has no device.
        let refused = err.contains("\"rdma\" is not available") || err.contains("no RDMA device");
        assert!(err.starts_with("installTransport") && refused, "{err}");
        // Mooncake parses the matrix before it tries the transport: the engine keeps it, less
        // the devices this machine has no usable RDMA device for (Mooncake's RDMA transport
        // drops those it cannot open).
        let text = topology_text(e, None);
        let mut want = PriorityMatrix::parse(given.to_str().unwrap()).unwrap();
        want.retain_devices(|d| usable_rdma_devices().iter().any(|u| u == d));
        assert_eq!(text, want.to_styled_string());
        assert!(text.contains("\"cuda:0\"") && text.contains("\"cpu:0\""));

        args[0] = malformed.as_ptr() as *mut c_void;
        mark_last_error();
        assert!(installTransport(e, c("rdma").as_ptr(), args.as_mut_ptr()).is_null());
        let err = last_error();
        assert!(err.starts_with("installTransport") && err.contains("malformed NIC priority matrix"), "{err}");
        assert_eq!(topology_text(e, None), text, "a malformed matrix changes nothing");
        // tcp: a malformed matrix fails the install too, until tcp is installed.
        assert!(installTransport(e, c("tcp").as_ptr(), args.as_mut_ptr()).is_null());
        assert!(last_error().contains("malformed"));
        args[0] = null_mut();
        let tcp = installTransport(e, c("tcp").as_ptr(), args.as_mut_ptr());
        assert!(!tcp.is_null(), "args[0] NULL is no matrix: {}", last_error());
        args[0] = malformed.as_ptr() as *mut c_void;
        assert_eq!(installTransport(e, c("tcp").as_ptr(), args.as_mut_ptr()), tcp, "installed: returned as is");
    }
    destroyTransferEngine(e);
}

/// Zeroed memory no page of which was touched: above glibc's largest mmap threshold (32 MiB),
/// calloc maps it fresh and does not write it (except the allocator's header, on page 0).
fn untouched_buffer() -> Vec<u8> {
    vec![0u8; 64 << 20]
}

/// The offset in `buf` of a 2 MiB boundary at least 2 MiB from its start. Touching a page may
/// fault in its whole 2 MiB block (transparent huge pages): memory after the boundary stays
/// untouched when only memory before it is written.
fn huge_boundary(buf: &[u8]) -> usize {
    let base = buf.as_ptr() as usize;
    ((base + (4 << 20)) & !((2 << 20) - 1)) - base
}

#[test]
fn star_registrations_resolve_their_node_and_stay_one_tcp_buffer() {
    let engine = TransferEngine::new(EngineOptions::p2p("127.0.0.1")).unwrap();
    let page = pages::page_size() as usize;
    let mut buf = untouched_buffer();
    let b = huge_boundary(&buf);
    buf[b - 16 * page..b].fill(1); // faulted in; what follows the boundary is never touched
    let touched = buf[b - 16 * page..].as_ptr() as u64;
    let untouched = buf[b..].as_ptr() as u64;
    engine.register_memory(touched, 16 * page as u64, "*", true).unwrap();
    engine.register_memory_batch(&[(untouched, 8 * page as u64)], "*").unwrap();
    engine.register_memory(untouched + 8 * page as u64, page as u64, "cpu:7", true).unwrap();

    let first = pages::first_page_location(touched);
    assert_eq!(engine.region_location(touched).as_deref(), Some(first.as_str()));
    if first == "*" {
        eprintln!("note: move_pages reports no node on this host; \"*\" stays \"*\"");
    } else {
        assert!(first.starts_with("cpu:"), "{first}");
    }
    assert_eq!(engine.region_location(untouched).as_deref(), Some("*"), "a page never touched has no node");
    assert_eq!(engine.region_location(untouched + 8 * page as u64).as_deref(), Some("cpu:7"), "kept as given");

    // The tcp descriptor: one buffer per registration, named after the server (Mooncake's tcp).
    let desc = engine.local_descriptor();
    assert_eq!(desc.buffers.len(), 3);
    for b in &desc.buffers {
        assert_eq!(b.name, engine.server_name());
    }
    assert_eq!((desc.buffers[0].addr, desc.buffers[0].length), (touched, 16 * page as u64));
    let json = desc.to_json();
    assert!(json["buffers"].as_array().unwrap().iter().all(|b| b["name"] == engine.server_name()));
    engine.unregister_memory(touched).unwrap();
}

#[test]
fn star_through_the_c_abi() {
    let e = create();
    let page = pages::page_size() as usize;
    let mut buf = vec![2u8; 16 * page];
    let p = buf.as_mut_ptr() as *mut c_void;
    let star = c("*");
    let mut entries = [buffer_entry_t { addr: p, length: 4 * page }];
    let mut count = 4usize;
    let mut out = [buffer_entry_t { addr: null_mut(), length: 0 }; 4];
    // SAFETY: `region` outlives the registration; valid strings and arrays.
    unsafe {
        assert_code(registerLocalMemory(e, p, 4 * page, star.as_ptr(), 1), 0, "registerLocalMemory");
        assert_code(mooncake_segment_buffers(e, 0, out.as_mut_ptr(), &mut count), 0, "mooncake_segment_buffers");
        assert_eq!(count, 1, "one buffer entry for one \"*\" registration");
        assert_eq!((out[0].addr, out[0].length), (p, 4 * page));
        assert_code(unregisterLocalMemory(e, p), 0, "unregisterLocalMemory");
        assert_code(registerLocalMemoryBatch(e, entries.as_mut_ptr(), 1, star.as_ptr()), 0, "registerLocalMemoryBatch");
        let mut addrs = [p];
        assert_code(unregisterLocalMemoryBatch(e, addrs.as_mut_ptr(), 1), 0, "unregisterLocalMemoryBatch");
    }
    destroyTransferEngine(e);
}

/// `mbind(addr, len, MPOL_BIND, {node}, MPOL_MF_MOVE)`: pages faulted in later come from
/// `node`, pages already there move to it.
fn bind_to_node(region: &mut [u8], node: u32) -> std::io::Result<()> {
    const MPOL_BIND: libc::c_int = 2;
    const MPOL_MF_MOVE: libc::c_uint = 1 << 1;
    let mask: libc::c_ulong = 1 << node;
    // SAFETY: `region` is a live, page-aligned range of this process; the kernel reads one
    // word of node mask (64 bits, `maxnode` 64) and changes only the range's policy and the
    // physical placement of its pages, never their contents.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mbind,
            region.as_mut_ptr(),
            region.len() as libc::c_ulong,
            MPOL_BIND,
            &mask as *const libc::c_ulong,
            64 as libc::c_ulong,
            MPOL_MF_MOVE,
        )
    };
    if rc < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
}

#[test]
fn two_nodes_memory_bound_to_node_1_is_cpu_1() {
    let nodes = sysfs_nodes();
    if nodes.len() < 2 || !nodes.contains("cpu:1") {
        eprintln!("SKIPPED: {} NUMA node(s) here; run in rdma-vm --numa 2 (see the module doc)", nodes.len());
        return;
    }
    let topology = mooncake::engine::discover_local("");
    assert_eq!(topology.node_ids(), [0, 1], "{topology:?}");
    assert!(topology.numa_nodes.iter().all(|n| !n.cpus.is_empty()), "each node has CPUs: {topology:?}");
    let text = topology.to_mooncake_json();
    assert!(text.contains("\"cpu:0\"") && text.contains("\"cpu:1\""), "{text}");

    let page = pages::page_size() as usize;
    let mut buf = untouched_buffer();
    let b = huge_boundary(&buf);
    let (low, high) = buf[b - 8 * page..b + 8 * page].split_at_mut(8 * page);
    bind_to_node(low, 0).expect("mbind node 0");
    bind_to_node(high, 1).expect("mbind node 1");
    low.fill(3);
    high.fill(4);
    let (addr, len) = (low.as_ptr() as u64, 16 * page as u64);
    let high_addr = high.as_ptr() as u64;
    let spans = pages::memory_location(addr, len);
    let got: Vec<(u64, u64, &str)> = spans.iter().map(|s| (s.addr, s.len, s.location.as_str())).collect();
    assert_eq!(got, [(addr, 8 * page as u64, "cpu:0"), (high_addr, 8 * page as u64, "cpu:1")]);
    assert_eq!(pages::first_page_location(high_addr), "cpu:1");

    let engine = TransferEngine::new(EngineOptions::p2p("127.0.0.1")).unwrap();
    assert_eq!(engine.topology().node_ids(), [0, 1]);
    engine.register_memory(high_addr, 8 * page as u64, "*", true).unwrap();
    assert_eq!(engine.region_location(high_addr).as_deref(), Some("cpu:1"));
    engine.unregister_memory(high_addr).unwrap();
    // One "*" registration across both nodes: still one tcp buffer entry.
    engine.register_memory(addr, len, "*", true).unwrap();
    assert_eq!(engine.region_location(addr).as_deref(), Some("cpu:0"));
    let desc = engine.local_descriptor();
    assert_eq!(desc.buffers.len(), 1);
    assert_eq!((desc.buffers[0].addr, desc.buffers[0].length), (addr, len));
    eprintln!("two NUMA nodes: spans {got:?}");
}
