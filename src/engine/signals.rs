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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static HUPS: AtomicUsize = AtomicUsize::new(0);
    extern "C" fn on_hup(_: libc::c_int) {
        HUPS.fetch_add(1, Ordering::SeqCst);
    }

    #[test]
    fn sighup_waits_until_the_guard_goes() {
        let sa = nix::sys::signal::SigAction::new(
            nix::sys::signal::SigHandler::Handler(on_hup),
            nix::sys::signal::SaFlags::empty(),
            SigSet::empty(),
        );
        // SAFETY: the handler only touches an atomic; no other test uses SIGHUP.
        unsafe { nix::sys::signal::sigaction(Signal::SIGHUP, &sa) }.unwrap();
        let guard = Deferred::new();
        // Directed at this thread, so no other test thread can take it.
        // SAFETY: pthread_kill on our own, live thread.
        assert_eq!(
            unsafe { libc::pthread_kill(libc::pthread_self(), libc::SIGHUP) },
            0
        );
        assert_eq!(HUPS.load(Ordering::SeqCst), 0, "held while the guard lives");
        drop(guard);
        assert_eq!(HUPS.load(Ordering::SeqCst), 1, "delivered once it is gone");
    }
}
