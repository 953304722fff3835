//! Network namespaces for tests and benchmarks: a namespace with a unique name, deleted when
//! dropped (on success, failure and panic alike).

use std::process::{Command, Output};

#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates the namespace `name` (give it a recognisable prefix and a random suffix) with
    /// its loopback up.
    pub fn create(name: &str) -> Result<NetNs, String> {
        run("ip", &["netns", "add", name])?;
        let netns = NetNs { name: name.to_string() };
        netns.exec(&["ip", "link", "set", "lo", "up"])?;
        Ok(netns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `command` inside the namespace; an error carries its stderr.
    pub fn exec(&self, command: &[&str]) -> Result<Output, String> {
        let mut args = vec!["netns", "exec", &self.name];
        args.extend_from_slice(command);
        run("ip", &args)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting the namespace removes its interfaces (a veth's peer too) and nft tables.
        let _ = run("ip", &["netns", "delete", &self.name]);
    }
}

/// Runs a command to completion; an error says which command failed and its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<Output, String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("could not run {program} {}: {e}", args.join(" ")))?;
    if !output.status.success() {
        return Err(format!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(output)
}
