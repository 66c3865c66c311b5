//! Finding, measuring and loading the onnxruntime shared library.
//!
//! The library is code that runs on every request, so it is part of what a
//! node attests: its SHA-384 is taken from the very bytes that are mapped
//! (the file is hashed before and after `dlopen`; a change in between is
//! refused). onnxruntime can only be loaded once per process, so the
//! runtime is a process-wide singleton.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use sha2::{Digest, Sha384};
use thiserror::Error;

/// Environment variable naming the onnxruntime shared library.
pub const ORT_LIB_ENV: &str = "ATTESTA_ORT_LIB";

/// The onnxruntime API version (minor release) this build speaks; the
/// library must be at least this version.
pub const ORT_API_MINOR: u32 = ort::MINOR_VERSION;

/// Why the onnxruntime library could not be used.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum OrtLoadError {
    /// No path was configured (`ATTESTA_ORT_LIB` or the node config).
    #[error("no onnxruntime library configured (set {ORT_LIB_ENV})")]
    NotConfigured,
    /// The file could not be read for hashing.
    #[error("reading {path}")]
    Read {
        /// The library path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file changed while it was being loaded.
    #[error("{path} changed while it was being loaded")]
    Changed {
        /// The library path.
        path: PathBuf,
    },
    /// `dlopen` or the version check failed.
    #[error("loading {path}")]
    Dlopen {
        /// The library path.
        path: PathBuf,
        /// What the loader said.
        #[source]
        source: ort::LoadDynamicError,
    },
    /// The library loaded but its environment could not be created.
    #[error("creating the onnxruntime environment")]
    Environment(#[source] ort::Error),
    /// The library panicked inside the bindings while loading.
    #[error("the onnxruntime bindings panicked while loading {path}")]
    Panicked {
        /// The library path.
        path: PathBuf,
    },
    /// An earlier load mapped a library but failed before measuring it.
    #[error("an earlier load of {mapped} failed after mapping it; restart to load onnxruntime")]
    Unmeasured {
        /// The library that was mapped.
        mapped: PathBuf,
    },
    /// Another library is already loaded in this process.
    #[error("onnxruntime is already loaded from {loaded}; cannot also load {wanted}")]
    OtherLoaded {
        /// The library in use.
        loaded: PathBuf,
        /// The one asked for.
        wanted: PathBuf,
    },
}

/// The loaded onnxruntime library: where it came from, what it measures and
/// its version. One per process.
pub struct OrtRuntime {
    path: PathBuf,
    sha384: [u8; 48],
    version: &'static str,
    env: ort::environment::Environment,
}

impl std::fmt::Debug for OrtRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrtRuntime")
            .field("path", &self.path)
            .field("version", &self.version)
            .finish()
    }
}

static RUNTIME: OnceLock<OrtRuntime> = OnceLock::new();
static MAPPED: OnceLock<PathBuf> = OnceLock::new();
static LOADING: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl OrtRuntime {
    /// The library path from `configured`, else from `ATTESTA_ORT_LIB`.
    pub fn locate(configured: Option<&Path>) -> Result<PathBuf, OrtLoadError> {
        match configured {
            Some(p) => Ok(p.to_path_buf()),
            None => std::env::var_os(ORT_LIB_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .ok_or(OrtLoadError::NotConfigured),
        }
    }

    /// Loads the library at `path` (once per process; later calls with the
    /// same file return the same runtime).
    pub fn load(path: &Path) -> Result<&'static OrtRuntime, OrtLoadError> {
        let path = std::fs::canonicalize(path).map_err(|source| OrtLoadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        // One load at a time: `init_from` is a silent no-op once any library
        // is mapped, so a racing load of another file must not record its hash.
        let _serial = LOADING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(rt) = RUNTIME.get() {
            return same_or_refuse(rt, path);
        }
        if let Some(mapped) = MAPPED.get() {
            // A library was mapped but never measured (it changed under us,
            // or its environment failed): nothing loaded later is trusted.
            return Err(OrtLoadError::Unmeasured {
                mapped: mapped.clone(),
            });
        }
        let before = hash_file(&path)?;
        let loaded = std::panic::catch_unwind(|| ort::init_from(&path));
        let builder = match loaded {
            Ok(Ok(b)) => {
                let _ = MAPPED.set(path.clone());
                b
            }
            Ok(Err(source)) => return Err(OrtLoadError::Dlopen { path, source }),
            Err(_) => return Err(OrtLoadError::Panicked { path }),
        };
        if hash_file(&path)? != before {
            return Err(OrtLoadError::Changed { path });
        }
        let env = builder
            .with_name("attesta")
            .with_telemetry(false)
            .build()
            .map_err(OrtLoadError::Environment)?;
        let version = version_of(ort::info(), &path);
        let rt = RUNTIME.get_or_init(|| OrtRuntime {
            path: path.clone(),
            sha384: before,
            version,
            env,
        });
        same_or_refuse(rt, path)
    }

    /// Loads the library `configured` or `ATTESTA_ORT_LIB` names.
    pub fn from_config(configured: Option<&Path>) -> Result<&'static OrtRuntime, OrtLoadError> {
        Self::load(&Self::locate(configured)?)
    }

    /// The runtime, if a library was loaded in this process.
    pub fn loaded() -> Option<&'static OrtRuntime> {
        RUNTIME.get()
    }

    /// The canonical path of the loaded file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// SHA-384 of the loaded file.
    pub fn sha384(&self) -> [u8; 48] {
        self.sha384
    }

    /// The library's version (e.g. `1.31.1`).
    pub fn version(&self) -> &'static str {
        self.version
    }

    pub(crate) fn env(&self) -> &ort::environment::Environment {
        &self.env
    }
}

fn same_or_refuse(
    rt: &'static OrtRuntime,
    wanted: PathBuf,
) -> Result<&'static OrtRuntime, OrtLoadError> {
    if rt.path == wanted {
        Ok(rt)
    } else {
        Err(OrtLoadError::OtherLoaded {
            loaded: rt.path.clone(),
            wanted,
        })
    }
}

fn hash_file(path: &Path) -> Result<[u8; 48], OrtLoadError> {
    let bytes = std::fs::read(path).map_err(|source| OrtLoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Sha384::digest(&bytes).into())
}

/// The release from the build string (`git-branch=rel-1.31.1`), else from
/// the file name (`libonnxruntime.so.1.31.1`), else `unknown`.
fn version_of(build_info: &str, path: &Path) -> &'static str {
    let from_info = build_info
        .split([',', ' '])
        .find_map(|part| part.trim().strip_prefix("git-branch=rel-"))
        .map(str::to_owned);
    let from_name = || {
        let name = path.file_name()?.to_str()?;
        let (_, rest) = name.split_once(".so.")?;
        rest.chars()
            .all(|c| c.is_ascii_digit() || c == '.')
            .then(|| rest.to_owned())
    };
    match from_info.or_else(from_name) {
        // Leaked once per process: the runtime is a singleton.
        Some(v) => Box::leak(v.into_boxed_str()),
        None => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_comes_from_build_info_then_file_name() {
        let p = Path::new("/x/libonnxruntime.so.1.31.1");
        assert_eq!(
            version_of(
                "ORT Build Info: git-branch=rel-1.30.0, git-commit-id=abc",
                p
            ),
            "1.30.0"
        );
        assert_eq!(version_of("ORT Build Info: nothing", p), "1.31.1");
        assert_eq!(
            version_of("nothing", Path::new("/x/libonnxruntime.so")),
            "unknown"
        );
    }
}
