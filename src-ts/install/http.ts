/** Streaming HTTP downloads with Range resume, hashing and progress. Internal. */

import { createHash, type Hash } from 'node:crypto'
import { createReadStream, promises as fs } from 'node:fs'

import { AbortError, ChecksumError, DownloadError, OrchardError } from '../errors'

/** Progress of a download, in bytes. `bytesTotal` is null while unknown. */
export interface DownloadProgress {
  bytesDownloaded: number
  bytesTotal: number | null
  /** The file being fetched (model downloads). */
  file?: string
}

export const USER_AGENT = 'orchard-ts/0.1 (node)'

export function withStatus<T extends OrchardError>(err: T, status: number | undefined): T & { status?: number } {
  if (status !== undefined) Object.defineProperty(err, 'status', { value: status, enumerable: true })
  return err
}

/**
 * Run `attempt` (given its number, from 0), again while it fails with a cut connection or a
 * server error, up to `retries` more times, backing off from 250 ms to 2 s. A 4xx, a checksum
 * mismatch or an abort ends it at once.
 */
export async function withRetries<T>(retries: number, attempt: (n: number) => Promise<T>): Promise<T> {
  for (let n = 0; ; n++) {
    try {
      return await attempt(n)
    } catch (e) {
      const status = (e as { status?: number }).status
      const retryable =
        e instanceof DownloadError && !(e instanceof ChecksumError) && !(status !== undefined && status < 500)
      if (!retryable || n >= retries) throw e
      await new Promise((r) => setTimeout(r, Math.min(250 * 2 ** n, 2_000)))
    }
  }
}

/** Rethrow fetch/stream failures as typed errors. */
export function netError(url: string, e: unknown, signal?: AbortSignal): OrchardError {
  if (e instanceof OrchardError) return e
  if (signal?.aborted) return new AbortError(`download of ${url} was aborted`, { cause: e })
  const cause = (e as { cause?: { message?: string } })?.cause?.message
  const msg = (e as Error)?.message ?? String(e)
  return new DownloadError(`GET ${url} failed: ${msg}${cause ? ` (${cause})` : ''}`, { cause: e })
}

export async function httpFetch(
  url: string,
  init: { method?: string; headers?: Record<string, string>; signal?: AbortSignal; redirect?: 'follow' | 'manual' },
): Promise<Response> {
  try {
    return await fetch(url, {
      method: init.method ?? 'GET',
      headers: { 'user-agent': USER_AGENT, ...init.headers },
      signal: init.signal,
      redirect: init.redirect ?? 'follow',
    })
  } catch (e) {
    throw netError(url, e, init.signal)
  }
}

async function hashFile(file: string, hash: Hash): Promise<void> {
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer)
}

export interface DownloadToOptions {
  headers?: Record<string, string>
  signal?: AbortSignal
  /** Continue an existing partial `dest` with a Range request. */
  resume?: boolean
  /** Hash algorithm over the whole file (existing part included), e.g. 'sha256' or 'sha1'. */
  hash?: 'sha256' | 'sha1'
  /** Bytes fed to the hash before the content (git blob ids: `blob <size>\0`). */
  hashPrefix?: Buffer
  /** Bytes received so far (including a resumed part) after each chunk. */
  onBytes?: (bytesDownloaded: number, bytesTotal: number | null) => void
  /** Turn a non-2xx response into an error (default: DownloadError with the status). */
  onHttpError?: (res: Response) => OrchardError
}

export interface DownloadResult {
  bytes: number
  digest?: string
  headers: Headers
}

/**
 * GET `url` into `dest`. With `resume`, an existing partial file is continued with
 * `Range: bytes=<size>-` (a server that answers 200 restarts it). A body shorter than its
 * Content-Length is an error; `dest` is left for a later resume.
 */
export async function downloadTo(url: string, dest: string, options: DownloadToOptions = {}): Promise<DownloadResult> {
  let start = 0
  if (options.resume) {
    start = await fs.stat(dest).then(
      (s) => s.size,
      () => 0,
    )
  }
  const headers: Record<string, string> = { ...options.headers }
  if (start > 0) headers.range = `bytes=${start}-`
  const res = await httpFetch(url, { headers, signal: options.signal })
  if (res.status === 416 && start > 0) {
    // Already complete (or the partial file is longer than the resource): restart it.
    await res.body?.cancel().catch(() => undefined)
    const range = res.headers.get('content-range')
    const total = range ? Number(/\/(\d+)$/.exec(range)?.[1]) : NaN
    if (total === start) {
      const hash = options.hash ? createHash(options.hash) : undefined
      if (hash) {
        if (options.hashPrefix) hash.update(options.hashPrefix)
        await hashFile(dest, hash)
      }
      options.onBytes?.(start, start)
      return { bytes: start, digest: hash?.digest('hex'), headers: res.headers }
    }
    await fs.rm(dest, { force: true })
    return downloadTo(url, dest, { ...options, resume: false })
  }
  if (!res.ok) {
    await res.body?.cancel().catch(() => undefined)
    throw (
      options.onHttpError?.(res) ??
      withStatus(new DownloadError(`GET ${url}: HTTP ${res.status} ${res.statusText}`), res.status)
    )
  }
  let append = false
  let total: number | null = null
  const length = res.headers.get('content-length')
  if (res.status === 206 && start > 0) {
    const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(res.headers.get('content-range') ?? '')
    if (!m || Number(m[1]) !== start) {
      await res.body?.cancel().catch(() => undefined)
      throw new DownloadError(
        `GET ${url}: the server answered the range request with Content-Range '${res.headers.get('content-range') ?? ''}'`,
      )
    }
    append = true
    total = m[3] === '*' ? (length ? start + Number(length) : null) : Number(m[3])
  } else {
    start = 0
    total = length !== null ? Number(length) : null
  }
  const hash = options.hash ? createHash(options.hash) : undefined
  if (hash && options.hashPrefix) hash.update(options.hashPrefix)
  if (hash && append) await hashFile(dest, hash)
  const fh = await fs.open(dest, append ? 'a' : 'w')
  let received = start
  try {
    if (!res.body) throw new DownloadError(`GET ${url}: empty response`)
    options.onBytes?.(received, total)
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        await fh.write(chunk)
        hash?.update(chunk)
        received += chunk.byteLength
        options.onBytes?.(received, total)
      }
    } catch (e) {
      throw netError(url, e, options.signal)
    }
    if (total !== null && received !== total) {
      throw new DownloadError(`GET ${url}: transfer ended after ${received} of ${total} bytes`)
    }
  } finally {
    await fh.close()
  }
  return { bytes: received, digest: hash?.digest('hex'), headers: res.headers }
}
