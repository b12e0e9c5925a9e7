//! Per-account browser identity, end to end: two accounts, one on the `[browser]`
//! defaults, one with its own user agent, languages, time zone, window size and an
//! extra switch. The demo app saw each user's own `User-Agent` and `Accept-Language`,
//! the pages ran in each account's time zone (a `script` action's value in
//! report.json), and `browser_created` records what each browser was given. Then the
//! same through a remote source.

use crate::harness::{Project, events, named, report, step1};

const DEFAULT_UA: &str = "BatchDefault/1.0 (identity-e2e)";
const OWN_UA: &str = "AccountTwo/2.0 (identity-e2e)";

const WORKFLOW: &str = r##"
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
  { goto = "{base_url}/item/{iteration}" },
  { click = "#add" },
  { wait_text = "#done", contains = "added {iteration}" },
  { script = "return Intl.DateTimeFormat().resolvedOptions().timeZone", into = "timezone" },
  { script = "return navigator.languages.join(',')", into = "languages" },
  { script = "return navigator.userAgent", into = "user_agent" },
  { script = "return window.outerWidth + 'x' + window.outerHeight", into = "window" },
  { script = "return String(window.devicePixelRatio)", into = "scale" },
]
"##;

/// The two Chromium builds the launcher runs locally, and the `Accept-Language`
/// header each makes of `de-DE,de` and `ko-KR,ko,en`.
#[derive(Clone, Copy)]
enum Engine {
    /// `headless_shell = false`: the full browser, which adds the q-weights itself.
    Chromium,
    /// The default when installed: its `--accept-lang` header is the list as given.
    HeadlessShell,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_account_has_its_own_user_agent_languages_and_time_zone() {
    identity_on(Engine::HeadlessShell).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_account_has_its_own_identity_on_the_full_chromium_too() {
    identity_on(Engine::Chromium).await;
}

async fn identity_on(engine: Engine) {
    let (shell, binary, headers) = match engine {
        Engine::Chromium => (
            false,
            "/chromium",
            ["de-DE,de;q=0.9", "ko-KR,ko;q=0.9,en;q=0.8"],
        ),
        Engine::HeadlessShell => (
            true,
            "/chromium-headless-shell",
            ["de-DE,de", "ko-KR,ko,en"],
        ),
    };
    let p = Project::new(0).await;
    p.write(
        "batch.toml",
        &format!(
            "workflow = \"workflow.toml\"\naccounts = \"accounts.toml\"\n\n[browser]\n\
             user_agent = \"{DEFAULT_UA}\"\naccept_language = \"de-DE,de\"\n\
             timezone = \"Asia/Seoul\"\nheadless_shell = {shell}\n"
        ),
    );
    p.write("workflow.toml", WORKFLOW);
    p.write(
        "accounts.toml",
        &format!(
            "[[accounts]]\nid = 1\nusername = \"user-1\"\npassword = \"pass-1\"\n\n\
             [[accounts]]\nid = 2\nusername = \"user-2\"\npassword = \"pass-2\"\n\
             user_agent = \"{OWN_UA}\"\naccept_language = \"ko-KR,ko,en\"\n\
             timezone = \"America/New_York\"\nwindow_size = \"900x700\"\n\
             browser_args = \"--force-device-scale-factor=2 --disable-notifications\"\n"
        ),
    );
    let run = p
        .run(&step1(
            "1,2",
            &["--quantity", "2", "--launch-interval", "0"],
        ))
        .await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);

    // The app's view: every login and add of a user came with that user's own
    // headers (1 login + 2 adds each).
    let counts = p.site.counts();
    let seen = |user: &str| {
        let u = &counts.users[user];
        (
            u.user_agents.clone().into_iter().collect::<Vec<_>>(),
            u.accept_languages.clone().into_iter().collect::<Vec<_>>(),
        )
    };
    assert_eq!(
        seen("user-1"),
        (
            vec![(DEFAULT_UA.to_owned(), 3)],
            vec![(headers[0].to_owned(), 3)]
        ),
        "{counts:?}"
    );
    assert_eq!(
        seen("user-2"),
        (
            vec![(OWN_UA.to_owned(), 3)],
            vec![(headers[1].to_owned(), 3)]
        ),
        "{counts:?}"
    );
    // The pages' view, recorded by `script … into`.
    let dir = p.run_dir();
    let report = report(&dir);
    let values = |id: u64| {
        let a = report["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == id)
            .unwrap_or_else(|| panic!("account {id} in {report}"));
        let v = &a["values"];
        let s = |k: &str| {
            v[k].as_str()
                .unwrap_or_else(|| panic!("{k} in {v}"))
                .to_owned()
        };
        (s("timezone"), s("languages"), s("user_agent"), s("window"))
    };
    // Account 2's own `--force-device-scale-factor` reached its browser only (the
    // headless shell ignores `--force-dark-mode`, so the check is one both builds obey).
    let scale = |id: u64| {
        report["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == id)
            .map(|a| a["values"]["scale"].clone())
    };
    assert_eq!((scale(1), scale(2)), (Some("1".into()), Some("2".into())));
    assert_eq!(
        values(1),
        (
            "Asia/Seoul".into(),
            "de-DE,de".into(),
            DEFAULT_UA.into(),
            "1280x800".into()
        )
    );
    assert_eq!(
        values(2),
        (
            "America/New_York".into(),
            "ko-KR,ko,en".into(),
            OWN_UA.into(),
            "900x700".into()
        )
    );

    // The journal's view: what each browser was given.
    let ev = events(&dir);
    let created = named(&ev, "browser_created");
    assert_eq!(created.len(), 2, "{created:?}");
    // Each ran on the build asked for (`cargo xtask test` installs both).
    for e in &created {
        let chromium = e["chromium"].as_str().unwrap_or_default();
        assert!(chromium.ends_with(binary), "{binary}: {e}");
    }
    let given = |id: u64| {
        let e = created
            .iter()
            .find(|e| e["account"] == id)
            .unwrap_or_else(|| panic!("browser_created of {id}"));
        [
            e["user_agent"].as_str(),
            e["accept_language"].as_str(),
            e["timezone"].as_str(),
            e["window_size"].as_str(),
        ]
        .map(|v| v.unwrap_or_default().to_owned())
    };
    assert_eq!(given(1), [DEFAULT_UA, "de-DE,de", "Asia/Seoul", "1280x800"]);
    assert_eq!(
        given(2),
        [OWN_UA, "ko-KR,ko,en", "America/New_York", "900x700"]
    );
    p.assert_nothing_left();
}

/// A remote source (`[browser] webdriver_url`, here a lone ChromeDriver) gets the same
/// identity through the session's capabilities, and the time zone through the
/// endpoint's CDP command, since our environment cannot reach a remote Chrome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_session_gets_the_identity_through_its_capabilities() {
    let p = Project::new(1).await;
    let driver = p.with_lone_driver(&format!(
        "user_agent = \"{OWN_UA}\"\naccept_language = \"fr-FR,fr\"\ntimezone = \"Asia/Tokyo\"\n"
    ));
    p.write("workflow.toml", WORKFLOW);
    let run = p
        .run(&step1("1", &["--quantity", "1", "--launch-interval", "0"]))
        .await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let u = &p.site.counts().users["user-1"];
    assert_eq!(
        u.user_agents.iter().collect::<Vec<_>>(),
        [(&OWN_UA.to_owned(), &2)],
        "{u:?}"
    );
    assert_eq!(
        u.accept_languages.iter().collect::<Vec<_>>(),
        [(&"fr-FR,fr;q=0.9".to_owned(), &2)],
        "{u:?}"
    );
    let dir = p.run_dir();
    let values = &report(&dir)["accounts"][0]["values"];
    assert_eq!(values["timezone"], "Asia/Tokyo", "{values}");
    assert_eq!(values["languages"], "fr-FR,fr", "{values}");
    let ev = events(&dir);
    let created = named(&ev, "browser_created");
    assert_eq!(created.len(), 1);
    assert_eq!(
        created[0]["pid"],
        serde_json::Value::Null,
        "a remote session"
    );
    assert_eq!(created[0]["timezone"], "Asia/Tokyo");
    drop(driver);
    p.assert_nothing_left();
}
