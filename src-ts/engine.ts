/** Engine: a lease on the local inference engine (PIE, or pie-emulator). */

import type { NativeEngine } from '../index'
import { Client } from './client'
import { AbortError, EngineDiedError, EngineNotFoundError, InvalidRequestError, native, nativeSync } from './errors'
import type { DownloadProgress } from './install/http'
import { type InstallOptions, type InstallResult, installEngine } from './install/install'
import { requestJson } from './json'
import type { HubOptions } from './models/hub'
import { downloads, type ModelStatus } from './models/status'
import { addon, modelSpecsDir } from './native'
import type { ModelInfo } from './types'

export interface EngineStartOptions {
  /** Path of the engine binary. Default: `ORCHARD_ENGINE_BINARY`, then
   * `$PIE_LOCAL_BUILD/bin/proxy_inference_engine`, then `<home>/bin/proxy_inference_engine`
   * (see {@link Engine.findBinary}). */
  binary?: string
  /** How long a launched engine may take to send its first heartbeat (default 60 000 ms). */
  startupTimeoutMs?: number
  /** How long to wait for another process holding `engine.lock` (default 30 000 ms). */
  lockTimeoutMs?: number
  /**
   * Install the engine (see {@link Engine.install}) when no binary is found. `true` uses the
   * defaults; an object passes install options. Default false.
   */
  install?: boolean | Omit<InstallOptions, 'signal'>
  /** Engine install directory to look in (default `ORCHARD_HOME`, then `~/.orchard`). */
  home?: string
  /**
   * The engine's cache root: `engine.pid`, `engine.lock`, `engine.log` and the IPC sockets
   * (in `<cacheRoot>/ipc`, whatever `ORCHARD_IPC_ROOT` says). Engines of different cache
   * roots are independent, also within one process. Default `ORCHARD_CACHE_ROOT`, then
   * `~/Library/Caches/com.theproxycompany` (macOS) or `~/.cache/com.theproxycompany`.
   */
  cacheRoot?: string
}

/** Options of {@link Engine.stop}. */
export interface EngineStopOptions {
  /** How long each signal (SIGINT, SIGTERM) may take before the next (default 5 000 ms). */
  graceMs?: number
  /** The cache root whose engine to stop (default: as {@link EngineStartOptions.cacheRoot}). */
  cacheRoot?: string
}

/**
 * Options of {@link Engine.loadModel}: the Hub options (revision, cache directory, endpoint,
 * token, offline, retries) for a model fetched from the Hub, and these.
 */
export interface LoadModelOptions extends Omit<HubOptions, 'signal' | 'onProgress'> {
  /** Give up waiting for the engine to activate the model after this long. Default 600 000 ms. */
  timeoutMs?: number
  /** Stop waiting (this caller only; {@link Engine.cancelLoad} stops the load itself). */
  signal?: AbortSignal
  /** Download progress, in bytes, while the model is fetched from the Hub. */
  onProgress?: (progress: DownloadProgress) => void
}

/** A management command: its name in `type`, then its fields in the engine's snake_case. */
export interface ManagementCommand {
  type: string
  [field: string]: unknown
}

/** The engine's answer to a management command. */
export interface ManagementReply {
  status: 'ok' | 'accepted' | 'error'
  message?: string
  data?: Record<string, unknown>
}

export type { DownloadProgress } from './install/http'
export type { InstallOptions, InstallResult } from './install/install'
export type { ModelLoadState, ModelStatus } from './models/status'

/** `promise`, or a rejection with `aborted()` as soon as `signal` aborts (the work itself goes on). */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal | undefined, aborted: () => Error): Promise<T> {
  if (!signal) return promise
  if (signal.aborted) return Promise.reject(aborted())
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(aborted())
    signal.addEventListener('abort', onAbort, { once: true })
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort))
  })
}

function checkMs(field: string, v: number | undefined): number | undefined {
  if (v === undefined) return undefined
  if (!Number.isInteger(v) || v <= 0 || v > 0xffffffff) {
    throw new InvalidRequestError(`${field}: expected a positive whole number of milliseconds, got ${String(v)}`)
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

  /**
   * Attach to the running engine or launch one, and register this process with it. With
   * `install`, an engine is installed first when no binary is found.
   */
  static async start(options: EngineStartOptions = {}): Promise<Engine> {
    const startupTimeoutMs = checkMs('startupTimeoutMs', options.startupTimeoutMs)
    const lockTimeoutMs = checkMs('lockTimeoutMs', options.lockTimeoutMs)
    const launch = (binary: string | undefined) =>
      native(() =>
        addon().NativeEngine.start({
          binary,
          home: options.home,
          cacheRoot: options.cacheRoot,
          startupTimeoutMs,
          lockTimeoutMs,
          modelSpecsDir: modelSpecsDir(),
        }),
      )
    try {
      return new Engine(await launch(options.binary))
    } catch (e) {
      if (!(e instanceof EngineNotFoundError) || !options.install || options.binary) throw e
      const installed = await installEngine({
        home: options.home,
        ...(options.install === true ? {} : options.install),
      })
      return new Engine(await launch(installed.path))
    }
  }

  /**
   * The engine binary {@link Engine.start} would launch when none is attached: the
   * `binary` option, else `ORCHARD_ENGINE_BINARY`, else `$PIE_LOCAL_BUILD/bin/…`, else the
   * install in `home` (`ORCHARD_HOME`, then `~/.orchard`). Throws `EngineNotFoundError`
   * naming every path tried.
   */
  static findBinary(options: Pick<EngineStartOptions, 'binary' | 'home'> = {}): string {
    return nativeSync(() => addon().findEngineBinary(options.binary, options.home))
  }

  /**
   * Download and install the engine for this platform into `ORCHARD_HOME` (default
   * `~/.orchard`): manifest per channel, sha256-verified archive, atomic switch, under
   * `install.lock`. Resolves to `{ version, path, installed }` (`installed: false` when that
   * version was already there).
   */
  static install(options: InstallOptions = {}): Promise<InstallResult> {
    return installEngine(options)
  }

  /**
   * Stop the engine of a cache root (SIGINT, then SIGTERM, then SIGKILL, each only while
   * the pid is still the engine binary). Every client of that engine loses it.
   * Resolves to the stopped pid, or null when no engine was running.
   */
  static async stop(options: EngineStopOptions = {}): Promise<number | null> {
    const graceMs = checkMs('graceMs', options.graceMs)
    return native(() => addon().stopEngine(graceMs, options.cacheRoot))
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

  /**
   * Make `id` ready for requests: a local model directory with a `config.json`, a weights
   * file or folder the engine inspects (`.gguf`, `.safetensors`), or a Hub id
   * (`org/name`, any casing) found in the Hugging Face cache or downloaded into it. Loads of
   * one model in this process share one download and one activation; after a failure the
   * next call retries. Requests may then name the model by any id it was loaded under.
   */
  async loadModel(id: string, options: LoadModelOptions = {}): Promise<ModelInfo> {
    if (typeof id !== 'string' || id.length === 0) {
      throw new InvalidRequestError('id: expected a model id or a local model directory')
    }
    const timeoutMs = checkMs('timeoutMs', options.timeoutMs)
    if (options.signal?.aborted) throw new AbortError('loadModel was aborted before it started')
    const n = this.#native
    const { timeoutMs: _t, ...hubOptions } = options
    void _t
    const resolved = await downloads.fetch(id, hubOptions)
    // A Hub model loads from its snapshot under its repo id; the session names local ones.
    const fromHub = resolved.source === 'cache' || resolved.source === 'hub'
    const load = native(() =>
      fromHub ? n.loadModel(id, timeoutMs, resolved.path, resolved.canonicalId) : n.loadModel(id, timeoutMs),
    )
    return untilAborted(load, options.signal, () => new AbortError(`loadModel('${id}') was aborted`))
  }

  /** Where a model is: `idle`, `downloading` (with byte progress), `activating`, `ready` or `failed` (with the error). */
  modelStatus(id: string): ModelStatus {
    const n = this.#native
    return downloads.status(id, this.closed ? null : nativeSync(() => n.modelStatus(id)))
  }

  /**
   * Stop a load in progress: the download stops (partial files stay for a later resume), an
   * activation is cancelled in the engine (`cancel_model_load`), and every waiting
   * `loadModel` rejects with `AbortError`; the model's state becomes `failed` and the next
   * `loadModel` retries. Returns false when no load was running.
   */
  cancelLoad(id: string): boolean {
    if (downloads.cancel(id)) return true
    const n = this.#native
    return !this.closed && nativeSync(() => n.cancelLoad(id))
  }

  /**
   * Low level: send one management command to the engine and resolve to its reply, e.g.
   * `{ type: 'ping' }` or, on pie-emulator, `{ type: 'emulator_request_stats', request_id }`.
   * The reply's `status` is `ok`, `accepted` or `error`; an `error` reply is returned, not
   * thrown. Prefer the typed methods for the commands they cover.
   */
  async managementCommand(command: ManagementCommand, options: { timeoutMs?: number } = {}): Promise<ManagementReply> {
    const timeoutMs = checkMs('timeoutMs', options.timeoutMs)
    const n = this.#native
    const reply = await native(() => n.managementCommand(requestJson(command, { root: 'command' }), timeoutMs))
    return JSON.parse(reply) as ManagementReply
  }

  /** A client for chat requests over this engine's connection. */
  client(): Client {
    if (this.closed) {
      throw new EngineDiedError('this Engine was closed; call Engine.start() for a new one')
    }
    // The native session resolves every id a model was loaded under.
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
