//! Prompt parity with the reference Python client.
//!
//! Reads `__test__/fixtures/prompt-parity.json` (the reference client's output) and renders every case
//! whose family has a profile in `model-specs/`. Each case must give the exact prompt, layout
//! and reasoning flag the reference produced; a case the reference crashed on must render.
//!
//! Families without a profile are skipped and listed; every family in `REQUIRED_FAMILIES`
//! must be covered, with the number of cases listed there.

use std::path::PathBuf;

use orchard_core::format::{render_case, ModelSpecs};
use serde_json::Value;

/// Every family in `model-specs/`, with its number of fixture cases (a case counts for the
/// family its `model_type` resolves to, so `granite` counts for granite_switch).
const REQUIRED_FAMILIES: &[(&str, usize)] = &[
    ("afmoe", 13),
    ("flux", 9),
    ("gemma3", 9),
    ("gemma4", 12),
    ("gemma4u", 11),
    ("glm4_moe", 9),
    ("gpt_oss", 12),
    ("granite_switch", 14),
    ("ideogram4", 8),
    ("lfm2", 11),
    ("lfm2_5", 9),
    ("llama3", 12),
    ("moondream3", 10),
    ("nemotron_h", 9),
    ("olmo_hybrid", 12),
    ("openai_privacy_filter", 11),
    ("parakeet_tdt", 9),
    ("proxy_i", 13),
    ("qwen3_5", 8),
    ("qwen3_asr", 9),
    ("qwen3_tts", 10),
    ("qwen_image_edit", 11),
];

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture_path() -> PathBuf {
    manifest_dir().join("../../__test__/fixtures/prompt-parity.json")
}

/// The repository's model-specs, or another profile folder named by `ORCHARD_PARITY_SPECS`
/// (to try the fixture against profiles in progress).
fn specs() -> ModelSpecs {
    match std::env::var_os("ORCHARD_PARITY_SPECS") {
        Some(dir) => ModelSpecs::new(PathBuf::from(dir)),
        None => ModelSpecs::new(manifest_dir().join("../../model-specs")),
    }
}

/// `ORCHARD_PARITY_FAMILY=a,b` restricts the run to those families (while writing a profile).
fn family_filter() -> Option<Vec<String>> {
    std::env::var("ORCHARD_PARITY_FAMILY")
        .ok()
        .filter(|v| !v.is_empty())
        .map(|v| v.split(',').map(|f| f.trim().to_string()).collect())
}

/// Cases where we deliberately differ from the reference (a reference bug), with our expected
/// output: `__test__/fixtures/prompt-divergences.json`, explained in `docs/prompt-divergences.md`.
fn load_divergences() -> Vec<Value> {
    let path = manifest_dir().join("../../__test__/fixtures/prompt-divergences.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Vec::new();
    };
    let doc: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()));
    doc.get("cases")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_else(|| panic!("{} has no \"cases\" list", path.display()))
}

fn load_cases() -> Vec<Value> {
    let path = fixture_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read the parity fixture {}: {e}", path.display()));
    let doc: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()));
    doc.get("cases")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_else(|| panic!("{} has no \"cases\" list", path.display()))
}

/// Where two strings first differ, with some context, for readable failures.
fn first_difference(want: &str, got: &str) -> String {
    let at = want
        .char_indices()
        .zip(got.chars())
        .find(|((_, a), b)| a != b)
        .map(|((i, _), _)| i)
        .unwrap_or_else(|| want.len().min(got.len()));
    let start = want[..at]
        .char_indices()
        .rev()
        .nth(40)
        .map_or(0, |(i, _)| i);
    let tail = |s: &str| -> String { s.get(start..).unwrap_or("").chars().take(120).collect() };
    format!(
        "first difference at byte {at}\n      want: {:?}\n      got:  {:?}",
        tail(want),
        tail(got)
    )
}

/// Compare one case; `Err` describes the mismatch.
fn check_case(specs: &ModelSpecs, case: &Value, divergence: Option<&Value>) -> Result<(), String> {
    let result = render_case(specs, case);
    if let Some(reference_error) = case.get("reference_error") {
        // The reference crashed on these inputs; ours must render them (see
        // docs/prompt-divergences.md).
        return result.map(|_| ()).map_err(|e| {
            format!(
                "the reference failed ({reference_error}) and so did we: [{}] {}",
                e.code.as_str(),
                e.message
            )
        });
    }
    let reference = case
        .get("expected")
        .ok_or("case has neither expected nor reference_error")?;
    let expected = match divergence {
        Some(ours) => {
            if ours.get("prompt") == reference.get("prompt") {
                return Err("listed as a divergence but the reference prompt is the same".into());
            }
            ours
        }
        None => reference,
    };
    let got = result.map_err(|e| format!("render failed: [{}] {}", e.code.as_str(), e.message))?;

    let mut problems = Vec::new();
    let want_prompt = expected.get("prompt").and_then(Value::as_str).unwrap_or("");
    if got.prompt != want_prompt {
        problems.push(format!(
            "prompt differs ({} vs {} bytes): {}",
            want_prompt.len(),
            got.prompt.len(),
            first_difference(want_prompt, &got.prompt)
        ));
    }
    let got_layout = serde_json::to_value(&got.layout).map_err(|e| e.to_string())?;
    let want_layout = expected.get("layout").cloned().unwrap_or(Value::Null);
    if got_layout != want_layout {
        problems.push(format!("layout: want {want_layout}, got {got_layout}"));
    }
    let want_reasoning = expected.get("reasoning").and_then(Value::as_bool);
    if want_reasoning != Some(got.reasoning) {
        problems.push(format!(
            "reasoning: want {want_reasoning:?}, got {}",
            got.reasoning
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n    "))
    }
}

#[test]
fn prompt_parity_with_reference_client() {
    let specs = specs();
    let cases = load_cases();
    let divergences = load_divergences();
    let documented =
        std::fs::read_to_string(manifest_dir().join("../../docs/prompt-divergences.md"))
            .unwrap_or_default();
    for d in &divergences {
        let id = d.get("id").and_then(Value::as_str).unwrap_or("<no id>");
        assert!(
            documented.contains(id),
            "divergence {id} is not explained in docs/prompt-divergences.md"
        );
        assert!(
            cases
                .iter()
                .any(|c| c.get("id").and_then(Value::as_str) == Some(id)),
            "divergence {id} names no fixture case"
        );
    }
    let available = specs.families().expect("model-specs folder is readable");

    let mut checked: Vec<(String, usize)> = Vec::new();
    let mut skipped: Vec<String> = Vec::new();
    let mut failures = Vec::new();
    for case in &cases {
        let id = case.get("id").and_then(Value::as_str).unwrap_or("<no id>");
        let config = case.get("config").cloned().unwrap_or(Value::Null);
        let family = match specs.family_for_config(&config) {
            Ok(family) => family,
            Err(_) => {
                let model_type = config
                    .get("model_type")
                    .and_then(Value::as_str)
                    .unwrap_or("?");
                if !skipped.iter().any(|s| s == model_type) {
                    skipped.push(model_type.to_string());
                }
                continue;
            }
        };
        if family_filter().is_some_and(|only| !only.contains(&family)) {
            continue;
        }
        match checked.iter_mut().find(|(f, _)| *f == family) {
            Some((_, n)) => *n += 1,
            None => checked.push((family.clone(), 1)),
        }
        let divergence = divergences
            .iter()
            .find(|d| d.get("id").and_then(Value::as_str) == Some(id));
        if let Err(problem) = check_case(&specs, case, divergence) {
            failures.push(format!("{id}:\n    {problem}"));
        }
    }

    eprintln!("families with a profile: {available:?}");
    eprintln!("cases checked per family: {checked:?}");
    eprintln!("model types without a profile (skipped): {skipped:?}");
    for (family, _) in REQUIRED_FAMILIES
        .iter()
        .filter(|(f, _)| family_filter().is_none_or(|only| only.iter().any(|o| o == f)))
    {
        let count = checked.iter().find(|(f, _)| f == family).map_or(0, |c| c.1);
        assert!(
            count > 0,
            "no fixture case was checked for required family '{family}'"
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {} checked cases differ from the reference:\n{}",
        failures.len(),
        checked.iter().map(|c| c.1).sum::<usize>(),
        failures.join("\n")
    );
}

/// The fixture cases of every required family, counted, so a shrinking fixture (or a
/// `model_type` that stops resolving) is noticed.
#[test]
fn fixture_cases_of_every_family_are_all_present() {
    let specs = specs();
    let cases = load_cases();
    let count = |family: &str| {
        cases
            .iter()
            .filter(|c| {
                c.get("config")
                    .and_then(|cfg| specs.family_for_config(cfg).ok())
                    .as_deref()
                    == Some(family)
            })
            .count()
    };
    for &(family, expected) in REQUIRED_FAMILIES {
        assert_eq!(
            count(family),
            expected,
            "expected the {expected} {family} cases of the parity fixture"
        );
    }
    assert_eq!(
        REQUIRED_FAMILIES.iter().map(|(_, n)| n).sum::<usize>(),
        cases.len(),
        "every fixture case belongs to a required family"
    );
}
