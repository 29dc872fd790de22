//! Which NUMA node holds the pages of a memory range: the location `"*"` of
//! `registerLocalMemory`, resolved the way Mooncake's `getMemoryLocation`
//! (`mooncake-transfer-engine/src/memory_location.cpp`) does it.
//!
//! The kernel answers with `move_pages(2)` called without target nodes: it moves nothing and
//! faults nothing in, it only reports each page's node. A raw system call, so the library
//! needs no libnuma; its wrapper is `sys::move_pages`, because neither libc's safe
//! wrappers nor nix cover `move_pages`. A page that was never touched has no node yet (`-ENOENT`); like Mooncake,
//! such pages, and a kernel that cannot answer at all (no NUMA support, or a seccomp profile
//! that forbids `move_pages`), get the location `"*"` ("anywhere").
//!
//! Asking costs about 12 ms per GiB (measured here, 2 GiB touched or not: 25–42 ms), so a
//! registration asks for its first page only ([`first_page_location`]), which is the name
//! Mooncake's RDMA transport gives a whole `"*"` region (it asks after pinning, when every
//! page has a node). [`memory_location`] scans every page and cuts the range per node: the
//! split for descriptors that publish one buffer entry per node.

use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

use crate::sys::move_pages;

/// Mooncake's location for memory whose node is unknown.
pub const ANY_LOCATION: &str = "*";

/// Pages asked per system call, so the kernel's answer for a huge region needs no huge array.
const PAGES_PER_CALL: usize = 64 * 1024;

/// A run of consecutive pages on one node (or of unknown node).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocationSpan {
    pub addr: u64,
    pub len: u64,
    /// `"cpu:<node>"`, or [`ANY_LOCATION`].
    pub location: String,
}

/// Mooncake's `genCpuNodeName`: a node's name, `"*"` for a negative status.
pub fn cpu_location(status: i32) -> String {
    if status >= 0 { format!("cpu:{status}") } else { ANY_LOCATION.into() }
}

/// `[addr, addr + len)` cut where the node changes: one span per run of pages on the same
/// node, in address order, covering the range exactly (Mooncake's `getMemoryLocation` with
/// `only_first_page = false`: what an RDMA descriptor publishes as one buffer entry per span).
/// A zero-length range has no spans.
pub fn memory_location(addr: u64, len: u64) -> Vec<LocationSpan> {
    if len == 0 {
        return Vec::new();
    }
    let page = page_size();
    let first = addr & !(page - 1);
    let Some(end) = addr.checked_add(len) else {
        return vec![LocationSpan { addr, len, location: ANY_LOCATION.into() }];
    };
    let pages = (end - first).div_ceil(page);
    match page_nodes(first, pages, page) {
        Some(status) => spans(addr, len, page, &status),
        None => vec![LocationSpan { addr, len, location: ANY_LOCATION.into() }],
    }
}

/// The location of the page holding `addr` (Mooncake's RDMA, EFA and CXI transports name a
/// whole `"*"` registration after its first page).
pub fn first_page_location(addr: u64) -> String {
    let page = page_size();
    match page_nodes(addr & !(page - 1), 1, page) {
        Some(status) => cpu_location(status[0]),
        None => ANY_LOCATION.into(),
    }
}

/// Cuts `[addr, addr + len)` into spans from per-page statuses (`status[i]` is the node of the
/// `i`-th page from `addr`'s page, or a negative errno). Negative statuses all mean "unknown"
/// and form one span together (Mooncake would split `-ENOENT` from `-EFAULT`, both named `"*"`).
pub fn spans(addr: u64, len: u64, page: u64, status: &[i32]) -> Vec<LocationSpan> {
    let first = addr & !(page - 1);
    let end = addr + len;
    let node = |s: i32| if s >= 0 { s } else { -1 };
    let mut out: Vec<LocationSpan> = Vec::new();
    let mut start = addr;
    let mut current = node(status.first().copied().unwrap_or(-1));
    for (i, &s) in status.iter().enumerate().skip(1) {
        let s = node(s);
        if s != current {
            let boundary = first + i as u64 * page;
            out.push(LocationSpan { addr: start, len: boundary - start, location: cpu_location(current) });
            start = boundary;
            current = s;
        }
    }
    out.push(LocationSpan { addr: start, len: end - start, location: cpu_location(current) });
    out
}

/// The node of each of `count` pages from the page-aligned `first`, or `None` when the kernel
/// cannot tell (the reason is logged once).
fn page_nodes(first: u64, count: u64, page: u64) -> Option<Vec<i32>> {
    let count = usize::try_from(count).ok()?;
    let mut status = vec![0i32; count];
    let mut pages: Vec<*mut libc::c_void> = Vec::with_capacity(count.min(PAGES_PER_CALL));
    for (chunk_no, chunk) in status.chunks_mut(PAGES_PER_CALL).enumerate() {
        let base = chunk_no * PAGES_PER_CALL;
        pages.clear();
        pages.extend((0..chunk.len()).map(|i| first.wrapping_add((base + i) as u64 * page) as *mut libc::c_void));
        if let Err(e) = move_pages::query_nodes(&pages, chunk) {
            static LOGGED: AtomicBool = AtomicBool::new(false);
            if !LOGGED.swap(true, Ordering::Relaxed) {
                tracing::info!("move_pages cannot report NUMA nodes ({e}); \"*\" memory stays \"*\"");
            }
            return None;
        }
    }
    Some(status)
}

/// The base page size (`sysconf(_SC_PAGESIZE)`; 4096 if it cannot say).
pub fn page_size() -> u64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE) {
        Ok(Some(n)) if n > 0 && (n as u64).is_power_of_two() => n as u64,
        _ => 4096,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: u64 = 4096;

    #[test]
    fn spans_split_where_the_node_changes_and_cover_the_range() {
        // Starts mid-page, ends mid-page: 4 pages, nodes 0 0 1 1.
        let s = spans(100, 3 * P + 50, P, &[0, 0, 1, 1]);
        assert_eq!(
            s,
            vec![
                LocationSpan { addr: 100, len: 2 * P - 100, location: "cpu:0".into() },
                LocationSpan { addr: 2 * P, len: P + 150, location: "cpu:1".into() },
            ]
        );
        let s = spans(0, 4 * P, P, &[1, -libc::ENOENT, -libc::EFAULT, 1]);
        let locs: Vec<&str> = s.iter().map(|s| s.location.as_str()).collect();
        assert_eq!(locs, ["cpu:1", "*", "cpu:1"], "unknown pages form one \"*\" span");
        assert_eq!(s.iter().map(|s| s.len).sum::<u64>(), 4 * P);
        assert_eq!(spans(7, 1, P, &[3]), vec![LocationSpan { addr: 7, len: 1, location: "cpu:3".into() }]);
    }

    #[test]
    fn untouched_pages_are_anywhere_and_touched_ones_have_a_node() {
        let page = page_size();
        // A zeroed allocation above glibc's largest mmap threshold (32 MiB) is a fresh mapping
        // that calloc does not write. Touching a page may fault in its whole 2 MiB block
        // (transparent huge pages), so the range straddles a 2 MiB boundary: the pages before
        // it are touched, the block after it never is.
        let mut buf = vec![0u8; 64 << 20];
        let base = buf.as_ptr() as u64;
        let boundary = ((base + (4 << 20)) & !((2 << 20) - 1)) - base;
        let (addr, len) = (base + boundary - 4 * page, 8 * page);
        let untouched = memory_location(addr, len);
        let o = (boundary - 4 * page) as usize;
        buf[o..o + 4 * page as usize].fill(1);
        let touched = memory_location(addr, len);
        let first = first_page_location(addr);
        assert_eq!(untouched, vec![LocationSpan { addr, len, location: "*".into() }]);
        if touched.len() == 1 && touched[0].location == "*" {
            eprintln!("SKIPPED: move_pages reports no node here (no NUMA support or seccomp)");
            return;
        }
        assert_eq!(touched.len(), 2, "{touched:?}");
        assert!(touched[0].location.starts_with("cpu:") && touched[0].len == 4 * page, "{touched:?}");
        assert_eq!(touched[1], LocationSpan { addr: base + boundary, len: 4 * page, location: "*".into() });
        assert_eq!(first, touched[0].location);
        drop(buf);
    }

    #[test]
    fn unmapped_and_wrapping_ranges_are_anywhere() {
        assert!(memory_location(1 << 20, 0).is_empty());
        assert_eq!(memory_location(u64::MAX - 10, 100)[0].location, "*");
        let s = memory_location(page_size(), 3 * page_size());
        assert!(s.iter().all(|s| s.location == "*"), "{s:?}");
    }
}
