// A stream without state events (the emulator's flood mode sends none): its content is the
// text, delta by delta, and nothing is held back or lost.
import { expect, it } from 'vitest'

import type { ChatDelta, Engine } from '../src-ts'
import { useEmulator } from './helpers'

let engine: Engine
let model: string

useEmulator('raw', { env: { PIE_EMULATOR_FLOOD_RATE: '2000' } }, (e) => {
  engine = e.engine
  model = e.model
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
