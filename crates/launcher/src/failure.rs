//! Classifying WebDriver failures: which ones mean the browser must be replaced.
//!
//! The strings matched here were observed with chromedriver 156 (see
//! CHROMIUM-FACTS.md) plus the wording of older drivers; [`Browser::health`] backs
//! them up by looking at the processes themselves.
//!
//! [`Browser::health`]: crate::Browser::health

use thirtyfour::error::{WebDriverError, WebDriverErrorInner};

/// What kind of failure an error is, for recovery decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// Chrome is gone (killed, crashed, closed).
    BrowserGone,
    /// ChromeDriver is gone or not answering.
    DriverGone,
    /// The page's renderer crashed; the browser cannot be trusted any more.
    PageCrashed,
    /// A WebDriver request hung: the driver or browser is stuck. (A `wait_for` that
    /// runs out of time is an [`FailureKind::ActionFailed`]: the page answered.)
    Timeout,
    /// The action itself failed (element missing, assertion false, script error).
    ActionFailed,
    /// The browser could not be started.
    Launch,
}

impl FailureKind {
    /// Whether the account needs a fresh browser before trying again.
    pub fn needs_new_browser(self) -> bool {
        matches!(
            self,
            FailureKind::BrowserGone
                | FailureKind::DriverGone
                | FailureKind::PageCrashed
                | FailureKind::Timeout
                | FailureKind::Launch
        )
    }

    /// The name used in journals and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::BrowserGone => "browser_gone",
            FailureKind::DriverGone => "driver_gone",
            FailureKind::PageCrashed => "page_crashed",
            FailureKind::Timeout => "timeout",
            FailureKind::ActionFailed => "action_failed",
            FailureKind::Launch => "launch",
        }
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Classify a WebDriver error by its variant and, since drivers differ, its text.
pub fn classify(err: &WebDriverError) -> FailureKind {
    classify_text(
        matches!(err.as_inner(), WebDriverErrorInner::Timeout(_)),
        &err.to_string(),
    )
}

fn classify_text(is_timeout_variant: bool, text: &str) -> FailureKind {
    let t = text.to_ascii_lowercase();
    const CRASHED: &[&str] = &["tab crashed", "page crash", "target crashed"];
    const BROWSER_GONE: &[&str] = &[
        "invalid session id",
        "session deleted",
        "not connected to devtools",
        "chrome not reachable",
        "browser has closed the connection",
        "disconnected: ",
        "no such window",
        "target window already closed",
    ];
    const DRIVER_GONE: &[&str] = &[
        "error sending request",
        "connection refused",
        "connection reset",
        "failed to send request",
        "broken pipe",
    ];
    if CRASHED.iter().any(|s| t.contains(s)) {
        FailureKind::PageCrashed
    } else if BROWSER_GONE.iter().any(|s| t.contains(s)) {
        FailureKind::BrowserGone
    } else if DRIVER_GONE.iter().any(|s| t.contains(s)) {
        FailureKind::DriverGone
    } else if is_timeout_variant || t.contains("timed out") || t.contains("timeout") {
        FailureKind::Timeout
    } else {
        FailureKind::ActionFailed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: FailureKind) {
        assert_eq!(classify_text(false, text), expected, "{text}");
    }

    #[test]
    fn classifies_observed_messages() {
        for (text, kind) in [
            (
                "The WebDriver session id is invalid: session deleted as the browser has closed the connection from disconnected: not connected to DevTools",
                FailureKind::BrowserGone,
            ),
            ("invalid session id", FailureKind::BrowserGone),
            ("chrome not reachable", FailureKind::BrowserGone),
            (
                "unknown error: session deleted because of page crash",
                FailureKind::PageCrashed,
            ),
            (
                "The WebDriver response does not conform: tab crashed",
                FailureKind::PageCrashed,
            ),
            (
                "The WebDriver request returned an error: error sending request for url (http://127.0.0.1:4444/session/x/url)",
                FailureKind::DriverGone,
            ),
            (
                "operation timed out: waiting for #done",
                FailureKind::Timeout,
            ),
            (
                "Element not found: no such element: #nope",
                FailureKind::ActionFailed,
            ),
            (
                "The Javascript code returned an error: boom",
                FailureKind::ActionFailed,
            ),
        ] {
            check(text, kind);
        }
    }

    #[test]
    fn only_process_level_failures_need_a_new_browser() {
        for (kind, needs) in [
            (FailureKind::BrowserGone, true),
            (FailureKind::DriverGone, true),
            (FailureKind::PageCrashed, true),
            (FailureKind::Launch, true),
            (FailureKind::Timeout, true),
            (FailureKind::ActionFailed, false),
        ] {
            assert_eq!(kind.needs_new_browser(), needs, "{kind}");
        }
    }
}
