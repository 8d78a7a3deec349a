// orchard-ts/server driven by the official `openai` client against the emulator, over HTTP on
// 127.0.0.1 (ephemeral ports): chat (plain, streamed, n, logprobs, reasoning, tools, parsed
// JSON), Responses, legacy completions, models, cancellation, error statuses, concurrency.
import OpenAI from 'openai'
import { zodResponseFormat } from 'openai/helpers/zod'
import type {
  ChatCompletionChunk,
  ChatCompletionMessageParam,
  ChatCompletionTool,
} from 'openai/resources/chat/completions'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { z } from 'zod'

import type { ChatMessage, Client, Engine, FunctionTool } from '../src-ts'
import { createServer, type OrchardServer } from '../src-ts/server'
import { startTestEngine } from '../src-ts/testing'
import { makeModelDir, useEmulator } from './helpers'
import { settledStats, until, weatherAndTime } from './pipeline-fixtures'
import { serveOpenAI, apiError as status } from './server-fixtures'

let engine: Engine
let client: Client
let model: string
let thinker: string
let cacheRoot: string

useEmulator('server', { env: { PIE_EMULATOR_TOKEN_DELAY_MS: '1' }, thinker: true }, (e) => {
  engine = e.engine
  client = e.client
  model = e.model
  thinker = e.thinker
  cacheRoot = e.cacheRoot
})

let server: OrchardServer
let baseURL: string
let openai: OpenAI

/**
 * Fields of a request that runs until it is cancelled: the emulator's replies otherwise end at
 * a sentence end after a dozen tokens, possibly before a cancel arrives.
 */
let forever: { max_tokens: number; stop: string[]; logit_bias: Record<string, number> }
beforeAll(async () => {
  const vocab = (await engine.managementCommand({ type: 'emulator_vocab' })).data?.emulator_vocab as {
    eot_token_id: number
  }
  forever = { max_tokens: 100_000, stop: ['<never>'], logit_bias: { [vocab.eot_token_id]: -100 } }
})

/** A server of its own (closed after the file), with an OpenAI client for it. */
async function serve(
  options: Partial<Parameters<typeof createServer>[0]> = {},
  apiKey = 'unused',
): Promise<{ server: OrchardServer; url: string; openai: OpenAI }> {
  const served = await serveOpenAI({ engine, ...options }, apiKey)
  extra.push(served.server)
  return served
}
const extra: OrchardServer[] = []

beforeAll(async () => {
  let host: string
  ;({ server, host, baseURL, openai } = await serveOpenAI({ engine, models: [model, thinker] }))
  expect(host).toBe('127.0.0.1')
})

afterAll(async () => {
  await Promise.all([server, ...extra].map((s) => s?.close({ graceMs: 1_000 })))
})

const user = (content: string): ChatCompletionMessageParam[] => [{ role: 'user', content }]

/** What `client.chat` gives for the same request, straight through the library. */
async function direct(on: string, messages: ChatMessage[], options: Parameters<Client['chat']>[2]) {
  return client.chat(on, messages, options)
}

/** Whether the engine cancelled a request (polled until it did, or it ended without). */
async function cancelledInEngine(requestId: number): Promise<boolean> {
  return (await settledStats(engine, requestId)).cancelled
}

const tools: ChatCompletionTool[] = weatherAndTime
const orchardTools = tools as unknown as FunctionTool[]

describe('chat completions', () => {
  it('create: the text, usage and request id of the same request made directly', async () => {
    const { data, response } = await openai.chat.completions
      .create({ model, messages: user('Tell me about the orchard.'), seed: 3, max_tokens: 24 })
      .withResponse()
    const expected = await direct(model, [{ role: 'user', content: 'Tell me about the orchard.' }], {
      seed: 3,
      maxTokens: 24,
    })
    expect(data.object).toBe('chat.completion')
    expect(data.id).toMatch(/^chatcmpl-/)
    expect(data.model).toBe(model)
    expect(data.choices).toHaveLength(1)
    expect(data.choices[0]!.message.role).toBe('assistant')
    expect(data.choices[0]!.message.content).toBe(expected.text)
    expect(data.choices[0]!.finish_reason).toBe(expected.finishReason === 'length' ? 'length' : 'stop')
    expect(data.choices[0]!.logprobs).toBeNull()
    expect(data.usage).toMatchObject({
      prompt_tokens: expected.usage.promptTokens,
      completion_tokens: expected.usage.completionTokens,
      total_tokens: expected.usage.totalTokens,
    })
    expect(Number(response.headers.get('x-request-id'))).toBeGreaterThan(0)
  })

  it('max_completion_tokens limits the answer and finishes with length', async () => {
    const r = await openai.chat.completions.create({
      model,
      messages: user('Tell me a long story.'),
      seed: 1,
      max_completion_tokens: 5,
      stop: ['<never>'],
    })
    expect(r.usage!.completion_tokens).toBe(5)
    expect(r.choices[0]!.finish_reason).toBe('length')
  })

  it('stream: chunks add up to the same text, then finish_reason, usage and [DONE]', async () => {
    const stream = await openai.chat.completions.create({
      model,
      messages: user('Tell me about the orchard.'),
      seed: 3,
      max_tokens: 24,
      stream: true,
      stream_options: { include_usage: true },
    })
    const chunks: ChatCompletionChunk[] = []
    for await (const chunk of stream) chunks.push(chunk)
    const expected = await direct(model, [{ role: 'user', content: 'Tell me about the orchard.' }], {
      seed: 3,
      maxTokens: 24,
    })
    expect(chunks.every((c) => c.object === 'chat.completion.chunk' && c.id === chunks[0]!.id)).toBe(true)
    expect(chunks[0]!.choices[0]!.delta.role).toBe('assistant')
    const text = chunks.flatMap((c) => c.choices.map((ch) => ch.delta.content ?? '')).join('')
    expect(text).toBe(expected.text)
    const finishes = chunks.flatMap((c) => c.choices.filter((ch) => ch.finish_reason !== null))
    expect(finishes).toHaveLength(1)
    // Usage: on the last chunk only, with no choices; null on the others.
    const last = chunks.at(-1)!
    expect(last.choices).toEqual([])
    expect(last.usage).toMatchObject({
      completion_tokens: expected.usage.completionTokens,
      prompt_tokens: expected.usage.promptTokens,
    })
    expect(chunks.slice(0, -1).every((c) => c.usage === null)).toBe(true)
  })

  it('the raw stream is SSE ending with data: [DONE]', async () => {
    const res = await fetch(`${baseURL}/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model, messages: user('Hi'), seed: 1, max_tokens: 4, stream: true }),
    })
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/)
    const body = await res.text()
    const events = body.split('\n\n').filter((e) => e.length > 0)
    expect(events.at(-1)).toBe('data: [DONE]')
    for (const e of events.slice(0, -1))
      expect((JSON.parse(e.slice('data: '.length)) as { object: string }).object).toBe('chat.completion.chunk')
  })

  it('n: every choice, as the library returns them', async () => {
    const r = await openai.chat.completions.create({
      model,
      messages: user('Name a fruit.'),
      seed: 9,
      max_tokens: 10,
      n: 3,
    })
    const expected = await direct(model, [{ role: 'user', content: 'Name a fruit.' }], { seed: 9, maxTokens: 10, n: 3 })
    expect(r.choices.map((c) => c.index)).toEqual([0, 1, 2])
    expect(r.choices.map((c) => c.message.content)).toEqual(expected.choices.map((c) => c.text))

    const stream = await openai.chat.completions.create({
      model,
      messages: user('Name a fruit.'),
      seed: 9,
      max_tokens: 10,
      n: 3,
      stream: true,
    })
    const texts = ['', '', '']
    const finished = new Set<number>()
    for await (const chunk of stream) {
      for (const ch of chunk.choices) {
        texts[ch.index] += ch.delta.content ?? ''
        if (ch.finish_reason) finished.add(ch.index)
      }
    }
    expect(texts).toEqual(expected.choices.map((c) => c.text))
    expect([...finished].sort()).toEqual([0, 1, 2])
  })

  it('logprobs: the chosen token with its real log-probability and top_logprobs alternatives', async () => {
    const r = await openai.chat.completions.create({
      model,
      messages: user('Say something.'),
      seed: 4,
      max_tokens: 8,
      logprobs: true,
      top_logprobs: 3,
    })
    const content = r.choices[0]!.logprobs!.content!
    expect(content).toHaveLength(r.usage!.completion_tokens)
    expect(content.map((l) => l.token).join('')).toBe(r.choices[0]!.message.content)
    for (const l of content) {
      expect(l.logprob).toBeLessThanOrEqual(0)
      expect(l.logprob).toBeGreaterThan(-100)
      expect(l.top_logprobs).toHaveLength(3)
      expect(l.bytes).toEqual([...Buffer.from(l.token)])
      // The alternatives are ordered, and the chosen token is at most as likely as the best.
      const tops = l.top_logprobs.map((t) => t.logprob)
      expect([...tops].sort((a, b) => b - a)).toEqual(tops)
      expect(l.logprob).toBeLessThanOrEqual(tops[0]! + 1e-6)
    }

    // logprobs without top_logprobs: no alternatives, the chosen token still has its value.
    const plain = await openai.chat.completions.create({
      model,
      messages: user('Say something.'),
      seed: 4,
      max_tokens: 8,
      logprobs: true,
    })
    const first = plain.choices[0]!.logprobs!.content!
    expect(first).toHaveLength(content.length)
    for (const [i, l] of first.entries()) expect(l.logprob).toBeCloseTo(content[i]!.logprob, 9)
    expect(first.every((l) => l.top_logprobs.length === 0)).toBe(true)
  })

  it('stop strings end the answer before them', async () => {
    const full = await openai.chat.completions.create({
      model,
      messages: user('Tell me about the orchard.'),
      seed: 3,
      max_tokens: 24,
    })
    const text = full.choices[0]!.message.content!
    const word = text.split(/\s+/).filter((w) => w.length > 2)[2]!
    const r = await openai.chat.completions.create({
      model,
      messages: user('Tell me about the orchard.'),
      seed: 3,
      max_tokens: 24,
      stop: [word],
    })
    expect(r.choices[0]!.message.content).toBe(text.slice(0, text.indexOf(word)))
    expect(r.choices[0]!.finish_reason).toBe('stop')
  })

  it('reasoning_effort: reasoning in reasoning_content, never in content (plain and streamed)', async () => {
    const r = await openai.chat.completions.create({
      model: thinker,
      messages: user('Tell me about the orchard.'),
      seed: 4,
      max_tokens: 60,
      reasoning_effort: 'low',
    })
    const expected = await direct(thinker, [{ role: 'user', content: 'Tell me about the orchard.' }], {
      seed: 4,
      maxTokens: 60,
      reasoning: 'low',
    })
    const message = r.choices[0]!.message as (typeof r.choices)[0]['message'] & { reasoning_content?: string }
    expect(message.reasoning_content).toBe(expected.reasoning)
    expect(message.reasoning_content!.trim().length).toBeGreaterThan(0)
    expect(message.content).toBe(expected.text)
    expect(r.usage!.completion_tokens_details!.reasoning_tokens).toBe(expected.usage.reasoningTokens)

    const stream = await openai.chat.completions.create({
      model: thinker,
      messages: user('Tell me about the orchard.'),
      seed: 4,
      max_tokens: 60,
      reasoning_effort: 'low',
      stream: true,
    })
    let reasoning = ''
    let text = ''
    for await (const chunk of stream) {
      const d = chunk.choices[0]?.delta as { content?: string | null; reasoning_content?: string } | undefined
      reasoning += d?.reasoning_content ?? ''
      text += d?.content ?? ''
    }
    expect(reasoning.trim()).toBe(expected.reasoning!.trim())
    expect(text).toBe(expected.text)

    const off = await openai.chat.completions.create({
      model: thinker,
      messages: user('Tell me about the orchard.'),
      seed: 4,
      max_tokens: 20,
      reasoning_effort: 'none',
    })
    expect((off.choices[0]!.message as { reasoning_content?: string }).reasoning_content).toBeUndefined()
    expect(off.usage!.completion_tokens_details!.reasoning_tokens).toBe(0)
  })

  it('image_url content parts reach a vision model', async () => {
    const vision = makeModelDir(cacheRoot, 'tiny-gemma4u', { model_type: 'gemma4u' })
    await engine.loadModel(vision)
    const png =
      'data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8/5+hHgAHggJ/PchI7wAAAABJRU5ErkJggg=='
    const { openai: o } = await serve({ models: [vision] })
    const messages: ChatCompletionMessageParam[] = [
      {
        role: 'user',
        content: [
          { type: 'text', text: 'What is this?' },
          { type: 'image_url', image_url: { url: png, detail: 'low' } },
        ],
      },
    ]
    const r = await o.chat.completions.create({ model: vision, messages, seed: 2, max_tokens: 8 })
    const expected = await direct(
      vision,
      [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'What is this?' },
            { type: 'image_url', image_url: { url: png } },
          ],
        },
      ],
      {
        seed: 2,
        maxTokens: 8,
      },
    )
    expect(r.usage!.prompt_tokens).toBe(expected.usage.promptTokens)
    expect(r.choices[0]!.message.content).toBe(expected.text)
    const bad = await status(
      o.chat.completions.create({
        model: vision,
        messages: [
          {
            role: 'user',
            content: [
              { type: 'text', text: 'hi' },
              { type: 'image_url', image_url: { url: 'data:image/png;base64,@@@' } },
            ],
          },
        ],
      }),
    )
    expect(bad.status).toBe(400)
    expect(bad.message).toMatch(/messages\[0\]\.content\[1\]\.image_url/)
  })
})

describe('tools and structured output', () => {
  it('a tool round trip: the call, then the answer to its result', async () => {
    const messages = user('Use get_weather for Paris.')
    const first = await openai.chat.completions.create({ model, messages, tools, seed: 2 })
    const expected = await direct(model, [{ role: 'user', content: 'Use get_weather for Paris.' }], {
      tools: orchardTools,
      seed: 2,
    })
    const choice = first.choices[0]!
    expect(choice.finish_reason).toBe('tool_calls')
    expect(choice.message.content).toBeNull()
    const calls = choice.message.tool_calls!
    expect(calls).toHaveLength(1)
    const call = calls[0]!
    expect(call.type).toBe('function')
    expect(call.id).toMatch(/^call_/)
    if (call.type !== 'function') throw new Error('expected a function call')
    expect(call.function.name).toBe('get_weather')
    expect(JSON.parse(call.function.arguments)).toEqual(expected.toolCalls[0]!.arguments)

    // The client's own message goes back as it came, with the tool's result after it.
    const followUp: ChatCompletionMessageParam[] = [
      ...messages,
      choice.message,
      { role: 'tool', tool_call_id: call.id, content: '{"temperature": 21}' },
    ]
    const second = await openai.chat.completions.create({
      model,
      messages: followUp,
      tools,
      tool_choice: 'none',
      seed: 2,
      max_tokens: 16,
    })
    expect(second.choices[0]!.message.tool_calls).toBeUndefined()
    expect(second.choices[0]!.message.content!.length).toBeGreaterThan(0)
  })

  it('streamed parallel tool calls: deltas with index, id, name and arguments', async () => {
    const expected = await direct(model, [{ role: 'user', content: 'Use get_weather and then get_time.' }], {
      tools: orchardTools,
      seed: 5,
    })
    expect(expected.toolCalls).toHaveLength(2)
    const stream = await openai.chat.completions.create({
      model,
      messages: user('Use get_weather and then get_time.'),
      tools,
      seed: 5,
      stream: true,
    })
    const calls: Array<{ id: string; name: string; arguments: string }> = []
    let finish: string | null = null
    for await (const chunk of stream) {
      const ch = chunk.choices[0]
      if (!ch) continue
      for (const tc of ch.delta.tool_calls ?? []) {
        if (tc.id) {
          expect(tc.index).toBe(calls.length)
          calls.push({ id: tc.id, name: tc.function!.name!, arguments: tc.function?.arguments ?? '' })
        } else calls[tc.index]!.arguments += tc.function?.arguments ?? ''
      }
      finish = ch.finish_reason ?? finish
    }
    expect(finish).toBe('tool_calls')
    expect(calls.map((c) => c.name)).toEqual(['get_weather', 'get_time'])
    expect(new Set(calls.map((c) => c.id)).size).toBe(2)
    expect(calls.map((c) => JSON.parse(c.arguments) as unknown)).toEqual(expected.toolCalls.map((c) => c.arguments))

    // The client's stream helper assembles the same calls.
    const runner = openai.chat.completions.stream({
      model,
      messages: user('Use get_weather and then get_time.'),
      tools,
      seed: 5,
    })
    const final = await runner.finalChatCompletion()
    expect(
      final.choices[0]!.message.tool_calls!.map((c) =>
        c.type === 'function' ? [c.function.name, JSON.parse(c.function.arguments) as unknown] : null,
      ),
    ).toEqual(expected.toolCalls.map((c) => [c.name, c.arguments]))
  })

  it('parallel_tool_calls: false allows one call', async () => {
    const r = await openai.chat.completions.create({
      model,
      messages: user('Use get_weather and then get_time.'),
      tools,
      seed: 5,
      parallel_tool_calls: false,
    })
    expect(r.choices[0]!.message.tool_calls).toHaveLength(1)
  })

  it('chat.completions.parse with a zod schema', async () => {
    const City = z.object({ name: z.string(), population: z.number().int(), fruits: z.array(z.string()) })
    const r = await openai.chat.completions.parse({
      model,
      messages: user('Describe a city as JSON.'),
      seed: 7,
      response_format: zodResponseFormat(City, 'city'),
    })
    const parsed = r.choices[0]!.message.parsed
    expect(parsed).not.toBeNull()
    expect(City.parse(parsed)).toEqual(parsed)
  })

  it('response_format json_object gives a JSON object', async () => {
    const r = await openai.chat.completions.create({
      model,
      messages: user('Give me JSON.'),
      seed: 8,
      response_format: { type: 'json_object' },
    })
    const value = JSON.parse(r.choices[0]!.message.content!) as unknown
    expect(typeof value).toBe('object')
    expect(Array.isArray(value)).toBe(false)
  })
})

describe('responses', () => {
  it('responses.create: the response object of the library', async () => {
    const r = await openai.responses.create({
      model,
      input: 'Tell me about the orchard.',
      max_output_tokens: 20,
      seed: 3,
    } as OpenAI.Responses.ResponseCreateParamsNonStreaming)
    const expected = await client.responses(model, {
      input: 'Tell me about the orchard.',
      max_output_tokens: 20,
      seed: 3,
    })
    expect(r.object).toBe('response')
    expect(r.id).toMatch(/^resp_/)
    expect(r.output_text).toBe(expected.outputText)
    expect(r.usage).toEqual(expected.usage)
    expect(r.status).toBe(expected.status)
  })

  it('responses.create streamed: typed events, text deltas, then response.completed', async () => {
    const stream = await openai.responses.create({
      model,
      input: 'Tell me about the orchard.',
      max_output_tokens: 20,
      seed: 3,
      stream: true,
    } as OpenAI.Responses.ResponseCreateParamsStreaming)
    const types: string[] = []
    let text = ''
    let final: OpenAI.Responses.Response | undefined
    for await (const event of stream) {
      types.push(event.type)
      if (event.type === 'response.output_text.delta') text += event.delta
      if (event.type === 'response.completed' || event.type === 'response.incomplete') final = event.response
    }
    const expected = await client.responses(model, {
      input: 'Tell me about the orchard.',
      max_output_tokens: 20,
      seed: 3,
    })
    expect(types[0]).toBe('response.created')
    expect(types).toContain('response.output_item.added')
    expect(text).toBe(expected.outputText)
    expect(final!.usage).toEqual(expected.usage)
  })

  it('an invalid Responses field is a 400 naming it', async () => {
    const err = await status(openai.responses.create({ model, input: 'hi', max_output_tokens: -1 }))
    expect(err.status).toBe(400)
    expect(err.message).toMatch(/max_output_tokens/)
  })
})

describe('legacy completions', () => {
  it('the prompt is answered as a single user turn', async () => {
    const r = await openai.completions.create({ model, prompt: 'Tell me about the orchard.', seed: 3, max_tokens: 12 })
    const expected = await direct(model, [{ role: 'user', content: 'Tell me about the orchard.' }], {
      seed: 3,
      maxTokens: 12,
    })
    expect(r.object).toBe('text_completion')
    expect(r.choices[0]!.text).toBe(expected.text)
    expect(r.usage!.completion_tokens).toBe(expected.usage.completionTokens)

    const stream = await openai.completions.create({
      model,
      prompt: ['Tell me about the orchard.', 'Name a fruit.'],
      seed: 3,
      max_tokens: 12,
      stream: true,
    })
    const texts = ['', '']
    for await (const chunk of stream) for (const ch of chunk.choices) texts[ch.index] += ch.text
    expect(texts[0]).toBe(expected.text)
    expect(texts[1]).toBe(
      (await direct(model, [{ role: 'user', content: 'Name a fruit.' }], { seed: 3, maxTokens: 12 })).text,
    )
  })
})

describe('models', () => {
  it('models.list and models.retrieve give the served models', async () => {
    const list = await openai.models.list()
    expect(list.data.map((m) => m.id)).toEqual([model, thinker])
    expect(list.data[0]).toMatchObject({ object: 'model', owned_by: 'orchard' })
    expect((await openai.models.retrieve(model)).id).toBe(model)
    expect((await status(openai.models.retrieve('org/not-served'))).status).toBe(404)
  })

  it('without a models list, the engine’s loaded models are served', async () => {
    const { openai: o } = await serve()
    const ids = (await o.models.list()).data.map((m) => m.id)
    expect(ids).toEqual(expect.arrayContaining([model, thinker]))
    const err = await status(o.chat.completions.create({ model: '/nowhere/model', messages: user('hi') }))
    expect(err.status).toBe(404)
  })
})

describe('cancellation', () => {
  it('aborting the client’s stream cancels the engine request', async () => {
    const controller = new AbortController()
    const { data: stream, response } = await openai.chat.completions
      .create(
        { model, messages: user('Tell me a long story.'), ...forever, stream: true },
        { signal: controller.signal },
      )
      .withResponse()
    const requestId = Number(response.headers.get('x-request-id'))
    expect(requestId).toBeGreaterThan(0)
    let chunks = 0
    const consumed = (async () => {
      for await (const chunk of stream) {
        void chunk
        if (++chunks === 3) controller.abort()
      }
    })()
    await consumed.catch(() => undefined)
    expect(chunks).toBe(3)
    expect(await cancelledInEngine(requestId)).toBe(true)
  })

  it('a non-streamed request whose client goes away is cancelled too', async () => {
    const controller = new AbortController()
    const pending = fetch(`${baseURL}/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model, messages: user('Tell me a long story.'), ...forever }),
      signal: controller.signal,
    })
    // The request id is not sent before the answer: find the request in the server's count.
    await until(() => server.inFlight > 0)
    controller.abort()
    await expect(pending).rejects.toThrow()
    // A 100 000-token answer would hold it for minutes: it ends because it was cancelled.
    await until(() => server.inFlight === 0)
  })

  it('close() cancels what is still running after the grace period', async () => {
    const { server: s, url } = await serve()
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model,
        messages: user('Tell me a long story.'),
        ...forever,
        stream: true,
      }),
    })
    const requestId = Number(res.headers.get('x-request-id'))
    const body = res.text()
    await s.close({ graceMs: 1 })
    expect(s.inFlight).toBe(0)
    // The stream ends with an error object instead of [DONE].
    const text = await body
    expect(text).not.toContain('[DONE]')
    expect(text).toMatch(/data: \{"error":\{"message":"[^"]*shutting down/)
    expect(await cancelledInEngine(requestId)).toBe(true)
  })
})

describe('errors', () => {
  it('400 names the field: unknown fields, bad shapes, values the core refuses', async () => {
    const unknown = await status(
      openai.chat.completions.create({ model, messages: user('hi'), frobnicate: 1 } as never),
    )
    expect(unknown.status).toBe(400)
    expect(unknown.error).toMatchObject({ type: 'invalid_request_error', param: 'frobnicate' })

    const range = await status(openai.chat.completions.create({ model, messages: user('hi'), top_k: 0 } as never))
    expect(range.status).toBe(400)
    expect(range.error).toMatchObject({ param: 'top_k' })
    expect(range.message).toMatch(/^400 top_k: /)

    // top_logprobs: the core's range, in its words, named as the caller wrote it.
    const tops = await status(
      openai.chat.completions.create({ model, messages: user('hi'), logprobs: true, top_logprobs: 21 }),
    )
    expect(tops.status).toBe(400)
    expect(tops.error).toMatchObject({ param: 'top_logprobs' })
    expect(tops.message).toMatch(/^400 top_logprobs: 21 is out of range; use 0 to 20$/)

    const noId = await status(
      openai.chat.completions.create({ model, messages: [{ role: 'tool', content: 'x' } as never] }),
    )
    expect(noId.status).toBe(400)
    expect(noId.error).toMatchObject({ param: 'messages[0].tool_call_id' })

    const json = await fetch(`${baseURL}/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"model":',
    })
    expect(json.status).toBe(400)
    expect(((await json.json()) as { error: { param: string } }).error.param).toBe('body')

    // Accepted and ignored: standard fields without meaning here.
    const ok = await openai.chat.completions.create({
      model,
      messages: user('hi'),
      max_tokens: 2,
      user: 'me',
      store: false,
      metadata: { a: 'b' },
    })
    expect(ok.choices).toHaveLength(1)
  })

  it('401 without the configured key', async () => {
    const { url } = await serve({ apiKey: 'sekret' })
    const wrong = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'nope', maxRetries: 0 })
    const err = await status(wrong.models.list())
    expect(err.status).toBe(401)
    expect(err.code).toBe('invalid_api_key')
    const right = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'sekret', maxRetries: 0 })
    expect((await right.models.list()).data.length).toBeGreaterThan(0)
  })

  it('404 for an unknown model and an unknown route', async () => {
    const err = await status(openai.chat.completions.create({ model: 'org/unknown', messages: user('hi') }))
    expect(err.status).toBe(404)
    expect(err.error).toMatchObject({ param: 'model', code: 'model_not_found' })
    const res = await fetch(`${baseURL}/audio/translations`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    })
    expect(res.status).toBe(404)
    expect(((await res.json()) as { error: { type: string } }).error.type).toBe('invalid_request_error')
  })

  it('413 over the body limit', async () => {
    const { openai: o } = await serve({ bodyLimit: 1024 })
    const err = await status(o.chat.completions.create({ model, messages: user('x'.repeat(2048)) }))
    expect(err.status).toBe(413)
    expect(err.error).toMatchObject({ type: 'invalid_request_error' })
  })

  it('503 when the engine died', async () => {
    const t = await startTestEngine()
    try {
      const s = createServer({ engine: t.engine })
      extra.push(s)
      const { url } = await s.listen({ port: 0 })
      const o = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'x', maxRetries: 0 })
      expect(
        (await o.chat.completions.create({ model: t.model, messages: user('hi'), max_tokens: 2 })).choices,
      ).toHaveLength(1)
      process.kill(t.engine.pid, 'SIGKILL')
      const err = await status(o.chat.completions.create({ model: t.model, messages: user('hi'), max_tokens: 2 }))
      expect(err.status).toBe(503)
      expect(err.error).toMatchObject({ code: 'engine_died' })
    } finally {
      await t.close()
    }
  })
})

describe('concurrency', () => {
  it('200 concurrent streams, each with the exact text of its seed', async () => {
    const seeds = Array.from({ length: 200 }, (_, i) => i + 100)
    const ask = (seed: number) => `Question ${seed % 7}: tell me about the orchard.`
    const streamed = await Promise.all(
      seeds.map(async (seed) => {
        const stream = await openai.chat.completions.create({
          model,
          messages: user(ask(seed)),
          seed,
          max_tokens: 16,
          stream: true,
        })
        let text = ''
        for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? ''
        return text
      }),
    )
    const expected = await Promise.all(
      seeds.map(
        async (seed) => (await direct(model, [{ role: 'user', content: ask(seed) }], { seed, maxTokens: 16 })).text,
      ),
    )
    expect(streamed).toEqual(expected)
    expect(new Set(expected).size).toBeGreaterThan(1)
  })
})

describe('embeddings', () => {
  const texts = ['pears', 'apples and plums', 'a quiet engine', 'pears']
  const floats = (e: ArrayLike<number>): number[] => Array.from(e)

  it('embeds every input of an array in one engine request, in order (encoding_format float)', async () => {
    const { data: r, response } = await openai.embeddings
      .create({ model, input: texts, encoding_format: 'float' })
      .withResponse()
    const direct = await client.embed(model, texts)
    expect(r.object).toBe('list')
    expect(r.model).toBe(model)
    expect(r.data.map((d) => [d.object, d.index])).toEqual(texts.map((_, i) => ['embedding', i]))
    for (const [i, d] of r.data.entries()) expect(d.embedding).toEqual(floats(direct.embeddings[i]!))
    expect(r.data[0]!.embedding).toEqual(r.data[3]!.embedding)
    expect(r.data[0]!.embedding).not.toEqual(r.data[1]!.embedding)
    expect(r.usage).toEqual({ prompt_tokens: direct.usage.promptTokens, total_tokens: direct.usage.promptTokens })
    // One request: one delta per input under the id the server reports.
    const requestId = Number(response.headers.get('x-request-id'))
    const reply = await engine.managementCommand({ type: 'emulator_request_stats', request_id: requestId })
    expect((reply.data!.emulator_request_stats as { published_deltas: number }).published_deltas).toBe(texts.length)
  })

  it('encoding_format base64: float32 little-endian bytes, decoded by the client when it chose base64 itself', async () => {
    const direct = await client.embed(model, texts)
    // Explicit base64: the strings come back as sent.
    const b64 = await openai.embeddings.create({ model, input: texts, encoding_format: 'base64' })
    b64.data.forEach((d, i) => {
      expect(typeof d.embedding).toBe('string')
      const bytes = Buffer.from(d.embedding as unknown as string, 'base64')
      expect(bytes.length).toBe(direct.dimensions * 4)
      const values = Array.from({ length: direct.dimensions }, (_, k) => bytes.readFloatLE(k * 4))
      expect(values).toEqual(floats(direct.embeddings[i]!))
    })
    // No encoding_format: the official client asks for base64 and decodes it to floats.
    const auto = await openai.embeddings.create({ model, input: texts })
    for (const [i, d] of auto.data.entries()) expect(floats(d.embedding)).toEqual(floats(direct.embeddings[i]!))
  })

  it('a single string input gives one embedding', async () => {
    const r = await openai.embeddings.create({ model, input: 'Apples ripen in autumn.', encoding_format: 'float' })
    expect(r.data).toHaveLength(1)
    expect(r.data[0]!.embedding).toEqual(floats((await client.embed(model, 'Apples ripen in autumn.')).embeddings[0]!))
    expect(r.usage.prompt_tokens).toBeGreaterThan(0)
  })

  it('400 names the field, 404 for a model that is not served or loaded', async () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ model, input: [] }, 'input'],
      [{ model, input: '' }, 'input'],
      [{ model, input: ['a', 7] }, 'input[1]'],
      [{ model, input: ['a', ''] }, 'input[1]'],
      [{ model, input: [1, 2, 3] }, 'input'],
      [{ model, input: [[1, 2]] }, 'input'],
      [{ model }, 'input'],
      [{ model, input: 'a', encoding_format: 'hex' }, 'encoding_format'],
      [{ model, input: 'a', dimensions: 4 }, 'dimensions'],
      [{ model, input: 'a', frobnicate: 1 }, 'frobnicate'],
    ]
    for (const [body, param] of cases) {
      const err = await status(openai.embeddings.create(body as never))
      expect(err.status, JSON.stringify(body)).toBe(400)
      expect(err.error, JSON.stringify(body)).toMatchObject({ param, type: 'invalid_request_error' })
    }
    const notServed = await status(openai.embeddings.create({ model: 'org/unknown', input: 'a' }))
    expect(notServed.status).toBe(404)
    const { openai: open } = await serve()
    const notLoaded = await status(open.embeddings.create({ model: '/nowhere/model', input: 'a' }))
    expect(notLoaded.status).toBe(404)
    expect(notLoaded.error).toMatchObject({ param: 'model', code: 'model_not_found' })
  })
})
