//! The human view: journal events turned into lines on stdout. With `--json` the
//! events are printed as they are instead. Secrets never reach here: events carry
//! only redacted text.

use serde_json::Value;

fn s<'a>(e: &'a Value, k: &str) -> &'a str {
    e.get(k).and_then(Value::as_str).unwrap_or("")
}

fn n(e: &Value, k: &str) -> String {
    e.get(k).map(|v| v.to_string()).unwrap_or_default()
}

fn mib(e: &Value, k: &str) -> String {
    e.get(k)
        .and_then(Value::as_u64)
        .map(|b| format!("{} MiB", b / (1024 * 1024)))
        .unwrap_or_else(|| "?".into())
}

/// The line for one event, or `None` for events the human view does not show.
pub(crate) fn line(e: &Value) -> Option<String> {
    let who = e
        .get("account")
        .map(|a| format!("[account {a}] "))
        .unwrap_or_default();
    let text = match s(e, "event") {
        "run_started" => format!("run {} started: {}", s(e, "run_id"), s(e, "run_dir")),
        "reaped" => format!(
            "reaped what a killed run left: {} process(es), {} ephemeral profile(s)",
            e.get("processes")
                .and_then(Value::as_array)
                .map_or(0, Vec::len),
            n(e, "ephemeral_profiles")
        ),
        "launch_lock_acquired" => "browser creation lock acquired".into(),
        "browser_created" => "browser created".into(),
        "launch_lock_released" => "browser creation lock released".into(),
        "launch_failed" => format!("browser launch failed: {}", s(e, "error")),
        // Waiting for the creation lock is what the lock lines already show.
        "admission_wait" => match s(e, "reason") {
            "memory" => format!(
                "browser creation waits for memory: {} available, {} needed (reserve {} + {} per browser starting)",
                mib(e, "available_bytes"),
                mib(e, "needed_bytes"),
                mib(e, "threshold_bytes"),
                mib(e, "browser_cost_bytes"),
            ),
            "cpu" => format!(
                "browser creation waits: CPU saturated and launches slowing ({} at once)",
                n(e, "limit")
            ),
            "cap" => format!(
                "waiting for a slot: {} account(s) running (--max-concurrent)",
                n(e, "seats")
            ),
            _ => return None,
        },
        "admitted" => match s(e, "reason") {
            "" | "pacing" => return None,
            reason => format!(
                "browser creation admitted after {:.1} s ({reason})",
                e.get("waited_ms").and_then(Value::as_u64).unwrap_or(0) as f64 / 1000.0
            ),
        },
        "browser_retired" => format!(
            "browser retired ({}) after {} iteration(s): replacing it",
            s(e, "reason"),
            n(e, "iterations")
        ),
        "iteration_ok" => format!("step {} iteration {} ok", n(e, "step"), n(e, "iteration")),
        "iteration_failed" => {
            format!(
                "step {} iteration {} FAILED ({}): {}",
                n(e, "step"),
                n(e, "iteration"),
                s(e, "kind"),
                s(e, "error")
            )
        }
        "browser_crashed" => format!("browser lost ({}): replacing it", s(e, "kind")),
        "retry" => format!(
            "retrying step {} iteration {} (attempt {}) after {}: {}",
            n(e, "step"),
            n(e, "iteration"),
            n(e, "attempt"),
            s(e, "kind"),
            s(e, "error")
        ),
        "after_failed" => format!("after of step {} failed: {}", n(e, "step"), s(e, "error")),
        "account_done" => format!(
            "done: {} — {} ok, {} failed, {} browser launch(es), {} retries",
            s(e, "status"),
            n(e, "iterations_ok"),
            n(e, "iterations_failed"),
            n(e, "browser_launches"),
            n(e, "retries")
        ),
        "run_finished" => format!(
            "run finished (exit {}): {} iterations ok, {} failed, {} browser launches, {} retries",
            n(e, "exit_code"),
            n(e, "iterations_ok"),
            n(e, "iterations_failed"),
            n(e, "browser_launches"),
            n(e, "retries")
        ),
        _ => return None,
    };
    Some(format!("{who}{text}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_spec_lines_are_exact() {
        for (event, expected) in [
            (
                json!({"event": "launch_lock_acquired", "account": 3}),
                Some("[account 3] browser creation lock acquired"),
            ),
            (
                json!({"event": "browser_created", "account": 3, "pid": 1, "port": 2}),
                Some("[account 3] browser created"),
            ),
            (
                json!({"event": "launch_lock_released", "account": 3}),
                Some("[account 3] browser creation lock released"),
            ),
            (json!({"event": "memory_sample"}), None),
            (
                json!({"event": "admission_wait", "account": 2, "reason": "pacing"}),
                None,
            ),
            (
                json!({"event": "admission_wait", "account": 2, "reason": "cap", "seats": 1}),
                Some("[account 2] waiting for a slot: 1 account(s) running (--max-concurrent)"),
            ),
            (
                json!({"event": "admitted", "account": 2, "reason": "memory", "waited_ms": 1500}),
                Some("[account 2] browser creation admitted after 1.5 s (memory)"),
            ),
            (
                json!({"event": "admitted", "account": 2, "reason": null, "waited_ms": 0}),
                None,
            ),
        ] {
            assert_eq!(line(&event).as_deref(), expected);
        }
    }
}
