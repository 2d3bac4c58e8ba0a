//! Decimal numbers written as ASCII bytes without going through `fmt` or allocating: status
//! codes and `Content-Length` in response heads, `retry:` values and timestamps in SSE frames.
use bytes::BufMut;

/// Appends `n` in decimal.
pub fn put_decimal(out: &mut impl BufMut, n: u64) {
    // u64::MAX has 20 digits, so the buffer always has room.
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    let mut rest = n;
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.put_slice(&digits[start..]);
}

/// Number of bytes [`put_decimal`] writes for `n`.
pub fn decimal_len(n: u64) -> usize {
    let mut len = 1;
    let mut rest = n / 10;
    while rest > 0 {
        len += 1;
        rest /= 10;
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_magnitude() {
        let mut n = 1u64;
        let mut cases = vec![0, 9, 10, 99, 100, 1_234_567, u64::MAX - 1, u64::MAX];
        while let Some(m) = n.checked_mul(10) {
            cases.extend([n - 1, n, n + 1]);
            n = m;
        }
        for n in cases {
            let mut out = Vec::new();
            put_decimal(&mut out, n);
            assert_eq!(String::from_utf8(out.clone()).unwrap(), n.to_string());
            assert_eq!(decimal_len(n), out.len(), "{n}");
        }
    }
}
