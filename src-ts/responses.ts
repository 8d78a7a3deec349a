/**
 * The Responses API on top of chat streams: request items → messages and options, and the
 * engine's state events → typed output items and stream events, in the reference's order.
 */

import { randomBytes } from 'node:crypto'

import { InvalidRequestError, nativeSync, OrchardError } from './errors'
import { addon, optionLimits } from './native'
import { checkJsonSchema, validateJson } from './schema'
import { type ChatStream, drain } from './stream'
import type { ChatDelta, ChatMessage, ChatOptions, ContentPart, ReasoningEffort, ResponseFormat } from './types'
import type {
  OutputText,
  ResponseFunctionCall,
  ResponseFunctionTool,
  ResponseObject,
  ResponseOutputItem,
  ResponseOutputMessage,
  ResponseReasoningItem,
  ResponseStreamEvent,
  ResponsesRequest,
  SchemaLike,
  StandardSchemaLike,
} from './responses-types'

/** The awaited result: the response object plus conveniences. */
export interface Response extends ResponseObject {
  /** The text of every message item, concatenated. */
  outputText: string
  /** The function calls the model made. */
  toolCalls: ResponseFunctionCall[]
  /** With a JSON `text.format`: the output parsed (and checked against the schema), else null. */
  parsed: unknown
  /** Why `parsed` is null although a JSON format was asked for. */
  parseError: string | null
}

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
  'stallTimeout',
  'stream',
  'model',
  'store',
  'include',
  'truncation',
  'previous_response_id',
  'background',
  'user',
])

const invalid = (message: string) => new InvalidRequestError('INVALID_REQUEST', message)
const newId = (prefix: string) => `${prefix}_${randomBytes(12).toString('hex')}`

function isStandardSchema(s: unknown): s is StandardSchemaLike {
  return typeof s === 'object' && s !== null && '~standard' in s
}

/** The JSON Schema of `schema` (a Standard Schema must be able to describe itself). */
function jsonSchemaOf(schema: SchemaLike, path: string): Record<string, unknown> {
  if (!isStandardSchema(schema)) return schema
  const std = schema['~standard']
  // Standard JSON Schema: `input` takes the target dialect (implementations read `options.target`).
  const described = std.jsonSchema?.input?.({ target: 'draft-2020-12' }) ?? (typeof schema.toJSONSchema === 'function' ? schema.toJSONSchema() : undefined)
  if (!described || typeof described !== 'object') {
    throw invalid(`${path}: this ${std.vendor} schema cannot describe itself as JSON Schema; pass a JSON Schema object instead`)
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
  if (!Array.isArray(input) || input.length === 0) throw invalid('input: expected a non-empty string or a list of items')
  const messages: ChatMessage[] = []
  input.forEach((item, i) => {
    const at = `input[${i}]`
    if (item === null || typeof item !== 'object') throw invalid(`${at}: expected an item object`)
    const type = item.type ?? 'message'
    if (type === 'message') {
      const m = item as { role?: unknown; content?: unknown }
      if (typeof m.role !== 'string') throw invalid(`${at}.role: expected user, assistant, system or developer`)
      if (typeof m.content !== 'string' && !Array.isArray(m.content)) throw invalid(`${at}.content: expected a string or content parts`)
      messages.push({ role: m.role, content: m.content as string | ContentPart[] })
    } else if (type === 'function_call') {
      const c = item as { call_id?: unknown; name?: unknown; arguments?: unknown }
      if (typeof c.name !== 'string' || c.name.length === 0) throw invalid(`${at}.name: expected the function's name`)
      if (typeof c.call_id !== 'string') throw invalid(`${at}.call_id: expected a string`)
      if (typeof c.arguments !== 'string' && (typeof c.arguments !== 'object' || c.arguments === null)) {
        throw invalid(`${at}.arguments: expected JSON text or an object`)
      }
      const call = { id: c.call_id, type: 'function' as const, function: { name: c.name, arguments: c.arguments as string | Record<string, unknown> } }
      const last = messages[messages.length - 1]
      // Several calls of one turn belong to one assistant message.
      if (last && last.role === 'assistant' && last.tool_calls && (last.content === '' || last.content == null)) last.tool_calls.push(call)
      else messages.push({ role: 'assistant', content: '', tool_calls: [call] })
    } else if (type === 'function_call_output') {
      const o = item as { call_id?: unknown; output?: unknown }
      if (typeof o.call_id !== 'string') throw invalid(`${at}.call_id: expected the call_id of the function_call it answers`)
      if (typeof o.output !== 'string' && !Array.isArray(o.output)) throw invalid(`${at}.output: expected a string or content parts`)
      messages.push({ role: 'tool', tool_call_id: o.call_id, content: o.output as string | ContentPart[] })
    } else if (type === 'reasoning') {
      // Earlier reasoning is not rendered (as in the reference).
    } else {
      throw invalid(`${at}.type: unsupported item type '${String(type)}'; expected message, function_call, function_call_output or reasoning`)
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

interface Prepared {
  messages: ChatMessage[]
  options: ChatOptions
  /** For `parsed`: the JSON schema to check against, the Standard Schema to validate with. */
  format: { kind: 'json_schema' | 'json_object'; schema?: Record<string, unknown>; standard?: StandardSchemaLike } | null
  effort: ReasoningEffort | null
}

/** Validate a Responses request and turn it into chat messages and options. */
export function prepareResponses(request: ResponsesRequest): Prepared {
  if (request === null || typeof request !== 'object') throw invalid('request: expected an object with `input`')
  for (const key of Object.keys(request)) {
    if (!REQUEST_KEYS.has(key)) throw invalid(`${key}: unknown request field`)
  }
  const messages = toMessages(request)
  const options: ChatOptions = {}
  const num = (key: keyof ResponsesRequest, lo: number, hi: number, integer = false): number | undefined => {
    const v = request[key]
    if (v === undefined || v === null) return undefined
    if (typeof v !== 'number' || !Number.isFinite(v) || v < lo || v > hi || (integer && !Number.isInteger(v))) {
      throw invalid(`${key}: ${JSON.stringify(v)} is out of range; use ${integer ? 'an integer ' : ''}${lo} to ${hi}`)
    }
    return v
  }
  options.maxTokens = num('max_output_tokens', 1, Number.MAX_SAFE_INTEGER, true)
  // Sampling ranges: the core's one table (its Responses column), checked natively.
  const ranged = (key: keyof ResponsesRequest): number | undefined => {
    const v = request[key]
    if (v === undefined || v === null) return undefined
    nativeSync(() => addon().checkResponsesOption(key, JSON.stringify(v)))
    return v as number
  }
  options.temperature = ranged('temperature')
  options.topP = ranged('top_p')
  options.topK = ranged('top_k')
  options.minP = ranged('min_p')
  options.presencePenalty = ranged('presence_penalty')
  options.frequencyPenalty = ranged('frequency_penalty')
  options.repetitionPenalty = ranged('repetition_penalty')
  options.topLogprobs = ranged('top_logprobs')
  options.minToolCalls = num('min_tool_calls', 1, 1024, true)
  options.maxToolCalls = num('max_tool_calls', 1, 1024, true)
  if (options.minToolCalls !== undefined && options.maxToolCalls !== undefined && options.minToolCalls > options.maxToolCalls) {
    throw invalid(`min_tool_calls: ${options.minToolCalls} is more than max_tool_calls (${options.maxToolCalls})`)
  }
  options.seed = num('seed', 0, 2 ** 53, true)
  if (request.deterministic !== undefined) options.deterministic = request.deterministic
  if (request.prefix_cache !== undefined) options.prefixCache = request.prefix_cache
  if (request.instructions !== undefined) options.instructions = request.instructions
  if (request.task !== undefined) options.task = request.task
  if (request.signal !== undefined) options.signal = request.signal
  if (request.stallTimeout !== undefined) options.stallTimeout = request.stallTimeout

  let effort: ReasoningEffort | null = null
  const r = request.reasoning
  if (r === true) {
    effort = 'medium'
    options.reasoning = 'medium'
  } else if (r === false) {
    options.reasoning = false
  } else if (r !== undefined && r !== null) {
    if (typeof r !== 'object' || Array.isArray(r)) throw invalid("reasoning: expected { effort: 'minimal' | 'low' | 'medium' | 'high' } or a boolean")
    const e = r.effort ?? 'medium'
    const efforts = optionLimits().reasoningEfforts
    if (!efforts.includes(e)) throw invalid(`reasoning.effort: '${String(e)}' is not valid; use ${efforts.join(', ')}`)
    effort = e
    options.reasoning = e
  }

  if (request.tools !== undefined) {
    if (!Array.isArray(request.tools)) throw invalid('tools: expected an array of function tools')
    request.tools.forEach((t, i) => {
      if (t === null || typeof t !== 'object' || t.type !== 'function') throw invalid(`tools[${i}].type: expected 'function'`)
      if (typeof t.name !== 'string' || t.name.length === 0) throw invalid(`tools[${i}].name: expected the function's name`)
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
    if (f === null || typeof f !== 'object') throw invalid('text.format: expected { type: text | json_object | json_schema }')
    if (f.type === 'json_object') {
      options.responseFormat = { type: 'json_object' }
      format = { kind: 'json_object' }
    } else if (f.type === 'json_schema') {
      if (f.schema === undefined || f.schema === null || typeof f.schema !== 'object') throw invalid('text.format.schema: expected a JSON Schema or a Standard Schema object')
      const schema = jsonSchemaOf(f.schema, 'text.format.schema')
      checkJsonSchema(schema, 'text.format.schema')
      const rf: ResponseFormat = {
        type: 'json_schema',
        json_schema: { name: f.name ?? 'response', schema, strict: f.strict ?? true, ...(f.description ? { description: f.description } : {}) },
      }
      options.responseFormat = rf
      format = { kind: 'json_schema', schema, ...(isStandardSchema(f.schema) ? { standard: f.schema } : {}) }
    } else if (f.type !== 'text') {
      throw invalid(`text.format.type: '${String((f as { type: unknown }).type)}' is not valid; use text, json_object or json_schema`)
    }
  }
  return { messages, options, format, effort }
}

/** An event before it gets its place in the sequence. */
type Unsequenced = ResponseStreamEvent extends infer E ? (E extends ResponseStreamEvent ? Omit<E, 'sequence_number'> : never) : never

interface OpenItem {
  item: ResponseOutputItem
  /** Text so far (message text, reasoning text, or the raw call text). */
  text: string
  done: boolean
}

/** Folds chat deltas into response events and the response object. */
class ResponseAssembler {
  readonly response: ResponseObject
  readonly #items = new Map<number, OpenItem>()
  readonly #streamTokens: boolean
  #sequence = 0
  #syntheticIndex: number | null = null

  constructor(model: string, request: ResponsesRequest, effort: ReasoningEffort | null) {
    const f = request.text?.format
    this.response = {
      id: newId('resp'),
      object: 'response',
      created_at: Math.floor(Date.now() / 1000),
      completed_at: null,
      status: 'in_progress',
      incomplete_details: null,
      error: null,
      model,
      output: [],
      usage: { input_tokens: 0, output_tokens: 0, total_tokens: 0, input_tokens_details: { cached_tokens: 0 }, output_tokens_details: { reasoning_tokens: 0 } },
      stop_token_id: null,
      stop_token: null,
      instructions: request.instructions ?? null,
      max_output_tokens: request.max_output_tokens ?? null,
      temperature: request.temperature ?? null,
      top_p: request.top_p ?? null,
      tool_choice: request.tool_choice ?? 'auto',
      tools: request.tools ?? [],
      text: { format: f ? { type: f.type, ...('name' in f && f.name ? { name: f.name } : {}) } : { type: 'text' } },
      reasoning: effort ? { effort } : null,
      metadata: request.metadata ?? {},
      parallel_tool_calls: request.parallel_tool_calls ?? false,
    }
    this.#streamTokens = request.stream_tokens === true
  }

  #event(e: Unsequenced): ResponseStreamEvent {
    return { ...e, sequence_number: this.#sequence++ } as ResponseStreamEvent
  }

  #snapshot(): ResponseObject {
    return structuredClone(this.response)
  }

  start(): ResponseStreamEvent[] {
    return [this.#event({ type: 'response.created', response: this.#snapshot() }), this.#event({ type: 'response.in_progress', response: this.#snapshot() })]
  }

  #open(index: number, item: ResponseOutputItem, out: ResponseStreamEvent[]): OpenItem {
    const open: OpenItem = { item, text: '', done: false }
    this.#items.set(index, open)
    this.response.output.push(item)
    out.push(this.#event({ type: 'response.output_item.added', output_index: index, item: structuredClone(item) }))
    if (item.type === 'message') {
      out.push(this.#event({ type: 'response.content_part.added', item_id: item.id, output_index: index, content_index: 0, part: emptyText() }))
    }
    return open
  }

  #message(index: number, out: ResponseStreamEvent[]): OpenItem {
    const known = this.#items.get(index)
    if (known) return known
    const item: ResponseOutputMessage = { type: 'message', id: newId('msg'), status: 'in_progress', role: 'assistant', content: [] }
    return this.#open(index, item, out)
  }

  #close(index: number, open: OpenItem, status: 'completed' | 'incomplete', out: ResponseStreamEvent[], value?: unknown): void {
    if (open.done) return
    open.done = true
    const item = open.item
    if (item.type === 'message') {
      const text = typeof value === 'string' && open.text.length === 0 ? value : open.text
      const part: OutputText = { ...emptyText(), text }
      item.content = [part]
      out.push(this.#event({ type: 'response.output_text.done', item_id: item.id, output_index: index, content_index: 0, text }))
      out.push(this.#event({ type: 'response.content_part.done', item_id: item.id, output_index: index, content_index: 0, part }))
    } else if (item.type === 'reasoning') {
      const text = (typeof value === 'string' ? value : open.text).trim()
      item.content = [{ type: 'reasoning_text', text }]
      out.push(this.#event({ type: 'response.reasoning.done', item_id: item.id, output_index: index, text }))
    } else {
      if (value !== undefined) item.arguments = callArguments(value)
      else if (item.arguments === '') item.arguments = '{}'
      out.push(this.#event({ type: 'response.function_call_arguments.done', item_id: item.id, output_index: index, name: item.name, arguments: item.arguments }))
    }
    item.status = status
    out.push(this.#event({ type: 'response.output_item.done', output_index: index, item: structuredClone(item) }))
  }

  add(d: ChatDelta): ResponseStreamEvent[] {
    const out: ResponseStreamEvent[] = []
    if (d.stateEvents.length === 0) {
      // Raw text without state events becomes one message item. (`text`, not `content`: the
      // chat layer empties it for markers shipped ahead of the engine's items.)
      if (d.text) {
        if (this.#syntheticIndex === null) this.#syntheticIndex = this.#nextIndex()
        const open = this.#message(this.#syntheticIndex, out)
        open.text += d.text
        out.push(this.#event({ type: 'response.output_text.delta', item_id: open.item.id, output_index: this.#syntheticIndex, content_index: 0, delta: d.text, logprobs: [] }))
      }
    }
    for (const ev of d.stateEvents) {
      const index = ev.outputIndex
      if (ev.itemType === 'message') {
        const open = this.#message(index, out)
        if (ev.eventType === 'content_delta' && ev.delta) {
          open.text += ev.delta
          out.push(this.#event({ type: 'response.output_text.delta', item_id: open.item.id, output_index: index, content_index: 0, delta: ev.delta, logprobs: [] }))
        } else if (ev.eventType === 'item_completed') {
          this.#close(index, open, 'completed', out, ev.value)
        }
      } else if (ev.itemType === 'reasoning') {
        let open = this.#items.get(index)
        if (!open) {
          const item: ResponseReasoningItem = { type: 'reasoning', id: newId('rs'), status: 'in_progress', summary: [], content: [], encrypted_content: null }
          open = this.#open(index, item, out)
        }
        if (ev.eventType === 'content_delta' && ev.delta) {
          open.text += ev.delta
          out.push(this.#event({ type: 'response.reasoning.delta', item_id: open.item.id, output_index: index, delta: ev.delta }))
        } else if (ev.eventType === 'item_completed') {
          this.#close(index, open, 'completed', out, ev.value)
        }
      } else if (ev.itemType === 'tool_call') {
        let open = this.#items.get(index)
        if (!open) {
          const name = ev.identifier.startsWith('tool_call:') ? ev.identifier.slice('tool_call:'.length) : ''
          const item: ResponseFunctionCall = { type: 'function_call', id: newId('fc'), call_id: newId('call'), name, arguments: '', status: 'in_progress' }
          open = this.#open(index, item, out)
        }
        const call = open.item as ResponseFunctionCall
        if (ev.eventType === 'content_delta' && ev.delta) {
          out.push(
            this.#event({
              type: 'response.function_call_arguments.delta',
              item_id: call.id,
              output_index: index,
              delta: ev.delta,
              field_path: ev.identifier === 'arguments' ? null : ev.identifier,
            }),
          )
        } else if (ev.eventType === 'item_completed' && ev.identifier.startsWith('tool_call:')) {
          const value = parseMaybeJson(ev.value)
          if (value && typeof value === 'object' && !Array.isArray(value)) {
            const v = value as { name?: unknown; arguments?: unknown }
            if (typeof v.name === 'string' && v.name) call.name = v.name
            this.#close(index, open, 'completed', out, v.arguments ?? {})
          } else {
            this.#close(index, open, 'completed', out, value)
          }
        }
      }
    }
    if (this.#streamTokens) {
      d.tokens.forEach((token, i) => {
        const lp = d.logprobs?.[i]
        out.push(
          this.#event({
            type: 'response.output_token',
            token_id: token,
            content: lp?.token ?? (d.tokens.length === 1 ? (d.content ?? '') : ''),
            top_logprobs: (lp?.topLogprobs ?? []).map((t) => ({ token: t.token, logprob: t.logprob })),
          }),
        )
      })
    }
    this.#usage(d)
    return out
  }

  #nextIndex(): number {
    let i = 0
    while (this.#items.has(i)) i++
    return i
  }

  #usage(d: ChatDelta): void {
    const u = this.response.usage
    if (d.promptTokenCount != null) u.input_tokens = d.promptTokenCount
    if (d.cachedTokenCount != null) u.input_tokens_details.cached_tokens = d.cachedTokenCount
    if (d.reasoningTokens != null) u.output_tokens_details.reasoning_tokens = d.reasoningTokens
    // Output counts every generated token, reasoning included (broken out in the details).
    if (d.generationLen != null) u.output_tokens = Math.max(d.generationLen, u.output_tokens_details.reasoning_tokens)
    else if (d.tokens.length) u.output_tokens += d.tokens.length
    u.total_tokens = u.input_tokens + u.output_tokens
    if (d.isFinal) {
      if (d.matchedStopTokenId != null) this.response.stop_token_id = d.matchedStopTokenId
      if (d.matchedStopToken != null) this.response.stop_token = d.matchedStopToken
    }
  }

  /** Close what is open and emit the terminal event for `finishReason`. */
  finish(finishReason: string | null): ResponseStreamEvent[] {
    const out: ResponseStreamEvent[] = []
    const incomplete = finishReason === 'length' || finishReason === 'max_tokens' || finishReason === 'content_filter' || finishReason === 'cancelled'
    if (this.response.output.length === 0) this.#message(0, out)
    for (const [index, open] of [...this.#items.entries()].sort((a, b) => a[0] - b[0])) {
      this.#close(index, open, incomplete ? 'incomplete' : 'completed', out)
    }
    this.response.completed_at = Math.floor(Date.now() / 1000)
    if (incomplete) {
      this.response.status = 'incomplete'
      this.response.incomplete_details = { reason: finishReason === 'content_filter' ? 'content_filter' : finishReason === 'cancelled' ? 'cancelled' : 'max_output_tokens' }
      out.push(this.#event({ type: 'response.incomplete', response: this.#snapshot() }))
    } else {
      this.response.status = 'completed'
      out.push(this.#event({ type: 'response.completed', response: this.#snapshot() }))
    }
    return out
  }

  fail(error: unknown): ResponseStreamEvent {
    this.response.status = 'failed'
    this.response.completed_at = Math.floor(Date.now() / 1000)
    const e = error instanceof OrchardError ? error : null
    this.response.error = { message: error instanceof Error ? error.message : String(error), code: e?.code ?? 'INTERNAL' }
    for (const open of this.#items.values()) if (!open.done) open.item.status = 'incomplete'
    return this.#event({ type: 'response.failed', response: this.#snapshot() })
  }
}

function emptyText(): OutputText {
  return { type: 'output_text', text: '', annotations: [], logprobs: [] }
}

function parseMaybeJson(v: unknown): unknown {
  if (typeof v !== 'string') return v
  try {
    return JSON.parse(v)
  } catch {
    return v
  }
}

/** Call arguments as JSON text (a string that already is JSON is kept, normalized). */
function callArguments(v: unknown): string {
  const parsed = parseMaybeJson(v)
  if (typeof parsed === 'string') return JSON.stringify({ arguments: parsed })
  return JSON.stringify(parsed ?? {})
}

/**
 * A Responses request in flight. Iterate it once for typed {@link ResponseStreamEvent}s, or
 * await it for the {@link Response}. Failures (engine death, an error from the engine)
 * produce a `response.failed` event and then throw the typed error.
 */
export class ResponseStream implements AsyncIterable<ResponseStreamEvent>, PromiseLike<Response> {
  readonly #chat: ChatStream
  readonly #assembler: ResponseAssembler
  readonly #format: Prepared['format']
  #started = false
  #result: Promise<Response> | undefined
  #resolve!: (r: Response) => void
  #reject!: (e: unknown) => void

  /** @internal */
  constructor(chat: ChatStream, model: string, request: ResponsesRequest, prepared: Prepared) {
    this.#chat = chat
    this.#assembler = new ResponseAssembler(model, request, prepared.effort)
    this.#format = prepared.format
    this.#result = new Promise<Response>((resolve, reject) => {
      this.#resolve = resolve
      this.#reject = reject
    })
    this.#result.catch(() => undefined)
  }

  [Symbol.asyncIterator](): AsyncIterator<ResponseStreamEvent> {
    if (this.#started) throw new OrchardError('INVALID_REQUEST', 'a ResponseStream can be consumed only once (iterate it or await it, not both)')
    this.#started = true
    return this.#events()
  }

  async *#events(): AsyncGenerator<ResponseStreamEvent, void, undefined> {
    const a = this.#assembler
    yield* a.start()
    let finishReason: string | null = null
    try {
      for await (const d of this.#chat) {
        if (d.isFinal) finishReason = d.finishReason ?? null
        yield* a.add(d)
      }
    } catch (e) {
      if (e instanceof OrchardError && e.code === 'ABORTED') {
        this.#reject(e)
        throw e
      }
      yield a.fail(e)
      this.#reject(e)
      throw e
    }
    yield* a.finish(finishReason)
    try {
      this.#resolve(await this.#finalize())
    } catch (e) {
      this.#reject(e)
    }
  }

  async #finalize(): Promise<Response> {
    const r = this.#assembler.response
    const outputText = r.output
      .filter((i): i is ResponseOutputMessage => i.type === 'message')
      .map((m) => m.content.map((c) => c.text).join(''))
      .join('')
    const toolCalls = r.output.filter((i): i is ResponseFunctionCall => i.type === 'function_call')
    let parsed: unknown = null
    let parseError: string | null = null
    if (this.#format && toolCalls.length === 0) {
      try {
        parsed = JSON.parse(outputText)
        if (this.#format.kind === 'json_object' && (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))) {
          throw new Error('expected a JSON object')
        }
        if (this.#format.standard) {
          const result = await this.#format.standard['~standard'].validate(parsed)
          if (result.issues) throw new Error(result.issues.map((i) => i.message).join('; '))
          parsed = result.value
        } else if (this.#format.schema) {
          const issues = validateJson(this.#format.schema, parsed)
          if (issues.length) throw new Error(issues.join('; '))
        }
      } catch (e) {
        parsed = null
        parseError = `the output does not match the requested format: ${(e as Error).message}`
      }
    }
    return { ...structuredClone(r), outputText, toolCalls: structuredClone(toolCalls), parsed, parseError }
  }

  /** The final response (consumes the stream if nobody iterates it). */
  finalResponse(): Promise<Response> {
    if (!this.#started) drain(this)
    return this.#result!
  }

  then<R1 = Response, R2 = never>(
    onfulfilled?: ((value: Response) => R1 | PromiseLike<R1>) | null,
    onrejected?: ((reason: unknown) => R2 | PromiseLike<R2>) | null,
  ): Promise<R1 | R2> {
    return this.finalResponse().then(onfulfilled, onrejected)
  }

  /** Stop generating; iteration ends with an AbortError. */
  cancel(): Promise<void> {
    return this.#chat.cancel()
  }

  /** The request id the engine knows this response by (once it has been sent). */
  requestId(): Promise<number> {
    return this.#chat.requestId()
  }
}
