//! Unique TCP port leases: a port leased here is never leased twice while its lease
//! lives, within one process (many threads) and across every process on the host that
//! uses the same lock directory.
//!
//! - [`PortAllocator`] hands out leases, either from a fixed range or from
//!   portpicker's random candidates (falling back to the kernel's choice).
//! - [`PortLease`] is one reserved port; dropping it gives the port back.
//! - [`PortError`] says why no lease could be had.
//!
//! A reservation has two layers: a process-wide set (shared by every allocator in the
//! process) and an exclusive `flock` on `<lock_dir>/<port>.lock`, which other
//! processes see. Before handing a port out, the allocator also checks that nothing
//! listens on it right now.
//!
//! What this crate does *not* do: it never keeps a socket open, so it cannot stop a
//! program that ignores the lock directory from binding a leased port; it never starts
//! processes and never verifies who listens on a port later — whoever passes the port
//! to a child must check that the child got it (see [`PortAllocator::claim`] for the
//! other way round: letting the kernel choose and registering the result).
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let ports = ports::PortAllocator::new(dir.path().join("ports"), None)?;
//!
//! let lease = ports.lease()?;
//! let port = lease.port();
//! assert!(port >= 1024);
//! // While the lease lives, nobody else using this lock directory gets the port.
//! assert!(matches!(ports.claim(port), Err(ports::PortError::Taken { .. })));
//!
//! // Dropping the lease gives the port back.
//! drop(lease);
//! let again = ports.claim(port)?;
//! assert_eq!(again.port(), port);
//! # Ok(()) }
//! ```

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File};
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex, PoisonError};

use fsutil::LockOutcome;

/// The most candidates one [`PortAllocator::lease`] call looks at before giving up.
const MAX_TRIES: usize = 10_000;

/// How often a vanished lock directory is recreated (see [`lock_port_file`]).
const MAX_REOPEN: usize = 3;

/// Ports leased by this process, shared by every allocator in it.
type Registry = Mutex<HashSet<u16>>;

static LEASED: LazyLock<Registry> = LazyLock::new(|| Mutex::new(HashSet::new()));

/// Why a port could not be leased or claimed.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// The lock directory or a lock file in it could not be created, opened or locked.
    #[error("port lock file {path}: {source}")]
    Io {
        /// The directory or file that failed.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Every candidate looked at was leased, locked by another process, or in use.
    #[error("no free port in {range} after {tried} candidates")]
    Exhausted {
        /// The range searched, or "portpicker candidates" when there was none.
        range: String,
        /// How many candidates were looked at.
        tried: usize,
    },
    /// [`PortAllocator::claim`]: the port is already leased, here or in another process.
    #[error("port {port} is already leased")]
    Taken {
        /// The port asked for.
        port: u16,
    },
    /// [`PortAllocator::new`]: the range is empty or reaches below 1024.
    #[error("invalid port range {start}..={end}: {reason}")]
    InvalidRange {
        /// First port of the range.
        start: u16,
        /// Last port of the range.
        end: u16,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// [`PortAllocator::claim`]: port 0 is not a port a listener can have.
    #[error("invalid port {port}: a listener never has port 0")]
    InvalidPort {
        /// The port asked for.
        port: u16,
    },
}

/// `lease() -> PortLease`: hands out TCP ports that no other lease on this host
/// (sharing the lock directory) holds, and that nothing listens on at lease time.
///
/// Cheap to clone; clones and independent allocators in one process share the same
/// in-process reservations.
#[derive(Clone)]
pub struct PortAllocator {
    lock_dir: PathBuf,
    range: Option<RangeInclusive<u16>>,
    registry: &'static Registry,
}

impl fmt::Debug for PortAllocator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PortAllocator")
            .field("lock_dir", &self.lock_dir)
            .field("range", &self.range)
            .finish()
    }
}

impl PortAllocator {
    /// An allocator using `lock_dir` for cross-process locks (created with mode 0700
    /// if missing). `range`: `None` picks portpicker's random candidates (or the
    /// kernel's choice); `Some(a..=b)` only ports in that range, with `1024 <= a <= b`.
    pub fn new(
        lock_dir: impl Into<PathBuf>,
        range: Option<RangeInclusive<u16>>,
    ) -> Result<Self, PortError> {
        Self::with_registry(lock_dir.into(), range, &LEASED)
    }

    fn with_registry(
        lock_dir: PathBuf,
        range: Option<RangeInclusive<u16>>,
        registry: &'static Registry,
    ) -> Result<Self, PortError> {
        if let Some(range) = &range {
            validate_range(range)?;
        }
        create_lock_dir(&lock_dir)?;
        Ok(Self {
            lock_dir,
            range,
            registry,
        })
    }

    /// A free port, reserved for the life of the returned lease.
    ///
    /// Looks at up to `min(range size, 10 000)` candidates; a candidate is skipped if
    /// it is leased in this process, locked by another process, or something listens
    /// on it. Only a failing lock directory is an error before that bound.
    pub fn lease(&self) -> Result<PortLease, PortError> {
        let tries = match &self.range {
            Some(range) => range_len(range).min(MAX_TRIES),
            None => MAX_TRIES,
        };
        // Probe a range linearly from a random offset: every port of a small range
        // is looked at exactly once (so `Exhausted` means "all taken"), while
        // concurrent callers still start at different places.
        let offset = random_u64();
        for i in 0..tries {
            let candidate = match &self.range {
                Some(range) => {
                    let len = range_len(range) as u64;
                    let step = (offset.wrapping_add(i as u64)) % len;
                    Some(range.start() + step as u16)
                }
                None => portpicker::pick_unused_port().or_else(kernel_port),
            };
            let Some(port) = candidate else { continue };
            if let Some(lease) = self.reserve(port, true)? {
                tracing::debug!(port, "port leased");
                return Ok(lease);
            }
        }
        Err(PortError::Exhausted {
            range: self.describe_range(),
            tried: tries,
        })
    }

    /// Registers `port`, which the kernel already gave to a listener we own (e.g. a
    /// child started with `--port=0` that printed its port), so that no lease hands
    /// it out while the returned lease lives. The port need not be in the range.
    ///
    /// `Taken` if it is already leased here or in another process.
    pub fn claim(&self, port: u16) -> Result<PortLease, PortError> {
        if port == 0 {
            return Err(PortError::InvalidPort { port });
        }
        // No bind check: the port is expected to be busy — our own listener has it.
        match self.reserve(port, false)? {
            Some(lease) => {
                tracing::debug!(port, "port claimed");
                Ok(lease)
            }
            None => Err(PortError::Taken { port }),
        }
    }

    /// The range ports are taken from, `None` for portpicker's candidates.
    pub fn range(&self) -> Option<RangeInclusive<u16>> {
        self.range.clone()
    }

    /// The directory holding the cross-process lock files.
    pub fn lock_dir(&self) -> &Path {
        &self.lock_dir
    }

    /// Reserves `port` in both layers, or `None` if either says it is taken (or, with
    /// `check_bind`, something listens on it).
    fn reserve(&self, port: u16, check_bind: bool) -> Result<Option<PortLease>, PortError> {
        {
            let mut leased = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
            if !leased.insert(port) {
                return Ok(None);
            }
        }
        // From here on the lease value owns the reservation: dropping it on any early
        // return gives back whatever part was taken.
        let mut lease = PortLease {
            port,
            path: self.lock_dir.join(format!("{port}.lock")),
            file: None,
            registry: self.registry,
        };
        lease.file = lock_port_file(&lease.path, &self.lock_dir)?;
        if lease.file.is_none() {
            return Ok(None);
        }
        if check_bind && !bindable(port) {
            return Ok(None);
        }
        Ok(Some(lease))
    }

    fn describe_range(&self) -> String {
        match &self.range {
            Some(range) => format!("{}..={}", range.start(), range.end()),
            None => "portpicker candidates".to_owned(),
        }
    }
}

/// One reserved port: no other lease (in this process, or in another process using
/// the same lock directory) gets it while this value lives. Dropping it deletes the
/// lock file, unlocks it and forgets the port.
pub struct PortLease {
    port: u16,
    path: PathBuf,
    /// The locked lock file; `None` only while a reservation is being built.
    file: Option<File>,
    registry: &'static Registry,
}

impl PortLease {
    /// The leased port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl fmt::Debug for PortLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PortLease")
            .field("port", &self.port)
            .field("lock_file", &self.path)
            .finish()
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        if let Some(file) = self.file.take() {
            // Unlink while still holding the lock, so that nobody can lock this inode
            // and believe it guards the port (see `lock_port_file`). Leaving the file
            // behind would be harmless too: the next locker just reuses it.
            if let Err(error) = fs::remove_file(&self.path)
                && error.kind() != io::ErrorKind::NotFound
            {
                tracing::debug!(port = self.port, path = %self.path.display(), %error, "could not remove port lock file");
            }
            // Unlock explicitly rather than by closing: a child that another thread
            // is spawning right now has a copy of this descriptor until its exec
            // closes it (O_CLOEXEC), and a flock lives until every copy is closed.
            let _ = file.unlock();
            drop(file);
        }
        self.registry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.port);
    }
}

/// Where port lock files live by default: `<runtime dir>/ports`, the one directory
/// every batch-cli process of this user agrees on (see [`fsutil::runtime_dir`]):
/// a lock only excludes those who look in the same place.
pub fn default_lock_dir() -> PathBuf {
    fsutil::runtime_dir().join("ports")
}

/// What [`PortAllocator::new`] refuses in a range (an inverted one, or one reaching
/// below 1024), checked without creating anything: config validation calls it so a
/// bad range is an input error before anything is locked or launched.
pub fn validate_range(range: &RangeInclusive<u16>) -> Result<(), PortError> {
    let (start, end) = (*range.start(), *range.end());
    let reason = if start > end {
        "the start is after the end"
    } else if start < 1024 {
        "ports below 1024 are privileged"
    } else {
        return Ok(());
    };
    Err(PortError::InvalidRange { start, end, reason })
}

fn range_len(range: &RangeInclusive<u16>) -> usize {
    usize::from(range.end() - range.start()) + 1
}

fn create_lock_dir(dir: &Path) -> Result<(), PortError> {
    fsutil::private_dir(dir).map_err(|source| PortError::Io {
        path: dir.to_owned(),
        source,
    })
}

/// Takes the exclusive, non-blocking flock on `path`: `Some(file)` holding it, or
/// `None` if another open file holds it. [`fsutil::lock_file`] re-checks the inode
/// after locking (the lock-file-unlink race: a lease's drop unlinks its file).
fn lock_port_file(path: &Path, lock_dir: &Path) -> Result<Option<File>, PortError> {
    let io_error = |source| PortError::Io {
        path: path.to_owned(),
        source,
    };
    for _ in 0..MAX_REOPEN {
        match fsutil::lock_file(path, true).map_err(io_error)? {
            LockOutcome::Held(file) => return Ok(Some(file)),
            LockOutcome::Busy => return Ok(None),
            // The lock directory vanished (e.g. a /tmp cleaner): recreate it.
            LockOutcome::Gone => create_lock_dir(lock_dir)?,
            // Someone keeps replacing the file under us: treat the port as busy.
            LockOutcome::Replaced => return Ok(None),
        }
    }
    Ok(None)
}

/// Whether a TCP listener could bind `port` on loopback right now.
///
/// 127.0.0.1 must be free: that is where Chromium's DevTools and ChromeDriver listen,
/// and a listener on 0.0.0.0 or a dual-stack `[::]` also makes this bind fail. `[::1]`
/// only counts when it is known busy; a host without IPv6 fails that bind otherwise.
fn bindable(port: u16) -> bool {
    if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_err() {
        return false;
    }
    match TcpListener::bind((Ipv6Addr::LOCALHOST, port)) {
        Err(error) => error.kind() != io::ErrorKind::AddrInUse,
        Ok(_) => true,
    }
}

/// A port the kernel considers free right now (bind 127.0.0.1:0 and read it back).
fn kernel_port() -> Option<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).ok()?;
    Some(listener.local_addr().ok()?.port())
}

/// A random number, good enough to spread probe start points; std's hasher keys are
/// randomly seeded per thread and change with every `RandomState::new()`.
fn random_u64() -> u64 {
    RandomState::new().hash_one(std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::fs::PermissionsExt;
    use std::process::{Child, Command, Stdio};
    use std::sync::Barrier;
    use std::sync::atomic::{AtomicU16, Ordering};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    /// Test ranges come from 26000..32000: above portpicker's 15000..25000 and below
    /// the kernel's ephemeral ports (32768..), so other programs rarely land there.
    /// Each test gets its own range, because all tests of this binary share the
    /// process-wide set.
    static NEXT_RANGE_START: AtomicU16 = AtomicU16::new(26000);

    fn quiet_range(len: u16) -> RangeInclusive<u16> {
        loop {
            let start = NEXT_RANGE_START.fetch_add(len, Ordering::Relaxed);
            assert!(start + len < 32000, "out of test port ranges");
            let range = start..=start + len - 1;
            if range.clone().all(bindable) {
                return range;
            }
        }
    }

    /// An allocator with its own in-process set: what another process would have.
    fn other_process(dir: &Path, range: Option<RangeInclusive<u16>>) -> PortAllocator {
        let registry = Box::leak(Box::new(Mutex::new(HashSet::new())));
        PortAllocator::with_registry(dir.to_owned(), range, registry).unwrap()
    }

    fn ports_of(leases: &[PortLease]) -> BTreeSet<u16> {
        leases.iter().map(PortLease::port).collect()
    }

    #[test]
    fn many_threads_never_share_a_port() {
        const THREADS: usize = 50;
        const ROUNDS: usize = 20;
        let dir = tempfile::tempdir().unwrap();
        for range in [None, Some(quiet_range(64))] {
            let ports = PortAllocator::new(dir.path(), range.clone()).unwrap();
            for round in 0..ROUNDS {
                let barrier = Barrier::new(THREADS);
                let leases: Vec<PortLease> = std::thread::scope(|s| {
                    let handles: Vec<_> = (0..THREADS)
                        .map(|_| {
                            s.spawn(|| {
                                barrier.wait();
                                ports.lease().unwrap()
                            })
                        })
                        .collect();
                    handles.into_iter().map(|h| h.join().unwrap()).collect()
                });
                assert_eq!(
                    ports_of(&leases).len(),
                    THREADS,
                    "range {range:?} round {round}: duplicate ports in {leases:?}"
                );
                if let Some(range) = &range {
                    assert!(leases.iter().all(|l| range.contains(&l.port())));
                }
            }
        }
    }

    #[test]
    fn flock_conflicts_between_two_opens_in_one_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.lock");
        let first = fsutil::open_lock_file(&path, true).unwrap();
        let second = fsutil::open_lock_file(&path, true).unwrap();
        assert!(first.try_lock().is_ok());
        assert!(
            second.try_lock().is_err(),
            "flock is per open file description"
        );
        drop(first);
        assert!(second.try_lock().is_ok());
    }

    #[test]
    fn two_allocators_on_one_lock_dir_never_share_a_port() {
        let dir = tempfile::tempdir().unwrap();
        let range = quiet_range(8);
        let here = PortAllocator::new(dir.path(), Some(range.clone())).unwrap();
        let there = other_process(dir.path(), Some(range.clone()));

        let barrier = Barrier::new(8);
        let leases: Vec<PortLease> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let (ports, barrier) = (if i % 2 == 0 { &here } else { &there }, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        ports.lease().unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(ports_of(&leases), range.clone().collect::<BTreeSet<_>>());
        for ports in [&here, &there] {
            assert!(matches!(
                ports.lease(),
                Err(PortError::Exhausted { tried: 8, .. })
            ));
        }
        // Only the flock stops `there` from claiming what `here` leased.
        let held_here = leases
            .iter()
            .find(|l| here.registry.lock().unwrap().contains(&l.port()));
        let held_here = held_here.unwrap().port();
        assert!(
            matches!(there.claim(held_here), Err(PortError::Taken { port }) if port == held_here)
        );
    }

    #[test]
    fn tiny_range_exhausts_then_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let range = quiet_range(3);
        let ports = PortAllocator::new(dir.path(), Some(range.clone())).unwrap();
        let mut leases: Vec<_> = (0..3).map(|_| ports.lease().unwrap()).collect();
        assert_eq!(ports_of(&leases), range.clone().collect::<BTreeSet<_>>());

        let error = ports.lease().unwrap_err();
        assert!(
            matches!(&error, PortError::Exhausted { tried: 3, .. }),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            format!(
                "no free port in {}..={} after 3 candidates",
                range.start(),
                range.end()
            )
        );

        let freed = leases.remove(1).port();
        assert_eq!(ports.lease().unwrap().port(), freed);
    }

    #[test]
    fn port_with_a_foreign_listener_is_never_leased() {
        let dir = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let ports = PortAllocator::new(dir.path(), Some(port..=port)).unwrap();
        for _ in 0..20 {
            assert!(matches!(
                ports.lease(),
                Err(PortError::Exhausted { tried: 1, .. })
            ));
        }
        // The rejected candidate left neither a reservation nor a lock file behind.
        assert!(!LEASED.lock().unwrap().contains(&port));
        assert!(!dir.path().join(format!("{port}.lock")).exists());
        drop(listener);
        assert_eq!(ports.lease().unwrap().port(), port);
    }

    #[test]
    fn claim_cases() {
        let dir = tempfile::tempdir().unwrap();
        let range = quiet_range(2);
        let (first, last) = (*range.start(), *range.end());
        let here = PortAllocator::new(dir.path(), Some(first..=first)).unwrap();
        let there = other_process(dir.path(), None);
        let leased_here = here.lease().unwrap();
        let leased_there = there.claim(last).unwrap();
        let kernel_given = kernel_port().unwrap();

        let check = |port: u16, expected: Result<(), &str>| {
            let got = here.claim(port).map(|lease| assert_eq!(lease.port(), port));
            match (got, expected) {
                (Ok(()), Ok(())) => {}
                (Err(error), Err(message)) => assert_eq!(error.to_string(), message),
                (got, expected) => panic!("claim({port}): got {got:?}, expected {expected:?}"),
            }
        };
        let taken = |port| format!("port {port} is already leased");
        check(leased_here.port(), Err(&taken(leased_here.port())));
        check(leased_there.port(), Err(&taken(leased_there.port())));
        check(0, Err("invalid port 0: a listener never has port 0"));
        check(kernel_given, Ok(()));
        // A claimed port is skipped by leases just like a leased one.
        let claimed = here.claim(kernel_given).unwrap();
        let only_that = PortAllocator::new(dir.path(), Some(kernel_given..=kernel_given)).unwrap();
        assert!(matches!(
            only_that.lease(),
            Err(PortError::Exhausted { .. })
        ));
        drop(claimed);
    }

    #[test]
    fn invalid_ranges_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let check = |start: u16, end: u16, expected: Result<(), &str>| {
            let range = start..=end;
            let got = PortAllocator::new(dir.path(), Some(range.clone()))
                .map(|ports| assert_eq!(ports.range(), Some(range.clone())))
                .map_err(|error| error.to_string());
            assert_eq!(got, expected.map_err(str::to_owned), "range {range:?}");
        };
        let privileged = "ports below 1024 are privileged";
        let reversed = "the start is after the end";
        check(1024, 1024, Ok(()));
        check(40000, 65535, Ok(()));
        check(65535, 65535, Ok(()));
        check(
            0,
            2000,
            Err(&format!("invalid port range 0..=2000: {privileged}")),
        );
        check(
            1023,
            1030,
            Err(&format!("invalid port range 1023..=1030: {privileged}")),
        );
        check(
            3000,
            2999,
            Err(&format!("invalid port range 3000..=2999: {reversed}")),
        );
        check(
            80,
            79,
            Err(&format!("invalid port range 80..=79: {reversed}")),
        );
    }

    #[test]
    fn lock_files_come_and_go_with_leases() {
        let dir = tempfile::tempdir().unwrap();
        let lock_dir = dir.path().join("nested").join("ports");
        let range = quiet_range(1);
        let port = *range.start();
        let lock_file = lock_dir.join(format!("{port}.lock"));
        let ports = PortAllocator::new(&lock_dir, Some(range)).unwrap();
        let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&lock_dir), 0o700);

        let lease = ports.lease().unwrap();
        assert_eq!(mode(&lock_file), 0o600);
        drop(lease);
        assert!(!lock_file.exists());

        // A lock file left by a killed process (unlocked) does not block the port.
        File::create(&lock_file).unwrap();
        assert_eq!(ports.lease().unwrap().port(), port);

        // Nor does a deleted lock directory.
        fs::remove_dir_all(&lock_dir).unwrap();
        assert_eq!(ports.lease().unwrap().port(), port);
    }

    #[test]
    fn default_lock_dir_is_under_the_runtime_dir() {
        assert_eq!(default_lock_dir(), fsutil::runtime_dir().join("ports"));
    }

    // --- Across processes: the test binary re-executes itself as a child. ---

    const CHILD_DIR: &str = "PORTS_TEST_CHILD_DIR";
    const CHILD_RANGE: &str = "PORTS_TEST_CHILD_RANGE";
    const CHILD_COUNT: &str = "PORTS_TEST_CHILD_COUNT";
    const CHILD_TEST: &str = "tests::cross_process_child";

    /// Not a test by itself: the body of the child process of
    /// `two_processes_never_share_a_port`. Without its environment it does nothing.
    /// It leases COUNT ports, prints them, and holds them until stdin closes.
    #[test]
    fn cross_process_child() {
        let Some(dir) = std::env::var_os(CHILD_DIR) else {
            return;
        };
        let range = std::env::var(CHILD_RANGE).unwrap();
        let (start, end) = range.split_once('-').unwrap();
        let count: usize = std::env::var(CHILD_COUNT).unwrap().parse().unwrap();
        let ports =
            PortAllocator::new(dir, Some(start.parse().unwrap()..=end.parse().unwrap())).unwrap();
        let leases: Vec<_> = (0..count).map(|_| ports.lease().unwrap()).collect();
        let list: Vec<String> = leases.iter().map(|l| l.port().to_string()).collect();
        println!("CHILD-PORTS {}", list.join(","));
        io::stdout().flush().unwrap();
        let mut line = String::new();
        io::stdin().read_line(&mut line).unwrap();
    }

    /// A child process that is killed and reaped when dropped, even if the test fails.
    /// A thread forwards its stdout lines, so that every wait has a deadline.
    struct ChildGuard {
        child: Child,
        lines: mpsc::Receiver<String>,
    }

    /// Only reached when a child misbehaves; a healthy one answers in milliseconds.
    const CHILD_DEADLINE: Duration = Duration::from_secs(20);
    const PORTS_MARK: &str = "CHILD-PORTS ";

    impl ChildGuard {
        fn spawn(dir: &Path, range: &RangeInclusive<u16>, count: usize) -> Self {
            let mut child = Command::new(std::env::current_exe().unwrap())
                .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
                .env(CHILD_DIR, dir)
                .env(CHILD_RANGE, format!("{}-{}", range.start(), range.end()))
                .env(CHILD_COUNT, count.to_string())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let stdout = child.stdout.take().unwrap();
            let (sender, lines) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if sender.send(line).is_err() {
                        break;
                    }
                }
            });
            Self { child, lines }
        }

        /// The next stdout line, `None` at end of output; panics after the deadline.
        fn next_line(&self, deadline: Instant) -> Option<String> {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => Some(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => None,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("child silent for {CHILD_DEADLINE:?}")
                }
            }
        }

        /// Waits until the child printed its ports (libtest may prefix the line).
        fn ports(&self) -> BTreeSet<u16> {
            let deadline = Instant::now() + CHILD_DEADLINE;
            loop {
                let line = self
                    .next_line(deadline)
                    .expect("child exited without printing its ports");
                if let Some(at) = line.find(PORTS_MARK) {
                    let list = &line[at + PORTS_MARK.len()..];
                    return list.split(',').map(|p| p.trim().parse().unwrap()).collect();
                }
            }
        }

        /// Closes stdin so the child lets go of its leases, and waits for it to exit.
        fn finish(mut self) {
            drop(self.child.stdin.take());
            let deadline = Instant::now() + CHILD_DEADLINE;
            let mut rest = Vec::new();
            while let Some(line) = self.next_line(deadline) {
                rest.push(line);
            }
            let status = self.child.wait().unwrap();
            assert!(
                status.success(),
                "child failed: {status}\n{}",
                rest.join("\n")
            );
        }
    }

    impl Drop for ChildGuard {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    #[test]
    fn two_processes_never_share_a_port() {
        let dir = tempfile::tempdir().unwrap();
        let range = quiet_range(6);
        let a = ChildGuard::spawn(dir.path(), &range, 3);
        let b = ChildGuard::spawn(dir.path(), &range, 3);
        let (ports_a, ports_b) = (a.ports(), b.ports());
        assert_eq!(ports_a.len(), 3);
        assert_eq!(ports_b.len(), 3);
        assert!(
            ports_a.is_disjoint(&ports_b),
            "{ports_a:?} and {ports_b:?} overlap"
        );
        assert!(ports_a.union(&ports_b).all(|p| range.contains(p)));

        // This process has none of them in its own set: only the children's flocks
        // keep it from leasing them.
        let here = PortAllocator::new(dir.path(), Some(range.clone())).unwrap();
        assert!(matches!(
            here.lease(),
            Err(PortError::Exhausted { tried: 6, .. })
        ));

        a.finish();
        let freed: Vec<PortLease> = (0..3).map(|_| here.lease().unwrap()).collect();
        assert_eq!(ports_of(&freed), ports_a);
        b.finish();
    }
}
