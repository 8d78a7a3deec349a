//! `proxy_inference_engine` — the PIE emulator.
//!
//! Plays the engine's side of the PIE protocol on Linux and macOS without a GPU: it listens
//! on the three IPC sockets under the same root the clients resolve, answers management
//! commands, streams deltas from a tiny bigram language model, and publishes telemetry.
//! No arguments; configuration comes from the environment (see README.md).

mod config;
mod corpus;
mod fault;
mod house;
mod lm;
mod log;
mod management;
mod publisher;
mod registry;
mod requests;
mod sampler;
mod scheduler;
mod schema;
mod sequence;
mod signals;
mod state;
mod structured;
mod tasks;
mod telemetry;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use orchard_core::nng::{Protocol, Socket};
use orchard_core::paths::{self, Endpoints};

use crate::config::Config;
use crate::publisher::Publisher;
use crate::state::Ctx;

const PID_FILE: &str = "engine.pid";
/// Messages the PUB socket may queue per subscriber (the NNG maximum).
const PUB_SEND_BUFFER: i32 = 8192;
/// If closing down takes longer than this, leave without further ceremony.
const EXIT_WATCHDOG: Duration = Duration::from_secs(3);

fn main() {
    log::init();
    let code = run();
    std::process::exit(code);
}

fn open_socket(protocol: Protocol, url: &str) -> Result<Socket, String> {
    let s = Socket::open(protocol).map_err(|e| e.to_string())?;
    match protocol {
        Protocol::Pull | Protocol::Rep => s.set_recv_max_size(0),
        Protocol::Pub => s.set_send_buffer(PUB_SEND_BUFFER),
        _ => Ok(()),
    }
    .map_err(|e| e.to_string())?;
    s.listen(url).map_err(|e| {
        format!("cannot listen on {url}: {e} (is another engine using this IPC root?)")
    })?;
    paths::make_socket_private(url).map_err(|e| format!("cannot make {url} private: {e}"))?;
    Ok(s)
}

fn write_pid_file(cache_root: &Path, pid: u32) -> std::io::Result<PathBuf> {
    paths::write_private(cache_root, PID_FILE, format!("{pid}\n").as_bytes())?;
    Ok(cache_root.join(PID_FILE))
}

/// Remove the pid file only if it still names this process.
fn remove_pid_file(path: &Path, pid: u32) {
    let ours = std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        == Some(pid);
    if ours {
        let _ = std::fs::remove_file(path);
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<(), String> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(f)
        .map(|_| ())
        .map_err(|e| format!("cannot start thread {name}: {e}"))
}

fn run() -> i32 {
    // Read first: if the launcher dies early we are re-parented and could no longer tell.
    let launcher = state::launcher_pid();
    // Before any thread exists (ours or NNG's), so every thread inherits the mask.
    let signals = match signals::block_termination_signals() {
        Ok(s) => s,
        Err(e) => {
            warn!("cannot block termination signals: {e}");
            return 1;
        }
    };
    let (config, warnings) = Config::from_env();
    for w in warnings {
        warn!("{w}");
    }
    let cache_root = match paths::cache_root() {
        Ok(p) => p,
        Err(e) => {
            warn!("cannot resolve the cache root: {}", e.message);
            return 1;
        }
    };
    let endpoints = match Endpoints::from_env() {
        Ok(e) => e,
        Err(e) => {
            warn!("cannot resolve the IPC endpoints: {}", e.message);
            return 1;
        }
    };
    let pid = std::process::id();
    info!(
        "PIE emulator starting (pid {pid}, launched by {}); token delay {} ms, linger {}",
        launcher.map_or("init".to_string(), |p| format!("pid {p}")),
        config.token_delay.as_millis(),
        config.linger
    );

    let lm = lm::Model::builtin();
    let sockets = open_socket(Protocol::Pull, &endpoints.requests).and_then(|pull| {
        let rep = open_socket(Protocol::Rep, &endpoints.management)?;
        let publ = open_socket(Protocol::Pub, &endpoints.responses)?;
        Ok((pull, rep, publ))
    });
    let (pull, rep, publ) = match sockets {
        Ok(s) => s,
        Err(e) => {
            warn!("{e}");
            return 1;
        }
    };
    let pull = Arc::new(pull);
    let rep = Arc::new(rep);
    info!(
        "listening on {}, {}, {}",
        endpoints.requests, endpoints.responses, endpoints.management
    );
    let pid_path = match write_pid_file(&cache_root, pid) {
        Ok(p) => Some(p),
        Err(e) => {
            warn!("cannot write {}: {e}", cache_root.join(PID_FILE).display());
            None
        }
    };

    let ctx = Arc::new(Ctx::new(config, lm, Publisher::new(publ), launcher));
    let started = (|| {
        let c = ctx.clone();
        spawn("pie-housekeeping", move || house::run(&c))?;
        let c = ctx.clone();
        spawn("pie-scheduler", move || c.scheduler.run(&c))?;
        let (c, p) = (ctx.clone(), pull.clone());
        spawn("pie-requests", move || requests::serve(&p, &c))?;
        let (c, r) = (ctx.clone(), rep.clone());
        spawn("pie-management", move || management::serve(&r, &c))?;
        let c = ctx.clone();
        spawn("pie-signals", move || loop {
            match signals.wait() {
                Ok(sig) if c.exit.is_set() => {
                    warn!("{} during shutdown; exiting now", signals::name(sig));
                    // SAFETY: _exit ends the process immediately; nothing else to uphold.
                    unsafe { libc::_exit(0) };
                }
                Ok(sig) => c.exit.trigger(format!("received {}", signals::name(sig))),
                Err(e) => {
                    warn!("sigwait failed: {e}");
                    return;
                }
            }
        })
    })();
    if let Err(e) = started {
        warn!("{e}");
        ctx.exit.trigger(e);
    }

    let reason = ctx.exit.wait();
    info!("shutting down: {reason}");
    ctx.shutting_down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = spawn("pie-exit-watchdog", || {
        std::thread::sleep(EXIT_WATCHDOG);
        warn!("shutdown took longer than {EXIT_WATCHDOG:?}; exiting");
        // SAFETY: _exit ends the process immediately; nothing else to uphold.
        unsafe { libc::_exit(0) };
    });
    if let Some(p) = &pid_path {
        remove_pid_file(p, pid);
    }
    ctx.scheduler.stop();
    ctx.timers.wake();
    pull.close();
    rep.close();
    ctx.publisher.close();
    info!("bye");
    0
}
