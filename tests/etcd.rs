//! A real etcd (Debian's `etcd-server`, installed on first use) on loopback ports with a
//! temporary data folder, for the scheduler's leader election and state store. One server
//! is shared by a test run ([`EtcdServer::shared`]; tests keep apart by key prefix); a
//! test that stops etcd's process starts its own ([`EtcdServer::start`]).

use std::ffi::OsStr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::watched::{Watched, free_port};

/// An etcd process; killed when dropped.
pub struct EtcdServer {
    process: Watched,
    /// `127.0.0.1:PORT`, as `--ha etcd://` takes it.
    pub address: String,
    _data: tempfile::TempDir,
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
        let data_dir = data.path().join("data");
        let initial = format!("ember-test={peer_url}");
        let process = Watched::spawn(
            &[
                OsStr::new("etcd"),
                OsStr::new("--name"),
                OsStr::new("ember-test"),
                OsStr::new("--data-dir"),
                data_dir.as_os_str(),
                OsStr::new("--listen-client-urls"),
                OsStr::new(&client_url),
                OsStr::new("--advertise-client-urls"),
                OsStr::new(&client_url),
                OsStr::new("--listen-peer-urls"),
                OsStr::new(&peer_url),
                OsStr::new("--initial-advertise-peer-urls"),
                OsStr::new(&peer_url),
                OsStr::new("--initial-cluster"),
                OsStr::new(&initial),
            ],
            log,
        );
        let server = Self {
            process,
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
        self.process.signal("-STOP");
    }

    /// Lets a paused etcd go on (SIGCONT).
    pub fn resume(&self) {
        self.process.signal("-CONT");
    }
}
