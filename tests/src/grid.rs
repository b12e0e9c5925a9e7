//! Beyond one host, end to end: a real Selenium Grid 4 (hub + two nodes on loopback,
//! Debian's chromium) started by each test and always stopped by a guard, batches run
//! through it with `--webdriver-url`, a node killed mid-run, `--shard` slices
//! merged with `report --merge`, a node that joins mid-run used at once, and an
//! account's authenticated proxy used by its
//! browser on a node (through this runner's loopback forwarder). The Grid's control code is xtask's own
//! (`xtask/src/gridctl.rs`), included here so both use one copy.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{Project, events, named, report, slow_workflow, step1, wait_for_event};

#[path = "../../xtask/src/gridctl.rs"]
mod gridctl;

/// A running Grid, stopped (with every browser it started) when dropped — also when
/// the test fails.
struct GridGuard {
    grid: gridctl::Grid,
    _dir: tempfile::TempDir,
}

impl Drop for GridGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("the Grid as the test failed:\n{}", self.grid.post_mortem());
        }
        self.grid.stop();
    }
}

impl GridGuard {
    fn url(&self) -> &str {
        &self.grid.hub_url
    }

    /// Stop it now and check that nothing of it is left.
    fn stop_and_check(&self) {
        self.grid.stop();
        let left = self.grid.processes();
        assert!(left.is_empty(), "Grid processes left: {left:?}");
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace")
        .to_path_buf()
}

/// A fresh 2-node Grid, or `None` (after saying why) when this machine has no Java:
/// the one reason to skip. Everything else that goes wrong fails the test.
fn start_grid() -> Option<GridGuard> {
    start_grid_of(2)
}

fn start_grid_of(nodes: usize) -> Option<GridGuard> {
    if !gridctl::java_available() {
        eprintln!(
            "SKIPPED: no Java runtime (`java -version` fails), so no Selenium Grid can run here; install openjdk-17-jre-headless"
        );
        return None;
    }
    let jar = gridctl::ensure_jar(&workspace()).expect("the Selenium server jar");
    let dir = tempfile::Builder::new()
        .prefix("batch-grid-")
        .tempdir()
        .expect("temp dir");
    let grid =
        gridctl::Grid::start(&jar, &dir.path().join("grid"), nodes).expect("the Grid starts");
    Some(GridGuard { grid, _dir: dir })
}

/// A project for a Grid run. Session creations on a loaded 2-core host can take tens
/// of seconds; a launch timeout well above the Grid's 20 s queue timeout means the
/// Grid always answers before we give up (so no session is created for a request we
/// abandoned) — what docs/distributed.md advises.
async fn grid_project(accounts: u32) -> Project {
    let p = Project::new(accounts).await;
    p.write(
        "batch.toml",
        "workflow = \"workflow.toml\"\naccounts = \"accounts.toml\"\n[timeouts]\nlaunch = \"90s\"\n",
    );
    p
}

/// `browser_created` events' `node` field, per account.
fn nodes_by_account(events: &[Value]) -> BTreeMap<u64, Vec<String>> {
    let mut out: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for e in named(events, "browser_created") {
        out.entry(e["account"].as_u64().unwrap())
            .or_default()
            .push(e["node"].as_str().unwrap_or_default().to_string());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grid_six_accounts_run_across_both_nodes() {
    let Some(grid) = start_grid() else { return };
    let p = grid_project(6).await;
    // Each iteration also uploads the account's own files: they reach the nodes
    // through the Grid (`se/file`), and the server gets each user's own.
    p.write("workflow.toml", &crate::uploads::workflow());
    crate::uploads::write_files(&p, 6, 2);
    let run = p
        .run(&step1(
            "1-6",
            &[
                "--quantity",
                "2",
                "--concurrent",
                "--webdriver-url",
                grid.url(),
            ],
        ))
        .await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    // What the server saw: every account logged in and added items 1 and 2 once.
    for n in 1..=6 {
        assert_eq!(
            p.adds(&format!("user-{n}")),
            BTreeMap::from([(1, 1), (2, 1)]),
            "user-{n}"
        );
    }
    let counts = p.site.counts();
    for a in 1..=6 {
        let user = format!("user-{a}");
        assert_eq!(
            counts.users[&user].uploads,
            crate::uploads::expected(a, 2),
            "{user}"
        );
    }
    let events = events(&p.run_dir());
    assert_eq!(events[0]["webdriver_url"], grid.url());
    assert_eq!(
        events[0]["storage_state"], true,
        "on by default for a remote run"
    );
    let created = named(&events, "browser_created");
    assert_eq!(created.len(), 6, "{created:?}");
    let uris: BTreeSet<&str> = grid.grid.nodes.iter().map(|n| n.uri.as_str()).collect();
    let mut used = BTreeSet::new();
    for e in &created {
        // What only a local browser has is null, not made up.
        for key in ["pid", "port", "driver_port", "driver_pid", "profile"] {
            assert!(e[key].is_null(), "{key} in {e}");
        }
        let node = e["node"].as_str().expect("the Grid says which node");
        assert!(uris.contains(node), "{node} is not one of {uris:?}");
        used.insert(node);
    }
    assert_eq!(used, uris, "sessions landed on every node");
    let rep = report(&p.run_dir());
    assert_eq!(rep["totals"]["iterations_ok"], 12);
    // Every launch is a session created, or a failed attempt that was journaled (on a
    // loaded host a creation can time out and is then retried).
    let failed = named(&events, "launch_failed");
    assert_eq!(
        rep["totals"]["browser_launches"].as_u64().unwrap(),
        6 + failed.len() as u64,
        "{failed:?}"
    );
    // No local browser, driver or profile was involved.
    assert!(
        !p.runtime_dir().join("profiles").exists() || is_empty(&p.runtime_dir().join("profiles"))
    );
    for n in 1..=6 {
        // No browser profile of ours; the account's portable state instead.
        assert!(!p.path(&format!("profiles/account-{n}")).exists());
        let state = format!("profiles/storage-state/account-{n}/state.json");
        assert!(p.path(&state).exists(), "{state}");
    }
    assert_eq!(named(&events, "storage_saved").len(), 6);
    // The sessions were ended: the Grid's slots are all free again.
    assert_eq!(busy_slots(&grid), 0, "sessions left open on the Grid");
    // The nodes kept the uploaded files in each session's directory (`session…/
    // upload…/NAME`, seen during the run), and removed them with the sessions.
    for n in &grid.grid.nodes {
        let left: Vec<PathBuf> = walk(&n.dir)
            .into_iter()
            .filter(|p| p.to_string_lossy().contains("/upload"))
            .collect();
        assert!(left.is_empty(), "{}: uploads left {left:?}", n.name);
    }
    // `doctor` looks at the Grid instead of the local browser, and says what is absent.
    let doc = p.run(&["doctor", "--webdriver-url", grid.url()]).await;
    assert_eq!(doc.code, Some(0), "{}\n{}", doc.stdout, doc.stderr);
    assert_eq!(
        doc.stdout
            .lines()
            .filter(|l| l.starts_with("ok   grid node"))
            .count(),
        2,
        "{}",
        doc.stdout
    );
    assert!(doc.stdout.contains("n/a  local only"), "{}", doc.stdout);
    assert!(
        doc.stdout.contains("ok   browser start: session"),
        "{}",
        doc.stdout
    );
    grid.stop_and_check();
    p.assert_nothing_left();
}

/// Slots holding a session (or being set up for one) across the Grid.
fn busy_slots(grid: &GridGuard) -> usize {
    let status = grid.grid.status().unwrap();
    status["value"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|n| n["slots"].as_array().unwrap())
        .filter(|s| !s["session"].is_null())
        .count()
}

/// One node of 4 slots, 6 accounts at once. By default the Grid's slot count caps
/// the batch (`grid_capacity`): two accounts wait in our scheduler, journaled. With
/// the user's own `--max-concurrent 6`, two session requests find no free slot, wait
/// in the Grid's queue, and are served when the first accounts are done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grid_no_free_slot_waits_and_is_served() {
    let Some(grid) = start_grid_of(1) else { return };
    let p = grid_project(6).await;
    let run = p
        .run(&step1(
            "1-6",
            &["--concurrent", "--webdriver-url", grid.url()],
        ))
        .await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let capped = events(&p.run_dir());
    let cap = named(&capped, "grid_capacity");
    assert_eq!(
        (cap[0]["nodes"].as_u64(), cap[0]["slots"].as_u64()),
        (Some(1), Some(4))
    );
    let cap_waiters: BTreeSet<u64> = named(&capped, "admission_wait")
        .iter()
        .filter(|e| e["reason"] == "cap")
        .map(|e| e["account"].as_u64().unwrap())
        .collect();
    // 6 accounts, 4 slots: two accounts at least had to wait for a slot here.
    assert!(cap_waiters.len() >= 2, "{cap_waiters:?}");
    std::fs::remove_dir_all(p.path("runs")).unwrap();

    let run = p
        .run(&step1(
            "1-6",
            &[
                "--concurrent",
                "--max-concurrent",
                "6",
                "--webdriver-url",
                grid.url(),
            ],
        ))
        .await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    for n in 1..=6 {
        assert_eq!(
            p.adds(&format!("user-{n}")),
            BTreeMap::from([(1, 2)]),
            "user-{n}"
        );
    }
    let events = events(&p.run_dir());
    assert!(
        named(&events, "grid_capacity").is_empty(),
        "the user's cap rules"
    );
    assert_eq!(named(&events, "browser_created").len(), 6);
    // More sessions than slots: some were created only after another account's
    // session was ended.
    let first_done = events
        .iter()
        .position(|e| e["event"] == "account_done")
        .unwrap();
    let created_after = events[first_done..]
        .iter()
        .filter(|e| e["event"] == "browser_created")
        .count();
    assert!(
        created_after >= 2,
        "{created_after} sessions after a slot was freed"
    );
    assert_eq!(busy_slots(&grid), 0);
    grid.stop_and_check();
    p.assert_nothing_left();
}

/// Ctrl-C during a Grid run: exit 130, and every remote session was ended (the
/// Grid's slots are free at once, not after its session timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grid_sigint_ends_every_remote_session() {
    let Some(grid) = start_grid() else { return };
    let p = grid_project(2).await;
    p.write("workflow.toml", &slow_workflow());
    let child = p
        .command(&step1(
            "1,2",
            &[
                "--quantity",
                "50",
                "--concurrent",
                "--webdriver-url",
                grid.url(),
            ],
        ))
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    for n in 1..=2u64 {
        wait_for_event(&p, "an iteration", |e| {
            e["event"] == "iteration_ok" && e["account"] == n
        })
        .await;
    }
    assert_eq!(busy_slots(&grid), 2);
    crate::harness::signal(pid, nix::sys::signal::Signal::SIGINT);
    let out = crate::harness::finish(child, 60).await;
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = events(&p.run_dir());
    assert_eq!(events.last().unwrap()["event"], "run_finished");
    assert_eq!(
        busy_slots(&grid),
        0,
        "the sessions were deleted on the Grid"
    );
    grid.stop_and_check();
    p.assert_nothing_left();
}

fn is_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grid_node_killed_mid_run_its_iterations_are_retried_on_the_other() {
    let Some(grid) = start_grid() else { return };
    let p = grid_project(4).await;
    p.write("workflow.toml", &slow_workflow());
    let quantity = 8u32;
    let q = quantity.to_string();
    let child = p
        .command(&step1(
            "1-4",
            &[
                "--quantity",
                &q,
                "--concurrent",
                "--webdriver-url",
                grid.url(),
            ],
        ))
        .spawn()
        .unwrap();
    // Strike once every account has a browser and some iterations are done.
    for n in 1..=4u64 {
        wait_for_event(&p, "browser_created", |e| {
            e["event"] == "browser_created" && e["account"] == n
        })
        .await;
    }
    wait_for_event(&p, "a few iterations", |e| {
        e["event"] == "iteration_ok" && e["iteration"] == 2
    })
    .await;
    let before = events(&p.run_dir());
    let placed = nodes_by_account(&before);
    // Kill the node that runs account 1's browser (and so at least one account).
    let victim_uri = placed[&1][0].clone();
    let victim = grid
        .grid
        .nodes
        .iter()
        .find(|n| n.uri == victim_uri)
        .expect("a node of ours")
        .clone();
    let survivor = grid
        .grid
        .nodes
        .iter()
        .find(|n| n.uri != victim_uri)
        .unwrap()
        .uri
        .clone();
    let hit: BTreeSet<u64> = placed
        .iter()
        .filter(|(_, nodes)| nodes.last() == Some(&victim_uri))
        .map(|(a, _)| *a)
        .collect();
    grid.grid.kill_node(&victim.name);
    let out = crate::harness::finish(child, 240).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");

    let events = events(&p.run_dir());
    // Each account on the killed node lost its browser, got a new one on the other
    // node, and its interrupted iteration was retried there.
    let crashed: BTreeSet<u64> = named(&events, "browser_crashed")
        .iter()
        .map(|e| e["account"].as_u64().unwrap())
        .collect();
    assert_eq!(crashed, hit, "the killed node's accounts, and only those");
    let placed = nodes_by_account(&events);
    for a in &hit {
        assert_eq!(
            placed[a].last(),
            Some(&survivor),
            "account {a} went on on the surviving node"
        );
        assert!(
            named(&events, "retry")
                .iter()
                .any(|e| e["account"] == *a && e["kind"] == "driver_gone"),
            "account {a}'s iteration was retried as a driver loss"
        );
    }
    // Nothing lost: every iteration of every account reached the server.
    let rep = report(&p.run_dir());
    assert_eq!(rep["totals"]["iterations_ok"], u64::from(4 * quantity));
    assert_eq!(rep["totals"]["iterations_failed"], 0);
    for n in 1..=4 {
        let adds = p.adds(&format!("user-{n}"));
        for item in 1..=quantity {
            assert!(
                adds.get(&item).copied().unwrap_or(0) >= 1,
                "user-{n} item {item}: {adds:?}"
            );
        }
    }
    grid.stop_and_check();
    p.assert_nothing_left();
}

/// A Grid that grows mid-run is used at once. One node (4 slots), 5 accounts: the
/// first 4 hold every slot — each waits, logged in, for a gate file — and account 5
/// waits here for a slot (`cap`). A second node joins; the next `/status` read raises
/// the cap to 8, and account 5 gets its session on the new node while the others
/// still hold theirs (nobody has finished: the gate is still shut). Without the
/// Grid being followed, account 5 would wait for a seat that is never freed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grid_a_node_that_joins_mid_run_is_used_at_once() {
    let Some(mut grid) = start_grid_of(1) else {
        return;
    };
    let p = grid_project(5).await;
    p.write(
        "workflow.toml",
        &crate::harness::WORKFLOW.replace(
            "  { wait_for = \"#welcome\" },\n",
            "  { wait_for = \"#welcome\" },\n  { exec = [\"sh\", \"-c\", \"while [ ! -e gate ]; do sleep 0.1; done\"], timeout = \"180s\" },\n",
        ),
    );
    let child = p
        .command(&step1(
            "1-5",
            &["--concurrent", "--webdriver-url", grid.url()],
        ))
        .spawn()
        .unwrap();
    let waiting = wait_for_event(&p, "an account waiting for a Grid slot", |e| {
        e["event"] == "admission_wait" && e["reason"] == "cap"
    })
    .await;
    let last = waiting["account"].as_u64().unwrap();
    let first_node = grid.grid.nodes[0].uri.clone();
    let jar = gridctl::ensure_jar(&workspace()).unwrap();
    let joined = grid.grid.add_node(&jar).expect("a second node joins");
    let up = std::time::Instant::now();
    let created = wait_for_event(&p, "the waiting account's session", |e| {
        e["event"] == "browser_created" && e["account"] == last
    })
    .await;
    // For the docs, not asserted (timings belong to benchmarks): the node UP → the
    // waiting account's session.
    eprintln!(
        "node UP → session on it: {:.1} s",
        up.elapsed().as_secs_f64()
    );
    assert_eq!(created["node"], joined.as_str(), "{created}");
    // Every other account still holds its slot on the first node: none is done.
    let so_far = events(&p.run_dir());
    assert!(named(&so_far, "account_done").is_empty(), "{so_far:?}");
    let placed = nodes_by_account(&so_far);
    let on_first = placed
        .values()
        .filter(|n| n.last() == Some(&first_node))
        .count();
    assert_eq!(on_first, 4, "{placed:?}");
    std::fs::write(p.path("gate"), "").unwrap();

    let out = crate::harness::finish(child, 240).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let events = events(&p.run_dir());
    let capacity: Vec<(u64, u64)> = named(&events, "grid_capacity")
        .iter()
        .map(|e| (e["nodes"].as_u64().unwrap(), e["slots"].as_u64().unwrap()))
        .collect();
    assert_eq!(capacity, [(1, 4), (2, 8)]);
    assert_eq!(named(&events, "browser_created").len(), 5);
    for n in 1..=5 {
        assert_eq!(
            p.adds(&format!("user-{n}")),
            BTreeMap::from([(1, 1)]),
            "user-{n}"
        );
    }
    assert_eq!(busy_slots(&grid), 0);
    grid.stop_and_check();
    p.assert_nothing_left();
}

/// The demo workflow's step 1 on 5 accounts, in two shards run side by side, then
/// merged: every account exactly once, and the merged totals are a single run's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_side_by_side_cover_every_account_once_and_merge() {
    let p = Project::new(5).await;
    p.write(
        "batch.toml",
        "workflow = \"workflow.toml\"\naccounts = \"accounts.toml\"\n[profiles]\nephemeral = true\n",
    );
    let (a, b) = (p.path("shard1"), p.path("shard2"));
    let (a_s, b_s) = (a.display().to_string(), b.display().to_string());
    let one = p.command(&step1(
        "all",
        &[
            "--quantity",
            "2",
            "--concurrent",
            "--shard",
            "1/2",
            "--output",
            &a_s,
        ],
    ));
    let two = p.command(&step1(
        "all",
        &[
            "--quantity",
            "2",
            "--concurrent",
            "--shard",
            "2/2",
            "--output",
            &b_s,
        ],
    ));
    let (mut one, mut two) = (one, two);
    let (c1, c2) = (one.spawn().unwrap(), two.spawn().unwrap());
    let (o1, o2) = tokio::join!(
        crate::harness::finish(c1, 240),
        crate::harness::finish(c2, 240)
    );
    assert_eq!(
        o1.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o1.stderr)
    );
    assert_eq!(
        o2.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o2.stderr)
    );
    let only = |dir: &Path| {
        let dirs: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert_eq!(dirs.len(), 1, "{dirs:?}");
        dirs.into_iter().next().unwrap()
    };
    let (d1, d2) = (only(&a), only(&b));
    let ids = |r: &Value| -> Vec<u64> {
        r["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_u64().unwrap())
            .collect()
    };
    let (r1, r2) = (report(&d1), report(&d2));
    // Deterministic, contiguous slices: 3 + 2 of the file's 5 accounts.
    assert_eq!(ids(&r1), vec![1, 2, 3]);
    assert_eq!(ids(&r2), vec![4, 5]);
    // Each account ran exactly once, across both hosts-to-be.
    for n in 1..=5 {
        assert_eq!(
            p.adds(&format!("user-{n}")),
            BTreeMap::from([(1, 1), (2, 1)]),
            "user-{n}"
        );
    }
    // Merged: one report.json over both, written where asked.
    let merged_dir = p.path("merged");
    let d1s = d1.display().to_string();
    let d2s = d2.display().to_string();
    let md = merged_dir.display().to_string();
    let run = p
        .run(&["report", "--merge", &d1s, &d2s, "--output", &md])
        .await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let merged = report(&merged_dir);
    assert_eq!(ids(&merged), vec![1, 2, 3, 4, 5]);
    assert_eq!(merged["exit_code"], 0);
    // The merged report.html and report.xml cover the whole batch: a row and a
    // timeline per account, and JUnit cases whose iterations add up to the totals.
    let html = std::fs::read_to_string(merged_dir.join("report.html")).expect("merged report.html");
    for id in 1..=5 {
        assert!(
            html.contains(&format!("<tr class=\"account\" id=\"account-{id}\"")),
            "account {id}'s row missing from the merged report.html"
        );
        assert!(
            html.contains(&format!("<svg class=\"timeline\" data-account=\"{id}\"")),
            "account {id}'s timeline missing from the merged report.html"
        );
    }
    let xml = std::fs::read_to_string(merged_dir.join("report.xml")).expect("merged report.xml");
    let junit = quick_junit::Report::deserialize_from_str(&xml).expect("merged report.xml parses");
    let ok: u64 = junit
        .test_suites
        .iter()
        .flat_map(|s| s.test_cases.iter())
        .flat_map(|c| c.properties.iter())
        .filter(|p| p.name.as_str() == "iterations_ok")
        .map(|p| p.value.as_str().parse::<u64>().unwrap())
        .sum();
    assert_eq!(
        serde_json::json!(ok),
        merged["totals"]["iterations_ok"],
        "{xml}"
    );
    const TOTALS: [&str; 4] = [
        "iterations_ok",
        "iterations_failed",
        "browser_launches",
        "retries",
    ];
    // The merge is a fold of the shards: every total is the sum of theirs.
    for key in TOTALS {
        let sum = r1["totals"][key].as_u64().unwrap() + r2["totals"][key].as_u64().unwrap();
        assert_eq!(
            merged["totals"][key],
            serde_json::json!(sum),
            "totals.{key}"
        );
    }
    // A single run of the same batch gives the same totals, launches and retries
    // included: runners side by side must not disturb each other's launches (they
    // did, by rewriting the Chrome start-up wrapper: 3 of 26 runs had 2 failures).
    let single = p
        .run(&step1("all", &["--quantity", "2", "--concurrent"]))
        .await;
    assert_eq!(single.code, Some(0), "{}", single.stderr);
    let whole = report(&p.run_dir());
    let unusual = |dir: &Path| -> Vec<String> {
        events(dir)
            .iter()
            .filter(|e| {
                matches!(
                    e["event"].as_str(),
                    Some("launch_failed" | "browser_crashed" | "retry" | "browser_retired")
                )
            })
            .map(|e| e.to_string())
            .collect()
    };
    for key in TOTALS {
        assert_eq!(
            merged["totals"][key],
            whole["totals"][key],
            "totals.{key}; shard 1: {:#?}, shard 2: {:#?}, single run: {:#?}",
            unusual(&d1),
            unusual(&d2),
            unusual(&p.run_dir())
        );
    }
    // The same account in two shards is refused, naming both directories.
    let bad = p.run(&["report", "--merge", &d1s, &d1s]).await;
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);
    assert!(bad.stderr.contains("account 1"), "{}", bad.stderr);
    p.assert_nothing_left();
}

/// Step 1 logs in; step 2 never does, and needs the login (`/home` sends a stranger
/// to `/login`, and the adds count for the logged-in user only).
const STEP_2: &str = r##"
[[steps]]
id = 2
name = "add-without-login"
actions = [
  { goto = "{base_url}/home" },
  { wait_for = "#welcome", timeout = "5s" },
  { goto = "{base_url}/item/{iteration}" },
  { click = "#add" },
  { wait_text = "#done", contains = "added {iteration}" },
  { exec = ["/bin/sh", "-c", "printf '%s\\n' \"$BATCH_WEBDRIVER_URL\" \"$BATCH_SESSION_ID\" \"$BATCH_CDP_URL\" \"${{BATCH_DEBUGGER_ADDRESS-unset}}\" > exec-env.txt"] },
]
"##;

/// The harness's demo workflow (step 1 logs in and adds) followed by [`STEP_2`].
fn two_steps() -> String {
    [crate::harness::WORKFLOW, STEP_2].concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grid_login_on_one_node_carries_to_the_other_node() {
    let Some(grid) = start_grid() else { return };
    let p = grid_project(1).await;
    p.write("workflow.toml", &two_steps());
    let first = p
        .run(&[
            "single",
            "--step",
            "1",
            "--accounts",
            "1",
            "--webdriver-url",
            grid.url(),
        ])
        .await;
    assert_eq!(first.code, Some(0), "{}\n{}", first.stdout, first.stderr);
    let counts = p.site.counts();
    assert_eq!(counts.users["user-1"].logins, 1);
    let node1 = nodes_by_account(&events(&p.run_dirs()[0]))[&1][0].clone();

    // The state is in the account's data, private, and holds the session cookie.
    let state_path = p.path("profiles/storage-state/account-1/state.json");
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state_path), 0o600);
    assert_eq!(mode(state_path.parent().unwrap()), 0o700);
    assert_eq!(mode(state_path.parent().unwrap().parent().unwrap()), 0o700);
    let state: Value = serde_json::from_slice(&std::fs::read(&state_path).unwrap()).unwrap();
    let cookie = state["cookies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["domain"] == "127.0.0.1")
        .expect("the demo's session cookie")["value"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(cookie.len() >= 8, "{cookie:?}");

    // Take away the node that ran step 1: step 2 can only run on the other one.
    let victim = grid
        .grid
        .nodes
        .iter()
        .find(|n| n.uri == node1)
        .unwrap()
        .name
        .clone();
    grid.grid.kill_node(&victim);
    grid.grid
        .wait_up(1, Duration::from_secs(60))
        .expect("the hub notices the lost node");
    let second = p
        .run(&[
            "single",
            "--step",
            "2",
            "--accounts",
            "1",
            "--quantity",
            "2",
            "--webdriver-url",
            grid.url(),
        ])
        .await;
    assert_eq!(second.code, Some(0), "{}\n{}", second.stdout, second.stderr);
    let runs = p.run_dirs();
    let second_dir = runs
        .iter()
        .find(|d| events(d).iter().any(|e| e["event"] == "storage_restored"))
        .expect("the second run restored the state")
        .clone();
    let ev = events(&second_dir);
    let node2 = nodes_by_account(&ev)[&1][0].clone();
    assert_ne!(node1, node2, "step 2 ran on the other node");
    // `exec` was handed the remote session: the Grid's URL, the session, the hub's
    // CDP proxy for it — and no DevTools address, which would be the node's.
    let session = named(&ev, "browser_created")[0]["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    let env = std::fs::read_to_string(p.path("exec-env.txt")).unwrap();
    let host = grid.url().trim_start_matches("http://");
    assert_eq!(
        env.lines().collect::<Vec<_>>(),
        vec![
            grid.url().to_string(),
            session.clone(),
            format!("ws://{host}/session/{session}/se/cdp"),
            "unset".to_string()
        ]
    );
    let restored = named(&ev, "storage_restored");
    assert!(
        restored[0]["cookies"].as_u64().unwrap() >= 1,
        "{restored:?}"
    );
    // No second login: the carried cookie did it, and the adds counted for user-1.
    let counts = p.site.counts();
    assert_eq!(counts.users["user-1"].logins, 1, "logged in only once");
    assert_eq!(p.adds("user-1"), BTreeMap::from([(1, 2), (2, 1)]));
    // The cookie value is a secret: in no journal, report or output.
    for dir in &runs {
        for file in ["events.jsonl", "report.json"] {
            let text = std::fs::read_to_string(dir.join(file)).unwrap();
            assert!(!text.contains(&cookie), "{file} shows the session cookie");
        }
    }
    for out in [&first.stdout, &first.stderr, &second.stdout, &second.stderr] {
        assert!(!out.contains(&cookie), "output shows the session cookie");
    }
    grid.stop_and_check();
    p.assert_nothing_left();
}

/// Locally the profile keeps the login; with ephemeral profiles it does not — unless
/// `--storage-state` carries it. Without the flag nothing is saved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_storage_state_is_opt_in() {
    let p = Project::new(1).await;
    p.write("workflow.toml", &two_steps());
    p.write(
        "batch.toml",
        "workflow = \"workflow.toml\"\naccounts = \"accounts.toml\"\n[profiles]\nephemeral = true\n",
    );
    let step = |n: &'static str, extra: &'static [&'static str]| {
        let mut a = vec!["single", "--step", n, "--accounts", "1"];
        a.extend_from_slice(extra);
        a
    };
    // Not opted in: a fresh ephemeral browser is a stranger to the site.
    let run = p.run(&step("1", &[])).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(!p.path("profiles/storage-state").exists());
    let run = p.run(&step("2", &["--retries", "0"])).await;
    assert_eq!(run.code, Some(1), "step 2 needs the login: {}", run.stdout);
    // Opted in: the login travels from one ephemeral browser to the next.
    let run = p.run(&step("1", &["--storage-state"])).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let run = p.run(&step("2", &["--storage-state"])).await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        p.site.counts().users["user-1"].logins,
        2,
        "one login per step 1"
    );
    // The local browser's facts are all there, unlike a remote one's.
    for dir in p.run_dirs() {
        for e in named(&events(&dir), "browser_created") {
            assert!(e["pid"].is_u64() && e["port"].is_u64() && e["profile"].is_string());
            assert!(e["node"].is_null(), "{e}");
        }
    }
    p.assert_nothing_left();
}

/// A proxy with credentials on a Grid whose nodes run on this host (a loopback
/// hub): the node's Chromium is given `--proxy-server` pointing at this runner's
/// loopback forwarder, which adds the credentials. The proxy's log and the demo
/// app's view agree, and the password is in no process's argv or environment — the
/// node's JVM, driver and Chromium included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grid_an_accounts_authenticated_proxy_carries_its_remote_browsers_traffic() {
    const PASS: &str = "pw-grid-Tx45v";
    let Some(grid) = start_grid_of(1) else { return };
    let p = grid_project(1).await;
    let proxy = forwarder::testing::AuthProxy::start("proxy-grid", Some(("gina", PASS)))
        .await
        .unwrap();
    p.write(
        "batch.toml",
        "workflow = \"workflow.toml\"\naccounts = \"accounts.toml\"\n\
         [browser]\nargs = [\"--proxy-bypass-list=<-loopback>\"]\n[timeouts]\nlaunch = \"90s\"\n",
    );
    let url = format!("http://gina:{PASS}@{}", proxy.addr());
    p.write("accounts.toml", &crate::proxy::account(1, &url, ""));
    let token = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("gina:{PASS}"))
    };
    let child = p
        .command(&step1(
            "1",
            &["--quantity", "2", "--webdriver-url", grid.url()],
        ))
        .spawn()
        .unwrap();
    let pid = child.id().expect("running");
    let (mut leaks, mut scans) = (Vec::new(), 0);
    while fsutil::proc::alive(pid) {
        leaks.extend(crate::proxy::in_processes(&[PASS, token.as_str()]));
        scans += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = crate::harness::finish(child, 300).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        scans > 5 && leaks.is_empty(),
        "{scans} scans, leaks: {leaks:?}"
    );
    assert!(!stderr.contains(PASS) && !String::from_utf8_lossy(&out.stdout).contains(PASS));

    // The app: user-1's login and two adds, each through the proxy (its Via).
    let counts = p.site.counts();
    let via: Vec<_> = counts.users["user-1"].via.clone().into_iter().collect();
    assert_eq!(via, [("1.1 proxy-grid".to_owned(), 3)], "{counts:?}");
    assert_eq!(p.adds("user-1"), BTreeMap::from([(1, 1), (2, 1)]));
    // The proxy: the same three requests, authorized, from the forwarder.
    let log = proxy.log();
    let site = p.site.addr().to_string();
    let posts = |path: &str| {
        log.iter()
            .filter(|s| s.method == "POST" && s.target == format!("http://{site}{path}"))
            .count()
    };
    assert_eq!((posts("/login"), posts("/api/cart")), (1, 2), "{log:?}");
    assert!(log.iter().all(|s| s.authorized), "{log:?}");
    // The browser was the node's; the forwarder was ours, journaled for it.
    let ev = events(&p.run_dir());
    let created = named(&ev, "browser_created");
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(created[0]["node"], grid.grid.nodes[0].uri.as_str());
    assert!(created[0]["pid"].is_null());
    let fwd = named(&ev, "proxy_forwarder");
    assert_eq!(fwd.len(), 1, "{fwd:?}");
    assert_eq!(fwd[0]["upstream"], format!("http://{}", proxy.addr()));
    grid.stop_and_check();
    p.assert_nothing_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_webdriver_url_is_a_usage_error_and_launches_nothing() {
    let p = Project::new(1).await;
    for bad in ["ftp://127.0.0.1:4444", "127.0.0.1:4444", "http://"] {
        let run = p.run(&step1("1", &["--webdriver-url", bad])).await;
        assert_eq!(run.code, Some(2), "{bad}: {}", run.stderr);
        assert!(
            run.stderr.contains("--webdriver-url") && run.stderr.contains("expected an http://"),
            "{}",
            run.stderr
        );
    }
    // A remote host's browsers cannot reach the forwarder that a proxy with
    // credentials needs: refused, saying why (no request is made to that host).
    p.write(
        "accounts.toml",
        "[[accounts]]\nid = 1\nusername = \"user-1\"\npassword = \"pass-1\"\n\
         proxy = \"http://u:pw-Qq1@127.0.0.1:3128\"\n",
    );
    let run = p
        .run(&step1(
            "1",
            &["--webdriver-url", "http://grid.example:4444"],
        ))
        .await;
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("account 1's proxy has credentials")
            && run
                .stderr
                .contains("the remote host grid.example cannot reach"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("pw-Qq1"), "{}", run.stderr);
    assert!(p.run_dirs().is_empty(), "nothing ran");
}

/// An account's storage state belongs to one run at a time: a second process that
/// would carry the same account's session is refused before it launches anything,
/// and the first is unharmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_cannot_take_an_accounts_storage_state() {
    let p = Project::new(2).await;
    p.write("workflow.toml", &slow_workflow());
    p.write(
        "batch.toml",
        "workflow = \"workflow.toml\"\naccounts = \"accounts.toml\"\n[profiles]\nephemeral = true\n",
    );
    let first = p
        .command(&step1("1", &["--quantity", "6", "--storage-state"]))
        .spawn()
        .unwrap();
    wait_for_event(&p, "the first run's browser", |e| {
        e["event"] == "browser_created"
    })
    .await;
    let second = p
        .run(&step1("1,2", &["--storage-state", "--output", "runs2"]))
        .await;
    assert_eq!(second.code, Some(2), "{}", second.stderr);
    assert!(
        second.stderr.contains("account 1: its storage state")
            && second
                .stderr
                .contains("in use by another batch-cli process"),
        "{}",
        second.stderr
    );
    assert!(!p.path("runs2").exists(), "nothing was started");
    let out = crate::harness::finish(first, 120).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Free again once the first run is over.
    let third = p.run(&step1("2", &["--storage-state"])).await;
    assert_eq!(third.code, Some(0), "{}", third.stderr);
    p.assert_nothing_left();
}

/// Every path under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}
