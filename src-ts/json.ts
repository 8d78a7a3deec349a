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

/** `value` as JSON text for the native side; throws InvalidRequestError naming a field JSON cannot carry. */
export function requestJson(value: unknown, options: RequestJsonOptions = {}): string {
  const { root = '', convert } = options
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
