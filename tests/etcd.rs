//! A real etcd (Debian's `etcd-server`, installed on first use) on loopback ports with a
//! temporary data folder, for the scheduler's leader election and state store. One server
//! is shared by a test run ([`EtcdServer::shared`]; tests keep apart by key prefix); a
//! test that stops etcd's process starts its own ([`EtcdServer::start`]).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Runs etcd, and ends it when the test process that started it is gone (a shared server
/// is never dropped). Prints etcd's process id first.
const WATCH_SCRIPT: &str = r#"
"$@" & server=$!
echo "$server"
parent=$PPID
while kill -0 "$parent" 2>/dev/null && kill -0 "$server" 2>/dev/null; do sleep 0.5; done
kill -9 "$server" 2>/dev/null
"#;

/// An etcd process; killed when dropped.
pub struct EtcdServer {
    child: Child,
    /// etcd's own process id (the child is the shell that watches it).
    pid: u32,
    /// `127.0.0.1:PORT`, as `--ha etcd://` takes it.
    pub address: String,
    _data: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl EtcdServer {
    /// The one server of this test run, started on first use.
    pub fn shared() -> &'static EtcdServer {
        static SERVER: OnceLock<EtcdServer> = OnceLock::new();
        SERVER.get_or_init(EtcdServer::start)
    }

    /// Starts an etcd of its own (installing `etcd-server` first if needed) and waits until
    /// it serves.
    pub fn start() -> Self {
        crate::ensure_debian_package("etcd-server", "etcd", &["--version"]);
        let data = tempfile::Builder::new()
            .prefix("ember-etcd-")
            .tempdir()
            .expect("temp dir");
        let (client, peer) = (free_port(), free_port());
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = std::fs::File::create(data.path().join("etcd.log")).expect("log file");
        let mut child = Command::new("sh")
            .args(["-c", WATCH_SCRIPT, "etcd-watch", "etcd"])
            .args(["--name", "ember-test", "--data-dir"])
            .arg(data.path().join("data"))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("ember-test={peer_url}")])
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("etcd starts");
        let stdout = child.stdout.take().expect("piped");
        let mut first = String::new();
        BufReader::new(stdout)
            .read_line(&mut first)
            .expect("etcd's pid");
        let pid: u32 = first.trim().parse().expect("a pid");
        let server = Self {
            child,
            pid,
            address: format!("127.0.0.1:{client}"),
            _data: data,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log =
                std::fs::read_to_string(server._data.path().join("etcd.log")).unwrap_or_default();
            if log.contains("ready to serve client requests") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not start within 30 s:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// `etcd://127.0.0.1:PORT/PREFIX`.
    pub fn url(&self, prefix: &str) -> String {
        format!("etcd://{}/{prefix}", self.address)
    }

    /// Stops etcd's process (SIGSTOP): it answers nothing, and its time stands still.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused etcd go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} {}", self.pid);
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-9", &self.pid.to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
