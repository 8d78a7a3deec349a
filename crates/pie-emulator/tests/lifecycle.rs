//! End-to-end tests of the emulator binary: heartbeats, management commands, model loading,
//! client registration and the engine's own lifecycle.

mod common;

use std::time::Duration;

use common::*;
use orchard_core::wire::RequestType;
use serde_json::json;

#[test]
fn heartbeat_carries_pid_and_full_schema_and_pid_file_is_written() {
    let emu = Emu::start();
    let c = emu.client();
    let t = &c.first_telemetry;
    assert_eq!(t.telemetry_pid(), Some(emu.pid()));
    let p = &t.payload;
    assert_eq!(p["version"], 1);
    for key in [
        "snapshot_version",
        "uptime_ns",
        "monotonic_timestamp_ns",
        "pid",
        "active_runtimes",
        "active_requests",
        "cpu_usage_percent",
        "system_wattage",
        "system_temperature",
        "shutting_down",
        "health_message",
    ] {
        assert!(p["health"].get(key).is_some(), "health.{key} missing");
    }
    for key in [
        "request_slots_used",
        "request_slots_capacity",
        "response_slots_used",
        "response_slots_capacity",
        "raw_request_queue_depth",
        "processed_sequence_queue_depth",
        "postprocessor_backlog",
        "pending_management_commands",
    ] {
        assert!(p["queues"].get(key).is_some(), "queues.{key} missing");
    }
    for key in [
        "gpu_total_bytes",
        "gpu_reserved_bytes",
        "kv_cache_pages_total",
        "kv_cache_pages_used",
        "prompt_cache_pages",
        "prompt_cache_evictions",
    ] {
        assert!(p["memory"].get(key).is_some(), "memory.{key} missing");
    }
    assert_eq!(p["health"]["shutting_down"], false);
    assert_eq!(p["models"], json!([]));
    let pid_file = std::fs::read_to_string(emu.root.join("engine.pid")).unwrap();
    assert_eq!(pid_file.trim(), emu.pid().to_string());

    // Heartbeats keep coming, and list loaded models with their running sequences.
    c.load(&emu, "org/tiny");
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let e = c.event("telemetry", WAIT);
        let models = e.payload["models"].as_array().unwrap().clone();
        if models.len() == 1 {
            let m = &models[0];
            assert_eq!(m["canonical_id"], "org/tiny");
            assert_eq!(m["requested_id"], "org/tiny");
            assert_eq!(m["load_state"], "ready");
            for key in [
                "runtime_active",
                "waiting_sequences",
                "running_sequences",
                "overflow_buffer",
                "tokens_per_second",
                "avg_step_latency_ms",
            ] {
                assert!(m.get(key).is_some(), "models[0].{key} missing");
            }
            assert!(e.payload["memory"]["gpu_reserved_bytes"].as_u64().unwrap() > 0);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "model never listed");
    }
}

#[test]
fn management_commands_answer_and_never_crash() {
    let emu = Emu::start();
    let c = emu.client();
    assert_eq!(c.mgmt(json!({"type": "ping"})), json!({"status": "ok"}));
    assert_eq!(
        c.mgmt(json!({"type": "frobnicate"})),
        json!({"status": "error", "message": "unknown command 'frobnicate'"})
    );
    let bad = c.req_raw(b"{not json").unwrap();
    assert_eq!(bad["status"], "error");
    assert!(bad["message"].as_str().unwrap().contains("JSON"), "{bad}");
    assert_eq!(c.mgmt(json!([1, 2]))["status"], "error");
    assert_eq!(c.mgmt(json!({"kind": "ping"}))["status"], "error");
    assert_eq!(c.req_raw(&[0xff, 0xfe, 0x00]).unwrap()["status"], "error");
    assert_eq!(
        c.mgmt(json!({"type": "client_register", "client_pid": "x"}))["status"],
        "error"
    );
    assert_eq!(c.mgmt(json!({"type": "cancel_request"}))["status"], "error");
    assert_eq!(
        c.mgmt(json!({"type": "cancel_request", "request_id": 999}))["status"],
        "ok"
    );
    assert_eq!(
        c.mgmt(json!({"type": "cancel_model_load", "requested_id": "nope"}))["status"],
        "ok"
    );
    assert_eq!(
        c.mgmt(json!({"type": "unload_model", "requested_id": "nope"}))["status"],
        "ok"
    );
    let vocab = c.mgmt(json!({"type": "emulator_vocab"}));
    assert_eq!(
        vocab["data"]["emulator_vocab"]["eot_token_id"],
        EOT_TOKEN_ID
    );
    assert!(
        vocab["data"]["emulator_vocab"]["tokens"]
            .as_array()
            .unwrap()
            .len()
            > 100
    );
    let inspect = c.mgmt(json!({"type": "inspect_model_source", "requested_id": "x",
                                "model_path": emu.model_dir("src")}));
    assert_eq!(
        inspect["data"]["inspect_model_source"]["formatter_config"]["model_type"],
        "llama"
    );
    assert_eq!(c.mgmt(json!({"type": "ping"}))["status"], "ok");
}

#[test]
fn load_model_is_accepted_then_announced_and_bad_paths_fail() {
    let emu = Emu::start();
    let c = emu.client();
    let path = emu.model_dir("m1");
    let reply = c.mgmt(json!({"type": "load_model", "requested_id": "m1",
                              "canonical_id": "org/m1", "model_path": path,
                              "wait_for_completion": false}));
    assert_eq!(reply, json!({"status": "accepted"}));
    let e = c.activation_event("org/m1");
    assert_eq!(e.name, "model_loaded");
    assert_eq!(e.payload["event"], "model_loaded");
    assert_eq!(e.payload["capabilities"], json!({}));
    let mem = e.payload["minimum_memory_bytes"].as_u64().unwrap();
    assert!(mem > 0);

    // Loaded already: ok with the load data, for the canonical and the requested id.
    for id in ["org/m1", "m1"] {
        let again = c.mgmt(json!({"type": "load_model", "requested_id": id,
                                  "canonical_id": "org/m1", "model_path": path}));
        assert_eq!(again["status"], "ok", "{again}");
        assert_eq!(
            again["data"]["load_model"],
            json!({"capabilities": {}, "minimum_memory_bytes": mem})
        );
    }
    let list = c.mgmt(json!({"type": "list_models"}));
    let models = list["data"]["list_models"]["models"].as_array().unwrap();
    assert_eq!(models.len(), 1);
    assert_eq!(models[0]["canonical_id"], "org/m1");
    assert_eq!(models[0]["requested_id"], "m1");
    assert_eq!(models[0]["load_state"], "ready");

    // Requests may name the model by its requested id too.
    c.send(&request(
        &c,
        1,
        "m1",
        RequestType::Generation,
        vec![prompt("hi", 3)],
    ));
    let ds = c.collect(1, 1);
    assert!(!ds.last().unwrap().is_error(), "{ds:?}");

    // A missing directory and a directory without config.json.
    let missing = emu.root.join("models").join("absent");
    let missing = missing.to_string_lossy().into_owned();
    let reply = c.mgmt(json!({"type": "load_model", "requested_id": "gone",
                              "canonical_id": "org/gone", "model_path": missing}));
    assert_eq!(reply["status"], "accepted");
    let e = c.activation_event("org/gone");
    assert_eq!(e.name, "model_load_failed");
    let err = e.payload["error"].as_str().unwrap();
    assert!(
        err.contains(&missing) && err.contains("does not exist"),
        "{err}"
    );

    let empty = emu.root.join("models").join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let empty = empty.to_string_lossy().into_owned();
    c.mgmt(
        json!({"type": "load_model", "requested_id": "e", "canonical_id": "org/empty",
                  "model_path": empty}),
    );
    let e = c.activation_event("org/empty");
    assert_eq!(e.name, "model_load_failed");
    let err = e.payload["error"].as_str().unwrap();
    assert!(err.contains(&empty) && err.contains("config.json"), "{err}");

    // Unloading forgets the model.
    assert_eq!(
        c.mgmt(json!({"type": "unload_model", "requested_id": "org/m1"}))["status"],
        "ok"
    );
    c.send(&request(
        &c,
        2,
        "org/m1",
        RequestType::Generation,
        vec![prompt("hi", 3)],
    ));
    assert!(c.collect(2, 1)[0].is_error());
}

#[test]
fn cancel_model_load_reports_cancelled() {
    let emu = Emu::start_with(&[("PIE_EMULATOR_LOAD_DELAY_MS", "3000")]);
    let c = emu.client();
    let path = emu.model_dir("slow");
    let reply = c.mgmt(json!({"type": "load_model", "requested_id": "slow",
                              "canonical_id": "org/slow", "model_path": path}));
    assert_eq!(reply["status"], "accepted");
    let reply = c.mgmt(json!({"type": "cancel_model_load", "requested_id": "slow",
                              "canonical_id": "org/slow"}));
    assert_eq!(reply["status"], "ok");
    let e = c.activation_event("org/slow");
    assert_eq!(e.name, "model_load_failed");
    assert_eq!(e.payload["error"], "Cancelled");
}

#[test]
fn last_deregistration_refuses_new_clients_and_exits() {
    let mut emu = Emu::start_with(&[("PIE_EMULATOR_EXIT_GRACE_MS", "4000")]);
    let c = emu.client();
    let me = std::process::id();
    // Our own pid plus pid 1 (always alive): a set, so registering twice counts once.
    for pid in [me, me, 1] {
        assert_eq!(
            c.mgmt(json!({"type": "client_register", "client_pid": pid}))["status"],
            "ok"
        );
    }
    assert_eq!(
        c.mgmt(json!({"type": "client_deregister", "client_pid": me}))["status"],
        "ok"
    );
    assert_eq!(c.mgmt(json!({"type": "ping"}))["status"], "ok");
    assert!(emu.is_running());
    assert_eq!(
        c.mgmt(json!({"type": "client_deregister", "client_pid": 1}))["status"],
        "ok"
    );
    let refused = c.mgmt(json!({"type": "client_register", "client_pid": me}));
    assert_eq!(
        refused,
        json!({"status": "error", "message": "engine shutting down"})
    );
    let status = emu
        .wait_exit(WAIT)
        .expect("emulator did not exit after its last client left");
    assert!(status.success(), "{status:?}");
    assert!(!emu.root.join("engine.pid").exists());
    assert!(!emu.root.join("ipc").join("pie_requests.ipc").exists());
}

#[test]
fn shutting_down_is_announced_in_telemetry() {
    let mut emu = Emu::start_with(&[
        ("PIE_EMULATOR_EXIT_GRACE_MS", "1500"),
        ("PIE_EMULATOR_TELEMETRY_MS", "100"),
    ]);
    let c = emu.client();
    let me = std::process::id();
    c.mgmt(json!({"type": "client_register", "client_pid": me}));
    c.mgmt(json!({"type": "client_deregister", "client_pid": me}));
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let e = c.event("telemetry", WAIT);
        if e.payload["health"]["shutting_down"] == true {
            break;
        }
        assert!(std::time::Instant::now() < deadline);
    }
    assert!(emu.wait_exit(WAIT).is_some_and(|s| s.success()));
}

#[test]
fn linger_keeps_the_engine_after_the_last_client() {
    let mut emu = Emu::start_with(&[
        ("PIE_EMULATOR_LINGER", "1"),
        ("PIE_EMULATOR_EXIT_GRACE_MS", "0"),
    ]);
    let c = emu.client();
    let me = std::process::id();
    c.mgmt(json!({"type": "client_register", "client_pid": me}));
    c.mgmt(json!({"type": "client_deregister", "client_pid": me}));
    // A later command still gets answered, and registration is still open.
    assert_eq!(
        c.mgmt(json!({"type": "client_register", "client_pid": me}))["status"],
        "ok"
    );
    assert!(emu.is_running());
}

#[test]
fn clients_that_die_without_deregistering_are_reaped() {
    let mut emu = Emu::start_with(&[("PIE_EMULATOR_REAP_MS", "100")]);
    let c = emu.client();
    let mut short = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = short.id();
    short.wait().unwrap();
    assert_eq!(
        c.mgmt(json!({"type": "client_register", "client_pid": dead_pid}))["status"],
        "ok"
    );
    let status = emu
        .wait_exit(WAIT)
        .expect("the dead client was never reaped");
    assert!(status.success());
}

#[test]
fn sigterm_and_sigint_exit_cleanly() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let mut emu = Emu::start_with(&[("PIE_EMULATOR_TOKEN_DELAY_MS", "5")]);
        let c = emu.client();
        c.load(&emu, "m");
        // Mid-generation, so the scheduler is busy when the signal arrives.
        let mut p = prompt("keep going", 100_000);
        p.logit_bias = vec![(EOT_TOKEN_ID, -100.0)];
        c.send(&request(&c, 1, "m", RequestType::Generation, vec![p]));
        let deadline = std::time::Instant::now() + WAIT;
        while !matches!(
            c.next(WAIT),
            Some(orchard_core::wire::Incoming::Delta { .. })
        ) {
            assert!(std::time::Instant::now() < deadline, "no deltas");
        }
        emu.signal(sig);
        let status = emu.wait_exit(WAIT).expect("no exit after the signal");
        assert_eq!(status.code(), Some(0), "signal {sig}: {status:?}");
        assert!(!emu.root.join("engine.pid").exists());
        assert!(emu.log().contains("shutting down"));
    }
}

#[test]
fn pid_file_of_another_process_is_left_alone() {
    let mut emu = Emu::start();
    let c = emu.client();
    drop(c);
    std::fs::write(emu.root.join("engine.pid"), "1\n").unwrap();
    emu.signal(libc::SIGTERM);
    assert!(emu.wait_exit(WAIT).is_some_and(|s| s.success()));
    assert_eq!(
        std::fs::read_to_string(emu.root.join("engine.pid")).unwrap(),
        "1\n"
    );
}

#[test]
fn ipc_root_override_is_honoured() {
    let ipc = format!("/tmp/pe-ipc-{}", std::process::id());
    let _ = std::fs::create_dir_all(&ipc);
    let mut emu = Emu::start_with(&[("ORCHARD_IPC_ROOT", ipc.as_str())]);
    emu.endpoints = orchard_core::paths::Endpoints::under(std::path::Path::new(&ipc)).unwrap();
    let c = emu.client();
    assert_eq!(c.first_telemetry.telemetry_pid(), Some(emu.pid()));
    assert!(std::path::Path::new(&ipc)
        .join("pie_management.ipc")
        .exists());
    drop(c);
    emu.signal(libc::SIGTERM);
    assert!(emu.wait_exit(WAIT).is_some());
    let _ = std::fs::remove_dir_all(&ipc);
}

#[test]
fn an_engine_whose_launcher_dies_before_any_registration_exits() {
    let root = format!("/tmp/pe-orphan-{}", std::process::id());
    std::fs::create_dir_all(&root).unwrap();
    // The shell starts the emulator in the background and exits once it is up (it has
    // written engine.pid), like a client that crashes between launching the engine and
    // registering with it.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(
            "\"$0\" >\"$1/engine.log\" 2>&1 & echo $!; \
             while [ ! -f \"$1/engine.pid\" ]; do sleep 0.02; done",
        )
        .arg(env!("CARGO_BIN_EXE_proxy_inference_engine"))
        .arg(&root)
        .env("ORCHARD_CACHE_ROOT", &root)
        .env_remove("ORCHARD_IPC_ROOT")
        .env_remove("PIE_EMULATOR_LINGER")
        .env("PIE_EMULATOR_REAP_MS", "100")
        .output()
        .unwrap();
    let pid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while orchard_core::engine::process::pid_alive(pid) {
        if std::time::Instant::now() > deadline {
            // SAFETY: killing the emulator this test started.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            panic!("orphaned emulator {pid} did not exit");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(format!("{root}/engine.log")).unwrap_or_default();
    assert!(log.contains("before any client registered"), "{log}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_second_engine_on_the_same_root_refuses_and_leaves_the_first_alone() {
    let first = Emu::start();
    let c = first.client();
    let mut second = Emu::start_in(first.root.clone(), "second.log", &[]);
    second.owns_root = false;
    let status = second
        .wait_exit(WAIT)
        .expect("the second engine kept running");
    assert_eq!(status.code(), Some(1));
    let log = std::fs::read_to_string(first.root.join("second.log")).unwrap();
    assert!(log.contains("cannot listen"), "{log}");
    // The first one still serves, on its own socket files, and still owns the pid file.
    assert_eq!(c.mgmt(json!({"type": "ping"}))["status"], "ok");
    assert!(first.root.join("ipc").join("pie_requests.ipc").exists());
    let pid_file = std::fs::read_to_string(first.root.join("engine.pid")).unwrap();
    assert_eq!(pid_file.trim(), first.pid().to_string());
    let fresh = first.client();
    assert_eq!(fresh.first_telemetry.telemetry_pid(), Some(first.pid()));
}
