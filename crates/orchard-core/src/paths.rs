//! Where the engine's files and sockets live (protocol.md §2.2 and §7.1).
//!
//! Resolution order, identical in client and engine:
//! IPC root: `ORCHARD_IPC_ROOT`, else `<cache root>/ipc`.
//! Cache root: `ORCHARD_CACHE_ROOT`, else `~/Library/Caches/com.theproxycompany` when
//! `~/Library/Caches` exists (macOS), else `~/.cache/com.theproxycompany`.
//! Paths are `~`-expanded, created, and resolved (symlinks followed, as orchard-py does).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{
    DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _,
};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Every file orchard writes beside the engine (pid, lock, log) is its user's alone, and so
/// are the directories it creates, whatever the umask: the sockets carry every client's
/// prompts and output, and a pid file others could write would point our signals elsewhere.
pub const PRIVATE_FILE_MODE: u32 = 0o600;
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// Open `path` for writing as a private file (created 0600, an existing one set to 0600).
pub fn open_private(path: &Path, truncate: bool) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(truncate)
        .mode(PRIVATE_FILE_MODE)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(PRIVATE_FILE_MODE))?;
    Ok(file)
}

/// Replace `dir/name` with `contents` atomically (a private temporary file, then a rename).
pub fn write_private(dir: &Path, name: &str, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let tmp = dir.join(format!("{name}.{}.tmp", std::process::id()));
    let mut f = open_private(&tmp, true)?;
    f.write_all(contents)?;
    drop(f);
    std::fs::rename(&tmp, dir.join(name))
}

/// Make a socket file private (0600) once it is listening.
pub fn make_socket_private(url: &str) -> std::io::Result<()> {
    match url.strip_prefix("ipc://") {
        Some(path) => {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(PRIVATE_FILE_MODE))
        }
        None => Ok(()),
    }
}

pub const ENGINE_BINARY_NAME: &str = "proxy_inference_engine";
pub const REQUESTS_SOCKET: &str = "pie_requests.ipc";
pub const RESPONSES_SOCKET: &str = "pie_responses.ipc";
pub const MANAGEMENT_SOCKET: &str = "pie_management.ipc";

fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// `~` and `~/…` expanded to `$HOME`; anything else unchanged.
pub fn expand_user(raw: &str) -> PathBuf {
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

/// `p` with `~` expanded, made absolute against the working directory.
fn absolute(p: &Path) -> PathBuf {
    let p = expand_user(&p.to_string_lossy());
    std::path::absolute(&p).unwrap_or(p)
}

/// The engine's install directory (`bin/proxy_inference_engine`, `version.txt`,
/// `install.lock`): `explicit` (the `home` option), else `ORCHARD_HOME`, else `~/.orchard`.
/// `None` only when none is set and `HOME` is unknown.
pub fn orchard_home(explicit: Option<&Path>) -> Option<PathBuf> {
    match explicit
        .map(Path::to_path_buf)
        .or_else(|| env_path("ORCHARD_HOME"))
    {
        Some(p) => Some(absolute(&p)),
        None => home_dir().map(|h| h.join(".orchard")),
    }
}

/// Create `dir` (and missing parents, 0700) and return it with symlinks resolved.
fn ensure_dir(dir: &Path) -> Result<PathBuf> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR_MODE)
        .create(dir)
        .map_err(|e| Error::io(&format!("cannot create {}", dir.display()), e))?;
    dir.canonicalize()
        .map_err(|e| Error::io(&format!("cannot resolve {}", dir.display()), e))
}

/// [`ensure_dir`] for the IPC root, which must be private: refused when another user owns
/// it or others may write to it (they could replace the sockets), tightened to 0700 when it
/// is ours and merely readable by others.
fn ensure_private_dir(dir: &Path) -> Result<PathBuf> {
    let dir = ensure_dir(dir)?;
    let meta = std::fs::metadata(&dir)
        .map_err(|e| Error::io(&format!("cannot inspect {}", dir.display()), e))?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let mode = meta.mode() & 0o777;
    let fix = "choose a directory of your own with ORCHARD_IPC_ROOT or ORCHARD_CACHE_ROOT, or fix its owner and mode (0700)";
    if meta.uid() != me {
        return Err(Error::invalid(format!(
            "the IPC root {} belongs to uid {}, not to this user (uid {me}); refusing to use it: {fix}",
            dir.display(),
            meta.uid()
        )));
    }
    if mode & 0o022 != 0 {
        return Err(Error::invalid(format!(
            "the IPC root {} is writable by other users (mode {mode:o}); refusing to use it: {fix}",
            dir.display()
        )));
    }
    if mode != PRIVATE_DIR_MODE {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(PRIVATE_DIR_MODE))
            .map_err(|e| Error::io(&format!("cannot make {} private", dir.display()), e))?;
    }
    Ok(dir)
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
        Some(p) => ensure_private_dir(&p),
        None => ensure_private_dir(&cache_root()?.join("ipc")),
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
                let ipc = ensure_private_dir(&cache.join("ipc"))?;
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
    fn the_ipc_root_is_made_private_and_a_shared_one_refused() {
        let dir = std::env::temp_dir().join(format!("orchard-private-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let made = ensure_private_dir(&dir).unwrap();
        assert_eq!(std::fs::metadata(&made).unwrap().mode() & 0o777, 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = ensure_private_dir(&dir).unwrap_err();
        assert!(err.message.contains("writable by other users"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn private_files_are_0600_whatever_was_there() {
        let dir = std::env::temp_dir().join(format!("orchard-pfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("engine.log");
        std::fs::write(&f, "x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o666)).unwrap();
        drop(open_private(&f, true).unwrap());
        assert_eq!(std::fs::metadata(&f).unwrap().mode() & 0o777, 0o600);
        write_private(&dir, "engine.pid", b"1\n").unwrap();
        assert_eq!(
            std::fs::metadata(dir.join("engine.pid")).unwrap().mode() & 0o777,
            0o600
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn overlong_socket_path_is_a_clear_error() {
        let long = "/tmp/".to_string() + &"d".repeat(120);
        let err = Endpoints::under(Path::new(&long)).unwrap_err();
        assert!(err.message.contains("ORCHARD_IPC_ROOT"), "{err}");
    }
}
