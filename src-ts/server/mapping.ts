/**
 * The one place where OpenAI request bodies become orchard requests: field names, shapes and
 * which fields are accepted, ignored or refused. Ranges are checked by orchard's core; its
 * messages name orchard options, which {@link ParamNames} renames back to the OpenAI fields.
 */

import { reasoningEfforts } from '../native'
import type { ResponsesRequest } from '../responses/types'
import type {
  ChatMessage,
  ChatOptions,
  ContentPart,
  FunctionTool,
  ReasoningEffort,
  ResponseFormat,
  ToolCall,
  ToolChoice,
} from '../types'
import { badRequest, type ParamNames } from './errors'
import { body, checkKeys, isObject, type Json, model, optBool, optNumber, optString } from './fields'

/** Standard fields accepted and ignored (they have no meaning for a local engine). */
export const IGNORED_FIELDS: readonly string[] = [
  'user',
  'store',
  'metadata',
  'service_tier',
  'prompt_cache_key',
  'safety_identifier',
]

/** orchard option → OpenAI field, for the messages of the core's validation. */
const OPTION_FIELDS: ReadonlyArray<[string, string]> = [
  ['maxTokens', 'max_tokens'],
  ['temperature', 'temperature'],
  ['topP', 'top_p'],
  ['topK', 'top_k'],
  ['minP', 'min_p'],
  ['seed', 'seed'],
  ['stop', 'stop'],
  ['n', 'n'],
  ['bestOf', 'best_of'],
  ['topLogprobs', 'top_logprobs'],
  ['frequencyPenalty', 'frequency_penalty'],
  ['presencePenalty', 'presence_penalty'],
  ['repetitionPenalty', 'repetition_penalty'],
  ['logitBias', 'logit_bias'],
  ['reasoning', 'reasoning_effort'],
  ['tools', 'tools'],
  ['toolChoice', 'tool_choice'],
  ['maxToolCalls', 'parallel_tool_calls'],
  ['responseFormat', 'response_format'],
]

function stop(o: Json): string | string[] | undefined {
  const v = o.stop
  if (v === undefined || v === null) return undefined
  if (typeof v === 'string') return v
  if (Array.isArray(v) && v.every((s): s is string => typeof s === 'string')) return v
  throw badRequest('stop', 'expected a string or an array of strings')
}

function logitBias(o: Json): Record<string, number> | undefined {
  const v = o.logit_bias
  if (v === undefined || v === null) return undefined
  if (!isObject(v)) throw badRequest('logit_bias', 'expected an object of token id → bias')
  for (const [k, b] of Object.entries(v)) {
    if (!/^\d+$/.test(k)) throw badRequest(`logit_bias.${k}`, 'expected a token id')
    if (typeof b !== 'number') throw badRequest(`logit_bias.${k}`, 'expected a number')
  }
  return v as Record<string, number>
}

/** Sampling fields shared by chat and legacy completions, plus orchard's extensions. */
function sampling(o: Json, options: ChatOptions): void {
  const set = <K extends keyof ChatOptions>(k: K, v: ChatOptions[K] | undefined) => {
    if (v !== undefined) options[k] = v
  }
  set('temperature', optNumber(o, 'temperature'))
  set('topP', optNumber(o, 'top_p'))
  set('topK', optNumber(o, 'top_k', true))
  set('minP', optNumber(o, 'min_p'))
  set('repetitionPenalty', optNumber(o, 'repetition_penalty'))
  set('frequencyPenalty', optNumber(o, 'frequency_penalty'))
  set('presencePenalty', optNumber(o, 'presence_penalty'))
  set('seed', optNumber(o, 'seed', true))
  set('n', optNumber(o, 'n', true))
  set('stop', stop(o))
  set('logitBias', logitBias(o))
}

function streamOptions(o: Json): { stream: boolean; includeUsage: boolean } {
  const stream = optBool(o, 'stream') ?? false
  const so = o.stream_options
  if (so === undefined || so === null) return { stream, includeUsage: false }
  if (!isObject(so)) throw badRequest('stream_options', 'expected an object')
  checkKeys(so, new Set(['include_usage', 'include_obfuscation']), 'stream_options')
  return { stream, includeUsage: optBool(so, 'include_usage', 'stream_options.include_usage') ?? false }
}

function names(overrides: Array<[string, string]> = []): ParamNames {
  return new Map([...OPTION_FIELDS, ...overrides])
}

// ---------------------------------------------------------------------------------------
// Chat completions

const CHAT_FIELDS = new Set([
  'model',
  'messages',
  'stream',
  'stream_options',
  'n',
  'tools',
  'tool_choice',
  'parallel_tool_calls',
  'response_format',
  'logprobs',
  'top_logprobs',
  'stop',
  'seed',
  'max_tokens',
  'max_completion_tokens',
  'reasoning_effort',
  'temperature',
  'top_p',
  'frequency_penalty',
  'presence_penalty',
  'logit_bias',
  'modalities',
  // orchard extensions
  'top_k',
  'min_p',
  'repetition_penalty',
  ...IGNORED_FIELDS,
])

const MESSAGE_FIELDS = new Set([
  'role',
  'content',
  'name',
  'tool_calls',
  'tool_call_id',
  'refusal',
  'annotations',
  'audio',
  'reasoning_content',
])
const ROLES = new Set(['system', 'developer', 'user', 'assistant', 'tool'])

function contentPart(p: unknown, at: string): ContentPart {
  if (!isObject(p)) throw badRequest(at, 'expected a content part object')
  const type = p.type
  if (type === 'text') {
    if (typeof p.text !== 'string') throw badRequest(`${at}.text`, 'expected a string')
    return { type: 'text', text: p.text }
  }
  if (type === 'refusal') {
    if (typeof p.refusal !== 'string') throw badRequest(`${at}.refusal`, 'expected a string')
    return { type: 'text', text: p.refusal }
  }
  if (type === 'image_url') {
    const img = p.image_url
    const url = typeof img === 'string' ? img : isObject(img) ? img.url : undefined
    if (typeof url !== 'string' || url.length === 0)
      throw badRequest(`${at}.image_url.url`, 'expected an image URL or a data: URL')
    // `detail` has no meaning here: the model sees the image at its own resolution.
    return { type: 'image_url', image_url: { url } }
  }
  throw badRequest(`${at}.type`, `unsupported content part type ${JSON.stringify(type)}; expected text or image_url`)
}

function toolCall(c: unknown, at: string): ToolCall {
  if (!isObject(c)) throw badRequest(at, 'expected a tool call object')
  if (c.type !== undefined && c.type !== 'function') throw badRequest(`${at}.type`, "expected 'function'")
  const f = c.function
  if (!isObject(f) || typeof f.name !== 'string' || f.name.length === 0)
    throw badRequest(`${at}.function.name`, "expected the function's name")
  const args = f.arguments
  if (typeof args !== 'string' && !isObject(args)) throw badRequest(`${at}.function.arguments`, 'expected JSON text')
  const call: ToolCall = { type: 'function', function: { name: f.name, arguments: args } }
  if (c.id !== undefined) {
    if (typeof c.id !== 'string') throw badRequest(`${at}.id`, 'expected a string')
    call.id = c.id
  }
  return call
}

function chatMessage(m: unknown, i: number): ChatMessage {
  const at = `messages[${i}]`
  if (!isObject(m)) throw badRequest(at, 'expected a message object')
  checkKeys(m, MESSAGE_FIELDS, at)
  const role = m.role
  if (typeof role !== 'string' || !ROLES.has(role))
    throw badRequest(`${at}.role`, 'expected system, developer, user, assistant or tool')
  const out: ChatMessage = { role: role as ChatMessage['role'] }
  const content = m.content
  if (typeof content === 'string') out.content = content
  else if (Array.isArray(content)) out.content = content.map((p, j) => contentPart(p, `${at}.content[${j}]`))
  else if (content === null || content === undefined) {
    if (role !== 'assistant') throw badRequest(`${at}.content`, 'expected a string or an array of content parts')
    out.content = ''
  } else throw badRequest(`${at}.content`, 'expected a string or an array of content parts')
  const name = optString(m, 'name', `${at}.name`)
  if (name !== undefined) out.name = name
  if (m.tool_calls !== undefined && m.tool_calls !== null) {
    if (role !== 'assistant') throw badRequest(`${at}.tool_calls`, 'only assistant messages carry tool calls')
    if (!Array.isArray(m.tool_calls)) throw badRequest(`${at}.tool_calls`, 'expected an array')
    out.tool_calls = m.tool_calls.map((c, j) => toolCall(c, `${at}.tool_calls[${j}]`))
  }
  if (role === 'tool') {
    const id = m.tool_call_id
    if (typeof id !== 'string')
      throw badRequest(`${at}.tool_call_id`, 'expected the id of the tool call this message answers')
    out.tool_call_id = id
  } else if (m.tool_call_id !== undefined)
    throw badRequest(`${at}.tool_call_id`, 'only tool messages answer a tool call')
  return out
}

function chatTools(o: Json): FunctionTool[] | undefined {
  const v = o.tools
  if (v === undefined || v === null) return undefined
  if (!Array.isArray(v)) throw badRequest('tools', 'expected an array of function tools')
  return v.map((t, i) => {
    const at = `tools[${i}]`
    if (!isObject(t) || t.type !== 'function')
      throw badRequest(`${at}.type`, "expected 'function' (the only tool type served)")
    const f = t.function
    if (!isObject(f) || typeof f.name !== 'string' || f.name.length === 0)
      throw badRequest(`${at}.function.name`, "expected the function's name")
    checkKeys(f, new Set(['name', 'description', 'parameters', 'strict']), `${at}.function`)
    const fn: NonNullable<FunctionTool['function']> = { name: f.name }
    const description = optString(f, 'description', `${at}.function.description`)
    if (description !== undefined) fn.description = description
    if (f.parameters !== undefined && f.parameters !== null) {
      if (!isObject(f.parameters)) throw badRequest(`${at}.function.parameters`, 'expected a JSON Schema object')
      fn.parameters = f.parameters
    }
    // Calls always follow the parameters schema (the engine's grammar), so `strict` is implied.
    return { type: 'function', function: fn }
  })
}

function chatToolChoice(o: Json): ToolChoice | undefined {
  const v = o.tool_choice
  if (v === undefined || v === null) return undefined
  if (v === 'auto' || v === 'none' || v === 'required') return v
  if (isObject(v) && v.type === 'function' && isObject(v.function) && typeof v.function.name === 'string') {
    return { type: 'function', function: { name: v.function.name } }
  }
  throw badRequest('tool_choice', "expected 'auto', 'none', 'required' or { type: 'function', function: { name } }")
}

function responseFormat(o: Json): ResponseFormat | undefined {
  const v = o.response_format
  if (v === undefined || v === null) return undefined
  if (!isObject(v)) throw badRequest('response_format', 'expected an object')
  if (v.type === 'text') return undefined
  if (v.type === 'json_object') return { type: 'json_object' }
  if (v.type === 'json_schema') {
    const js = v.json_schema
    if (!isObject(js)) throw badRequest('response_format.json_schema', 'expected { name, schema, strict }')
    checkKeys(js, new Set(['name', 'description', 'schema', 'strict']), 'response_format.json_schema')
    const schema = js.schema
    if (!isObject(schema) && typeof schema !== 'boolean')
      throw badRequest('response_format.json_schema.schema', 'expected a JSON Schema')
    const out: Extract<ResponseFormat, { type: 'json_schema' }> = { type: 'json_schema', json_schema: { schema } }
    const name = optString(js, 'name', 'response_format.json_schema.name')
    if (name !== undefined) out.json_schema.name = name
    const description = optString(js, 'description', 'response_format.json_schema.description')
    if (description !== undefined) out.json_schema.description = description
    const strict = optBool(js, 'strict', 'response_format.json_schema.strict')
    if (strict !== undefined) out.json_schema.strict = strict
    return out
  }
  throw badRequest('response_format.type', "expected 'text', 'json_object' or 'json_schema'")
}

function reasoningEffort(o: Json): boolean | ReasoningEffort | undefined {
  const v = o.reasoning_effort
  if (v === undefined || v === null) return undefined
  if (v === 'none') return false
  if (reasoningEfforts().includes(v as ReasoningEffort)) return v as ReasoningEffort
  throw badRequest('reasoning_effort', `expected 'none' or one of ${reasoningEfforts().join(', ')}`)
}

/** Log-probabilities asked for: whether, and how many alternatives per token to return. */
export interface LogprobRequest {
  enabled: boolean
  top: number
}

/** What the chat and legacy completion endpoints both map a body to. */
interface MappedRequest {
  model: string
  options: ChatOptions
  stream: boolean
  includeUsage: boolean
  logprobs: LogprobRequest
  /** orchard option → the body's field, for error messages. */
  names: ParamNames
}

export interface ChatRequest extends MappedRequest {
  messages: ChatMessage[]
}

/** A `POST /v1/chat/completions` body → the chat request orchard sends. */
export function mapChatRequest(raw: unknown): ChatRequest {
  const o = body(raw)
  checkKeys(o, CHAT_FIELDS, '')
  const id = model(o)
  if (!Array.isArray(o.messages) || o.messages.length === 0)
    throw badRequest('messages', 'expected a non-empty array of messages')
  const messages = o.messages.map(chatMessage)
  const modalities = o.modalities
  if (
    modalities !== undefined &&
    modalities !== null &&
    !(Array.isArray(modalities) && modalities.every((m) => m === 'text'))
  ) {
    throw badRequest('modalities', "only ['text'] is served")
  }
  const options: ChatOptions = {}
  sampling(o, options)
  const maxTokens = optNumber(o, 'max_completion_tokens', true) ?? optNumber(o, 'max_tokens', true)
  if (maxTokens !== undefined) options.maxTokens = maxTokens
  const tools = chatTools(o)
  if (tools) options.tools = tools
  const choice = chatToolChoice(o)
  if (choice !== undefined) options.toolChoice = choice
  if (optBool(o, 'parallel_tool_calls') === false) options.maxToolCalls = 1
  const format = responseFormat(o)
  if (format) options.responseFormat = format
  const reasoning = reasoningEffort(o)
  if (reasoning !== undefined) options.reasoning = reasoning
  const logprobs = optBool(o, 'logprobs') ?? false
  const top = optNumber(o, 'top_logprobs', true)
  if (top !== undefined && !logprobs) throw badRequest('top_logprobs', 'needs logprobs: true')
  // The engine reports a token's log-probability along with its alternatives: ask for one at least.
  // Its range is the core's (out-of-range values come back as a 400 naming top_logprobs).
  if (logprobs) options.topLogprobs = top === undefined || top === 0 ? 1 : top
  const override: Array<[string, string]> =
    o.max_completion_tokens !== undefined ? [['maxTokens', 'max_completion_tokens']] : []
  return {
    model: id,
    messages,
    options,
    ...streamOptions(o),
    logprobs: { enabled: logprobs, top: top ?? 0 },
    names: names(override),
  }
}

// ---------------------------------------------------------------------------------------
// Legacy completions

const COMPLETION_FIELDS = new Set([
  'model',
  'prompt',
  'suffix',
  'max_tokens',
  'temperature',
  'top_p',
  'n',
  'stream',
  'stream_options',
  'logprobs',
  'echo',
  'stop',
  'presence_penalty',
  'frequency_penalty',
  'best_of',
  'logit_bias',
  'seed',
  'top_k',
  'min_p',
  'repetition_penalty',
  ...IGNORED_FIELDS,
])

/** The legacy endpoint's default, as in OpenAI's API. */
export const COMPLETION_DEFAULT_MAX_TOKENS = 16

export interface CompletionRequest extends MappedRequest {
  /** One single-turn conversation per prompt. */
  conversations: ChatMessage[][]
  /** Candidates returned per prompt. */
  n: number
}

/** A `POST /v1/completions` body: each prompt becomes a single user turn. */
export function mapCompletionRequest(raw: unknown): CompletionRequest {
  const o = body(raw)
  checkKeys(o, COMPLETION_FIELDS, '')
  const id = model(o)
  const p = o.prompt
  let prompts: string[]
  if (typeof p === 'string') prompts = [p]
  else if (Array.isArray(p) && p.length > 0 && p.every((s): s is string => typeof s === 'string')) prompts = p
  else throw badRequest('prompt', 'expected a string or a non-empty array of strings (token arrays are not served)')
  prompts.forEach((s, i) => {
    if (s.length === 0)
      throw badRequest(
        prompts.length === 1 && typeof p === 'string' ? 'prompt' : `prompt[${i}]`,
        'expected a non-empty prompt',
      )
  })
  if (o.suffix !== undefined && o.suffix !== null) throw badRequest('suffix', 'insertion (suffix) is not served')
  if (optBool(o, 'echo') === true) throw badRequest('echo', 'echoing the prompt is not served')
  const options: ChatOptions = {}
  sampling(o, options)
  options.maxTokens = optNumber(o, 'max_tokens', true) ?? COMPLETION_DEFAULT_MAX_TOKENS
  const bestOf = optNumber(o, 'best_of', true)
  if (bestOf !== undefined) options.bestOf = bestOf
  const lp = optNumber(o, 'logprobs', true)
  if (lp !== undefined && (lp < 0 || lp > 5)) throw badRequest('logprobs', `${lp} is out of range; use 0 to 5`)
  if (lp !== undefined) options.topLogprobs = Math.max(1, lp)
  const s = streamOptions(o)
  if (s.stream && bestOf !== undefined && bestOf > (options.n ?? 1))
    throw badRequest('best_of', 'cannot be more than n when streaming')
  return {
    model: id,
    conversations: prompts.map((text) => [{ role: 'user', content: text }]),
    options,
    n: options.n ?? 1,
    ...s,
    logprobs: { enabled: lp !== undefined, top: lp ?? 0 },
    names: names([['topLogprobs', 'logprobs']]),
  }
}

// ---------------------------------------------------------------------------------------
// Responses

/** Fields of orchard's ResponsesRequest that a JSON body cannot (or may not) set. */
const RESPONSES_REFUSED = new Set(['signal', 'stallTimeoutMs'])

export interface ResponsesHttpRequest {
  model: string
  request: ResponsesRequest
  stream: boolean
}

/**
 * A `POST /v1/responses` body. orchard's Responses implementation validates the rest and
 * names the fields itself (they are the Responses API's own).
 */
export function mapResponsesRequest(raw: unknown): ResponsesHttpRequest {
  const o = body(raw)
  for (const key of Object.keys(o))
    if (RESPONSES_REFUSED.has(key)) throw badRequest(key, 'unknown or unsupported field')
  const id = model(o)
  const stream = optBool(o, 'stream') ?? false
  const { model: _m, stream: _s, ...rest } = o
  void _m
  void _s
  return { model: id, request: rest as unknown as ResponsesRequest, stream }
}

// ---------------------------------------------------------------------------------------
// Embeddings

const EMBEDDING_FIELDS = new Set(['model', 'input', 'encoding_format', 'dimensions', ...IGNORED_FIELDS])

/** Texts one `POST /v1/embeddings` takes (OpenAI's own limit). */
export const MAX_EMBEDDING_INPUTS = 2048

export interface EmbeddingsRequest {
  model: string
  /** Every text is embedded, in one engine request. */
  input: string | string[]
  encodingFormat: 'float' | 'base64'
  /** The size asked for, checked against the model's once the vectors are back. */
  dimensions: number | undefined
}

/**
 * A `POST /v1/embeddings` body. Texts are checked by orchard's core (it names `input` or
 * `input[i]`); token arrays are refused here.
 */
export function mapEmbeddingsRequest(raw: unknown): EmbeddingsRequest {
  const o = body(raw)
  checkKeys(o, EMBEDDING_FIELDS, '')
  const id = model(o)
  const input = o.input
  if (input === undefined || input === null) throw badRequest('input', 'expected a string or an array of strings')
  if (Array.isArray(input)) {
    if (input.length > 0 && input.every((t) => typeof t === 'number' || Array.isArray(t))) {
      throw badRequest('input', 'token arrays are not served; send the text')
    }
    if (input.length > MAX_EMBEDDING_INPUTS)
      throw badRequest('input', `${input.length} texts; at most ${MAX_EMBEDDING_INPUTS} per request`)
  }
  const format = optString(o, 'encoding_format') ?? 'float'
  if (format !== 'float' && format !== 'base64') throw badRequest('encoding_format', "expected 'float' or 'base64'")
  const dimensions = optNumber(o, 'dimensions', true)
  if (dimensions !== undefined && dimensions <= 0) throw badRequest('dimensions', 'expected a positive integer')
  return { model: id, input: input as string | string[], encodingFormat: format, dimensions }
}
