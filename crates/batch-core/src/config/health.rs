//! `[health]` of `batch.toml`: when an account is set aside (quarantined) instead of
//! being retried, and for how long. The policy itself is [`crate::health`].

use std::time::Duration;

use super::doc::{integer, positive, section, string, value};

section! {
    /// `[health]`.
    #[serde(expecting = "a [health] section")]
    pub struct HealthSettings {
        /// `max_score` (default none: off): failed attempts in a row (each counts 1) that
        /// put the account in quarantine. Off unless set, because with it every retry of
        /// an account beyond the score is given up — `--retries` keeps its meaning for a
        /// project that did not ask for quarantine. Challenge signals quarantine either way.
        max_score: Option<u32> = None, "max_score";
        /// `cooldown` (default `10m`): the first quarantine's length, doubled per repeat.
        cooldown: Duration = Duration::from_secs(600), "cooldown";
        /// `max_cooldown` (default `24h`): the doubling stops here.
        max_cooldown: Duration = Duration::from_secs(24 * 3600), "cooldown";
        /// `challenge_selector` (default none): a CSS selector whose presence on the page
        /// after a failed attempt means "challenged" (a captcha, a login wall) — a full
        /// score at once, no retries.
        challenge_selector: Option<String> = None, "challenge";
        /// `challenge_text` (default none): text whose presence in the page's source
        /// after a failed attempt means the same (e.g. `"Too Many Requests"`).
        challenge_text: Option<String> = None, "challenge";
    }
}

value! {
    max_score -> Option<u32> = |v| {
        integer(v, 1, u32::MAX.into(), "a whole number, 1 or more").map(|n| Some(n as u32))
    };
    cooldown -> Duration = |v| positive(v, "cool-down", "10m");
    pub(super) challenge -> Option<String> = |v| match string(v, "a non-empty string")? {
        "" => Err("an empty string (expected a selector or text to look for)".into()),
        s => Ok(Some(s.to_owned())),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::settings::parse_settings;

    fn parse(text: &str) -> Result<HealthSettings, String> {
        parse_settings("/p/batch.toml".as_ref(), text)
            .map(|s| s.health)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_the_documented_example_and_overrides() {
        assert_eq!(parse("").unwrap(), HealthSettings::default());
        let doc = crate::config::settings::tests::docs_example("## `batch.toml`");
        // Its `proxy_ca` names a file beside a real batch.toml (loaded in settings' tests).
        let doc: String = doc
            .lines()
            .filter(|l| !l.starts_with("proxy_ca"))
            .map(|l| format!("{l}\n"))
            .collect();
        let h = parse(&doc).unwrap();
        assert_eq!(h.challenge_selector.as_deref(), Some("#captcha"));
        assert_eq!(h.challenge_text.as_deref(), Some("Too Many Requests"));
        assert_eq!((h.max_score, h.cooldown.as_secs()), (Some(3), 600));
        let h =
            parse("[health]\nmax_score = 1\ncooldown = \"3s\"\nmax_cooldown = \"1m\"\n").unwrap();
        assert_eq!(
            (h.max_score, h.cooldown, h.max_cooldown),
            (Some(1), Duration::from_secs(3), Duration::from_secs(60))
        );
    }

    #[test]
    fn bad_values_name_the_key_and_line() {
        for (text, message) in [
            (
                "[health]\nmax_score = 0\n",
                "batch.toml:2: health.max_score:",
            ),
            (
                "[health]\ncooldown = \"0s\"\n",
                "health.cooldown: a zero cool-down",
            ),
            (
                "[health]\nmax_cooldown = 5\n",
                "batch.toml:2: health.max_cooldown:",
            ),
            (
                "[health]\nchallenge_selector = \"\"\n",
                "health.challenge_selector: an empty string",
            ),
            (
                "[health]\nchallenge = \"#x\"\n",
                "health: unknown key \"challenge\"",
            ),
        ] {
            let e = parse(text).expect_err(text);
            assert!(e.contains(message), "{text:?}: {e}");
        }
    }
}
