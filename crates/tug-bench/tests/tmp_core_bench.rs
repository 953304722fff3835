#[path = "../src/scheduler.rs"]
mod scheduler;

#[test]
fn core_bench_figures() {
    let n: usize = std::env::var("NODES").ok().and_then(|v| v.parse().ok()).unwrap_or(5000);
    let p: usize = std::env::var("PODS").ok().and_then(|v| v.parse().ok()).unwrap_or(50000);
    println!("{}", scheduler::core_bench(n, p));
}
