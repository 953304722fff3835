//! What a user runs against a cluster from the `tug` command line. Today: `tug plan`.

pub mod plan;

use std::path::Path;

/// A client from a kubeconfig file (`--kubeconfig`, else `$KUBECONFIG`, else `~/.kube/config`).
pub async fn client(kubeconfig: Option<&Path>) -> Result<kube::Client, String> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("cannot read kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?
        }
        None => kube::Config::infer().await.map_err(|e| {
            format!("no kubeconfig: {e}. Pass --kubeconfig or set KUBECONFIG (tug server writes DATA/kubeconfig.yaml).")
        })?,
    };
    kube::Client::try_from(config).map_err(|e| format!("cannot build a client: {e}"))
}
