//! Test support (feature `testing`): the power-loss simulator, the fault injector and the
//! model-based crash harness shared by `tests/` and the fuzz targets.

pub mod concurrent;
mod fault;
pub mod fuzz;
pub mod model;
mod sim;

pub use concurrent::set_op_tag;

/// The value encoders, for `benches/values.rs`: the copy/insert delta and the per-payload codec.
pub mod values {
    pub use crate::codec::{Codec, pack, unpack};
    pub use crate::delta::{apply as apply_delta, encode as encode_delta};
}
pub use fault::{Fault, FaultFs, FaultKind};
pub use sim::SimFs;

/// A tiny deterministic generator (xorshift) for the simulators and harnesses.
#[derive(Clone, Debug)]
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    /// The next value.
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value below `n`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
