//! Service cluster IPs and node ports, handed out by the API server as in Kubernetes.
//!
//! The allocator finds free values by looking at the Services in the watch cache plus the ones
//! it handed out that the cache has not seen yet; a mutex serialises allocation. With several
//! API servers over one etcd two could pick the same value at the same instant; Kubernetes
//! avoids that with a bitmap object in etcd — a known gap, noted in ARCHITECTURE.md.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Mutex;

use serde_json::{Value, json};

use crate::cache::WatchCache;

/// k3s's default service range; the first address is the `kubernetes` Service's.
pub const SERVICE_CIDR: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 43, 0, 0), 16);
pub const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

#[derive(Debug, Default)]
pub struct ServiceAllocator {
    pending: Mutex<(HashSet<Ipv4Addr>, HashSet<u16>)>,
}

/// (field, message) of an allocation failure.
#[derive(Debug)]
pub struct AllocError(pub String, pub String);

impl ServiceAllocator {
    /// Fills `spec.clusterIP(s)` and missing node ports of a new Service.
    pub fn allocate(&self, cache: &WatchCache, svc: &mut Value) -> Result<(), AllocError> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let (used_ips, used_ports) = in_use(cache);
        let svc_type = svc.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP").to_string();
        if svc_type == "ExternalName" {
            return Ok(());
        }
        let requested = svc.pointer("/spec/clusterIP").and_then(Value::as_str).unwrap_or("").to_string();
        if requested.is_empty() {
            let (base, bits) = SERVICE_CIDR;
            let size = 1u32 << (32 - bits);
            let base = u32::from(base);
            let ip = (2..size - 1)
                .map(|i| Ipv4Addr::from(base + i))
                .find(|ip| !used_ips.contains(ip) && !pending.0.contains(ip))
                .ok_or_else(|| AllocError("spec.clusterIP".into(), "the service IP range is full".into()))?;
            pending.0.insert(ip);
            svc["spec"]["clusterIP"] = json!(ip.to_string());
            svc["spec"]["clusterIPs"] = json!([ip.to_string()]);
        } else if requested != "None" {
            let ip: Ipv4Addr = requested.parse().map_err(|_| {
                AllocError(
                    "spec.clusterIP".into(),
                    format!("Invalid value: \"{requested}\": must be a valid IP address"),
                )
            })?;
            if used_ips.contains(&ip) || pending.0.contains(&ip) {
                return Err(AllocError(
                    "spec.clusterIP".into(),
                    format!("Invalid value: \"{requested}\": provided IP is already allocated"),
                ));
            }
            pending.0.insert(ip);
            svc["spec"]["clusterIPs"] = json!([requested]);
        } else {
            svc["spec"]["clusterIPs"] = json!(["None"]);
        }
        if svc_type == "NodePort" || svc_type == "LoadBalancer" {
            let ports = svc.pointer_mut("/spec/ports").and_then(Value::as_array_mut);
            for (i, port) in ports.into_iter().flatten().enumerate() {
                match port.get("nodePort").and_then(Value::as_u64) {
                    Some(p) => {
                        let p = p as u16;
                        if used_ports.contains(&p) || pending.1.contains(&p) {
                            return Err(AllocError(
                                format!("spec.ports[{i}].nodePort"),
                                format!("Invalid value: {p}: provided port is already allocated"),
                            ));
                        }
                        pending.1.insert(p);
                    }
                    None => {
                        let p =
                            NODE_PORTS.clone().find(|p| !used_ports.contains(p) && !pending.1.contains(p)).ok_or_else(
                                || AllocError(format!("spec.ports[{i}].nodePort"), "no free node ports".into()),
                            )?;
                        pending.1.insert(p);
                        port["nodePort"] = json!(p);
                    }
                }
            }
        }
        // Values the cache already shows are no longer pending.
        pending.0.retain(|ip| !used_ips.contains(ip));
        pending.1.retain(|p| !used_ports.contains(p));
        Ok(())
    }

    /// Returns what a Service held (a failed create or a delete).
    pub fn release(&self, svc: &Value) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ip) = svc.pointer("/spec/clusterIP").and_then(Value::as_str).and_then(|s| s.parse().ok()) {
            pending.0.remove(&ip);
        }
        for port in svc.pointer("/spec/ports").and_then(Value::as_array).into_iter().flatten() {
            if let Some(p) = port.get("nodePort").and_then(Value::as_u64) {
                pending.1.remove(&(p as u16));
            }
        }
    }
}

fn in_use(cache: &WatchCache) -> (HashSet<Ipv4Addr>, HashSet<u16>) {
    let (services, _, _) = cache.list("services", "/registry/services/", None, 0, &|_| true);
    let mut ips = HashSet::new();
    let mut ports = HashSet::new();
    for svc in services {
        let v = svc.value();
        if let Some(ip) = v.pointer("/spec/clusterIP").and_then(Value::as_str).and_then(|s| s.parse().ok()) {
            ips.insert(ip);
        }
        for port in v.pointer("/spec/ports").and_then(Value::as_array).into_iter().flatten() {
            if let Some(p) = port.get("nodePort").and_then(Value::as_u64) {
                ports.insert(p as u16);
            }
        }
    }
    (ips, ports)
}

/// On update, a Service keeps its cluster IP, and ports keep their node ports unless changed.
pub fn keep_allocations(old: &Value, new: &mut Value) {
    for field in ["clusterIP", "clusterIPs"] {
        if let Some(v) = old.pointer(&format!("/spec/{field}"))
            && new.pointer(&format!("/spec/{field}")).is_none_or(|n| n.is_null() || n == "")
        {
            new["spec"][field] = v.clone();
        }
    }
    let new_type = new.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP");
    if new_type != "NodePort" && new_type != "LoadBalancer" {
        return;
    }
    let old_ports: Vec<Value> = old.pointer("/spec/ports").and_then(Value::as_array).cloned().unwrap_or_default();
    if let Some(ports) = new.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
        for port in ports {
            if port.get("nodePort").is_some_and(|p| !p.is_null()) {
                continue;
            }
            let same = old_ports
                .iter()
                .find(|o| o.get("port") == port.get("port") && o.get("protocol") == port.get("protocol"));
            if let Some(np) = same.and_then(|o| o.get("nodePort")) {
                port["nodePort"] = np.clone();
            }
        }
    }
}
