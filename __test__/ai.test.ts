// orchard-ts/ai: the REAL AI SDK functions (generateText, streamText, generateObject, tool
// loops) driving the provider against the emulator.

import type { LanguageModelV4Prompt } from '@ai-sdk/provider'
import { InvalidArgumentError, NoSuchModelError, UnsupportedFunctionalityError } from '@ai-sdk/provider'
import type { LanguageModelUsage, TextStreamPart, ToolSet } from 'ai'
import { embed, embedMany, generateObject, generateText, isStepCount, Output, streamText, tool } from 'ai'
import { beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'

import type { ChatDelta, ChatMessage, Client, Engine, Usage } from '../src-ts'
import { ModelNotLoadedError } from '../src-ts'
import { createOrchard, type OrchardProvider } from '../src-ts/ai'
import { toMessages } from '../src-ts/ai/convert'
import { useEmulator } from './helpers'

let engine: Engine
let client: Client
let orchard: OrchardProvider
/** llama3: no native reasoning. */
let model: string
/** qwen3_5: reasons natively. */
let thinker: string

useEmulator('ai', { env: { PIE_EMULATOR_TOKEN_DELAY_MS: '1' }, thinker: true }, (e) => {
  engine = e.engine
  client = e.client
  model = e.model
  thinker = e.thinker
  orchard = createOrchard({ engine: e.engine })
})

/** The end-of-turn token id, to ban it for a request that runs until it is cancelled. */
let eot: number
beforeAll(async () => {
  const vocab = (await engine.managementCommand({ type: 'emulator_vocab' })).data?.emulator_vocab as {
    eot_token_id: number
  }
  eot = vocab.eot_token_id
})

const user = (content: string): ChatMessage[] => [{ role: 'user', content }]

/** The SDK's usage equals the client's for the same request. */
function expectSameUsage(sdk: LanguageModelUsage, ours: Usage): void {
  expect(sdk.inputTokens).toBe(ours.promptTokens)
  expect(sdk.outputTokens).toBe(ours.completionTokens)
  expect(sdk.outputTokenDetails.reasoningTokens).toBe(ours.reasoningTokens)
  expect(sdk.outputTokenDetails.textTokens).toBe(ours.completionTokens - ours.reasoningTokens)
  expect(sdk.inputTokenDetails.cacheReadTokens).toBe(ours.cachedTokens)
  expect(sdk.totalTokens).toBe(ours.totalTokens)
}

const weatherSchema = z.object({ city: z.string() })

/** The error `f` throws (the test fails when it throws none). */
function thrown(f: () => unknown): unknown {
  try {
    f()
  } catch (e) {
    return e
  }
  throw new Error('expected an error')
}

describe('generateText', () => {
  it('gives the text, finish reason and usage of the same seeded client request', async () => {
    const result = await generateText({
      model: orchard(model),
      prompt: 'Tell me about the orchard.',
      maxOutputTokens: 24,
      seed: 7,
    })
    const ours = await client.chat(model, user('Tell me about the orchard.'), { maxTokens: 24, seed: 7 })
    expect(result.text.length).toBeGreaterThan(0)
    expect(result.text).toBe(ours.text)
    expect(result.finishReason).toBe(ours.finishReason === 'length' ? 'length' : 'stop')
    expect(result.rawFinishReason).toBe(ours.finishReason)
    expectSameUsage(result.usage, ours.usage)
    const meta = result.providerMetadata?.orchard as { requestId: number; timings: { totalMs: number } }
    expect(typeof meta.requestId).toBe('number')
    expect(result.response.id).toBe(String(meta.requestId))
    expect(typeof meta.timings.totalMs).toBe('number')
    expect(result.warnings).toEqual([])
  })

  it('maps reasoning and usage on a reasoning model, and the system prompt reaches the engine', async () => {
    const result = await generateText({
      model: orchard(thinker),
      system: 'Be brief.',
      prompt: 'Tell me about the orchard.',
      maxOutputTokens: 60,
      seed: 4,
    })
    const ours = await client.chat(
      thinker,
      [{ role: 'system', content: 'Be brief.' }, ...user('Tell me about the orchard.')],
      { maxTokens: 60, seed: 4 },
    )
    expect(ours.usage.reasoningTokens).toBeGreaterThan(0)
    expect(result.reasoningText).toBe(ours.reasoning)
    expect(result.text).toBe(ours.text)
    expectSameUsage(result.usage, ours.usage)
  })

  it("reasoning 'none' turns thinking off; 'xhigh' warns and uses orchard's highest effort", async () => {
    const off = await generateText({
      model: orchard(thinker),
      prompt: 'Tell me about the orchard.',
      maxOutputTokens: 20,
      seed: 4,
      reasoning: 'none',
    })
    expect(off.reasoningText).toBeUndefined()
    expect(off.usage.outputTokenDetails.reasoningTokens).toBe(0)
    const high = await generateText({
      model: orchard(thinker),
      prompt: 'Tell me about the orchard.',
      maxOutputTokens: 40,
      seed: 4,
      reasoning: 'xhigh',
    })
    const ours = await client.chat(thinker, user('Tell me about the orchard.'), {
      maxTokens: 40,
      seed: 4,
      reasoning: 'high',
    })
    expect(high.text).toBe(ours.text)
    expect(high.warnings).toEqual([expect.objectContaining({ type: 'compatibility', feature: "reasoning 'xhigh'" })])
  })

  it('passes sampling options through (the same as the client with them)', async () => {
    const options = { temperature: 0.7, topP: 0.9, topK: 20, presencePenalty: 0.5, frequencyPenalty: 0.25, seed: 3 }
    const result = await generateText({
      model: orchard(model),
      prompt: 'Tell me about apples.',
      maxOutputTokens: 16,
      ...options,
    })
    const ours = await client.chat(model, user('Tell me about apples.'), { maxTokens: 16, ...options })
    const plain = await client.chat(model, user('Tell me about apples.'), { maxTokens: 16, seed: 3 })
    expect(result.text).toBe(ours.text)
    // The options change the text, so equality above is not by chance.
    expect(ours.text).not.toBe(plain.text)
    const stopped = await generateText({
      model: orchard(model),
      prompt: 'Tell me about apples.',
      maxOutputTokens: 16,
      seed: 3,
      stopSequences: [plain.text.split(' ')[2]!],
      include: { requestBody: true },
    })
    expect(stopped.text.length).toBeLessThan(plain.text.length)
    // The SDK's stop sequences come on top of the model's end of turn.
    const rendered = await client.renderPrompt(model, user('Tell me about apples.'))
    const sent = (stopped.request.body as { options: { stop: string[] } }).options.stop
    expect(sent).toEqual([plain.text.split(' ')[2]!, ...rendered.sampling.stop])
  })

  it('returns log-probabilities in provider metadata when asked', async () => {
    const result = await generateText({
      model: orchard(model),
      prompt: 'Hi',
      maxOutputTokens: 6,
      seed: 2,
      providerOptions: { orchard: { logprobs: 2 } },
    })
    const logprobs = (
      result.providerMetadata!.orchard as { logprobs: Array<{ token: string; topLogprobs: unknown[] }> }
    ).logprobs
    expect(logprobs).toHaveLength(result.usage.outputTokens!)
    for (const lp of logprobs) expect(lp.topLogprobs).toHaveLength(2)
    const plain = await generateText({ model: orchard(model), prompt: 'Hi', maxOutputTokens: 6, seed: 2 })
    expect(plain.providerMetadata?.orchard).not.toHaveProperty('logprobs')
  })

  it('refuses a bad provider option by name, and warns for settings it cannot honour', async () => {
    await expect(
      generateText({
        model: orchard(model),
        prompt: 'Hi',
        providerOptions: { orchard: { minP: 'low' } },
        maxRetries: 0,
      }),
    ).rejects.toSatisfy(
      (e: unknown) => InvalidArgumentError.isInstance(e) && /providerOptions\.orchard\.minP/.test((e as Error).message),
    )
    await expect(
      generateText({ model: orchard(model), prompt: 'Hi', providerOptions: { orchard: { topk: 2 } }, maxRetries: 0 }),
    ).rejects.toThrow(/providerOptions\.orchard\.topk: unknown option/)
    const result = await generateText({
      model: orchard(model),
      prompt: 'Hi',
      maxOutputTokens: 4,
      seed: 1,
      headers: { 'x-trace': '1' },
    })
    expect(result.warnings).toEqual([expect.objectContaining({ type: 'unsupported', feature: 'headers' })])
  })
})

describe('streamText', () => {
  it('streams reasoning, then text, in order, with the client’s usage', async () => {
    const result = streamText({
      model: orchard(thinker),
      prompt: 'Tell me about the orchard.',
      maxOutputTokens: 60,
      seed: 4,
    })
    const parts: Array<TextStreamPart<ToolSet>> = []
    for await (const p of result.fullStream) parts.push(p)
    const ours = await client.chat(thinker, user('Tell me about the orchard.'), { maxTokens: 60, seed: 4 })

    const kinds = parts.map((p) => p.type).filter((t) => t.startsWith('reasoning') || t.startsWith('text'))
    const firstText = kinds.indexOf('text-start')
    expect(kinds[0]).toBe('reasoning-start')
    expect(kinds.slice(1, kinds.indexOf('reasoning-end')).every((k) => k === 'reasoning-delta')).toBe(true)
    expect(kinds.indexOf('reasoning-end')).toBe(firstText - 1)
    expect(kinds.slice(firstText + 1, -1).every((k) => k === 'text-delta')).toBe(true)
    expect(kinds[kinds.length - 1]).toBe('text-end')
    expect(kinds.filter((k) => k === 'reasoning-delta').length).toBeGreaterThan(1)

    const joined = (type: 'text-delta' | 'reasoning-delta') =>
      parts.flatMap((p) => (p.type === type ? [p.text] : [])).join('')
    expect(joined('reasoning-delta')).toBe(ours.reasoning)
    expect(joined('text-delta')).toBe(ours.text)
    expect(await result.text).toBe(ours.text)
    const finish = parts.find((p) => p.type === 'finish')
    expect(finish?.type === 'finish' && finish.rawFinishReason).toBe(ours.finishReason)
    expectSameUsage(await result.usage, ours.usage)
  })

  it('abort mid-stream cancels the request in the engine', async () => {
    const controller = new AbortController()
    const result = streamText({
      model: orchard(model),
      prompt: 'Tell me a long story.',
      maxOutputTokens: 100_000,
      abortSignal: controller.signal,
      include: { rawChunks: true },
      providerOptions: { orchard: { logitBias: { [eot]: -100 } } },
    })
    let requestId: number | undefined
    let texts = 0
    const types: string[] = []
    for await (const p of result.fullStream) {
      types.push(p.type)
      if (p.type === 'raw') requestId ??= (p.rawValue as ChatDelta).requestId
      if (p.type === 'text-delta' && ++texts === 5) controller.abort()
    }
    expect(typeof requestId).toBe('number')
    expect(types).toContain('abort')
    expect(types).not.toContain('finish')
    await untilCancelled(requestId!)
  })
})

/** Poll the emulator's counters until the request is cancelled (a fact, not a delay). */
async function untilCancelled(requestId: number): Promise<void> {
  for (;;) {
    const reply = await engine.managementCommand({ type: 'emulator_request_stats', request_id: requestId })
    const stats = reply.data?.emulator_request_stats as { cancelled: boolean; active_sequences: number }
    if (stats.cancelled && stats.active_sequences === 0) return
    await new Promise<void>((resolve) => setImmediate(resolve))
  }
}

describe('doStream', () => {
  it('a reader that cancels the stream cancels the request in the engine', async () => {
    const { stream } = await orchard(model).doStream({
      prompt: [{ role: 'user', content: [{ type: 'text', text: 'Tell me a long story.' }] }],
      maxOutputTokens: 100_000,
      providerOptions: { orchard: { logitBias: { [eot]: -100 } } },
    })
    const reader = stream.getReader()
    const types: string[] = []
    let requestId: number | undefined
    while (types.filter((t) => t === 'text-delta').length < 3) {
      const { value, done } = await reader.read()
      expect(done).toBe(false)
      types.push(value!.type)
      if (value!.type === 'response-metadata') requestId = Number(value!.id)
    }
    expect(types.slice(0, 3)).toEqual(['stream-start', 'response-metadata', 'text-start'])
    await reader.cancel()
    await untilCancelled(requestId!)
  })
})

describe('structured output', () => {
  const Orchard = z.object({
    variety: z.string().min(1),
    trees: z.number().int().min(1).max(50),
    season: z.enum(['spring', 'summer', 'autumn']),
    tags: z.array(z.string()).min(1).max(3),
  })

  it('generateObject with a zod schema: the object parses and validates', async () => {
    const { object, finishReason, usage } = await generateObject({
      model: orchard(model),
      schema: Orchard,
      prompt: 'Describe an orchard.',
      seed: 22,
    })
    expect(Orchard.parse(object)).toEqual(object)
    expect(Object.keys(object).sort()).toEqual(['season', 'tags', 'trees', 'variety'])
    expect(finishReason).toBe('stop')
    expect(usage.outputTokens).toBeGreaterThan(0)
  })

  it('generateText with Output.object on a reasoning model', async () => {
    const { output, reasoningText } = await generateText({
      model: orchard(thinker),
      output: Output.object({ schema: Orchard }),
      prompt: 'Describe an orchard.',
      seed: 21,
      reasoning: 'minimal',
    })
    expect(Orchard.parse(output)).toEqual(output)
    expect(reasoningText?.trim().length).toBeGreaterThan(0)
  })
})

describe('tools', () => {
  it('a multi-step tool loop calls the tool, feeds its result back, and answers', async () => {
    const cities: string[] = []
    const tools = {
      get_weather: tool({
        description: 'Current weather for a city',
        inputSchema: weatherSchema,
        execute: async ({ city }) => {
          cities.push(city)
          return { city, forecast: 'Sunny, 21 C' }
        },
      }),
    }
    const result = await generateText({
      model: orchard(model),
      tools,
      stopWhen: isStepCount(4),
      prompt: 'Use get_weather for Paris.',
      seed: 2,
      maxOutputTokens: 32,
    })
    expect(result.steps).toHaveLength(2)
    const [first, second] = result.steps
    expect(first!.finishReason).toBe('tool-calls')
    expect(first!.toolCalls.map((c) => c.toolName)).toEqual(['get_weather'])
    expect(first!.toolResults).toHaveLength(1)
    expect(first!.toolResults[0]!.toolCallId).toBe(first!.toolCalls[0]!.toolCallId)
    expect(cities).toHaveLength(1)
    expect(cities[0]).toBe((first!.toolCalls[0]!.input as { city: string }).city)
    expect(second!.toolCalls).toEqual([])
    expect(second!.text.length).toBeGreaterThan(0)
    // The second request's prompt holds the call and its result.
    expect(second!.usage.inputTokens).toBeGreaterThan(first!.usage.inputTokens!)
    expect(result.text).toBe(second!.text)
  })

  it('streams tool-call inputs whose deltas add up to the call input', async () => {
    const tools = {
      get_weather: tool({ description: 'Current weather for a city', inputSchema: weatherSchema }),
      get_time: tool({
        description: 'The time in a zone',
        inputSchema: z.object({ zone: z.string(), hours: z.number().int().min(0).max(23) }),
      }),
    }
    const result = streamText({ model: orchard(model), tools, prompt: 'Use get_weather and then get_time.', seed: 5 })
    const parts: Array<TextStreamPart<typeof tools>> = []
    for await (const p of result.fullStream) parts.push(p)
    const calls = parts.flatMap((p) => (p.type === 'tool-call' ? [p] : []))
    expect(calls.map((c) => c.toolName)).toEqual(['get_weather', 'get_time'])
    for (const call of calls) {
      const start = parts.findIndex((p) => p.type === 'tool-input-start' && p.id === call.toolCallId)
      const end = parts.findIndex((p) => p.type === 'tool-input-end' && p.id === call.toolCallId)
      expect(start).toBeGreaterThanOrEqual(0)
      expect(end).toBeGreaterThan(start)
      const deltas = parts.flatMap((p) => (p.type === 'tool-input-delta' && p.id === call.toolCallId ? [p.delta] : []))
      expect(deltas.length).toBeGreaterThan(2)
      expect(JSON.parse(deltas.join(''))).toEqual(call.input)
    }
    expect(await result.finishReason).toBe('tool-calls')
  })

  it("toolChoice 'none' answers in text; a named tool is the one called", async () => {
    const tools = {
      get_weather: tool({ inputSchema: weatherSchema }),
      get_time: tool({ inputSchema: z.object({ zone: z.string() }) }),
    }
    const none = await generateText({
      model: orchard(model),
      tools,
      toolChoice: 'none',
      prompt: 'Use get_weather.',
      maxOutputTokens: 12,
      seed: 5,
    })
    expect(none.toolCalls).toEqual([])
    expect(none.text.length).toBeGreaterThan(0)
    const named = await generateText({
      model: orchard(model),
      tools,
      toolChoice: { type: 'tool', toolName: 'get_time' },
      prompt: 'Use get_weather.',
      seed: 3,
    })
    expect(named.toolCalls.map((c) => c.toolName)).toEqual(['get_time'])
  })
})

describe('prompt conversion', () => {
  const png = new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10])

  it('maps every message kind onto orchard chat messages', () => {
    const prompt: LanguageModelV4Prompt = [
      { role: 'system', content: 'Be brief.' },
      {
        role: 'user',
        content: [
          { type: 'text', text: 'What is in ' },
          { type: 'text', text: 'this photo?' },
          { type: 'file', mediaType: 'image/png', data: { type: 'data', data: png } },
        ],
      },
      {
        role: 'assistant',
        content: [
          { type: 'reasoning', text: 'A photo; check the weather.' },
          { type: 'text', text: 'Checking.' },
          { type: 'tool-call', toolCallId: 'call_1', toolName: 'get_weather', input: { city: 'Paris' } },
        ],
      },
      {
        role: 'tool',
        content: [
          {
            type: 'tool-result',
            toolCallId: 'call_1',
            toolName: 'get_weather',
            output: { type: 'json', value: { forecast: 'sun' } },
          },
          {
            type: 'tool-result',
            toolCallId: 'call_2',
            toolName: 'get_time',
            output: { type: 'error-text', value: 'no such zone' },
          },
        ],
      },
      { role: 'user', content: [{ type: 'text', text: 'Thanks.' }] },
    ]
    expect(toMessages(prompt)).toEqual([
      { role: 'system', content: 'Be brief.' },
      {
        role: 'user',
        content: [
          { type: 'text', text: 'What is in ' },
          { type: 'text', text: 'this photo?' },
          { type: 'image_url', image_url: { url: `data:image/png;base64,${Buffer.from(png).toString('base64')}` } },
        ],
      },
      {
        role: 'assistant',
        content: 'Checking.',
        reasoning_content: 'A photo; check the weather.',
        tool_calls: [
          { id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: { city: 'Paris' } } },
        ],
      },
      { role: 'tool', tool_call_id: 'call_1', content: '{"forecast":"sun"}' },
      { role: 'tool', tool_call_id: 'call_2', content: 'no such zone' },
      { role: 'user', content: 'Thanks.' },
    ])
  })

  it('refuses a file orchard cannot read, naming it', () => {
    const prompt: LanguageModelV4Prompt = [
      {
        role: 'user',
        content: [{ type: 'file', mediaType: 'application/pdf', filename: 'a.pdf', data: { type: 'data', data: png } }],
      },
    ]
    const e = thrown(() => toMessages(prompt))
    expect(UnsupportedFunctionalityError.isInstance(e)).toBe(true)
    expect((e as Error).message).toMatch(/prompt\[0\]\.content\[0\].*application\/pdf/)
  })

  it('the rendered prompt of a mapped conversation is the client’s', async () => {
    const mapped = toMessages([
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: [{ type: 'text', text: 'Use get_weather.' }] },
      {
        role: 'assistant',
        content: [{ type: 'tool-call', toolCallId: 'c1', toolName: 'get_weather', input: { city: 'Paris' } }],
      },
      {
        role: 'tool',
        content: [
          { type: 'tool-result', toolCallId: 'c1', toolName: 'get_weather', output: { type: 'text', value: 'Sunny' } },
        ],
      },
    ])
    const direct: ChatMessage[] = [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Use get_weather.' },
      {
        role: 'assistant',
        content: '',
        tool_calls: [{ id: 'c1', type: 'function', function: { name: 'get_weather', arguments: '{"city": "Paris"}' } }],
      },
      { role: 'tool', tool_call_id: 'c1', content: 'Sunny' },
    ]
    const [a, b] = await Promise.all([client.renderPrompt(model, mapped), client.renderPrompt(model, direct)])
    expect(a.prompt).toBe(b.prompt)
    expect(a.prompt).toContain('Sunny')
  })
})

describe('provider', () => {
  it('has no image models: NoSuchModelError', () => {
    const e = thrown(() => orchard.imageModel('x'))
    expect(NoSuchModelError.isInstance(e)).toBe(true)
    expect((e as Error).message).toMatch(/orchard has no image models yet \('x'\)/)
  })

  it('orchard(id) and languageModel(id) are v4 language models of the id', () => {
    const m = orchard(model)
    expect(m.specificationVersion).toBe('v4')
    expect(m.provider).toBe('orchard')
    expect(m.modelId).toBe(model)
    expect(orchard.languageModel(model).modelId).toBe(model)
    expect(orchard.specificationVersion).toBe('v4')
  })

  it('a model that is not loaded fails the call with the engine’s error', async () => {
    await expect(generateText({ model: orchard('/no/such/model'), prompt: 'Hi', maxRetries: 0 })).rejects.toSatisfy(
      (e: unknown) => e instanceof ModelNotLoadedError && /'\/no\/such\/model' is not loaded/.test(e.message),
    )
  })
})

describe('embeddings (embed / embedMany)', () => {
  const same = (a: number[], b: Float32Array): boolean => a.length === b.length && a.every((x, i) => x === b[i])

  it('embeddingModel(id) and textEmbeddingModel(id) are v4 embedding models of the id', async () => {
    const m = orchard.embeddingModel(model)
    expect(m.specificationVersion).toBe('v4')
    expect(m.provider).toBe('orchard')
    expect(m.modelId).toBe(model)
    expect(m.maxEmbeddingsPerCall).toBeGreaterThanOrEqual(256)
    expect(m.supportsParallelCalls).toBe(true)
    expect(orchard.textEmbeddingModel(model).modelId).toBe(model)
    const e = thrown(() => orchard.embeddingModel(''))
    expect(NoSuchModelError.isInstance(e)).toBe(true)
  })

  it('embed gives the vector client.embed gives, with usage', async () => {
    const value = 'Apples ripen in the autumn orchard.'
    const [sdk, ours] = await Promise.all([
      embed({ model: orchard.embeddingModel(model), value, maxRetries: 0 }),
      client.embed(model, value),
    ])
    expect(sdk.value).toBe(value)
    expect(sdk.embedding).toHaveLength(ours.dimensions)
    expect(same(sdk.embedding, ours.embeddings[0]!)).toBe(true)
    expect(sdk.usage.tokens).toBe(ours.usage.promptTokens)
    expect(sdk.warnings).toEqual([])
  })

  it('embedMany sends the values as one request and keeps their order', async () => {
    const values = ['pears', 'plums and apples', 'a quiet engine', 'pears']
    const m = orchard.embeddingModel(model)
    const { embeddings, usage, providerMetadata } = await embedMany({ model: m, values, maxRetries: 0 })
    expect(embeddings).toHaveLength(values.length)
    const singles = await Promise.all(values.map((v) => client.embed(model, v)))
    for (const [i, e] of embeddings.entries()) expect(same(e, singles[i]!.embeddings[0]!)).toBe(true)
    expect(embeddings[0]).toEqual(embeddings[3])
    expect(embeddings[0]).not.toEqual(embeddings[1])
    expect(usage.tokens).toBe(singles.reduce((n, s) => n + s.usage.promptTokens, 0))
    const requestId = (providerMetadata!.orchard as { requestId: number }).requestId
    const reply = await engine.managementCommand({ type: 'emulator_request_stats', request_id: requestId })
    expect((reply.data!.emulator_request_stats as { published_deltas: number }).published_deltas).toBe(values.length)
  })

  it('a dimensions option the model cannot honour is a warning, not a smaller vector', async () => {
    const r = await embed({ model: orchard.embeddingModel(model), value: 'apples', dimensions: 4, maxRetries: 0 })
    expect(r.embedding).toHaveLength(16)
    expect(r.warnings).toEqual([expect.objectContaining({ type: 'unsupported', feature: 'dimensions' })])
  })

  it('an aborted abortSignal cancels the engine request', async () => {
    const controller = new AbortController()
    const long = 'Apple trees blossom in the orchard every spring. '.repeat(4000)
    const m = orchard.embeddingModel(model)
    const p = m.doEmbed({ values: [long], abortSignal: controller.signal })
    controller.abort()
    await expect(p).rejects.toSatisfy((e: unknown) => e instanceof Error && e.name === 'AbortError')
  })

  it('a model that is not loaded fails the call with ModelNotLoadedError', async () => {
    await expect(
      embed({ model: orchard.embeddingModel('/no/such/model'), value: 'x', maxRetries: 0 }),
    ).rejects.toBeInstanceOf(ModelNotLoadedError)
  })
})
