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
    let run = p
        .run(&[
            "run",
            "--accounts",
            "1",
            "--retries",
            "0",
            "--launch-interval",
            "0",
        ])
        .await;
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
