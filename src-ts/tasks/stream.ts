/**
 * ModalStream: a modal call (speech, image generation or editing) with
 * `stream: true`. Awaitable for every artifact, iterable once for each artifact as its delta
 * arrives; one native pull per batch of deltas.
 */

import type { NativeTask } from '../../index'
import { Consumable } from '../consumable'
import { fromNative } from '../errors'
import type { TaskDelta } from './prefill'

/**
 * A streamed modal call. Iterate it once with `for await` to receive each artifact as the
 * engine sends it, or `await` it for all of them (the same array the call resolves to without
 * `stream`). Leaving the loop early, {@link ModalStream.cancel} or aborting the `signal` stops
 * the engine's work and ends the stream with an `AbortError`. Input errors arrive here too:
 * the first `next()` (or the `await`) throws them.
 */
export class ModalStream<T> extends Consumable<T, T[]> {
  readonly #handle: Promise<NativeTask>
  readonly #items: (deltas: TaskDelta[]) => T[]
  readonly #seen: T[] = []
  #native: NativeTask | undefined
  #ended = false

  /** @internal */
  constructor(handle: Promise<NativeTask>, signal: AbortSignal | undefined, items: (deltas: TaskDelta[]) => T[]) {
    super('ModalStream', signal)
    this.#handle = handle
    this.#items = items
    // A stream nobody consumes must not surface as an unhandled rejection.
    handle.catch(() => undefined)
  }

  /** The request's id once it has been sent (for logs, or the emulator's counters). */
  async requestId(): Promise<number> {
    return (await this.#handle).requestId
  }

  protected override async pull(): Promise<T[] | null> {
    if (this.#ended) return null
    let batch: string | null
    try {
      this.#native ??= await this.#handle
      const abort = this.aborted()
      if (abort) throw abort
      batch = await this.#native.next()
    } catch (e) {
      throw this.aborted() ?? fromNative(e)
    }
    if (batch === null) {
      this.#ended = true
      return null
    }
    const items = this.#items(JSON.parse(batch) as TaskDelta[])
    for (const item of items) this.#seen.push(item)
    return items
  }

  protected override result(): T[] {
    return this.#seen
  }

  protected override async stop(): Promise<void> {
    const cancel = (h: NativeTask): void => {
      try {
        h.cancel()
      } catch {
        /* the connection is already gone: nothing left to stop */
      }
    }
    if (this.#native) cancel(this.#native)
    // Not awaited: a request still being sent is stopped once it exists.
    else void this.#handle.then(cancel, () => undefined)
  }
}
