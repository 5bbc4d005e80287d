//! [`ExecutorPool`]: the executors a scheduler can use right now, their free slots, and
//! which running job gets the next free slot.
//!
//! Executors join (registration, or the embedded cluster's start) and leave (declared lost:
//! missed heartbeats, a broken call, a failed fetch from them). Every running job draws
//! slots from the one pool, so concurrent jobs share the cluster under a [`Policy`]. A job
//! that has a task ready but gets no slot marks itself *waiting*; the policy decides which
//! waiting job may take a slot that frees. Every change bumps a version on a watch channel
//! that the jobs' loops wait on.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use ember_proto::ids::ExecutorId;

use super::client::ExecutorClient;
use crate::sync::lock;

/// How free slots are shared between jobs running at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// The job submitted first takes every slot it can use; later jobs get the rest.
    #[default]
    Fifo,
    /// A free slot goes to the waiting job with the fewest running tasks.
    Fair,
}

impl FromStr for Policy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "fifo" => Ok(Policy::Fifo),
            "fair" => Ok(Policy::Fair),
            other => Err(format!("unknown policy '{other}' (expected fifo or fair)")),
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Policy::Fifo => "fifo",
            Policy::Fair => "fair",
        })
    }
}

/// One executor in the pool.
struct Member {
    client: Arc<dyn ExecutorClient>,
    free: usize,
    last_seen: Instant,
    /// The time between its last two heartbeats.
    gap: Duration,
    /// A speculative copy beat one of its attempts since its last heartbeat.
    straggling: bool,
    /// Tasks it runs, as its last heartbeat said.
    running_tasks: usize,
    /// What its last heartbeat said of it.
    stats: HeartbeatStats,
}

/// What an executor's heartbeat says of it besides its running tasks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeartbeatStats {
    /// Bytes its tasks hold in its memory pool.
    pub memory_used: u64,
    /// Its memory pool's limit (0: none).
    pub memory_limit: u64,
    /// Shuffle bytes it has served since it started.
    pub shuffle_bytes_served: u64,
    /// Tasks it finished since it started.
    pub tasks_succeeded: u64,
    /// Tasks that failed on it since it started.
    pub tasks_failed: u64,
}

/// An executor declared lost, as the status pages remember it.
struct Gone {
    status: ExecutorStatus,
    lost_at: Instant,
}

/// Lost executors remembered for the status pages.
const KEEP_GONE: usize = 256;

impl Member {
    /// An executor in another process that has been silent for over three of its
    /// heartbeat gaps (and at least a second), or that lost a speculation race since its
    /// last heartbeat.
    fn is_suspect(&self) -> bool {
        self.client.address().is_some()
            && (self.straggling
                || (self.gap > Duration::ZERO
                    && self.last_seen.elapsed() > (self.gap * 3).max(Duration::from_secs(1))))
    }

    fn status(&self, id: &ExecutorId) -> ExecutorStatus {
        let remote = self.client.address().is_some();
        ExecutorStatus {
            id: id.clone(),
            address: self.client.address().map(str::to_string),
            slots: self.client.slots(),
            free: self.free,
            running_tasks: if remote {
                self.running_tasks
            } else {
                self.client.slots().saturating_sub(self.free)
            },
            alive: true,
            last_heartbeat_ago: remote.then(|| self.last_seen.elapsed()),
            lost_reason: None,
            memory_used: self.stats.memory_used,
            memory_limit: self.stats.memory_limit,
            shuffle_bytes_served: self.stats.shuffle_bytes_served,
        }
    }
}

/// What the pool knows of a running job.
#[derive(Debug, Default)]
struct Demand {
    /// It has a task ready and no slot for it.
    waiting: bool,
    /// Its tasks holding a slot.
    running: usize,
}

#[derive(Default)]
struct PoolState {
    members: BTreeMap<ExecutorId, Member>,
    jobs: BTreeMap<u64, Demand>,
    /// Every executor declared lost, in order.
    lost: Vec<ExecutorId>,
    /// The last [`KEEP_GONE`] executors declared lost, oldest first.
    gone: std::collections::VecDeque<Gone>,
    /// The address of every member in another process, while membership is unchanged.
    addresses: Option<Arc<HashMap<String, String>>>,
    next_job: u64,
}

/// Where a task would like to run.
#[derive(Debug, Default)]
pub struct Placement<'a> {
    /// Bytes of the task's input each executor holds.
    pub local_bytes: HashMap<&'a str, u64>,
    /// The executor of its last failed attempt, avoided while another has room.
    pub avoid: Option<&'a str>,
    /// An executor it must not run on (where a speculative copy's original runs).
    pub exclude: Option<&'a str>,
}

/// An executor snapshot, for status pages and tests.
#[derive(Debug, Clone)]
pub struct ExecutorStatus {
    /// Its id.
    pub id: ExecutorId,
    /// Its address, for executors in other processes.
    pub address: Option<String>,
    /// Its slots.
    pub slots: usize,
    /// Slots not running a task.
    pub free: usize,
    /// Tasks it runs, as its last heartbeat said (0 for an executor in this process,
    /// which does not heartbeat).
    pub running_tasks: usize,
    /// Whether it is still in the pool (`false`: declared lost).
    pub alive: bool,
    /// Time since its last heartbeat (`None` for an executor in this process), or, for a
    /// lost one, since it was declared lost.
    pub last_heartbeat_ago: Option<Duration>,
    /// Why it was declared lost.
    pub lost_reason: Option<String>,
    /// Bytes its tasks hold in its memory pool.
    pub memory_used: u64,
    /// Its memory pool's limit (0: none).
    pub memory_limit: u64,
    /// Shuffle bytes it has served since it started.
    pub shuffle_bytes_served: u64,
}

/// The executors and the slot accounting shared by every job of a scheduler.
pub struct ExecutorPool {
    state: Mutex<PoolState>,
    changed: watch::Sender<u64>,
    policy: Policy,
}

impl ExecutorPool {
    /// An empty pool sharing slots under `policy`.
    pub fn new(policy: Policy) -> Self {
        Self {
            state: Mutex::new(PoolState::default()),
            changed: watch::channel(0).0,
            policy,
        }
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v += 1);
    }

    /// A receiver that sees every later change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Adds an executor with all its slots free.
    pub fn add(&self, client: Arc<dyn ExecutorClient>) {
        let id = client.id().to_string();
        tracing::info!(executor = %id, slots = client.slots(), address = client.address().unwrap_or("(in process)"), "executor joined");
        {
            let mut state = lock(&self.state);
            state.members.insert(
                id.into(),
                Member {
                    free: client.slots(),
                    client,
                    last_seen: Instant::now(),
                    gap: Duration::ZERO,
                    straggling: false,
                    running_tasks: 0,
                    stats: HeartbeatStats::default(),
                },
            );
            state.addresses = None;
        }
        self.bump();
    }

    /// Declares executor `id` lost; returns whether it was still a member.
    pub fn mark_lost(&self, id: &str, reason: &str) -> bool {
        let removed = {
            let mut state = lock(&self.state);
            let removed = state.members.remove(id);
            if let Some(member) = &removed {
                state.lost.push(ExecutorId::from(id));
                state.addresses = None;
                let mut status = member.status(&ExecutorId::from(id));
                status.alive = false;
                status.running_tasks = 0;
                status.lost_reason = Some(reason.to_string());
                state.gone.push_back(Gone {
                    status,
                    lost_at: Instant::now(),
                });
                if state.gone.len() > KEEP_GONE {
                    state.gone.pop_front();
                }
            }
            removed.is_some()
        };
        if removed {
            tracing::warn!(executor = %id, "executor lost: {reason}");
            self.bump();
        }
        removed
    }

    /// Notes that a speculative copy finished before an attempt on executor `id`: it gets
    /// no task while another executor answers, until its next heartbeat.
    pub fn mark_straggler(&self, id: &str) {
        if let Some(member) = lock(&self.state).members.get_mut(id) {
            member.straggling = true;
        }
    }

    /// Notes a heartbeat and the tasks the executor says it runs; `false` when the
    /// executor is not (or no longer) a member.
    pub fn touch(&self, id: &str, running_tasks: usize, stats: HeartbeatStats) -> bool {
        match lock(&self.state).members.get_mut(id) {
            Some(member) => {
                member.gap = member.last_seen.elapsed();
                member.last_seen = Instant::now();
                member.straggling = false;
                member.running_tasks = running_tasks;
                member.stats = stats;
                true
            }
            None => false,
        }
    }

    /// Declares lost every executor silent for longer than `timeout`.
    pub fn expire(&self, timeout: Duration) {
        let silent: Vec<ExecutorId> = lock(&self.state)
            .members
            .iter()
            .filter(|(_, m)| m.client.address().is_some() && m.last_seen.elapsed() > timeout)
            .map(|(id, _)| id.clone())
            .collect();
        for id in silent {
            self.mark_lost(
                &id,
                &format!("no heartbeat for {:.1}s", timeout.as_secs_f64()),
            );
        }
    }

    /// The executors lost since position `cursor` of the log, and the new position.
    pub fn lost_since(&self, cursor: usize) -> (Vec<ExecutorId>, usize) {
        let state = lock(&self.state);
        (
            state.lost.get(cursor..).unwrap_or_default().to_vec(),
            state.lost.len(),
        )
    }

    /// Whether no executor is left.
    pub fn is_empty(&self) -> bool {
        lock(&self.state).members.is_empty()
    }

    /// The client of executor `id`.
    pub fn client(&self, id: &str) -> Option<Arc<dyn ExecutorClient>> {
        lock(&self.state)
            .members
            .get(id)
            .map(|m| Arc::clone(&m.client))
    }

    /// Every member's client.
    pub fn clients(&self) -> Vec<Arc<dyn ExecutorClient>> {
        lock(&self.state)
            .members
            .values()
            .map(|m| Arc::clone(&m.client))
            .collect()
    }

    /// The address of every member in another process, by id.
    pub fn addresses(&self) -> HashMap<String, String> {
        lock(&self.state)
            .members
            .iter()
            .filter_map(|(id, m)| Some((id.to_string(), m.client.address()?.to_string())))
            .collect()
    }

    /// [`Self::addresses`], shared: worked out again only when the membership changes.
    pub fn shared_addresses(&self) -> Arc<HashMap<String, String>> {
        let mut state = lock(&self.state);
        if let Some(addresses) = &state.addresses {
            return Arc::clone(addresses);
        }
        let addresses: Arc<HashMap<String, String>> = Arc::new(
            state
                .members
                .iter()
                .filter_map(|(id, m)| Some((id.to_string(), m.client.address()?.to_string())))
                .collect(),
        );
        state.addresses = Some(Arc::clone(&addresses));
        addresses
    }

    /// A snapshot of the members.
    pub fn status(&self) -> Vec<ExecutorStatus> {
        lock(&self.state)
            .members
            .iter()
            .map(|(id, m)| m.status(id))
            .collect()
    }

    /// A snapshot of the members and of the executors lost lately, for status pages.
    pub fn status_with_lost(&self) -> Vec<ExecutorStatus> {
        let state = lock(&self.state);
        let mut all: Vec<ExecutorStatus> =
            state.members.iter().map(|(id, m)| m.status(id)).collect();
        all.extend(state.gone.iter().map(|gone| ExecutorStatus {
            last_heartbeat_ago: Some(gone.lost_at.elapsed()),
            ..gone.status.clone()
        }));
        all
    }

    /// Jobs running now.
    pub fn running_jobs(&self) -> usize {
        lock(&self.state).jobs.len()
    }

    /// Enters a new job; its number orders it for the FIFO policy.
    pub fn join_job(&self) -> u64 {
        let mut state = lock(&self.state);
        let seq = state.next_job;
        state.next_job += 1;
        state.jobs.insert(seq, Demand::default());
        seq
    }

    /// Removes a finished job.
    pub fn leave_job(&self, seq: u64) {
        lock(&self.state).jobs.remove(&seq);
        self.bump();
    }

    /// Says whether job `seq` has a task ready that found no slot.
    pub fn set_waiting(&self, seq: u64, waiting: bool) {
        let changed = {
            let mut state = lock(&self.state);
            match state.jobs.get_mut(&seq) {
                Some(demand) if demand.waiting != waiting => {
                    demand.waiting = waiting;
                    true
                }
                _ => false,
            }
        };
        // Others may be holding back for this job; let them look again.
        if changed && !waiting {
            self.bump();
        }
    }

    /// Takes a slot for a task of job `seq`, if the policy lets this job have one now and
    /// an executor has room: the one holding most of the task's input, then the one with
    /// most free slots.
    pub fn acquire(&self, seq: u64, placement: &Placement<'_>) -> Option<Arc<dyn ExecutorClient>> {
        let mut state = lock(&self.state);
        let running = state.jobs.get(&seq).map_or(0, |d| d.running);
        let held_back = state.jobs.iter().any(|(other, demand)| {
            *other != seq
                && demand.waiting
                && match self.policy {
                    Policy::Fifo => *other < seq,
                    Policy::Fair => demand.running < running,
                }
        });
        if held_back {
            return None;
        }
        // An executor that missed its heartbeats (hung, paused, cut off) gets no task while
        // another answers: a task placed there would wait with it until it is declared lost.
        let all_suspect = state.members.values().all(Member::is_suspect);
        let best = |skip: Option<&str>| {
            state
                .members
                .iter()
                .filter(|(id, m)| {
                    m.free > 0
                        && Some(id.as_str()) != skip
                        && Some(id.as_str()) != placement.exclude
                        && (all_suspect || !m.is_suspect())
                })
                .max_by_key(|(id, m)| {
                    let local = placement.local_bytes.get(id.as_str()).copied().unwrap_or(0);
                    (
                        local,
                        m.free,
                        std::cmp::Reverse(id.len()),
                        std::cmp::Reverse(*id),
                    )
                })
                .map(|(id, _)| id.clone())
        };
        let chosen = best(placement.avoid).or_else(|| best(None))?;
        let member = state.members.get_mut(&chosen)?;
        member.free -= 1;
        let client = Arc::clone(&member.client);
        if let Some(demand) = state.jobs.get_mut(&seq) {
            demand.running += 1;
        }
        Some(client)
    }

    /// Gives back a slot that a task of job `seq` held on executor `id`.
    pub fn release(&self, seq: u64, id: &str) {
        {
            let mut state = lock(&self.state);
            if let Some(member) = state.members.get_mut(id) {
                member.free = (member.free + 1).min(member.client.slots());
            }
            if let Some(demand) = state.jobs.get_mut(&seq) {
                demand.running = demand.running.saturating_sub(1);
            }
        }
        self.bump();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::ScriptedExecutor;

    fn pool(policy: Policy, slots: &[usize]) -> ExecutorPool {
        let pool = ExecutorPool::new(policy);
        for (i, s) in slots.iter().enumerate() {
            pool.add(Arc::new(ScriptedExecutor::idle(&format!("e{i}"), *s)));
        }
        pool
    }

    fn take(pool: &ExecutorPool, seq: u64, placement: &Placement<'_>) -> Option<String> {
        pool.acquire(seq, placement).map(|c| c.id().to_string())
    }

    #[test]
    fn picks_the_executor_with_the_input_then_the_most_free_and_avoids_the_failed_one() {
        let pool = pool(Policy::Fifo, &[1, 2]);
        let job = pool.join_job();
        let local = Placement {
            local_bytes: HashMap::from([("e0", 10)]),
            avoid: None,
            exclude: None,
        };
        assert_eq!(take(&pool, job, &local).as_deref(), Some("e0"));
        assert_eq!(take(&pool, job, &local).as_deref(), Some("e1"));
        let avoid = Placement {
            local_bytes: HashMap::new(),
            avoid: Some("e1"),
            exclude: None,
        };
        // e1 is the only one with room: taken even though it is avoided.
        assert_eq!(take(&pool, job, &avoid).as_deref(), Some("e1"));
        assert_eq!(take(&pool, job, &avoid), None);
        pool.release(job, "e0");
        assert_eq!(
            take(&pool, job, &Placement::default()).as_deref(),
            Some("e0")
        );
    }

    #[test]
    fn fifo_holds_later_jobs_back_while_an_earlier_one_waits() {
        let pool = pool(Policy::Fifo, &[1]);
        let first = pool.join_job();
        let second = pool.join_job();
        assert!(take(&pool, first, &Placement::default()).is_some());
        pool.set_waiting(first, true);
        pool.release(first, "e0");
        assert_eq!(take(&pool, second, &Placement::default()), None);
        assert!(take(&pool, first, &Placement::default()).is_some());
        pool.set_waiting(first, false);
        pool.release(first, "e0");
        assert!(take(&pool, second, &Placement::default()).is_some());
    }

    #[test]
    fn fair_gives_the_slot_to_the_job_with_fewer_running_tasks() {
        let pool = pool(Policy::Fair, &[3]);
        let first = pool.join_job();
        let second = pool.join_job();
        assert!(take(&pool, first, &Placement::default()).is_some());
        assert!(take(&pool, first, &Placement::default()).is_some());
        pool.set_waiting(second, true);
        // The first job runs 2 tasks, the second (waiting) none: the slot is the second's.
        assert_eq!(take(&pool, first, &Placement::default()), None);
        assert!(take(&pool, second, &Placement::default()).is_some());
    }

    #[test]
    fn lost_executors_leave_the_pool_and_the_log_names_them() {
        let pool = pool(Policy::Fifo, &[1, 1]);
        assert!(pool.mark_lost("e1", "test"));
        assert!(!pool.mark_lost("e1", "test"));
        assert!(!pool.touch("e1", 0, HeartbeatStats::default()));
        let (lost, cursor) = pool.lost_since(0);
        assert_eq!((lost, cursor), (vec![ExecutorId::from("e1")], 1));
        assert_eq!(pool.lost_since(1).0, Vec::<ExecutorId>::new());
        assert!(!pool.is_empty());
    }
}
