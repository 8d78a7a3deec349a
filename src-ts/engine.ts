/** Engine: a lease on the local inference engine (PIE, or pie-emulator). */

import { Client } from './client'
import { AbortError, EngineDiedError, InvalidRequestError, native } from './errors'
import { binding, modelSpecsDir } from './native'
import type { ModelInfo } from './types'

import type { NativeEngine } from '../index'

export interface EngineStartOptions {
  /** Path of the engine binary. Default: `ORCHARD_ENGINE_BINARY`, then
   * `$PIE_LOCAL_BUILD/bin/proxy_inference_engine`, then `~/.orchard/bin/proxy_inference_engine`. */
  binary?: string
  /** How long a launched engine may take to send its first heartbeat (default 60 000 ms). */
  startupTimeoutMs?: number
  /** How long to wait for another process holding `engine.lock` (default 30 000 ms). */
  lockTimeoutMs?: number
}

export interface LoadModelOptions {
  /** Give up (and cancel the load) after this long. Default 600 000 ms. */
  timeoutMs?: number
  signal?: AbortSignal
}

function checkMs(field: string, v: number | undefined): number | undefined {
  if (v === undefined) return undefined
  if (!Number.isInteger(v) || v <= 0 || v > 0xffffffff) {
    throw new InvalidRequestError('INVALID_REQUEST', `${field}: expected a positive whole number of milliseconds, got ${String(v)}`)
  }
  return v
}

/**
 * A lease on the engine shared by every `Engine` in this process. `Engine.start()` attaches
 * to the running engine or launches one; `close()` gives the lease back and never kills
 * the engine (it exits by itself when its last client leaves).
 */
export class Engine {
  readonly #native: NativeEngine

  private constructor(n: NativeEngine) {
    this.#native = n
  }

  /** Attach to the running engine or launch one, and register this process with it. */
  static async start(options: EngineStartOptions = {}): Promise<Engine> {
    const n = await native(() =>
      binding.NativeEngine.start({
        binary: options.binary,
        startupTimeoutMs: checkMs('startupTimeoutMs', options.startupTimeoutMs),
        lockTimeoutMs: checkMs('lockTimeoutMs', options.lockTimeoutMs),
        modelSpecsDir: modelSpecsDir(),
      }),
    )
    return new Engine(n)
  }

  /**
   * Stop the engine of this cache root (SIGINT, then SIGTERM, then SIGKILL, each only while
   * the pid is still the engine binary). Every client of that engine loses it.
   * Resolves to the stopped pid, or null when no engine was running.
   */
  static async stop(options: { graceMs?: number } = {}): Promise<number | null> {
    const graceMs = checkMs('graceMs', options.graceMs)
    return native(() => binding.stopEngine(graceMs))
  }

  /** The engine's process id. */
  get pid(): number {
    return this.#native.pid
  }

  /** True when this process launched the engine (false when it attached). */
  get launched(): boolean {
    return this.#native.launched
  }

  /** Directory of `engine.pid`, `engine.lock`, `engine.log` and the IPC sockets. */
  get cacheRoot(): string {
    return this.#native.cacheRoot
  }

  get closed(): boolean {
    return this.#native.closed
  }

  /** Make `id` (a local model directory with a `config.json`) ready for requests. */
  async loadModel(id: string, options: LoadModelOptions = {}): Promise<ModelInfo> {
    if (typeof id !== 'string' || id.length === 0) {
      throw new InvalidRequestError('INVALID_REQUEST', 'id: expected a model id or a local model directory')
    }
    const timeoutMs = checkMs('timeoutMs', options.timeoutMs)
    if (options.signal?.aborted) throw new AbortError('loadModel was aborted before it started')
    const load = native(() => this.#native.loadModel(id, timeoutMs))
    if (!options.signal) return load
    const signal = options.signal
    return new Promise<ModelInfo>((resolve, reject) => {
      const onAbort = () => reject(new AbortError(`loadModel('${id}') was aborted`))
      signal.addEventListener('abort', onAbort, { once: true })
      load.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort))
    })
  }

  /** A client for chat requests over this engine's connection. */
  client(): Client {
    if (this.closed) {
      throw new EngineDiedError('ENGINE_DIED', 'this Engine was closed; call Engine.start() for a new one')
    }
    return new Client(this.#native)
  }

  /** Give the lease back. Idempotent. The last lease in the process deregisters. */
  async close(): Promise<void> {
    await native(() => this.#native.close())
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }
}
