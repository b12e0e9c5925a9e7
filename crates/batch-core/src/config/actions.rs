//! The workflow's actions, each defined once in [`ACTIONS`]: its name, its main value,
//! its extra keys, what it does (the docs' table is generated from it and checked by a
//! test) and how its [`ActionKind`] is built from the raw table ([`RawAction`], via
//! `TryFrom`).
//!
//! An action is a one-key inline table with optional extra keys, which is why the raw
//! form is a table in file order rather than a derived struct: which keys are allowed
//! depends on which action key is present. Nothing here executes an action.

use std::time::Duration;

use toml::{Spanned, Value};

use super::doc::{Bad, Entries, Expecting, duration, name, positive, string};
use super::{ActionKind, Part, Template};

/// One action of the workflow language.
pub struct ActionDef {
    /// Its key (`goto`).
    pub name: &'static str,
    /// What its value is, as the docs write it (`URL`, `SEL`).
    pub arg: &'static str,
    /// The extra keys it accepts.
    pub extra: &'static [&'static str],
    /// What it does, for the docs (`{keys}` stands for [`KEY_NAMES`]).
    pub does: &'static str,
    build: fn(&Reader<'_>) -> Result<ActionKind, Bad>,
}

/// Every action, in the order of the docs' table.
pub const ACTIONS: &[ActionDef] = &[
    ActionDef {
        name: "goto",
        arg: "URL",
        extra: &["timeout"],
        does: "navigate and wait for the load",
        build: |a| {
            Ok(ActionKind::Goto {
                url: a.main_template()?,
                timeout: a.timeout()?,
            })
        },
    },
    ActionDef {
        name: "click",
        arg: "SEL",
        extra: &["timeout"],
        does: "wait until the element exists and accepts the click",
        build: |a| {
            Ok(ActionKind::Click {
                selector: a.main_template()?,
                timeout: a.timeout()?,
            })
        },
    },
    ActionDef {
        name: "fill",
        arg: "SEL",
        extra: &["text", "timeout"],
        does: "clear the field and type the text",
        build: |a| {
            Ok(ActionKind::Fill {
                selector: a.main_template()?,
                text: a.required_template("text")?,
                timeout: a.timeout()?,
            })
        },
    },
    ActionDef {
        name: "press",
        arg: "KEY",
        extra: &["selector", "timeout"],
        does: "send a key ({keys} or one character), to the element if `selector` is given",
        build: |a| {
            let key = string(
                a.main.get_ref(),
                "a key name like Enter, or a single character",
            )
            .map_err(|m| a.bad(a.main, a.def.name, m))?;
            if !(KEY_NAMES.contains(&key) || key.chars().count() == 1) {
                let known = KEY_NAMES.join(", ");
                let message = format!(
                    "unknown key {key:?} (expected one of: {known}, or a single character)"
                );
                return Err(a.bad(a.main, a.def.name, message));
            }
            Ok(ActionKind::Press {
                key: key.to_owned(),
                selector: a.optional_template("selector")?,
                timeout: a.timeout()?,
            })
        },
    },
    ActionDef {
        name: "wait_for",
        arg: "SEL",
        extra: &["timeout"],
        does: "wait until the element is displayed",
        build: |a| {
            Ok(ActionKind::WaitFor {
                selector: a.main_template()?,
                timeout: a.timeout()?,
            })
        },
    },
    ActionDef {
        name: "wait_text",
        arg: "SEL",
        extra: &["contains", "timeout"],
        does: "wait until its text contains the string",
        build: |a| {
            Ok(ActionKind::WaitText {
                selector: a.main_template()?,
                contains: a.required_template("contains")?,
                timeout: a.timeout()?,
            })
        },
    },
    ActionDef {
        name: "assert_url",
        arg: "SUBSTR",
        extra: &[],
        does: "fail unless the current URL contains it",
        build: |a| {
            Ok(ActionKind::AssertUrl {
                substr: a.main_template()?,
            })
        },
    },
    ActionDef {
        name: "extract",
        arg: "SEL",
        extra: &["into", "attr"],
        does: "record the text (or attribute) in the report's `values`",
        build: |a| {
            Ok(ActionKind::Extract {
                selector: a.main_template()?,
                into: a.name("into")?,
                attr: a.name("attr")?,
            })
        },
    },
    ActionDef {
        name: "script",
        arg: "JS",
        extra: &["into"],
        does: "run JavaScript; record its return value",
        build: |a| {
            Ok(ActionKind::Script {
                js: a.main_template()?,
                into: a.name("into")?,
            })
        },
    },
    ActionDef {
        name: "screenshot",
        arg: "NAME",
        extra: &[],
        does: "save `screenshots/<account>/<NAME>.png`",
        build: |a| {
            let template = a.main_template()?;
            let bad = template.source.trim().is_empty()
                || template.parts.iter().any(|p| {
                    matches!(p, Part::Lit(s) if s.contains(['/', '\\']) || s == ".." || s.contains(char::is_control))
                });
            if bad {
                let message = "not a plain file name (expected a name without \"/\", like \"cart-{iteration}\")";
                return Err(a.bad(a.main, a.def.name, message));
            }
            Ok(ActionKind::Screenshot { name: template })
        },
    },
    ActionDef {
        name: "sleep",
        arg: "DUR",
        extra: &[],
        does: "wait",
        build: |a| {
            let d = duration(a.main.get_ref()).map_err(|m| a.bad(a.main, a.def.name, m))?;
            Ok(ActionKind::Sleep { duration: d })
        },
    },
    ActionDef {
        name: "exec",
        arg: "[ARGV...]",
        extra: &["timeout"],
        does: "run a program against the same browser (below)",
        build: |a| {
            let expected = "a non-empty array of strings, like [\"python3\", \"script.py\"]";
            let items = match a.main.get_ref() {
                Value::Array(items) if items.is_empty() => {
                    let message = format!("an empty argv (expected {expected})");
                    return Err(a.bad(a.main, a.def.name, message));
                }
                Value::Array(items) => items,
                other => return Err(a.bad(a.main, a.def.name, super::doc::found(other, expected))),
            };
            let argv = items
                .iter()
                .map(|item| a.template(item, a.main, a.def.name))
                .collect::<Result<_, _>>()?;
            Ok(ActionKind::Exec {
                argv,
                timeout: a.timeout()?,
            })
        },
    },
];

/// The keys `press` accepts besides single characters.
pub const KEY_NAMES: &[&str] = &[
    "Enter",
    "Tab",
    "Escape",
    "Backspace",
    "Delete",
    "Space",
    "ArrowUp",
    "ArrowDown",
    "ArrowLeft",
    "ArrowRight",
    "Home",
    "End",
    "PageUp",
    "PageDown",
];

/// Marks the tables of actions for [`Entries`]: what their type errors expect.
pub(crate) struct ActionTable;

/// An action as written: its table's entries in file order.
pub(crate) type RawAction = Entries<ActionTable>;

impl Expecting for ActionTable {
    fn expected() -> String {
        format!(
            "an action like {{ click = \"#submit\" }}, with the action {}",
            one_of()
        )
    }
    fn list() -> String {
        "an array of actions like [{ click = \"#submit\" }]".to_owned()
    }
}

fn one_of() -> String {
    let names: Vec<&str> = ACTIONS.iter().map(|a| a.name).collect();
    format!("one of: {}", names.join(", "))
}

impl TryFrom<&Spanned<RawAction>> for ActionKind {
    type Error = Bad;

    /// Finds the one action key, checks the others against its extra keys, builds it.
    fn try_from(raw: &Spanned<RawAction>) -> Result<ActionKind, Bad> {
        let entries = &raw.get_ref().entries;
        let def_of = |k: &Spanned<String>| ACTIONS.iter().find(|d| d.name == k.get_ref());
        let found: Vec<_> = entries
            .iter()
            .filter_map(|(k, v)| Some((k, v, def_of(k)?)))
            .collect();
        let (main, def) = match found.as_slice() {
            [(_, v, def)] => (*v, *def),
            [] => {
                let is_extra = |k: &str| ACTIONS.iter().any(|a| a.extra.contains(&k));
                return Err(match entries.iter().find(|(k, _)| !is_extra(k.get_ref())) {
                    Some((k, _)) => Bad::new(
                        k.span(),
                        "",
                        format!("unknown action {:?} (expected {})", k.get_ref(), one_of()),
                    ),
                    None => Bad::new(
                        raw.span(),
                        "",
                        format!("no action in this table (expected {})", one_of()),
                    ),
                });
            }
            [first, second, ..] => {
                return Err(Bad::new(
                    second.0.span(),
                    "",
                    format!(
                        "two actions in one table, {} and {} (expected one action per table)",
                        first.0.get_ref(),
                        second.0.get_ref()
                    ),
                ));
            }
        };
        for (k, _) in entries {
            if k.get_ref() != def.name && !def.extra.contains(&k.get_ref().as_str()) {
                let expected = if def.extra.is_empty() {
                    "no other keys".to_owned()
                } else {
                    format!("one of: {}", def.extra.join(", "))
                };
                let message = format!("unknown key {:?} (expected {expected})", k.get_ref());
                return Err(Bad::new(k.span(), def.name, message));
            }
        }
        (def.build)(&Reader { raw, def, main })
    }
}

/// Reads the values of one action's table, with errors naming the action.
struct Reader<'a> {
    raw: &'a Spanned<RawAction>,
    def: &'a ActionDef,
    main: &'a Spanned<Value>,
}

impl Reader<'_> {
    fn bad(&self, at: &Spanned<Value>, field: &str, message: impl Into<String>) -> Bad {
        Bad::new(at.span(), field, message)
    }

    fn field(&self, key: &str) -> String {
        format!("{}.{key}", self.def.name)
    }

    /// `v` (at `at`, which is `v` itself unless `v` is an item of an array) as a template.
    fn template(&self, v: &Value, at: &Spanned<Value>, field: &str) -> Result<Template, Bad> {
        let s = string(v, "a string").map_err(|m| self.bad(at, field, m))?;
        let t = Template::parse(s).map_err(|m| self.bad(at, field, m))?;
        // A control character in a URL or an argv is never what was meant, and a NUL
        // cannot even be passed to a program.
        let reaches_url_or_argv = matches!(self.def.name, "goto" | "exec");
        if reaches_url_or_argv && s.contains(char::is_control) {
            let message = "a control character (expected printable text; write \\n or \\t only where a browser types it)";
            return Err(self.bad(at, field, message));
        }
        Ok(t)
    }

    fn main_template(&self) -> Result<Template, Bad> {
        self.template(self.main.get_ref(), self.main, self.def.name)
    }

    fn optional_template(&self, key: &str) -> Result<Option<Template>, Bad> {
        let Some(v) = self.raw.get_ref().get(key) else {
            return Ok(None);
        };
        self.template(v.get_ref(), v, &self.field(key)).map(Some)
    }

    fn required_template(&self, key: &str) -> Result<Template, Bad> {
        self.optional_template(key)?.ok_or_else(|| {
            let name = self.def.name;
            Bad::new(
                self.raw.span(),
                name,
                format!("missing key {key:?} (expected {{ {name} = ..., {key} = \"...\" }})"),
            )
        })
    }

    fn timeout(&self) -> Result<Option<Duration>, Bad> {
        let Some(v) = self.raw.get_ref().get("timeout") else {
            return Ok(None);
        };
        positive(v.get_ref(), "timeout", "5s")
            .map(Some)
            .map_err(|m| self.bad(v, &self.field("timeout"), m))
    }

    fn name(&self, key: &str) -> Result<Option<String>, Bad> {
        let Some(v) = self.raw.get_ref().get(key) else {
            return Ok(None);
        };
        name(v.get_ref())
            .map(Some)
            .map_err(|m| self.bad(v, &self.field(key), m))
    }
}

impl ActionKind {
    /// The action's name as written in the workflow (`goto`, `wait_text`, …).
    pub fn name(&self) -> &'static str {
        match self {
            ActionKind::Goto { .. } => "goto",
            ActionKind::Click { .. } => "click",
            ActionKind::Fill { .. } => "fill",
            ActionKind::Press { .. } => "press",
            ActionKind::WaitFor { .. } => "wait_for",
            ActionKind::WaitText { .. } => "wait_text",
            ActionKind::AssertUrl { .. } => "assert_url",
            ActionKind::Extract { .. } => "extract",
            ActionKind::Script { .. } => "script",
            ActionKind::Screenshot { .. } => "screenshot",
            ActionKind::Sleep { .. } => "sleep",
            ActionKind::Exec { .. } => "exec",
        }
    }

    /// The action's own `timeout`, if it has one and it was given.
    pub fn timeout(&self) -> Option<Duration> {
        match self {
            ActionKind::Goto { timeout, .. }
            | ActionKind::Click { timeout, .. }
            | ActionKind::Fill { timeout, .. }
            | ActionKind::Press { timeout, .. }
            | ActionKind::WaitFor { timeout, .. }
            | ActionKind::WaitText { timeout, .. }
            | ActionKind::Exec { timeout, .. } => *timeout,
            _ => None,
        }
    }

    /// Every template of the action, in the order written.
    pub fn templates(&self) -> Vec<&Template> {
        match self {
            ActionKind::Goto { url, .. } => vec![url],
            ActionKind::Click { selector, .. }
            | ActionKind::WaitFor { selector, .. }
            | ActionKind::Extract { selector, .. } => vec![selector],
            ActionKind::Fill { selector, text, .. } => vec![selector, text],
            ActionKind::Press { selector, .. } => selector.iter().collect(),
            ActionKind::WaitText {
                selector, contains, ..
            } => vec![selector, contains],
            ActionKind::AssertUrl { substr } => vec![substr],
            ActionKind::Script { js, .. } => vec![js],
            ActionKind::Screenshot { name } => vec![name],
            ActionKind::Sleep { .. } => vec![],
            ActionKind::Exec { argv, .. } => argv.iter().collect(),
        }
    }
}

/// The docs' action table (`| action | extra keys | does |`), generated from [`ACTIONS`].
pub fn action_table() -> String {
    let mut out = String::from("| action | extra keys | does |\n|---|---|---|\n");
    for a in ACTIONS {
        let extra: Vec<String> = a.extra.iter().map(|k| format!("`{k}`")).collect();
        let keys: Vec<String> = KEY_NAMES.iter().map(|k| format!("`{k}`")).collect();
        let does = a.does.replace("{keys}", &keys.join(", "));
        let extra = match extra.join(", ") {
            e if e.is_empty() => " ".to_owned(),
            e => format!(" {e} "),
        };
        out.push_str(&format!("| `{} = {}` |{extra}| {does} |\n", a.name, a.arg));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(name: &str) -> String {
        let path = format!("{}/../../docs/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// The docs' table and the parser read the same definition: regenerate the table
    /// from `action_table()` (the message shows it) when an action changes.
    #[test]
    fn docs_action_table_is_generated_from_actions() {
        let table = action_table();
        let docs = doc("workflows.md");
        assert!(
            docs.contains(&table),
            "docs/workflows.md's action table differs from ACTIONS; it should read:\n{table}"
        );
        // One reference, linked from the other page: no second copy to drift.
        let header = table.lines().next().unwrap();
        assert!(
            !doc("configuration.md").contains(header),
            "docs/configuration.md has an action table of its own; link to workflows.md instead"
        );
    }

    /// Every action has its own section in docs/workflows.md (`### `goto``), with an
    /// example of it, and the section names each of its extra keys.
    #[test]
    fn docs_describe_every_action_and_key() {
        let docs = doc("workflows.md");
        for def in ACTIONS {
            let heading = format!("\n### `{}`\n", def.name);
            let start = docs
                .find(&heading)
                .unwrap_or_else(|| panic!("docs/workflows.md has no section {heading:?}"));
            let rest = &docs[start + heading.len()..];
            let section = &rest[..rest.find("\n#").unwrap_or(rest.len())];
            assert!(
                section.contains(&format!("{{ {} = ", def.name)),
                "the section on {} has no example",
                def.name
            );
            for key in def.extra {
                assert!(
                    section.contains(&format!("`{key}`")),
                    "the section on {} does not describe `{key}`",
                    def.name
                );
            }
        }
    }

    #[test]
    fn every_action_builds_and_names_itself() {
        for def in ACTIONS {
            let mut text = format!("x = [{{ {} = ", def.name);
            text.push_str(match def.arg {
                "DUR" => "\"1s\"",
                "KEY" => "\"Enter\"",
                "[ARGV...]" => "[\"true\"]",
                _ => "\"a\"",
            });
            for key in def.extra {
                text.push_str(&format!(
                    ", {key} = {}",
                    if *key == "timeout" { "\"1s\"" } else { "\"b\"" }
                ));
            }
            text.push_str(" }]\n");
            #[derive(serde::Deserialize)]
            struct X {
                x: super::super::doc::List<RawAction>,
            }
            let x: X = toml::from_str(&text).unwrap();
            let kind = ActionKind::try_from(&x.x.0[0]).unwrap_or_else(|b| panic!("{text}: {b:?}"));
            assert_eq!(kind.name(), def.name);
            assert_eq!(
                kind.timeout().is_some(),
                def.extra.contains(&"timeout"),
                "{text}"
            );
        }
    }
}
