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

use std::time::{Duration, Instant};

use super::MasterState;
use crate::proto::{ClientId, ErrorCode, Outcome, PutId, SegmentId};

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
    pub fn connection_closed(&mut self, client: ClientId, now: Instant) {
        let Some(e) = self.clients.get_mut(&client) else { return };
        e.connections = e.connections.saturating_sub(1);
        if e.connections == 0 {
            self.client_disconnected(client, now);
        }
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

    /// Expires the clients not seen for `client_ttl`; returns the known ones among them (the
    /// others had nothing mounted: their puts are discarded and, without connections, they are
    /// forgotten silently).
    pub fn expire_clients(&mut self, now: Instant) -> Vec<ClientId> {
        let ttl = self.policy.client_ttl;
        let stale: Vec<(ClientId, bool)> = self
            .clients
            .iter()
            .filter(|(_, e)| now.saturating_duration_since(e.last_seen) >= ttl)
            .map(|(&c, e)| (c, e.known))
            .collect();
        let mut expired = Vec::new();
        for (client, known) in stale {
            if known {
                tracing::info!(client = format_args!("{client:032x}"), "client expired; unmounting its segments");
                self.counters.expired_clients += 1;
                expired.push(client);
            }
            for id in self.puts_of(client) {
                self.discard_put(id);
            }
            for seg in self.segments.owned_by(client) {
                self.unmount(seg, now);
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
