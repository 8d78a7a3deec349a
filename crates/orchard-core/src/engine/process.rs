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
