//! Writes the seed corpus of the fuzz targets into `fuzz/corpus/<target>/`:
//! `cargo run --release --features testing --example make_fuzz_corpus`.

use std::fs;
use std::path::Path;

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for (target, name, bytes) in logsaver::testing::fuzz::seed_corpus() {
        let dir = root.join(target);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join(format!("seed-{name}")), bytes)?;
    }
    println!("seed corpus written to {}", root.display());
    Ok(())
}
