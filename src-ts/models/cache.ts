/** Reads of the Hub cache (huggingface_hub's layout), and the checks on names that become cache paths. Internal. */

import { existsSync, promises as fs } from 'node:fs'
import path from 'node:path'

import { DownloadError, InvalidRequestError } from '../errors'
import { findRepoFolder, folderToRepoId, hubCacheDir, isRepoId } from './ids'

export interface CachedModel {
  id: string
  /** Commit of each snapshot present. */
  snapshots: string[]
  refs: Record<string, string>
  sizeBytes: number
  path: string
}

export async function readText(file: string): Promise<string | null> {
  try {
    return (await fs.readFile(file, 'utf8')).trim()
  } catch {
    return null
  }
}

export const COMMIT = /^[0-9a-f]{40}$/
export const SHA256 = /^[0-9a-f]{64}$/

/** A value for a message: JSON-quoted (control characters escaped), long ones shortened. */
export function shown(v: unknown): string {
  const s = typeof v === 'string' ? v : (JSON.stringify(v) ?? String(v))
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
  if (revision.startsWith('/') || revision.endsWith('/') || revision.endsWith('.') || revision.includes('//'))
    return false
  return revision.split('/').every((c) => !c.startsWith('.') && !c.endsWith('.lock'))
}

export function checkRevision(revision: string): void {
  if (typeof revision !== 'string' || !isSafeRevision(revision)) {
    throw new DownloadError(`revision ${shown(revision)} is not a valid branch, tag or commit name`)
  }
}

/** A repository file name usable below a snapshot: relative, no `..` segment, no backslash or NUL. */
export function isSafeRepoFile(name: string): boolean {
  if (
    name.length === 0 ||
    name.length > 1024 ||
    name.startsWith('/') ||
    /^[A-Za-z]:/.test(name) ||
    /[\u0000\\]/.test(name)
  )
    return false
  return name.split('/').every((c) => c !== '' && c !== '.' && c !== '..')
}

/** The snapshot directory for `revision` in `folder`, or null. */
export async function snapshotFor(folder: string, revision: string): Promise<{ commit: string; dir: string } | null> {
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
