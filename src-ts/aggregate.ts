/** Folds streamed deltas into per-sequence answers, reasoning, tool calls and usage. */

import type { ChatChoice, ChatDelta, ChatResult, StateEvent, Timings, TokenLogprob, ToolCallDelta, ToolCallResult, Usage } from './types'

interface Sequence {
  promptIndex: number
  candidateIndex: number
  /** Raw `content`, used when the engine sends no state events. */
  content: string
  /** Message spans from state events, and completed message values by identifier. */
  message: string
  messageValues: Map<string, string>
  reasoning: Map<string, { spans: string; value: string | null }>
  toolCalls: Map<number, ToolCallResult | { name: string; arguments: null }>
  sawEvents: boolean
  /**
   * Deltas without state events held back until the sequence shows whether it has events
   * (they were then markers shipped ahead of them, e.g. the think-open tag) or not (raw text).
   */
  held: ChatDelta[]
  /** The sequence streams raw `content` without state events. */
  raw: boolean
  tokens: number[]
  logprobs: TokenLogprob[] | null
  finishReason: string | null
  cumulativeLogprob: number | null
  generationLen: number
  reasoningTokens: number
  promptTokens: number
  cachedTokens: number
}

const TOOL_CALL_PREFIX = 'tool_call:'

/** Event-less deltas held back at most, before a sequence counts as a raw text stream. */
const MAX_HELD = 4

function parseArguments(value: unknown): Record<string, unknown> | string {
  if (typeof value === 'string') {
    try {
      const parsed: unknown = JSON.parse(value)
      if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) return parsed as Record<string, unknown>
    } catch {
      /* not JSON: keep the text */
    }
    return value
  }
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) return value as Record<string, unknown>
  return value === undefined || value === null ? {} : JSON.stringify(value)
}

function completedCall(ev: StateEvent): ToolCallResult {
  let value: unknown = ev.value
  if (typeof value === 'string') {
    try {
      value = JSON.parse(value)
    } catch {
      /* a bare string value: the arguments text */
    }
  }
  const fallbackName = ev.identifier.slice(TOOL_CALL_PREFIX.length)
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const v = value as { name?: unknown; arguments?: unknown }
    return { name: typeof v.name === 'string' ? v.name : fallbackName, arguments: parseArguments(v.arguments) }
  }
  return { name: fallbackName, arguments: parseArguments(value) }
}

export class Aggregator {
  readonly #sequences = new Map<string, Sequence>()
  readonly #startedAt = performance.now()
  #firstTokenAt: number | null = null
  #lastTokenAt: number | null = null
  requestId = 0

  #sequence(p: number, c: number): Sequence {
    const key = `${p}:${c}`
    let s = this.#sequences.get(key)
    if (!s) {
      s = {
        promptIndex: p,
        candidateIndex: c,
        content: '',
        message: '',
        messageValues: new Map(),
        reasoning: new Map(),
        toolCalls: new Map(),
        sawEvents: false,
        held: [],
        raw: false,
        tokens: [],
        logprobs: null,
        finishReason: null,
        cumulativeLogprob: null,
        generationLen: 0,
        reasoningTokens: 0,
        promptTokens: 0,
        cachedTokens: 0,
      }
      this.#sequences.set(key, s)
    }
    return s
  }

  /**
   * Fold `d` in, fill its derived fields (`text`, `reasoning`, `toolCallDeltas`) and return
   * the deltas ready to hand out, in order. A sequence's leading deltas without state events
   * are held back until it is clear whether the engine sends events for it: if it does, those
   * deltas were markers ahead of the first item (their `text` becomes empty); if the sequence
   * ends, or more than {@link MAX_HELD} such deltas arrive, their `content` is the text.
   */
  add(d: ChatDelta): ChatDelta[] {
    this.requestId = d.requestId
    const s = this.#sequence(d.promptIndex ?? 0, d.candidateIndex ?? 0)
    let text = ''
    let reasoning = ''
    const toolCallDeltas: ToolCallDelta[] = []
    if (d.stateEvents.length > 0) {
      s.sawEvents = true
      for (const ev of d.stateEvents) {
        if (ev.itemType === 'message') {
          if (ev.eventType === 'content_delta') text += ev.delta
          else if (ev.eventType === 'item_completed' && typeof ev.value === 'string') s.messageValues.set(ev.identifier, ev.value)
        } else if (ev.itemType === 'reasoning') {
          let r = s.reasoning.get(ev.identifier)
          if (!r) s.reasoning.set(ev.identifier, (r = { spans: '', value: null }))
          if (ev.eventType === 'content_delta') {
            reasoning += ev.delta
            r.spans += ev.delta
          } else if (ev.eventType === 'item_completed' && typeof ev.value === 'string') r.value = ev.value
        } else if (ev.itemType === 'tool_call') {
          const known = s.toolCalls.get(ev.outputIndex)
          if (ev.eventType === 'item_started' && ev.identifier.startsWith(TOOL_CALL_PREFIX)) {
            if (!known) s.toolCalls.set(ev.outputIndex, { name: ev.identifier.slice(TOOL_CALL_PREFIX.length), arguments: null })
          } else if (ev.eventType === 'content_delta') {
            toolCallDeltas.push({
              outputIndex: ev.outputIndex,
              name: known?.name ?? null,
              argument: ev.identifier === 'arguments' ? null : ev.identifier,
              delta: ev.delta,
            })
          } else if (ev.eventType === 'item_completed' && ev.identifier.startsWith(TOOL_CALL_PREFIX)) {
            s.toolCalls.set(ev.outputIndex, completedCall(ev))
          }
        }
      }
      s.message += text
    } else if (d.content && !s.sawEvents) {
      // Without events the content is the text; once events were seen it is framing they cover.
      text = d.content
    }
    if (d.content) s.content += d.content
    d.text = text
    d.reasoning = reasoning
    d.toolCallDeltas = toolCallDeltas

    if (d.tokens.length) {
      for (const t of d.tokens) s.tokens.push(t)
      const now = performance.now()
      this.#firstTokenAt ??= now
      this.#lastTokenAt = now
    }
    if (d.logprobs) for (const l of d.logprobs) (s.logprobs ??= []).push(l)
    if (d.cumulativeLogprob != null) s.cumulativeLogprob = d.cumulativeLogprob
    if (d.generationLen != null) s.generationLen = Math.max(s.generationLen, d.generationLen)
    if (d.reasoningTokens != null) s.reasoningTokens = Math.max(s.reasoningTokens, d.reasoningTokens)
    if (d.promptTokenCount != null) s.promptTokens = Math.max(s.promptTokens, d.promptTokenCount)
    if (d.cachedTokenCount != null) s.cachedTokens = Math.max(s.cachedTokens, d.cachedTokenCount)
    if (d.isFinal) s.finishReason = d.finishReason ?? null
    return this.#release(s, d)
  }

  #release(s: Sequence, d: ChatDelta): ChatDelta[] {
    if (!s.sawEvents && !s.raw && !d.isFinal && d.stateEvents.length === 0) {
      s.held.push(d)
      if (s.held.length <= MAX_HELD) return []
      s.raw = true
      return s.held.splice(0)
    }
    if (s.held.length === 0) return [d]
    const ready = s.held.splice(0)
    if (s.sawEvents) for (const h of ready) h.text = ''
    ready.push(d)
    return ready
  }

  /** Deltas still held back when the stream ended without a final delta. */
  flush(): ChatDelta[] {
    return [...this.#sequences.values()].flatMap((s) => s.held.splice(0))
  }

  #timings(sequences: Sequence[]): Timings {
    const end = performance.now()
    const generated = sequences.reduce((n, s) => n + (s.generationLen || s.tokens.length), 0)
    const first = this.#firstTokenAt
    const last = this.#lastTokenAt
    return {
      timeToFirstTokenMs: first === null ? null : first - this.#startedAt,
      tokensPerSecond: first !== null && last !== null && last > first && generated > 1 ? ((generated - 1) * 1000) / (last - first) : null,
      totalMs: end - this.#startedAt,
    }
  }

  /** The result of prompt `promptIndex`, keeping the best `keep` candidates. */
  result(promptIndex: number, keep: number): ChatResult {
    const all = [...this.#sequences.values()].filter((s) => s.promptIndex === promptIndex)
    let chosen: Sequence[]
    if (all.length > keep) {
      // Rank like the reference: cumulative logprob per generated token, best first.
      const score = (s: Sequence) => (s.cumulativeLogprob ?? -Infinity) / Math.max(1, s.generationLen || s.tokens.length)
      chosen = [...all].sort((a, b) => score(b) - score(a) || a.candidateIndex - b.candidateIndex).slice(0, keep)
    } else {
      chosen = [...all].sort((a, b) => a.candidateIndex - b.candidateIndex)
    }
    const choices: ChatChoice[] = chosen.map((s, index) => ({
      index,
      text: answerText(s),
      reasoning: reasoningText(s),
      toolCalls: [...s.toolCalls.entries()]
        .sort((a, b) => a[0] - b[0])
        .map(([, call]) => ({ name: call.name, arguments: call.arguments ?? {} })),
      finishReason: s.finishReason,
      tokens: s.tokens,
      cumulativeLogprob: s.cumulativeLogprob,
      logprobs: s.logprobs,
    }))
    const first = choices[0]
    return {
      text: first?.text ?? '',
      reasoning: first?.reasoning ?? null,
      toolCalls: first?.toolCalls ?? [],
      finishReason: first?.finishReason ?? null,
      usage: usageOf(all),
      choices,
      timings: this.#timings(all),
      requestId: this.requestId,
    }
  }
}

/** Message spans when the engine sent state events (the completed value if there were no spans), else the raw content. */
function answerText(s: Sequence): string {
  if (!s.sawEvents) return s.content
  if (s.message.length > 0 || s.messageValues.size === 0) return s.message
  return [...s.messageValues.values()].join('')
}

function reasoningText(s: Sequence): string | null {
  if (s.reasoning.size === 0) return null
  return [...s.reasoning.entries()]
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    .map(([, r]) => r.value ?? r.spans)
    .join('')
}

function usageOf(sequences: Sequence[]): Usage {
  const promptTokens = sequences.reduce((m, s) => Math.max(m, s.promptTokens), 0)
  const reasoningTokens = sequences.reduce((n, s) => n + s.reasoningTokens, 0)
  // OpenAI's convention: completion counts every generated token, reasoning included.
  const completionTokens = sequences.reduce((n, s) => n + Math.max(s.generationLen || s.tokens.length, s.reasoningTokens), 0)
  return {
    promptTokens,
    completionTokens,
    reasoningTokens,
    cachedTokens: sequences.reduce((m, s) => Math.max(m, s.cachedTokens), 0),
    totalTokens: promptTokens + completionTokens,
  }
}
