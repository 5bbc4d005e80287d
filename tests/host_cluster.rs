//! [`HostCluster`]: an Ember cluster spread over [`Hosts`]: the scheduler on host 1 and
//! one executor on each other host, each a real `ember-node` process in its own network
//! namespace with its own work directory, reached by the test (the client) over the
//! bridge. Executors can be killed, paused and restarted; the links are the [`Hosts`]'.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use ember::proto::security::ClientSecurity;
use ember::{EmberConfig, Session};

use crate::cluster_functions;
use crate::hosts::Hosts;

/// The token the processes of a host cluster share (they listen on non-loopback
/// addresses, which needs one).
const TOKEN: &str = "ember-hosts-test-token";

/// Spawns `command` with stdout piped and stderr to `stderr`; its first line (or `None` if
/// it printed none within a minute), and a receiver of its later lines.
pub fn spawn(command: &mut Command, stderr: &Path) -> (Child, Option<String>, Receiver<String>) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(stderr).expect("log file"))
        .spawn()
        .expect("the process starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(60)).ok();
    (child, first, rx)
}

/// `--heartbeat-interval 0.2` (a test cluster notices a lost executor quickly), unless
/// an executor's `args` set an interval of their own.
pub fn heartbeat_args(args: &[String]) -> &'static [&'static str] {
    if args.iter().any(|a| a == "--heartbeat-interval") {
        &[]
    } else {
        &["--heartbeat-interval", "0.2"]
    }
}

/// One process of a host cluster.
pub struct HostProcess {
    /// The host it runs on (1-based).
    pub host: usize,
    /// The executor id it registered under first (empty for the scheduler).
    pub id: String,
    /// Its error output (the tracing log).
    pub log: PathBuf,
    child: Child,
    /// It was killed (or has exited).
    dead: bool,
}

impl HostProcess {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`KILL`, `STOP`, `CONT`) to the process.
    pub fn signal(&mut self, signal: &str) {
        if self.dead {
            return;
        }
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status();
        if signal == "KILL" {
            let _ = self.child.wait();
            self.dead = true;
        }
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A scheduler on host 1 and executors on hosts 2.., all killed when this is dropped.
pub struct HostCluster {
    /// The scheduler's gRPC URL (on host 1's address).
    pub url: String,
    /// The scheduler process.
    pub scheduler: HostProcess,
    /// The executor processes, in start order (restarts are appended).
    pub executors: Vec<HostProcess>,
    node: PathBuf,
    executor_args: Vec<String>,
    dir: tempfile::TempDir,
    // Last: the namespaces go after the processes.
    hosts: Hosts,
}

impl HostCluster {
    /// A cluster on `executor_hosts + 1` new hosts: `node` (the `ember-node` binary) runs
    /// `ember scheduler` with `scheduler_args` on host 1 and `ember executor` with
    /// `executor_args` (2 slots each) on every other host.
    pub fn start(
        node: &Path,
        executor_hosts: usize,
        scheduler_args: &[&str],
        executor_args: &[&str],
    ) -> Result<Self, String> {
        let hosts = Hosts::create(executor_hosts + 1)?;
        let dir = tempfile::Builder::new()
            .prefix("ember-hosts-test-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let log = dir.path().join("scheduler.log");
        let bind = format!("{}:0", hosts.address(1));
        let mut command = hosts.command(1, node);
        command
            .args(["scheduler", "--bind", &bind, "--no-ui"])
            .args(["--auth-token", TOKEN])
            .args(scheduler_args)
            .env("RUST_LOG", "info")
            .env_remove("EMBER_AUTH_TOKEN");
        let (child, line, _lines) = spawn(&mut command, &log);
        let scheduler = HostProcess {
            host: 1,
            id: String::new(),
            log,
            child,
            dead: false,
        };
        let Some(line) = line else {
            return Err(format!(
                "the scheduler did not start: {}",
                scheduler.log_text()
            ));
        };
        let address = line.rsplit(' ').next().unwrap_or_default().to_string();
        let mut cluster = HostCluster {
            url: format!("http://{address}"),
            scheduler,
            executors: Vec::new(),
            node: node.to_path_buf(),
            executor_args: executor_args.iter().map(|a| a.to_string()).collect(),
            dir,
            hosts,
        };
        for host in 2..=executor_hosts + 1 {
            cluster.start_executor(host)?;
        }
        Ok(cluster)
    }

    /// The hosts, to cut and slow their links.
    pub fn hosts(&self) -> &Hosts {
        &self.hosts
    }

    /// Starts an executor on `host` (its work directory is the host's, kept across
    /// restarts); returns its index in [`HostCluster::executors`].
    pub fn start_executor(&mut self, host: usize) -> Result<usize, String> {
        let n = self.executors.len();
        let log = self.dir.path().join(format!("executor-{n}-host{host}.log"));
        let bind = format!("{}:0", self.hosts.address(host));
        let work = self.dir.path().join(format!("work-host{host}"));
        let mut command = self.hosts.command(host, &self.node);
        command
            .args(["executor", "--scheduler", &self.url, "--bind", &bind])
            .args(["--auth-token", TOKEN, "--slots", "2"])
            .args(heartbeat_args(&self.executor_args))
            .arg("--work-dir")
            .arg(&work)
            .args(&self.executor_args)
            .env("RUST_LOG", "info")
            .env_remove("EMBER_AUTH_TOKEN");
        let (mut child, line, _lines) = spawn(&mut command, &log);
        let Some(line) = line else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "the executor on host {host} did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            ));
        };
        // "ember executor executor-3 listening on http://ADDRESS:PORT"
        let id = line
            .split_whitespace()
            .nth(2)
            .unwrap_or_default()
            .to_string();
        self.executors.push(HostProcess {
            host,
            id,
            log,
            child,
            dead: false,
        });
        Ok(n)
    }

    /// The executor process that registered as `id` first, if any.
    pub fn executor_by_id(&mut self, id: &str) -> Option<&mut HostProcess> {
        self.executors.iter_mut().find(|e| e.id == id)
    }

    /// The client's credentials.
    pub fn security(&self) -> ClientSecurity {
        ClientSecurity {
            token: Some(TOKEN.to_string()),
            ca: None,
        }
    }

    /// A session on this cluster set up by `config`, with the cluster tests' functions.
    pub async fn session(&self, config: EmberConfig) -> Session {
        Session::connect_with_functions(&self.url, self.security(), config, cluster_functions())
            .await
            .expect("the client connects")
    }

    /// The scheduler's log so far.
    pub fn scheduler_log(&self) -> String {
        self.scheduler.log_text()
    }

    /// Every executor's log so far, each under a header naming its host and first id.
    pub fn executor_logs(&self) -> String {
        self.executors
            .iter()
            .map(|e| format!("--- {} on host {}\n{}", e.id, e.host, e.log_text()))
            .collect()
    }
}

impl Drop for HostCluster {
    fn drop(&mut self) {
        for executor in &mut self.executors {
            executor.signal("CONT");
            executor.signal("KILL");
        }
        self.scheduler.signal("KILL");
    }
}
