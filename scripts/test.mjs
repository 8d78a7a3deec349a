// `npm test`: Rust format and lint, Rust tests, type check, TS lint and format (biome), the vitest
// suites against the emulator, then the install test (the packed tarballs in a fresh project).
// Stops at the first failing step; ends with one line counting the JavaScript-side tests.
import { execFileSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import { buildIfNeeded, root } from './build-if-needed.mjs'

const reportDir = mkdtempSync(path.join(os.tmpdir(), 'orchard-vitest-'))
const report = path.join(reportDir, 'report.json')
const counts = { passed: 0, failed: 0 }

/** Run the install test, counting its `ok` / `not ok` lines. */
function installTest() {
  let out = ''
  try {
    out = execFileSync(process.execPath, [path.join(root, 'scripts', 'install-test.mjs')], {
      cwd: root,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    })
  } catch (e) {
    out = e.stdout ?? ''
    throw e
  } finally {
    process.stdout.write(out)
    counts.passed += (out.match(/^ok /gm) ?? []).length
    counts.failed += (out.match(/^not ok /gm) ?? []).length
  }
}

const steps = [
  ['cargo fmt --check', 'cargo', ['fmt', '--all', '--', '--check']],
  ['cargo clippy', 'cargo', ['clippy', '--workspace', '--all-targets', '--', '-D', 'warnings']],
  ['cargo test', 'cargo', ['test', '--workspace']],
  ['tsc --noEmit', 'npx', ['tsc', '--noEmit', '-p', 'tsconfig.json']],
  ['biome check', 'npx', ['biome', 'check']],
  ['build (if needed)', null, buildIfNeeded],
  ['vitest', 'npx', ['vitest', 'run', '--reporter=default', '--reporter=json', `--outputFile.json=${report}`]],
  ['install test', null, installTest],
]

function countVitest() {
  if (!existsSync(report)) return
  const r = JSON.parse(readFileSync(report, 'utf8'))
  counts.passed += r.numPassedTests
  counts.failed += r.numFailedTests
}

let failed = null
for (const [name, cmd, args] of steps) {
  console.error(`\n=== ${name}`)
  try {
    if (cmd === null) args()
    else execFileSync(cmd, args, { cwd: root, stdio: 'inherit' })
  } catch {
    failed = name
    break
  } finally {
    if (name === 'vitest') countVitest()
  }
}
rmSync(reportDir, { recursive: true, force: true })
// A plain closing line any CI can read (vitest and the install test).
console.log(`tests: ${counts.passed} passed, ${counts.failed} failed`)
if (failed) {
  console.error(`\n${failed} failed`)
  process.exit(1)
}
console.error('\nall checks passed')
