//! Secrets and their redaction: [`Secrets`] holds every secret value of a run (or of
//! one account), collected once, and [`Secrets::redact`] replaces each of them in free
//! text by `***` — in every form a browser, a URL or a JSON encoder may give it.
//!
//! What counts as a secret: account fields named `password`/`secret`/`token` (or
//! containing those words), every `{ env = ... }` value, every `{env.NAME}` value the
//! workflow uses, and the userinfo of any URL on the command line or in the workflow's
//! `base_url` (`http://user:pass@host`). See [`Secrets::for_run`].
//!
//! The forms recognized, character by character and in any mix (a browser encodes only
//! some characters of a URL, and not the same ones in the path, the query and the
//! fragment): the raw character; each of its UTF-8 bytes percent-encoded in upper or
//! lower case hex (`encodeURIComponent`, `encodeURI`, the WHATWG URL encoder, strict
//! RFC 3986), also twice (`%2520`); `+` for a space (form encoding); the JSON string
//! escapes (`\"`, `\\`, `\/`, `\n`, `\uXXXX` in either case, surrogate pairs), also
//! percent-encoded (JSON in a URL); the HTML entities for `& < > " '`; and `/` for a
//! `\` (a special URL's path turns one into the other). Rather than enumerating every
//! encoder's output, the matcher accepts any text that decodes to the secret this way,
//! so a new mix of encodings cannot slip through.
//!
//! This is run-time redaction, not configuration: it lives beside the config module
//! (which decides what is secret, [`crate::config::is_secret_name`]) and is re-exported
//! there. It does not decide where redaction happens: the journal redacts every
//! event, the runner every recorded value and the report before it is written.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::Value;

use crate::config::{Account, EnvLookup, Part, REDACTED, Workflow};

/// `fn(text, account) -> text`: every form of each secret field value of `account`
/// replaced by `***` (see [`Secrets`], which a run builds once for
/// all its secrets; this is the same for one account).
pub fn redact(text: &str, account: &Account) -> String {
    Secrets::of_account(account).redact(text)
}

/// [`redact`] for an explicit list of secret values.
pub fn redact_values(text: &str, secrets: &[&str]) -> String {
    Secrets::new(secrets).redact(text)
}

/// The secret values of a run or an account; cheap to clone. `fn(text) -> text` with
/// every form of every secret replaced by `***`.
#[derive(Clone)]
pub struct Secrets {
    inner: Arc<Inner>,
}

struct Inner {
    /// Each secret as characters, longest first, non-empty, without duplicates.
    values: Vec<Vec<char>>,
    /// Per secret, every byte a match of it can start with.
    starts: Vec<[bool; 256]>,
    /// Every byte a match can start with, over all secrets.
    first_bytes: [bool; 256],
}

impl Default for Secrets {
    /// No secrets: redaction leaves every text as it is.
    fn default() -> Self {
        Secrets::new(std::iter::empty::<&str>())
    }
}

impl std::fmt::Debug for Secrets {
    // Never the values, only how many there are.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({} values)", self.inner.values.len())
    }
}

impl Secrets {
    /// These values as secrets (empty ones are ignored: they cannot leak).
    pub fn new<S: AsRef<str>>(values: impl IntoIterator<Item = S>) -> Secrets {
        let set: BTreeSet<String> = values
            .into_iter()
            .map(|s| s.as_ref().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        let mut values: Vec<Vec<char>> = set.iter().map(|s| s.chars().collect()).collect();
        // Longest first, so that a secret containing another is replaced whole.
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        let mut first_bytes = [false; 256];
        let mut starts = Vec::with_capacity(values.len());
        for v in &values {
            let mut start = [false; 256];
            for form in base_forms(v[0]) {
                start[usize::from(form[0])] = true;
            }
            start[usize::from(b'%')] = true;
            start[usize::from(b'\\')] = true;
            for (all, one) in first_bytes.iter_mut().zip(start) {
                *all |= one;
            }
            starts.push(start);
        }
        Secrets {
            inner: Arc::new(Inner {
                values,
                starts,
                first_bytes,
            }),
        }
    }

    /// The secret fields of one account.
    pub fn of_account(account: &Account) -> Secrets {
        Secrets::new(account_secrets(account))
    }

    /// Every secret of a run: the secret fields of `accounts`, the value of every
    /// `{env.NAME}` the workflow uses (read through `env`), and the userinfo of every
    /// URL in `argv`, the `base_url` and the accounts' fields.
    pub fn for_run(
        workflow: &Workflow,
        accounts: &[&Account],
        argv: &[String],
        env: EnvLookup<'_>,
    ) -> Secrets {
        let mut values: Vec<String> = Vec::new();
        for a in accounts {
            values.extend(account_secrets(a));
            for v in a.fields.values() {
                values.extend(url_userinfo(&v.value));
            }
            // A proxy's password as the forwarder sends it (percent-decoded: `p%40ss`
            // is the password `p@ss`), in case anything ever echoes it.
            let proxies = a.fields.get("proxy").map(|p| p.value.split_whitespace());
            for url in proxies.into_iter().flatten() {
                if let Ok(upstream) = forwarder::Upstream::parse(url)
                    && let Some(c) = upstream.credentials
                    && !c.password.is_empty()
                {
                    values.push(c.password);
                }
            }
        }
        for part in workflow.templates().flat_map(|t| &t.parts) {
            if let Part::Env(name) = part
                && let Some(v) = env(name)
            {
                values.push(v);
            }
        }
        for data in workflow.steps.iter().filter_map(|s| s.data.as_ref()) {
            values.extend(data.secrets().map(str::to_owned));
        }
        values.extend(url_userinfo(&workflow.base_url));
        for arg in argv {
            values.extend(url_userinfo(arg));
        }
        Secrets::new(values)
    }

    /// True if there is nothing to redact.
    pub fn is_empty(&self) -> bool {
        self.inner.values.is_empty()
    }

    /// `text` with every occurrence of every secret, in any of its forms, as `***`.
    pub fn redact(&self, text: &str) -> String {
        if self.is_empty() {
            return text.to_owned();
        }
        let bytes = text.as_bytes();
        let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
        let mut i = 0;
        let mut changed = false;
        while i < bytes.len() {
            if self.inner.first_bytes[usize::from(bytes[i])] {
                let end = self
                    .inner
                    .values
                    .iter()
                    .zip(&self.inner.starts)
                    .filter(|(_, start)| start[usize::from(bytes[i])])
                    .filter_map(|(s, _)| match_at(bytes, i, s))
                    .max();
                if let Some(end) = end {
                    out.extend_from_slice(REDACTED.as_bytes());
                    i = end;
                    changed = true;
                    continue;
                }
            }
            out.push(bytes[i]);
            i += 1;
        }
        if !changed {
            return text.to_owned();
        }
        // Matches start and end on character boundaries (every form is whole
        // characters), so this never replaces anything; lossy only as a safety net.
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }

    /// A JSON value with every string in it (keys included) redacted.
    pub fn redact_value(&self, value: &Value) -> Value {
        if self.is_empty() {
            return value.clone();
        }
        match value {
            Value::String(s) => Value::String(self.redact(s)),
            Value::Array(items) => {
                Value::Array(items.iter().map(|v| self.redact_value(v)).collect())
            }
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (self.redact(k), self.redact_value(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    /// True if `text` shows some secret in some form.
    pub fn appears_in(&self, text: &str) -> bool {
        self.redact(text) != text
    }
}

fn account_secrets(account: &Account) -> impl Iterator<Item = String> + '_ {
    account
        .fields
        .values()
        .filter(|v| v.secret)
        .map(|v| v.value.clone())
}

/// The credentials in every `scheme://userinfo@host` of `text`: the whole userinfo,
/// and the password alone when there is one (`user:pass` → `user:pass`, `pass`).
pub fn url_userinfo(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let after = &rest[i + 3..];
        let authority_end = after.find(['/', '?', '#', ' ']).unwrap_or(after.len());
        let authority = &after[..authority_end];
        if let Some(at) = authority.rfind('@') {
            let userinfo = &authority[..at];
            if !userinfo.is_empty() {
                out.push(userinfo.to_owned());
                if let Some((_, pass)) = userinfo.split_once(':')
                    && !pass.is_empty()
                {
                    out.push(pass.to_owned());
                }
            }
        }
        rest = after;
    }
    out
}

/// The end of the longest match of `secret` in `text` starting at `start`, if any.
///
/// A small NFA run: the set of text positions reachable after each character of the
/// secret, each character matching any of its forms.
fn match_at(text: &[u8], start: usize, secret: &[char]) -> Option<usize> {
    let mut positions = vec![start];
    let mut next = Vec::new();
    for &c in secret {
        next.clear();
        for form in base_forms(c) {
            for &p in &positions {
                match_form(text, p, &form, &mut next);
            }
        }
        if next.is_empty() {
            return None;
        }
        next.sort_unstable();
        next.dedup();
        std::mem::swap(&mut positions, &mut next);
    }
    positions.last().copied()
}

/// Push every end position of `form` matched at `pos`, each byte of it raw,
/// percent-encoded (any hex case), percent-encoded twice, or (for `\` and `"`)
/// JSON-escaped once more.
fn match_form(text: &[u8], pos: usize, form: &[u8], ends: &mut Vec<usize>) {
    let Some((&b, rest)) = form.split_first() else {
        ends.push(pos);
        return;
    };
    if text.get(pos) == Some(&b) {
        match_form(text, pos + 1, rest, ends);
    }
    // JSON inside JSON: the escapes of a first-level escape.
    if matches!(b, b'\\' | b'"') && text.get(pos) == Some(&b'\\') && text.get(pos + 1) == Some(&b) {
        match_form(text, pos + 2, rest, ends);
    }
    if text.get(pos) == Some(&b'%') {
        if hex_at(text, pos + 1) == Some(b) {
            match_form(text, pos + 3, rest, ends);
        }
        if text.get(pos + 1) == Some(&b'2')
            && text.get(pos + 2) == Some(&b'5')
            && hex_at(text, pos + 3) == Some(b)
        {
            match_form(text, pos + 5, rest, ends);
        }
    }
}

fn hex_at(text: &[u8], pos: usize) -> Option<u8> {
    let digit = |b: u8| (b as char).to_digit(16);
    let hi = digit(*text.get(pos)?)?;
    let lo = digit(*text.get(pos + 1)?)?;
    u8::try_from(hi * 16 + lo).ok()
}

/// The ways a character may be written besides itself, before any percent-encoding:
/// form encoding, JSON escapes, HTML entities, and `/` for a `\` (a special URL's path).
const FORMS: &[(char, &[&str])] = &[
    (' ', &["+"]),
    ('"', &["\\\"", "&quot;", "&#34;", "&#x22;"]),
    ('\\', &["\\\\", "/"]),
    ('/', &["\\/"]),
    ('\'', &["&#39;", "&#x27;", "&apos;", "\\'"]),
    ('&', &["&amp;", "&#38;"]),
    ('<', &["&lt;", "\\u003c", "\\u003C"]),
    ('>', &["&gt;", "\\u003e", "\\u003E"]),
    ('\n', &["\\n"]),
    ('\r', &["\\r"]),
    ('\t', &["\\t"]),
    ('\u{8}', &["\\b"]),
    ('\u{c}', &["\\f"]),
];

/// The ways one character may be written before any percent-encoding: itself, its
/// [`FORMS`], and (unless ASCII alphanumeric) its JSON `\uXXXX` escapes in either case.
fn base_forms(c: char) -> Vec<Vec<u8>> {
    let mut forms = vec![c.to_string().into_bytes()];
    let others = FORMS.iter().filter(|(f, _)| *f == c).flat_map(|(_, f)| *f);
    forms.extend(others.map(|s| s.as_bytes().to_vec()));
    if !c.is_ascii_alphanumeric() {
        let mut units = [0u16; 2];
        let units = c.encode_utf16(&mut units);
        let lower: String = units.iter().map(|u| format!("\\u{u:04x}")).collect();
        let upper: String = units.iter().map(|u| format!("\\u{u:04X}")).collect();
        forms.push(lower.clone().into_bytes());
        if upper != lower {
            forms.push(upper.into_bytes());
        }
    }
    forms
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The secrets the tests are about: every awkward character at once, and some alone.
    const AWKWARD: &[&str] = &[
        "Key7 zz@q",
        "p@ss word/7",
        "a/b#c?d&e=f",
        "it's \"quoted\"",
        "back\\slash",
        "ünï-cødé 密码 😀",
        "all of: @/#'\"\\ é+%~!*()",
        "100%",
        "tab\tnew\nline",
    ];

    // Encoders, written out here independently of the matcher.

    fn pct(s: &str, keep: impl Fn(u8) -> bool, lower: bool) -> String {
        let mut out = String::new();
        for b in s.bytes() {
            if keep(b) {
                out.push(char::from(b));
            } else if lower {
                out.push_str(&format!("%{b:02x}"));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }

    fn encode_uri_component(s: &str) -> String {
        pct(
            s,
            |b| b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b),
            false,
        )
    }

    fn encode_uri(s: &str) -> String {
        pct(
            s,
            |b| b.is_ascii_alphanumeric() || b"-_.!~*'();/?:@&=+$,#".contains(&b),
            false,
        )
    }

    fn strict(s: &str, lower: bool) -> String {
        pct(
            s,
            |b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b),
            lower,
        )
    }

    /// application/x-www-form-urlencoded, as browsers submit forms.
    fn form(s: &str) -> String {
        pct(
            s,
            |b| b.is_ascii_alphanumeric() || b"*-._ ".contains(&b),
            false,
        )
        .replace(' ', "+")
    }

    /// What Chromium shows for a query string (the WHATWG special-query set).
    fn url_query(s: &str) -> String {
        pct(
            s,
            |b| b > 0x20 && b < 0x7f && !b"\"#<>'".contains(&b),
            false,
        )
    }

    fn json(s: &str) -> String {
        let j = serde_json::to_string(s).unwrap();
        j[1..j.len() - 1].to_owned()
    }

    /// Python's `json.dumps` (ASCII only, `\uXXXX` for the rest).
    fn json_ascii(s: &str) -> String {
        let mut out = String::new();
        for c in json(s).chars() {
            if c.is_ascii() {
                out.push(c);
            } else {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
        }
        out
    }

    fn html(s: &str) -> String {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
            .replace('\'', "&#39;")
    }

    fn forms_of(secret: &str) -> Vec<(&'static str, String)> {
        vec![
            ("raw", secret.to_owned()),
            ("encodeURIComponent", encode_uri_component(secret)),
            ("encodeURI", encode_uri(secret)),
            ("strict upper", strict(secret, false)),
            ("strict lower", strict(secret, true)),
            ("form", form(secret)),
            ("url query", url_query(secret)),
            ("twice encoded", strict(&strict(secret, false), false)),
            ("json", json(secret)),
            ("json ascii", json_ascii(secret)),
            ("json then percent", encode_uri_component(&json(secret))),
            ("json in json", json(&json(secret))),
            ("html", html(secret)),
        ]
    }

    fn check(secrets: &Secrets, input: &str, expected: &str) {
        assert_eq!(secrets.redact(input), expected, "input {input:?}");
    }

    #[test]
    fn every_form_of_every_awkward_secret_is_redacted() {
        for secret in AWKWARD {
            let secrets = Secrets::new([secret]);
            for (name, form) in forms_of(secret) {
                let input = format!("before {form} after");
                let got = secrets.redact(&input);
                assert_eq!(
                    got, "before *** after",
                    "{name} form {form:?} of {secret:?}"
                );
                // In a URL and in a JSON document, too.
                let url = format!("http://h/item/1?k={form}&x=1");
                assert_eq!(secrets.redact(&url), "http://h/item/1?k=***&x=1", "{name}");
            }
        }
    }

    #[test]
    fn plain_text_and_near_misses_are_left_alone() {
        let secrets = Secrets::new(["p@ss word/7", "tok"]);
        check(
            &secrets,
            "no secrets here, user-7",
            "no secrets here, user-7",
        );
        check(&secrets, "p@ss word/8", "p@ss word/8");
        check(&secrets, "p%40ss%20word", "p%40ss%20word");
        check(&secrets, "TOK", "TOK");
        check(&secrets, "", "");
        check(&secrets, "ünïcode stays ünïcode", "ünïcode stays ünïcode");
        check(&Secrets::default(), "tok", "tok");
        check(&Secrets::new([""]), "nothing", "nothing");
    }

    #[test]
    fn every_occurrence_of_every_secret_goes() {
        let secrets = Secrets::new(["p@ss word/7", "tok", "p@ss"]);
        check(&secrets, "bad password p@ss word/7!", "bad password ***!");
        check(
            &secrets,
            "url: /login?p=p%40ss%20word%2F7",
            "url: /login?p=***",
        );
        check(&secrets, "mixed: p@ss%20word/7", "mixed: ***");
        // Inside a word too: a secret never shows.
        check(
            &secrets,
            "tokens: tok tok p@ssport",
            "***ens: *** *** ***port",
        );
        // The longest secret wins where two overlap.
        check(&secrets, "p@ss word/7 and p@ss", "*** and ***");
    }

    #[test]
    fn json_values_are_redacted_throughout() {
        let secrets = Secrets::new(["Key7 zz@q"]);
        let v = serde_json::json!({
            "url": "http://h/?k=Key7%20zz@q",
            "list": ["Key7 zz@q", 3, null],
            "Key7+zz%40q": true,
        });
        assert_eq!(
            secrets.redact_value(&v),
            serde_json::json!({"url": "http://h/?k=***", "list": ["***", 3, null], "***": true})
        );
    }

    #[test]
    fn url_credentials_are_found() {
        fn check(text: &str, expected: &[&str]) {
            assert_eq!(url_userinfo(text), expected, "{text:?}");
        }
        check("http://host:1/x", &[]);
        check("http://user:pa%40ss@host:1/x", &["user:pa%40ss", "pa%40ss"]);
        check("--base-url=https://tok@h", &["tok"]);
        check(
            "socks5://u:p@h:1 and http://a:b@c",
            &["u:p", "p", "a:b", "b"],
        );
        check("http://h/path?email=a@b", &[]);
    }

    #[test]
    fn a_run_collects_accounts_env_values_and_url_credentials() {
        use crate::config::{Action, ActionKind, FieldValue, Step, Template};
        let account = Account {
            id: 1,
            fields: [
                ("username", "user-1", false),
                ("password", "pw-1", true),
                ("home", "http://u:hpw@h", false),
                ("proxy", "socks5://pu:p%40ss%2Fx@127.0.0.1:1080", false),
            ]
            .into_iter()
            .map(|(k, v, secret)| {
                (
                    k.to_owned(),
                    FieldValue {
                        value: v.to_owned(),
                        secret,
                    },
                )
            })
            .collect(),
        };
        let workflow = Workflow {
            path: "w.toml".into(),
            base_url: "http://bu:bpw@127.0.0.1:1".into(),
            steps: vec![Step {
                id: 1,
                name: "s".into(),
                before: vec![],
                actions: vec![Action {
                    line: 1,
                    kind: ActionKind::Goto {
                        url: Template::parse("{base_url}/?k={env.API_KEY}").unwrap(),
                        timeout: None,
                    },
                }],
                after: vec![],
                challenge_selector: None,
                challenge_text: None,
                data: None,
            }],
        };
        let env = |name: &str| (name == "API_KEY").then(|| "env-key".to_owned());
        let argv = vec!["--base-url".to_owned(), "http://cu:cpw@h".to_owned()];
        let secrets = Secrets::for_run(&workflow, &[&account], &argv, &env);
        for s in [
            "pw-1",
            "hpw",
            "bpw",
            "env-key",
            "cpw",
            "cu:cpw",
            "p%40ss%2Fx",
            "p@ss/x",
        ] {
            assert!(secrets.appears_in(s), "{s}");
        }
        assert!(!secrets.appears_in("user-1"));
        assert_eq!(secrets.redact("http://cu:cpw@h/x"), "http://***@h/x");
        assert_eq!(secrets.redact("sent p@ss/x"), "sent ***");
        assert_eq!(format!("{secrets:?}"), "Secrets(11 values)");
    }
}
