//! Running `nft -f -`: one script, one transaction (nft commits a whole input at once or
//! nothing of it).

use std::io::Write;
use std::process::{Command, Stdio};

/// Where and how to run `nft`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nft {
    /// The table Tugboat owns (`tugboat` by default).
    pub table: String,
    /// Run inside this network namespace (`ip netns exec NAME nft ...`): tests and benchmarks.
    pub netns: Option<String>,
}

impl Default for Nft {
    fn default() -> Self {
        Nft { table: "tugboat".to_string(), netns: None }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("`nft` was not found: install nftables (Debian: apt-get install nftables)")]
    Missing,
    #[error("could not run `{command}`: {source}")]
    Spawn { command: String, source: std::io::Error },
    #[error("nft rejected the {lines}-line transaction for table ip {table} (nothing of it was applied): {stderr}")]
    Rejected { table: String, lines: usize, stderr: String },
}

impl Nft {
    /// Applies `script` as one transaction.
    pub fn apply(&self, script: &str) -> Result<(), NftError> {
        let mut command = match &self.netns {
            Some(netns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", netns, "nft", "-f", "-"]);
                c
            }
            None => {
                let mut c = Command::new("nft");
                c.args(["-f", "-"]);
                c
            }
        };
        let described = format!("{command:?}");
        let mut child =
            command.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().map_err(|source| {
                match source.kind() {
                    std::io::ErrorKind::NotFound => NftError::Missing,
                    _ => NftError::Spawn { command: described.clone(), source },
                }
            })?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        // Written from another thread so a chatty nft cannot block on a full stderr pipe while
        // we are still writing.
        let output = std::thread::scope(|scope| {
            let writer = scope.spawn(move || stdin.write_all(script.as_bytes()));
            let output = child.wait_with_output();
            let _ = writer.join();
            output
        })
        .map_err(|source| NftError::Spawn { command: described, source })?;
        if output.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        if stderr.contains("exec of \"nft\" failed") {
            // `ip netns exec` could not find it.
            return Err(NftError::Missing);
        }
        // The first errors say what was wrong; a broken script can produce thousands.
        let stderr: Vec<&str> = stderr.lines().take(12).collect();
        Err(NftError::Rejected { table: self.table.clone(), lines: script.lines().count(), stderr: stderr.join("\n") })
    }

    /// Deletes the table and everything in it; nothing to do when there is none.
    pub fn remove(&self) -> Result<(), NftError> {
        let table = &self.table;
        self.apply(&format!("add table ip {table}\ndelete table ip {table}\n"))
    }
}
