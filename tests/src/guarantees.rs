//! The guarantees under real conditions: `exec` programs are contained, and a page's
//! words never make the runner think its browser is lost.

use std::path::Path;

use serde_json::Value;

use crate::harness::*;

/// The pid a program wrote into the project directory.
fn pid_file(p: &Project, name: &str) -> i32 {
    let text = std::fs::read_to_string(p.path(name))
        .unwrap_or_else(|e| panic!("{name}: {e} (did the program run?)"));
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{name}: {text:?}: {e}"))
}

/// Whether `pid` is a live process (zombies count as gone).
fn alive(pid: i32) -> bool {
    u32::try_from(pid).is_ok_and(fsutil::proc::alive)
}

/// Whether any live process is in process group `pgid`.
fn group_has_members(pgid: i32) -> bool {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| alive(*pid))
        .any(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let fields: Vec<&str> = stat
                .rsplit(')')
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .collect();
            // After "(comm)": state ppid pgrp …
            fields.get(2).and_then(|g| g.parse::<i32>().ok()) == Some(pgid)
        })
}

/// Kills what these tests' programs may have left, whatever happened: the pids the
/// programs wrote, and their process groups.
struct KillOnDrop<'a>(&'a Project, &'static [&'static str]);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        use nix::sys::signal::{Signal, kill, killpg};
        use nix::unistd::Pid;
        for name in self.1 {
            if let Ok(t) = std::fs::read_to_string(self.0.path(name))
                && let Ok(pid) = t.trim().parse::<i32>()
            {
                if name.starts_with("pgid") {
                    let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
                } else {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
        }
    }
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_programs_are_contained_and_a_grandchild_holding_the_pipes_is_no_timeout() {
    let p = Project::new(1).await;
    let _cleanup = KillOnDrop(&p, &["bg-1.pid", "bg-2.pid", "main-2.pid", "pgid-2"]);
    // Step 1: the program leaves a background grandchild holding stdout and stderr,
    // and exits 0 — a success, not a 30 s timeout. Step 2: a program with a
    // grandchild that runs past its timeout.
    p.write(
        "workflow.toml",
        r##"
base_url = "http://127.0.0.1:9"
[[steps]]
id = 1
actions = [
  { goto = "{base_url}/echo?step=1" },
  { exec = ["sh", "-c", "echo hello-from-exec; sleep 300 & echo $! > bg-1.pid; exit 0"], timeout = "30s" },
]
[[steps]]
id = 2
actions = [
  { exec = ["sh", "-c", "echo $$ > main-2.pid; awk '{{print $5}}' /proc/$$/stat > pgid-2; sleep 300 & echo $! > bg-2.pid; sleep 300"], timeout = "2s" },
]
"##,
    );
    let run = run_account_1_once(&p).await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);

    let dir = p.run_dir();
    let events = events(&dir);
    let ok = named(&events, "iteration_ok");
    let failed = named(&events, "iteration_failed");
    assert_eq!(ok.len(), 1, "{events:#?}");
    assert_eq!(ok[0]["step"], 1, "the exited program was a success");
    assert_eq!(failed.len(), 1, "{events:#?}");
    assert_eq!(failed[0]["step"], 2);
    let error = failed[0]["error"].as_str().unwrap();
    assert!(error.contains("timed out after 2s"), "{error}");
    assert_eq!(failed[0]["kind"], "action_failed");
    assert!(named(&events, "browser_crashed").is_empty());
    assert_eq!(named(&events, "browser_created").len(), 1);

    // Nothing of either program is left: not the program, not its grandchildren,
    // not any member of its process group.
    for name in ["bg-1.pid", "bg-2.pid", "main-2.pid"] {
        let pid = pid_file(&p, name);
        assert!(!alive(pid), "{name}: {pid} is still running");
    }
    let pgid = pid_file(&p, "pgid-2");
    assert_ne!(pgid, nix::unistd::getpgrp().as_raw(), "its own group");
    assert!(!group_has_members(pgid), "group {pgid} still has members");
    p.assert_nothing_left();

    // The output tails are in the account's private log.
    let log = dir.join("logs").join("account-1.log");
    assert_eq!(mode(&dir.join("logs")), 0o700);
    assert_eq!(mode(&log), 0o600);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("hello-from-exec"), "{text}");
    assert!(text.contains("step 2 iteration 1"), "{text}");
    assert!(text.contains("timed out after 2s"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_words_about_sessions_and_timeouts_are_action_failures_not_browser_losses() {
    let p = Project::new(1).await;
    // Iteration 1: a `session-timeout` banner covers the button, so the click is
    // intercepted (the driver's message quotes the banner's markup and text).
    // Iteration 2: a script throws an error that mentions setTimeout.
    let overlay = "<div class=\\\"session-timeout\\\" style=\\\"position:fixed;top:0;left:0;width:100%;height:100%;z-index:99;background:#fff\\\">session-timeout: session deleted, chrome not reachable</div>";
    let workflow = harness_workflow_with(&format!(
        r##"  {{ goto = "{{base_url}}/item/{{iteration}}" }},
  {{ script = "if ({{iteration}} === 1) {{{{ document.body.insertAdjacentHTML('beforeend', '{overlay}'); }}}} else {{{{ throw new Error('setTimeout fired after the session deleted: tab crashed'); }}}}" }},
  {{ click = "#add", timeout = "1s" }},
  {{ wait_text = "#done", contains = "added {{iteration}}" }},
"##
    ));
    p.write("workflow.toml", &workflow);
    let run = p
        .run(&step1(
            "1",
            &[
                "--quantity",
                "2",
                "--retries",
                "1",
                "--launch-interval",
                "0",
                "--json",
            ],
        ))
        .await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    let events: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let failed = named(&events, "iteration_failed");
    assert_eq!(failed.len(), 2, "{events:#?}");
    for f in &failed {
        assert_eq!(f["kind"], "action_failed", "{f}");
        assert_eq!(f["attempts"], 2, "retried once, on the same browser: {f}");
    }
    let e1 = failed[0]["error"].as_str().unwrap();
    assert!(
        e1.contains("intercepted") && e1.contains("session-timeout"),
        "{e1}"
    );
    let e2 = failed[1]["error"].as_str().unwrap();
    assert!(e2.contains("setTimeout"), "{e2}");
    for r in named(&events, "retry") {
        assert_eq!(r["kind"], "action_failed", "{r}");
    }
    assert!(
        named(&events, "browser_crashed").is_empty(),
        "{:#?}",
        named(&events, "browser_crashed")
    );
    assert_eq!(named(&events, "browser_created").len(), 1);

    // The server saw one login (`before` ran once: the browser was never replaced)
    // and no add (every click was intercepted or never made).
    let counts = p.site.counts();
    let user = counts.users.get("user-1").expect("user-1 logged in");
    assert_eq!(user.logins, 1, "{user:?}");
    assert_eq!(user.adds, 0, "{user:?}");
    p.assert_nothing_left();
}

/// [`WORKFLOW`] (login in `before`) with `actions` replaced.
fn harness_workflow_with(actions: &str) -> String {
    let start = WORKFLOW.find("actions = [\n").expect("actions") + "actions = [\n".len();
    let end = start + WORKFLOW[start..].find("]\n").expect("end of actions");
    format!("{}{actions}{}", &WORKFLOW[..start], &WORKFLOW[end..])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_runner_takes_its_exec_programs_and_their_grandchildren_with_it() {
    let p = Project::new(1).await;
    let _cleanup = KillOnDrop(&p, &["bg-1.pid", "main-1.pid", "pgid-1"]);
    p.write(
        "workflow.toml",
        r##"
base_url = "http://127.0.0.1:9"
[[steps]]
id = 1
actions = [
  { exec = ["sh", "-c", "echo $$ > main-1.pid; awk '{{print $5}}' /proc/$$/stat > pgid-1; sleep 300 & echo $! > bg-1.pid; sleep 300"], timeout = "5m" },
]
"##,
    );
    let mut runner = p
        .command(&step1("1", &["--launch-interval", "0"]))
        .spawn()
        .expect("batch-cli starts");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !p.path("bg-1.pid").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the program never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (main, bg) = (pid_file(&p, "main-1.pid"), pid_file(&p, "bg-1.pid"));
    assert!(alive(main) && alive(bg));
    signal(runner.id().unwrap(), nix::sys::signal::Signal::SIGKILL);
    let _ = runner.wait().await;
    // The supervisor's parent-death signal kills the whole group, grandchild too.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    // (The group's leader may still be dying a moment after its members: wait for all.)
    let pgid = pid_file(&p, "pgid-1");
    while alive(main) || alive(bg) || group_has_members(pgid) {
        assert!(
            std::time::Instant::now() < deadline,
            "left running after the runner died: main {main} {}, grandchild {bg} {}",
            alive(main),
            alive(bg)
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(!group_has_members(pid_file(&p, "pgid-1")));
    p.assert_nothing_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_that_cannot_get_better_fails_the_iterations_at_once_without_retries() {
    use std::os::unix::fs::PermissionsExt;
    let p = Project::new(1).await;
    // Executable, but its interpreter does not exist: spawning it fails every time.
    p.write("broken-driver", "#!/nonexistent/interpreter\n");
    std::fs::set_permissions(
        p.path("broken-driver"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    p.write(
        "batch.toml",
        "[browser]\nchromedriver = \"./broken-driver\"\n",
    );
    let run = p
        .run(&step1(
            "1",
            &[
                "--quantity",
                "3",
                "--retries",
                "2",
                "--launch-interval",
                "0",
            ],
        ))
        .await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    let events = events(&p.run_dir());
    assert!(named(&events, "retry").is_empty(), "{events:#?}");
    let launches = named(&events, "launch_failed");
    assert_eq!(launches.len(), 1, "tried once: {events:#?}");
    let error = launches[0]["error"].as_str().unwrap();
    assert!(
        error.contains("cannot start") && error.contains("broken-driver"),
        "{error}"
    );
    let failed = named(&events, "iteration_failed");
    assert_eq!(failed.len(), 3);
    for f in failed {
        assert_eq!(f["kind"], "launch", "{f}");
        assert!(f["error"].as_str().unwrap().contains("cannot start"), "{f}");
    }
    assert_eq!(p.site.counts().users.len(), 0, "the server saw nobody");
    p.assert_nothing_left();
}

/// `escape.sh PREFIX [hang]`: starts three processes that leave the program's process
/// group, each in a session of its own, and writes their pids to `PREFIX-a.pid`,
/// `PREFIX-b.pid`, `PREFIX-c.pid`: `setsid` in the background, `setsid -f`, and a
/// double fork + `setsid`. It fails (7) unless each leads a session of its own (so
/// the group kill alone would miss it). Then it exits 0, or with `hang` sleeps on.
const ESCAPE_SH: &str = r#"#!/bin/sh
p=$1
setsid sh -c "echo \$\$ > $p-a.pid; exec sleep 300" &
setsid -f sh -c "echo \$\$ > $p-b.pid; exec sleep 300"
( ( setsid sh -c "echo \$\$ > $p-c.pid; exec sleep 300" & ) & )
while [ ! -s $p-a.pid ] || [ ! -s $p-b.pid ] || [ ! -s $p-c.pid ]; do sleep 0.02; done
for x in a b c; do
  pid=$(cat $p-$x.pid)
  [ "$(sed 's/.*) //' /proc/$pid/stat | cut -d' ' -f4)" = "$pid" ] || exit 7
done
[ "$2" = hang ] && exec sleep 300
exit 0
"#;

/// `check-gone.sh PREFIX`: fails while one of `escape.sh PREFIX`'s processes is still
/// running (a zombie counts as gone) — so that the run itself shows *when* they died.
const CHECK_GONE_SH: &str = r#"#!/bin/sh
for f in "$1-a.pid" "$1-b.pid" "$1-c.pid"; do
  pid=$(cat "$f") || exit 2
  state=$(sed 's/.*) //' /proc/$pid/stat 2>/dev/null | cut -d' ' -f1)
  if [ -n "$state" ] && [ "$state" != Z ]; then echo "$f: $pid still running ($state)" >&2; exit 1; fi
done
"#;

fn write_executable(p: &Project, name: &str, content: &str) {
    use std::os::unix::fs::PermissionsExt;
    p.write(name, content);
    std::fs::set_permissions(p.path(name), std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The pids `escape.sh PREFIX` wrote.
fn escaped_pids(p: &Project, prefix: &str) -> Vec<i32> {
    ["a", "b", "c"]
        .iter()
        .map(|x| pid_file(p, &format!("{prefix}-{x}.pid")))
        .collect()
}

/// Each of `pids` in a session (and process group) of its own: it really left the
/// exec's group, which alone would not have killed it.
fn assert_own_session(pids: &[i32]) {
    for pid in pids {
        let stat = fsutil::proc::stat(*pid as u32).expect("running");
        assert_eq!(
            (stat.sid, stat.pgid),
            (*pid as u32, *pid as u32),
            "{pid} left its group"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_processes_that_leave_the_group_with_setsid_die_with_the_exec() {
    let p = Project::new(1).await;
    let _cleanup = KillOnDrop(
        &p,
        &[
            "ok-a.pid", "ok-b.pid", "ok-c.pid", "to-a.pid", "to-b.pid", "to-c.pid",
        ],
    );
    write_executable(&p, "escape.sh", ESCAPE_SH);
    write_executable(&p, "check-gone.sh", CHECK_GONE_SH);
    // Step 1: the program exits 0 leaving escaped background processes; the next
    // action finds them dead already. Step 2: it escapes and then times out; step 3
    // finds those dead.
    p.write(
        "workflow.toml",
        r##"
base_url = "http://127.0.0.1:9"
[[steps]]
id = 1
before = [
  { goto = "{base_url}/login" },
  { fill = "#username", text = "{account.username}" },
  { fill = "#password", text = "{account.password}" },
  { click = "#submit" },
  { wait_for = "#welcome" },
]
actions = [
  { exec = ["./escape.sh", "ok"], timeout = "30s" },
  { exec = ["./check-gone.sh", "ok"] },
  { goto = "{base_url}/item/1" },
  { click = "#add" },
  { wait_text = "#done", contains = "added 1" },
]
[[steps]]
id = 2
actions = [
  { exec = ["./escape.sh", "to", "hang"], timeout = "3s" },
]
[[steps]]
id = 3
actions = [
  { exec = ["./check-gone.sh", "to"] },
  { goto = "{base_url}/item/3" },
  { click = "#add" },
  { wait_text = "#done", contains = "added 3" },
]
"##,
    );
    let run = run_account_1_once(&p).await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    let dir = p.run_dir();
    let events = events(&dir);
    let ok: Vec<_> = named(&events, "iteration_ok")
        .iter()
        .map(|e| e["step"].clone())
        .collect();
    assert_eq!(ok, [1, 3], "{events:#?}");
    let failed = named(&events, "iteration_failed");
    assert_eq!(failed.len(), 1, "{events:#?}");
    assert_eq!(failed[0]["step"], 2);
    let error = failed[0]["error"].as_str().unwrap();
    assert!(error.contains("timed out after 3s"), "{error}");
    assert!(named(&events, "browser_crashed").is_empty());
    assert_eq!(named(&events, "browser_created").len(), 1);
    // One browser, logged in once, worked before and after: what the server saw.
    let counts = p.site.counts();
    let user = &counts.users["user-1"];
    assert_eq!(user.logins, 1, "{user:?}");
    assert_eq!(user.items, [(1, 1), (3, 1)].into(), "{user:?}");
    for prefix in ["ok", "to"] {
        for pid in escaped_pids(&p, prefix) {
            assert!(!alive(pid), "{prefix}: {pid} is still running");
        }
    }
    p.assert_nothing_left();
}

/// A process of ours that no run started: killed and reaped when dropped.
struct Bystander(std::process::Child);

impl Bystander {
    /// `sleep 300` in a session of its own, like an escaped process, with `token` (or
    /// none) as its `BATCH_EXEC_TOKEN`.
    fn start(token: Option<&str>) -> Self {
        let mut cmd = std::process::Command::new("setsid");
        cmd.args(["sleep", "300"]).env_remove("BATCH_EXEC_TOKEN");
        if let Some(t) = token {
            cmd.env("BATCH_EXEC_TOKEN", t);
        }
        let child = cmd.spawn().expect("setsid starts");
        let pid = child.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while fsutil::proc::args(pid).unwrap_or_default().first() != Some(&"sleep".into()) {
            assert!(std::time::Instant::now() < deadline, "sleep never ran");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        Bystander(child)
    }

    fn alive(&self) -> bool {
        alive(self.0.id() as i32)
    }
}

impl Drop for Bystander {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `BATCH_EXEC_TOKEN` in `pid`'s environment.
fn token_of(pid: i32) -> String {
    let env = fsutil::proc::environ(pid as u32).expect("environ readable");
    let mut tokens = fsutil::proc::values_of(&env, "BATCH_EXEC_TOKEN=");
    let token = tokens
        .next()
        .expect("a token")
        .to_string_lossy()
        .into_owned();
    assert!(
        token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit()),
        "{token}"
    );
    token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_killed_runners_exec_left_outside_its_group_is_reaped_by_the_next_run() {
    let p = Project::new(1).await;
    let _cleanup = KillOnDrop(&p, &["kill-a.pid", "kill-b.pid", "kill-c.pid"]);
    write_executable(&p, "escape.sh", ESCAPE_SH);
    p.write(
        "workflow.toml",
        r##"
base_url = "http://127.0.0.1:9"
[[steps]]
id = 1
actions = [
  { exec = ["./escape.sh", "kill", "hang"], timeout = "5m" },
]
"##,
    );
    let mut runner = p
        .command(&step1("1", &["--launch-interval", "0"]))
        .spawn()
        .expect("batch-cli starts");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !["a", "b", "c"]
        .iter()
        .all(|x| p.path(&format!("kill-{x}.pid")).exists())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the program never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // (The files are written by `echo`: wait until each holds its pid.)
    let escaped = loop {
        let read: Option<Vec<i32>> = ["a", "b", "c"]
            .iter()
            .map(|x| {
                std::fs::read_to_string(p.path(&format!("kill-{x}.pid")))
                    .ok()?
                    .trim()
                    .parse()
                    .ok()
            })
            .collect();
        if let Some(pids) = read {
            break pids;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "pid files never written"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_own_session(&escaped);
    let token = token_of(escaped[0]);
    for pid in &escaped {
        assert_eq!(token_of(*pid), token, "{pid}: one exec, one token");
    }
    // The run recorded the exec, token and all, where the next run looks.
    let records = p.runtime_dir().join("batch-cli").join("execs");
    let listed = || -> Vec<String> {
        std::fs::read_dir(&records)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let names = listed();
    assert!(
        names.len() == 1 && names[0].ends_with(&format!("-{token}.json")),
        "{names:?}"
    );
    // Processes of ours no run started: no token, another token.
    let no_token = Bystander::start(None);
    let other_token = Bystander::start(Some(&"0123456789abcdef".repeat(2)));

    signal(runner.id().unwrap(), nix::sys::signal::Signal::SIGKILL);
    let _ = runner.wait().await;
    // The supervisor's group is killed by its parent-death signal; what left the
    // group survives the runner — until the next run.
    p.assert_nothing_left();
    for pid in &escaped {
        assert!(
            alive(*pid),
            "{pid} died with the runner: nothing left to test"
        );
    }

    p.write("workflow.toml", WORKFLOW);
    let next = p.run(&step1("1", &["--launch-interval", "0"])).await;
    assert_eq!(next.code, Some(0), "{}\n{}", next.stdout, next.stderr);
    let dirs = p.run_dirs();
    let next_dir = dirs
        .iter()
        .find(|d| named(&events(d), "run_finished").len() == 1)
        .expect("the next run finished");
    let events = events(next_dir);
    let reaped = named(&events, "reaped");
    assert_eq!(reaped.len(), 1, "{events:#?}");
    assert_eq!(reaped[0]["execs"], 1, "{}", reaped[0]);
    let killed: Vec<i64> = reaped[0]["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    for pid in &escaped {
        assert!(killed.contains(&i64::from(*pid)), "{pid} not in {killed:?}");
        assert!(!alive(*pid), "{pid} is still running after the next run");
    }
    assert!(no_token.alive(), "a process without a token was killed");
    assert!(
        other_token.alive(),
        "a process with another token was killed"
    );
    assert!(
        listed().is_empty(),
        "the exec record is gone: {:?}",
        listed()
    );
    // The next run did its own work: the server saw it.
    assert_eq!(p.adds("user-1"), [(1, 1)].into());
    p.assert_nothing_left();
}

/// `run --accounts 1 --retries 0 --launch-interval 0`: every step once, a failure not
/// retried (the exec-containment scenarios expect their timeouts to stand).
async fn run_account_1_once(p: &Project) -> Run {
    p.run(&[
        "run",
        "--accounts",
        "1",
        "--retries",
        "0",
        "--launch-interval",
        "0",
    ])
    .await
}
