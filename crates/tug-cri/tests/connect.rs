//! `connect` over a real unix socket: a small in-process ImageService answers, so the test needs
//! no container runtime. (The full CRI path against containerd is tug-agent's `containerd` test.)

use std::path::Path;

use futures::stream;
use tokio::net::UnixListener;
use tug_cri::v1::image_service_server::{ImageService, ImageServiceServer};
use tug_cri::v1::{
    Image, ImageFsInfoRequest, ImageFsInfoResponse, ImageStatusRequest, ImageStatusResponse, ListImagesRequest,
    ListImagesResponse, PullImageRequest, PullImageResponse, RemoveImageRequest, RemoveImageResponse,
};
use tug_cri::{Code, Request, Response, Status};

/// A runtime that holds one image and refuses to pull.
#[derive(Debug)]
struct OneImage;

#[tonic::async_trait]
impl ImageService for OneImage {
    async fn list_images(&self, _: Request<ListImagesRequest>) -> Result<Response<ListImagesResponse>, Status> {
        let image =
            Image { id: "sha256:1".into(), repo_tags: vec!["localhost/busybox:latest".into()], ..Image::default() };
        Ok(Response::new(ListImagesResponse { images: vec![image] }))
    }
    async fn image_status(&self, _: Request<ImageStatusRequest>) -> Result<Response<ImageStatusResponse>, Status> {
        Ok(Response::new(ImageStatusResponse::default()))
    }
    async fn pull_image(&self, request: Request<PullImageRequest>) -> Result<Response<PullImageResponse>, Status> {
        let name = request.into_inner().image.map(|spec| spec.image).unwrap_or_default();
        Err(Status::not_found(format!("no registry reachable for {name}")))
    }
    async fn remove_image(&self, _: Request<RemoveImageRequest>) -> Result<Response<RemoveImageResponse>, Status> {
        Ok(Response::new(RemoveImageResponse {}))
    }
    async fn image_fs_info(&self, _: Request<ImageFsInfoRequest>) -> Result<Response<ImageFsInfoResponse>, Status> {
        Ok(Response::new(ImageFsInfoResponse::default()))
    }
}

/// Serves `OneImage` on a unix socket at `path` until the test's runtime ends.
fn serve_one_image(path: &Path) {
    let listener = UnixListener::bind(path).expect("bind the test socket");
    let incoming = stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| stream);
        Some((accepted, listener))
    });
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(ImageServiceServer::new(OneImage))
            .serve_with_incoming(incoming),
    );
}

#[tokio::test]
async fn calls_reach_the_runtime_over_the_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("cri.sock");
    serve_one_image(&socket);

    let mut clients = tug_cri::connect(&socket).await.expect("connect");
    let images = clients.image.list_images(ListImagesRequest::default()).await.expect("ListImages").into_inner();
    let tags: Vec<&str> = images.images.iter().flat_map(|image| image.repo_tags.iter().map(String::as_str)).collect();
    assert_eq!(tags, ["localhost/busybox:latest"]);

    // The runtime's gRPC status reaches the caller unchanged: the agent decides by its code.
    let pull = PullImageRequest {
        image: Some(tug_cri::v1::ImageSpec { image: "example.com/app:1".into(), ..Default::default() }),
        ..Default::default()
    };
    let status = clients.image.pull_image(pull).await.expect_err("pull must fail");
    assert_eq!(status.code(), Code::NotFound);
    assert!(status.message().contains("example.com/app:1"), "{status}");
}

#[tokio::test]
async fn a_socket_nobody_listens_on_fails_at_connect_naming_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("absent.sock");
    let error = tug_cri::connect(&socket).await.expect_err("nothing listens there");
    let message = error.to_string();
    assert!(message.contains(&socket.display().to_string()), "{message}");
    assert!(message.contains("is the container runtime running?"), "{message}");
}
