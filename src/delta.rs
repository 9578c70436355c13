//! Copy/insert deltas between two versions of one channel's value.
//!
//! A delta is a list of ops that rebuild the new value from the old one: `Copy` a range of the
//! old value, `Insert` literal bytes. It is built in one pass at memory-compare speed: runs the
//! two values share are found by extending a match as far as it goes; after a mismatch the
//! encoder looks for the two sides to line up again within a small window (msgpack and JSON
//! arrays that grow change a length header near the front, then repeat every old element), then
//! by searching the next [`SEARCH_WINDOW`] bytes of the old value for a few anchors taken from
//! the new one (an insertion or a deletion in the middle); when they do not, the rest is the
//! longest common suffix and an insert before it. That covers what
//! agent state does step after step: a list that grows at the end, a header that changes, an
//! edit in place, an insertion in the middle. Values that change everywhere (encrypted ones)
//! give a delta about as large as the value, and the caller stores the whole value instead.
//!
//! Why not zstd with the old value as a reference prefix ("patch-from")? Measured on the chat
//! workload's values (`cargo bench --bench values`), it compresses about as well once the
//! inserts are compressed too, but it indexes the whole reference on every write: tens to
//! hundreds of microseconds for a 100 KiB value where this encoder takes a few.
//!
//! Wire form of the ops (the payload before compression):
//!
//! | op | bytes |
//! |---|---|
//! | copy | `0x00`, varint offset in the old value, varint length |
//! | insert | `0x01`, varint length, the bytes |
//!
//! Varints are LEB128, at most 10 bytes. Decoding checks every range against the old value and
//! the stated result length before copying, so a damaged delta is an error, never a panic or an
//! unbounded allocation.

/// Shorter shared runs are inserted instead: an op costs a few bytes.
const MIN_COPY: usize = 16;
/// How far past a mismatch (on either side) the encoder looks for the values to line up again.
const RESYNC_WINDOW: usize = 24;
/// Bytes that must agree for the values to count as lined up again.
const ANCHOR: usize = 32;
/// How far into the old value an anchor is searched for, past the mismatch.
const SEARCH_WINDOW: usize = 64 << 10;
/// Where anchors are taken from, as distances past the mismatch in the new value: an insertion
/// longer than the last one is found by the common suffix or not at all.
const ANCHOR_OFFSETS: [usize; 3] = [ANCHOR, 512, 4096];

const OP_COPY: u8 = 0;
const OP_INSERT: u8 = 1;

/// The ops that rebuild `new` from `base`.
pub fn encode(base: &[u8], new: &[u8]) -> Vec<u8> {
    let mut out = Encoder { ops: Vec::with_capacity(64), new };
    let (mut i, mut j) = (0usize, 0usize);
    // Start of the bytes of `new` not yet covered by an op (a pending insert).
    let mut pending = 0usize;
    while i < new.len() {
        let run = common_prefix(tail(new, i), tail(base, j));
        if run >= MIN_COPY {
            out.insert(pending, i);
            out.copy(j, run);
            i += run;
            j += run;
            pending = i;
            continue;
        }
        if let Some((skip_new, skip_base)) = resync(new, i, base, j) {
            // The skipped bytes of `new` stay pending (inserted); those of `base` are dropped.
            i += skip_new;
            j += skip_base;
            continue;
        }
        if let Some((at_new, at_base)) = search(new, i, pending, base, j) {
            i = at_new;
            j = at_base;
            continue;
        }
        // No way to line up nearby: the rest is an insert and the longest shared suffix.
        let suffix = common_suffix(tail(new, i), tail(base, j));
        let suffix = if suffix >= MIN_COPY { suffix } else { 0 };
        out.insert(pending, new.len() - suffix);
        if suffix > 0 {
            out.copy(base.len() - suffix, suffix);
        }
        pending = new.len();
        break;
    }
    out.insert(pending, new.len());
    out.ops
}

/// Rebuild a value from `base` and the `ops` of [`encode`]; it must come out `len` bytes.
pub fn apply(base: &[u8], ops: &[u8], len: usize) -> Result<Vec<u8>, String> {
    let mut value = Vec::with_capacity(len);
    let mut at = 0usize;
    while at < ops.len() {
        let op = ops.get(at).copied().ok_or("delta ends inside an op")?;
        at += 1;
        match op {
            OP_COPY => {
                let offset = varint(ops, &mut at)?;
                let count = varint(ops, &mut at)?;
                let range = offset.checked_add(count).filter(|end| *end <= base.len()).map(|end| offset..end);
                let bytes = range
                    .and_then(|range| base.get(range))
                    .ok_or_else(|| format!("delta copies {count} bytes at {offset} of a {}-byte base", base.len()))?;
                extend_within(&mut value, bytes, len)?;
            }
            OP_INSERT => {
                let count = varint(ops, &mut at)?;
                let bytes = at
                    .checked_add(count)
                    .and_then(|end| ops.get(at..end))
                    .ok_or_else(|| format!("delta inserts {count} bytes past its end"))?;
                at += count;
                extend_within(&mut value, bytes, len)?;
            }
            other => return Err(format!("delta op {other} is not a copy or an insert")),
        }
    }
    if value.len() != len {
        return Err(format!("delta rebuilds {} bytes, its header says {len}", value.len()));
    }
    Ok(value)
}

struct Encoder<'a> {
    ops: Vec<u8>,
    new: &'a [u8],
}

impl Encoder<'_> {
    fn copy(&mut self, offset: usize, count: usize) {
        self.ops.push(OP_COPY);
        put_varint(&mut self.ops, offset);
        put_varint(&mut self.ops, count);
    }

    /// Insert `new[from..to]` (nothing if empty).
    fn insert(&mut self, from: usize, to: usize) {
        let Some(bytes) = self.new.get(from..to).filter(|b| !b.is_empty()) else { return };
        self.ops.push(OP_INSERT);
        put_varint(&mut self.ops, bytes.len());
        self.ops.extend_from_slice(bytes);
    }
}

fn tail(bytes: &[u8], from: usize) -> &[u8] {
    bytes.get(from..).unwrap_or_default()
}

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    // Eight bytes at a time, then the odd ones: this runs over the whole value on every write.
    let mut n = 0;
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        if x != y {
            break;
        }
        n += 8;
    }
    n + tail(a, n).iter().zip(tail(b, n)).take_while(|(x, y)| x == y).count()
}

fn common_suffix(a: &[u8], b: &[u8]) -> usize {
    a.iter().rev().zip(b.iter().rev()).take_while(|(x, y)| x == y).count()
}

/// The smallest skips (on `new`, on `base`), not both zero, after which the two agree for
/// [`ANCHOR`] bytes, looking at most [`RESYNC_WINDOW`] bytes ahead on each side.
fn resync(new: &[u8], i: usize, base: &[u8], j: usize) -> Option<(usize, usize)> {
    for total in 1..=2 * RESYNC_WINDOW {
        for skip_new in total.saturating_sub(RESYNC_WINDOW)..=total.min(RESYNC_WINDOW) {
            let skip_base = total - skip_new;
            let (Some(a), Some(b)) =
                (new.get(i + skip_new..i + skip_new + ANCHOR), base.get(j + skip_base..j + skip_base + ANCHOR))
            else {
                continue;
            };
            if a == b {
                return Some((skip_new, skip_base));
            }
        }
    }
    None
}

/// An anchor of `new` past `i` found in `base` past `j` (within [`SEARCH_WINDOW`]), moved back
/// over bytes that also agree (but not before `pending`, what ops already cover): where the two
/// line up again, as (position in new, position in base).
fn search(new: &[u8], i: usize, pending: usize, base: &[u8], j: usize) -> Option<(usize, usize)> {
    let window = base.get(j..(j + SEARCH_WINDOW).min(base.len()))?;
    for offset in ANCHOR_OFFSETS {
        let Some(anchor) = new.get(i + offset..i + offset + ANCHOR) else { break };
        if let Some(found) = memchr::memmem::find(window, anchor) {
            let (mut at_new, mut at_base) = (i + offset, j + found);
            while at_new > pending && at_base > 0 && new.get(at_new - 1) == base.get(at_base - 1) {
                at_new -= 1;
                at_base -= 1;
            }
            return Some((at_new, at_base));
        }
    }
    None
}

fn extend_within(value: &mut Vec<u8>, bytes: &[u8], len: usize) -> Result<(), String> {
    if value.len() + bytes.len() > len {
        return Err(format!("delta rebuilds more than the {len} bytes its header says"));
    }
    value.extend_from_slice(bytes);
    Ok(())
}

fn put_varint(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        #[expect(clippy::cast_possible_truncation, reason = "the low seven bits, masked")]
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    #[expect(clippy::cast_possible_truncation, reason = "n < 0x80 here")]
    out.push(n as u8);
}

fn varint(bytes: &[u8], at: &mut usize) -> Result<usize, String> {
    let mut n: u64 = 0;
    for shift in (0..70).step_by(7) {
        let byte = bytes.get(*at).copied().ok_or("delta ends inside a number")?;
        *at += 1;
        let bits = u64::from(byte & 0x7f);
        if shift == 63 && bits > 1 {
            return Err("delta number overflows".into());
        }
        n |= bits << shift;
        if byte & 0x80 == 0 {
            return usize::try_from(n).map_err(|_| "delta number overflows".into());
        }
    }
    Err("delta number is longer than ten bytes".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(base: &[u8], new: &[u8]) -> usize {
        let ops = encode(base, new);
        assert_eq!(apply(base, &ops, new.len()).expect("applies"), new);
        ops.len()
    }

    #[test]
    #[expect(clippy::cast_possible_truncation, reason = "element counts below 256")]
    fn a_growing_list_costs_its_new_element() {
        // msgpack: a fixarray header that changes, then every old element, then a new one.
        let element = b"\x82\xa4role\xa2ai\xa7content\xda\x00\x40lorem ipsum dolor sit amet lorem ipsum dolor sit amet 0123456789";
        let list = |n: usize| {
            let mut bytes = if n < 16 { vec![0x90 | n as u8] } else { vec![0xdc, 0, n as u8] };
            (0..n).for_each(|_| bytes.extend_from_slice(element));
            bytes
        };
        for n in [1, 14, 15, 16, 40] {
            let size = round_trip(&list(n), &list(n + 1));
            assert!(size < element.len() + 24, "{n} elements: {size}-byte delta");
        }
        // JSON: the closing bracket moves.
        let json =
            |n: usize| format!("[{}]", vec![r#"{"role":"ai","content":"lorem ipsum dolor sit amet"}"#; n].join(","));
        assert!(round_trip(json(20).as_bytes(), json(21).as_bytes()) < 80);
    }

    #[test]
    #[expect(clippy::cast_possible_truncation, reason = "noise bytes: the low byte is the point")]
    fn edits_anywhere_and_unrelated_values_round_trip() {
        let base: Vec<u8> = (0..5000u32).flat_map(u32::to_le_bytes).collect();
        let mut edited = base.clone();
        edited.splice(7000..7000, b"an insertion in the middle".iter().copied());
        edited[100] ^= 1;
        edited.drain(15000..15100);
        assert!(round_trip(&base, &edited) < 200);
        let unrelated: Vec<u8> = (0..3000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
        assert!(round_trip(&base, &unrelated) >= unrelated.len());
        round_trip(&[], b"from nothing");
        round_trip(b"to nothing", &[]);
        round_trip(&base, &base);
    }

    #[test]
    fn damaged_deltas_are_errors() {
        let base = b"0123456789abcdef0123456789abcdef-base";
        let new = b"0123456789abcdef0123456789abcdef-new!";
        let ops = encode(base, new);
        assert!(apply(base, &ops, new.len() + 1).is_err());
        assert!(apply(base, &ops, new.len() - 1).is_err());
        assert!(apply(&base[..10], &ops, new.len()).is_err(), "a copy past a shorter base");
        assert!(apply(base, &ops[..ops.len() - 1], new.len()).is_err());
        assert!(apply(base, &[7], 0).is_err());
        assert!(apply(base, &[OP_INSERT, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f], 1).is_err());
        assert!(apply(base, &[OP_COPY, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x01], 1).is_err());
        for cut in 0..ops.len() {
            let _ = apply(base, &ops[..cut], new.len());
        }
    }
}
