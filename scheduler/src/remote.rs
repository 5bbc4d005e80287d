//! [`RemoteExecutor`]: an executor in another process, called over gRPC.
//!
//! Liveness is the heartbeats' business: a call that breaks on a busy or slow connection
//! (a keep-alive that timed out, a reset stream) reports [`ExecutorError::Interrupted`],
//! and the task runs again without the executor being declared lost. Only a connection
//! the executor's host *refused* (nothing listens on its port any more: the process is
//! gone) reports [`ExecutorError::Lost`], so the scheduler recovers at once instead of
//! waiting for the missed heartbeats.

use std::path::Path;
use std::sync::Arc;

use ember_executors::ExecutorError;
use ember_executors::rpc::task_result::from_message;
use ember_executors::storage::is_secret;
use ember_proto::MAX_MESSAGE_BYTES;
use ember_proto::pb as proto;
use ember_proto::pb::executor_service_client::ExecutorServiceClient;
use ember_proto::security::{AddToken, ClientSecurity, is_connection_refused};
use ember_proto::{ExecutorId, TaskDefinition, TaskOutput};
use futures::future::BoxFuture;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::client::ExecutorClient;

type Client = ExecutorServiceClient<InterceptedService<Channel, AddToken>>;

/// An executor reached over gRPC.
pub struct RemoteExecutor {
    id: ExecutorId,
    address: String,
    slots: usize,
    client: Client,
}

impl RemoteExecutor {
    /// A client of the executor `id` at `address`; the connection opens on first use.
    pub fn new(
        id: String,
        address: String,
        slots: usize,
        security: &ClientSecurity,
    ) -> Result<Self, ExecutorError> {
        let channel = security.endpoint(&address)?.connect_lazy();
        let client = ExecutorServiceClient::with_interceptor(channel, security.interceptor()?)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        Ok(Self {
            id: id.into(),
            address,
            slots,
            client,
        })
    }

    /// Refuses to send a task whose settings hold a secret (`ember.s3.secret_access_key`)
    /// to an executor reached in clear over the network: only over TLS or loopback.
    fn check_secrets(&self, task: &TaskDefinition) -> Result<(), ExecutorError> {
        if reached_privately(&self.address) {
            return Ok(());
        }
        match task.settings.iter().find(|(key, _)| is_secret(key)) {
            None => Ok(()),
            Some((key, _)) => Err(ExecutorError::Config {
                key: key.clone(),
                message: format!(
                    "this secret is not sent to executor {} at {} in clear: serve the cluster \
                     over TLS (--tls-cert, --tls-key, --tls-ca) or keep it on loopback",
                    self.id, self.address
                ),
            }),
        }
    }

    /// Turns a failed call into [`ExecutorError::Lost`] when the connection was refused,
    /// and into [`ExecutorError::Interrupted`] otherwise.
    fn on_error(&self) -> impl FnOnce(tonic::Status) -> ExecutorError + Send + 'static {
        let id = self.id.clone();
        let address = self.address.clone();
        move |status| {
            let message = format!(
                "a call to {address} failed: {} ({:?})",
                status.message(),
                status.code()
            );
            if is_connection_refused(&status) {
                ExecutorError::Lost {
                    executor_id: id.to_string(),
                    message,
                }
            } else {
                ExecutorError::Interrupted {
                    executor_id: id.to_string(),
                    message,
                }
            }
        }
    }
}

impl ExecutorClient for RemoteExecutor {
    fn id(&self) -> &ExecutorId {
        &self.id
    }

    fn slots(&self) -> usize {
        self.slots
    }

    fn address(&self) -> Option<&str> {
        Some(&self.address)
    }

    fn launch(
        &self,
        task: TaskDefinition,
    ) -> BoxFuture<'static, Result<TaskOutput, ExecutorError>> {
        if let Err(e) = self.check_secrets(&task) {
            return Box::pin(async move { Err(e) });
        }
        let mut client = self.client.clone();
        let request = proto::TaskDefinition::from(&task);
        let on_error = self.on_error();
        Box::pin(async move {
            match client.launch_task(request).await {
                Ok(reply) => from_message(reply.into_inner()),
                Err(status) => Err(on_error(status)),
            }
        })
    }

    fn remove_job(&self, job_id: &str) -> BoxFuture<'static, Result<(), ExecutorError>> {
        let mut client = self.client.clone();
        let request = proto::RemoveJobRequest {
            job_id: job_id.to_string(),
        };
        let on_error = self.on_error();
        let result = async move { client.remove_job(request).await.map(|_| ()) };
        Box::pin(map_status(result, on_error))
    }

    fn remove_stage(
        &self,
        job_id: &str,
        stage_id: usize,
    ) -> BoxFuture<'static, Result<(), ExecutorError>> {
        let mut client = self.client.clone();
        let request = proto::RemoveStageRequest {
            job_id: job_id.to_string(),
            stage_id: stage_id as u64,
        };
        let on_error = self.on_error();
        let result = async move { client.remove_stage(request).await.map(|_| ()) };
        Box::pin(map_status(result, on_error))
    }

    fn put_broadcast(
        &self,
        name: &str,
        bytes: Arc<[u8]>,
    ) -> BoxFuture<'static, Result<(), ExecutorError>> {
        let mut client = self.client.clone();
        let request = proto::Broadcast {
            name: name.to_string(),
            value: bytes.to_vec(),
        };
        let on_error = self.on_error();
        let result = async move { client.put_broadcast(request).await.map(|_| ()) };
        Box::pin(map_status(result, on_error))
    }

    fn cancel_task(
        &self,
        job_id: &str,
        stage_id: usize,
        partition: usize,
        attempt: usize,
    ) -> BoxFuture<'static, Result<(), ExecutorError>> {
        let mut client = self.client.clone();
        let request = proto::CancelTaskRequest {
            job_id: job_id.to_string(),
            stage_id: stage_id as u64,
            partition: partition as u64,
            attempt: attempt as u64,
        };
        let on_error = self.on_error();
        let result = async move { client.cancel_task(request).await.map(|_| ()) };
        Box::pin(map_status(result, on_error))
    }

    fn holds(&self, path: &Path) -> BoxFuture<'static, bool> {
        let mut client = self.client.clone();
        let request = proto::HoldsRequest {
            executor_id: String::new(),
            path: path.to_string_lossy().into_owned(),
        };
        Box::pin(async move {
            client
                .holds(request)
                .await
                .is_ok_and(|reply| reply.into_inner().holds)
        })
    }
}

/// Whether calls to `url` stay private: TLS, or a loopback host.
pub(crate) fn reached_privately(url: &str) -> bool {
    if url.starts_with("https://") {
        return true;
    }
    let Ok(uri) = url.parse::<tonic::codegen::http::Uri>() else {
        return false;
    };
    match uri.host() {
        Some("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

async fn map_status(
    call: impl std::future::Future<Output = Result<(), tonic::Status>>,
    on_error: impl FnOnce(tonic::Status) -> ExecutorError,
) -> Result<(), ExecutorError> {
    call.await.map_err(on_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tls_and_loopback_addresses_count_as_private() {
        assert!(reached_privately("http://127.0.0.1:5000"));
        assert!(reached_privately("http://127.0.0.2:5000"));
        assert!(reached_privately("http://localhost:5000"));
        assert!(reached_privately("http://[::1]:5000"));
        assert!(reached_privately("https://10.0.0.2:5000"));
        assert!(!reached_privately("http://10.0.0.2:5000"));
        assert!(!reached_privately("http://executor-3.cluster:5000"));
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_lost_executor() {
        // A port nothing listens on: bound, then closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let executor = RemoteExecutor::new(
            "executor-x".into(),
            format!("http://127.0.0.1:{port}"),
            1,
            &ClientSecurity::default(),
        )
        .expect("a client");
        let error = executor
            .remove_job("job-1")
            .await
            .expect_err("nothing listens");
        assert!(
            matches!(error, ExecutorError::Lost { .. }),
            "a refused connection means the process is gone: {error:?}"
        );
    }

    #[tokio::test]
    async fn a_secret_is_not_sent_in_clear_off_this_machine() {
        let executor = RemoteExecutor::new(
            "executor-x".into(),
            "http://10.255.255.1:5000".into(),
            1,
            &ClientSecurity::default(),
        )
        .expect("a client");
        let task = TaskDefinition {
            job_id: "job-1".into(),
            stage_id: ember_proto::StageId(0),
            partition: 0,
            attempt: 0,
            plan: Arc::new(Vec::new()),
            inputs: Arc::new(Vec::new()),
            settings: Arc::new(vec![(
                "ember.s3.secret_access_key".to_string(),
                "hush".to_string(),
            )]),
            peers: Arc::new(std::collections::HashMap::new()),
            plan_partition: None,
        };
        let error = executor.launch(task).await.expect_err("refused");
        assert!(
            matches!(&error, ExecutorError::Config { key, .. } if key == "ember.s3.secret_access_key"),
            "{error:?}"
        );
        assert!(!error.is_retryable());
    }
}
