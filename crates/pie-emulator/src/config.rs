//! Settings read from the environment at startup (the engine takes no arguments).

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Config {
    /// `PIE_EMULATOR_LINGER=1`: keep running after the last client deregisters or dies.
    pub linger: bool,
    /// `PIE_EMULATOR_TOKEN_DELAY_MS` (default 20): time between scheduler steps.
    pub token_delay: Duration,
    /// `PIE_EMULATOR_LOAD_DELAY_MS` (default 100): `accepted` reply to `model_loaded` event.
    pub load_delay: Duration,
    /// `PIE_EMULATOR_TELEMETRY_MS` (default 500): heartbeat period.
    pub telemetry_interval: Duration,
    /// `PIE_EMULATOR_EXIT_GRACE_MS` (default 200): from "no clients left" to exit.
    pub exit_grace: Duration,
    /// `PIE_EMULATOR_REAP_MS` (default 1000): how often registered client pids are checked.
    pub reap_interval: Duration,
    /// `PIE_EMULATOR_DEFAULT_MAX_TOKENS` (default 64): cap when a request says 0.
    pub default_max_tokens: u64,
    /// `PIE_EMULATOR_FLOOD_RATE` (`max`, or deltas per second per sequence): flood mode for
    /// benchmarks. Generation skips the language model; every delta's `content` is the
    /// monotonic clock at publish time in nanoseconds, then a space. `Some(step interval)`.
    pub flood: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            linger: false,
            token_delay: Duration::from_millis(20),
            load_delay: Duration::from_millis(100),
            telemetry_interval: Duration::from_millis(500),
            exit_grace: Duration::from_millis(200),
            reap_interval: Duration::from_millis(1000),
            default_max_tokens: 64,
            flood: None,
        }
    }
}

fn truthy(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

impl Config {
    /// Read the configuration through `get` (the environment in production). Returns the
    /// configuration and a warning for every value that could not be used.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> (Config, Vec<String>) {
        let mut c = Config::default();
        let mut warnings = Vec::new();
        if let Some(v) = get("PIE_EMULATOR_LINGER") {
            match truthy(&v) {
                Some(b) => c.linger = b,
                None => warnings.push(format!("PIE_EMULATOR_LINGER={v:?} is not 0/1; ignored")),
            }
        }
        let mut ms = |name: &str, slot: &mut Duration, min: u64| {
            if let Some(v) = get(name) {
                match v.trim().parse::<u64>() {
                    Ok(n) => *slot = Duration::from_millis(n.max(min)),
                    Err(_) => warnings.push(format!(
                        "{name}={v:?} is not a whole number of milliseconds; using {}",
                        slot.as_millis()
                    )),
                }
            }
        };
        ms("PIE_EMULATOR_TOKEN_DELAY_MS", &mut c.token_delay, 0);
        ms("PIE_EMULATOR_LOAD_DELAY_MS", &mut c.load_delay, 0);
        ms("PIE_EMULATOR_TELEMETRY_MS", &mut c.telemetry_interval, 10);
        ms("PIE_EMULATOR_EXIT_GRACE_MS", &mut c.exit_grace, 0);
        ms("PIE_EMULATOR_REAP_MS", &mut c.reap_interval, 10);
        if let Some(v) = get("PIE_EMULATOR_DEFAULT_MAX_TOKENS") {
            match v.trim().parse::<u64>() {
                Ok(n) if n > 0 => c.default_max_tokens = n,
                _ => warnings.push(format!(
                    "PIE_EMULATOR_DEFAULT_MAX_TOKENS={v:?} is not a positive number; using {}",
                    c.default_max_tokens
                )),
            }
        }
        if let Some(v) = get("PIE_EMULATOR_FLOOD_RATE") {
            match v.trim() {
                "" => {}
                "max" => c.flood = Some(Duration::ZERO),
                n => match n.parse::<f64>() {
                    Ok(rate) if rate > 0.0 && rate.is_finite() => {
                        c.flood = Some(Duration::from_secs_f64(1.0 / rate))
                    }
                    _ => warnings.push(format!(
                        "PIE_EMULATOR_FLOOD_RATE={v:?} is neither 'max' nor a positive rate; flood mode is off"
                    )),
                },
            }
        }
        (c, warnings)
    }

    /// Time between scheduler steps (one delta per active sequence each step).
    pub fn step_interval(&self) -> Duration {
        self.flood.unwrap_or(self.token_delay)
    }

    pub fn from_env() -> (Config, Vec<String>) {
        Config::from_lookup(|k| std::env::var(k).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let (c, w) = Config::from_lookup(|_| None);
        assert!(w.is_empty());
        assert!(!c.linger);
        assert_eq!(c.token_delay, Duration::from_millis(20));
        let (c, w) = Config::from_lookup(|k| match k {
            "PIE_EMULATOR_LINGER" => Some("1".into()),
            "PIE_EMULATOR_TOKEN_DELAY_MS" => Some("0".into()),
            "PIE_EMULATOR_TELEMETRY_MS" => Some("abc".into()),
            _ => None,
        });
        assert!(c.linger);
        assert_eq!(c.token_delay, Duration::ZERO);
        assert_eq!(c.telemetry_interval, Duration::from_millis(500));
        assert_eq!(w.len(), 1);
        let (c, _) =
            Config::from_lookup(|k| (k == "PIE_EMULATOR_FLOOD_RATE").then(|| "2000".into()));
        assert_eq!(c.step_interval(), Duration::from_micros(500));
        let (c, _) =
            Config::from_lookup(|k| (k == "PIE_EMULATOR_FLOOD_RATE").then(|| "max".into()));
        assert_eq!(c.flood, Some(Duration::ZERO));
    }
}
