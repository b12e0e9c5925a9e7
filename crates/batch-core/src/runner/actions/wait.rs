//! Talking to the page: one WebDriver call with a deadline ([`call`]), and the
//! polling every waiting action is built on ([`wait_until`]), which tells a wait
//! that ran out (`waited_out`, what `optional` skips) from a page that failed.

use std::time::{Duration, Instant};

use launcher::FailureKind;
use launcher::thirtyfour::WebElement;
use launcher::thirtyfour::prelude::*;

use super::{ActionEnv, Failure};

pub(super) fn by(selector: &str) -> By {
    match selector.strip_prefix("xpath:") {
        Some(x) => By::XPath(x.to_string()),
        None => By::Css(selector.to_string()),
    }
}

pub(super) fn wd(what: &str) -> impl FnOnce(WebDriverError) -> Failure + '_ {
    move |e| {
        let first = launcher::summary(&e);
        Failure::new(launcher::classify(&e), format!("{what}: {first}"))
    }
}

/// Give one WebDriver call a deadline: a driver that does not answer is hung.
pub(super) async fn call<T>(
    limit: Duration,
    what: &str,
    fut: impl std::future::Future<Output = WebDriverResult<T>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r.map_err(wd(what)),
        Err(_) => Err(Failure::new(
            FailureKind::Timeout,
            format!("{what}: the driver did not answer within {limit:?}"),
        )),
    }
}

/// Poll until `probe` yields `Some`, the page fails in a way waiting cannot fix, or
/// time runs out (an [`FailureKind::ActionFailed`] naming what was awaited).
pub(super) async fn wait_until<T, F, Fut>(
    timeout: Duration,
    what: &str,
    probe: F,
) -> Result<T, Failure>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, Failure>>,
{
    wait_from(Instant::now(), timeout, what, probe).await
}

/// [`wait_until`] for the part of a wait that began at `started`: an action that
/// waits for two things in turn gives both one `timeout`, and its message names the
/// `timeout` the user wrote rather than what was left of it.
pub(super) async fn wait_from<T, F, Fut>(
    started: Instant,
    timeout: Duration,
    what: &str,
    mut probe: F,
) -> Result<T, Failure>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, Failure>>,
{
    let deadline = started + timeout;
    let mut last = String::new();
    let mut probes = 0u32;
    loop {
        probes += 1;
        match probe().await {
            Ok(Some(v)) => {
                // Each probe is one or two WebDriver round trips (~5–15 ms of CPU in
                // the browser and the driver): how many a wait took shows what polling
                // costs (`BATCH_LOG=batch_core=debug`). Not `what`: it holds the
                // rendered selector, which only failure messages show, redacted.
                tracing::debug!(
                    probes,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "wait done"
                );
                return Ok(v);
            }
            Ok(None) => {}
            Err(f) if f.kind == FailureKind::ActionFailed => last = f.message,
            Err(f) => return Err(f),
        }
        if Instant::now() >= deadline {
            let detail = if last.is_empty() {
                String::new()
            } else {
                format!(" (last: {last})")
            };
            return Err(Failure {
                waited_out: true,
                ..Failure::new(
                    FailureKind::ActionFailed,
                    format!("timed out after {timeout:?} waiting for {what}{detail}"),
                )
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(super) async fn find(
    env: &ActionEnv<'_>,
    selector: &str,
) -> Result<Option<WebElement>, Failure> {
    let found = call(
        env.timeouts.webdriver,
        selector,
        env.driver.find_all(by(selector)),
    )
    .await?;
    Ok(found.into_iter().next())
}

/// The element, once it exists and is displayed.
pub(super) async fn visible(
    env: &ActionEnv<'_>,
    selector: &str,
    timeout: Duration,
) -> Result<WebElement, Failure> {
    wait_until(timeout, &format!("{selector} to be displayed"), || async {
        match find(env, selector).await? {
            Some(el) => {
                let shown = call(env.timeouts.webdriver, selector, el.is_displayed()).await?;
                Ok(shown.then_some(el))
            }
            None => Ok(None),
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_pick_css_or_xpath() {
        assert_eq!(
            format!("{:?}", by("#add")),
            format!("{:?}", By::Css("#add".to_string()))
        );
        assert_eq!(
            format!("{:?}", by("xpath://button[1]")),
            format!("{:?}", By::XPath("//button[1]".to_string()))
        );
    }
}
