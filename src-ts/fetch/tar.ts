/**
 * A small streaming reader for (gzipped) ustar archives, with the pax (`x`) and GNU long
 * name (`L`/`K`) extensions, and a safe extractor. Internal.
 */

import { createReadStream, promises as fs } from 'node:fs'
import path from 'node:path'
import { createGunzip } from 'node:zlib'

import { DownloadError } from '../errors'

export type TarEntryType = 'file' | 'directory' | 'symlink' | 'hardlink' | 'other'

export interface TarEntry {
  name: string
  type: TarEntryType
  mode: number
  size: number
  linkname: string
}

const BLOCK = 512

function bad(message: string): DownloadError {
  return new DownloadError('DOWNLOAD', `bad engine archive: ${message}`)
}

function cstr(buf: Buffer, start: number, len: number): string {
  const slice = buf.subarray(start, start + len)
  const nul = slice.indexOf(0)
  return slice.subarray(0, nul === -1 ? len : nul).toString('utf8')
}

function octal(buf: Buffer, start: number, len: number): number {
  const field = buf.subarray(start, start + len)
  if (field[0]! & 0x80) {
    // GNU base-256
    let v = field[0]! & 0x7f
    for (let i = 1; i < len; i++) v = v * 256 + field[i]!
    return v
  }
  const s = cstr(buf, start, len).trim()
  if (s === '') return 0
  if (!/^[0-7]+$/.test(s)) throw bad(`invalid octal field '${s}'`)
  return parseInt(s, 8)
}

function checksumOk(h: Buffer): boolean {
  const want = octal(h, 148, 8)
  let sum = 0
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : h[i]!
  return sum === want
}

function parsePax(text: string): Record<string, string> {
  const out: Record<string, string> = {}
  let i = 0
  const buf = Buffer.from(text, 'utf8')
  while (i < buf.length) {
    const sp = buf.indexOf(0x20, i)
    if (sp === -1) break
    const len = Number(buf.subarray(i, sp).toString())
    if (!Number.isInteger(len) || len <= 0) break
    const rec = buf.subarray(sp + 1, i + len - 1).toString('utf8')
    const eq = rec.indexOf('=')
    if (eq > 0) out[rec.slice(0, eq)] = rec.slice(eq + 1)
    i += len
  }
  return out
}

/** Pulls exact byte counts out of an async chunk stream. */
class ByteReader {
  readonly #it: AsyncIterator<Buffer>
  #buf: Buffer = Buffer.alloc(0)
  #done = false
  constructor(src: AsyncIterable<Buffer>) {
    this.#it = src[Symbol.asyncIterator]()
  }
  async #fill(n: number): Promise<boolean> {
    while (this.#buf.length < n && !this.#done) {
      const r = await this.#it.next()
      if (r.done) this.#done = true
      else this.#buf = this.#buf.length === 0 ? r.value : Buffer.concat([this.#buf, r.value])
    }
    return this.#buf.length >= n
  }
  /** Exactly n bytes, or null at a clean end of stream. */
  async read(n: number): Promise<Buffer | null> {
    if (!(await this.#fill(n))) {
      if (this.#buf.length === 0) return null
      throw bad('unexpected end of archive')
    }
    const out = this.#buf.subarray(0, n)
    this.#buf = this.#buf.subarray(n)
    return out
  }
  /** Stream n bytes to `sink` in chunks as they arrive. */
  async pipe(n: number, sink: (chunk: Buffer) => Promise<void>): Promise<void> {
    let left = n
    while (left > 0) {
      if (this.#buf.length === 0 && !(await this.#fill(1))) throw bad('unexpected end of archive')
      const take = Math.min(left, this.#buf.length)
      const chunk = this.#buf.subarray(0, take)
      this.#buf = this.#buf.subarray(take)
      left -= take
      await sink(chunk)
    }
  }
}

/**
 * Read the entries of a tar stream. `onEntry` gets each entry with a `data` function that
 * streams its contents (call it at most once; unread data is skipped).
 */
export async function readTar(
  src: AsyncIterable<Buffer>,
  onEntry: (entry: TarEntry, data: (sink: (chunk: Buffer) => Promise<void>) => Promise<void>) => Promise<void>,
): Promise<void> {
  const r = new ByteReader(src)
  let longName: string | null = null
  let longLink: string | null = null
  let pax: Record<string, string> = {}
  let zeroBlocks = 0
  for (;;) {
    const h = await r.read(BLOCK)
    if (!h) {
      if (zeroBlocks === 0) throw bad('archive ended without its end-of-archive marker')
      return
    }
    if (h.every((b) => b === 0)) {
      if (++zeroBlocks >= 2) return
      continue
    }
    zeroBlocks = 0
    if (!checksumOk(h)) throw bad('header checksum mismatch')
    const flag = String.fromCharCode(h[156]!)
    const size = octal(h, 124, 12)
    const padded = Math.ceil(size / BLOCK) * BLOCK
    if (flag === 'x' || flag === 'g' || flag === 'L' || flag === 'K') {
      const body = size > 0 ? await r.read(padded) : Buffer.alloc(0)
      if (!body) throw bad('unexpected end of archive')
      const text = body.subarray(0, size).toString('utf8')
      if (flag === 'x') pax = parsePax(text)
      else if (flag === 'L') longName = text.replace(/\0+$/, '')
      else if (flag === 'K') longLink = text.replace(/\0+$/, '')
      continue
    }
    const magic = cstr(h, 257, 6)
    const prefix = magic.startsWith('ustar') ? cstr(h, 345, 155) : ''
    let name = cstr(h, 0, 100)
    if (prefix) name = `${prefix}/${name}`
    name = pax.path ?? longName ?? name
    const linkname = pax.linkpath ?? longLink ?? cstr(h, 157, 100)
    const realSize = pax.size !== undefined ? Number(pax.size) : size
    pax = {}
    longName = null
    longLink = null
    const type: TarEntryType =
      flag === '0' || flag === '\0' || flag === '7'
        ? 'file'
        : flag === '5'
          ? 'directory'
          : flag === '2'
            ? 'symlink'
            : flag === '1'
              ? 'hardlink'
              : 'other'
    const dataSize = type === 'file' ? realSize : size
    const dataPadded = Math.ceil(dataSize / BLOCK) * BLOCK
    let consumed = false
    const data = async (sink: (chunk: Buffer) => Promise<void>) => {
      if (consumed) throw new Error('entry data already read')
      consumed = true
      await r.pipe(dataSize, sink)
    }
    await onEntry({ name, type, mode: octal(h, 100, 8), size: dataSize, linkname }, data)
    if (!consumed) await r.pipe(dataSize, async () => undefined)
    if (dataPadded > dataSize) await r.pipe(dataPadded - dataSize, async () => undefined)
  }
}

/** Normalise an archive member name; throws for absolute paths and `..` components. */
export function safeMemberName(name: string): string {
  if (name.startsWith('/') || /^[A-Za-z]:/.test(name) || name.includes('\\')) throw bad(`member '${name}' has an absolute path`)
  const parts = name.split('/').filter((p) => p !== '' && p !== '.')
  if (parts.includes('..')) throw bad(`member '${name}' escapes the archive root ('..')`)
  return parts.join('/')
}

/**
 * Extract a .tar.gz into `dir` (which must exist). Rejects absolute and `..` members,
 * links that point outside `dir`, hard links and device files. Returns the member names.
 */
export async function extractTarGz(archive: string, dir: string): Promise<string[]> {
  const names: string[] = []
  const gunzip = createReadStream(archive).pipe(createGunzip())
  const errored = new Promise<never>((_, reject) => {
    gunzip.on('error', (e) => reject(bad(`gzip: ${e.message}`)))
  })
  errored.catch(() => undefined)
  const work = readTar(gunzip as AsyncIterable<Buffer>, async (entry, data) => {
    const rel = safeMemberName(entry.name)
    if (rel === '') return
    const dest = path.join(dir, rel)
    switch (entry.type) {
      case 'directory':
        await fs.mkdir(dest, { recursive: true })
        break
      case 'file': {
        await fs.mkdir(path.dirname(dest), { recursive: true })
        await fs.rm(dest, { force: true, recursive: true })
        const fh = await fs.open(dest, 'wx', (entry.mode & 0o777) | 0o600)
        try {
          await data(async (chunk) => {
            await fh.write(chunk)
          })
        } finally {
          await fh.close()
        }
        await fs.chmod(dest, (entry.mode & 0o777) | 0o600)
        break
      }
      case 'symlink': {
        if (entry.linkname.startsWith('/')) throw bad(`symlink '${entry.name}' points to an absolute path`)
        const target = path.posix.normalize(path.posix.join(path.posix.dirname(rel), entry.linkname))
        if (target === '..' || target.startsWith('../')) throw bad(`symlink '${entry.name}' points outside the archive`)
        await fs.mkdir(path.dirname(dest), { recursive: true })
        await fs.rm(dest, { force: true, recursive: true })
        await fs.symlink(entry.linkname, dest)
        break
      }
      default:
        throw bad(`member '${entry.name}' has an unsupported type (${entry.type})`)
    }
    names.push(rel)
  })
  await Promise.race([work, errored])
  return names
}
