//! The Store's entry points: Mooncake's `store_c.h` (`store_c`, with its `types`) and our
//! store additions of `mooncake.h` (`extras`: the store codes, upsert/TTL puts, owned get
//! buffers, ranged reads, dummy clients). Store handles live in `args::STORES`; `ops` holds
//! the bodies several entry points share.

pub mod args;
pub mod extras;
pub mod ops;
pub mod store_c;
pub mod surface;
pub mod tasks;
pub mod types;

pub use extras::*;
pub use store_c::*;
pub use surface::*;
pub use tasks::*;
pub use types::*;

// ---- multi-buffer puts and gets ----
pub mod multi;
pub use multi::*;
pub mod ranges;
pub use ranges::*;
