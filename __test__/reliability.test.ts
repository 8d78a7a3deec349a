// Integration: lost and broken deltas, lost finals, cancels against a frozen engine, request
// ids across processes and private files, over real IPC with the emulator's fault modes.
import { type ChildProcessByStdio, type ChildProcessWithoutNullStreams, spawn, spawnSync } from 'node:child_process'
import { readdirSync, statSync } from 'node:fs'
import path from 'node:path'
import type { Readable, Writable } from 'node:stream'

import { afterEach, beforeAll, describe, expect, it } from 'vitest'

import type { ChatStream, Client, Engine } from '../src-ts'
import { AbortError, ProtocolError, TimeoutError } from '../src-ts'
import { distDir, emulatorBinary, makeModelDir, tempCacheRoot, useEmulator } from './helpers'

let engine: Engine
let client: Client
let model: string
/** Options for a request that runs until it is cancelled (the end-of-turn token banned). */
let forever: { maxTokens: number; logitBias: Record<number, number> }

// A short quiet period, so a lost final is found quickly.
useEmulator('reliability', { env: { PIE_EMULATOR_TOKEN_DELAY_MS: '2', ORCHARD_LOST_FINAL_CHECK_MS: '400' } }, (e) => {
  engine = e.engine
  client = e.client
  model = e.model
})

beforeAll(async () => {
  const vocab = (await engine.managementCommand({ type: 'emulator_vocab' })).data?.emulator_vocab as {
    eot_token_id: number
  }
  forever = { maxTokens: 100_000, logitBias: { [vocab.eot_token_id]: -100 } }
})

const hello = [{ role: 'user' as const, content: 'Tell me about apple orchards.' }]

async function arm(fault: Record<string, unknown>): Promise<void> {
  const reply = await engine.managementCommand({ type: 'emulator_fault', ...fault })
  expect(reply.status).toBe('ok')
}

async function stats(
  stream: ChatStream,
): Promise<{ cancelled: boolean; active_sequences: number; published_deltas: number }> {
  const reply = await engine.managementCommand({ type: 'emulator_request_stats', request_id: await stream.requestId() })
  return reply.data?.emulator_request_stats as {
    cancelled: boolean
    active_sequences: number
    published_deltas: number
  }
}

/** Poll the emulator until `request` is cancelled (a fact, not a delay). */
async function untilCancelled(stream: ChatStream): Promise<void> {
  for (;;) {
    const s = await stats(stream)
    if (s.cancelled && s.active_sequences === 0) return
    await new Promise<void>((resolve) => setImmediate(resolve))
  }
}

/** The first line a child prints (its failure, if it fails first, makes the test fail). */
function firstLine(
  child: ChildProcessWithoutNullStreams | ChildProcessByStdio<Writable, Readable, null>,
): Promise<string> {
  return new Promise((resolve, reject) => {
    child.stdout.once('data', (b: Buffer) => {
      const line = b.toString().trim()
      if (line.startsWith('child failed')) reject(new Error(line))
      else resolve(line)
    })
    child.once('exit', (code) => reject(new Error(`child exited with ${code} before printing`)))
  })
}

async function failure(p: PromiseLike<unknown>): Promise<unknown> {
  return Promise.resolve(p).then(
    () => null,
    (e: unknown) => e,
  )
}

describe('lost deltas are never a short result', () => {
  it('a dropped middle delta fails the request with DELTAS_LOST', async () => {
    await arm({ fault: 'drop_delta', at: 3 })
    const err = await failure(client.chat(model, hello, { maxTokens: 12, seed: 1 }))
    expect(err).toBeInstanceOf(ProtocolError)
    expect((err as ProtocolError).code).toBe('DELTAS_LOST')
    expect((err as Error).message).toMatch(/generated 12 tokens but only 11 arrived/)
  })

  it('a dropped final fails the request instead of hanging, once the engine reports no work', async () => {
    await arm({ fault: 'drop_final' })
    const stream = client.chat(model, hello, { maxTokens: 6, seed: 2 })
    const err = await failure(stream)
    expect(err).toBeInstanceOf(ProtocolError)
    expect((err as ProtocolError).code).toBe('DELTAS_LOST')
    // The emulator did send (all but) everything: the loss is between engine and client.
    expect((await stats(stream)).active_sequences).toBe(0)
  })

  it('the next request after a failed one is unaffected', async () => {
    const r = await client.chat(model, hello, { maxTokens: 8, seed: 3 })
    expect(r.usage.completionTokens).toBe(8)
  })

  it('a slow engine that stays busy is not mistaken for a lost final', async () => {
    const cacheRoot = tempCacheRoot('slow')
    const child = spawnSync(
      process.execPath,
      [
        '-e',
        `const { Engine } = require(${JSON.stringify(path.join(distDir, 'index.js'))})
        ;(async () => {
          const e = await Engine.start({ binary: ${JSON.stringify(emulatorBinary)}, cacheRoot: ${JSON.stringify(cacheRoot)} })
          await e.loadModel(${JSON.stringify(makeModelDir(cacheRoot))})
          const r = await e.client().chat(${JSON.stringify(makeModelDir(cacheRoot))}, [{ role: 'user', content: 'hi' }], { maxTokens: 3, seed: 4 })
          console.log(r.usage.completionTokens)
          await e.close()
          await Engine.stop({ cacheRoot: ${JSON.stringify(cacheRoot)} })
        })().catch((err) => { console.error(err); process.exit(1) })`,
      ],
      // Tokens every 1.2 s, a quiet check every 0.3 s: every check finds the engine busy.
      {
        env: { ...process.env, PIE_EMULATOR_TOKEN_DELAY_MS: '1200', ORCHARD_LOST_FINAL_CHECK_MS: '300' },
        encoding: 'utf8',
        timeout: 30_000,
      },
    )
    expect(child.stderr).toBe('')
    expect(child.stdout.trim()).toBe('3')
  })
})

describe('undecodable deltas fail their request', () => {
  for (const garbage of ['truncated', 'bad_utf8', 'nan', 'no_request_id']) {
    it(`${garbage}`, async () => {
      await arm({ fault: 'garbage', garbage, at: 2 })
      const err = await failure(client.chat(model, hello, { maxTokens: 10, seed: 5 }))
      expect(err).toBeInstanceOf(ProtocolError)
      expect((err as Error).message).toMatch(/undecodable delta|not a valid PIE delta/)
    })
  }
})

describe('cancels never wait', () => {
  // A failed assertion must not leave the engine frozen for the tests after it.
  afterEach(() => {
    process.kill(engine.pid, 'SIGCONT')
  })

  it('an abort between chat() and iteration reaches the engine', async () => {
    const controller = new AbortController()
    const stream = client.chat(model, hello, { ...forever, signal: controller.signal })
    await stream.requestId()
    controller.abort()
    await untilCancelled(stream)
    await expect(stream).rejects.toBeInstanceOf(AbortError)
  })

  it('a signal aborted before chat() sends nothing and every promise rejects with AbortError', async () => {
    const controller = new AbortController()
    controller.abort()
    const stream = client.chat(model, hello, { signal: controller.signal })
    await expect(stream.requestId()).rejects.toBeInstanceOf(AbortError)
    await expect(stream).rejects.toBeInstanceOf(AbortError)
  })

  it('a stalled request ends with stallTimeoutMs, and the engine is told to stop', async () => {
    await arm({ fault: 'stall' })
    const stream = client.chat(model, hello, { maxTokens: 10, stallTimeoutMs: 300 })
    await expect(stream).rejects.toBeInstanceOf(TimeoutError)
    await untilCancelled(stream)
  })

  it('with the engine frozen (SIGSTOP), break, cancel() and stallTimeoutMs end every stream; the cancels arrive after SIGCONT', async () => {
    const streams = Array.from({ length: 30 }, (_, i) => client.chat(model, hello, { ...forever, seed: i }))
    const stalled = Array.from({ length: 40 }, (_, i) =>
      client.chat(model, hello, { ...forever, seed: 100 + i, stallTimeoutMs: 500 }),
    )
    // Every stream is flowing before the engine freezes.
    const iterators = streams.map((s) => s[Symbol.asyncIterator]())
    await Promise.all(iterators.map((it) => it.next()))
    await Promise.all(stalled.map((s) => s.requestId()))
    process.kill(engine.pid, 'SIGSTOP')
    try {
      // Half leave their loop (return() = break), half are cancelled.
      await Promise.all(iterators.slice(0, 15).map((it) => it.return?.()))
      await Promise.all(streams.slice(15).map((s) => s.cancel()))
      await Promise.all([
        ...streams.map((s) => expect(s).rejects.toBeInstanceOf(AbortError)),
        ...stalled.map((s) => expect(s).rejects.toBeInstanceOf(TimeoutError)),
      ])
    } finally {
      process.kill(engine.pid, 'SIGCONT')
    }
    await Promise.all([...streams, ...stalled].map(untilCancelled))
  })
})

describe('request ids', () => {
  it('two processes number their requests from different random offsets', async () => {
    const child = spawn(
      process.execPath,
      [
        '-e',
        `const { Engine } = require(${JSON.stringify(path.join(distDir, 'index.js'))})
        ;(async () => {
          const e = await Engine.start()
          await e.loadModel(${JSON.stringify(model)})
          const s = e.client().chat(${JSON.stringify(model)}, [{ role: 'user', content: 'hi' }], ${JSON.stringify(forever)})
          console.log(await s.requestId())
          process.stdin.once('data', async () => { await s.cancel(); await s.then(() => {}, () => {}); await e.close(); process.exit(0) })
        })().catch((err) => { console.log('child failed: ' + err); process.exit(1) })`,
      ],
      { env: process.env, stdio: ['pipe', 'pipe', 'inherit'] },
    )
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve))
    const childId = Number(await firstLine(child))
    const ours = client.chat(model, hello, { maxTokens: 40, seed: 9 })
    const ourId = await ours.requestId()
    expect(ourId).not.toBe(childId)
    expect(ourId).toBeGreaterThan(0)
    // The child cancels its request; ours runs to its end.
    child.stdin.write('cancel\n')
    const result = await ours
    expect(result.usage.completionTokens).toBe(40)
    expect(await exited).toBe(0)
  })
})

describe('private files', () => {
  it('under umask 000 the IPC directory is 0700 and no socket, pid, lock or log file is group/other accessible', async () => {
    const cacheRoot = tempCacheRoot('umask')
    const child = spawn(
      process.execPath,
      [
        '-e',
        `process.umask(0)
        const { Engine } = require(${JSON.stringify(path.join(distDir, 'index.js'))})
        ;(async () => {
          const e = await Engine.start({ binary: ${JSON.stringify(emulatorBinary)}, cacheRoot: ${JSON.stringify(cacheRoot)} })
          console.log(e.pid)
          process.stdin.once('data', async () => { await e.close(); await Engine.stop({ cacheRoot: ${JSON.stringify(cacheRoot)} }); process.exit(0) })
        })().catch((err) => { console.log('child failed: ' + err); process.exit(1) })`,
      ],
      { stdio: ['pipe', 'pipe', 'inherit'] },
    )
    try {
      expect(Number(await firstLine(child))).toBeGreaterThan(0)
      const ipc = path.join(cacheRoot, 'ipc')
      expect(statSync(ipc).mode & 0o777).toBe(0o700)
      expect(statSync(cacheRoot).mode & 0o077).toBe(0)
      const files = [
        ...readdirSync(ipc).map((f) => path.join(ipc, f)),
        ...['engine.pid', 'engine.lock', 'engine.log'].map((f) => path.join(cacheRoot, f)),
      ]
      expect(files).toHaveLength(6)
      for (const f of files) expect({ f, mode: statSync(f).mode & 0o077 }).toEqual({ f, mode: 0 })
    } finally {
      child.stdin.write('done\n')
      await new Promise<void>((resolve) => child.once('exit', () => resolve()))
    }
  })
})
