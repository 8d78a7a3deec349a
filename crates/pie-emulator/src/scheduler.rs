//! The batch scheduler: one thread steps every active sequence by one token per tick, like an
//! engine's batched decode step, then sleeps `PIE_EMULATOR_TOKEN_DELAY_MS`. New sequences
//! join at the next tick; cancellations are applied as soon as they arrive. A cancel that
//! arrives before its request (the two travel on different sockets) is remembered for
//! [`TOMBSTONE_TTL`] and ends the request the moment it arrives.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use orchard_core::wire::{Delta, LayoutSegment};

use crate::fault::{Action, Fault};
use crate::sequence::{error_delta, Sequence};
use crate::state::{lock, Ctx};

/// Deltas published between yields to the PUB socket's sender thread.
const PUBLISH_YIELD_EVERY: usize = 256;
const FLOOD_DRAIN_PAUSE: Duration = Duration::from_millis(50);
/// How long a cancel for a request not seen yet waits for that request.
const TOMBSTONE_TTL: Duration = Duration::from_secs(10);
/// Finished requests whose counters stay readable (`emulator_request_stats`).
const FINISHED_REQUESTS_KEPT: usize = 4096;

/// What the emulator did for one request id (all channels).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RequestStats {
    /// Deltas published for it, final deltas included.
    pub published_deltas: u64,
    /// Its sequences still generating.
    pub active_sequences: u32,
    /// A `cancel_request` named it.
    pub cancelled: bool,
    /// When its last sequence ended (`None` while it runs).
    pub finished_at: Option<Instant>,
    /// Per prompt, the layout it arrived with (generation requests): what the client sent.
    pub layouts: Vec<Vec<LayoutSegment>>,
}

#[derive(Default)]
struct RequestLog {
    requests: HashMap<u64, RequestStats>,
    /// Request ids, oldest first, for forgetting finished ones.
    order: VecDeque<u64>,
}

impl RequestLog {
    fn entry(&mut self, id: u64) -> &mut RequestStats {
        let order = &mut self.order;
        self.requests.entry(id).or_insert_with(|| {
            order.push_back(id);
            RequestStats::default()
        })
    }

    /// A cancel for `id` may overtake its request unless `id` just finished (then the cancel
    /// was merely late).
    fn finished_recently(&self, id: u64) -> bool {
        self.requests
            .get(&id)
            .and_then(|r| r.finished_at)
            .is_some_and(|t| t.elapsed() < TOMBSTONE_TTL)
    }

    /// Forget the oldest finished requests beyond the limit.
    fn evict(&mut self) {
        let mut budget = self.order.len();
        while self.requests.len() > FINISHED_REQUESTS_KEPT && budget > 0 {
            budget -= 1;
            let Some(id) = self.order.pop_front() else {
                break;
            };
            if self
                .requests
                .get(&id)
                .is_some_and(|r| r.finished_at.is_some())
            {
                self.requests.remove(&id);
            } else {
                self.order.push_back(id);
            }
        }
    }
}

#[derive(Default)]
struct Inbox {
    pending: Vec<Sequence>,
    cancels: Vec<u64>,
    stop: bool,
}

/// Per-model counters published in telemetry.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelStats {
    pub running: u32,
    pub tokens_total: u64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    pub active_sequences: u32,
    pub active_requests: u32,
    /// Prompt plus generated tokens of the active sequences (for KV-cache page counts).
    pub tokens_in_flight: u64,
    pub tokens_total: u64,
    pub avg_step_ms: f64,
    pub models: BTreeMap<String, ModelStats>,
}

#[derive(Default)]
pub struct Scheduler {
    inbox: Mutex<Inbox>,
    cv: Condvar,
    stats: Mutex<Stats>,
    log: Mutex<RequestLog>,
}

impl Scheduler {
    pub fn submit(&self, sequences: Vec<Sequence>) {
        if sequences.is_empty() {
            return;
        }
        lock(&self.inbox).pending.extend(sequences);
        self.cv.notify_all();
    }

    /// Stop every active sequence of `request_id` (on any channel).
    pub fn cancel(&self, request_id: u64) {
        lock(&self.inbox).cancels.push(request_id);
        self.cv.notify_all();
    }

    pub fn stop(&self) {
        lock(&self.inbox).stop = true;
        self.cv.notify_all();
    }

    pub fn stats(&self) -> Stats {
        lock(&self.stats).clone()
    }

    /// Counters of one request id; `None` when it never reached the scheduler (or was
    /// forgotten among the oldest finished ones).
    pub fn request_stats(&self, request_id: u64) -> Option<RequestStats> {
        lock(&self.log).requests.get(&request_id).cloned()
    }

    /// Remember the layouts a generation request arrived with, before its sequences run. They
    /// survive the reset of a reused id's counters.
    pub fn note_layouts(&self, request_id: u64, layouts: Vec<Vec<LayoutSegment>>) {
        lock(&self.log).entry(request_id).layouts = layouts;
    }

    /// Fold one scheduler iteration into the per-request counters; `running` counts each
    /// request's active sequences.
    fn log_requests(
        &self,
        running: &HashMap<u64, u32>,
        published: &HashMap<u64, u64>,
        cancelled: &[u64],
    ) {
        if published.is_empty() && cancelled.is_empty() {
            return;
        }
        let mut log = lock(&self.log);
        for (id, n) in published {
            let entry = log.entry(*id);
            if entry.finished_at.is_some() {
                // The id was used before and is in use again: a new request (whose layouts
                // were noted on arrival).
                let layouts = std::mem::take(&mut entry.layouts);
                *entry = RequestStats {
                    layouts,
                    ..RequestStats::default()
                };
            }
            entry.published_deltas += n;
            entry.active_sequences = running.get(id).copied().unwrap_or(0);
            if entry.active_sequences == 0 {
                entry.finished_at = Some(Instant::now());
            }
        }
        for id in cancelled {
            log.entry(*id).cancelled = true;
        }
        log.evict();
    }

    fn record(
        &self,
        active: &[Sequence],
        step_ms: Option<f64>,
        tokens: &BTreeMap<String, u64>,
    ) -> HashMap<u64, u32> {
        let mut s = lock(&self.stats);
        let mut requests = HashSet::new();
        let mut running: HashMap<u64, u32> = HashMap::new();
        let mut in_flight = 0;
        for m in s.models.values_mut() {
            m.running = 0;
        }
        for seq in active {
            requests.insert((seq.ids.channel, seq.ids.request_id));
            *running.entry(seq.ids.request_id).or_default() += 1;
            in_flight += seq.prompt_tokens() + seq.generated_len() as u64;
            s.models.entry(seq.model.clone()).or_default().running += 1;
        }
        for (model, n) in tokens {
            s.models.entry(model.clone()).or_default().tokens_total += n;
            s.tokens_total += n;
        }
        s.active_sequences = active.len() as u32;
        s.active_requests = requests.len() as u32;
        s.tokens_in_flight = in_flight;
        if let Some(ms) = step_ms {
            s.avg_step_ms = if s.avg_step_ms == 0.0 {
                ms
            } else {
                0.9 * s.avg_step_ms + 0.1 * ms
            };
        }
        running
    }

    /// The scheduler thread's loop; returns after [`Scheduler::stop`].
    pub fn run(&self, ctx: &Ctx) {
        let delay = ctx.config.step_interval();
        let mut active: Vec<Sequence> = Vec::new();
        let mut next_tick = Instant::now();
        let mut tombstones: HashMap<u64, Instant> = HashMap::new();
        let mut published: HashMap<u64, u64> = HashMap::new();
        let publish = |seq: &mut Sequence, delta: &Delta, published: &mut HashMap<u64, u64>| {
            let index = seq.produced;
            seq.produced += 1;
            let action = seq
                .fault
                .as_ref()
                .map(|f| f.action(index, delta.is_final_delta, seq.ids.request_id));
            match action {
                Some(Action::Skip) => {}
                Some(Action::Replace(body)) => ctx.publisher.raw_delta(seq.ids.channel, &body),
                _ => ctx.publisher.delta(seq.ids.channel, delta),
            }
            *published.entry(seq.ids.request_id).or_default() += 1;
        };
        let mut cancelled_now: Vec<u64> = Vec::new();
        loop {
            published.clear();
            cancelled_now.clear();
            let (mut arrived, cancels) = {
                let mut inbox = lock(&self.inbox);
                loop {
                    if inbox.stop {
                        return;
                    }
                    if !inbox.pending.is_empty() || !inbox.cancels.is_empty() {
                        break;
                    }
                    if active.is_empty() {
                        inbox = self.cv.wait(inbox).unwrap_or_else(|e| e.into_inner());
                        continue;
                    }
                    let now = Instant::now();
                    if now >= next_tick {
                        break;
                    }
                    inbox = self
                        .cv
                        .wait_timeout(inbox, next_tick - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                (
                    std::mem::take(&mut inbox.pending),
                    std::mem::take(&mut inbox.cancels),
                )
            };
            if !tombstones.is_empty() && !arrived.is_empty() {
                tombstones.retain(|_, at| at.elapsed() < TOMBSTONE_TTL);
                let mut ended = HashSet::new();
                for seq in arrived.iter_mut() {
                    if tombstones.contains_key(&seq.ids.request_id) {
                        let delta = seq.cancel();
                        publish(seq, &delta, &mut published);
                        ended.insert(seq.ids.request_id);
                    }
                }
                for id in ended {
                    tombstones.remove(&id);
                    cancelled_now.push(id);
                }
                arrived.retain(|s| !s.done);
            }
            if active.is_empty() && !arrived.is_empty() {
                // An idle engine starts decoding at once.
                next_tick = Instant::now();
            }
            active.extend(arrived);

            if !cancels.is_empty() {
                let wanted: HashSet<u64> = cancels.iter().copied().collect();
                let mut seen = HashSet::new();
                for seq in active.iter_mut() {
                    if wanted.contains(&seq.ids.request_id) && !seq.done {
                        let delta = seq.cancel();
                        publish(seq, &delta, &mut published);
                        seen.insert(seq.ids.request_id);
                    }
                }
                active.retain(|s| !s.done);
                let log = lock(&self.log);
                for id in wanted {
                    if !seen.contains(&id) && !log.finished_recently(id) {
                        tombstones.insert(id, Instant::now());
                    }
                }
                drop(log);
                cancelled_now.extend(seen);
            }

            let mut step_ms = None;
            let mut tokens: BTreeMap<String, u64> = BTreeMap::new();
            let tick_start = Instant::now();
            if !active.is_empty() && tick_start >= next_tick {
                if active.iter().any(Sequence::flood_final_next) {
                    // PUB/SUB drops what a subscriber cannot queue. A flood outruns most
                    // consumers, so give them a moment to drain before the final deltas,
                    // or a lost final would leave its stream waiting forever.
                    std::thread::sleep(FLOOD_DRAIN_PAUSE);
                }
                for (n, seq) in active.iter_mut().enumerate() {
                    // A step of thousands of sequences, published in one go on a shared core,
                    // overruns the PUB queue before NNG's sender thread runs; PUB then drops.
                    if n % PUBLISH_YIELD_EVERY == PUBLISH_YIELD_EVERY - 1 {
                        std::thread::yield_now();
                    }
                    if seq.fault == Some(Fault::Stall) {
                        continue;
                    }
                    let lm = &ctx.lm;
                    match catch_unwind(AssertUnwindSafe(|| seq.advance(lm))) {
                        Ok(Some(delta)) => publish(seq, &delta, &mut published),
                        Ok(None) => {}
                        Err(_) => {
                            crate::warn!(
                                "internal error while generating sequence {}; ending it",
                                seq.ids.sequence_id
                            );
                            seq.done = true;
                            let delta = error_delta(
                                &seq.ids,
                                "internal emulator error while generating this sequence",
                            );
                            publish(seq, &delta, &mut published);
                        }
                    }
                    *tokens.entry(seq.model.clone()).or_default() += 1;
                }
                active.retain(|s| !s.done);
                step_ms = Some(tick_start.elapsed().as_secs_f64() * 1000.0);
                next_tick = tick_start + delay;
                if delay == Duration::ZERO {
                    // Let the receiving threads in between back-to-back steps.
                    std::thread::yield_now();
                }
            }
            let running = self.record(&active, step_ms, &tokens);
            self.log_requests(&running, &published, &cancelled_now);
        }
    }
}

#[cfg(test)]
mod tests {
    use orchard_core::wire::SegmentKind;

    use super::*;

    #[test]
    fn a_request_keeps_the_layouts_it_arrived_with_also_under_a_reused_id() {
        let s = Scheduler::default();
        let audio = vec![
            LayoutSegment::new(SegmentKind::Text, 5),
            LayoutSegment::new(SegmentKind::Audio, 8),
        ];
        s.note_layouts(9, vec![audio.clone()]);
        s.log_requests(&HashMap::new(), &HashMap::from([(9, 2)]), &[]);
        let first = s.request_stats(9).unwrap();
        assert_eq!(first.layouts, vec![audio]);
        assert!(first.finished_at.is_some());
        // The same id again: fresh counters, the new request's layouts.
        let text = vec![LayoutSegment::new(SegmentKind::Text, 3)];
        s.note_layouts(9, vec![text.clone()]);
        s.log_requests(&HashMap::from([(9, 1)]), &HashMap::from([(9, 1)]), &[]);
        let second = s.request_stats(9).unwrap();
        assert_eq!(second.layouts, vec![text]);
        assert_eq!(second.published_deltas, 1);
        assert_eq!(second.finished_at, None);
    }
}
