// Fixtures shared by the chat-pipeline suites: the emulator's per-request counters, and two tools.
import { expect } from 'vitest'

import type { Engine } from '../src-ts'

/** What the emulator did for one request. */
export interface RequestStats {
  known: boolean
  published_deltas: number
  active_sequences: number
  cancelled: boolean
}

export async function requestStats(engine: Engine, requestId: number): Promise<RequestStats> {
  const reply = await engine.managementCommand({ type: 'emulator_request_stats', request_id: requestId })
  if (reply.status !== 'ok') throw new Error(`emulator_request_stats failed: ${JSON.stringify(reply)}`)
  return reply.data!.emulator_request_stats as RequestStats
}

/** The error `p` rejects with (it must reject, with an Error). */
export async function rejection(p: Promise<unknown>): Promise<Error> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  )
  expect(err).toBeInstanceOf(Error)
  return err as Error
}

/** Wait for `cond`, checking once per turn of the event loop. */
export async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setImmediate(r))
}

/** Poll the emulator's counters (once per turn of the event loop, no sleeping) until `done` holds for them. */
export async function statsWhen(
  engine: Engine,
  requestId: number,
  done: (s: RequestStats) => boolean,
): Promise<RequestStats> {
  for (;;) {
    const s = await requestStats(engine, requestId)
    if (done(s)) return s
    await new Promise<void>((resolve) => setImmediate(resolve))
  }
}

/**
 * The request's counters once the engine is done with it: cancelled, or published and no
 * sequence still generating. (The emulator knows a request from its arrival, before its first
 * step: "known and nothing running" alone would also hold for a request not started yet.)
 */
export const settledStats = (engine: Engine, requestId: number): Promise<RequestStats> =>
  statsWhen(engine, requestId, (s) => s.known && s.active_sequences === 0 && (s.cancelled || s.published_deltas > 0))

/** Two function tools (weather by city, time by zone), in the OpenAI shape both APIs take. */
export const weatherAndTime = [
  {
    type: 'function' as const,
    function: {
      name: 'get_weather',
      description: 'Current weather for a city',
      parameters: {
        type: 'object',
        properties: { city: { type: 'string' } },
        required: ['city'],
        additionalProperties: false,
      },
    },
  },
  {
    type: 'function' as const,
    function: {
      name: 'get_time',
      description: 'The time in a zone, some hours ahead',
      parameters: {
        type: 'object',
        properties: { zone: { type: 'string' }, hours: { type: 'integer', minimum: 0, maximum: 23 } },
        required: ['zone', 'hours'],
      },
    },
  },
]
