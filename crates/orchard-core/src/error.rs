//! One error type for the whole core. Every error carries a stable `code` that the napi
//! binding passes to JavaScript, where the TypeScript layer maps it to a typed error class.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// A frame or message that does not follow the PIE wire protocol.
    Protocol,
    /// Deltas of a request never arrived (a kind of protocol error): the engine's counts
    /// say more was generated than was received, or the final delta was lost.
    DeltasLost,
    /// A request the caller built wrongly (bad option, wrong type, out of range).
    InvalidRequest,
    /// Prompt rendering failed (unknown family, template error, malformed message).
    Template,
    /// The NNG transport failed (dial, send, receive).
    Transport,
    /// No engine binary could be found.
    EngineNotFound,
    /// The engine was launched but did not become ready.
    EngineStartup,
    /// The engine process died or disconnected.
    EngineDied,
    /// The engine answered a request or command with an error.
    Engine,
    /// The requested model is not loaded, or failed to load.
    ModelNotLoaded,
    /// A deadline passed.
    Timeout,
    /// The caller cancelled.
    Aborted,
    /// A filesystem or process error.
    Io,
    /// A bug in orchard itself (a caught panic).
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Protocol => "PROTOCOL",
            ErrorCode::DeltasLost => "DELTAS_LOST",
            ErrorCode::InvalidRequest => "INVALID_REQUEST",
            ErrorCode::Template => "TEMPLATE",
            ErrorCode::Transport => "TRANSPORT",
            ErrorCode::EngineNotFound => "ENGINE_NOT_FOUND",
            ErrorCode::EngineStartup => "ENGINE_STARTUP",
            ErrorCode::EngineDied => "ENGINE_DIED",
            ErrorCode::Engine => "ENGINE",
            ErrorCode::ModelNotLoaded => "MODEL_NOT_LOADED",
            ErrorCode::Timeout => "TIMEOUT",
            ErrorCode::Aborted => "ABORTED",
            ErrorCode::Io => "IO",
            ErrorCode::Internal => "INTERNAL",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
}

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
        }
    }
    pub fn protocol(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Protocol, message)
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }
    pub fn template(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Template, message)
    }
    pub fn transport(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Transport, message)
    }
    /// Text that should be JSON and is not; `what` names it (`options`, a file's path).
    pub fn not_json(what: impl std::fmt::Display, err: serde_json::Error) -> Self {
        Self::invalid(format!("{what}: not valid JSON: {err}"))
    }
    pub fn io(context: &str, err: std::io::Error) -> Self {
        Self::new(ErrorCode::Io, format!("{context}: {err}"))
    }
    /// A call on an `Engine` lease that was already closed.
    pub fn engine_closed() -> Self {
        Self::new(
            ErrorCode::EngineDied,
            "this Engine was closed; call Engine.start() for a new one",
        )
    }
    /// A caught panic (its payload, when it is text): a bug in orchard, never the caller's.
    pub fn from_panic(payload: &(dyn std::any::Any + Send)) -> Self {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string());
        Self::new(
            ErrorCode::Internal,
            format!("internal error in orchard's native core (please report it): {what}"),
        )
    }
    /// What JavaScript receives: `[ORCHARD:<CODE>] message`, which the TypeScript layer
    /// turns into a typed error class.
    pub fn to_js_message(&self) -> String {
        format!("[ORCHARD:{}] {}", self.code.as_str(), self.message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;
