//! Finding, launching and attaching to the engine (protocol.md §7).

pub mod process;

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::io::AsRawFd;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorCode, Result};
use crate::nng::{Protocol, Socket};
use crate::paths::{self, Endpoints, Roots, ENGINE_BINARY_NAME};
use crate::wire::{self, Incoming};

use process::signal;
pub use process::{pid_alive, pid_is_engine};

pub const PID_FILE: &str = "engine.pid";
pub const LOCK_FILE: &str = "engine.lock";
pub const LOG_FILE: &str = "engine.log";

/// Where to look for the engine binary, with the reason. The first configured source wins
/// alone (an explicit option, then `ORCHARD_ENGINE_BINARY`, then `PIE_LOCAL_BUILD`): a
/// configured path that does not exist is an error, never a silent fallback.
pub fn binary_candidates(explicit: Option<&Path>) -> Vec<(PathBuf, &'static str)> {
    if let Some(p) = explicit {
        return vec![(p.to_path_buf(), "the binary option")];
    }
    if let Some(p) = std::env::var_os("ORCHARD_ENGINE_BINARY").filter(|v| !v.is_empty()) {
        return vec![(PathBuf::from(p), "ORCHARD_ENGINE_BINARY")];
    }
    if let Some(p) = std::env::var_os("PIE_LOCAL_BUILD").filter(|v| !v.is_empty()) {
        return vec![(
            PathBuf::from(p).join("bin").join(ENGINE_BINARY_NAME),
            "PIE_LOCAL_BUILD",
        )];
    }
    let mut out = Vec::new();
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        out.push((
            PathBuf::from(home)
                .join(".orchard")
                .join("bin")
                .join(ENGINE_BINARY_NAME),
            "the default install",
        ));
    }
    out
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The engine binary to launch, or an error naming every path tried and the fix.
pub fn find_binary(explicit: Option<&Path>) -> Result<PathBuf> {
    let candidates = binary_candidates(explicit);
    if let Some((p, _)) = candidates.iter().find(|(p, _)| is_executable(p)) {
        return Ok(p.clone());
    }
    let tried = candidates
        .iter()
        .map(|(p, why)| format!("  {} ({why})", p.display()))
        .collect::<Vec<_>>()
        .join("\n");
    let fix = if PIE_RUNS_HERE {
        "Install PIE with `npx orchard engine install` (or Engine.install()), or set \
         ORCHARD_ENGINE_BINARY to a proxy_inference_engine binary."
    } else {
        "PIE, the Orchard engine, runs only on macOS on Apple Silicon, so there is no engine to \
         start on this platform. For tests and demos, start pie-emulator through orchard-ts/testing: \
         startTestEngine(), or ORCHARD_ENGINE_BINARY set to emulatorPath()."
    };
    Err(Error::new(
        ErrorCode::EngineNotFound,
        format!("no engine binary found; tried:\n{tried}\n{fix}"),
    ))
}

/// PIE is built for macOS on Apple Silicon only.
const PIE_RUNS_HERE: bool = cfg!(all(target_os = "macos", target_arch = "aarch64"));

/// An exclusive `flock` on `<cache>/engine.lock`, released on drop.
pub struct EngineLock {
    file: File,
}

impl EngineLock {
    pub fn acquire(cache_root: &Path, timeout: Duration) -> Result<EngineLock> {
        let path = cache_root.join(LOCK_FILE);
        let file = paths::open_private(&path, false)
            .map_err(|e| Error::io(&format!("cannot open {}", path.display()), e))?;
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(EngineLock { file });
        }
        // Wait in the kernel's queue rather than polling (pollers starve under churn), on a
        // thread so the wait can end at the deadline. The thread's descriptor shares the
        // open file description, so its lock is ours; if we gave up first, dropping the
        // unsent or unreceived descriptor with ours releases it.
        let waiter = file
            .try_clone()
            .map_err(|e| Error::io(&format!("cannot open {}", path.display()), e))?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("orchard-lock-wait".into())
            .spawn(move || {
                // SAFETY: a blocking flock on a descriptor this thread owns.
                let got = unsafe { libc::flock(waiter.as_raw_fd(), libc::LOCK_EX) } == 0;
                let _ = tx.send((got, waiter));
            })
            .map_err(|e| Error::io("cannot start the lock wait", e))?;
        match rx.recv_timeout(timeout) {
            Ok((true, _waiter)) => Ok(EngineLock { file }),
            Ok((false, _)) => Err(Error::io(
                &format!("cannot lock {}", path.display()),
                std::io::Error::last_os_error(),
            )),
            Err(_) => Err(Error::new(
                ErrorCode::Timeout,
                format!(
                    "another process held {} for more than {timeout:?}; is an engine starting elsewhere?",
                    path.display()
                ),
            )),
        }
    }
}

impl Drop for EngineLock {
    fn drop(&mut self) {
        // SAFETY: unlocking our own descriptor.
        unsafe {
            libc::flock(self.file.as_raw_fd(), libc::LOCK_UN);
        }
    }
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
    /// A private cache root (and so IPC root) instead of the environment's.
    pub cache_root: Option<PathBuf>,
    pub startup_timeout: Duration,
    pub lock_timeout: Duration,
}

impl Default for StartOptions {
    fn default() -> Self {
        StartOptions {
            binary: None,
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
pub fn attach_or_launch(opts: &StartOptions) -> Result<(RunningEngine, EngineLock)> {
    let roots = Roots::resolve(opts.cache_root.as_deref())?;
    let endpoints = roots.endpoints()?;
    let cache_root = roots.cache.clone();
    let lock = EngineLock::acquire(&cache_root, opts.lock_timeout)?;
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
    let binary = find_binary(opts.binary.as_deref())?;
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
    let _lock = EngineLock::acquire(cache_root, lock_timeout)?;
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
    fn missing_binary_error_names_paths_and_fix() {
        let err = find_binary(Some(Path::new("/nonexistent/proxy_inference_engine"))).unwrap_err();
        assert_eq!(err.code, ErrorCode::EngineNotFound);
        assert!(err.message.contains("/nonexistent/proxy_inference_engine"));
        assert!(err.message.contains("ORCHARD_ENGINE_BINARY"));
        if !PIE_RUNS_HERE {
            assert!(err.message.contains("orchard-ts/testing"), "{err}");
        }
    }

    #[test]
    fn lock_excludes_a_second_holder_until_released() {
        let dir = std::env::temp_dir().join(format!("orchard-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = EngineLock::acquire(&dir, Duration::from_millis(100)).unwrap();
        // flock is per open file description, so a second open in this process contends.
        let err = EngineLock::acquire(&dir, Duration::from_millis(50))
            .err()
            .unwrap();
        assert_eq!(err.code, ErrorCode::Timeout);
        drop(first);
        EngineLock::acquire(&dir, Duration::from_millis(100)).unwrap();
    }
}
