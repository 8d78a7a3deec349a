/** Types of the Responses API (OpenAI Responses-compatible shapes, snake_case like the HTTP API). */

import type { ContentPart, ReasoningEffort } from '../types'

/** A JSON Schema, or any Standard Schema (e.g. zod) object that can describe itself as one. */
export type SchemaLike = Record<string, unknown> | StandardSchemaLike

/** The parts of the Standard Schema interface (https://standardschema.dev) we use. */
export interface StandardSchemaLike {
  readonly '~standard': {
    readonly version: 1
    readonly vendor: string
    readonly validate: (value: unknown) => StandardResult | Promise<StandardResult>
    /** Standard JSON Schema (https://standardschema.dev/json-schema): called with `{ target: 'draft-2020-12' }`. */
    readonly jsonSchema?: {
      readonly input?: (options: StandardJsonSchemaOptions) => Record<string, unknown>
      readonly output?: (options: StandardJsonSchemaOptions) => Record<string, unknown>
    }
  }
  /** zod 4 and others expose their JSON Schema this way. */
  toJSONSchema?: () => Record<string, unknown>
}

/** What a Standard JSON Schema converter is asked for. */
export interface StandardJsonSchemaOptions {
  readonly target: 'draft-2020-12' | 'draft-07' | 'openapi-3.0' | (string & {})
  readonly libraryOptions?: Record<string, unknown>
}

type StandardResult =
  | { readonly value: unknown; readonly issues?: undefined }
  | { readonly issues: ReadonlyArray<{ readonly message: string; readonly path?: ReadonlyArray<unknown> }> }

export interface ResponseFunctionTool {
  type: 'function'
  name: string
  description?: string
  parameters?: Record<string, unknown>
  /** Enforce the parameters with the engine's grammar (default true). */
  strict?: boolean
}

export type ResponseToolChoice = 'auto' | 'none' | 'required' | { type: 'function'; name: string }

export interface ResponseInputMessage {
  type?: 'message'
  role: 'user' | 'assistant' | 'system' | 'developer'
  content: string | ContentPart[]
}

export interface ResponseFunctionCallInput {
  type: 'function_call'
  call_id: string
  name: string
  /** JSON text, or an object. */
  arguments: string | Record<string, unknown>
  id?: string
  status?: string
}

export interface ResponseFunctionCallOutputInput {
  type: 'function_call_output'
  call_id: string
  /** Text, or content parts (images included). */
  output: string | ContentPart[]
}

export interface ResponseReasoningInput {
  type: 'reasoning'
  summary?: unknown[]
  content?: unknown[]
  encrypted_content?: string | null
}

export type ResponseInputItem =
  | ResponseInputMessage
  | ResponseFunctionCallInput
  | ResponseFunctionCallOutputInput
  | ResponseReasoningInput

export type ResponseTextFormat =
  | { type: 'text' }
  | { type: 'json_object' }
  | { type: 'json_schema'; name?: string; description?: string; schema: SchemaLike; strict?: boolean }

export interface ResponsesRequest {
  input: string | ResponseInputItem[]
  instructions?: string
  max_output_tokens?: number
  temperature?: number
  top_p?: number
  top_k?: number
  min_p?: number
  presence_penalty?: number
  frequency_penalty?: number
  repetition_penalty?: number
  seed?: number
  deterministic?: boolean
  prefix_cache?: boolean
  top_logprobs?: number
  tools?: ResponseFunctionTool[]
  tool_choice?: ResponseToolChoice
  min_tool_calls?: number
  max_tool_calls?: number
  parallel_tool_calls?: boolean
  text?: { format: ResponseTextFormat }
  reasoning?: boolean | { effort?: ReasoningEffort }
  task?: string
  metadata?: Record<string, string>
  /** Emit a `response.output_token` event per generated token. */
  stream_tokens?: boolean
  signal?: AbortSignal
  /** See `ChatOptions.stallTimeoutMs`. */
  stallTimeoutMs?: number
}

export interface OutputText {
  type: 'output_text'
  text: string
  annotations: unknown[]
  logprobs: unknown[]
}

export interface ResponseOutputMessage {
  type: 'message'
  id: string
  status: 'in_progress' | 'completed' | 'incomplete'
  role: 'assistant'
  content: OutputText[]
}

export interface ResponseFunctionCall {
  type: 'function_call'
  id: string
  call_id: string
  name: string
  /** JSON text of the arguments. */
  arguments: string
  status: 'in_progress' | 'completed' | 'incomplete'
}

export interface ResponseReasoningItem {
  type: 'reasoning'
  id: string
  status: 'in_progress' | 'completed' | 'incomplete'
  summary: Array<{ type: 'summary_text'; text: string }>
  content: Array<{ type: 'reasoning_text'; text: string }>
  encrypted_content: null
}

export type ResponseOutputItem = ResponseOutputMessage | ResponseFunctionCall | ResponseReasoningItem

export interface ResponseUsage {
  input_tokens: number
  output_tokens: number
  total_tokens: number
  input_tokens_details: { cached_tokens: number }
  output_tokens_details: { reasoning_tokens: number }
}

/** Why a response stopped short: its token budget, a content filter, or a cancellation. */
export type ResponseIncompleteReason = 'max_output_tokens' | 'content_filter' | 'cancelled'

export type ResponseStatus = 'in_progress' | 'completed' | 'incomplete' | 'failed'

/** The response object (a snapshot while streaming). */
export interface ResponseObject {
  id: string
  object: 'response'
  created_at: number
  completed_at: number | null
  status: ResponseStatus
  incomplete_details: { reason: ResponseIncompleteReason } | null
  error: { message: string; code: string } | null
  model: string
  output: ResponseOutputItem[]
  usage: ResponseUsage
  stop_token_id: number | null
  stop_token: string | null
  instructions: string | null
  max_output_tokens: number | null
  temperature: number | null
  top_p: number | null
  tool_choice: ResponseToolChoice
  tools: ResponseFunctionTool[]
  text: { format: { type: string; name?: string } }
  reasoning: { effort: ReasoningEffort | null } | null
  metadata: Record<string, string>
  parallel_tool_calls: boolean
}

interface EventBase {
  sequence_number: number
}

export type ResponseStreamEvent =
  | (EventBase & { type: 'response.created' | 'response.in_progress'; response: ResponseObject })
  | (EventBase & { type: 'response.completed' | 'response.incomplete' | 'response.failed'; response: ResponseObject })
  | (EventBase & {
      type: 'response.output_item.added' | 'response.output_item.done'
      output_index: number
      item: ResponseOutputItem
    })
  | (EventBase & {
      type: 'response.content_part.added' | 'response.content_part.done'
      item_id: string
      output_index: number
      content_index: number
      part: OutputText
    })
  | (EventBase & {
      type: 'response.output_text.delta'
      item_id: string
      output_index: number
      content_index: number
      delta: string
      logprobs: unknown[]
    })
  | (EventBase & {
      type: 'response.output_text.done'
      item_id: string
      output_index: number
      content_index: number
      text: string
    })
  | (EventBase & { type: 'response.reasoning.delta'; item_id: string; output_index: number; delta: string })
  | (EventBase & { type: 'response.reasoning.done'; item_id: string; output_index: number; text: string })
  | (EventBase & {
      type: 'response.function_call_arguments.delta'
      item_id: string
      output_index: number
      delta: string
      /** The argument this fragment is the value of; null for the raw call text. */
      field_path: string | null
    })
  | (EventBase & {
      type: 'response.function_call_arguments.done'
      item_id: string
      output_index: number
      name: string
      arguments: string
    })
  | (EventBase & {
      type: 'response.output_token'
      token_id: number
      content: string
      top_logprobs: Array<{ token: string; logprob: number }>
    })

export type ResponseStreamEventType = ResponseStreamEvent['type']
