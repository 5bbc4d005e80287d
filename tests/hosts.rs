//! [`Hosts`]: a small data centre on one machine. Each host is a Linux network namespace
//! with one interface (`eth0`, address `198.18.Y.(10 + n)`) on a bridge that lives in a
//! namespace of its own (the switch), so the addresses exist only inside these namespaces
//! and on one link into the test's own namespace (the client, `198.18.Y.1`). Links can be
//! cut (a host's whole link, or only the path between two hosts) and slowed with a token
//! bucket (`tbf`), from the test, while the processes on the hosts run.
//!
//! Everything is torn down when the [`Hosts`] is dropped (also when a test panics):
//! processes in the namespaces are killed, then the namespaces go, and their veth pairs
//! with them. A run that was itself killed leaves namespaces named after its process id;
//! the next [`Hosts::create`] removes those whose process is gone.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The prefix of every namespace the harness makes: `ember-PID-K-...`.
const PREFIX: &str = "ember-";

/// How many host sets this process made, for unique names and subnets.
static MADE: AtomicUsize = AtomicUsize::new(0);

/// Whatever builds hosts runs one at a time, across threads and processes (a file lock in
/// the temp dir, held while the returned file lives): timings (slow links, speculation)
/// and process counts would disturb each other.
pub fn hosts_lock() -> std::fs::File {
    crate::hold_lock(&std::env::temp_dir().join("ember-tests-hosts.lock"))
}

/// Network namespaces `1..=n` on a private bridge; see the module docs.
pub struct Hosts {
    /// `ember-PID-K`: the prefix of this set's namespaces.
    tag: String,
    /// The first three octets of the subnet.
    subnet: [u8; 3],
    /// How many hosts.
    count: usize,
    /// The client end of the link into the test's namespace.
    client_link: String,
}

impl Hosts {
    /// Whether this machine lets the test make namespaces: `Err` with the reason when it
    /// does not (not root, no `ip`, no network namespace support).
    pub fn available() -> Result<(), String> {
        let probe = format!("{PREFIX}{}-probe", std::process::id());
        run(&["ip", "netns", "add", &probe])
            .map_err(|e| format!("network namespaces cannot be created here: {e}"))?;
        run(&["ip", "netns", "del", &probe])
    }

    /// Whether a test that needs hosts may skip when [`Hosts::available`] says no: not
    /// where `EMBER_REQUIRE_NETNS` is set (CI sets it, so these tests always run there).
    pub fn skip(reason: &str) -> bool {
        if std::env::var_os("EMBER_REQUIRE_NETNS").is_some() {
            panic!("EMBER_REQUIRE_NETNS is set but {reason}");
        }
        eprintln!("skipped: {reason}");
        true
    }

    /// Makes `count` hosts on a new bridge, after removing what killed runs left.
    pub fn create(count: usize) -> Result<Hosts, String> {
        assert!((1..=200).contains(&count), "1 to 200 hosts");
        sweep_stale();
        let pid = std::process::id();
        let k = MADE.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{PREFIX}{pid}-{k}");
        // 198.18.0.0/15 (set aside for benchmarks between networks, so it hides no real
        // network): 198.(18|19).Y.0/24 from the process and the set, so that two sets of
        // one process never share a subnet. The client link's route is the only one the
        // test's namespace gets.
        let subnet = [
            198,
            18 + (k % 2) as u8,
            ((pid as usize + k / 2) % 256) as u8,
        ];
        let hosts = Hosts {
            client_link: format!("emb{}c{}", pid % 10_000_000, k % 100),
            tag,
            subnet,
            count,
        };
        hosts.build()?;
        Ok(hosts)
    }

    fn build(&self) -> Result<(), String> {
        let switch = self.switch();
        run(&["ip", "netns", "add", &switch])?;
        run(&["ip", "-n", &switch, "link", "set", "lo", "up"])?;
        run(&["ip", "-n", &switch, "link", "add", "br0", "type", "bridge"])?;
        run(&["ip", "-n", &switch, "link", "set", "br0", "up"])?;
        for host in 1..=self.count {
            let name = self.namespace(host);
            let port = format!("h{host}");
            run(&["ip", "netns", "add", &name])?;
            run(&["ip", "-n", &name, "link", "set", "lo", "up"])?;
            run(&[
                "ip", "link", "add", "eth0", "netns", &name, "type", "veth", "peer", "name", &port,
                "netns", &switch,
            ])?;
            run(&[
                "ip", "-n", &switch, "link", "set", &port, "master", "br0", "up",
            ])?;
            let address = format!("{}/24", self.address(host));
            run(&["ip", "-n", &name, "addr", "add", &address, "dev", "eth0"])?;
            run(&["ip", "-n", &name, "link", "set", "eth0", "up"])?;
        }
        run(&[
            "ip",
            "link",
            "add",
            &self.client_link,
            "type",
            "veth",
            "peer",
            "name",
            "client",
            "netns",
            &switch,
        ])?;
        run(&[
            "ip", "-n", &switch, "link", "set", "client", "master", "br0", "up",
        ])?;
        let client = format!("{}/24", self.client_address());
        run(&["ip", "addr", "add", &client, "dev", &self.client_link])?;
        run(&["ip", "link", "set", &self.client_link, "up"])
    }

    /// How many hosts there are (numbered from 1).
    pub fn count(&self) -> usize {
        self.count
    }

    /// The namespace of `host` (1-based).
    pub fn namespace(&self, host: usize) -> String {
        format!("{}-h{host}", self.tag)
    }

    fn switch(&self) -> String {
        format!("{}-sw", self.tag)
    }

    /// The address of `host` (1-based).
    pub fn address(&self, host: usize) -> String {
        let [a, b, c] = self.subnet;
        format!("{a}.{b}.{c}.{}", 10 + host)
    }

    /// The test's own address on the bridge (what the hosts see a client come from).
    pub fn client_address(&self) -> String {
        let [a, b, c] = self.subnet;
        format!("{a}.{b}.{c}.1")
    }

    /// A command that runs `program` on `host`: `ip netns exec` replaces itself with the
    /// program, so the child's pid is the program's (signals reach it directly).
    pub fn command(&self, host: usize, program: &Path) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.namespace(host)])
            .arg(program);
        command
    }

    /// Cuts `host`'s link both ways: to every other host and to the client. Packets are
    /// dropped, not refused, as when a cable is pulled: connections hang until their
    /// keep-alives give up.
    pub fn cut(&self, host: usize) -> Result<(), String> {
        self.set_port(host, "down")
    }

    /// Restores what [`Hosts::cut`] cut.
    pub fn restore(&self, host: usize) -> Result<(), String> {
        self.set_port(host, "up")
    }

    /// Sets `host`'s port on the switch `up` or `down`.
    fn set_port(&self, host: usize, state: &str) -> Result<(), String> {
        let port = format!("h{host}");
        run(&["ip", "-n", &self.switch(), "link", "set", &port, state])
    }

    /// The two ends of `host`'s link, as (namespace, device): its own interface (what it
    /// sends) and the switch's port (what it receives).
    fn link_ends(&self, host: usize) -> [(String, String); 2] {
        [
            (self.namespace(host), "eth0".to_string()),
            (self.switch(), format!("h{host}")),
        ]
    }

    /// Cuts only the path between hosts `a` and `b` (both ways): each drops what it sends
    /// to the other (a blackhole route: a new connection fails at once, an open one hangs
    /// until its keep-alive gives up), while both still reach everyone else.
    pub fn cut_between(&self, a: usize, b: usize) -> Result<(), String> {
        self.blackholes(a, b, "replace")
    }

    /// Restores what [`Hosts::cut_between`] cut.
    pub fn restore_between(&self, a: usize, b: usize) -> Result<(), String> {
        self.blackholes(a, b, "del")
    }

    /// `ip route ACTION blackhole` for each of `a` and `b` towards the other.
    fn blackholes(&self, a: usize, b: usize, action: &str) -> Result<(), String> {
        for (from, to) in [(a, b), (b, a)] {
            run(&[
                "ip",
                "-n",
                &self.namespace(from),
                "route",
                action,
                "blackhole",
                &format!("{}/32", self.address(to)),
            ])?;
        }
        Ok(())
    }

    /// Limits `host`'s link to `mbit` Mbit/s each way with a token bucket (`tbf`): on its
    /// own interface for what it sends, on the switch's port for what it receives.
    pub fn limit(&self, host: usize, mbit: u32) -> Result<(), String> {
        let rate = format!("{mbit}mbit");
        // A burst of at least rate / HZ (HZ = 250 on common kernels), and a queue that
        // holds about 50 ms at the rate.
        let burst = format!("{}kbit", (u64::from(mbit) * 1000 / 100).max(32));
        let limit = format!("{}", (u64::from(mbit) * 1_000_000 / 8 / 20).max(16_384));
        for (namespace, device) in self.link_ends(host) {
            run(&[
                "tc", "-n", &namespace, "qdisc", "replace", "dev", &device, "root", "tbf", "rate",
                &rate, "burst", &burst, "limit", &limit,
            ])?;
        }
        Ok(())
    }

    /// Lifts the limit of [`Hosts::limit`].
    pub fn unlimit(&self, host: usize) -> Result<(), String> {
        for (namespace, device) in self.link_ends(host) {
            run(&[
                "tc", "-n", &namespace, "qdisc", "del", "dev", &device, "root",
            ])?;
        }
        Ok(())
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        let mut namespaces: Vec<String> = (1..=self.count).map(|h| self.namespace(h)).collect();
        namespaces.push(self.switch());
        remove_namespaces(&namespaces);
    }
}

/// Kills every process in `namespaces`, then deletes them (their veths go with them).
fn remove_namespaces(namespaces: &[String]) {
    for namespace in namespaces {
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", namespace])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
    }
    for namespace in namespaces {
        // A process that was killed a moment ago may still hold it: try a few times.
        for _ in 0..20 {
            if run(&["ip", "netns", "del", namespace]).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

/// Removes the namespaces (and with them the links) of earlier runs whose process is gone.
fn sweep_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    let stale: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| {
            name.strip_prefix(PREFIX)
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<u32>().ok())
                .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
        })
        .map(str::to_string)
        .collect();
    if !stale.is_empty() {
        eprintln!("removing {} namespaces of killed runs", stale.len());
        remove_namespaces(&stale);
    }
}

/// Runs `args` (a command and its arguments); its error output when it fails.
fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
