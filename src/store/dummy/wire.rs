//! Frames over the dummy's unix socket, with an optional memfd attached (`SCM_RIGHTS`).
//!
//! A frame is sent with one `sendmsg` (so an attached fd travels with its first bytes) and its
//! header is read with `recvmsg`, which collects the fd; the body is read normally.

use std::io::{self, IoSlice, IoSliceMut, Read};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::master::proto::{self, Envelope, FrameError};

/// Writes one frame, with `fd` attached when given.
pub fn send<T: Serialize>(
    stream: &UnixStream,
    envelope: &Envelope<T>,
    fd: Option<BorrowedFd<'_>>,
    scratch: &mut Vec<u8>,
) -> Result<(), FrameError> {
    scratch.clear();
    proto::encode(envelope, scratch)?;
    let raw: [RawFd; 1] = [fd.map_or(-1, |f| f.as_raw_fd())];
    let cmsgs = [ControlMessage::ScmRights(&raw)];
    let mut sent = 0;
    while sent < scratch.len() {
        let iov = [IoSlice::new(&scratch[sent..])];
        let with_fd = sent == 0 && fd.is_some();
        let n =
            sendmsg::<()>(stream.as_raw_fd(), &iov, if with_fd { &cmsgs } else { &[] }, MsgFlags::MSG_NOSIGNAL, None)
                .map_err(io::Error::from)?;
        sent += n;
    }
    Ok(())
}

/// Reads one frame and the fd that came with it, if any.
pub fn receive<T: DeserializeOwned>(
    stream: &mut UnixStream,
    scratch: &mut Vec<u8>,
) -> Result<(Envelope<T>, Option<OwnedFd>), FrameError> {
    let mut header = [0u8; 4];
    let mut got = 0;
    let mut fd = None;
    while got < header.len() {
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let mut iov = [IoSliceMut::new(&mut header[got..])];
        let msg = recvmsg::<()>(stream.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
            .map_err(io::Error::from)?;
        if msg.bytes == 0 {
            return Err(FrameError::Io(io::Error::new(io::ErrorKind::UnexpectedEof, "the peer closed the socket")));
        }
        for cmsg in msg.cmsgs().map_err(io::Error::from)? {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                for raw in fds {
                    // SAFETY: the kernel just installed `raw` in this process for us; nothing
                    // else owns it.
                    let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                    fd.get_or_insert(owned);
                }
            }
        }
        got += msg.bytes;
    }
    let len = proto::frame_len(header)?;
    scratch.clear();
    scratch.resize(len, 0);
    stream.read_exact(scratch)?;
    Ok((proto::decode(scratch)?, fd))
}
