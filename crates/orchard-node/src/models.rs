//! Bindings for what the core owns about models and the engine install: which engine
//! binary to launch, the install directory and the binary in it, model load state, load
//! cancellation, and the one cross-process lock (`flock`). Conversion only; the decisions
//! are the core's (`orchard_core::api`).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use napi_derive::napi;
use orchard_core::api;
use orchard_core::lock::{FileLock, LockCancel};

use crate::engine::NativeEngine;
use crate::errors::{blocking, guarded};

/// The engine install directory: `home`, else `ORCHARD_HOME`, else `~/.orchard`.
#[napi]
pub fn engine_home(home: Option<String>) -> napi::Result<String> {
    guarded(|| api::engine_home(home.as_deref()))
}

/// The engine binary of the install in `home` (resolved as `engineHome` does), whether or
/// not it exists.
#[napi]
pub fn installed_binary(home: Option<String>) -> napi::Result<String> {
    guarded(|| api::installed_binary(home.as_deref()))
}

/// The file name of the engine binary (PIE and pie-emulator alike).
#[napi]
pub fn engine_binary_name() -> napi::Result<String> {
    guarded(|| Ok(api::ENGINE_BINARY_NAME.to_string()))
}

/// The engine binary `Engine.start` would launch, or an `ENGINE_NOT_FOUND` error naming
/// every path tried.
#[napi]
pub fn find_engine_binary(binary: Option<String>, home: Option<String>) -> napi::Result<String> {
    guarded(|| api::find_engine_binary(binary.as_deref(), home.as_deref()))
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
    pub fn release(&self) -> napi::Result<()> {
        guarded(|| {
            drop(self.held.lock().unwrap_or_else(|p| p.into_inner()).take());
            Ok(())
        })
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
    pub fn new(path: String) -> napi::Result<Self> {
        guarded(|| {
            Ok(NativeLockRequest {
                path: PathBuf::from(path),
                cancel: Arc::new(LockCancel::default()),
            })
        })
    }

    #[napi]
    pub async fn acquire(&self, timeout_ms: u32) -> napi::Result<NativeFileLock> {
        let (path, cancel) = (self.path.clone(), self.cancel.clone());
        let lock = blocking(move || api::acquire_lock(&path, timeout_ms, &cancel)).await?;
        Ok(NativeFileLock {
            held: Mutex::new(Some(lock)),
        })
    }

    #[napi]
    pub fn cancel(&self) -> napi::Result<()> {
        guarded(|| {
            self.cancel.cancel();
            Ok(())
        })
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
        let session = self.open_session()?;
        guarded(|| Ok(api::cancel_load(&session, &id)))
    }

    /// The load status of `id` on this connection; null when it was never asked for.
    #[napi]
    pub fn model_status(&self, id: String) -> napi::Result<Option<NativeModelStatus>> {
        let session = self.open_session()?;
        let status = guarded(|| Ok(api::model_status(&session, &id)))?;
        Ok(status.map(|s| NativeModelStatus {
            state: s.state,
            error_code: s.error.as_ref().map(|e| e.code.as_str().to_string()),
            error_message: s.error.map(|e| e.message),
            canonical_id: s.canonical_id,
            model_path: s.model_path,
        }))
    }
}
