//! Finding, launching and attaching to the engine (protocol.md §7).

pub mod binary;
pub mod process;

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorCode, Result};
use crate::lock::FileLock;
use crate::nng::{Protocol, Socket};
use crate::paths::{self, Endpoints, Roots};
use crate::wire::{self, Incoming};

pub use binary::{binary_candidates, find_binary};
use process::signal;
pub use process::{pid_alive, pid_is_engine};

pub const PID_FILE: &str = "engine.pid";
pub const LOCK_FILE: &str = "engine.lock";
pub const LOG_FILE: &str = "engine.log";

/// The exclusive lock on `<cache>/engine.lock` that serialises attach, launch and stop.
pub fn lock_engine(cache_root: &Path, timeout: Duration) -> Result<FileLock> {
    FileLock::acquire(&cache_root.join(LOCK_FILE), timeout).map_err(|e| {
        if e.code == ErrorCode::Timeout {
            Error::new(
                ErrorCode::Timeout,
                format!("{}; is an engine starting elsewhere?", e.message),
            )
        } else {
            e
        }
    })
}

pub fn read_pid_file(cache_root: &Path) -> Option<u32> {
    std::fs::read_to_string(cache_root.join(PID_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()
}

pub fn write_pid_file(cache_root: &Path, pid: u32) -> Result<()> {
    paths::write_private(cache_root, PID_FILE, format!("{pid}\n").as_bytes()).map_err(|e| {
        Error::io(
            &format!("cannot write {}", cache_root.join(PID_FILE).display()),
            e,
        )
    })
}

pub fn remove_pid_file(cache_root: &Path) {
    let _ = std::fs::remove_file(cache_root.join(PID_FILE));
    let _ = std::fs::remove_file(cache_root.join("engine.ready"));
}

fn log_tail(cache_root: &Path) -> String {
    let text = std::fs::read_to_string(cache_root.join(LOG_FILE)).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(10)..].join("\n");
    if tail.is_empty() {
        String::new()
    } else {
        format!("\nlast lines of engine.log:\n{tail}")
    }
}

/// Launch `binary` detached (own session), output to `<cache>/engine.log`, no arguments.
/// A thread reaps it when it exits, so it never lingers as a zombie.
pub fn launch(binary: &Path, roots: &Roots) -> Result<u32> {
    let log_path = roots.cache.join(LOG_FILE);
    let log = paths::open_private(&log_path, true)
        .map_err(|e| Error::io(&format!("cannot create {}", log_path.display()), e))?;
    let log_err = log
        .try_clone()
        .map_err(|e| Error::io("cannot duplicate the engine log handle", e))?;
    let mut cmd = Command::new(binary);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        .env("ORCHARD_CACHE_ROOT", &roots.cache)
        .env("ORCHARD_IPC_ROOT", &roots.ipc);
    // SAFETY: setsid is async-signal-safe and touches only the child.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| {
        Error::new(
            ErrorCode::EngineStartup,
            format!("cannot launch {}: {e}", binary.display()),
        )
    })?;
    let pid = child.id();
    let _ = std::thread::Builder::new()
        .name("orchard-engine-reaper".into())
        .spawn(move || {
            let _ = child.wait();
        });
    Ok(pid)
}

/// Wait for a telemetry heartbeat whose `health.pid` is `pid`.
pub fn wait_ready(
    endpoints: &Endpoints,
    pid: u32,
    timeout: Duration,
    cache_root: &Path,
) -> Result<()> {
    let sub = Socket::open(Protocol::Sub)?;
    sub.subscribe(b"__PIE_EVENT__:telemetry")?;
    sub.set_reconnect_times(Duration::from_millis(10), Duration::from_millis(100))?;
    sub.set_recv_timeout(Some(Duration::from_millis(250)))?;
    sub.dial(&endpoints.responses, false)?;
    let deadline = Instant::now() + timeout;
    loop {
        match sub.recv() {
            Ok(msg) => {
                if let Ok(Incoming::Event(ev)) = wire::decode_message(&msg) {
                    if ev.telemetry_pid() == Some(pid) {
                        return Ok(());
                    }
                }
            }
            Err(e) if e.is_timeout() => {}
            Err(e) => return Err(e.into()),
        }
        if !pid_alive(pid) {
            return Err(Error::new(
                ErrorCode::EngineStartup,
                format!(
                    "the engine (pid {pid}) exited before it became ready{}",
                    log_tail(cache_root)
                ),
            ));
        }
        if Instant::now() >= deadline {
            return Err(Error::new(
                ErrorCode::EngineStartup,
                format!(
                    "the engine (pid {pid}) sent no heartbeat within {timeout:?}{}",
                    log_tail(cache_root)
                ),
            ));
        }
    }
}

#[derive(Clone, Debug)]
pub struct StartOptions {
    pub binary: Option<PathBuf>,
    /// The engine install directory to look in (see [`binary::binary_candidates`]).
    pub home: Option<PathBuf>,
    /// A private cache root (and so IPC root) instead of the environment's.
    pub cache_root: Option<PathBuf>,
    pub startup_timeout: Duration,
    pub lock_timeout: Duration,
}

impl Default for StartOptions {
    fn default() -> Self {
        StartOptions {
            binary: None,
            home: None,
            cache_root: None,
            startup_timeout: Duration::from_secs(60),
            lock_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Clone, Debug)]
pub struct RunningEngine {
    pub pid: u32,
    pub launched: bool,
    pub cache_root: PathBuf,
    pub endpoints: Endpoints,
}

/// Attach to the engine named by `engine.pid` if it is alive and really the engine binary;
/// otherwise launch one and wait for its heartbeat. Returns with `engine.lock` still held:
/// the caller connects and registers under it, so no other process can replace the engine
/// between this check and the registration (the sockets' paths outlive any one engine).
pub fn attach_or_launch(opts: &StartOptions) -> Result<(RunningEngine, FileLock)> {
    let roots = Roots::resolve(opts.cache_root.as_deref())?;
    let endpoints = roots.endpoints()?;
    let cache_root = roots.cache.clone();
    let lock = lock_engine(&cache_root, opts.lock_timeout)?;
    if let Some(pid) = read_pid_file(&cache_root).filter(|p| pid_is_engine(*p)) {
        let engine = RunningEngine {
            pid,
            launched: false,
            cache_root,
            endpoints,
        };
        return Ok((engine, lock));
    }
    remove_pid_file(&cache_root);
    let binary = find_binary(opts.binary.as_deref(), opts.home.as_deref())?;
    let pid = launch(&binary, &roots)?;
    if let Err(e) = wait_ready(&endpoints, pid, opts.startup_timeout, &cache_root) {
        stop_pid(pid, Duration::from_secs(2));
        return Err(e);
    }
    write_pid_file(&cache_root, pid)?;
    let engine = RunningEngine {
        pid,
        launched: true,
        cache_root,
        endpoints,
    };
    Ok((engine, lock))
}

/// SIGINT, then SIGTERM, then SIGKILL, each after `grace` and only while `pid` is still the
/// engine binary. Returns true when the process is gone.
pub fn stop_pid(pid: u32, grace: Duration) -> bool {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGKILL] {
        if !pid_is_engine(pid) {
            return !pid_alive(pid);
        }
        signal(pid, sig);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !pid_alive(pid) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    !pid_alive(pid)
}

/// Stop the engine named by `engine.pid` (administrative; ignores other clients' leases).
/// Returns the pid that was stopped, if any.
pub fn stop_engine(
    grace: Duration,
    lock_timeout: Duration,
    cache_root: &Path,
) -> Result<Option<u32>> {
    let _lock = lock_engine(cache_root, lock_timeout)?;
    let Some(pid) = read_pid_file(cache_root) else {
        return Ok(None);
    };
    if !pid_is_engine(pid) {
        remove_pid_file(cache_root);
        return Ok(None);
    }
    if !stop_pid(pid, grace) {
        return Err(Error::new(
            ErrorCode::Engine,
            format!("the engine (pid {pid}) survived SIGINT, SIGTERM and SIGKILL"),
        ));
    }
    remove_pid_file(cache_root);
    let mut f = OpenOptions::new()
        .append(true)
        .open(cache_root.join(LOG_FILE))
        .ok();
    if let Some(f) = f.as_mut() {
        let _ = writeln!(f, "[orchard] engine {pid} stopped by Engine.stop()");
    }
    Ok(Some(pid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_lock_times_out_naming_the_likely_cause() {
        let dir = std::env::temp_dir().join(format!("orchard-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = lock_engine(&dir, Duration::from_millis(100)).unwrap();
        let err = lock_engine(&dir, Duration::from_millis(50)).unwrap_err();
        assert_eq!(err.code, ErrorCode::Timeout);
        assert!(err.message.contains("engine.lock"), "{err}");
        assert!(err.message.contains("starting elsewhere"), "{err}");
        drop(first);
        lock_engine(&dir, Duration::from_millis(100)).unwrap();
    }
}
