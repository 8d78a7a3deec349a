// Integration: engine discovery errors and engine death, each with a private cache root.
import { rmSync } from 'node:fs'
import path from 'node:path'

import { afterAll, afterEach, describe, expect, it } from 'vitest'

import { Engine, EngineDiedError, EngineNotFoundError } from '../src-ts'
import { emulatorBinary, makeModelDir, tempCacheRoot } from './helpers'

const roots: string[] = []
function freshRoot(tag: string): string {
  const r = tempCacheRoot(tag)
  roots.push(r)
  process.env.ORCHARD_CACHE_ROOT = r
  process.env.ORCHARD_ENGINE_BINARY = emulatorBinary
  process.env.PIE_EMULATOR_TOKEN_DELAY_MS = '5'
  return r
}

afterEach(async () => {
  await Engine.stop({ graceMs: 2_000 }).catch(() => null)
})

afterAll(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true })
})

describe('engine discovery', () => {
  it('a missing binary names the paths tried and the fix', async () => {
    freshRoot('nobin')
    const missing = path.join(roots.at(-1)!, 'bin', 'proxy_inference_engine')
    const err = await Engine.start({ binary: missing }).then(
      () => null,
      (e: unknown) => e,
    )
    expect(err).toBeInstanceOf(EngineNotFoundError)
    expect((err as Error).message).toContain(missing)
    expect((err as Error).message).toContain('ORCHARD_ENGINE_BINARY')
  })

  it('a stale engine.pid naming another live process is ignored, not signalled', async () => {
    const root = freshRoot('stale')
    const { writeFileSync } = await import('node:fs')
    // Our own pid: alive, but not the engine binary.
    writeFileSync(path.join(root, 'engine.pid'), `${process.pid}\n`)
    const engine = await Engine.start()
    try {
      expect(engine.launched).toBe(true)
      expect(engine.pid).not.toBe(process.pid)
    } finally {
      await engine.close()
    }
  })
})

describe('engine death', () => {
  it('kill -9 mid-stream rejects the stream with EngineDiedError, and a new start relaunches', async () => {
    const root = freshRoot('death')
    const model = makeModelDir(root)
    const engine = await Engine.start()
    await engine.loadModel(model)
    const stream = engine.client().chat(model, [{ role: 'user', content: 'Talk about orchards for a long time.' }], {
      maxTokens: 100_000,
      stop: ['<never>'],
    })
    let received = 0
    const consume = (async () => {
      for await (const d of stream) {
        received++
        if (received === 3) process.kill(engine.pid, 'SIGKILL')
        void d
      }
    })()
    await expect(consume).rejects.toBeInstanceOf(EngineDiedError)
    await expect(stream.finalResult()).rejects.toBeInstanceOf(EngineDiedError)
    // New requests fail fast and say how to recover.
    await expect(engine.client().chat(model, [{ role: 'user', content: 'hi' }])).rejects.toThrow(/Engine\.start/)
    await engine.close()

    const again = await Engine.start()
    try {
      expect(again.launched).toBe(true)
      expect(again.pid).not.toBe(engine.pid)
    } finally {
      await again.close()
    }
  })
})
