//! The bad-input table, as fast unit tests: a project in a temp directory (the
//! end-to-end harness's files), one file overwritten per case, then the same checks
//! the CLI makes before anything launches — load the project, resolve `--accounts`
//! and `--steps`, check the templates. Each case must fail naming the file (and
//! line) or argument and what was expected, and show no secret.
//!
//! tests/src/bad_input.rs keeps a few of these as CLI smoke tests (exit code 2,
//! nothing launched); the CLI-only arguments (`--quantity`, `--base-url`) are tested
//! there.

use std::path::Path;

use super::{
    Account, ConfigError, check_templates_with_env, load_project_with_env, parse_account_list,
    parse_launch_interval, parse_step_list,
};

const WORKFLOW: &str = r##"
base_url = "http://127.0.0.1:9"

[[steps]]
id = 1
name = "add-to-cart"
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
]
"##;

const ACCOUNTS: &str = "[[accounts]]\nid = 1\nusername = \"user-1\"\npassword = \"pass-1\"\n\n\
                        [[accounts]]\nid = 2\nusername = \"user-2\"\npassword = \"pass-2\"\n\n\
                        [[accounts]]\nid = 3\nusername = \"user-3\"\npassword = \"pass-3\"\n";

/// The part of the CLI's plan building that is config: what `single`/`run` check.
fn plan(dir: &Path, accounts: &str, steps: &str) -> Result<(), ConfigError> {
    let env = |name: &str| (name == "BAD_INPUT_SET").then(|| "env-secret-9".to_owned());
    let project = load_project_with_env(&dir.join("batch.toml"), &env)?;
    let steps = parse_step_list(steps, &project.workflow)?;
    let ids = parse_account_list(accounts, &project.accounts)?;
    let running: Vec<&Account> = ids
        .iter()
        .filter_map(|id| project.accounts.accounts.iter().find(|a| a.id == *id))
        .collect();
    check_templates_with_env(&project.workflow, &running, &steps, &env)
}

fn workflow_with(action: &str) -> String {
    format!("base_url = \"http://x\"\n[[steps]]\nid = 1\nactions = [\n  {action},\n]\n")
}

struct Case {
    name: &'static str,
    files: Vec<(&'static str, String)>,
    accounts: &'static str,
    steps: &'static str,
    expect: &'static [&'static str],
}

fn case(
    name: &'static str,
    files: &[(&'static str, &str)],
    expect: &'static [&'static str],
) -> Case {
    Case {
        name,
        files: files.iter().map(|(f, t)| (*f, (*t).to_owned())).collect(),
        accounts: "1",
        steps: "1",
        expect,
    }
}

fn args(
    name: &'static str,
    accounts: &'static str,
    steps: &'static str,
    expect: &'static [&'static str],
) -> Case {
    Case {
        name,
        files: Vec::new(),
        accounts,
        steps,
        expect,
    }
}

fn cases() -> Vec<Case> {
    let w = workflow_with;
    vec![
        args(
            "empty list item",
            "1,,x",
            "1",
            &["--accounts \"1,,x\": empty item at position 2"],
        ),
        args(
            "reversed range",
            "5-1",
            "1",
            &["--accounts \"5-1\": range \"5-1\" at position 1 is reversed"],
        ),
        args("duplicate id", "1,1", "1", &["account 1 is listed twice"]),
        args(
            "id not in file",
            "1,42",
            "1",
            &["account 42 is not in", "accounts.toml"],
        ),
        args(
            "unknown step",
            "1",
            "9",
            &["--steps \"9\": step 9 is not in", "workflow.toml"],
        ),
        case(
            "malformed toml",
            &[("workflow.toml", "base_url = \"x\"\n[[steps]\nid = 1\n")],
            &["workflow.toml:2: invalid TOML"],
        ),
        case(
            "unknown action",
            &[("workflow.toml", &w("{ clik = \"#a\" }"))],
            &["workflow.toml:5: unknown action \"clik\" (expected one of: goto,"],
        ),
        case(
            "unknown key",
            &[("workflow.toml", &w("{ click = \"#a\", colour = \"red\" }"))],
            &[
                "workflow.toml:5: click: unknown key \"colour\" (expected one of: timeout, optional)",
            ],
        ),
        case(
            "optional not a boolean",
            &[(
                "workflow.toml",
                &w("{ click = \"#a\", optional = \"yes\" }"),
            )],
            &["workflow.toml:5: click.optional: found a string (expected true or false)"],
        ),
        case(
            "optional on an action that does not wait for an element",
            &[("workflow.toml", &w("{ goto = \"/a\", optional = true }"))],
            &["workflow.toml:5: goto: unknown key \"optional\" (expected one of: timeout)"],
        ),
        case(
            "unknown modifier",
            &[("workflow.toml", &w("{ press = \"Hyper+a\" }"))],
            &[
                "workflow.toml:5: press: unknown key \"Hyper+a\" (expected one of: Enter,",
                "after Control+, Shift+, Alt+, Meta+ to hold them, like Control+a)",
            ],
        ),
        case(
            "unknown window",
            &[("workflow.toml", &w("{ window = \"sideways\" }"))],
            &[
                "workflow.toml:5: window: unknown window \"sideways\" (expected one of: new, first, close)",
            ],
        ),
        case(
            "unknown dialog answer",
            &[("workflow.toml", &w("{ dialog = \"ok\" }"))],
            &["workflow.toml:5: dialog: unknown answer \"ok\" (expected one of: accept, dismiss)"],
        ),
        case(
            "data variable in before",
            &[
                (
                    "workflow.toml",
                    "[[steps]]\nid = 1\ndata = \"d.csv\"\nbefore = [{ fill = \"#a\", text = \"{data.item}\" }]\nactions = [{ click = \"#b\" }]\n",
                ),
                ("d.csv", "item\n1\n"),
            ],
            &["workflow.toml:4: fill: {data.item} is only for a step's actions"],
        ),
        case(
            "data variable without data",
            &[(
                "workflow.toml",
                &w("{ fill = \"#a\", text = \"{data.item}\" }"),
            )],
            &[
                "workflow.toml:5: fill: {data.item} is used but step 1 has no data (expected data = \"FILE.csv\" in the step)",
            ],
        ),
        case(
            "data column missing",
            &[
                (
                    "workflow.toml",
                    "[[steps]]\nid = 1\ndata = \"d.csv\"\nactions = [{ fill = \"#a\", text = \"{data.nope}\" }]\n",
                ),
                ("d.csv", "account,item,note\n1,1,x\n"),
            ],
            &[
                "workflow.toml:4: fill: {data.nope}:",
                "d.csv has no column \"nope\" (expected one of: item, note)",
            ],
        ),
        case(
            "data file missing",
            &[(
                "workflow.toml",
                "[[steps]]\nid = 1\ndata = \"gone.csv\"\nactions = [{ click = \"#b\" }]\n",
            )],
            &["gone.csv: no such file (expected a CSV data file with a header row)"],
        ),
        case(
            "data row misaligned",
            &[
                (
                    "workflow.toml",
                    "[[steps]]\nid = 1\ndata = \"d.csv\"\nactions = [{ click = \"#b\" }]\n",
                ),
                ("d.csv", "item,card_token\n1,tok-a\n2\n"),
            ],
            &["d.csv:3: a row with 1 values, but the header has 2 columns"],
        ),
        case(
            "data secret in an exec argv",
            &[
                (
                    "workflow.toml",
                    "[[steps]]\nid = 1\ndata = \"d.csv\"\nactions = [{ exec = [\"tool\", \"{data.card_token}\"] }]\n",
                ),
                ("d.csv", "item,card_token\n1,tok-a\n"),
            ],
            &[
                "workflow.toml:4: exec: {data.card_token} is a secret in the argv",
                "BATCH_DATA_CARD_TOKEN",
            ],
        ),
        case(
            "select without its option",
            &[("workflow.toml", &w("{ select = \"#country\" }"))],
            &[
                "workflow.toml:5: select: missing key \"option\" (expected { select = ..., option = \"...\" })",
            ],
        ),
        case(
            "unknown template variable",
            &[("workflow.toml", &w("{ goto = \"{base_url}/{nope}\" }"))],
            &["workflow.toml:5: goto: unknown variable {nope}"],
        ),
        case(
            "unknown account field",
            &[(
                "workflow.toml",
                &w("{ goto = \"{base_url}/{account.shoe_size}\" }"),
            )],
            &["workflow.toml:5: goto: {account.shoe_size}: account 1 has no field \"shoe_size\""],
        ),
        case(
            "missing accounts file",
            &[("batch.toml", "accounts = \"nowhere.toml\"\n")],
            &["nowhere.toml: no such file (expected the accounts file"],
        ),
        case(
            "missing workflow file",
            &[("batch.toml", "workflow = \"nowhere.toml\"\n")],
            &["nowhere.toml: no such file (expected the workflow file"],
        ),
        case(
            "bad duration in workflow",
            &[("workflow.toml", &w("{ sleep = \"soon\" }"))],
            &["workflow.toml:5: sleep: \"soon\": not a duration"],
        ),
        case(
            "csv without id column",
            &[
                ("batch.toml", "accounts = \"a.csv\"\n"),
                ("a.csv", "name,password\nx,y\n"),
            ],
            &["a.csv: no \"id\" column in the header"],
        ),
        case(
            "env variable not set",
            &[(
                "accounts.toml",
                "[[accounts]]\nid = 1\nusername = \"u\"\npassword = { env = \"E2E_SURELY_UNSET_VAR\" }\n",
            )],
            &[
                "accounts.toml:4: account 1, password: environment variable E2E_SURELY_UNSET_VAR is not set",
            ],
        ),
        case(
            "duplicate account id",
            &[(
                "accounts.toml",
                "[[accounts]]\nid = 1\nusername = \"a\"\n[[accounts]]\nid = 1\nusername = \"b\"\n",
            )],
            &["accounts.toml:5: id: account id 1 is used twice, first at line 2"],
        ),
        case(
            "secret in exec argv",
            &[(
                "workflow.toml",
                &w("{ exec = [\"echo\", \"{account.password}\"] }"),
            )],
            &[
                "workflow.toml:5: exec: {account.password} is a secret in the argv",
                "BATCH_ACCOUNT_PASSWORD",
            ],
        ),
        case(
            "env secret in exec argv",
            &[(
                "workflow.toml",
                &w("{ exec = [\"echo\", \"{env.BAD_INPUT_SET}\"] }"),
            )],
            &["workflow.toml:5: exec: {env.BAD_INPUT_SET} is a secret in the argv"],
        ),
        case(
            "one-time code from a field the account lacks",
            &[(
                "workflow.toml",
                &w("{ fill = \"#code\", text = \"{totp.otp}\" }"),
            )],
            &["workflow.toml:5: fill: {totp.otp}: account 1 has no field \"otp\""],
        ),
        case(
            "one-time code from a value that is not a TOTP secret",
            &[
                (
                    "workflow.toml",
                    &w("{ fill = \"#code\", text = \"{totp.otp}\" }"),
                ),
                (
                    "accounts.toml",
                    "[[accounts]]\nid = 1\nusername = \"u\"\notp = \"otp-seed-9!\"\n",
                ),
            ],
            &[
                "workflow.toml:5: fill: {totp.otp}: the value of account 1 is not a TOTP secret: \
                 not base32",
                "expected a base32 TOTP secret like JBSWY3DPEHPK3PXP, or an otpauth://totp/ URI",
            ],
        ),
        case(
            "one-time code in exec argv",
            &[
                (
                    "workflow.toml",
                    &w("{ exec = [\"login\", \"{totp.otp}\"] }"),
                ),
                (
                    "accounts.toml",
                    "[[accounts]]\nid = 1\nusername = \"u\"\notp = \"JBSWY3DPEHPK3PXP\"\n",
                ),
            ],
            &[
                "workflow.toml:5: exec: {totp.otp} is a secret in the argv",
                "BATCH_ACCOUNT_OTP",
            ],
        ),
        case(
            "one-time code of the account id",
            &[(
                "workflow.toml",
                &w("{ fill = \"#code\", text = \"{totp.id}\" }"),
            )],
            &["workflow.toml:5: fill.text: {totp.id} names the account id (expected {totp.FIELD}"],
        ),
        case(
            "managed switch in browser args",
            &[(
                "batch.toml",
                "[browser]\nargs = [\n  \"--lang=en\",\n  \"--remote-debugging-port=9222\",\n]\n",
            )],
            &[
                "batch.toml:4: browser.args: \"--remote-debugging-port=9222\" overrides --remote-debugging-port",
            ],
        ),
        case(
            "profile switch in browser args",
            &[(
                "batch.toml",
                "[browser]\nargs = [\"--user-data-dir=/tmp/x\"]\n",
            )],
            &["batch.toml:2: browser.args: \"--user-data-dir=/tmp/x\" overrides --user-data-dir"],
        ),
        case(
            "privileged port range",
            &[("batch.toml", "[ports]\nrange = \"80-8080\"\n")],
            &["batch.toml:2: ports.range:", "below 1024"],
        ),
        case(
            "port range too small",
            &[("batch.toml", "\n[ports]\nrange = \"30000-30000\"\n")],
            &["batch.toml:3: ports.range:", "too small"],
        ),
        case(
            "unknown section",
            &[("batch.toml", "[brwoser]\nheaded = true\n")],
            &[
                "batch.toml:1: unknown key \"brwoser\" (expected one of: workflow, accounts, browser,",
            ],
        ),
        case(
            "unknown key in a section",
            &[("batch.toml", "[launch]\nlock = true\nintervall = \"2s\"\n")],
            &[
                "batch.toml:3: launch: unknown key \"intervall\" (expected one of: lock, interval, max_concurrent)",
            ],
        ),
        case(
            "wrong type in a section",
            &[("batch.toml", "[retry]\nretries = \"two\"\n")],
            &["batch.toml:2: retry.retries: found a string (expected a whole number, 0 or more)"],
        ),
        case(
            "unknown step key",
            &[(
                "workflow.toml",
                "[[steps]]\nid = 1\nactions = [{ click = \"#a\" }]\nnmae = \"x\"\n",
            )],
            &[
                "workflow.toml:4: step 1: unknown key \"nmae\" (expected one of: id, name, before, actions, after, challenge_selector, challenge_text, data)",
            ],
        ),
        case(
            "unknown accounts key",
            &[("accounts.toml", "[[acounts]]\nid = 1\n")],
            &["accounts.toml:1: unknown key \"acounts\" (expected only [[accounts]] tables)"],
        ),
        // The gaps this table closed.
        case(
            "negative account id",
            &[("accounts.toml", "[[accounts]]\nid = -1\nusername = \"u\"\n")],
            &["accounts.toml:2: id: -1 is out of range (expected a non-negative integer)"],
        ),
        case(
            "base_url missing where used",
            &[(
                "workflow.toml",
                "[[steps]]\nid = 1\nactions = [\n  { goto = \"{base_url}/x\" },\n]\n",
            )],
            &["workflow.toml:4: goto: {base_url} is used but no base URL is set"],
        ),
        case(
            "base_url not a URL where used",
            &[(
                "workflow.toml",
                &WORKFLOW.replace("http://127.0.0.1:9", "127.0.0.1:9"),
            )],
            &[
                "workflow.toml:8: goto: {base_url} is used but the base URL is not a URL (expected base_url = \"http://HOST:PORT\"",
            ],
        ),
        case(
            "base_url of another scheme",
            &[(
                "workflow.toml",
                &WORKFLOW.replace("http://127.0.0.1:9", "file:///etc"),
            )],
            &[
                "workflow.toml:8: goto: {base_url} is used but the base URL is not an http:// or https:// URL",
            ],
        ),
        case(
            "fields sharing one exec variable",
            &[(
                "accounts.toml",
                "[[accounts]]\nid = 1\nusername = \"u\"\nuser_name = \"w\"\nuser-name = \"v\"\n",
            )],
            &[
                "accounts.toml:5: account 1, user-name: fields \"user_name\" and \"user-name\"",
                "BATCH_ACCOUNT_USER_NAME",
            ],
        ),
        case(
            "csv columns sharing one exec variable",
            &[
                ("batch.toml", "accounts = \"a.csv\"\n"),
                ("a.csv", "id,Password,password\n1,pass-1,pass-1\n"),
            ],
            &["a.csv:1: fields \"Password\" and \"password\" both become BATCH_ACCOUNT_PASSWORD"],
        ),
        case(
            "a field named like the id variable",
            &[
                ("batch.toml", "accounts = \"a.csv\"\n"),
                ("a.csv", "id,ID\n1,x\n"),
            ],
            &["a.csv:1: field \"ID\" becomes BATCH_ACCOUNT_ID"],
        ),
        case(
            "NUL in a goto URL",
            &[("workflow.toml", &w("{ goto = \"{base_url}/a\\u0000b\" }"))],
            &["workflow.toml:5: goto: a control character (expected printable text"],
        ),
        case(
            "newline in an exec argv",
            &[("workflow.toml", &w("{ exec = [\"tool\", \"a\\nb\"] }"))],
            &["workflow.toml:5: exec: a control character"],
        ),
        case(
            "control character in a value reaching a URL",
            &[
                (
                    "accounts.toml",
                    "[[accounts]]\nid = 1\nusername = \"u\\u0007\"\npassword = \"pass-1\"\n",
                ),
                (
                    "workflow.toml",
                    &w("{ goto = \"{base_url}/u/{account.username}\" }"),
                ),
            ],
            &[
                "workflow.toml:5: goto: {account.username}: the value of account 1 has a control character",
            ],
        ),
        case(
            "control character in a value reaching an argv",
            &[
                (
                    "accounts.toml",
                    "[[accounts]]\nid = 1\nusername = \"u\\r\"\npassword = \"pass-1\"\n",
                ),
                (
                    "workflow.toml",
                    &w("{ exec = [\"tool\", \"{account.username}\"] }"),
                ),
            ],
            &[
                "workflow.toml:5: exec: {account.username}: the value of account 1 has a control character",
            ],
        ),
        case(
            "control character in a proxy",
            &[(
                "accounts.toml",
                "[[accounts]]\nid = 1\nusername = \"u\"\nproxy = \"http://127.0.0.1:3128\\u0000\"\n",
            )],
            &["accounts.toml: account 1, proxy: a control character in the proxy URL"],
        ),
        case(
            "unknown time zone in batch.toml",
            &[("batch.toml", "[browser]\ntimezone = \"Mars/Olympus\"\n")],
            &[
                "batch.toml:2: browser.timezone: \"Mars/Olympus\" is not a time zone this host knows",
            ],
        ),
        case(
            "q-weights in accept_language",
            &[(
                "batch.toml",
                "\n[browser]\naccept_language = \"de;q=0.9\"\n",
            )],
            &["batch.toml:3: browser.accept_language: \"de;q=0.9\" is not a language tag"],
        ),
        case(
            "empty user agent",
            &[("batch.toml", "[browser]\nuser_agent = \"\"\n")],
            &["batch.toml:2: browser.user_agent: an empty user agent"],
        ),
        case(
            "--user-agent beside user_agent",
            &[(
                "batch.toml",
                "[browser]\nargs = [\"--user-agent=X\"]\nuser_agent = \"Y\"\n",
            )],
            &[
                "batch.toml:3: browser.user_agent: \"--user-agent=X\" in the browser switches contradicts user_agent",
            ],
        ),
        case(
            "missing proxy_ca in batch.toml",
            &[("batch.toml", "[browser]\nproxy_ca = \"no-such-ca.pem\"\n")],
            &[
                "batch.toml:2: browser.proxy_ca: ",
                "no-such-ca.pem: cannot be read: No such file or directory (os error 2) (expected a PEM file of CA certificates)",
            ],
        ),
        case(
            "proxy_ca that is not PEM",
            &[
                ("batch.toml", "\n[browser]\nproxy_ca = \"ca.pem\"\n"),
                ("ca.pem", "just some text\n"),
            ],
            &[
                "batch.toml:3: browser.proxy_ca: ",
                "ca.pem: no PEM certificate in it (expected a PEM file with one or more -----BEGIN CERTIFICATE----- blocks)",
            ],
        ),
        case(
            "account's proxy_ca missing",
            &[(
                "accounts.toml",
                "[[accounts]]\nid = 1\nusername = \"u\"\nproxy = \"https://u:pw@127.0.0.1:3128\"\nproxy_ca = \"certs/none.pem\"\n",
            )],
            &[
                "accounts.toml:5: account 1, proxy_ca: ",
                "certs/none.pem: cannot be read",
            ],
        ),
        case(
            "proxy default with a variable that has no value then",
            &[(
                "batch.toml",
                "[browser]\nproxy = \"http://127.0.0.1:3128/{iteration}\"\n",
            )],
            &["batch.toml:2: browser.proxy: {iteration} has no value for a proxy"],
        ),
        case(
            "a proxy list with a bad second entry",
            &[(
                "accounts.toml",
                "[[accounts]]\nid = 1\nusername = \"u\"\nproxy = \"http://u:hunter2@127.0.0.1:1 ftp://127.0.0.1:2\"\n",
            )],
            &[
                "accounts.toml: account 1, proxy: the 2nd of 2 proxies: unsupported proxy scheme \"ftp\"",
            ],
        ),
        case(
            "socks5 and http proxies in one list",
            &[(
                "accounts.toml",
                "[[accounts]]\nid = 1\nusername = \"u\"\nproxy = \"http://127.0.0.1:1 socks5://127.0.0.1:2\"\n",
            )],
            &[
                "accounts.toml: account 1, proxy: the 2nd of 2 proxies: socks5 and http(s) proxies in one list",
            ],
        ),
        case(
            "none in a proxy list",
            &[(
                "accounts.toml",
                "[[accounts]]\nid = 1\nusername = \"u\"\nproxy = \"http://127.0.0.1:1 none\"\n",
            )],
            &["accounts.toml: account 1, proxy: the 2nd of 2 proxies: \"none\" in a list"],
        ),
        case(
            "empty proxy default",
            &[("batch.toml", "[browser]\nproxy = \" \"\n")],
            &["batch.toml:2: browser.proxy: an empty proxy (expected a proxy URL"],
        ),
        case(
            "proxy default naming a field an account lacks",
            &[(
                "batch.toml",
                "\n[browser]\nproxy = \"http://{account.gate_user}:x@127.0.0.1:3128\"\n",
            )],
            &[
                "batch.toml:3: browser.proxy: {account.gate_user}: account 1 has no field \"gate_user\"",
            ],
        ),
        case(
            "proxy default rendering a scheme no browser takes",
            &[(
                "batch.toml",
                "[browser]\nproxy = \"ftp://u:{env.BAD_INPUT_SET}@127.0.0.1:3128\"\n",
            )],
            &["batch.toml:2: browser.proxy: for account 1: unsupported proxy scheme \"ftp\""],
        ),
        case(
            "proxy default reading an unset variable",
            &[(
                "batch.toml",
                "[browser]\nproxy = \"http://u:{env.NOT_SET_Q}@h:1\"\n",
            )],
            &[
                "batch.toml:2: browser.proxy: {env.NOT_SET_Q}: environment variable NOT_SET_Q is not set",
            ],
        ),
        case(
            "proxy default rendering a control character",
            &[
                (
                    "batch.toml",
                    "[browser]\nproxy = \"http://{account.gate}@127.0.0.1:1\"\n",
                ),
                (
                    "accounts.toml",
                    "[[accounts]]\nid = 1\nusername = \"u\"\ngate = \"a\\u0001b\"\n",
                ),
            ],
            &["batch.toml:2: browser.proxy: for account 1: a control character in the proxy URL"],
        ),
        case(
            "bad webdriver_url",
            &[(
                "batch.toml",
                "[browser]\nwebdriver_url = \"ftp://grid:4444\"\n",
            )],
            &[
                "batch.toml:2: browser.webdriver_url: \"ftp://grid:4444\": not an http:// or https:// URL",
            ],
        ),
        case(
            "account's window size",
            &[(
                "accounts.toml",
                "[[accounts]]\nid = 1\nusername = \"u\"\n\nwindow_size = \"wide\"\n",
            )],
            &["accounts.toml:5: account 1, window_size: \"wide\" is not a window size"],
        ),
        case(
            "account's managed switch",
            &[(
                "accounts.toml",
                "[[accounts]]\nid = 1\nusername = \"u\"\nbrowser_args = \"--mute-audio --user-data-dir=/tmp/x\"\n",
            )],
            &[
                "accounts.toml:4: account 1, browser_args: \"--user-data-dir=/tmp/x\" overrides --user-data-dir, which batch-cli manages",
            ],
        ),
        case(
            "account's CSV time zone",
            &[
                ("batch.toml", "accounts = \"people.csv\"\n"),
                (
                    "people.csv",
                    "id,username,timezone\n1,u,Asia/Seoul\n2,v,Nowhere/Town\n",
                ),
            ],
            &[
                "people.csv:3: account 2, timezone: \"Nowhere/Town\" is not a time zone this host knows",
            ],
        ),
        case(
            "account's secret time zone",
            &[(
                "accounts.toml",
                "[[accounts]]\nid = 1\nusername = \"u\"\ntimezone = { env = \"BAD_INPUT_SET\" }\n",
            )],
            &["accounts.toml:4: account 1, timezone: a secret value (from { env = ... }"],
        ),
        case(
            "account's accept_language beside [browser] --lang",
            &[
                ("batch.toml", "[browser]\nargs = [\"--lang=fr\"]\n"),
                (
                    "accounts.toml",
                    "[[accounts]]\nid = 1\nusername = \"u\"\naccept_language = \"de\"\n",
                ),
            ],
            &[
                "accounts.toml: account 1, accept_language: \"--lang=fr\" in the browser switches contradicts accept_language",
            ],
        ),
        case(
            "NUL in browser args",
            &[("batch.toml", "[browser]\nargs = [\"--lang=en\\u0000\"]\n")],
            &["batch.toml:2: browser.args: a control character"],
        ),
    ]
}

#[test]
fn every_bad_input_is_refused_naming_the_culprit() {
    let mut failures = Vec::new();
    for case in cases() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(
            d.join("batch.toml"),
            "workflow = \"workflow.toml\"\naccounts = \"accounts.toml\"\n",
        )
        .unwrap();
        std::fs::write(d.join("workflow.toml"), WORKFLOW).unwrap();
        std::fs::write(d.join("accounts.toml"), ACCOUNTS).unwrap();
        for (name, text) in &case.files {
            std::fs::write(d.join(name), text).unwrap();
        }
        match plan(d, case.accounts, case.steps) {
            Ok(()) => failures.push(format!("{}: accepted", case.name)),
            Err(e) => {
                let shown = e.to_string();
                let mut problems: Vec<String> = case
                    .expect
                    .iter()
                    .filter(|want| !shown.contains(*want))
                    .map(|want| format!("lacks {want:?}"))
                    .collect();
                if ["pass-1", "pass-2", "env-secret-9", "otp-seed-9"]
                    .iter()
                    .any(|s| shown.contains(s))
                {
                    problems.push("shows a secret".into());
                }
                if !problems.is_empty() {
                    failures.push(format!("{}: {} — {shown}", case.name, problems.join(", ")));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_good_inputs_next_to_them_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("batch.toml"), "").unwrap();
    std::fs::write(
        d.join("workflow.toml"),
        WORKFLOW.replace("http://127.0.0.1:9", "https://u:pw@h:8443/app"),
    )
    .unwrap();
    // Ids from a database export start at 0; a newline is fine where text is typed.
    std::fs::write(
        d.join("accounts.toml"),
        "[[accounts]]\nid = 0\nusername = \"a\\nb\"\npassword = \"p\"\n\n[[accounts]]\nid = 1\nusername = \"u\"\npassword = \"q\"\n",
    )
    .unwrap();
    plan(d, "0-1", "all").unwrap();
    plan(d, "all", "1").unwrap();
    assert!(parse_launch_interval("fast").is_err());
}
