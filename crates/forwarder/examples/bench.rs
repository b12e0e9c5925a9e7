//! `cargo xtask bench proxy` runs this: the forwarder's overhead, side by side.
//!
//! One client sends the same sequential requests to a tiny local origin three ways,
//! interleaved in rounds: `direct` (no proxy), `proxy` (a plain HTTP proxy, no
//! credentials — what Chromium's `--proxy-server` gives) and `forwarder` (our
//! forwarder adding `Proxy-Authorization` in front of the same proxy, which now
//! demands it). Two workloads: plain-http GETs on one keep-alive connection, and
//! CONNECT tunnels (a new connection, tunnel set-up, one request, close — what every
//! new https connection costs). Prints the median latency per request and the
//! process CPU time per request, and the ratios forwarder / proxy.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use forwarder::testing::AuthProxy;
use forwarder::{Forwarder, Upstream};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const BODY: &[u8] = b"ok";

async fn origin() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let mut s = BufReader::new(s);
                loop {
                    // Read one request head (no bodies in this benchmark).
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
                    let r = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", BODY.len());
                    if s.get_mut().write_all(r.as_bytes()).await.is_err()
                        || s.get_mut().write_all(BODY).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Reads one response with a Content-Length body.
async fn response(s: &mut BufReader<TcpStream>) {
    let mut len = 0usize;
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            s.read_line(&mut line).await.unwrap() > 0,
            "connection closed"
        );
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.unwrap();
}

fn cpu() -> Duration {
    // SAFETY: getrusage writes into the struct we pass and nothing else.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |tv: libc::timeval| Duration::new(tv.tv_sec as u64, tv.tv_usec as u32 * 1000);
    t(u.ru_utime) + t(u.ru_stime)
}

/// `n` keep-alive GETs through `via` (None: straight to the origin).
async fn keepalive(via: Option<SocketAddr>, origin: SocketAddr, n: usize) -> Vec<Duration> {
    let mut s = BufReader::new(TcpStream::connect(via.unwrap_or(origin)).await.unwrap());
    s.get_ref().set_nodelay(true).unwrap();
    let target = match via {
        Some(_) => format!("http://{origin}/x"),
        None => "/x".to_owned(),
    };
    let req = format!("GET {target} HTTP/1.1\r\nHost: {origin}\r\n\r\n");
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        s.get_mut().write_all(req.as_bytes()).await.unwrap();
        response(&mut s).await;
        out.push(t.elapsed());
    }
    out
}

/// `n` times: connect, CONNECT through `via` (None: straight), one GET, close.
async fn tunnels(via: Option<SocketAddr>, origin: SocketAddr, n: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let mut s = BufReader::new(TcpStream::connect(via.unwrap_or(origin)).await.unwrap());
        s.get_ref().set_nodelay(true).unwrap();
        if via.is_some() {
            let c = format!("CONNECT {origin} HTTP/1.1\r\nHost: {origin}\r\n\r\n");
            s.get_mut().write_all(c.as_bytes()).await.unwrap();
            let mut line = String::new();
            loop {
                line.clear();
                s.read_line(&mut line).await.unwrap();
                if line == "\r\n" {
                    break;
                }
            }
        }
        let req = format!("GET /x HTTP/1.1\r\nHost: {origin}\r\n\r\n");
        s.get_mut().write_all(req.as_bytes()).await.unwrap();
        response(&mut s).await;
        out.push(t.elapsed());
    }
    out
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let rounds: usize = std::env::args()
        .skip_while(|a| a != "--rounds")
        .nth(1)
        .map_or(5, |r| r.parse().expect("--rounds N"));
    let n = 2000;
    let origin = origin().await;
    let open = AuthProxy::start("open", None).await.unwrap();
    let guarded = AuthProxy::start("guarded", Some(("user", "bench-pw")))
        .await
        .unwrap();
    let fwd = Forwarder::start(
        Upstream::parse(&format!("http://user:bench-pw@{}", guarded.addr())).unwrap(),
    )
    .await
    .unwrap();
    let ways: [(&str, Option<SocketAddr>); 3] = [
        ("direct", None),
        ("proxy", Some(open.addr())),
        ("forwarder", Some(fwd.addr())),
    ];
    println!("{n} requests per way and round, {rounds} rounds, interleaved; medians of rounds\n");
    for (workload, count) in [("keep-alive GET", n), ("CONNECT + GET", n / 4)] {
        // [way] -> per round (median latency, cpu per request)
        let mut figures: Vec<Vec<(Duration, Duration)>> = vec![Vec::new(); ways.len()];
        for _ in 0..rounds {
            for (i, (_, via)) in ways.iter().enumerate() {
                let c = cpu();
                let lat = if workload.starts_with("keep") {
                    keepalive(*via, origin, count).await
                } else {
                    tunnels(*via, origin, count).await
                };
                let per = (cpu() - c) / count as u32;
                figures[i].push((median(lat), per));
            }
        }
        println!("{workload}:");
        println!(
            "  {:<10} {:>14} {:>16}",
            "way", "latency (µs)", "CPU/request (µs)"
        );
        let mut meds = Vec::new();
        for (i, (name, _)) in ways.iter().enumerate() {
            let lat = median(figures[i].iter().map(|f| f.0).collect());
            let cpu = median(figures[i].iter().map(|f| f.1).collect());
            println!(
                "  {name:<10} {:>14.1} {:>16.1}",
                lat.as_secs_f64() * 1e6,
                cpu.as_secs_f64() * 1e6
            );
            meds.push((lat, cpu));
        }
        let r = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
        println!(
            "  forwarder / proxy: latency ×{:.2}, CPU ×{:.2}\n",
            r(meds[2].0, meds[1].0),
            r(meds[2].1, meds[1].1)
        );
    }
    assert_eq!(fwd.auth_rejected(), 0);
}
