import { existsSync, readFileSync, readdirSync } from 'node:fs'
import path from 'node:path'

import { describe, expect, it } from 'vitest'

import { InvalidRequestError, TemplateError, renderChat } from '../src-ts'
import type { RenderInput } from '../src-ts'
import { readFixture, repoRoot } from './helpers'

interface Case extends RenderInput {
  id: string
  expected?: { prompt: string; layout: Array<{ type: string; length: number }>; reasoning: boolean }
  reference_error?: string
}

interface Divergence {
  id: string
  reason: string
  prompt: string
  layout: Array<{ type: string; length: number }>
  reasoning: boolean
}

const { cases } = readFixture<{ cases: Case[] }>('prompt-parity.json')
// Cases where we differ from the reference on purpose, each explained in docs/prompt-divergences.md.
const divergencePath = path.join(repoRoot, '__test__', 'fixtures', 'prompt-divergences.json')
const divergences: Divergence[] = existsSync(divergencePath) ? (JSON.parse(readFileSync(divergencePath, 'utf8')) as { cases: Divergence[] }).cases : []
const divergenceDoc = existsSync(path.join(repoRoot, 'docs', 'prompt-divergences.md')) ? readFileSync(path.join(repoRoot, 'docs', 'prompt-divergences.md'), 'utf8') : ''

// A case id starts with its family, e.g. `gemma4(e4b)/image`; an `(alias)` case names a
// model_type alias instead (`granite(alias)/hello`), which its own render test resolves.
const familyOf = (id: string): string | null => {
  const head = id.split('/')[0]!
  return head.endsWith('(alias)') ? null : head.replace(/\(.*\)$/, '')
}
const profiles = new Set(
  readdirSync(path.join(repoRoot, 'model-specs'), { withFileTypes: true })
    .filter((d) => d.isDirectory() && existsSync(path.join(repoRoot, 'model-specs', d.name, 'control_tokens.json')))
    .map((d) => d.name),
)

describe('renderChat matches the reference client prompt for prompt', () => {
  it('every family in the fixture has a profile', () => {
    const families = [...new Set(cases.map((c) => familyOf(c.id)).filter((f) => f !== null))].sort()
    expect(families.length).toBeGreaterThan(20)
    expect(families.filter((f) => !profiles.has(f))).toEqual([])
  })

  it('every divergence names a fixture case and is explained', () => {
    for (const d of divergences) {
      expect(cases.some((c) => c.id === d.id), d.id).toBe(true)
      expect(divergenceDoc.includes(d.id), `${d.id} in docs/prompt-divergences.md`).toBe(true)
    }
  })

  for (const c of cases) {
    const { id, expected, reference_error: referenceError, ...input } = c
    const divergence = divergences.find((d) => d.id === id)
    if (referenceError !== undefined) {
      it(`${id} (the reference raised; ours renders)`, () => {
        const r = renderChat(input)
        expect(r.prompt.length).toBeGreaterThan(0)
      })
    } else if (divergence !== undefined) {
      it(`${id} (diverges on purpose: ${divergence.reason})`, () => {
        const r = renderChat(input)
        expect(r.prompt).not.toEqual(expected?.prompt)
        expect(r).toEqual({ prompt: divergence.prompt, layout: divergence.layout, reasoning: divergence.reasoning })
      })
    } else {
      it(id, () => {
        expect(renderChat(input)).toEqual(expected)
      })
    }
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
    const e = templateError({ config: llama, messages: [{ role: 'user', content: 'a' }, { role: 'robot' as never, content: 'b' }] })
    expect(e.message).toMatch(/^messages\[1\]\.role: unknown role 'robot'/)
  })

  it('a malformed content part names the message, the part and the field', () => {
    expect(templateError({ config: gemma, messages: [{ role: 'user', content: [{ type: 'text' }] }] as never }).message).toMatch(/^messages\[0\]\.content\[0\]\.text/)
    expect(templateError({ config: gemma, messages: [{ role: 'user', content: [{ text: 'hi' }] }] as never }).message).toMatch(/^messages\[0\]\.content\[0\]\.type/)
  })

  it('an invalid data URL names the part', () => {
    const e = templateError({
      config: gemma,
      messages: [{ role: 'user', content: [{ type: 'text', text: 'what is this?' }, { type: 'image_url', image_url: { url: 'data:image/png;base64,@@@' } }] }] as never,
    })
    expect(e.message).toMatch(/^messages\[0\]\.content\[1\]\.image_url: invalid base64/)
  })

  it('a tool without a name is refused', () => {
    const e = templateError({ config: llama, messages: [{ role: 'user', content: 'a' }], tools: [{ type: 'function', function: { description: 'x' } } as never] })
    expect(e.message).toMatch(/^tools\[0\]/)
  })

  it('an error raised by the template names the family and the line', () => {
    const e = templateError({ config: { model_type: 'qwen3_5' }, messages: [{ role: 'assistant', content: 'no question' }] })
    expect(e.message).toMatch(/^model family 'qwen3_5': template error in chat_template\.jinja line \d+: .*no user query/)
  })

  it('an unknown model type lists the families', () => {
    const e = templateError({ config: { model_type: 'no-such-arch' }, messages: [{ role: 'user', content: 'a' }] })
    expect(e.message).toMatch(/llama3/)
    expect(e.message).toMatch(/gemma4u/)
  })

  it('a value JSON cannot carry is refused at once, by its field', () => {
    const part: Record<string, unknown> = { type: 'text', text: 'a' }
    part.again = part
    expect(() => renderChat({ config: llama, messages: [{ role: 'user', content: [part as never] }] })).toThrow(InvalidRequestError)
    expect(() => renderChat({ config: llama, messages: [{ role: 'user', content: [part as never] }] })).toThrow(/^messages\[0\]\.content\[0\]\.again: a circular reference \(back to messages\[0\]\.content\[0\]\)$/)
  })
})
