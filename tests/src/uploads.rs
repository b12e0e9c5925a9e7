//! Uploads: `upload` chooses files in a file input, and what the demo app received
//! is what is checked — each user's own files, by name, size and content, and exactly
//! the files of the last `upload` into an input. Locally the driver reads the files
//! here; for a remote endpoint (a lone ChromeDriver here, a Grid in `grid.rs`) they
//! are sent to it first.

use demo_site::Upload;

use crate::harness::{Project, WORKFLOW, events, named, report, step1};

/// Per iteration: first a wrong file, then the account's own file and the iteration's
/// shared one into the same (hidden, `multiple`) input — the form must carry only
/// the last two — then send it.
pub(crate) fn workflow() -> String {
    WORKFLOW.replace(
        "  { wait_text = \"#done\", contains = \"added {iteration}\" },\n",
        "  { wait_text = \"#done\", contains = \"added {iteration}\" },\n\
         \x20 { goto = \"{base_url}/upload\" },\n\
         \x20 { upload = \"#doc\", file = \"files/wrong.txt\" },\n\
         \x20 { upload = \"#doc\", file = [\"files/{account.id}.txt\", \"files/shared-{iteration}.txt\"] },\n\
         \x20 { click = \"#send\" },\n\
         \x20 { wait_text = \"#received\", contains = \"received 2 files\" },\n",
    )
}

pub(crate) fn write_files(p: &Project, accounts: u32, iterations: u32) {
    std::fs::create_dir_all(p.path("files")).unwrap();
    p.write("files/wrong.txt", "must not arrive\n");
    for a in 1..=accounts {
        p.write(&format!("files/{a}.txt"), &format!("account {a}\n"));
    }
    for i in 1..=iterations {
        p.write(&format!("files/shared-{i}.txt"), &format!("shared {i}\n"));
    }
}

/// What user `a` should have sent over `iterations`, in order.
pub(crate) fn expected(a: u32, iterations: u32) -> Vec<Upload> {
    let file = |name: String, head: String| Upload {
        name,
        bytes: head.len() as u64,
        head,
    };
    (1..=iterations)
        .flat_map(|i| {
            [
                file(format!("{a}.txt"), format!("account {a}\n")),
                file(format!("shared-{i}.txt"), format!("shared {i}\n")),
            ]
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_account_uploads_its_own_files_and_only_the_last_choice() {
    let p = Project::new(2).await;
    p.write("workflow.toml", &workflow());
    write_files(&p, 2, 2);
    let run = p
        .run(&step1("1-2", &["--quantity", "2", "--concurrent"]))
        .await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let counts = p.site.counts();
    for a in 1..=2 {
        let user = format!("user-{a}");
        assert_eq!(counts.users[&user].uploads, expected(a, 2), "{user}");
    }
    assert_eq!(report(&p.run_dir())["totals"]["iterations_ok"], 4);
    p.assert_nothing_left();
}

/// A remote endpoint reads files on its own host: each is sent through the session
/// first (a lone ChromeDriver knows only its own `file` endpoint, so this also takes
/// the fallback from `se/file`), and the server still gets it under its own name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_browser_gets_the_files_through_its_endpoint() {
    let p = Project::new(1).await;
    let driver = p.with_lone_driver("");
    // The files are removed here before the form is sent: what arrives can only be
    // the endpoint's own copies (a browser reading this host's files would send
    // nothing — or fail).
    p.write(
        "workflow.toml",
        &workflow().replace(
            "  { click = \"#send\" },\n",
            "  { exec = [\"rm\", \"files/1.txt\", \"files/shared-1.txt\"] },\n  { click = \"#send\" },\n",
        ),
    );
    write_files(&p, 1, 1);
    let run = p
        .run(&step1(
            "1",
            &[
                "--quantity",
                "1",
                "--launch-interval",
                "0",
                "--retries",
                "0",
            ],
        ))
        .await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert_eq!(p.site.counts().users["user-1"].uploads, expected(1, 1));
    drop(driver);
    p.assert_nothing_left();
}

/// A file that is gone by the time the action runs fails that iteration, naming the
/// line and the path; one missing when the run starts is refused before any launch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_file_is_refused_before_launch_and_fails_the_action_at_run_time() {
    let p = Project::new(2).await;
    p.write("workflow.toml", &workflow());
    write_files(&p, 1, 1);
    let run = p.run(&step1("1-2", &["--quantity", "1"])).await;
    assert_eq!(run.code, Some(2), "{}\n{}", run.stdout, run.stderr);
    let wf = p.path("workflow.toml");
    assert!(
        run.stderr.contains(&format!(
            "{}:20: upload.file: \"files/2.txt\" (for account 2) does not exist",
            wf.display()
        )),
        "{}",
        run.stderr
    );
    assert!(
        !p.path("runs").exists() || p.run_dirs().is_empty(),
        "nothing ran"
    );

    // Gone between planning and running: an `exec` before the upload removes it.
    p.write(
        "workflow.toml",
        &workflow().replace(
            "  { goto = \"{base_url}/upload\" },\n",
            "  { exec = [\"rm\", \"files/1.txt\"] },\n  { goto = \"{base_url}/upload\" },\n",
        ),
    );
    let run = p
        .run(&step1("1", &["--quantity", "1", "--retries", "0"]))
        .await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    let journal = events(&p.run_dir());
    let failed = named(&journal, "iteration_failed");
    assert_eq!(failed.len(), 1, "{journal:?}");
    let error = failed[0]["error"].as_str().unwrap();
    assert_eq!(
        error,
        format!(
            "{}:21: upload: \"files/1.txt\" does not exist",
            wf.display()
        ),
    );
    assert!(p.site.counts().users["user-1"].uploads.is_empty());
    p.assert_nothing_left();
}
