/**
 * `modelStatus` for this process: the download phase is tracked here (the only part of a
 * load TypeScript drives); activation, readiness, failures and cancellation belong to the
 * native session, which this merges in. Loads of one model share one attempt (see
 * ./shared.ts) that `cancel` stops for every load; the attempt waits on the Hub download
 * (./hub.ts), which other callers (`models.pull`) may share: a cancelled attempt leaves it,
 * and it stops only when nobody else waits for it. Shared by every `Engine` in the process.
 */

import path from 'node:path'

import type { NativeModelStatus } from '../../index'
import { AbortError, makeError, type OrchardError, type OrchardErrorCode } from '../errors'
import { expandHome } from '../paths'
import { type DownloadProgress, type HubOptions, type ResolvedModel, resolveModel } from './hub'
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

interface Download {
  running: boolean
  /** The last attempt's failure (cleared when the next one starts). */
  error?: OrchardError
  progress: { bytesDownloaded: number; bytesTotal: number | null }
  resolved?: ResolvedModel
}

/** Key of a model before the session knows it: its absolute path (local) or lower-cased id (Hub). */
function modelKey(id: string): string {
  return isLocalId(id) ? path.resolve(expandHome(id)) : id.toLowerCase()
}

class Downloads {
  readonly #records = new Map<string, Download>()
  readonly #tasks = new SharedTasks<ResolvedModel, DownloadProgress>('finish')

  /**
   * Resolve `id` to files on disk, downloading a Hub model into the cache. A caller's
   * `signal` leaves its own wait; {@link cancel} ends the attempt for every load (the Hub
   * download goes on while a pull still waits for it).
   */
  fetch(id: string, options: HubOptions): Promise<ResolvedModel> {
    const key = modelKey(id)
    const start = async (signal: AbortSignal, onProgress: (p: DownloadProgress) => void): Promise<ResolvedModel> => {
      const rec: Download = { running: !isLocalId(id), progress: { bytesDownloaded: 0, bytesTotal: null } }
      this.#records.set(key, rec)
      try {
        rec.resolved = await resolveModel(id, {
          ...options,
          signal,
          onProgress: (p) => {
            rec.progress = { bytesDownloaded: p.bytesDownloaded, bytesTotal: p.bytesTotal }
            onProgress(p)
          },
        })
        if (signal.aborted) throw new AbortError(`loading '${id}' was cancelled`)
        return rec.resolved
      } catch (e) {
        rec.error =
          signal.aborted && !(e instanceof AbortError)
            ? new AbortError(`loading '${id}' was cancelled`, { cause: e })
            : (e as OrchardError)
        throw rec.error
      } finally {
        rec.running = false
      }
    }
    return this.#tasks.join(key, start, options, () => new AbortError(`loadModel('${id}') was aborted`))
  }

  /** End the load attempt of `id` for every load. False when none was running. */
  cancel(id: string): boolean {
    return this.#tasks.cancel(modelKey(id))
  }

  /** `id`'s status: the download's while it runs or when it failed, else the session's. */
  status(id: string, session: NativeModelStatus | null): ModelStatus {
    const rec = this.#records.get(modelKey(id))
    const progress = { ...(rec?.progress ?? { bytesDownloaded: 0, bytesTotal: null }) }
    const resolved = { canonicalId: rec?.resolved?.canonicalId, modelPath: rec?.resolved?.path }
    // A Hub model is shown at its snapshot path, a local one where the session resolved it.
    const fromHub = rec?.resolved?.source === 'cache' || rec?.resolved?.source === 'hub'
    if (rec?.running) return { id, state: 'downloading', progress, ...resolved }
    if (rec?.error) return { id, state: 'failed', error: rec.error, progress, ...resolved }
    if (!session) return { id, state: 'idle', progress }
    const error = session.errorCode
      ? makeError(session.errorCode as OrchardErrorCode, session.errorMessage ?? '')
      : undefined
    return {
      id,
      state: session.state as ModelLoadState,
      ...(error ? { error } : {}),
      progress,
      canonicalId: session.canonicalId ?? resolved.canonicalId,
      modelPath: (fromHub ? resolved.modelPath : session.modelPath) ?? resolved.modelPath,
    }
  }
}

export const downloads = new Downloads()
