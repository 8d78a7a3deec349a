/** Downloads from the Hub into its cache: the repository listing, checked before any path is built, then each missing file under the blob lock, resumed and hash-checked. Internal. */

import { existsSync, promises as fs, statSync } from 'node:fs'
import path from 'node:path'

import {
  AbortError,
  AuthenticationError,
  ChecksumError,
  DownloadError,
  ModelNotFoundError,
  type OrchardError,
} from '../errors'
import { downloadTo, httpFetch, withRetries, withStatus } from '../install/http'
import { acquireLock } from '../install/lock'
import { COMMIT, checkRevision, isSafeRepoFile, SHA256, shown } from './cache'
import type { HubOptions } from './hub'
import { findRepoFolder, isRepoId, repoFolderName, selectModelFiles } from './ids'

interface RepoInfo {
  id: string
  sha: string
  siblings: Array<{
    rfilename: string
    size?: number
    blobId?: string
    lfs?: { sha256?: string; oid?: string; size?: number }
  }>
}

function hubError(res: Response, id: string, what: string, hadToken: boolean): OrchardError {
  if (res.status === 401 || res.status === 403) {
    const msg = hadToken
      ? `the Hub refused access to '${id}' (HTTP ${res.status}): check that HF_TOKEN is valid and has access to this repository (gated models need their terms accepted on huggingface.co)`
      : `the Hub refused access to '${id}' (HTTP ${res.status}): it is private, gated or does not exist; set HF_TOKEN to an access token that can read it`
    return withStatus(new AuthenticationError(msg), res.status)
  }
  if (res.status === 404) {
    return withStatus(
      new ModelNotFoundError(`model '${id}' was not found on the Hub (${what}: HTTP 404); check the id and revision`),
      404,
    )
  }
  return withStatus(new DownloadError(`${what} for '${id}': HTTP ${res.status} ${res.statusText}`), res.status)
}

async function repoInfo(
  id: string,
  revision: string,
  o: { endpoint: string; token?: string; signal?: AbortSignal },
): Promise<RepoInfo> {
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
    new DownloadError(
      `model info for '${id}' from ${url}: invalid ${field} ${shown(value)}; nothing was written to the cache`,
    )
  if (!COMMIT.test(info.sha)) throw refuse('sha (expected a 40-hex commit)', info.sha)
  for (const s of info.siblings as unknown[]) {
    const sib = s as RepoInfo['siblings'][number] | null
    if (!sib || typeof sib !== 'object' || typeof sib.rfilename !== 'string' || !isSafeRepoFile(sib.rfilename)) {
      throw refuse(
        'rfilename (expected a relative path without ..)',
        sib && typeof sib === 'object' ? sib.rfilename : sib,
      )
    }
    if (
      sib.blobId !== undefined &&
      sib.blobId !== null &&
      (typeof sib.blobId !== 'string' || !COMMIT.test(sib.blobId))
    ) {
      throw refuse(`blobId of ${shown(sib.rfilename)} (expected 40 hex)`, sib.blobId)
    }
    if (sib.lfs !== undefined && sib.lfs !== null) {
      if (typeof sib.lfs !== 'object') throw refuse(`lfs of ${shown(sib.rfilename)}`, sib.lfs)
      const { sha256, oid } = sib.lfs
      if (sha256 !== undefined && sha256 !== null && (typeof sha256 !== 'string' || !SHA256.test(sha256)))
        throw refuse(`lfs.sha256 of ${shown(sib.rfilename)} (expected 64 hex)`, sha256)
      if (oid !== undefined && oid !== null && (typeof oid !== 'string' || !SHA256.test(oid.replace(/^sha256:/, ''))))
        throw refuse(`lfs.oid of ${shown(sib.rfilename)} (expected sha256:<64 hex>)`, oid)
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
export async function downloadSnapshot(
  id: string,
  o: Required<Pick<HubOptions, 'revision' | 'retries'>> & HubOptions & { cacheDir: string; endpoint: string },
): Promise<{ canonicalId: string; commit: string; dir: string }> {
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
    throw new ModelNotFoundError(
      `'${canonicalId}' at ${o.revision} has no config.json; it is not a model orchard can load`,
    )
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
  const total = plans.every((p) => p.size !== null || done.has(p.file))
    ? plans.reduce((n, p) => n + (done.get(p.file) ?? p.size ?? 0), 0)
    : null
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
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(etag))
      throw new DownloadError(`${url}: unusable ETag ${shown(etag)}`)
    const blob = path.join(blobs, etag)
    const lock = await acquireLock(path.join(o.cacheDir, '.locks', path.basename(folder), `${etag}.lock`), {
      timeoutMs: 3_600_000,
      signal: o.signal,
    })
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
            throw new ChecksumError(
              `${canonicalId}/${p.file}: downloaded content hashes to ${r.digest ?? '?'}, expected ${etag}; the partial file was deleted`,
            )
          }
        })
        await fs.rename(incomplete, blob)
      }
      await symlinkInto(snapshotDir, p.file, blob)
      progress.set(p.file, statSync(blob).size)
      report(p.file)
    } finally {
      lock.release()
    }
  }
  await writeRef(folder, o.revision, commit)
  return { canonicalId, commit, dir: snapshotDir }
}
