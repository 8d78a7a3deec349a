// One benchmark scenario in its own process (its own engine, its own cache root).
// Usage: node --expose-gc bench/scenario.mjs <name>; prints one JSON object.
import { execFileSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const { Engine, wire, renderChat } = createRequire(import.meta.url)(path.join(root, 'dist', 'index.js'))
const rawSub = path.join(root, 'target', 'release', 'examples', 'raw_sub')

const name = process.argv[2]
const cacheRoot = process.env.ORCHARD_CACHE_ROOT
const modelDir = path.join(cacheRoot, 'm')
mkdirSync(modelDir, { recursive: true })
writeFileSync(path.join(modelDir, 'config.json'), JSON.stringify({ model_type: 'llama' }))
const user = [{ role: 'user', content: 'flood' }]
const flood = (n) => ({ maxTokens: n, stop: ['<never>'] })

async function withEngine(fn) {
  const engine = await Engine.start()
  try {
    await engine.loadModel(modelDir)
    return await fn(engine, engine.client())
  } finally {
    await engine.close()
  }
}

let lostFinals = 0

/**
 * Consume a stream of `expected` deltas. PUB/SUB drops what a subscriber cannot queue; the
 * SDK notices (`DELTAS_LOST`, or the lost-final watchdog) and the request fails. A stream
 * silent for 3 s is cancelled and counted in `lostFinals`. Returns the deltas received, how
 * many of the expected ones never arrived, and when the last one arrived.
 */
async function drain(stream, onDelta, expected = 0) {
  let last = performance.now()
  let received = 0
  const watchdog = setInterval(() => {
    if (performance.now() - last > 3000) void stream.cancel()
  }, 500)
  try {
    for await (const d of stream) {
      received++
      last = performance.now()
      if (onDelta) onDelta(d)
    }
  } catch (e) {
    if (e?.name === 'AbortError') lostFinals++
    else if (!/DELTAS_LOST/.test(`${e?.code ?? ''} ${e?.message ?? ''}`)) throw e
  } finally {
    clearInterval(watchdog)
  }
  return { received, lost: Math.max(0, expected - received), last }
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[s.length >> 1]
}

/** User + system CPU of this process (every thread: JS, the receive and routing threads), µs. */
function cpuSince(before) {
  const u = process.cpuUsage(before)
  return u.user + u.system
}

/** The raw Rust SUB consumer: `{deltas, finals, seconds, cpu_us}`. */
function runRaw(streams, deltas) {
  const out = execFileSync(rawSub, ['--model', modelDir, '--streams', String(streams), '--deltas', String(deltas)], {
    env: process.env,
    encoding: 'utf8',
  })
  return JSON.parse(out)
}

/** A 10-turn conversation with two tools. */
function conversation() {
  const tools = [
    {
      type: 'function',
      function: {
        name: 'get_weather',
        description: 'Current weather for a city',
        parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
      },
    },
    {
      type: 'function',
      function: {
        name: 'search_orchards',
        description: 'Find orchards near a place',
        parameters: {
          type: 'object',
          properties: { place: { type: 'string' }, radius_km: { type: 'number' } },
          required: ['place'],
        },
      },
    },
  ]
  const messages = [{ role: 'system', content: 'You are a helpful assistant for fruit growers.' }]
  for (let i = 0; i < 10; i++) {
    messages.push({
      role: 'user',
      content: `Question ${i}: which apple varieties grow well in a cool, wet climate near the coast?`,
    })
    messages.push({
      role: 'assistant',
      content: `Answer ${i}: Cox's Orange Pippin, Discovery and Katy do well there; plant on well-drained ground.`,
    })
  }
  messages.push({ role: 'user', content: 'And pears?' })
  return { tools, messages }
}

const REPS = 5

/**
 * CPU µs per delivered delta for `streams` concurrent streams of `per` deltas each, through
 * the SDK and through the raw Rust SUB consumer, alternating for REPS rounds (medians).
 */
async function deliveryCost(streams, per) {
  return withEngine(async (_e, client) => {
    await drain(client.chat(modelDir, user, flood(2_000))) // warm-up
    const js = []
    const raws = []
    const rates = []
    let lost = 0
    for (let i = 0; i < REPS; i++) {
      const cpu0 = process.cpuUsage()
      const t0 = performance.now()
      const runs = await Promise.all(
        Array.from({ length: streams }, () => drain(client.chat(modelDir, user, flood(per)), null, per)),
      )
      const received = runs.reduce((a, r) => a + r.received, 0)
      js.push(cpuSince(cpu0) / received)
      rates.push(received / ((Math.max(...runs.map((r) => r.last)) - t0) / 1000))
      lost += runs.reduce((a, r) => a + r.lost, 0)
      const raw = runRaw(streams, per)
      raws.push(raw.cpu_us / raw.deltas)
    }
    return { js: median(js), raw: median(raws), rate: median(rates), lost }
  })
}

const scenarios = {
  // CPU per delivered delta, one stream with the emulator publishing as fast as it can: the
  // SDK (JS thread + native threads) next to a raw Rust SUB consumer, alternating, 5 rounds.
  async stream() {
    const N = Number(process.env.BENCH_STREAM_DELTAS || 100_000)
    const r = await deliveryCost(1, N)
    return {
      cpu_us_per_delta_js_1: r.js,
      cpu_us_per_delta_raw_1: r.raw,
      stream_deltas_per_s_js: r.rate,
      deltas_lost_stream: r.lost,
      lost_finals: lostFinals,
    }
  },

  // The same with 64 concurrent streams.
  async batch64() {
    const N = Number(process.env.BENCH_BATCH_DELTAS || 100_000)
    const r = await deliveryCost(64, Math.ceil(N / 64))
    return {
      cpu_us_per_delta_js_64: r.js,
      cpu_us_per_delta_raw_64: r.raw,
      batch64_deltas_per_s_js: r.rate,
      deltas_lost_batch64: r.lost,
      lost_finals: lostFinals,
    }
  },

  // Publish → iterator latency at a paced 2,000 deltas/s (the emulator stamps each delta).
  async latency() {
    const N = Number(process.env.BENCH_LATENCY_DELTAS || 10_000)
    return withEngine(async (_e, client) => {
      const us = []
      const r = await drain(
        client.chat(modelDir, user, flood(N)),
        (d) => {
          const sent = d.content && BigInt(d.content.trim())
          if (sent) us.push(Number(process.hrtime.bigint() - sent) / 1000)
        },
        N,
      )
      const sample = us.slice(Math.min(200, us.length >> 2)).sort((a, b) => a - b)
      const q = (p) => sample[Math.min(sample.length - 1, Math.floor(p * sample.length))]
      return {
        samples: sample.length,
        deltas_lost_latency: r.lost,
        delivery_latency_p50_us: q(0.5),
        delivery_latency_p99_us: q(0.99),
      }
    })
  },

  // Render, render + encode, and encode of a 10-turn conversation with two tools (no engine):
  // CPU µs per call (`process.cpuUsage()`, so time spent waiting for a core on a shared machine
  // is not counted; on an idle machine it equals wall time for these synchronous calls), the
  // median of 5 timed batches.
  async render() {
    const { tools, messages } = conversation()
    const timed = (fn) => {
      for (let i = 0; i < 300; i++) fn()
      const per = []
      for (let rep = 0; rep < REPS; rep++) {
        const n = 500
        const before = process.cpuUsage()
        for (let i = 0; i < n; i++) fn()
        const used = process.cpuUsage(before)
        per.push((used.user + used.system) / n)
      }
      return median(per)
    }
    const out = {}
    for (const family of ['llama3', 'qwen3_5', 'gpt_oss']) {
      const config = { model_type: family }
      const input = { config, messages, tools }
      const frameInput = { config, messages, options: { tools, maxTokens: 256 } }
      try {
        renderChat(input)
        wire.buildChatFrame(frameInput)
      } catch (e) {
        out[`render_us_${family}`] = null
        out[`render_error_${family}`] = String(e.message).split('\n')[0]
        continue
      }
      out[`render_us_${family}`] = timed(() => renderChat(input))
      out[`render_encode_us_${family}`] = timed(() => wire.buildChatFrame(frameInput))
    }
    // Encode only: the llama3 request as the codec's vocabulary (prompt, sampling, tools).
    const request = wire.decodeRequest(
      wire.buildChatFrame({ config: { model_type: 'llama3' }, messages, options: { tools, maxTokens: 256 } }),
    )
    out.encode_us = timed(() => wire.encodeRequest(request))
    return out
  },

  // CPU used by a connected client that does nothing for 10 s.
  async idle() {
    return withEngine(async (_e, client) => {
      await client.chat(modelDir, [{ role: 'user', content: 'hi' }], { maxTokens: 4 })
      // Steady state: let start-up work settle (JIT, the emulator's fast first heartbeats, and
      // V8's memory reducer, which runs a round of GCs some 10 s after allocation stops).
      await new Promise((r) => setTimeout(r, 20_000))
      const before = process.cpuUsage()
      await new Promise((r) => setTimeout(r, 10_000))
      const used = process.cpuUsage(before)
      return { idle_cpu_ms_per_10s: (used.user + used.system) / 1000 }
    })
  },

  // Resident memory growth across 1,000,000 streamed deltas after warm-up.
  async rss() {
    const total = Number(process.env.BENCH_RSS_DELTAS || 1_000_000)
    return withEngine(async (_e, client) => {
      const gc = globalThis.gc ?? (() => undefined)
      // Warm-up until V8 has sized its young generation for this allocation rate (it grows
      // by ~16 MB during the first few hundred thousand deltas, then stays put).
      for (let i = 0; i < 3; i++) await drain(client.chat(modelDir, user, flood(100_000)))
      gc()
      const before = process.memoryUsage().rss
      let received = 0
      for (let sent = 0; sent < total; sent += 100_000)
        received += (await drain(client.chat(modelDir, user, flood(100_000)))).received
      gc()
      await new Promise((r) => setTimeout(r, 200))
      gc()
      const after = process.memoryUsage().rss
      const heap = process.memoryUsage()
      return {
        received,
        heap_total_mb: heap.heapTotal / 2 ** 20,
        rss_growth_mb_1m_deltas: (after - before) / (1024 * 1024),
      }
    })
  },

  // 1,000 concurrent streams all complete with every token.
  async concurrent1000() {
    return withEngine(async (_e, client) => {
      const results = await Promise.all(
        Array.from({ length: 1000 }, (_, i) =>
          client.chat(modelDir, [{ role: 'user', content: `stream ${i}` }], { maxTokens: 8, stop: ['<never>'] }),
        ),
      )
      const ok = results.every((r) => r.usage.completionTokens === 8 && r.finishReason === 'length')
      return { concurrent_streams_1000_ok: ok ? 1 : 0 }
    })
  },
}

const run = scenarios[name]
if (!run) {
  console.error(`unknown scenario ${name}; one of ${Object.keys(scenarios).join(', ')}`)
  process.exit(2)
}
process.stdout.write(`${JSON.stringify(await run())}\n`)
