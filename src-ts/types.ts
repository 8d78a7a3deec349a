/** Public data types of the chat API. */

export type Role = 'system' | 'developer' | 'user' | 'assistant' | 'tool'

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
  role: Role | (string & {})
  content?: string | ContentPart[] | null
  name?: string
  tool_calls?: ToolCall[]
  tool_call_id?: string
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
  reasoning?: boolean | 'minimal' | 'low' | 'medium' | 'high'
  tools?: FunctionTool[]
  /** Use the engine's shared prefix cache (default true). */
  prefixCache?: boolean
  /** Abort the request: the stream ends with an `AbortError` and the engine stops. */
  signal?: AbortSignal
}

export interface TopLogprob {
  /** The engine's token id, as text. */
  token: string
  logprob: number
  bytes?: number[]
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
  cumulativeLogprob?: number
  /** Set on the final delta of a sequence: `stop`, `length`, `cancelled`, ... */
  finishReason?: string
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
}

export interface Usage {
  promptTokens: number
  completionTokens: number
  reasoningTokens: number
  cachedTokens: number
  totalTokens: number
}

export interface ChatChoice {
  index: number
  text: string
  finishReason: string | null
  tokens: number[]
  cumulativeLogprob: number | null
}

export interface ChatResult {
  /** The first choice's text. */
  text: string
  /** The first choice's finish reason. */
  finishReason: string | null
  usage: Usage
  choices: ChatChoice[]
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
