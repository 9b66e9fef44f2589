//! [`Gate`]: where simulated operations wait until a test lets them through.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A point where simulated operations wait until the test lets them through, so that a
/// test orders events of several threads exactly, without sleeping (see
/// [`crate::sim::SimFs::gate_syncs`] and [`crate::sim::SimFs::gate_next_write`]).
///
/// Each operation that reaches the gate takes a ticket (0, 1, 2... in arrival order) and
/// waits until the gate has released more operations than its ticket; then it takes effect
/// and counts as passed. Dropping the handle opens the gate for good, so a test that fails
/// half-way never leaves a thread waiting.
#[derive(Debug)]
pub struct Gate {
    inner: Arc<GateInner>,
}

#[derive(Debug, Default)]
pub(super) struct GateInner {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct GateState {
    arrived: u64,
    released: u64,
    passed: u64,
    open: bool,
}

impl Gate {
    pub(super) fn new() -> (Gate, Arc<GateInner>) {
        let inner = Arc::new(GateInner::default());
        (
            Gate {
                inner: inner.clone(),
            },
            inner,
        )
    }

    /// Operations that have reached the gate so far (waiting or passed).
    pub fn arrived(&self) -> u64 {
        self.inner.lock().arrived
    }

    /// Operations that have gone through the gate and taken effect so far.
    pub fn passed(&self) -> u64 {
        self.inner.lock().passed
    }

    /// Waits until at least `n` operations have reached the gate; false if `timeout` passed
    /// first.
    pub fn wait_arrived(&self, n: u64, timeout: Duration) -> bool {
        self.inner.wait_for(timeout, |s| s.arrived >= n)
    }

    /// Waits until at least `n` operations have gone through the gate and taken effect;
    /// false if `timeout` passed first.
    pub fn wait_passed(&self, n: u64, timeout: Duration) -> bool {
        self.inner.wait_for(timeout, |s| s.passed >= n)
    }

    /// Lets the next `n` operations through, in the order they reached (or will reach) the
    /// gate.
    pub fn release(&self, n: u64) {
        let mut s = self.inner.lock();
        s.released += n;
        self.inner.changed.notify_all();
    }

    /// Lets every operation through, now and from now on.
    pub fn open(&self) {
        let mut s = self.inner.lock();
        s.open = true;
        self.inner.changed.notify_all();
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.open();
    }
}

impl GateInner {
    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait_for(&self, timeout: Duration, done: impl Fn(&GateState) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = self.lock();
        while !done(&s) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            s = self
                .changed
                .wait_timeout(s, left)
                .map_or_else(|e| e.into_inner().0, |(s, _)| s);
        }
        true
    }

    /// Takes a ticket and waits until it is released. The returned guard counts the
    /// operation as passed when it is dropped, whatever its outcome.
    pub(super) fn enter(self: &Arc<Self>) -> GatePass {
        let mut s = self.lock();
        let ticket = s.arrived;
        s.arrived += 1;
        self.changed.notify_all();
        while !(s.open || ticket < s.released) {
            s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        GatePass(self.clone())
    }
}

/// An operation that went through a gate; counted as passed when dropped.
pub(super) struct GatePass(Arc<GateInner>);

impl Drop for GatePass {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.passed += 1;
        self.0.changed.notify_all();
    }
}
