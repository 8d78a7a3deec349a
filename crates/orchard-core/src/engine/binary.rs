//! Which engine binary to launch: the one place that decides it (the TypeScript layer asks
//! here through the binding).

use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorCode, Result};
use crate::paths::{self, ENGINE_BINARY_NAME};

/// PIE is built for macOS on Apple Silicon only.
pub const PIE_RUNS_HERE: bool = cfg!(all(target_os = "macos", target_arch = "aarch64"));

/// Where to look for the engine binary, with the reason. The first configured source wins
/// alone (the `binary` option, then `ORCHARD_ENGINE_BINARY`, then `PIE_LOCAL_BUILD`): a
/// configured path that does not exist is an error, never a silent fallback. Otherwise the
/// install in `home` (the `home` option, then `ORCHARD_HOME`, then `~/.orchard`).
pub fn binary_candidates(
    explicit: Option<&Path>,
    home: Option<&Path>,
) -> Vec<(PathBuf, &'static str)> {
    let env = |name: &str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .map(|v| paths::expand_user(&v))
    };
    if let Some(p) = explicit {
        return vec![(p.to_path_buf(), "the binary option")];
    }
    if let Some(p) = env("ORCHARD_ENGINE_BINARY") {
        return vec![(p, "ORCHARD_ENGINE_BINARY")];
    }
    if let Some(p) = env("PIE_LOCAL_BUILD") {
        return vec![(p.join("bin").join(ENGINE_BINARY_NAME), "PIE_LOCAL_BUILD")];
    }
    let why = if home.is_some() {
        "the home option"
    } else if env("ORCHARD_HOME").is_some() {
        "ORCHARD_HOME"
    } else {
        "the default install"
    };
    paths::orchard_home(home)
        .map(|h| vec![(installed_binary(&h), why)])
        .unwrap_or_default()
}

/// `<home>/bin/proxy_inference_engine`, whether or not it exists.
pub fn installed_binary(home: &Path) -> PathBuf {
    home.join("bin").join(ENGINE_BINARY_NAME)
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The engine binary to launch, or an `EngineNotFound` error naming every path tried and
/// the fix.
pub fn find_binary(explicit: Option<&Path>, home: Option<&Path>) -> Result<PathBuf> {
    let candidates = binary_candidates(explicit, home);
    if let Some((p, _)) = candidates.iter().find(|(p, _)| is_executable(p)) {
        return Ok(p.clone());
    }
    let tried = candidates
        .iter()
        .map(|(p, why)| format!("  {} ({why})", p.display()))
        .collect::<Vec<_>>()
        .join("\n");
    let fix = if PIE_RUNS_HERE {
        "Install PIE with `npx orchard engine install` (or Engine.install()), or set \
         ORCHARD_ENGINE_BINARY to a proxy_inference_engine binary."
    } else {
        "PIE, the Orchard engine, runs only on macOS on Apple Silicon, so there is no engine to \
         start on this platform. For tests and demos, start pie-emulator through orchard-ts/testing: \
         startTestEngine(), or ORCHARD_ENGINE_BINARY set to emulatorPath()."
    };
    Err(Error::new(
        ErrorCode::EngineNotFound,
        format!("no engine binary found; tried:\n{tried}\n{fix}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binary_error_names_paths_and_fix() {
        let err =
            find_binary(Some(Path::new("/nonexistent/proxy_inference_engine")), None).unwrap_err();
        assert_eq!(err.code, ErrorCode::EngineNotFound);
        assert!(err.message.contains("/nonexistent/proxy_inference_engine"));
        assert!(err.message.contains("ORCHARD_ENGINE_BINARY"));
        if !PIE_RUNS_HERE {
            assert!(err.message.contains("orchard-ts/testing"), "{err}");
        }
    }

    #[test]
    fn the_binary_option_wins_and_a_home_option_is_looked_in() {
        let b = Path::new("/x/engine");
        assert_eq!(binary_candidates(Some(b), None)[0].0, b);
        // The environment's ORCHARD_ENGINE_BINARY / PIE_LOCAL_BUILD outrank a home option,
        // so only check the home when neither is set.
        if std::env::var_os("ORCHARD_ENGINE_BINARY").is_none()
            && std::env::var_os("PIE_LOCAL_BUILD").is_none()
        {
            let c = binary_candidates(None, Some(Path::new("/opt/orchard")));
            assert_eq!(
                c,
                vec![(
                    PathBuf::from("/opt/orchard/bin/proxy_inference_engine"),
                    "the home option"
                )]
            );
        }
    }
}
