//! Clients, their segments, and what happens when they leave.
//!
//! A client is *known* (`Pong{known: true}`) once it mounted a segment, or once it has been
//! told `known: false` (it then mounts what it has, which may be nothing). Mooncake's master
//! does the same with `NEED_REMOUNT`: a `Hello` alone does not make a client known, because
//! after a master restart every client says `Hello` again on new connections and must still
//! learn that its segments are gone. A client with no segments therefore hears `known: false`
//! once per master (re)start or expiry.
//!
//! A known client that sends nothing for `client_ttl` expires: its puts in progress are
//! discarded (their space waits `put_start_release_timeout`, as the process may still be
//! writing), its segments unmounted, and it is not known any more. When the last connection of
//! a client closes (the process died or closed its store) the same happens at once, except that
//! its puts' space is freed at once, since no writer is left.
//!
//! # Time the master did not see
//!
//! Silence is measured on the master's monotonic clock, and only over time the master was
//! running. Its housekeeping ticker calls [`MasterState::expire_clients`] every 100 ms; a gap
//! of more than [`STALL_THRESHOLD`] between two observations of its own progress (the ticker, a
//! connection closing) means the master itself was stopped (SIGSTOP, a VM pause, a runtime
//! starved for seconds), and no client could have been heard meanwhile. Every client's last
//! heartbeat then moves forward by the gap (never past now), so that a client is expired only
//! after a full `client_ttl` the master was awake for, and for one `client_ttl` after the stall
//! a client whose last connection closes is not dropped at once but left to `client_ttl`: its
//! heartbeats timed out while the master was stopped, and it reconnects on the next one. One
//! warning is logged per stall. Without this a master stopped for longer than `client_ttl`
//! expired every client on resuming and dropped every object.
//!
//! Every expiry that drops something (a known client, segments, puts) is logged, one info line
//! per client.

use std::time::{Duration, Instant};

use super::MasterState;
use crate::proto::{ClientId, ErrorCode, Outcome, PutId, SegmentId};

/// A longer gap between two observations of the master's own progress is a stall of the
/// master, not silence of its clients. The ticker observes every 100 ms, so one second is ten
/// missed ticks: far above the lateness of a tick on a loaded machine, and at most the
/// smallest `client_ttl` (whole seconds), so that a stall that could expire a client is seen.
pub const STALL_THRESHOLD: Duration = Duration::from_secs(1);

/// The master's own progress (see the module documentation).
#[derive(Debug, Default)]
pub(super) struct Awake {
    /// The latest instant the master was seen running.
    last: Option<Instant>,
    /// Until then, a client whose last connection closes is left to `client_ttl`.
    grace_until: Option<Instant>,
}

/// What the master keeps per client.
#[derive(Debug, Clone)]
pub struct ClientEntry {
    /// The last request that named it or came over one of its connections.
    pub last_seen: Instant,
    /// Connections that said `Hello` with this id and are still open.
    pub connections: usize,
    /// Mounted a segment or was told it was not known (see the module documentation).
    pub known: bool,
}

impl MasterState {
    /// A connection said `Hello` as `client`.
    pub fn hello(&mut self, client: ClientId, now: Instant) {
        let e = self.clients.entry(client).or_insert(ClientEntry { last_seen: now, connections: 0, known: false });
        e.connections += 1;
        e.last_seen = now;
    }

    /// A connection of `client` closed; the last one ends the client ([`client_disconnected`]).
    ///
    /// [`client_disconnected`]: Self::client_disconnected
    /// Right after a stall of the master the client is instead left to `client_ttl`: its
    /// connections may have closed because the master did not answer.
    pub fn connection_closed(&mut self, client: ClientId, now: Instant) {
        self.note_progress(now);
        let in_grace = self.awake.grace_until.is_some_and(|until| now < until);
        let Some(e) = self.clients.get_mut(&client) else { return };
        e.connections = e.connections.saturating_sub(1);
        if e.connections == 0 {
            if in_grace {
                tracing::debug!(
                    client = format_args!("{client:032x}"),
                    "last connection closed right after a stall of the master; waiting client_ttl for it"
                );
                return;
            }
            self.client_disconnected(client, now);
        }
    }

    /// Notes that the master runs at `now`; after a gap longer than [`STALL_THRESHOLD`], moves
    /// every client's last heartbeat forward by the gap (see the module documentation).
    /// Returns the gap when it was a stall.
    pub fn note_progress(&mut self, now: Instant) -> Option<Duration> {
        let last = self.awake.last.replace(now);
        let last = last?;
        if now <= last {
            // An observation that took its time before the lock: the later one stays.
            self.awake.last = Some(last);
            return None;
        }
        let gap = now - last;
        if gap <= STALL_THRESHOLD {
            return None;
        }
        for e in self.clients.values_mut() {
            e.last_seen = e.last_seen.checked_add(gap).map_or(now, |t| t.min(now));
        }
        self.awake.grace_until = Some(now + self.policy.client_ttl);
        self.counters.master_stalls += 1;
        tracing::warn!(
            gap_ms = gap.as_millis() as u64,
            clients = self.clients.len(),
            "the master made no progress for {:.1} s (stopped or stalled); its clients get that \
             time back before client_ttl expires them",
            gap.as_secs_f64()
        );
        Some(gap)
    }

    /// `client` has no connection left: its puts are revoked (freed at once), its segments
    /// unmounted, and it is forgotten.
    pub fn client_disconnected(&mut self, client: ClientId, now: Instant) {
        tracing::debug!(client = format_args!("{client:032x}"), "client left; dropping its segments and puts");
        for id in self.puts_of(client) {
            self.release_put(id);
        }
        for seg in self.segments.owned_by(client) {
            self.unmount(seg, now);
        }
        self.clients.remove(&client);
    }

    /// Notes that `client` is alive (any request but `Ping` of a client not known).
    pub fn touch(&mut self, client: ClientId, now: Instant) {
        if let Some(e) = self.clients.get_mut(&client) {
            e.last_seen = now;
        }
    }

    /// A heartbeat: whether the master knows `client` (see the module documentation).
    pub fn ping(&mut self, client: ClientId, now: Instant) -> bool {
        self.counters.ping += 1;
        let e = self.clients.entry(client).or_insert(ClientEntry { last_seen: now, connections: 0, known: false });
        e.last_seen = now;
        let known = e.known;
        e.known = true;
        known
    }

    /// The clients the master knows now.
    pub fn known_clients(&self) -> usize {
        self.clients.values().filter(|e| e.known).count()
    }

    /// Whether `client` is known (tests).
    pub fn is_known(&self, client: ClientId) -> bool {
        self.clients.get(&client).is_some_and(|e| e.known)
    }

    /// Mounts a segment owned by `client` (see [`super::SegmentTable::mount`]).
    pub fn mount_segment(
        &mut self,
        client: ClientId,
        segment: SegmentId,
        name: &str,
        base: u64,
        size: u64,
        now: Instant,
    ) -> Outcome<()> {
        self.counters.mount += 1;
        let r = self.segments.mount(segment, client, name, base, size);
        match r {
            Ok(()) => {
                let e =
                    self.clients.entry(client).or_insert(ClientEntry { last_seen: now, connections: 0, known: true });
                e.known = true;
                e.last_seen = now;
                tracing::debug!(name, size, "segment mounted");
            }
            Err(_) => self.counters.mount_failures += 1,
        }
        r
    }

    /// Unmounts a segment of `client`; returns how long readers may still hold leases on its
    /// bytes, in milliseconds.
    pub fn unmount_segment(&mut self, client: ClientId, segment: SegmentId, now: Instant) -> Outcome<u64> {
        self.counters.unmount += 1;
        let r = match self.segments.get(segment) {
            None => Err(ErrorCode::SegmentNotFound),
            Some(s) if s.client != client => Err(ErrorCode::IllegalClient),
            Some(_) => Ok(self.unmount(segment, now).as_millis() as u64),
        };
        if r.is_err() {
            self.counters.unmount_failures += 1;
        }
        r
    }

    /// Takes a segment out: objects only there are dropped, others lose that replica, puts with
    /// a replica there are discarded. Returns the longest read lease left on a dropped replica
    /// that a reader is still copying (one that has not said `ReadsDone`).
    pub(super) fn unmount(&mut self, segment: SegmentId, now: Instant) -> Duration {
        let Some(seg) = self.segments.remove(segment) else { return Duration::ZERO };
        let mut wait = Duration::ZERO;
        let mut dropped = 0usize;
        self.keys.retain(|_, entry| {
            if let Some(obj) = entry.visible.as_mut()
                && obj.allocs.iter().any(|a| a.segment == segment)
            {
                // Only a reader still copying (no `ReadsDone` yet) holds the memory: a lease
                // whose readers all finished (the closing client's own reads among them, sent
                // ahead of this request) does not delay the unmount.
                if obj.readers > 0 {
                    wait = wait.max(obj.lease_until.saturating_duration_since(now));
                }
                obj.allocs.retain(|a| a.segment != segment);
                if obj.allocs.is_empty() {
                    entry.visible = None;
                    dropped += 1;
                }
            }
            !entry.is_empty()
        });
        let hit: Vec<PutId> = self
            .puts
            .iter()
            .filter(|(_, p)| p.allocs.iter().any(|a| a.segment == segment))
            .map(|(&id, _)| id)
            .collect();
        for id in hit {
            if let Some(p) = self.puts.get_mut(&id) {
                p.allocs.retain(|a| a.segment != segment);
            }
            self.discard_put(id);
        }
        self.deferred.retain(|d| {
            let there = d.alloc.segment == segment;
            if there && d.read_lease {
                wait = wait.max(d.until.saturating_duration_since(now));
            }
            !there
        });
        tracing::debug!(name = seg.name, dropped, wait_ms = wait.as_millis() as u64, "segment unmounted");
        wait
    }

    /// Expires the clients not heard from for `client_ttl` of the master's running time (the
    /// housekeeping ticker calls it, which also notes the master's progress); returns the known
    /// ones among them (the others had nothing mounted: their puts are discarded and, without
    /// connections, they are forgotten).
    pub fn expire_clients(&mut self, now: Instant) -> Vec<ClientId> {
        self.note_progress(now);
        let ttl = self.policy.client_ttl;
        let stale: Vec<(ClientId, bool, Duration)> = self
            .clients
            .iter()
            .map(|(&c, e)| (c, e.known, now.saturating_duration_since(e.last_seen)))
            .filter(|&(_, _, silent)| silent >= ttl)
            .collect();
        let mut expired = Vec::new();
        for (client, known, silent) in stale {
            let puts = self.puts_of(client);
            let segments = self.segments.owned_by(client);
            if known {
                self.counters.expired_clients += 1;
                expired.push(client);
            }
            let noteworthy = known || !puts.is_empty() || !segments.is_empty();
            let before = self.keys.len();
            for &id in &puts {
                self.discard_put(id);
            }
            for &seg in &segments {
                self.unmount(seg, now);
            }
            if noteworthy {
                tracing::info!(
                    client = format_args!("{client:032x}"),
                    silent_ms = silent.as_millis() as u64,
                    segments = segments.len(),
                    puts = puts.len(),
                    keys_dropped = before.saturating_sub(self.keys.len()),
                    "client expired: no request for client_ttl; its segments are unmounted"
                );
            } else {
                // A connection that never mounted anything and is idle: nothing was dropped.
                tracing::debug!(client = format_args!("{client:032x}"), "idle client without segments expired");
            }
            match self.clients.get_mut(&client) {
                Some(e) if e.connections > 0 => {
                    e.known = false;
                    e.last_seen = now;
                }
                _ => {
                    self.clients.remove(&client);
                }
            }
        }
        expired
    }

    fn puts_of(&self, client: ClientId) -> Vec<PutId> {
        self.puts.iter().filter(|(_, p)| p.client == client).map(|(&id, _)| id).collect()
    }
}
