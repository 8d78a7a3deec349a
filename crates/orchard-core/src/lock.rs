//! One cross-process lock for everything orchard serialises: the engine launch
//! (`engine.lock`), the engine install (`install.lock`) and Hub blob downloads. An exclusive
//! `flock(2)` on a private file: the kernel releases it when its holder exits (no stale
//! locks, no pid guessing) and queues waiters fairly. Python's `filelock` takes the same
//! lock, so huggingface_hub and orchard exclude each other on shared cache files.

use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Sender};
use std::sync::Mutex;
use std::time::Duration;

use crate::error::{Error, ErrorCode, Result};
use crate::paths;

/// An exclusive `flock` on one file, released on drop.
#[derive(Debug)]
pub struct FileLock {
    file: File,
    path: PathBuf,
}

enum Wake {
    Locked(std::io::Result<File>),
    Cancelled,
}

/// Ends a [`FileLock::acquire_cancellable`] wait early (from another thread).
#[derive(Default)]
pub struct LockCancel {
    state: Mutex<(bool, Option<Sender<Wake>>)>,
}

impl LockCancel {
    pub fn cancel(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.0 = true;
        if let Some(tx) = s.1.take() {
            let _ = tx.send(Wake::Cancelled);
        }
    }
}

fn flock(file: &File, how: libc::c_int) -> bool {
    // SAFETY: flock on a descriptor the caller owns.
    unsafe { libc::flock(file.as_raw_fd(), how) == 0 }
}

impl FileLock {
    /// Take `path` (created 0600 when missing), waiting up to `timeout` for its holder.
    pub fn acquire(path: &Path, timeout: Duration) -> Result<FileLock> {
        FileLock::acquire_cancellable(path, timeout, None)
    }

    /// [`FileLock::acquire`] that `cancel` can end with an `Aborted` error.
    pub fn acquire_cancellable(
        path: &Path,
        timeout: Duration,
        cancel: Option<&LockCancel>,
    ) -> Result<FileLock> {
        let file = paths::open_private(path, false)
            .map_err(|e| Error::io(&format!("cannot open {}", path.display()), e))?;
        let path = path.to_path_buf();
        if flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
            return Ok(FileLock { file, path });
        }
        // Wait in the kernel's queue rather than polling (pollers starve under churn), on a
        // thread so the wait can end at the deadline or on cancel. The thread's descriptor
        // shares the open file description, so its lock is ours; if we gave up first,
        // dropping the unreceived descriptor with ours releases it.
        let waiter = file
            .try_clone()
            .map_err(|e| Error::io(&format!("cannot open {}", path.display()), e))?;
        let (tx, rx) = channel();
        if let Some(c) = cancel {
            let mut s = c.state.lock().unwrap_or_else(|p| p.into_inner());
            if s.0 {
                return Err(aborted(&path));
            }
            s.1 = Some(tx.clone());
        }
        std::thread::Builder::new()
            .name("orchard-lock-wait".into())
            .spawn(move || {
                let got = if flock(&waiter, libc::LOCK_EX) {
                    Ok(waiter)
                } else {
                    Err(std::io::Error::last_os_error())
                };
                let _ = tx.send(Wake::Locked(got));
            })
            .map_err(|e| Error::io("cannot start the lock wait", e))?;
        match rx.recv_timeout(timeout) {
            Ok(Wake::Locked(Ok(_waiter))) => Ok(FileLock { file, path }),
            Ok(Wake::Locked(Err(e))) => {
                Err(Error::io(&format!("cannot lock {}", path.display()), e))
            }
            Ok(Wake::Cancelled) => Err(aborted(&path)),
            Err(_) => Err(Error::new(
                ErrorCode::Timeout,
                format!(
                    "another process held {} for more than {timeout:?}",
                    path.display()
                ),
            )),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn aborted(path: &Path) -> Error {
    Error::new(
        ErrorCode::Aborted,
        format!("aborted while waiting for the lock {}", path.display()),
    )
}

impl Drop for FileLock {
    fn drop(&mut self) {
        flock(&self.file, libc::LOCK_UN);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("orchard-flock-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("x.lock")
    }

    #[test]
    fn excludes_a_second_holder_until_released() {
        let p = temp("excl");
        let first = FileLock::acquire(&p, Duration::from_millis(100)).unwrap();
        // flock is per open file description, so a second open in this process contends.
        let err = FileLock::acquire(&p, Duration::from_millis(50)).unwrap_err();
        assert_eq!(err.code, ErrorCode::Timeout);
        drop(first);
        FileLock::acquire(&p, Duration::from_millis(100)).unwrap();
    }

    #[test]
    fn a_waiter_gets_the_lock_when_the_holder_releases_it() {
        let p = temp("handoff");
        let first = FileLock::acquire(&p, Duration::from_millis(100)).unwrap();
        let q = p.clone();
        let waiter = std::thread::spawn(move || FileLock::acquire(&q, Duration::from_secs(10)));
        assert!(!waiter.is_finished());
        drop(first);
        waiter.join().unwrap().unwrap();
    }

    #[test]
    fn cancel_ends_the_wait() {
        let p = temp("cancel");
        let _held = FileLock::acquire(&p, Duration::from_millis(100)).unwrap();
        let cancel = Arc::new(LockCancel::default());
        let (q, c) = (p.clone(), cancel.clone());
        let waiter = std::thread::spawn(move || {
            FileLock::acquire_cancellable(&q, Duration::from_secs(60), Some(&c))
        });
        cancel.cancel();
        assert_eq!(waiter.join().unwrap().unwrap_err().code, ErrorCode::Aborted);
        // Cancelled before it starts: refused at once.
        let err = FileLock::acquire_cancellable(&p, Duration::from_secs(60), Some(&cancel));
        assert_eq!(err.unwrap_err().code, ErrorCode::Aborted);
    }
}
