//! Mooncake's TCP transport: a data server that answers Mooncake's protocol (v2 and v1) and
//! initiator lanes that speak it (`wire.md` §4).

pub mod io;
pub mod lane;
pub mod server;
pub mod wire;

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::Arc;

use parking_lot::Mutex;

use lane::PeerLink;
pub use lane::{LaneSettings, PeerAddress};
use server::DataServer;

use super::{Error, LinkInfo, Route, Slice, TargetMemory, Transport};

/// Requests are cut into slices of this size, so that one large request spreads over the lanes
/// (each slice is one Mooncake request: one header, one payload).
pub const TCP_SLICE_SIZE: u64 = 1 << 20;

/// See the module documentation.
pub struct TcpTransport {
    server: Mutex<DataServer>,
    data_port: u16,
    settings: LaneSettings,
    /// Links by peer; `None` once shut down, so that no link can start after `shutdown`.
    links: Mutex<Option<HashMap<PeerAddress, Arc<PeerLink>>>>,
}

impl TcpTransport {
    /// Starts the data server on `listener` (bound by the engine) and prepares lanes.
    pub fn start(
        listener: TcpListener,
        memory: Arc<dyn TargetMemory>,
        settings: LaneSettings,
    ) -> std::io::Result<TcpTransport> {
        let server = DataServer::start(listener, memory, settings.io_timeout)?;
        Ok(TcpTransport {
            data_port: server.port(),
            server: Mutex::new(server),
            settings,
            links: Mutex::new(Some(HashMap::new())),
        })
    }

    /// The port of the data listener, published as `tcp_data_port`.
    pub fn data_port(&self) -> u16 {
        self.data_port
    }

    /// Requests the data server refused since start.
    pub fn refused_requests(&self) -> u64 {
        self.server.lock().refused()
    }

    /// Connections the data server has open.
    pub fn server_connections(&self) -> usize {
        self.server.lock().connections()
    }

    fn link(&self, addr: &PeerAddress) -> Option<Arc<PeerLink>> {
        let mut links = self.links.lock();
        let links = links.as_mut()?;
        Some(links.entry(addr.clone()).or_insert_with(|| Arc::new(PeerLink::new(addr.clone(), self.settings))).clone())
    }
}

impl Transport for TcpTransport {
    fn name(&self) -> &'static str {
        "tcp"
    }

    fn slice_size(&self) -> u64 {
        TCP_SLICE_SIZE
    }

    fn submit(&self, route: &Route, slices: Vec<Slice>) -> Result<(), Error> {
        let Route::Tcp(addr) = route else {
            slices.into_iter().for_each(|s| s.finish(false));
            return Err(Error::WrongRoute("tcp", route.clone()));
        };
        match self.link(addr) {
            Some(link) => {
                link.submit(slices);
                Ok(())
            }
            None => {
                slices.into_iter().for_each(|s| s.finish(false));
                Err(Error::Closed)
            }
        }
    }

    fn links(&self) -> Vec<LinkInfo> {
        self.links.lock().iter().flat_map(|m| m.values()).map(|l| l.info()).collect()
    }

    fn shutdown(&self) {
        let links: Vec<_> = self.links.lock().take().into_iter().flat_map(|m| m.into_values()).collect();
        for l in links {
            l.close();
        }
        self.server.lock().stop();
    }
}
