//! A real PostgreSQL server (Debian's `postgresql`, installed on first use) on a free
//! loopback port, made by `initdb` in a temporary folder and run as the unprivileged
//! `postgres` user (PostgreSQL refuses to run as root), with password authentication
//! (`scram-sha-256`). One server is shared by a test run ([`PostgresServer::shared`]);
//! tests keep apart by database.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::watched::{Watched, free_port};

/// The superuser the tests connect as, and its password.
pub const USER: &str = "ember";
/// The password of [`USER`].
pub const PASSWORD: &str = "ember-test-password";

/// A PostgreSQL server process; killed when dropped.
pub struct PostgresServer {
    _process: Watched,
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    dir: tempfile::TempDir,
}

/// The folder of PostgreSQL's server programs (`/usr/lib/postgresql/VERSION/bin`).
fn server_bin() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("postgres").is_file() && bin.join("initdb").is_file())
        .collect();
    found.sort();
    found.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `program` with `args`, as the `postgres` user when this process is root.
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

impl PostgresServer {
    /// The one server of this test run, started on first use.
    pub fn shared() -> &'static PostgresServer {
        static SERVER: OnceLock<PostgresServer> = OnceLock::new();
        SERVER.get_or_init(PostgresServer::start)
    }

    /// Starts a server of its own (installing `postgresql` first if needed) and waits
    /// until it accepts connections.
    pub fn start() -> Self {
        if server_bin().is_none() {
            let _lock = crate::hold_lock(&std::env::temp_dir().join("ember-tests-apt.lock"));
            if server_bin().is_none() {
                let installed = Command::new("apt-get")
                    .args(["-o", "DPkg::Lock::Timeout=600", "install", "-y"])
                    .args(["--no-install-recommends", "postgresql"])
                    .stdout(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                assert!(installed, "apt-get install postgresql failed");
            }
        }
        let bin = server_bin().expect("PostgreSQL's server programs are installed");
        let dir = tempfile::Builder::new()
            .prefix("ember-postgres-")
            .tempdir()
            .expect("temp dir");
        let data = dir.path().join("data");
        let password_file = dir.path().join("password");
        std::fs::write(&password_file, PASSWORD).expect("password file");
        if is_root() {
            let owned = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .is_ok_and(|s| s.success());
            assert!(owned, "chown postgres {}", dir.path().display());
        }
        let init = as_server_user(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", USER, "--auth=scram-sha-256", "--no-sync", "--pwfile"])
            .arg(&password_file)
            .output()
            .expect("initdb runs");
        assert!(
            init.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("server.log")).expect("log file");
        let postgres = bin.join("postgres");
        let port_text = port.to_string();
        let mut command: Vec<&OsStr> = Vec::new();
        if is_root() {
            command.extend(["runuser", "-u", "postgres", "--"].map(OsStr::new));
        }
        command.extend([
            postgres.as_os_str(),
            OsStr::new("-D"),
            data.as_os_str(),
            OsStr::new("-p"),
            OsStr::new(&port_text),
            OsStr::new("-k"),
            dir.path().as_os_str(),
        ]);
        command.extend(
            [
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",
                "-c",
                "shared_buffers=128MB",
            ]
            .map(OsStr::new),
        );
        let process = Watched::spawn(&command, log);
        let server = Self {
            _process: process,
            port,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while server.psql("postgres", "SELECT 1").is_err() {
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not start within 60 s:\n{}",
                std::fs::read_to_string(server.dir.path().join("server.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// The URL of database `db`, with the password.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{USER}:{PASSWORD}@127.0.0.1:{}/{db}", self.port)
    }

    /// Makes database `db` (dropping one of that name first).
    pub fn create_database(&self, db: &str) {
        self.psql("postgres", &format!("DROP DATABASE IF EXISTS \"{db}\""))
            .expect("drops");
        self.psql("postgres", &format!("CREATE DATABASE \"{db}\""))
            .expect("creates");
    }

    /// Runs `sql` with `psql` (PostgreSQL's own client) on database `db`: its output,
    /// unaligned and without headers (`|` between values), or its error.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER])
            .args([
                "-d",
                db,
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .env("PGPASSWORD", PASSWORD)
            .output()
            .map_err(|e| format!("psql: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }
}
