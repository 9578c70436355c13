//! String equality for the hot paths, where one side is often the empty namespace `""`.
//!
//! `a == b` on two empty strings still calls libc `bcmp(a, b, 0)`. On AMD EPYC guests with
//! glibc's AVX-512 (`evex`) string functions, a zero-length `memcmp`/`bcmp` takes ~150 ns
//! against ~2 ns for any other length (measured on the development VM); every record of the
//! root graph carries `checkpoint_ns == ""`, and each read checks it.

/// Whether `a` and `b` are the same text; empty strings are compared without a libc call.
#[inline]
pub(crate) fn same_text(a: &str, b: &str) -> bool {
    a.len() == b.len() && (a.is_empty() || a == b)
}

#[cfg(test)]
mod tests {
    use super::same_text;

    #[test]
    fn same_text_is_string_equality() {
        for (a, b) in [("", ""), ("", "a"), ("a", ""), ("ab", "ab"), ("ab", "ac"), ("é", "e")] {
            assert_eq!(same_text(a, b), a == b, "{a:?} {b:?}");
        }
    }
}
