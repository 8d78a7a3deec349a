//! Bindings for what the core owns about models and the engine install: which engine
//! binary to launch, the install directory, model ids and load state, load cancellation, and the one
//! cross-process lock (`flock`). Conversion only; the decisions are the core's.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use napi_derive::napi;
use orchard_core::engine::binary;
use orchard_core::lock::{FileLock, LockCancel};
use orchard_core::{paths, Error};

use crate::engine::NativeEngine;
use crate::errors::{blocking, guarded};

/// The engine install directory: `home`, else `ORCHARD_HOME`, else `~/.orchard`.
#[napi]
pub fn engine_home(home: Option<String>) -> napi::Result<String> {
    guarded(|| {
        paths::orchard_home(home.as_deref().map(Path::new))
            .map(|p| p.to_string_lossy().into_owned())
            .ok_or_else(|| {
                Error::invalid(
                    "HOME is not set; set ORCHARD_HOME to choose the engine install directory",
                )
            })
    })
}

/// The engine binary `Engine.start` would launch, or an `ENGINE_NOT_FOUND` error naming
/// every path tried.
#[napi]
pub fn find_engine_binary(binary: Option<String>, home: Option<String>) -> napi::Result<String> {
    guarded(|| {
        binary::find_binary(
            binary.as_deref().map(Path::new),
            home.as_deref().map(Path::new),
        )
        .map(|p| p.to_string_lossy().into_owned())
    })
}

/// A held lock; `release()` (or garbage collection) gives it back.
#[napi]
pub struct NativeFileLock {
    held: Mutex<Option<FileLock>>,
}

#[napi]
impl NativeFileLock {
    /// Idempotent.
    #[napi]
    pub fn release(&self) {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

/// One wait for a lock file: `acquire()` waits (off the JS thread), `cancel()` ends the
/// wait with an `ABORTED` error.
#[napi]
pub struct NativeLockRequest {
    path: PathBuf,
    cancel: Arc<LockCancel>,
}

#[napi]
impl NativeLockRequest {
    #[napi(constructor)]
    pub fn new(path: String) -> Self {
        NativeLockRequest {
            path: PathBuf::from(path),
            cancel: Arc::new(LockCancel::default()),
        }
    }

    #[napi]
    pub async fn acquire(&self, timeout_ms: u32) -> napi::Result<NativeFileLock> {
        let (path, cancel) = (self.path.clone(), self.cancel.clone());
        let timeout = Duration::from_millis(u64::from(timeout_ms));
        let lock =
            blocking(move || FileLock::acquire_cancellable(&path, timeout, Some(&cancel))).await?;
        Ok(NativeFileLock {
            held: Mutex::new(Some(lock)),
        })
    }

    #[napi]
    pub fn cancel(&self) {
        self.cancel.cancel();
    }
}

/// Where a model is on this connection (`activating`, `ready` or `failed` with the error).
#[napi(object)]
pub struct NativeModelStatus {
    pub state: String,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub canonical_id: Option<String>,
    pub model_path: Option<String>,
}

#[napi]
impl NativeEngine {
    /// Fail the activation of `id` at once and tell the engine (`cancel_model_load`). False
    /// when no activation of it was under way.
    #[napi]
    pub fn cancel_load(&self, id: String) -> napi::Result<bool> {
        Ok(self.open_session()?.cancel_load(&id))
    }

    /// The load status of `id` on this connection; null when it was never asked for.
    #[napi]
    pub fn model_status(&self, id: String) -> Option<NativeModelStatus> {
        self.session.model_status(&id).map(|s| NativeModelStatus {
            state: s.state.as_str().to_string(),
            error_code: s.error.as_ref().map(|e| e.code.as_str().to_string()),
            error_message: s.error.map(|e| e.message),
            canonical_id: s.canonical_id,
            model_path: s.model_path,
        })
    }
}
