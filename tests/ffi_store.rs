//! `store_c.h` and the store functions of `mooncake.h`, called as a C program calls them:
//! argument checks (NULL pointers, bad UTF-8, stale handles, a handle not set up) without a
//! master, then every call against a real `mooncake_master` (codes, results arrays, NULL
//! config, owned buffers, ranges, leases, close).

mod support;

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::ptr::{null, null_mut};

use mooncake::ffi::mooncake::mooncake_last_error;
use mooncake::ffi::store::*;
use support::store::Master;

const MIB: u64 = 1 << 20;

fn last_error() -> String {
    // SAFETY: the library returns a valid NUL-terminated string owned by this thread.
    unsafe { CStr::from_ptr(mooncake_last_error()) }.to_string_lossy().into_owned()
}

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

/// A handle set up against `master` with a `segment`-byte segment.
fn set_up(master: &Master, segment: u64) -> mooncake_store_t {
    let store = mooncake_store_create();
    assert!(!store.is_null());
    let (host, meta, addr) = (c("127.0.0.1"), c(&master.metadata()), c(&master.addr()));
    // SAFETY: valid C strings for the call.
    let rc = unsafe {
        mooncake_store_setup(store, host.as_ptr(), meta.as_ptr(), segment, 16 * MIB, null(), null(), addr.as_ptr())
    };
    assert_eq!(rc, 0, "setup: {}", last_error());
    store
}

fn put(store: mooncake_store_t, key: &str, value: &[u8]) -> c_int {
    let k = c(key);
    // SAFETY: valid key and value for the call; NULL config.
    unsafe { mooncake_store_put(store, k.as_ptr(), value.as_ptr() as *const c_void, value.len(), null()) }
}

fn get(store: mooncake_store_t, key: &str) -> Result<Vec<u8>, i64> {
    let k = c(key);
    let mut buf: *mut mooncake_store_buffer_t = null_mut();
    // SAFETY: valid key, writable out pointer.
    let n = unsafe { mooncake_store_get_buffer(store, k.as_ptr(), &mut buf) };
    if n < 0 {
        assert!(buf.is_null(), "a failed get leaves *out NULL");
        return Err(n);
    }
    // SAFETY: a live buffer from get_buffer, freed once below.
    unsafe {
        assert_eq!(mooncake_store_buffer_size(buf), n as usize);
        let data = std::slice::from_raw_parts(mooncake_store_buffer_data(buf) as *const u8, n as usize).to_vec();
        mooncake_store_buffer_free(buf);
        Ok(data)
    }
}

#[test]
fn null_and_stale_handles_are_invalid_params_with_a_message() {
    let key = c("k");
    let mut results = [7 as c_int; 2];
    let mut results64 = [7i64; 2];
    // SAFETY: every pointer is NULL or valid; the functions must check them.
    unsafe {
        assert_eq!(mooncake_store_health_check(null_mut()), MOONCAKE_STORE_INVALID_PARAMS);
        assert!(last_error().contains("store is NULL"), "{}", last_error());
        assert_eq!(mooncake_store_put(null_mut(), key.as_ptr(), b"v".as_ptr() as _, 1, null()), -600);
        assert_eq!(mooncake_store_get_into(null_mut(), key.as_ptr(), null_mut(), 0), -600);
        assert_eq!(mooncake_store_is_exist(null_mut(), key.as_ptr()), -600);
        assert_eq!(mooncake_store_get_size(null_mut(), key.as_ptr()), -600);
        assert_eq!(mooncake_store_remove(null_mut(), key.as_ptr(), 0), -600);
        assert_eq!(mooncake_store_remove_by_regex(null_mut(), key.as_ptr(), 0), -600);
        assert_eq!(mooncake_store_remove_all(null_mut(), 1), -600);
        assert_eq!(mooncake_store_register_buffer(null_mut(), results.as_mut_ptr() as _, 8), -600);
        assert_eq!(mooncake_store_unregister_buffer(null_mut(), results.as_mut_ptr() as _), -600);
        assert_eq!(mooncake_store_batch_is_exist(null_mut(), null_mut(), 0, results.as_mut_ptr()), -600);
        assert_eq!(
            mooncake_store_batch_get_into(null_mut(), null_mut(), null_mut(), null(), 0, results64.as_mut_ptr()),
            -600
        );
        assert_eq!(mooncake_store_close(null_mut()), -600);
        assert_eq!(mooncake_store_init_all(null_mut(), null(), null(), 0), -600);
        assert_eq!(results, [7, 7], "nothing is written on an argument error");
        mooncake_store_destroy(null_mut()); // a no-op

        let stale = mooncake_store_create();
        mooncake_store_destroy(stale);
        assert_eq!(mooncake_store_health_check(stale), -600);
        assert!(last_error().contains("not a live store handle"), "{}", last_error());
        mooncake_store_destroy(stale); // a stale handle is refused, not freed twice
    }
}

#[test]
fn a_handle_that_is_not_set_up_says_so_instead_of_crashing() {
    let store = mooncake_store_create();
    let key = c("k");
    let mut name = [0 as c_char; 64];
    // SAFETY: valid pointers for each call.
    unsafe {
        assert_eq!(mooncake_store_health_check(store), 1, "1: not initialised, as Mooncake's health_check");
        assert_eq!(mooncake_store_put(store, key.as_ptr(), b"v".as_ptr() as _, 1, null()), -600);
        assert!(last_error().contains("not set up"), "{}", last_error());
        assert_eq!(mooncake_store_get_hostname(store, name.as_mut_ptr(), name.len()), -600);
        assert_eq!(mooncake_store_get_size(store, key.as_ptr()), -600);
        assert_eq!(mooncake_store_close(store), 0, "closing a handle never set up is a no-op");
        // NULL strings where a value is required.
        assert_eq!(mooncake_store_setup(store, null(), null(), 0, 0, null(), null(), null()), -600);
        assert!(last_error().contains("local_hostname is NULL"), "{}", last_error());
        let bad = [b'h', 0xff, 0];
        assert_eq!(
            mooncake_store_setup(store, bad.as_ptr() as _, c"P2PHANDSHAKE".as_ptr(), 0, 0, null(), null(), null()),
            -600
        );
        assert!(last_error().contains("not valid UTF-8"), "{}", last_error());
        mooncake_store_destroy(store);
    }
}

#[test]
fn setup_against_a_master_that_is_down_fails_with_rpc_fail() {
    let store = mooncake_store_create();
    let addr = c(&format!("127.0.0.1:{}", support::servers::free_port()));
    // SAFETY: valid C strings for the call.
    let rc = unsafe {
        mooncake_store_setup(
            store,
            c"127.0.0.1".as_ptr(),
            c"P2PHANDSHAKE".as_ptr(),
            0,
            16 * MIB,
            null(),
            null(),
            addr.as_ptr(),
        )
    };
    assert_eq!(rc, MOONCAKE_STORE_RPC_FAIL, "{}", last_error());
    assert_eq!(mooncake_store_health_check(store), 1, "a failed setup leaves the handle not set up");
    mooncake_store_destroy(store);
}

#[test]
fn put_get_query_and_remove_through_the_c_interface() {
    let master = Master::start(&[]);
    let store = set_up(&master, 64 * MIB);
    assert_eq!(mooncake_store_health_check(store), 0);

    let mut name = [0 as c_char; 128];
    // SAFETY: writable buffer of the given length.
    assert_eq!(unsafe { mooncake_store_get_hostname(store, name.as_mut_ptr(), name.len()) }, 0);
    // SAFETY: NUL-terminated by the call.
    let hostname = unsafe { CStr::from_ptr(name.as_ptr()) }.to_str().unwrap().to_string();
    let port: u16 = hostname.strip_prefix("127.0.0.1:").expect("host:port").parse().unwrap();
    assert!((12300..=14300).contains(&port), "{hostname}");
    // SAFETY: a 4-byte writable buffer: too small, cut and NUL-terminated.
    assert_eq!(unsafe { mooncake_store_get_hostname(store, name.as_mut_ptr(), 4) }, -600);
    assert_eq!(name[3], 0);

    // put: first value kept, empty key/value refused, NULL value with a size refused.
    assert_eq!(put(store, "k1", b"first"), 0);
    assert_eq!(put(store, "k1", b"second"), 0, "an existing key: 0, as Mooncake");
    assert_eq!(get(store, "k1").unwrap(), b"first");
    assert_eq!(put(store, "", b"x"), -600);
    assert_eq!(put(store, "empty", b""), -600);
    let k = c("nullvalue");
    // SAFETY: NULL value with a size: must be refused, not read.
    assert_eq!(unsafe { mooncake_store_put(store, k.as_ptr(), null(), 5, null()) }, -600);
    let bad_key = [b'k', 0xfe, 0];
    // SAFETY: a NUL-terminated string that is not UTF-8.
    assert_eq!(unsafe { mooncake_store_put(store, bad_key.as_ptr() as _, b"v".as_ptr() as _, 1, null()) }, -600);
    assert!(last_error().contains("key is not valid UTF-8"), "{}", last_error());

    // queries
    let (k1, missing) = (c("k1"), c("missing"));
    // SAFETY: valid keys.
    unsafe {
        assert_eq!(mooncake_store_is_exist(store, k1.as_ptr()), 1);
        assert_eq!(mooncake_store_is_exist(store, missing.as_ptr()), 0);
        assert_eq!(mooncake_store_get_size(store, k1.as_ptr()), 5);
        assert_eq!(mooncake_store_get_size(store, missing.as_ptr()), MOONCAKE_STORE_OBJECT_NOT_FOUND as i64);
        assert!(last_error().contains("OBJECT_NOT_FOUND"), "{}", last_error());
        assert_eq!(mooncake_store_remove(store, missing.as_ptr(), 0), MOONCAKE_STORE_OBJECT_NOT_FOUND);
    }
    assert_eq!(get(store, "missing"), Err(-704));

    let keys = [c("k1"), c("missing"), c("")];
    let mut ptrs: Vec<*const c_char> = keys.iter().map(|k| k.as_ptr()).collect();
    let mut flags = [9 as c_int; 3];
    // SAFETY: 3 keys, 3 writable results.
    assert_eq!(unsafe { mooncake_store_batch_is_exist(store, ptrs.as_mut_ptr(), 3, flags.as_mut_ptr()) }, 0);
    assert_eq!(flags, [1, 0, 0]);
    // SAFETY: NULL results with a count: refused.
    assert_eq!(unsafe { mooncake_store_batch_is_exist(store, ptrs.as_mut_ptr(), 3, null_mut()) }, -600);
    let mut with_null: Vec<*const c_char> = vec![k1.as_ptr(), null()];
    // SAFETY: a NULL key entry must be refused.
    assert_eq!(unsafe { mooncake_store_batch_is_exist(store, with_null.as_mut_ptr(), 2, flags.as_mut_ptr()) }, -600);
    assert!(last_error().contains("keys[1] is NULL"), "{}", last_error());

    // a read lease blocks remove without force
    assert_eq!(get(store, "k1").unwrap(), b"first");
    // SAFETY: valid key.
    unsafe {
        assert_eq!(mooncake_store_remove(store, k1.as_ptr(), 0), MOONCAKE_STORE_OBJECT_HAS_LEASE);
        assert_eq!(mooncake_store_remove(store, k1.as_ptr(), 1), 0);
        assert_eq!(mooncake_store_is_exist(store, k1.as_ptr()), 0);
    }

    // regex and remove_all count what they removed
    for i in 0..5 {
        assert_eq!(put(store, &format!("rx-{i}"), b"v"), 0);
    }
    assert_eq!(put(store, "other", b"v"), 0);
    // SAFETY: valid patterns.
    unsafe {
        assert_eq!(mooncake_store_remove_by_regex(store, c"^rx-[0-2]$".as_ptr(), 0), 3);
        assert_eq!(mooncake_store_remove_by_regex(store, c"([".as_ptr(), 0), -600);
    }
    assert_eq!(mooncake_store_remove_all(store, 0), 3);
    assert_eq!(mooncake_store_remove_all(store, 0), 0);

    assert_eq!(mooncake_store_close(store), 0);
    assert_eq!(mooncake_store_health_check(store), 1);
    assert_eq!(put(store, "after-close", b"v"), -600);
    assert_eq!(mooncake_store_close(store), 0, "close is idempotent");
    mooncake_store_destroy(store);
}

#[test]
fn configs_ttls_upserts_parts_and_batches() {
    let master = Master::start(&[]);
    let store = set_up(&master, 64 * MIB);
    let key = c("cfg");
    let segs = [c("no-such-segment:1")];
    let mut seg_ptrs: Vec<*const c_char> = segs.iter().map(|s| s.as_ptr()).collect();
    let mut config = mooncake_replicate_config {
        replica_num: 2,
        with_soft_pin: 0,
        with_hard_pin: 1,
        preferred_segments: seg_ptrs.as_mut_ptr(),
        preferred_segments_count: 1,
    };
    // SAFETY: valid key, value and config for each call.
    unsafe {
        assert_eq!(mooncake_store_put(store, key.as_ptr(), b"v".as_ptr() as _, 1, &config), 0, "{}", last_error());
        config.replica_num = 0;
        assert_eq!(mooncake_store_put(store, key.as_ptr(), b"v".as_ptr() as _, 1, &config), -600);
        config.replica_num = 1;
        config.preferred_segments = null_mut();
        assert_eq!(mooncake_store_put(store, key.as_ptr(), b"v".as_ptr() as _, 1, &config), -600, "NULL list, count 1");
        config.preferred_segments_count = 0;
        // a TTL needs the soft pin
        assert_eq!(mooncake_store_put_ex(store, key.as_ptr(), b"v".as_ptr() as _, 1, &config, 1000, 1), -600);
        config.with_soft_pin = 1;
        assert_eq!(mooncake_store_put_ex(store, key.as_ptr(), b"new".as_ptr() as _, 3, &config, 1000, 1), 0);
    }
    assert_eq!(get(store, "cfg").unwrap(), b"new", "upsert replaces the value");

    // put_parts concatenates
    let parts: [&[u8]; 3] = [b"ab", b"", b"cdef"];
    let mut part_ptrs: Vec<*const c_void> = parts.iter().map(|p| p.as_ptr() as *const c_void).collect();
    let sizes: Vec<usize> = parts.iter().map(|p| p.len()).collect();
    let pk = c("parts");
    assert_eq!(
        // SAFETY: 3 parts with their sizes.
        unsafe {
            mooncake_store_put_parts(store, pk.as_ptr(), part_ptrs.as_mut_ptr(), sizes.as_ptr(), 3, null(), -1, 0)
        },
        0
    );
    assert_eq!(get(store, "parts").unwrap(), b"abcdef");

    // put_batch: per-key codes, existing keys keep their value
    let keys = [c("b1"), c("parts"), c("")];
    let mut kp: Vec<*const c_char> = keys.iter().map(|k| k.as_ptr()).collect();
    let values: [&[u8]; 3] = [b"one", b"REPLACED?", b"x"];
    let mut vp: Vec<*const c_void> = values.iter().map(|v| v.as_ptr() as *const c_void).collect();
    let vs: Vec<usize> = values.iter().map(|v| v.len()).collect();
    let mut results = [9 as c_int; 3];
    // SAFETY: 3 keys, values, sizes and results.
    let rc = unsafe {
        mooncake_store_put_batch(
            store,
            kp.as_mut_ptr(),
            vp.as_mut_ptr(),
            vs.as_ptr(),
            3,
            null(),
            -1,
            0,
            results.as_mut_ptr(),
        )
    };
    assert_eq!(rc, 0, "{}", last_error());
    assert_eq!(results[..2], [0, 0]);
    assert_eq!(results[2], -600, "the empty key fails alone");
    assert_eq!(get(store, "parts").unwrap(), b"abcdef");

    // batch_get_buffer: buffers and NULLs
    let gk = [c("b1"), c("missing")];
    let mut gp: Vec<*const c_char> = gk.iter().map(|k| k.as_ptr()).collect();
    let mut bufs = [null_mut::<mooncake_store_buffer_t>(); 2];
    let mut lens = [0i64; 2];
    assert_eq!(
        // SAFETY: 2 keys, 2 writable outputs each.
        unsafe { mooncake_store_batch_get_buffer(store, gp.as_mut_ptr(), 2, bufs.as_mut_ptr(), lens.as_mut_ptr()) },
        0
    );
    assert_eq!(lens, [3, -704]);
    assert!(bufs[1].is_null());
    // SAFETY: live buffers from the call, freed once.
    unsafe {
        assert_eq!(std::slice::from_raw_parts(mooncake_store_buffer_data(bufs[0]) as *const u8, 3), b"one");
        mooncake_store_buffer_free(bufs[0]);
        mooncake_store_buffer_free(bufs[1]); // NULL: a no-op
        assert_eq!(mooncake_store_buffer_size(null()), 0);
        assert!(mooncake_store_buffer_data(null()).is_null());
    }
    mooncake_store_destroy(store);
}

#[test]
fn zero_copy_batches_and_ranges_fill_results_arrays() {
    let master = Master::start(&[]);
    let store = set_up(&master, 64 * MIB);
    let mut mem = vec![0u8; 1 << 20];
    let base = mem.as_mut_ptr();
    // `mem` outlives the registration (unregistered below).
    assert_eq!(mooncake_store_register_buffer(store, base as _, mem.len()), 0, "{}", last_error());
    assert_eq!(mooncake_store_register_buffer(store, null_mut(), 10), -600);
    assert_eq!(mooncake_store_register_buffer(store, base as _, 0), -600);
    for (i, b) in mem[..4096].iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    let zk = c("zc");
    // SAFETY: registered memory, 1000 bytes.
    unsafe {
        assert_eq!(mooncake_store_put_from(store, zk.as_ptr(), base as _, 1000, null()), 0, "{}", last_error());
        assert_eq!(mooncake_store_get_into(store, zk.as_ptr(), base.add(8192) as _, 4096), 1000);
        assert_eq!(mooncake_store_get_into(store, zk.as_ptr(), base.add(8192) as _, 999), -600, "too small");
        assert_eq!(mooncake_store_get_into(store, c"missing".as_ptr(), base.add(8192) as _, 4096), -704);
        assert_eq!(mooncake_store_get_into(store, zk.as_ptr(), null_mut(), 10), -600);
    }
    assert_eq!(mem[8192..9192], mem[..1000]);

    // batch_put_from / batch_get_into
    let keys = [c("z0"), c("z1")];
    let mut kp: Vec<*const c_char> = keys.iter().map(|k| k.as_ptr()).collect();
    // SAFETY: offsets inside `mem`.
    let mut bufs: Vec<*mut c_void> = unsafe { vec![base.add(0) as _, base.add(100) as _] };
    let sizes = [100usize, 200];
    let mut rc = [9 as c_int; 2];
    assert_eq!(
        // SAFETY: 2 keys, buffers, sizes, results.
        unsafe {
            mooncake_store_batch_put_from(
                store,
                kp.as_mut_ptr(),
                bufs.as_mut_ptr(),
                sizes.as_ptr(),
                2,
                null(),
                rc.as_mut_ptr(),
            )
        },
        0
    );
    assert_eq!(rc, [0, 0]);
    let gkeys = [c("z0"), c("missing"), c("z1")];
    let mut gkp: Vec<*const c_char> = gkeys.iter().map(|k| k.as_ptr()).collect();
    // SAFETY: offsets inside `mem`.
    let mut gbufs: Vec<*mut c_void> =
        unsafe { vec![base.add(65536) as _, base.add(131072) as _, base.add(196608) as _] };
    let gsizes = [4096usize, 4096, 100];
    let mut got = [9i64; 3];
    assert_eq!(
        // SAFETY: 3 keys, buffers, sizes, results.
        unsafe {
            mooncake_store_batch_get_into(
                store,
                gkp.as_mut_ptr(),
                gbufs.as_mut_ptr(),
                gsizes.as_ptr(),
                3,
                got.as_mut_ptr(),
            )
        },
        0
    );
    assert_eq!(got, [100, -704, -600]);
    assert_eq!(mem[65536..65636], mem[..100]);
    let mut nulls: Vec<*mut c_void> = vec![null_mut(); 3];
    got = [9; 3];
    assert_eq!(
        // SAFETY: a NULL buffer with a size: refused, nothing written.
        unsafe {
            mooncake_store_batch_get_into(
                store,
                gkp.as_mut_ptr(),
                nulls.as_mut_ptr(),
                gsizes.as_ptr(),
                3,
                got.as_mut_ptr(),
            )
        },
        -600
    );
    assert_eq!(got, [9, 9, 9]);

    // ranges
    let value: Vec<u8> = (0..=255u8).cycle().take(1024).collect();
    assert_eq!(put(store, "r", &value), 0);
    mem[300_000..301_000].fill(0);
    let ranges = [
        mooncake_store_range { dst_offset: 0, src_offset: 0, size: 5 },
        mooncake_store_range { dst_offset: 100, src_offset: 10, size: 7 },
        mooncake_store_range { dst_offset: 200, src_offset: 1020, size: 10 },
    ];
    let mut out = [9i64; 3];
    let rk = c("r");
    // SAFETY: the destination is inside registered `mem`.
    let rc = unsafe {
        mooncake_store_get_into_ranges(store, base.add(300_000) as _, rk.as_ptr(), ranges.as_ptr(), 3, out.as_mut_ptr())
    };
    assert_eq!(rc, 0, "{}", last_error());
    assert_eq!(out[..2], [5, 7]);
    assert!(out[2] < 0, "a range past the end fails: {}", out[2]);
    assert_eq!(mem[300_000..300_005], value[..5]);
    assert_eq!(mem[300_100..300_107], value[10..17]);
    // SAFETY: as above.
    let rc = unsafe {
        mooncake_store_get_into_ranges(
            store,
            base.add(300_000) as _,
            c"missing".as_ptr(),
            ranges.as_ptr(),
            3,
            out.as_mut_ptr(),
        )
    };
    assert_eq!(rc, -704);
    assert_eq!(out, [-704; 3]);

    assert_eq!(mooncake_store_unregister_buffer(store, base as _), 0);
    assert_eq!(mooncake_store_unregister_buffer(store, base as _), -600);
    mooncake_store_destroy(store);
    drop(mem);
}

#[test]
fn two_handles_share_the_pool_and_setup_again_replaces_the_client() {
    let master = Master::start(&[]);
    let a = set_up(&master, 32 * MIB);
    let b = set_up(&master, 0);
    assert_eq!(put(b, "from-b", b"stored in a's segment"), 0, "{}", last_error());
    assert_eq!(get(a, "from-b").unwrap(), b"stored in a's segment");
    // set up `b` again: a new client (its name changes), the old one closed
    let (host, meta, addr) = (c("127.0.0.1"), c(&master.metadata()), c(&master.addr()));
    // SAFETY: valid C strings.
    let rc = unsafe {
        mooncake_store_setup(
            b,
            host.as_ptr(),
            meta.as_ptr(),
            16 * MIB,
            16 * MIB,
            c"tcp".as_ptr(),
            c"".as_ptr(),
            addr.as_ptr(),
        )
    };
    assert_eq!(rc, 0, "{}", last_error());
    assert_eq!(mooncake_store_health_check(b), 0);
    assert_eq!(get(b, "from-b").unwrap(), b"stored in a's segment");
    // SAFETY: init_all on a handle set up: refused.
    assert_eq!(unsafe { mooncake_store_init_all(b, null(), null(), 16 * MIB) }, -600);
    mooncake_store_destroy(b);
    mooncake_store_destroy(a);
}
