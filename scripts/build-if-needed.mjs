// Builds whatever is missing or older than its sources: the native addon, the engine
// emulator and the TypeScript output. `node scripts/build-if-needed.mjs` or imported.
import { execFileSync } from 'node:child_process'
import { existsSync, readdirSync, statSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
export const emulatorBinary = path.join(root, 'target', 'release', 'proxy_inference_engine')

function newest(dir, exts) {
  let latest = 0
  if (!existsSync(dir)) return latest
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name)
    if (entry.isDirectory()) latest = Math.max(latest, newest(p, exts))
    else if (exts.some((e) => entry.name.endsWith(e))) latest = Math.max(latest, statSync(p).mtimeMs)
  }
  return latest
}

function mtime(p) {
  return existsSync(p) ? statSync(p).mtimeMs : -1
}

function nativeAddon() {
  const found = readdirSync(root).find((f) => /^orchard\..+\.node$/.test(f))
  return found ? path.join(root, found) : null
}

function run(script) {
  console.error(`[orchard] npm run ${script}`)
  execFileSync('npm', ['run', '--silent', script], { cwd: root, stdio: 'inherit' })
}

export function buildIfNeeded() {
  const rust = Math.max(
    newest(path.join(root, 'crates'), ['.rs', '.toml']),
    mtime(path.join(root, 'Cargo.lock')),
    mtime(path.join(root, 'Cargo.toml')),
  )
  const addon = nativeAddon()
  if (!addon || mtime(addon) < rust) run('build:native')
  if (mtime(emulatorBinary) < rust) run('build:emulator')
  const ts = Math.max(
    newest(path.join(root, 'src-ts'), ['.ts']),
    mtime(path.join(root, 'index.d.ts')),
    mtime(path.join(root, 'package.json')),
    mtime(path.join(root, 'scripts', 'esm-entries.mjs')),
  )
  if (Math.min(mtime(path.join(root, 'dist', 'index.js')), mtime(path.join(root, 'dist', 'index.mjs'))) < ts)
    run('build:ts')
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  buildIfNeeded()
}
