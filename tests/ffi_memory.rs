//! The C ABI's memory registration: every success and failure code.

mod support;

use std::ffi::c_void;
use std::ptr::null_mut;

use support::ffi::*;

#[test]
fn register_and_unregister() {
    let e = create();
    let mut buf = vec![0u8; 1 << 16];
    let p = buf.as_mut_ptr() as *mut c_void;
    let loc = c("cpu:0");
    // SAFETY: buf outlives the registration.
    unsafe {
        assert_code(registerLocalMemory(e, p, 4096, loc.as_ptr(), 1), 0, "registerLocalMemory");
        assert_code(registerLocalMemory(e, p, 4096, loc.as_ptr(), 1), ERR_ADDRESS_OVERLAPPED, "registerLocalMemory");
        assert_code(
            registerLocalMemory(e, p.add(4095), 10, loc.as_ptr(), 1),
            ERR_ADDRESS_OVERLAPPED,
            "registerLocalMemory",
        );
        assert_code(registerLocalMemory(e, p.add(4096), 4096, c("*").as_ptr(), 0), 0, "registerLocalMemory");
        assert_code(
            registerLocalMemory(e, p.add(8192), 0, loc.as_ptr(), 1),
            ERR_INVALID_ARGUMENT,
            "registerLocalMemory",
        );
        assert_code(
            registerLocalMemory(e, null_mut(), 10, loc.as_ptr(), 1),
            ERR_INVALID_ARGUMENT,
            "registerLocalMemory",
        );
        assert_code(
            registerLocalMemory(e, p.add(8192), 10, std::ptr::null(), 1),
            ERR_INVALID_ARGUMENT,
            "registerLocalMemory",
        );
        assert_code(
            registerLocalMemory(e, usize::MAX as *mut c_void, 10, loc.as_ptr(), 1),
            ERR_INVALID_ARGUMENT,
            "registerLocalMemory",
        );
        assert_code(
            registerLocalMemory(null_mut(), p, 10, loc.as_ptr(), 1),
            ERR_INVALID_ARGUMENT,
            "registerLocalMemory",
        );
    }
    assert_code(unregisterLocalMemory(e, p), 0, "unregisterLocalMemory");
    assert_code(unregisterLocalMemory(e, p), ERR_ADDRESS_NOT_REGISTERED, "unregisterLocalMemory");
    // SAFETY: inside buf.
    assert_code(unregisterLocalMemory(e, unsafe { p.add(4097) }), ERR_ADDRESS_NOT_REGISTERED, "unregisterLocalMemory");
    assert_code(unregisterLocalMemory(null_mut(), p), ERR_INVALID_ARGUMENT, "unregisterLocalMemory");
    destroyTransferEngine(e);
}

#[test]
fn batch_registration_is_all_or_nothing() {
    let e = create();
    let mut buf = vec![0u8; 1 << 16];
    let p = buf.as_mut_ptr();
    let loc = c("cpu:0");
    let entry = |off: usize, len: usize| buffer_entry { addr: p.wrapping_add(off) as *mut c_void, length: len };
    // SAFETY: entries are readable; buf outlives the registrations.
    unsafe {
        let mut ok = [entry(0, 100), entry(1000, 100)];
        assert_code(registerLocalMemoryBatch(e, ok.as_mut_ptr(), 2, loc.as_ptr()), 0, "registerLocalMemoryBatch");
        let mut clash = [entry(5000, 100), entry(50, 10)];
        assert_code(
            registerLocalMemoryBatch(e, clash.as_mut_ptr(), 2, loc.as_ptr()),
            ERR_ADDRESS_OVERLAPPED,
            "registerLocalMemoryBatch",
        );
        // nothing of the refused batch was registered
        assert_code(
            unregisterLocalMemory(e, p.add(5000) as *mut c_void),
            ERR_ADDRESS_NOT_REGISTERED,
            "unregisterLocalMemory",
        );
        let mut within = [entry(7000, 100), entry(7050, 100)];
        assert_code(
            registerLocalMemoryBatch(e, within.as_mut_ptr(), 2, loc.as_ptr()),
            ERR_ADDRESS_OVERLAPPED,
            "registerLocalMemoryBatch",
        );
        let mut zero = [entry(9000, 0)];
        assert_code(
            registerLocalMemoryBatch(e, zero.as_mut_ptr(), 1, loc.as_ptr()),
            ERR_INVALID_ARGUMENT,
            "registerLocalMemoryBatch",
        );
        assert_code(
            registerLocalMemoryBatch(e, null_mut(), 2, loc.as_ptr()),
            ERR_INVALID_ARGUMENT,
            "registerLocalMemoryBatch",
        );
        assert_code(registerLocalMemoryBatch(e, null_mut(), 0, loc.as_ptr()), 0, "registerLocalMemoryBatch");
        assert_code(
            registerLocalMemoryBatch(e, ok.as_mut_ptr(), 2, std::ptr::null()),
            ERR_INVALID_ARGUMENT,
            "registerLocalMemoryBatch",
        );
        assert_code(
            registerLocalMemoryBatch(null_mut(), ok.as_mut_ptr(), 2, loc.as_ptr()),
            ERR_INVALID_ARGUMENT,
            "registerLocalMemoryBatch",
        );

        let mut missing = [p as *mut c_void, p.add(3) as *mut c_void];
        assert_code(
            unregisterLocalMemoryBatch(e, missing.as_mut_ptr(), 2),
            ERR_ADDRESS_NOT_REGISTERED,
            "unregisterLocalMemoryBatch",
        );
        // the refused batch removed nothing: the first region is still registered
        let mut both = [p as *mut c_void, p.add(1000) as *mut c_void];
        assert_code(unregisterLocalMemoryBatch(e, both.as_mut_ptr(), 2), 0, "unregisterLocalMemoryBatch");
        assert_code(unregisterLocalMemoryBatch(e, null_mut(), 1), ERR_INVALID_ARGUMENT, "unregisterLocalMemoryBatch");
        assert_code(unregisterLocalMemoryBatch(e, null_mut(), 0), 0, "unregisterLocalMemoryBatch");
        assert_code(
            unregisterLocalMemoryBatch(null_mut(), both.as_mut_ptr(), 2),
            ERR_INVALID_ARGUMENT,
            "unregisterLocalMemoryBatch",
        );
    }
    destroyTransferEngine(e);
}

#[test]
fn only_remotely_accessible_regions_are_published_and_served() {
    let (target, init) = (create(), create());
    let mut private = vec![7u8; 4096];
    let mut public = vec![0u8; 4096];
    let loc = c("cpu:0");
    // SAFETY: buffers outlive the engines' use of them.
    unsafe {
        assert_eq!(registerLocalMemory(target, private.as_mut_ptr() as *mut c_void, 4096, loc.as_ptr(), 0), 0);
    }
    register(target, &mut public);
    let mut src = vec![1u8; 4096];
    register(init, &mut src);
    let seg = open(init, &name_of(target));
    let mut reqs = [
        request(OPCODE_WRITE, src.as_ptr(), seg, private.as_ptr() as u64, 4096),
        request(OPCODE_WRITE, src.as_ptr(), seg, public.as_ptr() as u64, 4096),
    ];
    assert_eq!(transfer(init, &mut reqs), vec![STATUS_FAILED, STATUS_COMPLETED]);
    assert!(private.iter().all(|&b| b == 7), "a private region was written by a peer");
    assert!(public.iter().all(|&b| b == 1));
    destroyTransferEngine(init);
    destroyTransferEngine(target);
}
