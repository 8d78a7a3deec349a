//! The sampler: a seeded PRNG and the usual logit pipeline.
//!
//! Order of operations for one step (mirrors common engines):
//! 1. model log-probabilities + prompt-word boost (done by the caller),
//! 2. `logit_bias`,
//! 3. repetition / frequency / presence penalties over the recent generated tokens,
//! 4. temperature (0 or tiny = greedy),
//! 5. log-softmax: these are the reported `top_logprobs` and the `cumulative_logprob` terms,
//! 6. `top_k`, `top_p`, `min_p` filtering, then a draw from what is left.

/// xoshiro256** seeded through splitmix64.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut st = seed;
        let s = [
            splitmix64(&mut st),
            splitmix64(&mut st),
            splitmix64(&mut st),
            splitmix64(&mut st),
        ];
        Rng { s }
    }

    /// The stream of one candidate: candidate 0 uses `seed` itself, so a single-candidate
    /// request and candidate 0 of a multi-candidate request agree.
    pub fn for_candidate(seed: u64, candidate: u32) -> Rng {
        Rng::new(seed.wrapping_add(u64::from(candidate).wrapping_mul(0xD1B5_4A32_D192_ED03)))
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Below this temperature sampling is greedy.
pub const GREEDY_TEMPERATURE: f64 = 1e-4;

#[derive(Clone, Debug)]
pub struct SamplingParams {
    pub temperature: f64,
    /// Disabled when `<= 0` or `>= 1`.
    pub top_p: f64,
    /// Disabled when `<= 0`.
    pub top_k: i64,
    /// Disabled when `<= 0`.
    pub min_p: f64,
    pub top_logprobs: usize,
    /// `(token index, bias)`, already mapped from wire ids.
    pub logit_bias: Vec<(usize, f64)>,
    /// Disabled when `1` or `<= 0`.
    pub repetition_penalty: f64,
    /// How many recent generated tokens the penalties look at; `0` = all of them.
    pub repetition_context: usize,
    pub frequency_penalty: f64,
    pub presence_penalty: f64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 1.0,
            top_p: 1.0,
            top_k: -1,
            min_p: 0.0,
            top_logprobs: 0,
            logit_bias: Vec::new(),
            repetition_penalty: 1.0,
            repetition_context: 0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
        }
    }
}

impl SamplingParams {
    pub fn is_greedy(&self) -> bool {
        self.temperature < GREEDY_TEMPERATURE
    }
}

/// One sampled token with its log-probability and the requested alternatives.
#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    pub token: usize,
    pub logprob: f64,
    /// `(token, logprob)`, most likely first.
    pub top: Vec<(usize, f64)>,
}

/// Natural-log softmax, computed stably. Non-finite inputs count as impossible.
pub fn log_softmax(logits: &[f64]) -> Vec<f64> {
    let max = logits
        .iter()
        .copied()
        .filter(|l| l.is_finite())
        .fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        let uniform = -(logits.len().max(1) as f64).ln();
        return vec![uniform; logits.len()];
    }
    let sum: f64 = logits
        .iter()
        .filter(|l| l.is_finite())
        .map(|l| (l - max).exp())
        .sum();
    let lse = max + sum.ln();
    logits
        .iter()
        .map(|l| {
            if l.is_finite() {
                l - lse
            } else {
                f64::NEG_INFINITY
            }
        })
        .collect()
}

fn argmax(values: &[f64]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] || values[best].is_nan() {
            best = i;
        }
    }
    best
}

/// Apply bias and penalties in place. `history` is the generated tokens so far.
pub fn adjust_logits(logits: &mut [f64], history: &[usize], p: &SamplingParams) {
    for &(t, bias) in &p.logit_bias {
        if let Some(l) = logits.get_mut(t) {
            *l += bias;
        }
    }
    let rep = p.repetition_penalty > 0.0 && (p.repetition_penalty - 1.0).abs() > f64::EPSILON;
    if !(rep || p.frequency_penalty != 0.0 || p.presence_penalty != 0.0) || history.is_empty() {
        return;
    }
    let window = if p.repetition_context == 0 {
        history
    } else {
        &history[history.len().saturating_sub(p.repetition_context)..]
    };
    let mut counts = vec![0u32; logits.len()];
    for &t in window {
        if let Some(c) = counts.get_mut(t) {
            *c += 1;
        }
    }
    for (t, &c) in counts.iter().enumerate() {
        if c == 0 {
            continue;
        }
        let l = &mut logits[t];
        if rep {
            // Push the token's logit away from likely: shrink positive, grow negative.
            if *l > 0.0 {
                *l /= p.repetition_penalty;
            } else {
                *l *= p.repetition_penalty;
            }
        }
        *l -= p.frequency_penalty * f64::from(c) + p.presence_penalty;
    }
}

fn top_alternatives(logprobs: &[f64], k: usize) -> Vec<(usize, f64)> {
    if k == 0 {
        return Vec::new();
    }
    let mut order: Vec<usize> = (0..logprobs.len()).collect();
    order.sort_by(|a, b| logprobs[*b].total_cmp(&logprobs[*a]).then(a.cmp(b)));
    order.truncate(k);
    order.into_iter().map(|t| (t, logprobs[t])).collect()
}

/// Choose the next token from adjusted logits.
pub fn choose(logits: &[f64], p: &SamplingParams, rng: &mut Rng) -> Choice {
    if p.is_greedy() {
        // Greedy decoding reports the untempered (temperature 1) distribution: the
        // temperature-0 one is a point mass whose alternatives would all be -inf.
        let logprobs = log_softmax(logits);
        let token = argmax(logits);
        return Choice {
            token,
            logprob: logprobs[token],
            top: top_alternatives(&logprobs, p.top_logprobs),
        };
    }
    let scaled: Vec<f64> = logits.iter().map(|l| l / p.temperature).collect();
    let logprobs = log_softmax(&scaled);

    // Candidates most likely first; filters keep a prefix of this order.
    let mut order: Vec<usize> = (0..logprobs.len())
        .filter(|t| logprobs[*t].is_finite())
        .collect();
    order.sort_by(|a, b| logprobs[*b].total_cmp(&logprobs[*a]).then(a.cmp(b)));
    let mut keep = order.len();
    if p.top_k > 0 {
        keep = keep.min(p.top_k as usize);
    }
    if p.top_p > 0.0 && p.top_p < 1.0 {
        let mut cum = 0.0;
        for (i, t) in order.iter().take(keep).enumerate() {
            cum += logprobs[*t].exp();
            if cum >= p.top_p {
                keep = i + 1;
                break;
            }
        }
    }
    if p.min_p > 0.0 && keep > 0 {
        let floor = logprobs[order[0]] + p.min_p.min(1.0).ln();
        keep = order
            .iter()
            .take(keep)
            .take_while(|t| logprobs[**t] >= floor)
            .count()
            .max(1);
    }
    let kept = &order[..keep.max(1).min(order.len())];
    let token = if kept.is_empty() {
        argmax(logits)
    } else {
        let weights: Vec<f64> = kept.iter().map(|t| logprobs[*t].exp()).collect();
        let total: f64 = weights.iter().sum();
        let mut u = rng.next_f64() * total;
        let mut pick = kept[kept.len() - 1];
        for (t, w) in kept.iter().zip(&weights) {
            if u < *w {
                pick = *t;
                break;
            }
            u -= w;
        }
        pick
    };
    Choice {
        token,
        logprob: logprobs[token],
        top: top_alternatives(&logprobs, p.top_logprobs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> SamplingParams {
        SamplingParams::default()
    }

    #[test]
    fn rng_is_deterministic_and_candidates_differ() {
        let a: Vec<u64> = (0..4).map(|_| Rng::new(11).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        let mut c0 = Rng::for_candidate(11, 0);
        let mut base = Rng::new(11);
        assert_eq!(c0.next_u64(), base.next_u64());
        let mut c1 = Rng::for_candidate(11, 1);
        assert_ne!(Rng::for_candidate(11, 0).next_u64(), c1.next_u64());
        let mut r = Rng::new(5);
        for _ in 0..1000 {
            let x = r.next_f64();
            assert!((0.0..1.0).contains(&x));
        }
    }

    #[test]
    fn log_softmax_is_normalised() {
        let lp = log_softmax(&[1.0, 2.0, 3.0, f64::NEG_INFINITY]);
        let s: f64 = lp.iter().map(|l| l.exp()).sum();
        assert!((s - 1.0).abs() < 1e-12);
        assert_eq!(lp[3], f64::NEG_INFINITY);
    }

    #[test]
    fn greedy_takes_the_argmax() {
        let mut p = params();
        p.temperature = 0.0;
        p.top_logprobs = 2;
        let c = choose(&[0.1, 3.0, 2.0], &p, &mut Rng::new(1));
        assert_eq!(c.token, 1);
        assert_eq!(c.top.len(), 2);
        assert_eq!(c.top[0].0, 1);
        assert_eq!(c.top[1].0, 2);
        assert!(c.top[0].1 > c.top[1].1);
    }

    #[test]
    fn top_k_one_is_greedy_and_min_p_filters() {
        let logits = [0.0, 5.0, 4.9, -3.0];
        let mut p = params();
        p.top_k = 1;
        for s in 0..50 {
            assert_eq!(choose(&logits, &p, &mut Rng::new(s)).token, 1);
        }
        let mut p = params();
        p.min_p = 0.5; // keeps tokens 1 and 2 (p2/p1 = e^-0.1)
        for s in 0..200 {
            let t = choose(&logits, &p, &mut Rng::new(s)).token;
            assert!(t == 1 || t == 2, "{t}");
        }
        let mut p = params();
        p.top_p = 0.3; // token 1 alone carries more than 30%
        for s in 0..50 {
            assert_eq!(choose(&logits, &p, &mut Rng::new(s)).token, 1);
        }
    }

    #[test]
    fn bias_and_penalties_move_logits() {
        let mut p = params();
        p.logit_bias = vec![(0, 10.0)];
        p.presence_penalty = 1.0;
        p.frequency_penalty = 0.5;
        p.repetition_penalty = 2.0;
        let mut l = vec![0.0, -1.0, 2.0];
        adjust_logits(&mut l, &[1, 1, 2], &p);
        assert_eq!(l[0], 10.0);
        assert_eq!(l[1], -2.0 - 1.0 - 1.0);
        assert_eq!(l[2], 1.0 - 0.5 - 1.0);
        let mut windowed = p.clone();
        windowed.repetition_context = 1;
        let mut l = vec![0.0, -1.0, 2.0];
        adjust_logits(&mut l, &[1, 1, 2], &windowed);
        assert_eq!(l[1], -1.0);
    }

    #[test]
    fn sampling_follows_the_distribution() {
        let logits = [0.0, (3.0f64).ln()];
        let p = params();
        let mut rng = Rng::new(42);
        let ones = (0..4000)
            .filter(|_| choose(&logits, &p, &mut rng).token == 1)
            .count();
        assert!((2800..3200).contains(&ones), "{ones}");
    }
}
