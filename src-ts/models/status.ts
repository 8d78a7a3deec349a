/**
 * Load progress per model in this process, for `modelStatus`: idle → downloading →
 * activating → ready | failed, with download bytes and the typed error of a failure. Loads
 * of one model share one attempt (see ./shared.ts); after a failure the next load retries.
 * Ids and aliases are the native session's: a model is found here by any id the session
 * knows it by. Shared by every `Engine` in the process, like the engine lease.
 */

import path from 'node:path'

import { AbortError, OrchardError } from '../errors'
import { expandHome } from '../paths'
import type { ModelInfo } from '../types'
import { type DownloadProgress, type HubOptions, resolveModel, type ResolvedModel } from './hub'
import { isLocalId } from './ids'
import { SharedTasks } from './shared'

export type ModelLoadState = 'idle' | 'downloading' | 'activating' | 'ready' | 'failed'

export interface ModelStatus {
  /** The id asked about. */
  id: string
  state: ModelLoadState
  /** Why the last attempt failed (state `failed`). */
  error?: OrchardError
  /** Download progress of the current (or last) attempt. */
  progress: { bytesDownloaded: number; bytesTotal: number | null }
  /** Known once resolved. */
  canonicalId?: string
  modelPath?: string
}

/** Activate a resolved model in the engine; `signal` aborts when the load is cancelled. */
export type Activate = (resolved: ResolvedModel, signal: AbortSignal) => Promise<ModelInfo>

/** Every id the native session knows a loaded model by (empty when it is not loaded). */
export type NativeIds = (id: string) => string[]

interface Entry {
  state: ModelLoadState
  error?: OrchardError
  progress: { bytesDownloaded: number; bytesTotal: number | null }
  resolved?: ResolvedModel
  info?: ModelInfo
  /** The engine connection (channel id) the model is ready on. */
  readyOn?: bigint
  /** The latest attempt; an earlier one (cancelled, still unwinding) changes nothing. */
  attempt: number
}

/** Key of a model before the session knows it: its absolute path (local) or lower-cased id (Hub). */
function modelKey(id: string): string {
  return isLocalId(id) ? path.resolve(expandHome(id)) : id.toLowerCase()
}

export interface RegistryLoadOptions extends HubOptions {
  /** The engine connection this load is for; a model is ready per connection. */
  connection: bigint
}

class ModelRegistry {
  readonly #entries = new Map<string, Entry>()
  readonly #loads = new SharedTasks<ModelInfo, DownloadProgress>('finish')

  #find(id: string, nativeIds: NativeIds): Entry | undefined {
    const e = this.#entries.get(modelKey(id))
    if (e) return e
    for (const other of nativeIds(id)) {
      const hit = this.#entries.get(modelKey(other))
      if (hit) return hit
    }
    return undefined
  }

  load(id: string, activate: Activate, options: RegistryLoadOptions): Promise<ModelInfo> {
    const key = modelKey(id)
    let e = this.#entries.get(key)
    if (!e) {
      e = { state: 'idle', progress: { bytesDownloaded: 0, bytesTotal: null }, attempt: 0 }
      this.#entries.set(key, e)
    }
    if (e.state === 'ready' && e.info && e.readyOn === options.connection && !this.#loads.running(key)) {
      return Promise.resolve({ ...e.info, requestedId: id })
    }
    const entry = e
    const start = (signal: AbortSignal, onProgress: (p: DownloadProgress) => void) => this.#attempt(entry, id, activate, options, signal, onProgress)
    // A caller's signal leaves this caller's wait; cancel() stops the load for everyone.
    const aborted = () => new AbortError(`loadModel('${id}') was aborted`)
    return this.#loads.join(key, start, options, aborted).then((info) => ({ ...info, requestedId: id }))
  }

  async #attempt(e: Entry, id: string, activate: Activate, options: RegistryLoadOptions, signal: AbortSignal, onProgress: (p: DownloadProgress) => void): Promise<ModelInfo> {
    const attempt = ++e.attempt
    const current = () => e.attempt === attempt
    e.state = isLocalId(id) ? 'activating' : 'downloading'
    e.error = undefined
    e.progress = { bytesDownloaded: 0, bytesTotal: null }
    const cancelled = new Promise<never>((_, reject) => {
      signal.addEventListener('abort', () => reject(new AbortError(`loading '${id}' was cancelled`)), { once: true })
    })
    cancelled.catch(() => undefined)
    try {
      const resolved = await resolveModel(id, {
        ...options,
        signal,
        onProgress: (p: DownloadProgress) => {
          if (current()) e.progress = { bytesDownloaded: p.bytesDownloaded, bytesTotal: p.bytesTotal }
          onProgress(p)
        },
      })
      if (signal.aborted) throw new AbortError(`loading '${id}' was cancelled`)
      e.resolved = resolved
      e.state = 'activating'
      // A cancel during activation reaches the engine too (see Engine.loadModel); this load
      // reports it cancelled at once, whatever the engine answers.
      const info = await Promise.race([activate(resolved, signal), cancelled])
      if (current()) Object.assign(e, { state: 'ready', info, readyOn: options.connection })
      return info
    } catch (err) {
      const error = err instanceof OrchardError ? err : new OrchardError('INTERNAL', String(err))
      if (current()) Object.assign(e, { state: 'failed', error })
      throw error
    }
  }

  status(id: string, connection: bigint | null, nativeIds: NativeIds): ModelStatus {
    const e = this.#find(id, nativeIds)
    if (!e) return { id, state: 'idle', progress: { bytesDownloaded: 0, bytesTotal: null } }
    const stale = e.state === 'ready' && e.readyOn !== connection
    return {
      id,
      state: stale ? 'idle' : e.state,
      error: e.error,
      progress: { ...e.progress },
      canonicalId: e.info?.canonicalId ?? e.resolved?.canonicalId,
      modelPath: e.info?.modelPath ?? e.resolved?.path,
    }
  }

  /** Stop a load in progress (download or activation wait). True when one was running. */
  cancel(id: string): boolean {
    return this.#loads.cancel(modelKey(id))
  }
}

export const registry = new ModelRegistry()
