// `npm test`: format, lint, Rust tests, type check, then the vitest suites against the
// emulator. Stops at the first failing step.
import { execFileSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import { buildIfNeeded, root } from './build-if-needed.mjs'

const reportDir = mkdtempSync(path.join(os.tmpdir(), 'orchard-vitest-'))
const report = path.join(reportDir, 'report.json')

const steps = [
  ['cargo fmt --check', 'cargo', ['fmt', '--all', '--', '--check']],
  ['cargo clippy', 'cargo', ['clippy', '--workspace', '--all-targets', '--', '-D', 'warnings']],
  ['cargo test', 'cargo', ['test', '--workspace']],
  ['tsc --noEmit', 'npx', ['tsc', '--noEmit', '-p', 'tsconfig.json']],
  ['build (if needed)', null, buildIfNeeded],
  ['vitest', 'npx', ['vitest', 'run', '--reporter=default', '--reporter=json', `--outputFile.json=${report}`]],
]

function summarizeVitest() {
  if (!existsSync(report)) return
  const r = JSON.parse(readFileSync(report, 'utf8'))
  // A plain closing line any CI can read.
  console.log(`vitest: ${r.numPassedTests} passed, ${r.numFailedTests} failed`)
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
  }
}
summarizeVitest()
rmSync(reportDir, { recursive: true, force: true })
if (failed) {
  console.error(`\n${failed} failed`)
  process.exit(1)
}
console.error('\nall checks passed')
