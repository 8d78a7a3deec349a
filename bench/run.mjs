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
execFileSync('cargo', ['build', '--release', '-p', 'orchard-core', '--example', 'raw_sub'], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] })

const scenarios = [
  ['stream', { PIE_EMULATOR_FLOOD_RATE: 'max' }],
  ['batch64', { PIE_EMULATOR_FLOOD_RATE: 'max' }],
  ['latency', { PIE_EMULATOR_FLOOD_RATE: '2000' }],
  ['build', {}],
  ['render', {}],
  ['idle', {}],
  ['rss', { PIE_EMULATOR_FLOOD_RATE: 'max' }],
  ['concurrent1000', { PIE_EMULATOR_TOKEN_DELAY_MS: '1' }],
]

const results = {}
for (const [name, env] of scenarios) {
  const cacheRoot = mkdtempSync(path.join(os.tmpdir(), 'ob-'))
  log(`bench: ${name} ...`)
  try {
    const out = execFileSync(process.execPath, ['--expose-gc', path.join(root, 'bench', 'scenario.mjs'), name], {
      cwd: root,
      env: { ...process.env, ORCHARD_CACHE_ROOT: cacheRoot, ORCHARD_ENGINE_BINARY: process.env.ORCHARD_ENGINE_BINARY || emulatorBinary, ...env },
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

const summary = {
  stream_deltas_per_s_js: results.stream_deltas_per_s_js,
  stream_deltas_per_s_raw: results.stream_deltas_per_s_raw,
  stream_ratio: results.stream_deltas_per_s_js / results.stream_deltas_per_s_raw,
  batch64_deltas_per_s_js: results.batch64_deltas_per_s_js,
  batch64_deltas_per_s_raw: results.batch64_deltas_per_s_raw,
  batch64_ratio: results.batch64_deltas_per_s_js / results.batch64_deltas_per_s_raw,
  delivery_latency_p50_us: results.delivery_latency_p50_us,
  delivery_latency_p99_us: results.delivery_latency_p99_us,
  request_build_us: results.request_build_us,
  idle_cpu_ms_per_10s: results.idle_cpu_ms_per_10s,
  rss_growth_mb_1m_deltas: results.rss_growth_mb_1m_deltas,
  concurrent_streams_1000_ok: results.concurrent_streams_1000_ok,
  stream_delivered_js: results.stream_delivered_js,
  stream_delivered_raw: results.stream_delivered_raw,
  batch64_delivered_js: results.batch64_delivered_js,
  batch64_delivered_raw: results.batch64_delivered_raw,
  render_per_s_llama3: results.render_per_s_llama3,
  render_per_s_qwen3_5: results.render_per_s_qwen3_5,
  render_per_s_gpt_oss: results.render_per_s_gpt_oss,
}

const targets = {
  stream_ratio: ['>=', 0.5],
  batch64_ratio: ['>=', 0.5],
  delivery_latency_p99_us: ['<=', 1000],
  idle_cpu_ms_per_10s: ['<=', 5],
  rss_growth_mb_1m_deltas: ['<=', 5],
  concurrent_streams_1000_ok: ['==', 1],
}
const fmt = (v) => (typeof v === 'number' ? (Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(3)) : v == null ? 'n/a' : String(v))
const rows = Object.entries(summary).map(([k, v]) => {
  const t = targets[k]
  const met = !t ? '' : (t[0] === '>=' ? v >= t[1] : t[0] === '<=' ? v <= t[1] : v === t[1]) ? 'met' : 'missed'
  return `| \`${k}\` | ${fmt(v)} | ${t ? `${t[0]} ${t[1]}` : ''} | ${met} |`
})
const machine = `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, ${os.platform()} ${os.release()}, Node ${process.version}`
const table = [
  '# Benchmarks',
  '',
  `Measured ${new Date().toISOString().slice(0, 10)} on ${machine} with \`npm run bench\` (release build, pie-emulator).`,
  'Throughputs are deltas per second; ratios compare the JavaScript stream with a plain Rust SUB',
  'consumer (`crates/orchard-core/examples/raw_sub.rs`) receiving the same flood in the same run.',
  '`*_delivered_*`: the fraction of the flood that reached the consumer. PUB/SUB drops what a',
  'subscriber cannot queue; on two cores the emulator flooding at full speed outruns any consumer',
  'that shares the machine with it, so throughputs count delivered deltas only.',
  '`render_per_s_<family>`: prompts rendered per second (`renderChat`) for a 10-turn conversation with two tools.',
  '',
  '| metric | value | target | |',
  '| --- | --- | --- | --- |',
  ...rows,
  '',
].join('\n')
writeFileSync(path.join(root, 'BENCHMARKS.md'), table)
if (asJson) process.stdout.write(JSON.stringify(summary) + '\n')
else log('\n' + table)
