//! The one table of option ranges, for chat options and the Responses request alike.
//!
//! Chat takes what the engine's sampler accepts. Responses is the OpenAI-shaped surface, so three
//! rows narrow it to the reference server's limits (temperature 0–2, top_k 1–100, max_tool_calls
//! ≥ 1 where chat's 0 means "no limit": `client-api.md` §4.1); everywhere else both use the chat
//! bounds. Every numeric Responses field has a row here and is checked by [`check_responses`];
//! the one cross-field rule (min_tool_calls ≤ max_tool_calls) is checked by chat validation,
//! which every Responses request goes through. TypeScript reads this table through the binding
//! (`chatOptionLimits()`) instead of restating it.

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};

/// Reasoning efforts the engine knows; `reasoning: true` means [`DEFAULT_REASONING_EFFORT`].
pub const REASONING_EFFORTS: [&str; 4] = ["minimal", "low", "medium", "high"];
/// The effort of boolean `reasoning: true` (the reference's `DEFAULT_BOOLEAN_REASONING_EFFORT`);
/// defined where the prompt renderer uses it.
pub use crate::format::DEFAULT_REASONING_EFFORT;

/// An interval of allowed values.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bounds {
    pub min: f64,
    /// `None`: no upper bound.
    pub max: Option<f64>,
    /// `min` itself is not allowed (e.g. topP > 0).
    pub min_exclusive: bool,
    /// One value outside the interval that is allowed and means "off" (topK −1).
    pub off: Option<f64>,
}

impl Bounds {
    const fn closed(min: f64, max: f64) -> Bounds {
        Bounds {
            min,
            max: Some(max),
            min_exclusive: false,
            off: None,
        }
    }

    const fn above(min: f64, max: f64) -> Bounds {
        Bounds {
            min,
            max: Some(max),
            min_exclusive: true,
            off: None,
        }
    }

    const fn at_least(min: f64) -> Bounds {
        Bounds {
            min,
            max: None,
            min_exclusive: false,
            off: None,
        }
    }

    pub fn contains(&self, x: f64) -> bool {
        if self.off == Some(x) {
            return true;
        }
        let low = if self.min_exclusive {
            x > self.min
        } else {
            x >= self.min
        };
        x.is_finite() && low && self.max.is_none_or(|m| x <= m)
    }

    /// "use 0 to 2", "use a value in (0, 1]", "use -1 (off) or 1 or more", ...
    pub fn hint(&self, integer: bool) -> String {
        let what = if integer { "an integer" } else { "a value" };
        let range = match (self.max, self.min_exclusive) {
            (Some(max), false) => format!("{} to {max}", self.min),
            (Some(max), true) => format!("{what} in ({}, {max}]", self.min),
            (None, false) => format!("{} or more", self.min),
            (None, true) => format!("{what} above {}", self.min),
        };
        match self.off {
            Some(off) => format!("use {off} (off) or {range}"),
            None => format!("use {range}"),
        }
    }
}

/// One numeric option: its chat name, its Responses name and where it is valid.
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OptionRange {
    /// The chat option (camelCase).
    pub option: &'static str,
    /// The same setting in a Responses request (snake_case), when it has one.
    pub responses_name: Option<&'static str>,
    pub integer: bool,
    pub chat: Bounds,
    /// Narrower bounds for Responses; `None`: the chat bounds.
    pub responses: Option<Bounds>,
}

impl OptionRange {
    /// The bounds a Responses request uses.
    pub fn responses_bounds(&self) -> Bounds {
        self.responses.unwrap_or(self.chat)
    }
}

/// Candidates per request: n, bestOf and finalCandidates stay within 1..=MAX_CANDIDATES.
pub const MAX_CANDIDATES: f64 = 64.0;

pub const RANGES: &[OptionRange] = &[
    OptionRange {
        option: "temperature",
        responses_name: Some("temperature"),
        integer: false,
        chat: Bounds::closed(0.0, 100.0),
        responses: Some(Bounds::closed(0.0, 2.0)),
    },
    OptionRange {
        option: "topP",
        responses_name: Some("top_p"),
        integer: false,
        chat: Bounds::above(0.0, 1.0),
        responses: None,
    },
    OptionRange {
        option: "topK",
        responses_name: Some("top_k"),
        integer: true,
        chat: Bounds {
            min: 1.0,
            max: None,
            min_exclusive: false,
            off: Some(-1.0),
        },
        responses: Some(Bounds::closed(1.0, 100.0)),
    },
    OptionRange {
        option: "minP",
        responses_name: Some("min_p"),
        integer: false,
        chat: Bounds::closed(0.0, 1.0),
        responses: None,
    },
    OptionRange {
        option: "frequencyPenalty",
        responses_name: Some("frequency_penalty"),
        integer: false,
        chat: Bounds::closed(-2.0, 2.0),
        responses: None,
    },
    OptionRange {
        option: "presencePenalty",
        responses_name: Some("presence_penalty"),
        integer: false,
        chat: Bounds::closed(-2.0, 2.0),
        responses: None,
    },
    OptionRange {
        option: "repetitionPenalty",
        responses_name: Some("repetition_penalty"),
        integer: false,
        chat: Bounds::above(0.0, 10.0),
        responses: None,
    },
    OptionRange {
        option: "topLogprobs",
        responses_name: Some("top_logprobs"),
        integer: true,
        chat: Bounds::closed(0.0, 20.0),
        responses: None,
    },
    OptionRange {
        option: "maxTokens",
        responses_name: Some("max_output_tokens"),
        integer: true,
        chat: Bounds::at_least(1.0),
        responses: None,
    },
    OptionRange {
        option: "n",
        responses_name: None,
        integer: true,
        chat: Bounds::closed(1.0, MAX_CANDIDATES),
        responses: None,
    },
    OptionRange {
        option: "minToolCalls",
        responses_name: Some("min_tool_calls"),
        integer: true,
        chat: Bounds::at_least(1.0),
        responses: None,
    },
    OptionRange {
        option: "maxToolCalls",
        responses_name: Some("max_tool_calls"),
        integer: true,
        // 0: no limit (the reference's chat default); the Responses field starts at 1.
        chat: Bounds::at_least(0.0),
        responses: Some(Bounds::at_least(1.0)),
    },
    OptionRange {
        option: "seed",
        responses_name: Some("seed"),
        integer: true,
        chat: Bounds::at_least(0.0),
        responses: None,
    },
    OptionRange {
        option: "logitBias",
        responses_name: None,
        integer: false,
        chat: Bounds::closed(-100.0, 100.0),
        responses: None,
    },
];

/// The row of `option` (a camelCase chat option).
pub fn range_of(option: &str) -> &'static OptionRange {
    RANGES
        .iter()
        .find(|r| r.option == option)
        .unwrap_or_else(|| panic!("no range for option {option}"))
}

/// Check one numeric field of a Responses request (`name` in snake_case, as the caller wrote
/// it; `value_json` its JSON text) against the Responses bounds of its row.
pub fn check_responses(name: &str, value_json: &str) -> Result<()> {
    let row = RANGES
        .iter()
        .find(|r| r.responses_name == Some(name))
        .ok_or_else(|| Error::invalid(format!("{name}: not a ranged Responses field")))?;
    let bounds = row.responses_bounds();
    let number = match serde_json::from_str::<Value>(value_json) {
        Ok(Value::Number(n)) => n.as_f64(),
        _ => None,
    };
    let what = if row.integer {
        "an integer"
    } else {
        "a number"
    };
    match number {
        Some(x) if row.integer && x.fract() != 0.0 => Err(Error::invalid(format!(
            "{name}: {value_json} is not an integer; {}",
            bounds.hint(true)
        ))),
        Some(x) if bounds.contains(x) => Ok(()),
        Some(_) => Err(Error::invalid(format!(
            "{name}: {value_json} is out of range; {}",
            bounds.hint(row.integer)
        ))),
        None => Err(Error::invalid(format!(
            "{name}: expected {what}, got {value_json}"
        ))),
    }
}

/// What TypeScript reads: the ranges and the reasoning efforts.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OptionLimits {
    pub ranges: &'static [OptionRange],
    pub reasoning_efforts: [&'static str; 4],
    pub default_reasoning_effort: &'static str,
}

/// [`limits`] as JSON text.
pub fn limits_json() -> String {
    serde_json::to_string(&limits()).expect("the limits table serializes")
}

pub fn limits() -> OptionLimits {
    OptionLimits {
        ranges: RANGES,
        reasoning_efforts: REASONING_EFFORTS,
        default_reasoning_effort: DEFAULT_REASONING_EFFORT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_and_hints() {
        let top_k = range_of("topK").chat;
        assert!(top_k.contains(-1.0) && top_k.contains(1.0) && top_k.contains(500.0));
        assert!(!top_k.contains(0.0) && !top_k.contains(-2.0));
        assert_eq!(top_k.hint(true), "use -1 (off) or 1 or more");
        let top_p = range_of("topP").chat;
        assert!(!top_p.contains(0.0) && top_p.contains(1.0));
        assert_eq!(top_p.hint(false), "use a value in (0, 1]");
        assert!(!range_of("temperature").chat.contains(f64::NAN));
        assert_eq!(
            range_of("temperature").responses_bounds().hint(false),
            "use 0 to 2"
        );
    }

    #[test]
    fn responses_fields_use_their_own_bounds_and_name() {
        assert!(check_responses("temperature", "2").is_ok());
        let e = check_responses("temperature", "3").unwrap_err();
        assert_eq!(e.message, "temperature: 3 is out of range; use 0 to 2");
        assert!(check_responses("top_k", "-1").is_err());
        let e = check_responses("top_k", "2.5").unwrap_err();
        assert_eq!(e.message, "top_k: 2.5 is not an integer; use 1 to 100");
        assert!(check_responses("top_p", "1").is_ok());
        assert!(
            check_responses("top_p", "0").is_err(),
            "the engine cannot sample with 0"
        );
        let e = check_responses("max_tool_calls", "0").unwrap_err();
        assert_eq!(
            e.message,
            "max_tool_calls: 0 is out of range; use 1 or more"
        );
        assert!(
            range_of("maxToolCalls").chat.contains(0.0),
            "chat: 0 is no limit"
        );
        assert!(check_responses("min_tool_calls", "5000").is_ok());
        let e = check_responses("max_output_tokens", "0").unwrap_err();
        assert_eq!(
            e.message,
            "max_output_tokens: 0 is out of range; use 1 or more"
        );
        let e = check_responses("seed", "-1").unwrap_err();
        assert_eq!(e.message, "seed: -1 is out of range; use 0 or more");
        let e = check_responses("top_logprobs", "\"5\"").unwrap_err();
        assert_eq!(e.message, "top_logprobs: expected an integer, got \"5\"");
    }
}
