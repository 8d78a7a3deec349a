//! A small safe layer over the NNG C library (nng-sys, NNG 1.11).
//!
//! Only what orchard needs: open a socket of one protocol, dial or listen on an IPC URL,
//! set a few options, send bytes, receive whole messages, blocking ([`Socket::recv`]) or
//! continuously with a handler on NNG's threads ([`Receiver`]). Sockets are thread-safe in
//! NNG, so `Socket` is `Send + Sync`; closing it from any thread wakes a blocked `recv` with
//! [`NngError::is_closed`]. No short-timeout polling (see nng issue #1523).

mod receiver;

use std::ffi::{CStr, CString};
use std::fmt;
use std::ptr::NonNull;
use std::time::Duration;

use nng_sys as sys;

use crate::error::{Error, ErrorCode};

pub use receiver::Receiver;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Push,
    Pull,
    Pub,
    Sub,
    Req,
    Rep,
}

/// An NNG error number with the operation that produced it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NngError {
    pub op: &'static str,
    pub errno: i32,
}

impl NngError {
    pub fn is_closed(&self) -> bool {
        self.errno == sys::NNG_ECLOSED as i32
    }
    /// The operation was stopped (e.g. a [`Receiver`] stopped before its socket's close
    /// reached it).
    pub fn is_canceled(&self) -> bool {
        self.errno == sys::NNG_ECANCELED as i32
    }
    pub fn is_timeout(&self) -> bool {
        self.errno == sys::NNG_ETIMEDOUT as i32
    }
    pub fn is_refused(&self) -> bool {
        self.errno == sys::NNG_ECONNREFUSED as i32 || self.errno == sys::NNG_ENOENT as i32
    }
    pub fn is_again(&self) -> bool {
        self.errno == sys::NNG_EAGAIN as i32
    }
    pub fn describe(&self) -> String {
        // SAFETY: nng_strerror returns a pointer to a static NUL-terminated string.
        let text = unsafe { CStr::from_ptr(sys::nng_strerror(self.errno)) };
        text.to_string_lossy().into_owned()
    }
}

impl fmt::Display for NngError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {}", self.op, self.describe())
    }
}

impl std::error::Error for NngError {}

impl From<NngError> for Error {
    fn from(e: NngError) -> Self {
        let code = if e.is_timeout() {
            ErrorCode::Timeout
        } else {
            ErrorCode::Transport
        };
        Error::new(code, e.to_string())
    }
}

pub type NngResult<T> = std::result::Result<T, NngError>;

fn check(op: &'static str, rv: i32) -> NngResult<()> {
    if rv == 0 {
        Ok(())
    } else {
        Err(NngError { op, errno: rv })
    }
}

fn option_name(name: &'static [u8]) -> *const std::ffi::c_char {
    debug_assert_eq!(name.last(), Some(&0));
    name.as_ptr().cast()
}

fn duration_ms(d: Option<Duration>) -> i32 {
    match d {
        None => sys::NNG_DURATION_INFINITE,
        Some(d) => d.as_millis().min(i32::MAX as u128) as i32,
    }
}

/// One NNG socket. Dropping it closes it.
pub struct Socket {
    raw: sys::nng_socket,
    protocol: Protocol,
}

// SAFETY: NNG sockets are designed to be used from many threads at once.
unsafe impl Send for Socket {}
unsafe impl Sync for Socket {}

impl Socket {
    pub fn open(protocol: Protocol) -> NngResult<Socket> {
        let mut raw = sys::nng_socket::default();
        // SAFETY: `raw` is a valid out-pointer for the duration of the call.
        let rv = unsafe {
            match protocol {
                Protocol::Push => sys::nng_push0_open(&mut raw),
                Protocol::Pull => sys::nng_pull0_open(&mut raw),
                Protocol::Pub => sys::nng_pub0_open(&mut raw),
                Protocol::Sub => sys::nng_sub0_open(&mut raw),
                Protocol::Req => sys::nng_req0_open(&mut raw),
                Protocol::Rep => sys::nng_rep0_open(&mut raw),
            }
        };
        check("nng socket open", rv)?;
        Ok(Socket { raw, protocol })
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Dial `url`. With `blocking`, fail at once when nobody listens; without, NNG keeps
    /// reconnecting in the background and the call returns immediately.
    pub fn dial(&self, url: &str, blocking: bool) -> NngResult<()> {
        let url = CString::new(url).map_err(|_| NngError {
            op: "nng_dial",
            errno: sys::NNG_EINVAL as i32,
        })?;
        let flags = if blocking {
            0
        } else {
            sys::NNG_FLAG_NONBLOCK as i32
        };
        // SAFETY: url is a valid C string; a null dialer out-pointer is allowed.
        check("nng_dial", unsafe {
            sys::nng_dial(self.raw, url.as_ptr(), std::ptr::null_mut(), flags)
        })
    }

    pub fn listen(&self, url: &str) -> NngResult<()> {
        let url = CString::new(url).map_err(|_| NngError {
            op: "nng_listen",
            errno: sys::NNG_EINVAL as i32,
        })?;
        // SAFETY: url is a valid C string; a null listener out-pointer is allowed.
        check("nng_listen", unsafe {
            sys::nng_listen(self.raw, url.as_ptr(), std::ptr::null_mut(), 0)
        })
    }

    pub fn set_recv_timeout(&self, d: Option<Duration>) -> NngResult<()> {
        self.set_ms(sys::NNG_OPT_RECVTIMEO, d)
    }

    pub fn set_send_timeout(&self, d: Option<Duration>) -> NngResult<()> {
        self.set_ms(sys::NNG_OPT_SENDTIMEO, d)
    }

    /// Largest message accepted; 0 = unlimited.
    pub fn set_recv_max_size(&self, bytes: usize) -> NngResult<()> {
        // SAFETY: valid socket handle and NUL-terminated option name.
        check("nng_socket_set_size(recv-size-max)", unsafe {
            sys::nng_socket_set_size(self.raw, option_name(sys::NNG_OPT_RECVMAXSZ), bytes)
        })
    }

    /// Queue depth in messages (NNG allows 0..=8192).
    pub fn set_recv_buffer(&self, messages: i32) -> NngResult<()> {
        self.set_int(
            sys::NNG_OPT_RECVBUF,
            messages,
            "nng_socket_set_int(recv-buffer)",
        )
    }

    pub fn set_send_buffer(&self, messages: i32) -> NngResult<()> {
        self.set_int(
            sys::NNG_OPT_SENDBUF,
            messages,
            "nng_socket_set_int(send-buffer)",
        )
    }

    pub fn set_reconnect_times(&self, min: Duration, max: Duration) -> NngResult<()> {
        self.set_ms(sys::NNG_OPT_RECONNMINT, Some(min))?;
        self.set_ms(sys::NNG_OPT_RECONNMAXT, Some(max))
    }

    /// REQ only: how long before an unanswered request is sent again (`None` = never).
    pub fn set_req_resend_time(&self, d: Option<Duration>) -> NngResult<()> {
        self.set_ms(sys::NNG_OPT_REQ_RESENDTIME, d)
    }

    /// SUB only: receive messages whose body starts with `prefix`.
    pub fn subscribe(&self, prefix: &[u8]) -> NngResult<()> {
        // SAFETY: prefix points to prefix.len() readable bytes for the call.
        check("nng_socket_set(sub:subscribe)", unsafe {
            sys::nng_socket_set(
                self.raw,
                option_name(sys::NNG_OPT_SUB_SUBSCRIBE),
                prefix.as_ptr().cast(),
                prefix.len(),
            )
        })
    }

    /// SUB only: stop receiving messages that start with `prefix`.
    pub fn unsubscribe(&self, prefix: &[u8]) -> NngResult<()> {
        // SAFETY: prefix points to prefix.len() readable bytes for the call.
        check("nng_socket_set(sub:unsubscribe)", unsafe {
            sys::nng_socket_set(
                self.raw,
                option_name(sys::NNG_OPT_SUB_UNSUBSCRIBE),
                prefix.as_ptr().cast(),
                prefix.len(),
            )
        })
    }

    /// SUB only: when the receive queue is full, drop the incoming message instead of the
    /// oldest queued one.
    pub fn set_sub_prefer_new(&self, prefer_new: bool) -> NngResult<()> {
        // SAFETY: valid socket handle and NUL-terminated option name.
        check("nng_socket_set_bool(sub:prefnew)", unsafe {
            sys::nng_socket_set_bool(self.raw, option_name(sys::NNG_OPT_SUB_PREFNEW), prefer_new)
        })
    }

    /// Send a copy of `data` as one message (blocks per the send timeout).
    pub fn send(&self, data: &[u8]) -> NngResult<()> {
        // SAFETY: nng_send with flags 0 copies `data`; it never writes through the pointer.
        check("nng_send", unsafe {
            sys::nng_send(self.raw, data.as_ptr() as *mut _, data.len(), 0)
        })
    }

    /// Send a copy of `data` without waiting; `is_again()` when the queue is full.
    pub fn try_send(&self, data: &[u8]) -> NngResult<()> {
        // SAFETY: as in `send`.
        check("nng_send", unsafe {
            sys::nng_send(
                self.raw,
                data.as_ptr() as *mut _,
                data.len(),
                sys::NNG_FLAG_NONBLOCK as i32,
            )
        })
    }

    /// Receive one message, blocking per the receive timeout (infinite by default).
    pub fn recv(&self) -> NngResult<Message> {
        let mut msg: *mut sys::nng_msg = std::ptr::null_mut();
        // SAFETY: `msg` is a valid out-pointer; on success NNG hands us ownership.
        check("nng_recvmsg", unsafe {
            sys::nng_recvmsg(self.raw, &mut msg, 0)
        })?;
        NonNull::new(msg).map(Message).ok_or(NngError {
            op: "nng_recvmsg",
            errno: sys::NNG_EINTERNAL as i32,
        })
    }

    /// Close the socket. Idempotent; wakes any thread blocked on it.
    pub fn close(&self) {
        // SAFETY: closing an already-closed socket id only returns NNG_ECLOSED.
        unsafe {
            sys::nng_close(self.raw);
        }
    }

    fn set_ms(&self, name: &'static [u8], d: Option<Duration>) -> NngResult<()> {
        // SAFETY: valid socket handle and NUL-terminated option name.
        check("nng_socket_set_ms", unsafe {
            sys::nng_socket_set_ms(self.raw, option_name(name), duration_ms(d))
        })
    }

    fn set_int(&self, name: &'static [u8], v: i32, op: &'static str) -> NngResult<()> {
        // SAFETY: valid socket handle and NUL-terminated option name.
        check(op, unsafe {
            sys::nng_socket_set_int(self.raw, option_name(name), v)
        })
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.close();
    }
}

/// A received message; the bytes are freed on drop.
pub struct Message(NonNull<sys::nng_msg>);

// SAFETY: an nng_msg is owned data with no thread affinity.
unsafe impl Send for Message {}

impl Message {
    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: body points to len() bytes owned by the message for its lifetime.
        unsafe {
            let len = sys::nng_msg_len(self.0.as_ptr());
            if len == 0 {
                return &[];
            }
            std::slice::from_raw_parts(sys::nng_msg_body(self.0.as_ptr()) as *const u8, len)
        }
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Message({} bytes)", self.as_bytes().len())
    }
}

impl std::ops::Deref for Message {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl Drop for Message {
    fn drop(&mut self) {
        // SAFETY: we own the message and free it once.
        unsafe { sys::nng_msg_free(self.0.as_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn url(name: &str) -> String {
        let dir = std::env::temp_dir().join(format!("orchard-nng-{}-{}", std::process::id(), name));
        let _ = std::fs::create_dir_all(&dir);
        format!("ipc://{}/s.ipc", dir.display())
    }

    #[test]
    fn push_pull_round_trip() {
        let u = url("pp");
        let pull = Socket::open(Protocol::Pull).unwrap();
        pull.listen(&u).unwrap();
        let push = Socket::open(Protocol::Push).unwrap();
        push.dial(&u, true).unwrap();
        push.send(b"hello frame").unwrap();
        let m = pull.recv().unwrap();
        assert_eq!(&*m, b"hello frame");
    }

    #[test]
    fn close_wakes_blocked_receiver() {
        let u = url("close");
        let pull = std::sync::Arc::new(Socket::open(Protocol::Pull).unwrap());
        pull.listen(&u).unwrap();
        let p2 = pull.clone();
        let t = std::thread::spawn(move || p2.recv().err());
        std::thread::sleep(Duration::from_millis(50));
        pull.close();
        let err = t.join().unwrap().expect("recv must fail after close");
        assert!(err.is_closed(), "{err}");
    }

    #[test]
    fn blocking_dial_without_listener_is_refused() {
        let push = Socket::open(Protocol::Push).unwrap();
        let err = push.dial(&url("nobody"), true).unwrap_err();
        assert!(err.is_refused(), "{err}");
    }

    #[test]
    fn req_rep_round_trip_and_timeout() {
        let u = url("rr");
        let rep = Socket::open(Protocol::Rep).unwrap();
        rep.listen(&u).unwrap();
        let req = Socket::open(Protocol::Req).unwrap();
        req.dial(&u, true).unwrap();
        req.set_recv_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        req.send(b"{\"type\":\"ping\"}").unwrap();
        let got = rep.recv().unwrap();
        assert_eq!(&*got, b"{\"type\":\"ping\"}");
        rep.send(b"{\"status\":\"ok\"}").unwrap();
        assert_eq!(&*req.recv().unwrap(), b"{\"status\":\"ok\"}");
        req.send(b"unanswered").unwrap();
        let _ = rep.recv().unwrap();
        assert!(req.recv().unwrap_err().is_timeout());
    }
}
