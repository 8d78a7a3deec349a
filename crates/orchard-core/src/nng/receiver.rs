//! Receiving with NNG's asynchronous I/O: the handler runs on the NNG thread that completed
//! the receive, so a message reaches its consumer without waking a thread of our own.
//!
//! One receive is outstanding at a time, so the handler sees messages one by one, in order.
//! While it runs, further messages wait (for SUB, the pipe pauses reading: SUB completes a
//! waiting receive before it reads the pipe again): the handler must be quick, must never
//! block, and must not close its socket or drop its receiver.

use std::cell::Cell;
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::{null_mut, NonNull};
use std::sync::Mutex;

use nng_sys as sys;

use super::{Message, NngError, NngResult, Socket};

type OnMessage = Box<dyn Fn(Message) + Send + Sync>;
type OnEnd = Box<dyn FnOnce(NngError) + Send>;

struct Shared {
    aio: *mut sys::nng_aio,
    socket: sys::nng_socket,
    on_message: OnMessage,
    on_end: Mutex<Option<OnEnd>>,
}

thread_local! {
    /// Set while this thread runs a receiver's handler (stopping from there would deadlock).
    static IN_HANDLER: Cell<bool> = const { Cell::new(false) };
}

/// A socket receiving continuously until it closes.
pub struct Receiver {
    shared: NonNull<Shared>,
}

// SAFETY: `Shared` is only read after construction (the aio pointer is set before the first
// receive is posted); its handlers are `Send + Sync`, `on_end` is behind a mutex, and NNG's aio
// calls are thread-safe.
unsafe impl Send for Receiver {}
unsafe impl Sync for Receiver {}

impl Receiver {
    /// Start receiving on `socket`: `on_message` for every message, then `on_end` once, with
    /// the error that stopped receiving (closed when the socket closes). Both run on NNG's
    /// threads; a panic in either is contained (the message is dropped, receiving goes on).
    pub fn start(
        socket: &Socket,
        on_message: impl Fn(Message) + Send + Sync + 'static,
        on_end: impl FnOnce(NngError) + Send + 'static,
    ) -> NngResult<Receiver> {
        let shared = Box::into_raw(Box::new(Shared {
            aio: null_mut(),
            socket: socket.raw,
            on_message: Box::new(on_message),
            on_end: Mutex::new(Some(Box::new(on_end))),
        }));
        let mut aio: *mut sys::nng_aio = null_mut();
        // SAFETY: `shared` stays allocated until `Drop`, which first stops the aio, so the
        // callback never sees it freed.
        let rv = unsafe { sys::nng_aio_alloc(&mut aio, Some(completed), shared.cast()) };
        if rv != 0 {
            // SAFETY: never shared with NNG.
            drop(unsafe { Box::from_raw(shared) });
            return Err(NngError {
                op: "nng_aio_alloc",
                errno: rv,
            });
        }
        // SAFETY: no receive has been posted yet, so nothing else reads `shared`.
        unsafe {
            (*shared).aio = aio;
            sys::nng_recv_aio((*shared).socket, aio);
        }
        Ok(Receiver {
            // SAFETY: Box::into_raw never returns null.
            shared: unsafe { NonNull::new_unchecked(shared) },
        })
    }

    /// Stop receiving: wait for a running handler to return, then call `on_end` (with a
    /// closed error) unless a failed receive already did. Close the socket first; never from
    /// inside a handler (there it only returns: NNG would wait for the very callback).
    pub fn stop(&self) {
        if IN_HANDLER.with(Cell::get) {
            return;
        }
        // SAFETY: the aio is valid until Drop.
        let shared = unsafe { self.shared.as_ref() };
        // SAFETY: as above; returns once no callback runs and none will.
        unsafe { sys::nng_aio_stop(shared.aio) };
        // A receive re-posted by a handler after the close but before the stop never
        // completes, so its end would never be reported: report it here.
        shared.end(NngError {
            op: "nng_recv_aio",
            errno: sys::NNG_ECLOSED as i32,
        });
    }
}

impl Shared {
    fn end(&self, error: NngError) {
        let end = self.on_end.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(end) = end {
            let _ = catch_unwind(AssertUnwindSafe(|| end(error)));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if IN_HANDLER.with(Cell::get) {
            // Freeing an aio from its own callback would wait for that callback forever.
            // Nothing a handler drops owns a receiver; should that change, leak it rather
            // than hang.
            return;
        }
        self.stop();
        // SAFETY: stopped above, so no callback runs or will run; we free both once.
        unsafe {
            sys::nng_aio_free(self.shared.as_ref().aio);
            drop(Box::from_raw(self.shared.as_ptr()));
        }
    }
}

extern "C" fn completed(arg: *mut c_void) {
    // SAFETY: `arg` is the `Shared` registered in `start`, alive until the aio is stopped.
    let shared = unsafe { &*(arg as *const Shared) };
    IN_HANDLER.with(|f| f.set(true));
    // SAFETY: the aio finished, so its result and message are ours to read.
    let rv = unsafe { sys::nng_aio_result(shared.aio) };
    if rv == 0 {
        let msg = NonNull::new(unsafe { sys::nng_aio_get_msg(shared.aio) }).map(Message);
        if let Some(msg) = msg {
            let _ = catch_unwind(AssertUnwindSafe(|| (shared.on_message)(msg)));
        }
        // SAFETY: the socket handle is valid (a closed one fails the receive with ECLOSED,
        // which comes back here as the end); posting from the callback is NNG's usual loop.
        unsafe { sys::nng_recv_aio(shared.socket, shared.aio) };
    } else if rv != sys::NNG_ETIMEDOUT as i32 {
        shared.end(NngError {
            op: "nng_recv_aio",
            errno: rv,
        });
    } else {
        unsafe { sys::nng_recv_aio(shared.socket, shared.aio) };
    }
    IN_HANDLER.with(|f| f.set(false));
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::super::Protocol;
    use super::*;

    /// A listening PULL socket on a fresh IPC URL and a PUSH socket dialled to it.
    fn pull_and_push(name: &str) -> (Socket, Socket) {
        let url = super::super::tests::url(name);
        let pull = Socket::open(Protocol::Pull).unwrap();
        pull.listen(&url).unwrap();
        let push = Socket::open(Protocol::Push).unwrap();
        push.dial(&url, true).unwrap();
        (pull, push)
    }

    #[test]
    fn delivers_in_order_then_ends_when_the_socket_closes() {
        let (pull, push) = pull_and_push("receiver");
        let (tx, rx) = mpsc::channel::<Result<Vec<u8>, NngError>>();
        let end = tx.clone();
        let receiver = Receiver::start(
            &pull,
            move |m| tx.send(Ok(m.to_vec())).unwrap(),
            move |e| end.send(Err(e)).unwrap(),
        )
        .unwrap();
        for i in 0..500u32 {
            push.send(&i.to_le_bytes()).unwrap();
        }
        for i in 0..500u32 {
            let got = rx.recv_timeout(Duration::from_secs(10)).unwrap().unwrap();
            assert_eq!(got, i.to_le_bytes());
        }
        pull.close();
        let e = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap()
            .unwrap_err();
        assert!(e.is_closed(), "{e}");
        drop(receiver);
    }

    #[test]
    fn stopping_ends_receiving_exactly_once() {
        let (pull, _push) = pull_and_push("receiver-stop");
        let (tx, rx) = mpsc::channel::<NngError>();
        let receiver = Receiver::start(&pull, |_| {}, move |e| tx.send(e).unwrap()).unwrap();
        receiver.stop();
        let e = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(e.is_canceled() || e.is_closed(), "{e}");
        drop(receiver);
        // Dropped: no callback runs any more, so a second end would already be here.
        assert!(rx.try_recv().is_err(), "ended twice");
    }

    #[test]
    fn a_panicking_handler_loses_only_its_message() {
        let (pull, push) = pull_and_push("receiver-panic");
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        let _receiver = Receiver::start(
            &pull,
            move |m| {
                if &*m == b"boom" {
                    panic!("a handler bug (this test panics on purpose)");
                }
                tx.send(m.to_vec()).unwrap();
            },
            |_| {},
        )
        .unwrap();
        push.send(b"boom").unwrap();
        push.send(b"after").unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), b"after");
    }
}
