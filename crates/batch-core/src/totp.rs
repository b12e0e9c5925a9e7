//! One-time codes for `{totp.FIELD}`: an account field holding a TOTP secret (RFC
//! 6238) — base32 as sites show it under "can't scan the QR code?", or the
//! `otpauth://totp/…` URI inside the QR code — gives the code of the moment.
//!
//! The arithmetic is `totp-rs`'s; what is ours is reading the secret the way people
//! paste it (spaces, lower case, `=` padding) and saying why one cannot be read
//! without quoting it. A URI's `digits`, `period` and `algorithm` are honoured; a
//! bare secret means SHA-1, 6 digits, 30 s, as in every authenticator app.
//!
//! A site takes each window's code once (RFC 6238 §5.2: a second login with it is
//! refused), so there is a ledger: until when the window a code was last made in
//! lasts, per secret. Before an action that would type codes, the runner
//! [`claim`]s their windows, or waits as long as it says (until the next window
//! when this one is used). The ledger is kept in this process and, once the runner names a file
//! ([`share_ledger`], in the user's runtime directory), in that file too, under an
//! exclusive lock: a run started right after another — a `--resume`, a second
//! command, a shard beside it — does not type a code the other already used. It
//! holds a hash of each secret, never the secret, and forgets a window once it ends.
//!
//! What this does not do: wait out the last second of a window. A code made then may
//! reach the site in the next window; sites accept the previous window's code for
//! that reason (RFC 6238 §5.2). Secrets shorter than RFC 4226's 128 bits are
//! accepted: many sites still hand out 80-bit ones.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use totp_rs::{Builder, Secret, Totp};

/// Hash of a secret → the end (unix seconds) of the last window a code was made in.
type Ledger = BTreeMap<u64, u64>;

/// This process's ledger.
static LEDGER: Mutex<Ledger> = Mutex::new(BTreeMap::new());

/// The file shared with this user's other runs, once the runner names one.
static SHARED: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Says once per process that the shared ledger cannot be used (every action with a
/// code would say it again otherwise); this process's own ledger goes on.
fn not_shared(file: &Path, e: &std::io::Error) {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        tracing::warn!(file = %file.display(), "one-time codes used are not shared with other runs: {e}");
    });
}

/// Keep the ledger in `file` too (see the module docs); `None` keeps it in this
/// process only. Nothing is written until a code is made.
pub(crate) fn share_ledger(file: Option<PathBuf>) {
    *SHARED.lock().unwrap_or_else(PoisonError::into_inner) = file;
}

/// `file`'s entries (`HASH END` per line, in hex and decimal), read under an
/// exclusive lock; then `update` changes them, ended windows are dropped, and the
/// rest is written back before the lock is let go. A line that cannot be read (a
/// write cut short) is dropped: the worst is one code refused once.
fn with_shared(file: &Path, update: impl FnOnce(&mut Ledger)) -> std::io::Result<Ledger> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(file)?;
    f.lock()?;
    let mut text = String::new();
    f.read_to_string(&mut text)?;
    let mut ledger: Ledger = (text.lines())
        .filter_map(|l| {
            let (hash, end) = l.split_once(' ')?;
            Some((u64::from_str_radix(hash, 16).ok()?, end.parse().ok()?))
        })
        .collect();
    let before = ledger.clone();
    update(&mut ledger);
    let now = unix_now().as_secs();
    ledger.retain(|_, end| *end > now);
    if ledger != before {
        let lines: String = (ledger.iter())
            .map(|(h, e)| format!("{h:016x} {e}\n"))
            .collect();
        f.set_len(0)?;
        f.rewind()?;
        f.write_all(lines.as_bytes())?;
    }
    Ok(ledger)
}

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
#[cfg(test)]
pub(crate) fn code_at(seed: &str, unix_time: u64) -> Result<String, String> {
    Ok(parse(seed)?.generate(unix_time).to_string())
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// The ledger's key for a secret: a hash of its bytes (however it was written) and
/// its period.
fn ledger_key(totp: &Totp) -> u64 {
    let mut h = DefaultHasher::new();
    (totp.secret().as_bytes(), totp.step()).hash(&mut h);
    h.finish()
}

/// The code for `seed` now; its window is entered in the ledger as used (in the
/// shared file too, if there is one and it can be written; if not, in this process).
pub(crate) fn code_now(seed: &str) -> Result<String, String> {
    let totp = parse(seed)?;
    let now = unix_now().as_secs();
    let end = (now / totp.step() + 1) * totp.step();
    let key = ledger_key(&totp);
    let mark = |ledger: &mut Ledger| {
        let last = ledger.entry(key).or_default();
        *last = (*last).max(end);
    };
    mark(&mut LEDGER.lock().unwrap_or_else(PoisonError::into_inner));
    if let Some(file) = SHARED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
        && let Err(e) = with_shared(&file, mark)
    {
        not_shared(&file, &e);
    }
    Ok(totp.generate(now).to_string())
}

/// Claims the current window of every secret in `seeds` for the action about to
/// type their codes, or says how long until all of them have a window nobody used
/// yet — neither this process nor a run sharing the ledger — and claims nothing.
/// One claim at a time (this process's ledger lock, then the file's), so two
/// accounts sharing a secret never both get its window; a secret named twice in
/// one action is claimed once. A value that is no secret is left out: rendering
/// says why.
pub(crate) fn claim(seeds: &[&str]) -> Duration {
    // Key → period, deduplicated.
    let keys: BTreeMap<u64, u64> = (seeds.iter())
        .filter_map(|s| parse(s).ok())
        .map(|t| (ledger_key(&t), t.step()))
        .collect();
    if keys.is_empty() {
        return Duration::ZERO;
    }
    let now = unix_now();
    let secs = now.as_secs();
    let mut own = LEDGER.lock().unwrap_or_else(PoisonError::into_inner);
    let file = SHARED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let mut busy = None;
    let shared = file.map(|f| {
        let r = with_shared(&f, |shared| {
            for (k, end) in own.iter().filter(|(k, _)| keys.contains_key(k)) {
                let e = shared.entry(*k).or_default();
                *e = (*e).max(*end);
            }
            busy = claim_in(shared, &keys, secs);
        });
        (f, r)
    });
    match shared {
        Some((_, Ok(shared))) => {
            for k in keys.keys() {
                if let Some(end) = shared.get(k) {
                    own.insert(*k, *end);
                }
            }
        }
        Some((f, Err(e))) => {
            not_shared(&f, &e);
            busy = claim_in(&mut own, &keys, secs);
        }
        None => busy = claim_in(&mut own, &keys, secs),
    }
    // A few milliseconds past the boundary, so the clock read after the sleep is in
    // the new window even if it is a little behind the timer's.
    busy.and_then(|end| Duration::from_secs(end).checked_sub(now))
        .map_or(Duration::ZERO, |d| d + Duration::from_millis(20))
}

/// In `ledger`: the latest end of a used window among `keys` (key → period), or
/// `None` after marking the current window of each as used.
fn claim_in(ledger: &mut Ledger, keys: &BTreeMap<u64, u64>, secs: u64) -> Option<u64> {
    let busy = (keys.keys())
        .filter_map(|k| ledger.get(k).copied())
        .filter(|end| *end > secs)
        .max();
    if busy.is_none() {
        for (k, step) in keys {
            ledger.insert(*k, (secs / step + 1) * step);
        }
    }
    busy
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
        // SHA-256 with its own 32-byte RFC key, and a label as an app exports it.
        let key256 = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZA";
        let sha256 = format!(
            "otpauth://totp/Site%3Ame%40example.org?secret={key256}&issuer=Site&algorithm=SHA256&digits=8"
        );
        assert_eq!(code_at(&sha256, 59).unwrap(), "46119246");
        assert_eq!(code_at(&sha256, 1_111_111_109).unwrap(), "68084774");
        // A 60 s period: T = 59 is still the first window.
        let slow = format!("otpauth://totp/x?secret={ascii_base32}&period=60");
        assert_eq!(code_at(&slow, 59).unwrap(), code_at(&slow, 0).unwrap());
    }

    /// A claimed window is used up: the next claim of that secret waits for the next
    /// window, and no longer than that; other secrets do not; a secret written
    /// another way is the same secret; one named twice in a claim is claimed once.
    #[test]
    fn a_claimed_window_is_waited_out() {
        let seed = "otpauth://totp/ledger-test?secret=MFRGGZDFMZTWQ2LK&period=2";
        let same = "otpauth://totp/Elsewhere:me?secret=MFRGGZDFMZTWQ2LK&issuer=Elsewhere&period=2";
        let other = "otpauth://totp/ledger-test?secret=MFRGGZDFMZTWQ2LL&period=2";
        // Not at a window's end, so that every claim below is in one window.
        let into = unix_now().as_secs_f64() % 2.0;
        if into > 1.5 {
            std::thread::sleep(Duration::from_secs_f64(2.05 - into));
        }
        let before = unix_now();
        assert_eq!(
            claim(&[seed, seed]),
            Duration::ZERO,
            "named twice, claimed once"
        );
        let wait = claim(&[seed]);
        let window_end = Duration::from_secs((before.as_secs() / 2 + 1) * 2);
        assert!(wait > Duration::ZERO && wait <= window_end - before + Duration::from_millis(20));
        assert!(claim(&[same]) > Duration::ZERO, "the same secret");
        assert_eq!(claim(&["not a secret"]), Duration::ZERO);
        // A busy secret holds the whole claim: `other` is not claimed with it.
        assert!(claim(&[other, seed]) > Duration::ZERO);
        assert_eq!(claim(&[other]), Duration::ZERO);
        // After the wait it is a new window, unused until claimed.
        std::thread::sleep(wait);
        assert!(
            unix_now().as_secs() / 2 > before.as_secs() / 2,
            "waited too little"
        );
        assert_eq!(claim(&[seed]), Duration::ZERO);
        assert!(claim(&[seed]) > Duration::ZERO);
        // A code made (rendered) uses its window up too.
        std::thread::sleep(claim(&[seed]));
        code_now(same).unwrap();
        assert!(claim(&[seed]) > Duration::ZERO);
    }

    /// Accounts sharing one secret, claiming at the same moment: exactly one gets
    /// the window.
    #[test]
    fn one_claim_of_many_at_once_wins() {
        let seed = "otpauth://totp/race?secret=MFRGGZDFMZTWQ2LO&period=30";
        let into = unix_now().as_secs_f64() % 30.0;
        if into > 27.0 {
            std::thread::sleep(Duration::from_secs_f64(30.05 - into));
        }
        let start = std::sync::Barrier::new(8);
        let won = std::thread::scope(|s| {
            let runs: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        start.wait();
                        claim(&[seed]).is_zero()
                    })
                })
                .collect();
            runs.into_iter()
                .filter_map(|r| r.join().unwrap().then_some(()))
                .count()
        });
        assert_eq!(won, 1);
    }

    /// What one run used, the next one sees through the shared file alone; the file
    /// holds no secret, only the user may read it, and what cannot be read or has
    /// ended is dropped from it.
    #[test]
    fn the_shared_file_carries_used_windows_to_other_runs() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("totp-used");
        share_ledger(Some(file.clone()));
        let (secret, other) = ("MFRGGZDFMZTWQ2LM", "MFRGGZDFMZTWQ2LN");
        let uri = |s: &str| format!("otpauth://totp/shared-test?secret={s}&period=30");
        // Not at a window's end, so that the checks below are in the same window.
        let into = unix_now().as_secs_f64() % 30.0;
        if into > 27.0 {
            std::thread::sleep(Duration::from_secs_f64(30.05 - into));
        }
        code_now(&uri(secret)).unwrap();
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the user's alone");
        // A write cut short and a window long ended: dropped at the next write.
        let mut text = std::fs::read_to_string(&file).unwrap();
        text.push_str("zz cut sho\n0000000000000001 5\n");
        std::fs::write(&file, text).unwrap();
        assert_eq!(claim(&[&uri(other)]), Duration::ZERO);
        // Another process: nothing in memory, the file alone.
        LEDGER.lock().unwrap().clear();
        assert!(claim(&[&uri(secret)]) > Duration::ZERO);
        assert!(claim(&[&uri(other)]) > Duration::ZERO);
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(!text.contains(secret) && !text.contains(other), "{text}");
        LEDGER.lock().unwrap().clear();
        share_ledger(None);
        assert_eq!(
            claim(&[&uri(secret)]),
            Duration::ZERO,
            "not shared: forgotten"
        );
    }

    /// A shared file that cannot be opened leaves this process's ledger working.
    #[test]
    fn an_unusable_shared_file_leaves_the_own_ledger() {
        share_ledger(Some(PathBuf::from("/nonexistent-dir/totp-used")));
        let seed = "otpauth://totp/unshared?secret=MFRGGZDFMZTWQ2LP&period=30";
        let into = unix_now().as_secs_f64() % 30.0;
        if into > 27.0 {
            std::thread::sleep(Duration::from_secs_f64(30.05 - into));
        }
        assert_eq!(claim(&[seed]), Duration::ZERO);
        assert!(claim(&[seed]) > Duration::ZERO);
        share_ledger(None);
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
