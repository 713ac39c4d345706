//! Pairing PINs: how they are drawn and which ones are never handed out.
//!
//! A PIN is `digits` decimal digits (6 to 12, 8 by default), each drawn on
//! its own and uniformly from `0..10` with the thread's cryptographic RNG
//! (rand's range sampling rejects the values that would bias it, so no
//! digit is likelier than another: a PIN of n digits is one of 10ⁿ codes,
//! less the trivial ones below).
//!
//! # Trivial PINs
//! A PIN that a person would guess first is refused and drawn again. For
//! every length, these 30 codes are trivial:
//! - one digit repeated: `00000000`, `11111111`, … `99999999`;
//! - a straight ascending run, each digit one more than the last, wrapping
//!   from 9 to 0: `12345678`, `01234567`, `89012345`, `90123456`;
//! - a straight descending run, each digit one less than the last,
//!   wrapping from 0 to 9: `87654321`, `76543210`, `10987654`, `21098765`.
//!
//! (Matter's onboarding rules forbid the same family of codes.) Redrawing
//! removes 30 of 10ⁿ codes, which leaves the rest exactly uniform.

use rand::{CryptoRng, RngExt};
use zeroize::Zeroizing;

/// The fewest digits a PIN may have.
pub const MIN_PIN_DIGITS: usize = 6;
/// The most digits a PIN may have.
pub const MAX_PIN_DIGITS: usize = 12;
/// The default PIN length.
pub const DEFAULT_PIN_DIGITS: usize = 8;

/// A PIN length outside [`MIN_PIN_DIGITS`]`..=`[`MAX_PIN_DIGITS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a PIN has {MIN_PIN_DIGITS} to {MAX_PIN_DIGITS} digits, not {0}")]
pub struct PinLengthError(pub usize);

/// Checks a PIN length.
///
/// # Errors
/// [`PinLengthError`] outside [`MIN_PIN_DIGITS`]`..=`[`MAX_PIN_DIGITS`].
pub fn check_length(digits: usize) -> Result<usize, PinLengthError> {
    if (MIN_PIN_DIGITS..=MAX_PIN_DIGITS).contains(&digits) {
        Ok(digits)
    } else {
        Err(PinLengthError(digits))
    }
}

/// Draws a PIN of `digits` digits from `rng`, never a trivial one (see the
/// [module docs](self)).
///
/// # Errors
/// [`PinLengthError`] when `digits` is out of bounds.
pub fn generate<R: CryptoRng + ?Sized>(
    digits: usize,
    rng: &mut R,
) -> Result<Zeroizing<String>, PinLengthError> {
    check_length(digits)?;
    Ok(generate_from(digits, || rng.random_range(0..10u8)))
}

/// Draws PINs digit by digit from `next_digit` (each call returns `0..10`)
/// until one is not trivial.
fn generate_from(digits: usize, mut next_digit: impl FnMut() -> u8) -> Zeroizing<String> {
    loop {
        let mut pin = Zeroizing::new(String::with_capacity(digits));
        for _ in 0..digits {
            pin.push(char::from(b'0' + next_digit()));
        }
        if !is_trivial(&pin) {
            return pin;
        }
    }
}

/// Whether `pin` is one repeated digit or a straight ascending or
/// descending run, wrapping between 9 and 0 (see the [module docs](self)).
/// Anything but ASCII digits is not a PIN and counts as trivial, as does a
/// PIN of fewer than two digits.
pub fn is_trivial(pin: &str) -> bool {
    let digits = pin.as_bytes();
    if digits.len() < 2 || !digits.iter().all(u8::is_ascii_digit) {
        return true;
    }
    // The step from each digit to the next, modulo 10: a trivial PIN keeps
    // one step of 0 (repeated), 1 (ascending) or 9 (descending) throughout.
    let step = |pair: &[u8]| (pair[1] + 10 - pair[0]) % 10;
    let first = step(&digits[..2]);
    matches!(first, 0 | 1 | 9) && digits.windows(2).all(|pair| step(pair) == first)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn repeated_digits_and_straight_runs_are_trivial() {
        for pin in [
            "00000000",
            "99999999",
            "12345678",
            "01234567",
            "89012345",
            "90123456",
            "87654321",
            "76543210",
            "10987654",
            "21098765",
            "123456",
            "987654321098",
        ] {
            assert!(is_trivial(pin), "{pin} should be trivial");
        }
        for pin in [
            "12345679", "31415926", "11111112", "13579135", "12121212", "00000001", "98765431",
        ] {
            assert!(!is_trivial(pin), "{pin} should not be trivial");
        }
        assert!(is_trivial("1234567a"));
        assert!(is_trivial(""));
    }

    #[test]
    fn there_are_thirty_trivial_pins_of_each_length() {
        let trivial = (0..1_000_000u32)
            .filter(|n| is_trivial(&format!("{n:06}")))
            .count();
        assert_eq!(trivial, 30);
    }

    #[test]
    fn a_trivial_draw_is_drawn_again() {
        let script = [
            [0u8; 8],
            [1, 2, 3, 4, 5, 6, 7, 8],
            [8, 9, 0, 1, 2, 3, 4, 5],
            [3, 1, 4, 1, 5, 9, 2, 6],
        ];
        let mut digits = script.iter().flatten().copied();
        let pin = generate_from(8, || digits.next().expect("drew too often"));
        assert_eq!(pin.as_str(), "31415926");
        assert_eq!(digits.next(), None);
    }

    #[test]
    fn length_is_bounded() {
        let mut rng = rand::rng();
        for digits in MIN_PIN_DIGITS..=MAX_PIN_DIGITS {
            let pin = generate(digits, &mut rng).unwrap();
            assert_eq!(pin.len(), digits);
            assert!(pin.bytes().all(|b| b.is_ascii_digit()));
        }
        for digits in [0, 1, 5, 13, 100] {
            assert_eq!(generate(digits, &mut rng), Err(PinLengthError(digits)));
        }
        assert_eq!(
            PinLengthError(5).to_string(),
            "a PIN has 6 to 12 digits, not 5"
        );
    }

    #[test]
    fn every_digit_appears_at_every_position() {
        // Seeded, so the test is deterministic; the bounds are far wider
        // than chance (expected 1000 per cell, σ ≈ 30) and a biased or
        // stuck position would still fall out of them.
        let mut rng = StdRng::seed_from_u64(7);
        let mut counts = [[0u32; 10]; DEFAULT_PIN_DIGITS];
        for _ in 0..10_000 {
            let pin = generate(DEFAULT_PIN_DIGITS, &mut rng).unwrap();
            assert!(!is_trivial(&pin));
            for (position, digit) in pin.bytes().enumerate() {
                counts[position][usize::from(digit - b'0')] += 1;
            }
        }
        for (position, row) in counts.iter().enumerate() {
            for (digit, &n) in row.iter().enumerate() {
                assert!(
                    (800..=1200).contains(&n),
                    "digit {digit} at position {position}: {n} of 10000"
                );
            }
        }
    }
}
