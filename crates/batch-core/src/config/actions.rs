//! The workflow's actions, each defined once in the `actions!` list below: its
//! [`ActionKind`] variant, its row of [`ACTIONS`] (name, main value, extra keys —
//! the variant's other fields —, what it does: the docs' table is generated from it
//! and checked by a test) and how it is read from the raw table ([`RawAction`], via
//! `TryFrom`).
//!
//! An action is a one-key inline table with optional extra keys, which is why the raw
//! form is a table in file order rather than a derived struct: which keys are allowed
//! depends on which action key is present. Nothing here executes an action.

use std::any::Any;
use std::time::Duration;

use toml::{Spanned, Value};

use super::doc::{Bad, Table, duration, expected_keys, found, in_order, name, positive, string};
use super::{Part, Template};

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

/// Declares every action once: `Variant = "name", "ARG", "what it does" { fields }`.
/// The first field is the action's own value, read by `= reader` or else as a
/// template; every other field is an extra key of the same name, read by its type
/// ([`Read`]). Gives [`ActionKind`], [`ACTIONS`] and `ActionKind::{name, timeout,
/// templates}`.
macro_rules! actions {
    (@main $a:ident) => { $a.main(|v| $a.template(v)) };
    (@main $a:ident, $read:expr) => { $read($a) };
    ($(
        $(#[$doc:meta])*
        $variant:ident = $name:literal, $arg:literal, $does:literal {
            $(#[$main_doc:meta])* $main:ident: $main_t:ty $(= $read:expr)?,
            $($(#[$key_doc:meta])* $key:ident: $t:ty,)*
        }
    )*) => {
        /// What an action does (see the spec's action table).
        #[derive(Debug, Clone, PartialEq)]
        pub enum ActionKind {$(
            $(#[$doc])*
            $variant {
                $(#[$main_doc])* $main: $main_t,
                $($(#[$key_doc])* $key: $t,)*
            },
        )*}

        /// Every action, in the order of the docs' table.
        pub const ACTIONS: &[ActionDef] = &[$(ActionDef {
            name: $name,
            arg: $arg,
            extra: &[$(stringify!($key)),*],
            does: $does,
            build: |a| Ok(ActionKind::$variant {
                $main: actions!(@main a $(, $read)?)?,
                $($key: Read::read(a, stringify!($key))?,)*
            }),
        }),*];

        impl ActionKind {
            /// The action's name as written in the workflow (`goto`, `wait_text`, …).
            pub fn name(&self) -> &'static str {
                match self {$(ActionKind::$variant { .. } => $name,)*}
            }

            /// The action's own `timeout`, if it has one and it was given.
            pub fn timeout(&self) -> Option<Duration> {
                match self {$(
                    ActionKind::$variant { $($key,)* .. } => None$(.or(timeout_in($key)))*,
                )*}
            }

            /// Whether the action was marked `optional`: skipped, not failed, when
            /// what it waits for does not come within its timeout.
            pub fn optional(&self) -> bool {
                match self {$(
                    ActionKind::$variant { $($key,)* .. } => false $(|| optional_in($key))*,
                )*}
            }

            /// Every template of the action, in the order written.
            pub fn templates(&self) -> Vec<&Template> {
                match self {$(
                    ActionKind::$variant { $main, $($key,)* } => {
                        [templates_in($main) $(, templates_in($key))*].concat()
                    }
                )*}
            }
        }
    };
}

actions! {
    /// Navigate and wait for the load.
    Goto = "goto", "URL", "navigate and wait for the load" {
        /// The URL.
        url: Template,
        /// How long the load may take at most (None: the default action timeout).
        timeout: Option<Duration>,
    }
    /// Click the element.
    Click = "click", "SEL", "wait until the element exists and accepts the click" {
        /// Which element.
        selector: Template,
        /// How long to wait for the element at most (None: the default action timeout).
        timeout: Option<Duration>,
        /// Skipped, not failed, when the element (or download) does not come in time.
        optional: bool,
    }
    /// Clear the field and type the text.
    Fill = "fill", "SEL", "clear the field and type the text" {
        /// Which element.
        selector: Template,
        /// What to type.
        text: Template,
        /// How long to wait for the element at most (None: the default action timeout).
        timeout: Option<Duration>,
        /// Skipped, not failed, when the element (or download) does not come in time.
        optional: bool,
    }
    /// Choose an option of a `<select>`, as a user would in its list.
    Select = "select", "SEL",
        "choose the option whose text (or else value) is `option`, once the list has it" {
        /// Which `<select>`.
        selector: Template,
        /// The option's text as the list shows it, or else its `value`.
        option: Template,
        /// How long to wait for the list and the option at most (None: the default action timeout).
        timeout: Option<Duration>,
        /// Skipped, not failed, when the element (or download) does not come in time.
        optional: bool,
    }
    /// Move the pointer over the element (menus that open on hover).
    Hover = "hover", "SEL", "move the pointer over the element, once displayed (menus that open on hover)" {
        /// Which element.
        selector: Template,
        /// How long to wait for it at most (None: the default action timeout).
        timeout: Option<Duration>,
        /// Skipped, not failed, when the element (or download) does not come in time.
        optional: bool,
    }
    /// Make sure a checkbox or radio button is checked.
    Check = "check", "SEL",
        "make sure the checkbox or radio button is checked: click it (or its label) if it is not" {
        /// Which `<input type="checkbox">` or `"radio"`.
        selector: Template,
        /// How long to wait for it at most (None: the default action timeout).
        timeout: Option<Duration>,
        /// Skipped, not failed, when the element (or download) does not come in time.
        optional: bool,
    }
    /// Make sure a checkbox is not checked.
    Uncheck = "uncheck", "SEL",
        "make sure the checkbox is not checked: click it (or its label) if it is" {
        /// Which `<input type="checkbox">`.
        selector: Template,
        /// How long to wait for it at most (None: the default action timeout).
        timeout: Option<Duration>,
        /// Skipped, not failed, when the element (or download) does not come in time.
        optional: bool,
    }
    /// Send a key (`Enter`, `Tab`, …), to the element if given, else to the page.
    Press = "press", "KEY",
        "send a key ({keys} or one character, after `Control+`, `Shift+`, `Alt+` or `Meta+` if held), to the element if `selector` is given" {
        /// The key's name, validated against the known key names.
        key: String = press_key,
        /// Which element, if any.
        selector: Option<Template>,
        /// How long to wait for the element at most (None: the default action timeout).
        timeout: Option<Duration>,
        /// Skipped, not failed, when the element (or download) does not come in time.
        optional: bool,
    }
    /// Wait until the element is displayed.
    WaitFor = "wait_for", "SEL", "wait until the element is displayed" {
        /// Which element.
        selector: Template,
        /// How long at most (None: the default action timeout).
        timeout: Option<Duration>,
        /// Skipped, not failed, when the element (or download) does not come in time.
        optional: bool,
    }
    /// Wait until no element matching the selector is displayed.
    WaitGone = "wait_gone", "SEL", "wait until no such element is displayed (a spinner, an overlay)" {
        /// Which element.
        selector: Template,
        /// How long at most (None: the default action timeout).
        timeout: Option<Duration>,
        /// Skipped, not failed, when the element is still there in time.
        optional: bool,
    }
    /// Wait until the element's text contains the string.
    WaitText = "wait_text", "SEL", "wait until its text contains the string" {
        /// Which element.
        selector: Template,
        /// The substring.
        contains: Template,
        /// How long at most.
        timeout: Option<Duration>,
        /// Skipped, not failed, when the element (or download) does not come in time.
        optional: bool,
    }
    /// Wait until the current URL contains the substring.
    WaitUrl = "wait_url", "SUBSTR", "wait until the current URL contains it" {
        /// The substring.
        substr: Template,
        /// How long at most (None: the default action timeout).
        timeout: Option<Duration>,
        /// Skipped, not failed, when the element (or download) does not come in time.
        optional: bool,
    }
    /// Act inside an iframe from here on; `top` and `parent` go back out.
    Frame = "frame", "SEL",
        "act inside the iframe from here on (`parent`: one frame out, `top`: the page)" {
        /// Which `<iframe>` (in the current frame), or `top` / `parent`.
        selector: Template,
        /// How long to wait for the iframe at most (None: the default action timeout).
        timeout: Option<Duration>,
    }
    /// Switch windows: to one a page opened (`new`), back to the first (`first`), or
    /// close this one and go back (`close`).
    Window = "window", "WHICH",
        "`new`: go to the window a page opened; `first`: back to the first; `close`: close this one and go back" {
        /// `new`, `first` or `close`.
        which: String = window_which,
        /// How long `new` waits for the window at most (None: the default action timeout).
        timeout: Option<Duration>,
        /// Skipped, not failed, when `new` finds no new window in time.
        optional: bool,
    }
    /// Answer the page's `alert`, `confirm` or `prompt` dialog.
    Dialog = "dialog", "ANSWER",
        "wait for the page's alert, confirm or prompt and `accept` it (typing `text` into a prompt) or `dismiss` it" {
        /// `accept` or `dismiss`.
        answer: String = dialog_answer,
        /// What to type into a `prompt()` before accepting.
        text: Option<Template>,
        /// Result name for the dialog's message.
        into: Option<String>,
        /// How long to wait for the dialog at most (None: the default action timeout).
        timeout: Option<Duration>,
        /// Skipped, not failed, when no dialog opens in time.
        optional: bool,
    }
    /// Fail unless the current URL contains the substring.
    AssertUrl = "assert_url", "SUBSTR", "fail unless the current URL contains it" {
        /// The substring.
        substr: Template,
    }
    /// Record the element's text (or attribute) in the results.
    Extract = "extract", "SEL", "record the text (or attribute) in the report's `values`" {
        /// Which element.
        selector: Template,
        /// Result name (default: the selector text).
        into: Option<String>,
        /// Attribute to read instead of the text.
        attr: Option<String>,
        /// How long to wait for the element at most (None: the default action timeout).
        timeout: Option<Duration>,
        /// Skipped, not failed, when the element does not come in time.
        optional: bool,
    }
    /// Run JavaScript; optionally record its return value.
    Script = "script", "JS", "run JavaScript; record its return value" {
        /// The script.
        js: Template,
        /// Result name.
        into: Option<String>,
    }
    /// Save a PNG into the run directory.
    Screenshot = "screenshot", "NAME", "save `screenshots/<account>/<NAME>.png`" {
        /// File name without `.png`.
        name: Template = file_name,
    }
    /// Choose files in a file input, as a user would in the browser's file picker.
    Upload = "upload", "SEL",
        "choose the files in a file input; a remote browser gets them through its endpoint (below)" {
        /// Which `<input type="file">` (it may be hidden).
        selector: Template,
        /// The files: paths relative to `batch.toml`'s directory, templated.
        file: Vec<Template>,
        /// How long to wait for the input at most (None: the default action timeout).
        timeout: Option<Duration>,
        /// Skipped, not failed, when the element (or download) does not come in time.
        optional: bool,
    }
    /// Wait until a download matching the file-name pattern has finished.
    WaitDownload = "wait_download", "GLOB",
        "wait until a download whose file name matches has finished; record its path in `values` (below)" {
        /// The file-name pattern (`*`, `?`, `[…]`), templated.
        pattern: Template = download_pattern,
        /// Result name (default: the pattern as written).
        into: Option<String>,
        /// How long at most (None: the default action timeout).
        timeout: Option<Duration>,
        /// Skipped, not failed, when the element (or download) does not come in time.
        optional: bool,
    }
    /// Wait.
    Sleep = "sleep", "DUR", "wait" {
        /// How long.
        duration: Duration = |a: &Reader<'_>| a.main(duration),
    }
    /// Run a program that drives the same browser.
    Exec = "exec", "[ARGV...]", "run a program against the same browser (below)" {
        /// The argv, templated.
        argv: Vec<Template> = argv,
        /// How long at most.
        timeout: Option<Duration>,
    }
}

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

/// The keys `press` can hold down while it sends its key (`Control+a`).
const MODIFIERS: &[&str] = &["Control", "Shift", "Alt", "Meta"];

/// `fn("Control+Shift+a") -> (["Control", "Shift"], "a")`: a `press` key's held
/// modifiers and its key (`Shift++` holds Shift for `+`); `None` for anything but a
/// key name or one character, after known modifiers only. A lone key has none.
pub fn press_parts(key: &str) -> Option<(Vec<&str>, &str)> {
    let one = |k: &str| KEY_NAMES.contains(&k) || k.chars().count() == 1;
    if one(key) {
        return Some((Vec::new(), key));
    }
    let (mods, last) = match key.strip_suffix("++") {
        Some(mods) => (mods, "+"),
        None => key.rsplit_once('+')?,
    };
    let mods: Vec<&str> = mods.split('+').collect();
    (one(last) && mods.iter().all(|m| MODIFIERS.contains(m))).then_some((mods, last))
}

fn press_key(a: &Reader<'_>) -> Result<String, Bad> {
    a.main(|v| {
        let key = string(v, "a key name like Enter, or a single character")?;
        if press_parts(key).is_some() {
            return Ok(key.to_owned());
        }
        let known = KEY_NAMES.join(", ");
        let mods = MODIFIERS.join("+, ");
        Err(format!(
            "unknown key {key:?} (expected one of: {known}, or a single character; after \
             {mods}+ to hold them, like Control+a)"
        ))
    })
}

/// What `dialog` takes.
const ANSWERS: &[&str] = &["accept", "dismiss"];

fn dialog_answer(a: &Reader<'_>) -> Result<String, Bad> {
    a.main(|v| {
        let answer = string(v, "accept or dismiss")?;
        if ANSWERS.contains(&answer) {
            return Ok(answer.to_owned());
        }
        Err(format!(
            "unknown answer {answer:?} (expected one of: {})",
            ANSWERS.join(", ")
        ))
    })
}

/// What `window` takes.
const WINDOWS: &[&str] = &["new", "first", "close"];

fn window_which(a: &Reader<'_>) -> Result<String, Bad> {
    a.main(|v| {
        let which = string(v, "new, first or close")?;
        if WINDOWS.contains(&which) {
            return Ok(which.to_owned());
        }
        Err(format!(
            "unknown window {which:?} (expected one of: {})",
            WINDOWS.join(", ")
        ))
    })
}

fn file_name(a: &Reader<'_>) -> Result<Template, Bad> {
    a.main(|v| {
        let template = a.template(v)?;
        let bad = template.source.trim().is_empty()
            || template.parts.iter().any(|p| {
                matches!(p, Part::Lit(s) if s.contains(['/', '\\']) || s == ".." || s.contains(char::is_control))
            });
        if bad {
            return Err("not a plain file name (expected a name without \"/\", like \"cart-{iteration}\")".into());
        }
        Ok(template)
    })
}

/// A file-name pattern: no directory part, and (when it has no variables) a valid
/// glob — checked here so that a typo fails before anything launches.
fn download_pattern(a: &Reader<'_>) -> Result<Template, Bad> {
    a.main(|v| {
        let template = a.template(v)?;
        let expected = "(expected a file-name pattern without \"/\", like \"export-*.csv\")";
        let lits = || {
            template.parts.iter().filter_map(|p| match p {
                Part::Lit(s) => Some(s.as_str()),
                _ => None,
            })
        };
        if template.source.trim().is_empty()
            || lits().any(|s| s.contains(['/', '\\']) || s.contains(char::is_control))
        {
            return Err(format!("not a file-name pattern {expected}"));
        }
        if lits().count() == template.parts.len()
            && let Err(e) = glob::Pattern::new(&lits().collect::<String>())
        {
            return Err(format!("not a valid pattern: {} {expected}", e.msg));
        }
        Ok(template)
    })
}

fn argv(a: &Reader<'_>) -> Result<Vec<Template>, Bad> {
    a.main(|v| {
        let expected = "a non-empty array of strings, like [\"python3\", \"script.py\"]";
        match v {
            Value::Array(items) if items.is_empty() => {
                Err(format!("an empty argv (expected {expected})"))
            }
            Value::Array(items) => items.iter().map(|item| a.template(item)).collect(),
            other => Err(found(other, expected)),
        }
    })
}

/// An action as written: a table, its keys and values with their positions.
#[derive(serde::Deserialize)]
#[serde(transparent)]
pub(crate) struct RawAction(Table);

/// What a type error expects in place of a list of actions.
pub(crate) const LIST_EXPECTED: &str = "an array of actions like [{ click = \"#submit\" }]";

/// What a type error expects in place of one action.
pub(crate) fn expected() -> String {
    format!(
        "an action like {{ click = \"#submit\" }}, with the action {}",
        one_of()
    )
}

fn one_of() -> String {
    expected_keys(&ACTIONS.iter().map(|a| a.name).collect::<Vec<_>>())
}

impl TryFrom<&Spanned<RawAction>> for ActionKind {
    type Error = Bad;

    /// Finds the one action key, checks the others against its extra keys, builds it.
    fn try_from(raw: &Spanned<RawAction>) -> Result<ActionKind, Bad> {
        let entries = in_order(&raw.get_ref().0);
        let def_of = |k: &Spanned<String>| ACTIONS.iter().find(|d| d.name == k.get_ref());
        let found: Vec<_> = entries
            .iter()
            .filter_map(|(k, v)| Some((k, v, def_of(k)?)))
            .collect();
        let (main, def) = match found.as_slice() {
            [(_, v, def)] => (*v, *def),
            [] => {
                let is_extra = |k: &str| ACTIONS.iter().any(|a| a.extra.contains(&k));
                let (span, message) = match entries.iter().find(|(k, _)| !is_extra(k.get_ref())) {
                    Some((k, _)) => (k.span(), format!("unknown action {:?}", k.get_ref())),
                    None => (raw.span(), "no action in this table".to_owned()),
                };
                return Err(Bad::new(
                    span,
                    "",
                    format!("{message} (expected {})", one_of()),
                ));
            }
            [(first, ..), (second, ..), ..] => {
                let message = format!(
                    "two actions in one table, {} and {} (expected one action per table)",
                    first.get_ref(),
                    second.get_ref()
                );
                return Err(Bad::new(second.span(), "", message));
            }
        };
        let allowed = |k: &String| *k == def.name || def.extra.contains(&k.as_str());
        if let Some((k, _)) = entries.iter().find(|(k, _)| !allowed(k.get_ref())) {
            let expected = expected_keys(def.extra);
            let message = format!("unknown key {:?} (expected {expected})", k.get_ref());
            return Err(Bad::new(k.span(), def.name, message));
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
    /// The action's own value, through `parse`.
    fn main<T>(&self, parse: impl Fn(&Value) -> Result<T, String>) -> Result<T, Bad> {
        parse(self.main.get_ref()).map_err(|m| Bad::new(self.main.span(), self.def.name, m))
    }

    /// The value of the extra key `key`, if given, through `parse`.
    fn key<T>(
        &self,
        key: &str,
        parse: impl Fn(&Value) -> Result<T, String>,
    ) -> Result<Option<T>, Bad> {
        let Some(v) = self.raw.get_ref().0.get(key) else {
            return Ok(None);
        };
        let field = format!("{}.{key}", self.def.name);
        parse(v.get_ref())
            .map(Some)
            .map_err(|m| Bad::new(v.span(), field, m))
    }

    /// A string value as a template.
    fn template(&self, v: &Value) -> Result<Template, String> {
        let s = string(v, "a string")?;
        let t = Template::parse(s)?;
        // A control character in a URL or an argv is never what was meant, and a NUL
        // cannot even be passed to a program.
        let reaches_url_or_argv = matches!(self.def.name, "goto" | "exec");
        if reaches_url_or_argv && s.contains(char::is_control) {
            return Err("a control character (expected printable text; write \\n or \\t only where a browser types it)".into());
        }
        Ok(t)
    }
}

/// How an extra key is read, by the type of its field.
trait Read: Sized {
    fn read(a: &Reader<'_>, key: &str) -> Result<Self, Bad>;
}

impl Read for Option<Template> {
    fn read(a: &Reader<'_>, key: &str) -> Result<Self, Bad> {
        a.key(key, |v| a.template(v))
    }
}

impl Read for Template {
    fn read(a: &Reader<'_>, key: &str) -> Result<Self, Bad> {
        let name = a.def.name;
        Option::<Template>::read(a, key)?.ok_or_else(|| {
            let message =
                format!("missing key {key:?} (expected {{ {name} = ..., {key} = \"...\" }})");
            Bad::new(a.raw.span(), name, message)
        })
    }
}

/// An extra key holding one path or a non-empty array of them (`upload`'s `file`).
impl Read for Vec<Template> {
    fn read(a: &Reader<'_>, key: &str) -> Result<Self, Bad> {
        let expected = "a path or a non-empty array of paths, like \"files/{account.id}.pdf\"";
        let path = |v: &Value| {
            let s = string(v, expected)?;
            if s.trim().is_empty() {
                return Err(format!("an empty path (expected {expected})"));
            }
            if s.contains(char::is_control) {
                return Err(format!(
                    "a control character in a path (expected {expected})"
                ));
            }
            a.template(v)
        };
        let paths = a.key(key, |v| match v {
            Value::Array(items) if items.is_empty() => {
                Err(format!("an empty array (expected {expected})"))
            }
            Value::Array(items) => items.iter().map(path).collect(),
            one => Ok(vec![path(one)?]),
        })?;
        let name = a.def.name;
        paths.ok_or_else(|| {
            let message =
                format!("missing key {key:?} (expected {{ {name} = ..., {key} = \"...\" }})");
            Bad::new(a.raw.span(), name, message)
        })
    }
}

/// Where an upload's file is: `rendered` (a rendered `file` path) taken from `root`
/// (`batch.toml`'s directory) when relative, and why it cannot be sent, if it cannot —
/// not a regular file, or not readable by us. Checked when the run is planned (for
/// every account that runs) and again when the action runs.
pub fn upload_path(root: &std::path::Path, rendered: &str) -> Result<std::path::PathBuf, String> {
    if rendered.contains(char::is_control) {
        return Err("has a control character".into());
    }
    let path = root.join(rendered);
    let path = std::path::absolute(&path).unwrap_or(path);
    match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => std::fs::File::open(&path)
            .map(|_| path)
            .map_err(|e| format!("cannot be read: {e}")),
        Ok(_) => Err("is not a regular file".into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err("does not exist".into()),
        Err(e) => Err(format!("cannot be read: {e}")),
    }
}

impl Read for Option<Duration> {
    fn read(a: &Reader<'_>, key: &str) -> Result<Self, Bad> {
        a.key(key, |v| positive(v, "timeout", "5s"))
    }
}

/// `optional = true`: absent is `false`.
impl Read for bool {
    fn read(a: &Reader<'_>, key: &str) -> Result<Self, Bad> {
        let flag = a.key(key, |v| {
            v.as_bool().ok_or_else(|| found(v, "true or false"))
        })?;
        Ok(flag.unwrap_or(false))
    }
}

impl Read for Option<String> {
    fn read(a: &Reader<'_>, key: &str) -> Result<Self, Bad> {
        a.key(key, name)
    }
}

/// What the runner asks of an action's fields, found by their types: the templates
/// (to render and check) of a `Template`, `Option<Template>` or `Vec<Template>`.
fn templates_in(field: &dyn Any) -> Vec<&Template> {
    let one = field.downcast_ref::<Template>().into_iter();
    let opt = field
        .downcast_ref::<Option<Template>>()
        .into_iter()
        .flatten();
    let many = field.downcast_ref::<Vec<Template>>().into_iter().flatten();
    one.chain(opt).chain(many).collect()
}

/// Whether `field` is `optional` (the one `bool` field) and it is `true`.
fn optional_in(field: &dyn Any) -> bool {
    field.downcast_ref::<bool>().copied().unwrap_or(false)
}

/// The timeout, if `field` is one (an `Option<Duration>`) and it was given.
fn timeout_in(field: &dyn Any) -> Option<Duration> {
    field.downcast_ref::<Option<Duration>>().copied().flatten()
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
    fn press_keys_and_their_modifiers() {
        for (key, expected) in [
            ("Enter", Some((vec![], "Enter"))),
            ("a", Some((vec![], "a"))),
            ("+", Some((vec![], "+"))),
            ("Control+a", Some((vec!["Control"], "a"))),
            (
                "Control+Shift+ArrowLeft",
                Some((vec!["Control", "Shift"], "ArrowLeft")),
            ),
            ("Shift++", Some((vec!["Shift"], "+"))),
            ("Meta+Enter", Some((vec!["Meta"], "Enter"))),
            ("Hyper+a", None),
            ("Control+", None),
            ("Control+ab", None),
            ("+a", None),
            ("Enterr", None),
        ] {
            assert_eq!(press_parts(key), expected, "{key:?}");
        }
    }

    #[test]
    fn every_action_builds_and_names_itself() {
        for def in ACTIONS {
            let mut text = format!("x = [{{ {} = ", def.name);
            text.push_str(match def.arg {
                "DUR" => "\"1s\"",
                "KEY" => "\"Enter\"",
                "WHICH" => "\"new\"",
                "ANSWER" => "\"accept\"",
                "[ARGV...]" => "[\"true\"]",
                _ => "\"a\"",
            });
            for key in def.extra {
                let value = match *key {
                    "timeout" => "\"1s\"",
                    "file" => "[\"b\", \"c\"]",
                    "optional" => "true",
                    _ => "\"b\"",
                };
                text.push_str(&format!(", {key} = {value}"));
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
            assert_eq!(kind.optional(), def.extra.contains(&"optional"), "{text}");
        }
    }
}
