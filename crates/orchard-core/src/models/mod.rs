//! Model identity, owned here for the whole process: the canonical id a model is loaded
//! under (what the reference client sends, so Python and Node clients of one engine agree),
//! and every id a loaded model answers to.

mod loads;

pub use loads::{Begin, LoadState, LoadStatus, Loads};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use serde_json::Value;

use crate::format::Profile;
use crate::paths::expand_user;
use crate::tokenizer::TokenDecoder;

/// What to load. A Hub model arrives resolved (its snapshot directory and repo id); a local
/// one is resolved here from `requested_id`.
#[derive(Clone, Debug, Default)]
pub struct LoadRequest {
    /// The id as the caller wrote it.
    pub requested_id: String,
    pub model_path: Option<PathBuf>,
    pub canonical_id: Option<String>,
}

impl LoadRequest {
    pub fn local(id: &str) -> LoadRequest {
        LoadRequest {
            requested_id: id.to_string(),
            ..LoadRequest::default()
        }
    }

    /// The directory or file to load (`~` expanded).
    pub fn path(&self) -> PathBuf {
        match &self.model_path {
            Some(p) => p.clone(),
            None => expand_user(&self.requested_id),
        }
    }
}

fn non_empty<'a>(config: &'a Value, key: &str) -> Option<&'a str> {
    config
        .get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// The canonical id of a local model directory, as the reference client derives it: the
/// Hub repo the config names (`_name_or_path` or `original_repo` of the form `org/name`),
/// else `_name_or_path`, else `model_id`, else the directory's name.
pub fn canonical_id(config: &Value, dir: &Path) -> String {
    let repo = ["_name_or_path", "original_repo"]
        .into_iter()
        .filter_map(|k| non_empty(config, k))
        .find(|v| v.contains('/') && !v.starts_with('/'));
    repo.or_else(|| non_empty(config, "_name_or_path"))
        .or_else(|| non_empty(config, "model_id"))
        .map(str::to_string)
        .unwrap_or_else(|| {
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| dir.to_string_lossy().into_owned())
        })
}

#[derive(Clone)]
pub struct LoadedModel {
    pub requested_id: String,
    pub canonical_id: String,
    pub model_path: PathBuf,
    pub config: Value,
    pub profile: Arc<Profile>,
    /// The model's `tokenizer.json`, read the first time log-probabilities are asked for.
    pub(crate) tokens: OnceLock<Option<Arc<TokenDecoder>>>,
}

impl LoadedModel {
    /// Token id → bytes for this model, or `None` when it has no readable `tokenizer.json`
    /// (log-probabilities then name tokens by id).
    pub fn token_decoder(&self) -> Option<Arc<TokenDecoder>> {
        self.tokens
            .get_or_init(|| {
                TokenDecoder::load(&self.model_path)
                    .ok()
                    .flatten()
                    .map(Arc::new)
            })
            .clone()
    }
}

/// The loaded models of one engine connection, by every id they answer to: each id they
/// were requested under (any casing), their canonical id, and their path.
#[derive(Default)]
pub struct ModelTable {
    by_id: HashMap<String, Arc<LoadedModel>>,
}

impl ModelTable {
    pub fn get(&self, id: &str) -> Option<Arc<LoadedModel>> {
        if let Some(m) = self.by_id.get(id) {
            return Some(m.clone());
        }
        if let Some((_, m)) = self.by_id.iter().find(|(k, _)| k.eq_ignore_ascii_case(id)) {
            return Some(m.clone());
        }
        // A relative or `~` spelling of a loaded path.
        let path = expand_user(id).canonicalize().ok()?;
        self.by_id.get(path.to_string_lossy().as_ref()).cloned()
    }

    /// Register `model` under `ids` (an id another model already holds keeps that model).
    pub fn insert(&mut self, model: &Arc<LoadedModel>, ids: &[&str]) {
        for id in ids.iter().filter(|i| !i.is_empty()) {
            self.by_id
                .entry((*id).to_string())
                .or_insert_with(|| model.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_ids_follow_the_reference_order() {
        let dir = Path::new("/models/tiny-llama");
        assert_eq!(canonical_id(&json!({}), dir), "tiny-llama");
        assert_eq!(canonical_id(&json!({"model_id": "m1"}), dir), "m1");
        assert_eq!(
            canonical_id(&json!({"_name_or_path": "my-model", "model_id": "m1"}), dir),
            "my-model"
        );
        assert_eq!(
            canonical_id(
                &json!({"_name_or_path": "/abs/x", "original_repo": "org/name"}),
                dir
            ),
            "org/name"
        );
        assert_eq!(
            canonical_id(&json!({"_name_or_path": "meta-llama/Llama-3.2-1B"}), dir),
            "meta-llama/Llama-3.2-1B"
        );
        assert_eq!(
            canonical_id(&json!({"_name_or_path": "  "}), dir),
            "tiny-llama"
        );
    }
}
