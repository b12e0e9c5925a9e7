//! Downloads: every download of a local browser lands in its account's own
//! directory (`downloads/<account>/step<S>-<phase>/`), and `wait_download` waits for
//! a finished one. Checked against what the demo app sent: each file names the user
//! whose session asked for it, and the server counted every export.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use crate::harness::{Project, WORKFLOW, events, named, report, step1};

/// Per iteration: one export by clicking the item page's link, and one by navigating
/// to a slow export (its second half comes 700 ms after the first), so the second
/// `wait_download` has to wait while Chrome's `export-….csv.crdownload` is still
/// being written — a file its pattern matches, and must not take.
fn workflow() -> String {
    WORKFLOW.replace(
        "  { wait_text = \"#done\", contains = \"added {iteration}\" },\n",
        "  { wait_text = \"#done\", contains = \"added {iteration}\" },\n\
         \x20 { click = \"#export\" },\n\
         \x20 { wait_download = \"export-{account.username}-{iteration}.csv\", into = \"clicked\" },\n\
         \x20 { goto = \"{base_url}/export/{iteration}00?ms=700\" },\n\
         \x20 { wait_download = \"export-*\", into = \"slow\", timeout = \"20s\" },\n",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_accounts_downloads_land_in_its_own_directories_and_are_awaited() {
    let p = Project::new(2).await;
    p.write("workflow.toml", &workflow());
    let run = p
        .run(&step1("1-2", &["--quantity", "2", "--concurrent"]))
        .await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let dir = p.run_dir();

    // What the server sent: two exports per iteration per user.
    let counts = p.site.counts();
    for user in ["user-1", "user-2"] {
        assert_eq!(counts.users[user].exports, 4, "{user}");
    }

    // What landed where: each iteration's files in its own directory, each file the
    // one its own account's session asked for (the body names the user).
    for account in [1u32, 2] {
        let user = format!("user-{account}");
        for iteration in [1u32, 2] {
            let d = dir.join(format!("downloads/{account}/step1-{iteration}"));
            let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", d.display());
            let mut names: Vec<String> = std::fs::read_dir(&d)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            let clicked = format!("export-{user}-{iteration}.csv");
            let slow = format!("export-{user}-{iteration}00.csv");
            assert_eq!(names, [clicked.clone(), slow.clone()], "{}", d.display());
            for (name, item) in [(&clicked, iteration), (&slow, iteration * 100)] {
                let body = std::fs::read_to_string(d.join(name)).unwrap();
                let lines: Vec<&str> = body.lines().collect();
                assert_eq!(lines.len(), 2, "a whole file: {body:?}");
                assert!(
                    lines[1].starts_with(&format!("{user},{item},")),
                    "{name}: {body:?}"
                );
            }
        }
        assert!(
            !dir.join(format!("downloads/{account}/step1-before"))
                .exists(),
            "a phase without downloads leaves no directory"
        );
    }

    // Every wait_download recorded the file it took, relative to the run directory.
    let journal = events(&dir);
    let mut recorded = BTreeMap::new();
    for e in named(&journal, "value_recorded") {
        let key = (
            e["account"].as_u64().unwrap(),
            e["iteration"].as_u64().unwrap(),
            e["name"].as_str().unwrap().to_owned(),
        );
        recorded.insert(key, e["value"].as_str().unwrap().to_owned());
    }
    assert_eq!(recorded.len(), 8, "{recorded:?}");
    assert_eq!(
        recorded[&(2, 2, "clicked".into())],
        "downloads/2/step1-2/export-user-2-2.csv"
    );
    assert_eq!(
        recorded[&(1, 1, "slow".into())],
        "downloads/1/step1-1/export-user-1-100.csv"
    );
    // The report keeps the last value of each name.
    let rep = report(&dir);
    assert_eq!(
        rep["accounts"][0]["values"]["slow"],
        "downloads/1/step1-2/export-user-1-200.csv"
    );
    p.assert_nothing_left();
}

/// A download that never comes fails the iteration after `timeout`, naming the
/// pattern and the directory it looked in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_that_never_comes_fails_the_iteration_naming_what_was_awaited() {
    let p = Project::new(1).await;
    p.write(
        "workflow.toml",
        &WORKFLOW.replace(
            "  { wait_text = \"#done\", contains = \"added {iteration}\" },\n",
            "  { click = \"#export\" },\n\
             \x20 { wait_download = \"invoice-*.pdf\", timeout = \"1s\" },\n",
        ),
    );
    let run = p.run(&step1("1", &["--retries", "0"])).await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    let journal = events(&p.run_dir());
    let failed = named(&journal, "iteration_failed");
    assert_eq!(failed.len(), 1, "{journal:?}");
    let error = failed[0]["error"].as_str().unwrap();
    assert!(
        error.contains(
            "workflow.toml:18: timed out after 1s waiting for a finished download matching \
             \"invoice-*.pdf\" in downloads/1/step1-1"
        ),
        "{error}"
    );
    // The click's download did arrive, where the error says it looked.
    let got = p.run_dir().join("downloads/1/step1-1/export-user-1-1.csv");
    assert!(got.exists(), "{}", got.display());
    assert_eq!(p.site.counts().users["user-1"].exports, 1);
    p.assert_nothing_left();
}
