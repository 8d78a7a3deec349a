/**
 * A small JSON Schema checker: enough to refuse a malformed schema before a request is sent,
 * and to check structured output against the subset engines enforce (types, properties,
 * required, additionalProperties, items, enum, const, anyOf/oneOf/allOf, $defs references).
 */

import { InvalidRequestError } from './errors'

const TYPES = new Set(['object', 'array', 'string', 'number', 'integer', 'boolean', 'null'])

const fail = (path: string, what: string) => new InvalidRequestError(`${path}: ${what}`)

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** Throw an InvalidRequestError naming the first malformed part of `schema`. */
export function checkJsonSchema(schema: unknown, path: string): void {
  if (typeof schema === 'boolean') return
  if (!isObject(schema)) throw fail(path, 'expected a JSON Schema object')
  const type = schema.type
  if (type !== undefined) {
    const types = Array.isArray(type) ? type : [type]
    if (types.length === 0) throw fail(`${path}.type`, 'an empty list of types')
    for (const t of types) if (typeof t !== 'string' || !TYPES.has(t)) throw fail(`${path}.type`, `'${String(t)}' is not a JSON Schema type`)
  }
  if (schema.properties !== undefined) {
    if (!isObject(schema.properties)) throw fail(`${path}.properties`, 'expected an object of property schemas')
    for (const [k, v] of Object.entries(schema.properties)) checkJsonSchema(v, `${path}.properties.${k}`)
  }
  if (schema.required !== undefined) {
    if (!Array.isArray(schema.required) || schema.required.some((r) => typeof r !== 'string')) throw fail(`${path}.required`, 'expected an array of property names')
    if (isObject(schema.properties)) {
      for (const r of schema.required as string[]) {
        if (!(r in schema.properties)) throw fail(`${path}.required`, `'${r}' is not among the properties`)
      }
    }
  }
  if (schema.additionalProperties !== undefined && typeof schema.additionalProperties !== 'boolean') {
    checkJsonSchema(schema.additionalProperties, `${path}.additionalProperties`)
  }
  if (schema.items !== undefined) checkJsonSchema(schema.items, `${path}.items`)
  if (schema.enum !== undefined && (!Array.isArray(schema.enum) || schema.enum.length === 0)) throw fail(`${path}.enum`, 'expected a non-empty array')
  for (const key of ['anyOf', 'oneOf', 'allOf'] as const) {
    const list = schema[key]
    if (list === undefined) continue
    if (!Array.isArray(list) || list.length === 0) throw fail(`${path}.${key}`, 'expected a non-empty array of schemas')
    list.forEach((s, i) => checkJsonSchema(s, `${path}.${key}[${i}]`))
  }
  for (const key of ['$defs', 'definitions'] as const) {
    const defs = schema[key]
    if (defs === undefined) continue
    if (!isObject(defs)) throw fail(`${path}.${key}`, 'expected an object of schemas')
    for (const [k, v] of Object.entries(defs)) checkJsonSchema(v, `${path}.${key}.${k}`)
  }
  for (const key of ['minimum', 'maximum', 'minLength', 'maxLength', 'minItems', 'maxItems'] as const) {
    if (schema[key] !== undefined && typeof schema[key] !== 'number') throw fail(`${path}.${key}`, 'expected a number')
  }
}

function typeOf(v: unknown): string {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'array'
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number'
  return typeof v
}

function resolve(root: Record<string, unknown>, ref: string): unknown {
  if (!ref.startsWith('#/')) return undefined
  let node: unknown = root
  for (const part of ref.slice(2).split('/')) {
    if (!isObject(node)) return undefined
    node = node[part.replace(/~1/g, '/').replace(/~0/g, '~')]
  }
  return node
}

/** Where `value` breaks `schema` (empty when it conforms). */
export function validateJson(schema: Record<string, unknown>, value: unknown): string[] {
  const issues: string[] = []
  const visit = (s: unknown, v: unknown, at: string, depth: number): void => {
    if (depth > 64 || s === true || s === undefined) return
    if (s === false) return void issues.push(`${at}: not allowed`)
    if (!isObject(s)) return
    if (typeof s.$ref === 'string') return visit(resolve(schema, s.$ref), v, at, depth + 1)
    if (s.type !== undefined) {
      const types = Array.isArray(s.type) ? (s.type as string[]) : [s.type as string]
      const actual = typeOf(v)
      if (!types.some((t) => t === actual || (t === 'number' && actual === 'integer'))) issues.push(`${at}: expected ${types.join(' or ')}, got ${actual}`)
    }
    if (Array.isArray(s.enum) && !s.enum.some((e) => JSON.stringify(e) === JSON.stringify(v))) issues.push(`${at}: not one of ${JSON.stringify(s.enum)}`)
    if ('const' in s && JSON.stringify(s.const) !== JSON.stringify(v)) issues.push(`${at}: expected ${JSON.stringify(s.const)}`)
    if (isObject(v)) {
      const props = isObject(s.properties) ? s.properties : {}
      if (Array.isArray(s.required)) for (const r of s.required as string[]) if (!(r in v)) issues.push(`${at}.${r}: required`)
      for (const [k, item] of Object.entries(v)) {
        if (k in props) visit(props[k], item, `${at}.${k}`, depth + 1)
        else if (s.additionalProperties === false) issues.push(`${at}.${k}: not an allowed property`)
        else if (isObject(s.additionalProperties)) visit(s.additionalProperties, item, `${at}.${k}`, depth + 1)
      }
    }
    if (Array.isArray(v)) {
      v.forEach((item, i) => visit(s.items, item, `${at}[${i}]`, depth + 1))
      if (typeof s.minItems === 'number' && v.length < s.minItems) issues.push(`${at}: fewer than ${s.minItems} items`)
      if (typeof s.maxItems === 'number' && v.length > s.maxItems) issues.push(`${at}: more than ${s.maxItems} items`)
    }
    if (typeof v === 'string') {
      if (typeof s.minLength === 'number' && v.length < s.minLength) issues.push(`${at}: shorter than ${s.minLength}`)
      if (typeof s.maxLength === 'number' && v.length > s.maxLength) issues.push(`${at}: longer than ${s.maxLength}`)
    }
    if (typeof v === 'number') {
      if (typeof s.minimum === 'number' && v < s.minimum) issues.push(`${at}: below ${s.minimum}`)
      if (typeof s.maximum === 'number' && v > s.maximum) issues.push(`${at}: above ${s.maximum}`)
    }
    if (Array.isArray(s.allOf)) for (const sub of s.allOf) visit(sub, v, at, depth + 1)
    for (const key of ['anyOf', 'oneOf'] as const) {
      const list = s[key]
      if (!Array.isArray(list)) continue
      const before = issues.length
      const matches = list.filter((sub) => {
        const mark = issues.length
        visit(sub, v, at, depth + 1)
        const ok = issues.length === mark
        issues.length = mark
        return ok
      }).length
      issues.length = before
      if (key === 'anyOf' ? matches === 0 : matches !== 1) issues.push(`${at}: matches ${matches} of the ${key} schemas`)
    }
  }
  visit(schema, value, '$', 0)
  return issues
}
