//! The snapshot parser on arbitrary bytes: an error or a snapshot, never a
//! panic; and a parsed snapshot written back as JSON v1 parses to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::snapshot::Snapshot;

fuzz_target!(|data: &[u8]| {
    if let Ok(snapshot) = Snapshot::from_json(data) {
        let again = serde_json::to_vec(&snapshot.to_json_v1()).expect("serialises");
        let back = Snapshot::from_json(&again).expect("a written snapshot parses");
        assert_eq!(back, snapshot, "the v1 round trip changed the snapshot");
    }
});
