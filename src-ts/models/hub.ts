/**
 * Model resolution: a local directory, the Hugging Face cache (huggingface_hub layout,
 * shared with Python tools), or a download from the Hub into that cache.
 *
 * Cache layout (exactly as huggingface_hub writes it):
 *   <cache>/models--{org}--{name}/refs/<revision>          the commit hash
 *   <cache>/models--{org}--{name}/blobs/<etag>             file contents (sha256 for LFS files, git blob id otherwise)
 *   <cache>/models--{org}--{name}/blobs/<etag>.incomplete  a partial download, resumed with Range
 *   <cache>/models--{org}--{name}/snapshots/<commit>/<file> -> ../../blobs/<etag>
 */

import { existsSync, promises as fs, readdirSync, readFileSync, statSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import { AbortError, AuthenticationError, ChecksumError, DownloadError, InvalidRequestError, IoError, ModelNotFoundError, OrchardError } from '../errors'
import { type DownloadProgress, downloadTo, httpFetch, withRetries, withStatus } from '../fetch/http'
import { expandHome } from '../paths'
import { acquireLock } from '../fetch/lock'

export type { DownloadProgress } from '../fetch/http'

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
  /** `org/name` as the Hub spells it, or the absolute directory for local models. */
  canonicalId: string
  /** What to load: a local directory, a cache snapshot, or a weights file or folder. */
  path: string
  /** `local_source`: a file, or a directory without `config.json`, that the engine inspects. */
  source: 'local' | 'local_source' | 'cache' | 'hub'
  /** The snapshot commit (Hub models). */
  commit?: string
}

export interface CachedModel {
  id: string
  /** Commit of each snapshot present. */
  snapshots: string[]
  refs: Record<string, string>
  sizeBytes: number
  path: string
}

// ---------------------------------------------------------------------------------------
// Paths and ids


export function hubCacheDir(override?: string): string {
  if (override) return path.resolve(expandHome(override))
  if (process.env.HF_HUB_CACHE) return path.resolve(expandHome(process.env.HF_HUB_CACHE))
  if (process.env.HF_HOME) return path.join(path.resolve(expandHome(process.env.HF_HOME)), 'hub')
  const xdg = process.env.XDG_CACHE_HOME
  return path.join(xdg ? path.resolve(expandHome(xdg)) : path.join(os.homedir(), '.cache'), 'huggingface', 'hub')
}

function hfToken(override?: string): string | undefined {
  if (override) return override
  const env = process.env.HF_TOKEN ?? process.env.HUGGING_FACE_HUB_TOKEN
  if (env) return env.trim()
  try {
    const home = process.env.HF_HOME ? expandHome(process.env.HF_HOME) : path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'huggingface')
    const t = statSync(path.join(home, 'token')).isFile() ? readFileSync(path.join(home, 'token'), 'utf8').trim() : ''
    return t || undefined
  } catch {
    return undefined
  }
}

function endpointOf(override?: string): string {
  return (override ?? process.env.HF_ENDPOINT ?? 'https://huggingface.co').replace(/\/+$/, '')
}

const REPO_ID = /^[A-Za-z0-9][A-Za-z0-9._-]*\/[A-Za-z0-9][A-Za-z0-9._-]*$/

/** True for an `org/name` id (and not an existing local path). */
export function isRepoId(id: string): boolean {
  return REPO_ID.test(id) && !id.includes('..') && !id.endsWith('.git')
}

export function repoFolderName(repoId: string): string {
  return `models--${repoId.split('/').join('--')}`
}

/** The cache folder for `repoId`, matching an existing folder case-insensitively. */
export function findRepoFolder(cacheDir: string, repoId: string): string | null {
  const exact = path.join(cacheDir, repoFolderName(repoId))
  if (existsSync(exact)) return exact
  let names: string[]
  try {
    names = readdirSync(cacheDir)
  } catch {
    return null
  }
  const want = repoFolderName(repoId).toLowerCase()
  const hit = names.find((n) => n.toLowerCase() === want)
  return hit ? path.join(cacheDir, hit) : null
}

function folderToRepoId(folder: string): string | null {
  const m = /^models--(.+?)--(.+)$/.exec(folder)
  return m ? `${m[1]}/${m[2]}` : null
}

function isLocalPathLike(id: string): boolean {
  return path.isAbsolute(id) || id.startsWith('./') || id.startsWith('../') || id.startsWith('~') || id === '.' || id === '..'
}

/** An id that names a path on this machine rather than a Hub repository. */
export function isLocalId(id: string): boolean {
  return isLocalPathLike(id) || !isRepoId(id)
}

// ---------------------------------------------------------------------------------------
// Which files a model needs

const ALWAYS = new Set([
  'config.json',
  'generation_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'tokenizer.model',
  'special_tokens_map.json',
  'added_tokens.json',
  'vocab.json',
  'vocab.txt',
  'merges.txt',
  'spiece.model',
  'chat_template.jinja',
  'chat_template.json',
  'preprocessor_config.json',
  'processor_config.json',
  'model_index.json',
])

/**
 * The files of a repository a model needs: config, tokenizer, generation config, chat
 * template, and the safetensors weights with their index. Other weight formats (`*.bin`,
 * `*.pth`, `*.pt`) only when there are no safetensors; never onnx, gguf, or subfolders.
 */
export function selectModelFiles(files: string[]): string[] {
  const top = files.filter((f) => !f.includes('/'))
  const hasSafetensors = top.some((f) => f.endsWith('.safetensors'))
  return top.filter((f) => {
    if (ALWAYS.has(f) || /^tokenizer.*\.(json|model|txt)$/.test(f) || f.endsWith('.tiktoken') || /^chat_template.*\.(jinja|json)$/.test(f)) return true
    if (f.endsWith('.safetensors') || f.endsWith('.safetensors.index.json')) return true
    if (!hasSafetensors && (/\.(bin|pth|pt)$/.test(f) || f.endsWith('.bin.index.json'))) return !/^(training_args|optimizer|scheduler|rng_state)/.test(f)
    return false
  })
}

// ---------------------------------------------------------------------------------------
// Cache reads

async function readText(file: string): Promise<string | null> {
  try {
    return (await fs.readFile(file, 'utf8')).trim()
  } catch {
    return null
  }
}

const COMMIT = /^[0-9a-f]{40}$/
const SHA256 = /^[0-9a-f]{64}$/

/** A value for a message: JSON-quoted (control characters escaped), long ones shortened. */
function shown(v: unknown): string {
  const s = typeof v === 'string' ? v : JSON.stringify(v) ?? String(v)
  return JSON.stringify(s.length > 80 ? `${s.slice(0, 77)}...` : s)
}

/**
 * A revision usable as `refs/<revision>`: git's ref-name rules (no `..`, `@{`, control
 * characters, space, `~^:?*[\`, no leading, trailing or doubled `/`, no component starting
 * with `.` or ending with `.lock`, not ending with `.`). `/` inside (`refs/pr/1`) is allowed.
 */
function isSafeRevision(revision: string): boolean {
  if (revision.length === 0 || revision.length > 255 || revision === '@') return false
  if (/[\u0000-\u0020\u007f~^:?*[\\]/.test(revision) || revision.includes('..') || revision.includes('@{')) return false
  if (revision.startsWith('/') || revision.endsWith('/') || revision.endsWith('.') || revision.includes('//')) return false
  return revision.split('/').every((c) => !c.startsWith('.') && !c.endsWith('.lock'))
}

function checkRevision(revision: string): void {
  if (typeof revision !== 'string' || !isSafeRevision(revision)) {
    throw new DownloadError(`revision ${shown(revision)} is not a valid branch, tag or commit name`)
  }
}

/** A repository file name usable below a snapshot: relative, no `..` segment, no backslash or NUL. */
function isSafeRepoFile(name: string): boolean {
  if (name.length === 0 || name.length > 1024 || name.startsWith('/') || /^[A-Za-z]:/.test(name) || /[\u0000\\]/.test(name)) return false
  return name.split('/').every((c) => c !== '' && c !== '.' && c !== '..')
}

/** The snapshot directory for `revision` in `folder`, or null. */
async function snapshotFor(folder: string, revision: string): Promise<{ commit: string; dir: string } | null> {
  const commit = COMMIT.test(revision) ? revision : await readText(path.join(folder, 'refs', revision))
  if (!commit || !COMMIT.test(commit)) return null
  const dir = path.join(folder, 'snapshots', commit)
  return existsSync(dir) ? { commit, dir } : null
}

/**
 * Whether a snapshot holds a loadable model: a config.json, and every shard its
 * safetensors index names (symlinks must resolve).
 */
export async function snapshotComplete(dir: string): Promise<boolean> {
  if (!existsSync(path.join(dir, 'config.json')) && !existsSync(path.join(dir, 'model_index.json'))) return false
  let names: string[]
  try {
    names = await fs.readdir(dir)
  } catch {
    return false
  }
  for (const idx of names.filter((n) => n.endsWith('.index.json'))) {
    const text = await readText(path.join(dir, idx))
    if (text === null) return false
    try {
      const map = (JSON.parse(text) as { weight_map?: Record<string, string> }).weight_map ?? {}
      for (const shard of new Set(Object.values(map))) if (!existsSync(path.join(dir, shard))) return false
    } catch {
      return false
    }
  }
  return true
}

/** Models in the Hub cache. */
export async function listCachedModels(options: { cacheDir?: string } = {}): Promise<CachedModel[]> {
  const cacheDir = hubCacheDir(options.cacheDir)
  let names: string[]
  try {
    names = await fs.readdir(cacheDir)
  } catch {
    return []
  }
  const out: CachedModel[] = []
  for (const name of names.sort()) {
    const id = folderToRepoId(name)
    if (!id || !name.startsWith('models--')) continue
    const folder = path.join(cacheDir, name)
    const snapshots = await fs.readdir(path.join(folder, 'snapshots')).catch(() => [] as string[])
    const refs: Record<string, string> = {}
    for (const r of await fs.readdir(path.join(folder, 'refs')).catch(() => [] as string[])) {
      const c = await readText(path.join(folder, 'refs', r))
      if (c) refs[r] = c
    }
    let sizeBytes = 0
    for (const b of await fs.readdir(path.join(folder, 'blobs')).catch(() => [] as string[])) {
      sizeBytes += await fs.stat(path.join(folder, 'blobs', b)).then(
        (s) => s.size,
        () => 0,
      )
    }
    out.push({ id, snapshots, refs, sizeBytes, path: folder })
  }
  return out
}

/** Delete a model from the Hub cache (every revision). Resolves to false when it was not cached. */
export async function removeCachedModel(id: string, options: { cacheDir?: string } = {}): Promise<boolean> {
  if (!isRepoId(id)) throw new InvalidRequestError(`'${id}' is not a Hub model id (org/name)`)
  const folder = findRepoFolder(hubCacheDir(options.cacheDir), id)
  if (!folder) return false
  await fs.rm(folder, { recursive: true, force: true })
  return true
}

// ---------------------------------------------------------------------------------------
// Hub access

interface RepoInfo {
  id: string
  sha: string
  siblings: Array<{ rfilename: string; size?: number; blobId?: string; lfs?: { sha256?: string; oid?: string; size?: number } }>
}

function hubError(res: Response, id: string, what: string, hadToken: boolean): OrchardError {
  if (res.status === 401 || res.status === 403) {
    const msg = hadToken
      ? `the Hub refused access to '${id}' (HTTP ${res.status}): check that HF_TOKEN is valid and has access to this repository (gated models need their terms accepted on huggingface.co)`
      : `the Hub refused access to '${id}' (HTTP ${res.status}): it is private, gated or does not exist; set HF_TOKEN to an access token that can read it`
    return withStatus(new AuthenticationError(msg), res.status)
  }
  if (res.status === 404) {
    return withStatus(new ModelNotFoundError(`model '${id}' was not found on the Hub (${what}: HTTP 404); check the id and revision`), 404)
  }
  return withStatus(new DownloadError(`${what} for '${id}': HTTP ${res.status} ${res.statusText}`), res.status)
}

async function repoInfo(id: string, revision: string, o: { endpoint: string; token?: string; signal?: AbortSignal }): Promise<RepoInfo> {
  const url = `${o.endpoint}/api/models/${id}/revision/${encodeURIComponent(revision)}?blobs=true`
  const headers: Record<string, string> = { accept: 'application/json' }
  if (o.token) headers.authorization = `Bearer ${o.token}`
  const res = await httpFetch(url, { headers, signal: o.signal })
  if (!res.ok) {
    await res.body?.cancel().catch(() => undefined)
    throw hubError(res, id, 'model info', !!o.token)
  }
  const info = (await res.json().catch(() => null)) as Partial<RepoInfo> | null
  if (!info || typeof info.sha !== 'string' || !Array.isArray(info.siblings)) {
    throw new DownloadError(`model info for '${id}' from ${url}: expected {sha, siblings}`)
  }
  // Every value that becomes part of a cache path is checked here, before any path is built.
  const refuse = (field: string, value: unknown) =>
    new DownloadError(`model info for '${id}' from ${url}: invalid ${field} ${shown(value)}; nothing was written to the cache`)
  if (!COMMIT.test(info.sha)) throw refuse('sha (expected a 40-hex commit)', info.sha)
  for (const s of info.siblings as unknown[]) {
    const sib = s as RepoInfo['siblings'][number] | null
    if (!sib || typeof sib !== 'object' || typeof sib.rfilename !== 'string' || !isSafeRepoFile(sib.rfilename)) {
      throw refuse('rfilename (expected a relative path without ..)', sib && typeof sib === 'object' ? sib.rfilename : sib)
    }
    if (sib.blobId !== undefined && sib.blobId !== null && (typeof sib.blobId !== 'string' || !COMMIT.test(sib.blobId))) {
      throw refuse(`blobId of ${shown(sib.rfilename)} (expected 40 hex)`, sib.blobId)
    }
    if (sib.lfs !== undefined && sib.lfs !== null) {
      if (typeof sib.lfs !== 'object') throw refuse(`lfs of ${shown(sib.rfilename)}`, sib.lfs)
      const { sha256, oid } = sib.lfs
      if (sha256 !== undefined && sha256 !== null && (typeof sha256 !== 'string' || !SHA256.test(sha256))) throw refuse(`lfs.sha256 of ${shown(sib.rfilename)} (expected 64 hex)`, sha256)
      if (oid !== undefined && oid !== null && (typeof oid !== 'string' || !SHA256.test(oid.replace(/^sha256:/, '')))) throw refuse(`lfs.oid of ${shown(sib.rfilename)} (expected sha256:<64 hex>)`, oid)
    }
  }
  return { id: typeof info.id === 'string' && isRepoId(info.id) ? info.id : id, sha: info.sha, siblings: info.siblings }
}

function cleanEtag(v: string | null): string | null {
  if (!v) return null
  return v.replace(/^W\//, '').replace(/^"|"$/g, '') || null
}

async function symlinkInto(snapshotDir: string, file: string, blob: string): Promise<void> {
  const link = path.join(snapshotDir, file)
  await fs.mkdir(path.dirname(link), { recursive: true })
  const rel = path.relative(path.dirname(link), blob)
  const tmp = `${link}.${process.pid}.tmp`
  await fs.rm(tmp, { force: true })
  await fs.symlink(rel, tmp)
  await fs.rename(tmp, link)
}

async function writeRef(folder: string, revision: string, commit: string): Promise<void> {
  if (revision === commit) return
  checkRevision(revision)
  const ref = path.join(folder, 'refs', revision)
  await fs.mkdir(path.dirname(ref), { recursive: true })
  const tmp = `${ref}.${process.pid}.tmp`
  await fs.writeFile(tmp, commit)
  await fs.rename(tmp, ref)
}

interface FilePlan {
  file: string
  size: number | null
  etag: string | null
  kind: 'sha256' | 'gitsha1' | null
}

/** Download the files of `id` at `revision` into the cache; returns the snapshot. */
async function downloadSnapshot(id: string, o: Required<Pick<HubOptions, 'revision' | 'retries'>> & HubOptions & { cacheDir: string; endpoint: string }): Promise<{ canonicalId: string; commit: string; dir: string }> {
  const info = await repoInfo(id, o.revision, { endpoint: o.endpoint, token: o.token, signal: o.signal })
  const canonicalId = info.id
  const folder = findRepoFolder(o.cacheDir, canonicalId) ?? path.join(o.cacheDir, repoFolderName(canonicalId))
  const commit = info.sha
  const snapshotDir = path.join(folder, 'snapshots', commit)
  const blobs = path.join(folder, 'blobs')
  await fs.mkdir(blobs, { recursive: true })
  await fs.mkdir(snapshotDir, { recursive: true })

  const wanted = selectModelFiles(info.siblings.map((s) => s.rfilename))
  if (!wanted.includes('config.json') && !wanted.includes('model_index.json')) {
    throw new ModelNotFoundError(`'${canonicalId}' at ${o.revision} has no config.json; it is not a model orchard can load`)
  }
  const plans: FilePlan[] = wanted.map((file) => {
    const s = info.siblings.find((x) => x.rfilename === file)!
    const lfsSha = s.lfs?.sha256 ?? (s.lfs?.oid?.replace(/^sha256:/, '') || undefined)
    return {
      file,
      size: s.lfs?.size ?? s.size ?? null,
      etag: lfsSha ?? s.blobId ?? null,
      kind: lfsSha ? 'sha256' : s.blobId ? 'gitsha1' : null,
    }
  })
  const headers: Record<string, string> = {}
  if (o.token) headers.authorization = `Bearer ${o.token}`

  // Files already in the snapshot or the blob store cost nothing.
  const done = new Map<string, number>()
  const todo: FilePlan[] = []
  for (const p of plans) {
    const link = path.join(snapshotDir, p.file)
    if (existsSync(link)) {
      done.set(p.file, statSync(link).size)
      continue
    }
    if (p.etag && existsSync(path.join(blobs, p.etag))) {
      await symlinkInto(snapshotDir, p.file, path.join(blobs, p.etag))
      done.set(p.file, statSync(link).size)
      continue
    }
    todo.push(p)
  }
  const total = plans.every((p) => p.size !== null || done.has(p.file)) ? plans.reduce((n, p) => n + (done.get(p.file) ?? p.size ?? 0), 0) : null
  const progress = new Map<string, number>(done)
  const report = (file?: string) => {
    let n = 0
    for (const v of progress.values()) n += v
    o.onProgress?.({ bytesDownloaded: n, bytesTotal: total, file })
  }
  report()

  for (const p of todo) {
    if (o.signal?.aborted) throw new AbortError(`download of '${canonicalId}' was aborted`)
    const url = `${o.endpoint}/${canonicalId}/resolve/${commit}/${p.file.split('/').map(encodeURIComponent).join('/')}`
    let etag = p.etag
    let kind = p.kind
    if (!etag) {
      // No blob id in the listing: ask the resolve endpoint (huggingface_hub does a HEAD too).
      const head = await httpFetch(url, { method: 'HEAD', headers, signal: o.signal, redirect: 'manual' })
      if (head.status >= 400) throw hubError(head, canonicalId, p.file, !!o.token)
      etag = cleanEtag(head.headers.get('x-linked-etag') ?? head.headers.get('etag'))
      if (!etag) throw new DownloadError(`${url}: the Hub sent no ETag; cannot place the file in the cache`)
      kind = /^[0-9a-f]{64}$/.test(etag) ? 'sha256' : /^[0-9a-f]{40}$/.test(etag) ? 'gitsha1' : null
    }
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(etag)) throw new DownloadError(`${url}: unusable ETag ${shown(etag)}`)
    const blob = path.join(blobs, etag)
    const lock = await acquireLock(path.join(o.cacheDir, '.locks', path.basename(folder), `${etag}.orchard.lock`), { timeoutMs: 3_600_000, signal: o.signal })
    try {
      if (!existsSync(blob)) {
        const incomplete = `${blob}.incomplete`
        await withRetries(o.retries, async () => {
          const r = await downloadTo(url, incomplete, {
            headers,
            signal: o.signal,
            resume: true,
            hash: kind === 'sha256' ? 'sha256' : kind === 'gitsha1' ? 'sha1' : undefined,
            hashPrefix: kind === 'gitsha1' && p.size !== null ? Buffer.from(`blob ${p.size}\0`) : undefined,
            onBytes: (n) => {
              progress.set(p.file, n)
              report(p.file)
            },
            onHttpError: (res) => hubError(res, canonicalId, p.file, !!o.token),
          })
          if (kind && (kind === 'sha256' || p.size !== null) && r.digest !== etag) {
            await fs.rm(incomplete, { force: true })
            throw new ChecksumError(`${canonicalId}/${p.file}: downloaded content hashes to ${r.digest ?? '?'}, expected ${etag}; the partial file was deleted`)
          }
        })
        await fs.rename(incomplete, blob)
      }
      await symlinkInto(snapshotDir, p.file, blob)
      progress.set(p.file, statSync(blob).size)
      report(p.file)
    } finally {
      await lock.release()
    }
  }
  await writeRef(folder, o.revision, commit)
  return { canonicalId, commit, dir: snapshotDir }
}

// ---------------------------------------------------------------------------------------
// Public entry points

interface Inflight {
  promise: Promise<ResolvedModel>
  controller: AbortController
  waiters: number
  listeners: Set<(p: DownloadProgress) => void>
}
const inflight = new Map<string, Inflight>()

/**
 * Resolve `id` to a directory the engine can load: an existing local directory with a
 * config.json, a complete snapshot in the Hub cache, or (unless offline) a download from
 * the Hub. Concurrent calls for one model in this process share one download; it stops
 * only when every caller sharing it has aborted.
 */
export async function resolveModel(id: string, options: HubOptions & { forceDownload?: boolean } = {}): Promise<ResolvedModel> {
  if (typeof id !== 'string' || id.trim() === '') throw new InvalidRequestError('id: expected a model id or a local model directory')
  const local = path.resolve(expandHome(id))
  if (isLocalId(id) || existsSync(path.join(local, 'config.json'))) {
    if (existsSync(path.join(local, 'config.json')) || existsSync(path.join(local, 'model_index.json'))) {
      return { requestedId: id, canonicalId: local, path: local, source: 'local' }
    }
    if (isLocalId(id)) {
      if (existsSync(local)) return { requestedId: id, canonicalId: local, path: local, source: 'local_source' }
      throw new ModelNotFoundError(`cannot resolve model '${id}': no config.json at ${path.join(local, 'config.json')}, and it is not a Hub id (org/name)`)
    }
  }
  const revision = options.revision ?? 'main'
  checkRevision(revision)
  const cacheDir = hubCacheDir(options.cacheDir)
  const offline = options.offline ?? ['1', 'true', 'yes', 'on'].includes((process.env.HF_HUB_OFFLINE ?? '').toLowerCase())
  if (!options.forceDownload || offline) {
    const folder = findRepoFolder(cacheDir, id)
    const snap = folder ? await snapshotFor(folder, revision) : null
    if (folder && snap && (await snapshotComplete(snap.dir))) {
      return { requestedId: id, canonicalId: folderToRepoId(path.basename(folder)) ?? id, path: snap.dir, source: 'cache', commit: snap.commit }
    }
  }
  if (offline) {
    throw new ModelNotFoundError(`model '${id}' (${revision}) is not in the Hub cache ${cacheDir}, and HF_HUB_OFFLINE is set`)
  }
  if (options.signal?.aborted) throw new AbortError(`download of '${id}' was aborted`)

  const key = `${cacheDir}\0${id.toLowerCase()}\0${revision}`
  let entry = inflight.get(key)
  if (entry?.controller.signal.aborted) entry = undefined
  if (!entry) {
    const controller = new AbortController()
    const listeners = new Set<(p: DownloadProgress) => void>()
    const promise = downloadSnapshot(id, {
      ...options,
      revision,
      retries: options.retries ?? 3,
      cacheDir,
      endpoint: endpointOf(options.endpoint),
      token: hfToken(options.token),
      signal: controller.signal,
      onProgress: (pr) => {
        for (const l of listeners) l(pr)
      },
    }).then(
      (r): ResolvedModel => ({ requestedId: id, canonicalId: r.canonicalId, path: r.dir, source: 'hub', commit: r.commit }),
      (e: unknown) => {
        if (e instanceof OrchardError) throw e
        if (controller.signal.aborted) throw new AbortError(`download of '${id}' was aborted`, { cause: e })
        throw new IoError(`downloading '${id}': ${(e as Error)?.message ?? String(e)}`, { cause: e })
      },
    )
    const created: Inflight = { promise, controller, waiters: 0, listeners }
    entry = created
    inflight.set(key, created)
    const cleanup = () => {
      if (inflight.get(key) === created) inflight.delete(key)
    }
    promise.then(cleanup, cleanup)
  }
  const shared = entry
  shared.waiters++
  const mine = options.onProgress
  if (mine) shared.listeners.add(mine)
  let left = false
  const leave = () => {
    if (left) return
    left = true
    if (mine) shared.listeners.delete(mine)
    if (--shared.waiters === 0) {
      shared.controller.abort()
      if (inflight.get(key) === shared) inflight.delete(key)
    }
  }
  try {
    const signal = options.signal
    const r = await (signal
      ? new Promise<ResolvedModel>((resolve, reject) => {
          const onAbort = () => {
            leave()
            reject(new AbortError(`download of '${id}' was aborted`))
          }
          signal.addEventListener('abort', onAbort, { once: true })
          shared.promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort))
        })
      : shared.promise)
    return { ...r, requestedId: id }
  } finally {
    if (!left) {
      left = true
      if (mine) shared.listeners.delete(mine)
      shared.waiters--
    }
  }
}
