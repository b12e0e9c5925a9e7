//! One-time codes for `{totp.FIELD}`: an account field holding a TOTP secret (RFC
//! 6238) — base32 as sites show it under "can't scan the QR code?", or the
//! `otpauth://totp/…` URI inside the QR code — gives the code of the moment.
//!
//! The arithmetic is `totp-rs`'s; what is ours is reading the secret the way people
//! paste it (spaces, lower case, `=` padding) and saying why one cannot be read
//! without quoting it. A URI's `digits`, `period` and `algorithm` are honoured; a
//! bare secret means SHA-1, 6 digits, 30 s, as in every authenticator app.
//!
//! What this does not do: wait for a fresh code. A code rendered in the last second
//! of its 30 s may reach the site in the next window; sites accept the previous code
//! for that reason (RFC 6238 §5.2), and a rejected one is an ordinary action failure
//! that a retry renders anew. Secrets shorter than RFC 4226's 128 bits are accepted:
//! many sites still hand out 80-bit ones.

use totp_rs::{Builder, Secret, Totp};

/// What a secret should look like, for error messages.
const EXPECTED: &str = "a base32 TOTP secret like JBSWY3DPEHPK3PXP, or an otpauth://totp/ URI";

/// The end of a message about a value that is not a secret: "is not a TOTP secret:
/// WHY (expected …)".
pub(crate) fn not_a_secret(why: &str) -> String {
    format!("is not a TOTP secret: {why} (expected {EXPECTED})")
}

/// The generator for `seed`, or why it is not a TOTP secret (never quoting it).
pub(crate) fn parse(seed: &str) -> Result<Totp, String> {
    let seed = seed.trim();
    if seed.starts_with("otpauth://") {
        let totp = Totp::from_url_unchecked(seed)
            .map_err(|e| format!("not a usable otpauth:// URI ({})", describe(&e)))?;
        if !(6..=8).contains(&totp.digits()) {
            return Err(format!("{} digits where 6, 7 or 8 work", totp.digits()));
        }
        if totp.step() == 0 {
            return Err("a period of 0 s".into());
        }
        if totp.secret().as_bytes().is_empty() {
            return Err("an empty secret".into());
        }
        return Ok(totp);
    }
    let base32: String = seed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-' && *c != '=')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if base32.is_empty() {
        return Err("empty".into());
    }
    let secret = Secret::try_from_base32(&base32)
        .map_err(|_| "not base32, which has only the letters A-Z and the digits 2-7".to_owned())?;
    Ok(Builder::new().with_secret(secret).build_noncompliant())
}

/// The code for `seed` at `unix_time` (seconds).
pub(crate) fn code_at(seed: &str, unix_time: u64) -> Result<String, String> {
    Ok(parse(seed)?.generate(unix_time).to_string())
}

/// The code for `seed` now.
pub(crate) fn code_now(seed: &str) -> Result<String, String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    code_at(seed, now)
}

/// totp-rs's error, in words that never hold the secret.
fn describe(e: &totp_rs::TotpError) -> String {
    use totp_rs::TotpError as E;
    match e {
        E::InvalidSecret => "its secret is not base32".into(),
        E::SecretNotSet => "it has no secret".into(),
        E::InvalidDigits { digits } => format!("{digits} digits"),
        E::InvalidStepZero => "a period of 0".into(),
        E::InvalidScheme { .. } => "not otpauth://".into(),
        E::InvalidHost { .. } => "not otpauth://totp/".into(),
        E::InvalidAlgorithm { .. } => "an unknown algorithm".into(),
        E::DigitsParse { .. } => "digits is not a number".into(),
        E::StepParse { .. } => "period is not a number".into(),
        _ => "malformed".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1, the secret "12345678901234567890": at T = 59 s the
    /// 8-digit code is 94287082, at 1111111109 s 07081804 — the 6-digit codes are
    /// their last six digits.
    #[test]
    fn codes_match_the_rfc_vectors_however_the_secret_is_written() {
        let ascii_base32 = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
        for seed in [
            ascii_base32,
            "gezd gnbv gy3t qojq gezd gnbv gy3t qojq",
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ====",
            "  GEZD-GNBV-GY3T-QOJQ-GEZD-GNBV-GY3T-QOJQ\n",
        ] {
            assert_eq!(code_at(seed, 59).unwrap(), "287082", "{seed:?}");
            assert_eq!(code_at(seed, 1_111_111_109).unwrap(), "081804", "{seed:?}");
        }
        let uri = format!("otpauth://totp/Site:me?secret={ascii_base32}&digits=8&period=30");
        assert_eq!(code_at(&uri, 59).unwrap(), "94287082");
        assert_eq!(code_at(&uri, 1_111_111_109).unwrap(), "07081804");
        // A 60 s period: T = 59 is still the first window.
        let slow = format!("otpauth://totp/x?secret={ascii_base32}&period=60");
        assert_eq!(code_at(&slow, 59).unwrap(), code_at(&slow, 0).unwrap());
    }

    #[test]
    fn bad_secrets_say_why_without_quoting_them() {
        for (seed, why) in [
            ("", "empty"),
            ("  = ", "empty"),
            ("hunter2!", "not base32"),
            ("otpauth://hotp/x?secret=GEZDGNBV", "not otpauth://totp/"),
            ("otpauth://totp/x?digits=6", "it has no secret"),
            (
                "otpauth://totp/x?secret=GEZDGNBVGY3TQOJQ&digits=12",
                "12 digits",
            ),
            (
                "otpauth://totp/x?secret=GEZDGNBVGY3TQOJQ&period=0",
                "a period of 0",
            ),
        ] {
            let e = parse(seed).map(|_| ()).unwrap_err();
            assert!(e.contains(why), "{seed:?}: {e}");
            if seed.len() > 4 {
                assert!(!e.contains(seed.trim()), "{seed:?} quoted in {e}");
            }
        }
    }
}
