//! Frames over the dummy's unix socket (the master protocol's framing, `crate::proto`), with an
//! optional memfd attached: a frame is sent in one piece so that the fd travels with its first
//! bytes, and its header is read by [`fd_passing::receive`], which collects the fd.
//!
//! The body is read as the master protocol's is ([`proto::read_body`]): the announced length is
//! checked against `MAX_FRAME` and the buffer grows only with the bytes received, so a dummy
//! announcing 64 MiB and sending one byte costs its server one 64 KiB chunk.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::proto::{self, Envelope, FrameError};
use crate::sys::fd_passing;

/// Writes one frame, with `fd` attached when given.
pub fn send<T: Serialize>(
    stream: &UnixStream,
    envelope: &Envelope<T>,
    fd: Option<BorrowedFd<'_>>,
    scratch: &mut Vec<u8>,
) -> Result<(), FrameError> {
    scratch.clear();
    proto::encode(envelope, scratch)?;
    Ok(fd_passing::send(stream, scratch, fd)?)
}

/// Reads one frame and the fd that came with it, if any.
pub fn receive<T: DeserializeOwned>(
    stream: &mut UnixStream,
    scratch: &mut Vec<u8>,
) -> Result<(Envelope<T>, Option<OwnedFd>), FrameError> {
    let mut header = [0u8; 4];
    let fd = fd_passing::receive(stream, &mut header)?;
    let len = proto::frame_len(header)?;
    proto::read_body(stream, len, scratch)?;
    Ok((proto::decode(scratch)?, fd))
}
