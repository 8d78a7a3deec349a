// Model resolution and Hub downloads against a local fake Hub, written into a private
// Hugging Face cache in the huggingface_hub layout; then loads through the emulator.
import {
  existsSync,
  lstatSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs'
import path from 'node:path'

import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest'

import {
  AbortError,
  AuthenticationError,
  ChecksumError,
  DownloadError,
  type DownloadProgress,
  Engine,
  InvalidRequestError,
  ModelNotFoundError,
  ModelNotLoadedError,
  models,
} from '../src-ts'
import { type FakeHub, fakeHub, gitSha1, type HubRepo, runNodeProcess, sha256, tinyRepo } from './fetch-helpers'
import { emulatorBinary, makeModelDir, tempCacheRoot } from './helpers'

const roots: string[] = []
let hub: FakeHub
let cacheDir = ''
const repo = tinyRepo()
const folder = () => path.join(cacheDir, 'models--Orchard-Test--Tiny-Llama')
const downloads = (file: string) => hub.requests.filter((r) => r.method === 'GET' && r.url.endsWith(`/${file}`))

beforeEach(async () => {
  const root = tempCacheRoot('hf')
  roots.push(root)
  cacheDir = path.join(root, 'hub')
  hub = await fakeHub([repo])
  process.env.HF_ENDPOINT = hub.url
  process.env.HF_HUB_CACHE = cacheDir
  delete process.env.HF_TOKEN
  delete process.env.HF_HUB_OFFLINE
})
afterEach(async () => {
  await hub.close()
})
afterAll(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true })
})

describe('models.pull', () => {
  it('writes the huggingface_hub cache layout, only the files a model needs, with progress', async () => {
    const progress: DownloadProgress[] = []
    const r = await models.pull('Orchard-Test/Tiny-Llama', { onProgress: (p) => progress.push(p) })
    expect(r).toMatchObject({ canonicalId: 'Orchard-Test/Tiny-Llama', source: 'hub', commit: repo.sha })
    expect(r.path).toBe(path.join(folder(), 'snapshots', repo.sha))
    expect(readFileSync(path.join(folder(), 'refs', 'main'), 'utf8')).toBe(repo.sha)
    // Small files under their git blob id, LFS files under their sha256, snapshots symlinked.
    const cfg = path.join(r.path, 'config.json')
    expect(lstatSync(cfg).isSymbolicLink()).toBe(true)
    expect(readlinkSync(cfg)).toBe(`../../blobs/${gitSha1(repo.files['config.json']!.body)}`)
    const shard = 'model-00001-of-00002.safetensors'
    expect(readlinkSync(path.join(r.path, shard))).toBe(`../../blobs/${sha256(repo.files[shard]!.body)}`)
    expect(readFileSync(path.join(r.path, shard)).equals(repo.files[shard]!.body)).toBe(true)
    expect(readdirSync(r.path).sort()).toEqual(
      [
        'config.json',
        'generation_config.json',
        'model-00001-of-00002.safetensors',
        'model-00002-of-00002.safetensors',
        'model.safetensors.index.json',
        'tokenizer.json',
        'tokenizer_config.json',
      ].sort(),
    )
    for (const skipped of ['pytorch_model.bin', 'model.gguf', 'model.onnx', 'README.md'])
      expect(downloads(skipped)).toHaveLength(0)
    expect(readdirSync(path.join(folder(), 'blobs')).filter((b) => b.endsWith('.incomplete'))).toEqual([])
    const total = Object.entries(repo.files)
      .filter(([f]) => readdirSync(r.path).includes(f))
      .reduce((n, [, f]) => n + f.body.length, 0)
    expect(progress.at(-1)).toMatchObject({ bytesDownloaded: total, bytesTotal: total })

    // Resolution now comes from the cache, with the Hub unreachable.
    await hub.close()
    const cached = await models.resolve('orchard-test/tiny-llama', { endpoint: 'http://127.0.0.1:9' })
    expect(cached).toMatchObject({
      source: 'cache',
      path: r.path,
      canonicalId: 'Orchard-Test/Tiny-Llama',
      requestedId: 'orchard-test/tiny-llama',
    })
    expect((await models.list()).map((m) => m.id)).toEqual(['Orchard-Test/Tiny-Llama'])
    expect(await models.remove('ORCHARD-TEST/tiny-llama')).toBe(true)
    expect(existsSync(folder())).toBe(false)
    expect(await models.remove('Orchard-Test/Tiny-Llama')).toBe(false)
  })

  it('coalesces concurrent requests for one model, in any casing', async () => {
    const [a, b, c] = await Promise.all([
      models.pull('Orchard-Test/Tiny-Llama'),
      models.pull('orchard-test/tiny-llama'),
      models.resolve('ORCHARD-TEST/TINY-LLAMA'),
    ])
    expect(a.path).toBe(b.path)
    expect(c.path).toBe(a.path)
    expect(downloads('model-00001-of-00002.safetensors')).toHaveLength(1)
    expect(hub.requests.filter((r) => r.url.startsWith('/api/'))).toHaveLength(1)
  })

  it('two processes pulling one model fetch each file once (the blob lock, a flock huggingface_hub shares)', async () => {
    hub.chunkDelayMs = 2
    const script = `require(process.argv[1]).models.pull(process.argv[2]).then((r) => console.log(JSON.stringify(r)), (e) => { console.error(e); process.exit(1) })`
    const outs = await Promise.all([
      runNodeProcess(script, ['Orchard-Test/Tiny-Llama']),
      runNodeProcess(script, ['orchard-test/tiny-llama']),
    ])
    const [a, b] = outs.map((o) => JSON.parse(o) as { path: string })
    expect(a!.path).toBe(path.join(folder(), 'snapshots', repo.sha))
    expect(b!.path).toBe(a!.path)
    for (const file of ['config.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'])
      expect(downloads(file)).toHaveLength(1)
    const shard = 'model-00001-of-00002.safetensors'
    expect(readFileSync(path.join(a!.path, shard)).equals(repo.files[shard]!.body)).toBe(true)
    expect(
      existsSync(
        path.join(cacheDir, '.locks', 'models--Orchard-Test--Tiny-Llama', `${sha256(repo.files[shard]!.body)}.lock`),
      ),
    ).toBe(true)
  })

  it('resumes an interrupted transfer with a Range request', async () => {
    const shard = 'model-00001-of-00002.safetensors'
    hub.cut.set(shard, { bytes: 100_000, times: 1 })
    const err = await models.pull('Orchard-Test/Tiny-Llama', { retries: 0 }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(DownloadError)
    const etag = sha256(repo.files[shard]!.body)
    const partial = path.join(folder(), 'blobs', `${etag}.incomplete`)
    expect(statSync(partial).size).toBe(100_000)
    expect(existsSync(path.join(folder(), 'snapshots', repo.sha, shard))).toBe(false)

    const r = await models.pull('Orchard-Test/Tiny-Llama', { retries: 0 })
    const gets = downloads(shard)
    expect(gets).toHaveLength(2)
    expect(gets[1]!.headers.range).toBe('bytes=100000-')
    expect(readFileSync(path.join(r.path, shard)).equals(repo.files[shard]!.body)).toBe(true)
    expect(existsSync(partial)).toBe(false)
    // Files finished before the cut were not fetched again.
    expect(downloads('config.json')).toHaveLength(1)
  })

  it('retries and resumes by itself', async () => {
    hub.cut.set('model-00002-of-00002.safetensors', { bytes: 40_000, times: 2 })
    const r = await models.pull('Orchard-Test/Tiny-Llama')
    expect(r.source).toBe('hub')
    expect(downloads('model-00002-of-00002.safetensors').map((g) => g.headers.range)).toEqual([
      undefined,
      'bytes=40000-',
      'bytes=80000-',
    ])
  })

  it('a checksum mismatch keeps nothing', async () => {
    hub.corrupt.add('model-00002-of-00002.safetensors')
    const err = await models.pull('Orchard-Test/Tiny-Llama').catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ChecksumError)
    expect((err as ChecksumError).code).toBe('CHECKSUM')
    const blobs = readdirSync(path.join(folder(), 'blobs'))
    expect(blobs.filter((b) => b.includes(sha256(repo.files['model-00002-of-00002.safetensors']!.body)))).toEqual([])
    // Not resolvable from the cache: the index names a missing shard.
    await expect(models.resolve('Orchard-Test/Tiny-Llama', { offline: true })).rejects.toBeInstanceOf(
      ModelNotFoundError,
    )
  })

  it('404 names the id; 401 without a token says to set HF_TOKEN; the token is sent as Bearer', async () => {
    const nf = await models.pull('Orchard-Test/No-Such-Model').catch((e: unknown) => e)
    expect(nf).toBeInstanceOf(ModelNotFoundError)
    expect((nf as Error).message).toContain("'Orchard-Test/No-Such-Model'")

    hub.token = 'hf_secret'
    const denied = await models.pull('Orchard-Test/Tiny-Llama').catch((e: unknown) => e)
    expect(denied).toBeInstanceOf(AuthenticationError)
    expect((denied as AuthenticationError).code).toBe('AUTH')
    expect((denied as Error).message).toContain('HF_TOKEN')

    const wrong = await models.pull('Orchard-Test/Tiny-Llama', { token: 'hf_wrong' }).catch((e: unknown) => e)
    expect(wrong).toBeInstanceOf(AuthenticationError)
    expect((wrong as Error).message).toMatch(/HF_TOKEN is valid/)

    process.env.HF_TOKEN = 'hf_secret'
    const ok = await models.pull('Orchard-Test/Tiny-Llama')
    expect(ok.source).toBe('hub')
    expect(hub.requests.at(-1)!.headers.authorization).toBe('Bearer hf_secret')
  })

  it('offline mode uses the cache only', async () => {
    process.env.HF_HUB_OFFLINE = '1'
    await expect(models.resolve('Orchard-Test/Tiny-Llama')).rejects.toThrow(/HF_HUB_OFFLINE/)
    expect(hub.requests).toHaveLength(0)
  })
})

describe('values from the Hub are checked before they become cache paths', () => {
  const shard = 'model-00001-of-00002.safetensors'
  /** Pull from a hub whose model info was rewritten by `patch`; the error, with nothing written under the cache's parent. */
  async function refused(patch: HubRepo['patchInfo'], options: { revision?: string } = {}): Promise<DownloadError> {
    const root = path.dirname(cacheDir)
    expect(readdirSync(root)).toEqual([])
    const evil = await fakeHub([{ ...tinyRepo(), patchInfo: patch }])
    try {
      const err = await models
        .pull('Orchard-Test/Tiny-Llama', { endpoint: evil.url, ...options })
        .catch((e: unknown) => e)
      expect(err).toBeInstanceOf(DownloadError)
      expect(err).not.toBeInstanceOf(ChecksumError)
      // Nothing at all was created: no repo folder, no blobs, no snapshot, no lock, nothing beside the cache.
      expect(readdirSync(root, { recursive: true })).toEqual([])
      expect(evil.requests.filter((r) => r.url.includes('/resolve/'))).toEqual([])
      return err as DownloadError
    } finally {
      await evil.close()
    }
  }

  it('a commit sha that is not 40 hex (../../x) is refused', async () => {
    for (const sha of ['../../x', '../../../x', 'ABCDEF'.repeat(7).slice(0, 40), '']) {
      const err = await refused((info) => {
        info.sha = sha
      })
      expect(err.message).toContain(`invalid sha (expected a 40-hex commit) ${JSON.stringify(sha)}`)
    }
  })

  it('LFS hashes and blob ids that are not hex of the right length are refused', async () => {
    const lfs = (value: Record<string, unknown>) => (info: Parameters<NonNullable<HubRepo['patchInfo']>>[0]) => {
      const s = info.siblings.find((x) => x.rfilename === shard)!
      s.lfs = { ...(s.lfs as object), ...value }
    }
    let err = await refused(lfs({ sha256: '../../../evil' }))
    expect(err.message).toContain(`invalid lfs.sha256 of "${shard}" (expected 64 hex) "../../../evil"`)
    err = await refused(lfs({ sha256: 'ab'.repeat(31) }))
    expect(err.message).toContain('lfs.sha256')
    err = await refused(lfs({ sha256: undefined, oid: 'sha256:../../evil' }))
    expect(err.message).toContain('invalid lfs.oid')
    err = await refused((info) => {
      info.siblings.find((x) => x.rfilename === 'config.json')!.blobId = '../../blobs/x'
    })
    expect(err.message).toContain('invalid blobId of "config.json" (expected 40 hex) "../../blobs/x"')
  })

  it('file names with .., absolute paths, backslashes or NUL are refused', async () => {
    for (const rfilename of ['../evil', 'config.json/../../evil', '/etc/evil', 'a\\..\\evil', 'evil\u0000.json', '.']) {
      const err = await refused((info) => {
        info.siblings.push({ rfilename, size: 4, blobId: gitSha1(Buffer.from('evil')) })
      })
      expect(err.message).toContain(
        `invalid rfilename (expected a relative path without ..) ${JSON.stringify(rfilename)}`,
      )
    }
  })

  it('a revision that is not a safe ref name is refused; refs/pr/N still works', async () => {
    for (const revision of ['../../x', '/main', 'a/../b', 'main\u0000', 'a\\b', '.hidden', 'x.lock']) {
      const err = await refused(undefined, { revision })
      expect(err.message).toContain(`revision ${JSON.stringify(revision)} is not a valid branch, tag or commit name`)
    }
    const r = await models.pull('Orchard-Test/Tiny-Llama', { revision: 'refs/pr/1' })
    expect(r.commit).toBe(repo.sha)
    expect(readFileSync(path.join(folder(), 'refs', 'refs', 'pr', '1'), 'utf8')).toBe(repo.sha)
    expect((await models.resolve('Orchard-Test/Tiny-Llama', { revision: 'refs/pr/1', offline: true })).path).toBe(
      r.path,
    )
  })
})

describe('engine.loadModel with Hub ids', () => {
  let engine: Engine
  beforeEach(async () => {
    const root = tempCacheRoot('mdl')
    roots.push(root)
    process.env.ORCHARD_CACHE_ROOT = root
    process.env.ORCHARD_ENGINE_BINARY = emulatorBinary
    process.env.PIE_EMULATOR_TOKEN_DELAY_MS = '1'
    engine = await Engine.start()
  })
  afterEach(async () => {
    await engine.close()
    await Engine.stop({ graceMs: 2_000 }).catch(() => null)
  })

  it('downloads, activates, and answers chats under any casing of the id', async () => {
    const states = new Set<string>()
    const load = engine.loadModel('Orchard-Test/Tiny-Llama', {
      onProgress: () => states.add(engine.modelStatus('orchard-test/tiny-llama').state),
    })
    const info = await load
    expect(states.has('downloading')).toBe(true)
    expect(info).toMatchObject({
      requestedId: 'Orchard-Test/Tiny-Llama',
      canonicalId: 'Orchard-Test/Tiny-Llama',
      family: expect.any(String),
    })
    expect(info.modelPath).toBe(path.join(folder(), 'snapshots', repo.sha))
    const st = engine.modelStatus('ORCHARD-TEST/TINY-LLAMA')
    expect(st.state).toBe('ready')
    expect(st.progress.bytesDownloaded).toBe(st.progress.bytesTotal)
    const { text } = await engine
      .client()
      .chat('orchard-test/tiny-llama', [{ role: 'user', content: 'Hi' }], { maxTokens: 5 })
    expect(text.length).toBeGreaterThan(0)
    // A second load (other casing) is instant and downloads nothing.
    const before = hub.requests.length
    const again = await engine.loadModel('orchard-test/TINY-llama')
    expect(hub.requests.length).toBe(before)
    // The core reports the id this call asked for, and the path the session loaded from.
    expect(again).toEqual({ ...info, requestedId: 'orchard-test/TINY-llama' })
    // Local directories still work as before.
    const local = makeModelDir(roots.at(-1)!)
    expect((await engine.loadModel(local)).canonicalId).toBe(path.basename(local))
    expect(engine.modelStatus(local).state).toBe('ready')
  })

  it('managementCommand leaves the type check to the core: a missing or empty type rejects, typed', async () => {
    for (const bad of [{ type: '' }, { type: 3 }, {}, null]) {
      const p = engine.managementCommand(bad as never)
      await expect(p).rejects.toBeInstanceOf(InvalidRequestError)
      await expect(p).rejects.toThrow(/^command\.type: /)
    }
    expect((await engine.managementCommand({ type: 'ping' })).status).toBe('ok')
  })

  interface Listed {
    canonical_id: string
    requested_id: string
    requested_ids: string[]
    model_path: string
    load_state: string
  }
  const listed = async () =>
    ((await engine.managementCommand({ type: 'list_models' })).data!.list_models as { models: Listed[] }).models
  /** A load_model exactly as orchard-py sends it. */
  const referenceLoad = (requested: string, canonical: string, modelPath: string) =>
    engine.managementCommand({
      type: 'load_model',
      requested_id: requested,
      canonical_id: canonical,
      model_path: modelPath,
      wait_for_completion: false,
    })

  it('loads under the ids the reference client sends, so its loads of the same models find them loaded', async () => {
    const root = roots.at(-1)!
    const snapshot = path.join(folder(), 'snapshots', repo.sha)
    const local = makeModelDir(root, 'my-llama')
    const named = makeModelDir(root, 'named', { model_type: 'llama', _name_or_path: 'Org/Named-Llama' })
    await engine.loadModel('orchard-test/tiny-llama')
    expect((await engine.loadModel(local)).canonicalId).toBe('my-llama')
    expect((await engine.loadModel(named)).canonicalId).toBe('Org/Named-Llama')
    const models = await listed()
    expect(models.map((m) => m.canonical_id).sort()).toEqual(['Orchard-Test/Tiny-Llama', 'Org/Named-Llama', 'my-llama'])
    expect(models.find((m) => m.canonical_id === 'Orchard-Test/Tiny-Llama')).toMatchObject({
      requested_id: 'orchard-test/tiny-llama',
      model_path: realpathSync(snapshot),
    })
    expect(models.find((m) => m.canonical_id === 'my-llama')).toMatchObject({
      requested_id: local,
      model_path: realpathSync(local),
    })
    // What the reference client sends for them is answered at once: loaded already.
    for (const [requested, canonical, at] of [
      ['Orchard-Test/Tiny-Llama', 'Orchard-Test/Tiny-Llama', snapshot],
      [local, 'my-llama', local],
      [named, 'Org/Named-Llama', named],
    ] as const) {
      expect((await referenceLoad(requested, canonical, at)).status, canonical).toBe('ok')
    }
    // Requests may name a model by any id it was loaded under.
    for (const id of ['my-llama', local, 'Org/Named-Llama', 'ORCHARD-TEST/tiny-llama']) {
      const { usage } = await engine.client().chat(id, [{ role: 'user', content: 'Hi' }], { maxTokens: 2 })
      expect(usage.completionTokens, id).toBe(2)
    }
  })

  it('a model another client loaded first, under other ids from the same path, is one model (aliased, listed once)', async () => {
    const root = roots.at(-1)!
    const dir = makeModelDir(root, 'shared-llama')
    // Another client loads it under the full path as its canonical id (what orchard-ts sent before).
    expect((await referenceLoad(dir, dir, dir)).status).toBe('accepted')
    await expect.poll(async () => (await listed()).find((m) => m.canonical_id === dir)?.load_state).toBe('ready')
    const info = await engine.loadModel(dir)
    expect(info.canonicalId).toBe('shared-llama')
    const models = await listed()
    expect(models).toHaveLength(1)
    expect(models[0]!.requested_ids).toEqual(expect.arrayContaining([dir, 'shared-llama']))
    const { usage } = await engine.client().chat('shared-llama', [{ role: 'user', content: 'Hi' }], { maxTokens: 2 })
    expect(usage.completionTokens).toBe(2)
  })

  it('a failed activation reads failed with the typed error the session kept; concurrent loads share it', async () => {
    const file = path.join(roots.at(-1)!, 'notes.txt')
    writeFileSync(file, 'not a model')
    const [a, b] = await Promise.allSettled([engine.loadModel(file), engine.loadModel(file)])
    for (const r of [a, b]) expect(r.status === 'rejected' && r.reason).toBeInstanceOf(ModelNotLoadedError)
    const st = engine.modelStatus(file)
    expect(st.state).toBe('failed')
    expect(st.error).toBeInstanceOf(ModelNotLoadedError)
    expect(engine.cancelLoad(file)).toBe(false)
    // After a failure the next load starts afresh.
    await expect(engine.loadModel(file)).rejects.toBeInstanceOf(ModelNotLoadedError)
  })

  it('cancelLoad stops a download; the state is failed; the next load retries and resumes', async () => {
    hub.chunkDelayMs = 30
    const load = engine.loadModel('Orchard-Test/Tiny-Llama', {
      onProgress: (p) => {
        if (p.bytesDownloaded > 50_000) engine.cancelLoad('orchard-test/tiny-llama')
      },
    })
    await expect(load).rejects.toBeInstanceOf(AbortError)
    const st = engine.modelStatus('Orchard-Test/Tiny-Llama')
    expect(st.state).toBe('failed')
    expect(st.error).toBeInstanceOf(AbortError)
    expect(engine.cancelLoad('Orchard-Test/Tiny-Llama')).toBe(false)

    hub.chunkDelayMs = 0
    const info = await engine.loadModel('Orchard-Test/Tiny-Llama')
    expect(engine.modelStatus('Orchard-Test/Tiny-Llama').state).toBe('ready')
    expect(info.canonicalId).toBe('Orchard-Test/Tiny-Llama')
    expect(hub.requests.some((r) => r.headers.range !== undefined)).toBe(true)
  })

  it('cancelLoad stops the load only: a pull sharing its download goes on and completes', async () => {
    hub.chunkDelayMs = 30
    const pull = models.pull('Orchard-Test/Tiny-Llama')
    let cancelled = false
    const load = engine.loadModel('Orchard-Test/Tiny-Llama', {
      onProgress: (p) => {
        if (!cancelled && p.bytesDownloaded > 50_000) cancelled = engine.cancelLoad('orchard-test/tiny-llama')
      },
    })
    await expect(load).rejects.toBeInstanceOf(AbortError)
    expect(cancelled).toBe(true)
    expect(engine.modelStatus('Orchard-Test/Tiny-Llama').state).toBe('failed')
    hub.chunkDelayMs = 0
    const r = await pull
    expect(r.path).toBe(path.join(folder(), 'snapshots', repo.sha))
    // One download, never restarted: no file was fetched twice or resumed.
    const shard = 'model-00001-of-00002.safetensors'
    expect(downloads(shard)).toHaveLength(1)
    expect(hub.requests.some((q) => q.headers.range !== undefined)).toBe(false)
    // The next load finds the files in the cache.
    expect((await engine.loadModel('Orchard-Test/Tiny-Llama')).canonicalId).toBe('Orchard-Test/Tiny-Llama')
    expect(downloads(shard)).toHaveLength(1)
  })

  it('a failed load reports failed with the typed error; idle before any load', async () => {
    expect(engine.modelStatus('Orchard-Test/Other').state).toBe('idle')
    await expect(engine.loadModel('Orchard-Test/Other')).rejects.toBeInstanceOf(ModelNotFoundError)
    const st = engine.modelStatus('orchard-test/other')
    expect(st.state).toBe('failed')
    expect(st.error).toBeInstanceOf(ModelNotFoundError)
  })
})
