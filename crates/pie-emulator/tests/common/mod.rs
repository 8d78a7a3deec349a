//! Test harness: spawn the emulator binary under a private cache root and talk to it the
//! way a client does (PUSH frames, SUB deltas/events, REQ management).

#![allow(dead_code)]

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use orchard_core::nng::{Protocol, Socket};
use orchard_core::paths::Endpoints;
use orchard_core::wire::delta::{channel_topic, EVENT_PREFIX};
use orchard_core::wire::{
    decode_message, encode_request, Delta, EngineEvent, Incoming, PromptPayload, Request,
    RequestType,
};
use serde_json::{json, Value};

/// Generous: the suite must pass on a loaded two-core machine.
pub const WAIT: Duration = Duration::from_secs(30);
pub const EOT_TOKEN_ID: i64 = 128009;

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn unique() -> u64 {
    COUNTER.fetch_add(1, Ordering::SeqCst)
}

pub struct Emu {
    child: Child,
    pub root: PathBuf,
    pub endpoints: Endpoints,
    /// Remove `root` on drop (off for a second engine sharing another's root).
    pub owns_root: bool,
    exited: Option<ExitStatus>,
}

impl Emu {
    pub fn start() -> Emu {
        Emu::start_with(&[])
    }

    /// Start with extra environment (`PIE_EMULATOR_TOKEN_DELAY_MS` defaults to 1 here).
    pub fn start_with(env: &[(&str, &str)]) -> Emu {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        // Short on purpose: Unix socket paths are limited to ~104 bytes.
        let root = PathBuf::from(format!(
            "/tmp/pe-{}-{}-{:x}",
            std::process::id(),
            unique(),
            nanos & 0xffff
        ));
        Emu::start_in(root, "engine.log", env)
    }

    /// Start under an existing or new cache root, logging to `<root>/<log_name>`.
    pub fn start_in(root: PathBuf, log_name: &str, env: &[(&str, &str)]) -> Emu {
        std::fs::create_dir_all(&root).expect("create test root");
        let log = File::create(root.join(log_name)).expect("create log");
        let log_err = log.try_clone().expect("clone log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_proxy_inference_engine"));
        cmd.env("ORCHARD_CACHE_ROOT", &root)
            .env_remove("ORCHARD_IPC_ROOT")
            .env_remove("PIE_EMULATOR_LINGER")
            .env("PIE_EMULATOR_TOKEN_DELAY_MS", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn the emulator");
        let endpoints = Endpoints::under(&root.join("ipc")).expect("endpoints");
        Emu {
            child,
            root,
            endpoints,
            owns_root: true,
            exited: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("engine.log")).unwrap_or_default()
    }

    /// A client connected to all three sockets, past the first heartbeat.
    pub fn client(&self) -> Client {
        Client::connect(&self.endpoints, self)
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: sending a signal to our own child.
        unsafe {
            libc::kill(self.pid() as libc::pid_t, sig);
        }
    }

    /// Wait up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.exited {
                return Some(s);
            }
            if let Ok(Some(s)) = self.child.try_wait() {
                self.exited = Some(s);
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.exited.is_none() && matches!(self.child.try_wait(), Ok(None))
    }

    /// Create `<root>/models/<name>/config.json`.
    pub fn model_dir(&self, name: &str) -> String {
        let dir = self.root.join("models").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), br#"{"model_type":"llama"}"#).unwrap();
        dir.to_string_lossy().into_owned()
    }

    pub fn threads(&self) -> Option<u32> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .and_then(|v| v.trim().parse().ok())
    }
}

impl Drop for Emu {
    fn drop(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- emulator log ({}) ----\n{}",
                self.root.display(),
                self.log()
            );
        }
        if self.owns_root {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

pub struct Client {
    pub push: Socket,
    pub sub: Socket,
    pub req: Socket,
    pub channel: u64,
    pub first_telemetry: EngineEvent,
    /// Messages read while looking for something else.
    backlog: std::cell::RefCell<Vec<Incoming>>,
}

impl Client {
    pub fn connect(endpoints: &Endpoints, emu: &Emu) -> Client {
        let channel = ((u64::from(std::process::id()) & 0x1f_ffff) << 32) | (unique() + 1);
        let sub = Socket::open(Protocol::Sub).unwrap();
        sub.set_recv_buffer(8192).unwrap();
        sub.set_recv_max_size(0).unwrap();
        sub.subscribe(channel_topic(channel).as_bytes()).unwrap();
        sub.subscribe(EVENT_PREFIX).unwrap();
        sub.set_reconnect_times(Duration::from_millis(10), Duration::from_millis(100))
            .unwrap();
        sub.set_recv_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        sub.dial(&endpoints.responses, false).unwrap();
        let push = Socket::open(Protocol::Push).unwrap();
        push.set_reconnect_times(Duration::from_millis(10), Duration::from_millis(100))
            .unwrap();
        push.set_send_timeout(Some(WAIT)).unwrap();
        push.dial(&endpoints.requests, false).unwrap();
        let req = Socket::open(Protocol::Req).unwrap();
        req.set_reconnect_times(Duration::from_millis(10), Duration::from_millis(100))
            .unwrap();
        req.set_recv_max_size(0).unwrap();
        req.dial(&endpoints.management, false).unwrap();
        let mut c = Client {
            push,
            sub,
            req,
            channel,
            first_telemetry: EngineEvent {
                name: String::new(),
                payload: Value::Null,
            },
            backlog: Default::default(),
        };
        // Slow joiner: nothing published before our SUB pipe is up reaches us, so wait for
        // a heartbeat before sending anything.
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(Incoming::Event(e)) = c.recv_raw(Duration::from_millis(200)) {
                if e.name == "telemetry" {
                    c.first_telemetry = e;
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no telemetry from the emulator (pid {}):\n{}",
                emu.pid(),
                emu.log()
            );
        }
        c
    }

    fn recv_raw(&self, timeout: Duration) -> Option<Incoming> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.sub.recv() {
                Ok(m) => {
                    return Some(decode_message(&m).unwrap_or_else(|e| {
                        panic!("undecodable message {:?}: {e}", String::from_utf8_lossy(&m))
                    }))
                }
                Err(e) if e.is_timeout() => {
                    if Instant::now() >= deadline {
                        return None;
                    }
                }
                Err(e) => panic!("sub recv: {e}"),
            }
        }
    }

    /// Next message (delta or event) within `timeout`.
    pub fn next(&self, timeout: Duration) -> Option<Incoming> {
        let mut backlog = self.backlog.borrow_mut();
        if !backlog.is_empty() {
            return Some(backlog.remove(0));
        }
        drop(backlog);
        self.recv_raw(timeout)
    }

    /// Management command with a reply expected within [`WAIT`].
    pub fn mgmt(&self, cmd: Value) -> Value {
        self.try_mgmt(&cmd, WAIT)
            .unwrap_or_else(|| panic!("no reply to {cmd}"))
    }

    pub fn try_mgmt(&self, cmd: &Value, timeout: Duration) -> Option<Value> {
        self.req.set_recv_timeout(Some(timeout)).unwrap();
        self.req.set_send_timeout(Some(timeout)).unwrap();
        self.req_raw(serde_json::to_vec(cmd).unwrap().as_slice())
    }

    pub fn req_raw(&self, bytes: &[u8]) -> Option<Value> {
        self.req.send(bytes).ok()?;
        let reply = self.req.recv().ok()?;
        Some(serde_json::from_slice(&reply).expect("management reply is JSON"))
    }

    /// Wait for event `name` (other messages are kept for later).
    pub fn event(&self, name: &str, timeout: Duration) -> EngineEvent {
        let deadline = Instant::now() + timeout;
        let mut skipped = Vec::new();
        let found = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left.max(Duration::from_millis(1))) {
                Some(Incoming::Event(e)) if e.name == name => break Some(e),
                Some(Incoming::Event(_)) => {}
                Some(other) => skipped.push(other),
                None => {}
            }
            if Instant::now() >= deadline {
                break None;
            }
        };
        self.backlog.borrow_mut().extend(skipped);
        found.unwrap_or_else(|| panic!("no '{name}' event within {timeout:?}"))
    }

    /// Next event named `name` about `model_id` that is `model_loaded` or `model_load_failed`.
    pub fn activation_event(&self, model_id: &str) -> EngineEvent {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no activation event for {model_id}");
            if let Some(Incoming::Event(e)) = self.next(left) {
                if (e.name == "model_loaded" || e.name == "model_load_failed")
                    && e.model_id() == Some(model_id)
                {
                    return e;
                }
            }
        }
    }

    /// Load a model directory and wait until it is ready.
    pub fn load(&self, emu: &Emu, id: &str) {
        let path = emu.model_dir(&id.replace('/', "_"));
        let reply = self.mgmt(json!({
            "type": "load_model", "requested_id": id, "canonical_id": id,
            "model_path": path, "wait_for_completion": false
        }));
        match reply["status"].as_str() {
            Some("ok") => {}
            Some("accepted") => {
                let e = self.activation_event(id);
                assert_eq!(e.name, "model_loaded", "{:?}", e.payload);
            }
            _ => panic!("load_model refused: {reply}"),
        }
    }

    pub fn send(&self, req: &Request) {
        let frame = encode_request(req).expect("encode request");
        self.push.send(&frame).expect("push request");
    }

    pub fn send_raw(&self, frame: &[u8]) {
        self.push.send(frame).expect("push frame");
    }

    /// Collect the deltas of `request_id` until `finals` final deltas arrived.
    pub fn collect(&self, request_id: u64, finals: usize) -> Vec<Delta> {
        let deadline = Instant::now() + WAIT;
        let mut out = Vec::new();
        let mut seen = 0;
        while seen < finals {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "request {request_id}: {seen} of {finals} finals after {WAIT:?}"
            );
            if let Some(Incoming::Delta { channel, delta }) = self.next(left) {
                assert_eq!(channel, self.channel);
                if delta.request_id == request_id {
                    if delta.is_final_delta {
                        seen += 1;
                    }
                    out.push(*delta);
                }
            }
        }
        out
    }

    /// Deltas of `request_id` arriving within `window` (for "nothing more" checks).
    pub fn drain_for(&self, request_id: u64, window: Duration) -> Vec<Delta> {
        let deadline = Instant::now() + window;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return out;
            }
            if let Some(Incoming::Delta { delta, .. }) = self.next(left) {
                if delta.request_id == request_id {
                    out.push(*delta);
                }
            }
        }
    }
}

pub fn prompt(text: &str, max_tokens: u64) -> PromptPayload {
    PromptPayload {
        text: text.as_bytes().to_vec(),
        max_generated_tokens: max_tokens,
        rng_seed: Some(7),
        ..PromptPayload::default()
    }
}

pub fn request(
    client: &Client,
    request_id: u64,
    model: &str,
    kind: RequestType,
    prompts: Vec<PromptPayload>,
) -> Request {
    Request {
        request_id,
        model_id: model.to_string(),
        model_path: String::new(),
        request_type: kind,
        request_channel_id: 0,
        response_channel_id: client.channel,
        prompts,
    }
}

/// Deltas grouped by sequence id, in arrival order.
pub fn by_sequence(deltas: &[Delta]) -> HashMap<u64, Vec<Delta>> {
    let mut m: HashMap<u64, Vec<Delta>> = HashMap::new();
    for d in deltas {
        m.entry(d.sequence_id.expect("sequence_id set"))
            .or_default()
            .push(d.clone());
    }
    m
}

/// Check the one-final-last rule for every sequence and return each sequence's text.
pub fn check_sequences(deltas: &[Delta]) -> HashMap<u64, String> {
    let mut texts = HashMap::new();
    for (id, ds) in by_sequence(deltas) {
        let finals = ds.iter().filter(|d| d.is_final_delta).count();
        assert_eq!(finals, 1, "sequence {id} has {finals} final deltas");
        assert!(
            ds.last().unwrap().is_final_delta,
            "sequence {id}: final is not last"
        );
        let (p, c) = (ds[0].prompt_index, ds[0].candidate_index);
        assert!(p.is_some() && c.is_some(), "sequence {id} lacks indexes");
        assert!(ds
            .iter()
            .all(|d| d.prompt_index == p && d.candidate_index == c));
        texts.insert(
            id,
            ds.iter()
                .filter_map(|d| d.content.clone())
                .collect::<String>(),
        );
    }
    texts
}

pub fn text_of(deltas: &[Delta]) -> String {
    deltas.iter().filter_map(|d| d.content.clone()).collect()
}

pub fn tokens_of(deltas: &[Delta]) -> Vec<i64> {
    deltas.iter().flat_map(|d| d.tokens.clone()).collect()
}

pub fn root_path(emu: &Emu) -> &Path {
    &emu.root
}
