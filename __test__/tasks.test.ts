// Prefill tasks and the privacy filter end to end: over real IPC to the emulator.
import { describe, expect, it } from 'vitest'

import type { Client, Engine, PrivacyFilterAnalysis } from '../src-ts'
import {
  AbortError,
  EngineError,
  InvalidRequestError,
  ModelNotLoadedError,
  PRIVACY_FILTER_MAX_INPUT_BYTES,
  PRIVACY_FILTER_MODEL,
} from '../src-ts'
import { taskLimits } from '../src-ts/native'
import { useEmulator } from './helpers'
import { type RequestStats, rejection, settledStats, statsWhen } from './pipeline-fixtures'

let engine: Engine
let client: Client
let model: string

useEmulator('tasks', { env: { PIE_EMULATOR_TOKEN_DELAY_MS: '5' } }, (e) => {
  engine = e.engine
  client = e.client
  model = e.model
})

/** Poll the emulator's counters (no sleeping) until `done` holds for them. */
const until = (requestId: number, done: (s: RequestStats) => boolean): Promise<RequestStats> =>
  statsWhen(engine, requestId, done)

const SAMPLE = 'Write to Alice at alice@example.com or call +1-555-0100-22. See https://x.org today'

describe('client.prefill', () => {
  it('runs a task over a batch of texts in one request, one final delta per text', async () => {
    const texts = ['first text', SAMPLE, '']
    const p = client.prefill(model, texts, 'privacy_filter')
    const requestId = await p.requestId()
    const r = await p
    expect(r.requestId).toBe(requestId)
    expect(r.model).toBe(model)
    expect(r.prompts).toHaveLength(3)
    r.prompts.forEach((deltas, i) => {
      const last = deltas.at(-1)!
      expect(last.isFinal).toBe(true)
      expect(last.promptIndex).toBe(i)
      expect(last.finishReason).toBe('stop')
      expect(last.modalDecoderId).toBe('privacy_filter')
      expect(last.modalMimeType).toBe('application/json')
      expect(typeof last.modalBytesB64).toBe('string')
    })
    const s = await settledStats(engine, requestId)
    expect(s.published_deltas).toBe(texts.length)
  })

  it('rejects an unknown task with the engine error and bad input with InvalidRequestError', async () => {
    const unknown = await rejection(client.prefill(model, ['a', 'b'], 'summarise'))
    expect(unknown).toBeInstanceOf(EngineError)
    expect(unknown.message).toContain("unknown prefill task 'summarise'")
    const cases: Array<[unknown, unknown, RegExp]> = [
      [[], 'privacy_filter', /^texts: /],
      [42, 'privacy_filter', /^texts: /],
      [['a', 7], 'privacy_filter', /^texts\[1\]: /],
      [['a'], '', /^task: /],
      [['a'], 'two words', /^task: /],
      [['a'], 3, /^task: /],
    ]
    for (const [texts, task, message] of cases) {
      const err = await rejection(client.prefill(model, texts as string[], task as string))
      expect(err).toBeInstanceOf(InvalidRequestError)
      expect(err.message).toMatch(message)
    }
    const badOption = await rejection(client.prefill(model, 'a', 'privacy_filter', { stream: true } as never))
    expect(badOption.message).toMatch(/^options\.stream: /)
    const notLoaded = await rejection(client.prefill('/nowhere/model', 'a', 'privacy_filter'))
    expect(notLoaded).toBeInstanceOf(ModelNotLoadedError)
  })

  it('an aborted signal cancels the request in the engine and rejects with AbortError', async () => {
    // A long text is a long prefill for the emulator (64 tokens a step, 5 ms a step).
    const long = 'Apple trees blossom in the orchard every spring. '.repeat(300)
    const controller = new AbortController()
    const q = client.prefill(model, [long, long], 'privacy_filter', { signal: controller.signal })
    const requestId = await q.requestId()
    controller.abort()
    expect(await rejection(q)).toBeInstanceOf(AbortError)
    const s = await until(requestId, (x) => x.cancelled && x.active_sequences === 0)
    expect(s.published_deltas).toBe(2)
  })
})

describe('client.privacyFilter', () => {
  it('classifies one text: the JSON of the privacy_filter delta, typed', async () => {
    const a: PrivacyFilterAnalysis = await client.privacyFilter(SAMPLE, { model })
    expect(a.type).toBe('openai_privacy_filter.token_classification')
    expect(a.tokenCount).toBe(11)
    expect(a.labels).toEqual([
      'O',
      'O',
      'private_person',
      'O',
      'private_email',
      'O',
      'O',
      'private_phone',
      'O',
      'private_url',
      'O',
    ])
    expect(a.labelIds).toHaveLength(11)
    expect(a.scores.every((s) => s >= 0.5 && s < 1)).toBe(true)
    expect(a.raw.token_count).toBe(11)
    // Deterministic.
    expect(await client.privacyFilter(SAMPLE, { model })).toEqual(a)
  })

  it('a batch is one request and answers in input order', async () => {
    const texts = ['Mail bob@example.org now', 'nothing here', SAMPLE]
    const p = client.privacyFilter(texts, { model })
    const requestId = await p.requestId()
    const all = await p
    expect(all).toHaveLength(3)
    expect(all[0]!.labels).toEqual(['O', 'private_email', 'O'])
    expect(all[1]!.labels).toEqual(['O', 'O'])
    expect(all[2]).toEqual(await client.privacyFilter(SAMPLE, { model }))
    const s = await settledStats(engine, requestId)
    expect(s.published_deltas).toBe(3)
  })

  it('enforces the 16 KiB UTF-8 limit per text with InvalidRequestError naming the field', async () => {
    expect(PRIVACY_FILTER_MAX_INPUT_BYTES).toBe(16 * 1024)
    // The exported constants are the core's values (tasks/prefill.rs owns them).
    expect(taskLimits()).toEqual({
      privacyFilterModel: PRIVACY_FILTER_MODEL,
      privacyFilterTask: 'privacy_filter',
      privacyFilterMaxInputBytes: PRIVACY_FILTER_MAX_INPUT_BYTES,
    })
    // 'é' is two UTF-8 bytes: exactly at the limit passes, one byte over fails.
    const atLimit = 'é'.repeat(PRIVACY_FILTER_MAX_INPUT_BYTES / 2)
    expect((await client.privacyFilter(atLimit, { model })).tokenCount).toBe(1)
    const one = await rejection(client.privacyFilter(`${atLimit}x`, { model }))
    expect(one).toBeInstanceOf(InvalidRequestError)
    expect(one.message).toMatch(/^text: 16385 UTF-8 bytes/)
    expect(one.message).toContain('chunk')
    const batch = await rejection(client.privacyFilter(['fine', `${atLimit}x`], { model }))
    expect(batch.message).toMatch(/^texts\[1\]: 16385 UTF-8 bytes/)
  })

  it('defaults to the openai/privacy-filter model, which must be loaded', async () => {
    const err = await rejection(client.privacyFilter('hello'))
    expect(err).toBeInstanceOf(ModelNotLoadedError)
    expect(err.message).toContain('openai/privacy-filter')
    const badOption = await rejection(client.privacyFilter('hello', { model, stream: true } as never))
    expect(badOption).toBeInstanceOf(InvalidRequestError)
    expect(badOption.message).toMatch(/^options\.stream: /)
  })
})
