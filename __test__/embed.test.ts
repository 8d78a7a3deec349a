// Embeddings end to end: client.embed over real IPC to the emulator.
import { describe, expect, it } from 'vitest'

import type { Client, EmbedResult, Engine } from '../src-ts'
import { AbortError, InvalidRequestError, ModelNotLoadedError } from '../src-ts'
import { LLAMA_CONFIG, makeModelDir, useEmulator } from './helpers'
import { type RequestStats, rejection, settledStats, statsWhen } from './pipeline-fixtures'

let engine: Engine
let client: Client
let model: string
let cacheRoot: string

useEmulator('embed', { env: { PIE_EMULATOR_TOKEN_DELAY_MS: '5' } }, (e) => {
  engine = e.engine
  client = e.client
  model = e.model
  cacheRoot = e.cacheRoot
})

/** Poll the emulator's counters for a request until `done` holds for them. */
const until = (requestId: number, done: (s: RequestStats) => boolean): Promise<RequestStats> =>
  statsWhen(engine, requestId, done)

const same = (a: Float32Array, b: Float32Array): boolean => a.length === b.length && a.every((x, i) => x === b[i])

describe('client.embed', () => {
  it('embeds one string: one Float32Array of the model dimension, usage and ids', async () => {
    const r: EmbedResult = await client.embed(model, 'Apples grow in orchards.')
    expect(r.embeddings).toHaveLength(1)
    expect(r.embeddings[0]).toBeInstanceOf(Float32Array)
    expect(r.dimensions).toBe(16)
    expect(r.embeddings[0]!.length).toBe(16)
    expect(r.embeddings[0]!.every(Number.isFinite)).toBe(true)
    expect(r.embeddings[0]!.some((x) => x !== 0)).toBe(true)
    expect(r.usage.promptTokens).toBeGreaterThan(0)
    expect(r.usage.totalTokens).toBe(r.usage.promptTokens)
    expect(r.model).toBe(model)
    expect(Number.isInteger(r.requestId)).toBe(true)
  })

  it('is deterministic per text, and different texts differ', async () => {
    const a = await client.embed(model, 'the orchard in spring')
    const b = await client.embed(model, 'the orchard in spring')
    const c = await client.embed(model, 'a steam engine at night')
    expect(a.requestId).not.toBe(b.requestId)
    expect(same(a.embeddings[0]!, b.embeddings[0]!)).toBe(true)
    expect(same(a.embeddings[0]!, c.embeddings[0]!)).toBe(false)
  })

  it('sends a batch as one request, one prompt per input, answers in input order', async () => {
    const texts = ['pears', 'apples and plums', 'a long road', 'pears']
    const p = client.embed(model, texts)
    const requestId = await p.requestId()
    const r = await p
    expect(r.requestId).toBe(requestId)
    expect(r.embeddings).toHaveLength(texts.length)
    // Each vector is the one the text gets on its own.
    for (const [i, t] of texts.entries()) {
      const alone = await client.embed(model, t)
      expect(same(r.embeddings[i]!, alone.embeddings[0]!)).toBe(true)
    }
    expect(same(r.embeddings[0]!, r.embeddings[3]!)).toBe(true)
    expect(same(r.embeddings[0]!, r.embeddings[1]!)).toBe(false)
    // One request: the emulator published exactly one (final) delta per input under its id.
    const s = await settledStats(engine, requestId)
    expect(s.published_deltas).toBe(texts.length)
    expect(s.cancelled).toBe(false)
    // Usage adds the inputs up.
    const singles = await Promise.all(texts.map((t) => client.embed(model, t)))
    expect(r.usage.promptTokens).toBe(singles.reduce((n, x) => n + x.usage.promptTokens, 0))
  })

  it('takes the dimension from the vectors (the emulator follows hidden_size)', async () => {
    const wide = makeModelDir(cacheRoot, 'wide-llama', { ...LLAMA_CONFIG, hidden_size: 48 })
    await engine.loadModel(wide)
    const r = await client.embed(wide, ['one', 'two'])
    expect(r.dimensions).toBe(48)
    expect(r.embeddings.map((e) => e.length)).toEqual([48, 48])
  })

  it('rejects bad input with InvalidRequestError naming the field, before sending', async () => {
    const cases: Array<[unknown, RegExp]> = [
      ['', /^input: /],
      [[], /^input: /],
      [null, /^input: /],
      [42, /^input: /],
      [['a', 7], /^input\[1\]: /],
      [['a', 'b', ''], /^input\[2\]: /],
      [[{ text: 'a' }], /^input\[0\]: /],
    ]
    for (const [input, message] of cases) {
      const err = await rejection(client.embed(model, input as string[]))
      expect(err).toBeInstanceOf(InvalidRequestError)
      expect(err.message).toMatch(message)
    }
    const noModel = await rejection(client.embed('', 'hi'))
    expect(noModel).toBeInstanceOf(InvalidRequestError)
    expect(noModel.message).toMatch(/^model: /)
    const badOption = await rejection(client.embed(model, 'hi', { dimensions: 3 } as never))
    expect(badOption).toBeInstanceOf(InvalidRequestError)
    expect(badOption.message).toMatch(/^options\.dimensions: /)
  })

  it('rejects a model that is not loaded with ModelNotLoadedError', async () => {
    const err = await rejection(client.embed('/nowhere/model', ['hi']))
    expect(err).toBeInstanceOf(ModelNotLoadedError)
    expect(err.message).toContain('/nowhere/model')
  })

  it('an aborted signal cancels the request in the engine and rejects with AbortError', async () => {
    // A long text is a long prefill for the emulator (64 tokens a step, 5 ms a step).
    const long = 'Apple trees blossom in the orchard every spring. '.repeat(4000)
    const controller = new AbortController()
    const p = client.embed(model, [long, long], { signal: controller.signal })
    const requestId = await p.requestId()
    controller.abort()
    const err = await rejection(p)
    expect(err).toBeInstanceOf(AbortError)
    const s = await until(requestId, (x) => x.cancelled && x.active_sequences === 0)
    // Each sequence ended with its one (cancelled) final delta; no vector was sent.
    expect(s.published_deltas).toBe(2)
  })

  it('a signal aborted before the call sends nothing and rejects with AbortError', async () => {
    const controller = new AbortController()
    controller.abort(new Error('not now'))
    const p = client.embed(model, 'hi', { signal: controller.signal })
    const err = await rejection(p)
    expect(err).toBeInstanceOf(AbortError)
    await expect(p.requestId()).rejects.toBeInstanceOf(AbortError)
  })

  it('chat still works after embeddings (and alongside them)', async () => {
    const [chat, emb] = await Promise.all([
      client.chat(model, [{ role: 'user', content: 'Tell me about apples.' }], { maxTokens: 5 }),
      client.embed(model, ['apples', 'pears']),
    ])
    expect(chat.usage.completionTokens).toBeGreaterThan(0)
    expect(emb.embeddings).toHaveLength(2)
    const after = await client.chat(model, [{ role: 'user', content: 'And pears?' }], { maxTokens: 5 })
    expect(after.text.length).toBeGreaterThan(0)
  })
})
