/**
 * Prefill tasks (`request_type: prefill_task`): the engine reads each text and answers with
 * a task result, generating nothing. One request for a batch of texts.
 */

import type { NativeEngine } from '../../index'
import { InvalidRequestError } from '../errors'
import { requestJson } from '../json'
import type { ChatDelta } from '../types'
import type { RequestPromise } from './request'
import { runRequest, splitOptions } from './request'

/** A delta of a prefill task: a {@link ChatDelta} without the chat pipeline's text views. */
export type TaskDelta = Omit<ChatDelta, 'text' | 'reasoning' | 'toolCallDeltas'>

/** Options of {@link Client.prefill}. */
export interface PrefillOptions {
  /** Aborting cancels the request in the engine; the promise rejects with an `AbortError`. */
  signal?: AbortSignal
}

/** What {@link Client.prefill} resolves to. */
export interface PrefillResult {
  /** Each text's deltas (its final delta last), in input order. */
  prompts: TaskDelta[][]
  /** The model id as given. */
  model: string
  /** The id the engine knew the request by. */
  requestId: number
}

export type PrefillPromise = RequestPromise<PrefillResult>

/** Texts as JSON for the core, which validates them (and the task's input limits). */
export function textsJson(texts: unknown): string {
  return texts === undefined ? 'null' : requestJson(texts, { root: 'texts' })
}

/** The arguments of one prefill call, once its options are split. */
export interface PrefillArgs {
  model: unknown
  texts: unknown
  task: unknown
  signal: AbortSignal | undefined
}

/**
 * @internal one prefill request: `args` checks the call's options (its errors reject the
 * promise), `finish` turns each text's deltas into the public result.
 */
export function prefillRequest<T>(
  engine: NativeEngine,
  args: () => PrefillArgs,
  finish: (prompts: TaskDelta[][], requestId: number) => T,
): RequestPromise<T> {
  return runRequest<string[], T>(
    'prefill',
    () => {
      const { model, task, texts, signal } = args()
      if (typeof model !== 'string' || model.length === 0) {
        throw new InvalidRequestError('model: expected the id of a loaded model')
      }
      if (typeof task !== 'string') {
        throw new InvalidRequestError(`task: expected a task name such as 'privacy_filter', got ${typeof task}`)
      }
      const json = textsJson(texts)
      return { signal, send: () => engine.prefillTask(model, json, task) }
    },
    (prompts, requestId) =>
      finish(
        prompts.map((p) => JSON.parse(p) as TaskDelta[]),
        requestId,
      ),
  )
}

/** @internal the body of `Client.prefill`. */
export function prefill(
  engine: NativeEngine,
  model: string,
  texts: string | string[],
  task: string,
  options: PrefillOptions,
): PrefillPromise {
  const args = (): PrefillArgs => ({
    model,
    texts,
    task,
    signal: splitOptions<PrefillOptions>(options, 'prefill').signal,
  })
  return prefillRequest(engine, args, (prompts, requestId) => ({ prompts, model, requestId }))
}
