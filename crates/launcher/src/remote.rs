//! What a remote WebDriver endpoint says about itself: a Selenium Grid's `/status`
//! (its nodes and their slots), which node holds a session, and ending a session
//! whose handle is already given up.

use std::time::Duration;

/// A Grid's (or lone driver's) `/status`, as far as batch-cli reads it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EndpointStatus {
    /// `value.ready`: the endpoint can create a session now.
    pub ready: bool,
    /// `value.message`.
    pub message: String,
    /// The Grid's nodes (empty for a lone driver).
    pub nodes: Vec<GridNode>,
}

/// One node of a Grid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GridNode {
    /// The node's URI (what `browser_created` journals as `node`).
    pub uri: String,
    /// `UP`, `DRAINING` or `DOWN`.
    pub availability: String,
    /// Its slots.
    pub slots: usize,
    /// Slots holding a session now (a slot being set up counts).
    pub busy: usize,
}

/// `GET URL/status`, parsed. Errors are one line, for people.
pub async fn endpoint_status(url: &str) -> Result<EndpointStatus, String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())?;
    let url = format!("{}/status", url.trim_end_matches('/'));
    let body: serde_json::Value = client
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?
        .json()
        .await
        .map_err(|e| format!("{url}: not a WebDriver status answer ({e})"))?;
    Ok(parse_status(&body))
}

fn parse_status(body: &serde_json::Value) -> EndpointStatus {
    let value = &body["value"];
    let nodes = value["nodes"]
        .as_array()
        .map(|nodes| {
            nodes
                .iter()
                .map(|n| {
                    let slots = n["slots"].as_array().cloned().unwrap_or_default();
                    GridNode {
                        uri: n["uri"].as_str().unwrap_or_default().to_string(),
                        availability: n["availability"].as_str().unwrap_or_default().to_string(),
                        busy: slots.iter().filter(|s| !s["session"].is_null()).count(),
                        slots: slots.len(),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    EndpointStatus {
        ready: value["ready"].as_bool().unwrap_or(false),
        message: value["message"].as_str().unwrap_or_default().to_string(),
        nodes,
    }
}

/// `DELETE /session/ID` with a deadline, ignoring the answer: used once the session's
/// handle is leaked, so no blocking drop can ever run.
pub(crate) async fn delete_session(url: &str, session_id: &str, timeout: Duration) {
    let Ok(client) = reqwest::Client::builder().timeout(timeout).build() else {
        return;
    };
    let _ = client
        .delete(format!("{url}/session/{session_id}"))
        .send()
        .await;
}

/// Which Grid node runs `session_id`, from the hub's `/status` (the nodes and their
/// slots). `None` when the endpoint is no Grid or does not say.
pub(crate) async fn grid_node(url: &str, session_id: &str) -> Option<String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .ok()?;
    let status: serde_json::Value = client
        .get(format!("{url}/status"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    node_of(&status, session_id)
}

/// The `uri` of the node whose slot holds `session_id` in a Grid `/status` answer.
fn node_of(status: &serde_json::Value, session_id: &str) -> Option<String> {
    status["value"]["nodes"]
        .as_array()?
        .iter()
        .find(|node| {
            node["slots"].as_array().is_some_and(|slots| {
                slots
                    .iter()
                    .any(|slot| slot["session"]["sessionId"].as_str() == Some(session_id))
            })
        })
        .and_then(|node| node["uri"].as_str())
        .map(str::to_string)
}

/// Whether a failed session request means "the Grid routed it to a node it cannot
/// reach" (a node that died and is not yet deregistered): worth asking again, the next
/// attempt goes to another node. Grid 4.20 answers HTTP 500 `session not created`,
/// "Could not start a new session. java.net.ConnectException", with a stack trace as
/// an array (so thirtyfour sees an unrecognised response).
pub(crate) fn node_unreachable(err: &thirtyfour::error::WebDriverError) -> bool {
    use thirtyfour::error::WebDriverErrorInner as E;
    let text = match err.as_inner() {
        E::UnknownResponse(status, body) if *status >= 500 => body.clone(),
        E::SessionNotCreated(info) => info.value.message.clone(),
        _ => return false,
    };
    let t = text.to_ascii_lowercase();
    t.contains("session not created") && t.contains("connectexception")
        || t.contains("could not start a new session. java.net.connectexception")
}

/// One line for a failed session request: the server's `message` when its answer is
/// JSON that thirtyfour could not map (a Grid's), else the usual summary.
pub(crate) fn session_error(err: &thirtyfour::error::WebDriverError) -> String {
    use thirtyfour::error::WebDriverErrorInner as E;
    if let E::UnknownResponse(status, body) = err.as_inner()
        && let Ok(v) = serde_json::from_str::<serde_json::Value>(body)
        && let Some(m) = v["value"]["message"].as_str()
    {
        let code = v["value"]["error"].as_str().unwrap_or("error");
        return format!(
            "{code} (HTTP {status}): {}",
            m.lines().next().unwrap_or_default()
        );
    }
    crate::failure::summary(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape Selenium Grid 4.20 answers (trimmed), with one slot being set up.
    fn sample() -> serde_json::Value {
        serde_json::json!({"value": {"ready": true, "message": "Selenium Grid ready.", "nodes": [
            {"uri": "http://127.0.0.1:5555", "availability": "UP", "slots": [
                {"session": {"sessionId": "abc", "capabilities": {}}},
                {"session": null}
            ]},
            {"uri": "http://127.0.0.1:5556", "availability": "UP", "slots": [
                {"session": {"sessionId": "reserved"}}
            ]}
        ]}})
    }

    #[test]
    fn a_request_routed_to_a_dead_node_is_asked_again() {
        use thirtyfour::error::WebDriverError;
        // Grid 4.20's answer, trimmed: the stack trace is an array, not a string.
        let body = r#"{"value": {"error": "session not created", "message": "Could not start a new session. java.net.ConnectException \nHost info: host: 'vm'", "stacktrace": [{"className": "x"}]}}"#;
        let e = WebDriverError::parse(500, body.into());
        assert!(node_unreachable(&e), "{e:?}");
        assert_eq!(
            session_error(&e),
            "session not created (HTTP 500): Could not start a new session. java.net.ConnectException "
        );
        // A real refusal (no such browser on the Grid) is final.
        let refused = r#"{"value": {"error": "session not created", "message": "No nodes support the capabilities in the request", "stacktrace": ""}}"#;
        assert!(!node_unreachable(&WebDriverError::parse(
            500,
            refused.into()
        )));
    }

    #[test]
    fn finds_the_node_of_a_session_and_counts_slots() {
        let s = sample();
        assert_eq!(node_of(&s, "abc").as_deref(), Some("http://127.0.0.1:5555"));
        assert_eq!(node_of(&s, "nope"), None);
        let st = parse_status(&s);
        assert!(st.ready);
        assert_eq!(st.nodes.len(), 2);
        assert_eq!((st.nodes[0].slots, st.nodes[0].busy), (2, 1));
        assert_eq!((st.nodes[1].slots, st.nodes[1].busy), (1, 1));
        // A lone chromedriver's status has no nodes.
        let lone = parse_status(&serde_json::json!({"value": {"ready": true, "message": "ok"}}));
        assert!(lone.nodes.is_empty() && lone.ready);
    }
}
