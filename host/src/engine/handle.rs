//! The host object behind a plugin's `snapshot` resource. It sits apart
//! from the host functions so the generated bindings, which name it, and
//! the host functions, which implement the bindings, do not name each other.

use std::sync::Arc;

use crate::snapshot::Snapshot;

/// The host object behind a plugin's `snapshot` handle: the evaluation's
/// snapshot, shared, never copied into the guest whole.
pub struct SnapshotHandle(pub(super) Arc<Snapshot>);
