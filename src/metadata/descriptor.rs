//! The segment descriptor: the JSON object that tells peers how to reach a segment and which
//! memory it exposes (`wire.md` §3).
//!
//! Encoding follows Mooncake's writer (keys sorted, compact, integers as JSON numbers); decoding
//! follows Mooncake's reader, including its rejections, so that a descriptor we accept is one
//! Mooncake would accept too.

use serde_json::{Map, Value, json};

use super::Error;

/// One registered region as published: the server name, its address and length.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BufferDesc {
    /// For tcp: the server name of the owning engine; for rdma: the memory location
    /// (`"cpu:0"`, `"cuda:1"`), the key of the NIC priority matrix.
    pub name: String,
    /// Absolute virtual address in the owning process.
    pub addr: u64,
    pub length: u64,
    /// rdma: one remote key per device of [`SegmentDescriptor::devices`], in that order.
    pub rkey: Vec<u32>,
    /// rdma: one local key per device (published by Mooncake, unused by peers).
    pub lkey: Vec<u32>,
}

/// One RDMA device of an rdma descriptor (`wire.md` §3.3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceDesc {
    pub name: String,
    pub lid: u16,
    /// 16 bytes as lowercase hex pairs joined by `:`.
    pub gid: String,
}

/// What a libmooncake engine offers beyond Mooncake, under the descriptor key `"libmooncake"`,
/// which Mooncake's reader ignores (it reads only the fields it knows). Only our engines use it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extensions {
    /// Same-host single copy (`transport::shm`): how to attach to this engine's control block.
    pub shm: Option<ShmOffer>,
    /// Our own TCP framing version spoken on the data port besides Mooncake's (0: none).
    pub tcp_framing: u32,
}

/// A target's offer of the same-host path: where its control block is and how to prove it is
/// the same process on the same kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShmOffer {
    /// `/proc/sys/kernel/random/boot_id` of the target's kernel.
    pub boot_id: String,
    /// The target's pid, as the target sees it.
    pub pid: u32,
    /// The file descriptor of its control block (a memfd), opened through `/proc/<pid>/fd/<fd>`.
    pub fd: i32,
    /// Random value also written in the control block's header (hex).
    pub nonce: String,
    /// Address of the control block in the target's address space.
    pub control_addr: u64,
}

impl Extensions {
    fn is_empty(&self) -> bool {
        self.shm.is_none() && self.tcp_framing == 0
    }

    fn to_json(&self) -> Value {
        let mut m = Map::new();
        if let Some(s) = &self.shm {
            m.insert(
                "shm".into(),
                json!({"boot_id": s.boot_id, "pid": s.pid, "fd": s.fd, "nonce": s.nonce, "control_addr": s.control_addr}),
            );
        }
        if self.tcp_framing != 0 {
            m.insert("tcp_framing".into(), Value::from(self.tcp_framing));
        }
        Value::Object(m)
    }

    /// Lenient: anything malformed here is ignored (the peer is then reached the Mooncake way).
    fn from_json(v: Option<&Value>) -> Extensions {
        let Some(v) = v else { return Extensions::default() };
        let shm = v.get("shm").and_then(|s| {
            Some(ShmOffer {
                boot_id: s.get("boot_id")?.as_str()?.to_string(),
                pid: u32::try_from(s.get("pid")?.as_u64()?).ok()?,
                fd: i32::try_from(s.get("fd")?.as_i64()?).ok()?,
                nonce: s.get("nonce")?.as_str()?.to_string(),
                control_addr: s.get("control_addr")?.as_u64()?,
            })
        });
        let tcp_framing = v.get("tcp_framing").and_then(Value::as_u64).and_then(|f| u32::try_from(f).ok()).unwrap_or(0);
        Extensions { shm, tcp_framing }
    }
}

/// A decoded segment descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentDescriptor {
    pub name: String,
    /// `"tcp"`, `"rdma"`, …; a multi-protocol publisher's array is joined with `,`.
    pub protocol: String,
    pub buffers: Vec<BufferDesc>,
    /// Host of the data listener (absent in descriptors of older publishers).
    pub tcp_data_host: Option<String>,
    /// Port of the data listener; 0 when the segment has none.
    pub tcp_data_port: u16,
    /// 2 when the target speaks acknowledged framing; 1 when the field is absent.
    pub tcp_proto_version: i32,
    pub rdma_server_name: String,
    pub timestamp: String,
    /// Our additions (absent from Mooncake's descriptors).
    pub extensions: Extensions,
    /// rdma: the devices whose keys every buffer lists.
    pub devices: Vec<DeviceDesc>,
    /// rdma: the owner's NIC priority matrix (which of its devices serve which location).
    pub priority_matrix: Option<crate::topology::PriorityMatrix>,
}

impl SegmentDescriptor {
    /// True when the segment can be reached by the TCP transport: its protocol is tcp, or it
    /// is one of our engines that serves tcp beside another protocol (our framing offered).
    pub fn speaks_tcp(&self) -> bool {
        self.protocol.split(',').any(|p| p.trim() == "tcp")
            || (self.extensions.tcp_framing != 0 && self.tcp_data_port != 0)
    }

    /// True when the segment publishes RDMA devices and keys.
    pub fn speaks_rdma(&self) -> bool {
        self.protocol.split(',').any(|p| p.trim() == "rdma") && !self.devices.is_empty()
    }

    /// The descriptor as Mooncake writes it, as a JSON value (keys sort when serialised).
    pub fn to_json(&self) -> Value {
        let buffers: Vec<Value> = self
            .buffers
            .iter()
            .map(|b| {
                let mut v = json!({"name": b.name, "addr": b.addr, "length": b.length});
                if !b.rkey.is_empty() || !b.lkey.is_empty() {
                    v["rkey"] = Value::from(b.rkey.clone());
                    v["lkey"] = Value::from(b.lkey.clone());
                }
                v
            })
            .collect();
        let mut m = Map::new();
        if !self.devices.is_empty() {
            let devices: Vec<Value> =
                self.devices.iter().map(|d| json!({"name": d.name, "lid": d.lid, "gid": d.gid})).collect();
            m.insert("devices".into(), Value::from(devices));
        }
        if let Some(matrix) = &self.priority_matrix {
            m.insert("priority_matrix".into(), matrix.to_value());
        }
        m.insert("name".into(), Value::from(self.name.clone()));
        m.insert("protocol".into(), Value::from(self.protocol.clone()));
        m.insert("buffers".into(), Value::from(buffers));
        if let Some(host) = self.tcp_data_host.as_ref().filter(|h| !h.is_empty()) {
            m.insert("tcp_data_host".into(), Value::from(host.clone()));
        }
        m.insert("tcp_data_port".into(), Value::from(self.tcp_data_port));
        m.insert("tcp_proto_version".into(), Value::from(self.tcp_proto_version));
        m.insert("rdma_server_name".into(), Value::from(self.rdma_server_name.clone()));
        m.insert("timestamp".into(), Value::from(self.timestamp.clone()));
        if !self.extensions.is_empty() {
            m.insert("libmooncake".into(), self.extensions.to_json());
        }
        Value::Object(m)
    }

    /// Decodes a descriptor, rejecting what Mooncake's `decodeSegmentDesc` rejects: a buffer
    /// with an empty name or a zero address or length, or a non-integer port.
    pub fn from_json(v: &Value) -> Result<SegmentDescriptor, Error> {
        let bad = |why: String| Error::Malformed(format!("segment descriptor: {why}"));
        let obj = v.as_object().ok_or_else(|| bad(format!("not a JSON object: {}", short(v))))?;
        let name = obj.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
        let protocol = match obj.get("protocol") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","),
            _ => String::new(),
        };
        let mut buffers = Vec::new();
        if let Some(list) = obj.get("buffers") {
            let list = list.as_array().ok_or_else(|| bad("`buffers` is not an array".into()))?;
            for (i, b) in list.iter().enumerate() {
                let bname = b.get("name").and_then(Value::as_str).unwrap_or_default();
                let addr = b.get("addr").and_then(Value::as_u64).unwrap_or(0);
                let length = b.get("length").and_then(Value::as_u64).unwrap_or(0);
                if bname.is_empty() || addr == 0 || length == 0 {
                    return Err(bad(format!("buffer {i} needs a name, a non-zero addr and length")));
                }
                let keys = |k: &str| -> Result<Vec<u32>, Error> {
                    match b.get(k) {
                        None | Some(Value::Null) => Ok(Vec::new()),
                        Some(Value::Array(items)) => items
                            .iter()
                            .map(|x| x.as_u64().and_then(|x| u32::try_from(x).ok()))
                            .collect::<Option<Vec<u32>>>()
                            .ok_or_else(|| bad(format!("buffer {i}: `{k}` is not a list of 32-bit keys"))),
                        Some(_) => Err(bad(format!("buffer {i}: `{k}` is not a list"))),
                    }
                };
                buffers.push(BufferDesc {
                    name: bname.to_string(),
                    addr,
                    length,
                    rkey: keys("rkey")?,
                    lkey: keys("lkey")?,
                });
            }
        }
        let mut devices = Vec::new();
        if let Some(list) = obj.get("devices").and_then(Value::as_array) {
            for (i, d) in list.iter().enumerate() {
                let dname = d.get("name").and_then(Value::as_str).unwrap_or_default();
                let gid = d.get("gid").and_then(Value::as_str).unwrap_or_default();
                let lid = d.get("lid").and_then(Value::as_u64).and_then(|l| u16::try_from(l).ok()).unwrap_or(0);
                if dname.is_empty() || gid.is_empty() {
                    return Err(bad(format!("device {i} needs a name and a gid")));
                }
                devices.push(DeviceDesc { name: dname.to_string(), lid, gid: gid.to_string() });
            }
        }
        let is_rdma = protocol.split(',').any(|p| p.trim() == "rdma");
        if is_rdma {
            for (i, b) in buffers.iter().enumerate() {
                if (!b.rkey.is_empty() || !b.lkey.is_empty())
                    && (b.rkey.len() != b.lkey.len() || b.rkey.len() != devices.len())
                {
                    return Err(bad(format!(
                        "buffer {i} has {} rkeys and {} lkeys for {} devices",
                        b.rkey.len(),
                        b.lkey.len(),
                        devices.len()
                    )));
                }
            }
        }
        let priority_matrix = match obj.get("priority_matrix") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                crate::topology::PriorityMatrix::parse(&v.to_string())
                    .map_err(|e| bad(format!("`priority_matrix`: {e}")))?,
            ),
        };
        let tcp_data_port = match obj.get("tcp_data_port") {
            None | Some(Value::Null) => 0,
            Some(p) => p
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| bad(format!("`tcp_data_port` is not a port number: {p}")))?,
        };
        let tcp_proto_version = match obj.get("tcp_proto_version") {
            None | Some(Value::Null) => 1,
            Some(p) => p
                .as_i64()
                .and_then(|p| i32::try_from(p).ok())
                .ok_or_else(|| bad(format!("`tcp_proto_version` is not an integer: {p}")))?,
        };
        Ok(SegmentDescriptor {
            name,
            protocol,
            buffers,
            tcp_data_host: obj.get("tcp_data_host").and_then(Value::as_str).map(str::to_string),
            tcp_data_port,
            tcp_proto_version,
            rdma_server_name: obj.get("rdma_server_name").and_then(Value::as_str).unwrap_or_default().to_string(),
            timestamp: obj.get("timestamp").and_then(Value::as_str).unwrap_or_default().to_string(),
            extensions: Extensions::from_json(obj.get("libmooncake")),
            devices,
            priority_matrix,
        })
    }
}

/// Local time as Mooncake stamps descriptors: `YYYY-MM-DD HH:MM:SS.uuuuuu`.
pub fn timestamp_now() -> String {
    chrono::Local::now().format("%Y-%m-%d %H:%M:%S%.6f").to_string()
}

/// The first bytes of a JSON value, for error messages.
pub(crate) fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 120 { format!("{}…", &s[..s.floor_char_boundary(120)]) } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wheel_sample() -> Value {
        serde_json::from_str(
            r#"{"buffers":[{"addr":139827900694544,"length":1048576,"name":"127.0.0.1:16591"}],
             "name":"127.0.0.1:16591","protocol":"tcp","rdma_server_name":"",
             "tcp_data_host":"127.0.0.1","tcp_data_port":15909,"tcp_proto_version":2,
             "timestamp":"2026-11-25 11:47:30.202906"}"#,
        )
        .unwrap()
    }

    #[test]
    fn decodes_the_wheels_descriptor_and_reencodes_it_byte_for_byte() {
        let v = wheel_sample();
        let d = SegmentDescriptor::from_json(&v).unwrap();
        assert_eq!(d.tcp_data_port, 15909);
        assert_eq!(d.tcp_proto_version, 2);
        assert_eq!(d.buffers[0].addr, 139827900694544);
        assert!(d.speaks_tcp());
        assert_eq!(d.to_json().to_string(), v.to_string());
    }

    #[test]
    fn missing_version_means_v1_and_missing_host_is_none() {
        let d = SegmentDescriptor::from_json(&json!({"name":"a","protocol":"tcp","tcp_data_port":1})).unwrap();
        assert_eq!(d.tcp_proto_version, 1);
        assert_eq!(d.tcp_data_host, None);
    }

    #[test]
    fn rejects_what_mooncake_rejects() {
        let mut v = wheel_sample();
        v["buffers"][0]["name"] = json!("");
        assert!(SegmentDescriptor::from_json(&v).is_err());
        let mut v = wheel_sample();
        v["buffers"][0]["addr"] = json!(0);
        assert!(SegmentDescriptor::from_json(&v).is_err());
        let mut v = wheel_sample();
        v["tcp_data_port"] = json!("15909");
        assert!(SegmentDescriptor::from_json(&v).is_err());
        assert!(SegmentDescriptor::from_json(&json!(null)).is_err());
    }

    #[test]
    fn extensions_round_trip_and_bad_ones_are_ignored() {
        let mut d = SegmentDescriptor::from_json(&wheel_sample()).unwrap();
        d.extensions.tcp_framing = 1;
        d.extensions.shm =
            Some(ShmOffer { boot_id: "b".into(), pid: 7, fd: 3, nonce: "ab".into(), control_addr: 4096 });
        let back = SegmentDescriptor::from_json(&d.to_json()).unwrap();
        assert_eq!(back, d);
        let mut v = wheel_sample();
        v["libmooncake"] = json!({"shm": {"pid": "x"}, "tcp_framing": -1});
        assert_eq!(SegmentDescriptor::from_json(&v).unwrap().extensions, Extensions::default());
    }

    #[test]
    fn keys_come_out_sorted() {
        let d = SegmentDescriptor::from_json(&wheel_sample()).unwrap();
        let s = d.to_json().to_string();
        let b = s.find("\"buffers\"").unwrap();
        let n = s.find("\"name\":\"127").unwrap();
        let t = s.find("\"timestamp\"").unwrap();
        assert!(b < n && n < t);
    }
}
