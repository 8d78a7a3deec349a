//! napi-rs binding of orchard-core. It only marshals: each export converts its arguments,
//! calls `orchard_core::api` and converts the result. Checks, defaults and result shapes
//! live in the core. No Rust panic crosses into Node: every export runs inside
//! `catch_unwind` (see `errors`).

#![deny(clippy::all)]

mod alloc;
pub mod chat;
pub mod codec;
pub mod embed;
pub mod engine;
mod errors;
pub mod models;
pub mod tasks;
mod wakeup;

use std::panic::catch_unwind;
use std::sync::atomic::{AtomicUsize, Ordering};

use napi::Env;
use napi_derive::napi;

/// Node environments (the main thread and workers) that loaded the addon and are alive.
static LIVE_ENVS: AtomicUsize = AtomicUsize::new(0);

/// Register this environment's cleanup. When the last environment that loaded the addon
/// goes away (process exit), deregister from the engine, close the sockets and end the SUB
/// receive. Called once per environment by the TypeScript layer when it loads.
#[napi]
pub fn install_exit_hook(env: Env) -> napi::Result<()> {
    LIVE_ENVS.fetch_add(1, Ordering::SeqCst);
    env.add_env_cleanup_hook((), |_| {
        if LIVE_ENVS.fetch_sub(1, Ordering::SeqCst) == 1 {
            let _ = catch_unwind(orchard_core::session::shutdown_for_exit);
        }
    })
    .map(|_| ())
}
