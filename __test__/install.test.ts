// Engine binary fetch against a local manifest server: success, checksum mismatch,
// interrupted transfer, bad archives, 404, the install lock, and Engine.start({ fetch }).
import { randomBytes } from 'node:crypto'
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest'

import { ChecksumError, DownloadError, Engine, type DownloadProgress } from '../src-ts'
import { emulatorBinary, tempCacheRoot } from './helpers'
import { serve, sendBody, sha256, tarGz, type TarMember, type TestServer } from './fetch-helpers'

const roots: string[] = []
let server: TestServer | undefined

afterEach(async () => {
  await server?.close()
  server = undefined
})
afterAll(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true })
})

let home = ''
beforeEach(() => {
  home = tempCacheRoot('home')
  roots.push(home)
})

const fakeEngine = Buffer.from('#!/bin/sh\necho engine\n')

interface Release {
  version: string
  archive: Buffer
  sha256?: string
  cutOnce?: number
}

/** A manifest server with one archive per version. */
async function manifestServer(releases: Release[], latest = releases[0]!.version): Promise<TestServer> {
  const cut = new Map(releases.map((r) => [r.version, r.cutOnce]))
  return serve((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x')
    if (u.pathname === '/manifest') {
      const versions = Object.fromEntries(releases.map((r) => [r.version, { url: `/dl/${r.version}.tar.gz`, sha256: r.sha256 ?? sha256(r.archive) }]))
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ latest, versions }))
      return
    }
    const m = /^\/dl\/(.+)\.tar\.gz$/.exec(u.pathname)
    const rel = m ? releases.find((r) => r.version === m[1]) : undefined
    if (!rel) {
      res.writeHead(404)
      res.end()
      return
    }
    const c = cut.get(rel.version)
    if (c !== undefined) cut.set(rel.version, undefined)
    sendBody(req, res, rel.archive, { cutAfter: c })
  })
}

function engineArchive(body = fakeEngine, extra: TarMember[] = []): Buffer {
  return tarGz([{ name: 'bin/', type: 'dir' }, { name: 'bin/proxy_inference_engine', body, mode: 0o644 }, { name: 'share/README', body: Buffer.from('hi') }, ...extra])
}

/** Every path below `dir`. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).map((f) => path.join(dir, f))
}

function leftovers(dir: string): string[] {
  return readdirSync(dir).filter((n) => n.startsWith('.download-') || n.includes('.staging-') || n === 'install.lock')
}

describe('Engine.install', () => {
  it('downloads, verifies, installs atomically and reports progress; a second call is a no-op', async () => {
    const archive = engineArchive(Buffer.concat([fakeEngine, Buffer.alloc(200_000, 7)]))
    server = await manifestServer([{ version: '1.2.3', archive }])
    const progress: DownloadProgress[] = []
    const r = await Engine.install({ home, manifestUrl: server.url, channel: 'beta', onProgress: (p) => progress.push(p) })
    expect(r).toMatchObject({ version: '1.2.3', installed: true, path: path.join(home, 'bin', 'proxy_inference_engine') })
    expect(statSync(r.path).mode & 0o777).toBe(0o755)
    expect(readFileSync(path.join(home, 'version.txt'), 'utf8').trim()).toBe('1.2.3')
    expect(readFileSync(path.join(home, 'share', 'README'), 'utf8')).toBe('hi')
    const q = new URL(server.requests[0]!.url, 'http://x').searchParams
    expect(q.get('channel')).toBe('beta')
    expect(q.get('v')).toBe('unknown')
    expect(q.get('os')).toBe(process.platform)
    expect(q.get('arch')).toBeTruthy()
    expect(progress.at(-1)).toEqual({ bytesDownloaded: archive.length, bytesTotal: archive.length })
    for (let i = 1; i < progress.length; i++) expect(progress[i]!.bytesDownloaded).toBeGreaterThanOrEqual(progress[i - 1]!.bytesDownloaded)
    expect(leftovers(home)).toEqual([])

    const again = await Engine.install({ home, manifestUrl: server.url })
    expect(again.installed).toBe(false)
    expect(server.requests.filter((x) => x.url.startsWith('/dl/'))).toHaveLength(1)
    expect(new URL(server.requests.at(-1)!.url, 'http://x').searchParams.get('v')).toBe('1.2.3')
  })

  it('upgrades to a newer version with an atomic switch of bin/', async () => {
    server = await manifestServer([
      { version: '2.0.0', archive: engineArchive(Buffer.from('#!/bin/sh\necho two\n')) },
      { version: '1.0.0', archive: engineArchive() },
    ])
    await Engine.install({ home, manifestUrl: server.url, version: '1.0.0' })
    expect(readFileSync(path.join(home, 'bin', 'proxy_inference_engine'), 'utf8')).toBe(fakeEngine.toString())
    const r = await Engine.install({ home, manifestUrl: server.url })
    expect(r).toMatchObject({ version: '2.0.0', installed: true })
    expect(readFileSync(r.path, 'utf8')).toContain('two')
    expect(readdirSync(path.join(home, 'versions'))).toEqual(['2.0.0'])
  })

  it('a checksum mismatch installs nothing and leaves no partial files', async () => {
    server = await manifestServer([{ version: '1.0.0', archive: engineArchive(), sha256: 'ab'.repeat(32) }])
    const err = await Engine.install({ home, manifestUrl: server.url }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ChecksumError)
    expect(err).toBeInstanceOf(DownloadError)
    expect((err as ChecksumError).code).toBe('CHECKSUM')
    expect((err as Error).message).toContain('nothing was installed')
    expect(existsSync(path.join(home, 'bin'))).toBe(false)
    expect(existsSync(path.join(home, 'version.txt'))).toBe(false)
    expect(leftovers(home)).toEqual([])
  })

  it('an interrupted transfer is never installed; a retry succeeds', async () => {
    const archive = engineArchive(Buffer.concat([fakeEngine, randomBytes(300_000)]))
    server = await manifestServer([{ version: '1.0.0', archive, cutOnce: 50_000 }])
    const err = await Engine.install({ home, manifestUrl: server.url, retries: 0 }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(DownloadError)
    expect(existsSync(path.join(home, 'bin'))).toBe(false)
    expect(leftovers(home)).toEqual([])
    const r = await Engine.install({ home, manifestUrl: server.url, retries: 0 })
    expect(r.installed).toBe(true)
    expect(readFileSync(r.path).subarray(0, fakeEngine.length).equals(fakeEngine)).toBe(true)
  })

  it('retries a cut transfer by itself', async () => {
    server = await manifestServer([{ version: '1.0.0', archive: engineArchive(randomBytes(300_000)), cutOnce: 10_000 }])
    const r = await Engine.install({ home, manifestUrl: server.url })
    expect(r.installed).toBe(true)
    expect(server.requests.filter((x) => x.url.startsWith('/dl/'))).toHaveLength(2)
  })

  it('rejects archives with ../ or absolute members, or without the engine binary', async () => {
    // Where the members would land if extraction honoured them: next to the staging directory,
    // and at an absolute path of their own.
    const absolute = path.join(os.tmpdir(), `orchard-evil-${randomBytes(4).toString('hex')}`)
    const cases: Array<[string, Buffer, RegExp]> = [
      ['dotdot', engineArchive(fakeEngine, [{ name: '../evil', body: Buffer.from('x') }]), /escapes the archive root/],
      ['absolute', engineArchive(fakeEngine, [{ name: absolute, body: Buffer.from('x') }]), /absolute path/],
      ['symlink', engineArchive(fakeEngine, [{ name: 'bin/link', type: 'symlink', linkname: '../../x' }]), /outside the archive/],
      ['nobin', tarGz([{ name: 'lib/thing', body: Buffer.from('x') }]), /no bin\/proxy_inference_engine/],
      ['notgzip', Buffer.from('this is not an archive'), /bad engine archive/],
    ]
    for (const [version, archive, why] of cases) {
      server = await manifestServer([{ version, archive }])
      const err = await Engine.install({ home, manifestUrl: server.url }).catch((e: unknown) => e)
      expect(err, version).toBeInstanceOf(DownloadError)
      expect((err as Error).message, version).toMatch(why)
      expect(existsSync(path.join(home, 'bin')), version).toBe(false)
      expect(filesUnder(home).filter((f) => path.basename(f) === 'evil' || f.includes('.staging-')), version).toEqual([])
      expect(existsSync(absolute), version).toBe(false)
      expect(leftovers(home)).toEqual([])
      await server.close()
      server = undefined
    }
  })

  it('a missing manifest is a DownloadError with the HTTP status', async () => {
    server = await serve((_req, res) => {
      res.writeHead(404)
      res.end()
    })
    const err = await Engine.install({ home, manifestUrl: server.url }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(DownloadError)
    expect((err as { status?: number }).status).toBe(404)
  })

  it('concurrent installs serialise on install.lock; a stale lock is taken over', async () => {
    server = await manifestServer([{ version: '1.0.0', archive: engineArchive() }])
    // A lock left by a dead process.
    writeFileSync(path.join(home, 'install.lock'), JSON.stringify({ pid: 2 ** 22 + 12345, host: require('node:os').hostname(), time: 0 }))
    const [a, b] = await Promise.all([Engine.install({ home, manifestUrl: server.url }), Engine.install({ home, manifestUrl: server.url })])
    expect([a.installed, b.installed].sort()).toEqual([false, true])
    expect(server.requests.filter((x) => x.url.startsWith('/dl/'))).toHaveLength(1)
    expect(leftovers(home)).toEqual([])
  })

  it('ORCHARD_HOME and ORCHARD_MANIFEST_URL choose the home and the server', async () => {
    server = await manifestServer([{ version: '9.9.9', archive: engineArchive() }])
    process.env.ORCHARD_HOME = home
    process.env.ORCHARD_MANIFEST_URL = server.url
    try {
      const r = await Engine.install()
      expect(r.path).toBe(path.join(home, 'bin', 'proxy_inference_engine'))
    } finally {
      delete process.env.ORCHARD_HOME
      delete process.env.ORCHARD_MANIFEST_URL
    }
  })
})

describe('Engine.start({ fetch })', () => {
  it('installs the engine when no binary is found, then launches it', async () => {
    const archive = engineArchive(readFileSync(emulatorBinary))
    server = await manifestServer([{ version: '0.0.1-emu', archive }])
    const cache = tempCacheRoot('fetch')
    roots.push(cache)
    const saved = { ...process.env }
    process.env.ORCHARD_CACHE_ROOT = cache
    process.env.HOME = home
    delete process.env.ORCHARD_ENGINE_BINARY
    delete process.env.PIE_LOCAL_BUILD
    process.env.ORCHARD_HOME = home
    process.env.ORCHARD_MANIFEST_URL = server.url
    try {
      await expect(Engine.start()).rejects.toThrow(/no engine binary found/)
      const engine = await Engine.start({ fetch: true })
      try {
        expect(engine.launched).toBe(true)
        const exe = require('node:fs').readlinkSync(`/proc/${engine.pid}/exe`) as string
        expect(exe.startsWith(home)).toBe(true)
      } finally {
        await engine.close()
      }
      // Installed now: a plain start finds it without fetching.
      const requests = server.requests.length
      const again = await Engine.start()
      await again.close()
      expect(server.requests.length).toBe(requests)
    } finally {
      await Engine.stop({ graceMs: 2_000 }).catch(() => null)
      process.env = saved
    }
  })
})
