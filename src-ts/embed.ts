/** Embeddings: one engine request for a batch of texts, vectors back as Float32Arrays. */

import type { NativeEmbeddings, NativeEngine } from '../index'
import { InvalidRequestError } from './errors'
import { requestJson } from './json'
import type { RequestPromise } from './tasks/request'
import { runRequest, splitOptions } from './tasks/request'

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
export type EmbeddingPromise = RequestPromise<EmbedResult>

function inputJson(input: unknown): string {
  return input === undefined ? 'null' : requestJson(input, { root: 'input' })
}

/** @internal the body of `Client.embed`. */
export function embed(
  engine: NativeEngine,
  model: string,
  input: string | string[],
  options: EmbedOptions,
): EmbeddingPromise {
  return runRequest<NativeEmbeddings, EmbedResult>(
    'embedding',
    () => {
      if (typeof model !== 'string' || model.length === 0) {
        throw new InvalidRequestError('model: expected the id of a loaded model')
      }
      const { signal } = splitOptions<EmbedOptions>(options, 'embed')
      // The core validates the input (and names the bad element) where it builds the request.
      const json = inputJson(input)
      return { signal, send: () => engine.embed(model, json) }
    },
    (r, requestId) => {
      const { vectors, dimensions, count } = r
      const embeddings = Array.from({ length: count }, (_, i) => vectors.subarray(i * dimensions, (i + 1) * dimensions))
      return {
        embeddings,
        dimensions,
        usage: { promptTokens: r.promptTokens, totalTokens: r.promptTokens },
        model,
        requestId,
      }
    },
  )
}
