//! The model-specs folder: which families exist, which `model_type` selects which family, and
//! a cache of loaded profiles.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value as Json;

use crate::error::{Error, Result};

use super::profile::Profile;

/// The root of the model-specs folder, with a cache of loaded profiles.
#[derive(Debug)]
pub struct ModelSpecs {
    root: PathBuf,
    profiles: Mutex<HashMap<String, Arc<Profile>>>,
    /// `model_type` → family, for types already resolved (resolving reads the folder).
    resolved: Mutex<HashMap<String, String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the map half-written; keep going.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A family name is a plain folder name: no separators, no leading dot or underscore.
fn is_family_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(['.', '_'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

impl ModelSpecs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ModelSpecs {
            root: root.into(),
            profiles: Mutex::new(HashMap::new()),
            resolved: Mutex::new(HashMap::new()),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The families present: sub-folders holding a `control_tokens.json`, sorted by name.
    /// Folders starting with `_` or `.` (templates, examples) are not families.
    pub fn families(&self) -> Result<Vec<String>> {
        let entries = std::fs::read_dir(&self.root).map_err(|e| {
            Error::template(format!(
                "cannot read model-specs folder {}: {e}",
                self.root.display()
            ))
        })?;
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if is_family_name(&name) && entry.path().join("control_tokens.json").is_file() {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }

    /// `model_types` aliases declared by a family's `control_tokens.json`.
    fn aliases_of(&self, family: &str) -> Vec<String> {
        let path = self.root.join(family).join("control_tokens.json");
        std::fs::read_to_string(path)
            .ok()
            .and_then(|text| serde_json::from_str::<Json>(&text).ok())
            .and_then(|v| v.get("model_types").cloned())
            .and_then(|v| serde_json::from_value::<Vec<Json>>(v).ok())
            .map(|list| {
                list.into_iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .filter(|s| !s.is_empty() && s != family)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The family for a model's `config.json`: a folder named like `model_type`, else the
    /// family whose `control_tokens.json` lists `model_type` in `model_types`.
    pub fn family_for_config(&self, config: &Json) -> Result<String> {
        let model_type = match config.get("model_type") {
            Some(Json::String(s)) if !s.trim().is_empty() => s.trim(),
            _ => {
                return Err(Error::invalid(
                    "config.model_type: missing; the model config must include a non-empty 'model_type'",
                ))
            }
        };
        self.family_for_model_type(model_type)
    }

    /// Like [`family_for_config`](Self::family_for_config), from the `model_type` string.
    pub fn family_for_model_type(&self, model_type: &str) -> Result<String> {
        if let Some(family) = lock(&self.resolved).get(model_type) {
            return Ok(family.clone());
        }
        let families = self.families()?;
        let found = if families.iter().any(|f| f == model_type) {
            Some(model_type.to_string())
        } else {
            families
                .iter()
                .find(|f| self.aliases_of(f).iter().any(|a| a == model_type))
                .cloned()
        };
        if let Some(family) = found {
            lock(&self.resolved).insert(model_type.to_string(), family.clone());
            return Ok(family);
        }
        let listing: Vec<String> = families
            .iter()
            .map(|f| {
                let aliases = self.aliases_of(f);
                if aliases.is_empty() {
                    f.clone()
                } else {
                    format!("{f} (also {})", aliases.join(", "))
                }
            })
            .collect();
        Err(Error::template(format!(
            "unknown model_type '{model_type}'; supported families: {}",
            if listing.is_empty() {
                format!("none (no profiles in {})", self.root.display())
            } else {
                listing.join(", ")
            }
        )))
    }

    /// The loaded profile of a family (loaded on first use, then cached).
    pub fn profile(&self, family: &str) -> Result<Arc<Profile>> {
        if let Some(p) = lock(&self.profiles).get(family) {
            return Ok(Arc::clone(p));
        }
        let dir = self.root.join(family);
        if !is_family_name(family) || !dir.join("control_tokens.json").is_file() {
            let families = self.families().unwrap_or_default();
            return Err(Error::template(format!(
                "unknown model family '{family}'; supported families: {}",
                families.join(", ")
            )));
        }
        // Load outside the lock: loading reads files and compiles the template.
        let profile = Arc::new(Profile::load(family, &dir, &self.root)?);
        let mut cache = lock(&self.profiles);
        let entry = cache
            .entry(family.to_string())
            .or_insert_with(|| Arc::clone(&profile));
        Ok(Arc::clone(entry))
    }

    /// The profile for a model config (family lookup plus [`profile`](Self::profile)).
    pub fn profile_for_config(&self, config: &Json) -> Result<Arc<Profile>> {
        let family = self.family_for_config(config)?;
        self.profile(&family)
    }

    /// Forget loaded profiles (after profile files changed on disk).
    pub fn clear_cache(&self) {
        lock(&self.profiles).clear();
        lock(&self.resolved).clear();
    }
}
