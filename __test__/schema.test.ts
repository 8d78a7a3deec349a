// JSON Schema through ajv: structured output checked against the whole schema (pattern and
// format included) over real IPC against the emulator, and malformed schemas refused by path.
import { describe, expect, it } from 'vitest'

import type { Client, ResponsesRequest } from '../src-ts'
import { InvalidRequestError } from '../src-ts'
import { checkJsonSchema, validateJson } from '../src-ts/schema'
import { useEmulator } from './helpers'

let client: Client
let model: string

useEmulator('schema', { env: { PIE_EMULATOR_TOKEN_DELAY_MS: '1' } }, (e) => {
  client = e.client
  model = e.model
})

/** The error a request fails with (never thrown by `responses()` itself: the stream rejects). */
async function failure(request: ResponsesRequest): Promise<unknown> {
  return client
    .responses(model, request)
    .finalResponse()
    .then(
      () => null,
      (e: unknown) => e,
    )
}

describe('structured output checked with the whole schema', () => {
  // The emulator's constrained decoder enforces types and lengths but not pattern or format,
  // like an engine whose grammar cannot express them: its strings are words.
  const schema = {
    type: 'object',
    properties: {
      zip: { type: 'string', pattern: '^[0-9]{5}$' },
      contact: { type: 'string', format: 'email' },
      note: { type: 'string', minLength: 1 },
    },
    required: ['zip', 'contact', 'note'],
    additionalProperties: false,
  }

  it('a parsed result that breaks pattern and format is reported invalid, naming the paths', async () => {
    const response = await client.responses(model, {
      input: 'An address.',
      text: { format: { type: 'json_schema', name: 'address', schema } },
      seed: 31,
    })
    const output = JSON.parse(response.outputText) as Record<string, string>
    expect(Object.keys(output).sort()).toEqual(['contact', 'note', 'zip'])
    expect(output.zip).not.toMatch(/^[0-9]{5}$/)
    expect(output.contact).not.toContain('@')
    expect(response.parsed).toBeNull()
    expect(response.parseError).toMatch(/does not match the requested format/)
    expect(response.parseError).toContain('$.zip: must match pattern "^[0-9]{5}$"')
    expect(response.parseError).toContain('$.contact: must match format "email"')
    expect(response.parseError).not.toContain('$.note')
  })

  it('the same output without pattern and format is parsed', async () => {
    const loose = {
      ...schema,
      properties: { zip: { type: 'string' }, contact: { type: 'string' }, note: { type: 'string', minLength: 1 } },
    }
    const response = await client.responses(model, {
      input: 'An address.',
      text: { format: { type: 'json_schema', name: 'address', schema: loose } },
      seed: 31,
    })
    expect(response.parseError).toBeNull()
    expect(response.parsed).toEqual(JSON.parse(response.outputText))
  })

  it('a draft-07 schema with definitions and $ref is accepted and checked', async () => {
    const draft07 = {
      $schema: 'http://json-schema.org/draft-07/schema#',
      definitions: { zip: { type: 'string', pattern: '^[0-9]{5}$' } },
      type: 'object',
      properties: { zip: { $ref: '#/definitions/zip' } },
      required: ['zip'],
      additionalProperties: false,
    }
    const response = await client.responses(model, {
      input: 'A zip code.',
      text: { format: { type: 'json_schema', schema: draft07 } },
      seed: 32,
    })
    expect(response.parsed).toBeNull()
    expect(response.parseError).toContain('$.zip: must match pattern')
  })
})

describe('tool-call arguments checked against the tool parameters', () => {
  const plant = (zip: Record<string, unknown>) => ({
    type: 'function' as const,
    name: 'plant_tree',
    parameters: {
      type: 'object',
      properties: { zip, tree: { type: 'string', minLength: 1 } },
      required: ['zip', 'tree'],
      additionalProperties: false,
    },
  })

  it('arguments that break a pattern are reported, naming the path; conforming ones are parsed', async () => {
    const strict = await client.responses(model, {
      input: 'Plant a tree.',
      tools: [plant({ type: 'string', pattern: '^[0-9]{5}$' })],
      tool_choice: 'required',
      seed: 7,
    })
    expect(strict.toolCalls).toHaveLength(1)
    const [call] = strict.toolCalls
    expect(JSON.parse(call!.arguments).zip).not.toMatch(/^[0-9]{5}$/)
    expect(call!.parsedArguments).toBeNull()
    expect(call!.argumentsError).toContain("plant_tree's parameters")
    expect(call!.argumentsError).toContain('$.zip: must match pattern "^[0-9]{5}$"')

    const loose = await client.responses(model, {
      input: 'Plant a tree.',
      tools: [plant({ type: 'string' })],
      tool_choice: 'required',
      seed: 7,
    })
    const [ok] = loose.toolCalls
    expect(ok!.argumentsError).toBeNull()
    expect(ok!.parsedArguments).toEqual(JSON.parse(ok!.arguments))
  })
})

describe('malformed schemas are refused before sending, by path', () => {
  it('a tool whose parameters name an unknown type', async () => {
    const err = await failure({
      input: 'x',
      tools: [
        { type: 'function', name: 'plant', parameters: { type: 'object', properties: { tree: { type: 'strin' } } } },
      ],
    })
    expect(err).toBeInstanceOf(InvalidRequestError)
    expect((err as Error).message).toMatch(/^tools\[0\]\.parameters\.properties\.tree\.type: /)
  })

  it('a response schema with a broken pattern or a $ref to nothing', async () => {
    for (const schema of [
      { type: 'object', properties: { zip: { type: 'string', pattern: '([0-9]' } } },
      { type: 'object', properties: { zip: { $ref: '#/$defs/missing' } } },
    ]) {
      const err = await failure({ input: 'x', text: { format: { type: 'json_schema', schema } } })
      expect(err).toBeInstanceOf(InvalidRequestError)
      expect((err as Error).message).toMatch(/^text\.format\.schema: /)
    }
  })
})

describe('checkJsonSchema and validateJson', () => {
  it('refuses non-schemas and accepts boolean schemas', () => {
    expect(() => checkJsonSchema([], 'p')).toThrow(/^p: expected a JSON Schema object$/)
    expect(() => checkJsonSchema({ required: 'a' }, 'p')).toThrow(/^p\.required: must be array$/)
    expect(() => checkJsonSchema(true, 'p')).not.toThrow()
    expect(validateJson(false, 1)).toEqual(['$: boolean schema is false'])
  })

  it('names required, extra and nested array members by path', () => {
    const schema = {
      type: 'object',
      properties: {
        rows: {
          type: 'array',
          items: { type: 'object', properties: { day: { type: 'string', format: 'date' } }, required: ['day'] },
        },
      },
      additionalProperties: false,
    }
    expect(validateJson(schema, { rows: [{ day: '2026-12-01' }, { day: 'Tuesday' }, {}], extra: 1 }).sort()).toEqual([
      '$.extra: not an allowed property',
      '$.rows[1].day: must match format "date"',
      '$.rows[2].day: required',
    ])
    expect(validateJson(schema, { rows: [{ day: '2026-12-01' }] })).toEqual([])
  })

  it('a schema with an $id can be compiled again after a different schema with the same $id', () => {
    expect(validateJson({ $id: 'https://example.com/s', type: 'string' }, 1)).toEqual(['$: must be string'])
    expect(validateJson({ $id: 'https://example.com/s', type: 'number' }, 1)).toEqual([])
  })
})

describe('required names declared properties', () => {
  it('refuses a required property its properties do not declare, at any depth', () => {
    const nested = { type: 'object', properties: { x: { type: 'object', properties: { a: {} }, required: ['c'] } } }
    expect(() => checkJsonSchema(nested, 'p')).toThrow(/^p\.properties\.x\.required: 'c' is not among the properties$/)
  })

  it('accepts required in anyOf branches and data that looks like a schema', () => {
    expect(() =>
      checkJsonSchema(
        { type: 'object', properties: { a: {}, b: {} }, anyOf: [{ required: ['a'] }, { required: ['b'] }] },
        'p',
      ),
    ).not.toThrow()
    expect(() => checkJsonSchema({ const: { properties: {}, required: ['z'] } }, 'p')).not.toThrow()
  })
})

describe('a schema JSON cannot carry', () => {
  it('a circular tool schema is refused by path', async () => {
    const node: Record<string, unknown> = { type: 'object' }
    node.properties = { child: node }
    const err = await failure({ input: 'x', tools: [{ type: 'function', name: 'walk', parameters: node }] })
    expect(err).toBeInstanceOf(InvalidRequestError)
    expect((err as Error).message).toBe(
      'tools[0].parameters.properties.child: a circular reference (back to tools[0].parameters)',
    )
  })
})
