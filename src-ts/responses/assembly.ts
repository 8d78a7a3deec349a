/**
 * The accumulator's item events → Responses stream events and the response object, in the
 * reference's order. Nothing here reads state events: it builds on {@link ItemEvent}s.
 */

import { randomBytes } from 'node:crypto'

import { argumentsText, type ItemEvent } from '../accumulator'
import { OrchardError } from '../errors'
import type { ChatDelta, FinishReason, ReasoningEffort, ToolCallResult, Usage } from '../types'
import type {
  OutputText,
  ResponseFunctionCall,
  ResponseIncompleteReason,
  ResponseObject,
  ResponseOutputItem,
  ResponseOutputMessage,
  ResponseReasoningItem,
  ResponseStreamEvent,
  ResponsesRequest,
} from './types'

const newId = (prefix: string) => `${prefix}_${randomBytes(12).toString('hex')}`

/** An event before it gets its place in the sequence. */
type Unsequenced = ResponseStreamEvent extends infer E
  ? E extends ResponseStreamEvent
    ? Omit<E, 'sequence_number'>
    : never
  : never

interface OpenItem {
  item: ResponseOutputItem
  /** Text so far (message text, reasoning text). */
  text: string
  done: boolean
}

/** Why a response with this finish reason is incomplete, or null when it completed. */
function incompleteReason(finishReason: FinishReason | null): ResponseIncompleteReason | null {
  switch (finishReason) {
    case 'length':
    case 'max_tokens':
      return 'max_output_tokens'
    case 'content_filter':
      return 'content_filter'
    case 'cancelled':
      return 'cancelled'
    default:
      return null
  }
}

/** Folds chat deltas (and their item events) into response events and the response object. */
export class ResponseAssembler {
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
      usage: {
        input_tokens: 0,
        output_tokens: 0,
        total_tokens: 0,
        input_tokens_details: { cached_tokens: 0 },
        output_tokens_details: { reasoning_tokens: 0 },
      },
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
    return [
      this.#event({ type: 'response.created', response: this.#snapshot() }),
      this.#event({ type: 'response.in_progress', response: this.#snapshot() }),
    ]
  }

  #open(index: number, item: ResponseOutputItem, out: ResponseStreamEvent[]): OpenItem {
    const open: OpenItem = { item, text: '', done: false }
    this.#items.set(index, open)
    this.response.output.push(item)
    out.push(this.#event({ type: 'response.output_item.added', output_index: index, item: structuredClone(item) }))
    if (item.type === 'message') {
      out.push(
        this.#event({
          type: 'response.content_part.added',
          item_id: item.id,
          output_index: index,
          content_index: 0,
          part: emptyText(),
        }),
      )
    }
    return open
  }

  /** The item at `index`, opened as `kind` if it is new. */
  #item(index: number, kind: ItemEvent['item'], name: string | null, out: ResponseStreamEvent[]): OpenItem {
    const known = this.#items.get(index)
    if (known) return known
    if (kind === 'message') {
      const item: ResponseOutputMessage = {
        type: 'message',
        id: newId('msg'),
        status: 'in_progress',
        role: 'assistant',
        content: [],
      }
      return this.#open(index, item, out)
    }
    if (kind === 'reasoning') {
      const item: ResponseReasoningItem = {
        type: 'reasoning',
        id: newId('rs'),
        status: 'in_progress',
        summary: [],
        content: [],
        encrypted_content: null,
      }
      return this.#open(index, item, out)
    }
    const item: ResponseFunctionCall = {
      type: 'function_call',
      id: newId('fc'),
      call_id: newId('call'),
      name: name ?? '',
      arguments: '',
      status: 'in_progress',
    }
    return this.#open(index, item, out)
  }

  /** Complete an item: with the engine's final text, or call, when it gave one. */
  #close(
    index: number,
    open: OpenItem,
    status: 'completed' | 'incomplete',
    out: ResponseStreamEvent[],
    value: string | ToolCallResult | null = null,
  ): void {
    if (open.done) return
    open.done = true
    const item = open.item
    if (item.type === 'message') {
      const text = typeof value === 'string' && open.text.length === 0 ? value : open.text
      const part: OutputText = { ...emptyText(), text }
      item.content = [part]
      out.push(
        this.#event({
          type: 'response.output_text.done',
          item_id: item.id,
          output_index: index,
          content_index: 0,
          text,
        }),
      )
      out.push(
        this.#event({
          type: 'response.content_part.done',
          item_id: item.id,
          output_index: index,
          content_index: 0,
          part,
        }),
      )
    } else if (item.type === 'reasoning') {
      const text = (typeof value === 'string' ? value : open.text).trim()
      item.content = [{ type: 'reasoning_text', text }]
      out.push(this.#event({ type: 'response.reasoning.done', item_id: item.id, output_index: index, text }))
    } else {
      if (value !== null && typeof value === 'object') {
        if (value.name) item.name = value.name
        item.arguments = argumentsText(value)
      } else if (item.arguments === '') item.arguments = '{}'
      out.push(
        this.#event({
          type: 'response.function_call_arguments.done',
          item_id: item.id,
          output_index: index,
          name: item.name,
          arguments: item.arguments,
        }),
      )
    }
    item.status = status
    out.push(this.#event({ type: 'response.output_item.done', output_index: index, item: structuredClone(item) }))
  }

  /** The events of delta `d`, given its item events and the request's usage so far. */
  add(d: ChatDelta, items: readonly ItemEvent[], usage: Usage): ResponseStreamEvent[] {
    const out: ResponseStreamEvent[] = []
    // Raw text without state events becomes one message item. (`text`, not `content`: the
    // chat layer empties it for markers shipped ahead of the engine's items.)
    if (d.stateEvents.length === 0 && d.text) {
      if (this.#syntheticIndex === null) this.#syntheticIndex = this.#nextIndex()
      const open = this.#item(this.#syntheticIndex, 'message', null, out)
      open.text += d.text
      out.push(
        this.#event({
          type: 'response.output_text.delta',
          item_id: open.item.id,
          output_index: this.#syntheticIndex,
          content_index: 0,
          delta: d.text,
          logprobs: [],
        }),
      )
    }
    for (const e of items) this.#itemEvent(e, out)
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
    const u = this.response.usage
    u.input_tokens = usage.promptTokens
    u.input_tokens_details.cached_tokens = usage.cachedTokens
    u.output_tokens_details.reasoning_tokens = usage.reasoningTokens
    // Output counts every generated token, reasoning included (broken out in the details).
    u.output_tokens = usage.completionTokens
    u.total_tokens = usage.totalTokens
    if (d.isFinal) {
      if (d.matchedStopTokenId != null) this.response.stop_token_id = d.matchedStopTokenId
      if (d.matchedStopToken != null) this.response.stop_token = d.matchedStopToken
    }
    return out
  }

  #itemEvent(e: ItemEvent, out: ResponseStreamEvent[]): void {
    const open = this.#item(e.index, e.item, e.item === 'tool_call' && e.kind !== 'done' ? e.name : null, out)
    const id = open.item.id
    if (e.kind === 'done') {
      this.#close(e.index, open, 'completed', out, e.item === 'tool_call' ? e.call : e.value)
    } else if (e.kind === 'delta' && e.delta) {
      if (e.item === 'tool_call') {
        out.push(
          this.#event({
            type: 'response.function_call_arguments.delta',
            item_id: id,
            output_index: e.index,
            delta: e.delta,
            field_path: e.argument,
          }),
        )
      } else {
        open.text += e.delta
        if (e.item === 'message') {
          out.push(
            this.#event({
              type: 'response.output_text.delta',
              item_id: id,
              output_index: e.index,
              content_index: 0,
              delta: e.delta,
              logprobs: [],
            }),
          )
        } else {
          out.push(
            this.#event({ type: 'response.reasoning.delta', item_id: id, output_index: e.index, delta: e.delta }),
          )
        }
      }
    }
  }

  #nextIndex(): number {
    let i = 0
    while (this.#items.has(i)) i++
    return i
  }

  /** Close what is open and emit the terminal event for `finishReason`. */
  finish(finishReason: FinishReason | null): ResponseStreamEvent[] {
    const out: ResponseStreamEvent[] = []
    const incomplete = incompleteReason(finishReason)
    if (this.response.output.length === 0) this.#item(0, 'message', null, out)
    for (const [index, open] of [...this.#items.entries()].sort((a, b) => a[0] - b[0])) {
      this.#close(index, open, incomplete ? 'incomplete' : 'completed', out)
    }
    this.response.completed_at = Math.floor(Date.now() / 1000)
    if (incomplete) {
      this.response.status = 'incomplete'
      this.response.incomplete_details = { reason: incomplete }
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
    this.response.error = {
      message: error instanceof Error ? error.message : String(error),
      code: e?.code ?? 'INTERNAL',
    }
    for (const open of this.#items.values()) if (!open.done) open.item.status = 'incomplete'
    return this.#event({ type: 'response.failed', response: this.#snapshot() })
  }
}

function emptyText(): OutputText {
  return { type: 'output_text', text: '', annotations: [], logprobs: [] }
}
