// requestJson: the JSON text requests cross to the native side as, with every value JSON
// cannot carry refused by its field path.
import { describe, expect, it } from 'vitest'

import { InvalidRequestError } from '../src-ts'
import { requestJson } from '../src-ts/json'

function refusal(value: unknown, root?: string): string {
  try {
    requestJson(value, { root })
  } catch (e) {
    expect(e).toBeInstanceOf(InvalidRequestError)
    return (e as Error).message
  }
  throw new Error('expected a refusal')
}

describe('requestJson', () => {
  it('writes what JSON.stringify writes for plain data', () => {
    const value = { a: [1, 'two', null, { b: true }], c: undefined, d: new Date(0), e: -0 }
    expect(requestJson(value)).toBe(JSON.stringify(value))
  })

  it('writes what JSON.stringify writes for deep data, class instances, toJSON and prototype-less objects', () => {
    let deep: unknown = 'leaf'
    for (let i = 0; i < 100; i++) deep = i % 2 ? { k: deep } : [deep]
    class Point {
      constructor(
        public x: number,
        public y: number,
      ) {}
    }
    const bare = Object.assign(Object.create(null) as Record<string, unknown>, { a: 1 })
    const custom = { toJSON: () => ({ replaced: true }) }
    const list = Object.assign([1, 2], { toJSON: () => 'list' })
    for (const value of [deep, new Point(1, 2), bare, custom, list, { m: new Map([[1, 2]]), s: new Set([1]) }]) {
      expect(requestJson(value)).toBe(JSON.stringify(value))
    }
  })

  it('checks deep data too: a bad value below the nesting the quick check looks at is still refused', () => {
    let deep: unknown = Number.NaN
    for (let i = 0; i < 80; i++) deep = { k: deep }
    expect(refusal(deep)).toBe(`${Array(80).fill('k').join('.')}: NaN is not a finite number`)
  })

  it('names the field of a BigInt, function, symbol or non-finite number', () => {
    expect(refusal({ seed: 5n })).toBe('seed: 5n is a BigInt, which JSON cannot carry; use a number')
    expect(refusal({ a: { b: [0, () => 1] } })).toBe('a.b[1]: a function cannot be sent; expected JSON data')
    expect(refusal({ a: Symbol('s') })).toBe('a: a symbol cannot be sent; expected JSON data')
    expect(refusal([1, Number.NaN], 'list')).toBe('list[1]: NaN is not a finite number')
    expect(refusal({ t: Number.NEGATIVE_INFINITY })).toBe('t: -Infinity is not a finite number')
    expect(refusal(Number.POSITIVE_INFINITY)).toBe('value: Infinity is not a finite number')
  })

  it('refuses a cycle, naming where it closes; a shared object is not a cycle', () => {
    const loop: Record<string, unknown> = {}
    loop.self = { again: loop }
    expect(refusal({ tools: [loop] })).toBe('tools[0].self.again: a circular reference (back to tools[0])')
    const top: unknown[] = []
    top.push(top)
    expect(refusal(top)).toBe('value[0]: a circular reference (back to the top)')
    const shared = { type: 'string' }
    expect(requestJson({ a: shared, b: [shared, shared] })).toBe(
      '{"a":{"type":"string"},"b":[{"type":"string"},{"type":"string"}]}',
    )
  })

  it('paths stay right after nested objects close', () => {
    expect(refusal({ a: { b: { c: 1 } }, d: [{ e: 1 }, { f: Number.NaN }] })).toBe('d[1].f: NaN is not a finite number')
  })

  it('convert sees the value before toJSON and may replace it', () => {
    const bytes = Buffer.from('hi')
    const json = requestJson(
      { id: 2n ** 60n, bytes },
      {
        convert: (original, value) =>
          original instanceof Uint8Array ? 'bytes' : typeof value === 'bigint' ? String(value) : undefined,
      },
    )
    expect(json).toBe(`{"id":"${2n ** 60n}","bytes":"bytes"}`)
    const nested = requestJson(
      { prompts: [{ text: 'plain', bytes: new Uint8Array([1]) }] },
      { convert: (original) => (original instanceof Uint8Array ? 'converted' : undefined) },
    )
    expect(nested).toBe('{"prompts":[{"text":"plain","bytes":"converted"}]}')
  })
})
