import { execFileSync } from 'node:child_process'
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import { afterAll, beforeAll } from 'vitest'

import type { Client } from '../src-ts'
import { Engine } from '../src-ts'
import { emulatorPath } from '../src-ts/testing'

export const repoRoot = path.resolve(__dirname, '..')
/** Reference data: the reference client's prompts and wire frames, and our recorded divergences. */
export const fixturesDir = path.join(__dirname, 'fixtures')
/** The emulator the suites launch (the source build; orchard-ts/testing finds it the same way). */
export const emulatorBinary = emulatorPath()
/** The built package (`npm test` rebuilds it when src-ts is newer), for child processes. */
export const distDir = path.join(repoRoot, 'dist')

export function readFixtureText(name: string): string {
  return readFileSync(path.join(fixturesDir, name), 'utf8')
}

export function readFixture<T>(name: string): T {
  return JSON.parse(readFixtureText(name)) as T
}

/**
 * A JSON value where every number keeps its written kind, so `1.0` and `1` differ.
 * (JSON.parse folds them; the wire protocol does not.)
 */
export type Tagged =
  | null
  | boolean
  | string
  | { int: string }
  | { float: number }
  | Tagged[]
  | { obj: Array<[string, Tagged]> }

export function parseTagged(text: string): Tagged {
  let i = 0
  const ws = () => {
    while (i < text.length && ' \t\n\r'.includes(text[i]!)) i++
  }
  const value = (): Tagged => {
    ws()
    const c = text[i]
    if (c === '{') {
      i++
      const obj: Array<[string, Tagged]> = []
      ws()
      if (text[i] === '}') {
        i++
        return { obj }
      }
      for (;;) {
        ws()
        const k = value() as string
        ws()
        i++ // ':'
        obj.push([k, value()])
        ws()
        if (text[i++] === '}') return { obj }
      }
    }
    if (c === '[') {
      i++
      const arr: Tagged[] = []
      ws()
      if (text[i] === ']') {
        i++
        return arr
      }
      for (;;) {
        arr.push(value())
        ws()
        if (text[i++] === ']') return arr
      }
    }
    if (c === '"') {
      const start = i
      i++
      while (text[i] !== '"') i += text[i] === '\\' ? 2 : 1
      i++
      return JSON.parse(text.slice(start, i)) as string
    }
    const m = /^-?\d+(\.\d+)?([eE][+-]?\d+)?|^true|^false|^null/.exec(text.slice(i))
    if (!m) throw new Error(`bad JSON at ${i}`)
    i += m[0].length
    if (m[0] === 'true') return true
    if (m[0] === 'false') return false
    if (m[0] === 'null') return null
    return m[1] || m[2] ? { float: Number(m[0]) } : { int: BigInt(m[0]).toString() }
  }
  return value()
}

// Process facts for the suites that watch the engine process. Linux has /proc; macOS has no
// /proc, and its `ps` prints an executable's path (`comm`) and, with -E, a process's environment.
const hasProc = existsSync('/proc/self/environ')

/** The executable `pid` runs, symlinks resolved: the /proc link where there is one, else the path `ps` reports. */
export function processExecutable(pid: number): string {
  if (hasProc) return readlinkSync(`/proc/${pid}/exe`)
  return realpathSync(execFileSync('ps', ['-o', 'comm=', '-p', String(pid)], { encoding: 'utf8' }).trim())
}

/**
 * The live (not zombie) emulator processes of `cacheRoot`: the launcher starts `emulatorBinary`
 * without arguments and with the resolved cache root as ORCHARD_CACHE_ROOT in its environment.
 */
export function emulatorProcesses(cacheRoot: string): number[] {
  const tag = `ORCHARD_CACHE_ROOT=${realpathSync(cacheRoot)}`
  const out: number[] = []
  if (hasProc) {
    const binary = realpathSync(emulatorBinary)
    for (const name of readdirSync('/proc')) {
      if (!/^\d+$/.test(name)) continue
      try {
        if (readlinkSync(`/proc/${name}/exe`) !== binary) continue
        if (/^State:\s+Z/m.test(readFileSync(`/proc/${name}/status`, 'utf8'))) continue
        if (!readFileSync(`/proc/${name}/environ`, 'utf8').split('\0').includes(tag)) continue
        out.push(Number(name))
      } catch {
        // gone
      }
    }
    return out
  }
  // One line per process: pid, state, then the command line (the binary as launched) and the environment.
  const ps = execFileSync('ps', ['-A', '-E', '-ww', '-o', 'pid=,stat=,command='], { encoding: 'utf8' })
  for (const line of ps.split('\n')) {
    const m = /^\s*(\d+)\s+(\S+)\s+(.*)$/.exec(line)
    if (!m || m[2]!.startsWith('Z') || !m[3]!.startsWith(`${emulatorBinary} `)) continue
    if (m[3]!.slice(emulatorBinary.length).split(' ').includes(tag)) out.push(Number(m[1]))
  }
  return out
}

/** A short temporary cache root (Unix socket paths are limited to ~104 bytes). */
export function tempCacheRoot(tag: string): string {
  return mkdtempSync(path.join(os.tmpdir(), `ot-${tag}-`))
}

/** A llama config: a family without native reasoning. */
export const LLAMA_CONFIG = { model_type: 'llama', architectures: ['LlamaForCausalLM'] }

/** A Qwen 3.5 config: native `<think>` reasoning (on unless a request turns it off), XML tool calls. */
export const QWEN_CONFIG = { model_type: 'qwen3_5', architectures: ['Qwen3_5ForCausalLM'] }

/**
 * A model directory the emulator accepts: a config.json (a llama model unless `config` says
 * otherwise; its `model_type` picks the prompt family).
 */
export function makeModelDir(
  root: string,
  name = 'tiny-llama',
  config: Record<string, unknown> = LLAMA_CONFIG,
): string {
  const dir = path.join(root, 'models', name)
  mkdirSync(dir, { recursive: true })
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config))
  return dir
}

export interface EmulatorEngine {
  engine: Engine
  client: Client
  cacheRoot: string
  /** The llama model directory, loaded. */
  model: string
  /** The qwen3_5 model directory (native reasoning), loaded when asked for. */
  thinker: string
}

/**
 * One emulator for this test file, on its own cache root: started (with `env` set) and a
 * llama model loaded before the file's tests, stopped and removed after them. `ready`
 * receives it once it is up. `thinker: true` also loads a qwen3_5 model.
 */
export function useEmulator(
  tag: string,
  options: { env?: Record<string, string>; thinker?: boolean },
  ready: (e: EmulatorEngine) => void,
): void {
  const cacheRoot = tempCacheRoot(tag)
  let engine: Engine | undefined
  beforeAll(async () => {
    Object.assign(process.env, { ORCHARD_CACHE_ROOT: cacheRoot, ORCHARD_ENGINE_BINARY: emulatorBinary }, options.env)
    const model = makeModelDir(cacheRoot)
    const thinker = options.thinker ? makeModelDir(cacheRoot, 'tiny-qwen', QWEN_CONFIG) : ''
    engine = await Engine.start({ startupTimeoutMs: 30_000 })
    await engine.loadModel(model)
    if (thinker) await engine.loadModel(thinker)
    ready({ engine, client: engine.client(), cacheRoot, model, thinker })
  })
  afterAll(async () => {
    await engine?.close()
    await Engine.stop({ graceMs: 2_000 }).catch(() => null)
    rmSync(cacheRoot, { recursive: true, force: true })
  })
}
