import { describe, expect, it } from 'vitest'

import type { ChatMessage, RenderInput } from '../src-ts'
import { InvalidRequestError, renderChat, TemplateError } from '../src-ts'
import { readFixture } from './helpers'

interface Case extends RenderInput {
  id: string
  expected?: { prompt: string; layout: Array<{ type: string; length: number }>; reasoning: boolean }
  reference_error?: string
}

// Every fixture case (231, with the divergences and the family checks) runs once, in cargo
// (crates/orchard-core/tests/format_parity.rs). Through the addon, a smoke set: a family without
// reasoning, one with native reasoning, and one with images in its layout.
const SMOKE_FAMILIES = ['llama3', 'qwen3_5', 'gemma4']
const { cases } = readFixture<{ cases: Case[] }>('prompt-parity.json')
const { cases: divergences } = readFixture<{ cases: Array<{ id: string }> }>('prompt-divergences.json')
const familyOf = (id: string): string => id.split('/')[0]!.replace(/\(.*\)$/, '')
const smoke = cases.filter(
  (c) => SMOKE_FAMILIES.includes(familyOf(c.id)) && c.expected && !divergences.some((d) => d.id === c.id),
)

/** `messages` with each content part list replaced by the joined text of its parts. */
function joinedText(messages: ChatMessage[]): ChatMessage[] {
  return messages.map((m) =>
    Array.isArray(m.content)
      ? { ...m, content: m.content.map((p) => String((p as { text?: unknown }).text)).join('') }
      : m,
  )
}

describe('renderChat through the addon matches the reference client prompt', () => {
  it('the smoke set has cases of every smoke family', () => {
    expect(new Set(smoke.map((c) => familyOf(c.id)))).toEqual(new Set(SMOKE_FAMILIES))
  })

  for (const { id, expected, reference_error: _, ...input } of smoke) {
    it(id, () => {
      expect(renderChat(input)).toEqual(expected)
    })
  }

  // The reference raised on these (text given as content parts); ours renders the parts as their joined text.
  for (const { id, expected: _, reference_error: referenceError, ...input } of cases) {
    if (referenceError === undefined) continue
    it(`${id} (the reference raised; ours renders)`, () => {
      const joined = joinedText(input.messages)
      const r = renderChat(input)
      expect(r).toEqual(renderChat({ ...input, messages: joined }))
      for (const m of joined) expect(r.prompt).toContain(m.content)
    })
  }
})

describe('renderChat errors', () => {
  const llama = { model_type: 'llama' }
  const gemma = { model_type: 'gemma3' }
  /** The error renderChat throws for `input`, checked to be a TemplateError. */
  function templateError(input: RenderInput): TemplateError {
    let err: unknown
    try {
      renderChat(input)
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(TemplateError)
    expect(err).toBeInstanceOf(InvalidRequestError)
    return err as TemplateError
  }

  it('an unknown role names the message index and field', () => {
    const e = templateError({
      config: llama,
      messages: [
        { role: 'user', content: 'a' },
        { role: 'robot' as never, content: 'b' },
      ],
    })
    expect(e.message).toMatch(/^messages\[1\]\.role: unknown role 'robot'/)
  })

  it('a malformed content part names the message, the part and the field', () => {
    expect(
      templateError({ config: gemma, messages: [{ role: 'user', content: [{ type: 'text' }] }] as never }).message,
    ).toMatch(/^messages\[0\]\.content\[0\]\.text/)
    expect(
      templateError({ config: gemma, messages: [{ role: 'user', content: [{ text: 'hi' }] }] as never }).message,
    ).toMatch(/^messages\[0\]\.content\[0\]\.type/)
  })

  it('an invalid data URL names the part', () => {
    const e = templateError({
      config: gemma,
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'what is this?' },
            { type: 'image_url', image_url: { url: 'data:image/png;base64,@@@' } },
          ],
        },
      ] as never,
    })
    expect(e.message).toMatch(/^messages\[0\]\.content\[1\]\.image_url: invalid base64/)
  })

  it('a tool without a name is refused', () => {
    const e = templateError({
      config: llama,
      messages: [{ role: 'user', content: 'a' }],
      tools: [{ type: 'function', function: { description: 'x' } } as never],
    })
    expect(e.message).toMatch(/^tools\[0\]/)
  })

  it('an error raised by the template names the family and the line', () => {
    const e = templateError({
      config: { model_type: 'qwen3_5' },
      messages: [{ role: 'assistant', content: 'no question' }],
    })
    expect(e.message).toMatch(
      /^model family 'qwen3_5': template error in chat_template\.jinja line \d+: .*no user query/,
    )
  })

  it('an unknown model type lists the families', () => {
    const e = templateError({ config: { model_type: 'no-such-arch' }, messages: [{ role: 'user', content: 'a' }] })
    expect(e.message).toMatch(/llama3/)
    expect(e.message).toMatch(/gemma4u/)
  })
})
