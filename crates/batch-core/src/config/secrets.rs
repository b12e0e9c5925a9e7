//! What is secret: [`is_secret_name`] (account fields by name) and how a secret looks
//! once redacted ([`REDACTED`]). The run-time redactor that scrubs every encoding of a
//! secret from output is [`crate::redact`].

/// What a secret looks like in redacted text.
pub const REDACTED: &str = "***";

/// True for field names that hold secrets: containing `password`, `secret` or
/// `token`, in any letter case.
pub fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["password", "secret", "token"]
        .iter()
        .any(|word| name.contains(word))
}
