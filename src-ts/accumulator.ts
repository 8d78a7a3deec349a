/**
 * The one reading of the engine's deltas: state events become typed {@link ItemEvent}s once,
 * and those fold into per-sequence answers, reasoning, tool calls and usage. Chat results,
 * Responses output and every usage count come from here.
 */

import type {
  ChatChoice,
  ChatDelta,
  ChatResult,
  FinishReason,
  StateEvent,
  Timings,
  TokenLogprob,
  ToolCallDelta,
  ToolCallResult,
  Usage,
} from './types'

/**
 * A state event, interpreted. `started` opens an item (any event that neither streams nor
 * completes it does), `delta` streams its text, `done` completes it with the engine's value.
 */
export type ItemEvent =
  | { item: 'message' | 'reasoning'; kind: 'started'; index: number; identifier: string }
  | { item: 'message' | 'reasoning'; kind: 'delta'; index: number; identifier: string; delta: string }
  | { item: 'message' | 'reasoning'; kind: 'done'; index: number; identifier: string; value: string | null }
  /** `name`: from a `tool_call:<name>` identifier, else null. */
  | { item: 'tool_call'; kind: 'started'; index: number; name: string | null }
  /** A fragment of the call: `argument` is the argument it is the value of (null: the raw call text); `name` once known. */
  | { item: 'tool_call'; kind: 'delta'; index: number; name: string | null; argument: string | null; delta: string }
  | { item: 'tool_call'; kind: 'done'; index: number; call: ToolCallResult }

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
  finishReason: FinishReason | null
  cumulativeLogprob: number | null
  generationLen: number
  reasoningTokens: number
  promptTokens: number
  cachedTokens: number
}

/**
 * A completed call's arguments as JSON text, the same on every surface (chat completions,
 * Responses, the AI SDK provider). An object is serialized; text that is JSON is kept (compacted);
 * text that is not JSON becomes a JSON string, as the reference's `json.dumps(arguments)` does
 * (`client-api.md` §4.2). The result always parses.
 */
export function argumentsText(call: Pick<ToolCallResult, 'arguments'>): string {
  const args: unknown = call.arguments
  if (typeof args !== 'string') return JSON.stringify(args ?? {})
  try {
    return JSON.stringify(JSON.parse(args))
  } catch {
    return JSON.stringify(args)
  }
}

const TOOL_CALL_PREFIX = 'tool_call:'

/** Event-less deltas held back at most, before a sequence counts as a raw text stream. */
const MAX_HELD = 4

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v)

/** `v` parsed when it is JSON text, else as it is. */
export function parseMaybeJson(v: unknown): unknown {
  if (typeof v !== 'string') return v
  try {
    return JSON.parse(v)
  } catch {
    return v
  }
}

function parseArguments(value: unknown): Record<string, unknown> | string {
  if (typeof value === 'string') {
    const parsed = parseMaybeJson(value)
    return isObject(parsed) ? parsed : value
  }
  if (isObject(value)) return value
  return value === undefined || value === null ? {} : JSON.stringify(value)
}

/** A completed call from its `item_completed` value: `{ name, arguments }`, or the arguments alone. */
function completedCall(ev: StateEvent): ToolCallResult {
  const value = parseMaybeJson(ev.value)
  const fallbackName = ev.identifier.slice(TOOL_CALL_PREFIX.length)
  if (isObject(value)) {
    return {
      name: typeof value.name === 'string' && value.name.length > 0 ? value.name : fallbackName,
      arguments: parseArguments(value.arguments),
    }
  }
  return { name: fallbackName, arguments: parseArguments(value) }
}

/** What one state event means. `known`: the call's name, if an earlier event gave it. */
function interpret(ev: StateEvent, known: string | null): ItemEvent | null {
  const index = ev.outputIndex
  if (ev.itemType === 'message' || ev.itemType === 'reasoning') {
    const item = ev.itemType
    if (ev.eventType === 'content_delta')
      return { item, kind: 'delta', index, identifier: ev.identifier, delta: ev.delta }
    if (ev.eventType === 'item_completed')
      return {
        item,
        kind: 'done',
        index,
        identifier: ev.identifier,
        value: typeof ev.value === 'string' ? ev.value : null,
      }
    return { item, kind: 'started', index, identifier: ev.identifier }
  }
  if (ev.itemType !== 'tool_call') return null
  const named = ev.identifier.startsWith(TOOL_CALL_PREFIX)
  if (ev.eventType === 'content_delta') {
    return {
      item: 'tool_call',
      kind: 'delta',
      index,
      name: known,
      argument: ev.identifier === 'arguments' ? null : ev.identifier,
      delta: ev.delta,
    }
  }
  if (ev.eventType === 'item_completed' && named)
    return { item: 'tool_call', kind: 'done', index, call: completedCall(ev) }
  return {
    item: 'tool_call',
    kind: 'started',
    index,
    name: named && ev.eventType === 'item_started' ? ev.identifier.slice(TOOL_CALL_PREFIX.length) : null,
  }
}

export class Accumulator {
  readonly #sequences = new Map<string, Sequence>()
  /** Each delta's state events, interpreted (for readers that build on items, e.g. Responses). */
  readonly #items = new WeakMap<ChatDelta, readonly ItemEvent[]>()
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

  /** The item events of a delta this accumulator folded in (none for a delta without state events). */
  items(d: ChatDelta): readonly ItemEvent[] {
    return this.#items.get(d) ?? []
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
      const items: ItemEvent[] = []
      for (const ev of d.stateEvents) {
        const e = interpret(ev, s.toolCalls.get(ev.outputIndex)?.name ?? null)
        if (e === null) continue
        items.push(e)
        if (e.item === 'tool_call') {
          if (e.kind === 'started') {
            if (e.name !== null && !s.toolCalls.has(e.index))
              s.toolCalls.set(e.index, { name: e.name, arguments: null })
          } else if (e.kind === 'delta') {
            toolCallDeltas.push({ outputIndex: e.index, name: e.name, argument: e.argument, delta: e.delta })
          } else {
            s.toolCalls.set(e.index, e.call)
          }
        } else if (e.item === 'message') {
          if (e.kind === 'delta') text += e.delta
          else if (e.kind === 'done' && e.value !== null) s.messageValues.set(e.identifier, e.value)
        } else {
          let r = s.reasoning.get(e.identifier)
          if (!r) {
            r = { spans: '', value: null }
            s.reasoning.set(e.identifier, r)
          }
          if (e.kind === 'delta') {
            reasoning += e.delta
            r.spans += e.delta
          } else if (e.kind === 'done' && e.value !== null) r.value = e.value
        }
      }
      this.#items.set(d, items)
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
    if (d.logprobs) {
      s.logprobs ??= []
      s.logprobs.push(...d.logprobs)
    }
    if (d.cumulativeLogprob != null) s.cumulativeLogprob = d.cumulativeLogprob
    // The engine's counts are running totals: the largest seen is the count (protocol §4.7).
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

  #of(promptIndex: number): Sequence[] {
    return [...this.#sequences.values()].filter((s) => s.promptIndex === promptIndex)
  }

  /** Token counts of prompt `promptIndex` so far, over every candidate generated for it. */
  usage(promptIndex: number): Usage {
    return usageOf(this.#of(promptIndex))
  }

  #timings(sequences: Sequence[]): Timings {
    const end = performance.now()
    const generated = sequences.reduce((n, s) => n + generatedBy(s), 0)
    const first = this.#firstTokenAt
    const last = this.#lastTokenAt
    return {
      timeToFirstTokenMs: first === null ? null : first - this.#startedAt,
      tokensPerSecond:
        first !== null && last !== null && last > first && generated > 1
          ? ((generated - 1) * 1000) / (last - first)
          : null,
      totalMs: end - this.#startedAt,
    }
  }

  /** The result of prompt `promptIndex`, keeping the best `keep` candidates. */
  result(promptIndex: number, keep: number): ChatResult {
    const all = this.#of(promptIndex)
    let chosen: Sequence[]
    if (all.length > keep) {
      // Rank like the reference: cumulative logprob per generated token, best first.
      const score = (s: Sequence) => (s.cumulativeLogprob ?? -Infinity) / Math.max(1, generatedBy(s))
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

/** Tokens a sequence generated: the engine's count, else the tokens seen. */
function generatedBy(s: Sequence): number {
  return s.generationLen || s.tokens.length
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
  const completionTokens = sequences.reduce((n, s) => n + Math.max(generatedBy(s), s.reasoningTokens), 0)
  return {
    promptTokens,
    completionTokens,
    reasoningTokens,
    cachedTokens: sequences.reduce((m, s) => Math.max(m, s.cachedTokens), 0),
    totalTokens: promptTokens + completionTokens,
  }
}
