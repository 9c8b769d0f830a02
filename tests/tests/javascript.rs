//! JavaScript nodes (built with componentize-js by lp-host; synchronous
//! worlds only): hello_world in JavaScript (lp:node's own
//! blocking-node-with-run), and JavaScript producers served to the Rust
//! consumer under local_mt, local_mp, test_mt and hosts; without componentize-js the error
//! says how to install it. Skipped (saying why) where componentize-js is
//! not installed, except in CI (`CI` set), which installs it.

use std::process::Command;

use lp_tests::{lp_host, text};

/// The `--set`s that make the producers JavaScript nodes.
const JS_PRODUCERS: [&str; 4] = [
    "--set",
    "producer.component=\"producer_js/app.js\"",
    "--set",
    "producer.world=\"lp:consumer-producers/blocking-producer-node\"",
];

/// Whether componentize-js is there to build these nodes (in CI it must be).
fn installed() -> bool {
    lp_tests::tool_installed(
        "componentize-js",
        "npm install -g @bytecodealliance/componentize-js@0.23.0",
    )
}

#[test]
fn hello_world_in_javascript_prints_its_greeting_and_finishes() {
    if !installed() {
        return;
    }
    let out = lp_host(&[
        "run",
        "examples/hello_world/program.toml",
        "--set",
        "hello.component=\"hello_js/app.js\"",
        "--set",
        "hello.world=\"lp:node/blocking-node-with-run\"",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "[hello] Hello World!!!\n");
}

#[test]
fn javascript_producers_serve_the_rust_consumer_under_every_launch_type() {
    if !installed() {
        return;
    }
    let launches: [&[&str]; 4] = [
        &["--launch", "local_mt"],
        &["--launch", "local_mp"],
        &["--launch", "test_mt", "--seed", "3"],
        &["--launch", "hosts", "--local-agents", "--agents", "2"],
    ];
    for launch in launches {
        let mut args = vec![
            "run",
            "examples/consumer_producers/program.toml",
            "--set",
            "producer.replicas=3",
        ];
        args.extend(launch);
        args.extend(JS_PRODUCERS);
        let out = lp_host(&args);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "{launch:?}: {stderr}");
        for step in 0..10 {
            let line = format!("[consumer] step {step}: [{step}, {step}, {step}]\n");
            assert!(stdout.contains(&line), "{launch:?}: {stdout}");
        }
    }
}

#[test]
fn without_componentize_js_the_error_says_how_to_install_it() {
    let mut args = vec!["check", "examples/consumer_producers/program.toml"];
    args.extend(JS_PRODUCERS);
    let out = Command::new(lp_tests::lp_host_exe())
        .args(&args)
        .current_dir(lp_tests::repo())
        .env("LP_COMPONENTIZE_JS", "/nonexistent/componentize-js")
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot run /nonexistent/componentize-js to build JavaScript node")
            && stderr.contains("npm install -g @bytecodealliance/componentize-js@0.23.0"),
        "{stderr}"
    );
}
