//! Work spread over a fixed number of threads: how a run runs its scenarios
//! and an exploration its orders (run infrastructure, below both).

use std::sync::Mutex;

/// Run `f(0..n)` on up to `jobs` threads, taking indices in order, until all
/// are done or `stop()` says so; results come back in index order, without
/// the indices that were never started.
pub fn parallel_map<T: Send>(
    n: usize,
    jobs: usize,
    stop: impl Fn() -> bool + Sync,
    f: impl Fn(usize) -> T + Sync,
) -> Vec<T> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Mutex<Vec<Option<T>>> = Mutex::new((0..n).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, n.max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= n || stop() {
                    break;
                }
                let r = f(i);
                results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(r);
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .flatten()
        .collect()
}
