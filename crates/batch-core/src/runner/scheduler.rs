//! The one place that decides when a browser may be created.
//!
//! Every creation — an account's first browser, a replacement after a crash, a
//! retirement's successor — asks [`Scheduler::admit`] and gets an [`Admission`], an
//! RAII ticket that records why it waited and for how long. Four things can make it
//! wait, each journaled as an `admission_wait` with its reason:
//!
//! - `cap` — `--max-concurrent K` accounts already hold a browser (sequential mode is
//!   the same scheduler with room for one). Off by default: there is no cap on
//!   accounts unless the user sets one. On a Grid without one, the Grid's slots are
//!   the cap, and it follows them as nodes join and leave ([`Scheduler::set_cap`]).
//! - `pacing` — the creation lock: with a fixed `--launch-interval` one creation at a
//!   time (Phase 1), with `auto` as many as the [`Pacer`] allows.
//! - `cpu` — the pacer is holding its limit because the CPU is saturated and launches
//!   are slowing.
//! - `memory` — available memory (cgroup-aware) minus a reservation for every launch
//!   in flight, at the learned per-browser cost, would fall below the reserve.
//!
//! Waiters are served in priority order: replacements for accounts that already hold
//! a seat first (they block nobody's seat), then accounts with more remaining work,
//! then arrival order. Only the head of that queue may be admitted, so priority holds
//! for every resource, not only the cap.
//!
//! What this does not do: launch anything, or sleep the fixed interval (the caller
//! does that inside its admission, see [`Admission::pace`]). Decisions are a pure
//! function of the state and the readings ([`gate`]), so they are unit-tested with
//! fake readings and tokio's paused clock.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::pacer::{Change, Hold, Pacer, Sample};
use crate::journal::{Event, Journal};

/// How often a waiter re-reads the machine when nothing else wakes it.
const POLL: Duration = Duration::from_millis(200);
/// Readings are shared by all waiters for this long.
const READINGS_TTL: Duration = Duration::from_millis(100);

/// Why a creation waited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Reason {
    /// `--max-concurrent` (or sequential mode) is full.
    Cap,
    /// The creation lock or the adaptive overlap limit.
    Pacing,
    /// The pacer is holding its limit: CPU saturated and launches slowing.
    Cpu,
    /// Not enough available memory for one more browser.
    Memory,
}

impl Reason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::Cap => "cap",
            Reason::Pacing => "pacing",
            Reason::Cpu => "cpu",
            Reason::Memory => "memory",
        }
    }
}

/// How creations are paced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pacing {
    /// A fixed pause before each creation. `locked`: one creation at a time, the
    /// pause inside the lock (Phase 1 with 2.5 s). Unlocked: creations overlap, each
    /// pausing first.
    Fixed { interval: Duration, locked: bool },
    /// Adaptive: locked, as many at once as the pacer allows; unlocked, no limit.
    Auto { locked: bool },
}

/// The rules of a run, fixed but for the cap of a Grid run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    /// Accounts holding a browser at once (`None`: no cap); the start of
    /// [`Scheduler::set_cap`]'s.
    pub(crate) cap: Option<usize>,
    pub(crate) pacing: Pacing,
    /// CPU cores (the pacer normalises launch latency by them).
    pub(crate) cores: usize,
    /// Creations the pacer allows at once before it has learned anything.
    pub(crate) start_overlap: usize,
    /// Launch latency above which the pacer shrinks whatever else it sees.
    pub(crate) latency_budget: Duration,
}

/// What the machine says, read at most every [`READINGS_TTL`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Readings {
    /// Available memory in bytes (cgroup-aware); `None`: unknown, do not wait for it.
    pub(crate) available: Option<u64>,
    /// The reserve that must stay available.
    pub(crate) threshold: u64,
    /// What one more browser is expected to take (learned, or the prior).
    pub(crate) browser_cost: u64,
    /// What the live browsers are still expected to grow by (see `resources`).
    pub(crate) growth: u64,
    /// CPU pressure, 0..=1.
    pub(crate) pressure: Option<f64>,
}

/// Where the readings come from: the machine, or a test.
pub(crate) trait Probe: Send + Sync {
    fn read(&self) -> Readings;
}

/// One creation asking to be admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Request {
    pub(crate) account: u64,
    /// Iterations the account still has to run (more goes first).
    pub(crate) remaining: u64,
    /// The account's place in the plan (the tie-break: plan order).
    pub(crate) order: usize,
    /// The account already holds a seat (a replacement): the cap does not apply.
    pub(crate) seated: bool,
}

/// The state [`gate`] decides from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct View {
    pub(crate) seats: usize,
    pub(crate) in_flight: usize,
    /// The pacer's limit (auto only).
    pub(crate) limit: usize,
    /// The pacer is holding because of CPU pressure.
    pub(crate) cpu_held: bool,
}

/// May `req` be admitted now? `Err` names what it waits for.
pub(crate) fn gate(
    policy: &Policy,
    view: &View,
    req: &Request,
    r: &Readings,
) -> Result<(), Reason> {
    if !req.seated && policy.cap.is_some_and(|c| view.seats >= c) {
        return Err(Reason::Cap);
    }
    match policy.pacing {
        Pacing::Fixed { locked: true, .. } if view.in_flight >= 1 => return Err(Reason::Pacing),
        Pacing::Auto { locked: true } if view.in_flight >= view.limit => {
            return Err(if view.cpu_held {
                Reason::Cpu
            } else {
                Reason::Pacing
            });
        }
        _ => {}
    }
    if let Some(available) = r.available {
        let needed = needed_memory(view.in_flight, r);
        if available < needed {
            return Err(Reason::Memory);
        }
    }
    Ok(())
}

/// Available memory needed to admit one more: the reserve, plus what the live
/// browsers are still expected to grow by, plus the learned cost of every launch in
/// flight (not yet visible in the figure) and of this one.
fn needed_memory(in_flight: usize, r: &Readings) -> u64 {
    r.threshold
        .saturating_add(r.growth)
        .saturating_add(r.browser_cost.saturating_mul(in_flight as u64 + 1))
}

#[derive(Debug, Clone, Copy)]
struct Waiter {
    ticket: u64,
    req: Request,
}

impl Waiter {
    /// Replacements first, then more remaining work, then plan order, then arrival.
    fn key(&self) -> (bool, std::cmp::Reverse<u64>, usize, u64) {
        (
            !self.req.seated,
            std::cmp::Reverse(self.req.remaining),
            self.req.order,
            self.ticket,
        )
    }
}

#[derive(Debug)]
struct InFlight {
    overlap: usize,
}

#[derive(Debug)]
struct State {
    next_ticket: u64,
    waiting: Vec<Waiter>,
    seats: usize,
    in_flight: BTreeMap<u64, InFlight>,
    pacer: Pacer,
    readings: Option<(Instant, Readings)>,
    /// The cap in force: the policy's, until [`Scheduler::set_cap`].
    cap: Option<usize>,
}

impl State {
    fn view(&self) -> View {
        View {
            seats: self.seats,
            in_flight: self.in_flight.len(),
            limit: self.pacer.limit(),
            cpu_held: self.pacer.held() == Some(Hold::Cpu),
        }
    }

    /// The head of the queue decides for everyone behind it.
    fn decide(&self, me: u64, policy: &Policy, r: &Readings) -> Result<(), Reason> {
        let policy = &Policy {
            cap: self.cap,
            ..*policy
        };
        let head = self
            .waiting
            .iter()
            .min_by_key(|w| w.key())
            .expect("the asking waiter is queued");
        match gate(policy, &self.view(), &head.req, r) {
            Ok(()) if head.ticket == me => Ok(()),
            // Someone ahead goes first; we are queued behind the same gate.
            Ok(()) => Err(Reason::Pacing),
            Err(reason) => Err(reason),
        }
    }
}

struct Shared {
    policy: Policy,
    state: Mutex<State>,
    notify: Notify,
    probe: Arc<dyn Probe>,
    journal: Journal,
    epoch: Instant,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// See the module docs. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Scheduler {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("policy", &self.shared.policy)
            .finish()
    }
}

/// Held by an account from its first admission until it is done: what `--max-concurrent`
/// counts. Dropping it frees the seat.
#[derive(Debug)]
pub(crate) struct Seat {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shared")
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.shared.lock().seats -= 1;
        self.shared.notify.notify_waiters();
    }
}

/// Permission to create one browser, held while it is being created. Carries why it
/// waited. [`Admission::finish`] reports the launch to the pacer; dropping it
/// unfinished (a cancelled launch) just frees the slot.
#[derive(Debug)]
pub(crate) struct Admission {
    shared: Arc<Shared>,
    ticket: u64,
    seat: Option<Seat>,
    /// Total time waited.
    pub(crate) waited: Duration,
    /// Time waited per reason, in the order first seen.
    pub(crate) waits: Vec<(Reason, Duration)>,
    finished: bool,
}

impl Scheduler {
    pub(crate) fn new(policy: Policy, probe: Arc<dyn Probe>, journal: Journal) -> Scheduler {
        Scheduler {
            shared: Arc::new(Shared {
                policy,
                state: Mutex::new(State {
                    next_ticket: 0,
                    waiting: Vec::new(),
                    seats: 0,
                    in_flight: BTreeMap::new(),
                    pacer: Pacer::new(policy.cores, policy.start_overlap, policy.latency_budget),
                    readings: None,
                    cap: policy.cap,
                }),
                notify: Notify::new(),
                probe,
                journal,
                epoch: Instant::now(),
            }),
        }
    }

    /// A new cap (a Grid's slots changed): accounts without a seat wait until fewer
    /// than `cap` hold one. A lower cap takes no seat away; a higher one admits the
    /// waiting at once.
    pub(crate) fn set_cap(&self, cap: Option<usize>) {
        self.shared.lock().cap = cap;
        self.shared.notify.notify_waiters();
    }

    /// Whether creations go through a creation lock (the spec's lock lines apply).
    pub(crate) fn locked(&self) -> bool {
        matches!(
            self.shared.policy.pacing,
            Pacing::Fixed { locked: true, .. } | Pacing::Auto { locked: true }
        )
    }

    /// The current overlap limit (for the journal).
    pub(crate) fn limit(&self) -> Option<usize> {
        match self.shared.policy.pacing {
            Pacing::Fixed { locked: true, .. } => Some(1),
            Pacing::Auto { locked: true } => Some(self.shared.lock().pacer.limit()),
            _ => None,
        }
    }

    fn readings(&self, st: &mut State) -> Readings {
        let now = Instant::now();
        match st.readings {
            Some((at, r)) if now.duration_since(at) < READINGS_TTL => r,
            _ => {
                let r = self.shared.probe.read();
                st.readings = Some((now, r));
                r
            }
        }
    }

    /// Wait until `req` may create a browser. Cancel-safe: dropping the future leaves
    /// the queue as if it had never asked.
    pub(crate) async fn admit(&self, req: Request) -> Admission {
        let shared = &self.shared;
        let ticket = {
            let mut st = shared.lock();
            st.next_ticket += 1;
            let ticket = st.next_ticket;
            st.waiting.push(Waiter { ticket, req });
            ticket
        };
        // Leaves the queue however this future ends.
        let mut queued = Queued {
            shared: Arc::clone(shared),
            ticket,
            armed: true,
        };
        let started = Instant::now();
        let mut waits: Vec<(Reason, Duration)> = Vec::new();
        let mut current: Option<(Reason, Instant)> = None;
        loop {
            let notified = shared.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (decision, view, r) = {
                let mut st = shared.lock();
                let r = self.readings(&mut st);
                let decision = st.decide(ticket, &shared.policy, &r);
                if decision.is_ok() {
                    st.waiting.retain(|w| w.ticket != ticket);
                    if !req.seated {
                        st.seats += 1;
                    }
                    let overlap = st.in_flight.len() + 1;
                    for f in st.in_flight.values_mut() {
                        f.overlap = f.overlap.max(overlap);
                    }
                    st.in_flight.insert(ticket, InFlight { overlap });
                }
                (decision, st.view(), r)
            };
            let now = Instant::now();
            let reason = decision.err();
            if current.map(|c| c.0) != reason {
                if let Some((was, since)) = current.take() {
                    add_wait(&mut waits, was, now.duration_since(since));
                }
                if let Some(reason) = reason {
                    current = Some((reason, now));
                    shared
                        .journal
                        .emit(wait_event(req.account, reason, &view, &r));
                }
            }
            if reason.is_none() {
                break;
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep(POLL) => {}
            }
        }
        // Admitted: already out of the queue.
        queued.armed = false;
        // Another waiter may be admissible now too (e.g. unlocked pacing).
        shared.notify.notify_waiters();
        let waited = started.elapsed();
        let main = waits
            .iter()
            .max_by_key(|(_, d)| *d)
            .map(|(r, _)| r.as_str());
        let waits_ms = waits
            .iter()
            .map(|(r, d)| (r.as_str().to_string(), d.as_millis() as u64))
            .collect();
        // (Two statements: a lock guard lives to the end of its statement, and
        // `limit()` takes the same lock.)
        let in_flight = shared.lock().in_flight.len();
        shared.journal.emit(Event::Admitted {
            account: req.account,
            waited_ms: waited.as_millis() as u64,
            reason: main.map(str::to_string),
            waits_ms,
            in_flight,
            limit: self.limit(),
        });
        Admission {
            shared: Arc::clone(shared),
            ticket,
            seat: (!req.seated).then(|| Seat {
                shared: Arc::clone(shared),
            }),
            waited,
            waits,
            finished: false,
        }
    }
}

fn add_wait(waits: &mut Vec<(Reason, Duration)>, reason: Reason, d: Duration) {
    match waits.iter_mut().find(|(r, _)| *r == reason) {
        Some((_, total)) => *total += d,
        None => waits.push((reason, d)),
    }
}

fn wait_event(account: u64, reason: Reason, view: &View, r: &Readings) -> Event {
    let memory = reason == Reason::Memory;
    Event::AdmissionWait {
        account,
        reason: reason.as_str().into(),
        in_flight: view.in_flight,
        available_bytes: if memory { r.available } else { None },
        needed_bytes: memory.then(|| needed_memory(view.in_flight, r)),
        threshold_bytes: memory.then_some(r.threshold),
        browser_cost_bytes: memory.then_some(r.browser_cost),
        growth_bytes: memory.then_some(r.growth),
        pressure: if reason == Reason::Cpu {
            r.pressure
        } else {
            None
        },
        limit: matches!(reason, Reason::Cpu | Reason::Pacing).then_some(view.limit),
        seats: (reason == Reason::Cap).then_some(view.seats),
    }
}

/// Removes a waiter from the queue if its `admit` future is dropped.
struct Queued {
    shared: Arc<Shared>,
    ticket: u64,
    armed: bool,
}

impl Drop for Queued {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.shared
            .lock()
            .waiting
            .retain(|w| w.ticket != self.ticket);
        self.shared.notify.notify_waiters();
    }
}

impl Admission {
    /// The account's seat, to hold until it is done (only its first admission has one).
    pub(crate) fn take_seat(&mut self) -> Option<Seat> {
        self.seat.take()
    }

    /// The fixed interval, waited while holding the admission (inside the lock).
    pub(crate) async fn pace(&self) {
        if let Pacing::Fixed { interval, .. } = self.shared.policy.pacing
            && !interval.is_zero()
        {
            tokio::time::sleep(interval).await;
        }
    }

    /// The creation is over: free the slot and teach the pacer (auto only).
    pub(crate) fn finish(mut self, latency: Duration, ok: bool) {
        self.finished = true;
        let shared = Arc::clone(&self.shared);
        let change = {
            let mut st = shared.lock();
            let overlap = st.in_flight.remove(&self.ticket).map_or(1, |f| f.overlap);
            if matches!(shared.policy.pacing, Pacing::Auto { locked: true }) {
                let pressure = st.readings.and_then(|(_, r)| r.pressure);
                let at = shared.epoch.elapsed();
                let change = st.pacer.observe(Sample {
                    latency,
                    overlap,
                    ok,
                    pressure,
                    at,
                });
                Some((change, overlap))
            } else {
                None
            }
        };
        if let Some((change, overlap)) = change {
            let what = match change {
                Change::Grew(n) => Some(("grew", n)),
                Change::Shrank(n) => Some(("shrank", n)),
                Change::Held(_) => None,
            };
            if let Some((what, limit)) = what {
                shared.journal.emit(Event::Pacing {
                    change: what.into(),
                    limit,
                    latency_ms: latency.as_millis() as u64,
                    overlap,
                    ok,
                });
            }
        }
        shared.notify.notify_waiters();
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if !self.finished {
            self.shared.lock().in_flight.remove(&self.ticket);
            self.shared.notify.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    const GIB: u64 = 1 << 30;

    fn readings(available: u64) -> Readings {
        Readings {
            available: Some(available),
            threshold: GIB,
            browser_cost: 300 << 20,
            growth: 0,
            pressure: Some(0.1),
        }
    }

    fn policy(cap: Option<usize>, pacing: Pacing) -> Policy {
        Policy {
            cap,
            pacing,
            cores: 2,
            start_overlap: 2,
            latency_budget: Duration::from_secs(10),
        }
    }

    #[test]
    fn gate_decisions() {
        let auto = Pacing::Auto { locked: true };
        let phase1 = Pacing::Fixed {
            interval: Duration::from_millis(2500),
            locked: true,
        };
        let unlocked = Pacing::Fixed {
            interval: Duration::ZERO,
            locked: false,
        };
        let new = Request {
            account: 1,
            remaining: 5,
            order: 0,
            seated: false,
        };
        let replacement = Request {
            seated: true,
            ..new
        };
        let view = |seats, in_flight, limit, cpu_held| View {
            seats,
            in_flight,
            limit,
            cpu_held,
        };
        let plenty = readings(20 * GIB);
        type Case = (
            &'static str,
            Policy,
            View,
            Request,
            Readings,
            Result<(), Reason>,
        );
        #[rustfmt::skip]
        let cases: Vec<Case> = vec![
            ("nothing in the way", policy(None, auto), view(3, 1, 2, false), new, plenty, Ok(())),
            ("the cap is full", policy(Some(3), auto), view(3, 0, 2, false), new, plenty, Err(Reason::Cap)),
            ("a replacement passes a full cap", policy(Some(3), auto), view(3, 0, 2, false), replacement, plenty, Ok(())),
            ("sequential is a cap of one", policy(Some(1), unlocked), view(1, 0, 0, false), new, plenty, Err(Reason::Cap)),
            ("phase 1: one creation at a time", policy(None, phase1), view(2, 1, 1, false), new, plenty, Err(Reason::Pacing)),
            ("phase 1: free lock", policy(None, phase1), view(2, 0, 1, false), new, plenty, Ok(())),
            ("unlocked: any overlap", policy(None, unlocked), view(9, 9, 0, false), new, plenty, Ok(())),
            ("auto: at the limit", policy(None, auto), view(4, 2, 2, false), new, plenty, Err(Reason::Pacing)),
            ("auto: at the limit, held by cpu", policy(None, auto), view(4, 2, 2, true), new, plenty, Err(Reason::Cpu)),
            ("auto unlocked: no limit", policy(None, Pacing::Auto { locked: false }), view(4, 9, 2, true), new, plenty, Ok(())),
            // 1 GiB reserve + 300 MiB for this one = 1.3 GiB needed.
            ("memory: room for one", policy(None, auto), view(0, 0, 2, false), new, readings(GIB + (300 << 20)), Ok(())),
            ("memory: below reserve + cost", policy(None, auto), view(0, 0, 2, false), new, readings(GIB + (299 << 20)), Err(Reason::Memory)),
            // One in flight reserves its cost too: 1.6 GiB needed.
            ("memory: in-flight launches are reserved", policy(None, auto), view(1, 1, 2, false), new, readings(GIB + (500 << 20)), Err(Reason::Memory)),
            // Live browsers still 200 MiB short of the cost reserve it: 1.5 GiB needed.
            ("memory: the live browsers' growth is reserved", policy(None, auto), view(2, 0, 2, false), new, Readings { growth: 200 << 20, ..readings(GIB + (450 << 20)) }, Err(Reason::Memory)),
            ("memory: room for growth and one", policy(None, auto), view(2, 0, 2, false), new, Readings { growth: 200 << 20, ..readings(GIB + (500 << 20)) }, Ok(())),
            ("memory: unknown figure never blocks", policy(None, auto), view(0, 0, 2, false), new, Readings { available: None, ..plenty }, Ok(())),
            ("the cap is checked before memory", policy(Some(1), auto), view(1, 0, 2, false), new, readings(0), Err(Reason::Cap)),
        ];
        for (name, policy, view, req, r, expected) in cases {
            assert_eq!(gate(&policy, &view, &req, &r), expected, "{name}");
        }
    }

    /// Readings a test can change while the scheduler runs.
    struct FakeProbe {
        available: AtomicU64,
    }

    impl Probe for FakeProbe {
        fn read(&self) -> Readings {
            readings(self.available.load(Ordering::SeqCst))
        }
    }

    fn scheduler(
        policy: Policy,
        available: u64,
    ) -> (
        Scheduler,
        Arc<FakeProbe>,
        tempfile::TempDir,
        std::path::PathBuf,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let journal = Journal::open(
            &path,
            Arc::new(|_| {}),
            Default::default(),
            Default::default(),
        )
        .unwrap();
        let probe = Arc::new(FakeProbe {
            available: AtomicU64::new(available),
        });
        (
            Scheduler::new(policy, probe.clone(), journal),
            probe,
            dir,
            path,
        )
    }

    fn events(path: &std::path::Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn req(account: u64, remaining: u64) -> Request {
        Request {
            account,
            remaining,
            order: account as usize,
            seated: false,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn accounts_with_more_remaining_work_go_first() {
        let phase1 = Pacing::Fixed {
            interval: Duration::ZERO,
            locked: true,
        };
        let (s, _p, _d, _path) = scheduler(policy(None, phase1), 20 * GIB);
        let first = s.admit(req(9, 1)).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (account, remaining) in [(1, 2), (2, 10), (3, 5), (4, 10)] {
            let (s, order) = (s.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let a = s.admit(req(account, remaining)).await;
                order.lock().unwrap().push(account);
                tokio::time::sleep(Duration::from_millis(10)).await;
                a.finish(Duration::from_millis(10), true);
            }));
            // Let each queue up before the next, so arrival order is known.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        first.finish(Duration::from_millis(5), true);
        for t in tasks {
            t.await.unwrap();
        }
        // 10, 10 (arrival order between equals), 5, 2.
        assert_eq!(*order.lock().unwrap(), vec![2, 4, 3, 1]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_cap_counts_seats_and_replacements_pass_it() {
        let (s, _p, _d, path) =
            scheduler(policy(Some(1), Pacing::Auto { locked: false }), 20 * GIB);
        let mut a = s.admit(req(1, 3)).await;
        let seat = a.take_seat().expect("a first admission carries a seat");
        a.finish(Duration::from_millis(400), true);
        // Account 2 waits for the cap; account 1's replacement does not.
        let waiting = {
            let s = s.clone();
            tokio::spawn(async move { s.admit(req(2, 3)).await.waited })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished());
        let replacement = s
            .admit(Request {
                seated: true,
                ..req(1, 2)
            })
            .await;
        assert!(replacement.waited < Duration::from_millis(1));
        replacement.finish(Duration::from_millis(400), true);
        drop(seat);
        let waited = waiting.await.unwrap();
        assert!(waited >= Duration::from_secs(1), "{waited:?}");
        let ev = events(&path);
        let wait = ev
            .iter()
            .find(|e| e["event"] == "admission_wait")
            .expect("the wait is journaled");
        assert_eq!(
            (wait["account"].as_u64(), wait["reason"].as_str()),
            (Some(2), Some("cap"))
        );
        let admitted: Vec<_> = ev.iter().filter(|e| e["event"] == "admitted").collect();
        assert_eq!(admitted.len(), 3);
        assert_eq!(admitted[2]["reason"], "cap");
        assert!(admitted[2]["waits_ms"]["cap"].as_u64().unwrap() >= 1000);
    }

    /// A Grid's slots as the cap: a raised cap admits the waiting at once (not when a
    /// seat frees), a lowered one holds new accounts and takes no seat away.
    #[tokio::test(start_paused = true)]
    async fn a_changed_cap_applies_to_those_waiting() {
        let (s, _p, _d, _path) =
            scheduler(policy(Some(1), Pacing::Auto { locked: false }), 20 * GIB);
        let mut a = s.admit(req(1, 3)).await;
        let _seat1 = a.take_seat().unwrap();
        a.finish(Duration::from_millis(400), true);
        let admit = |account| {
            let s = s.clone();
            tokio::spawn(async move {
                let mut a = s.admit(req(account, 3)).await;
                let seat = a.take_seat();
                a.finish(Duration::from_millis(400), true);
                seat
            })
        };
        let second = admit(2);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!second.is_finished(), "the cap of 1 holds account 2");
        s.set_cap(Some(2));
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(second.is_finished(), "the raised cap admits it at once");
        let _seat2 = second.await.unwrap();
        // Lowered below the seats held: nobody loses one, and a newcomer waits
        // until fewer than 1 hold a seat.
        s.set_cap(Some(1));
        let third = admit(3);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!third.is_finished());
        s.set_cap(None);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(third.is_finished());
    }

    #[tokio::test(start_paused = true)]
    async fn memory_waits_are_journaled_and_end_when_memory_returns() {
        let (s, probe, _d, path) = scheduler(policy(None, Pacing::Auto { locked: true }), GIB);
        let waiting = {
            let s = s.clone();
            tokio::spawn(async move { s.admit(req(7, 1)).await })
        };
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!waiting.is_finished());
        probe.available.store(4 * GIB, Ordering::SeqCst);
        let a = tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("admitted within a poll of memory returning")
            .unwrap();
        assert_eq!(a.waits.first().map(|w| w.0), Some(Reason::Memory));
        let ev = events(&path);
        let wait = ev.iter().find(|e| e["event"] == "admission_wait").unwrap();
        assert_eq!(wait["reason"], "memory");
        assert_eq!(wait["available_bytes"], GIB);
        assert_eq!(wait["needed_bytes"], GIB + (300 << 20));
    }

    #[tokio::test(start_paused = true)]
    async fn phase1_admits_one_creation_at_a_time_with_its_pause_inside() {
        let phase1 = Pacing::Fixed {
            interval: Duration::from_millis(2500),
            locked: true,
        };
        let (s, _p, _d, _path) = scheduler(policy(None, phase1), 20 * GIB);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for account in 1..=3 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                let a = s.admit(req(account, 1)).await;
                a.pace().await;
                let at = start.elapsed();
                a.finish(Duration::from_millis(1), true);
                at
            }));
        }
        let mut done: Vec<Duration> = Vec::new();
        for t in tasks {
            done.push(t.await.unwrap());
        }
        done.sort();
        let secs: Vec<u128> = done.iter().map(|d| d.as_millis() / 100).collect();
        assert_eq!(
            secs,
            vec![25, 50, 75],
            "2.5 s apart, one at a time: {done:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_request_leaves_the_queue() {
        let phase1 = Pacing::Fixed {
            interval: Duration::ZERO,
            locked: true,
        };
        let (s, _p, _d, _path) = scheduler(policy(None, phase1), 20 * GIB);
        let held = s.admit(req(1, 1)).await;
        // Account 2 (more work, so it would be first) gives up while waiting.
        let gave_up = tokio::time::timeout(Duration::from_secs(1), s.admit(req(2, 9))).await;
        assert!(gave_up.is_err());
        let third = {
            let s = s.clone();
            tokio::spawn(async move { s.admit(req(3, 1)).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(held);
        tokio::time::timeout(Duration::from_secs(1), third)
            .await
            .expect("the dropped waiter does not block the queue")
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn auto_lets_more_overlap_as_fast_launches_finish() {
        let (s, _p, _d, path) = scheduler(policy(None, Pacing::Auto { locked: true }), 20 * GIB);
        assert_eq!(s.limit(), Some(2));
        let a = s.admit(req(1, 1)).await;
        let b = s.admit(req(2, 1)).await;
        let third = {
            let s = s.clone();
            tokio::spawn(async move { s.admit(req(3, 1)).await })
        };
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(!third.is_finished(), "two cores: two at once to start with");
        a.finish(Duration::from_millis(400), true);
        b.finish(Duration::from_millis(400), true);
        let c = third.await.unwrap();
        assert_eq!(s.limit(), Some(4));
        let d = s.admit(req(4, 1)).await;
        let e = s.admit(req(5, 1)).await;
        assert!(d.waited.is_zero() && e.waited.is_zero());
        drop((c, d, e));
        let grew = events(&path)
            .iter()
            .filter(|e| e["event"] == "pacing" && e["change"] == "grew")
            .count();
        assert_eq!(grew, 2);
    }
}
