/** Client: chat requests over an engine connection. */

import type { NativeChat, NativeEngine } from '../index'
import { Accumulator } from './accumulator'
import type { EmbeddingPromise, EmbedOptions } from './embed'
import { embed } from './embed'
import { AbortError, InvalidRequestError, native } from './errors'
import { requestJson } from './json'
import { AudioClient, ImagesClient } from './modal'
import { MOONDREAM_MODEL, Moondream } from './moondream'
import type { PrivacyFilterAnalysis, PrivacyFilterOptions } from './privacy-filter'
import { privacyFilter } from './privacy-filter'
import { type Prepared, prepareResponses, ResponseStream } from './responses'
import type { ResponsesRequest } from './responses/types'
import { ChatBatchStream, ChatStream } from './stream'
import type { PrefillOptions, PrefillPromise } from './tasks/prefill'
import { prefill } from './tasks/prefill'
import type { RequestPromise } from './tasks/request'
import type { ChatMessage, ChatOptions, RenderedRequest } from './types'

export class Client {
  readonly #engine: NativeEngine

  /** @internal use `engine.client()` */
  constructor(engine: NativeEngine) {
    this.#engine = engine
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
    return this.#chat(model, messages, options, new Accumulator())
  }

  #chat(model: string, messages: ChatMessage[], options: ChatOptions, accumulator: Accumulator): ChatStream {
    let signal: AbortSignal | undefined
    let stallTimeoutMs: number | undefined
    let handle: Promise<NativeChat>
    let keep = 1
    try {
      checkRequest(model, messages)
      const split = splitOptions(options, 'options')
      ;({ signal, stallTimeoutMs } = split)
      keep = keptCandidates(options)
      // Options and messages cross as JSON text: no object walk in native code, key order kept.
      handle = signal?.aborted
        ? Promise.reject(abortedBeforeSending())
        : this.#engine.chat(model, requestJson(messages, { root: 'messages' }), requestJson(split.wire))
    } catch (e) {
      handle = Promise.reject(e)
    }
    return new ChatStream(handle, { signal, stallTimeoutMs, accumulator, finish: (a) => a.result(0, keep) })
  }

  /**
   * Send several conversations as one request. `options` is one object for all of them or
   * an array with one per conversation (only the first entry's `signal` and `stallTimeoutMs`
   * apply, to the whole batch). Awaiting gives one result per conversation, in order;
   * iterating gives every delta, each with its `promptIndex`.
   *
   * ```ts
   * const [a, b] = await client.chatBatch(model, [[{ role: 'user', content: 'Hi' }], [{ role: 'user', content: 'Bye' }]])
   * ```
   */
  chatBatch(model: string, conversations: ChatMessage[][], options: ChatOptions | ChatOptions[] = {}): ChatBatchStream {
    let signal: AbortSignal | undefined
    let stallTimeoutMs: number | undefined
    let handle: Promise<NativeChat>
    let keeps: number[] = []
    try {
      checkBatch(model, conversations, options)
      const list = Array.isArray(options) ? options : [options]
      const split = list.map((o, i) => splitOptions(o, Array.isArray(options) ? `options[${i}]` : 'options'))
      ;({ signal, stallTimeoutMs } = split[0]!)
      const wire = split.map((s) => s.wire)
      keeps = conversations.map((_, i) => keptCandidates(list[Math.min(i, list.length - 1)]!))
      handle = signal?.aborted
        ? Promise.reject(abortedBeforeSending())
        : this.#engine.chatBatch(
            model,
            requestJson(conversations, { root: 'conversations' }),
            requestJson(Array.isArray(options) ? wire : wire[0], { root: Array.isArray(options) ? 'options' : '' }),
          )
    } catch (e) {
      handle = Promise.reject(e)
    }
    return new ChatBatchStream(handle, {
      signal,
      stallTimeoutMs,
      finish: (a) => keeps.map((keep, i) => a.result(i, keep)),
    })
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
   * The request is validated (schemas included) before anything is sent; an invalid one
   * fails the first `next()` (or the `await`).
   */
  responses(model: string, request: ResponsesRequest): ResponseStream {
    let prepared: Prepared
    try {
      prepared = prepareResponses(request)
    } catch (error) {
      return new ResponseStream({ ok: false, error })
    }
    const accumulator = new Accumulator()
    const chat = this.#chat(model, prepared.messages, prepared.options, accumulator)
    return new ResponseStream({ ok: true, chat, accumulator, model, request, prepared })
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
    return embed(this.#engine, model, input, options)
  }

  /** Run a prefill task (e.g. `privacy_filter`) over texts with one request; see docs/tasks.md. */
  prefill(model: string, texts: string | string[], task: string, options: PrefillOptions = {}): PrefillPromise {
    return prefill(this.#engine, model, texts, task, options)
  }

  /** Classify text with the OpenAI privacy filter (at most 16 KiB per text); see docs/tasks.md. */
  privacyFilter(text: string, options?: PrivacyFilterOptions): RequestPromise<PrivacyFilterAnalysis>
  privacyFilter(texts: string[], options?: PrivacyFilterOptions): RequestPromise<PrivacyFilterAnalysis[]>
  privacyFilter(
    texts: string | string[],
    options: PrivacyFilterOptions = {},
  ): RequestPromise<PrivacyFilterAnalysis | PrivacyFilterAnalysis[]> {
    return privacyFilter(this.#engine, texts, options)
  }

  /** Text to speech and speech to text; see docs/modal.md. */
  get audio(): AudioClient {
    return new AudioClient(this.#engine)
  }

  /** Image generation and editing; see docs/modal.md. */
  get images(): ImagesClient {
    return new ImagesClient(this.#engine)
  }

  /** A Moondream 3 client over `model` (default `moondream/moondream3-preview`); see docs/moondream.md. */
  moondream(model: string = MOONDREAM_MODEL): Moondream {
    return new Moondream((messages, options) => this.chat(model, messages, options))
  }

  /**
   * What {@link Client.chat} would send, without generating: the exact prompt text and the
   * sampling values resolved against the model's profile.
   */
  async renderPrompt(
    model: string,
    messages: ChatMessage[],
    options: Omit<ChatOptions, 'signal' | 'stallTimeoutMs'> = {},
  ): Promise<RenderedRequest> {
    checkRequest(model, messages)
    const { wire } = splitOptions(options, 'options')
    const json = await native(() =>
      this.#engine.renderPrompt(model, requestJson(messages, { root: 'messages' }), requestJson(wire)),
    )
    return JSON.parse(json) as RenderedRequest
  }
}

/** Separate what stays in JavaScript (`signal`, `stallTimeoutMs`) from what the core validates. */
function splitOptions(
  options: ChatOptions,
  path: string,
): {
  signal: AbortSignal | undefined
  stallTimeoutMs: number | undefined
  wire: Omit<ChatOptions, 'signal' | 'stallTimeoutMs'>
} {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new InvalidRequestError(`${path}: expected an options object`)
  }
  const { signal, stallTimeoutMs, ...wire } = options
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new InvalidRequestError(`${path}.signal: expected an AbortSignal`)
  }
  if (
    stallTimeoutMs !== undefined &&
    !(typeof stallTimeoutMs === 'number' && Number.isFinite(stallTimeoutMs) && stallTimeoutMs > 0)
  ) {
    throw new InvalidRequestError(`${path}.stallTimeoutMs: expected a positive number of milliseconds`)
  }
  return { signal, stallTimeoutMs, wire }
}

/** Candidates a result keeps: `finalCandidates`, else `n`, else 1 (the core validates them). */
function keptCandidates(options: ChatOptions): number {
  if (typeof options.finalCandidates === 'number') return options.finalCandidates
  return typeof options.n === 'number' ? options.n : 1
}

function abortedBeforeSending(): AbortError {
  return new AbortError('The chat request was aborted before it was sent')
}

function checkModel(model: unknown): void {
  if (typeof model !== 'string' || model.length === 0) {
    throw new InvalidRequestError('model: expected the id of a loaded model')
  }
}

function checkBatch(model: unknown, conversations: unknown, options: unknown): void {
  checkModel(model)
  if (!Array.isArray(conversations) || conversations.length === 0) {
    throw new InvalidRequestError('conversations: expected a non-empty array of conversations')
  }
  conversations.forEach((c, i) => {
    if (!Array.isArray(c) || c.length === 0) {
      throw new InvalidRequestError(`conversations[${i}]: expected a non-empty array of messages`)
    }
  })
  const entries = Array.isArray(options) ? options.length : 1
  if (entries !== 1 && entries !== conversations.length) {
    throw new InvalidRequestError(
      `options: ${entries} entries for ${conversations.length} conversations; give one options object, or one per conversation`,
    )
  }
}

function checkRequest(model: unknown, messages: unknown): void {
  checkModel(model)
  if (!Array.isArray(messages) || messages.length === 0) {
    throw new InvalidRequestError('messages: expected a non-empty array of messages')
  }
}
