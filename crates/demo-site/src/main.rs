//! `demo-site [--port N]`: serves the demo web app on `127.0.0.1` until Ctrl-C.
//!
//! A thin wrapper around [`demo_site::start`] for `cargo xtask run` and for trying a
//! workflow by hand. It binds the loopback address only, never any other, because
//! the demo's passwords are public. Arguments are parsed by hand: there is one flag.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;

/// The port the example workflow's `base_url` points at.
const DEFAULT_PORT: u16 = 8080;

const USAGE: &str = "usage: demo-site [--port N]\n\
\n\
Serves the batch-cli demo web app on http://127.0.0.1:N (default 8080) until Ctrl-C.\n\
Port 0 picks a free port. Users user-N log in with password pass-N.";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    Serve { port: u16 },
    Help,
}

fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Command, String> {
    let mut port = DEFAULT_PORT;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let value = match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--port" => args.next().ok_or("--port needs a value")?,
            _ => match arg.strip_prefix("--port=") {
                Some(value) => value.to_owned(),
                None => return Err(format!("unexpected argument {arg:?}")),
            },
        };
        port = value
            .parse()
            .map_err(|_| format!("--port expects a port number 0-65535, got {value:?}"))?;
    }
    Ok(Command::Serve { port })
}

#[tokio::main]
async fn main() -> ExitCode {
    let port = match parse_args(std::env::args().skip(1)) {
        Ok(Command::Serve { port }) => port,
        Ok(Command::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("demo-site: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };

    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let site = match demo_site::start(addr).await {
        Ok(site) => site,
        Err(error) => {
            eprintln!("demo-site: cannot listen on {addr}: {error}");
            return ExitCode::FAILURE;
        }
    };
    // `DEMO_CHALLENGE_USERS=user-2,user-5`: those users get the captcha page (to
    // try `[health]` by hand).
    if let Ok(users) = std::env::var("DEMO_CHALLENGE_USERS") {
        for user in users.split(',').map(str::trim).filter(|u| !u.is_empty()) {
            site.set_challenged(user, true);
        }
    }
    // Scripts (xtask, tests) wait for this exact line, so it names the real port
    // even when started with --port 0.
    println!("demo-site listening on {}", site.base_url());

    if let Err(error) = tokio::signal::ctrl_c().await {
        eprintln!("demo-site: cannot wait for Ctrl-C: {error}");
        return ExitCode::FAILURE;
    }
    site.shutdown().await;
    eprintln!("demo-site stopped");
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() {
        fn check(args: &[&str], expected: Result<Command, &str>) {
            let parsed = parse_args(args.iter().map(|a| a.to_string()));
            assert_eq!(parsed, expected.map_err(str::to_owned), "args {args:?}");
        }
        check(&[], Ok(Command::Serve { port: 8080 }));
        check(&["--port", "9000"], Ok(Command::Serve { port: 9000 }));
        check(&["--port=0"], Ok(Command::Serve { port: 0 }));
        check(
            &["--port", "1", "--port", "2"],
            Ok(Command::Serve { port: 2 }),
        );
        check(&["--help"], Ok(Command::Help));
        check(&["--port", "1", "-h"], Ok(Command::Help));
        check(&["--port"], Err("--port needs a value"));
        check(
            &["--port", "65536"],
            Err("--port expects a port number 0-65535, got \"65536\""),
        );
        check(
            &["--port=x"],
            Err("--port expects a port number 0-65535, got \"x\""),
        );
        check(
            &["--host", "0.0.0.0"],
            Err("unexpected argument \"--host\""),
        );
        check(&["8080"], Err("unexpected argument \"8080\""));
    }
}
