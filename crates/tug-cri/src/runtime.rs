//! [`ContainerRuntime`]: the CRI calls the node agent's pod worker and prober make, as one
//! object-safe trait. The real implementation is [`Clients`] (gRPC to containerd); the `fake`
//! feature adds an in-memory one for unit tests (`crate::fake`).
//!
//! Requests and responses are the CRI v1 messages themselves, so a call reads as it would on
//! the wire; only the tonic `Request`/`Response` envelopes are left out.

use crate::Clients;
use crate::Status;
use crate::v1::{
    ContainerStatusRequest, ContainerStatusResponse, CreateContainerRequest, CreateContainerResponse, ExecSyncRequest,
    ExecSyncResponse, ImageStatusRequest, ImageStatusResponse, ListContainersRequest, ListContainersResponse,
    ListPodSandboxRequest, ListPodSandboxResponse, PodSandboxStatusRequest, PodSandboxStatusResponse, PullImageRequest,
    PullImageResponse, RemoveContainerRequest, RemoveContainerResponse, RemovePodSandboxRequest,
    RemovePodSandboxResponse, RunPodSandboxRequest, RunPodSandboxResponse, StartContainerRequest,
    StartContainerResponse, StopContainerRequest, StopContainerResponse, StopPodSandboxRequest, StopPodSandboxResponse,
};

/// The RuntimeService and ImageService calls that run pods (the kubelet's
/// `internalapi.RuntimeService` and `ImageManagerService`, narrowed to what is used).
#[tonic::async_trait]
pub trait ContainerRuntime: Send + Sync + std::fmt::Debug {
    async fn run_pod_sandbox(&self, request: RunPodSandboxRequest) -> Result<RunPodSandboxResponse, Status>;
    async fn stop_pod_sandbox(&self, request: StopPodSandboxRequest) -> Result<StopPodSandboxResponse, Status>;
    async fn remove_pod_sandbox(&self, request: RemovePodSandboxRequest) -> Result<RemovePodSandboxResponse, Status>;
    async fn pod_sandbox_status(&self, request: PodSandboxStatusRequest) -> Result<PodSandboxStatusResponse, Status>;
    async fn list_pod_sandbox(&self, request: ListPodSandboxRequest) -> Result<ListPodSandboxResponse, Status>;
    async fn create_container(&self, request: CreateContainerRequest) -> Result<CreateContainerResponse, Status>;
    async fn start_container(&self, request: StartContainerRequest) -> Result<StartContainerResponse, Status>;
    async fn stop_container(&self, request: StopContainerRequest) -> Result<StopContainerResponse, Status>;
    async fn remove_container(&self, request: RemoveContainerRequest) -> Result<RemoveContainerResponse, Status>;
    async fn list_containers(&self, request: ListContainersRequest) -> Result<ListContainersResponse, Status>;
    async fn container_status(&self, request: ContainerStatusRequest) -> Result<ContainerStatusResponse, Status>;
    async fn exec_sync(&self, request: ExecSyncRequest) -> Result<ExecSyncResponse, Status>;
    async fn image_status(&self, request: ImageStatusRequest) -> Result<ImageStatusResponse, Status>;
    async fn pull_image(&self, request: PullImageRequest) -> Result<PullImageResponse, Status>;
}

/// Each call on a clone of the shared channel's client (tonic clients take `&mut self`).
macro_rules! forward {
    ($($service:ident . $method:ident ($request:ty) -> $response:ty;)*) => {
        #[tonic::async_trait]
        impl ContainerRuntime for Clients {
            $(
                async fn $method(&self, request: $request) -> Result<$response, Status> {
                    self.$service.clone().$method(request).await.map(tonic::Response::into_inner)
                }
            )*
        }
    };
}

forward! {
    runtime.run_pod_sandbox(RunPodSandboxRequest) -> RunPodSandboxResponse;
    runtime.stop_pod_sandbox(StopPodSandboxRequest) -> StopPodSandboxResponse;
    runtime.remove_pod_sandbox(RemovePodSandboxRequest) -> RemovePodSandboxResponse;
    runtime.pod_sandbox_status(PodSandboxStatusRequest) -> PodSandboxStatusResponse;
    runtime.list_pod_sandbox(ListPodSandboxRequest) -> ListPodSandboxResponse;
    runtime.create_container(CreateContainerRequest) -> CreateContainerResponse;
    runtime.start_container(StartContainerRequest) -> StartContainerResponse;
    runtime.stop_container(StopContainerRequest) -> StopContainerResponse;
    runtime.remove_container(RemoveContainerRequest) -> RemoveContainerResponse;
    runtime.list_containers(ListContainersRequest) -> ListContainersResponse;
    runtime.container_status(ContainerStatusRequest) -> ContainerStatusResponse;
    runtime.exec_sync(ExecSyncRequest) -> ExecSyncResponse;
    image.image_status(ImageStatusRequest) -> ImageStatusResponse;
    image.pull_image(PullImageRequest) -> PullImageResponse;
}
