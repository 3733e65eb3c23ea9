//! Host-side bindings generated from `wit/`, one `bindgen!` for the package.

wasmtime::component::bindgen!({
    world: "gate",
    path: "../wit",
    with: {
        "tollgate:plugin/snapshot.snapshot": super::host::SnapshotHandle,
    },
    imports: { default: trappable },
    additional_derives: [PartialEq],
});
