// Emulator realism over the real wire: a required thinker (lfm2_5) told `reasoning: false`
// answers a tool result without reasoning, and audio content parts reach the engine with the
// reference's layout (gemma4, whose profile takes audio).
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import type { ChatMessage, ChatOptions, ChatResult } from '../src-ts'
import { createTestModel, startTestEngine, type TestEngine } from '../src-ts/testing'

let t: TestEngine
/** gemma4: native thinking that can be switched off, image and audio placeholders. */
let gemma: string

beforeAll(async () => {
  t = await startTestEngine({ family: 'lfm2_5' })
  gemma = await createTestModel({ family: 'gemma4' })
  await t.engine.loadModel(gemma)
}, 60_000)

afterAll(async () => {
  await t?.close()
})

const toolTurn: ChatMessage[] = [
  { role: 'user', content: 'What is the weather in Paris?' },
  {
    role: 'assistant',
    content: '',
    tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: { city: 'Paris' } } }],
  },
  { role: 'tool', tool_call_id: 'call_1', content: '{"forecast": "sun", "celsius": 21}' },
]

async function chat(model: string, messages: ChatMessage[], options: ChatOptions): Promise<ChatResult> {
  const stream = t.client.chat(model, messages, options)
  for await (const _ of stream) {
    // drain
  }
  return stream.finalResult()
}

function expectUsageSums(r: ChatResult): void {
  expect(r.usage.totalTokens).toBe(r.usage.promptTokens + r.usage.completionTokens)
  expect(r.usage.reasoningTokens).toBeLessThanOrEqual(r.usage.completionTokens)
}

describe('reasoning: false on a required thinker (lfm2_5)', () => {
  it('answers a tool result with zero reasoning tokens', async () => {
    const r = await chat(t.model, toolTurn, { reasoning: false, maxTokens: 12, seed: 3 })
    expect(r.usage.reasoningTokens).toBe(0)
    expect(r.reasoning).toBeNull()
    expect(r.text.length).toBeGreaterThan(0)
    expect(r.text).not.toMatch(/<\/?think>/)
    expectUsageSums(r)
  })

  it('reasons on the same tool result with reasoning: true', async () => {
    const r = await chat(t.model, toolTurn, { reasoning: true, maxTokens: 40, seed: 3 })
    expect(r.usage.reasoningTokens).toBeGreaterThan(0)
    expect(r.reasoning!.trim().length).toBeGreaterThan(0)
    expectUsageSums(r)
  })

  it('still thinks on a user turn: required thinking cannot be switched off', async () => {
    const rendered = await t.client.renderPrompt(t.model, [{ role: 'user', content: 'Hello' }], { reasoning: false })
    expect(rendered.reasoning).toBe(false)
    const r = await chat(t.model, [{ role: 'user', content: 'Hello' }], { reasoning: false, maxTokens: 40, seed: 3 })
    expect(r.usage.reasoningTokens).toBeGreaterThan(0)
    expectUsageSums(r)
  })
})

describe('reasoning: false on a thinker that can switch it off (gemma4)', () => {
  it('gives zero reasoning tokens on a tool result and on a user turn', async () => {
    for (const messages of [toolTurn, [{ role: 'user', content: 'Hello' }] satisfies ChatMessage[]]) {
      const r = await chat(gemma, messages, { reasoning: false, maxTokens: 12, seed: 3 })
      expect(r.usage.reasoningTokens).toBe(0)
      expect(r.reasoning).toBeNull()
    }
  })
})

describe('audio content parts', () => {
  it('reach the engine as audio bytes at the placeholder, between the text segments', async () => {
    const samples = [0.25, -0.5, 1]
    const messages: ChatMessage[] = [
      {
        role: 'user',
        content: [
          { type: 'input_text', text: 'Transcribe this:' },
          { type: 'input_audio', data: samples },
        ],
      },
    ]
    const rendered = await t.client.renderPrompt(gemma, messages, { reasoning: false })
    const stream = t.client.chat(gemma, messages, { reasoning: false, maxTokens: 4, seed: 3 })
    let requestId: number | undefined
    for await (const d of stream) requestId ??= d.requestId
    await stream.finalResult()
    const reply = await t.engine.managementCommand({ type: 'emulator_request_stats', request_id: requestId })
    const stats = reply.data?.emulator_request_stats as { layouts: Array<Array<{ type: string; length: number }>> }
    // What the engine received is what the core laid out: text, 4 bytes of f32 per sample, text.
    expect(stats.layouts).toEqual([rendered.layout])
    const [layout] = stats.layouts
    expect(layout!.map((s) => s.type)).toEqual(['text', 'audio', 'text'])
    expect(layout![1]!.length).toBe(samples.length * 4)
    const textBytes = layout!.filter((s) => s.type === 'text').reduce((n, s) => n + s.length, 0)
    expect(textBytes).toBe(Buffer.byteLength(rendered.prompt, 'utf8'))
    // The audio sits where the template put its (clipped) `<|audio|>` placeholder: right after
    // the text part, before the end of the user turn.
    const bytes = Buffer.from(rendered.prompt, 'utf8')
    expect(rendered.prompt).not.toContain('<|audio|>')
    expect(bytes.subarray(0, layout![0]!.length).toString('utf8')).toMatch(/user\nTranscribe this:$/)
    expect(bytes.subarray(layout![0]!.length).toString('utf8')).toMatch(/^<turn\|>/)
  })

  it('a bad audio part is a typed error naming the field', async () => {
    const bad: ChatMessage[] = [{ role: 'user', content: [{ type: 'input_audio', data: [] }] }]
    await expect(chat(gemma, bad, { maxTokens: 4 })).rejects.toThrow(/messages\[0\]\.content\[0\]\.data/)
  })
})
