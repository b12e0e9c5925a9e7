//! Classifying WebDriver failures: which ones mean the browser must be replaced.
//!
//! [`classify`] decides by the *kind* of the error — thirtyfour's
//! [`WebDriverErrorInner`] variant, which is the W3C error code the driver sent (or a
//! transport error when no driver answered) — and reads message text only for the
//! codes that carry no meaning of their own (`unknown error`, and chromedriver's
//! non-W3C codes such as `tab crashed`). It never looks at what a page put into a
//! message: an element description (`<div class="session-timeout">`), a script's
//! error text (`setTimeout is not defined`), or a wait that ran out. Those are
//! [`FailureKind::ActionFailed`], however alarming their words.
//!
//! A suspected loss is then confirmed by [`confirm_loss`] (the processes, plus one
//! cheap WebDriver request) before anyone replaces the browser. The phrases matched
//! were observed with chromedriver 156 (see CHROMIUM-FACTS.md) plus the wording of
//! older drivers.

use std::time::Duration;

use thirtyfour::error::{WebDriverError, WebDriverErrorInfo, WebDriverErrorInner};

use crate::Browser;

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

/// `fn(&WebDriverError) -> FailureKind`: classify by the error's kind (the W3C code or
/// the transport failure), reading text only where the kind needs it.
pub fn classify(err: &WebDriverError) -> FailureKind {
    use WebDriverErrorInner as E;
    match err.as_inner() {
        // The session is gone: Chrome was killed or closed the connection.
        E::InvalidSessionId(_) => FailureKind::BrowserGone,
        // The session's only window is gone (a crashed or closed tab).
        E::NoSuchWindow(_) => FailureKind::BrowserGone,
        // A request that got no HTTP answer: the driver is dead, or hung past the
        // request timeout. The text is reqwest's, never the page's.
        E::HttpError(text) | E::RequestFailed(text) => {
            let t = text.to_ascii_lowercase();
            if t.contains("timed out") || t.contains("timeout") {
                FailureKind::Timeout
            } else {
                FailureKind::DriverGone
            }
        }
        E::IoError(_) | E::FatalError(_) | E::CommandSendError(_) | E::CommandRecvError(_) => {
            FailureKind::DriverGone
        }
        // Something answered, but not a WebDriver server: a dying driver, or a grid
        // hub whose node is gone.
        E::UnknownResponse(status, _) if *status >= 500 => FailureKind::DriverGone,
        // W3C `timeout`: the driver gave up on the browser (e.g. "timed out receiving
        // message from renderer"). Not a wait of ours: those are action failures.
        E::WebDriverTimeout(_) => FailureKind::Timeout,
        E::SessionNotCreated(_) => FailureKind::Launch,
        // Codes without a meaning of their own: the driver's text says what happened.
        E::UnknownError(info) | E::NotInSpec(info) => classify_unknown(info),
        // Everything else is about the page or the request: a missing or covered
        // element, a script that threw, an open alert, a bad selector, a wait
        // (`Timeout`) or a script (`ScriptTimeout`) that ran out of time.
        _ => FailureKind::ActionFailed,
    }
}

/// One line saying what went wrong: the driver's own message when it sent one (it
/// starts with the W3C code, e.g. `element click intercepted: …`), else the error's
/// first line. thirtyfour's `Display` puts the driver's message on later, indented
/// lines, which a one-line summary would lose.
pub fn summary(err: &WebDriverError) -> String {
    let line = match info(err) {
        Some(i) => i
            .value
            .message
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_string(),
        None => String::new(),
    };
    if line.is_empty() {
        err.to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_string()
    } else {
        line
    }
}

/// The driver's whole message on one line (at most 300 characters), for a session
/// that could not be created: ChromeDriver's first line there is only "session not
/// created: …" and the cause ("Chrome instance exited", "DevToolsActivePort file
/// doesn't exist", the Chrome version) is on the next ones.
pub(crate) fn detail(err: &WebDriverError) -> String {
    let text = match info(err) {
        Some(i) if !i.value.message.trim().is_empty() => i.value.message.clone(),
        _ => err.to_string(),
    };
    let joined = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    joined.chars().take(300).collect()
}

/// The driver's answer, for the variants that carry one.
fn info(err: &WebDriverError) -> Option<&WebDriverErrorInfo> {
    use WebDriverErrorInner as E;
    match err.as_inner() {
        E::NotInSpec(i)
        | E::ElementClickIntercepted(i)
        | E::ElementNotInteractable(i)
        | E::InsecureCertificate(i)
        | E::InvalidArgument(i)
        | E::InvalidCookieDomain(i)
        | E::InvalidElementState(i)
        | E::InvalidSelector(i)
        | E::InvalidSessionId(i)
        | E::JavascriptError(i)
        | E::MoveTargetOutOfBounds(i)
        | E::NoSuchAlert(i)
        | E::NoSuchCookie(i)
        | E::NoSuchElement(i)
        | E::NoSuchFrame(i)
        | E::NoSuchWindow(i)
        | E::ScriptTimeout(i)
        | E::SessionNotCreated(i)
        | E::StaleElementReference(i)
        | E::WebDriverTimeout(i)
        | E::UnableToSetCookie(i)
        | E::UnableToCaptureScreen(i)
        | E::UnexpectedAlertOpen(i)
        | E::UnknownCommand(i)
        | E::UnknownError(i)
        | E::UnknownMethod(i)
        | E::UnsupportedOperation(i) => Some(i),
        _ => None,
    }
}

/// An `unknown error` or a non-W3C code (chromedriver's `tab crashed`,
/// `disconnected`, `chrome not reachable`): decide by the code, then by the message
/// with every element description (`<…>`) removed, so page markup cannot match.
fn classify_unknown(info: &WebDriverErrorInfo) -> FailureKind {
    let code = if info.error.is_empty() {
        info.value.error.as_deref().unwrap_or_default()
    } else {
        info.error.as_str()
    };
    // A Selenium Grid hub that cannot reach the node holding the session answers with
    // no W3C code at all — measured with Grid 4.20 after a node was killed: HTTP 408,
    // `{"value": {"message": "Connection failure"}}`. That is the hub's own text, never
    // a page's: the node (our driver, as far as we can tell) is gone.
    if code.is_empty() && grid_lost_node(info.status, &info.value.message) {
        return FailureKind::DriverGone;
    }
    // The whole message: chromedriver puts the cause on a `from disconnected: …` line.
    classify_text(&format!("{code}: {}", without_markup(&info.value.message)))
}

/// The hub's words for "the node of this session does not answer".
fn grid_lost_node(status: u16, message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    matches!(status, 408 | 500 | 502 | 503 | 504)
        && (m.contains("connection failure")
            || m.contains("connection refused")
            || m.contains("unable to execute request for an existing session"))
}

/// Drops `<…>` spans: chromedriver quotes elements as HTML in its messages.
fn without_markup(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut depth = 0usize;
    for c in text.chars() {
        match c {
            '<' => depth += 1,
            '>' if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

fn classify_text(text: &str) -> FailureKind {
    let t = text.to_ascii_lowercase();
    const CRASHED: &[&str] = &["tab crashed", "page crash", "target crashed"];
    const BROWSER_GONE: &[&str] = &[
        "session deleted",
        "not connected to devtools",
        "chrome not reachable",
        "cannot connect to chrome",
        "browser has closed the connection",
        "disconnected:",
        "target window already closed",
    ];
    if CRASHED.iter().any(|s| t.contains(s)) {
        FailureKind::PageCrashed
    } else if BROWSER_GONE.iter().any(|s| t.contains(s)) || t.starts_with("disconnected") {
        FailureKind::BrowserGone
    } else {
        FailureKind::ActionFailed
    }
}

/// How long [`confirm_loss`]'s WebDriver probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// `async fn(&Browser, suspected) -> Option<lost kind>`: whether the browser really is
/// lost, checked before anyone replaces it.
///
/// The processes first ([`Browser::health`]): a dead driver or Chrome is a loss
/// whatever the error said. For a suspected loss with live processes, one cheap
/// request (`title`) with a short deadline decides: no answer, or an answer that is
/// itself a loss, confirms it; a real answer means the browser is fine and the
/// failure was the action's. A failure that is not a suspected loss is confirmed only
/// by the processes.
pub async fn confirm_loss(browser: &Browser, suspected: FailureKind) -> Option<FailureKind> {
    if let Some(observed) = browser.health() {
        return Some(observed);
    }
    if !suspected.needs_new_browser() {
        return None;
    }
    match tokio::time::timeout(PROBE_TIMEOUT, browser.driver().title()).await {
        Err(_) => Some(suspected),
        Ok(Ok(_)) => {
            tracing::info!(
                pid = browser.info().pid(),
                session = %browser.info().session_id,
                suspected = suspected.as_str(),
                "suspected browser loss not confirmed: the browser answers"
            );
            None
        }
        Ok(Err(e)) => {
            let kind = classify(&e);
            kind.needs_new_browser().then_some(suspected)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A driver's error response, as thirtyfour parses it.
    fn response(status: u16, code: &str, message: &str) -> WebDriverError {
        let body = serde_json::json!({"value": {"error": code, "message": message}});
        WebDriverError::parse(status, body.to_string())
    }

    #[test]
    fn a_grid_node_lost_under_a_session_is_a_driver_loss() {
        // What the hub answered, byte for byte, once the session's node was killed.
        let body = "{\n  \"value\": {\n    \"message\": \"Connection failure\"\n  }\n}";
        check(
            "grid node killed",
            WebDriverError::parse(408, body.into()),
            FailureKind::DriverGone,
        );
        // The same words with a W3C code (a page's text inside an error) are not.
        check(
            "page text",
            response(404, "no such element", "Connection failure"),
            FailureKind::ActionFailed,
        );
        // A queued session request that the Grid gave up on is a launch failure.
        check(
            "queue timeout",
            response(
                500,
                "session not created",
                "Could not start a new session. New session request timed out",
            ),
            FailureKind::Launch,
        );
    }

    fn check(what: &str, err: WebDriverError, expected: FailureKind) {
        assert_eq!(classify(&err), expected, "{what}: {err}");
    }

    #[test]
    fn classifies_by_the_error_kind() {
        use FailureKind::*;
        let cases: Vec<(&str, WebDriverError, FailureKind)> = vec![
            // Observed with chromedriver 156 when Chrome was killed.
            (
                "chrome killed",
                response(
                    404,
                    "invalid session id",
                    "invalid session id: session deleted as the browser has closed the connection\nfrom disconnected: not connected to DevTools",
                ),
                BrowserGone,
            ),
            (
                "later commands",
                response(404, "invalid session id", "invalid session id"),
                BrowserGone,
            ),
            (
                "window closed",
                response(
                    404,
                    "no such window",
                    "no such window: target window already closed",
                ),
                BrowserGone,
            ),
            (
                "renderer crash",
                response(500, "tab crashed", "tab crashed"),
                PageCrashed,
            ),
            (
                "older driver, page crash",
                response(
                    500,
                    "unknown error",
                    "unknown error: session deleted because of page crash",
                ),
                PageCrashed,
            ),
            (
                "older driver, chrome gone",
                response(500, "unknown error", "unknown error: chrome not reachable"),
                BrowserGone,
            ),
            (
                "devtools gone",
                response(
                    500,
                    "unknown error",
                    "unknown error: cannot determine loading status\nfrom disconnected: not connected to DevTools",
                ),
                BrowserGone,
            ),
            (
                "disconnected code",
                response(
                    500,
                    "disconnected",
                    "disconnected: unable to connect to renderer",
                ),
                BrowserGone,
            ),
            (
                "driver dead",
                WebDriverError::HttpError(
                    "error sending request for url (http://127.0.0.1:4444/session/x/url)".into(),
                ),
                DriverGone,
            ),
            (
                "driver hung past the request timeout",
                WebDriverError::HttpError("error sending request: operation timed out".into()),
                Timeout,
            ),
            (
                "not a webdriver answer",
                WebDriverError::parse(502, "Bad Gateway".into()),
                DriverGone,
            ),
            (
                "renderer hung",
                response(
                    500,
                    "timeout",
                    "timeout: Timed out receiving message from renderer: 300.000",
                ),
                Timeout,
            ),
            (
                "session not created",
                response(
                    500,
                    "session not created",
                    "session not created: Chrome instance exited",
                ),
                Launch,
            ),
            // Page content must never decide: these are the false positives of a
            // text-only classifier.
            (
                "click intercepted by a session-timeout banner",
                response(
                    400,
                    "element click intercepted",
                    "element click intercepted: Element <button id=\"add\">Add</button> is not clickable at point (40, 60). Other element would receive the click: <div class=\"session-timeout\">Your session timed out; chrome not reachable</div>",
                ),
                ActionFailed,
            ),
            (
                "script error mentioning setTimeout",
                response(
                    500,
                    "javascript error",
                    "javascript error: setTimeout callback failed: session deleted, tab crashed",
                ),
                ActionFailed,
            ),
            (
                "older driver, not clickable, markup with loss words",
                response(
                    500,
                    "unknown error",
                    "unknown error: Element <div class=\"tab crashed session-timeout\"> is not clickable at point (1, 2)",
                ),
                ActionFailed,
            ),
            (
                "missing element named like a loss",
                response(
                    404,
                    "no such element",
                    "no such element: Unable to locate element: {\"selector\":\"#session-timeout\"}",
                ),
                ActionFailed,
            ),
            (
                "script timeout",
                response(500, "script timeout", "script timeout"),
                ActionFailed,
            ),
            (
                "a wait of thirtyfour's that ran out",
                WebDriverError::Timeout("element condition timed out: #done".into()),
                ActionFailed,
            ),
            (
                "stale element",
                response(404, "stale element reference", "stale element reference"),
                ActionFailed,
            ),
            (
                "alert open",
                response(
                    500,
                    "unexpected alert open",
                    "unexpected alert open: {Alert text : session timeout}",
                ),
                ActionFailed,
            ),
            (
                "bad selector",
                response(400, "invalid selector", "invalid selector"),
                ActionFailed,
            ),
        ];
        for (what, err, expected) in cases {
            check(what, err, expected);
        }
    }

    #[test]
    fn summaries_keep_the_drivers_message() {
        let e = response(
            400,
            "element click intercepted",
            "element click intercepted: Element <button> is not clickable\n  (Session info: chrome=156)",
        );
        assert_eq!(
            summary(&e),
            "element click intercepted: Element <button> is not clickable"
        );
        let e = WebDriverError::HttpError("error sending request for url (x)".into());
        assert_eq!(
            summary(&e),
            "The WebDriver request returned an error: error sending request for url (x)"
        );
    }

    #[test]
    fn a_session_that_was_not_created_keeps_its_cause() {
        let e = response(
            500,
            "session not created",
            "session not created: Chrome instance exited.\n  (session not created: DevToolsActivePort file doesn't exist)\n",
        );
        assert_eq!(
            detail(&e),
            "session not created: Chrome instance exited. (session not created: DevToolsActivePort file doesn't exist)"
        );
        let long = response(500, "session not created", &"x".repeat(1000));
        assert_eq!(detail(&long).chars().count(), 300);
    }

    #[test]
    fn element_markup_is_ignored() {
        assert_eq!(without_markup("a <div class=\"x\">b</div> c"), "a b c");
        assert_eq!(without_markup("x > y"), "x > y");
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
