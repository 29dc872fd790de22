//! Gives libmooncake.so its SONAME, `libmooncake.so.<ABI>`, so that programs linked against it
//! record the ABI they were built for (their NEEDED entry) and not the bare dev name.
//!
//! The ABI version is the package's major version (Cargo.toml), taken here and nowhere else:
//! every 0.x build has the SONAME `libmooncake.so.0`, so a 0.x release must keep the C ABI of
//! the ones before it (Mooncake's `transfer_engine_c.h` is fixed; `mooncake.h` only grows), and
//! a release that breaks it must bump the major version. ci/install.sh reads the SONAME from
//! the built library, so nothing else repeats this number.

fn main() {
    let abi = env!("CARGO_PKG_VERSION_MAJOR");
    // Only the cdylib: the staticlib and the binaries are not shared objects.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libmooncake.so.{abi}");
    // Nothing but Cargo.toml feeds the SONAME, and a new version there rebuilds and reruns this
    // script (env! is tracked); without this line any change in the package would rerun it.
    println!("cargo:rerun-if-changed=build.rs");
}
