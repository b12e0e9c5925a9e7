//! A real Selenium Grid 4 on loopback: a hub and N nodes, each node driving Debian's
//! chromium through Debian's chromedriver. Used by `cargo xtask grid start|stop` and,
//! through `#[path]`, by the end-to-end tests (`tests/src/grid.rs`) — one copy of the
//! knowledge in GRID-FACTS.md (what config works, what silently overrides it, what a
//! killed node leaves behind). Standard library and serde_json only, so both crates
//! can include it.
//!
//! Why each choice:
//! - every port is chosen fresh (kernel-chosen, then released) and every socket is
//!   bound to 127.0.0.1, the event bus included (it defaults to all interfaces);
//! - the JVMs start with an empty environment: Selenium reads unprefixed variables
//!   such as `SERVER_PORT` or `NODE_MAX_SESSIONS` that override the config file;
//! - each JVM leads its own process group, and carries `BATCH_GRID_DIR=<dir>` in its
//!   environment, which chromedriver, Chromium and crashpad inherit; each node's
//!   `TMPDIR` is its own directory, so Chromium's profiles are there too. After a
//!   SIGKILL of a node its browsers are orphans: the marker finds every one of them.
//! - `session-request-timeout` is shorter than batch-cli's launch timeout, so the
//!   Grid gives up on a queued request before the client does (no session is created
//!   later for a client that has gone).
#![allow(dead_code)] // each including crate uses a part of it

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The Selenium server release inside the npm package.
pub(crate) const SELENIUM_VERSION: &str = "4.20.0";
/// The npm package that ships the server jar.
pub(crate) const NPM_PACKAGE: &str = "@nightwatch/selenium-server@4.20.0";
/// The environment marker every process of a Grid carries.
pub(crate) const MARKER: &str = "BATCH_GRID_DIR";
/// Slots per node.
pub(crate) const SLOTS: usize = 4;

/// Where the jar is cached: `<workspace>/target/grid-cache` (never committed).
pub(crate) fn cache_dir(workspace: &Path) -> PathBuf {
    workspace.join("target").join("grid-cache")
}

/// The cached jar's path.
pub(crate) fn jar_path(workspace: &Path) -> PathBuf {
    cache_dir(workspace).join(format!("selenium-server-{SELENIUM_VERSION}.jar"))
}

/// Whether a Java runtime answers `java -version`.
pub(crate) fn java_available() -> bool {
    Command::new("java")
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The jar, fetched with `npm pack` into the cache if it is not there yet.
pub(crate) fn ensure_jar(workspace: &Path) -> Result<PathBuf, String> {
    let jar = jar_path(workspace);
    if jar.exists() {
        return Ok(jar);
    }
    let cache = cache_dir(workspace);
    std::fs::create_dir_all(&cache).map_err(|e| format!("{}: {e}", cache.display()))?;
    let out = Command::new("npm")
        .args(["pack", NPM_PACKAGE, "--silent", "--pack-destination"])
        .arg(&cache)
        .current_dir(&cache)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run npm ({e}): install Node.js's npm"))?;
    if !out.status.success() {
        return Err(format!(
            "npm pack {NPM_PACKAGE} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let tgz = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string();
    let inside = format!("package/lib/selenium-server-{SELENIUM_VERSION}.jar");
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(cache.join(&tgz))
        .arg("-C")
        .arg(&cache)
        .arg(&inside)
        .status()
        .map_err(|e| format!("cannot run tar: {e}"))?;
    if !status.success() {
        return Err(format!("{tgz} has no {inside}"));
    }
    std::fs::rename(cache.join(&inside), &jar).map_err(|e| format!("{}: {e}", jar.display()))?;
    let _ = std::fs::remove_dir_all(cache.join("package"));
    let _ = std::fs::remove_file(cache.join(&tgz));
    Ok(jar)
}

/// One node of a running Grid.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    /// `node1`, `node2`, …
    pub(crate) name: String,
    /// `http://127.0.0.1:PORT` (what the hub's `/status` calls its `uri`).
    pub(crate) uri: String,
    /// The node JVM's pid (also its process group).
    pub(crate) pid: u32,
    /// The node's own directory (config, log, TMPDIR).
    pub(crate) dir: PathBuf,
}

/// A running Grid, as recorded in `<dir>/grid.state`.
#[derive(Debug, Clone)]
pub(crate) struct Grid {
    /// The state directory.
    pub(crate) dir: PathBuf,
    /// `http://127.0.0.1:PORT` of the hub.
    pub(crate) hub_url: String,
    /// The hub JVM's pid (also its process group).
    pub(crate) hub_pid: u32,
    /// The nodes.
    pub(crate) nodes: Vec<Node>,
    /// The event bus's publish and subscribe ports (a node that joins later needs them).
    events: (u16, u16),
}

fn free_ports(n: usize) -> Result<Vec<u16>, String> {
    // Held all at once, so the n ports differ; released just before the JVMs bind.
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()).map_err(|e| e.to_string()))
        .collect()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn node_toml(name: &str, port: u16, hub: u16, publish: u16, subscribe: u16) -> String {
    let mut args = vec![
        "--headless=new",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ];
    // Chromium refuses to start as root with its sandbox on.
    if is_root() {
        args.push("--no-sandbox");
    }
    let stereotype = serde_json::json!({
        "browserName": "chrome",
        "platformName": "linux",
        "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args},
    });
    format!(
        r#"[server]
host = "127.0.0.1"
port = {port}
bind-host = true

[events]
publish = "tcp://127.0.0.1:{publish}"
subscribe = "tcp://127.0.0.1:{subscribe}"

[node]
grid-url = "http://127.0.0.1:{hub}"
detect-drivers = false
selenium-manager = false
override-max-sessions = true
max-sessions = {SLOTS}
register-cycle = 1
heartbeat-period = 2
session-timeout = 60

[[node.driver-configuration]]
display-name = "chromium-{name}"
webdriver-executable = "/usr/bin/chromedriver"
max-sessions = {SLOTS}
stereotype = '{stereotype}'

[logging]
tracing = false
"#
    )
}

/// A JVM whose home is the Grid's `dir` and whose temp dir and marker are `own`.
fn java(jar: &Path, dir: &Path, own: &Path, log: &Path) -> Result<Command, String> {
    let log = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = log.try_clone().map_err(|e| e.to_string())?;
    let mut cmd = Command::new("/usr/bin/java");
    // A clean environment: Selenium's unprefixed variables would override the config.
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", dir)
        .env("TMPDIR", own)
        .env(MARKER, own)
        .args(["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"])
        .arg(format!("-Djava.io.tmpdir={}", own.display()))
        .arg("-jar")
        .arg(jar)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    Ok(cmd)
}

impl Grid {
    /// Start a hub and `nodes` nodes with state in `dir` (emptied first), and wait
    /// until every node is registered and UP. On failure everything started is stopped.
    pub(crate) fn start(jar: &Path, dir: &Path, nodes: usize) -> Result<Grid, String> {
        if let Ok(old) = Grid::load(dir) {
            old.stop();
        }
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let dir = dir
            .canonicalize()
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let ports = free_ports(3 + nodes)?;
        let (hub, publish, subscribe) = (ports[0], ports[1], ports[2]);
        let hub_dir = dir.join("hub");
        std::fs::create_dir_all(&hub_dir).map_err(|e| e.to_string())?;
        let mut cmd = java(jar, &dir, &hub_dir, &dir.join("hub.log"))?;
        cmd.arg("hub")
            .args(["--host", "127.0.0.1", "--bind-host", "true"])
            .args(["--port", &hub.to_string()])
            .args(["--publish-events", &format!("tcp://127.0.0.1:{publish}")])
            .args([
                "--subscribe-events",
                &format!("tcp://127.0.0.1:{subscribe}"),
            ])
            // Shorter than batch-cli's 30 s launch timeout: the Grid gives up first.
            .args(["--session-request-timeout", "20"])
            .args(["--session-retry-interval", "1"])
            // A killed node is noticed within seconds, not the default two minutes.
            .args(["--healthcheck-interval", "2"]);
        let child = cmd.spawn().map_err(|e| format!("cannot start java: {e}"))?;
        let mut grid = Grid {
            dir: dir.clone(),
            hub_url: format!("http://127.0.0.1:{hub}"),
            hub_pid: child.id(),
            nodes: Vec::new(),
            events: (publish, subscribe),
        };
        grid.save()?;
        for port in &ports[3..] {
            if let Err(e) = grid.spawn_node(jar, *port) {
                grid.stop();
                return Err(e);
            }
        }
        if let Err(e) = grid.wait_up(nodes, Duration::from_secs(90)) {
            let log = std::fs::read_to_string(dir.join("hub.log")).unwrap_or_default();
            grid.stop();
            return Err(format!("{e}\nhub log (end):\n{}", tail(&log, 20)));
        }
        Ok(grid)
    }

    /// Start one more node (`node<N+1>`) on `port`, registering with the hub.
    fn spawn_node(&mut self, jar: &Path, port: u16) -> Result<(), String> {
        let name = format!("node{}", self.nodes.len() + 1);
        let node_dir = self.dir.join(&name);
        std::fs::create_dir_all(&node_dir).map_err(|e| e.to_string())?;
        let config = node_dir.join("node.toml");
        let hub = self.hub_url.rsplit(':').next().and_then(|p| p.parse().ok());
        let hub = hub.ok_or("the hub URL has no port")?;
        let (publish, subscribe) = self.events;
        std::fs::write(&config, node_toml(&name, port, hub, publish, subscribe))
            .map_err(|e| e.to_string())?;
        let mut cmd = java(jar, &self.dir, &node_dir, &node_dir.join("node.log"))?;
        cmd.arg("node").arg("--config").arg(&config);
        let child = cmd.spawn().map_err(|e| format!("cannot start java: {e}"))?;
        self.nodes.push(Node {
            name,
            uri: format!("http://127.0.0.1:{port}"),
            pid: child.id(),
            dir: node_dir,
        });
        self.save()
    }

    /// A node joining the running Grid (a host added mid-run): started, and waited
    /// for until every node is UP. Returns its `uri`.
    pub(crate) fn add_node(&mut self, jar: &Path) -> Result<String, String> {
        let port = free_ports(1)?[0];
        self.spawn_node(jar, port)?;
        self.wait_up(self.nodes.len(), Duration::from_secs(90))?;
        Ok(self.nodes.last().expect("just added").uri.clone())
    }

    /// The Grid recorded in `dir`.
    pub(crate) fn load(dir: &Path) -> Result<Grid, String> {
        let text = std::fs::read_to_string(dir.join("grid.state"))
            .map_err(|e| format!("{}: {e} (no Grid started there)", dir.display()))?;
        let mut grid = Grid {
            dir: dir.to_path_buf(),
            hub_url: String::new(),
            hub_pid: 0,
            nodes: Vec::new(),
            events: (0, 0),
        };
        for line in text.lines() {
            let f: Vec<&str> = line.splitn(4, ' ').collect();
            match f.as_slice() {
                ["hub", pid, url] => {
                    grid.hub_pid = pid.parse().map_err(|_| "bad grid.state")?;
                    grid.hub_url = url.to_string();
                }
                ["events", publish, subscribe] => {
                    let port = |p: &str| p.parse().map_err(|_| "bad grid.state");
                    grid.events = (port(publish)?, port(subscribe)?);
                }
                ["node", name, pid, uri] => grid.nodes.push(Node {
                    name: name.to_string(),
                    pid: pid.parse().map_err(|_| "bad grid.state")?,
                    uri: uri.to_string(),
                    dir: dir.join(name),
                }),
                _ => {}
            }
        }
        Ok(grid)
    }

    fn save(&self) -> Result<(), String> {
        let mut s = format!("hub {} {}\n", self.hub_pid, self.hub_url);
        s.push_str(&format!("events {} {}\n", self.events.0, self.events.1));
        for n in &self.nodes {
            s.push_str(&format!("node {} {} {}\n", n.name, n.pid, n.uri));
        }
        std::fs::write(self.dir.join("grid.state"), s).map_err(|e| e.to_string())
    }

    /// The hub's `/status` answer.
    pub(crate) fn status(&self) -> Result<serde_json::Value, String> {
        let body = http_get(&self.hub_url, "/status")?;
        serde_json::from_str(&body).map_err(|e| format!("hub /status: {e}"))
    }

    /// Wait until `count` nodes are registered and UP.
    pub(crate) fn wait_up(&self, count: usize, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let up = self.status().ok().map(|s| {
                s["value"]["nodes"].as_array().map_or(0, |n| {
                    n.iter().filter(|n| n["availability"] == "UP").count()
                })
            });
            if up == Some(count) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the Grid at {} did not get {count} nodes UP within {timeout:?} (UP: {up:?})",
                    self.hub_url
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGKILL one node and everything it started: what a crashed node host does to
    /// its sessions (its orphaned browsers are then killed too, as a host dies whole).
    pub(crate) fn kill_node(&self, name: &str) {
        if let Some(n) = self.nodes.iter().find(|n| n.name == name) {
            if !marked(n.pid, &n.dir, true) {
                return; // already gone (its pid may be someone else's by now)
            }
            kill_group(n.pid, "KILL");
            wait_gone(&[n.pid], Duration::from_secs(5));
            let orphans: Vec<u32> = pids()
                .into_iter()
                .filter(|p| alive(*p) && marked(*p, &n.dir, true))
                .collect();
            for p in &orphans {
                kill_pid(*p, "KILL");
            }
        }
    }

    /// Stop the nodes and the hub (SIGTERM, which closes their browsers; SIGKILL after
    /// 5 s), then kill every process still carrying this Grid's marker.
    pub(crate) fn stop(&self) {
        let mut jvms: Vec<u32> = self.nodes.iter().map(|n| n.pid).collect();
        jvms.push(self.hub_pid);
        // A recorded pid is signalled only while it still carries our marker: after a
        // reboot, or once the JVM is gone, the same number may be another process.
        jvms.retain(|p| alive(*p) && marked(*p, &self.dir, false));
        for pid in &jvms {
            kill_group(*pid, "TERM");
        }
        if !wait_gone(&jvms, Duration::from_secs(5)) {
            for pid in &jvms {
                kill_group(*pid, "KILL");
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = self.processes();
            if left.is_empty() || Instant::now() >= deadline {
                break;
            }
            for p in left {
                kill_pid(p, "KILL");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = std::fs::remove_file(self.dir.join("grid.state"));
    }

    /// For a failed test: whether each JVM is still alive, and the end of its log —
    /// a Grid that stopped answering mid-run says here whether its hub died and why.
    pub(crate) fn post_mortem(&self) -> String {
        let mut out = String::new();
        let jvms = std::iter::once(("hub", self.hub_pid, self.dir.join("hub.log"))).chain(
            self.nodes
                .iter()
                .map(|n| (n.name.as_str(), n.pid, n.dir.join("node.log"))),
        );
        for (name, pid, log) in jvms {
            let state = if alive(pid) { "alive" } else { "gone" };
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            out.push_str(&format!(
                "--- {name} (pid {pid}, {state}), {} (end):\n{}\n",
                log.display(),
                tail(&text, 15)
            ));
        }
        out
    }

    /// Live processes of this Grid: its JVMs and whatever carries its marker.
    pub(crate) fn processes(&self) -> Vec<u32> {
        pids()
            .into_iter()
            .filter(|p| alive(*p) && marked(*p, &self.dir, false))
            .collect()
    }
}

/// Whether `pid` belongs to `dir`: its marker names `dir` (exactly, or anything under
/// it unless `exact`), or one of its arguments is an option whose value lies under
/// `dir` (`--user-data-dir=<node TMPDIR>/…`, should a browser ever be started without
/// the inherited environment). Never ourselves, nor a shell that merely names `dir`
/// (`xtask grid stop --dir DIR`).
fn marked(pid: u32, dir: &Path, exact: bool) -> bool {
    if pid == std::process::id() {
        return false;
    }
    let d = dir.display().to_string();
    let by_env = std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
        env.split(|b| *b == 0).any(|e| {
            let e = String::from_utf8_lossy(e);
            e.strip_prefix(&format!("{MARKER}="))
                .is_some_and(|v| v == d || (!exact && v.starts_with(&format!("{d}/"))))
        })
    });
    by_env || cmdline(pid).contains(&format!("={d}/"))
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn kill_group(pgid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args(["-s", signal, "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
}

fn kill_pid(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args(["-s", signal, "--", &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

fn pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .unwrap_or_default()
}

/// Alive and not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

fn wait_gone(pids: &[u32], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if pids.iter().all(|p| !alive(*p)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A plain HTTP/1.0 GET on loopback (no client library needed for a status page).
pub(crate) fn http_get(base: &str, path: &str) -> Result<String, String> {
    let host = base
        .strip_prefix("http://")
        .ok_or_else(|| format!("{base}: not http://"))?
        .trim_end_matches('/');
    let mut s = TcpStream::connect(host).map_err(|e| format!("{base}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw);
    text.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .ok_or_else(|| format!("{base}{path}: no HTTP body"))
}
