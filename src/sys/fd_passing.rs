//! Bytes over a unix stream socket with a file descriptor attached (`SCM_RIGHTS`): how a dummy
//! store client hands its memfds to its `mooncake_client`.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};

/// Writes all of `bytes`; `fd`, when given, travels with the first of them.
pub fn send(stream: &UnixStream, bytes: &[u8], fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
    let raw: [RawFd; 1] = [fd.map_or(-1, |f| f.as_raw_fd())];
    let cmsgs = [ControlMessage::ScmRights(&raw)];
    let mut sent = 0;
    while sent < bytes.len() {
        let iov = [IoSlice::new(&bytes[sent..])];
        let with_fd = sent == 0 && fd.is_some();
        sent +=
            sendmsg::<()>(stream.as_raw_fd(), &iov, if with_fd { &cmsgs } else { &[] }, MsgFlags::MSG_NOSIGNAL, None)
                .map_err(io::Error::from)?;
    }
    Ok(())
}

/// Fills `buf` and returns the descriptor that came with those bytes, if any (later ones in
/// the same read are closed). The end of the stream is `UnexpectedEof`.
pub fn receive(stream: &UnixStream, buf: &mut [u8]) -> io::Result<Option<OwnedFd>> {
    let mut got = 0;
    let mut fd = None;
    while got < buf.len() {
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let mut iov = [IoSliceMut::new(&mut buf[got..])];
        let msg = recvmsg::<()>(stream.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
            .map_err(io::Error::from)?;
        if msg.bytes == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the peer closed the socket"));
        }
        for cmsg in msg.cmsgs().map_err(io::Error::from)? {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                for raw in fds {
                    // SAFETY: the kernel just installed `raw` in this process for us; nothing
                    // else owns it (dropping the extra ones closes them).
                    let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                    fd.get_or_insert(owned);
                }
            }
        }
        got += msg.bytes;
    }
    Ok(fd)
}
