//! Line logging to stdout (information) and stderr (problems). The launching client sends
//! both to `engine.log`. Write errors are ignored: logging must never take the engine down.

use std::io::Write;
use std::sync::OnceLock;
use std::time::Instant;

fn start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// Fix the clock the log's relative timestamps count from.
pub fn init() {
    start();
}

pub fn write(to_stderr: bool, args: std::fmt::Arguments<'_>) {
    let t = start().elapsed().as_secs_f64();
    let line = format!("[pie-emulator {:>9.3}s] {args}\n", t);
    if to_stderr {
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    } else {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(line.as_bytes());
        let _ = out.flush();
    }
}

#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::write(false, format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::write(true, format_args!($($arg)*)) };
}
