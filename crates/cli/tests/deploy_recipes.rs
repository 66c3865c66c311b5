//! What can be checked of the deploy/ recipes without TEE hardware: the Gramine manifest
//! template renders (with Jinja2, as gramine-manifest does) into a manifest that measures
//! the binary and attests with DCAP; the systemd unit passes `systemd-analyze verify`
//! without a warning; and the command lines the recipes run are ones this binary accepts
//! (they reach the TEE device and fail there, not on usage).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support;

use std::path::Path;
use std::process::Command;

use support::*;

fn deploy(p: &str) -> std::path::PathBuf {
    workspace().join("deploy").join(p)
}

/// Renders the Gramine template with `defines`; the manifest text or the error.
fn render(defines: &[(&str, &str)]) -> Result<String, String> {
    let mut c = Command::new(python());
    c.arg(workspace().join("tests/deploy/render_gramine.py"))
        .arg(deploy("gramine/attesta.manifest.template"));
    for (k, v) in defines {
        c.arg(format!("-D{k}={v}"));
    }
    let out = c.output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn strings(v: &toml::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// Runs `attesta ARGS` and returns (exit code, stderr).
fn run_err(args: &[String]) -> (i32, String) {
    let out = attesta().args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn gramine_manifest_renders_measures_the_binary_and_attests_with_dcap() {
    let base = [
        ("arch_libdir", "/lib/x86_64-linux-gnu"),
        ("attesta_bin", "/opt/attesta/attesta"),
        ("model_store", "/srv/models"),
        ("listen", "0.0.0.0:8000"),
        ("log_level", "error"),
    ];
    for engine in ["", "/opt/ort/libonnxruntime.so"] {
        let mut defines = base.to_vec();
        defines.push(("engine_lib", engine));
        let text = render(&defines).unwrap();
        let m: toml::Value = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let sgx = &m["sgx"];
        assert_eq!(sgx["remote_attestation"].as_str(), Some("dcap"));
        assert_eq!(sgx["debug"].as_bool(), Some(false));
        let trusted = strings(&sgx["trusted_files"]);
        let allowed = strings(&sgx["allowed_files"]);
        assert!(trusted.contains(&"file:/opt/attesta/attesta".to_owned()));
        assert_eq!(allowed, ["file:/srv/models/"], "only the model store");
        assert!(
            !trusted.iter().any(|t| t.contains("/srv/models")),
            "{trusted:?}"
        );
        let env = m["loader"]["env"].as_table().unwrap();
        if engine.is_empty() {
            assert!(!trusted.iter().any(|t| t.contains("onnxruntime")));
            assert!(!env.contains_key("ORT_DYLIB_PATH"));
        } else {
            assert!(trusted.contains(&format!("file:{engine}")));
            assert_eq!(env["ORT_DYLIB_PATH"].as_str(), Some(engine));
        }
        // Nothing lets the host change what runs.
        for insecure in [
            "insecure__use_cmdline_argv",
            "insecure__use_host_env",
            "insecure__disable_aslr",
        ] {
            assert!(!text.contains(insecure), "{insecure}");
        }
        // The measured command line is one this binary accepts: it gets as far as looking
        // for Gramine's attestation interface (absent here), not a usage error.
        let argv = strings(&m["loader"]["argv"]);
        assert_eq!(argv[0], "attesta");
        let (code, err) = run_err(&argv[1..]);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("/dev/attestation"), "{err}");
    }
    // gramine-manifest is strict about undefined variables, and so is this rendering.
    let err = render(&base).unwrap_err();
    assert!(err.contains("engine_lib"), "{err}");
}

#[test]
fn systemd_unit_verifies_and_runs_a_config_this_binary_reads() {
    let unit = std::fs::read_to_string(deploy("cvm/attesta-node.service")).unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap();
    let args: Vec<&str> = exec.split_whitespace().collect();
    assert_eq!(args[0], "/usr/local/bin/attesta");

    // The config file and the flags of ExecStart: accepted, and the node stops only because
    // this machine has no configfs-tsm.
    let mut argv: Vec<String> = args[1..].iter().map(|s| s.to_string()).collect();
    let config = deploy("cvm/node.toml");
    argv[1] = config.to_str().unwrap().to_owned();
    assert_eq!(args[1], "--config");
    let (code, err) = run_err(&argv);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("/sys/kernel/config/tsm"), "{err}");

    let Ok(out) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("SKIPPED systemd-analyze verify: systemd-analyze is not installed");
        return;
    };
    assert!(out.status.success());
    let dir = tempfile::tempdir().unwrap();
    let verify = |text: &str| {
        // verify checks that ExecStart exists: point it at the binary under test.
        let p = dir.path().join("attesta-node.service");
        std::fs::write(
            &p,
            text.replace("/usr/local/bin/attesta", env!("CARGO_BIN_EXE_attesta")),
        )
        .unwrap();
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&p)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        (out.status.success() && said.trim().is_empty(), said)
    };
    let (ok, said) = verify(&unit);
    assert!(ok, "systemd-analyze verify: {said}");
    // A misspelled directive is only a warning to systemd, and a failure here.
    let (ok, said) = verify(&unit.replace("NoNewPrivileges=", "NoNewPrivilegez="));
    assert!(!ok && said.contains("NoNewPrivilegez"), "{said}");
}

#[test]
fn nitro_enclave_entry_runs_a_command_this_binary_accepts() {
    let init = std::fs::read_to_string(deploy("nitro/enclave-init.sh")).unwrap();
    let start = init.find("exec /usr/local/bin/attesta").unwrap();
    let command = init[start..].replace("\\\n", " ");
    let data = tempfile::tempdir().unwrap();
    let argv: Vec<String> = command
        .split_whitespace()
        .skip(2)
        .map(|a| {
            a.trim_matches('"')
                .replace("$ATTESTA_DATA_DIR", data.path().to_str().unwrap())
        })
        .collect();
    assert!(
        argv.windows(2)
            .any(|w| w[0] == "--listen" && w[1].starts_with("vsock:"))
    );
    let (code, err) = run_err(&argv);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("/dev/nsm"), "{err}");
    // The scripts parse, and the Dockerfile copies files that exist in the tree.
    for (shell, script) in [("sh", "nitro/enclave-init.sh"), ("bash", "nitro/run.sh")] {
        let ok = Command::new(shell)
            .arg("-n")
            .arg(deploy(script))
            .status()
            .unwrap()
            .success();
        assert!(ok, "{script}");
    }
    let dockerfile = std::fs::read_to_string(deploy("nitro/Dockerfile")).unwrap();
    for line in dockerfile.lines().filter(|l| l.starts_with("COPY ")) {
        let src = line.split_whitespace().nth(1).unwrap();
        if src != "dist/attesta" {
            assert!(Path::new(&workspace().join(src)).exists(), "{line}");
        }
    }
}
