//! The allocation records in the store, and the IO around the pure decisions of `alloc`.
//!
//! Key layout (outside `/registry/`, so no API list or watch shows them):
//! - `/tugboat/services/clusterips/<ip>` and `/tugboat/services/nodeports/<port>`: one record
//!   per allocated value, `{"owner": {namespace, name, uid}, "created": RFC 3339}`, written
//!   with create-if-absent before the Service is stored and deleted (only by its owner's uid,
//!   compare-and-swap on its revision) once the Service lets the value go.
//! - `/tugboat/services/ranges`: the ranges the last server started with, so a change is
//!   reported at start.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tug_core::status::Cause;
use tug_store::{ListOptions, Store};

use super::{
    Address, Held, NodePortRange, Owner, PortSlot, RecordView, Refusal, RepairPlan, ServiceRanges, Want,
    check_requested_ip, cluster_ip_refusal, node_port_refusal, plan, plan_repair, random_pair,
};

const CLUSTER_IPS: &str = "/tugboat/services/clusterips/";
const NODE_PORTS: &str = "/tugboat/services/nodeports/";
const RANGES_KEY: &str = "/tugboat/services/ranges";
const SERVICES: &str = "/registry/services/";

/// Random values tried before the allocator reads which ones are taken: with a range mostly
/// free the first try succeeds; a nearly full one costs one list instead of a store write per
/// taken value.
const RANDOM_TRIES: usize = 8;
/// Free values (by the list) tried before the range counts as full: others may take them
/// between the list and the write.
const LISTED_TRIES: usize = 32;

/// How long a record no Service holds is left alone by the repair pass: its Service may still
/// be on its way into the store (a create request takes well under a minute).
pub const REPAIR_GRACE: Duration = Duration::from_secs(120);

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Record {
    owner: Owner,
    created: String,
}

/// The records one write created: exactly what to delete if the write is not stored (what the
/// Service held before, or took in a concurrent write, is not in it).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reservation {
    uid: String,
    addresses: Vec<Address>,
}

/// Why a write could not get its addresses.
#[derive(Debug)]
pub enum Refused {
    /// 422: a requested value is outside the range or taken.
    Invalid(Cause),
    /// 500: the range is full, or a health check port was refused (Kubernetes' codes).
    Internal(String),
    Store(tug_store::Error),
}

impl From<tug_store::Error> for Refused {
    fn from(e: tug_store::Error) -> Refused {
        Refused::Store(e)
    }
}

fn key_of(address: Address) -> String {
    match address {
        Address::Ip(ip) => format!("{CLUSTER_IPS}{ip}"),
        Address::NodePort(port) => format!("{NODE_PORTS}{port}"),
    }
}

fn address_of(key: &str) -> Option<Address> {
    if let Some(ip) = key.strip_prefix(CLUSTER_IPS) {
        ip.parse().ok().map(Address::Ip)
    } else {
        key.strip_prefix(NODE_PORTS)?.parse().ok().map(Address::NodePort)
    }
}

/// Hands out cluster IPs and node ports through records in the store.
pub struct ServiceAllocator {
    ranges: ServiceRanges,
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for ServiceAllocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAllocator").field("ranges", &self.ranges).finish()
    }
}

impl ServiceAllocator {
    pub fn new(store: Arc<dyn Store>, ranges: ServiceRanges) -> ServiceAllocator {
        ServiceAllocator { ranges, store }
    }

    pub fn ranges(&self) -> &ServiceRanges {
        &self.ranges
    }

    /// Reserves what `new` needs beyond what `old` (the stored version; None on create) holds,
    /// and writes the values chosen into `new`. On a dry run nothing is written to the store,
    /// but the same refusals are given. On failure whatever this call reserved is given back.
    pub async fn reserve(&self, old: Option<&Value>, new: &mut Value, dry_run: bool) -> Result<Reservation, Refused> {
        let owner = Owner::of(new);
        let mut taken = Vec::new();
        match self.reserve_planned(old, new, &owner, dry_run, &mut taken).await {
            Ok(()) => Ok(Reservation { uid: owner.uid, addresses: taken }),
            Err(refused) => {
                self.release_addresses(&owner.uid, &taken).await;
                Err(refused)
            }
        }
    }

    /// Gives back what [`ServiceAllocator::reserve`] took, for a version that was not stored.
    pub async fn cancel(&self, reservation: &Reservation) {
        self.release_addresses(&reservation.uid, &reservation.addresses).await;
    }

    async fn reserve_planned(
        &self,
        old: Option<&Value>,
        new: &mut Value,
        owner: &Owner,
        dry_run: bool,
        taken: &mut Vec<Address>,
    ) -> Result<(), Refused> {
        let plan = plan(old, new);
        let node_ports = self.ranges.node_ports;
        if let Some(&(i, port)) = plan.duplicates.first() {
            return Err(refused_port(PortSlot::Port(i), Some(port), Refusal::Allocated, &node_ports));
        }
        match &plan.cluster_ip {
            None => {}
            Some(Want::Requested(text)) => {
                let cluster_ips = requested_cluster_ips(new, text);
                let refuse = |why| match cluster_ip_refusal(text, &cluster_ips, why, &self.ranges.cidr) {
                    Ok(cause) => Refused::Invalid(cause),
                    Err(message) => Refused::Internal(message),
                };
                let ip = check_requested_ip(text, &self.ranges.cidr).map_err(refuse)?;
                if !self.claim(Address::Ip(ip), owner, dry_run, taken).await? {
                    return Err(refuse(Refusal::Allocated));
                }
                set_cluster_ip(new, &ip.to_string());
            }
            Some(Want::Any) => {
                let cidr = self.ranges.cidr;
                let random = random_pair();
                let order = || cidr.dynamic_order(random).map(Address::Ip);
                let Some(Address::Ip(ip)) = self.claim_any(order, CLUSTER_IPS, owner, dry_run, taken).await? else {
                    let full = cluster_ip_refusal("", &[], Refusal::Full, &cidr);
                    return Err(Refused::Internal(full.err().unwrap_or_default()));
                };
                set_cluster_ip(new, &ip.to_string());
            }
        }
        for (slot, want) in &plan.node_ports {
            let port = match want {
                Want::Requested(port) => {
                    if !node_ports.holds(*port) {
                        return Err(refused_port(*slot, Some(*port), Refusal::NotInRange, &node_ports));
                    }
                    if !self.claim(Address::NodePort(*port), owner, dry_run, taken).await? {
                        return Err(refused_port(*slot, Some(*port), Refusal::Allocated, &node_ports));
                    }
                    *port
                }
                Want::Any => {
                    let random = random_pair();
                    let order = || node_ports.dynamic_order(random).map(Address::NodePort);
                    match self.claim_any(order, NODE_PORTS, owner, dry_run, taken).await? {
                        Some(Address::NodePort(port)) => port,
                        _ => return Err(refused_port(*slot, None, Refusal::Full, &node_ports)),
                    }
                }
            };
            match slot {
                PortSlot::Port(i) => new["spec"]["ports"][*i]["nodePort"] = json!(port),
                PortSlot::HealthCheck => new["spec"]["healthCheckNodePort"] = json!(port),
            }
        }
        for &(i, first) in &plan.shared {
            let port = new["spec"]["ports"][first]["nodePort"].clone();
            new["spec"]["ports"][i]["nodePort"] = port;
        }
        Ok(())
    }

    /// Takes `address` for `owner`: true if it is now (or already was) the owner's. Newly
    /// written records are added to `taken`.
    async fn claim(
        &self,
        address: Address,
        owner: &Owner,
        dry_run: bool,
        taken: &mut Vec<Address>,
    ) -> Result<bool, tug_store::Error> {
        let key = key_of(address);
        if !dry_run {
            let record = Record { owner: owner.clone(), created: crate::object::now_rfc3339() };
            let bytes = serde_json::to_vec(&record).expect("a record serializes");
            match self.store.create(&key, bytes, None).await {
                Ok(_) => {
                    taken.push(address);
                    return Ok(true);
                }
                Err(tug_store::Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(match self.store.get(&key, None).await? {
            None => dry_run,
            Some(kv) => serde_json::from_slice::<Record>(&kv.value).is_ok_and(|r| r.owner.uid == owner.uid),
        })
    }

    /// Takes the first free value of `order`: a few tries at random, then from a list of the
    /// records under `prefix`. None when the range is full.
    async fn claim_any<I: Iterator<Item = Address>>(
        &self,
        order: impl Fn() -> I,
        prefix: &str,
        owner: &Owner,
        dry_run: bool,
        taken: &mut Vec<Address>,
    ) -> Result<Option<Address>, tug_store::Error> {
        for address in order().take(RANDOM_TRIES) {
            if self.claim(address, owner, dry_run, taken).await? {
                return Ok(Some(address));
            }
        }
        let listed = self.store.list(prefix, ListOptions::default()).await?;
        let used: std::collections::HashSet<Address> =
            listed.items.iter().filter_map(|kv| address_of(&kv.key)).collect();
        let free: Vec<Address> = order().filter(|a| !used.contains(a)).take(LISTED_TRIES).collect();
        for address in free {
            if self.claim(address, owner, dry_run, taken).await? {
                return Ok(Some(address));
            }
        }
        Ok(None)
    }

    /// Deletes the records of `addresses` that `uid` owns.
    async fn release_addresses(&self, uid: &str, addresses: &[Address]) {
        for &address in addresses {
            let key = key_of(address);
            let current = match self.store.get(&key, None).await {
                Ok(Some(kv)) => kv,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(%address, error = %e, "cannot read an allocation record to release it; the repair pass will");
                    continue;
                }
            };
            if !serde_json::from_slice::<Record>(&current.value).is_ok_and(|r| r.owner.uid == uid) {
                continue;
            }
            match self.store.delete(&key, Some(current.mod_revision)).await {
                Ok(_) | Err(tug_store::Error::NotFound { .. } | tug_store::Error::Conflict { .. }) => {}
                Err(e) => {
                    tracing::warn!(%address, error = %e, "cannot release an allocation record; the repair pass will")
                }
            }
        }
    }

    /// Gives back what `held` lists, if `owner_of` (a Service) owns it.
    pub async fn release(&self, owner_of: &Value, held: &Held) {
        let uid = Owner::of(owner_of).uid;
        let addresses: Vec<Address> = held
            .ips
            .iter()
            .map(|ip| Address::Ip(*ip))
            .chain(held.node_ports.iter().map(|p| Address::NodePort(*p)))
            .collect();
        self.release_addresses(&uid, &addresses).await;
    }

    /// Writes the ranges into the store; returns the ones stored before if they differ.
    pub async fn record_ranges(&self) -> Result<Option<Value>, tug_store::Error> {
        let now =
            json!({"serviceCIDR": self.ranges.cidr.to_string(), "nodePortRange": self.ranges.node_ports.to_string()});
        let bytes = serde_json::to_vec(&now).expect("JSON");
        match self.store.get(RANGES_KEY, None).await? {
            None => {
                match self.store.create(RANGES_KEY, bytes, None).await {
                    Ok(_) | Err(tug_store::Error::AlreadyExists { .. }) => {}
                    Err(e) => return Err(e),
                }
                Ok(None)
            }
            Some(kv) => {
                let before: Value = serde_json::from_slice(&kv.value).unwrap_or(Value::Null);
                if before == now {
                    return Ok(None);
                }
                match self.store.update(RANGES_KEY, bytes, kv.mod_revision, None).await {
                    Ok(_) | Err(tug_store::Error::Conflict { .. }) => {}
                    Err(e) => return Err(e),
                }
                Ok(Some(before))
            }
        }
    }

    /// One repair pass over the records and the stored Services (Kubernetes' repair
    /// controllers): frees records no Service holds after `grace`, writes records Services hold
    /// but lack, and reports addresses two Services hold or that lie outside today's ranges.
    pub async fn repair(&self, grace: Duration) -> Result<RepairPlan, tug_store::Error> {
        // Records first: a record written after this list belongs to a write this pass cannot
        // judge, and is left for the next.
        let mut records = Vec::new();
        let now = jiff::Timestamp::now();
        for prefix in [CLUSTER_IPS, NODE_PORTS] {
            for kv in list_all(self.store.as_ref(), prefix).await? {
                let (Some(address), Ok(record)) = (address_of(&kv.key), serde_json::from_slice::<Record>(&kv.value))
                else {
                    tracing::warn!(key = %kv.key, "an allocation record that does not parse; leaving it");
                    continue;
                };
                let age_secs = record
                    .created
                    .parse::<jiff::Timestamp>()
                    .map(|t| now.duration_since(t).as_secs().max(0) as u64)
                    .unwrap_or(u64::MAX);
                records.push(RecordView { address, owner: record.owner, age_secs, revision: kv.mod_revision });
            }
        }
        let services: Vec<(Owner, Held)> = list_all(self.store.as_ref(), SERVICES)
            .await?
            .iter()
            .filter_map(|kv| serde_json::from_slice::<Value>(&kv.value).ok())
            .map(|svc| (Owner::of(&svc), Held::of(&svc)))
            .collect();
        let plan = plan_repair(&records, &services, &self.ranges, grace.as_secs());
        for (address, revision) in &plan.release {
            match self.store.delete(&key_of(*address), Some(*revision)).await {
                Ok(_) => tracing::info!(%address, "repair: released an allocation no Service holds"),
                Err(tug_store::Error::NotFound { .. } | tug_store::Error::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        for (address, owner) in &plan.recreate {
            let record = Record { owner: owner.clone(), created: crate::object::now_rfc3339() };
            let bytes = serde_json::to_vec(&record).expect("a record serializes");
            match self.store.create(&key_of(*address), bytes, None).await {
                Ok(_) => {
                    tracing::warn!(%address, service = %owner, "repair: the Service held an address without a record; recorded it")
                }
                Err(tug_store::Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        for (address, first, other) in &plan.conflicts {
            tracing::warn!(%address, holder = %first, also = %other, "repair: two Services hold the same address; change one of them");
        }
        for (address, owner) in &plan.out_of_range {
            tracing::warn!(%address, service = %owner, ranges = ?self.ranges, "repair: a Service holds an address outside the configured range; it keeps it");
        }
        Ok(plan)
    }
}

/// Every key under `prefix`, page by page.
async fn list_all(store: &dyn Store, prefix: &str) -> Result<Vec<tug_store::KeyValue>, tug_store::Error> {
    let mut items = Vec::new();
    let mut options = ListOptions { limit: 1000, ..Default::default() };
    loop {
        let page = store.list(prefix, options.clone()).await?;
        items.extend(page.items);
        match page.continue_token {
            Some(token) => options.continue_token = Some(token),
            None => return Ok(items),
        }
    }
}

fn refused_port(slot: PortSlot, port: Option<u16>, why: Refusal, range: &NodePortRange) -> Refused {
    match node_port_refusal(slot, port, why, range) {
        Ok(cause) => Refused::Invalid(cause),
        Err(message) => Refused::Internal(message),
    }
}

/// The Service's `clusterIPs` as Kubernetes shows them in a refusal (`[clusterIP]` when the
/// client gave only `clusterIP`).
fn requested_cluster_ips(svc: &Value, requested: &str) -> Vec<String> {
    match svc.pointer("/spec/clusterIPs").and_then(Value::as_array) {
        Some(ips) if !ips.is_empty() => ips.iter().map(|ip| ip.as_str().unwrap_or("").to_string()).collect(),
        _ => vec![requested.to_string()],
    }
}

fn set_cluster_ip(svc: &mut Value, ip: &str) {
    svc["spec"]["clusterIP"] = json!(ip);
    svc["spec"]["clusterIPs"] = json!([ip]);
}

/// How often the repair pass runs (Kubernetes' repair controllers run every 3 minutes).
pub const REPAIR_INTERVAL: Duration = Duration::from_secs(180);

/// Runs the repair pass every `every` (the first pass is at start-up, in `bootstrap`), until
/// the server stops.
pub fn spawn_repair(api: Arc<crate::Api>, every: Duration) {
    tokio::spawn(async move {
        let mut shutdown = api.shutdown.clone();
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(every) => {}
            }
            if let Err(e) = api.services.repair(REPAIR_GRACE).await {
                tracing::warn!(error = %e, "the service allocation repair pass failed; it runs again later");
            }
        }
    });
}
