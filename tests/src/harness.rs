//! Test harness: a temp project, the demo app, running `batch-cli`, reading what a run
//! left, and a guard that kills anything a failed test left behind.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The demo workflow used by most tests: login in `before`, add item `{iteration}`.
pub const WORKFLOW: &str = r##"
base_url = "http://127.0.0.1:9"

[[steps]]
id = 1
name = "add-to-cart"
before = [
  { goto = "{base_url}/login" },
  { fill = "#username", text = "{account.username}" },
  { fill = "#password", text = "{account.password}" },
  { click = "#submit" },
  { wait_for = "#welcome" },
]
actions = [
  { goto = "{base_url}/item/{iteration}" },
  { click = "#add" },
  { wait_text = "#done", contains = "added {iteration}" },
]
"##;

/// The demo workflow with a pause per iteration, so a test can strike mid-run.
pub fn slow_workflow() -> String {
    WORKFLOW.replace(
        "{ wait_text = \"#done\", contains = \"added {iteration}\" },",
        "{ wait_text = \"#done\", contains = \"added {iteration}\" },\n  { sleep = \"400ms\" },",
    )
}

/// Path of the built `batch-cli` (next to this test binary's `deps/` directory).
pub fn cli_path() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    let cli = dir.join("batch-cli");
    assert!(
        cli.exists(),
        "{} is missing: run `cargo build -p cli` (cargo xtask test does)",
        cli.display()
    );
    cli
}

/// A project in a temp directory, with its own demo app.
pub struct Project {
    /// The temp dir (project files, profiles, runs, runtime dir).
    pub dir: tempfile::TempDir,
    /// The demo app.
    pub site: demo_site::DemoSite,
}

/// What one `batch-cli` invocation did.
#[derive(Debug)]
pub struct Run {
    /// Exit code (None: killed by a signal).
    pub code: Option<i32>,
    /// Everything on stdout.
    pub stdout: String,
    /// Everything on stderr.
    pub stderr: String,
}

impl Project {
    /// A project with `accounts` demo accounts (`user-N` / `pass-N`) and [`WORKFLOW`].
    pub async fn new(accounts: u32) -> Project {
        let site = demo_site::start(([127, 0, 0, 1], 0).into())
            .await
            .expect("demo app starts");
        let dir = tempfile::Builder::new()
            .prefix("batch-e2e-")
            .tempdir()
            .expect("temp dir");
        let p = Project { dir, site };
        p.write(
            "batch.toml",
            "workflow = \"workflow.toml\"\naccounts = \"accounts.toml\"\n",
        );
        p.write("accounts.toml", &accounts_toml(accounts));
        p.write("workflow.toml", WORKFLOW);
        std::fs::create_dir_all(p.runtime_dir()).unwrap();
        p
    }

    /// Write a file into the project.
    pub fn write(&self, name: &str, content: &str) {
        std::fs::write(self.path(name), content).unwrap();
    }

    /// A path inside the project.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// This project's private runtime dir (registry, port locks, ephemeral profiles).
    pub fn runtime_dir(&self) -> PathBuf {
        self.path("rt")
    }

    /// `batch-cli ARGS` for this project: config, output and base URL set, isolated
    /// runtime dir, `--json` output.
    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(cli_path());
        cmd.args(args);
        let is_run = matches!(args.first(), Some(&"single") | Some(&"run"));
        if !args.contains(&"--config") && args.first() != Some(&"report") {
            cmd.arg("--config").arg(self.path("batch.toml"));
        }
        if is_run {
            if !args.contains(&"--output") {
                cmd.arg("--output").arg(self.path("runs"));
            }
            if !args.contains(&"--base-url") {
                cmd.args(["--base-url", &self.site.base_url()]);
            }
        }
        cmd.env("XDG_RUNTIME_DIR", self.runtime_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// Run `batch-cli ARGS` to the end (at most 5 minutes).
    pub async fn run(&self, args: &[&str]) -> Run {
        let child = self.command(args).spawn().expect("batch-cli starts");
        let out = finish(child, 300).await;
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The only run directory under `runs/` (panics if there is not exactly one).
    pub fn run_dir(&self) -> PathBuf {
        let dirs = self.run_dirs();
        assert_eq!(dirs.len(), 1, "expected one run directory, found {dirs:?}");
        dirs.into_iter().next().unwrap()
    }

    /// All run directories.
    pub fn run_dirs(&self) -> Vec<PathBuf> {
        match std::fs::read_dir(self.path("runs")) {
            Ok(rd) => rd.flatten().map(|e| e.path()).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Adds per item the server saw for `user`.
    pub fn adds(&self, user: &str) -> std::collections::BTreeMap<u32, u64> {
        self.site
            .counts()
            .users
            .get(user)
            .map(|u| u.items.clone())
            .unwrap_or_default()
    }

    /// Pids of live processes (not zombies) whose command line mentions this project's
    /// directory — browsers on its profiles, drivers, the runner.
    pub fn live_processes(&self) -> Vec<u32> {
        processes_mentioning(&self.dir.path().display().to_string())
    }

    /// Wait (≤ 10 s) until no process mentions this project's directory.
    pub fn assert_nothing_left(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = self.live_processes();
            if left.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "processes left behind: {:?}",
                describe(&left)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Project {
    // The safety net: whatever a failed test left, kill it, so no browser outlives it.
    fn drop(&mut self) {
        for pid in self.live_processes() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// `[[accounts]]` tables for ids 1..=n.
pub fn accounts_toml(n: u32) -> String {
    (1..=n)
        .map(|i| {
            format!("[[accounts]]\nid = {i}\nusername = \"user-{i}\"\npassword = \"pass-{i}\"\n\n")
        })
        .collect()
}

fn processes_mentioning(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    fsutil::proc::pids()
        .into_iter()
        .filter(|pid| *pid != me && fsutil::proc::alive(*pid))
        .filter(|pid| {
            fsutil::proc::args(*pid)
                .is_some_and(|args| args.iter().any(|a| a.to_string_lossy().contains(needle)))
        })
        .collect()
}

/// Children of this test process (zombie or live) as `pid comm state`: with
/// [`become_subreaper`], whatever a finished `batch-cli` left behind lands here.
pub fn my_children() -> Vec<String> {
    let me = std::process::id();
    fsutil::proc::pids()
        .into_iter()
        .filter_map(|pid| Some((pid, fsutil::proc::stat(pid)?)))
        .filter(|(_, s)| s.ppid == me)
        .map(|(pid, s)| format!("{pid} {} {}", s.comm, s.state))
        .collect()
}

/// Make this test process the reaper of its orphaned descendants, so that a test
/// can see (and then reap) what a `batch-cli` run left behind.
pub fn become_subreaper() {
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
}

/// Live processes started by the `batch-cli` process `runner_pid` (they carry its
/// `BATCH_CLI_RUNNER=<pid>.<start>.<boot>` environment marker).
pub fn marked_by(runner_pid: u32) -> Vec<u32> {
    let prefix = format!("BATCH_CLI_RUNNER={runner_pid}.");
    fsutil::proc::pids()
        .into_iter()
        .filter(|pid| fsutil::proc::alive(*pid))
        .filter(|pid| {
            fsutil::proc::environ(*pid)
                .is_some_and(|env| env.iter().any(|e| e.to_string_lossy().starts_with(&prefix)))
        })
        .collect()
}

fn describe(pids: &[u32]) -> Vec<String> {
    pids.iter()
        .map(|p| {
            let c = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            format!(
                "{p}: {}",
                String::from_utf8_lossy(&c)
                    .replace('\0', " ")
                    .chars()
                    .take(120)
                    .collect::<String>()
            )
        })
        .collect()
}

/// The journal of a run directory, one JSON value per line (every line must parse).
pub fn events(run_dir: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(run_dir.join("events.jsonl")).expect("events.jsonl exists");
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad journal line {l:?}: {e}")))
        .collect()
}

/// `report.json` of a run directory.
pub fn report(run_dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(run_dir.join("report.json")).expect("report.json exists"))
        .unwrap()
}

/// Events named `name`.
pub fn named<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == name).collect()
}

/// Poll a run's journal (in `runs/`) until an event satisfies `pred`; returns it.
pub async fn wait_for_event(project: &Project, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        for dir in project.run_dirs() {
            if let Ok(text) = std::fs::read_to_string(dir.join("events.jsonl")) {
                // The last line may be mid-write: only parse complete lines.
                for line in text.lines().filter(|l| l.ends_with('}')) {
                    if let Ok(v) = serde_json::from_str::<Value>(line)
                        && pred(&v)
                    {
                        return v;
                    }
                }
            }
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Wait (at most `secs`) for a spawned process to exit and collect what it printed.
pub async fn finish(child: tokio::process::Child, secs: u64) -> std::process::Output {
    tokio::time::timeout(Duration::from_secs(secs), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("the process finished within {secs} s"))
        .expect("its output is readable")
}

/// Send a signal to a pid.
pub fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).expect("signal sent");
}

/// `single --step 1 --accounts ACCOUNTS EXTRA...`: the run most tests make.
pub fn step1<'a>(accounts: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["single", "--step", "1", "--accounts", accounts];
    args.extend_from_slice(extra);
    args
}

/// A lone ChromeDriver started by the test, in its own process group, killed with
/// every Chrome it started when dropped (even when an assertion fails first). Its
/// `TMPDIR` is `tmp`, inside the test's project: the profile ChromeDriver makes for a
/// session without `--user-data-dir` goes there, and goes with the project, instead
/// of being left in `/tmp` by the kill.
pub struct LoneDriver {
    child: std::process::Child,
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    /// Kept open: a driver writing to a closed pipe would die of SIGPIPE.
    _out: std::io::BufReader<std::process::ChildStdout>,
}

impl LoneDriver {
    /// Start it with `TMPDIR` = `tmp`; returns once it says its port.
    pub fn start(tmp: &std::path::Path) -> LoneDriver {
        use std::io::{BufRead, BufReader};
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("/usr/bin/chromedriver")
            .arg("--port=0")
            .env("TMPDIR", tmp)
            .process_group(0)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        // "ChromeDriver was started successfully on port N." (after a "Starting" line).
        let mut line = String::new();
        while !line.contains("started successfully") {
            line.clear();
            if out.read_line(&mut line).unwrap_or(0) == 0 {
                panic!("chromedriver exited without saying its port");
            }
        }
        let port = line
            .trim_end()
            .trim_end_matches('.')
            .rsplit(' ')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        LoneDriver {
            child,
            port,
            _out: out,
        }
    }
}

impl Project {
    /// Starts a [`LoneDriver`] (its `TMPDIR` in the project) and points `batch.toml`'s
    /// `[browser] webdriver_url` at it, with `browser_keys` (lines of `[browser]`)
    /// after it. As root, its Chromes get `--no-sandbox`: a remote node's sandbox is
    /// its own business, and this one runs as root here.
    pub fn with_lone_driver(&self, browser_keys: &str) -> LoneDriver {
        let tmp = self.path("driver-tmp");
        std::fs::create_dir(&tmp).unwrap();
        let driver = LoneDriver::start(&tmp);
        let sandbox = if nix::unistd::geteuid().is_root() {
            "args = [\"--no-sandbox\"]\n"
        } else {
            ""
        };
        self.write(
            "batch.toml",
            &format!(
                "workflow = \"workflow.toml\"\naccounts = \"accounts.toml\"\n\n[browser]\n{sandbox}\
                 webdriver_url = \"http://127.0.0.1:{}\"\n{browser_keys}",
                driver.port
            ),
        );
        driver
    }
}

impl Drop for LoneDriver {
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}
