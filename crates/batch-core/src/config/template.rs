//! Templates (`"{base_url}/item/{iteration}"`): parsing, and rendering with secrets
//! redacted (what is secret is decided in the `secrets` module).
//!
//! Main items: [`Template::parse`], [`Template::render`].
//! Whether every variable a workflow uses is available for the accounts that run is
//! checked by `check_templates` in the workflow module, not here.

use std::fmt;

use super::secrets::{REDACTED, is_secret_name};
use super::{Account, EnvLookup, process_env};

/// A parsed template string: literal text and variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// The source text as written.
    pub source: String,
    /// The parts, in order.
    pub parts: Vec<Part>,
}

/// A piece of a [`Template`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Literal text (`{{`/`}}` already unescaped).
    Lit(String),
    /// `{base_url}`.
    BaseUrl,
    /// `{account.FIELD}` (`{account.id}` is the id).
    Account(String),
    /// `{iteration}` (1-based; 0 in `before`/`after`).
    Iteration,
    /// `{step.id}`.
    StepId,
    /// `{env.NAME}` — always treated as a secret.
    Env(String),
    /// `{totp.FIELD}`: the one-time code of the moment for the TOTP secret in the
    /// account's FIELD — always treated as a secret, and so is FIELD.
    Totp(String),
    /// `{data.FIELD}`: the iteration's row of the step's data file.
    Data(String),
}

/// What a template is rendered against.
#[derive(Debug, Clone, Copy)]
pub struct Vars<'a> {
    /// The base URL in force.
    pub base_url: &'a str,
    /// The account.
    pub account: &'a Account,
    /// The iteration (0 outside `actions`).
    pub iteration: u32,
    /// The step id.
    pub step: u32,
    /// The iteration's row of the step's data file (None outside `actions`, or for a
    /// step without one).
    pub data: Option<&'a super::DataRow>,
}

/// A rendered template: the real value, and the same with every secret as `***`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// What the browser gets.
    pub value: String,
    /// What any output, log, journal or report may show.
    pub redacted: String,
}

const VARIABLES_EXPECTED: &str = "{base_url}, {account.FIELD}, {iteration}, {step.id}, {env.NAME}, {totp.FIELD} or {data.FIELD}; {{ and }} for literal braces";

impl Template {
    /// `fn(&str) -> Template`: splits the source into literal text and variables.
    ///
    /// Errors name the offending variable (or the position of a stray brace).
    pub fn parse(s: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = s;
        while let Some(i) = rest.find(['{', '}']) {
            lit.push_str(&rest[..i]);
            let brace = &rest[i..];
            let position = s.len() - brace.len();
            let char_pos = s[..position].chars().count() + 1;
            if let Some(after) = brace.strip_prefix("{{") {
                lit.push('{');
                rest = after;
            } else if let Some(after) = brace.strip_prefix("}}") {
                lit.push('}');
                rest = after;
            } else if brace.starts_with('}') {
                return Err(format!(
                    "lone \"}}\" at character {char_pos} (expected }}}} for a literal brace)"
                ));
            } else {
                let Some(end) = brace.find('}') else {
                    return Err(format!(
                        "unclosed \"{{\" at character {char_pos} (expected a variable like \
                         {{account.username}}, or {{{{ for a literal brace)"
                    ));
                };
                let part = parse_variable(&brace[1..end])?;
                if !lit.is_empty() {
                    parts.push(Part::Lit(std::mem::take(&mut lit)));
                }
                parts.push(part);
                rest = &brace[end + 1..];
            }
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Template {
            source: s.to_owned(),
            parts,
        })
    }

    /// `fn(&Vars) -> Rendered`: the text with every variable filled in, and the same
    /// with each secret part (a secret account field, any `{env.NAME}`) as `***`.
    ///
    /// `{env.NAME}` is read from the process environment; see [`Template::render_with_env`].
    pub fn render(&self, vars: &Vars<'_>) -> Result<Rendered, String> {
        self.render_with_env(vars, &process_env)
    }

    /// [`Template::render`], reading `{env.NAME}` through `env`.
    pub fn render_with_env(&self, vars: &Vars<'_>, env: EnvLookup<'_>) -> Result<Rendered, String> {
        let mut value = String::new();
        let mut redacted = String::new();
        for part in &self.parts {
            let field = |name: &str| {
                vars.account.fields.get(name).ok_or_else(|| {
                    format!(
                        "{part}: account {} has no field {name:?} (expected the field in the \
                         accounts file)",
                        vars.account.id
                    )
                })
            };
            let (text, secret) = match part {
                Part::Lit(s) => (s.clone(), false),
                Part::BaseUrl => (vars.base_url.to_owned(), false),
                Part::Iteration => (vars.iteration.to_string(), false),
                Part::StepId => (vars.step.to_string(), false),
                Part::Account(field) if field == "id" => (vars.account.id.to_string(), false),
                Part::Account(name) => {
                    let v = field(name)?;
                    (v.value.clone(), v.secret)
                }
                // Made at the moment of rendering, which is just before the browser
                // gets it: a code made earlier could expire on the way.
                Part::Totp(name) => {
                    let code = crate::totp::code_now(&field(name)?.value).map_err(|why| {
                        let why = crate::totp::not_a_secret(&why);
                        format!("{part}: the value of account {} {why}", vars.account.id)
                    })?;
                    (code, true)
                }
                Part::Data(name) => {
                    let row = vars.data.ok_or_else(|| {
                        format!("{part}: no row of the step's data here (expected it in a step's actions, with data)")
                    })?;
                    let v = row
                        .fields
                        .get(name)
                        .ok_or_else(|| format!("{part}: the step's data has no column {name:?}"))?;
                    (v.value.clone(), v.secret)
                }
                Part::Env(name) => match env(name) {
                    Some(v) => (v, true),
                    None => {
                        return Err(format!(
                            "{{env.{name}}}: environment variable {name} is not set (expected \
                             it set)"
                        ));
                    }
                },
            };
            value.push_str(&text);
            redacted.push_str(if secret { REDACTED } else { &text });
        }
        Ok(Rendered { value, redacted })
    }

    /// True if rendering for `account` puts no secret into the text: no `{env.NAME}`
    /// and no secret field of that account (a field the account lacks counts as
    /// secret when its name says so).
    pub fn is_secret_free(&self, account: &Account) -> bool {
        self.parts.iter().all(|part| match part {
            Part::Env(_) | Part::Totp(_) => false,
            Part::Account(field) if field == "id" => true,
            Part::Account(field) => match account.fields.get(field) {
                Some(v) => !v.secret,
                None => !is_secret_name(field),
            },
            Part::Data(column) => !is_secret_name(column),
            _ => true,
        })
    }

    /// The TOTP secrets `account`'s `{totp.FIELD}`s here read (fields it lacks left
    /// out: rendering says so), for the runner to claim their windows first.
    pub fn totp_seeds<'a>(&'a self, account: &'a Account) -> impl Iterator<Item = &'a str> {
        self.parts.iter().filter_map(|part| match part {
            Part::Totp(field) => account.fields.get(field).map(|v| v.value.as_str()),
            _ => None,
        })
    }

    /// The variables (every part but literal text), in order.
    pub fn variables(&self) -> impl Iterator<Item = &Part> {
        self.parts.iter().filter(|p| !matches!(p, Part::Lit(_)))
    }
}

impl fmt::Display for Template {
    /// The source as written (variables unexpanded, so no secret can show).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl fmt::Display for Part {
    /// The variable as written in a template (`{account.username}`), or the literal text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Part::Lit(s) => f.write_str(s),
            Part::BaseUrl => f.write_str("{base_url}"),
            Part::Account(field) => write!(f, "{{account.{field}}}"),
            Part::Iteration => f.write_str("{iteration}"),
            Part::StepId => f.write_str("{step.id}"),
            Part::Env(name) => write!(f, "{{env.{name}}}"),
            Part::Totp(field) => write!(f, "{{totp.{field}}}"),
            Part::Data(field) => write!(f, "{{data.{field}}}"),
        }
    }
}

fn parse_variable(name: &str) -> Result<Part, String> {
    let field_ok = |f: &str| {
        !f.is_empty()
            && f.chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
    };
    let var_ok = |v: &str| {
        v.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    match name {
        "base_url" => Ok(Part::BaseUrl),
        "iteration" => Ok(Part::Iteration),
        "step.id" => Ok(Part::StepId),
        _ => match (name.strip_prefix("account."), name.strip_prefix("env.")) {
            (Some(field), _) if field_ok(field) => Ok(Part::Account(field.to_owned())),
            (Some(_), _) => Err(format!(
                "bad field name in {{{name}}} (expected {{account.FIELD}} with FIELD made of \
                 letters, digits, _ and -)"
            )),
            _ if name.starts_with("data.") => match &name["data.".len()..] {
                field if field_ok(field) => Ok(Part::Data(field.to_owned())),
                _ => Err(format!(
                    "bad column name in {{{name}}} (expected {{data.FIELD}} with FIELD made of \
                     letters, digits, _ and -)"
                )),
            },
            _ if name.starts_with("totp.") => match &name["totp.".len()..] {
                "id" => Err(format!(
                    "{{{name}}} names the account id (expected {{totp.FIELD}} with FIELD the \
                     field that holds the account's TOTP secret)"
                )),
                field if field_ok(field) => Ok(Part::Totp(field.to_owned())),
                _ => Err(format!(
                    "bad field name in {{{name}}} (expected {{totp.FIELD}} with FIELD made of \
                     letters, digits, _ and -)"
                )),
            },
            (_, Some(var)) if var_ok(var) => Ok(Part::Env(var.to_owned())),
            (_, Some(_)) => Err(format!(
                "bad variable name in {{{name}}} (expected {{env.NAME}} with NAME made of ASCII \
                 letters, digits and _)"
            )),
            _ => Err(format!(
                "unknown variable {{{name}}} (expected {VARIABLES_EXPECTED})"
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use super::*;
    use crate::config::{FieldValue, redact, redact_values};

    fn account() -> Account {
        let field = |value: &str, secret: bool| FieldValue {
            value: value.to_owned(),
            secret,
        };
        Account {
            id: 7,
            fields: BTreeMap::from([
                ("username".to_owned(), field("user-7", false)),
                ("password".to_owned(), field("p@ss word/7", true)),
                ("api_token".to_owned(), field("tok", true)),
                // RFC 6238's SHA-1 test key, as a site would show it.
                (
                    "otp".to_owned(),
                    field("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", false),
                ),
                ("not_otp".to_owned(), field("hunter2!", false)),
            ]),
        }
    }

    fn check_parse(input: &str, expected: Result<Vec<Part>, &str>) {
        let got = Template::parse(input);
        match (&got, &expected) {
            (Ok(t), Ok(parts)) => {
                assert_eq!(&t.parts, parts, "input {input:?}");
                assert_eq!(t.to_string(), input);
            }
            (Err(g), Err(e)) => assert!(g.contains(e), "input {input:?}: {g:?} lacks {e:?}"),
            _ => panic!("input {input:?}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn parsing() {
        let lit = |s: &str| Part::Lit(s.to_owned());
        let acc = |s: &str| Part::Account(s.to_owned());
        check_parse("", Ok(vec![]));
        check_parse("plain", Ok(vec![lit("plain")]));
        check_parse(
            "{base_url}/item/{iteration}",
            Ok(vec![Part::BaseUrl, lit("/item/"), Part::Iteration]),
        );
        check_parse(
            "{account.username}:{account.id}@{step.id}",
            Ok(vec![
                acc("username"),
                lit(":"),
                acc("id"),
                lit("@"),
                Part::StepId,
            ]),
        );
        check_parse("{env.API_KEY}", Ok(vec![Part::Env("API_KEY".to_owned())]));
        check_parse("{{x}} {{", Ok(vec![lit("{x} {")]));
        check_parse(
            "if (a) {{ return {iteration}; }}",
            Ok(vec![lit("if (a) { return "), Part::Iteration, lit("; }")]),
        );
        check_parse("{foo}", Err("unknown variable {foo} (expected {base_url}"));
        check_parse("a {account} b", Err("unknown variable {account}"));
        check_parse("{ base_url }", Err("unknown variable { base_url }"));
        check_parse("{account.}", Err("bad field name in {account.}"));
        check_parse("{env.1X}", Err("bad variable name in {env.1X}"));
        check_parse(
            "code {totp.otp}",
            Ok(vec![lit("code "), Part::Totp("otp".into())]),
        );
        check_parse(
            "{totp.}",
            Err("bad field name in {totp.} (expected {totp.FIELD}"),
        );
        check_parse("{totp.id}", Err("{totp.id} names the account id"));
        check_parse("{totp}", Err("unknown variable {totp} (expected"));
        check_parse("abc {base_url", Err("unclosed \"{\" at character 5"));
        check_parse("a } b", Err("lone \"}\" at character 3"));
        check_parse("{iteration}}", Err("lone \"}\" at character 12"));
    }

    /// The variables an unknown variable's message offers are exactly the ones the
    /// docs' Templates section opens with, and each of them parses.
    #[test]
    fn the_variables_offered_are_the_documented_ones() {
        let path = format!("{}/../../docs/workflows.md", env!("CARGO_MANIFEST_DIR"));
        let docs = std::fs::read_to_string(&path).unwrap();
        let section = docs
            .split("\n## Templates\n")
            .nth(1)
            .expect("a Templates section");
        let first_paragraph = section.trim_start().split("\n\n").next().unwrap();
        let variables = |text: &str| -> Vec<String> {
            let mut found: Vec<String> = text
                .split('`')
                .skip(1)
                .step_by(2)
                .filter(|s| s.starts_with('{') && s.ends_with('}') && !s.starts_with("{{"))
                .map(str::to_owned)
                .collect();
            found.sort();
            found.dedup();
            found
        };
        let quoted = VARIABLES_EXPECTED
            .split("; ")
            .next()
            .unwrap()
            .replace(", ", "` `")
            .replace(" or ", "` `");
        let offered = variables(&format!("`{quoted}`"));
        assert_eq!(offered, variables(first_paragraph), "{first_paragraph}");
        assert_eq!(offered.len(), 7, "{offered:?}");
        for v in offered {
            let example = v.replace("FIELD", "username").replace("NAME", "HOME");
            Template::parse(&example).unwrap_or_else(|e| panic!("{v}: {e}"));
        }
    }

    fn vars(account: &Account) -> Vars<'_> {
        Vars {
            base_url: "http://h",
            account,
            iteration: 3,
            step: 2,
            data: None,
        }
    }

    fn check_render(input: &str, expected: Result<(&str, &str), &str>) {
        let account = account();
        let vars = vars(&account);
        let env_map = HashMap::from([("API_KEY", "k-123")]);
        let env = |name: &str| env_map.get(name).map(|v| (*v).to_owned());
        let got = Template::parse(input).unwrap().render_with_env(&vars, &env);
        match (&got, &expected) {
            (Ok(r), Ok((value, redacted))) => {
                assert_eq!((r.value.as_str(), r.redacted.as_str()), (*value, *redacted));
            }
            (Err(g), Err(e)) => assert!(g.contains(e), "input {input:?}: {g:?} lacks {e:?}"),
            _ => panic!("input {input:?}: got {got:?}, expected {expected:?}"),
        }
        if let Err(message) = &got {
            for secret in ["p@ss word/7", "tok", "k-123", "hunter2"] {
                assert!(!message.contains(secret), "{message}");
            }
        }
    }

    #[test]
    fn rendering() {
        check_render(
            "{base_url}/item/{iteration}?s={step.id}",
            Ok(("http://h/item/3?s=2", "http://h/item/3?s=2")),
        );
        check_render(
            "{account.username}/{account.id}",
            Ok(("user-7/7", "user-7/7")),
        );
        check_render(
            "{base_url}/login?u={account.username}&p={account.password}",
            Ok((
                "http://h/login?u=user-7&p=p@ss word/7",
                "http://h/login?u=user-7&p=***",
            )),
        );
        check_render("key={env.API_KEY}", Ok(("key=k-123", "key=***")));
        check_render("{{{account.api_token}}}", Ok(("{tok}", "{***}")));
        check_render("{account.email}", Err("account 7 has no field \"email\""));
        check_render("{env.NOT_SET_ANYWHERE}", Err("NOT_SET_ANYWHERE is not set"));
        check_render("{totp.email}", Err("account 7 has no field \"email\""));
        check_render(
            "{totp.not_otp}",
            Err("{totp.not_otp}: the value of account 7 is not a TOTP secret: not base32"),
        );
    }

    /// The code is the one of the moment, and is never shown.
    #[test]
    fn a_one_time_code_is_rendered_now_and_redacted() {
        let account = account();
        let vars = vars(&account);
        let t = Template::parse("code={totp.otp}").unwrap();
        let now = || {
            let unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
            unix.unwrap().as_secs()
        };
        let (before, r, after) = (now(), t.render(&vars).unwrap(), now());
        let seed = &account.fields["otp"].value;
        let codes: Vec<String> = [before, after]
            .iter()
            .map(|&t| format!("code={}", crate::totp::code_at(seed, t).unwrap()))
            .collect();
        assert!(codes.contains(&r.value), "{r:?} is none of {codes:?}");
        assert_eq!(r.redacted, "code=***");
        assert!(!t.is_secret_free(&account));
    }

    #[test]
    fn secret_free() {
        let account = account();
        let check = |input: &str, expected: bool| {
            let t = Template::parse(input).unwrap();
            assert_eq!(t.is_secret_free(&account), expected, "input {input:?}");
        };
        check(
            "{account.username} {account.id} {iteration} {base_url}",
            true,
        );
        check("{account.password}", false);
        check("{account.api_token}", false);
        check("{env.HOME}", false);
        check("{account.missing}", true);
        check("{account.missing_secret}", false);
        check("{totp.otp}", false);
    }

    #[test]
    fn redacting() {
        let account = account();
        let check = |input: &str, expected: &str| {
            assert_eq!(redact(input, &account), expected, "input {input:?}");
        };
        check("no secrets here, user-7", "no secrets here, user-7");
        check("bad password p@ss word/7!", "bad password ***!");
        check("url: /login?p=p%40ss%20word%2F7", "url: /login?p=***");
        check("form: p%40ss+word%2F7", "form: ***");
        check("lower: p%40ss%20word%2f7", "lower: ***");
        // Every occurrence, even inside a word: a secret never shows.
        check("tokens: tok tok", "***ens: *** ***");
        assert_eq!(
            redact_values("a\"b in json: a\\\"b", &["a\"b"]),
            "*** in json: ***"
        );
        assert_eq!(redact_values("nothing", &[""]), "nothing");
    }
}
