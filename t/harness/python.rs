//! The official Python SDKs (`openai`, `anthropic`) as real clients: a virtualenv made once per
//! target directory with `python3 -m venv` and `pip install` (pinned versions), then scripts
//! from `t/sdk/` run against the gateway under test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use serde_json::Value;

/// The SDK versions the tests are written against.
const PACKAGES: [&str; 2] = ["openai==3.57.0", "anthropic==2.14.0"];

static VENV: Mutex<Option<PathBuf>> = Mutex::new(None);

/// The virtualenv's interpreter, made (or found ready) on first use. Panics with pip's output
/// when the SDKs cannot be installed: these tests must not pass without them.
fn python() -> PathBuf {
    let mut venv = VENV.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(python) = venv.as_ref() {
        return python.clone();
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-sdks");
    let python = dir.join("bin").join("python");
    let marker = dir.join(format!("installed-{}", PACKAGES.join("-")));
    if !marker.exists() {
        run(Command::new("python3").args(["-m", "venv"]).arg(&dir), "python3 -m venv");
        run(
            Command::new(&python)
                .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
                .args(PACKAGES),
            "pip install",
        );
        std::fs::write(&marker, b"").unwrap();
    }
    *venv = Some(python.clone());
    python
}

fn run(command: &mut Command, what: &str) {
    let output = command.output().unwrap_or_else(|err| panic!("{what} could not start: {err}"));
    assert!(
        output.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs `t/sdk/<script>` with `env` and returns the JSON object it prints last. Panics with the
/// script's stderr (the SDK's exception) when it fails.
pub async fn run_sdk(script: &str, env: &[(&str, String)]) -> Value {
    let python = tokio::task::spawn_blocking(python).await.unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("t").join("sdk").join(script);
    let output = tokio::process::Command::new(python)
        .arg(&path)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("NO_PROXY", "*")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{script} failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|err| panic!("{script} printed no JSON ({err}): {stdout}"))
}
