/**
 * The OpenAI privacy filter: the prefill task `privacy_filter` of the model
 * `openai/privacy-filter`, one token classification per text.
 */

import type { NativeEngine } from '../index'
import { nativeSync, ProtocolError } from './errors'
import { taskLimits } from './native'
import type { PrefillArgs, TaskDelta } from './tasks/prefill'
import { prefillRequest } from './tasks/prefill'
import type { RequestPromise } from './tasks/request'
import { splitOptions } from './tasks/request'

/**
 * The model id the reference clients use for the privacy filter. The native core owns it
 * (`taskLimits().privacyFilterModel`, which the filter uses); this constant, readable before the
 * addon loads, is checked against it by the test suite.
 */
export const PRIVACY_FILTER_MODEL = 'openai/privacy-filter'
/**
 * The largest text, in UTF-8 bytes, the filter takes; the core rejects longer text. The core
 * owns it (`taskLimits().privacyFilterMaxInputBytes`); the test suite checks this copy.
 */
export const PRIVACY_FILTER_MAX_INPUT_BYTES = 16 * 1024

/** Options of {@link Client.privacyFilter}. */
export interface PrivacyFilterOptions {
  /** The filter model (default `openai/privacy-filter`); it must be loaded. */
  model?: string
  /** Aborting cancels the request in the engine; the promise rejects with an `AbortError`. */
  signal?: AbortSignal
}

/** The filter's classification of one text (its JSON with camelCase keys). */
export interface PrivacyFilterAnalysis {
  /** `openai_privacy_filter.token_classification`. */
  type: string
  tokenCount: number
  /** One label id, label and score per token. */
  labelIds: number[]
  labels: string[]
  scores: number[]
  /** The engine's JSON as sent (it may carry more fields than the above). */
  raw: Record<string, unknown>
}

function field<T>(raw: Record<string, unknown>, key: string, check: (v: unknown) => v is T, where: string): T {
  const v = raw[key]
  if (!check(v)) throw new ProtocolError(`${where}: the privacy filter result has no valid '${key}'`)
  return v
}

const isNumber = (v: unknown): v is number => typeof v === 'number'
const isString = (v: unknown): v is string => typeof v === 'string'
const listOf =
  <T>(item: (v: unknown) => v is T) =>
  (v: unknown): v is T[] =>
    Array.isArray(v) && v.every(item)

/** The analysis in a text's deltas: the first delta whose `modalDecoderId` is `privacy_filter`. */
export function analysisOf(deltas: TaskDelta[], where: string): PrivacyFilterAnalysis {
  const d = deltas.find((x) => x.modalDecoderId === 'privacy_filter')
  if (d?.modalBytesB64 === undefined) {
    throw new ProtocolError(`${where}: the engine sent no privacy_filter result`)
  }
  let raw: unknown
  try {
    raw = JSON.parse(Buffer.from(d.modalBytesB64, 'base64').toString('utf8'))
  } catch (e) {
    throw new ProtocolError(
      `${where}: the privacy_filter result is not JSON (${e instanceof Error ? e.message : String(e)})`,
    )
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ProtocolError(`${where}: the privacy_filter result is not a JSON object`)
  }
  const obj = raw as Record<string, unknown>
  return {
    type: field(obj, 'type', isString, where),
    tokenCount: field(obj, 'token_count', isNumber, where),
    labelIds: field(obj, 'label_ids', listOf(isNumber), where),
    labels: field(obj, 'labels', listOf(isString), where),
    scores: field(obj, 'scores', listOf(isNumber), where),
    raw: obj,
  }
}

/** @internal the body of `Client.privacyFilter`. */
export function privacyFilter(
  engine: NativeEngine,
  texts: string | string[],
  options: PrivacyFilterOptions,
): RequestPromise<PrivacyFilterAnalysis | PrivacyFilterAnalysis[]> {
  const args = (): PrefillArgs => {
    const { signal, rest } = splitOptions<PrivacyFilterOptions>(options, 'privacyFilter', ['model'])
    const limits = nativeSync(taskLimits)
    return { model: rest.model ?? limits.privacyFilterModel, texts, task: limits.privacyFilterTask, signal }
  }
  return prefillRequest(engine, args, (prompts) => {
    const analyses = prompts.map((p, i) => analysisOf(p, Array.isArray(texts) ? `texts[${i}]` : 'text'))
    return Array.isArray(texts) ? analyses : analyses[0]!
  })
}
