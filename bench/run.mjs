// `npm run bench [-- --json]`: the SDK next to the engine, as ratios against baselines
// measured in the same run. Each scenario runs in its own process with its own emulator.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import { buildIfNeeded, emulatorBinary, root } from '../scripts/build-if-needed.mjs'

const asJson = process.argv.includes('--json')
const log = (...a) => console.error(...a)

buildIfNeeded()
for (const example of ['raw_sub', 'render_bench']) {
  execFileSync('cargo', ['build', '--release', '-p', 'orchard-core', '--example', example], {
    cwd: root,
    stdio: ['ignore', 'ignore', 'inherit'],
  })
}

const scenarios = [
  // Sustained rates, not 'max': PUB/SUB has no flow control, so a producer that outruns any
  // consumer loses deltas by design (the SDK reports them; see reliability.mjs).
  ['stream', { PIE_EMULATOR_FLOOD_RATE: '20000' }],
  ['batch64', { PIE_EMULATOR_FLOOD_RATE: '500' }],
  ['latency', { PIE_EMULATOR_FLOOD_RATE: '2000' }],
  ['render', {}],
  ['idle', {}],
  ['rss', { PIE_EMULATOR_FLOOD_RATE: 'max' }],
  ['concurrent1000', { PIE_EMULATOR_TOKEN_DELAY_MS: '1' }],
]

// The machine may be shared: its load average frames every figure below.
const loadAtStart = os.loadavg()[0]
const results = {}
for (const [name, env] of scenarios) {
  const cacheRoot = mkdtempSync(path.join(os.tmpdir(), 'ob-'))
  log(`bench: ${name} ...`)
  try {
    const out = execFileSync(process.execPath, ['--expose-gc', path.join(root, 'bench', 'scenario.mjs'), name], {
      cwd: root,
      env: {
        ...process.env,
        ORCHARD_CACHE_ROOT: cacheRoot,
        ORCHARD_ENGINE_BINARY: process.env.ORCHARD_ENGINE_BINARY || emulatorBinary,
        ...env,
      },
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
      timeout: 300_000,
    })
    const r = JSON.parse(out.trim().split('\n').pop())
    log(`  ${JSON.stringify(r)}`)
    Object.assign(results, r)
  } finally {
    rmSync(cacheRoot, { recursive: true, force: true })
  }
}

// The Rust share of the render figures: the same conversation through orchard-core alone
// (crates/orchard-core/examples/render_bench.rs), without Node or the binding.
{
  log('bench: render (Rust only) ...')
  const out = execFileSync(path.join(root, 'target', 'release', 'examples', 'render_bench'), [], {
    cwd: root,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const r = JSON.parse(out.trim().split('\n').pop())
  log(`  ${JSON.stringify(r)}`)
  for (const [k, v] of Object.entries(r)) results[`rust_${k}`] = v
}

const lost = ['deltas_lost_stream', 'deltas_lost_batch64', 'deltas_lost_latency'].map((k) => results[k])
const summary = {
  render_us_llama3: results.render_us_llama3,
  render_encode_us_llama3: results.render_encode_us_llama3,
  render_us_qwen3_5: results.render_us_qwen3_5,
  render_encode_us_qwen3_5: results.render_encode_us_qwen3_5,
  render_us_gpt_oss: results.render_us_gpt_oss,
  render_encode_us_gpt_oss: results.render_encode_us_gpt_oss,
  encode_us: results.encode_us,
  rust_render_us_llama3: results.rust_render_us_llama3,
  rust_render_encode_us_llama3: results.rust_render_encode_us_llama3,
  rust_render_us_qwen3_5: results.rust_render_us_qwen3_5,
  rust_render_encode_us_qwen3_5: results.rust_render_encode_us_qwen3_5,
  rust_render_us_gpt_oss: results.rust_render_us_gpt_oss,
  rust_render_encode_us_gpt_oss: results.rust_render_encode_us_gpt_oss,
  rust_encode_us: results.rust_encode_us_llama3,
  cpu_us_per_delta_js_1: results.cpu_us_per_delta_js_1,
  cpu_us_per_delta_raw_1: results.cpu_us_per_delta_raw_1,
  cpu_us_per_delta_js_64: results.cpu_us_per_delta_js_64,
  cpu_us_per_delta_raw_64: results.cpu_us_per_delta_raw_64,
  deltas_lost: lost.some((v) => v == null) ? null : lost.reduce((a, b) => a + b, 0),
  delivery_latency_p50_us: results.delivery_latency_p50_us,
  delivery_latency_p99_us: results.delivery_latency_p99_us,
  idle_cpu_ms_per_10s: results.idle_cpu_ms_per_10s,
  rss_growth_mb_1m_deltas: results.rss_growth_mb_1m_deltas,
  concurrent_streams_1000_ok: results.concurrent_streams_1000_ok,
  stream_deltas_per_s_js: results.stream_deltas_per_s_js,
  batch64_deltas_per_s_js: results.batch64_deltas_per_s_js,
}

// [op, bound] or [op, key of the in-run baseline, factor].
const targets = {
  render_encode_us_llama3: ['<=', 40],
  render_encode_us_qwen3_5: ['<=', 40],
  render_encode_us_gpt_oss: ['<=', 40],
  encode_us: ['<=', 20],
  cpu_us_per_delta_js_1: ['<=', 'cpu_us_per_delta_raw_1', 2],
  cpu_us_per_delta_js_64: ['<=', 'cpu_us_per_delta_raw_64', 2],
  deltas_lost: ['==', 0],
  delivery_latency_p99_us: ['<=', 1000],
  idle_cpu_ms_per_10s: ['<=', 5],
  rss_growth_mb_1m_deltas: ['<=', 5],
  concurrent_streams_1000_ok: ['==', 1],
}
const bound = (t) => (typeof t[1] === 'string' ? summary[t[1]] * t[2] : t[1])
const label = (t) => (typeof t[1] === 'string' ? `${t[0]} ${t[2]} × \`${t[1]}\`` : `${t[0]} ${t[1]}`)
const fmt = (v) =>
  typeof v === 'number' ? (Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(3)) : v == null ? 'n/a' : String(v)
const rows = Object.entries(summary).map(([k, v]) => {
  const t = targets[k]
  const b = t && bound(t)
  const met = !t
    ? ''
    : v == null
      ? 'missed'
      : (t[0] === '>=' ? v >= b : t[0] === '<=' ? v <= b : v === b)
        ? 'met'
        : 'missed'
  return `| \`${k}\` | ${fmt(v)} | ${t ? label(t) : ''} | ${met} |`
})
const machine = `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, ${os.platform()} ${os.release()}, Node ${process.version}, 1-minute load average ${loadAtStart.toFixed(1)} at the start and ${os.loadavg()[0].toFixed(1)} at the end`
const table = [
  '# Benchmarks',
  '',
  `Measured ${new Date().toISOString().slice(0, 10)} on ${machine} with \`npm run bench\` (release build, pie-emulator).`,
  'Every figure is the median of 5 repetitions in this run.',
  '`render_us_<family>`: CPU µs per `renderChat` of a 10-turn conversation with two tools; `render_encode_us_<family>`:',
  'CPU µs per `wire.buildChatFrame` (render, options, frame) of the same; `encode_us`: CPU µs per `wire.encodeRequest` of',
  'the llama3 request (`process.cpuUsage()` per batch of 500 calls, so waiting for a core on a shared machine is not',
  'counted). `rust_*`: the same three through orchard-core alone, without Node or the binding',
  "(`crates/orchard-core/examples/render_bench.rs`, thread CPU time); the difference is the binding's JSON hop.",
  '`cpu_us_per_delta_*`: user + system CPU µs per delivered delta with the emulator publishing',
  'a sustained 20,000 deltas/s (`_1`: one stream) or 64 × 500 deltas/s (`_64`: 64 concurrent streams), for the SDK',
  'process (JS thread and native threads, `process.cpuUsage()`) and for a plain Rust SUB consumer',
  '(`crates/orchard-core/examples/raw_sub.rs`, `getrusage`) alternating with it. `deltas_lost`: deltas requested but never delivered across those runs and the',
  'latency run. Latency: publish → iterator at a paced 2,000 deltas/s.',
  '',
  '| metric | value | target | |',
  '| --- | --- | --- | --- |',
  ...rows,
  '',
].join('\n')
writeFileSync(path.join(root, 'BENCHMARKS.md'), table)
if (asJson) process.stdout.write(`${JSON.stringify(summary)}\n`)
else log(`\n${table}`)
