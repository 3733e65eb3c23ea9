//! The snapshot parser on arbitrary bytes: an error or a snapshot, never a
//! panic; and a parsed snapshot serialises and parses back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::snapshot::Snapshot;

fuzz_target!(|data: &[u8]| {
    if let Ok(snapshot) = Snapshot::from_json(data) {
        let again = serde_json::to_vec(&snapshot).expect("a parsed snapshot serialises");
        let back = Snapshot::from_json(&again).expect("a serialised snapshot parses");
        assert_eq!(
            serde_json::to_vec(&back).expect("serialises"),
            again,
            "round trip changed the snapshot"
        );
    }
});
