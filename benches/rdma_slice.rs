//! The RDMA transport's CPU cost per slice, over fake devices (docs/RDMA.md § 10).
//!
//! Each case submits its requests through `Transport::submit` to a rig of fake devices
//! (`mooncake::transport::rdma::fake`: the verbs function table and the context's `ops` point
//! at an in-memory device whose `post_send` queues completions that `poll_cq` returns as
//! successes), then polls every CQ with the completion worker's own step until each slice has
//! been reported. Three groups time one such cycle: `post` the submission alone (routing,
//! endpoint lookup, work requests, the fake's post), `complete` the polling and completion
//! handling alone, `cycle` both. Every case fits the queue pairs and CQs, so `post` posts
//! everything and `complete` posts nothing. Throughput is in slices: criterion's "elem/s",
//! and its time divided by the slice count is the time per slice. No doorbell, DMA or CQE
//! cache miss is in these figures (§ 10 adds them).
//!
//! `cargo bench --features rdma-fake --bench rdma_slice` runs them (the fake is test
//! scaffolding behind that feature, so that the release library ships without it);
//! `-- --warm-up-time 1 --measurement-time 3` for a shorter run, and a name filter picks
//! cases, e.g. `-- post/`. `cargo test --features rdma-fake --benches` runs each once, as a
//! check.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mooncake::transport::rdma::fake::{FakeOptions, FakeRig, Phases};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
/// Every case stripes over 8 local devices towards a peer with 8.
const NICS: usize = 8;

/// The rows of docs/RDMA.md § 10: name, requests, bytes per request, slice size.
const CASES: [(&str, usize, u64, u64); 5] = [
    ("1x1MiB_at_64KiB", 1, MIB, 64 * KIB),
    ("128x64KiB_at_64KiB", 128, 64 * KIB, 64 * KIB),
    ("16x16MiB_at_64KiB", 16, 16 * MIB, 64 * KIB),
    ("16x16MiB_at_256KiB", 16, 16 * MIB, 256 * KIB),
    ("4096x4KiB_at_4KiB", 4096, 4 * KIB, 4 * KIB),
];

/// Which part of a cycle a group reports.
#[derive(Clone, Copy)]
enum Part {
    Post,
    Complete,
    Cycle,
}

impl Part {
    fn name(self) -> &'static str {
        match self {
            Part::Post => "post",
            Part::Complete => "complete",
            Part::Cycle => "cycle",
        }
    }

    fn of(self, p: &Phases) -> Duration {
        match self {
            Part::Post => p.post,
            Part::Complete => p.complete,
            Part::Cycle => p.post + p.complete,
        }
    }
}

fn rdma_slice(c: &mut Criterion) {
    for part in [Part::Post, Part::Complete, Part::Cycle] {
        let mut g = c.benchmark_group(part.name());
        for (name, requests, len, slice) in CASES {
            let mut rig = FakeRig::new(&FakeOptions::new(NICS, slice)).expect("fake rig");
            let slices = requests as u64 * len.div_ceil(slice);
            g.throughput(Throughput::Elements(slices));
            g.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    let mut spent = Duration::ZERO;
                    for _ in 0..iters {
                        let phases = rig.cycle(black_box(requests), black_box(len)).expect("a cycle of the fake rig");
                        spent += part.of(&phases);
                    }
                    spent
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, rdma_slice);
criterion_main!(benches);
