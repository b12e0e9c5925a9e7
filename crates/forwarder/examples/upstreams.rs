//! For `cdp_auth.mjs` (the forwarder-vs-DevTools comparison in docs/proxies.md):
//! starts an origin page, an open proxy, an authenticating proxy (`user` /
//! `cdp-pw`) and a forwarder in front of the latter, prints their ports as one JSON line, and runs until
//! its stdin closes.

use forwarder::testing::AuthProxy;
use forwarder::{Forwarder, Upstream};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let origin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin_addr = origin.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = origin.accept().await.unwrap();
            tokio::spawn(async move {
                let mut s = BufReader::new(s);
                loop {
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if s.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let body = "<!doctype html><title>t</title><p id=ok>ok</p>";
                    let r = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nCache-Control: no-store\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if s.get_mut().write_all(r.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let open = AuthProxy::start("open", None).await.unwrap();
    let guarded = AuthProxy::start("guarded", Some(("user", "cdp-pw")))
        .await
        .unwrap();
    let fwd = Forwarder::start(
        Upstream::parse(&format!("http://user:cdp-pw@{}", guarded.addr())).unwrap(),
    )
    .await
    .unwrap();
    println!(
        "{{\"origin\":{},\"open\":{},\"guarded\":{},\"forwarder\":{}}}",
        origin_addr.port(),
        open.addr().port(),
        guarded.addr().port(),
        fwd.addr().port()
    );
    let _ = tokio::task::spawn_blocking(|| {
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new())
    })
    .await;
    let log = guarded.log();
    eprintln!(
        "guarded proxy: {} requests, {} rejected (407)",
        log.len(),
        log.iter().filter(|s| !s.authorized).count()
    );
}
