/**
 * AI SDK (LanguageModelV4) shapes ↔ orchard chat shapes: the prompt, the call options, the
 * finish reason and the usage. Everything here is pure; the model class does the I/O.
 */

import type {
  JSONObject,
  JSONValue,
  LanguageModelV4CallOptions,
  LanguageModelV4FilePart,
  LanguageModelV4FinishReason,
  LanguageModelV4FunctionTool,
  LanguageModelV4Prompt,
  LanguageModelV4ToolResultOutput,
  LanguageModelV4Usage,
  SharedV4ProviderMetadata,
  SharedV4Warning,
} from '@ai-sdk/provider'
import { InvalidArgumentError, InvalidPromptError, UnsupportedFunctionalityError } from '@ai-sdk/provider'

import { reasoningEfforts } from '../native'
import type {
  ChatMessage,
  ChatOptions,
  ChatResult,
  ContentPart,
  FinishReason,
  FunctionTool,
  ReasoningEffort,
  TokenLogprob,
  ToolCall,
  ToolChoice,
  Usage,
} from '../types'

/** The provider's name: the key of its `providerOptions` and `providerMetadata`. */
export const PROVIDER = 'orchard'

/**
 * Orchard settings with no AI SDK call option, given per call as
 * `providerOptions: { orchard: { ... } }`. Each is the {@link ChatOptions} field of the same
 * name (see docs/chat.md), except `logprobs`.
 */
export interface OrchardLanguageModelOptions {
  /** Alternatives per generated token, 1–20: the tokens with their log-probabilities come back in `providerMetadata.orchard.logprobs`. */
  logprobs?: number
  minP?: number
  repetitionPenalty?: number
  repetitionContextSize?: number
  /** Token id → bias in [-100, 100]. */
  logitBias?: Record<string, number>
  /** Overrides the call's `reasoning`: on/off, or an effort. */
  reasoning?: boolean | ReasoningEffort
  deterministic?: boolean
  prefixCache?: boolean
  minToolCalls?: number
  maxToolCalls?: number
  /** Milliseconds of silence from a live engine before the call fails with `TimeoutError`. */
  stallTimeoutMs?: number
}

type OptionKind = 'number' | 'boolean' | 'bias' | 'reasoning'
const PROVIDER_OPTIONS: Record<keyof OrchardLanguageModelOptions, OptionKind> = {
  logprobs: 'number',
  minP: 'number',
  repetitionPenalty: 'number',
  repetitionContextSize: 'number',
  logitBias: 'bias',
  reasoning: 'reasoning',
  deterministic: 'boolean',
  prefixCache: 'boolean',
  minToolCalls: 'number',
  maxToolCalls: 'number',
  stallTimeoutMs: 'number',
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)

/** `providerOptions.orchard`, checked: an unknown key or a wrong type names the field. */
export function readProviderOptions(
  providerOptions: LanguageModelV4CallOptions['providerOptions'],
): OrchardLanguageModelOptions {
  const raw: unknown = providerOptions?.[PROVIDER]
  if (raw === undefined) return {}
  const at = `providerOptions.${PROVIDER}`
  if (!isRecord(raw)) throw new InvalidArgumentError({ argument: at, message: `${at}: expected an object` })
  const out: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(raw)) {
    if (value === undefined) continue
    const field = `${at}.${key}`
    const kind = (PROVIDER_OPTIONS as Record<string, OptionKind | undefined>)[key]
    const bad = (expected: string) =>
      new InvalidArgumentError({
        argument: field,
        message: `${field}: expected ${expected}, got ${JSON.stringify(value)}`,
      })
    if (kind === undefined) {
      throw new InvalidArgumentError({
        argument: field,
        message: `${field}: unknown option; known: ${Object.keys(PROVIDER_OPTIONS).join(', ')}`,
      })
    }
    if (kind === 'number' && (typeof value !== 'number' || !Number.isFinite(value))) throw bad('a number')
    if (kind === 'boolean' && typeof value !== 'boolean') throw bad('a boolean')
    if (kind === 'bias' && (!isRecord(value) || Object.values(value).some((b) => typeof b !== 'number')))
      throw bad('{ [tokenId]: bias }')
    if (kind === 'reasoning' && typeof value !== 'boolean' && !reasoningEfforts().includes(value as ReasoningEffort)) {
      throw bad(`a boolean or one of ${reasoningEfforts().join(', ')}`)
    }
    out[key] = value
  }
  return out as OrchardLanguageModelOptions
}

/** What a call becomes: the chat request, the warnings, and what the answer needs to be read back. */
export interface PreparedCall {
  messages: ChatMessage[]
  options: ChatOptions
  warnings: SharedV4Warning[]
  /** Each function tool's input schema, by name (to stream call inputs as JSON). */
  toolSchemas: Map<string, unknown>
}

/** The call options as `client.chat` options, with a warning for each setting orchard cannot honour. */
export function prepareCall(call: LanguageModelV4CallOptions): PreparedCall {
  const warnings: SharedV4Warning[] = []
  const orchard = readProviderOptions(call.providerOptions)
  // Fields left undefined are left out: the profile's defaults apply to them.
  const options: ChatOptions = definedOnly({
    maxTokens: call.maxOutputTokens,
    temperature: call.temperature,
    topP: call.topP,
    topK: call.topK,
    presencePenalty: call.presencePenalty,
    frequencyPenalty: call.frequencyPenalty,
    seed: call.seed,
    stop: call.stopSequences !== undefined && call.stopSequences.length > 0 ? call.stopSequences : undefined,
    signal: call.abortSignal,
    reasoning: orchard.reasoning ?? reasoningOf(call.reasoning, warnings),
    topLogprobs: orchard.logprobs,
    minP: orchard.minP,
    repetitionPenalty: orchard.repetitionPenalty,
    repetitionContextSize: orchard.repetitionContextSize,
    logitBias: orchard.logitBias,
    deterministic: orchard.deterministic,
    prefixCache: orchard.prefixCache,
    minToolCalls: orchard.minToolCalls,
    maxToolCalls: orchard.maxToolCalls,
    stallTimeoutMs: orchard.stallTimeoutMs,
  })

  const format = call.responseFormat
  if (format?.type === 'json') {
    if (format.schema === undefined) {
      options.responseFormat = { type: 'json_object' }
    } else {
      const schema = withoutDialect(format.schema)
      options.responseFormat = {
        type: 'json_schema',
        json_schema: {
          name: format.name ?? 'response',
          schema,
          strict: true,
          ...(format.description !== undefined ? { description: format.description } : {}),
        },
      }
    }
  }

  const toolSchemas = new Map<string, unknown>()
  const tools: FunctionTool[] = []
  for (const tool of call.tools ?? []) {
    if (tool.type !== 'function') {
      warnings.push({
        type: 'unsupported',
        feature: `provider tool '${tool.name}'`,
        details: 'orchard runs only function tools; this tool was left out of the request',
      })
      continue
    }
    tools.push(functionTool(tool, warnings))
    toolSchemas.set(tool.name, tool.inputSchema)
  }
  if (tools.length > 0) {
    options.tools = tools
    const choice = toolChoiceOf(call.toolChoice)
    if (choice !== undefined) options.toolChoice = choice
  }

  // The SDK adds its own user-agent to every call; only headers the caller set are worth a warning.
  const headers = Object.entries(call.headers ?? {}).filter(
    ([name, value]) => value !== undefined && name.toLowerCase() !== 'user-agent',
  )
  if (headers.length > 0) {
    warnings.push({
      type: 'unsupported',
      feature: 'headers',
      details: `orchard talks to a local engine over IPC, not HTTP; ${headers.map(([n]) => n).join(', ')} not sent`,
    })
  }

  return { messages: toMessages(call.prompt), options, warnings, toolSchemas }
}

/** `o` without its undefined fields. */
function definedOnly<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T
}

/** The spec's reasoning levels on orchard's: `provider-default` leaves the model's own default. */
function reasoningOf(
  level: LanguageModelV4CallOptions['reasoning'],
  warnings: SharedV4Warning[],
): ChatOptions['reasoning'] {
  switch (level) {
    case undefined:
    case 'provider-default':
      return undefined
    case 'none':
      return false
    case 'xhigh':
    case 'max':
      warnings.push({
        type: 'compatibility',
        feature: `reasoning '${level}'`,
        details: "orchard's highest reasoning effort is 'high'; it was used instead",
      })
      return 'high'
    default:
      return level
  }
}

function toolChoiceOf(choice: LanguageModelV4CallOptions['toolChoice']): ToolChoice | undefined {
  if (choice === undefined) return undefined
  if (choice.type === 'tool') return { type: 'function', name: choice.toolName }
  return choice.type
}

/** A JSON Schema without its `$schema` dialect tag (it would only be noise in the prompt). */
function withoutDialect(schema: object): Record<string, unknown> {
  const { $schema: _dialect, ...rest } = schema as Record<string, unknown>
  return rest
}

function functionTool(tool: LanguageModelV4FunctionTool, warnings: SharedV4Warning[]): FunctionTool {
  if (tool.inputExamples !== undefined && tool.inputExamples.length > 0) {
    warnings.push({
      type: 'unsupported',
      feature: `inputExamples of tool '${tool.name}'`,
      details: 'orchard renders only the name, description and input schema of a tool',
    })
  }
  return {
    type: 'function',
    function: {
      name: tool.name,
      ...(tool.description !== undefined ? { description: tool.description } : {}),
      parameters: withoutDialect(tool.inputSchema),
    },
  }
}

// ---------------------------------------------------------------------------------- prompt

/** Bytes or base64 text as base64. */
function base64Of(data: Uint8Array | string): string {
  return typeof data === 'string' ? data : Buffer.from(data).toString('base64')
}

/** A file part as orchard content: images as data URLs, text files inline; anything else is refused. */
function filePart(part: Pick<LanguageModelV4FilePart, 'data' | 'mediaType' | 'filename'>, at: string): ContentPart {
  const media = part.mediaType.toLowerCase()
  const data = part.data
  if (data.type === 'text') return { type: 'text', text: data.text }
  if (media.startsWith('image')) {
    if (data.type === 'data') {
      const subtype = media.includes('/') && !media.endsWith('/*') ? media : 'image/png'
      return { type: 'image_url', image_url: { url: `data:${subtype};base64,${base64Of(data.data)}` } }
    }
    if (data.type === 'url' && data.url.protocol === 'data:')
      return { type: 'image_url', image_url: { url: data.originalUrl ?? data.url.href } }
    throw new UnsupportedFunctionalityError({
      functionality: `${at}: an image by ${data.type}`,
      message: `${at}: orchard takes images as bytes or data URLs (the AI SDK downloads http(s) URLs for it); a ${data.type} cannot be read`,
    })
  }
  if (media.startsWith('text/') && data.type === 'data') {
    const text =
      typeof data.data === 'string'
        ? Buffer.from(data.data, 'base64').toString('utf8')
        : Buffer.from(data.data).toString('utf8')
    return { type: 'text', text }
  }
  throw new UnsupportedFunctionalityError({
    functionality: `file parts of type ${part.mediaType}`,
    message: `${at}: orchard takes images and text files; '${part.mediaType}'${part.filename ? ` (${part.filename})` : ''} is not supported`,
  })
}

/** Parts with only text become a string, so the prompt renders as a plain message would. */
function compact(parts: ContentPart[]): string | ContentPart[] {
  if (parts.every((p): p is { type: 'text'; text: string } => p.type === 'text'))
    return parts.map((p) => p.text).join('')
  return parts
}

function jsonText(value: JSONValue | undefined): string {
  return typeof value === 'string' ? value : JSON.stringify(value ?? null)
}

function toolOutput(output: LanguageModelV4ToolResultOutput, at: string): string | ContentPart[] {
  switch (output.type) {
    case 'text':
    case 'error-text':
      return output.value
    case 'json':
    case 'error-json':
      return jsonText(output.value)
    case 'execution-denied':
      return output.reason ?? 'The tool call was not approved.'
    case 'content':
      return compact(
        output.value.flatMap((p, i): ContentPart[] => {
          if (p.type === 'text') return [{ type: 'text', text: p.text }]
          if (p.type === 'file') return [filePart(p, `${at}.output.value[${i}]`)]
          return []
        }),
      )
  }
}

/** The prompt as orchard chat messages. */
export function toMessages(prompt: LanguageModelV4Prompt): ChatMessage[] {
  const messages: ChatMessage[] = []
  prompt.forEach((message, i) => {
    const at = `prompt[${i}]`
    switch (message.role) {
      case 'system':
        messages.push({ role: 'system', content: message.content })
        break
      case 'user':
        messages.push({
          role: 'user',
          content: compact(
            message.content.map((p, j) =>
              p.type === 'text' ? { type: 'text' as const, text: p.text } : filePart(p, `${at}.content[${j}]`),
            ),
          ),
        })
        break
      case 'assistant': {
        let text = ''
        let reasoning = ''
        const calls: ToolCall[] = []
        message.content.forEach((p, j) => {
          if (p.type === 'text') text += p.text
          else if (p.type === 'reasoning') reasoning += p.text
          else if (p.type === 'tool-call') {
            calls.push({
              id: p.toolCallId,
              type: 'function',
              function: { name: p.toolName, arguments: callArguments(p.input, `${at}.content[${j}].input`) },
            })
          } else if (p.type === 'file' || p.type === 'reasoning-file' || p.type === 'tool-result') {
            throw new UnsupportedFunctionalityError({
              functionality: `assistant ${p.type} parts`,
              message: `${at}.content[${j}]: an assistant '${p.type}' part cannot be given to orchard (it has no provider-executed tools and generates no files)`,
            })
          }
          // 'custom' parts belong to other providers: nothing to render.
        })
        const m: ChatMessage & { reasoning_content?: string } = { role: 'assistant', content: text }
        if (reasoning !== '') m.reasoning_content = reasoning
        if (calls.length > 0) m.tool_calls = calls
        messages.push(m)
        break
      }
      case 'tool':
        message.content.forEach((p, j) => {
          // Approval responses concern provider-executed tools, which orchard does not have.
          if (p.type !== 'tool-result') return
          messages.push({
            role: 'tool',
            tool_call_id: p.toolCallId,
            content: toolOutput(p.output, `${at}.content[${j}]`),
          })
        })
        break
      default: {
        const role: unknown = (message as { role: unknown }).role
        throw new InvalidPromptError({
          prompt,
          message: `${at}.role: '${String(role)}' is not a role of the AI SDK prompt`,
        })
      }
    }
  })
  if (messages.length === 0) throw new InvalidPromptError({ prompt, message: 'prompt: no message to answer' })
  return messages
}

/** Tool-call input as orchard's `arguments`: an object, or JSON text. */
function callArguments(input: unknown, at: string): string | Record<string, unknown> {
  if (isRecord(input)) return input
  if (typeof input === 'string') return input
  throw new InvalidPromptError({ prompt: input, message: `${at}: expected the call's input as an object or JSON text` })
}

// ---------------------------------------------------------------------------------- results

/** The engine's finish reason in the spec's terms; calls made means `tool-calls`. */
export function finishReasonOf(
  raw: FinishReason | null | undefined,
  madeToolCalls: boolean,
): LanguageModelV4FinishReason {
  const r = raw ?? undefined
  if (madeToolCalls && r !== 'length' && r !== 'max_tokens') return { unified: 'tool-calls', raw: r }
  switch (r) {
    case 'stop':
    case 'eos':
    case 'end_turn':
    case 'stop_sequence':
      return { unified: 'stop', raw: r }
    case 'length':
    case 'max_tokens':
      return { unified: 'length', raw: r }
    case 'content_filter':
      return { unified: 'content-filter', raw: r }
    case 'tool_calls':
      return { unified: 'tool-calls', raw: r }
    case 'error':
      return { unified: 'error', raw: r }
    default:
      return { unified: 'other', raw: r }
  }
}

/** Orchard usage (completion includes reasoning) in the spec's shape. */
export function usageOf(u: Usage): LanguageModelV4Usage {
  return {
    inputTokens: {
      total: u.promptTokens,
      noCache: u.promptTokens - u.cachedTokens,
      cacheRead: u.cachedTokens,
      cacheWrite: undefined,
    },
    outputTokens: {
      total: u.completionTokens,
      text: u.completionTokens - u.reasoningTokens,
      reasoning: u.reasoningTokens,
    },
    raw: { ...u },
  }
}

function logprobJson(lp: TokenLogprob): JSONObject {
  return {
    tokenId: lp.tokenId,
    token: lp.token,
    logprob: lp.logprob,
    ...(lp.bytes ? { bytes: lp.bytes } : {}),
    topLogprobs: lp.topLogprobs.map((t) => ({
      token: t.token,
      logprob: t.logprob,
      ...(t.tokenId !== undefined ? { tokenId: t.tokenId } : {}),
    })),
  }
}

/** What the engine adds: the request id, timings, cached tokens and (when asked) log-probabilities. */
export function metadataOf(result: ChatResult): SharedV4ProviderMetadata {
  const logprobs = result.choices[0]?.logprobs
  return {
    [PROVIDER]: {
      requestId: result.requestId,
      timings: { ...result.timings },
      ...(logprobs ? { logprobs: logprobs.map(logprobJson) } : {}),
    },
  }
}
