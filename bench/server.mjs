// `node bench/server.mjs [--json]`: the cost of orchard-ts/server. The same requests go
// through the HTTP server (fetch on loopback) and straight through `Client`, in one run
// against one emulator: requests per second (non-streamed, concurrent) and time to the
// first answer token (streamed, one at a time). Needs a built dist/ (npm run build:ts).
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const require = createRequire(import.meta.url)
const { Engine } = require(path.join(root, 'dist', 'index.js'))
const { createServer } = require(path.join(root, 'dist', 'server', 'index.js'))

const asJson = process.argv.includes('--json')
const log = (...a) => console.error(...a)

const REQUESTS = 400
const CONCURRENCY = 16
const TTFB_ROUNDS = 100
const MAX_TOKENS = 16

const cacheRoot = mkdtempSync(path.join(os.tmpdir(), 'ob-srv-'))
process.env.ORCHARD_CACHE_ROOT = cacheRoot
process.env.ORCHARD_ENGINE_BINARY ||= path.join(root, 'target', 'release', 'proxy_inference_engine')
const model = path.join(cacheRoot, 'm')
mkdirSync(model, { recursive: true })
writeFileSync(path.join(model, 'config.json'), JSON.stringify({ model_type: 'llama' }))

const messages = (i) => [{ role: 'user', content: `Question ${i}: tell me about the orchard.` }]
const percentile = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]

/** Run `one(i)` for i < n with `c` at a time; requests per second. */
async function throughput(n, c, one) {
  let next = 0
  const start = performance.now()
  await Promise.all(
    Array.from({ length: c }, async () => {
      while (next < n) await one(next++)
    }),
  )
  return (n * 1000) / (performance.now() - start)
}

const engine = await Engine.start()
const server = createServer({ engine, models: [model] })
try {
  await engine.loadModel(model)
  const client = engine.client()
  const { url } = await server.listen({ host: '127.0.0.1', port: 0 })
  const post = (body) =>
    fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model, max_tokens: MAX_TOKENS, ...body }),
    })

  const direct = async (i) => {
    await client.chat(model, messages(i), { seed: i, maxTokens: MAX_TOKENS })
  }
  const viaServer = async (i) => {
    const res = await post({ messages: messages(i), seed: i })
    if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${await res.text()}`)
    await res.json()
  }

  /** Milliseconds from sending to the first answer text. */
  const firstTokenDirect = async (i) => {
    const start = performance.now()
    let at = null
    for await (const d of client.chat(model, messages(i), { seed: i, maxTokens: MAX_TOKENS }))
      if (at === null && d.text) at = performance.now()
    return at - start
  }
  const firstTokenServer = async (i) => {
    const start = performance.now()
    const res = await post({ messages: messages(i), seed: i, stream: true })
    const decoder = new TextDecoder()
    let at = null
    let seen = ''
    for await (const bytes of res.body) {
      if (at === null) {
        seen += decoder.decode(bytes, { stream: true })
        if (seen.includes('"content":"') && /"content":"[^"]/.test(seen)) at = performance.now()
      }
    }
    return at - start
  }

  log('bench server: warm-up ...')
  await throughput(64, CONCURRENCY, direct)
  await throughput(64, CONCURRENCY, viaServer)

  log('bench server: requests/s ...')
  // Alternate the two, twice, and keep each one's best run.
  const rps = { direct: 0, server: 0 }
  for (let round = 0; round < 2; round++) {
    rps.direct = Math.max(rps.direct, await throughput(REQUESTS, CONCURRENCY, direct))
    rps.server = Math.max(rps.server, await throughput(REQUESTS, CONCURRENCY, viaServer))
  }

  log('bench server: time to first token ...')
  const ttfb = { direct: [], server: [] }
  for (let i = 0; i < TTFB_ROUNDS; i++) {
    ttfb.direct.push(await firstTokenDirect(i))
    ttfb.server.push(await firstTokenServer(i))
  }

  const result = {
    server_requests_per_s: Math.round(rps.server),
    direct_requests_per_s: Math.round(rps.direct),
    server_rps_ratio: Number((rps.server / rps.direct).toFixed(3)),
    server_ttft_p50_ms: Number(percentile(ttfb.server, 50).toFixed(3)),
    direct_ttft_p50_ms: Number(percentile(ttfb.direct, 50).toFixed(3)),
    server_ttft_p99_ms: Number(percentile(ttfb.server, 99).toFixed(3)),
    direct_ttft_p99_ms: Number(percentile(ttfb.direct, 99).toFixed(3)),
    server_ttft_overhead_p50_ms: Number((percentile(ttfb.server, 50) - percentile(ttfb.direct, 50)).toFixed(3)),
    requests: REQUESTS,
    concurrency: CONCURRENCY,
    max_tokens: MAX_TOKENS,
  }
  if (asJson) process.stdout.write(`${JSON.stringify(result)}\n`)
  else {
    process.stdout.write(
      [
        `orchard-ts/server vs Client (${REQUESTS} requests, ${CONCURRENCY} at a time, ${MAX_TOKENS} tokens each)`,
        `  requests/s            server ${result.server_requests_per_s}   direct ${result.direct_requests_per_s}   ratio ${result.server_rps_ratio}`,
        `  first token p50 (ms)  server ${result.server_ttft_p50_ms}   direct ${result.direct_ttft_p50_ms}   overhead ${result.server_ttft_overhead_p50_ms}`,
        `  first token p99 (ms)  server ${result.server_ttft_p99_ms}   direct ${result.direct_ttft_p99_ms}`,
        '',
      ].join('\n'),
    )
  }
} finally {
  await server.close({ graceMs: 1_000 })
  await engine.close()
  await Engine.stop({ graceMs: 2_000 }).catch(() => null)
  rmSync(cacheRoot, { recursive: true, force: true })
}
