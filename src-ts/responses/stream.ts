/** ResponseStream: a Responses request in flight, on top of one chat stream and its accumulator. */

import type { Accumulator } from '../accumulator'
import { Consumable } from '../consumable'
import { OrchardError } from '../errors'
import { validateJson } from '../schema'
import type { ChatStream } from '../stream'
import type { ChatDelta } from '../types'
import { ResponseAssembler } from './assembly'
import type { Prepared } from './request'
import type {
  ResponseFunctionCall,
  ResponseFunctionTool,
  ResponseObject,
  ResponseOutputMessage,
  ResponseStreamEvent,
  ResponsesRequest,
} from './types'

/** The awaited result: the response object plus conveniences. */
export interface Response extends ResponseObject {
  /** The text of every message item, concatenated. */
  outputText: string
  /** The function calls the model made, each with its arguments parsed and checked. */
  toolCalls: ResponseToolCall[]
  /** With a JSON `text.format`: the output parsed (and checked against the schema), else null. */
  parsed: unknown
  /** Why `parsed` is null although a JSON format was asked for. */
  parseError: string | null
}

/** A function call of {@link Response.toolCalls}: the output item plus its checked arguments. */
export interface ResponseToolCall extends ResponseFunctionCall {
  /** The arguments parsed, when they are JSON matching the tool's `parameters`; else null. */
  parsedArguments: unknown
  /** Why `parsedArguments` is null: not JSON, or where they break the schema (by path). */
  argumentsError: string | null
}

/** @internal What a ResponseStream runs: the chat stream and what the request was prepared into. */
export type ResponseSource =
  | {
      ok: true
      chat: ChatStream
      accumulator: Accumulator
      model: string
      request: ResponsesRequest
      prepared: Prepared
    }
  /** The request was refused before anything was sent: the stream fails with `error`. */
  | { ok: false; error: unknown }

/**
 * A Responses request in flight. Iterate it once for typed {@link ResponseStreamEvent}s, or
 * await it for the {@link Response}. Failures (engine death, an error from the engine)
 * produce a `response.failed` event and then throw the typed error; a request refused
 * before it was sent (an invalid request, an unknown model) throws at the first `next()` (or
 * the `await`), before any event.
 */
export class ResponseStream extends Consumable<ResponseStreamEvent, Response> {
  readonly #source: ResponseSource
  readonly #assembler: ResponseAssembler | null
  #deltas: AsyncIterator<ChatDelta> | undefined
  #ended = false
  /** The error to end with, once the `response.failed` event is out. */
  #failure: { error: unknown } | undefined

  /** @internal */
  constructor(source: ResponseSource) {
    super('ResponseStream', undefined)
    this.#source = source
    this.#assembler = source.ok ? new ResponseAssembler(source.model, source.request, source.prepared.effort) : null
  }

  protected override async pull(): Promise<ResponseStreamEvent[] | null> {
    const source = this.#source
    if (!source.ok) throw source.error
    if (this.#failure) throw this.#failure.error
    if (this.#ended) return null
    const a = this.#assembler!
    if (!this.#deltas) {
      // A request refused before the engine got it (a bad option, an unknown model) fails
      // before any event, like every input error; the response exists once it was sent.
      await source.chat.requestId()
      this.#deltas = source.chat[Symbol.asyncIterator]()
      return a.start()
    }
    let next: IteratorResult<ChatDelta>
    try {
      next = await this.#deltas.next()
    } catch (e) {
      if (e instanceof OrchardError && e.code === 'ABORTED') throw e
      this.#failure = { error: e }
      return [a.fail(e)]
    }
    if (next.done) {
      this.#ended = true
      const result = await source.chat
      return a.finish(result.finishReason)
    }
    return a.add(next.value, source.accumulator.items(next.value), source.accumulator.usage(0))
  }

  protected override async result(): Promise<Response> {
    const source = this.#source as Extract<ResponseSource, { ok: true }>
    const r = this.#assembler!.response
    const outputText = r.output
      .filter((i): i is ResponseOutputMessage => i.type === 'message')
      .map((m) => m.content.map((c) => c.text).join(''))
      .join('')
    const toolCalls = r.output.filter((i): i is ResponseFunctionCall => i.type === 'function_call')
    const { parsed, parseError } =
      toolCalls.length === 0
        ? await parseOutput(source.prepared.format, outputText)
        : { parsed: null, parseError: null }
    const tools = source.request.tools ?? []
    const checked = toolCalls.map((call) => ({ ...structuredClone(call), ...checkArguments(call, tools) }))
    return { ...structuredClone(r), outputText, toolCalls: checked, parsed, parseError }
  }

  /** Stop generating: the chat request is cancelled (iteration ends with an AbortError). */
  protected override stop(): Promise<void> {
    return this.#source.ok ? this.#source.chat.cancel() : Promise.resolve()
  }

  /** The final response (consumes the stream if nobody iterates it). */
  finalResponse(): Promise<Response> {
    return this.finalResult()
  }

  /** The request id the engine knows this response by (once it has been sent). */
  requestId(): Promise<number> {
    const source = this.#source
    return source.ok ? source.chat.requestId() : Promise.reject(source.error)
  }
}

/** A call's arguments parsed and checked against its tool's JSON Schema `parameters`. */
function checkArguments(
  call: ResponseFunctionCall,
  tools: readonly ResponseFunctionTool[],
): { parsedArguments: unknown; argumentsError: string | null } {
  let args: unknown
  try {
    args = JSON.parse(call.arguments)
  } catch (e) {
    return { parsedArguments: null, argumentsError: `the arguments are not JSON: ${(e as Error).message}` }
  }
  const parameters = tools.find((t) => t.name === call.name)?.parameters
  const issues = parameters === undefined ? [] : validateJson(parameters, args)
  if (issues.length > 0) {
    return {
      parsedArguments: null,
      argumentsError: `the arguments do not match ${call.name}'s parameters: ${issues.join('; ')}`,
    }
  }
  return { parsedArguments: args, argumentsError: null }
}

/** The output parsed and checked against the requested JSON format (no format: nothing to parse). */
async function parseOutput(
  format: Prepared['format'],
  outputText: string,
): Promise<{ parsed: unknown; parseError: string | null }> {
  if (!format) return { parsed: null, parseError: null }
  try {
    let parsed: unknown = JSON.parse(outputText)
    if (format.kind === 'json_object' && (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))) {
      throw new Error('expected a JSON object')
    }
    if (format.standard) {
      const result = await format.standard['~standard'].validate(parsed)
      if (result.issues) throw new Error(result.issues.map((i) => i.message).join('; '))
      parsed = result.value
    } else if (format.schema) {
      const issues = validateJson(format.schema, parsed)
      if (issues.length) throw new Error(issues.join('; '))
    }
    return { parsed, parseError: null }
  } catch (e) {
    return { parsed: null, parseError: `the output does not match the requested format: ${(e as Error).message}` }
  }
}
