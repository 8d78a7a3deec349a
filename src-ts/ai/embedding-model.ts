/** The AI SDK embedding model (specification v4) over `client.embed`. */

import type {
  EmbeddingModelV4,
  EmbeddingModelV4CallOptions,
  EmbeddingModelV4Result,
  SharedV4Warning,
} from '@ai-sdk/provider'

import type { Client } from '../client'
import { PROVIDER } from './convert'

/**
 * Texts per `doEmbed` call: `embedMany` splits longer lists into calls of this size (each
 * one engine request, one prompt per text) and runs them in parallel.
 */
export const MAX_EMBEDDINGS_PER_CALL = 2048

/**
 * An orchard model as an AI SDK `EmbeddingModelV4`. Get one from a provider:
 * `createOrchard({ engine }).embeddingModel(modelId)`.
 */
export class OrchardEmbeddingModel implements EmbeddingModelV4 {
  readonly specificationVersion = 'v4' as const
  readonly provider = PROVIDER
  readonly modelId: string
  readonly maxEmbeddingsPerCall = MAX_EMBEDDINGS_PER_CALL
  /** The engine batches concurrent requests itself. */
  readonly supportsParallelCalls = true
  readonly #client: () => Promise<Client>

  /** @internal use `createOrchard()` */
  constructor(modelId: string, client: () => Promise<Client>) {
    this.modelId = modelId
    this.#client = client
  }

  async doEmbed(call: EmbeddingModelV4CallOptions): Promise<EmbeddingModelV4Result> {
    const client = await this.#client()
    const result = await client.embed(this.modelId, call.values, call.abortSignal ? { signal: call.abortSignal } : {})
    const warnings: SharedV4Warning[] = []
    if (call.dimensions !== undefined && call.dimensions !== result.dimensions) {
      warnings.push({
        type: 'unsupported',
        feature: 'dimensions',
        details: `the model's embeddings have ${result.dimensions} dimensions; they are returned whole`,
      })
    }
    return {
      embeddings: result.embeddings.map((e) => Array.from(e)),
      usage: { tokens: result.usage.promptTokens },
      providerMetadata: { [PROVIDER]: { requestId: result.requestId, dimensions: result.dimensions } },
      warnings,
    }
  }
}
