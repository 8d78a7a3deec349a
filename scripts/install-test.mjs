// The install test (part of `npm test`): what a user gets from `npm install orchard-ts`.
// Packs the built tree with pack-local, installs the tarballs into a fresh project with a PATH
// that has no Rust toolchain, and checks there: CommonJS require, ESM import, a TypeScript
// type check under `nodenext`, `npx orchard --version`, a chat streamed through
// `orchard-ts/testing`, the README's quick start run as written, and the error a user sees
// when the platform package is missing.
//
//   node scripts/install-test.mjs [--keep]     (--keep leaves the temporary project)
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import { EMULATOR_BINARY, packMain, packPlatform, root, rootPackage } from './pack.mjs'

const keep = process.argv.includes('--keep')
const work = mkdtempSync(path.join(os.tmpdir(), 'orchard-install-'))
const app = path.join(work, 'app')
const packs = path.join(work, 'packs')
const version = rootPackage().version
let passed = 0
let failed = 0

// A PATH with node, npm and npx only (plus the system's basic tools, when no Rust lives there).
const bin = path.join(work, 'bin')
mkdirSync(bin)
const npmCli = path.join(path.dirname(process.execPath), 'npm')
symlinkSync(process.execPath, path.join(bin, 'node'))
for (const tool of ['npm', 'npx']) symlinkSync(path.join(path.dirname(npmCli), tool), path.join(bin, tool))
const systemDirs = ['/usr/bin', '/bin'].filter((d) => !['cargo', 'rustc'].some((t) => existsSync(path.join(d, t))))
const env = {
  ...process.env,
  PATH: [bin, ...systemDirs].join(path.delimiter),
  CARGO_HOME: path.join(work, 'no-cargo'),
  RUSTUP_HOME: path.join(work, 'no-rustup'),
}
delete env.ORCHARD_ENGINE_BINARY
delete env.ORCHARD_CACHE_ROOT
delete env.ORCHARD_IPC_ROOT
delete env.ORCHARD_MODEL_SPECS

function run(cmd, args, options = {}) {
  const r = spawnSync(cmd, args, { cwd: app, env, encoding: 'utf8', timeout: 120_000, ...options })
  if (r.error) throw r.error
  if (r.status !== 0)
    throw new Error(`${[cmd, ...args].join(' ')} exited ${r.status ?? r.signal}\n${r.stdout}${r.stderr}`)
  return r.stdout
}

function check(name, fn) {
  try {
    const note = fn()
    passed++
    console.log(`ok ${passed + failed} - ${name}${note ? ` (${note})` : ''}`)
  } catch (e) {
    failed++
    console.log(`not ok ${passed + failed} - ${name}\n${String(e?.message ?? e).replace(/^/gm, '  ')}`)
  }
}

try {
  const platform = execFileSync(
    process.execPath,
    ['-p', `require(${JSON.stringify(path.join(root, 'dist', 'platform.js'))}).currentPlatform()`],
    { encoding: 'utf8' },
  ).trim()
  const tarballs = [
    packMain(packs),
    packPlatform(
      platform,
      {
        addon: path.join(root, `orchard.${platform}.node`),
        emulator: path.join(root, 'target', 'release', EMULATOR_BINARY),
      },
      packs,
    ),
  ]
  mkdirSync(app)
  writeFileSync(
    path.join(app, 'package.json'),
    JSON.stringify({ name: 'orchard-install-test', private: true, version: '1.0.0' }),
  )

  check('no Rust toolchain on PATH', () => {
    const r = spawnSync('sh', ['-c', 'command -v cargo || command -v rustc'], { env, encoding: 'utf8' })
    if (r.stdout.trim()) throw new Error(`found ${r.stdout.trim()}`)
  })
  check('npm install of the tarballs', () => {
    run('npm', ['install', '--no-audit', '--no-fund', ...tarballs])
    return tarballs.map((t) => path.basename(t)).join(', ')
  })
  check('the main tarball is under 400 kB', () => {
    const kb = readFileSync(tarballs[0]).length / 1000
    if (kb >= 400) throw new Error(`${kb.toFixed(0)} kB`)
    return `${kb.toFixed(0)} kB`
  })

  check('CommonJS require', () => {
    writeFileSync(
      path.join(app, 'check.cjs'),
      `const orchard = require('orchard-ts')
const { emulatorPath } = require('orchard-ts/testing')
const { prompt } = orchard.renderChat({ config: { model_type: 'llama3' }, messages: [{ role: 'user', content: 'Hi' }] })
if (!prompt.includes('Hi')) throw new Error('bad prompt: ' + prompt)
if (typeof orchard.Engine.start !== 'function') throw new Error('no Engine')
require('node:fs').accessSync(emulatorPath(), require('node:fs').constants.X_OK)
`,
    )
    run('node', ['check.cjs'])
  })

  check('ESM import and a chat streamed through orchard-ts/testing', () => {
    writeFileSync(
      path.join(app, 'check.mjs'),
      `import { Engine, InvalidRequestError } from 'orchard-ts'
import { startTestEngine } from 'orchard-ts/testing'
import { createServer } from 'orchard-ts/server'
import { createRequire } from 'node:module'

if (typeof createServer !== 'function') throw new Error('orchard-ts/server has no createServer')

if (createRequire(import.meta.url)('orchard-ts').Engine !== Engine) throw new Error('import and require load two copies')
const t = await startTestEngine()
try {
  let text = ''
  let deltas = 0
  for await (const delta of t.client.chat(t.model, [{ role: 'user', content: 'Tell me about apples.' }], { maxTokens: 12, seed: 7 })) {
    text += delta.text ?? ''
    deltas++
  }
  const result = await t.client.chat(t.model, [{ role: 'user', content: 'Tell me about apples.' }], { maxTokens: 12, seed: 7 })
  if (result.usage.completionTokens < 8) throw new Error('only ' + result.usage.completionTokens + ' tokens')
  if (result.text !== text) throw new Error('streamed and awaited texts differ')
  // Input errors arrive through the stream, never as a synchronous throw.
  const refused = await t.client.chat(t.model, []).then(
    () => null,
    (e) => e,
  )
  if (!(refused instanceof InvalidRequestError)) throw new Error('empty messages accepted: ' + refused)
  console.log(deltas + ' deltas, ' + result.usage.completionTokens + ' tokens')
} finally {
  await t.close()
}
`,
    )
    return run('node', ['check.mjs'], { timeout: 60_000 }).trim()
  })

  check('tsc --noEmit with module nodenext, strict (ESM and CommonJS files)', () => {
    const types = `import type { ChatDelta, ChatOptions, ChatResult } from 'orchard-ts'
`
    writeFileSync(
      path.join(app, 'esm.mts'),
      `import { Engine, OrchardError } from 'orchard-ts'
import { startTestEngine, type TestEngine } from 'orchard-ts/testing'
import { createServer } from 'orchard-ts/server'
${types}
export const serve = (engine: Engine) => createServer({ engine })
const options: ChatOptions = { maxTokens: 16, temperature: 0.7, topP: 0.9, stop: ['\\n'], signal: AbortSignal.timeout(5_000) }
export async function demo(): Promise<string> {
  const engine: Engine = await Engine.start({ startupTimeoutMs: 10_000 })
  const t: TestEngine = await startTestEngine({ family: 'qwen3_5' })
  let text = ''
  for await (const delta of t.client.chat(t.model, [{ role: 'user', content: 'Hi' }], options)) {
    const d: ChatDelta = delta
    text += d.text ?? ''
  }
  const result: ChatResult = await engine.client().chat('m', [{ role: 'user', content: 'Hi' }], options)
  const code: string = new OrchardError('INTERNAL', 'x').code
  await t.close()
  await engine.close()
  return text + result.text + code
}
`,
    )
    writeFileSync(
      path.join(app, 'cjs.cts'),
      `import orchard = require('orchard-ts')
import testing = require('orchard-ts/testing')
${types}
export async function demo(): Promise<ChatResult> {
  const t = await testing.startTestEngine()
  const options: ChatOptions = { maxTokens: 8 }
  const stream = t.client.chat(t.model, [{ role: 'user', content: 'Hi' }], options)
  for await (const delta of stream) {
    const d: ChatDelta = delta
    void d.text
  }
  const e: orchard.Engine = t.engine
  void e
  return stream
}
`,
    )
    writeFileSync(
      path.join(app, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          module: 'nodenext',
          moduleResolution: 'nodenext',
          target: 'ES2022',
          lib: ['ES2022', 'ESNext.Disposable'],
          strict: true,
          noEmit: true,
          types: ['node'],
          typeRoots: [path.join(root, 'node_modules', '@types')],
        },
        files: ['esm.mts', 'cjs.cts'],
      }),
    )
    run('node', [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'])
  })

  check('npx orchard --version', () => {
    const out = run('npx', ['--no-install', 'orchard', '--version']).trim()
    if (out !== version) throw new Error(`printed ${out}, expected ${version}`)
    return out
  })

  check("the README's quick start runs as written", () => {
    const readme = readFileSync(path.join(root, 'README.md'), 'utf8')
    const block = /## Quick start[\s\S]*?```js\n([\s\S]*?)```/.exec(readme)?.[1]
    if (!block) throw new Error('README.md has no ```js block under "## Quick start"')
    const modelLine = /const model = '[^']*'/
    if (!modelLine.test(block)) throw new Error("the quick start names its model in a line `const model = '...'`")
    const model = run('node', [
      '--input-type=module',
      '-e',
      "import { createTestModel } from 'orchard-ts/testing'; console.log(await createTestModel())",
    ]).trim()
    writeFileSync(path.join(app, 'quick.mjs'), block.replace(modelLine, `const model = ${JSON.stringify(model)}`))
    const emulator = run('node', ['-p', "require('orchard-ts/testing').emulatorPath()"]).trim()
    const cacheRoot = mkdtempSync(path.join(os.tmpdir(), 'orchard-q-'))
    try {
      const out = run('node', ['quick.mjs'], {
        env: { ...env, ORCHARD_ENGINE_BINARY: emulator, ORCHARD_CACHE_ROOT: cacheRoot },
        timeout: 60_000,
      })
      if (!out.trim()) throw new Error('printed nothing')
    } finally {
      spawnSync('node', ['-e', `require('orchard-ts').Engine.stop({ cacheRoot: ${JSON.stringify(cacheRoot)} })`], {
        cwd: app,
        env,
      })
      rmSync(cacheRoot, { recursive: true, force: true })
      rmSync(path.dirname(model), { recursive: true, force: true })
    }
  })

  check('without the platform package: import works, the first native call says what to install', () => {
    rmSync(path.join(app, 'node_modules', `orchard-ts-${platform}`), { recursive: true, force: true })
    writeFileSync(
      path.join(app, 'missing.cjs'),
      `const orchard = require('orchard-ts')
try {
  orchard.renderChat({ config: { model_type: 'llama3' }, messages: [{ role: 'user', content: 'Hi' }] })
  throw new Error('renderChat worked without the addon')
} catch (e) {
  if (!(e instanceof orchard.NativeLoadError)) throw e
  if (!e.message.includes('npm install orchard-ts-${platform}@${version}')) throw new Error('no fix in: ' + e.message)
  if (e.message.split('\\n').length > 4) throw new Error('too long: ' + e.message)
  console.log(e.message.split('\\n').length + ' lines')
}
`,
    )
    return run('node', ['missing.cjs']).trim()
  })
} catch (e) {
  failed++
  console.log(`not ok - install test setup\n${String(e?.stack ?? e).replace(/^/gm, '  ')}`)
} finally {
  if (keep) console.log(`kept ${work}`)
  else rmSync(work, { recursive: true, force: true })
}

console.log(`install: ${passed} passed, ${failed} failed`)
process.exitCode = failed ? 1 : 0
