//! The benchmark baseline: a plain SUB consumer with no routing, queues or JavaScript.
//!
//! It sends `--streams` generation requests of `--deltas` tokens each to the engine at the
//! current IPC root, receives on one SUB socket, decodes every message (as the SDK does) and
//! stops when every sequence has sent its final delta, or after `--quiet-ms` of silence.
//! Prints one JSON object: `{"deltas":N,"finals":F,"seconds":S,"cpu_us":C}`, where `cpu_us` is
//! the process's user + system CPU time from the first request to the last delta
//! (`getrusage`), the cost this consumer pays for what it received.
//!
//! cargo run --release -p orchard-core --example raw_sub -- --model <dir> [--streams 1] [--deltas 100000]

use std::time::{Duration, Instant};

use orchard_core::nng::{Protocol, Socket};
use orchard_core::paths::Endpoints;
use orchard_core::transport::new_channel_id;
use orchard_core::wire::{
    self, delta::channel_topic, Incoming, PromptPayload, Request, RequestType,
};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// User + system CPU time of this process so far, in microseconds.
fn cpu_us() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let us = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
    us(u.ru_utime) + us(u.ru_stime)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let model = arg("--model").ok_or("--model <canonical id / directory> is required")?;
    let streams: u64 = arg("--streams").map_or(Ok(1), |s| s.parse())?;
    let deltas: u64 = arg("--deltas").map_or(Ok(100_000), |s| s.parse())?;
    let quiet = Duration::from_millis(arg("--quiet-ms").map_or(Ok(2_000), |s| s.parse())?);

    let endpoints = Endpoints::from_env()?;
    let channel = new_channel_id();
    let sub = Socket::open(Protocol::Sub)?;
    sub.set_recv_buffer(8192)?;
    sub.set_recv_max_size(0)?;
    sub.subscribe(channel_topic(channel).as_bytes())?;
    sub.dial(&endpoints.responses, true)?;
    let push = Socket::open(Protocol::Push)?;
    push.dial(&endpoints.requests, true)?;
    // Let the SUB pipe finish connecting before anything is published for us.
    std::thread::sleep(Duration::from_millis(200));
    sub.set_recv_timeout(Some(quiet))?;

    let cpu_start = cpu_us();
    let start = Instant::now();
    for request_id in 1..=streams {
        let req = Request {
            request_id,
            model_id: model.clone(),
            model_path: model.clone(),
            request_type: RequestType::Generation,
            request_channel_id: 0,
            response_channel_id: channel,
            prompts: vec![PromptPayload {
                text: b"flood".to_vec(),
                max_generated_tokens: deltas,
                stop_sequences: vec!["<never>".into()],
                ..PromptPayload::default()
            }],
        };
        push.send(&wire::encode_request(&req)?)?;
    }
    let (mut received, mut finals) = (0u64, 0u64);
    let mut last = start;
    while finals < streams {
        match sub.recv() {
            Ok(msg) => {
                if let Incoming::Delta { delta, .. } = wire::decode_message(&msg)? {
                    received += 1;
                    finals += u64::from(delta.is_final_delta);
                    last = Instant::now();
                }
            }
            Err(e) if e.is_timeout() => break,
            Err(e) => return Err(e.into()),
        }
    }
    let seconds = (last - start).as_secs_f64();
    let cpu = cpu_us() - cpu_start;
    println!(
        "{{\"deltas\":{received},\"finals\":{finals},\"seconds\":{seconds},\"cpu_us\":{cpu}}}"
    );
    Ok(())
}
