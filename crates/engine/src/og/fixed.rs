//! Exact fixed-point numbers: `value / 10^decimals` as sent, converted to
//! `f64` (correctly rounded) or integers (truncated toward zero).

/// Largest `decimals` OpenGradient accepts (the precision of a 64-bit float).
pub const MAX_DECIMALS: u32 = 18;

/// Longest digit string accepted for one `value` (beyond any dtype's range).
const MAX_VALUE_DIGITS: usize = 64;

/// An exact decimal `sign · digits / 10^scale`, where `scale` already folds
/// in the `decimals` field and any fraction written in `value` itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedPoint {
    digits: Digits,
    scale: u32,
    /// The `decimals` field as sent, for error messages.
    decimals: u32,
    negative: bool,
}

/// The decimal digits without leading zeros. Numbers of up to 19 digits
/// (every number a client sends in practice) are held as a `u64`, so
/// decoding one allocates nothing; longer ones keep their text.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Digits {
    /// At most [`SMALL_DIGITS`] digits.
    Small { mantissa: u64 },
    /// More digits than fit a `u64` exactly.
    Big(Box<str>),
}

/// Digits a `u64` always holds (10^19 - 1 < 2^64).
const SMALL_DIGITS: usize = 19;

/// `10^k` for k ≤ 38 (the largest power of ten in `u128`).
fn pow10_u128(k: u32) -> Option<u128> {
    10u128.checked_pow(k)
}

impl FixedPoint {
    /// Builds `value / 10^decimals` from the two JSON texts as sent.
    /// Errors carry no input name; [`to_tensors`](super::to_tensors) adds it.
    // Inlined into the scanner, the result is built in place: returned through
    // memory, every number was copied twice with overlapping loads of its padding
    // that stalled store forwarding (a sixth of the request decoder's time).
    #[inline(always)]
    pub fn parse(value: &str, decimals: &str) -> Result<FixedPoint, FieldError> {
        let decimals = parse_decimals(decimals).ok_or(FieldError::Decimals)?;
        match Self::plain_integer(value, decimals) {
            Some(plain) => Ok(plain),
            None => Self::parse_any(value, decimals),
        }
    }

    /// Any value text the wire allows: a sign, leading zeros, a fraction, more
    /// digits than a `u64` holds.
    fn parse_any(value: &str, decimals: u32) -> Result<FixedPoint, FieldError> {
        let (negative, int_part, frac_part) = split_decimal(value).ok_or(FieldError::Value)?;
        let int_trimmed = int_part.trim_start_matches('0');
        // Leading zeros run into the fraction only when the integer part is all zeros.
        let frac_trimmed = if int_trimmed.is_empty() {
            frac_part.trim_start_matches('0')
        } else {
            frac_part
        };
        let len = int_trimmed.len() + frac_trimmed.len();
        if len > MAX_VALUE_DIGITS {
            return Err(FieldError::Value);
        }
        let digits = if len <= SMALL_DIGITS {
            // Two plain loops: a chained iterator kept the compiler from
            // unrolling them (len ≤ SMALL_DIGITS, so no overflow).
            let fold = |m: u64, b: u8| m * 10 + u64::from(b - b'0');
            let mantissa = frac_trimmed
                .bytes()
                .fold(int_trimmed.bytes().fold(0u64, fold), fold);
            Digits::Small { mantissa }
        } else {
            let mut text = String::with_capacity(len);
            text.push_str(int_trimmed);
            text.push_str(frac_trimmed);
            Digits::Big(text.into_boxed_str())
        };
        let frac_len = u32::try_from(frac_part.len()).map_err(|_| FieldError::Value)?;
        let is_zero = matches!(digits, Digits::Small { mantissa: 0 });
        Ok(FixedPoint {
            negative: negative && !is_zero,
            digits,
            // A fraction of billions of zeros must not wrap the scale around.
            scale: decimals.checked_add(frac_len).ok_or(FieldError::Value)?,
            decimals,
        })
    }

    /// `-?[0-9]{1,19}`, what clients send nearly always, in one pass; `None` for
    /// anything else, which the general path above decides. The same number the
    /// general path builds: leading zeros only change the count of digits, and
    /// without a fraction the scale is `decimals` itself.
    #[inline(always)]
    fn plain_integer(value: &str, decimals: u32) -> Option<FixedPoint> {
        let bytes = value.as_bytes();
        let (negative, digits) = match bytes.split_first()? {
            (b'-', rest) => (true, rest),
            _ => (false, bytes),
        };
        if digits.is_empty() || digits.len() > SMALL_DIGITS {
            return None;
        }
        let mut mantissa = 0u64;
        for &b in digits {
            if !b.is_ascii_digit() {
                return None;
            }
            mantissa = mantissa * 10 + u64::from(b - b'0');
        }
        Some(FixedPoint {
            negative: negative && mantissa != 0,
            digits: Digits::Small { mantissa },
            scale: decimals,
            decimals,
        })
    }

    /// The exact quotient, correctly rounded to `f64`.
    pub fn to_f64(&self) -> f64 {
        // Fast path (Clinger): both operands exact in f64, one rounding.
        if let Digits::Small { mantissa } = self.digits
            && self.scale <= 22
            && mantissa <= 1 << 53
            && let Some(pow) = usize::try_from(self.scale)
                .ok()
                .and_then(|s| POW10_F64.get(s))
        {
            let v = mantissa as f64 / pow;
            return if self.negative { -v } else { v };
        }
        let sign = if self.negative { "-" } else { "" };
        let text = match &self.digits {
            Digits::Small { mantissa, .. } => format!("{sign}{mantissa}e-{}", self.scale),
            Digits::Big(d) => format!("{sign}{d}e-{}", self.scale),
        };
        // Rust's float parser is correctly rounded for any digit count.
        text.parse::<f64>().unwrap_or(f64::NAN)
    }

    /// The quotient truncated toward zero, or `None` beyond `i128`.
    pub fn to_i128_trunc(&self) -> Option<i128> {
        let magnitude: i128 = match &self.digits {
            Digits::Small { mantissa, .. } => match pow10_u128(self.scale) {
                Some(p) => i128::try_from(u128::from(*mantissa) / p).ok()?,
                // 10^scale is beyond u128, so beyond any u64 mantissa.
                None => 0,
            },
            Digits::Big(d) => {
                let keep = d.len().saturating_sub(self.scale_usize());
                let int_digits = d.get(..keep)?;
                if int_digits.is_empty() {
                    0
                } else {
                    int_digits.parse::<i128>().ok()?
                }
            }
        };
        Some(if self.negative { -magnitude } else { magnitude })
    }

    /// The scale as a digit count; a scale beyond `usize` (impossible on
    /// 32- and 64-bit targets) saturates, which leaves no integer digits.
    fn scale_usize(&self) -> usize {
        usize::try_from(self.scale).unwrap_or(usize::MAX)
    }

    /// True when the quotient has no fractional part.
    pub fn is_integral(&self) -> bool {
        match &self.digits {
            Digits::Small { mantissa, .. } => match pow10_u128(self.scale) {
                Some(p) => u128::from(*mantissa) % p == 0,
                None => *mantissa == 0,
            },
            Digits::Big(d) => {
                let keep = d.len().saturating_sub(self.scale_usize());
                d.get(keep..).is_some_and(|f| f.bytes().all(|b| b == b'0'))
            }
        }
    }
}

/// Which half of a fixed-point pair was malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldError {
    /// The `value` half.
    Value,
    /// The `decimals` half.
    Decimals,
}

static POW10_F64: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// `[+-]?digits[.digits]` → (negative, integer digits, fraction digits).
/// One pass over the text: this runs once per number of every request.
fn split_decimal(text: &str) -> Option<(bool, &str, &str)> {
    let (negative, rest) = match text.as_bytes().first()? {
        b'-' => (true, text.get(1..)?),
        b'+' => (false, text.get(1..)?),
        _ => (false, text),
    };
    let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
    let (int_part, after) = rest.split_at_checked(int_len)?;
    if after.is_empty() {
        return (!int_part.is_empty()).then_some((negative, int_part, ""));
    }
    // Both sides of a point must hold digits: "1." and ".5" are refused.
    let frac_part = after.strip_prefix('.')?;
    if int_part.is_empty() || frac_part.is_empty() || !frac_part.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    Some((negative, int_part, frac_part))
}

fn parse_decimals(text: &str) -> Option<u32> {
    if text.is_empty() || text.len() > 3 {
        return None;
    }
    // At most three digits: no overflow.
    let d = text.bytes().try_fold(0u32, |d, b| {
        b.is_ascii_digit().then(|| d * 10 + u32::from(b - b'0'))
    })?;
    (d <= MAX_DECIMALS).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::fp;
    use super::*;

    /// The one-pass integer path builds exactly what the general path builds,
    /// and leaves every other text to it.
    #[test]
    fn plain_integers_match_the_general_path() {
        let mut texts: Vec<String> = [
            "0",
            "-0",
            "7",
            "-7",
            "007",
            "-007",
            "0000000000000000000",
            "9999999999999999999",
            "-9999999999999999999",
            "18446744073709551615",
            "00000000000000000001",
            "+1",
            "1.5",
            "-",
            "",
            "1e3",
            "--1",
            "1-",
            " 1",
        ]
        .iter()
        .map(|t| t.to_string())
        .collect();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let digits = (x % 20) as u32 + 1;
            let v = x % 10u64.pow(digits.min(19));
            texts.push(if x & 1 == 0 {
                format!("-{v}")
            } else {
                v.to_string()
            });
        }
        // The form the one-pass path takes: an optional minus, then 1 to 19 digits.
        let plain_form = |t: &str| {
            let digits = t.strip_prefix('-').unwrap_or(t);
            (1..=SMALL_DIGITS).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
        };
        for text in &texts {
            for decimals in [0, 6, 18] {
                let plain = FixedPoint::plain_integer(text, decimals);
                assert_eq!(plain.is_some(), plain_form(text), "{text}");
                if let Some(p) = plain {
                    assert_eq!(Ok(p), FixedPoint::parse_any(text, decimals), "{text}");
                }
            }
        }
    }

    #[test]
    fn fixed_point_is_exact() {
        assert_eq!(fp("7286679744720459", "17").to_f64(), 0.07286679744720459);
        assert_eq!(fp("-15", "1").to_f64(), -1.5);
        assert_eq!(fp("1", "18").to_f64(), 1e-18);
        // 2^63 + 1 does not fit the fast path; the slow path stays exact.
        assert_eq!(
            fp("9223372036854775809", "0").to_f64(),
            9223372036854775808.0
        );
        assert_eq!(
            fp("123456789012345678901234567890", "18").to_f64(),
            // The reference is Rust's own correctly rounded parse of the exact decimal.
            "123456789012.34567890123456789".parse::<f64>().unwrap()
        );
        assert_eq!(fp("1.25", "1").to_f64(), 0.125);
        assert_eq!(fp("0", "5").to_f64(), 0.0);
        assert_eq!(fp("-0", "0").to_f64().to_bits(), 0.0f64.to_bits());
    }

    #[test]
    fn fixed_point_matches_decimal_then_f64_then_f32() {
        // OpenGradient: np.float32(Decimal(v) / Decimal(10**d)); Decimal → f64 → f32.
        let x = fp("16777217", "0").to_f64() as f32; // 2^24 + 1 rounds to even
        assert_eq!(x, 16777216.0);
        assert_eq!(fp("1", "1").to_f64() as f32, 0.1f32);
    }

    #[test]
    fn integers_truncate_toward_zero_like_np_int() {
        assert_eq!(fp("15", "1").to_i128_trunc(), Some(1));
        assert_eq!(fp("-15", "1").to_i128_trunc(), Some(-1));
        assert_eq!(fp("5", "3").to_i128_trunc(), Some(0));
        assert_eq!(fp("42", "0").to_i128_trunc(), Some(42));
        assert!(!fp("15", "1").is_integral() && fp("10", "1").is_integral());
    }

    #[test]
    fn short_and_long_digit_strings_agree() {
        // 19 digits stay inline, 20 go to the text form: both answer alike.
        let inline = fp("1234567890123456789", "3");
        let long = fp("12345678901234567890", "4");
        assert_eq!(inline.to_i128_trunc(), Some(1_234_567_890_123_456));
        assert_eq!(long.to_i128_trunc(), Some(1_234_567_890_123_456));
        assert_eq!(
            inline.to_f64(),
            "1234567890123456.789".parse::<f64>().unwrap()
        );
        assert_eq!(
            long.to_f64(),
            "1234567890123456.789".parse::<f64>().unwrap()
        );
        // Leading zeros, in the integer part and past the point.
        assert_eq!(fp("000.00125", "0").to_f64(), 0.00125);
        assert_eq!(fp("000.00125", "0").digits, fp("125", "5").digits);
        assert_eq!(fp("00100", "2").to_i128_trunc(), Some(1));
        // Scales beyond 10^38 (and beyond u64) truncate to zero, exactly.
        assert_eq!(fp("99", "18").to_i128_trunc(), Some(0));
        assert_eq!(fp("9.9", "18").to_i128_trunc(), Some(0));
        assert!(!fp("1", "18").is_integral());
        assert!(fp("1000", "3").is_integral() && fp("0", "18").is_integral());
        assert!(fp("100000000000000000000", "18").is_integral());
        assert_eq!(fp("100000000000000000000", "18").to_i128_trunc(), Some(100));
        assert_eq!(fp("-0.0", "0").to_f64().to_bits(), 0.0f64.to_bits());
    }

    #[test]
    fn rejects_bad_fields() {
        assert_eq!(FixedPoint::parse("1e5", "0"), Err(FieldError::Value));
        assert_eq!(FixedPoint::parse("abc", "0"), Err(FieldError::Value));
        assert_eq!(FixedPoint::parse("", "0"), Err(FieldError::Value));
        assert_eq!(FixedPoint::parse("1.", "0"), Err(FieldError::Value));
        for bad in [
            ".5", "-.5", "1.2.3", "-", "+", "1a", "1.a", "--1", "1 ", "٣",
        ] {
            assert_eq!(FixedPoint::parse(bad, "0"), Err(FieldError::Value), "{bad}");
        }
        assert_eq!(fp("+1.50", "0").digits, fp("150", "2").digits);
        assert_eq!(fp("+1.50", "0").to_f64(), 1.5);
        assert_eq!(FixedPoint::parse("1", "19"), Err(FieldError::Decimals));
        assert_eq!(FixedPoint::parse("1", "-1"), Err(FieldError::Decimals));
        assert_eq!(FixedPoint::parse("1", "1.5"), Err(FieldError::Decimals));
        assert_eq!(
            FixedPoint::parse(&"9".repeat(65), "0"),
            Err(FieldError::Value)
        );
    }
}
