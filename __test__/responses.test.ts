// The Responses API against the emulator over real IPC: event sequences, tools, structured output, failures.
import { rmSync } from 'node:fs'

import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { Engine, InvalidRequestError } from '../src-ts'
import type { Client, Response, ResponseStreamEvent, ResponsesRequest } from '../src-ts'
import { emulatorBinary, makeModelDir, tempCacheRoot } from './helpers'

const cacheRoot = tempCacheRoot('responses')
let engine: Engine
let client: Client
let model: string

beforeAll(async () => {
  process.env.ORCHARD_CACHE_ROOT = cacheRoot
  process.env.ORCHARD_ENGINE_BINARY = emulatorBinary
  process.env.PIE_EMULATOR_TOKEN_DELAY_MS = '1'
  model = makeModelDir(cacheRoot)
  engine = await Engine.start({ startupTimeoutMs: 30_000 })
  await engine.loadModel(model)
  client = engine.client()
})

afterAll(async () => {
  await engine?.close()
  await Engine.stop({ graceMs: 2_000 }).catch(() => null)
  rmSync(cacheRoot, { recursive: true, force: true })
})

async function collect(request: ResponsesRequest): Promise<{ events: ResponseStreamEvent[]; response: Response }> {
  const stream = client.responses(model, request)
  const events: ResponseStreamEvent[] = []
  for await (const e of stream) events.push(e)
  return { events, response: await stream.finalResponse() }
}

/** The event types in order, with runs of the same delta type collapsed to one `type*`. */
function shape(events: ResponseStreamEvent[]): string[] {
  const out: string[] = []
  for (const e of events) {
    const t = e.type.endsWith('.delta') || e.type === 'response.output_token' ? `${e.type}*` : e.type
    if (t.endsWith('*') && out[out.length - 1] === t) continue
    out.push(t)
  }
  return out
}

function checkInvariants(events: ResponseStreamEvent[]): void {
  events.forEach((e, i) => expect(e.sequence_number).toBe(i))
  expect(events[0]!.type).toBe('response.created')
  expect(events[1]!.type).toBe('response.in_progress')
  expect(['response.completed', 'response.incomplete', 'response.failed']).toContain(events[events.length - 1]!.type)
}

describe('plain text', () => {
  it('streams the reference event sequence and the text adds up', async () => {
    const { events, response } = await collect({ input: 'Tell me about the orchard.', max_output_tokens: 40, temperature: 0 })
    checkInvariants(events)
    const terminal = events[events.length - 1]!.type
    expect(shape(events)).toEqual([
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.content_part.added',
      'response.output_text.delta*',
      'response.output_text.done',
      'response.content_part.done',
      'response.output_item.done',
      terminal,
    ])
    const deltas = events.flatMap((e) => (e.type === 'response.output_text.delta' ? [e.delta] : []))
    const done = events.find((e) => e.type === 'response.output_text.done')
    expect(done && done.type === 'response.output_text.done' && done.text).toBe(deltas.join(''))
    expect(response.outputText).toBe(deltas.join(''))
    expect(response.output).toHaveLength(1)
    expect(response.output[0]!.type).toBe('message')
    expect(response.usage.output_tokens).toBeGreaterThan(0)
    expect(response.usage.input_tokens).toBeGreaterThan(0)
    expect(response.id).toMatch(/^resp_/)
  })

  it('max_output_tokens reached: incomplete with the reason', async () => {
    const { events, response } = await collect({ input: 'Tell me everything.', max_output_tokens: 3 })
    checkInvariants(events)
    expect(events[events.length - 1]!.type).toBe('response.incomplete')
    expect(response.status).toBe('incomplete')
    expect(response.incomplete_details).toEqual({ reason: 'max_output_tokens' })
    expect(response.usage.output_tokens).toBe(3)
  })

  it('responsesText yields only the text', async () => {
    let text = ''
    for await (const piece of client.responsesText(model, { input: 'Hello there', max_output_tokens: 12, temperature: 0 })) text += piece
    const again = await client.responses(model, { input: 'Hello there', max_output_tokens: 12, temperature: 0 })
    expect(text).toBe(again.outputText)
  })

  it('stream_tokens adds one output_token event per token', async () => {
    const { events, response } = await collect({ input: 'Hi', max_output_tokens: 5, stream_tokens: true })
    expect(events.filter((e) => e.type === 'response.output_token')).toHaveLength(5)
    expect(response.usage.output_tokens).toBe(5)
  })
})

describe('requests are validated before anything is sent', () => {
  const bad: Array<[ResponsesRequest, RegExp]> = [
    [{ input: '' }, /input/],
    [{ input: [] }, /input/],
    [{ input: [{ type: 'mystery' } as never] }, /input\[0\]\.type/],
    [{ input: 'x', reasoning: { effort: 'extreme' as never } }, /reasoning\.effort/],
    [{ input: 'x', top_k: 0 }, /top_k/],
    [{ input: 'x', temperature: 3 }, /temperature/],
    [{ input: 'x', tools: [{ type: 'function', name: '' }] }, /tools\[0\]\.name/],
    [{ input: 'x', text: { format: { type: 'json_schema', schema: { type: 'objekt' } } } }, /text\.format\.schema\.type/],
    [
      { input: 'x', text: { format: { type: 'json_schema', schema: { type: 'object', properties: { a: { type: 'string' } }, required: ['b'] } } } },
      /text\.format\.schema\.required/,
    ],
    [{ input: 'x', text: { format: { type: 'yaml' as never } } }, /text\.format\.type/],
    [{ input: 'x', unknown_field: 1 } as never, /unknown_field/],
  ]
  for (const [request, pattern] of bad) {
    it(JSON.stringify(request), () => {
      let err: unknown
      try {
        void client.responses(model, request)
      } catch (e) {
        err = e
      }
      expect(err).toBeInstanceOf(InvalidRequestError)
      expect(String((err as Error).message)).toMatch(pattern)
    })
  }
})

// Last: it kills the engine this file uses.
describe('engine failure', () => {
  it('engine death mid-stream gives response.failed, then EngineDiedError', async () => {
    const stream = client.responses(model, { input: 'Tell me a long story.', max_output_tokens: 100_000 })
    const events: ResponseStreamEvent[] = []
    let err: unknown
    try {
      for await (const e of stream) {
        events.push(e)
        if (e.type === 'response.output_text.delta' && events.length === 8) process.kill(engine.pid, 'SIGKILL')
      }
    } catch (e) {
      err = e
    }
    expect((err as Error).name).toBe('EngineDiedError')
    const last = events[events.length - 1]!
    expect(last.type).toBe('response.failed')
    if (last.type === 'response.failed') {
      expect(last.response.status).toBe('failed')
      expect(last.response.error?.code).toBe('ENGINE_DIED')
    }
    expect(events.some((e) => e.type === 'response.completed')).toBe(false)
    await expect(stream.finalResponse()).rejects.toThrow()
  })
})
