//! Where actions act: inside an iframe (`frame`) and in which window (`window`).
//! Both are state of the WebDriver session that outlives an action, so
//! `run_actions` puts it back at the end of each list: the next list, the failure
//! screenshot and the challenge lookup always start on the first window's page.

use std::time::Duration;

use launcher::FailureKind;
use launcher::thirtyfour::WindowHandle;

use super::wait::{call, find, wait_until};
use super::{ActionEnv, Failure};

/// What `window` actions go by: the window the list started in, every window open
/// then (a `new` window is none of these), and the one actions act in now.
pub(crate) struct Windows {
    first: WindowHandle,
    at_start: Vec<WindowHandle>,
    current: WindowHandle,
}

impl Windows {
    /// The windows as they are now: the current one is the list's first.
    pub(super) async fn now(env: &ActionEnv<'_>) -> Result<Windows, Failure> {
        let t = env.timeouts.webdriver;
        let first = call(t, "window", env.driver.window()).await?;
        let at_start = call(t, "windows", env.driver.windows()).await?;
        Ok(Windows {
            current: first.clone(),
            first,
            at_start,
        })
    }

    /// Close every window opened since the list began, then go back to its first.
    pub(super) async fn close_opened(&self, env: &ActionEnv<'_>) -> Result<(), Failure> {
        let t = env.timeouts.webdriver;
        let driver = env.driver;
        for h in call(t, "windows", driver.windows()).await? {
            if !self.at_start.contains(&h) {
                call(t, "window", driver.switch_to_window(h)).await?;
                call(t, "window close", driver.close_window()).await?;
            }
        }
        call(
            t,
            "window first",
            driver.switch_to_window(self.first.clone()),
        )
        .await
    }
}

/// `frame = SEL | "parent" | "top"` (see the workflow docs).
pub(super) async fn frame(
    env: &ActionEnv<'_>,
    sel: &str,
    timeout: Duration,
) -> Result<(), Failure> {
    let t = env.timeouts.webdriver;
    match sel {
        "top" => call(t, "frame top", env.driver.enter_default_frame()).await,
        "parent" => call(t, "frame parent", env.driver.enter_parent_frame()).await,
        _ => {
            let el = wait_until(timeout, &format!("{sel} to exist"), || find(env, sel)).await?;
            let tag = call(t, sel, el.tag_name()).await?;
            if !(tag.eq_ignore_ascii_case("iframe") || tag.eq_ignore_ascii_case("frame")) {
                return Err(Failure::new(
                    FailureKind::ActionFailed,
                    format!("frame: {sel} is a <{tag}>, not an <iframe>"),
                ));
            }
            call(t, &format!("frame {sel}"), el.enter_frame()).await
        }
    }
}

/// `window = "new" | "first" | "close"` (see the workflow docs).
pub(super) async fn window(
    env: &mut ActionEnv<'_>,
    which: &str,
    timeout: Duration,
) -> Result<(), Failure> {
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
