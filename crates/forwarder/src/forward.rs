//! The forwarding proxy itself: [`Forwarder`], one per browser, on `127.0.0.1:<ephemeral>`.
//!
//! Chromium is given `--proxy-server=http://127.0.0.1:<port>` (no credentials, so
//! nothing secret on its command line) and talks plain HTTP-proxy to us: `CONNECT`
//! for tunnels (https, wss) and absolute-form requests for plain http. We pass each
//! on to the upstream proxy with its credentials — `Proxy-Authorization: Basic …`
//! for an HTTP upstream, the RFC 1929 sub-negotiation for SOCKS5. This is the
//! approach of the `proxy-chain` package that Crawlee uses.
//!
//! Every task of a forwarder lives inside its accept task (connections in a
//! `JoinSet`, tunnels and upstream connections inside the connection's task), so
//! dropping the [`Forwarder`] aborts all of it. To an `https://` upstream it speaks
//! the same protocol inside TLS (`tls.rs`); a certificate it refuses means nothing —
//! no request, no credentials — is sent to that server.
//!
//! A forwarder may have a list of upstreams: it uses the first until one cannot be
//! reached (no TCP connection), then the next that can, from then on — each with its
//! own credentials. Only unreachability moves it on: a proxy that answers, even
//! with a refusal, is the answer.

use std::convert::Infallible;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::header::{HOST, HeaderValue, PROXY_AUTHORIZATION};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinSet;

use crate::peer;
use crate::tls::{Connector, HandshakeError, Trust};
use crate::upstream::{Scheme, Upstream};

type Body = BoxBody<Bytes, hyper::Error>;

/// What a forwarder has seen, for the caller's diagnostics (all safe to print).
#[derive(Debug, Default)]
pub struct Stats {
    /// Client connections accepted and served.
    pub connections: AtomicU64,
    /// Client connections refused (another user's process).
    pub refused_clients: AtomicU64,
    /// Times the upstream proxy rejected the credentials (HTTP 407, SOCKS5 auth failure).
    pub auth_rejected: AtomicU64,
    /// Times the upstream proxy could not be reached or failed otherwise.
    pub upstream_errors: AtomicU64,
    /// Times TLS to an `https://` upstream was refused (its certificate, mostly).
    pub tls_rejected: AtomicU64,
    /// The reason of the last TLS refusal (safe to print: no credentials in it).
    pub last_tls_error: std::sync::Mutex<Option<String>>,
    /// Times an unreachable upstream was left for the next of the list.
    pub failovers: AtomicU64,
}

/// `fn(Upstream) -> 127.0.0.1:port`: a running forwarding proxy; dropping it stops it
/// and every connection it holds.
#[derive(Debug)]
pub struct Forwarder {
    addr: SocketAddr,
    stats: Arc<Stats>,
    task: tokio::task::AbortHandle,
}

impl Forwarder {
    /// Listen on `127.0.0.1` (a kernel-chosen port) and forward to `upstream`; an
    /// `https://` one must present a certificate the system's roots trust. Must be
    /// called inside a tokio runtime.
    pub async fn start(upstream: Upstream) -> io::Result<Forwarder> {
        Forwarder::start_with(upstream, &Trust::default()).await
    }

    /// [`Forwarder::start`], trusting `trust` (the system's roots and a CA file) for
    /// an `https://` upstream; ignored for the other schemes.
    pub async fn start_with(upstream: Upstream, trust: &Trust) -> io::Result<Forwarder> {
        Forwarder::start_list(vec![upstream], trust).await
    }

    /// [`Forwarder::start_with`] for a list of upstreams, used in order as each
    /// becomes unreachable (see the module docs). They must be all SOCKS5 or all
    /// HTTP(S) proxies: a plain-http request is written differently for each.
    pub async fn start_list(upstreams: Vec<Upstream>, trust: &Trust) -> io::Result<Forwarder> {
        Forwarder::start_watched(upstreams, trust, None).await
    }

    /// [`Forwarder::start_list`], calling `on_failover(from, to)` — both without
    /// credentials — each time it moves from an unreachable upstream to the next.
    pub async fn start_watched(
        upstreams: Vec<Upstream>,
        trust: &Trust,
        on_failover: Option<OnFailover>,
    ) -> io::Result<Forwarder> {
        let socks = |u: &Upstream| u.scheme == Scheme::Socks5;
        let Some(first) = upstreams.first() else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "no upstream"));
        };
        if upstreams.iter().any(|u| socks(u) != socks(first)) {
            let why = "socks5 and http(s) upstreams in one list";
            return Err(io::Error::new(io::ErrorKind::InvalidInput, why));
        }
        let mut legs = Vec::new();
        for upstream in upstreams {
            let tls = match upstream.scheme {
                Scheme::Https => Some(Arc::new(Connector::new(&upstream.host, trust)?)),
                Scheme::Http | Scheme::Socks5 => None,
            };
            legs.push(Leg { upstream, tls });
        }
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let stats = Arc::new(Stats::default());
        let route = Arc::new(Route {
            legs,
            current: AtomicUsize::new(0),
            on_failover,
        });
        let task = tokio::spawn(accept_loop(listener, route, Arc::clone(&stats)));
        Ok(Forwarder {
            addr,
            stats,
            task: task.abort_handle(),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The value for Chromium's `--proxy-server`: `http://127.0.0.1:<port>`.
    pub fn proxy_server(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Its counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// How often the upstream rejected the credentials so far.
    pub fn auth_rejected(&self) -> u64 {
        self.stats.auth_rejected.load(Ordering::Relaxed)
    }

    /// Why TLS to the upstream was last refused, if it ever was.
    pub fn tls_rejected(&self) -> Option<String> {
        self.stats
            .last_tls_error
            .lock()
            .expect("not poisoned")
            .clone()
    }
}

/// One upstream, and for an `https://` one the TLS client that checks its certificate.
struct Leg {
    upstream: Upstream,
    tls: Option<Arc<Connector>>,
}

/// Told `(from, to)`, both without credentials, when a forwarder moves on.
pub type OnFailover = Box<dyn Fn(String, String) + Send + Sync>;

/// Where a forwarder's connections go: its upstreams, and the one in use.
struct Route {
    legs: Vec<Leg>,
    current: AtomicUsize,
    on_failover: Option<OnFailover>,
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every connection.
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, route: Arc<Route>, stats: Arc<Stats>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer_addr) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and the like: back off briefly instead of spinning.
                        tracing::warn!(error = %e, "forwarder accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let local = stream.local_addr().ok();
                if !local.is_some_and(|l| peer::is_own_user(l, peer_addr)) {
                    stats.refused_clients.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%peer_addr, "forwarder refused a client of another user");
                    continue;
                }
                stats.connections.fetch_add(1, Ordering::Relaxed);
                let _ = stream.set_nodelay(true);
                connections.spawn(serve(stream, Arc::clone(&route), Arc::clone(&stats)));
            }
            // Reap finished connections so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// A byte stream to the far side: a TCP stream, possibly behind a buffered reader
/// holding what the upstream sent after its CONNECT answer.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Per client connection: the upstream connection reused for plain-http requests
/// (keyed by the target for SOCKS5, where each target is its own connection), and
/// a CONNECT tunnel waiting for the client connection to be upgraded.
struct ConnState {
    route: Arc<Route>,
    stats: Arc<Stats>,
    /// `(key, leg, sender)`: the key names the leg and, for SOCKS5, the target.
    sender: Mutex<
        Option<(
            String,
            usize,
            hyper::client::conn::http1::SendRequest<Incoming>,
        )>,
    >,
    /// Upstream connection drivers: live as long as this client connection.
    drivers: std::sync::Mutex<JoinSet<()>>,
    tunnel: std::sync::Mutex<Option<(hyper::upgrade::OnUpgrade, Box<dyn Stream>)>>,
}

async fn serve(stream: TcpStream, route: Arc<Route>, stats: Arc<Stats>) {
    let state = Arc::new(ConnState {
        route,
        stats,
        sender: Mutex::new(None),
        drivers: std::sync::Mutex::new(JoinSet::new()),
        tunnel: std::sync::Mutex::new(None),
    });
    let svc_state = Arc::clone(&state);
    let svc = hyper::service::service_fn(move |req| handle(req, Arc::clone(&svc_state)));
    let served = hyper::server::conn::http1::Builder::new()
        .preserve_header_case(true)
        .title_case_headers(true)
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades()
        .await;
    if let Err(e) = served {
        tracing::debug!(error = %e, "forwarder client connection ended");
    }
    // A CONNECT was answered 200: the connection is upgraded, pipe both ways here, in
    // this task, so that dropping the forwarder ends the tunnel too.
    let tunnel = state.tunnel.lock().expect("not poisoned").take();
    if let Some((on_upgrade, mut far)) = tunnel
        && let Ok(upgraded) = on_upgrade.await
    {
        let mut near = TokioIo::new(upgraded);
        let _ = tokio::io::copy_bidirectional(&mut near, &mut far).await;
    }
}

fn text(status: StatusCode, message: &str) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(format!(
            "batch-cli proxy forwarder: {message}\n"
        )))
        .map_err(|never: Infallible| match never {})
        .boxed(),
    );
    *r.status_mut() = status;
    // A failed CONNECT leaves nothing useful on the connection: close it, so that a
    // client waiting for the tunnel sees the end rather than an idle keep-alive.
    r.headers_mut()
        .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// Why the far side could not be reached.
enum UpstreamError {
    /// The upstream proxy rejected the credentials.
    Auth,
    /// TLS to the upstream was refused (its certificate, mostly), with the reason.
    Tls(String),
    /// No connection to the upstream proxy at all: the next of a list is tried.
    Unreachable(String),
    /// Anything else, with a message safe to show.
    Other(String),
}

impl ConnState {
    fn fail(&self, e: UpstreamError) -> Response<Body> {
        match e {
            UpstreamError::Auth => {
                self.stats.auth_rejected.fetch_add(1, Ordering::Relaxed);
                // Not 407: Chromium would then look for credentials of its own (and
                // has none); a 502 with a plain reason fails the page at once.
                text(
                    StatusCode::BAD_GATEWAY,
                    "the upstream proxy rejected the credentials",
                )
            }
            UpstreamError::Tls(reason) => {
                self.stats.tls_rejected.fetch_add(1, Ordering::Relaxed);
                let message = format!("TLS to the upstream proxy was refused: {reason}");
                *self.stats.last_tls_error.lock().expect("not poisoned") = Some(reason);
                text(StatusCode::BAD_GATEWAY, &message)
            }
            UpstreamError::Unreachable(m) | UpstreamError::Other(m) => {
                self.stats.upstream_errors.fetch_add(1, Ordering::Relaxed);
                text(StatusCode::BAD_GATEWAY, &m)
            }
        }
    }

    /// The legs to try, in order: the one in use, then each after it.
    fn legs(&self) -> impl Iterator<Item = (usize, &Leg)> {
        let legs = &self.route.legs;
        let start = self.route.current.load(Ordering::Relaxed);
        (0..legs.len()).map(move |i| {
            let at = (start + i) % legs.len();
            (at, &legs[at])
        })
    }

    /// Leg `at` answered: it is the one in use from now on.
    fn settle(&self, at: usize) {
        let was = self.route.current.swap(at, Ordering::Relaxed);
        if was != at {
            self.stats.failovers.fetch_add(1, Ordering::Relaxed);
            let legs = &self.route.legs;
            let from = legs[was].upstream.without_credentials();
            let to = legs[at].upstream.without_credentials();
            tracing::warn!(%from, %to, "upstream proxy unreachable: using the next of the list");
            if let Some(tell) = &self.route.on_failover {
                tell(from, to);
            }
        }
    }

    /// A byte stream to `host:port` through the first leg that can be reached.
    async fn open_any(&self, host: &str, port: u16) -> Result<Box<dyn Stream>, UpstreamError> {
        let mut unreachable = None;
        for (at, leg) in self.legs() {
            match self.open(leg, host, port).await {
                Err(UpstreamError::Unreachable(m)) => unreachable = Some(m),
                Ok(far) => {
                    self.settle(at);
                    return Ok(far);
                }
                Err(e) => return Err(e),
            }
        }
        Err(UpstreamError::Unreachable(unreachable.unwrap_or_default()))
    }

    /// A connection to the upstream HTTP proxy itself: TCP, and TLS inside it for an
    /// `https://` one.
    async fn dial_proxy(&self, leg: &Leg) -> Result<Box<dyn Stream>, UpstreamError> {
        let (host, port) = leg.upstream.address();
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| UpstreamError::Unreachable(format!("upstream proxy unreachable: {e}")))?;
        let _ = tcp.set_nodelay(true);
        match &leg.tls {
            None => Ok(Box::new(tcp)),
            Some(tls) => match tls.connect(tcp).await {
                Ok(s) => Ok(Box::new(s)),
                Err(HandshakeError::Tls(reason)) => Err(UpstreamError::Tls(reason)),
                Err(HandshakeError::Io(e)) => Err(UpstreamError::Other(format!(
                    "upstream proxy: TLS handshake: {e}"
                ))),
            },
        }
    }

    fn basic_auth(leg: &Leg) -> Option<HeaderValue> {
        let c = leg.upstream.credentials.as_ref()?;
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.user, c.password));
        let mut v = HeaderValue::from_str(&format!("Basic {token}")).ok()?;
        v.set_sensitive(true);
        Some(v)
    }

    /// A byte stream to `host:port` through the upstream proxy of `leg`.
    async fn open(
        &self,
        leg: &Leg,
        host: &str,
        port: u16,
    ) -> Result<Box<dyn Stream>, UpstreamError> {
        match leg.upstream.scheme {
            Scheme::Socks5 => {
                let (proxy_host, proxy_port) = leg.upstream.address();
                let proxy = (proxy_host.as_str(), proxy_port);
                let target = (host, port);
                let r = match &leg.upstream.credentials {
                    Some(c) => {
                        tokio_socks::tcp::Socks5Stream::connect_with_password(
                            proxy,
                            target,
                            &c.user,
                            &c.password,
                        )
                        .await
                    }
                    None => tokio_socks::tcp::Socks5Stream::connect(proxy, target).await,
                };
                match r {
                    Ok(s) => {
                        let _ = s.set_nodelay(true);
                        Ok(Box::new(s))
                    }
                    Err(tokio_socks::Error::PasswordAuthFailure(_)) => Err(UpstreamError::Auth),
                    // No connection to the SOCKS5 server itself (tokio-socks names it so).
                    Err(e @ tokio_socks::Error::ProxyServerUnreachable) => {
                        Err(UpstreamError::Unreachable(format!("socks5 upstream: {e}")))
                    }
                    Err(e) => Err(UpstreamError::Other(format!("socks5 upstream: {e}"))),
                }
            }
            Scheme::Http | Scheme::Https => {
                let mut tcp = BufReader::new(self.dial_proxy(leg).await?);
                let authority = authority(host, port);
                let mut head = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
                if let Some(v) = ConnState::basic_auth(leg) {
                    head.push_str("Proxy-Authorization: ");
                    head.push_str(v.to_str().unwrap_or_default());
                    head.push_str("\r\n");
                }
                head.push_str("\r\n");
                let io_err = |e: io::Error| UpstreamError::Other(format!("upstream proxy: {e}"));
                tcp.write_all(head.as_bytes()).await.map_err(io_err)?;
                // Read the answer's head line by line; anything after it stays in the
                // BufReader and is the tunnel's first bytes.
                let mut status_line = String::new();
                tcp.read_line(&mut status_line).await.map_err(io_err)?;
                loop {
                    let mut line = String::new();
                    if tcp.read_line(&mut line).await.map_err(io_err)? == 0 {
                        return Err(UpstreamError::Other(
                            "upstream proxy closed the connection during CONNECT".into(),
                        ));
                    }
                    if line == "\r\n" || line == "\n" {
                        break;
                    }
                }
                let code = status_line.split_whitespace().nth(1).unwrap_or("");
                match code {
                    "200" => Ok(Box::new(tcp)),
                    "407" => Err(UpstreamError::Auth),
                    _ => Err(UpstreamError::Other(format!(
                        "upstream proxy answered CONNECT with {:?}",
                        status_line.trim()
                    ))),
                }
            }
        }
    }
}

fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn target_of(uri: &Uri) -> Option<(String, u16)> {
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
        Some("https") | Some("wss") => 443,
        _ => 80,
    });
    Some((host.to_owned(), port))
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<ConnState>,
) -> Result<Response<Body>, Infallible> {
    if req.method() == Method::CONNECT {
        let Some((host, port)) = target_of(req.uri()) else {
            return Ok(text(StatusCode::BAD_REQUEST, "CONNECT without host:port"));
        };
        return Ok(match state.open_any(&host, port).await {
            Ok(far) => {
                let on_upgrade = hyper::upgrade::on(req);
                *state.tunnel.lock().expect("not poisoned") = Some((on_upgrade, far));
                Response::new(
                    http_body_util::Empty::new()
                        .map_err(|never: Infallible| match never {})
                        .boxed(),
                )
            }
            Err(e) => state.fail(e),
        });
    }
    Ok(match forward_plain(req, &state).await {
        Ok(r) => r,
        Err(e) => state.fail(e),
    })
}

/// A new HTTP/1 connection for plain requests through the first leg that can be
/// reached: to the upstream proxy itself, or through SOCKS5 to the target. Returns
/// the leg too.
async fn connect_upstream(
    state: &ConnState,
    host: &str,
    port: u16,
) -> Result<(usize, hyper::client::conn::http1::SendRequest<Incoming>), UpstreamError> {
    let mut unreachable = None;
    let mut far = None;
    for (at, leg) in state.legs() {
        let dialed = match leg.upstream.scheme {
            Scheme::Socks5 => state.open(leg, host, port).await,
            Scheme::Http | Scheme::Https => state.dial_proxy(leg).await,
        };
        match dialed {
            Err(UpstreamError::Unreachable(m)) => unreachable = Some(m),
            Ok(stream) => {
                state.settle(at);
                far = Some((at, stream));
                break;
            }
            Err(e) => return Err(e),
        }
    }
    let Some((at, far)) = far else {
        return Err(UpstreamError::Unreachable(unreachable.unwrap_or_default()));
    };
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .preserve_header_case(true)
        .title_case_headers(true)
        .handshake::<_, Incoming>(TokioIo::new(far))
        .await
        .map_err(|e| UpstreamError::Other(format!("upstream: {e}")))?;
    state
        .drivers
        .lock()
        .expect("not poisoned")
        .spawn(async move {
            let _ = conn.await;
        });
    Ok((at, sender))
}

/// A plain-http request (absolute-form URI): to an HTTP upstream as is, plus
/// `Proxy-Authorization`; through SOCKS5 in origin-form to the target itself.
async fn forward_plain(
    mut req: Request<Incoming>,
    state: &ConnState,
) -> Result<Response<Body>, UpstreamError> {
    let Some((host, port)) = target_of(req.uri()) else {
        return Ok(text(
            StatusCode::BAD_REQUEST,
            "expected an absolute-form request (this is a proxy)",
        ));
    };
    // Every leg is SOCKS5, or none is (`start_list`).
    let socks = state.route.legs[0].upstream.scheme == Scheme::Socks5;
    let target = if socks {
        authority(&host, port)
    } else {
        String::new()
    };
    if socks {
        let origin = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".into());
        *req.uri_mut() = origin
            .parse()
            .map_err(|_| UpstreamError::Other("bad URI".into()))?;
        if !req.headers().contains_key(HOST)
            && let Ok(v) = HeaderValue::from_str(&authority(&host, port))
        {
            req.headers_mut().insert(HOST, v);
        }
    }
    let mut guard = state.sender.lock().await;
    // A reused keep-alive connection may have been closed by the upstream just now:
    // hyper then hands the unsent request back, and it goes once more on a fresh
    // connection (nothing of it was sent, so this cannot repeat a request).
    let mut fresh_tried = false;
    let key = |at: usize| format!("{at} {target}");
    let in_use = state.route.current.load(Ordering::Relaxed);
    let response = loop {
        let reusable = guard
            .as_ref()
            .is_some_and(|(k, _, s)| *k == key(in_use) && !s.is_closed());
        if !reusable {
            fresh_tried = true;
            let (at, sender) = connect_upstream(state, &host, port).await?;
            *guard = Some((key(at), at, sender));
        }
        let (_, at, sender) = guard.as_mut().expect("set above");
        // The credentials of the leg this connection goes to, and no one else's.
        if !socks {
            req.headers_mut().remove(PROXY_AUTHORIZATION);
            if let Some(v) = ConnState::basic_auth(&state.route.legs[*at]) {
                req.headers_mut().insert(PROXY_AUTHORIZATION, v);
            }
        }
        let sent = match sender.ready().await {
            Ok(()) => sender.try_send_request(req).await,
            Err(e) if !fresh_tried => {
                tracing::debug!(error = %e, "upstream keep-alive connection gone");
                *guard = None;
                continue;
            }
            Err(e) => return Err(UpstreamError::Other(format!("upstream: {e}"))),
        };
        match sent {
            Ok(response) => break response,
            Err(mut e) => match e.take_message() {
                Some(unsent) if !fresh_tried => {
                    req = unsent;
                    *guard = None;
                }
                _ => {
                    return Err(UpstreamError::Other(format!(
                        "upstream: {}",
                        e.into_error()
                    )));
                }
            },
        }
    };
    drop(guard);
    if response.status() == StatusCode::PROXY_AUTHENTICATION_REQUIRED && !socks {
        return Err(UpstreamError::Auth);
    }
    Ok(response.map(|b| b.boxed()))
}
