/** orchard results and deltas → OpenAI response objects and stream chunks. */

import { randomBytes } from 'node:crypto'

import { argumentsText } from '../accumulator'
import type { EmbedResult } from '../embed'
import type { ChatChoice, ChatDelta, ChatResult, FinishReason, TokenLogprob, TopLogprob, Usage } from '../types'

export const newId = (prefix: string): string => `${prefix}${randomBytes(12).toString('hex')}`
export const now = (): number => Math.floor(Date.now() / 1000)

export interface OpenAIUsage {
  prompt_tokens: number
  completion_tokens: number
  total_tokens: number
  prompt_tokens_details: { cached_tokens: number }
  completion_tokens_details: { reasoning_tokens: number }
}

export function usage(u: Usage): OpenAIUsage {
  return {
    prompt_tokens: u.promptTokens,
    completion_tokens: u.completionTokens,
    total_tokens: u.totalTokens,
    prompt_tokens_details: { cached_tokens: u.cachedTokens },
    completion_tokens_details: { reasoning_tokens: u.reasoningTokens },
  }
}

/** orchard's finish reasons → OpenAI's. */
export function finishReason(
  reason: FinishReason | null,
  toolCalls: number,
): 'stop' | 'length' | 'tool_calls' | 'content_filter' {
  if (toolCalls > 0) return 'tool_calls'
  if (reason === 'length' || reason === 'max_tokens') return 'length'
  return 'stop'
}

interface LogprobEntry {
  token: string
  logprob: number
  bytes: number[] | null
}

export interface ChatLogprob extends LogprobEntry {
  top_logprobs: LogprobEntry[]
}

function bytesOf(token: string, bytes: number[] | undefined): number[] {
  return bytes ?? [...Buffer.from(token, 'utf8')]
}

/**
 * The chosen token's log-probability: the engine's own value, else the alternative that is
 * the chosen token. A token without either (several packed into one delta) has none.
 */
function chosenLogprob(l: TokenLogprob): number | null {
  if (l.logprob !== null) return l.logprob
  const same = l.topLogprobs.find((t) => t.tokenId === l.tokenId)
  return same ? same.logprob : null
}

const entry = (t: TopLogprob): LogprobEntry => ({
  token: t.token,
  logprob: t.logprob,
  bytes: bytesOf(t.token, t.bytes),
})

/** Tokens with log-probabilities in the chat shape, `top` alternatives each. */
export function chatLogprobs(list: readonly TokenLogprob[], top: number): ChatLogprob[] {
  const out: ChatLogprob[] = []
  for (const l of list) {
    const logprob = chosenLogprob(l)
    if (logprob === null) continue
    out.push({
      token: l.token,
      logprob,
      bytes: bytesOf(l.token, l.bytes),
      top_logprobs: l.topLogprobs.slice(0, top).map(entry),
    })
  }
  return out
}

export interface OpenAIToolCall {
  id: string
  type: 'function'
  function: { name: string; arguments: string }
}

export interface ChatCompletionMessage {
  role: 'assistant'
  content: string | null
  refusal: null
  reasoning_content?: string
  tool_calls?: OpenAIToolCall[]
}

export interface ChatCompletion {
  id: string
  object: 'chat.completion'
  created: number
  model: string
  system_fingerprint: null
  choices: Array<{
    index: number
    message: ChatCompletionMessage
    logprobs: { content: ChatLogprob[]; refusal: null } | null
    finish_reason: ReturnType<typeof finishReason>
  }>
  usage: OpenAIUsage
}

function message(c: ChatChoice): ChatCompletionMessage {
  const m: ChatCompletionMessage = {
    role: 'assistant',
    content: c.toolCalls.length > 0 && c.text === '' ? null : c.text,
    refusal: null,
  }
  if (c.reasoning !== null) m.reasoning_content = c.reasoning
  if (c.toolCalls.length > 0) {
    m.tool_calls = c.toolCalls.map((call) => ({
      id: newId('call_'),
      type: 'function',
      function: { name: call.name, arguments: argumentsText(call) },
    }))
  }
  return m
}

export function chatCompletion(
  id: string,
  model: string,
  r: ChatResult,
  logprobs: { enabled: boolean; top: number },
): ChatCompletion {
  return {
    id,
    object: 'chat.completion',
    created: now(),
    model,
    system_fingerprint: null,
    choices: r.choices.map((c) => ({
      index: c.index,
      message: message(c),
      logprobs: logprobs.enabled ? { content: chatLogprobs(c.logprobs ?? [], logprobs.top), refusal: null } : null,
      finish_reason: finishReason(c.finishReason, c.toolCalls.length),
    })),
    usage: usage(r.usage),
  }
}

export interface ChunkDelta {
  role?: 'assistant'
  content?: string
  reasoning_content?: string
  tool_calls?: Array<{ index: number; id?: string; type?: 'function'; function: { name?: string; arguments: string } }>
}

export interface ChatCompletionChunk {
  id: string
  object: 'chat.completion.chunk'
  created: number
  model: string
  system_fingerprint: null
  choices: Array<{
    index: number
    delta: ChunkDelta
    logprobs: { content: ChatLogprob[]; refusal: null } | null
    finish_reason: ReturnType<typeof finishReason> | null
  }>
  usage?: OpenAIUsage | null
}

/**
 * Turns one request's deltas into chunks. Tool calls: a chunk with the call's index, id and
 * name as soon as the name is known; the arguments (JSON text) once the call is complete, at
 * the end of the stream, followed by each choice's finish reason.
 */
export class ChunkWriter {
  readonly #id: string
  readonly #model: string
  readonly #created = now()
  readonly #includeUsage: boolean
  readonly #logprobs: { enabled: boolean; top: number }
  /** Per choice: whether its role chunk went out, and its tool calls by output index. */
  readonly #choices = new Map<number, { started: boolean; calls: Map<number, { index: number; id: string }> }>()

  constructor(id: string, model: string, includeUsage: boolean, logprobs: { enabled: boolean; top: number }) {
    this.#id = id
    this.#model = model
    this.#includeUsage = includeUsage
    this.#logprobs = logprobs
  }

  #chunk(
    index: number,
    delta: ChunkDelta,
    extra: Partial<ChatCompletionChunk['choices'][number]> = {},
  ): ChatCompletionChunk {
    const c: ChatCompletionChunk = {
      id: this.#id,
      object: 'chat.completion.chunk',
      created: this.#created,
      model: this.#model,
      system_fingerprint: null,
      choices: [{ index, delta, logprobs: null, finish_reason: null, ...extra }],
    }
    if (this.#includeUsage) c.usage = null
    return c
  }

  #choice(index: number) {
    let s = this.#choices.get(index)
    if (!s) {
      s = { started: false, calls: new Map() }
      this.#choices.set(index, s)
    }
    return s
  }

  /** The chunks for one delta (none when it carries nothing a client sees). */
  delta(d: ChatDelta): ChatCompletionChunk[] {
    const index = d.candidateIndex ?? 0
    const s = this.#choice(index)
    const out: ChatCompletionChunk[] = []
    if (!s.started) {
      s.started = true
      out.push(this.#chunk(index, { role: 'assistant', content: '' }))
    }
    const logprobs =
      this.#logprobs.enabled && d.logprobs?.length
        ? { content: chatLogprobs(d.logprobs, this.#logprobs.top), refusal: null as null }
        : null
    if (d.reasoning) out.push(this.#chunk(index, { reasoning_content: d.reasoning }, { logprobs }))
    else if (d.text) out.push(this.#chunk(index, { content: d.text }, { logprobs }))
    else if (logprobs) out.push(this.#chunk(index, {}, { logprobs }))
    for (const f of d.toolCallDeltas) {
      if (f.name === null || s.calls.has(f.outputIndex)) continue
      const call = { index: s.calls.size, id: newId('call_') }
      s.calls.set(f.outputIndex, call)
      out.push(
        this.#chunk(index, {
          tool_calls: [{ index: call.index, id: call.id, type: 'function', function: { name: f.name, arguments: '' } }],
        }),
      )
    }
    return out
  }

  /** Closing chunks: each choice's tool-call arguments and finish reason, then the usage. */
  finish(r: ChatResult): ChatCompletionChunk[] {
    const out: ChatCompletionChunk[] = []
    for (const c of r.choices) {
      const s = this.#choice(c.index)
      if (!s.started) {
        s.started = true
        out.push(this.#chunk(c.index, { role: 'assistant', content: '' }))
      }
      // Calls in output order; a call whose name never streamed gets its header here.
      const known = [...s.calls.entries()].sort((a, b) => a[0] - b[0]).map(([, v]) => v)
      c.toolCalls.forEach((call, i) => {
        const streamed = known[i]
        const tc = streamed
          ? { index: streamed.index, function: { arguments: argumentsText(call) } }
          : {
              index: i,
              id: newId('call_'),
              type: 'function' as const,
              function: { name: call.name, arguments: argumentsText(call) },
            }
        out.push(this.#chunk(c.index, { tool_calls: [tc] }))
      })
      out.push(this.#chunk(c.index, {}, { finish_reason: finishReason(c.finishReason, c.toolCalls.length) }))
    }
    if (this.#includeUsage) {
      out.push({
        id: this.#id,
        object: 'chat.completion.chunk',
        created: this.#created,
        model: this.#model,
        system_fingerprint: null,
        choices: [],
        usage: usage(r.usage),
      })
    }
    return out
  }
}

// ---------------------------------------------------------------------------------------
// Legacy completions

export interface CompletionLogprobs {
  tokens: string[]
  token_logprobs: number[]
  top_logprobs: Array<Record<string, number>>
  text_offset: number[]
}

export function completionLogprobs(list: readonly TokenLogprob[], top: number, offset = 0): CompletionLogprobs {
  const out: CompletionLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] }
  let at = offset
  for (const l of chatLogprobs(list, top)) {
    out.tokens.push(l.token)
    out.token_logprobs.push(l.logprob)
    out.top_logprobs.push(Object.fromEntries(l.top_logprobs.map((t) => [t.token, t.logprob])))
    out.text_offset.push(at)
    at += l.token.length
  }
  return out
}

export interface TextCompletion {
  id: string
  object: 'text_completion'
  created: number
  model: string
  system_fingerprint: null
  choices: Array<{
    index: number
    text: string
    logprobs: CompletionLogprobs | null
    finish_reason: ReturnType<typeof finishReason> | null
  }>
  usage?: OpenAIUsage | null
}

/** Choice `index` of a legacy completion: prompt `p`, candidate `c`, with `n` per prompt. */
export const completionIndex = (p: number, c: number, n: number): number => p * n + c

export function sumUsage(list: readonly Usage[]): Usage {
  const u: Usage = { promptTokens: 0, completionTokens: 0, reasoningTokens: 0, cachedTokens: 0, totalTokens: 0 }
  for (const x of list) {
    u.promptTokens += x.promptTokens
    u.completionTokens += x.completionTokens
    u.reasoningTokens += x.reasoningTokens
    u.cachedTokens += x.cachedTokens
    u.totalTokens += x.totalTokens
  }
  return u
}

/** One vector of a `POST /v1/embeddings` answer. */
export interface EmbeddingObject {
  object: 'embedding'
  index: number
  /** Floats, or with `encoding_format: 'base64'` the float32 little-endian bytes in base64. */
  embedding: number[] | string
}

/** The body of a `POST /v1/embeddings` answer, as OpenAI shapes it. */
export interface EmbeddingList {
  object: 'list'
  data: EmbeddingObject[]
  model: string
  usage: { prompt_tokens: number; total_tokens: number }
}

/** Float32 values as base64 of their little-endian bytes (what OpenAI's clients decode). */
export function float32Base64(v: Float32Array): string {
  const bytes = Buffer.alloc(v.length * 4)
  for (let i = 0; i < v.length; i++) bytes.writeFloatLE(v[i]!, i * 4)
  return bytes.toString('base64')
}

export function embeddingList(model: string, r: EmbedResult, encoding: 'float' | 'base64'): EmbeddingList {
  return {
    object: 'list',
    data: r.embeddings.map((e, index) => ({
      object: 'embedding',
      index,
      embedding: encoding === 'base64' ? float32Base64(e) : Array.from(e),
    })),
    model,
    usage: { prompt_tokens: r.usage.promptTokens, total_tokens: r.usage.totalTokens },
  }
}
