//! A second factor: `{totp.FIELD}` types the one-time code of the moment from the
//! account's TOTP secret, and the demo app — which checks each user's code against
//! its own copy of the secret, and takes each window's code once — is what says it
//! was right. Neither the secret nor a code may show in anything the run writes or
//! prints.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::harness::{Project, WORKFLOW, events, named, step1};

/// The demo login, then per iteration: the code form, filled with `{totp.otp}`, and
/// a program that prints the secret it gets (which the log must not keep).
fn workflow() -> String {
    WORKFLOW.replace(
        "  { wait_text = \"#done\", contains = \"added {iteration}\" },\n",
        "  { wait_text = \"#done\", contains = \"added {iteration}\" },\n\
         \x20 { goto = \"{base_url}/verify\" },\n\
         \x20 { fill = \"#code\", text = \"{totp.otp}\" },\n\
         \x20 { click = \"#verify\" },\n\
         \x20 { wait_text = \"#verified\", contains = \"verified {account.username}\" },\n\
         \x20 { exec = [\"sh\", \"-c\", \"echo seed=$BATCH_ACCOUNT_OTP\"] },\n",
    )
}

/// Demo accounts 1..=n with their secrets under `otp`, a name that says nothing of
/// a secret: it is one because the workflow reads a TOTP secret from it. With a
/// `period`, the secret is an otpauth:// URI with that period; without, base32.
fn accounts(n: u32, period: Option<u64>) -> String {
    (1..=n)
        .map(|i| {
            let user = format!("user-{i}");
            let secret = match period {
                None => demo_site::totp_secret(&user),
                Some(p) => format!(
                    "otpauth://totp/demo:{user}?secret={}&period={p}",
                    demo_site::totp_secret(&user)
                ),
            };
            format!(
                "[[accounts]]\nid = {i}\nusername = \"user-{i}\"\npassword = \"pass-{i}\"\n\
                 otp = \"{secret}\"\n\n"
            )
        })
        .collect()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Every file under `dir`, with its text (lossy).
fn texts(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(texts(&path));
        } else {
            let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
            out.push((path.display().to_string(), text));
        }
    }
    out
}

/// Where `code` stands in `text` as a number of its own: not inside a longer run of
/// digits, nor after a `.` (a timestamp's fraction of a second).
fn holds_code(text: &str, code: &str) -> bool {
    text.match_indices(code).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + code.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_digit() || c == '.')
            && !after.is_some_and(|c| c.is_ascii_digit())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_account_passes_the_second_factor_with_its_own_code_and_none_shows() {
    let p = Project::new(2).await;
    p.write("accounts.toml", &accounts(2, None));
    p.write("workflow.toml", &workflow());
    let start = unix_now();
    let run = p
        .run(&step1("1-2", &["--quantity", "1", "--concurrent", "-vv"]))
        .await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let counts = p.site.counts();
    for user in ["user-1", "user-2"] {
        let c = &counts.users[user];
        assert_eq!(
            (c.verified, c.reused_codes, c.bad_codes),
            (1, 0, 0),
            "{user}: {c:?}"
        );
    }

    // A failure message shows what was awaited: the code, as ***. (This run does not
    // sign in with the code: the site would refuse this window's again.)
    p.write(
        "workflow.toml",
        &WORKFLOW.replace(
            "  { wait_text = \"#done\", contains = \"added {iteration}\" },\n",
            "  { wait_text = \"#done\", contains = \"{totp.otp}\", timeout = \"300ms\" },\n",
        ),
    );
    let failed = p
        .run(&step1("1", &["--quantity", "1", "--retries", "0", "-vv"]))
        .await;
    let end = unix_now();
    assert_eq!(failed.code, Some(1), "{}\n{}", failed.stdout, failed.stderr);
    let runs = p.run_dirs();
    let journal = runs.iter().flat_map(|d| events(d)).collect::<Vec<_>>();
    let errors: Vec<&str> = named(&journal, "iteration_failed")
        .iter()
        .filter_map(|e| e["error"].as_str())
        .collect();
    assert!(
        errors.len() == 1 && errors[0].contains("#done to contain \"***\""),
        "{errors:?}"
    );

    // The codes the runs could have typed: one per 30 s window it spanned. (Output
    // holds a dozen other six-digit numbers — pids, sizes — so a false alarm here is
    // about one run in 15,000.)
    let mut secrets = Vec::new();
    let mut codes = Vec::new();
    for user in ["user-1", "user-2"] {
        let secret = demo_site::totp_secret(user);
        let key = totp_rs::Secret::try_from_base32(&secret).unwrap();
        let totp = totp_rs::Builder::new().with_secret(key).build().unwrap();
        for window in start / 30..=end / 30 {
            codes.push(totp.generate(window * 30).to_string());
        }
        secrets.push(secret);
    }
    let mut outputs = texts(&p.path("runs"));
    outputs.push(("stdout".into(), run.stdout.clone()));
    outputs.push(("stderr".into(), run.stderr.clone()));
    outputs.push((
        "failed run".into(),
        format!("{}{}", failed.stdout, failed.stderr),
    ));
    let validate = p.run(&["validate"]).await;
    assert_eq!(
        validate.code,
        Some(0),
        "{}\n{}",
        validate.stdout,
        validate.stderr
    );
    outputs.push((
        "validate".into(),
        format!("{}{}", validate.stdout, validate.stderr),
    ));
    for (name, text) in &outputs {
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{name} shows a TOTP secret:\n{text}"
            );
        }
        for code in &codes {
            assert!(
                !holds_code(text, code),
                "{name} shows the code {code}:\n{text}"
            );
        }
    }
    // The scan read the account logs, where the program's print of the secret is
    // kept redacted: `otp` is a secret although its name does not say so.
    let prints: Vec<(&String, usize)> = outputs
        .iter()
        .filter(|(name, _)| name.contains("/logs/account-"))
        .map(|(name, text)| (name, text.matches("seed=***").count()))
        .filter(|&(_, n)| n > 0)
        .collect();
    assert_eq!(prints.len(), 2, "{prints:?}");
    assert!(prints.iter().all(|&(_, n)| n == 1), "{prints:?}");
    p.assert_nothing_left();
}

/// A value that is not a TOTP secret is refused before anything launches, naming
/// the workflow line, the variable and the account, never quoting the value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_that_is_not_a_totp_secret_is_refused_before_launch() {
    let p = Project::new(2).await;
    p.write(
        "accounts.toml",
        &accounts(2, None).replace(&demo_site::totp_secret("user-2"), "otp-seed-1!"),
    );
    p.write("workflow.toml", &workflow());
    let run = p.run(&step1("1-2", &["--quantity", "1"])).await;
    assert_eq!(run.code, Some(2), "{}\n{}", run.stdout, run.stderr);
    let wf = p.path("workflow.toml");
    assert!(
        run.stderr.contains(&format!(
            "{}:19: fill: {{totp.otp}}: the value of account 2 is not a TOTP secret: not base32",
            wf.display()
        )),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("otp-seed") && !run.stdout.contains("otp-seed"));
    assert!(p.run_dirs().is_empty(), "nothing ran");
    assert!(p.site.counts().users.is_empty(), "the site saw nothing");
    p.assert_nothing_left();
}

/// Iterations come faster than a 5 s period: each waits for a window its account has
/// not used, so the site — which refuses a window's code the second time — takes
/// every one. Each account's secret has its own windows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_already_used_is_waited_out_so_every_code_is_taken() {
    let p = Project::new(2).await;
    p.site.set_totp_period(5);
    p.write("accounts.toml", &accounts(2, Some(5)));
    p.write("workflow.toml", &workflow());
    let run = p
        .run(&step1("1-2", &["--quantity", "3", "--concurrent", "-v"]))
        .await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    for user in ["user-1", "user-2"] {
        let c = &p.site.counts().users[user];
        assert_eq!(
            (c.verified, c.reused_codes, c.bad_codes),
            (3, 0, 0),
            "{user}: {c:?}"
        );
    }
    assert!(
        run.stderr.contains("waiting for a fresh one-time code"),
        "no iteration had to wait, so this proved nothing:\n{}",
        run.stderr
    );
    p.assert_nothing_left();
}

/// A second run straight after the first — a `--resume`, the same command again —
/// within one 15 s window: it does not type the code the first run used (the site
/// would refuse it, and with `--retries 0` the run would fail) but waits for the next
/// window, because the runs share one ledger of used windows in the user's runtime
/// directory. That file holds no secret and no code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_right_after_another_waits_out_the_window_the_other_used() {
    let p = Project::new(1).await;
    p.site.set_totp_period(15);
    p.write("accounts.toml", &accounts(1, Some(15)));
    p.write("workflow.toml", &workflow());
    // Start early in a window, so that both runs type their code within it.
    let into = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        % 15.0;
    if into > 1.0 {
        tokio::time::sleep(std::time::Duration::from_secs_f64(15.05 - into)).await;
    }
    let args = step1("1", &["--retries", "0", "-v"]);
    let first = p.run(&args).await;
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    let second = p.run(&args).await;
    assert_eq!(second.code, Some(0), "{}\n{}", second.stdout, second.stderr);
    let c = &p.site.counts().users["user-1"];
    assert_eq!(
        (c.verified, c.reused_codes, c.bad_codes),
        (2, 0, 0),
        "{c:?}"
    );
    assert!(
        second.stderr.contains("waiting for a fresh one-time code"),
        "the second run did not wait, so this proved nothing:\n{}",
        second.stderr
    );
    let ledger = p.runtime_dir().join("batch-cli").join("totp-used");
    let text = std::fs::read_to_string(&ledger).expect("the shared ledger");
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(!text.contains(&demo_site::totp_secret("user-1")), "{text}");
    p.assert_nothing_left();
}
