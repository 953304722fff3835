//! A real containerd, started and driven as the agent will: ManagedContainerd in a temporary data
//! dir with the demo images, then a pod over CRI — sandbox with a CNI bridge network, a busybox
//! httpd container the host reaches on the pod IP, and a teardown that leaves nothing behind.
//! Needs root (network namespaces, bridges, mounts), as `scripts/test.sh` and CI run it.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::{mounts_under, remove_all_pods, run, unmount_under};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tug_agent::containerd::{Layout, ManagedContainerd, SANDBOX_IMAGE};
use tug_cri::v1::{
    ContainerConfig, ContainerMetadata, CreateContainerRequest, ImageSpec, ListContainersRequest, ListImagesRequest,
    ListPodSandboxRequest, PodSandboxConfig, PodSandboxMetadata, PodSandboxStatusRequest, RemovePodSandboxRequest,
    RunPodSandboxRequest, StartContainerRequest, StopPodSandboxRequest, VersionRequest,
};

const BUSYBOX_IMAGE: &str = "localhost/busybox:latest";
const HTTP_PORT: u16 = 8080;
/// How long the pod's web server may take to answer after StartContainer.
const SERVE_TIMEOUT: Duration = Duration::from_secs(10);

/// A short random suffix that keeps host objects of concurrent runs apart.
fn unique_suffix() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|since| since.subsec_nanos()).unwrap_or_default();
    format!("{:06x}", (nanos ^ std::process::id().rotate_left(12)) & 0xff_ffff)
}

/// The CNI network of the test's pods: a bridge of their own and a /24 of their own.
/// (containerd adds the loopback plugin itself, from the same bin dir.)
fn conflist(network: &str, bridge: &str, subnet: &str, ipam_dir: &Path) -> String {
    serde_json::json!({
        "cniVersion": "0.4.0",
        "name": network,
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": subnet }]],
                    "routes": [{ "dst": "0.0.0.0/0" }],
                    "dataDir": ipam_dir,
                },
            },
            { "type": "portmap", "capabilities": { "portMappings": true } },
        ],
    })
    .to_string()
}

/// Everything the test made on the host, removed on success, failure and panic alike.
struct TestHost {
    containerd: Option<ManagedContainerd>,
    bridge: String,
    dir: tempfile::TempDir,
}

impl TestHost {
    fn socket(&self) -> PathBuf {
        Layout::new(self.dir.path()).socket()
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        // Pods first (their shims outlive containerd), over a runtime of its own: this may run
        // while the test's runtime unwinds.
        if self.containerd.is_some() {
            let socket = self.socket();
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
                runtime.block_on(remove_all_pods(&socket)).ok()
            })
            .join();
        }
        drop(self.containerd.take());
        let _ = run("ip", &["link", "del", &self.bridge]);
        unmount_under(self.dir.path());
    }
}

/// GET / from `ip:port` over plain TCP, retried until the server answers or the deadline passes.
async fn http_get(ip: &str, port: u16) -> Result<String, String> {
    let deadline = Instant::now() + SERVE_TIMEOUT;
    loop {
        let attempt = async {
            let mut stream = TcpStream::connect((ip, port)).await?;
            stream.write_all(b"GET / HTTP/1.0\r\nHost: pod\r\n\r\n").await?;
            let mut response = String::new();
            stream.read_to_string(&mut response).await?;
            Ok::<_, std::io::Error>(response)
        };
        match attempt.await {
            Ok(response) => return Ok(response),
            Err(error) if Instant::now() >= deadline => return Err(format!("{ip}:{port}: {error}")),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

#[tokio::test]
async fn a_pod_started_over_cri_serves_http_on_its_pod_ip_and_leaves_nothing_behind() {
    let suffix = unique_suffix();
    let dir = tempfile::Builder::new().prefix("tugt-").tempdir().expect("temp dir");
    let layout = Layout::new(dir.path());
    let mut host = TestHost { containerd: None, bridge: format!("tugt-{suffix}"), dir };

    // The demo images, built the way users get them.
    let started = Instant::now();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/demo-images");
    let built = run(script.to_str().expect("utf-8 path"), &[layout.images_dir().to_str().expect("utf-8 path")]);
    assert!(built.status.success(), "scripts/demo-images failed: {}", String::from_utf8_lossy(&built.stderr));
    let images_built = started.elapsed();

    // The network exists before containerd starts, so its CRI reports the network ready at once.
    let subnet_octet = u8::from_str_radix(&suffix[..2], 16).expect("hex");
    let subnet = format!("10.213.{subnet_octet}.0/24");
    std::fs::create_dir_all(layout.cni_conf_dir()).expect("cni conf dir");
    let (network, ipam_dir) = (format!("tugt-{suffix}"), layout.data_dir.join("cni/ipam"));
    std::fs::write(
        layout.cni_conf_dir().join("10-tugt.conflist"),
        conflist(&network, &host.bridge, &subnet, &ipam_dir),
    )
    .expect("write conflist");

    let started = Instant::now();
    host.containerd = Some(ManagedContainerd::start(&layout.data_dir).await.expect("containerd starts"));
    let containerd_start = started.elapsed();

    let mut cri = tug_cri::connect(&host.socket()).await.expect("connect to the CRI");
    let version = cri.runtime.version(VersionRequest::default()).await.expect("Version").into_inner();
    assert_eq!(version.runtime_name, "containerd");
    assert_eq!(version.runtime_api_version, "v1");

    let images = cri.image.list_images(ListImagesRequest::default()).await.expect("ListImages").into_inner();
    let tags: Vec<&str> = images.images.iter().flat_map(|image| image.repo_tags.iter().map(String::as_str)).collect();
    assert!(tags.contains(&BUSYBOX_IMAGE) && tags.contains(&SANDBOX_IMAGE), "images: {tags:?}");

    let log_directory = layout.data_dir.join("pods/web");
    let sandbox_config = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "web".into(),
            uid: format!("uid-{suffix}"),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: "web".into(),
        log_directory: log_directory.display().to_string(),
        ..Default::default()
    };
    let started = Instant::now();
    let sandbox = cri
        .runtime
        .run_pod_sandbox(RunPodSandboxRequest { config: Some(sandbox_config.clone()), runtime_handler: String::new() })
        .await
        .expect("RunPodSandbox")
        .into_inner()
        .pod_sandbox_id;
    let sandbox_start = started.elapsed();

    let status = cri
        .runtime
        .pod_sandbox_status(PodSandboxStatusRequest { pod_sandbox_id: sandbox.clone(), verbose: false })
        .await
        .expect("PodSandboxStatus")
        .into_inner();
    let pod_ip = status.status.and_then(|status| status.network).map(|network| network.ip).unwrap_or_default();
    let subnet_prefix = format!("10.213.{subnet_octet}.");
    assert!(pod_ip.starts_with(&subnet_prefix), "pod IP {pod_ip:?} is not in {subnet}");

    let token = format!("hello from pod {suffix}");
    let container_config = ContainerConfig {
        metadata: Some(ContainerMetadata { name: "httpd".into(), attempt: 0 }),
        image: Some(ImageSpec { image: BUSYBOX_IMAGE.into(), ..Default::default() }),
        command: vec!["sh".into(), "-c".into()],
        args: vec![format!(
            "mkdir -p /tmp/www && echo '{token}' > /tmp/www/index.html && exec httpd -f -p {HTTP_PORT} -h /tmp/www"
        )],
        log_path: "httpd.log".into(),
        ..Default::default()
    };
    let started = Instant::now();
    let container = cri
        .runtime
        .create_container(CreateContainerRequest {
            pod_sandbox_id: sandbox.clone(),
            config: Some(container_config),
            sandbox_config: Some(sandbox_config),
        })
        .await
        .expect("CreateContainer")
        .into_inner()
        .container_id;
    cri.runtime.start_container(StartContainerRequest { container_id: container }).await.expect("StartContainer");
    let container_start = started.elapsed();

    let started = Instant::now();
    let response = http_get(&pod_ip, HTTP_PORT).await.unwrap_or_else(|error| {
        let log = std::fs::read_to_string(log_directory.join("httpd.log")).unwrap_or_default();
        panic!("the pod's httpd did not answer: {error}; container log:\n{log}")
    });
    let first_answer = started.elapsed();
    assert!(response.starts_with("HTTP/1.") && response.contains(" 200 "), "response: {response}");
    assert!(response.contains(&token), "response: {response}");

    let lease = ipam_dir.join(&network).join(&pod_ip);
    assert!(lease.exists(), "no IP lease at {}", lease.display());

    let started = Instant::now();
    cri.runtime.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: sandbox.clone() }).await.expect("Stop");
    cri.runtime.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: sandbox }).await.expect("Remove");
    let teardown = started.elapsed();

    let pods = cri.runtime.list_pod_sandbox(ListPodSandboxRequest::default()).await.expect("ListPodSandbox");
    assert!(pods.into_inner().items.is_empty(), "pod sandboxes left behind");
    let containers = cri.runtime.list_containers(ListContainersRequest::default()).await.expect("ListContainers");
    assert!(containers.into_inner().containers.is_empty(), "containers left behind");
    let mounts = mounts_under(&layout.data_dir);
    assert!(mounts.is_empty(), "mounts left behind: {mounts:?}");
    // The pod's network namespace is a mount under the state dir (checked above); its address
    // went back to the pool.
    assert!(!lease.exists(), "the IP lease {} was not released", lease.display());

    let containerd = host.containerd.as_mut().expect("started above");
    let pid = containerd.pid().expect("running");
    let started = Instant::now();
    containerd.stop().expect("containerd stops");
    let containerd_stop = started.elapsed();
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "containerd (pid {pid}) still exists after stop");
    assert!(containerd.pid().is_none());

    eprintln!(
        "timings: demo images {images_built:?}, containerd start {containerd_start:?}, \
         RunPodSandbox {sandbox_start:?}, create+start container {container_start:?}, \
         first HTTP answer {first_answer:?}, teardown {teardown:?}, containerd stop {containerd_stop:?}"
    );
}
