//! Loading a whole project: `batch.toml`, then the workflow and accounts files it names.
//!
//! Main items: [`Project`] and [`load_project`]. Checks that depend on the run (which
//! accounts and steps, the `--base-url` override) are left to the caller, through
//! `parse_account_list`, `parse_step_list` and `check_templates`.

use std::path::Path;

use super::accounts::load_accounts_with_env;
use super::settings::load_settings;
use super::workflow::load_workflow;
use super::{Accounts, ConfigError, EnvLookup, Settings, Workflow, process_env};

/// Everything the user wrote, loaded and validated: `batch.toml` and the two files it names.
#[derive(Debug, Clone)]
pub struct Project {
    /// `batch.toml`.
    pub settings: Settings,
    /// The workflow file.
    pub workflow: Workflow,
    /// The accounts file.
    pub accounts: Accounts,
}

/// `fn(batch.toml path) -> Project`: loads the settings, then the workflow, then the
/// accounts (`{ env = ... }` from the process environment).
pub fn load_project(config_path: &Path) -> Result<Project, ConfigError> {
    load_project_with_env(config_path, &process_env)
}

/// [`load_project`], reading `{ env = ... }` account values through `env`.
pub fn load_project_with_env(
    config_path: &Path,
    env: EnvLookup<'_>,
) -> Result<Project, ConfigError> {
    let settings = load_settings(config_path)?;
    let workflow = load_workflow(&settings.workflow)?;
    let mut accounts = load_accounts_with_env(&settings.accounts, env)?;
    super::proxy::apply_default(&settings, &mut accounts, env)?;
    // A field the workflow reads a TOTP secret from is a secret whatever its name:
    // with the password, it is the whole login.
    let totp_fields: Vec<&str> = workflow.totp_fields().collect();
    for a in &mut accounts.accounts {
        for (name, v) in &mut a.fields {
            v.secret |= totp_fields.contains(&name.as_str());
        }
    }
    // An account's user_agent or accept_language against the switches it would get
    // (`[browser] args` and its own `browser_args`): only both files together say.
    for a in &accounts.accounts {
        let identity = super::identity_of(&settings.browser, a);
        if let Err((key, problem)) = super::identity::check_clashes(&identity) {
            return Err(ConfigError::invalid(
                &accounts.path,
                None,
                format!("account {}, {key}", a.id),
                problem,
            ));
        }
    }
    Ok(Project {
        settings,
        workflow,
        accounts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn loads_everything() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(
            d,
            "batch.toml",
            "workflow = \"flow.toml\"\naccounts = \"people.csv\"\n",
        );
        write(
            d,
            "flow.toml",
            "base_url = \"http://h\"\n[[steps]]\nid = 1\nactions = [{ click = \"#a\" }]\n",
        );
        write(d, "people.csv", "id,username,password\n1,u1,p1\n2,u2,p2\n");
        let env = |_: &str| None;
        let p = load_project_with_env(&d.join("batch.toml"), &env).unwrap();
        assert_eq!(p.workflow.steps.len(), 1);
        assert_eq!(p.accounts.accounts.len(), 2);
        assert_eq!(
            p.accounts.path,
            d.canonicalize().unwrap().join("people.csv")
        );
    }

    /// `otp` says nothing secret by its name; a `{totp.otp}` in the workflow makes it
    /// one, in every account, whatever step uses it.
    #[test]
    fn a_field_holding_a_totp_secret_is_secret() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(
            d,
            "workflow.toml",
            "[[steps]]\nid = 1\nactions = [{ click = \"#a\" }]\n[[steps]]\nid = 2\n\
             actions = [{ fill = \"#code\", text = \"{totp.otp}\" }]\n",
        );
        write(
            d,
            "accounts.csv",
            "id,username,otp,pin\n1,u1,JBSWY3DPEHPK3PXP,1\n2,u2,GEZDGNBVGY3TQOJQ,2\n",
        );
        write(d, "batch.toml", "accounts = \"accounts.csv\"\n");
        let p = load_project_with_env(&d.join("batch.toml"), &|_| None).unwrap();
        for a in &p.accounts.accounts {
            let secret = |f: &str| a.fields[f].secret;
            assert_eq!(
                (secret("username"), secret("otp"), secret("pin")),
                (false, true, false)
            );
        }
    }

    #[test]
    fn names_the_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d, "batch.toml", "");
        let e = load_project(&d.join("batch.toml")).unwrap_err();
        let shown = e.to_string();
        assert!(
            shown.ends_with(
                "workflow.toml: no such file (expected the workflow file (base_url and [[steps]]))"
            ),
            "{shown}"
        );
        write(
            d,
            "workflow.toml",
            "[[steps]]\nid = 1\nactions = [{ click = \"#a\" }]\n",
        );
        let shown = load_project(&d.join("batch.toml")).unwrap_err().to_string();
        assert!(shown.contains("accounts.toml: no such file"), "{shown}");
    }
}
