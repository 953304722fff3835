//! Registry credentials from a pod's `imagePullSecrets`: the `kubernetes.io/dockerconfigjson`
//! and `kubernetes.io/dockercfg` Secrets it names, matched against the registry of an image as
//! the kubelet's keyring does (host, optionally `*.` globs, then path prefix; the most specific
//! entry first). Pure: the Secrets come in, CRI `AuthConfig`s go out.

use k8s_openapi::api::core::v1::Secret;
use serde_json::Value;
use tug_cri::v1::AuthConfig;

const DOCKER_CONFIG_JSON: (&str, &str) = ("kubernetes.io/dockerconfigjson", ".dockerconfigjson");
const DOCKER_CFG: (&str, &str) = ("kubernetes.io/dockercfg", ".dockercfg");
/// Docker Hub's canonical registry host; its aliases all mean it.
const DOCKER_HUB: &str = "docker.io";

/// An image reference's registry host and repository path (`busybox` is
/// `docker.io`, `library/busybox`), without tag or digest.
pub fn registry_and_path(image: &str) -> (String, String) {
    let name = image.split('@').next().unwrap_or_default();
    // A tag follows the last ':' after the last '/'.
    let name = match (name.rfind(':'), name.rfind('/')) {
        (Some(colon), slash) if slash.is_none_or(|s| colon > s) => &name[..colon],
        _ => name,
    };
    match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
            (normalize_host(first), rest.to_string())
        }
        Some(_) => (DOCKER_HUB.into(), name.to_string()),
        None => (DOCKER_HUB.into(), format!("library/{name}")),
    }
}

fn normalize_host(host: &str) -> String {
    let host = host.to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => DOCKER_HUB.into(),
        _ => host,
    }
}

/// A credential key (`https://index.docker.io/v1/`, `quay.io/org`, `*.example.com`) as
/// (host, path prefix).
fn parse_key(key: &str) -> (String, String) {
    let rest = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let path = path.trim_matches('/');
    // The Docker API version in legacy keys is no repository path.
    let path = if matches!(path, "v1" | "v2") { "" } else { path };
    (normalize_host(host), path.to_string())
}

/// Whether credential host `pattern` (possibly with `*` labels) covers `host`.
fn host_matches(pattern: &str, host: &str) -> bool {
    let (pattern_name, pattern_port) = pattern.split_once(':').unwrap_or((pattern, ""));
    let (name, port) = host.split_once(':').unwrap_or((host, ""));
    let (labels, wanted): (Vec<&str>, Vec<&str>) = (pattern_name.split('.').collect(), name.split('.').collect());
    pattern_port == port
        && labels.len() == wanted.len()
        && labels.iter().zip(&wanted).all(|(p, h)| *p == "*" || p.eq_ignore_ascii_case(h))
}

fn path_matches(prefix: &str, path: &str) -> bool {
    prefix.is_empty() || path == prefix || path.starts_with(&format!("{prefix}/"))
}

/// The registry entries of a pull Secret: (key, entry) from `.dockerconfigjson`'s `auths` or
/// from `.dockercfg`; other Secrets and unparsable data give none.
fn entries(secret: &Secret) -> Vec<(String, Value)> {
    let data = |key: &str| secret.data.as_ref().and_then(|d| d.get(key)).map(|b| b.0.clone());
    let kind = secret.type_.as_deref().unwrap_or_default();
    let parsed = if kind == DOCKER_CONFIG_JSON.0 {
        data(DOCKER_CONFIG_JSON.1)
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
            .and_then(|v| v.get("auths").cloned())
    } else if kind == DOCKER_CFG.0 {
        data(DOCKER_CFG.1).and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
    } else {
        None
    };
    match parsed {
        Some(Value::Object(map)) => map.into_iter().collect(),
        _ => Vec::new(),
    }
}

fn text(entry: &Value, field: &str) -> String {
    entry.get(field).and_then(Value::as_str).unwrap_or_default().to_string()
}

/// The credentials of `secrets` that apply to `image`, the most specific first; empty when
/// none does (the image is pulled anonymously).
pub fn pull_credentials<'a>(image: &str, secrets: impl IntoIterator<Item = &'a Secret>) -> Vec<AuthConfig> {
    let (host, path) = registry_and_path(image);
    let mut matching: Vec<(usize, AuthConfig)> = secrets
        .into_iter()
        .flat_map(entries)
        .filter_map(|(key, entry)| {
            let (key_host, key_path) = parse_key(&key);
            (host_matches(&key_host, &host) && path_matches(&key_path, &path)).then(|| {
                let auth = AuthConfig {
                    username: text(&entry, "username"),
                    password: text(&entry, "password"),
                    // "user:password" in base64; the runtime decodes it.
                    auth: text(&entry, "auth"),
                    // Left empty: the entry is already matched to the image's registry here, and
                    // containerd reads a set address as a URL whose host must equal the pull's,
                    // so `host:port` (no scheme) fails to parse and a bare `host` never matches.
                    server_address: String::new(),
                    identity_token: text(&entry, "identitytoken"),
                    registry_token: text(&entry, "registrytoken"),
                };
                // Exact hosts before globs, longer paths before shorter ones.
                let specificity = key_path.len() * 2 + usize::from(!key_host.contains('*'));
                (specificity, auth)
            })
        })
        .collect();
    matching.sort_by_key(|(specificity, _)| std::cmp::Reverse(*specificity));
    matching.into_iter().map(|(_, auth)| auth).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(kind: &str, key: &str, json: Value) -> Secret {
        let mut secret = Secret { type_: Some(kind.into()), ..Default::default() };
        let bytes = k8s_openapi::ByteString(serde_json::to_vec(&json).expect("json"));
        secret.data = Some([(key.to_string(), bytes)].into_iter().collect());
        secret
    }

    #[test]
    fn images_name_their_registry_and_repository() {
        let cases = [
            ("busybox", ("docker.io", "library/busybox")),
            ("busybox:1.36", ("docker.io", "library/busybox")),
            ("org/app@sha256:abc", ("docker.io", "org/app")),
            ("localhost/busybox:latest", ("localhost", "busybox")),
            ("registry.example.com:5000/team/app:v1", ("registry.example.com:5000", "team/app")),
            ("index.docker.io/library/nginx", ("docker.io", "library/nginx")),
        ];
        for (image, (host, path)) in cases {
            assert_eq!(registry_and_path(image), (host.to_string(), path.to_string()), "{image}");
        }
    }

    #[test]
    fn pull_secrets_give_the_matching_credentials_most_specific_first() {
        let json = secret(
            "kubernetes.io/dockerconfigjson",
            ".dockerconfigjson",
            serde_json::json!({"auths": {
                "https://index.docker.io/v1/": {"username": "hub", "password": "p1"},
                "registry.example.com:5000": {"auth": "dXNlcjpwYXNz"},
                "registry.example.com:5000/team": {"username": "team", "password": "p2"},
                "*.corp.example": {"username": "glob", "password": "p3"},
            }}),
        );
        let cfg = secret(
            "kubernetes.io/dockercfg",
            ".dockercfg",
            serde_json::json!({"quay.io": {"username": "quay", "password": "p4"}}),
        );
        let wrong_type = secret("Opaque", ".dockerconfigjson", serde_json::json!({"auths": {"quay.io": {}}}));
        let secrets = [json, cfg, wrong_type];
        let users = |image: &str| -> Vec<(String, String)> {
            pull_credentials(image, &secrets).into_iter().map(|a| (a.username, a.auth)).collect()
        };
        let user = |name: &str| (name.to_string(), String::new());
        assert_eq!(users("nginx:1.25"), [user("hub")]);
        assert_eq!(users("registry.example.com:5000/team/app:v1"), [user("team"), ("".into(), "dXNlcjpwYXNz".into())]);
        assert_eq!(users("registry.example.com:5000/other/app"), [("".into(), "dXNlcjpwYXNz".into())]);
        assert_eq!(users("registry.example.com/team/app"), Vec::<(String, String)>::new(), "the port must match");
        assert_eq!(users("r.corp.example/app"), [user("glob")]);
        assert_eq!(users("a.b.corp.example/app"), Vec::<(String, String)>::new(), "a glob is one label");
        assert_eq!(users("quay.io/org/app"), [user("quay")]);
        assert_eq!(pull_credentials("quay.io/org/app", &secrets)[0].server_address, "", "containerd must not re-match");
    }
}
