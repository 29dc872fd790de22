//! Mooncake's NIC priority matrix JSON (`src/topology/matrix.rs`): from `installTransport`'s
//! argument, `MC_CUSTOM_TOPO_JSON` or a peer's descriptor. A matrix that parses writes text
//! (Mooncake's styled form, and the compact value) that parses to the same matrix.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mooncake::topology::PriorityMatrix;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(m) = PriorityMatrix::parse(text) else { return };
    let styled = m.to_styled_string();
    assert!(styled.ends_with('\n'));
    assert_eq!(PriorityMatrix::parse(&styled).expect("the styled text parses"), m);
    assert_eq!(PriorityMatrix::parse(&m.to_value().to_string()).expect("the value parses"), m);
    let devices = m.devices();
    for (i, d) in devices.iter().enumerate() {
        assert!(!devices[..i].contains(d), "each device once");
    }
    let mut kept = m.clone();
    kept.retain_devices(|d| d.len() % 2 == 0);
    assert!(kept.devices().iter().all(|d| d.len() % 2 == 0));
});
