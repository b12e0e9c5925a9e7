//! Account health: a per-account error score, and quarantine with an exponential
//! cool-down — in the spirit of Crawlee's sessions, but for real accounts, which
//! cannot be thrown away and replaced.
//!
//! The policy is [`AccountHealth::record`], a pure function of the account's state,
//! what just happened ([`Signal`]) and the time (milliseconds since the epoch, given
//! by the caller, so tests use a fake clock):
//! - every failed attempt the account is to blame for (the action failed: element
//!   missing, assertion false — not a crashed browser or a hung driver) adds 1;
//! - a challenge the project names (`[health] challenge_selector` / `challenge_text`,
//!   or the step's own keys of the same names, which replace the project's for that
//!   step; found on the page after a failed attempt) is a full score at once;
//! - at `max_score` the account is quarantined for `cooldown`, doubled for each
//!   quarantine since its last success, up to `max_cooldown`. The score stays full,
//!   so after the cool-down the account is on probation: one more failure puts it
//!   back, for twice as long;
//! - a success clears the score and the count of quarantines.
//!
//! [`Store`] keeps the state across runs of the same project in
//! `<profiles root>/health.json` (0600, written atomically, every read-modify-write
//! under an exclusive `flock` on `health.lock`, so two runners lose no update).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::HealthSettings;

/// What an attempt of the account told us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// It succeeded.
    Success,
    /// It failed, the account's fault (the reason, already redacted).
    Failure(String),
    /// The page showed the named challenge (what was found).
    Challenge(String),
}

/// One account's health, as `health.json` keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountHealth {
    /// Failed attempts in a row (a challenge counts the full score).
    #[serde(default)]
    pub score: u32,
    /// Quarantines since the last success (the cool-down doubles with each).
    #[serde(default)]
    pub quarantines: u32,
    /// Until when it is quarantined (ms since the epoch), if it ever was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<u64>,
    /// The last quarantine's cool-down.
    #[serde(default)]
    pub cooldown_ms: u64,
    /// Why it was last quarantined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A quarantine just decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantine {
    /// Why.
    pub reason: String,
    /// The score that tripped it.
    pub score: u32,
    /// Until when (ms since the epoch).
    pub until_ms: u64,
    /// Its length.
    pub cooldown_ms: u64,
}

impl AccountHealth {
    /// Whether the account is cooling at `now_ms`.
    pub fn quarantined_at(&self, now_ms: u64) -> bool {
        self.until_ms.is_some_and(|u| now_ms < u)
    }

    /// Whether there is nothing to remember.
    pub fn is_clear(&self) -> bool {
        *self == AccountHealth::default()
    }

    /// Apply `signal` at `now_ms`; `Some` when it puts the account in quarantine.
    pub fn record(
        &mut self,
        signal: &Signal,
        now_ms: u64,
        policy: &HealthSettings,
    ) -> Option<Quarantine> {
        // Without `max_score` failures never add up to a quarantine; a challenge
        // still fills the score at once.
        let max = policy.max_score.unwrap_or(u32::MAX).max(1);
        let reason = match signal {
            Signal::Success => {
                // The last quarantine stays readable (`accounts list`) once over.
                self.score = 0;
                self.quarantines = 0;
                return None;
            }
            Signal::Failure(reason) => {
                self.score = self.score.saturating_add(1).min(max);
                reason
            }
            Signal::Challenge(what) => {
                self.score = max;
                what
            }
        };
        if self.score < max {
            return None;
        }
        self.quarantines = self.quarantines.saturating_add(1);
        let cooldown = cooldown(policy, self.quarantines);
        let cooldown_ms = u64::try_from(cooldown.as_millis()).unwrap_or(u64::MAX);
        let until_ms = now_ms.saturating_add(cooldown_ms);
        self.until_ms = Some(until_ms);
        self.cooldown_ms = cooldown_ms;
        self.reason = Some(reason.clone());
        Some(Quarantine {
            reason: reason.clone(),
            score: self.score,
            until_ms,
            cooldown_ms,
        })
    }
}

/// The `n`-th (1-based) quarantine's length: `cooldown × 2^(n-1)`, at most `max_cooldown`.
pub fn cooldown(policy: &HealthSettings, n: u32) -> Duration {
    let factor = 2u32.saturating_pow(n.saturating_sub(1));
    policy
        .cooldown
        .checked_mul(factor)
        .unwrap_or(Duration::MAX)
        .min(policy.max_cooldown.max(policy.cooldown))
}

/// Now, in ms since the epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// An epoch-ms time as RFC 3339 UTC (seconds).
pub fn rfc3339(ms: u64) -> String {
    let secs = i64::try_from(ms / 1000).unwrap_or(i64::MAX);
    chrono::DateTime::from_timestamp(secs, 0).map_or_else(
        || ms.to_string(),
        |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}

/// `health.json` as written.
#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    #[serde(default)]
    accounts: BTreeMap<u64, AccountHealth>,
}

/// The project's health state beside its profiles.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// The store of the profiles root `root` (nothing is read or created yet).
    pub fn new(root: &Path) -> Store {
        Store {
            root: root.to_path_buf(),
        }
    }

    /// `health.json`'s path.
    pub fn path(&self) -> PathBuf {
        self.root.join("health.json")
    }

    /// Every account's state (empty when the file does not exist).
    pub fn load(&self) -> io::Result<BTreeMap<u64, AccountHealth>> {
        Ok(self.read()?.accounts)
    }

    fn read(&self) -> io::Result<File> {
        match std::fs::read(self.path()) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{}: {e} (expected batch-cli's health state)",
                        self.path().display()
                    ),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(File::default()),
            Err(e) => Err(e),
        }
    }

    /// Read-modify-write of the whole file under the lock; returns what `f` returns.
    pub fn update<R>(
        &self,
        f: impl FnOnce(&mut BTreeMap<u64, AccountHealth>) -> R,
    ) -> io::Result<R> {
        if !self.root.exists() {
            fsutil::private_dir(&self.root)?;
        }
        let lock = fsutil::open_lock_file(&self.root.join("health.lock"), true)?;
        // Blocking: the critical section is one small read and one atomic write.
        lock.lock()?;
        let mut file = self.read()?;
        let r = f(&mut file.accounts);
        file.accounts.retain(|_, h| !h.is_clear());
        let bytes = serde_json::to_vec_pretty(&file).expect("health state serializes");
        fsutil::write_atomic(&self.path(), &bytes, 0o600)?;
        drop(lock);
        Ok(r)
    }

    /// `record` for one account, persisted.
    pub fn record(
        &self,
        account: u64,
        signal: &Signal,
        now_ms: u64,
        policy: &HealthSettings,
    ) -> io::Result<(AccountHealth, Option<Quarantine>)> {
        self.update(|all| {
            let h = all.entry(account).or_default();
            let q = h.record(signal, now_ms, policy);
            (h.clone(), q)
        })
    }

    /// Forget the accounts' state; returns those that had any.
    pub fn release(&self, accounts: &[u64]) -> io::Result<Vec<u64>> {
        self.update(|all| {
            accounts
                .iter()
                .filter(|a| all.remove(a).is_some())
                .copied()
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_score: u32, cooldown_s: u64, max_s: u64) -> HealthSettings {
        HealthSettings {
            max_score: Some(max_score),
            cooldown: Duration::from_secs(cooldown_s),
            max_cooldown: Duration::from_secs(max_s),
            ..HealthSettings::default()
        }
    }

    fn f() -> Signal {
        Signal::Failure("no #add".into())
    }
    fn c() -> Signal {
        Signal::Challenge("#captcha".into())
    }

    /// The default policy (no `max_score`): failures, however many, never
    /// quarantine — `--retries` keeps its meaning — but a challenge does, at once.
    #[test]
    fn without_max_score_only_a_challenge_quarantines() {
        let policy = HealthSettings::default();
        assert_eq!(policy.max_score, None);
        let mut h = AccountHealth::default();
        for i in 0..100 {
            assert!(h.record(&f(), i * 1000, &policy).is_none(), "failure {i}");
        }
        let q = h
            .record(&c(), 200_000, &policy)
            .expect("a challenge quarantines");
        assert!(h.quarantined_at(200_001), "{q:?}");
    }

    /// (signals at times in seconds, expected: score after each, quarantine length
    /// in seconds when one starts).
    #[test]
    fn score_and_cooldown_table() {
        type Case = (&'static str, Vec<(u64, Signal)>, Vec<(u32, Option<u64>)>);
        let ok = Signal::Success;
        let cases: Vec<Case> = vec![
            (
                "three failures in a row quarantine for the base cool-down",
                vec![(0, f()), (1, f()), (2, f())],
                vec![(1, None), (2, None), (3, Some(600))],
            ),
            (
                "a success in between clears the score",
                vec![(0, f()), (1, f()), (2, ok.clone()), (3, f())],
                vec![(1, None), (2, None), (0, None), (1, None)],
            ),
            (
                "a challenge is a full score at once",
                vec![(0, c())],
                vec![(3, Some(600))],
            ),
            (
                "probation: one failure after the cool-down doubles it, then caps",
                vec![(0, c()), (700, f()), (2000, f()), (5000, f()), (99999, f())],
                vec![
                    (3, Some(600)),
                    (3, Some(1200)),
                    (3, Some(2400)),
                    (3, Some(3600)),
                    (3, Some(3600)),
                ],
            ),
            (
                "a success after a quarantine restarts the doubling",
                vec![(0, c()), (700, ok.clone()), (800, c())],
                vec![(3, Some(600)), (0, None), (3, Some(600))],
            ),
            (
                "max_score 1: the first failure quarantines",
                vec![(0, f())],
                vec![(1, Some(600))],
            ),
        ];
        for (name, signals, expected) in cases {
            let p = if name.starts_with("max_score 1") {
                policy(1, 600, 3600)
            } else {
                policy(3, 600, 3600)
            };
            let mut h = AccountHealth::default();
            for ((t, s), (score, q)) in signals.iter().zip(&expected) {
                let now = t * 1000;
                let got = h.record(s, now, &p);
                assert_eq!(h.score, *score, "{name}: score at t={t}");
                assert_eq!(
                    got.as_ref().map(|q| q.cooldown_ms / 1000),
                    *q,
                    "{name}: quarantine at t={t}"
                );
                if let Some(q) = got {
                    assert_eq!(q.until_ms, now + q.cooldown_ms, "{name}");
                    assert!(h.quarantined_at(now + q.cooldown_ms - 1), "{name}");
                    assert!(!h.quarantined_at(now + q.cooldown_ms), "{name}");
                }
            }
        }
    }

    #[test]
    fn cooldown_doubles_and_saturates() {
        let p = policy(3, 600, 24 * 3600);
        let secs: Vec<u64> = [1, 2, 3, 4, 8, 40, u32::MAX]
            .iter()
            .map(|n| cooldown(&p, *n).as_secs())
            .collect();
        assert_eq!(secs, [600, 1200, 2400, 4800, 76800, 86400, 86400]);
        // A max below the base is the base.
        assert_eq!(cooldown(&policy(3, 600, 60), 5).as_secs(), 600);
    }

    #[test]
    fn the_store_persists_releases_and_keeps_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("profiles");
        let store = Store::new(&root);
        assert!(store.load().unwrap().is_empty());
        let p = policy(3, 10, 100);
        let (h, q) = store.record(2, &c(), 1000, &p).unwrap();
        assert_eq!(q.unwrap().until_ms, 11_000);
        assert!(h.quarantined_at(5000));
        store.record(3, &f(), 1000, &p).unwrap();
        // A success that leaves nothing to remember removes the entry.
        store.record(4, &Signal::Success, 1000, &p).unwrap();
        let all = Store::new(&root).load().unwrap();
        assert_eq!(all.keys().copied().collect::<Vec<_>>(), [2, 3]);
        assert_eq!(all[&2].reason.as_deref(), Some("#captcha"));
        let mode = std::fs::metadata(store.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(store.release(&[2, 9]).unwrap(), [2]);
        assert_eq!(
            store.load().unwrap().keys().copied().collect::<Vec<_>>(),
            [3]
        );
    }

    #[test]
    fn concurrent_updates_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let p = policy(1000, 10, 100);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..25 {
                        store.record(1, &f(), 0, &p).unwrap();
                    }
                });
            }
        });
        assert_eq!(store.load().unwrap()[&1].score, 100);
    }

    #[test]
    fn a_corrupt_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        std::fs::write(store.path(), "{").unwrap();
        let e = store.load().unwrap_err().to_string();
        assert!(e.contains("health.json"), "{e}");
    }
}
