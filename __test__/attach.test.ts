// Acceptance: four Node processes attach to and detach from the engine concurrently and
// repeatedly. At every moment at most one engine runs for the cache root, every two leases
// that overlap in time share one engine, and the engine exits after the last lease.
import { spawn } from 'node:child_process'
import { rmSync } from 'node:fs'
import path from 'node:path'

import { afterAll, expect, it } from 'vitest'

import { distDir, emulatorBinary, emulatorProcesses, tempCacheRoot } from './helpers'

const root = tempCacheRoot('attach')

afterAll(() => {
  rmSync(root, { recursive: true, force: true })
})

/** Engine processes of this cache root. */
const engines = (): number[] => emulatorProcesses(root)

const CHILD = `
const { Engine } = require(process.argv[1])
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
;(async () => {
  for (let i = 0; i < Number(process.argv[2]); i++) {
    const engine = await Engine.start({ startupTimeoutMs: 20000 })
    const t0 = Date.now()
    await sleep(Math.random() * 120)
    const t1 = Date.now()
    process.stdout.write(JSON.stringify({ pid: engine.pid, launched: engine.launched, t0, t1 }) + '\\n')
    await engine.close()
    await sleep(Math.random() < 0.3 ? 300 + Math.random() * 200 : Math.random() * 60)
  }
})().catch((e) => { console.error(e); process.exit(1) })
`

interface Lease {
  pid: number
  launched: boolean
  t0: number
  t1: number
}

it('4 processes attach and detach concurrently: one engine at a time, gone after the last lease', async () => {
  const env = {
    ...process.env,
    ORCHARD_CACHE_ROOT: root,
    ORCHARD_ENGINE_BINARY: emulatorBinary,
    PIE_EMULATOR_EXIT_GRACE_MS: '100',
    PIE_EMULATOR_TELEMETRY_MS: '200',
  }
  let maxSeen = 0
  const monitor = setInterval(() => {
    maxSeen = Math.max(maxSeen, engines().length)
  }, 15)
  const rounds = 8
  const children = Array.from({ length: 4 }, () => {
    const child = spawn(process.execPath, ['-e', CHILD, path.join(distDir, 'index.js'), String(rounds)], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    let err = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr.on('data', (d: Buffer) => (err += d.toString()))
    return new Promise<Lease[]>((resolve, reject) => {
      child.on('exit', (code) => {
        if (code !== 0) reject(new Error(`child exited ${code}: ${err}`))
        else
          resolve(
            out
              .trim()
              .split('\n')
              .map((l) => JSON.parse(l) as Lease),
          )
      })
    })
  })
  let leases: Lease[]
  try {
    leases = (await Promise.all(children)).flat()
  } finally {
    clearInterval(monitor)
  }
  expect(leases).toHaveLength(4 * rounds)
  expect(maxSeen).toBe(1)
  // Leases that overlap in time are on the same engine.
  for (const a of leases) {
    for (const b of leases) {
      if (a !== b && a.t0 < b.t1 && b.t0 < a.t1) expect(a.pid, JSON.stringify([a, b])).toBe(b.pid)
    }
  }
  expect(leases.some((l) => !l.launched)).toBe(true)
  // The engine exits by itself after the last lease.
  // The test's own timeout is the only bound: a fact to wait for, not a clock.
  while (engines().length > 0) await new Promise((r) => setTimeout(r, 50))
  expect(engines()).toEqual([])
}, 120_000)
