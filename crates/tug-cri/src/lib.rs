//! CRI v1 client: the two gRPC services a container runtime (containerd, CRI-O) serves on its
//! unix socket, as the kubelet uses them.
//!
//! The protocol types and generated clients come from the `k8s-cri` crate (the upstream
//! `runtime.v1` proto compiled with tonic/prost); they are re-exported here as [`v1`] so users
//! need no direct dependency on it. This crate adds the connection (gRPC over a unix socket), the
//! [`ContainerRuntime`] trait the agent's pod worker calls through, and, with the `fake`
//! feature, an in-memory runtime behind that trait for unit tests (`tug_cri::fake`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// The CRI v1 protocol: request/response types and the generated service clients.
pub use k8s_cri::v1;
pub use tonic::{Code, Request, Response, Status};

#[cfg(any(test, feature = "fake"))]
pub mod fake;
mod runtime;

pub use runtime::ContainerRuntime;

use v1::image_service_client::ImageServiceClient;
use v1::runtime_service_client::RuntimeServiceClient;

/// Largest gRPC message accepted, as the kubelet sets it: a node's full container list can
/// exceed tonic's 4 MiB default.
pub const MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// How long to wait for the runtime to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The runtime and image services over one HTTP/2 connection. Cloning is cheap (the channel is
/// shared), so each task may own its own copy.
#[derive(Debug, Clone)]
pub struct Clients {
    pub runtime: RuntimeServiceClient<Channel>,
    pub image: ImageServiceClient<Channel>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot connect to the CRI socket {socket}: {source} (is the container runtime running?)")]
    Connect {
        socket: PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
}

/// Connects to the CRI runtime listening on `socket` (e.g. containerd's `containerd.sock`).
/// Fails at once if nothing accepts on the socket, so callers learn it here rather than at the
/// first call.
pub async fn connect(socket: &Path) -> Result<Clients, Error> {
    let path = socket.to_path_buf();
    // The URI is required by tonic but unused: every connection goes to the unix socket.
    let endpoint = Endpoint::from_static("http://cri.invalid").connect_timeout(CONNECT_TIMEOUT);
    let channel = endpoint
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { UnixStream::connect(path).await.map(TokioIo::new) }
        }))
        .await
        .map_err(|source| Error::Connect { socket: socket.to_path_buf(), source })?;
    Ok(clients_over(channel))
}

/// Both service clients over one channel, with the message size limits raised.
fn clients_over(channel: Channel) -> Clients {
    Clients {
        runtime: RuntimeServiceClient::new(channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE),
        image: ImageServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE),
    }
}
