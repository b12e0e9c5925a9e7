//! The small value languages of config and flags: durations (`500ms`, `2.5s`),
//! sizes (`512MiB`, `1GiB`) and `--launch-interval` (`2.5s` or `auto`).
//!
//! Parsers return a `String` error that does not repeat the input and ends in
//! "(expected …)", so callers put it after the value they quote: `--launch-interval
//! "2.5": no unit (expected …)`, `batch.toml:3: retry.backoff: "x": not a duration (…)`.
//! Numbers are parsed as exact decimals, never through floating point.

use std::time::Duration;

/// `--launch-interval DUR|auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaunchInterval {
    /// A fixed delay before each browser creation, inside the creation lock.
    Fixed(Duration),
    /// Adaptive pacing (the default): as many creations at once as the machine
    /// keeps up with, learned from launch latency and CPU pressure.
    Auto,
}

const DURATION_EXPECTED: &str = "a number and a unit, like 500ms, 2s, 2.5s, 1m or 1h";
const SIZE_EXPECTED: &str =
    "a byte count or a number and a unit, like 1024, 512MiB, 1.5GiB or 100MB";

/// `fn(&str) -> Duration`: `500ms`, `2s`, `2.5s`, `1m`, `1h`, and `0` (no unit needed
/// for zero).
///
/// Rejects negative numbers, a missing unit and unknown units.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    let nanos = amount(s, "duration", DURATION_EXPECTED, |_, unit| match unit {
        "ms" => Ok(1_000_000),
        "s" => Ok(1_000_000_000),
        "m" => Ok(60 * 1_000_000_000),
        "h" => Ok(3_600 * 1_000_000_000),
        "" => Err(format!("no unit (expected {DURATION_EXPECTED})")),
        _ => Err(format!(
            "unknown unit {unit:?} (expected {DURATION_EXPECTED})"
        )),
    })?;
    let nanos = u64::try_from(nanos)
        .map_err(|_| "too long (expected at most a few centuries)".to_owned())?;
    Ok(Duration::from_nanos(nanos))
}

/// `fn(&str) -> bytes`: `1024` (bytes), `512MiB`, `1GiB`, `1.5GiB` (powers of 1024),
/// `100MB`, `2GB` (powers of 1000); `B`, `KB`/`KiB`, `MB`/`MiB`, `GB`/`GiB`,
/// `TB`/`TiB`, any letter case.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bytes = amount(s, "size", SIZE_EXPECTED, |number, unit| {
        let per_unit = match unit.to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" => 1_000,
            "mb" => 1_000_000,
            "gb" => 1_000_000_000,
            "tb" => 1_000_000_000_000,
            "kib" => 1 << 10,
            "mib" => 1 << 20,
            "gib" => 1 << 30,
            "tib" => 1 << 40,
            _ => return Err(format!("unknown unit {unit:?} (expected {SIZE_EXPECTED})")),
        };
        if per_unit == 1 && number.contains('.') {
            return Err(format!(
                "not a whole number of bytes (expected {SIZE_EXPECTED})"
            ));
        }
        Ok(per_unit)
    })?;
    u64::try_from(bytes).map_err(|_| format!("too large (expected {SIZE_EXPECTED})"))
}

/// `fn(&str) -> LaunchInterval`: `auto`, or a duration as [`parse_duration`] reads it.
pub fn parse_launch_interval(s: &str) -> Result<LaunchInterval, String> {
    if s.trim() == "auto" {
        return Ok(LaunchInterval::Auto);
    }
    parse_duration(s)
        .map(LaunchInterval::Fixed)
        .map_err(|_| format!("neither auto nor a duration (expected auto or {DURATION_EXPECTED})"))
}

/// `s` (`2.5s`) as a number (the leading digits and dots) times its unit's multiple,
/// which `per_unit(number, unit)` gives or refuses; `noun` ("duration") and `expected`
/// word the errors.
fn amount(
    s: &str,
    noun: &str,
    expected: &str,
    per_unit: impl Fn(&str, &str) -> Result<u128, String>,
) -> Result<u128, String> {
    let t = s.trim();
    let end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(end);
    if t.starts_with('-') {
        return Err(format!("negative (expected {expected})"));
    }
    let not_a = || format!("not a {noun} (expected {expected})");
    if number.is_empty() {
        return Err(not_a());
    }
    decimal_times(number, per_unit(number, unit)?).ok_or_else(not_a)
}

/// `number × unit` for a decimal `number` (`12`, `2.5`), exactly, truncating below
/// one unit of the result; `None` if `number` is malformed or the result overflows.
fn decimal_times(number: &str, unit: u128) -> Option<u128> {
    let (int, frac) = match number.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (number, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(int) || frac.is_some_and(|f| !all_digits(f)) {
        return None;
    }
    let whole = int.parse::<u128>().ok()?.checked_mul(unit)?;
    let Some(frac) = frac else {
        return Some(whole);
    };
    // Digits beyond 18 cannot change the result for the units used here.
    let frac = &frac[..frac.len().min(18)];
    let scale = 10u128.pow(u32::try_from(frac.len()).ok()?);
    let part = frac.parse::<u128>().ok()?.checked_mul(unit)? / scale;
    whole.checked_add(part)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_duration(input: &str, expected: Result<Duration, &str>) {
        let got = parse_duration(input);
        match (&got, &expected) {
            (Ok(g), Ok(e)) => assert_eq!(g, e, "input {input:?}"),
            (Err(g), Err(e)) => assert!(g.contains(e), "input {input:?}: {g:?} lacks {e:?}"),
            _ => panic!("input {input:?}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn durations() {
        let ms = Duration::from_millis;
        check_duration("500ms", Ok(ms(500)));
        check_duration("2s", Ok(ms(2000)));
        check_duration("2.5s", Ok(ms(2500)));
        check_duration("0.001s", Ok(ms(1)));
        check_duration("1m", Ok(ms(60_000)));
        check_duration("1.5m", Ok(ms(90_000)));
        check_duration("1h", Ok(ms(3_600_000)));
        check_duration("0", Ok(ms(0)));
        check_duration("0s", Ok(ms(0)));
        check_duration(" 3s ", Ok(ms(3000)));
        check_duration(
            "abc",
            Err("not a duration (expected a number and a unit, like 500ms, 2s, 2.5s, 1m or 1h)"),
        );
        check_duration("-1s", Err("negative (expected"));
        check_duration("5", Err("no unit (expected"));
        check_duration("1x", Err("unknown unit \"x\" (expected"));
        check_duration("", Err("not a duration (expected"));
        check_duration("s", Err("not a duration (expected"));
        check_duration("1.s", Err("not a duration (expected"));
        check_duration(".5s", Err("not a duration (expected"));
        check_duration("1.2.3s", Err("not a duration (expected"));
        check_duration("2 s", Err("unknown unit"));
        check_duration("99999999999999999999h", Err("too long (expected"));
    }

    fn check_size(input: &str, expected: Result<u64, &str>) {
        let got = parse_size(input);
        match (&got, &expected) {
            (Ok(g), Ok(e)) => assert_eq!(g, e, "input {input:?}"),
            (Err(g), Err(e)) => assert!(g.contains(e), "input {input:?}: {g:?} lacks {e:?}"),
            _ => panic!("input {input:?}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn sizes() {
        check_size("1024", Ok(1024));
        check_size("512MiB", Ok(512 << 20));
        check_size("1GiB", Ok(1 << 30));
        check_size("1.5GiB", Ok(3 << 29));
        check_size("100MB", Ok(100_000_000));
        check_size("2kib", Ok(2048));
        check_size("7B", Ok(7));
        check_size("0", Ok(0));
        check_size("1.5", Err("not a whole number of bytes (expected"));
        check_size("1XB", Err("unknown unit \"XB\" (expected"));
        check_size("-1GiB", Err("negative (expected"));
        check_size("lots", Err("not a size (expected"));
        check_size("99999999999TiB", Err("too large (expected"));
    }

    #[test]
    fn launch_intervals() {
        assert_eq!(parse_launch_interval("auto"), Ok(LaunchInterval::Auto));
        assert_eq!(
            parse_launch_interval("2.5s"),
            Ok(LaunchInterval::Fixed(Duration::from_millis(2500)))
        );
        assert_eq!(
            parse_launch_interval("0"),
            Ok(LaunchInterval::Fixed(Duration::ZERO))
        );
        let err = parse_launch_interval("soon").unwrap_err();
        assert!(
            err.starts_with("neither auto nor a duration (expected auto or"),
            "{err}"
        );
    }
}
