/**
 * `orchard-ts/testing`: pie-emulator, the protocol-faithful engine, for your own test suites
 * (and on platforms where PIE does not run, for trying orchard-ts at all).
 *
 * ```ts
 * import { startTestEngine } from 'orchard-ts/testing'
 *
 * const t = await startTestEngine()            // a private emulator with a llama3 model loaded
 * const { text } = await t.client.chat(t.model, [{ role: 'user', content: 'Hi' }])
 * await t.close()
 * ```
 *
 * Every test engine lives in its own temporary cache root (its `engine.pid`, lock, log and
 * IPC sockets), so it never attaches to a real engine or to another test's.
 */

import { accessSync, constants, existsSync } from 'node:fs'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'

import type { Client } from './client'
import { Engine } from './engine'
import { EngineNotFoundError, InvalidRequestError, nativeSync } from './errors'
import { engineBinaryName } from './native'
import { currentPlatform, isPrebuilt, packageRoot, packageVersion, platformPackageName } from './platform'

function executable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK)
    return true
  } catch {
    return false
  }
}

/**
 * The path of the pie-emulator binary: the one built in a source checkout
 * (`target/release/`), else the one in this platform's `orchard-ts-<platform>` package.
 * Throws {@link EngineNotFoundError} naming that package when it is not installed.
 */
export function emulatorPath(): string {
  // pie-emulator is built under the engine binary's name, which the native core owns.
  const name = nativeSync(engineBinaryName)
  const built = path.join(packageRoot, 'target', 'release', name)
  if (executable(built)) return built
  const platform = currentPlatform()
  const pkg = platformPackageName(platform)
  let bundled: string | undefined
  try {
    bundled = path.join(path.dirname(require.resolve(`${pkg}/package.json`)), name)
  } catch {
    // not installed: reported below
  }
  if (bundled !== undefined && executable(bundled)) return bundled
  if (!isPrebuilt(platform)) {
    throw new EngineNotFoundError(
      `pie-emulator is not prebuilt for ${platform}; build it from an orchard-ts checkout with \`npm run build:emulator\` ` +
        `and pass its path (target/release/${name}) as the binary option.`,
    )
  }
  throw new EngineNotFoundError(
    bundled !== undefined && existsSync(bundled)
      ? `${bundled} is not executable; reinstall ${pkg}@${packageVersion()}.`
      : `pie-emulator comes with the package ${pkg}, which is not installed; run \`npm install ${pkg}@${packageVersion()}\`.`,
  )
}

export interface TestModelOptions {
  /** The model-specs family whose prompts the model renders (default `llama3`). */
  family?: string
  /** Where to write the model (created if missing). Default: a new temporary directory. */
  dir?: string
}

/**
 * Write a model directory the emulator loads: a `config.json` whose `model_type` selects
 * `family`. Resolves to the directory, ready for `engine.loadModel`.
 */
export async function createTestModel(options: TestModelOptions = {}): Promise<string> {
  const family = options.family ?? 'llama3'
  if (typeof family !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(family)) {
    throw new InvalidRequestError(
      `family: expected a model-specs family name such as 'llama3', got ${JSON.stringify(family)}`,
    )
  }
  const dir = options.dir ?? path.join(await mkdtemp(path.join(os.tmpdir(), 'orchard-model-')), family)
  await mkdir(dir, { recursive: true })
  await writeFile(path.join(dir, 'config.json'), `${JSON.stringify({ model_type: family })}\n`)
  return dir
}

export interface TestEngineOptions {
  /** The family of the loaded test model (default `llama3`). */
  family?: string
  /** How long the emulator may take to start (default 60 000 ms). */
  startupTimeoutMs?: number
}

/** A running test engine. `close()` (or `await using`) stops it and removes its files. */
export interface TestEngine {
  engine: Engine
  client: Client
  /** The loaded test model's id (its directory). */
  model: string
  /** The engine's private cache root. */
  cacheRoot: string
  close(): Promise<void>
  [Symbol.asyncDispose](): Promise<void>
}

/**
 * Start a private pie-emulator in a fresh temporary cache root, load a test model and
 * resolve to `{ engine, client, model, close }`.
 */
export async function startTestEngine(options: TestEngineOptions = {}): Promise<TestEngine> {
  const binary = emulatorPath()
  // Short on purpose: Unix socket paths are limited to 103 bytes.
  const cacheRoot = await mkdtemp(path.join(os.tmpdir(), 'orchard-t-'))
  let engine: Engine | undefined
  const close = async (): Promise<void> => {
    try {
      await engine?.close()
      await Engine.stop({ cacheRoot, graceMs: 2_000 })
    } finally {
      await rm(cacheRoot, { recursive: true, force: true })
    }
  }
  try {
    const model = await createTestModel({
      family: options.family,
      dir: path.join(cacheRoot, 'models', options.family ?? 'llama3'),
    })
    engine = await Engine.start({ binary, cacheRoot, startupTimeoutMs: options.startupTimeoutMs })
    await engine.loadModel(model)
    let closing: Promise<void> | undefined
    const closeOnce = () => (closing ??= close())
    return { engine, client: engine.client(), model, cacheRoot, close: closeOnce, [Symbol.asyncDispose]: closeOnce }
  } catch (e) {
    await close().catch(() => undefined)
    throw e
  }
}
