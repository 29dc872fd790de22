//! Mooncake's NIC priority matrix: for each memory location (`"cpu:0"`, `"cuda:1"`, …) the
//! devices to prefer and the other usable ones, as JSON
//! `{"cpu:0": [["mlx5_0"], ["mlx5_1"]], …}` (`docs/WIRE.md` §3.3).
//!
//! The same text is what `installTransport(…, args)` and `MC_CUSTOM_TOPO_JSON` give, what a
//! segment descriptor's `priority_matrix` holds, and what Python's `get_local_topology`
//! returns. The text out is byte for byte what Mooncake writes (jsoncpp's `toStyledString`:
//! tab indents, `" : "`, keys in byte order, every non-empty array one element per line), so
//! scripts that compare outputs see no difference.

use std::collections::BTreeMap;

use serde_json::Value;

/// The devices of one location.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PriorityEntry {
    pub preferred: Vec<String>,
    pub available: Vec<String>,
}

/// See the module documentation. Keys in byte order, as jsoncpp orders object members.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PriorityMatrix {
    pub entries: BTreeMap<String, PriorityEntry>,
}

/// Why a matrix text was refused (Mooncake's `ERR_MALFORMED_JSON`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed NIC priority matrix: {0}")]
pub struct MalformedMatrix(pub String);

impl PriorityMatrix {
    /// Parses Mooncake's format. Like Mooncake's `Topology::parse`, an empty text is refused
    /// and every member must be an array of exactly two lists; unlike it, those lists must
    /// hold strings (Mooncake would turn a number into its text) and the top level must be an
    /// object, so that a mistake is reported instead of becoming a device name.
    pub fn parse(text: &str) -> Result<PriorityMatrix, MalformedMatrix> {
        if text.trim().is_empty() {
            return Err(MalformedMatrix("the text is empty".into()));
        }
        let root: Value = serde_json::from_str(text).map_err(|e| MalformedMatrix(format!("not JSON: {e}")))?;
        let Value::Object(members) = root else {
            return Err(MalformedMatrix("the top level is not a JSON object".into()));
        };
        let mut entries = BTreeMap::new();
        for (location, value) in members {
            let lists = match &value {
                Value::Array(lists) if lists.len() == 2 => lists,
                _ => {
                    return Err(MalformedMatrix(format!("{location:?} is not [[preferred devices], [other devices]]")));
                }
            };
            let names = |i: usize| -> Result<Vec<String>, MalformedMatrix> {
                let bad = || MalformedMatrix(format!("{location:?}[{i}] is not a list of device names"));
                let Value::Array(items) = &lists[i] else { return Err(bad()) };
                items.iter().map(|d| d.as_str().map(String::from).ok_or_else(bad)).collect()
            };
            entries.insert(location.clone(), PriorityEntry { preferred: names(0)?, available: names(1)? });
        }
        Ok(PriorityMatrix { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Drops every device `keep` refuses from every location's lists; locations stay, maybe
    /// with empty lists (Mooncake's `Topology::disableDevice`).
    pub fn retain_devices(&mut self, keep: impl Fn(&str) -> bool) {
        for e in self.entries.values_mut() {
            e.preferred.retain(|d| keep(d));
            e.available.retain(|d| keep(d));
        }
    }

    /// Every device the matrix names, each once, in Mooncake's order (`Topology::resolve`:
    /// location by location, preferred before available). An RDMA transport numbers devices
    /// by their place here.
    pub fn devices(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for e in self.entries.values() {
            for d in e.preferred.iter().chain(&e.available) {
                if !out.contains(d) {
                    out.push(d.clone());
                }
            }
        }
        out
    }

    /// The matrix as a JSON value (for a descriptor's `priority_matrix`).
    pub fn to_value(&self) -> Value {
        let map =
            self.entries.iter().map(|(k, e)| (k.clone(), serde_json::json!([e.preferred, e.available]))).collect();
        Value::Object(map)
    }

    /// The text Mooncake's `Topology::toString` writes, ending in a newline.
    pub fn to_styled_string(&self) -> String {
        if self.entries.is_empty() {
            return "{}\n".into();
        }
        let mut out = String::from("{");
        for (i, (location, e)) in self.entries.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("\n\t");
            out.push_str(&quote(location));
            out.push_str(" : \n\t[");
            for (j, list) in [&e.preferred, &e.available].into_iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                out.push_str("\n\t\t");
                if list.is_empty() {
                    out.push_str("[]");
                    continue;
                }
                out.push('[');
                for (k, name) in list.iter().enumerate() {
                    if k > 0 {
                        out.push(',');
                    }
                    out.push_str("\n\t\t\t");
                    out.push_str(&quote(name));
                }
                out.push_str("\n\t\t]");
            }
            out.push_str("\n\t]");
        }
        out.push_str("\n}\n");
        out
    }
}

/// A JSON string as jsoncpp writes it by default: ASCII only (`\uXXXX` beyond, in UTF-16).
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(p: &[&str], a: &[&str]) -> PriorityEntry {
        PriorityEntry {
            preferred: p.iter().map(|s| s.to_string()).collect(),
            available: a.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn the_text_is_what_the_wheel_prints() {
        // Mooncake 0.3.13's wheel on a one-node host without RDMA devices.
        let m = PriorityMatrix { entries: [("cpu:0".to_string(), entry(&[], &[]))].into() };
        assert_eq!(m.to_styled_string(), "{\n\t\"cpu:0\" : \n\t[\n\t\t[],\n\t\t[]\n\t]\n}\n");
        assert_eq!(PriorityMatrix::default().to_styled_string(), "{}\n");
        let m = PriorityMatrix {
            entries: [
                ("cpu:0".to_string(), entry(&["mlx5_0"], &["mlx5_1", "rxe0"])),
                ("cpu:1".to_string(), entry(&["mlx5_1"], &[])),
            ]
            .into(),
        };
        let want = "{\n\t\"cpu:0\" : \n\t[\n\t\t[\n\t\t\t\"mlx5_0\"\n\t\t],\n\t\t[\n\t\t\t\"mlx5_1\",\n\t\t\t\"rxe0\"\n\t\t]\n\t],\
                    \n\t\"cpu:1\" : \n\t[\n\t\t[\n\t\t\t\"mlx5_1\"\n\t\t],\n\t\t[]\n\t]\n}\n";
        assert_eq!(m.to_styled_string(), want);
        assert_eq!(PriorityMatrix::parse(want).unwrap(), m);
        assert_eq!(m.devices(), ["mlx5_0", "mlx5_1", "rxe0"]);
        let mut kept = m.clone();
        kept.retain_devices(|d| d != "mlx5_1");
        assert_eq!(kept.entries["cpu:0"], entry(&["mlx5_0"], &["rxe0"]));
        assert_eq!(kept.entries["cpu:1"], entry(&[], &[]), "the location stays");
    }

    #[test]
    fn keys_are_in_byte_order_like_jsoncpp() {
        let m = PriorityMatrix::parse(r#"{"cpu:2": [[], []], "cpu:10": [[], []], "cpu:1": [[], []]}"#).unwrap();
        let keys: Vec<&str> = m.entries.keys().map(String::as_str).collect();
        assert_eq!(keys, ["cpu:1", "cpu:10", "cpu:2"]);
    }

    #[test]
    fn malformed_texts_say_what_is_wrong() {
        for (text, why) in [
            ("", "empty"),
            ("  \n", "empty"),
            ("{\"cpu:0\": [[], []]", "not JSON"),
            ("[]", "not a JSON object"),
            ("null", "not a JSON object"),
            (r#"{"cpu:0": [["mlx5_0"]]}"#, r#""cpu:0" is not"#),
            (r#"{"cpu:0": [[], [], []]}"#, r#""cpu:0" is not"#),
            (r#"{"cpu:0": "mlx5_0"}"#, r#""cpu:0" is not"#),
            (r#"{"cpu:0": [[1], []]}"#, r#""cpu:0"[0] is not a list"#),
            (r#"{"cpu:0": [[], "mlx5_0"]}"#, r#""cpu:0"[1] is not a list"#),
        ] {
            let e = PriorityMatrix::parse(text).expect_err(text);
            assert!(e.to_string().contains(why), "{text:?}: {e}");
        }
        assert!(PriorityMatrix::parse("{}").unwrap().is_empty(), "an empty object is an empty matrix");
    }

    #[test]
    fn strings_are_escaped_as_jsoncpp_does() {
        assert_eq!(quote("a\"b\\c\n\u{1}é😀"), "\"a\\\"b\\\\c\\n\\u0001\\u00e9\\ud83d\\ude00\"");
        assert_eq!(quote("/"), "\"/\"");
    }

    proptest! {
        #[test]
        fn styled_text_parses_back(
            m in proptest::collection::btree_map(
                "[a-z:0-9\u{e9}\"]{1,8}",
                (proptest::collection::vec("[a-z_0-9\\\\]{1,8}", 0..4), proptest::collection::vec("[a-z_0-9]{1,8}", 0..4)),
                0..5,
            )
        ) {
            let m = PriorityMatrix {
                entries: m.into_iter().map(|(k, (p, a))| (k, PriorityEntry { preferred: p, available: a })).collect(),
            };
            let text = m.to_styled_string();
            prop_assert_eq!(PriorityMatrix::parse(&text).unwrap(), m.clone());
            let compact = serde_json::to_string(&m.to_value()).unwrap();
            prop_assert_eq!(PriorityMatrix::parse(&compact).unwrap(), m);
        }
    }
}
