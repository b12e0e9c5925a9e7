//! The demo site's HTTP surface: one axum handler per route, and [`router`].
//!
//! Handlers translate between HTTP and [`Shared`]: they read the session cookie,
//! call into the state, and render a page from [`crate::pages`]. They hold no state
//! of their own and never hold the state's lock across an `.await`.

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Form, Multipart, Path, Query, RawQuery, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_TYPE, COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;

use crate::pages;
use crate::state::Shared;

/// The name of the session cookie.
const SESSION_COOKIE: &str = "session";

/// The longest `/slow` will wait, so a typo cannot park a connection for hours.
pub(crate) const SLOW_CAP_MS: u64 = 30_000;

/// Every route of the site.
pub(crate) fn router(state: Shared) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/home") }))
        .route("/login", get(login_form).post(login_submit))
        .route("/home", get(home))
        .route("/item/{n}", get(item))
        .route("/export/{n}", get(export))
        .route("/upload", get(upload_form).post(upload))
        .route("/verify", get(verify_form).post(verify))
        .route("/settings", get(settings_form).post(settings))
        .route("/pay", get(pay))
        .route("/manage", get(manage))
        .route("/api/clear", post(clear))
        .route("/api/name", post(rename))
        .route("/connect", get(connect))
        .route("/authorize", get(authorize_form).post(authorize))
        .route("/card", get(card_form).post(card))
        .route("/api/cart", post(cart))
        .route("/api/counts", get(counts))
        .route("/slow", get(slow))
        .route("/echo", get(echo))
        .fallback(not_found)
        .with_state(state)
}

/// The value of the `session` cookie, from any `Cookie` header.
/// A page only a logged-in user sees: `page()` for one, else a redirect to `/login`.
fn for_user(state: &Shared, headers: &HeaderMap, page: impl FnOnce() -> String) -> Response {
    match current_user(state, headers) {
        Some(_) => Html(page()).into_response(),
        None => Redirect::to("/login").into_response(),
    }
}

fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(name, value)| (name == SESSION_COOKIE).then_some(value))
}

/// The logged-in user, if the request carries a live session.
fn current_user(state: &Shared, headers: &HeaderMap) -> Option<String> {
    state.user_for(session_cookie(headers)?)
}

/// Shown whether or not the user is logged in, so a workflow's `before` can always
/// log in again, e.g. with a persistent profile that kept last run's cookie.
async fn login_form() -> Html<String> {
    Html(pages::login(None, ""))
}

/// The login form's fields. Missing fields are empty rather than a 422, so a
/// half-filled form gets the ordinary "wrong username or password" page.
#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

/// The `name` header, if any (several are joined as HTTP allows).
fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

/// The `Via` a proxy added, and the browser's `User-Agent` and `Accept-Language`.
fn client(headers: &HeaderMap) -> crate::state::Client {
    crate::state::Client {
        via: header(headers, "via"),
        user_agent: header(headers, "user-agent"),
        accept_language: header(headers, "accept-language"),
    }
}

async fn login_submit(
    State(state): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if state.challenge(&form.username) {
        tracing::info!(user = %form.username, "challenged");
        return (StatusCode::TOO_MANY_REQUESTS, Html(pages::challenge())).into_response();
    }
    match state.login(&form.username, &form.password, &client(&headers)) {
        Some(session) => {
            tracing::info!(user = %form.username, "login");
            // Max-Age makes the cookie persistent, so a persistent Chrome profile
            // keeps the login across browser restarts (a session cookie would not).
            let cookie = format!(
                "{SESSION_COOKIE}={session}; Path=/; HttpOnly; SameSite=Lax; Max-Age=86400"
            );
            ([(SET_COOKIE, cookie)], Redirect::to("/home")).into_response()
        }
        None => {
            tracing::info!(user = %form.username, "failed login");
            let page = pages::login(Some("wrong username or password"), &form.username);
            (StatusCode::UNAUTHORIZED, Html(page)).into_response()
        }
    }
}

async fn home(State(state): State<Shared>, headers: HeaderMap) -> Response {
    match current_user(&state, &headers) {
        Some(user) => Html(pages::home(&user)).into_response(),
        None => Redirect::to("/login").into_response(),
    }
}

async fn item(State(state): State<Shared>, Path(n): Path<u32>, headers: HeaderMap) -> Response {
    for_user(&state, &headers, || pages::item(n))
}

/// A CSV download for the logged-in user, sent in two halves `?ms=N` apart (capped
/// like `/slow`), so that a client sees a download in progress. Its body names the
/// user, the item and how many exports the user has made, so a test can tell whose
/// file it holds and which one.
async fn export(
    State(state): State<Shared>,
    Path(n): Path<u32>,
    Query(query): Query<SlowQuery>,
    headers: HeaderMap,
) -> Response {
    let Some(user) = current_user(&state, &headers) else {
        return Redirect::to("/login").into_response();
    };
    let exports = state.export(&user);
    let body = format!("user,item,export\n{user},{n},{exports}\n");
    let (first, second) = body.split_at(body.len() / 2);
    let halves = [first.to_owned(), second.to_owned()];
    let delay = slow_delay(query.ms);
    let stream = futures_util::stream::iter(halves.into_iter().enumerate()).then(
        move |(i, half)| async move {
            if i > 0 {
                tokio::time::sleep(delay).await;
            }
            Ok::<_, std::convert::Infallible>(half)
        },
    );
    let disposition = format!("attachment; filename=\"export-{user}-{n}.csv\"");
    (
        [
            (CONTENT_TYPE, "text/csv".to_owned()),
            (CONTENT_DISPOSITION, disposition),
            (CONTENT_LENGTH, body.len().to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

async fn upload_form(State(state): State<Shared>, headers: HeaderMap) -> Response {
    for_user(&state, &headers, pages::upload_form)
}

/// Records every file of the form's `doc` field for the logged-in user. A file input
/// left empty still sends one part with an empty name: it is not a file.
async fn upload(State(state): State<Shared>, headers: HeaderMap, mut form: Multipart) -> Response {
    let Some(user) = current_user(&state, &headers) else {
        return Redirect::to("/login").into_response();
    };
    let mut files = Vec::new();
    loop {
        let field = match form.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return (e.status(), e.body_text()).into_response(),
        };
        let name = field.file_name().unwrap_or_default().to_owned();
        if field.name() != Some("doc") || name.is_empty() {
            continue;
        }
        let data = match field.bytes().await {
            Ok(data) => data,
            Err(e) => return (e.status(), e.body_text()).into_response(),
        };
        let head = String::from_utf8_lossy(&data[..data.len().min(200)]).into_owned();
        let bytes = data.len() as u64;
        files.push(crate::Upload { name, bytes, head });
    }
    tracing::info!(user = %user, files = files.len(), "upload");
    state.upload(&user, files.clone());
    Html(pages::upload_done(&files)).into_response()
}

async fn verify_form(State(state): State<Shared>, headers: HeaderMap) -> Response {
    for_user(&state, &headers, || pages::verify_form(None))
}

/// The code form's field; missing is empty, so it is a wrong code rather than a 422.
#[derive(Deserialize)]
struct CodeForm {
    #[serde(default)]
    code: String,
}

async fn verify(
    State(state): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<CodeForm>,
) -> Response {
    let Some(user) = current_user(&state, &headers) else {
        return Redirect::to("/login").into_response();
    };
    if state.verify(&user, &form.code) {
        tracing::info!(user = %user, "verified");
        Html(pages::verified(&user)).into_response()
    } else {
        tracing::info!(user = %user, "wrong code");
        let page = pages::verify_form(Some("wrong, expired or already used code"));
        (StatusCode::UNAUTHORIZED, Html(page)).into_response()
    }
}

#[derive(Deserialize)]
struct SettingsQuery {
    #[serde(default)]
    banner: u8,
}

async fn settings_form(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<SettingsQuery>,
) -> Response {
    for_user(&state, &headers, || pages::settings_form(query.banner != 0))
}

/// The settings form's fields; a missing country is empty, which the state records
/// as it is, `consent` is `1` once the banner was accepted, and a checked box sends
/// `on`.
#[derive(Deserialize)]
struct SettingsForm {
    #[serde(default)]
    country: String,
    #[serde(default)]
    consent: String,
    #[serde(default)]
    newsletter: String,
    #[serde(default)]
    terms: String,
}

async fn settings(
    State(state): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<SettingsForm>,
) -> Response {
    let Some(user) = current_user(&state, &headers) else {
        return Redirect::to("/login").into_response();
    };
    tracing::info!(user = %user, country = %form.country, "settings saved");
    let flags = crate::state::Flags {
        consent: form.consent == "1",
        newsletter: form.newsletter == "on",
        terms: form.terms == "on",
    };
    state.save_settings(&user, &form.country, flags);
    Html(pages::settings_saved(&form.country)).into_response()
}

async fn pay(State(state): State<Shared>, headers: HeaderMap) -> Response {
    for_user(&state, &headers, pages::pay)
}

async fn card_form(State(state): State<Shared>, headers: HeaderMap) -> Response {
    for_user(&state, &headers, || pages::card(None))
}

#[derive(Deserialize)]
struct CardForm {
    #[serde(default)]
    number: String,
}

/// Records the card number the logged-in user sent from the checkout's iframe.
async fn card(
    State(state): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<CardForm>,
) -> Response {
    let Some(user) = current_user(&state, &headers) else {
        return Redirect::to("/login").into_response();
    };
    state.pay(&user, &form.number);
    Html(pages::card(Some(&form.number))).into_response()
}

async fn connect(State(state): State<Shared>, headers: HeaderMap) -> Response {
    for_user(&state, &headers, pages::connect)
}

async fn authorize_form(State(state): State<Shared>, headers: HeaderMap) -> Response {
    for_user(&state, &headers, || pages::authorize(None))
}

#[derive(Deserialize)]
struct AuthorizeForm {
    #[serde(default)]
    close: String,
}

/// Counts an authorization from the popup; the page it answers closes the popup
/// when the form's `close` box was checked.
async fn authorize(
    State(state): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<AuthorizeForm>,
) -> Response {
    let Some(user) = current_user(&state, &headers) else {
        return Redirect::to("/login").into_response();
    };
    state.authorize(&user);
    Html(pages::authorize(Some((&user, form.close == "on")))).into_response()
}

async fn manage(State(state): State<Shared>, headers: HeaderMap) -> Response {
    for_user(&state, &headers, pages::manage)
}

/// Counts a cart cleared (after the page's `confirm()`) for the logged-in user.
async fn clear(State(state): State<Shared>, headers: HeaderMap) -> Response {
    let Some(user) = current_user(&state, &headers) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    state.clear(&user);
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
struct RenameRequest {
    name: String,
}

/// Records the name the logged-in user typed into the page's `prompt()`.
async fn rename(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Result<Json<RenameRequest>, JsonRejection>,
) -> Response {
    let Some(user) = current_user(&state, &headers) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    match body {
        Ok(Json(request)) => {
            state.rename(&user, &request.name);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(rejection) => (rejection.status(), rejection.body_text()).into_response(),
    }
}

#[derive(Deserialize)]
struct CartRequest {
    item: u32,
}

/// Takes the body as a `Result` so that a request without a session gets 401 even
/// when its body is also wrong: "not logged in" is the more useful answer.
async fn cart(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Result<Json<CartRequest>, JsonRejection>,
) -> Response {
    let Some(user) = current_user(&state, &headers) else {
        let body = json!({ "ok": false, "error": "not logged in" });
        return (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    };
    let Json(request) = match body {
        Ok(request) => request,
        Err(rejection) => {
            let body = json!({ "ok": false, "error": rejection.body_text() });
            return (rejection.status(), Json(body)).into_response();
        }
    };
    let adds = state.add(&user, request.item, &client(&headers));
    tracing::debug!(user = %user, item = request.item, adds, "add to cart");
    Json(json!({ "ok": true, "user": user, "item": request.item, "adds": adds })).into_response()
}

async fn counts(State(state): State<Shared>) -> Json<crate::Counts> {
    Json(state.counts())
}

#[derive(Deserialize)]
struct SlowQuery {
    #[serde(default)]
    ms: u64,
}

/// How long `/slow?ms=requested` actually waits.
pub(crate) fn slow_delay(requested: u64) -> Duration {
    Duration::from_millis(requested.min(SLOW_CAP_MS))
}

async fn slow(Query(query): Query<SlowQuery>) -> Html<String> {
    let delay = slow_delay(query.ms);
    tokio::time::sleep(delay).await;
    Html(pages::slow(
        delay.as_millis().try_into().unwrap_or(u64::MAX),
    ))
}

async fn echo(RawQuery(raw): RawQuery, Query(pairs): Query<Vec<(String, String)>>) -> Html<String> {
    Html(pages::echo(raw.as_deref().unwrap_or(""), &pairs))
}

async fn not_found(uri: Uri) -> (StatusCode, Html<String>) {
    (StatusCode::NOT_FOUND, Html(pages::not_found(uri.path())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn session_cookie_parsing() {
        fn check(cookies: &[&str], expected: Option<&str>) {
            let mut headers = HeaderMap::new();
            for cookie in cookies {
                headers.append(COOKIE, HeaderValue::from_str(cookie).unwrap());
            }
            assert_eq!(session_cookie(&headers), expected, "cookies {cookies:?}");
        }
        check(&[], None);
        check(&["session=abc"], Some("abc"));
        check(&["a=1; session=abc; b=2"], Some("abc"));
        check(&["a=1;session=abc"], Some("abc"));
        check(&["a=1", "session=abc"], Some("abc"));
        check(&["xsession=abc; sessionx=def"], None);
        check(&["session="], Some(""));
    }

    #[test]
    fn slow_delays_are_capped() {
        fn check(requested: u64, expected_ms: u64) {
            assert_eq!(slow_delay(requested), Duration::from_millis(expected_ms));
        }
        check(0, 0);
        check(250, 250);
        check(SLOW_CAP_MS, SLOW_CAP_MS);
        check(SLOW_CAP_MS + 1, SLOW_CAP_MS);
        check(u64::MAX, SLOW_CAP_MS);
    }
}
