//! The bring-your-own-script examples in `examples/`: the Python Selenium one runs
//! against the demo app, attached to each account's browser through
//! `BATCH_DEBUGGER_ADDRESS` (no extra browser: one `browser_created` per account, and
//! the server counts the script's adds for the logged-in user); the Node/Puppeteer
//! one is syntax-checked with `node --check`, and run the same way through
//! `BATCH_CDP_URL` (with puppeteer-core from `cargo xtask deps`). The forms one runs
//! as it is, and the server shows each iteration's row went through every form.

use std::path::{Path, PathBuf};

use crate::harness::{Project, events, named, step1};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Copies an example's files into the project, its accounts replaced by the
/// project's own (the example points at `../demo/accounts.toml`).
fn copy_example(p: &Project, name: &str) {
    let dir = workspace().join("examples").join(name);
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let file = e.file_name().into_string().unwrap();
        let text = std::fs::read_to_string(e.path()).unwrap();
        let text = if file == "batch.toml" {
            assert!(text.contains("\"../demo/accounts.toml\""), "{text}");
            text.replace("\"../demo/accounts.toml\"", "\"accounts.toml\"")
        } else {
            text
        };
        p.write(&file, &text);
    }
}

/// Runs the copied example for accounts 1, 2 × 2 iterations and checks what the
/// server saw and that each account had exactly one browser.
async fn run_example(p: &Project, cmd: &mut tokio::process::Command) {
    let out = crate::harness::finish(cmd.spawn().unwrap(), 300).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // The server saw each script's add for the right, logged-in user: the script
    // drove the browser batch-cli had logged in (a new browser would have no session
    // and be sent to /login).
    for user in ["user-1", "user-2"] {
        assert_eq!(
            p.adds(user).into_iter().collect::<Vec<_>>(),
            [(1, 1), (2, 1)],
            "{user}: {stderr}"
        );
        assert_eq!(p.site.counts().users[user].logins, 1, "{user}");
    }
    let ev = events(&p.run_dir());
    for id in [1, 2] {
        let created = named(&ev, "browser_created")
            .into_iter()
            .filter(|e| e["account"] == id)
            .count();
        assert_eq!(
            created, 1,
            "account {id}: one browser, the script's attach launched none"
        );
    }
    p.assert_nothing_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_puppeteer_example_drives_the_accounts_own_browser() {
    let modules = workspace().join("target/node-puppeteer/node_modules");
    assert!(
        modules.join("puppeteer-core").exists(),
        "{} is missing: `cargo xtask deps` (run by `cargo xtask test`) installs puppeteer-core there",
        modules.display()
    );
    let p = Project::new(2).await;
    copy_example(&p, "puppeteer-node");
    // Node resolves `puppeteer-core` from the script's directory.
    std::os::unix::fs::symlink(&modules, p.path("node_modules")).unwrap();
    let mut cmd = p.command(&step1(
        "1,2",
        &["--quantity", "2", "--launch-interval", "0"],
    ));
    run_example(&p, &mut cmd).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_selenium_example_drives_the_accounts_own_browser() {
    let venv = workspace().join("target/py-venv/bin");
    assert!(
        venv.join("python3").exists(),
        "{} is missing: `cargo xtask deps` (run by `cargo xtask test`) installs selenium there",
        venv.display()
    );
    let p = Project::new(2).await;
    copy_example(&p, "selenium-python");
    let mut cmd = p.command(&step1(
        "1,2",
        &["--quantity", "2", "--launch-interval", "0"],
    ));
    // `python3` in the workflow is the venv's.
    let path = format!(
        "{}:{}",
        venv.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    cmd.env("PATH", path);
    run_example(&p, &mut cmd).await;
}

#[test]
fn the_node_puppeteer_example_is_valid_javascript() {
    let script = workspace().join("examples/puppeteer-node/add_to_cart.mjs");
    let out = std::process::Command::new("node")
        .arg("--check")
        .arg(&script)
        .output()
        .expect("node is installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And it reads the endpoint batch-cli hands it.
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(text.contains("process.env.BATCH_CDP_URL"));
}

/// `examples/forms`: every form the demo site has, driven by workflow actions alone
/// with each account's rows of `orders.csv`; what the server got is those rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forms_example_goes_through_every_form_with_each_accounts_rows() {
    let p = Project::new(2).await;
    copy_example(&p, "forms");
    let run = p
        .run(&step1("1,2", &["--quantity", "2", "--concurrent"]))
        .await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let counts = p.site.counts();
    // orders.csv: account 1 chooses Korea then Japan by their text, with the banner
    // on its first visit; account 2 chooses de by its value, then Japan, with the
    // banner on its second. Every iteration saves, pays, connects and clears once.
    for (user, countries, cards, consents) in [
        ("user-1", ["kr", "jp"], ["4242-0001", "4242-0002"], 1),
        ("user-2", ["de", "jp"], ["4242-0003", "4242-0004"], 1),
    ] {
        let u = &counts.users[user];
        assert_eq!(u.countries, countries, "{user}: {u:?}");
        assert_eq!(u.cards, cards, "{user}");
        assert_eq!(
            (
                u.consents,
                u.terms_accepted,
                u.newsletters,
                u.authorizations,
                u.clears
            ),
            (consents, 2, 0, 2, 2),
            "{user}: {u:?}"
        );
    }
    p.assert_nothing_left();
}
