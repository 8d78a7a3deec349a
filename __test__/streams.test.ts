// Streams at scale and at their edges, against the emulator over real IPC: characters split
// across tokens, a thousand concurrent streams, and cancellation seen from the engine's side.
import { writeFileSync } from 'node:fs'
import path from 'node:path'

import { beforeAll, describe, expect, it } from 'vitest'

import type { ChatDelta, ChatMessage, ChatStream, Client } from '../src-ts'
import { AbortError, type Engine } from '../src-ts'
import { makeModelDir, useEmulator } from './helpers'
import { type RequestStats, settledStats as settled } from './pipeline-fixtures'

let engine: Engine
let client: Client
let model: string
let cacheRoot: string

const ask: ChatMessage[] = [{ role: 'user', content: 'Tell me a long story about the orchard.' }]
const never = ['<never-matches>']

useEmulator('streams', { env: { PIE_EMULATOR_TOKEN_DELAY_MS: '2' } }, (e) => {
  engine = e.engine
  model = e.model
  cacheRoot = e.cacheRoot
  client = e.client
})

/** What the emulator did for a request, once none of its sequences is generating. */
const settledStats = (requestId: number): Promise<RequestStats> => settled(engine, requestId)

let eot = 0
beforeAll(async () => {
  const reply = await engine.managementCommand({ type: 'emulator_vocab' })
  eot = (reply.data!.emulator_vocab as { eot_token_id: number }).eot_token_id
})

/**
 * A later request generated `tokens` tokens: the emulator's scheduler stepped every active
 * sequence that many times, so a sequence of a cancelled request still running would have published.
 */
async function schedulerTicks(tokens: number): Promise<void> {
  const r = await client.chat(model, ask, { maxTokens: tokens, stop: never, logitBias: { [eot]: -100 } })
  expect(r.usage.completionTokens).toBe(tokens)
}

/** The emulator's token ids, by name (`<0xF0>` for a byte token). */
async function vocabulary(): Promise<Map<string, number>> {
  const reply = await engine.managementCommand({ type: 'emulator_vocab' })
  const { tokens } = reply.data!.emulator_vocab as { tokens: Array<{ id: number; text: string }> }
  return new Map(tokens.map((t) => [t.text, t.id]))
}

describe('characters split across tokens', () => {
  it('arrive whole: a byte token that ends no character carries no text', async () => {
    const vocab = await vocabulary()
    const appleBytes = [...Buffer.from('🍎')].map((b) => `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`)
    const logitBias = Object.fromEntries(appleBytes.map((name) => [vocab.get(name)!, 100]))
    expect(Object.keys(logitBias)).toHaveLength(4)

    const deltas: ChatDelta[] = []
    const stream = client.chat(model, ask, { temperature: 0, maxTokens: 12, logitBias, stop: never })
    for await (const d of stream) deltas.push(d)
    const result = await stream.finalResult()

    expect(result.text).toBe('🍎🍎🍎')
    expect(result.usage.completionTokens).toBe(12)
    expect(deltas.map((d) => d.content)).toEqual(['', '', '', '🍎', '', '', '', '🍎', '', '', '', '🍎'])
    expect(deltas.every((d) => d.tokens.length === 1)).toBe(true)
    expect(deltas.map((d) => d.content).join('')).not.toContain('\uFFFD')
  })

  it('a reply cut inside a character ends with U+FFFD, as a byte-level decoder prints it', async () => {
    const vocab = await vocabulary()
    const logitBias = Object.fromEntries(
      [...Buffer.from('🍎')].map((b) => [vocab.get(`<0x${b.toString(16).toUpperCase()}>`)!, 100]),
    )
    const r = await client.chat(model, ask, { temperature: 0, maxTokens: 6, logitBias, stop: never })
    expect(r.text).toBe('🍎\uFFFD')
  })
})

describe("log-probabilities decoded with the model's tokenizer", () => {
  /** A model directory whose tokenizer.json spells the emulator's vocabulary SentencePiece-style. */
  async function modelWithTokenizer(): Promise<{ dir: string; names: Map<number, string> }> {
    const vocab = await vocabulary()
    const names = new Map([...vocab].map(([name, id]) => [id, name]))
    const dir = makeModelDir(cacheRoot, 'tiny-llama-tokenizer')
    const pieces = Object.fromEntries(
      [...vocab].filter(([, id]) => id !== 128009).map(([name, id]) => [name.replaceAll(' ', '\u2581'), id]),
    )
    const tokenizer = {
      model: { type: 'BPE', byte_fallback: true, vocab: pieces, merges: [] },
      added_tokens: [{ id: 128009, content: '<|eot_id|>', special: true }],
      decoder: {
        type: 'Sequence',
        decoders: [
          { type: 'Replace', pattern: { String: '\u2581' }, content: ' ' },
          { type: 'ByteFallback' },
          { type: 'Fuse' },
        ],
      },
    }
    writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(tokenizer))
    await engine.loadModel(dir)
    return { dir, names }
  }

  it('each token has its text and bytes; the alternatives are named too', async () => {
    const { dir, names } = await modelWithTokenizer()
    const deltas: ChatDelta[] = []
    const stream = client.chat(dir, ask, { temperature: 0, maxTokens: 12, topLogprobs: 3, stop: never })
    for await (const d of stream) deltas.push(d)
    const result = await stream.finalResult()
    const tokens = deltas.flatMap((d) => d.logprobs ?? [])
    expect(tokens).toHaveLength(12)
    expect(tokens.map((t) => t.token).join('')).toBe(result.text)
    expect(Buffer.concat(tokens.map((t) => Buffer.from(t.bytes!))).toString()).toBe(result.text)
    for (const t of tokens) {
      expect(t.topLogprobs).toHaveLength(3)
      // Greedy: the chosen token is the most likely one, with its true log-probability.
      expect(t.topLogprobs[0]!.tokenId).toBe(t.tokenId)
      expect(t.logprob).toBeCloseTo(t.topLogprobs[0]!.logprob, 9)
      for (const alt of t.topLogprobs) expect(alt.token).toBe(names.get(alt.tokenId!))
    }
  })

  it('byte tokens: each has its byte, and the bytes add up to the characters', async () => {
    const { dir } = await modelWithTokenizer()
    const vocab = await vocabulary()
    const apple = [...Buffer.from('🍎')]
    const logitBias = Object.fromEntries(apple.map((b) => [vocab.get(`<0x${b.toString(16).toUpperCase()}>`)!, 100]))
    const r = await client.chat(dir, ask, { temperature: 0, maxTokens: 8, topLogprobs: 1, logitBias, stop: never })
    const tokens = r.choices[0]!.logprobs!
    expect(tokens.map((t) => t.bytes)).toEqual([...apple, ...apple].map((b) => [b]))
    expect(Buffer.concat(tokens.map((t) => Buffer.from(t.bytes!))).toString()).toBe('🍎🍎')
  })
})

describe('a thousand concurrent streams', () => {
  it('all complete, each with every delta and its own text', async () => {
    const count = 1000
    const run = async (i: number) => {
      const stream = client.chat(model, [{ role: 'user', content: `Question ${i} about apples.` }], {
        maxTokens: 8,
        seed: i,
        temperature: 1,
        stop: never,
      })
      let streamed = ''
      let tokens = 0
      let finals = 0
      for await (const d of stream) {
        streamed += d.content
        tokens += d.tokens.length
        if (d.isFinal) finals++
      }
      const result = await stream.finalResult()
      return { i, streamed, tokens, finals, result }
    }
    const outcomes = await Promise.all(Array.from({ length: count }, (_, i) => run(i)))
    expect(outcomes).toHaveLength(count)
    for (const o of outcomes) {
      expect(o.finals, `stream ${o.i}`).toBe(1)
      expect(o.tokens, `stream ${o.i}`).toBe(8)
      expect(o.result.usage.completionTokens).toBe(8)
      expect(o.result.text).toBe(o.streamed)
      expect(o.result.finishReason).toBe('length')
    }
    // Seeds differ, so the texts do: deltas were not crossed between streams.
    expect(new Set(outcomes.map((o) => o.streamed)).size).toBeGreaterThan(count / 2)
    // Each result matches a fresh run with the same seed.
    for (const i of [0, 499, 999]) {
      const again = await client.chat(model, [{ role: 'user', content: `Question ${i} about apples.` }], {
        maxTokens: 8,
        seed: i,
        temperature: 1,
        stop: never,
      })
      expect(again.text).toBe(outcomes[i]!.streamed)
    }
  }, 120_000)
})

describe('cancellation stops the engine work', () => {
  const long = { maxTokens: 100_000, stop: never }

  async function cancelAfter(stream: ChatStream, deltasBeforeCancel: number): Promise<number> {
    let seen = 0
    if (deltasBeforeCancel === 0) {
      await stream.cancel()
    } else {
      for await (const d of stream) {
        void d
        if (++seen === deltasBeforeCancel) break
      }
    }
    await expect(stream.finalResult()).rejects.toBeInstanceOf(AbortError)
    return seen
  }

  it('mid-stream: the emulator publishes nothing more for the request', async () => {
    const stream = client.chat(model, ask, long)
    await cancelAfter(stream, 5)
    const id = await stream.requestId()
    const first = await settledStats(id)
    expect(first.cancelled).toBe(true)
    expect(first.published_deltas).toBeGreaterThanOrEqual(5)
    expect(first.published_deltas).toBeLessThan(1000)
    await schedulerTicks(5)
    expect(await settledStats(id)).toEqual(first)
  })

  it('before the first token: the request ends at once (a cancel may even beat the request)', async () => {
    const stream = client.chat(model, ask, long)
    const id = await stream.requestId()
    await cancelAfter(stream, 0)
    const first = await settledStats(id)
    expect(first.cancelled).toBe(true)
    // At most a token or two got out before the cancel, and the cancelled final delta.
    expect(first.published_deltas).toBeLessThanOrEqual(3)
    await schedulerTicks(5)
    expect(await settledStats(id)).toEqual(first)
  })

  it('disposing a stream left mid-way (await using) cancels it in the engine', async () => {
    const stream = client.chat(model, ask, long)
    const deltas = stream[Symbol.asyncIterator]()
    await deltas.next()
    await stream[Symbol.asyncDispose]()
    await expect(stream).rejects.toBeInstanceOf(AbortError)
    const stats = await settledStats(await stream.requestId())
    expect(stats.cancelled).toBe(true)
    // Disposing a stream that ended already changes nothing.
    const done = client.chat(model, ask, { maxTokens: 2 })
    const result = await done
    await done[Symbol.asyncDispose]()
    expect(await done).toEqual(result)
  })

  it('a Responses stream shares the cancellation: cancel() stops its chat request', async () => {
    const responses = client.responses(model, { input: 'Tell me about apples.', max_output_tokens: 100_000 })
    const events = responses[Symbol.asyncIterator]()
    await events.next()
    await responses.cancel()
    await expect(responses).rejects.toBeInstanceOf(AbortError)
    // Events already assembled may still come out; then the iteration ends with the AbortError.
    const rest = (async () => {
      while (!(await events.next()).done) {
        /* drain */
      }
    })()
    await expect(rest).rejects.toBeInstanceOf(AbortError)
    const stats = await settledStats(await responses.requestId())
    expect(stats.cancelled).toBe(true)
  })

  it('the signal of a batch cancels every conversation of it', async () => {
    const controller = new AbortController()
    const stream = client.chatBatch(model, [ask, ask, ask], { ...long, signal: controller.signal })
    let seen = 0
    await expect(
      (async () => {
        for await (const d of stream) {
          void d
          if (++seen === 6) controller.abort()
        }
      })(),
    ).rejects.toBeInstanceOf(AbortError)
    const stats = await settledStats(await stream.requestId())
    expect(stats.cancelled).toBe(true)
    expect(stats.active_sequences).toBe(0)
  })
})
