//! Portable account sessions: an account's logged-in state as a *storage state* —
//! every cookie of the browser plus the localStorage of the origins it was on — saved
//! into the account's data and restored into a fresh browser.
//!
//! Why: a Grid node has none of our profile directories, and the next browser of an
//! account may well be on another node, so the login has to travel with the account
//! rather than live in a profile. Locally the profile already keeps it; there the
//! storage state is opt-in (`--storage-state`), for ephemeral profiles.
//!
//! Where: `<profiles root>/storage-state/account-<id>/state.json`, directories 0700,
//! the file 0600 (written atomically). Cookie values are credentials: the file's
//! content never reaches the journal, a report or a log — only counts do.
//!
//! How: cookies through CDP (`Network.getAllCookies` / `Network.setCookies` over the
//! driver's `goog/cdp/execute`, which a Grid forwards to the node's chromedriver), so
//! `HttpOnly` cookies of every domain are included without visiting each site.
//! localStorage can only be read and written by a page of its origin: it is taken from
//! the page the browser is on when saving (merged with the origins saved before), and
//! restored by opening each saved origin once, writing its items, and going back to
//! `about:blank`.

use std::path::{Path, PathBuf};

use launcher::thirtyfour::WebDriver;
use serde_json::{Value, json};

/// The storage state file of `account` under the profiles `root`.
pub fn path_for(root: &Path, account: u64) -> PathBuf {
    root.join("storage-state")
        .join(format!("account-{account}"))
        .join("state.json")
}

/// Take account `account`'s storage state for this run: an exclusive `flock` on
/// `<dir>/lock`, held as long as the returned file lives. Two runs carrying the same
/// account's session would overwrite each other's state — the profile lock's
/// counterpart for browsers that have no profile here. `Ok(None)`: another process
/// holds it.
pub(crate) fn lock(root: &Path, account: u64) -> std::io::Result<Option<std::fs::File>> {
    let path = path_for(root, account);
    let dir = path.parent().expect("a file in a directory");
    for d in [dir.parent().unwrap_or(dir), dir] {
        fsutil::private_dir(d)?;
    }
    match fsutil::lock_file(&dir.join("lock"), true)? {
        fsutil::LockOutcome::Held(f) => Ok(Some(f)),
        fsutil::LockOutcome::Busy => Ok(None),
        other => Err(std::io::Error::other(format!(
            "{}: cannot be locked ({other:?})",
            dir.join("lock").display()
        ))),
    }
}

/// What was carried (for the journal: counts, never values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Carried {
    pub(crate) cookies: usize,
    pub(crate) origins: usize,
}

/// The fields of a CDP `Network.Cookie` that `Network.setCookies` takes back as a
/// `CookieParam` (the others — `size`, `session`, … — are read-only facts).
const COOKIE_PARAMS: &[&str] = &[
    "name",
    "value",
    "domain",
    "path",
    "secure",
    "httpOnly",
    "sameSite",
    "expires",
    "priority",
    "sourceScheme",
    "sourcePort",
    "partitionKey",
];

/// A cookie as `Network.setCookies` wants it. A session cookie (`expires` -1, or
/// `session: true`) gets no `expires`, which would otherwise mean "already expired".
fn cookie_param(c: &Value) -> Option<Value> {
    let obj = c.as_object()?;
    let session = obj.get("session").and_then(Value::as_bool).unwrap_or(false)
        || obj
            .get("expires")
            .and_then(Value::as_f64)
            .is_some_and(|e| e < 0.0);
    let mut out = serde_json::Map::new();
    for k in COOKIE_PARAMS {
        if let Some(v) = obj.get(*k) {
            if *k == "expires" && session {
                continue;
            }
            // A partition key is an object in newer protocols and a string in older
            // ones; an unpartitioned cookie has none worth sending back.
            if *k == "partitionKey" && !v.is_object() {
                continue;
            }
            out.insert(k.to_string(), v.clone());
        }
    }
    (out.contains_key("name") && out.contains_key("domain")).then_some(Value::Object(out))
}

/// `origins` of a saved state with `current` (the page's origin and items) put in
/// place of the entry for the same origin. An origin with no items is dropped.
fn merge_origins(saved: &Value, current: Option<&Value>) -> Vec<Value> {
    let mut out: Vec<Value> = saved["origins"].as_array().cloned().unwrap_or_default();
    if let Some(cur) = current
        && let Some(origin) = cur["origin"].as_str()
    {
        out.retain(|o| o["origin"].as_str() != Some(origin));
        if cur["localStorage"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
        {
            out.push(cur.clone());
        }
    }
    out.sort_by(|a, b| a["origin"].as_str().cmp(&b["origin"].as_str()));
    out
}

const READ_LOCAL_STORAGE: &str = r#"
try {
  const origin = window.location.origin;
  if (!origin || origin === "null") return null;
  const items = [];
  for (let i = 0; i < window.localStorage.length; i++) {
    const name = window.localStorage.key(i);
    items.push({ name, value: window.localStorage.getItem(name) });
  }
  return { origin, localStorage: items };
} catch (e) { return null; }
"#;

const WRITE_LOCAL_STORAGE: &str = r#"
const items = arguments[0];
for (const it of items) window.localStorage.setItem(it.name, it.value);
return items.length;
"#;

/// Read the browser's state and write it to `path` (0600, atomically, in 0700
/// directories). Errors are one line, without any cookie or storage value.
pub(crate) async fn save(driver: &WebDriver, path: &Path) -> Result<Carried, String> {
    let got = driver
        .cdp()
        .send_raw("Network.getAllCookies", json!({}))
        .await
        .map_err(|e| format!("reading cookies: {}", launcher::summary(&e)))?;
    let cookies: Vec<Value> = got["cookies"]
        .as_array()
        .map(|a| a.iter().filter_map(cookie_param).collect())
        .unwrap_or_default();
    let current = driver
        .execute(READ_LOCAL_STORAGE, Vec::new())
        .await
        .ok()
        .map(|r| r.json().clone())
        .filter(|v| !v.is_null());
    let saved = read(path).unwrap_or(Value::Null);
    let origins = merge_origins(&saved, current.as_ref());
    let carried = Carried {
        cookies: cookies.len(),
        origins: origins.len(),
    };
    let state = json!({ "cookies": cookies, "origins": origins });
    let dir = path.parent().expect("a file in a directory");
    // Both levels private: the parent lists which accounts have a state.
    let parent = dir.parent().unwrap_or(dir);
    for d in [parent, dir] {
        fsutil::private_dir(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let bytes = serde_json::to_vec(&state).expect("json serializes");
    fsutil::write_atomic(path, &bytes, 0o600).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(carried)
}

fn read(path: &Path) -> Option<Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Put the state saved at `path` into a fresh browser. `Ok(None)`: nothing saved yet.
pub(crate) async fn restore(driver: &WebDriver, path: &Path) -> Result<Option<Carried>, String> {
    let Some(state) = read(path) else {
        if path.exists() {
            return Err(format!("{}: not a storage state file", path.display()));
        }
        return Ok(None);
    };
    let cookies: Vec<Value> = state["cookies"]
        .as_array()
        .map(|a| a.iter().filter_map(cookie_param).collect())
        .unwrap_or_default();
    if !cookies.is_empty() {
        driver
            .cdp()
            .send_raw("Network.setCookies", json!({ "cookies": cookies }))
            .await
            .map_err(|e| format!("restoring cookies: {}", launcher::summary(&e)))?;
    }
    let origins = state["origins"].as_array().cloned().unwrap_or_default();
    for o in &origins {
        let (Some(origin), Some(items)) = (o["origin"].as_str(), o["localStorage"].as_array())
        else {
            continue;
        };
        // Only http(s) origins: the file is ours, but a browser is told to open it.
        if !(origin.starts_with("http://") || origin.starts_with("https://")) {
            continue;
        }
        driver
            .goto(origin)
            .await
            .map_err(|e| format!("opening {origin}: {}", launcher::summary(&e)))?;
        driver
            .execute(WRITE_LOCAL_STORAGE, vec![Value::Array(items.clone())])
            .await
            .map_err(|e| format!("localStorage of {origin}: {}", launcher::summary(&e)))?;
    }
    if !origins.is_empty() {
        let _ = driver.goto("about:blank").await;
    }
    Ok(Some(Carried {
        cookies: cookies.len(),
        origins: origins.len(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_go_back_as_cookie_params() {
        let session = json!({"name": "sid", "value": "s3cret", "domain": "127.0.0.1", "path": "/",
            "expires": -1, "size": 9, "httpOnly": true, "secure": false, "session": true,
            "priority": "Medium", "sameParty": false, "sourceScheme": "NonSecure", "sourcePort": 8080});
        let p = cookie_param(&session).unwrap();
        assert_eq!(p["value"], "s3cret");
        assert_eq!(p["httpOnly"], true);
        assert!(
            p.get("expires").is_none(),
            "a session cookie must not expire at -1"
        );
        assert!(p.get("size").is_none() && p.get("session").is_none());
        let lasting =
            json!({"name": "a", "value": "b", "domain": "x", "expires": 2.0e9, "session": false});
        assert_eq!(cookie_param(&lasting).unwrap()["expires"], 2.0e9);
        assert!(cookie_param(&json!({"value": "no name"})).is_none());
    }

    #[test]
    fn origins_merge_with_the_current_page_replacing_its_own() {
        let saved = json!({"origins": [
            {"origin": "http://a", "localStorage": [{"name": "k", "value": "old"}]},
            {"origin": "http://b", "localStorage": [{"name": "k", "value": "b"}]},
        ]});
        let cur = json!({"origin": "http://a", "localStorage": [{"name": "k", "value": "new"}]});
        let m = merge_origins(&saved, Some(&cur));
        assert_eq!(m.len(), 2);
        assert_eq!(m[0]["localStorage"][0]["value"], "new");
        // A page whose origin's storage is now empty drops that origin.
        let empty = json!({"origin": "http://b", "localStorage": []});
        assert_eq!(merge_origins(&saved, Some(&empty)).len(), 1);
        assert_eq!(merge_origins(&Value::Null, None).len(), 0);
    }

    #[test]
    fn the_path_is_per_account_under_the_profiles_root() {
        assert_eq!(
            path_for(Path::new("/p"), 7),
            Path::new("/p/storage-state/account-7/state.json")
        );
    }
}
