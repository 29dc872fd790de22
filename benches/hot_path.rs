//! Micro-benchmarks of the request path: cutting a request into slices, submitting a batch (to
//! this engine's own segment and to a second engine over loopback TCP), polling task status
//! (Rust and C), and the TCP frames (request header, status frame).
//!
//! `cargo bench --bench hot_path` runs them; `-- --quick` (or `--warm-up-time 1
//! --measurement-time 2`) for a short run, and a name filter picks groups, e.g. `-- frame`.
//! `cargo test` does not build them (`cargo test --benches` runs each once, as a check).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mooncake::engine::batch::cut_task;
use mooncake::engine::{EngineOptions, TransferEngine, TransferRequest};
use mooncake::transport::tcp::wire::{self, HEADER_LEN, Header};
use mooncake::transport::{CompletionSink, Opcode, Slice};

/// The tests' handshake stand-in (a scripted descriptor reply).
#[allow(dead_code)]
#[path = "../tests/support/fake_peer.rs"]
mod fake_peer;

/// Writes of this many bytes each in the submission benchmarks: small, so that the figures are
/// the engine's cost per task rather than copying.
const TASK_LEN: u64 = 64;
/// Batch sizes of the submission benchmarks.
const BATCHES: [usize; 3] = [1, 64, 1024];

fn engine() -> TransferEngine {
    TransferEngine::new(EngineOptions::p2p("127.0.0.1")).expect("engine")
}

fn writes(n: usize, source: u64, target_id: i32, target: u64) -> Vec<TransferRequest> {
    (0..n as u64)
        .map(|i| TransferRequest {
            opcode: Opcode::Write,
            source: source + i * TASK_LEN,
            target_id,
            target_offset: target + i * TASK_LEN,
            length: TASK_LEN,
        })
        .collect()
}

/// A sink that drops every report: slicing alone is measured.
struct Discard;

impl CompletionSink for Discard {
    fn slice_finished(&self, _task: usize, _bytes: u64, _ok: bool) {}
}

fn slicing(c: &mut Criterion) {
    let mut g = c.benchmark_group("slicing");
    let sink: Arc<dyn CompletionSink> = Arc::new(Discard);
    for (name, length, slice) in [("64KiB_whole", 64u64 << 10, u64::MAX), ("1GiB_at_1MiB", 1 << 30, 1 << 20)] {
        let req = TransferRequest { opcode: Opcode::Write, source: 0x10_0000, target_id: 1, target_offset: 0, length };
        let mut out: Vec<Slice> = Vec::with_capacity(length.div_ceil(slice) as usize);
        g.throughput(Throughput::Elements(length.div_ceil(slice)));
        g.bench_function(name, |b| {
            b.iter(|| {
                cut_task(black_box(&req), slice, &sink, 0, &mut out);
                // Dropped unreported: the sink ignores reports anyway.
                out.clear();
            })
        });
    }
    g.finish();
}

/// Allocate a batch, submit `n` writes, wait for them, free it: one batch's whole cycle.
fn submit_cycle(e: &TransferEngine, reqs: &[TransferRequest]) {
    let batch = e.allocate_batch(reqs.len()).unwrap();
    e.submit(batch, reqs, None).unwrap();
    let outcome = e.wait_batch(batch, Duration::from_secs(30)).unwrap();
    assert_eq!(outcome, mooncake::engine::BatchOutcome::Completed);
    e.free_batch(batch).unwrap();
}

fn submission(c: &mut Criterion) {
    let max = *BATCHES.iter().max().unwrap();
    let len = max * TASK_LEN as usize;
    let src = vec![1u8; len];
    let mut dst = vec![0u8; len];

    let local = engine();
    local.register_memory(src.as_ptr() as u64, len as u64, "cpu:0", true).unwrap();
    local.register_memory(dst.as_mut_ptr() as u64, len as u64, "cpu:0", true).unwrap();
    let mut g = c.benchmark_group("submit_local");
    for n in BATCHES {
        let reqs = writes(n, src.as_ptr() as u64, 0, dst.as_ptr() as u64);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &reqs, |b, reqs| b.iter(|| submit_cycle(&local, reqs)));
    }
    g.finish();
    drop(local);

    // Two engines over loopback TCP. The initiator gets the target's segment from a handshake
    // stand-in that offers TCP only: the target's own descriptor may offer the same-host path.
    let target = engine();
    let init = engine();
    target.register_memory(dst.as_mut_ptr() as u64, len as u64, "cpu:0", true).unwrap();
    init.register_memory(src.as_ptr() as u64, len as u64, "cpu:0", true).unwrap();
    let data_port = target.segment_descriptor(0).unwrap().tcp_data_port;
    let descriptor = fake_peer::descriptor_json("tcp-only", data_port, dst.as_ptr() as u64, len as u64);
    let hs = fake_peer::FakeServer::handshake(fake_peer::Reply::Frame(1, descriptor));
    let seg = init.open_segment(&format!("127.0.0.1:{}", hs.port), false).unwrap();
    let mut g = c.benchmark_group("submit_tcp");
    for n in BATCHES {
        let reqs = writes(n, src.as_ptr() as u64, seg, dst.as_ptr() as u64);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &reqs, |b, reqs| b.iter(|| submit_cycle(&init, reqs)));
    }
    g.finish();
}

fn polling(c: &mut Criterion) {
    const TASKS: usize = 4096;
    let len = TASKS * TASK_LEN as usize;
    let src = vec![1u8; len];
    let mut dst = vec![0u8; len];
    let e = engine();
    e.register_memory(src.as_ptr() as u64, len as u64, "cpu:0", true).unwrap();
    e.register_memory(dst.as_mut_ptr() as u64, len as u64, "cpu:0", true).unwrap();
    let batch = e.allocate_batch(TASKS).unwrap();
    e.submit(batch, &writes(TASKS, src.as_ptr() as u64, 0, dst.as_ptr() as u64), None).unwrap();
    assert_eq!(e.wait_batch(batch, Duration::from_secs(30)).unwrap(), mooncake::engine::BatchOutcome::Completed);

    let mut g = c.benchmark_group("poll");
    let mut task = 0usize;
    g.bench_function("task_status", |b| {
        b.iter(|| {
            task = (task + 1) % TASKS;
            black_box(e.task_status(batch, black_box(task)).unwrap())
        })
    });
    g.finish();
    e.free_batch(batch).unwrap();
    drop(e);

    // The C entry point, as a C program polls.
    use mooncake::ffi::engine::{
        OPCODE_WRITE, allocateBatchID, createTransferEngine, destroyTransferEngine, freeBatchID, getTransferStatus,
        registerLocalMemory, submitTransfer, transfer_request, transfer_status,
    };
    let (meta, host, loc) = (c"P2PHANDSHAKE", c"127.0.0.1", c"cpu:0");
    // SAFETY: valid C strings for the call; no topology JSON.
    let ce = unsafe { createTransferEngine(meta.as_ptr(), host.as_ptr(), std::ptr::null(), 0, 1) };
    assert!(!ce.is_null());
    for buf in [src.as_ptr(), dst.as_ptr()] {
        // SAFETY: `buf` is `len` bytes that outlive the engine.
        assert_eq!(unsafe { registerLocalMemory(ce, buf as *mut _, len, loc.as_ptr(), 1) }, 0);
    }
    let cb = allocateBatchID(ce, TASKS);
    let mut reqs: Vec<transfer_request> = (0..TASKS as u64)
        .map(|i| transfer_request {
            opcode: OPCODE_WRITE,
            source: (src.as_ptr() as u64 + i * TASK_LEN) as *mut _,
            target_id: 0,
            target_offset: dst.as_ptr() as u64 + i * TASK_LEN,
            length: TASK_LEN,
        })
        .collect();
    // SAFETY: `reqs` holds TASKS readable entries.
    assert_eq!(unsafe { submitTransfer(ce, cb, reqs.as_mut_ptr(), reqs.len()) }, 0);
    let mut st = transfer_status { status: 0, transferred_bytes: 0 };
    let mut g = c.benchmark_group("poll");
    g.bench_function("getTransferStatus", |b| {
        b.iter(|| {
            task = (task + 1) % TASKS;
            // SAFETY: `st` is writable.
            black_box(unsafe { getTransferStatus(ce, cb, black_box(task), &mut st) })
        })
    });
    g.finish();
    assert_eq!(freeBatchID(ce, cb), 0);
    destroyTransferEngine(ce);
}

fn frames(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame");
    let h = Header { size: 1 << 20, addr: 0x7f00_0000_1000, write: true, v2: true };
    g.bench_function("header_encode", |b| b.iter(|| black_box(black_box(&h).encode())));
    let bytes: [u8; HEADER_LEN] = h.encode();
    g.bench_function("header_decode", |b| b.iter(|| black_box(Header::decode(black_box(&bytes)))));
    g.bench_function("status_roundtrip", |b| {
        b.iter(|| black_box(wire::parse_status(wire::status_frame(black_box(wire::STATUS_OK)))))
    });
    g.finish();
}

criterion_group!(benches, slicing, submission, polling, frames);
criterion_main!(benches);
