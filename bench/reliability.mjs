// Load and fault probes against pie-emulator (not part of `npm test`: they take minutes).
//
//   node bench/reliability.mjs streams [--count 2500] [--min 20] [--max 200] [--pin]
//       that many concurrent streams of varied length (seeded); each must equal its reference
//       text (the same request run alone beforehand) or fail with a typed error; none may hang.
//       --pin runs client and engine on one core (taskset -c 0); --token-delay is the
//       emulator's time between steps (ms, default 20: every sequence gets a token per step).
//   node bench/reliability.mjs churn [--procs 8] [--cycles 50]
//       processes that each Engine.start() and close() in a loop on one cache root; counts
//       successes and the most engines alive at once.
//   node bench/reliability.mjs frozen
//       30 flowing streams and 40 with stallTimeoutMs 2000; the engine is SIGSTOPped; 15 leave
//       their loop, 15 are cancelled; how long each takes, and when each stall fires.
//   node bench/reliability.mjs soak [--seconds 600] [--rate 200]
//       requests at a steady rate; errors, heap and RSS over time.
//
// Prints one JSON object; exits 1 when the probe's acceptance is not met.
import { execFileSync, spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'

import { buildIfNeeded, emulatorBinary, root } from '../scripts/build-if-needed.mjs'

const require = createRequire(import.meta.url)
const [probe, ...rest] = process.argv.slice(2)
const { values: opts } = parseArgs({
  args: rest,
  options: {
    count: { type: 'string', default: '2500' },
    min: { type: 'string', default: '20' },
    max: { type: 'string', default: '200' },
    pin: { type: 'boolean', default: false },
    procs: { type: 'string', default: '8' },
    cycles: { type: 'string', default: '50' },
    seconds: { type: 'string', default: '600' },
    rate: { type: 'string', default: '200' },
    'token-delay': { type: 'string', default: '20' },
  },
})

if (opts.pin && !process.env.ORCHARD_PINNED) {
  buildIfNeeded()
  const r = spawnSyncInherit('taskset', ['-c', '0', process.execPath, ...process.argv.slice(1)], {
    ...process.env,
    ORCHARD_PINNED: '1',
  })
  process.exit(r)
}

function spawnSyncInherit(cmd, args, env) {
  try {
    execFileSync(cmd, args, { stdio: 'inherit', env })
    return 0
  } catch (e) {
    return e.status ?? 1
  }
}

if (!process.env.ORCHARD_PINNED) buildIfNeeded()
const { Engine } = require(path.join(root, 'dist', 'index.js'))

const messages = (i) => [{ role: 'user', content: `Question ${i}: tell me about orchards.` }]

async function withEngine(env, fn) {
  const cacheRoot = mkdtempSync(path.join(os.tmpdir(), 'orchard-probe-'))
  Object.assign(process.env, env)
  const model = path.join(cacheRoot, 'models', 'llama')
  mkdirSync(model, { recursive: true })
  writeFileSync(path.join(model, 'config.json'), JSON.stringify({ model_type: 'llama3' }))
  const engine = await Engine.start({ binary: emulatorBinary, cacheRoot })
  try {
    await engine.loadModel(model)
    return await fn(engine, model, cacheRoot)
  } finally {
    await engine.close()
    await Engine.stop({ cacheRoot }).catch(() => null)
    rmSync(cacheRoot, { recursive: true, force: true })
  }
}

async function streams() {
  const count = Number(opts.count)
  const min = Number(opts.min)
  const span = Number(opts.max) - min + 1
  const request = (i) => ({ maxTokens: min + ((i * 7919) % span), seed: i, stop: ['<never>'] })
  return withEngine({ PIE_EMULATOR_TOKEN_DELAY_MS: opts['token-delay'] }, async (engine, model) => {
    const client = engine.client()
    // References: each request alone (50 at a time, far from any overload).
    const reference = new Array(count)
    for (let start = 0; start < count; start += 50) {
      await Promise.all(
        Array.from({ length: Math.min(50, count - start) }, async (_, k) => {
          const i = start + k
          reference[i] = (await client.chat(model, messages(i), request(i))).text
        }),
      )
    }
    const started = performance.now()
    const outcomes = await Promise.all(
      Array.from({ length: count }, async (_, i) => {
        let text = ''
        try {
          for await (const d of client.chat(model, messages(i), request(i))) text += d.text ?? ''
          return text === reference[i] ? 'exact' : 'wrong'
        } catch (e) {
          return e?.code ? `error:${e.code}` : `untyped:${e?.message ?? e}`
        }
      }),
    )
    const tally = {}
    for (const o of outcomes) tally[o] = (tally[o] ?? 0) + 1
    const exact = tally.exact ?? 0
    const untyped = Object.keys(tally).filter((k) => k.startsWith('untyped')).length
    return {
      probe: 'streams',
      pinned: Boolean(process.env.ORCHARD_PINNED),
      count,
      seconds: Number(((performance.now() - started) / 1000).toFixed(1)),
      outcomes: tally,
      complete_pct: Number(((100 * exact) / count).toFixed(2)),
      ok: !tally.wrong && untyped === 0 && exact / count >= 0.99,
    }
  })
}

async function churn() {
  const procs = Number(opts.procs)
  const cycles = Number(opts.cycles)
  const cacheRoot = mkdtempSync(path.join(os.tmpdir(), 'orchard-churn-'))
  const child = `
    const { Engine } = require(${JSON.stringify(path.join(root, 'dist', 'index.js'))})
    ;(async () => {
      let ok = 0
      const errors = []
      for (let i = 0; i < ${cycles}; i++) {
        try {
          const e = await Engine.start({ binary: ${JSON.stringify(emulatorBinary)}, cacheRoot: ${JSON.stringify(cacheRoot)} })
          process.stdout.write('pid ' + e.pid + '\\n')
          await e.close()
          ok++
        } catch (err) { errors.push((err.code ?? '') + ' ' + err.message) }
      }
      process.stdout.write(JSON.stringify({ ok, errors }) + '\\n')
    })()`
  const pids = new Set()
  // How many engines of this cache root are alive at once, sampled from /proc (Linux).
  let mostAlive = 0
  const sampler = setInterval(() => {
    let alive = 0
    for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
      try {
        if (
          readFileSync(`/proc/${pid}/environ`, 'latin1').includes(`ORCHARD_CACHE_ROOT=${cacheRoot}\0`) &&
          readFileSync(`/proc/${pid}/stat`, 'latin1').split(') ')[1]?.[0] !== 'Z'
        )
          alive++
      } catch {
        /* gone meanwhile */
      }
    }
    mostAlive = Math.max(mostAlive, alive)
  }, 20)
  const results = await Promise.all(
    Array.from(
      { length: procs },
      () =>
        new Promise((resolve) => {
          const p = spawn(process.execPath, ['-e', child], {
            env: { ...process.env, PIE_EMULATOR_EXIT_GRACE_MS: '50' },
            stdio: ['ignore', 'pipe', 'inherit'],
          })
          let out = ''
          p.stdout.on('data', (b) => (out += b))
          p.on('exit', () => {
            for (const m of out.matchAll(/^pid (\d+)$/gm)) pids.add(Number(m[1]))
            const last = out.trim().split('\n').at(-1)
            resolve(last?.startsWith('{') ? JSON.parse(last) : { ok: 0, errors: ['child crashed'] })
          })
        }),
    ),
  )
  clearInterval(sampler)
  await Engine.stop({ cacheRoot }).catch(() => null)
  rmSync(cacheRoot, { recursive: true, force: true })
  const ok = results.reduce((n, r) => n + r.ok, 0)
  const errors = results.flatMap((r) => r.errors)
  return {
    probe: 'churn',
    procs,
    cycles,
    succeeded: ok,
    of: procs * cycles,
    engines_launched: pids.size,
    most_engines_alive_at_once: mostAlive,
    errors: errors.slice(0, 10),
    ok: ok === procs * cycles && mostAlive <= 1,
  }
}

async function frozen() {
  return withEngine({ PIE_EMULATOR_TOKEN_DELAY_MS: '5' }, async (engine, model) => {
    const client = engine.client()
    const vocab = (await engine.managementCommand({ type: 'emulator_vocab' })).data.emulator_vocab
    const forever = { maxTokens: 100_000, logitBias: { [vocab.eot_token_id]: -100 } }
    const flowing = Array.from({ length: 30 }, (_, i) => client.chat(model, messages(i), { ...forever, seed: i }))
    const stalling = Array.from({ length: 40 }, (_, i) =>
      client.chat(model, messages(i), { ...forever, seed: 100 + i, stallTimeoutMs: 2000 }),
    )
    const its = flowing.map((s) => s[Symbol.asyncIterator]())
    const stallIts = stalling.map((s) => s[Symbol.asyncIterator]())
    await Promise.all([...its, ...stallIts].map((it) => it.next()))
    process.kill(engine.pid, 'SIGSTOP')
    const timed = async (fn) => {
      const t0 = performance.now()
      await fn()
      return performance.now() - t0
    }
    try {
      const breakMs = await Promise.all(its.slice(0, 15).map((it) => timed(() => it.return())))
      const cancelMs = await Promise.all(flowing.slice(15).map((s) => timed(() => s.cancel())))
      const t0 = performance.now()
      const stalls = await Promise.all(
        stallIts.map(async (it) => {
          try {
            while (!(await it.next()).done) {
              /* the engine is frozen: nothing comes */
            }
            return { ms: performance.now() - t0, error: null }
          } catch (e) {
            return { ms: performance.now() - t0, error: e?.code ?? 'untyped' }
          }
        }),
      )
      const max = (xs) => Number(Math.max(...xs).toFixed(1))
      const stallMax = max(stalls.map((s) => s.ms))
      return {
        probe: 'frozen',
        break_max_ms: max(breakMs),
        cancel_max_ms: max(cancelMs),
        stall_timeout_ms: 2000,
        stall_fired_max_ms: stallMax,
        stall_errors: [...new Set(stalls.map((s) => s.error))],
        ok: max(breakMs) <= 50 && max(cancelMs) <= 50 && stallMax <= 2500 && stalls.every((s) => s.error === 'TIMEOUT'),
      }
    } finally {
      process.kill(engine.pid, 'SIGCONT')
    }
  })
}

async function soak() {
  const seconds = Number(opts.seconds)
  const rate = Number(opts.rate)
  return withEngine({ PIE_EMULATOR_TOKEN_DELAY_MS: '5' }, async (engine, model) => {
    const client = engine.client()
    const samples = []
    let sent = 0
    let done = 0
    const errors = {}
    const start = performance.now()
    const inflight = new Set()
    await new Promise((resolve) => {
      const timer = setInterval(() => {
        const elapsed = (performance.now() - start) / 1000
        if (elapsed >= seconds) {
          clearInterval(timer)
          resolve()
          return
        }
        const due = Math.floor(elapsed * rate) - sent
        for (let k = 0; k < due; k++) {
          const i = sent++
          const p = Promise.resolve(client.chat(model, messages(i), { maxTokens: 16, seed: i }))
            .then(
              () => done++,
              (e) => (errors[e?.code ?? 'untyped'] = (errors[e?.code ?? 'untyped'] ?? 0) + 1),
            )
            .finally(() => inflight.delete(p))
          inflight.add(p)
        }
        if (sent % (rate * 10) < due) {
          global.gc?.()
          const m = process.memoryUsage()
          samples.push({
            t: Math.round(elapsed),
            heap_mb: Number((m.heapUsed / 1e6).toFixed(1)),
            rss_mb: Number((m.rss / 1e6).toFixed(1)),
          })
        }
      }, 5)
    })
    await Promise.all(inflight)
    // Heap between collections is noisy: compare the medians of the first and last minute.
    const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0
    const heaps = samples.slice(1).map((s) => s.heap_mb)
    const heapGrowth = heaps.length > 1 ? median(heaps.slice(-6)) - median(heaps.slice(0, 6)) : 0
    return {
      probe: 'soak',
      seconds,
      rate,
      sent,
      done,
      errors,
      samples,
      heap_growth_mb: Number(heapGrowth.toFixed(1)),
      ok: Object.keys(errors).length === 0 && done === sent && heapGrowth < 20,
    }
  })
}

const probes = { streams, churn, frozen, soak }
if (!probes[probe]) {
  console.error('usage: node bench/reliability.mjs streams|churn|frozen|soak [options] (see the top of the file)')
  process.exit(2)
}
const result = await probes[probe]()
console.log(JSON.stringify(result, null, 2))
process.exitCode = result.ok ? 0 : 1
