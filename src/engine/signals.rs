//! SIGINT, SIGTERM and SIGHUP sent to fdclose while a process is in our hands wait until it has
//! its registers back and is detached; then they take effect as usual.

use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow, Signal};

/// While alive, the calling thread holds SIGINT/SIGTERM/SIGHUP pending instead of dying of them.
/// fdclose runs the engine on its only thread, so process-directed signals wait here too.
pub struct Deferred {
    old: SigSet,
}

impl Deferred {
    pub fn new() -> Deferred {
        let mut set = SigSet::empty();
        set.add(Signal::SIGINT);
        set.add(Signal::SIGTERM);
        set.add(Signal::SIGHUP);
        let mut old = SigSet::empty();
        let _ = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old));
        Deferred { old }
    }
}

impl Drop for Deferred {
    fn drop(&mut self) {
        // Unblocking delivers whatever arrived meanwhile.
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&self.old), None);
    }
}
