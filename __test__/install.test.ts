// Engine binary fetch against a local manifest server: success, checksum mismatch,
// interrupted transfer, bad archives, 404, the install lock, and Engine.start({ install }).
import { execFileSync, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import * as tar from 'tar'
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest'

import { AbortError, ChecksumError, DownloadError, type DownloadProgress, Engine, TimeoutError } from '../src-ts'
import { runNodeProcess, sendBody, serve, sha256, type TarMember, type TestServer, tarGz } from './fetch-helpers'
import { distDir, emulatorBinary, processExecutable, tempCacheRoot } from './helpers'

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

/** A process that takes the lock file argv[2] (with the package's own lock) and holds it until its stdin closes. */
const HOLD_LOCK = `require(process.argv[1]).acquireLock(process.argv[2], { timeoutMs: 10000 }).then(() => { process.stdout.write('held\\n'); process.stdin.resume(); process.stdin.on('end', () => process.exit(0)) })`

interface Release {
  version: string
  archive: Buffer
  /** Default: the archive's digest; null leaves it out of the manifest. */
  sha256?: string | null
  cutOnce?: number
}

/** A manifest server with one archive per version. */
async function manifestServer(releases: Release[], latest = releases[0]!.version): Promise<TestServer> {
  const cut = new Map(releases.map((r) => [r.version, r.cutOnce]))
  return serve((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x')
    if (u.pathname === '/manifest') {
      const versions = Object.fromEntries(
        releases.map((r) => [
          r.version,
          { url: `/dl/${r.version}.tar.gz`, sha256: r.sha256 === null ? undefined : (r.sha256 ?? sha256(r.archive)) },
        ]),
      )
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
  return tarGz([
    { name: 'bin/', type: 'dir' },
    { name: 'bin/proxy_inference_engine', body, mode: 0o644 },
    { name: 'share/README', body: Buffer.from('hi') },
    ...extra,
  ])
}

/** Every path below `dir`. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).map((f) => path.join(dir, f))
}

/** What an install leaves behind besides the install (`install.lock` stays, as the reference's does: a flock file is free once its holder is gone). */
function leftovers(dir: string): string[] {
  return readdirSync(dir).filter((n) => n.startsWith('.download-') || n.includes('.staging-'))
}

describe('Engine.install', () => {
  it('downloads, verifies, installs atomically and reports progress; a second call is a no-op', async () => {
    const archive = engineArchive(Buffer.concat([fakeEngine, Buffer.alloc(200_000, 7)]))
    server = await manifestServer([{ version: '1.2.3', archive }])
    const progress: DownloadProgress[] = []
    const r = await Engine.install({
      home,
      manifestUrl: server.url,
      channel: 'beta',
      onProgress: (p) => progress.push(p),
    })
    expect(r).toMatchObject({
      version: '1.2.3',
      installed: true,
      path: path.join(home, 'bin', 'proxy_inference_engine'),
    })
    expect(statSync(r.path).mode & 0o777).toBe(0o755)
    expect(readFileSync(path.join(home, 'version.txt'), 'utf8').trim()).toBe('1.2.3')
    expect(readFileSync(path.join(home, 'share', 'README'), 'utf8')).toBe('hi')
    const q = new URL(server.requests[0]!.url, 'http://x').searchParams
    expect(q.get('channel')).toBe('beta')
    expect(q.get('v')).toBe('unknown')
    expect(q.get('os')).toBe(process.platform)
    expect(q.get('arch')).toBeTruthy()
    expect(progress.at(-1)).toEqual({ bytesDownloaded: archive.length, bytesTotal: archive.length })
    for (let i = 1; i < progress.length; i++)
      expect(progress[i]!.bytesDownloaded).toBeGreaterThanOrEqual(progress[i - 1]!.bytesDownloaded)
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
      [
        'symlink',
        engineArchive(fakeEngine, [{ name: 'bin/link', type: 'symlink', linkname: '../../x' }]),
        /outside the archive/,
      ],
      ['nobin', tarGz([{ name: 'lib/thing', body: Buffer.from('x') }]), /no bin\/proxy_inference_engine/],
      ['notgzip', Buffer.from('this is not an archive'), /bad engine archive/],
    ]
    for (const [version, archive, why] of cases) {
      server = await manifestServer([{ version, archive }])
      const err = await Engine.install({ home, manifestUrl: server.url }).catch((e: unknown) => e)
      expect(err, version).toBeInstanceOf(DownloadError)
      expect((err as Error).message, version).toMatch(why)
      expect(existsSync(path.join(home, 'bin')), version).toBe(false)
      expect(
        filesUnder(home).filter((f) => path.basename(f) === 'evil' || f.includes('.staging-')),
        version,
      ).toEqual([])
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

  it('installs in two processes at once serialise on install.lock; a lock file left behind does not block', async () => {
    server = await manifestServer([
      { version: '1.0.0', archive: engineArchive(Buffer.concat([fakeEngine, Buffer.alloc(400_000, 3)])) },
    ])
    // The file of a lock whose holder died (the older link(2) lock wrote one like this).
    writeFileSync(
      path.join(home, 'install.lock'),
      JSON.stringify({ pid: 2 ** 22 + 12345, host: require('node:os').hostname(), time: 0 }),
    )
    const script = `require(process.argv[1]).Engine.install({ home: process.argv[2], manifestUrl: process.argv[3] }).then((r) => console.log(JSON.stringify(r)), (e) => { console.error(e); process.exit(1) })`
    const outs = await Promise.all([
      runNodeProcess(script, [home, server.url]),
      runNodeProcess(script, [home, server.url]),
    ])
    const [a, b] = outs.map((o) => JSON.parse(o) as { installed: boolean; version: string })
    expect([a!.installed, b!.installed].sort()).toEqual([false, true])
    expect(server.requests.filter((x) => x.url.startsWith('/dl/'))).toHaveLength(1)
    expect(leftovers(home)).toEqual([])
  })

  it('two installs in one process serialise too (flock is per open file)', async () => {
    server = await manifestServer([{ version: '1.0.0', archive: engineArchive() }])
    const [a, b] = await Promise.all([
      Engine.install({ home, manifestUrl: server.url }),
      Engine.install({ home, manifestUrl: server.url }),
    ])
    expect([a.installed, b.installed].sort()).toEqual([false, true])
    expect(server.requests.filter((x) => x.url.startsWith('/dl/'))).toHaveLength(1)
  })

  it('a waiter for install.lock stops on its signal', async () => {
    server = await manifestServer([{ version: '1.0.0', archive: engineArchive() }])
    // Another process holds the lock until told to exit.
    const holder = spawn(
      process.execPath,
      ['-e', HOLD_LOCK, path.join(distDir, 'install', 'lock.js'), path.join(home, 'install.lock')],
      { stdio: ['pipe', 'pipe', 'inherit'] },
    )
    await new Promise<void>((resolve) => holder.stdout!.once('data', () => resolve()))
    try {
      const signal = AbortSignal.timeout(200)
      await expect(
        Engine.install({ home, manifestUrl: server.url, signal, lockTimeoutMs: 60_000 }),
      ).rejects.toBeInstanceOf(AbortError)
      const err = await Engine.install({ home, manifestUrl: server.url, lockTimeoutMs: 200 }).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(TimeoutError)
      expect(String((err as Error).message)).toContain('install.lock')
    } finally {
      holder.stdin!.end()
      await new Promise((r) => holder.once('exit', r))
    }
    // The holder is gone, so is its lock.
    expect((await Engine.install({ home, manifestUrl: server.url })).installed).toBe(true)
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

/** Every path below `dir` (links not followed) with its kind, mode, link count and content. */
function treeState(dir: string, skip: string[] = []): Record<string, string> {
  const out: Record<string, string> = {}
  const walk = (rel: string) => {
    for (const name of readdirSync(path.join(dir, rel))) {
      const r = path.join(rel, name)
      if (skip.includes(r)) continue
      const full = path.join(dir, r)
      const st = lstatSync(full)
      if (st.isSymbolicLink()) out[r] = `link -> ${readlinkSync(full)}`
      else if (st.isDirectory()) {
        out[r] = `dir ${(st.mode & 0o777).toString(8)}`
        walk(r)
      } else out[r] = `file ${(st.mode & 0o777).toString(8)} nlink=${st.nlink} ${readFileSync(full, 'utf8')}`
    }
  }
  walk('')
  return out
}

/** The members of a .tar.gz as node-tar reads them: `name type [-> linkpath]`. */
async function listArchive(archive: Buffer): Promise<string[]> {
  const dir = tempCacheRoot('list')
  roots.push(dir)
  const file = path.join(dir, 'a.tar.gz')
  writeFileSync(file, archive)
  const out: string[] = []
  await tar.t({ file, onReadEntry: (e) => out.push(`${e.path} ${e.type}${e.linkpath ? ` -> ${e.linkpath}` : ''}`) })
  return out
}

describe('Engine.install never writes or deletes outside its staging directory', () => {
  // <area>/home is ORCHARD_HOME; the rest of <area> must come through every refused install unchanged.
  let area = ''
  beforeEach(() => {
    area = tempCacheRoot('area')
    roots.push(area)
    home = path.join(area, 'home')
    mkdirSync(home)
    mkdirSync(path.join(area, 'X'))
    writeFileSync(path.join(area, 'X', 'keep.txt'), 'precious')
    mkdirSync(path.join(area, 'sibling'))
    writeFileSync(path.join(area, 'sibling', 'data.txt'), 'sibling data')
    writeFileSync(path.join(area, 'outside.txt'), 'outside')
  })

  const outsideHome = () => treeState(area, ['home'])

  /** Nothing installed in <home>, no staging or download left, no version (the lock file stays). */
  function nothingInstalled(): void {
    expect(readdirSync(home).filter((n) => n !== 'versions' && n !== 'install.lock')).toEqual([])
    if (existsSync(path.join(home, 'versions'))) expect(readdirSync(path.join(home, 'versions'))).toEqual([])
  }

  async function expectRefused(archive: Buffer, why: RegExp, opts: { sha256?: string | null } = {}): Promise<Error> {
    const before = outsideHome()
    expect(before['X/keep.txt']).toMatch(/^file \d+ nlink=1 precious$/)
    server = await manifestServer([{ version: '1.0.0', archive, sha256: opts.sha256 }])
    const err = await Engine.install({ home, manifestUrl: server.url }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(DownloadError)
    expect((err as Error).message).toMatch(why)
    expect((err as Error).message).toContain('nothing was installed')
    expect(outsideHome()).toEqual(before)
    expect(readFileSync(path.join(area, 'X', 'keep.txt'), 'utf8')).toBe('precious')
    expect(readFileSync(path.join(area, 'sibling', 'data.txt'), 'utf8')).toBe('sibling data')
    expect(statSync(path.join(area, 'outside.txt')).nlink).toBe(1)
    nothingInstalled()
    await server.close()
    server = undefined
    return err as Error
  }

  it('chained symlinks (l1 -> ., l2 -> l1/.., l3 -> l2/.., l4 -> l3/..) and a member l4/X: refused, nothing outside touched', async () => {
    // From <home>/versions/<staging>, l4 is <area>: l4/X is the sentinel directory <area>/X.
    const chain: TarMember[] = [
      { name: 'l1', type: 'symlink', linkname: '.' },
      { name: 'l2', type: 'symlink', linkname: 'l1/..' },
      { name: 'l3', type: 'symlink', linkname: 'l2/..' },
      { name: 'l4', type: 'symlink', linkname: 'l3/..' },
      { name: 'l4/X', body: Buffer.from('pwned') },
    ]
    const archive = engineArchive(fakeEngine, chain)
    expect(await listArchive(archive)).toEqual(
      expect.arrayContaining([
        'l1 SymbolicLink -> .',
        'l2 SymbolicLink -> l1/..',
        'l3 SymbolicLink -> l2/..',
        'l4 SymbolicLink -> l3/..',
        'l4/X File',
      ]),
    )
    const err = await expectRefused(archive, /symlink 'l2' -> 'l1\/\.\.' points outside the archive/)
    expect(err.message).toMatch(/^engine 1\.0\.0 from http:.*: bad engine archive: /)
    // The same chain in reverse order: each link is checked against the links that come later too.
    await expectRefused(
      engineArchive(fakeEngine, chain.slice(0, 4).reverse()),
      /symlink 'l\d' -> '.*' points outside the archive/,
    )
    // A member below a symlink is never written, even when the link stays inside.
    await expectRefused(
      engineArchive(fakeEngine, [
        { name: 'in', type: 'symlink', linkname: 'share' },
        { name: 'in/file', body: Buffer.from('x') },
      ]),
      /member 'in\/file' would be written through the symlink 'in'/,
    )
  })

  it('symlinks to absolute paths or out of the archive are refused', async () => {
    await expectRefused(
      engineArchive(fakeEngine, [{ name: 'bin/evil', type: 'symlink', linkname: path.join(area, 'outside.txt') }]),
      /symlink 'bin\/evil' points to an absolute path/,
    )
    await expectRefused(
      engineArchive(fakeEngine, [{ name: 'bin/up', type: 'symlink', linkname: '../../X' }]),
      /symlink 'bin\/up' -> '\.\.\/\.\.\/X' points outside the archive/,
    )
    // Two links that each look harmless but end outside together.
    await expectRefused(
      engineArchive(fakeEngine, [
        { name: 'share/a', type: 'symlink', linkname: '../b/..' },
        { name: 'b', type: 'symlink', linkname: 'share/..' },
      ]),
      /points outside the archive/,
    )
  })

  it('hard links out of the archive are refused and never created', async () => {
    const outside = path.join(area, 'outside.txt')
    await expectRefused(
      engineArchive(fakeEngine, [{ name: 'bin/hl', type: 'hardlink', linkname: outside }]),
      /hard link 'bin\/hl' to .* has an absolute path/,
    )
    await expectRefused(
      engineArchive(fakeEngine, [{ name: 'bin/hl', type: 'hardlink', linkname: '../../../outside.txt' }]),
      /escapes the archive root/,
    )
    await expectRefused(
      engineArchive(fakeEngine, [
        { name: 'up', type: 'symlink', linkname: 'bin' },
        { name: 'hl', type: 'hardlink', linkname: 'up/proxy_inference_engine' },
      ]),
      /hard link 'hl' -> 'up\/proxy_inference_engine' goes through the symlink 'up'/,
    )
    await expectRefused(
      engineArchive(fakeEngine, [{ name: 'hl', type: 'hardlink', linkname: 'nothing/here' }]),
      /does not name a regular file earlier in the archive/,
    )
  })

  it('../ and absolute members are refused; so are device files and fifos', async () => {
    await expectRefused(
      engineArchive(fakeEngine, [{ name: '../../../X/keep.txt', body: Buffer.from('overwritten') }]),
      /member '\.\.\/\.\.\/\.\.\/X\/keep\.txt' escapes the archive root/,
    )
    await expectRefused(
      engineArchive(fakeEngine, [{ name: 'share/../../x', body: Buffer.from('x') }]),
      /escapes the archive root/,
    )
    await expectRefused(
      engineArchive(fakeEngine, [{ name: path.join(area, 'X', 'keep.txt'), body: Buffer.from('overwritten') }]),
      /has an absolute path/,
    )
    await expectRefused(
      engineArchive(fakeEngine, [{ name: 'bin/fifo', type: 'fifo' }]),
      /member 'bin\/fifo' is a device file or fifo \(FIFO\)/,
    )
    await expectRefused(
      engineArchive(fakeEngine, [{ name: 'bin/tty', type: 'chardev' }]),
      /member 'bin\/tty' is a device file or fifo \(CharacterDevice\)/,
    )
  })

  it('a manifest entry without a sha256, or with a malformed one, is refused before downloading', async () => {
    for (const [sha, why] of [
      [null, /gives no sha256 for engine 1\.0\.0/],
      ['abc123', /gives an invalid sha256 "abc123"/],
      ['g'.repeat(64), /invalid sha256/],
    ] as const) {
      const err = await expectRefused(engineArchive(), why, { sha256: sha })
      expect(err).toBeInstanceOf(ChecksumError)
      expect((err as ChecksumError).code).toBe('CHECKSUM')
    }
    expect(existsSync(path.join(home, 'versions'))).toBe(false)
  })

  it('a top-level archive name that already exists in ORCHARD_HOME is left as it is', async () => {
    // A directory, a file and a foreign symlink of the user's, with the names of archive entries.
    mkdirSync(path.join(home, 'share'))
    writeFileSync(path.join(home, 'share', 'notes.txt'), 'mine')
    writeFileSync(path.join(home, 'lib'), 'also mine')
    symlinkSync(path.join(area, 'sibling'), path.join(home, 'doc'))
    const extra: TarMember[] = [
      { name: 'lib/libpie.so', body: Buffer.from('so') },
      { name: 'doc/manual.txt', body: Buffer.from('manual') },
      { name: 'extra/ok', body: Buffer.from('ok') },
    ]
    const before = treeState(area, ['home'])
    const userShare = treeState(path.join(home, 'share'))
    server = await manifestServer([
      { version: '2.0.0', archive: engineArchive(Buffer.from('#!/bin/sh\necho two\n'), extra) },
      { version: '1.0.0', archive: engineArchive(fakeEngine, extra) },
    ])
    await Engine.install({ home, manifestUrl: server.url, version: '1.0.0' })
    const r = await Engine.install({ home, manifestUrl: server.url })
    expect(r).toMatchObject({ version: '2.0.0', installed: true })
    expect(treeState(area, ['home'])).toEqual(before)
    expect(treeState(path.join(home, 'share'))).toEqual(userShare)
    expect(Object.keys(userShare)).toEqual(['notes.txt'])
    expect(readFileSync(path.join(home, 'lib'), 'utf8')).toBe('also mine')
    expect(readlinkSync(path.join(home, 'doc'))).toBe(path.join(area, 'sibling'))
    // What the archive has is in the version directory; free names are linked as before.
    expect(readFileSync(path.join(home, 'versions', '2.0.0', 'share', 'README'), 'utf8')).toBe('hi')
    expect(readlinkSync(path.join(home, 'extra'))).toBe(path.join('versions', '2.0.0', 'extra'))
    expect(execFileSync(r.path, { encoding: 'utf8' })).toBe('two\n')
    expect(readdirSync(path.join(home, 'versions'))).toEqual(['2.0.0'])
  })

  it("a <home>/bin that is not the installer's link stops the install and is kept", async () => {
    mkdirSync(path.join(home, 'bin'))
    writeFileSync(path.join(home, 'bin', 'tool'), 'my tool')
    const userBin = treeState(path.join(home, 'bin'))
    server = await manifestServer([{ version: '1.0.0', archive: engineArchive() }])
    const err = await Engine.install({ home, manifestUrl: server.url }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(DownloadError)
    expect((err as Error).message).toMatch(
      /bin exists and is not a link the engine installer made; .*nothing was installed/,
    )
    expect(treeState(path.join(home, 'bin'))).toEqual(userBin)
    expect(readFileSync(path.join(home, 'bin', 'tool'), 'utf8')).toBe('my tool')
    expect(existsSync(path.join(home, 'version.txt'))).toBe(false)
    expect(readdirSync(path.join(home, 'versions'))).toEqual([])
  })

  it('an archive made by node-tar with relative symlinks inside installs and runs; so does one with an inside hard link', async () => {
    const src = path.join(tempCacheRoot('src'), 'engine')
    roots.push(path.dirname(src))
    mkdirSync(path.join(src, 'bin'), { recursive: true })
    mkdirSync(path.join(src, 'libexec'))
    writeFileSync(path.join(src, 'bin', 'proxy_inference_engine'), fakeEngine)
    writeFileSync(path.join(src, 'libexec', 'pie'), '#!/bin/sh\necho pie\n')
    chmodSync(path.join(src, 'bin', 'proxy_inference_engine'), 0o755)
    chmodSync(path.join(src, 'libexec', 'pie'), 0o755)
    symlinkSync('../libexec/pie', path.join(src, 'bin', 'pie'))
    symlinkSync('libexec', path.join(src, 'lib'))
    // (No hard links here: node-tar's packer mishandles them, isaacs/node-tar#448/#460.)
    const file = path.join(path.dirname(src), 'engine.tar.gz')
    await tar.c({ gzip: true, cwd: src, file, portable: true }, ['bin', 'libexec', 'lib'])
    const archive = readFileSync(file)
    expect(await listArchive(archive)).toEqual(
      expect.arrayContaining(['bin/pie SymbolicLink -> ../libexec/pie', 'lib SymbolicLink -> libexec']),
    )
    const before = outsideHome()
    server = await manifestServer([{ version: '3.1.4', archive }])
    const r = await Engine.install({ home, manifestUrl: server.url })
    expect(r).toMatchObject({ version: '3.1.4', installed: true })
    expect(execFileSync(r.path, { encoding: 'utf8' })).toBe('engine\n')
    expect(execFileSync(path.join(home, 'bin', 'pie'), { encoding: 'utf8' })).toBe('pie\n')
    expect(execFileSync(path.join(home, 'lib', 'pie'), { encoding: 'utf8' })).toBe('pie\n')
    const v = path.join(home, 'versions', '3.1.4')
    expect(readlinkSync(path.join(v, 'bin', 'pie'))).toBe('../libexec/pie')
    expect(lstatSync(path.join(v, 'lib')).isSymbolicLink()).toBe(true)
    expect(statSync(v).mode & 0o777).toBe(0o755)
    expect(outsideHome()).toEqual(before)
    expect(leftovers(home)).toEqual([])
    await server.close()

    // A hard link to an earlier file of the archive is kept as a hard link.
    const linked = engineArchive(fakeEngine, [
      { name: 'libexec/pie', body: Buffer.from('#!/bin/sh\necho pie\n'), mode: 0o755 },
      { name: 'libexec/pie-again', type: 'hardlink', linkname: 'libexec/pie' },
    ])
    expect(await listArchive(linked)).toContain('libexec/pie-again Link -> libexec/pie')
    server = await manifestServer([{ version: '3.1.5', archive: linked }])
    await Engine.install({ home, manifestUrl: server.url })
    const v2 = path.join(home, 'versions', '3.1.5')
    expect(statSync(path.join(v2, 'libexec', 'pie-again')).nlink).toBe(2)
    expect(execFileSync(path.join(home, 'libexec', 'pie-again'), { encoding: 'utf8' })).toBe('pie\n')
    // Links of the old version that the new one lacks are gone; the old version too.
    expect(existsSync(path.join(home, 'lib'))).toBe(false)
    expect(readdirSync(path.join(home, 'versions'))).toEqual(['3.1.5'])
    expect(outsideHome()).toEqual(before)
  })
})

describe('Engine.start({ install })', () => {
  it('installs the engine when no binary is found, then launches it', async () => {
    const archive = engineArchive(readFileSync(emulatorBinary))
    server = await manifestServer([{ version: '0.0.1-emu', archive }])
    const cache = tempCacheRoot('install')
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
      expect(() => Engine.findBinary()).toThrow(/no engine binary found/)
      const engine = await Engine.start({ install: true })
      try {
        expect(engine.launched).toBe(true)
        expect(processExecutable(engine.pid).startsWith(realpathSync(home))).toBe(true)
      } finally {
        await engine.close()
      }
      // Installed now: a plain start finds it without installing, where the core looks.
      expect(Engine.findBinary()).toBe(path.join(home, 'bin', 'proxy_inference_engine'))
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
