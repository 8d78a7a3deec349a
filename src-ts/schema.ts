/**
 * JSON Schema (draft 2020-12, and draft-07 schemas that declare it) through ajv: refuse a
 * malformed schema before a request is sent, and check structured output against the whole
 * schema (`pattern` and `format` included).
 */

import Ajv2020, { type AnySchemaObject, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020'
import addFormats from 'ajv-formats'

import { InvalidRequestError } from './errors'
import { requestJson } from './json'

// Unknown keywords and formats are allowed (schemas carry vendor keywords); they are not checked.
const ajv = new Ajv2020({ allErrors: true, strict: false, logger: false })
ajv.addMetaSchema(require('ajv/dist/refs/json-schema-draft-07.json') as AnySchemaObject)
addFormats(ajv)

/** Compiled validators by schema text, most recently used last. */
const compiled = new Map<string, ValidateFunction>()
const MAX_COMPILED = 256

/** `/a/0/b` (a JSON pointer) as `a[0].b`, appended to `base`. */
function pathOf(base: string, pointer: string): string {
  if (pointer === '') return base
  return pointer
    .slice(1)
    .split('/')
    .map((part) => part.replace(/~1/g, '/').replace(/~0/g, '~'))
    .reduce((at, part) => (/^\d+$/.test(part) ? `${at}[${part}]` : `${at}.${part}`), base)
}

function describe(base: string, e: ErrorObject): string {
  const at = pathOf(base, e.instancePath)
  if (e.keyword === 'required') return `${at}.${String(e.params.missingProperty)}: required`
  if (e.keyword === 'additionalProperties')
    return `${at}.${String(e.params.additionalProperty)}: not an allowed property`
  return `${at}: ${e.message ?? e.keyword}`
}

function validatorFor(schema: Record<string, unknown> | boolean, path: string): ValidateFunction {
  const text = requestJson(schema, { root: path })
  const cached = compiled.get(text)
  if (cached) {
    compiled.delete(text)
    compiled.set(text, cached)
    return cached
  }
  let validate: ValidateFunction
  try {
    if (!ajv.validateSchema(schema)) {
      const first = ajv.errors?.[0]
      throw new InvalidRequestError(first ? describe(path, first) : `${path}: not a valid JSON Schema`)
    }
    validate = ajv.compile(schema)
  } catch (e) {
    // An unknown `$schema` dialect, a `$ref` that resolves nowhere, a bad regular expression.
    throw e instanceof InvalidRequestError
      ? e
      : new InvalidRequestError(`${path}: ${(e as Error).message}`, { cause: e })
  } finally {
    // The cache above owns compiled schemas; ajv's own would keep every schema ever seen.
    if (typeof schema === 'object') ajv.removeSchema(schema)
  }
  compiled.set(text, validate)
  if (compiled.size > MAX_COMPILED) compiled.delete(compiled.keys().next().value as string)
  return validate
}

/** Keywords whose values are data, not subschemas. */
const DATA_KEYWORDS = new Set(['const', 'enum', 'default', 'examples'])

/**
 * A `required` naming a property its own `properties` does not declare: valid JSON Schema
 * (ajv's strictRequired also refuses the `anyOf: [{ required }]` idiom), but with
 * `additionalProperties: false` nothing can match it, and otherwise it is a typo.
 */
function checkRequiredDeclared(node: unknown, path: string): void {
  if (typeof node !== 'object' || node === null) return
  if (Array.isArray(node)) {
    node.forEach((item, i) => {
      checkRequiredDeclared(item, `${path}[${i}]`)
    })
    return
  }
  const { properties, required } = node as Record<string, unknown>
  if (Array.isArray(required) && typeof properties === 'object' && properties !== null) {
    const missing = required.find((r) => typeof r === 'string' && !Object.hasOwn(properties, r))
    if (missing !== undefined)
      throw new InvalidRequestError(`${path}.required: '${String(missing)}' is not among the properties`)
  }
  for (const [key, value] of Object.entries(node))
    if (!DATA_KEYWORDS.has(key)) checkRequiredDeclared(value, `${path}.${key}`)
}

/** Throw an InvalidRequestError naming the first malformed part of `schema` (at `path`). */
export function checkJsonSchema(schema: unknown, path: string): void {
  if (typeof schema !== 'boolean' && (typeof schema !== 'object' || schema === null || Array.isArray(schema))) {
    throw new InvalidRequestError(`${path}: expected a JSON Schema object`)
  }
  validatorFor(schema as Record<string, unknown> | boolean, path)
  checkRequiredDeclared(schema, path)
}

/** Where `value` breaks `schema`, each issue naming its path from `$` (empty when it conforms). */
export function validateJson(schema: Record<string, unknown> | boolean, value: unknown): string[] {
  const validate = validatorFor(schema, 'schema')
  if (validate(value)) return []
  return (validate.errors ?? []).map((e) => describe('$', e))
}
