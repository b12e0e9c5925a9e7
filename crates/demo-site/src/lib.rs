//! The demo web app that end-to-end tests assert against, and the default target of
//! `cargo xtask run`.
//!
//! A tiny server-rendered site: `user-N` logs in with `pass-N`, item pages have an
//! "Add to cart" button, and the server counts every login, failed login and add per
//! user and item. Tests check those [`Counts`] — what the server actually saw —
//! rather than what the runner claims it did.
//!
//! Main items: [`start`] returns a running [`DemoSite`]; [`DemoSite::counts`] takes a
//! snapshot. Routes:
//!
//! | route | does |
//! |---|---|
//! | `GET /` | redirects to `/home` |
//! | `GET /login`, `POST /login` | the login form; a good login sets the `session` cookie |
//! | `GET /home` | `#welcome`, links to items (needs a session) |
//! | `GET /item/{n}` | `#title`, `#add`, `#done`, `#export` (needs a session) |
//! | `GET /export/{n}?ms=N` | downloads `export-<user>-<n>.csv`, its second half N ms after the first (needs a session) |
//! | `GET /upload`, `POST /upload` | a form with a hidden multiple-file input `#doc` and `#send`; the answer lists the received files in `#received` (needs a session) |
//! | `GET /verify`, `POST /verify` | a one-time-code form, `#code` and `#verify`; a good code of the user's [`totp_secret`] answers `#verified`, a wrong one or one of a window already used `#error` (needs a session) |
//! | `POST /api/cart` | `{"item": n}`: counts one add (needs a session) |
//! | `GET /api/counts` | the [`Counts`] as JSON (with the `Via`, `User-Agent` and `Accept-Language` of each user's logins and adds) |
//! | `GET /slow?ms=N` | answers after N ms (at most 30 s) |
//! | `GET /echo?…` | shows its query string in `#echo` |
//!
//! It is deliberately not a real application: sessions live in memory only, the
//! passwords are guessable, and there is no logout or persistence. That is why it
//! only ever binds loopback addresses. It does not install a tracing subscriber; it
//! only emits events.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

mod pages;
mod routes;
mod state;

use state::Shared;

/// Everything the server has seen, per username.
///
/// Serialized as `{"users":{"user-1":{"logins":1,"adds":2,"items":{"1":2},"failed_logins":0}}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Username → that user's counts. A user appears once they logged in, failed to
    /// log in, or added something.
    pub users: BTreeMap<String, UserCounts>,
}

/// What one user did, as the server saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserCounts {
    /// Successful logins.
    pub logins: u64,
    /// Successful `POST /api/cart` calls, over all items.
    pub adds: u64,
    /// Item number → successful adds of that item.
    pub items: BTreeMap<u32, u64>,
    /// Rejected logins for this (well-formed `user-N`) username.
    pub failed_logins: u64,
    /// `Via` header value (as a proxy adds it) → this user's logins and adds that
    /// came with it: which proxy the user's traffic went through. Requests without
    /// a `Via` are not counted here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub via: BTreeMap<String, u64>,
    /// `User-Agent` header value → this user's logins and adds that sent it: which
    /// browser identity the user's traffic carried.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user_agents: BTreeMap<String, u64>,
    /// `Accept-Language` header value → this user's logins and adds that sent it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub accept_languages: BTreeMap<String, u64>,
    /// Logins answered with the challenge page instead (a challenged user; see
    /// [`DemoSite::set_challenged`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub challenges: u64,
    /// Successful `GET /export/{n}` downloads.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub exports: u64,
    /// `POST /verify` calls with a good one-time code.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub verified: u64,
    /// `POST /verify` calls with a wrong or stale one-time code.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bad_codes: u64,
    /// `POST /verify` calls with a good code of a window already used (refused).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reused_codes: u64,
    /// Every country value `POST /settings` received from this user, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub countries: Vec<String>,
    /// Settings saved with the cookie-consent banner accepted first (`consent=1`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub consents: u64,
    /// `POST /api/clear` calls: carts cleared after the page's `confirm()`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub clears: u64,
    /// Every name `POST /api/name` received (typed into the page's `prompt()`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// `POST /authorize` calls (the connect page's popup).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub authorizations: u64,
    /// Every card number `POST /card` (the checkout's iframe) received, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cards: Vec<String>,
    /// Settings saved with the newsletter box checked.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub newsletters: u64,
    /// Settings saved with the terms box checked.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub terms_accepted: u64,
    /// Every file `POST /upload` received from this user, in the order received.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uploads: Vec<Upload>,
}

/// One file the server received in an upload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    /// The file name the browser sent.
    pub name: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its first 200 bytes as text (lossy UTF-8): enough to tell whose file it is.
    pub head: String,
}

/// `username`'s TOTP secret, in base32 as a site shows it beside the QR code: what an
/// accounts file gives `{totp.FIELD}`. Derived from the name, like the passwords, so
/// it is as public as they are — a demo, not a second factor.
pub fn totp_secret(username: &str) -> String {
    totp_rs::Secret::from(state::totp_key(username)).to_base32()
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A running demo site, serving in a tokio task until [`DemoSite::shutdown`] or drop.
///
/// Dropping it stops accepting connections at once and asks open connections to
/// close once their current request is answered.
#[derive(Debug)]
pub struct DemoSite {
    addr: SocketAddr,
    state: Shared,
    /// Dropping or sending on it starts axum's graceful shutdown.
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
}

/// How long [`DemoSite::shutdown`] lets in-flight requests (a long `/slow`, say)
/// finish before it cuts them off.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Binds `addr` and serves the demo site on it in a new tokio task.
///
/// Port 0 picks a free port; [`DemoSite::addr`] tells which. Only loopback
/// addresses are accepted — the site's passwords are public, so it must never be
/// reachable from another host — anything else is an [`io::ErrorKind::InvalidInput`]
/// error. Must be called within a tokio runtime.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let site = demo_site::start("127.0.0.1:0".parse().unwrap()).await?;
/// println!("log in at {}/login", site.base_url());
/// assert!(site.counts().users.is_empty());
/// site.shutdown().await;
/// # Ok(())
/// # }
/// ```
pub async fn start(addr: SocketAddr) -> io::Result<DemoSite> {
    if !addr.ip().is_loopback() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("demo-site binds loopback addresses only, not {addr}"),
        ));
    }
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let state = Shared::default();
    let (stop, stopped) = oneshot::channel::<()>();
    let server =
        axum::serve(listener, routes::router(state.clone())).with_graceful_shutdown(async {
            // An error means the sender was dropped, i.e. the `DemoSite` was: stop too.
            let _ = stopped.await;
        });
    let task = tokio::spawn(server.into_future());
    tracing::debug!(%addr, "demo-site listening");
    Ok(DemoSite {
        addr,
        state,
        stop: Some(stop),
        task: Some(task),
    })
}

impl DemoSite {
    /// The address the server is bound to (with the real port when started on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (or `http://[::1]:PORT` for IPv6), without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// From now on, answer `username`'s logins (whatever the password) with a
    /// "Too Many Requests" page holding a `#captcha` element, status 429, and no
    /// session — what a site does to an account it distrusts. Counted as
    /// `challenges`, never as a login. `false` lifts it.
    pub fn set_challenged(&self, username: &str, on: bool) {
        self.state.set_challenged(username, on);
    }

    /// From now on, `/verify` checks codes made with a period of `seconds` (at least
    /// one) instead of 30, so that a test sees several windows pass in seconds; an
    /// account gives the same period in its `otpauth://totp/…&period=N` URI.
    pub fn set_totp_period(&self, seconds: u64) {
        self.state.set_totp_period(seconds);
    }

    /// A snapshot of the counts right now.
    pub fn counts(&self) -> Counts {
        self.state.counts()
    }

    /// Stops accepting connections, lets in-flight requests finish (for a few
    /// seconds at most), and returns once the server task is gone.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let Some(mut task) = self.task.take() else {
            return;
        };
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => tracing::warn!(%error, "demo-site server failed"),
            Ok(Err(error)) => tracing::warn!(%error, "demo-site server task failed"),
            Err(_) => {
                tracing::warn!("demo-site requests still running after the grace period; aborting");
                task.abort();
            }
        }
    }
}

impl Drop for DemoSite {
    fn drop(&mut self) {
        // Dropping the sender tells open connections to finish gracefully (they run
        // in their own tasks); aborting the accept loop closes the listener now.
        drop(self.stop.take());
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests;
