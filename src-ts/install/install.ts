/**
 * Fetch and install the engine binary (protocol.md §7.2): a manifest per channel and
 * platform, a sha256-checked tarball (a manifest entry without a sha256 is refused),
 * extraction with node-tar into a private staging directory (see ./tar.ts), then an atomic
 * switch of `<home>/bin` under `<home>/install.lock` (the core's flock, see ./lock.ts).
 *
 * Layout of `<home>` (default `~/.orchard`, override `ORCHARD_HOME` or `home`):
 *   bin -> versions/<version>/bin   (a symlink, swapped with one rename)
 *   <name> -> versions/<version>/<name>  (other top-level archive entries, where <home> has nothing of that name)
 *   versions/<version>/...          (the extracted archive)
 *   versions/.staging-XXXXXX        (mkdtemp, 0700; renamed to versions/<version> when complete)
 *   version.txt                     (the installed version)
 *   install.lock
 *
 * The installer changes nothing in `<home>` but these: it never moves aside or deletes a
 * file, directory or foreign link that happens to share a name with an archive entry.
 */

import { randomBytes } from 'node:crypto'
import { promises as fs, constants as fsc } from 'node:fs'
import path from 'node:path'

import { AbortError, ChecksumError, DownloadError, nativeSync, OrchardError } from '../errors'
import { addon, installedEngineBinary } from '../native'
import { type DownloadProgress, downloadTo, httpFetch, withRetries, withStatus } from './http'
import { acquireLock } from './lock'
import { extractTarGz } from './tar'

export type { DownloadProgress } from './http'

export const DEFAULT_MANIFEST_URL = 'https://orchard.theproxycompany.com'

export interface InstallOptions {
  /** Release channel (default `stable`). */
  channel?: string
  /** A specific version from the manifest (default: its `latest`). */
  version?: string
  /** Install even when this version is already installed. */
  reinstall?: boolean
  /** Install directory (default `ORCHARD_HOME`, then `~/.orchard`). */
  home?: string
  /** Manifest server base URL (default `ORCHARD_MANIFEST_URL`, then https://orchard.theproxycompany.com). */
  manifestUrl?: string
  /** Download attempts after the first (default 2); a truncated transfer is retried from scratch. */
  retries?: number
  /** How long to wait for another installer holding `install.lock` (default 300 000 ms). */
  lockTimeoutMs?: number
  onProgress?: (progress: DownloadProgress) => void
  signal?: AbortSignal
}

export interface InstallResult {
  version: string
  /** The engine binary: `<home>/bin/proxy_inference_engine`. */
  path: string
  home: string
  /** False when this version was already installed and nothing was downloaded. */
  installed: boolean
}

export interface Manifest {
  latest: string
  versions: Record<string, { url: string; sha256?: string }>
}

/** `home`, else `ORCHARD_HOME`, else `~/.orchard` (decided by the native core, like the binary it launches). */
export function orchardHome(home?: string): string {
  return nativeSync(() => addon().engineHome(home))
}

/** The installed engine binary path, `<home>/bin/proxy_inference_engine` (decided by the native core; whether or not it exists). */
export function installedBinary(home?: string): string {
  return nativeSync(() => installedEngineBinary(home))
}

/** The installed version, or null. */
export async function installedVersion(home?: string): Promise<string | null> {
  const h = orchardHome(home)
  try {
    await fs.access(installedBinary(h), fsc.X_OK)
    const v = (await fs.readFile(path.join(h, 'version.txt'), 'utf8')).trim()
    return v || null
  } catch {
    return null
  }
}

function platformQuery(): { os: string; arch: string } {
  const arch = process.arch === 'x64' ? 'x86_64' : process.arch
  return { os: process.platform, arch }
}

function manifestBase(url?: string): string {
  return (url ?? process.env.ORCHARD_MANIFEST_URL ?? DEFAULT_MANIFEST_URL)
    .replace(/\/+$/, '')
    .replace(/\/manifest$/, '')
}

/** GET `<base>/manifest?channel&v&os&arch` and validate its shape. */
export async function fetchManifest(
  options: { channel?: string; manifestUrl?: string; installed?: string | null; signal?: AbortSignal } = {},
): Promise<Manifest> {
  const q = new URLSearchParams({
    channel: options.channel ?? 'stable',
    v: options.installed ?? 'unknown',
    ...platformQuery(),
  })
  const url = `${manifestBase(options.manifestUrl)}/manifest?${q.toString()}`
  const timeout = AbortSignal.timeout(30_000)
  const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout
  const res = await httpFetch(url, { signal, headers: { accept: 'application/json' } })
  if (!res.ok) {
    await res.body?.cancel().catch(() => undefined)
    throw withStatus(new DownloadError(`engine manifest ${url}: HTTP ${res.status} ${res.statusText}`), res.status)
  }
  let body: unknown
  try {
    body = await res.json()
  } catch (e) {
    throw new DownloadError(`engine manifest ${url}: not JSON`, { cause: e })
  }
  const m = body as Partial<Manifest>
  if (!m || typeof m.latest !== 'string' || typeof m.versions !== 'object' || m.versions === null) {
    throw new DownloadError(`engine manifest ${url}: expected {latest, versions}`)
  }
  return m as Manifest
}

function checkAbort(signal?: AbortSignal): void {
  if (signal?.aborted) throw new AbortError('engine install was aborted')
}

const SHA256_HEX = /^[0-9a-f]{64}$/i

/** The directory name of a version under `versions/`; throws for names that could not be one. */
function versionDirName(version: string, channel: string): string {
  const safe = version.replace(/[^A-Za-z0-9._+-]/g, '_')
  if (!/^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/.test(safe) || safe.startsWith('.staging-')) {
    throw new DownloadError(
      `the ${channel} manifest names an unusable version ${JSON.stringify(version.slice(0, 80))}; nothing was installed`,
    )
  }
  return safe
}

/** Files in `<home>` the installer itself writes; an archive entry of that name is not linked. */
const RESERVED = new Set(['version.txt', 'versions', 'install.lock'])

/** A `<home>/<name>` symlink this installer made: `versions/<version>/<name>`. */
function ownLink(name: string, target: string): boolean {
  const m = /^versions\/([^/]+)\/([^/]+)$/.exec(target)
  return !!m && m[2] === name && m[1] !== '.' && m[1] !== '..'
}

/** What is at `<home>/<name>`: nothing, a link this installer made, or something else. */
async function homeEntry(at: string, name: string): Promise<'none' | 'ours' | 'foreign'> {
  const st = await fs.lstat(at).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return null
    throw e
  })
  if (!st) return 'none'
  if (!st.isSymbolicLink()) return 'foreign'
  return ownLink(name, await fs.readlink(at)) ? 'ours' : 'foreign'
}

/** Point `link` at `target` by renaming a new symlink over it (it is absent or one of ours). */
async function swapSymlink(link: string, target: string): Promise<void> {
  const tmp = `${link}.${randomBytes(4).toString('hex')}.new`
  await fs.symlink(target, tmp)
  try {
    await fs.rename(tmp, link)
  } catch (e) {
    await fs.unlink(tmp).catch(() => undefined)
    throw e
  }
}

/**
 * Install the engine for this platform. Safe to call from several processes at once: one
 * downloads, the others wait on `install.lock` and then find it installed.
 */
export async function installEngine(options: InstallOptions = {}): Promise<InstallResult> {
  const home = orchardHome(options.home)
  const channel = options.channel ?? 'stable'
  const retries = options.retries ?? 2
  checkAbort(options.signal)
  await fs.mkdir(home, { recursive: true })
  const lock = await acquireLock(path.join(home, 'install.lock'), {
    timeoutMs: options.lockTimeoutMs ?? 300_000,
    signal: options.signal,
  })
  const versionsDir = path.join(home, 'versions')
  const download = path.join(home, `.download-${process.pid}-${randomBytes(4).toString('hex')}.tar.gz`)
  // A fresh private directory (mkdtemp, mode 0700) made once the download is verified.
  let staging: string | null = null
  try {
    const current = await installedVersion(home)
    const manifest = await fetchManifest({
      channel,
      manifestUrl: options.manifestUrl,
      installed: current,
      signal: options.signal,
    })
    const version = options.version ?? manifest.latest
    const entry = manifest.versions[version]
    if (!entry || typeof entry.url !== 'string') {
      const { os: platform, arch } = platformQuery()
      throw new DownloadError(`the ${channel} manifest has no download for version '${version}' (${platform}/${arch})`)
    }
    if (current === version && !options.reinstall) {
      return { version, path: installedBinary(home), home, installed: false }
    }
    const safeVersion = versionDirName(version, channel)
    const url = new URL(entry.url, `${manifestBase(options.manifestUrl)}/`).toString()
    if (typeof entry.sha256 !== 'string' || !SHA256_HEX.test(entry.sha256)) {
      const got =
        entry.sha256 === undefined
          ? 'no sha256'
          : `an invalid sha256 ${JSON.stringify(String(entry.sha256).slice(0, 80))}`
      throw new ChecksumError(
        `the ${channel} manifest gives ${got} for engine ${version} (${url}); an unverified download is never installed; nothing was installed`,
      )
    }
    const want = entry.sha256.toLowerCase()

    // Download, retrying a cut transfer from scratch; verify before anything is extracted.
    const { digest } = await withRetries(retries, async () => {
      checkAbort(options.signal)
      try {
        return await downloadTo(url, download, {
          signal: options.signal,
          hash: 'sha256',
          onBytes: (bytesDownloaded, bytesTotal) => options.onProgress?.({ bytesDownloaded, bytesTotal }),
        })
      } catch (e) {
        await fs.rm(download, { force: true })
        throw e
      }
    })
    if (digest !== want) {
      throw new ChecksumError(
        `engine ${version} from ${url}: sha256 ${digest ?? '?'} does not match the manifest's ${want}; nothing was installed`,
      )
    }

    // Extract into a private staging directory and check it; only that directory is published.
    await fs.mkdir(versionsDir, { recursive: true })
    staging = await fs.mkdtemp(path.join(versionsDir, '.staging-'))
    try {
      await extractTarGz(download, staging)
    } catch (e) {
      if (e instanceof DownloadError)
        throw new DownloadError(`engine ${version} from ${url}: ${e.message}; nothing was installed`, { cause: e })
      throw e
    }
    // The staging directory is laid out like a home: its binary is where the install's will be.
    const bin = installedBinary(staging)
    const st = await fs.lstat(bin).catch(() => null)
    if (!st?.isFile()) {
      throw new DownloadError(
        `engine ${version} from ${url}: the archive has no ${path.relative(staging, bin)}; nothing was installed`,
      )
    }
    await fs.chmod(bin, 0o755)

    // Each top-level entry of the archive is linked from <home> only where <home> has nothing of
    // that name or a link this installer made; anything else there is left as it is (`bin` must
    // be ours, or the install stops here).
    const publish: string[] = []
    for (const name of await fs.readdir(staging)) {
      if (RESERVED.has(name) || name.startsWith('.')) continue
      const at = path.join(home, name)
      const what = await homeEntry(at, name)
      if (what !== 'foreign') publish.push(name)
      else if (name === 'bin') {
        throw new DownloadError(
          `${at} exists and is not a link the engine installer made; move it away and install again; nothing was installed`,
        )
      }
    }
    checkAbort(options.signal)
    await fs.chmod(staging, 0o755)

    const finalDir = path.join(versionsDir, safeVersion)
    // A reinstall moves the same version aside; the sweep below removes it.
    await fs
      .rename(finalDir, path.join(versionsDir, `.old-${safeVersion}-${randomBytes(4).toString('hex')}`))
      .catch(() => undefined)
    await fs.rename(staging, finalDir)
    staging = null
    for (const name of publish) await swapSymlink(path.join(home, name), path.join('versions', safeVersion, name))
    const vtmp = path.join(home, `.version.txt.${randomBytes(4).toString('hex')}`)
    await fs.writeFile(vtmp, `${version}\n`)
    await fs.rename(vtmp, path.join(home, 'version.txt'))
    // Links of ours into other versions are stale now.
    for (const name of await fs.readdir(home)) {
      if (publish.includes(name) || RESERVED.has(name)) continue
      if ((await homeEntry(path.join(home, name), name).catch(() => 'foreign')) === 'ours')
        await fs.unlink(path.join(home, name)).catch(() => undefined)
    }
    // Older versions are no longer referenced (a running engine keeps its inode).
    for (const name of await fs.readdir(versionsDir)) {
      if (name !== safeVersion && !name.startsWith('.staging-'))
        await fs.rm(path.join(versionsDir, name), { recursive: true, force: true })
    }
    return { version, path: installedBinary(home), home, installed: true }
  } catch (e) {
    if (e instanceof OrchardError) throw e
    throw new DownloadError(`engine install failed: ${(e as Error).message}`, { cause: e })
  } finally {
    await fs.rm(download, { force: true }).catch(() => undefined)
    if (staging) await fs.rm(staging, { recursive: true, force: true }).catch(() => undefined)
    lock.release()
  }
}
