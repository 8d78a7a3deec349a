//! `NativeEngine` (a lease on the engine) and the engine-process calls.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use napi::bindgen_prelude::BigInt;
use napi_derive::napi;
use orchard_core::api;
use orchard_core::models::LoadRequest;
use orchard_core::session::Session;
use orchard_core::Error;

use crate::errors::{blocking, guarded, to_napi};
use crate::wakeup::WakeupCell;

#[napi(object)]
pub struct NativeStartOptions {
    pub binary: Option<String>,
    pub home: Option<String>,
    pub cache_root: Option<String>,
    pub startup_timeout_ms: Option<u32>,
    pub lock_timeout_ms: Option<u32>,
    pub model_specs_dir: String,
}

#[napi(object)]
pub struct NativeModelInfo {
    pub requested_id: String,
    pub canonical_id: String,
    pub model_path: String,
    pub family: String,
}

/// A lease on the engine. Several in one process share one connection.
#[napi]
pub struct NativeEngine {
    pub(crate) session: Arc<Session>,
    closed: AtomicBool,
    /// How this engine's chat streams' `next()` calls are woken (see `wakeup.rs`).
    pub(crate) wakeup: WakeupCell,
}

#[napi]
impl NativeEngine {
    #[napi(factory)]
    pub async fn start(options: NativeStartOptions) -> napi::Result<NativeEngine> {
        let o = options;
        let session = blocking(move || {
            api::start(
                o.binary,
                o.home,
                o.cache_root,
                o.startup_timeout_ms,
                o.lock_timeout_ms,
                &o.model_specs_dir,
            )
        })
        .await?;
        Ok(NativeEngine {
            session,
            closed: AtomicBool::new(false),
            wakeup: WakeupCell::default(),
        })
    }

    #[napi(getter)]
    pub fn pid(&self) -> u32 {
        self.session.engine.pid
    }

    #[napi(getter)]
    pub fn launched(&self) -> bool {
        self.session.engine.launched
    }

    #[napi(getter)]
    pub fn cache_root(&self) -> String {
        self.session
            .engine
            .cache_root
            .to_string_lossy()
            .into_owned()
    }

    #[napi(getter)]
    pub fn channel_id(&self) -> BigInt {
        BigInt::from(self.session.transport.channel_id())
    }

    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Release this lease. Idempotent; never stops the engine.
    #[napi]
    pub async fn close(&self) -> napi::Result<()> {
        if self.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let session = self.session.clone();
        blocking(move || {
            session.release();
            Ok(())
        })
        .await
    }

    /// The session, unless this lease was closed.
    pub(crate) fn open_session(&self) -> napi::Result<Arc<Session>> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(to_napi(Error::engine_closed()));
        }
        Ok(self.session.clone())
    }

    #[napi]
    pub async fn load_model(
        &self,
        id: String,
        timeout_ms: Option<u32>,
        model_path: Option<String>,
        canonical_id: Option<String>,
    ) -> napi::Result<NativeModelInfo> {
        let session = self.open_session()?;
        let request = LoadRequest {
            requested_id: id,
            model_path: model_path.map(PathBuf::from),
            canonical_id,
        };
        let m = blocking(move || api::load_model(&session, &request, timeout_ms)).await?;
        Ok(NativeModelInfo {
            requested_id: m.requested_id,
            canonical_id: m.canonical_id,
            model_path: m.model_path,
            family: m.family,
        })
    }

    /// Send one management command (a JSON object with a `type`) and return the engine's
    /// reply as JSON text. Low level: the typed methods cover the protocol's commands.
    #[napi]
    pub async fn management_command(
        &self,
        command_json: String,
        timeout_ms: Option<u32>,
    ) -> napi::Result<String> {
        let session = self.open_session()?;
        blocking(move || api::management_command(&session, &command_json, timeout_ms)).await
    }
}

/// The current cache root and the engine running for it, if any.
#[napi(object)]
pub struct NativeEngineStatus {
    pub cache_root: String,
    /// The pid in `engine.pid` when that process is alive and really the engine binary.
    pub pid: Option<u32>,
}

/// Which engine runs for a cache root (default: the environment's; the attach rules,
/// without attaching).
#[napi]
pub fn engine_status(cache_root: Option<String>) -> napi::Result<NativeEngineStatus> {
    let s = guarded(|| api::engine_status(cache_root.as_deref()))?;
    Ok(NativeEngineStatus {
        cache_root: s.cache_root,
        pid: s.pid,
    })
}

/// Stop the engine of a cache root (default: the environment's; SIGINT, SIGTERM, SIGKILL
/// with identity checks).
#[napi]
pub async fn stop_engine(
    grace_ms: Option<u32>,
    cache_root: Option<String>,
) -> napi::Result<Option<u32>> {
    blocking(move || api::stop_engine(grace_ms, cache_root.as_deref())).await
}
