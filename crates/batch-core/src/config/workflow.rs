//! Loading the workflow file (`base_url` and `[[steps]]` of actions) and checking its
//! templates against the accounts that will run.
//!
//! Main items: [`load_workflow`] reads and validates the file on its own (action
//! names, keys, types, durations, template syntax, step ids; the actions themselves
//! are defined in the `actions` module), recording each action's line;
//! [`check_templates`] then checks what depends on the run: that every
//! `{account.FIELD}` exists on every running account, every `{env.NAME}` is set, a
//! `{base_url}` in use is a URL, no control character reaches a URL or an argv, and
//! no secret reaches an `exec` argv. Nothing here executes an action.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::de::DeValue;
use toml::{Spanned, Value};

use super::actions::RawAction;
use super::doc::{Bad, Doc, List, Seg, positive_u32, value_at};
use super::error::read_text;
use super::secrets::is_secret_name;
use super::{Account, ActionKind, ConfigError, EnvLookup, Part, process_env};

/// The whole workflow file.
#[derive(Debug, Clone, PartialEq)]
pub struct Workflow {
    /// Where it came from.
    pub path: PathBuf,
    /// `base_url`, possibly overridden by `--base-url` later.
    pub base_url: String,
    /// Sorted by id; ids are unique.
    pub steps: Vec<Step>,
}

impl Workflow {
    /// Every template of every action of every step, in file order.
    pub fn templates(&self) -> impl Iterator<Item = &super::Template> {
        self.steps
            .iter()
            .flat_map(|s| s.before.iter().chain(&s.actions).chain(&s.after))
            .flat_map(|a| a.kind.templates())
    }

    /// The account fields some `{totp.FIELD}` reads a TOTP secret from.
    pub fn totp_fields(&self) -> impl Iterator<Item = &str> {
        self.templates()
            .flat_map(|t| &t.parts)
            .filter_map(|p| match p {
                Part::Totp(field) => Some(field.as_str()),
                _ => None,
            })
    }
}

/// One numbered step.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Its id.
    pub id: u32,
    /// Its name (default `step-<id>`).
    pub name: String,
    /// Once per account, whenever the account gets a browser for this step.
    pub before: Vec<Action>,
    /// `quantity` times per account.
    pub actions: Vec<Action>,
    /// Once per account, after the iterations.
    pub after: Vec<Action>,
    /// `challenge_selector`: this step's own, instead of `[health]`'s (None: the
    /// project's, if any).
    pub challenge_selector: Option<String>,
    /// `challenge_text`: likewise.
    pub challenge_text: Option<String>,
    /// `data`: the CSV file whose rows the iterations' `{data.FIELD}` read.
    pub data: Option<super::StepData>,
}

/// An action and the line of the workflow file it was written on.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    /// 1-based line in the workflow file.
    pub line: usize,
    /// What to do.
    pub kind: ActionKind,
}

/// The workflow file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkflow {
    base_url: Option<String>,
    steps: Option<Spanned<List<RawStep>>>,
}

/// One `[[steps]]` table as written; its checks that need the id come after.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "[[steps]] tables")]
struct RawStep {
    id: Option<Spanned<Value>>,
    name: Option<String>,
    before: Option<Spanned<List<RawAction>>>,
    actions: Option<Spanned<List<RawAction>>>,
    after: Option<Spanned<List<RawAction>>>,
    #[serde(default, deserialize_with = "super::health::challenge")]
    challenge_selector: Option<String>,
    #[serde(default, deserialize_with = "super::health::challenge")]
    challenge_text: Option<String>,
    data: Option<Spanned<String>>,
}

/// What a type error at `shape` expects: `[[steps]]`, a list of actions, an action, and
/// the plain strings serde reads itself (`base_url`, a step's `name`).
fn expect(shape: &str) -> Option<String> {
    match shape.strip_prefix("steps.#.").unwrap_or(shape) {
        "steps" => Some("[[steps]] tables".to_owned()),
        "base_url" => Some("a URL string".to_owned()),
        "name" => Some("a string".to_owned()),
        "data" => Some("a CSV file's path, relative to the workflow file".to_owned()),
        "before" | "actions" | "after" => Some(super::actions::LIST_EXPECTED.to_owned()),
        "before.#" | "actions.#" | "after.#" => Some(super::actions::expected()),
        _ => None,
    }
}

/// Names the field of an error's path: `step 3, actions`, `step 3`, `id`.
fn context(root: &DeValue<'_>, path: &[Seg]) -> String {
    // `step ID` for the step at `path[..2]` (`steps`, its index), or `unknown` if its id
    // is not an integer.
    let step = |unknown: &str| {
        let at = [path[0].clone(), path[1].clone(), Seg::Key("id".into())];
        let id = match value_at(root, &at) {
            Some(DeValue::Integer(n)) => i128::from_str_radix(n.as_str(), n.radix()).ok(),
            _ => None,
        };
        id.map_or(unknown.to_owned(), |id| format!("step {id}"))
    };
    match path {
        [] => String::new(),
        [Seg::Key(k)] => k.clone(),
        [_, Seg::Index(_)] => step("steps"),
        [_, Seg::Index(_), Seg::Key(list)] if list != "id" && list != "name" => {
            format!("{}, {list}", step("step ?"))
        }
        [_, _, Seg::Key(k)] => k.clone(),
        [_, _, Seg::Index(i)] => i.to_string(),
        _ => String::new(),
    }
}

/// `fn(path) -> Workflow`: reads and validates the workflow file; steps sorted by id.
pub fn load_workflow(path: &Path) -> Result<Workflow, ConfigError> {
    let text = read_text(path, "the workflow file (base_url and [[steps]])")?;
    parse_workflow(path, &text)
}

pub(crate) fn parse_workflow(path: &Path, text: &str) -> Result<Workflow, ConfigError> {
    let doc = Doc::new(path, text);
    let raw: RawWorkflow = doc.parse(&context, expect)?;
    let no_steps = "no steps (expected [[steps]] tables, each with an id and actions)";
    let Some(list) = raw.steps else {
        return Err(ConfigError::invalid(path, None, "", no_steps));
    };
    if list.get_ref().0.is_empty() {
        return Err(doc.err(Bad::new(list.span(), "steps", no_steps)));
    }
    let mut seen: HashMap<u32, usize> = HashMap::new();
    let mut steps = Vec::with_capacity(list.get_ref().0.len());
    for item in &list.get_ref().0 {
        let mut step = step(&doc, item).map_err(|b| doc.err(b))?;
        // Its own file's errors name that file and its line.
        if let Some(file) = &item.get_ref().data {
            let dir = path.parent().unwrap_or(Path::new("."));
            step.data = Some(super::load_data(&dir.join(file.get_ref()))?);
        }
        let line = doc.line(item.span().start);
        if let Some(first) = seen.insert(step.id, line) {
            let message = format!(
                "step id {} is used twice, first at line {first} (expected unique step ids)",
                step.id
            );
            return Err(doc.err(Bad::new(item.span(), "id", message)));
        }
        steps.push(step);
    }
    steps.sort_by_key(|s| s.id);
    Ok(Workflow {
        path: path.to_path_buf(),
        base_url: raw.base_url.unwrap_or_default(),
        steps,
    })
}

fn step(doc: &Doc<'_>, item: &Spanned<RawStep>) -> Result<Step, Bad> {
    let raw = item.get_ref();
    let Some(id_value) = &raw.id else {
        let message = "step without an id (expected id = a positive integer)";
        return Err(Bad::new(item.span(), "", message));
    };
    let id = positive_u32(id_value.get_ref()).map_err(|m| Bad::new(id_value.span(), "id", m))?;
    let actions = |list: &Option<Spanned<List<RawAction>>>| -> Result<Vec<Action>, Bad> {
        let items = list.iter().flat_map(|l| &l.get_ref().0);
        let action = |raw: &Spanned<RawAction>| {
            let kind = ActionKind::try_from(raw)?;
            let line = doc.line(raw.span().start);
            Ok(Action { line, kind })
        };
        items.map(action).collect()
    };
    let before = actions(&raw.before)?;
    let main = actions(&raw.actions)?;
    if let Some(list) = raw.actions.as_ref().filter(|_| main.is_empty()) {
        let message = "no actions (expected at least one action; use before/after for one-off \
                       work)";
        return Err(Bad::new(
            list.span(),
            format!("step {id}, actions"),
            message,
        ));
    }
    let after = actions(&raw.after)?;
    if raw.actions.is_none() {
        let message = "no actions (expected actions = [ ... ] with at least one action)";
        return Err(Bad::new(item.span(), format!("step {id}"), message));
    }
    let name = raw.name.clone().unwrap_or_else(|| format!("step-{id}"));
    if let Some(file) = raw.data.as_ref().filter(|f| f.get_ref().trim().is_empty()) {
        let message = "an empty path (expected a CSV file's path, relative to the workflow file)";
        return Err(Bad::new(file.span(), format!("step {id}, data"), message));
    }
    Ok(Step {
        id,
        name,
        before,
        actions: main,
        after,
        challenge_selector: raw.challenge_selector.clone(),
        challenge_text: raw.challenge_text.clone(),
        data: None,
    })
}

/// `fn(workflow, running accounts, running steps) -> ()`: checks, before anything
/// launches, that the templates of the steps that will run can be rendered for
/// every account that will run, and that no secret reaches an `exec` argv.
///
/// `{env.NAME}` is read from the process environment; see [`check_templates_with_env`].
pub fn check_templates(
    workflow: &Workflow,
    accounts: &[&Account],
    steps: &[u32],
) -> Result<(), ConfigError> {
    check_templates_with_env(workflow, accounts, steps, &process_env)
}

/// [`check_templates`], reading `{env.NAME}` through `env`.
pub fn check_templates_with_env(
    workflow: &Workflow,
    accounts: &[&Account],
    steps: &[u32],
    env: EnvLookup<'_>,
) -> Result<(), ConfigError> {
    let path = workflow.path.as_path();
    for &id in steps {
        let Some(step) = workflow.steps.iter().find(|s| s.id == id) else {
            return Err(ConfigError::invalid(
                path,
                None,
                "",
                format!("no step {id} (expected one of the step ids in the workflow)"),
            ));
        };
        let lists = [
            (&step.before, false),
            (&step.actions, true),
            (&step.after, false),
        ];
        for (action, in_actions) in lists.iter().flat_map(|(l, i)| l.iter().map(|a| (a, *i))) {
            let templates = action.kind.templates().into_iter();
            let mut parts = templates.flat_map(|t| t.variables());
            if let Some(problem) = parts.find_map(|part| match part {
                Part::Data(column) => data_problem(part, column, &action.kind, step, in_actions),
                _ => problem(part, &action.kind, workflow, accounts, env),
            }) {
                let field = action.kind.name();
                return Err(ConfigError::invalid(
                    path,
                    Some(action.line),
                    field,
                    problem,
                ));
            }
        }
    }
    Ok(())
}

/// What keeps `{data.COLUMN}` (`part`) in an action of `kind` of `step` from being
/// rendered, if anything: there is no row outside `actions`, nor without a data file,
/// nor a column the file lacks. Whether every running account has a row for every
/// iteration is the plan's to check: it knows `--quantity`.
fn data_problem(
    part: &Part,
    column: &str,
    kind: &ActionKind,
    step: &Step,
    in_actions: bool,
) -> Option<String> {
    if !in_actions {
        return Some(format!(
            "{part} is only for a step's actions (expected it outside before and after, which \
             run once per account, with no row)"
        ));
    }
    let Some(data) = &step.data else {
        return Some(format!(
            "{part} is used but step {} has no data (expected data = \"FILE.csv\" in the step)",
            step.id
        ));
    };
    if !data.columns.iter().any(|c| c == column) || column == super::ACCOUNT_COLUMN {
        return Some(format!(
            "{part}: {} has no column {column:?} (expected one of: {})",
            data.path.display(),
            (data.columns.iter())
                .filter(|c| *c != super::ACCOUNT_COLUMN)
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let is_exec = matches!(kind, ActionKind::Exec { .. });
    if is_exec && is_secret_name(column) {
        let var = super::data_env_name(column);
        return Some(format!(
            "{part} is a secret in the argv, and secrets reach exec programs only through the \
             environment (expected the program to read {var})"
        ));
    }
    None
}

/// What keeps `part` of an action of `kind` from being rendered for every running
/// account, if anything.
fn problem(
    part: &Part,
    kind: &ActionKind,
    workflow: &Workflow,
    accounts: &[&Account],
    env: EnvLookup<'_>,
) -> Option<String> {
    let is_exec = matches!(kind, ActionKind::Exec { .. });
    // What reaches a URL or an argv may not hold a control character: a NUL cannot be
    // passed to a program, and a URL parser silently drops some.
    let reaches_url_or_argv = is_exec || matches!(kind, ActionKind::Goto { .. });
    let secret_in_argv = "is a secret in the argv, and secrets reach exec programs only through \
                          the environment (expected the program to read";
    match part {
        Part::BaseUrl if workflow.base_url.is_empty() => Some(format!(
            "{part} is used but no base URL is set (expected base_url in the workflow file, or \
             --base-url)"
        )),
        Part::BaseUrl => check_base_url(&workflow.base_url).err().map(|why| {
            format!(
                "{part} is used but the base URL {why} (expected base_url = \"http://HOST:PORT\" \
                 in the workflow file, or --base-url)"
            )
        }),
        Part::Account(field) | Part::Totp(field) if field != "id" => {
            if let Some(a) = accounts.iter().find(|a| !a.fields.contains_key(field)) {
                return Some(format!(
                    "{part}: account {} has no field {field:?} (expected every account that runs \
                     to have it)",
                    a.id
                ));
            }
            // The variable's real name: `api-key` is read as BATCH_ACCOUNT_API_KEY.
            let var = super::exec_env_name(field);
            if let Part::Totp(_) = part {
                if is_exec {
                    return Some(format!("{part} {secret_in_argv} {var} and make the code)"));
                }
                return accounts.iter().find_map(|a| {
                    let why = crate::totp::parse(&a.fields[field].value).err()?;
                    let why = crate::totp::not_a_secret(&why);
                    Some(format!("{part}: the value of account {} {why}", a.id))
                });
            }
            let control = |a: &&&Account| a.fields[field].value.contains(char::is_control);
            if reaches_url_or_argv && let Some(a) = accounts.iter().find(control) {
                return Some(format!(
                    "{part}: the value of account {} has a control character (expected printable \
                     text in a URL or an argv)",
                    a.id
                ));
            }
            let secret = is_secret_name(field) || accounts.iter().any(|a| a.fields[field].secret);
            (is_exec && secret).then(|| format!("{part} {secret_in_argv} {var})"))
        }
        Part::Env(name) if is_exec => Some(format!(
            "{part} {secret_in_argv} {name} from the environment it inherits)"
        )),
        Part::Env(name) => match env(name) {
            Some(v) if reaches_url_or_argv && v.contains(char::is_control) => Some(format!(
                "{part}: environment variable {name} has a control character (expected printable \
                 text in a URL)"
            )),
            Some(_) => None,
            None => Some(format!(
                "{part}: environment variable {name} is not set (expected it set before the run)"
            )),
        },
        _ => None,
    }
}

/// Why `base_url` cannot start a URL, if it cannot: it must be an `http://` or
/// `https://` URL with a host. Never quotes it: it may hold credentials.
fn check_base_url(base_url: &str) -> Result<(), &'static str> {
    if base_url.is_empty() {
        return Err("is not set");
    }
    if base_url.contains(char::is_control) {
        return Err("has a control character");
    }
    match url::Url::parse(base_url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        Ok(_) => Err("is not an http:// or https:// URL"),
        Err(_) => Err("is not a URL"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;

    use crate::config::{ACTIONS, FieldValue, Template};

    /// Every key of the workflow file and of a step is a row of docs/workflows.md's
    /// key tables, read from the serde definitions themselves.
    #[test]
    fn docs_list_every_workflow_key() {
        use super::super::introspect::fields_of;
        let path = format!("{}/../../docs/workflows.md", env!("CARGO_MANIFEST_DIR"));
        let docs = std::fs::read_to_string(&path).unwrap();
        let keys = [fields_of::<RawWorkflow>(), fields_of::<RawStep>()].concat();
        assert!(keys.contains(&"after"), "{keys:?}");
        for key in keys {
            assert!(
                docs.contains(&format!("\n| `{key}` |")),
                "docs/workflows.md has no row for the workflow key `{key}`"
            );
        }
    }

    fn t(s: &str) -> Template {
        Template::parse(s).unwrap()
    }

    fn load(text: &str) -> (tempfile::TempDir, Result<Workflow, ConfigError>) {
        load_with(text, &[])
    }

    /// [`load`], with `files` (name, text) beside the workflow file.
    fn load_with(
        text: &str,
        files: &[(&str, &str)],
    ) -> (tempfile::TempDir, Result<Workflow, ConfigError>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("workflow.toml");
        std::fs::write(&path, text).unwrap();
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        let workflow = load_workflow(&path);
        (dir, workflow)
    }

    /// Every example in docs/workflows.md parses: a whole workflow as it is, each line
    /// of an action example as an action of a step.
    #[test]
    fn docs_examples_parse() {
        let path = format!("{}/../../docs/workflows.md", env!("CARGO_MANIFEST_DIR"));
        let docs = std::fs::read_to_string(&path).unwrap();
        let blocks: Vec<&str> = docs
            .split("```toml\n")
            .skip(1)
            .map(|b| &b[..b.find("```").expect("a closed block")])
            .collect();
        assert!(blocks.len() > 12, "{} examples", blocks.len());
        let mut actions = 0;
        for block in blocks {
            let text = if block.contains("[[steps]]") {
                block.to_owned()
            } else {
                let lines: Vec<&str> = block.lines().filter(|l| !l.trim().is_empty()).collect();
                actions += lines.len();
                format!("[[steps]]\nid = 1\nactions = [\n{}\n]\n", lines.join(",\n"))
            };
            // The data file the data example names, with the columns it reads.
            let (_dir, got) = load_with(&text, &[("orders.csv", "item,note\n7,x\n")]);
            got.unwrap_or_else(|e| panic!("docs/workflows.md example:\n{text}\n{e}"));
        }
        assert!(actions >= ACTIONS.len(), "{actions} action examples");
    }

    /// Loads `body` after a fixed header and compares step 1's actions (with lines).
    fn check_actions(body: &str, expected: &[(usize, ActionKind)]) {
        let text = format!("base_url = \"http://h\"\n[[steps]]\nid = 1\n{body}");
        let (_dir, got) = load(&text);
        let got = got.unwrap_or_else(|e| panic!("{e}\nfile:\n{text}"));
        let got: Vec<(usize, ActionKind)> = got.steps[0]
            .before
            .iter()
            .chain(&got.steps[0].actions)
            .map(|a| (a.line, a.kind.clone()))
            .collect();
        assert_eq!(got, expected, "file:\n{text}");
    }

    /// Loads `text` and expects an error at `line` whose message contains `message`.
    fn check_error(text: &str, line: Option<usize>, message: &str) {
        let (_dir, got) = load(text);
        let e = got.expect_err(text);
        let shown = e.to_string();
        assert!(shown.contains("workflow.toml"), "{shown}");
        assert!(shown.contains(message), "{shown:?}\nlacks {message:?}");
        assert_eq!(e.line(), line, "{shown}");
    }

    #[test]
    fn every_action() {
        let secs = |s| Some(Duration::from_secs(s));
        check_actions(
            r##"before = [
  { goto = "{base_url}/login" },
  { goto = "/slow", timeout = "1m" },
  { click = "#submit" },
  { click = "xpath://a", timeout = "3s" },
  { fill = "#u", text = "{account.username}" },
  { fill = "#p", text = "x", timeout = "2s" },
  { press = "Enter" },
  { press = "a", selector = "#q", timeout = "1s" },
]
actions = [
  { wait_for = "#welcome" },
  { wait_for = "#w", timeout = "5s" },
  { wait_text = "#done", contains = "added {iteration}" },
  { wait_text = "#d", contains = "x", timeout = "4s" },
  { assert_url = "/cart" },
  { extract = "#total" },
  { extract = "a", into = "link", attr = "href" },
  { script = "return 1 + {iteration}" },
  { script = "return {{a: 1}}", into = "obj" },
  { screenshot = "cart-{iteration}" },
  { sleep = "500ms" },
  { exec = ["python3", "drive.py", "{account.id}"] },
  { exec = ["node", "x.js"], timeout = "30s" },
  { wait_download = "export-*.csv" },
  { wait_download = "{account.username}-[0-9]?.pdf", into = "pdf", timeout = "1m" },
  { upload = "#doc", file = "files/{account.id}.pdf" },
  { upload = "input[name=doc]", file = ["a.txt", "/srv/b-{iteration}.txt"], timeout = "2s" },
  { select = "#country", option = "{account.country}" },
  { select = "#c", option = "Korea", timeout = "2s", optional = true },
  { click = "#accept", optional = true, timeout = "1s" },
  { wait_for = "#banner", optional = false },
  { check = "#terms" },
  { uncheck = "#news", timeout = "1s", optional = true },
  { wait_url = "/home/{account.id}", timeout = "5s" },
  { frame = "#card" },
  { frame = "top", timeout = "1s" },
  { window = "new", timeout = "3s", optional = true },
  { window = "close" },
  { hover = "#menu" },
  { dialog = "dismiss" },
  { dialog = "accept", text = "{account.username}", into = "asked", timeout = "2s", optional = true },
  { wait_gone = "#spinner", timeout = "30s" },
]
"##,
            &[
                (
                    5,
                    ActionKind::Goto {
                        url: t("{base_url}/login"),
                        timeout: None,
                    },
                ),
                (
                    6,
                    ActionKind::Goto {
                        url: t("/slow"),
                        timeout: secs(60),
                    },
                ),
                (
                    7,
                    ActionKind::Click {
                        selector: t("#submit"),
                        timeout: None,
                        optional: false,
                    },
                ),
                (
                    8,
                    ActionKind::Click {
                        selector: t("xpath://a"),
                        timeout: secs(3),
                        optional: false,
                    },
                ),
                (
                    9,
                    ActionKind::Fill {
                        selector: t("#u"),
                        text: t("{account.username}"),
                        timeout: None,
                        optional: false,
                    },
                ),
                (
                    10,
                    ActionKind::Fill {
                        selector: t("#p"),
                        text: t("x"),
                        timeout: secs(2),
                        optional: false,
                    },
                ),
                (
                    11,
                    ActionKind::Press {
                        key: "Enter".into(),
                        selector: None,
                        timeout: None,
                        optional: false,
                    },
                ),
                (
                    12,
                    ActionKind::Press {
                        key: "a".into(),
                        selector: Some(t("#q")),
                        timeout: secs(1),
                        optional: false,
                    },
                ),
                (
                    15,
                    ActionKind::WaitFor {
                        selector: t("#welcome"),
                        timeout: None,
                        optional: false,
                    },
                ),
                (
                    16,
                    ActionKind::WaitFor {
                        selector: t("#w"),
                        timeout: secs(5),
                        optional: false,
                    },
                ),
                (
                    17,
                    ActionKind::WaitText {
                        selector: t("#done"),
                        contains: t("added {iteration}"),
                        timeout: None,
                        optional: false,
                    },
                ),
                (
                    18,
                    ActionKind::WaitText {
                        selector: t("#d"),
                        contains: t("x"),
                        timeout: secs(4),
                        optional: false,
                    },
                ),
                (19, ActionKind::AssertUrl { substr: t("/cart") }),
                (
                    20,
                    ActionKind::Extract {
                        selector: t("#total"),
                        into: None,
                        attr: None,
                        timeout: None,
                        optional: false,
                    },
                ),
                (
                    21,
                    ActionKind::Extract {
                        selector: t("a"),
                        into: Some("link".into()),
                        attr: Some("href".into()),
                        timeout: None,
                        optional: false,
                    },
                ),
                (
                    22,
                    ActionKind::Script {
                        js: t("return 1 + {iteration}"),
                        into: None,
                    },
                ),
                (
                    23,
                    ActionKind::Script {
                        js: t("return {{a: 1}}"),
                        into: Some("obj".into()),
                    },
                ),
                (
                    24,
                    ActionKind::Screenshot {
                        name: t("cart-{iteration}"),
                    },
                ),
                (
                    25,
                    ActionKind::Sleep {
                        duration: Duration::from_millis(500),
                    },
                ),
                (
                    26,
                    ActionKind::Exec {
                        argv: vec![t("python3"), t("drive.py"), t("{account.id}")],
                        timeout: None,
                    },
                ),
                (
                    27,
                    ActionKind::Exec {
                        argv: vec![t("node"), t("x.js")],
                        timeout: secs(30),
                    },
                ),
                (
                    28,
                    ActionKind::WaitDownload {
                        pattern: t("export-*.csv"),
                        into: None,
                        timeout: None,
                        optional: false,
                    },
                ),
                (
                    29,
                    ActionKind::WaitDownload {
                        pattern: t("{account.username}-[0-9]?.pdf"),
                        into: Some("pdf".into()),
                        timeout: secs(60),
                        optional: false,
                    },
                ),
                (
                    30,
                    ActionKind::Upload {
                        selector: t("#doc"),
                        file: vec![t("files/{account.id}.pdf")],
                        timeout: None,
                        optional: false,
                    },
                ),
                (
                    31,
                    ActionKind::Upload {
                        selector: t("input[name=doc]"),
                        file: vec![t("a.txt"), t("/srv/b-{iteration}.txt")],
                        timeout: secs(2),
                        optional: false,
                    },
                ),
                (
                    32,
                    ActionKind::Select {
                        selector: t("#country"),
                        option: t("{account.country}"),
                        timeout: None,
                        optional: false,
                    },
                ),
                (
                    33,
                    ActionKind::Select {
                        selector: t("#c"),
                        option: t("Korea"),
                        timeout: secs(2),
                        optional: true,
                    },
                ),
                (
                    34,
                    ActionKind::Click {
                        selector: t("#accept"),
                        timeout: secs(1),
                        optional: true,
                    },
                ),
                (
                    35,
                    ActionKind::WaitFor {
                        selector: t("#banner"),
                        timeout: None,
                        optional: false,
                    },
                ),
                (
                    36,
                    ActionKind::Check {
                        selector: t("#terms"),
                        timeout: None,
                        optional: false,
                    },
                ),
                (
                    37,
                    ActionKind::Uncheck {
                        selector: t("#news"),
                        timeout: secs(1),
                        optional: true,
                    },
                ),
                (
                    38,
                    ActionKind::WaitUrl {
                        substr: t("/home/{account.id}"),
                        timeout: secs(5),
                        optional: false,
                    },
                ),
                (
                    39,
                    ActionKind::Frame {
                        selector: t("#card"),
                        timeout: None,
                    },
                ),
                (
                    40,
                    ActionKind::Frame {
                        selector: t("top"),
                        timeout: secs(1),
                    },
                ),
                (
                    41,
                    ActionKind::Window {
                        which: "new".into(),
                        timeout: secs(3),
                        optional: true,
                    },
                ),
                (
                    42,
                    ActionKind::Window {
                        which: "close".into(),
                        timeout: None,
                        optional: false,
                    },
                ),
                (
                    43,
                    ActionKind::Hover {
                        selector: t("#menu"),
                        timeout: None,
                        optional: false,
                    },
                ),
                (
                    44,
                    ActionKind::Dialog {
                        answer: "dismiss".into(),
                        text: None,
                        into: None,
                        timeout: None,
                        optional: false,
                    },
                ),
                (
                    45,
                    ActionKind::Dialog {
                        answer: "accept".into(),
                        text: Some(t("{account.username}")),
                        into: Some("asked".into()),
                        timeout: secs(2),
                        optional: true,
                    },
                ),
                (
                    46,
                    ActionKind::WaitGone {
                        selector: t("#spinner"),
                        timeout: secs(30),
                        optional: false,
                    },
                ),
            ],
        );
    }

    #[test]
    fn whole_file() {
        let (_dir, got) = load(
            r##"
base_url = "http://127.0.0.1:8080"

[[steps]]
id = 2
actions = [{ click = "#b" }]

[[steps]]
id = 1
name = "add-to-cart"
before = [{ goto = "{base_url}/login" }]
actions = [{ click = "#add" }]
after = []
"##,
        );
        let w = got.unwrap();
        assert_eq!(w.base_url, "http://127.0.0.1:8080");
        let summary: Vec<(u32, &str, usize, usize, usize)> = w
            .steps
            .iter()
            .map(|s| {
                (
                    s.id,
                    s.name.as_str(),
                    s.before.len(),
                    s.actions.len(),
                    s.after.len(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [(1, "add-to-cart", 1, 1, 0), (2, "step-2", 0, 1, 0)]
        );
        assert_eq!(w.steps[0].before[0].line, 11);
    }

    #[test]
    fn a_step_names_its_own_challenge() {
        let (_dir, got) = load(
            "[[steps]]\nid = 1\nactions = [{ click = \"#a\" }]\n\
             challenge_selector = \"#captcha\"\n\
             [[steps]]\nid = 2\nactions = [{ click = \"#a\" }]\n\
             challenge_text = \"Too Many Requests\"\n",
        );
        let w = got.unwrap();
        let keys: Vec<_> = w
            .steps
            .iter()
            .map(|s| (s.challenge_selector.as_deref(), s.challenge_text.as_deref()))
            .collect();
        assert_eq!(
            keys,
            [(Some("#captcha"), None), (None, Some("Too Many Requests"))]
        );
        check_error(
            "[[steps]]\nid = 3\nactions = [{ click = \"#a\" }]\nchallenge_selector = \"\"\n",
            Some(4),
            "an empty string (expected a selector or text to look for)",
        );
        check_error(
            "[[steps]]\nid = 3\nactions = [{ click = \"#a\" }]\nchallenge_text = 429\n",
            Some(4),
            "expected a non-empty string",
        );
    }

    #[test]
    fn errors() {
        let step = |body: &str| format!("base_url = \"u\"\n[[steps]]\nid = 1\n{body}\n");
        let actions = |list: &str| step(&format!("actions = [\n{list}\n]"));
        // Actions start on line 5.
        check_error(
            &actions("  { click = \"#a\" },\n  { clik = \"#b\" },"),
            Some(6),
            "workflow.toml:6: unknown action \"clik\" (expected one of: goto, click, fill, select, hover, check, uncheck, press, wait_for, wait_gone, wait_text, wait_url, frame, window, dialog, assert_url, extract, script, screenshot, upload, wait_download, sleep, exec)",
        );
        check_error(
            &actions("{ fill = \"#a\", txt = \"x\" }"),
            Some(5),
            "fill: unknown key \"txt\" (expected one of: text, timeout, optional)",
        );
        check_error(
            &actions("{ click = \"#a\", text = \"x\" }"),
            Some(5),
            "click: unknown key \"text\" (expected one of: timeout, optional)",
        );
        check_error(
            &actions("{ sleep = \"1s\", timeout = \"2s\" }"),
            Some(5),
            "sleep: unknown key \"timeout\" (expected no other keys)",
        );
        check_error(
            &actions("{ fill = \"#a\" }"),
            Some(5),
            "fill: missing key \"text\" (expected { fill = ..., text = \"...\" })",
        );
        check_error(
            &actions("{ wait_text = \"#a\", timeout = \"1s\" }"),
            Some(5),
            "wait_text: missing key \"contains\"",
        );
        check_error(
            &actions("{ click = \"#a\", goto = \"/\" }"),
            Some(5),
            "two actions in one table, click and goto (expected one action per table)",
        );
        check_error(
            &actions("{ text = \"x\" }"),
            Some(5),
            "no action in this table (expected one of: goto,",
        );
        check_error(&actions("{}"), Some(5), "no action in this table");
        check_error(
            &actions("\"click\""),
            Some(5),
            "found a string (expected an action like { click = \"#submit\" }",
        );
        check_error(
            &actions("{ click = 5 }"),
            Some(5),
            "click: found an integer (expected a string)",
        );
        check_error(
            &actions("{ wait_for = \"#a\", timeout = 5 }"),
            Some(5),
            "wait_for.timeout: found an integer (expected a duration string like \"500ms\" or \"2s\")",
        );
        check_error(
            &actions("{ wait_for = \"#a\", timeout = \"5\" }"),
            Some(5),
            "wait_for.timeout: \"5\": no unit (expected a number and a unit",
        );
        check_error(
            &actions("{ wait_for = \"#a\", timeout = \"0s\" }"),
            Some(5),
            "wait_for.timeout: a zero timeout",
        );
        check_error(
            &actions("{ sleep = \"soon\" }"),
            Some(5),
            "sleep: \"soon\": not a duration",
        );
        check_error(
            &actions("{ goto = \"{base_url}/{user}\" }"),
            Some(5),
            "goto: unknown variable {user} (expected {base_url}, {account.FIELD}",
        );
        check_error(
            &actions("{ fill = \"#a\",\n  text = \"{account.password\" }"),
            Some(6),
            "fill.text: unclosed \"{\"",
        );
        check_error(
            &actions("{ press = \"Return\" }"),
            Some(5),
            "press: unknown key \"Return\" (expected one of: Enter, Tab, Escape,",
        );
        check_error(&actions("{ exec = [] }"), Some(5), "exec: an empty argv");
        check_error(
            &actions("{ goto = \"http://h/\\u0000\" }"),
            Some(5),
            "goto: a control character (expected printable text",
        );
        check_error(
            &actions("{ exec = [\"tool\", \"a\\nb\"] }"),
            Some(5),
            "exec: a control character",
        );
        check_error(
            &actions("{ screenshot = \"a\\tb\" }"),
            Some(5),
            "screenshot: not a plain file name",
        );
        check_error(
            &actions("{ exec = \"python3 x.py\" }"),
            Some(5),
            "exec: found a string (expected a non-empty array of strings",
        );
        check_error(
            &actions("{ exec = [\"a\", 1] }"),
            Some(5),
            "exec: found an integer",
        );
        check_error(
            &actions("{ screenshot = \"../x\" }"),
            Some(5),
            "screenshot: not a plain file name",
        );
        check_error(
            &actions("{ wait_download = \"out/x.csv\" }"),
            Some(5),
            "workflow.toml:5: wait_download: not a file-name pattern (expected a file-name pattern without \"/\", like \"export-*.csv\")",
        );
        check_error(
            &actions("{ wait_download = \"  \" }"),
            Some(5),
            "wait_download: not a file-name pattern",
        );
        check_error(
            &actions("{ wait_download = \"x[.csv\" }"),
            Some(5),
            "wait_download: not a valid pattern: invalid range pattern (expected a file-name pattern",
        );
        check_error(
            &actions("{ wait_download = \"x.csv\", attr = \"href\" }"),
            Some(5),
            "workflow.toml:5: wait_download: unknown key \"attr\" (expected one of: into, timeout, optional)",
        );
        check_error(
            &actions("{ upload = \"#doc\" }"),
            Some(5),
            "workflow.toml:5: upload: missing key \"file\" (expected { upload = ..., file = \"...\" })",
        );
        check_error(
            &actions("{ upload = \"#doc\", file = [] }"),
            Some(5),
            "workflow.toml:5: upload.file: an empty array (expected a path or a non-empty array of paths, like \"files/{account.id}.pdf\")",
        );
        check_error(
            &actions("{ upload = \"#doc\", file = [\"a\", 3] }"),
            Some(5),
            "upload.file: found an integer (expected a path or a non-empty array of paths",
        );
        check_error(
            &actions("{ upload = \"#doc\", file = \" \" }"),
            Some(5),
            "upload.file: an empty path",
        );
        check_error(
            &actions("{ upload = \"#doc\", file = \"a\\u0000b\" }"),
            Some(5),
            "upload.file: a control character in a path",
        );
        check_error(
            &actions("{ upload = \"#doc\", file = \"{account.}\" }"),
            Some(5),
            "upload.file: ",
        );
        check_error(
            &actions("{ upload = \"#doc\", file = \"a\", text = \"x\" }"),
            Some(5),
            "workflow.toml:5: upload: unknown key \"text\" (expected one of: file, timeout, optional)",
        );
        check_error(
            &actions("{ wait_download = \"x.csv\", into = \"\" }"),
            Some(5),
            "wait_download.into: an empty name",
        );
        check_error(
            &actions("{ extract = \"#a\", into = \"\" }"),
            Some(5),
            "extract.into: an empty name",
        );
        check_error(
            &step("actions = []"),
            Some(4),
            "step 1, actions: no actions",
        );
        check_error(
            &step("before = [{ click = \"#a\" }]"),
            Some(2),
            "step 1: no actions",
        );
        check_error(
            &step("actions = [{ click = \"#a\" }]\nnmae = \"x\""),
            Some(5),
            "step 1: unknown key \"nmae\" (expected one of: id, name, before, actions, after, challenge_selector, challenge_text, data)",
        );
        check_error(
            &step("actions = { click = \"#a\" }"),
            Some(4),
            "step 1, actions: found a table (expected an array of actions",
        );
        check_error(
            "[[steps]]\nactions = [{ click = \"#a\" }]\n",
            Some(1),
            "step without an id (expected id = a positive integer)",
        );
        check_error(
            "[[steps]]\nid = 0\nactions = [{ click = \"#a\" }]\n",
            Some(2),
            "id: 0 is out of range (expected a positive integer)",
        );
        check_error(
            "[[steps]]\nid = 1\nactions = [{ click = \"#a\" }]\n\n[[steps]]\nid = 1\nactions = [{ click = \"#b\" }]\n",
            Some(5),
            "id: step id 1 is used twice, first at line 1 (expected unique step ids)",
        );
        check_error(
            "base_url = \"u\"\nbase_ulr = \"v\"\n[[steps]]\nid = 1\nactions = [{ click = \"#a\" }]\n",
            Some(2),
            "unknown key \"base_ulr\" (expected one of: base_url, steps)",
        );
        check_error(
            "base_url = \"u\"\n",
            None,
            "no steps (expected [[steps]] tables",
        );
        check_error(
            "base_url = 1\n",
            Some(1),
            "base_url: found an integer (expected a URL string)",
        );
        check_error(
            "base_url = \"u\n",
            Some(1),
            "workflow.toml:1: invalid TOML at column 14: invalid basic string, expected `\"`",
        );
        let (_dir, missing) = load_missing();
        assert!(matches!(missing, ConfigError::NotFound { .. }), "{missing}");
    }

    fn load_missing() -> (tempfile::TempDir, ConfigError) {
        let dir = tempfile::tempdir().unwrap();
        let e = load_workflow(&dir.path().join("workflow.toml")).unwrap_err();
        (dir, e)
    }

    fn account(id: u64, fields: &[(&str, &str, bool)]) -> Account {
        Account {
            id,
            fields: fields
                .iter()
                .map(|&(k, v, secret)| {
                    (
                        k.to_owned(),
                        FieldValue {
                            value: v.to_owned(),
                            secret,
                        },
                    )
                })
                .collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn template_checks() {
        let (_dir, workflow) = load(
            r##"base_url = "http://h"
[[steps]]
id = 1
before = [{ fill = "#u", text = "{account.username}" }]
actions = [{ goto = "{base_url}/{account.id}?k={env.CHECK_KEY}" }]
after = [{ wait_text = "#m", contains = "{account.email}" }]

[[steps]]
id = 2
actions = [{ exec = ["tool", "--user", "{account.username}", "--pw", "{account.password}"] }]

[[steps]]
id = 3
actions = [{ exec = ["tool", "{env.CHECK_KEY}"] }]

[[steps]]
id = 4
actions = [{ exec = ["tool", "{account.note}"] }]

[[steps]]
id = 5
actions = [{ exec = ["tool", "{account.api-key}"] }]
"##,
        );
        let mut workflow = workflow.unwrap();
        let full = account(
            1,
            &[
                ("username", "u1", false),
                ("email", "e1", false),
                ("password", "hunter2", true),
                ("note", "from-env-secret", true),
            ],
        );
        let no_email = account(
            2,
            &[("username", "u2", false), ("password", "pass-2", true)],
        );
        let plain_note = account(3, &[("username", "u3", false), ("note", "n", false)]);
        let env = |name: &str| (name == "CHECK_KEY").then(|| "env-secret-value".to_owned());
        let no_env = |_: &str| None;
        let check = |workflow: &Workflow,
                     accounts: &[&Account],
                     steps: &[u32],
                     env: EnvLookup<'_>,
                     expected: Result<(), (usize, &str)>| {
            let got = check_templates_with_env(workflow, accounts, steps, env);
            match (got, expected) {
                (Ok(()), Ok(())) => {}
                (Err(e), Err((line, message))) => {
                    let shown = e.to_string();
                    assert_eq!(e.line(), Some(line), "{shown}");
                    assert!(shown.contains(message), "{shown:?}\nlacks {message:?}");
                    for secret in ["hunter2", "pass-2", "env-secret-value", "from-env-secret"] {
                        assert!(!shown.contains(secret), "{shown}");
                    }
                }
                (got, expected) => panic!("got {got:?}, expected {expected:?}"),
            }
        };
        check(&workflow, &[&full], &[1], &env, Ok(()));
        check(
            &workflow,
            &[&full, &no_email],
            &[1],
            &env,
            Err((
                6,
                "workflow.toml:6: wait_text: {account.email}: account 2 has no field \"email\" (expected every account that runs to have it)",
            )),
        );
        // A step that does not run is not checked.
        check(
            &workflow,
            &[&no_email],
            &[3],
            &env,
            Err((
                14,
                "exec: {env.CHECK_KEY} is a secret in the argv, and secrets reach exec programs only through the environment",
            )),
        );
        check(
            &workflow,
            &[&full],
            &[1],
            &no_env,
            Err((
                5,
                "goto: {env.CHECK_KEY}: environment variable CHECK_KEY is not set (expected it set before the run)",
            )),
        );
        check(
            &workflow,
            &[&full],
            &[2],
            &env,
            Err((
                10,
                "exec: {account.password} is a secret in the argv, and secrets reach exec programs only through the environment (expected the program to read BATCH_ACCOUNT_PASSWORD)",
            )),
        );
        // The variable named is the one the program gets, not the field upper-cased.
        let dashed = account(4, &[("api-key", "hunter2", true)]);
        check(
            &workflow,
            &[&dashed],
            &[5],
            &env,
            Err((22, "(expected the program to read BATCH_ACCOUNT_API_KEY)")),
        );
        // `note` is secret only where it came from the environment.
        check(&workflow, &[&plain_note], &[4], &env, Ok(()));
        check(
            &workflow,
            &[&plain_note, &full],
            &[4],
            &env,
            Err((18, "{account.note} is a secret in the argv")),
        );
        workflow.base_url.clear();
        check(
            &workflow,
            &[&full],
            &[1],
            &env,
            Err((5, "{base_url} is used but no base URL is set")),
        );
        for (base_url, why) in [
            ("127.0.0.1:8080", "is not a URL"),
            ("localhost:8080", "is not an http:// or https:// URL"),
            ("localhost", "is not a URL"),
            ("ftp://h/x", "is not an http:// or https:// URL"),
            ("http://", "is not a URL"),
            ("http://h\u{0}x", "has a control character"),
            ("http://u:hunter2@h\n", "has a control character"),
        ] {
            workflow.base_url = base_url.to_owned();
            check(
                &workflow,
                &[&full],
                &[1],
                &env,
                Err((
                    5,
                    &format!(
                        "goto: {{base_url}} is used but the base URL {why} (expected base_url = \"http://HOST:PORT\""
                    ),
                )),
            );
        }
        // Not used, not checked: step 2 has no {base_url}.
        workflow.base_url = "not a url".to_owned();
        check(&workflow, &[&plain_note], &[4], &env, Ok(()));
        workflow.base_url = "https://u:hunter2@h:8443/app".to_owned();
        check(&workflow, &[&full], &[1], &env, Ok(()));

        // Control characters in what reaches a URL or an argv.
        let nul_name = account(
            5,
            &[
                ("username", "u\u{0}5", false),
                ("email", "e\n", false),
                ("password", "p", true),
                ("note", "n\u{0}", false),
            ],
        );
        check(
            &workflow,
            &[&plain_note, &nul_name],
            &[4],
            &env,
            Err((
                18,
                "exec: {account.note}: the value of account 5 has a control character",
            )),
        );
        let cr = account(6, &[("note", "a\rb", false)]);
        check(
            &workflow,
            &[&cr],
            &[4],
            &env,
            Err((
                18,
                "exec: {account.note}: the value of account 6 has a control character",
            )),
        );
        // `fill` types text: a newline there is meant.
        let multiline = account(7, &[("username", "a\nb", false), ("email", "e", false)]);
        let env_nl = |name: &str| (name == "CHECK_KEY").then(|| "x\ny".to_owned());
        check(&workflow, &[&multiline], &[1], &env, Ok(()));
        check(
            &workflow,
            &[&full],
            &[1],
            &env_nl,
            Err((
                5,
                "goto: {env.CHECK_KEY}: environment variable CHECK_KEY has a control character",
            )),
        );
    }
}
