/** Responses requests → chat messages and options: validation, input items, tools, `text.format`. */

import { InvalidRequestError, nativeSync } from '../errors'
import { requestJson } from '../json'
import { addon, optionLimits } from '../native'
import { checkJsonSchema } from '../schema'
import type { ChatMessage, ChatOptions, ContentPart, ReasoningEffort, ResponseFormat } from '../types'
import type { ResponseFunctionTool, ResponsesRequest, SchemaLike, StandardSchemaLike } from './types'

const REQUEST_KEYS = new Set([
  'input',
  'instructions',
  'max_output_tokens',
  'temperature',
  'top_p',
  'top_k',
  'min_p',
  'presence_penalty',
  'frequency_penalty',
  'repetition_penalty',
  'seed',
  'deterministic',
  'prefix_cache',
  'top_logprobs',
  'tools',
  'tool_choice',
  'min_tool_calls',
  'max_tool_calls',
  'parallel_tool_calls',
  'text',
  'reasoning',
  'task',
  'metadata',
  'stream_tokens',
  'signal',
  'stallTimeoutMs',
  'stream',
  'model',
  'store',
  'include',
  'truncation',
  'previous_response_id',
  'background',
  'user',
])

const invalid = (message: string) => new InvalidRequestError(message)

function isStandardSchema(s: unknown): s is StandardSchemaLike {
  return typeof s === 'object' && s !== null && '~standard' in s
}

/** The JSON Schema of `schema` (a Standard Schema must be able to describe itself). */
function jsonSchemaOf(schema: SchemaLike, path: string): Record<string, unknown> {
  if (!isStandardSchema(schema)) return schema
  const std = schema['~standard']
  // Standard JSON Schema: `input` takes the target dialect (implementations read `options.target`).
  const described =
    std.jsonSchema?.input?.({ target: 'draft-2020-12' }) ??
    (typeof schema.toJSONSchema === 'function' ? schema.toJSONSchema() : undefined)
  if (!described || typeof described !== 'object') {
    throw invalid(
      `${path}: this ${std.vendor} schema cannot describe itself as JSON Schema; pass a JSON Schema object instead`,
    )
  }
  const { $schema: _ignored, ...rest } = described
  return rest
}

/** Messages from the request's input items. */
function toMessages(request: ResponsesRequest): ChatMessage[] {
  const { input } = request
  if (typeof input === 'string') {
    if (input.length === 0) throw invalid('input: expected a non-empty string or a list of items')
    return [{ role: 'user', content: input }]
  }
  if (!Array.isArray(input) || input.length === 0)
    throw invalid('input: expected a non-empty string or a list of items')
  const messages: ChatMessage[] = []
  input.forEach((item, i) => {
    const at = `input[${i}]`
    if (item === null || typeof item !== 'object') throw invalid(`${at}: expected an item object`)
    const type = item.type ?? 'message'
    if (type === 'message') {
      const m = item as { role?: unknown; content?: unknown }
      if (typeof m.role !== 'string') throw invalid(`${at}.role: expected user, assistant, system or developer`)
      if (typeof m.content !== 'string' && !Array.isArray(m.content))
        throw invalid(`${at}.content: expected a string or content parts`)
      messages.push({ role: m.role as ChatMessage['role'], content: m.content as string | ContentPart[] })
    } else if (type === 'function_call') {
      const c = item as { call_id?: unknown; name?: unknown; arguments?: unknown }
      if (typeof c.name !== 'string' || c.name.length === 0) throw invalid(`${at}.name: expected the function's name`)
      if (typeof c.call_id !== 'string') throw invalid(`${at}.call_id: expected a string`)
      if (typeof c.arguments !== 'string' && (typeof c.arguments !== 'object' || c.arguments === null)) {
        throw invalid(`${at}.arguments: expected JSON text or an object`)
      }
      const call = {
        id: c.call_id,
        type: 'function' as const,
        function: { name: c.name, arguments: c.arguments as string | Record<string, unknown> },
      }
      const last = messages[messages.length - 1]
      // Several calls of one turn belong to one assistant message.
      if (last && last.role === 'assistant' && last.tool_calls && (last.content === '' || last.content == null))
        last.tool_calls.push(call)
      else messages.push({ role: 'assistant', content: '', tool_calls: [call] })
    } else if (type === 'function_call_output') {
      const o = item as { call_id?: unknown; output?: unknown }
      if (typeof o.call_id !== 'string')
        throw invalid(`${at}.call_id: expected the call_id of the function_call it answers`)
      if (typeof o.output !== 'string' && !Array.isArray(o.output))
        throw invalid(`${at}.output: expected a string or content parts`)
      messages.push({ role: 'tool', tool_call_id: o.call_id, content: o.output as string | ContentPart[] })
    } else if (type === 'reasoning') {
      // Earlier reasoning is not rendered (as in the reference).
    } else {
      throw invalid(
        `${at}.type: unsupported item type '${String(type)}'; expected message, function_call, function_call_output or reasoning`,
      )
    }
  })
  if (messages.length === 0) throw invalid('input: no message to answer')
  return messages
}

/** The grammar form of a tool: the call as an object whose `arguments` follow the parameters. */
function grammarTool(t: ResponseFunctionTool): Record<string, unknown> {
  return {
    name: t.name,
    type: 'object',
    description: t.description ?? t.name,
    properties: { name: { const: t.name }, arguments: t.parameters ?? { type: 'object' } },
    strict: t.strict ?? true,
    required: ['name', 'arguments'],
  }
}

export interface Prepared {
  messages: ChatMessage[]
  options: ChatOptions
  /** For `parsed`: the JSON schema to check against, the Standard Schema to validate with. */
  format: {
    kind: 'json_schema' | 'json_object'
    schema?: Record<string, unknown>
    standard?: StandardSchemaLike
  } | null
  effort: ReasoningEffort | null
}

/** The numeric Responses fields and the chat option each becomes (ranges: the core's table). */
const NUMERIC_FIELDS: ReadonlyArray<[keyof ResponsesRequest, NumericChatOption]> = [
  ['max_output_tokens', 'maxTokens'],
  ['temperature', 'temperature'],
  ['top_p', 'topP'],
  ['top_k', 'topK'],
  ['min_p', 'minP'],
  ['presence_penalty', 'presencePenalty'],
  ['frequency_penalty', 'frequencyPenalty'],
  ['repetition_penalty', 'repetitionPenalty'],
  ['top_logprobs', 'topLogprobs'],
  ['min_tool_calls', 'minToolCalls'],
  ['max_tool_calls', 'maxToolCalls'],
  ['seed', 'seed'],
]

type NumericChatOption = {
  [K in keyof ChatOptions]-?: NonNullable<ChatOptions[K]> extends number ? K : never
}[keyof ChatOptions]

/** Validate a Responses request and turn it into chat messages and options. */
export function prepareResponses(request: ResponsesRequest): Prepared {
  if (request === null || typeof request !== 'object') throw invalid('request: expected an object with `input`')
  for (const key of Object.keys(request)) {
    if (!REQUEST_KEYS.has(key)) throw invalid(`${key}: unknown request field`)
  }
  const messages = toMessages(request)
  const options: ChatOptions = {}
  // Every numeric field: the core's one range table (its Responses column), checked natively.
  const ranged = (key: keyof ResponsesRequest): number | undefined => {
    const v = request[key]
    if (v === undefined || v === null) return undefined
    nativeSync(() => addon().checkResponsesOption(key, requestJson(v, { root: key })))
    return v as number
  }
  // min_tool_calls ≤ max_tool_calls is checked once, by the core's chat validation.
  for (const [field, option] of NUMERIC_FIELDS) {
    const v = ranged(field)
    if (v !== undefined) options[option] = v
  }
  if (request.deterministic !== undefined) options.deterministic = request.deterministic
  if (request.prefix_cache !== undefined) options.prefixCache = request.prefix_cache
  if (request.instructions !== undefined) options.instructions = request.instructions
  if (request.task !== undefined) options.task = request.task
  if (request.signal !== undefined) options.signal = request.signal
  if (request.stallTimeoutMs !== undefined) options.stallTimeoutMs = request.stallTimeoutMs

  let effort: ReasoningEffort | null = null
  const r = request.reasoning
  const limits = optionLimits()
  if (r === true) {
    effort = limits.defaultReasoningEffort
    options.reasoning = effort
  } else if (r === false) {
    options.reasoning = false
  } else if (r !== undefined && r !== null) {
    if (typeof r !== 'object' || Array.isArray(r))
      throw invalid(`reasoning: expected { effort: ${limits.reasoningEfforts.join(' | ')} } or a boolean`)
    const e = r.effort ?? limits.defaultReasoningEffort
    const efforts = limits.reasoningEfforts
    if (!efforts.includes(e)) throw invalid(`reasoning.effort: '${String(e)}' is not valid; use ${efforts.join(', ')}`)
    effort = e
    options.reasoning = e
  }

  if (request.tools !== undefined) {
    if (!Array.isArray(request.tools)) throw invalid('tools: expected an array of function tools')
    request.tools.forEach((t, i) => {
      if (t === null || typeof t !== 'object' || t.type !== 'function')
        throw invalid(`tools[${i}].type: expected 'function'`)
      if (typeof t.name !== 'string' || t.name.length === 0)
        throw invalid(`tools[${i}].name: expected the function's name`)
      if (t.parameters !== undefined) checkJsonSchema(t.parameters, `tools[${i}].parameters`)
    })
    options.tools = request.tools.map((t) => ({
      type: 'function',
      name: t.name,
      description: t.description ?? t.name,
      parameters: t.parameters ?? { type: 'object', properties: {} },
      strict: t.strict ?? true,
    })) as ChatOptions['tools']
    options.activeTools = request.tools.map(grammarTool) as ChatOptions['activeTools']
  }
  if (request.tool_choice !== undefined) options.toolChoice = request.tool_choice

  let format: Prepared['format'] = null
  const f = request.text?.format
  if (f !== undefined) {
    if (f === null || typeof f !== 'object')
      throw invalid('text.format: expected { type: text | json_object | json_schema }')
    if (f.type === 'json_object') {
      options.responseFormat = { type: 'json_object' }
      format = { kind: 'json_object' }
    } else if (f.type === 'json_schema') {
      if (f.schema === undefined || f.schema === null || typeof f.schema !== 'object')
        throw invalid('text.format.schema: expected a JSON Schema or a Standard Schema object')
      const schema = jsonSchemaOf(f.schema, 'text.format.schema')
      checkJsonSchema(schema, 'text.format.schema')
      const rf: ResponseFormat = {
        type: 'json_schema',
        json_schema: {
          name: f.name ?? 'response',
          schema,
          strict: f.strict ?? true,
          ...(f.description ? { description: f.description } : {}),
        },
      }
      options.responseFormat = rf
      format = { kind: 'json_schema', schema, ...(isStandardSchema(f.schema) ? { standard: f.schema } : {}) }
    } else if (f.type !== 'text') {
      throw invalid(
        `text.format.type: '${String((f as { type: unknown }).type)}' is not valid; use text, json_object or json_schema`,
      )
    }
  }
  return { messages, options, format, effort }
}
