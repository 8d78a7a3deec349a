// A stream without state events (the emulator's flood mode sends none): its content is the
// text, delta by delta, and nothing is held back or lost.
import { rmSync } from 'node:fs'

import { afterAll, beforeAll, expect, it } from 'vitest'

import { Engine } from '../src-ts'
import type { ChatDelta } from '../src-ts'
import { emulatorBinary, makeModelDir, tempCacheRoot } from './helpers'

const cacheRoot = tempCacheRoot('raw')
let engine: Engine
let model: string

beforeAll(async () => {
  process.env.ORCHARD_CACHE_ROOT = cacheRoot
  process.env.ORCHARD_ENGINE_BINARY = emulatorBinary
  process.env.PIE_EMULATOR_FLOOD_RATE = '2000'
  model = makeModelDir(cacheRoot)
  engine = await Engine.start({ startupTimeoutMs: 30_000 })
  await engine.loadModel(model)
})

afterAll(async () => {
  await engine?.close()
  await Engine.stop({ graceMs: 2_000 }).catch(() => null)
  rmSync(cacheRoot, { recursive: true, force: true })
})

it('without state events the content is the text, delta by delta', async () => {
  const stream = engine.client().chat(model, [{ role: 'user', content: 'Hi' }], { maxTokens: 12 })
  const deltas: ChatDelta[] = []
  for await (const d of stream) deltas.push(d)
  const result = await stream.finalResult()
  expect(deltas).toHaveLength(12)
  expect(deltas.every((d) => d.stateEvents.length === 0)).toBe(true)
  // Flood content is the publish clock in nanoseconds and a space.
  expect(deltas.every((d) => /^\d+ $/.test(d.content ?? ''))).toBe(true)
  expect(deltas.map((d) => d.text)).toEqual(deltas.map((d) => d.content))
  expect(result.text).toBe(deltas.map((d) => d.content).join(''))
  expect(result.reasoning).toBeNull()
  expect(result.toolCalls).toEqual([])
})
