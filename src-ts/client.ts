/** Client: chat requests over an engine connection. */

import { InvalidRequestError, native } from './errors'
import { ChatStream } from './stream'
import type { ChatMessage, ChatOptions, RenderedRequest } from './types'

import type { NativeEngine } from '../index'

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
    checkRequest(model, messages)
    const { signal, ...wireOptions } = options
    if (signal !== undefined && !(signal instanceof AbortSignal)) {
      throw new InvalidRequestError('INVALID_REQUEST', 'signal: expected an AbortSignal')
    }
    // Options and messages cross as JSON text: no object walk in native code, key order kept.
    const handle = signal?.aborted
      ? Promise.reject(new Error('aborted before send'))
      : this.#engine.chat(model, JSON.stringify(messages), JSON.stringify(wireOptions))
    const keep = typeof wireOptions.n === 'number' ? wireOptions.n : 1
    return new ChatStream(handle, { signal, keep })
  }

  /**
   * What {@link Client.chat} would send, without generating: the exact prompt text and the
   * sampling values resolved against the model's profile.
   */
  async renderPrompt(model: string, messages: ChatMessage[], options: Omit<ChatOptions, 'signal'> = {}): Promise<RenderedRequest> {
    checkRequest(model, messages)
    const json = await native(() => this.#engine.renderPrompt(model, JSON.stringify(messages), JSON.stringify(options)))
    return JSON.parse(json) as RenderedRequest
  }
}

function checkRequest(model: unknown, messages: unknown): void {
  if (typeof model !== 'string' || model.length === 0) {
    throw new InvalidRequestError('INVALID_REQUEST', 'model: expected the id of a loaded model')
  }
  if (!Array.isArray(messages) || messages.length === 0) {
    throw new InvalidRequestError('INVALID_REQUEST', 'messages: expected a non-empty array of messages')
  }
}
