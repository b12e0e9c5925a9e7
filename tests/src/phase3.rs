//! Phase 3 end to end: the scheduler's defaults (adaptive pacing), and the browser
//! pool's reuse and retirement — against the demo app, asserting what it saw.

use std::collections::BTreeMap;

use crate::harness::{Project, events, named, report, step1};

fn ts(e: &serde_json::Value) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(
        e["ts"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_is_adaptive_pacing_and_creations_overlap() {
    let p = Project::new(4).await;
    // No pacing flags at all: the defaults.
    let run = p
        .run(&step1("1-4", &["--quantity", "2", "--concurrent"]))
        .await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let events = events(&p.run_dir());
    assert_eq!(events[0]["launch_interval"], "auto");
    assert_eq!(events[0]["launch_interval_ms"], serde_json::Value::Null);
    // Every creation was admitted by the scheduler, once, before it was created.
    let admitted = named(&events, "admitted");
    // A second admission means a launch was retried or a browser replaced: show
    // why (seen once, under a loaded machine, with no explanation kept).
    let unusual: Vec<_> = events
        .iter()
        .filter(|e| {
            let name = e["event"].as_str().unwrap_or_default();
            ["fail", "crash", "retry", "lost", "replac", "pacing"]
                .iter()
                .any(|w| name.contains(w))
        })
        .collect();
    assert_eq!(admitted.len(), 4, "{admitted:?}\nwhy: {unusual:?}");
    for n in 1..=4u64 {
        let pos = |name: &str| {
            events
                .iter()
                .position(|e| e["event"] == name && e["account"] == n)
                .unwrap_or_else(|| panic!("no {name} for account {n}"))
        };
        assert!(pos("admitted") < pos("launch_lock_acquired"));
        assert!(pos("launch_lock_acquired") < pos("browser_created"));
        assert!(pos("browser_created") < pos("launch_lock_released"));
    }
    // The pacer starts at five creations per core at once: the lock lines of two
    // accounts interleave, which Phase 1's lock never allows.
    let mut holding = 0usize;
    let mut most = 0usize;
    for e in &events {
        match e["event"].as_str().unwrap() {
            "launch_lock_acquired" => {
                holding += 1;
                most = most.max(holding);
            }
            "launch_lock_released" => holding -= 1,
            _ => {}
        }
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(
        most >= cores.min(2),
        "at most {most} creations overlapped on {cores} cores"
    );
    // The human view still shows the spec's three lines per account.
    let run2 = p.run(&step1("1", &["--quantity", "1"])).await;
    assert_eq!(run2.code, Some(0));
    for line in [
        "[account 1] browser creation lock acquired",
        "[account 1] browser created",
        "[account 1] browser creation lock released",
    ] {
        assert!(
            run2.stdout.lines().any(|l| l == line),
            "{line}: {}",
            run2.stdout
        );
    }
    for n in 1..=4 {
        let user = format!("user-{n}");
        let want = if n == 1 {
            BTreeMap::from([(1, 2), (2, 1)])
        } else {
            BTreeMap::from([(1, 1), (2, 1)])
        };
        assert_eq!(p.adds(&user), want, "{user}");
    }
    p.assert_nothing_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_are_retired_after_the_configured_count_and_replaced_ahead() {
    let p = Project::new(2).await;
    // Ephemeral profiles: the successor can be launched while the old one still works.
    p.write(
        "batch.toml",
        "[profiles]\nephemeral = true\n[pool]\nretire_after = 2\n",
    );
    let run = p
        .run(&step1(
            "1,2",
            &["--quantity", "5", "--concurrent", "--json"],
        ))
        .await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let events = events(&p.run_dir());
    for n in 1..=2u64 {
        let of = |name: &str| -> Vec<&serde_json::Value> {
            named(&events, name)
                .into_iter()
                .filter(|e| e["account"] == n)
                .collect()
        };
        // 5 iterations, 2 per browser: browsers 1, 2, 3; retired after 2 and 4.
        let created = of("browser_created");
        assert_eq!(created.len(), 3, "account {n}");
        let retired = of("browser_retired");
        assert_eq!(retired.len(), 2, "account {n}: {retired:?}");
        assert!(
            retired
                .iter()
                .all(|r| r["reason"] == "iterations" && r["iterations"] == 2)
        );
        // The successors were launched ahead: each one's launch started (and was
        // admitted) while its predecessor still served its last iteration. (Whether
        // it is also ready by then depends on launch vs iteration time.)
        let ahead = of("launch_ahead");
        assert_eq!(ahead.len(), 2, "account {n}");
        let admitted = of("admitted");
        assert_eq!(admitted.len(), 3, "account {n}");
        for ((a, adm), old) in ahead.iter().zip(&admitted[1..]).zip(&retired) {
            assert!(
                ts(a) <= ts(adm) && ts(adm) <= ts(old),
                "account {n}: {a} {adm} {old}"
            );
        }
        // Distinct browsers.
        let pids: std::collections::HashSet<_> = created.iter().map(|e| e["pid"].clone()).collect();
        assert_eq!(pids.len(), 3);
        // `before` ran for each browser: three logins as the server saw them.
        let user = format!("user-{n}");
        assert_eq!(p.site.counts().users[&user].logins, 3, "{user}");
        assert_eq!(
            p.adds(&user),
            (1..=5).map(|i| (i, 1)).collect::<BTreeMap<u32, u64>>(),
            "{user}"
        );
    }
    let r = report(&p.run_dir());
    assert_eq!(r["totals"]["iterations_ok"], 10);
    assert_eq!(r["totals"]["browser_launches"], 6);
    assert_eq!(r["totals"]["retries"], 0);
    assert!(named(&events, "browser_crashed").is_empty());
    p.assert_nothing_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_profile_is_retired_first_and_its_successor_reuses_the_login() {
    let p = Project::new(1).await;
    p.write("batch.toml", "[pool]\nretire_after = 1\n");
    let run = p
        .run(&step1("1", &["--quantity", "3", "--launch-interval", "0"]))
        .await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let events = events(&p.run_dir());
    let created = named(&events, "browser_created");
    let retired = named(&events, "browser_retired");
    assert_eq!((created.len(), retired.len()), (3, 2));
    // One profile cannot hold two Chromiums: no launch ahead, each successor starts
    // after its predecessor is gone, on the same profile directory.
    assert!(named(&events, "launch_ahead").is_empty());
    for (old, successor) in retired.iter().zip(&created[1..]) {
        assert!(ts(old) <= ts(successor));
    }
    assert!(
        created
            .iter()
            .all(|c| c["profile"] == created[0]["profile"])
    );
    assert_eq!(p.adds("user-1"), BTreeMap::from([(1, 1), (2, 1), (3, 1)]));
    p.assert_nothing_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_in_our_environment_stay_out_of_the_drivers_and_chromes() {
    let p = Project::new(0).await;
    p.write(
        "accounts.toml",
        "[[accounts]]\nid = 1\nusername = \"user-1\"\npassword = { env = \"BATCH_E2E_SECRET_PW\" }\n",
    );
    p.write("workflow.toml", &crate::harness::slow_workflow());
    let mut cmd = p.command(&step1("1", &["--quantity", "4", "--launch-interval", "0"]));
    cmd.env("BATCH_E2E_SECRET_PW", "pass-1")
        .env("BATCH_E2E_HARMLESS", "not-a-secret");
    let child = cmd.spawn().unwrap();
    let created =
        crate::harness::wait_for_event(&p, "browser_created", |e| e["event"] == "browser_created")
            .await;
    for key in ["driver_pid", "pid"] {
        let pid = created[key].as_u64().unwrap();
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        let environ = String::from_utf8_lossy(&environ);
        assert!(
            !environ.contains("BATCH_E2E_SECRET_PW"),
            "{key} {pid} has the secret variable"
        );
        assert!(!environ.contains("pass-1"));
        assert!(
            environ.contains("BATCH_E2E_HARMLESS=not-a-secret"),
            "{key}: other variables are kept"
        );
    }
    let out = crate::harness::finish(child, 120).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        p.adds("user-1"),
        (1..=4).map(|i| (i, 1)).collect::<BTreeMap<u32, u64>>()
    );
    p.assert_nothing_left();
}

/// 1000 accounts (persistent profiles, so 1000 profile locks held for the whole run)
/// start without running out of descriptors: batch-cli raises its soft open-files
/// limit to the hard one. The first browser is created, then the run is stopped with
/// SIGINT (a 1000-browser run is a benchmark, not a test). With a hard limit too low
/// for the locks, the run is exit 3 with a message that says what to raise, and
/// nothing is launched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_accounts_start_and_too_few_descriptors_is_exit_3_saying_so() {
    use crate::harness::{finish, signal, wait_for_event};

    let p = Project::new(1000).await;
    let limited = |cmd: &mut tokio::process::Command, soft: u64, hard: u64| {
        // SAFETY: setrlimit is async-signal-safe and touches no parent memory.
        unsafe {
            cmd.pre_exec(move || {
                let limit = libc::rlimit {
                    rlim_cur: soft,
                    rlim_max: hard,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    };
    let args = step1(
        "1-1000",
        &["--quantity", "1", "--concurrent", "--max-concurrent", "1"],
    );

    // A hard limit of 512 is below 1000 locks: exit 3.
    let mut cmd = p.command(&args);
    limited(&mut cmd, 512, 512);
    let out = cmd.output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("not enough file descriptors for 1000 accounts' profile locks")
            && stderr.contains("open-files limit is 512"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("browser_created"), "{stdout}");
    assert_eq!(p.adds("user-1").values().sum::<u64>(), 0);

    // Soft 1024, hard 8192 (a common default pair): raised at start, every lock fits.
    let mut cmd = p.command(&args);
    limited(&mut cmd, 1024, 8192);
    let child = cmd.spawn().unwrap();
    let pid = child.id().unwrap();
    wait_for_event(&p, "the first browser", |e| e["event"] == "browser_created").await;
    signal(pid, nix::sys::signal::Signal::SIGINT);
    let out = finish(child, 120).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    let profiles = std::fs::read_dir(p.path("profiles"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("account-"))
        })
        .count();
    assert_eq!(profiles, 1000, "every account's profile was locked");
    let ev = events(&p.run_dirs().pop().expect("a run directory"));
    assert_eq!(
        named(&ev, "run_finished").len(),
        1,
        "the stopped run is journaled to its end"
    );
    p.assert_nothing_left();
}

/// A memory cgroup made for one test (cgroup v1's memory hierarchy, as root), removed
/// when dropped — after killing whatever is still in it, so a failed test leaves
/// nothing running and no cgroup behind.
struct TestCgroup {
    dir: std::path::PathBuf,
}

impl TestCgroup {
    /// `None` (the caller says why it skipped) without root or a writable v1 memory
    /// hierarchy.
    fn new(limit: u64) -> Option<TestCgroup> {
        let parent = std::path::Path::new("/sys/fs/cgroup/memory");
        if !nix::unistd::geteuid().is_root() || !parent.join("memory.limit_in_bytes").exists() {
            return None;
        }
        let dir = parent.join(format!("batch-e2e-{}", std::process::id()));
        std::fs::create_dir(&dir).ok()?;
        let cg = TestCgroup { dir };
        std::fs::write(cg.dir.join("memory.limit_in_bytes"), limit.to_string()).ok()?;
        Some(cg)
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let procs = std::fs::read_to_string(self.dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        // rmdir succeeds once the killed processes are gone.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

/// Scale without a cap, bounded by memory: in a 2 GiB memory cgroup with a 512 MiB
/// reserve, thirty accounts holding their browsers a while. Memory admission is what
/// binds (creations wait for memory, fewer browsers up at once than accounts), every
/// account finishes, available memory never goes below the reserve in any sample —
/// young browsers' growth is reserved, which the first 100-account stress run in a
/// cgroup showed was needed — and the kernel OOM-kills nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_memory_cgroup_admission_keeps_the_reserve_and_nothing_is_oom_killed() {
    const MIB: u64 = 1 << 20;
    const LIMIT_MIB: u64 = 2048;
    const ACCOUNTS: u64 = 30;
    let reserve = 512 * MIB;
    let Some(cg) = TestCgroup::new(LIMIT_MIB * MIB) else {
        eprintln!("skipped: needs root and cgroup v1's memory hierarchy to make a cgroup");
        return;
    };
    let p = Project::new(ACCOUNTS as u32).await;
    p.write(
        "batch.toml",
        "workflow = \"workflow.toml\"\naccounts = \"accounts.toml\"\n\
         [profiles]\nephemeral = true\n[resources]\nsample_interval = \"500ms\"\n",
    );
    p.write(
        "workflow.toml",
        &crate::harness::WORKFLOW.replace(
            "{ wait_text = \"#done\", contains = \"added {iteration}\" },",
            "{ wait_text = \"#done\", contains = \"added {iteration}\" },\n  { sleep = \"3s\" },",
        ),
    );
    let mut cmd = p.command(&step1(
        &format!("1-{ACCOUNTS}"),
        &[
            "--quantity",
            "1",
            "--concurrent",
            "--min-available-memory",
            "512MiB",
        ],
    ));
    // Into the cgroup between fork and exec: everything batch-cli starts is in it
    // from its first instruction. Writing "0" moves the writing process, and the path
    // is made before the fork (nothing allocates in the child).
    let procs = std::ffi::CString::new(
        cg.dir
            .join("cgroup.procs")
            .into_os_string()
            .into_encoded_bytes(),
    )
    .unwrap();
    // SAFETY: only async-signal-safe calls (open, write, close) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
            if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(fd);
            Ok(())
        });
    }
    let out = crate::harness::finish(cmd.spawn().expect("batch-cli starts"), 240).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let events = events(&p.run_dir());
    let ok = named(&events, "account_done")
        .iter()
        .filter(|e| e["status"] == "ok")
        .count();
    assert_eq!(ok, ACCOUNTS as usize, "{stderr}");
    for n in 1..=ACCOUNTS {
        assert_eq!(
            p.adds(&format!("user-{n}")),
            BTreeMap::from([(1, 1)]),
            "user-{n}"
        );
    }
    let memory_waits = named(&events, "admitted")
        .iter()
        .filter(|e| e["waits_ms"].get("memory").is_some())
        .count();
    assert!(
        memory_waits > 0,
        "memory never bound: the test proves nothing"
    );
    let samples = named(&events, "memory_sample");
    let most_up = samples
        .iter()
        .filter_map(|e| e["browsers"].as_object().map(|m| m.len()))
        .max()
        .unwrap_or(0);
    assert!(
        (1..ACCOUNTS as usize).contains(&most_up),
        "{most_up} browsers up at once"
    );
    let lowest = samples
        .iter()
        .filter_map(|e| e["available_bytes"].as_u64())
        .min()
        .expect("memory was sampled");
    assert!(
        lowest >= reserve,
        "available memory went to {} MiB, below the {} MiB reserve",
        lowest / MIB,
        reserve / MIB
    );
    let counters = fsutil::cgroup::MemoryCgroup::at(cg.dir.clone()).expect("the cgroup");
    assert_eq!(counters.oom_kills(), Some(0), "OOM kills in the cgroup");
    eprintln!(
        "{memory_waits} creations waited for memory, at most {most_up} browsers up at once, \
         lowest available {} MiB (reserve {} MiB), cgroup peak {} MiB of {LIMIT_MIB}",
        lowest / MIB,
        reserve / MIB,
        counters.peak().unwrap_or(0) / MIB
    );
    p.assert_nothing_left();
}
