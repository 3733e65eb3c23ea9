//! The bottom layer: what every other layer uses and which names none of
//! them. Text made safe for terminals and logs, content digests, bounded
//! file reads, "did you mean", JSON Schema generation, and keeping the
//! heap from holding freed memory.

pub mod digest;
pub(crate) mod files;
pub(crate) mod heap;
pub(crate) mod schema;
pub(crate) mod suggest;
pub(crate) mod text;
