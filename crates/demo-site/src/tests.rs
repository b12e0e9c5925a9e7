//! Tests of the running server: each starts its own site on `127.0.0.1:0` and speaks
//! hand-written HTTP/1.1 to it over a `TcpStream`.
//!
//! A hand-written client keeps the crate free of an HTTP client dependency and shows
//! exactly what goes over the wire (cookies, redirects, status codes), which is what
//! a browser sees. These tests do not drive a browser; the workspace's `tests`
//! crate does that.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

/// Long enough for a loaded 2-core CI machine, short enough that a hung server
/// fails the test rather than the whole run.
const REPLY_DEADLINE: Duration = Duration::from_secs(10);

async fn site() -> DemoSite {
    start("127.0.0.1:0".parse().unwrap())
        .await
        .expect("start the demo site")
}

/// One parsed HTTP response.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `session=<id>` from `Set-Cookie`, ready to send back in a `Cookie` header.
    fn session_cookie(&self) -> Option<String> {
        let set_cookie = self.header("set-cookie")?;
        let pair = set_cookie.split(';').next()?.trim();
        pair.starts_with("session=").then(|| pair.to_owned())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }
}

/// Sends one request on a fresh connection and reads the whole response.
async fn send(
    site: &DemoSite,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        site.addr(),
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);

    let exchange = async {
        let mut stream = TcpStream::connect(site.addr()).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        std::io::Result::Ok(raw)
    };
    let raw = tokio::time::timeout(REPLY_DEADLINE, exchange)
        .await
        .unwrap_or_else(|_| panic!("no reply to {method} {path} within {REPLY_DEADLINE:?}"))
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    parse_reply(&String::from_utf8(raw).expect("a UTF-8 response"))
}

fn parse_reply(raw: &str) -> Reply {
    let (head, body) = raw.split_once("\r\n\r\n").expect("a header/body separator");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect(status_line);
    let headers: Vec<(String, String)> = lines
        .map(|line| {
            let (name, value) = line.split_once(':').expect(line);
            (name.trim().to_owned(), value.trim().to_owned())
        })
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        unchunk(body)
    } else {
        body.to_owned()
    };
    Reply {
        status,
        headers,
        body,
    }
}

/// Decodes a chunked body. The server sends full bodies with a length today; this
/// keeps the tests honest should that change.
fn unchunk(mut rest: &str) -> String {
    let mut body = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").expect("a chunk size line");
        let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).expect(size);
        if size == 0 {
            return body;
        }
        body.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn get(site: &DemoSite, path: &str, cookie: Option<&str>) -> Reply {
    let headers: Vec<(&str, &str)> = cookie.map(|c| ("Cookie", c)).into_iter().collect();
    send(site, "GET", path, &headers, "").await
}

async fn post_login(site: &DemoSite, username: &str, password: &str) -> Reply {
    let body = format!(
        "username={}&password={}",
        form_encode(username),
        form_encode(password)
    );
    send(
        site,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &body,
    )
    .await
}

/// Logs `user-N` in and returns the `Cookie` header value for its session.
async fn login(site: &DemoSite, n: u64) -> String {
    let reply = post_login(site, &format!("user-{n}"), &format!("pass-{n}")).await;
    assert_eq!(reply.status, 303, "{reply:?}");
    reply.session_cookie().expect("a session cookie")
}

async fn post_cart(site: &DemoSite, cookie: Option<&str>, body: &str) -> Reply {
    let mut headers = vec![("Content-Type", "application/json")];
    headers.extend(cookie.map(|c| ("Cookie", c)));
    send(site, "POST", "/api/cart", &headers, body).await
}

/// One user's expected counts: `(user, logins, failed_logins, [(item, adds)])`;
/// `adds` is the sum of the items'.
type Expected<'a> = (&'a str, u64, u64, &'a [(u32, u64)]);

/// Builds the expected counts, one [`Expected`] per user.
fn counts_of(users: &[Expected<'_>]) -> Counts {
    let users = users
        .iter()
        .map(|&(user, logins, failed_logins, items)| {
            let items: BTreeMap<u32, u64> = items.iter().copied().collect();
            let adds = items.values().sum();
            let counts = UserCounts {
                logins,
                adds,
                items,
                failed_logins,
                ..UserCounts::default()
            };
            (user.to_owned(), counts)
        })
        .collect();
    Counts { users }
}

#[tokio::test]
async fn login_sets_a_cookie_only_for_good_credentials() {
    let site = site().await;
    async fn check(site: &DemoSite, username: &str, password: &str, ok: bool) {
        let reply = post_login(site, username, password).await;
        let what = format!("{username:?} / {password:?}: {reply:?}");
        if ok {
            assert_eq!(reply.status, 303, "{what}");
            assert_eq!(reply.header("location"), Some("/home"), "{what}");
            assert!(reply.session_cookie().is_some(), "{what}");
        } else {
            assert_eq!(reply.status, 401, "{what}");
            assert_eq!(reply.header("set-cookie"), None, "{what}");
            assert!(
                reply
                    .body
                    .contains("<p id=\"error\">wrong username or password</p>"),
                "{what}"
            );
        }
    }
    check(&site, "user-1", "pass-1", true).await;
    check(&site, "user-1", "pass-1", true).await;
    check(&site, "user-12345", "pass-12345", true).await;
    check(&site, "user-1", "pass-2", false).await;
    check(&site, "user-1", "", false).await;
    check(&site, "user-2", "pass-1", false).await;
    check(&site, "user-0", "pass-0", false).await;
    check(&site, "user-01", "pass-1", false).await;
    check(&site, "admin", "admin", false).await;
    check(&site, "", "", false).await;

    // Failed logins count only for names that could be users.
    let expected = counts_of(&[
        ("user-1", 2, 2, &[]),
        ("user-12345", 1, 0, &[]),
        ("user-2", 0, 1, &[]),
    ]);
    assert_eq!(site.counts(), expected);
}

#[tokio::test]
async fn login_cookie_is_persistent_and_http_only() {
    let site = site().await;
    let reply = post_login(&site, "user-3", "pass-3").await;
    let cookie = reply.header("set-cookie").expect("a Set-Cookie header");
    let attributes: Vec<&str> = cookie.split(';').map(str::trim).skip(1).collect();
    assert_eq!(
        attributes,
        ["Path=/", "HttpOnly", "SameSite=Lax", "Max-Age=86400"]
    );

    // Two logins of the same user are two sessions.
    let other = post_login(&site, "user-3", "pass-3").await;
    assert_ne!(reply.session_cookie(), other.session_cookie());
}

#[tokio::test]
async fn a_challenged_user_gets_the_captcha_page_and_no_session() {
    let site = site().await;
    site.set_challenged("user-2", true);
    let reply = post_login(&site, "user-2", "pass-2").await;
    assert_eq!(reply.status, 429);
    assert!(reply.body.contains("id=\"captcha\""), "{}", reply.body);
    assert!(reply.body.contains("Too Many Requests"), "{}", reply.body);
    assert_eq!(reply.session_cookie(), None);
    // Others are not affected; lifting it lets user-2 in again.
    login(&site, 1).await;
    site.set_challenged("user-2", false);
    login(&site, 2).await;
    let users = site.counts().users;
    assert_eq!((users["user-2"].challenges, users["user-2"].logins), (1, 1));
    assert_eq!((users["user-1"].challenges, users["user-1"].logins), (0, 1));
}

#[tokio::test]
async fn failed_login_escapes_what_the_user_typed() {
    let site = site().await;
    let reply = post_login(&site, "<script>alert(\"x\")</script>", "nope").await;
    assert_eq!(reply.status, 401);
    assert!(!reply.body.contains("<script>alert"), "{}", reply.body);
    assert!(
        reply
            .body
            .contains("value=\"&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;\""),
        "{}",
        reply.body
    );
    assert_eq!(site.counts(), Counts::default());
}

#[tokio::test]
async fn login_form_is_shown_even_when_logged_in() {
    let site = site().await;
    let cookie = login(&site, 1).await;
    for cookie in [None, Some(cookie.as_str())] {
        let reply = get(&site, "/login", cookie).await;
        assert_eq!(reply.status, 200);
        for needle in [
            "<form method=\"post\" action=\"/login\">",
            "<input id=\"username\" name=\"username\"",
            "<input id=\"password\" name=\"password\" type=\"password\"",
            "<button id=\"submit\" type=\"submit\">Log in</button>",
        ] {
            assert!(
                reply.body.contains(needle),
                "missing {needle:?} in {}",
                reply.body
            );
        }
        assert!(!reply.body.contains("id=\"error\""));
    }
}

#[tokio::test]
async fn pages_redirect_to_login_without_a_session() {
    let site = site().await;
    async fn check(site: &DemoSite, path: &str, cookie: Option<&str>) {
        let reply = get(site, path, cookie).await;
        assert_eq!(reply.status, 303, "{path} with {cookie:?}");
        assert_eq!(
            reply.header("location"),
            Some("/login"),
            "{path} with {cookie:?}"
        );
    }
    for path in [
        "/home",
        "/item/1",
        "/item/4294967295",
        "/export/1",
        "/upload",
        "/verify",
        "/settings",
        "/settings?banner=1",
        "/pay",
        "/card",
        "/connect",
        "/authorize",
        "/manage",
    ] {
        check(&site, path, None).await;
        check(&site, path, Some("session=not-a-session")).await;
        check(&site, path, Some("other=1")).await;
    }
}

#[tokio::test]
async fn export_is_a_per_user_attachment_counted_once_each() {
    let site = site().await;
    let one = login(&site, 1).await;
    let two = login(&site, 2).await;
    let started = Instant::now();
    let reply = get(&site, "/export/4?ms=50", Some(&one)).await;
    assert!(
        started.elapsed() >= Duration::from_millis(50),
        "the second half waits"
    );
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-disposition"),
        Some("attachment; filename=\"export-user-1-4.csv\"")
    );
    assert_eq!(reply.header("content-type"), Some("text/csv"));
    assert_eq!(reply.body, "user,item,export\nuser-1,4,1\n");
    let reply = get(&site, "/export/4", Some(&one)).await;
    assert_eq!(
        reply.body, "user,item,export\nuser-1,4,2\n",
        "numbered per user"
    );
    let reply = get(&site, "/export/9", Some(&two)).await;
    assert_eq!(reply.body, "user,item,export\nuser-2,9,1\n");
    let counts = site.counts();
    assert_eq!(counts.users["user-1"].exports, 2);
    assert_eq!(counts.users["user-2"].exports, 1);
    assert!(
        get(&site, "/item/4", Some(&one))
            .await
            .body
            .contains("<a id=\"export\" href=\"/export/4\">")
    );
}

/// A multipart body with one `doc` part per file (`(name, content)`; an empty name is
/// what a browser sends for an empty file input) and one other field.
fn multipart(files: &[(&str, &str)]) -> (String, String) {
    let boundary = "----demo-boundary-7c1f";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nnot a file\r\n"
    );
    for (name, content) in files {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"doc\"; filename=\"{name}\"\r\n\
             Content-Type: text/plain\r\n\r\n{content}\r\n"
        ));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[tokio::test]
async fn uploads_are_recorded_per_user_with_name_size_and_head() {
    let site = site().await;
    let one = login(&site, 1).await;
    let two = login(&site, 2).await;
    let form = get(&site, "/upload", Some(&one)).await;
    assert_eq!(form.status, 200);
    assert!(
        form.body
            .contains("<input type=\"file\" id=\"doc\" name=\"doc\" multiple")
    );

    let long = "x".repeat(300);
    let (ctype, body) = multipart(&[("a.txt", "account 1\n"), ("long.txt", &long)]);
    let headers = [("Content-Type", ctype.as_str()), ("Cookie", one.as_str())];
    let reply = send(&site, "POST", "/upload", &headers, &body).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(
        reply
            .body
            .contains("<p id=\"received\">received 2 files</p>"),
        "{}",
        reply.body
    );
    assert!(
        reply.body.contains("<li>long.txt (300 bytes)</li>"),
        "{}",
        reply.body
    );

    // An empty file input sends a part without a file name: nothing is received.
    let (ctype, body) = multipart(&[("", "")]);
    let headers = [("Content-Type", ctype.as_str()), ("Cookie", two.as_str())];
    let reply = send(&site, "POST", "/upload", &headers, &body).await;
    assert!(reply.body.contains("received 0 files"), "{}", reply.body);
    // Without a session nothing is recorded.
    let (ctype, body) = multipart(&[("b.txt", "anonymous")]);
    let reply = send(
        &site,
        "POST",
        "/upload",
        &[("Content-Type", ctype.as_str())],
        &body,
    )
    .await;
    assert_eq!(reply.status, 303);

    let counts = site.counts();
    let uploads = &counts.users["user-1"].uploads;
    assert_eq!(
        uploads,
        &vec![
            Upload {
                name: "a.txt".into(),
                bytes: 10,
                head: "account 1\n".into()
            },
            Upload {
                name: "long.txt".into(),
                bytes: 300,
                head: "x".repeat(200)
            },
        ]
    );
    assert!(counts.users["user-2"].uploads.is_empty());
}

/// The code of `secret` (base32) for the `period`-second window that holds `unix_time`.
fn code_of(secret: &str, period: u64, unix_time: u64) -> String {
    let key = totp_rs::Secret::try_from_base32(secret).unwrap();
    let totp = totp_rs::Builder::new()
        .with_secret(key)
        .with_step_duration(period);
    totp.build().unwrap().generate(unix_time).to_string()
}

fn unix() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

/// Out of a `period`'s last fifth, so that "now" here is the server's "now" too.
async fn early_in_a_window(period: u64) -> u64 {
    let into = unix().as_secs_f64() % period as f64;
    if into >= period as f64 * 0.8 {
        tokio::time::sleep(Duration::from_secs_f64(period as f64 - into + 0.05)).await;
    }
    unix().as_secs()
}

async fn post_code(site: &DemoSite, cookie: &str, code: &str) -> Reply {
    let headers = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Cookie", cookie),
    ];
    send(site, "POST", "/verify", &headers, &format!("code={code}")).await
}

#[tokio::test]
async fn verify_takes_each_window_of_the_users_code_once_and_counts_every_outcome() {
    let site = site().await;
    let (one, two) = (login(&site, 1).await, login(&site, 2).await);
    let form = get(&site, "/verify", Some(&one)).await;
    assert_eq!(form.status, 200);
    assert!(form.body.contains("id=\"code\"") && form.body.contains("id=\"verify\""));
    let (secret1, secret2) = (totp_secret("user-1"), totp_secret("user-2"));
    assert_eq!(secret1.len(), 32, "20 bytes in base32: {secret1}");
    assert_ne!(secret1, secret2);
    // The status of a POST of `cookie`'s session with the code of (secret, period, t).
    let status = |cookie: &str, secret: &str, period: u64, t: u64| {
        let (site, cookie, code) = (&site, cookie.to_owned(), code_of(secret, period, t));
        async move { post_code(site, &cookie, &code).await.status }
    };

    let now = early_in_a_window(30).await;
    let good = post_code(&site, &one, &code_of(&secret1, 30, now)).await;
    assert_eq!(good.status, 200, "{good:?}");
    assert!(good.body.contains("id=\"verified\""), "{}", good.body);
    let again = post_code(&site, &one, &code_of(&secret1, 30, now)).await;
    assert_eq!(again.status, 401, "{again:?}");
    assert!(again.body.contains("id=\"error\""), "{}", again.body);
    // The previous window's code, good a moment ago, is used up too; two windows
    // back is stale; user-1's code is not user-2's.
    assert_eq!(status(&one, &secret1, 30, now - 30).await, 401);
    assert_eq!(status(&one, &secret1, 30, now - 90).await, 401);
    assert_eq!(status(&two, &secret1, 30, now).await, 401);
    let outcomes = |u: &str| {
        let c = &site.counts().users[u];
        (c.verified, c.reused_codes, c.bad_codes)
    };
    assert_eq!(outcomes("user-1"), (1, 2, 1));
    assert_eq!(outcomes("user-2"), (0, 0, 1));

    // With a 2 s period a 30 s code is wrong, and each new window's code is fresh.
    site.set_totp_period(2);
    let now = early_in_a_window(2).await;
    assert_eq!(status(&two, &secret2, 30, now).await, 401);
    assert_eq!(status(&two, &secret2, 2, now).await, 200);
    assert_eq!(status(&two, &secret2, 2, now).await, 401);
    let into = unix().as_secs_f64() % 2.0;
    tokio::time::sleep(Duration::from_secs_f64(2.05 - into)).await;
    let next = unix().as_secs();
    assert!(next / 2 > now / 2);
    assert_eq!(status(&two, &secret2, 2, next).await, 200);
    assert_eq!(outcomes("user-2"), (2, 1, 2));
}

#[tokio::test]
async fn root_redirects_to_home() {
    let site = site().await;
    let reply = get(&site, "/", None).await;
    assert_eq!(reply.status, 303);
    assert_eq!(reply.header("location"), Some("/home"));
}

#[tokio::test]
async fn home_and_item_pages_for_a_logged_in_user() {
    let site = site().await;
    let cookie = login(&site, 7).await;

    let home = get(&site, "/home", Some(&cookie)).await;
    assert_eq!(home.status, 200);
    assert!(
        home.body
            .contains("<h1 id=\"welcome\">Welcome, user-7</h1>"),
        "{}",
        home.body
    );
    assert!(home.body.contains("href=\"/item/1\""), "{}", home.body);

    let item = get(&site, "/item/42", Some(&cookie)).await;
    assert_eq!(item.status, 200);
    for needle in [
        "<title>Item 42</title>",
        "<h1 id=\"title\">Item 42</h1>",
        "<button id=\"add\">Add to cart</button>",
        "<div id=\"done\"></div>",
        "'added 42'",
    ] {
        assert!(
            item.body.contains(needle),
            "missing {needle:?} in {}",
            item.body
        );
    }

    // Not a u32: axum's path rejection, not a page.
    assert_eq!(get(&site, "/item/abc", Some(&cookie)).await.status, 400);
}

#[tokio::test]
async fn cart_counts_per_user_and_item() {
    let site = site().await;
    let one = login(&site, 1).await;
    let two = login(&site, 2).await;

    async fn check(site: &DemoSite, cookie: &str, item: u32, expected: Value) {
        let reply = post_cart(site, Some(cookie), &json!({ "item": item }).to_string()).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.json(), expected);
    }
    check(
        &site,
        &one,
        1,
        json!({"ok": true, "user": "user-1", "item": 1, "adds": 1}),
    )
    .await;
    check(
        &site,
        &one,
        1,
        json!({"ok": true, "user": "user-1", "item": 1, "adds": 2}),
    )
    .await;
    check(
        &site,
        &two,
        1,
        json!({"ok": true, "user": "user-2", "item": 1, "adds": 1}),
    )
    .await;
    check(
        &site,
        &one,
        3,
        json!({"ok": true, "user": "user-1", "item": 3, "adds": 3}),
    )
    .await;
    check(
        &site,
        &two,
        0,
        json!({"ok": true, "user": "user-2", "item": 0, "adds": 2}),
    )
    .await;

    let expected = counts_of(&[
        ("user-1", 1, 0, &[(1, 2), (3, 1)]),
        ("user-2", 1, 0, &[(0, 1), (1, 1)]),
    ]);
    assert_eq!(site.counts(), expected);
}

#[tokio::test]
async fn cart_needs_a_session() {
    let site = site().await;
    for cookie in [None, Some("session=forged"), Some("session=")] {
        let reply = post_cart(&site, cookie, r#"{"item": 1}"#).await;
        assert_eq!(reply.status, 401, "{cookie:?}");
        assert_eq!(reply.json(), json!({"ok": false, "error": "not logged in"}));
    }
    // No session and a bad body: still "not logged in".
    assert_eq!(post_cart(&site, None, "nonsense").await.status, 401);
    assert_eq!(site.counts(), Counts::default());
}

#[tokio::test]
async fn cart_rejects_bad_bodies_without_counting() {
    let site = site().await;
    let cookie = login(&site, 1).await;
    for body in ["", "nonsense", r#"{"item": "x"}"#, r#"{"item": -1}"#, "{}"] {
        let reply = post_cart(&site, Some(&cookie), body).await;
        assert!((400..500).contains(&reply.status), "{body:?}: {reply:?}");
        assert_eq!(reply.json()["ok"], json!(false), "{body:?}");
    }
    assert_eq!(site.counts(), counts_of(&[("user-1", 1, 0, &[])]));
}

#[tokio::test]
async fn counts_api_has_the_documented_shape() {
    let site = site().await;
    assert_eq!(
        get(&site, "/api/counts", None).await.json(),
        json!({"users": {}})
    );

    let cookie = login(&site, 1).await;
    post_cart(&site, Some(&cookie), r#"{"item": 5}"#).await;
    post_login(&site, "user-1", "wrong").await;

    let reply = get(&site, "/api/counts", None).await;
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    let expected = json!({"users": {"user-1": {"logins": 1, "adds": 1, "items": {"5": 1}, "failed_logins": 1}}});
    assert_eq!(reply.json(), expected);
    // And it round-trips into the library's type.
    let parsed: Counts = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(parsed, site.counts());
}

#[tokio::test]
async fn slow_answers_after_the_delay() {
    let site = site().await;
    let started = Instant::now();
    let reply = get(&site, "/slow?ms=50", None).await;
    assert!(started.elapsed() >= Duration::from_millis(50));
    assert_eq!(reply.status, 200);
    assert!(
        reply.body.contains("<p id=\"slow\">done</p>"),
        "{}",
        reply.body
    );

    let reply = get(&site, "/slow", None).await;
    assert!(
        reply.body.contains("<p id=\"slow\">done</p>"),
        "{}",
        reply.body
    );
    assert_eq!(get(&site, "/slow?ms=soon", None).await.status, 400);
}

#[tokio::test]
async fn echo_shows_the_query_escaped() {
    let site = site().await;
    async fn check(site: &DemoSite, path: &str, echo: &str, params: &[&str]) {
        let reply = get(site, path, None).await;
        assert_eq!(reply.status, 200, "{path}");
        assert!(
            reply
                .body
                .contains(&format!("<pre id=\"echo\">{echo}</pre>")),
            "{path}: {}",
            reply.body
        );
        for param in params {
            assert!(
                reply.body.contains(&format!("<li>{param}</li>")),
                "{path}: {}",
                reply.body
            );
        }
    }
    check(&site, "/echo", "", &[]).await;
    check(
        &site,
        "/echo?user=user-1&i=3",
        "user=user-1&amp;i=3",
        &["user = user-1", "i = 3"],
    )
    .await;
    check(
        &site,
        "/echo?q=%3Cb%3E+x",
        "q=%3Cb%3E+x",
        &["q = &lt;b&gt; x"],
    )
    .await;
    check(&site, "/echo?a=%22%27", "a=%22%27", &["a = &quot;&#39;"]).await;
}

#[tokio::test]
async fn unknown_paths_are_404_pages() {
    let site = site().await;
    let reply = get(&site, "/nope/%3Cx%3E", None).await;
    assert_eq!(reply.status, 404);
    assert!(reply.body.contains("id=\"not-found\""), "{}", reply.body);
}

#[tokio::test]
async fn base_url_names_the_bound_port() {
    let site = site().await;
    assert_ne!(site.addr().port(), 0);
    assert_eq!(
        site.base_url(),
        format!("http://127.0.0.1:{}", site.addr().port())
    );
}

#[tokio::test]
async fn start_refuses_addresses_other_hosts_can_reach() {
    for addr in ["0.0.0.0:0", "[::]:0", "192.0.2.1:0"] {
        let error = start(addr.parse().unwrap()).await.expect_err(addr);
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{addr}");
    }
}

#[tokio::test]
async fn shutdown_closes_the_listener() {
    let site = site().await;
    let addr = site.addr();
    let cookie = login(&site, 1).await;
    post_cart(&site, Some(&cookie), r#"{"item": 1}"#).await;
    site.shutdown().await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "still accepting on {addr}"
    );
}

/// Browsers keep idle connections open; shutdown must close them rather than wait
/// for the browser to hang up.
#[tokio::test]
async fn shutdown_closes_idle_keep_alive_connections() {
    let site = site().await;
    let mut stream = TcpStream::connect(site.addr()).await.unwrap();
    let request = format!("GET /api/counts HTTP/1.1\r\nHost: {}\r\n\r\n", site.addr());
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    while !reply.ends_with(br#"{"users":{}}"#) {
        let mut buf = [0; 1024];
        let n = tokio::time::timeout(REPLY_DEADLINE, stream.read(&mut buf))
            .await
            .expect("a reply")
            .unwrap();
        assert_ne!(
            n,
            0,
            "closed before the reply: {}",
            String::from_utf8_lossy(&reply)
        );
        reply.extend_from_slice(&buf[..n]);
    }

    site.shutdown().await;
    let mut rest = Vec::new();
    let read = tokio::time::timeout(REPLY_DEADLINE, stream.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the idle connection is still open");
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
}

#[tokio::test]
async fn drop_closes_the_listener() {
    let site = site().await;
    let addr = site.addr();
    drop(site);
    // Abort takes effect when the runtime next polls the task, so wait for it
    // with a deadline rather than a fixed sleep.
    let deadline = Instant::now() + REPLY_DEADLINE;
    while TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting on {addr}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Each user's `User-Agent` and `Accept-Language` are counted per login and add, so
/// a test can see which browser identity each user's traffic carried.
#[tokio::test]
async fn user_agents_and_languages_are_counted_per_user() {
    let site = site().await;
    let form = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("User-Agent", "Agent/1"),
        ("Accept-Language", "de-DE,de;q=0.9"),
    ];
    let reply = send(
        &site,
        "POST",
        "/login",
        &form,
        "username=user-1&password=pass-1",
    )
    .await;
    assert_eq!(reply.status, 303, "{reply:?}");
    let cookie = reply.session_cookie().expect("a session cookie");
    let cart = [
        ("Content-Type", "application/json"),
        ("Cookie", cookie.as_str()),
        ("User-Agent", "Agent/2"),
    ];
    let reply = send(&site, "POST", "/api/cart", &cart, "{\"item\":1}").await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let _ = login(&site, 2).await;
    let counts = site.counts();
    let one = &counts.users["user-1"];
    let agents: Vec<(&str, u64)> = one
        .user_agents
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(agents, [("Agent/1", 1), ("Agent/2", 1)]);
    let langs: Vec<(&str, u64)> = one
        .accept_languages
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(langs, [("de-DE,de;q=0.9", 1)]);
    // A request without the headers is not counted under them.
    let two = &counts.users["user-2"];
    assert!(
        two.user_agents.is_empty() && two.accept_languages.is_empty(),
        "{two:?}"
    );
}

/// The settings form offers its countries only after a delay (a browser test waits
/// for them); the banner is on the page only when asked for; what is saved, and a
/// consent sent with it, are counted for the session's user alone, and nothing
/// counts without a session.
#[tokio::test]
async fn settings_save_the_country_and_consents_are_counted_per_user() {
    let site = site().await;
    let cookie = login(&site, 1).await;
    let plain = get(&site, "/settings", Some(&cookie)).await;
    assert_eq!(plain.status, 200);
    assert!(plain.body.contains(
        "<select id=\"country\" name=\"country\"><option value=\"\">Choose…</option></select>"
    ));
    assert!(plain.body.contains("{value: 'kr', text: 'Korea'}"));
    assert!(
        plain
            .body
            .contains("{value: 'fr', text: 'France', disabled: true}")
    );
    assert!(
        !plain.body.contains("'consented'"),
        "no banner script without ?banner=1"
    );
    let banner = get(&site, "/settings?banner=1", Some(&cookie)).await;
    assert!(
        banner
            .body
            .contains("document.getElementById('consented').value = '1'")
    );

    let form = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Cookie", cookie.as_str()),
    ];
    let saved = send(&site, "POST", "/settings", &form, "country=kr").await;
    assert_eq!(saved.status, 200, "{saved:?}");
    assert!(saved.body.contains("<p id=\"saved\">saved kr</p>"));
    let escaped = send(&site, "POST", "/settings", &form, "country=%3Cb%3E").await;
    assert!(escaped.body.contains("saved &lt;b&gt;"));
    assert!(
        plain
            .body
            .contains("id=\"newsletter\" name=\"newsletter\" checked")
    );
    assert!(
        plain
            .body
            .contains("id=\"terms\" name=\"terms\" style=\"display:none\"")
    );
    let consented = send(
        &site,
        "POST",
        "/settings",
        &form,
        "country=jp&consent=1&terms=on&newsletter=on",
    )
    .await;
    assert!(consented.body.contains("saved jp"));

    let anonymous = send(&site, "POST", "/settings", &form[..1], "country=jp").await;
    assert_eq!(anonymous.status, 303);

    let counts = site.counts();
    assert_eq!(counts.users["user-1"].countries, ["kr", "<b>", "jp"]);
    assert_eq!(counts.users["user-1"].consents, 1);
    assert_eq!(counts.users["user-1"].terms_accepted, 1);
    assert_eq!(counts.users["user-1"].newsletters, 1);
    assert_eq!(counts.users.len(), 1, "{counts:?}");
}

/// The checkout embeds its card form in an iframe; what the frame sends is counted
/// for the session's user, and shown escaped.
#[tokio::test]
async fn the_checkouts_iframe_takes_the_card() {
    let site = site().await;
    let cookie = login(&site, 2).await;
    let page = get(&site, "/pay", Some(&cookie)).await;
    assert!(
        page.body
            .contains("<iframe id=\"card-frame\" src=\"/card\""),
        "{page:?}"
    );
    let frame = get(&site, "/card", Some(&cookie)).await;
    assert!(frame.body.contains("id=\"card-number\" name=\"number\""));
    let form = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Cookie", cookie.as_str()),
    ];
    let paid = send(&site, "POST", "/card", &form, "number=4242%3C").await;
    assert!(
        paid.body.contains("<p id=\"paid\">paid with 4242&lt;</p>"),
        "{paid:?}"
    );
    assert_eq!(site.counts().users["user-2"].cards, ["4242<"]);
}

/// The connect page opens its popup on a click and listens for its message; the
/// popup's answer is counted for the session's user and closes it only when asked.
#[tokio::test]
async fn the_connect_popup_authorizes_and_closes_when_asked() {
    let site = site().await;
    let cookie = login(&site, 3).await;
    let page = get(&site, "/connect", Some(&cookie)).await;
    assert!(page.body.contains("window.open('/authorize'"), "{page:?}");
    let form = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Cookie", cookie.as_str()),
    ];
    let closing = send(&site, "POST", "/authorize", &form, "close=on").await;
    assert!(
        closing
            .body
            .contains("<p id=\"authorized\">authorized user-3</p>")
    );
    assert!(closing.body.contains("window.close();"));
    let staying = send(&site, "POST", "/authorize", &form, "").await;
    assert!(!staying.body.contains("window.close();"));
    assert!(staying.body.contains("postMessage('connected user-3'"));
    assert_eq!(site.counts().users["user-3"].authorizations, 2);
}

/// The manage page hides "Clear cart" in a hover menu behind a `confirm()`, and
/// asks the new name with `prompt()`; each call is counted for the session's user
/// only.
#[tokio::test]
async fn the_manage_page_clears_and_renames_for_the_session_user() {
    let site = site().await;
    let cookie = login(&site, 4).await;
    let page = get(&site, "/manage", Some(&cookie)).await;
    assert!(
        page.body.contains("#more:hover #more-menu{display:block}"),
        "{page:?}"
    );
    assert!(page.body.contains("confirm('Clear the cart?')"));
    assert!(page.body.contains("prompt('New name?', '')"));
    let json = [
        ("Content-Type", "application/json"),
        ("Cookie", cookie.as_str()),
    ];
    assert_eq!(
        send(&site, "POST", "/api/clear", &json, "{}").await.status,
        204
    );
    let renamed = send(&site, "POST", "/api/name", &json, "{\"name\":\"Kim\"}").await;
    assert_eq!(renamed.status, 204);
    let bad = send(&site, "POST", "/api/name", &json, "{}").await;
    assert_eq!(bad.status, 422);
    assert_eq!(
        send(&site, "POST", "/api/clear", &json[..1], "{}")
            .await
            .status,
        401
    );
    let counts = site.counts();
    assert_eq!(counts.users["user-4"].clears, 1);
    assert_eq!(counts.users["user-4"].names, ["Kim"]);
    assert_eq!(counts.users.len(), 1);
}
