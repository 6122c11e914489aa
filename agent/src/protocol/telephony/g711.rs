//! G.711 μ-law (PCMU) and A-law (PCMA): the codecs of the public telephone network, 8 bits per
//! sample at 8 kHz. The classic segment algorithms of ITU-T G.711 (as in Sun's reference code);
//! no well-kept Rust crate does only this.

const ULAW_BIAS: i32 = 0x84;
const ULAW_CLIP: i32 = 32_635;

/// One 16-bit linear sample as μ-law.
pub fn ulaw_encode(sample: i16) -> u8 {
    let mut value = i32::from(sample);
    let sign = if value < 0 {
        value = -value;
        0x80
    } else {
        0
    };
    value = value.min(ULAW_CLIP) + ULAW_BIAS;
    // The segment: the highest set bit among bits 14..7.
    let mut exponent = 7;
    while exponent > 0 && value & (0x80 << exponent) == 0 {
        exponent -= 1;
    }
    let mantissa = (value >> (exponent + 3)) & 0x0F;
    !(sign | (exponent << 4) as u8 | mantissa as u8)
}

/// One μ-law byte as a 16-bit linear sample.
pub fn ulaw_decode(byte: u8) -> i16 {
    let byte = !byte;
    let exponent = i32::from((byte >> 4) & 0x07);
    let mantissa = i32::from(byte & 0x0F);
    let magnitude = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS;
    (if byte & 0x80 != 0 { -magnitude } else { magnitude }) as i16
}

/// One 16-bit linear sample as A-law.
pub fn alaw_encode(sample: i16) -> u8 {
    let (sign, magnitude) = if sample >= 0 {
        (0x80u8, i32::from(sample) >> 3)
    } else {
        (0x00u8, (-(i32::from(sample)) - 1) >> 3)
    };
    let byte = if magnitude < 32 {
        (magnitude >> 1) as u8
    } else {
        let exponent = (31 - (magnitude as u32).leading_zeros() - 4).min(7) as i32;
        let mantissa = (magnitude >> exponent) & 0x0F;
        (((exponent) << 4) | mantissa) as u8
    };
    (sign | byte) ^ 0x55
}

/// One A-law byte as a 16-bit linear sample.
pub fn alaw_decode(byte: u8) -> i16 {
    let byte = byte ^ 0x55;
    let exponent = i32::from((byte >> 4) & 0x07);
    let mantissa = i32::from(byte & 0x0F);
    let magnitude = if exponent == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (exponent - 1)
    };
    (if byte & 0x80 != 0 { magnitude } else { -magnitude }) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_matches_the_reference_values() {
        assert_eq!(ulaw_decode(0xFF), 0);
        assert_eq!(ulaw_decode(0x80), 32_124);
        assert_eq!(ulaw_decode(0x00), -32_124);
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(ulaw_encode(32_767), 0x80);
        assert_eq!(ulaw_encode(-32_768), 0x00);
    }

    #[test]
    fn alaw_matches_the_reference_values() {
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(alaw_decode(0xAA), 32_256);
        assert_eq!(alaw_encode(32_767), 0xAA);
    }

    #[test]
    fn every_code_survives_a_round_trip() {
        for byte in 0..=255u8 {
            // μ-law has two zeros (0x7F and 0xFF); both decode to 0, which encodes as 0xFF.
            let again = ulaw_encode(ulaw_decode(byte));
            assert!(
                again == byte || ulaw_decode(again) == ulaw_decode(byte),
                "μ-law {byte:#x}"
            );
            assert_eq!(alaw_encode(alaw_decode(byte)), byte, "A-law {byte:#x}");
        }
    }

    #[test]
    fn quantisation_error_stays_within_a_step() {
        for sample in (-32_000i16..32_000).step_by(97) {
            let u = i32::from(ulaw_decode(ulaw_encode(sample)));
            let a = i32::from(alaw_decode(alaw_encode(sample)));
            let bound = (i32::from(sample).abs() / 16).max(16);
            assert!((u - i32::from(sample)).abs() <= bound, "μ-law {sample} -> {u}");
            assert!((a - i32::from(sample)).abs() <= bound, "A-law {sample} -> {a}");
        }
    }
}
