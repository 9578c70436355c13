//! Index snapshot: placeholder until the snapshot format lands.

use std::path::Path;

use crate::index::Index;
use crate::manifest::Manifest;
use crate::segment::SegmentSet;
use crate::vfs::Vfs;

/// An index loaded from a snapshot, and where replay resumes.
pub struct Loaded {
    /// The index as of the snapshot.
    pub index: Index,
    /// (position in the manifest, offset in that segment) where replay resumes.
    pub resume: (usize, u64),
    /// The last frame sequence number the snapshot covers.
    pub last_frame_seq: u64,
}

/// Load the snapshot of `dir` if it is valid for `manifest`.
pub fn load(_vfs: &dyn Vfs, _dir: &Path, _manifest: &Manifest, _segments: &SegmentSet) -> Option<Loaded> {
    None
}
