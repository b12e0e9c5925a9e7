//! The creation lock: browser creations one at a time, with a pause inside the lock.
//!
//! This is the old tool's Phase 1 ("a global lock with a 2.5 s sleep inside"), kept
//! because users asked for it and because on two cores serial creation is often as
//! fast as overlapping ones. It does not decide the interval: the caller does.

use std::sync::Arc;
use std::time::Duration;

/// `async fn acquire() -> CreationGuard`: one creation at a time (when enabled), each
/// preceded by `interval` while holding the lock.
#[derive(Debug, Clone)]
pub struct CreationLock {
    inner: Option<Arc<tokio::sync::Mutex<()>>>,
    interval: Duration,
}

/// Proof of holding the creation lock (or of the lock being disabled); dropping it
/// releases the lock.
#[derive(Debug)]
pub struct CreationGuard {
    _guard: Option<tokio::sync::OwnedMutexGuard<()>>,
    interval: Duration,
}

impl CreationLock {
    /// A lock that serializes creations if `enabled`, sleeping `interval` inside it.
    /// Disabled, creations overlap but each still waits `interval` first.
    pub fn new(enabled: bool, interval: Duration) -> Self {
        CreationLock {
            inner: enabled.then(|| Arc::new(tokio::sync::Mutex::new(()))),
            interval,
        }
    }

    /// Whether creations are serialized.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// The pause before each creation.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Wait for the lock (fair: first come, first served). Call
    /// [`CreationGuard::pace`] next to wait the interval inside it.
    pub async fn acquire(&self) -> CreationGuard {
        let guard = match &self.inner {
            Some(m) => Some(Arc::clone(m).lock_owned().await),
            None => None,
        };
        CreationGuard {
            _guard: guard,
            interval: self.interval,
        }
    }
}

impl CreationGuard {
    /// Wait the configured interval while (still) holding the lock.
    pub async fn pace(&self) {
        if !self.interval.is_zero() {
            tokio::time::sleep(self.interval).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    async fn max_holders(lock: CreationLock, tasks: usize) -> usize {
        let holding = Arc::new(AtomicUsize::new(0));
        let max = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::new();
        for _ in 0..tasks {
            let (lock, holding, max) = (lock.clone(), holding.clone(), max.clone());
            handles.push(tokio::spawn(async move {
                let g = lock.acquire().await;
                g.pace().await;
                let now = holding.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(now, Ordering::SeqCst);
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_millis(5)).await;
                holding.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
        max.load(Ordering::SeqCst)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn enabled_lock_admits_one_holder() {
        assert_eq!(
            max_holders(CreationLock::new(true, Duration::ZERO), 8).await,
            1
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn disabled_lock_lets_creations_overlap() {
        assert!(max_holders(CreationLock::new(false, Duration::ZERO), 8).await > 1);
    }

    #[tokio::test(start_paused = true)]
    async fn interval_is_waited_inside_the_lock() {
        let lock = CreationLock::new(true, Duration::from_millis(2500));
        let start = tokio::time::Instant::now();
        for _ in 0..2 {
            lock.acquire().await.pace().await;
        }
        assert_eq!(start.elapsed(), Duration::from_millis(5000));
    }
}
