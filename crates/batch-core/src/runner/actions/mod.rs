//! Executing workflow actions on a live browser.
//!
//! Every action renders its templates first (the redacted form is what errors and
//! journals show; every message and recorded value also goes through the run's
//! [`Secrets`], which catch the forms a browser gives a secret back in), then talks to the browser with a hard deadline, so a hung driver
//! surfaces as [`FailureKind::Timeout`] instead of a stuck account. Waiting actions
//! poll the page; running out of time there is an ordinary action failure — the
//! browser answered, the page just never got there.
//!
//! `run_one` dispatches each action; `wait` holds the deadline and polling every
//! action is built on, `forms` the controls that are more than a click (`select`,
//! `check`, `upload`), `windows` the session state that outlives an action (frames,
//! windows), which `run_actions` puts back at the end of each list.

use std::path::{Path, PathBuf};
use std::time::Duration;

use launcher::thirtyfour::Key;
use launcher::thirtyfour::error::WebDriverErrorInner;
use launcher::thirtyfour::prelude::*;
use launcher::{BrowserInfo, FailureKind};
use serde_json::Value;

use crate::config::{Action, ActionKind, Rendered, Secrets, Template, TimeoutSettings, Vars};

mod forms;
mod wait;
mod windows;

use forms::{select, set_checked, upload};
use wait::{by, call, find, visible, wait_until};
pub(crate) use windows::Windows;
use windows::{frame, window};

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
        env.windows = Some(Windows::now(env).await?);
    }
    let result = run_list(actions, env).await;
    // The next list starts in the first window, and the windows this one's pages
    // opened are closed, not left to pile up an account's memory over iterations.
    if let Some(w) = env.windows.take()
        && let Err(f) = w.close_opened(env).await
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
        ActionKind::Hover {
            selector, timeout, ..
        } => {
            let sel = render(selector, &vars)?.value;
            let el = visible(env, &sel, timeout.unwrap_or(t.action)).await?;
            let hover = env.driver.action_chain().move_to_element_center(&el);
            call(t.webdriver, &format!("hover {sel}"), hover.perform()).await
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
        ActionKind::WaitGone {
            selector, timeout, ..
        } => {
            let sel = render(selector, &vars)?.value;
            let what = format!("{sel} to be gone");
            wait_until(timeout.unwrap_or(t.action), &what, || async {
                let found = call(t.webdriver, &sel, env.driver.find_all(by(&sel))).await?;
                for el in found {
                    if call(t.webdriver, &sel, el.is_displayed()).await? {
                        return Ok(None);
                    }
                }
                Ok(Some(()))
            })
            .await
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
            frame(env, &sel, timeout.unwrap_or(t.action)).await
        }
        ActionKind::Window { which, timeout, .. } => {
            window(env, which, timeout.unwrap_or(t.action)).await
        }
        ActionKind::Dialog {
            answer,
            text,
            into,
            timeout,
            ..
        } => {
            let text = text.as_ref().map(|x| render(x, &vars)).transpose()?;
            dialog(
                env,
                answer,
                text.as_ref(),
                into,
                timeout.unwrap_or(t.action),
            )
            .await
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
            timeout,
            ..
        } => {
            let sel = render(selector, &vars)?.value;
            let el = visible(env, &sel, timeout.unwrap_or(t.action)).await?;
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

/// Waits for the page's open dialog (`alert`, `confirm`, `prompt`), records its
/// message under `into` if asked, types `text` into a prompt, and accepts or
/// dismisses it. A dialog is not an element: it is looked for with WebDriver's own
/// alert command, which every other command would dismiss ("unexpected alert open").
async fn dialog(
    env: &ActionEnv<'_>,
    answer: &str,
    text: Option<&Rendered>,
    into: &Option<String>,
    timeout: Duration,
) -> Result<(), Failure> {
    let t = env.timeouts.webdriver;
    let driver = env.driver;
    let message = wait_until(timeout, "a dialog", || async {
        match tokio::time::timeout(t, driver.get_alert_text()).await {
            Ok(Ok(message)) => Ok(Some(message)),
            Ok(Err(e)) if matches!(e.as_inner(), WebDriverErrorInner::NoSuchAlert(_)) => Ok(None),
            Ok(Err(e)) => Err(wait::wd("dialog")(e)),
            Err(_) => Err(Failure::new(
                FailureKind::Timeout,
                format!("dialog: the driver did not answer within {t:?}"),
            )),
        }
    })
    .await?;
    if let Some(name) = into {
        record(
            env,
            name.clone(),
            Value::String(env.secrets.redact(&message)),
        );
    }
    if let Some(text) = text {
        // A secret may be typed here: name the dialog, never the text.
        call(
            t,
            "type into the dialog",
            driver.send_alert_text(text.value.as_str()),
        )
        .await?;
    }
    match answer {
        "accept" => call(t, "accept the dialog", driver.accept_alert()).await,
        _ => call(t, "dismiss the dialog", driver.dismiss_alert()).await,
    }
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

/// What `send_keys` types for a `press` key: the key, after its modifiers (held
/// down, WebDriver style, until the closing `Null` lets go of them all).
fn key_text(name: &str) -> String {
    // Validation let only these through; anything else is typed as it is.
    let Some((held, key)) = crate::config::press_parts(name) else {
        return name.to_owned();
    };
    if held.is_empty() {
        return one_key(key);
    }
    let mut out: String = (held.iter())
        .map(|m| match *m {
            "Control" => Key::Control,
            "Shift" => Key::Shift,
            "Alt" => Key::Alt,
            _ => Key::Meta,
        })
        .map(char::from)
        .collect();
    out.push_str(&one_key(key));
    out.push(char::from(Key::Null));
    out
}

fn one_key(name: &str) -> String {
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
    // The iteration's data row as BATCH_DATA_<COLUMN>, named like the account's.
    for (k, v) in vars.data.iter().flat_map(|row| &row.fields) {
        cmd.env(crate::config::data_env_name(k), &v.value);
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
        let k = |key: Key| char::from(key).to_string();
        assert_eq!(key_text("Enter"), k(Key::Enter));
        assert_eq!(key_text("a"), "a");
        assert_eq!(key_text("+"), "+");
        assert_eq!(
            key_text("Control+a"),
            format!("{}a{}", k(Key::Control), k(Key::Null))
        );
        assert_eq!(
            key_text("Control+Shift+ArrowLeft"),
            format!(
                "{}{}{}{}",
                k(Key::Control),
                k(Key::Shift),
                k(Key::Left),
                k(Key::Null)
            )
        );
        assert_eq!(
            key_text("Shift++"),
            format!("{}+{}", k(Key::Shift), k(Key::Null))
        );
    }
}
