/**
 * The base of every streamed request (`ChatStream`, `ChatBatchStream`, `ResponseStream`):
 * awaitable for its result, iterable once for its items, cancellable by `cancel()`, an
 * `AbortSignal` or `await using`. Subclasses only say how to pull the next items, how to
 * build the result and how to stop the engine's work.
 */

import { AbortError, InvalidRequestError } from './errors'

type Outcome<R> = { ok: true; value: R } | { ok: false; error: unknown }

/**
 * Iterate `stream` to its end in the background, for a caller that wants only its result:
 * the iterator folds every item into that result and records any error there.
 */
function drain(stream: AsyncIterable<unknown>): void {
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

export abstract class Consumable<T, R> implements AsyncIterable<T>, PromiseLike<R>, AsyncDisposable {
  readonly #signal: AbortSignal | undefined
  /** The class name, for the consume-once error. */
  readonly #name: string
  #started = false
  #cancelled = false
  #outcome: Outcome<R> | undefined
  #waiters: Array<(o: Outcome<R>) => void> = []
  readonly #onAbort = (): void => void this.cancel()

  protected constructor(name: string, signal: AbortSignal | undefined) {
    this.#name = name
    this.#signal = signal
    // From the moment the request exists, an abort reaches the engine, iterated or not.
    signal?.addEventListener('abort', this.#onAbort, { once: true })
  }

  /**
   * The next items, in order (possibly none), or null at the end. Throwing ends the stream
   * with that error.
   */
  protected abstract pull(): Promise<readonly T[] | null>
  /** The result, once `pull` has returned null. */
  protected abstract result(): R | Promise<R>
  /** Stop the engine's work, in the background (a stuck engine must never delay this). */
  protected abstract stop(): Promise<void>

  /** The AbortError to end with, when the signal fired or the stream was cancelled; else null. */
  protected aborted(): AbortError | null {
    const signal = this.#signal
    if (!signal?.aborted && !this.#cancelled) return null
    const reason: unknown = signal?.reason
    if (reason instanceof AbortError) return reason
    return new AbortError('The request was aborted', reason === undefined ? undefined : { cause: reason })
  }

  /** Mark the request stopped (its pending work then ends with an AbortError). */
  protected markCancelled(): void {
    this.#cancelled = true
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    if (this.#started) {
      throw new InvalidRequestError(`a ${this.#name} can be consumed only once (iterate it or await it, not both)`)
    }
    this.#started = true
    return this.#run()
  }

  async *#run(): AsyncGenerator<T, void, undefined> {
    let complete = false
    try {
      const abort = this.aborted()
      if (abort) throw abort
      for (;;) {
        const items = await this.pull()
        if (items === null) break
        // A plain loop: `yield*` over an array costs an extra promise per item. A cancel between
        // two items of one batch ends the stream there.
        for (const item of items) {
          const stopped = this.aborted()
          if (stopped) throw stopped
          yield item
        }
      }
      const value = await this.result()
      complete = true
      this.#settle({ ok: true, value })
    } catch (e) {
      this.#settle({ ok: false, error: e })
      throw e
    } finally {
      if (!complete) {
        this.#cancelled = true
        this.#settle({ ok: false, error: new AbortError('The chat stream was closed before it finished') })
        void this.stop()
      }
    }
  }

  #settle(o: Outcome<R>): void {
    if (this.#outcome) return
    this.#outcome = o
    this.#signal?.removeEventListener('abort', this.#onAbort)
    for (const w of this.#waiters.splice(0)) w(o)
  }

  /**
   * The result. Before iteration it consumes the stream itself; during or after iteration it
   * resolves when the stream ends.
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
    this.#settle({ ok: false, error: new AbortError('The request was cancelled') })
    await this.stop()
  }

  /** `await using stream = client.chat(...)`: a stream left before its end is cancelled. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (!this.#outcome) await this.cancel()
  }
}
