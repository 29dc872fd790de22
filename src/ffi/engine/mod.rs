//! The Transfer Engine's entry points: Mooncake's `transfer_engine_c.h` (lifecycle and
//! transports, segments, memory, batches, notifications, and its types) and our engine
//! additions of `mooncake.h` (`extras`). Engine handles live in [`args::ENGINES`].

pub mod args;
pub mod batch;
pub mod extras;
pub mod lifecycle;
pub mod memory;
pub mod notify;
pub mod segment;
pub mod types;

pub use batch::*;
pub use extras::*;
pub use lifecycle::*;
pub use memory::*;
pub use notify::*;
pub use segment::*;
pub use types::*;
