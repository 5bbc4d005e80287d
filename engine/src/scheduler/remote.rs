//! [`RemoteExecutor`]: an executor in another process, called over gRPC. A call that
//! cannot reach it reports [`ExecutorError::Lost`], so the scheduler recovers at once
//! instead of waiting for the missed heartbeats.

use std::path::Path;
use std::sync::Arc;

use ember_executors::rpc::proto::executor_service_client::ExecutorServiceClient;
use ember_executors::rpc::proto::{self};
use ember_executors::rpc::security::{AddToken, ClientSecurity};
use ember_executors::rpc::server::MAX_MESSAGE_BYTES;
use ember_executors::{ExecutorError, TaskDefinition, TaskOutput};
use futures::future::BoxFuture;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::client::ExecutorClient;

type Client = ExecutorServiceClient<InterceptedService<Channel, AddToken>>;

/// An executor reached over gRPC.
pub struct RemoteExecutor {
    id: String,
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
            id,
            address,
            slots,
            client,
        })
    }

    /// Turns a failed call into [`ExecutorError::Lost`].
    fn on_error(&self) -> impl FnOnce(tonic::Status) -> ExecutorError + Send + 'static {
        let id = self.id.clone();
        let address = self.address.clone();
        move |status| ExecutorError::Lost {
            executor_id: id,
            message: format!(
                "a call to {address} failed: {} ({:?})",
                status.message(),
                status.code()
            ),
        }
    }
}

impl ExecutorClient for RemoteExecutor {
    fn id(&self) -> &str {
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
        let mut client = self.client.clone();
        let request = proto::TaskDefinition::from(&task);
        let on_error = self.on_error();
        Box::pin(async move {
            match client.launch_task(request).await {
                Ok(reply) => reply.into_inner().into_result(),
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

async fn map_status(
    call: impl std::future::Future<Output = Result<(), tonic::Status>>,
    on_error: impl FnOnce(tonic::Status) -> ExecutorError,
) -> Result<(), ExecutorError> {
    call.await.map_err(on_error)
}
