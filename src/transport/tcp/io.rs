//! Socket I/O straight between a TCP socket and raw memory (registered regions), without
//! building Rust slices over memory the program owns. Blocking sockets; `SO_RCVTIMEO` /
//! `SO_SNDTIMEO` bound every call, so "no progress for the timeout" surfaces as `TimedOut`.

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
