//! A real Kafka-compatible broker: `tansu` (crates.io, with its `dynostore` feature for
//! in-memory storage), on a free loopback port. `.ci/run` installs it into
//! `~/.cache/ember-tansu` (`EMBER_TANSU` names another binary); a test run without it
//! installs it there first, under a lock.
//! One broker is shared by a test run ([`KafkaBroker::shared`]; tests keep apart by
//! topic); a test that stops the broker starts its own ([`KafkaBroker::start`]).

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::watched::{Watched, free_port};

/// The tansu version the tests run.
pub const TANSU_VERSION: &str = "0.6.0";

/// The file beside the binary that says it was built with the features the tests need.
const FEATURES_MARK: &str = "features-dynostore";

/// A broker process; killed when dropped.
pub struct KafkaBroker {
    process: Watched,
    /// `127.0.0.1:PORT`.
    pub address: String,
    _dir: tempfile::TempDir,
}

/// The tansu binary: `EMBER_TANSU`, or `~/.cache/ember-tansu/bin/tansu`, installed with
/// `cargo install` on first use.
pub fn tansu() -> PathBuf {
    if let Some(path) = std::env::var_os("EMBER_TANSU") {
        return PathBuf::from(path);
    }
    let root = std::env::var_os("HOME")
        .map_or_else(std::env::temp_dir, PathBuf::from)
        .join(".cache/ember-tansu");
    let binary = root.join("bin/tansu");
    // The broker's in-memory storage needs tansu's `dynostore` feature: a binary built
    // without it says so at start, and is built again.
    let usable = |binary: &std::path::Path| binary.is_file() && root.join(FEATURES_MARK).is_file();
    if usable(&binary) {
        return binary;
    }
    let _lock = crate::hold_lock(&root.with_extension("lock"));
    if !usable(&binary) {
        let installed = Command::new("cargo")
            .args(["install", "tansu", "--locked", "--version", TANSU_VERSION])
            .args(["--features", "dynostore", "--root"])
            .arg(&root)
            .status()
            .is_ok_and(|s| s.success());
        assert!(installed, "cargo install tansu {TANSU_VERSION} failed");
        std::fs::write(root.join(FEATURES_MARK), "dynostore\n").expect("the mark is written");
    }
    binary
}

impl KafkaBroker {
    /// The one broker of this test run, started on first use.
    pub fn shared() -> &'static KafkaBroker {
        static BROKER: OnceLock<KafkaBroker> = OnceLock::new();
        BROKER.get_or_init(KafkaBroker::start)
    }

    /// Starts a broker of its own and waits until it accepts connections.
    pub fn start() -> Self {
        let binary = tansu();
        let dir = tempfile::Builder::new()
            .prefix("ember-kafka-")
            .tempdir()
            .expect("temp dir");
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let log = std::fs::File::create(dir.path().join("broker.log")).expect("log file");
        let process = Watched::spawn(
            &[
                binary.as_os_str(),
                OsStr::new("broker"),
                OsStr::new("--listener-url"),
                OsStr::new(&url),
                OsStr::new("--advertised-listener-url"),
                OsStr::new(&url),
                OsStr::new("--storage-engine"),
                OsStr::new("memory://tansu/"),
            ],
            log,
        );
        let broker = Self {
            process,
            address: format!("127.0.0.1:{port}"),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&broker.address).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not listen within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        broker
    }

    /// `kafka://127.0.0.1:PORT/TOPIC`.
    pub fn url(&self, topic: &str) -> String {
        format!("kafka://{}/{topic}", self.address)
    }

    /// What stopping the broker's process (SIGSTOP) does, as a function another thread
    /// may call: it answers nothing.
    pub fn pauser(&self) -> impl Fn() + Send + Sync + 'static {
        self.process.pauser()
    }

    /// Lets a paused broker go on (SIGCONT).
    pub fn resume(&self) {
        self.process.signal("-CONT");
    }
}
