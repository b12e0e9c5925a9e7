//! Forms: `select` chooses an option of a `<select>` whose options a script adds after
//! the load, by its text or else its value, and `optional` actions skip what a page
//! shows only sometimes (a cookie banner) — checked by what the demo app received
//! with each save, and by the journal's `action_skipped` lines.

use serde_json::Value;

use crate::harness::{Project, WORKFLOW, events, named, report, step1};

/// The harness's workflow, its login as `before`, with `actions` (lines of
/// `  { … },\n`) as the step's actions: they start at line 15.
fn login_then(actions: &str) -> String {
    let start = WORKFLOW.find("actions = [").unwrap();
    format!("{}actions = [\n{actions}]\n", &WORKFLOW[..start])
}

/// Runs `workflow` once for account 1 without retries, in a fresh `runs/`: it must
/// fail (exit 1) and leave nothing running. Returns the first `iteration_failed`'s
/// error and the journal.
async fn fails_once(p: &Project, workflow: &str) -> (String, Vec<Value>) {
    let _ = std::fs::remove_dir_all(p.path("runs"));
    p.write("workflow.toml", workflow);
    let run = p
        .run(&step1("1", &["--quantity", "1", "--retries", "0"]))
        .await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    let journal = events(&p.run_dir());
    let failed = named(&journal, "iteration_failed");
    let error = failed[0]["error"].as_str().unwrap().to_owned();
    p.assert_nothing_left();
    (error, journal)
}

/// Login as usual; then per iteration: the settings page (with the banner where the
/// account's `banner` is 1), the banner accepted if it comes, the account's country
/// chosen, saved, and a wait for an element that never comes, which is skipped.
fn workflow(select: &str) -> String {
    login_then(&format!(
        "  {{ goto = \"{{base_url}}/settings?banner={{account.banner}}\" }},\n\
         \x20 {{ click = \"#accept\", optional = true, timeout = \"2s\" }},\n\
         \x20 {select},\n\
         \x20 {{ click = \"#save\" }},\n\
         \x20 {{ wait_text = \"#saved\", contains = \"saved\" }},\n\
         \x20 {{ wait_for = \"#never\", optional = true, timeout = \"300ms\" }},\n"
    ))
}

/// The `actions` lines of [`workflow`]: the banner's click, the select, the never-there wait.
const ACCEPT_LINE: u64 = 16;
const SELECT_LINE: u64 = 17;
const NEVER_LINE: u64 = 20;

fn accounts(rows: &[(u32, &str, u32)]) -> String {
    rows.iter()
        .map(|(id, country, banner)| {
            format!(
                "[[accounts]]\nid = {id}\nusername = \"user-{id}\"\npassword = \"pass-{id}\"\n\
                 country = \"{country}\"\nbanner = {banner}\n\n"
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_chooses_by_text_or_value_and_optional_actions_skip_what_is_not_there() {
    let p = Project::new(3).await;
    p.write(
        "workflow.toml",
        &workflow("{ select = \"#country\", option = \"{account.country}\" }"),
    );
    assert!(
        std::fs::read_to_string(p.path("workflow.toml"))
            .unwrap()
            .lines()
            .nth(SELECT_LINE as usize - 1)
            .unwrap()
            .contains("select ="),
        "the line constants follow the workflow"
    );
    // By text, by value, and by text with spaces around it.
    p.write(
        "accounts.toml",
        &accounts(&[(1, "Korea", 1), (2, "jp", 0), (3, "  Germany ", 1)]),
    );
    let run = p
        .run(&step1("1-3", &["--quantity", "2", "--concurrent"]))
        .await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);

    let counts = p.site.counts();
    let got = |user: &str| {
        let u = &counts.users[user];
        (u.countries.clone(), u.consents)
    };
    assert_eq!(got("user-1"), (vec!["kr".into(), "kr".into()], 2));
    assert_eq!(got("user-2"), (vec!["jp".into(), "jp".into()], 0));
    assert_eq!(got("user-3"), (vec!["de".into(), "de".into()], 2));

    // Account 2 had no banner: its click was skipped; everyone's `#never` was.
    let journal = events(&p.run_dir());
    let mut skipped: Vec<(u64, u64, u64, &str)> = named(&journal, "action_skipped")
        .iter()
        .map(|e| {
            let n = |k: &str| e[k].as_u64().unwrap();
            (
                n("account"),
                n("iteration"),
                n("line"),
                e["action"].as_str().unwrap(),
            )
        })
        .collect();
    skipped.sort();
    let mut expected = Vec::new();
    for account in 1..=3 {
        for iteration in 1..=2 {
            if account == 2 {
                expected.push((account, iteration, ACCEPT_LINE, "click"));
            }
            expected.push((account, iteration, NEVER_LINE, "wait_for"));
        }
    }
    expected.sort();
    assert_eq!(skipped, expected, "{journal:?}");
    assert!(
        named(&journal, "retry").is_empty(),
        "a skip is not a failure"
    );

    let r = report(&p.run_dir());
    assert_eq!(r["totals"]["iterations_ok"], 6);
    let skips: Vec<u64> = (r["accounts"].as_array().unwrap().iter())
        .map(|a| a["actions_skipped"].as_u64().unwrap())
        .collect();
    assert_eq!(skips, [2, 4, 2]);
    p.assert_nothing_left();
}

/// An option that never comes, a disabled one and one that is a secret each fail
/// their iteration after the timeout, naming the line and the option (the secret as
/// `***`), and nothing is saved; a `select` on an element that is not a `<select>`
/// fails at once even when optional — a mistake in the workflow is not skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_disabled_option_fails_naming_it_and_a_non_select_fails_even_if_optional() {
    let p = Project::new(3).await;
    p.write(
        "workflow.toml",
        &workflow("{ select = \"#country\", option = \"{account.country}\", timeout = \"1s\" }"),
    );
    p.write(
        "accounts.toml",
        &accounts(&[(1, "Narnia", 0), (2, "pass-2", 0), (3, "France", 0)]),
    );
    let run = p
        .run(&step1("1-3", &["--quantity", "1", "--retries", "0"]))
        .await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    let wf = p.path("workflow.toml");
    let journal = events(&p.run_dir());
    let errors: Vec<(u64, &str)> = named(&journal, "iteration_failed")
        .iter()
        .map(|e| (e["account"].as_u64().unwrap(), e["error"].as_str().unwrap()))
        .collect();
    let at = format!(
        "{}:{SELECT_LINE}: timed out after 1s waiting for option",
        wf.display()
    );
    assert_eq!(
        errors,
        [
            (1, format!("{at} \"Narnia\" in #country").as_str()),
            (2, format!("{at} \"***\" in #country").as_str()),
            (
                3,
                format!("{at} \"France\" in #country (last: the option is disabled)").as_str()
            ),
        ],
        "{journal:?}"
    );
    assert!(
        !format!("{}{}{journal:?}", run.stdout, run.stderr).contains("pass-2"),
        "the secret option shows nowhere"
    );
    let counts = p.site.counts();
    assert!(
        (1..=3).all(|a| counts.users[&format!("user-{a}")].countries.is_empty()),
        "{counts:?}"
    );
    p.assert_nothing_left();

    let (error, journal) = fails_once(
        &p,
        &workflow("{ select = \"#save\", option = \"Korea\", optional = true, timeout = \"5s\" }"),
    )
    .await;
    assert_eq!(
        error,
        format!(
            "{}:{SELECT_LINE}: select: #save is a <button>, not a <select>",
            wf.display()
        )
    );
    assert!(
        named(&journal, "action_skipped")
            .iter()
            .all(|e| e["line"] != SELECT_LINE),
        "{journal:?}"
    );
}

/// `wait_gone` waits out the page's "Loading…" (a script checks it is gone; one for
/// the save button, always there, is skipped when optional); `wait_url` waits for
/// the login's redirect; `check` and `uncheck`, each twice, leave
/// the boxes as asked — the hidden terms box through its label — where a toggling
/// click would have undone the first; a `wait_url` that never comes is skipped when
/// optional, and one for a URL a script sets later is waited for. Then `uncheck` on something that is not a checkbox fails at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_uncheck_leave_the_boxes_as_asked_and_wait_url_waits_for_the_redirect() {
    let p = Project::new(2).await;
    let login = WORKFLOW.replace(
        "  { wait_for = \"#welcome\" },\n",
        "  { wait_url = \"/home\", timeout = \"5s\" },\n",
    );
    let start = login.find("actions = [").unwrap();
    let with = |actions: &str| format!("{}actions = [\n{actions}]\n", &login[..start]);
    p.write(
        "workflow.toml",
        &with(
            "  { goto = \"{base_url}/settings\" },\n\
             \x20 { wait_gone = \"#loading\" },\n\
             \x20 { script = \"if (document.getElementById('loading').offsetParent !== null) {{ throw new Error('still loading'); }}\" },\n\
             \x20 { wait_gone = \"#save\", optional = true, timeout = \"200ms\" },\n\
             \x20 { check = \"#terms\" },\n\
             \x20 { check = \"#terms\" },\n\
             \x20 { uncheck = \"#newsletter\" },\n\
             \x20 { uncheck = \"#newsletter\" },\n\
             \x20 { select = \"#country\", option = \"Japan\" },\n\
             \x20 { click = \"#save\" },\n\
             \x20 { wait_text = \"#saved\", contains = \"saved\" },\n\
             \x20 { wait_url = \"/nowhere\", optional = true, timeout = \"300ms\" },\n\
             \x20 { script = \"setTimeout(() => history.pushState({{}}, '', '/settings/done'), 400)\" },\n\
             \x20 { wait_url = \"/settings/done\" },\n\
             \x20 { assert_url = \"/settings/done\" },\n",
        ),
    );
    let run = p
        .run(&step1("1-2", &["--quantity", "2", "--concurrent"]))
        .await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let counts = p.site.counts();
    for a in 1..=2 {
        let u = &counts.users[&format!("user-{a}")];
        assert_eq!(
            (u.logins, u.countries.len(), u.terms_accepted, u.newsletters),
            (1, 2, 2, 0),
            "user-{a}: {u:?}"
        );
    }
    let journal = events(&p.run_dir());
    let skipped: Vec<(u64, &str)> = named(&journal, "action_skipped")
        .iter()
        .map(|e| (e["line"].as_u64().unwrap(), e["action"].as_str().unwrap()))
        .collect();
    let mut expected = [(18, "wait_gone"), (26, "wait_url")].repeat(4);
    expected.sort();
    let mut skipped = skipped;
    skipped.sort();
    assert_eq!(skipped, expected, "{journal:?}");
    p.assert_nothing_left();

    let uncheck_a_select = with(
        "  { goto = \"{base_url}/settings\" },\n  { uncheck = \"#country\", optional = true },\n",
    );
    let (error, _) = fails_once(&p, &uncheck_a_select).await;
    assert_eq!(
        error,
        format!(
            "{}:16: uncheck: #country is a <select> (expected an <input type=\"checkbox\">)",
            p.path("workflow.toml").display()
        )
    );
}

/// `frame` acts inside the checkout's iframe — the card the server got came from it —
/// and `parent` comes back out; an iteration that ends inside the frame still leaves
/// `after` on the page (it looks for the page's own title). A `frame` on something
/// that is not an iframe fails at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_acts_inside_the_checkout_iframe_and_the_next_list_starts_on_the_page() {
    let p = Project::new(2).await;
    p.write(
        "accounts.toml",
        &(1..=2)
            .map(|i| {
                format!(
                    "[[accounts]]\nid = {i}\nusername = \"user-{i}\"\npassword = \"pass-{i}\"\n\
                     card = \"4242-{i}\"\n\n"
                )
            })
            .collect::<String>(),
    );
    let start = WORKFLOW.find("actions = [").unwrap();
    let with = |actions: &str| {
        format!(
            "{}actions = [\n{actions}]\nafter = [{{ wait_text = \"#pay-title\", contains = \"Pay\" }}]\n",
            &WORKFLOW[..start]
        )
    };
    p.write(
        "workflow.toml",
        &with(
            "  { goto = \"{base_url}/pay\" },\n\
             \x20 { frame = \"#card-frame\" },\n\
             \x20 { fill = \"#card-number\", text = \"{account.card}\" },\n\
             \x20 { click = \"#pay\" },\n\
             \x20 { wait_text = \"#paid\", contains = \"paid with {account.card}\" },\n\
             \x20 { frame = \"parent\" },\n\
             \x20 { wait_for = \"#pay-title\" },\n\
             \x20 { frame = \"#card-frame\" },\n\
             \x20 { wait_for = \"#paid\" },\n",
        ),
    );
    let run = p
        .run(&step1("1-2", &["--quantity", "2", "--concurrent"]))
        .await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let counts = p.site.counts();
    for a in 1..=2 {
        let card = format!("4242-{a}");
        assert_eq!(
            counts.users[&format!("user-{a}")].cards,
            [card.as_str(), card.as_str()]
        );
    }
    let journal = events(&p.run_dir());
    assert!(named(&journal, "after_failed").is_empty(), "{journal:?}");
    assert_eq!(named(&journal, "iteration_ok").len(), 4);
    p.assert_nothing_left();

    let frame_a_heading = with("  { goto = \"{base_url}/pay\" },\n  { frame = \"#pay-title\" },\n");
    let (error, _) = fails_once(&p, &frame_a_heading).await;
    assert_eq!(
        error,
        format!(
            "{}:16: frame: #pay-title is a <h1>, not an <iframe>",
            p.path("workflow.toml").display()
        )
    );
}

/// `window` follows a "connect" popup the way a user does: `new` into it, `first`
/// back (after it closed itself), `close` for one that stays; a popup left open at
/// the end of the iteration is closed, which a WebDriver client checks in `after`
/// (one window left); a `new` with no new window is skipped when optional.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_follows_popups_and_the_ones_left_open_are_closed() {
    let p = Project::new(2).await;
    let start = WORKFLOW.find("actions = [").unwrap();
    let one_window = "import json, os, sys, urllib.request as u; \
        url = os.environ['BATCH_WEBDRIVER_URL'].rstrip('/') + '/session/' + os.environ['BATCH_SESSION_ID'] + '/window/handles'; \
        h = json.load(u.urlopen(url))['value']; print(len(h)); sys.exit(0 if len(h) == 1 else 1)";
    p.write(
        "workflow.toml",
        &format!(
            "{}actions = [\n\
             \x20 {{ goto = \"{{base_url}}/connect\" }},\n\
             \x20 {{ click = \"#connect\" }},\n\
             \x20 {{ window = \"new\" }},\n\
             \x20 {{ click = \"#allow\" }},\n\
             \x20 {{ window = \"first\" }},\n\
             \x20 {{ wait_text = \"#connected\", contains = \"connected {{account.username}}\" }},\n\
             \x20 {{ click = \"#connect\" }},\n\
             \x20 {{ window = \"new\" }},\n\
             \x20 {{ uncheck = \"#close\" }},\n\
             \x20 {{ click = \"#allow\" }},\n\
             \x20 {{ wait_for = \"#authorized\" }},\n\
             \x20 {{ window = \"close\" }},\n\
             \x20 {{ click = \"#connect\" }},\n\
             \x20 {{ window = \"new\" }},\n\
             \x20 {{ wait_for = \"#allow\" }},\n\
             \x20 {{ window = \"new\", optional = true, timeout = \"300ms\" }},\n\
             ]\n\
             after = [{{ exec = [\"python3\", \"-c\", \"{one_window}\"] }}]\n",
            &WORKFLOW[..start]
        ),
    );
    let run = p
        .run(&step1("1-2", &["--quantity", "2", "--concurrent"]))
        .await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let counts = p.site.counts();
    for a in 1..=2 {
        assert_eq!(
            counts.users[&format!("user-{a}")].authorizations,
            4,
            "{counts:?}"
        );
    }
    let journal = events(&p.run_dir());
    assert!(named(&journal, "after_failed").is_empty(), "{journal:?}");
    let skipped: Vec<(u64, &str)> = named(&journal, "action_skipped")
        .iter()
        .map(|e| (e["line"].as_u64().unwrap(), e["action"].as_str().unwrap()))
        .collect();
    assert_eq!(skipped, [(30, "window"); 4], "{journal:?}");
    p.assert_nothing_left();
}

/// `hover` opens a menu that shows only under the pointer, and `dialog` answers the
/// page's `confirm()` (accepted: the server clears the cart; dismissed: it does
/// not), `prompt()` (the typed name reaches the server) and `alert()` (its message
/// recorded); a `dialog` with none open is skipped when optional; `press` holds
/// Control for Control+Enter (the page "sends" only then), and an `extract` of what
/// is not there is skipped when optional, recording nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hover_opens_the_menu_and_dialog_answers_confirm_prompt_and_alert() {
    let p = Project::new(2).await;
    p.write(
        "workflow.toml",
        &login_then(
            "  { goto = \"{base_url}/manage\" },\n\
             \x20 { hover = \"#more\" },\n\
             \x20 { click = \"#clear\" },\n\
             \x20 { dialog = \"accept\", into = \"asked\" },\n\
             \x20 { wait_text = \"#status\", contains = \"cleared\" },\n\
             \x20 { hover = \"#more\" },\n\
             \x20 { click = \"#clear\" },\n\
             \x20 { dialog = \"dismiss\" },\n\
             \x20 { wait_text = \"#status\", contains = \"kept\" },\n\
             \x20 { click = \"#rename\" },\n\
             \x20 { dialog = \"accept\", text = \"{account.username}-renamed\" },\n\
             \x20 { wait_text = \"#status\", contains = \"renamed\" },\n\
             \x20 { click = \"#notice\" },\n\
             \x20 { dialog = \"accept\", into = \"notice\" },\n\
             \x20 { wait_text = \"#status\", contains = \"noticed\" },\n\
             \x20 { dialog = \"accept\", optional = true, timeout = \"300ms\" },\n\
             \x20 { fill = \"#message\", text = \"hello {account.id}\" },\n\
             \x20 { press = \"Control+Enter\", selector = \"#message\" },\n\
             \x20 { wait_text = \"#status\", contains = \"sent hello {account.id}\" },\n\
             \x20 { extract = \"#promo\", into = \"promo\", optional = true, timeout = \"300ms\" },\n\
             ",
        ),
    );
    let run = p
        .run(&step1("1-2", &["--quantity", "2", "--concurrent"]))
        .await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let counts = p.site.counts();
    for a in 1..=2 {
        let u = &counts.users[&format!("user-{a}")];
        let name = format!("user-{a}-renamed");
        assert_eq!(
            (u.clears, u.names.clone()),
            (2, vec![name.clone(), name]),
            "{u:?}"
        );
    }
    let r = report(&p.run_dir());
    for a in 0..2 {
        let values = &r["accounts"][a]["values"];
        assert_eq!(values["asked"], "Clear the cart?", "{r}");
        assert_eq!(values["notice"], "Saved: code 4711", "{r}");
        assert_eq!(r["accounts"][a]["actions_skipped"], 4, "{r}");
        assert!(
            values.get("promo").is_none(),
            "a skipped extract records nothing: {r}"
        );
    }
    let journal = events(&p.run_dir());
    assert!(
        named(&journal, "action_skipped")
            .iter()
            .all(|e| (e["line"] == 30 && e["action"] == "dialog")
                || (e["line"] == 34 && e["action"] == "extract")),
        "{journal:?}"
    );
    p.assert_nothing_left();

    // Dialogs nobody answers: the next action's first command dismisses each (the
    // page sees Cancel); a waiting action goes on waiting, any other fails, naming it.
    let unanswered = login_then(
        "  { goto = \"{base_url}/manage\" },\n\
         \x20 { click = \"#rename\" },\n\
         \x20 { wait_text = \"#status\", contains = \"not renamed\", timeout = \"2s\" },\n\
         \x20 { click = \"#notice\" },\n\
         \x20 { script = \"return 1\" },\n",
    );
    let (error, _) = fails_once(&p, &unanswered).await;
    let at = format!(
        "{}:19: script: unexpected alert open",
        p.path("workflow.toml").display()
    );
    assert!(error.starts_with(&at), "{error}");
    assert_eq!(
        p.site.counts().users["user-1"].names.len(),
        2,
        "no third name"
    );
}
