//! The byte layout of segment files: segment header, batch frames and records.
//!
//! Every integer is explicit little-endian. See `docs/design.md` for the tables. Checks run in
//! this order so nothing is allocated or decoded from unchecked bytes: frame header CRC (which
//! covers the payload length) → payload bounds → payload CRC → record headers → record CRCs →
//! postcard decode.

use crc32fast::Hasher;

/// First 8 bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"LOGSAVR\0";
/// Version of the on-disk format this build writes. Version 2 added the [`RecordKind::Value`]
/// and [`RecordKind::PackedCheckpoint`] records; a segment of version 1 holds only the kinds
/// before them and is read as it is. The rule (docs/design.md): a build reads every version up
/// to its own and refuses a newer one, and a version only ever adds record kinds.
pub const FORMAT_VERSION: u32 = 2;
/// The oldest format version this build reads.
pub const OLDEST_FORMAT_VERSION: u32 = 1;
/// Bytes of the segment header; the first frame starts here.
pub const SEGMENT_HEADER_LEN: usize = 64;
/// Bytes of a batch frame header.
pub const FRAME_HEADER_LEN: usize = 32;
/// Bytes of a record header inside a frame's payload.
pub const RECORD_HEADER_LEN: usize = 12;
/// Frames start at offsets that are multiples of this, so recovery can search for the next
/// valid frame after damage.
pub const FRAME_ALIGN: u64 = 8;

/// A CRC32 hasher seeded with the segment's sequence number: bytes written to another segment
/// (an older file, a recycled one) never validate in this one.
pub fn salted_hasher(seq: u64) -> Hasher {
    let mut hasher = Hasher::new();
    hasher.update(&seq.to_le_bytes());
    hasher
}

/// Round `offset` up to the frame alignment.
pub fn align_up(offset: u64) -> u64 {
    offset.div_ceil(FRAME_ALIGN) * FRAME_ALIGN
}

/// The little-endian `u32` at `at` in a fixed-size header; callers pass constant field offsets.
fn le_u32<const N: usize>(bytes: &[u8; N], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

/// The little-endian `u64` at `at` in a fixed-size header; callers pass constant field offsets.
fn le_u64<const N: usize>(bytes: &[u8; N], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// The header at the start of every segment file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Sequence number: segments are replayed in this order. Also salts every CRC in the file.
    pub seq: u64,
    /// Bytes preallocated for the file when it was created.
    pub capacity: u64,
    /// Creation time, milliseconds since the Unix epoch (informational).
    pub created_unix_ms: u64,
}

impl SegmentHeader {
    /// The 64 header bytes.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut bytes = [0u8; SEGMENT_HEADER_LEN];
        bytes[0..8].copy_from_slice(&SEGMENT_MAGIC);
        bytes[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        #[expect(clippy::cast_possible_truncation, reason = "SEGMENT_HEADER_LEN is the constant 64")]
        bytes[12..16].copy_from_slice(&(SEGMENT_HEADER_LEN as u32).to_le_bytes());
        bytes[16..24].copy_from_slice(&self.seq.to_le_bytes());
        bytes[24..32].copy_from_slice(&self.capacity.to_le_bytes());
        bytes[32..40].copy_from_slice(&self.created_unix_ms.to_le_bytes());
        let crc = crc32fast::hash(&bytes[0..60]);
        bytes[60..64].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// Parse and check a segment header; the error says which check failed.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let Some(header) = bytes.first_chunk::<SEGMENT_HEADER_LEN>() else {
            return Err(format!("file is {} bytes, shorter than the {SEGMENT_HEADER_LEN}-byte header", bytes.len()));
        };
        if header[0..8] != SEGMENT_MAGIC {
            return Err("bad magic: not a logsaver segment".into());
        }
        let crc = le_u32(header, 60);
        if crc != crc32fast::hash(&header[0..60]) {
            return Err("segment header checksum mismatch".into());
        }
        let version = le_u32(header, 8);
        if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(format!(
                "format version {version}, this build reads versions {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION}"
            ));
        }
        if le_u32(header, 12) as usize != SEGMENT_HEADER_LEN {
            return Err("unexpected header length".into());
        }
        Ok(SegmentHeader { seq: le_u64(header, 16), capacity: le_u64(header, 24), created_unix_ms: le_u64(header, 32) })
    }
}

/// The header of a batch frame: one group commit's records, valid or invalid as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Bytes of records after this header.
    pub payload_len: u32,
    /// Number of records in the payload.
    pub record_count: u32,
    /// Position of this frame in the log: +1 per frame within a segment, increasing across
    /// segments. A duplicated or replayed frame is out of sequence and rejected.
    pub frame_seq: u64,
    /// Segment offset up to which the file was known durable (fdatasync'ed) when this frame was
    /// written. Recovery uses it to tell a torn unsynced tail from damage to synced data.
    pub synced_upto: u64,
    /// Salted CRC32 of the payload.
    pub payload_crc: u32,
}

/// What a frame header slot holds.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameSlot {
    /// All zero bytes: nothing was written here (the preallocated tail).
    Empty,
    /// A header whose checksum verifies.
    Frame(FrameHeader),
    /// Bytes that are not a valid header.
    Invalid,
}

impl FrameHeader {
    /// The 32 header bytes for a frame in segment `seq`.
    pub fn encode(&self, seq: u64) -> [u8; FRAME_HEADER_LEN] {
        let mut bytes = [0u8; FRAME_HEADER_LEN];
        bytes[0..4].copy_from_slice(&self.payload_len.to_le_bytes());
        bytes[4..8].copy_from_slice(&self.record_count.to_le_bytes());
        bytes[8..16].copy_from_slice(&self.frame_seq.to_le_bytes());
        bytes[16..24].copy_from_slice(&self.synced_upto.to_le_bytes());
        bytes[24..28].copy_from_slice(&self.payload_crc.to_le_bytes());
        let mut hasher = salted_hasher(seq);
        hasher.update(&bytes[0..28]);
        bytes[28..32].copy_from_slice(&hasher.finalize().to_le_bytes());
        bytes
    }

    /// Read the header slot at the start of `bytes` (at least [`FRAME_HEADER_LEN`] long).
    pub fn decode(bytes: &[u8], seq: u64) -> FrameSlot {
        let Some(slot) = bytes.first_chunk::<FRAME_HEADER_LEN>() else { return FrameSlot::Invalid };
        if slot.iter().all(|&b| b == 0) {
            return FrameSlot::Empty;
        }
        let mut hasher = salted_hasher(seq);
        hasher.update(&slot[0..28]);
        if hasher.finalize() != le_u32(slot, 28) {
            return FrameSlot::Invalid;
        }
        FrameSlot::Frame(FrameHeader {
            payload_len: le_u32(slot, 0),
            record_count: le_u32(slot, 4),
            frame_seq: le_u64(slot, 8),
            synced_upto: le_u64(slot, 16),
            payload_crc: le_u32(slot, 24),
        })
    }

    /// Bytes from the start of this frame to the start of the next one.
    pub fn span(&self) -> u64 {
        align_up((FRAME_HEADER_LEN + self.payload_len as usize) as u64)
    }
}

/// Zero bytes to pad a frame to the alignment.
#[expect(clippy::cast_possible_truncation, reason = "FRAME_ALIGN is the constant 8")]
const PADDING: [u8; FRAME_ALIGN as usize] = [0; FRAME_ALIGN as usize];

/// A frame ready to be written: header, payload, zero padding. The one frame encoder: the commit
/// path (a group's batches as the payload) and compaction (copied records) both build frames
/// with it.
pub struct EncodedFrame<'a> {
    header: [u8; FRAME_HEADER_LEN],
    payload: &'a [&'a [u8]],
    padding: usize,
}

impl<'a> EncodedFrame<'a> {
    /// Encode `header` for segment `seq` over `payload`, whose bytes its `payload_len` and
    /// `payload_crc` describe.
    pub fn new(header: &FrameHeader, seq: u64, payload: &'a [&'a [u8]]) -> Self {
        debug_assert_eq!(payload.iter().map(|p| p.len()).sum::<usize>(), header.payload_len as usize);
        let unpadded = FRAME_HEADER_LEN as u64 + u64::from(header.payload_len);
        let padding = usize::try_from(header.span() - unpadded).unwrap_or(0);
        EncodedFrame { header: header.encode(seq), payload, padding }
    }

    /// Bytes the frame occupies, padding included.
    pub fn span(&self) -> u64 {
        (FRAME_HEADER_LEN + self.payload.iter().map(|p| p.len()).sum::<usize>() + self.padding) as u64
    }

    /// The frame's bytes in order.
    pub fn pieces(&self) -> impl Iterator<Item = &[u8]> {
        std::iter::once(&self.header[..])
            .chain(self.payload.iter().copied())
            .chain(std::iter::once(PADDING.get(..self.padding).unwrap_or_default()))
    }

    /// The frame in one buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(usize::try_from(self.span()).unwrap_or(0));
        self.pieces().for_each(|piece| bytes.extend_from_slice(piece));
        bytes
    }
}

/// What a [`FrameScanner`] found at its position.
#[derive(Debug)]
pub enum Scanned<'a> {
    /// A whole valid frame (header, payload and every record check) at `offset`.
    Frame {
        /// Where it starts.
        offset: u64,
        /// Its header.
        header: FrameHeader,
        /// Its records, with their offsets relative to `offset`.
        records: Vec<(usize, RecordView<'a>)>,
    },
    /// Bytes at `offset` that are not a valid frame, with no valid frame being absent after them
    /// (that would be the end). The scanner stays at `offset` until [`FrameScanner::skip_to`].
    Damage {
        /// Where the damage starts.
        offset: u64,
        /// What check failed.
        reason: String,
    },
    /// The end of the written data: nothing at `offset` (zeros, or the end of the bytes) and no
    /// valid frame after it.
    End {
        /// Where the data ends.
        offset: u64,
    },
}

/// Walks the frames of one segment's bytes. The one frame scanner: recovery (which adds the
/// order and durability rules), compaction and verification read segments through it.
pub struct FrameScanner<'a> {
    data: &'a [u8],
    seq: u64,
    offset: u64,
    valid_up_to: u64,
}

impl<'a> FrameScanner<'a> {
    /// Scan `data`, the bytes of segment `seq`, from `from`.
    pub fn new(data: &'a [u8], seq: u64, from: u64) -> Self {
        FrameScanner { data, seq, offset: from, valid_up_to: from }
    }

    /// The end of the last valid frame returned (`from` before any).
    pub fn valid_up_to(&self) -> u64 {
        self.valid_up_to
    }

    /// Continue at `offset` (after damage, where the caller decided the next frame is).
    pub fn skip_to(&mut self, offset: u64) {
        self.offset = offset;
    }

    /// What is at the scanner's position; a valid frame moves it past the frame.
    pub fn next_frame(&mut self) -> Scanned<'a> {
        let len = self.data.len() as u64;
        let offset = self.offset;
        let Some(rest) = usize::try_from(offset).ok().and_then(|at| self.data.get(at..)).filter(|r| !r.is_empty())
        else {
            return Scanned::End { offset: offset.min(len) };
        };
        match parse_frame(rest, self.seq) {
            Ok((header, records)) => {
                self.offset = (offset + header.span()).min(len);
                self.valid_up_to = self.offset;
                Scanned::Frame { offset, header, records }
            }
            Err(reason) => {
                // Zeros (or nothing) where a header would start, and no valid frame later: the
                // clean end. A partial header is damage.
                let empty = rest.iter().take(FRAME_HEADER_LEN).all(|&b| b == 0);
                if empty && self.next_valid_frame(offset + FRAME_ALIGN).is_none() {
                    Scanned::End { offset }
                } else {
                    Scanned::Damage { offset, reason }
                }
            }
        }
    }

    /// The first offset at or after `from` (aligned) where a whole valid frame starts.
    pub fn next_valid_frame(&self, from: u64) -> Option<(u64, FrameHeader)> {
        let mut at = align_up(from);
        loop {
            let slot = usize::try_from(at).ok().and_then(|at| self.data.get(at..))?;
            if slot.len() < FRAME_HEADER_LEN {
                return None;
            }
            // Every frame starts with a non-zero length, so zero words are skipped cheaply.
            if slot.iter().take(8).any(|&b| b != 0)
                && let FrameSlot::Frame(_) = FrameHeader::decode(slot, self.seq)
                && let Ok((frame, _)) = parse_frame(slot, self.seq)
            {
                return Some((at, frame));
            }
            at += FRAME_ALIGN;
        }
    }
}

/// The kind of a record; its postcard schema is in [`crate::records`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordKind {
    /// A checkpoint without its channel values.
    Checkpoint = 1,
    /// One channel value, keyed by (thread, namespace, channel, version).
    Blob = 2,
    /// One `put_writes` call.
    Writes = 3,
    /// Tombstone: a whole thread removed.
    DeleteThread = 4,
    /// Tombstone: listed checkpoints (and their writes) removed.
    DeleteCheckpoints = 5,
    /// One channel value, whole or as a delta against another version of its channel, its
    /// payload compressed or not (format version 2).
    Value = 6,
    /// A checkpoint whose metadata and body are one compressed payload (format version 2).
    PackedCheckpoint = 7,
}

impl RecordKind {
    /// The kind for a tag byte, if it is one.
    pub fn from_tag(tag: u8) -> Option<Self> {
        Some(match tag {
            1 => RecordKind::Checkpoint,
            2 => RecordKind::Blob,
            3 => RecordKind::Writes,
            4 => RecordKind::DeleteThread,
            5 => RecordKind::DeleteCheckpoints,
            6 => RecordKind::Value,
            7 => RecordKind::PackedCheckpoint,
            _ => return None,
        })
    }
}

/// Start a record in `buf`: reserves its header and returns where it starts. Append the body,
/// then call [`finish_record`].
pub fn begin_record(buf: &mut Vec<u8>) -> usize {
    let at = buf.len();
    buf.extend_from_slice(&[0u8; RECORD_HEADER_LEN]);
    at
}

/// Fill in the header of the record started at `at`, whose body is everything after it. The
/// record CRC is not salted: records are only ever reached through a frame whose header and
/// payload CRCs are salted. Returns the body length.
#[expect(
    clippy::indexing_slicing,
    reason = "`at` is where `begin_record` reserved the RECORD_HEADER_LEN header bytes in this buffer, which only grew since"
)]
#[expect(
    clippy::cast_possible_truncation,
    reason = "a body over u32::MAX bytes would get a wrong length here, but Batch::push, the one caller, then rejects the record as TooLarge (MAX_FRAME_PAYLOAD < u32::MAX): no such header is written"
)]
pub fn finish_record(buf: &mut [u8], at: usize, kind: RecordKind) -> usize {
    let body_len = buf.len() - at - RECORD_HEADER_LEN;
    let mut hasher = Hasher::new();
    hasher.update(&[kind as u8]);
    hasher.update(&buf[at + RECORD_HEADER_LEN..]);
    let crc = hasher.finalize();
    let header = &mut buf[at..at + RECORD_HEADER_LEN];
    header[0..4].copy_from_slice(&(body_len as u32).to_le_bytes());
    header[4..8].copy_from_slice(&[kind as u8, 0, 0, 0]);
    header[8..12].copy_from_slice(&crc.to_le_bytes());
    body_len
}

#[cfg(test)]
/// Append a whole record (header + body) to `buf`; returns the offset of its header.
pub fn append_record(buf: &mut Vec<u8>, kind: RecordKind, body: &[u8]) -> usize {
    let at = begin_record(buf);
    buf.extend_from_slice(body);
    finish_record(buf, at, kind);
    at
}

/// A record read back: its kind and body, CRC verified.
#[derive(Debug)]
pub struct RecordView<'a> {
    /// The record kind.
    pub kind: RecordKind,
    /// The postcard body.
    pub body: &'a [u8],
}

/// Parse the record whose header starts at `bytes[0]`; returns it and its total length.
pub fn parse_record(bytes: &[u8]) -> Result<(RecordView<'_>, usize), String> {
    let header = bytes.first_chunk::<RECORD_HEADER_LEN>().ok_or("record header runs past the frame")?;
    let body_len = le_u32(header, 0) as usize;
    let kind = RecordKind::from_tag(header[4]).ok_or_else(|| format!("unknown record kind {}", header[4]))?;
    let total = RECORD_HEADER_LEN.checked_add(body_len).ok_or("record length overflows")?;
    let body = bytes.get(RECORD_HEADER_LEN..total).ok_or("record body runs past the frame")?;
    let mut hasher = Hasher::new();
    hasher.update(&[header[4]]);
    hasher.update(body);
    if hasher.finalize() != le_u32(header, 8) {
        return Err("record checksum mismatch".into());
    }
    Ok((RecordView { kind, body }, total))
}

/// Check a whole frame at the start of `bytes`: header, payload CRC and every record. Returns
/// the header and the records with their offsets relative to the frame start.
pub fn parse_frame(bytes: &[u8], seq: u64) -> Result<(FrameHeader, Vec<(usize, RecordView<'_>)>), String> {
    let header = match FrameHeader::decode(bytes, seq) {
        FrameSlot::Frame(header) => header,
        FrameSlot::Empty => return Err("empty frame slot".into()),
        FrameSlot::Invalid => return Err("frame header checksum mismatch".into()),
    };
    let end = FRAME_HEADER_LEN + header.payload_len as usize;
    let payload = bytes.get(FRAME_HEADER_LEN..end).ok_or("frame payload runs past the end of the segment")?;
    let mut hasher = salted_hasher(seq);
    hasher.update(payload);
    if hasher.finalize() != header.payload_crc {
        return Err("frame payload checksum mismatch".into());
    }
    // Bounded by the payload, not by the (checked but untrusted) record count.
    let mut records = Vec::new();
    let mut at = 0;
    while let Some(rest) = payload.get(at..).filter(|rest| !rest.is_empty()) {
        let (record, len) = parse_record(rest)?;
        records.push((FRAME_HEADER_LEN + at, record));
        at += len;
    }
    if records.len() != header.record_count as usize {
        return Err(format!("frame holds {} records, header says {}", records.len(), header.record_count));
    }
    Ok((header, records))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(seq: u64, bodies: &[&[u8]]) -> Vec<u8> {
        let mut payload = Vec::new();
        for body in bodies {
            append_record(&mut payload, RecordKind::Blob, body);
        }
        let mut hasher = salted_hasher(seq);
        hasher.update(&payload);
        let header = FrameHeader {
            payload_len: u32::try_from(payload.len()).expect("a small test payload"),
            record_count: u32::try_from(bodies.len()).expect("a few test records"),
            frame_seq: 1,
            synced_upto: 64,
            payload_crc: hasher.finalize(),
        };
        let mut bytes = header.encode(seq).to_vec();
        bytes.extend_from_slice(&payload);
        bytes
    }

    #[test]
    fn segment_header_round_trips_and_rejects_damage() {
        let header = SegmentHeader { seq: 7, capacity: 1 << 20, created_unix_ms: 123 };
        let mut bytes = header.encode();
        assert_eq!(SegmentHeader::decode(&bytes), Ok(header));
        bytes[20] ^= 1;
        assert!(SegmentHeader::decode(&bytes).is_err());
        assert!(SegmentHeader::decode(&bytes[..10]).is_err());
    }

    #[test]
    fn frames_validate_only_in_their_own_segment() {
        let bytes = frame(3, &[b"one", b"two"]);
        let (header, records) = parse_frame(&bytes, 3).expect("valid frame");
        assert_eq!(header.record_count, 2);
        assert_eq!(records[1].1.body, b"two");
        assert!(parse_frame(&bytes, 4).is_err(), "salted with another sequence number");
    }

    #[test]
    fn any_flipped_bit_is_detected() {
        let bytes = frame(1, &[b"hello", b"world"]);
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(parse_frame(&damaged, 1).is_err(), "bit {bit} flip went unnoticed");
        }
    }

    #[test]
    fn truncated_frames_and_zero_slots_are_rejected_without_panicking() {
        let bytes = frame(1, &[b"payload"]);
        for len in 0..bytes.len() {
            assert!(parse_frame(&bytes[..len], 1).is_err());
        }
        assert_eq!(FrameHeader::decode(&[0u8; FRAME_HEADER_LEN], 1), FrameSlot::Empty);
    }
}
