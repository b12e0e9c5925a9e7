//! Helpers shared by this crate's unit tests: processes that stand in for a running
//! or a dead Chromium. Test-only; nothing here is part of the API.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A process killed and reaped when dropped, even if the test fails.
pub(crate) struct Running(Child);

impl Running {
    pub(crate) fn pid(&self) -> i32 {
        i32::try_from(self.0.id()).unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A process whose command line carries `arg` (e.g. `--user-data-dir=<dir>`), run in
/// `cwd`, waiting on its stdin. It waits in a shell builtin, so there is no
/// grandchild to clean up.
///
/// `spawn` may return before the kernel has set the new program's command line
/// (`/proc/<pid>/cmdline` reads empty for a moment after the exec), so this waits
/// for the shell to print "ready": by then its command line is in place.
pub(crate) fn fake_chromium(arg: &str, cwd: &Path) -> Running {
    let mut child = Command::new("/bin/sh")
        .args(["-c", "echo ready; read line", "chromium", arg])
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let running = Running(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    running
}

/// The pid of a process that has exited and been reaped.
pub(crate) fn dead_pid() -> i32 {
    let mut child = Command::new("true").spawn().unwrap();
    child.wait().unwrap();
    i32::try_from(child.id()).unwrap()
}
