//! Core errors and panics → JavaScript errors (`[ORCHARD:<CODE>] message`).

use std::panic::{catch_unwind, AssertUnwindSafe};

use napi::Status;
use orchard_core::{Error, ErrorCode};

pub fn to_napi(e: Error) -> napi::Error {
    napi::Error::new(Status::GenericFailure, e.to_js_message())
}

/// Run `f`, turning a core error or a panic into a JavaScript error.
pub fn guarded<T>(f: impl FnOnce() -> orchard_core::Result<T>) -> napi::Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(to_napi),
        Err(p) => Err(to_napi(Error::from_panic(p.as_ref()))),
    }
}

/// Run blocking core work on the blocking pool (never on the JS thread).
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> orchard_core::Result<T> + Send + 'static,
) -> napi::Result<T> {
    match tokio::task::spawn_blocking(move || guarded(f)).await {
        Ok(r) => r,
        Err(e) => Err(to_napi(Error::new(
            ErrorCode::Internal,
            format!("native task failed: {e}"),
        ))),
    }
}
