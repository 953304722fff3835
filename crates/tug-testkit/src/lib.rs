//! Test harness: starts the real things tests need (etcd today; the server, agents, registry and
//! network-namespace hosts as they arrive) and cleans them up on success, failure and panic.
//!
//! Rules every helper here follows (GUIDE §6): daemons listen on free loopback ports, keep state
//! in a temporary directory, and are stopped by the PID we started; nothing waits with a fixed
//! sleep — [`wait_for`] polls a condition with a deadline and says what it last saw.

mod etcd;
pub mod server;

pub use etcd::{Etcd, etcd_binary};
pub use server::TugServer;

use std::net::TcpListener;
use std::time::{Duration, Instant};

/// A loopback port that was free a moment ago. The kernel does not hand out the same ephemeral
/// port again soon, so a daemon told to listen on it will nearly always get it; callers that
/// start daemons retry on a bind failure.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("no free loopback port")
}

/// Polls `check` until it returns `Ok`, or fails after `deadline` with the last thing observed.
pub fn wait_for<T>(what: &str, deadline: Duration, mut check: impl FnMut() -> Result<T, String>) -> Result<T, String> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        match check() {
            Ok(v) => return Ok(v),
            Err(seen) if start.elapsed() >= deadline => {
                return Err(format!("timed out after {deadline:?} waiting for {what}; last seen: {seen}"));
            }
            Err(_) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
        }
    }
}

/// A short random suffix for names of host objects a test creates (`tugt-<suffix>`).
pub fn unique_suffix() -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{:x}{:x}", std::process::id() & 0xfff, nanos & 0xfffff)
}

/// The async [`wait_for`]: polls `check` (5 ms, doubling to 100 ms) until it succeeds or
/// `deadline` passes, then panics naming what it waited for and what it last saw.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let start = tokio::time::Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        match check().await {
            Ok(v) => return v,
            Err(seen) if start.elapsed() >= deadline => panic!("timed out waiting for {what}; last seen: {seen}"),
            Err(_) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(100));
            }
        }
    }
}
