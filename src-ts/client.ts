/** Client: chat requests over an engine connection. */

import { embed } from './embed'
import { AudioClient, ImagesClient } from './modal'
import { MOONDREAM_MODEL, Moondream } from './moondream'
import { privacyFilter } from './privacy-filter'
import type { PrivacyFilterAnalysis, PrivacyFilterOptions } from './privacy-filter'
import { prefill } from './tasks/prefill'
import type { PrefillOptions, PrefillPromise } from './tasks/prefill'
import type { RequestPromise } from './tasks/request'
import type { EmbedOptions, EmbeddingPromise } from './embed'
import { AbortError, InvalidRequestError, native } from './errors'
import { ResponseStream, prepareResponses } from './responses'
import type { ResponsesRequest } from './responses-types'
import { ChatBatchStream, ChatStream } from './stream'
import type { ChatMessage, ChatOptions, RenderedRequest } from './types'

import type { NativeEngine } from '../index'

export class Client {
  readonly #engine: NativeEngine
  /** The id the native session knows a model by (a Hub id → its snapshot directory). */
  readonly #nativeId: (model: string) => string

  /** @internal use `engine.client()` */
  constructor(engine: NativeEngine, nativeId: (model: string) => string = (model) => model) {
    this.#engine = engine
    this.#nativeId = nativeId
  }

  /**
   * Send a chat request. The returned stream can be awaited for the final result or
   * iterated with `for await` for deltas:
   *
   * ```ts
   * const { text } = await client.chat(model, [{ role: 'user', content: 'Hi' }])
   * for await (const d of client.chat(model, messages, { maxTokens: 64 })) process.stdout.write(d.content ?? '')
   * ```
   */
  chat(model: string, messages: ChatMessage[], options: ChatOptions = {}): ChatStream {
    checkRequest(model, messages)
    const { signal, stallTimeout, wire } = splitOptions(options, 'options')
    // Options and messages cross as JSON text: no object walk in native code, key order kept.
    const handle = signal?.aborted
      ? Promise.reject(new AbortError('The chat request was aborted before it was sent'))
      : this.#engine.chat(this.#nativeId(model), JSON.stringify(messages), JSON.stringify(wire))
    const keep = keptCandidates(options)
    return new ChatStream(handle, { signal, stallTimeout, finish: (a) => a.result(0, keep) })
  }

  /**
   * Send several conversations as one request. `options` is one object for all of them or
   * an array with one per conversation (only the first entry's `signal` and `stallTimeout`
   * apply, to the whole batch). Awaiting gives one result per conversation, in order;
   * iterating gives every delta, each with its `promptIndex`.
   *
   * ```ts
   * const [a, b] = await client.chatBatch(model, [[{ role: 'user', content: 'Hi' }], [{ role: 'user', content: 'Bye' }]])
   * ```
   */
  chatBatch(model: string, conversations: ChatMessage[][], options: ChatOptions | ChatOptions[] = {}): ChatBatchStream {
    if (typeof model !== 'string' || model.length === 0) {
      throw new InvalidRequestError('INVALID_REQUEST', 'model: expected the id of a loaded model')
    }
    if (!Array.isArray(conversations) || conversations.length === 0) {
      throw new InvalidRequestError('INVALID_REQUEST', 'conversations: expected a non-empty array of conversations')
    }
    conversations.forEach((c, i) => {
      if (!Array.isArray(c) || c.length === 0) {
        throw new InvalidRequestError('INVALID_REQUEST', `conversations[${i}]: expected a non-empty array of messages`)
      }
    })
    const list = Array.isArray(options) ? options : [options]
    if (list.length !== 1 && list.length !== conversations.length) {
      throw new InvalidRequestError(
        'INVALID_REQUEST',
        `options: ${list.length} entries for ${conversations.length} conversations; give one options object, or one per conversation`,
      )
    }
    const split = list.map((o, i) => splitOptions(o, Array.isArray(options) ? `options[${i}]` : 'options'))
    const { signal, stallTimeout } = split[0]!
    const wire = split.map((s) => s.wire)
    const handle = signal?.aborted
      ? Promise.reject(new AbortError('The chat request was aborted before it was sent'))
      : this.#engine.chatBatch(this.#nativeId(model), JSON.stringify(conversations), JSON.stringify(Array.isArray(options) ? wire : wire[0]))
    const keeps = conversations.map((_, i) => keptCandidates(list[Math.min(i, list.length - 1)]!))
    return new ChatBatchStream(handle, { signal, stallTimeout, finish: (a) => keeps.map((keep, i) => a.result(i, keep)) })
  }

  /**
   * A Responses API request (OpenAI Responses shapes). Await it for the {@link Response}
   * (`output` items, `outputText`, `toolCalls`, `parsed`), or iterate it for typed events:
   *
   * ```ts
   * for await (const event of client.responses(model, { input: 'Hi' })) {
   *   if (event.type === 'response.output_text.delta') process.stdout.write(event.delta)
   * }
   * ```
   *
   * The request is validated (schemas included) before anything is sent.
   */
  responses(model: string, request: ResponsesRequest): ResponseStream {
    const prepared = prepareResponses(request)
    const chat = this.chat(model, prepared.messages, prepared.options)
    return new ResponseStream(chat, model, request, prepared)
  }

  /** Only the answer text of a Responses request, as it is generated. */
  async *responsesText(model: string, request: ResponsesRequest): AsyncGenerator<string, void, undefined> {
    for await (const event of this.responses(model, request)) {
      if (event.type === 'response.output_text.delta') yield event.delta
    }
  }

  /**
   * Embed one text or a batch of texts with one engine request (one prompt per text).
   * Resolves to one `Float32Array` per input, in input order; `signal` cancels the request
   * in the engine and rejects with an `AbortError`.
   *
   * ```ts
   * const { embeddings, dimensions } = await client.embed(model, ['apples', 'pears'])
   * ```
   */
  embed(model: string, input: string | string[], options: EmbedOptions = {}): EmbeddingPromise {
    return embed(this.#engine, this.#nativeId, model, input, options)
  }

  /** Run a prefill task (e.g. `privacy_filter`) over texts with one request; see docs/tasks.md. */
  prefill(model: string, texts: string | string[], task: string, options: PrefillOptions = {}): PrefillPromise {
    return prefill(this.#engine, this.#nativeId, model, texts, task, options)
  }

  /** Classify text with the OpenAI privacy filter (at most 16 KiB per text); see docs/tasks.md. */
  privacyFilter(text: string, options?: PrivacyFilterOptions): RequestPromise<PrivacyFilterAnalysis>
  privacyFilter(texts: string[], options?: PrivacyFilterOptions): RequestPromise<PrivacyFilterAnalysis[]>
  privacyFilter(texts: string | string[], options: PrivacyFilterOptions = {}): RequestPromise<PrivacyFilterAnalysis | PrivacyFilterAnalysis[]> {
    return privacyFilter(this.#engine, this.#nativeId, texts, options)
  }

  /** Text to speech and speech to text; see docs/modal.md. */
  get audio(): AudioClient {
    return new AudioClient(this.#engine, this.#nativeId)
  }

  /** Image generation and editing; see docs/modal.md. */
  get images(): ImagesClient {
    return new ImagesClient(this.#engine, this.#nativeId)
  }

  /** A Moondream 3 client over `model` (default `moondream/moondream3-preview`); see docs/moondream.md. */
  moondream(model: string = MOONDREAM_MODEL): Moondream {
    return new Moondream((messages, options) => this.chat(model, messages, options))
  }

  /**
   * What {@link Client.chat} would send, without generating: the exact prompt text and the
   * sampling values resolved against the model's profile.
   */
  async renderPrompt(model: string, messages: ChatMessage[], options: Omit<ChatOptions, 'signal' | 'stallTimeout'> = {}): Promise<RenderedRequest> {
    checkRequest(model, messages)
    const { wire } = splitOptions(options, 'options')
    const json = await native(() => this.#engine.renderPrompt(this.#nativeId(model), JSON.stringify(messages), JSON.stringify(wire)))
    return JSON.parse(json) as RenderedRequest
  }
}

/** Separate what stays in JavaScript (`signal`, `stallTimeout`) from what the core validates. */
function splitOptions(
  options: ChatOptions,
  path: string,
): { signal: AbortSignal | undefined; stallTimeout: number | undefined; wire: Omit<ChatOptions, 'signal' | 'stallTimeout'> } {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new InvalidRequestError('INVALID_REQUEST', `${path}: expected an options object`)
  }
  const { signal, stallTimeout, ...wire } = options
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new InvalidRequestError('INVALID_REQUEST', `${path}.signal: expected an AbortSignal`)
  }
  if (stallTimeout !== undefined && !(typeof stallTimeout === 'number' && Number.isFinite(stallTimeout) && stallTimeout > 0)) {
    throw new InvalidRequestError('INVALID_REQUEST', `${path}.stallTimeout: expected a positive number of milliseconds`)
  }
  return { signal, stallTimeout, wire }
}

/** Candidates a result keeps: `finalCandidates`, else `n`, else 1 (the core validates them). */
function keptCandidates(options: ChatOptions): number {
  if (typeof options.finalCandidates === 'number') return options.finalCandidates
  return typeof options.n === 'number' ? options.n : 1
}

function checkRequest(model: unknown, messages: unknown): void {
  if (typeof model !== 'string' || model.length === 0) {
    throw new InvalidRequestError('INVALID_REQUEST', 'model: expected the id of a loaded model')
  }
  if (!Array.isArray(messages) || messages.length === 0) {
    throw new InvalidRequestError('INVALID_REQUEST', 'messages: expected a non-empty array of messages')
  }
}
