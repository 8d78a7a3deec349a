//! How a chat stream's `next()` promise learns that deltas arrived.
//!
//! `next()` takes what is queued at once and settles its promise before returning. Only when
//! nothing is queued does it park the promise here. The thread that queues a delta then
//! marks the stream ready and, when it is the first ready stream, calls the engine's one
//! threadsafe function; on the JavaScript thread that call settles every ready stream's promise
//! with the batch queued by then. Streams that become ready together cost one wake-up of the
//! JavaScript thread, and no `next()` creates a threadsafe function of its own (napi-rs's
//! deferred promises do, per promise).
//!
//! The threadsafe function is referenced (keeps Node running) only while a promise is parked.

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::null_mut;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Poll, Wake, Waker};

use napi::bindgen_prelude::{FromNapiValue, Object};
use napi::{sys, Env, JsError, Status};
use orchard_core::delta_view::EMPTY_BATCH_JSON;
use orchard_core::transport::{Batch, RequestSlot};

/// A drained batch as `next()` resolves it: JSON text, null at the end, or an error.
pub type Convert = dyn Fn(Batch) -> napi::Result<Option<String>> + Send + Sync;

struct Ready {
    streams: Vec<Arc<Parked>>,
    /// The threadsafe function was finalised (the environment is going away): never call it.
    closed: bool,
}

struct Shared {
    /// The `napi_threadsafe_function` (set once, right after it is created).
    tsfn: AtomicPtr<sys::napi_threadsafe_function__>,
    ready: Mutex<Ready>,
    /// Promises parked and not yet settled (read and written on the JavaScript thread).
    parked: AtomicUsize,
}

impl Shared {
    fn tsfn(&self) -> sys::napi_threadsafe_function {
        self.tsfn.load(Ordering::Acquire)
    }

    fn ready(&self) -> std::sync::MutexGuard<'_, Ready> {
        self.ready.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One engine's wake-up channel (made on its streams' first `next()`).
pub struct Wakeup(Arc<Shared>);

impl Drop for Wakeup {
    fn drop(&mut self) {
        let ready = self.0.ready();
        if !ready.closed {
            // SAFETY: not finalised (checked under the lock the finaliser takes).
            unsafe {
                sys::napi_release_threadsafe_function(
                    self.0.tsfn(),
                    sys::ThreadsafeFunctionReleaseMode::release,
                )
            };
        }
    }
}

/// Shared by an engine and its streams; the channel itself is made on first use.
pub type WakeupCell = Arc<OnceLock<Arc<Wakeup>>>;

fn check(status: sys::napi_status, what: &str) -> napi::Result<()> {
    if status == sys::Status::napi_ok {
        Ok(())
    } else {
        Err(napi::Error::new(
            Status::GenericFailure,
            format!("{what} failed ({status})"),
        ))
    }
}

impl Wakeup {
    fn create(env: &Env) -> napi::Result<Arc<Wakeup>> {
        let shared = Arc::new(Shared {
            tsfn: AtomicPtr::new(null_mut()),
            ready: Mutex::new(Ready {
                streams: Vec::new(),
                closed: false,
            }),
            parked: AtomicUsize::new(0),
        });
        let mut name = null_mut();
        // SAFETY: called on the JavaScript thread with its env.
        check(
            unsafe {
                sys::napi_create_string_utf8(env.raw(), c"orchard:next".as_ptr(), 12, &mut name)
            },
            "napi_create_string_utf8",
        )?;
        let context = Arc::into_raw(shared.clone()) as *mut c_void;
        let mut tsfn = null_mut();
        // SAFETY: JavaScript thread; `context` is an Arc that the finaliser takes back (or we
        // do, when creation fails).
        unsafe {
            let created = sys::napi_create_threadsafe_function(
                env.raw(),
                null_mut(),
                null_mut(),
                name,
                0,
                1,
                null_mut(),
                Some(finalize),
                context,
                Some(deliver),
                &mut tsfn,
            );
            if created != sys::Status::napi_ok {
                drop(Arc::from_raw(context as *const Shared));
                return Err(napi::Error::new(
                    Status::GenericFailure,
                    format!("napi_create_threadsafe_function failed ({created})"),
                ));
            }
            let unref = sys::napi_unref_threadsafe_function(env.raw(), tsfn);
            if unref != sys::Status::napi_ok {
                // Referenced, it would keep Node running for good: give it up.
                sys::napi_release_threadsafe_function(
                    tsfn,
                    sys::ThreadsafeFunctionReleaseMode::release,
                );
                return Err(napi::Error::new(
                    Status::GenericFailure,
                    format!("napi_unref_threadsafe_function failed ({unref})"),
                ));
            }
        }
        // Nothing calls the function before this returns (no stream is parked yet).
        shared.tsfn.store(tsfn, Ordering::Release);
        Ok(Arc::new(Wakeup(shared)))
    }

    /// The engine's channel, made on first use (on the JavaScript thread of the engine's
    /// environment: a `NativeEngine` and its streams never leave it).
    pub fn of(cell: &WakeupCell, env: &Env) -> napi::Result<Arc<Wakeup>> {
        if let Some(w) = cell.get() {
            return Ok(w.clone());
        }
        let made = Wakeup::create(env)?;
        Ok(cell.get_or_init(|| made).clone())
    }

    /// A promise for the next batch of `slot`: settled now when something is queued (or the
    /// request ended), else once the slot wakes it.
    pub fn next<'env>(
        self: &Arc<Self>,
        env: &'env Env,
        slot: &Arc<RequestSlot>,
        convert: Arc<Convert>,
    ) -> napi::Result<Object<'env>> {
        let mut deferred = null_mut();
        let mut promise = null_mut();
        // SAFETY: JavaScript thread, valid env and out-pointers.
        check(
            unsafe { sys::napi_create_promise(env.raw(), &mut deferred, &mut promise) },
            "napi_create_promise",
        )?;
        let parked = Arc::new(Parked {
            wakeup: self.clone(),
            slot: slot.clone(),
            convert,
            deferred: Mutex::new(Some(Deferred(deferred))),
        });
        match slot.poll_batch(&Waker::from(parked.clone())) {
            // Handed over without keeping the waker: settle before returning.
            Poll::Ready(batch) => parked.settle(env.raw(), Some(batch)),
            Poll::Pending => {
                if self.0.parked.fetch_add(1, Ordering::Relaxed) == 0 {
                    // SAFETY: JavaScript thread; the function is alive (we hold it).
                    unsafe { sys::napi_ref_threadsafe_function(env.raw(), self.0.tsfn()) };
                }
            }
        }
        // SAFETY: `promise` is a live value of this env.
        unsafe { Object::from_napi_value(env.raw(), promise) }
    }
}

/// A `napi_deferred`: only ever used on the JavaScript thread.
struct Deferred(sys::napi_deferred);
// SAFETY: moved between threads inside `Parked`, dereferenced only on the JavaScript thread.
unsafe impl Send for Deferred {}

/// A promise waiting for its stream.
struct Parked {
    wakeup: Arc<Wakeup>,
    slot: Arc<RequestSlot>,
    convert: Arc<Convert>,
    deferred: Mutex<Option<Deferred>>,
}

impl Parked {
    /// Settle the promise with `batch`, or with what the slot holds now (JavaScript thread
    /// only). A slot drained meanwhile by another call gives an empty batch: ask again.
    fn settle(&self, env: sys::napi_env, batch: Option<Batch>) {
        let Some(Deferred(deferred)) = self
            .deferred
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            return;
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            match batch.map_or_else(|| self.slot.try_batch(), Poll::Ready) {
                Poll::Ready(batch) => (self.convert)(batch),
                Poll::Pending => Ok(Some(EMPTY_BATCH_JSON.to_string())),
            }
        }))
        .unwrap_or_else(|p| {
            Err(crate::errors::to_napi(orchard_core::Error::from_panic(
                p.as_ref(),
            )))
        });
        // SAFETY: JavaScript thread; each deferred is settled once (taken above).
        unsafe {
            let mut value = null_mut();
            match outcome {
                Ok(Some(text)) => {
                    sys::napi_create_string_utf8(
                        env,
                        text.as_ptr().cast(),
                        text.len() as isize,
                        &mut value,
                    );
                    sys::napi_resolve_deferred(env, deferred, value);
                }
                Ok(None) => {
                    sys::napi_get_null(env, &mut value);
                    sys::napi_resolve_deferred(env, deferred, value);
                }
                Err(e) => {
                    let error = JsError::from(e).into_value(env);
                    sys::napi_reject_deferred(env, deferred, error);
                }
            }
        }
    }
}

impl Wake for Parked {
    fn wake(self: Arc<Self>) {
        let shared = self.wakeup.0.clone();
        // Dropped after the lock is released: one of them may hold the last `Wakeup`, whose
        // drop takes the lock.
        let abandoned;
        {
            let mut ready = shared.ready();
            if ready.closed {
                drop(ready);
                return;
            }
            ready.streams.push(self);
            if ready.streams.len() > 1 {
                return;
            }
            // SAFETY: not finalised (checked under the lock); non-blocking never waits.
            let status = unsafe {
                sys::napi_call_threadsafe_function(
                    shared.tsfn(),
                    null_mut(),
                    sys::ThreadsafeFunctionCallMode::nonblocking,
                )
            };
            if status == sys::Status::napi_ok {
                return;
            }
            // Closing: the environment is going away and nobody awaits these promises.
            abandoned = std::mem::take(&mut ready.streams);
        }
        drop(abandoned);
    }
}

/// The threadsafe function's call, on the JavaScript thread: settle every ready stream.
unsafe extern "C" fn deliver(
    env: sys::napi_env,
    _js_callback: sys::napi_value,
    context: *mut c_void,
    _data: *mut c_void,
) {
    if env.is_null() || context.is_null() {
        return;
    }
    // SAFETY: `context` is the Arc given at creation, released only by `finalize`.
    let shared = unsafe { &*(context as *const Shared) };
    let streams = std::mem::take(&mut shared.ready().streams);
    let settled = streams.len();
    if shared.parked.fetch_sub(settled, Ordering::Relaxed) == settled {
        // Nothing left parked: Node may exit once these are settled.
        // SAFETY: JavaScript thread; not finalised while it is calling us.
        unsafe { sys::napi_unref_threadsafe_function(env, shared.tsfn()) };
    }
    for parked in streams {
        // `settle` catches a panic of its own conversion; this guards the rest of the loop.
        let _ = catch_unwind(AssertUnwindSafe(|| parked.settle(env, None)));
    }
}

/// The threadsafe function is gone (released, or its environment torn down).
unsafe extern "C" fn finalize(_env: sys::napi_env, _data: *mut c_void, context: *mut c_void) {
    // SAFETY: the Arc given at creation, taken back once.
    let shared = unsafe { Arc::from_raw(context as *const Shared) };
    let streams = {
        let mut ready = shared.ready();
        ready.closed = true;
        std::mem::take(&mut ready.streams)
    };
    // Dropped outside the lock: a parked stream may hold the last `Wakeup`, whose drop
    // takes the lock.
    drop(streams);
}
