// Chat-level tools and reasoning against the emulator: results and streamed deltas keep answer
// text, reasoning and tool-call fragments apart.
import { describe, expect, it } from 'vitest'

import type { ChatDelta, ChatMessage, ChatResult, Client, FunctionTool } from '../src-ts'
import { useEmulator } from './helpers'
import { weatherAndTime } from './pipeline-fixtures'

let client: Client
/** llama3: no native reasoning; calls framed as `<|python_tag|>...<|eom_id|>`. */
let model: string
/** qwen3_5: native `<think>` reasoning; calls framed as `<tool_call>\n...\n</tool_call>`. */
let thinker: string

useEmulator('agentic', { env: { PIE_EMULATOR_TOKEN_DELAY_MS: '1' }, thinker: true }, (e) => {
  model = e.model
  client = e.client
  thinker = e.thinker
})

const tools: FunctionTool[] = weatherAndTime

const user = (content: string): ChatMessage[] => [{ role: 'user', content }]

async function collect(
  on: string,
  messages: ChatMessage[],
  options: Parameters<Client['chat']>[2],
): Promise<{ deltas: ChatDelta[]; result: ChatResult }> {
  const stream = client.chat(on, messages, options)
  const deltas: ChatDelta[] = []
  for await (const d of stream) deltas.push(d)
  return { deltas, result: await stream.finalResult() }
}

const join = (parts: string[]) => parts.join('')

/** Per delta, at most one of text, reasoning and tool-call fragments is set. */
function expectSeparated(deltas: ChatDelta[]): void {
  for (const d of deltas) {
    const kinds = [d.text !== '', d.reasoning !== '', d.toolCallDeltas.length > 0].filter(Boolean)
    expect(kinds.length).toBeLessThanOrEqual(1)
  }
}

describe('chat with tools', () => {
  it('gives toolCalls with parsed arguments, and the text excludes the call', async () => {
    const { deltas, result } = await collect(model, user('Use get_weather for Paris.'), { tools, seed: 2 })
    expect(result.toolCalls).toHaveLength(1)
    const [call] = result.toolCalls
    expect(call!.name).toBe('get_weather')
    // Parsed: an object, not JSON text.
    expect(typeof call!.arguments).toBe('object')
    expect(Object.keys(call!.arguments)).toEqual(['city'])
    expect(typeof (call!.arguments as { city: unknown }).city).toBe('string')
    expect(result.finishReason).toBe('stop')

    // The raw content carries the framed call; the text does not.
    const content = join(deltas.map((d) => d.content ?? ''))
    expect(content).toContain('<|python_tag|>')
    expect(content).toContain('"get_weather"')
    expect(result.text).toBe('')
    expect(deltas.every((d) => d.text === '')).toBe(true)
    expect(result.reasoning).toBeNull()
  })

  it('streams tool-call fragments: per-argument values and the raw call text', async () => {
    const { deltas, result } = await collect(model, user('Use get_weather and then get_time.'), { tools, seed: 5 })
    expect(result.toolCalls.map((c) => c.name)).toEqual(['get_weather', 'get_time'])
    expectSeparated(deltas)
    const fragments = deltas.flatMap((d) => d.toolCallDeltas)
    expect(new Set(fragments.map((f) => f.outputIndex))).toEqual(new Set([0, 1]))
    result.toolCalls.forEach((call, index) => {
      const mine = fragments.filter((f) => f.outputIndex === index)
      for (const f of mine) expect(f.name).toBe(call.name)
      // Untagged fragments add up to the framed call.
      const raw = join(mine.filter((f) => f.argument === null).map((f) => f.delta))
      expect(raw.startsWith('<|python_tag|>')).toBe(true)
      expect(raw.endsWith('<|eom_id|>')).toBe(true)
      expect(JSON.parse(raw.slice('<|python_tag|>'.length, -'<|eom_id|>'.length))).toEqual({
        name: call.name,
        arguments: call.arguments,
      })
      // Tagged fragments add up to each argument's value.
      const args = call.arguments as Record<string, unknown>
      const argNames = [...new Set(mine.flatMap((f) => (f.argument === null ? [] : [f.argument])))]
      expect(argNames.sort()).toEqual(Object.keys(args).sort())
      for (const name of argNames) {
        const value = join(mine.filter((f) => f.argument === name).map((f) => f.delta))
        expect(value).toBe(typeof args[name] === 'string' ? args[name] : JSON.stringify(args[name]))
      }
    })
  })

  it("toolChoice 'none' answers in text", async () => {
    const { deltas, result } = await collect(model, user('Use get_weather and then get_time.'), {
      tools,
      toolChoice: 'none',
      maxTokens: 12,
      seed: 5,
    })
    expect(result.toolCalls).toEqual([])
    expect(result.text.length).toBeGreaterThan(0)
    expect(deltas.every((d) => d.toolCallDeltas.length === 0)).toBe(true)
    expect(join(deltas.map((d) => d.text))).toBe(result.text)
  })
})

describe('chat with reasoning', () => {
  it('sets reasoning, which never leaks into the text, streamed or final', async () => {
    const { deltas, result } = await collect(thinker, user('Tell me about the orchard.'), {
      reasoning: 'low',
      maxTokens: 60,
      seed: 4,
    })
    expect(result.reasoning).not.toBeNull()
    expect(result.reasoning!.trim().length).toBeGreaterThan(0)
    expect(result.text.length).toBeGreaterThan(0)
    expect(result.usage.reasoningTokens).toBe(9)
    // Completion counts the reasoning too; the total is prompt + completion.
    expect(result.usage.completionTokens).toBe(deltas.reduce((n, d) => n + d.tokens.length, 0))
    expect(result.usage.completionTokens).toBeGreaterThan(9)
    expect(result.usage.totalTokens).toBe(result.usage.promptTokens + result.usage.completionTokens)

    // The raw content has the think block; text and reasoning do not carry its markers.
    const content = join(deltas.map((d) => d.content ?? ''))
    expect(content).toContain('<think>')
    expect(content).toContain('</think>')
    const text = join(deltas.map((d) => d.text))
    const reasoning = join(deltas.map((d) => d.reasoning))
    expect(text).toBe(result.text)
    expect(reasoning.trim()).toBe(result.reasoning!.trim())
    for (const s of [text, reasoning, result.text, result.reasoning!]) expect(s).not.toMatch(/<\/?think>/)
    expect(result.text).not.toContain(result.reasoning!.trim())
    expectSeparated(deltas)
    // Reasoning comes first: no text before the last reasoning fragment.
    const lastReasoning = deltas.map((d) => d.reasoning !== '').lastIndexOf(true)
    const firstText = deltas.findIndex((d) => d.text !== '')
    expect(lastReasoning).toBeGreaterThanOrEqual(0)
    expect(firstText).toBeGreaterThan(lastReasoning)
  })

  it('reasoning: false gives no reasoning on a model that reasons natively', async () => {
    const { deltas, result } = await collect(thinker, user('Tell me about the orchard.'), {
      reasoning: false,
      maxTokens: 20,
      seed: 4,
    })
    expect(result.reasoning).toBeNull()
    expect(result.usage.reasoningTokens).toBe(0)
    expect(deltas.every((d) => d.reasoning === '')).toBe(true)
    expect(join(deltas.map((d) => d.text))).toBe(result.text)
    expect(result.text).not.toMatch(/<\/?think>/)
  })

  it('reasoning then a tool call: three kinds of fragments, kept apart', async () => {
    const { deltas, result } = await collect(thinker, user('Use get_weather please.'), {
      tools,
      reasoning: 'minimal',
      seed: 6,
    })
    expect(result.reasoning!.trim().length).toBeGreaterThan(0)
    expect(result.toolCalls.map((c) => c.name)).toEqual(['get_weather'])
    expect(typeof result.toolCalls[0]!.arguments).toBe('object')
    expect(result.text).toBe('')
    expect(deltas.every((d) => d.text === '')).toBe(true)
    expectSeparated(deltas)
    const fragments = deltas.flatMap((d) => d.toolCallDeltas)
    // The call is the second output item, after the reasoning.
    expect(fragments.every((f) => f.outputIndex === 1)).toBe(true)
    const raw = join(fragments.filter((f) => f.argument === null).map((f) => f.delta))
    expect(raw.startsWith('<tool_call>\n')).toBe(true)
    expect(raw).not.toContain('<think>')
    expect(join(deltas.map((d) => d.reasoning)).trim()).toBe(result.reasoning!.trim())
    const lastReasoning = deltas.map((d) => d.reasoning !== '').lastIndexOf(true)
    const firstFragment = deltas.findIndex((d) => d.toolCallDeltas.length > 0)
    expect(firstFragment).toBeGreaterThan(lastReasoning)
  })
})
