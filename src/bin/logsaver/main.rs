//! The `logsaver` command line.
fn main() {}
