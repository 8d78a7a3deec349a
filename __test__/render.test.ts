import { describe, expect, it } from 'vitest'

import { TemplateError, renderChat } from '../src-ts'
import type { RenderInput } from '../src-ts'
import { readFixture } from './helpers'

interface Case extends RenderInput {
  id: string
  expected?: { prompt: string; layout: Array<{ type: string; length: number }>; reasoning: boolean }
}

const { cases } = readFixture<{ cases: Case[] }>('prompt-parity.json')
const llama3 = cases.filter((c) => c.id.startsWith('llama3/'))

describe('renderChat matches the reference prompts (llama3)', () => {
  it('has the llama3 cases', () => {
    expect(llama3.length).toBeGreaterThanOrEqual(12)
  })
  for (const c of llama3) {
    it(c.id, () => {
      const { id: _id, expected, ...input } = c
      expect(renderChat(input)).toEqual(expected)
    })
  }

  it('rejects an unknown role naming the message index and field', () => {
    expect(() => renderChat({ config: { model_type: 'llama' }, messages: [{ role: 'user', content: 'a' }, { role: 'robot', content: 'b' }] })).toThrow(
      /messages\[1\]\.role/,
    )
  })

  it('rejects an unknown model type listing the families', () => {
    let err: unknown
    try {
      renderChat({ config: { model_type: 'no-such-arch' }, messages: [{ role: 'user', content: 'a' }] })
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(TemplateError)
    expect(String((err as Error).message)).toMatch(/llama3/)
  })
})
