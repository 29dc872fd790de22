//! Bytes over a unix stream socket with a file descriptor attached (`SCM_RIGHTS`): how a dummy
//! store client hands its memfds to its `mooncake_client`.
//!
//! Every descriptor the kernel installs for us is either returned or closed: the receive
//! buffer has room for the most one message can carry ([`SCM_MAX_FD`]), so the kernel never
//! truncates the list (a truncated list is refused by `nix` before it can be read, which
//! leaked the descriptors that did fit), and all but the first are closed.

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

/// The most descriptors Linux passes in one message (`SCM_MAX_FD` in the kernel).
pub const SCM_MAX_FD: usize = 253;

/// Fills `buf` and returns the descriptor that came with those bytes, if any (later ones in
/// the same read are closed). The end of the stream is `UnexpectedEof`.
pub fn receive(stream: &UnixStream, buf: &mut [u8]) -> io::Result<Option<OwnedFd>> {
    let mut got = 0;
    let mut fd = None;
    while got < buf.len() {
        let mut space = nix::cmsg_space!([RawFd; SCM_MAX_FD]);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    /// How many of this process's descriptors are memfds named `name` (a name no other test
    /// uses, so tests running beside this one do not disturb the count).
    fn open_memfds(name: &str) -> usize {
        let want = format!("/memfd:{name} (deleted)");
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|target| target.to_string_lossy() == want)
            .count()
    }

    fn memfd(name: &str) -> OwnedFd {
        nix::sys::memfd::memfd_create(name, nix::sys::memfd::MFdFlags::MFD_CLOEXEC).unwrap()
    }

    #[test]
    fn extra_descriptors_in_one_message_are_closed() {
        let name = "mc-fd-passing-extra";
        let (a, b) = UnixStream::pair().unwrap();
        let fds = [memfd(name), memfd(name), memfd(name)];
        let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        let cmsgs = [ControlMessage::ScmRights(&raw)];
        let iov = [IoSlice::new(b"abcd")];
        sendmsg::<()>(a.as_raw_fd(), &iov, &cmsgs, MsgFlags::empty(), None).unwrap();
        drop(fds);
        assert_eq!(open_memfds(name), 0);
        let mut buf = [0u8; 4];
        let kept = receive(&b, &mut buf).unwrap();
        assert_eq!(&buf, b"abcd");
        assert!(kept.is_some());
        assert_eq!(open_memfds(name), 1, "one descriptor kept, the two extra ones closed");
        drop(kept);
        assert_eq!(open_memfds(name), 0);
        // One descriptor on each of two messages read by one call: the first kept.
        let f = memfd(name);
        send(&a, b"ab", Some(f.as_fd())).unwrap();
        send(&a, b"cd", Some(f.as_fd())).unwrap();
        drop(f);
        let kept = receive(&b, &mut buf).unwrap();
        assert!(kept.is_some());
        assert_eq!(open_memfds(name), 1);
    }
}
