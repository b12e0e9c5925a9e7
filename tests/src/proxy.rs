//! Per-account authenticated proxies, end to end: two local proxies that demand
//! different credentials, one per account — plain `http://` ones, and `https://` ones
//! (TLS, each certificate from its own CA, named by `proxy_ca`); each account's
//! traffic reached the demo app through its own proxy (the proxies' logs and the
//! app's `Via` counts agree), and the passwords appear in no process's argv or
//! environment, no output and no file of the run. A wrong password, and an
//! `https://` proxy whose certificate is not trusted, are clear, permanent failures,
//! not hangs. The same through a Selenium Grid node is in `grid.rs`.

use std::path::Path;
use std::time::Duration;

use forwarder::testing::{AuthProxy, TestCa, dead_port};

use crate::harness::{Project, events, finish, named, step1};

const PASS_A: &str = "pw-alpha-Zq83x";
const PASS_B: &str = "pw-bravo-Kd27m";

/// The demo workflow, with proxies for loopback targets (Chromium bypasses proxies
/// for loopback by default); `browser` goes into `[browser]`.
pub(crate) fn project_files(p: &Project, browser: &str, accounts: &str) {
    p.write(
        "batch.toml",
        &format!(
            "workflow = \"workflow.toml\"\naccounts = \"accounts.toml\"\n\n\
             [browser]\nargs = [\"--proxy-bypass-list=<-loopback>\"]\n{browser}"
        ),
    );
    p.write("accounts.toml", accounts);
}

/// An account whose proxy is `proxy`; `extra` is more TOML lines for it.
pub(crate) fn account(id: u32, proxy: &str, extra: &str) -> String {
    format!(
        "[[accounts]]\nid = {id}\nusername = \"user-{id}\"\npassword = \"pass-{id}\"\n\
         proxy = \"{proxy}\"\n{extra}\n"
    )
}

/// Plain `http://` proxies, or `https://` ones behind TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Http,
    Https,
}

/// A test proxy named `name` requiring `user`/`password`: plain, or over TLS with a
/// certificate issued by `ca`. Returns it and its URL with the credentials.
async fn proxy(name: &str, user: &str, password: &str, ca: Option<&TestCa>) -> (AuthProxy, String) {
    let creds = Some((user, password));
    match ca {
        None => {
            let p = AuthProxy::start(name, creds).await.unwrap();
            let url = format!("http://{user}:{password}@{}", p.addr());
            (p, url)
        }
        Some(ca) => {
            let p = AuthProxy::start_tls(name, creds, ca).await.unwrap();
            let url = format!("https://{user}:{password}@{}", p.addr());
            (p, url)
        }
    }
}

/// Every needle found in any process's argv or environment: `(pid, where, needle)`.
pub(crate) fn in_processes(needles: &[&str]) -> Vec<(u32, &'static str, String)> {
    let mut found = Vec::new();
    for pid in fsutil::proc::pids() {
        for (what, file) in [("argv", "cmdline"), ("environ", "environ")] {
            let Ok(bytes) = std::fs::read(format!("/proc/{pid}/{file}")) else {
                continue;
            };
            let text = String::from_utf8_lossy(&bytes);
            for n in needles {
                if text.contains(n) {
                    found.push((pid, what, n.to_string()));
                }
            }
        }
    }
    found
}

/// What [`run_scanning`] saw.
struct Scanned {
    out: std::process::Output,
    /// `(pid, where, needle)` found in a process's argv or environment.
    leaks: std::collections::BTreeSet<(u32, &'static str, String)>,
    /// Scans made, and whether one of them ran while browsers were up (more than
    /// one process of the run alive).
    scans: usize,
    browsers_seen: bool,
}

/// Waits (at most 5 minutes) for the run `child` to end, meanwhile scanning every
/// process's argv and environment for `needles` every 25 ms; with `skip_runner`,
/// batch-cli's own process is left out (when the test gave it a secret itself).
async fn run_scanning(
    p: &Project,
    child: tokio::process::Child,
    needles: &[&str],
    skip_runner: bool,
) -> Scanned {
    let pid = child.id().expect("running");
    let (mut leaks, mut scans, mut browsers_seen) = (Default::default(), 0, false);
    while fsutil::proc::alive(pid) {
        let found = in_processes(needles).into_iter();
        Extend::extend(&mut leaks, found.filter(|l| !(skip_runner && l.0 == pid)));
        scans += 1;
        browsers_seen |= p.live_processes().len() > 1;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let out = finish(child, 300).await;
    Scanned {
        out,
        leaks,
        scans,
        browsers_seen,
    }
}

/// Every file under `dir` (except `skip`) containing a needle.
fn in_files(dir: &Path, skip: &Path, needles: &[&str], found: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            in_files(&path, skip, needles, found);
        } else if meta.is_file() && path != skip {
            let bytes = std::fs::read(&path).unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes);
            for n in needles {
                if text.contains(n) {
                    found.push(format!("{}: {n}", path.display()));
                }
            }
        }
    }
}

/// Each `proxy_forwarder` journaled: its account and upstream, sorted.
fn forwarders(events: &[serde_json::Value]) -> Vec<(u64, String)> {
    let mut out: Vec<(u64, String)> = named(events, "proxy_forwarder")
        .iter()
        .map(|e| {
            (
                e["account"].as_u64().unwrap(),
                e["upstream"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

/// The `Via` headers the demo app saw on `user`'s requests, with their counts.
fn via(counts: &demo_site::Counts, user: &str) -> Vec<(String, u64)> {
    counts.users[user].via.clone().into_iter().collect()
}

fn basic(user: &str, pass: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_account_goes_through_its_own_authenticated_proxy_and_no_password_leaks() {
    own_proxies_and_no_leak(Kind::Http).await;
}

/// The same over TLS: each `https://` proxy's certificate comes from its own CA —
/// account 1's is `[browser] proxy_ca`, account 2 overrides it with its own
/// `proxy_ca` — and the credentials travel inside TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_account_goes_through_its_own_https_proxy_with_credentials() {
    own_proxies_and_no_leak(Kind::Https).await;
}

async fn own_proxies_and_no_leak(kind: Kind) {
    let p = Project::new(0).await;
    let (ca_a, ca_b) = (TestCa::new("ca-a"), TestCa::new("ca-b"));
    let tls = kind == Kind::Https;
    let (a, url_a) = proxy("proxy-a", "alice", PASS_A, tls.then_some(&ca_a)).await;
    let (b, url_b) = proxy("proxy-b", "bob", PASS_B, tls.then_some(&ca_b)).await;
    let (browser, own_ca) = match kind {
        Kind::Http => ("", ""),
        Kind::Https => {
            p.write("ca-a.pem", ca_a.pem());
            std::fs::create_dir_all(p.path("certs")).unwrap();
            p.write("certs/ca-b.pem", ca_b.pem());
            (
                "proxy_ca = \"ca-a.pem\"\n",
                "proxy_ca = \"certs/ca-b.pem\"\n",
            )
        }
    };
    project_files(
        &p,
        browser,
        &(account(1, &url_a, "") + account(2, &url_b, own_ca).as_str()),
    );
    let token_a = basic("alice", PASS_A);
    let token_b = basic("bob", PASS_B);
    let needles = [PASS_A, PASS_B, token_a.as_str(), token_b.as_str()];

    let args = step1("1,2", &["--quantity", "2", "--launch-interval", "0"]);
    let child = p.command(&args).spawn().expect("batch-cli starts");
    // While the run is up, every process's argv and environment, again and again.
    let Scanned {
        out,
        leaks,
        scans,
        browsers_seen,
    } = run_scanning(&p, child, &needles, false).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        browsers_seen && scans > 5,
        "the scan ran while browsers were up ({scans})"
    );
    assert!(leaks.is_empty(), "secrets in processes: {leaks:?}");
    for n in needles {
        assert!(
            !stdout.contains(n) && !stderr.contains(n),
            "output shows {n}"
        );
    }
    let mut in_run_files = Vec::new();
    in_files(
        p.dir.path(),
        &p.path("accounts.toml"),
        &needles,
        &mut in_run_files,
    );
    assert!(
        in_run_files.is_empty(),
        "secrets in files: {in_run_files:?}"
    );

    // The app's view: each user's logins and adds came with its own proxy's Via.
    let counts = p.site.counts();
    let via = |user: &str| via(&counts, user);
    assert_eq!(via("user-1"), [("1.1 proxy-a".to_owned(), 3)], "{counts:?}");
    assert_eq!(via("user-2"), [("1.1 proxy-b".to_owned(), 3)], "{counts:?}");
    assert_eq!(
        p.adds("user-1").into_iter().collect::<Vec<_>>(),
        [(1, 1), (2, 1)]
    );
    assert_eq!(
        p.adds("user-2").into_iter().collect::<Vec<_>>(),
        [(1, 1), (2, 1)]
    );

    // The proxies' view agrees: every request authorized, and each saw its own
    // account's one login and two adds to the demo app (and nothing of the other's).
    let site = p.site.addr().to_string();
    for (proxy, name) in [(&a, "proxy-a"), (&b, "proxy-b")] {
        let log = proxy.log();
        assert!(
            !log.is_empty() && log.iter().all(|s| s.authorized),
            "{name}: {log:?}"
        );
        assert!(
            log.iter().all(|s| s.peer.ip().is_loopback()),
            "{name}: {log:?}"
        );
        let posts = |path: &str| {
            log.iter()
                .filter(|s| s.method == "POST" && s.target == format!("http://{site}{path}"))
                .count()
        };
        assert_eq!(
            (posts("/login"), posts("/api/cart")),
            (1, 2),
            "{name}: {log:?}"
        );
    }
    // The forwarders' client sockets are Chrome's, not the proxies': the proxies saw
    // forwarder connections, whose ports differ between the two accounts.
    let ports_a: std::collections::BTreeSet<u16> = a.log().iter().map(|s| s.peer.port()).collect();
    let ports_b: std::collections::BTreeSet<u16> = b.log().iter().map(|s| s.peer.port()).collect();
    assert!(ports_a.is_disjoint(&ports_b));

    let ev = events(&p.run_dir());
    assert_eq!(named(&ev, "browser_created").len(), 2);
    // Each account's forwarder is journaled with its upstream, credentials left out.
    let forwarders = forwarders(&ev);
    let scheme = match kind {
        Kind::Http => "http",
        Kind::Https => "https",
    };
    assert_eq!(
        forwarders,
        [
            (1, format!("{scheme}://{}", a.addr())),
            (2, format!("{scheme}://{}", b.addr()))
        ]
    );
    // Over TLS, every connection of the forwarders completed its handshake.
    assert_eq!((a.handshakes_failed(), b.handshakes_failed()), (0, 0));
    p.assert_nothing_left();
}

/// One `[browser] proxy` for every account, rendered per account: accounts 1 and 2
/// reach their own proxy (its port and user name from their fields, the shared
/// password from the environment), account 3 says `proxy = "none"` and goes
/// direct. The password is in batch-cli's environment only: no driver or browser
/// inherits it, and no output or run file shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_proxy_template_in_batch_toml_serves_every_account_and_none_opts_out() {
    let p = Project::new(0).await;
    let a = AuthProxy::start("proxy-a", Some(("gate-1", PASS_A)))
        .await
        .unwrap();
    let b = AuthProxy::start("proxy-b", Some(("gate-2", PASS_A)))
        .await
        .unwrap();
    let port = |x: &AuthProxy| format!("gate_port = \"{}\"", x.addr().port());
    project_files(
        &p,
        "proxy = \"http://gate-{account.id}:{env.BATCH_TEST_GATE_PW}@127.0.0.1:{account.gate_port}\"\n",
        &format!(
            "[[accounts]]\nid = 1\nusername = \"user-1\"\npassword = \"pass-1\"\n{}\n\
             [[accounts]]\nid = 2\nusername = \"user-2\"\npassword = \"pass-2\"\n{}\n\
             [[accounts]]\nid = 3\nusername = \"user-3\"\npassword = \"pass-3\"\nproxy = \"none\"\n",
            port(&a),
            port(&b)
        ),
    );
    let token = basic("gate-1", PASS_A);
    let needles = [PASS_A, token.as_str()];
    let args = step1("1-3", &["--quantity", "2", "--launch-interval", "0"]);
    let mut cmd = p.command(&args);
    let child = cmd.env("BATCH_TEST_GATE_PW", PASS_A).spawn().unwrap();
    // batch-cli itself was given the password; nothing it starts may hold it.
    let Scanned {
        out,
        leaks,
        browsers_seen,
        ..
    } = run_scanning(&p, child, &needles, true).await;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(browsers_seen, "the scan ran while browsers were up");
    assert!(leaks.is_empty(), "secrets in processes: {leaks:?}");
    assert!(!stdout.contains(PASS_A) && !stderr.contains(PASS_A));
    let mut in_run_files = Vec::new();
    in_files(p.dir.path(), Path::new(""), &needles, &mut in_run_files);
    assert!(in_run_files.is_empty(), "{in_run_files:?}");

    // Each account's traffic came the way its own rendering said.
    let counts = p.site.counts();
    let via = |user: &str| via(&counts, user);
    assert_eq!(via("user-1"), [("1.1 proxy-a".to_owned(), 3)], "{counts:?}");
    assert_eq!(via("user-2"), [("1.1 proxy-b".to_owned(), 3)], "{counts:?}");
    assert_eq!(via("user-3"), [], "{counts:?}");
    for user in ["user-1", "user-2", "user-3"] {
        assert_eq!(
            p.adds(user).into_iter().collect::<Vec<_>>(),
            [(1, 1), (2, 1)]
        );
    }
    for (proxy, name) in [(&a, "proxy-a"), (&b, "proxy-b")] {
        let log = proxy.log();
        assert!(
            !log.is_empty() && log.iter().all(|s| s.authorized),
            "{name}: {log:?}"
        );
    }
    let ev = events(&p.run_dir());
    let forwarders = forwarders(&ev);
    assert_eq!(
        forwarders,
        [
            (1, format!("http://{}", a.addr())),
            (2, format!("http://{}", b.addr()))
        ]
    );
    p.assert_nothing_left();
}

/// An account's `proxy` may list several, tried in order. Account 1's first proxy
/// (with credentials) cannot be reached: its forwarder moves on to the second, with
/// the second's credentials. Account 2's proxies have none: Chromium itself moves on
/// from the dead first one (`--proxy-server=a,b`). Neither password shows anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_cannot_be_reached_is_left_for_the_next_of_the_list() {
    let p = Project::new(0).await;
    let b = AuthProxy::start("proxy-b", Some(("bob", PASS_B)))
        .await
        .unwrap();
    let c = AuthProxy::start("proxy-c", None).await.unwrap();
    let (dead1, dead2) = (dead_port(), dead_port());
    project_files(
        &p,
        "",
        &(account(
            1,
            &format!(
                "http://alice:{PASS_A}@127.0.0.1:{dead1} http://bob:{PASS_B}@{}",
                b.addr()
            ),
            "",
        ) + account(
            2,
            &format!("http://127.0.0.1:{dead2} http://{}", c.addr()),
            "",
        )
        .as_str()),
    );
    let child = p
        .command(&step1(
            "1,2",
            &["--quantity", "2", "--launch-interval", "0"],
        ))
        .spawn()
        .unwrap();
    let Scanned { out, leaks, .. } = run_scanning(&p, child, &[PASS_A, PASS_B], false).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(leaks.is_empty(), "{leaks:?}");
    assert!(!stderr.contains(PASS_A) && !stderr.contains(PASS_B));
    let counts = p.site.counts();
    assert_eq!(
        via(&counts, "user-1"),
        [("1.1 proxy-b".to_owned(), 3)],
        "{counts:?}"
    );
    assert_eq!(
        via(&counts, "user-2"),
        [("1.1 proxy-c".to_owned(), 3)],
        "{counts:?}"
    );
    for user in ["user-1", "user-2"] {
        assert_eq!(
            p.adds(user).into_iter().collect::<Vec<_>>(),
            [(1, 1), (2, 1)]
        );
    }
    assert!(b.log().iter().all(|s| s.authorized), "{:?}", b.log());
    // Account 1's forwarder has both upstreams, in order, and moved on once, journaled;
    // account 2 needs none (Chromium moves on by itself, and says nothing).
    let ev = events(&p.run_dir());
    assert_eq!(
        forwarders(&ev),
        [(1, format!("http://127.0.0.1:{dead1},http://{}", b.addr()))]
    );
    let moved: Vec<(u64, String, String)> = named(&ev, "proxy_failover")
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap().to_owned();
            (e["account"].as_u64().unwrap(), s("from"), s("to"))
        })
        .collect();
    assert_eq!(
        moved,
        [(
            1,
            format!("http://127.0.0.1:{dead1}"),
            format!("http://{}", b.addr())
        )]
    );
    assert!(stderr.contains("using the next of the list"), "{stderr}");
    // The report lists it on account 1's row.
    let rep = crate::harness::report(&p.run_dir());
    let accounts = rep["accounts"].as_array().unwrap();
    let row = |id: u64| accounts.iter().find(|a| a["id"] == id).unwrap();
    assert_eq!(
        row(1)["proxy_failovers"],
        serde_json::json!([{"from": format!("http://127.0.0.1:{dead1}"), "to": format!("http://{}", b.addr())}])
    );
    assert!(row(2).get("proxy_failovers").is_none(), "{rep}");
    p.assert_nothing_left();
}

/// What is wrong with account 1's proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wrong {
    /// An `http://` proxy given the wrong password.
    Password,
    /// An `https://` proxy whose certificate is signed by a CA other than `proxy_ca`'s.
    Ca,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_proxy_password_fails_that_account_clearly_and_at_once() {
    one_account_fails_permanently(Wrong::Password).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_https_proxy_certificate_fails_that_account_clearly_and_at_once() {
    one_account_fails_permanently(Wrong::Ca).await;
}

async fn one_account_fails_permanently(wrong_what: Wrong) {
    let p = Project::new(0).await;
    let wrong = "pw-wrong-Hy61q";
    let (proxy_ca, other_ca) = (TestCa::new("the proxy's ca"), TestCa::new("another ca"));
    let (a, url_a, expected) = match wrong_what {
        Wrong::Password => {
            let (a, url) = proxy("proxy-a", "alice", PASS_A, None).await;
            let url = url.replace(PASS_A, wrong);
            (a, url, "the proxy of account 1 rejected its credentials")
        }
        Wrong::Ca => {
            let (a, url) = proxy("proxy-a", "alice", PASS_A, Some(&proxy_ca)).await;
            (
                a,
                url,
                "the proxy of account 1 failed TLS verification: its certificate is not signed by a trusted CA",
            )
        }
    };
    // Account 1 trusts the other CA only; account 2's plain proxy needs none.
    p.write("other-ca.pem", other_ca.pem());
    let (_b, url_b) = proxy("proxy-b", "bob", PASS_B, None).await;
    project_files(
        &p,
        "",
        &(account(1, &url_a, "proxy_ca = \"other-ca.pem\"\n") + account(2, &url_b, "").as_str()),
    );
    let run = p
        .run(&step1(
            "1,2",
            &[
                "--quantity",
                "2",
                "--launch-interval",
                "0",
                "--retries",
                "2",
            ],
        ))
        .await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let ev = events(&p.run_dir());
    let failed: Vec<_> = named(&ev, "iteration_failed")
        .into_iter()
        .filter(|e| e["account"] == 1)
        .collect();
    assert_eq!(failed.len(), 2, "{failed:?}");
    for f in &failed {
        let error = f["error"].as_str().unwrap_or_default();
        assert!(error.contains(expected), "{f}");
    }
    // Permanent: no retries for account 1 despite --retries 2, and no other outcome.
    assert!(
        named(&ev, "retry").iter().all(|e| e["account"] != 1),
        "{ev:?}"
    );
    assert_eq!(failed[0]["attempts"], 1, "{failed:?}");
    // Account 2 was unaffected.
    assert_eq!(
        p.adds("user-2").into_iter().collect::<Vec<_>>(),
        [(1, 1), (2, 1)]
    );
    assert!(p.adds("user-1").is_empty());
    match wrong_what {
        Wrong::Password => {
            let log = a.log();
            assert!(
                !log.is_empty() && log.iter().all(|s| !s.authorized),
                "{log:?}"
            );
        }
        // The certificate was refused before anything was sent: the proxy saw no
        // request at all, so not the password either.
        Wrong::Ca => {
            assert!(a.log().is_empty(), "{:?}", a.log());
            assert!(a.handshakes_failed() > 0);
        }
    }
    for text in [&run.stdout, &run.stderr] {
        for secret in [wrong, PASS_A, PASS_B] {
            assert!(!text.contains(secret), "{text}");
        }
    }
    p.assert_nothing_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socks5_proxy_with_credentials_carries_its_accounts_traffic() {
    let p = Project::new(0).await;
    let socks = forwarder::testing::Socks5Proxy::start("carol", PASS_A)
        .await
        .unwrap();
    let b = AuthProxy::start("proxy-b", Some(("bob", PASS_B)))
        .await
        .unwrap();
    project_files(
        &p,
        "",
        &(account(1, &format!("socks5://carol:{PASS_A}@{}", socks.addr()), "")
            + account(2, &format!("http://bob:{PASS_B}@{}", b.addr()), "").as_str()),
    );
    let child = p
        .command(&step1(
            "1,2",
            &["--quantity", "2", "--launch-interval", "0"],
        ))
        .spawn()
        .unwrap();
    let Scanned { out, leaks, .. } = run_scanning(&p, child, &[PASS_A, PASS_B], false).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(leaks.is_empty(), "{leaks:?}");
    // Account 1 went through SOCKS5 — a tunnel adds no Via — authenticated every
    // time; account 2 through its HTTP proxy. (Chromium's own background requests
    // to Google services go through the proxy too; the test proxies refuse every
    // target that is not loopback.)
    let log = socks.log();
    let site = p.site.addr().to_string();
    assert!(
        log.iter().any(|s| s.target == site),
        "the demo app not reached: {log:?}"
    );
    assert!(log.iter().all(|s| s.authorized), "{log:?}");
    let counts = p.site.counts();
    assert!(counts.users["user-1"].via.is_empty(), "{counts:?}");
    assert_eq!(via(&counts, "user-2"), [("1.1 proxy-b".to_owned(), 3)]);
    for user in ["user-1", "user-2"] {
        assert_eq!(
            p.adds(user).into_iter().collect::<Vec<_>>(),
            [(1, 1), (2, 1)]
        );
    }
    p.assert_nothing_left();
}

/// `doctor` tries each proxy the accounts name: one that cannot be reached fails the
/// check (exit 3) naming it and its accounts, unless each of them has another of its
/// list that can be. No password is shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_each_proxy_that_cannot_be_reached() {
    let p = Project::new(0).await;
    let b = AuthProxy::start("proxy-b", Some(("bob", PASS_B)))
        .await
        .unwrap();
    let dead = dead_port();
    let (live, dead_url) = (
        format!("http://bob:{PASS_B}@{}", b.addr()),
        format!("http://alice:{PASS_A}@127.0.0.1:{dead}"),
    );
    project_files(
        &p,
        "",
        &(account(1, &live, "") + account(2, &dead_url, "").as_str()),
    );
    let d = p.run(&["doctor"]).await;
    let shown = format!("{}\n{}", d.stdout, d.stderr);
    assert_eq!(d.code, Some(3), "{shown}");
    let b_line = format!("ok   proxy http://{}: reachable (accounts 1)", b.addr());
    assert!(d.stdout.contains(&b_line), "{shown}");
    let dead_line = format!("FAIL proxy http://127.0.0.1:{dead}: unreachable: ");
    assert!(
        d.stdout.contains(&dead_line) && d.stdout.contains("(accounts 2)"),
        "{shown}"
    );
    assert!(
        !shown.contains(PASS_A) && !shown.contains(PASS_B),
        "{shown}"
    );

    // Account 2 goes on through the live one: a warning line, and a pass.
    let list = format!("{dead_url} {live}");
    project_files(
        &p,
        "",
        &(account(1, &live, "") + account(2, &list, "").as_str()),
    );
    let d = p.run(&["doctor"]).await;
    let shown = format!("{}\n{}", d.stdout, d.stderr);
    assert_eq!(d.code, Some(0), "{shown}");
    assert!(
        d.stdout.contains(&format!(
            "ok   proxy http://{}: reachable (accounts 1, 2)",
            b.addr()
        )),
        "{shown}"
    );
    assert!(
        d.stdout
            .contains("accounts 2 go on through the next of their list"),
        "{shown}"
    );
    assert!(
        !shown.contains(PASS_A) && !shown.contains(PASS_B),
        "{shown}"
    );
    p.assert_nothing_left();
}
