import { readdirSync } from 'node:fs'
import path from 'node:path'

import { describe, expect, it } from 'vitest'

import { TemplateError, renderChat } from '../src-ts'
import type { RenderInput } from '../src-ts'
import { readFixture, repoRoot } from './helpers'

interface Case extends RenderInput {
  id: string
  expected?: { prompt: string; layout: Array<{ type: string; length: number }>; reasoning: boolean }
  reference_error?: string
}

const { cases } = readFixture<{ cases: Case[] }>('prompt-parity.json')
// A case's id starts with its family; every family with a profile folder is checked.
const families = new Set(readdirSync(path.join(repoRoot, 'model-specs'), { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name))
const covered = cases.filter((c) => families.has(c.id.split('/')[0]!))

describe('renderChat matches the reference client prompt for prompt', () => {
  it('covers llama3 and every family that has a profile', () => {
    expect(families.has('llama3')).toBe(true)
    for (const family of families) {
      expect(
        covered.some((c) => c.id.startsWith(`${family}/`)),
        family,
      ).toBe(true)
    }
  })

  for (const c of covered) {
    const { id, expected, reference_error: referenceError, ...input } = c
    if (referenceError !== undefined) {
      it(`${id} (the reference raised; ours renders)`, () => {
        const r = renderChat(input)
        expect(r.prompt.length).toBeGreaterThan(0)
      })
    } else {
      it(id, () => {
        expect(renderChat(input)).toEqual(expected)
      })
    }
  }
})

describe('renderChat errors', () => {
  it('an unknown role names the message index and field', () => {
    expect(() => renderChat({ config: { model_type: 'llama' }, messages: [{ role: 'user', content: 'a' }, { role: 'robot', content: 'b' }] })).toThrow(
      /messages\[1\]\.role/,
    )
  })

  it('an unknown model type lists the families', () => {
    let err: unknown
    try {
      renderChat({ config: { model_type: 'no-such-arch' }, messages: [{ role: 'user', content: 'a' }] })
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(TemplateError)
    expect(String((err as Error).message)).toMatch(/llama3/)
  })

  it('a tool without a name is refused', () => {
    expect(() =>
      renderChat({ config: { model_type: 'llama' }, messages: [{ role: 'user', content: 'a' }], tools: [{ type: 'function', function: { description: 'x' } } as never] }),
    ).toThrow(/tools\[0\]/)
  })
})
