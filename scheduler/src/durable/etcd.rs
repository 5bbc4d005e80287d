//! Job state in etcd, and the leader election of standby schedulers
//! (`ember scheduler --ha etcd://HOST:PORT[,HOST:PORT][/PREFIX] --advertise URL`).
//!
//! Election: each scheduler grants itself a lease of `lease_ttl` and tries to create the key
//! `PREFIX/leader` (its advertised URL) under that lease in a transaction that succeeds
//! only if the key does not exist. The one that created it leads, and keeps its lease
//! alive; the others poll until the key is gone (the leader's lease ran out: it died, or
//! lost etcd) and try again. Nothing of a standby listens: clients and executors, given
//! every scheduler's URL, find the leader as the one that answers.
//!
//! Fencing: every write of the leader is a transaction conditional on `PREFIX/leader`
//! still having the creation revision it had when this scheduler created it; a refused
//! write means another scheduler leads, and this one steps down at once. It also steps
//! down when its lease has not been confirmed for `lease_ttl` less a margin, which is
//! before etcd can let the lease expire and another scheduler take over. Stepping down is
//! the caller's `on_lost` (the `ember` binary restarts itself as a standby).
//!
//! Layout: `PREFIX/jobs/JOB/spec/NNNN` (the JobSpec in pieces of at most 1 MiB, under
//! etcd's request limit) and `PREFIX/jobs/JOB/events/NNNNNNNNNNNN` (batches of JSON lines).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ember_proto::pb::etcd::compare::{CompareResult, CompareTarget, TargetUnion};
use ember_proto::pb::etcd::kv_client::KvClient;
use ember_proto::pb::etcd::lease_client::LeaseClient;
use ember_proto::pb::etcd::request_op::Request as Op;
use ember_proto::pb::etcd::{
    Compare, DeleteRangeRequest, LeaseGrantRequest, LeaseKeepAliveRequest, PutRequest,
    RangeRequest, RequestOp, TxnRequest,
};
use tonic::transport::{Channel, Endpoint};

use super::store::{StateStore, StoredJob, file_stem};
use crate::error::{Result, SchedulerError};
use crate::sync::lock;

/// How long a job's events gather before they are written to etcd (unless the job waits
/// for them): one consensus write and fsync per batch, not per event.
const LINGER: Duration = Duration::from_millis(50);

/// The largest value written in one request (etcd refuses requests over 1.5 MiB).
const PIECE_BYTES: usize = 1 << 20;

/// What a scheduler that steps down does (the `ember` binary restarts itself as a
/// standby); called once, with the reason.
pub type OnLost = Arc<dyn Fn(String) + Send + Sync>;

/// How a scheduler joins the election.
#[derive(Clone)]
pub struct HaConfig {
    /// etcd's endpoints, `http://HOST:PORT`.
    pub endpoints: Vec<String>,
    /// The prefix of every key (`/ember` by default).
    pub prefix: String,
    /// The URL clients and executors reach this scheduler at.
    pub advertise: String,
    /// The leader's lease: a leader that dies is replaced within about this time.
    pub lease_ttl: Duration,
    /// Wait for etcd when it cannot be reached (a scheduler that stepped down and rejoins),
    /// rather than fail at once (a scheduler starting).
    pub wait_for_etcd: bool,
    /// Called when this scheduler, leading, loses its leadership.
    pub on_lost: OnLost,
}

impl std::fmt::Debug for HaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HaConfig")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("advertise", &self.advertise)
            .field("lease_ttl", &self.lease_ttl)
            .finish_non_exhaustive()
    }
}

/// Parses `etcd://HOST:PORT[,HOST:PORT][/PREFIX]` into endpoints and a key prefix.
pub fn parse_ha_url(url: &str) -> Result<(Vec<String>, String)> {
    let bad = |message: String| SchedulerError::Config {
        key: "--ha".into(),
        message,
    };
    let rest = url.strip_prefix("etcd://").ok_or_else(|| {
        bad(format!(
            "expected etcd://HOST:PORT[,HOST:PORT][/PREFIX], got '{url}'"
        ))
    })?;
    let (hosts, prefix) = match rest.split_once('/') {
        Some((hosts, prefix)) if !prefix.is_empty() => {
            (hosts, format!("/{}", prefix.trim_end_matches('/')))
        }
        Some((hosts, _)) => (hosts, "/ember".to_string()),
        None => (rest, "/ember".to_string()),
    };
    let endpoints: Vec<String> = hosts
        .split(',')
        .filter(|h| !h.is_empty())
        .map(|h| {
            let port_ok = h
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if port_ok {
                Ok(format!("http://{h}"))
            } else {
                Err(bad(format!("'{h}' in '{url}' is not HOST:PORT")))
            }
        })
        .collect::<Result<_>>()?;
    if endpoints.is_empty() {
        return Err(bad(format!("no etcd endpoint in '{url}'")));
    }
    Ok((endpoints, prefix))
}

/// This scheduler's leadership, once elected: the store its writes go through.
#[derive(Debug)]
pub struct Leadership {
    /// The job state in etcd, every write conditional on this leadership.
    pub store: Arc<EtcdStore>,
    /// How long the election took from the start (standby time included).
    pub waited: Duration,
}

/// Connects to etcd, stands by while another scheduler leads, and returns once this one
/// leads (its lease kept alive in the background from then on).
pub async fn lead(config: HaConfig) -> Result<Leadership> {
    let started = Instant::now();
    let endpoints_text = config.endpoints.join(",");
    let unreachable = |message: String| SchedulerError::State {
        store: format!("etcd {endpoints_text}"),
        message,
    };
    let channel = channel(&config.endpoints)?;
    let mut kv =
        KvClient::new(channel.clone()).max_decoding_message_size(ember_proto::MAX_MESSAGE_BYTES);
    let mut leases = LeaseClient::new(channel.clone());
    let leader_key = format!("{}/leader", config.prefix).into_bytes();
    let poll = (config.lease_ttl / 8).clamp(Duration::from_millis(50), Duration::from_millis(500));
    let mut told: Option<String> = None;
    loop {
        // A lease for this try; one that is not used runs out by itself. It counts from
        // before the request: etcd's clock starts later, never earlier.
        let asked = Instant::now();
        let granted = tokio::time::timeout(
            Duration::from_secs(5),
            leases.lease_grant(LeaseGrantRequest {
                ttl: i64::try_from(config.lease_ttl.as_secs().max(1)).unwrap_or(i64::MAX),
                id: 0,
            }),
        )
        .await;
        let lease = match granted {
            Ok(Ok(reply)) => reply.into_inner(),
            failure => {
                let message = match failure {
                    Ok(Err(status)) => status.message().to_string(),
                    _ => "no answer within 5s".to_string(),
                };
                if !config.wait_for_etcd {
                    return Err(unreachable(format!("cannot reach etcd (--ha): {message}")));
                }
                tracing::warn!("waiting for etcd at {endpoints_text}: {message}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let campaign = TxnRequest {
            compare: vec![Compare {
                result: CompareResult::Equal as i32,
                target: CompareTarget::Create as i32,
                key: leader_key.clone(),
                target_union: Some(TargetUnion::CreateRevision(0)),
            }],
            success: vec![RequestOp {
                request: Some(Op::RequestPut(PutRequest {
                    key: leader_key.clone(),
                    value: config.advertise.clone().into_bytes(),
                    lease: lease.id,
                })),
            }],
            failure: vec![RequestOp {
                request: Some(Op::RequestRange(RangeRequest {
                    key: leader_key.clone(),
                    ..RangeRequest::default()
                })),
            }],
        };
        let reply = match kv.txn(campaign).await {
            Ok(reply) => reply.into_inner(),
            Err(status) => {
                if !config.wait_for_etcd {
                    return Err(unreachable(format!(
                        "cannot reach etcd (--ha): {}",
                        status.message()
                    )));
                }
                tracing::warn!("waiting for etcd at {endpoints_text}: {}", status.message());
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if reply.succeeded {
            let revision = reply.header.map_or(0, |h| h.revision);
            tracing::info!(
                advertise = %config.advertise,
                lease_ttl_s = config.lease_ttl.as_secs_f64(),
                "elected leader through etcd at {endpoints_text}"
            );
            let store = Arc::new(EtcdStore {
                kv,
                endpoints: endpoints_text.clone(),
                prefix: config.prefix.clone(),
                leader_key,
                leader_revision: revision,
                next_batch: Mutex::new(HashMap::new()),
                on_lost: Arc::clone(&config.on_lost),
            });
            // The TTL etcd granted (whole seconds), not the one asked for.
            let ttl = Duration::from_secs(u64::try_from(lease.ttl).unwrap_or(0).max(1));
            keep_alive(leases, lease.id, ttl, asked, Arc::clone(&config.on_lost));
            return Ok(Leadership {
                store,
                waited: started.elapsed(),
            });
        }
        let leader = reply
            .responses
            .into_iter()
            .find_map(|r| match r.response {
                Some(ember_proto::pb::etcd::response_op::Response::ResponseRange(range)) => {
                    range.kvs.into_iter().next()
                }
                _ => None,
            })
            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned());
        if leader != told {
            if let Some(leader) = &leader {
                tracing::info!(%leader, "standing by: the leader is {leader}");
            }
            told = leader;
        }
        tokio::time::sleep(poll).await;
    }
}

fn channel(endpoints: &[String]) -> Result<Channel> {
    let endpoints = endpoints
        .iter()
        .map(|e| {
            Endpoint::from_shared(e.clone())
                .map(|e| {
                    e.connect_timeout(Duration::from_secs(2))
                        .timeout(Duration::from_secs(5))
                })
                .map_err(|err| SchedulerError::Config {
                    key: "--ha".into(),
                    message: format!("{e}: {err}"),
                })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Channel::balance_list(endpoints.into_iter()))
}

/// Keeps the leader's lease alive; calls `on_lost` once it cannot be sure that it still
/// holds it (no renewal confirmed for the TTL less a margin, or etcd says it expired).
fn keep_alive(
    mut leases: LeaseClient<Channel>,
    id: i64,
    ttl: Duration,
    granted_at: Instant,
    on_lost: OnLost,
) {
    tokio::spawn(async move {
        // Sure of the lease until then: the TTL from a request's sending, less a margin
        // for clocks that run at slightly different speeds.
        let margin = ttl / 5;
        let mut sure_until = granted_at + ttl - margin;
        let every = ttl / 4;
        let lost = |reason: String| {
            tracing::error!("lost the leadership: {reason}; stepping down");
            on_lost(reason);
        };
        let expired = || {
            format!(
                "the lease could not be renewed with etcd within {}s",
                ttl.as_secs_f64()
            )
        };
        loop {
            // etcd answers a keep-alive stream once it has a request: the first goes in
            // before the stream opens.
            let (sender, requests) = tokio::sync::mpsc::channel::<LeaseKeepAliveRequest>(4);
            let mut sent = Instant::now();
            if sender.try_send(LeaseKeepAliveRequest { id }).is_err() {
                return lost("the keep-alive stream could not be fed".into());
            }
            let stream = tokio::time::timeout(
                sure_until.saturating_duration_since(Instant::now()),
                leases.lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(requests)),
            )
            .await;
            let mut replies = match stream {
                Ok(Ok(replies)) => replies.into_inner(),
                Ok(Err(status)) => {
                    tracing::warn!("renewing the lease with etcd: {}", status.message());
                    if Instant::now() >= sure_until {
                        return lost(expired());
                    }
                    tokio::time::sleep(every / 4).await;
                    continue;
                }
                Err(_) => return lost(expired()),
            };
            loop {
                let wait = sure_until.saturating_duration_since(Instant::now());
                match tokio::time::timeout(wait, replies.message()).await {
                    Ok(Ok(Some(reply))) if reply.ttl > 0 => {
                        let granted = Duration::from_secs(u64::try_from(reply.ttl).unwrap_or(0));
                        sure_until = sent + granted - margin;
                    }
                    Ok(Ok(Some(_))) => return lost("etcd says the lease has expired".into()),
                    // The stream broke: open another.
                    Ok(Ok(None) | Err(_)) => break,
                    Err(_) => return lost(expired()),
                }
                tokio::time::sleep(every).await;
                if Instant::now() >= sure_until {
                    return lost(expired());
                }
                sent = Instant::now();
                if sender.send(LeaseKeepAliveRequest { id }).await.is_err() {
                    break;
                }
            }
        }
    });
}

/// Job state in etcd, written only while this scheduler leads.
pub struct EtcdStore {
    kv: KvClient<Channel>,
    endpoints: String,
    prefix: String,
    leader_key: Vec<u8>,
    /// The creation revision of the leader key this scheduler wrote: the fence.
    leader_revision: i64,
    /// The number of each job's next batch of events.
    next_batch: Mutex<HashMap<String, u64>>,
    on_lost: OnLost,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// The end of a range that holds every key starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl EtcdStore {
    fn job_prefix(&self, job_id: &str) -> String {
        format!("{}/jobs/{}/", self.prefix, file_stem(job_id))
    }

    fn error(&self, message: String) -> SchedulerError {
        SchedulerError::State {
            store: self.describe(),
            message,
        }
    }

    /// Runs `ops` if this scheduler still leads; steps down when it does not, or when
    /// etcd cannot say.
    async fn fenced(&self, ops: Vec<RequestOp>) -> Result<()> {
        let txn = TxnRequest {
            compare: vec![Compare {
                result: CompareResult::Equal as i32,
                target: CompareTarget::Create as i32,
                key: self.leader_key.clone(),
                target_union: Some(TargetUnion::CreateRevision(self.leader_revision)),
            }],
            success: ops,
            failure: Vec::new(),
        };
        match self.kv.clone().txn(txn).await {
            Ok(reply) if reply.get_ref().succeeded => Ok(()),
            Ok(_) => {
                let reason = "a write was refused: another scheduler leads now".to_string();
                (self.on_lost)(reason.clone());
                Err(SchedulerError::NotLeader { leader: None })
            }
            Err(status) => {
                let reason = format!("a write to etcd failed: {}", status.message());
                (self.on_lost)(reason.clone());
                Err(self.error(reason))
            }
        }
    }
}

#[async_trait::async_trait]
impl StateStore for EtcdStore {
    async fn load(&self) -> Result<Vec<StoredJob>> {
        let prefix = format!("{}/jobs/", self.prefix).into_bytes();
        let reply = self
            .kv
            .clone()
            .range(RangeRequest {
                key: prefix.clone(),
                range_end: prefix_end(&prefix),
                ..RangeRequest::default()
            })
            .await
            .map_err(|s| self.error(format!("reading the jobs: {}", s.message())))?
            .into_inner();
        // Keys come sorted: pieces and batches in order.
        let mut jobs: BTreeMap<String, (Vec<u8>, Vec<u8>, u64)> = BTreeMap::new();
        for kv in reply.kvs {
            let key = String::from_utf8_lossy(&kv.key).into_owned();
            let Some(rest) = key.strip_prefix(&format!("{}/jobs/", self.prefix)) else {
                continue;
            };
            let mut parts = rest.splitn(3, '/');
            let (Some(job), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            let entry = jobs.entry(job.to_string()).or_default();
            match kind {
                "spec" => entry.0.extend_from_slice(&kv.value),
                "events" => {
                    entry.1.extend_from_slice(&kv.value);
                    entry.2 += 1;
                }
                _ => {}
            }
        }
        let mut next = lock(&self.next_batch);
        Ok(jobs
            .into_iter()
            .filter(|(_, (spec, _, _))| !spec.is_empty())
            .map(|(job_id, (spec, events, batches))| {
                next.insert(job_id.clone(), batches);
                StoredJob {
                    job_id,
                    spec,
                    events,
                }
            })
            .collect())
    }

    async fn put_job(&self, job_id: &str, spec: Vec<u8>) -> Result<()> {
        // The first piece goes with the removal of any events an earlier job of the same id
        // left (one request: etcd refuses a transaction that deletes and puts one key, so
        // the removal spares the spec's keys, which the puts overwrite), then one request
        // per further piece.
        let events = format!("{}events/", self.job_prefix(job_id)).into_bytes();
        let mut ops = vec![RequestOp {
            request: Some(Op::RequestDeleteRange(DeleteRangeRequest {
                range_end: prefix_end(&events),
                key: events,
            })),
        }];
        for (n, piece) in spec.chunks(PIECE_BYTES).enumerate() {
            ops.push(RequestOp {
                request: Some(Op::RequestPut(PutRequest {
                    key: format!("{}spec/{n:04}", self.job_prefix(job_id)).into_bytes(),
                    value: piece.to_vec(),
                    lease: 0,
                })),
            });
            self.fenced(std::mem::take(&mut ops)).await?;
        }
        lock(&self.next_batch).insert(file_stem(job_id), 0);
        Ok(())
    }

    async fn append(&self, job_id: &str, lines: Vec<u8>) -> Result<()> {
        let stem = file_stem(job_id);
        // Batches are read back concatenated in order: a line cut between two is whole again.
        for piece in lines.chunks(PIECE_BYTES) {
            let n = {
                let mut next = lock(&self.next_batch);
                let n = next.entry(stem.clone()).or_default();
                *n += 1;
                *n - 1
            };
            self.fenced(vec![RequestOp {
                request: Some(Op::RequestPut(PutRequest {
                    key: format!("{}events/{n:012}", self.job_prefix(job_id)).into_bytes(),
                    value: piece.to_vec(),
                    lease: 0,
                })),
            }])
            .await?;
        }
        Ok(())
    }

    async fn remove_job(&self, job_id: &str) -> Result<()> {
        let prefix = self.job_prefix(job_id).into_bytes();
        self.fenced(vec![RequestOp {
            request: Some(Op::RequestDeleteRange(DeleteRangeRequest {
                range_end: prefix_end(&prefix),
                key: prefix,
            })),
        }])
        .await?;
        lock(&self.next_batch).remove(&file_stem(job_id));
        Ok(())
    }

    fn linger(&self) -> Duration {
        LINGER
    }

    fn describe(&self) -> String {
        format!("etcd {} ({})", self.endpoints, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ha_urls_name_endpoints_and_a_prefix() {
        let (endpoints, prefix) = parse_ha_url("etcd://a:2379,b:2380").expect("parses");
        assert_eq!(endpoints, vec!["http://a:2379", "http://b:2380"]);
        assert_eq!(prefix, "/ember");
        let (_, prefix) = parse_ha_url("etcd://a:2379/prod/ember/").expect("parses");
        assert_eq!(prefix, "/prod/ember");
        let error = parse_ha_url("http://a:2379").expect_err("not etcd");
        assert!(
            error.to_string().contains("invalid setting --ha"),
            "{error}"
        );
        let error = parse_ha_url("etcd://a").expect_err("no port");
        assert!(error.to_string().contains("'a'"), "{error}");
    }

    #[test]
    fn a_prefix_range_ends_after_every_key_of_the_prefix() {
        assert_eq!(prefix_end(b"/ember/jobs/"), b"/ember/jobs0".to_vec());
        assert_eq!(prefix_end(&[b'a', 0xff]), vec![b'b']);
    }
}
