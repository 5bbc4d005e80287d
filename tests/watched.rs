//! The tests' server processes (etcd, PostgreSQL, tansu): each runs under a shell that
//! prints the server's process id first, sends the server's output to a log, and kills
//! the server once the test process that started it is gone (a shared server is never
//! dropped).

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// Runs `"$@"` with its output in the shell's stderr, prints its pid, and waits until the
/// parent (the test process) or the server ends.
const WATCH_SCRIPT: &str = r#"
"$@" >&2 & server=$!
echo "$server"
parent=$PPID
while kill -0 "$parent" 2>/dev/null && kill -0 "$server" 2>/dev/null; do sleep 0.5; done
kill -9 "$server" 2>/dev/null
"#;

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A server process; killed when dropped.
pub struct Watched {
    child: Child,
    /// The server's own process id (the child is the shell that watches it).
    pid: u32,
}

impl Watched {
    /// Starts `command` (the program, then its arguments) with its output into `log`.
    pub fn spawn(command: &[&OsStr], log: std::fs::File) -> Self {
        let what = command
            .first()
            .map_or_else(String::new, |p| p.to_string_lossy().into_owned());
        let mut child = Command::new("sh")
            .args(["-c", WATCH_SCRIPT, "watch"])
            .args(command)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{what} starts: {e}"));
        let stdout = child.stdout.take().expect("piped");
        let mut first = String::new();
        BufReader::new(stdout)
            .read_line(&mut first)
            .expect("the server's pid");
        let pid = first.trim().parse().expect("a pid");
        Self { child, pid }
    }

    /// Sends `signal` (`-STOP`, `-CONT`) to the server.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} {}", self.pid);
    }

    /// What `signal("-STOP")` does, as a function another thread may call.
    pub fn pauser(&self) -> impl Fn() + Send + Sync + 'static {
        let pid = self.pid.to_string();
        move || {
            let _ = Command::new("kill").args(["-STOP", &pid]).status();
        }
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-9", &self.pid.to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
