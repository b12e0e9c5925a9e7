//! Executing workflow actions on a live browser.
//!
//! Every action renders its templates first (the redacted form is what errors and
//! journals show; every message and recorded value also goes through the run's
//! [`Secrets`], which catch the forms a browser gives a secret back in), then talks to the browser with a hard deadline, so a hung driver
//! surfaces as [`FailureKind::Timeout`] instead of a stuck account. Waiting actions
//! poll the page; running out of time there is an ordinary action failure — the
//! browser answered, the page just never got there.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use launcher::thirtyfour::prelude::*;
use launcher::thirtyfour::{Key, WebElement, WindowHandle};
use launcher::{BrowserInfo, FailureKind};
use serde_json::Value;

use crate::config::{Action, ActionKind, Rendered, Secrets, Template, TimeoutSettings, Vars};

/// A failed action: what kind of failure, and a message safe to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) kind: FailureKind,
    pub(crate) message: String,
    /// Whether it happened in the step's `before`.
    pub(crate) in_before: bool,
    /// Whether trying again cannot help (a launch that can never succeed).
    pub(crate) permanent: bool,
    /// Whether it is a wait that ran out of time, the page answering all along: what
    /// an `optional` action is skipped for (and nothing else is).
    pub(crate) waited_out: bool,
}

impl Failure {
    pub(crate) fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Failure {
            kind,
            message: message.into(),
            in_before: false,
            permanent: false,
            waited_out: false,
        }
    }

    /// A failed launch, `message` being its redacted text: permanent unless
    /// [`launcher::LaunchError::is_transient`].
    pub(crate) fn launch(e: &launcher::LaunchError, message: String) -> Self {
        Failure {
            permanent: !e.is_transient(),
            ..Failure::new(FailureKind::Launch, message)
        }
    }
}

/// Everything an action needs besides the action itself.
pub(crate) struct ActionEnv<'a> {
    pub(crate) driver: &'a WebDriver,
    pub(crate) info: &'a BrowserInfo,
    pub(crate) vars: Vars<'a>,
    pub(crate) timeouts: TimeoutSettings,
    pub(crate) workflow_file: &'a str,
    pub(crate) run_dir: &'a Path,
    /// `batch.toml`'s directory: where `exec` programs run and relative `upload`
    /// paths start.
    pub(crate) root: &'a Path,
    /// Where recorded values go (`value_recorded`, at once: a killed run keeps them).
    pub(crate) journal: &'a crate::journal::Journal,
    /// The run's secrets: every message and recorded value goes through them.
    pub(crate) secrets: &'a Secrets,
    /// Where running `exec` programs are recorded for the next run's reap.
    pub(crate) registry: &'a launcher::Registry,
    /// Where this phase's downloads land, or why the browser saves none here.
    pub(crate) downloads: Result<super::downloads::Downloads, String>,
    /// The windows as the list of actions found them, once a `window` action needs
    /// them (`run_actions` fills it in).
    pub(crate) windows: Option<Windows>,
}

/// What `window` actions go by: the window the list started in, every window open
/// then (a later `new` is one of none of these), and the one actions act in now.
pub(crate) struct Windows {
    first: WindowHandle,
    at_start: Vec<WindowHandle>,
    current: WindowHandle,
}

/// Run actions in order; stop at the first failure. An `optional` action whose wait
/// ran out is journaled as skipped and the next one runs.
pub(crate) async fn run_actions(
    actions: &[Action],
    env: &mut ActionEnv<'_>,
) -> Result<(), Failure> {
    let entered = actions
        .iter()
        .any(|a| matches!(a.kind, ActionKind::Frame { .. }));
    let windows = actions
        .iter()
        .any(|a| matches!(a.kind, ActionKind::Window { .. }));
    if windows {
        let t = env.timeouts.webdriver;
        let first = call(t, "window", env.driver.window()).await?;
        let at_start = call(t, "windows", env.driver.windows()).await?;
        env.windows = Some(Windows {
            current: first.clone(),
            first,
            at_start,
        });
    }
    let result = run_list(actions, env).await;
    // The next list starts in the first window, and the windows this one's pages
    // opened are closed, not left to pile up an account's memory over iterations.
    if let Some(w) = env.windows.take()
        && let Err(f) = close_opened(env, &w).await
    {
        tracing::debug!(error = %env.secrets.redact(&f.message), "could not close the opened windows");
    }
    // Each list starts on the page, whatever frame the last one ended in — and so do
    // the failure screenshot and the challenge lookup after a failed attempt. A
    // driver that cannot switch back fails the next action anyway.
    if entered {
        let t = env.timeouts.webdriver;
        let back = call(t, "frame top", env.driver.enter_default_frame()).await;
        if let Err(f) = back {
            tracing::debug!(error = %env.secrets.redact(&f.message), "could not leave the frame");
        }
    }
    result
}

async fn run_list(actions: &[Action], env: &mut ActionEnv<'_>) -> Result<(), Failure> {
    for action in actions {
        match run_one(action, env).await {
            Ok(()) => {}
            Err(f) if f.waited_out && action.kind.optional() => {
                env.journal.emit(crate::journal::Event::ActionSkipped {
                    account: env.vars.account.id,
                    step: env.vars.step,
                    iteration: env.vars.iteration,
                    line: action.line,
                    action: action.kind.name().to_owned(),
                });
            }
            Err(f) => {
                let where_ = format!("{}:{}", env.workflow_file, action.line);
                return Err(Failure::new(
                    f.kind,
                    format!("{where_}: {}", env.secrets.redact(&f.message)),
                ));
            }
        }
    }
    Ok(())
}

fn render(t: &Template, vars: &Vars<'_>) -> Result<Rendered, Failure> {
    t.render(vars)
        .map_err(|e| Failure::new(FailureKind::ActionFailed, e))
}

fn by(selector: &str) -> By {
    match selector.strip_prefix("xpath:") {
        Some(x) => By::XPath(x.to_string()),
        None => By::Css(selector.to_string()),
    }
}

fn wd(what: &str) -> impl FnOnce(WebDriverError) -> Failure + '_ {
    move |e| {
        let first = launcher::summary(&e);
        Failure::new(launcher::classify(&e), format!("{what}: {first}"))
    }
}

/// Give one WebDriver call a deadline: a driver that does not answer is hung.
async fn call<T>(
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
async fn wait_until<T, F, Fut>(timeout: Duration, what: &str, probe: F) -> Result<T, Failure>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, Failure>>,
{
    wait_from(Instant::now(), timeout, what, probe).await
}

/// [`wait_until`] for the part of a wait that began at `started`: an action that
/// waits for two things in turn gives both one `timeout`, and its message names the
/// `timeout` the user wrote rather than what was left of it.
async fn wait_from<T, F, Fut>(
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

async fn find(env: &ActionEnv<'_>, selector: &str) -> Result<Option<WebElement>, Failure> {
    let found = call(
        env.timeouts.webdriver,
        selector,
        env.driver.find_all(by(selector)),
    )
    .await?;
    Ok(found.into_iter().next())
}

/// The element, once it exists and is displayed.
async fn visible(
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

async fn run_one(action: &Action, env: &mut ActionEnv<'_>) -> Result<(), Failure> {
    let t = env.timeouts;
    let vars = env.vars;
    // A site takes each window's one-time code once: an action that would type codes
    // claims their windows first, or waits for the next (at most one period) when
    // one is used. Claimed again after the sleep, in case the clock lagged the timer.
    let templates = action.kind.templates();
    let seeds: Vec<&str> = (templates.iter())
        .flat_map(|t| t.totp_seeds(vars.account))
        .collect();
    while !seeds.is_empty() {
        let wait = crate::totp::claim(&seeds);
        if wait.is_zero() {
            break;
        }
        tracing::info!(
            account = vars.account.id,
            line = action.line,
            wait_ms = wait.as_millis() as u64,
            "waiting for a fresh one-time code"
        );
        tokio::time::sleep(wait).await;
    }
    match &action.kind {
        ActionKind::Goto { url, timeout } => {
            let url = render(url, &vars)?;
            let what = format!("goto {}", url.redacted);
            call(
                timeout.unwrap_or(t.webdriver.max(t.action)),
                &what,
                env.driver.goto(url.value.as_str()),
            )
            .await
        }
        ActionKind::Click {
            selector, timeout, ..
        } => {
            let sel = render(selector, &vars)?.value;
            wait_until(
                timeout.unwrap_or(t.action),
                &format!("{sel} to be clickable"),
                || async {
                    let Some(el) = find(env, &sel).await? else {
                        return Ok(None);
                    };
                    // Covered or not yet interactable is an ActionFailed: wait_until
                    // keeps trying until the deadline.
                    call(t.webdriver, &format!("click {sel}"), el.click())
                        .await
                        .map(Some)
                },
            )
            .await
        }
        ActionKind::Fill {
            selector,
            text,
            timeout,
            ..
        } => {
            let sel = render(selector, &vars)?.value;
            let text = render(text, &vars)?;
            let el = visible(env, &sel, timeout.unwrap_or(t.action)).await?;
            call(t.webdriver, &format!("clear {sel}"), el.clear()).await?;
            // The typed text may be a secret: name the selector, never the text.
            call(
                t.webdriver,
                &format!("type into {sel}"),
                el.send_keys(text.value.as_str()),
            )
            .await
        }
        ActionKind::Select {
            selector,
            option,
            timeout,
            ..
        } => {
            let sel = render(selector, &vars)?.value;
            let want = render(option, &vars)?;
            select(env, &sel, &want, timeout.unwrap_or(t.action)).await
        }
        ActionKind::Check {
            selector, timeout, ..
        } => {
            let sel = render(selector, &vars)?.value;
            set_checked(env, &sel, true, timeout.unwrap_or(t.action)).await
        }
        ActionKind::Uncheck {
            selector, timeout, ..
        } => {
            let sel = render(selector, &vars)?.value;
            set_checked(env, &sel, false, timeout.unwrap_or(t.action)).await
        }
        ActionKind::Press {
            key,
            selector,
            timeout,
            ..
        } => {
            let keys = key_text(key);
            let el = match selector {
                Some(s) => {
                    let sel = render(s, &vars)?.value;
                    visible(env, &sel, timeout.unwrap_or(t.action)).await?
                }
                None => call(t.webdriver, "active element", env.driver.active_element()).await?,
            };
            call(
                t.webdriver,
                &format!("press {key}"),
                el.send_keys(keys.as_str()),
            )
            .await
        }
        ActionKind::WaitFor {
            selector, timeout, ..
        } => {
            let sel = render(selector, &vars)?.value;
            visible(env, &sel, timeout.unwrap_or(t.action))
                .await
                .map(drop)
        }
        ActionKind::WaitText {
            selector,
            contains,
            timeout,
            ..
        } => {
            let sel = render(selector, &vars)?.value;
            let want = render(contains, &vars)?;
            let what = format!("{sel} to contain {:?}", want.redacted);
            wait_until(timeout.unwrap_or(t.action), &what, || async {
                let Some(el) = find(env, &sel).await? else {
                    return Ok(None);
                };
                let text = call(t.webdriver, &sel, el.text()).await?;
                Ok(text.contains(&want.value).then_some(()))
            })
            .await
        }
        ActionKind::WaitUrl {
            substr, timeout, ..
        } => {
            let want = render(substr, &vars)?;
            let what = format!("the URL to contain {:?}", want.redacted);
            wait_until(timeout.unwrap_or(t.action), &what, || async {
                let url = call(t.webdriver, "current url", env.driver.current_url()).await?;
                if url.as_str().contains(&want.value) {
                    return Ok(Some(()));
                }
                // The URL so far, as the failure's `last:` (redacted on the way out).
                Err(Failure::new(FailureKind::ActionFailed, format!("at {url}")))
            })
            .await
        }
        ActionKind::Frame { selector, timeout } => {
            let sel = render(selector, &vars)?.value;
            match sel.as_str() {
                "top" => call(t.webdriver, "frame top", env.driver.enter_default_frame()).await,
                "parent" => {
                    call(t.webdriver, "frame parent", env.driver.enter_parent_frame()).await
                }
                _ => {
                    let el = wait_until(
                        timeout.unwrap_or(t.action),
                        &format!("{sel} to exist"),
                        || find(env, &sel),
                    )
                    .await?;
                    let tag = call(t.webdriver, &sel, el.tag_name()).await?;
                    if !(tag.eq_ignore_ascii_case("iframe") || tag.eq_ignore_ascii_case("frame")) {
                        return Err(Failure::new(
                            FailureKind::ActionFailed,
                            format!("frame: {sel} is a <{tag}>, not an <iframe>"),
                        ));
                    }
                    call(t.webdriver, &format!("frame {sel}"), el.enter_frame()).await
                }
            }
        }
        ActionKind::Window { which, timeout, .. } => {
            window(env, which, timeout.unwrap_or(t.action)).await
        }
        ActionKind::AssertUrl { substr } => {
            let want = render(substr, &vars)?;
            let url = call(t.webdriver, "current url", env.driver.current_url()).await?;
            if url.as_str().contains(&want.value) {
                Ok(())
            } else {
                Err(Failure::new(
                    FailureKind::ActionFailed,
                    format!(
                        "assert_url: {:?} is not in the current url {}",
                        want.redacted, url
                    ),
                ))
            }
        }
        ActionKind::Extract {
            selector,
            into,
            attr,
        } => {
            let sel = render(selector, &vars)?.value;
            let el = visible(env, &sel, t.action).await?;
            let value = match attr {
                Some(a) => call(t.webdriver, &sel, el.attr(a))
                    .await?
                    .unwrap_or_default(),
                None => call(t.webdriver, &sel, el.text()).await?,
            };
            let name = into.clone().unwrap_or_else(|| selector.source.clone());
            record(env, name, Value::String(env.secrets.redact(&value)));
            Ok(())
        }
        ActionKind::Script { js, into } => {
            let js = render(js, &vars)?;
            let ret = call(
                t.webdriver.max(t.action),
                "script",
                env.driver.execute(js.value.as_str(), Vec::new()),
            )
            .await?;
            if let Some(name) = into {
                let v = env.secrets.redact_value(ret.json());
                record(env, name.clone(), v);
            }
            Ok(())
        }
        ActionKind::Screenshot { name } => {
            let name = render(name, &vars)?.redacted;
            let png = call(t.webdriver, "screenshot", env.driver.screenshot_as_png()).await?;
            let path = screenshot_path(env.run_dir, vars.account.id, &name);
            save_png(&path, &png).map_err(|e| {
                Failure::new(
                    FailureKind::ActionFailed,
                    format!("{}: {e}", path.display()),
                )
            })
        }
        ActionKind::Upload {
            selector,
            file,
            timeout,
            ..
        } => upload(env, selector, file, timeout.unwrap_or(t.action)).await,
        ActionKind::WaitDownload {
            pattern,
            into,
            timeout,
            ..
        } => {
            let rendered = render(pattern, &vars)?;
            let fail = |m: String| Failure::new(FailureKind::ActionFailed, m);
            let glob = glob::Pattern::new(&rendered.value).map_err(|e| {
                fail(format!(
                    "{:?} is not a valid pattern: {}",
                    rendered.redacted, e.msg
                ))
            })?;
            let downloads = env.downloads.as_mut().map_err(|why| fail(why.clone()))?;
            let what = format!(
                "a finished download matching {:?} in {}",
                rendered.redacted,
                downloads.shown.display()
            );
            let found = wait_until(timeout.unwrap_or(t.action), &what, || async {
                let d = &*downloads;
                d.finished(&glob)
                    .map_err(|e| fail(format!("{}: {e}", d.shown.display())))
            })
            .await?;
            let path = downloads.take(found);
            let name = into.clone().unwrap_or_else(|| pattern.source.clone());
            let shown = env.secrets.redact(&path.to_string_lossy());
            record(env, name, Value::String(shown));
            Ok(())
        }
        ActionKind::Sleep { duration } => {
            tokio::time::sleep(*duration).await;
            Ok(())
        }
        ActionKind::Exec { argv, timeout } => exec(env, argv, timeout.unwrap_or(t.action)).await,
    }
}

/// Choose the option of the `<select>` at `sel` whose text is `want` (as the list
/// shows it, spaces normalized), or else whose `value` is — the text first, since
/// that is what a user chooses by. Waits for the list and for the option (lists are
/// often filled after the page loads) and for a disabled option to be enabled. Each
/// probe is one or two lookups of the option by XPath: never a round trip per option,
/// which a list of countries would make hundreds. An element that is not a
/// `<select>` fails at once, `optional` or not: that is a mistake in the workflow.
async fn select(
    env: &ActionEnv<'_>,
    sel: &str,
    want: &Rendered,
    timeout: Duration,
) -> Result<(), Failure> {
    let t = env.timeouts;
    let fail = |m: String| Failure::new(FailureKind::ActionFailed, m);
    let lit = launcher::thirtyfour::components::escape_string(&want.value);
    let started = Instant::now();
    let el = wait_until(timeout, &format!("{sel} to exist"), || find(env, sel)).await?;
    let tag = call(t.webdriver, sel, el.tag_name()).await?;
    if !tag.eq_ignore_ascii_case("select") {
        return Err(fail(format!("select: {sel} is a <{tag}>, not a <select>")));
    }
    let what = format!("option {:?} in {sel}", want.redacted);
    wait_from(started, timeout, &what, || async {
        let mut options = Vec::new();
        for xpath in [
            format!(".//option[normalize-space(.) = normalize-space({lit})]"),
            format!(".//option[@value = {lit}]"),
        ] {
            options = call(t.webdriver, sel, el.find_all(By::XPath(xpath))).await?;
            if !options.is_empty() {
                break;
            }
        }
        let Some(option) = options.into_iter().next() else {
            return Ok(None);
        };
        if call(t.webdriver, sel, option.is_selected()).await? {
            return Ok(Some(()));
        }
        if !call(t.webdriver, sel, option.is_enabled()).await? {
            return Err(fail("the option is disabled".into()));
        }
        call(t.webdriver, &format!("choose in {sel}"), option.click()).await?;
        Ok(call(t.webdriver, sel, option.is_selected())
            .await?
            .then_some(()))
    })
    .await
}

/// Make the checkbox (or, to check, radio button) at `sel` checked (`on`) or not, by
/// clicking it only when it is not so already — a click toggles, so clicking blindly
/// would undo a state a site or an earlier attempt left. Styled sites hide the input
/// and show its `<label>`: a hidden input's label is clicked instead. Waits (one
/// `timeout` in all) for the element and for the state to take; an element that is
/// not such an input, or unchecking a radio button (only choosing another one does
/// that), fails at once: a mistake in the workflow, not a wait.
async fn set_checked(
    env: &ActionEnv<'_>,
    sel: &str,
    on: bool,
    timeout: Duration,
) -> Result<(), Failure> {
    let t = env.timeouts;
    let name = if on { "check" } else { "uncheck" };
    let fail = |m: String| Failure::new(FailureKind::ActionFailed, m);
    let started = Instant::now();
    let el = wait_until(timeout, &format!("{sel} to exist"), || find(env, sel)).await?;
    let tag = call(t.webdriver, sel, el.tag_name()).await?;
    let kind = call(t.webdriver, sel, el.attr("type"))
        .await?
        .unwrap_or_default();
    let kind = kind.to_ascii_lowercase();
    let expected = if on {
        "an <input type=\"checkbox\"> or \"radio\""
    } else {
        "an <input type=\"checkbox\">"
    };
    if !tag.eq_ignore_ascii_case("input") || !(kind == "checkbox" || (on && kind == "radio")) {
        let what = match (tag.eq_ignore_ascii_case("input"), kind.as_str()) {
            (true, "radio") => "a radio button, which only choosing another one unchecks".into(),
            (true, k) => format!("an <input type=\"{k}\">"),
            _ => format!("a <{tag}>"),
        };
        return Err(fail(format!(
            "{name}: {sel} is {what} (expected {expected})"
        )));
    }
    let state = if on { "checked" } else { "unchecked" };
    wait_from(
        started,
        timeout,
        &format!("{sel} to be {state}"),
        || async {
            if call(t.webdriver, sel, el.is_selected()).await? == on {
                return Ok(Some(()));
            }
            let target = if call(t.webdriver, sel, el.is_displayed()).await? {
                el.clone()
            } else {
                let arg = el
                    .to_json()
                    .map_err(|e| fail(format!("{name} {sel}: {}", launcher::summary(&e))))?;
                let js = "return (arguments[0].labels && arguments[0].labels[0]) || null;";
                let label = call(t.webdriver, sel, env.driver.execute(js, vec![arg])).await?;
                if label.json().is_null() {
                    return Err(fail(format!("{sel} is hidden and has no <label> to click")));
                }
                label.element().map_err(wd(sel))?
            };
            call(t.webdriver, &format!("{name} {sel}"), target.click()).await?;
            Ok((call(t.webdriver, sel, el.is_selected()).await? == on).then_some(()))
        },
    )
    .await
}

/// `window = "new" | "first" | "close"` (see the workflow docs).
async fn window(env: &mut ActionEnv<'_>, which: &str, timeout: Duration) -> Result<(), Failure> {
    let t = env.timeouts.webdriver;
    let driver = env.driver;
    let w = env
        .windows
        .as_mut()
        .expect("run_actions records the windows of a list with a window action");
    match which {
        "new" => {
            let at_start = &w.at_start;
            let current = &w.current;
            // The newest window that was not open when the list began and is not
            // this one: ChromeDriver lists windows in the order they were opened.
            let found = wait_until(timeout, "a new window", || async {
                let all = call(t, "windows", driver.windows()).await?;
                Ok(all
                    .into_iter()
                    .rev()
                    .find(|h| !at_start.contains(h) && h != current))
            })
            .await?;
            call(t, "window new", driver.switch_to_window(found.clone())).await?;
            w.current = found;
        }
        "first" => {
            call(t, "window first", driver.switch_to_window(w.first.clone())).await?;
            w.current = w.first.clone();
        }
        _ => {
            // A popup often closes itself once done: closing what is gone already
            // would be a "no such window", read as a lost browser.
            let all = call(t, "windows", driver.windows()).await?;
            if w.current != w.first && all.contains(&w.current) {
                call(t, "window close", driver.close_window()).await?;
            }
            call(t, "window first", driver.switch_to_window(w.first.clone())).await?;
            w.current = w.first.clone();
        }
    }
    Ok(())
}

/// Close every window opened since the list began, then go back to its first.
async fn close_opened(env: &ActionEnv<'_>, w: &Windows) -> Result<(), Failure> {
    let t = env.timeouts.webdriver;
    let driver = env.driver;
    for h in call(t, "windows", driver.windows()).await? {
        if !w.at_start.contains(&h) {
            call(t, "window", driver.switch_to_window(h)).await?;
            call(t, "window close", driver.close_window()).await?;
        }
    }
    call(t, "window first", driver.switch_to_window(w.first.clone())).await
}

/// Choose `files` in the file input `selector`: each file is checked and, for a
/// remote browser, sent to its node first ([`launcher::stage`]); then the paths are
/// typed into the input, replacing what it held. The input only has to exist: most
/// sites hide it behind a styled label, and WebDriver sets a file input's files
/// without interacting with it.
async fn upload(
    env: &ActionEnv<'_>,
    selector: &Template,
    files: &[Template],
    timeout: Duration,
) -> Result<(), Failure> {
    let t = env.timeouts;
    let vars = env.vars;
    let fail = |m: String| Failure::new(FailureKind::ActionFailed, m);
    let sel = render(selector, &vars)?.value;
    let remote = env.info.local.is_none();
    let mut paths = Vec::new();
    for f in files {
        let r = render(f, &vars)?;
        let local = crate::config::upload_path(env.root, &r.value)
            .map_err(|why| fail(format!("upload: {:?} {why}", r.redacted)))?;
        // Sending a file to a node is one request with the whole file in it: give it
        // the action's time, not a single round trip's.
        let staged = tokio::time::timeout(
            t.webdriver.max(timeout),
            launcher::stage(env.driver, remote, &local),
        )
        .await
        .map_err(|_| {
            Failure::new(
                FailureKind::Timeout,
                format!(
                    "upload: {:?}: the driver did not take it within {timeout:?}",
                    r.redacted
                ),
            )
        })?
        .map_err(|e| {
            let kind = match &e {
                launcher::StageError::WebDriver(w) => launcher::classify(w),
                launcher::StageError::Io(_) => FailureKind::ActionFailed,
            };
            Failure::new(kind, format!("upload: {:?}: {e}", r.redacted))
        })?;
        paths.push(staged);
    }
    let el = wait_until(timeout, &format!("{sel} to exist"), || find(env, &sel)).await?;
    let kind = call(t.webdriver, &sel, el.attr("type")).await?;
    if call(t.webdriver, &sel, el.tag_name()).await? != "input" || kind.as_deref() != Some("file") {
        return Err(fail(format!(
            "upload: {sel} is not a file input (expected the selector of an <input type=\"file\">)"
        )));
    }
    // A `multiple` input adds typed files to those it holds: empty it first, so it
    // holds exactly these. By script: WebDriver's clear refuses a hidden input
    // ("element not interactable"), and an empty value is the one a page may set.
    let arg = el
        .to_json()
        .map_err(|e| fail(format!("upload into {sel}: {}", launcher::summary(&e))))?;
    call(
        t.webdriver,
        &format!("empty {sel}"),
        env.driver.execute("arguments[0].value = '';", vec![arg]),
    )
    .await?;
    call(
        t.webdriver,
        &format!("upload into {sel}"),
        el.send_keys(paths.join("\n").as_str()),
    )
    .await
}

/// Journal a recorded value (already redacted; the journal redacts again anyway).
fn record(env: &ActionEnv<'_>, name: String, value: Value) {
    env.journal.emit(crate::journal::Event::ValueRecorded {
        account: env.vars.account.id,
        step: env.vars.step,
        iteration: env.vars.iteration,
        name,
        value,
    });
}

/// `screenshots/<account>/<name>.png`, the name reduced to safe file-name characters.
pub(crate) fn screenshot_path(run_dir: &Path, account: u64, name: &str) -> PathBuf {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let safe = safe.trim_start_matches('.');
    run_dir
        .join("screenshots")
        .join(account.to_string())
        .join(format!(
            "{}.png",
            if safe.is_empty() { "shot" } else { safe }
        ))
}

pub(crate) fn save_png(path: &Path, png: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        fsutil::private_dir(dir)?;
    }
    fsutil::write_atomic(path, png, 0o600)
}

fn key_text(name: &str) -> String {
    let key = match name {
        "Enter" => Key::Enter,
        "Tab" => Key::Tab,
        "Escape" => Key::Escape,
        "Backspace" => Key::Backspace,
        "Delete" => Key::Delete,
        "Space" => Key::Space,
        "ArrowUp" => Key::Up,
        "ArrowDown" => Key::Down,
        "ArrowLeft" => Key::Left,
        "ArrowRight" => Key::Right,
        "Home" => Key::Home,
        "End" => Key::End,
        "PageUp" => Key::PageUp,
        "PageDown" => Key::PageDown,
        // Validation allows only the names above or a single character.
        other => return other.to_string(),
    };
    char::from(key).to_string()
}

/// Run a program that drives the same browser; see the spec's `exec`. It runs
/// contained (see `exec.rs`): its whole process group, and every process carrying its
/// token, is gone when this returns or is dropped. Its output tails go to
/// `logs/account-<id>.log` in the run directory.
async fn exec(env: &ActionEnv<'_>, argv: &[Template], timeout: Duration) -> Result<(), Failure> {
    let vars = env.vars;
    let mut rendered = Vec::new();
    for a in argv {
        rendered.push(render(a, &vars)?);
    }
    let shown: Vec<&str> = rendered.iter().map(|r| r.redacted.as_str()).collect();
    let shown = shown.join(" ");
    let program = rendered[0].value.as_str();
    if super::exec::resolve(program, env.root).is_none() {
        return Err(Failure::new(
            FailureKind::ActionFailed,
            format!(
                "exec {shown}: cannot start: {program:?} is not an executable file (looked {})",
                if program.contains('/') {
                    format!("in {}", env.root.display())
                } else {
                    "in PATH".to_string()
                }
            ),
        ));
    }
    let cannot_start = |e: &dyn std::fmt::Display| {
        Failure::new(
            FailureKind::ActionFailed,
            format!("exec {shown}: cannot start: {e}"),
        )
    };
    let mut contained =
        super::exec::Contained::new(program, rendered[1..].iter().map(|r| r.value.as_str()))
            .map_err(|e| cannot_start(&e))?;
    // Before it starts: if we die while it runs, the next run kills what it left.
    contained
        .record(env.registry)
        .map_err(|e| cannot_start(&e))?;
    let cmd = contained.command();
    cmd.current_dir(env.root)
        .env("BATCH_WEBDRIVER_URL", &env.info.webdriver_url)
        .env("BATCH_SESSION_ID", &env.info.session_id)
        .env("BATCH_ACCOUNT_ID", vars.account.id.to_string())
        .env("BATCH_ITERATION", vars.iteration.to_string())
        .env("BATCH_STEP_ID", vars.step.to_string());
    // A remote browser's DevTools port is on its node, out of reach: no address at all
    // (not even an inherited one) rather than a wrong one.
    match &env.info.local {
        Some(l) => cmd.env(
            "BATCH_DEBUGGER_ADDRESS",
            format!("127.0.0.1:{}", l.devtools_port),
        ),
        None => cmd.env_remove("BATCH_DEBUGGER_ADDRESS"),
    };
    // Where a download it makes in this browser lands (a later `wait_download` of the
    // same phase can wait for it); unset when the browser saves none here.
    match &env.downloads {
        Ok(d) => cmd.env("BATCH_DOWNLOAD_DIR", &d.dir),
        Err(_) => cmd.env_remove("BATCH_DOWNLOAD_DIR"),
    };
    match &env.info.cdp_url {
        Some(url) => cmd.env("BATCH_CDP_URL", url),
        None => cmd.env_remove("BATCH_CDP_URL"),
    };
    for (k, v) in &vars.account.fields {
        cmd.env(crate::config::exec_env_name(k), &v.value);
    }
    let out = contained.run(timeout).await.map_err(|e| cannot_start(&e))?;
    let ended = match out.status {
        Some(status) => status.to_string(),
        None => format!("timed out after {timeout:?}; its process group was killed"),
    };
    log_exec(env, &shown, &ended, &out);
    match out.status {
        Some(status) if status.success() => Ok(()),
        _ => {
            let stderr = out.stderr.text();
            let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            let detail = if tail.is_empty() {
                String::new()
            } else {
                format!(": {}", tail.join(" | "))
            };
            Err(Failure::new(
                FailureKind::ActionFailed,
                format!("exec {shown}: {ended}{detail}"),
            ))
        }
    }
}

/// Append an exec's record to the account's log. The program's output is written as
/// it printed it except for the run's secrets, which are redacted like
/// everywhere else; anything else secret it prints is the program's business.
fn log_exec(env: &ActionEnv<'_>, shown: &str, ended: &str, out: &super::exec::Outcome) {
    let vars = env.vars;
    let mut record = format!(
        "--- {} step {} iteration {}: exec {shown}: {ended}\n",
        crate::journal::now_rfc3339(),
        vars.step,
        vars.iteration
    );
    for (name, tail) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let text = tail.text();
        if text.is_empty() {
            continue;
        }
        let skipped = if tail.dropped > 0 {
            format!(
                " (last {} bytes; {} earlier bytes dropped)",
                text.len(),
                tail.dropped
            )
        } else {
            String::new()
        };
        record.push_str(&format!("[{name}]{skipped}\n"));
        record.push_str(&env.secrets.redact(&text));
        if !text.ends_with('\n') {
            record.push('\n');
        }
    }
    let path = env
        .run_dir
        .join("logs")
        .join(format!("account-{}.log", vars.account.id));
    if let Err(e) = super::exec::append_log(&path, &record) {
        tracing::warn!(path = %path.display(), error = %e, "cannot write the exec log");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn screenshot_names_cannot_escape_the_run_directory() {
        for (name, expected) in [
            ("home", "screenshots/3/home.png"),
            ("../../etc/passwd", "screenshots/3/_.._etc_passwd.png"),
            ("a b/c", "screenshots/3/a_b_c.png"),
            ("", "screenshots/3/shot.png"),
        ] {
            assert_eq!(
                screenshot_path(Path::new("/run"), 3, name),
                Path::new("/run").join(expected),
                "{name}"
            );
        }
    }

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

    #[test]
    fn only_launch_errors_that_can_get_better_are_retried() {
        use launcher::LaunchError;
        for (e, permanent) in [
            (
                LaunchError::NotFound {
                    what: "chromedriver",
                    looked: "PATH".into(),
                },
                true,
            ),
            (
                LaunchError::Spawn {
                    program: "/nope".into(),
                    source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
                },
                true,
            ),
            (LaunchError::Timeout { secs: 30.0 }, false),
            (
                LaunchError::Session {
                    reason: "chrome exited".into(),
                },
                false,
            ),
        ] {
            let f = Failure::launch(&e, e.to_string());
            assert_eq!(f.permanent, permanent, "{e}");
            assert_eq!(f.kind, FailureKind::Launch);
        }
    }

    #[test]
    fn key_names_map_to_webdriver_keys() {
        assert_eq!(key_text("Enter"), char::from(Key::Enter).to_string());
        assert_eq!(key_text("a"), "a");
    }
}
