/**
 * Requests cross to the native side as JSON text. Plain `JSON.stringify` throws a bare
 * TypeError on a BigInt or a cycle, drops functions and symbols, and turns NaN and ±Infinity
 * into null; here each is an {@link InvalidRequestError} naming the field.
 */

import { InvalidRequestError } from './errors'

export interface RequestJsonOptions {
  /** The path of `value` itself in error messages ('' names top-level fields bare: `seed`). */
  root?: string
  /**
   * Replace a value before it is checked: return the replacement, or `undefined` to keep it.
   * `original` is the value before its `toJSON` (a Buffer's bytes, not `{ type, data }`).
   * Plain JSON data (strings, finite numbers, booleans, null, arrays and plain objects) is
   * written as it is without calling this: convert what JSON cannot carry as it stands.
   */
  convert?: (original: unknown, value: unknown) => unknown
}

function fieldPath(parent: string, key: string, inArray: boolean): string {
  if (inArray) return `${parent || 'value'}[${key}]`
  return parent === '' ? key : `${parent}.${key}`
}

function refuse(at: string, what: string): InvalidRequestError {
  return new InvalidRequestError(`${at || 'value'}: ${what}`)
}

/** Deeper than this, the checked path decides (a cycle is always deeper). */
const PLAIN_DEPTH_LIMIT = 64

/** An object literal's kind of object: prototype `Object.prototype` or none, no `toJSON`. */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object' || 'toJSON' in value) return false
  const proto: unknown = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

/**
 * Whether `value` is plain JSON data — strings, finite numbers, booleans, null, undefined,
 * arrays and plain objects without `toJSON`, not nested too deep — so `JSON.stringify` alone
 * writes exactly what the checked path would. A type check per value costs a fraction of
 * the checked path's replacer call per key.
 */
function isPlainJson(value: unknown, depth: number): boolean {
  switch (typeof value) {
    case 'string':
    case 'boolean':
    case 'undefined':
      return true
    case 'number':
      return Number.isFinite(value)
    case 'object': {
      if (value === null) return true
      if (depth >= PLAIN_DEPTH_LIMIT) return false
      if (Array.isArray(value)) {
        if ('toJSON' in value) return false
        for (let i = 0; i < value.length; i++) if (!isPlainJson(value[i], depth + 1)) return false
        return true
      }
      if (!isPlainObject(value)) return false
      for (const key in value) {
        if (!isPlainJson(value[key], depth + 1)) return false
      }
      return true
    }
    default:
      return false
  }
}

/** `value` as JSON text for the native side; throws InvalidRequestError naming a field JSON cannot carry. */
export function requestJson(value: unknown, options: RequestJsonOptions = {}): string {
  const { root = '', convert } = options
  // Plain data (nearly every request) needs no replacer; anything else — values to convert or
  // refuse, class instances, toJSON, deep or cyclic data — takes the checked path below.
  if (isPlainJson(value, 0)) return JSON.stringify(value)
  // The objects being written, outermost first, with their paths: JSON.stringify walks depth
  // first, so the holder of each key is on this stack and everything above it is finished.
  const open: object[] = []
  const paths: string[] = []
  return JSON.stringify(value, function (this: unknown, key: string, v: unknown): unknown {
    let at = root
    if (open.length > 0) {
      while (open.length > 0 && open[open.length - 1] !== this) {
        open.pop()
        paths.pop()
      }
      at = fieldPath(paths[paths.length - 1] ?? root, key, Array.isArray(this))
    }
    if (convert) {
      const replaced = convert((this as Record<string, unknown>)[key], v)
      if (replaced !== undefined) return replaced
    }
    switch (typeof v) {
      case 'bigint':
        throw refuse(at, `${v}n is a BigInt, which JSON cannot carry; use a number`)
      case 'function':
        throw refuse(at, 'a function cannot be sent; expected JSON data')
      case 'symbol':
        throw refuse(at, 'a symbol cannot be sent; expected JSON data')
      case 'number':
        if (!Number.isFinite(v)) throw refuse(at, `${v} is not a finite number`)
        return v
      case 'object':
        if (v === null) return v
        {
          const cycle = open.indexOf(v)
          if (cycle >= 0) throw refuse(at, `a circular reference (back to ${paths[cycle] || 'the top'})`)
        }
        open.push(v)
        paths.push(at)
        return v
      default:
        return v
    }
  })
}
