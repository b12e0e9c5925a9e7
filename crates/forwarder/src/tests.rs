//! The forwarder against the test proxies (plain, TLS, SOCKS5), over real loopback
//! sockets.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::testing::{AuthProxy, Socks5Proxy, TestCa, dead_port};
use crate::{Forwarder, Trust, Upstream};

/// An origin that answers every request with the `Via` header it got (or `-`).
async fn origin() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
                let via = head
                    .lines()
                    .find_map(|l| l.strip_prefix("via: "))
                    .unwrap_or("-")
                    .trim()
                    .to_owned();
                let body = format!("via={via}");
                let r = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(r.as_bytes()).await;
            });
        }
    });
    (addr, task)
}

async fn roundtrip(to: std::net::SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(to).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("no hang")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

fn get(origin: std::net::SocketAddr) -> String {
    format!("GET http://{origin}/x HTTP/1.1\r\nHost: {origin}\r\nConnection: close\r\n\r\n")
}

#[tokio::test]
async fn plain_http_goes_through_an_authenticating_http_proxy() {
    let (o, _t) = origin().await;
    let proxy = AuthProxy::start("proxy-a", Some(("alice", "s3cret:pw")))
        .await
        .unwrap();
    let url = format!("http://alice:s3cret%3Apw@{}", proxy.addr());
    let fwd = Forwarder::start(Upstream::parse(&url).unwrap())
        .await
        .unwrap();
    let r = roundtrip(fwd.addr(), &get(o)).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.ends_with("via=1.1 proxy-a"), "{r}");
    let log = proxy.log();
    assert_eq!(log.len(), 1, "{log:?}");
    assert!(log[0].authorized && log[0].method == "GET", "{log:?}");
    assert_eq!(fwd.auth_rejected(), 0);
}

#[tokio::test]
async fn connect_tunnels_through_an_authenticating_http_proxy() {
    let (o, _t) = origin().await;
    let proxy = AuthProxy::start("proxy-a", Some(("alice", "pw")))
        .await
        .unwrap();
    let url = format!("http://alice:pw@{}", proxy.addr());
    let fwd = Forwarder::start(Upstream::parse(&url).unwrap())
        .await
        .unwrap();
    let mut s = TcpStream::connect(fwd.addr()).await.unwrap();
    s.write_all(format!("CONNECT {o} HTTP/1.1\r\nHost: {o}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    // Skip the rest of the CONNECT answer's head.
    let mut tail = Vec::new();
    while !tail.ends_with(b"\r\n\r\n") {
        tail.push(s.read_u8().await.unwrap());
    }
    s.write_all(format!("GET /x HTTP/1.1\r\nHost: {o}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let out = String::from_utf8_lossy(&out);
    // Tunnelled bytes are not touched by the proxy: no Via.
    assert!(out.ends_with("via=-"), "{out}");
    assert_eq!(proxy.log()[0].method, "CONNECT");
}

#[tokio::test]
async fn wrong_credentials_are_a_502_that_names_them_and_are_counted() {
    let (o, _t) = origin().await;
    let proxy = AuthProxy::start("proxy-a", Some(("alice", "right")))
        .await
        .unwrap();
    let url = format!("http://alice:wrong@{}", proxy.addr());
    let fwd = Forwarder::start(Upstream::parse(&url).unwrap())
        .await
        .unwrap();
    let r = roundtrip(fwd.addr(), &get(o)).await;
    assert!(r.starts_with("HTTP/1.1 502"), "{r}");
    assert!(r.contains("rejected the credentials"), "{r}");
    let c = roundtrip(
        fwd.addr(),
        &format!("CONNECT {o} HTTP/1.1\r\nHost: {o}\r\n\r\n"),
    )
    .await;
    assert!(c.starts_with("HTTP/1.1 502"), "{c}");
    assert_eq!(fwd.auth_rejected(), 2);
}

#[tokio::test]
async fn socks5_with_username_and_password() {
    let (o, _t) = origin().await;
    let socks = Socks5Proxy::start("bob", "pw-b").await.unwrap();
    let url = format!("socks5://bob:pw-b@{}", socks.addr());
    let fwd = Forwarder::start(Upstream::parse(&url).unwrap())
        .await
        .unwrap();
    let r = roundtrip(fwd.addr(), &get(o)).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let log = socks.log();
    assert_eq!(log.len(), 1);
    assert!(log[0].authorized);
    assert_eq!(log[0].target, o.to_string());

    let bad = format!("socks5://bob:nope@{}", socks.addr());
    let fwd = Forwarder::start(Upstream::parse(&bad).unwrap())
        .await
        .unwrap();
    let r = roundtrip(fwd.addr(), &get(o)).await;
    assert!(
        r.starts_with("HTTP/1.1 502") && r.contains("rejected the credentials"),
        "{r}"
    );
    assert_eq!(fwd.auth_rejected(), 1);
}

/// A list of upstreams: the first cannot be reached, so plain requests and tunnels
/// go to the second — with the second's own credentials — and stay there; a
/// proxy that answers (here with a refusal) is not left for the next.
#[tokio::test]
async fn an_unreachable_upstream_is_left_for_the_next_of_the_list() {
    let (o, _t) = origin().await;
    let b = AuthProxy::start("proxy-b", Some(("bob", "pw-b")))
        .await
        .unwrap();
    let c = AuthProxy::start("proxy-c", Some(("carol", "pw-c")))
        .await
        .unwrap();
    let list = |urls: &[String]| urls.iter().map(|u| Upstream::parse(u).unwrap()).collect();
    let trust = Trust::default();
    let start = |urls: &[String]| Forwarder::start_list(list(urls), &trust);
    let dead = format!("http://alice:pw-a@127.0.0.1:{}", dead_port());
    let urls = [
        dead,
        format!("http://bob:pw-b@{}", b.addr()),
        format!("http://carol:pw-c@{}", c.addr()),
    ];
    let fwd = start(&urls).await.unwrap();
    for _ in 0..2 {
        let r = roundtrip(fwd.addr(), &get(o)).await;
        assert!(r.ends_with("via=1.1 proxy-b"), "{r}");
    }
    let tunnel = connect_get(fwd.addr(), o).await;
    assert!(
        tunnel.starts_with("HTTP/1.1 200") && tunnel.ends_with("via=-"),
        "{tunnel}"
    );
    let log = b.log();
    assert_eq!(log.len(), 3, "{log:?}");
    assert!(
        log.iter().all(|s| s.authorized),
        "bob's own credentials: {log:?}"
    );
    assert!(c.log().is_empty(), "proxy-c was not needed");
    assert_eq!(
        fwd.stats()
            .failovers
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );

    // A refusal is an answer: the wrong password for b does not move on to c.
    let urls = [
        format!("http://bob:wrong@{}", b.addr()),
        format!("http://carol:pw-c@{}", c.addr()),
    ];
    let fwd = start(&urls).await.unwrap();
    let r = roundtrip(fwd.addr(), &get(o)).await;
    assert!(
        r.starts_with("HTTP/1.1 502") && r.contains("rejected the credentials"),
        "{r}"
    );
    assert!(c.log().is_empty());

    // SOCKS5 lists too; SOCKS5 and HTTP in one list are refused.
    let socks = Socks5Proxy::start("dan", "pw-d").await.unwrap();
    let urls = [
        format!("socks5://dan:pw-d@127.0.0.1:{}", dead_port()),
        format!("socks5://dan:pw-d@{}", socks.addr()),
    ];
    let fwd = start(&urls).await.unwrap();
    let r = roundtrip(fwd.addr(), &get(o)).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert_eq!(socks.log().len(), 1);
    let mixed = [urls[1].clone(), format!("http://bob:pw-b@{}", b.addr())];
    assert!(start(&mixed).await.is_err());
    // None reachable: a 502 naming it.
    let urls = [format!("http://127.0.0.1:{}", dead_port())];
    let fwd = start(&urls).await.unwrap();
    let r = roundtrip(fwd.addr(), &get(o)).await;
    assert!(
        r.starts_with("HTTP/1.1 502") && r.contains("unreachable"),
        "{r}"
    );
}

#[tokio::test]
async fn dropping_the_forwarder_closes_its_port_and_its_tunnels() {
    let (o, _t) = origin().await;
    let proxy = AuthProxy::start("p", None).await.unwrap();
    let fwd = Forwarder::start(Upstream::parse(&format!("http://u:p@{}", proxy.addr())).unwrap())
        .await
        .unwrap();
    let addr = fwd.addr();
    assert!(addr.ip().is_loopback());
    // An open tunnel, idle.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("CONNECT {o} HTTP/1.1\r\nHost: {o}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).await.unwrap();
    drop(fwd);
    // The tunnel ends (EOF) and the port stops accepting, within a deadline.
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
        .await
        .expect("the tunnel was closed")
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(addr).await.is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "still listening");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_client_of_another_user_is_refused() {
    // Needs to start a process as another user: root only (as CI runs).
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: not root, cannot connect as another user");
        return;
    }
    let (o, _t) = origin().await;
    let proxy = AuthProxy::start("p", None).await.unwrap();
    let fwd = Forwarder::start(Upstream::parse(&format!("http://u:p@{}", proxy.addr())).unwrap())
        .await
        .unwrap();
    let script = format!(
        "exec 3<>/dev/tcp/127.0.0.1/{}; printf 'GET http://{o}/x HTTP/1.1\\r\\nHost: {o}\\r\\nConnection: close\\r\\n\\r\\n' >&3; cat <&3",
        fwd.addr().port()
    );
    let out = tokio::process::Command::new("bash")
        .args(["-c", &script])
        .uid(65534)
        .gid(65534)
        .output()
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "",
        "nobody got an answer"
    );
    assert_eq!(
        fwd.stats()
            .refused_clients
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert!(proxy.log().is_empty(), "nothing reached the upstream");
    // Our own user is served.
    let r = roundtrip(fwd.addr(), &get(o)).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
}

#[tokio::test]
async fn an_upstream_that_drops_keep_alive_connections_costs_no_request() {
    // An "upstream proxy" that answers one request per connection, then hangs up
    // without saying so (no `Connection: close`).
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = l.local_addr().unwrap();
    let served = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let count = std::sync::Arc::clone(&served);
    let _t = tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            if buf.is_empty() {
                continue;
            }
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .await;
        }
    });
    let fwd = Forwarder::start(Upstream::parse(&format!("http://u:p@{upstream}")).unwrap())
        .await
        .unwrap();
    let mut s = tokio::io::BufReader::new(TcpStream::connect(fwd.addr()).await.unwrap());
    for i in 0..5 {
        s.get_mut()
            .write_all(b"GET http://127.0.0.1:1/x HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n")
            .await
            .unwrap();
        let mut head = String::new();
        loop {
            let mut line = String::new();
            tokio::io::AsyncBufReadExt::read_line(&mut s, &mut line)
                .await
                .unwrap();
            if line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        assert!(head.starts_with("HTTP/1.1 200"), "request {i}: {head}");
        let mut body = [0u8; 2];
        s.read_exact(&mut body).await.unwrap();
    }
    assert_eq!(served.load(std::sync::atomic::Ordering::Relaxed), 5);
}

/// `ca`'s certificate in a PEM file, and the trust it gives.
fn trust_of(ca: &TestCa) -> (tempfile::TempDir, Trust) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, ca.pem()).unwrap();
    let trust = Trust::with_ca_file(&path).unwrap();
    assert_eq!(trust.extra_certificates(), 1);
    (dir, trust)
}

async fn connect_get(fwd: std::net::SocketAddr, o: std::net::SocketAddr) -> String {
    let mut s = TcpStream::connect(fwd).await.unwrap();
    s.write_all(format!("CONNECT {o} HTTP/1.1\r\nHost: {o}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        match s.read_u8().await {
            Ok(b) => head.push(b),
            Err(_) => break,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    if !head.starts_with("HTTP/1.1 200") {
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest).await;
        return head + &String::from_utf8_lossy(&rest);
    }
    s.write_all(format!("GET /x HTTP/1.1\r\nHost: {o}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    head + &String::from_utf8_lossy(&out)
}

#[tokio::test]
async fn an_https_proxy_with_credentials_gets_both_kinds_of_request_inside_tls() {
    let (o, _t) = origin().await;
    let ca = TestCa::new("test ca");
    let proxy = AuthProxy::start_tls("proxy-tls", Some(("alice", "pw:tls")), &ca)
        .await
        .unwrap();
    let (_dir, trust) = trust_of(&ca);
    let url = format!("https://alice:pw%3Atls@{}", proxy.addr());
    let fwd = Forwarder::start_with(Upstream::parse(&url).unwrap(), &trust)
        .await
        .unwrap();
    // Plain http, absolute-form: the proxy forwards it and adds its Via.
    let r = roundtrip(fwd.addr(), &get(o)).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.ends_with("via=1.1 proxy-tls"), "{r}");
    // A CONNECT tunnel, inside the TLS connection to the proxy.
    let c = connect_get(fwd.addr(), o).await;
    assert!(c.starts_with("HTTP/1.1 200") && c.ends_with("via=-"), "{c}");
    let log = proxy.log();
    let methods: Vec<_> = log.iter().map(|s| s.method.as_str()).collect();
    assert_eq!(methods, ["GET", "CONNECT"], "{log:?}");
    assert!(log.iter().all(|s| s.authorized), "{log:?}");
    assert_eq!(proxy.handshakes_failed(), 0);
    assert_eq!((fwd.auth_rejected(), fwd.tls_rejected()), (0, None));

    // The wrong password inside TLS is the same named 407 → 502 as over plain TCP.
    let bad = format!("https://alice:nope@{}", proxy.addr());
    let fwd = Forwarder::start_with(Upstream::parse(&bad).unwrap(), &trust)
        .await
        .unwrap();
    let r = roundtrip(fwd.addr(), &get(o)).await;
    assert!(
        r.starts_with("HTTP/1.1 502") && r.contains("rejected the credentials"),
        "{r}"
    );
    assert_eq!((fwd.auth_rejected(), fwd.tls_rejected()), (1, None));
}

#[tokio::test]
async fn an_untrusted_proxy_certificate_is_refused_before_anything_is_sent() {
    let (o, _t) = origin().await;
    let ca = TestCa::new("the proxy's ca");
    let other = TestCa::new("another ca");
    let proxy = AuthProxy::start_tls("proxy-tls", Some(("alice", "pw")), &ca)
        .await
        .unwrap();
    let (_dir, wrong) = trust_of(&other);
    let url = Upstream::parse(&format!("https://alice:pw@{}", proxy.addr())).unwrap();
    // Trusting another CA, and trusting only the system's roots: both refuse it.
    for trust in [wrong, Trust::default()] {
        let fwd = Forwarder::start_with(url.clone(), &trust).await.unwrap();
        let r = roundtrip(fwd.addr(), &get(o)).await;
        assert!(r.starts_with("HTTP/1.1 502"), "{r}");
        assert!(r.contains("not signed by a trusted CA"), "{r}");
        let c = connect_get(fwd.addr(), o).await;
        assert!(c.starts_with("HTTP/1.1 502"), "{c}");
        assert_eq!(
            fwd.stats()
                .tls_rejected
                .load(std::sync::atomic::Ordering::Relaxed),
            2
        );
        let reason = fwd.tls_rejected().expect("a reason");
        assert!(reason.contains("unknown issuer"), "{reason}");
        assert_eq!(fwd.auth_rejected(), 0);
    }
    // Not one request reached the proxy: the credentials never went to a server
    // whose certificate was refused.
    assert!(proxy.log().is_empty(), "{:?}", proxy.log());
    // The proxy's side of the last handshake may end just after ours.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while proxy.handshakes_failed() < 4 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(proxy.handshakes_failed(), 4);
}

#[tokio::test]
async fn an_https_url_for_a_plain_http_proxy_is_named() {
    let (o, _t) = origin().await;
    let proxy = AuthProxy::start("plain", Some(("u", "p"))).await.unwrap();
    let url = Upstream::parse(&format!("https://u:p@{}", proxy.addr())).unwrap();
    let fwd = Forwarder::start(url).await.unwrap();
    let r = roundtrip(fwd.addr(), &get(o)).await;
    assert!(r.starts_with("HTTP/1.1 502"), "{r}");
    let reason = fwd.tls_rejected().expect("a TLS failure");
    assert!(reason.contains("did not answer with TLS"), "{reason}");
}

#[test]
fn ca_files_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("ca");
    let two = format!("{}\n{}", ca.pem(), TestCa::new("ca 2").pem());
    let junk_block = "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n";
    let cases: &[(&str, Option<&str>, Result<usize, &str>)] = &[
        ("one.pem", Some(ca.pem()), Ok(1)),
        ("two.pem", Some(&two), Ok(2)),
        ("missing.pem", None, Err("missing.pem: cannot be read")),
        ("empty.pem", Some(""), Err("no PEM certificate in it")),
        (
            "text.pem",
            Some("not a certificate\n"),
            Err("no PEM certificate in it"),
        ),
        (
            "broken.pem",
            Some("-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n"),
            Err("not valid PEM"),
        ),
        (
            "junk.pem",
            Some(junk_block),
            Err("certificate 1 is not a usable CA certificate"),
        ),
    ];
    for (name, content, expected) in cases {
        let path = dir.path().join(name);
        if let Some(c) = content {
            std::fs::write(&path, c).unwrap();
        }
        match (Trust::with_ca_file(&path), expected) {
            (Ok(t), Ok(n)) => assert_eq!(t.extra_certificates(), *n, "{name}"),
            (Err(e), Err(part)) => {
                let e = e.to_string();
                assert!(e.contains(part) && e.contains("(expected "), "{name}: {e}");
            }
            (got, expected) => panic!("{name}: {got:?}, expected {expected:?}"),
        }
    }
    // A directory is not a file.
    assert!(
        Trust::with_ca_file(dir.path())
            .unwrap_err()
            .to_string()
            .contains("cannot be read")
    );
}

#[test]
fn which_proxies_need_the_forwarder() {
    for (url, own_ca, expected) in [
        ("http://p:1", false, false),
        ("http://p:1", true, false),
        ("http://u:p@p:1", false, true),
        ("socks5://u:p@p:1", false, true),
        ("https://p:1", false, false),
        ("https://p:1", true, true),
        ("https://u:p@p:1", false, true),
    ] {
        let u = Upstream::parse(url).unwrap();
        assert_eq!(
            crate::needs_forwarder(&u, own_ca),
            expected,
            "{url} {own_ca}"
        );
    }
}
