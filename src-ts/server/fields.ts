/**
 * Reading request fields, shared by every route's mapping: JSON bodies, and multipart forms
 * turned into the same shape. Each check names the field at fault in a 400.
 */

import { badRequest } from './errors'

export type Json = Record<string, unknown>

export const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v)

export function body(raw: unknown): Json {
  if (!isObject(raw)) throw badRequest('body', 'expected a JSON object')
  return raw
}

export function checkKeys(o: Json, allowed: ReadonlySet<string>, at: string): void {
  for (const key of Object.keys(o)) {
    if (!allowed.has(key)) throw badRequest(at ? `${at}.${key}` : key, 'unknown or unsupported field')
  }
}

export function optString(o: Json, key: string, at = key): string | undefined {
  const v = o[key]
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'string') throw badRequest(at, 'expected a string')
  return v
}

export function optBool(o: Json, key: string, at = key): boolean | undefined {
  const v = o[key]
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'boolean') throw badRequest(at, 'expected true or false')
  return v
}

export function optNumber(o: Json, key: string, integer = false): number | undefined {
  const v = o[key]
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'number' || !Number.isFinite(v) || (integer && !Number.isInteger(v))) {
    throw badRequest(key, integer ? 'expected an integer' : 'expected a number')
  }
  return v
}

/** One of `choices`, or `undefined` when absent. */
export function optChoice<T extends string>(o: Json, key: string, choices: readonly T[]): T | undefined {
  const v = optString(o, key)
  if (v === undefined) return undefined
  if (!(choices as readonly string[]).includes(v)) {
    throw badRequest(key, `expected one of ${choices.map((c) => `'${c}'`).join(', ')}; got '${v}'`)
  }
  return v as T
}

export function model(o: Json): string {
  const m = o.model
  if (typeof m !== 'string' || m.length === 0) throw badRequest('model', 'expected the id of a served model')
  return m
}

/** How a multipart form's text fields are typed: everything not listed stays a string. */
export interface FormShape {
  /** Fields that carry an uploaded file. */
  files: ReadonlySet<string>
  numbers: ReadonlySet<string>
  booleans?: ReadonlySet<string>
}

const NUMBER = /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/

function formValue(key: string, value: File | string, shape: FormShape): unknown {
  if (shape.files.has(key)) {
    if (typeof value === 'string') throw badRequest(key, 'expected a file upload, not a text field')
    return value
  }
  if (typeof value !== 'string') throw badRequest(key, 'expected a text field, not a file upload')
  if (shape.numbers.has(key)) {
    if (!NUMBER.test(value.trim())) throw badRequest(key, `expected a number; got '${value}'`)
    return Number(value)
  }
  if (shape.booleans?.has(key)) {
    if (value !== 'true' && value !== 'false') throw badRequest(key, `expected true or false; got '${value}'`)
    return value === 'true'
  }
  return value
}

/**
 * A multipart form as a JSON-like object: `key[]` fields (and repeated keys) become arrays,
 * numbers and booleans are parsed, files stay `File`s.
 */
export function formBody(form: FormData, shape: FormShape): Json {
  // No prototype: a field named `__proto__` is a field like any other.
  const o: Json = Object.create(null) as Json
  for (const [name, value] of form.entries()) {
    const listed = name.endsWith('[]')
    const key = listed ? name.slice(0, -2) : name
    const v = formValue(key, value, shape)
    const seen = o[key]
    if (Array.isArray(seen)) seen.push(v)
    else if (seen !== undefined) o[key] = [seen, v]
    else o[key] = listed ? [v] : v
  }
  return o
}
