//! `AuthProxy`: a small HTTP proxy that demands `Proxy-Authorization: Basic` (or
//! nothing), forwards plain-http requests adding `Via: 1.1 <name>`, tunnels CONNECT,
//! and logs what it saw — over plain TCP, or over TLS with a certificate from a
//! [`TestCa`] (an `https://` proxy). `Socks5Proxy`: the same for SOCKS5. For tests and
//! benchmarks only — they are the upstreams a [`Forwarder`](crate::Forwarder) talks
//! to, written independently of it.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, PROXY_AUTHORIZATION};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::rustls;

type Body = BoxBody<Bytes, hyper::Error>;

/// One request as the proxy saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// `GET`, `POST`, `CONNECT`, …
    pub method: String,
    /// The request target (absolute URI, or `host:port` for CONNECT).
    pub target: String,
    /// Whether its credentials were right (always true without required credentials).
    pub authorized: bool,
    /// The client's address.
    pub peer: SocketAddr,
}

/// A certificate authority for tests: its certificate (PEM, for a `proxy_ca` file)
/// and server certificates it issues.
pub struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    der: rustls_pki_types::CertificateDer<'static>,
    pem: String,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl TestCa {
    /// A fresh CA named `name` (its own key pair: two CAs never trust each other).
    pub fn new(name: &str) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().expect("a key pair");
        let cert = params.self_signed(&key).expect("a CA certificate");
        TestCa {
            pem: cert.pem(),
            der: cert.der().clone(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// Its certificate, PEM-encoded.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A TLS server configuration with a certificate for `127.0.0.1` and
    /// `localhost`, issued by this CA (the chain sent: leaf, then the CA).
    fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let params = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
            .expect("params");
        let key = rcgen::KeyPair::generate().expect("a key pair");
        let leaf = params
            .signed_by(&key, &self.issuer)
            .expect("a server certificate");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone(), self.der.clone()],
                rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .expect("a server configuration");
        Arc::new(config)
    }
}

/// A running proxy; stops when dropped.
#[derive(Debug)]
pub struct AuthProxy {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Seen>>>,
    handshakes_failed: Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::AbortHandle,
}

impl AuthProxy {
    /// Start it. `credentials`: `Some((user, password))` to require them.
    pub async fn start(
        name: &str,
        credentials: Option<(&str, &str)>,
    ) -> std::io::Result<AuthProxy> {
        AuthProxy::start_inner(name, credentials, None).await
    }

    /// Start it behind TLS (an `https://` proxy), with a certificate for
    /// `127.0.0.1`/`localhost` issued by `ca`.
    pub async fn start_tls(
        name: &str,
        credentials: Option<(&str, &str)>,
        ca: &TestCa,
    ) -> std::io::Result<AuthProxy> {
        let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config());
        AuthProxy::start_inner(name, credentials, Some(acceptor)).await
    }

    async fn start_inner(
        name: &str,
        credentials: Option<(&str, &str)>,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> std::io::Result<AuthProxy> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let expected = credentials.map(|(u, p)| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        });
        let cfg = Arc::new(Cfg {
            via: HeaderValue::from_str(&format!("1.1 {name}")).expect("a plain name"),
            expected,
            log: Arc::new(Mutex::new(Vec::new())),
        });
        let log = Arc::clone(&cfg.log);
        let handshakes_failed = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let failed = Arc::clone(&handshakes_failed);
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    Ok((stream, peer)) = listener.accept() => {
                        let _ = stream.set_nodelay(true);
                        let cfg = Arc::clone(&cfg);
                        match tls.clone() {
                            None => {
                                conns.spawn(serve(stream, peer, cfg));
                            }
                            Some(acceptor) => {
                                let failed = Arc::clone(&failed);
                                conns.spawn(async move {
                                    match acceptor.accept(stream).await {
                                        Ok(s) => serve(s, peer, cfg).await,
                                        Err(_) => {
                                            failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                        }
                                    }
                                });
                            }
                        }
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        Ok(AuthProxy {
            addr,
            log,
            handshakes_failed,
            task: task.abort_handle(),
        })
    }

    /// TLS handshakes that failed (a client that refused our certificate, say).
    pub fn handshakes_failed(&self) -> u64 {
        self.handshakes_failed
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Everything it saw so far.
    pub fn log(&self) -> Vec<Seen> {
        self.log.lock().expect("not poisoned").clone()
    }
}

impl Drop for AuthProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Cfg {
    via: HeaderValue,
    expected: Option<String>,
    log: Arc<Mutex<Vec<Seen>>>,
}

fn reply(status: StatusCode, extra: Option<(&'static str, &'static str)>) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from_static(b"test proxy\n"))
            .map_err(|never: Infallible| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    if let Some((k, v)) = extra {
        r.headers_mut().insert(k, HeaderValue::from_static(v));
    }
    r
}

async fn serve<S>(stream: S, peer: SocketAddr, cfg: Arc<Cfg>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let sender = Arc::new(tokio::sync::Mutex::new(None));
    let tunnel: Arc<Mutex<Option<(hyper::upgrade::OnUpgrade, TcpStream)>>> =
        Arc::new(Mutex::new(None));
    let drivers = Arc::new(Mutex::new(JoinSet::new()));
    let (c, t, d) = (Arc::clone(&cfg), Arc::clone(&tunnel), Arc::clone(&drivers));
    let svc = hyper::service::service_fn(move |req| {
        handle(
            req,
            peer,
            Arc::clone(&c),
            Arc::clone(&sender),
            Arc::clone(&t),
            Arc::clone(&d),
        )
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades()
        .await;
    let pending = tunnel.lock().expect("not poisoned").take();
    if let Some((up, mut far)) = pending
        && let Ok(upgraded) = up.await
    {
        let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(upgraded), &mut far).await;
    }
}

type Sender =
    Arc<tokio::sync::Mutex<Option<(String, hyper::client::conn::http1::SendRequest<Incoming>)>>>;

async fn handle(
    mut req: Request<Incoming>,
    peer: SocketAddr,
    cfg: Arc<Cfg>,
    sender: Sender,
    tunnel: Arc<Mutex<Option<(hyper::upgrade::OnUpgrade, TcpStream)>>>,
    drivers: Arc<Mutex<JoinSet<()>>>,
) -> Result<Response<Body>, Infallible> {
    let authorized = match &cfg.expected {
        None => true,
        Some(e) => req
            .headers()
            .get(PROXY_AUTHORIZATION)
            .is_some_and(|v| v.as_bytes() == e.as_bytes()),
    };
    let target = req.uri().to_string();
    cfg.log.lock().expect("not poisoned").push(Seen {
        method: req.method().to_string(),
        target: target.clone(),
        authorized,
        peer,
    });
    if !authorized {
        return Ok(reply(
            StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            Some(("proxy-authenticate", "Basic realm=\"test\"")),
        ));
    }
    let Some(host) = req.uri().host().map(str::to_owned) else {
        return Ok(reply(StatusCode::BAD_REQUEST, None));
    };
    let port = req.uri().port_u16().unwrap_or(80);
    if !is_loopback(&host) {
        // Only loopback targets, ever: Chromium also sends its own background
        // requests (Google services) through the proxy.
        return Ok(reply(StatusCode::FORBIDDEN, None));
    }
    if req.method() == Method::CONNECT {
        return Ok(match TcpStream::connect((host.as_str(), port)).await {
            Ok(far) => {
                *tunnel.lock().expect("not poisoned") = Some((hyper::upgrade::on(req), far));
                reply(StatusCode::OK, None)
            }
            Err(_) => reply(StatusCode::BAD_GATEWAY, None),
        });
    }
    req.headers_mut().remove(PROXY_AUTHORIZATION);
    req.headers_mut().remove("proxy-connection");
    req.headers_mut().append("via", cfg.via.clone());
    let origin = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    *req.uri_mut() = origin.parse().expect("a path");
    let key = format!("{host}:{port}");
    let mut guard = sender.lock().await;
    if !guard.as_ref().is_some_and(
        |(k, s): &(String, hyper::client::conn::http1::SendRequest<Incoming>)| {
            *k == key && !s.is_closed()
        },
    ) {
        let Ok(far) = TcpStream::connect((host.as_str(), port)).await else {
            return Ok(reply(StatusCode::BAD_GATEWAY, None));
        };
        let _ = far.set_nodelay(true);
        let Ok((s, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(far)).await else {
            return Ok(reply(StatusCode::BAD_GATEWAY, None));
        };
        drivers.lock().expect("not poisoned").spawn(async move {
            let _ = conn.await;
        });
        *guard = Some((key, s));
    }
    let (_, s) = guard.as_mut().expect("set above");
    if s.ready().await.is_err() {
        return Ok(reply(StatusCode::BAD_GATEWAY, None));
    }
    Ok(match s.send_request(req).await {
        Ok(r) => r.map(|b| b.boxed()),
        Err(_) => reply(StatusCode::BAD_GATEWAY, None),
    })
}

/// A minimal SOCKS5 proxy (RFC 1928 CONNECT, RFC 1929 username/password) that logs
/// each connection's target and whether its credentials were right; stops when dropped.
#[derive(Debug)]
pub struct Socks5Proxy {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::AbortHandle,
}

impl Socks5Proxy {
    /// Start it, requiring `user`/`password`.
    pub async fn start(user: &str, password: &str) -> std::io::Result<Socks5Proxy> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let (u, p, l) = (user.to_owned(), password.to_owned(), Arc::clone(&log));
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    Ok((stream, peer)) = listener.accept() => {
                        conns.spawn(socks_serve(stream, peer, u.clone(), p.clone(), Arc::clone(&l)));
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        Ok(Socks5Proxy {
            addr,
            log,
            task: task.abort_handle(),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Everything it saw so far (method `CONNECT`).
    pub fn log(&self) -> Vec<Seen> {
        self.log.lock().expect("not poisoned").clone()
    }
}

impl Drop for Socks5Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn socks_serve(
    mut s: TcpStream,
    peer: SocketAddr,
    user: String,
    password: String,
    log: Arc<Mutex<Vec<Seen>>>,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut head = [0u8; 2];
    s.read_exact(&mut head).await?;
    let mut methods = vec![0u8; head[1] as usize];
    s.read_exact(&mut methods).await?;
    if !methods.contains(&2) {
        s.write_all(&[5, 0xff]).await?;
        return Ok(());
    }
    s.write_all(&[5, 2]).await?;
    let ver_ulen = [s.read_u8().await?, s.read_u8().await?];
    let mut u = vec![0u8; ver_ulen[1] as usize];
    s.read_exact(&mut u).await?;
    let plen = s.read_u8().await?;
    let mut p = vec![0u8; plen as usize];
    s.read_exact(&mut p).await?;
    let authorized = u == user.as_bytes() && p == password.as_bytes();
    s.write_all(&[1, if authorized { 0 } else { 1 }]).await?;
    let mut req = [0u8; 4];
    if !authorized {
        log.lock().expect("not poisoned").push(Seen {
            method: "CONNECT".into(),
            target: String::new(),
            authorized,
            peer,
        });
        return Ok(());
    }
    s.read_exact(&mut req).await?;
    let host = match req[3] {
        1 => {
            let mut a = [0u8; 4];
            s.read_exact(&mut a).await?;
            std::net::Ipv4Addr::from(a).to_string()
        }
        3 => {
            let n = s.read_u8().await?;
            let mut name = vec![0u8; n as usize];
            s.read_exact(&mut name).await?;
            String::from_utf8_lossy(&name).into_owned()
        }
        _ => return Ok(()),
    };
    let port = s.read_u16().await?;
    log.lock().expect("not poisoned").push(Seen {
        method: "CONNECT".into(),
        target: format!("{host}:{port}"),
        authorized,
        peer,
    });
    if !is_loopback(&host) {
        // Only loopback targets: reply "connection not allowed by ruleset".
        s.write_all(&[5, 2, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
        return Ok(());
    }
    let mut far = TcpStream::connect((host.as_str(), port)).await?;
    s.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
    tokio::io::copy_bidirectional(&mut s, &mut far).await?;
    Ok(())
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A loopback port nothing listens on (bound, then released): a proxy that cannot be
/// reached.
pub fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a loopback port")
        .port()
}
