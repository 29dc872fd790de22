//! The data server's side of our framing (`frame.rs`), on a connection whose first header was
//! our hello.
//!
//! The connection's thread reads one request frame at a time through a 64 KiB [`Reader`] (a
//! small frame arrives with one `recv`, often together with the next one), takes a lease for
//! every entry before a byte of its payload moves, receives all write payloads with vectored
//! `recvmsg` straight into the leased memory, then answers with one vectored `sendmsg`: head,
//! statuses and read data. Frames are served in order, so replies are; the initiator keeps
//! reading replies while it sends, so neither side's socket buffer can fill for good.

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;

use super::frame::{self, ENTRY_LEN, ENTRY_OK, ENTRY_REFUSED, Entry, HEAD_LEN, Head};
use super::io::{Piece, Reader, send_all, vectored_all};
use super::server::Shared;
use crate::transport::MemoryLease;

/// Receive buffer: holds the largest entry table (1024 entries) and many small frames.
const READ_BUFFER: usize = 64 << 10;
/// Where the payload of a refused write entry is received and dropped.
const DISCARD: usize = 64 << 10;

/// Buffers of one connection, reused frame after frame: no allocation per request.
struct Scratch {
    entries: Vec<Entry>,
    leases: Vec<Option<MemoryLease>>,
    pieces: Vec<Piece>,
    reply: Vec<u8>,
    discard: Box<[u8]>,
}

/// Serves frames until the peer closes, a frame breaks the rules, or the server stops.
pub(super) fn serve(stream: &TcpStream, peer: SocketAddr, shared: &Shared, version: u32) {
    let version = version.min(frame::FRAMING_VERSION);
    if let Err(e) = send_all(stream, &frame::ack(version)) {
        tracing::debug!(%peer, "tcp data server: cannot acknowledge framing: {e}");
        return;
    }
    let mut rd = Reader::new(READ_BUFFER);
    let mut s = Scratch {
        entries: Vec::new(),
        leases: Vec::new(),
        pieces: Vec::new(),
        reply: Vec::new(),
        discard: vec![0u8; DISCARD].into_boxed_slice(),
    };
    loop {
        match rd.fill(stream, HEAD_LEN) {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if shared.stopping.load(Ordering::Relaxed) {
                    return;
                }
                continue; // idle connection
            }
            Err(e) => {
                tracing::debug!(%peer, "tcp data server: framed connection ended: {e}");
                return;
            }
        }
        if let Err(e) = serve_frame(stream, &mut rd, &mut s, shared, peer) {
            s.leases.clear();
            if let Some(suppressed) = shared.warnings.allow() {
                tracing::warn!(%peer, similar_since_last = suppressed, "tcp data server: bad or broken frame, closing connection: {e}");
            }
            return;
        }
    }
}

fn serve_frame(
    stream: &TcpStream,
    rd: &mut Reader,
    s: &mut Scratch,
    shared: &Shared,
    peer: SocketAddr,
) -> std::io::Result<()> {
    let head = Head::decode(&rd.buffered()[..HEAD_LEN]);
    let count = head.check(frame::REQUEST_MAGIC)?;
    rd.consume(HEAD_LEN);
    let table = count * ENTRY_LEN;
    if !rd.fill(stream, table)? {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "peer closed inside a frame"));
    }
    s.entries.clear();
    for chunk in rd.buffered()[..table].chunks_exact(ENTRY_LEN) {
        s.entries.push(Entry::decode(chunk)?);
    }
    rd.consume(table);
    frame::check_totals(&s.entries)?;

    // Leases first, for every entry: nothing lands before its range was checked.
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
    for (e, lease) in s.entries.iter().zip(&s.leases) {
        if !e.write || e.len == 0 {
            continue;
        }
        if lease.is_some() {
            s.pieces.push(Piece { ptr: e.addr as usize, len: e.len as usize });
        } else {
            let mut left = e.len as usize;
            while left > 0 {
                let n = left.min(DISCARD);
                s.pieces.push(Piece { ptr: s.discard.as_mut_ptr() as usize, len: n });
                left -= n;
            }
        }
    }
    // SAFETY: each piece is either a range a lease proves registered (and keeps registered
    // while `s.leases` holds it) or inside `s.discard`.
    unsafe { rd.read_into(stream, &s.pieces)? };
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
                %peer,
                refused,
                entries = count,
                similar_since_last = suppressed,
                "tcp data server: refused frame entries: range not inside one registered, remotely accessible region"
            );
        }
    }
    // SAFETY: the reply buffer is live; each read piece is a range its lease keeps registered.
    let sent = unsafe { vectored_all(stream, true, &s.pieces) };
    s.leases.clear();
    sent
}
