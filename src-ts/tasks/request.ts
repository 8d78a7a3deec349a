/**
 * One native request that resolves once (embeddings, prefill tasks, ...): the
 * promise its method returns, its `requestId()`, and cancellation through an `AbortSignal`.
 */

import { AbortError, fromNative, InvalidRequestError, native } from '../errors'

/** A request in flight in the native addon. */
export interface NativeRequest<R> {
  readonly requestId: number
  result(): Promise<R>
  cancel(): void
}

/**
 * The promise a one-shot request method returns: a real `Promise`, plus the request id once
 * the request has been sent (for logs, or the emulator's counters).
 */
export interface RequestPromise<T> extends Promise<T> {
  requestId(): Promise<number>
}

/** The AbortError for `signal`: its reason when that is one. */
export function abortError(signal: AbortSignal, what: string): AbortError {
  const reason: unknown = signal.reason
  if (reason instanceof AbortError) return reason
  return new AbortError(`The ${what} request was aborted`, reason === undefined ? undefined : { cause: reason })
}

/**
 * Check an options object whose keys are `signal` plus `known`; names the bad field. Returns
 * the signal and the other options.
 */
export function splitOptions<O extends { signal?: AbortSignal }>(
  options: unknown,
  method: string,
  known: readonly string[] = [],
): { signal: AbortSignal | undefined; rest: Omit<O, 'signal'> } {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new InvalidRequestError('options: expected an options object')
  }
  const { signal, ...rest } = options as O & Record<string, unknown>
  const unknown = Object.keys(rest).filter((k) => !known.includes(k))
  if (unknown.length > 0) {
    const takes = known.length === 0 ? 'only signal' : [...known, 'signal'].join(', ')
    throw new InvalidRequestError(`options.${unknown[0]}: unknown option (${method} takes ${takes})`)
  }
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new InvalidRequestError('options.signal: expected an AbortSignal')
  }
  return { signal, rest: rest as Omit<O, 'signal'> }
}

/** What {@link runRequest} needs once the call's arguments are checked. */
export interface Prepared<R> {
  signal: AbortSignal | undefined
  send: () => Promise<NativeRequest<R>>
}

/**
 * Run one request. `prepare` checks the arguments (its errors reject the promise) and says
 * how to send; `finish` turns the native result into the public one. Aborting `signal`
 * cancels the request in the engine and rejects with an `AbortError`.
 */
export function runRequest<R, T>(
  what: string,
  prepare: () => Prepared<R>,
  finish: (r: R, requestId: number) => T,
): RequestPromise<T> {
  let signal: AbortSignal | undefined
  const handle: Promise<NativeRequest<R>> = (async () => {
    const p = prepare()
    signal = p.signal
    if (signal?.aborted) throw abortError(signal, what)
    return native(p.send)
  })()
  // Awaited through `result` below; never an unhandled rejection on its own.
  handle.catch(() => undefined)

  const result = (async (): Promise<T> => {
    const h = await handle
    const stop = (): void => {
      try {
        h.cancel()
      } catch {
        /* the connection is already gone: nothing left to stop */
      }
    }
    signal?.addEventListener('abort', stop, { once: true })
    try {
      if (signal?.aborted) stop()
      const r = await h.result()
      if (signal?.aborted) throw abortError(signal, what)
      return finish(r, h.requestId)
    } catch (e) {
      if (signal?.aborted) throw abortError(signal, what)
      throw fromNative(e)
    } finally {
      signal?.removeEventListener('abort', stop)
    }
  })()

  return Object.assign(result, {
    requestId: async (): Promise<number> => {
      try {
        return (await handle).requestId
      } catch (e) {
        // The caller has the error from here; the result, which fails the same way, need not
        // be awaited too.
        result.catch(() => undefined)
        throw e
      }
    },
  })
}
