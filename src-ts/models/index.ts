/**
 * The model store: Hub ids resolved through the Hugging Face cache (shared with Python
 * tools) and downloaded into it when missing. Exported as `models` from the package.
 *
 * ```ts
 * import { models } from 'orchard-ts'
 * const m = await models.pull('meta-llama/Llama-3.2-1B-Instruct', { onProgress: (p) => ... })
 * ```
 */

import { listCachedModels, removeCachedModel } from './cache'
import { type HubOptions, type ResolvedModel, resolveModel } from './hub'

export type { CachedModel } from './cache'
export type { HubOptions, ResolvedModel } from './hub'
export { hubCacheDir as cacheDir, selectModelFiles as selectFiles } from './ids'
export type { ModelLoadState, ModelStatus } from './status'

/** Resolve `id` (local directory, cached snapshot, or download from the Hub) to a directory. */
export function resolve(id: string, options: HubOptions = {}): Promise<ResolvedModel> {
  return resolveModel(id, options)
}

/** Make sure every file `id` needs is in the Hub cache (downloading what is missing). */
export function pull(id: string, options: HubOptions = {}): Promise<ResolvedModel> {
  return resolveModel(id, { ...options, forceDownload: true })
}

/** Models in the Hub cache. */
export const list = listCachedModels

/** Delete a model from the Hub cache; false when it was not there. */
export const remove = removeCachedModel
