/** ChatStream: an awaitable, once-iterable stream of deltas for one request. */

import { Aggregator } from './aggregate'
import { AbortError, EngineError, InvalidRequestError, TimeoutError, fromNative } from './errors'
import type { ChatDelta, ChatResult } from './types'

import type { NativeChat } from '../index'

type Outcome<R> = { ok: true; value: R } | { ok: false; error: unknown }

/** @internal */
export interface StreamOptions<R> {
  signal?: AbortSignal | undefined
  /** Milliseconds of silence from a live engine before the request fails. */
  stallTimeoutMs?: number | undefined
  /** The result, from the aggregated deltas. */
  finish: (aggregate: Aggregator) => R
}

/**
 * Iterate `stream` to its end in the background, for a caller that wants only its result:
 * the iterator folds every item into that result and records any error there.
 */
export function drain(stream: AsyncIterable<unknown>): void {
  const it = stream[Symbol.asyncIterator]()
  void (async () => {
    try {
      while (!(await it.next()).done) {
        /* the iterator does the folding */
      }
    } catch {
      /* the result promise carries the error */
    }
  })()
}

/** End a native request at once (its `cancel_request` is sent in the background). */
function cancelNative(native: NativeChat): void {
  try {
    native.cancel()
  } catch {
    /* the connection is already gone: nothing left to stop */
  }
}

function abortFromSignal(signal: AbortSignal | undefined): AbortError {
  const reason: unknown = signal?.reason
  if (reason instanceof AbortError) return reason
  return new AbortError('The chat request was aborted', reason === undefined ? undefined : { cause: reason })
}

/**
 * A streamed request. Iterate it once with `for await` to receive {@link ChatDelta}s, or
 * `await` it for the aggregated result. Leaving the loop early, calling
 * {@link DeltaStream.cancel} or aborting the `signal` stops the engine's work and ends the
 * stream with an {@link AbortError}.
 */
export class DeltaStream<R> implements AsyncIterable<ChatDelta>, PromiseLike<R> {
  readonly #handle: Promise<NativeChat>
  readonly #signal: AbortSignal | undefined
  readonly #stallTimeoutMs: number | undefined
  readonly #finish: (aggregate: Aggregator) => R
  readonly #aggregate = new Aggregator()
  #started = false
  #cancelled = false
  #native: NativeChat | undefined
  #outcome: Outcome<R> | undefined
  #waiters: Array<(o: Outcome<R>) => void> = []
  readonly #onAbort = (): void => void this.cancel()

  /** @internal */
  constructor(handle: Promise<NativeChat>, options: StreamOptions<R>) {
    this.#handle = handle
    this.#signal = options.signal
    this.#stallTimeoutMs = options.stallTimeoutMs
    this.#finish = options.finish
    // A stream nobody consumes must not surface as an unhandled rejection.
    handle.catch(() => undefined)
    // From the moment the request exists, an abort reaches the engine, iterated or not.
    options.signal?.addEventListener('abort', this.#onAbort, { once: true })
  }

  [Symbol.asyncIterator](): AsyncIterator<ChatDelta> {
    if (this.#started) {
      throw new InvalidRequestError('a ChatStream can be consumed only once (iterate it or await it, not both)')
    }
    this.#started = true
    return this.#iterate()
  }

  async *#iterate(): AsyncGenerator<ChatDelta, void, undefined> {
    const signal = this.#signal
    let complete = false
    let native: NativeChat | undefined
    try {
      if (signal?.aborted || this.#cancelled) throw abortFromSignal(signal)
      try {
        native = await this.#handle
      } catch (e) {
        throw fromNative(e)
      }
      this.#native = native
      if (signal?.aborted || this.#cancelled) throw abortFromSignal(signal)
      for (;;) {
        let batch: string | null
        try {
          batch = this.#stallTimeoutMs === undefined ? await native.next() : await this.#nextWithin(native, this.#stallTimeoutMs)
        } catch (e) {
          if (e instanceof TimeoutError) throw e
          if (signal?.aborted || this.#cancelled) throw abortFromSignal(signal)
          throw fromNative(e)
        }
        if (batch === null) break
        // The native side writes the public ChatDelta shape; one parse per batch.
        for (const delta of JSON.parse(batch) as ChatDelta[]) {
          if (delta.finishReason === 'error' || (delta.isFinal && delta.errorMessage != null)) {
            throw new EngineError(delta.errorMessage ?? 'the engine reported an error')
          }
          // A plain loop: `yield*` over an array costs an extra promise per delta here.
          for (const ready of this.#aggregate.add(delta)) yield ready
        }
      }
      for (const held of this.#aggregate.flush()) yield held
      complete = true
      this.#settle({ ok: true, value: this.#finish(this.#aggregate) })
    } catch (e) {
      this.#settle({ ok: false, error: e })
      throw e
    } finally {
      if (!complete) {
        this.#cancelled = true
        if (!this.#outcome) this.#settle({ ok: false, error: new AbortError('The chat stream was closed before it finished') })
        if (native) cancelNative(native)
        else this.#handle.then(cancelNative, () => undefined)
      }
    }
  }

  /** The next batch, or a TimeoutError (after cancelling the request) when none comes in time. */
  async #nextWithin(native: NativeChat, ms: number): Promise<string | null> {
    let timer: NodeJS.Timeout | undefined
    const next = native.next()
    const stalled = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        next.catch(() => undefined)
        this.#cancelled = true
        cancelNative(native)
        reject(new TimeoutError(`stallTimeoutMs: the engine sent nothing for ${ms} ms; the request was cancelled`))
      }, ms)
    })
    try {
      return await Promise.race([next, stalled])
    } finally {
      clearTimeout(timer)
    }
  }

  #settle(o: Outcome<R>): void {
    if (this.#outcome) return
    this.#outcome = o
    this.#signal?.removeEventListener('abort', this.#onAbort)
    for (const w of this.#waiters.splice(0)) w(o)
  }

  /** The request id the engine knows this request by (once it has been sent). */
  async requestId(): Promise<number> {
    try {
      return (await this.#handle).requestId
    } catch (e) {
      throw fromNative(e)
    }
  }

  /**
   * The aggregated result. Before iteration it consumes the stream itself; during or after
   * iteration it resolves when the stream ends.
   */
  finalResult(): Promise<R> {
    if (!this.#started) drain(this)
    const unwrap = (o: Outcome<R>): R => {
      if (o.ok) return o.value
      throw o.error
    }
    if (this.#outcome) return Promise.resolve(this.#outcome).then(unwrap)
    return new Promise<Outcome<R>>((resolve) => this.#waiters.push(resolve)).then(unwrap)
  }

  then<R1 = R, R2 = never>(
    onfulfilled?: ((value: R) => R1 | PromiseLike<R1>) | null,
    onrejected?: ((reason: unknown) => R2 | PromiseLike<R2>) | null,
  ): Promise<R1 | R2> {
    return this.finalResult().then(onfulfilled, onrejected)
  }

  /**
   * Stop the request: the stream ends at once with an AbortError, and the engine is told to
   * stop in the background (a stuck engine never delays this).
   */
  async cancel(): Promise<void> {
    this.#cancelled = true
    this.#settle({ ok: false, error: new AbortError('The chat request was cancelled') })
    const native = this.#native ?? (await this.#handle.catch(() => undefined))
    if (native) cancelNative(native)
  }
}

/** One conversation's request; resolves to its {@link ChatResult}. */
export class ChatStream extends DeltaStream<ChatResult> {}

/**
 * Several conversations sent as one request; deltas carry `promptIndex`, and the stream
 * resolves to one {@link ChatResult} per conversation, in order.
 */
export class ChatBatchStream extends DeltaStream<ChatResult[]> {}
