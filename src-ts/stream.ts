/** ChatStream: an awaitable, once-iterable stream of deltas for one request. */

import type { NativeChat } from '../index'
import { Accumulator } from './accumulator'
import { Consumable } from './consumable'
import { EngineError, fromNative, TimeoutError } from './errors'
import type { ChatDelta, ChatResult } from './types'

/** @internal */
export interface StreamOptions<R> {
  signal?: AbortSignal | undefined
  /** Milliseconds of silence from a live engine before the request fails. */
  stallTimeoutMs?: number | undefined
  /** The result, from the accumulated deltas. */
  finish: (accumulator: Accumulator) => R
  /** The accumulator to fold into (a Responses stream reads its items); default a new one. */
  accumulator?: Accumulator
}

/**
 * A streamed request. Iterate it once with `for await` to receive {@link ChatDelta}s, or
 * `await` it for the accumulated result. Leaving the loop early, calling
 * {@link DeltaStream.cancel} or aborting the `signal` stops the engine's work and ends the
 * stream with an {@link AbortError}. Every input error, too, arrives this way: the first
 * `next()` (or the `await`) throws it.
 */
export class DeltaStream<R> extends Consumable<ChatDelta, R> {
  readonly #handle: Promise<NativeChat>
  readonly #stallTimeoutMs: number | undefined
  readonly #finish: (accumulator: Accumulator) => R
  readonly #accumulator: Accumulator
  #native: NativeChat | undefined
  #ended = false
  #stopped = false
  /** An error delta seen after deltas of the same batch that are still to be handed out. */
  #failure: EngineError | undefined

  /** @internal */
  constructor(handle: Promise<NativeChat>, options: StreamOptions<R>) {
    super('ChatStream', options.signal)
    this.#handle = handle
    this.#stallTimeoutMs = options.stallTimeoutMs
    this.#finish = options.finish
    this.#accumulator = options.accumulator ?? new Accumulator()
    // A stream nobody consumes must not surface as an unhandled rejection.
    handle.catch(() => undefined)
  }

  protected override async pull(): Promise<ChatDelta[] | null> {
    if (this.#failure) throw this.#failure
    if (this.#ended) return null
    const native = this.#native ?? (await this.#open())
    let batch: string | null
    try {
      batch =
        this.#stallTimeoutMs === undefined ? await native.next() : await this.#nextWithin(native, this.#stallTimeoutMs)
    } catch (e) {
      if (e instanceof TimeoutError) throw e
      throw this.aborted() ?? fromNative(e)
    }
    if (batch === null) {
      this.#ended = true
      return this.#accumulator.flush()
    }
    const ready: ChatDelta[] = []
    // The native side writes the public ChatDelta shape; one parse per batch.
    for (const delta of JSON.parse(batch) as ChatDelta[]) {
      if (delta.finishReason === 'error' || (delta.isFinal && delta.errorMessage != null)) {
        this.#failure = new EngineError(delta.errorMessage ?? 'the engine reported an error')
        if (ready.length === 0) throw this.#failure
        break
      }
      for (const d of this.#accumulator.add(delta)) ready.push(d)
    }
    return ready
  }

  async #open(): Promise<NativeChat> {
    let native: NativeChat
    try {
      native = await this.#handle
    } catch (e) {
      throw fromNative(e)
    }
    this.#native = native
    const abort = this.aborted()
    if (abort) {
      await this.stop()
      throw abort
    }
    return native
  }

  protected override result(): R {
    return this.#finish(this.#accumulator)
  }

  /** End the engine request at once (its `cancel_request` is sent in the background), once. */
  protected override async stop(): Promise<void> {
    this.markCancelled()
    const native = this.#native ?? (await this.#handle.catch(() => undefined))
    if (!native || this.#stopped) return
    this.#stopped = true
    try {
      native.cancel()
    } catch {
      /* the connection is already gone: nothing left to stop */
    }
  }

  /** The next batch, or a TimeoutError (after cancelling the request) when none comes in time. */
  async #nextWithin(native: NativeChat, ms: number): Promise<string | null> {
    let timer: NodeJS.Timeout | undefined
    const next = native.next()
    const stalled = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        next.catch(() => undefined)
        void this.stop()
        reject(new TimeoutError(`stallTimeoutMs: the engine sent nothing for ${ms} ms; the request was cancelled`))
      }, ms)
    })
    try {
      return await Promise.race([next, stalled])
    } finally {
      clearTimeout(timer)
    }
  }

  /** The request id the engine knows this request by (once it has been sent). */
  async requestId(): Promise<number> {
    try {
      return (await this.#handle).requestId
    } catch (e) {
      throw fromNative(e)
    }
  }
}

/** One conversation's request; resolves to its {@link ChatResult}. */
export class ChatStream extends DeltaStream<ChatResult> {}

/**
 * Several conversations sent as one request; deltas carry `promptIndex`, and the stream
 * resolves to one {@link ChatResult} per conversation, in order.
 */
export class ChatBatchStream extends DeltaStream<ChatResult[]> {}
