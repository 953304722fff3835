//! Keeps the kernel's table equal to the wanted [`RuleSet`]: the set last applied stays in
//! memory and each sync sends only the difference, so the kernel is never listed (listing a
//! large ruleset on every sync is what makes kube-proxy take minutes at scale).

use std::time::{Duration, Instant};

use super::delta::delta;
use super::model::RuleSet;
use super::nft::{Nft, NftError};
use super::render;

/// How a sync went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncReport {
    /// The whole table was written (first sync, after a failure, or the node changed).
    pub full: bool,
    /// Objects touched (chains, sets, map elements); for a full write, its script's lines.
    pub changes: usize,
    /// Time to compute the script.
    pub render: Duration,
    /// Time `nft` took to apply it (zero when there was nothing to do).
    pub apply: Duration,
}

/// The service proxy's writer for one table.
#[derive(Debug)]
pub struct Syncer {
    nft: Nft,
    /// What the kernel holds, as far as we know; `None` until a full write succeeded, and again
    /// after any failure, so the next sync rewrites the table whole.
    applied: Option<RuleSet>,
}

impl Syncer {
    pub fn new(nft: Nft) -> Self {
        Syncer { nft, applied: None }
    }

    pub fn nft(&self) -> &Nft {
        &self.nft
    }

    /// Makes the table equal to `wanted`, in one transaction.
    pub fn sync(&mut self, wanted: RuleSet) -> Result<SyncReport, NftError> {
        let started = Instant::now();
        let table = &self.nft.table;
        let (script, full, changes) = match self.applied.as_ref().and_then(|old| delta(table, old, &wanted)) {
            Some(delta) => (delta.script, false, delta.changes),
            None => {
                let script = render::full(table, &wanted);
                let lines = script.lines().count();
                (script, true, lines)
            }
        };
        let render = started.elapsed();
        if script.is_empty() {
            return Ok(SyncReport { full, changes, render, apply: Duration::ZERO });
        }
        let applying = Instant::now();
        // Unknown state while nft runs: a failure leaves `applied` empty (full write next).
        self.applied = None;
        self.nft.apply(&script).inspect_err(
            |error| tracing::warn!(%error, full, "service proxy sync failed; the next sync rewrites the table"),
        )?;
        self.applied = Some(wanted);
        Ok(SyncReport { full, changes, render, apply: applying.elapsed() })
    }

    /// Removes the table (agent uninstall, test end). The next sync writes it whole again.
    pub fn remove(&mut self) -> Result<(), NftError> {
        self.applied = None;
        self.nft.remove()
    }
}
