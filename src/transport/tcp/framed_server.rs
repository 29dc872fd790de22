//! The data server's side of our framing (`frame.rs`), on a connection whose first header was
//! our hello; runs in the connection's task (`conn.rs`).
//!
//! Per frame: the 16-byte head, then the entry table (read into a buffer that grows with the
//! bytes that arrive; head and table must be complete within the progress timeout of the head's
//! first byte), a lease for every entry before a byte of its payload moves, the write payloads
//! with non-blocking vectored `recvmsg` straight into the leased memory (never through a buffer
//! of ours, so memory that faults is an `EFAULT`, not a crash), then one vectored `sendmsg`:
//! head, statuses and read data. Frames are served in order, so replies are; the initiator keeps
//! reading replies while it sends, so neither side's socket buffer can fill for good.
//!
//! Buffers live only while frames come: when the connection waits idle for the next head,
//! they are freed, so an idle connection holds a few hundred bytes.

use std::sync::atomic::Ordering;

use tokio::time::Instant;

use super::conn::Conn;
use super::frame::{self, ENTRY_LEN, ENTRY_OK, ENTRY_REFUSED, Entry, HEAD_LEN, Head};
use super::io::{Piece, discard_sink};
use crate::transport::MemoryLease;

/// Buffers of one connection, reused while frames follow each other.
#[derive(Default)]
struct Scratch {
    table: Vec<u8>,
    entries: Vec<Entry>,
    leases: Vec<Option<MemoryLease>>,
    pieces: Vec<Piece>,
    reply: Vec<u8>,
}

/// Serves frames until the peer closes, a frame breaks the rules, or the connection idles out.
pub(super) async fn serve(conn: &Conn<'_>, version: u32) {
    let version = version.min(frame::FRAMING_VERSION);
    if let Err(e) = conn.send_all(&frame::ack(version)).await {
        tracing::debug!(peer = %conn.peer, "tcp data server: cannot acknowledge framing: {e}");
        return;
    }
    let mut s = Scratch::default();
    let mut head = [0u8; HEAD_LEN];
    loop {
        let deadline = match conn.recv_head(&mut head, &mut || s = Scratch::default()).await {
            Ok(Some(d)) => d,
            Ok(None) => return,
            Err(e) => {
                conn.ended(&e);
                return;
            }
        };
        if let Err(e) = serve_frame(conn, &head, deadline, &mut s).await {
            s.leases.clear();
            if e.raw_os_error() == Some(libc::EFAULT) {
                conn.fault(&e);
            } else if e.kind() == std::io::ErrorKind::InvalidData
                && let Some(suppressed) = conn.shared.warnings.allow()
            {
                tracing::warn!(peer = %conn.peer, similar_since_last = suppressed, "tcp data server: bad frame, closing connection: {e}");
            } else {
                conn.ended(&e);
            }
            return;
        }
    }
}

async fn serve_frame(
    conn: &Conn<'_>,
    head: &[u8; HEAD_LEN],
    deadline: Instant,
    s: &mut Scratch,
) -> std::io::Result<()> {
    let head = Head::decode(head);
    let count = head.check(frame::REQUEST_MAGIC)?;
    s.table.clear();
    conn.recv_grow(&mut s.table, count * ENTRY_LEN, deadline).await?;
    s.entries.clear();
    for chunk in s.table.chunks_exact(ENTRY_LEN) {
        s.entries.push(Entry::decode(chunk)?);
    }
    frame::check_totals(&s.entries)?;

    // Leases first, for every entry: nothing lands before its range was checked.
    let shared = conn.shared;
    s.leases.clear();
    s.leases.extend(s.entries.iter().map(|e| shared.memory.lease(e.addr, e.len)));
    s.reply.clear();
    s.reply.resize(HEAD_LEN, 0);
    Head { magic: frame::REPLY_MAGIC, count: count as u32, seq: head.seq }.encode(&mut s.reply);
    let mut refused = 0u64;
    for lease in &s.leases {
        refused += u64::from(lease.is_none());
        s.reply.push(if lease.is_some() { ENTRY_OK } else { ENTRY_REFUSED });
    }
    s.pieces.clear();
    let sink = discard_sink();
    for (e, lease) in s.entries.iter().zip(&s.leases) {
        if !e.write || e.len == 0 {
            continue;
        }
        if lease.is_some() {
            s.pieces.push(Piece { ptr: e.addr as usize, len: e.len as usize });
        } else {
            let mut left = e.len as usize;
            while left > 0 {
                let n = left.min(sink.len);
                s.pieces.push(Piece { ptr: sink.ptr, len: n });
                left -= n;
            }
        }
    }
    {
        let leases = &s.leases;
        let revoked = || leases.iter().flatten().any(|l| l.revoked());
        // SAFETY: each piece is either a range a lease proves registered (and keeps registered
        // while `s.leases` holds it) or the discard sink; the kernel writes them (`recvmsg`), so
        // a page unmapped or protected since registration is an EFAULT.
        unsafe { conn.move_pieces(false, &s.pieces, &revoked) }.await?;
    }
    for (e, lease) in s.entries.iter().zip(s.leases.iter_mut()) {
        if e.write {
            lease.take(); // the bytes are stored: unregistering need not wait for the reply
        }
    }
    s.pieces.clear();
    s.pieces.push(Piece { ptr: s.reply.as_ptr() as usize, len: s.reply.len() });
    for (e, lease) in s.entries.iter().zip(&s.leases) {
        if !e.write && lease.is_some() {
            s.pieces.push(Piece { ptr: e.addr as usize, len: e.len as usize });
        }
    }
    if refused > 0 {
        shared.refused.fetch_add(refused, Ordering::Relaxed);
        if let Some(suppressed) = shared.warnings.allow() {
            tracing::warn!(
                peer = %conn.peer,
                refused,
                entries = count,
                similar_since_last = suppressed,
                "tcp data server: refused frame entries: range not inside one registered, remotely accessible region"
            );
        }
    }
    let sent = {
        let leases = &s.leases;
        let revoked = || leases.iter().flatten().any(|l| l.revoked());
        // SAFETY: the reply buffer lives across the call; each read piece is a range its lease
        // keeps registered (read by the kernel: EFAULT where no longer accessible).
        unsafe { conn.move_pieces(true, &s.pieces, &revoked) }.await
    };
    s.leases.clear();
    sent
}
