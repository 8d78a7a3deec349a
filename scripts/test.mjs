// `npm test`: format, lint, Rust tests, type check, then the vitest suites against the
// emulator. Stops at the first failing step.
import { execFileSync } from 'node:child_process'

import { buildIfNeeded, root } from './build-if-needed.mjs'

const steps = [
  ['cargo fmt --check', 'cargo', ['fmt', '--all', '--', '--check']],
  ['cargo clippy', 'cargo', ['clippy', '--workspace', '--all-targets', '--', '-D', 'warnings']],
  ['cargo test', 'cargo', ['test', '--workspace']],
  ['tsc --noEmit', 'npx', ['tsc', '--noEmit', '-p', 'tsconfig.json']],
  ['build (if needed)', null, buildIfNeeded],
  ['vitest', 'npx', ['vitest', 'run']],
]

for (const [name, cmd, args] of steps) {
  console.error(`\n=== ${name}`)
  try {
    if (cmd === null) args()
    else execFileSync(cmd, args, { cwd: root, stdio: 'inherit' })
  } catch {
    console.error(`\n${name} failed`)
    process.exit(1)
  }
}
console.error('\nall checks passed')
