//! The demo site's memory: who may log in, the live sessions, and the counts.
//!
//! Main types: [`Shared`] (the handle every handler gets) around [`State`].
//! Everything lives in memory only; nothing is persisted, so restarting the server
//! forgets every session (a browser that kept its cookie is simply sent to `/login`
//! again). This module does no HTTP and no HTML; the routes do that.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::{Counts, UserCounts};

/// The state every handler shares. The lock is only ever taken for a few map
/// operations and never held across an `.await`, so a std `Mutex` is enough.
#[derive(Clone, Default)]
pub(crate) struct Shared(Arc<Mutex<State>>);

/// Sessions and counts, behind [`Shared`]'s lock.
#[derive(Default)]
pub(crate) struct State {
    /// Session id → username.
    sessions: HashMap<String, String>,
    counts: Counts,
    /// Mixed into every session id so that two logins in the same nanosecond still
    /// get different ids.
    issued: u64,
    /// Randomly keyed per process, which makes session ids unguessable enough for
    /// a demo without pulling in a random-number crate.
    keys: RandomState,
    /// Usernames whose logins get the challenge page (see [`Shared::set_challenged`]).
    challenged: std::collections::HashSet<String>,
    /// The TOTP period in seconds, if not the usual 30 (see [`Shared::set_totp_period`]).
    totp_period: Option<u64>,
    /// Username → the time step of the last code it was verified with: a code is
    /// taken once, as RFC 6238 §5.2 says and real sites do.
    last_step: HashMap<String, u64>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // No code panics while holding the lock, but if a future change does, the
        // counts are still the best record of what happened: keep serving them.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Checks the credentials. On success counts a login and returns a new session
    /// id; on failure counts a failed login for a well-formed `user-N` name.
    pub(crate) fn login(&self, username: &str, password: &str, client: &Client) -> Option<String> {
        let mut state = self.lock();
        if !credentials_ok(username, password) {
            // Only names that could be real users get an entry, so that a client
            // posting arbitrary names cannot grow the counts without bound and the
            // tests' expected `Counts` stay small.
            if user_number(username).is_some() {
                state.user(username).failed_logins += 1;
            }
            return None;
        }
        let id = state.new_session_id();
        state.sessions.insert(id.clone(), username.to_owned());
        let counts = state.user(username);
        counts.logins += 1;
        count_client(counts, client);
        Some(id)
    }

    /// Whether `username`'s logins are answered with the challenge page.
    pub(crate) fn set_challenged(&self, username: &str, on: bool) {
        let mut state = self.lock();
        if on {
            state.challenged.insert(username.to_owned());
        } else {
            state.challenged.remove(username);
        }
    }

    /// If `username` is challenged, counts the challenge and says so (no login).
    pub(crate) fn challenge(&self, username: &str) -> bool {
        let mut state = self.lock();
        if !state.challenged.contains(username) {
            return false;
        }
        state.user(username).challenges += 1;
        true
    }

    /// The user a session id belongs to, if it is a live session.
    pub(crate) fn user_for(&self, session: &str) -> Option<String> {
        self.lock().sessions.get(session).cloned()
    }

    /// Counts one add of `item` for `user`; returns the user's total adds.
    pub(crate) fn add(&self, user: &str, item: u32, client: &Client) -> u64 {
        let mut state = self.lock();
        let counts = state.user(user);
        count_client(counts, client);
        counts.adds += 1;
        *counts.items.entry(item).or_default() += 1;
        counts.adds
    }

    /// Counts one export for `user`; returns the user's total exports.
    pub(crate) fn export(&self, user: &str) -> u64 {
        let mut state = self.lock();
        let counts = state.user(user);
        counts.exports += 1;
        counts.exports
    }

    /// Records the files of one upload for `user`.
    pub(crate) fn upload(&self, user: &str, files: Vec<crate::Upload>) {
        self.lock().user(user).uploads.extend(files);
    }

    /// Records the country `user` saved in the settings form, and counts what came
    /// with it.
    pub(crate) fn save_settings(&self, user: &str, country: &str, flags: Flags) {
        let mut state = self.lock();
        let counts = state.user(user);
        counts.countries.push(country.to_owned());
        counts.consents += u64::from(flags.consent);
        counts.newsletters += u64::from(flags.newsletter);
        counts.terms_accepted += u64::from(flags.terms);
    }

    /// Counts one cart `user` cleared.
    pub(crate) fn clear(&self, user: &str) {
        self.lock().user(user).clears += 1;
    }

    /// Records a name `user` typed into the page's prompt.
    pub(crate) fn rename(&self, user: &str, name: &str) {
        self.lock().user(user).names.push(name.to_owned());
    }

    /// Counts one authorization `user` gave in the popup.
    pub(crate) fn authorize(&self, user: &str) {
        self.lock().user(user).authorizations += 1;
    }

    /// Records the card number `user` paid with.
    pub(crate) fn pay(&self, user: &str, number: &str) {
        self.lock().user(user).cards.push(number.to_owned());
    }

    /// Checks a one-time code of `user`'s [`crate::totp_secret`] against this window
    /// and the one either side (RFC 6238 §5.2), and counts it: verified, reused (the
    /// code of a window the user already verified with, or of an earlier one), or
    /// bad.
    pub(crate) fn verify(&self, user: &str, code: &str) -> bool {
        let mut state = self.lock();
        let period = state.totp_period.unwrap_or(30);
        let totp = totp_rs::Builder::new()
            .with_secret(totp_key(user))
            .with_step_duration(period)
            .build()
            .expect("a 20-byte key and a non-zero period are a good generator");
        let step = totp.check_current(code.trim());
        let last = state.last_step.get(user).copied();
        let fresh = step.filter(|&s| last.is_none_or(|last| s > last));
        if let Some(s) = fresh {
            state.last_step.insert(user.to_owned(), s);
        }
        let counts = state.user(user);
        match (fresh, step) {
            (Some(_), _) => counts.verified += 1,
            (None, Some(_)) => counts.reused_codes += 1,
            (None, None) => counts.bad_codes += 1,
        }
        fresh.is_some()
    }

    /// The TOTP period `/verify` checks codes with, in seconds (at least 1).
    pub(crate) fn set_totp_period(&self, seconds: u64) {
        self.lock().totp_period = Some(seconds.max(1));
    }

    /// A copy of the counts as they are now.
    pub(crate) fn counts(&self) -> Counts {
        self.lock().counts.clone()
    }
}

/// What a settings save carried besides the country.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Flags {
    /// The cookie banner was accepted first.
    pub(crate) consent: bool,
    /// The newsletter box was checked.
    pub(crate) newsletter: bool,
    /// The terms box was checked.
    pub(crate) terms: bool,
}

/// What a request said about its client: the headers a proxy or the browser's
/// identity set (each absent when the request did not carry it).
#[derive(Debug, Default)]
pub(crate) struct Client {
    pub(crate) via: Option<String>,
    pub(crate) user_agent: Option<String>,
    pub(crate) accept_language: Option<String>,
}

fn count_client(counts: &mut UserCounts, client: &Client) {
    for (seen, map) in [
        (&client.via, &mut counts.via),
        (&client.user_agent, &mut counts.user_agents),
        (&client.accept_language, &mut counts.accept_languages),
    ] {
        if let Some(v) = seen {
            *map.entry(v.clone()).or_default() += 1;
        }
    }
}

impl std::fmt::Debug for Shared {
    /// Opaque: printing sessions would print live session ids.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl State {
    fn user(&mut self, username: &str) -> &mut UserCounts {
        self.counts.users.entry(username.to_owned()).or_default()
    }

    /// 128 bits, hex: two keyed hashes of (counter, wall clock, half).
    fn new_session_id(&mut self) -> String {
        self.issued += 1;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let half = |tag: u8| {
            let mut hasher = self.keys.build_hasher();
            hasher.write_u64(self.issued);
            hasher.write_u128(nanos);
            hasher.write_u8(tag);
            hasher.finish()
        };
        format!("{:016x}{:016x}", half(0), half(1))
    }
}

/// `N` for a canonical `user-N` (N a positive integer without leading zeros).
///
/// Canonical only, so that `user-01` is not a second spelling of `user-1`: the
/// counts are keyed by the username string.
pub(crate) fn user_number(username: &str) -> Option<u64> {
    let digits = username.strip_prefix("user-")?;
    if digits.is_empty() || digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// `user-N` logs in with `pass-N`, and nothing else logs in.
/// The 20 key bytes (SHA-1's size, as RFC 4226 suggests) behind `username`'s TOTP
/// secret: the name padded with a fixed text.
pub(crate) fn totp_key(username: &str) -> Vec<u8> {
    let mut key: Vec<u8> = username.bytes().chain(*b"/demo-site-totp-key/").collect();
    key.truncate(20);
    key
}

pub(crate) fn credentials_ok(username: &str, password: &str) -> bool {
    user_number(username).is_some_and(|n| password.strip_prefix("pass-") == Some(&n.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_numbers() {
        fn check(input: &str, expected: Option<u64>) {
            assert_eq!(user_number(input), expected, "input {input:?}");
        }
        check("user-1", Some(1));
        check("user-10", Some(10));
        check("user-18446744073709551615", Some(u64::MAX));
        check("user-18446744073709551616", None);
        check("user-0", None);
        check("user-01", None);
        check("user-", None);
        check("user--1", None);
        check("user-+1", None);
        check("user-1 ", None);
        check("User-1", None);
        check("admin", None);
        check("", None);
    }

    #[test]
    fn credentials() {
        fn check(username: &str, password: &str, expected: bool) {
            assert_eq!(
                credentials_ok(username, password),
                expected,
                "{username:?} / {password:?}"
            );
        }
        check("user-1", "pass-1", true);
        check("user-42", "pass-42", true);
        check("user-1", "pass-2", false);
        check("user-1", "pass-01", false);
        check("user-1", "", false);
        check("user-0", "pass-0", false);
        check("user-01", "pass-1", false);
        check("admin", "admin", false);
    }

    #[test]
    fn session_ids_are_distinct_and_fixed_width() {
        let mut state = State::default();
        let ids: std::collections::HashSet<String> =
            (0..1000).map(|_| state.new_session_id()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(
            ids.iter()
                .all(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        );
    }
}
