//! Connecting endpoints through the handshake port: actively (our first work towards a peer
//! NIC) and passively (a peer's type-0 request, answered by the handshake server).

use std::sync::Arc;

use serde_json::Value;

use super::endpoint::State;
use super::handshake::{ConnectionDesc, device_of};
use super::path::{Core, Ep};
use super::peer::RdmaPeer;
use super::verbs::{gid_to_string, parse_gid};
use crate::metadata::handshake::{FrameType, request};

/// Runs the handshake of a new endpoint towards the peer's device `ri`, connects its queue
/// pairs and posts its queued work; on failure the endpoint is closed and its work retried.
pub(crate) fn active(core: &Arc<Core>, ep: &Arc<Ep>, peer: &Arc<RdmaPeer>, ri: usize) {
    let d = &ep.device;
    let mtu = d.active_mtu.min(core.settings.mtu);
    let ours = ConnectionDesc {
        local_nic_path: ep.local_nic_path.clone(),
        peer_nic_path: ep.peer_nic_path.clone(),
        local_lid: d.lid,
        local_gid: gid_to_string(&d.gid),
        qp_num: ep.qp_numbers(),
        mtu: Some(mtu),
        ..ConnectionDesc::default()
    };
    let (host, port) = (&peer.rpc.0, peer.rpc.1);
    let reply = core.runtime.block_on(request(host, port, FrameType::Connection, &ours.to_json(), core.limits));
    let result = match reply {
        Err(e) => Err(format!("handshake with {} at {host}:{port} failed: {e}", ep.peer_nic_path)),
        Ok(v) => ConnectionDesc::from_json(&v).and_then(|theirs| {
            if !theirs.reply_msg.is_empty() {
                return Err(format!("{} refused the connection: {}", ep.peer_nic_path, theirs.reply_msg));
            }
            // Mooncake answers with its own GID and LID; without them, the descriptor's.
            let (gid, lid) = match parse_gid(&theirs.local_gid) {
                Some(g) => (g, theirs.local_lid),
                None => (peer.devices[ri].gid, peer.devices[ri].lid),
            };
            let path_mtu = mtu.min(theirs.mtu.unwrap_or(u32::MAX));
            ep.with_state(|state, _| match state {
                State::Connected(qps) if *qps == theirs.qp_num => Ok(()),
                State::Connecting => {
                    ep.connect(&gid, lid, &theirs.qp_num, path_mtu)?;
                    *state = State::Connected(theirs.qp_num.clone());
                    Ok(())
                }
                other => Err(format!("endpoint {} is {other:?} after the handshake", ep.peer_nic_path)),
            })
        }),
    };
    match result {
        Ok(()) => {
            tracing::debug!(device = %d.name, peer = %ep.peer_nic_path, qps = ?ep.qp_numbers(), "RDMA endpoint connected");
            core.post_pending(ep);
        }
        Err(why) => {
            tracing::warn!(device = %d.name, peer = %ep.peer_nic_path, "{why}");
            core.fail_endpoint(ep, &why);
        }
    }
}

/// Answers a peer's type-0 request (Mooncake's `onSetupRdmaConnections` and
/// `setupConnectionsByPassive`): connects an endpoint of the device it names to its queue
/// pairs and replies with ours. A refusal carries `reply_msg` and is logged.
pub(crate) fn passive(core: &Arc<Core>, request: &Value) -> Value {
    match passive_inner(core, request) {
        Ok(reply) => reply.to_json(),
        Err(why) => {
            tracing::warn!("RDMA connection request refused: {why}");
            ConnectionDesc::refusal(why).to_json()
        }
    }
}

fn passive_inner(core: &Arc<Core>, request: &Value) -> Result<ConnectionDesc, String> {
    let theirs = ConnectionDesc::from_json(request)?;
    let device = device_of(&theirs.peer_nic_path)
        .ok_or_else(|| format!("invalid peer_nic_path in handshake: {:?}", theirs.peer_nic_path))?;
    let li = core
        .nics
        .iter()
        .position(|n| n.device.name == device)
        .ok_or_else(|| format!("local RDMA context not found for handshake NIC {device}"))?;
    let d = core.nics[li].device.clone();
    if device_of(&theirs.local_nic_path).is_none() {
        return Err(format!("invalid local_nic_path in handshake: {:?}", theirs.local_nic_path));
    }
    let key = (li, theirs.local_nic_path.clone());
    let mtu = d.active_mtu.min(core.settings.mtu);
    let reply = |ep: &Ep| ConnectionDesc {
        // Named as the peer named us, which is what Mooncake's initiator checks.
        local_nic_path: theirs.peer_nic_path.clone(),
        peer_nic_path: theirs.local_nic_path.clone(),
        local_lid: d.lid,
        local_gid: gid_to_string(&d.gid),
        qp_num: ep.qp_numbers(),
        mtu: Some(mtu),
        ..ConnectionDesc::default()
    };
    let existing = core.endpoints.lock().get(&key).cloned();
    if theirs.ready_ack == Some(true) {
        return match existing {
            Some(ep) if ep.state() == State::Connected(theirs.qp_num.clone()) => Ok(reply(&ep)),
            _ => Err(format!("ready acknowledgement from {} for no connected endpoint", theirs.local_nic_path)),
        };
    }
    let gid = parse_gid(&theirs.local_gid).ok_or_else(|| format!("invalid peer GID {:?}", theirs.local_gid))?;
    let path_mtu = mtu.min(theirs.mtu.unwrap_or(u32::MAX));
    if let Some(ep) = existing {
        let outcome = ep.with_state(|state, _| match state {
            State::Connected(qps) if *qps == theirs.qp_num => Some(Ok(())),
            // Both sides opened at once: connect ours to theirs now; our own handshake will
            // find the endpoint connected to the queue pairs it is told about.
            State::Connecting => Some(ep.connect(&gid, theirs.local_lid, &theirs.qp_num, path_mtu).map(|()| {
                *state = State::Connected(theirs.qp_num.clone());
            })),
            _ => None,
        });
        match outcome {
            Some(Ok(())) => {
                core.post_pending(&ep);
                return Ok(reply(&ep));
            }
            Some(Err(e)) => {
                core.fail_endpoint(&ep, &e);
                return Err(e);
            }
            // Connected to other queue pairs (the peer restarted) or failed: replace it.
            None => core.fail_endpoint(&ep, &format!("{} connected again", theirs.local_nic_path)),
        }
    }
    let local_nic = format!("{}@{}", core.server_name, d.name);
    let ep = Arc::new(Ep::create(
        &d,
        local_nic,
        theirs.local_nic_path.clone(),
        core.settings.qps_per_endpoint,
        d.max_qp_wr,
    )?);
    ep.connect(&gid, theirs.local_lid, &theirs.qp_num, path_mtu)?;
    ep.with_state(|state, _| *state = State::Connected(theirs.qp_num.clone()));
    core.endpoints.lock().insert(key, ep.clone());
    tracing::debug!(device = %d.name, peer = %theirs.local_nic_path, "RDMA endpoint accepted");
    Ok(reply(&ep))
}
