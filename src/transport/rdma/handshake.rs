//! Mooncake's RDMA connection exchange (handshake type 0, `wire.md` §2.4): each side sends
//! its NIC path, LID, GID and queue pair numbers; a non-empty `reply_msg` is a refusal.
//!
//! We speak the form without `ready_ack`: Mooncake's side then marks the endpoint connected
//! as soon as it answers (its legacy path), and ours does too. Our engines add
//! `libmooncake_mtu` (the sender's largest path MTU) so that two of ours agree on the smaller;
//! Mooncake ignores unknown members, and towards it we use our own port's MTU, as it does.

use serde_json::{Value, json};

/// One side of the exchange.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionDesc {
    pub local_nic_path: String,
    pub peer_nic_path: String,
    pub local_lid: u16,
    pub local_gid: String,
    pub qp_num: Vec<u32>,
    pub reply_msg: String,
    /// Present in a Mooncake request that supports its ready acknowledgement.
    pub ready_ack: Option<bool>,
    /// Ours only: the sender's largest path MTU in bytes.
    pub mtu: Option<u32>,
}

impl ConnectionDesc {
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "local_nic_path": self.local_nic_path,
            "peer_nic_path": self.peer_nic_path,
            "local_lid": self.local_lid,
            "local_gid": self.local_gid,
            "qp_num": self.qp_num,
            "reply_msg": self.reply_msg,
            "payload": "",
        });
        if let Some(mtu) = self.mtu {
            v["libmooncake_mtu"] = Value::from(mtu);
        }
        if let Some(ack) = self.ready_ack {
            v["ready_ack"] = Value::from(ack);
        }
        v
    }

    /// Reads what Mooncake's `decode` reads; wrong types count as absent, as jsoncpp's
    /// accessors make them.
    pub fn from_json(v: &Value) -> Result<ConnectionDesc, String> {
        if !v.is_object() {
            return Err(format!("connection request is not a JSON object: {}", crate::metadata::descriptor::short(v)));
        }
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        let qp_num = match v.get("qp_num") {
            Some(Value::Array(items)) => items
                .iter()
                .map(|q| q.as_u64().and_then(|q| u32::try_from(q).ok()))
                .collect::<Option<Vec<u32>>>()
                .ok_or("`qp_num` holds something other than 32-bit numbers")?,
            _ => Vec::new(),
        };
        Ok(ConnectionDesc {
            local_nic_path: s("local_nic_path"),
            peer_nic_path: s("peer_nic_path"),
            local_lid: v.get("local_lid").and_then(Value::as_u64).and_then(|l| u16::try_from(l).ok()).unwrap_or(0),
            local_gid: s("local_gid"),
            qp_num,
            reply_msg: s("reply_msg"),
            ready_ack: v.get("ready_ack").map(|a| a.as_bool().unwrap_or(false)),
            mtu: v.get("libmooncake_mtu").and_then(Value::as_u64).and_then(|m| u32::try_from(m).ok()),
        })
    }

    /// A refusal carrying `why`.
    pub fn refusal(why: impl Into<String>) -> ConnectionDesc {
        ConnectionDesc { reply_msg: why.into(), ..ConnectionDesc::default() }
    }
}

/// The device part of a NIC path `"<server>@<device>"` (after the last `@`).
pub fn device_of(nic_path: &str) -> Option<&str> {
    nic_path.rsplit_once('@').map(|(_, d)| d).filter(|d| !d.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reads_mooncake_fields() {
        let d = ConnectionDesc {
            local_nic_path: "a:1@rxe0".into(),
            peer_nic_path: "b:2@rxe1".into(),
            local_lid: 0,
            local_gid: "00:00".into(),
            qp_num: vec![17, 18],
            mtu: Some(1024),
            ..Default::default()
        };
        assert_eq!(ConnectionDesc::from_json(&d.to_json()).unwrap(), d);
        let m = serde_json::json!({"local_nic_path":"x@mlx5_0","peer_nic_path":"y@mlx5_1","local_lid":7,
            "local_gid":"fe:80","qp_num":[1,2],"reply_msg":"","payload":"","ready_ack":false});
        let d = ConnectionDesc::from_json(&m).unwrap();
        assert_eq!((d.local_lid, d.ready_ack, d.mtu), (7, Some(false), None));
        assert!(!d.to_json().to_string().contains("libmooncake"));
        assert!(ConnectionDesc::from_json(&serde_json::json!({"qp_num":[-1]})).is_err());
        assert!(ConnectionDesc::from_json(&serde_json::json!([])).is_err());
        assert_eq!(device_of("h:1@rxe0"), Some("rxe0"));
        assert_eq!(device_of("a@b@rxe1"), Some("rxe1"));
        assert_eq!(device_of("nodevice"), None);
        assert_eq!(device_of("h@"), None);
    }
}
