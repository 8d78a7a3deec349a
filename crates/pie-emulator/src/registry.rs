//! Models the emulator has been asked to load. A model is known by its canonical id and by
//! every id it was requested under; requests may name it either way. A load of a model
//! already loaded (or loading) from the same path under other ids adds those ids as
//! aliases of the one entry: it is listed once, and answered like a second load of it.

use std::collections::BTreeMap;
use std::path::Path;

/// Added to the size of a model's files to get its `minimum_memory_bytes` (runtime and
/// KV-cache headroom of a real engine, so the number looks plausible).
pub const MEMORY_OVERHEAD_BYTES: u64 = 64 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadState {
    Loading,
    Ready,
}

impl LoadState {
    pub fn as_str(self) -> &'static str {
        match self {
            LoadState::Loading => "loading",
            LoadState::Ready => "ready",
        }
    }
}

#[derive(Clone, Debug)]
pub struct ModelEntry {
    pub canonical_id: String,
    /// Ids the model was requested under, first one first (never empty).
    pub requested_ids: Vec<String>,
    pub model_path: String,
    pub minimum_memory_bytes: u64,
    pub state: LoadState,
}

#[derive(Default)]
pub struct Registry {
    entries: BTreeMap<String, ModelEntry>,
}

impl Registry {
    /// The canonical id of the entry known as `id` (canonical or requested).
    pub fn key_of(&self, id: &str) -> Option<String> {
        if self.entries.contains_key(id) {
            return Some(id.to_string());
        }
        self.entries
            .values()
            .find(|e| e.requested_ids.iter().any(|r| r == id))
            .map(|e| e.canonical_id.clone())
    }

    /// The canonical id of the entry loaded from `path` (compared with symlinks resolved).
    pub fn key_of_path(&self, path: &str) -> Option<String> {
        if path.is_empty() {
            return None;
        }
        let want = resolved(path);
        self.entries
            .values()
            .find(|e| resolved(&e.model_path) == want)
            .map(|e| e.canonical_id.clone())
    }

    pub fn get(&self, id: &str) -> Option<&ModelEntry> {
        self.key_of(id).and_then(|k| self.entries.get(&k))
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut ModelEntry> {
        let k = self.key_of(id)?;
        self.entries.get_mut(&k)
    }

    /// Canonical id of a ready model known as `id`.
    pub fn ready(&self, id: &str) -> Option<String> {
        self.get(id)
            .filter(|e| e.state == LoadState::Ready)
            .map(|e| e.canonical_id.clone())
    }

    pub fn insert(&mut self, entry: ModelEntry) {
        self.entries.insert(entry.canonical_id.clone(), entry);
    }

    pub fn remove(&mut self, id: &str) -> Option<ModelEntry> {
        let k = self.key_of(id)?;
        self.entries.remove(&k)
    }

    pub fn entries(&self) -> impl Iterator<Item = &ModelEntry> {
        self.entries.values()
    }
}

fn resolved(path: &str) -> std::path::PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.into())
}

impl ModelEntry {
    pub fn add_alias(&mut self, requested: &str) {
        if !requested.is_empty() && !self.requested_ids.iter().any(|r| r == requested) {
            self.requested_ids.push(requested.to_string());
        }
    }
}

/// Check that `path` is a loadable model directory; on success return its
/// `minimum_memory_bytes`. The error names the path and what is missing.
pub fn inspect_model_dir(path: &str) -> Result<u64, String> {
    if path.is_empty() {
        return Err("load_model: model_path is missing or empty".to_string());
    }
    let p = Path::new(path);
    let meta = std::fs::metadata(p).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!("model path '{path}' does not exist")
        } else {
            format!("model path '{path}' cannot be read: {e}")
        }
    })?;
    if !meta.is_dir() {
        // A single-file source (what `inspect_model_source` describes).
        if is_weights(p) {
            return Ok(meta.len() + MEMORY_OVERHEAD_BYTES);
        }
        return Err(format!(
            "model path '{path}' is not a directory; expected a model directory containing \
             config.json or a weights file (.{})",
            WEIGHT_EXTENSIONS.join(", .")
        ));
    }
    let has_weights = || {
        std::fs::read_dir(p)
            .map(|rd| rd.filter_map(|e| e.ok()).any(|e| is_weights(&e.path())))
            .unwrap_or(false)
    };
    if !p.join("config.json").is_file() && !p.join("model_index.json").is_file() && !has_weights() {
        return Err(format!(
            "model directory '{path}' has no config.json and no weights file"
        ));
    }
    let files: u64 = std::fs::read_dir(p)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| std::fs::metadata(e.path()).ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    Ok(files + MEMORY_OVERHEAD_BYTES)
}

/// Weight formats a model source may be given in without a `config.json`.
const WEIGHT_EXTENSIONS: &[&str] = &["gguf", "safetensors"];

fn is_weights(p: &Path) -> bool {
    p.is_file()
        && p.extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| WEIGHT_EXTENSIONS.iter().any(|w| e.eq_ignore_ascii_case(w)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(c: &str, r: &str, state: LoadState) -> ModelEntry {
        ModelEntry {
            canonical_id: c.into(),
            requested_ids: vec![r.into()],
            model_path: "/m".into(),
            minimum_memory_bytes: 1,
            state,
        }
    }

    #[test]
    fn lookup_by_canonical_or_requested_id() {
        let mut r = Registry::default();
        r.insert(entry("org/model", "model", LoadState::Ready));
        r.insert(entry("org/other", "other", LoadState::Loading));
        assert_eq!(r.ready("org/model").as_deref(), Some("org/model"));
        assert_eq!(r.ready("model").as_deref(), Some("org/model"));
        assert_eq!(r.ready("other"), None);
        assert_eq!(r.ready("nope"), None);
        r.get_mut("model").unwrap().add_alias("alias");
        assert_eq!(r.ready("alias").as_deref(), Some("org/model"));
        assert_eq!(r.key_of_path("/m").as_deref(), Some("org/model"));
        assert_eq!(r.key_of_path("/elsewhere"), None);
        assert!(r.remove("alias").is_some());
        assert_eq!(r.ready("org/model"), None);
    }

    #[test]
    fn model_dir_checks_name_what_is_missing() {
        let dir = std::env::temp_dir().join(format!("pe-reg-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let d = dir.to_str().unwrap();
        let e = inspect_model_dir(d).unwrap_err();
        assert!(e.contains(d) && e.contains("config.json"), "{e}");
        std::fs::write(dir.join("config.json"), b"{}").unwrap();
        assert_eq!(inspect_model_dir(d).unwrap(), MEMORY_OVERHEAD_BYTES + 2);
        let f = dir.join("config.json");
        let e = inspect_model_dir(f.to_str().unwrap()).unwrap_err();
        assert!(e.contains("not a directory"), "{e}");
        let weights = dir.join("model.gguf");
        std::fs::write(&weights, b"GGUF").unwrap();
        assert_eq!(
            inspect_model_dir(weights.to_str().unwrap()).unwrap(),
            MEMORY_OVERHEAD_BYTES + 4
        );
        let e = inspect_model_dir("/definitely/not/here").unwrap_err();
        assert!(e.contains("does not exist"), "{e}");
        assert!(inspect_model_dir("").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
