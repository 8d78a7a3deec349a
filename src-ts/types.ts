/** Public data types of the chat API. */

/** Who speaks a message (case-insensitive; `developer` is a system message). */
export type Role = 'system' | 'developer' | 'user' | 'assistant' | 'tool'

/**
 * Why a sequence ended: `stop` (an end-of-turn token or stop string), `length` (`maxTokens`),
 * `cancelled` (cancelled or aborted), `content_filter`, `error`. Open-ended: the engine reports
 * its own reasons as it names them (lower-cased), and may add more.
 */
export type FinishReason = 'stop' | 'length' | 'cancelled' | 'content_filter' | 'error' | (string & {})

export interface TextPart {
  type: 'text'
  text: string
}

export interface ImagePart {
  type: 'image_url' | 'input_image'
  image_url: string | { url: string }
}

export type ContentPart = TextPart | ImagePart | ({ type: string } & Record<string, unknown>)

export interface ToolCall {
  id?: string
  type?: 'function'
  function: { name: string; arguments: string | Record<string, unknown> }
}

export interface ChatMessage {
  role: Role
  content?: string | ContentPart[] | null
  name?: string
  tool_calls?: ToolCall[]
  tool_call_id?: string
  /** An assistant turn's reasoning, for profiles whose templates replay it (qwen3_5, glm4_moe). */
  reasoning_content?: string | null
}

export interface FunctionTool {
  type?: 'function'
  name?: string
  description?: string
  parameters?: Record<string, unknown>
  function?: { name: string; description?: string; parameters?: Record<string, unknown> }
}

/**
 * Sampling and request options. Leave a field `undefined` to get the model profile's
 * default; an explicit value (even 0) always wins.
 */
export interface ChatOptions {
  /** Most tokens to generate (default 8192). */
  maxTokens?: number
  /** Sampling temperature; 0 is greedy. */
  temperature?: number
  /** Nucleus sampling mass, in (0, 1]. */
  topP?: number
  /** Keep the k most likely tokens; -1 turns it off. */
  topK?: number
  /** Drop tokens below minP × the top probability, in [0, 1]. */
  minP?: number
  /** RNG seed (masked to 32 bits); the same seed and options give the same text. */
  seed?: number
  /** Use the profile's recommended lane and seed 11 unless `seed` is set. */
  deterministic?: boolean
  /** Stop strings; default: the model's end-of-turn token. */
  stop?: string | string[]
  /** Candidates to return. */
  n?: number
  /** Candidates to generate (≥ n); the best n are kept. */
  bestOf?: number
  /** Alternatives per sampled token, 0..20. */
  topLogprobs?: number
  frequencyPenalty?: number
  presencePenalty?: number
  repetitionPenalty?: number
  repetitionContextSize?: number
  /** Token id → bias in [-100, 100]. */
  logitBias?: Record<number | string, number>
  /** Reasoning on/off or effort, for models that think. */
  reasoning?: boolean | ReasoningEffort
  /** Tools described to the model in the prompt (sorted by name before sending). */
  tools?: FunctionTool[]
  /** Tools the engine's grammar lets the model call (default: `tools`). */
  activeTools?: FunctionTool[]
  /** Whether and which tool the model must call (default `'auto'`). */
  toolChoice?: ToolChoice
  /** Fewest calls once the model calls tools (≥ 1; default 1). */
  minToolCalls?: number
  /** Most calls in one turn; 0 means no limit (default). */
  maxToolCalls?: number
  /** Constrain the output: JSON matching a schema, or any JSON object. */
  responseFormat?: ResponseFormat
  /** A system message placed ahead of the conversation. */
  instructions?: string
  /** A decoder task of the model (e.g. moondream `caption_normal`, `point`, `detect`). */
  task?: string
  /** Candidates kept and returned in `choices` (n ≤ finalCandidates ≤ bestOf; default n). */
  finalCandidates?: number
  /** Use the engine's shared prefix cache (default true). */
  prefixCache?: boolean
  /** Abort the request: the stream ends with an `AbortError` and the engine stops. */
  signal?: AbortSignal
  /**
   * Fail with a `TimeoutError` (and cancel the request) when the engine, although alive,
   * sends nothing for this many milliseconds. There is no default generation timeout.
   */
  stallTimeoutMs?: number
}

export type ReasoningEffort = 'minimal' | 'low' | 'medium' | 'high'

export type ToolChoice =
  | 'auto'
  | 'none'
  | 'required'
  | { type: 'function'; name: string }
  | { type: 'function'; function: { name: string } }

export type ResponseFormat =
  | { type: 'text' }
  | { type: 'json_object' }
  | {
      type: 'json_schema'
      json_schema: { name?: string; description?: string; schema: Record<string, unknown> | boolean; strict?: boolean }
    }

export interface TopLogprob {
  /** The token id, when the engine sent one. */
  tokenId?: number
  /** The token's text, decoded with the model's `tokenizer.json` (the id as text without one). */
  token: string
  logprob: number
  /** The token's bytes (a token may hold part of a multi-byte character). */
  bytes?: number[]
}

/** One generated token with its log-probability and the alternatives the engine weighed. */
export interface TokenLogprob {
  tokenId: number
  token: string
  bytes?: number[]
  /** Null when the engine packed several tokens into one delta. */
  logprob: number | null
  topLogprobs: TopLogprob[]
}

export interface StateEvent {
  eventType: string
  itemType: string
  outputIndex: number
  identifier: string
  delta: string
  value?: unknown
}

/** One streamed delta of one sequence (camelCase of PIE's ClientDelta). */
export interface ChatDelta {
  requestId: number
  sequenceId?: number
  promptIndex?: number
  candidateIndex?: number
  /** Text decoded in this delta. */
  content?: string
  tokens: number[]
  topLogprobs: TopLogprob[]
  /** With `topLogprobs` > 0: each token of this delta with its log-probability. */
  logprobs?: TokenLogprob[]
  cumulativeLogprob?: number
  /** Set on the final delta of a sequence. */
  finishReason?: FinishReason
  /** The last delta of its sequence. */
  isFinal: boolean
  matchedStopTokenId?: number
  matchedStopToken?: string
  errorMessage?: string
  promptTokenCount?: number
  generationLen?: number
  reasoningTokens?: number
  cachedTokenCount?: number
  stateEvents: StateEvent[]
  modalDecoderId?: string
  modalType?: string
  modalEvent?: string
  modalMimeType?: string
  modalMetadataJson?: string
  modalBytesB64?: string
  embedding?: number[]
  /** The answer text in this delta (never reasoning). */
  text: string
  /** Reasoning text in this delta. */
  reasoning: string
  /** Tool-call argument fragments in this delta. */
  toolCallDeltas: ToolCallDelta[]
}

/** A piece of a tool call being generated. */
export interface ToolCallDelta {
  /** Position of the call among the output items. */
  outputIndex: number
  /** The function's name, once known. */
  name: string | null
  /** The argument this fragment belongs to, or null for the raw call text. */
  argument: string | null
  delta: string
}

/** A completed tool call. */
export interface ToolCallResult {
  name: string
  /** Parsed arguments (the raw text when it was not a JSON object). */
  arguments: Record<string, unknown> | string
}

export interface Timings {
  /** From sending the request to the first generated token. */
  timeToFirstTokenMs: number | null
  /** Generated tokens per second after the first one (all sequences). */
  tokensPerSecond: number | null
  totalMs: number
}

/** Token counts, in OpenAI's convention: `totalTokens === promptTokens + completionTokens`. */
export interface Usage {
  promptTokens: number
  /** Every generated token of every sequence, reasoning included. */
  completionTokens: number
  /** The part of `completionTokens` spent reasoning. */
  reasoningTokens: number
  /** Prompt tokens served from the prefix cache. */
  cachedTokens: number
  totalTokens: number
}

export interface ChatChoice {
  index: number
  text: string
  /** The reasoning text, or null when the model did not reason. */
  reasoning: string | null
  toolCalls: ToolCallResult[]
  finishReason: FinishReason | null
  tokens: number[]
  cumulativeLogprob: number | null
  /** Every generated token with its log-probability, when `topLogprobs` was set. */
  logprobs: TokenLogprob[] | null
}

export interface ChatResult {
  /** The first choice's text (answer only; reasoning is in `reasoning`). */
  text: string
  /** The first choice's reasoning. */
  reasoning: string | null
  /** The first choice's tool calls. */
  toolCalls: ToolCallResult[]
  /** The first choice's finish reason. */
  finishReason: FinishReason | null
  /** Counts every generated sequence, including candidates that were not kept. */
  usage: Usage
  /** The kept candidates, best first when more were generated than kept. */
  choices: ChatChoice[]
  timings: Timings
  requestId: number
}

export interface ModelInfo {
  requestedId: string
  canonicalId: string
  modelPath: string
  /** The model-specs family used to render prompts. */
  family: string
}

/** What `client.renderPrompt` returns: the request `chat` would send, resolved. */
export interface RenderedRequest {
  prompt: string
  layout: Array<{ type: string; length: number }>
  reasoning: boolean
  reasoningEffort: string | null
  sampling: {
    maxTokens: number
    temperature: number
    topP: number
    topK: number
    minP: number
    seed: number | null
    deterministic: boolean
    stop: string[]
    n: number
    bestOf: number
    topLogprobs: number
    frequencyPenalty: number
    presencePenalty: number
    repetitionPenalty: number
    repetitionContextSize: number
    logitBias: Array<[number, number]>
    prefixCache: boolean
  }
}
