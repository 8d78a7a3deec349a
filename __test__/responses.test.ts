// The Responses API against the emulator over real IPC: event sequences, tools, structured output, failures.
import { describe, expect, it } from 'vitest'

import type {
  Client,
  Response,
  ResponseFunctionCall,
  ResponseInputItem,
  ResponseStreamEvent,
  ResponsesRequest,
  StandardJsonSchemaOptions,
  StandardSchemaLike,
} from '../src-ts'
import { type Engine, InvalidRequestError } from '../src-ts'
import { makeModelDir, useEmulator } from './helpers'
import { settledStats } from './pipeline-fixtures'
import {
  CALL_BLOCK,
  checkFunctionCall,
  checkInvariants,
  checkReasoning,
  expectNoThinkMarkers,
  HEAD,
  LLAMA_CALL,
  MESSAGE_BLOCK,
  ofType,
  QWEN_CALL,
  REASONING_BLOCK,
  shape,
  tools,
} from './responses-checks'

let engine: Engine
let client: Client
/** llama3: no native reasoning. */
let model: string
/** qwen3_5: native `<think>` reasoning, on unless the request turns it off. */
let thinker: string
let cacheRoot: string

useEmulator('responses', { env: { PIE_EMULATOR_TOKEN_DELAY_MS: '1' }, thinker: true }, (e) => {
  engine = e.engine
  cacheRoot = e.cacheRoot
  model = e.model
  client = e.client
  thinker = e.thinker
})

/** A function_call item as `response.toolCalls` gives it: its arguments parsed, checked clean. */
function withArguments(item: ResponseFunctionCall) {
  return { ...item, parsedArguments: JSON.parse(item.arguments), argumentsError: null }
}

async function collect(
  request: ResponsesRequest,
  on: string = model,
): Promise<{ events: ResponseStreamEvent[]; response: Response }> {
  const stream = client.responses(on, request)
  const events: ResponseStreamEvent[] = []
  for await (const e of stream) events.push(e)
  return { events, response: await stream.finalResponse() }
}

describe('plain text', () => {
  it('streams the reference event sequence and the text adds up', async () => {
    const { events, response } = await collect({
      input: 'Tell me about the orchard.',
      max_output_tokens: 40,
      temperature: 0,
    })
    checkInvariants(events)
    const terminal = events[events.length - 1]!.type
    expect(shape(events)).toEqual([...HEAD, ...MESSAGE_BLOCK, terminal])
    const deltas = events.flatMap((e) => (e.type === 'response.output_text.delta' ? [e.delta] : []))
    const done = events.find((e) => e.type === 'response.output_text.done')
    expect(done && done.type === 'response.output_text.done' && done.text).toBe(deltas.join(''))
    expect(response.outputText).toBe(deltas.join(''))
    expect(response.output).toHaveLength(1)
    expect(response.output[0]!.type).toBe('message')
    expect(response.usage.output_tokens).toBeGreaterThan(0)
    expect(response.usage.input_tokens).toBeGreaterThan(0)
    expect(response.id).toMatch(/^resp_/)
    // Usage comes from the accumulator the chat API uses: the same request counts the same.
    const chat = await client.chat(model, [{ role: 'user', content: 'Tell me about the orchard.' }], {
      maxTokens: 40,
      temperature: 0,
    })
    const u = chat.usage
    expect(response.usage).toEqual({
      input_tokens: u.promptTokens,
      output_tokens: u.completionTokens,
      total_tokens: u.totalTokens,
      input_tokens_details: { cached_tokens: u.cachedTokens },
      output_tokens_details: { reasoning_tokens: u.reasoningTokens },
    })
  })

  it('names the engine request it runs as', async () => {
    const stream = client.responses(model, { input: 'Hi', max_output_tokens: 4 })
    const id = await stream.requestId()
    await stream
    // The emulator counts a delta once it is out: read its counters when the request has settled.
    expect((await settledStats(engine, id)).published_deltas).toBe(4)
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
    for await (const piece of client.responsesText(model, {
      input: 'Hello there',
      max_output_tokens: 12,
      temperature: 0,
    }))
      text += piece
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
    // Every numeric field goes through the core's table, in its words.
    [{ input: 'x', max_output_tokens: 0 }, /^max_output_tokens: 0 is out of range; use 1 or more$/],
    [{ input: 'x', max_tool_calls: 0 }, /^max_tool_calls: 0 is out of range; use 1 or more$/],
    [{ input: 'x', min_tool_calls: 1.5 }, /^min_tool_calls: 1.5 is not an integer; use 1 or more$/],
    [{ input: 'x', seed: -1 }, /^seed: -1 is out of range; use 0 or more$/],
    [{ input: 'x', reasoning: 'high' as never }, /^reasoning: expected \{ effort: minimal \| low \| medium \| high \}/],
    [{ input: 'x', tools: [{ type: 'function', name: '' }] }, /tools\[0\]\.name/],
    [
      { input: 'x', text: { format: { type: 'json_schema', schema: { type: 'objekt' } } } },
      /text\.format\.schema\.type/,
    ],
    [
      {
        input: 'x',
        text: {
          format: {
            type: 'json_schema',
            schema: { type: 'object', properties: { a: { type: 'string' } }, required: ['b'] },
          },
        },
      },
      /text\.format\.schema\.required/,
    ],
    [{ input: 'x', text: { format: { type: 'yaml' as never } } }, /text\.format\.type/],
    [{ input: 'x', unknown_field: 1 } as never, /unknown_field/],
  ]
  for (const [request, pattern] of bad) {
    it(JSON.stringify(request), async () => {
      const err = await client.responses(model, request).then(
        () => null,
        (e: unknown) => e,
      )
      expect(err).toBeInstanceOf(InvalidRequestError)
      expect(String((err as Error).message)).toMatch(pattern)
      // Iterated, the first next() throws it, before any event.
      const events = client.responses(model, request)[Symbol.asyncIterator]()
      await expect(events.next()).rejects.toThrow(pattern)
    })
  }
})

// ----------------------------------------------------------------------------------------
// Reasoning, tool calls and structured output: the engine's state events as Responses events.

describe('reasoning', () => {
  it('reasoning then text: a reasoning item, then the message, and the text excludes the reasoning', async () => {
    const { events, response } = await collect(
      { input: 'Tell me about the orchard.', reasoning: { effort: 'low' }, max_output_tokens: 60, seed: 4 },
      thinker,
    )
    checkInvariants(events)
    const terminal = events[events.length - 1]!.type
    expect(shape(events)).toEqual([...HEAD, ...REASONING_BLOCK, ...MESSAGE_BLOCK, terminal])
    expect(response.output.map((i) => i.type)).toEqual(['reasoning', 'message'])
    const reasoning = checkReasoning(events, response, 0)

    const text = ofType(events, 'response.output_text.delta')
    for (const d of text) expect(d.output_index).toBe(1)
    expect(ofType(events, 'response.output_text.done')[0]!.text).toBe(text.map((d) => d.delta).join(''))
    expect(response.outputText).toBe(text.map((d) => d.delta).join(''))
    expect(response.outputText.length).toBeGreaterThan(0)
    expect(response.outputText).not.toContain(reasoning)
    expectNoThinkMarkers(events)
    // Reasoning done before the message opens.
    const reasoningDone = ofType(events, 'response.output_item.done').find((e) => e.output_index === 0)!
    const messageAdded = ofType(events, 'response.output_item.added').find((e) => e.output_index === 1)!
    expect(reasoningDone.sequence_number).toBeLessThan(messageAdded.sequence_number)
    expect(response.reasoning).toEqual({ effort: 'low' })
    // low: 8 reasoning pieces plus the end marker.
    expect(response.usage.output_tokens_details.reasoning_tokens).toBe(9)
    expect(response.usage.total_tokens).toBe(response.usage.input_tokens + response.usage.output_tokens)
    expect(response.usage.output_tokens).toBeGreaterThanOrEqual(9)
  })

  it('the effort reaches the engine, and reasoning: false turns native reasoning off', async () => {
    const minimal = await client.responses(thinker, {
      input: 'Hi',
      reasoning: { effort: 'minimal' },
      max_output_tokens: 20,
    })
    const high = await client.responses(thinker, { input: 'Hi', reasoning: { effort: 'high' }, max_output_tokens: 40 })
    expect(minimal.usage.output_tokens_details.reasoning_tokens).toBe(5)
    expect(high.usage.output_tokens_details.reasoning_tokens).toBe(33)
    const { events, response } = await collect({ input: 'Hi', reasoning: false, max_output_tokens: 20 }, thinker)
    expect(events.some((e) => e.type.startsWith('response.reasoning'))).toBe(false)
    expect(response.output.map((i) => i.type)).toEqual(['message'])
    expect(response.usage.output_tokens_details.reasoning_tokens).toBe(0)
    expect(response.reasoning).toBeNull()
    // A family without native reasoning never reasons, whatever the request says.
    const llama = await client.responses(model, { input: 'Hi', reasoning: { effort: 'high' }, max_output_tokens: 20 })
    expect(llama.output.map((i) => i.type)).toEqual(['message'])
    expect(llama.usage.output_tokens_details.reasoning_tokens).toBe(0)
  })
})

describe('tool calls', () => {
  it('one tool call: a function_call item with streamed arguments, and response.toolCalls', async () => {
    const { events, response } = await collect({ input: 'What is it like outside? Use get_weather.', tools, seed: 2 })
    checkInvariants(events)
    expect(shape(events)).toEqual([...HEAD, ...CALL_BLOCK, 'response.completed'])
    const item = checkFunctionCall(events, 0, LLAMA_CALL)
    expect(item.name).toBe('get_weather')
    expect(response.output).toEqual([item])
    expect(response.toolCalls).toEqual([withArguments(item)])
    expect(typeof (JSON.parse(response.toolCalls[0]!.arguments) as { city: unknown }).city).toBe('string')
    // A tool turn has no text.
    expect(events.some((e) => e.type === 'response.output_text.delta')).toBe(false)
    expect(response.outputText).toBe('')
    expect(response.status).toBe('completed')
    expect(response.stop_token).toBeNull()
    expect(response.tools).toEqual(tools)
  })

  it('two tool calls in one turn, in the order asked for', async () => {
    const { events, response } = await collect({ input: 'Use get_weather and then get_time.', tools, seed: 5 })
    checkInvariants(events)
    expect(shape(events)).toEqual([...HEAD, ...CALL_BLOCK, ...CALL_BLOCK, 'response.completed'])
    const first = checkFunctionCall(events, 0, LLAMA_CALL)
    const second = checkFunctionCall(events, 1, LLAMA_CALL)
    expect([first.name, second.name]).toEqual(['get_weather', 'get_time'])
    expect(first.call_id).not.toBe(second.call_id)
    expect(first.id).not.toBe(second.id)
    expect(response.toolCalls).toEqual([first, second].map(withArguments))
    // The first call is closed before the second opens.
    const firstDone = ofType(events, 'response.output_item.done').find((e) => e.output_index === 0)!
    const secondAdded = ofType(events, 'response.output_item.added').find((e) => e.output_index === 1)!
    expect(firstDone.sequence_number).toBeLessThan(secondAdded.sequence_number)
  })

  it('reasoning then a tool call', async () => {
    const { events, response } = await collect(
      { input: 'Use get_weather please.', tools, reasoning: { effort: 'minimal' }, seed: 6 },
      thinker,
    )
    checkInvariants(events)
    expect(shape(events)).toEqual([...HEAD, ...REASONING_BLOCK, ...CALL_BLOCK, 'response.completed'])
    checkReasoning(events, response, 0)
    const item = checkFunctionCall(events, 1, QWEN_CALL)
    expect(item.name).toBe('get_weather')
    expect(response.toolCalls).toEqual([withArguments(item)])
    expect(response.outputText).toBe('')
    expectNoThinkMarkers(events)
    expect(response.usage.output_tokens_details.reasoning_tokens).toBe(5)
  })

  it("tool_choice 'required' calls a tool although none is asked for; 'auto' then answers in text", async () => {
    const required = await collect({ input: 'Hello there.', tools, tool_choice: 'required', seed: 1 })
    checkInvariants(required.events)
    expect(shape(required.events)).toEqual([...HEAD, ...CALL_BLOCK, 'response.completed'])
    checkFunctionCall(required.events, 0, LLAMA_CALL)
    expect(required.response.toolCalls).toHaveLength(1)
    expect(required.response.tool_choice).toBe('required')

    const auto = await collect({ input: 'Hello there.', tools, max_output_tokens: 10, seed: 1 })
    expect(auto.response.toolCalls).toEqual([])
    expect(auto.response.output.map((i) => i.type)).toEqual(['message'])
  })

  it('a named function is the one called, whatever the input mentions', async () => {
    const { events, response } = await collect({
      input: 'Use get_weather.',
      tools,
      tool_choice: { type: 'function', name: 'get_time' },
      seed: 3,
    })
    checkInvariants(events)
    expect(shape(events)).toEqual([...HEAD, ...CALL_BLOCK, 'response.completed'])
    const item = checkFunctionCall(events, 0, LLAMA_CALL)
    expect(item.name).toBe('get_time')
    expect(response.toolCalls.map((c) => c.name)).toEqual(['get_time'])
    expect(response.tool_choice).toEqual({ type: 'function', name: 'get_time' })
  })

  it("tool_choice 'none' answers in text although tools are asked for", async () => {
    const { events, response } = await collect({
      input: 'Use get_weather and then get_time.',
      tools,
      tool_choice: 'none',
      max_output_tokens: 12,
      seed: 5,
    })
    checkInvariants(events)
    expect(shape(events)).toEqual([...HEAD, ...MESSAGE_BLOCK, events[events.length - 1]!.type])
    expect(events.some((e) => e.type.startsWith('response.function_call'))).toBe(false)
    expect(response.toolCalls).toEqual([])
    expect(response.outputText.length).toBeGreaterThan(0)
  })

  it('min_tool_calls and max_tool_calls bound the calls of a turn', async () => {
    const three = await collect({ input: 'Use get_weather.', tools, min_tool_calls: 3, seed: 8 })
    checkInvariants(three.events)
    expect(shape(three.events)).toEqual([...HEAD, ...CALL_BLOCK, ...CALL_BLOCK, ...CALL_BLOCK, 'response.completed'])
    const calls = [0, 1, 2].map((i) => checkFunctionCall(three.events, i, LLAMA_CALL))
    expect(calls.map((c) => c.name)).toEqual(['get_weather', 'get_weather', 'get_weather'])
    expect(new Set(calls.map((c) => c.call_id)).size).toBe(3)

    const one = await collect({ input: 'Use get_weather and then get_time.', tools, max_tool_calls: 1, seed: 8 })
    expect(shape(one.events)).toEqual([...HEAD, ...CALL_BLOCK, 'response.completed'])
    expect(one.response.toolCalls.map((c) => c.name)).toEqual(['get_weather'])

    await expect(client.responses(model, { input: 'x', tools, min_tool_calls: 3, max_tool_calls: 2 })).rejects.toThrow(
      /minToolCalls: 3 is more than maxToolCalls \(2\)/,
    )
    // No cap beyond the engine's: many calls are allowed (the reference's int ≥ 1).
    const many = await client.responses(model, {
      input: 'Use get_weather.',
      tools,
      min_tool_calls: 1,
      max_tool_calls: 5000,
      seed: 8,
    })
    expect(many.status).toBe('completed')
  })

  it('a three-turn tool chain: call, another call, then a text answer', async () => {
    const ask: ResponseInputItem = { role: 'user', content: 'Use get_weather for Paris, then tell me the time there.' }
    const fed = (call: ResponseFunctionCall, output: string): ResponseInputItem[] => [
      { type: 'function_call', call_id: call.call_id, name: call.name, arguments: call.arguments },
      { type: 'function_call_output', call_id: call.call_id, output },
    ]

    const turn1 = await collect({ input: [ask], tools, seed: 11 })
    checkInvariants(turn1.events)
    expect(shape(turn1.events)).toEqual([...HEAD, ...CALL_BLOCK, 'response.completed'])
    const call1 = checkFunctionCall(turn1.events, 0, LLAMA_CALL)
    expect(call1.name).toBe('get_weather')

    const input2 = [ask, ...fed(call1, 'Sunny, 21 C')]
    const turn2 = await collect({ input: input2, tools, tool_choice: { type: 'function', name: 'get_time' }, seed: 12 })
    checkInvariants(turn2.events)
    expect(shape(turn2.events)).toEqual([...HEAD, ...CALL_BLOCK, 'response.completed'])
    const call2 = checkFunctionCall(turn2.events, 0, LLAMA_CALL)
    expect(call2.name).toBe('get_time')
    expect(call2.call_id).not.toBe(call1.call_id)

    // After a tool result, 'auto' answers in text.
    const input3 = [...input2, ...fed(call2, '14:05')]
    const turn3 = await collect({ input: input3, tools, max_output_tokens: 24, seed: 13 })
    checkInvariants(turn3.events)
    expect(shape(turn3.events)).toEqual([...HEAD, ...MESSAGE_BLOCK, turn3.events[turn3.events.length - 1]!.type])
    expect(turn3.response.toolCalls).toEqual([])
    expect(turn3.response.outputText.length).toBeGreaterThan(0)

    // Each turn's prompt holds the one before it plus the fed-back items.
    expect(turn2.response.usage.input_tokens).toBeGreaterThan(turn1.response.usage.input_tokens)
    expect(turn3.response.usage.input_tokens).toBeGreaterThan(turn2.response.usage.input_tokens)
  })

  it('a tool output given as content parts is rendered like the same text', async () => {
    const call = {
      type: 'function_call',
      call_id: 'call_1',
      name: 'get_weather',
      arguments: '{"city": "Paris"}',
    } as const
    const ask: ResponseInputItem = { role: 'user', content: 'Use get_weather for Paris.' }
    const asText = await client.responses(model, {
      input: [ask, call, { type: 'function_call_output', call_id: 'call_1', output: 'Sunny and mild, 21 C' }],
      tools,
      max_output_tokens: 8,
      seed: 9,
    })
    const parts: ResponseInputItem = {
      type: 'function_call_output',
      call_id: 'call_1',
      output: [{ type: 'input_text', text: 'Sunny and mild, 21 C' }],
    }
    const { events, response: asParts } = await collect({
      input: [ask, call, parts],
      tools,
      max_output_tokens: 8,
      seed: 9,
    })
    const shorter = await client.responses(model, {
      input: [ask, call, { type: 'function_call_output', call_id: 'call_1', output: 'Sunny' }],
      tools,
      max_output_tokens: 8,
      seed: 9,
    })
    checkInvariants(events)
    expect(shape(events)).toEqual([...HEAD, ...MESSAGE_BLOCK, events[events.length - 1]!.type])
    expect(asParts.usage.input_tokens).toBe(asText.usage.input_tokens)
    expect(asParts.outputText).toBe(asText.outputText)
    // The output's text is in the prompt: less text, fewer tokens.
    expect(shorter.usage.input_tokens).toBeLessThan(asText.usage.input_tokens)
  })
})

describe('structured output', () => {
  const schema = {
    type: 'object',
    properties: {
      variety: { type: 'string', minLength: 1 },
      trees: { type: 'integer', minimum: 1, maximum: 50 },
      season: { enum: ['spring', 'summer', 'autumn'] },
      tags: { type: 'array', items: { type: 'string' }, minItems: 1, maxItems: 3 },
    },
    required: ['variety', 'trees', 'season', 'tags'],
    additionalProperties: false,
  }
  type Orchard = { variety: string; trees: number; season: string; tags: string[] }

  function checkOrchard(value: unknown): void {
    const o = value as Orchard
    expect(Object.keys(o).sort()).toEqual(['season', 'tags', 'trees', 'variety'])
    expect(typeof o.variety).toBe('string')
    expect(o.variety.length).toBeGreaterThan(0)
    expect(Number.isInteger(o.trees)).toBe(true)
    expect(o.trees).toBeGreaterThanOrEqual(1)
    expect(o.trees).toBeLessThanOrEqual(50)
    expect(['spring', 'summer', 'autumn']).toContain(o.season)
    expect(Array.isArray(o.tags)).toBe(true)
    expect(o.tags.length).toBeGreaterThanOrEqual(1)
    expect(o.tags.length).toBeLessThanOrEqual(3)
    for (const t of o.tags) expect(typeof t).toBe('string')
  }

  /** A hand-made Standard Schema (https://standardschema.dev) that also describes itself as JSON Schema. */
  class Planting {
    constructor(readonly value: Orchard) {}
  }
  function standardOrchard(check: (o: Orchard) => string | null): StandardSchemaLike & { targets: string[] } {
    const targets: string[] = []
    return {
      targets,
      '~standard': {
        version: 1,
        vendor: 'handmade',
        validate: (value: unknown) => {
          const problem = check(value as Orchard)
          return problem ? { issues: [{ message: problem, path: [] }] } : { value: new Planting(value as Orchard) }
        },
        jsonSchema: {
          // As the spec's example: the target is required, and the dialect is declared.
          input: (options: StandardJsonSchemaOptions) => {
            targets.push(options.target)
            return { $schema: 'https://json-schema.org/draft/2020-12/schema', ...schema }
          },
        },
      },
    }
  }

  it('reasoning then structured output: parsed matches the schema', async () => {
    const { events, response } = await collect(
      {
        input: 'Describe an orchard.',
        reasoning: { effort: 'minimal' },
        text: { format: { type: 'json_schema', name: 'orchard', schema } },
        seed: 21,
      },
      thinker,
    )
    checkInvariants(events)
    expect(shape(events)).toEqual([...HEAD, ...REASONING_BLOCK, ...MESSAGE_BLOCK, 'response.completed'])
    checkReasoning(events, response, 0)
    expectNoThinkMarkers(events)
    expect(response.parseError).toBeNull()
    checkOrchard(response.parsed)
    expect(response.parsed).toEqual(JSON.parse(response.outputText))
    expect(response.text).toEqual({ format: { type: 'json_schema', name: 'orchard' } })
  })

  it('json_schema with a JSON Schema', async () => {
    const { events, response } = await collect({
      input: 'Describe an orchard.',
      text: { format: { type: 'json_schema', name: 'orchard', schema } },
      seed: 22,
    })
    checkInvariants(events)
    expect(shape(events)).toEqual([...HEAD, ...MESSAGE_BLOCK, 'response.completed'])
    expect(response.parseError).toBeNull()
    checkOrchard(response.parsed)
    expect(response.parsed).toEqual(JSON.parse(response.outputText))
  })

  it('json_object gives a parsed object', async () => {
    const { response } = await collect({
      input: 'Describe an orchard.',
      text: { format: { type: 'json_object' } },
      seed: 23,
    })
    expect(response.parseError).toBeNull()
    expect(response.parsed).not.toBeNull()
    expect(typeof response.parsed).toBe('object')
    expect(Array.isArray(response.parsed)).toBe(false)
    expect(response.parsed).toEqual(JSON.parse(response.outputText))
    expect(response.text).toEqual({ format: { type: 'json_object' } })
  })

  it('a Standard Schema: described as JSON Schema for the engine, and its validate gives parsed', async () => {
    const std = standardOrchard(() => null)
    const response = await client.responses(model, {
      input: 'Describe an orchard.',
      text: { format: { type: 'json_schema', name: 'orchard', schema: std } },
      seed: 24,
    })
    expect(std.targets).toEqual(['draft-2020-12'])
    expect(response.parseError).toBeNull()
    // The validator's own output (here a class instance), not just the JSON.
    expect(response.parsed).toBeInstanceOf(Planting)
    const planted = (response.parsed as Planting).value
    checkOrchard(planted)
    expect(planted).toEqual(JSON.parse(response.outputText))
  })

  it("a Standard Schema's issues make parsed null, with parseError saying why", async () => {
    const std = standardOrchard((o) => (o.trees > 1000 ? null : 'an orchard needs more than 1000 trees'))
    const response = await client.responses(model, {
      input: 'Describe an orchard.',
      text: { format: { type: 'json_schema', schema: std } },
      seed: 24,
    })
    expect(response.parsed).toBeNull()
    expect(response.parseError).toMatch(/more than 1000 trees/)
    checkOrchard(JSON.parse(response.outputText))
  })

  it('output cut short by max_output_tokens: parsed null and parseError', async () => {
    const response = await client.responses(model, {
      input: 'Describe an orchard.',
      text: { format: { type: 'json_schema', schema } },
      max_output_tokens: 4,
      seed: 25,
    })
    expect(response.status).toBe('incomplete')
    expect(response.parsed).toBeNull()
    expect(response.parseError).toMatch(/does not match the requested format/)
  })

  it('a Standard Schema that cannot describe itself is refused before sending', async () => {
    const opaque: StandardSchemaLike = {
      '~standard': { version: 1, vendor: 'opaque', validate: (value: unknown) => ({ value }) },
    }
    await expect(
      client.responses(model, { input: 'x', text: { format: { type: 'json_schema', schema: opaque } } }),
    ).rejects.toThrow(/opaque schema cannot describe itself/)
  })
})

describe('tool output with an image', () => {
  // A 1×1 PNG.
  const png =
    'data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8/5+hHgAHggJ/PchI7wAAAABJRU5ErkJggg=='

  it('function_call_output content parts, image included, reach the prompt of a vision family', async () => {
    const vision = makeModelDir(cacheRoot, 'tiny-gemma4u', { model_type: 'gemma4u' })
    await engine.loadModel(vision)
    const input: ResponseInputItem[] = [
      { role: 'user', content: 'Take a photo of the orchard with take_photo.' },
      { type: 'function_call', call_id: 'call_photo', name: 'take_photo', arguments: '{}' },
      {
        type: 'function_call_output',
        call_id: 'call_photo',
        output: [
          { type: 'input_text', text: 'Here is the photo.' },
          { type: 'input_image', image_url: png },
        ],
      },
    ]
    const response = await client.responses(vision, { input, max_output_tokens: 8 })
    expect(response.status).toBe('incomplete')
    // output_tokens counts every generated token, the reasoning (gemma4u reasons natively) too.
    expect(response.usage.output_tokens).toBe(8)
    expect(response.usage.output_tokens_details.reasoning_tokens).toBeGreaterThan(0)
    expect(response.usage.output_tokens_details.reasoning_tokens).toBeLessThanOrEqual(8)

    // The same conversation as chat messages renders the image into the tool result.
    const rendered = await client.renderPrompt(vision, [
      { role: 'user', content: 'Take a photo of the orchard with take_photo.' },
      {
        role: 'assistant',
        content: '',
        tool_calls: [{ id: 'call_photo', type: 'function', function: { name: 'take_photo', arguments: '{}' } }],
      },
      {
        role: 'tool',
        tool_call_id: 'call_photo',
        content: [
          { type: 'input_text', text: 'Here is the photo.' },
          { type: 'input_image', image_url: png },
        ],
      },
    ] as never)
    expect(rendered.layout.map((s) => s.type)).toContain('image')
    expect(rendered.prompt).toContain('Here is the photo.')
  })
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
