//! One connection of the data server (`server.rs`): a tokio task that reads request headers,
//! moves payloads between the socket and registered memory with raw non-blocking system calls,
//! and enforces the idle, header and progress deadlines and the unregistering cut-off.
//!
//! Mooncake's protocol is served here; a connection whose first header is our hello goes on in
//! `framed_server.rs`, with the same primitives.

use std::io::{Error, ErrorKind, Result};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::frame;
use super::io::{Cursor, Moved, Piece, vectored_fd};
use super::server::{ConnCtl, Shared};
use super::wire::{self, HEADER_LEN, Header};
use crate::transport::memory::revocations;

/// One served connection and what it needs to enforce its deadlines.
pub(super) struct Conn<'a> {
    pub(super) stream: TcpStream,
    pub(super) peer: SocketAddr,
    pub(super) shared: &'a Shared,
    ctl: &'a ConnCtl,
}

/// Serves requests on one connection until it closes, fails, is refused, idles out or is shed.
pub(super) async fn serve(stream: TcpStream, peer: SocketAddr, shared: &Shared, ctl: &ConnCtl) {
    let conn = Conn { stream, peer, shared, ctl };
    let mut head = [0u8; HEADER_LEN];
    let mut first = true;
    loop {
        match conn.recv_head(&mut head, &mut || {}).await {
            Ok(Some(_)) => {}
            Ok(None) => return,
            Err(e) => {
                conn.ended(&e);
                return;
            }
        }
        if std::mem::take(&mut first)
            && let Some(version) = frame::parse_hello(&head)
        {
            shared.framed.fetch_add(1, Ordering::Relaxed);
            // Boxed: an idle connection's task then holds only what Mooncake's protocol needs.
            Box::pin(super::framed_server::serve(&conn, version)).await;
            return;
        }
        let h = Header::decode(&head);
        if let Err(e) = serve_request(&conn, &h).await {
            if e.raw_os_error() == Some(libc::EFAULT) {
                conn.fault(&e);
            } else if e.kind() == ErrorKind::PermissionDenied
                && let Some(suppressed) = shared.warnings.allow()
            {
                tracing::warn!(
                    peer = %conn.peer,
                    addr = format_args!("{:#x}", h.addr),
                    size = h.size,
                    write = h.write,
                    similar_since_last = suppressed,
                    "tcp data server: request failed, closing connection: {e}"
                );
            } else {
                conn.ended(&e);
            }
            return;
        }
    }
}

async fn serve_request(conn: &Conn<'_>, h: &Header) -> Result<()> {
    let Some(lease) = conn.shared.memory.lease(h.addr, h.size) else {
        conn.shared.refused.fetch_add(1, Ordering::Relaxed);
        if h.v2 {
            let _ = conn.send_all(&wire::status_frame(wire::STATUS_REJECTED)).await;
        }
        return Err(Error::new(
            ErrorKind::PermissionDenied,
            "range is not inside one registered, remotely accessible region; refused",
        ));
    };
    let revoked = || lease.revoked();
    if h.write {
        let pieces = [Piece { ptr: h.addr as usize, len: h.size as usize }];
        // SAFETY: the lease proves `[addr, addr + size)` is a registered region of this process,
        // and it stays registered while `lease` lives; the kernel writes it (`recvmsg`), so a
        // page unmapped or protected since registration is an EFAULT, not a fault.
        let received = unsafe { conn.move_pieces(false, &pieces, &revoked) }.await;
        drop(lease);
        if let Err(e) = received {
            if h.v2 && e.raw_os_error() == Some(libc::EFAULT) {
                conn.shared.refused.fetch_add(1, Ordering::Relaxed);
                let _ = conn.send_all(&wire::status_frame(wire::STATUS_REJECTED)).await;
            }
            return Err(e);
        }
        if h.v2 {
            conn.send_all(&wire::status_frame(wire::STATUS_OK)).await?;
        }
    } else {
        let ok = wire::status_frame(wire::STATUS_OK);
        let mut pieces =
            [Piece { ptr: ok.as_ptr() as usize, len: ok.len() }, Piece { ptr: h.addr as usize, len: h.size as usize }];
        if !h.v2 {
            pieces[0].len = 0;
        }
        // SAFETY: as above, the leased range is valid for reads while `lease` lives (the kernel
        // reads it: EFAULT where it no longer is); `ok` lives across the call.
        let sent = unsafe { conn.move_pieces(true, &pieces, &revoked) }.await;
        drop(lease);
        sent?;
    }
    Ok(())
}

impl Conn<'_> {
    fn fd(&self) -> std::os::fd::RawFd {
        self.stream.as_raw_fd()
    }

    /// A connection that ended on an error: one debug line (expected outcomes: peers close,
    /// time out, reset).
    pub(super) fn ended(&self, e: &Error) {
        tracing::debug!(peer = %self.peer, "tcp data server: connection ended: {e}");
    }

    /// Registered memory that faults: the request failed; one rate-limited warning.
    pub(super) fn fault(&self, e: &Error) {
        self.shared.refused.fetch_add(1, Ordering::Relaxed);
        if let Some(suppressed) = self.shared.fault_warnings.allow() {
            tracing::warn!(
                peer = %self.peer,
                similar_since_last = suppressed,
                "tcp data server: registered memory is not accessible (unmapped or protected after \
                 registration): request failed, connection closed: {e}"
            );
        }
    }

    /// One non-blocking `recv` into `buf`; `WouldBlock` when nothing is there.
    fn try_recv(&self, buf: &mut [u8]) -> Result<usize> {
        self.stream.try_io(Interest::READABLE, || {
            // SAFETY: the destination is `buf`, valid for writes of its length.
            let n = unsafe { libc::recv(self.fd(), buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0) };
            if n < 0 { Err(Error::last_os_error()) } else { Ok(n as usize) }
        })
    }

    /// Receives a header (or a frame head) of `buf.len()` bytes. Waits for its first byte for
    /// at most the idle timeout (`Ok(None)`: closed cleanly, idle, shed or stopping; `on_idle`
    /// runs before the connection starts waiting), then for the rest until the header
    /// deadline, which it returns (a frame's entry table must arrive by then too).
    pub(super) async fn recv_head(
        &self,
        buf: &mut [u8],
        on_idle: &mut (dyn FnMut() + Send),
    ) -> Result<Option<Instant>> {
        let mut idle_marked = false;
        let done = loop {
            match self.try_recv(buf) {
                Ok(0) => return Ok(None),
                Ok(n) => break n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if !idle_marked {
                idle_marked = true;
                on_idle();
                self.ctl.set_idle(self.shared);
            }
            if self.ctl.shed_flag.load(Ordering::SeqCst) || self.shared.stopping.load(Ordering::Relaxed) {
                return Ok(None);
            }
            let limits = &self.shared.limits;
            let limit = if self.ctl.spoke() { limits.idle_timeout } else { Some(limits.first_request_timeout) };
            // No limit: a day at a time, which only the cap, the peer or stopping cuts short.
            let idle = tokio::time::timeout(limit.unwrap_or(Duration::from_secs(86_400)), async {
                tokio::select! {
                    biased;
                    r = self.stream.readable() => r.map(|_| true),
                    _ = self.ctl.shed.notified() => Ok(false),
                }
            })
            .await;
            if idle.is_err() && limit.is_none() {
                continue;
            }
            match idle {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => {
                    tracing::debug!(peer = %self.peer, "tcp data server: idle connection closed for a new one (cap)");
                    return Ok(None);
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    tracing::debug!(
                        peer = %self.peer,
                        idle_timeout_s = limit.map_or(0, |l| l.as_secs()),
                        "tcp data server: idle connection closed"
                    );
                    return Ok(None);
                }
            }
        };
        self.ctl.set_busy();
        let deadline = Instant::now() + self.shared.progress_timeout;
        self.recv_exact(&mut buf[done..], deadline).await?;
        Ok(Some(deadline))
    }

    /// Receives exactly `buf.len()` bytes before `deadline` (a hard one: trickling does not
    /// extend it).
    pub(super) async fn recv_exact(&self, buf: &mut [u8], deadline: Instant) -> Result<()> {
        let mut done = 0usize;
        while done < buf.len() {
            match self.try_recv(&mut buf[done..]) {
                Ok(0) => return Err(Error::new(ErrorKind::UnexpectedEof, "peer closed mid-header")),
                Ok(n) => done += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => self.readable_by(deadline, "header").await?,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Waits until the socket is readable, or fails with `TimedOut` at `deadline` (a hard one:
    /// the progress timeout from the first byte of `what`).
    async fn readable_by(&self, deadline: Instant, what: &str) -> Result<()> {
        match tokio::time::timeout_at(deadline, self.stream.readable()).await {
            Ok(r) => r,
            Err(_) => Err(Error::new(
                ErrorKind::TimedOut,
                format!("{what} incomplete after the progress timeout ({:?})", self.shared.progress_timeout),
            )),
        }
    }

    /// Appends `len` bytes to `v` before `deadline`, growing it with the bytes that arrive
    /// (a head that announces a large table costs nothing until the table comes).
    pub(super) async fn recv_grow(&self, v: &mut Vec<u8>, len: usize, deadline: Instant) -> Result<()> {
        let end = v.len() + len;
        while v.len() < end {
            if v.capacity() == v.len() {
                v.reserve_exact((end - v.len()).min(v.len().max(4096)));
            }
            let spare = (v.capacity() - v.len()).min(end - v.len());
            let got = self.stream.try_io(Interest::READABLE, || {
                // SAFETY: the destination is the spare capacity of `v`, `spare` bytes long.
                let n = unsafe { libc::recv(self.fd(), v.as_mut_ptr().add(v.len()) as *mut libc::c_void, spare, 0) };
                if n < 0 { Err(Error::last_os_error()) } else { Ok(n as usize) }
            });
            match got {
                Ok(0) => return Err(Error::new(ErrorKind::UnexpectedEof, "peer closed inside a frame")),
                // SAFETY: the kernel initialised these `n <= spare` bytes of the spare capacity.
                Ok(n) => unsafe { v.set_len(v.len() + n) },
                Err(e) if e.kind() == ErrorKind::WouldBlock => self.readable_by(deadline, "frame head").await?,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Sends all of `buf` (a status frame, an ack) under the progress timeout.
    pub(super) async fn send_all(&self, buf: &[u8]) -> Result<()> {
        let pieces = [Piece { ptr: buf.as_ptr() as usize, len: buf.len() }];
        // SAFETY: `buf` is valid for reads of its length for the whole call.
        unsafe { self.move_pieces(true, &pieces, &|| false) }.await
    }

    /// Moves every piece (`send`: from memory to the socket; else from the socket into memory)
    /// with non-blocking `sendmsg`/`recvmsg`, waiting for readiness in between. Fails when no
    /// byte moves for the progress timeout, and, once `revoked()` (a leased region is being
    /// unregistered), when the progress timeout has passed since: a hard deadline.
    ///
    /// # Safety
    /// Every piece must be valid for reads (send) or writes (receive) of its length, as far as
    /// this process's own bookkeeping goes, for the whole call (a registered range, leased; or
    /// a buffer of the caller's). The kernel checks the mapping and fails with `EFAULT`.
    pub(super) async unsafe fn move_pieces(
        &self,
        send: bool,
        pieces: &[Piece],
        revoked: &(dyn Fn() -> bool + Sync),
    ) -> Result<()> {
        let interest = if send { Interest::WRITABLE } else { Interest::READABLE };
        let mut cur = Cursor::default();
        let mut hard: Option<Instant> = None;
        while !cur.done(pieces) {
            let moved = self.stream.try_io(interest, || {
                // SAFETY: forwarded caller guarantees; the socket is non-blocking.
                match unsafe { vectored_fd(self.fd(), send, pieces, &mut cur, true) }? {
                    Moved::Bytes(n) => Ok(n),
                    Moved::NotReady => Err(ErrorKind::WouldBlock.into()),
                }
            });
            match moved {
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            self.wait_ready(interest, revoked, &mut hard).await?;
        }
        Ok(())
    }

    async fn wait_ready(
        &self,
        interest: Interest,
        revoked: &(dyn Fn() -> bool + Sync),
        hard: &mut Option<Instant>,
    ) -> Result<()> {
        let timeout = self.shared.progress_timeout;
        let progress = Instant::now() + timeout;
        loop {
            let notified = revocations().notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if hard.is_none() && revoked() {
                tracing::debug!(peer = %self.peer, "tcp data server: region being unregistered: transfer must end within the progress timeout");
                *hard = Some(Instant::now() + timeout);
            }
            let limit = hard.map_or(progress, |h| h.min(progress));
            tokio::select! {
                biased;
                r = self.stream.ready(interest) => {
                    r?;
                    return Ok(());
                }
                _ = &mut notified, if hard.is_none() => continue,
                _ = tokio::time::sleep_until(limit) => {
                    let why = if hard.is_some_and(|h| h <= progress) {
                        format!("the region is being unregistered and the transfer did not end within {timeout:?}")
                    } else {
                        format!("no progress within {timeout:?}")
                    };
                    return Err(Error::new(ErrorKind::TimedOut, why));
                }
            }
        }
    }
}
