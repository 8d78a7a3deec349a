// Integration: the emulator started through Engine.start, real IPC sockets, a private cache root.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import path from 'node:path'

import { describe, expect, it } from 'vitest'

import type { ChatDelta, ChatMessage, StateEvent } from '../src-ts'
import { AbortError, Engine, InvalidRequestError, ModelNotLoadedError } from '../src-ts'
import { Accumulator, argumentsText } from '../src-ts/accumulator'
import { ResponseAssembler } from '../src-ts/responses/assembly'
import { repoRoot, useEmulator } from './helpers'

let engine: Engine
let model: string
let cacheRoot: string

const messages: ChatMessage[] = [
  { role: 'system', content: 'You are a helpful assistant.' },
  { role: 'user', content: 'Tell me about apple orchards.' },
]

useEmulator('chat', { env: { PIE_EMULATOR_TOKEN_DELAY_MS: '2' } }, (e) => {
  engine = e.engine
  model = e.model
  cacheRoot = e.cacheRoot
})

describe('Engine.start', () => {
  it('launched the emulator and knows its pid', () => {
    expect(engine.launched).toBe(true)
    expect(engine.pid).toBeGreaterThan(0)
    expect(engine.cacheRoot).toBe(path.resolve(cacheRoot))
  })

  it('shares one connection between engines in a process', async () => {
    const second = await Engine.start()
    expect(second.pid).toBe(engine.pid)
    expect(second.launched).toBe(true)
    await second.close()
    // The first lease still works.
    const r = await engine.client().chat(model, messages, { maxTokens: 3 })
    expect(r.usage.completionTokens).toBe(3)
  })
})

describe('chat', () => {
  it('returns the final result when awaited', async () => {
    const r = await engine.client().chat(model, messages, { maxTokens: 12, seed: 5 })
    expect(r.text.length).toBeGreaterThan(0)
    expect(['stop', 'length']).toContain(r.finishReason)
    expect(r.usage.promptTokens).toBeGreaterThan(0)
    expect(r.usage.completionTokens).toBeGreaterThan(0)
    expect(r.usage.completionTokens).toBeLessThanOrEqual(12)
    expect(r.usage.totalTokens).toBe(r.usage.promptTokens + r.usage.completionTokens)
  })

  it('stops at maxTokens with finishReason length', async () => {
    const vocab = (await engine.managementCommand({ type: 'emulator_vocab' })).data?.emulator_vocab as {
      eot_token_id: number
    }
    // The end-of-turn token banned: only maxTokens ends this request.
    const r = await engine
      .client()
      .chat(model, messages, { maxTokens: 4, seed: 9, temperature: 0, logitBias: { [vocab.eot_token_id]: -100 } })
    expect(r.finishReason).toBe('length')
    expect(r.usage.completionTokens).toBe(4)
  })

  it('streams deltas whose text adds up to the final result', async () => {
    const stream = engine.client().chat(model, messages, { maxTokens: 16, seed: 3 })
    const deltas: ChatDelta[] = []
    for await (const d of stream) deltas.push(d)
    const result = await stream.finalResult()
    expect(deltas.length).toBeGreaterThan(1)
    expect(deltas.filter((d) => d.isFinal)).toHaveLength(1)
    expect(deltas.at(-1)!.isFinal).toBe(true)
    expect(deltas.map((d) => d.content ?? '').join('')).toBe(result.text)
    expect(deltas.every((d) => d.requestId === result.requestId)).toBe(true)
  })

  it('is deterministic for a seed', async () => {
    const c = engine.client()
    const a = await c.chat(model, messages, { maxTokens: 20, seed: 1234, temperature: 0.9 })
    const b = await c.chat(model, messages, { maxTokens: 20, seed: 1234, temperature: 0.9 })
    expect(a.text).toBe(b.text)
  })

  it('serves two clients concurrently', async () => {
    const one = engine.client()
    const two = engine.client()
    const [a, b] = await Promise.all([
      one.chat(model, messages, { maxTokens: 10, seed: 1 }),
      two.chat(model, [{ role: 'user', content: 'Say something about engines.' }], { maxTokens: 10, seed: 2 }),
    ])
    expect(a.requestId).not.toBe(b.requestId)
    expect(a.usage.completionTokens).toBeGreaterThan(0)
    expect(b.usage.completionTokens).toBeGreaterThan(0)
  })

  it('rejects a model that is not loaded with ModelNotLoadedError', async () => {
    const err = await engine
      .client()
      .chat('/nowhere/model', messages)
      .then(
        () => null,
        (e: unknown) => e,
      )
    expect(err).toBeInstanceOf(ModelNotLoadedError)
    expect(String((err as Error).message)).toMatch(/loadModel/)
  })

  it('rejects a model directory without config.json when loading', async () => {
    await expect(engine.loadModel(path.join(cacheRoot, 'empty'))).rejects.toBeInstanceOf(ModelNotLoadedError)
  })

  it('rejects bad options naming the key', async () => {
    const c = engine.client()
    await expect(c.chat(model, messages, { temprature: 1 } as never)).rejects.toThrow(/temprature/)
    await expect(c.chat(model, messages, { topP: 2 })).rejects.toBeInstanceOf(InvalidRequestError)
    await expect(c.chat(model, [])).rejects.toBeInstanceOf(InvalidRequestError)
  })

  it('can be consumed only once', async () => {
    const stream = engine.client().chat(model, messages, { maxTokens: 2 })
    await stream
    expect(() => stream[Symbol.asyncIterator]()).toThrow(/once/)
  })
})

describe('renderPrompt', () => {
  it('returns the prompt and the sampling values chat would send', async () => {
    const r = await engine.client().renderPrompt(model, messages, { maxTokens: 9, topK: 5 })
    expect(r.prompt).toContain('<|start_header_id|>user<|end_header_id|>\n\nTell me about apple orchards.<|eot_id|>')
    expect(r.layout).toEqual([{ type: 'text', length: Buffer.byteLength(r.prompt) }])
    // Explicit values win; the rest come from the llama3 profile's default lane.
    expect(r.sampling).toMatchObject({ maxTokens: 9, topK: 5, temperature: 0.6, topP: 0.9, stop: ['<|eot_id|>'] })
    expect(r.reasoning).toBe(false)
  })
})

describe('Accumulator: the one reading of deltas', () => {
  const delta = (over: Partial<ChatDelta>): ChatDelta => ({
    requestId: 1,
    tokens: [],
    topLogprobs: [],
    isFinal: false,
    stateEvents: [],
    text: '',
    reasoning: '',
    toolCallDeltas: [],
    ...over,
  })
  const ev = (
    itemType: string,
    eventType: string,
    outputIndex: number,
    identifier: string,
    delta = '',
    value?: unknown,
  ): StateEvent => ({
    itemType,
    eventType,
    outputIndex,
    identifier,
    delta,
    ...(value === undefined ? {} : { value }),
  })

  it('interprets state events once into typed items that the chat result and its deltas agree with', () => {
    const acc = new Accumulator()
    const first = delta({
      tokens: [1, 2],
      stateEvents: [
        ev('reasoning', 'content_delta', 0, 'r', 'hmm'),
        ev('tool_call', 'item_started', 1, 'tool_call:get_weather'),
      ],
    })
    const second = delta({
      tokens: [3],
      stateEvents: [
        ev('tool_call', 'content_delta', 1, 'city', 'Paris'),
        ev(
          'tool_call',
          'item_completed',
          1,
          'tool_call:get_weather',
          '',
          '{"name":"get_weather","arguments":{"city":"Paris"}}',
        ),
      ],
    })
    const last = delta({
      isFinal: true,
      finishReason: 'stop',
      generationLen: 3,
      stateEvents: [ev('message', 'content_delta', 2, 'm', 'Sunny.')],
    })
    expect([first, second, last].flatMap((d) => acc.add(d))).toEqual([first, second, last])
    expect(acc.items(first)).toEqual([
      { item: 'reasoning', kind: 'delta', index: 0, identifier: 'r', delta: 'hmm' },
      { item: 'tool_call', kind: 'started', index: 1, name: 'get_weather' },
    ])
    expect(acc.items(second)).toEqual([
      { item: 'tool_call', kind: 'delta', index: 1, name: 'get_weather', argument: 'city', delta: 'Paris' },
      { item: 'tool_call', kind: 'done', index: 1, call: { name: 'get_weather', arguments: { city: 'Paris' } } },
    ])
    expect(second.toolCallDeltas).toEqual([{ outputIndex: 1, name: 'get_weather', argument: 'city', delta: 'Paris' }])
    const r = acc.result(0, 1)
    expect([r.text, r.reasoning, r.toolCalls, r.finishReason]).toEqual([
      'Sunny.',
      'hmm',
      [{ name: 'get_weather', arguments: { city: 'Paris' } }],
      'stop',
    ])
  })

  it('a call whose arguments are not JSON: raw in the result, one JSON text on every wire surface', () => {
    const acc = new Accumulator()
    const assembler = new ResponseAssembler('m', { input: 'x' }, null)
    const d = delta({
      tokens: [1],
      stateEvents: [
        ev('tool_call', 'item_started', 0, 'tool_call:get_weather'),
        ev('tool_call', 'item_completed', 0, 'tool_call:get_weather', '', {
          name: 'get_weather',
          arguments: '(location="Paris")',
        }),
      ],
    })
    const usage = { promptTokens: 0, completionTokens: 0, reasoningTokens: 0, cachedTokens: 0, totalTokens: 0 }
    const events = acc.add(d).flatMap((out) => assembler.add(out, acc.items(out), usage))
    acc.add(delta({ isFinal: true, finishReason: 'stop', generationLen: 1 }))
    const call = acc.result(0, 1).toolCalls[0]!
    expect(call.arguments).toBe('(location="Paris")')
    expect(argumentsText(call)).toBe('"(location=\\"Paris\\")"')
    const done = events.find((e) => e.type === 'response.function_call_arguments.done')
    expect(done && 'arguments' in done ? done.arguments : null).toBe(argumentsText(call))
    expect(argumentsText({ arguments: '{ "city": "Paris" }' })).toBe('{"city":"Paris"}')
    expect(argumentsText({ arguments: { city: 'Paris' } })).toBe('{"city":"Paris"}')
  })

  it('counts usage as the largest running count seen (a late smaller count lowers nothing)', () => {
    const acc = new Accumulator()
    acc.add(delta({ tokens: [1], promptTokenCount: 9, cachedTokenCount: 4, generationLen: 5, reasoningTokens: 2 }))
    acc.add(
      delta({
        tokens: [2],
        isFinal: true,
        finishReason: 'length',
        promptTokenCount: 7,
        cachedTokenCount: 0,
        generationLen: 3,
        reasoningTokens: 1,
      }),
    )
    const usage = { promptTokens: 9, completionTokens: 5, reasoningTokens: 2, cachedTokens: 4, totalTokens: 14 }
    expect(acc.usage(0)).toEqual(usage)
    expect(acc.result(0, 1).usage).toEqual(usage)
  })
})

describe('input errors arrive asynchronously', () => {
  /** Every rejection the process saw no handler for while `body` ran. */
  async function unhandledDuring(body: () => Promise<void>): Promise<unknown[]> {
    const seen: unknown[] = []
    const onUnhandled = (reason: unknown): void => void seen.push(reason)
    process.on('unhandledRejection', onUnhandled)
    try {
      await body()
      // Node reports unhandled rejections once the microtask queue has drained: let it.
      await new Promise((resolve) => setImmediate(resolve))
      await new Promise((resolve) => setImmediate(resolve))
    } finally {
      process.off('unhandledRejection', onUnhandled)
    }
    return seen
  }

  const calls: Array<[string, () => PromiseLike<unknown>, RegExp]> = [
    ['chat without messages', () => engine.client().chat(model, []), /messages/],
    ['chat with an empty model id', () => engine.client().chat('', messages), /model/],
    [
      'chat with a signal that is not an AbortSignal',
      () => engine.client().chat(model, messages, { signal: 42 as never }),
      /signal/,
    ],
    ['chat with an option the core refuses', () => engine.client().chat(model, messages, { topK: 0 }), /topK/],
    ['chat with options that are not an object', () => engine.client().chat(model, messages, 7 as never), /options/],
    ['chatBatch without conversations', () => engine.client().chatBatch(model, []), /conversations/],
    [
      'chatBatch with a bad signal',
      () => engine.client().chatBatch(model, [messages], { signal: 'x' as never }),
      /signal/,
    ],
    ['responses with an empty input', () => engine.client().responses(model, { input: '' }), /input/],
    ['responses with an empty model id', () => engine.client().responses('', { input: 'x' }), /model/],
    [
      'responses with an option the core refuses',
      () => engine.client().responses(model, { input: 'x', tool_choice: 'sometimes' as never }),
      /tool_choice|toolChoice/,
    ],
    [
      'responses with an unknown field',
      () => engine.client().responses(model, { input: 'x', nope: 1 } as never),
      /nope/,
    ],
    ['embed with a bad option', () => engine.client().embed(model, 'x', { nope: 1 } as never), /nope/],
  ]

  for (const [name, call, pattern] of calls) {
    it(`${name}: never a synchronous throw; awaiting rejects with the typed error`, async () => {
      const unhandled = await unhandledDuring(async () => {
        let pending: PromiseLike<unknown> | undefined
        expect(() => (pending = call())).not.toThrow()
        const err = await Promise.resolve(pending).then(
          () => null,
          (e: unknown) => e,
        )
        expect(err).toBeInstanceOf(InvalidRequestError)
        expect(String((err as Error).message)).toMatch(pattern)
      })
      expect(unhandled).toEqual([])
    })

    // The embed promise is not iterable: awaiting is its only use.
    if (name.startsWith('embed')) continue
    it(`${name}: iterating only, the first next() throws it; nothing unhandled`, async () => {
      const unhandled = await unhandledDuring(async () => {
        const stream = call() as unknown as AsyncIterable<unknown>
        await expect(stream[Symbol.asyncIterator]().next()).rejects.toThrow(pattern)
      })
      expect(unhandled).toEqual([])
    })
  }

  it('a stream that is neither iterated nor awaited leaves no unhandled rejection', async () => {
    const unhandled = await unhandledDuring(async () => {
      engine.client().chat(model, [])
      engine.client().responses(model, { input: [] })
      engine.client().chatBatch(model, [[]])
    })
    expect(unhandled).toEqual([])
  })
})

describe('cancellation', () => {
  it('break ends the stream and sends cancel_request', async () => {
    const stream = engine.client().chat(model, messages, { maxTokens: 4000, stop: ['<never>'] })
    let n = 0
    for await (const d of stream) {
      if (d.content) n++
      if (n === 3) break
    }
    await expect(stream.finalResult()).rejects.toBeInstanceOf(AbortError)
    // The connection is still healthy afterwards.
    const r = await engine.client().chat(model, messages, { maxTokens: 2 })
    expect(r.usage.completionTokens).toBeGreaterThan(0)
  })

  it('an AbortSignal rejects the stream with AbortError', async () => {
    const controller = new AbortController()
    const stream = engine
      .client()
      .chat(model, messages, { maxTokens: 4000, stop: ['<never>'], signal: controller.signal })
    const seen: ChatDelta[] = []
    const consume = (async () => {
      for await (const d of stream) {
        seen.push(d)
        if (seen.length === 2) controller.abort()
      }
    })()
    await expect(consume).rejects.toBeInstanceOf(AbortError)
    expect(seen.some((d) => d.isFinal)).toBe(false)
  })

  it('an already aborted signal never sends', async () => {
    const stream = engine.client().chat(model, messages, { signal: AbortSignal.abort() })
    await expect(stream).rejects.toBeInstanceOf(AbortError)
  })
})

/** Run a Node child that attaches to our engine and chats; resolve when it exits. */
async function runChild(options: { close: boolean }) {
  const script = `
    const { Engine } = require(${JSON.stringify(path.join(repoRoot, 'dist'))});
    (async () => {
      const engine = await Engine.start();
      await engine.loadModel(${JSON.stringify(model)});
      const r = await engine.client().chat(${JSON.stringify(model)}, [{ role: 'user', content: 'hi' }], { maxTokens: 5 });
      if (${options.close}) await engine.close();
      process.stdout.write(JSON.stringify({ tokens: r.usage.completionTokens, attached: !engine.launched }) + '\\n');
    })().catch((e) => { console.error(e); process.exit(3); });
  `
  return spawnAndWait(['-e', script])
}

async function spawnAndWait(args: string[]) {
  const child = spawn(process.execPath, args, { env: process.env, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout.on('data', (b: Buffer) => {
    out += b.toString()
  })
  child.stderr.on('data', (b: Buffer) => {
    err += b.toString()
  })
  // Only a child that never exits is killed: the test then fails on its signal, not on a clock.
  const killer = setTimeout(() => child.kill('SIGKILL'), 30_000)
  const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null]
  clearTimeout(killer)
  return { code, signal, out, err }
}

describe('process lifetime', () => {
  for (const close of [true, false]) {
    const what = close ? 'chats and closes' : 'chats and never calls close()'
    it(`a child process that ${what} exits on its own`, async () => {
      const { code, signal, out, err } = await runChild({ close })
      expect(err).toBe('')
      expect({ code, signal }).toEqual({ code: 0, signal: null })
      expect(JSON.parse(out)).toEqual({ tokens: 5, attached: true })
      // The engine is still there for us: the child only gave back its own lease.
      const r = await engine.client().chat(model, messages, { maxTokens: 2 })
      expect(r.usage.completionTokens).toBeGreaterThan(0)
    })
  }

  it('loads in a worker thread that is then terminated, without disturbing this thread', async () => {
    const script = `
      const { Worker } = require('node:worker_threads');
      const w = new Worker('require(${JSON.stringify(path.join(repoRoot, 'dist'))}); require("node:worker_threads").parentPort.postMessage("loaded")', { eval: true });
      w.on('message', async () => { await w.terminate(); process.stdout.write('terminated\\n'); });
      w.on('error', (e) => { console.error(e); process.exit(3); });
    `
    const { code, out, err } = await spawnAndWait(['-e', script])
    expect(err).toBe('')
    expect(code).toBe(0)
    expect(out.trim()).toBe('terminated')
  })

  it('a worker terminated while its stream waits for deltas leaves this thread streaming', async () => {
    // The worker's request goes on in the engine after the worker is gone: its deltas still
    // arrive for a promise whose environment was torn down.
    const dist = JSON.stringify(path.join(repoRoot, 'dist'))
    const m = JSON.stringify(model)
    const worker = `
      const { parentPort } = require('node:worker_threads');
      const { Engine } = require(${dist});
      (async () => {
        const engine = await Engine.start();
        await engine.loadModel(${m});
        for await (const d of engine.client().chat(${m}, [{ role: 'user', content: 'hi' }], { maxTokens: 300, stop: ['<never>'] }))
          parentPort.postMessage(d.content ?? '');
      })();
    `
    const script = `
      const { Worker } = require('node:worker_threads');
      const w = new Worker(${JSON.stringify(worker)}, { eval: true });
      w.on('error', (e) => { console.error(e); process.exit(3); });
      w.once('message', async () => {
        await w.terminate();
        const { Engine } = require(${dist});
        const engine = await Engine.start();
        await engine.loadModel(${m});
        const r = await engine.client().chat(${m}, [{ role: 'user', content: 'hi' }], { maxTokens: 5 });
        process.stdout.write(r.usage.completionTokens + '\\n');
      });
    `
    const { code, signal, out, err } = await spawnAndWait(['-e', script])
    expect(err).toBe('')
    expect({ code, signal }).toEqual({ code: 0, signal: null })
    expect(out.trim()).toBe('5')
  })
})
