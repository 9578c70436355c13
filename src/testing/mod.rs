//! Test support (feature `testing`): the power-loss simulator, the fault injector and the
//! model-based crash harness shared by `tests/` and the fuzz targets.

pub mod concurrent;
mod fault;
pub mod fuzz;
pub mod model;
mod sim;

pub use concurrent::set_op_tag;
pub use fault::{Fault, FaultFs, FaultKind};
pub use sim::SimFs;
