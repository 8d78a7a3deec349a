/**
 * Model resolution: a local directory, the Hugging Face cache (huggingface_hub layout,
 * shared with Python tools), or a download from the Hub into that cache.
 *
 * Cache layout (exactly as huggingface_hub writes it):
 *   <cache>/models--{org}--{name}/refs/<revision>          the commit hash
 *   <cache>/models--{org}--{name}/blobs/<etag>             file contents (sha256 for LFS files, git blob id otherwise)
 *   <cache>/models--{org}--{name}/blobs/<etag>.incomplete  a partial download, resumed with Range
 *   <cache>/models--{org}--{name}/snapshots/<commit>/<file> -> ../../blobs/<etag>
 *   <cache>/.locks/models--{org}--{name}/<etag>.lock       the blob's download lock (the flock huggingface_hub takes too)
 *
 * Ids, loaded state and cancellation of activations belong to the native session; this
 * module only finds or downloads the files.
 */

import { existsSync } from 'node:fs'
import path from 'node:path'

import { AbortError, InvalidRequestError, IoError, ModelNotFoundError, OrchardError } from '../errors'
import type { DownloadProgress } from '../install/http'
import { expandHome } from '../paths'
import { checkRevision, snapshotComplete, snapshotFor } from './cache'
import { downloadSnapshot } from './download'
import { endpointOf, findRepoFolder, folderToRepoId, hfToken, hubCacheDir, isLocalId } from './ids'
import { SharedTasks } from './shared'

export type { DownloadProgress } from '../install/http'

export interface HubOptions {
  /** Branch, tag or commit (default `main`). */
  revision?: string
  /** Hub cache directory (default `HF_HUB_CACHE`, `$HF_HOME/hub`, `~/.cache/huggingface/hub`). */
  cacheDir?: string
  /** Hub endpoint (default `HF_ENDPOINT`, then https://huggingface.co). */
  endpoint?: string
  /** Access token (default `HF_TOKEN`, then the token file `huggingface-cli login` writes). */
  token?: string
  /** Never contact the Hub; use the cache only (default: `HF_HUB_OFFLINE=1`). */
  offline?: boolean
  /** Attempts per file after the first; each resumes where the last one stopped (default 3). */
  retries?: number
  onProgress?: (progress: DownloadProgress) => void
  signal?: AbortSignal
}

export interface ResolvedModel {
  /** The id as it was asked for. */
  requestedId: string
  /** `org/name` as the Hub spells it (a Hub model), or the absolute path (a local one; the session names it). */
  canonicalId: string
  /** What to load: a local directory, a cache snapshot, or a weights file or folder. */
  path: string
  /** `local_source`: a file, or a directory without `config.json`, that the engine inspects. */
  source: 'local' | 'local_source' | 'cache' | 'hub'
  /** The snapshot commit (Hub models). */
  commit?: string
}

/** Concurrent downloads of one model (cache, id in any casing, revision) in this process. */
const downloads = new SharedTasks<ResolvedModel, DownloadProgress>('abort')

/**
 * Resolve `id` to a directory the engine can load: an existing local directory with a
 * config.json, a complete snapshot in the Hub cache, or (unless offline) a download from
 * the Hub. Concurrent calls for one model in this process share one download; it stops
 * only when every caller sharing it has aborted.
 */
export async function resolveModel(
  id: string,
  options: HubOptions & { forceDownload?: boolean } = {},
): Promise<ResolvedModel> {
  if (typeof id !== 'string' || id.trim() === '')
    throw new InvalidRequestError('id: expected a model id or a local model directory')
  const local = path.resolve(expandHome(id))
  if (isLocalId(id) || existsSync(path.join(local, 'config.json'))) {
    if (existsSync(path.join(local, 'config.json')) || existsSync(path.join(local, 'model_index.json'))) {
      return { requestedId: id, canonicalId: local, path: local, source: 'local' }
    }
    if (isLocalId(id)) {
      if (existsSync(local)) return { requestedId: id, canonicalId: local, path: local, source: 'local_source' }
      throw new ModelNotFoundError(
        `cannot resolve model '${id}': no config.json at ${path.join(local, 'config.json')}, and it is not a Hub id (org/name)`,
      )
    }
  }
  const revision = options.revision ?? 'main'
  checkRevision(revision)
  const cacheDir = hubCacheDir(options.cacheDir)
  const offline =
    options.offline ?? ['1', 'true', 'yes', 'on'].includes((process.env.HF_HUB_OFFLINE ?? '').toLowerCase())
  if (!options.forceDownload || offline) {
    const folder = findRepoFolder(cacheDir, id)
    const snap = folder ? await snapshotFor(folder, revision) : null
    if (folder && snap && (await snapshotComplete(snap.dir))) {
      return {
        requestedId: id,
        canonicalId: folderToRepoId(path.basename(folder)) ?? id,
        path: snap.dir,
        source: 'cache',
        commit: snap.commit,
      }
    }
  }
  if (offline) {
    throw new ModelNotFoundError(
      `model '${id}' (${revision}) is not in the Hub cache ${cacheDir}, and HF_HUB_OFFLINE is set`,
    )
  }
  const aborted = () => new AbortError(`download of '${id}' was aborted`)
  const download = (signal: AbortSignal, onProgress: (p: DownloadProgress) => void) =>
    downloadSnapshot(id, {
      ...options,
      revision,
      retries: options.retries ?? 3,
      cacheDir,
      endpoint: endpointOf(options.endpoint),
      token: hfToken(options.token),
      signal,
      onProgress,
    }).then(
      (r): ResolvedModel => ({
        requestedId: id,
        canonicalId: r.canonicalId,
        path: r.dir,
        source: 'hub',
        commit: r.commit,
      }),
      (e: unknown) => {
        if (e instanceof OrchardError) throw e
        if (signal.aborted) throw new AbortError(`download of '${id}' was aborted`, { cause: e })
        throw new IoError(`downloading '${id}': ${(e as Error)?.message ?? String(e)}`, { cause: e })
      },
    )
  const r = await downloads.join(`${cacheDir}\0${id.toLowerCase()}\0${revision}`, download, options, aborted)
  return { ...r, requestedId: id }
}
