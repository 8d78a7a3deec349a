/** Embeddings: one engine request for a batch of texts, vectors back as Float32Arrays. */

import { AbortError, InvalidRequestError, fromNative, native } from './errors'
import { requestJson } from './json'

import type { NativeEmbedding, NativeEngine } from '../index'

/** Options of {@link Client.embed}. */
export interface EmbedOptions {
  /** Aborting cancels the request in the engine; the promise rejects with an `AbortError`. */
  signal?: AbortSignal
}

export interface EmbeddingUsage {
  /** Prompt tokens over every input. */
  promptTokens: number
  /** The same as `promptTokens`: an embedding generates nothing. */
  totalTokens: number
}

/** What {@link Client.embed} resolves to. */
export interface EmbedResult {
  /**
   * One vector per input, in input order. They are views into one buffer (no copy per
   * vector); `slice()` one to keep it apart.
   */
  embeddings: Float32Array[]
  /** Length of every vector (the model's embedding size). */
  dimensions: number
  usage: EmbeddingUsage
  /** The model id as given. */
  model: string
  /** The id the engine knew the request by. */
  requestId: number
}

/**
 * The promise {@link Client.embed} returns: a real `Promise`, plus the request id once the
 * request has been sent (for logs, or the emulator's counters).
 */
export interface EmbeddingPromise extends Promise<EmbedResult> {
  requestId(): Promise<number>
}

function abortError(signal: AbortSignal): AbortError {
  const reason: unknown = signal.reason
  if (reason instanceof AbortError) return reason
  return new AbortError('The embedding request was aborted', reason === undefined ? undefined : { cause: reason })
}

function inputJson(input: unknown): string {
  if (input === undefined) return 'null'
  try {
    return requestJson(input, { root: 'input' })
  } catch (e) {
    throw new InvalidRequestError(`input: expected a string or an array of strings (${e instanceof Error ? e.message : String(e)})`)
  }
}

function checkOptions(options: unknown): AbortSignal | undefined {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new InvalidRequestError('options: expected an options object')
  }
  const { signal, ...rest } = options as EmbedOptions & Record<string, unknown>
  const unknown = Object.keys(rest)
  if (unknown.length > 0) {
    throw new InvalidRequestError(`options.${unknown[0]}: unknown option (embed takes only signal)`)
  }
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new InvalidRequestError('options.signal: expected an AbortSignal')
  }
  return signal
}

/** @internal the body of `Client.embed`. */
export function embed(engine: NativeEngine, model: string, input: string | string[], options: EmbedOptions): EmbeddingPromise {
  let signal: AbortSignal | undefined
  const handle: Promise<NativeEmbedding> = (async () => {
    if (typeof model !== 'string' || model.length === 0) {
      throw new InvalidRequestError('model: expected the id of a loaded model')
    }
    signal = checkOptions(options)
    if (signal?.aborted) throw abortError(signal)
    // The core validates the input (and names the bad element) where it builds the request.
    const json = inputJson(input)
    return native(() => engine.embed(model, json))
  })()
  // Awaited through `result` below; never an unhandled rejection on its own.
  handle.catch(() => undefined)

  const result = (async (): Promise<EmbedResult> => {
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
      if (signal?.aborted) throw abortError(signal)
      const { vectors, dimensions, count } = r
      const embeddings = Array.from({ length: count }, (_, i) => vectors.subarray(i * dimensions, (i + 1) * dimensions))
      return {
        embeddings,
        dimensions,
        usage: { promptTokens: r.promptTokens, totalTokens: r.promptTokens },
        model,
        requestId: h.requestId,
      }
    } catch (e) {
      if (signal?.aborted) throw abortError(signal)
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
