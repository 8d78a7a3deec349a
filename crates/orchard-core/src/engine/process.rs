//! Process facts: is a pid alive, is it really the engine binary, signals.

use std::path::{Path, PathBuf};

use crate::paths::ENGINE_BINARY_NAME;

/// Alive = exists (kill 0 succeeds or says EPERM) and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks for existence and permission.
    let rv = unsafe { libc::kill(pid as libc::pid_t, 0) };
    let exists = rv == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    exists && !is_zombie(pid)
}

#[cfg(target_os = "linux")]
fn is_zombie(pid: u32) -> bool {
    // /proc/<pid>/stat: "pid (comm) S ..." — comm may contain spaces and parentheses, so
    // read the state after the last ')'.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .and_then(|i| s[i + 1..].trim_start().chars().next())
        })
        .is_some_and(|state| state == 'Z' || state == 'X')
}

#[cfg(target_os = "macos")]
fn is_zombie(pid: u32) -> bool {
    let mut info: libc::proc_bsdinfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::proc_bsdinfo>() as libc::c_int;
    // SAFETY: info is a valid buffer of `size` bytes.
    let n = unsafe {
        libc::proc_pidinfo(
            pid as libc::c_int,
            libc::PROC_PIDTBSDINFO,
            0,
            (&mut info as *mut libc::proc_bsdinfo).cast(),
            size,
        )
    };
    n == size && info.pbi_status == libc::SZOMB as u32
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn is_zombie(_pid: u32) -> bool {
    false
}

/// The executable of a running process, when the OS tells us.
#[cfg(target_os = "linux")]
pub fn executable_of(pid: u32) -> Option<PathBuf> {
    let p = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    // A replaced binary reads as "/path/name (deleted)".
    let s = p.to_string_lossy();
    Some(PathBuf::from(s.strip_suffix(" (deleted)").unwrap_or(&s)))
}

#[cfg(target_os = "macos")]
pub fn executable_of(pid: u32) -> Option<PathBuf> {
    let mut buf = vec![0u8; libc::PROC_PIDPATHINFO_MAXSIZE as usize];
    // SAFETY: buf has the size we pass.
    let n = unsafe {
        libc::proc_pidpath(
            pid as libc::c_int,
            buf.as_mut_ptr().cast(),
            buf.len() as u32,
        )
    };
    (n > 0).then(|| PathBuf::from(String::from_utf8_lossy(&buf[..n as usize]).into_owned()))
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
pub fn executable_of(_pid: u32) -> Option<PathBuf> {
    None
}

/// True when `pid` is alive and its executable is named `proxy_inference_engine`.
pub fn pid_is_engine(pid: u32) -> bool {
    pid_alive(pid)
        && executable_of(pid)
            .as_deref()
            .and_then(Path::file_name)
            .is_some_and(|n| n == ENGINE_BINARY_NAME)
}

pub fn signal(pid: u32, sig: libc::c_int) -> bool {
    // SAFETY: plain kill(2).
    unsafe { libc::kill(pid as libc::pid_t, sig) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_but_not_the_engine() {
        let me = std::process::id();
        assert!(pid_alive(me));
        assert!(!pid_is_engine(me));
        assert!(!pid_alive(0));
    }

    #[test]
    fn exited_child_is_not_alive_once_zombie() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while pid_alive(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(
            !pid_alive(pid),
            "an exited, unreaped child must not count as alive"
        );
        child.wait().unwrap();
    }
}

/// Something to wait on until a process exits, without polling: a pidfd on Linux, a
/// kqueue on macOS. `stop()` wakes the waiter early from another thread.
pub struct ExitWatch {
    pid: u32,
    wake_read: libc::c_int,
    wake_write: libc::c_int,
}

// SAFETY: the descriptors are plain integers used through thread-safe syscalls.
unsafe impl Send for ExitWatch {}
unsafe impl Sync for ExitWatch {}

impl ExitWatch {
    pub fn new(pid: u32) -> std::io::Result<ExitWatch> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: fds is a valid two-element array.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(ExitWatch {
            pid,
            wake_read: fds[0],
            wake_write: fds[1],
        })
    }

    /// Wake `wait` early.
    pub fn stop(&self) {
        // SAFETY: writing one byte to our own pipe.
        unsafe {
            libc::write(self.wake_write, [1u8].as_ptr().cast(), 1);
        }
    }

    /// Block until the process exits (true) or `stop` is called (false).
    pub fn wait(&self) -> bool {
        match self.wait_native() {
            Some(exited) => exited,
            None => self.wait_polling(),
        }
    }

    fn wait_polling(&self) -> bool {
        loop {
            if !pid_alive(self.pid) {
                return true;
            }
            let mut p = libc::pollfd {
                fd: self.wake_read,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            if unsafe { libc::poll(&mut p, 1, 250) } > 0 {
                return false;
            }
        }
    }

    #[cfg(target_os = "linux")]
    fn wait_native(&self) -> Option<bool> {
        // SAFETY: pidfd_open(2) with flags 0.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, self.pid as libc::pid_t, 0) };
        if fd < 0 {
            return if std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
                Some(true)
            } else {
                None
            };
        }
        let fd = fd as libc::c_int;
        let mut fds = [
            libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.wake_read,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let exited = loop {
            // SAFETY: two valid pollfds.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
            if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            if n <= 0 {
                break None;
            }
            if fds[1].revents != 0 {
                break Some(false);
            }
            // The pidfd becomes readable when the process exits. A zombie that our own
            // reaper has not collected yet also counts as gone.
            if fds[0].revents != 0 {
                break Some(true);
            }
        };
        // SAFETY: closing the pidfd we opened.
        unsafe { libc::close(fd) };
        exited
    }

    #[cfg(target_os = "macos")]
    fn wait_native(&self) -> Option<bool> {
        // SAFETY: kqueue and kevent on descriptors we own.
        unsafe {
            let kq = libc::kqueue();
            if kq < 0 {
                return None;
            }
            let changes = [
                libc::kevent {
                    ident: self.pid as libc::uintptr_t,
                    filter: libc::EVFILT_PROC,
                    flags: libc::EV_ADD | libc::EV_ONESHOT,
                    fflags: libc::NOTE_EXIT,
                    data: 0,
                    udata: std::ptr::null_mut(),
                },
                libc::kevent {
                    ident: self.wake_read as libc::uintptr_t,
                    filter: libc::EVFILT_READ,
                    flags: libc::EV_ADD,
                    fflags: 0,
                    data: 0,
                    udata: std::ptr::null_mut(),
                },
            ];
            if libc::kevent(
                kq,
                changes.as_ptr(),
                2,
                std::ptr::null_mut(),
                0,
                std::ptr::null(),
            ) < 0
            {
                let gone = std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
                libc::close(kq);
                return if gone { Some(true) } else { None };
            }
            let mut event: libc::kevent = std::mem::zeroed();
            let result = loop {
                let n = libc::kevent(kq, std::ptr::null(), 0, &mut event, 1, std::ptr::null());
                if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                if n <= 0 {
                    break None;
                }
                break Some(event.filter == libc::EVFILT_PROC);
            };
            libc::close(kq);
            result
        }
    }

    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    fn wait_native(&self) -> Option<bool> {
        None
    }
}

impl Drop for ExitWatch {
    fn drop(&mut self) {
        // SAFETY: closing the pipe we created.
        unsafe {
            libc::close(self.wake_read);
            libc::close(self.wake_write);
        }
    }
}

#[cfg(test)]
mod exit_watch_tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn wakes_when_the_process_exits() {
        let mut child = std::process::Command::new("sleep")
            .arg("0.2")
            .spawn()
            .unwrap();
        let watch = ExitWatch::new(child.id()).unwrap();
        assert!(watch.wait());
        child.wait().unwrap();
    }

    #[test]
    fn stop_wakes_the_waiter() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let watch = Arc::new(ExitWatch::new(child.id()).unwrap());
        let w = watch.clone();
        let t = std::thread::spawn(move || w.wait());
        std::thread::sleep(std::time::Duration::from_millis(50));
        watch.stop();
        assert!(!t.join().unwrap());
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
