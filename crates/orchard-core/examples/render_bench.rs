//! Render / build / encode timings for the benchmark conversation (10 turns, two tools), per
//! family, without an engine or Node: the Rust share of `renderChat` / `wire.buildChatFrame`
//! (`npm run bench` reports these as `rust_*`). Used to profile the prompt path (e.g. under
//! callgrind).
//!
//! cargo run --release -p orchard-core --example render_bench -- [--iters 2000] [--family llama3]

use std::path::Path;

use orchard_core::chat::{build_request, ChatOptions, Target};
use orchard_core::format::{render_case, ModelSpecs};
use orchard_core::wire;
use serde_json::{json, Value};

// The Node addon's allocator, so these figures are the Rust share of what `renderChat` costs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn conversation() -> (Value, Value) {
    let tools = json!([
        {"type": "function", "function": {"name": "get_weather", "description": "Current weather for a city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
        {"type": "function", "function": {"name": "search_orchards", "description": "Find orchards near a place", "parameters": {"type": "object", "properties": {"place": {"type": "string"}, "radius_km": {"type": "number"}}, "required": ["place"]}}}
    ]);
    let mut messages = vec![
        json!({"role": "system", "content": "You are a helpful assistant for fruit growers."}),
    ];
    for i in 0..10 {
        messages.push(json!({"role": "user", "content": format!("Question {i}: which apple varieties grow well in a cool, wet climate near the coast?")}));
        messages.push(json!({"role": "assistant", "content": format!("Answer {i}: Cox's Orange Pippin, Discovery and Katy do well there; plant on well-drained ground.")}));
    }
    messages.push(json!({"role": "user", "content": "And pears?"}));
    (Value::Array(messages), tools)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// CPU time of this thread, in µs: unlike wall time, it does not count the time the thread waits
/// for a core on a shared machine.
fn thread_cpu_us() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e6 + ts.tv_nsec as f64 / 1e3
}

/// µs of CPU per call: the median of 5 batches of `iters / 5` calls, after a warm-up.
fn time(iters: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..iters / 10 + 1 {
        f();
    }
    let batch = (iters / 5).max(1);
    let mut per = Vec::with_capacity(5);
    for _ in 0..5 {
        let start = thread_cpu_us();
        for _ in 0..batch {
            f();
        }
        per.push((thread_cpu_us() - start) / batch as f64);
    }
    (median(per) * 10.0).round() / 10.0
}

fn main() {
    let iters: usize = arg("--iters").map_or(2000, |s| s.parse().unwrap());
    let only = arg("--family");
    let specs = ModelSpecs::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../model-specs"));
    let (messages, tools) = conversation();
    let mut out = serde_json::Map::new();
    for family in ["llama3", "qwen3_5", "gpt_oss"] {
        if only.as_deref().is_some_and(|f| f != family) {
            continue;
        }
        let config = json!({"model_type": family});
        let input = json!({"config": config, "messages": messages, "tools": tools});
        let render = time(iters, || {
            render_case(&specs, &input).unwrap();
        });
        let profile = specs.profile_for_config(&config).unwrap();
        let opts = ChatOptions::parse(&json!({"tools": tools, "maxTokens": 256})).unwrap();
        let target = Target {
            request_id: 1,
            model_id: "model",
            model_path: "",
            response_channel_id: 1,
        };
        let msgs = messages.as_array().unwrap();
        let build = time(iters, || {
            let req = build_request(&profile, &config, msgs.clone(), &opts, &target).unwrap();
            wire::encode_request(&req).unwrap();
        });
        let req = build_request(&profile, &config, msgs.clone(), &opts, &target).unwrap();
        let encode = time(iters, || {
            wire::encode_request(&req).unwrap();
        });
        out.insert(format!("render_us_{family}"), json!(render));
        out.insert(format!("render_encode_us_{family}"), json!(build));
        out.insert(format!("encode_us_{family}"), json!(encode));
    }
    println!("{}", Value::Object(out));
}
