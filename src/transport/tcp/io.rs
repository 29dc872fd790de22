//! Socket I/O straight between a TCP socket and raw memory (registered regions), without
//! building Rust slices over memory the program owns. The initiator's lanes use blocking
//! sockets, where `SO_RCVTIMEO` / `SO_SNDTIMEO` bound every call, so "no progress for the
//! timeout" surfaces as `TimedOut`; the data server (`conn.rs`) calls [`vectored_fd`] on its
//! non-blocking sockets and waits for readiness itself. Either way the kernel copies, so a
//! page that is not accessible is an `EFAULT` error rather than a fault.

use std::io::{Error, ErrorKind, Result};
use std::net::TcpStream;
use std::os::fd::AsRawFd;

/// Largest single system call; Linux moves at most about 2 GiB per call anyway.
const MAX_CHUNK: u64 = 1 << 30;

fn last_error() -> Error {
    let e = Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) => Error::new(ErrorKind::TimedOut, "no progress within the timeout"),
        _ => e,
    }
}

/// Receives exactly `len` bytes into `ptr`.
///
/// # Safety
/// `ptr` must be valid for writes of `len` bytes for the duration of the call.
pub unsafe fn recv_exact_raw(sock: &TcpStream, ptr: usize, len: u64) -> Result<()> {
    let fd = sock.as_raw_fd();
    let mut done = 0u64;
    while done < len {
        let chunk = (len - done).min(MAX_CHUNK) as usize;
        // SAFETY: `ptr + done .. ptr + done + chunk` is inside the caller's valid range.
        let n = unsafe { libc::recv(fd, (ptr as u64 + done) as *mut libc::c_void, chunk, 0) };
        match n {
            0 => return Err(Error::new(ErrorKind::UnexpectedEof, "peer closed the connection")),
            n if n > 0 => done += n as u64,
            _ => {
                let e = last_error();
                if e.kind() != ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

/// Receives exactly `buf.len()` bytes. Returns `Ok(false)` when the peer closed before the
/// first byte, and `Err(WouldBlock)` when the timeout passed before the first byte (an idle
/// connection), so that callers can tell a quiet connection from a broken request.
pub fn recv_frame(sock: &TcpStream, buf: &mut [u8]) -> Result<bool> {
    let fd = sock.as_raw_fd();
    let mut done = 0usize;
    while done < buf.len() {
        // SAFETY: the destination is the unfilled tail of `buf`.
        let n = unsafe { libc::recv(fd, buf[done..].as_mut_ptr() as *mut libc::c_void, buf.len() - done, 0) };
        match n {
            0 if done == 0 => return Ok(false),
            0 => return Err(Error::new(ErrorKind::UnexpectedEof, "peer closed mid-frame")),
            n if n > 0 => done += n as usize,
            _ => {
                let e = last_error();
                match e.kind() {
                    ErrorKind::Interrupted => {}
                    ErrorKind::TimedOut if done == 0 => return Err(ErrorKind::WouldBlock.into()),
                    _ => return Err(e),
                }
            }
        }
    }
    Ok(true)
}

/// Sends `head` followed by `len` bytes at `ptr`, with as few system calls as the kernel allows
/// (one `sendmsg` with two pieces for small requests). `MSG_NOSIGNAL`: a closed peer is an
/// error, never a `SIGPIPE`.
///
/// # Safety
/// `ptr` must be valid for reads of `len` bytes for the duration of the call.
pub unsafe fn send_head_and_raw(sock: &TcpStream, head: &[u8], ptr: usize, len: u64) -> Result<()> {
    let fd = sock.as_raw_fd();
    let mut head_done = 0usize;
    let mut body_done = 0u64;
    while head_done < head.len() || body_done < len {
        let mut iov = [
            libc::iovec { iov_base: head[head_done..].as_ptr() as *mut libc::c_void, iov_len: head.len() - head_done },
            libc::iovec {
                iov_base: (ptr as u64 + body_done) as *mut libc::c_void,
                iov_len: (len - body_done).min(MAX_CHUNK) as usize,
            },
        ];
        let (first, count) = if head_done < head.len() { (0, 2) } else { (1, 1) };
        // SAFETY: an all-zero msghdr is valid; the iovecs point into `head` and the caller's
        // valid range and outlive the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iov[first..].as_mut_ptr();
        msg.msg_iovlen = count;
        // SAFETY: `msg` is initialised above and refers to live buffers.
        let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL) };
        if n < 0 {
            let e = last_error();
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let mut n = n as u64;
        let from_head = (n as usize).min(head.len() - head_done);
        head_done += from_head;
        n -= from_head as u64;
        body_done += n;
    }
    Ok(())
}

/// Sends all of `buf`.
pub fn send_all(sock: &TcpStream, buf: &[u8]) -> Result<()> {
    // SAFETY: `buf` is valid for reads of its length.
    unsafe { send_head_and_raw(sock, buf, 0, 0) }
}

/// Whether an idle connection is still usable: the peer has neither closed it (end of stream)
/// nor reset it, and sent nothing unasked. One non-blocking `MSG_PEEK`.
pub fn still_open(sock: &TcpStream) -> bool {
    let mut byte = 0u8;
    // SAFETY: `byte` is valid for writes of one byte; MSG_PEEK leaves the stream as it is.
    let n = unsafe {
        libc::recv(sock.as_raw_fd(), &mut byte as *mut u8 as *mut libc::c_void, 1, libc::MSG_PEEK | libc::MSG_DONTWAIT)
    };
    n < 0 && matches!(std::io::Error::last_os_error().raw_os_error(), Some(libc::EAGAIN) | Some(libc::EINTR))
}

/// Reads an 8-byte frame that may already be waiting, without blocking. Used after a failed
/// send to tell a v2 rejection (the server refused the header and closed) from a broken link.
pub fn try_recv_frame_now(sock: &TcpStream) -> Option<[u8; 8]> {
    let mut buf = [0u8; 8];
    // SAFETY: `buf` is valid for writes of 8 bytes.
    let n = unsafe {
        libc::recv(sock.as_raw_fd(), buf.as_mut_ptr() as *mut libc::c_void, 8, libc::MSG_DONTWAIT | libc::MSG_WAITALL)
    };
    (n == 8).then_some(buf)
}

/// One contiguous range of memory for vectored I/O (an address, not a Rust slice: the memory
/// may be a registered region the program does not own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    pub ptr: usize,
    pub len: usize,
}

/// How far a vectored transfer over a list of [`Piece`]s has got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    /// Index of the first piece not completely moved.
    pub piece: usize,
    /// Bytes of that piece already moved.
    pub offset: usize,
}

impl Cursor {
    pub fn done(&self, pieces: &[Piece]) -> bool {
        self.piece >= pieces.len()
    }

    /// Moves the cursor on by `n` bytes (and past empty pieces).
    fn advance(&mut self, pieces: &[Piece], mut n: usize) {
        while self.piece < pieces.len() {
            let left = pieces[self.piece].len - self.offset;
            if n < left {
                self.offset += n;
                return;
            }
            n -= left;
            self.piece += 1;
            self.offset = 0;
        }
    }
}

/// A process-wide sink for payload bytes that are received only to be dropped (a refused write
/// entry of our framing): `len` bytes at the returned address. Only the kernel ever writes
/// there (`recvmsg`), nothing reads it, so connections may share it.
pub fn discard_sink() -> Piece {
    const LEN: usize = 64 << 10;
    static SINK: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let ptr = *SINK.get_or_init(|| Box::leak(vec![0u8; LEN].into_boxed_slice()).as_mut_ptr() as usize);
    Piece { ptr, len: LEN }
}

/// `IOV_MAX` on Linux: the most pieces one `sendmsg`/`recvmsg` takes.
const IOV_MAX: usize = 1024;

/// Builds the iovecs of at most `IOV_MAX` pieces from `cur` into `iov`; returns how many.
fn fill_iov(pieces: &[Piece], cur: &Cursor, iov: &mut [libc::iovec; IOV_MAX]) -> usize {
    let mut n = 0;
    for (i, p) in pieces[cur.piece..].iter().enumerate() {
        if n == IOV_MAX {
            break;
        }
        let skip = if i == 0 { cur.offset } else { 0 };
        if p.len == skip {
            continue;
        }
        iov[n] = libc::iovec { iov_base: (p.ptr + skip) as *mut libc::c_void, iov_len: p.len - skip };
        n += 1;
    }
    n
}

/// The outcome of one vectored call.
#[derive(Debug, PartialEq, Eq)]
pub enum Moved {
    /// This many bytes moved (at least one).
    Bytes(usize),
    /// `MSG_DONTWAIT` and the socket was not ready.
    NotReady,
}

/// One `sendmsg` (or `recvmsg`) over the pieces from `cur` on, which moves `cur` on. With
/// `dontwait`, a socket that is not ready gives [`Moved::NotReady`]; without it, the socket's
/// timeout gives `TimedOut`. A receive that finds the peer closed gives `UnexpectedEof`.
///
/// # Safety
/// Every piece must be valid for reads (send) or writes (receive) of its length for the
/// duration of the call.
pub unsafe fn vectored(
    sock: &TcpStream,
    send: bool,
    pieces: &[Piece],
    cur: &mut Cursor,
    dontwait: bool,
) -> Result<Moved> {
    // SAFETY: forwarded caller guarantees.
    unsafe { vectored_fd(sock.as_raw_fd(), send, pieces, cur, dontwait) }
}

/// [`vectored`] on a raw socket descriptor (the data server's non-blocking tokio sockets). A
/// piece the kernel finds unmapped or inaccessible fails the call with `EFAULT`: the process
/// never touches such memory itself.
///
/// # Safety
/// As for [`vectored`].
pub unsafe fn vectored_fd(
    fd: std::os::fd::RawFd,
    send: bool,
    pieces: &[Piece],
    cur: &mut Cursor,
    dontwait: bool,
) -> Result<Moved> {
    let mut iov = [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; IOV_MAX];
    let count = fill_iov(pieces, cur, &mut iov);
    if count == 0 {
        cur.advance(pieces, 0);
        return Ok(Moved::Bytes(0));
    }
    let flags = if dontwait { libc::MSG_DONTWAIT } else { 0 };
    loop {
        // SAFETY: an all-zero msghdr is valid; the iovecs point into the caller's valid pieces.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = count;
        // SAFETY: `msg` refers to live iovecs over memory the caller vouches for.
        let n = unsafe {
            if send { libc::sendmsg(fd, &msg, flags | libc::MSG_NOSIGNAL) } else { libc::recvmsg(fd, &mut msg, flags) }
        };
        if n > 0 {
            cur.advance(pieces, n as usize);
            return Ok(Moved::Bytes(n as usize));
        }
        if n == 0 && !send {
            return Err(Error::new(ErrorKind::UnexpectedEof, "peer closed the connection"));
        }
        let raw = Error::last_os_error();
        match raw.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) if dontwait => return Ok(Moved::NotReady),
            _ => return Err(last_error_from(raw)),
        }
    }
}

fn last_error_from(e: Error) -> Error {
    match e.raw_os_error() {
        Some(libc::EAGAIN) => Error::new(ErrorKind::TimedOut, "no progress within the timeout"),
        _ => e,
    }
}

/// Moves every piece (blocking; the socket's timeouts bound each call).
///
/// # Safety
/// As for [`vectored`].
pub unsafe fn vectored_all(sock: &TcpStream, send: bool, pieces: &[Piece]) -> Result<()> {
    let mut cur = Cursor::default();
    while !cur.done(pieces) {
        // SAFETY: forwarded caller guarantees.
        unsafe { vectored(sock, send, pieces, &mut cur, false)? };
    }
    Ok(())
}

/// Waits until `sock` can take more bytes, at most `timeout`; false when it still cannot.
pub fn wait_writable(sock: &TcpStream, timeout: std::time::Duration) -> bool {
    let mut pfd = libc::pollfd { fd: sock.as_raw_fd(), events: libc::POLLOUT, revents: 0 };
    let ms = timeout.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    n == 1
}

/// A receive buffer in front of a socket: small frames arrive with one `recv` for several of
/// them, and payloads go straight from the socket into their destinations once the buffered
/// bytes are used up, so large transfers are not copied twice.
pub struct Reader {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Reader {
    pub fn new(capacity: usize) -> Reader {
        Reader { buf: vec![0u8; capacity].into_boxed_slice(), start: 0, end: 0 }
    }

    /// Bytes received and not consumed yet.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    pub fn consume(&mut self, n: usize) {
        assert!(n <= self.end - self.start, "consumed more than buffered");
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Makes sure at least `n` (at most the capacity) bytes are buffered, receiving as many as
    /// fit. `Ok(false)`: the peer closed with nothing buffered (a clean end between frames);
    /// `Err(WouldBlock)`: the timeout passed with nothing buffered (an idle connection).
    pub fn fill(&mut self, sock: &TcpStream, n: usize) -> Result<bool> {
        assert!(n <= self.buf.len(), "frame larger than the receive buffer");
        if self.end - self.start >= n {
            return Ok(true);
        }
        if self.buf.len() - self.start < n {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        while self.end - self.start < n {
            let empty = self.end == self.start;
            let free = &mut self.buf[self.end..];
            // SAFETY: the destination is the free tail of `buf`.
            let got = unsafe { libc::recv(sock.as_raw_fd(), free.as_mut_ptr() as *mut libc::c_void, free.len(), 0) };
            match got {
                0 if empty => return Ok(false),
                0 => return Err(Error::new(ErrorKind::UnexpectedEof, "peer closed mid-frame")),
                g if g > 0 => self.end += g as usize,
                _ => {
                    let e = last_error();
                    match e.kind() {
                        ErrorKind::Interrupted => {}
                        ErrorKind::TimedOut if empty => return Err(ErrorKind::WouldBlock.into()),
                        _ => return Err(e),
                    }
                }
            }
        }
        Ok(true)
    }

    /// Moves the next bytes of the stream into `pieces`, in order: the buffered ones first
    /// (copied), the rest straight from the socket.
    ///
    /// # Safety
    /// Every piece must be valid for writes of its length for the duration of the call.
    pub unsafe fn read_into(&mut self, sock: &TcpStream, pieces: &[Piece]) -> Result<()> {
        // SAFETY: forwarded caller guarantees (every piece trusted).
        unsafe { self.read_into_checked(sock, pieces, |_| true) }
    }

    /// [`Reader::read_into`] where piece `i` is trusted only when `trusted(i)`: the buffered
    /// bytes reach an untrusted piece through the kernel (`copy_unverified`), so an unmapped
    /// destination is an `EFAULT` error (the stream is then out of step: drop the connection),
    /// as the socket's own `recvmsg` reports it for the rest.
    ///
    /// # Safety
    /// Every trusted piece must be valid for writes of its length for the duration of the call.
    pub unsafe fn read_into_checked(
        &mut self,
        sock: &TcpStream,
        pieces: &[Piece],
        trusted: impl Fn(usize) -> bool,
    ) -> Result<()> {
        let mut cur = Cursor::default();
        while !cur.done(pieces) && self.start < self.end {
            let p = pieces[cur.piece];
            let n = (p.len - cur.offset).min(self.end - self.start);
            let src = self.buf[self.start..].as_ptr() as usize;
            if trusted(cur.piece) {
                // SAFETY: the destination is inside a piece the caller vouches for; the source is
                // the buffered part of `buf`, which no piece can overlap (it is private).
                unsafe { std::ptr::copy_nonoverlapping(src as *const u8, (p.ptr + cur.offset) as *mut u8, n) };
            // SAFETY: the source is the buffered part of `buf`; the kernel checks the destination.
            } else if !unsafe { crate::transport::memory::copy_unverified(src, p.ptr + cur.offset, n as u64) } {
                return Err(Error::from_raw_os_error(libc::EFAULT));
            }
            self.consume(n);
            cur.advance(pieces, n);
        }
        while !cur.done(pieces) {
            // SAFETY: trusted pieces are valid (caller guarantee); the kernel checks the others.
            unsafe { vectored(sock, false, pieces, &mut cur, false)? };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_advances_across_and_past_empty_pieces() {
        let p = [Piece { ptr: 0, len: 3 }, Piece { ptr: 0, len: 0 }, Piece { ptr: 0, len: 2 }];
        let mut c = Cursor::default();
        c.advance(&p, 2);
        assert_eq!(c, Cursor { piece: 0, offset: 2 });
        c.advance(&p, 1);
        assert_eq!(c, Cursor { piece: 2, offset: 0 });
        c.advance(&p, 2);
        assert!(c.done(&p));
    }

    #[test]
    fn reader_serves_buffered_bytes_then_the_socket() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let sender = {
            let data = data.clone();
            std::thread::spawn(move || send_all(&a, &data).unwrap())
        };
        let mut r = Reader::new(1024);
        assert!(r.fill(&b, 10).unwrap());
        assert_eq!(&r.buffered()[..10], &data[..10]);
        r.consume(10);
        let mut out = vec![0u8; data.len() - 10];
        let half = out.len() / 2;
        let pieces = [
            Piece { ptr: out.as_mut_ptr() as usize, len: half },
            Piece { ptr: out.as_mut_ptr() as usize + half, len: out.len() - half },
        ];
        // SAFETY: both pieces lie inside `out`.
        unsafe { r.read_into(&b, &pieces).unwrap() };
        assert_eq!(&out[..], &data[10..]);
        sender.join().unwrap();
    }
}
