//! Gives libmooncake.so its SONAME, `libmooncake.so.<ABI>`, so that programs linked against it
//! record the ABI they were built for (their NEEDED entry) and not the bare dev name.
//!
//! The ABI version is the package's major version (Cargo.toml), taken here and nowhere else:
//! every 0.x build has the SONAME `libmooncake.so.0`, so a 0.x release must keep the C ABI of
//! the ones before it (Mooncake's `transfer_engine_c.h` is fixed; `mooncake.h` only grows), and
//! a release that breaks it must bump the major version. ci/install.sh reads the SONAME from
//! the built library, so nothing else repeats this number.

use std::path::{Path, PathBuf};

fn main() {
    let abi = env!("CARGO_PKG_VERSION_MAJOR");
    // Only the cdylib: the staticlib and the binaries are not shared objects.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libmooncake.so.{abi}");
    soname_link(abi);
    rdma_cfg();
    // Nothing but Cargo.toml feeds the SONAME, and a new version there rebuilds and reruns this
    // script (env! is tracked); without this line any change in the package would rerun it.
    println!("cargo:rerun-if-changed=build.rs");
}

/// `cfg(rdma_transport)`: the RDMA transport is compiled in when the `rdma` feature is on (the
/// default) and the target has committed verbs bindings (src/transport/rdma/verbs/bindings.rs,
/// generated for x86_64: the pthread objects inside `ibv_cq`, `ibv_qp` and `ibv_context` have
/// other sizes elsewhere). On another target the default build still works, without RDMA, and
/// says so once; tools/verbs-bindgen makes bindings for it.
fn rdma_cfg() {
    println!("cargo::rustc-check-cfg=cfg(rdma_transport)");
    let wanted = std::env::var_os("CARGO_FEATURE_RDMA").is_some();
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if wanted && arch == "x86_64" {
        println!("cargo:rustc-cfg=rdma_transport");
    } else if wanted {
        println!("cargo:warning=no verbs bindings for {arch}: building without the RDMA transport");
    }
}

/// A program linked with `-Ltarget/release -lmooncake` records the SONAME, so the loader looks
/// for `libmooncake.so.<ABI>` at run time; cargo makes only `libmooncake.so`. The link
/// `libmooncake.so.<ABI> -> libmooncake.so` beside it lets README.md's C instructions work
/// without a manual step. OUT_DIR is `<target dir>/<profile>/build/<pkg>-<hash>/out`, so the
/// profile directory is three levels up; a layout we do not recognise gets no link (ci/install.sh
/// makes it in an installed tree either way).
fn soname_link(abi: &str) {
    let Some(out_dir) = std::env::var_os("OUT_DIR").map(PathBuf::from) else { return };
    let Some(profile_dir) = out_dir.ancestors().nth(3).filter(|d| d.join("build").is_dir()) else { return };
    let link = profile_dir.join(format!("libmooncake.so.{abi}"));
    let target = Path::new("libmooncake.so");
    if std::fs::read_link(&link).is_ok_and(|t| t == target) {
        return;
    }
    let _ = std::fs::remove_file(&link);
    if let Err(e) = std::os::unix::fs::symlink(target, &link) {
        println!("cargo:warning=cannot link {} -> libmooncake.so: {e}", link.display());
    }
}
