// Every chat option against the emulator over real IPC: each one changes the output the way it says.
import { describe, expect, it } from 'vitest'

import type { ChatDelta, ChatMessage, ChatOptions, Client } from '../src-ts'
import { type Engine, InvalidRequestError, TimeoutError } from '../src-ts'
import { useEmulator } from './helpers'

let engine: Engine
let client: Client
let model: string

const ask: ChatMessage[] = [{ role: 'user', content: 'Describe the orchard in spring.' }]
const never = ['<never-matches>']

useEmulator('options', { env: { PIE_EMULATOR_TOKEN_DELAY_MS: '1' } }, (e) => {
  engine = e.engine
  model = e.model
  client = e.client
})

const tokensOf = async (options: ChatOptions, messages = ask) =>
  (await client.chat(model, messages, { stop: never, ...options })).choices[0]!.tokens

describe('sampling options', () => {
  it('the same seed gives the same text; another seed another text', async () => {
    const a = await client.chat(model, ask, { seed: 7, maxTokens: 24, temperature: 1 })
    const b = await client.chat(model, ask, { seed: 7, maxTokens: 24, temperature: 1 })
    const c = await client.chat(model, ask, { seed: 8, maxTokens: 24, temperature: 1 })
    expect(b.text).toBe(a.text)
    expect(c.choices[0]!.tokens).not.toEqual(a.choices[0]!.tokens)
  })

  it('temperature 0 is greedy: the seed no longer matters', async () => {
    expect(await tokensOf({ temperature: 0, seed: 1, maxTokens: 20 })).toEqual(
      await tokensOf({ temperature: 0, seed: 2, maxTokens: 20 }),
    )
  })

  it('topK 1 and a tiny topP equal greedy', async () => {
    const greedy = await tokensOf({ temperature: 0, maxTokens: 20 })
    expect(await tokensOf({ temperature: 1.5, topK: 1, seed: 3, maxTokens: 20 })).toEqual(greedy)
    expect(await tokensOf({ temperature: 1.5, topP: 1e-9, seed: 4, maxTokens: 20 })).toEqual(greedy)
  })

  it('minP 1 only ever picks a most likely token (ties included)', async () => {
    let checked = 0
    for await (const d of client.chat(model, ask, {
      temperature: 1.5,
      minP: 1,
      seed: 5,
      maxTokens: 30,
      topLogprobs: 5,
      stop: never,
    })) {
      if (d.tokens.length === 0) continue
      const best = d.topLogprobs[0]!.logprob
      const mostLikely = d.topLogprobs.filter((t) => t.logprob === best).map((t) => Number(t.token))
      expect(mostLikely).toContain(d.tokens[0])
      checked++
    }
    expect(checked).toBe(30)
  })

  it('a high temperature spreads choices over more tokens than a low one', async () => {
    const distinct = async (temperature: number) => {
      const seen = new Set<number>()
      for (let seed = 0; seed < 6; seed++)
        for (const t of await tokensOf({ temperature, seed, maxTokens: 1 })) seen.add(t)
      return seen.size
    }
    expect(await distinct(3)).toBeGreaterThan(await distinct(0.05))
  })

  it('logitBias −100 bans a token; +100 forces one', async () => {
    const greedy = await tokensOf({ temperature: 0, maxTokens: 8 })
    const banned = greedy[0]!
    const without = await tokensOf({ temperature: 0, maxTokens: 8, logitBias: { [banned]: -100 } })
    expect(without).not.toContain(banned)
    const forced = greedy.find((t) => t !== banned)!
    const all = await tokensOf({ temperature: 1, seed: 9, maxTokens: 6, logitBias: { [forced]: 100 } })
    expect(all).toEqual(Array(6).fill(forced))
  })

  it('penalties make greedy text repeat itself less', async () => {
    const repeats = (tokens: number[]) => tokens.length - new Set(tokens).size
    const plain = await tokensOf({ temperature: 0, maxTokens: 60 })
    expect(repeats(plain)).toBeGreaterThan(0)
    for (const penalty of [
      { presencePenalty: 2 },
      { frequencyPenalty: 2 },
      { repetitionPenalty: 3 },
    ] satisfies ChatOptions[]) {
      expect(
        repeats(await tokensOf({ temperature: 0, maxTokens: 60, ...penalty })),
        JSON.stringify(penalty),
      ).toBeLessThan(repeats(plain))
    }
  })

  it('repetitionContextSize limits what the repetition penalty looks at', async () => {
    const wide = await tokensOf({ temperature: 0, maxTokens: 60, repetitionPenalty: 3, repetitionContextSize: 60 })
    const narrow = await tokensOf({ temperature: 0, maxTokens: 60, repetitionPenalty: 3, repetitionContextSize: 1 })
    expect(narrow).not.toEqual(wide)
  })

  it('deterministic pins the seed: two runs agree, and equal seed 11', async () => {
    const a = await client.chat(model, ask, { deterministic: true, maxTokens: 20, temperature: 1 })
    const b = await client.chat(model, ask, { deterministic: true, maxTokens: 20, temperature: 1 })
    const eleven = await client.chat(model, ask, { deterministic: true, seed: 11, maxTokens: 20, temperature: 1 })
    expect(b.text).toBe(a.text)
    expect(eleven.text).toBe(a.text)
  })

  it('maxTokens caps the output with finishReason length', async () => {
    const r = await client.chat(model, ask, { maxTokens: 5, stop: never })
    expect(r.usage.completionTokens).toBe(5)
    expect(r.finishReason).toBe('length')
  })

  it('stop ends the text before the stop string', async () => {
    const full = await client.chat(model, ask, { temperature: 0, maxTokens: 40, stop: never })
    const words = full.text.split(/\s+/).filter((w) => w.length > 3)
    const stopWord = words[Math.min(3, words.length - 1)]!
    const r = await client.chat(model, ask, { temperature: 0, maxTokens: 40, stop: [stopWord] })
    expect(r.finishReason).toBe('stop')
    expect(r.text).not.toContain(stopWord)
    expect(full.text.startsWith(r.text.trimEnd().slice(0, 5))).toBe(true)
  })

  it('topLogprobs returns that many true log-probabilities per token', async () => {
    const deltas: ChatDelta[] = []
    for await (const d of client.chat(model, ask, { topLogprobs: 4, maxTokens: 6, seed: 1 })) deltas.push(d)
    const withTokens = deltas.filter((d) => d.tokens.length > 0)
    expect(withTokens.length).toBeGreaterThan(0)
    for (const d of withTokens) {
      expect(d.topLogprobs).toHaveLength(4)
      const mass = d.topLogprobs.reduce((m, t) => m + Math.exp(t.logprob), 0)
      expect(mass).toBeLessThanOrEqual(1 + 1e-9)
      for (const t of d.topLogprobs) expect(t.logprob).toBeLessThanOrEqual(0)
    }
  })

  it('instructions become a system message; renderPrompt shows it', async () => {
    const r = await client.renderPrompt(model, ask, { instructions: 'Answer in one line.' })
    expect(r.prompt).toContain('Answer in one line.')
    expect(r.prompt.indexOf('Answer in one line.')).toBeLessThan(r.prompt.indexOf('Describe the orchard'))
  })
})

describe('candidates', () => {
  it('n 3 of bestOf 5: three distinct choices in rank order; usage counts all five', async () => {
    const r = await client.chat(model, ask, { n: 3, bestOf: 5, maxTokens: 10, temperature: 1.2, seed: 21, stop: never })
    expect(r.choices).toHaveLength(3)
    expect(new Set(r.choices.map((c) => c.text)).size).toBe(3)
    const score = (c: (typeof r.choices)[number]) => c.cumulativeLogprob! / c.tokens.length
    expect(score(r.choices[0]!)).toBeGreaterThanOrEqual(score(r.choices[1]!))
    expect(score(r.choices[1]!)).toBeGreaterThanOrEqual(score(r.choices[2]!))
    expect(r.usage.completionTokens).toBe(50)
    expect(r.text).toBe(r.choices[0]!.text)
  })

  it('streamed, the same request delivers all five sequences before it ends', async () => {
    const stream = client.chat(model, ask, { n: 3, bestOf: 5, maxTokens: 10, temperature: 1.2, seed: 21, stop: never })
    const finals = new Set<number>()
    for await (const d of stream) if (d.isFinal) finals.add(d.candidateIndex ?? 0)
    expect([...finals].sort()).toEqual([0, 1, 2, 3, 4])
    const r = await stream.finalResult()
    expect(r.choices).toHaveLength(3)
  })

  it('finalCandidates keeps more than n', async () => {
    const r = await client.chat(model, ask, { n: 2, bestOf: 4, finalCandidates: 3, maxTokens: 6, seed: 3, stop: never })
    expect(r.choices).toHaveLength(3)
  })
})

describe('chatBatch', () => {
  const conversations: ChatMessage[][] = [
    [{ role: 'user', content: 'First question about pears.' }],
    [{ role: 'user', content: 'Second question about plums.' }],
    [{ role: 'user', content: 'Third question about figs.' }],
  ]

  it('one request, results in prompt order, per-prompt options', async () => {
    const results = await client.chatBatch(model, conversations, [
      { maxTokens: 3, stop: never },
      { maxTokens: 5, stop: never },
      { maxTokens: 7, stop: never },
    ])
    expect(results.map((r) => r.usage.completionTokens)).toEqual([3, 5, 7])
    expect(new Set(results.map((r) => r.requestId)).size).toBe(1)
  })

  it('the batch equals the same conversations sent alone (greedy)', async () => {
    const batch = await client.chatBatch(model, conversations, { temperature: 0, maxTokens: 8, stop: never })
    for (let i = 0; i < conversations.length; i++) {
      const alone = await client.chat(model, conversations[i]!, { temperature: 0, maxTokens: 8, stop: never })
      expect(batch[i]!.text).toBe(alone.text)
    }
  })

  it('streamed deltas carry their promptIndex; candidates per prompt', async () => {
    const seen = new Map<number, number>()
    const stream = client.chatBatch(model, conversations.slice(0, 2), [
      { maxTokens: 4, stop: never },
      { maxTokens: 4, n: 2, bestOf: 3, seed: 4, stop: never },
    ])
    for await (const d of stream) if (d.isFinal) seen.set(d.promptIndex ?? -1, (seen.get(d.promptIndex ?? -1) ?? 0) + 1)
    expect(Object.fromEntries(seen)).toEqual({ 0: 1, 1: 3 })
    const [a, b] = await stream.finalResult()
    expect(a!.choices).toHaveLength(1)
    expect(b!.choices).toHaveLength(2)
    expect(b!.usage.completionTokens).toBe(12)
  })

  it('n 3 of bestOf 5 per conversation: ranked distinct choices, all five sequences counted, streamed or not', async () => {
    const options = { n: 3, bestOf: 5, maxTokens: 10, temperature: 1.2, seed: 21, stop: never }
    const score = (c: { cumulativeLogprob?: number | null; tokens: number[] }) => c.cumulativeLogprob! / c.tokens.length
    const check = (results: Awaited<ReturnType<Client['chatBatch']>>) => {
      expect(results).toHaveLength(2)
      for (const r of results) {
        expect(r.choices).toHaveLength(3)
        expect(new Set(r.choices.map((c) => c.text)).size).toBe(3)
        expect(score(r.choices[0]!)).toBeGreaterThanOrEqual(score(r.choices[1]!))
        expect(score(r.choices[1]!)).toBeGreaterThanOrEqual(score(r.choices[2]!))
        expect(r.usage.completionTokens).toBe(50)
      }
    }
    check(await client.chatBatch(model, conversations.slice(0, 2), options))

    const stream = client.chatBatch(model, conversations.slice(0, 2), options)
    const finals = new Map<number, Set<number>>()
    for await (const d of stream) {
      if (!d.isFinal) continue
      const set = finals.get(d.promptIndex ?? -1) ?? new Set<number>()
      set.add(d.candidateIndex ?? -1)
      finals.set(d.promptIndex ?? -1, set)
    }
    expect([...finals.keys()].sort()).toEqual([0, 1])
    for (const set of finals.values()) expect([...set].sort()).toEqual([0, 1, 2, 3, 4])
    check(await stream.finalResult())
  })

  it('mismatched options and empty conversations are refused before sending', async () => {
    await expect(client.chatBatch(model, conversations, [{}, {}])).rejects.toThrow(
      /options: 2 entries for 3 conversations/,
    )
    await expect(client.chatBatch(model, [[]])).rejects.toThrow(/conversations\[0\]/)
    await expect(client.chatBatch(model, [])).rejects.toThrow(InvalidRequestError)
  })

  it('an invalid per-prompt option names its index and key', async () => {
    await expect(client.chatBatch(model, conversations.slice(0, 2), [{}, { topK: 0 }])).rejects.toThrow(
      /options\[1\]\.topK/,
    )
  })
})

describe('invalid options name the key', () => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ temprature: 1 }, /temprature/],
    [{ temperature: 'hot' }, /temperature/],
    [{ temperature: -1 }, /temperature/],
    [{ topP: 0 }, /topP/],
    [{ topP: 1.5 }, /topP/],
    [{ topK: 0 }, /topK/],
    [{ minP: 2 }, /minP/],
    [{ maxTokens: 0 }, /maxTokens/],
    [{ maxTokens: 2.5 }, /maxTokens/],
    [{ seed: -1 }, /seed/],
    [{ deterministic: 'yes' }, /deterministic/],
    [{ stop: [''] }, /stop/],
    [{ stop: 5 }, /stop/],
    [{ n: 0 }, /\bn\b/],
    [{ n: 3, bestOf: 2 }, /bestOf/],
    [{ n: 1, bestOf: 2, finalCandidates: 3 }, /finalCandidates/],
    [{ topLogprobs: 21 }, /topLogprobs/],
    [{ frequencyPenalty: 3 }, /frequencyPenalty/],
    [{ presencePenalty: -3 }, /presencePenalty/],
    [{ repetitionPenalty: 0 }, /repetitionPenalty/],
    [{ repetitionContextSize: 'all' }, /repetitionContextSize/],
    [{ logitBias: { x: 1 } }, /logitBias/],
    [{ logitBias: { 5: 101 } }, /logitBias/],
    [{ reasoning: 'extreme' }, /reasoning/],
    [{ tools: {} }, /tools/],
    [{ activeTools: 'all' }, /activeTools/],
    [{ toolChoice: 'sometimes' }, /toolChoice/],
    [{ toolChoice: 'required' }, /toolChoice/],
    [{ tools: [{ name: 'a' }], toolChoice: { type: 'function', name: 'b' } }, /toolChoice/],
    [{ minToolCalls: 0 }, /minToolCalls/],
    [{ maxToolCalls: -1 }, /maxToolCalls/],
    [{ responseFormat: { type: 'yaml' } }, /responseFormat\.type/],
    [{ responseFormat: { type: 'json_schema', json_schema: {} } }, /responseFormat\.json_schema\.schema/],
    [{ instructions: 3 }, /instructions/],
    [{ task: 3 }, /task/],
    [{ prefixCache: 'no' }, /prefixCache/],
  ]
  for (const [options, key] of cases) {
    it(JSON.stringify(options), async () => {
      const err = await client.chat(model, ask, options as ChatOptions).then(
        () => null,
        (e: unknown) => e,
      )
      expect(err).toBeInstanceOf(InvalidRequestError)
      expect(String((err as Error).message)).toMatch(key)
    })
  }

  it('signal and stallTimeoutMs are checked in JavaScript', async () => {
    await expect(client.chat(model, ask, { signal: 'stop' as never })).rejects.toThrow(/signal/)
    await expect(client.chat(model, ask, { stallTimeoutMs: -5 })).rejects.toThrow(/stallTimeoutMs/)
  })
})

describe('options JSON cannot carry', () => {
  /** The error a chat fails with, whether it is thrown at once or the stream rejects. */
  // No wrapper: a synchronous throw from chat() would fail the test (errors arrive asynchronously).
  const failure = (options: ChatOptions, messages = ask) =>
    client.chat(model, messages, options).then(
      () => null,
      (e: unknown) => e,
    )

  it('a BigInt seed, a circular tool schema and a NaN temperature each name their field', async () => {
    const x: Record<string, unknown> = { type: 'object' }
    x.properties = { x }
    const cases: Array<[ChatOptions, string]> = [
      [{ seed: 5n as never }, 'seed: 5n is a BigInt'],
      [
        { tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: { x } } } }] },
        'tools[0].function.parameters.properties.x.properties.x: a circular reference (back to tools[0].function.parameters.properties.x)',
      ],
      [{ temperature: Number.NaN }, 'temperature: NaN is not a finite number'],
      [{ topP: Number.POSITIVE_INFINITY }, 'topP: Infinity is not a finite number'],
      [{ stop: ['a', (() => 'b') as never] }, 'stop[1]: a function cannot be sent'],
    ]
    for (const [options, message] of cases) {
      const err = await failure(options)
      expect(err, message).toBeInstanceOf(InvalidRequestError)
      expect(String((err as Error).message)).toContain(message)
    }
  })

  it('in messages, a batch and renderPrompt too', async () => {
    const err = await failure({}, [{ role: 'user', content: [{ type: 'text', text: Symbol('hi') as never }] }])
    expect(err).toBeInstanceOf(InvalidRequestError)
    expect(String((err as Error).message)).toMatch(/^messages\[0\]\.content\[0\]\.text: a symbol cannot be sent/)
    const batch = await client.chatBatch(model, [ask, ask], [{}, { seed: 1n as never }]).then(
      () => null,
      (e: unknown) => e,
    )
    expect(batch).toBeInstanceOf(InvalidRequestError)
    expect(String((batch as Error).message)).toMatch(/^options\[1\]\.seed: 1n is a BigInt/)
    await expect(client.renderPrompt(model, ask, { minP: Number.NEGATIVE_INFINITY })).rejects.toThrow(
      /^minP: -Infinity is not a finite number/,
    )
  })
})

describe('stallTimeoutMs', () => {
  it('fails a request whose engine is alive but silent, and cancels it', async () => {
    const pid = engine.pid
    const stream = client.chat(model, ask, { maxTokens: 10_000, stop: never, stallTimeoutMs: 300 })
    const it = stream[Symbol.asyncIterator]()
    await it.next()
    process.kill(pid, 'SIGSTOP')
    try {
      let err: unknown
      try {
        while (!(await it.next()).done) {
          /* drain what arrived before the stop */
        }
      } catch (e) {
        err = e
      }
      expect(err).toBeInstanceOf(TimeoutError)
      expect(String((err as Error).message)).toMatch(/stallTimeoutMs/)
    } finally {
      process.kill(pid, 'SIGCONT')
    }
    // The engine is fine afterwards.
    const r = await client.chat(model, ask, { maxTokens: 3 })
    expect(r.usage.completionTokens).toBe(3)
  })
})
