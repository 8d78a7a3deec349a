//! One-shot faults for testing clients over real IPC: the `emulator_fault` management command
//! arms one, and the first sequence (prompt 0, candidate 0) of the next generation request
//! carries it. The request's counters still count what the engine meant to publish.

use serde_json::Value;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Garbage {
    /// `{"request_id":<id>,"content":"ab` — cut short.
    Truncated,
    /// Valid JSON syntax with bytes that are not UTF-8 in a string.
    BadUtf8,
    /// A bare `NaN`, which JSON does not allow.
    NaN,
    /// Cut short before any `request_id`.
    NoRequestId,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The delta at this index (0-based) of the sequence is not published.
    DropDelta(u64),
    /// The sequence's final delta is not published.
    DropFinal,
    /// A malformed frame on the request's channel replaces the delta at index `at`.
    Garbage { at: u64, kind: Garbage },
    /// The sequence never generates: it stays active (telemetry counts it) and sends nothing
    /// until it is cancelled.
    Stall,
}

/// What to do with one delta of the faulty sequence.
pub enum Action {
    Publish,
    Skip,
    Replace(Vec<u8>),
}

impl Fault {
    /// `{"type":"emulator_fault","fault":"drop_delta"|"drop_final"|"garbage"|"stall",
    /// "at"?: index (default 2), "garbage"?: "truncated"|"bad_utf8"|"nan"|"no_request_id"}`.
    pub fn parse(cmd: &Value) -> Result<Fault, String> {
        let at = match cmd.get("at") {
            None => 2,
            Some(v) => v
                .as_u64()
                .ok_or("emulator_fault: 'at' must be a delta index (a whole number)")?,
        };
        match cmd.get("fault").and_then(Value::as_str) {
            Some("drop_delta") => Ok(Fault::DropDelta(at)),
            Some("drop_final") => Ok(Fault::DropFinal),
            Some("stall") => Ok(Fault::Stall),
            Some("garbage") => {
                let kind = match cmd.get("garbage").and_then(Value::as_str).unwrap_or("truncated") {
                    "truncated" => Garbage::Truncated,
                    "bad_utf8" => Garbage::BadUtf8,
                    "nan" => Garbage::NaN,
                    "no_request_id" => Garbage::NoRequestId,
                    other => return Err(format!("emulator_fault: unknown garbage kind '{other}'")),
                };
                Ok(Fault::Garbage { at, kind })
            }
            other => Err(format!(
                "emulator_fault: 'fault' must be drop_delta, drop_final, garbage or stall, got {other:?}"
            )),
        }
    }

    /// What to do with the delta at `index` of the sequence.
    pub fn action(&self, index: u64, is_final: bool, request_id: u64) -> Action {
        match self {
            Fault::DropDelta(at) if *at == index => Action::Skip,
            Fault::DropFinal if is_final => Action::Skip,
            Fault::Garbage { at, kind } if *at == index => Action::Replace(match kind {
                Garbage::Truncated => {
                    format!("{{\"request_id\":{request_id},\"content\":\"ab").into_bytes()
                }
                Garbage::BadUtf8 => {
                    let mut b =
                        format!("{{\"request_id\":{request_id},\"content\":\"").into_bytes();
                    b.extend_from_slice(&[0xff, 0xfe]);
                    b.extend_from_slice(b"\"}");
                    b
                }
                Garbage::NaN => {
                    format!("{{\"request_id\":{request_id},\"cumulative_logprob\":NaN}}")
                        .into_bytes()
                }
                Garbage::NoRequestId => b"{\"content\":\"x".to_vec(),
            }),
            _ => Action::Publish,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_each_fault_and_refuses_unknown_ones() {
        assert_eq!(
            Fault::parse(&json!({"fault": "drop_final"})),
            Ok(Fault::DropFinal)
        );
        assert_eq!(
            Fault::parse(&json!({"fault": "drop_delta", "at": 5})),
            Ok(Fault::DropDelta(5))
        );
        assert_eq!(
            Fault::parse(&json!({"fault": "garbage", "garbage": "nan"})),
            Ok(Fault::Garbage {
                at: 2,
                kind: Garbage::NaN
            })
        );
        assert!(Fault::parse(&json!({"fault": "explode"})).is_err());
        assert!(Fault::parse(&json!({"fault": "garbage", "garbage": "x"})).is_err());
    }

    #[test]
    fn garbage_is_not_json_a_client_can_decode() {
        for kind in [
            Garbage::Truncated,
            Garbage::BadUtf8,
            Garbage::NaN,
            Garbage::NoRequestId,
        ] {
            let Action::Replace(body) = (Fault::Garbage { at: 0, kind }).action(0, false, 7) else {
                panic!("no replacement");
            };
            assert!(serde_json::from_slice::<Value>(&body).is_err());
        }
    }
}
