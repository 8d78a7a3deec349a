/**
 * The per-process model registry: load states (idle → downloading → activating → ready |
 * failed), coalesced loads, cancellation, retry after failure, and case-insensitive aliases.
 * Shared by every `Engine` in the process, like the engine lease.
 */

import path from 'node:path'

import { AbortError, InternalError, OrchardError } from '../errors'
import type { ModelInfo } from '../types'
import { expandHome } from '../paths'
import { type DownloadProgress, type HubOptions, isLocalId, resolveModel, type ResolvedModel } from './hub'

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
export type Activate = (resolved: ResolvedModel, signal: AbortSignal) => Promise<{ info: ModelInfo; nativeId: string }>

interface Attempt {
  promise: Promise<ModelInfo>
  controller: AbortController
}

interface Entry {
  state: ModelLoadState
  error?: OrchardError
  progress: { bytesDownloaded: number; bytesTotal: number | null }
  attempt?: Attempt
  listeners: Set<(p: DownloadProgress) => void>
  resolved?: ResolvedModel
  info?: ModelInfo
  /** The id the native session knows the model by. */
  nativeId?: string
  /** The engine connection (channel id) the model is ready on. */
  readyOn?: bigint
}

/** Registry key: the absolute directory for local models, the lower-cased id for Hub models. */
function modelKey(id: string): string {
  return isLocalId(id) ? path.resolve(expandHome(id)) : id.toLowerCase()
}

export interface RegistryLoadOptions extends HubOptions {
  /** The engine connection this load is for; a model is ready per connection. */
  connection: bigint
}

class ModelRegistry {
  readonly #entries = new Map<string, Entry>()
  /** Lower-cased requested and canonical ids → entry. */
  readonly #aliases = new Map<string, Entry>()

  #entry(id: string, create: boolean): Entry | undefined {
    const key = modelKey(id)
    let e = this.#entries.get(key) ?? (isLocalId(id) ? undefined : this.#aliases.get(id.toLowerCase()))
    if (!e && create) {
      e = { state: 'idle', progress: { bytesDownloaded: 0, bytesTotal: null }, listeners: new Set() }
      this.#entries.set(key, e)
    }
    return e
  }

  #alias(e: Entry, id: string): void {
    if (!isLocalId(id)) this.#aliases.set(id.toLowerCase(), e)
  }

  load(id: string, activate: Activate, options: RegistryLoadOptions): Promise<ModelInfo> {
    const e = this.#entry(id, true)!
    this.#alias(e, id)
    if (e.state === 'ready' && e.info && e.readyOn === options.connection) {
      return Promise.resolve({ ...e.info, requestedId: id })
    }
    if (!e.attempt) e.attempt = this.#start(e, id, activate, options)
    const attempt = e.attempt
    const listener = options.onProgress
    if (listener) {
      e.listeners.add(listener)
      const drop = () => e.listeners.delete(listener)
      attempt.promise.then(drop, drop)
      options.signal?.addEventListener('abort', drop, { once: true })
    }
    const signal = options.signal
    if (!signal) return attempt.promise.then((info) => ({ ...info, requestedId: id }))
    if (signal.aborted) return Promise.reject(new AbortError(`loadModel('${id}') was aborted`))
    // A caller's signal leaves this caller's wait; cancelLoad() stops the load for everyone.
    return new Promise<ModelInfo>((resolve, reject) => {
      const onAbort = () => reject(new AbortError(`loadModel('${id}') was aborted`))
      signal.addEventListener('abort', onAbort, { once: true })
      attempt.promise
        .then((info) => resolve({ ...info, requestedId: id }), reject)
        .finally(() => signal.removeEventListener('abort', onAbort))
    })
  }

  #start(e: Entry, id: string, activate: Activate, options: RegistryLoadOptions): Attempt {
    const controller = new AbortController()
    e.state = isLocalId(id) ? 'activating' : 'downloading'
    e.error = undefined
    e.progress = { bytesDownloaded: 0, bytesTotal: null }
    const cancelled = new Promise<never>((_, reject) => {
      controller.signal.addEventListener('abort', () => reject(new AbortError(`loading '${id}' was cancelled`)), { once: true })
    })
    cancelled.catch(() => undefined)
    const run = async (): Promise<{ info: ModelInfo; nativeId: string }> => {
      const resolved = await resolveModel(id, {
        ...options,
        signal: controller.signal,
        onProgress: (p: DownloadProgress) => {
          e.progress = { bytesDownloaded: p.bytesDownloaded, bytesTotal: p.bytesTotal }
          for (const l of e.listeners) l(p)
        },
      })
      if (controller.signal.aborted) throw new AbortError(`loading '${id}' was cancelled`)
      e.resolved = resolved
      this.#alias(e, resolved.canonicalId)
      e.state = 'activating'
      // A cancel during activation tells the engine too (see Engine.loadModel); this load
      // reports it cancelled at once, whatever the engine answers.
      return Promise.race([activate(resolved, controller.signal), cancelled])
    }
    const promise = run().then(
      ({ info, nativeId }) => {
        e.state = 'ready'
        e.info = info
        e.nativeId = nativeId
        e.readyOn = options.connection
        e.attempt = undefined
        this.#alias(e, info.canonicalId)
        return info
      },
      (err: unknown) => {
        e.state = 'failed'
        e.error = err instanceof OrchardError ? err : new InternalError(String(err))
        e.attempt = undefined
        throw e.error
      },
    )
    promise.catch(() => undefined)
    return { promise, controller }
  }

  status(id: string, connection: bigint | null): ModelStatus {
    const e = this.#entry(id, false)
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
    const e = this.#entry(id, false)
    if (!e?.attempt) return false
    e.attempt.controller.abort()
    return true
  }

  /** The id the native session knows `model` by, when it was loaded through the registry. */
  nativeId(model: string): string | undefined {
    const e = this.#entry(model, false)
    return e?.state === 'ready' ? e.nativeId : undefined
  }
}

export const registry = new ModelRegistry()
