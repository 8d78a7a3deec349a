//! Load state of the models of one engine connection: activating → ready | failed, with
//! the error of a failure. Concurrent loads of one model share one activation; a cancel
//! fails it for every caller at once; after a failure the next load starts afresh.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorCode, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadState {
    Activating,
    Ready,
    Failed,
}

impl LoadState {
    pub fn as_str(self) -> &'static str {
        match self {
            LoadState::Activating => "activating",
            LoadState::Ready => "ready",
            LoadState::Failed => "failed",
        }
    }
}

#[derive(Clone, Debug)]
pub struct LoadStatus {
    pub state: LoadState,
    /// Why the last attempt failed (state `Failed`).
    pub error: Option<Error>,
    pub canonical_id: Option<String>,
    pub model_path: Option<String>,
}

struct Entry {
    /// Every id this model was asked for or is known by (matched in any casing).
    ids: Vec<String>,
    status: LoadStatus,
    attempt: u64,
    cancelled: bool,
    /// Callers waiting for this attempt's outcome.
    waiting: usize,
}

/// How a load goes on after [`Loads::begin`].
pub enum Begin {
    /// This caller activates the model (attempt number for the calls that follow).
    Lead(u64),
    /// Another caller's activation finished while this one waited.
    Shared(Result<()>),
}

#[derive(Default)]
pub struct Loads {
    entries: Mutex<(u64, Vec<Entry>)>,
    changed: Condvar,
}

fn find(entries: &[Entry], id: &str) -> Option<usize> {
    entries
        .iter()
        .position(|e| e.ids.iter().any(|i| i.eq_ignore_ascii_case(id)))
}

fn cancelled(id: &str) -> Error {
    Error::new(ErrorCode::Aborted, format!("loading '{id}' was cancelled"))
}

impl Loads {
    fn lock(&self) -> MutexGuard<'_, (u64, Vec<Entry>)> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Join the activation of `id` under way (waiting up to `timeout` for its outcome), or
    /// start one.
    pub fn begin(&self, id: &str, timeout: Duration) -> Begin {
        let deadline = Instant::now() + timeout;
        let mut g = self.lock();
        loop {
            let (next, entries) = &mut *g;
            let Some(i) = find(entries, id) else {
                *next += 1;
                entries.push(Entry {
                    ids: vec![id.to_string()],
                    status: LoadStatus {
                        state: LoadState::Activating,
                        error: None,
                        canonical_id: None,
                        model_path: None,
                    },
                    attempt: *next,
                    cancelled: false,
                    waiting: 0,
                });
                return Begin::Lead(*next);
            };
            let e = &mut entries[i];
            if e.status.state != LoadState::Activating {
                *next += 1;
                e.attempt = *next;
                e.cancelled = false;
                e.status.state = LoadState::Activating;
                e.status.error = None;
                if !e.ids.iter().any(|i| i == id) {
                    e.ids.push(id.to_string());
                }
                return Begin::Lead(*next);
            }
            let attempt = e.attempt;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Begin::Shared(Err(Error::new(
                    ErrorCode::Timeout,
                    format!("model '{id}' did not finish loading within {timeout:?}"),
                )));
            }
            e.waiting += 1;
            g = self
                .changed
                .wait_timeout(g, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            if let Some(e) = g.1.iter_mut().find(|e| e.attempt == attempt) {
                e.waiting -= 1;
                if e.status.state != LoadState::Activating {
                    return Begin::Shared(match &e.status.error {
                        Some(err) => Err(err.clone()),
                        None => Ok(()),
                    });
                }
            }
        }
    }

    /// Record what attempt `attempt` found out about its model. False when it was
    /// cancelled meanwhile (the caller stops).
    pub fn identify(&self, attempt: u64, canonical_id: &str, model_path: &str) -> bool {
        let mut g = self.lock();
        let Some(e) = g.1.iter_mut().find(|e| e.attempt == attempt) else {
            return false;
        };
        for id in [canonical_id, model_path] {
            if !e.ids.iter().any(|i| i == id) {
                e.ids.push(id.to_string());
            }
        }
        e.status.canonical_id = Some(canonical_id.to_string());
        e.status.model_path = Some(model_path.to_string());
        !e.cancelled
    }

    /// The outcome of attempt `attempt`; a cancelled attempt fails with `Aborted` whatever
    /// it returned. Returns the outcome its caller reports.
    pub fn finish(&self, attempt: u64, id: &str, result: Result<()>) -> Result<()> {
        let mut g = self.lock();
        let result = match g.1.iter_mut().find(|e| e.attempt == attempt) {
            Some(e) if e.cancelled => Err(e.status.error.clone().unwrap_or_else(|| cancelled(id))),
            Some(e) => {
                e.status.state = if result.is_ok() {
                    LoadState::Ready
                } else {
                    LoadState::Failed
                };
                e.status.error = result.as_ref().err().cloned();
                result
            }
            None => result,
        };
        drop(g);
        self.changed.notify_all();
        result
    }

    /// Fail the activation of `id` under way at once (every caller sharing it gets
    /// `Aborted`). Returns the ids it was asked for and its canonical id when known, for the
    /// engine's `cancel_model_load`; `None` when none was under way.
    pub fn cancel(&self, id: &str) -> Option<(String, Option<String>)> {
        let mut g = self.lock();
        let i = find(&g.1, id)?;
        let e = &mut g.1[i];
        if e.status.state != LoadState::Activating {
            return None;
        }
        e.cancelled = true;
        e.status.state = LoadState::Failed;
        e.status.error = Some(cancelled(id));
        let out = (e.ids[0].clone(), e.status.canonical_id.clone());
        drop(g);
        self.changed.notify_all();
        Some(out)
    }

    /// How many callers wait for the activation of `id` under way.
    pub fn waiting(&self, id: &str) -> usize {
        let g = self.lock();
        find(&g.1, id).map_or(0, |i| g.1[i].waiting)
    }

    pub fn status(&self, id: &str) -> Option<LoadStatus> {
        let g = self.lock();
        find(&g.1, id).map(|i| g.1[i].status.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn concurrent_loads_share_one_activation_and_see_its_outcome() {
        let loads = Arc::new(Loads::default());
        let Begin::Lead(attempt) = loads.begin("Org/M", Duration::from_secs(1)) else {
            panic!("the first load leads");
        };
        let l = loads.clone();
        let waiter = std::thread::spawn(move || match l.begin("org/m", Duration::from_secs(10)) {
            Begin::Shared(r) => r,
            Begin::Lead(_) => panic!("a second load joins the first"),
        });
        assert!(loads.identify(attempt, "Org/M", "/m"));
        assert_eq!(loads.status("/m").unwrap().state, LoadState::Activating);
        while loads.waiting("ORG/M") == 0 {
            std::thread::yield_now();
        }
        loads.finish(attempt, "Org/M", Ok(())).unwrap();
        waiter.join().unwrap().unwrap();
        assert_eq!(loads.status("ORG/M").unwrap().state, LoadState::Ready);
    }

    #[test]
    fn a_cancel_fails_the_load_at_once_and_the_next_load_starts_afresh() {
        let loads = Loads::default();
        let Begin::Lead(attempt) = loads.begin("m", Duration::from_secs(1)) else {
            panic!("leads");
        };
        assert!(loads.identify(attempt, "c", "/m"));
        assert_eq!(
            loads.cancel("m"),
            Some(("m".to_string(), Some("c".to_string())))
        );
        assert!(!loads.identify(attempt, "c", "/m"));
        let r = loads.finish(attempt, "m", Ok(()));
        assert_eq!(r.unwrap_err().code, ErrorCode::Aborted);
        let st = loads.status("m").unwrap();
        assert_eq!(st.state, LoadState::Failed);
        assert_eq!(st.error.unwrap().code, ErrorCode::Aborted);
        assert!(loads.cancel("m").is_none());
        assert!(matches!(loads.begin("m", Duration::from_secs(1)), Begin::Lead(a) if a > attempt));
    }
}
