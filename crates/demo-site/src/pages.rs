//! The demo site's HTML: every page as a function from values to a `String`.
//!
//! Pages are self-contained (inline CSS and JS, no external assets) because the
//! browsers under test have no internet. The element ids here (`#username`,
//! `#password`, `#submit`, `#error`, `#welcome`, `#code`, `#verify`, `#verified`,
//! `#title`, `#add`, `#done`, `#slow`, `#echo`, `#country`, `#save`, `#saved`,
//! `#consent`, `#accept`, `#newsletter`, `#terms`, `#terms-label`, `#pay-title`,
//! `#card-frame`, `#card-number`, `#pay`, `#paid`, `#connect`, `#connected`, `#allow`,
//! `#more`, `#clear`, `#rename`, `#notice`, `#message`, `#status`, `#loading`) are what workflows and end-to-end
//! tests select on, so they are part of the site's contract. This module does no I/O
//! and knows nothing about sessions; every value that may come from a client goes
//! through [`escape`].

use std::fmt::Write as _;

/// Escapes text for an HTML text node or a double- or single-quoted attribute.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Wraps a body in the common document. `title` is escaped; `body` is trusted
/// markup built by the functions below.
fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{title}</title>\n\
         <style>body{{font-family:sans-serif;max-width:40em;margin:2em auto}}\
         label{{display:block;margin:.5em 0}}#error{{color:#b00}}</style>\n\
         </head>\n<body>\n{body}\n</body>\n</html>\n",
        title = escape(title),
    )
}

/// The login form, optionally with the error line and the username the user typed.
pub(crate) fn login(error: Option<&str>, username: &str) -> String {
    let error = error.map_or_else(String::new, |e| {
        format!("<p id=\"error\">{}</p>\n", escape(e))
    });
    layout(
        "Log in",
        &format!(
            "<h1>Log in</h1>\n{error}\
             <form method=\"post\" action=\"/login\">\n\
             <label>Username <input id=\"username\" name=\"username\" value=\"{username}\" autocomplete=\"username\"></label>\n\
             <label>Password <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\"></label>\n\
             <button id=\"submit\" type=\"submit\">Log in</button>\n\
             </form>",
            username = escape(username),
        ),
    )
}

/// What a challenged user gets instead of a session: a captcha wall.
pub(crate) fn challenge() -> String {
    layout(
        "Too Many Requests",
        "<h1>Too Many Requests</h1>\n\
         <div id=\"captcha\">Please verify that you are human.</div>",
    )
}

/// How many item links the home page offers; any `/item/{n}` works regardless.
const HOME_ITEMS: u32 = 5;

/// The logged-in landing page.
pub(crate) fn home(user: &str) -> String {
    let mut links = String::new();
    for n in 1..=HOME_ITEMS {
        let _ = writeln!(
            links,
            "<li><a id=\"item-{n}\" href=\"/item/{n}\">Item {n}</a></li>"
        );
    }
    layout(
        "Home",
        &format!(
            "<h1 id=\"welcome\">Welcome, {user}</h1>\n<ul id=\"items\">\n{links}</ul>\n\
             <p><a id=\"login\" href=\"/login\">Log in as someone else</a></p>",
            user = escape(user),
        ),
    )
}

/// An item page whose button adds the item to the cart through `/api/cart`.
///
/// `#done` is cleared when the button is pressed, so that a `wait_text` after a
/// second press waits for that press's answer rather than matching the first one.
pub(crate) fn item(n: u32) -> String {
    layout(
        &format!("Item {n}"),
        &format!(
            "<h1 id=\"title\">Item {n}</h1>\n\
             <button id=\"add\">Add to cart</button>\n\
             <div id=\"done\"></div>\n\
             <p><a id=\"export\" href=\"/export/{n}\">Export</a></p>\n\
             <p><a id=\"home\" href=\"/home\">Home</a></p>\n\
             <script>\n\
             document.getElementById('add').addEventListener('click', async () => {{\n\
             \x20 const done = document.getElementById('done');\n\
             \x20 done.textContent = '';\n\
             \x20 try {{\n\
             \x20   const r = await fetch('/api/cart', {{method: 'POST', credentials: 'same-origin', \
             headers: {{'content-type': 'application/json'}}, body: JSON.stringify({{item: {n}}})}});\n\
             \x20   done.textContent = r.status === 200 ? 'added {n}' : 'error ' + r.status;\n\
             \x20 }} catch (e) {{\n\
             \x20   done.textContent = 'error ' + e;\n\
             \x20 }}\n\
             }});\n\
             </script>"
        ),
    )
}

/// The upload form. The file input is hidden, as on most styled sites (a label or a
/// button opens the picker), so a client must set its files without clicking it.
pub(crate) fn upload_form() -> String {
    layout(
        "Upload",
        "<form id=\"upload-form\" method=\"post\" action=\"/upload\" enctype=\"multipart/form-data\">\n\
         <label for=\"doc\">Choose files</label>\n\
         <input type=\"file\" id=\"doc\" name=\"doc\" multiple style=\"display:none\">\n\
         <button id=\"send\" type=\"submit\">Send</button>\n\
         </form>",
    )
}

/// What `POST /upload` answers: how many files arrived, and each name and size.
pub(crate) fn upload_done(files: &[crate::Upload]) -> String {
    let mut items = String::new();
    for f in files {
        let _ = writeln!(items, "<li>{} ({} bytes)</li>", escape(&f.name), f.bytes);
    }
    let n = files.len();
    let noun = if n == 1 { "file" } else { "files" };
    layout(
        "Uploaded",
        &format!("<p id=\"received\">received {n} {noun}</p>\n<ul id=\"files\">\n{items}</ul>"),
    )
}

/// The second-factor form: a one-time code, optionally with the error line.
pub(crate) fn verify_form(error: Option<&str>) -> String {
    let error = error.map_or_else(String::new, |e| {
        format!("<p id=\"error\">{}</p>\n", escape(e))
    });
    layout(
        "Verify",
        &format!(
            "<h1>Enter the code from your authenticator app</h1>\n{error}\
             <form method=\"post\" action=\"/verify\">\n\
             <label>Code <input id=\"code\" name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\"></label>\n\
             <button id=\"verify\" type=\"submit\">Verify</button>\n\
             </form>"
        ),
    )
}

/// What a good code gets.
pub(crate) fn verified(user: &str) -> String {
    layout(
        "Verified",
        &format!("<p id=\"verified\">verified {}</p>", escape(user)),
    )
}

/// The countries `/settings` offers, as `(value, text)`; `fr` is there but disabled.
pub(crate) const COUNTRIES: &[(&str, &str)] = &[
    ("kr", "Korea"),
    ("jp", "Japan"),
    ("de", "Germany"),
    ("fr", "France"),
];

/// The settings form. Its `<select>` starts with a placeholder only and gets its
/// countries 300 ms later, as a list loaded from an API would (`#loading` shows
/// until then); `France` is disabled.
/// The newsletter box starts checked; the terms box is hidden behind its label, as
/// styled sites draw their checkboxes.
/// With `banner`, a cookie-consent banner appears 300 ms after the load; `#accept`
/// hides it and marks the form (`consent=1`), so the consent travels with the save —
/// counted by the server, and without a request of its own that a test would race.
pub(crate) fn settings_form(banner: bool) -> String {
    let options: Vec<String> = COUNTRIES
        .iter()
        .map(|(v, t)| {
            let disabled = if *v == "fr" { ", disabled: true" } else { "" };
            format!("{{value: '{v}', text: '{t}'{disabled}}}")
        })
        .collect();
    let banner = if banner {
        "setTimeout(() => {\n\
         \x20 const b = document.getElementById('consent');\n\
         \x20 b.style.display = 'block';\n\
         \x20 document.getElementById('accept').addEventListener('click', () => {\n\
         \x20   document.getElementById('consented').value = '1';\n\
         \x20   b.style.display = 'none';\n\
         \x20 });\n\
         }, 300);\n"
    } else {
        ""
    };
    layout(
        "Settings",
        &format!(
            "<div id=\"consent\" style=\"display:none\">We use cookies. \
             <button id=\"accept\">Accept</button></div>\n\
             <p id=\"loading\">Loading…</p>\n\
             <form method=\"post\" action=\"/settings\">\n\
             <input type=\"hidden\" id=\"consented\" name=\"consent\" value=\"\">\n\
             <label>Country <select id=\"country\" name=\"country\">\
             <option value=\"\">Choose…</option></select></label>\n\
             <label><input type=\"checkbox\" id=\"newsletter\" name=\"newsletter\" checked> \
             Send me the newsletter</label>\n\
             <input type=\"checkbox\" id=\"terms\" name=\"terms\" style=\"display:none\">\
             <label for=\"terms\" id=\"terms-label\">I accept the terms</label>\n\
             <button id=\"save\" type=\"submit\">Save</button>\n\
             </form>\n\
             <script>\n\
             setTimeout(() => {{\n\
             \x20 document.getElementById('loading').style.display = 'none';\n\
             \x20 const s = document.getElementById('country');\n\
             \x20 for (const o of [{options}]) {{\n\
             \x20   const e = document.createElement('option');\n\
             \x20   e.value = o.value; e.textContent = o.text; e.disabled = !!o.disabled;\n\
             \x20   s.appendChild(e);\n\
             \x20 }}\n\
             }}, 300);\n\
             {banner}\
             </script>",
            options = options.join(", "),
        ),
    )
}

/// What `POST /settings` answers: the country value it saved.
pub(crate) fn settings_saved(country: &str) -> String {
    layout(
        "Saved",
        &format!("<p id=\"saved\">saved {}</p>", escape(country)),
    )
}

/// The checkout page: its card form is in an iframe (`/card`), as payment providers
/// embed theirs, so a client must act inside the frame to pay.
pub(crate) fn pay() -> String {
    layout(
        "Pay",
        "<h1 id=\"pay-title\">Pay</h1>\n\
         <iframe id=\"card-frame\" src=\"/card\" title=\"card\"></iframe>",
    )
}

/// The card form inside the checkout's iframe, or (with `paid`) what it shows once
/// the card was sent.
pub(crate) fn card(paid: Option<&str>) -> String {
    match paid {
        Some(card) => layout(
            "Card",
            &format!("<p id=\"paid\">paid with {}</p>", escape(card)),
        ),
        None => layout(
            "Card",
            "<form method=\"post\" action=\"/card\">\n\
             <label>Card number <input id=\"card-number\" name=\"number\" autocomplete=\"cc-number\"></label>\n\
             <button id=\"pay\" type=\"submit\">Pay</button>\n\
             </form>",
        ),
    }
}

/// A page that connects an app the way "Sign in with …" buttons do: `#connect`
/// opens `/authorize` in a popup window, and `#connected` says so once the popup,
/// before closing itself, has told this page.
pub(crate) fn connect() -> String {
    layout(
        "Connect",
        "<h1>Connect</h1>\n\
         <button id=\"connect\">Connect</button>\n\
         <p id=\"connected\"></p>\n\
         <script>\n\
         document.getElementById('connect').addEventListener('click', () => {\n\
         \x20 window.open('/authorize', 'authorize', 'width=420,height=360');\n\
         });\n\
         window.addEventListener('message', (e) => {\n\
         \x20 if (e.origin === location.origin) document.getElementById('connected').textContent = e.data;\n\
         });\n\
         </script>",
    )
}

/// The popup's page: `#allow` sends `POST /authorize`; the answer tells the opener
/// and, with `close`, closes the popup — as authorization popups do.
pub(crate) fn authorize(done: Option<(&str, bool)>) -> String {
    match done {
        None => layout(
            "Authorize",
            "<form method=\"post\" action=\"/authorize\">\n\
             <label><input type=\"checkbox\" name=\"close\" id=\"close\" checked> Close when done</label>\n\
             <button id=\"allow\" type=\"submit\">Allow</button>\n\
             </form>",
        ),
        Some((user, close)) => {
            let close = if close { "window.close();" } else { "" };
            layout(
                "Authorized",
                &format!(
                    "<p id=\"authorized\">authorized {user}</p>\n\
                     <script>\n\
                     if (window.opener) window.opener.postMessage('connected {user}', location.origin);\n\
                     {close}\n\
                     </script>",
                    user = escape(user),
                ),
            )
        }
    }
}

/// The cart's management page: "Clear cart" sits in a menu that opens only while
/// the pointer is over `#more` (CSS `:hover`), and asks `confirm()` first; "Rename"
/// asks `prompt()` for the name; "Notice" shows an `alert()`; Control+Enter in
/// `#message` "sends" it. `#status` says what each did once the server answered. The menu opens over the page (absolute), not
/// in its flow: opening it must not move the buttons below while a click aims.
pub(crate) fn manage() -> String {
    layout(
        "Manage",
        "<style>#more{position:relative;display:inline-block}\
         #more-menu{display:none;position:absolute;left:0;top:100%;background:#fff}\
         #more:hover #more-menu{display:block}</style>\n\
         <div id=\"more\">More ▾<div id=\"more-menu\"><button id=\"clear\">Clear cart</button></div></div>\n\
         <button id=\"rename\">Rename</button>\n\
         <button id=\"notice\">Notice</button>\n\
         <textarea id=\"message\"></textarea>\n\
         <p id=\"status\"></p>\n\
         <script>\n\
         const status = (t) => { document.getElementById('status').textContent = t; };\n\
         const post = (path, body) => fetch(path, {method: 'POST', credentials: 'same-origin', \
         headers: {'content-type': 'application/json'}, body: JSON.stringify(body)});\n\
         document.getElementById('clear').addEventListener('click', async () => {\n\
         \x20 if (!confirm('Clear the cart?')) { status('kept'); return; }\n\
         \x20 const r = await post('/api/clear', {});\n\
         \x20 status(r.status === 204 ? 'cleared' : 'error ' + r.status);\n\
         });\n\
         document.getElementById('rename').addEventListener('click', async () => {\n\
         \x20 const name = prompt('New name?', '');\n\
         \x20 if (name === null) { status('not renamed'); return; }\n\
         \x20 const r = await post('/api/name', {name});\n\
         \x20 status(r.status === 204 ? 'renamed' : 'error ' + r.status);\n\
         });\n\
         document.getElementById('message').addEventListener('keydown', (e) => {\n\
         \x20 if (e.ctrlKey && e.key === 'Enter') status('sent ' + e.target.value);\n\
         });\n\
         document.getElementById('notice').addEventListener('click', () => {\n\
         \x20 alert('Saved: code 4711');\n\
         \x20 status('noticed');\n\
         });\n\
         </script>",
    )
}

/// What `/slow` answers once it has waited.
pub(crate) fn slow(ms: u64) -> String {
    layout(
        "Slow",
        &format!("<p id=\"slow\">done</p>\n<p>waited {ms} ms</p>"),
    )
}

/// The raw query string in `#echo`, and the decoded pairs in `#params`.
pub(crate) fn echo(raw: &str, pairs: &[(String, String)]) -> String {
    let mut items = String::new();
    for (key, value) in pairs {
        let _ = writeln!(items, "<li>{} = {}</li>", escape(key), escape(value));
    }
    layout(
        "Echo",
        &format!(
            "<h1>Echo</h1>\n<pre id=\"echo\">{}</pre>\n<ul id=\"params\">\n{items}</ul>",
            escape(raw)
        ),
    )
}

/// The fallback for unknown paths, so a mistyped URL in a workflow shows a page a
/// person (or a failure screenshot) can read.
pub(crate) fn not_found(path: &str) -> String {
    layout(
        "Not found",
        &format!(
            "<h1 id=\"not-found\">Not found</h1>\n<p>{}</p>",
            escape(path)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        fn check(input: &str, expected: &str) {
            assert_eq!(escape(input), expected);
        }
        check("user-1", "user-1");
        check("", "");
        check(
            "<script>alert('x')</script>",
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;",
        );
        check("a=1&b=\"2\"", "a=1&amp;b=&quot;2&quot;");
        check("&amp;", "&amp;amp;");
        check("ünï", "ünï");
    }

    #[test]
    fn item_script_reports_exactly_added_n() {
        let page = item(7);
        assert!(page.contains("<title>Item 7</title>"));
        assert!(page.contains("<h1 id=\"title\">Item 7</h1>"));
        assert!(page.contains("JSON.stringify({item: 7})"));
        assert!(page.contains("'added 7'"));
    }
}
