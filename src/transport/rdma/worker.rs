//! The transport's threads, per device: a completion worker (polls the CQ, spins briefly on
//! an empty one, then sleeps on the completion channel) and an event thread (port up/down,
//! fatal errors). Both run on the CPUs of the device's NUMA node when it has one.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::path::{Core, Nic};
use super::verbs::{ibv_event_type as E, ibv_wc};

/// Completions taken per `ibv_poll_cq` call.
pub const POLL_BATCH: usize = 64;
/// How long shutdown waits for flushed completions before it fails what is left.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);

pub(crate) fn start(core: &Arc<Core>, nic: &Arc<Nic>) -> std::io::Result<Vec<JoinHandle<()>>> {
    let cpus = nic.device.numa_node.map(node_cpus).unwrap_or_default();
    let (c, n, cp) = (core.clone(), nic.clone(), cpus.clone());
    let poller = std::thread::Builder::new().name(format!("mc-rdma-cq-{}", nic.device.name)).spawn(move || {
        bind_to(&cp);
        poll_loop(&c, &n)
    })?;
    let (c, n) = (core.clone(), nic.clone());
    let events = std::thread::Builder::new().name(format!("mc-rdma-ev-{}", nic.device.name)).spawn(move || {
        bind_to(&cpus);
        event_loop(&c, &n)
    })?;
    Ok(vec![poller, events])
}

fn poll_loop(core: &Arc<Core>, nic: &Arc<Nic>) {
    // SAFETY: `ibv_wc` is plain data; zero is a valid value of every field.
    let mut wcs: Vec<ibv_wc> = (0..POLL_BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
    let spin = core.settings.poll_spin;
    let mut idle_since: Option<Instant> = None;
    let mut stop_seen: Option<Instant> = None;
    loop {
        if poll_once(core, nic, &mut wcs) > 0 {
            idle_since = None;
            continue;
        }
        if core.stopped.load(Ordering::Acquire) {
            let since = *stop_seen.get_or_insert_with(Instant::now);
            if nic.in_flight() == 0 || since.elapsed() > DRAIN_LIMIT {
                core.abandon_posted(nic);
                return;
            }
        }
        let idle = *idle_since.get_or_insert_with(Instant::now);
        if idle.elapsed() < spin {
            std::hint::spin_loop();
            continue;
        }
        // Arm, then look again (a completion that came before the arming raises no event),
        // then sleep until one comes or a short timeout lets us check for shutdown.
        nic.device.arm();
        if poll_once(core, nic, &mut wcs) > 0 {
            idle_since = None;
        } else {
            nic.device.wait_completion_event(20);
        }
    }
}

/// Polls `nic`'s CQ once (up to `wcs.len()` completions) and handles what came; returns how
/// many did (0 after logging a failed poll). The worker's step, also driven by the fake
/// device's benchmark rig.
pub(crate) fn poll_once(core: &Arc<Core>, nic: &Nic, wcs: &mut [ibv_wc]) -> usize {
    let n = match nic.device.poll(wcs) {
        Ok(n) => n,
        Err(e) => {
            tracing::error!("{e}");
            return 0;
        }
    };
    core.complete(nic, &wcs[..n]);
    n
}

fn event_loop(core: &Arc<Core>, nic: &Arc<Nic>) {
    let d = &nic.device;
    let mut last_check = Instant::now();
    while !core.stopped.load(Ordering::Acquire) {
        if let Some((kind, port)) = d.next_async_event(100) {
            let text = d.verbs.event_text(kind);
            match kind {
                E::IBV_EVENT_PORT_ERR => {
                    tracing::warn!(device = %d.name, port, "RDMA port down ({text})");
                    d.set_active(false);
                    core.fail_device_endpoints(d.index, &format!("port {port} of {} went down", d.name));
                }
                E::IBV_EVENT_PORT_ACTIVE => {
                    tracing::info!(device = %d.name, port, "RDMA port up ({text})");
                    d.refresh_port();
                }
                E::IBV_EVENT_DEVICE_FATAL => {
                    tracing::error!(device = %d.name, "RDMA device failed ({text})");
                    d.set_active(false);
                    core.fail_device_endpoints(d.index, &format!("{} failed", d.name));
                }
                _ => tracing::info!(device = %d.name, "RDMA async event: {text}"),
            }
        }
        // An event may be missed (or come before we listened): look at the port now and then.
        if last_check.elapsed() > Duration::from_secs(1) {
            last_check = Instant::now();
            let was = d.is_active();
            d.refresh_port();
            if was && !d.is_active() {
                core.fail_device_endpoints(d.index, &format!("port of {} is down", d.name));
            }
        }
    }
}

fn node_cpus(node: u32) -> Vec<usize> {
    let text = std::fs::read_to_string(format!("/sys/devices/system/node/node{node}/cpulist")).unwrap_or_default();
    crate::topology::sysfs::parse_cpulist(text.trim()).unwrap_or_default().into_iter().map(|c| c as usize).collect()
}

fn bind_to(cpus: &[usize]) {
    if cpus.is_empty() {
        return;
    }
    // SAFETY: `set` is a plain bit set, initialised by CPU_ZERO before use.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        if c < libc::CPU_SETSIZE as usize {
            // SAFETY: `c` is within the set's size.
            unsafe { libc::CPU_SET(c, &mut set) };
        }
    }
    // SAFETY: sets this thread's affinity from a valid set.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        tracing::debug!("binding an RDMA thread to CPUs {cpus:?}: {}", std::io::Error::last_os_error());
    }
}
