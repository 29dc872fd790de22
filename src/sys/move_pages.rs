//! `move_pages(2)` as a query: the NUMA node of each page, moving nothing. A raw system call
//! (neither libc's safe wrappers nor nix cover it, and the library needs no libnuma); what the
//! answers mean is `topology::pages`'s business.

/// `move_pages(0, n, pages, NULL, status, 0)`: fills `status[i]` with the node of `pages[i]`
/// (or a negative errno for that page, such as `-ENOENT` for a page never touched).
pub fn query_nodes(pages: &[*mut libc::c_void], status: &mut [i32]) -> std::io::Result<()> {
    assert_eq!(pages.len(), status.len());
    // SAFETY: `pages` and `status` are live arrays of `len` elements each (checked above); with
    // `nodes` NULL the kernel only reads `pages` (addresses it looks up, never dereferenced in
    // this process) and writes `len` ints into `status`. Pid 0 is this process.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_pages,
            0 as libc::c_long,
            pages.len() as libc::c_ulong,
            pages.as_ptr(),
            std::ptr::null::<libc::c_int>(),
            status.as_mut_ptr(),
            0 as libc::c_int,
        )
    };
    if rc < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
}
