/**
 * `orchard-ts/ai`: an AI SDK provider (provider specification v4, as `ai@7` takes it).
 *
 * ```ts
 * import { generateText } from 'ai'
 * import { Engine } from 'orchard-ts'
 * import { createOrchard } from 'orchard-ts/ai'
 *
 * const engine = await Engine.start()
 * await engine.loadModel('Qwen/Qwen3.5-4B')
 * const orchard = createOrchard({ engine })
 * const { text } = await generateText({ model: orchard('Qwen/Qwen3.5-4B'), prompt: 'Hi' })
 * ```
 *
 * `ai` and `@ai-sdk/provider` are peer dependencies of this entry only.
 */

import type { ProviderV4 } from '@ai-sdk/provider'
import { NoSuchModelError } from '@ai-sdk/provider'

import type { Client } from '../client'
import { Engine, type EngineStartOptions } from '../engine'
import { OrchardEmbeddingModel } from './embedding-model'
import { OrchardLanguageModel } from './language-model'

export type { OrchardLanguageModelOptions } from './convert'
export { OrchardEmbeddingModel } from './embedding-model'
export { OrchardLanguageModel } from './language-model'

export interface OrchardProviderSettings {
  /**
   * The engine to send requests to (its `engine.client()`). Without one, the provider calls
   * `Engine.start(start)` on its first request (which needs PIE installed, or
   * `ORCHARD_ENGINE_BINARY`) and {@link OrchardProvider.close} gives that engine back.
   */
  engine?: Engine
  /** Options for the engine the provider starts itself (ignored with `engine`). */
  start?: EngineStartOptions
}

/** An AI SDK provider of orchard models; call it with a model id for a language model. */
export interface OrchardProvider extends ProviderV4 {
  /** The language model `modelId`: an id `client.chat` takes (load it first with `engine.loadModel`). */
  (modelId: string): OrchardLanguageModel
  languageModel(modelId: string): OrchardLanguageModel
  /** The embedding model `modelId` (for `embed` / `embedMany`): an id `client.embed` takes, loaded first. */
  embeddingModel(modelId: string): OrchardEmbeddingModel
  /** The former name of {@link OrchardProvider.embeddingModel}. */
  textEmbeddingModel(modelId: string): OrchardEmbeddingModel
  /** Orchard has no image models here: throws `NoSuchModelError`. */
  imageModel(modelId: string): never
  /** Give back the engine the provider started itself (a given `engine` is left alone). */
  close(): Promise<void>
}

/** Create an orchard provider over `settings.engine`, or over an engine started on first use. */
export function createOrchard(settings: OrchardProviderSettings = {}): OrchardProvider {
  const given = settings.engine
  let started: Promise<Engine> | undefined
  const client = async (): Promise<Client> => {
    if (given) return given.client()
    started ??= Engine.start(settings.start).catch((e: unknown) => {
      started = undefined // the next request tries again
      throw e
    })
    return (await started).client()
  }

  const languageModel = (modelId: string): OrchardLanguageModel => {
    if (typeof modelId !== 'string' || modelId.length === 0) {
      throw new NoSuchModelError({
        modelId: String(modelId),
        modelType: 'languageModel',
        message: 'modelId: expected the id of a model loaded in the engine',
      })
    }
    return new OrchardLanguageModel(modelId, client)
  }
  const embeddingModel = (modelId: string): OrchardEmbeddingModel => {
    if (typeof modelId !== 'string' || modelId.length === 0) {
      throw new NoSuchModelError({
        modelId: String(modelId),
        modelType: 'embeddingModel',
        message: 'modelId: expected the id of a model loaded in the engine',
      })
    }
    return new OrchardEmbeddingModel(modelId, client)
  }
  const none =
    (modelType: 'imageModel', what: string) =>
    (modelId: string): never => {
      throw new NoSuchModelError({
        modelId,
        modelType,
        message: `orchard has no ${what} models yet ('${modelId}'); use orchard(modelId) for a language model`,
      })
    }

  const provider = (modelId: string): OrchardLanguageModel => languageModel(modelId)
  return Object.assign(provider, {
    specificationVersion: 'v4' as const,
    languageModel,
    embeddingModel,
    textEmbeddingModel: embeddingModel,
    imageModel: none('imageModel', 'image'),
    async close(): Promise<void> {
      const engine = started
      started = undefined
      if (engine) await (await engine.catch(() => undefined))?.close()
    },
  })
}

/**
 * A provider that starts (or attaches to) the engine of `ORCHARD_CACHE_ROOT` on its first
 * request: `generateText({ model: orchard(modelId), ... })`.
 */
export const orchard: OrchardProvider = createOrchard()
