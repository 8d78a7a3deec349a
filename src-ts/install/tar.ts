/**
 * Safe extraction of the engine archive with node-tar. Internal.
 *
 * The archive (already sha256-checked) is read three times, and nothing is written until the
 * first read has accepted every member:
 *
 *   1. List it and check the tree it describes: member names are relative with no `..`, only
 *      files, directories, symlinks and hard links; no member lies below a symlink; every
 *      symlink, resolved component by component through the other symlinks of the archive,
 *      stays inside; hard links name an earlier regular file.
 *   2. Extract it with node-tar into `dir` (a fresh private directory the caller made), each
 *      entry compared with the listing; node-tar's own protections stay on (no absolute or
 *      `..` paths, no writing through symlinks) and any warning fails the extraction.
 *   3. Walk what was written: every symlink resolved on disk component by component stays
 *      inside `dir`, no other kind of file exists, and hard-link counts match the tree.
 *
 * Every failure is a DownloadError naming the member and why; the caller removes `dir`.
 */

import { createReadStream, promises as fs } from 'node:fs'
import path from 'node:path'

import * as tar from 'tar'

import { DownloadError } from '../errors'

/** At most this many symlinks followed while resolving one path (Linux uses 40). */
const MAX_HOPS = 40

function bad(message: string): DownloadError {
  return new DownloadError(`bad engine archive: ${message}`)
}

/** A name for a message: quoted, control characters escaped, long names shortened. */
function q(s: string): string {
  const short = s.length > 120 ? `${s.slice(0, 117)}...` : s
  return `'${short.replace(/[\u0000-\u001f\u007f\\']/g, (c) => (c === "'" ? "\\'" : c === '\\' ? '\\\\' : `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`))}'`
}

type Kind = 'file' | 'dir' | 'symlink' | 'hardlink'

interface Member {
  /** As stored in the archive. */
  raw: string
  /** Normalised: no empty or `.` components; '' is the archive root. */
  name: string
  kind: Kind
  /** Symlinks: the target as stored. Hard links: the normalised member they name. */
  target: string
  rawTarget: string
}

/** Normalise a member name; throws for absolute paths, `..` components, NUL and backslashes. */
export function safeMemberName(raw: string, what = 'member'): string {
  if (raw.includes('\0')) throw bad(`${what} ${q(raw)} has a NUL byte in its name`)
  if (raw.includes('\\')) throw bad(`${what} ${q(raw)} has a backslash in its name`)
  if (raw.startsWith('/') || /^[A-Za-z]:/.test(raw)) throw bad(`${what} ${q(raw)} has an absolute path`)
  const parts = raw.split('/').filter((p) => p !== '' && p !== '.')
  if (parts.includes('..')) throw bad(`${what} ${q(raw)} escapes the archive root ('..')`)
  return parts.join('/')
}

function kindOf(entry: tar.ReadEntry): Kind {
  switch (entry.type) {
    case 'File':
    case 'OldFile':
    case 'ContiguousFile':
      return 'file'
    case 'Directory':
      return 'dir'
    case 'SymbolicLink':
      return 'symlink'
    case 'Link':
      return 'hardlink'
    case 'CharacterDevice':
    case 'BlockDevice':
    case 'FIFO':
      throw bad(`member ${q(entry.path)} is a device file or fifo (${entry.type})`)
    default:
      throw bad(`member ${q(entry.path)} has an unsupported type (${String(entry.type)})`)
  }
}

/** The checks that need one entry only. */
function toMember(entry: tar.ReadEntry): Member {
  const raw = entry.path
  const name = safeMemberName(raw)
  const kind = kindOf(entry)
  if (name === '' && kind !== 'dir') throw bad(`member ${q(raw)} would replace the extraction directory`)
  const rawTarget = entry.linkpath ?? ''
  let target = ''
  if (kind === 'symlink') {
    if (rawTarget === '') throw bad(`symlink ${q(raw)} has no target`)
    if (rawTarget.includes('\0') || rawTarget.includes('\\'))
      throw bad(`symlink ${q(raw)} has a NUL byte or backslash in its target ${q(rawTarget)}`)
    if (rawTarget.startsWith('/') || /^[A-Za-z]:/.test(rawTarget))
      throw bad(`symlink ${q(raw)} points to an absolute path (${q(rawTarget)})`)
    target = rawTarget
  } else if (kind === 'hardlink') {
    target = safeMemberName(rawTarget, `hard link ${q(raw)} to`)
    if (target === '') throw bad(`hard link ${q(raw)} points to the archive root`)
  }
  return { raw, name, kind, target, rawTarget }
}

const prefixes = (name: string): string[] => {
  const parts = name.split('/')
  const out: string[] = []
  for (let i = 1; i < parts.length; i++) out.push(parts.slice(0, i).join('/'))
  return out
}

/**
 * Resolve `rel` from the directory `base` (components below the root), following
 * `readlink` for each component that is a symlink. Null when the path leaves the root.
 */
async function resolveWithin(
  base: string[],
  rel: string,
  readlink: (p: string) => Promise<string | null>,
  what: string,
): Promise<string[] | null> {
  const stack = [...base]
  const todo = rel.split('/')
  let hops = 0
  while (todo.length > 0) {
    const c = todo.shift()!
    if (c === '' || c === '.') continue
    if (c === '..') {
      if (stack.length === 0) return null
      stack.pop()
      continue
    }
    stack.push(c)
    const link = await readlink(stack.join('/'))
    if (link === null) continue
    if (++hops > MAX_HOPS) throw bad(`${what}: too many levels of symbolic links`)
    if (link.startsWith('/') || /^[A-Za-z]:/.test(link) || link.includes('\\')) return null
    stack.pop()
    todo.unshift(...link.split('/'))
  }
  return stack
}

/** The checks that need the whole archive. */
async function checkTree(members: Member[]): Promise<void> {
  const count = new Map<string, number>()
  for (const m of members) count.set(m.name, (count.get(m.name) ?? 0) + 1)
  const symlinks = new Map<string, string>()
  for (const m of members) {
    if (m.kind !== 'symlink') continue
    if (count.get(m.name)! > 1) throw bad(`symlink ${q(m.raw)} appears more than once in the archive`)
    symlinks.set(m.name, m.target)
  }
  // Every symlink, following the archive's other symlinks (earlier or later), stays inside.
  const readlink = async (p: string) => symlinks.get(p) ?? null
  for (const m of members) {
    if (m.kind !== 'symlink') continue
    const dir = m.name.split('/').slice(0, -1)
    if ((await resolveWithin(dir, m.target, readlink, `symlink ${q(m.raw)}`)) === null) {
      throw bad(`symlink ${q(m.raw)} -> ${q(m.rawTarget)} points outside the archive`)
    }
  }
  // Nothing is written through a symlink: no member (or hard-link target) lies below one.
  for (const m of members) {
    for (const p of prefixes(m.name)) {
      if (symlinks.has(p)) throw bad(`member ${q(m.raw)} would be written through the symlink ${q(p)}`)
    }
    if (m.kind !== 'hardlink') continue
    for (const p of [...prefixes(m.target), m.target]) {
      if (symlinks.has(p)) throw bad(`hard link ${q(m.raw)} -> ${q(m.rawTarget)} goes through the symlink ${q(p)}`)
    }
  }
  // Hard links name a regular file (or a hard link to one) that comes earlier.
  const files = new Set<string>()
  for (const m of members) {
    if (m.kind === 'hardlink' && !files.has(m.target)) {
      throw bad(`hard link ${q(m.raw)} -> ${q(m.rawTarget)} does not name a regular file earlier in the archive`)
    }
    if (m.kind === 'file' || m.kind === 'hardlink') files.add(m.name)
    else files.delete(m.name)
  }
}

/** Feed a file into a node-tar Parser or Unpack; resolves on `done`. */
function pump(archive: string, sink: tar.Parser, done: 'end' | 'close'): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let settled = false
    const fail = (e: unknown) => {
      if (settled) return
      settled = true
      reject(e)
    }
    sink.on('error', fail)
    sink.on(done, () => {
      if (settled) return
      settled = true
      resolve()
    })
    const src = createReadStream(archive)
    src.on('error', fail)
    src.pipe(sink as unknown as NodeJS.WritableStream)
  })
}

const asArchiveError = (e: unknown): DownloadError =>
  e instanceof DownloadError ? e : bad((e as Error)?.message ?? String(e))

/** List and check every member; nothing is written. */
async function plan(archive: string): Promise<Member[]> {
  const members: Member[] = []
  let failure: DownloadError | null = null
  const parser = new tar.Parser({
    strict: true,
    onReadEntry: (entry) => {
      try {
        if (!failure) members.push(toMember(entry))
      } catch (e) {
        failure ??= asArchiveError(e)
      }
      entry.resume()
    },
  })
  parser.on('ignoredEntry', (entry: tar.ReadEntry) => {
    failure ??= bad(`member ${q(entry.path)} has an unsupported type (${String(entry.type)})`)
  })
  try {
    await pump(archive, parser, 'end')
  } catch (e) {
    throw failure ?? asArchiveError(e)
  }
  if (failure) throw failure
  if (members.length === 0) throw bad('it has no members')
  await checkTree(members)
  return members
}

/** Walk `root` after extraction: symlinks stay inside, only files/dirs/symlinks, hard links all inside. */
async function verifyTree(root: string): Promise<void> {
  const real = await fs.realpath(root)
  const readlink = async (p: string) => {
    const full = path.join(real, p)
    const st = await fs.lstat(full).catch(() => null)
    return st?.isSymbolicLink() ? await fs.readlink(full) : null
  }
  const links = new Map<string, { nlink: number; seen: number; name: string }>()
  const walk = async (rel: string): Promise<void> => {
    for (const d of await fs.readdir(path.join(real, rel), { withFileTypes: true })) {
      const name = rel ? `${rel}/${d.name}` : d.name
      const st = await fs.lstat(path.join(real, name))
      if (st.isDirectory()) await walk(name)
      else if (st.isSymbolicLink()) {
        const target = await fs.readlink(path.join(real, name))
        if ((await resolveWithin(rel ? rel.split('/') : [], target, readlink, `symlink ${q(name)}`)) === null) {
          throw bad(`symlink ${q(name)} -> ${q(target)} points outside the archive`)
        }
      } else if (st.isFile()) {
        if (st.nlink > 1) {
          const key = `${st.dev}:${st.ino}`
          const l = links.get(key) ?? { nlink: st.nlink, seen: 0, name }
          l.seen++
          links.set(key, l)
        }
      } else throw bad(`member ${q(name)} is not a file, directory or symlink`)
    }
  }
  await walk('')
  for (const l of links.values()) {
    if (l.seen !== l.nlink) throw bad(`member ${q(l.name)} is hard-linked to a file outside the archive`)
  }
}

/**
 * Extract the (gzipped) tar `archive` into `dir`, which must exist, be empty and private
 * to the caller. Returns the member names. Throws DownloadError (`bad engine archive: ...`)
 * naming the member for anything unsafe; `dir` may then hold a partial tree, never more.
 */
export async function extractTarGz(archive: string, dir: string): Promise<string[]> {
  const members = await plan(archive)

  let index = 0
  let failure: DownloadError | null = null
  const unpack = new tar.Unpack({
    cwd: dir,
    strict: false,
    preserveOwner: false,
    preservePaths: false,
    unlink: false,
    filter: (_path, entry) => {
      if (failure) return false
      const e = entry as tar.ReadEntry
      const m = members[index++]
      let now: Member | null = null
      try {
        now = toMember(e)
      } catch (err) {
        failure = asArchiveError(err)
        return false
      }
      if (!m || m.raw !== now.raw || m.kind !== now.kind || m.rawTarget !== now.rawTarget) {
        failure = bad(`member ${q(e.path)} differs between two reads of the archive`)
        return false
      }
      // No setuid/setgid/sticky bits and no group/other write; the owner can always read and write.
      if (typeof e.mode === 'number') e.mode = (e.mode & 0o755) | (m.kind === 'dir' ? 0o700 : 0o600)
      return true
    },
    onwarn: (code, message, data) => {
      const entry = (data as { entry?: tar.ReadEntry }).entry
      failure ??= bad(`${entry ? `member ${q(entry.path)}: ` : ''}${code}: ${message}`)
    },
  })
  unpack.on('ignoredEntry', (entry: tar.ReadEntry) => {
    if (
      !failure &&
      entry.type !== undefined &&
      !['File', 'OldFile', 'ContiguousFile', 'Directory', 'SymbolicLink', 'Link'].includes(entry.type)
    ) {
      failure = bad(`member ${q(entry.path)} has an unsupported type (${String(entry.type)})`)
    }
  })
  try {
    await pump(archive, unpack, 'close')
  } catch (e) {
    throw failure ?? asArchiveError(e)
  }
  if (failure) throw failure
  if (index !== members.length) throw bad('the archive changed between two reads')
  await verifyTree(dir)
  return members.map((m) => m.name).filter((n) => n !== '')
}
