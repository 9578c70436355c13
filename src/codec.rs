//! Transparent compression of stored values (zstd), tagged per value.
//!
//! A stored value says which codec produced its payload and how long the payload is once
//! decoded. That length is checked against the store's value limit before anything is
//! allocated, and the decoder is given exactly that capacity, so a corrupt or hostile record
//! cannot make a read allocate without bound; a payload that decodes to any other length is
//! corruption.
//!
//! Small payloads are stored as they are: below [`MIN_COMPRESS`] bytes a zstd call costs about
//! 2.7 µs whatever the size (`cargo bench --features testing --bench values -- small_payload`),
//! more than a small write costs in all, for a few hundred bytes saved. So is a payload that does not shrink by at least
//! 1/[`MIN_GAIN_DIVISOR`] (already compressed or encrypted values: compressed again they only
//! cost time on every read).

use std::borrow::Cow;
use std::cell::RefCell;

use serde::{Deserialize, Serialize};

/// The most any stored payload may claim to decode to when a store's own limit is lower: what a
/// record can hold (a frame is at most 4 GiB). Reads check claims against the larger of this and
/// `max_value_bytes`, so lowering the option at reopen never makes stored values unreadable,
/// and a damaged claim cannot ask for more.
pub const DECODE_LIMIT: u64 = 1 << 32;

/// Payloads shorter than this are never compressed.
pub const MIN_COMPRESS: usize = 1024;
/// A compressed payload is kept only if it saves at least `len / MIN_GAIN_DIVISOR` bytes.
const MIN_GAIN_DIVISOR: usize = 16;

/// How a payload is stored. The tag is part of the on-disk format: values are only ever added.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Codec {
    /// The bytes as they are.
    Raw,
    /// One zstd frame.
    Zstd,
}

/// What a payload holds, which decides how it is compressed. Both make standard zstd frames:
/// reading needs to know neither.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Content {
    /// Channel values: text and serialized objects, where coding the literals pays.
    Values,
    /// A checkpoint's body: names and versions repeated node after node. Long matches are the
    /// gain; coding the literals as well halves the speed for ~15% of the bytes (a 1 KiB body:
    /// 3.4 µs to 207 bytes with literals coded, 1.6 µs to 245 without).
    Identifiers,
}

type CachedCompressor = RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>>;

thread_local! {
    /// One compression context per thread, content and level: creating one allocates its
    /// tables, which costs more than compressing a small value.
    static VALUE_COMPRESSOR: CachedCompressor = const { RefCell::new(None) };
    static IDENTIFIER_COMPRESSOR: CachedCompressor = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// A compression context for `content` at `level`.
fn compressor(content: Content, level: i32) -> Option<zstd::bulk::Compressor<'static>> {
    let mut compressor = zstd::bulk::Compressor::new(level).ok()?;
    if content == Content::Identifiers {
        use zstd::stream::raw::CParameter;
        use zstd::zstd_safe::ParamSwitch;
        compressor.set_parameter(CParameter::LiteralCompressionMode(ParamSwitch::Disable)).ok()?;
    }
    Some(compressor)
}

/// `bytes` (channel values) compressed at `level` when that pays (see the module doc), else as
/// they are. `level: None` stores everything raw.
pub fn pack(bytes: &[u8], level: Option<i32>) -> (Codec, Cow<'_, [u8]>) {
    pack_content(bytes, level, Content::Values)
}

/// [`pack`] for a payload holding `content`.
pub fn pack_content(bytes: &[u8], level: Option<i32>, content: Content) -> (Codec, Cow<'_, [u8]>) {
    let Some(level) = level else { return (Codec::Raw, Cow::Borrowed(bytes)) };
    if bytes.len() < MIN_COMPRESS {
        return (Codec::Raw, Cow::Borrowed(bytes));
    }
    let cached = match content {
        Content::Values => &VALUE_COMPRESSOR,
        Content::Identifiers => &IDENTIFIER_COMPRESSOR,
    };
    let compressed = cached.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.as_ref().is_none_or(|(at, _)| *at != level) {
            *cell = compressor(content, level).map(|c| (level, c));
        }
        cell.as_mut().and_then(|(_, compressor)| compressor.compress(bytes).ok())
    });
    match compressed {
        Some(compressed) if compressed.len() + bytes.len() / MIN_GAIN_DIVISOR <= bytes.len() => {
            (Codec::Zstd, Cow::Owned(compressed))
        }
        _ => (Codec::Raw, Cow::Borrowed(bytes)),
    }
}

/// Decode a payload stored with `codec` that must be `len` bytes once decoded; `limit` is the
/// largest length the store accepts. The error says which check failed.
pub fn unpack<'a>(codec: Codec, payload: &'a [u8], len: u64, limit: u64) -> Result<Cow<'a, [u8]>, String> {
    if len > limit {
        return Err(format!("a stored value claims {len} bytes, over the {limit}-byte value limit"));
    }
    let expected = usize::try_from(len).map_err(|_| format!("a stored value claims {len} bytes"))?;
    match codec {
        Codec::Raw if payload.len() == expected => Ok(Cow::Borrowed(payload)),
        Codec::Raw => Err(format!("a raw value holds {} bytes, its header says {len}", payload.len())),
        Codec::Zstd => {
            // The frame's own content size, when it states one, must agree before any allocation.
            if let Ok(Some(stated)) = zstd::zstd_safe::get_frame_content_size(payload)
                && stated != len
            {
                return Err(format!("a compressed value's frame states {stated} bytes, its header says {len}"));
            }
            let decoded = DECOMPRESSOR.with(|cell| {
                let mut cell = cell.borrow_mut();
                if cell.is_none() {
                    *cell = Some(zstd::bulk::Decompressor::new().map_err(|e| format!("zstd: {e}"))?);
                }
                let decompressor = cell.as_mut().ok_or("zstd: no decompression context")?;
                decompressor
                    .decompress(payload, expected)
                    .map_err(|e| format!("a compressed value does not decode: {e}"))
            })?;
            if decoded.len() != expected {
                return Err(format!("a compressed value decodes to {} bytes, its header says {len}", decoded.len()));
            }
            Ok(Cow::Owned(decoded))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_make_standard_frames_that_read_back() {
        // A checkpoint body's shape: versions repeated node after node.
        let body: Vec<u8> = (0..16)
            .flat_map(|node| (0..8).map(move |c| format!("node{node}channel_{c}{:032}.{:016}", 90 + c % 3, c * 7919)))
            .collect::<String>()
            .into_bytes();
        let (codec, packed) = pack_content(&body, Some(1), Content::Identifiers);
        assert_eq!(codec, Codec::Zstd);
        assert!(packed.len() < body.len() / 4, "{} of {}", packed.len(), body.len());
        let len = body.len() as u64;
        assert_eq!(unpack(codec, &packed, len, 1 << 20).expect("decodes").as_ref(), &body[..]);
        // Both contents share the decoder, and a context of each kind lives per thread.
        let (codec, values) = pack(&body, Some(1));
        assert_eq!(unpack(codec, &values, len, 1 << 20).expect("decodes").as_ref(), &body[..]);
        assert_eq!(pack_content(&body[..100], Some(1), Content::Identifiers).0, Codec::Raw, "below MIN_COMPRESS");
    }

    #[test]
    #[expect(clippy::cast_possible_truncation, reason = "noise bytes: the high byte of a xorshift state")]
    fn compresses_what_pays_and_checks_lengths_before_decoding() {
        let text = b"lorem ipsum dolor sit amet ".repeat(40);
        let (codec, packed) = pack(&text, Some(1));
        assert_eq!(codec, Codec::Zstd);
        assert!(packed.len() < text.len() / 4);
        let len = text.len() as u64;
        assert_eq!(unpack(codec, &packed, len, 1 << 20).expect("decodes").as_ref(), &text[..]);
        // A wrong length is refused, before or after decoding; a claim over the limit too.
        assert!(unpack(codec, &packed, len - 1, 1 << 20).is_err());
        assert!(unpack(codec, &packed, len + 1, 1 << 20).is_err());
        assert!(unpack(codec, &packed, len, len - 1).unwrap_err().contains("limit"));
        assert!(unpack(Codec::Zstd, b"not a zstd frame at all", 10, 100).is_err());
        // Small, incompressible, or compression off: raw.
        assert_eq!(pack(b"tiny", Some(1)).0, Codec::Raw);
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 32) as u8
            })
            .collect();
        assert_eq!(pack(&noise, Some(3)).0, Codec::Raw);
        assert_eq!(pack(&text, None).0, Codec::Raw);
        assert!(unpack(Codec::Raw, b"abc", 4, 100).is_err());
    }
}
