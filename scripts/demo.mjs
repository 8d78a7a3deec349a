// `npm run demo`: start the engine (the emulator unless ORCHARD_ENGINE_BINARY says
// otherwise), load a model, stream a chat to the terminal, and exit.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import os from 'node:os'
import path from 'node:path'

import { buildIfNeeded, emulatorBinary, root } from './build-if-needed.mjs'

buildIfNeeded()

// A private cache root keeps the demo's engine, sockets and logs apart from anything else.
const cacheRoot = mkdtempSync(path.join(os.tmpdir(), 'orchard-demo-'))
process.env.ORCHARD_CACHE_ROOT = cacheRoot
process.env.ORCHARD_ENGINE_BINARY ??= emulatorBinary

// A model directory: the emulator needs only a config.json naming the architecture.
const modelDir = path.join(cacheRoot, 'models', 'demo-llama-3.1')
mkdirSync(modelDir, { recursive: true })
writeFileSync(
  path.join(modelDir, 'config.json'),
  JSON.stringify({ model_type: 'llama', architectures: ['LlamaForCausalLM'] }),
)

const { Engine } = createRequire(import.meta.url)(path.join(root, 'dist', 'index.js'))

const engine = await Engine.start()
try {
  console.log(`engine pid ${engine.pid} (${engine.launched ? 'launched' : 'attached'}), cache ${engine.cacheRoot}`)
  const model = await engine.loadModel(modelDir)
  console.log(`model loaded: ${model.canonicalId} (profile ${model.family})\n`)

  const messages = [
    { role: 'system', content: 'You are a friendly assistant who knows a lot about orchards.' },
    { role: 'user', content: 'Tell me something about apple orchards.' },
  ]
  const stream = engine.client().chat(modelDir, messages, { maxTokens: 96, temperature: 0.8, seed: 2026 })
  const started = performance.now()
  let first = 0
  process.stdout.write('assistant: ')
  for await (const delta of stream) {
    if (!first && delta.text) first = performance.now()
    process.stdout.write(delta.text)
  }
  const result = await stream.finalResult()
  const seconds = (performance.now() - started) / 1000
  console.log(
    `\n\n[finish: ${result.finishReason}; ${result.usage.promptTokens} prompt + ${result.usage.completionTokens} completion tokens; ` +
      `first token after ${Math.round(first - started)} ms; ${(result.usage.completionTokens / seconds).toFixed(1)} tokens/s]`,
  )
} finally {
  await engine.close()
  rmSync(cacheRoot, { recursive: true, force: true })
}
