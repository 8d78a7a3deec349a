//! SIGINT/SIGTERM/SIGHUP handling without signal handlers: the signals are blocked in every
//! thread (the mask is set before any thread exists and is inherited) and one thread
//! receives them synchronously with `sigwait`, so ordinary code runs in response.

use std::io;

pub struct SignalSet(libc::sigset_t);

// SAFETY: a sigset_t is plain data.
unsafe impl Send for SignalSet {}

/// Block the termination signals in the calling thread (call first thing in `main`).
pub fn block_termination_signals() -> io::Result<SignalSet> {
    // SAFETY: sigemptyset/sigaddset initialise the local set; pthread_sigmask only reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        let rv = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rv != 0 {
            return Err(io::Error::from_raw_os_error(rv));
        }
        Ok(SignalSet(set))
    }
}

impl SignalSet {
    /// Wait for the next blocked signal and return its number.
    pub fn wait(&self) -> io::Result<i32> {
        let mut sig: libc::c_int = 0;
        // SAFETY: the set is initialised; sig is a valid out-pointer.
        let rv = unsafe { libc::sigwait(&self.0, &mut sig) };
        if rv != 0 {
            return Err(io::Error::from_raw_os_error(rv));
        }
        Ok(sig)
    }
}

pub fn name(sig: i32) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        _ => "signal",
    }
}
