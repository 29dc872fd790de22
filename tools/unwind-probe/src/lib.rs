//! `mooncake_unwind_probe()`: 1 when a panic raised here was caught by `catch_unwind` (the
//! way `src/ffi/boundary.rs` catches them), 0 when it was not. A broken unwinder aborts the
//! process instead, which the caller sees as a crash.

use std::panic::catch_unwind;

#[unsafe(no_mangle)]
pub extern "C" fn mooncake_unwind_probe() -> i32 {
    // Keep the default hook quiet: the probe's panic is expected.
    std::panic::set_hook(Box::new(|_| {}));
    let caught = catch_unwind(|| {
        let depth = std::hint::black_box(3);
        nested(depth)
    })
    .is_err();
    let _ = std::panic::take_hook();
    i32::from(caught)
}

fn nested(depth: u32) -> u32 {
    if depth == 0 {
        panic!("unwind probe");
    }
    nested(depth - 1) + 1
}
