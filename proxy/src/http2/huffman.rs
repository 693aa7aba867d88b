//! HPACK's Huffman code (RFC 7541 Appendix B), decoding only: the proxy sends its strings
//! plain, as they cost nothing to encode and a header block is a small share of a frame.
//!
//! The code is canonical: codes of one length are consecutive, in symbol order, and each
//! length's first code follows the last of the length before. So a string decodes by
//! comparing the next 30 bits against each length's bound, not by walking a tree bit by bit.

/// Each symbol's code (256 is EOS), right-aligned.
pub(super) const CODES: [u32; 257] = [
    0x1ff8, 0x7fffd8, 0xfffffe2, 0xfffffe3, 0xfffffe4, 0xfffffe5, 0xfffffe6, 0xfffffe7, 0xfffffe8, 0xffffea,
    0x3ffffffc, 0xfffffe9, 0xfffffea, 0x3ffffffd, 0xfffffeb, 0xfffffec, 0xfffffed, 0xfffffee, 0xfffffef, 0xffffff0,
    0xffffff1, 0xffffff2, 0x3ffffffe, 0xffffff3, 0xffffff4, 0xffffff5, 0xffffff6, 0xffffff7, 0xffffff8, 0xffffff9,
    0xffffffa, 0xffffffb, 0x14, 0x3f8, 0x3f9, 0xffa, 0x1ff9, 0x15, 0xf8, 0x7fa, 0x3fa, 0x3fb, 0xf9, 0x7fb, 0xfa, 0x16,
    0x17, 0x18, 0x0, 0x1, 0x2, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x5c, 0xfb, 0x7ffc, 0x20, 0xffb, 0x3fc,
    0x1ffa, 0x21, 0x5d, 0x5e, 0x5f, 0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d,
    0x6e, 0x6f, 0x70, 0x71, 0x72, 0xfc, 0x73, 0xfd, 0x1ffb, 0x7fff0, 0x1ffc, 0x3ffc, 0x22, 0x7ffd, 0x3, 0x23, 0x4,
    0x24, 0x5, 0x25, 0x26, 0x27, 0x6, 0x74, 0x75, 0x28, 0x29, 0x2a, 0x7, 0x2b, 0x76, 0x2c, 0x8, 0x9, 0x2d, 0x77, 0x78,
    0x79, 0x7a, 0x7b, 0x7ffe, 0x7fc, 0x3ffd, 0x1ffd, 0xffffffc, 0xfffe6, 0x3fffd2, 0xfffe7, 0xfffe8, 0x3fffd3,
    0x3fffd4, 0x3fffd5, 0x7fffd9, 0x3fffd6, 0x7fffda, 0x7fffdb, 0x7fffdc, 0x7fffdd, 0x7fffde, 0xffffeb, 0x7fffdf,
    0xffffec, 0xffffed, 0x3fffd7, 0x7fffe0, 0xffffee, 0x7fffe1, 0x7fffe2, 0x7fffe3, 0x7fffe4, 0x1fffdc, 0x3fffd8,
    0x7fffe5, 0x3fffd9, 0x7fffe6, 0x7fffe7, 0xffffef, 0x3fffda, 0x1fffdd, 0xfffe9, 0x3fffdb, 0x3fffdc, 0x7fffe8,
    0x7fffe9, 0x1fffde, 0x7fffea, 0x3fffdd, 0x3fffde, 0xfffff0, 0x1fffdf, 0x3fffdf, 0x7fffeb, 0x7fffec, 0x1fffe0,
    0x1fffe1, 0x3fffe0, 0x1fffe2, 0x7fffed, 0x3fffe1, 0x7fffee, 0x7fffef, 0xfffea, 0x3fffe2, 0x3fffe3, 0x3fffe4,
    0x7ffff0, 0x3fffe5, 0x3fffe6, 0x7ffff1, 0x3ffffe0, 0x3ffffe1, 0xfffeb, 0x7fff1, 0x3fffe7, 0x7ffff2, 0x3fffe8,
    0x1ffffec, 0x3ffffe2, 0x3ffffe3, 0x3ffffe4, 0x7ffffde, 0x7ffffdf, 0x3ffffe5, 0xfffff1, 0x1ffffed, 0x7fff2,
    0x1fffe3, 0x3ffffe6, 0x7ffffe0, 0x7ffffe1, 0x3ffffe7, 0x7ffffe2, 0xfffff2, 0x1fffe4, 0x1fffe5, 0x3ffffe8,
    0x3ffffe9, 0xffffffd, 0x7ffffe3, 0x7ffffe4, 0x7ffffe5, 0xfffec, 0xfffff3, 0xfffed, 0x1fffe6, 0x3fffe9, 0x1fffe7,
    0x1fffe8, 0x7ffff3, 0x3fffea, 0x3fffeb, 0x1ffffee, 0x1ffffef, 0xfffff4, 0xfffff5, 0x3ffffea, 0x7ffff4, 0x3ffffeb,
    0x7ffffe6, 0x3ffffec, 0x3ffffed, 0x7ffffe7, 0x7ffffe8, 0x7ffffe9, 0x7ffffea, 0x7ffffeb, 0xffffffe, 0x7ffffec,
    0x7ffffed, 0x7ffffee, 0x7ffffef, 0x7fffff0, 0x3ffffee, 0x3fffffff,
];

/// Each symbol's code length in bits.
pub(super) const LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28,
    28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12,
    10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6,
    5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22,
    22, 23, 22, 23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22, 21, 20,
    22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28,
    27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28,
    27, 27, 27, 27, 27, 26, 30,
];

const LONGEST: u32 = 30;

/// The decoding tables, made once from [`CODES`].
struct Canonical {
    /// Symbols in code order: by length, then by symbol.
    symbols: [u16; 257],
    /// For each length: its first code, and where its symbols start in `symbols`.
    first: [(u32, u16); LONGEST as usize + 1],
    /// For each length: one past its last code, left-aligned in 30 bits (0: no codes).
    limit: [u32; LONGEST as usize + 1],
}

fn canonical() -> &'static Canonical {
    static MADE: std::sync::OnceLock<Canonical> = std::sync::OnceLock::new();
    MADE.get_or_init(|| {
        let mut symbols: Vec<u16> = (0..257).collect();
        symbols.sort_by_key(|&s| (LENGTHS[s as usize], s));
        let mut c = Canonical { symbols: [0; 257], first: [(0, 0); 31], limit: [0; 31] };
        for (i, &s) in symbols.iter().enumerate() {
            c.symbols[i] = s;
            let (len, code) = (LENGTHS[s as usize] as usize, CODES[s as usize]);
            if c.limit[len] == 0 {
                c.first[len] = (code, i as u16);
            }
            c.limit[len] = (code + 1) << (LONGEST as usize - len);
        }
        c
    })
}

/// Decodes `src` onto `out`; `None` if it is not a valid Huffman string: a code for EOS, or
/// padding longer than 7 bits or not all ones (RFC 7541 §5.2).
pub(super) fn decode(src: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let c = canonical();
    out.reserve(src.len() * 8 / 5);
    // Bits not yet decoded, right-aligned in `bits`.
    let (mut bits, mut have) = (0u64, 0u32);
    let mut input = src.iter();
    loop {
        while have <= 56 {
            match input.next() {
                Some(&b) => {
                    bits = (bits << 8) | u64::from(b);
                    have += 8;
                }
                None => break,
            }
        }
        if have == 0 {
            return Some(());
        }
        // The next 30 bits, left-aligned; missing ones read as 1s, as padding would be.
        let peek = if have >= LONGEST {
            (bits >> (have - LONGEST)) as u32 & ((1 << LONGEST) - 1)
        } else {
            ((bits << (LONGEST - have)) as u32 | ((1 << (LONGEST - have)) - 1)) & ((1 << LONGEST) - 1)
        };
        let len = (5..=LONGEST).find(|&l| peek < c.limit[l as usize])?;
        if len > have {
            // Only padding is left: at most 7 bits, all ones (a prefix of EOS).
            let rest = bits & ((1 << have) - 1);
            return (have <= 7 && rest == (1 << have) - 1).then_some(());
        }
        let (first, at) = c.first[len as usize];
        let symbol = c.symbols[at as usize + (peek >> (LONGEST - len)) as usize - first as usize];
        if symbol == 256 {
            return None;
        }
        out.push(symbol as u8);
        have -= len;
        bits &= (1u64 << have) - 1;
    }
}

#[cfg(test)]
pub(super) fn encode(src: &[u8]) -> Vec<u8> {
    let (mut out, mut bits, mut have) = (Vec::new(), 0u64, 0u32);
    for &b in src {
        bits = (bits << LENGTHS[b as usize]) | u64::from(CODES[b as usize]);
        have += u32::from(LENGTHS[b as usize]);
        while have >= 8 {
            have -= 8;
            out.push((bits >> have) as u8);
        }
    }
    if have > 0 {
        out.push(((bits << (8 - have)) as u8) | ((1u8 << (8 - have)) - 1));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_rfcs_examples_and_every_byte() {
        // RFC 7541 C.4.1: "www.example.com".
        let www = [0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff];
        let mut out = Vec::new();
        decode(&www, &mut out).unwrap();
        assert_eq!(out, b"www.example.com");
        assert_eq!(encode(b"www.example.com"), www);
        let every: Vec<u8> = (0..=255).chain((0..=255).rev()).collect();
        out.clear();
        decode(&encode(&every), &mut out).unwrap();
        assert_eq!(out, every);
    }

    #[test]
    fn refuses_eos_and_bad_padding() {
        let mut out = Vec::new();
        // EOS, 30 ones, padded with two more.
        assert_eq!(decode(&[0xff, 0xff, 0xff, 0xff], &mut out), None);
        // "0" is 00000 (5 bits): padding of zeros is wrong.
        assert_eq!(decode(&[0x00], &mut out), None);
        // A whole byte of padding (8 ones) is too long.
        assert_eq!(decode(&[0x07, 0xff], &mut out), None);
        out.clear();
        assert_eq!(decode(&[0x07], &mut out), Some(()));
        assert_eq!(out, b"0");
    }
}
