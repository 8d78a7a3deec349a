//! Where the engine's files and sockets live (protocol.md §2.2 and §7.1).
//!
//! Resolution order, identical in client and engine:
//! IPC root: `ORCHARD_IPC_ROOT`, else `<cache root>/ipc`.
//! Cache root: `ORCHARD_CACHE_ROOT`, else `~/Library/Caches/com.theproxycompany` when
//! `~/Library/Caches` exists (macOS), else `~/.cache/com.theproxycompany`.
//! Paths are `~`-expanded, created, and resolved (symlinks followed, as orchard-py does).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub const ENGINE_BINARY_NAME: &str = "proxy_inference_engine";
pub const REQUESTS_SOCKET: &str = "pie_requests.ipc";
pub const RESPONSES_SOCKET: &str = "pie_responses.ipc";
pub const MANAGEMENT_SOCKET: &str = "pie_management.ipc";

fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

fn expand_user(raw: &str) -> PathBuf {
    if raw == "~" {
        if let Some(h) = home_dir() {
            return h;
        }
    } else if let Some(rest) = raw.strip_prefix("~/") {
        if let Some(h) = home_dir() {
            return h.join(rest);
        }
    }
    PathBuf::from(raw)
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .map(|v| expand_user(&v))
}

/// Create `dir` and return it with symlinks resolved.
fn ensure_dir(dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(&format!("cannot create {}", dir.display()), e))?;
    dir.canonicalize()
        .map_err(|e| Error::io(&format!("cannot resolve {}", dir.display()), e))
}

fn default_cache_root() -> Result<PathBuf> {
    let home = home_dir().ok_or_else(|| {
        Error::invalid(
            "HOME is not set; set ORCHARD_CACHE_ROOT to choose the engine cache directory",
        )
    })?;
    let mac_caches = home.join("Library").join("Caches");
    let base = if mac_caches.is_dir() {
        mac_caches
    } else {
        home.join(".cache")
    };
    Ok(base.join("com.theproxycompany"))
}

/// The directory holding `engine.pid`, `engine.lock`, `engine.log` and (by default) `ipc/`.
pub fn cache_root() -> Result<PathBuf> {
    let dir = match env_path("ORCHARD_CACHE_ROOT") {
        Some(p) => p,
        None => default_cache_root()?,
    };
    ensure_dir(&dir)
}

/// The directory holding the three IPC socket files.
pub fn ipc_root() -> Result<PathBuf> {
    match env_path("ORCHARD_IPC_ROOT") {
        Some(p) => ensure_dir(&p),
        None => ensure_dir(&cache_root()?.join("ipc")),
    }
}

/// The cache root and IPC root of one engine. An explicit cache root (the `cacheRoot` start
/// option) is private to its engine: its IPC root is `<cache root>/ipc` whatever
/// `ORCHARD_IPC_ROOT` says. Without one, both come from the environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Roots {
    pub cache: PathBuf,
    pub ipc: PathBuf,
}

impl Roots {
    pub fn resolve(explicit_cache: Option<&Path>) -> Result<Roots> {
        match explicit_cache {
            Some(p) => {
                let cache = ensure_dir(&expand_user(&p.to_string_lossy()))?;
                let ipc = ensure_dir(&cache.join("ipc"))?;
                Ok(Roots { cache, ipc })
            }
            None => Ok(Roots {
                cache: cache_root()?,
                ipc: ipc_root()?,
            }),
        }
    }

    pub fn endpoints(&self) -> Result<Endpoints> {
        Endpoints::under(&self.ipc)
    }
}

/// The three engine endpoints under one IPC root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    pub requests: String,
    pub responses: String,
    pub management: String,
}

impl Endpoints {
    pub fn under(root: &Path) -> Result<Endpoints> {
        let url = |name: &str| -> Result<String> {
            let path = root.join(name);
            // Unix socket paths are limited to 104 (macOS) / 108 (Linux) bytes with the NUL.
            let len = path.as_os_str().len();
            if len >= 104 {
                return Err(Error::invalid(format!(
                    "IPC socket path {} is {len} bytes, longer than the 103 a Unix socket allows; \
                     set ORCHARD_IPC_ROOT (or ORCHARD_CACHE_ROOT) to a shorter directory",
                    path.display()
                )));
            }
            Ok(format!("ipc://{}", path.display()))
        };
        Ok(Endpoints {
            requests: url(REQUESTS_SOCKET)?,
            responses: url(RESPONSES_SOCKET)?,
            management: url(MANAGEMENT_SOCKET)?,
        })
    }

    /// Endpoints at the IPC root resolved from the environment.
    pub fn from_env() -> Result<Endpoints> {
        Endpoints::under(&ipc_root()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tilde_expands_to_home() {
        if let Some(h) = home_dir() {
            assert_eq!(expand_user("~/x/y"), h.join("x/y"));
            assert_eq!(expand_user("~"), h);
        }
        assert_eq!(expand_user("/abs/p"), PathBuf::from("/abs/p"));
    }

    #[test]
    fn endpoints_name_the_three_sockets() {
        let e = Endpoints::under(Path::new("/tmp/r")).unwrap();
        assert_eq!(e.requests, "ipc:///tmp/r/pie_requests.ipc");
        assert_eq!(e.responses, "ipc:///tmp/r/pie_responses.ipc");
        assert_eq!(e.management, "ipc:///tmp/r/pie_management.ipc");
    }

    #[test]
    fn an_explicit_cache_root_keeps_its_sockets_inside_it() {
        let dir = std::env::temp_dir().join(format!("orchard-roots-{}", std::process::id()));
        let roots = Roots::resolve(Some(&dir)).unwrap();
        assert_eq!(roots.ipc, roots.cache.join("ipc"));
        assert!(roots.ipc.is_dir());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn overlong_socket_path_is_a_clear_error() {
        let long = "/tmp/".to_string() + &"d".repeat(120);
        let err = Endpoints::under(Path::new(&long)).unwrap_err();
        assert!(err.message.contains("ORCHARD_IPC_ROOT"), "{err}");
    }
}
