//! The form controls that are more than a click: a `<select>`'s option, a checkbox's
//! state, a file input's files. Each waits for its element, then checks that it is
//! the kind of element it acts on (a mistake in the workflow fails at once, never
//! as a wait), then acts only as far as the state asks.

use std::time::{Duration, Instant};

use launcher::FailureKind;
use launcher::thirtyfour::prelude::*;

use super::wait::{call, find, wait_from, wait_until, wd};
use super::{ActionEnv, Failure, render};
use crate::config::{Rendered, Template};

/// Choose the option of the `<select>` at `sel` whose text is `want` (as the list
/// shows it, spaces normalized), or else whose `value` is — the text first, since
/// that is what a user chooses by. Waits for the list and for the option (lists are
/// often filled after the page loads) and for a disabled option to be enabled. Each
/// probe is one or two lookups of the option by XPath: never a round trip per option,
/// which a list of countries would make hundreds. An element that is not a
/// `<select>` fails at once, `optional` or not: that is a mistake in the workflow.
pub(super) async fn select(
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
pub(super) async fn set_checked(
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

/// Choose `files` in the file input `selector`: each file is checked and, for a
/// remote browser, sent to its node first ([`launcher::stage`]); then the paths are
/// typed into the input, replacing what it held. The input only has to exist: most
/// sites hide it behind a styled label, and WebDriver sets a file input's files
/// without interacting with it.
pub(super) async fn upload(
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
