/** The AI SDK language model (specification v4) over `client.chat`. */

import { randomBytes } from 'node:crypto'

import type {
  LanguageModelV4,
  LanguageModelV4CallOptions,
  LanguageModelV4Content,
  LanguageModelV4GenerateResult,
  LanguageModelV4StreamPart,
  LanguageModelV4StreamResult,
} from '@ai-sdk/provider'

import { argumentsText } from '../accumulator'
import type { Client } from '../client'
import { AbortError } from '../errors'
import type { ChatDelta, ChatResult } from '../types'
import { finishReasonOf, metadataOf, PROVIDER, type PreparedCall, prepareCall, usageOf } from './convert'

const newCallId = (): string => `call_${randomBytes(12).toString('hex')}`

/** The request as sent, for the SDK's telemetry (the signal is not data). */
function requestBody(
  modelId: string,
  prepared: PreparedCall,
): { model: string; messages: PreparedCall['messages']; options: Omit<PreparedCall['options'], 'signal'> } {
  const { signal: _signal, ...options } = prepared.options
  return { model: modelId, messages: prepared.messages, options }
}

/**
 * An orchard model as an AI SDK `LanguageModelV4`. Get one from a provider:
 * `createOrchard({ engine })(modelId)`.
 */
export class OrchardLanguageModel implements LanguageModelV4 {
  readonly specificationVersion = 'v4' as const
  readonly provider = PROVIDER
  readonly modelId: string
  /** Images given as data URLs are read in place; the SDK downloads other URLs first. */
  readonly supportedUrls: Record<string, RegExp[]> = { 'image/*': [/^data:/i] }
  readonly #client: () => Promise<Client>
  /** The model's own stop strings (its end of turn), once asked for. */
  #defaultStops: Promise<string[]> | undefined

  /** @internal use `createOrchard()` */
  constructor(modelId: string, client: () => Promise<Client>) {
    this.modelId = modelId
    this.#client = client
  }

  /**
   * The client, with `prepared` completed: the SDK's stop sequences come on top of the
   * model's end of turn (orchard's `stop` replaces it).
   */
  async #ready(prepared: PreparedCall): Promise<Client> {
    const client = await this.#client()
    const stop = prepared.options.stop
    if (Array.isArray(stop) && stop.length > 0) {
      this.#defaultStops ??= client.renderPrompt(this.modelId, prepared.messages).then(
        (r) => r.sampling.stop,
        (e: unknown) => {
          this.#defaultStops = undefined
          throw e
        },
      )
      prepared.options.stop = [...new Set([...stop, ...(await this.#defaultStops)])]
    }
    return client
  }

  async doGenerate(call: LanguageModelV4CallOptions): Promise<LanguageModelV4GenerateResult> {
    const prepared = prepareCall(call)
    const client = await this.#ready(prepared)
    const result = await client.chat(this.modelId, prepared.messages, prepared.options)
    const content: LanguageModelV4Content[] = []
    if (result.reasoning) content.push({ type: 'reasoning', text: result.reasoning })
    if (result.text) content.push({ type: 'text', text: result.text })
    for (const c of result.toolCalls)
      content.push({ type: 'tool-call', toolCallId: newCallId(), toolName: c.name, input: argumentsText(c) })
    return {
      content,
      finishReason: finishReasonOf(result.finishReason, result.toolCalls.length > 0),
      usage: usageOf(result.usage),
      providerMetadata: metadataOf(result),
      request: { body: requestBody(this.modelId, prepared) },
      response: { id: String(result.requestId), modelId: this.modelId, timestamp: new Date() },
      warnings: prepared.warnings,
    }
  }

  async doStream(call: LanguageModelV4CallOptions): Promise<LanguageModelV4StreamResult> {
    const prepared = prepareCall(call)
    const client = await this.#ready(prepared)
    const chat = client.chat(this.modelId, prepared.messages, prepared.options)
    // A request the engine refuses fails the call itself, not its stream.
    const requestId = await chat.requestId()
    const deltas = chat[Symbol.asyncIterator]()
    const parts = new StreamParts(prepared.toolSchemas, call.includeRawChunks === true)
    const modelId = this.modelId
    let cancelled = false
    const stream = new ReadableStream<LanguageModelV4StreamPart>({
      start(controller) {
        controller.enqueue({ type: 'stream-start', warnings: prepared.warnings })
        controller.enqueue({ type: 'response-metadata', id: String(requestId), modelId, timestamp: new Date() })
      },
      async pull(controller) {
        try {
          for (;;) {
            const next = await deltas.next()
            if (cancelled) return
            if (next.done) {
              for (const p of parts.finish(await chat.finalResult())) controller.enqueue(p)
              controller.close()
              return
            }
            const out = parts.add(next.value)
            for (const p of out) controller.enqueue(p)
            if (out.length > 0) return
          }
        } catch (e) {
          if (cancelled) return
          // An abort ends the stream as an aborted fetch would; any other failure is reported
          // in it, and the stream ends without a finish part (the SDK sees it interrupted).
          if (e instanceof AbortError) {
            controller.error(e)
            return
          }
          for (const p of parts.close()) controller.enqueue(p)
          controller.enqueue({ type: 'error', error: e })
          controller.close()
        }
      },
      async cancel() {
        // The reader gave up: stop the request in the engine now (not at its next delta).
        cancelled = true
        await chat.cancel()
        await deltas.return?.()?.catch(() => undefined)
      },
    })
    return { stream, request: { body: requestBody(this.modelId, prepared) } }
  }
}

interface StreamedCall {
  id: string
  name: string | null
  started: boolean
  /** The argument whose value is streaming, and whether it is a JSON string. */
  argument: string | null
  quoted: boolean
  /** Argument fragments that came before the call's name. */
  pending: Array<{ argument: string; delta: string }>
  emitted: boolean
}

/**
 * Chat deltas → stream parts: text and reasoning blocks in the order they come, and each
 * tool call's input built up as JSON from its per-argument fragments.
 */
class StreamParts {
  readonly #schemas: Map<string, unknown>
  readonly #raw: boolean
  #open: { kind: 'text' | 'reasoning'; id: string } | null = null
  #blocks = 0
  readonly #calls = new Map<number, StreamedCall>()

  constructor(schemas: Map<string, unknown>, raw: boolean) {
    this.#schemas = schemas
    this.#raw = raw
  }

  add(d: ChatDelta): LanguageModelV4StreamPart[] {
    const out: LanguageModelV4StreamPart[] = []
    if (this.#raw) out.push({ type: 'raw', rawValue: d })
    if (d.reasoning) this.#block('reasoning', d.reasoning, out)
    if (d.text) this.#block('text', d.text, out)
    if (d.toolCallDeltas.length > 0) out.push(...this.close())
    for (const f of d.toolCallDeltas) {
      let call = this.#calls.get(f.outputIndex)
      if (!call) {
        call = {
          id: newCallId(),
          name: null,
          started: false,
          argument: null,
          quoted: false,
          pending: [],
          emitted: false,
        }
        this.#calls.set(f.outputIndex, call)
      }
      if (call.name === null && f.name !== null) call.name = f.name
      if (f.argument !== null) call.pending.push({ argument: f.argument, delta: f.delta })
      if (call.name === null) continue
      if (!call.started) {
        call.started = true
        out.push({ type: 'tool-input-start', id: call.id, toolName: call.name })
      }
      for (const { argument, delta } of call.pending.splice(0)) {
        let text = ''
        if (argument !== call.argument) {
          text += call.argument === null ? '{' : `${call.quoted ? '"' : ''},`
          call.argument = argument
          call.quoted = isStringProperty(this.#schemas.get(call.name), argument)
          text += `${JSON.stringify(argument)}:${call.quoted ? '"' : ''}`
        }
        text += call.quoted ? JSON.stringify(delta).slice(1, -1) : delta
        call.emitted = true
        out.push({ type: 'tool-input-delta', id: call.id, delta: text })
      }
    }
    return out
  }

  #block(kind: 'text' | 'reasoning', delta: string, out: LanguageModelV4StreamPart[]): void {
    if (this.#open?.kind !== kind) {
      out.push(...this.close())
      this.#open = { kind, id: `${kind}-${this.#blocks++}` }
      out.push({ type: kind === 'text' ? 'text-start' : 'reasoning-start', id: this.#open.id })
    }
    const id = this.#open.id
    out.push(kind === 'text' ? { type: 'text-delta', id, delta } : { type: 'reasoning-delta', id, delta })
  }

  /** End the open text or reasoning block. */
  close(): LanguageModelV4StreamPart[] {
    const open = this.#open
    if (!open) return []
    this.#open = null
    return [{ type: open.kind === 'text' ? 'text-end' : 'reasoning-end', id: open.id }]
  }

  /** The closing parts: tool calls (inputs as the engine completed them), then finish. */
  finish(result: ChatResult): LanguageModelV4StreamPart[] {
    const out = this.close()
    const streamed = [...this.#calls.entries()].sort((a, b) => a[0] - b[0]).map(([, c]) => c)
    const paired = streamed.length === result.toolCalls.length
    result.toolCalls.forEach((c, i) => {
      const call = paired ? streamed[i] : undefined
      const input = argumentsText(c)
      if (call?.started) {
        // Close the JSON built so far; a call that streamed no argument gets its whole input.
        out.push({ type: 'tool-input-delta', id: call.id, delta: call.emitted ? `${call.quoted ? '"' : ''}}` : input })
        out.push({ type: 'tool-input-end', id: call.id })
      }
      out.push({ type: 'tool-call', toolCallId: call?.id ?? newCallId(), toolName: c.name, input })
    })
    if (!paired) for (const call of streamed) if (call.started) out.push({ type: 'tool-input-end', id: call.id })
    out.push({
      type: 'finish',
      finishReason: finishReasonOf(result.finishReason, result.toolCalls.length > 0),
      usage: usageOf(result.usage),
      providerMetadata: metadataOf(result),
    })
    return out
  }
}

/** Whether the tool's input schema says `argument` is a string (its fragments are then raw text). */
function isStringProperty(schema: unknown, argument: string): boolean {
  const props = (schema as { properties?: Record<string, unknown> } | undefined)?.properties
  const prop = props?.[argument] as { type?: unknown; enum?: unknown; const?: unknown } | undefined
  if (!prop) return false
  if (prop.type === 'string') return true
  if (Array.isArray(prop.enum)) return prop.enum.every((v) => typeof v === 'string')
  return typeof prop.const === 'string'
}
