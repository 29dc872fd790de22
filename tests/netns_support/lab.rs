//! Network namespaces ("hosts") joined by veth pairs, all removed on drop.
//!
//! Every namespace is named `mcnt-<pid>-<n>-<host>`: the test process's PID and a per-process
//! counter keep parallel tests (and parallel test binaries) apart. Veth ends are created
//! straight inside their namespaces (`ip link add … netns …`), so no interface ever appears in
//! the root namespace and their names only need to be unique within a lab. Deleting a
//! namespace deletes the veth ends in it, and a veth pair goes with either of its ends.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

const PREFIX: &str = "mcnt";

/// Set (to `1`) by CI: a machine where namespaces cannot be made fails instead of skipping.
const REQUIRE_VAR: &str = "MOONCAKE_REQUIRE_NETNS";

static LABS: AtomicUsize = AtomicUsize::new(0);

/// Runs `ip ARGS`; `Err` carries its stderr.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("cannot run `ip`: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("`ip {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Like [`ip`], panicking on failure (the lab is being built; nothing sensible can follow).
fn ip_ok(args: &[&str]) {
    if let Err(e) = ip(args) {
        panic!("{e}");
    }
}

/// One veth pair: both ends are named `dev`; `ns_a` holds the first one [`Lab::link`] was given.
#[derive(Debug, Clone)]
pub struct Link {
    pub ns_a: String,
    pub dev: String,
}

/// The namespaces and links of one test. Dropping it deletes them (also while panicking).
pub struct Lab {
    tag: String,
    namespaces: Vec<String>,
    links: usize,
}

impl Lab {
    /// A new, empty lab; `None` (after printing `SKIPPED: …`) when this machine cannot make
    /// network namespaces, unless `MOONCAKE_REQUIRE_NETNS=1` makes that a failure.
    pub fn new() -> Option<Lab> {
        remove_stale_namespaces();
        let n = LABS.fetch_add(1, Ordering::Relaxed);
        let mut lab = Lab { tag: format!("{PREFIX}-{}-{n}", std::process::id()), namespaces: Vec::new(), links: 0 };
        match lab.probe() {
            Ok(()) => Some(lab),
            Err(why) => {
                drop(lab);
                let required = std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1");
                assert!(!required, "{REQUIRE_VAR}=1 but network namespaces are not usable here: {why}");
                eprintln!("SKIPPED: network namespaces are not usable here (root and iproute2 needed): {why}");
                None
            }
        }
    }

    /// Makes and removes one namespace, and runs a command inside it.
    fn probe(&mut self) -> Result<(), String> {
        let ns = format!("{}-probe", self.tag);
        ip(&["netns", "add", &ns])?;
        self.namespaces.push(ns.clone());
        let inside = ip(&["netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
        let removed = ip(&["netns", "del", &ns]);
        self.namespaces.retain(|n| *n != ns);
        inside.and(removed)
    }

    /// Creates the namespace of host `name` with `lo` up; returns the namespace's name.
    pub fn host(&mut self, name: &str) -> String {
        let ns = format!("{}-{name}", self.tag);
        ip_ok(&["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        ip_ok(&["-n", &ns, "link", "set", "lo", "up"]);
        ns
    }

    /// Joins `ns_a` (address `cidr_a`, e.g. `198.51.100.1/24`) and `ns_b` (`cidr_b`) with a new
    /// veth pair, both ends up.
    pub fn link(&mut self, ns_a: &str, cidr_a: &str, ns_b: &str, cidr_b: &str) -> Link {
        let dev = format!("mcv{}", self.links);
        self.links += 1;
        ip_ok(&["link", "add", &dev, "netns", ns_a, "type", "veth", "peer", "name", &dev, "netns", ns_b]);
        for (ns, cidr) in [(ns_a, cidr_a), (ns_b, cidr_b)] {
            ip_ok(&["-n", ns, "addr", "add", cidr, "dev", &dev]);
            ip_ok(&["-n", ns, "link", "set", &dev, "up"]);
        }
        Link { ns_a: ns_a.into(), dev }
    }

    /// `ip link set DEV up|down` inside `ns`.
    pub fn set_link(&self, ns: &str, dev: &str, up: bool) {
        ip_ok(&["-n", ns, "link", "set", dev, if up { "up" } else { "down" }]);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.namespaces.drain(..).rev() {
            if let Err(e) = ip(&["netns", "del", &ns]) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

/// Deletes namespaces left by earlier test processes that died without cleaning up (killed
/// with SIGKILL, say): ours, whose PID no longer exists.
fn remove_stale_namespaces() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else { return };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else { continue };
        let mut parts = name.splitn(3, '-');
        if parts.next() != Some(PREFIX) {
            continue;
        }
        let Some(pid) = parts.next().and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}
