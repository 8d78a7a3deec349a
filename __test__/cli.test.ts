// The `orchard` CLI, compiled and run as a real process: exit codes, one-line errors,
// models pull/list/rm against a fake Hub, engine start/status/logs/stop with the emulator.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { rmSync } from 'node:fs'
import path from 'node:path'

import { afterAll, afterEach, describe, expect, it } from 'vitest'

import { Engine } from '../src-ts'
import { type FakeHub, fakeHub, tinyRepo } from './fetch-helpers'
import { distDir, emulatorBinary, makeModelDir, tempCacheRoot } from './helpers'

const root = tempCacheRoot('cli')
const env: NodeJS.ProcessEnv = {
  ...process.env,
  ORCHARD_CACHE_ROOT: path.join(root, 'cache'),
  ORCHARD_ENGINE_BINARY: emulatorBinary,
  HF_HUB_CACHE: path.join(root, 'hub'),
  HF_TOKEN: '',
  HOME: root,
}
let hub: FakeHub | undefined

afterEach(async () => {
  await hub?.close()
  hub = undefined
})
afterAll(() => {
  spawnSync(process.execPath, [path.join(distDir, 'cli.js'), 'engine', 'stop', '--timeout', '2'], { env })
  rmSync(root, { recursive: true, force: true })
})

/** Run the CLI asynchronously (the fake Hub lives in this process, so never spawnSync). */
function orchard(
  args: string[],
  extra: NodeJS.ProcessEnv = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [path.join(distDir, 'cli.js'), ...args], {
    env: { ...env, ...extra },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })))
}

describe('orchard CLI', () => {
  it('help and usage errors', async () => {
    const h = await orchard(['--help'])
    expect(h.code).toBe(0)
    expect(h.stdout).toContain('models pull')
    for (const cmd of [
      ['engine', 'start'],
      ['engine', 'stop'],
      ['engine', 'status'],
      ['engine', 'logs'],
      ['engine', 'install'],
      ['models', 'pull'],
      ['models', 'list'],
      ['models', 'rm'],
    ]) {
      const r = await orchard([...cmd, '--help'])
      expect(r.code, cmd.join(' ')).toBe(0)
      expect(r.stdout).toContain(`orchard ${cmd.join(' ')}`)
    }
    const bad = await orchard(['models', 'frobnicate'])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toMatch(/^orchard: unknown models command 'frobnicate'/)
    expect((await orchard(['models', 'pull', '--nope'])).code).toBe(2)
    // Installing on start is --install (the old --fetch is gone).
    expect((await orchard(['engine', 'start', '--help'])).stdout).toContain('--install')
    const old = await orchard(['engine', 'start', '--fetch'])
    expect(old.code).toBe(2)
    expect(old.stderr).toContain('--fetch')
  })

  it('models pull, list, rm; errors are one line with a non-zero exit', async () => {
    hub = await fakeHub([tinyRepo('Org/Tiny')])
    const pulled = await orchard(['models', 'pull', 'org/tiny'], { HF_ENDPOINT: hub.url })
    expect(pulled.stderr).toContain('100%')
    expect(pulled.code).toBe(0)
    expect(pulled.stdout.trim()).toMatch(/models--Org--Tiny\/snapshots\/[0-9a-f]{40}$/)

    const list = await orchard(['models', 'list'])
    expect(list.code).toBe(0)
    expect(list.stdout).toContain('Org/Tiny')
    const json = JSON.parse((await orchard(['models', 'list', '--json'])).stdout) as Array<{ id: string }>
    expect(json.map((m) => m.id)).toEqual(['Org/Tiny'])

    expect((await orchard(['models', 'rm', 'Org/Tiny'])).code).toBe(0)
    const again = await orchard(['models', 'rm', 'Org/Tiny'])
    expect(again.code).toBe(1)
    expect(again.stderr.trim().split('\n')).toHaveLength(1)
    expect(again.stderr).toMatch(/^orchard: model 'Org\/Tiny' is not in the cache/)

    const missing = await orchard(['models', 'pull', 'Org/Missing'], { HF_ENDPOINT: hub.url })
    expect(missing.code).toBe(1)
    expect(missing.stderr).toMatch(/^orchard: model 'Org\/Missing' was not found on the Hub.*\[MODEL_NOT_FOUND\]\n$/)

    hub.token = 'hf_x'
    const denied = await orchard(['models', 'pull', 'Org/Tiny'], { HF_ENDPOINT: hub.url })
    expect(denied.code).toBe(1)
    expect(denied.stderr.trim().split('\n')).toHaveLength(1)
    expect(denied.stderr).toContain('set HF_TOKEN')
    expect((await orchard(['models', 'pull', 'Org/Tiny'], { HF_ENDPOINT: hub.url, HF_TOKEN: 'hf_x' })).code).toBe(0)
  })

  it('engine start holds the engine; status, logs and stop report it', async () => {
    expect((await orchard(['engine', 'status'])).code).toBe(3)
    const start: ChildProcess = spawn(process.execPath, [path.join(distDir, 'cli.js'), 'engine', 'start'], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    const line = await new Promise<string>((resolve, reject) => {
      let out = ''
      start.stdout!.on('data', (d: Buffer) => {
        out += d.toString()
        if (out.includes('\n')) resolve(out)
      })
      start.on('exit', (code) => reject(new Error(`engine start exited ${code}`)))
    })
    const pid = Number(/engine pid (\d+) \(launched\)/.exec(line)?.[1])
    expect(pid).toBeGreaterThan(0)

    const status = await orchard(['engine', 'status', '--json'])
    expect(status.code).toBe(0)
    expect(JSON.parse(status.stdout)).toMatchObject({ running: true, pid })
    const logs = await orchard(['engine', 'logs', '-n', '5'])
    expect(logs.code).toBe(0)
    const logLines = logs.stdout.trimEnd().split('\n')
    expect(logLines.length).toBeGreaterThan(0)
    expect(logLines.length).toBeLessThanOrEqual(5)
    expect(logs.stdout).toMatch(/\S/)

    const exited = new Promise<number | null>((r) => start.on('exit', (code) => r(code)))
    start.kill('SIGINT')
    expect(await exited).toBe(0)
    // The last lease is gone: the engine exits by itself.
    // Each status call starts a process, which paces the loop; the test timeout bounds it.
    while ((await orchard(['engine', 'status'])).code === 0) {}
    expect((await orchard(['engine', 'status'])).code).toBe(3)
    const stop = await orchard(['engine', 'stop'])
    expect(stop.code).toBe(0)
    expect(stop.stdout).toContain('no engine running')
  })

  it('engine start without a binary fails with one line and exit 1', async () => {
    const r = await orchard(['engine', 'start'], {
      ORCHARD_ENGINE_BINARY: path.join(root, 'nope'),
      ORCHARD_CACHE_ROOT: path.join(root, 'c2'),
    })
    expect(r.code).toBe(1)
    expect(r.stderr.trim().split('\n')).toHaveLength(1)
    expect(r.stderr).toMatch(/^orchard: no engine binary found.*\[ENGINE_NOT_FOUND\]/)
  })
})

describe('orchard serve and orchard chat', () => {
  it('help for both commands', async () => {
    for (const cmd of ['serve', 'chat']) {
      const r = await orchard([cmd, '--help'])
      expect(r.code, cmd).toBe(0)
      expect(r.stdout).toContain(`usage: orchard ${cmd}`)
    }
    expect((await orchard(['serve', '--port', 'x'])).code).toBe(2)
  })

  it('chat with a prompt streams the answer the library gives for that seed', async () => {
    const model = makeModelDir(path.join(root, 'chat'))
    const r = await orchard([
      'chat',
      '--model',
      model,
      '--seed',
      '3',
      '--max-tokens',
      '12',
      'Tell me about the orchard.',
    ])
    expect(r.code).toBe(0)
    const engine = await Engine.start({ cacheRoot: env.ORCHARD_CACHE_ROOT, binary: emulatorBinary })
    try {
      await engine.loadModel(model)
      const expected = await engine
        .client()
        .chat(model, [{ role: 'user', content: 'Tell me about the orchard.' }], { seed: 3, maxTokens: 12 })
      expect(r.stdout).toBe(`${expected.text}\n`)
    } finally {
      await engine.close()
    }
  })

  it('serve loads the model, answers the OpenAI API, and stops on SIGTERM', async () => {
    const model = makeModelDir(path.join(root, 'serve'))
    const child = spawn(process.execPath, [path.join(distDir, 'cli.js'), 'serve', '--port', '0', '--model', model], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stderr = ''
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)))
    const base = await new Promise<string>((resolve, reject) => {
      let out = ''
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString()
        const m = /serving (http:\/\/127\.0\.0\.1:\d+\/v1)/.exec(out)
        if (m) resolve(m[1]!)
      })
      child.on('exit', () => reject(new Error(`serve exited early: ${stderr}`)))
    })
    const models = (await (await fetch(`${base}/models`)).json()) as { data: Array<{ id: string }> }
    expect(models.data.map((m) => m.id)).toEqual([model])
    const chat = await fetch(`${base}/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 }),
    })
    expect(chat.status).toBe(200)
    expect(((await chat.json()) as { object: string }).object).toBe('chat.completion')
    // Loopback by default: no warning about exposure.
    expect(stderr).not.toContain('warning')
    child.kill('SIGTERM')
    expect(await exited).toBe(0)
    expect(stderr).toContain('shutting down')
  })
})
