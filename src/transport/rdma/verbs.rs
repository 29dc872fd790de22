//! libibverbs, resolved at run time.
//!
//! `libmooncake.so` must load and serve TCP on machines without libibverbs, so nothing here is
//! linked: the first RDMA use `dlopen`s `libibverbs.so.1` (or `MOONCAKE_IBVERBS_LIB`) and
//! looks up the functions below by name. The struct layouts come from [`bindings`]
//! (`verbs/bindings.rs`), which bindgen generated once from `<infiniband/verbs.h>`
//! (tools/verbs-bindgen) and which is committed, so building needs neither the verbs headers
//! nor libclang; `ci/check-verbs-bindings.sh` checks that it still matches the headers, and
//! bindgen's compile-time assertions pin every size and offset. The three verbs that
//! `<infiniband/verbs.h>` defines inline, calling through the context's `ops` table
//! (`ibv_post_send`, `ibv_poll_cq`, `ibv_req_notify_cq`), are [`post_send`], [`poll_cq`] and
//! [`req_notify_cq`] here; they reference no library symbol. A test checks with `readelf -d`
//! that the library has no `NEEDED` entry for libibverbs or librdmacm.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::sync::OnceLock;

// Generated code: C names, and more of the headers' types than the transport touches; kept
// byte for byte as the generator writes it (the check diffs it), so rustfmt leaves it alone and
// the crate's [lints] on unsafe code (Cargo.toml) do not apply to it.
#[rustfmt::skip]
#[allow(non_camel_case_types, non_upper_case_globals, non_snake_case, dead_code, clippy::all)]
#[allow(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
#[path = "verbs/bindings.rs"]
pub mod bindings;
// The bindings assert x86_64's layouts; build.rs compiles this transport in only there
// (`cfg(rdma_transport)`), so another target builds without RDMA instead of failing.

pub use bindings::{
    ibv_access_flags, ibv_async_event, ibv_comp_channel, ibv_context, ibv_cq, ibv_device, ibv_device_attr,
    ibv_event_type, ibv_gid, ibv_mr, ibv_mtu, ibv_pd, ibv_port_attr, ibv_port_state, ibv_qp, ibv_qp_attr,
    ibv_qp_attr_mask, ibv_qp_init_attr, ibv_qp_state, ibv_qp_type, ibv_send_flags, ibv_send_wr, ibv_sge, ibv_wc,
    ibv_wc_opcode, ibv_wc_status, ibv_wr_opcode,
};

/// `ibv_post_send`: posts the chain `wr` on `qp` through its context's `ops` table, as the
/// header's inline function does. Returns 0 or an errno value, with `*bad` at the first
/// request not posted.
///
/// # Safety
/// `qp` is a live queue pair of an open context, `wr` a valid chain of initialised work
/// requests, and `bad` writable.
#[inline]
pub unsafe fn post_send(qp: *mut ibv_qp, wr: *mut ibv_send_wr, bad: *mut *mut ibv_send_wr) -> c_int {
    // SAFETY: the caller guarantees `qp` is live, so its context and `ops` table are readable.
    let op = unsafe { (*(*qp).context).ops.post_send };
    match op {
        // SAFETY: the provider's function, called with the caller's valid arguments.
        Some(f) => unsafe { f(qp, wr, bad) },
        None => {
            // SAFETY: writable per the caller; nothing was posted.
            unsafe { *bad = wr };
            libc::ENOSYS
        }
    }
}

/// `ibv_poll_cq`: takes up to `n` completions of `cq` into `wc` through its context's `ops`
/// table. Returns how many, or a negative value on error.
///
/// # Safety
/// `cq` is a live completion queue of an open context and `wc` has room for `n` entries.
#[inline]
pub unsafe fn poll_cq(cq: *mut ibv_cq, n: c_int, wc: *mut ibv_wc) -> c_int {
    // SAFETY: the caller guarantees `cq` is live, so its context and `ops` table are readable.
    let op = unsafe { (*(*cq).context).ops.poll_cq };
    // SAFETY: the provider's function, called with the caller's valid arguments.
    op.map_or(-1, |f| unsafe { f(cq, n, wc) })
}

/// `ibv_req_notify_cq`: asks for an event on the completion channel at the next completion
/// of `cq` (only solicited ones when `solicited_only` is non-zero). Returns 0 or an errno value.
///
/// # Safety
/// `cq` is a live completion queue of an open context.
#[inline]
pub unsafe fn req_notify_cq(cq: *mut ibv_cq, solicited_only: c_int) -> c_int {
    // SAFETY: the caller guarantees `cq` is live, so its context and `ops` table are readable.
    let op = unsafe { (*(*cq).context).ops.req_notify_cq };
    // SAFETY: the provider's function, called with the caller's valid arguments.
    op.map_or(libc::ENOSYS, |f| unsafe { f(cq, solicited_only) })
}

/// The library's functions this transport calls. Signatures follow `<infiniband/verbs.h>`.
pub struct Verbs {
    pub get_device_list: unsafe extern "C" fn(*mut c_int) -> *mut *mut ibv_device,
    pub free_device_list: unsafe extern "C" fn(*mut *mut ibv_device),
    pub get_device_name: unsafe extern "C" fn(*mut ibv_device) -> *const c_char,
    pub open_device: unsafe extern "C" fn(*mut ibv_device) -> *mut ibv_context,
    pub close_device: unsafe extern "C" fn(*mut ibv_context) -> c_int,
    pub query_device: unsafe extern "C" fn(*mut ibv_context, *mut ibv_device_attr) -> c_int,
    pub query_port: unsafe extern "C" fn(*mut ibv_context, u8, *mut ibv_port_attr) -> c_int,
    pub query_gid: unsafe extern "C" fn(*mut ibv_context, u8, c_int, *mut ibv_gid) -> c_int,
    pub alloc_pd: unsafe extern "C" fn(*mut ibv_context) -> *mut ibv_pd,
    pub dealloc_pd: unsafe extern "C" fn(*mut ibv_pd) -> c_int,
    pub create_comp_channel: unsafe extern "C" fn(*mut ibv_context) -> *mut ibv_comp_channel,
    pub destroy_comp_channel: unsafe extern "C" fn(*mut ibv_comp_channel) -> c_int,
    pub create_cq:
        unsafe extern "C" fn(*mut ibv_context, c_int, *mut c_void, *mut ibv_comp_channel, c_int) -> *mut ibv_cq,
    pub destroy_cq: unsafe extern "C" fn(*mut ibv_cq) -> c_int,
    pub get_cq_event: unsafe extern "C" fn(*mut ibv_comp_channel, *mut *mut ibv_cq, *mut *mut c_void) -> c_int,
    pub ack_cq_events: unsafe extern "C" fn(*mut ibv_cq, u32),
    pub reg_mr: unsafe extern "C" fn(*mut ibv_pd, *mut c_void, usize, c_int) -> *mut ibv_mr,
    pub dereg_mr: unsafe extern "C" fn(*mut ibv_mr) -> c_int,
    pub create_qp: unsafe extern "C" fn(*mut ibv_pd, *mut ibv_qp_init_attr) -> *mut ibv_qp,
    pub modify_qp: unsafe extern "C" fn(*mut ibv_qp, *mut ibv_qp_attr, c_int) -> c_int,
    pub destroy_qp: unsafe extern "C" fn(*mut ibv_qp) -> c_int,
    pub get_async_event: unsafe extern "C" fn(*mut ibv_context, *mut ibv_async_event) -> c_int,
    pub ack_async_event: unsafe extern "C" fn(*mut ibv_async_event),
    pub wc_status_str: unsafe extern "C" fn(ibv_wc_status::Type) -> *const c_char,
    pub event_type_str: unsafe extern "C" fn(ibv_event_type::Type) -> *const c_char,
}

// SAFETY: the table holds plain function pointers into a library that stays loaded for the
// life of the process (it is never `dlclose`d).
unsafe impl Send for Verbs {}
// SAFETY: as above; libibverbs' functions are thread-safe.
unsafe impl Sync for Verbs {}

static VERBS: OnceLock<Result<Verbs, String>> = OnceLock::new();

/// The library, loaded on first use; the error says why it cannot be (no libibverbs, a
/// missing symbol). Loaded once per process and never unloaded.
pub fn verbs() -> Result<&'static Verbs, String> {
    VERBS.get_or_init(load).as_ref().map_err(Clone::clone)
}

fn load() -> Result<Verbs, String> {
    let name = std::env::var("MOONCAKE_IBVERBS_LIB").unwrap_or_else(|_| "libibverbs.so.1".into());
    let cname = CString::new(name.clone()).map_err(|_| format!("library name {name:?} contains NUL"))?;
    // SAFETY: dlopen with a valid C string; the handle is kept for the process lifetime.
    let handle = unsafe { libc::dlopen(cname.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if handle.is_null() {
        return Err(format!("cannot load {name}: {}", dl_error()));
    }
    macro_rules! sym {
        ($name:literal) => {{
            let c = concat!($name, "\0");
            // SAFETY: `handle` is a live dlopen handle and `c` is NUL-terminated.
            let p = unsafe { libc::dlsym(handle, c.as_ptr().cast()) };
            if p.is_null() {
                return Err(format!("{name} has no symbol {}", $name));
            }
            // SAFETY: the symbol is the verbs function of that name, whose C signature the
            // field's type spells out.
            unsafe { fn_from_symbol(p) }
        }};
    }
    Ok(Verbs {
        get_device_list: sym!("ibv_get_device_list"),
        free_device_list: sym!("ibv_free_device_list"),
        get_device_name: sym!("ibv_get_device_name"),
        open_device: sym!("ibv_open_device"),
        close_device: sym!("ibv_close_device"),
        query_device: sym!("ibv_query_device"),
        query_port: sym!("ibv_query_port"),
        query_gid: sym!("ibv_query_gid"),
        alloc_pd: sym!("ibv_alloc_pd"),
        dealloc_pd: sym!("ibv_dealloc_pd"),
        create_comp_channel: sym!("ibv_create_comp_channel"),
        destroy_comp_channel: sym!("ibv_destroy_comp_channel"),
        create_cq: sym!("ibv_create_cq"),
        destroy_cq: sym!("ibv_destroy_cq"),
        get_cq_event: sym!("ibv_get_cq_event"),
        ack_cq_events: sym!("ibv_ack_cq_events"),
        reg_mr: sym!("ibv_reg_mr"),
        dereg_mr: sym!("ibv_dereg_mr"),
        create_qp: sym!("ibv_create_qp"),
        modify_qp: sym!("ibv_modify_qp"),
        destroy_qp: sym!("ibv_destroy_qp"),
        get_async_event: sym!("ibv_get_async_event"),
        ack_async_event: sym!("ibv_ack_async_event"),
        wc_status_str: sym!("ibv_wc_status_str"),
        event_type_str: sym!("ibv_event_type_str"),
    })
}

/// A function pointer of type `F` from a symbol address.
///
/// # Safety
/// `p` must be the address of a function whose signature is `F` (a function pointer type).
unsafe fn fn_from_symbol<F: Copy>(p: *mut c_void) -> F {
    assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<*mut c_void>());
    // SAFETY: `F` is a function pointer of the same size as `p` (checked), and the caller
    // guarantees the signature.
    unsafe { std::mem::transmute_copy(&p) }
}

fn dl_error() -> String {
    // SAFETY: dlerror returns NULL or a NUL-terminated string valid until the next dl call
    // on this thread; it is copied at once.
    let p = unsafe { libc::dlerror() };
    if p.is_null() {
        return "unknown error".into();
    }
    // SAFETY: non-null, NUL-terminated (see above).
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

impl Verbs {
    /// `ibv_wc_status_str`, owned.
    pub fn status_text(&self, status: ibv_wc_status::Type) -> String {
        // SAFETY: returns a static string for any value.
        let p = unsafe { (self.wc_status_str)(status) };
        if p.is_null() {
            return format!("status {status}");
        }
        // SAFETY: a static NUL-terminated string.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }

    /// `ibv_event_type_str`, owned.
    pub fn event_text(&self, event: ibv_event_type::Type) -> String {
        // SAFETY: returns a static string for any value.
        let p = unsafe { (self.event_type_str)(event) };
        if p.is_null() {
            return format!("event {event}");
        }
        // SAFETY: a static NUL-terminated string.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }

    /// Names of the RDMA devices libibverbs lists (empty when it lists none or fails).
    pub fn device_names(&self) -> Vec<String> {
        let mut n: c_int = 0;
        // SAFETY: `n` is a valid out pointer; the list is freed below.
        let list = unsafe { (self.get_device_list)(&mut n) };
        if list.is_null() {
            return Vec::new();
        }
        let mut names = Vec::new();
        for i in 0..n.max(0) as usize {
            // SAFETY: the list holds `n` valid device pointers.
            let dev = unsafe { *list.add(i) };
            // SAFETY: a listed device has a static NUL-terminated name.
            let name = unsafe { CStr::from_ptr((self.get_device_name)(dev)) };
            names.push(name.to_string_lossy().into_owned());
        }
        // SAFETY: frees the list obtained above, once.
        unsafe { (self.free_device_list)(list) };
        names
    }
}

/// A verbs error: what failed, on which device, and the OS error.
pub fn os_error(what: &str, device: &str) -> String {
    format!("{what} on {device}: {}", std::io::Error::last_os_error())
}

/// A GID as Mooncake writes it: 16 bytes, two lowercase hex digits each, joined by `:`.
pub fn gid_to_string(raw: &[u8; 16]) -> String {
    let parts: Vec<String> = raw.iter().map(|b| format!("{b:02x}")).collect();
    parts.join(":")
}

/// Parses [`gid_to_string`]'s format (Mooncake's `parseGidString`).
pub fn parse_gid(text: &str) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    let mut n = 0;
    for part in text.trim().split(':') {
        if n == 16 || part.is_empty() || part.len() > 2 {
            return None;
        }
        out[n] = u8::from_str_radix(part, 16).ok()?;
        n += 1;
    }
    (n == 16).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gid_text_round_trips_and_rejects_junk() {
        let mut raw = [0u8; 16];
        raw[10] = 0xff;
        raw[11] = 0xff;
        raw[12..].copy_from_slice(&[192, 0, 2, 1]);
        let s = gid_to_string(&raw);
        assert_eq!(s, "00:00:00:00:00:00:00:00:00:00:ff:ff:c0:00:02:01");
        assert_eq!(parse_gid(&s), Some(raw));
        assert_eq!(parse_gid("00:01"), None);
        assert_eq!(parse_gid(&format!("{s}:00")), None);
        assert_eq!(parse_gid(&s.replace("c0", "zz")), None);
        assert_eq!(parse_gid(""), None);
    }

    /// Sizes and offsets the transport (and the fake's `ops` table) relies on, as the system's
    /// C compiler sees `<infiniband/verbs.h>` and as the committed bindings have them. The
    /// bindings' own assertions pin what bindgen saw; this checks the headers of the machine
    /// that runs the tests. Skipped without the headers or a C compiler.
    #[test]
    fn layouts_match_the_system_headers() {
        use std::mem::{offset_of, size_of};
        if !std::path::Path::new("/usr/include/infiniband/verbs.h").exists() {
            eprintln!("skipped: no /usr/include/infiniband/verbs.h");
            return;
        }
        // SAFETY: plain-data struct; zero is a valid value of each field. (A value, because
        // `offset_of!` does not reach into the `wr` union.)
        let wr: ibv_send_wr = unsafe { std::mem::zeroed() };
        let base = (&raw const wr) as usize;
        // SAFETY: only the members' addresses are taken; nothing is read.
        let (remote_addr, rkey) =
            unsafe { ((&raw const wr.wr.rdma.remote_addr) as usize, (&raw const wr.wr.rdma.rkey) as usize) };
        let rust: Vec<(&str, usize)> = vec![
            ("sizeof(struct ibv_send_wr)", size_of::<ibv_send_wr>()),
            ("offsetof(struct ibv_send_wr, next)", offset_of!(ibv_send_wr, next)),
            ("offsetof(struct ibv_send_wr, sg_list)", offset_of!(ibv_send_wr, sg_list)),
            ("offsetof(struct ibv_send_wr, num_sge)", offset_of!(ibv_send_wr, num_sge)),
            ("offsetof(struct ibv_send_wr, opcode)", offset_of!(ibv_send_wr, opcode)),
            ("offsetof(struct ibv_send_wr, send_flags)", offset_of!(ibv_send_wr, send_flags)),
            ("offsetof(struct ibv_send_wr, wr.rdma.remote_addr)", remote_addr - base),
            ("offsetof(struct ibv_send_wr, wr.rdma.rkey)", rkey - base),
            ("sizeof(struct ibv_sge)", size_of::<ibv_sge>()),
            ("sizeof(struct ibv_wc)", size_of::<ibv_wc>()),
            ("offsetof(struct ibv_wc, status)", offset_of!(ibv_wc, status)),
            ("offsetof(struct ibv_wc, opcode)", offset_of!(ibv_wc, opcode)),
            ("offsetof(struct ibv_wc, byte_len)", offset_of!(ibv_wc, byte_len)),
            ("offsetof(struct ibv_wc, qp_num)", offset_of!(ibv_wc, qp_num)),
            ("sizeof(struct ibv_qp_attr)", size_of::<ibv_qp_attr>()),
            ("offsetof(struct ibv_qp_attr, path_mtu)", offset_of!(ibv_qp_attr, path_mtu)),
            ("offsetof(struct ibv_qp_attr, dest_qp_num)", offset_of!(ibv_qp_attr, dest_qp_num)),
            ("offsetof(struct ibv_qp_attr, qp_access_flags)", offset_of!(ibv_qp_attr, qp_access_flags)),
            ("offsetof(struct ibv_qp_attr, ah_attr)", offset_of!(ibv_qp_attr, ah_attr)),
            ("offsetof(struct ibv_qp_attr, timeout)", offset_of!(ibv_qp_attr, timeout)),
            ("sizeof(struct ibv_qp_init_attr)", size_of::<ibv_qp_init_attr>()),
            ("sizeof(struct ibv_port_attr)", size_of::<ibv_port_attr>()),
            ("sizeof(struct ibv_device_attr)", size_of::<ibv_device_attr>()),
            ("sizeof(struct ibv_async_event)", size_of::<ibv_async_event>()),
            ("offsetof(struct ibv_async_event, event_type)", offset_of!(ibv_async_event, event_type)),
            ("offsetof(struct ibv_context, ops.post_send)", offset_of!(ibv_context, ops.post_send)),
            ("offsetof(struct ibv_context, ops.poll_cq)", offset_of!(ibv_context, ops.poll_cq)),
            ("offsetof(struct ibv_context, ops.req_notify_cq)", offset_of!(ibv_context, ops.req_notify_cq)),
            ("offsetof(struct ibv_context, async_fd)", offset_of!(ibv_context, async_fd)),
            ("offsetof(struct ibv_cq, channel)", offset_of!(ibv_cq, channel)),
            ("offsetof(struct ibv_cq, cqe)", offset_of!(ibv_cq, cqe)),
            ("offsetof(struct ibv_qp, send_cq)", offset_of!(ibv_qp, send_cq)),
            ("offsetof(struct ibv_qp, qp_num)", offset_of!(ibv_qp, qp_num)),
            ("offsetof(struct ibv_comp_channel, fd)", offset_of!(ibv_comp_channel, fd)),
            ("offsetof(struct ibv_mr, lkey)", offset_of!(ibv_mr, lkey)),
            ("offsetof(struct ibv_mr, rkey)", offset_of!(ibv_mr, rkey)),
        ];
        let dir = std::env::temp_dir().join(format!("mooncake-verbs-layout-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut c =
            String::from("#include <stddef.h>\n#include <stdio.h>\n#include <infiniband/verbs.h>\nint main(void) {\n");
        for (expr, _) in &rust {
            c += &format!("    printf(\"%zu\\n\", (size_t)({expr}));\n");
        }
        c += "    return 0;\n}\n";
        std::fs::write(dir.join("layout.c"), c).unwrap();
        let exe = dir.join("layout");
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        let built = std::process::Command::new(&cc).arg(dir.join("layout.c")).arg("-o").arg(&exe).status();
        if !matches!(built, Ok(s) if s.success()) {
            let _ = std::fs::remove_dir_all(&dir);
            eprintln!("skipped: {cc} could not compile the layout probe ({built:?})");
            return;
        }
        let out = std::process::Command::new(&exe).output().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let c_values: Vec<usize> = String::from_utf8(out.stdout).unwrap().lines().map(|l| l.parse().unwrap()).collect();
        assert_eq!(c_values.len(), rust.len());
        let wrong: Vec<String> = rust
            .iter()
            .zip(&c_values)
            .filter(|((_, r), c)| r != *c)
            .map(|((expr, r), c)| format!("{expr}: C {c}, Rust {r}"))
            .collect();
        assert!(wrong.is_empty(), "the bindings disagree with <infiniband/verbs.h>: {wrong:?}");
    }
}
