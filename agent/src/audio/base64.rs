//! Base64 for audio carried in JSON: a JSON client's frames, a carrier's media messages and
//! Nova Sonic's events hold their PCM as standard, padded base64, 30 to 50 frames a second per
//! session in each direction. SIMD (`base64-simd`, which the AWS SDK already builds) does it at
//! a few times the speed of the `base64` crate, which keeps the rest: tokens, keys, signatures.

use base64_simd::STANDARD;

/// Appends the base64 of `pcm` to `out`.
pub fn encode_append(pcm: &[u8], out: &mut String) {
    STANDARD.encode_append(pcm, out);
}

/// The base64 of `pcm`.
pub fn encode(pcm: &[u8]) -> String {
    STANDARD.encode_to_string(pcm)
}

/// The bytes of standard, padded base64 text, or `None` when it is not that (other alphabets,
/// missing or extra padding, non-zero trailing bits, whitespace).
pub fn decode(text: &str) -> Option<Vec<u8>> {
    STANDARD.decode_to_vec(text).ok()
}

/// What [`decode`] accepts, for error messages.
pub const EXPECTED: &str = "standard base64 (RFC 4648 alphabet, = padding)";

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as REFERENCE;

    use super::*;

    /// Accepts, refuses and produces what the `base64` crate's standard engine does: the
    /// behaviour audio had before, and what the project's own clients send.
    #[test]
    fn agrees_with_the_base64_crate() {
        for text in [
            "", "AA==", "AAA=", "AAAA", "AAAA/w==", "AB==", "AAB=", "AAA", "A===", "====", "AA=A", "AAAA====",
            "AA\nAA", "AAAA-w==", "AAAA_w==", " AAAA", "AAAA\r\n",
        ] {
            assert_eq!(decode(text), REFERENCE.decode(text).ok(), "{text:?}");
        }
        let pcm: Vec<u8> = (0..=255u8).cycle().take(4099).collect();
        for len in [0, 1, 2, 3, 4, 31, 32, 33, 1024, 4099] {
            let encoded = encode(&pcm[..len]);
            assert_eq!(encoded, REFERENCE.encode(&pcm[..len]));
            assert_eq!(decode(&encoded).as_deref(), Some(&pcm[..len]));
            let mut appended = String::from("head:");
            encode_append(&pcm[..len], &mut appended);
            assert_eq!(appended, format!("head:{encoded}"));
        }
    }
}
