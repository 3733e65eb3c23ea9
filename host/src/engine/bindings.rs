//! Host-side bindings generated from `wit/`: one `bindgen!` per world. The
//! trigger and action worlds reuse the gate world's shared interfaces, so a
//! snapshot, a config or a log line has one Rust type.

pub(crate) mod gate {
    wasmtime::component::bindgen!({
        world: "gate",
        path: "../wit",
        with: {
            "tollgate:plugin/snapshot.snapshot": crate::engine::handle::SnapshotHandle,
        },
        imports: { default: trappable },
        additional_derives: [PartialEq],
    });
}

pub(crate) mod trigger {
    wasmtime::component::bindgen!({
        world: "trigger",
        path: "../wit",
        with: {
            "tollgate:plugin/types": super::gate::tollgate::plugin::types,
            "tollgate:plugin/snapshot": super::gate::tollgate::plugin::snapshot,
            "tollgate:plugin/host": super::gate::tollgate::plugin::host,
        },
        imports: { default: trappable },
        additional_derives: [PartialEq],
    });
}

pub(crate) mod action {
    wasmtime::component::bindgen!({
        world: "action",
        path: "../wit",
        with: {
            "tollgate:plugin/types": super::gate::tollgate::plugin::types,
            "tollgate:plugin/snapshot": super::gate::tollgate::plugin::snapshot,
            "tollgate:plugin/host": super::gate::tollgate::plugin::host,
        },
        imports: { default: trappable },
        additional_derives: [PartialEq],
    });
}

pub(crate) mod source {
    wasmtime::component::bindgen!({
        world: "source",
        path: "../wit",
        with: {
            "tollgate:plugin/types": super::gate::tollgate::plugin::types,
            "tollgate:plugin/host": super::gate::tollgate::plugin::host,
        },
        imports: { default: trappable },
        additional_derives: [PartialEq],
    });
}

pub(crate) use gate::tollgate::plugin::{host, snapshot, types};
