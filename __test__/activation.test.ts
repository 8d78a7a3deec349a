// Model activation against an emulator that takes its time to load: cancelLoad reaches the
// engine, a later load starts afresh, and sources without config.json are inspected by the engine.

import { writeFileSync } from 'node:fs'
import path from 'node:path'

import { describe, expect, it } from 'vitest'

import type { Engine } from '../src-ts'
import { AbortError, ModelNotFoundError, ModelNotLoadedError } from '../src-ts'
import { makeModelDir, useEmulator } from './helpers'

let engine: Engine
let cacheRoot: string

useEmulator('activation', { env: { PIE_EMULATOR_LOAD_DELAY_MS: '1500' } }, (e) => {
  engine = e.engine
  cacheRoot = e.cacheRoot
})

interface EngineModel {
  canonical_id: string
  load_state: string
}

async function engineModels(): Promise<EngineModel[]> {
  const reply = await engine.managementCommand({ type: 'list_models' })
  expect(reply.status).toBe('ok')
  return (reply.data!.list_models as { models: EngineModel[] }).models
}

describe('cancelLoad during activation', () => {
  it('rejects the load, cancels it in the engine, and the next load succeeds', async () => {
    const dir = makeModelDir(cacheRoot, 'slow-model')
    // The engine knows a local directory by its name (what the reference client sends).
    const canonical = path.basename(dir)
    const load = engine.loadModel(dir)
    await expect.poll(() => engine.modelStatus(dir).state).toBe('activating')
    // The engine is loading it now.
    await expect
      .poll(async () => (await engineModels()).find((m) => m.canonical_id === canonical)?.load_state)
      .toBe('loading')

    expect(engine.cancelLoad(dir)).toBe(true)
    await expect(load).rejects.toBeInstanceOf(AbortError)
    expect(engine.modelStatus(dir).state).toBe('failed')
    // The engine dropped the load instead of finishing it.
    await expect.poll(async () => (await engineModels()).some((m) => m.canonical_id === canonical)).toBe(false)
    // The emulator runs its timers in due order, so once a load accepted after the cancel is
    // ready, the cancelled load's timer has fired too: it must not have brought the model back.
    await engine.loadModel(makeModelDir(cacheRoot, 'later-model'))
    expect((await engineModels()).some((m) => m.canonical_id === canonical)).toBe(false)

    const info = await engine.loadModel(dir)
    expect(info.modelPath).toBeTruthy()
    expect(engine.modelStatus(dir).state).toBe('ready')
    expect((await engineModels()).find((m) => m.canonical_id === canonical)?.load_state).toBe('ready')
  }, 30_000)

  it('a cancel with nothing loading says so', () => {
    expect(engine.cancelLoad(makeModelDir(cacheRoot, 'idle-model'))).toBe(false)
  })
})

describe('model sources without config.json', () => {
  it('a weights file is inspected by the engine, loaded under its canonical id, and chats', async () => {
    const file = path.join(cacheRoot, 'tiny.gguf')
    writeFileSync(file, 'GGUF-test-weights')
    const info = await engine.loadModel(file)
    // The emulator inspects every source as a llama model named after the file.
    expect(info.family).toBe('llama3')
    expect(info.canonicalId).toBe('tiny')
    expect(info.modelPath).toBe(file)
    expect((await engineModels()).find((m) => m.canonical_id === 'tiny')?.load_state).toBe('ready')
    const r = await engine.client().chat(file, [{ role: 'user', content: 'Hi' }], { maxTokens: 3 })
    expect(r.usage.completionTokens).toBe(3)
  }, 30_000)

  it('a file the engine cannot load fails with the engine reason', async () => {
    const file = path.join(cacheRoot, 'notes.txt')
    writeFileSync(file, 'not a model')
    const err = await engine.loadModel(file).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ModelNotLoadedError)
    expect(String((err as Error).message)).toMatch(/weights file/)
  }, 30_000)

  it('a path that does not exist is not found, naming the path', async () => {
    const missing = path.join(cacheRoot, 'nowhere', 'model.gguf')
    const err = await engine.loadModel(missing).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ModelNotFoundError)
    expect(String((err as Error).message)).toContain(missing)
  })
})
