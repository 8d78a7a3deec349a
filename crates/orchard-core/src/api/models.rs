//! What the binding asks about models and the engine install: the install directory, the
//! engine binary, a model's load state, load cancellation, and the cross-process lock.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::engine::binary;
use crate::error::{Error, Result};
use crate::lock::{FileLock, LockCancel};
use crate::paths;
use crate::session::Session;

/// The file name of the engine binary (PIE and pie-emulator alike).
pub const ENGINE_BINARY_NAME: &str = paths::ENGINE_BINARY_NAME;

fn text(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn home_dir(home: Option<&str>) -> Result<PathBuf> {
    paths::orchard_home(home.map(Path::new)).ok_or_else(|| {
        Error::invalid("HOME is not set; set ORCHARD_HOME to choose the engine install directory")
    })
}

/// The engine install directory: `home`, else `ORCHARD_HOME`, else `~/.orchard`.
pub fn engine_home(home: Option<&str>) -> Result<String> {
    home_dir(home).map(|h| text(&h))
}

/// The engine binary of the install in `home` (as [`engine_home`] resolves it),
/// `<home>/bin/proxy_inference_engine`, whether or not it exists.
pub fn installed_binary(home: Option<&str>) -> Result<String> {
    home_dir(home).map(|h| text(&binary::installed_binary(&h)))
}

/// The engine binary `Engine.start` would launch, or an `EngineNotFound` error naming every
/// path tried.
pub fn find_engine_binary(binary: Option<&str>, home: Option<&str>) -> Result<String> {
    binary::find_binary(binary.map(Path::new), home.map(Path::new)).map(|p| text(&p))
}

/// Where a model is on one connection.
pub struct ModelStatus {
    /// `activating`, `ready` or `failed`.
    pub state: String,
    /// The error of a failed load.
    pub error: Option<Error>,
    pub canonical_id: Option<String>,
    pub model_path: Option<String>,
}

/// The load status of `id` on this connection; `None` when it was never asked for.
pub fn model_status(session: &Session, id: &str) -> Option<ModelStatus> {
    session.model_status(id).map(|s| ModelStatus {
        state: s.state.as_str().to_string(),
        error: s.error,
        canonical_id: s.canonical_id,
        model_path: s.model_path,
    })
}

/// Fail the activation of `id` at once and tell the engine; false when none was under way.
pub fn cancel_load(session: &Arc<Session>, id: &str) -> bool {
    session.cancel_load(id)
}

/// Wait up to `timeout_ms` for the lock file `path` (until `cancel` ends the wait with an
/// `Aborted` error).
pub fn acquire_lock(path: &Path, timeout_ms: u32, cancel: &LockCancel) -> Result<FileLock> {
    let timeout = Duration::from_millis(u64::from(timeout_ms));
    FileLock::acquire_cancellable(path, timeout, Some(cancel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_installed_binary_lives_in_the_home_bin_directory() {
        let bin = installed_binary(Some("/opt/orchard")).unwrap();
        assert_eq!(bin, format!("/opt/orchard/bin/{ENGINE_BINARY_NAME}"));
        assert_eq!(engine_home(Some("/opt/orchard")).unwrap(), "/opt/orchard");
    }
}
