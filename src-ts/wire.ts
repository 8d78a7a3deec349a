/** Low-level access to the PIE wire codec (for tools, tests and protocol work). */

import { nativeSync } from './errors'
import { isPlainObject, requestJson } from './json'
import { addon, modelSpecsDir } from './native'
import type { ChatDelta, ChatMessage, ChatOptions } from './types'

/** Bytes in the reference vocabulary: base64 text or a Buffer / Uint8Array. */
export type WireBytes = string | Uint8Array

export interface WirePrompt {
  prompt_bytes?: WireBytes
  prompt?: string
  image_buffers?: WireBytes[]
  audio_buffers?: WireBytes[]
  capabilities?: Array<{ name: string; position?: number; payload?: WireBytes }>
  layout?: Array<{ type: 'text' | 'image' | 'audio' | 'capability'; length: number }>
  max_generated_tokens?: number
  num_candidates?: number
  best_of?: number
  final_candidates?: number
  stop_sequences?: string[]
  sampling_params?: {
    temperature?: number
    top_p?: number
    top_k?: number
    min_p?: number
    rng_seed?: number | bigint
    deterministic?: boolean
  }
  logits_params?: {
    top_logprobs?: number
    frequency_penalty?: number
    presence_penalty?: number
    repetition_context_size?: number
    repetition_penalty?: number
    /** `{token_id: bias}`, or ordered `[token, bias]` pairs: a JS object sorts integer keys. */
    logit_bias?: Record<string, number> | Array<[number, number] | { token: number; bias: number }>
  }
  [key: string]: unknown
}

export interface WireRequest {
  request: {
    request_id: number | bigint
    model_id: string
    model_path?: string
    request_type?: string | number
    request_channel_id?: number | bigint
    response_channel_id: number | bigint
  }
  prompts: WirePrompt[]
}

export type WireMessage =
  | { kind: 'delta'; channel: bigint; delta: ChatDelta }
  | { kind: 'event'; name: string; payload: unknown }

/** `bytes` as a Buffer over the same memory. */
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

/** Bytes travel as base64; ids above 2^53 as decimal text (the codec reads them back as u64). */
function wireValue(original: unknown, value: unknown): unknown {
  if (original instanceof Uint8Array) return asBuffer(original).toString('base64')
  if (typeof value === 'bigint') return value.toString()
  return undefined
}

/**
 * The request with each prompt's `prompt_bytes` (base64 text or bytes) taken out, and those
 * bytes by prompt: the bulk of a request then crosses as it is, neither escaped into JSON
 * nor parsed out of it. Anything else is left in place for the native side to judge.
 */
function splitPromptBytes(input: WireRequest): [WireRequest, Array<string | Buffer | null> | undefined] {
  // Only plain objects are copied: a copy of anything else could serialize differently.
  if (!isPlainObject(input) || !Array.isArray(input.prompts)) return [input, undefined]
  const bytes: Array<string | Buffer | null> = []
  let found = false
  const rest = input.prompts.map((p: unknown) => {
    const b = isPlainObject(p) ? (p as WirePrompt).prompt_bytes : undefined
    if (typeof b !== 'string' && !(b instanceof Uint8Array)) {
      bytes.push(null)
      return p
    }
    found = true
    bytes.push(typeof b === 'string' ? b : asBuffer(b))
    return { ...(p as WirePrompt), prompt_bytes: undefined }
  })
  return found ? [{ ...input, prompts: rest as WirePrompt[] }, bytes] : [input, undefined]
}

/** Build the request frame (`u32 LE length | JSON | aligned blobs`) the engine reads. */
export function encodeRequest(input: WireRequest): Buffer {
  const [rest, promptBytes] = splitPromptBytes(input)
  return nativeSync(() => addon().encodeRequest(requestJson(rest, { convert: wireValue }), promptBytes))
}

/**
 * Read a request frame back into the vocabulary of {@link encodeRequest} (bytes as base64,
 * logit biases as ordered pairs, ids above 2^53 as decimal text). A truncated frame, bad
 * JSON, a wrong field type or an offset outside the payload throws `ProtocolError`.
 */
export function decodeRequest(frame: Uint8Array): WireRequest {
  const buf = asBuffer(frame)
  return JSON.parse(nativeSync(() => addon().decodeRequest(buf))) as WireRequest
}

/** Decode one message from the response socket: a delta or an engine event. */
export function decodeMessage(message: Uint8Array): WireMessage {
  const buf = asBuffer(message)
  const m = nativeSync(() => addon().decodeMessage(buf))
  if (m.kind === 'delta' && m.deltaJson != null && m.channel != null) {
    return { kind: 'delta', channel: m.channel, delta: JSON.parse(m.deltaJson) as ChatDelta }
  }
  return { kind: 'event', name: m.eventName ?? '', payload: JSON.parse(m.payloadJson ?? 'null') as unknown }
}

/**
 * The frame `client.chat` would send for one conversation, built without an engine: the
 * prompt rendered with the profile that `config` (a model's config.json) selects, the
 * options resolved against that profile, then encoded.
 */
export function buildChatFrame(input: {
  config: Record<string, unknown>
  messages: ChatMessage[]
  options?: Omit<ChatOptions, 'signal' | 'stallTimeoutMs'>
}): Buffer {
  return nativeSync(() =>
    addon().buildChatFrame(
      requestJson(input.config, { root: 'config' }),
      requestJson(input.messages, { root: 'messages' }),
      requestJson(input.options ?? {}),
      modelSpecsDir(),
    ),
  )
}
